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
    /* A claim of this node is never a live accept's: this node's accepts run one at a time on
     * this thread, so it is what an earlier accept left behind (its requests failed or timed
     * out while the cluster was unreachable, and a buffered create or a failed removal left it
     * pending), or this node's before a restart: taken over at once, as a stale one. The
     * pipelined accepts keep this true: two jobs of one key never share a batch, and a batch
     * has ended (each job answered) before the next one claims. */
    const char *who = (const char *)v + sizeof CLAIM_TAG - 1;
    size_t nl = strlen(s->node);
    bool own = sp && (size_t)(sp - who) == nl && !memcmp(who, s->node, nl);
    free(v);
    if (!own && now - at < claim_stale_ms(s)) return M5_EAGAIN; /* another accept is at work */
    rc = m5_js_kv_update(s->dedup, key, val, (size_t)vl, rev, &c->rev, err, sizeof err);
    if (rc == M5_OK) {
      M5_LOGI("store", "jetstream: took over a claim of %lld ms ago (%s)", now - at,
              own ? "this node's, left by a failed accept" : "a dead accept's");
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

/* The per-originator quotas' two calls (js_quota.c), on both paths below (one accept alone,
 * several pipelined): the check before the claim (generations, quotas: it answers a job it
 * refuses, and that accept then writes nothing) and the charge once the message is accepted
 * (after its final ack: the dedup entry, claimed at revision dedup_rev). */
static int quota_check(js_store_t *s, m5_store_job_t *job) {
  return js_quota_check(s, job);
}

static void quota_charge(js_store_t *s, m5_store_job_t *job, uint64_t dedup_rev) {
  js_quota_charge(s, job, dedup_rev);
}

/* One accept from its claim to its answer. */
typedef struct {
  m5_store_job_t *job;
  const char *hash, *key; /* the dedup key's; NULL without one */
  claim_t *c;
  uint64_t nonce; /* the Msg-Ids of a job without a dedup key (acc/<node>/<nonce>.<tag>/<i>) */
  int fam;
  size_t n;
  uint64_t need; /* what it adds to the stream: n records with their subjects and Msg-Ids */
  js_pub_t *res; /* each recipient's publish */
  bool *want;    /* to publish in the next round */
  bool *own;     /* published under this job's own Msg-Ids: no other accept can adopt it */
  int fail;
  bool bytes_full;
} acc_t;

static void acc_free(acc_t *a) {
  free(a->res);
  free(a->want);
  free(a->own);
  a->res = NULL;
  a->want = a->own = NULL;
}

static void pub_skip(js_store_t *s, size_t i) {
  pthread_mutex_lock(&s->pub_mu);
  if (!s->pubs[i].done) {
    s->pubs[i].done = true; /* not part of this round */
    s->n_done++;
  }
  pthread_mutex_unlock(&s->pub_mu);
}

/* Publishes a's recipients marked in want into slots base.. of the round begun (tag 0: the
 * Msg-Ids of the dedup key, or of the job; else fresh ones). */
static int send_round(js_store_t *s, acc_t *a, uint64_t tag, size_t base) {
  m5_store_job_t *job = a->job;
  int rc = 0;
  for (size_t i = 0; i < a->n && !rc; i++) {
    if (!a->want[i]) {
      pub_skip(s, base + i);
      continue;
    }
    m5_store_rcpt_t *r = &job->rcpts[i];
    char subj[JS_SUBJ_MAX], mid[JS_SUBJ_MAX];
    uint8_t *rec = NULL;
    size_t rl = 0;
    if ((rc = js_subject(s, a->fam, r->node, &r->addr, subj, sizeof subj))) break;
    if (a->hash && !tag)
      snprintf(mid, sizeof mid, "acc/%s/%zu", a->hash, i);
    else
      snprintf(mid, sizeof mid, "acc/%s/%llx.%llx/%zu", s->node, (unsigned long long)a->nonce,
               (unsigned long long)tag, i);
    if ((rc = js_rec_encode(&job->msg, &r->addr, r->gen, r->next_attempt_ms, &rec, &rl))) break;
    js_pub(s, base + i, subj, rec, rl, mid); /* a failure is recorded in its slot */
    free(rec);
  }
  if (rc) { /* nothing more is sent: mark the rest so that the wait ends */
    pthread_mutex_lock(&s->pub_mu);
    for (size_t i = base; i < base + a->n; i++)
      if (!s->pubs[i].msg_id && !s->pubs[i].done) {
        s->pubs[i].done = true;
        s->pubs[i].status = rc;
        s->n_done++;
      }
    pthread_mutex_unlock(&s->pub_mu);
  }
  return rc;
}

/* The round's answers for a's recipients (slots base..) into res. */
static void take_round(js_store_t *s, acc_t *a, size_t base) {
  pthread_mutex_lock(&s->pub_mu);
  for (size_t i = 0; i < a->n; i++)
    if (a->want[i]) {
      a->res[i] = s->pubs[base + i];
      a->res[i].msg_id = NULL;
    }
  pthread_mutex_unlock(&s->pub_mu);
}

/* Publishes the recipients marked in want (one message each) and waits for all their
 * PubAcks, into res. */
static int publish_round(js_store_t *s, acc_t *a, uint64_t tag) {
  int rc = js_pub_begin(s, a->n);
  if (rc) return rc;
  rc = send_round(s, a, tag, 0);
  js_pub_wait(s);
  take_round(s, a, 0);
  js_pub_end(s);
  return rc;
}

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


static bool accept_valid(const m5_store_job_t *job) {
  return job->n_rcpts <= M5_STORE_RCPT_MAX && (!job->n_rcpts || job->rcpts) &&
         job->msg.payload_len <= M5_STORE_PAYLOAD_MAX &&
         (!job->msg.payload_len || job->msg.payload);
}

static void accept_begin(m5_store_job_t *job) {
  for (size_t i = 0; i < job->n_rcpts; i++) {
    job->rcpts[i].status = M5_STORE_ACCEPTED;
    job->rcpts[i].id = 0;
  }
  job->discarded = false;
}

static void accept_publish(js_store_t *s, m5_store_job_t *job, const char *hash, const char *key,
                           claim_t *c);

static void accept_inner(js_store_t *s, m5_store_job_t *job, bool check) {
  if (!accept_valid(job)) {
    job->status = M5_EINVAL;
    return;
  }
  accept_begin(job);
  if (quota_check(s, job)) return;
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
  quota_charge(s, job, claim.rev);
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

/* Before the publishes (after the claim and the ticket check): the byte bound. hash and key:
 * the dedup key's, NULL without one. */
static void acc_prepare(js_store_t *s, acc_t *a, m5_store_job_t *job, const char *hash,
                        const char *key, claim_t *c, uint64_t nonce) {
  memset(a, 0, sizeof *a);
  a->job = job;
  a->hash = hash;
  a->key = key;
  a->c = c;
  a->nonce = nonce;
  job->msg.accepted_at_ms = js_now_ms(s);
  a->fam = !strcmp(job->msg.app_id, M5_STORE_REPORT_APP) ? JS_FAM_R : JS_FAM_Q;
  size_t n = a->n = job->n_rcpts;
  a->res = calloc(n ? n : 1, sizeof *a->res);
  a->want = calloc(n ? n : 1, sizeof *a->want);
  a->own = calloc(n ? n : 1, sizeof *a->own);
  a->fail = !a->res || !a->want || !a->own ? M5_ENOMEM : 0;
  for (size_t i = 0; i < n && a->fail && a->res; i++) /* nothing published: nothing to undo */
    a->res[i].status = M5_ENOMEM;
  for (size_t i = 0; i < n && !a->fail; i++) {
    /* (a recipient over its originator's share, with partial, is skipped: js_quota_check) */
    a->want[i] = job->rcpts[i].status == M5_STORE_ACCEPTED;
    if (!a->want[i]) a->res[i].status = M5_ENOENT;
    a->own[i] = !hash;
  }
  a->need = (uint64_t)n * (job->msg.payload_len + 1024);
  a->bytes_full = !a->fail && n && !bytes_room(s, a->fam, a->need);
  for (size_t i = 0; a->bytes_full && i < n; i++)
    a->res[i].status = M5_EFULL; /* nothing published: the stream is at its byte bound */
}

/* A round's PubAcks are in. Round 0 was published with the Msg-Ids of the dedup key: a
 * duplicate answer names the message of an earlier attempt with the same key (a retry after a
 * timeout, or a dead accept's claim taken over): kept while it is there; one that was refused
 * and deleted, or concluded, is gone: such recipients are published again in round 1 under
 * ids of this job's own (want). */
static void acc_check(js_store_t *s, acc_t *a, int round) {
  for (size_t i = 0; i < a->n; i++) {
    if (round && a->want[i]) a->own[i] = true;
    a->want[i] = false;
    if (round || a->res[i].status != M5_OK || !a->res[i].duplicate || a->fail) continue;
    m5_js_msg_t m;
    char subj[JS_SUBJ_MAX], err[256];
    m5_store_rcpt_t *r = &a->job->rcpts[i];
    js_subject(s, a->fam, r->node, &r->addr, subj, sizeof subj);
    int rc = m5_js_get_msg(s->c, s->stream[a->fam], a->res[i].seq, &m, err, sizeof err);
    if (rc == M5_ENOENT || (rc == M5_OK && strcmp(m.subject, subj))) a->want[i] = true;
    if (rc == M5_OK) m5_js_msg_free(&m);
    if (rc && rc != M5_ENOENT) { /* not known to be there: not to be answered as stored */
      M5_LOGW("store", "jetstream: accept: checking an earlier publish: %s", err);
      a->fail = rc;
    }
  }
}

/* The rounds from `from` on (round 0: the dedup key's Msg-Ids; round 1: the gone ones). */
static void acc_rounds(js_store_t *s, acc_t *a, int from) {
  for (int round = from; round < 2 && !a->fail && !a->bytes_full; round++) {
    bool any = false;
    for (size_t i = 0; i < a->n; i++)
      any |= a->want[i];
    if (!any) break;
    if ((a->fail = publish_round(s, a, round ? s->nonce++ : 0))) break;
    acc_check(s, a, round);
  }
}

/* The accepted message into the index (what went to this node's subjects) and its answer. */
static void acc_accepted(js_store_t *s, acc_t *a) {
  m5_store_job_t *job = a->job;
  for (size_t i = 0; i < a->n; i++) {
    m5_store_rcpt_t *r = &job->rcpts[i];
    js_pub_t *p = &a->res[i];
    if (job->rcpts[i].status != M5_STORE_ACCEPTED) continue;
    if (p->status != M5_OK) continue;
    r->id = js_id(p->seq, a->fam);
    if (r->node[0] && strcmp(r->node, s->node)) continue;
    /* a duplicate PubAck (a retry of an accept that crashed) names a message the consumer may
     * have brought, and this node concluded, already */
    if (js_index_get(s, r->id) || (p->duplicate && p->seq <= s->cons_seen[a->fam])) continue;
    uint8_t *rec = NULL;
    size_t rl = 0;
    if (js_rec_encode(&job->msg, &r->addr, r->gen, r->next_attempt_ms, &rec, &rl)) continue;
    js_entry_t *e = js_entry_new(rec, rl, p->seq, a->fam);
    free(rec);
    if (!e) continue;
    e->in_flight = r->in_flight;
    js_index_add(s, e);
  }
  job->outcome = M5_STORE_ACCEPTED;
  js_stat_add(s, &s->st.accepted, 1);
}

/* After the publishes: each recipient's outcome; a refused or failed job deletes what it
 * stored and removes its claim (answered here). true: the claim is to become the final ack
 * (acc_final with its outcome); a job without a dedup key is accepted here. */
static bool acc_settle(js_store_t *s, acc_t *a) {
  m5_store_job_t *job = a->job;
  bool queue_full = false, store_full = a->bytes_full;
  int fail = a->fail;
  for (size_t i = 0; i < a->n && !fail; i++) {
    js_pub_t *p = &a->res[i];
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
  if (a->key && !fail && refused == M5_STORE_ACCEPTED && m5_store_js_test_hook &&
      m5_store_js_test_hook("accept-published", &s->base, job)) {
    job->status = M5_EIO; /* abandoned as by a crash: the claim stays pending */
    return false;
  }
#endif
  if (fail || refused != M5_STORE_ACCEPTED) {
    /* nothing of a refused or failed message stays: delete what this job stored */
    int rc = accept_undo(s, a->fam, a->res, a->own, a->n, a->key, a->c);
    if (rc == M5_EAGAIN) { /* another accept took the key over: its outcome is the answer */
      job->status = M5_EAGAIN;
      return false;
    }
    if (fail) {
      job->status = js_fail_status(fail);
      return false;
    }
    for (size_t i = 0; i < a->n; i++)
      job->rcpts[i].id = 0;
    job->outcome = refused;
    js_stat_add(
        s, refused == M5_STORE_STORE_FULL ? &s->st.refused_store_full : &s->st.refused_queue_full,
        1);
    return false;
  }
  s->bytes[a->fam] += a->need;
  if (a->key) return true;
  acc_accepted(s, a);
  return false;
}

/* The final ack kept under the dedup key: "status\ncause". */
static int ack_value(const m5_store_job_t *job, char *out, size_t size) {
  int vl = snprintf(out, size, "%s\n%s", job->ack.status, job->ack.failure_cause);
  return vl > 0 ? ((size_t)vl < size ? vl : (int)size - 1) : 0;
}

/* The compare-and-set of the claim into the final ack answered rc (err: its text): only
 * M5_OK accepts the message. */
static void acc_final(js_store_t *s, acc_t *a, int rc, const char *err) {
  m5_store_job_t *job = a->job;
  if (rc == M5_EAGAIN) { /* taken over (we were slower than the stale bound) or removed */
    for (size_t i = 0; i < a->n; i++) /* only what no taker can have adopted */
      if (a->res[i].status == M5_OK && a->own[i]) js_delete_seq(s, a->fam, a->res[i].seq);
    for (size_t i = 0; i < a->n; i++)
      job->rcpts[i].id = 0;
    uint8_t *v = NULL;
    size_t len = 0;
    char e2[256];
    if (m5_js_kv_get(s->dedup, a->key, &v, &len, NULL, e2, sizeof e2) == M5_OK &&
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
    job->status = js_fail_status(rc);
    return;
  }
  acc_accepted(s, a);
}

/* ACCEPT's publishes and final dedup entry (after the claim and the ticket check), alone. */
static void accept_publish(js_store_t *s, m5_store_job_t *job, const char *hash, const char *key,
                           claim_t *c) {
  acc_t a;
  acc_prepare(s, &a, job, hash, key, c, s->nonce);
  acc_rounds(s, &a, 0);
  if (acc_settle(s, &a)) {
    /* the claim becomes the final ack, by compare-and-set: only then is the message accepted */
    char val[sizeof job->ack.status + sizeof job->ack.failure_cause + 2], err[256];
    int vl = ack_value(job, val, sizeof val);
    int rc = m5_js_kv_update(s->dedup, key, val, (size_t)vl, c->rev, NULL, err, sizeof err);
    acc_final(s, &a, rc, err);
  }
  acc_free(&a);
}

void js_accept(js_store_t *s, m5_store_job_t *job) {
  if (job->ticket_check && job->n_rcpts != 1) {
    job->status = M5_EINVAL;
    return;
  }
  accept_inner(s, job, job->ticket_check);
}

/* ---------------------------------------------------------------- several accepts at once
 * The ACCEPTs waiting in the queue run together: one round of claims (async create-only
 * publishes to the dedup bucket), one round of delivery publishes, one round of final acks
 * (async compare-and-sets), each round awaited as a whole. Each job keeps every rule of the
 * accept alone: its final ack only after all its PubAcks, its answer only after its final
 * ack; a claim that finds the key taken (error 10071) falls back to the accept alone's claim
 * (a final ack -> DUPLICATE, a live claim -> M5_EAGAIN, a stale one taken over); refusals and
 * the rare paths (round 1, a lost compare-and-set) run job by job as alone. Two jobs of one
 * dedup key never share a batch: the second starts one after the first was answered, as two
 * accepts in a row. Report accepts (ticket_check) run alone. */

typedef struct {
  acc_t a;
  char hash[65], key[160];
  claim_t claim;
  uint64_t nonce;
  bool dedup;
  bool live;   /* not answered yet */
  bool sent;   /* in the round of publishes */
  bool fin;    /* its claim is to become the final ack */
  size_t slot; /* its first slot in the round of publishes */
  int rc;      /* a claim's or a final ack's outcome (M5_EAGAIN: a conflict) */
} pj_t;

/* Reports run alone: their ticket check, and the quota check may discard one (a report to a
 * re-bound UE), which only the accept alone handles. */
static bool batchable(const m5_store_job_t *job) {
  return job->op == M5_STORE_ACCEPT && !job->ticket_check &&
         strcmp(job->msg.app_id, M5_STORE_REPORT_APP) && accept_valid(job);
}

static bool same_key(const m5_store_job_t *x, const m5_store_job_t *y) {
  return x->dedup_id[0] && !strcmp(x->dedup_id, y->dedup_id) &&
         !strcmp(x->dedup_ori, y->dedup_ori);
}

/* A KV write's outcome from its slot: M5_OK (*rev), M5_EAGAIN (the key's revision was not the
 * one expected), or the failure: "no responders" or a lost connection (M5_EAGAIN in the slot)
 * is M5_ETIMEDOUT here, perhaps written, so that it is not taken for a conflict (the claim
 * taken over). */
static int kv_outcome(js_store_t *s, size_t i, uint64_t *rev) {
  pthread_mutex_lock(&s->pub_mu);
  js_pub_t p = s->pubs[i];
  pthread_mutex_unlock(&s->pub_mu);
  if (p.status == M5_OK) {
    *rev = p.seq;
    return M5_OK;
  }
  if (p.js_code == M5_JS_ERR_WRONG_LAST_SEQ) return M5_EAGAIN;
  return p.status == M5_EAGAIN ? M5_ETIMEDOUT : p.status ? p.status : M5_EIO;
}

/* Round 1: every claim at once. */
static void claims_round(js_store_t *s, pj_t *p, size_t m) {
  size_t k = 0;
  for (size_t j = 0; j < m; j++)
    k += p[j].live && p[j].dedup;
  if (!k) return;
  if (js_pub_begin(s, m)) {
    for (size_t j = 0; j < m; j++)
      p[j].rc = M5_ENOMEM;
  } else {
    int64_t now = js_now_ms(s);
    char val[JS_NAME_MAX + 48];
    int vl = claim_value(s, now, val, sizeof val);
    for (size_t j = 0; j < m; j++) {
      if (!p[j].live || !p[j].dedup) {
        pub_skip(s, j);
        continue;
      }
      char mid[JS_NAME_MAX + 40];
      snprintf(mid, sizeof mid, "cl/%s/%llx", s->node, (unsigned long long)s->nonce++);
      p[j].claim.at_ms = now;
      js_pub_kv(s, j, s->dedup, p[j].key, val, (size_t)vl, 0, mid);
    }
    js_pub_wait(s);
    for (size_t j = 0; j < m; j++)
      if (p[j].live && p[j].dedup) p[j].rc = kv_outcome(s, j, &p[j].claim.rev);
    js_pub_end(s);
  }
  for (size_t j = 0; j < m; j++) {
    if (!p[j].live || !p[j].dedup || p[j].rc == M5_OK) continue;
    m5_store_job_t *job = p[j].a.job;
    int rc = p[j].rc;
    bool dup = false;
    /* the key has a message (a final ack, a claim, a delete marker): the claim of one accept
     * alone tells which, and takes it when it may */
    if (rc == M5_EAGAIN) rc = claim_key(s, job, p[j].key, &p[j].claim, &dup);
    if (!rc && !dup) continue;
    p[j].live = false;
    if (rc) {
      if (p[j].rc != M5_EAGAIN) M5_LOGW("store", "jetstream: dedup claim: %s", m5_strerror(rc));
      job->status = js_fail_status(rc);
    } else {
      job->outcome = M5_STORE_DUPLICATE;
      js_stat_add(s, &s->st.duplicates, 1);
    }
  }
}

/* Round 2: every delivery of every job at once; then, job by job, round 0's duplicates
 * checked and round 1 (rare). */
static void publish_all(js_store_t *s, pj_t *p, size_t m) {
  size_t total = 0;
  for (size_t j = 0; j < m; j++) {
    if (!p[j].live) continue;
    acc_prepare(s, &p[j].a, p[j].a.job, p[j].dedup ? p[j].hash : NULL,
                p[j].dedup ? p[j].key : NULL, &p[j].claim, p[j].nonce);
    if (p[j].a.fail || p[j].a.bytes_full) continue;
    p[j].sent = true;
    p[j].slot = total;
    total += p[j].a.n;
  }
  if (!total) return;
  if (js_pub_begin(s, total)) {
    for (size_t j = 0; j < m; j++)
      if (p[j].sent) p[j].a.fail = M5_ENOMEM;
    return;
  }
  int rc[JS_BATCH_MAX];
  for (size_t j = 0; j < m; j++)
    rc[j] = p[j].sent ? send_round(s, &p[j].a, 0, p[j].slot) : 0;
  js_pub_wait(s);
  for (size_t j = 0; j < m; j++)
    if (p[j].sent) take_round(s, &p[j].a, p[j].slot);
  js_pub_end(s);
  for (size_t j = 0; j < m; j++) {
    if (!p[j].sent) continue;
    if ((p[j].a.fail = rc[j])) continue;
    acc_check(s, &p[j].a, 0);
    acc_rounds(s, &p[j].a, 1);
  }
}

/* Round 3: every final ack at once (compare-and-set on each claim's revision). */
static void final_acks(js_store_t *s, pj_t *p, size_t m) {
  size_t k = 0;
  for (size_t j = 0; j < m; j++)
    if (p[j].live && (p[j].fin = acc_settle(s, &p[j].a))) k++;
  if (!k) return;
  if (js_pub_begin(s, m)) {
    for (size_t j = 0; j < m; j++)
      p[j].rc = M5_ENOMEM;
  } else {
    for (size_t j = 0; j < m; j++) {
      if (!p[j].fin) {
        pub_skip(s, j);
        continue;
      }
      m5_store_job_t *job = p[j].a.job;
      char val[sizeof job->ack.status + sizeof job->ack.failure_cause + 2];
      char mid[JS_NAME_MAX + 40];
      int vl = ack_value(job, val, sizeof val);
      snprintf(mid, sizeof mid, "fa/%s/%llx", s->node, (unsigned long long)s->nonce++);
      js_pub_kv(s, j, s->dedup, p[j].key, val, (size_t)vl, p[j].claim.rev, mid);
    }
    js_pub_wait(s);
    for (size_t j = 0; j < m; j++) {
      uint64_t rev = 0;
      if (p[j].fin) p[j].rc = kv_outcome(s, j, &rev);
    }
    js_pub_end(s);
  }
  for (size_t j = 0; j < m; j++)
    if (p[j].fin) acc_final(s, &p[j].a, p[j].rc, m5_strerror(p[j].rc));
}

static void accept_pipelined(js_store_t *s, m5_store_job_t **g, size_t m) {
  pj_t *p = calloc(m, sizeof *p);
  if (!p) { /* no room to batch: one by one */
    for (size_t j = 0; j < m; j++)
      js_accept(s, g[j]);
    return;
  }
  for (size_t j = 0; j < m; j++) {
    m5_store_job_t *job = g[j];
    p[j].a.job = job;
    accept_begin(job);
    if (quota_check(s, job)) continue;
    p[j].live = true;
    if ((p[j].dedup = job->dedup_id[0] != 0)) {
      dedup_hash(job, p[j].hash);
      js_dedup_key(job, p[j].hash, p[j].key, sizeof p[j].key);
      p[j].nonce = s->nonce; /* (round 1's ids: acc/<node>/<nonce>.<tag>/<i>) */
    } else {
      p[j].nonce = ++s->nonce;
    }
  }
  claims_round(s, p, m);
  publish_all(s, p, m);
  final_acks(s, p, m);
  for (size_t j = 0; j < m; j++) {
    m5_store_job_t *job = g[j];
    if (p[j].live && !job->status && job->outcome == M5_STORE_ACCEPTED) {
      js_tickets_put(s, job);
      quota_charge(s, job, p[j].claim.rev);
    }
    acc_free(&p[j].a);
  }
  free(p);
}

/* Most recipients one batch publishes (bounds its slots). */
#define JS_BATCH_RCPTS 1024

void js_accept_batch(js_store_t *s, m5_store_job_t **jobs, size_t n) {
  for (size_t i = 0; i < n;) {
    size_t k = i + 1, rcpts = jobs[i]->n_rcpts;
    if (batchable(jobs[i]))
      for (; k < n && batchable(jobs[k]) && rcpts + jobs[k]->n_rcpts <= JS_BATCH_RCPTS; k++) {
        bool again = false; /* a key already in this batch: it waits for the next */
        for (size_t j = i; j < k && !again; j++)
          again = same_key(jobs[j], jobs[k]);
        if (again) break;
        rcpts += jobs[k]->n_rcpts;
      }
    uint64_t round = js_round_next(s);
    if (k - i == 1)
      js_accept(s, jobs[i]);
    else
      accept_pipelined(s, jobs + i, k - i);
    for (size_t j = i; j < k; j++)
      if (!jobs[j]->status && jobs[j]->outcome == M5_STORE_ACCEPTED) jobs[j]->commit_no = round;
    i = k;
  }
}
