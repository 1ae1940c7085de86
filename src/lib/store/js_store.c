/* m5_store on NATS JetStream (issue 13; store.h, docs/store.md "JetStream"): open (streams,
 * dedup bucket, the ordered consumers that fill the in-memory index of this node's
 * deliveries), the store thread, the index, the record codec and the awaited publishes. The
 * jobs are in js_store_ops.c. js_int.h names the streams and subjects.
 *
 * Threads: one job thread serves the jobs in submission order and may block (requests to the
 * cluster); the ACCEPTs waiting in a row run as one pipelined batch (js_accept_batch).
 * libnats' threads only append to the consumer inbox or mark an awaited publish done, under a
 * mutex, and the store thread takes them from there. Nothing blocks a worker. */
#include "js_int.h"

#include "core/err.h"
#include "core/log.h"
#include "js/js_names.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#define REC_VERSION 1

/* ---------------------------------------------------------------- record codec */

typedef struct {
  uint8_t *p;
  size_t len, cap;
  bool bad;
} wbuf_t;

static void w_bytes(wbuf_t *w, const void *b, size_t n) {
  if (w->bad) return;
  if (w->len + n > w->cap) {
    size_t cap = w->cap ? w->cap : 256;
    while (cap < w->len + n)
      cap *= 2;
    uint8_t *np = realloc(w->p, cap);
    if (!np) {
      w->bad = true;
      return;
    }
    w->p = np;
    w->cap = cap;
  }
  if (n) memcpy(w->p + w->len, b, n);
  w->len += n;
}

static void w_u64(wbuf_t *w, uint64_t v) {
  uint8_t b[8];
  for (int i = 0; i < 8; i++)
    b[i] = (uint8_t)(v >> (56 - 8 * i));
  w_bytes(w, b, 8);
}

static void w_str(wbuf_t *w, const char *s) {
  size_t n = strlen(s);
  uint8_t b[2] = {(uint8_t)(n >> 8), (uint8_t)n};
  if (n > 0xffff) w->bad = true;
  w_bytes(w, b, 2);
  w_bytes(w, s, n);
}

int js_rec_encode(const m5_store_msg_t *m, const m5_msg_addr_t *rcpt, uint64_t rcpt_gen,
                  int64_t next_attempt_ms, uint8_t **out, size_t *out_len) {
  wbuf_t w = {0};
  bool report = !strcmp(m->app_id, M5_STORE_REPORT_APP);
  uint8_t head[4] = {REC_VERSION, report, (uint8_t)m->prio,
                     (uint8_t)((m->deliv_st_req ? 1 : 0) | (m->sto_fwd ? 2 : 0))};
  w_bytes(&w, head, sizeof head);
  w_u64(&w, (uint64_t)m->expr_time);
  w_u64(&w, (uint64_t)m->accepted_at_ms);
  w_u64(&w, (uint64_t)next_attempt_ms);
  w_u64(&w, m->ori_gen);
  w_u64(&w, m->group_gen);
  w_u64(&w, rcpt_gen);
  w_str(&w, m->ori.type);
  w_str(&w, m->ori.addr);
  w_str(&w, m->dest.type);
  w_str(&w, m->dest.addr);
  w_str(&w, m->msg_id);
  w_str(&w, m->app_id);
  w_str(&w, rcpt->type);
  w_str(&w, rcpt->addr);
  w_u64(&w, m->payload_len);
  w_bytes(&w, m->payload, m->payload_len);
  if (w.bad) {
    free(w.p);
    return M5_ENOMEM;
  }
  *out = w.p;
  *out_len = w.len;
  return M5_OK;
}

typedef struct {
  const uint8_t *p;
  size_t len, off;
  bool bad;
} rbuf_t;

static uint64_t r_u64(rbuf_t *r) {
  if (r->bad || r->len - r->off < 8) {
    r->bad = true;
    return 0;
  }
  uint64_t v = 0;
  for (int i = 0; i < 8; i++)
    v = (v << 8) | r->p[r->off + (size_t)i];
  r->off += 8;
  return v;
}

static void r_str(rbuf_t *r, char *out, size_t size) {
  if (r->bad || r->len - r->off < 2) {
    r->bad = true;
    return;
  }
  size_t n = ((size_t)r->p[r->off] << 8) | r->p[r->off + 1];
  r->off += 2;
  if (n >= size || r->len - r->off < n) {
    r->bad = true;
    return;
  }
  memcpy(out, r->p + r->off, n);
  out[n] = 0;
  r->off += n;
}

