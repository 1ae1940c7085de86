/* The GROUPS_* jobs on NATS KV (groups.h; the layout in groups_js_int.h), on the registry's DB
 * thread, with the rules of groups_store.c (the same checks, bounds, generations and answers).
 *
 * One job is one compare-and-set on the group's key first (it serialises the changes of one
 * group across nodes and hands out the change's generation), then the members' keys, each
 * a compare-and-set on its revision (create-only when new): there is no multi-key transaction
 * in KV. The order keeps the fan-out's contract (groups.h) at every step another node can see:
 * a new member's key is written after the group's generation it carries, so a message resolved
 * in between does not include it; a removed member's key goes after the new generation, so a
 * message resolved in between still has it and its delivery is then failed by the sweep the
 * removal triggers. A job answers once this node's watcher has applied its last write (read
 * your writes, as the registry does). A node that dies between the two steps leaves the group
 * at its new generation with the members not (all) written: the job was not answered, the
 * admin's retry completes it.
 *
 * The bounds (groups.max_*) are checked against this node's memory: two nodes adding members
 * at the same moment may pass a bound by what the other added meanwhile (docs/scale-out.md). */
#include "server/groups/groups_js_int.h"

#include "core/err.h"
#include "core/log.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define DOM "groups"
#define MEMBER_TRIES 8 /* conflicts in a row on one member key before the job gives up */

static uint64_t next_gen(struct groups_state *s, uint64_t cur) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  uint64_t now = (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
  uint64_t g = now > cur ? now : cur + 1;
  if (g <= s->last_gen) g = s->last_gen + 1; /* per node: only grows (DB thread) */
  return s->last_gen = g;
}

/* The group's value through the stream leader: 0 with *v (v->exists 0: absent or deleted) and
 * *rev (0: no key at all); M5_EIO. */
static int read_group(struct groups_js *gj, groups_kind_t kind, const char *id,
                      groups_js_val_t *v, uint64_t *rev) {
  char key[GROUPS_JS_KEY_MAX + 1];
  memset(v, 0, sizeof *v);
  *rev = 0;
  if (groups_js_gkey(kind, id, key) != 0) return M5_EINVAL;
  uint8_t *val = NULL;
  size_t n = 0;
  int rc = regjs_read(&gj->b, key, &val, &n, rev);
  if (rc == 0 && val && groups_js_val_parse(val, n, v) != 0) {
    M5_LOGE(DOM, "bucket %s: the value of %s is malformed", gj->b.name, key);
    rc = M5_EIO;
  }
  free(val);
  return rc;
}

/* The job's group as read through the leader, which must exist (job->found then): 0, M5_ENOENT
 * (nothing to clear), or the cluster's failure. */
static int read_existing(struct groups_js *gj, groups_job_t *job, groups_js_val_t *v,
                         uint64_t *rev) {
  int rc = read_group(gj, job->kind, job->id, v, rev);
  if (rc) return rc;
  if (!v->exists) {
    groups_js_val_clear(v);
    return M5_ENOENT;
  }
  job->found = 1;
  return 0;
}

/* v to the group's key by compare-and-set on rev (create-only when 0): 0 and *last raised to
 * the new revision; M5_EAGAIN (changed since it was read); M5_EIO; M5_ENOMEM. */
static int write_group(struct groups_js *gj, groups_kind_t kind, const char *id,
                       const groups_js_val_t *v, uint64_t rev, uint64_t *last) {
  char key[GROUPS_JS_KEY_MAX + 1];
  if (groups_js_gkey(kind, id, key) != 0) return M5_EINVAL;
  char *text = groups_js_val_text(v);
  if (!text) return M5_ENOMEM;
  uint64_t nr = 0;
  int rc = regjs_write(&gj->b, key, text, rev, &nr);
  free(text);
  if (rc == 0 && nr > *last) *last = nr;
  return rc;
}

/* A member's key set to since (since 0: its tombstone, only when it holds a member), starting
 * from rev (this node's memory; 0: unknown) and re-reading it through the leader on a conflict. */
