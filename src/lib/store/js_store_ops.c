/* The jobs of m5_store on NATS JetStream (store.h ops; issue 13, docs/store.md "JetStream"),
 * run one at a time on the store thread (js_store.c), which may block on the cluster.
 *
 * The rules the jobs keep:
 *  - ACCEPT answers after every PubAck (stored on a quorum): it claims the dedup key
 *    (create-only; a claim found: M5_EAGAIN, a final ack: DUPLICATE), publishes one message
 *    per recipient (Nats-Msg-Id derived from the dedup key, so a retry is recognised), then
 *    turns its claim into the final ack by compare-and-set (see "the dedup claim" below).
 *  - A conclusion is a delete of the delivery's message, and whoever deletes it concluded it:
 *    "not found" means another node took the delivery over (a move), so a MARK answers
 *    M5_ENOENT and EXPIRE skips it. A failure report is published (and acknowledged) before
 *    the delete; it is deleted again when the delete finds the delivery gone.
 *  - RESCHEDULE, attempts and in_flight live in the index only (not persisted).
 *  - DUE(rcpt) of a UE first moves rcpt's deliveries from other nodes' subjects to this
 *    node's (an AS's stay where they are: any node may push to it). */
#include "js_int.h"

#include "core/err.h"
#include "core/log.h"
#include "crypto/kdf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int64_t js_now_ms(js_store_t *s) {
  if (s->o.clock_ms) return s->o.clock_ms(s->o.clock_arg);
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

#ifdef M5_TEST_HOOKS
int (*m5_store_js_test_hook)(const char *point, m5_store_t *store, m5_store_job_t *job);
#endif

static void unsupported(m5_store_job_t *job, const char *what) {
  M5_LOGW("store", "jetstream: %s is not supported on the jetstream backend yet", what);
  job->status = M5_EINVAL;
}

/* The dedup key of (ori, id): hex of HMAC-SHA-256 (collision-resistant, any length, a valid
 * KV key token and Msg-Id part). */
void js_hash_hex(const char *text, size_t len, char out[65]) {
  uint8_t h[32];
  static const uint8_t k[] = "m5-store-dedup";
  m5_hmac_sha256(k, sizeof k - 1, (const uint8_t *)text, len, h);
  for (int i = 0; i < 32; i++)
    snprintf(out + 2 * i, 3, "%02x", h[i]);
}

static void dedup_hash(const m5_store_job_t *job, char out[65]) {
  char buf[2 * (M5_STORE_KEY_MAX + 1) + 1];
  int n = snprintf(buf, sizeof buf, "%s\n%s", job->dedup_ori, job->dedup_id);
  js_hash_hex(buf, n > 0 ? (size_t)n : 0, out);
}

/* The ack kept for a dedup key: "status\ncause". */
static void ack_parse(const uint8_t *v, size_t len, m5_store_ack_t *a) {
  memset(a, 0, sizeof *a);
  const uint8_t *nl = memchr(v, '\n', len);
  size_t sl = nl ? (size_t)(nl - v) : len;
  snprintf(a->status, sizeof a->status, "%.*s", (int)sl, (const char *)v);
  if (nl)
    snprintf(a->failure_cause, sizeof a->failure_cause, "%.*s", (int)(len - sl - 1),
             (const char *)nl + 1);
}

/* Deletes a message this job published (refused, lost a race, or a copy no longer needed). */
static void delete_seq(js_store_t *s, int fam, uint64_t seq) {
  char err[256];
  int rc = m5_js_delete_msg(s->c, s->stream[fam], seq, err, sizeof err);
  if (rc && rc != M5_ENOENT) {
    /* still stored: the consumer may bring it (a failed delete leaves it to be delivered) */
    M5_LOGW("store", "jetstream: delete: %s", err);
    return;
  }
  js_mark_gone(s, fam, seq); /* gone: the consumer must not bring it back (this node's) */
}

/* ---- the dedup claim ----
 * An accept with a dedup key first claims the key (create-only, value "#pending <node> <ms>"),
 * publishes, and only then turns its claim into the final ack by compare-and-set on the
 * claim's revision; it answers ACCEPTED only after that. Both nodes of a retransmission race
 * publish with the same Msg-Ids (acc/<hash>/<i>), so the claim, not the publishes, decides who
 * owns them: an accept that finds a claim answers M5_EAGAIN (the sender comes back later), one
 * that finds the final ack answers DUPLICATE. A refused or failed accept deletes its
 * deliveries, then removes its claim (by revision), so a retry is tried afresh. The claim of
 * an accept that died (a crashed node) is taken over once it is older than claim_stale_ms, by
 * compare-and-set (one taker wins), and the taker adopts the deliveries its round 0 finds. */
#define CLAIM_TAG "#pending "

typedef struct {
  uint64_t rev;  /* the claim's revision (what the final compare-and-set expects) */
  int64_t at_ms; /* when it was written (this node's clock) */
} claim_t;

/* Older than this, a claim is taken to be a dead accept's: twice the longest wait of one
 * request to the cluster plus 10 s. An accept that lives longer (a very large fan-out)
 * renews its claim before it deletes anything, and its final compare-and-set fails if it was
 * taken over meanwhile. Node clocks must agree to within the 10 s margin. */
static int64_t claim_stale_ms(const js_store_t *s) {
  return 2 * s->o.js.timeout_ms + 10000;
}

static int claim_value(js_store_t *s, int64_t now, char *out, size_t size) {
  int n = snprintf(out, size, CLAIM_TAG "%s %lld", s->node, (long long)now);
  return n > 0 && (size_t)n < size ? n : 0;
}

/* Claims key for this job: M5_OK (*c the claim), *dup (the final ack in job->orig_ack),
 * M5_EAGAIN (a live claim of another accept) or the cluster's error. */
