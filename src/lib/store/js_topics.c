/* Messaging Topic subscriptions of m5_store on NATS JetStream (store.h M5_STORE_TOPIC_* and
 * REBIND's topic part; TS 23.554 cl. 8.8.1-8.8.3; issue 13, docs/store.md "The JetStream
 * backend", docs/scale-out.md). The SQLite store keeps them in table topic_subs
 * (sqlite_topics.c); this file gives the same answers for a cluster of nodes.
 *
 * KV bucket P_topics (replicas store.js.replicas, history 1, no TTL: expiry is in the value):
 *   s.<enc(topic)>.<type>.<enc(subscriber)> -> "1 <gen> <expiry> <since_ms>": one key per
 *       (topic, subscriber), <type> "ue" or "as", enc = js_names (base64url); gen the UE's
 *       binding generation (0 for an AS), expiry Unix seconds, since_ms when the subscription
 *       was first made (TOPIC_SUBSCRIBERS lists oldest first; a renewal keeps it);
 *   g.<enc(ue)> -> "<gen>": the last generation a REBIND gave the UE Service ID (a TOPIC_SUB
 *       of an older one is M5_EPERM, as SQLite's binding_gens).
 *
 * Every node keeps a copy of the whole bucket in memory, written only by a watcher thread of
 * its own (all changes, its own and other nodes', in revision order), read by the store thread
 * under a mutex: TOPIC_SUBSCRIBERS and the bounds are answered from it without a round trip.
 * A job that wrote answers only once its own watcher has applied the write (read your writes),
 * as the registry on KV does. Writes are create-only or compare-and-set on the key's revision,
 * so two nodes writing one key are serialised by the bucket.
 *
 * What differs from SQLite: the bounds (max_subs per subscriber, max_subscribers per topic) are
 * checked against this node's copy, so two nodes subscribing at the same moment may each pass
 * the last free place (the bound is exceeded by the concurrent subscriptions, no more); a job
 * is not one transaction: a failure of the cluster half-way undoes what the job wrote as far
 * as it can. Expired subscriptions are never listed (compared with the store's clock) and are
 * deleted by whichever node sees them first (compare-and-set on their revision: a renewal or
 * another node's delete in between wins), at most SWEEP_MAX per SWEEP_EVERY_MS per node. */
#include "js_int.h"

#include "core/err.h"
#include "core/log.h"
#include "js/js_names.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define SWEEP_MAX 64
#define SWEEP_EVERY_MS 1000
#define WATCH_POLL_MS 200 /* the watcher's wait per call: how soon it sees the stop flag */
#define WRITE_TRIES 4     /* compare-and-set retries of one key against other nodes */
#define KEY_MAX (2 + 2 * M5_JS_TOKEN_MAX + 8)
#define VAL_MAX 96

typedef struct jt_group jt_group_t;

/* A subscription as the bucket holds it (one allocation: the strings follow). */
typedef struct jt_sub {
  uint64_t gen, rev;
  int64_t expiry, since_ms;
  jt_group_t *tg, *sg; /* its topic's and its subscriber's lists */
  struct jt_sub *tprev, *tnext, *sprev, *snext;
  const char *topic, *addr; /* in key[] after the key */
  char type[3];             /* "UE", "AS" */
  char key[];
} jt_sub_t;

/* What a key and a value say. */
typedef struct {
  char topic[M5_MSG_NAME_MAX + 1];
  m5_msg_addr_t who;
  uint64_t gen;
  int64_t expiry, since_ms;
} jt_parsed_t;

struct jt_group {
  jt_sub_t *head;
  size_t n;
  size_t klen;
  char key[]; /* the topic, or "<type>\n<addr>" */
};

struct js_topics {
  js_store_t *s;
  m5_js_kv_t *kv;
  m5_js_kv_watch_t *w;
  pthread_t thread;
  bool started;
  atomic_int stop;
  /* the copy: written by the watcher thread, read by the store thread, under mu */
  pthread_mutex_t mu;
  pthread_cond_t cv;
  uint64_t applied;             /* the last revision the watcher applied */
  bool ready;                   /* the initial values are in */
  m5_hmap_t *subs;              /* key -> jt_sub_t */
  m5_hmap_t *by_topic, *by_who; /* -> jt_group_t */
  int64_t swept_ms;             /* store thread */
};

/* ---------------------------------------------------------------- names and values */

static int type_tok(const char *type, const char **tok) {
  if (!strcmp(type, "UE"))
    *tok = "ue";
  else if (!strcmp(type, "AS"))
    *tok = "as";
  else
    return M5_EINVAL;
  return M5_OK;
}

