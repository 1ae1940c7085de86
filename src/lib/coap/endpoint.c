/* CoAP endpoint (endpoint.h): life cycle, the RFC 7252 §4 message layer on datagrams (CON
 * retransmission with ACK_TIMEOUT * rand(1, 1.5) doubling up to MAX_RETRANSMIT, matching of
 * ACK/RST by message id and of responses by token, RST for unexpected CON responses and for
 * CoAP ping) and outgoing requests with NSTART / window queueing and client-side Block-wise
 * (RFC 7959 §2.3 Block1 uploads waiting for 2.31 per block, §2.4 Block2 downloads with a
 * follow-up request per block that repeats the method and Uri-Path).
 *
 * Re-entrancy: user callbacks (response, on_request, on_error) may call any endpoint function,
 * m5_coap_ep_free() included. Every entry point counts itself in ep->depth; a free inside a
 * callback releases everything but the struct, which goes when the last entry point returns,
 * and code that ran a callback checks ep_gone() before touching anything else. */
#include "coap/ep_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/err.h"
#include "core/log.h"
#include "crypto/codec.h"

#define DOM "coap"

/* ---- life cycle ---- */

void ep_enter(m5_coap_ep_t *ep) {
  ep->depth++;
}

void ep_leave(m5_coap_ep_t *ep) {
  if (--ep->depth == 0 && ep->dead) free(ep);
}

int ep_gone(const m5_coap_ep_t *ep) {
  return ep->dead || ep->failed;
}


/* Tokens, first message ids and retransmission jitter need unpredictable bytes (RFC 7252
 * §5.3.1), not secret ones. They come from OpenSSL's DRBG through a per-thread pool, refilled
 * 512 bytes at a time: one RAND_bytes call (each makes a getpid() system call for its fork
 * check) serves a hundred messages instead of one. */
static int ep_random(void *p, size_t n) {
  static _Thread_local uint8_t pool[512];
  static _Thread_local size_t avail;
  if (n > sizeof pool) return m5_random_bytes(p, n);
  if (avail < n) {
    int rc = m5_random_bytes(pool, sizeof pool);
    if (rc) return rc;
    avail = sizeof pool;
  }
  memcpy(p, pool + sizeof pool - avail, n);
  avail -= n;
  return 0;
}

m5_coap_ep_t *m5_coap_ep_new(m5_loop_t *loop, const m5_coap_ep_opts_t *opts,
                             const m5_coap_ep_cbs_t *cbs, void *io, void *arg) {
  if (!loop || !opts || !cbs || !cbs->send || !cbs->on_request) return NULL;
  if (opts->block_szx > 6) return NULL;
  m5_coap_ep_t *ep = calloc(1, sizeof *ep);
  if (!ep) return NULL;
  ep->loop = loop;
  ep->o = *opts;
  ep->cbs = *cbs;
  ep->io = io;
  ep->arg = arg;
  if (!ep->o.max_body) ep->o.max_body = 65536;
  if (!ep->o.block_szx) ep->o.block_szx = 6;
  if (!ep->o.nstart) ep->o.nstart = 1;
  if (!ep->o.window) ep->o.window = 20;
  if (!ep->o.max_queued) ep->o.max_queued = 256;
  if (!ep->o.ack_timeout_ms) ep->o.ack_timeout_ms = 2000;
  if (!ep->o.max_retransmit) ep->o.max_retransmit = 4;
  if (ep->o.max_retransmit > 16) ep->o.max_retransmit = 16;
  if (!ep->o.exchange_timeout_ms) ep->o.exchange_timeout_ms = 60000;
  if (!ep->o.max_message_size) ep->o.max_message_size = 1152 + ep->o.max_body;
  ep->peer_max = 1152;
  if (ep_random(&ep->next_mid, sizeof ep->next_mid)) {
    free(ep);
    return NULL;
  }
  m5_buf_init(&ep->rx, ep->o.max_message_size);
  return ep;
}

static void xmit_free(m5_coap_ep_t *ep, xmit_t *x) {
  for (xmit_t **pp = &ep->xmits; *pp; pp = &(*pp)->next) {
    if (*pp == x) {
      *pp = x->next;
      break;
    }
  }
  if (x->timer) m5_loop_timer_cancel(ep->loop, x->timer);
  if (x->out) {
    x->out->x = NULL;
  } else {
    ep->n_sep--;
  }
  m5_buf_free(&x->wire);
  free(x);
}

