/* Unit tests for the CoAP codec (src/lib/coap/coap.h): RFC 7252 §3 messages byte for byte
 * (header, token, option delta/length extensions 13 and 14, payload marker, Empty message),
 * the malformed cases a peer can send, and RFC 8323 §3.2 framing for each Len class with
 * partial input and the Max-Message-Size limit. */
#include "coap/coap.h"
#include "core/buf.h"
#include "core/err.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

/* Parses, checks encode(parse(x)) == x. */
static void roundtrip_udp(const uint8_t *x, size_t n, m5_coap_msg_t *m) {
  assert_int_equal(m5_coap_parse_udp(x, n, m), M5_OK);
  m5_buf_t b;
  m5_buf_init(&b, 0);
  assert_int_equal(m5_coap_encode_udp(m, &b), M5_OK);
  assert_int_equal(b.len, n);
  assert_memory_equal(b.data, x, n);
  m5_buf_free(&b);
}

static void test_udp_con_get_uri_path(void **state) {
  (void)state;
  /* RFC 7252 Appendix A style: CON GET, MID 0x7d34, no token, Uri-Path "temperature". */
  static const uint8_t x[] = {0x40, 0x01, 0x7d, 0x34, 0xbb, 't', 'e', 'm',
                              'p',  'e',  'r',  'a',  't',  'u', 'r', 'e'};
  m5_coap_msg_t m;
  roundtrip_udp(x, sizeof x, &m);
  assert_int_equal(m.type, M5_COAP_CON);
  assert_int_equal(m.code, M5_COAP_GET);
  assert_int_equal(m.mid, 0x7d34);
  assert_int_equal(m.token_len, 0);
  assert_int_equal(m.n_opts, 1);
  assert_int_equal(m.opts[0].num, M5_COAP_OPT_URI_PATH);
  assert_int_equal(m.opts[0].len, 11);
  assert_memory_equal(m.opts[0].val, "temperature", 11);
  assert_null(m.payload);

  /* Built from fields, the same bytes come out. */
  m5_coap_msg_t e;
  memset(&e, 0, sizeof e);
  e.type = M5_COAP_CON;
  e.code = M5_COAP_GET;
  e.mid = 0x7d34;
  assert_int_equal(
      m5_coap_msg_add_opt(&e, M5_COAP_OPT_URI_PATH, (const uint8_t *)"temperature", 11), M5_OK);
  m5_buf_t b;
  m5_buf_init(&b, 0);
  assert_int_equal(m5_coap_encode_udp(&e, &b), M5_OK);
  assert_int_equal(b.len, sizeof x);
  assert_memory_equal(b.data, x, sizeof x);
  m5_buf_free(&b);
}

static void test_udp_ack_piggybacked_with_token_and_payload(void **state) {
  (void)state;
  /* ACK 2.05, MID 0x7d34, token 0x71, Content-Format 0 (empty value), payload "22.3 C". */
  static const uint8_t x[] = {0x61, 0x45, 0x7d, 0x34, 0x71, 0xc0, 0xff,
                              '2',  '2',  '.',  '3',  ' ',  'C'};
  m5_coap_msg_t m;
  roundtrip_udp(x, sizeof x, &m);
  assert_int_equal(m.type, M5_COAP_ACK);
  assert_int_equal(m.code, M5_COAP_CONTENT);
  assert_int_equal(m.token_len, 1);
  assert_int_equal(m.token[0], 0x71);
  assert_int_equal(m.n_opts, 1);
  assert_int_equal(m.opts[0].num, M5_COAP_OPT_CONTENT_FORMAT);
  assert_int_equal(m.opts[0].len, 0);
  assert_int_equal(m.payload_len, 6);
  assert_memory_equal(m.payload, "22.3 C", 6);
}

