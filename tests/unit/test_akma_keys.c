/* Unit tests for the K_AF source (akma_keys.h) against the real m5-aanf: a development PKI
 * from `m5ctl pki init`, the AAnF started on random loopback ports with a generated config,
 * a subscriber registered with `m5ctl subscriber add`. K_AF is checked against our own
 * derivation (TS 33.535 A.2/A.4) from K_AUSF, for the TLS 1.3 and a TLS 1.2 Ua* id. */
#include "../../src/server/akma_keys.h" /* m5server exports no include directory */
#include "core/err.h"
#include "core/loop.h"
#include "crypto/akma.h"
#include "crypto/codec.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#ifndef M5_BIN_DIR
#error "M5_BIN_DIR must name the directory holding m5-aanf and m5ctl"
#endif

#define SUPI "001010123456789"
#define KAUSF "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"

static char g_dir[64];
static char g_pki[128], g_url[64];
static char g_akid[M5_AKMA_AKID_MAX + 1];
static uint8_t g_kakma[M5_AKMA_KEY_LEN];
static pid_t g_aanf = -1;

/* ---- processes ---- */

static int run(const char *fmt, ...) {
  char cmd[2048];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(cmd, sizeof cmd, fmt, ap);
  va_end(ap);
  char full[2300];
  snprintf(full, sizeof full, "cd %s && (%s) >>%s/setup.log 2>&1", g_dir, cmd, g_dir);
  return system(full);
}

static uint16_t pick_port(void) {
  return (uint16_t)(20000 + rand() % 40000);
}

/* GET /healthz on the management port: 1 when it answers 200. */
static int healthy(uint16_t port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return 0;
  struct timeval tv = {1, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  int ok = 0;
  if (connect(fd, (struct sockaddr *)&a, sizeof a) == 0) {
    static const char req[] =
        "GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
    char buf[64] = {0};
    if (write(fd, req, sizeof req - 1) == (ssize_t)(sizeof req - 1) &&
        read(fd, buf, sizeof buf - 1) > 12)
      ok = strncmp(buf, "HTTP/1.1 200", 12) == 0;
  }
  close(fd);
  return ok;
}

static void sleep_ms(unsigned ms) {
  struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
  nanosleep(&ts, NULL);
}

/* Starts m5-aanf on fresh random ports (retrying a lost port race); 0 once /healthz is 200. */
static int start_aanf(void) {
  for (int attempt = 0; attempt < 5; attempt++) {
    uint16_t port = pick_port(), mgmt = pick_port();
    if (port == mgmt) continue;
    char cfg[160];
    snprintf(cfg, sizeof cfg, "%s/aanf.yaml", g_dir);
    FILE *f = fopen(cfg, "w");
    if (!f) return -1;
    fprintf(f,
            "listen: {host: 127.0.0.1, port: %u}\n"
            "mgmt: {host: 127.0.0.1, port: %u}\n"
            "tls: {cert: %s/aanf.crt, key: %s/aanf.key, ca: %s/ca.crt}\n"
            "db: {path: %s/aanf/aanf.db}\n"
            "workers: 1\n"
            "afs:\n  allowed: [localhost]\n",
            (unsigned)port, (unsigned)mgmt, g_pki, g_pki, g_pki, g_dir);
    fclose(f);
    char log[160];
    snprintf(log, sizeof log, "%s/aanf.log", g_dir);
    pid_t pid = fork();
    if (pid < 0) return -1;
    if (pid == 0) {
      int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0600);
      if (fd >= 0) {
        dup2(fd, 1);
        dup2(fd, 2);
      }
      execl(M5_BIN_DIR "/m5-aanf", "m5-aanf", "--config", cfg, (char *)NULL);
      _exit(127);
    }
    for (int i = 0; i < 150; i++) {
      if (healthy(mgmt)) {
        g_aanf = pid;
        snprintf(g_url, sizeof g_url, "https://localhost:%u", (unsigned)port);
        return 0;
      }
      if (waitpid(pid, NULL, WNOHANG) == pid) {
        pid = -1;
        break;
      }
      sleep_ms(100);
    }
    if (pid > 0) {
      kill(pid, SIGKILL);
      waitpid(pid, NULL, 0);
    }
  }
  return -1;
}

