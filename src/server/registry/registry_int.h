/* The registry's state, shared by registry.c (UE bindings and registrations, the DB thread)
 * and registry_as.c (Application Server clients and their registrations). */
#ifndef M5_SERVER_REGISTRY_INT_H
#define M5_SERVER_REGISTRY_INT_H

#include "server/registry/registry.h"

#include "core/hmap.h"

#include <pthread.h>
#include <stdatomic.h>
#include <sqlite3.h>

/* What the memory copy keeps per UE Service ID a gateway holds (registry_gw.c). */
typedef struct {
  char ue_svc_id[REGISTRY_ID_MAX + 1];
  char gw_id[REGISTRY_AS_ID_MAX + 1];
  uint64_t gen;
} gw_ue_t;

struct registry {
  sqlite3 *conn;
  sqlite3_stmt *st_bind;
  sqlite3_stmt *st_unbind;
  sqlite3_stmt *st_reg_put;
  sqlite3_stmt *st_reg_del;
  sqlite3_stmt *st_gen_put; /* binding_gens: the last generation of every ID ever bound */
  uint64_t last_gen;        /* the highest generation handed out (DB thread, and open) */
  sqlite3_stmt *st_as_put, *st_as_del, *st_as_reg_put, *st_as_reg_del;
  m5_jobthread_t *thread;
  pthread_rwlock_t lock; /* guards map and as_map; written only by the DB thread (and at open) */
  m5_hmap_t *map;        /* ue_svc_id -> registry_entry_t */
  m5_hmap_t *as_map;     /* as_svc_id -> registry_as_t */
  /* who may message whom (registry_policy.c), guarded by lock */
  sqlite3_stmt *st_policy_put, *st_policy_del;
  policy_t policy, policy_configured;
  int policy_stored; /* policy is the one stored by the admin API */
  int policy_loaded; /* a stored one was read at open (policy_configure keeps it) */
  /* message gateways (registry_gw.c), guarded by lock */
  m5_hmap_t *gw_map;   /* gw_id -> registry_gw_t */
  m5_hmap_t *gwue_map; /* ue_svc_id -> gw_ue_t (registry_gw.c) */
  atomic_size_t gw_held; /* its count: 0 spares the message path the lock */
  sqlite3_stmt *st_gw_put, *st_gw_del, *st_gwue_put, *st_gwue_del, *st_gwue_list;
  struct groups_state *groups; /* groups and areas (server/groups/groups_int.h) */
  struct registry_js *js;      /* NULL on the sqlite backend (registry_js.c) */
};

/* registry.c */
int registry_prepare(registry_t *r, const char *sql, sqlite3_stmt **st, char *err, size_t errlen);
int registry_exec(registry_t *r, const char *sql);
int registry_step_done(registry_t *r, sqlite3_stmt *st, const char *what); /* resets st */

/* registry_as.c: statements and the memory copy at open (r->lock initialised), their release,
 * and the REGISTRY_AS_* jobs on the DB thread. */
int registry_as_open(registry_t *r, char *err, size_t errlen);
void registry_as_free(registry_t *r);
int registry_as_run(registry_t *r, registry_job_t *job);

/* registry.c, for registry_gw.c: a new binding generation (registry.h), written to
 * binding_gens in the open transaction; the staging of ue:<id>'s removal from every group
 * (applied after the COMMIT, or aborted). */
uint64_t registry_next_gen(registry_t *r);
int registry_put_gen(registry_t *r, const char *id, uint64_t gen);
struct groups_purge;
int registry_purge_ue_stage(registry_t *r, const char *ue_svc_id, struct groups_purge **purge);

/* registry_gw.c: its tables (created if missing) and memory copy at open; their release; the
 * REGISTRY_GW_* jobs on the DB thread; whether a gateway holds an ID (DB thread, for BIND). */
int registry_gw_open(registry_t *r, char *err, size_t errlen);
void registry_gw_free(registry_t *r);
int registry_gw_run(registry_t *r, registry_job_t *job);
int registry_gw_holds(registry_t *r, const char *ue_svc_id);

/* registry_policy.c: its table (created if missing) and the stored policy at open; its
 * statements' release; the REGISTRY_POLICY_* jobs on the DB thread. */
int registry_policy_open(registry_t *r, char *err, size_t errlen);
void registry_policy_free(registry_t *r);
int registry_policy_run(registry_t *r, registry_job_t *job);

/* registry_js.c: the ops it takes over when r->js is set (BIND, UNBIND, REGISTER,
 * DEREGISTER, AS_*, POLICY_*, GW_*), on the DB thread; the generations of every ID (registry_gens_foreach); its
 * stop and release (first in registry_free, after the job thread). */
int registry_js_run(registry_t *r, registry_job_t *job);
int registry_js_gens_foreach(registry_t *r,
                             void (*fn)(void *arg, const char *ue_svc_id, uint64_t gen), void *arg);
void registry_js_quiesce(registry_t *r);
void registry_js_free(registry_t *r);

#endif
