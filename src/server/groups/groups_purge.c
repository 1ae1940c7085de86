/* The hand-over of an identifier (groups_int.h "hand-over"): when a UE Service ID is re-bound to
 * another SUPI or un-bound, or an AS client is deleted, its memberships and grants on every
 * group and area go, and so do the groups an AS created through SEAL GM (TS 29.549; created
 * groups belong to the client, not to whoever gets its asSvcId next). The rows are removed in
 * the registry job's own transaction, so the hand-over and the purge commit together; the memory
 * copy and the hook follow the commit, as for every GROUPS_* job (groups.h "contract with the
 * fan-out"): a delivery queued for the old holder fails, never reaches the new one. */
#include "server/groups/groups_int.h"
#include "server/registry/registry_int.h"

#include "core/err.h"
#include "core/log.h"

#include <stdlib.h>
#include <string.h>

#define DOM "groups"

typedef struct {
  group_t *g;
  int drop;   /* the group goes (created by principal) */
  int member; /* principal is a member */
  int grant;  /* principal holds a grant */
} entry_t;

struct groups_purge {
  groups_principal_t principal;
  uint64_t gen;
  entry_t *v;
  size_t n, cap;
  int drop_created;
  int oom;
};

static void scan(const void *key, size_t klen, void *val, void *arg) {
  (void)key;
  (void)klen;
  group_t *g = val;
  groups_purge_t *p = arg;
  const char *who = p->principal;
  entry_t e = {g, 0, 0, 0};
  e.drop = p->drop_created && g->kind == GROUPS_GROUP && !strcmp(g->creator, who);
  e.member = m5_hmap_get(g->members, who, strlen(who)) != NULL;
  for (size_t i = 0; i < g->n_grants && !e.grant; i++)
    e.grant = !strcmp(g->grants[i].principal, who);
  if (p->oom || !(e.drop || e.member || e.grant)) return;
  if (p->n == p->cap) {
    size_t cap = p->cap ? 2 * p->cap : 8;
    entry_t *v = realloc(p->v, cap * sizeof *v);
    if (!v) {
      p->oom = 1;
      return;
    }
    p->v = v;
    p->cap = cap;
  }
  p->v[p->n++] = e;
}

/* One statement with text binds t[0..nt) and, when gen, ?(nt+1) = gen. */
static int run(registry_t *r, const char *sql, int nt, const char *const *t, int64_t gen,
               int with_gen) {
  sqlite3_stmt *st = NULL;
  if (sqlite3_prepare_v2(r->conn, sql, -1, &st, NULL) != SQLITE_OK) {
    M5_LOGE(DOM, "cannot prepare %s: %s", sql, sqlite3_errmsg(r->conn));
    return M5_EIO;
  }
  for (int i = 0; i < nt; i++)
    sqlite3_bind_text(st, i + 1, t[i], -1, SQLITE_STATIC);
  if (with_gen) sqlite3_bind_int64(st, nt + 1, gen);
  int rc = registry_step_done(r, st, "a hand-over's group change");
  sqlite3_finalize(st);
  return rc;
}

void groups_purge_abort(groups_purge_t *p) {
  if (!p) return;
  free(p->v);
  free(p);
}

int groups_purge_stage(registry_t *r, const char *principal, int drop_created,
                       groups_purge_t **out) {
  struct groups_state *s = groups_state(r);
  *out = NULL;
  if (strlen(principal) > GROUPS_PRINCIPAL_MAX) return 0; /* cannot be in any group */
  groups_purge_t *p = calloc(1, sizeof *p);
  if (!p) return M5_ENOMEM;
  memcpy(p->principal, principal, strlen(principal) + 1);
  p->drop_created = drop_created;
  /* the DB thread is the only writer of the memory copy: it reads it without the lock */
  m5_hmap_foreach(s->map, scan, p);
  if (p->oom || p->n == 0) {
    int rc = p->oom ? M5_ENOMEM : 0;
    groups_purge_abort(p);
    return rc;
  }
  p->gen = groups_next_gen(s);
  int64_t gen = (int64_t)p->gen;
  int rc = 0;
  for (size_t i = 0; rc == 0 && i < p->n; i++) {
    const entry_t *e = &p->v[i];
    const char *t[3] = {groups_kind_name(e->g->kind), e->g->id, principal};
    if (e->drop) { /* members and grants go with it (ON DELETE CASCADE) */
      rc = run(r, "DELETE FROM groups WHERE kind = ?1 AND id = ?2", 2, t, 0, 0);
      continue;
    }
    if (e->member)
      rc = run(r, "DELETE FROM group_members WHERE kind = ?1 AND id = ?2 AND member = ?3", 3, t, 0,
               0);
    if (rc == 0 && e->grant)
      rc = run(r, "DELETE FROM group_grants WHERE kind = ?1 AND id = ?2 AND principal = ?3", 3, t,
               0, 0);
    if (rc == 0)
      rc = run(r, "UPDATE groups SET gen = ?3 WHERE kind = ?1 AND id = ?2", 2, t, gen, 1);
  }
  if (rc == 0)
    rc = run(r,
             "INSERT INTO group_gen (k, last) VALUES (0, ?1)"
             " ON CONFLICT (k) DO UPDATE SET last = excluded.last",
             0, NULL, gen, 1);
  if (rc != 0) {
    groups_purge_abort(p);
    return rc;
  }
  *out = p;
  return 0;
}

void groups_purge_apply(registry_t *r, groups_purge_t *p) {
  if (!p) return;
  struct groups_state *s = groups_state(r);
  const char *who = p->principal;
  s->last_gen = p->gen;
  pthread_rwlock_wrlock(&s->lock);
  for (size_t i = 0; i < p->n; i++) {
    group_t *g = p->v[i].g;
    g->gen = p->gen;
    if (p->v[i].drop) {
      char key[GROUPS_KEY_MAX];
      m5_hmap_del(s->map, key, groups_key(g->kind, g->id, key));
      s->total_members -= m5_hmap_count(g->members);
      continue;
    }
    if (p->v[i].member) {
      free(m5_hmap_del(g->members, who, strlen(who)));
      s->total_members--;
    }
    for (size_t k = 0; p->v[i].grant && k < g->n_grants; k++)
      if (!strcmp(g->grants[k].principal, who)) {
        memmove(&g->grants[k], &g->grants[k + 1], (g->n_grants - k - 1) * sizeof *g->grants);
        g->n_grants--;
        break;
      }
  }
  pthread_rwlock_unlock(&s->lock);
  size_t dropped = 0, left = 0, revoked = 0;
  for (size_t i = 0; i < p->n; i++) {
    group_t *g = p->v[i].g;
    if (p->v[i].drop) {
      groups_tell(s, g, GROUPS_EV_DELETED, "");
      groups_group_free(g);
      dropped++;
      continue;
    }
    if (p->v[i].member) {
      groups_tell(s, g, GROUPS_EV_MEMBER_REMOVED, who);
      left++;
    }
    revoked += p->v[i].grant != 0;
  }
  M5_LOGI(DOM, "%s handed over: %zu created groups deleted, %zu memberships and %zu grants dropped",
          who, dropped, left, revoked);
  groups_purge_abort(p);
}
