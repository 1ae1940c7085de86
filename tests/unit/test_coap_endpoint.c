/* Unit tests for the CoAP endpoint (src/lib/coap/endpoint.h): two endpoints wired back to
 * back on one loop through send callbacks that can drop, duplicate or reorder datagrams.
 * Datagrams: piggy-backed and separate responses, retransmission, MAX_RETRANSMIT timeout,
 * deduplication with cached answers, NSTART queueing and M5_EFULL, Block1 and Block2 transfers
 * of 5000 bytes, 4.13 beyond max_body, CoAP ping and stray responses. Streams: CSM exchange,
 * pipelined requests fed byte by byte, Ping/Pong, Abort on garbage, Max-Message-Size.
 * Life cycle: orphaned answers after free, free completing outstanding requests, free from
 * inside a callback. */
#include "coap/coap.h"
#include "coap/endpoint.h"
#include "core/buf.h"
#include "core/err.h"
#include "core/loop.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

/* ---- a lossy wire between endpoint 0 (client) and endpoint 1 (server) ---- */

typedef struct pkt {
  struct pkt *next;
  int to;
  size_t n;
  uint8_t p[];
} pkt_t;

typedef struct net net_t;
typedef struct {
  net_t *net;
  int side;
} io_t;

typedef struct {
  int calls;
  int hold; /* keep requests for the test to answer */
  m5_coap_req_t *held[16];
  int n_held;
  size_t body_len;
  uint8_t body[8192];
  char path[64];
  int format;
  uint8_t method;
  size_t answer_len; /* > 0: answer 2.05 with this many pattern bytes */
  int errors;
  int error_status;
  char why[160];
} side_t;

struct net {
  m5_loop_t *loop;
  m5_coap_ep_t *ep[2];
  io_t io[2];
  side_t side[2];
  pkt_t *head, *tail;
  m5_timer_id_t deliver;
  int drop[2];    /* drop the next n messages from this side */
  int dup[2];     /* duplicate the next n */
  int reorder[2]; /* hold the next message back until the one after it went */
  pkt_t *held;
  int sent[2];
  int split;             /* stream: deliver byte by byte */
  m5_buf_t out[2];       /* everything each side sent */
  uint8_t last[2][2048]; /* the last message each side sent */
  size_t last_n[2];
};

static void deliver_fire(m5_loop_t *loop, void *arg) {
  (void)loop;
  net_t *t = arg;
  t->deliver = 0;
  pkt_t *list = t->head;
  t->head = t->tail = NULL;
  while (list) {
    pkt_t *k = list;
    list = k->next;
    if (t->ep[k->to]) {
      if (t->split) {
        for (size_t i = 0; i < k->n && t->ep[k->to]; i++)
          m5_coap_ep_input(t->ep[k->to], k->p + i, 1);
      } else {
        m5_coap_ep_input(t->ep[k->to], k->p, k->n);
      }
    }
    free(k);
  }
}

static void enqueue(net_t *t, int to, const uint8_t *p, size_t n) {
  pkt_t *k = malloc(sizeof *k + n);
  assert_non_null(k);
  k->next = NULL;
  k->to = to;
  k->n = n;
  memcpy(k->p, p, n);
  if (t->tail)
    t->tail->next = k;
  else
    t->head = k;
  t->tail = k;
  if (!t->deliver) t->deliver = m5_loop_timer_add(t->loop, 0, deliver_fire, t);
}

static int net_send(void *io, const uint8_t *p, size_t n) {
  io_t *s = io;
  net_t *t = s->net;
  int me = s->side;
  t->sent[me]++;
  assert_int_equal(m5_buf_append(&t->out[me], p, n), M5_OK);
  t->last_n[me] = n < sizeof t->last[me] ? n : sizeof t->last[me];
  memcpy(t->last[me], p, t->last_n[me]);
  if (t->drop[me] > 0) {
    t->drop[me]--;
    return M5_OK;
  }
  if (t->reorder[me] > 0 && !t->held) {
    t->reorder[me]--;
    t->held = malloc(sizeof *t->held + n);
    t->held->to = 1 - me;
    t->held->n = n;
    memcpy(t->held->p, p, n);
    return M5_OK;
  }
  enqueue(t, 1 - me, p, n);
  if (t->dup[me] > 0) {
    t->dup[me]--;
    enqueue(t, 1 - me, p, n);
  }
  if (t->held && t->held->to == 1 - me) {
    enqueue(t, t->held->to, t->held->p, t->held->n);
    free(t->held);
    t->held = NULL;
  }
  return M5_OK;
}

static uint8_t pattern(size_t i) {
  return (uint8_t)(i * 7 + i / 251);
}

static void fill_pattern(uint8_t *b, size_t n) {
  for (size_t i = 0; i < n; i++)
    b[i] = pattern(i);
}

static void assert_pattern(const uint8_t *b, size_t n) {
  for (size_t i = 0; i < n; i++)
    assert_int_equal(b[i], pattern(i));
}

