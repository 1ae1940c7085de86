/* Unit tests for src/lib/core/hmap.c: put/get/replace/delete with binary keys, growth across
 * many entries, iteration and freeing values. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "core/hmap.h"

static void test_basic(void **state) {
  (void)state;
  m5_hmap_t *m = m5_hmap_new();
  int a = 1, b = 2;
  void *old = &a;
  assert_null(m5_hmap_get(m, "k", 1));
  assert_int_equal(m5_hmap_put(m, "k", 1, &a, &old), 0);
  assert_null(old);
  assert_ptr_equal(m5_hmap_get(m, "k", 1), &a);
  assert_null(m5_hmap_get(m, "k\0", 2)); /* the length is part of the key */
  assert_int_equal(m5_hmap_put(m, "k", 1, &b, &old), 0);
  assert_ptr_equal(old, &a);
  assert_int_equal(m5_hmap_count(m), 1);
  assert_ptr_equal(m5_hmap_del(m, "k", 1), &b);
  assert_null(m5_hmap_del(m, "k", 1));
  assert_int_equal(m5_hmap_count(m), 0);
  m5_hmap_free(m, NULL);
}

static void count_cb(const void *key, size_t klen, void *val, void *arg) {
  (void)key;
  (void)klen;
  *(size_t *)arg += (size_t)(uintptr_t)val;
}

static void test_many(void **state) {
  (void)state;
  m5_hmap_t *m = m5_hmap_new();
  char key[32];
  for (uintptr_t i = 1; i <= 10000; i++) {
    int n = snprintf(key, sizeof key, "ue-%lu", (unsigned long)i);
    assert_int_equal(m5_hmap_put(m, key, (size_t)n, (void *)i, NULL), 0);
  }
  for (uint64_t id = 1; id <= 1000; id++) /* binary keys next to text ones */
    assert_int_equal(m5_hmap_put(m, &id, sizeof id, (void *)(uintptr_t)1, NULL), 0);
  assert_int_equal(m5_hmap_count(m), 11000);
  for (uintptr_t i = 1; i <= 10000; i++) {
    int n = snprintf(key, sizeof key, "ue-%lu", (unsigned long)i);
    assert_ptr_equal(m5_hmap_get(m, key, (size_t)n), (void *)i);
  }
  size_t sum = 0;
  m5_hmap_foreach(m, count_cb, &sum);
  assert_int_equal(sum, 10000u * 10001u / 2u + 1000u);
  for (uintptr_t i = 1; i <= 10000; i += 2) {
    int n = snprintf(key, sizeof key, "ue-%lu", (unsigned long)i);
    assert_ptr_equal(m5_hmap_del(m, key, (size_t)n), (void *)i);
  }
  assert_int_equal(m5_hmap_count(m), 6000);
  assert_null(m5_hmap_get(m, "ue-1", 4));
  assert_ptr_equal(m5_hmap_get(m, "ue-2", 4), (void *)(uintptr_t)2);
  m5_hmap_free(m, NULL);
}

static int freed;
static void free_val(void *v) {
  (void)v;
  freed++;
}

static void test_free_values(void **state) {
  (void)state;
  m5_hmap_t *m = m5_hmap_new();
  int x;
  m5_hmap_put(m, "a", 1, &x, NULL);
  m5_hmap_put(m, "b", 1, &x, NULL);
  m5_hmap_free(m, free_val);
  assert_int_equal(freed, 2);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_basic),
      cmocka_unit_test(test_many),
      cmocka_unit_test(test_free_values),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
