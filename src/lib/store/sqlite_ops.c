/* The jobs of the SQLite backend (store.h), each run by the writer thread inside the batch's
 * transaction and its own savepoint (sqlite.c). A job that returns a status other than 0,
 * M5_ENOENT, M5_EINVAL or M5_EPERM is rolled back to its savepoint; those three are returned
 * before anything is written. REBIND and the generation checks are in sqlite_rebind.c.
 *
 * The dedup window is in sqlite_dedup.c. */
#include "sqlite_int.h"

#include "core/err.h"
#include "core/log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>


/* Copies a text column into a fixed buffer (truncating what cannot fit, which our own
 * writes never produce). */
static void col_text(sqlite3_stmt *st, int col, char *out, size_t outlen) {
  const unsigned char *t = sqlite3_column_text(st, col);
  size_t n = t ? (size_t)sqlite3_column_bytes(st, col) : 0;
  if (n >= outlen) n = outlen - 1;
  if (n) memcpy(out, t, n); /* not snprintf: a dozen columns a row, on the hot path */
  out[n] = 0;
}

static int bind_text(sqlite3_stmt *st, int i, const char *t, size_t max) {
  return sqlite3_bind_text(st, i, t, (int)strnlen(t, max), SQLITE_STATIC);
}

#define BIND_STR(st, i, arr) bind_text(st, i, arr, sizeof(arr))

/* Reads one row of DLV_COLS (sqlite.c) into d (payload copied). */
static int read_delivery(sqlite3_stmt *st, m5_store_delivery_t *d, sq_row_t *rm) {
  memset(d, 0, sizeof *d);
  d->id = (uint64_t)sqlite3_column_int64(st, 0);
  col_text(st, 1, d->rcpt.type, sizeof d->rcpt.type);
  col_text(st, 2, d->rcpt.addr, sizeof d->rcpt.addr);
  int state = sqlite3_column_int(st, 3);
  d->state = state == SQ_STATE_IN_FLIGHT ? M5_DELIV_PENDING : (m5_deliv_state_t)state;
  d->attempts = (uint32_t)sqlite3_column_int64(st, 4);
  d->next_attempt_ms = sqlite3_column_int64(st, 5);
  col_text(st, 6, d->failure_cause, sizeof d->failure_cause);
  m5_store_msg_t *m = &d->msg;
  col_text(st, 7, m->ori.type, sizeof m->ori.type);
  col_text(st, 8, m->ori.addr, sizeof m->ori.addr);
  col_text(st, 9, m->dest.type, sizeof m->dest.type);
  col_text(st, 10, m->dest.addr, sizeof m->dest.addr);
  col_text(st, 11, m->msg_id, sizeof m->msg_id);
  col_text(st, 12, m->app_id, sizeof m->app_id);
  m->prio = (m5_msg_prio_t)sqlite3_column_int(st, 13);
  m->deliv_st_req = sqlite3_column_int(st, 14) != 0;
  m->sto_fwd = sqlite3_column_int(st, 15) != 0;
  m->expr_time = sqlite3_column_int64(st, 16);
  m->accepted_at_ms = sqlite3_column_int64(st, 17);
  const void *p = sqlite3_column_blob(st, 18);
  int plen = sqlite3_column_bytes(st, 18);
  if (plen > 0) {
    if (!(m->payload = malloc((size_t)plen))) return M5_ENOMEM;
    memcpy(m->payload, p, (size_t)plen);
    m->payload_len = (size_t)plen;
  }
  if (rm) {
    rm->msg = sqlite3_column_int64(st, 19);
    rm->open = sqlite3_column_int64(st, 20);
    rm->first = sqlite3_column_int64(st, 21);
    rm->n = sqlite3_column_int64(st, 22);
  }
  d->rcpt_gen = (uint64_t)sqlite3_column_int64(st, 23);
  m->ori_gen = (uint64_t)sqlite3_column_int64(st, 24);
  m->group_gen = (uint64_t)sqlite3_column_int64(st, 25);
  return 0;
}