static int claim_key(js_store_t *s, m5_store_job_t *job, const char *key, claim_t *c, bool *dup) {
  char val[JS_NAME_MAX + 48], err[256];
  *dup = false;
  for (int tries = 0; tries < 3; tries++) {
    int64_t now = js_now_ms(s);
    int vl = claim_value(s, now, val, sizeof val);
    int rc = m5_js_kv_create(s->dedup, key, val, (size_t)vl, &c->rev, err, sizeof err);
    if (rc == M5_OK) {
      c->at_ms = now;
      return M5_OK;
    }
    if (rc != M5_EEXIST) {
      M5_LOGW("store", "jetstream: dedup claim: %s", err);
      return rc;
    }
    uint8_t *v = NULL;
    size_t len = 0;
    uint64_t rev = 0;
    rc = m5_js_kv_get(s->dedup, key, &v, &len, &rev, err, sizeof err);
    if (rc == M5_ENOENT) continue; /* removed meanwhile (a refused accept): claim again */
    if (rc) {
      M5_LOGW("store", "jetstream: dedup get: %s", err);
      return rc;
    }
    if (len < sizeof CLAIM_TAG - 1 || memcmp(v, CLAIM_TAG, sizeof CLAIM_TAG - 1)) {
      ack_parse(v, len, &job->orig_ack);
      free(v);
      *dup = true;
      return M5_OK;
    }
    const char *sp = strrchr((const char *)v, ' ');
    long long at = sp ? strtoll(sp + 1, NULL, 10) : 0;
    free(v);
    if (now - at < claim_stale_ms(s)) return M5_EAGAIN; /* another accept is at work */
    rc = m5_js_kv_update(s->dedup, key, val, (size_t)vl, rev, &c->rev, err, sizeof err);
    if (rc == M5_OK) {
      M5_LOGI("store", "jetstream: took over a claim of %lld ms ago (a dead accept's)", now - at);
      c->at_ms = now;
      return M5_OK;
    }
    if (rc != M5_EAGAIN) {
      M5_LOGW("store", "jetstream: dedup takeover: %s", err);
      return rc;
    }
  }
  return M5_EAGAIN;
}

/* Still ours, and young enough that nobody may take it over while we delete: renews an old
 * claim (compare-and-set). M5_EAGAIN: taken over; other codes: unknown. */
static int claim_hold(js_store_t *s, const char *key, claim_t *c) {
  int64_t now = js_now_ms(s);
  if (now - c->at_ms < claim_stale_ms(s) / 2) return M5_OK;
  char val[JS_NAME_MAX + 48], err[256];
  int vl = claim_value(s, now, val, sizeof val);
  int rc = m5_js_kv_update(s->dedup, key, val, (size_t)vl, c->rev, &c->rev, err, sizeof err);
  if (rc == M5_OK) c->at_ms = now;
  if (rc && rc != M5_EAGAIN) M5_LOGW("store", "jetstream: dedup claim renewal: %s", err);
  return rc;
}

/* The job's status for a failure of the cluster: unavailable (no leader) and timed out pass
 * through (the caller answers "come back": a retransmission with the same msgId learns the
 * outcome), out of memory and bad input too; anything else is M5_EIO. */
static int fail_status(int rc) {
  return rc == M5_ENOMEM || rc == M5_EINVAL || rc == M5_ETIMEDOUT || rc == M5_EAGAIN ? rc : M5_EIO;
}

/* ---------------------------------------------------------------- ACCEPT */

/* Publishes the recipients marked in want (one message each) and waits for all their
 * PubAcks, into res[i]. tag 0: the Msg-Ids of the dedup key (or of this job); else fresh ones. */
static int publish_round(js_store_t *s, m5_store_job_t *job, int fam, const bool *want,
                         uint64_t tag, const char *hash, js_pub_t *res) {
  size_t n = job->n_rcpts;
  int rc = js_pub_begin(s, n);
  if (rc) return rc;
  for (size_t i = 0; i < n && !rc; i++) {
    if (!want[i]) {
      pthread_mutex_lock(&s->pub_mu);
      s->pubs[i].done = true; /* not part of this round */
      s->n_done++;
      pthread_mutex_unlock(&s->pub_mu);
      continue;
    }
    m5_store_rcpt_t *r = &job->rcpts[i];
    char subj[JS_SUBJ_MAX], mid[JS_SUBJ_MAX];
    uint8_t *rec = NULL;
    size_t rl = 0;
    if ((rc = js_subject(s, fam, r->node, &r->addr, subj, sizeof subj))) break;
    if (hash && !tag)
      snprintf(mid, sizeof mid, "acc/%s/%zu", hash, i);
    else
      snprintf(mid, sizeof mid, "acc/%s/%llx.%llx/%zu", s->node, (unsigned long long)s->nonce,
               (unsigned long long)tag, i);
    if ((rc = js_rec_encode(&job->msg, &r->addr, r->gen, r->next_attempt_ms, &rec, &rl))) break;
    js_pub(s, i, subj, rec, rl, mid); /* a failure is recorded in its slot */
    free(rec);
  }
  if (rc) { /* nothing more is sent: mark the rest so that the wait ends */
    pthread_mutex_lock(&s->pub_mu);
    for (size_t i = 0; i < n; i++)
      if (!s->pubs[i].msg_id && !s->pubs[i].done) {
        s->pubs[i].done = true;
        s->pubs[i].status = rc;
        s->n_done++;
      }
    pthread_mutex_unlock(&s->pub_mu);
  }
  js_pub_wait(s);
  pthread_mutex_lock(&s->pub_mu);
  for (size_t i = 0; i < n; i++)
    if (want[i]) {
      res[i] = s->pubs[i];
      res[i].msg_id = NULL;
    }
  pthread_mutex_unlock(&s->pub_mu);
  js_pub_end(s);
  return rc;
}

