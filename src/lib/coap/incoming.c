/* Incoming requests of a CoAP endpoint (endpoint.h): message-id deduplication with cached
 * answers (RFC 7252 §4.5), the empty ACK after ack_timeout/2 and separate responses (§5.2.2),
 * rejection of unsupported critical options (§5.4.1), and server-side Block-wise (RFC 7959):
 * Block1 reassembly up to max_body (4.08 out of sequence, 4.13 with Size1 beyond), Block2
 * answers with the body kept for the follow-up requests.
 *
 * Limits: one Block1 reassembly per endpoint (a new block 0 replaces it); EP_B2_SLOTS response
 * bodies kept for Block2 follow-ups, keyed by method and Uri-Path (no ETag); a follow-up for a
 * body no longer kept is passed to the handler again if it is a GET, else answered 4.08. */
#include "coap/ep_int.h"

#include <stdlib.h>
#include <string.h>

#include "core/err.h"
#include "core/log.h"
#include "crypto/codec.h"

#define DOM "coap"

/* ---- deduplication ---- */

dedup_t *ep_dedup_find(m5_coap_ep_t *ep, uint16_t mid) {
  if (!ep->dedup) return NULL;
  uint64_t now = m5_loop_now_ms(ep->loop);
  dedup_t *found = NULL;
  int used = 0;
  for (size_t i = 0; i < EP_DEDUP; i++) {
    dedup_t *d = &ep->dedup[i];
    if (d->state == DEDUP_DONE && now >= d->expires) {
      m5_buf_free(&d->answer);
      d->state = DEDUP_FREE;
    }
    if (d->state != DEDUP_FREE) used = 1;
    if (d->state != DEDUP_FREE && d->mid == mid) found = d;
  }
  if (!used) { /* every exchange is over: an idle session keeps no table */
    free(ep->dedup);
    ep->dedup = NULL;
    ep->dedup_next = 0;
  }
  return found;
}

/* Takes the oldest slot not held by a request in the handler's hands; NULL when all are. */
dedup_t *ep_dedup_add(m5_coap_ep_t *ep, uint16_t mid, int state) {
  if (!ep->dedup && !(ep->dedup = calloc(EP_DEDUP, sizeof *ep->dedup))) return NULL;
  for (size_t k = 0; k < EP_DEDUP; k++) {
    size_t i = (ep->dedup_next + k) % EP_DEDUP;
    dedup_t *d = &ep->dedup[i];
    if (d->state == DEDUP_HANDLING) continue;
    m5_buf_free(&d->answer);
    m5_buf_init(&d->answer, 0);
    d->state = state;
    d->mid = mid;
    d->expires = m5_loop_now_ms(ep->loop) + ep_exchange_lifetime(ep);
    ep->dedup_next = (i + 1) % EP_DEDUP;
    return d;
  }
  return NULL;
}

/* ---- answers ---- */

/* Sends resp as the answer to request q (type, mid, token): piggy-backed in the ACK of a CON
 * not yet acknowledged, else a separate CON (retransmitted) or NON response. */
static int send_answer(m5_coap_ep_t *ep, const m5_coap_msg_t *q, int acked, dedup_t *d,
                       m5_coap_msg_t *resp) {
  resp->token_len = q->token_len;
  memcpy(resp->token, q->token, q->token_len);
  char cs[8];
  M5_LOGD(DOM, "answer %s (%zu bytes)", m5_coap_code_str(resp->code, cs, sizeof cs),
          resp->payload_len);
  if (ep->o.transport == M5_COAP_STREAM) return ep_send_msg(ep, resp, NULL);
  int rc;
  if (d) {
    d->state = DEDUP_DONE;
    d->expires = m5_loop_now_ms(ep->loop) + ep_exchange_lifetime(ep);
  }
  if (q->type == M5_COAP_CON && !acked) {
    resp->type = M5_COAP_ACK;
    resp->mid = q->mid;
    rc = ep_send_msg(ep, resp, d ? &d->answer : NULL);
  } else if (q->type == M5_COAP_CON && ep->n_sep < EP_MAX_SEP) {
    resp->type = M5_COAP_CON;
    resp->mid = ep_new_mid(ep);
    rc = ep_xmit_start(ep, NULL, resp);
  } else {
    resp->type = M5_COAP_NON;
    resp->mid = ep_new_mid(ep);
    rc = ep_send_msg(ep, resp, NULL);
  }
  return rc;
}

