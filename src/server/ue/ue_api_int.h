/* Internals of MSGin5G-1 server logic shared by ue_api.c (sessions, REG / DEREG, requests, life
 * cycle) and ue_accept.c (MSG and IMDN acceptance into the message store, for UEs and ASs, with
 * the topic, group and broadcast fan-out). Not for other modules: they use ue_api.h. */
#ifndef M5_SERVER_UE_API_INT_H
#define M5_SERVER_UE_API_INT_H

#include "coap/coap.h"
#include "core/loop.h"
#include "core/hmap.h"
#include "server/delivery/delivery.h"
#include "server/delivery/fanout.h"
#include "server/ue/ue_api.h"

#include <stdatomic.h>

#define DOM "ue"
#define RETRY_AFTER_S 1 /* Max-Age of a 5.03 when a queue is full */
#define DRAIN_RETRY_S 5 /* Max-Age of a 5.03 while the server shuts down */

typedef struct wait_req wait_req_t; /* ue_wait.c: a request waiting for room in the store */

/* Per-session state (ue_session_t.app). */
typedef struct sess {
  ue_session_t *s;
  int registered;
  char ue_svc_id[M5_MSG_ADDR_MAX + 1];
  uint64_t gen; /* the binding generation it registered under (registry.h) */
  /* Back-pressure (ue_wait.c): its requests not served yet because the store had no room, in
   * arrival order, and its place in the worker's round of such sessions. */
  wait_req_t *wait_head, *wait_tail;
  size_t n_wait;
  struct sess *rprev, *rnext;
  int in_round;
} sess_t;

typedef enum { P_REG, P_DEREG } pending_kind_t;

/* A request waiting. job is first: the registry hands back &job.base == the pending_t. */
typedef struct pending {
  registry_job_t job;
  ue_api_t *api;
  pending_kind_t kind;
  struct pending *prev, *next;
  uint64_t sid;
  m5_coap_req_t *req;
} pending_t;

/* A MSG or IMDN being accepted into the message store. job is first: the store hands back
 * &job.base == the accept_t. */
typedef struct accept {
  m5_store_job_t job;
  ue_api_t *api;
  struct accept *held_next; /* in ue_api.held: the store's queue was full when it was ready */
  size_t bytes;             /* what it holds (struct, payload, recipients): ue_api.accept_bytes */
  m5_coap_req_t *req;    /* the MSG / IMDN to answer, or NULL for an AS's */
  ue_api_reply_fn reply; /* an AS's: the northbound answer */
  void *reply_ctx;
  int is_imdn;
  m5_store_rcpt_t rcpt;
  uint8_t *payload; /* owned, borrowed by the store */
  /* A MSG to a TOPIC address: first TOPIC_SUBSCRIBERS, then the ACCEPT to them (topic_*). */
  m5_msg_name_t topic;
  m5_store_rcpt_t *fan; /* owned, borrowed by the store */
  size_t n_fan;
  int many;  /* a GROUP, BC or TOPIC message: its live recipients go to fanout.c */
  int paced; /* a BC message: paced (broadcast.rate) */
  size_t fan_charged; /* its share of api->fan_rcpts */
} accept_t;

