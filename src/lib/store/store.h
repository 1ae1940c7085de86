/* m5_store: the message store behind store-and-forward (architecture §5; TS 23.554 cl. 8.3,
 * 8.3.6). Backend-neutral: nothing here names SQL, so a NATS JetStream backend (streams for
 * per-recipient queues, KV for registrations) can sit behind the same calls; docs/store.md
 * maps each part to both backends.
 *
 * Data: a message body is stored once (payload plus the MSGin5G fields needed to send it
 * again) with one delivery per recipient (state PENDING, then DELIVERED, FAILED or EXPIRED;
 * attempts, next attempt time, failure cause). A dedup window remembers (originator key,
 * msgId) -> the ack that was given, for a bounded time and a bounded number of entries per
 * originator.
 *
 * Asynchronous, like core/jobthread: a worker fills an m5_store_job_t (base.reply = its own
 * mailbox), submits it and gets the same pointer back, finished, on its own loop. Nothing
 * blocks the worker. Jobs are served in submission order; the backend may run many of them
 * in one transaction (group commit), but a job's reply is posted only after everything it
 * wrote is durable: for an accept, "accepted" means committed and fsync'd.
 *
 * Handles: a delivery id is an opaque non-zero 64-bit number, valid while the store is open.
 * Times are Unix milliseconds (`_ms`) from the store's clock, except expr_time, which is
 * Unix seconds as in stoAndFwParams.exprTime. */
#ifndef M5_STORE_STORE_H
#define M5_STORE_STORE_H

#include "core/jobthread.h"
#include "msg/msg.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define M5_STORE_KEY_MAX 160     /* dedup key parts */
#define M5_STORE_STATUS_MAX 31   /* MessageDeliveryAck.status: "", DELY_STORED, DELY_FAILED */
#define M5_STORE_LIST_MAX 1024   /* most items one due/due_any/expire job returns */
#define M5_STORE_RCPT_MAX 100000 /* most recipients of one message */
#define M5_STORE_PAYLOAD_MAX (16u * 1024 * 1024)
#define M5_STORE_TOPICS_MAX M5_MSG_TOPICS_MAX /* topics of one TOPIC_SUB / TOPIC_UNSUB */

/* app_id of a stored delivery report (an IMDN): a UE's appId cannot start with a control
 * character. Its payload is "delivSt" or "delivSt failureCause". The failure and expiry
 * reports the store writes itself (MARK_FAILED, EXPIRE) have this form too. */
#define M5_STORE_REPORT_APP                                                                        \
  "\x1f"                                                                                           \
  "IMDN"

typedef struct m5_store m5_store_t;

/* failureCause of the deliveries M5_STORE_REBIND (and a RESCHEDULE after a re-bind) fail. */
#define M5_STORE_CAUSE_REBOUND "RECIPIENT_REBOUND"

typedef enum {
  M5_DELIV_PENDING = 0,
  M5_DELIV_DELIVERED = 1,
  M5_DELIV_FAILED = 2,
  M5_DELIV_EXPIRED = 3,
} m5_deliv_state_t;

/* The ack given to the originator (MessageDeliveryAck): status "" = accepted for delivery,
 * DELY_STORED, or DELY_FAILED with failure_cause. */
typedef struct {
  char status[M5_STORE_STATUS_MAX + 1];
  char failure_cause[M5_MSG_CAUSE_MAX + 1];
} m5_store_ack_t;

/* A message body. In an accept the payload is borrowed (read, not kept); in a result it is
 * owned by the job (m5_store_job_clear frees it). */