/* An answer the endpoint gives itself: code, diagnostic text, at most one uint option. */
static void reply(m5_coap_ep_t *ep, const m5_coap_msg_t *q, dedup_t *d, uint8_t code,
                  const char *diag, uint16_t optnum, uint32_t optval) {
  m5_coap_msg_t r;
  memset(&r, 0, sizeof r);
  r.code = code;
  uint8_t v[4];
  if (optnum) m5_coap_msg_add_opt(&r, optnum, v, m5_coap_uint_encode(optval, v));
  if (diag && *diag) {
    r.payload = (const uint8_t *)diag;
    r.payload_len = strlen(diag);
  }
  send_answer(ep, q, 0, d, &r);
}

/* Fills r with block num of body (Block2 and, on block 0, Size2). 0, or M5_ERANGE when the
 * block starts past the end. */
static int block2_slice(m5_coap_msg_t *r, const uint8_t *body, size_t len, uint32_t num,
                        unsigned szx, int *more, uint8_t b2[4], uint8_t s2[4]) {
  size_t bs = ep_block_size(szx);
  uint64_t off = (uint64_t)num * bs;
  if (off > len || (off == len && num)) return M5_ERANGE;
  size_t n = len - (size_t)off < bs ? len - (size_t)off : bs;
  *more = (size_t)off + n < len;
  int rc = m5_coap_msg_add_opt(r, M5_COAP_OPT_BLOCK2, b2, ep_block_put(num, *more, szx, b2));
  if (!rc && num == 0)
    rc = m5_coap_msg_add_opt(r, M5_COAP_OPT_SIZE2, s2, m5_coap_uint_encode((uint32_t)len, s2));
  r->payload = n ? body + off : NULL;
  r->payload_len = n;
  return rc;
}

static void blk_clear(blk_t *b) {
  free(b->path);
  b->path = NULL;
  m5_buf_wipe_free(&b->body);
  b->used = 0;
}

/* Keeps a response body for the Block2 follow-ups of the same method and Uri-Path. */
static void b2_keep(m5_coap_ep_t *ep, uint8_t method, const char *path, uint8_t code, int format,
                    unsigned szx, const uint8_t *body, size_t len) {
  blk_t *slot = NULL;
  for (size_t i = 0; i < EP_B2_SLOTS; i++) {
    blk_t *b = &ep->b2[i];
    if (b->used && b->method == method && !strcmp(b->path, path)) slot = b;
  }
  for (size_t i = 0; !slot && i < EP_B2_SLOTS; i++)
    if (!ep->b2[i].used) slot = &ep->b2[i];
  /* All slots in use: the one expiring first goes (the loop must not stop at the first). */
  if (!slot) {
    slot = &ep->b2[0];
    for (size_t i = 1; i < EP_B2_SLOTS; i++)
      if (ep->b2[i].expires < slot->expires) slot = &ep->b2[i];
  }
  blk_clear(slot);
  m5_buf_init(&slot->body, 0);
  slot->path = strdup(path);
  if (!slot->path || m5_buf_append(&slot->body, body, len)) {
    blk_clear(slot);
    return;
  }
  slot->used = 1;
  slot->method = method;
  slot->code = code;
  slot->format = format;
  slot->szx = szx;
  slot->expires = m5_loop_now_ms(ep->loop) + ep_exchange_lifetime(ep);
}

