/* Unit tests for src/server/registry/registry.c and registry_as.c: bindings and registrations through
 * the DB thread, the in-memory copy workers read, expiry, the SUPI check on REG, cascade on
 * unbind and persistence across a reopen; Application Server clients (allow-list of targets,
 * auth mode, the in-place upgrade that adds the mode) and their registrations; targetUri
 * parsing. */
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

#include <sqlite3.h>

#include "core/err.h"
#include "core/loop.h"
#include "server/registry/registry.h"
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
  registry_entry_t e; /* a REG names the generation it looked up (op_reg) */
  if (registry_lookup(r, id, at, &e) == 0) job->gen = e.gen;
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

typedef struct {
  char id[64];
  uint64_t gen;
} gen_seen_t;

static void gen_seen(void *arg, const char *id, uint64_t gen) {
  gen_seen_t *g = arg;
  if (!strcmp(id, g->id)) g->gen = gen;
}

/* Binding generations (registry.h; docs/delivery.md "Re-bound UE Service IDs"): a new one for
 * a new subscriber, for a removal and for a re-creation, never for the same SUPI; strictly
 * increasing per ID across all of them and across a restart; a REG of an older generation is
 * refused; removed IDs keep theirs for the store's catch-up at start-up. */
static void test_generations(void **state) {
  (void)state;
  fixture_t f = {.loop = m5_loop_new()};
  f.replies = m5_mailbox_new(f.loop, 4, on_reply, &f);
  registry_t *r = open_started();
  registry_job_t job;
  registry_entry_t e;

  assert_int_equal(do_bind(&f, r, "ue1", "001010000000001", &job), 0);
  uint64_t g1 = job.gen;
  assert_true(g1 > 0);
  assert_int_equal(job.old_gen, 0);
  assert_int_equal(registry_lookup(r, "ue1", 1000, &e), 0);
  assert_int_equal(e.gen, g1);
  /* The same SUPI again changes nothing. */
  assert_int_equal(do_bind(&f, r, "ue1", "001010000000001", &job), 0);
  assert_int_equal(job.gen, g1);
  assert_int_equal(job.old_gen, g1);
  assert_true(registry_gen_current(r, "ue1", g1));
  /* Another SUPI: a new generation; a REG of the old one is refused even with the new SUPI. */
  assert_int_equal(do_bind(&f, r, "ue1", "001010000000002", &job), 0);
  uint64_t g2 = job.gen;
  assert_true(g2 > g1);
  assert_int_equal(job.old_gen, g1);
  assert_false(registry_gen_current(r, "ue1", g1));
  assert_true(registry_gen_current(r, "ue1", g2));
  registry_job_t reg = {.op = REGISTRY_REGISTER, .gen = g1, .registered_at = 1000, .expiry = 1100};
  snprintf(reg.ue_svc_id, sizeof reg.ue_svc_id, "ue1");
  snprintf(reg.supi, sizeof reg.supi, "001010000000002");
  assert_int_equal(run_job(&f, r, &reg), M5_EPERM);
  reg.gen = g2;
  assert_int_equal(run_job(&f, r, &reg), 0);
  /* Removal: a generation of its own; re-creation with the first SUPI: a newer one still. */
  job = (registry_job_t){.op = REGISTRY_UNBIND};
  snprintf(job.ue_svc_id, sizeof job.ue_svc_id, "ue1");
  assert_int_equal(run_job(&f, r, &job), 0);
  uint64_t g3 = job.gen;
  assert_true(g3 > g2);
  assert_int_equal(job.old_gen, g2);
  assert_false(registry_gen_current(r, "ue1", g2));
  assert_int_equal(do_bind(&f, r, "ue1", "001010000000001", &job), 0);
  assert_true(job.created);
  uint64_t g4 = job.gen;
  assert_true(g4 > g3);
  /* A removed ID keeps its last generation for the store. */
  assert_int_equal(do_bind(&f, r, "gone", "001010000000009", &job), 0);
  job = (registry_job_t){.op = REGISTRY_UNBIND};
  snprintf(job.ue_svc_id, sizeof job.ue_svc_id, "gone");
  assert_int_equal(run_job(&f, r, &job), 0);
  uint64_t ggone = job.gen;
  registry_close(r);

  /* After a restart: the same generations, and newer ones only. */
  char err[256];
  r = registry_open(db_path, err, sizeof err);
  assert_non_null(r);
  gen_seen_t seen = {"ue1", 0}, seen_gone = {"gone", 0};
  assert_int_equal(registry_gens_foreach(r, gen_seen, &seen), 0);
  assert_int_equal(registry_gens_foreach(r, gen_seen, &seen_gone), 0);
  assert_int_equal(seen.gen, g4);
  assert_int_equal(seen_gone.gen, ggone);
  assert_int_equal(registry_start(r, 16), 0);
  assert_int_equal(registry_lookup(r, "ue1", 1000, &e), 0);
  assert_int_equal(e.gen, g4);
  assert_int_equal(do_bind(&f, r, "ue1", "001010000000002", &job), 0);
  assert_true(job.gen > ggone && job.gen > g4);
  registry_close(r);
  m5_mailbox_free(f.replies, NULL);
  m5_loop_free(f.loop);
}

