/* Groups and broadcast areas shared through NATS KV (issue 13, store.backend jetstream;
 * docs/scale-out.md "What is shared and how"): the state and helpers groups_js.c (keys,
 * values, the bucket's watcher, attach and release) and groups_js_ops.c (the GROUPS_* jobs and
 * the hand-over purge on the registry's DB thread) share. Only these two include it.
 *
 * Bucket <prefix>_groups (replicas store.js.replicas, history 1), keys and JSON values:
 *   g.<group|area>.<enc(id)>                  {"gen":G,"cg":C,"at":T,"creator":"as:x",
 *                                              "attrs":"<JSON text>","grants":[["as:x",3]]}
 *                                             or the tombstone {"gen":G,"deleted":true}
 *   m.<group|area>.<enc(id)>.<ue|as>.<enc(ID)> {"since":S}, or the tombstone {"removed":true}
 * enc = js_names.h (base64url). Tombstones, not KV deletes: a group's generation survives
 * its deletion, so a group made again under the same name starts above every old one
 * (groups.h "the contract with the fan-out"), and every write is a compare-and-set on a
 * revision we know. cg: the generation the group was created at; a member whose since is
 * below it belongs to an earlier group of that name and is ignored. */
#ifndef M5_SERVER_GROUPS_JS_INT_H
#define M5_SERVER_GROUPS_JS_INT_H

#include "server/groups/groups_int.h"
#include "server/registry/registry_js_int.h"

/* A member in memory on KV: since first (groups_read.c reads *(uint64_t *)), then the
 * revision of its key, so that a removal is one compare-and-set. */
typedef struct {
  uint64_t since;
  uint64_t rev;
} groups_js_member_t;

struct groups_js {
  registry_t *r;
  regjs_bucket_t b;  /* b.js = the registry's: its client, mutex and condition (regjs_wait) */
  m5_hmap_t *orphans; /* groups_key -> m5_hmap_t of members (principal -> groups_js_member_t)
                         whose group key has not arrived (yet): the initial values come in
                         revision order, a group's last write may follow its members' */
};

#define GROUPS_JS_KEY_MAX (2 * M5_JS_TOKEN_MAX + 16)

/* g.<kind>.<enc(id)>; m.<kind>.<enc(id)>.<ue|as>.<enc(ID)>: 0 or M5_ERANGE. */
int groups_js_gkey(groups_kind_t kind, const char *id, char out[GROUPS_JS_KEY_MAX + 1]);
int groups_js_mkey(groups_kind_t kind, const char *id, const char *principal,
                   char out[GROUPS_JS_KEY_MAX + 1]);

/* A group's value as stored. */
typedef struct {
  int exists;  /* 0: absent, or the tombstone of a deleted one (gen kept) */
  uint64_t gen, cg;
  int64_t at;
  groups_principal_t creator;
  char *attrs; /* malloc'd or NULL */
  groups_grant_t *grants; /* malloc'd */
  size_t n_grants;
} groups_js_val_t;

void groups_js_val_clear(groups_js_val_t *v);
/* 0 and *v, or M5_EINVAL (malformed). */
int groups_js_val_parse(const uint8_t *val, size_t len, groups_js_val_t *v);
/* The JSON text (malloc'd) of v, or of its tombstone when !v->exists. */
char *groups_js_val_text(const groups_js_val_t *v);

#endif