/* Answers a Block2 follow-up from a kept body; 0 when there is none for this request. */
static int b2_serve(m5_coap_ep_t *ep, const m5_coap_msg_t *q, dedup_t *d, const char *path,
                    uint32_t num, unsigned szx) {
  uint64_t now = m5_loop_now_ms(ep->loop);
  blk_t *b = NULL;
  for (size_t i = 0; i < EP_B2_SLOTS; i++) {
    blk_t *s = &ep->b2[i];
    if (s->used && now >= s->expires) blk_clear(s);
    if (s->used && s->method == q->code && !strcmp(s->path, path)) b = s;
  }
  if (!b) return 0;
  if (szx > b->szx) szx = b->szx;
  m5_coap_msg_t r;
  memset(&r, 0, sizeof r);
  r.code = b->code;
  uint8_t fmt[4], b2[4], s2[4];
  int more = 0;
  if (b->format >= 0)
    m5_coap_msg_add_opt(&r, M5_COAP_OPT_CONTENT_FORMAT, fmt,
                        m5_coap_uint_encode((uint32_t)b->format, fmt));
  if (block2_slice(&r, b->body.data, b->body.len, num, szx, &more, b2, s2)) {
    reply(ep, q, d, M5_COAP_BAD_OPTION, "Block2 number past the end of the body", 0, 0);
    return 1;
  }
  send_answer(ep, q, 0, d, &r);
  if (!more) blk_clear(b);
  return 1;
}

/* One Block1 block (RFC 7959 §2.3). 1: the body is complete in *body; 0: answered (2.31 or
 * an error), nothing for the handler. */
static int block1_input(m5_coap_ep_t *ep, const m5_coap_msg_t *q, dedup_t *d, const char *path,
                        uint32_t num, int more, unsigned szx, m5_buf_t *body) {
  blk_t *b = &ep->b1;
  size_t bs = ep_block_size(szx);
  uint64_t now = m5_loop_now_ms(ep->loop);
  if (b->used && now >= b->expires) blk_clear(b);
  if (num == 0) {
    blk_clear(b);
    m5_buf_init(&b->body, ep->o.max_body + 1); /* + 1: the NUL handlers get */
    b->path = strdup(path);
    if (!b->path) {
      reply(ep, q, d, M5_COAP_INTERNAL_ERROR, "out of memory", 0, 0);
      return 0;
    }
    b->used = 1;
    b->method = q->code;
  } else if (!b->used || b->method != q->code || strcmp(b->path, path) ||
             (uint64_t)num * bs != b->body.len) {
    blk_clear(b);
    reply(ep, q, d, M5_COAP_REQUEST_INCOMPLETE, "Block1 block out of sequence", 0, 0);
    return 0;
  }
  if (more && q->payload_len != bs) {
    blk_clear(b);
    reply(ep, q, d, M5_COAP_BAD_REQUEST, "Block1 block shorter than its size", 0, 0);
    return 0;
  }
  if (m5_buf_append(&b->body, q->payload, q->payload_len) || b->body.len > ep->o.max_body) {
    blk_clear(b);
    reply(ep, q, d, M5_COAP_TOO_LARGE, "request body too large", M5_COAP_OPT_SIZE1,
          (uint32_t)ep->o.max_body);
    return 0;
  }
  b->expires = now + ep_exchange_lifetime(ep);
  if (more) {
    unsigned ours = szx < ep->o.block_szx ? szx : ep->o.block_szx;
    reply(ep, q, d, M5_COAP_CONTINUE, NULL, M5_COAP_OPT_BLOCK1, (num << 4) | 8u | ours);
    return 0;
  }
  *body = b->body; /* ownership moves */
  m5_buf_init(&b->body, 0);
  blk_clear(b);
  return 1;
}

/* ---- requests ---- */