static size_t cap_limit(size_t limit) {
  return limit > M5_STORE_LIST_MAX ? M5_STORE_LIST_MAX : limit;
}

/* Runs a bound list query of DLV_COLS into job->items (NULL when it finds nothing). */
static int list_deliveries(sq_t *s, m5_store_job_t *job, sqlite3_stmt *st, size_t limit) {
  int rc = 0, r = SQLITE_DONE;
  size_t cap = 0;
  while (job->n_items < limit && (r = sqlite3_step(st)) == SQLITE_ROW) {
    if (job->n_items == cap) {
      size_t ncap = cap ? cap * 2 : 16;
      if (ncap > limit) ncap = limit;
      m5_store_delivery_t *n = realloc(job->items, ncap * sizeof *n);
      if (!n) {
        rc = M5_ENOMEM;
        goto out;
      }
      job->items = n;
      cap = ncap;
    }
    rc = read_delivery(st, &job->items[job->n_items], NULL);
    job->n_items++;
    if (rc != 0) goto out;
  }
  if (job->n_items < limit && r != SQLITE_DONE) {
    sq_log_error(s, "listing deliveries");
    rc = M5_EIO;
  }
out:
  sqlite3_reset(st);
  sqlite3_clear_bindings(st);
  return rc;
}

/* ---- accept ---- */

static int accept_valid(const m5_store_job_t *job) {
  if (job->n_rcpts > M5_STORE_RCPT_MAX || (job->n_rcpts && !job->rcpts)) return 0;
  if (job->n_rcpts == 0 && !job->dedup_id[0]) return 0; /* nothing to do */
  if (job->msg.payload_len > M5_STORE_PAYLOAD_MAX || (job->msg.payload_len && !job->msg.payload))
    return 0;
  if (job->dedup_id[0] && !job->dedup_ori[0]) return 0;
  return 1;
}

static int insert_message(sq_t *s, const m5_store_msg_t *m, int kind, uint64_t msg_id,
                          uint64_t first, uint64_t n) {
  sqlite3_stmt *st = s->st[ST_MSG_INSERT];
  sqlite3_bind_int64(st, 1, (int64_t)msg_id);
  BIND_STR(st, 2, m->ori.type);
  BIND_STR(st, 3, m->ori.addr);
  BIND_STR(st, 4, m->dest.type);
  BIND_STR(st, 5, m->dest.addr);
  BIND_STR(st, 6, m->msg_id);
  BIND_STR(st, 7, m->app_id);
  sqlite3_bind_int(st, 8, (int)m->prio);
  sqlite3_bind_int(st, 9, m->deliv_st_req);
  sqlite3_bind_int(st, 10, m->sto_fwd);
  sqlite3_bind_int64(st, 11, m->expr_time);
  sqlite3_bind_int64(st, 12, m->accepted_at_ms);
  sqlite3_bind_int64(st, 13, (int64_t)n);
  sqlite3_bind_int64(st, 14, (int64_t)first);
  sqlite3_bind_int64(st, 15, (int64_t)n);
  sqlite3_bind_blob(st, 16, m->payload ? (const void *)m->payload : "", (int)m->payload_len,
                    SQLITE_STATIC);
  sqlite3_bind_int(st, 17, kind);
  sqlite3_bind_int64(st, 18, (int64_t)m->ori_gen);
  sqlite3_bind_int64(st, 19, (int64_t)m->group_gen);
  return sq_step_done(s, st, "storing a message");
}

/* How many PENDING deliveries of messages of kind SQ_KIND_* from ori (at binding generation
 * gen) wait in rcpt's queue. */