static int setup(void **state) {
  (void)state;
  signal(SIGPIPE, SIG_IGN);
  srand((unsigned)(time(NULL) ^ getpid()));
  snprintf(g_dir, sizeof g_dir, "/tmp/m5akmakeys-XXXXXX");
  if (!mkdtemp(g_dir)) return -1;
  snprintf(g_pki, sizeof g_pki, "%s/pki", g_dir);
  /* "other": an AF certificate from the same CA whose dNSName is not on the allow-list. */
  if (run("timeout 60 %s/m5ctl pki init --dir %s", M5_BIN_DIR, g_pki) ||
      run("openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes "
          "-subj /CN=other -keyout pki/other.key -out pki/other.csr") ||
      run("printf 'subjectAltName=DNS:other.example\\nextendedKeyUsage=clientAuth\\n"
          "basicConstraints=critical,CA:FALSE\\n' > pki/other.ext") ||
      run("openssl x509 -req -in pki/other.csr -CA pki/ca.crt -CAkey pki/ca.key "
          "-CAcreateserial -days 2 -sha256 -extfile pki/other.ext -out pki/other.crt"))
    return -1;
  if (start_aanf() != 0) return -1;
  char cmd[512];
  snprintf(cmd, sizeof cmd,
           "timeout 30 %s/m5ctl subscriber add --supi %s --kausf %s --aanf %s --pki %s 2>&1",
           M5_BIN_DIR, SUPI, KAUSF, g_url, g_pki);
  FILE *p = popen(cmd, "r");
  if (!p) return -1;
  char line[512] = {0};
  char *got = fgets(line, sizeof line, p);
  int rc = pclose(p);
  const char *a = got ? strstr(line, " akid=") : NULL;
  if (rc != 0 || !a) {
    fprintf(stderr, "m5ctl subscriber add: %s\n", line);
    return -1;
  }
  snprintf(g_akid, sizeof g_akid, "%s", a + 6);
  g_akid[strcspn(g_akid, "\r\n")] = '\0';
  uint8_t kausf[M5_AKMA_KEY_LEN];
  size_t n;
  if (m5_hex_decode(KAUSF, kausf, sizeof kausf, &n) != M5_OK ||
      m5_akma_kakma(kausf, SUPI, g_kakma) != M5_OK)
    return -1;
  return 0;
}

static int teardown(void **state) {
  (void)state;
  if (g_aanf > 0) {
    kill(g_aanf, SIGCONT);
    kill(g_aanf, SIGTERM);
    int st;
    for (int i = 0; i < 50 && waitpid(g_aanf, &st, WNOHANG) == 0; i++)
      sleep_ms(100);
    kill(g_aanf, SIGKILL);
    waitpid(g_aanf, NULL, WNOHANG);
  }
  char cmd[128];
  snprintf(cmd, sizeof cmd, "rm -rf %s", g_dir);
  return system(cmd) == 0 ? 0 : -1;
}

/* ApplicationKey_Get requests the AAnF has answered so far (one log line each). */
static int aanf_requests(void) {
  char path[160], line[512];
  snprintf(path, sizeof path, "%s/aanf.log", g_dir);
  FILE *f = fopen(path, "r");
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
    sleep_ms(20);
    n = aanf_requests();
  }
  assert_int_equal(n, want);
}

