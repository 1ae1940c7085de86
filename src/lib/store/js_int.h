/* Internals of m5_store on NATS JetStream (issue 13, docs/store.md "JetStream"): shared by
 * js_store.c (open, thread, in-memory index, record codec) and js_store_ops.c (the jobs).
 *
 * Streams (P = opts.js.prefix): P_Q holds one message per delivery of a message, subject
 * P.q.<node>.<type>.<enc(rcpt)>; P_R the same for reports (P.r...), apart because their
 * per-recipient bound (MaxMsgsPerSubject) differs. A delivery id is (stream sequence << 1) |
 * family (0 = P_Q, 1 = P_R): non-zero and unique in the cluster. Each node owns the deliveries
 * on its own subjects and keeps them in the index below, filled by an ordered consumer per
 * stream (js_client.h) that stays subscribed. KV bucket P_dedup: the dedup window. */
#ifndef M5_STORE_JS_INT_H
#define M5_STORE_JS_INT_H

#include "js/js_client.h"
#include "store_int.h"

#include "core/hmap.h"
#include "core/jobthread.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#define JS_FAM_Q 0
#define JS_FAM_R 1
#define JS_NAME_MAX 64 /* prefix and node names */

/* A delivery in the index: what DUE, DUE_ANY, EXPIRE, COUNTS and the MARKs need, without the
 * payload (read back by sequence when an item carries it). */
typedef struct js_entry {
  uint64_t seq;
  int fam;
  m5_msg_prio_t prio;
  int64_t expr_time; /* Unix s, 0 = never */
  int64_t next_attempt_ms;
  uint32_t attempts;
  bool in_flight;
  uint8_t *rec; /* the record without payload (js_rec_*), rec_len bytes */
  size_t rec_len;
  struct js_rcpt *owner; /* the recipient's list */
  struct js_entry *prev, *next;
  struct js_entry *inbox_next; /* while waiting in the consumer inbox */
} js_entry_t;

typedef struct js_rcpt {
  js_entry_t *head, *tail;
  size_t n;
  char key[]; /* "<type>\n<addr>" */
} js_rcpt_t;

/* One publish awaited by the store thread. */
typedef struct {
  char *msg_id;
  bool done, duplicate;
  int status;        /* M5_OK, M5_EFULL ..., as m5_js_ack_t */
  bool subject_full; /* M5_EFULL from the per-subject limit (else the stream's) */
  uint64_t seq;
  int js_code; /* the server's error code (M5_JS_ERR_WRONG_LAST_SEQ: a KV write's conflict) */
} js_pub_t;

typedef struct {
  m5_store_t base;
  m5_store_opts_t o;
  char prefix[JS_NAME_MAX + 1], node[JS_NAME_MAX + 1];
  char stream[2][JS_NAME_MAX + 8]; /* P_Q, P_R */
  m5_js_client_t *c;
  m5_js_kv_t *dedup;
  m5_js_kv_t *tickets; /* P_tickets: report tickets (TTL report_window_ms) */
  char tickets_bucket[JS_NAME_MAX + 16];
  m5_js_sub_t *sub[2];
  m5_jobthread_t *thread;
  uint64_t nonce; /* msg ids of accepts without a dedup key */
  /* the byte bound of each stream (opts.js.max_bytes): its size as last read, plus what this
   * node published since, and when it was read */
  uint64_t max_bytes, bytes[2];
  int64_t bytes_at_ms[2];

  /* index (store thread only) */
  m5_hmap_t *by_id;   /* id (8 bytes) -> js_entry_t */
  m5_hmap_t *by_rcpt; /* key -> js_rcpt_t */
  size_t n_entries;
  /* ids removed that the consumer may still bring (id > cons_seen of its family) */
  m5_hmap_t *gone;
  size_t gone_floor;     /* marks left by the last prune (the consumer lagging behind) */
  uint64_t cons_seen[2]; /* last sequence taken from the inbox */

  /* consumer inbox (libnats threads -> store thread) */
  pthread_mutex_t in_mu;
  js_entry_t *in_head, *in_tail;
  uint64_t cb_seq[2];  /* last sequence the callback got */
  uint64_t cb_pending; /* NumPending of the last message */

  /* awaited publishes (store thread <-> libnats ack thread) */
  pthread_mutex_t pub_mu;
  pthread_cond_t pub_cv;
  js_pub_t *pubs;
  size_t n_pubs, n_done;

  pthread_mutex_t st_mu;
  m5_store_stats_t st;

  /* ---- topics (js_topics.c): KV bucket P_topics and this node's copy of it ---- */
  struct js_topics *topics;
  /* ---- perf: the job FIFO and pipelined accepts (js_store.c thread, js_accept.c) ---- */
  /* the jobs submitted and not yet run, in the order of the job thread's inbox (q_mu), so
   * that the store thread sees the ACCEPTs waiting behind the one it runs */
  pthread_mutex_t q_mu;
  m5_store_job_t *q_head, *q_tail;
  m5_hmap_t *pub_ids; /* msg_id of an awaited publish -> its slot + 1 (pub_mu) */
  uint64_t rounds;    /* rounds run (js_round_next): a job's commit_no */

  /* ---- jsquota (js_quota.c): per-originator counts, P_quota, P_gens ---- */
  struct js_quota *quota;

  /* ---- takeover (js_takeover.c): node liveness in P_nodes, a dead node's deliveries ---- */
  struct js_takeover *takeover;
} js_store_t;

