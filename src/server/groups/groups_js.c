/* Groups and broadcast areas shared through NATS KV (groups_js_int.h has the bucket's layout;
 * issue 13, docs/scale-out.md): every m5s node of a cluster keeps the in-memory copy the
 * fan-out and the admin and northbound reads use (groups_int.h's map, read under its lock as
 * on SQLite), and one watcher thread per node, the only writer of that copy, applies every
 * write to the bucket, this node's and the others', in revision order. When it applies a
 * member's removal or a group's deletion it tells the hook (groups.h): on every node, so each
 * node's groups_sync fails the queued deliveries of its own subjects (a JetStream GROUP_SWEEP
 * sweeps the node's own index only, and a delivery is concluded by exactly one delete: the
 * failure reports go out once in the cluster). The jobs are in groups_js_ops.c. */
#include "server/groups/groups_js_int.h"

#include "core/err.h"
#include "core/log.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define DOM "groups"
#define WATCH_POLL_MS 200 /* the watcher's wait per call: how soon it sees the stop flag */

int groups_js_on(registry_t *r) {
  return r->groups && r->groups->js != NULL;
}

/* ---- keys ---- */

static int enc(const char *id, char tok[M5_JS_TOKEN_SIZE]) {
  return m5_js_name_encode(id, strlen(id), tok, M5_JS_TOKEN_SIZE, NULL) == 0 ? 0 : M5_ERANGE;
}

int groups_js_gkey(groups_kind_t kind, const char *id, char out[GROUPS_JS_KEY_MAX + 1]) {
  char t[M5_JS_TOKEN_SIZE];
  if (enc(id, t) != 0) return M5_ERANGE;
  int n = snprintf(out, GROUPS_JS_KEY_MAX + 1, "g.%s.%s", groups_kind_name(kind), t);
  return n > 0 && n <= GROUPS_JS_KEY_MAX ? 0 : M5_ERANGE;
}

int groups_js_mkey(groups_kind_t kind, const char *id, const char *principal,
                   char out[GROUPS_JS_KEY_MAX + 1]) {
  char t[M5_JS_TOKEN_SIZE], m[M5_JS_TOKEN_SIZE];
  if (strlen(principal) < 4 || principal[2] != ':' || enc(id, t) != 0 || enc(principal + 3, m))
    return M5_ERANGE;
  int n = snprintf(out, GROUPS_JS_KEY_MAX + 1, "m.%s.%s.%.2s.%s", groups_kind_name(kind), t,
                   principal, m);
  return n > 0 && n <= GROUPS_JS_KEY_MAX ? 0 : M5_ERANGE;
}

/* One token of a key: tok[0..len) decoded into out (NUL-terminated, < size): 0 or M5_EINVAL. */
static int dec(const char *tok, size_t len, char *out, size_t size) {
  uint8_t raw[M5_JS_ID_MAX];
  size_t n = 0;
  if (m5_js_name_decode(tok, len, raw, sizeof raw, &n, NULL, 0) != 0 || n == 0 || n >= size ||
      memchr(raw, 0, n))
    return M5_EINVAL;
  memcpy(out, raw, n);
  out[n] = '\0';
  return 0;
}