/* Decodes a record (or its head alone: the payload is then NULL). The payload is borrowed. */
int js_rec_decode(const uint8_t *p, size_t len, js_rec_t *rec) {
  memset(rec, 0, sizeof *rec);
  rbuf_t r = {p, len, 4, len < 4};
  if (r.bad || p[0] != REC_VERSION || p[2] > M5_PRIO_HIGH) return M5_EINVAL;
  m5_store_msg_t *m = &rec->d.msg;
  rec->report = p[1] != 0;
  m->prio = (m5_msg_prio_t)p[2];
  m->deliv_st_req = p[3] & 1;
  m->sto_fwd = (p[3] & 2) != 0;
  m->expr_time = (int64_t)r_u64(&r);
  m->accepted_at_ms = (int64_t)r_u64(&r);
  rec->d.next_attempt_ms = (int64_t)r_u64(&r);
  m->ori_gen = r_u64(&r);
  m->group_gen = r_u64(&r);
  rec->d.rcpt_gen = r_u64(&r);
  r_str(&r, m->ori.type, sizeof m->ori.type);
  r_str(&r, m->ori.addr, sizeof m->ori.addr);
  r_str(&r, m->dest.type, sizeof m->dest.type);
  r_str(&r, m->dest.addr, sizeof m->dest.addr);
  r_str(&r, m->msg_id, sizeof m->msg_id);
  r_str(&r, m->app_id, sizeof m->app_id);
  r_str(&r, rec->d.rcpt.type, sizeof rec->d.rcpt.type);
  r_str(&r, rec->d.rcpt.addr, sizeof rec->d.rcpt.addr);
  uint64_t plen = r_u64(&r);
  if (r.bad) return M5_EINVAL;
  rec->head_len = r.off;
  if (len > r.off) { /* the whole record: the payload follows */
    if (len - r.off != plen) return M5_EINVAL;
    m->payload = (uint8_t *)(p + r.off);
    m->payload_len = (size_t)plen;
  }
  return M5_OK;
}

/* ---------------------------------------------------------------- names */

/* A type token: the address type lowercased ("ue", "as", ...), letters and digits only. */
static int type_token(const char *type, char *out, size_t size) {
  size_t n = strlen(type);
  if (!n || n >= size) return M5_EINVAL;
  for (size_t i = 0; i < n; i++) {
    if (!isalnum((unsigned char)type[i])) return M5_EINVAL;
    out[i] = (char)tolower((unsigned char)type[i]);
  }
  out[n] = 0;
  return M5_OK;
}

static bool name_ok(const char *n);

static int subject_of(const js_store_t *s, int fam, const char *node, const m5_msg_addr_t *rcpt,
                      char *out, size_t out_size) {
  char tt[20], enc[M5_JS_TOKEN_SIZE];
  if (type_token(rcpt->type, tt, sizeof tt) ||
      m5_js_name_encode(rcpt->addr, strlen(rcpt->addr), enc, sizeof enc, NULL))
    return M5_EINVAL;
  int n = snprintf(out, out_size, "%s.%c.%s.%s.%s", s->prefix, fam == JS_FAM_R ? 'r' : 'q',
                   node && *node ? node : s->node, tt, enc);
  return n > 0 && (size_t)n < out_size ? M5_OK : M5_ERANGE;
}

/* A delivery's subject on node ("" or NULL: this node; else one subject token). */
int js_subject(const js_store_t *s, int fam, const char *node, const m5_msg_addr_t *rcpt, char *out,
               size_t out_size) {
  if (node && *node && !name_ok(node)) return M5_EINVAL;
  return subject_of(s, fam, node, rcpt, out, out_size);
}

/* The recipient's subjects on every node. */
int js_rcpt_filter(const js_store_t *s, int fam, const m5_msg_addr_t *rcpt, char *out,
                   size_t out_size) {
  return subject_of(s, fam, "*", rcpt, out, out_size);
}

uint64_t js_id(uint64_t seq, int fam) {
  return (seq << 1) | (uint64_t)fam;
}

/* A node or prefix name: one subject token and part of stream names. */
static bool name_ok(const char *n) {
  size_t len = n ? strlen(n) : 0;
  if (!len || len > JS_NAME_MAX) return false;
  for (size_t i = 0; i < len; i++)
    if (!isalnum((unsigned char)n[i]) && n[i] != '-' && n[i] != '_') return false;
  return true;
}

/* ---------------------------------------------------------------- index */

js_entry_t *js_entry_new(const uint8_t *rec, size_t len, uint64_t seq, int fam) {
  js_rec_t r;
  if (js_rec_decode(rec, len, &r)) return NULL;
  js_entry_t *e = calloc(1, sizeof *e);
  if (!e || !(e->rec = malloc(r.head_len))) {
    free(e);
    return NULL;
  }
  memcpy(e->rec, rec, r.head_len);
  e->rec_len = r.head_len;
  e->seq = seq;
  e->fam = fam;
  e->prio = r.d.msg.prio;
  e->expr_time = r.d.msg.expr_time;
  e->next_attempt_ms = r.d.next_attempt_ms;
  return e;
}

