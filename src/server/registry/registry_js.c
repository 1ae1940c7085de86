/* The registry shared through NATS KV (issue 13; registry.h "the registry shared through NATS
 * KV", docs/scale-out.md "Registry on NATS KV"): UE bindings (TS 23.554 cl. 8.2.1, the SEAL CM
 * role) and registrations (cl. 8.2.2) of every m5s node of a cluster in two KV buckets:
 *   <prefix>_bind  key u.<enc(ueSvcId)> -> {"supi":"...","gen":N}, or the tombstone
 *                  {"gen":N,"removed":true} of a removal: never a KV delete, so the ID's
 *                  generation survives its removal and keeps growing (docs/delivery.md
 *                  "Re-bound UE Service IDs");
 *   <prefix>_reg   key u.<enc(ueSvcId)> -> {"gen":G,"at":T,"exp":E,"node":"a"}: the registration
 *                  made under generation G by the session on node "a" (at 0: deregistered). A
 *                  registration of another generation than the binding's is void, so a re-bind
 *                  needs no second write to drop it.
 * enc = js_names.h (base64url). Values are JSON (jansson), small and readable with any client.
 *
 * Writes run on the registry's DB thread (registry.c run_job), each a leader read then a
 * compare-and-set on the key's revision (create-only for a new key), retried on a conflict, so
 * two nodes changing one ID at once are serialised by the bucket. The memory copy (registry.c's
 * map, read by the workers without waiting) is written only by one watcher thread per bucket,
 * which applies every change, this node's and the others', in revision order and runs the change
 * hook (registry_set_change_hook: the server closes the sessions a change invalidates, on
 * whichever node holds them). A job replies once its watcher has applied its own write (read
 * your writes): an admin answer or a REG reply never runs ahead of this node's memory.
 *
 * REG and the shared generation: the issue offers "a change reaches all nodes before it is
 * acknowledged" or "each node checks the shared generation"; this is the second. A REG reads
 * the binding through the stream leader (m5_js_kv_get), never the possibly lagging memory, and
 * is refused unless it names that SUPI and generation; then it waits until its watcher has
 * applied that binding, so the check after router_bind (ue_api.c done_reg) sees it too. A
 * binding changed on node A a moment ago is thus never used on node B for a new session; a
 * session B already holds is closed when B's watcher applies the change (milliseconds). */
#include "server/registry/registry_js_int.h"

#include "core/err.h"
#include "core/hmap.h"
#include "core/log.h"
#include "server/groups/groups_int.h"

#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define DOM "registry"
#define WATCH_POLL_MS 200 /* a watcher's wait per call: how soon it sees the stop flag */

/* A registration as the bucket holds it (js->regs, under r->lock). */
typedef struct {
  uint64_t gen;
  int64_t at, exp; /* at 0: none */
  char node[REGISTRY_NODE_MAX + 1];
} js_reg_t;

/* ---- names and values ---- */

int regjs_key(const char *type, const char *id, char key[REGJS_KEY_MAX + 1]) {
  char tok[M5_JS_TOKEN_SIZE];
  if (m5_js_name_encode(id, strlen(id), tok, sizeof tok, NULL) != 0) return M5_ERANGE;
  int n = snprintf(key, REGJS_KEY_MAX + 1, "%s.%s", type, tok);
  return n > 0 && n <= REGJS_KEY_MAX ? 0 : M5_ERANGE;
}

int regjs_key_id(const char *key, const char *type, char *id, size_t id_size) {
  size_t tl = strlen(type);
  if (strncmp(key, type, tl) != 0 || key[tl] != '.') return M5_EINVAL;
  uint8_t raw[M5_JS_ID_MAX];
  size_t n = 0;
  if (m5_js_name_decode(key + tl + 1, strlen(key + tl + 1), raw, sizeof raw, &n, NULL, 0) != 0 ||
      n == 0 || n >= id_size || memchr(raw, 0, n))
    return M5_EINVAL;
  memcpy(id, raw, n);
  id[n] = '\0';
  return 0;
}

static int bind_parse(const uint8_t *val, size_t len, regjs_bind_t *b) {
  memset(b, 0, sizeof b[0]);
  json_t *o = json_loadb((const char *)val, len, 0, NULL);
  json_t *gen = json_object_get(o, "gen"), *supi = json_object_get(o, "supi"),
         *gw = json_object_get(o, "gw");
  int rc = M5_EINVAL;
  if (json_is_integer(gen) && json_integer_value(gen) > 0) {
    b->gen = (uint64_t)json_integer_value(gen);
    b->removed = json_is_true(json_object_get(o, "removed"));
    if (b->removed) {
      rc = 0;
    } else if (json_is_string(supi) && json_string_length(supi) > 0 &&
               json_string_length(supi) <= REGISTRY_SUPI_MAX) {
      memcpy(b->supi, json_string_value(supi), json_string_length(supi) + 1);
      rc = 0;
    } else if (json_is_string(gw) && json_string_length(gw) > 0 &&
               json_string_length(gw) <= REGISTRY_AS_ID_MAX) {
      memcpy(b->gw, json_string_value(gw), json_string_length(gw) + 1);
      rc = 0;
    }
  }
  json_decref(o);
  return rc;
}