typedef struct {
  m5_msg_addr_t ori, dest;
  char msg_id[M5_MSG_ID_MAX + 1];
  char app_id[M5_MSG_ADDR_MAX + 1];
  m5_msg_prio_t prio;
  bool deliv_st_req;      /* delivStReqInd: the originator wants a report */
  bool sto_fwd;           /* stoAndFwInd */
  int64_t expr_time;      /* Unix seconds; 0 = never (the caller applies its max TTL) */
  int64_t accepted_at_ms; /* set by the store on accept */
  uint8_t *payload;
  size_t payload_len;
  /* A UE originator's binding generation when it sent (registry.h; 0: not a UE, or not
   * known). An accept whose UE originator is older than the generation the store knows for
   * it is refused (M5_EPERM); a report to the originator carries it as its recipient's. A
   * generation (this or a UE recipient's) newer than the store's is a REBIND the store
   * missed: the accept runs it first, in its transaction (committed even if the message is
   * then refused). The quota use is kept per (originator, generation). */
  uint64_t ori_gen;
  /* A message to a GROUP or BC address (dest): the generation of the group or area its
   * recipients were read at (server/groups/groups.h, "the contract with the fan-out"), kept
   * with the body so that each of its deliveries can be checked against the membership before
   * it is pushed, and swept by M5_STORE_GROUP_SWEEP. 0 for every other message. */
  uint64_t group_gen;
} m5_store_msg_t;

/* One recipient of an accept: addr, next_attempt_ms and in_flight in; status and id out. */
typedef struct {
  m5_msg_addr_t addr;
  int64_t next_attempt_ms; /* when due_any() first returns it (e.g. now + first back-off,
                              since the caller tries at once itself) */
  bool in_flight;          /* the caller pushes it at once and will conclude it (MARK_* or
                              RESCHEDULE): until then DUE, DUE_ANY and EXPIRE do not return
                              it, which spares the store the queue indexes on the common path.
                              Reopening the store (after a crash) queues such deliveries as
                              usual, due at once. */
  int status;              /* out: M5_STORE_ACCEPTED, or M5_STORE_QUEUE_FULL /
                              M5_STORE_ORIGINATOR_QUOTA for this one */
  uint64_t id;             /* out: the delivery id when stored, else 0 */
  /* A UE recipient's binding generation (in; out: the one stored). The store raises it to
   * the generation it knows for the ID when that is newer (the message is for whoever holds
   * the ID when it is accepted). A delivery is pushed only to a session registered under
   * its generation. */
  uint64_t gen;
  /* JetStream: the m5s node that holds the recipient's session (the registry's registration),
   * whose queue subjects the delivery goes to; "" = this node. Ignored by SQLite (one node). */
  char node[33];
} m5_store_rcpt_t;

/* A delivery with its message, as due/due_any/expire/mark_* return it. MARK_* and EXPIRE
 * leave the payload out (NULL, 0): what follows a final state (a report) does not carry it,
 * and not reading it back keeps the common "delivered" path cheap. */
typedef struct {
  uint64_t id;
  m5_msg_addr_t rcpt;
  m5_deliv_state_t state;
  uint32_t attempts;
  int64_t next_attempt_ms;
  char failure_cause[M5_MSG_CAUSE_MAX + 1];
  m5_store_msg_t msg;
  /* MARK_FAILED, EXPIRE: the delivery id of the failure report (REPT_DELY_FAILED, from rcpt to
   * msg.ori) the store wrote in the same transaction, PENDING and due at the job's
   * next_attempt_ms; 0 when none was asked for (no delivStReqInd, a report itself, an
   * originator neither UE nor AS), the originator's report bound was reached, or a UE
   * originator was re-bound since it sent. The report's body is what m5_store_report_of()
   * builds; its recipient generation is report_gen. */
  uint64_t report_id;
  uint64_t report_gen;
  uint64_t rcpt_gen; /* the recipient's binding generation (m5_store_rcpt_t.gen) */
} m5_store_delivery_t;

/* A Messaging Topic subscription (TS 23.554 cl. 8.8), as TOPIC_SUBSCRIBERS lists it. */
typedef struct {
  m5_msg_addr_t addr; /* the subscriber: a UE Service ID ("UE") or an AS ("AS") */
  uint64_t gen;       /* a UE's binding generation when it subscribed (0 for an AS) */
  int64_t expiry;     /* Unix seconds */
} m5_store_sub_t;