static void entry_free(js_entry_t *e) {
  if (!e) return;
  free(e->rec);
  free(e);
}

static size_t rcpt_key(const m5_msg_addr_t *a, char *out, size_t size) {
  int n = snprintf(out, size, "%s\n%s", a->type, a->addr);
  return n > 0 ? (size_t)n : 0;
}

js_rcpt_t *js_index_rcpt(js_store_t *s, const m5_msg_addr_t *rcpt) {
  char key[sizeof rcpt->type + sizeof rcpt->addr + 2];
  size_t kl = rcpt_key(rcpt, key, sizeof key);
  return m5_hmap_get(s->by_rcpt, key, kl);
}

void js_index_add(js_store_t *s, js_entry_t *e) {
  uint64_t id = js_id(e->seq, e->fam);
  js_rec_t r;
  js_rec_decode(e->rec, e->rec_len, &r);
  char key[sizeof r.d.rcpt.type + sizeof r.d.rcpt.addr + 2];
  size_t kl = rcpt_key(&r.d.rcpt, key, sizeof key);
  js_rcpt_t *rc = m5_hmap_get(s->by_rcpt, key, kl);
  if (!rc) {
    rc = calloc(1, sizeof *rc + kl + 1);
    if (!rc) goto oom;
    memcpy(rc->key, key, kl + 1);
    if (m5_hmap_put(s->by_rcpt, key, kl, rc, NULL)) {
      free(rc);
      goto oom;
    }
  }
  if (m5_hmap_put(s->by_id, &id, sizeof id, e, NULL)) goto oom;
  e->owner = rc;
  e->prev = rc->tail;
  e->next = NULL;
  if (rc->tail)
    rc->tail->next = e;
  else
    rc->head = e;
  rc->tail = e;
  rc->n++;
  s->n_entries++;
  js_quota_index(s, e, 1);
  return;
oom:
  /* the delivery stays in the stream: it comes back at the next open */
  M5_LOGE("store", "jetstream: out of memory indexing delivery %llu", (unsigned long long)id);
  entry_free(e);
}

js_entry_t *js_index_get(js_store_t *s, uint64_t id) {
  return m5_hmap_get(s->by_id, &id, sizeof id);
}

/* A message of this node's subjects deleted by this node: the consumer, which has not reached
 * it yet, must not bring it back. */
void js_mark_gone(js_store_t *s, int fam, uint64_t seq) {
  uint64_t id = js_id(seq, fam);
  if (seq > s->cons_seen[fam]) m5_hmap_put(s->gone, &id, sizeof id, (void *)1, NULL);
}

typedef struct {
  js_store_t *s;
  uint64_t *ids;
  size_t n, cap;
  bool caught_up[2];
} prune_t;

static void prune_one(const void *key, size_t klen, void *val, void *arg) {
  (void)val;
  prune_t *p = arg;
  uint64_t id;
  if (klen != sizeof id) return;
  memcpy(&id, key, sizeof id);
  int fam = (int)(id & 1);
  if (((id >> 1) > p->s->cons_seen[fam] && !p->caught_up[fam]) || p->n == p->cap) return;
  p->ids[p->n++] = id;
}

static void drain_once(js_store_t *s);

/* Drops the marks the consumer can no longer bring: those it has passed, and all of a family
 * whose consumer has handed over everything the server sent (the marked messages were deleted
 * before: the server skips them). The common path (a delivery pushed at once and concluded
 * before the consumer got to it) leaves one mark each, so this runs when they pile up. */
static void prune_gone(js_store_t *s) {
  prune_t p = {s, NULL, 0, m5_hmap_count(s->gone), {false, false}};
  for (int f = 0; f < 2; f++) {
    uint64_t pending = 0;
    if (!s->sub[f] || m5_js_sub_pending(s->sub[f], &pending, &p.caught_up[f]))
      p.caught_up[f] = false; /* (closed: only the marks it passed go) */
  }
  drain_once(s); /* what was handed over before the check */
  if (!(p.ids = malloc(p.cap * sizeof *p.ids))) return;
  m5_hmap_foreach(s->gone, prune_one, &p);
  for (size_t i = 0; i < p.n; i++)
    m5_hmap_del(s->gone, &p.ids[i], sizeof p.ids[i]);
  free(p.ids);
  s->gone_floor = m5_hmap_count(s->gone);
}