static int ori_share(sq_t *s, const m5_msg_addr_t *ori, uint64_t gen, int kind,
                     const m5_msg_addr_t *rcpt, uint64_t *n) {
  sqlite3_stmt *st = s->st[ST_ORI_SHARE];
  BIND_STR(st, 1, rcpt->addr);
  BIND_STR(st, 2, rcpt->type);
  BIND_STR(st, 3, ori->addr);
  BIND_STR(st, 4, ori->type);
  sqlite3_bind_int64(st, 5, (int64_t)gen);
  sqlite3_bind_int(st, 6, kind);
  int r = sqlite3_step(st);
  if (r == SQLITE_ROW) *n = (uint64_t)sqlite3_column_int64(st, 0);
  sqlite3_reset(st);
  sqlite3_clear_bindings(st);
  if (r == SQLITE_ROW) return 0;
  sq_log_error(s, "counting an originator's share of a queue");
  return M5_EIO;
}

/* A refusal keeps nothing: the msgId claimed (sq_dedup_claim) goes again, so that the
 * sender's retry is judged afresh. */
static int refused(sq_t *s, m5_store_job_t *job) {
  return job->dedup_id[0] ? sq_dedup_unclaim(s, job) : 0;
}

static int do_accept(sq_t *s, m5_store_job_t *job) {
  if (!accept_valid(job)) return M5_EINVAL;
  int64_t now = sq_now_ms(s);
  job->msg.accepted_at_ms = now;
  for (size_t i = 0; i < job->n_rcpts; i++) {
    job->rcpts[i].status = M5_STORE_ACCEPTED;
    job->rcpts[i].id = 0;
  }
  /* Binding generations (sqlite_rebind.c), before anything is written. */
  int grc = sq_rebind_accept_check(s, job);
  if (grc != 0) return grc;
  if (job->dedup_id[0]) {
    int dup, rc = sq_dedup_claim(s, job, now, &dup);
    if (rc != 0) return rc;
    if (dup) {
      job->outcome = M5_STORE_DUPLICATE;
      s->job_delta.duplicates++;
      return 0;
    }
  }
  if (job->discarded) { /* a report nobody asked for, or for a re-bound originator */
    if (job->dedup_id[0] && sq_dedup_record(s, job, now) != 0) return M5_EIO;
    job->outcome = M5_STORE_ACCEPTED;
    return 0;
  }
  /* A delivery report (a UE's IMDN, an AS's deliver-report) is bounded like the reports the
   * store writes itself: by max_reports_per_recipient of its recipient (the originator of
   * what it reports on), charged to no originator's quota, so that neither a full queue of
   * that originator nor the reporter's own use refuses it. One reporter may hold half of
   * those (as a sender half of a queue), so that it cannot take every report slot of its
   * recipient (a report needs a ticket naming its reporter, sqlite_tickets.c, but a member of
   * a large group holds one per message it got). */
  int kind = job->n_rcpts == 1 && !strcmp(job->msg.app_id, M5_STORE_REPORT_APP) ? SQ_KIND_REPORT
                                                                                 : SQ_KIND_MSG;
  uint64_t qcap = kind == SQ_KIND_REPORT ? s->o.max_reports_per_recipient : s->o.max_per_recipient;
  uint64_t scap = kind == SQ_KIND_MSG ? s->o.max_per_recipient_per_originator
                  : qcap / 2          ? qcap / 2
                                      : 1;
  /* The originator's quota: what it has stored, plus this body. Checked before the global
   * cap, so that one sender over its share is told so instead of everyone getting 5.03. */
  if (job->n_rcpts && kind == SQ_KIND_MSG) {
    sq_ori_t use = sq_ori_get(s, &job->msg.ori, job->msg.ori_gen);
    if (use.msgs + 1 > s->o.max_msgs_per_originator ||
        use.dlvs + job->n_rcpts > s->o.max_deliveries_per_originator ||
        use.bytes + job->msg.payload_len > s->o.max_bytes_per_originator) {
      job->outcome = M5_STORE_ORIGINATOR_QUOTA;
      s->job_delta.refused_originator_quota++;
      return refused(s, job);
    }
  }
  if (s->queued + job->n_rcpts > s->o.max_queued) {
    job->outcome = M5_STORE_STORE_FULL;
    s->job_delta.refused_store_full++;
    return refused(s, job);
  }
  /* The cap counts each queue as it was before this message; so does the originator's share
   * of it, read only for a queue that could hold that many. */
  size_t stored = 0, full = 0, over = 0;
  for (size_t i = 0; i < job->n_rcpts; i++) {
    uint64_t q = sq_pending_get(s, &job->rcpts[i].addr, kind), share = 0;
    if (q < qcap && q >= scap) {
      int rc = ori_share(s, &job->msg.ori, job->msg.ori_gen, kind, &job->rcpts[i].addr, &share);
      if (rc != 0) return rc;
    }
    if (q >= qcap) {
      job->rcpts[i].status = M5_STORE_QUEUE_FULL;
      full++;
    } else if (share >= scap) {
      job->rcpts[i].status = M5_STORE_ORIGINATOR_QUOTA;
      full++;
      over++;
    } else {
      stored++;
    }
  }
  if (full && (!job->partial || stored == 0)) {
    job->outcome = over ? M5_STORE_ORIGINATOR_QUOTA : M5_STORE_QUEUE_FULL;
    if (over)
      s->job_delta.refused_originator_quota++;
    else
      s->job_delta.refused_queue_full++;
    return refused(s, job);
  }
  uint64_t msg_row = 0;
  if (stored) {
    uint64_t msg_id = msg_row = s->next_msg_id++;
    uint64_t first = s->next_dlv_id;
    s->next_dlv_id += stored;
    if (insert_message(s, &job->msg, kind, msg_id, first, stored) != 0) return M5_EIO;
    uint64_t id = first;
    sqlite3_stmt *st = s->st[ST_DLV_INSERT];
    for (size_t i = 0; i < job->n_rcpts; i++) {
      m5_store_rcpt_t *r = &job->rcpts[i];
      if (r->status != M5_STORE_ACCEPTED) continue;
      sqlite3_bind_int64(st, 1, (int64_t)id);
      sqlite3_bind_int64(st, 2, (int64_t)msg_id);
      BIND_STR(st, 3, r->addr.type);
      BIND_STR(st, 4, r->addr.addr);
      sqlite3_bind_int(st, 5, (int)job->msg.prio);
      sqlite3_bind_int64(st, 6, job->msg.expr_time);
      sqlite3_bind_int64(st, 7, r->next_attempt_ms);
      sqlite3_bind_int(st, 8, r->in_flight ? SQ_STATE_IN_FLIGHT : M5_DELIV_PENDING);
      sqlite3_bind_int64(st, 9, (int64_t)r->gen);
      if (sq_step_done(s, st, "storing a delivery") != 0) return M5_EIO;
      r->id = id++;
    }
    if (sq_tickets_put(s, job, now) != 0 || sq_tickets_used(s, job) != 0)
      return M5_EIO;
  }
  if (job->dedup_id[0] && sq_dedup_record(s, job, now) != 0) return M5_EIO;
  for (size_t i = 0; i < job->n_rcpts; i++) {
    const m5_store_rcpt_t *r = &job->rcpts[i];
    if (!r->id) continue;
    if (sq_pending_add(s, &r->addr, kind, 1) != 0) s->counts_dirty = 1;
    if (r->in_flight && sq_inflight_put(s, r->id, r->next_attempt_ms, stored == 1 ? &job->msg : NULL,
                                        stored == 1 ? r : NULL, msg_row, kind) != 0)
      s->counts_dirty = 1;
  }
  s->queued += stored;
  if (stored) {
    s->messages++;
    if (kind == SQ_KIND_MSG &&
        sq_ori_add(s, &job->msg.ori, job->msg.ori_gen, 1, (int64_t)job->msg.payload_len,
                   (int64_t)stored) != 0)
      s->counts_dirty = 1;
  }
  job->outcome = M5_STORE_ACCEPTED;
  s->job_delta.accepted++;
  return 0;
}

