/* Unit tests for the K_AF source (akma_keys.h) against the real m5-aanf: a development PKI
 * from `m5ctl pki init`, the AAnF started on random loopback ports with a generated config,
 * a subscriber registered with `m5ctl subscriber add`. K_AF is checked against our own
 * derivation (TS 33.535 A.2/A.4) from K_AUSF, for the TLS 1.3 and a TLS 1.2 Ua* id. */
#include "core/err.h"
#include "core/loop.h"
#include "crypto/akma.h"
#include "crypto/codec.h"
#include "server/ue/akma_keys.h"

#include "testutil.h"

#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#define SUPI "001010123456789"
#define KAUSF "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"

static char g_dir[64];
static char g_pki[128];
static char g_akid[M5_AKMA_AKID_MAX + 1];
static uint8_t g_kakma[M5_AKMA_KEY_LEN];
static tu_aanf_t g_aanf;

/* ---- processes ---- */

static int setup(void **state) {
  (void)state;
  tu_process_init();
  if (tu_mkdtemp(g_dir, sizeof g_dir, "m5akmakeys")) return -1;
  snprintf(g_pki, sizeof g_pki, "%s/pki", g_dir);
  /* "other": an AF certificate from the same CA whose dNSName is not on the allow-list. */
  if (tu_m5ctl_pki_init(g_dir, g_pki) ||
      tu_pki_leaf(g_pki, "ca", "other", "other",
                  "subjectAltName=DNS:other.example\nextendedKeyUsage=clientAuth\n"
                  "basicConstraints=critical,CA:FALSE\n") ||
      tu_aanf_start(&g_aanf, g_dir, "aanf", g_pki, NULL) ||
      tu_subscriber_add(g_dir, &g_aanf, g_pki, SUPI, KAUSF, g_akid, sizeof g_akid))
    return -1;
  uint8_t kausf[M5_AKMA_KEY_LEN];
  size_t n;
  if (m5_hex_decode(KAUSF, kausf, sizeof kausf, &n) != M5_OK ||
      m5_akma_kakma(kausf, SUPI, g_kakma) != M5_OK)
    return -1;
  return 0;
}

static int teardown(void **state) {
  (void)state;
  tu_aanf_stop(&g_aanf);
  return tu_rmtree(g_dir);
}

/* ApplicationKey_Get requests the AAnF has answered so far (one log line each). */
static int aanf_requests(void) {
  char line[512];
  FILE *f = fopen(g_aanf.log, "r");
  assert_non_null(f);
  int n = 0;
  while (fgets(line, sizeof line, f))
    n += strstr(line, "POST /naanf-akma/v1/retrieve-applicationkey ") != NULL;
  fclose(f);
  return n;
}

/* The AAnF logs a request around the time it answers: wait a little for the line. */
static void expect_requests(int want) {
  int n = aanf_requests();
  for (int i = 0; i < 100 && n < want; i++) {
    tu_sleep_ms(20);
    n = aanf_requests();
  }
  assert_int_equal(n, want);
}

/* The count once earlier requests' lines are all written (unchanged for 100 ms). */
static int settled_requests(void) {
  int n = aanf_requests();
  for (int i = 0; i < 20; i++) {
    tu_sleep_ms(100);
    int m = aanf_requests();
    if (m == n) break;
    n = m;
  }
  return n;
}

/* ---- driving the loop ---- */

typedef struct {
  int calls;
  int status;
  m5_akma_key_t key;
} waiter_t;

static int g_done;

static void on_key(void *arg, int status, const m5_akma_key_t *key) {
  waiter_t *w = arg;
  w->calls++;
  w->status = status;
  if (status == 0) {
    assert_non_null(key);
    w->key = *key;
  } else {
    assert_null(key);
  }
  g_done++;
}

/* Runs the loop until want callbacks have run since the last reset of g_done, or ms pass. */
static void run_until(m5_loop_t *loop, int want, unsigned ms) {
  tu_loop_run_until(loop, &g_done, want, ms);
}

