/* libm5c internal: one secured channel to the server (architecture §3.1, §4) and the CoAP
 * endpoint on it. DTLS 1.2 on a connected UDP socket (BIO_dgram, retransmission timer from
 * DTLSv1_get_timeout) or TLS on TCP with ALPN "coap" and the RFC 8323 CSM. The AKMA PSK
 * callbacks (tls/akma.h) derive K_AF inside the handshake. */
#ifndef M5_CLIENT_CHAN_H
#define M5_CLIENT_CHAN_H

#include "coap/endpoint.h"
#include "m5c.h"

typedef struct m5c_chan m5c_chan_t;

typedef struct {
  /* Handshake done; the endpoint (owned by the channel) is ready for requests. */
  void (*on_up)(m5c_chan_t *ch, m5_coap_ep_t *ep, void *arg);
  /* A request from the server, as m5_coap_ep_cbs_t.on_request. */
  void (*on_request)(m5_coap_ep_t *ep, m5_coap_req_t *req, void *arg);
  /* The channel failed or was closed by the peer; it is inert now. status: M5_ECRYPTO (the
   * handshake failed: authentication, alert), M5_EIO (unreachable, socket error), M5_ETIMEDOUT,
   * M5_ECLOSED (the server ended an established session). Free it with m5c_chan_free(), which
   * may be called from inside this callback. */
  void (*on_down)(m5c_chan_t *ch, int status, const char *why, void *arg);
} m5c_chan_cbs_t;

/* Resolves host (blocking getaddrinfo: a client-side convenience) and starts connecting to
 * its addresses in order. ctx is borrowed and must outlive the channel; cred is copied into
 * the SSL. NULL with err set when nothing could be started. */
m5c_chan_t *m5c_chan_open(m5_loop_t *loop, SSL_CTX *ctx, const m5c_opts_t *opts,
                          const m5_akma_cred_t *cred, const m5c_chan_cbs_t *cbs, void *arg,
                          char *err, size_t errlen);
/* Frees the endpoint (outstanding requests complete with M5_ECLOSED), sends close_notify on an
 * established session, closes the socket. */
void m5c_chan_free(m5c_chan_t *ch);

#endif