struct ue_api {
  m5_loop_t *loop;
  ue_api_opts_t opts;
  delivery_t *dl;              /* forwarding from the store */
  fanout_t *fan;               /* pushes of group, broadcast and topic messages */
  topics_t *topics;            /* TOPICSUB / TOPICUNSUB, topic rules */
  m5_hmap_t *sessions;         /* session id (8 bytes) -> sess_t */
  m5_mailbox_t *reg_replies;   /* registry jobs come back here */
  m5_mailbox_t *store_replies; /* accept jobs come back here */
  m5_mailbox_t *inbox;         /* DELIVER / CLOSE from any worker */
  m5_mailbox_t *results;       /* RESULT of DELIVERs (unused: DELIVERs conclude where pushed) */
  pending_t *pending;          /* every pending_t, for drain and free */
  size_t reg_inflight, store_inflight;
  size_t fan_rcpts; /* recipients of group, area and topic accepts not answered yet (ue_accept.c) */
  /* Back-pressure (ue_wait.c, docs/delivery.md "Back-pressure"): UE requests wait, unanswered,
   * while store_inflight is at opts.max_store_inflight; the device's own CoAP window then
   * holds back its next ones. Sessions with waiting requests take turns (round); accepts
   * ready but refused by the store's full queue wait in held. At most max_waiting of each. */
  sess_t *round_head, *round_tail;
  accept_t *held_head, *held_tail;
  accept_t *spare; /* finished accepts kept for reuse (ue_accept.c), n_spare of them */
  size_t n_spare;
  size_t n_waiting, n_held, max_waiting;
  m5_timer_id_t wait_timer; /* retries when the store is full of other workers' jobs */
  wait_req_t *orphans;      /* of sessions that closed: freed once their endpoint is gone */
  m5_timer_id_t orphan_timer;
  /* Figures read by the admin thread (ue_api_figures). */
  _Atomic uint64_t fig_waiting, fig_waiting_bytes, fig_waited, fig_busy;
  _Atomic uint64_t fig_accepts, fig_accept_bytes;
  int draining;
  void (*drain_done)(void *arg);
  void *drain_arg;
};

/* ue_api.c */
void ue_respond_retry(m5_coap_req_t *req, uint8_t code, uint32_t seconds, const char *diag);
void ue_respond_msg(m5_coap_req_t *req, uint8_t code, const m5_msg_t *m);
/* Once no request waits for the registry or the store, no new delivery starts here: what is
 * left is delivery.c's. */
void ue_api_check_drained(ue_api_t *api);

/* Serves one request of a session (the checks, then REG, MSG, ...); resumed: it waited
 * already (ue_wait.c), so the store's room was checked for it. */
void ue_api_serve(ue_api_t *api, sess_t *ss, m5_coap_req_t *req, int resumed);

/* ue_wait.c */
/* 1 if a new MSG / IMDN must wait: the store has no room for this worker, or others wait. */
int ue_wait_busy(const ue_api_t *api);
/* Parks req (unanswered) behind the session's waiting requests; answers it 5.03 when
 * max_waiting requests already wait (the server is overloaded, not just busy). */
void ue_wait_park(ue_api_t *api, sess_t *ss, m5_coap_req_t *req);
/* After a store reply or the retry timer: held accepts first, then the sessions in turn. */
void ue_wait_pump(ue_api_t *api);
/* Arms the retry timer when something waits and no store reply of ours will come. */
void ue_wait_rearm(ue_api_t *api);
/* The session closes: its waiting requests are answered 5.03 and dropped. */
void ue_wait_session_closed(ue_api_t *api, sess_t *ss);
/* Drain or free: everything waiting or held is answered 5.03 (server shutting down). */
void ue_wait_flush(ue_api_t *api);

/* ue_accept.c */
/* Submits the held accepts, oldest first; 1 if some are still held (the store is full). */
int ue_accept_retry_held(ue_api_t *api);
/* Answers every held accept 5.03 (server shutting down) and frees it. */
void ue_accept_flush_held(ue_api_t *api);
/* A MSG or (is_imdn) an IMDN from the session's UE: checked, then accepted into the store
 * (answered from the store's reply). */
void ue_accept_request(ue_api_t *api, sess_t *ss, m5_coap_req_t *req, m5_msg_t *m, int is_imdn);
/* The store's replies to accepts (api->store_replies' handler). */
void ue_accept_on_store_reply(void *msg, void *arg);
/* An accept reply that arrived after the loop stopped (the store was closed after it). */
void ue_accept_drop(void *msg);
/* Frees the accepts kept for reuse (ue_api_free, once no accept is left). */
void ue_accept_free_spares(ue_api_t *api);

#endif
