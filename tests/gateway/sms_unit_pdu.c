/* Unit tests for the SMS gateway's SMPP framing and checks (src/gateway/sms/smpp_pdu.h):
 * what the SMSC sends is bounded and checked before libsmpp34 reads it; the worst PDU the
 * checks let through keeps the library's fixed log buffer far from full; a malformed PDU the
 * library refuses leaks nothing (ASan's leak check runs at exit). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "core/err.h"
#include "smpp_pdu.h"

typedef struct {
  uint8_t b[4096];
  size_t n;
} pdu_t;

static uint8_t chk[M5_SMPP_MAX_PDU]; /* what the checks hand to the library */

static void put32(pdu_t *p, uint32_t v) {
  p->b[p->n++] = (uint8_t)(v >> 24), p->b[p->n++] = (uint8_t)(v >> 16);
  p->b[p->n++] = (uint8_t)(v >> 8), p->b[p->n++] = (uint8_t)v;
}
static void put8(pdu_t *p, uint8_t v) { p->b[p->n++] = v; }
static void putstr(pdu_t *p, const char *s) {
  size_t l = strlen(s) + 1;
  memcpy(p->b + p->n, s, l);
  p->n += l;
}
static void fix_len(pdu_t *p) {
  uint32_t v = (uint32_t)p->n;
  p->b[0] = (uint8_t)(v >> 24), p->b[1] = (uint8_t)(v >> 16), p->b[2] = (uint8_t)(v >> 8),
  p->b[3] = (uint8_t)v;
}

/* A deliver_sm with the longest strings and short message allowed, then tlvs optional
 * parameters (message_state, 1 octet, the shortest). */
static void deliver_sm(pdu_t *p, const char *src, unsigned sm_len, unsigned tlvs) {
  p->n = 0;
  put32(p, 0), put32(p, DELIVER_SM), put32(p, 0), put32(p, 7);
  putstr(p, "CMT12"), put8(p, 1), put8(p, 1), putstr(p, src), put8(p, 1), put8(p, 1);
  putstr(p, "12345678901234567890"), put8(p, 0), put8(p, 0), put8(p, 0);
  putstr(p, ""), putstr(p, ""), put8(p, 0), put8(p, 0), put8(p, 0), put8(p, 0);
  put8(p, (uint8_t)sm_len);
  for (unsigned i = 0; i < sm_len; i++)
    put8(p, 'x');
  for (unsigned i = 0; i < tlvs; i++) {
    put8(p, 0x04), put8(p, 0x27), put8(p, 0), put8(p, 1), put8(p, 2);
  }
  fix_len(p);
}

static void test_header_bounds(void **state) {
  (void)state;
  m5_smpp_hdr_t h;
  pdu_t p = {.n = 0};
  put32(&p, 16), put32(&p, ENQUIRE_LINK), put32(&p, 0);
  assert_int_equal(m5_smpp_hdr(p.b, p.n, &h), M5_EAGAIN);
  put32(&p, 9);
  assert_int_equal(m5_smpp_hdr(p.b, p.n, &h), M5_OK);
  assert_int_equal(h.id, ENQUIRE_LINK);
  assert_int_equal(h.seq, 9);
  p.b[3] = 15;
  assert_int_equal(m5_smpp_hdr(p.b, p.n, &h), M5_EPROTO);
  p.b[0] = 0x7F, p.b[3] = 16; /* 2 GB */
  assert_int_equal(m5_smpp_hdr(p.b, p.n, &h), M5_EPROTO);
}

static void test_deliver_sm_checked_and_unpacked(void **state) {
  (void)state;
  pdu_t p;
  deliver_sm(&p, "491701234567", 5, 1);
  char why[256] = "";
  assert_int_equal(m5_smpp_check_deliver_sm(p.b, p.n, chk, why, sizeof(why)), (int)p.n);
  deliver_sm_t d;
  memset(&d, 0, sizeof(d));
  assert_int_equal(m5_smpp_unpack(DELIVER_SM, chk, p.n, &d, why, sizeof(why)), M5_OK);
  assert_string_equal((const char *)d.source_addr, "491701234567");
  assert_int_equal(d.sm_length, 5);
  const tlv_t *t = m5_smpp_tlv(d.tlv, TLVID_message_state);
  assert_non_null(t);
  assert_int_equal(t->value.val08, 2);
  assert_int_equal(m5_smpp_lib_blocks(), 1);
  m5_smpp_unpack_end();
  assert_int_equal(m5_smpp_lib_blocks(), 0);
}

