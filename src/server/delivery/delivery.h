/* Forwarding from the message store to the UEs (docs/delivery.md; TS 23.554 cl. 8.3.2,
 * 8.7.1.1): pushes a stored delivery to its recipient's live session, on this worker or, through
 * the router, on the one holding it; concludes every attempt in the store (delivered on the UE's
 * 2.04, rescheduled with back-off when store-and-forward was asked for, else failed); pushes what
 * was stored for a UE when it registers or sends anything; runs the back-off, expiry and
 * re-queue timer (worker `timers`), and pushes the failure report (IMDN) the store wrote with a
 * failure or an expiry for an originator who asked for one.
 *
 * ue_api.c and ue_accept.c feed it: the sessions that register, deregister and close, the deliveries it has
 * just accepted into the store, and DELIVERs routed from other workers. It never answers a UE's
 * request. One delivery_t per worker loop; everything runs on that loop. */
#ifndef M5_SERVER_DELIVERY_H
#define M5_SERVER_DELIVERY_H

#include "core/loop.h"
#include "server/delivery/router.h"
#include "server/registry/registry.h"
#include "server/ue/ue_session.h"
#include "store/store.h"

#include <stddef.h>
#include <stdint.h>

/* app_id of a stored delivery report (an IMDN), the store's (store.h): its payload is
 * "delivSt" or "delivSt failureCause". */
#define DELIVERY_IMDN_APP M5_STORE_REPORT_APP

typedef struct delivery delivery_t;

typedef struct {
  unsigned worker;
  router_t *router;
  m5_store_t *store;
  int64_t max_ttl_s;         /* longest time a message is kept; 0 = 86400 */
  int64_t in_flight_max_ms;  /* a delivery pushed at once whose outcome the store did not record
                                (a failed conclusion) is queued again after this; 0 = 300000 */
  int timers;                /* this worker runs the back-off (DUE_ANY) and expiry timers */
  size_t max_store_inflight; /* store jobs outstanding; beyond, an attempt waits for the back-off
                                timer; 0 = 8192 */
  /* Application Servers (point-to-application): the registry holds their targetUri; pushes
   * are HTTP/2 POSTs with the server's certificate (tls.*). NULL reg: no AS recipients. */
  registry_t *reg;
  const char *tls_cert, *tls_key, *tls_ca;
} delivery_opts_t;

/* NULL when out of memory or without a store. */
delivery_t *delivery_new(m5_loop_t *loop, const delivery_opts_t *opts);
/* After the loop has stopped and the store is closed. */
void delivery_free(delivery_t *d);

/* Wall-clock time (ms) of the first retry of a delivery accepted now: the first attempt is
 * delivery_accepted()'s. */
int64_t delivery_first_retry_ms(void);
/* Conclusions (delivered, failed, rescheduled) waiting for room in the store: while there are
 * any, the worker's new MSGs wait too (ue_wait.c), so acceptance cannot outrun delivery. */
size_t delivery_held(const delivery_t *dv);
/* Submits the delivery conclusions waiting to ride with the next accept (delivery.c
 * LATER_WAIT_MS): called by the accept path right before it submits to the store. */
void delivery_flush_conclusions(delivery_t *dv);
/* The same for a delivery stored for a recipient that is away (store-and-forward): the
 * longest back-off from now; its registration pushes it before that (a DUE). */
int64_t delivery_stored_retry_ms(void);

/* The bodies of this worker's pushes to UEs in flight, in bytes (fanout.c holds back while
 * they are many). */
size_t delivery_push_bytes(const delivery_t *d);

/* Session s opened (borrowed until delivery_session_closed): 0, or M5_ENOMEM. */
int delivery_session_opened(delivery_t *d, ue_session_t *s);
/* Session sid registered as ue_svc_id under binding generation gen: it becomes the target of
 * pushes to that UE of that generation (never of another: docs/delivery.md "Re-bound UE
 * Service IDs"), and what was stored for it goes out now. */
void delivery_registered(delivery_t *d, uint64_t sid, const char *ue_svc_id, uint64_t gen);
/* Session sid deregistered: no more pushes to it; those queued on it and not sent yet go back
 * to the store, pending. */
void delivery_deregistered(delivery_t *d, uint64_t sid);
/* The registered UE of session sid sent something: what was stored for it goes out (looked for
 * at most every few seconds). */
void delivery_ue_active(delivery_t *d, uint64_t sid);
/* Session sid is gone (its pushes conclude through the endpoint's callbacks). */
void delivery_session_closed(delivery_t *d, uint64_t sid);

/* The Application Server as_svc_id registered (with a targetUri): what was stored for it is
 * pushed now (up to the store's list limit; the rest follows with the back-off timer). */
void delivery_as_registered(delivery_t *d, const char *as_svc_id);
/* A message gateway registered ue_svc_id (again: it is back): what was stored for the device
 * is pushed now, a batch of it (the rest with the back-off timer). */
void delivery_gw_registered(delivery_t *d, const char *ue_svc_id);
/* ue_svc_id changed holder under generation gen (a message gateway registered or released
 * it): M5_STORE_REBIND, whose failure reports the back-off timer pushes. Best effort: the
 * store catches up by itself at the next accept from or to the ID, and at start-up. */
void delivery_rebind(delivery_t *d, const char *ue_svc_id, uint64_t gen);
/* Delivery dl was just accepted into the store (borrowed): its first attempt. */
void delivery_accepted(delivery_t *d, const m5_store_delivery_t *dl);
/* The same, with the body a UE recipient gets already encoded (ue_body, borrowed): the fan-out
 * encodes a message once for all its members, not once each (an AS recipient's own form is
 * still encoded for it). */
void delivery_accepted_encoded(delivery_t *d, const m5_store_delivery_t *dl, const char *ue_body,
                               size_t ue_len);
/* The body of d's push: MSGin5G-1 JSON for a UE, the northbound form for an AS (for_as). */
int delivery_encode(const m5_store_delivery_t *d, int for_as, char **body, size_t *len);
/* A ROUTER_DELIVER from another worker for a session of this one; takes m->body (m stays the
 * caller's). */
void delivery_routed(delivery_t *d, router_msg_t *m);

/* Stops the timers and the stored-message pushes; pushes running are waited for by
 * delivery_when_idle() up to timeout_ms from now (their deliveries stay PENDING afterwards and go
 * out after a restart). */
void delivery_drain(delivery_t *d, uint32_t timeout_ms);
/* After delivery_drain: done(arg) on the loop once no store job is outstanding and no push is
 * waited for (at once if so already). */
void delivery_when_idle(delivery_t *d, void (*done)(void *arg), void *arg);

#endif
