/* A small wrapper over libnats 3.4.1 (NATS JetStream) for the message store's JetStream backend
 * (issue 13; the store thread model is in the design of docs/store.md's JetStream section): one
 * connection to a list of servers with reconnect, its JetStream context, idempotent "ensure" of a
 * stream and of a KV bucket, async publishes that always carry a Nats-Msg-Id, and the
 * synchronous KV operations the registry needs (create-only, get, compare-and-set update).
 *
 * Threads: every call here except m5_js_publish_async BLOCKS for up to the client's timeout
 * (request/reply to the cluster): call them from a thread that may block (the store's backend
 * threads), never from a worker. The publish acknowledgement callback runs on a libnats
 * thread, not the caller's: it must only copy what it needs and post it to a mailbox.
 *
 * Errors: m5 codes (core/err.h) and a message in the caller's buffer; messages hold names,
 * subjects and server texts, never message data or credentials. M5_EAGAIN: no stream leader
 * ("no responders"), or the connection is down: while it reconnects, the publishes, KV
 * operations, message gets and deletes fail at once without sending anything (libnats would
 * buffer them and send them once it is back, after the caller gave up); a request sent just
 * before the connection dropped has an unknown outcome, as after a timeout. */
#ifndef M5_JS_CLIENT_H
#define M5_JS_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The longest subject and msg_id of a publish (the acknowledgement carries copies of both). */
#define M5_JS_PUB_NAME_MAX 511

typedef struct m5_js_client m5_js_client_t;
typedef struct m5_js_kv m5_js_kv_t;

/* The outcome of one async publish, as given to the callback (valid during the call only). */
typedef struct {
  int status;         /* M5_OK: stored on a quorum; M5_ETIMEDOUT: no answer within max_wait,
                         which means "unknown" (it may be stored later: re-publish with the
                         same msg_id); M5_EAGAIN: no responders (no stream leader: election
                         or cluster down); M5_EFULL: refused by a stream limit; M5_EIO: other */
  const char *msg_id; /* the Nats-Msg-Id given to m5_js_publish_async */
  const char *subject;
  uint64_t seq;     /* stream sequence when M5_OK */
  bool duplicate;   /* M5_OK for a msg_id already in the stream's duplicate window: not
                       stored again; seq is the first one's */
  int js_code;      /* the server's JetStream error code, 0 when none */
  const char *text; /* the error text, "" when M5_OK */
} m5_js_ack_t;

/* Called on a libnats thread, once per successful m5_js_publish_async. Must not block and must
 * not call back into this client. */
typedef void (*m5_js_ack_fn)(void *arg, const m5_js_ack_t *ack);

/* TLS and credentials towards the NATS servers (every member optional: NULL or "" = unused).
 * Secrets are read from files at open, handed to libnats (which keeps them for reconnects)
 * and wiped; they never appear in an error message. */
typedef struct {
  const char *tls_ca;   /* PEM CA bundle the servers' certificates must chain to; set: TLS on */
  const char *tls_cert; /* PEM client certificate chain and its key, for servers that verify */
  const char *tls_key;  /* clients (nats-server `tls { verify: true }`); both or neither */
  const char *user;          /* user name (nats-server `authorization`), with: */
  const char *password_file; /* a file holding its password (the first line) */
  const char *creds_file;    /* or a NATS credentials file (user JWT + NKey seed) */
} m5_js_auth_t;

typedef struct {
  const char *const *servers; /* nats://host:port URLs, tried in order, then reconnected to */
  size_t n_servers;
  int64_t timeout_ms;        /* connect, and every blocking request; default 5000 */
  int64_t reconnect_wait_ms; /* between reconnect attempts; default 200 */
  int max_pending;           /* async publishes outstanding at most; default 4096 */
  const char *name;          /* connection name shown by the servers; may be NULL */
  m5_js_ack_fn on_ack;       /* required */
  void *ack_arg;
  m5_js_auth_t auth;         /* TLS and credentials (all unset: plaintext, no credentials) */
} m5_js_client_opts_t;

/* Connects (to the first server that answers; fails after timeout_ms when none does) and gets
 * the JetStream context. Reconnects forever afterwards. */
