/* Message gateway clients and the UE Service IDs each holds (registry.h, "message gateways";
 * TS 23.554 cl. 5.3.4, 8.2.3, 8.2.4; docs/northbound.md "Gateways"). The operator configures a
 * gateway (gwId, kind, target, pattern: mgmt/admin_gw.c); the gateway itself registers the
 * non-MSGin5G UEs it serves (north/north_gw.c). Tables in m5s.db beside the bindings, because
 * an ID is either bound to a subscriber or held by a gateway and that is decided in one
 * transaction on this DB thread; every change of holder takes a new binding generation
 * (binding_gens), so the message store drops what it kept for the previous holder. Committed
 * with synchronous=FULL, then copied into memory under the registry's lock. */
#include "server/registry/registry_int.h"

#include "core/err.h"
#include "core/log.h"
#include "server/groups/groups_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DOM "registry"

static const char schema[] = "CREATE TABLE IF NOT EXISTS gw_clients ("
                             " gw_id TEXT PRIMARY KEY,"
                             " kind TEXT NOT NULL,"
                             " target TEXT NOT NULL,"
                             " pattern TEXT NOT NULL) WITHOUT ROWID;"
                             "CREATE TABLE IF NOT EXISTS gw_ues ("
                             " ue_svc_id TEXT PRIMARY KEY,"
                             " gw_id TEXT NOT NULL REFERENCES gw_clients(gw_id) ON DELETE CASCADE,"
                             " gen INTEGER NOT NULL) WITHOUT ROWID;"
                             "CREATE INDEX IF NOT EXISTS gw_ues_by_gw ON gw_ues (gw_id);"
                             "PRAGMA user_version = 3;";

const char *registry_gw_kind_name(registry_gw_kind_t k) {
  return k == REGISTRY_GW_MQTT ? "mqtt" : "sms";
}

int registry_gw_kind_parse(const char *name, registry_gw_kind_t *k) {
  if (!strcmp(name, "sms"))
    *k = REGISTRY_GW_SMS;
  else if (!strcmp(name, "mqtt"))
    *k = REGISTRY_GW_MQTT;
  else
    return M5_EINVAL;
  return 0;
}

int registry_gw_pattern_valid(const char *p) {
  size_t n = strlen(p);
  if (n == 0 || n > REGISTRY_ID_MAX) return 0;
  const char *star = strchr(p, '*');
  if (star && star != p + n - 1) return 0; /* only one, and last */
  if (n == 1 && star) return 1;            /* "*": every ID */
  char id[REGISTRY_ID_MAX + 1];
  snprintf(id, sizeof id, "%.*s", (int)(star ? n - 1 : n), p);
  return m5_msg_svc_id_valid(id);
}

int registry_gw_pattern_match(const char *pattern, const char *ue_svc_id) {
  size_t n = strlen(pattern);
  if (n && pattern[n - 1] == '*') return strncmp(pattern, ue_svc_id, n - 1) == 0;
  return strcmp(pattern, ue_svc_id) == 0;
}

/* ---- open ---- */

static void copy_col(sqlite3_stmt *st, int col, char *out, size_t outlen) {
  const unsigned char *t = sqlite3_column_text(st, col);
  snprintf(out, outlen, "%s", t ? (const char *)t : "");
}

