/* Unit tests for the SMS gateway's content codecs (src/gateway/sms/sms_codec.h): GSM 03.38
 * default alphabet and extension table, UCS-2, 8-bit data, splitting into concatenated SMS
 * with each part's TP-UD within 140 octets, the concatenation UDH, delivery receipts. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "core/err.h"
#include "sms_codec.h"

static void test_gsm7_default_and_extension(void **state) {
  (void)state;
  /* "@£$ Ä€[x]" : default-table characters map to their septet, extension ones to 1B xx. */
  const char *in = "@\xC2\xA3$ \xC3\x84\xE2\x82\xAC[x]";
  uint8_t out[64], dc = 0xFF;
  size_t n = 0;
  assert_int_equal(m5_sms_encode((const uint8_t *)in, strlen(in), &dc, out, sizeof(out), &n),
                   M5_OK);
  assert_int_equal(dc, M5_SMS_DC_GSM7);
  const uint8_t want[] = {0x00, 0x01, 0x02, 0x20, 0x5B, 0x1B, 0x65, 0x1B, 0x3C, 'x', 0x1B, 0x3E};
  assert_int_equal(n, sizeof(want));
  assert_memory_equal(out, want, sizeof(want));
  /* And back: data_coding 0 read as GSM septets, unpacked. */
  uint8_t txt[64];
  size_t tl = 0;
  char why[128];
  assert_int_equal(m5_sms_decode(0, out, n, txt, sizeof(txt), &tl, why, sizeof(why)), M5_OK);
  assert_int_equal(tl, strlen(in));
  assert_memory_equal(txt, in, tl);
}

static void test_gsm7_all_septets_round_trip(void **state) {
  (void)state;
  /* Every septet but the escape decodes to UTF-8 that encodes back to itself. */
  for (unsigned s = 0; s < 128; s++) {
    if (s == 0x1B) continue;
    uint8_t sep = (uint8_t)s, txt[8], back[8], dc;
    size_t tl, bl;
    assert_int_equal(m5_sms_decode(0, &sep, 1, txt, sizeof(txt), &tl, NULL, 0), M5_OK);
    assert_int_equal(m5_sms_encode(txt, tl, &dc, back, sizeof(back), &bl), M5_OK);
    assert_int_equal(dc, M5_SMS_DC_GSM7);
    assert_int_equal(bl, 1);
    assert_int_equal(back[0], s);
  }
}

static void test_ucs2_when_one_char_does_not_fit(void **state) {
  (void)state;
  /* "a\u4e2d\U0001F600": CJK and an emoji: UTF-16BE with a surrogate pair. */
  const char *in = "a\xE4\xB8\xAD\xF0\x9F\x98\x80";
  uint8_t out[64], dc;
  size_t n;
  assert_int_equal(m5_sms_encode((const uint8_t *)in, strlen(in), &dc, out, sizeof(out), &n),
                   M5_OK);
  assert_int_equal(dc, M5_SMS_DC_UCS2);
  const uint8_t want[] = {0x00, 'a', 0x4E, 0x2D, 0xD8, 0x3D, 0xDE, 0x00};
  assert_int_equal(n, sizeof(want));
  assert_memory_equal(out, want, sizeof(want));
  uint8_t txt[64];
  size_t tl;
  assert_int_equal(m5_sms_decode(8, out, n, txt, sizeof(txt), &tl, NULL, 0), M5_OK);
  assert_int_equal(tl, strlen(in));
  assert_memory_equal(txt, in, tl);
  /* A lone surrogate from the SMSC becomes U+FFFD, not garbage; an odd length is refused. */
  const uint8_t lone[] = {0xD8, 0x3D, 0x00, 'b'};
  assert_int_equal(m5_sms_decode(8, lone, 4, txt, sizeof(txt), &tl, NULL, 0), M5_OK);
  assert_int_equal(tl, 4);
  assert_memory_equal(txt, "\xEF\xBF\xBD" "b", 4);
  char why[128] = "";
  assert_int_equal(m5_sms_decode(8, lone, 3, txt, sizeof(txt), &tl, why, sizeof(why)),
                   M5_EINVAL);
  assert_non_null(strstr(why, "odd length"));
}

static void test_binary_is_8bit_data(void **state) {
  (void)state;
  const uint8_t in[] = {0x00, 0xFF, 0xC3, 0x28, 0x80}; /* not UTF-8 */
  uint8_t out[16], dc;
  size_t n;
  assert_false(m5_sms_utf8_valid(in, sizeof(in)));
  assert_int_equal(m5_sms_encode(in, sizeof(in), &dc, out, sizeof(out), &n), M5_OK);
  assert_int_equal(dc, M5_SMS_DC_8BIT);
  assert_int_equal(n, sizeof(in));
  assert_memory_equal(out, in, n);
  /* Overlongs and encoded surrogates are not UTF-8 either. */
  assert_false(m5_sms_utf8_valid((const uint8_t *)"\xC0\xAF", 2));
  assert_false(m5_sms_utf8_valid((const uint8_t *)"\xED\xA0\x80", 3));
  assert_false(m5_sms_utf8_valid((const uint8_t *)"\xF4\x90\x80\x80", 4));
}

