/* Re-bound UE Service IDs in the SQLite backend (store.h M5_STORE_REBIND; docs/delivery.md
 * "Re-bound UE Service IDs"; docs/decisions.md). What concerns binding generations is here:
 * the statements and the jobs' parts that use them (their tables and columns are part of
 * schema version 3, in sqlite.c with the rest of the schema).
 *
 * The registry (another SQLite file, m5s.db) owns the bindings and hands out a generation per
 * change; the store keeps the last generation it has been told for each UE Service ID
 * (binding_gens) and stamps every delivery to a UE with its recipient's generation and every
 * message from a UE with its originator's. REBIND(addr, gen) then fails, in one transaction,
 * what was queued for the older generations (their failure reports written as every other
 * failure's, sqlite_ops.c), and drops the old subscriber's dedup window and report tickets.
 * Because each delivery carries its generation, the server pushes it only to a session
 * registered under that generation, so nothing of the old subscriber's can reach the new one
 * even before this job has run (a crash between the registry's commit and this one: m5s
 * repeats REBIND for every ID at start-up, and a repeat is a no-op).
 *
 * Report tickets: a UE's IMDN names only a msgId and the originator's UE Service ID. To know
 * whether it reports on something the current subscriber sent, a MSG that asks for a report
 * (delivStReqInd) leaves a ticket (originator, msgId) -> originator's generation for
 * report_window_ms; a report to a UE takes its generation from the ticket. Without a ticket it
 * goes to the current subscriber only when its dedup window holds that msgId (sent lately by
 * it: a re-bind drops the window), and is dropped otherwise (nobody asked for it, or the ID
 * was re-bound since). */
#include "sqlite_int.h"

#include "core/err.h"
#include "core/log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TICKET_SWEEP_MAX 64
#define TICKET_SWEEP_EVERY_MS 1000

static const char *const rb_sql[RB_COUNT] = {
    [RB_GEN_GET] = "SELECT gen FROM binding_gens WHERE addr = ?1",
    [RB_GEN_PUT] = "INSERT INTO binding_gens (addr, gen) VALUES (?1, ?2)"
                   " ON CONFLICT (addr) DO UPDATE SET gen = excluded.gen",
    /* the queue index (state = 0); deliveries in flight are caught by their conclusion */
    [RB_STALE_IDS] = "SELECT id FROM deliveries WHERE rcpt_addr = ?1 AND rcpt_type = 'UE'"
                     " AND state = 0 AND rcpt_gen < ?2",
    [RB_DEDUP_DROP] = "DELETE FROM dedup WHERE ori = ?1",
    [RB_DBKT_DROP] = "DELETE FROM dedup_buckets WHERE ori = ?1",
    [RB_TICKETS_DROP] = "DELETE FROM report_tickets WHERE ori = ?1 AND gen < ?2",
    [RB_TICKET_PUT] = "INSERT INTO report_tickets (ori, msg_id, gen, until_ms)"
                      " VALUES (?1, ?2, ?3, ?4) ON CONFLICT (ori, msg_id) DO NOTHING",
    [RB_TICKET_UPD] = "UPDATE report_tickets SET gen = ?3, until_ms = ?4"
                      " WHERE ori = ?1 AND msg_id = ?2",
    [RB_TICKET_DEL] = "DELETE FROM report_tickets WHERE ori = ?1 AND msg_id = ?2",
    [RB_TICKET_GET] = "SELECT gen FROM report_tickets WHERE ori = ?1 AND msg_id = ?2"
                      " AND until_ms > ?3",
    [RB_TICKET_SWEEP] = "DELETE FROM report_tickets WHERE (ori, msg_id) IN (SELECT ori, msg_id"
                        " FROM report_tickets WHERE until_ms <= ?1 LIMIT ?2) RETURNING ori",
    [RB_DEDUP_HAS] = "SELECT 1 FROM dedup WHERE ori = ?1 AND msg_id = ?2",
    [RB_DLV_RCPT] = "SELECT rcpt_type, rcpt_addr, rcpt_gen FROM deliveries"
                    " WHERE id = ?1 AND state IN (0, 4)",
};

int sq_rebind_prepare(sq_t *s) {
  for (int i = 0; i < RB_COUNT; i++)
    if (sqlite3_prepare_v3(s->db, rb_sql[i], -1, SQLITE_PREPARE_PERSISTENT, &s->rb[i], NULL) !=
        SQLITE_OK)
      return M5_EIO;
  return 0;
}

