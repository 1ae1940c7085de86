/* Unit tests for src/server/topics/topics_rules.c: the Messaging Topic rules per name prefix
 * (who may subscribe and publish): no rules = everyone; the longest matching prefix decides;
 * patterns on ue:/as: with * (every other character literal, as policy_glob); a part left out allows everyone, an empty one nobody; bad
 * lines are refused naming the entry; a replacement is all or nothing; the canonical form. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "server/topics/topics_rules.h"

static m5_msg_addr_t who(const char *type, const char *id) {
  m5_msg_addr_t a;
  memset(&a, 0, sizeof a);
  strcpy(a.type, type);
  strcpy(a.addr, id);
  return a;
}

static int may(topics_rules_t *r, const char *topic, const char *type, const char *id,
               topics_right_t w) {
  m5_msg_addr_t a = who(type, id);
  return topics_rules_may(r, topic, &a, w);
}

static void test_empty_allows_all(void **state) {
  (void)state;
  char err[128];
  topics_rules_t *r = topics_rules_new(NULL, 0, err, sizeof err);
  assert_non_null(r);
  assert_true(may(r, "a.b", "UE", "ue1", TOPICS_SUBSCRIBE));
  assert_true(may(r, "a.b", "AS", "as1", TOPICS_PUBLISH));
  assert_false(may(r, "a.b", "GROUP", "g", TOPICS_PUBLISH)); /* only UEs and ASs are parties */
  topics_rules_free(r);
}

static void test_longest_prefix(void **state) {
  (void)state;
  const char *lines[] = {"* publish=as:*", "alarm. subscribe=ue:sensor-*,as:as1 publish=as:as1",
                         "alarm.fire subscribe=", "open"};
  char err[128];
  topics_rules_t *r = topics_rules_new(lines, 4, err, sizeof err);
  assert_non_null(r);
  /* "*": publish only by ASs, subscribe by everyone */
  assert_false(may(r, "meters", "UE", "ue1", TOPICS_PUBLISH));
  assert_true(may(r, "meters", "AS", "as7", TOPICS_PUBLISH));
  assert_true(may(r, "meters", "UE", "ue1", TOPICS_SUBSCRIBE));
  /* "alarm.": sensors and as1 subscribe, as1 publishes */
  assert_true(may(r, "alarm.gas", "UE", "sensor-12", TOPICS_SUBSCRIBE));
  assert_false(may(r, "alarm.gas", "UE", "ue1", TOPICS_SUBSCRIBE));
  assert_true(may(r, "alarm.gas", "AS", "as1", TOPICS_SUBSCRIBE));
  assert_false(may(r, "alarm.gas", "AS", "as2", TOPICS_PUBLISH));
  assert_false(may(r, "alarm.gas", "UE", "sensor-1", TOPICS_PUBLISH)); /* ue: never as: */
  /* "alarm.fire" is longer: nobody subscribes; publish left out: everyone */
  assert_false(may(r, "alarm.fire.3", "UE", "sensor-12", TOPICS_SUBSCRIBE));
  assert_true(may(r, "alarm.fire.3", "UE", "ue1", TOPICS_PUBLISH));
  /* only `*` is special: `?` and `[` are the characters of a UE Service ID */
  const char *lit[] = {"lit. subscribe=ue:a?,ue:b[12]"};
  topics_rules_t *r2 = topics_rules_new(lit, 1, err, sizeof err);
  assert_non_null(r2);
  assert_true(may(r2, "lit.x", "UE", "a?", TOPICS_SUBSCRIBE));
  assert_false(may(r2, "lit.x", "UE", "ab", TOPICS_SUBSCRIBE));
  assert_true(may(r2, "lit.x", "UE", "b[12]", TOPICS_SUBSCRIBE));
  assert_false(may(r2, "lit.x", "UE", "b1", TOPICS_SUBSCRIBE));
  topics_rules_free(r2);
  /* "open": everything */
  assert_true(may(r, "open.x", "UE", "ue1", TOPICS_PUBLISH));
  /* the canonical form */
  m5_strlist_t l;
  assert_int_equal(topics_rules_get(r, &l), 0);
  assert_int_equal(l.n, 4);
  assert_string_equal(l.v[0], "* publish=as:*");
  assert_string_equal(l.v[1], "alarm. subscribe=ue:sensor-*,as:as1 publish=as:as1");
  assert_string_equal(l.v[2], "alarm.fire subscribe=");
  assert_string_equal(l.v[3], "open");
  for (size_t i = 0; i < l.n; i++)
    free(l.v[i]);
  free(l.v);
  topics_rules_free(r);
}

static void test_bad_lines(void **state) {
  (void)state;
  char err[256];
  const char *bad[][2] = {{"ok", "bad prefix!"},
                          {"ok", ""},
                          {"ok", "a subscribe=user:x"},
                          {"ok", "a send=ue:*"},
                          {"ok", "a subscribe=ue:a subscribe=ue:b"},
                          {"ok", "a subscribe=ue:a,,ue:b"},
                          {"a", "a"}};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    err[0] = '\0';
    assert_null(topics_rules_new(bad[i], 2, err, sizeof err));
    assert_non_null(strstr(err, "topics.rules[1]"));
  }
  /* a refused replacement keeps the rules */
  const char *one[] = {"x subscribe="};
  topics_rules_t *r = topics_rules_new(one, 1, err, sizeof err);
  assert_non_null(r);
  assert_int_not_equal(topics_rules_set(r, bad[0], 2, err, sizeof err), 0);
  assert_false(may(r, "x.1", "UE", "ue1", TOPICS_SUBSCRIBE));
  assert_int_equal(topics_rules_set(r, NULL, 0, err, sizeof err), 0);
  assert_true(may(r, "x.1", "UE", "ue1", TOPICS_SUBSCRIBE));
  topics_rules_free(r);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_empty_allows_all),
      cmocka_unit_test(test_longest_prefix),
      cmocka_unit_test(test_bad_lines),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
