/* A UE's secured CoAP session (MSGin5G-1), between the transports that create it (ue_dtls.c
 * over UDP, ue_tls.c over TCP) and the server logic that uses it (registration, routing).
 * A session exists once the AKMA handshake has completed; it lives on one worker loop. */
#ifndef M5_SERVER_UE_SESSION_H
#define M5_SERVER_UE_SESSION_H

#include "coap/endpoint.h"
#include "tls/akma.h"

#include <stdint.h>

typedef struct ue_session ue_session_t;

struct ue_session {
  uint64_t id;           /* unique in the process, never reused: the handle other threads use */
  unsigned worker;       /* index of the owning worker */
  m5_coap_ep_t *ep;      /* the CoAP endpoint over the secure channel */
  const char *transport; /* "dtls" or "tls" */
  const char *peer;      /* "ip:port" for logs (the transport's copy, which outlives s) */
  m5_akma_key_t key;     /* kaf wiped right after the handshake: only supi and expiry remain */
  char akid[M5_AKMA_AKID_MAX + 1];
  void *app;             /* the server logic's state for this session */
  void *transport_priv;  /* the transport's */
  void (*close)(ue_session_t *s, const char *why); /* set by the transport */
};

/* Hooks the server logic gives the transports; all run on the session's worker loop. */
typedef struct {
  void (*opened)(ue_session_t *s, void *arg);
  /* One complete CoAP request from the UE; answer it with m5_coap_ep_respond*(). */
  void (*request)(ue_session_t *s, m5_coap_req_t *req, void *arg);
  /* The session ends (peer closed, error, K_AF expiry, shutdown); s is freed after this. */
  void (*closed)(ue_session_t *s, const char *why, void *arg);
  void *arg;
} ue_session_hooks_t;

/* Ends a session from the server logic (e.g. 4.01 on an expired key). Asynchronous: the
 * closed hook runs later on the loop, never from inside this call. */
static inline void ue_session_close(ue_session_t *s, const char *why) { s->close(s, why); }

#endif