static int write_member(struct groups_js *gj, groups_kind_t kind, const char *id, const char *p,
                        uint64_t since, uint64_t rev, uint64_t *last) {
  char key[GROUPS_JS_KEY_MAX + 1], text[64];
  if (groups_js_mkey(kind, id, p, key) != 0) return M5_EINVAL;
  if (since)
    snprintf(text, sizeof text, "{\"since\":%llu}", (unsigned long long)since);
  else
    snprintf(text, sizeof text, "{\"removed\":true}");
  int known = rev != 0 || since; /* a removal without a revision reads it first */
  for (int tries = 0; tries < MEMBER_TRIES; tries++) {
    if (!known) {
      uint8_t *val = NULL;
      size_t n = 0;
      int rc = regjs_read(&gj->b, key, &val, &n, &rev);
      int holds = val && !strstr((const char *)val, "\"removed\"");
      free(val);
      if (rc) return rc;
      if (!since && !holds) return 0; /* not a member (any more): nothing to remove */
    }
    uint64_t nr = 0;
    int rc = regjs_write(&gj->b, key, text, rev, &nr);
    if (rc == 0 && nr > *last) *last = nr;
    if (rc != M5_EAGAIN) return rc;
    known = 0; /* a tombstone of an earlier member, or a write of another node: read it */
  }
  M5_LOGE(DOM, "%s %s: the key of member %s kept changing", groups_kind_name(kind), id, p);
  return M5_EAGAIN;
}

/* Whether p is a member of the group created at cg, through the leader: *is, and *rev of its
 * key (0: none). A key left from an earlier group of that name (since below cg) is no member. */
static int read_member(struct groups_js *gj, groups_kind_t kind, const char *id, const char *p,
                       uint64_t cg, int *is, uint64_t *rev) {
  char key[GROUPS_JS_KEY_MAX + 1];
  *is = 0;
  if (groups_js_mkey(kind, id, p, key) != 0) return M5_EINVAL;
  uint8_t *val = NULL;
  size_t n = 0;
  int rc = regjs_read(&gj->b, key, &val, &n, rev);
  if (rc == 0 && val) {
    json_t *o = json_loadb((const char *)val, n, 0, NULL);
    json_t *since = json_object_get(o, "since");
    *is = json_is_integer(since) && (uint64_t)json_integer_value(since) >= cg;
    json_decref(o);
  }
  free(val);
  return rc;
}

/* ---- this node's memory (the watcher writes it; read under the lock) ---- */

typedef struct {
  groups_principal_t p;
  uint64_t rev;
  int removed; /* do_update: leaves the group */
} mref_t;

typedef struct {
  mref_t *v;
  size_t n, cap;
  int as_only; /* collect the AS members only */
} mlist_t;

static void collect(const void *key, size_t klen, void *val, void *arg) {
  mlist_t *l = arg;
  if (l->n == l->cap || klen > GROUPS_PRINCIPAL_MAX) return;
  if (l->as_only && (klen < 3 || memcmp(key, "as:", 3) != 0)) return;
  memcpy(l->v[l->n].p, key, klen);
  l->v[l->n].p[klen] = '\0';
  l->v[l->n++].rev = ((const groups_js_member_t *)val)->rev;
}

/* The members of the group in memory (with their keys' revisions): 0 (none when the group is
 * not in memory), M5_ENOMEM. */
static int members_of(struct groups_state *s, groups_kind_t kind, const char *id, int as_only,
                      mlist_t *l) {
  char key[GROUPS_KEY_MAX];
  size_t kl = groups_key(kind, id, key);
  memset(l, 0, sizeof *l);
  l->as_only = as_only;
  int rc = 0;
  pthread_rwlock_rdlock(&s->lock);
  const group_t *g = m5_hmap_get(s->map, key, kl);
  size_t n = g ? m5_hmap_count(g->members) : 0;
  if (n && !(l->v = calloc(n, sizeof *l->v))) rc = M5_ENOMEM;
  l->cap = l->v ? n : 0;
  if (l->v) m5_hmap_foreach(g->members, collect, l);
  pthread_rwlock_unlock(&s->lock);
  return rc;
}

