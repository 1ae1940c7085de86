/* MSGin5G-1 server logic (architecture §3.1, docs/protocol.md; TS 23.554 cl. 8.2.1, 8.2.2,
 * 8.3.2, 8.7.1.1): the session hooks the UE transports call. It checks each CoAP request
 * (resource, method, Content-Format, body), binds a session to its UE Service ID with REG
 * (the SUPI the AAnF returned must be bound to it), ends that with DEREG, and routes MSG to the
 * recipient's live session, on this worker or another one (router.h). One ue_api_t per
 * worker loop; everything runs on that loop.
 *
 * A MSG (or IMDN) is answered once the message store has committed it (docs/delivery.md):
 * accepted for delivery, DELY_STORED or DELY_FAILED. Its forwarding from the store (pushes,
 * retries, expiry, failure reports) is delivery.h's, which this module feeds with the
 * sessions' registrations and the deliveries it accepted. */
#ifndef M5_SERVER_UE_API_H
#define M5_SERVER_UE_API_H

#include "core/loop.h"
#include "msg/msg.h"
#include "server/delivery/fanout.h"
#include "server/delivery/router.h"
#include "server/registry/registry.h"
#include "server/topics/topics.h"
#include "server/ue/ue_session.h"
#include "store/store.h"

#include <stddef.h>
#include <stdint.h>

typedef struct ue_api ue_api_t;

typedef struct {
  unsigned worker;
  registry_t *reg;
  router_t *router;
  int64_t reg_lifetime_s;    /* expiry of a registration = REG time + this */
  size_t max_reg_inflight;   /* registry jobs outstanding; beyond: 5.03; 0 = 1024 */
  size_t max_routed;         /* results mailbox size (DELIVERs conclude where pushed); 0 = 4096 */
  size_t inbox_cap;          /* messages from other workers waiting; 0 = 16384 */
  m5_store_t *store;         /* the message store (every MSG and IMDN is accepted into it) */
  int64_t max_ttl_s;         /* caps exprTime; the expiry of a message without one; 0 = 86400 */
  int64_t in_flight_max_ms;  /* delivery's (delivery.h); 0 = 300000 */
  int timers;                /* this worker runs the back-off (DUE_ANY) and expiry timers */
  size_t max_store_inflight; /* accepts outstanding (beyond, a UE's request waits and an AS's
                                gets 503), and delivery's; 0 = 8192 */
  size_t max_waiting;        /* UE requests waiting for the store (beyond: 5.03); 0 = 65536 */
  const char *tls_cert, *tls_key, *tls_ca; /* for pushes to Application Servers */
  topics_opts_t topics; /* Messaging Topics (topics.h); its store is this one's */
  fanout_pace_t *bc_pace; /* broadcast pushes, shared by the workers (fanout.h); NULL: unpaced */
  uint32_t bc_rate;       /* its rate (deliveries a second), to spread the first attempts */
  /* This node's name with store.backend jetstream (several m5s nodes), else "" or NULL: a UE
   * registered on another node gets its deliveries queued on that node's subjects, which that
   * node pushes (docs/scale-out.md "Routing between nodes"). */
  const char *node;
} ue_api_opts_t;

/* Creates the mailboxes and attaches them to the router as this worker's. */
ue_api_t *ue_api_new(m5_loop_t *loop, const ue_api_opts_t *opts);
/* After the loop has stopped, the transports are freed and the registry is closed: answers
 * what still waits with 5.03 and frees. */
void ue_api_free(ue_api_t *api);

/* The hooks to give this worker's UE listeners. */
ue_session_hooks_t ue_api_hooks(ue_api_t *api);

/* Graceful drain: new requests get 5.03; the back-off timer stops; done(arg) runs on the loop
 * once no registry job, store job or push is outstanding. After timeout_ms, pushes are no
 * longer waited for (their deliveries stay PENDING in the store and go out after a restart);
 * registry and store jobs always are (their threads answer every job). */
void ue_api_drain(ue_api_t *api, uint32_t timeout_ms, void (*done)(void *arg), void *arg);
size_t ue_api_sessions(const ue_api_t *api);

/* Memory of the messages in flight on this worker (docs/delivery.md "Back-pressure"), from any
 * thread: accepts waiting for the store (count and the bytes they hold: the accept with its
 * job, payload and recipients), and UE requests waiting for room (count, bytes held by their
 * CoAP requests), with the counters of requests that waited and that were refused 5.03 busy. */
typedef struct {
  uint64_t accepts, accept_bytes;
  uint64_t waiting, waiting_bytes;
  uint64_t waited_total, busy_total;
} ue_api_figures_t;
void ue_api_figures(ue_api_t *api, ue_api_figures_t *out);

/* ---- messages from Application Servers (north_msg.c) ---- */

/* How a message from an AS ended: ack = answered MessageDeliveryAck (status NULL = accepted for
 * delivery, or DELY_STORED / DELY_FAILED with cause); busy = overload, retry after retry_s
 * (the store or its queue is full, or the server drains); error = the store failed; dropped =
 * the server stopped before the answer (the exchange is gone: free ctx, answer nothing). */
typedef enum {
  UE_API_ACK,
  UE_API_BUSY,
  UE_API_ERROR,
  UE_API_DROPPED,
  UE_API_INVALID, /* detail names the IE (a report's delivSt or failureCause) */
  UE_API_FORBIDDEN /* the originator (a gateway's device) changed holder while it was stored */
} ue_api_outcome_t;
typedef void (*ue_api_reply_fn)(void *ctx, ue_api_outcome_t how, const char *status,
                                const char *cause, uint32_t retry_s, const char *detail);

/* Accepts m, a MSG (or, with is_report, an IMDN: a DeliveryStatusReport) from the AS
 * m->ori.addr (the caller has authenticated it; m->ori.type is "AS"), into the store exactly
 * as a UE's (target resolution, dedup by ("AS:" + asSvcId, msgId), store-and-forward, expiry;
 * a report is always stored for an absent recipient) and forwards it. reply(ctx, ...) runs
 * exactly once, later on this loop or (UE_API_INVALID) at once. m is only read. */
/* This worker's Messaging Topics (an AS's subscriptions, north_topicsub.c). */
topics_t *ue_api_topics(ue_api_t *api);
/* The AS as_svc_id registered: its stored messages go out now (delivery_as_registered). */
void ue_api_as_registered(ue_api_t *api, const char *as_svc_id);

void ue_api_accept_from_as(ue_api_t *api, const m5_msg_t *m, int is_report, ue_api_reply_fn reply,
                           void *ctx);
/* A message gateway registered ue_svc_id (delivery_gw_registered): its stored messages go out. */
void ue_api_gw_registered(ue_api_t *api, const char *ue_svc_id);
/* The same for a message gateway's device (m->ori a UE Service ID the gateway holds, checked
 * by the caller, under generation ori_gen): deliver-ue-message, deliver-report. */
void ue_api_accept_from_gw(ue_api_t *api, const m5_msg_t *m, int is_report, uint64_t ori_gen,
                           ue_api_reply_fn reply, void *ctx);
/* A UE Service ID changed holder (a gateway registered or released it) under generation gen:
 * the message store fails what it kept for the previous holder and drops its dedup state
 * (M5_STORE_REBIND, through this worker's delivery_rebind). */
void ue_api_rebind(ue_api_t *api, const char *ue_svc_id, uint64_t gen);

#endif