void sq_rebind_finalize(sq_t *s) {
  for (int i = 0; i < RB_COUNT; i++)
    sqlite3_finalize(s->rb[i]);
}

static void done_st(sqlite3_stmt *st) {
  sqlite3_reset(st);
  sqlite3_clear_bindings(st);
}

static int bind_str(sqlite3_stmt *st, int i, const char *t, size_t max) {
  return sqlite3_bind_text(st, i, t, (int)strnlen(t, max), SQLITE_STATIC);
}

/* The generation the store knows for the UE Service ID addr (0: none); M5_EIO. */
int sq_gen_of(sq_t *s, const char *addr, uint64_t *gen) {
  sqlite3_stmt *st = s->rb[RB_GEN_GET];
  bind_str(st, 1, addr, M5_MSG_ADDR_MAX + 1);
  int r = sqlite3_step(st);
  *gen = r == SQLITE_ROW ? (uint64_t)sqlite3_column_int64(st, 0) : 0;
  done_st(st);
  if (r != SQLITE_ROW && r != SQLITE_DONE) {
    sq_log_error(s, "reading a binding generation");
    return M5_EIO;
  }
  return 0;
}

static int is_ue(const m5_msg_addr_t *a) {
  return !strcmp(a->type, "UE");
}

static int rebind_to(sq_t *s, const char *addr, uint64_t gen, uint64_t *failed);

/* ---- ACCEPT ---- */

/* A generation newer than the store's for addr comes with a job: the REBIND of that change
 * failed or never reached the store (admin.c retries it, start-up repeats it). Until it runs,
 * the old subscriber's dedup window would swallow the new one's msgIds and its quota, queue
 * and tickets would be taken for the new one's: the store catches up here, in this job's
 * transaction, before the job looks at any of them. */
static int catch_up(sq_t *s, const char *addr, uint64_t gen, uint64_t *known) {
  if (gen <= *known) return 0;
  uint64_t failed = 0;
  int rc = rebind_to(s, addr, gen, &failed);
  if (rc != 0) return rc;
  if (*known)
    M5_LOGW(SQ_DOM, "%s: UE %s came with generation %llu, newer than the store's %llu: its "
            "re-bind caught up (%llu queued deliveries failed)", s->path, addr,
            (unsigned long long)gen, (unsigned long long)*known, (unsigned long long)failed);
  *known = gen;
  return 0;
}

int sq_rebind_accept_check(sq_t *s, m5_store_job_t *job) {
  job->discarded = false;
  s->ticket_hit = 0;
  uint64_t known;
  m5_store_msg_t *m = &job->msg;
  if (is_ue(&m->ori)) {
    if (sq_gen_of(s, m->ori.addr, &known) != 0) return M5_EIO;
    if (m->ori_gen && m->ori_gen < known) return M5_EPERM; /* its binding changed */
    if (m->ori_gen && catch_up(s, m->ori.addr, m->ori_gen, &known) != 0) return M5_EIO;
    if (!m->ori_gen) m->ori_gen = known;
  }
  /* A message goes to whoever holds the ID when it is accepted; a report, to the generation
   * that sent what it reports on, or to nobody. */
  int report = !strcmp(m->app_id, M5_STORE_REPORT_APP);
  for (size_t i = 0; i < job->n_rcpts; i++) {
    m5_store_rcpt_t *r = &job->rcpts[i];
    if (!is_ue(&r->addr)) continue;
    if (sq_gen_of(s, r->addr.addr, &known) != 0) return M5_EIO;
    if (catch_up(s, r->addr.addr, r->gen, &known) != 0) return M5_EIO;
    if (report && r->gen && r->gen < known && job->n_rcpts == 1) job->discarded = true;
    if (r->gen < known) r->gen = known;
  }
  if (job->discarded) return 0;
  if (!job->ticket_check || job->n_rcpts != 1 || !is_ue(&job->rcpts[0].addr)) return 0;
  /* A report to a UE: on a message of the generation that sent it, or on nothing. */
  sqlite3_stmt *st = s->rb[RB_TICKET_GET];
  bind_str(st, 1, job->rcpts[0].addr.addr, sizeof job->rcpts[0].addr.addr);
  bind_str(st, 2, m->msg_id, sizeof m->msg_id);
  sqlite3_bind_int64(st, 3, sq_now_ms(s));
  int r = sqlite3_step(st);
  uint64_t tgen = r == SQLITE_ROW ? (uint64_t)sqlite3_column_int64(st, 0) : 0;
  done_st(st);
  if (r != SQLITE_ROW && r != SQLITE_DONE) {
    sq_log_error(s, "reading a report ticket");
    return M5_EIO;
  }
  if (tgen) { /* the message asked for a report: the generation that sent it gets it */
    s->ticket_hit = 1; /* used up once the report is stored (sq_rebind_ticket_used) */
    if (tgen < job->rcpts[0].gen)
      job->discarded = true;
    else
      job->rcpts[0].gen = tgen;
    return 0;
  }
  /* No ticket: a message within the dedup window (which a re-bind drops) is the current
   * subscriber's; anything else is nobody's. */
  char key[M5_STORE_KEY_MAX + 1];
  snprintf(key, sizeof key, "UE:%s", job->rcpts[0].addr.addr);
  st = s->rb[RB_DEDUP_HAS];
  bind_str(st, 1, key, sizeof key);
  bind_str(st, 2, m->msg_id, sizeof m->msg_id);
  r = sqlite3_step(st);
  done_st(st);
  if (r != SQLITE_ROW && r != SQLITE_DONE) {
    sq_log_error(s, "looking up a reported msgId");
    return M5_EIO;
  }
  if (r == SQLITE_DONE) job->discarded = true;
  return 0;
}

