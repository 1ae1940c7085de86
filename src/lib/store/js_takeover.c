/* Node liveness and the takeover of a dead node's deliveries, for m5_store on NATS JetStream
 * (issue 13: "kill -9 of an m5s node under a steady stream ... every acknowledged message
 * reaches its application"; docs/store.md "The JetStream backend", docs/scale-out.md).
 *
 * Liveness: KV bucket P_nodes (TTL 10 s, history 1). A liveness thread puts P_nodes/<node>
 * (value: the node's start time and a counter) every 2 s and watches the bucket: every node
 * whose key it ever sees goes into a table with the (monotonic) time of its last write seen.
 *
 * Takeover (store thread, js_takeover_tick after a job, at most every 2 s, every 0.5 s while
 * there is more to move): a node not seen writing for 10 s whose key is gone (a leader read:
 * the bucket's TTL removed it) or stale (still the same revision 5 s later) is dead, if
 * deliveries sit on its subjects (P.q.<dead>.> or P.r.<dead>.>). A live node then creates the
 * lease P_nodes/lease.<dead> (create-only: one taker; value "<taker> <ms>"; renewed by
 * compare-and-set at each tick, so the TTL ends a dead taker's lease) and moves the dead node's
 * deliveries (UE, AS, gateway recipients and reports alike) to its own subjects with the move
 * of DUE (js_move_msg: Msg-Id mv/<this node>/<old id>, old deleted after the copy, "not found"
 * deletes the copy), at most JS_TAKEOVER_BATCH and about JS_TICK_WORK_MS per tick (the jobs
 * wait meanwhile; the next tick is timed from the end of this one), in stream order. Moved deliveries are
 * due at once in this node's index: an AS delivery is then POSTed by this node, a UE's waits
 * for its session here (or moves on with the UE's DUE on another node). The lease is released
 * when nothing is left, or when the node writes its key again (a node restarted under the
 * dead node's name reloads what is left on its subjects: the deletes make the move safe to
 * interrupt at any point; a delivery read by both at once is pushed twice at worst).
 *
 * What keeps a live node from being taken for dead: a node never judges itself; it judges
 * nobody while its NATS connection is down, nor before it has been connected, watching and
 * writing its own heartbeat for a whole 10 s since (so stale data from before an outage, or a
 * P_nodes without a leader for a while, which silences every node, decides nothing); the verdict
 * is a leader read of the dead node's key, never the watcher's view alone. A node wrongly
 * taken over (its process alive but cut off for 10 s) finds its deliveries gone on its next
 * read or delete (M5_ENOENT), as after any move: at-least-once, never loss.
 *
 * Not seen: a node that died more than 10 s before every live node started (its key expired
 * before anyone watched): restart a node under its name (docs/scale-out.md). */
#include "js_int.h"

#include "core/err.h"
#include "core/log.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define JS_HEARTBEAT_MS 2000
#define JS_DEAD_MS 10000       /* the bucket's TTL: a key not written for this long is gone */
#define JS_STALE_EXTRA_MS 5000 /* a key still there this long after: the server's expiry lags */
#define JS_TAKEOVER_BATCH 256  /* deliveries moved per tick */
#define JS_TICK_WORK_MS 200    /* and store-thread time per tick, at most (about) */
#define JS_PEERS_MAX 256

typedef struct {
  char name[JS_NAME_MAX + 1];
  /* under mu (the liveness thread writes them; the tick reads them and updates after a read) */
  int64_t seen_ms; /* monotonic ms of the last write seen */
  uint64_t rev;    /* its revision */
  /* store thread only */
  bool leased;
  uint64_t lease_rev;
  uint64_t cursor[2]; /* next sequence to look at, per family */
  uint64_t moved;     /* since the lease was taken */
} js_peer_t;