static int load(registry_t *r, char *err, size_t errlen) {
  sqlite3_stmt *st = NULL;
  int rc = 0, s;
  if (registry_prepare(r, "SELECT gw_id, kind, target, pattern FROM gw_clients", &st, err,
                       errlen) != 0)
    return M5_EIO;
  while (rc == 0 && (s = sqlite3_step(st)) == SQLITE_ROW) {
    registry_gw_t *g = calloc(1, sizeof *g);
    if (!g) {
      rc = M5_ENOMEM;
      break;
    }
    char kind[8];
    copy_col(st, 0, g->gw_id, sizeof g->gw_id);
    copy_col(st, 1, kind, sizeof kind);
    copy_col(st, 2, g->target, sizeof g->target);
    copy_col(st, 3, g->pattern, sizeof g->pattern);
    if (!m5_msg_as_id_valid(g->gw_id) || registry_gw_kind_parse(kind, &g->kind) != 0 ||
        !registry_gw_pattern_valid(g->pattern) || !g->target[0]) {
      M5_LOGE(DOM, "skipping a corrupt gateway client row");
      free(g);
      continue;
    }
    if (m5_hmap_put(r->gw_map, g->gw_id, strlen(g->gw_id), g, NULL) != 0) {
      free(g);
      rc = M5_ENOMEM;
    }
  }
  sqlite3_finalize(st);
  st = NULL;
  if (rc == 0 &&
      registry_prepare(r, "SELECT ue_svc_id, gw_id, gen FROM gw_ues", &st, err, errlen) != 0)
    return M5_EIO;
  while (rc == 0 && (s = sqlite3_step(st)) == SQLITE_ROW) {
    gw_ue_t *u = calloc(1, sizeof *u);
    if (!u) {
      rc = M5_ENOMEM;
      break;
    }
    copy_col(st, 0, u->ue_svc_id, sizeof u->ue_svc_id);
    copy_col(st, 1, u->gw_id, sizeof u->gw_id);
    u->gen = (uint64_t)sqlite3_column_int64(st, 2);
    registry_gw_t *g = m5_hmap_get(r->gw_map, u->gw_id, strlen(u->gw_id));
    if (!g || !m5_msg_svc_id_valid(u->ue_svc_id)) {
      free(u);
      continue;
    }
    if (m5_hmap_put(r->gwue_map, u->ue_svc_id, strlen(u->ue_svc_id), u, NULL) != 0) {
      free(u);
      rc = M5_ENOMEM;
    } else {
      g->n_ues++;
    }
  }
  sqlite3_finalize(st);
  atomic_store(&r->gw_held, m5_hmap_count(r->gwue_map));
  if (rc != 0)
    snprintf(err, errlen, "cannot load the gateway clients: %s",
             rc == M5_ENOMEM ? "out of memory" : sqlite3_errmsg(r->conn));
  return rc;
}

int registry_gw_open(registry_t *r, char *err, size_t errlen) {
  if (!(r->gw_map = m5_hmap_new()) || !(r->gwue_map = m5_hmap_new())) {
    snprintf(err, errlen, "registry: out of memory");
    return M5_ENOMEM;
  }
  char *msg = NULL;
  if (sqlite3_exec(r->conn, schema, NULL, NULL, &msg) != SQLITE_OK) {
    snprintf(err, errlen, "cannot add the gateway tables to the database: %s", msg ? msg : "?");
    sqlite3_free(msg);
    return M5_EIO;
  }
  if (registry_prepare(
          r,
          "INSERT INTO gw_clients (gw_id, kind, target, pattern) VALUES (?1, ?2, ?3, ?4)"
          " ON CONFLICT (gw_id) DO UPDATE SET kind = excluded.kind,"
          " target = excluded.target, pattern = excluded.pattern",
          &r->st_gw_put, err, errlen) ||
      registry_prepare(r, "DELETE FROM gw_clients WHERE gw_id = ?1", &r->st_gw_del, err, errlen) ||
      registry_prepare(r,
                       "INSERT INTO gw_ues (ue_svc_id, gw_id, gen) VALUES (?1, ?2, ?3)"
                       " ON CONFLICT (ue_svc_id) DO UPDATE SET gw_id = excluded.gw_id,"
                       " gen = excluded.gen",
                       &r->st_gwue_put, err, errlen) ||
      registry_prepare(r, "DELETE FROM gw_ues WHERE ue_svc_id = ?1", &r->st_gwue_del, err,
                       errlen) ||
      /* a range of the index gw_ues_by_gw, which holds (gw_id, ue_svc_id): O(page), in order */
      registry_prepare(r,
                       "SELECT ue_svc_id FROM gw_ues WHERE gw_id = ?1 AND ue_svc_id > ?2"
                       " ORDER BY ue_svc_id LIMIT ?3",
                       &r->st_gwue_list, err, errlen))
    return M5_EIO;
  return load(r, err, errlen);
}

