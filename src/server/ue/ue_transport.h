/* MSGin5G-1 listeners: CoAP over DTLS 1.2 on UDP (RFC 7252 + RFC 6347) and CoAP over TLS on
 * TCP (RFC 8323; TLS 1.3, and 1.2 if the client insists), both keyed by AKMA (architecture
 * §3.1, §4). One listener of each kind per worker loop, sharing the port with SO_REUSEPORT. */
#ifndef M5_SERVER_UE_TRANSPORT_H
#define M5_SERVER_UE_TRANSPORT_H

#include "coap/endpoint.h"
#include "core/loop.h"
#include "server/ue/akma_keys.h"
#include "server/ue/src_limits.h"
#include "server/ue/ue_session.h"

#include <openssl/ssl.h>
#include <stddef.h>
#include <stdint.h>

typedef struct ue_listener ue_listener_t;

typedef struct {
  const char *host;              /* bind address */
  uint16_t port;                 /* 5684 */
  SSL_CTX *ctx;                  /* from m5_akma_server_ctx_new (dtls 1 for UDP, 0 for TCP) */
  akma_keys_t *keys;             /* this worker's K_AF source */
  unsigned worker;               /* index, copied into sessions */
  m5_coap_ep_opts_t coap;        /* endpoint options (transport is set by the listener) */
  size_t max_sessions;           /* established sessions; 0 = 100000 */
  size_t max_handshakes;         /* half-open handshakes at once (ClientHello floods); 0 = 1024 */
  src_limits_t *limits;          /* this worker's per-source bounds (shared by its listeners);
                                    NULL = none */
  uint32_t handshake_timeout_ms; /* 0 = 10000 (includes waiting for the AAnF) */
  uint32_t idle_timeout_ms;      /* 0 = 600000 */
  ue_session_hooks_t hooks;
} ue_listener_opts_t;

/* NULL with a message in err ("cannot bind 0.0.0.0:5684: ... (udp)"). */
ue_listener_t *ue_dtls_listener_new(m5_loop_t *loop, const ue_listener_opts_t *opts, char *err,
                                    size_t errlen);
ue_listener_t *ue_tls_listener_new(m5_loop_t *loop, const ue_listener_opts_t *opts, char *err,
                                   size_t errlen);
/* Stops accepting; closes every session (closed hooks run) and frees. */
void ue_listener_free(ue_listener_t *l);
/* Established sessions; from any thread while l exists (0 for NULL). */
size_t ue_listener_sessions(const ue_listener_t *l);

#endif
