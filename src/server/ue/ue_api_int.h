/* Internals of MSGin5G-1 server logic shared by ue_api.c (sessions, REG / DEREG, requests, life
 * cycle) and ue_accept.c (MSG and IMDN acceptance into the message store, for UEs and ASs, with
 * the topic, group and broadcast fan-out). Not for other modules: they use ue_api.h. */
#ifndef M5_SERVER_UE_API_INT_H
#define M5_SERVER_UE_API_INT_H

#include "coap/coap.h"
#include "core/hmap.h"
#include "server/delivery/delivery.h"
#include "server/delivery/fanout.h"
#include "server/ue/ue_api.h"

#define DOM "ue"
#define RETRY_AFTER_S 1 /* Max-Age of a 5.03 when a queue is full */
#define DRAIN_RETRY_S 5 /* Max-Age of a 5.03 while the server shuts down */

/* Per-session state (ue_session_t.app). */
typedef struct {
  ue_session_t *s;
  int registered;
  char ue_svc_id[M5_MSG_ADDR_MAX + 1];
  uint64_t gen; /* the binding generation it registered under (registry.h) */
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
typedef struct {
  m5_store_job_t job;
  ue_api_t *api;
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

/* ue_accept.c */
/* A MSG or (is_imdn) an IMDN from the session's UE: checked, then accepted into the store
 * (answered from the store's reply). */
void ue_accept_request(ue_api_t *api, sess_t *ss, m5_coap_req_t *req, m5_msg_t *m, int is_imdn);
/* The store's replies to accepts (api->store_replies' handler). */
void ue_accept_on_store_reply(void *msg, void *arg);
/* An accept reply that arrived after the loop stopped (the store was closed after it). */
void ue_accept_drop(void *msg);

#endif
