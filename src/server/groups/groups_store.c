/* Groups and areas in the registry's database (groups.h): the tables, added to an older m5s.db
 * at open (detected by their absence), the load into memory, and the changes, each one
 * transaction with synchronous=FULL on the registry's DB thread, then copied into memory under
 * the groups' lock, then told to the hook. */
#include "server/groups/groups_int.h"
#include "server/registry/registry_int.h"

#include "core/err.h"
#include "core/log.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define DOM "groups"

/* Foreign keys (on in the registry's connection) take members and grants with their group. */
static const char schema[] =
    "CREATE TABLE IF NOT EXISTS groups ("
    " kind TEXT NOT NULL, id TEXT NOT NULL, creator TEXT NOT NULL, attrs TEXT,"
    " gen INTEGER NOT NULL, created_at INTEGER NOT NULL,"
    " PRIMARY KEY (kind, id)) WITHOUT ROWID;"
    "CREATE TABLE IF NOT EXISTS group_members ("
    " kind TEXT NOT NULL, id TEXT NOT NULL, member TEXT NOT NULL, since INTEGER NOT NULL,"
    " PRIMARY KEY (kind, id, member),"
    " FOREIGN KEY (kind, id) REFERENCES groups (kind, id) ON DELETE CASCADE) WITHOUT ROWID;"
    "CREATE TABLE IF NOT EXISTS group_grants ("
    " kind TEXT NOT NULL, id TEXT NOT NULL, principal TEXT NOT NULL, rights INTEGER NOT NULL,"
    " PRIMARY KEY (kind, id, principal),"
    " FOREIGN KEY (kind, id) REFERENCES groups (kind, id) ON DELETE CASCADE) WITHOUT ROWID;"
    /* the highest generation handed out, kept across deletions (groups.h) */
    "CREATE TABLE IF NOT EXISTS group_gen ("
    " k INTEGER PRIMARY KEY CHECK (k = 0), last INTEGER NOT NULL);";

struct groups_state *groups_state(registry_t *r) {
  return r->groups;
}

const char *groups_kind_name(groups_kind_t kind) {
  return kind == GROUPS_AREA ? "area" : "group";
}

static int kind_parse(const char *s, groups_kind_t *k) {
  if (!s) return M5_EINVAL;
  if (!strcmp(s, "group"))
    *k = GROUPS_GROUP;
  else if (!strcmp(s, "area"))
    *k = GROUPS_AREA;
  else
    return M5_EINVAL;
  return 0;
}

size_t groups_key(groups_kind_t kind, const char *id, char out[GROUPS_KEY_MAX]) {
  int n = snprintf(out, GROUPS_KEY_MAX, "%c:%s", kind == GROUPS_AREA ? 'a' : 'g', id);
  return n < 0 ? 0 : (size_t)n < GROUPS_KEY_MAX ? (size_t)n : GROUPS_KEY_MAX - 1;
}

int groups_principal_valid(const char *p, int member_of_area) {
  if (!strncmp(p, "ue:", 3)) return m5_msg_svc_id_valid(p + 3);
  if (!strncmp(p, "as:", 3)) return !member_of_area && m5_msg_as_id_valid(p + 3);
  return 0;
}

/* ---- memory ---- */

static void free_since(void *v) {
  free(v);
}

void groups_group_free(void *v) {
  group_t *g = v;
  if (!g) return;
  if (g->members) m5_hmap_free(g->members, free_since);
  free(g->grants);
  free(g->attrs);
  free(g);
}

static group_t *group_new(groups_kind_t kind, const char *id) {
  group_t *g = calloc(1, sizeof *g);
  if (!g || !(g->members = m5_hmap_new())) {
    free(g);
    return NULL;
  }
  g->kind = kind;
  snprintf(g->id, sizeof g->id, "%s", id);
  return g;
}

static int member_put(group_t *g, const char *principal, uint64_t since) {
  uint64_t *s = malloc(sizeof *s);
  if (!s) return M5_ENOMEM;
  *s = since;
  void *old = NULL;
  if (m5_hmap_put(g->members, principal, strlen(principal), s, &old) != 0) {
    free(s);
    return M5_ENOMEM;
  }
  free(old);
  return 0;
}

static group_t *mem_get(struct groups_state *s, groups_kind_t kind, const char *id) {
  char key[GROUPS_KEY_MAX];
  size_t n = groups_key(kind, id, key);
  return m5_hmap_get(s->map, key, n);
}

static groups_grant_t *grant_find(group_t *g, const char *principal) {
  for (size_t i = 0; i < g->n_grants; i++)
    if (!strcmp(g->grants[i].principal, principal)) return &g->grants[i];
  return NULL;
}

/* ---- open ---- */

static void copy_text(sqlite3_stmt *st, int col, char *out, size_t outlen) {
  const unsigned char *t = sqlite3_column_text(st, col);
  snprintf(out, outlen, "%s", t ? (const char *)t : "");
}

