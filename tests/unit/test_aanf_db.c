/* Unit tests for src/aanf/aanf_db.c: the AKMA context store on its own thread (TS 33.535 6.1:
 * one context per SUPI, replaced on re-registration; found by A-KID; removed by SUPI), jobs
 * travelling through mailboxes, persistence across a reopen and owner-only permissions. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "aanf_db.h"
#include "core/err.h"
#include "core/loop.h"
#include "testutil.h"

typedef struct {
  m5_loop_t *loop;
  m5_mailbox_t *replies;
  aanf_db_job_t *done;
} fixture_t;

static char dir_template[] = "/tmp/m5-aanf-db-XXXXXX";
static char db_path[256];

static void on_reply(void *msg, void *arg) {
  fixture_t *f = arg;
  f->done = msg;
  m5_loop_stop(f->loop);
}

/* Submits one job and runs this thread's loop until the DB thread hands it back. */
static int run_job(fixture_t *f, aanf_db_t *db, aanf_db_job_t *job) {
  job->base.reply = f->replies;
  f->done = NULL;
  assert_int_equal(aanf_db_submit(db, job), 0);
  assert_int_equal(m5_loop_run(f->loop), 0);
  assert_ptr_equal(f->done, job);
  return job->status;
}

static int do_register(fixture_t *f, aanf_db_t *db, const char *supi, const char *akid,
                       uint8_t key_byte) {
  aanf_db_job_t job = {.op = AANF_DB_REGISTER};
  snprintf(job.supi, sizeof job.supi, "%s", supi);
  snprintf(job.akid, sizeof job.akid, "%s", akid);
  memset(job.kakma, key_byte, sizeof job.kakma);
  return run_job(f, db, &job);
}

static int do_lookup(fixture_t *f, aanf_db_t *db, const char *akid, aanf_db_job_t *job) {
  memset(job, 0, sizeof *job);
  job->op = AANF_DB_LOOKUP;
  snprintf(job->akid, sizeof job->akid, "%s", akid);
  return run_job(f, db, job);
}

static int do_remove(fixture_t *f, aanf_db_t *db, const char *supi) {
  aanf_db_job_t job = {.op = AANF_DB_REMOVE};
  snprintf(job.supi, sizeof job.supi, "%s", supi);
  return run_job(f, db, &job);
}

static aanf_db_t *open_started(void) {
  char err[256] = "";
  aanf_db_t *db = aanf_db_open(db_path, err, sizeof err);
  if (!db) fail_msg("open: %s", err);
  assert_int_equal(aanf_db_start(db, 8), 0);
  return db;
}

static int setup(void **state) {
  fixture_t *f = calloc(1, sizeof *f);
  f->loop = m5_loop_new();
  f->replies = m5_mailbox_new(f->loop, 8, on_reply, f);
  assert_non_null(f->replies);
  *state = f;
  return 0;
}

static int teardown(void **state) {
  fixture_t *f = *state;
  m5_mailbox_free(f->replies, NULL);
  m5_loop_free(f->loop);
  free(f);
  return 0;
}

static void test_register_lookup_replace_remove(void **state) {
  fixture_t *f = *state;
  aanf_db_job_t got;
  aanf_db_t *db = open_started();
  assert_int_equal(do_register(f, db, "001010123456789", "0000.old@realm", 0x11), 0);
  assert_int_equal(do_lookup(f, db, "0000.old@realm", &got), 0);
  assert_string_equal(got.supi, "001010123456789");
  assert_int_equal(got.kakma[0], 0x11);
  assert_int_equal(got.kakma[31], 0x11);

  /* TS 33.535 6.1 step 5: a new registration for the SUPI replaces its context. */
  assert_int_equal(do_register(f, db, "001010123456789", "0000.new@realm", 0x22), 0);
  assert_int_equal(do_lookup(f, db, "0000.old@realm", &got), M5_ENOENT);
  assert_int_equal(do_lookup(f, db, "0000.new@realm", &got), 0);
  assert_int_equal(got.kakma[5], 0x22);

  /* Another subscriber is independent. */
  assert_int_equal(do_register(f, db, "001010000000001", "0000.other@realm", 0x33), 0);
  assert_int_equal(do_remove(f, db, "001010123456789"), 0);
  assert_int_equal(do_remove(f, db, "001010123456789"), M5_ENOENT);
  assert_int_equal(do_lookup(f, db, "0000.new@realm", &got), M5_ENOENT);
  assert_int_equal(do_lookup(f, db, "0000.other@realm", &got), 0);
  assert_string_equal(got.supi, "001010000000001");
  aanf_db_close(db);

  /* The state is on disk: a new process (here: a reopen) finds it. */
  db = open_started();
  assert_int_equal(do_lookup(f, db, "0000.other@realm", &got), 0);
  assert_int_equal(got.kakma[0], 0x33);
  assert_int_equal(do_lookup(f, db, "0000.new@realm", &got), M5_ENOENT);
  aanf_db_close(db);
}

static void test_permissions_and_bad_path(void **state) {
  (void)state;
  struct stat st;
  char dir[300], err[256] = "";
  snprintf(dir, sizeof dir, "%s/nested", dir_template);
  assert_int_equal(stat(dir, &st), 0);
  assert_int_equal(st.st_mode & 0777, 0700);
  assert_int_equal(stat(db_path, &st), 0);
  assert_int_equal(st.st_mode & 077, 0);

  /* A path below a regular file cannot be created: a clear error, no crash. */
  snprintf(dir, sizeof dir, "%s/x.db", dir_template);
  FILE *fp = fopen(dir, "w");
  assert_non_null(fp);
  fclose(fp);
  snprintf(dir, sizeof dir, "%s/x.db/sub/aanf.db", dir_template);
  assert_null(aanf_db_open(dir, err, sizeof err));
  assert_non_null(strstr(err, "x.db"));
}

int main(void) {
  umask(077); /* as m5-aanf does */
  if (!mkdtemp(dir_template)) return 1;
  snprintf(db_path, sizeof db_path, "%s/nested/deeper/aanf.db", dir_template);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_register_lookup_replace_remove, setup, teardown),
      cmocka_unit_test(test_permissions_and_bad_path),
  };
  int rc = cmocka_run_group_tests(tests, NULL, NULL);
  if (tu_rmtree(dir_template) != 0) rc = 1;
  return rc;
}
