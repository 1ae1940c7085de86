/* Unit tests for logging (core/log.h): line format, domain levels, secret redaction,
 * truncation, and whole lines from concurrent threads on stderr. */
#include <ctype.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "core/err.h"
#include "core/log.h"

#define HEX64 "0123456789abcdef0123456789ABCDEF0123456789abcdef0123456789abcdef"

typedef struct {
  char lines[16][4096];
  size_t n;
} capture_t;

static void capture_sink(const char *line, void *arg) {
  capture_t *c = arg;
  if (c->n < 16) snprintf(c->lines[c->n++], sizeof(c->lines[0]), "%s", line);
}

static capture_t g_cap;

static int setup(void **state) {
  (void)state;
  memset(&g_cap, 0, sizeof(g_cap));
  m5_log_set_level(M5_LOG_INFO);
  m5_log_set_sink(capture_sink, &g_cap);
  return 0;
}

static int teardown(void **state) {
  (void)state;
  m5_log_set_sink(NULL, NULL);
  return 0;
}

/* Redacts a copy of in and checks the result and that it did not grow. */
static void check_redact(const char *in, const char *want) {
  char buf[1024];
  snprintf(buf, sizeof(buf), "%s", in);
  size_t n = m5_log_redact(buf);
  assert_string_equal(buf, want);
  assert_int_equal(n, strlen(want));
  assert_true(n <= strlen(in));
}

static void test_redact_hex_keys(void **state) {
  (void)state;
  check_redact("K_AF derived: " HEX64 " for ue-1", "K_AF derived: <redacted> for ue-1");
  check_redact(HEX64, "<redacted>");
  /* exactly 32 hex digits (128 bits) is a key; 31 is not */
  check_redact("x 0123456789abcdef0123456789abcdef y", "x <redacted> y");
  check_redact("x 0123456789abcdef0123456789abcde y", "x 0123456789abcdef0123456789abcde y");
}

static void test_redact_leaves_ordinary_text(void **state) {
  (void)state;
  const char *plain[] = {
      "REG from ue-1@msgin5g, msgId=4f2a9c11deadbeef, 2.01 in 3 ms",
      "peer 127.0.0.1:5684 closed (DTLS alert 40)",
      "kafka=up tokens: 5 passwords-changed=2",
      "A-KID 0000.abcDEF_-09@5gc.mnc001.mcc001.3gppnetwork.org",
      "uuid 123e4567-e89b-12d3-a456-426614174000",
      "",
  };
  for (size_t i = 0; i < sizeof(plain) / sizeof(plain[0]); i++)
    check_redact(plain[i], plain[i]);
}

static void test_redact_key_values(void **state) {
  (void)state;
  check_redact("kaf=s3cr3tvalue-long-enough rest", "kaf=<redacted> rest");
  check_redact("{\"kaf\":\"a1b2c3d4e5f6a7b8c9\",\"expiry\":\"2026\"}",
               "{\"kaf\":\"<redacted>\",\"expiry\":\"2026\"}");
  check_redact("{\"kAkma\": \"abcdefghijklmnop\"}", "{\"kAkma\": \"<redacted>\"}");
  check_redact("KAUSF: hunter2hunter2hunter2", "KAUSF: <redacted>");
  check_redact("k_af = 'abcdefghijkl', k_akma=zzzzzzzzzzzz",
               "k_af = '<redacted>', k_akma=<redacted>");
  check_redact("GET /cb?a=1&token=eyJhbGciOiJFUzI1NiJ9&b=2", "GET /cb?a=1&token=<redacted>&b=2");
  check_redact("psk=abc secret:xy Password=topsecretpassword",
               "psk=*** secret:** Password=<redacted>");
  check_redact("authorization: Bearer eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJhcyJ9.sig",
               "authorization: Bearer <redacted>");
  check_redact("Authorization=opaque-credential-value", "Authorization=<redacted>");
  check_redact("client_secret=abcdefghijklmnop}", "client_secret=<redacted>}");
  /* K_AUSF under its 3GPP spelling, with a value that is not hex */
  check_redact("K_AUSF: AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8 ok", "K_AUSF: <redacted> ok");
  /* a quoted value is masked whole, not only up to its first space */
  check_redact("kaf=\"1234 5678 9abc\" x", "kaf=\"<redacted>\" x");
  check_redact("psk='ab cd'", "psk='*****'");
  /* JSON that was itself quoted into a JSON string */
  check_redact("body {\\\"kAkma\\\":\\\"s3cr3t s3cr3t\\\"}",
               "body {\\\"kAkma\\\":\\\"<redacted>\\\"}");
}

