/* Unit tests of the per-source bounds (src/server/ue/src_limits.c): addresses and their /24 or
 * /64, the half-open and fetch bounds, the bucket of unproven A-KIDs and its refill, the fixed
 * table (nodes in use stay, idle ones go oldest first), the refusal counters. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>

#include "core/loop.h"
#include "server/ue/src_limits.h"

static struct sockaddr_storage v4(const char *ip, uint16_t port) {
  struct sockaddr_storage ss;
  memset(&ss, 0, sizeof ss);
  struct sockaddr_in *in = (struct sockaddr_in *)&ss;
  in->sin_family = AF_INET;
  in->sin_port = htons(port);
  assert_int_equal(inet_pton(AF_INET, ip, &in->sin_addr), 1);
  return ss;
}

static struct sockaddr_storage v6(const char *ip) {
  struct sockaddr_storage ss;
  memset(&ss, 0, sizeof ss);
  struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
  in6->sin6_family = AF_INET6;
  assert_int_equal(inet_pton(AF_INET6, ip, &in6->sin6_addr), 1);
  return ss;
}

#define SA(ss) ((const struct sockaddr *)&(ss))

static void test_half_open_per_addr_and_prefix(void **state) {
  (void)state;
  src_limits_opts_t o = {.hs_per_addr = 2, .hs_per_prefix = 3};
  src_limits_t *s = src_limits_new(&o);
  assert_non_null(s);
  struct sockaddr_storage a1 = v4("10.0.0.1", 1000), a1b = v4("10.0.0.1", 2000),
                          a2 = v4("10.0.0.2", 1000), b = v4("10.0.1.1", 1000);
  src_ref_t r[6];
  /* two from one address (any port), then the address is full */
  assert_int_equal(src_ref(s, SA(a1), &r[0]), SRC_OK);
  assert_int_equal(src_hs_check(s, &r[0]), SRC_OK);
  src_hs_begin(&r[0]);
  assert_int_equal(src_ref(s, SA(a1b), &r[1]), SRC_OK);
  assert_int_equal(src_hs_check(s, &r[1]), SRC_OK);
  src_hs_begin(&r[1]);
  assert_int_equal(src_ref(s, SA(a1), &r[2]), SRC_OK);
  assert_int_equal(src_hs_check(s, &r[2]), SRC_HANDSHAKES_ADDR);
  src_unref(s, &r[2]);
  /* a neighbour in the same /24: one more, then the prefix is full */
  assert_int_equal(src_ref(s, SA(a2), &r[2]), SRC_OK);
  assert_int_equal(src_hs_check(s, &r[2]), SRC_OK);
  src_hs_begin(&r[2]);
  assert_int_equal(src_ref(s, SA(a2), &r[3]), SRC_OK);
  assert_int_equal(src_hs_check(s, &r[3]), SRC_HANDSHAKES_PREFIX);
  src_unref(s, &r[3]);
  /* another /24 is not affected */
  assert_int_equal(src_ref(s, SA(b), &r[4]), SRC_OK);
  assert_int_equal(src_hs_check(s, &r[4]), SRC_OK);
  src_unref(s, &r[4]);
  /* one ends: room again */
  src_hs_end(&r[0]);
  src_unref(s, &r[0]);
  assert_int_equal(src_ref(s, SA(a2), &r[3]), SRC_OK);
  assert_int_equal(src_hs_check(s, &r[3]), SRC_OK);
  src_unref(s, &r[3]);
  for (int i = 1; i <= 2; i++) {
    src_hs_end(&r[i]);
    src_unref(s, &r[i]);
  }
  /* nothing in use and no bucket: nothing kept */
  assert_int_equal(src_limits_nodes(s), 0);
  src_limits_free(s);
}

static void test_ipv6_prefix_and_mapped(void **state) {
  (void)state;
  src_limits_opts_t o = {.fetch_per_prefix = 1};
  src_limits_t *s = src_limits_new(&o);
  struct sockaddr_storage x = v6("2001:db8:1:2::1"), y = v6("2001:db8:1:2:ffff::9"),
                          z = v6("2001:db8:1:3::1"), m = v6("::ffff:10.0.0.7"),
                          n = v4("10.0.0.8", 1);
  src_ref_t rx, ry, rz, rm, rn;
  assert_int_equal(src_ref(s, SA(x), &rx), SRC_OK);
  src_fetch_begin(&rx);
  assert_int_equal(src_ref(s, SA(y), &ry), SRC_OK); /* the same /64 */
  assert_int_equal(src_fetch_check(s, &ry), SRC_FETCHES_PREFIX);
  assert_int_equal(src_ref(s, SA(z), &rz), SRC_OK); /* the next /64 */
  assert_int_equal(src_fetch_check(s, &rz), SRC_OK);
  /* an IPv4-mapped address is its IPv4 address: the same /24 as 10.0.0.8 */
  assert_int_equal(src_ref(s, SA(m), &rm), SRC_OK);
  src_fetch_begin(&rm);
  assert_int_equal(src_ref(s, SA(n), &rn), SRC_OK);
  assert_int_equal(src_fetch_check(s, &rn), SRC_FETCHES_PREFIX);
  src_fetch_end(&rx);
  assert_int_equal(src_fetch_check(s, &ry), SRC_OK);
  src_fetch_end(&rm);
  src_ref_t *all[] = {&rx, &ry, &rz, &rm, &rn};
  for (size_t i = 0; i < 5; i++)
    src_unref(s, all[i]);
  assert_int_equal(src_limits_nodes(s), 0);
  src_limits_free(s);
}

