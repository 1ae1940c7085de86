/* Unit tests for the YAML configuration loader (core/config.h): defaults, every type,
 * bounds, and error messages that name the file, the line and the key. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "core/config.h"
#include "core/err.h"

typedef struct {
  char *name;
  int64_t port;
  int64_t workers;
  int verbose;
  char *cert;
  m5_strlist_t fqdns;
  m5_strlist_t allow;
} conf_t;

static const m5_cfg_item_t g_items[] = {
    {"name", M5_CFG_STR, offsetof(conf_t, name), "m5s", 0, 0, "node name"},
    {"tls.port", M5_CFG_INT, offsetof(conf_t, port), "7443", 1, 65535, "TLS port"},
    {"workers", M5_CFG_INT, offsetof(conf_t, workers), "0", -1, 256, "worker threads"},
    {"log.verbose", M5_CFG_BOOL, offsetof(conf_t, verbose), "false", 0, 0, "chatty logs"},
    {"tls.cert", M5_CFG_STR, offsetof(conf_t, cert), NULL, 0, 0, "certificate file"},
    {"akma.fqdns", M5_CFG_STRLIST, offsetof(conf_t, fqdns), "localhost, m5s.local", 0, 0,
     "AF names"},
    {"akma.allow", M5_CFG_STRLIST, offsetof(conf_t, allow), NULL, 0, 0, "allowed AFs"},
};
#define NITEMS (sizeof(g_items) / sizeof(g_items[0]))

/* A temporary config file holding text; its path is returned in path (removed by the test). */
static void write_tmp(char path[64], const char *text) {
  snprintf(path, 64, "/tmp/m5-test-cfg-XXXXXX");
  int fd = mkstemp(path);
  assert_true(fd >= 0);
  size_t n = strlen(text);
  assert_int_equal(write(fd, text, n), (ssize_t)n);
  close(fd);
}

/* Loads text; returns the status with the message (path replaced by "F") in err. */
static int load_text(const char *text, conf_t *c, char *err, size_t errlen) {
  char path[64];
  write_tmp(path, text);
  char raw[512];
  int rc = m5_config_load(path, g_items, NITEMS, c, raw, sizeof(raw));
  unlink(path);
  size_t pl = strlen(path);
  if (strncmp(raw, path, pl) == 0) {
    snprintf(err, errlen, "F%s", raw + pl);
  } else {
    snprintf(err, errlen, "%s", raw);
  }
  return rc;
}

/* Asserts that text fails with M5_EINVAL and exactly the message want. */
static void expect_error(const char *text, const char *want) {
  conf_t c;
  char err[512];
  assert_int_equal(load_text(text, &c, err, sizeof(err)), M5_EINVAL);
  assert_string_equal(err, want);
  /* Nothing is left allocated after a failure; freeing again is harmless. */
  assert_null(c.name);
  assert_null(c.fqdns.v);
  m5_config_free(g_items, NITEMS, &c);
}

static void test_defaults_without_file(void **state) {
  (void)state;
  conf_t c;
  char err[256];
  assert_int_equal(m5_config_load(NULL, g_items, NITEMS, &c, err, sizeof(err)), M5_OK);
  assert_string_equal(c.name, "m5s");
  assert_int_equal(c.port, 7443);
  assert_int_equal(c.workers, 0);
  assert_int_equal(c.verbose, 0);
  assert_string_equal(c.cert, "");
  assert_int_equal(c.fqdns.n, 2);
  assert_string_equal(c.fqdns.v[0], "localhost");
  assert_string_equal(c.fqdns.v[1], "m5s.local");
  assert_int_equal(c.allow.n, 0);
  m5_config_free(g_items, NITEMS, &c);
  assert_null(c.name);
  assert_null(c.fqdns.v);
}

static void test_every_type_from_file(void **state) {
  (void)state;
  conf_t c;
  char err[512];
  int rc = load_text("# m5s settings\n"
                     "name: \"node 7\"\n"
                     "tls:\n"
                     "  port: 8443\n"
                     "  cert: ./var/pki/server.crt\n"
                     "workers: -1\n"
                     "log:\n"
                     "  verbose: yes\n"
                     "akma:\n"
                     "  fqdns:\n"
                     "    - m5s.example.org\n"
                     "  allow: [af1.example, af2.example, af3.example]\n",
                     &c, err, sizeof(err));
  assert_int_equal(rc, M5_OK);
  assert_string_equal(err, "");
  assert_string_equal(c.name, "node 7");
  assert_int_equal(c.port, 8443);
  assert_string_equal(c.cert, "./var/pki/server.crt");
  assert_int_equal(c.workers, -1);
  assert_int_equal(c.verbose, 1);
  assert_int_equal(c.fqdns.n, 1); /* the file's list replaces the default */
  assert_string_equal(c.fqdns.v[0], "m5s.example.org");
  assert_int_equal(c.allow.n, 3);
  assert_string_equal(c.allow.v[2], "af3.example");
  m5_config_free(g_items, NITEMS, &c);
}

