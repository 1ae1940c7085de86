/* The JetStream store's shared state for its per-originator bounds and binding generations
 * (issue 13 decision 4; js_quota.c has the counts and the accept's checks): the generations in
 * KV P_gens with this node's copy, the thread that publishes this node's counts to KV P_quota
 * and sums the other nodes', the watcher of P_gens, and open / close. */
#include "js_quota_int.h"

#include "core/err.h"
#include "core/log.h"
#include "js/js_names.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ---------------------------------------------------------------- generations */

static int gen_key(const char *ue, char *out, size_t size) {
  char enc[M5_JS_TOKEN_SIZE];
  if (m5_js_name_encode(ue, strlen(ue), enc, sizeof enc, NULL)) return M5_EINVAL;
  snprintf(out, size, "g.%s", enc);
  return M5_OK;
}

static void gen_cache(struct js_quota *q, const char *ue, uint64_t gen) {
  size_t l = strlen(ue);
  uintptr_t c = (uintptr_t)m5_hmap_get(q->gens, ue, l);
  if (c && c - 1 >= gen) return; /* generations only grow */
  m5_hmap_put(q->gens, ue, l, (void *)(uintptr_t)(gen + 1), NULL);
}

uint64_t js_gen_known(js_store_t *s, const char *ue) {
  struct js_quota *q = s->quota;
  if (!q) return 0;
  pthread_mutex_lock(&q->mu);
  uintptr_t c = (uintptr_t)m5_hmap_get(q->gens, ue, strlen(ue));
  pthread_mutex_unlock(&q->mu);
  return c ? (uint64_t)(c - 1) : 0;
}

void js_gen_local(js_store_t *s, const char *ue, uint64_t gen) {
  struct js_quota *q = s->quota;
  if (!q) return;
  pthread_mutex_lock(&q->mu);
  gen_cache(q, ue, gen);
  pthread_mutex_unlock(&q->mu);
}

void js_gen_forget(js_store_t *s, const char *ue, uint64_t gen) {
  struct js_quota *q = s->quota;
  if (!q) return;
  pthread_mutex_lock(&q->mu);
  m5_hmap_put(q->gens, ue, strlen(ue), (void *)(uintptr_t)(gen + 1), NULL);
  pthread_mutex_unlock(&q->mu);
}

int js_gen_read(js_store_t *s, const char *ue, uint64_t *gen, uint64_t *rev) {
  struct js_quota *q = s->quota;
  char key[M5_JS_TOKEN_SIZE + 4], err[256];
  *gen = 0;
  if (rev) *rev = 0;
  if (!q || gen_key(ue, key, sizeof key)) return M5_EINVAL;
  uint8_t *v = NULL;
  size_t len = 0;
  int rc = m5_js_kv_get(q->gens_kv, key, &v, &len, rev, err, sizeof err);
  if (rc == M5_ENOENT) return M5_OK;
  if (rc) {
    M5_LOGW("store", "jetstream: generation of a UE: %s", err);
    return rc;
  }
  *gen = strtoull((const char *)v, NULL, 10);
  free(v);
  js_gen_local(s, ue, *gen);
  return M5_OK;
}

int js_gen_write(js_store_t *s, const char *ue, uint64_t gen) {
  struct js_quota *q = s->quota;
  char key[M5_JS_TOKEN_SIZE + 4], val[24], err[256];
  if (!q || gen_key(ue, key, sizeof key)) return M5_EINVAL;
  int vl = snprintf(val, sizeof val, "%" PRIu64, gen);
  for (int tries = 0; tries < 5; tries++) {
    uint64_t have = 0, rev = 0;
    int rc = js_gen_read(s, ue, &have, &rev);
    if (rc) return rc;
    if (have >= gen) return M5_OK; /* another node got there (the same or a newer one) */
    rc = rev ? m5_js_kv_update(q->gens_kv, key, val, (size_t)vl, rev, NULL, err, sizeof err)
             : m5_js_kv_create(q->gens_kv, key, val, (size_t)vl, NULL, err, sizeof err);
    if (rc == M5_OK) {
      js_gen_local(s, ue, gen);
      return M5_OK;
    }
    if (rc != M5_EAGAIN && rc != M5_EEXIST) {
      M5_LOGW("store", "jetstream: storing a UE's generation: %s", err);
      return rc;
    }
  }
  return M5_EAGAIN;
}