/* ---- record codec (js_store.c) ----
 * A stored delivery = its record: version, kind, the message's fields, the recipient and its
 * generation, next_attempt_ms, then the payload. */
typedef struct {
  m5_store_delivery_t d; /* id, rcpt, msg (payload borrowed), next_attempt_ms, rcpt_gen */
  bool report;           /* a failure/delivery report (app_id M5_STORE_REPORT_APP) */
  size_t head_len;       /* bytes before the payload */
} js_rec_t;
int js_rec_encode(const m5_store_msg_t *m, const m5_msg_addr_t *rcpt, uint64_t rcpt_gen,
                  int64_t next_attempt_ms, uint8_t **out, size_t *out_len);
int js_rec_decode(const uint8_t *p, size_t len, js_rec_t *r);

/* ---- names ---- */
int js_subject(const js_store_t *s, int fam, const char *node, const m5_msg_addr_t *rcpt, char *out,
               size_t out_size);
int js_rcpt_filter(const js_store_t *s, int fam, const m5_msg_addr_t *rcpt, char *out,
                   size_t out_size);
uint64_t js_id(uint64_t seq, int fam);

/* ---- index ---- */
void js_drain_inbox(js_store_t *s);
js_entry_t *js_entry_new(const uint8_t *rec, size_t len, uint64_t seq, int fam);
void js_index_add(js_store_t *s, js_entry_t *e);
js_entry_t *js_index_get(js_store_t *s, uint64_t id);
void js_index_remove(js_store_t *s, js_entry_t *e);
void js_mark_gone(js_store_t *s, int fam, uint64_t seq);
js_rcpt_t *js_index_rcpt(js_store_t *s, const m5_msg_addr_t *rcpt);
int js_entry_item(const js_entry_t *e, m5_store_delivery_t *out);

/* ---- publishes awaited together ---- */
int js_pub_begin(js_store_t *s, size_t n);
/* Publishes slot i (msg_id must end with "/<i>"); retries while libnats' window is full. */
int js_pub(js_store_t *s, size_t i, const char *subject, const void *data, size_t len,
           const char *msg_id);
/* Waits until every slot begun is answered (or the deadline: slots left get M5_ETIMEDOUT). */
void js_pub_wait(js_store_t *s);
void js_pub_end(js_store_t *s);
/* Slot i as a KV write of kv's key (m5_js_kv_publish_async: last_rev 0 = create-only, else
 * compare-and-set); msg_id unique. The slot's seq is the new revision; a conflict is
 * M5_EIO with js_code M5_JS_ERR_WRONG_LAST_SEQ. */
int js_pub_kv(js_store_t *s, size_t i, m5_js_kv_t *kv, const char *key, const void *data,
              size_t len, uint64_t last_rev, const char *msg_id);

void js_stat_add(js_store_t *s, uint64_t *field, uint64_t n);

/* ---- jobs (js_store_ops.c; ACCEPT in js_accept.c) ---- */
#define JS_SUBJ_MAX 512
void js_run_job(js_store_t *s, m5_store_job_t *job);
void js_accept(js_store_t *s, m5_store_job_t *job);
/* Deletes a message this node published (refused, lost a race, a copy no longer needed); a
 * sequence is marked gone only once the delete answered OK or "not found". */
void js_delete_seq(js_store_t *s, int fam, uint64_t seq);
/* A job's status for a failed request to the cluster: M5_ETIMEDOUT, M5_EAGAIN (no responders),
 * M5_ENOMEM, M5_EINVAL pass through (the caller answers "come back"), the rest is M5_EIO. */