/* A registry file from before generations (user_version 1): its bindings get generation 1,
 * as the store's rows from before do, so the first start after the upgrade fails nothing. */
static void test_generations_upgrade(void **state) {
  (void)state;
  sqlite3 *db = NULL;
  assert_int_equal(sqlite3_open(db_path, &db), SQLITE_OK);
  assert_int_equal(sqlite3_exec(db,
                                "CREATE TABLE bindings (ue_svc_id TEXT PRIMARY KEY,"
                                " supi TEXT NOT NULL) WITHOUT ROWID;"
                                "CREATE TABLE registrations (ue_svc_id TEXT PRIMARY KEY"
                                " REFERENCES bindings(ue_svc_id) ON DELETE CASCADE,"
                                " registered_at INTEGER NOT NULL, expiry INTEGER NOT NULL)"
                                " WITHOUT ROWID;"
                                "INSERT INTO bindings VALUES ('old', '001010000000007');"
                                "PRAGMA user_version = 1;",
                                NULL, NULL, NULL),
                   SQLITE_OK);
  sqlite3_close(db);
  fixture_t f = {.loop = m5_loop_new()};
  f.replies = m5_mailbox_new(f.loop, 4, on_reply, &f);
  registry_t *r = open_started();
  registry_entry_t e;
  assert_int_equal(registry_lookup(r, "old", 1000, &e), 0);
  assert_int_equal(e.gen, 1);
  registry_job_t job;
  assert_int_equal(do_bind(&f, r, "old", "001010000000008", &job), 0);
  assert_int_equal(job.old_gen, 1);
  assert_true(job.gen > 1);
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

/* ---- Application Servers ---- */

static int as_job(fixture_t *f, registry_t *r, registry_op_t op, registry_as_t *a,
                  registry_job_t *job) {
  memset(job, 0, sizeof *job);
  job->op = op;
  job->as = a;
  return run_job(f, r, job);
}

static registry_as_t as_client(const char *id, const char *t1, const char *t2) {
  registry_as_t a;
  memset(&a, 0, sizeof a);
  snprintf(a.as_svc_id, sizeof a.as_svc_id, "%s", id);
  if (t1) snprintf(a.targets[a.n_targets++], sizeof a.targets[0], "%s", t1);
  if (t2) snprintf(a.targets[a.n_targets++], sizeof a.targets[0], "%s", t2);
  return a;
}

static void test_as_clients_and_registrations(void **state) {
  (void)state;
  fixture_t f = {.loop = m5_loop_new()};
  f.replies = m5_mailbox_new(f.loop, 4, on_reply, &f);
  registry_t *r = open_started();
  registry_job_t job;
  registry_as_t out;

  registry_as_t a = as_client("meter-as", "as.example:8443", "127.0.0.1:9443");
  assert_int_equal(as_job(&f, r, REGISTRY_AS_PUT, &a, &job), 0);
  assert_true(job.created);
  assert_int_equal(registry_as_lookup(r, "meter-as", &out), 0);
  assert_int_equal(out.n_targets, 2);
  assert_string_equal(out.targets[1], "127.0.0.1:9443");
  assert_string_equal(out.registration_id, "");
  assert_int_equal(registry_as_count(r), 1);

  /* registration: only for a configured client; the stored record comes back */
  registry_as_t g = as_client("nobody", NULL, NULL);
  snprintf(g.registration_id, sizeof g.registration_id, "%032d", 7);
  snprintf(g.target_uri, sizeof g.target_uri, "https://as.example:8443/cb");
  assert_int_equal(as_job(&f, r, REGISTRY_AS_REGISTER, &g, &job), M5_ENOENT);
  snprintf(g.as_svc_id, sizeof g.as_svc_id, "meter-as");
  snprintf(g.app_id, sizeof g.app_id, "meter-app");
  g.registered_at = 1700000000;
  assert_int_equal(as_job(&f, r, REGISTRY_AS_REGISTER, &g, &job), 0);
  assert_true(job.created);
  assert_int_equal(g.n_targets, 2); /* *as is the stored record now */
  assert_int_equal(registry_as_lookup(r, "meter-as", &out), 0);
  assert_string_equal(out.target_uri, "https://as.example:8443/cb");
  assert_string_equal(out.app_id, "meter-app");

  /* persisted: a reopen sees client and registration */
  registry_close(r);
  r = open_started();
  assert_int_equal(registry_as_lookup(r, "meter-as", &out), 0);
  assert_int_equal(out.n_targets, 2);
  assert_string_equal(out.registration_id, g.registration_id);
  assert_int_equal(out.registered_at, 1700000000);

  /* deregistration needs the right id */
  registry_as_t d = as_client("meter-as", NULL, NULL);
  snprintf(d.registration_id, sizeof d.registration_id, "%032d", 8);
  assert_int_equal(as_job(&f, r, REGISTRY_AS_DEREGISTER, &d, &job), M5_ENOENT);
  snprintf(d.registration_id, sizeof d.registration_id, "%032d", 7);
  assert_int_equal(as_job(&f, r, REGISTRY_AS_DEREGISTER, &d, &job), 0);
  assert_int_equal(registry_as_lookup(r, "meter-as", &out), 0);
  assert_string_equal(out.registration_id, "");
  assert_int_equal(as_job(&f, r, REGISTRY_AS_DEREGISTER, &d, &job), M5_ENOENT);

  /* a new allow-list keeps a registration it still allows and drops one it does not */
  assert_int_equal(as_job(&f, r, REGISTRY_AS_REGISTER, &g, &job), 0);
  registry_as_t a2 = as_client("meter-as", "as.example:8443", NULL);
  assert_int_equal(as_job(&f, r, REGISTRY_AS_PUT, &a2, &job), 0);
  assert_false(job.created);
  assert_int_equal(registry_as_lookup(r, "meter-as", &out), 0);
  assert_string_equal(out.registration_id, g.registration_id);
  registry_as_t a3 = as_client("meter-as", "other.example:443", NULL);
  assert_int_equal(as_job(&f, r, REGISTRY_AS_PUT, &a3, &job), 0);
  assert_int_equal(registry_as_lookup(r, "meter-as", &out), 0);
  assert_string_equal(out.registration_id, "");
  assert_int_equal(out.n_targets, 1);

  /* removal cascades; a bad id is refused */
  assert_int_equal(as_job(&f, r, REGISTRY_AS_DEL, &a3, &job), 0);
  assert_int_equal(registry_as_lookup(r, "meter-as", &out), M5_ENOENT);
  assert_int_equal(as_job(&f, r, REGISTRY_AS_DEL, &a3, &job), M5_ENOENT);
  registry_as_t bad = as_client("a b", "x:1", NULL);
  assert_int_equal(as_job(&f, r, REGISTRY_AS_PUT, &bad, &job), M5_EINVAL);
  registry_close(r);
  r = open_started();
  assert_int_equal(registry_as_count(r), 0);
  registry_close(r);
  m5_mailbox_free(f.replies, NULL);
  m5_loop_free(f.loop);
}

static void test_as_ids_and_target_uris(void **state) {
  (void)state;
  assert_true(registry_as_id_valid("as1"));
  assert_true(registry_as_id_valid("Meter_AS-2.eu"));
  assert_false(registry_as_id_valid(""));
  assert_false(registry_as_id_valid("a b"));
  assert_false(registry_as_id_valid("a/b"));
  assert_false(registry_as_id_valid("urn:x"));
  char id65[66];
  memset(id65, 'a', 65);
  id65[65] = '\0';
  assert_false(registry_as_id_valid(id65));
  id65[64] = '\0';
  assert_true(registry_as_id_valid(id65));

  static const struct {
    const char *uri, *want; /* want NULL: refused */
  } cases[] = {
      {"https://AS.Example:8443/msgin5g", "as.example:8443"},
      {"https://as.example", "as.example:443"},
      {"HTTPS://as.example./cb", "as.example:443"},
      {"https://127.0.0.1:9443", "127.0.0.1:9443"},
      {"https://[::1]:9443/x", "[::1]:9443"},
      {"https://[::1]/x", "[::1]:443"},
      {"http://as.example/cb", NULL},
      {"https://user@as.example/cb", NULL},
      {"https://as.example/cb?x=1", NULL},
      {"https://as.example/cb#f", NULL},
      {"https://as.example:0/", NULL},
      {"https://as.example:65536/", NULL},
      {"https://as.example:/", NULL},
      {"https://as.exa mple/", NULL},
      {"https://as_example/", NULL},
      {"https://[::1/", NULL},
      {"https://[]:443/", NULL},
      {"https://[1:2:3]:443/", NULL},
      {"https://999.1.1.1/", NULL},
      {"https://127.1/", NULL},
      {"https://2130706433:9/", NULL},
      {"https://1.2.3.4.example/", "1.2.3.4.example:443"},
      {"https:///cb", NULL},
      {"https://", NULL},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    char hp[REGISTRY_HOSTPORT_MAX + 1] = "";
    int rc = m5_net_https_hostport(cases[i].uri, hp);
    if (cases[i].want ? rc != 0 || strcmp(hp, cases[i].want) != 0 : rc == 0)
      fail_msg("%s: rc %d '%s', want %s", cases[i].uri, rc, hp,
               cases[i].want ? cases[i].want : "refused");
  }
  registry_as_t a = as_client("x", "as.example:443", "[::1]:9443");
  assert_true(registry_as_target_allowed(&a, "https://AS.example/any/path"));
  assert_true(registry_as_target_allowed(&a, "https://[::1]:9443"));
  assert_false(registry_as_target_allowed(&a, "https://as.example:444/"));
  assert_false(registry_as_target_allowed(&a, "http://as.example/"));
}

/* An AS client's auth mode: stored, read back, switched, persisted; and a database from
 * before the mode existed gains the column in place, its clients keeping token. */
static void test_as_auth_mode_and_upgrade(void **state) {
  (void)state;
  /* The AS tables as an older m5s made them (no as_clients.auth), with one client. */
  char dir[300];
  snprintf(dir, sizeof dir, "%s/sub", dir_template);
  mkdir(dir, 0700);
  sqlite3 *db = NULL;
  assert_int_equal(sqlite3_open(db_path, &db), SQLITE_OK);
  assert_int_equal(sqlite3_exec(db,
                                "CREATE TABLE as_clients (as_svc_id TEXT PRIMARY KEY,"
                                " targets TEXT NOT NULL) WITHOUT ROWID;"
                                "INSERT INTO as_clients VALUES ('old-as', 'old.example:443');",
                                NULL, NULL, NULL),
                   SQLITE_OK);
  sqlite3_close(db);

  fixture_t f = {.loop = m5_loop_new()};
  f.replies = m5_mailbox_new(f.loop, 4, on_reply, &f);
  registry_t *r = open_started();
  registry_job_t job;
  registry_as_t out;
  registry_as_auth_t auth = REGISTRY_AS_AUTH_MTLS;
  assert_int_equal(registry_as_lookup(r, "old-as", &out), 0);
  assert_int_equal(out.auth, REGISTRY_AS_AUTH_TOKEN);
  assert_string_equal(out.targets[0], "old.example:443");
  assert_int_equal(registry_as_auth(r, "old-as", &auth), 0);
  assert_int_equal(auth, REGISTRY_AS_AUTH_TOKEN);
  assert_int_equal(registry_as_auth(r, "nobody", &auth), M5_ENOENT);

  registry_as_t a = as_client("old-as", "old.example:443", NULL);
  a.auth = REGISTRY_AS_AUTH_MTLS;
  assert_int_equal(as_job(&f, r, REGISTRY_AS_PUT, &a, &job), 0);
  assert_false(job.created);
  assert_int_equal(registry_as_auth(r, "old-as", &auth), 0);
  assert_int_equal(auth, REGISTRY_AS_AUTH_MTLS);
  registry_as_t b = as_client("new-as", "new.example:443", NULL);
  assert_int_equal(as_job(&f, r, REGISTRY_AS_PUT, &b, &job), 0);

  registry_close(r); /* persisted */
  r = open_started();
  assert_int_equal(registry_as_lookup(r, "old-as", &out), 0);
  assert_int_equal(out.auth, REGISTRY_AS_AUTH_MTLS);
  assert_int_equal(registry_as_lookup(r, "new-as", &out), 0);
  assert_int_equal(out.auth, REGISTRY_AS_AUTH_TOKEN);
  a.auth = REGISTRY_AS_AUTH_TOKEN; /* and back */
  assert_int_equal(as_job(&f, r, REGISTRY_AS_PUT, &a, &job), 0);
  registry_close(r);
  r = open_started();
  assert_int_equal(registry_as_lookup(r, "old-as", &out), 0);
  assert_int_equal(out.auth, REGISTRY_AS_AUTH_TOKEN);
  registry_close(r);
  m5_mailbox_free(f.replies, NULL);
  m5_loop_free(f.loop);

  assert_string_equal(registry_as_auth_name(REGISTRY_AS_AUTH_MTLS), "mtls");
  assert_string_equal(registry_as_auth_name(REGISTRY_AS_AUTH_TOKEN), "token");
  assert_int_equal(registry_as_auth_parse("mtls", &auth), 0);
  assert_int_equal(auth, REGISTRY_AS_AUTH_MTLS);
  assert_int_equal(registry_as_auth_parse("MTLS", &auth), M5_EINVAL);
  assert_int_equal(registry_as_auth_parse("", &auth), M5_EINVAL);
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
      cmocka_unit_test_setup(test_generations, fresh),
      cmocka_unit_test_setup(test_generations_upgrade, fresh),
      cmocka_unit_test(test_normalise_supi),
      cmocka_unit_test_setup(test_as_clients_and_registrations, fresh),
      cmocka_unit_test_setup(test_as_auth_mode_and_upgrade, fresh),
      cmocka_unit_test(test_as_ids_and_target_uris),
      cmocka_unit_test(test_bad_path),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