static void test_udp_option_extensions(void **state) {
  (void)state;
  /* Block2 (23): delta 23 -> nibble 13 + 10; option 300: delta 277 -> nibble 14 + 0x0008;
   * a 20-byte Uri-Path: length nibble 13 + 7. */
  uint8_t x[64];
  size_t n = 0;
  const uint8_t hdr[] = {0x48, 0x02, 0x00, 0x01, 1, 2, 3, 4, 5, 6, 7, 8};
  memcpy(x, hdr, sizeof hdr);
  n = sizeof hdr;
  x[n++] = 0xbd; /* Uri-Path, length 13 + 7 = 20 */
  x[n++] = 0x07;
  memset(x + n, 'a', 20);
  n += 20;
  x[n++] = 0xc1; /* delta 12 -> 23 (Block2), length 1 */
  x[n++] = 0x26;
  x[n++] = 0xe0; /* delta 269 + 8 = 277 -> 300, length 0 */
  x[n++] = 0x00;
  x[n++] = 0x08;
  x[n++] = 0xd1; /* delta 13 + 0 = 13 -> 313, length 1 */
  x[n++] = 0x00;
  x[n++] = 0x42;
  m5_coap_msg_t m;
  roundtrip_udp(x, n, &m);
  assert_int_equal(m.token_len, 8);
  assert_int_equal(m.n_opts, 4);
  assert_int_equal(m.opts[0].len, 20);
  assert_int_equal(m.opts[1].num, 23);
  assert_int_equal(m.opts[2].num, 300);
  assert_int_equal(m.opts[3].num, 313);
  uint32_t v;
  assert_int_equal(m5_coap_opt_uint(&m.opts[1], &v), M5_OK);
  assert_int_equal(v, 0x26);
  assert_ptr_equal(m5_coap_msg_opt(&m, 300, 0), &m.opts[2]);
  assert_null(m5_coap_msg_opt(&m, 300, 1));
}

static void test_udp_empty_and_malformed(void **state) {
  (void)state;
  m5_coap_msg_t m;
  static const uint8_t ping[] = {0x40, 0x00, 0x12, 0x34};
  roundtrip_udp(ping, sizeof ping, &m);
  assert_int_equal(m.code, M5_COAP_EMPTY);
  assert_int_equal(m.mid, 0x1234);
  static const uint8_t empty_extra[] = {0x40, 0x00, 0x12, 0x34, 0xff};
  assert_int_equal(m5_coap_parse_udp(empty_extra, sizeof empty_extra, &m), M5_EPROTO);
  static const uint8_t empty_token[] = {0x41, 0x00, 0x12, 0x34, 0x01};
  assert_int_equal(m5_coap_parse_udp(empty_token, sizeof empty_token, &m), M5_EPROTO);
  static const uint8_t marker_only[] = {0x40, 0x01, 0x00, 0x01, 0xff};
  assert_int_equal(m5_coap_parse_udp(marker_only, sizeof marker_only, &m), M5_EPROTO);
  static const uint8_t tkl9[] = {0x49, 0x01, 0, 1, 1, 2, 3, 4, 5, 6, 7, 8, 9};
  assert_int_equal(m5_coap_parse_udp(tkl9, sizeof tkl9, &m), M5_EPROTO);
  static const uint8_t version2[] = {0x80, 0x01, 0x00, 0x01};
  assert_int_equal(m5_coap_parse_udp(version2, sizeof version2, &m), M5_EPROTO);
  static const uint8_t delta15[] = {0x40, 0x01, 0x00, 0x01, 0xf1, 0x00};
  assert_int_equal(m5_coap_parse_udp(delta15, sizeof delta15, &m), M5_EPROTO);
  static const uint8_t len15[] = {0x40, 0x01, 0x00, 0x01, 0x1f, 0x00};
  assert_int_equal(m5_coap_parse_udp(len15, sizeof len15, &m), M5_EPROTO);
  /* Option number past 65535: delta 269 + 0xffff. */
  static const uint8_t numover[] = {0x40, 0x01, 0x00, 0x01, 0xe0, 0xff, 0xff};
  assert_int_equal(m5_coap_parse_udp(numover, sizeof numover, &m), M5_EPROTO);
  /* Every truncation of a valid message with options is refused, never over-read. */
  static const uint8_t full[] = {0x44, 0x02, 0x00, 0x07, 0xaa, 0xbb, 0xcc, 0xdd, 0xbd,
                                 0x01, 'a',  'b',  'c',  'd',  'e',  'f',  'g',  'h',
                                 'i',  'j',  'k',  'l',  'm',  'n',  0xd1, 0x02, 0x06};
  roundtrip_udp(full, sizeof full, &m);
  for (size_t cut = 0; cut < sizeof full; cut++) {
    uint8_t *t = malloc(cut ? cut : 1); /* exact-size copies so ASan sees any over-read */
    memcpy(t, full, cut);
    int rc = m5_coap_parse_udp(t, cut, &m);
    /* Cuts between token and options, or between two options, leave valid messages. */
    if (cut == 8 || cut == 24)
      assert_int_equal(rc, M5_OK);
    else
      assert_int_equal(rc, M5_EPROTO);
    free(t);
  }
  /* More options than M5_COAP_MAX_OPTS. */
  uint8_t many[4 + M5_COAP_MAX_OPTS + 1] = {0x40, 0x01, 0x00, 0x01};
  memset(many + 4, 0x10, M5_COAP_MAX_OPTS + 1); /* delta 1, length 0 each */
  assert_int_equal(m5_coap_parse_udp(many, sizeof many, &m), M5_ERANGE);
  assert_int_equal(m5_coap_parse_udp(many, sizeof many - 1, &m), M5_OK);
}

