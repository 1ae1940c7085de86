/* Unit tests for src/server/policy/policy.c (who may message whom, TS 23.554 cl. 8.3.2 step 3)
 * and its keeping in the registry (registry_policy.c, as_clients.ue_svc_ids in registry_as.c):
 * glob patterns, the defaults, every direction of policy_check(), GROUP / BC / TOPIC, the JSON
 * form the admin API takes (every member required, unknown ones refused); the stored policy
 * winning over the configured one across a reopen, DELETE going back to the configured one;
 * an AS client's ueSvcIds stored, checked and persisted, and an older database gaining the
 * column with "*" for its clients. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <sqlite3.h>
#include <sys/stat.h>

#include "core/err.h"
#include "core/loop.h"
#include "server/policy/policy.h"
#include "server/registry/registry.h"
#include "testutil.h"

static m5_msg_addr_t addr(const char *type, const char *a) {
  m5_msg_addr_t x;
  memset(&x, 0, sizeof x);
  snprintf(x.type, sizeof x.type, "%s", type);
  snprintf(x.addr, sizeof x.addr, "%s", a);
  return x;
}

static policy_verdict_t check(const policy_t *p, const char *ot, const char *oa, const char *dt,
                              const char *da, const policy_patterns_t *as_pats) {
  m5_msg_addr_t o = addr(ot, oa), d = addr(dt, da);
  const char *why = NULL;
  policy_verdict_t v = policy_check(p, &o, &d, as_pats, &why);
  if (v == POLICY_DENY) assert_non_null(why); /* every refusal is logged with its reason */
  return v;
}

static void test_glob(void **state) {
  (void)state;
  assert_true(policy_glob("*", ""));
  assert_true(policy_glob("*", "anything"));
  assert_true(policy_glob("sensor-*", "sensor-1"));
  assert_true(policy_glob("sensor-*", "sensor-"));
  assert_false(policy_glob("sensor-*", "sensor"));
  assert_false(policy_glob("sensor-*", "xsensor-1"));
  assert_true(policy_glob("*-1", "sensor-1"));
  assert_false(policy_glob("*-1", "sensor-12"));
  assert_true(policy_glob("a*b*c", "aXXbYYc"));
  assert_true(policy_glob("a*b*c", "abc"));
  assert_false(policy_glob("a*b*c", "aXXbYY"));
  assert_true(policy_glob("a**c", "ac"));
  assert_true(policy_glob("exact", "exact"));
  assert_false(policy_glob("exact", "exact2"));
  assert_false(policy_glob("exact", "exac"));
  assert_false(policy_glob("", "x"));
  /* a pattern that would be exponential for a naive backtracker stays quick */
  char text[129];
  memset(text, 'a', 128);
  text[128] = '\0';
  assert_false(policy_glob("*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*b", text));
}

