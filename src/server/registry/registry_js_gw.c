/* Message gateway clients and the UE Service IDs each holds (registry.h "message gateways";
 * TS 23.554 cl. 5.3.4, 8.2.3, 8.2.4; registry_gw.c on the sqlite backend) shared through NATS KV
 * (issue 13; registry_js.c):
 *   <prefix>_gw    key g.<enc(gwId)> -> {"kind":"sms","target":"host:port","pattern":"p*"}, or
 *                  the tombstone {"removed":true};
 *   <prefix>_bind  key u.<enc(ueSvcId)> -> {"gw":"<gwId>","gen":N} for an ID a gateway holds.
 * The held IDs live in the bindings' bucket because UE Service IDs are one space: an ID is bound
 * to a subscriber or held by one gateway, and on KV only one key can be compare-and-set at once;
 * sharing the key also shares the generation (each hand-over takes a new one). An ID held by a
 * gateway that was removed meanwhile (the removal releases its IDs one by one afterwards, and a
 * node can die in between) counts as free everywhere: registry_gw_holder needs the gateway.
 *
 * What differs from one SQLite transaction: a request of several IDs (GW_UE_REG) checks them all
 * first (leader reads), then writes them one by one; a conflict on one (a concurrent change on
 * another node) releases those this request took, with new generations, and answers M5_EEXIST
 * naming that ID. GW_PUT (pattern change) and GW_DEL release the IDs held as this node's memory
 * lists them, after the client's own write. GW_UE_LIST pages this node's memory copy. */
#include "server/registry/registry_js_int.h"

#include "core/err.h"
#include "core/log.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DOM "registry"

/* ---- memory (r->lock held for writing) ---- */

static void count_held(const void *key, size_t klen, void *val, void *arg) {
  (void)key;
  (void)klen;
  registry_gw_t *g = arg;
  if (!strcmp(((const gw_ue_t *)val)->gw_id, g->gw_id)) g->n_ues++;
}

void regjs_gwue_drop(registry_t *r, const char *id) {
  gw_ue_t *u = m5_hmap_del(r->gwue_map, id, strlen(id));
  if (!u) return;
  registry_gw_t *g = m5_hmap_get(r->gw_map, u->gw_id, strlen(u->gw_id));
  if (g && g->n_ues) g->n_ues--;
  free(u);
  atomic_store(&r->gw_held, m5_hmap_count(r->gwue_map));
}

void regjs_gwue_set(registry_t *r, const char *id, const char *gw_id, uint64_t gen) {
  gw_ue_t *u = m5_hmap_get(r->gwue_map, id, strlen(id));
  if (u && strcmp(u->gw_id, gw_id) != 0) {
    regjs_gwue_drop(r, id);
    u = NULL;
  }
  if (!u) {
    if (!(u = calloc(1, sizeof *u)) ||
        (snprintf(u->ue_svc_id, sizeof u->ue_svc_id, "%s", id),
         m5_hmap_put(r->gwue_map, u->ue_svc_id, strlen(u->ue_svc_id), u, NULL) != 0)) {
      free(u);
      M5_LOGE(DOM, "out of memory: %s held by gateway %s not applied", id, gw_id);
      return;
    }
    snprintf(u->gw_id, sizeof u->gw_id, "%s", gw_id);
    registry_gw_t *g = m5_hmap_get(r->gw_map, gw_id, strlen(gw_id));
    if (g) g->n_ues++;
  }
  u->gen = gen;
  atomic_store(&r->gw_held, m5_hmap_count(r->gwue_map));
}

int regjs_gw_exists(registry_t *r, const char *gw_id) {
  pthread_rwlock_rdlock(&r->lock);
  int ok = m5_hmap_get(r->gw_map, gw_id, strlen(gw_id)) != NULL;
  pthread_rwlock_unlock(&r->lock);
  return ok;
}

/* ---- the clients' bucket ---- */