static void want_for(m5_akma_want_t *w, const char *akid, const char *fqdn, const uint8_t *ua) {
  memset(w, 0, sizeof *w);
  snprintf(w->akid, sizeof w->akid, "%s", akid);
  snprintf(w->fqdn, sizeof w->fqdn, "%s", fqdn);
  memcpy(w->ua, ua, M5_AKMA_UA_LEN);
}

/* What every test starts from: a loop, a K_AF source with the AF certificate <stem>, and a
 * want for the subscriber's key for localhost over TLS 1.3. */
typedef struct {
  m5_loop_t *loop;
  akma_keys_t *k;
  uint8_t ua[M5_AKMA_UA_LEN];
  m5_akma_want_t want;
  m5_akma_key_t key;
} fixture_t;

static size_t g_max_fetches; /* for the next fixture_init; 0 = the default */

static void fixture_init(fixture_t *f, const char *stem, uint32_t timeout_ms, size_t max_waiting,
                         size_t max_cached) {
  memset(f, 0, sizeof *f);
  f->loop = m5_loop_new();
  assert_non_null(f->loop);
  char crt[160], key[160], ca[160], err[256];
  snprintf(crt, sizeof crt, "%s/%s.crt", g_pki, stem);
  snprintf(key, sizeof key, "%s/%s.key", g_pki, stem);
  snprintf(ca, sizeof ca, "%s/ca.crt", g_pki);
  akma_keys_opts_t o = {.aanf_url = g_aanf.url,
                        .cert_file = crt,
                        .key_file = key,
                        .ca_file = ca,
                        .timeout_ms = timeout_ms,
                        .max_waiting = max_waiting,
                        .max_cached = max_cached,
                        .max_fetches = g_max_fetches};
  f->k = akma_keys_new(f->loop, &o, err, sizeof err);
  if (!f->k) fail_msg("akma_keys_new: %s", err);
  m5_akma_ua_tls13(f->ua);
  want_for(&f->want, g_akid, "localhost", f->ua);
  g_done = 0;
}

static void fixture_free(fixture_t *f) {
  if (f->k) akma_keys_free(f->k);
  m5_loop_free(f->loop);
}

static void expect_key(const m5_akma_key_t *key, const uint8_t ua[M5_AKMA_UA_LEN]) {
  uint8_t want[M5_AKMA_KEY_LEN];
  assert_int_equal(m5_akma_kaf(g_kakma, "localhost", ua, want), M5_OK);
  assert_memory_equal(key->kaf, want, sizeof want);
  assert_string_equal(key->supi, SUPI);
  int64_t now = (int64_t)time(NULL);
  /* kaf.lifetime_s defaults to 3600. */
  assert_true(key->expiry > now + 3500 && key->expiry <= now + 3601);
}

/* ---- tests ---- */

static void test_fetch_then_cache(void **state) {
  (void)state;
  fixture_t f;
  fixture_init(&f, "m5s", 0, 0, 0);
  uint8_t tls12[M5_AKMA_UA_LEN];
  m5_akma_ua_tls12(0x00a8, tls12);
  waiter_t w = {0};
  int before = settled_requests();
  assert_int_equal(akma_keys_get(f.k, &f.want, &f.key, on_key, &w), M5_EAGAIN);
  assert_int_equal(w.calls, 0); /* never from inside get */
  run_until(f.loop, 1, 10000);
  assert_int_equal(w.calls, 1);
  assert_int_equal(w.status, 0);
  expect_key(&w.key, f.ua);
  expect_requests(before + 1);

  /* From the cache, at once. */
  memset(&f.key, 0, sizeof f.key);
  waiter_t w2 = {0};
  assert_int_equal(akma_keys_get(f.k, &f.want, &f.key, on_key, &w2), M5_OK);
  expect_key(&f.key, f.ua);
  run_until(f.loop, 2, 100);
  assert_int_equal(w2.calls, 0);
  expect_requests(before + 1);

  /* Another Ua* id is another key: uaSecProtId reaches the AAnF. */
  want_for(&f.want, g_akid, "localhost", tls12);
  g_done = 0;
  assert_int_equal(akma_keys_get(f.k, &f.want, &f.key, on_key, &w2), M5_EAGAIN);
  run_until(f.loop, 1, 10000);
  assert_int_equal(w2.status, 0);
  expect_key(&w2.key, tls12);
  assert_memory_not_equal(w.key.kaf, w2.key.kaf, M5_AKMA_KEY_LEN);
  fixture_free(&f);
}