/* Whether p is a member in memory: 1 with *rev, else 0. */
static int member_rev(struct groups_state *s, groups_kind_t kind, const char *id, const char *p,
                      uint64_t *rev) {
  char key[GROUPS_KEY_MAX];
  size_t kl = groups_key(kind, id, key);
  *rev = 0;
  pthread_rwlock_rdlock(&s->lock);
  const group_t *g = m5_hmap_get(s->map, key, kl);
  const groups_js_member_t *m = g ? m5_hmap_get(g->members, p, strlen(p)) : NULL;
  if (m) *rev = m->rev;
  pthread_rwlock_unlock(&s->lock);
  return m != NULL;
}

/* groups.max_members_per_as and groups.max_total_members for `more` members (under the lock). */
static int budget(struct groups_state *s, groups_job_t *job, const char *creator, size_t more) {
  pthread_rwlock_rdlock(&s->lock);
  int rc = 0;
  if (more && s->total_members + more > s->lim.max_total_members) {
    job->why = "more members in all than groups.max_total_members";
    rc = M5_ERANGE;
  }
  if (rc == 0) rc = groups_creator_budget(s, job, creator, more);
  pthread_rwlock_unlock(&s->lock);
  return rc;
}

static const char *member_why(groups_kind_t kind) {
  return kind == GROUPS_AREA ? "an area's members are ue:<UE Service ID>"
                             : "a member is ue:<UE Service ID> or as:<asSvcId>";
}

/* ---- the jobs: 0, or M5_EAGAIN when the group's key changed since it was read (the caller
 * runs the job again); *last: the highest revision written ---- */

/* The job's members, each once, into l; with in_memory, only those not members in this node's
 * memory yet (a new group: all of them, also while memory still holds a deleted one). */
static int new_members(struct groups_state *s, groups_job_t *job, int in_memory, mlist_t *l) {
  memset(l, 0, sizeof *l);
  m5_hmap_t *seen = m5_hmap_new();
  if (!seen || (job->n_members && !(l->v = calloc(job->n_members, sizeof *l->v)))) {
    if (seen) m5_hmap_free(seen, NULL);
    return M5_ENOMEM;
  }
  int rc = 0;
  for (size_t i = 0; rc == 0 && i < job->n_members; i++) {
    const char *m = job->members[i];
    uint64_t rev;
    if (m5_hmap_get(seen, m, strlen(m)) ||
        (in_memory && member_rev(s, job->kind, job->id, m, &rev)))
      continue;
    if (m5_hmap_put(seen, m, strlen(m), (void *)1, NULL) != 0) rc = M5_ENOMEM;
    else memcpy(l->v[l->n++].p, m, sizeof l->v[0].p);
  }
  m5_hmap_free(seen, NULL);
  return rc;
}

