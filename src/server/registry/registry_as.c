/* Application Server clients of MSGin5G-3 and their registrations (registry.h): the admin API
 * configures a client (asSvcId, how it authenticates, and the host:port pairs its targetUri
 * may name); the AS itself registers (TS 29.538 ASRegistration) and deregisters. Committed
 * with synchronous=FULL (they are configuration, and rare), then copied into memory under the
 * registry's lock. */
#include "server/registry/registry_int.h"

#include "core/err.h"
#include "core/log.h"
#include "core/net.h"
#include "server/groups/groups_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DOM "registry"

int registry_as_id_valid(const char *id) {
  return m5_msg_as_id_valid(id);
}

const char *registry_as_auth_name(registry_as_auth_t auth) {
  return auth == REGISTRY_AS_AUTH_MTLS ? "mtls" : "token";
}

int registry_as_auth_parse(const char *name, registry_as_auth_t *auth) {
  if (!strcmp(name, "token"))
    *auth = REGISTRY_AS_AUTH_TOKEN;
  else if (!strcmp(name, "mtls"))
    *auth = REGISTRY_AS_AUTH_MTLS;
  else
    return M5_EINVAL;
  return 0;
}

/* ---- targetUri ---- */

int registry_as_target_allowed(const registry_as_t *a, const char *uri) {
  char hp[REGISTRY_HOSTPORT_MAX + 1];
  if (m5_net_https_hostport(uri, hp) != 0) return 0;
  for (size_t i = 0; i < a->n_targets; i++)
    if (strcmp(a->targets[i], hp) == 0) return 1;
  return 0;
}

/* ---- open ---- */

/* "h1:p1 h2:p2" <-> targets[] */
static int targets_from_text(registry_as_t *a, const char *t) {
  a->n_targets = 0;
  while (*t) {
    size_t n = strcspn(t, " ");
    if (n) {
      if (a->n_targets == REGISTRY_AS_TARGETS_MAX || n > REGISTRY_HOSTPORT_MAX) return M5_EINVAL;
      memcpy(a->targets[a->n_targets], t, n);
      a->targets[a->n_targets++][n] = '\0';
    }
    t += n;
    while (*t == ' ')
      t++;
  }
  return 0;
}

static void targets_to_text(const registry_as_t *a, char *out, size_t outlen) {
  size_t off = 0;
  out[0] = '\0';
  for (size_t i = 0; i < a->n_targets && off < outlen; i++)
    off += (size_t)snprintf(out + off, outlen - off, "%s%s", i ? " " : "", a->targets[i]);
}

static void copy_col(sqlite3_stmt *st, int col, char *out, size_t outlen) {
  const unsigned char *t = sqlite3_column_text(st, col);
  snprintf(out, outlen, "%s", t ? (const char *)t : "");
}

