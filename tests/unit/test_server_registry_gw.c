/* Unit tests for src/server/registry/registry_gw.c: message gateway clients and the UE Service
 * IDs they hold, through the registry's DB thread. Patterns; a registration all or nothing
 * (pattern, a subscriber's binding, another gateway's ID), idempotent; one space of IDs with
 * the bindings both ways; a new binding generation at every change of holder, persisted in
 * binding_gens (what the message store's REBIND and its start-up catch-up read); the release of
 * what a narrower pattern no longer allows and of everything a removed gateway held; the bound
 * per gateway; persistence across a reopen; the listing of one gateway's IDs in pages. */
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
#include "server/registry/registry.h"
#include "testutil.h"

typedef struct {
  m5_loop_t *loop;
  m5_mailbox_t *replies;
  m5_job_t *done;
} fixture_t;

static char dir_template[] = "/tmp/m5s-registry-gw-XXXXXX";
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

static registry_t *open_started(void) {
  char err[256];
  registry_t *r = registry_open(db_path, err, sizeof err);
  if (!r) fail_msg("registry_open: %s", err);
  assert_int_equal(registry_start(r, 16), 0);
  return r;
}

static void fixture_init(fixture_t *f) {
  f->loop = m5_loop_new();
  assert_non_null(f->loop);
  f->replies = m5_mailbox_new(f->loop, 16, on_reply, f);
  assert_non_null(f->replies);
}

static void fixture_free(fixture_t *f) {
  m5_mailbox_free(f->replies, NULL);
  m5_loop_free(f->loop);
}

static int gw_put(fixture_t *f, registry_t *r, const char *id, const char *pattern,
                  registry_job_t *job) {
  static registry_gw_t g;
  memset(&g, 0, sizeof g);
  snprintf(g.gw_id, sizeof g.gw_id, "%s", id);
  g.kind = REGISTRY_GW_MQTT;
  snprintf(g.target, sizeof g.target, "gw.example:9444");
  snprintf(g.pattern, sizeof g.pattern, "%s", pattern);
  memset(job, 0, sizeof *job);
  job->op = REGISTRY_GW_PUT;
  job->gw = &g;
  return run_job(f, r, job);
}

static int gw_del(fixture_t *f, registry_t *r, const char *id, registry_job_t *job) {
  static registry_gw_t g;
  memset(&g, 0, sizeof g);
  snprintf(g.gw_id, sizeof g.gw_id, "%s", id);
  memset(job, 0, sizeof *job);
  job->op = REGISTRY_GW_DEL;
  job->gw = &g;
  return run_job(f, r, job);
}

/* Registers the n IDs for gateway gw: the job's status, gens[] and fresh[] out, bad too. */
static char ids[8][REGISTRY_ID_MAX + 1];
static uint64_t gens[8];
static unsigned char fresh[8];
static int gw_reg(fixture_t *f, registry_t *r, const char *gw, const char *const *list, size_t n,
                  size_t *bad) {
  static registry_gw_t g;
  memset(&g, 0, sizeof g);
  snprintf(g.gw_id, sizeof g.gw_id, "%s", gw);
  for (size_t i = 0; i < n; i++)
    snprintf(ids[i], sizeof ids[i], "%s", list[i]);
  memset(gens, 0, sizeof gens);
  registry_job_t job = {
      .op = REGISTRY_GW_UE_REG, .gw = &g, .ids = ids, .gens = gens, .fresh = fresh, .n_ids = n};
  int rc = run_job(f, r, &job);
  if (bad) *bad = job.bad;
  return rc;
}

static int gw_dereg(fixture_t *f, registry_t *r, const char *gw, const char *id, uint64_t *gen) {
  static registry_gw_t g;
  memset(&g, 0, sizeof g);
  snprintf(g.gw_id, sizeof g.gw_id, "%s", gw);
  registry_job_t job = {.op = REGISTRY_GW_UE_DEREG, .gw = &g};
  snprintf(job.ue_svc_id, sizeof job.ue_svc_id, "%s", id);
  int rc = run_job(f, r, &job);
  if (gen) *gen = job.gen;
  return rc;
}

static int bind_ue(fixture_t *f, registry_t *r, const char *id, const char *supi) {
  registry_job_t job = {.op = REGISTRY_BIND};
  snprintf(job.ue_svc_id, sizeof job.ue_svc_id, "%s", id);
  snprintf(job.supi, sizeof job.supi, "%s", supi);
  return run_job(f, r, &job);
}

