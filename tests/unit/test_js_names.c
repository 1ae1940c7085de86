/* Unit tests of js/js_names: identifiers as one NATS subject token / KV key token (issue 13).
 * Round trips of the characters subjects and keys refuse, the bounds, and refusal of every
 * token encode does not produce (so two tokens never name one ID). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "core/err.h"
#include "js/js_names.h"
#include "msg/msg.h"

/* Only characters of both a subject token and a KV key token, and never empty. */
static void assert_token_chars(const char *t) {
  assert_true(strlen(t) > 0);
  for (const char *p = t; *p; p++)
    assert_non_null(strchr("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_", *p));
}

static void round_trip(const void *id, size_t len) {
  char tok[M5_JS_TOKEN_SIZE];
  size_t tl = 0, ol = 99;
  uint8_t out[M5_JS_ID_MAX];
  assert_int_equal(m5_js_name_encode(id, len, tok, sizeof tok, &tl), M5_OK);
  assert_int_equal(strlen(tok), tl);
  assert_token_chars(tok);
  char diag[80] = "";
  assert_int_equal(m5_js_name_decode(tok, tl, out, sizeof out, &ol, diag, sizeof diag), M5_OK);
  assert_int_equal(ol, len);
  if (len) assert_memory_equal(out, id, len);
}

static void test_round_trips(void **state) {
  (void)state;
  const char *ids[] = {
      "UE:ue1@example.com",       "a.b", "*", ">",    "a.*.>", "with space", "x/y", "100%",
      "caf\xc3\xa9 \xe2\x82\xac", "-_=", ".", "a..b", "\t\n"};
  for (size_t i = 0; i < sizeof ids / sizeof *ids; i++)
    round_trip(ids[i], strlen(ids[i]));
  uint8_t bin[256];
  for (size_t i = 0; i < sizeof bin; i++)
    bin[i] = (uint8_t)i;
  for (size_t len = 0; len <= M5_JS_ID_MAX; len++)
    round_trip(bin + 256 - M5_JS_ID_MAX, len);
  round_trip("", 0);
  round_trip("\0\0", 2);
}

static void test_known_values(void **state) {
  (void)state;
  char tok[M5_JS_TOKEN_SIZE];
  assert_int_equal(m5_js_name_encode("ue1", 3, tok, sizeof tok, NULL), M5_OK);
  assert_string_equal(tok, "dWUx"); /* the design note's example */
  assert_int_equal(m5_js_name_encode("", 0, tok, sizeof tok, NULL), M5_OK);
  assert_string_equal(tok, "_");
  assert_int_equal(m5_js_name_encode("\xfb\xff", 2, tok, sizeof tok, NULL), M5_OK);
  assert_string_equal(tok, "-_8");
}

static void test_bounds(void **state) {
  (void)state;
  char id[M5_JS_ID_MAX + 1];
  memset(id, 'x', sizeof id);
  char tok[M5_JS_TOKEN_SIZE + 8];
  size_t tl;
  assert_int_equal(M5_JS_TOKEN_MAX, 171);
  assert_true(M5_MSG_ADDR_MAX <= M5_JS_ID_MAX && M5_MSG_ID_MAX <= M5_JS_ID_MAX);
  assert_int_equal(m5_js_name_encode(id, M5_JS_ID_MAX, tok, M5_JS_TOKEN_SIZE, &tl), M5_OK);
  assert_int_equal(tl, M5_JS_TOKEN_MAX);
  assert_int_equal(m5_js_name_encode(id, M5_JS_ID_MAX + 1, tok, sizeof tok, &tl), M5_ERANGE);
  assert_string_equal(tok, "");
  assert_int_equal(m5_js_name_encode(id, 3, tok, 4, &tl), M5_ERANGE); /* no room for the NUL */
  assert_int_equal(m5_js_name_encode(id, 3, tok, 5, &tl), M5_OK);
  assert_int_equal(m5_js_name_encode(NULL, 3, tok, 5, &tl), M5_EINVAL);
  /* decode: a token one group longer than the longest, and an output buffer too small */
  memset(tok, 'A', sizeof tok);
  uint8_t out[M5_JS_ID_MAX + 8];
  size_t ol;
  char diag[80] = "";
  assert_int_equal(
      m5_js_name_decode(tok, M5_JS_TOKEN_MAX + 1, out, sizeof out, &ol, diag, sizeof diag),
      M5_ERANGE);
  assert_non_null(strstr(diag, "longer than 171"));
  assert_int_equal(m5_js_name_decode("dWUx", 4, out, 2, &ol, diag, sizeof diag), M5_ERANGE);
  assert_int_equal(m5_js_name_decode("dWUx", 4, out, 3, &ol, NULL, 0), M5_OK);
  assert_int_equal(ol, 3);
}

static void refused(const char *tok, const char *why) {
  uint8_t out[M5_JS_ID_MAX];
  size_t ol = 7;
  char diag[80] = "";
  assert_int_equal(m5_js_name_decode(tok, strlen(tok), out, sizeof out, &ol, diag, sizeof diag),
                   M5_EINVAL);
  assert_int_equal(ol, 0);
  if (!strstr(diag, why)) fail_msg("'%s': diag '%s' lacks '%s'", tok, diag, why);
}

static void test_invalid_refused(void **state) {
  (void)state;
  refused("", "empty");
  refused("dWUx=", "length 5");   /* padding is never produced */
  refused("dWU=", "character 3"); /* '=' */
  refused("dW.x", "character 2"); /* a subject separator */
  refused("d*Ux", "character 1");
  refused("dWU>", "character 3");
  refused("dW x", "character 2");
  refused("dW/x", "character 2");
  refused("dW+x", "character 2"); /* plain base64, not base64url */
  refused("d\xc3\xa9x", "character 1");
  refused("A", "length 1");
  refused("-", "length 1");
  refused("AB", "unused bits");  /* "AA" is 0x00; "AB" has a stray low bit */
  refused("AAB", "unused bits"); /* "AAA" is 0x00 0x00 */
  refused("dWUxdWUxB", "length 9");
  /* an embedded NUL is a byte like any other, not an end */
  uint8_t out[8];
  size_t ol;
  assert_int_equal(m5_js_name_decode("dW\0x", 4, out, sizeof out, &ol, NULL, 0), M5_EINVAL);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_round_trips),
      cmocka_unit_test(test_known_values),
      cmocka_unit_test(test_bounds),
      cmocka_unit_test(test_invalid_refused),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
