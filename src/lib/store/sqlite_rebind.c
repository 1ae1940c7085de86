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
 * Report tickets (sqlite_tickets.c) are checked here, in ACCEPT, once the generations are
 * stamped: a report to a UE goes to the generation in its ticket, and a REBIND drops the old
 * subscriber's tickets as an originator. */
#include "sqlite_int.h"

#include "core/err.h"
#include "core/log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const rb_sql[RB_COUNT] = {
    [RB_GEN_GET] = "SELECT gen FROM binding_gens WHERE addr = ?1",
    [RB_GEN_PUT] = "INSERT INTO binding_gens (addr, gen) VALUES (?1, ?2)"
                   " ON CONFLICT (addr) DO UPDATE SET gen = excluded.gen",
    /* the queue index (state = 0); deliveries in flight are caught by their conclusion */
    [RB_STALE_IDS] = "SELECT id FROM deliveries WHERE rcpt_addr = ?1 AND rcpt_type = 'UE'"
                     " AND state = 0 AND rcpt_gen < ?2",
    [RB_DEDUP_DROP] = "DELETE FROM dedup WHERE ori = ?1",
    [RB_DLV_RCPT] = "SELECT rcpt_type, rcpt_addr, rcpt_gen FROM deliveries"
                    " WHERE id = ?1 AND state IN (0, 4)",
};

int sq_rebind_prepare(sq_t *s) {
  return sq_prepare_set(s, rb_sql, s->rb, RB_COUNT);
}

void sq_rebind_finalize(sq_t *s) {
  sq_finalize_set(s->rb, RB_COUNT);
}

/* binding_gens rows of recent IDs (none: generation 0) are also kept in memory, a
 * write-through cache (RB_GEN_PUT is its only writer, rebind_to), emptied when it is full and
 * after any rollback: an ACCEPT reads the generation of its originator and of its recipient,
 * two SELECTs per message otherwise. The value is gen + 1 (NULL: not cached). */
#define GENS_CACHE_MAX 65536

void sq_gens_forget(sq_t *s) {
  if (s->gens) m5_hmap_free(s->gens, NULL);
  s->gens = NULL;
}

static void gens_put(sq_t *s, const char *addr, size_t alen, uint64_t gen) {
  if (gen == UINT64_MAX) return;
  if (s->gens && m5_hmap_count(s->gens) >= GENS_CACHE_MAX) sq_gens_forget(s);
  if (!s->gens && !(s->gens = m5_hmap_new())) return;
  if (m5_hmap_put(s->gens, addr, alen, (void *)(uintptr_t)(gen + 1), NULL) != 0)
    sq_gens_forget(s); /* out of memory: a stale value must not stay */
}

/* The generation the store knows for the UE Service ID addr (0: none); M5_EIO. */
int sq_gen_of(sq_t *s, const char *addr, uint64_t *gen) {
  size_t alen = strnlen(addr, M5_MSG_ADDR_MAX + 1);
  uintptr_t v = s->gens ? (uintptr_t)m5_hmap_get(s->gens, addr, alen) : 0;
  if (v) {
    *gen = (uint64_t)v - 1;
    return 0;
  }
  sqlite3_stmt *st = s->rb[RB_GEN_GET];
  sq_bind_str(st, 1, addr, M5_MSG_ADDR_MAX + 1);
  int r = sqlite3_step(st);
  *gen = r == SQLITE_ROW ? (uint64_t)sqlite3_column_int64(st, 0) : 0;
  sq_done(st);
  if (r != SQLITE_ROW && r != SQLITE_DONE) {
    sq_log_error(s, "reading a binding generation");
    return M5_EIO;
  }
  gens_put(s, addr, alen, *gen);
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
  /* A report to a UE or an AS: on a message that asked its reporter for one, or on nothing. */
  return sq_tickets_check(s, job);
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
  sq_done(st);
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

static int drop_by_key(sq_t *s, int which, const char *key, const char *what) {
  sqlite3_stmt *st = s->rb[which];
  sq_bind_str(st, 1, key, M5_STORE_KEY_MAX + 1);
  return sq_step_done(s, st, what);
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
  sq_bind_str(put, 1, addr, alen + 1);
  sqlite3_bind_int64(put, 2, (int64_t)gen);
  if (sq_step_done(s, put, "storing a binding generation") != 0) return M5_EIO;
  gens_put(s, addr, alen, gen);
  /* The old generations' queue: collected first (the finish statements change the index). */
  uint64_t *ids = NULL;
  size_t n = 0, cap = 0;
  sqlite3_stmt *st = s->rb[RB_STALE_IDS];
  sq_bind_str(st, 1, addr, alen + 1);
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
  sq_done(st);
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
       drop_by_key(s, RB_DEDUP_DROP, key, "dropping a re-bound sender's dedup entries") != 0) ||
      sq_tickets_drop_rebound(s, addr, gen) != 0 || drop_subscriptions(s, addr, gen) != 0)
    return M5_EIO;
  if (known) sq_dedup_forget_ori(s, key); /* its counts per bucket */
  if (known || *failed)
    M5_LOGI(SQ_DOM, "UE %s re-bound (generation %llu): %llu queued deliveries failed", addr,
          (unsigned long long)gen, (unsigned long long)*failed);
  return 0;
}