/* A ticket per MSG asking for a report, but at most max_tickets_per_originator per UE (an
 * in-memory count, rebuilt from the table with the other figures): an authenticated UE sending
 * unique msgIds would otherwise add rows for as long as report_window_ms. Beyond the bound the
 * MSG is still accepted, without a ticket: a report on it then reaches its sender only while the
 * msgId is in the sender's dedup window (the fallback above), and is dropped after that. */
int sq_rebind_ticket_put(sq_t *s, m5_store_job_t *job, int64_t now_ms) {
  const m5_store_msg_t *m = &job->msg;
  if (!job->ticket_put || !is_ue(&m->ori)) return 0;
  if (sq_tickets_get(s, m->ori.addr) >= s->o.max_tickets_per_originator) {
    M5_LOGD(SQ_DOM, "%s: UE %s has %llu report tickets (the bound): none kept for MSG %s",
            s->path, m->ori.addr, (unsigned long long)s->o.max_tickets_per_originator, m->msg_id);
    return 0;
  }
  for (int which = RB_TICKET_PUT; which <= RB_TICKET_UPD; which++) {
    sqlite3_stmt *st = s->rb[which];
    bind_str(st, 1, m->ori.addr, sizeof m->ori.addr);
    bind_str(st, 2, m->msg_id, sizeof m->msg_id);
    sqlite3_bind_int64(st, 3, (int64_t)m->ori_gen);
    sqlite3_bind_int64(st, 4, now_ms + s->o.report_window_ms);
    if (sq_step_done(s, st, "storing a report ticket") != 0) return M5_EIO;
    if (which == RB_TICKET_PUT && sqlite3_changes(s->db) == 1) { /* a new one, not a renewal */
      if (sq_tickets_add(s, m->ori.addr, 1) != 0) s->counts_dirty = 1;
      break;
    }
  }
  return 0;
}

/* The report the ticket admitted is stored: the ticket is used up. A MSG from a UE has one
 * recipient, so one report; a message with several recipients (groups, later) would need a
 * count of reports still expected: until then the later reports fall back to the sender's
 * dedup window. */
int sq_rebind_ticket_used(sq_t *s, const m5_store_job_t *job) {
  if (!s->ticket_hit || job->n_rcpts != 1) return 0;
  s->ticket_hit = 0;
  sqlite3_stmt *st = s->rb[RB_TICKET_DEL];
  bind_str(st, 1, job->rcpts[0].addr.addr, sizeof job->rcpts[0].addr.addr);
  bind_str(st, 2, job->msg.msg_id, sizeof job->msg.msg_id);
  if (sq_step_done(s, st, "dropping a used report ticket") != 0) return M5_EIO;
  if (sqlite3_changes(s->db) == 1 && sq_tickets_add(s, job->rcpts[0].addr.addr, -1) != 0)
    s->counts_dirty = 1;
  return 0;
}

