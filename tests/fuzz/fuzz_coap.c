/* libFuzzer harness for the CoAP codec and endpoint (src/lib/coap/): every input is parsed as
 * a UDP datagram and as an RFC 8323 stream frame. Each field has exactly one wire encoding, so
 * a message that parses must encode back to the same bytes (for the stream, the bytes
 * consumed). The input is then fed to a datagram endpoint (split into datagrams at 0xC0 0xC0)
 * and to a stream endpoint, whose handler answers every request with a body larger than a
 * block, to catch peer input reaching memory errors or unbounded state. */
/* clang-format off */
/* M5_FUZZ_SOURCES: src/lib/coap/codec.c src/lib/coap/endpoint.c src/lib/coap/incoming.c src/lib/coap/stream.c src/lib/core/buf.c src/lib/core/err.c src/lib/core/log.c src/lib/core/loop.c src/lib/crypto/codec.c */
/* M5_FUZZ_PKGS: openssl */
/* clang-format on */
#include "coap/coap.h"
#include "coap/endpoint.h"
#include "core/buf.h"
#include "core/err.h"
#include "core/log.h"
#include "core/loop.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static void check_same(const m5_coap_msg_t *m, int tcp, const uint8_t *x, size_t n) {
  m5_buf_t b;
  m5_buf_init(&b, 0);
  int rc = tcp ? m5_coap_encode_tcp(m, &b) : m5_coap_encode_udp(m, &b);
  if (rc != M5_OK || b.len != n || memcmp(b.data, x, n) != 0) __builtin_trap();
  m5_buf_free(&b);
}

static int sink(void *io, const uint8_t *p, size_t n) {
  (void)io;
  (void)p;
  (void)n;
  return M5_OK;
}

static void answer(m5_coap_ep_t *ep, m5_coap_req_t *req, void *arg) {
  (void)ep;
  (void)arg;
  static uint8_t big[3000];
  size_t n;
  m5_coap_req_body(req, &n);
  m5_coap_ep_respond(req, M5_COAP_CONTENT, M5_COAP_FORMAT_JSON, big, n & 1 ? sizeof big : n, NULL,
                     0);
}

static void feed_endpoints(const uint8_t *data, size_t size) {
  static m5_loop_t *loop;
  if (!loop) {
    m5_log_set_level(M5_LOG_ERROR);
    loop = m5_loop_new();
    if (!loop) return;
  }
  m5_coap_ep_cbs_t cbs = {.send = sink, .on_request = answer};
  m5_coap_ep_opts_t o = {.transport = M5_COAP_DGRAM, .max_body = 4096, .block_szx = 2};
  m5_coap_ep_t *ep = m5_coap_ep_new(loop, &o, &cbs, NULL, NULL);
  if (ep) {
    size_t start = 0;
    for (size_t i = 0; i + 1 < size; i++) {
      if (data[i] == 0xC0 && data[i + 1] == 0xC0) {
        m5_coap_ep_input(ep, data + start, i - start);
        start = i + 2;
      }
    }
    if (start <= size) m5_coap_ep_input(ep, data + start, size - start);
    m5_coap_ep_free(ep);
  }
  o.transport = M5_COAP_STREAM;
  o.max_message_size = 2048;
  ep = m5_coap_ep_new(loop, &o, &cbs, NULL, NULL);
  if (ep) {
    static const uint8_t csm[] = {0x00, 0xe1};
    m5_coap_ep_input(ep, csm, sizeof csm);
    m5_coap_ep_input(ep, data, size);
    m5_coap_ep_free(ep);
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size > 70000) return 0;
  m5_coap_msg_t m;
  if (m5_coap_parse_udp(data, size, &m) == M5_OK) {
    for (size_t i = 0; i < m.n_opts; i++) { /* decoded values stay inside the input */
      const m5_coap_opt_t *o = &m.opts[i];
      if (o->len && (o->val < data || o->val + o->len > data + size)) __builtin_trap();
    }
    check_same(&m, 0, data, size);
  }
  size_t used = 0, need = 0;
  int rc = m5_coap_parse_tcp(data, size, size, &m, &used, &need);
  if (rc == M5_OK) {
    if (used == 0 || used > size) __builtin_trap();
    check_same(&m, 1, data, used);
  } else if (rc == M5_EAGAIN && need && need <= size) {
    __builtin_trap(); /* asked for bytes it already had */
  }
  /* A tighter limit never lets a larger message through. */
  if (size > 8 && m5_coap_parse_tcp(data, size, size / 2, &m, &used, &need) == M5_OK &&
      used > size / 2)
    __builtin_trap();
  feed_endpoints(data, size);
  return 0;
}
