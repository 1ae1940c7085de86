/* Internals of the CoAP endpoint (endpoint.h), shared by endpoint.c (life cycle, datagram
 * message layer, outgoing requests), incoming.c (incoming requests, deduplication, answers,
 * server-side Block-wise) and stream.c (RFC 8323 input and signalling). */
#ifndef M5_COAP_EP_INT_H
#define M5_COAP_EP_INT_H

#include "coap/endpoint.h"
#include "core/buf.h"

#include <stddef.h>
#include <stdint.h>

#define EP_DEDUP 64   /* remembered peer message ids: also the bound on unanswered requests */
#define EP_B2_SLOTS 2 /* response bodies kept for Block2 follow-ups */
#define EP_MAX_SEP 64 /* separate CON responses under retransmission; beyond: NON */
#define EP_MAX_LATENCY_MS 100000u /* RFC 7252 §4.8.2 */

typedef struct out out_t;
typedef struct xmit xmit_t;

/* One CON message of ours under retransmission (RFC 7252 §4.2). */
struct xmit {
  xmit_t *next;
  m5_coap_ep_t *ep;
  out_t *out; /* the request it carries, or NULL for a separate response */
  uint16_t mid;
  m5_buf_t wire;
  unsigned retries;
  uint64_t timeout_ms;
  m5_timer_id_t timer;
};

/* An outgoing request, queued or in flight. */
struct out {
  out_t *prev, *next;
  m5_coap_ep_t *ep;
  uint8_t method;
  int format;
  char *path;
  uint8_t *body;
  size_t len;
  m5_coap_resp_fn cb;
  void *arg;
  uint8_t token[M5_COAP_MAX_TOKEN];
  int active;          /* in ep->active (else in ep->queue) */
  unsigned szx;        /* datagram Block-wise size exponent in use */
  int block1;          /* the body goes out in Block1 blocks */
  size_t b1_off;       /* offset of the block in flight */
  size_t b1_cur;       /* its length */
  int block2;          /* fetching further Block2 blocks of the response */
  uint32_t b2_next;    /* block number asked for */
  m5_buf_t b2;         /* response body so far */
  xmit_t *x;           /* datagram: our CON in flight, NULL once acknowledged */
  /* Exchange timeout (stream; datagram after an empty ACK): due at `deadline`, in the
   * endpoint's deadline list (tprev / tnext) while timed. */
  int timed;
  uint64_t deadline;
  out_t *tprev, *tnext;
};

enum { DEDUP_FREE = 0, DEDUP_HANDLING, DEDUP_DONE };
typedef struct {
  int state;
  uint16_t mid;
  uint64_t expires;
  m5_buf_t answer; /* what a duplicate CON gets again; empty: nothing */
} dedup_t;

/* A body in transit: Block1 reassembly of a request, or a response kept for Block2. */
typedef struct {
  int used;
  uint8_t method;
  char *path;
  unsigned szx;
  uint8_t code; /* Block2: the response code and Content-Format (-1: none) */
  int format;
  uint64_t expires;
  m5_buf_t body;
} blk_t;

struct m5_coap_req {
  m5_coap_req_t *prev, *next;
  m5_coap_ep_t *ep; /* NULL once orphaned by m5_coap_ep_free() */
  uint8_t *raw;     /* copy of the (last) request message the options point into */
  size_t raw_len;
  m5_coap_msg_t msg;
  char *path;
  uint8_t *body;     /* NUL-terminated */
  uint8_t *raw_body; /* body when it is the end of raw (not a copy of its own) */
  size_t body_len;
  m5_coap_type_t type;
  uint16_t mid;
  int acked; /* datagram: an empty ACK went out, the answer is a separate response */
  m5_timer_id_t ack_timer;
  int has_b1; /* the answer echoes Block1 (num, m = 0, szx) */
  uint32_t b1_num;
  unsigned b1_szx;
  int has_b2; /* the request asked for a Block2 block */
  uint32_t b2_num;
  unsigned b2_szx;
};