static void free_one(void *v) {
  free(v);
}

void registry_gw_free(registry_t *r) {
  sqlite3_finalize(r->st_gw_put);
  sqlite3_finalize(r->st_gw_del);
  sqlite3_finalize(r->st_gwue_put);
  sqlite3_finalize(r->st_gwue_del);
  sqlite3_finalize(r->st_gwue_list);
  if (r->gwue_map) m5_hmap_free(r->gwue_map, free_one);
  if (r->gw_map) m5_hmap_free(r->gw_map, free_one);
  r->gwue_map = r->gw_map = NULL;
}

/* ---- jobs (DB thread: the memory copy is only written here, so it is read without the lock
 * on this thread) ---- */

int registry_gw_holds(registry_t *r, const char *ue_svc_id) {
  return r->gwue_map && m5_hmap_get(r->gwue_map, ue_svc_id, strlen(ue_svc_id)) != NULL;
}

static registry_gw_t *gw_get(registry_t *r, const char *id) {
  return m5_hmap_get(r->gw_map, id, strlen(id));
}

/* The IDs gw holds that `keep` refuses (NULL: all of them), into job->ids (malloc'd). */
typedef struct {
  const char *gw_id, *keep;
  registry_job_t *job;
  int oom;
} collect_t;

static void collect(const void *key, size_t klen, void *val, void *arg) {
  (void)key;
  (void)klen;
  const gw_ue_t *u = val;
  collect_t *c = arg;
  if (c->oom || strcmp(u->gw_id, c->gw_id) != 0) return;
  if (c->keep && registry_gw_pattern_match(c->keep, u->ue_svc_id)) return;
  registry_job_t *j = c->job;
  if ((j->n_ids & (j->n_ids - 1)) == 0) { /* 0, 1, 2, 4, ...: grow */
    size_t cap = j->n_ids ? j->n_ids * 2 : 1;
    char(*ids)[REGISTRY_ID_MAX + 1] = realloc(j->ids, cap * sizeof *ids);
    uint64_t *gens = ids ? realloc(j->gens, cap * sizeof *gens) : NULL;
    if (ids) j->ids = ids;
    if (gens) j->gens = gens;
    if (!ids || !gens) {
      c->oom = 1;
      return;
    }
  }
  snprintf(j->ids[j->n_ids], sizeof j->ids[0], "%s", u->ue_svc_id);
  j->gens[j->n_ids++] = 0;
}

/* In the open transaction: releases job->ids (each with a new generation, in job->gens) and
 * stages their groups' purge. */
static int release_staged(registry_t *r, registry_job_t *job, groups_purge_t **purges) {
  int rc = 0;
  for (size_t i = 0; rc == 0 && i < job->n_ids; i++) {
    uint64_t gen = registry_next_gen(r);
    r->last_gen = gen;
    job->gens[i] = gen;
    sqlite3_bind_text(r->st_gwue_del, 1, job->ids[i], -1, SQLITE_STATIC);
    rc = registry_step_done(r, r->st_gwue_del, "releasing a gateway's UE Service ID");
    if (rc == 0) rc = registry_put_gen(r, job->ids[i], gen);
    if (rc == 0) rc = registry_purge_ue_stage(r, job->ids[i], &purges[i]);
  }
  return rc;
}

/* After the COMMIT: the released IDs leave the memory copy (under the write lock, held). */
static void release_apply(registry_t *r, registry_job_t *job, registry_gw_t *g) {
  for (size_t i = 0; i < job->n_ids; i++) {
    free(m5_hmap_del(r->gwue_map, job->ids[i], strlen(job->ids[i])));
    if (g && g->n_ues) g->n_ues--;
  }
  atomic_store(&r->gw_held, m5_hmap_count(r->gwue_map));
}

static void purges_end(registry_t *r, groups_purge_t **purges, size_t n, int apply) {
  for (size_t i = 0; purges && i < n; i++) {
    if (apply)
      groups_purge_apply(r, purges[i]);
    else
      groups_purge_abort(purges[i]);
  }
  free(purges);
}