static int load_as(registry_t *r, char *err, size_t errlen) {
  sqlite3_stmt *st = NULL;
  if (registry_prepare(r,
                       "SELECT c.as_svc_id, c.targets, g.registration_id, g.target_uri, g.app_id,"
                       " g.registered_at, c.auth, c.ue_svc_ids FROM as_clients c"
                       " LEFT JOIN as_registrations g ON g.as_svc_id = c.as_svc_id",
                       &st, err, errlen) != 0)
    return M5_EIO;
  int rc = 0, s;
  while ((s = sqlite3_step(st)) == SQLITE_ROW) {
    registry_as_t *a = calloc(1, sizeof *a);
    if (!a) {
      rc = M5_ENOMEM;
      break;
    }
    copy_col(st, 0, a->as_svc_id, sizeof a->as_svc_id);
    const unsigned char *t = sqlite3_column_text(st, 1);
    if (!registry_as_id_valid(a->as_svc_id) || targets_from_text(a, t ? (const char *)t : "")) {
      M5_LOGE(DOM, "skipping a corrupt AS client row");
      free(a);
      continue;
    }
    /* An unknown mode (a newer m5s's, or a hand edit) falls back to the stricter one. */
    const unsigned char *auth = sqlite3_column_text(st, 6);
    if (!auth || registry_as_auth_parse((const char *)auth, &a->auth) != 0) {
      M5_LOGE(DOM, "AS client %s: unknown auth '%s'; using token", a->as_svc_id,
              auth ? (const char *)auth : "");
      a->auth = REGISTRY_AS_AUTH_TOKEN;
    }
    /* A corrupt list allows nothing rather than everything. */
    const unsigned char *pats = sqlite3_column_text(st, 7);
    if (policy_patterns_from_text(&a->ue_svc_ids, pats ? (const char *)pats : "") != 0) {
      M5_LOGE(DOM, "AS client %s: corrupt ue_svc_ids; it may message no UE", a->as_svc_id);
      a->ue_svc_ids.n = 0;
    }
    if (sqlite3_column_type(st, 2) == SQLITE_TEXT) {
      copy_col(st, 2, a->registration_id, sizeof a->registration_id);
      copy_col(st, 3, a->target_uri, sizeof a->target_uri);
      copy_col(st, 4, a->app_id, sizeof a->app_id);
      a->registered_at = sqlite3_column_int64(st, 5);
    }
    if (m5_hmap_put(r->as_map, a->as_svc_id, strlen(a->as_svc_id), a, NULL) != 0) {
      free(a);
      rc = M5_ENOMEM;
      break;
    }
  }
  if (rc == 0 && s != SQLITE_DONE) rc = M5_EIO;
  if (rc != 0)
    snprintf(err, errlen, "cannot load the AS clients: %s",
             rc == M5_ENOMEM ? "out of memory" : sqlite3_errmsg(r->conn));
  sqlite3_finalize(st);
  return rc;
}

/* A database from before as_clients.auth gains the column, every client keeping the token
 * mode it had; in place, once. */
static int upgrade_auth(registry_t *r, char *err, size_t errlen) {
  sqlite3_stmt *st = NULL;
  if (registry_prepare(r, "SELECT 1 FROM pragma_table_info('as_clients') WHERE name = 'auth'",
                       &st, err, errlen) != 0)
    return M5_EIO;
  int s = sqlite3_step(st);
  sqlite3_finalize(st);
  if (s == SQLITE_ROW) return 0;
  char *msg = NULL;
  if (s != SQLITE_DONE ||
      sqlite3_exec(r->conn,
                   "ALTER TABLE as_clients ADD COLUMN auth TEXT NOT NULL DEFAULT 'token'", NULL,
                   NULL, &msg) != SQLITE_OK) {
    snprintf(err, errlen, "cannot add as_clients.auth to the database: %s",
             msg ? msg : sqlite3_errmsg(r->conn));
    sqlite3_free(msg);
    return M5_EIO;
  }
  M5_LOGI(DOM, "database upgraded: AS clients have an auth mode now (all token)");
  return 0;
}

/* A database from before as_clients.ue_svc_ids gains the column, every client keeping what
 * it could do before: message every UE ("*"); in place, once. */
static int upgrade_ue_svc_ids(registry_t *r, char *err, size_t errlen) {
  sqlite3_stmt *st = NULL;
  if (registry_prepare(r,
                       "SELECT 1 FROM pragma_table_info('as_clients') WHERE name = 'ue_svc_ids'",
                       &st, err, errlen) != 0)
    return M5_EIO;
  int s = sqlite3_step(st);
  sqlite3_finalize(st);
  if (s == SQLITE_ROW) return 0;
  char *msg = NULL;
  if (s != SQLITE_DONE ||
      sqlite3_exec(r->conn,
                   "ALTER TABLE as_clients ADD COLUMN ue_svc_ids TEXT NOT NULL DEFAULT '*'", NULL,
                   NULL, &msg) != SQLITE_OK) {
    snprintf(err, errlen, "cannot add as_clients.ue_svc_ids to the database: %s",
             msg ? msg : sqlite3_errmsg(r->conn));
    sqlite3_free(msg);
    return M5_EIO;
  }
  M5_LOGI(DOM, "database: as_clients.ue_svc_ids added (the clients there may message every "
               "UE, \"*\")");
  return 0;
}