int js_fail_status(int rc);
int64_t js_now_ms(js_store_t *s);
/* hex of HMAC-SHA-256 under a fixed key: names of dedup keys, tickets, Msg-Ids */
void js_hash_hex(const char *text, size_t len, char out[65]);

typedef struct {
  js_entry_t **v;
  size_t n, cap;
} js_elist_t;
int js_el_push(js_elist_t *l, js_entry_t *e);
/* Concludes e (state, cause; the failure report first unless DELIVERED): delete, out of the
 * index; M5_ENOENT when someone else has it now. */
int js_conclude(js_store_t *s, m5_store_job_t *job, js_entry_t *e, m5_deliv_state_t state,
                const char *cause, m5_store_delivery_t *d);
/* Concludes a delivery on another node's subjects (m: its message as read). */
int js_conclude_msg(js_store_t *s, m5_store_job_t *job, int fam, const m5_js_msg_t *m,
                    m5_deliv_state_t state, const char *cause, m5_store_delivery_t *d);
/* rcpt's messages of family fam on other nodes' subjects, read now, in (prio, sequence)
 * order: their number, *out (m5_js_msg_free each .m, then free(*out)). */
typedef struct {
  m5_js_msg_t m;
  m5_msg_prio_t prio;
  uint64_t rcpt_gen;
} js_other_t;
size_t js_read_others(js_store_t *s, const m5_msg_addr_t *rcpt, int fam, js_other_t **out);
/* DUE's move (of a UE): rcpt's deliveries of family fam on other nodes' subjects come to this
 * node's. job: the DUE (test hooks). */
void js_move_here(js_store_t *s, m5_store_job_t *job, const m5_msg_addr_t *rcpt, int fam);

/* ---- REBIND, GROUP_SWEEP (js_sweep.c) ---- */
void js_rebind(js_store_t *s, m5_store_job_t *job);
void js_group_sweep(js_store_t *s, m5_store_job_t *job);

/* ---- report tickets (js_tickets.c) ---- */
#define JS_TICKET_KEY 140 /* t.<64 hex>.<64 hex> */
typedef struct {
  bool hit;
  char key[JS_TICKET_KEY];
  char ori[M5_MSG_ADDR_MAX + 24]; /* its originator's typed key */
  char val[48]; /* the ticket as it was, to put back if the report is then refused */
  uint64_t used_rev;
} js_ticket_use_t;
void js_tickets_put(js_store_t *s, m5_store_job_t *job);
int js_ticket_check(js_store_t *s, m5_store_job_t *job, js_ticket_use_t *u);
void js_ticket_restore(js_store_t *s, const js_ticket_use_t *u);
void js_ticket_ori_prefix(const m5_msg_addr_t *ori, char out[67]);

/* ---- jsquota (js_quota.c; REBIND's generation part in js_sweep.c) ----
 * Per-originator bounds cluster-wide (counts published to KV P_quota) and the binding
 * generations REBIND remembers (KV P_gens, copied on every node by a watcher). */
int js_quota_open(js_store_t *s, char *err, size_t errlen);
void js_quota_close(js_store_t *s);
/* A delivery entering (+1) or leaving (-1) this node's index. */
void js_quota_index(js_store_t *s, const js_entry_t *e, int delta);
/* ACCEPT, before the dedup claim: the generations (M5_EPERM, a missed REBIND caught up, a UE
 * recipient's generation raised, a report to an older one discarded), dedup_max_per_sender, and
 * the quotas. 1: the job is answered (status or outcome set); 0: go on (rcpts[i].status may be
 * ORIGINATOR_QUOTA for a partial job: those are skipped). */
int js_quota_check(js_store_t *s, m5_store_job_t *job);
/* ACCEPT, after its final outcome: an accepted dedup entry (claimed at revision dedup_rev). */
void js_quota_charge(js_store_t *s, const m5_store_job_t *job, uint64_t dedup_rev);
/* The dedup key of job (d.<hex HMAC(ori)>.<hash>) and its originator's prefix (d.<hex>). */
void js_dedup_key(const m5_store_job_t *job, const char *hash, char *out, size_t size);
void js_dedup_ori_prefix(const char *dedup_ori, char out[67]);
void js_quota_forget_dedup(js_store_t *s, const char *dedup_ori);
/* Report tickets per originator (typed key "UE:ue1"), cluster-wide; delta 0: none left. */
uint64_t js_tickets_count(js_store_t *s, const char *typed_ori);
void js_tickets_counted(js_store_t *s, const char *typed_ori, int delta);
/* Generations: this node's copy (0: none known), a leader read (0 when none; updates the copy),
 * a raise (compare-and-set; a newer one stored already is success), the copy alone. */
