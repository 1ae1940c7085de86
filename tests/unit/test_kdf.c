/* Unit tests for src/lib/crypto/kdf.c and codec.c: the TS 33.220 Annex B.2 KDF checked byte
 * for byte against RFC 4231 (HMAC-SHA-256) and the RFC 5448 / RFC 9048 CK'/IK' vectors
 * (msgin5g-security.md §11.1), the S encoding rules (§2.1), and the hex / base64url codecs. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/err.h"
#include "crypto/codec.h"
#include "crypto/kdf.h"

/* Test-local hex decoder, independent of the one under test, for fixture inputs. */
static size_t unhex(const char *hex, uint8_t *out, size_t outlen) {
  size_t n = strlen(hex) / 2;
  assert_true(strlen(hex) % 2 == 0 && n <= outlen);
  for (size_t i = 0; i < n; i++) {
    unsigned int v;
    char pair[3] = {hex[2 * i], hex[2 * i + 1], '\0'};
    char *end;
    v = (unsigned int)strtoul(pair, &end, 16);
    assert_true(*end == '\0');
    out[i] = (uint8_t)v;
  }
  return n;
}

static void assert_hex(const uint8_t *got, size_t n, const char *want) {
  char text[2 * 64 + 1];
  assert_true(n <= 64);
  assert_int_equal(m5_hex_encode(got, n, text, sizeof text), M5_OK);
  assert_string_equal(text, want);
}