/* ---- final states ---- */

/* The failure report on d (now FAILED or EXPIRED), written in the transaction of the failure
 * when its originator asked for one: a message of kind SQ_KIND_REPORT from d's recipient to
 * d's originator and its PENDING delivery, due at next_ms (0: now), queued for the
 * originator's generation (sq_rebind_report_gen). Not written (0, d->report_id 0) when the
 * originator has max_reports_per_recipient reports waiting, or is a UE re-bound since. The
 * recipient's report ticket goes either way. One writer for every failure report:
 * MARK_FAILED, EXPIRE, REBIND, GROUP_SWEEP and a RESCHEDULE after one. */
static int write_report(sq_t *s, m5_store_delivery_t *d, int64_t next_ms) {
  d->report_id = 0;
  d->report_gen = 0;
  if (!d->msg.deliv_st_req || strcmp(d->msg.app_id, M5_STORE_REPORT_APP) == 0 ||
      (strcmp(d->msg.ori.type, "UE") != 0 && strcmp(d->msg.ori.type, "AS") != 0))
    return 0;
  /* this report is the one the originator asked for: the recipient reports on nothing now */
  if (sq_tickets_drop_failed(s, d) != 0) return M5_EIO;
  uint64_t gen;
  int stale;
  if (sq_rebind_report_gen(s, d, &gen, &stale) != 0) return M5_EIO;
  if (stale) {
    M5_LOGI(SQ_DOM, "%s: the failure report of MSG %s is not written: UE %s was re-bound since "
            "it sent it", s->path, d->msg.msg_id, d->msg.ori.addr);
    return 0;
  }
  if (sq_pending_get(s, &d->msg.ori, SQ_KIND_REPORT) >= s->o.max_reports_per_recipient) {
    M5_LOGW(SQ_DOM, "%s: %s:%s has %llu reports waiting (the bound): the failure report of MSG "
            "%s is not written", s->path, d->msg.ori.type, d->msg.ori.addr,
            (unsigned long long)s->o.max_reports_per_recipient, d->msg.msg_id);
    s->job_delta.reports_dropped++;
    return 0;
  }
  m5_store_delivery_t rep;
  int64_t now = sq_now_ms(s);
  d->report_gen = gen;
  if (m5_store_report_of(d, now / 1000 + s->o.report_ttl_s, &rep) != 0) return M5_ENOMEM;
  rep.msg.accepted_at_ms = now;
  uint64_t msg_id = s->next_msg_id++;
  uint64_t id = s->next_dlv_id++;
  int rc = insert_message(s, &rep.msg, SQ_KIND_REPORT, msg_id, id, 1);
  if (rc == 0) {
    sqlite3_stmt *st = s->st[ST_DLV_INSERT];
    sqlite3_bind_int64(st, 1, (int64_t)id);
    sqlite3_bind_int64(st, 2, (int64_t)msg_id);
    BIND_STR(st, 3, rep.rcpt.type);
    BIND_STR(st, 4, rep.rcpt.addr);
    sqlite3_bind_int(st, 5, (int)rep.msg.prio);
    sqlite3_bind_int64(st, 6, rep.msg.expr_time);
    sqlite3_bind_int64(st, 7, next_ms ? next_ms : now);
    sqlite3_bind_int(st, 8, M5_DELIV_PENDING);
    sqlite3_bind_int64(st, 9, (int64_t)d->report_gen);
    rc = sq_step_done(s, st, "storing a failure report");
  }
  free(rep.msg.payload);
  if (rc != 0) return M5_EIO;
  if (sq_pending_add(s, &rep.rcpt, SQ_KIND_REPORT, 1) != 0) s->counts_dirty = 1;
  s->queued++;
  s->messages++;
  s->job_delta.reports++;
  d->report_id = id;
  return 0;
}