/* Options we act on; an unknown critical (odd) option makes the request fail (§5.4.1). */
static int opt_known(uint16_t num, int dgram) {
  switch (num) {
  case M5_COAP_OPT_URI_HOST:
  case M5_COAP_OPT_URI_PORT:
  case M5_COAP_OPT_URI_PATH:
  case M5_COAP_OPT_URI_QUERY:
  case M5_COAP_OPT_ACCEPT:
    return 1;
  case M5_COAP_OPT_BLOCK1:
  case M5_COAP_OPT_BLOCK2:
    return dgram;
  default:
    return (num & 1u) == 0;
  }
}

/* Uri-Path segments joined with '/'. A segment holding '/' or NUL would make the joined path
 * ambiguous: refused. */
static int join_path(const m5_coap_msg_t *m, char **out) {
  size_t total = 1;
  for (size_t i = 0; i < m->n_opts; i++) {
    const m5_coap_opt_t *o = &m->opts[i];
    if (o->num != M5_COAP_OPT_URI_PATH) continue;
    if (o->len && (memchr(o->val, '/', o->len) || memchr(o->val, '\0', o->len))) return M5_EPROTO;
    total += (size_t)o->len + 1;
  }
  char *s = malloc(total), *p = s;
  if (!s) return M5_ENOMEM;
  for (size_t i = 0; i < m->n_opts; i++) {
    const m5_coap_opt_t *o = &m->opts[i];
    if (o->num != M5_COAP_OPT_URI_PATH) continue;
    if (p != s) *p++ = '/';
    if (o->len) memcpy(p, o->val, o->len);
    p += o->len;
  }
  *p = '\0';
  *out = s;
  return M5_OK;
}

static void req_free(m5_coap_req_t *r) {
  if (r->body && r->body != r->raw_body) m5_wipe(r->body, r->body_len + 1);
  if (r->body != r->raw_body) free(r->body);
  if (r->raw) m5_wipe(r->raw, r->raw_len + 1);
  free(r->raw);
  free(r->path);
  free(r);
}

static void req_unlink(m5_coap_ep_t *ep, m5_coap_req_t *r) {
  if (r->prev)
    r->prev->next = r->next;
  else
    ep->reqs = r->next;
  if (r->next) r->next->prev = r->prev;
  r->prev = r->next = NULL;
  ep->n_reqs--;
  if (r->ack_timer) m5_loop_timer_cancel(ep->loop, r->ack_timer);
  r->ack_timer = 0;
  r->ep = NULL;
}

/* ack_timeout/2 passed without an answer: an empty ACK stops the peer's retransmissions, and
 * a duplicate of the request gets it again. */
static void ack_fire(m5_loop_t *loop, void *arg) {
  (void)loop;
  m5_coap_req_t *r = arg;
  m5_coap_ep_t *ep = r->ep;
  r->ack_timer = 0;
  ep_enter(ep);
  dedup_t *d = ep_dedup_find(ep, r->mid);
  r->acked = 1;
  ep_send_empty(ep, M5_COAP_ACK, r->mid, d ? &d->answer : NULL);
  ep_leave(ep);
}