/* A key back: *is_member, kind, id and (members) principal. 0 or M5_EINVAL (not ours). */
static int key_parse(const char *key, int *is_member, groups_kind_t *kind,
                     char id[M5_MSG_NAME_MAX + 1], groups_principal_t principal) {
  if ((key[0] != 'g' && key[0] != 'm') || key[1] != '.') return M5_EINVAL;
  *is_member = key[0] == 'm';
  const char *k = key + 2, *dot = strchr(k, '.');
  if (!dot) return M5_EINVAL;
  size_t kl = (size_t)(dot - k);
  if (kl == 5 && !strncmp(k, "group", 5))
    *kind = GROUPS_GROUP;
  else if (kl == 4 && !strncmp(k, "area", 4))
    *kind = GROUPS_AREA;
  else
    return M5_EINVAL;
  const char *t = dot + 1, *end = strchr(t, '.');
  if (!*is_member) {
    if (end) return M5_EINVAL;
    return dec(t, strlen(t), id, M5_MSG_NAME_MAX + 1) == 0 && m5_msg_name_valid(id) ? 0
                                                                                  : M5_EINVAL;
  }
  if (!end || dec(t, (size_t)(end - t), id, M5_MSG_NAME_MAX + 1) != 0 || !m5_msg_name_valid(id))
    return M5_EINVAL;
  const char *ty = end + 1;
  if (strncmp(ty, "ue.", 3) != 0 && strncmp(ty, "as.", 3) != 0) return M5_EINVAL;
  memcpy(principal, ty, 2);
  principal[2] = ':';
  if (dec(ty + 3, strlen(ty + 3), principal + 3, GROUPS_PRINCIPAL_MAX + 1 - 3) != 0 ||
      !groups_principal_valid(principal, *kind == GROUPS_AREA))
    return M5_EINVAL;
  return 0;
}

/* ---- values ---- */

void groups_js_val_clear(groups_js_val_t *v) {
  free(v->attrs);
  free(v->grants);
  memset(v, 0, sizeof *v);
}

int groups_js_val_parse(const uint8_t *val, size_t len, groups_js_val_t *v) {
  memset(v, 0, sizeof *v);
  json_t *o = json_loadb((const char *)val, len, 0, NULL);
  json_t *gen = json_object_get(o, "gen");
  int rc = M5_EINVAL;
  if (!json_is_integer(gen) || json_integer_value(gen) <= 0) goto out;
  v->gen = (uint64_t)json_integer_value(gen);
  if (json_is_true(json_object_get(o, "deleted"))) {
    rc = 0;
    goto out;
  }
  json_t *cg = json_object_get(o, "cg"), *at = json_object_get(o, "at"),
         *cr = json_object_get(o, "creator"), *attrs = json_object_get(o, "attrs"),
         *grants = json_object_get(o, "grants");
  if (!json_is_integer(cg) || !json_is_integer(at) || !json_is_string(cr) ||
      json_string_length(cr) > GROUPS_PRINCIPAL_MAX || (attrs && !json_is_string(attrs)) ||
      (grants && !json_is_array(grants)))
    goto out;
  v->cg = (uint64_t)json_integer_value(cg);
  v->at = json_integer_value(at);
  memcpy(v->creator, json_string_value(cr), json_string_length(cr) + 1);
  if (attrs && !(v->attrs = strdup(json_string_value(attrs)))) goto out;
  size_t n = grants ? json_array_size(grants) : 0;
  if (n && !(v->grants = calloc(n, sizeof *v->grants))) goto out;
  for (size_t i = 0; i < n; i++) {
    json_t *gr = json_array_get(grants, i), *p = json_array_get(gr, 0),
           *r = json_array_get(gr, 1);
    if (!json_is_string(p) || !json_is_integer(r) || !groups_principal_valid(json_string_value(p), 0))
      goto out;
    snprintf(v->grants[v->n_grants].principal, sizeof v->grants[0].principal, "%s",
             json_string_value(p));
    v->grants[v->n_grants++].rights = (unsigned)json_integer_value(r);
  }
  v->exists = 1;
  rc = 0;
out:
  json_decref(o);
  if (rc) groups_js_val_clear(v);
  return rc;
}

char *groups_js_val_text(const groups_js_val_t *v) {
  json_t *o = v->exists ? json_pack("{s:I, s:I, s:I, s:s}", "gen", (json_int_t)v->gen, "cg",
                                    (json_int_t)v->cg, "at", (json_int_t)v->at, "creator",
                                    v->creator)
                        : json_pack("{s:I, s:b}", "gen", (json_int_t)v->gen, "deleted", 1);
  json_t *g = v->exists ? json_array() : NULL;
  int bad = !o || (v->exists && !g);
  for (size_t i = 0; !bad && i < v->n_grants; i++)
    bad = json_array_append_new(g, json_pack("[s, i]", v->grants[i].principal,
                                             (int)v->grants[i].rights)) != 0;
  if (!bad && g) bad = json_object_set_new(o, "grants", g) != 0, g = NULL;
  if (!bad && v->exists && v->attrs)
    bad = json_object_set_new(o, "attrs", json_string(v->attrs)) != 0;
  char *t = bad ? NULL : json_dumps(o, JSON_COMPACT);
  json_decref(g);
  json_decref(o);
  return t;
}