static void on_request(m5_coap_ep_t *ep, m5_coap_req_t *req, void *arg) {
  (void)ep;
  side_t *s = arg;
  s->calls++;
  const uint8_t *b = m5_coap_req_body(req, &s->body_len);
  assert_int_equal(b[s->body_len], '\0');
  if (s->body_len <= sizeof s->body) memcpy(s->body, b, s->body_len);
  snprintf(s->path, sizeof s->path, "%s", m5_coap_req_path(req));
  s->format = m5_coap_req_format(req);
  s->method = m5_coap_req_method(req);
  if (s->hold) {
    assert_true(s->n_held < 16);
    s->held[s->n_held++] = req;
    return;
  }
  if (s->answer_len) {
    uint8_t *big = malloc(s->answer_len);
    assert_non_null(big);
    fill_pattern(big, s->answer_len);
    assert_int_equal(m5_coap_ep_respond(req, M5_COAP_CONTENT, 42, big, s->answer_len, NULL, 0),
                     M5_OK);
    free(big);
    return;
  }
  char ok[32];
  int n = snprintf(ok, sizeof ok, "ok %zu", s->body_len);
  assert_int_equal(
      m5_coap_ep_respond(req, M5_COAP_CHANGED, -1, (const uint8_t *)ok, (size_t)n, NULL, 0), M5_OK);
}

static void on_error(m5_coap_ep_t *ep, int status, const char *why, void *arg) {
  (void)ep;
  side_t *s = arg;
  s->errors++;
  s->error_status = status;
  snprintf(s->why, sizeof s->why, "%s", why);
}

static m5_coap_ep_opts_t dgram_opts(void) {
  m5_coap_ep_opts_t o = {.transport = M5_COAP_DGRAM, .ack_timeout_ms = 40};
  return o;
}

/* The two endpoints with options o0 and o1; NULL: datagrams with a 40 ms ACK_TIMEOUT. */
static void net_init(net_t *t, const m5_coap_ep_opts_t *o0, const m5_coap_ep_opts_t *o1) {
  memset(t, 0, sizeof *t);
  m5_coap_ep_opts_t dflt = dgram_opts();
  t->loop = m5_loop_new();
  assert_non_null(t->loop);
  m5_coap_ep_cbs_t cbs = {.send = net_send, .on_request = on_request, .on_error = on_error};
  const m5_coap_ep_opts_t *o[2] = {o0 ? o0 : &dflt, o1 ? o1 : &dflt};
  for (int i = 0; i < 2; i++) {
    t->io[i].net = t;
    t->io[i].side = i;
    m5_buf_init(&t->out[i], 0);
    t->ep[i] = m5_coap_ep_new(t->loop, o[i], &cbs, &t->io[i], &t->side[i]);
    assert_non_null(t->ep[i]);
  }
}

static void net_free(net_t *t) {
  for (int i = 0; i < 2; i++) {
    for (int k = 0; k < t->side[i].n_held; k++)
      m5_coap_ep_respond(t->side[i].held[k], M5_COAP_CHANGED, -1, NULL, 0, NULL, 0);
    if (t->ep[i]) m5_coap_ep_free(t->ep[i]);
    m5_buf_free(&t->out[i]);
  }
  if (t->deliver) m5_loop_timer_cancel(t->loop, t->deliver);
  while (t->head) {
    pkt_t *k = t->head;
    t->head = k->next;
    free(k);
  }
  free(t->held);
  m5_loop_free(t->loop);
}

/* ---- waiting on the loop ---- */

typedef struct {
  int (*cond)(void *);
  void *arg;
  uint64_t deadline;
} waiter_t;

static void wait_tick(m5_loop_t *loop, void *arg) {
  waiter_t *w = arg;
  if ((w->cond && w->cond(w->arg)) || m5_clock_mono_ms() >= w->deadline) {
    m5_loop_stop(loop);
    return;
  }
  assert_true(m5_loop_timer_add(loop, 1, wait_tick, w) != 0);
}

/* Runs the loop until cond holds or ms pass; returns whether cond holds. */
static int wait_for(net_t *t, int (*cond)(void *), void *arg, uint64_t ms) {
  waiter_t w = {cond, arg, m5_clock_mono_ms() + ms};
  assert_true(m5_loop_timer_add(t->loop, 0, wait_tick, &w) != 0);
  m5_loop_run(t->loop);
  return cond ? cond(arg) : 0;
}

typedef struct {
  int done;
  int status;
  uint8_t code;
  int order;
  uint32_t size1;
  int has_size1;
  size_t len;
  uint8_t body[8192];
  m5_coap_ep_t *free_ep; /* frees this endpoint from inside the callback */
} res_t;

static int res_order;

static void on_resp(void *arg, int status, const m5_coap_msg_t *m, const uint8_t *body,
                    size_t len) {
  res_t *r = arg;
  r->done++;
  r->status = status;
  r->order = ++res_order;
  if (status == M5_OK) {
    assert_non_null(m);
    r->code = m->code;
    const m5_coap_opt_t *o = m5_coap_msg_opt(m, M5_COAP_OPT_SIZE1, 0);
    if (o) r->has_size1 = m5_coap_opt_uint(o, &r->size1) == M5_OK;
    r->len = len;
    if (len <= sizeof r->body && len) memcpy(r->body, body, len);
  }
  if (r->free_ep) m5_coap_ep_free(r->free_ep);
}

static int is_done(void *arg) {
  return ((res_t *)arg)->done > 0;
}

static int post(net_t *t, const char *body, res_t *r) {
  return m5_coap_ep_request(t->ep[0], M5_COAP_POST, "msgin5g", M5_COAP_FORMAT_JSON,
                            (const uint8_t *)body, strlen(body), on_resp, r);
}