static void release_list_free(registry_job_t *job) {
  free(job->ids);
  free(job->gens);
  job->ids = NULL;
  job->gens = NULL;
  job->n_ids = 0;
}

static int do_put(registry_t *r, registry_job_t *job) {
  registry_gw_t *in = job->gw, *cur = gw_get(r, in->gw_id);
  if (!m5_msg_as_id_valid(in->gw_id) || !registry_gw_pattern_valid(in->pattern) || !in->target[0])
    return M5_EINVAL;
  job->created = cur == NULL;
  job->ids = NULL;
  job->gens = NULL;
  job->n_ids = 0;
  registry_gw_t *fresh = NULL;
  if (!cur && !(fresh = calloc(1, sizeof *fresh))) return M5_ENOMEM;
  if (cur && strcmp(cur->pattern, in->pattern) != 0) {
    collect_t c = {in->gw_id, in->pattern, job, 0};
    m5_hmap_foreach(r->gwue_map, collect, &c);
    if (c.oom) {
      release_list_free(job);
      return M5_ENOMEM;
    }
  }
  groups_purge_t **purges = job->n_ids ? calloc(job->n_ids, sizeof *purges) : NULL;
  int rc = job->n_ids && !purges ? M5_ENOMEM : 0;
  uint64_t last_gen = r->last_gen;
  if (rc == 0) rc = registry_exec(r, "PRAGMA synchronous=FULL");
  if (rc == 0) rc = registry_exec(r, "BEGIN IMMEDIATE");
  if (rc == 0) {
    sqlite3_bind_text(r->st_gw_put, 1, in->gw_id, -1, SQLITE_STATIC);
    sqlite3_bind_text(r->st_gw_put, 2, registry_gw_kind_name(in->kind), -1, SQLITE_STATIC);
    sqlite3_bind_text(r->st_gw_put, 3, in->target, -1, SQLITE_STATIC);
    sqlite3_bind_text(r->st_gw_put, 4, in->pattern, -1, SQLITE_STATIC);
    rc = registry_step_done(r, r->st_gw_put, "storing a gateway client");
    if (rc == 0) rc = release_staged(r, job, purges);
    rc = rc == 0 ? registry_exec(r, "COMMIT") : rc;
    if (rc != 0) registry_exec(r, "ROLLBACK");
  }
  if (rc != 0) {
    r->last_gen = last_gen;
    purges_end(r, purges, job->n_ids, 0);
    release_list_free(job);
    free(fresh);
    return rc;
  }
  pthread_rwlock_wrlock(&r->lock);
  registry_gw_t *g = cur ? cur : fresh;
  memcpy(g->gw_id, in->gw_id, sizeof g->gw_id);
  g->kind = in->kind;
  memcpy(g->target, in->target, sizeof g->target);
  memcpy(g->pattern, in->pattern, sizeof g->pattern);
  release_apply(r, job, g);
  if (fresh && m5_hmap_put(r->gw_map, g->gw_id, strlen(g->gw_id), g, NULL) != 0) {
    free(fresh);
    M5_LOGE(DOM, "out of memory: gateway %s stored but not loaded until restart", in->gw_id);
    rc = M5_ENOMEM;
  }
  pthread_rwlock_unlock(&r->lock);
  purges_end(r, purges, job->n_ids, 1);
  if (job->n_ids)
    M5_LOGI(DOM, "gateway %s: %zu UE Service ID(s) outside its new pattern released", in->gw_id,
            job->n_ids);
  return rc;
}

