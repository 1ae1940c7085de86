/* Report tickets in the SQLite backend (store.h ACCEPT's ticket_put / ticket_check;
 * docs/delivery.md "Reports: who may report on what"; docs/store.md). Schema version 6
 * (sqlite.c).
 *
 * A report (a UE's IMDN, an AS's deliver-report; TS 23.554 cl. 8.3.3) names only a msgId, its
 * reporter (oriAddr) and the originator of what it reports on (destAddr). Anybody who learns a
 * msgId could therefore report on it, to a UE or to an AS. So a message that asks for a report
 * (delivStReqInd) leaves, in the transaction that stores it, one ticket per recipient it was
 * stored for: (originator, msgId, that recipient) -> the originator's generation, the
 * recipient's generation, until_ms. A report is stored only on the ticket naming its reporter,
 * which it uses up (a recipient reports once; a retransmission is caught by the dedup window);
 * without one it is discarded: stored for nobody, only its dedup entry written, and the
 * reporter gets the answer a stored report gets, so a report tells nobody whether a ticket
 * existed.
 *
 * Generations: a report to a UE goes to the generation that sent the message (the ticket's),
 * or to nobody when the UE Service ID was re-bound since (REBIND drops the originator's tickets
 * of older generations: sq_tickets_drop_rebound). A UE reporter must hold the generation the
 * message was stored for: a new subscriber of a re-bound UE Service ID cannot report on what
 * the previous one received (those tickets stay until they expire, useless, and count in their
 * originator's bound until then).
 *
 * A delivery that fails or expires takes its recipient's ticket with it (in the transaction
 * that writes the store's own failure report): the sender has its report, and the recipient
 * never got the message.
 *
 * Bound: at most max_tickets_per_originator per originator (an in-memory count per typed key,
 * rebuilt from the table with the other figures, sqlite_counts.c), so that an authenticated
 * sender of unique msgIds, or of group messages, cannot grow the table. Beyond it a stored
 * recipient gets no ticket and its report on that message is discarded: the sender still gets
 * the failure and expiry reports the store writes itself (sqlite_ops.c), which need none. */
#include "sqlite_int.h"

#include "core/err.h"
#include "core/log.h"

#include <stdio.h>
#include <string.h>

#define TICKET_SWEEP_MAX 64
#define TICKET_SWEEP_EVERY_MS 1000

static const char *const tk_sql[TK_COUNT] = {
    [TK_PUT] = "INSERT INTO report_tickets (ori, msg_id, rep, gen, rep_gen, until_ms)"
               " VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (ori, msg_id, rep) DO NOTHING",
    [TK_UPD] = "UPDATE report_tickets SET gen = ?4, rep_gen = ?5, until_ms = ?6"
               " WHERE ori = ?1 AND msg_id = ?2 AND rep = ?3",
    /* the reporter's own ticket first; "" (any reporter) is a ticket of schema 5 */
    [TK_GET] = "SELECT rep, gen, rep_gen FROM report_tickets WHERE ori = ?1 AND msg_id = ?2"
               " AND rep IN (?3, '') AND until_ms > ?4 ORDER BY rep DESC LIMIT 1",
    [TK_DEL] = "DELETE FROM report_tickets WHERE ori = ?1 AND msg_id = ?2 AND rep = ?3",
    [TK_DROP_REBOUND] = "DELETE FROM report_tickets WHERE ori = ?1 AND gen < ?2",
    [TK_SWEEP] = "DELETE FROM report_tickets WHERE (ori, msg_id, rep) IN (SELECT ori, msg_id, rep"
                 " FROM report_tickets WHERE until_ms <= ?1 LIMIT ?2) RETURNING ori",
};

int sq_tickets_prepare(sq_t *s) {
  return sq_prepare_set(s, tk_sql, s->tk, TK_COUNT);
}

void sq_tickets_finalize(sq_t *s) {
  sq_finalize_set(s->tk, TK_COUNT);
}

static void bind_key(sqlite3_stmt *st, int i, const char *key) {
  sqlite3_bind_text(st, i, key, (int)strnlen(key, M5_STORE_KEY_MAX + 1), SQLITE_STATIC);
}