void js_index_remove(js_store_t *s, js_entry_t *e) {
  uint64_t id = js_id(e->seq, e->fam);
  m5_hmap_del(s->by_id, &id, sizeof id);
  js_rcpt_t *rc = e->owner;
  if (e->prev)
    e->prev->next = e->next;
  else
    rc->head = e->next;
  if (e->next)
    e->next->prev = e->prev;
  else
    rc->tail = e->prev;
  if (--rc->n == 0) {
    m5_hmap_del(s->by_rcpt, rc->key, strlen(rc->key));
    free(rc);
  }
  s->n_entries--;
  js_quota_index(s, e, -1);
  js_mark_gone(s, e->fam, e->seq);
  entry_free(e);
}

int js_entry_item(const js_entry_t *e, m5_store_delivery_t *out) {
  js_rec_t r;
  int rc = js_rec_decode(e->rec, e->rec_len, &r);
  if (rc) return rc;
  *out = r.d;
  out->msg.payload = NULL;
  out->msg.payload_len = 0;
  out->id = js_id(e->seq, e->fam);
  out->state = M5_DELIV_PENDING;
  out->attempts = e->attempts;
  out->next_attempt_ms = e->next_attempt_ms;
  return M5_OK;
}

/* libnats thread: a message of this node's subjects, into the inbox. */
static void on_consumer_msg(js_store_t *s, int fam, uint64_t seq, const void *data, size_t len,
                            uint64_t pending) {
  js_entry_t *e = js_entry_new(data, len, seq, fam);
  pthread_mutex_lock(&s->in_mu);
  s->cb_seq[fam] = seq;
  s->cb_pending = pending;
  if (e) {
    if (s->in_tail)
      s->in_tail->inbox_next = e;
    else
      s->in_head = e;
    s->in_tail = e;
  }
  pthread_mutex_unlock(&s->in_mu);
  if (!e)
    M5_LOGE("store", "jetstream: undecodable delivery at %s seq %llu skipped", s->stream[fam],
            (unsigned long long)seq);
}

static void on_q(void *arg, uint64_t seq, const char *subject, const void *data, size_t len,
                 uint64_t pending) {
  (void)subject;
  on_consumer_msg(arg, JS_FAM_Q, seq, data, len, pending);
}

static void on_r(void *arg, uint64_t seq, const char *subject, const void *data, size_t len,
                 uint64_t pending) {
  (void)subject;
  on_consumer_msg(arg, JS_FAM_R, seq, data, len, pending);
}

/* Store thread: what the consumers brought, into the index (a delivery this node already
 * indexed at its accept or move is skipped, as is one concluded before the consumer got it). */
void js_drain_inbox(js_store_t *s) {
  drain_once(s);
  if (m5_hmap_count(s->gone) > 4096 + 2 * s->gone_floor) prune_gone(s);
}

static void drain_once(js_store_t *s) {
  pthread_mutex_lock(&s->in_mu);
  js_entry_t *e = s->in_head;
  s->in_head = s->in_tail = NULL;
  pthread_mutex_unlock(&s->in_mu);
  while (e) {
    js_entry_t *next = e->inbox_next;
    e->inbox_next = NULL;
    uint64_t id = js_id(e->seq, e->fam);
    if (e->seq > s->cons_seen[e->fam]) s->cons_seen[e->fam] = e->seq;
    if (m5_hmap_del(s->gone, &id, sizeof id) || js_index_get(s, id))
      entry_free(e);
    else
      js_index_add(s, e);
    e = next;
  }
}

/* ---------------------------------------------------------------- awaited publishes */

/* libnats thread: the outcome of an awaited publish, into its slot (found by its msg_id). */
static void on_ack(void *arg, const m5_js_ack_t *a) {
  js_store_t *s = arg;
  pthread_mutex_lock(&s->pub_mu);
  uintptr_t v = (uintptr_t)m5_hmap_get(s->pub_ids, a->msg_id, strlen(a->msg_id));
  size_t i = (size_t)v - 1;
  if (v && i < s->n_pubs && s->pubs[i].msg_id && !s->pubs[i].done &&
      !strcmp(s->pubs[i].msg_id, a->msg_id)) {
    js_pub_t *p = &s->pubs[i];
    p->done = true;
    p->status = a->status;
    p->seq = a->seq;
    p->duplicate = a->duplicate;
    p->js_code = a->js_code;
    p->subject_full = a->status == M5_EFULL && a->text && strstr(a->text, "per subject");
    if (++s->n_done == s->n_pubs) pthread_cond_broadcast(&s->pub_cv);
  }
  pthread_mutex_unlock(&s->pub_mu);
}

int js_pub_begin(js_store_t *s, size_t n) {
  js_pub_t *p = calloc(n ? n : 1, sizeof *p);
  if (!p) return M5_ENOMEM;
  pthread_mutex_lock(&s->pub_mu);
  s->pubs = p;
  s->n_pubs = n;
  s->n_done = 0;
  pthread_mutex_unlock(&s->pub_mu);
  return M5_OK;
}

