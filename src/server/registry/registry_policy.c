/* Who may message whom, as the registry keeps it (registry.h; policy.h; docs/delivery.md):
 * the configured policy (m5s's policy.* keys), and the one the admin API stored, which wins
 * and survives restarts until it is deleted. The stored one is one row of table `policy`
 * holding the JSON document of GET /admin/v1/policy; the table is created when missing
 * (additive: an older m5s ignores it). Committed with synchronous=FULL (configuration), then
 * copied into memory under the registry's lock, so workers read only what is committed. */
#include "server/registry/registry_int.h"

#include "core/err.h"
#include "core/log.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DOM "registry"

static int load_stored(registry_t *r, char *err, size_t errlen) {
  sqlite3_stmt *st = NULL;
  if (registry_prepare(r, "SELECT doc FROM policy WHERE id = 1", &st, err, errlen) != 0)
    return M5_EIO;
  int s = sqlite3_step(st);
  if (s == SQLITE_ROW) {
    const unsigned char *t = sqlite3_column_text(st, 0);
    json_t *o = t ? json_loads((const char *)t, JSON_REJECT_DUPLICATES, NULL) : NULL;
    char param[72], why[160];
    policy_t p;
    if (o && policy_from_json(o, &p, param, sizeof param, why, sizeof why) == 0) {
      r->policy = p;
      r->policy_stored = r->policy_loaded = 1;
    } else {
      /* A hand edit or a newer m5s's document: the configured policy applies, loudly. */
      M5_LOGE(DOM, "the stored policy (table policy) is not readable; the configured one "
                   "applies until an admin PUT /admin/v1/policy replaces it");
    }
    json_decref(o);
  }
  sqlite3_finalize(st);
  if (s != SQLITE_ROW && s != SQLITE_DONE) {
    snprintf(err, errlen, "cannot read the stored policy: %s", sqlite3_errmsg(r->conn));
    return M5_EIO;
  }
  return 0;
}

int registry_policy_open(registry_t *r, char *err, size_t errlen) {
  policy_defaults(&r->policy);
  r->policy_configured = r->policy;
  char *msg = NULL;
  if (sqlite3_exec(r->conn,
                   "CREATE TABLE IF NOT EXISTS policy ("
                   " id INTEGER PRIMARY KEY CHECK (id = 1),"
                   " doc TEXT NOT NULL)",
                   NULL, NULL, &msg) != SQLITE_OK) {
    snprintf(err, errlen, "cannot add table policy to the database: %s",
             msg ? msg : sqlite3_errmsg(r->conn));
    sqlite3_free(msg);
    return M5_EIO;
  }
  if (registry_prepare(r,
                       "INSERT INTO policy (id, doc) VALUES (1, ?1)"
                       " ON CONFLICT (id) DO UPDATE SET doc = excluded.doc",
                       &r->st_policy_put, err, errlen) ||
      registry_prepare(r, "DELETE FROM policy WHERE id = 1", &r->st_policy_del, err, errlen))
    return M5_EIO;
  return load_stored(r, err, errlen);
}

void registry_policy_free(registry_t *r) {
  sqlite3_finalize(r->st_policy_put);
  sqlite3_finalize(r->st_policy_del);
  r->st_policy_put = r->st_policy_del = NULL;
}

void registry_policy_configure(registry_t *r, const policy_t *configured) {
  pthread_rwlock_wrlock(&r->lock);
  r->policy_configured = *configured;
  if (!r->policy_loaded) r->policy = *configured;
  pthread_rwlock_unlock(&r->lock);
  if (r->policy_loaded)
    M5_LOGI(DOM, "who may message whom: the policy stored by the admin API applies (the "
                 "configuration's policy.* keys only after DELETE /admin/v1/policy)");
}

/* ---- jobs (DB thread) ---- */

static int do_put(registry_t *r, registry_job_t *job) {
  json_t *o = policy_to_json(job->policy);
  char *text = o ? json_dumps(o, JSON_COMPACT) : NULL;
  json_decref(o);
  if (!text) return M5_ENOMEM;
  int rc = registry_exec(r, "PRAGMA synchronous=FULL");
  if (rc == 0) {
    sqlite3_bind_text(r->st_policy_put, 1, text, -1, SQLITE_STATIC);
    rc = registry_step_done(r, r->st_policy_put, "storing the policy");
  }
  free(text);
  if (rc != 0) return rc;
  pthread_rwlock_wrlock(&r->lock);
  job->created = !r->policy_stored;
  r->policy = *job->policy;
  r->policy_stored = 1;
  pthread_rwlock_unlock(&r->lock);
  return 0;
}

static int do_del(registry_t *r, registry_job_t *job) {
  if (registry_exec(r, "PRAGMA synchronous=FULL") != 0 ||
      registry_step_done(r, r->st_policy_del, "removing the stored policy") != 0)
    return M5_EIO;
  pthread_rwlock_wrlock(&r->lock);
  job->created = r->policy_stored;
  r->policy = r->policy_configured;
  r->policy_stored = 0;
  pthread_rwlock_unlock(&r->lock);
  return 0;
}

int registry_policy_run(registry_t *r, registry_job_t *job) {
  if (job->op == REGISTRY_POLICY_PUT) return job->policy ? do_put(r, job) : M5_EINVAL;
  if (job->op == REGISTRY_POLICY_DEL) return do_del(r, job);
  return M5_EINVAL;
}

/* ---- any thread ---- */

void registry_policy_get(registry_t *r, policy_t *out, int *stored) {
  pthread_rwlock_rdlock(&r->lock);
  *out = r->policy;
  if (stored) *stored = r->policy_stored;
  pthread_rwlock_unlock(&r->lock);
}

policy_verdict_t registry_policy_check(registry_t *r, const m5_msg_addr_t *ori,
                                       const m5_msg_addr_t *dest, const char **why) {
  pthread_rwlock_rdlock(&r->lock);
  const registry_as_t *a =
      !strcmp(ori->type, "AS") ? m5_hmap_get(r->as_map, ori->addr, strlen(ori->addr)) : NULL;
  policy_verdict_t v = policy_check(&r->policy, ori, dest, a ? &a->ue_svc_ids : NULL, why);
  pthread_rwlock_unlock(&r->lock);
  return v;
}