/* ---- datagrams ---- */

static void test_piggybacked(void **state) {
  (void)state;
  net_t t;
  net_init(&t, NULL, NULL);
  res_t r = {0};
  assert_int_equal(post(&t, "{\"msgType\":\"REG\"}", &r), M5_OK);
  assert_int_equal(r.done, 0); /* never from inside the call */
  assert_int_equal(m5_coap_ep_pending(t.ep[0]), 1);
  assert_true(wait_for(&t, is_done, &r, 2000));
  assert_int_equal(r.status, M5_OK);
  assert_int_equal(r.code, M5_COAP_CHANGED);
  assert_int_equal(r.len, 5);
  assert_memory_equal(r.body, "ok 17", 5);
  assert_int_equal(t.side[1].calls, 1);
  assert_string_equal(t.side[1].path, "msgin5g");
  assert_int_equal(t.side[1].format, M5_COAP_FORMAT_JSON);
  assert_int_equal(t.side[1].method, M5_COAP_POST);
  /* One CON, one ACK carrying the answer. */
  assert_int_equal(t.sent[0], 1);
  assert_int_equal(t.sent[1], 1);
  m5_coap_msg_t m;
  assert_int_equal(m5_coap_parse_udp(t.out[0].data, t.out[0].len, &m), M5_OK);
  assert_int_equal(m.type, M5_COAP_CON);
  assert_int_equal(m.token_len, 8);
  m5_coap_msg_t a;
  assert_int_equal(m5_coap_parse_udp(t.out[1].data, t.out[1].len, &a), M5_OK);
  assert_int_equal(a.type, M5_COAP_ACK);
  assert_int_equal(a.mid, m.mid);
  assert_memory_equal(a.token, m.token, 8);
  assert_int_equal(m5_coap_ep_pending(t.ep[0]), 0);
  net_free(&t);
}

static void test_separate_response(void **state) {
  (void)state;
  net_t t;
  net_init(&t, NULL, NULL);
  t.side[1].hold = 1;
  res_t r = {0};
  assert_int_equal(post(&t, "{}", &r), M5_OK);
  wait_for(&t, NULL, NULL, 150); /* past ack_timeout/2: the empty ACK went out */
  assert_int_equal(t.side[1].n_held, 1);
  assert_int_equal(t.sent[1], 1);
  m5_coap_msg_t m;
  assert_int_equal(m5_coap_parse_udp(t.out[1].data, t.out[1].len, &m), M5_OK);
  assert_int_equal(m.type, M5_COAP_ACK);
  assert_int_equal(m.code, M5_COAP_EMPTY);
  assert_int_equal(t.sent[0], 1); /* the empty ACK stopped the retransmissions */
  assert_int_equal(r.done, 0);
  assert_int_equal(m5_coap_ep_pending(t.ep[1]), 1);
  size_t before = t.out[1].len;
  assert_int_equal(m5_coap_ep_respond(t.side[1].held[0], M5_COAP_CHANGED, -1,
                                      (const uint8_t *)"late", 4, NULL, 0),
                   M5_OK);
  t.side[1].n_held = 0;
  assert_true(wait_for(&t, is_done, &r, 2000));
  assert_int_equal(r.status, M5_OK);
  assert_memory_equal(r.body, "late", 4);
  assert_int_equal(m5_coap_parse_udp(t.out[1].data + before, t.out[1].len - before, &m), M5_OK);
  assert_int_equal(m.type, M5_COAP_CON); /* separate response, confirmable */
  wait_for(&t, NULL, NULL, 300);
  assert_int_equal(t.sent[0], 2); /* request + ACK of the separate response */
  assert_int_equal(t.sent[1], 2); /* acknowledged: not retransmitted */
  net_free(&t);
}

static void test_retransmit_then_success(void **state) {
  (void)state;
  net_t t;
  net_init(&t, NULL, NULL);
  t.drop[0] = 2;
  res_t r = {0};
  assert_int_equal(post(&t, "{}", &r), M5_OK);
  assert_true(wait_for(&t, is_done, &r, 3000));
  assert_int_equal(r.status, M5_OK);
  assert_int_equal(t.sent[0], 3);
  assert_int_equal(t.side[1].calls, 1);
  net_free(&t);
}

static void test_timeout_after_max_retransmit(void **state) {
  (void)state;
  m5_coap_ep_opts_t o = dgram_opts();
  o.ack_timeout_ms = 10;
  o.max_retransmit = 2;
  net_t t;
  net_init(&t, &o, &o);
  t.drop[0] = 1000;
  res_t r = {0};
  uint64_t t0 = m5_clock_mono_ms();
  assert_int_equal(post(&t, "{}", &r), M5_OK);
  assert_true(wait_for(&t, is_done, &r, 3000));
  uint64_t took = m5_clock_mono_ms() - t0;
  assert_int_equal(r.status, M5_ETIMEDOUT);
  assert_int_equal(t.sent[0], 3); /* first transmission + MAX_RETRANSMIT */
  assert_true(took >= 70);        /* 10 + 20 + 40 ms at least (back-off doubles) */
  assert_int_equal(t.side[1].calls, 0);
  net_free(&t);
}

