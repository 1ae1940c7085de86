/* MSGin5G-1 server logic (architecture §3.1, docs/protocol.md; TS 23.554 cl. 8.2.1, 8.2.2,
 * 8.3.2, 8.7.1.1): the session hooks the UE transports call. It checks each CoAP request
 * (resource, method, Content-Format, body), binds a session to its UE Service ID with REG
 * (the SUPI the AAnF returned must be bound to it), ends that with DEREG, and routes MSG to the
 * recipient's live session, on this worker or another one (router.h). One ue_api_t per
 * worker loop; everything runs on that loop.
 *
 * A MSG is answered once it is accepted for delivery: in this version that means handed to
 * the recipient's live session (no durable store yet). The push to the recipient then runs on
 * its own; a push that fails (timeout, RST, session gone) is logged. */
#ifndef M5_SERVER_UE_API_H
#define M5_SERVER_UE_API_H

#include "core/loop.h"
#include "server/registry.h"
#include "server/router.h"
#include "server/ue_session.h"

#include <stddef.h>
#include <stdint.h>

typedef struct ue_api ue_api_t;

typedef struct {
  unsigned worker;
  registry_t *reg;
  router_t *router;
  int64_t reg_lifetime_s;  /* expiry of a registration = REG time + this */
  size_t max_reg_inflight; /* registry jobs outstanding; beyond: 5.03; 0 = 1024 */
  size_t max_routed;       /* MSGs waiting for another worker's result; beyond: 5.03; 0 = 4096 */
  size_t inbox_cap;        /* messages from other workers waiting; 0 = 16384 */
} ue_api_opts_t;

/* Creates the mailboxes and attaches them to the router as this worker's. */
ue_api_t *ue_api_new(m5_loop_t *loop, const ue_api_opts_t *opts);
/* After the loop has stopped, the transports are freed and the registry is closed: answers
 * what still waits with 5.03 and frees. */
void ue_api_free(ue_api_t *api);

/* The hooks to give this worker's UE listeners. */
ue_session_hooks_t ue_api_hooks(ue_api_t *api);

/* Graceful drain: new requests get 5.03; done(arg) runs on the loop once no registry job,
 * routed MSG or push is outstanding. After timeout_ms, MSGs still waiting for another worker
 * are answered 5.03 and pushes are no longer waited for; registry jobs always are (the DB
 * thread answers every job). */
void ue_api_drain(ue_api_t *api, uint32_t timeout_ms, void (*done)(void *arg), void *arg);
size_t ue_api_sessions(const ue_api_t *api);

#endif