/* The generation binding_gens keeps for one ID (0: none). */
typedef struct {
  const char *id;
  uint64_t gen;
} gen_find_t;
static void gen_of_cb(void *arg, const char *id, uint64_t gen) {
  gen_find_t *g = arg;
  if (!strcmp(id, g->id)) g->gen = gen;
}
static uint64_t stored_gen(registry_t *r, const char *id) {
  gen_find_t g = {id, 0};
  assert_int_equal(registry_gens_foreach(r, gen_of_cb, &g), 0);
  return g.gen;
}

static void test_patterns(void **state) {
  (void)state;
  assert_true(registry_gw_pattern_valid("mq*"));
  assert_true(registry_gw_pattern_valid("mq1"));
  assert_true(registry_gw_pattern_valid("*"));
  assert_false(registry_gw_pattern_valid(""));
  assert_false(registry_gw_pattern_valid("m*q"));
  assert_false(registry_gw_pattern_valid("mq**"));
  assert_false(registry_gw_pattern_valid("a b*"));
  assert_true(registry_gw_pattern_match("mq*", "mq1"));
  assert_true(registry_gw_pattern_match("mq*", "mq"));
  assert_false(registry_gw_pattern_match("mq*", "xmq1"));
  assert_true(registry_gw_pattern_match("mq1", "mq1"));
  assert_false(registry_gw_pattern_match("mq1", "mq10"));
  assert_true(registry_gw_pattern_match("*", "anything"));
  registry_gw_kind_t k;
  assert_int_equal(registry_gw_kind_parse("sms", &k), 0);
  assert_int_equal(k, REGISTRY_GW_SMS);
  assert_int_equal(registry_gw_kind_parse("mqtt", &k), 0);
  assert_int_equal(k, REGISTRY_GW_MQTT);
  assert_int_equal(registry_gw_kind_parse("SMS", &k), M5_EINVAL);
}

static void test_register_all_or_nothing_one_space(void **state) {
  (void)state;
  fixture_t f;
  fixture_init(&f);
  registry_t *r = open_started();
  registry_job_t job;
  size_t bad;
  assert_int_equal(gw_put(&f, r, "gw1", "mq*", &job), 0);
  assert_true(job.created);
  assert_int_equal(gw_put(&f, r, "gw2", "*", &job), 0);
  assert_int_equal(bind_ue(&f, r, "ue1", "001010000000001"), 0);
  /* unknown gateway */
  const char *one[] = {"mq1"};
  assert_int_equal(gw_reg(&f, r, "gw9", one, 1, NULL), M5_ENOENT);
  /* outside the pattern: nothing taken, the offending index named */
  const char *mixed[] = {"mq1", "mq2", "ue7"};
  assert_int_equal(gw_reg(&f, r, "gw1", mixed, 3, &bad), M5_EPERM);
  assert_int_equal(bad, 2);
  assert_int_equal(registry_gw_holder(r, "mq1", NULL, NULL), M5_ENOENT);
  /* taken, each with a new generation, persisted where the store's catch-up reads it */
  assert_int_equal(gw_reg(&f, r, "gw1", mixed, 2, NULL), 0);
  uint64_t g1 = gens[0], g2 = gens[1];
  assert_true(fresh[0] && fresh[1]);
  assert_true(g1 != 0 && g2 > g1);
  registry_gw_t g;
  uint64_t gen;
  assert_int_equal(registry_gw_holder(r, "mq1", &g, &gen), 0);
  assert_string_equal(g.gw_id, "gw1");
  assert_int_equal(gen, g1);
  assert_int_equal(stored_gen(r, "mq1"), g1);
  /* again: idempotent, the same generations, nothing fresh */
  const char *again[] = {"mq2", "mq1"};
  assert_int_equal(gw_reg(&f, r, "gw1", again, 2, NULL), 0);
  assert_int_equal(gens[0], g2);
  assert_int_equal(gens[1], g1);
  assert_false(fresh[0] || fresh[1]);
  /* one space: a subscriber's ID and another gateway's are 409 to gw2; nothing taken */
  const char *theirs[] = {"x1", "ue1"};
  assert_int_equal(gw_reg(&f, r, "gw2", theirs, 2, &bad), M5_EEXIST);
  assert_int_equal(bad, 1);
  assert_int_equal(registry_gw_holder(r, "x1", NULL, NULL), M5_ENOENT);
  assert_int_equal(gw_reg(&f, r, "gw2", one, 1, &bad), M5_EEXIST);
  /* and a held ID cannot be bound */
  assert_int_equal(bind_ue(&f, r, "mq1", "001010000000002"), M5_EEXIST);
  registry_entry_t e;
  assert_int_equal(registry_lookup(r, "mq1", 0, &e), M5_ENOENT);
  /* the same ID twice in one request: one holder, one generation */
  const char *twice[] = {"mq3", "mq3"};
  assert_int_equal(gw_reg(&f, r, "gw1", twice, 2, NULL), 0);
  assert_int_equal(gens[0], gens[1]);
  assert_int_equal(registry_gw_lookup(r, "gw1", &g), 0);
  assert_int_equal(g.n_ues, 3);
  registry_close(r);
  fixture_free(&f);
}