static void test_duplicates_answered_from_cache(void **state) {
  (void)state;
  net_t t;
  net_init(&t, NULL, NULL);
  /* The request arrives twice, and the first answer is lost: the client retransmits too. */
  t.dup[0] = 1;
  t.drop[1] = 1;
  res_t r = {0};
  assert_int_equal(post(&t, "{}", &r), M5_OK);
  assert_true(wait_for(&t, is_done, &r, 3000));
  wait_for(&t, NULL, NULL, 100);
  assert_int_equal(r.done, 1);
  assert_int_equal(r.status, M5_OK);
  assert_int_equal(t.side[1].calls, 1); /* the handler saw it once */
  assert_true(t.sent[1] >= 2);          /* the cached answer went out again */
  /* The answers are byte-identical: the same cached ACK. */
  size_t n = t.out[1].len / (size_t)t.sent[1];
  assert_int_equal(n * (size_t)t.sent[1], t.out[1].len);
  assert_memory_equal(t.out[1].data, t.out[1].data + n, n);
  net_free(&t);
}

static void test_nstart_queue_and_efull(void **state) {
  (void)state;
  m5_coap_ep_opts_t o = dgram_opts();
  o.max_queued = 2;
  net_t t;
  net_init(&t, &o, &o);
  t.side[1].hold = 1;
  res_t r[3] = {{0}};
  for (int i = 0; i < 3; i++)
    assert_int_equal(post(&t, "{}", &r[i]), M5_OK);
  res_t extra = {0};
  assert_int_equal(post(&t, "{}", &extra), M5_EFULL);
  assert_int_equal(m5_coap_ep_pending(t.ep[0]), 3);
  for (int i = 0; i < 3; i++) {
    wait_for(&t, NULL, NULL, 60);
    assert_int_equal(t.side[1].n_held, 1); /* NSTART = 1: one at a time */
    assert_int_equal(t.side[1].calls, i + 1);
    assert_int_equal(m5_coap_ep_respond(t.side[1].held[0], M5_COAP_CHANGED, -1, NULL, 0, NULL, 0),
                     M5_OK);
    t.side[1].n_held = 0;
    assert_true(wait_for(&t, is_done, &r[i], 2000));
  }
  assert_true(r[0].order < r[1].order && r[1].order < r[2].order);
  assert_int_equal(extra.done, 0);
  net_free(&t);
}

static void test_reordered_requests(void **state) {
  (void)state;
  m5_coap_ep_opts_t o = dgram_opts();
  o.nstart = 2;
  net_t t;
  net_init(&t, &o, &o);
  t.reorder[0] = 1;
  res_t a = {0}, b = {0};
  assert_int_equal(post(&t, "{\"n\":1}", &a), M5_OK);
  assert_int_equal(post(&t, "{\"n\":22}", &b), M5_OK);
  assert_true(wait_for(&t, is_done, &a, 2000));
  assert_true(wait_for(&t, is_done, &b, 2000));
  /* Each answer reached its own request although the requests crossed. */
  assert_memory_equal(a.body, "ok 7", 4);
  assert_memory_equal(b.body, "ok 8", 4);
  assert_true(b.order < a.order);
  assert_int_equal(t.side[1].calls, 2);
  net_free(&t);
}

static void test_block1_upload(void **state) {
  (void)state;
  net_t t;
  net_init(&t, NULL, NULL);
  uint8_t body[5000];
  fill_pattern(body, sizeof body);
  res_t r = {0};
  assert_int_equal(m5_coap_ep_request(t.ep[0], M5_COAP_POST, "msgin5g", M5_COAP_FORMAT_JSON, body,
                                      sizeof body, on_resp, &r),
                   M5_OK);
  assert_true(wait_for(&t, is_done, &r, 3000));
  assert_int_equal(r.status, M5_OK);
  assert_int_equal(r.code, M5_COAP_CHANGED);
  assert_memory_equal(r.body, "ok 5000", 7);
  assert_int_equal(t.side[1].calls, 1);
  assert_int_equal(t.side[1].body_len, 5000);
  assert_memory_equal(t.side[1].body, body, 5000);
  assert_int_equal(t.side[1].format, M5_COAP_FORMAT_JSON);
  assert_int_equal(t.sent[0], 5); /* 4 x 1024 + 904 */
  net_free(&t);
}

static void test_block1_lost_block(void **state) {
  (void)state;
  net_t t;
  net_init(&t, NULL, NULL);
  uint8_t body[3000];
  fill_pattern(body, sizeof body);
  t.drop[1] = 1; /* the first 2.31 is lost: block 0 comes again and restarts the transfer */
  res_t r = {0};
  assert_int_equal(
      m5_coap_ep_request(t.ep[0], M5_COAP_POST, "msgin5g", -1, body, sizeof body, on_resp, &r),
      M5_OK);
  assert_true(wait_for(&t, is_done, &r, 3000));
  assert_int_equal(r.status, M5_OK);
  assert_int_equal(t.side[1].calls, 1);
  assert_int_equal(t.side[1].body_len, 3000);
  assert_memory_equal(t.side[1].body, body, 3000);
  assert_int_equal(t.side[1].format, -1);
  net_free(&t);
}