struct js_takeover {
  js_store_t *s;
  m5_js_kv_t *kv_live; /* the liveness thread's handle */
  m5_js_kv_t *kv;      /* the store thread's (leases, reads) */
  char bucket[JS_NAME_MAX + 8];
  int64_t started_ms; /* wall clock, in the heartbeat's value */
  pthread_t th;
  bool th_started;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  bool stop;
  m5_js_kv_watch_t *w;    /* under mu (stopped from close) */
  int64_t watch_ok_since; /* under mu: the watcher's initial values done at; 0 = not watching */
  /* under mu: this node's own heartbeats have all been written since (0: the last one failed).
   * Its own failing means P_nodes may have no leader: everybody's heartbeats fail then, and
   * when the leader is back the TTL has removed every key, so a silence says nothing until
   * this node's own heartbeats have gone through for a whole TTL again. */
  int64_t hb_ok_since;
  js_peer_t peers[JS_PEERS_MAX];
  size_t n_peers; /* under mu; entries below it never move */
  bool peers_full_logged;
  /* store thread */
  int64_t conn_since; /* connected without a break since (0: not connected) */
  int64_t next_tick;
};

static int64_t mono_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int64_t wall_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---------------------------------------------------------------- liveness thread */

/* A write of key seen (by the watcher, or by a leader read of the tick): under mu. */
static void seen_locked(struct js_takeover *t, const char *key, uint64_t rev, int64_t now) {
  for (size_t i = 0; i < t->n_peers; i++)
    if (!strcmp(t->peers[i].name, key)) {
      if (rev != t->peers[i].rev) {
        t->peers[i].rev = rev;
        t->peers[i].seen_ms = now;
      }
      return;
    }
  if (t->n_peers == JS_PEERS_MAX) {
    if (!t->peers_full_logged)
      M5_LOGW("store", "jetstream: more than %d nodes in %s: node %s is not watched",
              JS_PEERS_MAX, t->bucket, key);
    t->peers_full_logged = true;
    return;
  }
  js_peer_t *p = &t->peers[t->n_peers];
  memset(p, 0, sizeof *p);
  snprintf(p->name, sizeof p->name, "%s", key);
  p->rev = rev;
  p->seen_ms = now;
  t->n_peers++;
}

/* A key naming a node (not a lease, not this node). */
static bool node_key(const struct js_takeover *t, const char *key) {
  size_t n = strlen(key);
  if (!n || n > JS_NAME_MAX || strchr(key, '.')) return false;
  return strcmp(key, t->s->node) != 0;
}

static void heartbeat(struct js_takeover *t, uint64_t counter, bool *warned) {
  char val[64], err[256];
  int n = snprintf(val, sizeof val, "%" PRId64 " %" PRIu64, t->started_ms, counter);
  int rc = m5_js_kv_put(t->kv_live, t->s->node, val, (size_t)n, NULL, err, sizeof err);
  pthread_mutex_lock(&t->mu);
  if (rc)
    t->hb_ok_since = 0;
  else if (!t->hb_ok_since)
    t->hb_ok_since = mono_ms();
  pthread_mutex_unlock(&t->mu);
  if (rc && !*warned) /* once per outage: NATS down is logged by the client already */
    M5_LOGW("store", "jetstream: node liveness %s/%s not written: %s", t->bucket, t->s->node, err);
  *warned = rc != 0;
}

/* Waits up to ms or until stopped; true when stopped. */
static bool pause_ms(struct js_takeover *t, int64_t ms) {
  struct timespec dl;
  clock_gettime(CLOCK_REALTIME, &dl);
  dl.tv_sec += ms / 1000;
  dl.tv_nsec += (ms % 1000) * 1000000;
  if (dl.tv_nsec >= 1000000000) {
    dl.tv_sec++;
    dl.tv_nsec -= 1000000000;
  }
  pthread_mutex_lock(&t->mu);
  while (!t->stop && pthread_cond_timedwait(&t->cv, &t->mu, &dl) == 0) {
  }
  bool stop = t->stop;
  pthread_mutex_unlock(&t->mu);
  return stop;
}