int registry_as_open(registry_t *r, char *err, size_t errlen) {
  if (!(r->as_map = m5_hmap_new())) {
    snprintf(err, errlen, "registry: out of memory");
    return M5_ENOMEM;
  }
  if (upgrade_auth(r, err, errlen) != 0 || upgrade_ue_svc_ids(r, err, errlen) != 0)
    return M5_EIO;
  if (registry_prepare(r,
                       "INSERT INTO as_clients (as_svc_id, targets, auth, ue_svc_ids)"
                       " VALUES (?1, ?2, ?3, ?4)"
                       " ON CONFLICT (as_svc_id) DO UPDATE SET targets = excluded.targets,"
                       " auth = excluded.auth, ue_svc_ids = excluded.ue_svc_ids",
                       &r->st_as_put, err, errlen) ||
      registry_prepare(r, "DELETE FROM as_clients WHERE as_svc_id = ?1", &r->st_as_del, err,
                       errlen) ||
      registry_prepare(r,
                       "INSERT INTO as_registrations (as_svc_id, registration_id, target_uri,"
                       " app_id, registered_at) VALUES (?1, ?2, ?3, ?4, ?5)"
                       " ON CONFLICT (as_svc_id) DO UPDATE SET"
                       " registration_id = excluded.registration_id,"
                       " target_uri = excluded.target_uri, app_id = excluded.app_id,"
                       " registered_at = excluded.registered_at",
                       &r->st_as_reg_put, err, errlen) ||
      registry_prepare(r, "DELETE FROM as_registrations WHERE as_svc_id = ?1",
                       &r->st_as_reg_del, err, errlen))
    return M5_EIO;
  return load_as(r, err, errlen);
}

static void free_as(void *v) {
  free(v);
}

void registry_as_free(registry_t *r) {
  sqlite3_finalize(r->st_as_put);
  sqlite3_finalize(r->st_as_del);
  sqlite3_finalize(r->st_as_reg_put);
  sqlite3_finalize(r->st_as_reg_del);
  if (r->as_map) m5_hmap_free(r->as_map, free_as);
  r->as_map = NULL;
}

/* ---- jobs (DB thread) ---- */

static registry_as_t *as_get(registry_t *r, const char *id) {
  return m5_hmap_get(r->as_map, id, strlen(id));
}

static void forget_registration(registry_as_t *a) {
  a->registration_id[0] = a->target_uri[0] = a->app_id[0] = '\0';
  a->registered_at = 0;
}