static void test_bool_spellings(void **state) {
  (void)state;
  const char *yes[] = {"true", "True", "yes", "on", "ON"};
  const char *no[] = {"false", "no", "off", "Off"};
  for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]) + sizeof(no) / sizeof(no[0]); i++) {
    int want = i < sizeof(yes) / sizeof(yes[0]);
    const char *word = want ? yes[i] : no[i - sizeof(yes) / sizeof(yes[0])];
    char text[64];
    snprintf(text, sizeof(text), "log: {verbose: %s}\n", word);
    conf_t c;
    char err[256];
    assert_int_equal(load_text(text, &c, err, sizeof(err)), M5_OK);
    assert_int_equal(c.verbose, want);
    m5_config_free(g_items, NITEMS, &c);
  }
}

static void test_partial_file_keeps_other_defaults(void **state) {
  (void)state;
  conf_t c;
  char err[256];
  assert_int_equal(load_text("tls.port: 9000\ntls: {}\n", &c, err, sizeof(err)), M5_OK);
  assert_int_equal(c.port, 9000);
  assert_string_equal(c.name, "m5s");
  assert_int_equal(c.fqdns.n, 2);
  m5_config_free(g_items, NITEMS, &c);
}

static void test_empty_files_are_valid(void **state) {
  (void)state;
  const char *texts[] = {"", "# nothing set\n", "---\n", "tls:\nlog:\nakma:\n  allow:\n"};
  for (size_t i = 0; i < sizeof(texts) / sizeof(texts[0]); i++) {
    conf_t c;
    char err[256];
    assert_int_equal(load_text(texts[i], &c, err, sizeof(err)), M5_OK);
    assert_int_equal(c.port, 7443);
    assert_int_equal(c.allow.n, 0);
    m5_config_free(g_items, NITEMS, &c);
  }
}

static void test_int_errors(void **state) {
  (void)state;
  expect_error("name: x\ntls:\n  port: abc\n",
               "F:3: tls.port: expected an integer in 1..65535, got 'abc'");
  expect_error("tls:\n  port: 65536\n",
               "F:2: tls.port: expected an integer in 1..65535, got '65536'");
  expect_error("tls:\n  port: 0\n", "F:2: tls.port: expected an integer in 1..65535, got '0'");
  expect_error("workers: 12x\n", "F:1: workers: expected an integer in -1..256, got '12x'");
  expect_error("workers: 99999999999999999999\n",
               "F:1: workers: expected an integer in -1..256, got '99999999999999999999'");
  expect_error("workers: ' 3'\n", "F:1: workers: expected an integer in -1..256, got ' 3'");
}

static void test_bounds_are_inclusive(void **state) {
  (void)state;
  conf_t c;
  char err[256];
  assert_int_equal(load_text("tls: {port: 65535}\nworkers: 256\n", &c, err, sizeof(err)), M5_OK);
  assert_int_equal(c.port, 65535);
  assert_int_equal(c.workers, 256);
  m5_config_free(g_items, NITEMS, &c);
}

static void test_bad_bool(void **state) {
  (void)state;
  expect_error("log:\n  verbose: maybe\n", "F:2: log.verbose: expected true or false, got 'maybe'");
  expect_error("log:\n  verbose: 1\n", "F:2: log.verbose: expected true or false, got '1'");
}

static void test_unknown_keys(void **state) {
  (void)state;
  expect_error("name: a\ntls:\n  crt: x.pem\n",
               "F:3: unknown key 'tls.crt' (did you mean 'tls.cert'?)");
  expect_error("listen: 1\n", "F:1: unknown key 'listen'");
  expect_error("tls:\n  port: 1\n  extra:\n    deep: 1\n", "F:3: unknown key 'tls.extra'");
}