static int load(registry_t *r, struct groups_state *s) {
  sqlite3_stmt *st = NULL;
  int rc = 0, step;
  if (sqlite3_prepare_v2(r->conn, "SELECT kind, id, creator, attrs, gen, created_at FROM groups",
                         -1, &st, NULL) != SQLITE_OK)
    return M5_EIO;
  while (rc == 0 && (step = sqlite3_step(st)) == SQLITE_ROW) {
    groups_kind_t kind;
    char id[M5_MSG_NAME_MAX + 2];
    copy_text(st, 1, id, sizeof id);
    if (kind_parse((const char *)sqlite3_column_text(st, 0), &kind) != 0 ||
        !m5_msg_name_valid(id)) {
      M5_LOGE(DOM, "skipping a corrupt group row");
      continue;
    }
    group_t *g = group_new(kind, id);
    if (!g) {
      rc = M5_ENOMEM;
      break;
    }
    copy_text(st, 2, g->creator, sizeof g->creator);
    if (sqlite3_column_type(st, 3) == SQLITE_TEXT &&
        !(g->attrs = strdup((const char *)sqlite3_column_text(st, 3))))
      rc = M5_ENOMEM;
    g->gen = (uint64_t)sqlite3_column_int64(st, 4);
    g->created_at = sqlite3_column_int64(st, 5);
    char key[GROUPS_KEY_MAX];
    if (rc == 0 && m5_hmap_put(s->map, key, groups_key(kind, id, key), g, NULL) != 0)
      rc = M5_ENOMEM;
    if (rc == 0 && g->gen > s->last_gen) s->last_gen = g->gen;
    if (rc != 0) groups_group_free(g);
  }
  if (rc == 0 && step != SQLITE_DONE) rc = M5_EIO;
  sqlite3_finalize(st);
  st = NULL;
  if (rc == 0 && sqlite3_prepare_v2(r->conn, "SELECT kind, id, member, since FROM group_members",
                                    -1, &st, NULL) != SQLITE_OK)
    rc = M5_EIO;
  while (rc == 0 && (step = sqlite3_step(st)) == SQLITE_ROW) {
    groups_kind_t kind;
    char id[M5_MSG_NAME_MAX + 2];
    groups_principal_t m;
    copy_text(st, 1, id, sizeof id);
    copy_text(st, 2, m, sizeof m);
    group_t *g = kind_parse((const char *)sqlite3_column_text(st, 0), &kind) == 0
                     ? mem_get(s, kind, id)
                     : NULL;
    if (!g || !groups_principal_valid(m, kind == GROUPS_AREA)) {
      M5_LOGE(DOM, "skipping a corrupt group member row");
      continue;
    }
    rc = member_put(g, m, (uint64_t)sqlite3_column_int64(st, 3));
    s->total_members++;
  }
  if (rc == 0 && step != SQLITE_DONE) rc = M5_EIO;
  sqlite3_finalize(st);
  st = NULL;
  if (rc == 0 && sqlite3_prepare_v2(r->conn,
                                    "SELECT kind, id, principal, rights FROM group_grants", -1,
                                    &st, NULL) != SQLITE_OK)
    rc = M5_EIO;
  while (rc == 0 && (step = sqlite3_step(st)) == SQLITE_ROW) {
    groups_kind_t kind;
    char id[M5_MSG_NAME_MAX + 2];
    groups_principal_t p;
    copy_text(st, 1, id, sizeof id);
    copy_text(st, 2, p, sizeof p);
    group_t *g = kind_parse((const char *)sqlite3_column_text(st, 0), &kind) == 0
                     ? mem_get(s, kind, id)
                     : NULL;
    if (!g || !groups_principal_valid(p, 0)) {
      M5_LOGE(DOM, "skipping a corrupt group grant row");
      continue;
    }
    groups_grant_t *v = realloc(g->grants, (g->n_grants + 1) * sizeof *v);
    if (!v) {
      rc = M5_ENOMEM;
      break;
    }
    g->grants = v;
    memcpy(v[g->n_grants].principal, p, sizeof p);
    v[g->n_grants++].rights = (unsigned)sqlite3_column_int(st, 3);
  }
  if (rc == 0 && step != SQLITE_DONE) rc = M5_EIO;
  sqlite3_finalize(st);
  st = NULL;
  if (rc == 0 && sqlite3_prepare_v2(r->conn, "SELECT last FROM group_gen WHERE k = 0", -1, &st,
                                    NULL) == SQLITE_OK &&
      sqlite3_step(st) == SQLITE_ROW) {
    uint64_t last = (uint64_t)sqlite3_column_int64(st, 0);
    if (last > s->last_gen) s->last_gen = last;
  }
  sqlite3_finalize(st);
  return rc;
}