static int reg_parse(const uint8_t *val, size_t len, js_reg_t *g) {
  memset(g, 0, sizeof g[0]);
  json_t *o = json_loadb((const char *)val, len, 0, NULL);
  json_t *gen = json_object_get(o, "gen"), *at = json_object_get(o, "at"),
         *exp = json_object_get(o, "exp"), *node = json_object_get(o, "node");
  int rc = M5_EINVAL;
  if (json_is_integer(gen) && json_is_integer(at) && json_is_integer(exp) && json_is_string(node) &&
      json_string_length(node) <= REGISTRY_NODE_MAX) {
    g->gen = (uint64_t)json_integer_value(gen);
    g->at = json_integer_value(at);
    g->exp = json_integer_value(exp);
    memcpy(g->node, json_string_value(node), json_string_length(node) + 1);
    rc = 0;
  }
  json_decref(o);
  return rc;
}

/* ---- the watchers: the only writers of the memory copy ---- */

static void run_hook(registry_js_t *js, const char *id, uint64_t gen, registry_change_t why) {
  pthread_mutex_lock(&js->mu);
  void (*fn)(void *, const char *, uint64_t, registry_change_t) = js->hook;
  void *arg = js->hook_arg;
  pthread_mutex_unlock(&js->mu);
  if (fn) fn(arg, id, gen, why);
}

/* The registration fields of e from the registration stored for its ID, if it was made under
 * e's generation (under r->lock). */
static void merge_reg(registry_js_t *js, registry_entry_t *e) {
  const js_reg_t *g = m5_hmap_get(js->regs, e->ue_svc_id, strlen(e->ue_svc_id));
  if (g && g->gen == e->gen && g->at != 0) {
    e->registered_at = g->at;
    e->expiry = g->exp;
    memcpy(e->node, g->node, sizeof e->node);
  } else {
    e->registered_at = e->expiry = 0;
    e->node[0] = '\0';
  }
}

static void apply_bind(registry_js_t *js, const m5_js_kv_change_t *ch) {
  registry_t *r = js->r;
  char id[REGISTRY_ID_MAX + 1];
  if (regjs_key_id(ch->key, "u", id, sizeof id) != 0) return;
  regjs_bind_t b;
  if (ch->deleted) { /* not written by m5s (removals are tombstones): a removal all the same */
    memset(&b, 0, sizeof b);
    b.removed = 1;
  } else if (bind_parse(ch->val, ch->len, &b) != 0) {
    M5_LOGE(DOM, "bucket %s: skipping the malformed value of %s (revision %llu)",
            js->b[REGJS_BIND].name, ch->key, (unsigned long long)ch->rev);
    return;
  }
  size_t klen = strlen(id);
  int oom = 0;
  pthread_rwlock_wrlock(&r->lock);
  registry_entry_t *e = m5_hmap_get(r->map, id, klen);
  const gw_ue_t *u = m5_hmap_get(r->gwue_map, id, klen);
  uint64_t *rm = m5_hmap_get(js->removed, id, klen);
  uint64_t known = e ? e->gen : u ? u->gen : rm ? *rm : 0;
  if (!b.gen) b.gen = known;
  /* a holder (subscriber or gateway) that is not the new one: its groups' state goes */
  int handed_over = (e && (b.removed || strcmp(e->supi, b.supi) != 0)) ||
                    (u && (b.removed || strcmp(u->gw_id, b.gw) != 0));
  if (!b.supi[0] && e) {
    free(m5_hmap_del(r->map, id, klen));
    e = NULL;
  }
  if (!b.gw[0] && u) regjs_gwue_drop(r, id);
  if (b.removed) {
    if (!rm && (rm = malloc(sizeof *rm)) && m5_hmap_put(js->removed, id, klen, rm, NULL) != 0) {
      free(rm);
      rm = NULL;
    }
    if (rm) *rm = b.gen;
  } else {
    if (rm) free(m5_hmap_del(js->removed, id, klen));
    if (b.gw[0]) {
      regjs_gwue_set(r, id, b.gw, b.gen);
    } else {
      if (!e && (e = calloc(1, sizeof *e))) {
        memcpy(e->ue_svc_id, id, klen + 1);
        if (m5_hmap_put(r->map, e->ue_svc_id, klen, e, NULL) != 0) {
          free(e);
          e = NULL;
        }
      }
      if (e) {
        memcpy(e->supi, b.supi, sizeof e->supi);
        e->gen = b.gen;
        merge_reg(js, e);
      } else {
        oom = 1;
      }
    }
  }
  pthread_rwlock_unlock(&r->lock);
  if (oom)
    M5_LOGE(DOM, "out of memory: the binding of %s (revision %llu) is not applied", id,
            (unsigned long long)ch->rev);
  if (handed_over) regjs_purge_later(js, "ue", id, 0);
  /* the sessions of another generation (a subscriber's before a hand-over) must go */
  if (known != b.gen) run_hook(js, id, b.gen, REGISTRY_CHANGE_BINDING);
}

