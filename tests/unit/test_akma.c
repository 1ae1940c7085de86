/* Unit tests for src/lib/crypto/akma.c: TS 33.535 Annex A keys against the regression vectors
 * of msgin5g-security.md §11.3 (chains A and B), the A-KID / realm text forms of
 * architecture §4, the TS 33.220 Annex H Ua* identifiers and the input checks. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/err.h"
#include "crypto/akma.h"
#include "crypto/codec.h"
#include "crypto/kdf.h"

#define FQDN "msgin5g.example.org"

static void assert_hex(const uint8_t *got, size_t n, const char *want) {
  char text[2 * 64 + 1];
  assert_true(n <= 64);
  assert_int_equal(m5_hex_encode(got, n, text, sizeof text), M5_OK);
  assert_string_equal(text, want);
}

static void chain_a_kausf(uint8_t kausf[M5_AKMA_KEY_LEN]) {
  for (int i = 0; i < M5_AKMA_KEY_LEN; i++)
    kausf[i] = (uint8_t)i;
}

/* §11.3 chain A: K_AKMA, A-TID, its base64url text and the A-KID built from it. */
static void test_chain_a_kakma_atid_akid(void **state) {
  (void)state;
  uint8_t kausf[32], kakma[32], atid[32];
  chain_a_kausf(kausf);
  assert_int_equal(m5_akma_kakma(kausf, "001010123456789", kakma), M5_OK);
  assert_hex(kakma, 32, "3dd5f8b66d40a12d31b8d4856eb5b2c14f9b013bcfccde61dfbbd9185a7fcb3c");
  assert_int_equal(m5_akma_atid(kausf, "001010123456789", atid), M5_OK);
  assert_hex(atid, 32, "bd7d28460fa2c761ce7b49d6b56613f2cf8332d9efbedb7c727a3362109eab2c");

  char b64[64];
  assert_int_equal(m5_b64url_encode(atid, 32, b64, sizeof b64), M5_OK);
  assert_string_equal(b64, "vX0oRg-ix2HOe0nWtWYT8s-DMtnvvtt8cnozYhCeqyw");

  char realm[128], akid[M5_AKMA_AKID_MAX];
  assert_int_equal(m5_akma_realm_from_supi("001010123456789", 2, realm, sizeof realm), M5_OK);
  assert_int_equal(m5_akma_akid(M5_AKMA_DEFAULT_RID, atid, realm, akid, sizeof akid), M5_OK);
  assert_string_equal(akid, "0000.vX0oRg-ix2HOe0nWtWYT8s-DMtnvvtt8cnozYhCeqyw"
                            "@5gc.mnc001.mcc001.3gppnetwork.org");
}

/* §11.3 chain A: every K_AF row (FQDN msgin5g.example.org). */
static void test_chain_a_kaf(void **state) {
  (void)state;
  uint8_t kausf[32], kakma[32], ua[M5_AKMA_UA_LEN], kaf[32];
  chain_a_kausf(kausf);
  assert_int_equal(m5_akma_kakma(kausf, "001010123456789", kakma), M5_OK);

  m5_akma_ua_tls13(ua);
  assert_int_equal(m5_akma_kaf(kakma, FQDN, ua, kaf), M5_OK);
  assert_hex(kaf, 32, "9767f04bef5e812e0283e129e131730a493d3852c6b0208a66b20885aea794e7");

  m5_akma_ua_tls12(0xd001, ua);
  assert_int_equal(m5_akma_kaf(kakma, FQDN, ua, kaf), M5_OK);
  assert_hex(kaf, 32, "4dfb4ac28aaa2a6ea54c0898a2096f0d2fb81016b747d94ebe39c15edd76a7e4");

  m5_akma_ua_tls12(0x00a8, ua);
  assert_int_equal(m5_akma_kaf(kakma, FQDN, ua, kaf), M5_OK);
  assert_hex(kaf, 32, "7aead775f4a531d4f1583f49165c05070575fea0ff3f28d7bf8141fae25f7bbf");

  assert_int_equal(m5_akma_ua_parse_hex("0100000002", ua), M5_OK); /* HTTP Digest */
  assert_int_equal(m5_akma_kaf(kakma, FQDN, ua, kaf), M5_OK);
  assert_hex(kaf, 32, "25feb3853a10cedfbc37fa638852ea53aa984a5a539197aeadf176f33c1b6604");
}

