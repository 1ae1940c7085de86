/* The jobs of m5_store on NATS JetStream (store.h ops; issue 13, docs/store.md "JetStream"),
 * run one at a time on the store thread (js_store.c), which may block on the cluster.
 *
 * The rules the jobs keep:
 *  - ACCEPT answers after every PubAck (stored on a quorum): dedup fast path (KV get), one
 *    publish per recipient (Nats-Msg-Id derived from the dedup key, so a retry is recognised),
 *    then the dedup entry (create-only: the loser of a race deletes what it wrote).
 *  - A conclusion is a delete of the delivery's message, and whoever deletes it concluded it:
 *    "not found" means another node took the delivery over (a move), so a MARK answers
 *    M5_ENOENT and EXPIRE skips it. A failure report is published (and acknowledged) before
 *    the delete; it is deleted again when the delete finds the delivery gone.
 *  - RESCHEDULE, attempts and in_flight live in the index only (not persisted).
 *  - DUE(rcpt) first moves rcpt's deliveries from other nodes' subjects to this node's. */
#include "js_int.h"

#include "core/err.h"
#include "core/log.h"
#include "crypto/kdf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SUBJ_MAX 512

static int64_t now_ms(js_store_t *s) {
  if (s->o.clock_ms) return s->o.clock_ms(s->o.clock_arg);
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void unsupported(m5_store_job_t *job, const char *what) {
  M5_LOGW("store", "jetstream: %s is not supported on the jetstream backend yet", what);
  job->status = M5_EINVAL;
}

/* The dedup key of (ori, id): hex of HMAC-SHA-256 (collision-resistant, any length, a valid
 * KV key token and Msg-Id part). */
static void hash_hex(const char *text, size_t len, char out[65]) {
  uint8_t h[32];
  static const uint8_t k[] = "m5-store-dedup";
  m5_hmac_sha256(k, sizeof k - 1, (const uint8_t *)text, len, h);
  for (int i = 0; i < 32; i++)
    snprintf(out + 2 * i, 3, "%02x", h[i]);
}

static void dedup_hash(const m5_store_job_t *job, char out[65]) {
  char buf[2 * (M5_STORE_KEY_MAX + 1) + 1];
  int n = snprintf(buf, sizeof buf, "%s\n%s", job->dedup_ori, job->dedup_id);
  hash_hex(buf, n > 0 ? (size_t)n : 0, out);
}

/* ---- report tickets (store.h ACCEPT ticket_put / ticket_check), in KV P_tickets ----
 * Key t.<hash(originator, msgId, reporter)> (typed keys "UE:ue1"), value "<ori_gen>
 * <rep_gen>", "used" once a report was stored on it. Not kept here: the per-originator bound
 * (max_tickets_per_originator), the drop at a failure or a REBIND (a ticket ends with its TTL,
 * report_window_ms). */
static void ticket_key(const m5_msg_addr_t *ori, const char *msg_id, const m5_msg_addr_t *rep,
                       char out[70]) {
  char buf[3 * (M5_MSG_ADDR_MAX + 20)];
  int n = snprintf(buf, sizeof buf, "%s:%s\n%s\n%s:%s", ori->type, ori->addr, msg_id, rep->type,
                   rep->addr);
  char h[65];
  hash_hex(buf, n > 0 ? (size_t)n : 0, h);
  snprintf(out, 70, "t.%s", h);
}

static bool reportable(const m5_msg_addr_t *a) {
  return !strcmp(a->type, "UE") || !strcmp(a->type, "AS");
}

/* One ticket per stored recipient, published together (KV puts) and awaited. */
static void tickets_put(js_store_t *s, m5_store_job_t *job) {
  const m5_store_msg_t *m = &job->msg;
  if (!job->ticket_put || !m->deliv_st_req || !reportable(&m->ori) || !job->n_rcpts) return;
  if (js_pub_begin(s, job->n_rcpts)) return;
  for (size_t i = 0; i < job->n_rcpts; i++) {
    const m5_store_rcpt_t *r = &job->rcpts[i];
    if (!r->id) {
      pthread_mutex_lock(&s->pub_mu);
      s->pubs[i].done = true;
      s->n_done++;
      pthread_mutex_unlock(&s->pub_mu);
      continue;
    }
    char key[70], subj[SUBJ_MAX], val[48], mid[128];
    ticket_key(&m->ori, m->msg_id, &r->addr, key);
    snprintf(subj, sizeof subj, "$KV.%s.%s", s->tickets_bucket, key);
    int vl = snprintf(val, sizeof val, "%llu %llu", (unsigned long long)m->ori_gen,
                      (unsigned long long)r->gen);
    snprintf(mid, sizeof mid, "tk/%s/%zu", key + 2, i);
    js_pub(s, i, subj, val, (size_t)vl, mid);
  }
  js_pub_wait(s);
  for (size_t i = 0; i < job->n_rcpts; i++)
    if (s->pubs[i].msg_id && s->pubs[i].status != M5_OK)
      M5_LOGW("store", "jetstream: report ticket of %s for %s not stored", m->msg_id,
              job->rcpts[i].addr.addr);
  js_pub_end(s);
}

typedef struct {
  bool hit;
  char key[70];
  char val[48]; /* the ticket as it was, to put back if the report is then refused */
  uint64_t used_rev;
} ticket_use_t;

/* ticket_check: the report from msg.ori to rcpts[0] about msgId is stored only on the ticket
 * naming msg.ori, which it uses up (compare-and-set to "used"); else job->discarded. */
static int ticket_check(js_store_t *s, m5_store_job_t *job, ticket_use_t *u) {
  memset(u, 0, sizeof *u);
  if (job->n_rcpts != 1) return M5_EINVAL;
  m5_store_rcpt_t *r = &job->rcpts[0];
  const m5_store_msg_t *m = &job->msg;
  ticket_key(&r->addr, m->msg_id, &m->ori, u->key);
  uint8_t *v = NULL;
  size_t vl = 0;
  uint64_t rev = 0;
  char err[256];
  int rc = m5_js_kv_get(s->tickets, u->key, &v, &vl, &rev, err, sizeof err);
  if (rc == M5_ENOENT) {
    job->discarded = true;
    return M5_OK;
  }
  if (rc) {
    M5_LOGW("store", "jetstream: ticket get: %s", err);
    return M5_EIO;
  }
  unsigned long long gen = 0, rep_gen = 0;
  bool ok = vl < sizeof u->val && sscanf((const char *)v, "%llu %llu", &gen, &rep_gen) == 2;
  if (ok) snprintf(u->val, sizeof u->val, "%s", (const char *)v);
  free(v);
  /* used already; a UE reporter of a newer generation than the one the message was stored
   * for; a UE originator re-bound since it sent */
  if (!ok || (!strcmp(m->ori.type, "UE") && rep_gen < m->ori_gen) ||
      (!strcmp(r->addr.type, "UE") && gen < r->gen)) {
    job->discarded = true;
    return M5_OK;
  }
  if (!strcmp(r->addr.type, "UE")) r->gen = gen;
  rc = m5_js_kv_update(s->tickets, u->key, "used", 4, rev, &u->used_rev, err, sizeof err);
  if (rc == M5_EAGAIN) { /* a concurrent report used it */
    job->discarded = true;
    return M5_OK;
  }
  if (rc) {
    M5_LOGW("store", "jetstream: ticket update: %s", err);
    return M5_EIO;
  }
  u->hit = true;
  return M5_OK;
}

/* A report refused after it used its ticket: the ticket is given back. */
static void ticket_restore(js_store_t *s, const ticket_use_t *u) {
  if (!u->hit) return;
  char err[256];
  if (m5_js_kv_update(s->tickets, u->key, u->val, strlen(u->val), u->used_rev, NULL, err,
                      sizeof err))
    M5_LOGW("store", "jetstream: ticket restore: %s", err);
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

/* The stored ack of key; M5_ENOENT when the window holds none. */
static int dedup_get(js_store_t *s, const char *key, m5_store_ack_t *a) {
  uint8_t *v = NULL;
  size_t vl = 0;
  char err[256];
  int rc = m5_js_kv_get(s->dedup, key, &v, &vl, NULL, err, sizeof err);
  if (rc == M5_OK) ack_parse(v, vl, a);
  if (rc && rc != M5_ENOENT) M5_LOGW("store", "jetstream: dedup get: %s", err);
  free(v);
  return rc;
}

/* Deletes a message this job published (refused, lost a race, or a copy no longer needed). */
static void delete_seq(js_store_t *s, int fam, uint64_t seq) {
  char err[256];
  js_mark_gone(s, fam, seq); /* (only ever looked up for this node's subjects) */
  int rc = m5_js_delete_msg(s->c, s->stream[fam], seq, err, sizeof err);
  if (rc && rc != M5_ENOENT) M5_LOGW("store", "jetstream: delete: %s", err);
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
    char subj[SUBJ_MAX], mid[SUBJ_MAX];
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

static void accept_publish(js_store_t *s, m5_store_job_t *job, bool dedup, const char *hash,
                           const char *key);

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
  bool dedup = job->dedup_id[0] != 0;
  if (dedup) {
    dedup_hash(job, hash);
    snprintf(key, sizeof key, "d.%s", hash);
    int rc = dedup_get(s, key, &job->orig_ack);
    if (rc == M5_OK) {
      job->outcome = M5_STORE_DUPLICATE;
      js_stat_add(s, &s->st.duplicates, 1);
      return;
    }
    if (rc != M5_ENOENT) {
      job->status = M5_EIO;
      return;
    }
  } else {
    s->nonce++;
  }
  ticket_use_t tu = {0};
  size_t n_given = job->n_rcpts;
  if (check) {
    int rc = ticket_check(s, job, &tu);
    if (rc) {
      job->status = rc;
      return;
    }
    if (job->discarded) job->n_rcpts = 0; /* only the dedup entry is written */
  }
  accept_publish(s, job, dedup, hash, key);
  job->n_rcpts = n_given;
  if (tu.hit && (job->status || job->outcome != M5_STORE_ACCEPTED)) ticket_restore(s, &tu);
  if (!job->status && job->outcome == M5_STORE_ACCEPTED && !check) tickets_put(s, job);
}

/* ACCEPT's publishes and dedup entry (after the dedup fast path and the ticket check). */
static void accept_publish(js_store_t *s, m5_store_job_t *job, bool dedup, const char *hash,
                           const char *key) {
  job->msg.accepted_at_ms = now_ms(s);
  bool report = !strcmp(job->msg.app_id, M5_STORE_REPORT_APP);
  int fam = report ? JS_FAM_R : JS_FAM_Q;
  size_t n = job->n_rcpts;
  js_pub_t *res = calloc(n ? n : 1, sizeof *res);
  bool *want = calloc(n ? n : 1, sizeof *want);
  int fail = !res || !want ? M5_ENOMEM : 0;
  for (size_t i = 0; i < n; i++)
    want[i] = true;
  /* Round 0 with the Msg-Ids of the dedup key. A duplicate answer names the message of an
   * earlier attempt with the same key: fine while it is there (a retry after a timeout or a
   * crash), but one that was refused and deleted, or concluded, is gone: such recipients are
   * published again in round 1 under ids of their own. */
  for (int round = 0; round < 2 && !fail; round++) {
    bool any = false;
    for (size_t i = 0; i < n; i++)
      any |= want[i];
    if (!any) break;
    if ((fail = publish_round(s, job, fam, want, round ? s->nonce++ : 0, dedup ? hash : NULL,
                              res)))
      break;
    for (size_t i = 0; i < n; i++) {
      want[i] = false;
      if (round || res[i].status != M5_OK || !res[i].duplicate) continue;
      m5_js_msg_t m;
      char subj[SUBJ_MAX], err[256];
      js_subject(s, fam, job->rcpts[i].node, &job->rcpts[i].addr, subj, sizeof subj);
      int rc = m5_js_get_msg(s->c, s->stream[fam], res[i].seq, &m, err, sizeof err);
      if (rc == M5_ENOENT || (rc == M5_OK && strcmp(m.subject, subj)))
        want[i] = true;
      if (rc == M5_OK) m5_js_msg_free(&m);
    }
  }
  free(want);
  /* the outcome of each recipient */
  bool queue_full = false, store_full = false;
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
  if (fail || refused != M5_STORE_ACCEPTED) {
    /* nothing of a refused or failed message stays: delete what this job stored */
    for (size_t i = 0; res && i < n; i++)
      if (res[i].status == M5_OK) delete_seq(s, fam, res[i].seq);
    free(res);
    if (fail) {
      job->status = fail == M5_ENOMEM || fail == M5_EINVAL ? fail : M5_EIO;
      return;
    }
    for (size_t i = 0; i < n; i++)
      job->rcpts[i].id = 0;
    job->outcome = refused;
    js_stat_add(s, refused == M5_STORE_STORE_FULL ? &s->st.refused_store_full
                                                  : &s->st.refused_queue_full,
                1);
    return;
  }
  /* the dedup entry, create-only: a concurrent accept of the same key may have won */
  if (dedup) {
    char val[sizeof job->ack.status + sizeof job->ack.failure_cause + 2];
    int vl = snprintf(val, sizeof val, "%s\n%s", job->ack.status, job->ack.failure_cause);
    char err[256];
    int rc = m5_js_kv_create(s->dedup, key, val, (size_t)(vl > 0 ? vl : 0), NULL, err, sizeof err);
    if (rc == M5_EEXIST) {
      for (size_t i = 0; i < job->n_rcpts; i++)
        if (res[i].status == M5_OK && !res[i].duplicate)
          delete_seq(s, fam, res[i].seq);
      free(res);
      for (size_t i = 0; i < job->n_rcpts; i++) {
        job->rcpts[i].status = M5_STORE_ACCEPTED;
        job->rcpts[i].id = 0;
      }
      if (dedup_get(s, key, &job->orig_ack) != M5_OK) job->orig_ack = job->ack;
      job->outcome = M5_STORE_DUPLICATE;
      js_stat_add(s, &s->st.duplicates, 1);
      return;
    }
    if (rc) { /* stored but not remembered: answer a failure, the sender retries (Msg-Id) */
      M5_LOGW("store", "jetstream: dedup create: %s", err);
      free(res);
      job->status = M5_EIO;
      return;
    }
  }
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
static int write_report(js_store_t *s, m5_store_job_t *job, m5_store_delivery_t *d, bool report) {
  d->report_id = 0;
  if (report || !d->msg.deliv_st_req ||
      (strcmp(d->msg.ori.type, "UE") && strcmp(d->msg.ori.type, "AS")))
    return M5_OK;
  m5_store_delivery_t rep;
  int64_t now = now_ms(s);
  int rc = m5_store_report_of(d, now / 1000 + s->o.report_ttl_s, &rep);
  if (rc) return rc;
  rep.msg.accepted_at_ms = now;
  char subj[SUBJ_MAX], mid[64];
  uint8_t *rec = NULL;
  size_t rl = 0;
  rc = js_subject(s, JS_FAM_R, NULL, &rep.rcpt, subj, sizeof subj);
  if (!rc) rc = js_rec_encode(&rep.msg, &rep.rcpt, d->msg.ori_gen, job->next_attempt_ms, &rec, &rl);
  free(rep.msg.payload);
  if (rc) return rc;
  snprintf(mid, sizeof mid, "rep/%llu/0", (unsigned long long)d->id);
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
    return M5_EIO;
  }
  d->report_id = js_id(p.seq, JS_FAM_R);
  d->report_gen = d->msg.ori_gen;
  if (!js_index_get(s, d->report_id) && !(p.duplicate && p.seq <= s->cons_seen[JS_FAM_R])) {
    js_entry_t *e = js_entry_new(rec, rl, p.seq, JS_FAM_R);
    if (e) js_index_add(s, e);
  }
  free(rec);
  js_stat_add(s, &s->st.reports, 1);
  return M5_OK;
}

/* Concludes e: (report,) delete, out of the index. M5_ENOENT: someone else has it now. */
static int conclude(js_store_t *s, m5_store_job_t *job, js_entry_t *e, m5_deliv_state_t state,
                    const char *cause, m5_store_delivery_t *d) {
  int rc = js_entry_item(e, d);
  if (rc) return rc;
  d->state = state;
  snprintf(d->failure_cause, sizeof d->failure_cause, "%s", cause ? cause : "");
  if (state != M5_DELIV_DELIVERED) {
    js_rec_t r;
    js_rec_decode(e->rec, e->rec_len, &r);
    if ((rc = write_report(s, job, d, r.report))) return rc;
  }
  char err[256];
  rc = m5_js_delete_msg(s->c, s->stream[e->fam], e->seq, err, sizeof err);
  if (rc == M5_ENOENT) { /* concluded or moved by someone else: not ours to report */
    if (d->report_id) {
      js_entry_t *re = js_index_get(s, d->report_id);
      if (re) js_index_remove(s, re);
      delete_seq(s, JS_FAM_R, d->report_id >> 1);
      d->report_id = 0;
    }
    js_index_remove(s, e);
    return M5_ENOENT;
  }
  if (rc) {
    M5_LOGW("store", "jetstream: conclude: %s", err);
    return M5_EIO;
  }
  js_index_remove(s, e);
  return M5_OK;
}

static void do_mark(js_store_t *s, m5_store_job_t *job) {
  js_entry_t *e = js_index_get(s, job->id);
  if (!e) {
    job->status = M5_ENOENT;
    return;
  }
  bool delivered = job->op == M5_STORE_MARK_DELIVERED;
  m5_store_delivery_t d;
  int rc = conclude(s, job, e, delivered ? M5_DELIV_DELIVERED : M5_DELIV_FAILED,
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

typedef struct {
  js_entry_t **v;
  size_t n, cap;
} elist_t;

static int el_push(elist_t *l, js_entry_t *e) {
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
  if (x->next_attempt_ms != y->next_attempt_ms) return x->next_attempt_ms < y->next_attempt_ms ? -1 : 1;
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
static void list_with_payloads(js_store_t *s, m5_store_job_t *job, elist_t *l, size_t limit) {
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
      job->status = M5_EIO;
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
  char (*subjects)[SUBJ_MAX];
  size_t n, cap;
} subj_list_t;

static void on_subject(void *arg, const char *subject, uint64_t msgs) {
  subj_list_t *l = arg;
  (void)msgs;
  /* P.q.<node>.<type>.<enc>: skip this node's own */
  size_t pl = strlen(l->s->prefix) + 3, nl = strlen(l->s->node);
  if (strlen(subject) > pl + nl && !strncmp(subject + pl, l->s->node, nl) && subject[pl + nl] == '.')
    return;
  if (l->n == l->cap) {
    size_t cap = l->cap ? 2 * l->cap : 4;
    void *nv = realloc(l->subjects, cap * sizeof *l->subjects);
    if (!nv) return;
    l->subjects = nv;
    l->cap = cap;
  }
  snprintf(l->subjects[l->n++], SUBJ_MAX, "%s", subject);
}

typedef struct {
  m5_js_msg_t m;
  m5_msg_prio_t prio;
} moved_t;

static int by_prio_seq(const void *a, const void *b) {
  const moved_t *x = a, *y = b;
  if (x->prio != y->prio) return x->prio > y->prio ? -1 : 1;
  return x->m.seq < y->m.seq ? -1 : x->m.seq > y->m.seq;
}

static void move_here(js_store_t *s, const m5_msg_addr_t *rcpt, int fam) {
  char filter[SUBJ_MAX], err[256];
  if (js_rcpt_filter(s, fam, rcpt, filter, sizeof filter)) return;
  subj_list_t sl = {.s = s};
  if (m5_js_subjects(s->c, s->stream[fam], filter, on_subject, &sl, err, sizeof err)) {
    M5_LOGW("store", "jetstream: move: %s", err);
    return;
  }
  moved_t *mv = NULL;
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
        cap = cap ? 2 * cap : 16;
        moved_t *nv = realloc(mv, cap * sizeof *mv);
        if (!nv) {
          m5_js_msg_free(&m);
          break;
        }
        mv = nv;
      }
      mv[n].m = m;
      mv[n++].prio = r.d.msg.prio;
    }
  }
  free(sl.subjects);
  if (n) qsort(mv, n, sizeof *mv, by_prio_seq);
  char subj[SUBJ_MAX];
  bool full = js_subject(s, fam, NULL, rcpt, subj, sizeof subj) != M5_OK;
  for (size_t i = 0; i < n; i++) {
    moved_t *x = &mv[i];
    if (!full) {
      char mid[64];
      snprintf(mid, sizeof mid, "mv/%llu/0", (unsigned long long)js_id(x->m.seq, fam));
      if (js_pub_begin(s, 1) == M5_OK) {
        js_pub(s, 0, subj, x->m.data, x->m.len, mid);
        js_pub_wait(s);
        js_pub_t p = s->pubs[0];
        js_pub_end(s);
        if (p.status == M5_OK) {
          int rc = m5_js_delete_msg(s->c, s->stream[fam], x->m.seq, err, sizeof err);
          if (rc == M5_ENOENT) { /* concluded meanwhile: the copy goes */
            delete_seq(s, fam, p.seq);
          } else if (rc == M5_OK || p.duplicate) {
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
  for (int f = 0; f < 2; f++)
    move_here(s, &job->rcpt, f);
  js_drain_inbox(s);
  js_rcpt_t *rc = js_index_rcpt(s, &job->rcpt);
  elist_t l = {0};
  for (js_entry_t *e = rc ? rc->head : NULL; e; e = e->next)
    if (!e->in_flight && el_push(&l, e)) {
      job->status = M5_ENOMEM;
      free(l.v);
      return;
    }
  if (l.n) qsort(l.v, l.n, sizeof *l.v, by_queue_order);
  list_with_payloads(s, job, &l, cap_limit(job->limit));
  free(l.v);
}

typedef struct {
  elist_t *l;
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
  if (take && el_push(sc->l, e)) sc->rc = M5_ENOMEM;
}

static int scan(js_store_t *s, m5_store_op_t op, int64_t now, elist_t *l) {
  scan_t sc = {l, op, now, 0};
  m5_hmap_foreach(s->by_id, scan_one, &sc);
  return sc.rc;
}

static void do_due_any(js_store_t *s, m5_store_job_t *job) {
  elist_t l = {0};
  if ((job->status = scan(s, M5_STORE_DUE_ANY, job->now_ms, &l)) == 0) {
    if (l.n) qsort(l.v, l.n, sizeof *l.v, by_next_attempt);
    list_with_payloads(s, job, &l, cap_limit(job->limit));
  }
  free(l.v);
}

static void do_expire(js_store_t *s, m5_store_job_t *job) {
  elist_t l = {0};
  if ((job->status = scan(s, M5_STORE_EXPIRE, job->now_ms, &l)) == 0) {
    if (l.n) qsort(l.v, l.n, sizeof *l.v, by_expiry);
    size_t limit = cap_limit(job->limit);
    for (size_t i = 0; i < l.n && job->n_items < limit; i++) {
      m5_store_delivery_t d;
      int rc = conclude(s, job, l.v[i], M5_DELIV_EXPIRED, M5_CAUSE_EXPIRED, &d);
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
  elist_t l = {0};
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

/* ---- REBIND and GROUP_SWEEP, per node (partial: see docs/store.md "JetStream") ---- */

/* Fails (cause, with the reports asked for, due at once) the listed deliveries; counts them. */
static uint64_t fail_all(js_store_t *s, m5_store_job_t *job, elist_t *l, const char *const *causes) {
  uint64_t n = 0;
  int64_t keep = job->next_attempt_ms;
  job->next_attempt_ms = now_ms(s); /* their reports: due at once */
  for (size_t i = 0; i < l->n; i++) {
    m5_store_delivery_t d;
    int rc = conclude(s, job, l->v[i], M5_DELIV_FAILED, causes[i], &d);
    if (rc == M5_ENOENT) continue;
    if (rc) {
      job->status = rc;
      break;
    }
    n++;
    js_stat_add(s, &s->st.failed, 1);
  }
  job->next_attempt_ms = keep;
  return n;
}

/* rcpt's queued deliveries of a generation older than gen fail (RECIPIENT_REBOUND): first
 * those on other nodes' subjects are moved here, so one node's REBIND covers the cluster.
 * Not done here yet: dropping rcpt's dedup entries as an originator, tickets, topics; the
 * generation is not remembered (a repeat finds nothing older left). */
static void do_rebind(js_store_t *s, m5_store_job_t *job) {
  if (strcmp(job->rcpt.type, "UE") || !job->gen) {
    job->status = M5_EINVAL;
    return;
  }
  for (int f = 0; f < 2; f++)
    move_here(s, &job->rcpt, f);
  js_drain_inbox(s);
  js_rcpt_t *rc = js_index_rcpt(s, &job->rcpt);
  elist_t l = {0};
  for (js_entry_t *e = rc ? rc->head : NULL; e; e = e->next) {
    js_rec_t r;
    if (js_rec_decode(e->rec, e->rec_len, &r) == 0 && r.d.rcpt_gen && r.d.rcpt_gen < job->gen &&
        !e->in_flight && el_push(&l, e)) {
      job->status = M5_ENOMEM;
      break;
    }
  }
  const char **causes = l.n ? malloc(l.n * sizeof *causes) : NULL;
  if (l.n && !causes) job->status = M5_ENOMEM;
  if (!job->status) {
    for (size_t i = 0; i < l.n; i++)
      causes[i] = M5_STORE_CAUSE_REBOUND;
    job->rebind_failed = fail_all(s, job, &l, causes);
  }
  free(causes);
  free(l.v);
}

typedef struct {
  m5_store_job_t *job;
  elist_t l;
  const char **causes;
  size_t cap;
  int rc;
} sweep_t;

static void sweep_one(const void *key, size_t klen, void *val, void *arg) {
  (void)key;
  (void)klen;
  sweep_t *sw = arg;
  js_entry_t *e = val;
  js_rec_t r;
  const m5_store_job_t *j = sw->job;
  if (sw->rc || e->in_flight || js_rec_decode(e->rec, e->rec_len, &r) || !r.d.msg.group_gen)
    return;
  if (j->msg.dest.type[0] && (strcmp(j->msg.dest.type, r.d.msg.dest.type) ||
                              strcmp(j->msg.dest.addr, r.d.msg.dest.addr)))
    return;
  if (j->rcpt.type[0] &&
      (strcmp(j->rcpt.type, r.d.rcpt.type) || strcmp(j->rcpt.addr, r.d.rcpt.addr)))
    return;
  const char *cause = j->group_check(j->group_check_arg, &r.d.msg.dest, &r.d.rcpt, r.d.msg.group_gen);
  if (!cause) return;
  if (sw->l.n == sw->cap) {
    size_t cap = sw->cap ? 2 * sw->cap : 64;
    const char **nc = realloc(sw->causes, cap * sizeof *nc);
    if (!nc) {
      sw->rc = M5_ENOMEM;
      return;
    }
    sw->causes = nc;
    sw->cap = cap;
  }
  if (el_push(&sw->l, e)) {
    sw->rc = M5_ENOMEM;
    return;
  }
  sw->causes[sw->l.n - 1] = cause;
}

/* This node's queued group and broadcast deliveries that group_check names a cause for fail,
 * in one pass over the index (each node sweeps its own; the cursor is not needed: more is
 * never set). */
static void do_group_sweep(js_store_t *s, m5_store_job_t *job) {
  if (!job->group_check || (job->rcpt.type[0] && !job->msg.dest.type[0])) {
    job->status = M5_EINVAL;
    return;
  }
  sweep_t sw = {.job = job};
  m5_hmap_foreach(s->by_id, sweep_one, &sw);
  if (sw.rc)
    job->status = sw.rc;
  else
    job->group_failed = fail_all(s, job, &sw.l, sw.causes);
  free(sw.causes);
  free(sw.l.v);
  job->more = false;
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
    return do_rebind(s, job);
  case M5_STORE_TOPIC_SUB:
  case M5_STORE_TOPIC_UNSUB:
  case M5_STORE_TOPIC_SUBSCRIBERS:
    return unsupported(job, "TOPIC_*");
  case M5_STORE_GROUP_SWEEP:
    return do_group_sweep(s, job);
  }
  job->status = M5_EINVAL;
}