static void test_block2_download(void **state) {
  (void)state;
  net_t t;
  net_init(&t, NULL, NULL);
  t.side[1].answer_len = 5000;
  res_t r = {0};
  assert_int_equal(m5_coap_ep_request(t.ep[0], M5_COAP_GET, "msgin5g", -1, NULL, 0, on_resp, &r),
                   M5_OK);
  assert_true(wait_for(&t, is_done, &r, 3000));
  assert_int_equal(r.status, M5_OK);
  assert_int_equal(r.code, M5_COAP_CONTENT);
  assert_int_equal(r.len, 5000);
  assert_pattern(r.body, 5000);
  assert_int_equal(t.side[1].calls, 1); /* follow-ups were served from the kept body */
  assert_int_equal(t.sent[0], 5);
  net_free(&t);
}

static void test_block2_after_post(void **state) {
  (void)state;
  m5_coap_ep_opts_t o = dgram_opts();
  o.block_szx = 4; /* 256-byte blocks */
  net_t t;
  net_init(&t, &o, &o);
  t.side[1].answer_len = 1000;
  res_t r = {0};
  assert_int_equal(post(&t, "{\"msgType\":\"MSG\"}", &r), M5_OK);
  assert_true(wait_for(&t, is_done, &r, 3000));
  assert_int_equal(r.status, M5_OK);
  assert_int_equal(r.len, 1000);
  assert_pattern(r.body, 1000);
  assert_int_equal(t.side[1].calls, 1); /* a POST must not run again per block */
  net_free(&t);
}

static void test_too_large(void **state) {
  (void)state;
  m5_coap_ep_opts_t small = dgram_opts();
  small.max_body = 2000;
  net_t t;
  net_init(&t, NULL, &small);
  uint8_t body[5000] = {0};
  res_t r = {0};
  assert_int_equal(
      m5_coap_ep_request(t.ep[0], M5_COAP_POST, "msgin5g", -1, body, sizeof body, on_resp, &r),
      M5_OK);
  assert_true(wait_for(&t, is_done, &r, 3000));
  assert_int_equal(r.status, M5_OK);
  assert_int_equal(r.code, M5_COAP_TOO_LARGE);
  assert_true(r.has_size1);
  assert_int_equal(r.size1, 2000);
  assert_int_equal(t.side[1].calls, 0);
  /* Without Size1 up front the limit is found during reassembly. */
  m5_coap_ep_t *srv = t.ep[1];
  uint8_t raw[1100];
  m5_coap_msg_t m;
  memset(&m, 0, sizeof m);
  m.type = M5_COAP_CON;
  m.code = M5_COAP_POST;
  m.token_len = 1;
  uint8_t blk[4];
  memset(raw, 'x', sizeof raw);
  static const uint8_t expect[3] = {M5_COAP_CONTINUE, M5_COAP_TOO_LARGE,
                                    M5_COAP_REQUEST_INCOMPLETE};
  m5_coap_msg_t last;
  for (uint32_t num = 0; num < 3; num++) {
    m.mid = (uint16_t)(100 + num);
    m.n_opts = 0;
    m5_coap_msg_add_opt(&m, M5_COAP_OPT_BLOCK1, blk, m5_coap_uint_encode((num << 4) | 8 | 6, blk));
    m.payload = raw;
    m.payload_len = 1024;
    m5_buf_t w;
    m5_buf_init(&w, 0);
    assert_int_equal(m5_coap_encode_udp(&m, &w), M5_OK);
    assert_int_equal(m5_coap_ep_input(srv, w.data, w.len), M5_OK);
    m5_buf_free(&w);
    /* 2.31 for block 0; block 1 passes 2000: 4.13; block 2 belongs to no transfer: 4.08 */
    assert_int_equal(m5_coap_parse_udp(t.last[1], t.last_n[1], &last), M5_OK);
    assert_int_equal(last.type, M5_COAP_ACK);
    assert_int_equal(last.mid, m.mid);
    assert_int_equal(last.code, expect[num]);
  }
  assert_int_equal(t.side[1].calls, 0);
  net_free(&t);
}

static void test_ping_and_stray_response(void **state) {
  (void)state;
  net_t t;
  net_init(&t, NULL, NULL);
  static const uint8_t ping[] = {0x40, 0x00, 0xbe, 0xef};
  assert_int_equal(m5_coap_ep_input(t.ep[1], ping, sizeof ping), M5_OK);
  m5_coap_msg_t m;
  assert_int_equal(m5_coap_parse_udp(t.out[1].data, t.out[1].len, &m), M5_OK);
  assert_int_equal(m.type, M5_COAP_RST);
  assert_int_equal(m.mid, 0xbeef);
  /* A CON 2.05 nobody asked for gets RST; garbage CON gets RST too, never a crash. */
  static const uint8_t stray[] = {0x41, 0x45, 0x12, 0x34, 0x99, 0xff, 'x'};
  size_t before = t.out[1].len;
  assert_int_equal(m5_coap_ep_input(t.ep[1], stray, sizeof stray), M5_OK);
  assert_int_equal(m5_coap_parse_udp(t.out[1].data + before, t.out[1].len - before, &m), M5_OK);
  assert_int_equal(m.type, M5_COAP_RST);
  assert_int_equal(m.mid, 0x1234);
  static const uint8_t garbage[] = {0x4f, 0x01, 0x00, 0x07, 0x01};
  before = t.out[1].len;
  assert_int_equal(m5_coap_ep_input(t.ep[1], garbage, sizeof garbage), M5_OK);
  assert_int_equal(m5_coap_parse_udp(t.out[1].data + before, t.out[1].len - before, &m), M5_OK);
  assert_int_equal(m.type, M5_COAP_RST);
  assert_int_equal(m.mid, 7);
  /* An unsupported critical option: 4.02, the handler is not called. */
  static const uint8_t crit[] = {0x40, 0x02, 0x00, 0x08, 0xd0, 0x00}; /* option 13, empty */
  before = t.out[1].len;
  assert_int_equal(m5_coap_ep_input(t.ep[1], crit, sizeof crit), M5_OK);
  assert_int_equal(m5_coap_parse_udp(t.out[1].data + before, t.out[1].len - before, &m), M5_OK);
  assert_int_equal(m.code, M5_COAP_BAD_OPTION);
  assert_int_equal(t.side[1].calls, 0);
  assert_int_equal(t.side[1].errors, 0);
  net_free(&t);
}