static int do_create(struct groups_js *gj, groups_job_t *job, uint64_t *last) {
  struct groups_state *s = groups_state(gj->r);
  groups_js_val_t cur, v;
  uint64_t rev;
  int rc = read_group(gj, job->kind, job->id, &cur, &rev);
  if (rc) return rc;
  uint64_t old_gen = cur.gen;
  int exists = cur.exists;
  groups_js_val_clear(&cur);
  if (exists) {
    job->found = 1;
    return M5_EEXIST;
  }
  if ((rc = groups_check_members(s, job)) != 0) return rc;
  if (job->creator[0] && (job->kind == GROUPS_AREA || !groups_principal_valid(job->creator, 0))) {
    job->why = "creator";
    return M5_EINVAL;
  }
  pthread_rwlock_rdlock(&s->lock);
  if (m5_hmap_count(s->map) >= s->lim.max_groups) {
    job->why = "as many groups and areas as groups.max_groups";
    rc = M5_ERANGE;
  } else if (job->creator[0] && groups_created_by(s, job->creator) >= s->lim.max_per_as) {
    job->why = "this AS created as many groups as groups.max_groups_per_as";
    rc = M5_ERANGE;
  }
  pthread_rwlock_unlock(&s->lock);
  mlist_t add = {0};
  if (rc == 0) rc = new_members(s, job, 0, &add);
  if (rc == 0) rc = budget(s, job, job->creator, add.n);
  memset(&v, 0, sizeof v);
  v.exists = 1;
  if (rc == 0 && job->attrs && (rc = groups_apply_attrs(NULL, job->attrs, &v.attrs)) != 0)
    job->why = rc == M5_ERANGE ? "the attributes are too long" : "attributes";
  memcpy(v.creator, job->creator, sizeof v.creator);
  if (rc == 0 && job->creator[0]) {
    if (!(v.grants = calloc(1, sizeof *v.grants))) {
      rc = M5_ENOMEM;
    } else {
      memcpy(v.grants[0].principal, job->creator, sizeof job->creator);
      v.grants[0].rights = GROUPS_RIGHT_SEND | GROUPS_RIGHT_MANAGE;
      v.n_grants = 1;
    }
  }
  if (rc == 0) {
    v.gen = v.cg = next_gen(s, old_gen);
    v.at = (int64_t)time(NULL);
    rc = write_group(gj, job->kind, job->id, &v, rev, last);
  }
  for (size_t i = 0; rc == 0 && i < add.n; i++)
    rc = write_member(gj, job->kind, job->id, add.v[i].p, v.gen, 0, last);
  if (rc == 0) {
    job->gen = v.gen;
    job->created = 1;
  }
  free(add.v);
  groups_js_val_clear(&v);
  return rc;
}

static int do_delete(struct groups_js *gj, groups_job_t *job, uint64_t *last) {
  struct groups_state *s = groups_state(gj->r);
  groups_js_val_t cur;
  uint64_t rev;
  int rc = read_existing(gj, job, &cur, &rev);
  if (rc) return rc;
  mlist_t l;
  /* the members' keys before the tombstone: once this node's watcher applied it, they are
   * gone from memory */
  rc = members_of(s, job->kind, job->id, 0, &l);
  groups_js_val_t tomb = {.gen = next_gen(s, cur.gen)};
  groups_js_val_clear(&cur);
  if (rc == 0) rc = write_group(gj, job->kind, job->id, &tomb, rev, last);
  /* best effort: a member key left behind is below the next group's cg, hence ignored */
  for (size_t i = 0; rc == 0 && i < l.n; i++)
    if (write_member(gj, job->kind, job->id, l.v[i].p, 0, l.v[i].rev, last) != 0)
      M5_LOGW(DOM, "%s %s deleted; the key of member %s stays (ignored)",
              groups_kind_name(job->kind), job->id, l.v[i].p);
  free(l.v);
  if (rc == 0) job->gen = tomb.gen;
  return rc;
}