static void out_unlink(m5_coap_ep_t *ep, out_t *o) {
  if (o->active) {
    if (o->prev)
      o->prev->next = o->next;
    else
      ep->active = o->next;
    if (o->next) o->next->prev = o->prev;
    ep->n_active--;
  } else {
    if (o->prev)
      o->prev->next = o->next;
    else
      ep->queue = o->next;
    if (o->next)
      o->next->prev = o->prev;
    else
      ep->queue_tail = o->prev;
    ep->n_queued--;
  }
  o->prev = o->next = NULL;
}

static void out_disarm(m5_coap_ep_t *ep, out_t *o);

/* Finishes an outgoing request: unlinks it, runs its callback once, frees it. */
static void out_complete(m5_coap_ep_t *ep, out_t *o, int status, const m5_coap_msg_t *m,
                         const uint8_t *body, size_t len) {
  out_unlink(ep, o);
  if (o->x) xmit_free(ep, o->x);
  out_disarm(ep, o);
  if (!ep->dead) ep_kick(ep); /* a slot is free: start the next queued request */
  char cs[8];
  M5_LOGD(DOM, "request %s: %s%s", o->path, status ? m5_strerror(status) : "",
          status ? "" : m5_coap_code_str(m ? m->code : 0, cs, sizeof cs));
  o->cb(o->arg, status, status ? NULL : m, status ? NULL : body, status ? 0 : len);
  free(o->path);
  free(o->body);
  m5_buf_free(&o->b2);
  free(o);
}

void m5_coap_ep_free(m5_coap_ep_t *ep) {
  if (!ep || ep->dead) return;
  ep->dead = 1;
  ep->depth++; /* callbacks below may call back in */
  if (ep->kick) m5_loop_timer_cancel(ep->loop, ep->kick);
  ep->kick = 0;
  if (ep->to_timer) m5_loop_timer_cancel(ep->loop, ep->to_timer);
  ep->to_timer = 0;
  while (ep->active)
    out_complete(ep, ep->active, M5_ECLOSED, NULL, NULL, 0);
  while (ep->queue)
    out_complete(ep, ep->queue, M5_ECLOSED, NULL, NULL, 0);
  while (ep->xmits)
    xmit_free(ep, ep->xmits);
  ep_in_free_all(ep);
  m5_buf_free(&ep->rx);
  ep_leave(ep);
}

void ep_fail(m5_coap_ep_t *ep, int status, const char *why) {
  if (ep->failed || ep->dead) return;
  ep->failed = 1;
  /* A copy on the stack, not in every endpoint: why may point into what on_error frees. */
  char text[160];
  snprintf(text, sizeof text, "%s", why);
  M5_LOGI(DOM, "endpoint failed: %s (%s)", text, m5_strerror(status));
  if (ep->cbs.on_error) ep->cbs.on_error(ep, status, text, ep->arg);
}

int ep_send(m5_coap_ep_t *ep, const uint8_t *p, size_t n) {
  if (ep_gone(ep)) return M5_ECLOSED;
  int rc = ep->cbs.send(ep->io, p, n);
  if (rc) ep_fail(ep, rc, "send failed");
  return rc;
}

/* Encodes for the transport and sends; keep (optional) receives a copy of the bytes. */
int ep_send_msg(m5_coap_ep_t *ep, const m5_coap_msg_t *m, m5_buf_t *keep) {
  m5_buf_t w;
  m5_buf_init(&w, 0);
  int rc = ep->o.transport == M5_COAP_DGRAM ? m5_coap_encode_udp(m, &w) : m5_coap_encode_tcp(m, &w);
  if (!rc && ep->o.transport == M5_COAP_STREAM && w.len > ep->peer_max) rc = M5_ERANGE;
  if (!rc) rc = ep_send(ep, w.data, w.len);
  if (!rc && keep) {
    m5_buf_reset(keep);
    rc = m5_buf_append(keep, w.data, w.len);
  }
  m5_buf_free(&w);
  return rc;
}

void ep_send_empty(m5_coap_ep_t *ep, m5_coap_type_t type, uint16_t mid, m5_buf_t *keep) {
  m5_coap_msg_t m = {.type = type, .code = M5_COAP_EMPTY, .mid = mid};
  M5_LOGD(DOM, "send empty %s mid %u", type == M5_COAP_ACK ? "ACK" : "RST", (unsigned)mid);
  ep_send_msg(ep, &m, keep);
}