static void test_decode_refuses_8bit_in_gsm(void **state) {
  (void)state;
  const uint8_t in[] = {'h', 0xE9, 'i'};
  uint8_t out[16];
  size_t n;
  char why[128] = "";
  assert_int_equal(m5_sms_decode(0, in, 3, out, sizeof(out), &n, why, sizeof(why)), M5_EINVAL);
  assert_non_null(strstr(why, "not a GSM 7-bit septet"));
  assert_int_equal(m5_sms_decode(0x42, in, 3, out, sizeof(out), &n, why, sizeof(why)),
                   M5_EINVAL);
  assert_non_null(strstr(why, "not supported"));
  /* Latin-1 and 8-bit data are read too. */
  assert_int_equal(m5_sms_decode(3, in, 3, out, sizeof(out), &n, NULL, 0), M5_OK);
  assert_int_equal(n, 4);
  assert_memory_equal(out, "h\xC3\xA9i", 4);
  assert_int_equal(m5_sms_decode(4, in, 3, out, sizeof(out), &n, NULL, 0), M5_OK);
  assert_memory_equal(out, in, 3);
}

static void test_split_limits(void **state) {
  (void)state;
  uint8_t u[2000];
  memset(u, 'a', sizeof(u));
  m5_sms_seg_t seg[20];
  /* 160 septets: one SMS; 161: two of at most 153. */
  assert_int_equal(m5_sms_split(M5_SMS_DC_GSM7, u, 160, seg, 20), 1);
  assert_int_equal(m5_sms_split(M5_SMS_DC_GSM7, u, 161, seg, 20), 2);
  assert_int_equal(seg[0].len, 153);
  assert_int_equal(seg[1].off, 153);
  assert_int_equal(seg[1].len, 8);
  /* Every part, with its UDH, fits in 140 octets of TP-UD once packed. */
  assert_int_equal(m5_sms_tpud_octets(M5_SMS_DC_GSM7, 0, 160), 140);
  assert_int_equal(m5_sms_tpud_octets(M5_SMS_DC_GSM7, 6, 153), 140);
  assert_true(m5_sms_tpud_octets(M5_SMS_DC_GSM7, 6, 154) > 140);
  int k = m5_sms_split(M5_SMS_DC_UCS2, u, 1000, seg, 20);
  assert_int_equal(k, 8);
  for (int i = 0; i < k; i++)
    assert_true(m5_sms_tpud_octets(M5_SMS_DC_UCS2, 6, seg[i].len) <= 140);
  /* 8-bit: 140 in one, 141 in two of 134. */
  assert_int_equal(m5_sms_split(M5_SMS_DC_8BIT, u, 140, seg, 20), 1);
  assert_int_equal(m5_sms_split(M5_SMS_DC_8BIT, u, 141, seg, 20), 2);
  assert_int_equal(seg[0].len, 134);
  /* More parts than allowed. */
  assert_int_equal(m5_sms_split(M5_SMS_DC_GSM7, u, 2000, seg, 3), M5_ERANGE);
}

static void test_split_keeps_escapes_and_surrogates(void **state) {
  (void)state;
  uint8_t u[400];
  memset(u, 'a', sizeof(u));
  u[152] = 0x1B, u[153] = 0x65; /* a euro sign across the 153 boundary */
  m5_sms_seg_t seg[4];
  assert_int_equal(m5_sms_split(M5_SMS_DC_GSM7, u, 200, seg, 4), 2);
  assert_int_equal(seg[0].len, 152);
  assert_int_equal(seg[1].off, 152);
  assert_int_equal(u[seg[1].off], 0x1B);
  /* UCS-2: a surrogate pair across 134 octets moves whole to the next part. */
  for (size_t i = 0; i < 400; i += 2)
    u[i] = 0x00, u[i + 1] = 'b';
  u[132] = 0xD8, u[133] = 0x3D, u[134] = 0xDE, u[135] = 0x00;
  assert_int_equal(m5_sms_split(M5_SMS_DC_UCS2, u, 300, seg, 4), 3);
  assert_int_equal(seg[0].len, 132);
  assert_int_equal(u[seg[1].off], 0xD8);
}