static int do_put(registry_t *r, registry_job_t *job) {
  registry_as_t *in = job->as, *cur = as_get(r, in->as_svc_id);
  if (!registry_as_id_valid(in->as_svc_id) || in->n_targets > REGISTRY_AS_TARGETS_MAX)
    return M5_EINVAL;
  job->created = cur == NULL;
  registry_as_t *fresh = NULL;
  if (!cur && !(fresh = calloc(1, sizeof *fresh))) return M5_ENOMEM;
  /* The kept registration must still be allowed by the new list. */
  int drop = cur && cur->registration_id[0] && !registry_as_target_allowed(in, cur->target_uri);
  char text[REGISTRY_AS_TARGETS_MAX * (REGISTRY_HOSTPORT_MAX + 1) + 1];
  targets_to_text(in, text, sizeof text);
  char pats[POLICY_PATTERNS_MAX * (POLICY_PATTERN_MAX + 1) + 1];
  policy_patterns_to_text(&in->ue_svc_ids, pats, sizeof pats);
  int rc = registry_exec(r, "PRAGMA synchronous=FULL");
  if (rc == 0) rc = registry_exec(r, "BEGIN IMMEDIATE");
  if (rc == 0) {
    sqlite3_bind_text(r->st_as_put, 1, in->as_svc_id, -1, SQLITE_STATIC);
    sqlite3_bind_text(r->st_as_put, 2, text, -1, SQLITE_STATIC);
    sqlite3_bind_text(r->st_as_put, 3, registry_as_auth_name(in->auth), -1, SQLITE_STATIC);
    sqlite3_bind_text(r->st_as_put, 4, pats, -1, SQLITE_STATIC);
    rc = registry_step_done(r, r->st_as_put, "storing an AS client");
    if (rc == 0 && drop) {
      sqlite3_bind_text(r->st_as_reg_del, 1, in->as_svc_id, -1, SQLITE_STATIC);
      rc = registry_step_done(r, r->st_as_reg_del, "dropping an AS registration");
    }
    rc = rc == 0 ? registry_exec(r, "COMMIT") : rc;
    if (rc != 0) registry_exec(r, "ROLLBACK");
  }
  if (rc != 0) {
    free(fresh);
    return rc;
  }
  pthread_rwlock_wrlock(&r->lock);
  registry_as_t *a = cur ? cur : fresh;
  if (fresh) memcpy(a->as_svc_id, in->as_svc_id, sizeof a->as_svc_id);
  a->auth = in->auth;
  a->n_targets = in->n_targets;
  memcpy(a->targets, in->targets, sizeof a->targets);
  a->ue_svc_ids = in->ue_svc_ids;
  if (drop) forget_registration(a);
  if (fresh && m5_hmap_put(r->as_map, a->as_svc_id, strlen(a->as_svc_id), a, NULL) != 0) {
    free(fresh);
    M5_LOGE(DOM, "out of memory: AS client %s stored but not loaded until restart",
            in->as_svc_id);
    rc = M5_ENOMEM;
  }
  pthread_rwlock_unlock(&r->lock);
  if (drop)
    M5_LOGI(DOM, "AS %s: its registration's targetUri is no longer allowed: deregistered",
            in->as_svc_id);
  return rc;
}

/* The client goes with everything it had in groups, in one transaction: a client created
 * again under the same asSvcId is someone else (groups_int.h "hand-over"). */
static int do_del(registry_t *r, registry_job_t *job) {
  registry_as_t *a = as_get(r, job->as->as_svc_id);
  if (!a) return M5_ENOENT;
  groups_principal_t who;
  snprintf(who, sizeof who, "as:%s", a->as_svc_id);
  groups_purge_t *purge = NULL;
  int rc = registry_exec(r, "PRAGMA synchronous=FULL");
  if (rc == 0) rc = registry_exec(r, "BEGIN IMMEDIATE");
  if (rc != 0) return rc;
  sqlite3_bind_text(r->st_as_del, 1, a->as_svc_id, -1, SQLITE_STATIC);
  rc = registry_step_done(r, r->st_as_del, "removing an AS client"); /* cascades */
  if (rc == 0) rc = groups_purge_stage(r, who, 1, &purge);
  if (rc == 0) rc = registry_exec(r, "COMMIT");
  if (rc != 0) {
    registry_exec(r, "ROLLBACK");
    groups_purge_abort(purge);
    return rc;
  }
  pthread_rwlock_wrlock(&r->lock);
  m5_hmap_del(r->as_map, a->as_svc_id, strlen(a->as_svc_id));
  pthread_rwlock_unlock(&r->lock);
  free(a);
  groups_purge_apply(r, purge);
  return 0;
}