/* At max_cached entries, a new one pushes out the earliest-expiring. */
static void test_eviction(void **state) {
  (void)state;
  fixture_t f;
  fixture_init(&f, "m5s", 0, 0, 1);
  uint8_t tls12[M5_AKMA_UA_LEN];
  m5_akma_ua_tls12(0xccac, tls12);
  m5_akma_want_t b;
  want_for(&b, g_akid, "localhost", tls12);
  waiter_t w = {0};
  assert_int_equal(akma_keys_get(f.k, &f.want, &f.key, on_key, &w), M5_EAGAIN);
  run_until(f.loop, 1, 10000);
  assert_int_equal(akma_keys_get(f.k, &f.want, &f.key, on_key, &w), M5_OK);
  assert_int_equal(akma_keys_get(f.k, &b, &f.key, on_key, &w), M5_EAGAIN);
  run_until(f.loop, 2, 10000);
  assert_int_equal(w.status, 0);
  expect_key(&w.key, tls12);
  assert_int_equal(akma_keys_get(f.k, &b, &f.key, on_key, &w), M5_OK);
  assert_int_equal(akma_keys_get(f.k, &f.want, &f.key, on_key, &w), M5_EAGAIN); /* evicted */
  run_until(f.loop, 3, 10000);
  assert_int_equal(w.calls, 3);
  expect_key(&w.key, f.ua);
  fixture_free(&f);
}

/* Handshakes that want one key while it is being fetched share the request. */
static void test_concurrent_share(void **state) {
  (void)state;
  fixture_t f;
  fixture_init(&f, "m5s", 0, 0, 0);
  waiter_t w[3];
  memset(w, 0, sizeof w);
  int before = settled_requests();
  for (int i = 0; i < 3; i++)
    assert_int_equal(akma_keys_get(f.k, &f.want, &f.key, on_key, &w[i]), M5_EAGAIN);
  /* One waiter waits for one key at a time. */
  assert_int_equal(akma_keys_get(f.k, &f.want, &f.key, on_key, &w[0]), M5_EEXIST);
  run_until(f.loop, 3, 10000);
  for (int i = 0; i < 3; i++) {
    assert_int_equal(w[i].calls, 1);
    assert_int_equal(w[i].status, 0);
    expect_key(&w[i].key, f.ua);
  }
  expect_requests(before + 1);
  fixture_free(&f);
}

static void test_unknown_akid(void **state) {
  (void)state;
  fixture_t f;
  fixture_init(&f, "m5s", 0, 0, 0);
  want_for(&f.want, "0000.bm9ib2R5@5gc.mnc001.mcc001.3gppnetwork.org", "localhost", f.ua);
  waiter_t w = {0};
  assert_int_equal(akma_keys_get(f.k, &f.want, &f.key, on_key, &w), M5_EAGAIN);
  run_until(f.loop, 1, 10000);
  assert_int_equal(w.calls, 1);
  assert_int_equal(w.status, M5_ENOENT);
  /* Remembered for a second, then asked again. */
  assert_int_equal(akma_keys_get(f.k, &f.want, &f.key, on_key, &w), M5_ENOENT);
  run_until(f.loop, 100, 1100);
  assert_int_equal(akma_keys_get(f.k, &f.want, &f.key, on_key, &w), M5_EAGAIN);
  run_until(f.loop, 2, 10000);
  assert_int_equal(w.calls, 2);
  assert_int_equal(w.status, M5_ENOENT);
  fixture_free(&f);
}