int m5_js_client_open(m5_js_client_t **out, const m5_js_client_opts_t *o, char *err,
                      size_t err_size);
/* Closes the connection and frees everything; publishes still outstanding are not reported
 * (m5_js_publish_flush first). */
void m5_js_client_close(m5_js_client_t *c);
/* Connected right now (not reconnecting)? */
bool m5_js_client_connected(m5_js_client_t *c);

typedef struct {
  const char *name;
  const char *const *subjects;
  size_t n_subjects;
  int replicas;                /* 1 or 3 (odd) */
  int64_t duplicate_window_ms; /* Nats-Msg-Id dedup window */
  /* Limits (0 = none), "discard new": a publish beyond one is refused (M5_EFULL with the
   * server's text "maximum messages exceeded" or "... per subject exceeded"). Unlike the
   * settings above, an existing stream whose limits differ is updated to these. */
  int64_t max_msgs, max_msgs_per_subject;
  bool discard_new_per_subject; /* max_msgs_per_subject refuses new ones (else drops old) */
  bool allow_direct;            /* direct gets (m5_js_next_by_subject) from any replica */
} m5_js_stream_spec_t;

/* Creates the stream (file storage) or, when it exists, checks that it has exactly these
 * subjects, file storage, replicas and duplicate window: M5_EEXIST with every difference named
 * in err when not (nothing is changed: updating a live stream is an operator's decision). */
int m5_js_ensure_stream(m5_js_client_t *c, const m5_js_stream_spec_t *s, char *err,
                        size_t err_size);
/* Bytes the stream holds now (its messages with their subjects and headers). */
int m5_js_stream_bytes(m5_js_client_t *c, const char *stream, uint64_t *bytes, char *err,
                       size_t err_size);
/* Messages in the stream now (M5_ENOENT when there is no such stream). */
int m5_js_stream_msgs(m5_js_client_t *c, const char *stream, uint64_t *msgs, char *err,
                      size_t err_size);

typedef struct {
  const char *bucket;
  int replicas;
  int history;    /* values kept per key, 1..64 */
  int64_t ttl_ms; /* age after the last write at which a key goes; 0 = never */
} m5_js_kv_spec_t;

/* Creates the bucket or checks the existing one as m5_js_ensure_stream does; *kv is the handle
 * (m5_js_kv_close), valid while the client is open. */
int m5_js_ensure_kv(m5_js_client_t *c, const m5_js_kv_spec_t *s, m5_js_kv_t **kv, char *err,
                    size_t err_size);
void m5_js_kv_close(m5_js_kv_t *kv);

/* Publishes data to subject with the Nats-Msg-Id msg_id (required: a timed-out publish may be
 * stored later, so a retry must be recognisable: re-publish with the same msg_id, the answer is
 * then a duplicate if the first one made it). Does not wait for the cluster: M5_OK means the
 * outcome comes through on_ack within about max_wait_ms (0: the client's timeout), also while
 * disconnected (then M5_ETIMEDOUT). With max_pending publishes outstanding it stalls up to
 * 200 ms (libnats's StallWait) and then fails M5_EFULL. Any error here: nothing was sent and
 * on_ack is not called. */
int m5_js_publish_async(m5_js_client_t *c, const char *subject, const void *data, size_t len,
                        const char *msg_id, int64_t max_wait_ms, char *err, size_t err_size);
/* Blocks until every outstanding publish has been reported (or timeout_ms): tests, shutdown. */
int m5_js_publish_flush(m5_js_client_t *c, int64_t timeout_ms);

/* KV, synchronous. Keys must be valid KV keys (js_names.h tokens behind a typed prefix). */
/* Stores key only when absent (or deleted): M5_EEXIST when it holds a value. */
int m5_js_kv_create(m5_js_kv_t *kv, const char *key, const void *data, size_t len, uint64_t *rev,
                    char *err, size_t err_size);
/* The value (malloc'ed, *val_len bytes, NUL added; free()) and its revision; M5_ENOENT. */
int m5_js_kv_get(m5_js_kv_t *kv, const char *key, uint8_t **val, size_t *val_len, uint64_t *rev,
                 char *err, size_t err_size);