static int do_update(struct groups_js *gj, groups_job_t *job, uint64_t *last) {
  struct groups_state *s = groups_state(gj->r);
  groups_js_val_t v;
  uint64_t rev;
  int rc = read_existing(gj, job, &v, &rev);
  if (rc) return rc;
  mlist_t add = {0}, old = {0}, kept = {0};
  if (job->set_members && (rc = groups_check_members(s, job)) == 0)
    rc = members_of(s, job->kind, job->id, 0, &old);
  if (rc == 0 && job->set_members && job->keep_as_members)
    rc = members_of(s, job->kind, job->id, 1, &kept);
  if (rc == 0 && job->set_members) rc = new_members(s, job, 1, &add);
  size_t n_new = 0;
  if (rc == 0 && job->set_members) {
    /* removed: the old ones neither in the list nor (keep_as_members) an AS */
    for (size_t i = 0; i < old.n; i++) {
      int stays = !strncmp(old.v[i].p, "as:", 3) && job->keep_as_members;
      for (size_t k = 0; !stays && k < job->n_members; k++)
        stays = !strcmp(job->members[k], old.v[i].p);
      if (stays) n_new++;
      else old.v[i].removed = 1;
    }
    n_new += add.n;
    if (n_new > s->lim.max_members) {
      job->why = "more members than groups.max_members";
      rc = M5_ERANGE;
    }
    if (rc == 0 && n_new > old.n) rc = budget(s, job, v.creator, n_new - old.n);
  }
  char *attrs = NULL;
  if (rc == 0 && job->attrs &&
      (rc = groups_apply_attrs(job->replace_attrs ? NULL : v.attrs, job->attrs, &attrs)) != 0)
    job->why = rc == M5_ERANGE ? "the attributes are too long" : "attributes";
  if (rc == 0 && (job->attrs || job->replace_attrs)) {
    free(v.attrs);
    v.attrs = attrs;
    attrs = NULL;
  }
  free(attrs);
  if (rc == 0) {
    v.gen = next_gen(s, v.gen);
    rc = write_group(gj, job->kind, job->id, &v, rev, last);
  }
  for (size_t i = 0; rc == 0 && i < add.n; i++)
    rc = write_member(gj, job->kind, job->id, add.v[i].p, v.gen, 0, last);
  for (size_t i = 0; rc == 0 && i < old.n; i++)
    if (old.v[i].removed)
      rc = write_member(gj, job->kind, job->id, old.v[i].p, 0, old.v[i].rev, last);
  if (rc == 0) job->gen = v.gen;
  free(add.v);
  free(old.v);
  free(kept.v);
  groups_js_val_clear(&v);
  return rc;
}

/* ADD_MEMBER, DEL_MEMBER, ADD_MEMBERS. */
static int do_members(struct groups_js *gj, groups_job_t *job, uint64_t *last) {
  struct groups_state *s = groups_state(gj->r);
  int one = job->op != GROUPS_ADD_MEMBERS, add = job->op != GROUPS_DEL_MEMBER;
  if (one && !groups_principal_valid(job->principal, job->kind == GROUPS_AREA)) {
    job->why = member_why(job->kind);
    return M5_EINVAL;
  }
  groups_js_val_t v;
  uint64_t rev;
  int rc = read_existing(gj, job, &v, &rev);
  if (rc) return rc;
  job->gen = v.gen;
  uint64_t mrev = 0;
  mlist_t l = {0};
  int is = 0;
  if (one) /* the member's own key through the leader: this node's memory may lag a moment */
    rc = read_member(gj, job->kind, job->id, job->principal, v.cg, &is, &mrev);
  if (!one && (rc = groups_check_members(s, job)) == 0) rc = new_members(s, job, 1, &l);
  size_t more = one ? (add && !is) : l.n;
  if (rc == 0 && one && add == is) { /* already a member / not a member: nothing changes */
    groups_js_val_clear(&v);
    return add ? 0 : M5_ENOENT;
  }
  if (rc == 0 && more) {
    size_t have = 0;
    char key[GROUPS_KEY_MAX];
    size_t kl = groups_key(job->kind, job->id, key);
    pthread_rwlock_rdlock(&s->lock);
    const group_t *g = m5_hmap_get(s->map, key, kl);
    have = g ? m5_hmap_count(g->members) : 0;
    pthread_rwlock_unlock(&s->lock);
    if (have + more > s->lim.max_members) {
      job->why = one ? "as many members as groups.max_members" : "more members than groups.max_members";
      rc = M5_ERANGE;
    }
    if (rc == 0) rc = budget(s, job, v.creator, more);
  }
  if (rc == 0 && (one || more)) {
    v.gen = next_gen(s, v.gen);
    rc = write_group(gj, job->kind, job->id, &v, rev, last);
  }
  if (rc == 0 && one)
    rc = write_member(gj, job->kind, job->id, job->principal, add ? v.gen : 0, mrev, last);
  for (size_t i = 0; rc == 0 && i < l.n; i++)
    rc = write_member(gj, job->kind, job->id, l.v[i].p, v.gen, 0, last);
  if (rc == 0) {
    job->gen = v.gen;
    job->created = one ? add : (int)l.n;
  }
  free(l.v);
  groups_js_val_clear(&v);
  return rc;
}

