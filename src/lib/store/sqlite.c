/* m5_store on SQLite (store.h, docs/store.md): open and checks, schema, and the writer
 * thread with group commit. What each job does is in sqlite_ops.c (the dedup window in
 * sqlite_dedup.c, binding generations and
 * REBIND in sqlite_rebind.c, report tickets in sqlite_tickets.c, topic subscriptions in
 * sqlite_topics.c, GROUP_SWEEP in sqlite_groups.c); the in-memory figures (queues, quotas, the in-flight set) in
 * sqlite_counts.c.
 *
 * Pragmas: WAL with synchronous=FULL, so each COMMIT is one fsync of the WAL and a commit
 * that returned survives a crash and a power loss. One connection on one thread (a
 * core/jobthread) serves writes and reads alike: reads are consistent with every earlier
 * job, they are cheap point and index-range queries, and a second connection would buy
 * nothing while the writer is the only client.
 *
 * Group commit: jobs are also kept in a FIFO of our own, in the order the job thread's
 * mailbox holds them. When the job thread runs the oldest unfinished job, we take every job
 * waiting in that FIFO (up to SQ_BATCH_MAX), run them all in one transaction and COMMIT once
 * (should a job fail half-way, which takes a full disk or an I/O error, the transaction is
 * rolled back and the batch runs again with a savepoint per job, so that one failing job
 * does not undo the others: see run_jobs). The job
 * thread then replies to them in order, finding the rest already done. So no reply leaves
 * before the commit that carries its writes, and a burst of N jobs costs about N /
 * SQ_BATCH_MAX fsyncs rather than N. */
#include "sqlite_int.h"

#include "core/err.h"
#include "core/fs.h"
#include "core/log.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#define SQ_BATCH_MAX 256
#define SQ_SCHEMA_VERSION 7

/* Deliveries keep prio and expr_time of their message so that the queue, retry and expiry
 * scans each read one partial index that holds only PENDING rows. Delivery ids of one
 * message are consecutive (first_dlv .. first_dlv + n_dlv - 1), which lets the last final
 * delivery remove the message and its rows without another index. */
static const char schema[] =
    "CREATE TABLE messages ("
    " id INTEGER PRIMARY KEY,"
    " ori_type TEXT NOT NULL, ori_addr TEXT NOT NULL,"
    " dest_type TEXT NOT NULL, dest_addr TEXT NOT NULL,"
    " msg_id TEXT NOT NULL, app_id TEXT NOT NULL,"
    " prio INTEGER NOT NULL, deliv_st_req INTEGER NOT NULL, sto_fwd INTEGER NOT NULL,"
    " expr_time INTEGER NOT NULL, accepted_at_ms INTEGER NOT NULL,"
    " open INTEGER NOT NULL, first_dlv INTEGER NOT NULL, n_dlv INTEGER NOT NULL,"
    " payload BLOB NOT NULL);"
    "CREATE TABLE deliveries ("
    " id INTEGER PRIMARY KEY,"
    " msg INTEGER NOT NULL,"
    " rcpt_type TEXT NOT NULL, rcpt_addr TEXT NOT NULL,"
    " state INTEGER NOT NULL, prio INTEGER NOT NULL, expr_time INTEGER NOT NULL,"
    " attempts INTEGER NOT NULL, next_attempt_ms INTEGER NOT NULL, cause TEXT NOT NULL);"
    "CREATE INDEX deliveries_queue ON deliveries (rcpt_addr, rcpt_type, prio DESC, id)"
    " WHERE state = 0;"
    "CREATE INDEX deliveries_retry ON deliveries (next_attempt_ms, id) WHERE state = 0;"
    "CREATE INDEX deliveries_expiry ON deliveries (expr_time, id)"
    " WHERE state = 0 AND expr_time > 0;"
    "CREATE TABLE dedup ("
    " ori TEXT NOT NULL, msg_id TEXT NOT NULL, bucket INTEGER NOT NULL,"
    " status TEXT NOT NULL, cause TEXT NOT NULL,"
    " PRIMARY KEY (ori, msg_id)) WITHOUT ROWID;"
    "CREATE TABLE dedup_buckets ("
    " ori TEXT NOT NULL, bucket INTEGER NOT NULL, n INTEGER NOT NULL,"
    " PRIMARY KEY (ori, bucket)) WITHOUT ROWID;"
    "CREATE INDEX dedup_buckets_age ON dedup_buckets (bucket);"
    "PRAGMA user_version = 2;";
/* A new store is created as schema 2 and upgraded by the same steps as an old one. */

/* From version 1: the dedup index on (ori, bucket) is gone. Dropping an originator's bucket
 * reads its entries through the primary key (at most dedup_max_per_sender, once a bucket),
 * while the index cost a scattered B-tree write for every message. */
static const char migrate_1_to_2[] = "DROP INDEX IF EXISTS dedup_sender_bucket;"
                                     "PRAGMA user_version = 2;";

/* ---- schema 3 (issue 9) ----
 * Reports written with their failure, quotas per originator: messages.kind, SQ_KIND_MSG (0)
 * for what was ACCEPTed, charged to its originator's quota; SQ_KIND_REPORT (1) for a
 * failure/expiry report the store wrote itself in the transaction of the failure, counted
 * against the recipient's max_reports_per_recipient instead of max_per_recipient and charged
 * to nobody. Existing rows are messages (0).
 * Re-bound UE Service IDs (sqlite_rebind.c): the binding generation a message's UE
 * originator sent under (messages.ori_gen) and a delivery's UE recipient is queued for
 * (deliveries.rcpt_gen); the last generation the store was told per UE Service ID
 * (binding_gens); report tickets (originator, msgId) -> the generation that asked for a
 * report. Existing rows belong to generation 1, which the registry gives existing bindings. */