/* Replaces key's value only when its revision is still last_rev: M5_EAGAIN (stale: read again)
 * when someone wrote it since, and only then; the cluster unreachable or not answering is
 * M5_ETIMEDOUT (perhaps written). */
int m5_js_kv_update(m5_js_kv_t *kv, const char *key, const void *data, size_t len,
                    uint64_t last_rev, uint64_t *rev, char *err, size_t err_size);

/* Deletes key (a delete marker) only when its revision is still last_rev: M5_EAGAIN when
 * someone wrote it since, and only then (as m5_js_kv_update). */
int m5_js_kv_delete(m5_js_kv_t *kv, const char *key, uint64_t last_rev, char *err,
                    size_t err_size);

/* A watcher of every key of a bucket (kvStore_WatchAll): first the current value of each key,
 * then a marker that the initial values are done, then every later write in revision order
 * (the registry's per-bucket watcher thread, issue 13). One thread calls next; stop may be
 * called from any thread and makes a blocked next return M5_ECLOSED. */
typedef struct m5_js_kv_watch m5_js_kv_watch_t;

typedef struct {
  const char *key;    /* NULL: the marker "initial values done" (every other field 0) */
  const uint8_t *val; /* the value, len bytes; valid until the next call */
  size_t len;
  uint64_t rev;       /* the bucket's revision (stream sequence) of this write */
  bool deleted;       /* a KV delete or purge (val empty) */
} m5_js_kv_change_t;

int m5_js_kv_watch(m5_js_kv_t *kv, m5_js_kv_watch_t **w, char *err, size_t err_size);
/* Blocks up to timeout_ms: M5_OK and *ch; M5_ETIMEDOUT (nothing new); M5_ECLOSED (stopped);
 * M5_EIO with err. */
int m5_js_kv_watch_next(m5_js_kv_watch_t *w, int64_t timeout_ms, m5_js_kv_change_t *ch, char *err,
                        size_t err_size);
void m5_js_kv_watch_stop(m5_js_kv_watch_t *w);
/* After the thread calling next is gone. */
void m5_js_kv_watch_free(m5_js_kv_watch_t *w);

/* ---- Messages by sequence and subject (blocking requests; the message store's index) ---- */

/* One stored message: subject and data malloc'ed (free with m5_js_msg_free). */
typedef struct {
  uint64_t seq;
  char *subject;
  uint8_t *data;
  size_t len;
  int64_t time_ns; /* when the stream stored it */
} m5_js_msg_t;
void m5_js_msg_free(m5_js_msg_t *m);

/* The message at seq, read through the stream's leader (reads its own writes): M5_ENOENT
 * when there is none (deleted, or never). */
int m5_js_get_msg(m5_js_client_t *c, const char *stream, uint64_t seq, m5_js_msg_t *out,
                  char *err, size_t err_size);
/* The first message on subject at or after seq (a direct get: any replica answers; the stream
 * needs allow_direct): M5_ENOENT when there is none. */
int m5_js_next_by_subject(m5_js_client_t *c, const char *stream, const char *subject,
                          uint64_t seq, m5_js_msg_t *out, char *err, size_t err_size);
/* Deletes the message at seq: M5_ENOENT when it was not there (deleted by someone else). */
int m5_js_delete_msg(m5_js_client_t *c, const char *stream, uint64_t seq, char *err,
                     size_t err_size);
/* Calls fn(arg, subject, msgs) for every subject of the stream matching filter (wildcards
 * allowed) that holds messages. */
int m5_js_subjects(m5_js_client_t *c, const char *stream, const char *filter,
                   void (*fn)(void *arg, const char *subject, uint64_t msgs), void *arg,
                   char *err, size_t err_size);

/* ---- Ordered consumer: every message of a stream on a subject filter, in stream order ----
 * An ephemeral, unreplicated push consumer (no Raft group, no acks) that libnats re-creates
 * from the last sequence seen after a gap or a reconnect. fn runs on a libnats thread for each
 * message (data valid during the call only; pending = messages still to come after this one
 * when it was sent) and must not block. */