static void test_handover_generations(void **state) {
  (void)state;
  fixture_t f;
  fixture_init(&f);
  registry_t *r = open_started();
  registry_job_t job;
  assert_int_equal(gw_put(&f, r, "gw1", "mq*", &job), 0);
  assert_int_equal(gw_put(&f, r, "gw2", "mq*", &job), 0);
  const char *one[] = {"mq1"};
  assert_int_equal(gw_reg(&f, r, "gw1", one, 1, NULL), 0);
  uint64_t g1 = gens[0], g2, g3;
  /* only the holder may release it */
  assert_int_equal(gw_dereg(&f, r, "gw2", "mq1", NULL), M5_ENOENT);
  assert_int_equal(gw_dereg(&f, r, "gw1", "mq1", &g2), 0);
  assert_true(g2 > g1);
  assert_int_equal(stored_gen(r, "mq1"), g2);
  assert_int_equal(registry_gw_holder(r, "mq1", NULL, NULL), M5_ENOENT);
  assert_int_equal(gw_dereg(&f, r, "gw1", "mq1", NULL), M5_ENOENT);
  /* to another gateway: newer again */
  assert_int_equal(gw_reg(&f, r, "gw2", one, 1, NULL), 0);
  assert_true(gens[0] > g2);
  assert_int_equal(gw_dereg(&f, r, "gw2", "mq1", &g3), 0);
  /* to a subscriber: the binding's generation is newer than every gateway's */
  assert_int_equal(bind_ue(&f, r, "mq1", "001010000000003"), 0);
  registry_entry_t e;
  assert_int_equal(registry_lookup(r, "mq1", 0, &e), 0);
  assert_true(e.gen > g3);
  registry_close(r);
  fixture_free(&f);
}

static void test_release_and_removal_persist(void **state) {
  (void)state;
  fixture_t f;
  fixture_init(&f);
  registry_t *r = open_started();
  registry_job_t job;
  assert_int_equal(gw_put(&f, r, "gw1", "mq*", &job), 0);
  assert_int_equal(gw_put(&f, r, "gw2", "sms*", &job), 0);
  const char *mine[] = {"mq1", "mq22", "mq23"};
  assert_int_equal(gw_reg(&f, r, "gw1", mine, 3, NULL), 0);
  uint64_t before = gens[0];
  const char *sms[] = {"sms1"};
  assert_int_equal(gw_reg(&f, r, "gw2", sms, 1, NULL), 0);
  /* a narrower pattern releases what it no longer allows, each with a new generation */
  assert_int_equal(gw_put(&f, r, "gw1", "mq2*", &job), 0);
  assert_false(job.created);
  assert_int_equal(job.n_ids, 1);
  assert_string_equal(job.ids[0], "mq1");
  assert_true(job.gens[0] > before);
  assert_int_equal(stored_gen(r, "mq1"), job.gens[0]);
  free(job.ids);
  free(job.gens);
  assert_int_equal(registry_gw_holder(r, "mq1", NULL, NULL), M5_ENOENT);
  assert_int_equal(registry_gw_holder(r, "mq22", NULL, NULL), 0);
  /* survives a reopen */
  registry_close(r);
  r = open_started();
  registry_gw_t g;
  assert_int_equal(registry_gw_lookup(r, "gw1", &g), 0);
  assert_string_equal(g.pattern, "mq2*");
  assert_int_equal(g.kind, REGISTRY_GW_MQTT);
  assert_int_equal(g.n_ues, 2);
  assert_int_equal(registry_gw_holder(r, "mq23", &g, NULL), 0);
  assert_string_equal(g.gw_id, "gw1");
  /* removal takes every ID it held, each released with a new generation; gw2 keeps its own */
  assert_int_equal(gw_del(&f, r, "gw1", &job), 0);
  assert_int_equal(job.n_ids, 2);
  for (size_t i = 0; i < job.n_ids; i++)
    assert_int_equal(stored_gen(r, job.ids[i]), job.gens[i]);
  free(job.ids);
  free(job.gens);
  assert_int_equal(gw_del(&f, r, "gw1", &job), M5_ENOENT);
  assert_int_equal(registry_gw_holder(r, "mq22", NULL, NULL), M5_ENOENT);
  assert_int_equal(registry_gw_holder(r, "sms1", NULL, NULL), 0);
  registry_close(r);
  r = open_started();
  assert_int_equal(registry_gw_lookup(r, "gw1", &g), M5_ENOENT);
  assert_int_equal(registry_gw_holder(r, "mq23", NULL, NULL), M5_ENOENT);
  assert_int_equal(registry_gw_count(r), 1);
  /* the IDs are free for a subscriber now */
  assert_int_equal(bind_ue(&f, r, "mq23", "001010000000004"), 0);
  registry_close(r);
  fixture_free(&f);
}

