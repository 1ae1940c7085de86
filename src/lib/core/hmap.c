/* Hash map with separate chaining (see hmap.h). Entries hold their key inline. */
#include "hmap.h"

#include "err.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#define MIN_BUCKETS 16u

typedef struct entry {
  struct entry *next;
  uint64_t hash;
  void *val;
  size_t klen;
  unsigned char key[];
} entry_t;

struct m5_hmap {
  entry_t **buckets;
  size_t n_buckets; /* a power of two */
  size_t count;
  uint64_t seed;
};

/* FNV-1a over the key, started from the map's seed, then the MurmurHash3 finaliser so that
 * the low bits used for the bucket depend on every input bit. */
static uint64_t hash_key(uint64_t seed, const void *key, size_t klen) {
  const unsigned char *p = key;
  uint64_t h = 0xcbf29ce484222325ull ^ seed;
  for (size_t i = 0; i < klen; i++) {
    h ^= p[i];
    h *= 0x100000001b3ull;
  }
  h ^= h >> 33;
  h *= 0xff51afd7ed558ccdull;
  h ^= h >> 33;
  h *= 0xc4ceb9fe1a85ec53ull;
  h ^= h >> 33;
  return h;
}

m5_hmap_t *m5_hmap_new(void) {
  m5_hmap_t *m = calloc(1, sizeof *m);
  if (!m) return NULL;
  m->buckets = calloc(MIN_BUCKETS, sizeof *m->buckets);
  if (!m->buckets) {
    free(m);
    return NULL;
  }
  m->n_buckets = MIN_BUCKETS;
  if (getrandom(&m->seed, sizeof m->seed, GRND_NONBLOCK) != (ssize_t)sizeof m->seed)
    m->seed = (uint64_t)(uintptr_t)m; /* no entropy yet at boot: still varies per process */
  return m;
}

void m5_hmap_free(m5_hmap_t *m, void (*free_val)(void *val)) {
  if (!m) return;
  for (size_t i = 0; i < m->n_buckets; i++) {
    entry_t *e = m->buckets[i];
    while (e) {
      entry_t *next = e->next;
      if (free_val) free_val(e->val);
      free(e);
      e = next;
    }
  }
  free(m->buckets);
  free(m);
}

static entry_t **find(const m5_hmap_t *m, uint64_t h, const void *key, size_t klen) {
  entry_t **pp = &m->buckets[h & (m->n_buckets - 1)];
  for (; *pp; pp = &(*pp)->next)
    if ((*pp)->hash == h && (*pp)->klen == klen && !memcmp((*pp)->key, key, klen)) return pp;
  return pp;
}

void *m5_hmap_get(const m5_hmap_t *m, const void *key, size_t klen) {
  entry_t **pp = find(m, hash_key(m->seed, key, klen), key, klen);
  return *pp ? (*pp)->val : NULL;
}

/* Doubling is best effort: a failed allocation keeps the longer chains. */
static void grow(m5_hmap_t *m) {
  if (m->n_buckets > SIZE_MAX / 2 / sizeof *m->buckets) return;
  size_t n = m->n_buckets * 2;
  entry_t **b = calloc(n, sizeof *b);
  if (!b) return;
  for (size_t i = 0; i < m->n_buckets; i++) {
    entry_t *e = m->buckets[i];
    while (e) {
      entry_t *next = e->next;
      size_t j = e->hash & (n - 1);
      e->next = b[j];
      b[j] = e;
      e = next;
    }
  }
  free(m->buckets);
  m->buckets = b;
  m->n_buckets = n;
}

int m5_hmap_put(m5_hmap_t *m, const void *key, size_t klen, void *val, void **old) {
  uint64_t h = hash_key(m->seed, key, klen);
  entry_t **pp = find(m, h, key, klen);
  if (*pp) {
    if (old) *old = (*pp)->val;
    (*pp)->val = val;
    return 0;
  }
  if (klen > SIZE_MAX - sizeof(entry_t)) return M5_ERANGE;
  entry_t *e = malloc(sizeof *e + klen);
  if (!e) return M5_ENOMEM;
  e->next = NULL;
  e->hash = h;
  e->val = val;
  e->klen = klen;
  memcpy(e->key, key, klen);
  *pp = e;
  m->count++;
  if (old) *old = NULL;
  if (m->count > m->n_buckets / 4 * 3) grow(m);
  return 0;
}

void *m5_hmap_del(m5_hmap_t *m, const void *key, size_t klen) {
  entry_t **pp = find(m, hash_key(m->seed, key, klen), key, klen);
  entry_t *e = *pp;
  if (!e) return NULL;
  *pp = e->next;
  void *val = e->val;
  free(e);
  m->count--;
  return val;
}

size_t m5_hmap_count(const m5_hmap_t *m) {
  return m->count;
}

void m5_hmap_foreach(const m5_hmap_t *m,
                     void (*fn)(const void *key, size_t klen, void *val, void *arg), void *arg) {
  for (size_t i = 0; i < m->n_buckets; i++)
    for (const entry_t *e = m->buckets[i]; e; e = e->next)
      fn(e->key, e->klen, e->val, arg);
}