static void accept_publish(js_store_t *s, m5_store_job_t *job, const char *hash, const char *key,
                           claim_t *c);

/* Room for need more bytes in the stream of fam (opts.js.max_bytes)? The stream's size is read
 * again once a second, and whenever the estimate says no: other nodes publish too, so the bound
 * may be passed by what the nodes publish within a second, never without bound. */
static bool bytes_room(js_store_t *s, int fam, uint64_t need) {
  if (s->max_bytes == UINT64_MAX) return true;
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  int64_t now = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
  bool fresh = s->bytes_at_ms[fam] && now - s->bytes_at_ms[fam] < 1000;
  if (fresh && s->bytes[fam] + need <= s->max_bytes) return true;
  char err[256];
  uint64_t b = 0;
  if (m5_js_stream_bytes(s->c, s->stream[fam], &b, err, sizeof err) == M5_OK) {
    s->bytes[fam] = b;
    s->bytes_at_ms[fam] = now;
  } else {
    M5_LOGW("store", "jetstream: stream size: %s", err); /* the estimate stands */
  }
  return s->bytes[fam] + need <= s->max_bytes;
}

/* Removes the claim of a job that wrote nothing (its deliveries deleted already): M5_EAGAIN
 * when another accept took it over (its outcome is the one to learn). */
static int claim_release(js_store_t *s, const char *key, const claim_t *c) {
  char err[256];
  int rc = m5_js_kv_delete(s->dedup, key, c->rev, err, sizeof err);
  if (rc && rc != M5_EAGAIN) /* left pending: a retry takes it over once stale */
    M5_LOGW("store", "jetstream: dedup claim release: %s", err);
  return rc == M5_EAGAIN ? M5_EAGAIN : M5_OK;
}

static void accept_inner(js_store_t *s, m5_store_job_t *job, bool check) {
  if (job->n_rcpts > M5_STORE_RCPT_MAX || (job->n_rcpts && !job->rcpts) ||
      job->msg.payload_len > M5_STORE_PAYLOAD_MAX || (job->msg.payload_len && !job->msg.payload)) {
    job->status = M5_EINVAL;
    return;
  }
  for (size_t i = 0; i < job->n_rcpts; i++) {
    job->rcpts[i].status = M5_STORE_ACCEPTED;
    job->rcpts[i].id = 0;
  }
  char hash[65] = "", key[80] = "";
  claim_t claim = {0};
  bool dedup = job->dedup_id[0] != 0;
  if (dedup) {
    dedup_hash(job, hash);
    snprintf(key, sizeof key, "d.%s", hash);
    bool dup = false;
    int rc = claim_key(s, job, key, &claim, &dup);
    if (rc) {
      job->status = fail_status(rc);
      return;
    }
    if (dup) {
      job->outcome = M5_STORE_DUPLICATE;
      js_stat_add(s, &s->st.duplicates, 1);
      return;
    }
  } else {
    s->nonce++;
  }
  js_ticket_use_t tu = {0};
  size_t n_given = job->n_rcpts;
  if (check) {
    int rc = js_ticket_check(s, job, &tu);
    if (rc) {
      if (dedup && claim_release(s, key, &claim)) rc = M5_EAGAIN;
      job->status = fail_status(rc);
      return;
    }
    if (job->discarded) job->n_rcpts = 0; /* only the dedup entry is written */
  }
  accept_publish(s, job, dedup ? hash : NULL, dedup ? key : NULL, &claim);
  job->n_rcpts = n_given;
  if (tu.hit && (job->status || job->outcome != M5_STORE_ACCEPTED)) js_ticket_restore(s, &tu);
  if (!job->status && job->outcome == M5_STORE_ACCEPTED && !check) js_tickets_put(s, job);
}

/* Deletes what a job that does not keep its deliveries stored (res[i] M5_OK), then removes its
 * claim. own[i]: published under this job's own Msg-Ids (round 1, or no dedup key): no other
 * accept can have adopted it. The rest (round 0) may be adopted by a taker of the claim, so
 * it is deleted only while the claim is ours (renewed when old). M5_EAGAIN: taken over. */
static int accept_undo(js_store_t *s, int fam, const js_pub_t *res, const bool *own, size_t n,
                       const char *key, claim_t *c) {
  int held = key ? claim_hold(s, key, c) : M5_OK;
  for (size_t i = 0; res && i < n; i++)
    if (res[i].status == M5_OK && (own[i] || held == M5_OK)) delete_seq(s, fam, res[i].seq);
  if (!key || held == M5_EAGAIN) return held;
  /* not known to be ours: round 0 stays, and so does the claim, for a taker to adopt */
  if (held) return M5_OK;
  return claim_release(s, key, c);
}

/* ACCEPT's publishes and final dedup entry (after the claim and the ticket check). hash and
 * key: the dedup key's, NULL without one. */