/* ---- life cycle ---- */

static void test_orphaned_respond_after_free(void **state) {
  (void)state;
  net_t t;
  net_init(&t, NULL, NULL);
  t.side[1].hold = 1;
  res_t r = {0};
  assert_int_equal(post(&t, "{}", &r), M5_OK);
  wait_for(&t, NULL, NULL, 50);
  assert_int_equal(t.side[1].n_held, 1);
  m5_coap_ep_free(t.ep[1]);
  t.ep[1] = NULL;
  /* The handler still owns the request; answering it frees it and reports the loss. */
  assert_int_equal(m5_coap_ep_respond_error(t.side[1].held[0], M5_COAP_BAD_REQUEST, "late"),
                   M5_ECLOSED);
  t.side[1].n_held = 0;
  net_free(&t);
}

static void test_free_completes_outstanding(void **state) {
  (void)state;
  net_t t;
  net_init(&t, NULL, NULL);
  t.drop[0] = 1000;
  res_t r[3] = {{0}};
  for (int i = 0; i < 3; i++)
    assert_int_equal(post(&t, "{}", &r[i]), M5_OK);
  wait_for(&t, NULL, NULL, 20);
  assert_int_equal(r[0].done, 0);
  m5_coap_ep_free(t.ep[0]);
  t.ep[0] = NULL;
  for (int i = 0; i < 3; i++) {
    assert_int_equal(r[i].done, 1); /* in flight and queued alike, before free returned */
    assert_int_equal(r[i].status, M5_ECLOSED);
  }
  net_free(&t);
}

static void test_free_inside_callback(void **state) {
  (void)state;
  net_t t;
  net_init(&t, NULL, NULL);
  res_t r = {0}, q = {0};
  r.free_ep = t.ep[0];
  assert_int_equal(post(&t, "{}", &r), M5_OK);
  assert_int_equal(post(&t, "{}", &q), M5_OK); /* queued behind NSTART */
  assert_true(wait_for(&t, is_done, &r, 2000));
  t.ep[0] = NULL;
  assert_int_equal(r.status, M5_OK);
  assert_int_equal(q.done, 1);
  assert_int_equal(q.status, M5_ECLOSED);
  wait_for(&t, NULL, NULL, 100); /* no timer of the freed endpoint may fire */
  net_free(&t);
}

/* ---- streams ---- */

static int held_n(void *arg) {
  return ((side_t *)arg)->n_held;
}

static int all_done(void *arg) {
  res_t *r = arg;
  for (int i = 0; i < 5; i++)
    if (!r[i].done) return 0;
  return 1;
}

static int all_done_3_4_held(void *arg) {
  return ((net_t *)arg)->side[1].n_held >= 4;
}
static int held_3(void *arg) {
  return ((side_t *)arg)->n_held >= 3;
}

static int r0_r2_done(void *arg) {
  res_t *r = arg;
  return r[0].done && r[2].done;
}

/* Exchange timeouts (one list and one timer per endpoint): requests the peer never answers
 * fail with M5_ETIMEDOUT, oldest first, each once; an answered one between them is not
 * touched; the endpoint goes on working (and timing out) afterwards. */