static void apply_reg(registry_js_t *js, const m5_js_kv_change_t *ch) {
  registry_t *r = js->r;
  char id[REGISTRY_ID_MAX + 1];
  if (regjs_key_id(ch->key, "u", id, sizeof id) != 0) return;
  js_reg_t g;
  if (ch->deleted) {
    memset(&g, 0, sizeof g);
  } else if (reg_parse(ch->val, ch->len, &g) != 0) {
    M5_LOGE(DOM, "bucket %s: skipping the malformed value of %s (revision %llu)", js->b[REGJS_REG].name,
            ch->key, (unsigned long long)ch->rev);
    return;
  }
  size_t klen = strlen(id);
  int moved = 0;
  pthread_rwlock_wrlock(&r->lock);
  js_reg_t *cur = m5_hmap_get(js->regs, id, klen);
  if (!cur && (cur = malloc(sizeof *cur)) && m5_hmap_put(js->regs, id, klen, cur, NULL) != 0) {
    free(cur);
    cur = NULL;
  }
  if (cur) *cur = g;
  registry_entry_t *e = m5_hmap_get(r->map, id, klen);
  if (e && cur) merge_reg(js, e);
  /* a registration of the binding in force, by a session on another node: the newer session
   * wins (docs/protocol.md §3), one here must go */
  moved = e && e->gen == g.gen && g.at != 0 && strcmp(g.node, js->node) != 0;
  pthread_rwlock_unlock(&r->lock);
  if (!cur)
    M5_LOGE(DOM, "out of memory: the registration of %s (revision %llu) is not applied", id,
            (unsigned long long)ch->rev);
  if (moved) run_hook(js, id, g.gen, REGISTRY_CHANGE_MOVED);
}

static void *watch_main(void *arg) {
  regjs_bucket_t *b = arg;
  registry_js_t *js = b->js;
  char err[256];
  int failing = 0;
  while (!atomic_load(&js->stop)) {
    m5_js_kv_change_t ch;
    int rc = m5_js_kv_watch_next(b->w, WATCH_POLL_MS, &ch, err, sizeof err);
    if (rc == M5_ETIMEDOUT) continue;
    if (rc == M5_ECLOSED) break;
    if (rc != 0) {
      if (!failing++) M5_LOGW(DOM, "watcher of %s: %s; retrying", b->name, err);
      struct timespec ts = {0, WATCH_POLL_MS * 1000000L};
      nanosleep(&ts, NULL);
      continue;
    }
    failing = 0;
    if (ch.key) b->apply(js, &ch);
    pthread_mutex_lock(&js->mu);
    if (ch.key && ch.rev > b->applied) b->applied = ch.rev;
    if (!ch.key) b->ready = 1;
    pthread_cond_broadcast(&js->cv);
    pthread_mutex_unlock(&js->mu);
  }
  return NULL;
}

/* Until bucket b has applied revision rev (and its initial values): 0, or M5_ETIMEDOUT. */
int regjs_wait(registry_js_t *js, regjs_bucket_t *b, uint64_t rev) {
  struct timespec dl;
  clock_gettime(CLOCK_REALTIME, &dl);
  dl.tv_sec += (time_t)(js->timeout_ms / 1000);
  dl.tv_nsec += (long)(js->timeout_ms % 1000) * 1000000L;
  if (dl.tv_nsec >= 1000000000L) {
    dl.tv_sec++;
    dl.tv_nsec -= 1000000000L;
  }
  int rc = 0;
  pthread_mutex_lock(&js->mu);
  while ((b->applied < rev || !b->ready) && rc == 0)
    if (pthread_cond_timedwait(&js->cv, &js->mu, &dl) != 0) rc = M5_ETIMEDOUT;
  if (b->applied >= rev && b->ready) rc = 0;
  pthread_mutex_unlock(&js->mu);
  if (rc)
    M5_LOGE(DOM, "bucket %s: revision %llu written but not seen by this node's watcher within "
                 "%lld ms", b->name, (unsigned long long)rev, (long long)js->timeout_ms);
  return rc;
}

/* ---- the jobs (DB thread) ---- */