static void accept_publish(js_store_t *s, m5_store_job_t *job, const char *hash, const char *key,
                           claim_t *c) {
  job->msg.accepted_at_ms = js_now_ms(s);
  bool report = !strcmp(job->msg.app_id, M5_STORE_REPORT_APP);
  int fam = report ? JS_FAM_R : JS_FAM_Q;
  size_t n = job->n_rcpts;
  js_pub_t *res = calloc(n ? n : 1, sizeof *res);
  bool *want = calloc(n ? n : 1, sizeof *want);
  bool *own = calloc(n ? n : 1, sizeof *own);
  int fail = !res || !want || !own ? M5_ENOMEM : 0;
  for (size_t i = 0; i < n && !fail; i++) {
    want[i] = true;
    own[i] = !hash;
  }
  /* what this accept adds to the stream: n records with their subjects and Msg-Ids */
  uint64_t need = (uint64_t)n * (job->msg.payload_len + 1024);
  bool bytes_full = !fail && n && !bytes_room(s, fam, need);
  for (size_t i = 0; bytes_full && i < n; i++)
    res[i].status = M5_EFULL; /* nothing published: the stream is at its byte bound */
  /* Round 0 with the Msg-Ids of the dedup key. A duplicate answer names the message of an
   * earlier attempt with the same key (a retry after a timeout, or a dead accept's claim taken
   * over): kept while it is there; one that was refused and deleted, or concluded, is gone:
   * such recipients are published again in round 1 under ids of this job's own. */
  for (int round = 0; round < 2 && !fail && !bytes_full; round++) {
    bool any = false;
    for (size_t i = 0; i < n; i++)
      any |= want[i];
    if (!any) break;
    if ((fail = publish_round(s, job, fam, want, round ? s->nonce++ : 0, hash, res))) break;
    for (size_t i = 0; i < n; i++) {
      if (round && want[i]) own[i] = true;
      want[i] = false;
      if (round || res[i].status != M5_OK || !res[i].duplicate || fail) continue;
      m5_js_msg_t m;
      char subj[JS_SUBJ_MAX], err[256];
      js_subject(s, fam, job->rcpts[i].node, &job->rcpts[i].addr, subj, sizeof subj);
      int rc = m5_js_get_msg(s->c, s->stream[fam], res[i].seq, &m, err, sizeof err);
      if (rc == M5_ENOENT || (rc == M5_OK && strcmp(m.subject, subj))) want[i] = true;
      if (rc == M5_OK) m5_js_msg_free(&m);
      if (rc && rc != M5_ENOENT) { /* not known to be there: not to be answered as stored */
        M5_LOGW("store", "jetstream: accept: checking an earlier publish: %s", err);
        fail = rc;
      }
    }
  }
  free(want);
  /* the outcome of each recipient */
  bool queue_full = false, store_full = bytes_full;
  for (size_t i = 0; i < n && !fail; i++) {
    js_pub_t *p = &res[i];
    if (p->status == M5_EFULL && p->subject_full) {
      job->rcpts[i].status = M5_STORE_QUEUE_FULL;
      queue_full = true;
    } else if (p->status == M5_EFULL) {
      store_full = true;
    } else if (p->status != M5_OK) {
      fail = p->status;
    }
  }
  m5_store_outcome_t refused = M5_STORE_ACCEPTED;
  if (fail)
    ;
  else if (store_full)
    refused = M5_STORE_STORE_FULL;
  else if (queue_full && !job->partial)
    refused = M5_STORE_QUEUE_FULL;
#ifdef M5_TEST_HOOKS
  if (key && !fail && refused == M5_STORE_ACCEPTED && m5_store_js_test_hook &&
      m5_store_js_test_hook("accept-published", &s->base, job)) {
    free(res);
    free(own);
    job->status = M5_EIO; /* abandoned as by a crash: the claim stays pending */
    return;
  }
#endif
  if (fail || refused != M5_STORE_ACCEPTED) {
    /* nothing of a refused or failed message stays: delete what this job stored */
    int rc = accept_undo(s, fam, res, own, n, key, c);
    free(res);
    free(own);
    if (rc == M5_EAGAIN) { /* another accept took the key over: its outcome is the answer */
      job->status = M5_EAGAIN;
      return;
    }
    if (fail) {
      job->status = fail_status(fail);
      return;
    }
    for (size_t i = 0; i < n; i++)
      job->rcpts[i].id = 0;
    job->outcome = refused;
    js_stat_add(
        s, refused == M5_STORE_STORE_FULL ? &s->st.refused_store_full : &s->st.refused_queue_full,
        1);
    return;
  }
  s->bytes[fam] += need;
  /* the claim becomes the final ack, by compare-and-set: only then is the message accepted */
  if (key) {
    char val[sizeof job->ack.status + sizeof job->ack.failure_cause + 2];
    int vl = snprintf(val, sizeof val, "%s\n%s", job->ack.status, job->ack.failure_cause);
    char err[256];
    int rc =
        m5_js_kv_update(s->dedup, key, val, (size_t)(vl > 0 ? vl : 0), c->rev, NULL, err, sizeof err);
    if (rc == M5_EAGAIN) { /* taken over (we were slower than the stale bound) or removed */
      for (size_t i = 0; i < n; i++) /* only what no taker can have adopted */
        if (res[i].status == M5_OK && own[i]) delete_seq(s, fam, res[i].seq);
      free(res);
      free(own);
      for (size_t i = 0; i < n; i++)
        job->rcpts[i].id = 0;
      uint8_t *v = NULL;
      size_t len = 0;
      if (m5_js_kv_get(s->dedup, key, &v, &len, NULL, err, sizeof err) == M5_OK &&
          (len < sizeof CLAIM_TAG - 1 || memcmp(v, CLAIM_TAG, sizeof CLAIM_TAG - 1))) {
        ack_parse(v, len, &job->orig_ack);
        job->outcome = M5_STORE_DUPLICATE;
        js_stat_add(s, &s->st.duplicates, 1);
      } else {
        job->status = M5_EAGAIN;
      }
      free(v);
      return;
    }
    if (rc) { /* stored, the ack perhaps not: the claim stays; the sender's retry learns it */
      M5_LOGW("store", "jetstream: dedup final ack: %s", err);
      free(res);
      free(own);
      job->status = fail_status(rc);
      return;
    }
  }
  free(own);
  /* into the index: what went to this node's subjects */
  for (size_t i = 0; i < job->n_rcpts; i++) {
    m5_store_rcpt_t *r = &job->rcpts[i];
    js_pub_t *p = &res[i];
    if (p->status != M5_OK) continue;
    r->id = js_id(p->seq, fam);
    if (r->node[0] && strcmp(r->node, s->node)) continue;
    /* a duplicate PubAck (a retry of an accept that crashed) names a message the consumer may
     * have brought, and this node concluded, already */
    if (js_index_get(s, r->id) || (p->duplicate && p->seq <= s->cons_seen[fam])) continue;
    uint8_t *rec = NULL;
    size_t rl = 0;
    if (js_rec_encode(&job->msg, &r->addr, r->gen, r->next_attempt_ms, &rec, &rl)) continue;
    js_entry_t *e = js_entry_new(rec, rl, p->seq, fam);
    free(rec);
    if (!e) continue;
    e->in_flight = r->in_flight;
    js_index_add(s, e);
  }
  free(res);
  job->outcome = M5_STORE_ACCEPTED;
  js_stat_add(s, &s->st.accepted, 1);
}