/* The K_AF S string of §11.3 (TLS 1.3 row), i.e. AF_ID = FQDN || raw Ua* octets, L0 = 00 18. */
static void test_kaf_s_encoding(void **state) {
  (void)state;
  uint8_t kakma[32], ua[M5_AKMA_UA_LEN], kaf[32], s[64], via_hmac[32];
  memset(kakma, 0x33, sizeof kakma);
  m5_akma_ua_tls13(ua);
  size_t s_len = 0;
  assert_int_equal(
      m5_hex_decode("826d7367696e35672e6578616d706c652e6f726701000000070018", s, sizeof s, &s_len),
      M5_OK);
  assert_int_equal(m5_akma_kaf(kakma, FQDN, ua, kaf), M5_OK);
  assert_int_equal(m5_hmac_sha256(kakma, 32, s, s_len, via_hmac), M5_OK);
  assert_memory_equal(kaf, via_hmac, 32);
}

/* §11.3 chain B: K_AUSF from the RFC 5448 case 1 CK/IK (TS 33.501 A.2, FC 0x6A), then AKMA. */
static void test_chain_b(void **state) {
  (void)state;
  uint8_t ckik[32], sqn[6], kausf[32], kakma[32], atid[32], ua[M5_AKMA_UA_LEN], kaf[32];
  size_t n;
  assert_int_equal(m5_hex_decode("5349fbe098649f948f5d2e973a81c00f"
                                 "9744871ad32bf9bbd1dd5ce54e3e2e5a",
                                 ckik, sizeof ckik, &n),
                   M5_OK);
  assert_int_equal(m5_hex_decode("bb52e91c747a", sqn, sizeof sqn, &n), M5_OK);
  static const char snn[] = "5G:mnc001.mcc001.3gppnetwork.org";
  const m5_kdf_param_t p[2] = {{(const uint8_t *)snn, sizeof snn - 1}, {sqn, 6}};
  assert_int_equal(m5_kdf(ckik, sizeof ckik, 0x6a, p, 2, kausf), M5_OK);
  assert_hex(kausf, 32, "6cfaa30e52973c7a72a2577cadc7358c8cf18ce0719e88d4b6f3b6d3f1e0c505");

  assert_int_equal(m5_akma_kakma(kausf, "001010000000001", kakma), M5_OK);
  assert_hex(kakma, 32, "c5588cfe145a027cfc26c9078142f231c953d62491e6a9a4f9453130d7b7f5b1");
  assert_int_equal(m5_akma_atid(kausf, "001010000000001", atid), M5_OK);
  assert_hex(atid, 32, "d1fd2da1214c3578f9d3ae48afafd64508756d55d8aff692b127d5ca08194324");
  m5_akma_ua_tls13(ua);
  assert_int_equal(m5_akma_kaf(kakma, FQDN, ua, kaf), M5_OK);
  assert_hex(kaf, 32, "6a9ab64633ab2fafeef752aea4963629c15fa240b46e772d8cfa22e640bae714");
}

/* §3.5: bare IMSI digits only; the SBI "imsi-" form would silently give other keys. */
static void test_supi_checks(void **state) {
  (void)state;
  assert_int_equal(m5_akma_supi_valid("001010123456789"), M5_OK);
  assert_int_equal(m5_akma_supi_valid("00101"), M5_OK);
  assert_int_equal(m5_akma_supi_valid("0010"), M5_EINVAL);
  assert_int_equal(m5_akma_supi_valid("0010101234567890"), M5_EINVAL); /* 16 digits */
  assert_int_equal(m5_akma_supi_valid("imsi-001010123456789"), M5_EINVAL);
  assert_int_equal(m5_akma_supi_valid("00101012345678a"), M5_EINVAL);
  assert_int_equal(m5_akma_supi_valid(""), M5_EINVAL);
  assert_int_equal(m5_akma_supi_valid(NULL), M5_EINVAL);

  uint8_t kausf[32], out[32];
  chain_a_kausf(kausf);
  assert_int_equal(m5_akma_kakma(kausf, "imsi-001010123456789", out), M5_EINVAL);
  assert_int_equal(m5_akma_atid(kausf, "imsi-001010123456789", out), M5_EINVAL);
  assert_int_equal(m5_akma_kakma(NULL, "001010123456789", out), M5_EINVAL);
  assert_int_equal(m5_akma_atid(kausf, "001010123456789", NULL), M5_EINVAL);
}

