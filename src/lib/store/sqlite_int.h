/* The SQLite backend's state, shared by sqlite.c (open, checks, the writer thread, group
 * commit), sqlite_ops.c (what each job does inside the batch's transaction), sqlite_dedup.c
 * (the dedup window), sqlite_rebind.c
 * (binding generations, REBIND), sqlite_tickets.c (report tickets), sqlite_topics.c (topic
 * subscriptions), sqlite_groups.c
 * (GROUP_SWEEP) and sqlite_counts.c (the in-memory figures). Everything
 * below "writer thread only" is touched by the store's thread alone (and by open, before
 * that thread exists). */
#ifndef M5_STORE_SQLITE_INT_H
#define M5_STORE_SQLITE_INT_H

#include "store_int.h"

#include "core/hmap.h"
#include "core/jobthread.h"

#include <limits.h>
#include <pthread.h>
#include <sqlite3.h>

#define SQ_DOM "store"

/* deliveries.state beyond m5_deliv_state_t: PENDING, but being pushed right after its
 * accept (m5_store_rcpt_t.in_flight), so outside the partial indexes on state = 0. Read back
 * as M5_DELIV_PENDING; reopening the store turns it into 0. */
#define SQ_STATE_IN_FLIGHT 4

/* messages.kind (schema 3): what accepted it, and so what bounds it. */
#define SQ_KIND_MSG 0    /* ACCEPTed from a UE or an AS: charged to its originator */
#define SQ_KIND_REPORT 1 /* a failure/expiry report the store wrote: max_reports_per_recipient */

enum {
  ST_BEGIN,
  ST_COMMIT,
  ST_ROLLBACK,
  ST_SAVEPOINT,
  ST_RELEASE,
  ST_ROLLBACK_TO,
  ST_MSG_INSERT,
  ST_DLV_INSERT,
  ST_DLV_GET,
  ST_DLV_SET_STATE,
  ST_DLV_DEL_RANGE,
  ST_MSG_DEC_OPEN,
  ST_MSG_DEL,
  ST_RESCHEDULE,
  ST_DUE,
  ST_DUE_ANY,
  ST_EXPIRED_IDS,
  ST_DEDUP_GET,
  ST_DEDUP_DEL_ONE,
  ST_DEDUP_PUT,
  ST_DEDUP_RENEW,
  ST_DEDUP_DEL_BUCKET,
  ST_DEDUP_ALL,
  ST_DEDUP_ORI,
  ST_REQUEUE,
  ST_ORI_SHARE,
  ST_COUNT
};

/* Statements of sqlite_rebind.c (binding generations, M5_STORE_REBIND). */
enum {
  RB_GEN_GET,
  RB_GEN_PUT,
  RB_STALE_IDS,
  RB_DEDUP_DROP,
  RB_DLV_RCPT,
  RB_COUNT
};

/* Statements of sqlite_tickets.c (report tickets). */
enum {
  TK_PUT,
  TK_UPD, /* right after TK_PUT (sq_tickets_put) */
  TK_GET,
  TK_DEL,
  TK_DROP_REBOUND,
  TK_SWEEP,
  TK_COUNT
};

/* Statements of sqlite_topics.c (Messaging Topic subscriptions). */
enum {
  TP_DROP_EXPIRED_OF,
  TP_COUNT_OF,
  TP_HAS,
  TP_COUNT_TOPIC,
  TP_PUT,
  TP_DEL,
  TP_LIST,
  TP_DROP_ALL_OF,
  TP_DROP_REBOUND,
  TP_SWEEP,
  TP_COUNT
};

/* Statements of sqlite_groups.c (M5_STORE_GROUP_SWEEP). */
enum {
  GR_MSGS_OF,  /* the messages of one group or area, by id */
  GR_MSGS_ALL, /* the messages of every group and area, by id */
  GR_DLVS,     /* the PENDING deliveries of one message (its id range) */
  GR_MEMBER,   /* one recipient's PENDING deliveries of one group's messages */
  GR_COUNT
};

/* Counters a job or a batch adds to the published stats once it is committed. */
typedef struct {
  uint64_t accepted, delivered, failed, expired, duplicates;
  uint64_t refused_queue_full, refused_store_full;
  uint64_t reports, reports_dropped, refused_originator_quota, requeued;
} sq_delta_t;