static const char migrate_2_to_3[] =
    "ALTER TABLE messages ADD COLUMN kind INTEGER NOT NULL DEFAULT 0;"
    "ALTER TABLE messages ADD COLUMN ori_gen INTEGER NOT NULL DEFAULT 1;"
    "ALTER TABLE deliveries ADD COLUMN rcpt_gen INTEGER NOT NULL DEFAULT 1;"
    "CREATE TABLE binding_gens (addr TEXT PRIMARY KEY, gen INTEGER NOT NULL) WITHOUT ROWID;"
    "CREATE TABLE report_tickets ("
    " ori TEXT NOT NULL, msg_id TEXT NOT NULL, gen INTEGER NOT NULL, until_ms INTEGER NOT NULL,"
    " PRIMARY KEY (ori, msg_id)) WITHOUT ROWID;"
    "CREATE INDEX report_tickets_age ON report_tickets (until_ms);"
    "PRAGMA user_version = 3;";

/* ---- schema 4 (issue 10) ----
 * Messaging Topic subscriptions (sqlite_topics.c): (topic, subscriber) -> the subscriber's
 * binding generation (a UE's; 0 for an AS) and the subscription's expiry (Unix seconds). By
 * subscriber for its bound, TOPIC_UNSUB and REBIND; by expiry for the sweep. */
static const char migrate_3_to_4[] =
    "CREATE TABLE topic_subs ("
    " topic TEXT NOT NULL, sub_type TEXT NOT NULL, sub_addr TEXT NOT NULL,"
    " gen INTEGER NOT NULL, expiry INTEGER NOT NULL, since_ms INTEGER NOT NULL,"
    " PRIMARY KEY (topic, sub_type, sub_addr)) WITHOUT ROWID;"
    "CREATE INDEX topic_subs_by_sub ON topic_subs (sub_addr, sub_type);"
    "CREATE INDEX topic_subs_age ON topic_subs (expiry);"
    "PRAGMA user_version = 4;";

/* ---- schema 5 (issue 10) ----
 * Group and broadcast messages (sqlite_groups.c): messages.group_gen, the generation of the
 * group or area a GROUP / BC message's recipients were read at (0 for every other message, and
 * so for every existing row). Two partial indexes hold only the group messages, so a
 * point-to-point message writes neither: by (dest, id) for the sweep of one group or one member
 * of it, by id for the sweep of every group at start-up. Both carry what the sweep reads
 * (the generation and the range of the message's deliveries), so it never reads a message's
 * row, whose payload comes before group_gen in the record. */
static const char migrate_4_to_5[] =
    "ALTER TABLE messages ADD COLUMN group_gen INTEGER NOT NULL DEFAULT 0;"
    "CREATE INDEX messages_group ON messages"
    " (dest_type, dest_addr, id, group_gen, first_dlv, n_dlv) WHERE group_gen > 0;"
    "CREATE INDEX messages_group_all ON messages"
    " (id, dest_type, dest_addr, group_gen, first_dlv, n_dlv) WHERE group_gen > 0;"
    "PRAGMA user_version = 5;";

/* ---- schema 6 (issue 10) ----
 * Report tickets name their reporter (sqlite_tickets.c): (originator, msgId, reporter) ->
 * the originator's generation, the reporter's generation (a UE recipient's when the message
 * was stored), until_ms. Originator and reporter are typed keys ("UE:ue1", "AS:as1"): every
 * originator kind gets tickets now, one per stored recipient. The key changes, so the table is
 * made again:
 *  - a ticket of schema 5 (a UE's MSG, before reporters were named) becomes one with reporter
 *    "" (any reporter, its reporter generation unchecked): the report it was kept for, which
 *    may come from any recipient of that message, still reaches its sender; such tickets end
 *    within report_window_ms like the others (no new one is ever written);
 *  - a message of an AS asking for a report that is still queued gets a ticket per queued
 *    recipient (an AS had none before), living twice the message's own time to live from its
 *    acceptance (as m5s gives a ticket 2 x store.max_ttl_s); reports on an AS's messages
 *    delivered before the upgrade have no ticket and are dropped. */
static const char migrate_5_to_6[] =
    "CREATE TABLE report_tickets_6 ("
    " ori TEXT NOT NULL, msg_id TEXT NOT NULL, rep TEXT NOT NULL,"
    " gen INTEGER NOT NULL, rep_gen INTEGER NOT NULL, until_ms INTEGER NOT NULL,"
    " PRIMARY KEY (ori, msg_id, rep)) WITHOUT ROWID;"
    "INSERT INTO report_tickets_6 (ori, msg_id, rep, gen, rep_gen, until_ms)"
    " SELECT 'UE:' || ori, msg_id, '', gen, 0, until_ms FROM report_tickets;"
    "INSERT OR IGNORE INTO report_tickets_6 (ori, msg_id, rep, gen, rep_gen, until_ms)"
    " SELECT m.ori_type || ':' || m.ori_addr, m.msg_id, d.rcpt_type || ':' || d.rcpt_addr,"
    " m.ori_gen, d.rcpt_gen, CASE WHEN m.expr_time > 0"
    " THEN max(m.accepted_at_ms, 2 * m.expr_time * 1000 - m.accepted_at_ms)"
    " ELSE m.accepted_at_ms + 172800000 END"
    " FROM deliveries d JOIN messages m ON m.id = d.msg"
    " WHERE d.state IN (0, 4) AND m.kind = 0 AND m.deliv_st_req = 1 AND m.ori_type = 'AS';"
    "DROP TABLE report_tickets;"
    "ALTER TABLE report_tickets_6 RENAME TO report_tickets;"
    "CREATE INDEX report_tickets_age ON report_tickets (until_ms);"
    "PRAGMA user_version = 6;";