static void test_patterns(void **state) {
  (void)state;
  policy_patterns_t ps = {0};
  assert_false(policy_patterns_match(&ps, "x")); /* empty: matches nothing */
  assert_int_equal(policy_patterns_add(&ps, "sensor-*"), 0);
  assert_int_equal(policy_patterns_add(&ps, "meter-7"), 0);
  assert_int_equal(policy_patterns_add(&ps, "sensor-*"), 0); /* kept once */
  assert_int_equal(ps.n, 2);
  assert_true(policy_patterns_match(&ps, "sensor-1"));
  assert_true(policy_patterns_match(&ps, "meter-7"));
  assert_false(policy_patterns_match(&ps, "meter-8"));
  assert_int_equal(policy_patterns_add(&ps, "has space"), M5_EINVAL);
  assert_int_equal(policy_patterns_add(&ps, ""), M5_EINVAL);
  char big[200];
  memset(big, 'x', 129);
  big[129] = '\0';
  assert_int_equal(policy_patterns_add(&ps, big), M5_EINVAL);
  for (int i = 0; ps.n < POLICY_PATTERNS_MAX; i++) {
    char p[16];
    snprintf(p, sizeof p, "p%d", i);
    assert_int_equal(policy_patterns_add(&ps, p), 0);
  }
  assert_int_equal(policy_patterns_add(&ps, "one-more"), M5_ERANGE);

  /* the registry's text form, both ways */
  char text[POLICY_PATTERNS_MAX * (POLICY_PATTERN_MAX + 1) + 1];
  policy_patterns_t a = {0}, b = {0};
  assert_int_equal(policy_patterns_from_text(&a, "sensor-* meter-7"), 0);
  policy_patterns_to_text(&a, text, sizeof text);
  assert_string_equal(text, "sensor-* meter-7");
  assert_int_equal(policy_patterns_from_text(&b, text), 0);
  assert_int_equal(b.n, 2);
  assert_string_equal(b.v[1], "meter-7");
  assert_int_equal(policy_patterns_from_text(&b, ""), 0);
  assert_int_equal(b.n, 0);

  /* JSON */
  json_t *j = json_loads("[\"a*\", \"b\"]", 0, NULL);
  char why[160];
  assert_int_equal(policy_patterns_from_json(j, &a, why, sizeof why), 0);
  assert_int_equal(a.n, 2);
  json_decref(j);
  j = json_loads("[\"a*\", 7]", 0, NULL);
  assert_int_equal(policy_patterns_from_json(j, &a, why, sizeof why), M5_EINVAL);
  assert_non_null(strstr(why, "entry 1"));
  json_decref(j);
  j = json_loads("{\"a\": 1}", 0, NULL);
  assert_int_equal(policy_patterns_from_json(j, &a, why, sizeof why), M5_EINVAL);
  json_decref(j);
  j = json_loads("[]", 0, NULL);
  assert_int_equal(policy_patterns_from_json(j, &a, why, sizeof why), 0);
  assert_int_equal(a.n, 0);
  json_decref(j);
}

/* The defaults: UE -> UE, UE -> every AS, AS -> the UEs its ueSvcIds match; not AS -> AS. */
static void test_defaults_every_direction(void **state) {
  (void)state;
  policy_t p;
  policy_defaults(&p);
  policy_patterns_t star = {0}, sensors = {0}, none = {0};
  policy_patterns_add(&star, "*");
  policy_patterns_add(&sensors, "sensor-*");
  assert_int_equal(check(&p, "UE", "ue1", "UE", "ue2", NULL), POLICY_ALLOW);
  assert_int_equal(check(&p, "UE", "ue1", "AS", "as1", NULL), POLICY_ALLOW);
  assert_int_equal(check(&p, "AS", "as1", "UE", "ue2", &star), POLICY_ALLOW);
  assert_int_equal(check(&p, "AS", "as1", "UE", "sensor-1", &sensors), POLICY_ALLOW);
  assert_int_equal(check(&p, "AS", "as1", "UE", "ue2", &sensors), POLICY_DENY);
  assert_int_equal(check(&p, "AS", "as1", "UE", "ue2", &none), POLICY_DENY);
  assert_int_equal(check(&p, "AS", "as1", "UE", "ue2", NULL), POLICY_DENY); /* not a client */
  assert_int_equal(check(&p, "AS", "as1", "AS", "as2", &star), POLICY_DENY);
  /* not UE or AS as originator: nobody else sends */
  assert_int_equal(check(&p, "GROUP", "g", "UE", "ue2", &star), POLICY_DENY);
  /* an unknown address type is resolution's business (UNKNOWN_RECIPIENT) */
  assert_int_equal(check(&p, "UE", "ue1", "SIP", "x", NULL), POLICY_ALLOW);
}