static int sub_key(const char *topic, const m5_msg_addr_t *who, char out[KEY_MAX + 1]) {
  char et[M5_JS_TOKEN_SIZE], ew[M5_JS_TOKEN_SIZE];
  const char *tt;
  if (type_tok(who->type, &tt) || m5_js_name_encode(topic, strlen(topic), et, sizeof et, NULL) ||
      m5_js_name_encode(who->addr, strlen(who->addr), ew, sizeof ew, NULL))
    return M5_EINVAL;
  int n = snprintf(out, KEY_MAX + 1, "s.%s.%s.%s", et, tt, ew);
  return n > 0 && n <= KEY_MAX ? M5_OK : M5_ERANGE;
}

static int gen_key(const char *ue, char out[KEY_MAX + 1]) {
  char ew[M5_JS_TOKEN_SIZE];
  if (m5_js_name_encode(ue, strlen(ue), ew, sizeof ew, NULL)) return M5_EINVAL;
  snprintf(out, KEY_MAX + 1, "g.%s", ew);
  return M5_OK;
}

/* Decodes one token of a key into out (NUL-terminated). */
static bool tok_decode(const char *tok, size_t len, char *out, size_t size) {
  size_t n = 0;
  if (m5_js_name_decode(tok, len, (uint8_t *)out, size - 1, &n, NULL, 0)) return false;
  out[n] = 0;
  return strlen(out) == n && n > 0; /* no NUL inside, not empty */
}

/* "s.<topic>.<type>.<who>" -> sub's topic and who. */
static bool parse_sub_key(const char *key, jt_parsed_t *sub) {
  const char *p[4];
  size_t len[4];
  const char *c = key;
  for (int i = 0; i < 4; i++) {
    const char *dot = strchr(c, '.');
    if (i < 3 && !dot) return false;
    p[i] = c;
    len[i] = dot ? (size_t)(dot - c) : strlen(c);
    c = dot ? dot + 1 : c + len[i];
  }
  if (*c || len[0] != 1 || p[0][0] != 's' || len[2] != 2) return false;
  if (!strncmp(p[2], "ue", 2))
    snprintf(sub->who.type, sizeof sub->who.type, "UE");
  else if (!strncmp(p[2], "as", 2))
    snprintf(sub->who.type, sizeof sub->who.type, "AS");
  else
    return false;
  return tok_decode(p[1], len[1], sub->topic, sizeof sub->topic) &&
         tok_decode(p[3], len[3], sub->who.addr, sizeof sub->who.addr);
}

static int sub_val(uint64_t gen, int64_t expiry, int64_t since_ms, char out[VAL_MAX]) {
  return snprintf(out, VAL_MAX, "1 %llu %lld %lld", (unsigned long long)gen, (long long)expiry,
                  (long long)since_ms);
}

static bool parse_sub_val(const uint8_t *v, size_t len, jt_parsed_t *sub) {
  char buf[VAL_MAX];
  if (len == 0 || len >= sizeof buf) return false;
  memcpy(buf, v, len);
  buf[len] = 0;
  unsigned long long gen;
  long long expiry, since;
  char extra;
  if (sscanf(buf, "1 %llu %lld %lld %c", &gen, &expiry, &since, &extra) != 3) return false;
  sub->gen = gen;
  sub->expiry = expiry;
  sub->since_ms = since;
  return true;
}

static size_t who_key(const m5_msg_addr_t *a, char *out, size_t size) {
  int n = snprintf(out, size, "%s\n%s", a->type, a->addr);
  return n > 0 && (size_t)n < size ? (size_t)n : 0;
}

/* ---------------------------------------------------------------- the copy (under mu) */

static jt_group_t *group_of(m5_hmap_t *m, const char *key, size_t klen, bool create) {
  jt_group_t *g = m5_hmap_get(m, key, klen);
  if (g || !create) return g;
  if (!(g = calloc(1, sizeof *g + klen + 1))) return NULL;
  memcpy(g->key, key, klen);
  g->klen = klen;
  if (m5_hmap_put(m, key, klen, g, NULL)) {
    free(g);
    return NULL;
  }
  return g;
}

static void unlink_sub(js_topics_t *t, jt_sub_t *x) {
  if (x->tprev)
    x->tprev->tnext = x->tnext;
  else
    x->tg->head = x->tnext;
  if (x->tnext) x->tnext->tprev = x->tprev;
  if (--x->tg->n == 0) free(m5_hmap_del(t->by_topic, x->tg->key, x->tg->klen));
  if (x->sprev)
    x->sprev->snext = x->snext;
  else
    x->sg->head = x->snext;
  if (x->snext) x->snext->sprev = x->sprev;
  if (--x->sg->n == 0) free(m5_hmap_del(t->by_who, x->sg->key, x->sg->klen));
  m5_hmap_del(t->subs, x->key, strlen(x->key));
  free(x);
}