typedef struct {
  uint64_t queued;   /* deliveries PENDING now */
  uint64_t messages; /* bodies stored now */
  /* Counters since open (Prometheus counters: they restart at 0 with the process). */
  uint64_t accepted, delivered, failed, expired, duplicates;
  uint64_t refused_queue_full, refused_store_full;
  /* Group commit (also a test hook): commits that wrote, batches, jobs served; of the commits,
   * those of delivery conclusions alone, which do not wait for the fsync (made durable by the
   * next synced commit; see sqlite.c needs_sync). */
  uint64_t commits, batches, jobs, unsynced_commits;
  /* Failure/expiry reports written with their failure (reports), and not written because the
   * originator had max_reports_per_recipient reports waiting (reports_dropped); messages
   * refused by the originator's quota; in-flight deliveries queued again by REQUEUE_STALE. */
  uint64_t reports, reports_dropped, refused_originator_quota, requeued;
  /* The durability level SQLite runs with, read back after open (PRAGMA synchronous: 0 OFF,
   * 1 NORMAL, 2 FULL, 3 EXTRA); the store sets FULL. */
  uint64_t synchronous;
  /* Memory of SQLite's page cache after the last batch (SQLITE_DBSTATUS_CACHE_USED; it grows to
   * cache_size, 64 MiB, with the pages a long run touches): part of the process's RSS. */
  uint64_t cache_bytes;
  /* JetStream (all 0 on SQLite): 1 on that backend; connected to the NATS cluster now (1/0);
   * the messages the cluster still had to hand to this node's consumers when the last one
   * came (their lag). */
  uint64_t jetstream, js_connected, js_consumer_pending;
} m5_store_stats_t;