/* What an originator has stored (message bodies of kind SQ_KIND_MSG). */
typedef struct {
  uint64_t msgs, bytes;
  uint64_t dlvs; /* deliveries of those messages not final yet */
} sq_ori_t;

typedef struct {
  m5_store_t base;
  m5_store_opts_t o;
  char path[PATH_MAX];
  sqlite3 *db;
  sqlite3_stmt *st[ST_COUNT];
  sqlite3_stmt *rb[RB_COUNT]; /* sqlite_rebind.c */
  sqlite3_stmt *tk[TK_COUNT]; /* sqlite_tickets.c */
  int64_t tickets_swept_ms;
  sqlite3_stmt *tp[TP_COUNT]; /* sqlite_topics.c */
  int64_t topics_swept_ms;
  sqlite3_stmt *gr[GR_COUNT]; /* sqlite_groups.c */
  m5_jobthread_t *thread;

  /* Submitted jobs in submission order (the job thread's mailbox holds the same order). */
  pthread_mutex_t qlock;
  m5_store_job_t *head, *tail;

  /* ---- writer thread only ---- */
  m5_hmap_t *pending; /* (kind, recipient) key -> uint64_t * PENDING deliveries */
  m5_hmap_t *oris;    /* (originator, generation) key -> sq_ori_t: its quota use */
  m5_hmap_t *inflight; /* delivery id -> sq_flight_t: rows in state 4 */
  m5_hmap_t *tickets;  /* originator key ("UE:ue1") -> uint64_t *: its rows in report_tickets */
  int ticket_hit;      /* the ACCEPT being run found a report ticket (sqlite_tickets.c) */
  char ticket_rep[M5_STORE_KEY_MAX + 1]; /* ... naming this reporter ("": any) */
  uint64_t queued, messages;
  uint64_t next_msg_id, next_dlv_id;
  int64_t bucket_ms;
  int64_t swept_bucket;
  int counts_dirty; /* a job failed half-way: reload the counts after the batch */
  int sync_full;    /* PRAGMA synchronous is FULL now (1 from open), else NORMAL (run_batch) */
  m5_hmap_t *dbkt;  /* originator -> its dedup entries per bucket (sqlite_dedup.c) */
  int dbkt_dirty;   /* dbkt must be rebuilt from the table before its next use */
  struct sq_stale **stale; /* stale (originator, bucket) pairs the sweep still has to drop */
#define SQ_TOUCHED_MAX 8
  char touched[SQ_TOUCHED_MAX][M5_STORE_KEY_MAX + 1]; /* originators the job changed ... */
  size_t n_touched;
  int touched_over; /* ... or more than SQ_TOUCHED_MAX */
  size_t n_stale, stale_next;
  m5_hmap_t *gens;  /* UE Service ID -> its binding_gens generation + 1 (sqlite_rebind.c) */
  sq_delta_t job_delta, batch_delta;

  /* ---- the checkpoint thread (sqlite_ckpt.c) ---- */
  sqlite3 *ckpt_db;
  pthread_t ckpt_thread;
  pthread_mutex_t ckpt_lock;
  pthread_cond_t ckpt_cond;
  int ckpt_inited, ckpt_started, ckpt_wanted, ckpt_stop;
  uint64_t ckpt_runs;
  int lock_fd; /* flock'd <path>.lock: one process per store; -1 when not held */

  /* ---- any thread ---- */
  pthread_mutex_t stats_lock;
  m5_store_stats_t stats;
} sq_t;

/* sqlite_ckpt.c: checkpoints on a thread of their own. _start after the schema is in place
 * (M5_EIO with err); _stop before the writer's connection closes (safe when never started);
 * _runs: background checkpoints done. */
int sq_ckpt_start(sq_t *s, char *err, size_t errlen);
void sq_ckpt_stop(sq_t *s);
uint64_t sq_ckpt_runs(sq_t *s);

/* The statements of one module (sqlite_rebind.c, sqlite_tickets.c, sqlite_topics.c,
 * sqlite_groups.c): texts[0..n) prepared into st (persistent); M5_EIO. */
int sq_prepare_set(sq_t *s, const char *const *texts, sqlite3_stmt **st, int n);
void sq_finalize_set(sqlite3_stmt **st, int n);
/* A statement back to its unbound state after its last step. */
void sq_done(sqlite3_stmt *st);
/* Binds t (at most max bytes, not copied: it must live until the step). */
int sq_bind_str(sqlite3_stmt *st, int i, const char *t, size_t max);