/* An AF whose certificate names an FQDN that is not on the AAnF's allow-list. */
static void test_af_not_allowed(void **state) {
  (void)state;
  fixture_t f;
  fixture_init(&f, "other", 0, 0, 0);
  want_for(&f.want, g_akid, "other.example", f.ua);
  waiter_t w = {0};
  assert_int_equal(akma_keys_get(f.k, &f.want, &f.key, on_key, &w), M5_EAGAIN);
  run_until(f.loop, 1, 10000);
  assert_int_equal(w.calls, 1);
  assert_int_equal(w.status, M5_EPERM);
  /* Not cached: asked again. */
  assert_int_equal(akma_keys_get(f.k, &f.want, &f.key, on_key, &w), M5_EAGAIN);
  run_until(f.loop, 2, 10000);
  assert_int_equal(w.status, M5_EPERM);
  fixture_free(&f);
}

static void test_aanf_hung(void **state) {
  (void)state;
  fixture_t f;
  fixture_init(&f, "m5s", 500, 0, 0);
  waiter_t w = {0};
  assert_int_equal(kill(g_aanf.pid, SIGSTOP), 0);
  uint64_t t0 = m5_clock_mono_ms();
  assert_int_equal(akma_keys_get(f.k, &f.want, &f.key, on_key, &w), M5_EAGAIN);
  run_until(f.loop, 1, 5000);
  uint64_t took = m5_clock_mono_ms() - t0;
  assert_int_equal(kill(g_aanf.pid, SIGCONT), 0);
  assert_int_equal(w.calls, 1);
  assert_int_equal(w.status, M5_ETIMEDOUT);
  assert_true(took >= 450 && took < 3000);
  /* Not cached: once the AAnF is back, the key comes. */
  assert_int_equal(akma_keys_get(f.k, &f.want, &f.key, on_key, &w), M5_EAGAIN);
  run_until(f.loop, 2, 10000);
  assert_int_equal(w.status, 0);
  expect_key(&w.key, f.ua);
  fixture_free(&f);
}

static void test_cancel(void **state) {
  (void)state;
  fixture_t f;
  fixture_init(&f, "m5s", 0, 0, 0);
  waiter_t gone = {0}, stays = {0};
  assert_int_equal(akma_keys_get(f.k, &f.want, &f.key, on_key, &gone), M5_EAGAIN);
  assert_int_equal(akma_keys_get(f.k, &f.want, &f.key, on_key, &stays), M5_EAGAIN);
  akma_keys_cancel(f.k, &gone);
  akma_keys_cancel(f.k, &gone); /* a second cancel is harmless */
  run_until(f.loop, 1, 10000);
  run_until(f.loop, 100, 100);
  assert_int_equal(gone.calls, 0);
  assert_int_equal(stays.calls, 1);
  assert_int_equal(stays.status, 0);
  /* The answer was cached although its first waiter left. */
  assert_int_equal(akma_keys_get(f.k, &f.want, &f.key, on_key, &gone), M5_OK);
  fixture_free(&f);
}

/* A request whose every waiter has gone (the handshakes that wanted it ended) holds no slot:
 * it is cancelled, and a new request fits under max_fetches at once, with the AAnF hung. */