typedef enum {
  M5_STORE_ACCEPT,         /* in: msg, rcpts/n_rcpts, partial, dedup_ori/dedup_id, ack.
                              out: outcome, rcpts[].status/id, orig_ack (DUPLICATE) */
  M5_STORE_MARK_DELIVERED, /* in: id. out: items[0] (the delivery, now DELIVERED) */
  M5_STORE_MARK_FAILED,    /* in: id, cause, next_attempt_ms (when the failure report it
                              writes is first due). out: items[0] (now FAILED, report_id) */
  M5_STORE_RESCHEDULE,     /* in: id, next_attempt_ms, attempts (an in-flight delivery
                              is queued again by it) */
  M5_STORE_DUE,            /* in: rcpt, limit. out: items, PENDING for rcpt, priority
                              (HIGH, MIDDLE, LOW) then arrival order, back-off ignored */
  M5_STORE_DUE_ANY,        /* in: now_ms, limit. out: items, PENDING with next_attempt_ms <=
                              now_ms, earliest first. With hand_out (the caller pushes
                              every item: each gets a MARK_* or RESCHEDULE) JetStream
                              marks them in flight (a DUE_ANY right after does not return
                              them again; REQUEUE_STALE takes back a lost one) and says
                              more when more are due: ask again at once. SQLite leaves the
                              items PENDING and more 0 (one batch per back-off tick) */
  M5_STORE_EXPIRE,         /* in: now_ms, limit, next_attempt_ms (reports, as MARK_FAILED).
                              out: items whose expr_time passed, moved to EXPIRED (cause
                              EXPIRED, report_id); each is returned once */
  M5_STORE_COUNTS,         /* in: rcpt. out: pending (for rcpt), stats */
  M5_STORE_REQUEUE_STALE,  /* in: now_ms. Deliveries in flight (m5_store_rcpt_t.in_flight)
                              whose next_attempt_ms <= now_ms and that were never concluded
                              (the caller's MARK_* / RESCHEDULE failed or was lost) become
                              PENDING again, due at once. out: pending = how many */
  M5_STORE_REBIND,         /* in: rcpt (a UE), gen (its binding's new generation). In one
                              transaction: every queued delivery to rcpt of an older
                              generation is FAILED (RECIPIENT_REBOUND), with the failure report
                              its originator asked for written as MARK_FAILED writes it (due
                              at once); the dedup window and report tickets of rcpt as an
                              originator are dropped, and its topic subscriptions made under
                              an older generation; gen is remembered (tickets naming rcpt as
                              the reporter admit no report of gen). Nothing when the store knows gen or a
                              newer one already (so it can be repeated, e.g. at start-up).
                              out: rebind_failed. */
  /* Messaging Topics (TS 23.554 cl. 8.8; sqlite_topics.c). A subscription is (topic,
   * subscriber) with the subscriber's binding generation and an expiry; it survives restarts,
   * ends with TOPIC_UNSUB, its expiry, or a REBIND of the UE (in REBIND's transaction). */
  M5_STORE_TOPIC_SUB,         /* in: rcpt (subscriber, UE or AS), gen (a UE's generation: older
                                 than the store's is M5_EPERM), topics/n_topics, topic_expiry,
                                 max_subs / max_subscribers (0: no bound). All or nothing; a
                                 topic already subscribed is renewed. out: outcome ACCEPTED,
                                 SUBS_FULL (rcpt has max_subs unexpired subscriptions) or
                                 TOPIC_FULL (topics[topic_index] has max_subscribers) */
  M5_STORE_TOPIC_UNSUB,       /* in: rcpt, topics/n_topics (one not subscribed is no error);
                                 n_topics 0: every subscription of rcpt (an AS client removed) */
  M5_STORE_TOPIC_SUBSCRIBERS, /* in: topics[0], limit (0 or more: M5_STORE_RCPT_MAX).
                                 out: subs/n_subs, the subscriptions of that topic unexpired
                                 by the store's clock, oldest first. */
  /* Group and broadcast messages (the fan-out's catch-up with membership changes,
   * sqlite_groups.c). Looks at PENDING deliveries (not those in flight: their pusher checks
   * them) of messages with group_gen > 0, calls group_check(group_check_arg, &msg.dest,
   * &rcpt, group_gen) on the store's thread for each, and fails (state FAILED, the cause it
   * returned) those for which it returns a cause, each with the failure report its originator
   * asked for, written as MARK_FAILED writes it (due at once), in this job's transaction.
   *   in: msg.dest: the group or area (type "GROUP" / "BC" and addr), or type "" for the
   *       messages of every group and area (start-up catch-up);
   *       rcpt: one member (type "UE" / "AS" and addr: only its deliveries of that group;
   *       msg.dest required), or type "" for every recipient;
   *       id: a cursor, 0 at first (the value the previous job gave back);
   *       limit: messages looked at, at most (0: 64; capped at M5_STORE_LIST_MAX);
   *       group_check, group_check_arg (required).
   *   out: group_failed (deliveries failed), id (the cursor for the next job), more (there may
   *        be more messages after the cursor: run again with it). The last op
   *        (m5_store_submit's range).
   *   The cursor is opaque (SQLite: a message id, a delivery id for one member); a job that
   *   fails gives back the one it got. A job also stops (more) before a message that would
   *   take the deliveries it reads past M5_STORE_RCPT_MAX (what one ACCEPT may write; its
   *   first message is always taken), so it reads no more deliveries than the largest
   *   accept writes. */
  M5_STORE_GROUP_SWEEP,
} m5_store_op_t;

typedef enum {
  M5_STORE_ACCEPTED = 0, /* stored (or, with no recipients, only remembered for dedup) */
  M5_STORE_DUPLICATE,    /* (dedup_ori, dedup_id) seen in the window: orig_ack; nothing written */
  M5_STORE_QUEUE_FULL,   /* a recipient's queue is at max_per_recipient (a report: at
                            max_reports_per_recipient): nothing written */
  M5_STORE_STORE_FULL,   /* the store is at max_queued: nothing written (overload, 5.03) */
  M5_STORE_ORIGINATOR_QUOTA, /* msg.ori has max_msgs/bytes_per_originator stored, or
                                max_per_recipient_per_originator in a recipient's queue:
                                nothing written */
  M5_STORE_SUBS_FULL,        /* TOPIC_SUB: the subscriber is at max_subs: nothing written */
  M5_STORE_TOPIC_FULL, /* TOPIC_SUB: topics[topic_index] is at max_subscribers: nothing written */
} m5_store_outcome_t;