static void test_malformed_deliver_sm_refused(void **state) {
  (void)state;
  pdu_t p;
  char why[256];
  /* sm_length past the end */
  deliver_sm(&p, "4917", 5, 0);
  p.n -= 2;
  fix_len(&p);
  assert_int_equal(m5_smpp_check_deliver_sm(p.b, p.n, chk, why, sizeof(why)), M5_EPROTO);
  assert_non_null(strstr(why, "sm_length 5"));
  /* a source_addr without its NUL within 21 octets */
  deliver_sm(&p, "4917", 5, 0);
  memset(p.b + 16 + 6 + 2, 'A', 30);
  assert_int_equal(m5_smpp_check_deliver_sm(p.b, p.n, chk, why, sizeof(why)), M5_EPROTO);
  assert_non_null(strstr(why, "source_addr"));
  /* a truncated optional parameter */
  deliver_sm(&p, "4917", 5, 1);
  p.n -= 1;
  fix_len(&p);
  assert_int_equal(m5_smpp_check_deliver_sm(p.b, p.n, chk, why, sizeof(why)), M5_EPROTO);
  assert_non_null(strstr(why, "optional parameter"));
  /* too many optional parameters */
  deliver_sm(&p, "4917", 5, M5_SMPP_MAX_TLVS + 1);
  assert_int_equal(m5_smpp_check_deliver_sm(p.b, p.n, chk, why, sizeof(why)), M5_EPROTO);
  assert_non_null(strstr(why, "more than"));
  /* A kept optional parameter of the wrong size. */
  deliver_sm(&p, "4917", 5, 0);
  put8(&p, 0x04), put8(&p, 0x27), put8(&p, 0), put8(&p, 2), put8(&p, 2), put8(&p, 2);
  fix_len(&p);
  assert_int_equal(m5_smpp_check_deliver_sm(p.b, p.n, chk, why, sizeof(why)), M5_EPROTO);
  assert_non_null(strstr(why, "0x0427: length 2 (1..1)"));
  /* Passes the structure check, refused by the library (TON 9): nothing leaks. */
  deliver_sm(&p, "4917", 5, 3);
  p.b[16 + 6] = 9;
  int cl = m5_smpp_check_deliver_sm(p.b, p.n, chk, why, sizeof(why));
  assert_int_equal(cl, (int)p.n);
  deliver_sm_t d;
  memset(&d, 0, sizeof(d));
  assert_int_equal(m5_smpp_unpack(DELIVER_SM, chk, (size_t)cl, &d, why, sizeof(why)), M5_EPROTO);
  m5_smpp_unpack_end();
  assert_int_equal(m5_smpp_lib_blocks(), 0);
  /* The library refusing in the middle of the optional parameters (a receipted_message_id of
   * 70 octets, above its 65; the checks never let one through, this calls it directly): it
   * frees none of them, we free all three. */
  deliver_sm(&p, "4917", 5, 2);
  put8(&p, 0x00), put8(&p, 0x1E), put8(&p, 0), put8(&p, 70);
  for (int i = 0; i < 70; i++)
    put8(&p, 'a');
  fix_len(&p);
  assert_int_equal(m5_smpp_check_deliver_sm(p.b, p.n, chk, why, sizeof(why)), M5_EPROTO);
  memset(&d, 0, sizeof(d));
  assert_int_equal(m5_smpp_unpack(DELIVER_SM, p.b, p.n, &d, why, sizeof(why)), M5_EPROTO);
  assert_int_equal(m5_smpp_lib_blocks(), 3);
  m5_smpp_unpack_end();
  assert_int_equal(m5_smpp_lib_blocks(), 0);
}