static void test_udh(void **state) {
  (void)state;
  uint8_t h[6];
  m5_sms_udh_concat(h, 0x42, 3, 2);
  const uint8_t want[] = {5, 0, 3, 0x42, 3, 2};
  assert_memory_equal(h, want, 6);
  uint8_t sm[16] = {5, 0, 3, 0x42, 3, 2, 'h', 'i'};
  size_t hl;
  m5_sms_concat_t c;
  assert_int_equal(m5_sms_udh_parse(sm, 8, &hl, &c, NULL, 0), M5_OK);
  assert_int_equal(hl, 6);
  assert_true(c.present);
  assert_int_equal(c.ref, 0x42);
  assert_int_equal(c.total, 3);
  assert_int_equal(c.seq, 2);
  /* 16-bit reference, after a port addressing IE that is skipped. */
  const uint8_t sm16[] = {12, 0x05, 4, 0x0B, 0x84, 0x23, 0xF0, 0x08, 4, 0x12, 0x34, 2, 1, 'x'};
  assert_int_equal(m5_sms_udh_parse(sm16, sizeof(sm16), &hl, &c, NULL, 0), M5_OK);
  assert_int_equal(hl, 13);
  assert_int_equal(c.ref, 0x1234);
  assert_int_equal(c.total, 2);
  assert_int_equal(c.seq, 1);
  /* Malformed: header past the message, IE past the header, part 0, part 4 of 3. */
  char why[128];
  const uint8_t b1[] = {9, 0, 3, 1, 2, 1};
  assert_int_equal(m5_sms_udh_parse(b1, sizeof(b1), &hl, &c, why, sizeof(why)), M5_EINVAL);
  assert_non_null(strstr(why, "overruns the 6-octet message"));
  const uint8_t b2[] = {3, 0, 3, 1, 'a'};
  assert_int_equal(m5_sms_udh_parse(b2, sizeof(b2), &hl, &c, why, sizeof(why)), M5_EINVAL);
  assert_non_null(strstr(why, "overruns the header"));
  const uint8_t b3[] = {5, 0, 3, 1, 3, 0};
  assert_int_equal(m5_sms_udh_parse(b3, sizeof(b3), &hl, &c, why, sizeof(why)), M5_EINVAL);
  const uint8_t b4[] = {5, 0, 3, 1, 3, 4};
  assert_int_equal(m5_sms_udh_parse(b4, sizeof(b4), &hl, &c, why, sizeof(why)), M5_EINVAL);
  assert_non_null(strstr(why, "part 4 of 3"));
  assert_int_equal(m5_sms_udh_parse(b4, 0, &hl, &c, why, sizeof(why)), M5_EINVAL);
}

static void test_receipt_text(void **state) {
  (void)state;
  const char *t = "id:0a1b2c sub:001 dlvrd:001 submit date:2612071830 done date:2612071831 "
                  "stat:DELIVRD err:000 text:hello";
  char id[66], stat[16], err[8], why[128];
  m5_sms_rcpt_state_t st;
  assert_int_equal(m5_sms_receipt_parse((const uint8_t *)t, strlen(t), id, sizeof(id), &st,
                                        stat, sizeof(stat), err, sizeof(err), why, sizeof(why)),
                   M5_OK);
  assert_string_equal(id, "0a1b2c");
  assert_int_equal(st, M5_SMS_RCPT_DELIVERED);
  assert_string_equal(err, "000");
  const char *u = "id:77 stat:UNDELIV err:001";
  assert_int_equal(m5_sms_receipt_parse((const uint8_t *)u, strlen(u), id, sizeof(id), &st, stat,
                                        sizeof(stat), err, sizeof(err), why, sizeof(why)),
                   M5_OK);
  assert_int_equal(st, M5_SMS_RCPT_FAILED);
  const char *v = "id:77 stat:ENROUTE";
  assert_int_equal(m5_sms_receipt_parse((const uint8_t *)v, strlen(v), id, sizeof(id), &st, stat,
                                        sizeof(stat), err, sizeof(err), why, sizeof(why)),
                   M5_OK);
  assert_int_equal(st, M5_SMS_RCPT_PENDING);
  const char *w = "sub:001 stat:DELIVRD";
  assert_int_equal(m5_sms_receipt_parse((const uint8_t *)w, strlen(w), id, sizeof(id), &st, stat,
                                        sizeof(stat), err, sizeof(err), why, sizeof(why)),
                   M5_EINVAL);
  assert_non_null(strstr(why, "no id:"));
  const char *x = "id:1 stat:WHATEVER";
  assert_int_equal(m5_sms_receipt_parse((const uint8_t *)x, strlen(x), id, sizeof(id), &st, stat,
                                        sizeof(stat), err, sizeof(err), why, sizeof(why)),
                   M5_EINVAL);
  assert_int_equal(m5_sms_rcpt_from_message_state(2), M5_SMS_RCPT_DELIVERED);
  assert_int_equal(m5_sms_rcpt_from_message_state(5), M5_SMS_RCPT_FAILED);
  assert_int_equal(m5_sms_rcpt_from_message_state(1), M5_SMS_RCPT_PENDING);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_gsm7_default_and_extension),
      cmocka_unit_test(test_gsm7_all_septets_round_trip),
      cmocka_unit_test(test_ucs2_when_one_char_does_not_fit),
      cmocka_unit_test(test_binary_is_8bit_data),
      cmocka_unit_test(test_decode_refuses_8bit_in_gsm),
      cmocka_unit_test(test_split_limits),
      cmocka_unit_test(test_split_keeps_escapes_and_surrogates),
      cmocka_unit_test(test_udh),
      cmocka_unit_test(test_receipt_text),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