static int gw_parse(const uint8_t *val, size_t len, registry_gw_t *g, int *removed) {
  json_t *o = json_loadb((const char *)val, len, 0, NULL);
  json_t *kind = json_object_get(o, "kind"), *target = json_object_get(o, "target"),
         *pattern = json_object_get(o, "pattern");
  *removed = json_is_true(json_object_get(o, "removed"));
  int rc = o ? 0 : M5_EINVAL;
  if (rc == 0 && !*removed) {
    if (!json_is_string(kind) || registry_gw_kind_parse(json_string_value(kind), &g->kind) ||
        !json_is_string(target) || json_string_length(target) == 0 ||
        json_string_length(target) > REGISTRY_HOSTPORT_MAX || !json_is_string(pattern) ||
        !registry_gw_pattern_valid(json_string_value(pattern)))
      rc = M5_EINVAL;
    else {
      snprintf(g->target, sizeof g->target, "%s", json_string_value(target));
      snprintf(g->pattern, sizeof g->pattern, "%s", json_string_value(pattern));
    }
  }
  json_decref(o);
  return rc;
}

void regjs_gw_apply(registry_js_t *js, const m5_js_kv_change_t *ch) {
  registry_t *r = js->r;
  registry_gw_t in;
  memset(&in, 0, sizeof in);
  int removed = ch->deleted;
  if (regjs_key_id(ch->key, "g", in.gw_id, sizeof in.gw_id) != 0 ||
      (!removed && gw_parse(ch->val, ch->len, &in, &removed) != 0)) {
    M5_LOGE(DOM, "bucket %s: skipping %s (revision %llu): not a gateway client",
            js->b[REGJS_GW].name, ch->key, (unsigned long long)ch->rev);
    return;
  }
  size_t klen = strlen(in.gw_id);
  registry_gw_t *fresh = removed ? NULL : calloc(1, sizeof *fresh);
  int oom = 0;
  pthread_rwlock_wrlock(&r->lock);
  registry_gw_t *g = m5_hmap_get(r->gw_map, in.gw_id, klen);
  if (removed) {
    free(m5_hmap_del(r->gw_map, in.gw_id, klen));
  } else if (g) {
    in.n_ues = g->n_ues;
    *g = in;
  } else if (fresh) {
    *fresh = in;
    m5_hmap_foreach(r->gwue_map, count_held, fresh); /* IDs applied before the client */
    if (m5_hmap_put(r->gw_map, fresh->gw_id, klen, fresh, NULL) == 0)
      fresh = NULL;
    else
      oom = 1;
  } else {
    oom = 1;
  }
  pthread_rwlock_unlock(&r->lock);
  if (oom)
    M5_LOGE(DOM, "out of memory: gateway %s (revision %llu) not applied", in.gw_id,
            (unsigned long long)ch->rev);
  free(fresh);
}

/* The client through the stream leader: 0 with *exists, *g (gw_id set by the caller), *rev. */
static int read_gw(registry_js_t *js, const char *key, registry_gw_t *g, int *exists,
                   uint64_t *rev) {
  uint8_t *v = NULL;
  size_t n = 0;
  int removed = 0;
  int rc = regjs_read(&js->b[REGJS_GW], key, &v, &n, rev);
  if (rc == 0 && v && gw_parse(v, n, g, &removed) != 0) {
    M5_LOGE(DOM, "bucket %s: the value of %s is malformed", js->b[REGJS_GW].name, key);
    rc = M5_EIO;
  }
  *exists = rc == 0 && v && !removed;
  free(v);
  return rc;
}

static int write_gw(registry_js_t *js, const char *key, const registry_gw_t *g, uint64_t rev,
                    uint64_t *new_rev) {
  json_t *o = g ? json_pack("{s:s, s:s, s:s}", "kind", registry_gw_kind_name(g->kind), "target",
                            g->target, "pattern", g->pattern)
                : json_pack("{s:b}", "removed", 1);
  char *text = o ? json_dumps(o, JSON_COMPACT) : NULL;
  json_decref(o);
  if (!text) return M5_ENOMEM;
  int rc = regjs_write(&js->b[REGJS_GW], key, text, rev, new_rev);
  free(text);
  if (rc == 0) rc = regjs_wait(js, &js->b[REGJS_GW], *new_rev);
  return rc;
}

/* ---- held IDs ---- */

/* Releases id if gw_id holds it: a tombstone with a new generation (*gen). M5_ENOENT when it
 * is not (or no longer) gw_id's. */
