/* Unit tests for src/server/registry.c: bindings and registrations through the DB thread,
 * the in-memory copy workers read, expiry, the SUPI check on REG, cascade on unbind and
 * persistence across a reopen. */
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
#include "core/loop.h"
#include "server/registry.h"
#include "testutil.h"

typedef struct {
  m5_loop_t *loop;
  m5_mailbox_t *replies;
  m5_job_t *done;
} fixture_t;

static char dir_template[] = "/tmp/m5s-registry-XXXXXX";
static char db_path[256];

static void on_reply(void *msg, void *arg) {
  fixture_t *f = arg;
  f->done = msg;
  m5_loop_stop(f->loop);
}

static int run_job(fixture_t *f, registry_t *r, registry_job_t *job) {
  job->base.reply = f->replies;
  f->done = NULL;
  assert_int_equal(registry_submit(r, job), 0);
  assert_int_equal(m5_loop_run(f->loop), 0);
  assert_ptr_equal(f->done, &job->base);
  return job->status;
}

static int do_bind(fixture_t *f, registry_t *r, const char *id, const char *supi,
                   registry_job_t *job) {
  memset(job, 0, sizeof *job);
  job->op = REGISTRY_BIND;
  snprintf(job->ue_svc_id, sizeof job->ue_svc_id, "%s", id);
  snprintf(job->supi, sizeof job->supi, "%s", supi);
  return run_job(f, r, job);
}

static int do_reg(fixture_t *f, registry_t *r, const char *id, const char *supi, int64_t at,
                  registry_job_t *job) {
  memset(job, 0, sizeof *job);
  job->op = REGISTRY_REGISTER;
  snprintf(job->ue_svc_id, sizeof job->ue_svc_id, "%s", id);
  snprintf(job->supi, sizeof job->supi, "%s", supi);
  job->registered_at = at;
  job->expiry = at + 100;
  return run_job(f, r, job);
}

static int simple(fixture_t *f, registry_t *r, registry_op_t op, const char *id) {
  registry_job_t job = {.op = op};
  snprintf(job.ue_svc_id, sizeof job.ue_svc_id, "%s", id);
  return run_job(f, r, &job);
}

static registry_t *open_started(void) {
  char err[256];
  registry_t *r = registry_open(db_path, err, sizeof err);
  if (!r) fail_msg("registry_open: %s", err);
  assert_int_equal(registry_start(r, 16), 0);
  return r;
}

static void test_bind_register_persist(void **state) {
  (void)state;
  fixture_t f = {.loop = m5_loop_new()};
  f.replies = m5_mailbox_new(f.loop, 4, on_reply, &f);
  registry_t *r = open_started();
  registry_job_t job;
  registry_entry_t e;

  assert_int_equal(registry_lookup(r, "ue1", 1000, &e), M5_ENOENT);
  assert_int_equal(do_bind(&f, r, "ue1", "001010000000001", &job), 0);
  assert_true(job.created);
  assert_string_equal(job.old_supi, "");
  assert_int_equal(registry_lookup(r, "ue1", 1000, &e), 0);
  assert_string_equal(e.supi, "001010000000001");
  assert_false(e.registered);

  /* REG: only for the bound SUPI; the first is new, the next one within expiry is not. */
  assert_int_equal(do_reg(&f, r, "ue1", "001010000000002", 1000, &job), M5_EPERM);
  assert_int_equal(do_reg(&f, r, "ue2", "001010000000001", 1000, &job), M5_EPERM);
  assert_int_equal(do_reg(&f, r, "ue1", "001010000000001", 1000, &job), 0);
  assert_true(job.created);
  assert_int_equal(do_reg(&f, r, "ue1", "001010000000001", 1050, &job), 0);
  assert_false(job.created);
  assert_int_equal(registry_lookup(r, "ue1", 1100, &e), 0);
  assert_true(e.registered);
  assert_int_equal(e.expiry, 1150);
  /* Expired: not registered, and the next REG counts as new again. */
  assert_int_equal(registry_lookup(r, "ue1", 1150, &e), 0);
  assert_false(e.registered);
  assert_int_equal(do_reg(&f, r, "ue1", "001010000000001", 1200, &job), 0);
  assert_true(job.created);

  /* Re-binding to the same SUPI keeps the registration. */
  assert_int_equal(do_bind(&f, r, "ue1", "001010000000001", &job), 0);
  assert_false(job.created);
  assert_int_equal(registry_lookup(r, "ue1", 1250, &e), 0);
  assert_true(e.registered);
  registry_close(r);

  /* Both survive a restart. */
  r = open_started();
  assert_int_equal(registry_count(r), 1);
  assert_int_equal(registry_lookup(r, "ue1", 1250, &e), 0);
  assert_string_equal(e.supi, "001010000000001");
  assert_true(e.registered);
  assert_int_equal(e.registered_at, 1200);

  /* DEREG removes the registration, not the binding. */
  assert_int_equal(simple(&f, r, REGISTRY_DEREGISTER, "ue1"), 0);
  assert_int_equal(simple(&f, r, REGISTRY_DEREGISTER, "ue1"), M5_ENOENT);
  assert_int_equal(registry_lookup(r, "ue1", 1250, &e), 0);
  assert_false(e.registered);
  registry_close(r);

  m5_mailbox_free(f.replies, NULL);
  m5_loop_free(f.loop);
}