/* ---- the watcher: the only writer of the memory copy ---- */

static void free_members(void *m) {
  m5_hmap_free(m, free);
}

typedef struct {
  group_t *g;
  struct groups_state *s;
  int oom;
} adopt_t;

/* An orphan member (of a group key that had not arrived) joins g unless it is older than g. */
static void adopt(const void *key, size_t klen, void *val, void *arg) {
  adopt_t *a = arg;
  groups_js_member_t *m = val;
  if (m->since < a->g->cgen || m5_hmap_put(a->g->members, key, klen, m, NULL) != 0) {
    free(m);
    return;
  }
  a->s->total_members++;
}

static void apply_group(struct groups_js *gj, const m5_js_kv_change_t *ch, groups_kind_t kind,
                        const char *id) {
  struct groups_state *s = groups_state(gj->r);
  groups_js_val_t v;
  if (ch->deleted) { /* not written by m5s (tombstones): a deletion all the same */
    memset(&v, 0, sizeof v);
  } else if (groups_js_val_parse(ch->val, ch->len, &v) != 0) {
    M5_LOGE(DOM, "bucket %s: skipping the malformed value of %s (revision %llu)", gj->b.name,
            ch->key, (unsigned long long)ch->rev);
    return;
  }
  char key[GROUPS_KEY_MAX];
  size_t kl = groups_key(kind, id, key);
  group_t *gone = NULL;
  int oom = 0;
  pthread_rwlock_wrlock(&s->lock);
  group_t *g = m5_hmap_get(s->map, key, kl);
  if (g && (!v.exists || g->cgen != v.cg)) { /* deleted, or deleted and made again since */
    m5_hmap_del(s->map, key, kl);
    s->total_members -= m5_hmap_count(g->members);
    gone = g;
    gone->gen = v.exists ? v.cg : v.gen ? v.gen : gone->gen;
    g = NULL;
  }
  m5_hmap_t *orph = m5_hmap_del(gj->orphans, key, kl);
  if (v.exists && !g) {
    g = calloc(1, sizeof *g);
    if (g && !(g->members = m5_hmap_new())) {
      free(g);
      g = NULL;
    }
    if (g) {
      g->kind = kind;
      snprintf(g->id, sizeof g->id, "%s", id);
      g->cgen = v.cg;
      adopt_t a = {g, s, 0};
      if (orph) m5_hmap_foreach(orph, adopt, &a);
      if (orph) m5_hmap_free(orph, NULL);
      orph = NULL;
      if (m5_hmap_put(s->map, key, kl, g, NULL) != 0) {
        s->total_members -= m5_hmap_count(g->members);
        groups_group_free(g);
        g = NULL;
      }
    }
    oom = !g;
  }
  if (orph) m5_hmap_free(orph, free); /* a deleted group's, or (out of memory) lost */
  if (g) {
    memcpy(g->creator, v.creator, sizeof g->creator);
    g->gen = v.gen;
    g->created_at = v.at;
    free(g->attrs);
    g->attrs = v.attrs;
    free(g->grants);
    g->grants = v.grants;
    g->n_grants = v.n_grants;
    v.attrs = NULL;
    v.grants = NULL;
  }
  pthread_rwlock_unlock(&s->lock);
  groups_js_val_clear(&v);
  if (oom)
    M5_LOGE(DOM, "out of memory: %s %s (revision %llu) is not applied", groups_kind_name(kind),
            id, (unsigned long long)ch->rev);
  if (gone) { /* only this thread frees groups on KV: gone is ours */
    groups_tell(s, gone, GROUPS_EV_DELETED, "");
    groups_group_free(gone);
  }
}

