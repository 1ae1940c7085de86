/* Registry store: SQLite on its own job thread plus the in-memory copy (see registry.h).
 * Pragmas: WAL so that the writer's fsync never blocks a reader; synchronous per statement
 * kind, as registry.h explains; foreign keys so that a registration cannot outlive the
 * binding it was authorised by. */
#include "server/registry/registry_int.h"

#include "core/err.h"
#include "core/fs.h"
#include "core/hmap.h"
#include "core/log.h"
#include "server/groups/groups_int.h"

#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define DOM "registry"

/* The AS tables were added later with IF NOT EXISTS: an older file gains them at open; and
 * as_clients.auth later still: registry_as_open adds it to an older table. */
static const char schema[] =
    "CREATE TABLE IF NOT EXISTS bindings ("
    " ue_svc_id TEXT PRIMARY KEY,"
    " supi TEXT NOT NULL) WITHOUT ROWID;"
    "CREATE TABLE IF NOT EXISTS registrations ("
    " ue_svc_id TEXT PRIMARY KEY REFERENCES bindings(ue_svc_id) ON DELETE CASCADE,"
    " registered_at INTEGER NOT NULL,"
    " expiry INTEGER NOT NULL) WITHOUT ROWID;"
    "CREATE TABLE IF NOT EXISTS as_clients ("
    " as_svc_id TEXT PRIMARY KEY,"
    " targets TEXT NOT NULL,"
    " auth TEXT NOT NULL DEFAULT 'token') WITHOUT ROWID;"
    "CREATE TABLE IF NOT EXISTS as_registrations ("
    " as_svc_id TEXT PRIMARY KEY REFERENCES as_clients(as_svc_id) ON DELETE CASCADE,"
    " registration_id TEXT NOT NULL UNIQUE,"
    " target_uri TEXT NOT NULL,"
    " app_id TEXT NOT NULL,"
    " registered_at INTEGER NOT NULL) WITHOUT ROWID;"
    /* Version 2: the generation of each UE Service ID (registry.h), kept after a removal so
     * that generations only grow per ID. Bindings from version 1 get generation 1. */
    "CREATE TABLE IF NOT EXISTS binding_gens ("
    " ue_svc_id TEXT PRIMARY KEY,"
    " gen INTEGER NOT NULL) WITHOUT ROWID;"
    "INSERT OR IGNORE INTO binding_gens (ue_svc_id, gen) SELECT ue_svc_id, 1 FROM bindings;"
    "PRAGMA user_version = 2;";

int registry_normalise_supi(const char *in, char out[REGISTRY_SUPI_MAX + 1]) {
  if (!strncmp(in, "imsi-", 5)) in += 5;
  size_t n = strlen(in);
  if (n < 5 || n > 15) return M5_EINVAL;
  for (size_t i = 0; i < n; i++)
    if (in[i] < '0' || in[i] > '9') return M5_EINVAL;
  memcpy(out, in, n + 1);
  return 0;
}

int registry_prepare(registry_t *r, const char *sql, sqlite3_stmt **st, char *err, size_t errlen) {
  if (sqlite3_prepare_v3(r->conn, sql, -1, SQLITE_PREPARE_PERSISTENT, st, NULL) != SQLITE_OK) {
    snprintf(err, errlen, "database: cannot prepare statement: %s", sqlite3_errmsg(r->conn));
    return M5_EIO;
  }
  return 0;
}

static void free_entry(void *e) {
  free(e);
}

static void registry_free(registry_t *r) {
  registry_js_quiesce(r);       /* the KV watchers submit no more jobs */
  m5_jobthread_free(r->thread); /* its last jobs may wait for the KV watchers */
  registry_js_free(r);
  groups_free(r);
  registry_as_free(r);
  registry_gw_free(r);
  registry_policy_free(r);
  sqlite3_finalize(r->st_bind);
  sqlite3_finalize(r->st_unbind);
  sqlite3_finalize(r->st_reg_put);
  sqlite3_finalize(r->st_reg_del);
  sqlite3_finalize(r->st_gen_put);
  if (r->conn) sqlite3_close(r->conn);
  if (r->map) {
    m5_hmap_free(r->map, free_entry);
    pthread_rwlock_destroy(&r->lock);
  }
  free(r);
}