static void apply_sub(js_topics_t *t, const m5_js_kv_change_t *ch) {
  size_t kl = strlen(ch->key);
  jt_sub_t *x = m5_hmap_get(t->subs, ch->key, kl);
  if (ch->deleted) {
    if (x) unlink_sub(t, x);
    return;
  }
  jt_parsed_t in = {0};
  if (kl > KEY_MAX || !parse_sub_key(ch->key, &in) || !parse_sub_val(ch->val, ch->len, &in)) {
    M5_LOGW("store", "jetstream: topics: key %.80s (revision %llu) is not a subscription: ignored",
            ch->key, (unsigned long long)ch->rev);
    return;
  }
  if (x) { /* a renewal (or another node's write of it) */
    x->gen = in.gen;
    x->expiry = in.expiry;
    x->since_ms = in.since_ms;
    x->rev = ch->rev;
    return;
  }
  char wk[sizeof in.who.type + sizeof in.who.addr + 2];
  size_t wl = who_key(&in.who, wk, sizeof wk);
  jt_group_t *tg = group_of(t->by_topic, in.topic, strlen(in.topic), true);
  jt_group_t *sg = tg ? group_of(t->by_who, wk, wl, true) : NULL;
  size_t tl = strlen(in.topic), al = strlen(in.who.addr);
  if (!sg || !(x = malloc(sizeof *x + kl + tl + al + 3)) ||
      m5_hmap_put(t->subs, ch->key, kl, x, NULL)) {
    free(x);
    if (tg && !tg->n) free(m5_hmap_del(t->by_topic, tg->key, tg->klen));
    if (sg && !sg->n) free(m5_hmap_del(t->by_who, sg->key, sg->klen));
    M5_LOGE("store", "jetstream: topics: out of memory: subscription %.80s not applied", ch->key);
    return;
  }
  memcpy(x->key, ch->key, kl + 1);
  x->topic = memcpy(x->key + kl + 1, in.topic, tl + 1);
  x->addr = memcpy(x->key + kl + tl + 2, in.who.addr, al + 1);
  memcpy(x->type, in.who.type[0] == 'U' ? "UE" : "AS", sizeof x->type); /* parse_sub_key's */
  x->gen = in.gen;
  x->expiry = in.expiry;
  x->since_ms = in.since_ms;
  x->rev = ch->rev;
  x->tg = tg;
  x->sg = sg;
  x->tprev = x->sprev = NULL;
  x->tnext = tg->head;
  if (tg->head) tg->head->tprev = x;
  tg->head = x;
  tg->n++;
  x->snext = sg->head;
  if (sg->head) sg->head->sprev = x;
  sg->head = x;
  sg->n++;
}

static void *watch_main(void *arg) {
  js_topics_t *t = arg;
  char err[256];
  int failing = 0;
  while (!atomic_load(&t->stop)) {
    m5_js_kv_change_t ch;
    int rc = m5_js_kv_watch_next(t->w, WATCH_POLL_MS, &ch, err, sizeof err);
    if (rc == M5_ETIMEDOUT) continue;
    if (rc == M5_ECLOSED) break;
    if (rc != 0) {
      if (!failing++) M5_LOGW("store", "jetstream: topics watcher: %s; retrying", err);
      struct timespec ts = {0, WATCH_POLL_MS * 1000000L};
      nanosleep(&ts, NULL);
      continue;
    }
    failing = 0;
    pthread_mutex_lock(&t->mu);
    if (ch.key && !strncmp(ch.key, "s.", 2)) apply_sub(t, &ch); /* g.: read by the leader */
    if (ch.key && ch.rev > t->applied) t->applied = ch.rev;
    if (!ch.key) t->ready = true;
    pthread_cond_broadcast(&t->cv);
    pthread_mutex_unlock(&t->mu);
  }
  return NULL;
}

/* Until the watcher has applied revision rev and, when del_key is given, the key no longer
 * holds revision rev (its delete came through too): 0, or M5_ETIMEDOUT. */
