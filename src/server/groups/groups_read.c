/* Reading groups and areas (groups.h) from any thread: under the read lock of the in-memory
 * copy, which only the registry's DB thread writes, right after each commit. */
#include "server/groups/groups_int.h"

#include "core/err.h"

#include <stdlib.h>
#include <string.h>

static const group_t *find(struct groups_state *s, groups_kind_t kind, const char *id) {
  char key[GROUPS_KEY_MAX];
  size_t n = groups_key(kind, id, key);
  return m5_hmap_get(s->map, key, n);
}

static unsigned rights_of(const group_t *g, const char *principal) {
  for (size_t i = 0; i < g->n_grants; i++)
    if (!strcmp(g->grants[i].principal, principal)) return g->grants[i].rights;
  return 0;
}

int groups_get(registry_t *r, groups_kind_t kind, const char *id, groups_info_t *out) {
  struct groups_state *s = groups_state(r);
  memset(out, 0, sizeof *out);
  int rc = M5_ENOENT;
  pthread_rwlock_rdlock(&s->lock);
  const group_t *g = find(s, kind, id);
  if (g) {
    rc = 0;
    out->kind = g->kind;
    memcpy(out->id, g->id, sizeof out->id);
    memcpy(out->creator, g->creator, sizeof out->creator);
    out->gen = g->gen;
    out->created_at = g->created_at;
    out->n_members = m5_hmap_count(g->members);
    if (g->n_grants && !(out->grants = malloc(g->n_grants * sizeof *out->grants))) rc = M5_ENOMEM;
    if (rc == 0 && g->n_grants) {
      memcpy(out->grants, g->grants, g->n_grants * sizeof *out->grants);
      out->n_grants = g->n_grants;
    }
    if (rc == 0 && g->attrs && !(out->attrs = strdup(g->attrs))) rc = M5_ENOMEM;
  }
  pthread_rwlock_unlock(&s->lock);
  if (rc != 0) groups_info_clear(out);
  return rc;
}

void groups_info_clear(groups_info_t *info) {
  free(info->grants);
  free(info->attrs);
  info->grants = NULL;
  info->attrs = NULL;
  info->n_grants = 0;
}

typedef struct {
  groups_member_t *v;
  size_t n, cap;
} members_t;

static void add_member(const void *key, size_t klen, void *val, void *arg) {
  members_t *m = arg;
  if (m->n == m->cap || klen > GROUPS_PRINCIPAL_MAX) return;
  memcpy(m->v[m->n].principal, key, klen);
  m->v[m->n].principal[klen] = '\0';
  m->v[m->n++].since = *(const uint64_t *)val;
}

static int by_principal(const void *a, const void *b) {
  return strcmp(((const groups_member_t *)a)->principal, ((const groups_member_t *)b)->principal);
}

int groups_members(registry_t *r, groups_kind_t kind, const char *id, groups_member_t **out,
                   size_t *n, uint64_t *gen) {
  struct groups_state *s = groups_state(r);
  *out = NULL;
  *n = 0;
  int rc = M5_ENOENT;
  members_t m = {0};
  pthread_rwlock_rdlock(&s->lock);
  const group_t *g = find(s, kind, id);
  if (g) {
    m.cap = m5_hmap_count(g->members);
    /* one allocation under the read lock: the copy is the snapshot "as of now" */
    m.v = malloc((m.cap ? m.cap : 1) * sizeof *m.v);
    rc = m.v ? 0 : M5_ENOMEM;
    if (rc == 0) m5_hmap_foreach(g->members, add_member, &m);
    if (gen) *gen = g->gen;
  }
  pthread_rwlock_unlock(&s->lock);
  if (rc != 0) {
    free(m.v);
    return rc;
  }
  qsort(m.v, m.n, sizeof *m.v, by_principal);
  *out = m.v;
  *n = m.n;
  return 0;
}

typedef struct {
  groups_kind_t kind;
  const char *principal;
  char (*ids)[M5_MSG_NAME_MAX + 1];
  size_t n, cap;
  int oom;
} managed_t;

