/* Inside m5gw's core: the state the modules share (one loop thread, no locks). gw_core.c
 * sets up and runs, gw_token.c keeps the access token, gw_reg.c the registrations,
 * gw_up.c + gw_spool.c the uplink (spool and sender), gw_msgg.c the MSGG listener. */
#ifndef M5_GATEWAY_GW_INT_H
#define M5_GATEWAY_GW_INT_H

#include "gateway/core/gw_config.h"
#include "gateway/gw_adapter.h"
#include "http/client.h"
#include "http/server.h"
#include "msg/msg.h"

#include <stdbool.h>
#include <stdint.h>

#define GW_DOM "gw"

typedef struct gw_spool gw_spool_t;

/* One uplink message or report, from m5gw_uplink / m5gw_report_up or the spool at start. */
typedef struct m5gw_core m5gw_core_t;

typedef struct up_entry {
  struct up_entry *prev, *next;
  struct m5gw_core *core;
  int64_t seq; /* its spool row; 0 while not yet durable */
  bool is_report;
  bool inflight;
  char *body; /* the JSON POSTed to m5s */
  size_t len;
  char ori[M5_MSG_ADDR_MAX + 1];
  char msg_id[M5_MSG_ID_MAX + 1];
  m5gw_up_fn cb; /* NULL: nobody waits (a report, or spooled before a restart) */
  void *arg;
} up_entry_t;

typedef struct {
  up_entry_t *head, *tail;
} up_list_t;

typedef struct gw_reg_op gw_reg_op_t;

struct m5gw_core {
  const m5gw_config_t *cfg;
  const m5gw_adapter_ops_t *ops;
  void *adapter;     /* the adapter's state once started */
  bool adapter_live; /* between start() and stop(): callbacks into it allowed */
  bool stopping;
  m5_loop_t *loop;
  m5_http_client_t *http; /* towards m5s, with the gateway's certificate */
  char url_token[600], url_reg[600], url_msg[600], url_report[600];

  /* gw_token.c */
  char *token; /* the access token (wiped when replaced), NULL until there is one */
  size_t token_len;
  bool token_busy; /* a token request is out */
  m5_timer_id_t token_timer;
  uint64_t token_backoff_ms;
  uint64_t tokens_fetched;

  /* gw_up.c: pending = waiting for the next commit; queue = durable, oldest first */
  gw_spool_t *spool;
  up_list_t pending, queue, refused; /* refused: REFUSED callbacks to run */
  int64_t *done_seqs;                /* rows to delete at the next commit */
  size_t n_done, cap_done;
  size_t n_msgs, bytes; /* in pending + queue (the bounds) */
  size_t up_inflight;
  m5_defer_t commit_defer;
  struct m5_jobthread *spool_thread; /* runs the commits (gw_spool.c is its connection) */
  m5_mailbox_t *spool_replies;       /* finished commits come back here */
  bool commit_busy;                  /* one commit out at a time */
  m5_timer_id_t commit_timer;
  void (*flush_cb)(void *arg); /* gw_up_when_flushed */
  void *flush_arg;
  int flush_left;
  m5_timer_id_t up_timer; /* the back-off */
  uint64_t up_backoff_ms;
  bool up_backing_off;
  uint64_t up_sent, up_accepted, up_refused, up_retried;
  struct up_restored *restored, *restored_tail; /* m5gw_uplink_restored: from the spool at start */

  /* gw_reg.c */
  gw_reg_op_t *regs;
  /* gw_sync.c (NULL: the adapter has no fixed set of devices) */
  struct gw_sync *sync;

  /* gw_msgg.c */
  m5_http_server_t *msgg, *mgmt;
  SSL_CTX *msgg_tls;
  size_t dl_inflight;
  struct gw_dl *dls;
  uint64_t dl_delivered, dl_retry, dl_failed, reports_down;
};