typedef struct m5_js_sub m5_js_sub_t;
typedef void (*m5_js_msg_fn)(void *arg, uint64_t seq, const char *subject, const void *data,
                             size_t len, uint64_t pending);
int m5_js_ordered_subscribe(m5_js_client_t *c, const char *stream, const char *filter,
                            m5_js_msg_fn fn, void *arg, m5_js_sub_t **out, char *err,
                            size_t err_size);
/* Messages the server still has to send it, and whether fn has had every message the server
 * sent (its consumer info: a blocking request). */
int m5_js_sub_pending(m5_js_sub_t *s, uint64_t *pending, bool *caught_up);
/* Unsubscribes and frees; fn is not called after it returns. */
void m5_js_sub_close(m5_js_sub_t *s);

/* Closes the connection at once, without draining (m5_js_client_close still frees the client):
 * for a shutdown that must not wait for the cluster. Stopping a KV watcher or an ordered
 * subscription on an open connection deletes its consumer by a request that waits for the
 * client's timeout when the consumer lived on a NATS node that died; on a closed connection
 * nothing is sent (the server removes those ephemeral consumers by itself). */
void m5_js_client_disconnect(m5_js_client_t *c);

/* Frees libnats's global state and waits (up to 10 s) for its threads to end: once, at process
 * exit, after every client is closed. */
void m5_js_library_close(void);

/* ---- KV writes as async publishes (the message store's pipelined accepts, issue 13) ----
 * The server's code for a write whose expected revision did not hold (create of a key that
 * has a message, compare-and-set on a stale revision). */
#define M5_JS_ERR_WRONG_LAST_SEQ 10071
/* m5_js_kv_create (last_rev 0: the key must have no message at all, not even a delete marker)
 * or m5_js_kv_update (last_rev: its revision) as an async publish: the outcome comes through
 * the client's on_ack like any publish, ack->msg_id being msg_id (a header of the write, not a
 * Nats-Msg-Id: the server keeps no memory of it, so a repeat is checked again, never taken for
 * a duplicate): M5_OK with seq = the key's new revision; a conflict is M5_EIO with js_code
 * M5_JS_ERR_WRONG_LAST_SEQ. max_wait_ms > 0. */
int m5_js_kv_publish_async(m5_js_kv_t *kv, const char *key, const void *data, size_t len,
                           uint64_t last_rev, const char *msg_id, int64_t max_wait_ms,
                           char *err, size_t err_size);

/* Deletes the messages at seqs[0..n) of stream in one round trip (the requests of
 * m5_js_delete_msg sent together, their answers awaited together, up to the client's timeout):
 * rcs[i] as m5_js_delete_msg's (M5_OK, M5_ENOENT: not there; M5_ETIMEDOUT: no answer, which
 * means "unknown"; M5_EAGAIN: no responders, or not connected: then nothing is sent). Returns
 * M5_OK when every request was sent (the outcomes are in rcs), else the failure (then rcs[i] of
 * those not sent is that failure). */
int m5_js_delete_msgs(m5_js_client_t *c, const char *stream, const uint64_t *seqs, size_t n,
                      int *rcs, char *err, size_t err_size);

/* ---- KV writes without a revision, and purges by key filter (the store's quota counts, node
 * liveness, REBIND's drop of one originator's keys; issue 13, js_quota.c, js_takeover.c) ---- */

/* Stores data under key whatever it held (last writer wins): for keys only one node writes
 * (quota counts, node liveness). *rev (may be NULL): the revision written. */
int m5_js_kv_put(m5_js_kv_t *kv, const char *key, const void *data, size_t len, uint64_t *rev,
                 char *err, size_t err_size);
/* Removes every key matching filter (KV key syntax, wildcards '*' and '>' allowed) whose
 * revision is below before_rev (0: all of them), by a subject-filtered purge of the bucket's
 * stream: no delete markers are left (a watcher does not see it), and a get of a purged key
 * finds nothing. */
int m5_js_kv_purge(m5_js_kv_t *kv, const char *filter, uint64_t before_rev, char *err,
                   size_t err_size);

#endif