/* ---------------------------------------------------------------- publish and watch */

static int64_t mono_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

typedef struct {
  char key[Q_KEY_MAX + JS_NAME_MAX + 2];
  uint64_t v[3];
  q_own_t *o;
} q_put_t;

typedef struct {
  js_store_t *s;
  q_put_t *puts;
  size_t n, cap;
  int64_t now, tick_d, tick_t;
  char (*gone)[Q_RAW_MAX];
  size_t n_gone, cap_gone;
} q_collect_t;

static void collect_one(const void *key, size_t klen, void *val, void *arg) {
  q_collect_t *c = arg;
  q_own_t *o = val;
  /* this key is this node's now: not one to empty as left over from before the start */
  m5_hmap_del(c->s->quota->stale, o->kv, strlen(o->kv));
  if (o->kv[0] == QK_DEDUP) js_q_win_roll(o, c->tick_d);
  if (o->kv[0] == QK_TICKET) js_q_win_roll(o, c->tick_t);
  uint64_t v[3] = {o->v[0], o->v[1], o->v[2]};
  if (o->kv[0] == QK_PAIR) { /* a pair is published only once it holds half the share */
    uint64_t half = c->s->o.max_per_recipient_per_originator / 2;
    uint64_t rhalf = c->s->o.max_reports_per_recipient / 4;
    uint64_t min = o->kv[1] == '0' + JS_FAM_R ? rhalf : half;
    if (v[0] < (min ? min : 1)) v[0] = 0;
  }
  bool zero = !v[0] && !v[1] && !v[2];
  bool changed = memcmp(v, o->pub, sizeof v) != 0;
  bool stale = o->published && c->now - o->pub_ms >= Q_REFRESH_MS;
  if (zero && !o->published) { /* nothing here, nothing in KV: the entry goes */
    if (!o->v[0] && !o->v[1] && !o->v[2]) {
      if (c->n_gone == c->cap_gone) {
        size_t cap = c->cap_gone ? 2 * c->cap_gone : 64;
        void *nv = realloc(c->gone, cap * sizeof *c->gone);
        if (!nv) return;
        c->gone = nv;
        c->cap_gone = cap;
      }
      if (klen < Q_RAW_MAX) {
        memcpy(c->gone[c->n_gone], key, klen);
        c->gone[c->n_gone++][klen] = 0;
      }
    }
    return;
  }
  if (!changed && !(stale && !zero)) {
    if (zero && stale) { /* its empty value has been there long enough: forget it */
      o->published = false;
    }
    return;
  }
  if (c->n == c->cap) {
    size_t cap = c->cap ? 2 * c->cap : 64;
    q_put_t *nv = realloc(c->puts, cap * sizeof *nv);
    if (!nv) return;
    c->puts = nv;
    c->cap = cap;
  }
  q_put_t *p = &c->puts[c->n++];
  snprintf(p->key, sizeof p->key, "%s.%s", o->kv, c->s->node);
  memcpy(p->v, v, sizeof v);
  p->o = o;
}

static void collect_stale(const void *key, size_t klen, void *val, void *arg) {
  (void)val;
  q_collect_t *c = arg;
  if (klen >= Q_KEY_MAX || c->n == c->cap) {
    size_t cap = c->cap ? 2 * c->cap : 64;
    q_put_t *nv = klen < Q_KEY_MAX ? realloc(c->puts, cap * sizeof *nv) : NULL;
    if (!nv) return;
    c->puts = nv;
    c->cap = cap;
  }
  q_put_t *p = &c->puts[c->n++];
  snprintf(p->key, sizeof p->key, "%.*s.%s", (int)klen, (const char *)key, c->s->node);
  memset(p->v, 0, sizeof p->v);
  p->o = NULL;
}