/* sqlite.c */
int64_t sq_now_ms(sq_t *s);
int sq_step_done(sq_t *s, sqlite3_stmt *st, const char *what); /* resets the statement */
void sq_log_error(sq_t *s, const char *what);
/* The in-memory PENDING count per recipient, for deliveries of messages of kind SQ_KIND_*
 * (each kind has its own bound). */
uint64_t sq_pending_get(sq_t *s, const m5_msg_addr_t *a, int kind);
int sq_pending_add(sq_t *s, const m5_msg_addr_t *a, int kind, int64_t delta);
/* The in-memory quota use of an originator at a binding generation (msg.ori_gen: a re-bound
 * UE Service ID starts with none of the previous subscriber's use). */
sq_ori_t sq_ori_get(sq_t *s, const m5_msg_addr_t *a, uint64_t gen);
int sq_ori_add(sq_t *s, const m5_msg_addr_t *a, uint64_t gen, int64_t msgs, int64_t bytes,
               int64_t dlvs);
/* Message bookkeeping of a delivery row, for the transition to a final state. */
typedef struct {
  int64_t msg, open, first, n;
  int kind;     /* SQ_KIND_* */
  int64_t plen; /* payload length */
  int cached;   /* from the in-flight set (sq_inflight_row), not read */
} sq_row_t;

/* The in-memory set of in-flight deliveries (state 4), for REQUEUE_STALE; for one accepted
 * as the only recipient of its message (m, r, its message's row msg_row of kind; NULL, NULL:
 * none), also what its row holds, so that its conclusion need not read it back. */
typedef struct sq_flight sq_flight_t;
int sq_inflight_put(sq_t *s, uint64_t id, int64_t since_ms, const m5_store_msg_t *m,
                    const m5_store_rcpt_t *r, uint64_t msg_row, int kind);
void sq_inflight_del(sq_t *s, uint64_t id);
int64_t sq_flight_since(const sq_flight_t *f);
/* 1 with *d (payload left out) and *rm as reading the row would give them, when the in-flight
 * entry of id has them; else 0. */
int sq_inflight_row(sq_t *s, uint64_t id, m5_store_delivery_t *d, sq_row_t *rm);
/* Report tickets per originator key ("UE:ue1", "AS:as1": report_tickets rows), for
 * max_tickets_per_originator. */
uint64_t sq_tickets_get(sq_t *s, const char *ori);
int sq_tickets_add(sq_t *s, const char *ori, int64_t delta);
/* Rebuilds all four from the tables (0, or M5_EIO / M5_ENOMEM with counts_dirty kept). */
int sq_load_counts(sq_t *s);

/* sqlite_ops.c: one job inside the open transaction (status in job->status). */
void sq_run_op(sq_t *s, m5_store_job_t *job);
/* Moves the PENDING delivery id to a final state (its message goes with its last one); a
 * FAILED or EXPIRED one gets the failure report its originator asked for, due at report_ms
 * (0: now), in the same transaction (out->report_id). */
int sq_finish(sq_t *s, uint64_t id, m5_deliv_state_t state, const char *cause, int64_t report_ms,
              m5_store_delivery_t *out);

/* sqlite_rebind.c: re-bound UE Service IDs (docs/delivery.md). Its tables and columns are
 * part of schema version 3 (sqlite.c). */
int sq_rebind_prepare(sq_t *s);
void sq_rebind_finalize(sq_t *s);
/* ACCEPT, before anything is written: M5_EPERM for a UE originator older than the store's
 * generation for it; stamps each UE recipient's generation; resolves ticket_check
 * (sq_tickets_check: sets job->discarded). */
int sq_rebind_accept_check(sq_t *s, m5_store_job_t *job);
/* RESCHEDULE of a delivery whose recipient was re-bound since: failed (RECIPIENT_REBOUND,
 * with its report) instead; *done = 1 then. */
int sq_rebind_reschedule(sq_t *s, m5_store_job_t *job, int *done);
int sq_rebind_run(sq_t *s, m5_store_job_t *job);
/* The recipient generation of the failure report on d to its originator: for a UE, the
 * generation that sent d's message (msg.ori_gen; the store's current one when that is 0);
 * 0 for an AS. *stale = 1 (write no report) when the UE originator was re-bound since: only
 * the subscriber that sent the message may get its report. */
