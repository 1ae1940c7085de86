/* Unit tests for src/tools/ctl_import_file.c, the subscriber file of `m5ctl subscriber import`:
 * one line's fields (SUPI, K_AUSF, ueSvcId), comments and blank lines, each kind of bad line
 * with its reason, and the whole file: errors as FILE:LINE in line order, duplicates of a SUPI
 * or a UE Service ID naming the first line, and a refused file leaving no entries. */
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
#include "ctl_import_file.h"

#define K1 "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"
#define K2 "FFEEDDCCBBAA99887766554433221100ffeeddccbbaa99887766554433221100"

static void test_good_line(void **state) {
  (void)state;
  m5ctl_import_entry_t e;
  char why[160] = "";
  assert_int_equal(m5ctl_import_parse_line("001010000000001 " K1 " ue1", &e, why, sizeof why), 1);
  assert_string_equal(e.supi, "001010000000001");
  assert_string_equal(e.ue_svc_id, "ue1");
  for (int i = 0; i < 32; i++)
    assert_int_equal(e.kausf[i], i);
  /* tabs, several blanks, upper-case hex, CRLF, a trailing comment */
  assert_int_equal(
      m5ctl_import_parse_line("\t00101  " K2 "\tue:2/x \t# note\r", &e, why, sizeof why), 1);
  assert_string_equal(e.supi, "00101");
  assert_string_equal(e.ue_svc_id, "ue:2/x");
  assert_int_equal(e.kausf[0], 0xff);
  assert_int_equal(e.kausf[31], 0x00);
}

static void test_ignored_lines(void **state) {
  (void)state;
  m5ctl_import_entry_t e;
  char why[160];
  assert_int_equal(m5ctl_import_parse_line("", &e, why, sizeof why), 0);
  assert_int_equal(m5ctl_import_parse_line("   \t \r", &e, why, sizeof why), 0);
  assert_int_equal(m5ctl_import_parse_line("# supi kausf ueSvcId", &e, why, sizeof why), 0);
  assert_int_equal(m5ctl_import_parse_line("  #001010000000001 " K1 " ue1", &e, why, sizeof why),
                   0);
}

/* line -> the start of the reason it must give */
static const struct {
  const char *line, *why;
} bad[] = {
    {"001010000000001", "missing K_AUSF and ueSvcId"},
    {"001010000000001 " K1, "missing ueSvcId"},
    {"001010000000001 " K1 " ue1 extra", "unexpected fourth field"},
    {"0010 " K1 " ue1", "supi: expected the IMSI as 5 to 15 digits"},
    {"0010100000000012 " K1 " ue1", "supi: expected the IMSI as 5 to 15 digits"},
    {"imsi-001010000000001 " K1 " ue1", "supi: expected the IMSI as 5 to 15 digits"},
    {"00101000000000a " K1 " ue1", "supi: expected the IMSI as 5 to 15 digits"},
    {"001010000000001 " K1 "0 ue1", "kausf: expected 64 hex digits, got 65 characters"},
    {"001010000000001 0011 ue1", "kausf: expected 64 hex digits, got 4 characters"},
    {"001010000000001 "
     "g00102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f ue1",
     "kausf: expected 64 hex digits, found a non-hex character"},
    {"001010000000001 " K1 " ue\x01", "ueSvcId: expected 1-128 printable ASCII"},
    {"001010000000001 " K1 " ue\xc3\xa9", "ueSvcId: expected 1-128 printable ASCII"},
};

static void test_bad_lines(void **state) {
  (void)state;
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    m5ctl_import_entry_t e;
    char why[160] = "";
    assert_int_equal(m5ctl_import_parse_line(bad[i].line, &e, why, sizeof why), -1);
    if (strncmp(why, bad[i].why, strlen(bad[i].why)) != 0)
      fail_msg("line %zu: want '%s...', got '%s'", i, bad[i].why, why);
    assert_null(strstr(why, "0102030405")); /* never the key's text */
  }
  char id[200], line[400];
  memset(id, 'x', 129);
  id[129] = '\0';
  snprintf(line, sizeof line, "001010000000001 %s %s", K1, id);
  m5ctl_import_entry_t e;
  char why[160];
  assert_int_equal(m5ctl_import_parse_line(line, &e, why, sizeof why), -1);
  assert_string_equal(why, "ueSvcId: longer than 128 characters");
  id[128] = '\0'; /* 128 is allowed */
  snprintf(line, sizeof line, "001010000000001 %s %s", K1, id);
  assert_int_equal(m5ctl_import_parse_line(line, &e, why, sizeof why), 1);
}

/* ---- whole files ---- */

static char path[64];

static void write_file(const char *text) {
  snprintf(path, sizeof path, "/tmp/m5ctl-import-XXXXXX");
  int fd = mkstemp(path);
  assert_true(fd >= 0);
  assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
  close(fd);
}

/* Reads path with the errors into *err_text (malloc'd); returns m5ctl_import_read's code. */
static int read_file(m5ctl_import_list_t *l, char **err_text) {
  size_t len;
  FILE *err = open_memstream(err_text, &len);
  assert_non_null(err);
  int rc = m5ctl_import_read(path, err, l);
  fclose(err);
  unlink(path);
  return rc;
}