static void deliver(m5_coap_ep_t *ep, const m5_coap_msg_t *q, dedup_t *d, const uint8_t *raw,
                    size_t len, char *path, m5_buf_t *blocks, int has_b1, uint32_t b1_num,
                    unsigned b1_szx, int has_b2, uint32_t b2_num, unsigned b2_szx) {
  m5_coap_req_t *r = calloc(1, sizeof *r);
  if (r) r->raw = malloc(len + 1);
  if (!r || !r->raw) goto oom;
  memcpy(r->raw, raw, len);
  r->raw[len] = '\0'; /* the payload ends the message: in place, it is NUL-terminated too */
  r->raw_len = len;
  size_t used, need;
  int rc = ep->o.transport == M5_COAP_DGRAM
               ? m5_coap_parse_udp(r->raw, len, &r->msg)
               : m5_coap_parse_tcp(r->raw, len, len, &r->msg, &used, &need);
  if (rc) goto oom; /* cannot happen: the same bytes parsed before */
  if (has_b1) {
    if (m5_buf_append(blocks, "", 1)) goto oom;
    r->body = blocks->data;
    r->body_len = blocks->len - 1;
    m5_buf_init(blocks, 0);
  } else if (r->msg.payload_len && r->msg.payload + r->msg.payload_len == r->raw + len) {
    /* The body is the end of the message copy: held once, not twice (a waiting request,
     * ue_wait.c, costs what its message does). */
    r->body = r->raw_body = r->raw + (r->msg.payload - r->raw);
    r->body_len = r->msg.payload_len;
  } else {
    r->body = malloc(q->payload_len + 1);
    if (!r->body) goto oom;
    if (q->payload_len) memcpy(r->body, q->payload, q->payload_len);
    r->body[q->payload_len] = '\0';
    r->body_len = q->payload_len;
  }
  r->path = path;
  r->type = q->type;
  r->mid = q->mid;
  r->has_b1 = has_b1;
  r->b1_num = b1_num;
  r->b1_szx = b1_szx;
  r->has_b2 = has_b2;
  r->b2_num = b2_num;
  r->b2_szx = b2_szx;
  r->ep = ep;
  r->next = ep->reqs;
  if (ep->reqs) ep->reqs->prev = r;
  ep->reqs = r;
  ep->n_reqs++;
  if (ep->o.transport == M5_COAP_DGRAM && q->type == M5_COAP_CON)
    r->ack_timer = m5_loop_timer_add(ep->loop, ep->o.ack_timeout_ms / 2, ack_fire, r);
  M5_LOGD(DOM, "request %s (%zu bytes)", r->path, r->body_len);
  ep->cbs.on_request(ep, r, ep->arg);
  return;
oom:
  if (r) {
    free(r->raw);
    free(r);
  }
  free(path);
  reply(ep, q, d, M5_COAP_INTERNAL_ERROR, "out of memory", 0, 0);
}

void ep_in_request(m5_coap_ep_t *ep, const m5_coap_msg_t *q, const uint8_t *raw, size_t len) {
  int dg = ep->o.transport == M5_COAP_DGRAM;
  dedup_t *d = NULL;
  if (dg) {
    d = ep_dedup_find(ep, q->mid);
    if (d) {
      M5_LOGD(DOM, "duplicate mid %u", (unsigned)q->mid);
      if (q->type == M5_COAP_CON && d->answer.len) ep_send(ep, d->answer.data, d->answer.len);
      return;
    }
    d = ep_dedup_add(ep, q->mid, DEDUP_HANDLING);
  }
  if ((dg && !d) || (!dg && ep->n_reqs >= ep->o.max_queued)) {
    reply(ep, q, NULL, M5_COAP_SERVICE_UNAVAILABLE, "too many requests in progress", 0, 0);
    return;
  }
  for (size_t i = 0; i < q->n_opts; i++) {
    if (!opt_known(q->opts[i].num, dg)) {
      reply(ep, q, d, M5_COAP_BAD_OPTION, "unsupported critical option", 0, 0);
      return;
    }
  }
  char *path = NULL;
  int rc = join_path(q, &path);
  if (rc) {
    reply(ep, q, d, rc == M5_ENOMEM ? M5_COAP_INTERNAL_ERROR : M5_COAP_BAD_REQUEST,
          rc == M5_ENOMEM ? "out of memory" : "Uri-Path segment holds '/' or NUL", 0, 0);
    return;
  }
  uint32_t size1 = 0, b1_num = 0, b2_num = 0;
  unsigned b1_szx = 0, b2_szx = 0;
  int b1_more = 0, b2_more = 0;
  const m5_coap_opt_t *s1 = m5_coap_msg_opt(q, M5_COAP_OPT_SIZE1, 0);
  int b1 = dg ? ep_block_get(q, M5_COAP_OPT_BLOCK1, &b1_num, &b1_more, &b1_szx) : 0;
  int b2 = dg ? ep_block_get(q, M5_COAP_OPT_BLOCK2, &b2_num, &b2_more, &b2_szx) : 0;
  const char *bad = b1 < 0 ? "Block1" : b2 < 0 ? "Block2" : NULL;
  if (!bad && s1 && m5_coap_opt_uint(s1, &size1)) bad = "Size1";
  if (bad) {
    free(path);
    reply(ep, q, d, M5_COAP_BAD_REQUEST, bad, 0, 0);
    return;
  }
  if ((s1 && size1 > ep->o.max_body) || (!b1 && q->payload_len > ep->o.max_body)) {
    free(path);
    reply(ep, q, d, M5_COAP_TOO_LARGE, "request body too large", M5_COAP_OPT_SIZE1,
          (uint32_t)ep->o.max_body);
    return;
  }
  m5_buf_t blocks;
  m5_buf_init(&blocks, 0);
  if (b1 == 1 && !block1_input(ep, q, d, path, b1_num, b1_more, b1_szx, &blocks)) {
    free(path);
    return;
  }
  if (b1 != 1 && b2 == 1 && b2_num > 0) {
    if (b2_serve(ep, q, d, path, b2_num, b2_szx)) {
      free(path);
      return;
    }
    if (q->code != M5_COAP_GET) {
      free(path);
      reply(ep, q, d, M5_COAP_REQUEST_INCOMPLETE, "Block2 body no longer available", 0, 0);
      return;
    }
  }
  deliver(ep, q, d, raw, len, path, &blocks, b1 == 1, b1_num, b1_szx, b2 == 1, b2_num, b2_szx);
  m5_buf_free(&blocks);
}

