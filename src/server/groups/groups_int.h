/* The groups module's state, shared by groups_store.c (tables, loading, the jobs on the
 * registry's DB thread) and groups_read.c (the reads any thread makes), and the calls the
 * registry makes (it owns the database connection and the thread). */
#ifndef M5_SERVER_GROUPS_INT_H
#define M5_SERVER_GROUPS_INT_H

#include "server/groups/groups.h"

#include "core/hmap.h"

#include <pthread.h>

/* One group or area in memory. */
typedef struct {
  groups_kind_t kind;
  char id[M5_MSG_NAME_MAX + 1];
  groups_principal_t creator;
  uint64_t gen;
  int64_t created_at;
  char *attrs;          /* JSON object text or NULL */
  m5_hmap_t *members;   /* principal -> uint64_t * (since; on KV a groups_js_member_t) */
  size_t n_grants;
  groups_grant_t *grants;
  uint64_t cgen;        /* on KV (groups_js.c): the generation it was created at */
} group_t;

struct groups_state {
  pthread_rwlock_t lock; /* guards map, every group_t and total_members; written only by the
                            registry's DB thread (and at open) */
  m5_hmap_t *map;        /* key() -> group_t */
  groups_limits_t lim;
  size_t total_members;
  uint64_t last_gen;     /* the DB thread's */
  groups_hook_fn hook;
  void *hook_arg;
  struct groups_js *js;  /* store.backend jetstream: the groups live in KV (groups_js.c) */
};

/* The map key of a group: "g:" or "a:" and the id, into out (M5_MSG_NAME_MAX + 3 bytes). */
#define GROUPS_KEY_MAX (M5_MSG_NAME_MAX + 3)
size_t groups_key(groups_kind_t kind, const char *id, char out[GROUPS_KEY_MAX]);

/* Called by the registry (registry.c): at registry_open after its own tables (creates the
 * group tables if absent, loads them); at its free; and for a REGISTRY_GROUPS job. */
int groups_open(registry_t *r, char *err, size_t errlen);
void groups_free(registry_t *r);
void groups_run(registry_t *r, registry_job_t *job);

struct groups_state *groups_state(registry_t *r);

/* groups_store.c, for groups_purge.c: a group's release, the next generation (DB thread),
 * and the hook's call for g (with its gen). */
void groups_group_free(void *g);
uint64_t groups_next_gen(struct groups_state *s);
void groups_tell(struct groups_state *s, group_t *g, groups_event_t ev, const char *member);

/* ---- hand-over (groups_purge.c): called by the registry's own jobs on its DB thread ----
 * When an identifier passes to someone else (a UE Service ID re-bound to another SUPI or
 * un-bound, an AS client deleted), nothing the old holder had in groups may stay for the new
 * one. Inside the registry job's open transaction, groups_purge_stage() writes the removal of
 * every membership and grant of principal ("ue:ID" / "as:ID") on every group and area, and,
 * with drop_created, the deletion of every group principal created through SEAL GM; *out is
 * the plan (NULL when there is nothing to remove). After the job's COMMIT,
 * groups_purge_apply() updates the memory copy and calls the hook as the GROUPS_* jobs do
 * (GROUPS_EV_MEMBER_REMOVED per membership, GROUPS_EV_DELETED per deleted group), then frees
 * the plan; after a ROLLBACK, groups_purge_abort() frees it. 0, M5_EIO or M5_ENOMEM (the
 * caller rolls back: the hand-over does not happen without the purge). */
typedef struct groups_purge groups_purge_t;
int groups_purge_stage(registry_t *r, const char *principal, int drop_created,
                       groups_purge_t **out);
void groups_purge_apply(registry_t *r, groups_purge_t *p);
void groups_purge_abort(groups_purge_t *p);

/* groups_store.c, shared with groups_js_ops.c (the same rules on both backends): a job's member
 * list checked (0, M5_EINVAL / M5_ERANGE with job->why); an AS creator's member budget (read
 * under the lock on KV); the groups creator made; RFC 7396 merge of attrs. */
int groups_check_members(struct groups_state *s, groups_job_t *job);
int groups_creator_budget(struct groups_state *s, groups_job_t *job, const char *creator,
                          size_t more);
size_t groups_created_by(struct groups_state *s, const char *creator);
int groups_apply_attrs(const char *old, const char *patch, char **out);

/* ---- groups on NATS KV (groups_js.c, groups_js_ops.c; store.backend jetstream) ----
 * groups_js_on: the groups of r live in KV. groups_js_run: a GROUPS_* job (DB thread).
 * groups_js_purge: the hand-over of principal (groups_int.h above) on KV (DB thread). */
int groups_js_on(registry_t *r);
/* From registry_js_attach once its client is up: the groups loaded from SQLite are dropped,
 * the bucket <prefix>_groups ensured, its watcher started and its contents awaited. From
 * registry_js_free, before the client closes: the watcher stopped. */
int groups_js_attach(registry_t *r, const registry_js_opts_t *o, char *err, size_t errlen);
void groups_js_free(registry_t *r);
/* GRANT / REVOKE's principal and rights, checked alike on both backends: 0, or M5_EINVAL with
 * job->why. */
int groups_grant_check(groups_job_t *job);
void groups_js_run(registry_t *r, groups_job_t *job);
void groups_js_purge(registry_t *r, const char *principal, int drop_created);

#endif