uint16_t ep_new_mid(m5_coap_ep_t *ep) {
  return ep->next_mid++;
}

size_t ep_block_size(unsigned szx) {
  return (size_t)1 << (szx + 4);
}

uint64_t ep_exchange_lifetime(const m5_coap_ep_t *ep) {
  uint64_t ack = ep->o.ack_timeout_ms;
  uint64_t span = ack * ((1u << ep->o.max_retransmit) - 1u) * 3u / 2u;
  return span + 2u * EP_MAX_LATENCY_MS + ack;
}

int ep_block_get(const m5_coap_msg_t *m, uint16_t num, uint32_t *bnum, int *more, unsigned *szx) {
  const m5_coap_opt_t *o = m5_coap_msg_opt(m, num, 0);
  if (!o) return 0;
  uint32_t v;
  if (o->len > 3 || m5_coap_opt_uint(o, &v)) return M5_EPROTO;
  if ((v & 7u) == 7u) return M5_EPROTO; /* SZX 7 is reserved */
  *bnum = v >> 4;
  *more = (v >> 3) & 1u;
  *szx = v & 7u;
  return 1;
}

uint16_t ep_block_put(uint32_t bnum, int more, unsigned szx, uint8_t buf[4]) {
  return m5_coap_uint_encode((bnum << 4) | (more ? 8u : 0u) | (szx & 7u), buf);
}

/* ---- retransmission (RFC 7252 §4.2) ---- */

static void xmit_fire(m5_loop_t *loop, void *arg) {
  (void)loop;
  xmit_t *x = arg;
  m5_coap_ep_t *ep = x->ep;
  x->timer = 0;
  ep_enter(ep);
  if (x->retries < ep->o.max_retransmit) {
    x->retries++;
    x->timeout_ms *= 2;
    M5_LOGD(DOM, "retransmit mid %u (%u)", (unsigned)x->mid, x->retries);
    /* A failed send reports on_error, which may free the endpoint and with it x. */
    if (!ep_send(ep, x->wire.data, x->wire.len) && !ep->dead)
      x->timer = m5_loop_timer_add(ep->loop, x->timeout_ms, xmit_fire, x);
  } else if (x->out) {
    out_complete(ep, x->out, M5_ETIMEDOUT, NULL, NULL, 0);
  } else {
    M5_LOGD(DOM, "separate response mid %u not acknowledged", (unsigned)x->mid);
    xmit_free(ep, x);
  }
  ep_leave(ep);
}

/* Sends m (type CON, mid set) and keeps retransmitting it until ACK/RST or give-up. */
int ep_xmit_start(m5_coap_ep_t *ep, out_t *o, const m5_coap_msg_t *m) {
  xmit_t *x = calloc(1, sizeof *x);
  if (!x) return M5_ENOMEM;
  x->ep = ep;
  x->out = o;
  x->mid = m->mid;
  m5_buf_init(&x->wire, 0);
  uint32_t r = 0;
  ep_random(&r, sizeof r);
  uint64_t ack = ep->o.ack_timeout_ms;
  x->timeout_ms = ack + (ack / 2 ? r % (ack / 2 + 1) : 0); /* ACK_RANDOM_FACTOR 1.5 */
  x->next = ep->xmits;
  ep->xmits = x;
  if (o)
    o->x = x;
  else
    ep->n_sep++;
  int rc = ep_send_msg(ep, m, &x->wire);
  if (rc) {
    if (!ep->dead) xmit_free(ep, x);
    return rc;
  }
  x->timer = m5_loop_timer_add(ep->loop, x->timeout_ms, xmit_fire, x);
  if (!x->timer) {
    xmit_free(ep, x);
    return M5_ENOMEM;
  }
  return M5_OK;
}

/* ---- outgoing requests ---- */

/* ---- exchange timeouts ----
 * A request's exchange timeout is armed when it is queued (stream) and again when its message
 * goes out. All last exchange_timeout_ms, so the list in arming order is the list in deadline
 * order: arming appends, completing unlinks, and one loop timer per endpoint waits for the
 * head (re-armed when it fires, not when the head leaves early). A push costs two list
 * operations instead of two timer-heap insertions and removals among every session's timers. */