static int wait_applied(js_topics_t *t, uint64_t rev, const char *del_key) {
  int64_t ms = t->s->o.js.timeout_ms;
  struct timespec dl;
  clock_gettime(CLOCK_REALTIME, &dl);
  dl.tv_sec += (time_t)(ms / 1000);
  dl.tv_nsec += (long)(ms % 1000) * 1000000L;
  if (dl.tv_nsec >= 1000000000L) {
    dl.tv_sec++;
    dl.tv_nsec -= 1000000000L;
  }
  int rc = 0;
  pthread_mutex_lock(&t->mu);
  for (;;) {
    jt_sub_t *x = del_key ? m5_hmap_get(t->subs, del_key, strlen(del_key)) : NULL;
    if (t->ready && t->applied >= rev && !(x && x->rev == rev)) break;
    if (pthread_cond_timedwait(&t->cv, &t->mu, &dl) != 0) {
      rc = M5_ETIMEDOUT;
      break;
    }
  }
  pthread_mutex_unlock(&t->mu);
  if (rc)
    M5_LOGE("store",
            "jetstream: topics: revision %llu written but not seen by this node's watcher "
            "within %lld ms",
            (unsigned long long)rev, (long long)ms);
  return rc;
}

/* ---------------------------------------------------------------- writes */

/* Deletes key whatever its revision: rev is the copy's (0: not in the copy), read again
 * through the leader when stale. *wait_rev: the revision deleted (0: the key was absent), for
 * wait_applied. */
static int del_key(js_topics_t *t, const char *key, uint64_t rev, uint64_t *wait_rev) {
  char err[256];
  for (int i = 0; i < WRITE_TRIES; i++) {
    if (!rev) {
      uint8_t *v = NULL;
      size_t vl = 0;
      int rc = m5_js_kv_get(t->kv, key, &v, &vl, &rev, err, sizeof err);
      free(v);
      if (rc == M5_ENOENT) return M5_OK;
      if (rc) {
        M5_LOGW("store", "jetstream: topics: %s", err);
        return js_fail_status(rc);
      }
    }
    int rc = m5_js_kv_delete(t->kv, key, rev, err, sizeof err);
    if (rc == M5_OK) {
      *wait_rev = rev;
      return M5_OK;
    }
    if (rc != M5_EAGAIN) {
      M5_LOGW("store", "jetstream: topics: %s", err);
      return js_fail_status(rc);
    }
    rev = 0; /* written since: read again */
  }
  return M5_EAGAIN;
}

/* Writes val to key: compare-and-set on rev (the copy's; 0: create-only), read again through
 * the leader when another node wrote the key since. *wrote: the new revision. */
static int put_key(js_topics_t *t, const char *key, const char *val, uint64_t rev,
                   uint64_t *wrote) {
  char err[256];
  size_t vl = strlen(val);
  for (int i = 0; i < WRITE_TRIES; i++) {
    int rc = rev ? m5_js_kv_update(t->kv, key, val, vl, rev, wrote, err, sizeof err)
                 : m5_js_kv_create(t->kv, key, val, vl, wrote, err, sizeof err);
    if (rc == M5_OK) return M5_OK;
    if (rc != M5_EAGAIN && rc != M5_EEXIST) {
      M5_LOGW("store", "jetstream: topics: %s", err);
      return js_fail_status(rc);
    }
    uint8_t *v = NULL;
    size_t l = 0;
    rev = 0;
    rc = m5_js_kv_get(t->kv, key, &v, &l, &rev, err, sizeof err);
    free(v);
    if (rc == M5_ENOENT)
      rev = 0;
    else if (rc) {
      M5_LOGW("store", "jetstream: topics: %s", err);
      return js_fail_status(rc);
    }
  }
  return M5_EAGAIN;
}

/* The last generation a REBIND gave ue (0: none), read through the leader (a REBIND a moment
 * ago on another node counts), and its key's revision. */
static int read_gen(js_topics_t *t, const char *ue, uint64_t *gen, uint64_t *rev) {
  char key[KEY_MAX + 1], err[256];
  *gen = *rev = 0;
  if (gen_key(ue, key)) return M5_EINVAL;
  uint8_t *v = NULL;
  size_t l = 0;
  int rc = m5_js_kv_get(t->kv, key, &v, &l, rev, err, sizeof err);
  if (rc == M5_OK) *gen = strtoull((const char *)v, NULL, 10);
  free(v);
  if (rc == M5_ENOENT) return M5_OK;
  if (rc) M5_LOGW("store", "jetstream: topics: %s", err);
  return rc ? js_fail_status(rc) : M5_OK;
}

/* ---------------------------------------------------------------- expiry */

typedef struct {
  char key[KEY_MAX + 1];
  uint64_t rev;
} jt_ref_t;

typedef struct {
  jt_ref_t *v;
  size_t n, cap;
  int64_t now_s;
} expired_t;