static void *liveness_main(void *arg) {
  struct js_takeover *t = arg;
  uint64_t counter = 1; /* the first heartbeat was written at open */
  int64_t next_hb = mono_ms() + JS_HEARTBEAT_MS;
  bool warned = false;
  m5_js_kv_watch_t *w = NULL;
  char err[256];
  for (;;) {
    pthread_mutex_lock(&t->mu);
    bool stop = t->stop;
    pthread_mutex_unlock(&t->mu);
    if (stop) break;
    int64_t now = mono_ms();
    if (now >= next_hb) {
      heartbeat(t, ++counter, &warned);
      next_hb = mono_ms() + JS_HEARTBEAT_MS;
      continue;
    }
    if (!w) {
      if (m5_js_kv_watch(t->kv_live, &w, err, sizeof err)) {
        w = NULL;
        if (pause_ms(t, next_hb - now)) break;
        continue;
      }
      pthread_mutex_lock(&t->mu);
      t->w = w;
      stop = t->stop;
      pthread_mutex_unlock(&t->mu);
      if (stop) break;
    }
    m5_js_kv_change_t ch;
    int64_t wait = next_hb - now;
    int rc = m5_js_kv_watch_next(w, wait > 0 ? wait : 1, &ch, err, sizeof err);
    if (rc == M5_ETIMEDOUT) continue;
    if (rc == M5_OK) {
      pthread_mutex_lock(&t->mu);
      if (!ch.key)
        t->watch_ok_since = mono_ms(); /* the initial values are in */
      else if (!ch.deleted && node_key(t, ch.key))
        seen_locked(t, ch.key, ch.rev, mono_ms());
      pthread_mutex_unlock(&t->mu);
      continue;
    }
    /* stopped, or the watcher failed: start a new one (its initial values again) */
    pthread_mutex_lock(&t->mu);
    t->w = NULL;
    t->watch_ok_since = 0;
    pthread_mutex_unlock(&t->mu);
    m5_js_kv_watch_free(w);
    w = NULL;
    if (rc != M5_ECLOSED) {
      M5_LOGW("store", "jetstream: watching %s: %s", t->bucket, err);
      if (pause_ms(t, 500)) break;
    }
  }
  pthread_mutex_lock(&t->mu);
  t->w = NULL;
  pthread_mutex_unlock(&t->mu);
  m5_js_kv_watch_free(w);
  return NULL;
}

/* ---------------------------------------------------------------- takeover (store thread) */

static void lease_key(const js_peer_t *p, char *out, size_t size) {
  snprintf(out, size, "lease.%s", p->name);
}

static void release(struct js_takeover *t, js_peer_t *p, const char *why) {
  char key[JS_NAME_MAX + 8], err[256];
  lease_key(p, key, sizeof key);
  /* a failed delete leaves it to the TTL */
  m5_js_kv_delete(t->kv, key, p->lease_rev, err, sizeof err);
  p->leased = false;
  M5_LOGI("store", "jetstream: took over %" PRIu64 " deliveries of node %s (%s)", p->moved,
          p->name, why);
}

/* Is p dead now, by a leader read of its key? Gone: yes; written since: no (and noted); the
 * same revision JS_STALE_EXTRA_MS after it should have expired: yes. A failed read: no. */
static bool confirm_dead(struct js_takeover *t, js_peer_t *p, int64_t now, int64_t seen) {
  uint8_t *val = NULL;
  size_t len = 0;
  uint64_t rev = 0;
  char err[256];
  int rc = m5_js_kv_get(t->kv, p->name, &val, &len, &rev, err, sizeof err);
  free(val);
  if (rc == M5_ENOENT) return true;
  if (rc) return false;
  pthread_mutex_lock(&t->mu);
  bool same = rev == p->rev;
  if (!same) seen_locked(t, p->name, rev, now);
  pthread_mutex_unlock(&t->mu);
  return same && now - seen > JS_DEAD_MS + JS_STALE_EXTRA_MS;
}

static void filter_of(const struct js_takeover *t, int fam, const js_peer_t *p, char *out,
                      size_t size) {
  snprintf(out, size, "%s.%c.%s.>", t->s->prefix, fam == JS_FAM_R ? 'r' : 'q', p->name);
}

/* Deliveries on p's subjects? A failed read counts as none (judged again next tick). */
static bool has_deliveries(struct js_takeover *t, const js_peer_t *p) {
  for (int f = 0; f < 2; f++) {
    char filter[JS_SUBJ_MAX], err[256];
    m5_js_msg_t m;
    filter_of(t, f, p, filter, sizeof filter);
    if (m5_js_next_by_subject(t->s->c, t->s->stream[f], filter, 1, &m, err, sizeof err) == M5_OK) {
      m5_js_msg_free(&m);
      return true;
    }
  }
  return false;
}