void ep_in_free_all(m5_coap_ep_t *ep) {
  while (ep->reqs)
    req_unlink(ep, ep->reqs); /* orphans: the handler still owns them */
  for (size_t i = 0; ep->dedup && i < EP_DEDUP; i++)
    m5_buf_free(&ep->dedup[i].answer);
  free(ep->dedup);
  ep->dedup = NULL;
  blk_clear(&ep->b1);
  for (size_t i = 0; i < EP_B2_SLOTS; i++)
    blk_clear(&ep->b2[i]);
}

/* ---- the handler's side ---- */

uint8_t m5_coap_req_method(const m5_coap_req_t *r) {
  return r ? r->msg.code : 0;
}

const char *m5_coap_req_path(const m5_coap_req_t *r) {
  return r ? r->path : "";
}

int m5_coap_req_format(const m5_coap_req_t *r) {
  const m5_coap_opt_t *o = r ? m5_coap_msg_opt(&r->msg, M5_COAP_OPT_CONTENT_FORMAT, 0) : NULL;
  uint32_t v;
  if (!o || o->len > 2 || m5_coap_opt_uint(o, &v)) return -1;
  return (int)v;
}

const uint8_t *m5_coap_req_body(const m5_coap_req_t *r, size_t *len) {
  if (len) *len = r ? r->body_len : 0;
  return r ? r->body : NULL;
}

size_t m5_coap_req_bytes(const m5_coap_req_t *r) {
  if (!r) return 0;
  return sizeof *r + r->raw_len + 1 + (r->body && r->body != r->raw_body ? r->body_len + 1 : 0) +
         (r->path ? strlen(r->path) + 1 : 0);
}

const m5_coap_msg_t *m5_coap_req_msg(const m5_coap_req_t *r) {
  return r ? &r->msg : NULL;
}