int groups_open(registry_t *r, char *err, size_t errlen) {
  struct groups_state *s = calloc(1, sizeof *s);
  if (!s || !(s->map = m5_hmap_new()) || pthread_rwlock_init(&s->lock, NULL) != 0) {
    if (s && s->map) m5_hmap_free(s->map, NULL);
    free(s);
    snprintf(err, errlen, "groups: out of memory");
    return M5_ENOMEM;
  }
  r->groups = s;
  s->lim = (groups_limits_t){GROUPS_DEFAULT_MAX_GROUPS, GROUPS_DEFAULT_MAX_MEMBERS,
                             GROUPS_DEFAULT_MAX_TOTAL_MEMBERS, GROUPS_DEFAULT_MAX_GRANTS,
                             GROUPS_DEFAULT_MAX_PER_AS, GROUPS_DEFAULT_MAX_MEMBERS_PER_AS};
  /* An m5s.db from before groups lacks the tables: they are added, in place, once. */
  sqlite3_stmt *st = NULL;
  int present = 0;
  if (sqlite3_prepare_v2(r->conn,
                         "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'groups'",
                         -1, &st, NULL) == SQLITE_OK)
    present = sqlite3_step(st) == SQLITE_ROW;
  sqlite3_finalize(st);
  char *msg = NULL;
  if (sqlite3_exec(r->conn, schema, NULL, NULL, &msg) != SQLITE_OK) {
    snprintf(err, errlen, "cannot add the group tables to the database: %s", msg ? msg : "?");
    sqlite3_free(msg);
    return M5_EIO;
  }
  if (!present) M5_LOGI(DOM, "database: group and broadcast area tables added");
  int rc = load(r, s);
  if (rc != 0) {
    snprintf(err, errlen, "cannot load the groups: %s",
             rc == M5_ENOMEM ? "out of memory" : sqlite3_errmsg(r->conn));
    return rc;
  }
  return 0;
}

void groups_free(registry_t *r) {
  struct groups_state *s = r->groups;
  if (!s) return;
  m5_hmap_free(s->map, groups_group_free);
  pthread_rwlock_destroy(&s->lock);
  free(s);
  r->groups = NULL;
}

void groups_set_limits(registry_t *r, const groups_limits_t *lim) {
  r->groups->lim = *lim;
  if (!lim->max_per_as) r->groups->lim.max_per_as = GROUPS_DEFAULT_MAX_PER_AS;
  if (!lim->max_members_per_as)
    r->groups->lim.max_members_per_as = GROUPS_DEFAULT_MAX_MEMBERS_PER_AS;
}

typedef struct {
  const char *creator;
  size_t n;       /* groups it created */
  size_t members; /* their members together */
} by_creator_t;

static void count_creator(const void *key, size_t klen, void *val, void *arg) {
  (void)key;
  (void)klen;
  const group_t *g = val;
  by_creator_t *c = arg;
  if (strcmp(g->creator, c->creator) != 0) return;
  c->n++;
  c->members += m5_hmap_count(g->members);
}

size_t groups_created_by(struct groups_state *s, const char *creator) {
  by_creator_t c = {creator, 0, 0};
  m5_hmap_foreach(s->map, count_creator, &c);
  return c.n;
}

/* M5_ERANGE (with why) when adding `more` members to groups creator made would exceed
 * groups.max_members_per_as (an operator's group, creator "", has no such budget). O(groups),
 * on the DB thread, once per change. */
int groups_creator_budget(struct groups_state *s, groups_job_t *job, const char *creator,
                          size_t more) {
  if (!creator[0] || !more) return 0;
  by_creator_t c = {creator, 0, 0};
  m5_hmap_foreach(s->map, count_creator, &c);
  if (c.members + more > s->lim.max_members_per_as) {
    job->why = "the groups this AS created would have more members than "
               "groups.max_members_per_as";
    return M5_ERANGE;
  }
  return 0;
}

void groups_set_hook(registry_t *r, groups_hook_fn fn, void *arg) {
  /* under the lock: on KV the watcher thread is already calling groups_tell */
  pthread_rwlock_wrlock(&r->groups->lock);
  r->groups->hook = fn;
  r->groups->hook_arg = arg;
  pthread_rwlock_unlock(&r->groups->lock);
}

int groups_submit(registry_t *r, groups_job_t *job) {
  job->rj.op = REGISTRY_GROUPS;
  return registry_submit(r, &job->rj);
}

void groups_job_clear(groups_job_t *job) {
  free(job->members);
  job->members = NULL;
  job->n_members = 0;
  free(job->attrs);
  job->attrs = NULL;
}

/* ---- the DB thread ---- */

uint64_t groups_next_gen(struct groups_state *s) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  uint64_t now = (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
  return now > s->last_gen ? now : s->last_gen + 1;
}

/* One statement (prepared once per job into *cache): nt text binds (NULL binds SQL NULL),
 * then ni integers. */
static int exec_stmt(registry_t *r, sqlite3_stmt **cache, const char *sql, int nt,
                     const char *t1, const char *t2, const char *t3, const char *t4, int ni,
                     int64_t i1, int64_t i2) {
  if (!*cache && sqlite3_prepare_v2(r->conn, sql, -1, cache, NULL) != SQLITE_OK) {
    M5_LOGE(DOM, "cannot prepare %s: %s", sql, sqlite3_errmsg(r->conn));
    return M5_EIO;
  }
  sqlite3_stmt *st = *cache;
  const char *t[4] = {t1, t2, t3, t4};
  int col = 1;
  for (int i = 0; i < nt && i < 4; i++)
    sqlite3_bind_text(st, col++, t[i], -1, SQLITE_STATIC);
  if (ni >= 1) sqlite3_bind_int64(st, col++, i1);
  if (ni >= 2) sqlite3_bind_int64(st, col, i2);
  return registry_step_done(r, st, "a group change");
}

