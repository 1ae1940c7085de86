/* A hash map from byte-string keys to pointers, for in-memory indexes (the server's
 * registry and session directory). Separate chaining; the table doubles when it is 3/4
 * full. Keys are copied; values are borrowed. The hash is seeded per map from getrandom(2)
 * so that the bucket of a key cannot be predicted across processes; it is not a keyed PRF,
 * so maps whose keys an untrusted peer chooses freely should bound their size. Not
 * thread-safe: the owner locks. */
#ifndef M5_CORE_HMAP_H
#define M5_CORE_HMAP_H

#include <stddef.h>

typedef struct m5_hmap m5_hmap_t;

m5_hmap_t *m5_hmap_new(void);
/* free_val(value) runs for each entry when non-NULL. */
void m5_hmap_free(m5_hmap_t *m, void (*free_val)(void *val));

/* The value, or NULL when the key is absent. */
void *m5_hmap_get(const m5_hmap_t *m, const void *key, size_t klen);
/* Inserts or replaces. The replaced value goes to *old (NULL if the key was new) when old is
 * non-NULL. M5_ENOMEM leaves the map unchanged. */
int m5_hmap_put(m5_hmap_t *m, const void *key, size_t klen, void *val, void **old);
/* Removes the key; returns its value, or NULL when it was absent. */
void *m5_hmap_del(m5_hmap_t *m, const void *key, size_t klen);
size_t m5_hmap_count(const m5_hmap_t *m);

/* Calls fn for every entry, in no particular order; fn must not change the map. */
void m5_hmap_foreach(const m5_hmap_t *m,
                     void (*fn)(const void *key, size_t klen, void *val, void *arg), void *arg);

#endif