/* GRANT, REVOKE: the group's key only. */
static int do_grant(struct groups_js *gj, groups_job_t *job, uint64_t *last) {
  struct groups_state *s = groups_state(gj->r);
  const char *p = job->principal;
  int grant = job->op == GROUPS_GRANT;
  int rc = groups_grant_check(job);
  if (rc) return rc;
  groups_js_val_t v;
  uint64_t rev;
  rc = read_existing(gj, job, &v, &rev);
  if (rc) return rc;
  job->gen = v.gen;
  groups_grant_t *cur = NULL;
  for (size_t i = 0; i < v.n_grants && !cur; i++)
    if (!strcmp(v.grants[i].principal, p)) cur = &v.grants[i];
  if (!grant && !cur) rc = M5_ENOENT;
  else if (grant && cur && cur->rights == job->rights) rc = M5_EEXIST; /* unchanged: 0 below */
  else if (grant && !cur && v.n_grants >= s->lim.max_grants) {
    job->why = "as many grants as groups.max_grants";
    rc = M5_ERANGE;
  }
  if (rc == 0 && grant && !cur) {
    groups_grant_t *nv = realloc(v.grants, (v.n_grants + 1) * sizeof *nv);
    if (!nv) {
      rc = M5_ENOMEM;
    } else {
      v.grants = nv;
      memcpy(nv[v.n_grants].principal, p, sizeof nv[0].principal);
      nv[v.n_grants++].rights = job->rights;
    }
  } else if (rc == 0 && grant) {
    cur->rights = job->rights;
  } else if (rc == 0) {
    size_t i = (size_t)(cur - v.grants);
    memmove(&v.grants[i], &v.grants[i + 1], (v.n_grants - i - 1) * sizeof *cur);
    v.n_grants--;
  }
  if (rc == 0) {
    v.gen = next_gen(s, v.gen);
    rc = write_group(gj, job->kind, job->id, &v, rev, last);
  }
  if (rc == 0) {
    job->gen = v.gen;
    job->created = grant && !cur;
  }
  groups_js_val_clear(&v);
  return rc == M5_EEXIST ? 0 : rc;
}

void groups_js_run(registry_t *r, groups_job_t *job) {
  struct groups_js *gj = groups_state(r)->js;
  uint64_t last = 0;
  int rc = M5_EAGAIN;
  for (int tries = 0; rc == M5_EAGAIN && tries < REGJS_CAS_TRIES; tries++) {
    job->created = job->found = 0;
    job->why = NULL;
    job->gen = 0;
    switch (job->op) {
    case GROUPS_CREATE:
      rc = do_create(gj, job, &last);
      break;
    case GROUPS_DELETE:
      rc = do_delete(gj, job, &last);
      break;
    case GROUPS_UPDATE:
      rc = do_update(gj, job, &last);
      break;
    case GROUPS_ADD_MEMBER:
    case GROUPS_DEL_MEMBER:
    case GROUPS_ADD_MEMBERS:
      rc = do_members(gj, job, &last);
      break;
    case GROUPS_GRANT:
    case GROUPS_REVOKE:
      rc = do_grant(gj, job, &last);
      break;
    default:
      rc = M5_EINVAL;
      break;
    }
  }
  if (rc == M5_EAGAIN)
    M5_LOGE(DOM, "%s %s kept changing under %d attempts", groups_kind_name(job->kind), job->id,
            REGJS_CAS_TRIES);
  /* whatever was written is in this node's memory before the answer (also after a failure) */
  if (last) {
    int w = regjs_wait(gj->b.js, &gj->b, last);
    if (rc == 0) rc = w;
  }
  job->status = rc;
}

/* ---- the hand-over on KV (groups_int.h "hand-over") ---- */