/* Copies a text column if it fits and is not empty. */
static int column_copy(sqlite3_stmt *st, int col, char *out, size_t outlen) {
  const unsigned char *t = sqlite3_column_text(st, col);
  size_t n = t ? (size_t)sqlite3_column_bytes(st, col) : 0;
  if (n == 0 || n >= outlen) return M5_EINVAL;
  memcpy(out, t, n);
  out[n] = '\0';
  return 0;
}

static int load(registry_t *r, char *err, size_t errlen) {
  sqlite3_stmt *st = NULL;
  if (registry_prepare(r,
              "SELECT b.ue_svc_id, b.supi, r.registered_at, r.expiry, coalesce(g.gen, 1) "
              "FROM bindings b LEFT JOIN registrations r ON r.ue_svc_id = b.ue_svc_id "
              "LEFT JOIN binding_gens g ON g.ue_svc_id = b.ue_svc_id",
              &st, err, errlen) != 0)
    return M5_EIO;
  int rc = 0, s;
  while ((s = sqlite3_step(st)) == SQLITE_ROW) {
    registry_entry_t *e = calloc(1, sizeof *e);
    if (!e) {
      rc = M5_ENOMEM;
      break;
    }
    if (column_copy(st, 0, e->ue_svc_id, sizeof e->ue_svc_id) != 0 ||
        column_copy(st, 1, e->supi, sizeof e->supi) != 0) {
      M5_LOGE(DOM, "skipping a corrupt binding row (empty or over-long ueSvcId or SUPI)");
      free(e);
      continue;
    }
    if (sqlite3_column_type(st, 2) == SQLITE_INTEGER) {
      e->registered_at = sqlite3_column_int64(st, 2);
      e->expiry = sqlite3_column_int64(st, 3);
    }
    e->gen = (uint64_t)sqlite3_column_int64(st, 4);
    if (m5_hmap_put(r->map, e->ue_svc_id, strlen(e->ue_svc_id), e, NULL) != 0) {
      free(e);
      rc = M5_ENOMEM;
      break;
    }
  }
  if (rc == 0 && s != SQLITE_DONE) rc = M5_EIO;
  sqlite3_finalize(st);
  st = NULL;
  if (rc == 0) {
    if (sqlite3_prepare_v2(r->conn, "SELECT coalesce(max(gen), 1) FROM binding_gens", -1, &st,
                           NULL) != SQLITE_OK ||
        sqlite3_step(st) != SQLITE_ROW)
      rc = M5_EIO;
    else
      r->last_gen = (uint64_t)sqlite3_column_int64(st, 0);
  }
  if (rc != 0)
    snprintf(err, errlen, "cannot load the registry: %s",
             rc == M5_ENOMEM ? "out of memory" : sqlite3_errmsg(r->conn));
  sqlite3_finalize(st);
  return rc;
}

static void run_job(m5_job_t *base, void *ctx);