/* The value of key as JSON text and its revision (0 when absent): 0, or M5_EIO (logged). */
int regjs_read(regjs_bucket_t *b, const char *key, uint8_t **val, size_t *len, uint64_t *rev) {
  char err[256];
  *rev = 0;
  int rc = m5_js_kv_get(b->kv, key, val, len, rev, err, sizeof err);
  if (rc == M5_ENOENT) {
    *val = NULL;
    *rev = 0;
    return 0;
  }
  if (rc != 0) M5_LOGE(DOM, "reading %s from %s: %s", key, b->name, err);
  return rc ? M5_EIO : 0;
}

/* Writes text to key: create-only when rev is 0, else compare-and-set on rev. 0 and *new_rev;
 * M5_EAGAIN: someone else wrote it since it was read; M5_EIO (logged). */
int regjs_write(regjs_bucket_t *b, const char *key, const char *text, uint64_t rev,
                     uint64_t *new_rev) {
  char err[256];
  size_t n = strlen(text);
  int rc = rev ? m5_js_kv_update(b->kv, key, text, n, rev, new_rev, err, sizeof err)
               : m5_js_kv_create(b->kv, key, text, n, new_rev, err, sizeof err);
  if (rc == M5_EAGAIN || rc == M5_EEXIST) return M5_EAGAIN;
  if (rc != 0) M5_LOGE(DOM, "writing %s to %s: %s", key, b->name, err);
  return rc ? M5_EIO : 0;
}

/* The binding of key through the stream leader: 0 with *b (b->gen 0: never bound) and *rev. */
int regjs_read_bind(registry_js_t *js, const char *key, regjs_bind_t *b, uint64_t *rev) {
  uint8_t *v = NULL;
  size_t n = 0;
  memset(b, 0, sizeof b[0]);
  int rc = regjs_read(&js->b[REGJS_BIND], key, &v, &n, rev);
  if (rc == 0 && v && bind_parse(v, n, b) != 0) {
    M5_LOGE(DOM, "bucket %s: the value of %s is malformed", js->b[REGJS_BIND].name, key);
    rc = M5_EIO;
  }
  free(v);
  return rc;
}

static int read_reg(registry_js_t *js, const char *key, js_reg_t *g, uint64_t *rev) {
  uint8_t *v = NULL;
  size_t n = 0;
  memset(g, 0, sizeof g[0]);
  int rc = regjs_read(&js->b[REGJS_REG], key, &v, &n, rev);
  if (rc == 0 && v && reg_parse(v, n, g) != 0) {
    M5_LOGE(DOM, "bucket %s: the value of %s is malformed", js->b[REGJS_REG].name, key);
    rc = M5_EIO;
  }
  free(v);
  return rc;
}

/* A new generation for an ID whose last one is cur: above it, and at least the wall clock in ms
 * (registry.c registry_next_gen: the store remembers generations across a lost registry). */
uint64_t regjs_next_gen(uint64_t cur) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  uint64_t now = (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
  return now > cur ? now : cur + 1;
}

/* On the DB thread: principal's memberships and grants (and with drop_created the groups it
 * created) leave the groups, shared in KV (groups_js_ops.c), else this node's as on the
 * sqlite backend in the change's transaction. */
static void purge_principal(registry_t *r, const char *who, int drop_created) {
  if (groups_js_on(r)) {
    groups_js_purge(r, who, drop_created);
    return;
  }
  groups_purge_t *purge = NULL;
  if (registry_exec(r, "BEGIN IMMEDIATE") != 0) return;
  int rc = groups_purge_stage(r, who, drop_created, &purge);
  if (rc == 0) rc = registry_exec(r, "COMMIT");
  if (rc != 0) {
    registry_exec(r, "ROLLBACK");
    groups_purge_abort(purge);
    M5_LOGE(DOM, "%s changed hands, but its group memberships could not be dropped", who);
    return;
  }
  groups_purge_apply(r, purge);
}

/* The new holder of a re-bound or removed ID starts in no group (groups_int.h "hand-over"):
 * ue:<id>'s memberships and grants go from the groups before the answer; every node's watcher
 * asks for the same when it applies the change (regjs_purge_later), which finds nothing left
 * unless this node died before its purge. */
void regjs_purge_ue_groups(registry_t *r, const char *id) {
  groups_principal_t p;
  if (strlen(id) > M5_MSG_ADDR_MAX) return; /* no such member */
  snprintf(p, sizeof p, "ue:%s", id);
  purge_principal(r, p, 0);
}

/* A REGISTRY_JS_PURGE job: registry_js.c's own. */
typedef struct {
  registry_job_t job; /* first */
  groups_principal_t who;
  int drop_created;
} purge_job_t;

static void purge_done(void *msg, void *arg) {
  (void)arg;
  free(msg);
}