static void out_disarm(m5_coap_ep_t *ep, out_t *o) {
  if (!o->timed) return;
  if (o->tprev)
    o->tprev->tnext = o->tnext;
  else
    ep->to_head = o->tnext;
  if (o->tnext)
    o->tnext->tprev = o->tprev;
  else
    ep->to_tail = o->tprev;
  o->tprev = o->tnext = NULL;
  o->timed = 0;
}

static void to_fire(m5_loop_t *loop, void *arg);

static int to_arm(m5_coap_ep_t *ep, uint64_t now) {
  if (ep->to_timer || !ep->to_head || ep->dead) return M5_OK;
  uint64_t when = ep->to_head->deadline;
  ep->to_timer = m5_loop_timer_add(ep->loop, when > now ? when - now : 0, to_fire, ep);
  return ep->to_timer ? M5_OK : M5_ENOMEM;
}

static void to_fire(m5_loop_t *loop, void *arg) {
  m5_coap_ep_t *ep = arg;
  ep->to_timer = 0;
  uint64_t now = m5_loop_now_ms(loop);
  ep_enter(ep);
  while (ep->to_head && ep->to_head->deadline <= now && !ep->dead)
    out_complete(ep, ep->to_head, M5_ETIMEDOUT, NULL, NULL, 0); /* unlinks it */
  /* A timer that cannot be armed: the next arming or completion tries again. */
  if (!ep->dead && to_arm(ep, now) != M5_OK)
    M5_LOGW(DOM, "cannot arm the exchange timeout timer");
  ep_leave(ep);
}

static int out_arm_timeout(m5_coap_ep_t *ep, out_t *o) {
  out_disarm(ep, o);
  uint64_t now = m5_clock_mono_ms();
  o->deadline = now + ep->o.exchange_timeout_ms;
  o->timed = 1;
  o->tprev = ep->to_tail;
  if (ep->to_tail)
    ep->to_tail->tnext = o;
  else
    ep->to_head = o;
  ep->to_tail = o;
  if (to_arm(ep, now) != M5_OK) {
    out_disarm(ep, o);
    return M5_ENOMEM;
  }
  return M5_OK;
}

/* Sends the next message of o: the whole request, its next Block1 block, or a Block2
 * follow-up. On failure the caller completes o. */
static int out_send(m5_coap_ep_t *ep, out_t *o) {
  m5_coap_msg_t m;
  memset(&m, 0, sizeof m);
  m.type = M5_COAP_CON;
  m.code = o->method;
  /* A fresh token per message: a late answer to an earlier block cannot be taken for this. */
  int rc = ep_random(o->token, sizeof o->token);
  if (rc) return rc;
  m.token_len = sizeof o->token;
  memcpy(m.token, o->token, sizeof o->token);
  for (char *s = o->path; *s;) {
    char *e = strchr(s, '/');
    size_t n = e ? (size_t)(e - s) : strlen(s);
    if (n && (rc = m5_coap_msg_add_opt(&m, M5_COAP_OPT_URI_PATH, (const uint8_t *)s, (uint16_t)n)))
      return rc;
    s += n + (e ? 1 : 0);
  }
  uint8_t fmt[4], b1[4], b2[4], sz1[4];
  if (o->block2) {
    uint16_t n = ep_block_put(o->b2_next, 0, o->szx, b2);
    rc = m5_coap_msg_add_opt(&m, M5_COAP_OPT_BLOCK2, b2, n);
  } else {
    if (o->format >= 0)
      rc = m5_coap_msg_add_opt(&m, M5_COAP_OPT_CONTENT_FORMAT, fmt,
                               m5_coap_uint_encode((uint32_t)o->format, fmt));
    m.payload = o->body;
    m.payload_len = o->len;
    if (!rc && o->block1) {
      size_t bs = ep_block_size(o->szx);
      o->b1_cur = o->len - o->b1_off < bs ? o->len - o->b1_off : bs;
      int more = o->b1_off + o->b1_cur < o->len;
      uint16_t n = ep_block_put((uint32_t)(o->b1_off / bs), more, o->szx, b1);
      rc = m5_coap_msg_add_opt(&m, M5_COAP_OPT_BLOCK1, b1, n);
      if (!rc && o->b1_off == 0) /* Size1 lets the server refuse the whole body at once */
        rc = m5_coap_msg_add_opt(&m, M5_COAP_OPT_SIZE1, sz1,
                                 m5_coap_uint_encode((uint32_t)o->len, sz1));
      m.payload = o->body + o->b1_off;
      m.payload_len = o->b1_cur;
    }
  }
  if (rc) return rc;
  if (!m.payload_len) m.payload = NULL;
  M5_LOGD(DOM, "send request %s (%zu bytes%s)", o->path, m.payload_len,
          o->block1   ? ", Block1"
          : o->block2 ? ", Block2"
                      : "");
  if (ep->o.transport == M5_COAP_STREAM) {
    rc = ep_send_msg(ep, &m, NULL);
    return rc ? rc : out_arm_timeout(ep, o);
  }
  m.mid = ep_new_mid(ep);
  out_disarm(ep, o);
  return ep_xmit_start(ep, o, &m);
}