static void test_each_switch(void **state) {
  (void)state;
  policy_t p;
  policy_patterns_t star = {0};
  policy_patterns_add(&star, "*");
  policy_defaults(&p);
  p.ue_to_ue = 0;
  assert_int_equal(check(&p, "UE", "ue1", "UE", "ue2", NULL), POLICY_DENY);
  assert_int_equal(check(&p, "UE", "ue1", "AS", "as1", NULL), POLICY_ALLOW);
  assert_int_equal(check(&p, "AS", "as1", "UE", "ue2", &star), POLICY_ALLOW);

  policy_defaults(&p);
  p.ue_to_as.n = 0;
  policy_patterns_add(&p.ue_to_as, "fleet-*");
  assert_int_equal(check(&p, "UE", "ue1", "AS", "fleet-a", NULL), POLICY_ALLOW);
  /* an AS the pattern does not name: refused whether or not it exists */
  assert_int_equal(check(&p, "UE", "ue1", "AS", "other", NULL), POLICY_DENY);
  p.ue_to_as.n = 0;
  assert_int_equal(check(&p, "UE", "ue1", "AS", "fleet-a", NULL), POLICY_DENY);
  assert_int_equal(check(&p, "UE", "ue1", "UE", "ue2", NULL), POLICY_ALLOW);

  policy_defaults(&p);
  p.as_to_ue = 0;
  assert_int_equal(check(&p, "AS", "as1", "UE", "ue2", &star), POLICY_DENY);
  assert_int_equal(check(&p, "UE", "ue1", "UE", "ue2", NULL), POLICY_ALLOW);

  policy_defaults(&p);
  p.as_to_as = 1;
  assert_int_equal(check(&p, "AS", "as1", "AS", "as2", &star), POLICY_ALLOW);
  assert_int_equal(check(&p, "AS", "as1", "AS", "as2", NULL), POLICY_DENY);
}

/* GROUP, BC and TOPIC: left to the group's, area's or topic's own members, grants and rules
 * (the fan-out then checks each recipient), whatever the directions say. */
static void test_group_bc_topic(void **state) {
  (void)state;
  policy_t p;
  policy_defaults(&p);
  p.as_to_as = 1;
  policy_patterns_t star = {0};
  policy_patterns_add(&star, "*");
  const char *types[] = {"GROUP", "BC"};
  for (size_t i = 0; i < 2; i++) {
    assert_int_equal(check(&p, "UE", "ue1", types[i], "g1", NULL), POLICY_ALLOW);
    assert_int_equal(check(&p, "AS", "as1", types[i], "g1", &star), POLICY_ALLOW);
  }
  assert_int_equal(check(&p, "UE", "ue1", "TOPIC", "t1", NULL), POLICY_ALLOW);
  assert_int_equal(check(&p, "AS", "as1", "TOPIC", "t1", &star), POLICY_ALLOW);
}

static void test_json(void **state) {
  (void)state;
  policy_t p, q;
  policy_defaults(&p);
  json_t *o = policy_to_json(&p);
  char *text = json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS);
  assert_string_equal(text, "{\"asToAs\":false,\"asToUe\":true,\"ueToAs\":[\"*\"],\"ueToUe\":true}");
  free(text);
  char param[72], why[160];
  assert_int_equal(policy_from_json(o, &q, param, sizeof param, why, sizeof why), 0);
  assert_memory_equal(&p, &q, sizeof p);
  json_decref(o);

  struct {
    const char *body, *param;
  } bad[] = {
      {"{\"ueToAs\":[\"*\"],\"asToUe\":true,\"asToAs\":false}", "ueToUe"},
      {"{\"ueToUe\":1,\"ueToAs\":[\"*\"],\"asToUe\":true,\"asToAs\":false}", "ueToUe"},
      {"{\"ueToUe\":true,\"asToUe\":true,\"asToAs\":false}", "ueToAs"},
      {"{\"ueToUe\":true,\"ueToAs\":\"*\",\"asToUe\":true,\"asToAs\":false}", "ueToAs"},
      {"{\"ueToUe\":true,\"ueToAs\":[\"a b\"],\"asToUe\":true,\"asToAs\":false}", "ueToAs"},
      {"{\"ueToUe\":true,\"ueToAs\":[],\"asToUe\":true}", "asToAs"},
      {"{\"ueToUe\":true,\"ueToAs\":[],\"asToUe\":true,\"asToAs\":false,\"x\":1}", "x"},
      {"[]", "body"},
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    policy_defaults(&q);
    o = json_loads(bad[i].body, 0, NULL);
    assert_non_null(o);
    assert_int_equal(policy_from_json(o, &q, param, sizeof param, why, sizeof why), M5_EINVAL);
    assert_string_equal(param, bad[i].param);
    policy_t d;
    policy_defaults(&d);
    assert_memory_equal(&q, &d, sizeof q); /* nothing changed */
    json_decref(o);
  }
}