static void pub_fail(js_store_t *s, size_t i, int rc) {
  pthread_mutex_lock(&s->pub_mu);
  if (!s->pubs[i].done) {
    s->pubs[i].done = true;
    s->pubs[i].status = rc;
    s->n_done++;
  }
  pthread_mutex_unlock(&s->pub_mu);
}

/* Slot i awaits msg_id (before the publish: its acknowledgement may come at once). */
static int pub_slot(js_store_t *s, size_t i, const char *msg_id) {
  char *id = strdup(msg_id);
  pthread_mutex_lock(&s->pub_mu);
  int rc = id ? m5_hmap_put(s->pub_ids, id, strlen(id), (void *)(uintptr_t)(i + 1), NULL)
              : M5_ENOMEM;
  if (rc == M5_OK)
    s->pubs[i].msg_id = id;
  else
    free(id);
  pthread_mutex_unlock(&s->pub_mu);
  if (rc) pub_fail(s, i, rc);
  return rc;
}

int js_pub(js_store_t *s, size_t i, const char *subject, const void *data, size_t len,
           const char *msg_id) {
  int rc = pub_slot(s, i, msg_id);
  if (rc) return rc;
  char err[256];
  for (int tries = 0;; tries++) {
    rc = m5_js_publish_async(s->c, subject, data, len, msg_id, s->o.js.timeout_ms, err, sizeof err);
    if (rc == M5_OK) return M5_OK;
    /* libnats' window of outstanding publishes is full (a large fan-out): wait and retry */
    if (rc != M5_EFULL || tries > 50) {
      pub_fail(s, i, rc);
      M5_LOGW("store", "jetstream: publish to %s: %s", subject, err);
      return rc;
    }
  }
}

int js_pub_kv(js_store_t *s, size_t i, m5_js_kv_t *kv, const char *key, const void *data,
              size_t len, uint64_t last_rev, const char *msg_id) {
  int rc = pub_slot(s, i, msg_id);
  if (rc) return rc;
  char err[256];
  for (int tries = 0;; tries++) {
    rc = m5_js_kv_publish_async(kv, key, data, len, last_rev, msg_id, s->o.js.timeout_ms, err,
                                sizeof err);
    if (rc == M5_OK) return M5_OK;
    if (rc != M5_EFULL || tries > 50) {
      pub_fail(s, i, rc);
      M5_LOGW("store", "jetstream: kv write of %s: %s", key, err);
      return rc;
    }
  }
}

static void deadline_in(struct timespec *dl, int64_t ms) {
  clock_gettime(CLOCK_REALTIME, dl);
  dl->tv_sec += ms / 1000;
  dl->tv_nsec += (ms % 1000) * 1000000;
  if (dl->tv_nsec >= 1000000000) {
    dl->tv_sec++;
    dl->tv_nsec -= 1000000000;
  }
}

/* Waits while acknowledgements keep coming: a large fan-out may take longer than one timeout
 * in all, but each publish is answered (or timed out by libnats) within its max wait. */
void js_pub_wait(js_store_t *s) {
  int64_t quiet_ms = (s->o.js.timeout_ms > 0 ? s->o.js.timeout_ms : 5000) + 1000;
  struct timespec dl;
  deadline_in(&dl, quiet_ms);
  pthread_mutex_lock(&s->pub_mu);
  size_t seen = s->n_done;
  while (s->n_done < s->n_pubs) {
    if (pthread_cond_timedwait(&s->pub_cv, &s->pub_mu, &dl) == 0) continue;
    if (s->n_done == seen) break; /* nothing for a whole max wait */
    seen = s->n_done;
    deadline_in(&dl, quiet_ms);
  }
  for (size_t i = 0; i < s->n_pubs; i++)
    if (!s->pubs[i].done) {
      s->pubs[i].done = true;
      s->pubs[i].status = M5_ETIMEDOUT;
    }
  s->n_done = s->n_pubs;
  pthread_mutex_unlock(&s->pub_mu);
}

void js_pub_end(js_store_t *s) {
  pthread_mutex_lock(&s->pub_mu);
  for (size_t i = 0; i < s->n_pubs; i++)
    if (s->pubs[i].msg_id) {
      m5_hmap_del(s->pub_ids, s->pubs[i].msg_id, strlen(s->pubs[i].msg_id));
      free(s->pubs[i].msg_id);
    }
  free(s->pubs);
  s->pubs = NULL;
  s->n_pubs = s->n_done = 0;
  pthread_mutex_unlock(&s->pub_mu);
}