/* Takes p's lease (create-only; one this node holds from before is adopted) or renews it. */
static bool hold_lease(struct js_takeover *t, js_peer_t *p) {
  char key[JS_NAME_MAX + 8], val[JS_NAME_MAX + 32], err[256];
  lease_key(p, key, sizeof key);
  int n = snprintf(val, sizeof val, "%s %" PRId64, t->s->node, wall_ms());
  if (p->leased) {
    int rc = m5_js_kv_update(t->kv, key, val, (size_t)n, p->lease_rev, &p->lease_rev, err,
                             sizeof err);
    if (rc == M5_OK) return true;
    if (rc == M5_EAGAIN) { /* expired and taken by another node meanwhile */
      M5_LOGW("store", "jetstream: lost the takeover lease of node %s", p->name);
      p->leased = false;
    }
    return false;
  }
  int rc = m5_js_kv_create(t->kv, key, val, (size_t)n, &p->lease_rev, err, sizeof err);
  if (rc == M5_EEXIST) {
    uint8_t *cur = NULL;
    size_t len = 0;
    uint64_t rev = 0;
    size_t nl = strlen(t->s->node);
    rc = m5_js_kv_get(t->kv, key, &cur, &len, &rev, err, sizeof err);
    bool mine = rc == M5_OK && len > nl && !memcmp(cur, t->s->node, nl) && cur[nl] == ' ';
    free(cur);
    if (!mine) { /* another node is at it */
      M5_LOGD("store", "jetstream: node %s: its takeover lease is another node's", p->name);
      return false;
    }
    rc = m5_js_kv_update(t->kv, key, val, (size_t)n, rev, &p->lease_rev, err, sizeof err);
  }
  if (rc) return false;
  p->leased = true;
  p->moved = 0;
  p->cursor[0] = p->cursor[1] = 1;
  M5_LOGW("store", "jetstream: node %s is dead (no liveness for %d s): taking over its deliveries",
          p->name, JS_DEAD_MS / 1000);
  return true;
}

/* Moves up to budget of p's deliveries here, until the monotonic deadline at most (the store
 * thread's jobs wait meanwhile); their number (moves tried). *done: none left. */
static size_t move_some(struct js_takeover *t, js_peer_t *p, size_t budget, int64_t deadline,
                        bool *done) {
  js_store_t *s = t->s;
  size_t tried = 0;
  *done = false;
  int left = 2;
  for (int f = 0; f < 2; f++) {
    char filter[JS_SUBJ_MAX], err[256];
    filter_of(t, f, p, filter, sizeof filter);
    size_t skip = strlen(filter) - 1; /* "P.q.<dead>." */
    while (tried < budget) {
      if (tried && mono_ms() >= deadline) return tried; /* the rest next tick */
      m5_js_msg_t m;
      int rc = m5_js_next_by_subject(s->c, s->stream[f], filter, p->cursor[f], &m, err, sizeof err);
      if (rc == M5_ENOENT) {
        left--;
        break;
      }
      if (rc) return tried; /* the cluster fails: next tick */
      tried++;
      p->cursor[f] = m.seq + 1;
      char subj[JS_SUBJ_MAX];
      int n = snprintf(subj, sizeof subj, "%s.%c.%s.%s", s->prefix, f == JS_FAM_R ? 'r' : 'q',
                       s->node, m.subject + skip);
      if (strlen(m.subject) <= skip || n <= 0 || (size_t)n >= sizeof subj) {
        m5_js_msg_free(&m);
        continue;
      }
      rc = js_move_msg(s, f, subj, &m);
      m5_js_msg_free(&m);
      if (rc == M5_OK) {
        p->moved++;
      } else if (rc != M5_EFULL) { /* (full: this recipient's queue here; it stays there) */
        p->cursor[f]--;
        return tried;
      }
    }
  }
  *done = left == 0;
  return tried;
}