/* ---- schema 7 (issue 11) ----
 * The dedup counts per (originator, bucket) are kept in memory alone (sqlite_dedup.c),
 * rebuilt from dedup at open: dedup_buckets goes. Its rows were a function of dedup's, so a
 * store of version 6 keeps its whole dedup window; each message no longer pays an upsert to
 * this second B-tree. */
static const char migrate_6_to_7[] = "DROP INDEX IF EXISTS dedup_buckets_age;"
                                     "DROP TABLE IF EXISTS dedup_buckets;"
                                     "PRAGMA user_version = 7;";

/* Upgrades, in order: migrations[v] takes schema v to v + 1. */
static const char *const migrations[] = {NULL,           migrate_1_to_2, migrate_2_to_3,
                                         migrate_3_to_4, migrate_4_to_5, migrate_5_to_6,
                                         migrate_6_to_7};

#define DLV_COLS                                                                                   \
  "d.id, d.rcpt_type, d.rcpt_addr, d.state, d.attempts, d.next_attempt_ms, d.cause,"               \
  " m.ori_type, m.ori_addr, m.dest_type, m.dest_addr, m.msg_id, m.app_id, m.prio,"                 \
  " m.deliv_st_req, m.sto_fwd, m.expr_time, m.accepted_at_ms, m.payload,"                          \
  " m.id, m.open, m.first_dlv, m.n_dlv, d.rcpt_gen, m.ori_gen, m.group_gen"
#define DLV_FROM " FROM deliveries d JOIN messages m ON m.id = d.msg"

static const char *const sql[ST_COUNT] = {
    [ST_BEGIN] = "BEGIN IMMEDIATE",
    [ST_COMMIT] = "COMMIT",
    [ST_ROLLBACK] = "ROLLBACK",
    [ST_SAVEPOINT] = "SAVEPOINT job",
    [ST_RELEASE] = "RELEASE job",
    [ST_ROLLBACK_TO] = "ROLLBACK TO job",
    [ST_MSG_INSERT] = "INSERT INTO messages (id, ori_type, ori_addr, dest_type, dest_addr, msg_id,"
                      " app_id, prio, deliv_st_req, sto_fwd, expr_time, accepted_at_ms, open,"
                      " first_dlv, n_dlv, payload, kind, ori_gen, group_gen) VALUES"
                      " (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16,"
                      " ?17, ?18, ?19)",
    [ST_DLV_INSERT] = "INSERT INTO deliveries (id, msg, rcpt_type, rcpt_addr, state, prio,"
                      " expr_time, attempts, next_attempt_ms, cause, rcpt_gen) VALUES"
                      " (?1, ?2, ?3, ?4, ?8, ?5, ?6, 0, ?7, '', ?9)",
    /* DLV_COLS with the payload left out (NULL): what a final state needs, and the message's
     * kind and payload length (for the quota; length() of a blob does not read it). */
    [ST_DLV_GET] = "SELECT d.id, d.rcpt_type, d.rcpt_addr, d.state, d.attempts, d.next_attempt_ms,"
                   " d.cause, m.ori_type, m.ori_addr, m.dest_type, m.dest_addr, m.msg_id,"
                   " m.app_id, m.prio, m.deliv_st_req, m.sto_fwd, m.expr_time,"
                   " m.accepted_at_ms, NULL, m.id, m.open, m.first_dlv, m.n_dlv, d.rcpt_gen,"
                   " m.ori_gen, m.group_gen, m.kind, length(m.payload)" DLV_FROM " WHERE d.id = ?1",
    [ST_DLV_SET_STATE] = "UPDATE deliveries SET state = ?2, cause = ?3 WHERE id = ?1",
    [ST_DLV_DEL_RANGE] = "DELETE FROM deliveries WHERE id BETWEEN ?1 AND ?2",
    [ST_MSG_DEC_OPEN] = "UPDATE messages SET open = open - 1 WHERE id = ?1",
    [ST_MSG_DEL] = "DELETE FROM messages WHERE id = ?1",
    [ST_RESCHEDULE] = "UPDATE deliveries SET next_attempt_ms = ?2, attempts = ?3, state = 0"
                      " WHERE id = ?1 AND state IN (0, 4)", /* 4: SQ_STATE_IN_FLIGHT */
    [ST_DUE] = "SELECT " DLV_COLS DLV_FROM " WHERE d.rcpt_addr = ?1 AND d.rcpt_type = ?2"
               " AND d.state = 0 ORDER BY d.prio DESC, d.id LIMIT ?3",
    [ST_DUE_ANY] = "SELECT " DLV_COLS DLV_FROM " WHERE d.state = 0 AND d.next_attempt_ms <= ?1"
                   " ORDER BY d.next_attempt_ms, d.id LIMIT ?2",
    [ST_EXPIRED_IDS] = "SELECT id FROM deliveries WHERE state = 0 AND expr_time > 0"
                       " AND expr_time <= ?1 ORDER BY expr_time, id LIMIT ?2",
    [ST_DEDUP_GET] = "SELECT bucket, status, cause FROM dedup WHERE ori = ?1 AND msg_id = ?2",
    [ST_DEDUP_DEL_ONE] = "DELETE FROM dedup WHERE ori = ?1 AND msg_id = ?2",
    [ST_DEDUP_PUT] = "INSERT INTO dedup (ori, msg_id, bucket, status, cause)"
                     " VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (ori, msg_id) DO NOTHING",
    [ST_DEDUP_RENEW] = "UPDATE dedup SET bucket = ?3, status = ?4, cause = ?5"
                       " WHERE ori = ?1 AND msg_id = ?2",
    [ST_DEDUP_DEL_BUCKET] = "DELETE FROM dedup WHERE ori = ?1 AND bucket = ?2",
    /* primary-key order: an originator's rows come together (sqlite_dedup.c load) */
    [ST_DEDUP_ALL] = "SELECT ori, bucket FROM dedup",
    [ST_DEDUP_ORI] = "SELECT bucket, count(*) FROM dedup WHERE ori = ?1 GROUP BY bucket",
    [ST_REQUEUE] = "UPDATE deliveries SET state = 0 WHERE id = ?1 AND state = 4",
    /* An originator's share of one recipient's queue (the queue index; in-flight rows are
     * pushed now, not waiting, and left out). */
    [ST_ORI_SHARE] = "SELECT count(*) FROM deliveries d JOIN messages m ON m.id = d.msg"
                     " WHERE d.rcpt_addr = ?1 AND d.rcpt_type = ?2 AND d.state = 0"
                     " AND m.ori_addr = ?3 AND m.ori_type = ?4 AND m.kind = ?6 AND m.ori_gen = ?5",
};