static void test_stream_exchange_timeout(void **state) {
  (void)state;
  m5_coap_ep_opts_t a = {.transport = M5_COAP_STREAM, .exchange_timeout_ms = 150};
  m5_coap_ep_opts_t b = {.transport = M5_COAP_STREAM};
  net_t t;
  net_init(&t, &a, &b);
  t.side[1].hold = 1;
  assert_int_equal(m5_coap_ep_start(t.ep[0]), M5_OK);
  assert_int_equal(m5_coap_ep_start(t.ep[1]), M5_OK);
  res_t r[5] = {{0}};
  assert_int_equal(post(&t, "{\"n\":0}", &r[0]), M5_OK);
  wait_for(&t, NULL, NULL, 40);
  assert_int_equal(post(&t, "{\"n\":1}", &r[1]), M5_OK);
  assert_int_equal(post(&t, "{\"n\":2}", &r[2]), M5_OK);
  assert_true(wait_for(&t, held_3, &t.side[1], 2000));
  /* the middle one is answered: it leaves the list from its middle */
  assert_int_equal(m5_coap_ep_respond(t.side[1].held[1], M5_COAP_CHANGED, -1, NULL, 0, NULL, 0),
                   M5_OK);
  t.side[1].held[1] = t.side[1].held[2];
  t.side[1].n_held = 2;
  assert_true(wait_for(&t, r0_r2_done, r, 5000));
  assert_int_equal(r[1].done, 1);
  assert_int_equal(r[1].status, M5_OK);
  assert_int_equal(r[0].done, 1);
  assert_int_equal(r[0].status, M5_ETIMEDOUT);
  assert_int_equal(r[2].done, 1);
  assert_int_equal(r[2].status, M5_ETIMEDOUT);
  assert_true(r[1].order < r[0].order && r[0].order < r[2].order);
  /* afterwards: one answered, one timed out, as before */
  assert_int_equal(post(&t, "{\"n\":3}", &r[3]), M5_OK);
  assert_int_equal(post(&t, "{\"n\":4}", &r[4]), M5_OK);
  assert_true(wait_for(&t, all_done_3_4_held, &t, 2000));
  assert_int_equal(m5_coap_ep_respond(t.side[1].held[2], M5_COAP_CHANGED, -1, NULL, 0, NULL, 0),
                   M5_OK);
  t.side[1].held[2] = t.side[1].held[3];
  t.side[1].n_held = 3; /* the unanswered ones are answered (too late) by net_free */
  assert_true(wait_for(&t, all_done, r, 5000));
  assert_int_equal(r[3].status, M5_OK);
  assert_int_equal(r[4].status, M5_ETIMEDOUT);
  assert_int_equal(r[0].done + r[1].done + r[2].done + r[3].done + r[4].done, 5);
  assert_int_equal(t.side[0].errors + t.side[1].errors, 0);
  net_free(&t);
}

static void test_stream_csm_and_pipeline(void **state) {
  (void)state;
  m5_coap_ep_opts_t a = {.transport = M5_COAP_STREAM, .max_message_size = 4000};
  m5_coap_ep_opts_t b = {.transport = M5_COAP_STREAM};
  net_t t;
  net_init(&t, &a, &b);
  t.split = 1; /* every byte on its own */
  t.side[1].hold = 1;
  res_t r[5] = {{0}};
  for (int i = 0; i < 5; i++) /* before any CSM: they wait for the peer's */
    assert_int_equal(post(&t, "{\"msgType\":\"MSG\"}", &r[i]), M5_OK);
  assert_int_equal(m5_coap_ep_peer_max_message(t.ep[0]), 1152);
  assert_int_equal(m5_coap_ep_start(t.ep[0]), M5_OK);
  assert_int_equal(m5_coap_ep_start(t.ep[1]), M5_OK);
  m5_coap_msg_t m;
  size_t used, need;
  assert_int_equal(m5_coap_parse_tcp(t.out[0].data, t.out[0].len, 4000, &m, &used, &need), M5_OK);
  assert_int_equal(m.code, M5_COAP_CSM);
  uint32_t v;
  assert_int_equal(m5_coap_opt_uint(m5_coap_msg_opt(&m, M5_COAP_OPT_CSM_MAX_MESSAGE_SIZE, 0), &v),
                   M5_OK);
  assert_int_equal(v, 4000);
  assert_null(m5_coap_msg_opt(&m, M5_COAP_OPT_CSM_BLOCK_WISE, 0));
  /* All five arrive before any is answered: pipelined, not one at a time. */
  assert_true(wait_for(&t, held_n, &t.side[1], 2000) && (wait_for(&t, NULL, NULL, 30), 1));
  assert_int_equal(t.side[1].n_held, 5);
  assert_int_equal(m5_coap_ep_peer_max_message(t.ep[0]), 1152 + 65536);
  assert_int_equal(m5_coap_ep_peer_max_message(t.ep[1]), 4000);
  for (int i = 4; i >= 0; i--) { /* answered out of order: matched by token */
    char ans[8];
    int n = snprintf(ans, sizeof ans, "a%d", i);
    assert_int_equal(m5_coap_ep_respond(t.side[1].held[i], M5_COAP_CHANGED, -1,
                                        (const uint8_t *)ans, (size_t)n, NULL, 0),
                     M5_OK);
  }
  t.side[1].n_held = 0;
  assert_true(wait_for(&t, all_done, r, 2000));
  for (int i = 0; i < 5; i++) {
    char ans[8];
    snprintf(ans, sizeof ans, "a%d", i);
    assert_int_equal(r[i].status, M5_OK);
    assert_memory_equal(r[i].body, ans, 2);
  }
  assert_int_equal(t.side[0].errors + t.side[1].errors, 0);
  net_free(&t);
}