/* Starts queued requests while NSTART / the window allows; on a released stream, fails them;
 * and reports a finished Release. Runs from a 0 ms timer so no callback nests in a caller. */
static void kick_fire(m5_loop_t *loop, void *arg) {
  (void)loop;
  m5_coap_ep_t *ep = arg;
  ep->kick = 0;
  ep_enter(ep);
  int stream = ep->o.transport == M5_COAP_STREAM;
  size_t limit = stream ? ep->o.window : ep->o.nstart;
  while (ep->queue && !ep_gone(ep)) {
    out_t *o = ep->queue;
    if (stream && ep->released) {
      out_complete(ep, o, M5_ECLOSED, NULL, NULL, 0);
      continue;
    }
    if ((stream && (!ep->csm_rcvd || !ep->csm_sent)) || ep->n_active >= limit) break;
    out_unlink(ep, o);
    o->active = 1;
    o->next = ep->active;
    if (ep->active) ep->active->prev = o;
    ep->active = o;
    ep->n_active++;
    int rc = out_send(ep, o);
    if (rc && !ep->dead) out_complete(ep, o, rc, NULL, NULL, 0);
  }
  if (!ep_gone(ep) && stream && ep->released && !ep->n_active && !ep->n_reqs)
    ep_fail(ep, M5_ECLOSED, "peer sent Release");
  ep_leave(ep);
}

void ep_kick(m5_coap_ep_t *ep) {
  if (ep->kick || ep->dead) return;
  ep->kick = m5_loop_timer_add(ep->loop, 0, kick_fire, ep);
}

size_t m5_coap_ep_cancel_queued(m5_coap_ep_t *ep, int status) {
  if (!ep || ep->dead) return 0;
  size_t n = 0;
  ep_enter(ep); /* the callbacks may call back in */
  while (ep->queue && !ep->dead) {
    out_complete(ep, ep->queue, status, NULL, NULL, 0);
    n++;
  }
  ep_leave(ep);
  return n;
}

int m5_coap_ep_request(m5_coap_ep_t *ep, uint8_t method, const char *path, int format,
                       const uint8_t *body, size_t len, m5_coap_resp_fn cb, void *arg) {
  if (!ep || !path || !cb || (len && !body) || method < 1 || method > 31 || format > 65535)
    return M5_EINVAL;
  if (ep_gone(ep) || ep->released) return M5_ECLOSED;
  /* Each Uri-Path segment must fit an option (RFC 7252 §5.10: 0-255 bytes), and with
   * Content-Format, Block1/2 and Size1 all of them must fit M5_COAP_MAX_OPTS. */
  size_t segs = 0;
  for (const char *s = path; *s;) {
    const char *e = strchr(s, '/');
    size_t n = e ? (size_t)(e - s) : strlen(s);
    if (n > 255) return M5_EINVAL;
    if (n) segs++;
    s += n + (e ? 1 : 0);
  }
  if (segs + 4 > M5_COAP_MAX_OPTS) return M5_ERANGE;
  size_t limit = ep->o.transport == M5_COAP_STREAM ? ep->o.window : ep->o.nstart;
  if (ep->n_active + ep->n_queued >= limit + ep->o.max_queued) return M5_EFULL;
  out_t *o = calloc(1, sizeof *o);
  if (!o) return M5_ENOMEM;
  o->path = strdup(path);
  o->body = len ? malloc(len) : NULL;
  if (!o->path || (len && !o->body)) {
    free(o->path);
    free(o->body);
    free(o);
    return M5_ENOMEM;
  }
  if (len) memcpy(o->body, body, len);
  o->ep = ep;
  o->method = method;
  o->format = format;
  o->len = len;
  o->cb = cb;
  o->arg = arg;
  o->szx = ep->o.block_szx;
  o->block1 = ep->o.transport == M5_COAP_DGRAM && len > ep_block_size(o->szx);
  m5_buf_init(&o->b2, ep->o.max_body);
  o->prev = ep->queue_tail;
  if (ep->queue_tail)
    ep->queue_tail->next = o;
  else
    ep->queue = o;
  ep->queue_tail = o;
  ep->n_queued++;
  /* On streams the exchange timeout covers the wait for the peer's CSM and the window too. */
  if (ep->o.transport == M5_COAP_STREAM && out_arm_timeout(ep, o)) {
    out_unlink(ep, o);
    free(o->path);
    free(o->body);
    free(o);
    return M5_ENOMEM;
  }
  ep_kick(ep);
  return M5_OK;
}