typedef struct {
  sqlite3_stmt *ins_group, *upd_group, *del_group, *ins_member, *del_member, *del_members,
      *put_grant, *del_grant, *gen;
} stmts_t;

static void stmts_free(stmts_t *q) {
  sqlite3_stmt **v = (sqlite3_stmt **)q;
  for (size_t i = 0; i < sizeof *q / sizeof *v; i++)
    sqlite3_finalize(v[i]);
}

static int begin(registry_t *r) {
  if (registry_exec(r, "PRAGMA synchronous=FULL") != 0) return M5_EIO;
  return registry_exec(r, "BEGIN IMMEDIATE");
}

static int commit(registry_t *r, stmts_t *q, uint64_t gen, int rc) {
  if (rc == 0)
    rc = exec_stmt(r, &q->gen,
                   "INSERT INTO group_gen (k, last) VALUES (0, ?1)"
                   " ON CONFLICT (k) DO UPDATE SET last = excluded.last",
                   0, NULL, NULL, NULL, NULL, 1, (int64_t)gen, 0);
  if (rc == 0) rc = registry_exec(r, "COMMIT");
  if (rc != 0) registry_exec(r, "ROLLBACK");
  return rc;
}

static int ins_member(registry_t *r, stmts_t *q, const char *k, const char *id, const char *m,
                      uint64_t since) {
  return exec_stmt(r, &q->ins_member,
                   "INSERT INTO group_members (kind, id, member, since) VALUES (?1, ?2, ?3, ?4)",
                   3, k, id, m, NULL, 1, (int64_t)since, 0);
}

/* A member list from the job, deduplicated, each checked; 0 or M5_EINVAL / M5_ERANGE with why. */
int groups_check_members(struct groups_state *s, groups_job_t *job) {
  for (size_t i = 0; i < job->n_members; i++)
    if (!groups_principal_valid(job->members[i], job->kind == GROUPS_AREA)) {
      job->why = job->kind == GROUPS_AREA ? "an area's members are ue:<UE Service ID>"
                                          : "a member is ue:<UE Service ID> or as:<asSvcId>";
      return M5_EINVAL;
    }
  if (job->n_members > s->lim.max_members) {
    job->why = "more members than groups.max_members";
    return M5_ERANGE;
  }
  return 0;
}

int groups_apply_attrs(const char *old, const char *patch, char **out) {
  json_t *o = old ? json_loads(old, 0, NULL) : NULL;
  json_t *p = json_loads(patch, 0, NULL);
  if (!json_is_object(o)) {
    json_decref(o);
    o = json_object();
  }
  int rc = M5_EINVAL;
  if (o && json_is_object(p)) {
    const char *k;
    json_t *v;
    json_object_foreach(p, k, v) {
      if (json_is_null(v))
        json_object_del(o, k);
      else
        json_object_set(o, k, v);
    }
    *out = json_object_size(o) ? json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    rc = json_object_size(o) && !*out ? M5_ENOMEM : 0;
    if (rc == 0 && *out && strlen(*out) > GROUPS_ATTRS_MAX) {
      free(*out);
      *out = NULL;
      rc = M5_ERANGE;
    }
  }
  json_decref(o);
  json_decref(p);
  return rc;
}

typedef struct {
  groups_principal_t *v;
  size_t n;
} list_t;

static void collect(const void *key, size_t klen, void *val, void *arg) {
  (void)val;
  list_t *l = arg;
  if (klen <= GROUPS_PRINCIPAL_MAX) {
    memcpy(l->v[l->n], key, klen);
    l->v[l->n++][klen] = '\0';
  }
}

/* Every member of map (principal -> since) as a row. */
static int insert_all(registry_t *r, stmts_t *q, const char *k, const char *id, m5_hmap_t *map) {
  size_t n = m5_hmap_count(map);
  list_t l = {calloc(n ? n : 1, sizeof *l.v), 0};
  if (!l.v) return M5_ENOMEM;
  m5_hmap_foreach(map, collect, &l);
  int rc = 0;
  for (size_t i = 0; rc == 0 && i < l.n; i++) {
    uint64_t *since = m5_hmap_get(map, l.v[i], strlen(l.v[i]));
    rc = ins_member(r, q, k, id, l.v[i], since ? *since : 0);
  }
  free(l.v);
  return rc;
}

/* The group's row after a change: its attributes and the generation of the change. */
static int touch_group(registry_t *r, stmts_t *q, const char *k, const char *id,
                       const char *attrs, uint64_t gen) {
  return exec_stmt(r, &q->upd_group, "UPDATE groups SET attrs = ?3, gen = ?4 WHERE kind = ?1 AND id = ?2",
                   3, k, id, attrs, NULL, 1, (int64_t)gen, 0);
}