registry_t *registry_open(const char *path, char *err, size_t errlen) {
  registry_t *r = calloc(1, sizeof *r);
  if (!r) {
    snprintf(err, errlen, "registry: out of memory");
    return NULL;
  }
  r->map = m5_hmap_new();
  if (!r->map || pthread_rwlock_init(&r->lock, NULL) != 0) {
    if (r->map) m5_hmap_free(r->map, NULL);
    r->map = NULL;
    snprintf(err, errlen, "registry: out of memory");
    goto fail;
  }
  if (m5_fs_mkdir_parents(path, 0700, "db.path", err, errlen) != 0) goto fail;
  if (sqlite3_open_v2(path, &r->conn, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL) !=
      SQLITE_OK) {
    snprintf(err, errlen, "cannot open database %s: %s; check db.path", path,
             r->conn ? sqlite3_errmsg(r->conn) : "out of memory");
    goto fail;
  }
  sqlite3_extended_result_codes(r->conn, 1);
  char *msg = NULL;
  if (sqlite3_exec(r->conn, "PRAGMA journal_mode=WAL; PRAGMA foreign_keys=ON;", NULL, NULL, &msg) !=
          SQLITE_OK ||
      sqlite3_exec(r->conn, schema, NULL, NULL, &msg) != SQLITE_OK) {
    snprintf(err, errlen, "cannot initialise database %s: %s", path, msg ? msg : "?");
    sqlite3_free(msg);
    goto fail;
  }
  if (registry_prepare(r,
              "INSERT INTO bindings (ue_svc_id, supi) VALUES (?1, ?2) "
              "ON CONFLICT (ue_svc_id) DO UPDATE SET supi = excluded.supi",
              &r->st_bind, err, errlen) ||
      registry_prepare(r, "DELETE FROM bindings WHERE ue_svc_id = ?1", &r->st_unbind, err, errlen) ||
      registry_prepare(r,
              "INSERT INTO registrations (ue_svc_id, registered_at, expiry) VALUES (?1, ?2, ?3) "
              "ON CONFLICT (ue_svc_id) DO UPDATE SET registered_at = excluded.registered_at, "
              "expiry = excluded.expiry",
              &r->st_reg_put, err, errlen) ||
      registry_prepare(r, "DELETE FROM registrations WHERE ue_svc_id = ?1", &r->st_reg_del, err, errlen) ||
      registry_prepare(r,
              "INSERT INTO binding_gens (ue_svc_id, gen) VALUES (?1, ?2) "
              "ON CONFLICT (ue_svc_id) DO UPDATE SET gen = excluded.gen",
              &r->st_gen_put, err, errlen))
    goto fail;
  if (load(r, err, errlen) != 0 || registry_as_open(r, err, errlen) != 0 ||
      registry_gw_open(r, err, errlen) != 0 || registry_policy_open(r, err, errlen) != 0 ||
      groups_open(r, err, errlen) != 0)
    goto fail;
  r->thread = m5_jobthread_new(run_job, r);
  if (!r->thread) {
    snprintf(err, errlen, "registry: cannot create its thread's event loop");
    goto fail;
  }
  return r;
fail:
  registry_free(r);
  return NULL;
}

/* ---- the DB thread ---- */

int registry_exec(registry_t *r, const char *sql) {
  if (sqlite3_exec(r->conn, sql, NULL, NULL, NULL) != SQLITE_OK) {
    M5_LOGE(DOM, "%s failed: %s", sql, sqlite3_errmsg(r->conn));
    return M5_EIO;
  }
  return 0;
}

int registry_step_done(registry_t *r, sqlite3_stmt *st, const char *what) {
  int rc = sqlite3_step(st);
  sqlite3_reset(st);
  sqlite3_clear_bindings(st);
  if (rc != SQLITE_DONE) {
    M5_LOGE(DOM, "%s failed: %s", what, sqlite3_errmsg(r->conn));
    return M5_EIO;
  }
  return 0;
}

/* The memory copy is only written here, so reading it without the lock is safe on this
 * thread; writers take the lock. */
static registry_entry_t *mem_get(registry_t *r, const char *id) {
  return m5_hmap_get(r->map, id, strlen(id));
}

/* A new generation: above every one handed out, and at least the wall clock in ms, so that
 * generations keep growing even if m5s.db is lost and re-created while the message store
 * (which remembers the generations it has seen) is kept. */
uint64_t registry_next_gen(registry_t *r) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  uint64_t now = (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
  return now > r->last_gen ? now : r->last_gen + 1;
}

int registry_put_gen(registry_t *r, const char *id, uint64_t gen) {
  sqlite3_bind_text(r->st_gen_put, 1, id, -1, SQLITE_STATIC);
  sqlite3_bind_int64(r->st_gen_put, 2, (int64_t)gen);
  return registry_step_done(r, r->st_gen_put, "storing a binding generation");
}

/* In the open transaction: the removal of ue:<id> from every group and area (groups_int.h
 * "hand-over"), applied after the COMMIT. */
int registry_purge_ue_stage(registry_t *r, const char *ue_svc_id, groups_purge_t **purge) {
  groups_principal_t p;
  if (strlen(ue_svc_id) > M5_MSG_ADDR_MAX) return 0; /* no such member */
  snprintf(p, sizeof p, "ue:%s", ue_svc_id);
  return groups_purge_stage(r, p, 0, purge);
}