static void test_msg_helpers(void **state) {
  (void)state;
  m5_coap_msg_t m;
  memset(&m, 0, sizeof m);
  const uint8_t a = 'a', b = 'b', c = 'c';
  assert_int_equal(m5_coap_msg_add_opt(&m, 11, &a, 1), M5_OK);
  assert_int_equal(m5_coap_msg_add_opt(&m, 3, &b, 1), M5_OK);
  assert_int_equal(m5_coap_msg_add_opt(&m, 11, &c, 1), M5_OK);
  assert_int_equal(m.opts[0].num, 3);
  assert_int_equal(m.opts[1].val[0], 'a'); /* repeats keep their order */
  assert_int_equal(m.opts[2].val[0], 'c');
  assert_int_equal(m5_coap_msg_opt(&m, 11, 1)->val[0], 'c');
  uint8_t v[4];
  assert_int_equal(m5_coap_uint_encode(0, v), 0);
  assert_int_equal(m5_coap_uint_encode(255, v), 1);
  assert_int_equal(m5_coap_uint_encode(1152, v), 2);
  assert_int_equal(v[0], 0x04);
  assert_int_equal(v[1], 0x80);
  assert_int_equal(m5_coap_uint_encode(0x01000000, v), 4);
  m5_coap_opt_t five = {.num = 60, .len = 5, .val = (const uint8_t *)"\1\2\3\4\5"};
  uint32_t u;
  assert_int_equal(m5_coap_opt_uint(&five, &u), M5_ERANGE);
  char s[8];
  assert_string_equal(m5_coap_code_str(M5_COAP_NOT_FOUND, s, sizeof s), "4.04");
  assert_string_equal(m5_coap_code_str(M5_COAP_CONTINUE, s, sizeof s), "2.31");
  /* Out-of-order options cannot be encoded. */
  m.opts[0].num = 20;
  m5_buf_t out;
  m5_buf_init(&out, 0);
  assert_int_equal(m5_coap_encode_udp(&m, &out), M5_EINVAL);
  assert_int_equal(out.len, 0);
  m5_buf_free(&out);
}

/* ---- RFC 8323 framing ---- */

static void tcp_roundtrip(const uint8_t *x, size_t n, m5_coap_msg_t *m) {
  size_t used = 0, need = 0;
  assert_int_equal(m5_coap_parse_tcp(x, n, n, m, &used, &need), M5_OK);
  assert_int_equal(used, n);
  m5_buf_t b;
  m5_buf_init(&b, 0);
  assert_int_equal(m5_coap_encode_tcp(m, &b), M5_OK);
  assert_int_equal(b.len, n);
  assert_memory_equal(b.data, x, n);
  m5_buf_free(&b);
  /* A byte short: more is needed (the total is known once the Len extension is in). */
  assert_int_equal(m5_coap_parse_tcp(x, n - 1, n, m, &used, &need), M5_EAGAIN);
  assert_int_equal(need, n);
  /* Above the limit: refused before waiting for the rest. */
  assert_int_equal(m5_coap_parse_tcp(x, 6 < n ? 6 : n, n - 1, m, &used, &need), M5_ERANGE);
}

static uint8_t *tcp_with_payload(size_t plen, const uint8_t *hdr, size_t hlen, size_t *n) {
  uint8_t *x = malloc(hlen + 1 + 1 + plen);
  memcpy(x, hdr, hlen);
  size_t k = hlen;
  x[k++] = M5_COAP_POST;
  x[k++] = 0xff;
  memset(x + k, 'p', plen);
  *n = k + plen;
  return x;
}