static void test_realm(void **state) {
  (void)state;
  char realm[64];
  /* 2-digit MNC is zero-padded: MCC 001, MNC 01 -> mnc001. */
  assert_int_equal(m5_akma_realm_from_supi("310150123456789", 2, realm, sizeof realm), M5_OK);
  assert_string_equal(realm, "5gc.mnc015.mcc310.3gppnetwork.org");
  /* 3-digit MNC taken as is: MCC 310, MNC 150. */
  assert_int_equal(m5_akma_realm_from_supi("310150123456789", 3, realm, sizeof realm), M5_OK);
  assert_string_equal(realm, "5gc.mnc150.mcc310.3gppnetwork.org");
  assert_int_equal(m5_akma_realm_from_supi("001010123456789", 2, realm, sizeof realm), M5_OK);
  assert_string_equal(realm, "5gc.mnc001.mcc001.3gppnetwork.org");

  assert_int_equal(m5_akma_realm_from_supi("001010123456789", 1, realm, sizeof realm), M5_EINVAL);
  assert_int_equal(m5_akma_realm_from_supi("001010123456789", 4, realm, sizeof realm), M5_EINVAL);
  assert_int_equal(m5_akma_realm_from_supi("00101", 3, realm, sizeof realm), M5_EINVAL);
  assert_int_equal(m5_akma_realm_from_supi("imsi-00101", 2, realm, sizeof realm), M5_EINVAL);
  /* 33 characters + NUL do not fit in 33 octets. */
  assert_int_equal(m5_akma_realm_from_supi("001010123456789", 2, realm, 33), M5_ERANGE);
  assert_int_equal(m5_akma_realm_from_supi("001010123456789", 2, realm, 34), M5_OK);
}

static void test_akid(void **state) {
  (void)state;
  uint8_t atid[32];
  memset(atid, 0xff, sizeof atid);
  char akid[M5_AKMA_AKID_MAX];
  assert_int_equal(m5_akma_akid("12", atid, "5gc.mnc150.mcc310.3gppnetwork.org", akid, sizeof akid),
                   M5_OK);
  assert_string_equal(akid, "12.__________________________________________8"
                            "@5gc.mnc150.mcc310.3gppnetwork.org");

  assert_int_equal(m5_akma_rid_valid("0"), M5_OK);
  assert_int_equal(m5_akma_rid_valid("9999"), M5_OK);
  assert_int_equal(m5_akma_rid_valid(""), M5_EINVAL);
  assert_int_equal(m5_akma_rid_valid("12345"), M5_EINVAL);
  assert_int_equal(m5_akma_rid_valid("12a"), M5_EINVAL);
  assert_int_equal(m5_akma_rid_valid(NULL), M5_EINVAL);
  assert_int_equal(m5_akma_akid("00000", atid, "realm.example", akid, sizeof akid), M5_EINVAL);
  assert_int_equal(m5_akma_akid("0000", atid, "bad realm", akid, sizeof akid), M5_EINVAL);
  assert_int_equal(m5_akma_akid("0000", atid, "", akid, sizeof akid), M5_EINVAL);

  /* "0000." + 43 + "@" + "a.b" = 52 characters: needs 53 octets. */
  assert_int_equal(m5_akma_akid("0000", atid, "a.b", akid, 52), M5_ERANGE);
  assert_int_equal(m5_akma_akid("0000", atid, "a.b", akid, 53), M5_OK);
  /* A valid but long realm would make the NAI exceed M5_AKMA_AKID_MAX even with room. */
  char realm[254], big[512];
  memset(realm, 'a', sizeof realm - 1);
  realm[sizeof realm - 1] = '\0';
  for (size_t i = 60; i < sizeof realm - 1; i += 61)
    realm[i] = '.';
  assert_int_equal(m5_akma_fqdn_valid(realm), M5_OK);
  assert_int_equal(m5_akma_akid("0000", atid, realm, big, sizeof big), M5_ERANGE);
}