/* Puts what changed (at most once a second) and what is due for its refresh. */
static void publish(js_store_t *s) {
  struct js_quota *q = s->quota;
  q_collect_t c = {.s = s, .now = mono_ms()};
  c.tick_d = js_q_win_bucket(s, s->o.dedup_window_ms);
  c.tick_t = js_q_win_bucket(s, s->o.report_window_ms);
  pthread_mutex_lock(&q->mu);
  m5_hmap_foreach(q->own, collect_one, &c);
  for (size_t i = 0; i < c.n_gone; i++)
    free(m5_hmap_del(q->own, c.gone[i], strlen(c.gone[i])));
  /* keys this node put before it (re)started and holds nothing for now: emptied once */
  if (m5_hmap_count(q->stale)) m5_hmap_foreach(q->stale, collect_stale, &c);
  m5_hmap_free(q->stale, NULL);
  q->stale = m5_hmap_new(); /* (NULL: out of memory, then none are remembered) */
  pthread_mutex_unlock(&q->mu);
  free(c.gone);
  for (size_t i = 0; i < c.n; i++) {
    q_put_t *p = &c.puts[i];
    char val[80], err[256];
    bool zero = !p->v[0] && !p->v[1] && !p->v[2];
    int vl = zero ? 0
                  : snprintf(val, sizeof val, "%" PRIu64 " %" PRIu64 " %" PRIu64, p->v[0], p->v[1],
                             p->v[2]);
    int rc = m5_js_kv_put(q->kv, p->key, val, (size_t)(vl > 0 ? vl : 0), NULL, err,
                          sizeof err);
    if (rc) { /* the rest waits for the next round (pub unchanged): no timeout per key */
      if (c.now - q->warned_ms >= Q_WARN_MS) {
        q->warned_ms = c.now;
        M5_LOGW("store", "jetstream: publishing the quota counts (%zu to put): %s", c.n - i, err);
      }
      break;
    }
    if (!p->o) continue;
    pthread_mutex_lock(&q->mu);
    /* (the entry lives while published or non-zero: collect_one removes neither) */
    memcpy(p->o->pub, p->v, sizeof p->v);
    p->o->published = true;
    p->o->pub_ms = c.now;
    pthread_mutex_unlock(&q->mu);
  }
  free(c.puts);
}

static void vals_parse(const uint8_t *v, size_t len, q_vals_t *out) {
  memset(out, 0, sizeof *out);
  char b[96];
  if (!len || len >= sizeof b) return;
  memcpy(b, v, len);
  b[len] = 0;
  unsigned long long x = 0, y = 0, z = 0;
  if (sscanf(b, "%llu %llu %llu", &x, &y, &z) >= 1) {
    out->v[0] = x;
    out->v[1] = y;
    out->v[2] = z;
  }
}

/* One change of P_quota: another node's count replaces its previous one in the sums; one of
 * this node's own keys from before a restart that it no longer has is emptied at the next
 * publish. */
static void apply_quota(js_store_t *s, const m5_js_kv_change_t *ch) {
  struct js_quota *q = s->quota;
  const char *dot = strrchr(ch->key, '.');
  if (!dot || dot == ch->key) return;
  size_t sl = (size_t)(dot - ch->key);
  if (sl >= Q_KEY_MAX) return;
  char suffix[Q_KEY_MAX];
  memcpy(suffix, ch->key, sl);
  suffix[sl] = 0;
  q_vals_t nv;
  vals_parse(ch->val, ch->deleted ? 0 : ch->len, &nv);
  pthread_mutex_lock(&q->mu);
  if (!strcmp(dot + 1, s->node)) { /* (this node's own puts come back here too) */
    if (!ch->deleted && ch->len && q->stale && !q->ready)
      m5_hmap_put(q->stale, suffix, sl, (void *)1, NULL);
    pthread_mutex_unlock(&q->mu);
    return;
  }
  size_t kl = strlen(ch->key);
  q_vals_t *old = m5_hmap_get(q->others, ch->key, kl);
  q_vals_t *sum = m5_hmap_get(q->sum, suffix, sl);
  if (old && sum)
    for (int i = 0; i < 3; i++)
      sum->v[i] = sum->v[i] >= old->v[i] ? sum->v[i] - old->v[i] : 0;
  bool zero = !nv.v[0] && !nv.v[1] && !nv.v[2];
  if (zero) {
    free(m5_hmap_del(q->others, ch->key, kl));
  } else {
    if (!old && (old = calloc(1, sizeof *old)) && m5_hmap_put(q->others, ch->key, kl, old, NULL)) {
      free(old);
      old = NULL;
    }
    if (old) *old = nv;
    if (!sum && (sum = calloc(1, sizeof *sum))) {
      if (m5_hmap_put(q->sum, suffix, sl, sum, NULL)) {
        free(sum);
        sum = NULL;
      } else if (suffix[0] == QK_PAIR) {
        q->other_pairs++;
      }
    }
    if (sum)
      for (int i = 0; i < 3; i++)
        sum->v[i] += nv.v[i];
  }
  if (sum && !sum->v[0] && !sum->v[1] && !sum->v[2]) {
    free(m5_hmap_del(q->sum, suffix, sl));
    if (suffix[0] == QK_PAIR && q->other_pairs) q->other_pairs--;
  }
  pthread_mutex_unlock(&q->mu);
}