static int conclude(sq_t *s, uint64_t id, m5_deliv_state_t state, const char *cause,
                    int64_t report_ms, m5_store_delivery_t *out, const sq_row_t *row);

/* Moves the PENDING delivery id to state (cause) and returns it in *out; the last open
 * delivery of a message takes the message and its rows with it. A FAILED or EXPIRED one
 * gets its failure report (write_report, due at report_ms) in the same transaction. */
static int finish(sq_t *s, uint64_t id, m5_deliv_state_t state, const char *cause,
                  int64_t report_ms, m5_store_delivery_t *out) {
  sq_row_t rm = {0};
  if (sq_inflight_row(s, id, out, &rm)) /* in flight since its accept: nothing to read */
    return conclude(s, id, state, cause, report_ms, out, &rm);
  sqlite3_stmt *st = s->st[ST_DLV_GET];
  sqlite3_bind_int64(st, 1, (int64_t)id);
  int r = sqlite3_step(st), rc = 0;
  if (r == SQLITE_ROW) {
    rc = read_delivery(st, out, &rm);
    rm.kind = sqlite3_column_int(st, 26) == SQ_KIND_REPORT ? SQ_KIND_REPORT : SQ_KIND_MSG;
    rm.plen = sqlite3_column_int64(st, 27);
  } else if (r == SQLITE_DONE)
    rc = M5_ENOENT;
  else {
    sq_log_error(s, "reading a delivery");
    rc = M5_EIO;
  }
  sqlite3_reset(st);
  sqlite3_clear_bindings(st);
  if (rc == 0 && out->state != M5_DELIV_PENDING) rc = M5_ENOENT;
  if (rc != 0) {
    free(out->msg.payload);
    memset(out, 0, sizeof *out);
    return rc;
  }
  return conclude(s, id, state, cause, report_ms, out, &rm);
}