static int release(registry_js_t *js, const char *id, const char *gw_id, uint64_t *gen) {
  char key[REGJS_KEY_MAX + 1];
  if (regjs_key("u", id, key) != 0) return M5_ENOENT;
  for (int tries = 0; tries < REGJS_CAS_TRIES; tries++) {
    regjs_bind_t cur, next;
    uint64_t rev = 0, new_rev = 0;
    int rc = regjs_read_bind(js, key, &cur, &rev);
    if (rc) return rc;
    if (cur.removed || strcmp(cur.gw, gw_id) != 0) return M5_ENOENT;
    memset(&next, 0, sizeof next);
    next.removed = 1;
    next.gen = regjs_next_gen(cur.gen);
    char *text = regjs_bind_text(&next);
    if (!text) return M5_ENOMEM;
    rc = regjs_write(&js->b[REGJS_BIND], key, text, rev, &new_rev);
    free(text);
    if (rc == M5_EAGAIN) continue;
    if (rc == 0) rc = regjs_wait(js, &js->b[REGJS_BIND], new_rev);
    if (rc) return rc;
    *gen = next.gen;
    regjs_purge_ue_groups(js->r, id); /* as on the sqlite backend (this node's groups) */
    return 0;
  }
  return M5_EAGAIN;
}

typedef struct {
  const char *gw_id, *keep, *after;
  char (*ids)[REGISTRY_ID_MAX + 1];
  size_t n, cap;
  int oom;
} collect_t;

/* The IDs gw_id holds that keep refuses (NULL: all), after `after` (NULL: any). */
static void collect(const void *key, size_t klen, void *val, void *arg) {
  (void)key;
  (void)klen;
  const gw_ue_t *u = val;
  collect_t *c = arg;
  if (c->oom || strcmp(u->gw_id, c->gw_id) != 0) return;
  if (c->keep && registry_gw_pattern_match(c->keep, u->ue_svc_id)) return;
  if (c->after && strcmp(u->ue_svc_id, c->after) <= 0) return;
  if (c->n == c->cap) {
    size_t cap = c->cap ? c->cap * 2 : 16;
    char(*ids)[REGISTRY_ID_MAX + 1] = realloc(c->ids, cap * sizeof *ids);
    if (!ids) {
      c->oom = 1;
      return;
    }
    c->ids = ids;
    c->cap = cap;
  }
  snprintf(c->ids[c->n++], sizeof c->ids[0], "%s", u->ue_svc_id);
}

static int collect_held(registry_t *r, collect_t *c) {
  pthread_rwlock_rdlock(&r->lock);
  m5_hmap_foreach(r->gwue_map, collect, c);
  pthread_rwlock_unlock(&r->lock);
  if (c->oom) {
    free(c->ids);
    c->ids = NULL;
    c->n = 0;
    return M5_ENOMEM;
  }
  return 0;
}

/* GW_PUT / GW_DEL: the IDs of c released, listed in job->ids/gens (the registry's, malloc'd). */
static int release_all(registry_js_t *js, registry_job_t *job, collect_t *c) {
  job->ids = c->ids;
  job->gens = c->n ? calloc(c->n, sizeof *job->gens) : NULL;
  job->n_ids = 0;
  if (c->n && !job->gens) return M5_ENOMEM;
  for (size_t i = 0; i < c->n; i++) {
    uint64_t gen = 0;
    int rc = release(js, c->ids[i], job->gw->gw_id, &gen);
    if (rc == M5_ENOENT) continue; /* changed meanwhile: not this gateway's any more */
    if (rc) return rc;
    if (job->n_ids != i) memcpy(job->ids[job->n_ids], c->ids[i], sizeof job->ids[0]);
    job->gens[job->n_ids++] = gen;
  }
  return 0;
}

static int cmp_id(const void *a, const void *b) {
  return strcmp(a, b);
}