static void apply_gen(js_store_t *s, const m5_js_kv_change_t *ch) {
  if (ch->deleted || strncmp(ch->key, "g.", 2)) return;
  uint8_t ue[M5_JS_ID_MAX + 1];
  size_t ul = 0;
  if (m5_js_name_decode(ch->key + 2, strlen(ch->key + 2), ue, sizeof ue - 1, &ul, NULL, 0)) return;
  ue[ul] = 0;
  char b[24];
  size_t n = ch->len < sizeof b - 1 ? ch->len : sizeof b - 1;
  memcpy(b, ch->val, n);
  b[n] = 0;
  js_gen_local(s, (const char *)ue, strtoull(b, NULL, 10));
}

static void set_ready(struct js_quota *q, bool *flag) {
  pthread_mutex_lock(&q->mu);
  *flag = true;
  pthread_cond_broadcast(&q->cv);
  pthread_mutex_unlock(&q->mu);
}

static bool stopping(struct js_quota *q) {
  pthread_mutex_lock(&q->mu);
  bool st = q->stop;
  pthread_mutex_unlock(&q->mu);
  return st;
}

/* The quota thread: applies the other nodes' counts as they come, publishes this node's. */
static void *quota_main(void *arg) {
  js_store_t *s = arg;
  struct js_quota *q = s->quota;
  int64_t next = mono_ms() + Q_PUBLISH_MS;
  while (!stopping(q)) {
    int64_t wait = next - mono_ms();
    m5_js_kv_change_t ch;
    char err[256];
    int rc = m5_js_kv_watch_next(q->w, wait > 0 ? wait : 1, &ch, err, sizeof err);
    if (rc == M5_ECLOSED) break;
    if (rc == M5_OK && !ch.key) set_ready(q, &q->ready);
    if (rc == M5_OK && ch.key) apply_quota(s, &ch);
    if (rc == M5_EIO) {
      if (mono_ms() - q->warned_ms >= Q_WARN_MS) {
        q->warned_ms = mono_ms();
        M5_LOGW("store", "jetstream: quota watcher: %s", err);
      }
      struct timespec ts = {0, 100 * 1000000};
      nanosleep(&ts, NULL);
    }
    if (mono_ms() >= next) {
      publish(s);
      next = mono_ms() + Q_PUBLISH_MS;
    }
  }
  return NULL;
}

static void *gens_main(void *arg) {
  js_store_t *s = arg;
  struct js_quota *q = s->quota;
  while (!stopping(q)) {
    m5_js_kv_change_t ch;
    char err[256];
    int rc = m5_js_kv_watch_next(q->gw, 500, &ch, err, sizeof err);
    if (rc == M5_ECLOSED) break;
    if (rc == M5_OK && !ch.key) set_ready(q, &q->gready);
    if (rc == M5_OK && ch.key) apply_gen(s, &ch);
    if (rc == M5_EIO) {
      if (mono_ms() - q->gwarned_ms >= Q_WARN_MS) {
        q->gwarned_ms = mono_ms();
        M5_LOGW("store", "jetstream: generations watcher: %s", err);
      }
      struct timespec ts = {0, 100 * 1000000};
      nanosleep(&ts, NULL);
    }
  }
  return NULL;
}

static void free_val(void *v) {
  free(v);
}