out_t *ep_out_by_token(m5_coap_ep_t *ep, const m5_coap_msg_t *m) {
  if (m->token_len != M5_COAP_MAX_TOKEN) return NULL;
  for (out_t *o = ep->active; o; o = o->next)
    if (!memcmp(o->token, m->token, M5_COAP_MAX_TOKEN)) return o;
  return NULL;
}

/* A response to o's message in flight: next Block1 block, next Block2 block, or done. */
void ep_out_response(m5_coap_ep_t *ep, out_t *o, const m5_coap_msg_t *m) {
  if (o->x) xmit_free(ep, o->x);
  out_disarm(ep, o);
  uint32_t num;
  int more, rc;
  unsigned szx;
  if (o->block1 && o->b1_off + o->b1_cur < o->len) {
    if (m->code != M5_COAP_CONTINUE) { /* a final answer before the last block (4.13 ...) */
      out_complete(ep, o, M5_OK, m, m->payload, m->payload_len);
      return;
    }
    /* RFC 7959 §2.3: the server may ask for smaller blocks from here on. */
    if (ep_block_get(m, M5_COAP_OPT_BLOCK1, &num, &more, &szx) == 1 && szx < o->szx) o->szx = szx;
    o->b1_off += o->b1_cur;
    rc = out_send(ep, o);
    if (rc && !ep->dead) out_complete(ep, o, rc, NULL, NULL, 0);
    return;
  }
  rc =
      ep->o.transport == M5_COAP_DGRAM ? ep_block_get(m, M5_COAP_OPT_BLOCK2, &num, &more, &szx) : 0;
  if (rc == 0 && !o->block2) {
    out_complete(ep, o, M5_OK, m, m->payload, m->payload_len);
    return;
  }
  if (rc != 1 || (uint64_t)num * ep_block_size(szx) != o->b2.len ||
      (more && m->payload_len != ep_block_size(szx))) {
    out_complete(ep, o, M5_EPROTO, NULL, NULL, 0);
    return;
  }
  if (m->payload_len && m5_buf_append(&o->b2, m->payload, m->payload_len)) {
    out_complete(ep, o, M5_ERANGE, NULL, NULL, 0);
    return;
  }
  if (!more) {
    out_complete(ep, o, M5_OK, m, o->b2.data, o->b2.len);
    return;
  }
  o->block1 = 0;
  o->block2 = 1;
  o->szx = szx;
  o->b2_next = num + 1;
  rc = out_send(ep, o);
  if (rc && !ep->dead) out_complete(ep, o, rc, NULL, NULL, 0);
}

/* ---- datagram input ---- */

