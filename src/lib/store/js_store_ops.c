/* The jobs of m5_store on NATS JetStream (store.h ops; issue 13, docs/store.md "JetStream"),
 * run one at a time on the store thread (js_store.c), which may block on the cluster. ACCEPT
 * is in js_accept.c (the ACCEPTs waiting in a row run there as one pipelined batch).
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

/* The dedup key of (ori, id): hex of HMAC-SHA-256 (collision-resistant, any length, a valid
 * KV key token and Msg-Id part). */
void js_hash_hex(const char *text, size_t len, char out[65]) {
  uint8_t h[32];
  static const uint8_t k[] = "m5-store-dedup";
  m5_hmac_sha256(k, sizeof k - 1, (const uint8_t *)text, len, h);
  for (int i = 0; i < 32; i++)
    snprintf(out + 2 * i, 3, "%02x", h[i]);
}

/* Deletes a message this job published (refused, lost a race, or a copy no longer needed). */
void js_delete_seq(js_store_t *s, int fam, uint64_t seq) {
  char err[256];
  int rc = m5_js_delete_msg(s->c, s->stream[fam], seq, err, sizeof err);
  if (rc && rc != M5_ENOENT) {
    /* still stored: the consumer may bring it (a failed delete leaves it to be delivered) */
    M5_LOGW("store", "jetstream: delete: %s", err);
    return;
  }
  js_mark_gone(s, fam, seq); /* gone: the consumer must not bring it back (this node's) */
}

/* The job's status for a failure of the cluster: unavailable (no leader) and timed out pass
 * through (the caller answers "come back": a retransmission with the same msgId learns the
 * outcome), out of memory and bad input too; anything else is M5_EIO. */