int sq_rebind_sweep(sq_t *s, int64_t now_ms) {
  if (now_ms - s->tickets_swept_ms < TICKET_SWEEP_EVERY_MS) return 0;
  sqlite3_stmt *st = s->rb[RB_TICKET_SWEEP];
  sqlite3_bind_int64(st, 1, now_ms);
  sqlite3_bind_int(st, 2, TICKET_SWEEP_MAX);
  int r, n = 0;
  while ((r = sqlite3_step(st)) == SQLITE_ROW) { /* RETURNING ori: each one's count */
    n++;
    const char *ori = (const char *)sqlite3_column_text(st, 0);
    if (ori && sq_tickets_add(s, ori, -1) != 0) s->counts_dirty = 1;
  }
  done_st(st);
  if (r != SQLITE_DONE) {
    sq_log_error(s, "dropping expired report tickets");
    return M5_EIO;
  }
  if (n < TICKET_SWEEP_MAX) s->tickets_swept_ms = now_ms;
  return 0;
}

/* ---- the failure report of a delivery failed ---- */

int sq_rebind_report_gen(sq_t *s, const m5_store_delivery_t *d, uint64_t *gen, int *stale) {
  const m5_store_msg_t *m = &d->msg;
  *gen = 0;
  *stale = 0;
  if (!is_ue(&m->ori)) return 0;
  uint64_t known;
  if (sq_gen_of(s, m->ori.addr, &known) != 0) return M5_EIO;
  if (m->ori_gen && m->ori_gen < known)
    *stale = 1; /* nobody would get it: a delivery is pushed only to its own generation */
  else
    *gen = m->ori_gen ? m->ori_gen : known;
  return 0;
}

/* Fails delivery id (RECIPIENT_REBOUND). The failure report its originator asked for is
 * written by the same code as MARK_FAILED's (sqlite_ops.c write_report), due at once; none
 * when that originator is a UE re-bound since, e.g. the re-bound ID itself. */
static int fail_rebound(sq_t *s, uint64_t id) {
  m5_store_delivery_t d;
  memset(&d, 0, sizeof d);
  int rc = sq_finish(s, id, M5_DELIV_FAILED, M5_STORE_CAUSE_REBOUND, 0, &d);
  free(d.msg.payload);
  return rc == M5_ENOENT ? 0 : rc;
}

/* ---- RESCHEDULE of a stale delivery ---- */

int sq_rebind_reschedule(sq_t *s, m5_store_job_t *job, int *done) {
  *done = 0;
  sqlite3_stmt *st = s->rb[RB_DLV_RCPT];
  sqlite3_bind_int64(st, 1, (int64_t)job->id);
  int r = sqlite3_step(st);
  m5_msg_addr_t a;
  memset(&a, 0, sizeof a);
  uint64_t dgen = 0;
  if (r == SQLITE_ROW) {
    snprintf(a.type, sizeof a.type, "%s", (const char *)sqlite3_column_text(st, 0));
    snprintf(a.addr, sizeof a.addr, "%s", (const char *)sqlite3_column_text(st, 1));
    dgen = (uint64_t)sqlite3_column_int64(st, 2);
  }
  done_st(st);
  if (r == SQLITE_DONE) return 0; /* not PENDING: the caller's update finds nothing */
  if (r != SQLITE_ROW) {
    sq_log_error(s, "reading a delivery's recipient");
    return M5_EIO;
  }
  uint64_t known;
  if (!is_ue(&a)) return 0;
  if (sq_gen_of(s, a.addr, &known) != 0) return M5_EIO;
  if (dgen >= known) return 0;
  *done = 1;
  return fail_rebound(s, job->id);
}

/* ---- REBIND ---- */

static int drop_by_key(sq_t *s, int which, const char *key, uint64_t gen, const char *what) {
  sqlite3_stmt *st = s->rb[which];
  bind_str(st, 1, key, M5_STORE_KEY_MAX + 1);
  if (which == RB_TICKETS_DROP) sqlite3_bind_int64(st, 2, (int64_t)gen);
  if (sq_step_done(s, st, what) != 0) return M5_EIO;
  if (which == RB_TICKETS_DROP && sqlite3_changes(s->db) > 0 &&
      sq_tickets_add(s, key, -(int64_t)sqlite3_changes(s->db)) != 0)
    s->counts_dirty = 1;
  return 0;
}