/* finish() once the row is known (out, rm): the writes. */
static int conclude(sq_t *s, uint64_t id, m5_deliv_state_t state, const char *cause,
                    int64_t report_ms, m5_store_delivery_t *out, const sq_row_t *row) {
  sq_row_t rm = *row;
  int rc = 0;
  out->state = state;
  snprintf(out->failure_cause, sizeof out->failure_cause, "%s", cause);
  if (rm.open <= 1) {
    sqlite3_stmt *dr = s->st[ST_DLV_DEL_RANGE], *dm = s->st[ST_MSG_DEL];
    sqlite3_bind_int64(dr, 1, rm.first);
    sqlite3_bind_int64(dr, 2, rm.first + rm.n - 1);
    sqlite3_bind_int64(dm, 1, rm.msg);
    if (sq_step_done(s, dr, "removing deliveries") != 0) rc = M5_EIO;
    if (rc == 0 && rm.cached && sqlite3_changes(s->db) != 1) {
      /* Never seen: the copy would be of a row rolled back. Nothing was written. */
      sqlite3_reset(dm);
      sqlite3_clear_bindings(dm);
      sq_inflight_del(s, id);
      memset(out, 0, sizeof *out);
      return M5_ENOENT;
    }
    if (rc == 0 && sq_step_done(s, dm, "removing a message") != 0) rc = M5_EIO;
    if (rc == 0 && s->messages) s->messages--;
    if (rc == 0 && rm.kind == SQ_KIND_MSG &&
        sq_ori_add(s, &out->msg.ori, out->msg.ori_gen, -1, -rm.plen, -1) != 0)
      s->counts_dirty = 1;
  } else {
    sqlite3_stmt *us = s->st[ST_DLV_SET_STATE], *um = s->st[ST_MSG_DEC_OPEN];
    sqlite3_bind_int64(us, 1, (int64_t)id);
    sqlite3_bind_int(us, 2, (int)state);
    bind_text(us, 3, cause, M5_MSG_CAUSE_MAX + 1);
    sqlite3_bind_int64(um, 1, rm.msg);
    if (sq_step_done(s, us, "updating a delivery") != 0) rc = M5_EIO;
    if (rc == 0 && sq_step_done(s, um, "updating a message") != 0) rc = M5_EIO;
    if (rc == 0 && rm.kind == SQ_KIND_MSG &&
        sq_ori_add(s, &out->msg.ori, out->msg.ori_gen, 0, 0, -1) != 0)
      s->counts_dirty = 1;
  }
  if (rc != 0) {
    sqlite3_reset(s->st[ST_DLV_DEL_RANGE]);
    sqlite3_reset(s->st[ST_MSG_DEL]);
    sqlite3_reset(s->st[ST_DLV_SET_STATE]);
    sqlite3_reset(s->st[ST_MSG_DEC_OPEN]);
    return rc;
  }
  if ((state == M5_DELIV_FAILED || state == M5_DELIV_EXPIRED) && rm.kind == SQ_KIND_MSG &&
      (rc = write_report(s, out, report_ms)) != 0)
    return rc;
  if (sq_pending_add(s, &out->rcpt, rm.kind, -1) != 0) s->counts_dirty = 1;
  sq_inflight_del(s, id);
  if (s->queued) s->queued--;
  if (state == M5_DELIV_DELIVERED) s->job_delta.delivered++;
  if (state == M5_DELIV_FAILED) s->job_delta.failed++;
  if (state == M5_DELIV_EXPIRED) s->job_delta.expired++;
  return 0;
}