static int respond(m5_coap_ep_t *ep, m5_coap_req_t *req, uint8_t code, int format,
                   const uint8_t *body, size_t len, const m5_coap_opt_t *opts, size_t n_opts) {
  int dg = ep->o.transport == M5_COAP_DGRAM;
  dedup_t *d = dg ? ep_dedup_find(ep, req->mid) : NULL;
  int rc = M5_OK;
  unsigned cls = code >> 5;
  if (cls < 2 || cls > 5 || (len && !body) || (n_opts && !opts) || format > 65535 ||
      n_opts > M5_COAP_MAX_OPTS - 5)
    rc = M5_EINVAL;
  m5_coap_msg_t r;
  memset(&r, 0, sizeof r);
  r.code = code;
  r.payload = len ? body : NULL;
  r.payload_len = len;
  uint8_t fmt[4], b1[4], b2[4], s2[4];
  for (size_t i = 0; !rc && i < n_opts; i++)
    rc = m5_coap_msg_add_opt(&r, opts[i].num, opts[i].val, opts[i].len);
  if (!rc && format >= 0)
    rc = m5_coap_msg_add_opt(&r, M5_COAP_OPT_CONTENT_FORMAT, fmt,
                             m5_coap_uint_encode((uint32_t)format, fmt));
  if (!rc && req->has_b1)
    rc = m5_coap_msg_add_opt(&r, M5_COAP_OPT_BLOCK1, b1,
                             ep_block_put(req->b1_num, 0, req->b1_szx, b1));
  if (rc) { /* the handler's mistake must still answer the peer */
    memset(&r, 0, sizeof r);
    r.code = M5_COAP_INTERNAL_ERROR;
    send_answer(ep, &req->msg, req->acked, d, &r);
    return rc;
  }
  unsigned szx = ep->o.block_szx;
  if (req->has_b2 && req->b2_szx < szx) szx = req->b2_szx;
  if (dg && (len > ep_block_size(szx) || req->has_b2)) {
    int more = 0;
    if (block2_slice(&r, body, len, req->has_b2 ? req->b2_num : 0, szx, &more, b2, s2)) {
      memset(&r, 0, sizeof r);
      r.code = M5_COAP_BAD_OPTION;
      r.payload = (const uint8_t *)"Block2 number past the end of the body";
      r.payload_len = strlen((const char *)r.payload);
    } else if (more) {
      b2_keep(ep, req->msg.code, req->path, code, format, szx, body, len);
    }
  }
  rc = send_answer(ep, &req->msg, req->acked, d, &r);
  if (rc == M5_ERANGE && !ep_gone(ep)) { /* stream: larger than the peer's Max-Message-Size */
    memset(&r, 0, sizeof r);
    r.code = M5_COAP_INTERNAL_ERROR;
    r.payload = (const uint8_t *)"response exceeds Max-Message-Size";
    r.payload_len = strlen((const char *)r.payload);
    send_answer(ep, &req->msg, req->acked, d, &r);
  }
  return rc;
}

int m5_coap_ep_respond(m5_coap_req_t *req, uint8_t code, int format, const uint8_t *body,
                       size_t len, const m5_coap_opt_t *opts, size_t n_opts) {
  if (!req) return M5_EINVAL;
  m5_coap_ep_t *ep = req->ep;
  if (!ep) {
    req_free(req);
    return M5_ECLOSED;
  }
  ep_enter(ep);
  if (req->ack_timer) m5_loop_timer_cancel(ep->loop, req->ack_timer);
  req->ack_timer = 0;
  int rc = ep_gone(ep) ? M5_ECLOSED : respond(ep, req, code, format, body, len, opts, n_opts);
  if (req->ep) req_unlink(ep, req); /* ep_free inside send() would have orphaned it */
  req_free(req);
  if (ep->released) ep_kick(ep);
  ep_leave(ep);
  return rc;
}

int m5_coap_ep_respond_error(m5_coap_req_t *req, uint8_t code, const char *diagnostic) {
  const char *d = diagnostic ? diagnostic : "";
  return m5_coap_ep_respond(req, code, -1, (const uint8_t *)d, strlen(d), NULL, 0);
}