/* "UE:ue1", "AS:as1": the typed key of an originator or a reporter. */
static void key_of(char out[M5_STORE_KEY_MAX + 1], const m5_msg_addr_t *a) {
  snprintf(out, M5_STORE_KEY_MAX + 1, "%s:%s", a->type, a->addr);
}

static int is_ue(const m5_msg_addr_t *a) {
  return !strcmp(a->type, "UE");
}

/* Reports go to a UE or an AS (ue_accept.c resolves no other recipient for them). */
static int reportable(const m5_msg_addr_t *a) {
  return is_ue(a) || !strcmp(a->type, "AS");
}

int sq_tickets_check(sq_t *s, m5_store_job_t *job) {
  s->ticket_hit = 0;
  if (job->discarded || !job->ticket_check || job->n_rcpts != 1) return 0;
  m5_store_rcpt_t *r = &job->rcpts[0];
  const m5_store_msg_t *m = &job->msg;
  char ori[M5_STORE_KEY_MAX + 1], rep[M5_STORE_KEY_MAX + 1];
  key_of(ori, &r->addr);
  key_of(rep, &m->ori);
  sqlite3_stmt *st = s->tk[TK_GET];
  bind_key(st, 1, ori);
  sqlite3_bind_text(st, 2, m->msg_id, (int)strnlen(m->msg_id, sizeof m->msg_id), SQLITE_STATIC);
  bind_key(st, 3, rep);
  sqlite3_bind_int64(st, 4, sq_now_ms(s));
  int rc = sqlite3_step(st);
  if (rc == SQLITE_ROW) {
    const char *t = (const char *)sqlite3_column_text(st, 0);
    snprintf(s->ticket_rep, sizeof s->ticket_rep, "%s", t ? t : "");
  }
  uint64_t gen = rc == SQLITE_ROW ? (uint64_t)sqlite3_column_int64(st, 1) : 0;
  uint64_t rep_gen = rc == SQLITE_ROW ? (uint64_t)sqlite3_column_int64(st, 2) : 0;
  sq_done(st);
  if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
    sq_log_error(s, "reading a report ticket");
    return M5_EIO;
  }
  if (rc == SQLITE_DONE) { /* nobody asked this reporter for a report on it */
    job->discarded = true;
    return 0;
  }
  /* A UE reporter of another generation than the one the message was stored for is a new
   * subscriber of a re-bound ID (m->ori_gen is its session's, or the store's current one). */
  if (s->ticket_rep[0] && is_ue(&m->ori) && rep_gen < m->ori_gen) {
    job->discarded = true;
    return 0;
  }
  if (is_ue(&r->addr)) { /* the generation that sent the message gets its report */
    if (gen < r->gen) {
      job->discarded = true;
      return 0;
    }
    r->gen = gen;
  }
  s->ticket_hit = 1; /* used up once the report is stored (sq_tickets_used) */
  return 0;
}

int sq_tickets_put(sq_t *s, m5_store_job_t *job, int64_t now_ms) {
  const m5_store_msg_t *m = &job->msg;
  if (!job->ticket_put || !m->deliv_st_req || !reportable(&m->ori)) return 0;
  char ori[M5_STORE_KEY_MAX + 1], rep[M5_STORE_KEY_MAX + 1];
  key_of(ori, &m->ori);
  uint64_t have = sq_tickets_get(s, ori);
  size_t without = 0;
  for (size_t i = 0; i < job->n_rcpts; i++) {
    const m5_store_rcpt_t *r = &job->rcpts[i];
    if (!r->id) continue; /* not stored for it: it cannot report */
    if (have >= s->o.max_tickets_per_originator) {
      without++;
      continue;
    }
    key_of(rep, &r->addr);
    for (int which = TK_PUT; which <= TK_UPD; which++) {
      sqlite3_stmt *st = s->tk[which];
      bind_key(st, 1, ori);
      sqlite3_bind_text(st, 2, m->msg_id, (int)strnlen(m->msg_id, sizeof m->msg_id),
                        SQLITE_STATIC);
      bind_key(st, 3, rep);
      sqlite3_bind_int64(st, 4, (int64_t)m->ori_gen);
      sqlite3_bind_int64(st, 5, (int64_t)r->gen);
      sqlite3_bind_int64(st, 6, now_ms + s->o.report_window_ms);
      if (sq_step_done(s, st, "storing a report ticket") != 0) return M5_EIO;
      if (which == TK_PUT && sqlite3_changes(s->db) == 1) { /* a new one, not a renewal */
        have++;
        if (sq_tickets_add(s, ori, 1) != 0) s->counts_dirty = 1;
        break;
      }
    }
  }
  if (without)
    M5_LOGD(SQ_DOM, "%s: %s has %llu report tickets (the bound): %zu recipients of %s got none",
            s->path, ori, (unsigned long long)s->o.max_tickets_per_originator, without, m->msg_id);
  return 0;
}