static int do_bind(registry_t *r, registry_job_t *job) {
  registry_entry_t *e = mem_get(r, job->ue_svc_id);
  job->created = e == NULL;
  snprintf(job->old_supi, sizeof job->old_supi, "%s", e ? e->supi : "");
  job->old_gen = job->gen = e ? e->gen : 0;
  int supi_changed = e && strcmp(e->supi, job->supi) != 0;
  if (e && !supi_changed) return 0;
  /* One space of UE Service IDs: one a gateway holds is not bound until it lets go
   * (registry.h, "message gateways"). */
  if (!e && registry_gw_holds(r, job->ue_svc_id))
    return M5_EEXIST; /* the same SUPI: nothing changes (queues, registration) */
  registry_entry_t *fresh = NULL;
  if (!e && !(fresh = calloc(1, sizeof *fresh))) return M5_ENOMEM;
  if (registry_exec(r, "PRAGMA synchronous=FULL") != 0 || registry_exec(r, "BEGIN IMMEDIATE") != 0) {
    free(fresh);
    return M5_EIO;
  }
  uint64_t gen = registry_next_gen(r);
  sqlite3_bind_text(r->st_bind, 1, job->ue_svc_id, -1, SQLITE_STATIC);
  sqlite3_bind_text(r->st_bind, 2, job->supi, -1, SQLITE_STATIC);
  int rc = registry_step_done(r, r->st_bind, "storing a binding");
  if (rc == 0) rc = registry_put_gen(r, job->ue_svc_id, gen);
  groups_purge_t *purge = NULL;
  if (rc == 0 && supi_changed) {
    sqlite3_bind_text(r->st_reg_del, 1, job->ue_svc_id, -1, SQLITE_STATIC);
    rc = registry_step_done(r, r->st_reg_del, "dropping the old subscriber's registration");
    /* the new subscriber starts in no group: the old one's memberships and grants go */
    if (rc == 0) rc = registry_purge_ue_stage(r, job->ue_svc_id, &purge);
  }
  if (rc == 0) rc = registry_exec(r, "COMMIT");
  if (rc != 0) {
    registry_exec(r, "ROLLBACK");
    groups_purge_abort(purge);
    free(fresh);
    return rc;
  }
  r->last_gen = job->gen = gen;
  pthread_rwlock_wrlock(&r->lock);
  if (fresh) {
    memcpy(fresh->ue_svc_id, job->ue_svc_id, sizeof fresh->ue_svc_id);
    memcpy(fresh->supi, job->supi, sizeof fresh->supi);
    fresh->gen = gen;
    if (m5_hmap_put(r->map, fresh->ue_svc_id, strlen(fresh->ue_svc_id), fresh, NULL) != 0) {
      free(fresh);
      rc = M5_ENOMEM; /* committed, but not visible until a restart: say so */
      M5_LOGE(DOM, "out of memory: binding of %s stored but not loaded until restart",
              job->ue_svc_id);
    }
  } else {
    memcpy(e->supi, job->supi, sizeof e->supi);
    e->gen = gen;
    e->registered_at = e->expiry = 0;
  }
  pthread_rwlock_unlock(&r->lock);
  groups_purge_apply(r, purge);
  return rc;
}

static int do_unbind(registry_t *r, registry_job_t *job) {
  registry_entry_t *e = mem_get(r, job->ue_svc_id);
  if (!e) return M5_ENOENT;
  snprintf(job->old_supi, sizeof job->old_supi, "%s", e->supi);
  job->old_gen = e->gen;
  if (registry_exec(r, "PRAGMA synchronous=FULL") != 0 || registry_exec(r, "BEGIN IMMEDIATE") != 0)
    return M5_EIO;
  /* The removal takes a generation of its own, kept for the ID: whatever was queued for the
   * old subscriber is older than it, and so is everything of a later binding's. */
  uint64_t gen = registry_next_gen(r);
  sqlite3_bind_text(r->st_unbind, 1, job->ue_svc_id, -1, SQLITE_STATIC);
  int rc = registry_step_done(r, r->st_unbind, "removing a binding"); /* cascades */
  if (rc == 0) rc = registry_put_gen(r, job->ue_svc_id, gen);
  groups_purge_t *purge = NULL;
  if (rc == 0) rc = registry_purge_ue_stage(r, job->ue_svc_id, &purge);
  if (rc == 0) rc = registry_exec(r, "COMMIT");
  if (rc != 0) {
    registry_exec(r, "ROLLBACK");
    groups_purge_abort(purge);
    return rc;
  }
  r->last_gen = job->gen = gen;
  pthread_rwlock_wrlock(&r->lock);
  m5_hmap_del(r->map, job->ue_svc_id, strlen(job->ue_svc_id));
  pthread_rwlock_unlock(&r->lock);
  free(e);
  groups_purge_apply(r, purge);
  return 0;
}