uint64_t js_gen_known(js_store_t *s, const char *ue);
int js_gen_read(js_store_t *s, const char *ue, uint64_t *gen, uint64_t *rev);
int js_gen_write(js_store_t *s, const char *ue, uint64_t gen);
void js_gen_local(js_store_t *s, const char *ue, uint64_t gen);
void js_gen_forget(js_store_t *s, const char *ue, uint64_t gen); /* back to gen (a REBIND cut short) */
/* REBIND of ue to gen (the job, or an accept catching up); *failed: deliveries failed. */
int js_rebind_to(js_store_t *s, const char *ue, uint64_t gen, uint64_t *failed);
/* A delivery failing or expiring (d: its item): its report ticket goes; true when the failure
 * report is not to be written (its UE originator was re-bound since it sent). */
bool js_failed_delivery(js_store_t *s, const m5_store_delivery_t *d);
/* RESCHEDULE of e: true when it was failed instead (its UE recipient was re-bound since). */
bool js_reschedule_rebound(js_store_t *s, m5_store_job_t *job, js_entry_t *e);

/* ---- topic subscriptions (js_topics.c) ---- */
typedef struct js_topics js_topics_t;
/* At open, after the client: the bucket P_topics, its watcher, its contents in memory. */
int js_topics_open(js_store_t *s, char *err, size_t errlen);
void js_topics_close(js_store_t *s); /* before the client closes; NULL topics ignored */
void js_topics_job(js_store_t *s, m5_store_job_t *job); /* TOPIC_SUB, _UNSUB, _SUBSCRIBERS */
/* REBIND's part (job->rcpt a UE, job->gen): the generation remembered, the UE's subscriptions
 * of an older one dropped; sets job->status on failure (nothing when it is set already). */
void js_topics_rebind(js_store_t *s, m5_store_job_t *job);
/* Periodic work (store thread): expired subscriptions dropped, bounded per call. */
void js_topics_tick(js_store_t *s);
/* ---- perf: pipelined accepts (js_accept.c) ----
 * The ACCEPT jobs waiting in the queue, in order, run as one batch: one round of dedup
 * claims, one of delivery publishes, one of final acks for all of them (docs/store.md "The
 * accept and its claim"); each job ends as it would alone. JS_BATCH_MAX bounds a batch. */
#define JS_BATCH_MAX 64
void js_accept_batch(js_store_t *s, m5_store_job_t **jobs, size_t n);
/* MARK_DELIVERED of the jobs waiting in a row: their deletes in one round trip
 * (js_store_ops.c). */
void js_mark_batch(js_store_t *s, m5_store_job_t **jobs, size_t n);
/* A new round (an accept batch, or a batch of deletes): its number, a job's commit_no; counted
 * in stats as a batch and a commit (unsynced: nats-server 2.9 acknowledges before any fsync). */
uint64_t js_round_next(js_store_t *s);

/* ---- takeover of a dead node's deliveries (js_takeover.c) ----
 * Each node puts P_nodes/<node> every 2 s (bucket TTL 10 s) from a liveness thread that also
 * watches the bucket; the store thread's tick takes a dead node's deliveries over (lease
 * P_nodes/lease.<dead>, moves with js_move_msg, a bounded number per tick). */
int js_takeover_open(js_store_t *s, char *err, size_t errlen);
/* Store thread, after each job (it rate-limits itself). */
void js_takeover_tick(js_store_t *s);
/* After the store thread stopped, before the client closes. */
void js_takeover_close(js_store_t *s);
/* Moves m (a message of family fam on another node's subjects) to subj, this node's subject:
 * this node's copy first (Nats-Msg-Id mv/<node>/<old id>/0), then the old one deleted; the
 * copy enters the index, due at once; an old one already gone (concluded or moved meanwhile)
 * deletes the copy unless it was a duplicate of this node's earlier copy. M5_OK: moved or gone;
 * else the copy's publish failed (M5_EFULL: this node's queue for the recipient is full) and
 * nothing changed. js_store_ops.c. */
int js_move_msg(js_store_t *s, int fam, const char *subj, const m5_js_msg_t *m);

#endif