static void test_tcp_len_classes(void **state) {
  (void)state;
  m5_coap_msg_t m;
  /* Len 0-12: CSM with Max-Message-Size 1152 (RFC 8323 §5.3.1). */
  static const uint8_t csm[] = {0x30, 0xe1, 0x22, 0x04, 0x80};
  tcp_roundtrip(csm, sizeof csm, &m);
  assert_int_equal(m.code, M5_COAP_CSM);
  assert_int_equal(m.opts[0].num, M5_COAP_OPT_CSM_MAX_MESSAGE_SIZE);
  /* Len 13: 13..268 bytes of options and payload (marker + 19 = 20 -> ext 7). */
  size_t n;
  static const uint8_t h13[] = {0xd0, 0x07};
  uint8_t *x = tcp_with_payload(19, h13, sizeof h13, &n);
  tcp_roundtrip(x, n, &m);
  assert_int_equal(m.payload_len, 19);
  free(x);
  /* Len 14: 269..65804 (marker + 299 = 300 -> ext 31). */
  static const uint8_t h14[] = {0xe0, 0x00, 0x1f};
  x = tcp_with_payload(299, h14, sizeof h14, &n);
  tcp_roundtrip(x, n, &m);
  assert_int_equal(m.payload_len, 299);
  free(x);
  /* Len 15: 65805 and more (marker + 69999 = 70000 -> ext 4195). */
  static const uint8_t h15[] = {0xf0, 0x00, 0x00, 0x10, 0x63};
  x = tcp_with_payload(69999, h15, sizeof h15, &n);
  tcp_roundtrip(x, n, &m);
  assert_int_equal(m.payload_len, 69999);
  free(x);
}

static void test_tcp_partial_and_malformed(void **state) {
  (void)state;
  m5_coap_msg_t m;
  size_t used = 99, need = 99;
  static const uint8_t h14[] = {0xe8, 0x00};
  /* No bytes, or the Len extension incomplete: total not known yet. */
  assert_int_equal(m5_coap_parse_tcp(h14, 0, 1000, &m, &used, &need), M5_EAGAIN);
  assert_int_equal(need, 0);
  assert_int_equal(m5_coap_parse_tcp(h14, 2, 1000, &m, &used, &need), M5_EAGAIN);
  assert_int_equal(need, 0);
  assert_int_equal(used, 0);
  static const uint8_t tkl9[] = {0x09, 0x01};
  assert_int_equal(m5_coap_parse_tcp(tkl9, sizeof tkl9, 1000, &m, &used, &need), M5_EPROTO);
  /* Len says 2 bytes of options: a marker with nothing after it. */
  static const uint8_t marker[] = {0x10, 0x02, 0xff};
  assert_int_equal(m5_coap_parse_tcp(marker, sizeof marker, 1000, &m, &used, &need), M5_EPROTO);
  /* Option length pointing past the frame. */
  static const uint8_t optover[] = {0x10, 0x01, 0xb5};
  assert_int_equal(m5_coap_parse_tcp(optover, sizeof optover, 1000, &m, &used, &need), M5_EPROTO);
  /* Two pipelined messages: one at a time. */
  static const uint8_t two[] = {0x00, 0xe2, 0x01, 0xe3, 0x7a};
  assert_int_equal(m5_coap_parse_tcp(two, sizeof two, 1000, &m, &used, &need), M5_OK);
  assert_int_equal(used, 2);
  assert_int_equal(m.code, M5_COAP_PING);
  assert_int_equal(m5_coap_parse_tcp(two + 2, 3, 1000, &m, &used, &need), M5_OK);
  assert_int_equal(m.code, M5_COAP_PONG);
  assert_int_equal(m.token[0], 0x7a);
  /* 4-byte Len at its maximum is refused by any sane limit, with no overflow. */
  static const uint8_t huge[] = {0xf8, 0xff, 0xff, 0xff, 0xff};
  assert_int_equal(m5_coap_parse_tcp(huge, sizeof huge, SIZE_MAX / 2, &m, &used, &need), M5_EAGAIN);
  assert_true(need > 0xffffffffu);
  assert_int_equal(m5_coap_parse_tcp(huge, sizeof huge, 1 << 20, &m, &used, &need), M5_ERANGE);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_udp_con_get_uri_path),
      cmocka_unit_test(test_udp_ack_piggybacked_with_token_and_payload),
      cmocka_unit_test(test_udp_option_extensions),
      cmocka_unit_test(test_udp_empty_and_malformed),
      cmocka_unit_test(test_msg_helpers),
      cmocka_unit_test(test_tcp_len_classes),
      cmocka_unit_test(test_tcp_partial_and_malformed),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