/* RFC 4231 §4: test cases 1-4, 6 and 7 (case 5 is a truncated MAC, not used by the KDF). */
static void test_hmac_rfc4231(void **state) {
  (void)state;
  uint8_t k0b[20], kaa20[20], kseq[25], kaa131[131], dd[50], cd[50];
  memset(k0b, 0x0b, sizeof k0b);
  memset(kaa20, 0xaa, sizeof kaa20);
  for (size_t i = 0; i < sizeof kseq; i++)
    kseq[i] = (uint8_t)(i + 1);
  memset(kaa131, 0xaa, sizeof kaa131);
  memset(dd, 0xdd, sizeof dd);
  memset(cd, 0xcd, sizeof cd);
  static const char tc6[] = "Test Using Larger Than Block-Size Key - Hash Key First";
  static const char tc7[] = "This is a test using a larger than block-size key and a larger than "
                            "block-size data. The key needs to be hashed before being used by "
                            "the HMAC algorithm.";
  const struct {
    const uint8_t *key;
    size_t key_len;
    const uint8_t *data;
    size_t len;
    const char *mac;
  } cases[] = {
      {k0b, sizeof k0b, (const uint8_t *)"Hi There", 8,
       "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"},
      {(const uint8_t *)"Jefe", 4, (const uint8_t *)"what do ya want for nothing?", 28,
       "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"},
      {kaa20, sizeof kaa20, dd, sizeof dd,
       "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe"},
      {kseq, sizeof kseq, cd, sizeof cd,
       "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b"},
      {kaa131, sizeof kaa131, (const uint8_t *)tc6, sizeof tc6 - 1,
       "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"},
      {kaa131, sizeof kaa131, (const uint8_t *)tc7, sizeof tc7 - 1,
       "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    uint8_t mac[32];
    assert_int_equal(
        m5_hmac_sha256(cases[i].key, cases[i].key_len, cases[i].data, cases[i].len, mac), M5_OK);
    assert_hex(mac, sizeof mac, cases[i].mac);
  }
}

/* RFC 5448 App. C / RFC 9048 App. D, as tabled in msgin5g-security.md §11.1(a):
 * CK'||IK' = KDF(CK||IK, 0x20, network name, SQN^AK). */
static void test_kdf_ckik_rfc5448(void **state) {
  (void)state;
  const struct {
    const char *ck, *ik, *name, *sqn_ak, *ck_p, *ik_p;
  } cases[] = {
      {"5349fbe098649f948f5d2e973a81c00f", "9744871ad32bf9bbd1dd5ce54e3e2e5a", "WLAN",
       "bb52e91c747a", "0093962d0dd84aa5684b045c9edffa04", "ccfc230ca74fcc96c0a5d61164f5a76c"},
      {"5349fbe098649f948f5d2e973a81c00f", "9744871ad32bf9bbd1dd5ce54e3e2e5a", "HRPD",
       "bb52e91c747a", "3820f0277fa5f77732b1fb1d90c1a0da", "db94a0ab557ef6c9ab48619ca05b9a9f"},
      {"c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0", "b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0", "WLAN",
       "a0a0a0a0a0a0", "cd4c8e5c68f57dd1d7d7dfd0c538e577", "3ece6b705dbbf7dfc459a11280c65524"},
      {"c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0", "b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0", "HRPD",
       "a0a0a0a0a0a0", "8310a71ce6f754889613da8f64d5fb46", "5adf14360ae838192db23f6fcb7f8c76"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    uint8_t key[32], sqn[6], out[M5_KDF_OUT_LEN];
    unhex(cases[i].ck, key, 16);
    unhex(cases[i].ik, key + 16, 16);
    assert_int_equal(unhex(cases[i].sqn_ak, sqn, sizeof sqn), 6);
    const m5_kdf_param_t p[2] = {{(const uint8_t *)cases[i].name, 4}, {sqn, 6}};
    assert_int_equal(m5_kdf(key, sizeof key, 0x20, p, 2, out), M5_OK);
    assert_hex(out, 16, cases[i].ck_p);
    assert_hex(out + 16, 16, cases[i].ik_p);
  }
}

/* m5_kdf(params) must equal HMAC over the S written out by hand in the spec. */
static void check_kdf_against_s(const uint8_t *key, size_t key_len, uint8_t fc,
                                const m5_kdf_param_t *p, size_t n, const char *s_hex) {
  uint8_t s[256], via_kdf[32], via_hmac[32];
  size_t s_len = unhex(s_hex, s, sizeof s);
  assert_int_equal(s[0], fc);
  assert_int_equal(m5_kdf(key, key_len, fc, p, n, via_kdf), M5_OK);
  assert_int_equal(m5_hmac_sha256(key, key_len, s, s_len, via_hmac), M5_OK);
  assert_memory_equal(via_kdf, via_hmac, 32);
}

/* S strings of §11.1(a) case 1 and §11.3 chain A. */
static void test_kdf_s_encoding(void **state) {
  (void)state;
  uint8_t key[32];
  for (size_t i = 0; i < sizeof key; i++)
    key[i] = (uint8_t)i;
  const uint8_t sqn[6] = {0xbb, 0x52, 0xe9, 0x1c, 0x74, 0x7a};
  const m5_kdf_param_t wlan[2] = {{(const uint8_t *)"WLAN", 4}, {sqn, 6}};
  check_kdf_against_s(key, 32, 0x20, wlan, 2, "20574c414e0004bb52e91c747a0006");
  const m5_kdf_param_t akma[2] = {{(const uint8_t *)"AKMA", 4},
                                  {(const uint8_t *)"001010123456789", 15}};
  check_kdf_against_s(key, 32, 0x80, akma, 2, "80414b4d410004303031303130313233343536373839000f");
}

/* §2.2: a zero-length Pi still emits its 00 00 length, also between other parameters. */
static void test_kdf_zero_length_param(void **state) {
  (void)state;
  const uint8_t key[4] = {1, 2, 3, 4};
  const m5_kdf_param_t only[1] = {{NULL, 0}};
  check_kdf_against_s(key, 4, 0x42, only, 1, "420000");
  const m5_kdf_param_t mid[3] = {
      {(const uint8_t *)"ab", 2}, {(const uint8_t *)"", 0}, {(const uint8_t *)"c", 1}};
  check_kdf_against_s(key, 4, 0x42, mid, 3, "42616200020000630001");
  /* No parameters at all: S is FC alone. */
  check_kdf_against_s(key, 4, 0x42, NULL, 0, "42");
}

/* 65535 octets is the longest Pi a two-octet Li can describe; one more is refused. */
static void test_kdf_length_limit(void **state) {
  (void)state;
  const uint8_t key[32] = {0};
  uint8_t *big = calloc(65536, 1);
  assert_non_null(big);
  memset(big, 'x', 65536);
  uint8_t *s = malloc(1 + 65535 + 2);
  assert_non_null(s);
  s[0] = 0x55;
  memcpy(s + 1, big, 65535);
  s[65536] = 0xff;
  s[65537] = 0xff;
  uint8_t via_kdf[32], via_hmac[32], untouched[32];
  m5_kdf_param_t p = {big, 65535};
  assert_int_equal(m5_kdf(key, sizeof key, 0x55, &p, 1, via_kdf), M5_OK);
  assert_int_equal(m5_hmac_sha256(key, sizeof key, s, 65538, via_hmac), M5_OK);
  assert_memory_equal(via_kdf, via_hmac, 32);

  memset(untouched, 0x5a, sizeof untouched);
  memcpy(via_kdf, untouched, sizeof untouched);
  p.len = 65536;
  assert_int_equal(m5_kdf(key, sizeof key, 0x55, &p, 1, via_kdf), M5_ERANGE);
  assert_memory_equal(via_kdf, untouched, 32);
  /* The oversized parameter is refused wherever it sits in the list. */
  const m5_kdf_param_t two[2] = {{(const uint8_t *)"ok", 2}, {big, 70000}};
  assert_int_equal(m5_kdf(key, sizeof key, 0x55, two, 2, via_kdf), M5_ERANGE);
  free(s);
  free(big);
}

static void test_kdf_bad_arguments(void **state) {
  (void)state;
  const uint8_t key[32] = {0};
  uint8_t out[32];
  const m5_kdf_param_t p = {(const uint8_t *)"x", 1};
  const m5_kdf_param_t dangling = {NULL, 3};
  assert_int_equal(m5_kdf(NULL, 32, 0x80, &p, 1, out), M5_EINVAL);
  assert_int_equal(m5_kdf(key, 32, 0x80, &p, 1, NULL), M5_EINVAL);
  assert_int_equal(m5_kdf(key, 32, 0x80, NULL, 1, out), M5_EINVAL);
  assert_int_equal(m5_kdf(key, 32, 0x80, &dangling, 1, out), M5_EINVAL);
  assert_int_equal(m5_hmac_sha256(NULL, 4, (const uint8_t *)"x", 1, out), M5_EINVAL);
  assert_int_equal(m5_hmac_sha256(key, 32, NULL, 1, out), M5_EINVAL);
}

/* Different FC values must give different keys (FC separates the uses, §2.1). */
static void test_kdf_fc_separates(void **state) {
  (void)state;
  const uint8_t key[32] = {7};
  const m5_kdf_param_t p = {(const uint8_t *)"AKMA", 4};
  uint8_t a[32], b[32];
  assert_int_equal(m5_kdf(key, 32, 0x80, &p, 1, a), M5_OK);
  assert_int_equal(m5_kdf(key, 32, 0x81, &p, 1, b), M5_OK);
  assert_memory_not_equal(a, b, 32);
}

static void test_hex_codec(void **state) {
  (void)state;
  const uint8_t bytes[4] = {0x00, 0xab, 0x7f, 0xff};
  char text[9];
  assert_int_equal(m5_hex_encode(bytes, 4, text, sizeof text), M5_OK);
  assert_string_equal(text, "00ab7fff");
  assert_int_equal(m5_hex_encode(bytes, 4, text, 8), M5_ERANGE); /* no room for the NUL */
  assert_int_equal(m5_hex_encode(bytes, 0, text, 1), M5_OK);
  assert_string_equal(text, "");

  uint8_t out[4];
  size_t n = 99;
  assert_int_equal(m5_hex_decode("00AB7fFf", out, sizeof out, &n), M5_OK);
  assert_int_equal(n, 4);
  assert_memory_equal(out, bytes, 4);
  assert_int_equal(m5_hex_decode("", out, sizeof out, &n), M5_OK);
  assert_int_equal(n, 0);
  assert_int_equal(m5_hex_decode("abc", out, sizeof out, &n), M5_EINVAL);        /* odd */
  assert_int_equal(m5_hex_decode("0g", out, sizeof out, &n), M5_EINVAL);         /* not hex */
  assert_int_equal(m5_hex_decode("0x12", out, sizeof out, &n), M5_EINVAL);       /* prefix */
  assert_int_equal(m5_hex_decode("00 1", out, sizeof out, &n), M5_EINVAL);       /* space */
  assert_int_equal(m5_hex_decode("0011223344", out, sizeof out, &n), M5_ERANGE); /* 5 > 4 */
  assert_int_equal(m5_hex_decode(NULL, out, sizeof out, &n), M5_EINVAL);
}

/* RFC 4648 §10 vectors (base64url differs only in the two last alphabet characters). */
static void test_b64url_codec(void **state) {
  (void)state;
  const char *plain[] = {"", "f", "fo", "foo", "foob", "fooba", "foobar"};
  const char *coded[] = {"", "Zg", "Zm8", "Zm9v", "Zm9vYg", "Zm9vYmE", "Zm9vYmFy"};
  for (size_t i = 0; i < 7; i++) {
    char text[16];
    uint8_t back[8];
    size_t n = 99;
    size_t len = strlen(plain[i]);
    assert_int_equal(m5_b64url_encode((const uint8_t *)plain[i], len, text, sizeof text), M5_OK);
    assert_string_equal(text, coded[i]);
    assert_int_equal(m5_b64url_decode(coded[i], back, sizeof back, &n), M5_OK);
    assert_int_equal(n, len);
    assert_memory_equal(back, plain[i], len);
  }
  /* The URL-safe characters: 0xfb 0xff -> "-_8" (standard base64 would be "+/8="). */
  const uint8_t url[2] = {0xfb, 0xff};
  char text[8];
  assert_int_equal(m5_b64url_encode(url, 2, text, sizeof text), M5_OK);
  assert_string_equal(text, "-_8");
  assert_int_equal(m5_b64url_encode(url, 2, text, 3), M5_ERANGE);

  uint8_t out[8];
  size_t n;
  assert_int_equal(m5_b64url_decode("Zg==", out, sizeof out, &n), M5_EINVAL);  /* padding */
  assert_int_equal(m5_b64url_decode("+/8", out, sizeof out, &n), M5_EINVAL);   /* std alphabet */
  assert_int_equal(m5_b64url_decode("Zm9vY", out, sizeof out, &n), M5_EINVAL); /* 1 leftover */
  assert_int_equal(m5_b64url_decode("Zh", out, sizeof out, &n), M5_EINVAL);    /* non-canonical */
  assert_int_equal(m5_b64url_decode("Zm9", out, sizeof out, &n), M5_EINVAL);   /* non-canonical */
  assert_int_equal(m5_b64url_decode("Zm 9v", out, sizeof out, &n), M5_EINVAL);
  assert_int_equal(m5_b64url_decode("Zm9vYmFy", out, 5, &n), M5_ERANGE);
}

static void test_wipe_compare_random(void **state) {
  (void)state;
  uint8_t a[32], b[32];
  memset(a, 0xa5, sizeof a);
  m5_wipe(a, sizeof a);
  memset(b, 0, sizeof b);
  assert_memory_equal(a, b, sizeof a);
  assert_true(m5_ct_equal(a, b, sizeof a));
  b[31] = 1;
  assert_false(m5_ct_equal(a, b, sizeof a));
  assert_int_equal(m5_random_bytes(a, sizeof a), M5_OK);
  assert_int_equal(m5_random_bytes(b, sizeof b), M5_OK);
  assert_memory_not_equal(a, b, sizeof a); /* 2^-256 chance of a false failure */
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_hmac_rfc4231),     cmocka_unit_test(test_kdf_ckik_rfc5448),
      cmocka_unit_test(test_kdf_s_encoding),   cmocka_unit_test(test_kdf_zero_length_param),
      cmocka_unit_test(test_kdf_length_limit), cmocka_unit_test(test_kdf_bad_arguments),
      cmocka_unit_test(test_kdf_fc_separates), cmocka_unit_test(test_hex_codec),
      cmocka_unit_test(test_b64url_codec),     cmocka_unit_test(test_wipe_compare_random),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