typedef struct {
  const char *who;
  int drop_created;
  struct {
    groups_kind_t kind;
    char id[M5_MSG_NAME_MAX + 1];
    int drop, member, grant;
  } *v;
  size_t n, cap;
  int oom;
} plan_t;

static void scan(const void *key, size_t klen, void *val, void *arg) {
  (void)key;
  (void)klen;
  const group_t *g = val;
  plan_t *p = arg;
  int drop = p->drop_created && g->kind == GROUPS_GROUP && !strcmp(g->creator, p->who);
  int member = m5_hmap_get(g->members, p->who, strlen(p->who)) != NULL, grant = 0;
  for (size_t i = 0; i < g->n_grants && !grant; i++)
    grant = !strcmp(g->grants[i].principal, p->who);
  if (p->oom || !(drop || member || grant)) return;
  if (p->n == p->cap) {
    size_t cap = p->cap ? 2 * p->cap : 8;
    void *v = realloc(p->v, cap * sizeof *p->v);
    if (!v) {
      p->oom = 1;
      return;
    }
    p->v = v;
    p->cap = cap;
  }
  p->v[p->n].kind = g->kind;
  memcpy(p->v[p->n].id, g->id, sizeof g->id);
  p->v[p->n].drop = drop;
  p->v[p->n].member = member;
  p->v[p->n++].grant = grant;
}

/* One job of the purge, run here on the DB thread: 0, or the failure (logged by the caller). */
static int purge_job(registry_t *r, groups_op_t op, groups_kind_t kind, const char *id,
                     const char *who) {
  groups_job_t j;
  memset(&j, 0, sizeof j);
  j.op = op;
  j.kind = kind;
  snprintf(j.id, sizeof j.id, "%s", id);
  snprintf(j.principal, sizeof j.principal, "%s", who);
  groups_js_run(r, &j);
  return j.status == M5_ENOENT ? 0 : j.status; /* gone meanwhile: someone else's purge */
}

/* Every node's watcher asks for it when it applies a hand-over (regjs_purge_later), and the node
 * that made the change runs it before its answer: the first one to run removes the memberships,
 * grants and created groups (each a job above, answered only once applied here); the others
 * find nothing left in memory, or get M5_ENOENT. So the purge happens as long as one node
 * lives. */
void groups_js_purge(registry_t *r, const char *principal, int drop_created) {
  struct groups_state *s = groups_state(r);
  if (strlen(principal) > GROUPS_PRINCIPAL_MAX) return; /* cannot be in any group */
  plan_t p = {.who = principal, .drop_created = drop_created};
  pthread_rwlock_rdlock(&s->lock);
  m5_hmap_foreach(s->map, scan, &p);
  pthread_rwlock_unlock(&s->lock);
  if (p.oom) M5_LOGE(DOM, "%s handed over: out of memory planning its group purge", principal);
  size_t dropped = 0, left = 0, revoked = 0, failed = 0;
  for (size_t i = 0; i < p.n; i++) {
    int rc = 0;
    if (p.v[i].drop) {
      rc = purge_job(r, GROUPS_DELETE, p.v[i].kind, p.v[i].id, principal);
      dropped += rc == 0;
    } else {
      if (p.v[i].member) {
        rc = purge_job(r, GROUPS_DEL_MEMBER, p.v[i].kind, p.v[i].id, principal);
        left += rc == 0;
      }
      if (rc == 0 && p.v[i].grant) {
        rc = purge_job(r, GROUPS_REVOKE, p.v[i].kind, p.v[i].id, principal);
        revoked += rc == 0;
      }
    }
    failed += rc != 0;
  }
  free(p.v);
  if (p.n)
    M5_LOGI(DOM, "%s handed over: %zu created groups deleted, %zu memberships and %zu grants "
                 "dropped%s", principal, dropped, left, revoked,
            failed ? " (some failed: see above)" : "");
  if (failed)
    M5_LOGE(DOM, "%s handed over, but %zu of its group entries could not be dropped", principal,
            failed);
}