static void test_shape_errors(void **state) {
  (void)state;
  expect_error("tls: 7443\n", "F:1: tls: expected a mapping of tls.* settings, got '7443'");
  expect_error("tls:\n  port:\n    value: 1\n",
               "F:3: tls.port: expected a single value, got a mapping");
  expect_error("name: [a, b]\n", "F:1: name: expected a single value, got a list");
  expect_error("akma:\n  fqdns: m5s.example.org\n",
               "F:2: akma.fqdns: expected a list such as [a, b], got 'm5s.example.org'");
  expect_error("akma:\n  fqdns:\n    - a\n    - [b, c]\n",
               "F:4: akma.fqdns: list entries must be single values, got a list");
  expect_error("- a\n- b\n", "F:1: expected a mapping of settings (key: value), got a list");
  expect_error("just text\n",
               "F:1: expected a mapping of settings (key: value), got a single value");
}

static void test_duplicate_keys(void **state) {
  (void)state;
  expect_error("tls:\n  port: 1\n  port: 2\n",
               "F:3: tls.port: duplicate key (first set on line 2)");
  expect_error("tls:\n  port: 1\nname: a\ntls:\n  cert: b\n",
               "F:4: tls: duplicate key (first set on line 1)");
  expect_error("tls:\n  port: 1\ntls.port: 2\n",
               "F:3: tls.port: duplicate key (first set on line 2)");
}

static void test_yaml_syntax_error_has_line(void **state) {
  (void)state;
  conf_t c;
  char err[512];
  assert_int_equal(load_text("name: a\ntls:\n  port: 1\n bad: [\n", &c, err, sizeof(err)),
                   M5_EINVAL);
  assert_true(strncmp(err, "F:4: invalid YAML: ", 19) == 0);
  assert_int_equal(load_text("workers: 1\nname: \"unterminated\n", &c, err, sizeof(err)),
                   M5_EINVAL);
  assert_string_equal(err, "F:3: invalid YAML: found unexpected end of stream while scanning a "
                           "quoted scalar (started on line 2)");
  expect_error("name: a\n---\nname: b\n",
               "F:2: only one YAML document is allowed (remove the second '---')");
}

static void test_unreadable_file(void **state) {
  (void)state;
  conf_t c;
  char err[256];
  assert_int_equal(
      m5_config_load("/nonexistent/m5-aanf.yaml", g_items, NITEMS, &c, err, sizeof(err)), M5_EIO);
  assert_string_equal(err, "cannot read /nonexistent/m5-aanf.yaml: No such file or directory");
  assert_null(c.name);
  assert_int_equal(m5_config_load("/tmp", g_items, NITEMS, &c, err, sizeof(err)), M5_EIO);
  assert_string_equal(err, "cannot read /tmp: Is a directory");
}

static void test_bad_default_is_reported(void **state) {
  (void)state;
  const m5_cfg_item_t bad[] = {
      {"name", M5_CFG_STR, offsetof(conf_t, name), "x", 0, 0, "ok"},
      {"tls.port", M5_CFG_INT, offsetof(conf_t, port), "70000", 1, 65535, "out of range"},
  };
  conf_t c;
  char err[256];
  assert_int_equal(m5_config_load(NULL, bad, 2, &c, err, sizeof(err)), M5_EINVAL);
  assert_string_equal(err, "tls.port: built-in default '70000' is not an integer in 1..65535");
  assert_null(c.name);
}

static void test_print_help(void **state) {
  (void)state;
  char *text = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&text, &len);
  assert_non_null(f);
  m5_config_print_help(g_items, NITEMS, f);
  fclose(f);
  assert_non_null(strstr(text, "  tls.port (integer 1..65535, default 7443): TLS port\n"));
  assert_non_null(strstr(text, "  log.verbose (bool, default false): chatty logs\n"));
  assert_non_null(strstr(text, "  tls.cert (string, no default): certificate file\n"));
  assert_non_null(strstr(text, "  akma.fqdns (list, default localhost, m5s.local): AF names\n"));
  free(text);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_defaults_without_file),
      cmocka_unit_test(test_every_type_from_file),
      cmocka_unit_test(test_bool_spellings),
      cmocka_unit_test(test_partial_file_keeps_other_defaults),
      cmocka_unit_test(test_empty_files_are_valid),
      cmocka_unit_test(test_int_errors),
      cmocka_unit_test(test_bounds_are_inclusive),
      cmocka_unit_test(test_bad_bool),
      cmocka_unit_test(test_unknown_keys),
      cmocka_unit_test(test_shape_errors),
      cmocka_unit_test(test_duplicate_keys),
      cmocka_unit_test(test_yaml_syntax_error_has_line),
      cmocka_unit_test(test_unreadable_file),
      cmocka_unit_test(test_bad_default_is_reported),
      cmocka_unit_test(test_print_help),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