/* gw_spool.c: the SQLite file of the spool (WAL, synchronous=FULL: a COMMIT is on disk). */
gw_spool_t *gw_spool_open(const char *path, char *err, size_t errlen);
void gw_spool_close(gw_spool_t *sp);
/* Calls each(arg, ...) for every stored row, oldest first. */
int gw_spool_load(gw_spool_t *sp,
                  int (*each)(void *arg, int64_t seq, bool is_report, const char *body, size_t len),
                  void *arg);
int gw_spool_begin(gw_spool_t *sp);
int gw_spool_insert(gw_spool_t *sp, bool is_report, const char *body, size_t len, int64_t *seq);
int gw_spool_delete(gw_spool_t *sp, int64_t seq);
int gw_spool_commit(gw_spool_t *sp);
void gw_spool_rollback(gw_spool_t *sp);
const char *gw_spool_error(gw_spool_t *sp);

/* gw_up.c */
int gw_up_start(m5gw_core_t *core, char *err, size_t errlen); /* loads the spool */
void gw_up_pump(m5gw_core_t *core);                           /* sends what may be sent now */
/* cb(arg) once what waits now is committed (at most two commits on, so that new messages do
 * not hold it back forever); used by the drain. */
void gw_up_when_flushed(m5gw_core_t *core, void (*cb)(void *arg), void *arg);
/* After the loop stopped: commits what still waits on this thread, closes the spool. */
void gw_up_stop(m5gw_core_t *core);

/* gw_token.c */
void gw_token_start(m5gw_core_t *core);
const char *gw_token(const m5gw_core_t *core); /* NULL when none */
void gw_token_rejected(m5gw_core_t *core);     /* m5s answered 401: fetch a new one */
void gw_token_stop(m5gw_core_t *core);
void gw_on_token(m5gw_core_t *core); /* gw_core.c: a token arrived */

/* gw_reg.c */
void gw_reg_pump(m5gw_core_t *core);
void gw_reg_stop(m5gw_core_t *core);
/* One request of the core's own to the registration resource (method "GET" or "DELETE",
 * url malloc'd and taken), sent and retried like the adapter's; done(arg, status, reason,
 * body, len) once: 0 with the 2xx answer's body (valid during the call), or a refusal for
 * good (M5_ENOENT for a 404, ...). Never called after gw_reg_stop. */
typedef void (*gw_req_fn)(void *arg, int status, const char *reason, const uint8_t *body,
                          size_t len);
int gw_reg_request(m5gw_core_t *core, const char *method, char *url, const char *what,
                   gw_req_fn done, void *arg);
/* url_reg + sep + id percent-encoded (malloc'd; NULL when out of memory). */
char *gw_reg_url(const m5gw_core_t *core, const char *sep, const char *id);
/* Whether a registration (POST) is out or waits for its retry. */
bool gw_reg_posting(const m5gw_core_t *core);

/* gw_sync.c: converging m5s to the adapter's devices (docs/gateways.md, "Registration").
 * start: after the adapter started (asks it for the IDs it serves; none: m5s is left alone);
 * request: converge (again); kick: the token came or a registration ended, go on if due. */
int gw_sync_start(m5gw_core_t *core, char *err, size_t errlen);
void gw_sync_request(m5gw_core_t *core);
void gw_sync_kick(m5gw_core_t *core);
void gw_sync_stop(m5gw_core_t *core);

/* gw_msgg.c */
int gw_msgg_start(m5gw_core_t *core, char *err, size_t errlen);
void gw_msgg_drain(m5gw_core_t *core, void (*done)(void *arg), void *arg);
void gw_msgg_stop(m5gw_core_t *core);

/* gw_core.c: helpers */
/* The detail (else cause, else title) of a ProblemDetails or an OAuth error body, into out. */
void gw_problem_text(const uint8_t *body, size_t len, long http_status, char *out, size_t outlen);
/* The next back-off: doubled, within the configured bounds. */
uint64_t gw_backoff_next(const m5gw_config_t *cfg, uint64_t cur);

#endif