struct m5_coap_ep {
  m5_loop_t *loop;
  m5_coap_ep_opts_t o;
  m5_coap_ep_cbs_t cbs;
  void *io, *arg;
  int depth;  /* entry points on the stack: the struct outlives a free until it unwinds */
  int dead;   /* m5_coap_ep_free() was called */
  int failed; /* on_error was reported */
  /* outgoing requests */
  out_t *active, *queue, *queue_tail;
  size_t n_active, n_queued;
  m5_timer_id_t kick;
  /* Exchange timeouts: every one is exchange_timeout_ms long, so the requests' deadlines come
   * in the order they were armed; one list in that order and one loop timer, for the oldest,
   * per endpoint rather than a timer per request (endpoint.c, "exchange timeouts"). */
  out_t *to_head, *to_tail;
  m5_timer_id_t to_timer;
  uint16_t next_mid;
  xmit_t *xmits;
  size_t n_sep;
  /* incoming requests */
  m5_coap_req_t *reqs;
  size_t n_reqs;
  /* EP_DEDUP slots, allocated when a datagram endpoint first needs one and freed once every
   * slot is free again: a stream endpoint (no message ids to deduplicate, RFC 8323 §3) and an
   * idle datagram one keep none (3.5 KiB each, per session: docs/benchmarks.md, idle devices) */
  dedup_t *dedup;
  size_t dedup_next;
  blk_t b1;
  blk_t b2[EP_B2_SLOTS];
  /* stream */
  m5_buf_t rx;
  int csm_sent, csm_rcvd, released;
  int rx_busy; /* parsing rx: a nested input only appends */
  int aborted; /* we sent Abort: input reports M5_EPROTO */
  size_t peer_max;
};

/* endpoint.c */
void ep_enter(m5_coap_ep_t *ep);
void ep_leave(m5_coap_ep_t *ep); /* may free ep */
int ep_gone(const m5_coap_ep_t *ep);
void ep_fail(m5_coap_ep_t *ep, int status, const char *why);
int ep_send(m5_coap_ep_t *ep, const uint8_t *p, size_t n);
int ep_send_msg(m5_coap_ep_t *ep, const m5_coap_msg_t *m, m5_buf_t *keep);
void ep_send_empty(m5_coap_ep_t *ep, m5_coap_type_t type, uint16_t mid, m5_buf_t *keep);
uint16_t ep_new_mid(m5_coap_ep_t *ep);
int ep_xmit_start(m5_coap_ep_t *ep, out_t *o, const m5_coap_msg_t *m);
void ep_kick(m5_coap_ep_t *ep);
void ep_out_response(m5_coap_ep_t *ep, out_t *o, const m5_coap_msg_t *m);
out_t *ep_out_by_token(m5_coap_ep_t *ep, const m5_coap_msg_t *m);
size_t ep_block_size(unsigned szx);
uint64_t ep_exchange_lifetime(const m5_coap_ep_t *ep);
/* Block option: 1 present (fields set), 0 absent, M5_EPROTO malformed (RFC 7959 §2.2). */
int ep_block_get(const m5_coap_msg_t *m, uint16_t num, uint32_t *bnum, int *more, unsigned *szx);
uint16_t ep_block_put(uint32_t bnum, int more, unsigned szx, uint8_t buf[4]);

/* incoming.c */
void ep_in_request(m5_coap_ep_t *ep, const m5_coap_msg_t *m, const uint8_t *raw, size_t len);
dedup_t *ep_dedup_find(m5_coap_ep_t *ep, uint16_t mid);
dedup_t *ep_dedup_add(m5_coap_ep_t *ep, uint16_t mid, int state);
void ep_in_free_all(m5_coap_ep_t *ep); /* orphans requests, frees caches */

/* stream.c */
int ep_stream_start(m5_coap_ep_t *ep);
int ep_stream_input(m5_coap_ep_t *ep, const uint8_t *p, size_t n);
void ep_stream_abort(m5_coap_ep_t *ep, const char *diag);

#endif