static int member_parse(const m5_js_kv_change_t *ch, uint64_t *since) {
  *since = 0;
  if (ch->deleted) return 0;
  json_t *o = json_loadb((const char *)ch->val, ch->len, 0, NULL);
  json_t *sn = json_object_get(o, "since");
  int rc = json_is_true(json_object_get(o, "removed")) ? 0 : M5_EINVAL;
  if (json_is_integer(sn) && json_integer_value(sn) > 0) {
    *since = (uint64_t)json_integer_value(sn);
    rc = 0;
  }
  json_decref(o);
  return rc;
}

static void apply_member(struct groups_js *gj, const m5_js_kv_change_t *ch, groups_kind_t kind,
                         const char *id, const char *p) {
  struct groups_state *s = groups_state(gj->r);
  uint64_t since;
  if (member_parse(ch, &since) != 0) {
    M5_LOGE(DOM, "bucket %s: skipping the malformed value of %s (revision %llu)", gj->b.name,
            ch->key, (unsigned long long)ch->rev);
    return;
  }
  char key[GROUPS_KEY_MAX];
  size_t kl = groups_key(kind, id, key), pl = strlen(p);
  int left = 0, oom = 0;
  pthread_rwlock_wrlock(&s->lock);
  group_t *g = m5_hmap_get(s->map, key, kl);
  m5_hmap_t *into = g ? g->members : m5_hmap_get(gj->orphans, key, kl);
  if (!g && !into && since) {
    if ((into = m5_hmap_new()) && m5_hmap_put(gj->orphans, key, kl, into, NULL) != 0) {
      m5_hmap_free(into, NULL);
      into = NULL;
    }
  }
  groups_js_member_t *cur = into ? m5_hmap_get(into, p, pl) : NULL;
  if (!since) { /* removed */
    if (cur) {
      free(m5_hmap_del(into, p, pl));
      if (g) s->total_members--, left = 1;
    }
    if (!g && into && !m5_hmap_count(into)) m5_hmap_free(m5_hmap_del(gj->orphans, key, kl), NULL);
  } else if (g && since < g->cgen) {
    /* a member of an earlier group of that name (its key outlived the deletion): not ours */
  } else if (cur) {
    cur->since = since;
    cur->rev = ch->rev;
  } else if (into) {
    groups_js_member_t *m = malloc(sizeof *m);
    if (m && m5_hmap_put(into, p, pl, m, NULL) == 0) {
      m->since = since;
      m->rev = ch->rev;
      if (g) s->total_members++;
    } else {
      free(m);
      oom = 1;
    }
  } else {
    oom = 1;
  }
  pthread_rwlock_unlock(&s->lock);
  if (oom)
    M5_LOGE(DOM, "out of memory: member %s of %s (revision %llu) is not applied", p, id,
            (unsigned long long)ch->rev);
  if (left) groups_tell(s, g, GROUPS_EV_MEMBER_REMOVED, p);
}

static void apply(struct groups_js *gj, const m5_js_kv_change_t *ch) {
  int is_member = 0;
  groups_kind_t kind;
  char id[M5_MSG_NAME_MAX + 1];
  groups_principal_t p;
  if (key_parse(ch->key, &is_member, &kind, id, p) != 0) {
    M5_LOGW(DOM, "bucket %s: ignoring key %s (not a group's or a member's)", gj->b.name, ch->key);
    return;
  }
  if (is_member)
    apply_member(gj, ch, kind, id, p);
  else
    apply_group(gj, ch, kind, id);
}