/* The bucket: burst takes, then empty; a refund (proven A-KID) gives one back; time refills
 * it; a prefix whose bucket is not full is remembered after its last connection. */
static void test_unknown_bucket(void **state) {
  (void)state;
  src_limits_opts_t o = {.unknown_burst = 3, .unknown_per_s = 2};
  src_limits_t *s = src_limits_new(&o);
  struct sockaddr_storage a = v4("192.0.2.1", 1), b = v4("192.0.2.200", 1);
  src_ref_t r;
  assert_int_equal(src_ref(s, SA(a), &r), SRC_OK);
  uint64_t t = m5_clock_mono_ms() + 10; /* the bucket was filled at ref time */
  for (int i = 0; i < 3; i++)
    assert_int_equal(src_unknown_take(s, &r, t), SRC_OK);
  assert_int_equal(src_unknown_take(s, &r, t), SRC_UNKNOWN_RATE);
  src_unknown_refund(s, &r, t);
  assert_int_equal(src_unknown_take(s, &r, t), SRC_OK);
  assert_int_equal(src_unknown_take(s, &r, t + 499), SRC_UNKNOWN_RATE); /* 0.998 tokens */
  assert_int_equal(src_unknown_take(s, &r, t + 500), SRC_OK);            /* 2 per second */
  src_unref(s, &r);
  assert_int_equal(src_limits_nodes(s), 1); /* the prefix, remembered while refilling */
  /* another address of the /24 finds it empty */
  assert_int_equal(src_ref(s, SA(b), &r), SRC_OK);
  assert_int_equal(src_unknown_take(s, &r, t + 500), SRC_UNKNOWN_RATE);
  src_unref(s, &r);
  src_limits_free(s);
}

/* A full table: nodes in use are never evicted (a new source is refused), idle remembered
 * prefixes go oldest first. */
static void test_table_bounded(void **state) {
  (void)state;
  src_limits_opts_t o = {.unknown_burst = 1, .unknown_per_s = 1, .max_nodes = 4};
  src_limits_t *s = src_limits_new(&o);
  struct sockaddr_storage a = v4("10.1.0.1", 1), b = v4("10.2.0.1", 1), c = v4("10.3.0.1", 1);
  src_ref_t ra, rb, rc;
  uint64_t now = 0;
  assert_int_equal(src_ref(s, SA(a), &ra), SRC_OK);
  assert_int_equal(src_ref(s, SA(b), &rb), SRC_OK);
  assert_int_equal(src_limits_nodes(s), 4);
  assert_int_equal(src_ref(s, SA(c), &rc), SRC_TABLE_FULL); /* all four in use */
  assert_null(rc.addr);
  /* a drains its bucket and leaves: its prefix stays (remembered), its address goes */
  assert_int_equal(src_unknown_take(s, &ra, now), SRC_OK);
  src_unref(s, &ra);
  assert_int_equal(src_limits_nodes(s), 3);
  /* c needs two nodes: one free slot, then a's idle prefix is evicted */
  assert_int_equal(src_ref(s, SA(c), &rc), SRC_OK);
  assert_int_equal(src_limits_nodes(s), 4);
  src_unref(s, &rb);
  src_unref(s, &rc);
  src_limits_free(s);
}

static void test_refusal_counters(void **state) {
  (void)state;
  src_limits_t *s = src_limits_new(NULL);
  src_refused(s, SRC_UNKNOWN_RATE, "192.0.2.1:1", 10);
  src_refused(s, SRC_UNKNOWN_RATE, "192.0.2.1:2", 20); /* counted, not logged again */
  src_refused(s, SRC_FETCHES_ADDR, "192.0.2.1:3", 30);
  assert_int_equal(src_refused_count(s, SRC_UNKNOWN_RATE), 2);
  assert_int_equal(src_refused_count(s, SRC_FETCHES_ADDR), 1);
  assert_int_equal(src_refused_count(s, SRC_HANDSHAKES_ADDR), 0);
  src_fetch_started(s);
  assert_int_equal(src_fetches_count(s), 1);
  assert_string_equal(src_reason_name(SRC_FETCHES_PREFIX), "fetches_per_prefix");
  /* no table: nothing is bounded, nothing breaks */
  src_ref_t r;
  struct sockaddr_storage a = v4("10.0.0.1", 1);
  assert_int_equal(src_ref(NULL, SA(a), &r), SRC_OK);
  assert_int_equal(src_hs_check(NULL, &r), SRC_OK);
  assert_int_equal(src_unknown_take(NULL, &r, 0), SRC_OK);
  src_hs_begin(&r);
  src_unref(NULL, &r);
  src_limits_free(s);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_half_open_per_addr_and_prefix),
      cmocka_unit_test(test_ipv6_prefix_and_mapped),
      cmocka_unit_test(test_unknown_bucket),
      cmocka_unit_test(test_table_bounded),
      cmocka_unit_test(test_refusal_counters),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