static void test_abandoned_request_frees_its_slot(void **state) {
  (void)state;
  fixture_t f;
  g_max_fetches = 2;
  fixture_init(&f, "m5s", 5000, 0, 0);
  g_max_fetches = 0;
  m5_akma_want_t a = f.want, b, c;
  want_for(&b, "0000.YmJi@5gc.mnc001.mcc001.3gppnetwork.org", "localhost", f.ua);
  want_for(&c, "0000.Y2Nj@5gc.mnc001.mcc001.3gppnetwork.org", "localhost", f.ua);
  waiter_t w[4];
  memset(w, 0, sizeof w);
  assert_int_equal(kill(g_aanf.pid, SIGSTOP), 0);
  assert_int_equal(akma_keys_peek(f.k, &a), AKMA_KEYS_MISS);
  assert_int_equal(akma_keys_get(f.k, &a, &f.key, on_key, &w[0]), M5_EAGAIN);
  assert_int_equal(akma_keys_get(f.k, &a, &f.key, on_key, &w[3]), M5_EAGAIN); /* joins */
  assert_int_equal(akma_keys_peek(f.k, &a), AKMA_KEYS_PENDING);
  assert_int_equal(akma_keys_get(f.k, &b, &f.key, on_key, &w[1]), M5_EAGAIN);
  assert_int_equal(akma_keys_pending(f.k), 2);
  assert_int_equal(akma_keys_get(f.k, &c, &f.key, on_key, &w[2]), M5_EFULL);
  akma_keys_cancel(f.k, &w[0]); /* one waiter of a left: the request goes on */
  assert_int_equal(akma_keys_pending(f.k), 2);
  akma_keys_cancel(f.k, &w[3]); /* the last one: cancelled, its slot free */
  assert_int_equal(akma_keys_pending(f.k), 1);
  assert_int_equal(akma_keys_peek(f.k, &a), AKMA_KEYS_MISS);
  assert_int_equal(akma_keys_get(f.k, &c, &f.key, on_key, &w[2]), M5_EAGAIN);
  assert_int_equal(kill(g_aanf.pid, SIGCONT), 0);
  run_until(f.loop, 2, 10000);
  run_until(f.loop, 100, 100);
  assert_int_equal(w[0].calls + w[3].calls, 0);
  assert_int_equal(w[1].calls, 1);
  assert_int_equal(w[1].status, M5_ENOENT);
  assert_int_equal(w[2].calls, 1);
  assert_int_equal(akma_keys_pending(f.k), 0);
  assert_int_equal(akma_keys_peek(f.k, &b), AKMA_KEYS_HIT); /* "no context" remembered */
  fixture_free(&f);
}

static void test_bounds_and_free(void **state) {
  (void)state;
  fixture_t f;
  fixture_init(&f, "m5s", 0, 2, 0);
  waiter_t w[3];
  memset(w, 0, sizeof w);
  assert_int_equal(akma_keys_get(f.k, &f.want, &f.key, on_key, &w[0]), M5_EAGAIN);
  want_for(&f.want, "0000.b3RoZXI@5gc.mnc001.mcc001.3gppnetwork.org", "localhost", f.ua);
  assert_int_equal(akma_keys_get(f.k, &f.want, &f.key, on_key, &w[1]), M5_EAGAIN);
  assert_int_equal(akma_keys_get(f.k, &f.want, &f.key, on_key, &w[2]), M5_EFULL);
  want_for(&f.want, "", "localhost", f.ua);
  assert_int_equal(akma_keys_get(f.k, &f.want, &f.key, on_key, &w[2]), M5_EINVAL);
  /* Freed while both wait: each hears M5_ECLOSED once, before free returns. */
  akma_keys_free(f.k);
  f.k = NULL;
  for (int i = 0; i < 2; i++) {
    assert_int_equal(w[i].calls, 1);
    assert_int_equal(w[i].status, M5_ECLOSED);
  }
  assert_int_equal(w[2].calls, 0);
  run_until(f.loop, 100, 100);
  assert_int_equal(g_done, 2);
  fixture_free(&f);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_fetch_then_cache), cmocka_unit_test(test_eviction),
      cmocka_unit_test(test_concurrent_share), cmocka_unit_test(test_unknown_akid),
      cmocka_unit_test(test_af_not_allowed),   cmocka_unit_test(test_aanf_hung),
      cmocka_unit_test(test_cancel),           cmocka_unit_test(test_bounds_and_free),
      cmocka_unit_test(test_abandoned_request_frees_its_slot),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