static void test_redact_separated_hex_bytes(void **state) {
  (void)state;
  /* a 256-bit key printed byte by byte, as key dumps do: no byte may survive */
  check_redact("K_AF: 00 01 02 03 04 05 06 07 08 09 0a 0b 0c 0d 0e 0f 10 11 12 13 14 15 16 17 18 "
               "19 1a 1b 1c 1d 1e 1f end",
               "K_AF: ** <redacted> end");
  check_redact("key 00:01:02:03:04:05:06:07:08:09:0A:0B:0C:0D:0E:0F:10:11:12:13:14:15:16:17:18:19:"
               "1a:1b:1c:1d:1e:1f",
               "key <redacted>");
  check_redact("k=00-01-02-03-04-05-06-07-08-09-0a-0b-0c-0d-0e-0f.", "k=<redacted>.");
  /* 15 pairs (120 bits) are not a key, nor are mixed separators, MACs, dates or IPv6 */
  check_redact("x 00 01 02 03 04 05 06 07 08 09 0a 0b 0c 0d 0e y",
               "x 00 01 02 03 04 05 06 07 08 09 0a 0b 0c 0d 0e y");
  check_redact("00:01:02:03:04:05:06:07 08 09 0a 0b 0c 0d 0e 0f",
               "00:01:02:03:04:05:06:07 08 09 0a 0b 0c 0d 0e 0f");
  check_redact("mac 02:42:ac:11:00:02 at 2026-11-29 12:00:00 from fe80::1:2:3:4",
               "mac 02:42:ac:11:00:02 at 2026-11-29 12:00:00 from fe80::1:2:3:4");
}

static void test_line_format(void **state) {
  (void)state;
  M5_LOGW("http", "stream %d reset", 7);
  assert_int_equal(g_cap.n, 1);
  const char *l = g_cap.lines[0];
  /* 2026-11-29T02:10:00.123Z */
  assert_true(strlen(l) > 24);
  const char *shape = "dddd-dd-ddTdd:dd:dd.dddZ";
  for (size_t i = 0; i < 24; i++) {
    if (shape[i] == 'd') {
      assert_true(isdigit((unsigned char)l[i]));
    } else {
      assert_int_equal(l[i], shape[i]);
    }
  }
  assert_string_equal(l + 24, " WARN  http: stream 7 reset");
}

static void test_log_lines_are_redacted_and_single(void **state) {
  (void)state;
  M5_LOGI("aanf", "answer {\"kaf\":\"%s\",\"supi\":\"imsi-001010000000001\"}", HEX64);
  M5_LOGE("coap", "bad payload \"line1\nline2\"\n");
  assert_int_equal(g_cap.n, 2);
  assert_non_null(strstr(g_cap.lines[0], "INFO  aanf: answer {\"kaf\":\"<redacted>\",\"supi\""));
  assert_null(strstr(g_cap.lines[0], "0123456789abcdef"));
  /* A peer's newline cannot start a forged line; the caller's trailing newline is dropped. */
  assert_non_null(strstr(g_cap.lines[1], "ERROR coap: bad payload \"line1?line2\""));
  assert_null(strchr(g_cap.lines[1], '\n'));
}

static void test_domain_levels(void **state) {
  (void)state;
  m5_log_set_level(M5_LOG_WARN);
  assert_int_equal(m5_log_set_domain_level("tls", M5_LOG_DEBUG), M5_OK);
  assert_int_equal(m5_log_set_domain_level("store", M5_LOG_ERROR), M5_OK);
  assert_true(m5_log_enabled(M5_LOG_DEBUG, "tls"));
  assert_false(m5_log_enabled(M5_LOG_INFO, "http"));
  assert_true(m5_log_enabled(M5_LOG_WARN, "http"));
  assert_false(m5_log_enabled(M5_LOG_WARN, "store"));

  M5_LOGI("http", "filtered");
  M5_LOGD("http", "filtered");
  M5_LOGW("store", "filtered");
  M5_LOGD("tls", "handshake %s", "ok");
  M5_LOGE("store", "disk full");
  assert_int_equal(g_cap.n, 2);
  assert_non_null(strstr(g_cap.lines[0], "DEBUG tls: handshake ok"));
  assert_non_null(strstr(g_cap.lines[1], "ERROR store: disk full"));

  /* Setting a domain again changes it rather than adding a second entry. */
  assert_int_equal(m5_log_set_domain_level("tls", M5_LOG_ERROR), M5_OK);
  assert_false(m5_log_enabled(M5_LOG_WARN, "tls"));
  assert_int_equal(m5_log_set_domain_level("", M5_LOG_ERROR), M5_EINVAL);
  m5_log_set_domain_level("tls", M5_LOG_INFO);
  m5_log_set_domain_level("store", M5_LOG_INFO);
}