static void *watch_main(void *arg) {
  struct groups_js *gj = arg;
  registry_js_t *js = gj->b.js;
  char err[256];
  int failing = 0;
  while (!atomic_load(&js->stop)) {
    m5_js_kv_change_t ch;
    int rc = m5_js_kv_watch_next(gj->b.w, WATCH_POLL_MS, &ch, err, sizeof err);
    if (rc == M5_ETIMEDOUT) continue;
    if (rc == M5_ECLOSED) break;
    if (rc != 0) {
      if (!failing++) M5_LOGW(DOM, "watcher of %s: %s; retrying", gj->b.name, err);
      struct timespec ts = {0, WATCH_POLL_MS * 1000000L};
      nanosleep(&ts, NULL);
      continue;
    }
    failing = 0;
    if (ch.key) apply(gj, &ch);
    pthread_mutex_lock(&js->mu);
    if (ch.key && ch.rev > gj->b.applied) gj->b.applied = ch.rev;
    if (!ch.key) gj->b.ready = 1;
    pthread_cond_broadcast(&js->cv);
    pthread_mutex_unlock(&js->mu);
  }
  return NULL;
}

/* ---- attach and release ---- */

void groups_js_free(registry_t *r) {
  struct groups_state *s = r->groups;
  struct groups_js *gj = s ? s->js : NULL;
  if (!gj) return;
  if (gj->b.started) { /* it sees the flag within WATCH_POLL_MS (no stop request: the
                          * registry closed the connection first, registry_js_free) */
    atomic_store(&gj->b.js->stop, 1);
    pthread_join(gj->b.thread, NULL);
  }
  m5_js_kv_watch_free(gj->b.w);
  m5_js_kv_close(gj->b.kv);
  if (gj->orphans) m5_hmap_free(gj->orphans, free_members);
  free(gj);
  s->js = NULL;
}

int groups_js_attach(registry_t *r, const registry_js_opts_t *o, char *err, size_t errlen) {
  struct groups_state *s = r->groups;
  struct groups_js *gj = calloc(1, sizeof *gj);
  m5_hmap_t *fresh = m5_hmap_new();
  if (!gj || !fresh || !(gj->orphans = m5_hmap_new())) {
    if (gj && gj->orphans) m5_hmap_free(gj->orphans, NULL);
    if (fresh) m5_hmap_free(fresh, NULL);
    free(gj);
    snprintf(err, errlen, "groups: out of memory");
    return M5_ENOMEM;
  }
  gj->r = r;
  gj->b.js = r->js;
  snprintf(gj->b.name, sizeof gj->b.name, "%s_groups", o->prefix);
  /* The groups loaded from this node's SQLite file are not the cluster's: the bucket is. */
  pthread_rwlock_wrlock(&s->lock);
  m5_hmap_free(s->map, groups_group_free);
  s->map = fresh;
  s->total_members = 0;
  pthread_rwlock_unlock(&s->lock);
  s->js = gj; /* from here on groups_js_free undoes it */
  m5_js_kv_spec_t spec = {.bucket = gj->b.name, .replicas = o->replicas, .history = 1};
  char e[384];
  int rc = m5_js_ensure_kv(r->js->c, &spec, &gj->b.kv, e, sizeof e);
  if (rc == 0) rc = m5_js_kv_watch(gj->b.kv, &gj->b.w, e, sizeof e);
  if (rc) {
    snprintf(err, errlen, "groups: %s", e);
    return rc;
  }
  if (pthread_create(&gj->b.thread, NULL, watch_main, gj) != 0) {
    snprintf(err, errlen, "groups: cannot start the watcher of %s", gj->b.name);
    return M5_ENOMEM;
  }
  gj->b.started = 1;
  if (regjs_wait(r->js, &gj->b, 0) != 0) {
    snprintf(err, errlen, "groups: the contents of %s did not arrive within %lld ms", gj->b.name,
             (long long)r->js->timeout_ms);
    return M5_ETIMEDOUT;
  }
  M5_LOGI(DOM, "shared through NATS KV (bucket %s): %zu groups, %zu broadcast areas", gj->b.name,
          groups_count(r, GROUPS_GROUP), groups_count(r, GROUPS_AREA));
  return 0;
}
