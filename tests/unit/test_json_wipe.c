/* Unit test of jansson's wiping allocation hooks (crypto/json_wipe.h) as m5s installs them
 * (server_process_init) and m5-aanf (aanf_msg_init): every block jansson frees, among them the
 * strings and lexer buffers that held a K_AF in hex, is wiped before it is released. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <jansson.h>
#include <malloc.h>

#include "aanf_msg.h"
#include "crypto/json_wipe.h"
#include "server/server_run.h"

#define KAF_HEX "9767f04bef5e812e0283e129e131730a493d3852c6b0208a66b20885aea794e7"

static size_t released, released_dirty, released_with_key;

/* Sees each block after the wipe, before free: it must be all zero. */
static void spy_release(void *p) {
  size_t n = malloc_usable_size(p);
  const unsigned char *b = p;
  size_t nonzero = 0;
  for (size_t i = 0; i < n; i++)
    nonzero += b[i] != 0;
  released++;
  released_dirty += nonzero != 0;
  released_with_key += memmem(p, n, "9767f04b", 8) != NULL;
  free(p);
}

/* An AkmaAfKeyData in and out of jansson, as m5s's K_AF source reads it and m5-aanf writes it. */
static void kaf_through_jansson(void) {
  const char *body = "{\"kaf\":\"" KAF_HEX "\",\"expiry\":\"2026-11-29T03:00:00Z\"}";
  json_t *j = json_loads(body, JSON_REJECT_DUPLICATES, NULL);
  assert_non_null(j);
  assert_string_equal(json_string_value(json_object_get(j, "kaf")), KAF_HEX);
  char *again = json_dumps(j, JSON_COMPACT);
  assert_non_null(again);
  assert_non_null(strstr(again, KAF_HEX));
  json_decref(j);
  /* json_dumps's text is the caller's to free with jansson's free hook */
  json_free_t f = NULL;
  json_get_alloc_funcs(NULL, &f);
  f(again);
}

static void test_m5s_installs_wiping_hooks(void **state) {
  (void)state;
  json_set_alloc_funcs(malloc, free); /* jansson's defaults */
  assert_false(m5_json_wipe_installed());
  server_process_init();
  assert_true(m5_json_wipe_installed());
}

static void test_m5_aanf_installs_wiping_hooks(void **state) {
  (void)state;
  json_set_alloc_funcs(malloc, free);
  aanf_msg_init();
  assert_true(m5_json_wipe_installed());
}

static void test_every_freed_block_is_wiped(void **state) {
  (void)state;
  m5_json_wipe_install_with(spy_release);
  released = released_dirty = released_with_key = 0;
  kaf_through_jansson();
  m5_json_wipe_install();
  print_message("jansson released %zu blocks\n", released);
  assert_true(released >= 3); /* the string, the object, the dumped text at least */
  assert_int_equal(released_with_key, 0);
  assert_int_equal(released_dirty, 0);
}

/* Without the hooks the spy sees the key in what is released: the check above can fail. */
static void test_without_hooks_the_key_is_released_as_is(void **state) {
  (void)state;
  released = released_dirty = released_with_key = 0;
  json_set_alloc_funcs(malloc, spy_release);
  kaf_through_jansson();
  m5_json_wipe_install();
  assert_true(released_with_key > 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_m5s_installs_wiping_hooks),
      cmocka_unit_test(test_m5_aanf_installs_wiping_hooks),
      cmocka_unit_test(test_every_freed_block_is_wiped),
      cmocka_unit_test(test_without_hooks_the_key_is_released_as_is),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