/* The old subscriber's Messaging Topic subscriptions, in this transaction: the new one of the
 * ID starts with none (those it made already under gen stay). */
static int drop_subscriptions(sq_t *s, const char *addr, uint64_t gen) {
  return sq_topics_drop_rebound(s, addr, gen);
}

int sq_rebind_run(sq_t *s, m5_store_job_t *job) {
  job->rebind_failed = 0;
  if (!is_ue(&job->rcpt) || !job->rcpt.addr[0] || job->gen == 0) return M5_EINVAL;
  return rebind_to(s, job->rcpt.addr, job->gen, &job->rebind_failed);
}

/* REBIND of the UE Service ID addr to generation gen (M5_STORE_REBIND, or an ACCEPT catching
 * up); *failed: the queued deliveries it failed. */
static int rebind_to(sq_t *s, const char *addr, uint64_t gen, uint64_t *failed) {
  *failed = 0;
  size_t alen = strnlen(addr, M5_MSG_ADDR_MAX + 1);
  uint64_t known;
  if (sq_gen_of(s, addr, &known) != 0) return M5_EIO;
  if (known >= gen) return 0; /* done already (a repeat at start-up) */
  /* The new generation first, so that the failures below write no report to the old
   * subscriber of this very ID (sq_rebind_report_gen finds it stale). */
  sqlite3_stmt *put = s->rb[RB_GEN_PUT];
  bind_str(put, 1, addr, alen + 1);
  sqlite3_bind_int64(put, 2, (int64_t)gen);
  if (sq_step_done(s, put, "storing a binding generation") != 0) return M5_EIO;
  /* The old generations' queue: collected first (the finish statements change the index). */
  uint64_t *ids = NULL;
  size_t n = 0, cap = 0;
  sqlite3_stmt *st = s->rb[RB_STALE_IDS];
  bind_str(st, 1, addr, alen + 1);
  sqlite3_bind_int64(st, 2, (int64_t)gen);
  int r, rc = 0;
  while ((r = sqlite3_step(st)) == SQLITE_ROW) {
    if (n == cap) {
      size_t ncap = cap ? cap * 2 : 64;
      uint64_t *nids = realloc(ids, ncap * sizeof *nids);
      if (!nids) {
        rc = M5_ENOMEM;
        break;
      }
      ids = nids;
      cap = ncap;
    }
    ids[n++] = (uint64_t)sqlite3_column_int64(st, 0);
  }
  done_st(st);
  if (rc == 0 && r != SQLITE_DONE) {
    sq_log_error(s, "listing a re-bound recipient's queue");
    rc = M5_EIO;
  }
  for (size_t i = 0; rc == 0 && i < n; i++) {
    rc = fail_rebound(s, ids[i]);
    if (rc == 0) (*failed)++;
  }
  free(ids);
  if (rc != 0) return rc;
  /* Its dedup window as an originator (MSG and IMDN keys alike), and its report tickets.
   * Dedup entries carry no generation: they are dropped unless the store never had one for
   * the ID (a store upgraded from schema 2, whose entries belong to the current binding, or
   * an ID bound for the first time, which has none). */
  char key[M5_STORE_KEY_MAX + 1];
  snprintf(key, sizeof key, "UE:%s", addr);
  if ((known &&
       (drop_by_key(s, RB_DEDUP_DROP, key, 0, "dropping a re-bound sender's dedup entries") != 0 ||
        drop_by_key(s, RB_DBKT_DROP, key, 0, "dropping a re-bound sender's dedup buckets") != 0)) ||
      drop_by_key(s, RB_TICKETS_DROP, addr, gen,
                  "dropping a re-bound sender's report tickets") != 0 ||
      drop_subscriptions(s, addr, gen) != 0)
    return M5_EIO;
  if (known) sq_dbkt_forget(s); /* its cached bucket counts */
  if (known || *failed)
    M5_LOGI(SQ_DOM, "UE %s re-bound (generation %llu): %llu queued deliveries failed", addr,
          (unsigned long long)gen, (unsigned long long)*failed);
  return 0;
}