static void *purge_main(void *arg) {
  m5_loop_run(((registry_js_t *)arg)->purge_loop);
  return NULL;
}

void regjs_purge_later(registry_js_t *js, const char *kind, const char *id, int drop_created) {
  purge_job_t *p = calloc(1, sizeof *p);
  if (p) {
    p->job.op = REGISTRY_JS_PURGE;
    p->job.base.reply = js->purge_mb;
    snprintf(p->who, sizeof p->who, "%s:%s", kind, id);
    p->drop_created = drop_created;
  }
  pthread_mutex_lock(&js->mu);
  int rc = !p ? M5_ENOMEM
           : js->closing || !js->purge_mb ? M5_ECLOSED
                                          : m5_jobthread_submit(js->r->thread, &p->job.base);
  pthread_mutex_unlock(&js->mu);
  if (rc == 0) return;
  free(p);
  /* before registry_start (M5_ECLOSED) no group job has run on this node yet either */
  M5_LOGW(DOM, "%s:%s changed hands on another node; this node's groups could not be told: %s",
          kind, id, m5_strerror(rc));
}

char *regjs_bind_text(const regjs_bind_t *b) {
  json_t *o = b->removed ? json_pack("{s:I, s:b}", "gen", (json_int_t)b->gen, "removed", 1)
              : b->gw[0] ? json_pack("{s:s, s:I}", "gw", b->gw, "gen", (json_int_t)b->gen)
                         : json_pack("{s:s, s:I}", "supi", b->supi, "gen", (json_int_t)b->gen);
  char *t = o ? json_dumps(o, JSON_COMPACT) : NULL;
  json_decref(o);
  return t;
}

static char *reg_text(const js_reg_t *g) {
  json_t *o = json_pack("{s:I, s:I, s:I, s:s}", "gen", (json_int_t)g->gen, "at", (json_int_t)g->at,
                        "exp", (json_int_t)g->exp, "node", g->node);
  char *t = o ? json_dumps(o, JSON_COMPACT) : NULL;
  json_decref(o);
  return t;
}

/* BIND and UNBIND (registry.h): the outputs as on the sqlite backend. */
static int js_bind(registry_js_t *js, registry_job_t *job, int unbind) {
  registry_t *r = js->r;
  char key[REGJS_KEY_MAX + 1];
  if (regjs_key("u", job->ue_svc_id, key) != 0) return unbind ? M5_ENOENT : M5_EINVAL;
  for (int tries = 0; tries < REGJS_CAS_TRIES; tries++) {
    regjs_bind_t cur, next;
    uint64_t rev = 0, new_rev = 0;
    int rc = regjs_read_bind(js, key, &cur, &rev);
    if (rc) return rc;
    /* an ID a gateway holds is not bound until it lets go (registry.h "message gateways");
     * one its removed gateway left behind is free */
    if (cur.gw[0] && regjs_gw_exists(r, cur.gw)) return unbind ? M5_ENOENT : M5_EEXIST;
    int bound = cur.gen && !cur.removed && cur.supi[0];
    job->created = !bound;
    snprintf(job->old_supi, sizeof job->old_supi, "%s", bound ? cur.supi : "");
    job->old_gen = job->gen = bound ? cur.gen : 0;
    if (unbind && !bound) return M5_ENOENT;
    if (!unbind && bound && !strcmp(cur.supi, job->supi))
      return regjs_wait(js, &js->b[REGJS_BIND], rev); /* nothing changes; answered from memory */
    memset(&next, 0, sizeof next);
    next.gen = regjs_next_gen(cur.gen);
    next.removed = unbind;
    if (!unbind) memcpy(next.supi, job->supi, sizeof next.supi);
    char *text = regjs_bind_text(&next);
    if (!text) return M5_ENOMEM;
    rc = regjs_write(&js->b[REGJS_BIND], key, text, rev, &new_rev);
    free(text);
    if (rc == M5_EAGAIN) continue; /* another node changed it meanwhile: judge afresh */
    if (rc) return rc;
    job->gen = next.gen;
    rc = regjs_wait(js, &js->b[REGJS_BIND], new_rev);
    if (bound) regjs_purge_ue_groups(r, job->ue_svc_id);
    return rc;
  }
  M5_LOGE(DOM, "%s: the binding kept changing under %d attempts", job->ue_svc_id, REGJS_CAS_TRIES);
  return M5_EAGAIN;
}