void js_stat_add(js_store_t *s, uint64_t *field, uint64_t n) {
  pthread_mutex_lock(&s->st_mu);
  *field += n;
  pthread_mutex_unlock(&s->st_mu);
}

/* ---------------------------------------------------------------- thread, open, close */

static void update_counts(js_store_t *s, uint64_t jobs) {
  pthread_mutex_lock(&s->st_mu);
  s->st.queued = s->n_entries;
  s->st.messages = s->n_entries; /* each delivery carries its body */
  s->st.jobs += jobs;
  pthread_mutex_unlock(&s->st_mu);
}

uint64_t js_round_next(js_store_t *s) {
  pthread_mutex_lock(&s->st_mu);
  s->st.batches++;
  s->st.commits++;
  s->st.unsynced_commits++;
  pthread_mutex_unlock(&s->st_mu);
  return ++s->rounds;
}

/* The job thread runs the jobs in submission order. An ACCEPT takes the ACCEPTs waiting right
 * behind it (the FIFO mirrors the thread's inbox) into one batch (js_accept_batch), a
 * MARK_DELIVERED the MARK_DELIVEREDs (js_mark_batch); those are then answered when the inbox
 * hands them over (done: nothing left to run). */
static void run_job(m5_job_t *base, void *ctx) {
  js_store_t *s = ctx;
  m5_store_job_t *job = (m5_store_job_t *)base;
  if (job->priv.done) return; /* ran in an earlier job's batch */
  m5_store_job_t *batch[JS_BATCH_MAX];
  size_t n = 0;
  pthread_mutex_lock(&s->q_mu);
  bool batch_op = job->op == M5_STORE_ACCEPT || job->op == M5_STORE_MARK_DELIVERED;
  while (s->q_head && n < (batch_op ? JS_BATCH_MAX : 1) && (!n || s->q_head->op == job->op)) {
    batch[n++] = s->q_head;
    s->q_head = s->q_head->priv.link;
  }
  if (!s->q_head) s->q_tail = NULL;
  pthread_mutex_unlock(&s->q_mu);
  js_drain_inbox(s);
  if (!n || batch[0] != job) { /* cannot happen: one lock orders both */
    M5_LOGE("store", "jetstream: job queue out of order; failing the job");
    job->status = M5_EIO;
    return;
  }
  if (job->op == M5_STORE_ACCEPT) {
    for (size_t i = 0; i < n; i++)
      batch[i]->status = 0;
    js_accept_batch(s, batch, n);
  } else if (n > 1) { /* MARK_DELIVERED */
    uint64_t round = js_round_next(s);
    js_mark_batch(s, batch, n);
    for (size_t i = 0; i < n; i++)
      if (!batch[i]->status) batch[i]->commit_no = round;
  } else {
    js_run_job(s, job);
  }
  for (size_t i = 0; i < n; i++)
    batch[i]->priv.done = 1;
  update_counts(s, n);
  /* periodic work, after each job or batch (m5s submits DUE_ANY every second, so an idle node
   * still gets here): another node's takeover, expired topic subscriptions */
  js_takeover_tick(s);
  js_topics_tick(s);
}

static int js_submit(m5_store_t *base, m5_store_job_t *job) {
  js_store_t *s = (js_store_t *)base;
  job->status = 0;
  job->priv.link = NULL;
  job->priv.done = 0;
  /* the FIFO and the job thread's inbox in one order: one lock around both (the thread is
   * woken after it is released) */
  int wake = 0;
  pthread_mutex_lock(&s->q_mu);
  int rc = m5_jobthread_submit_start(s->thread, &job->base, &wake);
  if (rc == 0) {
    if (s->q_tail)
      s->q_tail->priv.link = job;
    else
      s->q_head = job;
    s->q_tail = job;
  }
  pthread_mutex_unlock(&s->q_mu);
  if (rc == 0) m5_jobthread_submit_finish(s->thread, wake);
  return rc;
}

static void js_stats(m5_store_t *base, m5_store_stats_t *out) {
  js_store_t *s = (js_store_t *)base;
  pthread_mutex_lock(&s->st_mu);
  *out = s->st;
  pthread_mutex_unlock(&s->st_mu);
  pthread_mutex_lock(&s->in_mu);
  out->js_consumer_pending = s->cb_pending;
  pthread_mutex_unlock(&s->in_mu);
  out->jetstream = 1;
  out->js_connected = m5_js_client_connected(s->c);
}

static void free_rcpt(void *v) {
  free(v);
}

static void free_entry_val(const void *key, size_t klen, void *val, void *arg) {
  (void)key;
  (void)klen;
  (void)arg;
  entry_free(val);
}