static void test_file_ok(void **state) {
  (void)state;
  write_file("# fleet\n"
             "\n"
             "001010000000001 " K1 " ue1\n"
             "001010000000002 " K2 " ue2\r\n"
             "001010000000003 " K1 " ue3"); /* no newline at the end */
  m5ctl_import_list_t l = {0};
  char *err = NULL;
  assert_int_equal(read_file(&l, &err), 0);
  assert_string_equal(err, "");
  assert_int_equal(l.n, 3);
  assert_int_equal(l.v[0].line, 3);
  assert_string_equal(l.v[1].ue_svc_id, "ue2");
  assert_int_equal(l.v[2].line, 5);
  assert_string_equal(l.v[2].supi, "001010000000003");
  m5ctl_import_list_free(&l);
  assert_null(l.v);
  free(err);
}

static void test_file_many(void **state) {
  (void)state;
  size_t n = 3000, cap = n * 100;
  char *text = malloc(cap);
  size_t off = 0;
  for (size_t i = 0; i < n; i++)
    off += (size_t)snprintf(text + off, cap - off, "00101%010zu %s ue-%zu\n", i, K1, i);
  write_file(text);
  free(text);
  m5ctl_import_list_t l = {0};
  char *err = NULL;
  assert_int_equal(read_file(&l, &err), 0);
  assert_int_equal(l.n, n);
  assert_string_equal(l.v[n - 1].ue_svc_id, "ue-2999");
  assert_int_equal(l.v[n - 1].line, n);
  m5ctl_import_list_free(&l);
  free(err);
}

static void test_file_refused(void **state) {
  (void)state;
  write_file("001010000000001 " K1 " ue1\n"   /* 1 */
             "001010000000002 " K1 "\n"       /* 2: missing ueSvcId */
             "001010000000003 " K1 " ue3\n"   /* 3 */
             "001010000000001 " K2 " ue4\n"   /* 4: SUPI of line 1 */
             "001010000000005 " K1 " ue3\n"   /* 5: ueSvcId of line 3 */
             "001010000000006 0123 ue6\n"     /* 6: short key */
             "001010000000001 " K2 " ue7\n"); /* 7: SUPI of line 1 again */
  m5ctl_import_list_t l = {0};
  char *err = NULL;
  assert_int_equal(read_file(&l, &err), M5_EINVAL);
  assert_int_equal(l.n, 0);
  assert_null(l.v);
  char want[2048];
  snprintf(want, sizeof want,
           "%s:2: missing ueSvcId (expected: SUPI K_AUSF ueSvcId)\n"
           "%s:4: supi 001010000000001 given twice (first on line 1)\n"
           "%s:5: ueSvcId ue3 given twice (first on line 3)\n"
           "%s:6: kausf: expected 64 hex digits, got 4 characters\n"
           "%s:7: supi 001010000000001 given twice (first on line 1)\n"
           "m5ctl: %s: refused (5 bad lines); nothing was sent\n",
           path, path, path, path, path, path);
  assert_string_equal(err, want);
  free(err);
}

static void test_file_many_errors(void **state) {
  (void)state;
  char text[4096] = "";
  for (int i = 0; i < 25; i++)
    strcat(text, "bad line\n");
  write_file(text);
  m5ctl_import_list_t l = {0};
  char *err = NULL;
  assert_int_equal(read_file(&l, &err), M5_EINVAL);
  char want[128];
  snprintf(want, sizeof want, "%s:20: ", path);
  assert_non_null(strstr(err, want));
  snprintf(want, sizeof want, "%s:21: ", path);
  assert_null(strstr(err, want)); /* at most 20 shown, */
  snprintf(want, sizeof want, "%s: 5 more bad lines\n", path);
  assert_non_null(strstr(err, want)); /* then how many more */
  free(err);
}

static void test_file_long_line(void **state) {
  (void)state;
  char *text = malloc(3000);
  memset(text, 'x', 2000);
  snprintf(text + 2000, 1000, "\n001010000000001 %s ue1\n", K1);
  write_file(text);
  free(text);
  m5ctl_import_list_t l = {0};
  char *err = NULL;
  assert_int_equal(read_file(&l, &err), M5_EINVAL);
  char want[256];
  snprintf(want, sizeof want, "%s:1: line too long\nm5ctl: %s: refused (1 bad line)", path, path);
  assert_non_null(strstr(err, want)); /* line 2 is good: the long line counted once */
  free(err);
}

static void test_file_missing(void **state) {
  (void)state;
  m5ctl_import_list_t l = {0};
  char *err = NULL;
  size_t len;
  FILE *f = open_memstream(&err, &len);
  assert_int_equal(m5ctl_import_read("/nonexistent/fleet.txt", f, &l), M5_EIO);
  fclose(f);
  assert_string_equal(err,
                      "m5ctl: cannot open /nonexistent/fleet.txt: No such file or directory\n");
  free(err);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_good_line),        cmocka_unit_test(test_ignored_lines),
      cmocka_unit_test(test_bad_lines),        cmocka_unit_test(test_file_ok),
      cmocka_unit_test(test_file_many),        cmocka_unit_test(test_file_refused),
      cmocka_unit_test(test_file_many_errors), cmocka_unit_test(test_file_long_line),
      cmocka_unit_test(test_file_missing),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