int sq_tickets_used(sq_t *s, const m5_store_job_t *job) {
  if (!s->ticket_hit || job->n_rcpts != 1 || !job->rcpts[0].id) return 0;
  s->ticket_hit = 0;
  char ori[M5_STORE_KEY_MAX + 1];
  key_of(ori, &job->rcpts[0].addr);
  sqlite3_stmt *st = s->tk[TK_DEL];
  bind_key(st, 1, ori);
  sqlite3_bind_text(st, 2, job->msg.msg_id, (int)strnlen(job->msg.msg_id, sizeof job->msg.msg_id),
                    SQLITE_STATIC);
  bind_key(st, 3, s->ticket_rep);
  if (sq_step_done(s, st, "dropping a used report ticket") != 0) return M5_EIO;
  if (sqlite3_changes(s->db) == 1 && sq_tickets_add(s, ori, -1) != 0) s->counts_dirty = 1;
  return 0;
}

int sq_tickets_drop_failed(sq_t *s, const m5_store_delivery_t *d) {
  if (!d->msg.deliv_st_req || !reportable(&d->msg.ori) || !reportable(&d->rcpt)) return 0;
  char ori[M5_STORE_KEY_MAX + 1], rep[M5_STORE_KEY_MAX + 1];
  key_of(ori, &d->msg.ori);
  key_of(rep, &d->rcpt);
  sqlite3_stmt *st = s->tk[TK_DEL];
  bind_key(st, 1, ori);
  sqlite3_bind_text(st, 2, d->msg.msg_id, (int)strnlen(d->msg.msg_id, sizeof d->msg.msg_id),
                    SQLITE_STATIC);
  bind_key(st, 3, rep);
  if (sq_step_done(s, st, "dropping the report ticket of a failed delivery") != 0) return M5_EIO;
  if (sqlite3_changes(s->db) == 1 && sq_tickets_add(s, ori, -1) != 0) s->counts_dirty = 1;
  return 0;
}

int sq_tickets_drop_rebound(sq_t *s, const char *ue, uint64_t gen) {
  char ori[M5_STORE_KEY_MAX + 1];
  snprintf(ori, sizeof ori, "UE:%s", ue);
  sqlite3_stmt *st = s->tk[TK_DROP_REBOUND];
  bind_key(st, 1, ori);
  sqlite3_bind_int64(st, 2, (int64_t)gen);
  if (sq_step_done(s, st, "dropping a re-bound sender's report tickets") != 0) return M5_EIO;
  int n = sqlite3_changes(s->db);
  if (n > 0 && sq_tickets_add(s, ori, -(int64_t)n) != 0) s->counts_dirty = 1;
  return 0;
}

int sq_tickets_sweep(sq_t *s, int64_t now_ms) {
  if (now_ms - s->tickets_swept_ms < TICKET_SWEEP_EVERY_MS) return 0;
  sqlite3_stmt *st = s->tk[TK_SWEEP];
  sqlite3_bind_int64(st, 1, now_ms);
  sqlite3_bind_int(st, 2, TICKET_SWEEP_MAX);
  int r, n = 0;
  while ((r = sqlite3_step(st)) == SQLITE_ROW) { /* RETURNING ori: each one's count */
    n++;
    const char *ori = (const char *)sqlite3_column_text(st, 0);
    if (ori && sq_tickets_add(s, ori, -1) != 0) s->counts_dirty = 1;
  }
  sq_done(st);
  if (r != SQLITE_DONE) {
    sq_log_error(s, "dropping expired report tickets");
    return M5_EIO;
  }
  if (n < TICKET_SWEEP_MAX) s->tickets_swept_ms = now_ms;
  return 0;
}