static void do_accept(js_store_t *s, m5_store_job_t *job) {
  if (job->ticket_check && job->n_rcpts != 1) {
    job->status = M5_EINVAL;
    return;
  }
  accept_inner(s, job, job->ticket_check);
}

/* ---------------------------------------------------------------- conclusions */

static int item_push(m5_store_job_t *job, const m5_store_delivery_t *d) {
  m5_store_delivery_t *n = realloc(job->items, (job->n_items + 1) * sizeof *n);
  if (!n) return M5_ENOMEM;
  job->items = n;
  n[job->n_items++] = *d;
  return M5_OK;
}

/* Publishes the failure report of d (to its originator, on this node's report subjects; the
 * originator's DUE moves it to wherever it registers) and indexes it. 0 with d->report_id set,
 * or left 0 when none is due or the originator's report bound is reached. */
static int write_report(js_store_t *s, m5_store_job_t *job, m5_store_delivery_t *d, bool report,
                        bool *dup) {
  *dup = false;
  d->report_id = 0;
  if (report || !d->msg.deliv_st_req ||
      (strcmp(d->msg.ori.type, "UE") && strcmp(d->msg.ori.type, "AS")))
    return M5_OK;
  m5_store_delivery_t rep;
  int64_t now = js_now_ms(s);
  int rc = m5_store_report_of(d, now / 1000 + s->o.report_ttl_s, &rep);
  if (rc) return rc;
  rep.msg.accepted_at_ms = now;
  char subj[JS_SUBJ_MAX], mid[JS_NAME_MAX + 40];
  uint8_t *rec = NULL;
  size_t rl = 0;
  rc = js_subject(s, JS_FAM_R, NULL, &rep.rcpt, subj, sizeof subj);
  if (!rc) rc = js_rec_encode(&rep.msg, &rep.rcpt, d->msg.ori_gen, job->next_attempt_ms, &rec, &rl);
  free(rep.msg.payload);
  if (rc) return rc;
  /* this node's report: another node concluding the same delivery at once (a REBIND) writes
   * its own, and the one whose delete then finds the delivery gone deletes its own */
  snprintf(mid, sizeof mid, "rep/%s/%llu/0", s->node, (unsigned long long)d->id);
  if ((rc = js_pub_begin(s, 1))) {
    free(rec);
    return rc;
  }
  js_pub(s, 0, subj, rec, rl, mid);
  js_pub_wait(s);
  js_pub_t p = s->pubs[0];
  js_pub_end(s);
  if (p.status == M5_EFULL) { /* the originator's reports are at their bound */
    free(rec);
    js_stat_add(s, &s->st.reports_dropped, 1);
    return M5_OK;
  }
  if (p.status != M5_OK) {
    free(rec);
    return fail_status(p.status);
  }
  d->report_id = js_id(p.seq, JS_FAM_R);
  *dup = p.duplicate;
  d->report_gen = d->msg.ori_gen;
  if (!js_index_get(s, d->report_id) && !(p.duplicate && p.seq <= s->cons_seen[JS_FAM_R])) {
    js_entry_t *e = js_entry_new(rec, rl, p.seq, JS_FAM_R);
    if (e) js_index_add(s, e);
  }
  free(rec);
  js_stat_add(s, &s->st.reports, 1);
  return M5_OK;
}

/* Concludes the delivery d (filled from its record: id, rcpt, msg) at (fam, seq): the failure
 * report first (unless DELIVERED, or d is itself a report), then the delete. M5_ENOENT:
 * someone else concluded or moved it (the report written for it is deleted again). */
static int conclude_at(js_store_t *s, m5_store_job_t *job, int fam, uint64_t seq, bool report,
                       m5_deliv_state_t state, const char *cause, m5_store_delivery_t *d) {
  int rc;
  d->state = state;
  snprintf(d->failure_cause, sizeof d->failure_cause, "%s", cause ? cause : "");
  d->report_id = 0;
  bool dup = false;
  if (state != M5_DELIV_DELIVERED && (rc = write_report(s, job, d, report, &dup))) return rc;
#ifdef M5_TEST_HOOKS
  if (d->report_id && m5_store_js_test_hook)
    m5_store_js_test_hook("conclude-reported", &s->base, job);
#endif
  char err[256];
  rc = m5_js_delete_msg(s->c, s->stream[fam], seq, err, sizeof err);
  if (rc == M5_ENOENT) { /* concluded or moved by someone else: not ours to report */
    if (d->report_id && !dup) { /* (a duplicate: this node's from an earlier attempt) */
      js_entry_t *re = js_index_get(s, d->report_id);
      if (re) js_index_remove(s, re);
      delete_seq(s, JS_FAM_R, d->report_id >> 1);
      d->report_id = 0;
    }
    return M5_ENOENT;
  }
  if (rc) {
    M5_LOGW("store", "jetstream: conclude: %s", err);
    return fail_status(rc);
  }
  return M5_OK;
}