/* One page of gw's IDs after `after`, at most `limit`: the job's status; out[]/n/more. */
static char page[4][REGISTRY_ID_MAX + 1];
static int gw_list(fixture_t *f, registry_t *r, const char *gw, const char *after, size_t limit,
                   size_t *n, int *more) {
  static registry_gw_t g;
  memset(&g, 0, sizeof g);
  snprintf(g.gw_id, sizeof g.gw_id, "%s", gw);
  memset(page, 0, sizeof page);
  registry_job_t job = {.op = REGISTRY_GW_UE_LIST, .gw = &g, .ids = page, .n_ids = limit};
  snprintf(job.ue_svc_id, sizeof job.ue_svc_id, "%s", after);
  int rc = run_job(f, r, &job);
  *n = job.n_ids;
  *more = job.more;
  return rc;
}

static void test_list_pages(void **state) {
  (void)state;
  fixture_t f;
  fixture_init(&f);
  registry_t *r = open_started();
  registry_job_t job;
  size_t n;
  int more;
  assert_int_equal(gw_put(&f, r, "gw1", "mq*", &job), 0);
  assert_int_equal(gw_put(&f, r, "gw2", "*", &job), 0);
  const char *mine[] = {"mq3", "mq1", "mq2", "mq10"}, *other[] = {"mq15"};
  assert_int_equal(gw_reg(&f, r, "gw1", mine, 4, NULL), 0);
  assert_int_equal(gw_reg(&f, r, "gw2", other, 1, NULL), 0);
  /* byte order, the page full: more; the cursor is exclusive; a last page exactly full: no
   * more; another gateway's ID inside gw1's pattern never shows */
  assert_int_equal(gw_list(&f, r, "gw1", "", 2, &n, &more), 0);
  assert_int_equal(n, 2);
  assert_true(more);
  assert_string_equal(page[0], "mq1");
  assert_string_equal(page[1], "mq10");
  assert_int_equal(gw_list(&f, r, "gw1", "mq10", 2, &n, &more), 0);
  assert_int_equal(n, 2);
  assert_false(more);
  assert_string_equal(page[0], "mq2");
  assert_string_equal(page[1], "mq3");
  assert_int_equal(gw_list(&f, r, "gw1", "mq3", 2, &n, &more), 0);
  assert_int_equal(n, 0);
  assert_false(more);
  assert_int_equal(gw_list(&f, r, "gw2", "", 4, &n, &more), 0);
  assert_int_equal(n, 1);
  assert_string_equal(page[0], "mq15");
  /* a released ID leaves the list, which is read from the database (also after a reopen) */
  assert_int_equal(gw_dereg(&f, r, "gw1", "mq2", NULL), 0);
  registry_close(r);
  r = open_started();
  assert_int_equal(gw_list(&f, r, "gw1", "mq10", 4, &n, &more), 0);
  assert_int_equal(n, 1);
  assert_string_equal(page[0], "mq3");
  /* no such gateway; a page of 0 or more than REGISTRY_GW_UES_MAX */
  assert_int_equal(gw_list(&f, r, "gw9", "", 4, &n, &more), M5_ENOENT);
  assert_int_equal(gw_list(&f, r, "gw1", "", 0, &n, &more), M5_EINVAL);
  assert_int_equal(gw_list(&f, r, "gw1", "", REGISTRY_GW_UES_MAX + 1, &n, &more), M5_EINVAL);
  registry_close(r);
  fixture_free(&f);
}

static int setup(void **state) {
  (void)state;
  if (!mkdtemp(dir_template)) return -1;
  snprintf(db_path, sizeof db_path, "%s/m5s.db", dir_template);
  return 0;
}

static int teardown(void **state) {
  (void)state;
  return tu_rmtree(dir_template);
}

static int fresh_db(void **state) {
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
      cmocka_unit_test(test_patterns),
      cmocka_unit_test_setup(test_register_all_or_nothing_one_space, fresh_db),
      cmocka_unit_test_setup(test_handover_generations, fresh_db),
      cmocka_unit_test_setup(test_release_and_removal_persist, fresh_db),
      cmocka_unit_test_setup(test_list_pages, fresh_db),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