typedef struct m5_store_job {
  m5_job_t base; /* first: base.reply is the submitter's mailbox */
  m5_store_op_t op;
  void *arg; /* the submitter's */

  /* ---- in ---- */
  /* ACCEPT. rcpts is borrowed until the reply (and written: status, id). With n_rcpts == 0
   * only the dedup entry is written (an ack of DELY_FAILED still has to be repeated to a
   * retransmission). partial: skip full queues instead of refusing the message (group,
   * broadcast); without it one full queue refuses the whole message. */
  m5_store_msg_t msg;
  m5_store_rcpt_t *rcpts;
  size_t n_rcpts;
  bool partial;
  char dedup_ori[M5_STORE_KEY_MAX + 1]; /* the originator, e.g. "UE:ue1" */
  char dedup_id[M5_STORE_KEY_MAX + 1];  /* msgId; "" = no dedup for this job */
  m5_store_ack_t ack;                   /* remembered for repeats of this key */
  /* MARK_*, RESCHEDULE; next_attempt_ms also for MARK_FAILED and EXPIRE (their reports) */
  uint64_t id;
  char cause[M5_MSG_CAUSE_MAX + 1];
  int64_t next_attempt_ms;
  uint32_t attempts;
  /* DUE, COUNTS */
  m5_msg_addr_t rcpt;
  /* DUE, DUE_ANY, EXPIRE: limit is capped at M5_STORE_LIST_MAX */
  int64_t now_ms;
  size_t limit;
  /* ACCEPT: report tickets (docs/delivery.md "Who may report on what"). ticket_put: msg
   * asks for a report (delivStReqInd; from a UE or an AS): for every recipient it is stored
   * for (rcpts[i].id set), remember (originator, msgId, that recipient) -> ori_gen and the
   * recipient's generation for report_window_ms, within max_tickets_per_originator (beyond:
   * that recipient gets none). ticket_check: msg is a report from msg.ori to rcpts[0] (a UE or
   * an AS, the originator of msgId): it is stored only on the ticket naming msg.ori as its
   * reporter, which it uses up, and to a UE for the generation in the ticket; it is discarded
   * (stored for nobody, only its dedup entry written, the same outcome as a stored one;
   * `discarded` out) when there is no such ticket, the originator UE has been re-bound since,
   * or msg.ori is a UE of another generation than the one the message was stored for. */
  bool ticket_put, ticket_check;
  /* REBIND (rcpt too) */
  uint64_t gen;
  /* TOPIC_SUB, TOPIC_UNSUB, TOPIC_SUBSCRIBERS (rcpt, gen and limit too). topics is
   * borrowed until the reply. */
  const m5_msg_name_t *topics;
  size_t n_topics;
  int64_t topic_expiry; /* Unix seconds */
  uint64_t max_subs, max_subscribers;
  /* GROUP_SWEEP (msg.dest, rcpt, id, limit too): NULL keeps the delivery, else the
   * failureCause (static text) to fail it with. Called on the store's thread: must not block
   * for long (the groups' in-memory copy, under its lock). */
  const char *(*group_check)(void *arg, const m5_msg_addr_t *dest, const m5_msg_addr_t *rcpt,
                             uint64_t group_gen);
  void *group_check_arg;

  /* ---- out ---- */
  int status; /* 0; M5_EINVAL (bad job), M5_ENOENT (no PENDING delivery with that id),
                 M5_EPERM (ACCEPT: the UE originator's generation is older than the store's:
                 it was re-bound; nothing written), M5_EIO (nothing of this job is stored),
                 M5_ENOMEM */
  m5_store_outcome_t outcome;
  m5_store_ack_t orig_ack;
  m5_store_delivery_t *items; /* owned: m5_store_job_clear() */
  size_t n_items;
  uint64_t pending; /* COUNTS: PENDING for rcpt; REQUEUE_STALE: deliveries queued again */
  m5_store_stats_t stats;
  uint64_t commit_no; /* the durable commit that carried this job's writes (0: none) */
  bool discarded;          /* ACCEPT with ticket_check: the report was dropped */
  uint64_t rebind_failed;  /* REBIND: deliveries failed */
  size_t topic_index;     /* TOPIC_SUB: the topic at its bound (TOPIC_FULL) */
  m5_store_sub_t *subs;   /* TOPIC_SUBSCRIBERS, owned: m5_store_job_clear() */
  size_t n_subs;
  uint64_t group_failed;  /* GROUP_SWEEP: deliveries failed */
  bool more;              /* GROUP_SWEEP: run again from id; DUE_ANY: ask again at once */
  bool hand_out;          /* DUE_ANY in: the items are pushed now (see M5_STORE_DUE_ANY) */

  struct { /* private to the backend */
    struct m5_store_job *link;
    int done;
    uint64_t from; /* GROUP_SWEEP: id as submitted (a batch run again after a rollback
                      starts from it, not from the cursor the rolled-back run gave back) */
  } priv;
} m5_store_job_t;