static void test_ua_ids(void **state) {
  (void)state;
  uint8_t ua[M5_AKMA_UA_LEN];
  m5_akma_ua_tls13(ua);
  assert_hex(ua, 5, "0100000007");
  m5_akma_ua_tls12(0x00a8, ua);
  assert_hex(ua, 5, "01000100a8");
  m5_akma_ua_tls12(0xccac, ua);
  assert_hex(ua, 5, "010001ccac");
  assert_int_equal(m5_akma_ua_parse_hex("010001D001", ua), M5_OK);
  assert_hex(ua, 5, "010001d001");

  uint8_t keep[M5_AKMA_UA_LEN] = {9, 9, 9, 9, 9};
  memcpy(ua, keep, sizeof ua);
  assert_int_equal(m5_akma_ua_parse_hex("01000000", ua), M5_EINVAL);     /* 4 octets */
  assert_int_equal(m5_akma_ua_parse_hex("010000000700", ua), M5_EINVAL); /* 6 octets */
  assert_int_equal(m5_akma_ua_parse_hex("010000000g", ua), M5_EINVAL);
  assert_int_equal(m5_akma_ua_parse_hex("tls13", ua), M5_EINVAL);
  assert_int_equal(m5_akma_ua_parse_hex(NULL, ua), M5_EINVAL);
  assert_memory_equal(ua, keep, sizeof keep);
}

static void test_fqdn(void **state) {
  (void)state;
  assert_int_equal(m5_akma_fqdn_valid(FQDN), M5_OK);
  assert_int_equal(m5_akma_fqdn_valid("localhost"), M5_OK);
  assert_int_equal(m5_akma_fqdn_valid("a-b.c9"), M5_OK);
  const char *bad[] = {
      "",     ".",     "a.",  ".a",           "a..b",         "-a.b",
      "a-.b", "a_b.c", "a b", "\xc3\xa9.org", "127.0.0.1:80", "msgin5g.example.org."};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
    assert_int_equal(m5_akma_fqdn_valid(bad[i]), M5_EINVAL);
  assert_int_equal(m5_akma_fqdn_valid(NULL), M5_EINVAL);

  char label[70];
  memset(label, 'a', 63);
  label[63] = '\0';
  assert_int_equal(m5_akma_fqdn_valid(label), M5_OK);
  label[63] = 'a';
  label[64] = '\0';
  assert_int_equal(m5_akma_fqdn_valid(label), M5_EINVAL); /* 64-octet label */

  char name[256];
  memset(name, 'a', sizeof name);
  for (size_t i = 50; i < sizeof name; i += 51)
    name[i] = '.';
  name[253] = '\0';
  assert_int_equal(m5_akma_fqdn_valid(name), M5_OK); /* 253 octets */
  name[253] = 'a';
  name[254] = '\0';
  assert_int_equal(m5_akma_fqdn_valid(name), M5_EINVAL); /* 254 octets */

  uint8_t kakma[32] = {0}, ua[M5_AKMA_UA_LEN], kaf[32];
  m5_akma_ua_tls13(ua);
  assert_int_equal(m5_akma_kaf(kakma, "msgin5g.example.org.", ua, kaf), M5_EINVAL);
  assert_int_equal(m5_akma_kaf(kakma, name, ua, kaf), M5_EINVAL);
  assert_int_equal(m5_akma_kaf(kakma, FQDN, NULL, kaf), M5_EINVAL);
}

/* The suite in the Ua* id changes K_AF (each TLS 1.2 suite has its own key, architecture §4). */
static void test_kaf_depends_on_ua_and_fqdn(void **state) {
  (void)state;
  uint8_t kakma[32] = {1}, ua[M5_AKMA_UA_LEN], a[32], b[32], c[32];
  m5_akma_ua_tls12(0x00a8, ua);
  assert_int_equal(m5_akma_kaf(kakma, "localhost", ua, a), M5_OK);
  m5_akma_ua_tls12(0xc0a8, ua);
  assert_int_equal(m5_akma_kaf(kakma, "localhost", ua, b), M5_OK);
  assert_int_equal(m5_akma_kaf(kakma, "localhost2", ua, c), M5_OK);
  assert_memory_not_equal(a, b, 32);
  assert_memory_not_equal(b, c, 32);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_chain_a_kakma_atid_akid),
      cmocka_unit_test(test_chain_a_kaf),
      cmocka_unit_test(test_kaf_s_encoding),
      cmocka_unit_test(test_chain_b),
      cmocka_unit_test(test_supi_checks),
      cmocka_unit_test(test_realm),
      cmocka_unit_test(test_akid),
      cmocka_unit_test(test_ua_ids),
      cmocka_unit_test(test_fqdn),
      cmocka_unit_test(test_kaf_depends_on_ua_and_fqdn),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
