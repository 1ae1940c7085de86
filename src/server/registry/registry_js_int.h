/* The registry shared through NATS KV (registry_js.c: buckets, watchers, bindings and
 * registrations; registry_js_as.c: AS clients and the stored policy): its state and the
 * helpers the two share. Only the registry's own files include this. */
#ifndef M5_SERVER_REGISTRY_JS_INT_H
#define M5_SERVER_REGISTRY_JS_INT_H

#include "server/registry/registry_int.h"

#include "core/hmap.h"
#include "core/loop.h"
#include "js/js_client.h"
#include "js/js_names.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#define REGJS_CAS_TRIES 16 /* conflicts in a row before a write gives up (M5_EAGAIN) */
#define REGJS_KEY_MAX (2 + M5_JS_TOKEN_MAX)
#define REGJS_BUCKET_MAX 63

/* The buckets, <prefix>_<suffix>: bind, reg, as, policy, gw. */
enum { REGJS_BIND, REGJS_REG, REGJS_AS, REGJS_POLICY, REGJS_GW, REGJS_N };

typedef struct registry_js registry_js_t;

typedef struct {
  registry_js_t *js;
  char name[REGJS_BUCKET_MAX + 1];
  m5_js_kv_t *kv;
  m5_js_kv_watch_t *w;
  pthread_t thread;
  int started;
  uint64_t applied; /* the last revision applied to memory (js->mu) */
  int ready;        /* the initial values are applied (js->mu) */
  /* applies one change to the memory copy (on this bucket's watcher thread) */
  void (*apply)(registry_js_t *js, const m5_js_kv_change_t *ch);
} regjs_bucket_t;

struct registry_js {
  registry_t *r;
  m5_js_client_t *c;
  regjs_bucket_t b[REGJS_N];
  pthread_mutex_t mu; /* applied, ready, hook */
  pthread_cond_t cv;
  atomic_int stop;
  int64_t timeout_ms;
  char node[REGISTRY_NODE_MAX + 1];
  m5_hmap_t *removed; /* ueSvcId -> uint64_t generation of its removal (r->lock) */
  m5_hmap_t *regs;    /* ueSvcId -> registration as stored (registry_js.c; r->lock) */
  void (*hook)(void *arg, const char *ue_svc_id, uint64_t gen, registry_change_t why);
  void *hook_arg;
  /* the hand-overs made on other nodes, applied to this node's groups on the DB thread
   * (regjs_purge_later): their jobs come back to purge_mb on purge_thread's loop */
  m5_loop_t *purge_loop;
  m5_mailbox_t *purge_mb;
  pthread_t purge_thread;
  int purge_started;
  int closing; /* js->mu: registry_js_quiesce ran, nothing is submitted any more */
};

/* "<type>.<enc(id)>" (M5_ERANGE: too long), and back (M5_EINVAL: another shape). */
int regjs_key(const char *type, const char *id, char key[REGJS_KEY_MAX + 1]);
int regjs_key_id(const char *key, const char *type, char *id, size_t id_size);
/* A leader read of key: 0 with the value (malloc'ed, or NULL and *rev 0 when absent), or
 * M5_EIO (logged). */
int regjs_read(regjs_bucket_t *b, const char *key, uint8_t **val, size_t *len, uint64_t *rev);
/* text to key: create-only when rev is 0, else compare-and-set on rev. 0 and *new_rev;
 * M5_EAGAIN: written by someone else since it was read; M5_EIO (logged). */
int regjs_write(regjs_bucket_t *b, const char *key, const char *text, uint64_t rev,
                uint64_t *new_rev);
/* Until b's watcher has applied revision rev and b's initial values: 0 or M5_ETIMEDOUT. */
int regjs_wait(registry_js_t *js, regjs_bucket_t *b, uint64_t rev);

/* registry_js_as.c: the AS and policy buckets' watchers and jobs; the reset of what
 * registry_open loaded from SQLite (at attach, before the watchers). */
void regjs_as_apply(registry_js_t *js, const m5_js_kv_change_t *ch);
void regjs_policy_apply(registry_js_t *js, const m5_js_kv_change_t *ch);
int regjs_as_run(registry_js_t *js, registry_job_t *job);
int regjs_policy_run(registry_js_t *js, registry_job_t *job);
int regjs_as_reset(registry_t *r);

/* A new generation for an ID whose last one is cur (registry_js.c). */
uint64_t regjs_next_gen(uint64_t cur);
/* ue:<id>'s group memberships and grants dropped from this node's groups (registry_js.c), on
 * the DB thread; and the same for any principal ("ue:ID", "as:ID"; drop_created: the groups it
 * created go too) from a watcher: submitted to the DB thread, not waited for. */
void regjs_purge_ue_groups(registry_t *r, const char *id);
void regjs_purge_later(registry_js_t *js, const char *kind, const char *id, int drop_created);

/* A binding value of <prefix>_bind: a subscriber's (supi), a gateway's (gw), or a removal's
 * tombstone; gen 0: no value at all. */
typedef struct {
  char supi[REGISTRY_SUPI_MAX + 1];
  char gw[REGISTRY_AS_ID_MAX + 1];
  uint64_t gen;
  int removed;
} regjs_bind_t;
/* Its leader read (registry_js.c): 0 with *b and *rev (0 when absent). */
int regjs_read_bind(registry_js_t *js, const char *key, regjs_bind_t *b, uint64_t *rev);
char *regjs_bind_text(const regjs_bind_t *b);

/* registry_js_gw.c: gateway clients (<prefix>_gw) and the IDs they hold (in <prefix>_bind, so
 * that an ID is a subscriber's or one gateway's by one compare-and-set). Under r->lock (held for
 * writing): the memory copy of a held ID set or dropped. */
void regjs_gw_apply(registry_js_t *js, const m5_js_kv_change_t *ch);
void regjs_gwue_set(registry_t *r, const char *id, const char *gw_id, uint64_t gen);
void regjs_gwue_drop(registry_t *r, const char *id);
/* Whether gateway gw_id exists in memory (a held ID of a removed gateway is free). */
int regjs_gw_exists(registry_t *r, const char *gw_id);
int regjs_gw_run(registry_js_t *js, registry_job_t *job);
int regjs_gw_reset(registry_t *r);

#endif