static int do_create(registry_t *r, struct groups_state *s, groups_job_t *job, stmts_t *q) {
  const char *k = groups_kind_name(job->kind);
  if (mem_get(s, job->kind, job->id)) {
    job->found = 1;
    return M5_EEXIST;
  }
  int rc = groups_check_members(s, job);
  if (rc != 0) return rc;
  if (job->creator[0] && (job->kind == GROUPS_AREA || !groups_principal_valid(job->creator, 0))) {
    job->why = "creator";
    return M5_EINVAL;
  }
  if (m5_hmap_count(s->map) >= s->lim.max_groups) {
    job->why = "as many groups and areas as groups.max_groups";
    return M5_ERANGE;
  }
  if (job->creator[0]) {
    if (groups_created_by(s, job->creator) >= s->lim.max_per_as) {
      job->why = "this AS created as many groups as groups.max_groups_per_as";
      return M5_ERANGE;
    }
  }
  uint64_t gen = groups_next_gen(s);
  group_t *g = group_new(job->kind, job->id);
  if (!g) return M5_ENOMEM;
  snprintf(g->creator, sizeof g->creator, "%s", job->creator);
  g->gen = gen;
  g->created_at = (int64_t)time(NULL);
  rc = job->attrs ? groups_apply_attrs(NULL, job->attrs, &g->attrs) : 0;
  for (size_t i = 0; rc == 0 && i < job->n_members; i++)
    rc = member_put(g, job->members[i], gen); /* deduplicates */
  size_t n = m5_hmap_count(g->members);
  if (rc == 0 && s->total_members + n > s->lim.max_total_members) {
    job->why = "more members in all than groups.max_total_members";
    rc = M5_ERANGE;
  }
  if (rc == 0) rc = groups_creator_budget(s, job, job->creator, n);
  if (rc == 0 && job->creator[0]) {
    if (!(g->grants = calloc(1, sizeof *g->grants))) rc = M5_ENOMEM;
    else {
      memcpy(g->grants[0].principal, job->creator, sizeof job->creator);
      g->grants[0].rights = GROUPS_RIGHT_SEND | GROUPS_RIGHT_MANAGE;
      g->n_grants = 1;
    }
  }
  if (rc == 0) rc = begin(r);
  if (rc != 0) {
    groups_group_free(g);
    return rc;
  }
  rc = exec_stmt(r, &q->ins_group,
                 "INSERT INTO groups (kind, id, creator, attrs, gen, created_at)"
                 " VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                 4, k, job->id, g->creator, g->attrs, 2, (int64_t)gen, g->created_at);
  if (rc == 0) rc = insert_all(r, q, k, job->id, g->members);
  if (rc == 0 && g->n_grants)
    rc = exec_stmt(r, &q->put_grant,
                   "INSERT INTO group_grants (kind, id, principal, rights) VALUES (?1, ?2, ?3, ?4)"
                   " ON CONFLICT (kind, id, principal) DO UPDATE SET rights = excluded.rights",
                   3, k, job->id, g->grants[0].principal, NULL, 1, g->grants[0].rights, 0);
  rc = commit(r, q, gen, rc);
  if (rc != 0) {
    groups_group_free(g);
    return rc;
  }
  s->last_gen = job->gen = gen;
  job->created = 1;
  char key[GROUPS_KEY_MAX];
  pthread_rwlock_wrlock(&s->lock);
  if (m5_hmap_put(s->map, key, groups_key(job->kind, job->id, key), g, NULL) != 0) {
    M5_LOGE(DOM, "out of memory: %s %s stored but not loaded until restart", k, job->id);
    groups_group_free(g);
    g = NULL;
    rc = M5_ENOMEM;
  } else {
    s->total_members += n;
  }
  pthread_rwlock_unlock(&s->lock);
  return rc;
}

void groups_tell(struct groups_state *s, group_t *g, groups_event_t ev, const char *member) {
  pthread_rwlock_rdlock(&s->lock);
  groups_hook_fn fn = s->hook;
  void *arg = s->hook_arg;
  pthread_rwlock_unlock(&s->lock);
  if (fn) fn(arg, g->kind, g->id, ev, member, g->gen);
}

static int do_delete(registry_t *r, struct groups_state *s, groups_job_t *job, stmts_t *q) {
  group_t *g = mem_get(s, job->kind, job->id);
  if (!g) return M5_ENOENT;
  job->found = 1;
  uint64_t gen = groups_next_gen(s);
  int rc = begin(r);
  if (rc != 0) return rc;
  rc = exec_stmt(r, &q->del_group, "DELETE FROM groups WHERE kind = ?1 AND id = ?2",
                 2, groups_kind_name(job->kind), job->id, NULL, NULL, 0, 0, 0);
  if ((rc = commit(r, q, gen, rc)) != 0) return rc;
  s->last_gen = job->gen = gen;
  char key[GROUPS_KEY_MAX];
  pthread_rwlock_wrlock(&s->lock);
  m5_hmap_del(s->map, key, groups_key(job->kind, job->id, key));
  s->total_members -= m5_hmap_count(g->members);
  pthread_rwlock_unlock(&s->lock);
  g->gen = gen;
  groups_tell(s, g, GROUPS_EV_DELETED, "");
  groups_group_free(g);
  return 0;
}

static int do_update(registry_t *r, struct groups_state *s, groups_job_t *job, stmts_t *q) {
  const char *k = groups_kind_name(job->kind);
  group_t *g = mem_get(s, job->kind, job->id);
  if (!g) return M5_ENOENT;
  job->found = 1;
  int rc = job->set_members ? groups_check_members(s, job) : 0;
  if (rc != 0) return rc;
  uint64_t gen = groups_next_gen(s);
  char *attrs = NULL;
  int set_attrs = job->attrs || job->replace_attrs;
  if (job->attrs &&
      (rc = groups_apply_attrs(job->replace_attrs ? NULL : g->attrs, job->attrs, &attrs)) != 0) {
    job->why = rc == M5_ERANGE ? "the attributes are too long" : "attributes";
    return rc;
  }
  m5_hmap_t *fresh = NULL;
  list_t removed = {0};
  if (job->set_members) {
    if (!(fresh = m5_hmap_new())) rc = M5_ENOMEM;
    for (size_t i = 0; rc == 0 && i < job->n_members; i++) {
      const char *m = job->members[i];
      uint64_t *old = m5_hmap_get(g->members, m, strlen(m));
      uint64_t *v = malloc(sizeof *v);
      void *dup = NULL; /* the same member twice in the list */
      if (!v || m5_hmap_put(fresh, m, strlen(m), v, &dup) != 0) {
        free(v);
        rc = M5_ENOMEM;
      } else {
        *v = old ? *old : gen;
        free(dup);
      }
    }
    list_t kept = {0};
    if (rc == 0 && job->keep_as_members) {
      size_t n = m5_hmap_count(g->members);
      if (!(kept.v = calloc(n ? n : 1, sizeof *kept.v))) rc = M5_ENOMEM;
      if (rc == 0) m5_hmap_foreach(g->members, collect, &kept);
      for (size_t i = 0; rc == 0 && i < kept.n; i++) {
        if (strncmp(kept.v[i], "as:", 3) != 0) continue;
        uint64_t *old = m5_hmap_get(g->members, kept.v[i], strlen(kept.v[i]));
        uint64_t *v = malloc(sizeof *v);
        void *dup = NULL;
        if (!v || m5_hmap_put(fresh, kept.v[i], strlen(kept.v[i]), v, &dup) != 0) {
          free(v);
          rc = M5_ENOMEM;
        } else {
          *v = *old;
          free(dup);
        }
      }
      free(kept.v);
    }
    size_t n_old = m5_hmap_count(g->members), n_new = fresh ? m5_hmap_count(fresh) : 0;
    if (rc == 0 && n_new > s->lim.max_members) {
      job->why = "more members than groups.max_members";
      rc = M5_ERANGE;
    }
    if (rc == 0 && n_new > n_old && s->total_members + (n_new - n_old) > s->lim.max_total_members) {
      job->why = "more members in all than groups.max_total_members";
      rc = M5_ERANGE;
    }
    if (rc == 0 && n_new > n_old) rc = groups_creator_budget(s, job, g->creator, n_new - n_old);
    if (rc == 0 && !(removed.v = calloc(n_old ? n_old : 1, sizeof *removed.v))) rc = M5_ENOMEM;
    if (rc == 0) {
      list_t all = {removed.v, 0};
      m5_hmap_foreach(g->members, collect, &all);
      for (size_t i = 0; i < all.n; i++)
        if (!m5_hmap_get(fresh, all.v[i], strlen(all.v[i])))
          memmove(removed.v[removed.n++], all.v[i], sizeof all.v[i]);
    }
  }
  if (rc == 0) rc = begin(r);
  if (rc != 0) {
    if (fresh) m5_hmap_free(fresh, free_since);
    free(removed.v);
    free(attrs);
    return rc;
  }
  rc = touch_group(r, q, k, job->id, set_attrs ? attrs : g->attrs, gen);
  if (rc == 0 && job->set_members) {
    rc = exec_stmt(r, &q->del_members, "DELETE FROM group_members WHERE kind = ?1 AND id = ?2", 2,
                   k, job->id, NULL, NULL, 0, 0, 0);
    if (rc == 0) rc = insert_all(r, q, k, job->id, fresh);
  }
  if ((rc = commit(r, q, gen, rc)) != 0) {
    if (fresh) m5_hmap_free(fresh, free_since);
    free(removed.v);
    free(attrs);
    return rc;
  }
  s->last_gen = job->gen = gen;
  pthread_rwlock_wrlock(&s->lock);
  g->gen = gen;
  if (set_attrs) {
    free(g->attrs);
    g->attrs = attrs;
  }
  if (fresh) {
    s->total_members = s->total_members - m5_hmap_count(g->members) + m5_hmap_count(fresh);
    m5_hmap_free(g->members, free_since);
    g->members = fresh;
  }
  pthread_rwlock_unlock(&s->lock);
  for (size_t i = 0; i < removed.n; i++)
    groups_tell(s, g, GROUPS_EV_MEMBER_REMOVED, removed.v[i]);
  free(removed.v);
  return 0;
}

static int do_member(registry_t *r, struct groups_state *s, groups_job_t *job, stmts_t *q) {
  const char *k = groups_kind_name(job->kind), *m = job->principal;
  group_t *g = mem_get(s, job->kind, job->id);
  if (!g) return M5_ENOENT;
  job->found = 1;
  int add = job->op == GROUPS_ADD_MEMBER;
  if (!groups_principal_valid(m, job->kind == GROUPS_AREA)) {
    job->why = job->kind == GROUPS_AREA ? "an area's members are ue:<UE Service ID>"
                                        : "a member is ue:<UE Service ID> or as:<asSvcId>";
    return M5_EINVAL;
  }
  uint64_t *cur = m5_hmap_get(g->members, m, strlen(m));
  job->gen = g->gen;
  if (add && cur) return 0; /* already a member: nothing changes, since is kept */
  if (!add && !cur) return M5_ENOENT;
  if (add && m5_hmap_count(g->members) >= s->lim.max_members) {
    job->why = "as many members as groups.max_members";
    return M5_ERANGE;
  }
  if (add && s->total_members >= s->lim.max_total_members) {
    job->why = "as many members in all as groups.max_total_members";
    return M5_ERANGE;
  }
  if (add && groups_creator_budget(s, job, g->creator, 1) != 0) return M5_ERANGE;
  uint64_t gen = groups_next_gen(s);
  uint64_t *v = add ? malloc(sizeof *v) : NULL;
  if (add && !v) return M5_ENOMEM;
  int rc = begin(r);
  if (rc == 0)
    rc = add ? ins_member(r, q, k, job->id, m, gen)
             : exec_stmt(r, &q->del_member,
                         "DELETE FROM group_members WHERE kind = ?1 AND id = ?2 AND member = ?3",
                         3, k, job->id, m, NULL, 0, 0, 0);
  if (rc == 0)
    rc = touch_group(r, q, k, job->id, g->attrs, gen);
  if ((rc = commit(r, q, gen, rc)) != 0) {
    free(v);
    return rc;
  }
  s->last_gen = job->gen = gen;
  pthread_rwlock_wrlock(&s->lock);
  g->gen = gen;
  if (add) {
    *v = gen;
    if (m5_hmap_put(g->members, m, strlen(m), v, NULL) != 0) {
      free(v);
      rc = M5_ENOMEM;
      M5_LOGE(DOM, "out of memory: member of %s stored but not loaded until restart", job->id);
    } else {
      s->total_members++;
    }
  } else {
    free(m5_hmap_del(g->members, m, strlen(m)));
    s->total_members--;
  }
  pthread_rwlock_unlock(&s->lock);
  job->created = add;
  if (!add) groups_tell(s, g, GROUPS_EV_MEMBER_REMOVED, m);
  return rc;
}

static int do_add_members(registry_t *r, struct groups_state *s, groups_job_t *job, stmts_t *q) {
  const char *k = groups_kind_name(job->kind);
  group_t *g = mem_get(s, job->kind, job->id);
  if (!g) return M5_ENOENT;
  job->found = 1;
  int rc = groups_check_members(s, job);
  if (rc != 0) return rc;
  job->gen = g->gen;
  /* the new ones, each once */
  m5_hmap_t *fresh = m5_hmap_new();
  if (!fresh) return M5_ENOMEM;
  uint64_t gen = groups_next_gen(s);
  for (size_t i = 0; rc == 0 && i < job->n_members; i++) {
    const char *m = job->members[i];
    if (m5_hmap_get(g->members, m, strlen(m)) || m5_hmap_get(fresh, m, strlen(m))) continue;
    uint64_t *v = malloc(sizeof *v);
    if (!v || m5_hmap_put(fresh, m, strlen(m), v, NULL) != 0) {
      free(v);
      rc = M5_ENOMEM;
    } else {
      *v = gen;
    }
  }
  size_t n = m5_hmap_count(fresh);
  if (rc == 0 && m5_hmap_count(g->members) + n > s->lim.max_members) {
    job->why = "more members than groups.max_members";
    rc = M5_ERANGE;
  }
  if (rc == 0 && s->total_members + n > s->lim.max_total_members) {
    job->why = "more members in all than groups.max_total_members";
    rc = M5_ERANGE;
  }
  if (rc == 0) rc = groups_creator_budget(s, job, g->creator, n);
  list_t l = {NULL, 0};
  if (rc == 0 && n && !(l.v = calloc(n, sizeof *l.v))) rc = M5_ENOMEM;
  if (rc != 0 || n == 0) {
    m5_hmap_free(fresh, free_since);
    return rc;
  }
  m5_hmap_foreach(fresh, collect, &l);
  rc = begin(r);
  if (rc == 0) {
    rc = insert_all(r, q, k, job->id, fresh);
    if (rc == 0)
      rc = touch_group(r, q, k, job->id, g->attrs, gen);
    rc = commit(r, q, gen, rc);
  }
  if (rc != 0) {
    m5_hmap_free(fresh, free_since);
    free(l.v);
    return rc;
  }
  s->last_gen = job->gen = gen;
  pthread_rwlock_wrlock(&s->lock);
  g->gen = gen;
  for (size_t i = 0; i < l.n; i++) {
    uint64_t *v = m5_hmap_del(fresh, l.v[i], strlen(l.v[i]));
    if (v && m5_hmap_put(g->members, l.v[i], strlen(l.v[i]), v, NULL) != 0) {
      free(v);
      rc = M5_ENOMEM;
    } else if (v) {
      s->total_members++;
    }
  }
  pthread_rwlock_unlock(&s->lock);
  if (rc != 0) M5_LOGE(DOM, "out of memory: members of %s stored but not loaded until restart", job->id);
  m5_hmap_free(fresh, free_since);
  free(l.v);
  job->created = (int)n;
  return rc;
}

int groups_grant_check(groups_job_t *job) {
  const char *p = job->principal;
  if (!groups_principal_valid(p, 0)) {
    job->why = "a grant names ue:<UE Service ID> or as:<asSvcId>";
    return M5_EINVAL;
  }
  if (job->op == GROUPS_GRANT &&
      (!job->rights || (job->rights & ~(GROUPS_RIGHT_SEND | GROUPS_RIGHT_MANAGE)) ||
       ((job->rights & GROUPS_RIGHT_MANAGE) &&
        (job->kind == GROUPS_AREA || strncmp(p, "as:", 3) != 0)))) {
    job->why = "rights: send, and manage for an AS on a group";
    return M5_EINVAL;
  }
  return 0;
}

static int do_grant(registry_t *r, struct groups_state *s, groups_job_t *job, stmts_t *q) {
  const char *k = groups_kind_name(job->kind), *p = job->principal;
  group_t *g = mem_get(s, job->kind, job->id);
  if (!g) return M5_ENOENT;
  job->found = 1;
  int grant = job->op == GROUPS_GRANT;
  int rc = groups_grant_check(job);
  if (rc) return rc;
  groups_grant_t *cur = grant_find(g, p);
  job->gen = g->gen;
  if (!grant && !cur) return M5_ENOENT;
  if (grant && cur && cur->rights == job->rights) return 0;
  if (grant && !cur && g->n_grants >= s->lim.max_grants) {
    job->why = "as many grants as groups.max_grants";
    return M5_ERANGE;
  }
  groups_grant_t *v = NULL;
  if (grant && !cur) {
    if (!(v = malloc((g->n_grants + 1) * sizeof *v))) return M5_ENOMEM;
    if (g->n_grants) memcpy(v, g->grants, g->n_grants * sizeof *v);
  }
  uint64_t gen = groups_next_gen(s);
  rc = begin(r);
  if (rc == 0)
    rc = grant ? exec_stmt(r, &q->put_grant,
                           "INSERT INTO group_grants (kind, id, principal, rights)"
                           " VALUES (?1, ?2, ?3, ?4) ON CONFLICT (kind, id, principal)"
                           " DO UPDATE SET rights = excluded.rights",
                           3, k, job->id, p, NULL, 1, job->rights, 0)
               : exec_stmt(r, &q->del_grant,
                           "DELETE FROM group_grants WHERE kind = ?1 AND id = ?2 AND principal = ?3",
                           3, k, job->id, p, NULL, 0, 0, 0);
  if (rc == 0)
    rc = touch_group(r, q, k, job->id, g->attrs, gen);
  if ((rc = commit(r, q, gen, rc)) != 0) {
    free(v);
    return rc;
  }
  s->last_gen = job->gen = gen;
  pthread_rwlock_wrlock(&s->lock);
  g->gen = gen;
  if (v) {
    free(g->grants);
    g->grants = v;
    memcpy(v[g->n_grants].principal, p, sizeof v[0].principal);
    v[g->n_grants++].rights = job->rights;
  } else if (grant) {
    cur->rights = job->rights;
  } else {
    size_t i = (size_t)(cur - g->grants);
    memmove(&g->grants[i], &g->grants[i + 1], (g->n_grants - i - 1) * sizeof *cur);
    g->n_grants--;
  }
  pthread_rwlock_unlock(&s->lock);
  job->created = grant && !cur;
  return 0;
}

void groups_run(registry_t *r, registry_job_t *rj) {
  groups_job_t *job = (groups_job_t *)rj;
  struct groups_state *s = r->groups;
  stmts_t q;
  memset(&q, 0, sizeof q);
  job->created = job->found = 0;
  job->why = NULL;
  job->gen = 0;
  if (!m5_msg_name_valid(job->id)) {
    job->why = "the name must be 1-128 characters of A-Z a-z 0-9 . _ : -";
    job->status = M5_EINVAL;
  } else if (s->js) { /* store.backend jetstream: in KV (groups_js_ops.c) */
    groups_js_run(r, job);
  } else {
    switch (job->op) {
    case GROUPS_CREATE:
      job->status = do_create(r, s, job, &q);
      break;
    case GROUPS_DELETE:
      job->status = do_delete(r, s, job, &q);
      break;
    case GROUPS_UPDATE:
      job->status = do_update(r, s, job, &q);
      break;
    case GROUPS_ADD_MEMBER:
    case GROUPS_DEL_MEMBER:
      job->status = do_member(r, s, job, &q);
      break;
    case GROUPS_ADD_MEMBERS:
      job->status = do_add_members(r, s, job, &q);
      break;
    case GROUPS_GRANT:
    case GROUPS_REVOKE:
      job->status = do_grant(r, s, job, &q);
      break;
    default:
      job->status = M5_EINVAL;
      break;
    }
  }
  stmts_free(&q);
  rj->status = job->status;
}