/* SQLite: one node, one file (the default). JetStream: the store of a cluster of m5s nodes
 * sharing a NATS JetStream cluster (issue 13, docs/scale-out.md; js_*.c). */
typedef enum { M5_STORE_BACKEND_SQLITE = 0, M5_STORE_BACKEND_JETSTREAM = 1 } m5_store_backend_t;

/* The JetStream backend's connection and names (ignored by SQLite). */
typedef struct {
  const char *const *servers; /* nats://host:port URLs of the NATS cluster */
  size_t n_servers;
  int replicas;        /* of every stream and bucket: 1, or 3 in a cluster (default 1) */
  const char *prefix;  /* of the stream and bucket names and subjects, so that several
                          deployments (or tests) can share one NATS cluster (default "m5") */
  const char *node;    /* this m5s node's name, unique in the cluster: its queue subjects */
  int64_t timeout_ms;  /* connect, and every request to the cluster (default 5000) */
  /* Bytes of each stream (P_Q, P_R) beyond which an accept is refused STORE_FULL (default
   * 0: max_queued x 16 KiB): a bound on the NATS disk whatever the payloads. Kept by the
   * store, not by the stream's MaxBytes (on nats-server 2.9 that discards the OLDEST message
   * at the bound even with discard-new: measured). */
  uint64_t max_bytes;
  /* TLS and credentials towards NATS (store.js.tls_*, user, password_file, creds; NULL or ""
   * = unused): see m5_js_auth_t (js/js_client.h) */
  const char *tls_ca, *tls_cert, *tls_key, *user, *password_file, *creds;
} m5_store_js_opts_t;

typedef struct {
  m5_store_backend_t backend;
  const char *path;              /* SQLite: the database file (directories made 0700) */
  m5_store_js_opts_t js;         /* JetStream */
  size_t queue_cap;              /* jobs waiting for the store (default 4096) */
  uint64_t max_per_recipient;    /* PENDING deliveries per recipient (default 1000) */
  uint64_t max_queued;           /* PENDING deliveries in all (default 1000000) */
  int64_t dedup_window_ms;       /* default 10 min */
  unsigned dedup_buckets;        /* the window is cut into this many buckets (default 10) */
  uint64_t dedup_max_per_sender; /* entries per originator (default 10000) */
  /* Stored per originator (msg.ori, a UE or an AS): message bodies (default 10000) and payload
   * bytes (default 64 MiB); beyond, ACCEPT answers ORIGINATOR_QUOTA. Reports (the store's own and
   * peers') are charged to nobody. */
  uint64_t max_msgs_per_originator;
  uint64_t max_bytes_per_originator;
  /* Deliveries of one originator's messages not final yet (default 250000): a message to a
   * group, an area or a topic counts one per stored recipient, so that one sender cannot fill
   * the store (max_queued) with a few messages to large groups; a message whose recipients
   * (all of them, before any is skipped) would take it beyond is refused whole:
   * ORIGINATOR_QUOTA. */
  uint64_t max_deliveries_per_originator;
  /* PENDING deliveries one originator may have in one recipient's queue (0 = default: half of
   * max_per_recipient, at least 1), so that one sender cannot fill a victim's queue; beyond,
   * ORIGINATOR_QUOTA. Counted (an index range of that queue) only once the queue holds at
   * least this many. */
  uint64_t max_per_recipient_per_originator;
  /* Reports waiting per recipient (default 1000), apart from max_per_recipient so a full
   * queue never refuses a report: failure/expiry reports the store writes (beyond: not
   * written, stats.reports_dropped) and reports an ACCEPT brings (app_id M5_STORE_REPORT_APP,
   * one recipient: beyond, QUEUE_FULL), charged to no originator's quota. report_ttl_s: the
   * store's reports' exprTime, from now (default 86400). */
  uint64_t max_reports_per_recipient;
  int64_t report_ttl_s;
  int64_t report_window_ms; /* life of a report ticket (default 2 days) */
  /* Report tickets kept per originator, UE or AS (default 10000; 0 = none), one per recipient
   * of a message asking for a report: beyond, a recipient gets none, and its report on that
   * message is discarded (the store's own failure and expiry reports need none). A ticket goes
   * when the report it admits is stored, when the delivery to its recipient fails or expires,
   * when it expires, and at a REBIND of its UE originator. */
  uint64_t max_tickets_per_originator;
  /* Unix milliseconds; NULL = CLOCK_REALTIME. Called on the store's thread (tests inject). */
  int64_t (*clock_ms)(void *arg);
  void *clock_arg;
} m5_store_opts_t;