int sq_finish(sq_t *s, uint64_t id, m5_deliv_state_t state, const char *cause, int64_t report_ms,
              m5_store_delivery_t *out) {
  return finish(s, id, state, cause, report_ms, out);
}

static int do_mark(sq_t *s, m5_store_job_t *job, m5_deliv_state_t state) {
  if (!(job->items = calloc(1, sizeof *job->items))) return M5_ENOMEM;
  const char *cause = state == M5_DELIV_FAILED ? job->cause : "";
  int rc = finish(s, job->id, state, cause, job->next_attempt_ms, &job->items[0]);
  if (rc == 0)
    job->n_items = 1;
  else
    m5_store_job_clear(job);
  return rc;
}

static int do_reschedule(sq_t *s, m5_store_job_t *job) {
  int failed, rc = sq_rebind_reschedule(s, job, &failed);
  if (rc != 0 || failed) return rc; /* its recipient was re-bound: failed instead */
  sqlite3_stmt *st = s->st[ST_RESCHEDULE];
  sqlite3_bind_int64(st, 1, (int64_t)job->id);
  sqlite3_bind_int64(st, 2, job->next_attempt_ms);
  sqlite3_bind_int64(st, 3, (int64_t)job->attempts);
  if (sq_step_done(s, st, "rescheduling a delivery") != 0) return M5_EIO;
  if (sqlite3_changes(s->db) != 1) return M5_ENOENT;
  sq_inflight_del(s, job->id);
  return 0;
}

typedef struct {
  int64_t cutoff;
  uint64_t ids[M5_STORE_LIST_MAX];
  size_t n;
} stale_t;

static void collect_stale(const void *key, size_t klen, void *val, void *arg) {
  stale_t *c = arg;
  uint64_t id;
  if (klen != sizeof id || c->n == M5_STORE_LIST_MAX || sq_flight_since(val) > c->cutoff) return;
  memcpy(&id, key, sizeof id);
  c->ids[c->n++] = id;
}

/* In-flight deliveries never concluded (their MARK_* / RESCHEDULE failed or was never
 * submitted) become PENDING, due at once (their next_attempt_ms has passed). The set holds
 * what is in flight as of this transaction (load_counts rebuilds it after a rollback), so a
 * conclusion that failed leaves its delivery in it. */
static int do_requeue(sq_t *s, m5_store_job_t *job) {
  stale_t *c = calloc(1, sizeof *c);
  if (!c) return M5_ENOMEM;
  c->cutoff = job->now_ms;
  m5_hmap_foreach(s->inflight, collect_stale, c);
  int rc = 0;
  for (size_t i = 0; i < c->n; i++) {
    sqlite3_stmt *st = s->st[ST_REQUEUE];
    sqlite3_bind_int64(st, 1, (int64_t)c->ids[i]);
    if ((rc = sq_step_done(s, st, "queueing a delivery in flight again")) != 0) break;
    if (sqlite3_changes(s->db) == 1) job->pending++;
    sq_inflight_del(s, c->ids[i]);
  }
  free(c);
  if (rc == 0 && job->pending)
    M5_LOGW(SQ_DOM, "%s: %llu deliveries in flight were never concluded: queued again", s->path,
            (unsigned long long)job->pending);
  s->job_delta.requeued += job->pending;
  return rc;
}