static void test_unknown_optional_parameters_ignored(void **state) {
  (void)state;
  /* A vendor's optional parameter (0x1401), and user_message_reference (0x0204, 2 octets in
   * SMPP 3.4) sent with a 1-octet length: the library reads its own 2 octets whatever the
   * length says and loses its place, so it refuses the PDU. Neither is one the adapter reads:
   * both are left out of the library's copy, which it accepts. */
  pdu_t p;
  deliver_sm(&p, "4917", 5, 0);
  put8(&p, 0x14), put8(&p, 0x01), put8(&p, 0), put8(&p, 3), put8(&p, 'v'), put8(&p, 'n'),
      put8(&p, 'd');
  put8(&p, 0x02), put8(&p, 0x04), put8(&p, 0), put8(&p, 1), put8(&p, 7);
  put8(&p, 0x04), put8(&p, 0x27), put8(&p, 0), put8(&p, 1), put8(&p, 2);
  fix_len(&p);
  char why[256];
  deliver_sm_t d;
  memset(&d, 0, sizeof(d));
  assert_int_equal(m5_smpp_unpack(DELIVER_SM, p.b, p.n, &d, why, sizeof(why)), M5_EPROTO);
  m5_smpp_unpack_end();
  int cl = m5_smpp_check_deliver_sm(p.b, p.n, chk, why, sizeof(why));
  assert_int_equal(cl, (int)p.n - 12);
  m5_smpp_hdr_t h;
  assert_int_equal(m5_smpp_hdr(chk, (size_t)cl, &h), M5_OK);
  assert_int_equal(h.len, (uint32_t)cl);
  memset(&d, 0, sizeof(d));
  assert_int_equal(m5_smpp_unpack(DELIVER_SM, chk, (size_t)cl, &d, why, sizeof(why)), M5_OK);
  const tlv_t *t = m5_smpp_tlv(d.tlv, TLVID_message_state);
  assert_non_null(t);
  assert_int_equal(t->value.val08, 2);
  assert_null(m5_smpp_tlv(d.tlv, 0x1401));
  m5_smpp_unpack_end();
  /* Fifty of them are fine (they never reach the library and its log). */
  deliver_sm(&p, "4917", 5, 0);
  for (int i = 0; i < 50; i++)
    put8(&p, 0x14), put8(&p, 0x02), put8(&p, 0), put8(&p, 1), put8(&p, 0);
  fix_len(&p);
  assert_int_equal(m5_smpp_check_deliver_sm(p.b, p.n, chk, why, sizeof(why)), (int)p.n - 250);
}

static void test_worst_case_library_log_bounded(void **state) {
  (void)state;
  /* The largest deliver_sm the checks let through: longest strings, 254-octet message,
   * M5_SMPP_MAX_TLVS optional parameters. The library's log must stay well inside its
   * 2,048 octets (past them its running length goes negative and it overflows). */
  pdu_t p;
  deliver_sm(&p, "12345678901234567890", 254, M5_SMPP_MAX_TLVS);
  char why[256];
  int cl = m5_smpp_check_deliver_sm(p.b, p.n, chk, why, sizeof(why));
  assert_int_equal(cl, (int)p.n);
  deliver_sm_t d;
  memset(&d, 0, sizeof(d));
  assert_int_equal(m5_smpp_unpack(DELIVER_SM, chk, (size_t)cl, &d, why, sizeof(why)), M5_OK);
  size_t used = m5_smpp_lib_log_len();
  print_message("libsmpp34 log: %zu of 2048 octets for the worst deliver_sm\n", used);
  m5_smpp_unpack_end();
  assert_true(used < 1800);
}

static void test_pack_round_trip(void **state) {
  (void)state;
  submit_sm_t m;
  memset(&m, 0, sizeof(m));
  m.command_id = SUBMIT_SM;
  m.sequence_number = 42;
  m.source_addr_ton = TON_Alphanumeric;
  strcpy((char *)m.source_addr, "MSGIN5G");
  m.dest_addr_ton = TON_International, m.dest_addr_npi = NPI_ISDN_E163_E164;
  strcpy((char *)m.destination_addr, "491701234567");
  m.esm_class = SMPP34_UDHI_IND;
  m.data_coding = 8;
  m.sm_length = 3;
  memcpy(m.short_message, "\x00\x41\x42", 3);
  uint8_t out[512];
  int n = m5_smpp_pack(SUBMIT_SM, &m, out, sizeof(out));
  assert_true(n > 16);
  m5_smpp_hdr_t h;
  assert_int_equal(m5_smpp_hdr(out, (size_t)n, &h), M5_OK);
  assert_int_equal(h.len, (uint32_t)n);
  assert_int_equal(h.seq, 42);
  uint8_t e[16];
  m5_smpp_hdr_only(e, GENERIC_NACK, ESME_RINVCMDLEN, 5);
  assert_int_equal(m5_smpp_hdr(e, 16, &h), M5_OK);
  assert_int_equal(h.status, ESME_RINVCMDLEN);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_header_bounds),
      cmocka_unit_test(test_deliver_sm_checked_and_unpacked),
      cmocka_unit_test(test_malformed_deliver_sm_refused),
      cmocka_unit_test(test_unknown_optional_parameters_ignored),
      cmocka_unit_test(test_worst_case_library_log_bounded),
      cmocka_unit_test(test_pack_round_trip),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