int sq_rebind_report_gen(sq_t *s, const m5_store_delivery_t *d, uint64_t *gen, int *stale);
/* The generation the store knows for the UE Service ID addr (0: none); 0 or M5_EIO. */
int sq_gen_of(sq_t *s, const char *addr, uint64_t *gen);
/* Forgets the cached binding_gens rows (after a rollback) and frees the cache at close. */
void sq_gens_forget(sq_t *s);

/* sqlite_tickets.c: report tickets (schema 6). */
int sq_tickets_prepare(sq_t *s);
void sq_tickets_finalize(sq_t *s);
/* ACCEPT with ticket_check, after the generations are stamped: a report to rcpts[0] is kept
 * only on a ticket naming its reporter (msg.ori), whose originator generation it takes;
 * else job->discarded. */
int sq_tickets_check(sq_t *s, m5_store_job_t *job);
/* ACCEPT with ticket_put, once the deliveries are stored: a ticket per stored recipient,
 * within max_tickets_per_originator. */
int sq_tickets_put(sq_t *s, m5_store_job_t *job, int64_t now_ms);
/* ACCEPT, once a report is stored: drops the ticket that admitted it. */
int sq_tickets_used(sq_t *s, const m5_store_job_t *job);
/* A delivery d (not a report) FAILED or EXPIRED: its recipient's ticket goes. */
int sq_tickets_drop_failed(sq_t *s, const m5_store_delivery_t *d);
/* REBIND: the tickets of UE ue as an originator, of generations older than gen. */
int sq_tickets_drop_rebound(sq_t *s, const char *ue, uint64_t gen);
/* Drops a few expired report tickets (at most once a second). */
int sq_tickets_sweep(sq_t *s, int64_t now_ms);
/* sqlite_topics.c: Messaging Topic subscriptions (schema 4). */
int sq_topics_prepare(sq_t *s);
void sq_topics_finalize(sq_t *s);
int sq_topics_sub(sq_t *s, m5_store_job_t *job);
int sq_topics_unsub(sq_t *s, m5_store_job_t *job);
int sq_topics_list(sq_t *s, m5_store_job_t *job);
/* REBIND: the subscriptions of UE addr made under a generation older than gen. */
int sq_topics_drop_rebound(sq_t *s, const char *addr, uint64_t gen);
/* Drops a few expired subscriptions (at most once a second). */
int sq_topics_sweep(sq_t *s, int64_t now_ms);
/* sqlite_groups.c: group and broadcast messages (schema 5). */
int sq_groups_prepare(sq_t *s);
void sq_groups_finalize(sq_t *s);
int sq_groups_sweep(sq_t *s, m5_store_job_t *job);
/* sqlite_dedup.c: the dedup window (schema 7: the table dedup, the counts per originator and
 * bucket in memory). */
/* The counts from the table (at open; 0, M5_EIO or M5_ENOMEM). */
int sq_dedup_load(sq_t *s);
/* After a rollback: the counts are rebuilt from the table before their next use. */
void sq_dedup_invalidate(sq_t *s);
/* A job's savepoint opens; after its ROLLBACK TO, the counts of the originators it changed
 * are read again from the table (all of them when it changed many). */
void sq_dedup_job_begin(sq_t *s);
void sq_dedup_job_undone(sq_t *s);
void sq_dedup_free(sq_t *s);
/* Drops up to a fixed number of dedup buckets that fell out of the window. */
int sq_dedup_sweep(sq_t *s, int64_t now_ms);
/* ACCEPT, before anything else is written: *dup = 1 and job->orig_ack when (dedup_ori,
 * dedup_id) is live at now_ms; else the key is written with job->ack in the current bucket
 * (a stale entry taken over), not counted yet. */
int sq_dedup_claim(sq_t *s, m5_store_job_t *job, int64_t now_ms, int *dup);
/* ACCEPT refused: the key claimed goes again. */
int sq_dedup_unclaim(sq_t *s, const m5_store_job_t *job);
/* ACCEPT stored or discarded: the claimed key is counted, first dropping the originator's
 * stale buckets and, when it is at its bound, its oldest live ones. */
int sq_dedup_record(sq_t *s, m5_store_job_t *job, int64_t now_ms);
/* REBIND: the originator's entries were deleted (RB_DEDUP_DROP): its counts go too. */
void sq_dedup_forget_ori(sq_t *s, const char *ori);

#endif