static int do_expire(sq_t *s, m5_store_job_t *job) {
  size_t limit = cap_limit(job->limit);
  if (limit == 0) return 0;
  uint64_t *ids = calloc(limit, sizeof *ids);
  if (!ids) return M5_ENOMEM;
  size_t n = 0;
  sqlite3_stmt *st = s->st[ST_EXPIRED_IDS];
  /* exprTime is whole seconds: expired once its second has begun. */
  sqlite3_bind_int64(st, 1, job->now_ms / 1000);
  sqlite3_bind_int64(st, 2, (int64_t)limit);
  int r;
  while (n < limit && (r = sqlite3_step(st)) == SQLITE_ROW)
    ids[n++] = (uint64_t)sqlite3_column_int64(st, 0);
  sqlite3_reset(st);
  sqlite3_clear_bindings(st);
  int rc = 0;
  if (n < limit && r != SQLITE_DONE) {
    sq_log_error(s, "listing expired deliveries");
    rc = M5_EIO;
  }
  if (rc == 0 && n && !(job->items = calloc(n, sizeof *job->items))) rc = M5_ENOMEM;
  for (size_t i = 0; rc == 0 && i < n; i++) {
    rc = finish(s, ids[i], M5_DELIV_EXPIRED, M5_CAUSE_EXPIRED, job->next_attempt_ms,
                &job->items[job->n_items]);
    if (rc == 0) job->n_items++;
  }
  free(ids);
  if (job->n_items == 0) m5_store_job_clear(job);
  return rc;
}

void sq_run_op(sq_t *s, m5_store_job_t *job) {
  job->outcome = M5_STORE_ACCEPTED;
  memset(&job->orig_ack, 0, sizeof job->orig_ack);
  job->pending = 0;
  job->commit_no = 0;
  sqlite3_stmt *st;
  switch (job->op) {
  case M5_STORE_ACCEPT:
    job->status = do_accept(s, job);
    break;
  case M5_STORE_MARK_DELIVERED:
    job->status = do_mark(s, job, M5_DELIV_DELIVERED);
    break;
  case M5_STORE_MARK_FAILED:
    job->status = do_mark(s, job, M5_DELIV_FAILED);
    break;
  case M5_STORE_RESCHEDULE:
    job->status = do_reschedule(s, job);
    break;
  case M5_STORE_DUE:
    st = s->st[ST_DUE];
    BIND_STR(st, 1, job->rcpt.addr);
    BIND_STR(st, 2, job->rcpt.type);
    sqlite3_bind_int64(st, 3, (int64_t)cap_limit(job->limit));
    job->status = list_deliveries(s, job, st, cap_limit(job->limit));
    break;
  case M5_STORE_DUE_ANY:
    st = s->st[ST_DUE_ANY];
    sqlite3_bind_int64(st, 1, job->now_ms);
    sqlite3_bind_int64(st, 2, (int64_t)cap_limit(job->limit));
    job->status = list_deliveries(s, job, st, cap_limit(job->limit));
    break;
  case M5_STORE_EXPIRE:
    job->status = do_expire(s, job);
    break;
  case M5_STORE_COUNTS:
    job->pending = sq_pending_get(s, &job->rcpt, SQ_KIND_MSG);
    job->status = 0;
    break;
  case M5_STORE_REQUEUE_STALE:
    job->status = do_requeue(s, job);
    break;
  case M5_STORE_REBIND:
    job->status = sq_rebind_run(s, job);
    break;
  case M5_STORE_TOPIC_SUB:
    job->status = sq_topics_sub(s, job);
    break;
  case M5_STORE_TOPIC_UNSUB:
    job->status = sq_topics_unsub(s, job);
    break;
  case M5_STORE_TOPIC_SUBSCRIBERS:
    job->status = sq_topics_list(s, job);
    break;
  case M5_STORE_GROUP_SWEEP:
    job->status = sq_groups_sweep(s, job);
    break;
  default:
    job->status = M5_EINVAL;
    break;
  }
}