static void find_expired(const void *key, size_t klen, void *val, void *arg) {
  (void)key;
  (void)klen;
  expired_t *e = arg;
  const jt_sub_t *x = val;
  if (e->n < e->cap && x->expiry <= e->now_s) {
    snprintf(e->v[e->n].key, sizeof e->v[e->n].key, "%s", x->key);
    e->v[e->n++].rev = x->rev;
  }
}

/* Up to SWEEP_MAX expired subscriptions deleted, at most once per SWEEP_EVERY_MS (store
 * thread). Every node does it; whoever deletes first wins, the others' deletes conflict and
 * are ignored, as is a renewal that came in between (it changed the revision). */
static void sweep(js_store_t *s) {
  js_topics_t *t = s->topics;
  int64_t now_ms = js_now_ms(s);
  if (!t || (now_ms - t->swept_ms < SWEEP_EVERY_MS && now_ms >= t->swept_ms)) return;
  t->swept_ms = now_ms;
  expired_t e = {malloc(SWEEP_MAX * sizeof *e.v), 0, SWEEP_MAX, now_ms / 1000};
  if (!e.v) return;
  pthread_mutex_lock(&t->mu);
  m5_hmap_foreach(t->subs, find_expired, &e); /* memory only: once a second at most */
  pthread_mutex_unlock(&t->mu);
  char err[256];
  for (size_t i = 0; i < e.n; i++) {
    int rc = m5_js_kv_delete(t->kv, e.v[i].key, e.v[i].rev, err, sizeof err);
    if (rc != M5_OK && rc != M5_EAGAIN && rc != M5_ENOENT) {
      M5_LOGW("store", "jetstream: topics: dropping expired subscriptions: %s", err);
      break; /* the cluster is unwell: next time */
    }
  }
  if (e.n == SWEEP_MAX) t->swept_ms = now_ms - SWEEP_EVERY_MS; /* more: again next job */
  free(e.v);
}

void js_topics_tick(js_store_t *s) {
  sweep(s);
}

/* ---------------------------------------------------------------- the jobs */

static bool sub_valid(const m5_store_job_t *job) {
  const m5_msg_addr_t *a = &job->rcpt;
  if (strcmp(a->type, "UE") != 0 && strcmp(a->type, "AS") != 0) return false;
  if (!a->addr[0] || !job->topics || job->n_topics == 0 || job->n_topics > M5_STORE_TOPICS_MAX)
    return false;
  for (size_t i = 0; i < job->n_topics; i++)
    if (!job->topics[i][0]) return false;
  return true;
}

/* Unexpired subscriptions of a topic's (by_topic) or a subscriber's group. */
static size_t unexpired(const jt_group_t *g, bool by_topic, int64_t now_s) {
  size_t n = 0;
  for (const jt_sub_t *x = g ? g->head : NULL; x; x = by_topic ? x->tnext : x->snext)
    n += x->expiry > now_s;
  return n;
}

typedef struct {
  char key[KEY_MAX + 1];
  uint64_t rev, wrote;
  bool had, is_new;
  char old[VAL_MAX];
} jt_write_t;