/* Concludes e: (report,) delete, out of the index. M5_ENOENT: someone else has it now. */
int js_conclude(js_store_t *s, m5_store_job_t *job, js_entry_t *e, m5_deliv_state_t state,
                const char *cause, m5_store_delivery_t *d) {
  int rc = js_entry_item(e, d);
  if (rc) return rc;
  js_rec_t r;
  js_rec_decode(e->rec, e->rec_len, &r);
  rc = conclude_at(s, job, e->fam, e->seq, r.report, state, cause, d);
  if (rc == M5_OK || rc == M5_ENOENT) js_index_remove(s, e);
  return rc;
}

/* Concludes a delivery on another node's subjects (m: its message as read): any node may, the
 * delete decides; the owner's index drops it when it finds the message gone. */
int js_conclude_msg(js_store_t *s, m5_store_job_t *job, int fam, const m5_js_msg_t *m,
                    m5_deliv_state_t state, const char *cause, m5_store_delivery_t *d) {
  js_rec_t r;
  if (js_rec_decode(m->data, m->len, &r)) return M5_EINVAL;
  *d = r.d;
  d->msg.payload = NULL;
  d->msg.payload_len = 0;
  d->id = js_id(m->seq, fam);
  d->attempts = 0;
  return conclude_at(s, job, fam, m->seq, r.report, state, cause, d);
}

static void do_mark(js_store_t *s, m5_store_job_t *job) {
  js_entry_t *e = js_index_get(s, job->id);
  if (!e) {
    job->status = M5_ENOENT;
    return;
  }
  bool delivered = job->op == M5_STORE_MARK_DELIVERED;
  m5_store_delivery_t d;
  int rc = js_conclude(s, job, e, delivered ? M5_DELIV_DELIVERED : M5_DELIV_FAILED,
                       delivered ? "" : job->cause, &d);
  if (!rc) rc = item_push(job, &d);
  if (rc) {
    job->status = rc;
    return;
  }
  js_stat_add(s, delivered ? &s->st.delivered : &s->st.failed, 1);
}

static void do_reschedule(js_store_t *s, m5_store_job_t *job) {
  js_entry_t *e = js_index_get(s, job->id);
  if (!e) {
    job->status = M5_ENOENT;
    return;
  }
  e->next_attempt_ms = job->next_attempt_ms;
  e->attempts = job->attempts;
  e->in_flight = false;
}

/* ---------------------------------------------------------------- listings */

int js_el_push(js_elist_t *l, js_entry_t *e) {
  if (l->n == l->cap) {
    size_t cap = l->cap ? 2 * l->cap : 64;
    js_entry_t **nv = realloc(l->v, cap * sizeof *nv);
    if (!nv) return M5_ENOMEM;
    l->v = nv;
    l->cap = cap;
  }
  l->v[l->n++] = e;
  return M5_OK;
}

static int by_queue_order(const void *a, const void *b) {
  const js_entry_t *x = *(js_entry_t *const *)a, *y = *(js_entry_t *const *)b;
  if (x->prio != y->prio) return x->prio > y->prio ? -1 : 1;
  uint64_t ix = js_id(x->seq, x->fam), iy = js_id(y->seq, y->fam);
  return ix < iy ? -1 : ix > iy;
}

static int by_next_attempt(const void *a, const void *b) {
  const js_entry_t *x = *(js_entry_t *const *)a, *y = *(js_entry_t *const *)b;
  if (x->next_attempt_ms != y->next_attempt_ms)
    return x->next_attempt_ms < y->next_attempt_ms ? -1 : 1;
  return x->seq < y->seq ? -1 : x->seq > y->seq;
}

static int by_expiry(const void *a, const void *b) {
  const js_entry_t *x = *(js_entry_t *const *)a, *y = *(js_entry_t *const *)b;
  if (x->expr_time != y->expr_time) return x->expr_time < y->expr_time ? -1 : 1;
  return x->seq < y->seq ? -1 : x->seq > y->seq;
}

static size_t cap_limit(size_t limit) {
  return limit && limit < M5_STORE_LIST_MAX ? limit : M5_STORE_LIST_MAX;
}

/* Items with their payloads, read back by sequence, for the first `limit` of l. A delivery
 * whose message is gone (moved or concluded by another node) leaves the index. */
static void list_with_payloads(js_store_t *s, m5_store_job_t *job, js_elist_t *l, size_t limit) {
  for (size_t i = 0; i < l->n && job->n_items < limit; i++) {
    js_entry_t *e = l->v[i];
    m5_js_msg_t m;
    char err[256];
    int rc = m5_js_get_msg(s->c, s->stream[e->fam], e->seq, &m, err, sizeof err);
    if (rc == M5_ENOENT) {
      js_index_remove(s, e);
      continue;
    }
    if (rc) {
      M5_LOGW("store", "jetstream: read back: %s", err);
      job->status = fail_status(rc);
      return;
    }
    m5_store_delivery_t d;
    js_rec_t r;
    if (js_entry_item(e, &d) || js_rec_decode(m.data, m.len, &r)) {
      m5_js_msg_free(&m);
      continue;
    }
    if (r.d.msg.payload_len) {
      d.msg.payload = malloc(r.d.msg.payload_len);
      if (!d.msg.payload) {
        m5_js_msg_free(&m);
        job->status = M5_ENOMEM;
        return;
      }
      memcpy(d.msg.payload, r.d.msg.payload, r.d.msg.payload_len);
      d.msg.payload_len = r.d.msg.payload_len;
    }
    m5_js_msg_free(&m);
    if (item_push(job, &d)) {
      free(d.msg.payload);
      job->status = M5_ENOMEM;
      return;
    }
  }
}