void js_quota_close(js_store_t *s) {
  struct js_quota *q = s->quota;
  if (!q) return;
  pthread_mutex_lock(&q->mu);
  q->stop = true;
  pthread_mutex_unlock(&q->mu);
  m5_js_kv_watch_stop(q->w);
  m5_js_kv_watch_stop(q->gw);
  if (q->th_on) pthread_join(q->th, NULL);
  if (q->gth_on) pthread_join(q->gth, NULL);
  m5_js_kv_watch_free(q->w);
  m5_js_kv_watch_free(q->gw);
  m5_js_kv_close(q->kv);
  m5_js_kv_close(q->gens_kv);
  s->quota = NULL;
  if (q->own) m5_hmap_free(q->own, free_val);
  if (q->msgs) m5_hmap_free(q->msgs, NULL);
  if (q->others) m5_hmap_free(q->others, free_val);
  if (q->sum) m5_hmap_free(q->sum, free_val);
  if (q->gens) m5_hmap_free(q->gens, NULL);
  if (q->stale) m5_hmap_free(q->stale, NULL);
  pthread_cond_destroy(&q->cv);
  pthread_mutex_destroy(&q->mu);
  free(q);
}

int js_quota_open(js_store_t *s, char *err, size_t errlen) {
  struct js_quota *q = calloc(1, sizeof *q);
  if (!q) {
    snprintf(err, errlen, "out of memory");
    return M5_ENOMEM;
  }
  pthread_mutex_init(&q->mu, NULL);
  pthread_cond_init(&q->cv, NULL);
  s->quota = q;
  if (!s->o.max_per_recipient_per_originator) /* the default: half a queue (as SQLite) */
    s->o.max_per_recipient_per_originator =
        s->o.max_per_recipient / 2 ? s->o.max_per_recipient / 2 : 1;
  q->own = m5_hmap_new();
  q->msgs = m5_hmap_new();
  q->others = m5_hmap_new();
  q->sum = m5_hmap_new();
  q->gens = m5_hmap_new();
  q->stale = m5_hmap_new();
  if (!q->own || !q->msgs || !q->others || !q->sum || !q->gens || !q->stale) {
    snprintf(err, errlen, "out of memory");
    goto fail;
  }
  int replicas = s->o.js.replicas > 0 ? s->o.js.replicas : 1;
  char bq[JS_NAME_MAX + 16], bg[JS_NAME_MAX + 16];
  snprintf(bq, sizeof bq, "%s_quota", s->prefix);
  snprintf(bg, sizeof bg, "%s_gens", s->prefix);
  m5_js_kv_spec_t kq = {.bucket = bq, .replicas = replicas, .history = 1, .ttl_ms = Q_TTL_MS};
  m5_js_kv_spec_t kg = {.bucket = bg, .replicas = replicas, .history = 1, .ttl_ms = 0};
  if (m5_js_ensure_kv(s->c, &kq, &q->kv, err, errlen) ||
      m5_js_ensure_kv(s->c, &kg, &q->gens_kv, err, errlen) ||
      m5_js_kv_watch(q->kv, &q->w, err, errlen) || m5_js_kv_watch(q->gens_kv, &q->gw, err, errlen))
    goto fail;
  if (pthread_create(&q->th, NULL, quota_main, s)) {
    snprintf(err, errlen, "cannot start the quota thread");
    goto fail;
  }
  q->th_on = true;
  if (pthread_create(&q->gth, NULL, gens_main, s)) {
    snprintf(err, errlen, "cannot start the generations thread");
    goto fail;
  }
  q->gth_on = true;
  /* the other nodes' counts and every generation known before the first job */
  int64_t timeout = 4 * (s->o.js.timeout_ms > 0 ? s->o.js.timeout_ms : 5000);
  struct timespec dl;
  clock_gettime(CLOCK_REALTIME, &dl);
  dl.tv_sec += timeout / 1000;
  pthread_mutex_lock(&q->mu);
  int wrc = 0;
  while ((!q->ready || !q->gready) && wrc == 0)
    wrc = pthread_cond_timedwait(&q->cv, &q->mu, &dl);
  bool ok = q->ready && q->gready;
  pthread_mutex_unlock(&q->mu);
  if (!ok) {
    snprintf(err, errlen, "the quota and generation buckets did not answer");
    goto fail;
  }
  return M5_OK;
fail:
  js_quota_close(s);
  return M5_EIO;
}