/* The client goes with every ID it holds, in one transaction. */
static int do_del(registry_t *r, registry_job_t *job) {
  registry_gw_t *g = gw_get(r, job->gw->gw_id);
  job->ids = NULL;
  job->gens = NULL;
  job->n_ids = 0;
  if (!g) return M5_ENOENT;
  collect_t c = {g->gw_id, NULL, job, 0};
  m5_hmap_foreach(r->gwue_map, collect, &c);
  groups_purge_t **purges = job->n_ids ? calloc(job->n_ids, sizeof *purges) : NULL;
  if (c.oom || (job->n_ids && !purges)) {
    free(purges);
    release_list_free(job);
    return M5_ENOMEM;
  }
  uint64_t last_gen = r->last_gen;
  int rc = registry_exec(r, "PRAGMA synchronous=FULL");
  if (rc == 0) rc = registry_exec(r, "BEGIN IMMEDIATE");
  if (rc == 0) {
    rc = release_staged(r, job, purges);
    if (rc == 0) {
      sqlite3_bind_text(r->st_gw_del, 1, g->gw_id, -1, SQLITE_STATIC);
      rc = registry_step_done(r, r->st_gw_del, "removing a gateway client");
    }
    rc = rc == 0 ? registry_exec(r, "COMMIT") : rc;
    if (rc != 0) registry_exec(r, "ROLLBACK");
  }
  if (rc != 0) {
    r->last_gen = last_gen;
    purges_end(r, purges, job->n_ids, 0);
    release_list_free(job);
    return rc;
  }
  pthread_rwlock_wrlock(&r->lock);
  release_apply(r, job, NULL);
  m5_hmap_del(r->gw_map, g->gw_id, strlen(g->gw_id));
  pthread_rwlock_unlock(&r->lock);
  free(g);
  purges_end(r, purges, job->n_ids, 1);
  return 0;
}

/* All or nothing: every ID checked before anything is written. */
static int do_ue_reg(registry_t *r, registry_job_t *job) {
  registry_gw_t *g = gw_get(r, job->gw->gw_id);
  if (!g) return M5_ENOENT;
  if (job->n_ids == 0 || job->n_ids > REGISTRY_GW_UES_MAX) return M5_EINVAL;
  size_t fresh_n = 0;
  if (job->fresh) memset(job->fresh, 0, job->n_ids);
  for (size_t i = 0; i < job->n_ids; i++) {
    const char *id = job->ids[i];
    job->bad = i;
    if (!m5_msg_svc_id_valid(id)) return M5_EINVAL;
    if (!registry_gw_pattern_match(g->pattern, id)) return M5_EPERM;
    /* a subscriber's binding (read under the lock: with jetstream the KV watcher writes it) */
    pthread_rwlock_rdlock(&r->lock);
    int bound = m5_hmap_get(r->map, id, strlen(id)) != NULL;
    pthread_rwlock_unlock(&r->lock);
    if (bound) return M5_EEXIST;
    const gw_ue_t *u = m5_hmap_get(r->gwue_map, id, strlen(id));
    if (u && strcmp(u->gw_id, g->gw_id) != 0) return M5_EEXIST; /* another gateway's */
    job->gens[i] = u ? u->gen : 0;
    if (!u) fresh_n++;
  }
  if (fresh_n == 0) return 0;                      /* all held already: idempotent */
  if (g->n_ues + fresh_n > REGISTRY_GW_HELD_MAX) { /* bounds a gateway's memory in m5s */
    job->bad = 0;
    return M5_ERANGE;
  }
  gw_ue_t **made = calloc(fresh_n, sizeof *made);
  groups_purge_t **purges = calloc(fresh_n, sizeof *purges);
  int rc = made && purges ? 0 : M5_ENOMEM;
  for (size_t k = 0; rc == 0 && k < fresh_n; k++)
    if (!(made[k] = calloc(1, sizeof **made))) rc = M5_ENOMEM;
  uint64_t last_gen = r->last_gen;
  if (rc == 0) rc = registry_exec(r, "PRAGMA synchronous=FULL");
  if (rc == 0) rc = registry_exec(r, "BEGIN IMMEDIATE");
  if (rc == 0) {
    size_t k = 0;
    for (size_t i = 0; rc == 0 && i < job->n_ids; i++) {
      if (job->gens[i]) continue;
      /* the same ID twice in one request: the second keeps the first's generation */
      int dup = 0;
      for (size_t p = 0; p < k; p++)
        if (!strcmp(made[p]->ue_svc_id, job->ids[i])) {
          job->gens[i] = made[p]->gen;
          dup = 1;
        }
      if (dup) continue;
      uint64_t gen = registry_next_gen(r);
      r->last_gen = gen;
      job->gens[i] = gen;
      if (job->fresh) job->fresh[i] = 1;
      snprintf(made[k]->ue_svc_id, sizeof made[k]->ue_svc_id, "%s", job->ids[i]);
      snprintf(made[k]->gw_id, sizeof made[k]->gw_id, "%s", g->gw_id);
      made[k]->gen = gen;
      sqlite3_bind_text(r->st_gwue_put, 1, job->ids[i], -1, SQLITE_STATIC);
      sqlite3_bind_text(r->st_gwue_put, 2, g->gw_id, -1, SQLITE_STATIC);
      sqlite3_bind_int64(r->st_gwue_put, 3, (int64_t)gen);
      rc = registry_step_done(r, r->st_gwue_put, "storing a gateway's UE Service ID");
      if (rc == 0) rc = registry_put_gen(r, job->ids[i], gen);
      /* whatever groups the ID was in under its previous holder are not the device's */
      if (rc == 0) rc = registry_purge_ue_stage(r, job->ids[i], &purges[k]);
      k++;
    }
    for (size_t p = k; p < fresh_n; p++) { /* duplicates' spares */
      free(made[p]);
      made[p] = NULL;
    }
    fresh_n = k;
    rc = rc == 0 ? registry_exec(r, "COMMIT") : rc;
    if (rc != 0) registry_exec(r, "ROLLBACK");
  }
  if (rc != 0) {
    r->last_gen = last_gen;
    for (size_t k = 0; made && k < fresh_n; k++)
      free(made[k]);
    free(made);
    purges_end(r, purges, fresh_n, 0);
    return rc;
  }
  pthread_rwlock_wrlock(&r->lock);
  for (size_t k = 0; k < fresh_n; k++) {
    if (m5_hmap_put(r->gwue_map, made[k]->ue_svc_id, strlen(made[k]->ue_svc_id), made[k], NULL) !=
        0) {
      M5_LOGE(DOM, "out of memory: %s stored as %s's but not loaded until restart",
              made[k]->ue_svc_id, g->gw_id);
      free(made[k]);
      rc = M5_ENOMEM;
    } else {
      g->n_ues++;
    }
  }
  atomic_store(&r->gw_held, m5_hmap_count(r->gwue_map));
  pthread_rwlock_unlock(&r->lock);
  free(made);
  purges_end(r, purges, fresh_n, 1);
  return rc;
}