static int do_register(registry_t *r, registry_job_t *job) {
  registry_as_t *in = job->as, *a = as_get(r, in->as_svc_id);
  if (!a) return M5_ENOENT;
  if (strlen(in->registration_id) != REGISTRY_REG_ID_LEN) return M5_EINVAL;
  /* Checked again here, against the list as it is now: an admin change may have come between
   * the worker's check and this job. */
  if (in->target_uri[0] && !registry_as_target_allowed(a, in->target_uri)) return M5_EPERM;
  job->created = a->registration_id[0] == '\0';
  if (registry_exec(r, "PRAGMA synchronous=FULL") != 0) return M5_EIO;
  sqlite3_stmt *st = r->st_as_reg_put;
  sqlite3_bind_text(st, 1, in->as_svc_id, -1, SQLITE_STATIC);
  sqlite3_bind_text(st, 2, in->registration_id, -1, SQLITE_STATIC);
  sqlite3_bind_text(st, 3, in->target_uri, -1, SQLITE_STATIC);
  sqlite3_bind_text(st, 4, in->app_id, -1, SQLITE_STATIC);
  sqlite3_bind_int64(st, 5, in->registered_at);
  int rc = registry_step_done(r, st, "storing an AS registration");
  if (rc != 0) return rc;
  pthread_rwlock_wrlock(&r->lock);
  memcpy(a->registration_id, in->registration_id, sizeof a->registration_id);
  memcpy(a->target_uri, in->target_uri, sizeof a->target_uri);
  memcpy(a->app_id, in->app_id, sizeof a->app_id);
  a->registered_at = in->registered_at;
  *in = *a;
  pthread_rwlock_unlock(&r->lock);
  return 0;
}

static int do_deregister(registry_t *r, registry_job_t *job) {
  registry_as_t *a = as_get(r, job->as->as_svc_id);
  if (!a || !a->registration_id[0] || strcmp(a->registration_id, job->as->registration_id) != 0)
    return M5_ENOENT;
  if (registry_exec(r, "PRAGMA synchronous=FULL") != 0) return M5_EIO;
  sqlite3_bind_text(r->st_as_reg_del, 1, a->as_svc_id, -1, SQLITE_STATIC);
  int rc = registry_step_done(r, r->st_as_reg_del, "removing an AS registration");
  if (rc != 0) return rc;
  pthread_rwlock_wrlock(&r->lock);
  forget_registration(a);
  pthread_rwlock_unlock(&r->lock);
  return 0;
}

int registry_as_run(registry_t *r, registry_job_t *job) {
  switch (job->op) {
  case REGISTRY_AS_PUT:
    return do_put(r, job);
  case REGISTRY_AS_DEL:
    return do_del(r, job);
  case REGISTRY_AS_REGISTER:
    return do_register(r, job);
  case REGISTRY_AS_DEREGISTER:
    return do_deregister(r, job);
  default:
    return M5_EINVAL;
  }
}

/* ---- any thread ---- */

int registry_as_lookup(registry_t *r, const char *as_svc_id, registry_as_t *out) {
  int rc = M5_ENOENT;
  pthread_rwlock_rdlock(&r->lock);
  const registry_as_t *a = m5_hmap_get(r->as_map, as_svc_id, strlen(as_svc_id));
  if (a) {
    *out = *a;
    rc = 0;
  }
  pthread_rwlock_unlock(&r->lock);
  return rc;
}

int registry_as_target(registry_t *r, const char *as_svc_id, char *target, size_t target_len) {
  int rc = M5_ENOENT;
  pthread_rwlock_rdlock(&r->lock);
  const registry_as_t *a = m5_hmap_get(r->as_map, as_svc_id, strlen(as_svc_id));
  if (a) {
    if (target && target_len)
      snprintf(target, target_len, "%s", a->registration_id[0] ? a->target_uri : "");
    rc = 0;
  }
  pthread_rwlock_unlock(&r->lock);
  return rc;
}

int registry_as_auth(registry_t *r, const char *as_svc_id, registry_as_auth_t *auth) {
  int rc = M5_ENOENT;
  pthread_rwlock_rdlock(&r->lock);
  const registry_as_t *a = m5_hmap_get(r->as_map, as_svc_id, strlen(as_svc_id));
  if (a) {
    *auth = a->auth;
    rc = 0;
  }
  pthread_rwlock_unlock(&r->lock);
  return rc;
}

size_t registry_as_count(registry_t *r) {
  pthread_rwlock_rdlock(&r->lock);
  size_t n = m5_hmap_count(r->as_map);
  pthread_rwlock_unlock(&r->lock);
  return n;
}