int js_fail_status(int rc) {
  return rc == M5_ENOMEM || rc == M5_EINVAL || rc == M5_ETIMEDOUT || rc == M5_EAGAIN ? rc : M5_EIO;
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
  if (js_failed_delivery(s, d)) return M5_OK; /* its ticket goes; a re-bound originator: none */
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
    return js_fail_status(p.status);
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
      js_delete_seq(s, JS_FAM_R, d->report_id >> 1);
      d->report_id = 0;
    }
    return M5_ENOENT;
  }
  if (rc) {
    M5_LOGW("store", "jetstream: conclude: %s", err);
    return js_fail_status(rc);
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

/* MARK_DELIVERED of several jobs in a row (perf, js_store.c's thread): their deletes in one
 * round trip per stream (m5_js_delete_msgs); each job is answered as do_mark alone answers it
 * (the delete decides: "not found" is M5_ENOENT). A job whose id an earlier job of the batch
 * concludes runs alone afterwards (M5_ENOENT then, as in a row). */
void js_mark_batch(js_store_t *s, m5_store_job_t **jobs, size_t n) {
  js_entry_t *ent[JS_BATCH_MAX];
  m5_store_delivery_t d[JS_BATCH_MAX];
  int rcs[JS_BATCH_MAX];
  bool later[JS_BATCH_MAX];
  for (size_t j = 0; j < n; j++) {
    m5_store_job_t *job = jobs[j];
    job->status = 0;
    ent[j] = NULL;
    later[j] = false;
    rcs[j] = M5_ENOENT;
    for (size_t k = 0; k < j && !later[j]; k++)
      later[j] = jobs[k]->id == job->id;
    if (later[j]) continue;
    js_entry_t *e = js_index_get(s, job->id);
    if (!e) continue;
    if ((rcs[j] = js_entry_item(e, &d[j]))) continue;
    d[j].state = M5_DELIV_DELIVERED;
    d[j].failure_cause[0] = 0;
    d[j].report_id = 0;
    ent[j] = e;
  }
  for (int fam = 0; fam < 2; fam++) {
    uint64_t seqs[JS_BATCH_MAX];
    int out[JS_BATCH_MAX];
    size_t at[JS_BATCH_MAX], k = 0;
    for (size_t j = 0; j < n; j++)
      if (ent[j] && ent[j]->fam == fam) {
        at[k] = j;
        seqs[k++] = ent[j]->seq;
      }
    if (!k) continue;
    char err[256];
    if (m5_js_delete_msgs(s->c, s->stream[fam], seqs, k, out, err, sizeof err))
      M5_LOGW("store", "jetstream: conclude: %s", err);
    for (size_t i = 0; i < k; i++)
      rcs[at[i]] = out[i];
  }
  for (size_t j = 0; j < n; j++) {
    m5_store_job_t *job = jobs[j];
    if (later[j] || !ent[j]) {
      if (!later[j]) job->status = rcs[j];
      continue;
    }
    int rc = rcs[j];
    if (rc == M5_OK || rc == M5_ENOENT) js_index_remove(s, ent[j]);
    if (rc == M5_OK) rc = item_push(job, &d[j]);
    if (rc) {
      if (rc != M5_ENOENT) M5_LOGW("store", "jetstream: conclude: %s", m5_strerror(rc));
      job->status = rc == M5_ENOENT || rc == M5_ENOMEM ? rc : js_fail_status(rc);
      continue;
    }
    js_stat_add(s, &s->st.delivered, 1);
  }
  for (size_t j = 0; j < n; j++)
    if (later[j]) js_run_job(s, jobs[j]);
}

static void do_reschedule(js_store_t *s, m5_store_job_t *job) {
  js_entry_t *e = js_index_get(s, job->id);
  if (!e) {
    job->status = M5_ENOENT;
    return;
  }
  if (js_reschedule_rebound(s, job, e)) return; /* re-bound since: failed (js_sweep.c) */
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
      job->status = js_fail_status(rc);
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

int js_move_msg(js_store_t *s, int fam, const char *subj, const m5_js_msg_t *m) {
  /* this node's copy: two nodes moving the same delivery at once make two copies, and the one
   * whose delete of the old finds it gone deletes its own (never the other's) */
  char err[256], mid[JS_NAME_MAX + 40];
  snprintf(mid, sizeof mid, "mv/%s/%llu/0", s->node, (unsigned long long)js_id(m->seq, fam));
  int rc = js_pub_begin(s, 1);
  if (rc) return rc;
  js_pub(s, 0, subj, m->data, m->len, mid);
  js_pub_wait(s);
  js_pub_t p = s->pubs[0];
  js_pub_end(s);
  if (p.status != M5_OK) return p.status;
  rc = m5_js_delete_msg(s->c, s->stream[fam], m->seq, err, sizeof err);
  if (rc == M5_ENOENT && !p.duplicate) { /* concluded or moved meanwhile: the copy goes */
    js_delete_seq(s, fam, p.seq);
  } else if (rc == M5_OK || p.duplicate) {
    /* (a duplicate is this node's copy of an earlier move whose delete was not known to
     * succeed: it stays, pushed twice at worst) */
    if (!js_index_get(s, js_id(p.seq, fam)) && p.seq > s->cons_seen[fam]) {
      js_entry_t *e = js_entry_new(m->data, m->len, p.seq, fam);
      if (e) {
        e->next_attempt_ms = 0; /* due at once here */
        js_index_add(s, e);
      }
    }
  }
  return M5_OK;
}

void js_move_here(js_store_t *s, m5_store_job_t *job, const m5_msg_addr_t *rcpt, int fam) {
  (void)job; /* (the test hook's) */
  js_other_t *mv = NULL;
  size_t n = js_read_others(s, rcpt, fam, &mv);
#ifdef M5_TEST_HOOKS
  if (n && m5_store_js_test_hook) m5_store_js_test_hook("move-listed", &s->base, job);
#endif
  char subj[JS_SUBJ_MAX];
  bool full = js_subject(s, fam, NULL, rcpt, subj, sizeof subj) != M5_OK;
  for (size_t i = 0; i < n; i++) {
    /* this node's queue is full (or the cluster fails): the rest stays */
    if (!full && js_move_msg(s, fam, subj, &mv[i].m)) full = true;
    m5_js_msg_free(&mv[i].m);
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
    size_t limit = cap_limit(job->limit);
    list_with_payloads(s, job, &l, limit);
    /* Handed out (hand_out), the items are in flight from now (in the index: every dispatch
     * concludes them, and REQUEUE_STALE takes back one whose conclusion was lost), so a DUE_ANY
     * right behind this one does not hand them out again: the caller may ask again at once
     * while more are due (more), instead of one batch per back-off tick (two nodes: what
     * another node queues here was pushed at one tick's batch a second). */
    for (size_t i = 0; job->hand_out && job->status == 0 && i < job->n_items; i++) {
      js_entry_t *e = js_index_get(s, job->items[i].id);
      if (!e) continue;
      e->in_flight = true;
      e->next_attempt_ms = job->now_ms;
    }
    job->more = job->hand_out && job->status == 0 && job->n_items == limit && l.n > limit;
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
    return js_accept(s, job);
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
    return js_topics_job(s, job);
  case M5_STORE_GROUP_SWEEP:
    return js_group_sweep(s, job);
  }
  job->status = M5_EINVAL;
}