static int do_ue_dereg(registry_t *r, registry_job_t *job) {
  registry_gw_t *g = gw_get(r, job->gw->gw_id);
  const gw_ue_t *u = m5_hmap_get(r->gwue_map, job->ue_svc_id, strlen(job->ue_svc_id));
  if (!g || !u || strcmp(u->gw_id, g->gw_id) != 0) return M5_ENOENT;
  char id[REGISTRY_ID_MAX + 1];
  uint64_t gen_out = 0;
  snprintf(id, sizeof id, "%s", job->ue_svc_id);
  registry_job_t one = *job;
  one.ids = &id;
  one.gens = &gen_out;
  one.n_ids = 1;
  groups_purge_t *purge = NULL;
  uint64_t last_gen = r->last_gen;
  int rc = registry_exec(r, "PRAGMA synchronous=FULL");
  if (rc == 0) rc = registry_exec(r, "BEGIN IMMEDIATE");
  if (rc == 0) {
    rc = release_staged(r, &one, &purge);
    rc = rc == 0 ? registry_exec(r, "COMMIT") : rc;
    if (rc != 0) registry_exec(r, "ROLLBACK");
  }
  if (rc != 0) {
    r->last_gen = last_gen;
    groups_purge_abort(purge);
    return rc;
  }
  pthread_rwlock_wrlock(&r->lock);
  release_apply(r, &one, g);
  pthread_rwlock_unlock(&r->lock);
  groups_purge_apply(r, purge);
  job->gen = gen_out;
  return 0;
}

/* One page of the IDs the gateway holds, from the database: one more row than the page asked
 * for says whether others follow. */