/* GW_UE_REG: all checked, then written; a conflict releases what this request took. */
static int ue_reg(registry_js_t *js, registry_job_t *job, const registry_gw_t *g) {
  if (job->n_ids == 0 || job->n_ids > REGISTRY_GW_UES_MAX) return M5_EINVAL;
  uint64_t *revs = calloc(job->n_ids, sizeof *revs), *cur_gens = calloc(job->n_ids, sizeof *revs);
  unsigned char *took = calloc(job->n_ids, 1);
  int rc = revs && cur_gens && took ? 0 : M5_ENOMEM;
  size_t fresh_n = 0;
  if (job->fresh) memset(job->fresh, 0, job->n_ids);
  for (size_t i = 0; rc == 0 && i < job->n_ids; i++) {
    const char *id = job->ids[i];
    char key[REGJS_KEY_MAX + 1];
    regjs_bind_t cur;
    job->bad = i;
    job->gens[i] = 0;
    if (!m5_msg_svc_id_valid(id) || regjs_key("u", id, key) != 0) rc = M5_EINVAL;
    else if (!registry_gw_pattern_match(g->pattern, id)) rc = M5_EPERM;
    else rc = regjs_read_bind(js, key, &cur, &revs[i]);
    if (rc) break;
    int mine = !cur.removed && !strcmp(cur.gw, g->gw_id);
    if (!cur.removed && cur.supi[0]) rc = M5_EEXIST; /* a subscriber's binding */
    else if (!cur.removed && cur.gw[0] && !mine && regjs_gw_exists(js->r, cur.gw))
      rc = M5_EEXIST; /* another gateway's */
    if (rc) break;
    cur_gens[i] = cur.gen;
    if (mine) job->gens[i] = cur.gen;
    else fresh_n++;
  }
  pthread_rwlock_rdlock(&js->r->lock);
  const registry_gw_t *mg = m5_hmap_get(js->r->gw_map, g->gw_id, strlen(g->gw_id));
  size_t held = mg ? mg->n_ues : 0;
  pthread_rwlock_unlock(&js->r->lock);
  if (rc == 0 && held + fresh_n > REGISTRY_GW_HELD_MAX) { /* bounds a gateway's memory */
    job->bad = 0;
    rc = M5_ERANGE;
  }
  uint64_t last_rev = 0;
  size_t taken = 0;
  for (size_t i = 0; rc == 0 && i < job->n_ids; i++) {
    if (job->gens[i]) continue;
    /* the same ID twice in one request: the second keeps the first's generation */
    for (size_t p = 0; p < i && !job->gens[i]; p++)
      if (!strcmp(job->ids[p], job->ids[i])) job->gens[i] = job->gens[p];
    if (job->gens[i]) continue;
    char key[REGJS_KEY_MAX + 1];
    regjs_key("u", job->ids[i], key);
    regjs_bind_t next;
    memset(&next, 0, sizeof next);
    snprintf(next.gw, sizeof next.gw, "%s", g->gw_id);
    next.gen = regjs_next_gen(cur_gens[i]);
    char *text = regjs_bind_text(&next);
    uint64_t new_rev = 0;
    rc = text ? regjs_write(&js->b[REGJS_BIND], key, text, revs[i], &new_rev) : M5_ENOMEM;
    free(text);
    if (rc == M5_EAGAIN) { /* changed on another node since it was checked */
      job->bad = i;
      rc = M5_EEXIST;
      break;
    }
    if (rc) break;
    job->gens[i] = next.gen;
    if (job->fresh) job->fresh[i] = 1;
    took[i] = 1;
    last_rev = new_rev;
    taken++;
  }
  if (rc == 0 && last_rev) rc = regjs_wait(js, &js->b[REGJS_BIND], last_rev);
  if (rc == 0) {
    /* whatever groups the IDs were in under their previous holder are not the devices' */
    for (size_t i = 0; i < job->n_ids; i++)
      if (took[i]) regjs_purge_ue_groups(js->r, job->ids[i]);
  } else if (taken) {
    /* all or nothing: what this request took goes back (a new generation each) */
    for (size_t i = 0; i < job->n_ids; i++) {
      uint64_t gen;
      if (took[i] && release(js, job->ids[i], g->gw_id, &gen) != 0)
        M5_LOGE(DOM, "gateway %s: %s stays held after a refused registration", g->gw_id,
                job->ids[i]);
      job->gens[i] = 0;
      if (job->fresh) job->fresh[i] = 0;
    }
  }
  free(took);
  free(revs);
  free(cur_gens);
  return rc;
}