static void test_rebind_and_unbind_drop_registration(void **state) {
  (void)state;
  fixture_t f = {.loop = m5_loop_new()};
  f.replies = m5_mailbox_new(f.loop, 4, on_reply, &f);
  registry_t *r = open_started();
  registry_job_t job;
  registry_entry_t e;

  assert_int_equal(do_bind(&f, r, "dev/7", "001010000000003", &job), 0);
  assert_int_equal(do_reg(&f, r, "dev/7", "001010000000003", 1000, &job), 0);
  /* Another subscriber now: the old registration must not stay. */
  assert_int_equal(do_bind(&f, r, "dev/7", "001010000000004", &job), 0);
  assert_string_equal(job.old_supi, "001010000000003");
  assert_int_equal(registry_lookup(r, "dev/7", 1001, &e), 0);
  assert_false(e.registered);
  assert_int_equal(do_reg(&f, r, "dev/7", "001010000000004", 1000, &job), 0);
  assert_int_equal(simple(&f, r, REGISTRY_UNBIND, "dev/7"), 0);
  assert_int_equal(simple(&f, r, REGISTRY_UNBIND, "dev/7"), M5_ENOENT);
  assert_int_equal(registry_lookup(r, "dev/7", 1001, &e), M5_ENOENT);
  registry_close(r);

  r = open_started();
  assert_int_equal(registry_lookup(r, "dev/7", 1001, &e), M5_ENOENT);
  /* A registration row cannot come back without its binding either. */
  assert_int_equal(do_bind(&f, r, "dev/7", "001010000000004", &job), 0);
  assert_int_equal(registry_lookup(r, "dev/7", 1001, &e), 0);
  assert_false(e.registered);
  registry_close(r);
  m5_mailbox_free(f.replies, NULL);
  m5_loop_free(f.loop);
}

static void test_normalise_supi(void **state) {
  (void)state;
  char out[REGISTRY_SUPI_MAX + 1];
  assert_int_equal(registry_normalise_supi("imsi-001010123456789", out), 0);
  assert_string_equal(out, "001010123456789");
  assert_int_equal(registry_normalise_supi("00101", out), 0);
  assert_int_equal(registry_normalise_supi("0010", out), M5_EINVAL);
  assert_int_equal(registry_normalise_supi("0010101234567890", out), M5_EINVAL);
  assert_int_equal(registry_normalise_supi("00101a", out), M5_EINVAL);
  assert_int_equal(registry_normalise_supi("nai-00101", out), M5_EINVAL);
}

static void test_bad_path(void **state) {
  (void)state;
  char err[256];
  assert_null(registry_open("/proc/m5s/registry.db", err, sizeof err));
  assert_non_null(strstr(err, "db.path"));
}

static int setup(void **state) {
  (void)state;
  if (!mkdtemp(dir_template)) return -1;
  snprintf(db_path, sizeof db_path, "%s/sub/m5s.db", dir_template);
  return 0;
}

static int teardown(void **state) {
  (void)state;
  return tu_rmtree(dir_template);
}

static int fresh(void **state) {
  (void)state;
  char p[300];
  const char *sfx[] = {"", "-wal", "-shm"};
  for (size_t i = 0; i < 3; i++) {
    snprintf(p, sizeof p, "%s%s", db_path, sfx[i]);
    unlink(p);
  }
  return 0;
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup(test_bind_register_persist, fresh),
      cmocka_unit_test_setup(test_rebind_and_unbind_drop_registration, fresh),
      cmocka_unit_test(test_normalise_supi),
      cmocka_unit_test(test_bad_path),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