static int do_ue_list(registry_t *r, registry_job_t *job) {
  size_t cap = job->n_ids;
  job->n_ids = 0;
  job->more = 0;
  if (!gw_get(r, job->gw->gw_id)) return M5_ENOENT;
  if (!job->ids || cap == 0 || cap > REGISTRY_GW_UES_MAX) return M5_EINVAL;
  sqlite3_stmt *st = r->st_gwue_list;
  sqlite3_bind_text(st, 1, job->gw->gw_id, -1, SQLITE_STATIC);
  sqlite3_bind_text(st, 2, job->ue_svc_id, -1, SQLITE_STATIC);
  sqlite3_bind_int64(st, 3, (int64_t)cap + 1);
  int s;
  while ((s = sqlite3_step(st)) == SQLITE_ROW) {
    if (job->n_ids == cap) {
      job->more = 1;
      break;
    }
    copy_col(st, 0, job->ids[job->n_ids], sizeof job->ids[0]);
    job->n_ids++;
  }
  int rc = s == SQLITE_ROW || s == SQLITE_DONE ? 0 : M5_EIO;
  if (rc != 0)
    M5_LOGE(DOM, "listing gateway %s's UE Service IDs: %s", job->gw->gw_id,
            sqlite3_errmsg(r->conn));
  sqlite3_reset(st);
  sqlite3_clear_bindings(st);
  if (rc != 0) job->n_ids = 0;
  return rc;
}

int registry_gw_run(registry_t *r, registry_job_t *job) {
  switch (job->op) {
  case REGISTRY_GW_PUT:
    return do_put(r, job);
  case REGISTRY_GW_DEL:
    return do_del(r, job);
  case REGISTRY_GW_UE_REG:
    return job->ids && job->gens ? do_ue_reg(r, job) : M5_EINVAL;
  case REGISTRY_GW_UE_DEREG:
    return do_ue_dereg(r, job);
  case REGISTRY_GW_UE_LIST:
    return do_ue_list(r, job);
  default:
    return M5_EINVAL;
  }
}

/* ---- any thread ---- */

int registry_gw_lookup(registry_t *r, const char *gw_id, registry_gw_t *out) {
  int rc = M5_ENOENT;
  pthread_rwlock_rdlock(&r->lock);
  const registry_gw_t *g = m5_hmap_get(r->gw_map, gw_id, strlen(gw_id));
  if (g) {
    *out = *g;
    rc = 0;
  }
  pthread_rwlock_unlock(&r->lock);
  return rc;
}

size_t registry_gw_count(registry_t *r) {
  pthread_rwlock_rdlock(&r->lock);
  size_t n = m5_hmap_count(r->gw_map);
  pthread_rwlock_unlock(&r->lock);
  return n;
}

int registry_gw_holder(registry_t *r, const char *ue_svc_id, registry_gw_t *gw, uint64_t *gen) {
  int rc = M5_ENOENT;
  if (atomic_load_explicit(&r->gw_held, memory_order_acquire) == 0) return rc; /* no gateway */
  pthread_rwlock_rdlock(&r->lock);
  const gw_ue_t *u = m5_hmap_get(r->gwue_map, ue_svc_id, strlen(ue_svc_id));
  const registry_gw_t *g = u ? m5_hmap_get(r->gw_map, u->gw_id, strlen(u->gw_id)) : NULL;
  if (g) {
    if (gw) *gw = *g;
    if (gen) *gen = u->gen;
    rc = 0;
  }
  pthread_rwlock_unlock(&r->lock);
  return rc;
}

typedef struct {
  void (*fn)(void *arg, const registry_gw_t *gw);
  void *arg;
} each_t;

static void each(const void *key, size_t klen, void *val, void *arg) {
  (void)key;
  (void)klen;
  each_t *e = arg;
  e->fn(e->arg, val);
}

void registry_gw_foreach(registry_t *r, void (*fn)(void *arg, const registry_gw_t *gw), void *arg) {
  each_t e = {fn, arg};
  pthread_rwlock_rdlock(&r->lock);
  m5_hmap_foreach(r->gw_map, each, &e);
  pthread_rwlock_unlock(&r->lock);
}