static int do_register(registry_t *r, registry_job_t *job) {
  registry_entry_t *e = mem_get(r, job->ue_svc_id);
  /* The binding is checked again here, as it is when the job runs: the worker looked it up
   * before submitting, and the admin API may have re-bound or removed it since. */
  if (!e || strcmp(e->supi, job->supi) != 0 || e->gen != job->gen) return M5_EPERM;
  job->created = !(e->registered_at != 0 && e->expiry > job->registered_at);
  if (registry_exec(r, "PRAGMA synchronous=NORMAL") != 0) return M5_EIO;
  sqlite3_bind_text(r->st_reg_put, 1, job->ue_svc_id, -1, SQLITE_STATIC);
  sqlite3_bind_int64(r->st_reg_put, 2, job->registered_at);
  sqlite3_bind_int64(r->st_reg_put, 3, job->expiry);
  int rc = registry_step_done(r, r->st_reg_put, "storing a registration");
  if (rc != 0) return rc;
  pthread_rwlock_wrlock(&r->lock);
  e->registered_at = job->registered_at;
  e->expiry = job->expiry;
  pthread_rwlock_unlock(&r->lock);
  return 0;
}

static int do_deregister(registry_t *r, registry_job_t *job) {
  registry_entry_t *e = mem_get(r, job->ue_svc_id);
  if (!e || e->registered_at == 0) return M5_ENOENT;
  if (registry_exec(r, "PRAGMA synchronous=NORMAL") != 0) return M5_EIO;
  sqlite3_bind_text(r->st_reg_del, 1, job->ue_svc_id, -1, SQLITE_STATIC);
  int rc = registry_step_done(r, r->st_reg_del, "removing a registration");
  if (rc != 0) return rc;
  pthread_rwlock_wrlock(&r->lock);
  e->registered_at = e->expiry = 0;
  pthread_rwlock_unlock(&r->lock);
  return 0;
}

static void run_job(m5_job_t *base, void *ctx) {
  registry_t *r = ctx;
  registry_job_t *job = (registry_job_t *)base;
  job->created = 0;
  job->old_supi[0] = '\0';
  if (job->op == REGISTRY_BIND || job->op == REGISTRY_UNBIND) job->gen = job->old_gen = 0;
  if (r->js && (job->op == REGISTRY_BIND || job->op == REGISTRY_UNBIND ||
                job->op == REGISTRY_REGISTER || job->op == REGISTRY_DEREGISTER ||
                job->op == REGISTRY_AS_PUT || job->op == REGISTRY_AS_DEL ||
                job->op == REGISTRY_AS_REGISTER || job->op == REGISTRY_AS_DEREGISTER ||
                job->op == REGISTRY_POLICY_PUT || job->op == REGISTRY_POLICY_DEL ||
                job->op == REGISTRY_GW_PUT || job->op == REGISTRY_GW_DEL ||
                job->op == REGISTRY_GW_UE_REG || job->op == REGISTRY_GW_UE_DEREG ||
                job->op == REGISTRY_GW_UE_LIST || job->op == REGISTRY_JS_PURGE)) {
    job->status = registry_js_run(r, job);
    return;
  }
  switch (job->op) {
  case REGISTRY_BIND:
    job->status = do_bind(r, job);
    break;
  case REGISTRY_UNBIND:
    job->status = do_unbind(r, job);
    break;
  case REGISTRY_REGISTER:
    job->status = do_register(r, job);
    break;
  case REGISTRY_DEREGISTER:
    job->status = do_deregister(r, job);
    break;
  case REGISTRY_AS_PUT:
  case REGISTRY_AS_DEL:
  case REGISTRY_AS_REGISTER:
  case REGISTRY_AS_DEREGISTER:
    job->status = job->as ? registry_as_run(r, job) : M5_EINVAL;
    break;
  case REGISTRY_POLICY_PUT:
  case REGISTRY_POLICY_DEL:
    job->status = registry_policy_run(r, job);
    break;
  case REGISTRY_GW_PUT:
  case REGISTRY_GW_DEL:
  case REGISTRY_GW_UE_REG:
  case REGISTRY_GW_UE_DEREG:
  case REGISTRY_GW_UE_LIST:
    job->status = job->gw ? registry_gw_run(r, job) : M5_EINVAL;
    break;
  case REGISTRY_GROUPS:
    groups_run(r, job);
    break;
  default:
    job->status = M5_EINVAL;
    break;
  }
}