/* ---- kept by the registry ---- */

typedef struct {
  m5_loop_t *loop;
  m5_mailbox_t *replies;
  m5_job_t *done;
} fixture_t;

static char dir_template[] = "/tmp/m5s-policy-XXXXXX";
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

static registry_t *open_started(const policy_t *configured) {
  char err[256];
  registry_t *r = registry_open(db_path, err, sizeof err);
  if (!r) fail_msg("registry_open: %s", err);
  if (configured) registry_policy_configure(r, configured);
  assert_int_equal(registry_start(r, 16), 0);
  return r;
}

static void test_registry_policy_precedence(void **state) {
  (void)state;
  fixture_t f = {.loop = m5_loop_new()};
  f.replies = m5_mailbox_new(f.loop, 4, on_reply, &f);
  policy_t cfg, got, put;
  int stored = -1;
  policy_defaults(&cfg);
  cfg.as_to_as = 1; /* the configuration's */
  registry_t *r = open_started(&cfg);
  registry_policy_get(r, &got, &stored);
  assert_false(stored);
  assert_memory_equal(&got, &cfg, sizeof got);
  m5_msg_addr_t ue1 = addr("UE", "ue1"), ue2 = addr("UE", "ue2");
  assert_int_equal(registry_policy_check(r, &ue1, &ue2, NULL), POLICY_ALLOW);

  /* PUT: in force at once, and after a reopen even though the configuration says otherwise */
  policy_defaults(&put);
  put.ue_to_ue = 0;
  registry_job_t job = {.op = REGISTRY_POLICY_PUT, .policy = &put};
  assert_int_equal(run_job(&f, r, &job), 0);
  assert_true(job.created);
  const char *why = NULL;
  assert_int_equal(registry_policy_check(r, &ue1, &ue2, &why), POLICY_DENY);
  assert_non_null(why);
  registry_close(r);
  r = open_started(&cfg);
  registry_policy_get(r, &got, &stored);
  assert_true(stored);
  assert_memory_equal(&got, &put, sizeof got);
  assert_int_equal(registry_policy_check(r, &ue1, &ue2, NULL), POLICY_DENY);

  /* DELETE: the configured one again, also after a reopen */
  memset(&job, 0, sizeof job);
  job.op = REGISTRY_POLICY_DEL;
  assert_int_equal(run_job(&f, r, &job), 0);
  assert_true(job.created);
  registry_policy_get(r, &got, &stored);
  assert_false(stored);
  assert_memory_equal(&got, &cfg, sizeof got);
  assert_int_equal(registry_policy_check(r, &ue1, &ue2, NULL), POLICY_ALLOW);
  registry_close(r);
  r = open_started(&cfg);
  registry_policy_get(r, &got, &stored);
  assert_false(stored);
  assert_true(got.as_to_as);
  registry_close(r);

  /* a stored document that cannot be read: the configured policy applies */
  sqlite3 *db = NULL;
  assert_int_equal(sqlite3_open(db_path, &db), SQLITE_OK);
  assert_int_equal(sqlite3_exec(db, "INSERT INTO policy VALUES (1, '{\"ueToUe\":7}')", NULL, NULL,
                                NULL),
                   SQLITE_OK);
  sqlite3_close(db);
  r = open_started(&cfg);
  registry_policy_get(r, &got, &stored);
  assert_false(stored);
  assert_memory_equal(&got, &cfg, sizeof got);
  registry_close(r);
  m5_mailbox_free(f.replies, NULL);
  m5_loop_free(f.loop);
}

/* An AS client's ueSvcIds: what registry_policy_check uses for it, persisted; a database from
 * before the column gains it with "*" for every client (what they could do before). */