/* GW_UE_LIST: one page of this node's memory copy, in byte order. */
static int ue_list(registry_js_t *js, registry_job_t *job) {
  size_t cap = job->n_ids;
  job->n_ids = 0;
  job->more = 0;
  if (!job->ids || cap == 0 || cap > REGISTRY_GW_UES_MAX) return M5_EINVAL;
  collect_t c = {.gw_id = job->gw->gw_id, .after = job->ue_svc_id[0] ? job->ue_svc_id : NULL};
  if (collect_held(js->r, &c) != 0) return M5_ENOMEM;
  if (c.n) qsort(c.ids, c.n, sizeof c.ids[0], cmp_id);
  job->n_ids = c.n < cap ? c.n : cap;
  job->more = c.n > cap;
  if (job->n_ids) memcpy(job->ids, c.ids, job->n_ids * sizeof c.ids[0]);
  free(c.ids);
  return 0;
}

int regjs_gw_run(registry_js_t *js, registry_job_t *job) {
  registry_gw_t *in = job->gw, cur;
  if (job->op == REGISTRY_GW_PUT || job->op == REGISTRY_GW_DEL) {
    job->ids = NULL;
    job->gens = NULL;
    job->n_ids = 0;
  }
  if (!m5_msg_as_id_valid(in->gw_id)) return job->op == REGISTRY_GW_PUT ? M5_EINVAL : M5_ENOENT;
  if (job->op == REGISTRY_GW_PUT && (!registry_gw_pattern_valid(in->pattern) || !in->target[0]))
    return M5_EINVAL;
  if (job->op == REGISTRY_GW_UE_REG && (!job->ids || !job->gens)) return M5_EINVAL;
  char key[REGJS_KEY_MAX + 1];
  if (regjs_key("g", in->gw_id, key) != 0) return M5_EINVAL;
  for (int tries = 0; tries < REGJS_CAS_TRIES; tries++) {
    memset(&cur, 0, sizeof cur);
    memcpy(cur.gw_id, in->gw_id, sizeof cur.gw_id);
    int exists = 0;
    uint64_t rev = 0, new_rev = 0;
    int rc = read_gw(js, key, &cur, &exists, &rev);
    if (rc) return rc;
    if (job->op != REGISTRY_GW_PUT && !exists) return M5_ENOENT;
    collect_t c = {.gw_id = in->gw_id};
    switch (job->op) {
    case REGISTRY_GW_PUT:
      job->created = !exists;
      rc = write_gw(js, key, in, rev, &new_rev);
      if (rc == M5_EAGAIN) continue;
      if (rc || !exists || !strcmp(cur.pattern, in->pattern)) return rc;
      c.keep = in->pattern; /* IDs outside the new pattern go */
      if ((rc = collect_held(js->r, &c)) != 0) return rc;
      rc = release_all(js, job, &c);
      if (rc == 0 && job->n_ids)
        M5_LOGI(DOM, "gateway %s: %zu UE Service ID(s) outside its new pattern released",
                in->gw_id, job->n_ids);
      return rc;
    case REGISTRY_GW_DEL:
      rc = write_gw(js, key, NULL, rev, &new_rev);
      if (rc == M5_EAGAIN) continue;
      if (rc) return rc;
      if ((rc = collect_held(js->r, &c)) != 0) return rc;
      return release_all(js, job, &c);
    case REGISTRY_GW_UE_REG:
      return ue_reg(js, job, &cur);
    case REGISTRY_GW_UE_DEREG:
      return release(js, job->ue_svc_id, in->gw_id, &job->gen);
    case REGISTRY_GW_UE_LIST:
      return ue_list(js, job);
    default:
      return M5_EINVAL;
    }
  }
  return M5_EAGAIN;
}

/* What registry_open loaded from this node's SQLite file is not the cluster's. */
int regjs_gw_reset(registry_t *r) {
  m5_hmap_t *gw = m5_hmap_new(), *ue = m5_hmap_new();
  if (!gw || !ue) {
    if (gw) m5_hmap_free(gw, NULL);
    if (ue) m5_hmap_free(ue, NULL);
    return M5_ENOMEM;
  }
  pthread_rwlock_wrlock(&r->lock);
  m5_hmap_free(r->gw_map, free);
  m5_hmap_free(r->gwue_map, free);
  r->gw_map = gw;
  r->gwue_map = ue;
  atomic_store(&r->gw_held, 0);
  pthread_rwlock_unlock(&r->lock);
  return 0;
}