static int js_register(registry_js_t *js, registry_job_t *job) {
  char key[REGJS_KEY_MAX + 1];
  if (regjs_key("u", job->ue_svc_id, key) != 0) return M5_EPERM;
  for (int tries = 0; tries < REGJS_CAS_TRIES; tries++) {
    /* The registration first, then the binding: a re-bind (and any REG after it) between the
     * two reads changes the registration's revision, so the write below fails and the next
     * round sees the new binding. */
    js_reg_t cur, next;
    regjs_bind_t b;
    uint64_t rev = 0, brev = 0, new_rev = 0;
    int rc = read_reg(js, key, &cur, &rev);
    if (rc == 0) rc = regjs_read_bind(js, key, &b, &brev);
    if (rc) return rc;
    /* gen 0: the worker found no binding in its memory, which may lag one made on another node
     * a moment ago (ue_api.c op_reg): the shared one decides */
    if (!b.gen || b.removed || !b.supi[0] || strcmp(b.supi, job->supi) != 0 ||
        (job->gen && b.gen != job->gen))
      return M5_EPERM;
    job->gen = b.gen;
    job->created = !(cur.gen == b.gen && cur.at != 0 && cur.exp > job->registered_at);
    memset(&next, 0, sizeof next);
    next.gen = b.gen;
    next.at = job->registered_at;
    next.exp = job->expiry;
    memcpy(next.node, js->node, sizeof next.node);
    char *text = reg_text(&next);
    if (!text) return M5_ENOMEM;
    rc = regjs_write(&js->b[REGJS_REG], key, text, rev, &new_rev);
    free(text);
    if (rc == M5_EAGAIN) continue;
    if (rc) return rc;
    /* this node's memory holds that binding (done_reg checks it) and this registration */
    rc = regjs_wait(js, &js->b[REGJS_BIND], brev);
    return rc ? rc : regjs_wait(js, &js->b[REGJS_REG], new_rev);
  }
  M5_LOGE(DOM, "%s: its registration kept changing under %d attempts", job->ue_svc_id, REGJS_CAS_TRIES);
  return M5_EAGAIN;
}

static int js_deregister(registry_js_t *js, registry_job_t *job) {
  char key[REGJS_KEY_MAX + 1];
  if (regjs_key("u", job->ue_svc_id, key) != 0) return M5_ENOENT;
  for (int tries = 0; tries < REGJS_CAS_TRIES; tries++) {
    js_reg_t cur;
    uint64_t rev = 0, new_rev = 0;
    int rc = read_reg(js, key, &cur, &rev);
    if (rc) return rc;
    /* not registered, or by a newer session on another node: that one stays */
    if (!rev || cur.at == 0 || strcmp(cur.node, js->node) != 0) return M5_ENOENT;
    cur.at = cur.exp = 0;
    cur.node[0] = '\0';
    char *text = reg_text(&cur);
    if (!text) return M5_ENOMEM;
    rc = regjs_write(&js->b[REGJS_REG], key, text, rev, &new_rev);
    free(text);
    if (rc == M5_EAGAIN) continue;
    return rc ? rc : regjs_wait(js, &js->b[REGJS_REG], new_rev);
  }
  return M5_EAGAIN;
}

int registry_js_run(registry_t *r, registry_job_t *job) {
  switch (job->op) {
  case REGISTRY_BIND:
    return js_bind(r->js, job, 0);
  case REGISTRY_UNBIND:
    return js_bind(r->js, job, 1);
  case REGISTRY_REGISTER:
    return js_register(r->js, job);
  case REGISTRY_DEREGISTER:
    return js_deregister(r->js, job);
  case REGISTRY_AS_PUT:
  case REGISTRY_AS_DEL:
  case REGISTRY_AS_REGISTER:
  case REGISTRY_AS_DEREGISTER:
    return job->as ? regjs_as_run(r->js, job) : M5_EINVAL;
  case REGISTRY_POLICY_PUT:
  case REGISTRY_POLICY_DEL:
    return regjs_policy_run(r->js, job);
  case REGISTRY_GW_PUT:
  case REGISTRY_GW_DEL:
  case REGISTRY_GW_UE_REG:
  case REGISTRY_GW_UE_DEREG:
  case REGISTRY_GW_UE_LIST:
    return job->gw ? regjs_gw_run(r->js, job) : M5_EINVAL;
  case REGISTRY_JS_PURGE: {
    purge_job_t *p = (purge_job_t *)job; /* submitted by regjs_purge_later only */
    purge_principal(r, p->who, p->drop_created);
    return 0;
  }
  default:
    return M5_EINVAL;
  }
}

/* ---- set-up and the rest ---- */

typedef struct {
  void (*fn)(void *arg, const char *ue_svc_id, uint64_t gen);
  void *arg;
} gens_t;

static void each_bound(const void *key, size_t klen, void *val, void *arg) {
  (void)key;
  (void)klen;
  const registry_entry_t *e = val;
  gens_t *g = arg;
  g->fn(g->arg, e->ue_svc_id, e->gen);
}