static void test_stream_ping_abort_and_size(void **state) {
  (void)state;
  m5_coap_ep_opts_t a = {.transport = M5_COAP_STREAM};
  m5_coap_ep_opts_t b = {.transport = M5_COAP_STREAM, .max_message_size = 1000};
  net_t t;
  net_init(&t, &a, &b);
  assert_int_equal(m5_coap_ep_start(t.ep[0]), M5_OK);
  assert_int_equal(m5_coap_ep_start(t.ep[1]), M5_OK);
  wait_for(&t, NULL, NULL, 20);
  assert_int_equal(m5_coap_ep_peer_max_message(t.ep[0]), 1000);
  /* A body the peer cannot take fails locally. */
  uint8_t big[2000] = {0};
  res_t r = {0};
  assert_int_equal(
      m5_coap_ep_request(t.ep[0], M5_COAP_POST, "msgin5g", -1, big, sizeof big, on_resp, &r),
      M5_OK);
  assert_true(wait_for(&t, is_done, &r, 1000));
  assert_int_equal(r.status, M5_ERANGE);
  /* Ping -> Pong with the same token. */
  static const uint8_t ping[] = {0x01, 0xe2, 0x5a};
  size_t before = t.out[1].len;
  assert_int_equal(m5_coap_ep_input(t.ep[1], ping, sizeof ping), M5_OK);
  m5_coap_msg_t m;
  size_t used, need;
  assert_int_equal(
      m5_coap_parse_tcp(t.out[1].data + before, t.out[1].len - before, 100, &m, &used, &need),
      M5_OK);
  assert_int_equal(m.code, M5_COAP_PONG);
  assert_int_equal(m.token_len, 1);
  assert_int_equal(m.token[0], 0x5a);
  /* Garbage (TKL 9): Abort with a diagnostic, on_error, no more input. */
  static const uint8_t junk[] = {0x09, 0x01, 1, 2, 3, 4, 5, 6, 7, 8, 9};
  before = t.out[1].len;
  assert_int_equal(m5_coap_ep_input(t.ep[1], junk, sizeof junk), M5_EPROTO);
  assert_int_equal(
      m5_coap_parse_tcp(t.out[1].data + before, t.out[1].len - before, 1000, &m, &used, &need),
      M5_OK);
  assert_int_equal(m.code, M5_COAP_ABORT);
  assert_true(m.payload_len > 0);
  assert_int_equal(t.side[1].errors, 1);
  assert_int_equal(t.side[1].error_status, M5_EPROTO);
  assert_int_equal(m5_coap_ep_input(t.ep[1], ping, sizeof ping), M5_ECLOSED);
  /* The Abort reaches the other side: it reports the channel gone. */
  wait_for(&t, NULL, NULL, 20);
  assert_int_equal(t.side[0].errors, 1);
  assert_non_null(strstr(t.side[0].why, "Abort"));
  net_free(&t);
}

static void test_stream_oversized_and_missing_csm(void **state) {
  (void)state;
  m5_coap_ep_opts_t b = {.transport = M5_COAP_STREAM, .max_message_size = 100};
  net_t t;
  net_init(&t, &b, &b);
  /* A frame announcing more than our Max-Message-Size is refused from its header. */
  static const uint8_t csm[] = {0x00, 0xe1};
  assert_int_equal(m5_coap_ep_input(t.ep[1], csm, sizeof csm), M5_OK);
  static const uint8_t big[] = {0xe0, 0x10, 0x00, 0x02};
  assert_int_equal(m5_coap_ep_input(t.ep[1], big, sizeof big), M5_EPROTO);
  assert_int_equal(t.side[1].errors, 1);
  /* A first message other than CSM is a connection error too. */
  static const uint8_t get[] = {0x00, 0x01};
  assert_int_equal(m5_coap_ep_input(t.ep[0], get, sizeof get), M5_EPROTO);
  assert_int_equal(t.side[0].errors, 1);
  net_free(&t);
}

static void test_stream_release(void **state) {
  (void)state;
  m5_coap_ep_opts_t a = {.transport = M5_COAP_STREAM};
  net_t t;
  net_init(&t, &a, &a);
  assert_int_equal(m5_coap_ep_start(t.ep[0]), M5_OK);
  assert_int_equal(m5_coap_ep_start(t.ep[1]), M5_OK);
  wait_for(&t, NULL, NULL, 20);
  /* After the peer's Release nothing new goes out, and the endpoint reports it is done. */
  static const uint8_t release[] = {0x00, 0xe4};
  assert_int_equal(m5_coap_ep_input(t.ep[0], release, sizeof release), M5_OK);
  res_t r = {0};
  assert_int_equal(post(&t, "{}", &r), M5_ECLOSED);
  wait_for(&t, NULL, NULL, 20);
  assert_int_equal(t.side[0].errors, 1);
  assert_int_equal(t.side[0].error_status, M5_ECLOSED);
  net_free(&t);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_piggybacked),
      cmocka_unit_test(test_separate_response),
      cmocka_unit_test(test_retransmit_then_success),
      cmocka_unit_test(test_timeout_after_max_retransmit),
      cmocka_unit_test(test_duplicates_answered_from_cache),
      cmocka_unit_test(test_nstart_queue_and_efull),
      cmocka_unit_test(test_reordered_requests),
      cmocka_unit_test(test_block1_upload),
      cmocka_unit_test(test_block1_lost_block),
      cmocka_unit_test(test_block2_download),
      cmocka_unit_test(test_block2_after_post),
      cmocka_unit_test(test_too_large),
      cmocka_unit_test(test_ping_and_stray_response),
      cmocka_unit_test(test_orphaned_respond_after_free),
      cmocka_unit_test(test_free_completes_outstanding),
      cmocka_unit_test(test_free_inside_callback),
      cmocka_unit_test(test_stream_csm_and_pipeline),
      cmocka_unit_test(test_stream_exchange_timeout),
      cmocka_unit_test(test_stream_ping_abort_and_size),
      cmocka_unit_test(test_stream_oversized_and_missing_csm),
      cmocka_unit_test(test_stream_release),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