/* TOPIC_SUB: all or nothing against this node's copy, then one write per topic. */
static void do_sub(js_store_t *s, m5_store_job_t *job) {
  js_topics_t *t = s->topics;
  const m5_msg_addr_t *a = &job->rcpt;
  if (!sub_valid(job) || job->topic_expiry <= 0) {
    job->status = M5_EINVAL;
    return;
  }
  int64_t now_ms = js_now_ms(s), now_s = now_ms / 1000;
  job->topic_index = 0;
  /* A UE's subscription belongs to the binding it was made under: one older than the last
   * REBIND was re-bound meanwhile (that REBIND dropped what it had). */
  uint64_t gen = 0;
  if (!strcmp(a->type, "UE")) {
    uint64_t known, rev;
    if ((job->status = read_gen(t, a->addr, &known, &rev)) != 0) return;
    if (job->gen && job->gen < known) {
      job->status = M5_EPERM;
      return;
    }
    gen = job->gen > known ? job->gen : known;
  }
  jt_write_t *w = calloc(job->n_topics, sizeof *w);
  if (!w) {
    job->status = M5_ENOMEM;
    return;
  }
  for (size_t i = 0; i < job->n_topics; i++)
    if (sub_key(job->topics[i], a, w[i].key)) {
      free(w);
      job->status = M5_EINVAL;
      return;
    }
  char wk[sizeof a->type + sizeof a->addr + 2];
  size_t wl = who_key(a, wk, sizeof wk);
  int64_t since[M5_STORE_TOPICS_MAX];
  pthread_mutex_lock(&t->mu);
  size_t have = unexpired(m5_hmap_get(t->by_who, wk, wl), false, now_s), n_new = 0;
  for (size_t i = 0; i < job->n_topics; i++) {
    const jt_sub_t *x = m5_hmap_get(t->subs, w[i].key, strlen(w[i].key));
    w[i].had = x != NULL;
    w[i].rev = x ? x->rev : 0;
    w[i].is_new = !x || x->expiry <= now_s; /* an expired one counts as a new one */
    since[i] = x && !w[i].is_new ? x->since_ms : now_ms;
    if (x) sub_val(x->gen, x->expiry, x->since_ms, w[i].old);
    n_new += w[i].is_new;
  }
  job->outcome = M5_STORE_ACCEPTED;
  if (job->max_subs && have + n_new > job->max_subs) job->outcome = M5_STORE_SUBS_FULL;
  for (size_t i = 0; job->max_subscribers && !job->outcome && i < job->n_topics; i++) {
    if (!w[i].is_new) continue;
    const char *tp = job->topics[i];
    if (unexpired(m5_hmap_get(t->by_topic, tp, strlen(tp)), true, now_s) >= job->max_subscribers) {
      job->outcome = M5_STORE_TOPIC_FULL;
      job->topic_index = i;
    }
  }
  pthread_mutex_unlock(&t->mu);
#ifdef M5_TEST_HOOKS
  if (!job->outcome && m5_store_js_test_hook)
    m5_store_js_test_hook("topic-sub-checked", &s->base, job);
#endif
  uint64_t last = 0;
  size_t done = 0;
  for (; !job->outcome && done < job->n_topics; done++) {
    char val[VAL_MAX];
    sub_val(gen, job->topic_expiry, since[done], val);
    if ((job->status = put_key(t, w[done].key, val, w[done].rev, &w[done].wrote)) != 0) break;
    if (w[done].wrote > last) last = w[done].wrote;
  }
  /* A REBIND on another node may have written a newer generation after the check above:
   * either its drop saw these writes (they came first in the bucket: gone), or this second
   * read sees its generation (they came after) and the job undoes them. */
  uint64_t known2 = 0, rev2;
  if (!job->status && !job->outcome && !strcmp(a->type, "UE") &&
      !(job->status = read_gen(t, a->addr, &known2, &rev2)) && gen < known2)
    job->status = M5_EPERM;
  if (job->status) {
    /* undo what this job wrote, as far as the cluster lets us (by revision: a write of
     * someone else since stays), and answer once this node's copy has the undo */
    char err[256];
    for (size_t i = 0; i < done; i++) {
      int rc = w[i].had && job->status != M5_EPERM /* an older generation's: it goes */
                   ? m5_js_kv_update(t->kv, w[i].key, w[i].old, strlen(w[i].old), w[i].wrote, NULL,
                                     err, sizeof err)
                   : m5_js_kv_delete(t->kv, w[i].key, w[i].wrote, err, sizeof err);
      if (rc == M5_OK || rc == M5_EAGAIN)
        wait_applied(t, w[i].wrote, w[i].key);
      else
        M5_LOGW("store", "jetstream: topics: undoing a failed TOPIC_SUB: %s", err);
    }
  } else if (!job->outcome) {
    job->status = last ? wait_applied(t, last, NULL) : 0;
    job->gen = gen;
  }
  free(w);
}

typedef struct {
  jt_ref_t *v;
  size_t n;
} refs_t;

/* The subscriptions of the subscriber a (all, or those of a UE's generation below below). */
static int refs_of(js_topics_t *t, const m5_msg_addr_t *a, uint64_t below, refs_t *r) {
  char wk[sizeof a->type + sizeof a->addr + 2];
  size_t wl = who_key(a, wk, sizeof wk);
  r->v = NULL;
  r->n = 0;
  pthread_mutex_lock(&t->mu);
  const jt_group_t *g = m5_hmap_get(t->by_who, wk, wl);
  if (g && !(r->v = malloc(g->n * sizeof *r->v))) {
    pthread_mutex_unlock(&t->mu);
    return M5_ENOMEM;
  }
  for (const jt_sub_t *x = g ? g->head : NULL; x; x = x->snext)
    if (!below || x->gen < below) {
      snprintf(r->v[r->n].key, sizeof r->v[r->n].key, "%s", x->key);
      r->v[r->n++].rev = x->rev;
    }
  pthread_mutex_unlock(&t->mu);
  return M5_OK;
}

