/* Unit tests for the capped byte buffer (core/buf.h). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "core/buf.h"
#include "core/err.h"

static void test_append_grows_and_keeps_bytes(void **state) {
  (void)state;
  m5_buf_t b;
  m5_buf_init(&b, 0);
  uint8_t chunk[100];
  for (size_t i = 0; i < sizeof(chunk); i++)
    chunk[i] = (uint8_t)i;
  for (int i = 0; i < 50; i++)
    assert_int_equal(m5_buf_append(&b, chunk, sizeof(chunk)), M5_OK);
  assert_int_equal(b.len, 5000);
  assert_true(b.cap >= b.len);
  for (size_t i = 0; i < b.len; i++)
    assert_int_equal(b.data[i], (uint8_t)(i % 100));
  assert_int_equal(m5_buf_append(&b, NULL, 0), M5_OK);
  assert_int_equal(b.len, 5000);
  m5_buf_free(&b);
  assert_null(b.data);
  assert_int_equal(b.len, 0);
}

static void test_max_gives_erange_and_keeps_contents(void **state) {
  (void)state;
  m5_buf_t b;
  m5_buf_init(&b, 10);
  assert_int_equal(m5_buf_append(&b, "abcdefgh", 8), M5_OK);
  assert_int_equal(m5_buf_append(&b, "XYZ", 3), M5_ERANGE);
  assert_int_equal(b.len, 8);
  assert_memory_equal(b.data, "abcdefgh", 8);
  assert_int_equal(m5_buf_printf(&b, "%s", "123"), M5_ERANGE);
  assert_int_equal(b.len, 8);
  assert_memory_equal(b.data, "abcdefgh", 8);
  /* Exactly up to max is allowed. */
  assert_int_equal(m5_buf_append(&b, "ij", 2), M5_OK);
  assert_int_equal(b.len, 10);
  assert_memory_equal(b.data, "abcdefghij", 10);
  assert_int_equal(m5_buf_append(&b, "k", 1), M5_ERANGE);
  assert_int_equal(b.len, 10);
  m5_buf_free(&b);
}

static void test_printf_exactly_to_max(void **state) {
  (void)state;
  m5_buf_t b;
  m5_buf_init(&b, 6);
  assert_int_equal(m5_buf_printf(&b, "%d-%s", 12, "abc"), M5_OK);
  assert_int_equal(b.len, 6);
  assert_memory_equal(b.data, "12-abc", 6);
  m5_buf_free(&b);
}

static void test_printf_appends(void **state) {
  (void)state;
  m5_buf_t b;
  m5_buf_init(&b, 0);
  assert_int_equal(m5_buf_printf(&b, "{\"n\":%d,", 42), M5_OK);
  char big[300];
  memset(big, 'x', sizeof(big) - 1);
  big[sizeof(big) - 1] = '\0';
  assert_int_equal(m5_buf_printf(&b, "\"s\":\"%s\"}", big), M5_OK);
  assert_int_equal(b.len, 7 + 6 + 299 + 2);
  assert_memory_equal(b.data, "{\"n\":42,\"s\":\"xxx", 16);
  assert_memory_equal(b.data + b.len - 3, "x\"}", 3);
  m5_buf_free(&b);
}

static void test_consume_and_reset(void **state) {
  (void)state;
  m5_buf_t b;
  m5_buf_init(&b, 0);
  assert_int_equal(m5_buf_append(&b, "hello world", 11), M5_OK);
  m5_buf_consume(&b, 6);
  assert_int_equal(b.len, 5);
  assert_memory_equal(b.data, "world", 5);
  m5_buf_consume(&b, 5);
  assert_int_equal(b.len, 0);
  assert_int_equal(m5_buf_append(&b, "again", 5), M5_OK);
  size_t cap = b.cap;
  m5_buf_reset(&b);
  assert_int_equal(b.len, 0);
  assert_int_equal(b.cap, cap);
  assert_non_null(b.data);
  m5_buf_free(&b);
}

static void test_wipe_free_releases(void **state) {
  (void)state;
  m5_buf_t b;
  m5_buf_init(&b, 64);
  assert_int_equal(m5_buf_append(&b, "secret key material", 19), M5_OK);
  m5_buf_wipe_free(&b);
  assert_null(b.data);
  assert_int_equal(b.len, 0);
  assert_int_equal(b.cap, 0);
  assert_int_equal(b.max, 64); /* reusable with the same cap */
  assert_int_equal(m5_buf_append(&b, "x", 1), M5_OK);
  m5_buf_wipe_free(&b);
  m5_buf_wipe_free(&b); /* harmless on an empty buffer */
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_append_grows_and_keeps_bytes),
      cmocka_unit_test(test_max_gives_erange_and_keeps_contents),
      cmocka_unit_test(test_printf_exactly_to_max),
      cmocka_unit_test(test_printf_appends),
      cmocka_unit_test(test_consume_and_reset),
      cmocka_unit_test(test_wipe_free_releases),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