static void add_managed(const void *key, size_t klen, void *val, void *arg) {
  (void)key;
  (void)klen;
  const group_t *g = val;
  managed_t *m = arg;
  if (m->oom || g->kind != m->kind || !(rights_of(g, m->principal) & GROUPS_RIGHT_MANAGE)) return;
  if (m->n == m->cap) {
    size_t cap = m->cap ? 2 * m->cap : 16;
    void *v = realloc(m->ids, cap * sizeof *m->ids);
    if (!v) {
      m->oom = 1;
      return;
    }
    m->ids = v;
    m->cap = cap;
  }
  memcpy(m->ids[m->n++], g->id, sizeof g->id);
}

static int by_id(const void *a, const void *b) {
  return strcmp(a, b);
}

int groups_managed_by(registry_t *r, groups_kind_t kind, const char *principal,
                      char (**ids)[M5_MSG_NAME_MAX + 1], size_t *n) {
  struct groups_state *s = groups_state(r);
  managed_t m = {.kind = kind, .principal = principal};
  pthread_rwlock_rdlock(&s->lock);
  m5_hmap_foreach(s->map, add_managed, &m);
  pthread_rwlock_unlock(&s->lock);
  if (m.oom) {
    free(m.ids);
    return M5_ENOMEM;
  }
  if (m.n) qsort(m.ids, m.n, sizeof *m.ids, by_id);
  *ids = m.ids;
  *n = m.n;
  return 0;
}

int groups_may_send(registry_t *r, groups_kind_t kind, const char *id, const char *sender) {
  struct groups_state *s = groups_state(r);
  pthread_rwlock_rdlock(&s->lock);
  const group_t *g = find(s, kind, id);
  int ok = g && ((rights_of(g, sender) & GROUPS_RIGHT_SEND) ||
                 (kind == GROUPS_GROUP && m5_hmap_get(g->members, sender, strlen(sender))));
  pthread_rwlock_unlock(&s->lock);
  return ok;
}

int groups_may_manage(registry_t *r, const char *id, const char *as_svc_id) {
  struct groups_state *s = groups_state(r);
  groups_principal_t p;
  size_t n = strlen(as_svc_id);
  if (n > M5_MSG_ADDR_MAX) return 0;
  memcpy(p, "as:", 3);
  memcpy(p + 3, as_svc_id, n + 1);
  pthread_rwlock_rdlock(&s->lock);
  const group_t *g = find(s, GROUPS_GROUP, id);
  int ok = g && (rights_of(g, p) & GROUPS_RIGHT_MANAGE);
  pthread_rwlock_unlock(&s->lock);
  return ok;
}

int groups_delivery_valid(registry_t *r, groups_kind_t kind, const char *id, const char *member,
                          uint64_t gen) {
  struct groups_state *s = groups_state(r);
  pthread_rwlock_rdlock(&s->lock);
  const group_t *g = find(s, kind, id);
  const uint64_t *since = g ? m5_hmap_get(g->members, member, strlen(member)) : NULL;
  int ok = since && *since <= gen;
  pthread_rwlock_unlock(&s->lock);
  return ok ? 0 : M5_ENOENT;
}

typedef struct {
  groups_kind_t kind;
  size_t n;
} count_t;

static void count_kind(const void *key, size_t klen, void *val, void *arg) {
  (void)key;
  (void)klen;
  count_t *c = arg;
  if (((const group_t *)val)->kind == c->kind) c->n++;
}

size_t groups_size(registry_t *r, groups_kind_t kind, const char *id) {
  struct groups_state *s = groups_state(r);
  pthread_rwlock_rdlock(&s->lock);
  const group_t *g = find(s, kind, id);
  size_t n = g ? m5_hmap_count(g->members) : 0;
  pthread_rwlock_unlock(&s->lock);
  return n;
}

int groups_exists(registry_t *r, groups_kind_t kind, const char *id) {
  struct groups_state *s = groups_state(r);
  pthread_rwlock_rdlock(&s->lock);
  int ok = find(s, kind, id) != NULL;
  pthread_rwlock_unlock(&s->lock);
  return ok;
}

size_t groups_count(registry_t *r, groups_kind_t kind) {
  struct groups_state *s = groups_state(r);
  count_t c = {kind, 0};
  pthread_rwlock_rdlock(&s->lock);
  m5_hmap_foreach(s->map, count_kind, &c);
  pthread_rwlock_unlock(&s->lock);
  return c.n;
}