static void js_close(m5_store_t *base) {
  js_store_t *s = (js_store_t *)base;
  m5_jobthread_free(s->thread); /* serves what is queued, then stops */
  /* Nothing more to ask of the cluster: the connection closes first, so that the watchers and
   * consumers below go without a delete-consumer request each (on an open connection that
   * waits store.js.timeout_ms when the consumer lived on a NATS node that died: m5s then
   * missed its stop bound; the consumers are ephemeral, the server removes them). */
  m5_js_client_disconnect(s->c);
  js_takeover_close(s);
  for (int f = 0; f < 2; f++) {
    m5_js_sub_close(s->sub[f]);
    s->sub[f] = NULL; /* js_drain_inbox below may prune, which asks the consumers */
  }
  js_quota_close(s);
  m5_js_kv_close(s->dedup);
  m5_js_kv_close(s->tickets);
  js_topics_close(s);
  m5_js_client_close(s->c);
  js_drain_inbox(s);
  if (s->by_id) m5_hmap_foreach(s->by_id, free_entry_val, NULL);
  m5_hmap_free(s->by_id, NULL);
  m5_hmap_free(s->by_rcpt, free_rcpt);
  m5_hmap_free(s->gone, NULL);
  m5_hmap_free(s->pub_ids, NULL);
  pthread_mutex_destroy(&s->q_mu);
  pthread_mutex_destroy(&s->in_mu);
  pthread_mutex_destroy(&s->pub_mu);
  pthread_cond_destroy(&s->pub_cv);
  pthread_mutex_destroy(&s->st_mu);
  free(s);
}

static const m5_store_ops_t js_ops = {js_submit, js_stats, js_close};

/* Waits until the consumer of family f has handed over everything stored before it started. */
static int wait_caught_up(js_store_t *s, int f, char *err, size_t errlen) {
  int64_t timeout = s->o.js.timeout_ms > 0 ? s->o.js.timeout_ms : 5000;
  for (int64_t waited = 0;; waited += 20) {
    uint64_t pending = 0;
    bool caught_up = false;
    int rc = m5_js_sub_pending(s->sub[f], &pending, &caught_up);
    if (rc == M5_OK && caught_up) return M5_OK;
    if (waited > 4 * timeout) {
      snprintf(err, errlen, "store: jetstream: the index of %s did not catch up (%s)", s->stream[f],
               rc ? m5_strerror(rc) : "messages still pending");
      return M5_ETIMEDOUT;
    }
    struct timespec ts = {0, 20 * 1000000};
    nanosleep(&ts, NULL);
  }
}