/* The count once earlier requests' lines are all written (unchanged for 100 ms). */
static int settled_requests(void) {
  int n = aanf_requests();
  for (int i = 0; i < 20; i++) {
    sleep_ms(100);
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

static int g_done, g_want;

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

typedef struct {
  uint64_t deadline;
} pump_t;

static void pump_cb(m5_loop_t *loop, void *arg) {
  pump_t *p = arg;
  if (g_done >= g_want || m5_clock_mono_ms() > p->deadline) {
    m5_loop_stop(loop);
    return;
  }
  assert_true(m5_loop_timer_add(loop, 5, pump_cb, p) != 0);
}

/* Runs the loop until want callbacks have run since the last reset of g_done, or ms pass. */
static void run_until(m5_loop_t *loop, int want, unsigned ms) {
  pump_t p = {m5_clock_mono_ms() + ms};
  g_want = want;
  assert_true(m5_loop_timer_add(loop, 0, pump_cb, &p) != 0);
  m5_loop_run(loop);
  p.deadline = 0;
  g_want = 0;
  m5_loop_timer_add(loop, 0, pump_cb, &p);
  m5_loop_run(loop);
}

static akma_keys_t *keys_new_max(m5_loop_t *loop, const char *stem, uint32_t timeout_ms,
                                 size_t max_waiting, size_t max_cached) {
  char crt[160], key[160], ca[160], err[256];
  snprintf(crt, sizeof crt, "%s/%s.crt", g_pki, stem);
  snprintf(key, sizeof key, "%s/%s.key", g_pki, stem);
  snprintf(ca, sizeof ca, "%s/ca.crt", g_pki);
  akma_keys_opts_t o = {.aanf_url = g_url,
                        .cert_file = crt,
                        .key_file = key,
                        .ca_file = ca,
                        .timeout_ms = timeout_ms,
                        .max_waiting = max_waiting,
                        .max_cached = max_cached};
  akma_keys_t *k = akma_keys_new(loop, &o, err, sizeof err);
  if (!k) fail_msg("akma_keys_new: %s", err);
  return k;
}

static akma_keys_t *keys_new(m5_loop_t *loop, const char *stem, uint32_t timeout_ms,
                             size_t max_waiting) {
  return keys_new_max(loop, stem, timeout_ms, max_waiting, 0);
}

static void want_for(m5_akma_want_t *w, const char *akid, const char *fqdn, const uint8_t *ua) {
  memset(w, 0, sizeof *w);
  snprintf(w->akid, sizeof w->akid, "%s", akid);
  snprintf(w->fqdn, sizeof w->fqdn, "%s", fqdn);
  memcpy(w->ua, ua, M5_AKMA_UA_LEN);
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
  m5_loop_t *loop = m5_loop_new();
  akma_keys_t *k = keys_new(loop, "m5s", 0, 0);
  uint8_t tls13[M5_AKMA_UA_LEN], tls12[M5_AKMA_UA_LEN];
  m5_akma_ua_tls13(tls13);
  m5_akma_ua_tls12(0x00a8, tls12);
  m5_akma_want_t want;
  want_for(&want, g_akid, "localhost", tls13);
  m5_akma_key_t key;
  waiter_t w = {0};
  g_done = 0;
  int before = settled_requests();
  assert_int_equal(akma_keys_get(k, &want, &key, on_key, &w), M5_EAGAIN);
  assert_int_equal(w.calls, 0); /* never from inside get */
  run_until(loop, 1, 10000);
  assert_int_equal(w.calls, 1);
  assert_int_equal(w.status, 0);
  expect_key(&w.key, tls13);
  expect_requests(before + 1);

  /* From the cache, at once. */
  memset(&key, 0, sizeof key);
  waiter_t w2 = {0};
  assert_int_equal(akma_keys_get(k, &want, &key, on_key, &w2), M5_OK);
  expect_key(&key, tls13);
  run_until(loop, 2, 100);
  assert_int_equal(w2.calls, 0);
  expect_requests(before + 1);

  /* Another Ua* id is another key: uaSecProtId reaches the AAnF. */
  want_for(&want, g_akid, "localhost", tls12);
  g_done = 0;
  assert_int_equal(akma_keys_get(k, &want, &key, on_key, &w2), M5_EAGAIN);
  run_until(loop, 1, 10000);
  assert_int_equal(w2.status, 0);
  expect_key(&w2.key, tls12);
  assert_memory_not_equal(w.key.kaf, w2.key.kaf, M5_AKMA_KEY_LEN);
  akma_keys_free(k);
  m5_loop_free(loop);
}

/* At max_cached entries, a new one pushes out the earliest-expiring. */
static void test_eviction(void **state) {
  (void)state;
  m5_loop_t *loop = m5_loop_new();
  akma_keys_t *k = keys_new_max(loop, "m5s", 0, 0, 1);
  uint8_t tls13[M5_AKMA_UA_LEN], tls12[M5_AKMA_UA_LEN];
  m5_akma_ua_tls13(tls13);
  m5_akma_ua_tls12(0xccac, tls12);
  m5_akma_want_t a, b;
  want_for(&a, g_akid, "localhost", tls13);
  want_for(&b, g_akid, "localhost", tls12);
  m5_akma_key_t key;
  waiter_t w = {0};
  g_done = 0;
  assert_int_equal(akma_keys_get(k, &a, &key, on_key, &w), M5_EAGAIN);
  run_until(loop, 1, 10000);
  assert_int_equal(akma_keys_get(k, &a, &key, on_key, &w), M5_OK);
  assert_int_equal(akma_keys_get(k, &b, &key, on_key, &w), M5_EAGAIN);
  run_until(loop, 2, 10000);
  assert_int_equal(w.status, 0);
  expect_key(&w.key, tls12);
  assert_int_equal(akma_keys_get(k, &b, &key, on_key, &w), M5_OK);
  assert_int_equal(akma_keys_get(k, &a, &key, on_key, &w), M5_EAGAIN); /* evicted */
  run_until(loop, 3, 10000);
  assert_int_equal(w.calls, 3);
  expect_key(&w.key, tls13);
  akma_keys_free(k);
  m5_loop_free(loop);
}

/* Handshakes that want one key while it is being fetched share the request. */
static void test_concurrent_share(void **state) {
  (void)state;
  m5_loop_t *loop = m5_loop_new();
  akma_keys_t *k = keys_new(loop, "m5s", 0, 0);
  uint8_t ua[M5_AKMA_UA_LEN];
  m5_akma_ua_tls13(ua);
  m5_akma_want_t want;
  want_for(&want, g_akid, "localhost", ua);
  m5_akma_key_t key;
  waiter_t w[3];
  memset(w, 0, sizeof w);
  g_done = 0;
  int before = settled_requests();
  for (int i = 0; i < 3; i++)
    assert_int_equal(akma_keys_get(k, &want, &key, on_key, &w[i]), M5_EAGAIN);
  /* One waiter waits for one key at a time. */
  assert_int_equal(akma_keys_get(k, &want, &key, on_key, &w[0]), M5_EEXIST);
  run_until(loop, 3, 10000);
  for (int i = 0; i < 3; i++) {
    assert_int_equal(w[i].calls, 1);
    assert_int_equal(w[i].status, 0);
    expect_key(&w[i].key, ua);
  }
  expect_requests(before + 1);
  akma_keys_free(k);
  m5_loop_free(loop);
}

static void test_unknown_akid(void **state) {
  (void)state;
  m5_loop_t *loop = m5_loop_new();
  akma_keys_t *k = keys_new(loop, "m5s", 0, 0);
  uint8_t ua[M5_AKMA_UA_LEN];
  m5_akma_ua_tls13(ua);
  m5_akma_want_t want;
  want_for(&want, "0000.bm9ib2R5@5gc.mnc001.mcc001.3gppnetwork.org", "localhost", ua);
  m5_akma_key_t key;
  waiter_t w = {0};
  g_done = 0;
  assert_int_equal(akma_keys_get(k, &want, &key, on_key, &w), M5_EAGAIN);
  run_until(loop, 1, 10000);
  assert_int_equal(w.calls, 1);
  assert_int_equal(w.status, M5_ENOENT);
  /* Remembered for a second, then asked again. */
  assert_int_equal(akma_keys_get(k, &want, &key, on_key, &w), M5_ENOENT);
  run_until(loop, 100, 1100);
  assert_int_equal(akma_keys_get(k, &want, &key, on_key, &w), M5_EAGAIN);
  run_until(loop, 2, 10000);
  assert_int_equal(w.calls, 2);
  assert_int_equal(w.status, M5_ENOENT);
  akma_keys_free(k);
  m5_loop_free(loop);
}

/* An AF whose certificate names an FQDN that is not on the AAnF's allow-list. */
static void test_af_not_allowed(void **state) {
  (void)state;
  m5_loop_t *loop = m5_loop_new();
  akma_keys_t *k = keys_new(loop, "other", 0, 0);
  uint8_t ua[M5_AKMA_UA_LEN];
  m5_akma_ua_tls13(ua);
  m5_akma_want_t want;
  want_for(&want, g_akid, "other.example", ua);
  m5_akma_key_t key;
  waiter_t w = {0};
  g_done = 0;
  assert_int_equal(akma_keys_get(k, &want, &key, on_key, &w), M5_EAGAIN);
  run_until(loop, 1, 10000);
  assert_int_equal(w.calls, 1);
  assert_int_equal(w.status, M5_EPERM);
  /* Not cached: asked again. */
  assert_int_equal(akma_keys_get(k, &want, &key, on_key, &w), M5_EAGAIN);
  run_until(loop, 2, 10000);
  assert_int_equal(w.status, M5_EPERM);
  akma_keys_free(k);
  m5_loop_free(loop);
}

static void test_aanf_hung(void **state) {
  (void)state;
  m5_loop_t *loop = m5_loop_new();
  akma_keys_t *k = keys_new(loop, "m5s", 500, 0);
  uint8_t ua[M5_AKMA_UA_LEN];
  m5_akma_ua_tls13(ua);
  m5_akma_want_t want;
  want_for(&want, g_akid, "localhost", ua);
  m5_akma_key_t key;
  waiter_t w = {0};
  g_done = 0;
  assert_int_equal(kill(g_aanf, SIGSTOP), 0);
  uint64_t t0 = m5_clock_mono_ms();
  assert_int_equal(akma_keys_get(k, &want, &key, on_key, &w), M5_EAGAIN);
  run_until(loop, 1, 5000);
  uint64_t took = m5_clock_mono_ms() - t0;
  assert_int_equal(kill(g_aanf, SIGCONT), 0);
  assert_int_equal(w.calls, 1);
  assert_int_equal(w.status, M5_ETIMEDOUT);
  assert_true(took >= 450 && took < 3000);
  /* Not cached: once the AAnF is back, the key comes. */
  assert_int_equal(akma_keys_get(k, &want, &key, on_key, &w), M5_EAGAIN);
  run_until(loop, 2, 10000);
  assert_int_equal(w.status, 0);
  expect_key(&w.key, ua);
  akma_keys_free(k);
  m5_loop_free(loop);
}

static void test_cancel(void **state) {
  (void)state;
  m5_loop_t *loop = m5_loop_new();
  akma_keys_t *k = keys_new(loop, "m5s", 0, 0);
  uint8_t ua[M5_AKMA_UA_LEN];
  m5_akma_ua_tls13(ua);
  m5_akma_want_t want;
  want_for(&want, g_akid, "localhost", ua);
  m5_akma_key_t key;
  waiter_t gone = {0}, stays = {0};
  g_done = 0;
  assert_int_equal(akma_keys_get(k, &want, &key, on_key, &gone), M5_EAGAIN);
  assert_int_equal(akma_keys_get(k, &want, &key, on_key, &stays), M5_EAGAIN);
  akma_keys_cancel(k, &gone);
  akma_keys_cancel(k, &gone); /* a second cancel is harmless */
  run_until(loop, 1, 10000);
  run_until(loop, 100, 100);
  assert_int_equal(gone.calls, 0);
  assert_int_equal(stays.calls, 1);
  assert_int_equal(stays.status, 0);
  /* The answer was cached although its first waiter left. */
  assert_int_equal(akma_keys_get(k, &want, &key, on_key, &gone), M5_OK);
  akma_keys_free(k);
  m5_loop_free(loop);
}

static void test_bounds_and_free(void **state) {
  (void)state;
  m5_loop_t *loop = m5_loop_new();
  akma_keys_t *k = keys_new(loop, "m5s", 0, 2);
  uint8_t ua[M5_AKMA_UA_LEN];
  m5_akma_ua_tls13(ua);
  m5_akma_want_t want;
  m5_akma_key_t key;
  waiter_t w[3];
  memset(w, 0, sizeof w);
  g_done = 0;
  want_for(&want, g_akid, "localhost", ua);
  assert_int_equal(akma_keys_get(k, &want, &key, on_key, &w[0]), M5_EAGAIN);
  want_for(&want, "0000.b3RoZXI@5gc.mnc001.mcc001.3gppnetwork.org", "localhost", ua);
  assert_int_equal(akma_keys_get(k, &want, &key, on_key, &w[1]), M5_EAGAIN);
  assert_int_equal(akma_keys_get(k, &want, &key, on_key, &w[2]), M5_EFULL);
  want_for(&want, "", "localhost", ua);
  assert_int_equal(akma_keys_get(k, &want, &key, on_key, &w[2]), M5_EINVAL);
  /* Freed while both wait: each hears M5_ECLOSED once, before free returns. */
  akma_keys_free(k);
  for (int i = 0; i < 2; i++) {
    assert_int_equal(w[i].calls, 1);
    assert_int_equal(w[i].status, M5_ECLOSED);
  }
  assert_int_equal(w[2].calls, 0);
  run_until(loop, 100, 100);
  assert_int_equal(g_done, 2);
  m5_loop_free(loop);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_fetch_then_cache), cmocka_unit_test(test_eviction),
      cmocka_unit_test(test_concurrent_share), cmocka_unit_test(test_unknown_akid),
      cmocka_unit_test(test_af_not_allowed),   cmocka_unit_test(test_aanf_hung),
      cmocka_unit_test(test_cancel),           cmocka_unit_test(test_bounds_and_free),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