/* Fills the defaults. */
void m5_store_opts_init(m5_store_opts_t *o);

/* Process-wide settings of the backend's library, taken before anything in the process uses
 * it (for SQLite: the registry and m5-aanf's database too): call first thing in main. Turns
 * off SQLite's allocation statistics, which take a global mutex on every allocation of every
 * connection. Later calls, or calls after SQLite started, change nothing. */
void m5_store_process_init(void);

/* Opens (creating a missing store), checks it and starts its thread, on the calling thread
 * so start-up errors come first: a corrupt, truncated or foreign file is refused with an
 * error naming it, never replaced. NULL and err on failure. */
m5_store_t *m5_store_open(const m5_store_opts_t *o, char *err, size_t errlen);
/* From any thread. M5_EFULL when queue_cap jobs wait (the caller keeps the job), M5_EINVAL
 * for an unknown op. */
int m5_store_submit(m5_store_t *s, m5_store_job_t *job);
/* From any thread, without waiting for the disk: the figures as of the last commit. */
void m5_store_stats(m5_store_t *s, m5_store_stats_t *out);
/* Serves the queued jobs, delivers every reply (the reply mailboxes must still exist),
 * stops and closes. NULL is ignored. */
void m5_store_close(m5_store_t *s);

/* Frees a finished job's items (keeps the inputs); safe on a cleared or zeroed job. */
void m5_store_job_clear(m5_store_job_t *job);

/* The failure report on delivery d (cause d->failure_cause, "EXPIRED" if empty) as the store
 * writes it: an IMDN REPT_DELY_FAILED from d->rcpt to d->msg.ori about d->msg.msg_id, app_id
 * M5_STORE_REPORT_APP, store-and-forward, exprTime expr_time; id = d->report_id, recipient
 * generation d->report_gen. out->msg.payload is allocated (free it, or m5_store_job_clear
 * frees it in a job's items). 0 or M5_ENOMEM. */
int m5_store_report_of(const m5_store_delivery_t *d, int64_t expr_time, m5_store_delivery_t *out);

const char *m5_store_outcome_name(m5_store_outcome_t o);
const char *m5_deliv_state_name(m5_deliv_state_t s);

#ifdef M5_TEST_HOOKS
/* Test builds only (CMake option M5_TEST_HOOKS; release builds have no such symbol): when set,
 * the JetStream backend calls it on its store thread at these points of a job, so a test can
 * run another node's job in between:
 *  - "accept-published": an ACCEPT with a dedup key, after every PubAck of its deliveries and
 *    before its claim becomes the final ack; a non-zero return abandons the job there as a
 *    crash would (status M5_EIO, nothing deleted, the claim left pending);
 *  - "move-listed": DUE(rcpt), after it read the deliveries to move, before it copies them;
 *  - "conclude-reported": a conclusion, after its failure report is stored, before the delete;
 *  - "topic-sub-checked": TOPIC_SUB, after its generation and bound checks, before it writes. */
extern int (*m5_store_js_test_hook)(const char *point, m5_store_t *store, m5_store_job_t *job);
#endif

#endif