static void each_held(const void *key, size_t klen, void *val, void *arg) {
  (void)key;
  (void)klen;
  const gw_ue_t *u = val;
  gens_t *g = arg;
  g->fn(g->arg, u->ue_svc_id, u->gen);
}

static void each_removed(const void *key, size_t klen, void *val, void *arg) {
  gens_t *g = arg;
  char id[REGISTRY_ID_MAX + 1];
  if (klen > REGISTRY_ID_MAX) return;
  memcpy(id, key, klen);
  id[klen] = '\0';
  g->fn(g->arg, id, *(const uint64_t *)val);
}

int registry_js_gens_foreach(registry_t *r,
                             void (*fn)(void *arg, const char *ue_svc_id, uint64_t gen), void *arg) {
  gens_t g = {fn, arg};
  pthread_rwlock_rdlock(&r->lock);
  m5_hmap_foreach(r->map, each_bound, &g);
  m5_hmap_foreach(r->js->removed, each_removed, &g);
  m5_hmap_foreach(r->gwue_map, each_held, &g);
  pthread_rwlock_unlock(&r->lock);
  return 0;
}

void registry_set_change_hook(registry_t *r,
                              void (*fn)(void *arg, const char *ue_svc_id, uint64_t gen,
                                         registry_change_t why),
                              void *arg) {
  if (!r->js) return; /* sqlite: the admin API closes the sessions it invalidates itself */
  pthread_mutex_lock(&r->js->mu);
  r->js->hook = fn;
  r->js->hook_arg = arg;
  pthread_mutex_unlock(&r->js->mu);
}

int registry_shared(registry_t *r) {
  return r->js != NULL;
}

static void no_ack(void *arg, const m5_js_ack_t *ack) {
  (void)arg;
  (void)ack; /* the registry never publishes asynchronously */
}

void registry_js_quiesce(registry_t *r) {
  if (!r->js) return;
  pthread_mutex_lock(&r->js->mu);
  r->js->closing = 1;
  pthread_mutex_unlock(&r->js->mu);
}

void registry_js_free(registry_t *r) {
  registry_js_t *js = r->js;
  if (!js) return;
  atomic_store(&js->stop, 1);
  for (int i = 0; i < REGJS_N; i++) /* each sees the flag within WATCH_POLL_MS */
    if (js->b[i].started) pthread_join(js->b[i].thread, NULL);
  /* closed before the watchers are freed: freeing one on an open connection deletes its
   * consumer by a request, which waited for store.js.timeout_ms per bucket after a NATS node
   * died (the consumers are ephemeral: the server removes them) */
  m5_js_client_disconnect(js->c);
  groups_js_free(r); /* its watcher thread sees the flag too; the connection is closed */
  for (int i = 0; i < REGJS_N; i++) {
    m5_js_kv_watch_free(js->b[i].w);
    m5_js_kv_close(js->b[i].kv);
  }
  m5_js_client_close(js->c);
  /* every purge job came back: the job thread is gone (registry_free) */
  if (js->purge_started) {
    m5_loop_stop(js->purge_loop);
    pthread_join(js->purge_thread, NULL);
  }
  if (js->purge_mb) m5_mailbox_free(js->purge_mb, free);
  if (js->purge_loop) m5_loop_free(js->purge_loop);
  if (js->removed) m5_hmap_free(js->removed, free);
  if (js->regs) m5_hmap_free(js->regs, free);
  pthread_cond_destroy(&js->cv);
  pthread_mutex_destroy(&js->mu);
  free(js);
  r->js = NULL;
}

static int name_ok(const char *s, size_t max) {
  size_t n = s ? strlen(s) : 0;
  if (n == 0 || n > max) return 0;
  for (size_t i = 0; i < n; i++) {
    char c = s[i];
    if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' ||
          c == '-'))
      return 0;
  }
  return 1;
}

static int open_bucket(registry_js_t *js, regjs_bucket_t *b, const registry_js_opts_t *o,
                       const char *suffix, char *err, size_t errlen) {
  b->js = js;
  snprintf(b->name, sizeof b->name, "%s_%s", o->prefix, suffix);
  m5_js_kv_spec_t spec = {.bucket = b->name, .replicas = o->replicas, .history = 1, .ttl_ms = 0};
  char e[384];
  int rc = m5_js_ensure_kv(js->c, &spec, &b->kv, e, sizeof e);
  if (rc == 0) rc = m5_js_kv_watch(b->kv, &b->w, e, sizeof e);
  if (rc) snprintf(err, errlen, "registry: %s", e);
  return rc;
}