/* ---- the move of DUE(rcpt): rcpt's deliveries on other nodes' subjects come here ---- */

typedef struct {
  js_store_t *s;
  char (*subjects)[JS_SUBJ_MAX];
  size_t n, cap;
} subj_list_t;

static void on_subject(void *arg, const char *subject, uint64_t msgs) {
  subj_list_t *l = arg;
  (void)msgs;
  /* P.q.<node>.<type>.<enc>: skip this node's own */
  size_t pl = strlen(l->s->prefix) + 3, nl = strlen(l->s->node);
  if (strlen(subject) > pl + nl && !strncmp(subject + pl, l->s->node, nl) &&
      subject[pl + nl] == '.')
    return;
  if (l->n == l->cap) {
    size_t cap = l->cap ? 2 * l->cap : 4;
    void *nv = realloc(l->subjects, cap * sizeof *l->subjects);
    if (!nv) return;
    l->subjects = nv;
    l->cap = cap;
  }
  snprintf(l->subjects[l->n++], JS_SUBJ_MAX, "%s", subject);
}

static int by_prio_seq(const void *a, const void *b) {
  const js_other_t *x = a, *y = b;
  if (x->prio != y->prio) return x->prio > y->prio ? -1 : 1;
  return x->m.seq < y->m.seq ? -1 : x->m.seq > y->m.seq;
}

size_t js_read_others(js_store_t *s, const m5_msg_addr_t *rcpt, int fam, js_other_t **out) {
  char filter[JS_SUBJ_MAX], err[256];
  *out = NULL;
  if (js_rcpt_filter(s, fam, rcpt, filter, sizeof filter)) return 0;
  subj_list_t sl = {.s = s};
  if (m5_js_subjects(s->c, s->stream[fam], filter, on_subject, &sl, err, sizeof err)) {
    M5_LOGW("store", "jetstream: deliveries on other nodes: %s", err);
    free(sl.subjects);
    return 0;
  }
  js_other_t *mv = NULL;
  size_t n = 0, cap = 0;
  for (size_t i = 0; i < sl.n; i++) {
    uint64_t from = 1;
    for (;;) {
      m5_js_msg_t m;
      if (m5_js_next_by_subject(s->c, s->stream[fam], sl.subjects[i], from, &m, err, sizeof err))
        break;
      js_rec_t r;
      from = m.seq + 1;
      if (js_rec_decode(m.data, m.len, &r)) {
        m5_js_msg_free(&m);
        continue;
      }
      if (n == cap) {
        size_t ncap = cap ? 2 * cap : 16;
        js_other_t *nv = realloc(mv, ncap * sizeof *mv);
        if (!nv) { /* what is not read stays where it is */
          m5_js_msg_free(&m);
          break;
        }
        mv = nv;
        cap = ncap;
      }
      mv[n].m = m;
      mv[n].rcpt_gen = r.d.rcpt_gen;
      mv[n++].prio = r.d.msg.prio;
    }
  }
  free(sl.subjects);
  if (n) qsort(mv, n, sizeof *mv, by_prio_seq);
  *out = mv;
  return n;
}

void js_move_here(js_store_t *s, m5_store_job_t *job, const m5_msg_addr_t *rcpt, int fam) {
  char err[256];
  js_other_t *mv = NULL;
  size_t n = js_read_others(s, rcpt, fam, &mv);
#ifdef M5_TEST_HOOKS
  if (n && m5_store_js_test_hook) m5_store_js_test_hook("move-listed", &s->base, job);
#endif
  char subj[JS_SUBJ_MAX];
  bool full = js_subject(s, fam, NULL, rcpt, subj, sizeof subj) != M5_OK;
  for (size_t i = 0; i < n; i++) {
    js_other_t *x = &mv[i];
    if (!full) {
      /* this node's copy: two nodes moving the same delivery at once make two copies, and the
       * one whose delete of the old finds it gone deletes its own (never the other's) */
      char mid[JS_NAME_MAX + 40];
      snprintf(mid, sizeof mid, "mv/%s/%llu/0", s->node, (unsigned long long)js_id(x->m.seq, fam));
      if (js_pub_begin(s, 1) == M5_OK) {
        js_pub(s, 0, subj, x->m.data, x->m.len, mid);
        js_pub_wait(s);
        js_pub_t p = s->pubs[0];
        js_pub_end(s);
        if (p.status == M5_OK) {
          int rc = m5_js_delete_msg(s->c, s->stream[fam], x->m.seq, err, sizeof err);
          if (rc == M5_ENOENT && !p.duplicate) { /* concluded or moved meanwhile: the copy goes */
            delete_seq(s, fam, p.seq);
          } else if (rc == M5_OK || p.duplicate) {
            /* (a duplicate is this node's copy of an earlier move whose delete was not known
             * to succeed: it stays, pushed twice at worst) */
            if (!js_index_get(s, js_id(p.seq, fam)) && p.seq > s->cons_seen[fam]) {
              js_entry_t *e = js_entry_new(x->m.data, x->m.len, p.seq, fam);
              if (e) {
                e->next_attempt_ms = 0; /* due at once here */
                js_index_add(s, e);
              }
            }
          }
        } else {
          full = true; /* this node's queue is full (or the cluster fails): the rest stays */
        }
      }
    }
    m5_js_msg_free(&x->m);
  }
  free(mv);
}