void js_takeover_tick(js_store_t *s) {
  struct js_takeover *t = s->takeover;
  if (!t) return;
  int64_t now = mono_ms();
  if (!m5_js_client_connected(s->c)) {
    t->conn_since = 0; /* judge nobody on what was seen before the outage */
    return;
  }
  if (!t->conn_since) t->conn_since = now;
  if (now < t->next_tick) return;
  t->next_tick = now + JS_HEARTBEAT_MS;
  pthread_mutex_lock(&t->mu);
  size_t n = t->n_peers;
  int64_t watching = t->watch_ok_since, hb_ok = t->hb_ok_since;
  pthread_mutex_unlock(&t->mu);
  /* connected, watching and writing its own heartbeat without a break for a whole TTL: a node
   * silent that long is */
  bool can_judge = watching && now - watching > JS_DEAD_MS && now - t->conn_since > JS_DEAD_MS &&
                   hb_ok && now - hb_ok > JS_DEAD_MS;
  size_t budget = JS_TAKEOVER_BATCH;
  bool more = false;
  for (size_t i = 0; i < n && budget && mono_ms() < now + JS_TICK_WORK_MS; i++) {
    js_peer_t *p = &t->peers[i];
    if (!strcmp(p->name, s->node)) continue; /* never this node */
    pthread_mutex_lock(&t->mu);
    int64_t seen = p->seen_ms;
    pthread_mutex_unlock(&t->mu);
    bool silent = can_judge && now - seen > JS_DEAD_MS;
    if (!silent) {
      if (p->leased) release(t, p, "it is back");
      continue;
    }
    if (!p->leased && !has_deliveries(t, p)) continue;
    if (!confirm_dead(t, p, now, seen)) {
      if (p->leased) release(t, p, "it is back");
      continue;
    }
    if (!hold_lease(t, p)) continue;
    bool done = false;
    size_t tried = move_some(t, p, budget, now + JS_TICK_WORK_MS, &done);
    budget -= tried < budget ? tried : budget;
    if (done)
      release(t, p, "none left");
    else
      more = true;
  }
  /* from the end of this tick's work, so that jobs get the store thread in between */
  int64_t end = mono_ms();
  t->next_tick = end + (more ? JS_HEARTBEAT_MS / 4 : JS_HEARTBEAT_MS); /* more: sooner */
}

/* ---------------------------------------------------------------- open, close */

int js_takeover_open(js_store_t *s, char *err, size_t errlen) {
  struct js_takeover *t = calloc(1, sizeof *t);
  if (!t) {
    snprintf(err, errlen, "out of memory");
    return M5_ENOMEM;
  }
  t->s = s;
  t->started_ms = wall_ms();
  pthread_mutex_init(&t->mu, NULL);
  pthread_cond_init(&t->cv, NULL);
  s->takeover = t;
  snprintf(t->bucket, sizeof t->bucket, "%s_nodes", s->prefix);
  m5_js_kv_spec_t kv = {.bucket = t->bucket,
                        .replicas = s->o.js.replicas > 0 ? s->o.js.replicas : 1,
                        .history = 1,
                        .ttl_ms = JS_DEAD_MS};
  int rc = m5_js_ensure_kv(s->c, &kv, &t->kv, err, errlen);
  if (!rc) rc = m5_js_ensure_kv(s->c, &kv, &t->kv_live, err, errlen);
  if (rc) return rc;
  /* the first heartbeat before anything is served: a node restarted under a dead node's name
   * stops a takeover of its deliveries as soon as it can */
  char val[64];
  int n = snprintf(val, sizeof val, "%" PRId64 " 1", t->started_ms);
  if ((rc = m5_js_kv_put(t->kv, s->node, val, (size_t)n, NULL, err, errlen))) return rc;
  if (pthread_create(&t->th, NULL, liveness_main, t)) {
    snprintf(err, errlen, "cannot start the liveness thread");
    return M5_ENOMEM;
  }
  t->th_started = true;
  return M5_OK;
}

void js_takeover_close(js_store_t *s) {
  struct js_takeover *t = s->takeover;
  if (!t) return;
  if (t->th_started) {
    pthread_mutex_lock(&t->mu);
    t->stop = true;
    if (t->w) m5_js_kv_watch_stop(t->w);
    pthread_cond_broadcast(&t->cv);
    pthread_mutex_unlock(&t->mu);
    pthread_join(t->th, NULL);
  }
  /* a lease held is left to its TTL (10 s): whoever comes next finds what is left */
  m5_js_kv_close(t->kv);
  m5_js_kv_close(t->kv_live);
  pthread_mutex_destroy(&t->mu);
  pthread_cond_destroy(&t->cv);
  free(t);
  s->takeover = NULL;
}