int registry_js_attach(registry_t *r, const registry_js_opts_t *o, char *err, size_t errlen) {
  if (r->js || !o || !o->servers || !o->n_servers) {
    snprintf(err, errlen, "registry: store.js.servers is required with store.backend jetstream");
    return M5_EINVAL;
  }
  if (!name_ok(o->node, REGISTRY_NODE_MAX)) {
    snprintf(err, errlen, "registry: node.name must be 1-%d characters of A-Z a-z 0-9 _ -",
             REGISTRY_NODE_MAX);
    return M5_EINVAL;
  }
  if (!name_ok(o->prefix, REGJS_BUCKET_MAX - 7)) {
    snprintf(err, errlen, "registry: store.js.prefix must be 1-%d characters of A-Z a-z 0-9 _ -",
             REGJS_BUCKET_MAX - 7);
    return M5_EINVAL;
  }
  registry_js_t *js = calloc(1, sizeof *js);
  if (!js || pthread_mutex_init(&js->mu, NULL) != 0) {
    free(js);
    snprintf(err, errlen, "registry: out of memory");
    return M5_ENOMEM;
  }
  pthread_cond_init(&js->cv, NULL);
  js->r = r;
  js->timeout_ms = o->timeout_ms > 0 ? o->timeout_ms : 5000;
  snprintf(js->node, sizeof js->node, "%s", o->node);
  js->b[REGJS_BIND].apply = apply_bind;
  js->b[REGJS_REG].apply = apply_reg;
  js->b[REGJS_AS].apply = regjs_as_apply;
  js->b[REGJS_POLICY].apply = regjs_policy_apply;
  js->b[REGJS_GW].apply = regjs_gw_apply;
  r->js = js; /* from here on registry_js_free undoes it all */
  js->removed = m5_hmap_new();
  js->regs = m5_hmap_new();
  js->purge_loop = m5_loop_new();
  js->purge_mb = js->purge_loop ? m5_mailbox_new(js->purge_loop, 1024, purge_done, NULL) : NULL;
  if (js->purge_mb && pthread_create(&js->purge_thread, NULL, purge_main, js) == 0)
    js->purge_started = 1;
  m5_hmap_t *fresh = m5_hmap_new();
  if (!js->removed || !js->regs || !fresh || !js->purge_started) {
    if (fresh) m5_hmap_free(fresh, NULL);
    snprintf(err, errlen, "registry: out of memory");
    registry_js_free(r);
    return M5_ENOMEM;
  }
  /* The bindings loaded from this node's SQLite file are not the cluster's: the buckets are. */
  pthread_rwlock_wrlock(&r->lock);
  m5_hmap_free(r->map, free);
  r->map = fresh;
  pthread_rwlock_unlock(&r->lock);
  if (regjs_as_reset(r) != 0 || regjs_gw_reset(r) != 0) {
    snprintf(err, errlen, "registry: out of memory");
    registry_js_free(r);
    return M5_ENOMEM;
  }
  char name[96];
  snprintf(name, sizeof name, "m5s-registry-%s", js->node);
  m5_js_client_opts_t co = {.servers = o->servers,
                            .n_servers = o->n_servers,
                            .timeout_ms = js->timeout_ms,
                            .name = name,
                            .on_ack = no_ack,
                            .auth = {o->tls_ca, o->tls_cert, o->tls_key, o->user,
                                     o->password_file, o->creds}};
  char e[384];
  int rc = m5_js_client_open(&js->c, &co, e, sizeof e);
  if (rc) snprintf(err, errlen, "registry: %s", e);
  static const char *const suffix[REGJS_N] = {"bind", "reg", "as", "policy", "gw"};
  for (int i = 0; i < REGJS_N && rc == 0; i++)
    rc = open_bucket(js, &js->b[i], o, suffix[i], err, errlen);
  for (int i = 0; i < REGJS_N && rc == 0; i++) {
    if (pthread_create(&js->b[i].thread, NULL, watch_main, &js->b[i]) != 0) {
      snprintf(err, errlen, "registry: cannot start the watcher of %s", js->b[i].name);
      rc = M5_ENOMEM;
    } else {
      js->b[i].started = 1;
    }
  }
  /* the buckets' contents are in memory before any session or admin request */
  for (int i = 0; i < REGJS_N && rc == 0; i++)
    if (regjs_wait(js, &js->b[i], 0) != 0) {
      snprintf(err, errlen, "registry: the contents of %s did not arrive within %lld ms",
               js->b[i].name, (long long)js->timeout_ms);
      rc = M5_ETIMEDOUT;
    }
  if (rc == 0) rc = groups_js_attach(r, o, err, errlen); /* groups and areas: <prefix>_groups */
  if (rc) {
    registry_js_free(r);
    return rc;
  }
  M5_LOGI(DOM, "shared through NATS KV (buckets %s_bind, _reg, _as, _policy, _gw) as node %s: "
               "%zu bindings, %zu AS clients, %zu gateways", o->prefix, js->node,
          registry_count(r), registry_as_count(r), registry_gw_count(r));
  return 0;
}