static void dgram_ack_rst(m5_coap_ep_t *ep, const m5_coap_msg_t *m) {
  xmit_t *x = ep->xmits;
  while (x && x->mid != m->mid)
    x = x->next;
  if (!x) return; /* duplicate or late: nothing waits for it */
  if (m->type == M5_COAP_ACK && (m->code >> 5) == 0 && m->code != M5_COAP_EMPTY) return;
  out_t *o = x->out;
  if (!o) { /* our separate response got its ACK (or RST) */
    xmit_free(ep, x);
    return;
  }
  if (m->type == M5_COAP_RST) {
    M5_LOGD(DOM, "RST for mid %u", (unsigned)m->mid);
    out_complete(ep, o, M5_EPROTO, NULL, NULL, 0);
    return;
  }
  if (m->code == M5_COAP_EMPTY) { /* separate response follows (RFC 7252 §5.2.2) */
    xmit_free(ep, x);
    if (out_arm_timeout(ep, o)) out_complete(ep, o, M5_ENOMEM, NULL, NULL, 0);
    return;
  }
  if (m->token_len != M5_COAP_MAX_TOKEN || memcmp(m->token, o->token, M5_COAP_MAX_TOKEN))
    return; /* not an answer to this request: keep retransmitting */
  ep_out_response(ep, o, m);
}

/* A CON/NON response: a separate response to a request of ours (RFC 7252 §5.2.2). */
static void dgram_response(m5_coap_ep_t *ep, const m5_coap_msg_t *m) {
  dedup_t *d = ep_dedup_find(ep, m->mid);
  if (d) {
    if (m->type == M5_COAP_CON && d->answer.len) ep_send(ep, d->answer.data, d->answer.len);
    return;
  }
  out_t *o = ep_out_by_token(ep, m);
  if (!o) {
    if (m->type == M5_COAP_CON) ep_send_empty(ep, M5_COAP_RST, m->mid, NULL);
    return;
  }
  d = ep_dedup_add(ep, m->mid, DEDUP_DONE);
  if (m->type == M5_COAP_CON) ep_send_empty(ep, M5_COAP_ACK, m->mid, d ? &d->answer : NULL);
  if (ep_gone(ep)) return;
  ep_out_response(ep, o, m);
}

static void dgram_input(m5_coap_ep_t *ep, const uint8_t *p, size_t n) {
  m5_coap_msg_t m;
  if (m5_coap_parse_udp(p, n, &m)) {
    /* RFC 7252 §4.2: a CON we cannot process is rejected; anything else is dropped. */
    if (n >= 4 && (p[0] >> 6) == 1 && ((p[0] >> 4) & 3u) == M5_COAP_CON)
      ep_send_empty(ep, M5_COAP_RST, (uint16_t)((p[2] << 8) | p[3]), NULL);
    M5_LOGD(DOM, "dropped a malformed datagram of %zu bytes", n);
    return;
  }
  if (m.type == M5_COAP_ACK || m.type == M5_COAP_RST) {
    dgram_ack_rst(ep, &m);
    return;
  }
  unsigned cls = m.code >> 5;
  if (m.code == M5_COAP_EMPTY) { /* CON: CoAP ping, answered with RST; NON: ignored */
    if (m.type == M5_COAP_CON) ep_send_empty(ep, M5_COAP_RST, m.mid, NULL);
  } else if (cls == 0) {
    ep_in_request(ep, &m, p, n);
  } else if (cls >= 2 && cls <= 5) {
    dgram_response(ep, &m);
  } else if (m.type == M5_COAP_CON) {
    ep_send_empty(ep, M5_COAP_RST, m.mid, NULL);
  }
}

int m5_coap_ep_input(m5_coap_ep_t *ep, const uint8_t *p, size_t n) {
  if (!ep || (n && !p)) return M5_EINVAL;
  if (ep_gone(ep)) return M5_ECLOSED;
  ep_enter(ep);
  int rc = M5_OK;
  if (ep->o.transport == M5_COAP_DGRAM)
    dgram_input(ep, p, n);
  else
    rc = ep_stream_input(ep, p, n);
  if (!rc && ep_gone(ep)) rc = M5_ECLOSED;
  ep_leave(ep);
  return rc;
}

int m5_coap_ep_start(m5_coap_ep_t *ep) {
  if (!ep) return M5_EINVAL;
  if (ep_gone(ep)) return M5_ECLOSED;
  if (ep->o.transport != M5_COAP_STREAM) return M5_OK;
  ep_enter(ep);
  int rc = ep_stream_start(ep);
  ep_leave(ep);
  return rc;
}

size_t m5_coap_ep_pending(const m5_coap_ep_t *ep) {
  return ep ? ep->n_active + ep->n_queued + ep->n_reqs : 0;
}

size_t m5_coap_ep_peer_max_message(const m5_coap_ep_t *ep) {
  return ep ? ep->peer_max : 0;
}