void m5_store_process_init(void) {
  /* SQLITE_MISUSE once SQLite is initialised: then the setting simply stays as it was. */
  (void)sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);
}

static const m5_store_ops_t sq_ops;
static void sq_stats(m5_store_t *base, m5_store_stats_t *out);

int64_t sq_now_ms(sq_t *s) {
  if (s->o.clock_ms) return s->o.clock_ms(s->o.clock_arg);
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void sq_log_error(sq_t *s, const char *what) {
  M5_LOGE(SQ_DOM, "%s: %s: %s", s->path, what, sqlite3_errmsg(s->db));
}

int sq_prepare_set(sq_t *s, const char *const *texts, sqlite3_stmt **st, int n) {
  for (int i = 0; i < n; i++)
    if (sqlite3_prepare_v3(s->db, texts[i], -1, SQLITE_PREPARE_PERSISTENT, &st[i], NULL) !=
        SQLITE_OK)
      return M5_EIO;
  return 0;
}

void sq_finalize_set(sqlite3_stmt **st, int n) {
  for (int i = 0; i < n; i++)
    sqlite3_finalize(st[i]);
}

void sq_done(sqlite3_stmt *st) {
  sqlite3_reset(st);
  sqlite3_clear_bindings(st);
}

int sq_bind_str(sqlite3_stmt *st, int i, const char *t, size_t max) {
  return sqlite3_bind_text(st, i, t, (int)strnlen(t, max), SQLITE_STATIC);
}

int sq_step_done(sq_t *s, sqlite3_stmt *st, const char *what) {
  int rc = sqlite3_step(st);
  if (rc != SQLITE_DONE) sq_log_error(s, what);
  sqlite3_reset(st);
  sqlite3_clear_bindings(st);
  return rc == SQLITE_DONE ? 0 : M5_EIO;
}

/* ---- the writer thread ---- */

static int exec_st(sq_t *s, int which) {
  /* What is undone in the tables must not stay in memory: the dedup counts are rebuilt (of
   * the job's originators only after a ROLLBACK TO), the cache of binding_gens rows emptied. */
  if (which == ST_ROLLBACK || which == ST_ROLLBACK_TO) sq_gens_forget(s);
  if (which == ST_ROLLBACK) sq_dedup_invalidate(s);
  if (which == ST_SAVEPOINT) sq_dedup_job_begin(s);
  int rc = sq_step_done(s, s->st[which], sql[which]);
  if (which == ST_ROLLBACK_TO) {
    if (rc == 0)
      sq_dedup_job_undone(s);
    else
      sq_dedup_invalidate(s);
  }
  return rc;
}

static void publish(sq_t *s, size_t jobs, int committed, int synced) {
  int cache = 0, cache_hi = 0;
  if (sqlite3_db_status(s->db, SQLITE_DBSTATUS_CACHE_USED, &cache, &cache_hi, 0) != SQLITE_OK)
    cache = 0;
  pthread_mutex_lock(&s->stats_lock);
  s->stats.cache_bytes = cache > 0 ? (uint64_t)cache : 0;
  m5_store_stats_t *t = &s->stats;
  t->queued = s->queued;
  t->messages = s->messages;
  t->batches++;
  t->jobs += jobs;
  if (committed) t->commits++;
  if (committed && !synced) t->unsynced_commits++;
  const sq_delta_t *d = &s->batch_delta;
  t->accepted += d->accepted;
  t->delivered += d->delivered;
  t->failed += d->failed;
  t->expired += d->expired;
  t->duplicates += d->duplicates;
  t->refused_queue_full += d->refused_queue_full;
  t->refused_store_full += d->refused_store_full;
  t->reports += d->reports;
  t->reports_dropped += d->reports_dropped;
  t->refused_originator_quota += d->refused_originator_quota;
  t->requeued += d->requeued;
  pthread_mutex_unlock(&s->stats_lock);
}

static void merge(sq_delta_t *into, const sq_delta_t *d) {
  into->accepted += d->accepted;
  into->delivered += d->delivered;
  into->failed += d->failed;
  into->expired += d->expired;
  into->duplicates += d->duplicates;
  into->refused_queue_full += d->refused_queue_full;
  into->refused_store_full += d->refused_store_full;
  into->reports += d->reports;
  into->reports_dropped += d->reports_dropped;
  into->refused_originator_quota += d->refused_originator_quota;
  into->requeued += d->requeued;
}

static void fail_all(m5_store_job_t **batch, size_t n) {
  for (size_t i = 0; i < n; i++) {
    m5_store_job_clear(batch[i]);
    batch[i]->status = M5_EIO;
    batch[i]->commit_no = 0;
    if (batch[i]->op == M5_STORE_GROUP_SWEEP) { /* nothing of it is stored: */
      batch[i]->id = batch[i]->priv.from;       /* its cursor stays where it was */
      batch[i]->group_failed = 0;
      batch[i]->more = false;
    }
  }
}

/* A job failed in a way that leaves its writes half done (not M5_ENOENT, M5_EINVAL or
 * M5_EPERM, which are returned before anything is written). */
static int job_failed_hard(const m5_store_job_t *job) {
  return job->status != 0 && job->status != M5_ENOENT && job->status != M5_EINVAL &&
         job->status != M5_EPERM;
}

/* Runs the batch's jobs inside the open transaction. Fast mode: no savepoints (each costs
 * statements and a statement journal); the first hard failure stops it and returns 1, and
 * the caller rolls everything back and runs the batch again in careful mode, where each job
 * has its own savepoint so that one failing job does not undo the others. */
static int run_jobs(sq_t *s, m5_store_job_t **batch, size_t n, int careful) {
  if (careful && exec_st(s, ST_SAVEPOINT) == 0) {
    if (sq_dedup_sweep(s, sq_now_ms(s)) != 0 || sq_tickets_sweep(s, sq_now_ms(s)) != 0 ||
        sq_topics_sweep(s, sq_now_ms(s)) != 0)
      exec_st(s, ST_ROLLBACK_TO);
    exec_st(s, ST_RELEASE);
  } else if (!careful &&
             (sq_dedup_sweep(s, sq_now_ms(s)) != 0 || sq_tickets_sweep(s, sq_now_ms(s)) != 0 ||
              sq_topics_sweep(s, sq_now_ms(s)) != 0)) {
    return 1;
  }
  for (size_t i = 0; i < n; i++) {
    m5_store_job_t *job = batch[i];
    memset(&s->job_delta, 0, sizeof s->job_delta);
    if (careful && exec_st(s, ST_SAVEPOINT) != 0) {
      job->status = M5_EIO;
      continue;
    }
    sq_run_op(s, job);
    if (job_failed_hard(job)) {
      if (!careful) return 1;
      exec_st(s, ST_ROLLBACK_TO);
      m5_store_job_clear(job);
      s->counts_dirty = 1;
    } else {
      merge(&s->batch_delta, &s->job_delta);
    }
    if (careful) exec_st(s, ST_RELEASE);
  }
  return 0;
}

/* Undoes a batch's effects on the in-memory state after a ROLLBACK: its counters, the
 * items its jobs got, and the queue counts and dedup figures (reloaded from the tables). */
static void forget_batch(sq_t *s, m5_store_job_t **batch, size_t n) {
  memset(&s->batch_delta, 0, sizeof s->batch_delta);
  for (size_t i = 0; i < n; i++) m5_store_job_clear(batch[i]);
  sq_dedup_invalidate(s);
  s->counts_dirty = 1;
  if (sq_load_counts(s) == 0) s->counts_dirty = 0;
}

/* Whether a job's reply may leave before its commit is on disk. A delivery's conclusion
 * (MARK_DELIVERED, MARK_FAILED, RESCHEDULE) acknowledges nothing to anyone: if the machine
 * loses power before the next synced commit, the delivery is simply still in flight after the
 * restart and goes out again (at least once; a kill -9 loses nothing, the page cache survives
 * it). Everything else, an ACCEPT above all, is acknowledged to a peer on its reply. */
static int needs_sync(const m5_store_job_t *job) {
  return job->op != M5_STORE_MARK_DELIVERED && job->op != M5_STORE_MARK_FAILED &&
         job->op != M5_STORE_RESCHEDULE;
}

/* A batch of conclusions alone commits with synchronous=NORMAL: its WAL frames are written but
 * not fsync'd; the next FULL commit's fsync of the WAL covers them (one file, written in
 * order), and so does a checkpoint. Under a steady load most conclusions share a synced
 * commit with accepts anyway; at low load this halves the fsyncs per message. */
static int set_sync(sq_t *s, int full) {
  if (s->sync_full == full) return 0;
  /* Not a prepared statement: SQLite applies PRAGMA synchronous when it compiles it. */
  if (sqlite3_exec(s->db, full ? "PRAGMA synchronous=FULL" : "PRAGMA synchronous=NORMAL", NULL,
                   NULL, NULL) != SQLITE_OK) {
    sq_log_error(s, "switching PRAGMA synchronous");
    return M5_EIO;
  }
  s->sync_full = full;
  return 0;
}

static void run_batch(sq_t *s, m5_store_job_t **batch, size_t n) {
  memset(&s->batch_delta, 0, sizeof s->batch_delta);
  int full = 0;
  for (size_t i = 0; i < n && !full; i++) full = needs_sync(batch[i]);
  if (set_sync(s, full) != 0) {
    /* Still NORMAL after a batch of conclusions: this batch's replies could not promise
     * durability, so it fails like a failed BEGIN. Still FULL: slower, never less safe. */
    if (full) {
      fail_all(batch, n);
      publish(s, n, 0, 0);
      return;
    }
    full = 1;
  }
  if (exec_st(s, ST_BEGIN) != 0) {
    fail_all(batch, n);
    publish(s, n, 0, full);
    return;
  }
  int64_t changes = sqlite3_total_changes64(s->db);
  if (run_jobs(s, batch, n, 0) != 0) {
    M5_LOGW(SQ_DOM, "%s: a job failed; running its batch of %zu again job by job", s->path, n);
    exec_st(s, ST_ROLLBACK);
    forget_batch(s, batch, n);
    if (s->counts_dirty || exec_st(s, ST_BEGIN) != 0) {
      fail_all(batch, n);
      publish(s, n, 0, full);
      return;
    }
    changes = sqlite3_total_changes64(s->db);
    run_jobs(s, batch, n, 1);
  }
  int wrote = sqlite3_total_changes64(s->db) != changes;
  int committed = exec_st(s, ST_COMMIT) == 0;
  if (!committed) {
    exec_st(s, ST_ROLLBACK);
    fail_all(batch, n);
    memset(&s->batch_delta, 0, sizeof s->batch_delta);
    s->counts_dirty = 1;
  }
  if (s->counts_dirty && sq_load_counts(s) == 0) s->counts_dirty = 0;
  uint64_t commit_no = 0;
  if (committed && wrote) {
    pthread_mutex_lock(&s->stats_lock);
    commit_no = s->stats.commits + 1;
    pthread_mutex_unlock(&s->stats_lock);
  }
  for (size_t i = 0; i < n; i++)
    batch[i]->commit_no = batch[i]->status == 0 ? commit_no : 0;
  publish(s, n, committed && wrote, full);
  for (size_t i = 0; i < n; i++)
    if (batch[i]->op == M5_STORE_COUNTS) sq_stats(&s->base, &batch[i]->stats);
}

static void run_job(m5_job_t *base, void *ctx) {
  sq_t *s = ctx;
  m5_store_job_t *job = (m5_store_job_t *)base;
  if (job->priv.done) return; /* ran in an earlier job's batch */
  m5_store_job_t *batch[SQ_BATCH_MAX];
  size_t n = 0;
  pthread_mutex_lock(&s->qlock);
  while (s->head && n < SQ_BATCH_MAX) {
    batch[n++] = s->head;
    s->head = s->head->priv.link;
  }
  if (!s->head) s->tail = NULL;
  pthread_mutex_unlock(&s->qlock);
  /* The FIFO and the mailbox have one order, so the oldest unfinished job is this one. */
  if (n == 0 || batch[0] != job) {
    M5_LOGE(SQ_DOM, "%s: job queue out of order; failing the job", s->path);
    job->status = M5_EIO;
    for (size_t i = 0; i < n; i++)
      batch[i]->priv.done = 0;
    return;
  }
  run_batch(s, batch, n);
  for (size_t i = 0; i < n; i++)
    batch[i]->priv.done = 1;
}

/* ---- any thread ---- */

static int sq_submit(m5_store_t *base, m5_store_job_t *job) {
  sq_t *s = (sq_t *)base;
  job->priv.link = NULL;
  job->priv.done = 0;
  job->priv.from = job->id;
  job->items = NULL;
  job->n_items = 0;
  job->subs = NULL;
  job->n_subs = 0;
  /* The FIFO and the job thread's inbox must have one order, hence one lock around both; the
   * job thread is woken only after it is released (it takes qlock first thing). */
  int wake = 0;
  pthread_mutex_lock(&s->qlock);
  int rc = m5_jobthread_submit_start(s->thread, &job->base, &wake);
  if (rc == 0) {
    if (s->tail)
      s->tail->priv.link = job;
    else
      s->head = job;
    s->tail = job;
  }
  pthread_mutex_unlock(&s->qlock);
  if (rc == 0) m5_jobthread_submit_finish(s->thread, wake);
  return rc;
}

static void sq_stats(m5_store_t *base, m5_store_stats_t *out) {
  sq_t *s = (sq_t *)base;
  pthread_mutex_lock(&s->stats_lock);
  *out = s->stats;
  pthread_mutex_unlock(&s->stats_lock);
}

static void sq_free(sq_t *s) {
  m5_jobthread_free(s->thread);
  for (int i = 0; i < ST_COUNT; i++)
    sqlite3_finalize(s->st[i]);
  sq_rebind_finalize(s);
  sq_tickets_finalize(s);
  sq_topics_finalize(s);
  sq_groups_finalize(s);
  if (s->db) sqlite3_close(s->db);
  if (s->pending) m5_hmap_free(s->pending, free);
  if (s->oris) m5_hmap_free(s->oris, free);
  if (s->inflight) m5_hmap_free(s->inflight, free);
  if (s->tickets) m5_hmap_free(s->tickets, free);
  sq_dedup_free(s);
  sq_gens_forget(s);
  pthread_mutex_destroy(&s->qlock);
  pthread_mutex_destroy(&s->stats_lock);
  free(s);
}

static void sq_close(m5_store_t *base) {
  sq_free((sq_t *)base);
}

static const m5_store_ops_t sq_ops = {sq_submit, sq_stats, sq_close};

/* ---- open ---- */

static const char *fix_hint = "restore it from a backup, or move it away to start an empty store";

/* Says what is wrong with the file for the SQLite error rc. */
static void open_error(sq_t *s, int rc, const char *what, char *err, size_t errlen) {
  int prim = rc & 0xff;
  if (prim == SQLITE_NOTADB)
    snprintf(err, errlen, "store %s is not an SQLite database (%s); %s", s->path, what, fix_hint);
  else if (prim == SQLITE_BUSY || prim == SQLITE_LOCKED)
    snprintf(err, errlen,
             "store %s is in use by another process (is another m5s running on it?) (%s)",
             s->path, what);
  else if (prim == SQLITE_CORRUPT)
    snprintf(err, errlen, "store %s is corrupt (%s: %s); %s", s->path, what, sqlite3_errmsg(s->db),
             fix_hint);
  else
    snprintf(err, errlen, "store %s: %s: %s", s->path, what, sqlite3_errmsg(s->db));
}

/* Runs a one-row pragma; its first column (text) goes to out. */
static int pragma_text(sq_t *s, const char *q, char *out, size_t outlen, char *err, size_t errlen) {
  sqlite3_stmt *st = NULL;
  int rc = sqlite3_prepare_v2(s->db, q, -1, &st, NULL);
  if (rc == SQLITE_OK) rc = sqlite3_step(st);
  if (rc != SQLITE_ROW) {
    open_error(s, rc, q, err, errlen);
    sqlite3_finalize(st);
    return M5_EIO;
  }
  const unsigned char *t = sqlite3_column_text(st, 0);
  snprintf(out, outlen, "%s", t ? (const char *)t : "");
  sqlite3_finalize(st);
  return 0;
}

/* Pragmas that only affect speed, set before WAL is first used. locking_mode=EXCLUSIVE:
 * this process is the only user of the file (a second m5s on it is refused while we hold
 * it), so SQLite keeps the WAL index in heap memory instead of a shared-memory file and
 * takes no file locks per transaction. temp_store=MEMORY keeps statement journals (one per
 * job savepoint) off the disk. A large page cache keeps the hot pages of the queue indexes
 * in memory (reads would otherwise be pread calls). */
static const char speed_pragmas[] = "PRAGMA locking_mode=EXCLUSIVE;"
                                    "PRAGMA temp_store=MEMORY;"
                                    "PRAGMA cache_size=-65536;"
                                    "PRAGMA wal_autocheckpoint=8192;";

/* Upgrades schema `from` to SQ_SCHEMA_VERSION in one transaction (all steps or none). */
static int upgrade(sq_t *s, long from, char *err, size_t errlen) {
  char *msg = NULL;
  int rc = sqlite3_exec(s->db, "BEGIN IMMEDIATE", NULL, NULL, &msg);
  for (long v = from; rc == SQLITE_OK && v < SQ_SCHEMA_VERSION; v++)
    rc = sqlite3_exec(s->db, migrations[v], NULL, NULL, &msg);
  if (rc == SQLITE_OK) rc = sqlite3_exec(s->db, "COMMIT", NULL, NULL, &msg);
  if (rc != SQLITE_OK) {
    snprintf(err, errlen, "store %s: cannot upgrade schema %ld to %d: %s", s->path, from,
             SQ_SCHEMA_VERSION, msg ? msg : "?");
    sqlite3_free(msg);
    sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
    return M5_EIO;
  }
  return 0;
}

static int check_and_migrate(sq_t *s, char *err, size_t errlen) {
  char v[256];
  char *perr = NULL;
  int prc = sqlite3_exec(s->db, speed_pragmas, NULL, NULL, &perr);
  sqlite3_free(perr);
  if (prc != SQLITE_OK) {
    open_error(s, prc, "reading its header", err, errlen);
    return M5_EIO;
  }
  if (pragma_text(s, "PRAGMA journal_mode=WAL", v, sizeof v, err, errlen) != 0) return M5_EIO;
  if (strcmp(v, "wal") != 0) {
    snprintf(err, errlen, "store %s: cannot switch to WAL journaling (got %s)", s->path, v);
    return M5_EIO;
  }
  char *msg = NULL;
  int rc = sqlite3_exec(s->db, "PRAGMA synchronous=FULL", NULL, NULL, &msg);
  sqlite3_free(msg);
  if (rc != SQLITE_OK) {
    open_error(s, rc, "PRAGMA synchronous", err, errlen);
    return M5_EIO;
  }
  /* What SQLite will really do (a build or a pragma elsewhere could differ): reported in the
   * stats and the log, and tested. */
  if (pragma_text(s, "PRAGMA synchronous", v, sizeof v, err, errlen) != 0) return M5_EIO;
  s->stats.synchronous = (uint64_t)strtoul(v, NULL, 10);
  s->sync_full = 1;
  static const char *const levels[] = {"OFF", "NORMAL", "FULL", "EXTRA"};
  M5_LOGI(SQ_DOM, "%s: WAL, synchronous=%s", s->path,
          s->stats.synchronous < 4 ? levels[s->stats.synchronous] : v);
  if (pragma_text(s, "PRAGMA quick_check", v, sizeof v, err, errlen) != 0) return M5_EIO;
  if (strcmp(v, "ok") != 0) {
    snprintf(err, errlen, "store %s is corrupt (quick_check: %s); %s", s->path, v, fix_hint);
    return M5_EIO;
  }
  if (pragma_text(s, "PRAGMA user_version", v, sizeof v, err, errlen) != 0) return M5_EIO;
  long version = strtol(v, NULL, 10);
  if (version >= 1 && version < SQ_SCHEMA_VERSION) return upgrade(s, version, err, errlen);
  if (version == SQ_SCHEMA_VERSION) return 0;
  if (version != 0) {
    snprintf(err, errlen,
             "store %s has schema version %ld; this build reads version %d (a newer m5s "
             "wrote it?)",
             s->path, version, SQ_SCHEMA_VERSION);
    return M5_EIO;
  }
  if (pragma_text(s, "SELECT count(*) FROM sqlite_schema", v, sizeof v, err, errlen) != 0)
    return M5_EIO;
  if (strcmp(v, "0") != 0) {
    snprintf(err, errlen, "store %s is an SQLite database but not a message store; check the path",
             s->path);
    return M5_EIO;
  }
  rc = sqlite3_exec(s->db, "BEGIN IMMEDIATE", NULL, NULL, &msg);
  if (rc == SQLITE_OK) rc = sqlite3_exec(s->db, schema, NULL, NULL, &msg);
  if (rc == SQLITE_OK) rc = sqlite3_exec(s->db, "COMMIT", NULL, NULL, &msg);
  if (rc != SQLITE_OK) {
    snprintf(err, errlen, "store %s: cannot create the schema: %s", s->path, msg ? msg : "?");
    sqlite3_free(msg);
    sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
    return M5_EIO;
  }
  return upgrade(s, 2, err, errlen);
}

/* A missing file becomes a new store; an existing empty one is refused, because a store
 * truncated to nothing must not come back silently empty. */
static int check_file(sq_t *s, char *err, size_t errlen) {
  struct stat st;
  if (stat(s->path, &st) != 0) {
    if (errno == ENOENT) return 0;
    snprintf(err, errlen, "cannot read store %s: %s", s->path, strerror(errno));
    return M5_EIO;
  }
  if (!S_ISREG(st.st_mode)) {
    snprintf(err, errlen, "store %s is not a regular file; check the path", s->path);
    return M5_EIO;
  }
  if (st.st_size == 0) {
    char wal[PATH_MAX + 8];
    struct stat ws;
    snprintf(wal, sizeof wal, "%s-wal", s->path);
    if (stat(wal, &ws) == 0 && ws.st_size > 0) return 0; /* a new store, not checkpointed */
    snprintf(err, errlen, "store %s is an empty file (truncated?); %s", s->path, fix_hint);
    return M5_EIO;
  }
  return 0;
}

m5_store_t *m5_store_sqlite_open(const m5_store_opts_t *o, char *err, size_t errlen) {
  if (!o->path || !*o->path || strlen(o->path) >= PATH_MAX) {
    snprintf(err, errlen, "store: no database path, or one too long; set the store path");
    return NULL;
  }
  if (o->queue_cap == 0 || o->max_per_recipient == 0 || o->max_queued == 0 ||
      o->dedup_window_ms <= 0 || o->dedup_buckets == 0 || o->dedup_buckets > 60 ||
      o->dedup_max_per_sender == 0 || o->max_msgs_per_originator == 0 ||
      o->max_deliveries_per_originator == 0 ||
      o->max_bytes_per_originator == 0 || o->max_reports_per_recipient == 0 ||
      o->report_ttl_s <= 0) {
    snprintf(err, errlen,
             "store: limits must be positive (queue, caps, quotas, dedup window, report TTL) and "
             "dedup buckets at most 60");
    return NULL;
  }
  sq_t *s = calloc(1, sizeof *s);
  if (!s) {
    snprintf(err, errlen, "store: out of memory");
    return NULL;
  }
  pthread_mutex_init(&s->qlock, NULL);
  pthread_mutex_init(&s->stats_lock, NULL);
  s->base.ops = &sq_ops;
  s->o = *o;
  snprintf(s->path, sizeof s->path, "%s", o->path);
  s->o.path = s->path;
  if (!s->o.max_per_recipient_per_originator)
    s->o.max_per_recipient_per_originator =
        o->max_per_recipient / 2 ? o->max_per_recipient / 2 : 1;
  s->bucket_ms = o->dedup_window_ms / (int64_t)o->dedup_buckets;
  if (s->bucket_ms < 1) s->bucket_ms = 1;
  s->swept_bucket = -1;
  s->next_msg_id = s->next_dlv_id = 1;
  if (m5_fs_mkdir_parents(s->path, 0700, "the store", err, errlen) != 0) goto fail;
  if (check_file(s, err, errlen) != 0) goto fail;
  int rc = sqlite3_open_v2(s->path, &s->db,
                           SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
  if (rc != SQLITE_OK) {
    snprintf(err, errlen, "cannot open store %s: %s; check the path and its permissions", s->path,
             s->db ? sqlite3_errmsg(s->db) : "out of memory");
    goto fail;
  }
  sqlite3_extended_result_codes(s->db, 1);
  if (check_and_migrate(s, err, errlen) != 0) goto fail;
  for (int i = 0; i < ST_COUNT; i++) {
    if (sqlite3_prepare_v3(s->db, sql[i], -1, SQLITE_PREPARE_PERSISTENT, &s->st[i], NULL) !=
        SQLITE_OK) {
      snprintf(err, errlen, "store %s: cannot prepare a statement: %s", s->path,
               sqlite3_errmsg(s->db));
      goto fail;
    }
  }
  if (sq_rebind_prepare(s) != 0 || sq_tickets_prepare(s) != 0 || sq_topics_prepare(s) != 0 ||
      sq_groups_prepare(s) != 0) {
    snprintf(err, errlen, "store %s: cannot prepare a statement: %s", s->path,
             sqlite3_errmsg(s->db));
    goto fail;
  }
  /* Deliveries that were being pushed when the last run ended are queued like any other. */
  char *uerr = NULL;
  if (sqlite3_exec(s->db, "UPDATE deliveries SET state = 0 WHERE state = 4", NULL, NULL, &uerr) !=
      SQLITE_OK) {
    snprintf(err, errlen, "store %s: cannot queue the deliveries in flight: %s", s->path,
             uerr ? uerr : "?");
    sqlite3_free(uerr);
    goto fail;
  }
  if (sq_load_counts(s) != 0 || sq_dedup_load(s) != 0) {
    snprintf(err, errlen, "store %s: cannot load the queues: %s", s->path, sqlite3_errmsg(s->db));
    goto fail;
  }
  s->stats.queued = s->queued;
  s->stats.messages = s->messages;
  s->thread = m5_jobthread_new(run_job, s);
  if (s->thread) {
    m5_jobthread_set_name(s->thread, "store");
    m5_jobthread_set_batch_sched(s->thread);
  }
  if (!s->thread || m5_jobthread_start(s->thread, o->queue_cap) != 0) {
    snprintf(err, errlen, "store %s: cannot start its thread", s->path);
    goto fail;
  }
  return &s->base;
fail:
  sq_free(s);
  return NULL;
}
