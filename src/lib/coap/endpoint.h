/* A CoAP endpoint over one secured channel (one DTLS association or one TLS connection):
 * RFC 7252 message layer on datagrams (CON/ACK/RST, message-id deduplication with cached
 * answers, retransmission with exponential back-off, NSTART), RFC 8323 on streams (framing,
 * CSM exchange, Ping/Pong, Release/Abort, a pipelining window), and Block-wise transfer
 * (RFC 7959: Block1 for request bodies, Block2 for response bodies) on datagrams.
 *
 * Both sides of MSGin5G-1 use it: the server has one endpoint per UE session, the client one
 * per connection. Each side is a CoAP client and server at once (architecture §3.1). The
 * endpoint does no I/O itself: the owner feeds it decrypted input and gives it a send
 * function; timers run on the owner's loop. Everything runs on that loop's thread. */
#ifndef M5_COAP_ENDPOINT_H
#define M5_COAP_ENDPOINT_H

#include "coap/coap.h"
#include "core/loop.h"

#include <stddef.h>
#include <stdint.h>

typedef struct m5_coap_ep m5_coap_ep_t;
typedef struct m5_coap_req m5_coap_req_t; /* an incoming request awaiting its answer */

typedef enum { M5_COAP_DGRAM, M5_COAP_STREAM } m5_coap_transport_t;

typedef struct {
  m5_coap_transport_t transport;
  size_t max_body;         /* largest request/response body accepted (reassembled); 0 = 65536 */
  unsigned block_szx;      /* datagram Block-wise size exponent: 2^(4+szx); 0 = 6 (1024 B) */
  unsigned nstart;         /* datagram: outstanding CON requests; 0 = 1 (RFC 7252) */
  unsigned window;         /* stream: outstanding requests; 0 = 20 */
  size_t max_queued;       /* requests waiting for NSTART/window; beyond: M5_EFULL; 0 = 256 */
  uint32_t ack_timeout_ms; /* 0 = 2000 */
  unsigned max_retransmit; /* 0 = 4 */
  uint32_t exchange_timeout_ms; /* stream: a request without response fails; 0 = 60000 */
  size_t max_message_size; /* stream: announced in our CSM; 0 = 1152 + max_body */
} m5_coap_ep_opts_t;

typedef struct {
  /* Sends one datagram (DGRAM) or a run of bytes (STREAM) to the peer through the secure
   * channel. Returns 0 or a negative status (the endpoint then fails as by on_error). */
  int (*send)(void *io, const uint8_t *p, size_t n);
  /* A complete request (Block1 reassembled, duplicates filtered). Answer it exactly once with
   * m5_coap_ep_respond(), now or later on the same loop. */
  void (*on_request)(m5_coap_ep_t *ep, m5_coap_req_t *req, void *arg);
  /* The channel is unusable (peer Abort/RST storm, protocol error, send failure). The owner
   * closes the channel and frees the endpoint (not from inside this callback's caller stack:
   * schedule it, e.g. a 0 ms timer). */
  void (*on_error)(m5_coap_ep_t *ep, int status, const char *why, void *arg);
} m5_coap_ep_cbs_t;

/* io is passed to send(); arg to the other callbacks. */
m5_coap_ep_t *m5_coap_ep_new(m5_loop_t *loop, const m5_coap_ep_opts_t *opts,
                             const m5_coap_ep_cbs_t *cbs, void *io, void *arg);
/* Frees the endpoint: outstanding outgoing requests complete with M5_ECLOSED (their callbacks
 * run before this returns); unanswered incoming requests become orphans that a later
 * m5_coap_ep_respond() frees silently. */
void m5_coap_ep_free(m5_coap_ep_t *ep);

/* Stream transports: sends our CSM (call once the TLS handshake is done). */
int m5_coap_ep_start(m5_coap_ep_t *ep);
/* Feeds one decrypted datagram, or a chunk of the decrypted stream. A malformed datagram is
 * answered with RST (CON) or dropped, never fatal; a malformed stream is fatal (Abort). */
int m5_coap_ep_input(m5_coap_ep_t *ep, const uint8_t *p, size_t n);

/* ---- incoming requests ---- */
uint8_t m5_coap_req_method(const m5_coap_req_t *r);
/* Uri-Path segments joined with '/', without a leading '/' ("msgin5g"). */
const char *m5_coap_req_path(const m5_coap_req_t *r);
/* Content-Format, or -1 when absent. */
int m5_coap_req_format(const m5_coap_req_t *r);
/* The (reassembled) body, NUL-terminated for convenience; len excludes the NUL. */
const uint8_t *m5_coap_req_body(const m5_coap_req_t *r, size_t *len);
/* The memory the request holds until it is answered (struct, message copy, body, path). */
size_t m5_coap_req_bytes(const m5_coap_req_t *r);
/* The whole request message (options included), valid until the answer. */
const m5_coap_msg_t *m5_coap_req_msg(const m5_coap_req_t *r);

/* Answers a request: code, optional Content-Format (-1 = none), body, extra options (e.g.
 * Max-Age, Size1). Large bodies go out with Block2. If the answer takes longer than about
 * ack_timeout/2 on datagrams, an empty ACK went out already and the answer is sent as a
 * separate CON response. Frees req. Returns M5_ECLOSED (and frees req) if the endpoint is
 * gone. */
int m5_coap_ep_respond(m5_coap_req_t *req, uint8_t code, int format, const uint8_t *body,
                       size_t len, const m5_coap_opt_t *opts, size_t n_opts);
/* Convenience for errors: code with a diagnostic payload (text/plain, RFC 7252 §5.5.2). */
int m5_coap_ep_respond_error(m5_coap_req_t *req, uint8_t code, const char *diagnostic);

/* ---- outgoing requests ---- */
/* status: 0 with the response code, options and body (Block2 reassembled); or M5_ETIMEDOUT
 * (no ACK/response after the retransmissions or exchange timeout), M5_EPROTO (peer RST),
 * M5_ECLOSED (endpoint freed). The message and body are valid only during the call. */
typedef void (*m5_coap_resp_fn)(void *arg, int status, const m5_coap_msg_t *resp,
                                const uint8_t *body, size_t len);

/* Sends a confirmable request (POST/GET/...) to Uri-Path path with the body (Block1 if
 * larger than the block size on datagrams). Queued when NSTART/window is reached; M5_EFULL
 * when max_queued requests already wait. cb runs exactly once (never from inside this call). */
int m5_coap_ep_request(m5_coap_ep_t *ep, uint8_t method, const char *path, int format,
                       const uint8_t *body, size_t len, m5_coap_resp_fn cb, void *arg);

/* Completes every outgoing request still queued (not sent yet: beyond NSTART / the window)
 * with status, callbacks run from inside this call; those sent are left to finish. Returns
 * how many. For a peer that may no longer receive what was queued for it (a UE that
 * deregistered). */
size_t m5_coap_ep_cancel_queued(m5_coap_ep_t *ep, int status);

/* Outstanding + queued outgoing requests, and incoming requests not answered yet. */
size_t m5_coap_ep_pending(const m5_coap_ep_t *ep);
/* Stream: the peer's Max-Message-Size from its CSM (before it arrives: 1152, RFC 8323). */
size_t m5_coap_ep_peer_max_message(const m5_coap_ep_t *ep);

#endif