static void test_registry_as_ue_svc_ids(void **state) {
  (void)state;
  char dir[300];
  snprintf(dir, sizeof dir, "%s/sub", dir_template);
  mkdir(dir, 0700);
  sqlite3 *db = NULL;
  assert_int_equal(sqlite3_open(db_path, &db), SQLITE_OK);
  assert_int_equal(sqlite3_exec(db,
                                "CREATE TABLE as_clients (as_svc_id TEXT PRIMARY KEY,"
                                " targets TEXT NOT NULL,"
                                " auth TEXT NOT NULL DEFAULT 'token') WITHOUT ROWID;"
                                "INSERT INTO as_clients VALUES ('old-as', 'old.example:443', "
                                "'token');",
                                NULL, NULL, NULL),
                   SQLITE_OK);
  sqlite3_close(db);

  fixture_t f = {.loop = m5_loop_new()};
  f.replies = m5_mailbox_new(f.loop, 4, on_reply, &f);
  registry_t *r = open_started(NULL);
  registry_as_t out;
  assert_int_equal(registry_as_lookup(r, "old-as", &out), 0);
  assert_int_equal(out.ue_svc_ids.n, 1);
  assert_string_equal(out.ue_svc_ids.v[0], "*");
  m5_msg_addr_t old = addr("AS", "old-as"), sens = addr("AS", "sens"), nobody = addr("AS", "x");
  m5_msg_addr_t ue2 = addr("UE", "ue2"), s1 = addr("UE", "sensor-1");
  assert_int_equal(registry_policy_check(r, &old, &ue2, NULL), POLICY_ALLOW);
  assert_int_equal(registry_policy_check(r, &nobody, &ue2, NULL), POLICY_DENY);

  registry_as_t a;
  memset(&a, 0, sizeof a);
  snprintf(a.as_svc_id, sizeof a.as_svc_id, "sens");
  snprintf(a.targets[a.n_targets++], sizeof a.targets[0], "sens.example:443");
  policy_patterns_add(&a.ue_svc_ids, "sensor-*");
  registry_job_t job = {.op = REGISTRY_AS_PUT, .as = &a};
  assert_int_equal(run_job(&f, r, &job), 0);
  assert_int_equal(registry_policy_check(r, &sens, &s1, NULL), POLICY_ALLOW);
  assert_int_equal(registry_policy_check(r, &sens, &ue2, NULL), POLICY_DENY);
  registry_close(r);
  r = open_started(NULL);
  assert_int_equal(registry_as_lookup(r, "sens", &out), 0);
  assert_int_equal(out.ue_svc_ids.n, 1);
  assert_string_equal(out.ue_svc_ids.v[0], "sensor-*");
  assert_int_equal(registry_policy_check(r, &sens, &s1, NULL), POLICY_ALLOW);
  assert_int_equal(registry_policy_check(r, &sens, &ue2, NULL), POLICY_DENY);

  /* an empty list: no UE at all */
  a.ue_svc_ids.n = 0;
  memset(&job, 0, sizeof job);
  job.op = REGISTRY_AS_PUT;
  job.as = &a;
  assert_int_equal(run_job(&f, r, &job), 0);
  assert_int_equal(registry_policy_check(r, &sens, &s1, NULL), POLICY_DENY);
  registry_close(r);
  r = open_started(NULL);
  assert_int_equal(registry_policy_check(r, &sens, &s1, NULL), POLICY_DENY);
  registry_close(r);
  m5_mailbox_free(f.replies, NULL);
  m5_loop_free(f.loop);
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
      cmocka_unit_test(test_glob),
      cmocka_unit_test(test_patterns),
      cmocka_unit_test(test_defaults_every_direction),
      cmocka_unit_test(test_each_switch),
      cmocka_unit_test(test_group_bc_topic),
      cmocka_unit_test(test_json),
      cmocka_unit_test_setup(test_registry_policy_precedence, fresh),
      cmocka_unit_test_setup(test_registry_as_ue_svc_ids, fresh),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