static void do_due(js_store_t *s, m5_store_job_t *job) {
  /* A UE's session is on one node: its deliveries come there. An AS (or a gateway) may be
   * pushed to from any node, which may be POSTing the ones on its subjects: they stay. */
  if (!strcmp(job->rcpt.type, "UE"))
    for (int f = 0; f < 2; f++)
      js_move_here(s, job, &job->rcpt, f);
  js_drain_inbox(s);
  js_rcpt_t *rc = js_index_rcpt(s, &job->rcpt);
  js_elist_t l = {0};
  for (js_entry_t *e = rc ? rc->head : NULL; e; e = e->next)
    if (!e->in_flight && js_el_push(&l, e)) {
      job->status = M5_ENOMEM;
      free(l.v);
      return;
    }
  if (l.n) qsort(l.v, l.n, sizeof *l.v, by_queue_order);
  list_with_payloads(s, job, &l, cap_limit(job->limit));
  free(l.v);
}

typedef struct {
  js_elist_t *l;
  m5_store_op_t op;
  int64_t now_ms;
  int rc;
} scan_t;

static void scan_one(const void *key, size_t klen, void *val, void *arg) {
  (void)key;
  (void)klen;
  scan_t *sc = arg;
  js_entry_t *e = val;
  bool take = false;
  switch (sc->op) {
  case M5_STORE_DUE_ANY:
    take = !e->in_flight && e->next_attempt_ms <= sc->now_ms;
    break;
  case M5_STORE_EXPIRE:
    take = !e->in_flight && e->expr_time > 0 && e->expr_time * 1000 <= sc->now_ms;
    break;
  case M5_STORE_REQUEUE_STALE:
    take = e->in_flight && e->next_attempt_ms <= sc->now_ms;
    break;
  default:
    break;
  }
  if (take && js_el_push(sc->l, e)) sc->rc = M5_ENOMEM;
}

static int scan(js_store_t *s, m5_store_op_t op, int64_t now, js_elist_t *l) {
  scan_t sc = {l, op, now, 0};
  m5_hmap_foreach(s->by_id, scan_one, &sc);
  return sc.rc;
}

static void do_due_any(js_store_t *s, m5_store_job_t *job) {
  js_elist_t l = {0};
  if ((job->status = scan(s, M5_STORE_DUE_ANY, job->now_ms, &l)) == 0) {
    if (l.n) qsort(l.v, l.n, sizeof *l.v, by_next_attempt);
    list_with_payloads(s, job, &l, cap_limit(job->limit));
  }
  free(l.v);
}

static void do_expire(js_store_t *s, m5_store_job_t *job) {
  js_elist_t l = {0};
  if ((job->status = scan(s, M5_STORE_EXPIRE, job->now_ms, &l)) == 0) {
    if (l.n) qsort(l.v, l.n, sizeof *l.v, by_expiry);
    size_t limit = cap_limit(job->limit);
    for (size_t i = 0; i < l.n && job->n_items < limit; i++) {
      m5_store_delivery_t d;
      int rc = js_conclude(s, job, l.v[i], M5_DELIV_EXPIRED, M5_CAUSE_EXPIRED, &d);
      if (rc == M5_ENOENT) continue;
      if (rc || (rc = item_push(job, &d))) {
        job->status = rc;
        break;
      }
      js_stat_add(s, &s->st.expired, 1);
    }
  }
  free(l.v);
}

static void do_requeue_stale(js_store_t *s, m5_store_job_t *job) {
  js_elist_t l = {0};
  if ((job->status = scan(s, M5_STORE_REQUEUE_STALE, job->now_ms, &l)) == 0) {
    for (size_t i = 0; i < l.n; i++)
      l.v[i]->in_flight = false;
    job->pending = l.n;
    js_stat_add(s, &s->st.requeued, l.n);
  }
  free(l.v);
}

static void do_counts(js_store_t *s, m5_store_job_t *job) {
  js_rcpt_t *rc = js_index_rcpt(s, &job->rcpt);
  job->pending = 0; /* messages: the reports have their own bound */
  for (js_entry_t *e = rc ? rc->head : NULL; e; e = e->next)
    job->pending += e->fam == JS_FAM_Q;
  pthread_mutex_lock(&s->st_mu);
  s->st.queued = s->st.messages = s->n_entries;
  job->stats = s->st;
  pthread_mutex_unlock(&s->st_mu);
  job->stats.jetstream = 1;
  job->stats.js_connected = m5_js_client_connected(s->c);
}

void js_run_job(js_store_t *s, m5_store_job_t *job) {
  job->status = 0;
  switch (job->op) {
  case M5_STORE_ACCEPT:
    return do_accept(s, job);
  case M5_STORE_MARK_DELIVERED:
  case M5_STORE_MARK_FAILED:
    return do_mark(s, job);
  case M5_STORE_RESCHEDULE:
    return do_reschedule(s, job);
  case M5_STORE_DUE:
    return do_due(s, job);
  case M5_STORE_DUE_ANY:
    return do_due_any(s, job);
  case M5_STORE_EXPIRE:
    return do_expire(s, job);
  case M5_STORE_COUNTS:
    return do_counts(s, job);
  case M5_STORE_REQUEUE_STALE:
    return do_requeue_stale(s, job);
  case M5_STORE_REBIND:
    return js_rebind(s, job);
  case M5_STORE_TOPIC_SUB:
  case M5_STORE_TOPIC_UNSUB:
  case M5_STORE_TOPIC_SUBSCRIBERS:
    return unsupported(job, "TOPIC_*");
  case M5_STORE_GROUP_SWEEP:
    return js_group_sweep(s, job);
  }
  job->status = M5_EINVAL;
}