/* Deletes the keys of r (their revision 0: read through the leader) and waits until this
 * node's copy has them gone. */
static int del_refs(js_topics_t *t, refs_t *r) {
  int rc = 0;
  for (size_t i = 0; i < r->n && !rc; i++) {
    uint64_t deleted = 0;
    rc = del_key(t, r->v[i].key, r->v[i].rev, &deleted);
    r->v[i].rev = deleted;
  }
  for (size_t i = 0; i < r->n && !rc; i++)
    if (r->v[i].rev) rc = wait_applied(t, r->v[i].rev, r->v[i].key);
  return rc;
}

/* TOPIC_UNSUB: the given topics (one not subscribed is no error), or every subscription of
 * rcpt. */
static void do_unsub(js_store_t *s, m5_store_job_t *job) {
  js_topics_t *t = s->topics;
  const m5_msg_addr_t *a = &job->rcpt;
  refs_t r = {0};
  if (job->n_topics == 0 && a->addr[0] && (!strcmp(a->type, "UE") || !strcmp(a->type, "AS"))) {
    job->status = refs_of(t, a, 0, &r);
  } else if (!sub_valid(job) || !(r.v = calloc(job->n_topics, sizeof *r.v))) {
    job->status = sub_valid(job) ? M5_ENOMEM : M5_EINVAL;
  } else {
    pthread_mutex_lock(&t->mu);
    for (size_t i = 0; i < job->n_topics && !job->status; i++) {
      if (sub_key(job->topics[i], a, r.v[i].key)) {
        job->status = M5_EINVAL;
        break;
      }
      const jt_sub_t *x = m5_hmap_get(t->subs, r.v[i].key, strlen(r.v[i].key));
      r.v[i].rev = x ? x->rev : 0; /* 0: perhaps made on another node a moment ago */
      r.n++;
    }
    pthread_mutex_unlock(&t->mu);
  }
  if (!job->status) job->status = del_refs(t, &r);
  if (!job->status) job->outcome = M5_STORE_ACCEPTED;
  free(r.v);
}

static int by_age(const void *pa, const void *pb) {
  const jt_sub_t *a = *(const jt_sub_t *const *)pa, *b = *(const jt_sub_t *const *)pb;
  if (a->since_ms != b->since_ms) return a->since_ms < b->since_ms ? -1 : 1;
  int c = strcmp(a->addr, b->addr);
  return c ? c : strcmp(a->type, b->type);
}

/* TOPIC_SUBSCRIBERS: from this node's copy, unexpired, oldest first (as SQLite: since_ms, then
 * the subscriber's address). */
static void do_list(js_store_t *s, m5_store_job_t *job) {
  js_topics_t *t = s->topics;
  if (!job->topics || job->n_topics < 1 || !job->topics[0][0]) {
    job->status = M5_EINVAL;
    return;
  }
  size_t limit = job->limit && job->limit < M5_STORE_RCPT_MAX ? job->limit : M5_STORE_RCPT_MAX;
  int64_t now_s = js_now_ms(s) / 1000;
  const char *tp = job->topics[0];
  pthread_mutex_lock(&t->mu);
  const jt_group_t *g = m5_hmap_get(t->by_topic, tp, strlen(tp));
  const jt_sub_t **v = g ? malloc(g->n * sizeof *v) : NULL;
  size_t n = 0;
  for (const jt_sub_t *x = v ? g->head : NULL; x; x = x->tnext)
    if (x->expiry > now_s) v[n++] = x;
  if (n > 1) qsort(v, n, sizeof *v, by_age);
  if (n > limit) n = limit;
  job->subs = n ? calloc(n, sizeof *job->subs) : NULL;
  for (size_t i = 0; job->subs && i < n; i++) {
    snprintf(job->subs[i].addr.type, sizeof job->subs[i].addr.type, "%s", v[i]->type);
    snprintf(job->subs[i].addr.addr, sizeof job->subs[i].addr.addr, "%s", v[i]->addr);
    job->subs[i].gen = v[i]->gen;
    job->subs[i].expiry = v[i]->expiry;
  }
  pthread_mutex_unlock(&t->mu);
  if ((g && !v) || (n && !job->subs)) {
    job->status = M5_ENOMEM;
    n = 0;
  }
  job->n_subs = n;
  free(v);
}

void js_topics_job(js_store_t *s, m5_store_job_t *job) {
  if (!s->topics) {
    job->status = M5_EIO;
    return;
  }
  sweep(s);
  switch (job->op) {
  case M5_STORE_TOPIC_SUB:
    return do_sub(s, job);
  case M5_STORE_TOPIC_UNSUB:
    return do_unsub(s, job);
  case M5_STORE_TOPIC_SUBSCRIBERS:
    return do_list(s, job);
  default:
    job->status = M5_EINVAL;
  }
}