m5_store_t *m5_store_js_open(const m5_store_opts_t *o, char *err, size_t errlen) {
  const m5_store_js_opts_t *jo = &o->js;
  const char *prefix = jo->prefix && *jo->prefix ? jo->prefix : "m5";
  if (!jo->servers || !jo->n_servers) {
    snprintf(err, errlen, "store: jetstream: no servers (store.js.servers)");
    return NULL;
  }
  if (!name_ok(prefix) || !name_ok(jo->node)) {
    snprintf(err, errlen,
             "store: jetstream: prefix and node name must be 1-%d of A-Z a-z 0-9 - _ "
             "(store.js.prefix, node.name)",
             JS_NAME_MAX);
    return NULL;
  }
  js_store_t *s = calloc(1, sizeof *s);
  if (!s) {
    snprintf(err, errlen, "store: out of memory");
    return NULL;
  }
  s->base.ops = &js_ops;
  s->o = *o;
  s->o.js.timeout_ms = jo->timeout_ms > 0 ? jo->timeout_ms : 5000;
  s->max_bytes = jo->max_bytes ? jo->max_bytes
                 : o->max_queued && o->max_queued < (UINT64_MAX >> 14) ? o->max_queued << 14
                                                                      : UINT64_MAX;
  snprintf(s->prefix, sizeof s->prefix, "%s", prefix);
  snprintf(s->node, sizeof s->node, "%s", jo->node);
  snprintf(s->stream[JS_FAM_Q], sizeof s->stream[0], "%s_Q", prefix);
  snprintf(s->stream[JS_FAM_R], sizeof s->stream[1], "%s_R", prefix);
  pthread_mutex_init(&s->in_mu, NULL);
  pthread_mutex_init(&s->pub_mu, NULL);
  pthread_cond_init(&s->pub_cv, NULL);
  pthread_mutex_init(&s->st_mu, NULL);
  pthread_mutex_init(&s->q_mu, NULL);
  s->st.synchronous = 0;
  /* random: the Msg-Ids of round 1 (acc/<node>/<nonce>...) must not repeat those of a previous
   * run of this node within the stream's duplicate window (a repeat would be taken for a
   * duplicate and not stored) */
  if (getrandom(&s->nonce, sizeof s->nonce, 0) != (ssize_t)sizeof s->nonce) {
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    s->nonce = ((uint64_t)now.tv_sec << 32) ^ (uint64_t)now.tv_nsec ^ ((uint64_t)getpid() << 16);
  }
  s->by_id = m5_hmap_new();
  s->by_rcpt = m5_hmap_new();
  s->gone = m5_hmap_new();
  s->pub_ids = m5_hmap_new();
  char e2[400] = "";
  char name[64 + JS_NAME_MAX];
  snprintf(name, sizeof name, "m5s-store-%s", s->node);
  m5_js_client_opts_t co = {.servers = jo->servers,
                            .n_servers = jo->n_servers,
                            .timeout_ms = s->o.js.timeout_ms,
                            .name = name,
                            .on_ack = on_ack,
                            .ack_arg = s,
                            .auth = {jo->tls_ca, jo->tls_cert, jo->tls_key, jo->user,
                                     jo->password_file, jo->creds}};
  if (!s->by_id || !s->by_rcpt || !s->gone || !s->pub_ids) {
    snprintf(e2, sizeof e2, "out of memory");
    goto fail;
  }
  if (m5_js_client_open(&s->c, &co, e2, sizeof e2)) goto fail;
  int64_t dup_ms =
      o->dedup_window_ms > 0 && o->dedup_window_ms < 120000 ? o->dedup_window_ms : 120000;
  for (int f = 0; f < 2; f++) {
    char subj[JS_NAME_MAX + 8];
    snprintf(subj, sizeof subj, "%s.%c.>", s->prefix, f == JS_FAM_R ? 'r' : 'q');
    const char *subjs[] = {subj};
    m5_js_stream_spec_t sp = {
        .name = s->stream[f],
        .subjects = subjs,
        .n_subjects = 1,
        .replicas = jo->replicas > 0 ? jo->replicas : 1,
        .duplicate_window_ms = dup_ms,
        .max_msgs = (int64_t)o->max_queued,
        .max_msgs_per_subject =
            (int64_t)(f == JS_FAM_R ? o->max_reports_per_recipient : o->max_per_recipient),
        .discard_new_per_subject = true,
        .allow_direct = true,
    };
    if (m5_js_ensure_stream(s->c, &sp, e2, sizeof e2)) goto fail;
  }
  char bucket[JS_NAME_MAX + 8];
  snprintf(bucket, sizeof bucket, "%s_dedup", s->prefix);
  m5_js_kv_spec_t kv = {.bucket = bucket,
                        .replicas = jo->replicas > 0 ? jo->replicas : 1,
                        .history = 1,
                        .ttl_ms = o->dedup_window_ms > 100 ? o->dedup_window_ms : 100};
  if (m5_js_ensure_kv(s->c, &kv, &s->dedup, e2, sizeof e2)) goto fail;
  snprintf(s->tickets_bucket, sizeof s->tickets_bucket, "%s_tickets", s->prefix);
  m5_js_kv_spec_t tk = {.bucket = s->tickets_bucket,
                        .replicas = jo->replicas > 0 ? jo->replicas : 1,
                        .history = 1,
                        .ttl_ms = o->report_window_ms > 100 ? o->report_window_ms : 100};
  if (m5_js_ensure_kv(s->c, &tk, &s->tickets, e2, sizeof e2)) goto fail;
  if (js_topics_open(s, e2, sizeof e2)) goto fail;
  if (js_quota_open(s, e2, sizeof e2)) goto fail;
  if (js_takeover_open(s, e2, sizeof e2)) goto fail;
  for (int f = 0; f < 2; f++) {
    char filter[3 * JS_NAME_MAX];
    snprintf(filter, sizeof filter, "%s.%c.%s.>", s->prefix, f == JS_FAM_R ? 'r' : 'q', s->node);
    if (m5_js_ordered_subscribe(s->c, s->stream[f], filter, f == JS_FAM_R ? on_r : on_q, s,
                                &s->sub[f], e2, sizeof e2))
      goto fail;
  }
  for (int f = 0; f < 2; f++)
    if (wait_caught_up(s, f, err, errlen)) goto fail_quiet;
  js_drain_inbox(s);
  s->st.queued = s->st.messages = s->n_entries;
  if (!(s->thread = m5_jobthread_new(run_job, s))) {
    snprintf(e2, sizeof e2, "out of memory");
    goto fail;
  }
  m5_jobthread_set_name(s->thread, "m5-store-js");
  if (m5_jobthread_start(s->thread, o->queue_cap ? o->queue_cap : 4096)) {
    snprintf(e2, sizeof e2, "cannot start the store thread");
    goto fail;
  }
  return &s->base;
fail:
  snprintf(err, errlen, "store: jetstream: %s", e2);
fail_quiet:
  js_close(&s->base);
  return NULL;
}