static void test_level_parse(void **state) {
  (void)state;
  m5_log_level_t lv = M5_LOG_ERROR;
  assert_int_equal(m5_log_level_parse("debug", &lv), M5_OK);
  assert_int_equal(lv, M5_LOG_DEBUG);
  assert_int_equal(m5_log_level_parse("WARN", &lv), M5_OK);
  assert_int_equal(lv, M5_LOG_WARN);
  assert_int_equal(m5_log_level_parse("verbose", &lv), M5_EINVAL);
  assert_int_equal(lv, M5_LOG_WARN);
}

static void test_long_lines_truncated_after_redaction(void **state) {
  (void)state;
  char *msg = malloc(5000);
  assert_non_null(msg);
  /* The key straddles the 2 KiB cut: it must be masked whole, not cut and left half visible. */
  memset(msg, 'z', 1975);
  memcpy(msg + 1975, "deadbeef" HEX64, 72);
  memset(msg + 2047, 'y', 5000 - 2047 - 1);
  msg[4999] = '\0';
  M5_LOGI("msg", "%s", msg);
  free(msg);
  assert_int_equal(g_cap.n, 1);
  const char *l = g_cap.lines[0];
  size_t n = strlen(l);
  assert_true(n <= 2047); /* plus the newline: 2 KiB */
  assert_true(n > 2000);
  assert_string_equal(l + n - 3, "...");
  assert_non_null(strstr(l, "zzz<redacted>yyy"));
  assert_null(strstr(l, "deadbeef"));
}

/* ---- several threads writing to stderr at once ---- */

#define THREADS 4
#define LINES 300

static void *writer(void *arg) {
  int id = (int)(intptr_t)arg;
  char pad[600];
  memset(pad, 'q' + id, sizeof(pad) - 1);
  pad[sizeof(pad) - 1] = '\0';
  for (int i = 0; i < LINES; i++)
    M5_LOGI("thr", "t%d n%d %s end", id, i, pad);
  return NULL;
}

static void test_threads_never_interleave(void **state) {
  (void)state;
  m5_log_set_sink(NULL, NULL);
  char path[] = "/tmp/m5-test-log-XXXXXX";
  int fd = mkstemp(path);
  assert_true(fd >= 0);
  unlink(path); /* gone even if an assertion fails; the fd keeps it readable */
  int saved = dup(STDERR_FILENO);
  assert_true(saved >= 0);
  assert_int_equal(dup2(fd, STDERR_FILENO), STDERR_FILENO);

  pthread_t t[THREADS];
  for (int i = 0; i < THREADS; i++)
    assert_int_equal(pthread_create(&t[i], NULL, writer, (void *)(intptr_t)i), 0);
  for (int i = 0; i < THREADS; i++)
    pthread_join(t[i], NULL);

  dup2(saved, STDERR_FILENO);
  close(saved);
  FILE *f = fdopen(fd, "r");
  assert_non_null(f);
  rewind(f);
  char line[4096];
  int count[THREADS] = {0};
  while (fgets(line, sizeof(line), f)) {
    int id = -1, n = -1;
    char *p = strstr(line, " INFO  thr: t");
    assert_non_null(p);
    assert_int_equal(p - line, 24);
    assert_int_equal(sscanf(p, " INFO  thr: t%d n%d", &id, &n), 2);
    assert_true(id >= 0 && id < THREADS);
    char *pad = strchr(strchr(p + 13, ' ') + 1, ' ') + 1;
    for (int i = 0; i < 599; i++)
      assert_int_equal(pad[i], 'q' + id);
    assert_string_equal(pad + 599, " end\n");
    assert_int_equal(n, count[id]); /* each thread's lines in its own order */
    count[id]++;
  }
  for (int i = 0; i < THREADS; i++)
    assert_int_equal(count[i], LINES);
  fclose(f);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_redact_hex_keys),
      cmocka_unit_test(test_redact_separated_hex_bytes),
      cmocka_unit_test(test_redact_leaves_ordinary_text),
      cmocka_unit_test(test_redact_key_values),
      cmocka_unit_test_setup_teardown(test_line_format, setup, teardown),
      cmocka_unit_test_setup_teardown(test_log_lines_are_redacted_and_single, setup, teardown),
      cmocka_unit_test_setup_teardown(test_domain_levels, setup, teardown),
      cmocka_unit_test(test_level_parse),
      cmocka_unit_test_setup_teardown(test_long_lines_truncated_after_redaction, setup, teardown),
      cmocka_unit_test_setup_teardown(test_threads_never_interleave, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