/* REBIND's topic part: the generation remembered (a TOPIC_SUB of an older one is then
 * M5_EPERM on every node), and the UE's subscriptions made under an older one dropped. */
void js_topics_rebind(js_store_t *s, m5_store_job_t *job) {
  js_topics_t *t = s->topics;
  if (!t || job->status) return;
  char key[KEY_MAX + 1], val[32];
  if (gen_key(job->rcpt.addr, key)) {
    job->status = M5_EINVAL;
    return;
  }
  snprintf(val, sizeof val, "%llu", (unsigned long long)job->gen);
  uint64_t known, rev, wrote = 0;
  int rc = M5_EAGAIN;
  for (int i = 0; i < WRITE_TRIES && rc == M5_EAGAIN; i++) {
    if ((rc = read_gen(t, job->rcpt.addr, &known, &rev)) != 0) break;
    if (known >= job->gen) break; /* this generation or a newer one is known */
    char err[256];
    rc = rev ? m5_js_kv_update(t->kv, key, val, strlen(val), rev, &wrote, err, sizeof err)
             : m5_js_kv_create(t->kv, key, val, strlen(val), &wrote, err, sizeof err);
    if (rc == M5_EEXIST) rc = M5_EAGAIN;
    if (rc && rc != M5_EAGAIN) {
      M5_LOGW("store", "jetstream: topics: %s", err);
      rc = js_fail_status(rc);
    }
  }
  if (!rc && wrote) rc = wait_applied(t, wrote, NULL);
  refs_t r = {0};
  if (!rc) rc = refs_of(t, &job->rcpt, job->gen, &r);
  if (!rc) rc = del_refs(t, &r);
  free(r.v);
  job->status = rc;
}

/* ---------------------------------------------------------------- open, close */

int js_topics_open(js_store_t *s, char *err, size_t errlen) {
  js_topics_t *t = calloc(1, sizeof *t);
  if (!t) {
    snprintf(err, errlen, "out of memory");
    return M5_ENOMEM;
  }
  t->s = s;
  pthread_mutex_init(&t->mu, NULL);
  pthread_cond_init(&t->cv, NULL);
  s->topics = t; /* from here on js_topics_close undoes it all */
  t->subs = m5_hmap_new();
  t->by_topic = m5_hmap_new();
  t->by_who = m5_hmap_new();
  if (!t->subs || !t->by_topic || !t->by_who) {
    snprintf(err, errlen, "out of memory");
    return M5_ENOMEM;
  }
  char bucket[JS_NAME_MAX + 16];
  snprintf(bucket, sizeof bucket, "%s_topics", s->prefix);
  m5_js_kv_spec_t kv = {.bucket = bucket,
                        .replicas = s->o.js.replicas > 0 ? s->o.js.replicas : 1,
                        .history = 1,
                        .ttl_ms = 0};
  int rc = m5_js_ensure_kv(s->c, &kv, &t->kv, err, errlen);
  if (!rc) rc = m5_js_kv_watch(t->kv, &t->w, err, errlen);
  if (rc) return rc;
  if (pthread_create(&t->thread, NULL, watch_main, t) != 0) {
    snprintf(err, errlen, "cannot start the watcher of %s", bucket);
    return M5_ENOMEM;
  }
  t->started = true;
  if (wait_applied(t, 0, NULL)) { /* the bucket's contents, before the first job */
    snprintf(err, errlen, "the contents of %s did not arrive within %lld ms", bucket,
             (long long)s->o.js.timeout_ms);
    return M5_ETIMEDOUT;
  }
  return M5_OK;
}

static void free_val(void *v) {
  free(v);
}

void js_topics_close(js_store_t *s) {
  js_topics_t *t = s->topics;
  if (!t) return;
  atomic_store(&t->stop, 1);
  if (t->started) {
    m5_js_kv_watch_stop(t->w);
    pthread_join(t->thread, NULL);
  }
  m5_js_kv_watch_free(t->w);
  m5_js_kv_close(t->kv);
  if (t->subs) m5_hmap_free(t->subs, free_val);
  if (t->by_topic) m5_hmap_free(t->by_topic, free_val);
  if (t->by_who) m5_hmap_free(t->by_who, free_val);
  pthread_cond_destroy(&t->cv);
  pthread_mutex_destroy(&t->mu);
  free(t);
  s->topics = NULL;
}
