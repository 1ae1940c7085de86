/* ACCEPT of m5_store on NATS JetStream (store.h; issue 13, docs/store.md "The JetStream
 * backend", "The accept and its claim"), on the store thread: the dedup claim, the awaited
 * publishes (round 0 with the dedup key's Msg-Ids, round 1 for gone ones), the byte bound, and
 * the final ack by compare-and-set; a refusal deletes what it stored and removes its claim. */
#include "js_int.h"

#include "core/err.h"
#include "core/log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

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
  job->discarded = false;
  if (js_quota_check(s, job)) return; /* generations, quotas (js_quota.c) */
  char hash[65] = "", key[160] = "";
  claim_t claim = {0};
  bool dedup = job->dedup_id[0] != 0;
  if (dedup) {
    dedup_hash(job, hash);
    js_dedup_key(job, hash, key, sizeof key);
    bool dup = false;
    int rc = claim_key(s, job, key, &claim, &dup);
    if (rc) {
      job->status = js_fail_status(rc);
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
      job->status = js_fail_status(rc);
      return;
    }
  }
  if (job->discarded) job->n_rcpts = 0; /* only the dedup entry is written */
  accept_publish(s, job, dedup ? hash : NULL, dedup ? key : NULL, &claim);
  job->n_rcpts = n_given;
  if (tu.hit && (job->status || job->outcome != M5_STORE_ACCEPTED)) js_ticket_restore(s, &tu);
  if (!job->status && job->outcome == M5_STORE_ACCEPTED && !check) js_tickets_put(s, job);
  js_quota_charge(s, job, claim.rev);
}

/* Deletes what a job that does not keep its deliveries stored (res[i] M5_OK), then removes its
 * claim. own[i]: published under this job's own Msg-Ids (round 1, or no dedup key): no other
 * accept can have adopted it. The rest (round 0) may be adopted by a taker of the claim, so
 * it is deleted only while the claim is ours (renewed when old). M5_EAGAIN: taken over. */
static int accept_undo(js_store_t *s, int fam, const js_pub_t *res, const bool *own, size_t n,
                       const char *key, claim_t *c) {
  int held = key ? claim_hold(s, key, c) : M5_OK;
  for (size_t i = 0; res && i < n; i++)
    if (res[i].status == M5_OK && (own[i] || held == M5_OK)) js_delete_seq(s, fam, res[i].seq);
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
    /* (a recipient over its originator's share, with partial, is skipped: js_quota_check) */
    want[i] = job->rcpts[i].status == M5_STORE_ACCEPTED;
    if (!want[i]) res[i].status = M5_ENOENT;
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
    if (job->rcpts[i].status != M5_STORE_ACCEPTED) continue;
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
      job->status = js_fail_status(fail);
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
        if (res[i].status == M5_OK && own[i]) js_delete_seq(s, fam, res[i].seq);
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
      job->status = js_fail_status(rc);
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

void js_accept(js_store_t *s, m5_store_job_t *job) {
  if (job->ticket_check && job->n_rcpts != 1) {
    job->status = M5_EINVAL;
    return;
  }
  accept_inner(s, job, job->ticket_check);
}