/* ---- any thread ---- */

int registry_start(registry_t *r, size_t queue_cap) {
  m5_jobthread_set_name(r->thread, "registry");
  return m5_jobthread_start(r->thread, queue_cap);
}

int registry_submit(registry_t *r, registry_job_t *job) {
  return m5_jobthread_submit(r->thread, &job->base);
}

void registry_close(registry_t *r) {
  if (r) registry_free(r);
}

int registry_lookup(registry_t *r, const char *ue_svc_id, int64_t now, registry_entry_t *out) {
  int rc = M5_ENOENT;
  pthread_rwlock_rdlock(&r->lock);
  const registry_entry_t *e = m5_hmap_get(r->map, ue_svc_id, strlen(ue_svc_id));
  if (e) {
    *out = *e;
    rc = 0;
  }
  pthread_rwlock_unlock(&r->lock);
  if (rc == 0) out->registered = out->registered_at != 0 && out->expiry > now;
  if (rc == 0 && !out->registered) out->node[0] = '\0'; /* no session anywhere to route to */
  return rc;
}

int registry_gen_current(registry_t *r, const char *ue_svc_id, uint64_t gen) {
  pthread_rwlock_rdlock(&r->lock);
  const registry_entry_t *e = m5_hmap_get(r->map, ue_svc_id, strlen(ue_svc_id));
  int ok = e && e->gen == gen;
  pthread_rwlock_unlock(&r->lock);
  return ok;
}

int registry_gens_foreach(registry_t *r, void (*fn)(void *arg, const char *ue_svc_id, uint64_t gen),
                          void *arg) {
  if (r->js) return registry_js_gens_foreach(r, fn, arg);
  sqlite3_stmt *st = NULL;
  if (sqlite3_prepare_v2(r->conn, "SELECT ue_svc_id, gen FROM binding_gens", -1, &st, NULL) !=
      SQLITE_OK)
    return M5_EIO;
  int s;
  while ((s = sqlite3_step(st)) == SQLITE_ROW) {
    const unsigned char *id = sqlite3_column_text(st, 0);
    if (id) fn(arg, (const char *)id, (uint64_t)sqlite3_column_int64(st, 1));
  }
  sqlite3_finalize(st);
  return s == SQLITE_DONE ? 0 : M5_EIO;
}

size_t registry_count(registry_t *r) {
  pthread_rwlock_rdlock(&r->lock);
  size_t n = m5_hmap_count(r->map);
  pthread_rwlock_unlock(&r->lock);
  return n;
}

typedef struct {
  int64_t now;
  size_t n;
} count_reg_t;

static void count_reg(const void *key, size_t klen, void *val, void *arg) {
  (void)key;
  (void)klen;
  const registry_entry_t *e = val;
  count_reg_t *c = arg;
  if (e->registered_at != 0 && e->expiry > c->now) c->n++;
}

size_t registry_registrations(registry_t *r, int64_t now) {
  count_reg_t c = {now, 0};
  pthread_rwlock_rdlock(&r->lock);
  m5_hmap_foreach(r->map, count_reg, &c);
  pthread_rwlock_unlock(&r->lock);
  return c.n;
}
