/* Unit tests for the group side of src/lib/store (store.h: m5_store_msg_t.group_gen and
 * M5_STORE_GROUP_SWEEP; SQLite schema 5, sqlite_groups.c; docs/store.md "Group messages"):
 * group_gen stored and returned with every delivery, the upgrade of a schema 4 store, and the
 * sweep per member, per group and over all groups, with its cursor, its failure reports, the
 * deliveries in flight it leaves alone, the counts afterwards and the jobs it refuses. The
 * membership the sweep asks about is a small model here standing in for server/groups (its
 * "contract with the fan-out": a delivery made at generation G stays valid while the group
 * exists and the member is in it with since <= G). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <semaphore.h>
#include <sqlite3.h>

#include "core/err.h"
#include "core/loop.h"
#include "store/store.h"
#include "testutil.h"

static char dir[256];
static char db_path[320];
static int64_t fake_now; /* Unix ms */
static uint64_t opt_max_dlvs; /* max_deliveries_per_originator, 0: the default */

static int64_t fake_clock(void *arg) {
  (void)arg;
  return __atomic_load_n(&fake_now, __ATOMIC_SEQ_CST);
}

static void set_now(int64_t ms) {
  __atomic_store_n(&fake_now, ms, __ATOMIC_SEQ_CST);
}

typedef struct {
  m5_loop_t *loop;
  m5_mailbox_t *replies;
  int done;
} fx_t;

static void on_reply(void *msg, void *arg) {
  (void)msg;
  fx_t *f = arg;
  f->done++;
  m5_loop_stop(f->loop);
}

/* ---- a membership model standing in for server/groups ---- */

#define MODEL_GROUPS 8
#define MODEL_MEMBERS 8
#define MODEL_CALLS 64

typedef struct {
  char type[16], id[32];
  bool deleted;
  bool everyone; /* every recipient is a member since generation 1 (big groups) */
  size_t n;
  struct {
    char who[160]; /* "UE:ue1" */
    uint64_t since;
  } m[MODEL_MEMBERS];
} mgroup_t;

static struct {
  mgroup_t g[MODEL_GROUPS];
  size_t n;
  /* what the store asked: dest, recipient, generation */
  size_t calls;
  struct {
    char dest[160], rcpt[160];
    uint64_t gen;
  } call[MODEL_CALLS];
} model;

static mgroup_t *group_new(const char *type, const char *id) {
  assert_true(model.n < MODEL_GROUPS);
  mgroup_t *g = &model.g[model.n++];
  memset(g, 0, sizeof *g);
  snprintf(g->type, sizeof g->type, "%s", type);
  snprintf(g->id, sizeof g->id, "%s", id);
  return g;
}

static void member_add(mgroup_t *g, const char *who, uint64_t since) {
  assert_true(g->n < MODEL_MEMBERS);
  snprintf(g->m[g->n].who, sizeof g->m[g->n].who, "%s", who);
  g->m[g->n].since = since;
  g->n++;
}

static void member_del(mgroup_t *g, const char *who) {
  for (size_t i = 0; i < g->n; i++)
    if (!strcmp(g->m[i].who, who)) {
      g->m[i] = g->m[--g->n];
      return;
    }
  fail_msg("%s is not a member of %s", who, g->id);
}

/* The check the store calls (on its thread) for each PENDING group delivery. */
static const char *group_check(void *arg, const m5_msg_addr_t *dest, const m5_msg_addr_t *rcpt,
                               uint64_t gen) {
  assert_ptr_equal(arg, &model);
  char who[160];
  snprintf(who, sizeof who, "%s:%s", rcpt->type, rcpt->addr);
  if (model.calls < MODEL_CALLS) {
    snprintf(model.call[model.calls].dest, sizeof model.call[0].dest, "%s:%s", dest->type,
             dest->addr);
    snprintf(model.call[model.calls].rcpt, sizeof model.call[0].rcpt, "%s", who);
    model.call[model.calls].gen = gen;
  }
  model.calls++;
  for (size_t i = 0; i < model.n; i++) {
    const mgroup_t *g = &model.g[i];
    if (strcmp(g->type, dest->type) != 0 || strcmp(g->id, dest->addr) != 0 || g->deleted) continue;
    if (g->everyone) return gen >= 1 ? NULL : M5_CAUSE_LEFT_GROUP;
    for (size_t k = 0; k < g->n; k++)
      if (!strcmp(g->m[k].who, who)) return g->m[k].since <= gen ? NULL : M5_CAUSE_LEFT_GROUP;
    return M5_CAUSE_LEFT_GROUP;
  }
  return M5_CAUSE_GROUP_DELETED;
}

/* ---- fixture and store helpers ---- */

static int fx_setup(void **state) {
  fx_t *f = calloc(1, sizeof *f);
  f->loop = m5_loop_new();
  f->replies = m5_mailbox_new(f->loop, 64, on_reply, f);
  if (tu_mkdtemp(dir, sizeof dir, "m5-store-groups") != 0) return -1;
  snprintf(db_path, sizeof db_path, "%s/var/store.db", dir);
  set_now(1700000000000);
  memset(&model, 0, sizeof model);
  opt_max_dlvs = 0;
  *state = f;
  return f->loop && f->replies ? 0 : -1;
}

static int fx_teardown(void **state) {
  fx_t *f = *state;
  m5_mailbox_free(f->replies, NULL);
  m5_loop_free(f->loop);
  free(f);
  tu_rmtree(dir);
  return 0;
}

static m5_store_t *open_store(void) {
  m5_store_opts_t o;
  m5_store_opts_init(&o);
  if (opt_max_dlvs) o.max_deliveries_per_originator = opt_max_dlvs;
  o.path = db_path;
  o.clock_ms = fake_clock;
  char err[512];
  m5_store_t *s = m5_store_open(&o, err, sizeof err);
  if (!s) fail_msg("m5_store_open: %s", err);
  return s;
}

static int run(fx_t *f, m5_store_t *s, m5_store_job_t *job) {
  job->base.reply = f->replies;
  f->done = 0;
  assert_int_equal(m5_store_submit(s, job), 0);
  assert_int_equal(m5_loop_run(f->loop), 0);
  assert_int_equal(f->done, 1);
  return job->status;
}

/* "UE:ue1" -> {UE, ue1}; "" -> empty */
static void addr(m5_msg_addr_t *a, const char *s) {
  memset(a, 0, sizeof *a);
  const char *colon = strchr(s, ':');
  if (!colon) return;
  snprintf(a->type, sizeof a->type, "%.*s", (int)(colon - s), s);
  snprintf(a->addr, sizeof a->addr, "%s", colon + 1);
}

/* A message from ori to dest ("GROUP:g1", "BC:a1" or, point-to-point, the one recipient)
 * for the recipients to[], made at group generation gen; in_flight: the recipients (by
 * index, bit i) the caller pushes at once. */
typedef struct {
  m5_store_job_t job;
  m5_store_rcpt_t rcpts[8];
  char payload[64];
} gaccept_t;

static m5_store_job_t *mk_msg(gaccept_t *a, const char *ori, const char *dest, uint64_t gen,
                              const char *msg_id, const char *const *to, size_t n, bool report_req,
                              unsigned in_flight) {
  memset(a, 0, sizeof *a);
  m5_store_job_t *j = &a->job;
  j->op = M5_STORE_ACCEPT;
  addr(&j->msg.ori, ori);
  addr(&j->msg.dest, dest);
  snprintf(j->msg.msg_id, sizeof j->msg.msg_id, "%s", msg_id);
  snprintf(j->msg.app_id, sizeof j->msg.app_id, "app1");
  j->msg.prio = M5_PRIO_MIDDLE;
  j->msg.sto_fwd = true;
  j->msg.deliv_st_req = report_req;
  j->msg.group_gen = gen;
  int len = snprintf(a->payload, sizeof a->payload, "body of %s", msg_id);
  j->msg.payload = (uint8_t *)a->payload;
  j->msg.payload_len = (size_t)len;
  assert_true(n <= 8);
  for (size_t i = 0; i < n; i++) {
    addr(&a->rcpts[i].addr, to[i]);
    a->rcpts[i].next_attempt_ms = fake_now + 1000;
    a->rcpts[i].in_flight = (in_flight >> i) & 1u;
  }
  j->rcpts = a->rcpts;
  j->n_rcpts = n;
  j->partial = true;
  snprintf(j->dedup_ori, sizeof j->dedup_ori, "%s", ori);
  snprintf(j->dedup_id, sizeof j->dedup_id, "%s", msg_id);
  return j;
}

static void run_accept(fx_t *f, m5_store_t *s, gaccept_t *a) {
  assert_int_equal(run(f, s, &a->job), 0);
  assert_int_equal(a->job.outcome, M5_STORE_ACCEPTED);
  for (size_t i = 0; i < a->job.n_rcpts; i++)
    assert_true(a->rcpts[i].id != 0);
}

static void accept_msg(fx_t *f, m5_store_t *s, gaccept_t *a, const char *ori, const char *dest,
                       uint64_t gen, const char *msg_id, const char *const *to, size_t n,
                       bool report_req, unsigned in_flight) {
  mk_msg(a, ori, dest, gen, msg_id, to, n, report_req, in_flight);
  run_accept(f, s, a);
}

/* Point-to-point (group_gen 0), no report asked. */
static void accept_p2p(fx_t *f, m5_store_t *s, const char *ori, const char *to,
                       const char *msg_id) {
  gaccept_t a;
  const char *rc[] = {to};
  accept_msg(f, s, &a, ori, to, 0, msg_id, rc, 1, false, 0);
}

/* DUE for who ("UE:ue1"): its queue as "msgId,msgId,..." (reports as "R(msgId)"), with
 * group_gen checked against want_gen(msgId) when given. */
static const char *queue_of(fx_t *f, m5_store_t *s, const char *who) {
  static char out[512];
  m5_store_job_t j;
  memset(&j, 0, sizeof j);
  j.op = M5_STORE_DUE;
  addr(&j.rcpt, who);
  j.limit = 100;
  assert_int_equal(run(f, s, &j), 0);
  out[0] = 0;
  size_t len = 0;
  for (size_t i = 0; i < j.n_items; i++) {
    const m5_store_msg_t *m = &j.items[i].msg;
    int rep = !strcmp(m->app_id, M5_STORE_REPORT_APP);
    int w = snprintf(out + len, sizeof out - len, "%s%s%s%s", len ? "," : "", rep ? "R(" : "",
                     m->msg_id, rep ? ")" : "");
    assert_true(w > 0 && (size_t)w < sizeof out - len);
    len += (size_t)w;
  }
  m5_store_job_clear(&j);
  return out;
}

static uint64_t pending_of(fx_t *f, m5_store_t *s, const char *who) {
  m5_store_job_t j;
  memset(&j, 0, sizeof j);
  j.op = M5_STORE_COUNTS;
  addr(&j.rcpt, who);
  assert_int_equal(run(f, s, &j), 0);
  return j.pending;
}

static void stats(m5_store_t *s, m5_store_stats_t *st) {
  m5_store_stats(s, st);
}

/* A GROUP_SWEEP job: dest "GROUP:g1" / "BC:a1" / "" (all), member "UE:ue1" or "" (all). */
static void mk_sweep(m5_store_job_t *j, const char *dest, const char *member, uint64_t cursor,
                     size_t limit) {
  memset(j, 0, sizeof *j);
  j->op = M5_STORE_GROUP_SWEEP;
  addr(&j->msg.dest, dest);
  addr(&j->rcpt, member);
  j->id = cursor;
  j->limit = limit;
  j->group_check = group_check;
  j->group_check_arg = &model;
}

/* Sweeps to the end (cursor from 0, limit 0: the default); the deliveries failed. */
static uint64_t sweep_all_pages(fx_t *f, m5_store_t *s, const char *dest, const char *member) {
  uint64_t failed = 0, cursor = 0;
  for (int pages = 0;; pages++) {
    assert_true(pages < 100);
    m5_store_job_t j;
    mk_sweep(&j, dest, member, cursor, 0);
    assert_int_equal(run(f, s, &j), 0);
    failed += j.group_failed;
    cursor = j.id;
    if (!j.more) break;
  }
  return failed;
}

/* The failure report on msg_id waiting for `to`, from `from`, with its text. */
static void expect_report(fx_t *f, m5_store_t *s, const char *to, const char *from,
                          const char *msg_id, const char *cause) {
  m5_store_job_t d;
  memset(&d, 0, sizeof d);
  d.op = M5_STORE_DUE;
  addr(&d.rcpt, to);
  d.limit = 100;
  assert_int_equal(run(f, s, &d), 0);
  char text[96];
  snprintf(text, sizeof text, "REPT_DELY_FAILED %s", cause);
  m5_msg_addr_t fa;
  addr(&fa, from);
  size_t found = 0;
  for (size_t i = 0; i < d.n_items; i++) {
    const m5_store_msg_t *m = &d.items[i].msg;
    if (strcmp(m->app_id, M5_STORE_REPORT_APP) != 0 || strcmp(m->msg_id, msg_id) != 0 ||
        strcmp(m->ori.addr, fa.addr) != 0)
      continue;
    found++;
    assert_int_equal(m->group_gen, 0); /* the store's own reports are no group messages */
    assert_int_equal(m->payload_len, strlen(text));
    assert_memory_equal(m->payload, text, strlen(text));
  }
  assert_int_equal(found, 1);
  m5_store_job_clear(&d);
}

/* ---- group_gen ---- */

/* group_gen is stored with the body and comes back with each of its deliveries from DUE,
 * DUE_ANY, MARK_* and EXPIRE, also after a reopen; point-to-point messages and the reports
 * the store writes have 0. */
static void test_group_gen_round_trip(void **state) {
  fx_t *f = *state;
  m5_store_t *s = open_store();
  gaccept_t a;
  const char *to[] = {"UE:ue1", "UE:ue2"};
  accept_msg(f, s, &a, "UE:ue9", "GROUP:g1", 7, "m1", to, 2, true, 0);
  uint64_t m1_ue1 = a.rcpts[0].id;
  accept_p2p(f, s, "UE:ue9", "UE:ue1", "p1");
  const char *to3[] = {"UE:ue3"};
  accept_msg(f, s, &a, "AS:as1", "BC:a1", 5, "b1", to3, 1, false, 0);

  m5_store_job_t j;
  memset(&j, 0, sizeof j);
  j.op = M5_STORE_DUE;
  addr(&j.rcpt, "UE:ue1");
  j.limit = 10;
  assert_int_equal(run(f, s, &j), 0);
  assert_int_equal(j.n_items, 2);
  assert_string_equal(j.items[0].msg.msg_id, "m1");
  assert_int_equal(j.items[0].msg.group_gen, 7);
  assert_string_equal(j.items[0].msg.dest.type, "GROUP");
  assert_string_equal(j.items[1].msg.msg_id, "p1");
  assert_int_equal(j.items[1].msg.group_gen, 0);
  m5_store_job_clear(&j);

  m5_store_job_t k = {.op = M5_STORE_DUE_ANY, .now_ms = fake_now + 5000, .limit = 10};
  assert_int_equal(run(f, s, &k), 0);
  assert_int_equal(k.n_items, 4);
  for (size_t i = 0; i < k.n_items; i++) {
    const m5_store_msg_t *m = &k.items[i].msg;
    uint64_t want = !strcmp(m->msg_id, "m1") ? 7 : !strcmp(m->msg_id, "b1") ? 5 : 0;
    assert_int_equal(m->group_gen, want);
  }
  m5_store_job_clear(&k);

  /* stored, not remembered */
  m5_store_close(s);
  s = open_store();
  assert_string_equal(queue_of(f, s, "UE:ue3"), "b1");
  memset(&j, 0, sizeof j);
  j.op = M5_STORE_DUE;
  addr(&j.rcpt, "UE:ue3");
  j.limit = 10;
  assert_int_equal(run(f, s, &j), 0);
  assert_int_equal(j.n_items, 1);
  assert_int_equal(j.items[0].msg.group_gen, 5);
  m5_store_job_clear(&j);

  /* MARK_FAILED returns it, and the report it writes has 0 */
  memset(&j, 0, sizeof j);
  j.op = M5_STORE_MARK_FAILED;
  j.id = m1_ue1;
  snprintf(j.cause, sizeof j.cause, "%s", M5_CAUSE_UNREACHABLE);
  assert_int_equal(run(f, s, &j), 0);
  assert_int_equal(j.items[0].msg.group_gen, 7);
  assert_true(j.items[0].report_id != 0);
  m5_store_job_clear(&j);
  expect_report(f, s, "UE:ue9", "UE:ue1", "m1", M5_CAUSE_UNREACHABLE);

  /* EXPIRE returns it */
  const char *to5[] = {"UE:ue5"};
  mk_msg(&a, "UE:ue9", "GROUP:g3", 11, "m3", to5, 1, false, 0)->msg.expr_time =
      fake_now / 1000 + 10;
  run_accept(f, s, &a);
  k = (m5_store_job_t){.op = M5_STORE_EXPIRE, .now_ms = fake_now + 10000, .limit = 10};
  assert_int_equal(run(f, s, &k), 0);
  assert_int_equal(k.n_items, 1);
  assert_string_equal(k.items[0].msg.msg_id, "m3");
  assert_int_equal(k.items[0].msg.group_gen, 11);
  m5_store_job_clear(&k);
  m5_store_close(s);
}

/* ---- schema 5 ---- */

static long sql_long(const char *q) {
  sqlite3 *db = NULL;
  sqlite3_stmt *st = NULL;
  assert_int_equal(sqlite3_open(db_path, &db), SQLITE_OK);
  assert_int_equal(sqlite3_prepare_v2(db, q, -1, &st, NULL), SQLITE_OK);
  assert_int_equal(sqlite3_step(st), SQLITE_ROW);
  long v = (long)sqlite3_column_int64(st, 0);
  sqlite3_finalize(st);
  sqlite3_close(db);
  return v;
}

/* A schema 4 store (before group messages) is upgraded in place (to 7) at open: its messages
 * stay (group_gen 0), group messages can then be stored and swept. The file is a schema 5
 * store with what 4 -> 5 added taken away again, as the tables of version 4 were. */
static void test_schema_4_upgraded(void **state) {
  fx_t *f = *state;
  m5_store_t *s = open_store();
  accept_p2p(f, s, "UE:ue9", "UE:ue1", "old1");
  m5_store_close(s);
  sqlite3 *db = NULL;
  assert_int_equal(sqlite3_open(db_path, &db), SQLITE_OK);
  assert_int_equal(sqlite3_exec(db,
                                "CREATE TABLE dedup_buckets (ori TEXT NOT NULL," /* 6 -> 7 */
                                " bucket INTEGER NOT NULL, n INTEGER NOT NULL,"
                                " PRIMARY KEY (ori, bucket)) WITHOUT ROWID;"
                                "CREATE INDEX dedup_buckets_age ON dedup_buckets (bucket);"
                                "DROP TABLE report_tickets;" /* schema 3's (to 5) */
                                "CREATE TABLE report_tickets (ori TEXT NOT NULL,"
                                " msg_id TEXT NOT NULL, gen INTEGER NOT NULL,"
                                " until_ms INTEGER NOT NULL,"
                                " PRIMARY KEY (ori, msg_id)) WITHOUT ROWID;"
                                "CREATE INDEX report_tickets_age ON report_tickets (until_ms);"
                                "DROP INDEX messages_group; DROP INDEX messages_group_all;"
                                "ALTER TABLE messages DROP COLUMN group_gen;"
                                "PRAGMA user_version = 4;",
                                NULL, NULL, NULL),
                   SQLITE_OK);
  sqlite3_close(db);
  assert_int_equal(sql_long("PRAGMA user_version"), 4);

  s = open_store();
  m5_store_job_t j;
  memset(&j, 0, sizeof j);
  j.op = M5_STORE_DUE;
  addr(&j.rcpt, "UE:ue1");
  j.limit = 10;
  assert_int_equal(run(f, s, &j), 0);
  assert_int_equal(j.n_items, 1);
  assert_string_equal(j.items[0].msg.msg_id, "old1");
  assert_int_equal(j.items[0].msg.group_gen, 0);
  m5_store_job_clear(&j);
  mgroup_t *g = group_new("GROUP", "g1");
  member_add(g, "UE:ue1", 1);
  gaccept_t a;
  const char *to[] = {"UE:ue1", "UE:ue2"};
  accept_msg(f, s, &a, "UE:ue9", "GROUP:g1", 3, "new1", to, 2, false, 0);
  assert_int_equal(sweep_all_pages(f, s, "", ""), 1); /* ue2 is no member */
  assert_string_equal(queue_of(f, s, "UE:ue1"), "old1,new1");
  assert_string_equal(queue_of(f, s, "UE:ue2"), "");
  m5_store_close(s);
  assert_int_equal(sql_long("PRAGMA user_version"), 7);
  assert_int_equal(sql_long("SELECT count(*) FROM sqlite_schema WHERE type = 'index'"
                            " AND name IN ('messages_group', 'messages_group_all')"),
                   2);
  assert_int_equal(sql_long("SELECT group_gen FROM messages WHERE msg_id = 'new1'"), 3);
}

/* ---- GROUP_SWEEP ---- */

/* One member removed from one group: only its deliveries of that group's messages fail
 * (RECIPIENT_LEFT_GROUP, with the reports asked for); the same member's deliveries of another
 * group, of a broadcast area and point-to-point stay, as do the group's other members' and
 * the member's deliveries of a message made after it was added again. */
static void test_sweep_member(void **state) {
  fx_t *f = *state;
  m5_store_t *s = open_store();
  mgroup_t *g1 = group_new("GROUP", "g1"), *g2 = group_new("GROUP", "g2"),
           *a1 = group_new("BC", "a1");
  const char *m1to[] = {"UE:ue1", "UE:ue2", "UE:ue3", "AS:as1"};
  for (size_t i = 0; i < 4; i++)
    member_add(g1, m1to[i], 1);
  member_add(g2, "UE:ue1", 1);
  member_add(g2, "UE:ue2", 1);
  member_add(a1, "UE:ue1", 1);
  gaccept_t a;
  accept_msg(f, s, &a, "UE:ue9", "GROUP:g1", 1, "m1", m1to, 4, true, 0);
  const char *m2to[] = {"UE:ue1", "UE:ue2"};
  accept_msg(f, s, &a, "UE:ue9", "GROUP:g2", 1, "m2", m2to, 2, true, 0);
  accept_p2p(f, s, "UE:ue9", "UE:ue1", "m3");
  accept_msg(f, s, &a, "AS:as9", "GROUP:g1", 2, "m4", m2to, 2, true, 0);
  const char *m5to[] = {"UE:ue1"};
  accept_msg(f, s, &a, "AS:as9", "BC:a1", 1, "m5", m5to, 1, false, 0);
  /* ue1 leaves g1 (generation 4) and comes back (5); m6 is made after that */
  member_del(g1, "UE:ue1");
  member_add(g1, "UE:ue1", 5);
  accept_msg(f, s, &a, "UE:ue9", "GROUP:g1", 5, "m6", m5to, 1, true, 0);
  m5_store_stats_t st0, st;
  stats(s, &st0);
  assert_int_equal(st0.queued, 11);

  m5_store_job_t j;
  mk_sweep(&j, "GROUP:g1", "UE:ue1", 0, 0);
  assert_int_equal(run(f, s, &j), 0);
  assert_int_equal(j.group_failed, 2); /* m1 and m4 to ue1 */
  assert_false(j.more);
  /* asked about ue1's deliveries of g1 alone, each with its message's generation */
  assert_int_equal(model.calls, 3);
  uint64_t want_gen[] = {1, 2, 5};
  for (size_t i = 0; i < 3; i++) {
    assert_string_equal(model.call[i].dest, "GROUP:g1");
    assert_string_equal(model.call[i].rcpt, "UE:ue1");
    assert_int_equal(model.call[i].gen, want_gen[i]);
  }
  assert_string_equal(queue_of(f, s, "UE:ue1"), "m2,m3,m5,m6");
  assert_string_equal(queue_of(f, s, "UE:ue2"), "m1,m2,m4");
  assert_string_equal(queue_of(f, s, "UE:ue3"), "m1");
  assert_string_equal(queue_of(f, s, "AS:as1"), "m1");
  /* the reports asked for, from ue1 to each originator */
  expect_report(f, s, "UE:ue9", "UE:ue1", "m1", M5_CAUSE_LEFT_GROUP);
  expect_report(f, s, "AS:as9", "UE:ue1", "m4", M5_CAUSE_LEFT_GROUP);
  stats(s, &st);
  assert_int_equal(st.failed - st0.failed, 2);
  assert_int_equal(st.reports - st0.reports, 2);
  assert_int_equal(st.queued, st0.queued - 2 + 2);
  assert_int_equal(pending_of(f, s, "UE:ue1"), 4);
  assert_int_equal(pending_of(f, s, "UE:ue2"), 3);

  /* again: nothing more */
  mk_sweep(&j, "GROUP:g1", "UE:ue1", 0, 0);
  assert_int_equal(run(f, s, &j), 0);
  assert_int_equal(j.group_failed, 0);
  /* an AS member */
  member_del(g1, "AS:as1");
  mk_sweep(&j, "GROUP:g1", "AS:as1", 0, 0);
  assert_int_equal(run(f, s, &j), 0);
  assert_int_equal(j.group_failed, 1);
  assert_string_equal(queue_of(f, s, "AS:as1"), "");
  assert_string_equal(queue_of(f, s, "UE:ue2"), "m1,m2,m4");
  /* ue1 leaves the area: the per-member sweep of BC:a1 */
  member_del(a1, "UE:ue1");
  mk_sweep(&j, "BC:a1", "UE:ue1", 0, 0);
  assert_int_equal(run(f, s, &j), 0);
  assert_int_equal(j.group_failed, 1);
  assert_string_equal(queue_of(f, s, "UE:ue1"), "m2,m3,m6");

  /* the figures in memory are what the tables say (a reopen rebuilds them) */
  stats(s, &st0);
  m5_store_close(s);
  s = open_store();
  stats(s, &st);
  assert_int_equal(st.queued, st0.queued);
  assert_int_equal(st.messages, st0.messages);
  assert_int_equal(pending_of(f, s, "UE:ue1"), 3);
  m5_store_close(s);
}

/* A group deleted: every PENDING delivery of its messages fails (GROUP_DELETED), each with the
 * report its originator asked for and none otherwise; a delivery in flight is left to its
 * pusher (and swept once it is PENDING again); another group's and point-to-point deliveries
 * stay; a message whose deliveries are all final goes; the counts follow. */
static void test_sweep_group_deleted(void **state) {
  fx_t *f = *state;
  m5_store_t *s = open_store();
  mgroup_t *g1 = group_new("GROUP", "g1"), *g2 = group_new("GROUP", "g2");
  const char *m1to[] = {"UE:ue1", "UE:ue2", "UE:ue3"};
  for (size_t i = 0; i < 3; i++)
    member_add(g1, m1to[i], 1);
  member_add(g2, "UE:ue1", 1);
  member_add(g2, "UE:ue2", 1);
  gaccept_t a;
  accept_msg(f, s, &a, "UE:ue9", "GROUP:g1", 1, "m1", m1to, 3, true, 1u << 2); /* ue3 in flight */
  uint64_t m1_ue3 = a.rcpts[2].id;
  const char *two[] = {"UE:ue1", "UE:ue2"};
  accept_msg(f, s, &a, "AS:as9", "GROUP:g1", 1, "m2", two, 2, false, 0);
  accept_msg(f, s, &a, "UE:ue9", "GROUP:g2", 1, "m3", two, 2, true, 0);
  accept_p2p(f, s, "UE:ue9", "UE:ue1", "m4");
  m5_store_stats_t st0, st;
  stats(s, &st0);
  assert_int_equal(st0.queued, 8);
  assert_int_equal(st0.messages, 4);

  g1->deleted = true;
  m5_store_job_t j;
  mk_sweep(&j, "GROUP:g1", "", 0, 0);
  assert_int_equal(run(f, s, &j), 0);
  assert_int_equal(j.group_failed, 4);
  assert_false(j.more);
  assert_int_equal(model.calls, 4); /* ue3's delivery in flight was not even asked about */
  assert_string_equal(queue_of(f, s, "UE:ue1"), "m3,m4");
  assert_string_equal(queue_of(f, s, "UE:ue2"), "m3");
  assert_string_equal(queue_of(f, s, "UE:ue9"), "R(m1),R(m1)");
  expect_report(f, s, "UE:ue9", "UE:ue1", "m1", M5_CAUSE_GROUP_DELETED);
  expect_report(f, s, "UE:ue9", "UE:ue2", "m1", M5_CAUSE_GROUP_DELETED);
  assert_string_equal(queue_of(f, s, "AS:as9"), ""); /* m2 asked for none */
  stats(s, &st);
  assert_int_equal(st.failed - st0.failed, 4);
  assert_int_equal(st.reports - st0.reports, 2);
  assert_int_equal(st.queued, st0.queued - 4 + 2);
  assert_int_equal(st.messages, st0.messages - 1 + 2); /* m2 went; m1 waits for ue3 */
  assert_int_equal(pending_of(f, s, "UE:ue1"), 2);
  assert_int_equal(pending_of(f, s, "UE:ue2"), 1);
  assert_int_equal(pending_of(f, s, "UE:ue3"), 1); /* in flight still counts */

  /* the pusher concludes it: it is still there to conclude */
  memset(&j, 0, sizeof j);
  j.op = M5_STORE_RESCHEDULE;
  j.id = m1_ue3;
  j.next_attempt_ms = fake_now + 2000;
  j.attempts = 1;
  assert_int_equal(run(f, s, &j), 0);
  /* PENDING again: the next sweep fails it, and m1 goes */
  mk_sweep(&j, "GROUP:g1", "", 0, 0);
  assert_int_equal(run(f, s, &j), 0);
  assert_int_equal(j.group_failed, 1);
  expect_report(f, s, "UE:ue9", "UE:ue3", "m1", M5_CAUSE_GROUP_DELETED);
  stats(s, &st);
  assert_int_equal(st.queued, st0.queued - 5 + 3);
  assert_int_equal(st.messages, st0.messages - 2 + 3);
  assert_int_equal(pending_of(f, s, "UE:ue3"), 0);

  m5_store_close(s);
  assert_int_equal(sql_long("SELECT count(*) FROM messages WHERE msg_id IN ('m1', 'm2')"
                            " AND app_id = 'app1'"),
                   0); /* the reports on m1 carry its msgId */
  assert_int_equal(sql_long("SELECT count(*) FROM deliveries d JOIN messages m ON m.id = d.msg"
                            " WHERE m.group_gen > 0"),
                   2); /* m3's */
  s = open_store();
  stats(s, &st0);
  assert_int_equal(st0.queued, st.queued);
  assert_int_equal(st0.messages, st.messages);
  m5_store_close(s);
}

/* The start-up catch-up (every group and area) in pages of 2 messages: the cursor moves on,
 * `more` holds until the last page, point-to-point messages are never asked about, and each
 * group message is asked about with its own dest and generation. Then a group and a member
 * swept in pages of 1. */
static void test_sweep_all_paged(void **state) {
  fx_t *f = *state;
  m5_store_t *s = open_store();
  mgroup_t *g1 = group_new("GROUP", "g1"), *g2 = group_new("GROUP", "g2"),
           *a1 = group_new("BC", "a1");
  member_add(g1, "UE:ue1", 1);
  member_add(g1, "UE:ue2", 1);
  member_add(g2, "UE:ue1", 1);
  member_add(a1, "UE:ue1", 1);
  member_add(a1, "UE:ue2", 1);
  gaccept_t a;
  const char *both[] = {"UE:ue1", "UE:ue2"}, *one[] = {"UE:ue1"};
  accept_msg(f, s, &a, "UE:ue9", "GROUP:g1", 11, "m1", both, 2, false, 0);
  accept_p2p(f, s, "UE:ue9", "UE:ue1", "p1");
  accept_msg(f, s, &a, "UE:ue9", "GROUP:g2", 12, "m2", one, 1, false, 0);
  accept_msg(f, s, &a, "AS:as9", "BC:a1", 13, "m3", both, 2, false, 0);
  accept_msg(f, s, &a, "UE:ue9", "GROUP:g1", 14, "m4", both, 2, false, 0);
  accept_p2p(f, s, "UE:ue9", "UE:ue2", "p2");
  accept_msg(f, s, &a, "UE:ue9", "GROUP:g2", 15, "m5", one, 1, false, 0);
  /* while m5s was down: g2 deleted, ue2 left a1 */
  g2->deleted = true;
  member_del(a1, "UE:ue2");

  uint64_t cursor = 0, failed = 0;
  bool want_more[] = {true, true, false};
  for (size_t page = 0; page < 3; page++) {
    m5_store_job_t j;
    mk_sweep(&j, "", "", cursor, 2);
    assert_int_equal(run(f, s, &j), 0);
    assert_true(j.id > cursor);
    assert_int_equal(j.more, want_more[page]);
    cursor = j.id;
    failed += j.group_failed;
  }
  assert_int_equal(failed, 3); /* m2 and m5 to ue1, m3 to ue2 */
  assert_int_equal(model.calls, 8);
  static const struct {
    uint64_t gen;
    const char *dest;
  } by_gen[] = {
      {11, "GROUP:g1"}, {12, "GROUP:g2"}, {13, "BC:a1"}, {14, "GROUP:g1"}, {15, "GROUP:g2"}};
  for (size_t i = 0; i < model.calls; i++) {
    assert_true(model.call[i].gen >= 11 && model.call[i].gen <= 15);
    assert_string_equal(model.call[i].dest, by_gen[model.call[i].gen - 11].dest);
  }
  assert_string_equal(queue_of(f, s, "UE:ue1"), "m1,p1,m3,m4");
  assert_string_equal(queue_of(f, s, "UE:ue2"), "m1,m4,p2");
  /* the last cursor: nothing after it */
  m5_store_job_t j;
  mk_sweep(&j, "", "", cursor, 2);
  assert_int_equal(run(f, s, &j), 0);
  assert_int_equal(j.id, cursor);
  assert_false(j.more);

  /* g1 in pages of 1: m1, m4, then an empty page; nothing to fail */
  model.calls = 0;
  cursor = 0;
  bool more1[] = {true, true, false};
  for (size_t page = 0; page < 3; page++) {
    mk_sweep(&j, "GROUP:g1", "", cursor, 1);
    assert_int_equal(run(f, s, &j), 0);
    assert_int_equal(j.more, more1[page]);
    assert_int_equal(j.group_failed, 0);
    if (page < 2)
      assert_true(j.id > cursor);
    else
      assert_int_equal(j.id, cursor);
    cursor = j.id;
  }
  assert_int_equal(model.calls, 4);

  /* ue2 leaves g1: its deliveries swept one page at a time */
  member_del(g1, "UE:ue2");
  cursor = 0;
  failed = 0;
  for (size_t page = 0; page < 3; page++) {
    mk_sweep(&j, "GROUP:g1", "UE:ue2", cursor, 1);
    assert_int_equal(run(f, s, &j), 0);
    assert_int_equal(j.more, more1[page]);
    assert_int_equal(j.group_failed, page < 2 ? 1 : 0);
    cursor = j.id;
    failed += j.group_failed;
  }
  assert_int_equal(failed, 2);
  assert_string_equal(queue_of(f, s, "UE:ue2"), "p2");
  assert_string_equal(queue_of(f, s, "UE:ue1"), "m1,p1,m3,m4");
  m5_store_close(s);
}

/* A job reads no more deliveries than one ACCEPT may write (M5_STORE_RCPT_MAX) beyond its
 * first message: two messages of a big group whose deliveries together exceed that are two
 * jobs even with a limit of 2 messages, the first saying `more`. */
static void test_sweep_budget(void **state) {
  fx_t *f = *state;
  opt_max_dlvs = 2 * M5_STORE_RCPT_MAX; /* one sender's two big messages */
  m5_store_t *s = open_store();
  group_new("GROUP", "big")->everyone = true;
  size_t n = M5_STORE_RCPT_MAX / 2 + 1;
  m5_store_rcpt_t *rc = calloc(n, sizeof *rc);
  assert_non_null(rc);
  for (int k = 0; k < 2; k++) {
    for (size_t i = 0; i < n; i++) {
      memset(&rc[i], 0, sizeof rc[i]);
      snprintf(rc[i].addr.type, sizeof rc[i].addr.type, "UE");
      snprintf(rc[i].addr.addr, sizeof rc[i].addr.addr, "u%06zu", i);
      rc[i].next_attempt_ms = fake_now + 1000;
    }
    m5_store_job_t j;
    memset(&j, 0, sizeof j);
    j.op = M5_STORE_ACCEPT;
    addr(&j.msg.ori, "AS:as9");
    addr(&j.msg.dest, "GROUP:big");
    snprintf(j.msg.msg_id, sizeof j.msg.msg_id, "big%d", k);
    j.msg.group_gen = 1;
    j.msg.payload = (uint8_t *)"x";
    j.msg.payload_len = 1;
    j.rcpts = rc;
    j.n_rcpts = n;
    assert_int_equal(run(f, s, &j), 0);
    assert_int_equal(j.outcome, M5_STORE_ACCEPTED);
  }
  free(rc);
  uint64_t t0 = tu_now_ms();
  m5_store_job_t j;
  mk_sweep(&j, "", "", 0, 2);
  assert_int_equal(run(f, s, &j), 0);
  assert_true(j.more);
  assert_int_equal(model.calls, n); /* the first message only */
  uint64_t t1 = tu_now_ms();
  mk_sweep(&j, "", "", j.id, 2);
  assert_int_equal(run(f, s, &j), 0);
  assert_false(j.more);
  assert_int_equal(model.calls, 2 * n);
  assert_int_equal(j.group_failed, 0);
  /* the group deleted: the first job fails the first message's deliveries, whole */
  model.g[0].deleted = true;
  uint64_t t2 = tu_now_ms();
  mk_sweep(&j, "", "", 0, 2);
  assert_int_equal(run(f, s, &j), 0);
  assert_true(j.more);
  assert_int_equal(j.group_failed, n);
  uint64_t t3 = tu_now_ms();
  assert_int_equal(pending_of(f, s, "UE:u000007"), 1);
  print_message("sweep job over %zu deliveries: %llu ms keeping them, %llu ms failing them (not "
                "asserted)\n",
                n, (unsigned long long)(t1 - t0), (unsigned long long)(t3 - t2));
  m5_store_close(s);
}

/* A check that holds the store's thread at its first call until the test opens the gate, so
 * that the jobs submitted meanwhile make one batch. */
static sem_t gate;
static int gate_calls;

static const char *gated_check(void *arg, const m5_msg_addr_t *dest, const m5_msg_addr_t *rcpt,
                               uint64_t gen) {
  (void)arg;
  (void)dest;
  (void)rcpt;
  (void)gen;
  if (__atomic_fetch_add(&gate_calls, 1, __ATOMIC_SEQ_CST) == 0)
    while (sem_wait(&gate) != 0) {
    }
  return NULL;
}

/* A batch whose later job fails half-way is rolled back and run again job by job
 * (sqlite.c): a sweep in it starts again from the cursor it was submitted with, not from the
 * one its rolled-back run reached, so what that run failed is failed again and committed, and
 * its reply gives the cursor after the first page. */
static void test_sweep_rerun_after_rollback(void **state) {
  fx_t *f = *state;
  m5_store_t *s = open_store();
  m5_store_close(s);
  sqlite3 *db;
  assert_int_equal(sqlite3_open(db_path, &db), SQLITE_OK);
  assert_int_equal(sqlite3_exec(db,
                                "CREATE TRIGGER boom BEFORE INSERT ON deliveries"
                                " WHEN NEW.rcpt_addr = 'boom' BEGIN SELECT RAISE(ABORT, 'boom');"
                                " END;",
                                NULL, NULL, NULL),
                   SQLITE_OK);
  sqlite3_close(db);
  s = open_store();
  mgroup_t *g1 = group_new("GROUP", "g1");
  group_new("GROUP", "g0")->everyone = true;
  member_add(g1, "UE:ue2", 1);
  gaccept_t a;
  const char *both[] = {"UE:ue1", "UE:ue2"}, *one[] = {"UE:ue3"};
  accept_msg(f, s, &a, "UE:ue9", "GROUP:g0", 1, "m0", one, 1, false, 0);
  accept_msg(f, s, &a, "UE:ue9", "GROUP:g1", 1, "m1", both, 2, false, 0);
  accept_msg(f, s, &a, "UE:ue9", "GROUP:g1", 1, "m2", both, 2, false, 0);
  /* ue1 is no member of g1: the first page (m1) fails its delivery */
  assert_int_equal(sem_init(&gate, 0, 0), 0);
  gate_calls = 0;
  m5_store_job_t blocker, sw;
  mk_sweep(&blocker, "GROUP:g0", "", 0, 0);
  blocker.group_check = gated_check;
  mk_sweep(&sw, "GROUP:g1", "", 0, 1);
  const char *boom[] = {"UE:boom"};
  mk_msg(&a, "UE:ue9", "UE:boom", 0, "b1", boom, 1, false, 0);
  m5_store_job_t *jobs[] = {&blocker, &sw, &a.job};
  f->done = 0;
  for (size_t i = 0; i < 3; i++) {
    jobs[i]->base.reply = f->replies;
    assert_int_equal(m5_store_submit(s, jobs[i]), 0);
  }
  assert_int_equal(sem_post(&gate), 0);
  uint64_t t = tu_now_ms();
  while (f->done < 3 && tu_now_ms() - t < 20000)
    assert_int_equal(m5_loop_run(f->loop), 0);
  assert_int_equal(f->done, 3);
  sem_destroy(&gate);
  assert_int_equal(a.job.status, M5_EIO); /* the trigger */
  assert_int_equal(blocker.status, 0);
  assert_int_equal(sw.status, 0);
  assert_int_equal(sw.group_failed, 1);
  assert_true(sw.more);
  assert_string_equal(queue_of(f, s, "UE:ue1"), "m2"); /* m1's failure is committed */
  /* the next page from the cursor it gave: m2 */
  uint64_t cursor = sw.id;
  mk_sweep(&sw, "GROUP:g1", "", cursor, 1);
  assert_int_equal(run(f, s, &sw), 0);
  assert_int_equal(sw.group_failed, 1);
  assert_true(sw.id > cursor);
  assert_string_equal(queue_of(f, s, "UE:ue1"), "");
  assert_string_equal(queue_of(f, s, "UE:ue2"), "m1,m2");
  m5_store_close(s);
}

/* Jobs the sweep refuses, before anything is looked at or written. */
static void test_sweep_einval(void **state) {
  fx_t *f = *state;
  m5_store_t *s = open_store();
  mgroup_t *g1 = group_new("GROUP", "g1");
  gaccept_t a;
  const char *one[] = {"UE:ue1"};
  accept_msg(f, s, &a, "UE:ue9", "GROUP:g1", 1, "m1", one, 1, false, 0);
  g1->deleted = true; /* any sweep that ran would fail it */
  m5_store_job_t j;
  mk_sweep(&j, "GROUP:g1", "", 0, 0);
  j.group_check = NULL;
  assert_int_equal(run(f, s, &j), M5_EINVAL);
  mk_sweep(&j, "UE:ue1", "", 0, 0); /* not a group or area */
  assert_int_equal(run(f, s, &j), M5_EINVAL);
  mk_sweep(&j, "TOPIC:t1", "", 0, 0);
  assert_int_equal(run(f, s, &j), M5_EINVAL);
  mk_sweep(&j, "GROUP:", "", 0, 0); /* no id */
  assert_int_equal(run(f, s, &j), M5_EINVAL);
  mk_sweep(&j, "", "UE:ue1", 0, 0); /* a member without its group */
  assert_int_equal(run(f, s, &j), M5_EINVAL);
  mk_sweep(&j, "GROUP:g1", "GROUP:g2", 0, 0); /* a member is a UE or an AS */
  assert_int_equal(run(f, s, &j), M5_EINVAL);
  mk_sweep(&j, "GROUP:g1", "UE:", 0, 0);
  assert_int_equal(run(f, s, &j), M5_EINVAL);
  assert_int_equal(j.group_failed, 0);
  assert_int_equal(model.calls, 0);
  assert_string_equal(queue_of(f, s, "UE:ue1"), "m1");
  /* and the job as it should be */
  mk_sweep(&j, "GROUP:g1", "", 0, 0);
  assert_int_equal(run(f, s, &j), 0);
  assert_int_equal(j.group_failed, 1);
  m5_store_close(s);
}

/* A sender's deliveries not final yet are bounded (max_deliveries_per_originator): a message to
 * a group counts one per stored recipient, so a few messages to large groups cannot fill the
 * store for everyone; final deliveries give room back; the figure is rebuilt at a reopen. */
static void test_originator_deliveries(void **state) {
  fx_t *f = *state;
  opt_max_dlvs = 5;
  m5_store_t *s = open_store();
  gaccept_t a1, a;
  const char *four[] = {"UE:m1", "UE:m2", "UE:m3", "UE:m4"}, *two[] = {"UE:m5", "UE:m6"};
  accept_msg(f, s, &a1, "AS:as1", "GROUP:g1", 1, "g-1", four, 4, false, 0);
  mk_msg(&a, "AS:as1", "GROUP:g1", 1, "g-2", two, 2, false, 0);
  assert_int_equal(run(f, s, &a.job), 0);
  assert_int_equal(a.job.outcome, M5_STORE_ORIGINATOR_QUOTA); /* 4 + 2 > 5 */
  assert_int_equal(pending_of(f, s, "UE:m5"), 0);
  accept_msg(f, s, &a, "AS:as2", "GROUP:g1", 1, "g-x", two, 2, false, 0); /* others unaffected */
  m5_store_job_t j;
  memset(&j, 0, sizeof j);
  j.op = M5_STORE_MARK_DELIVERED;
  j.id = a1.rcpts[0].id;
  assert_int_equal(run(f, s, &j), 0);
  m5_store_job_clear(&j);
  accept_msg(f, s, &a, "AS:as1", "GROUP:g1", 1, "g-3", two, 2, false, 0); /* 3 + 2 */
  m5_store_close(s);
  s = open_store();
  const char *one[] = {"UE:m7"};
  mk_msg(&a, "AS:as1", "GROUP:g1", 1, "g-4", one, 1, false, 0);
  assert_int_equal(run(f, s, &a.job), 0);
  assert_int_equal(a.job.outcome, M5_STORE_ORIGINATOR_QUOTA); /* still 5 after the reopen */
  m5_store_close(s);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_group_gen_round_trip, fx_setup, fx_teardown),
      cmocka_unit_test_setup_teardown(test_schema_4_upgraded, fx_setup, fx_teardown),
      cmocka_unit_test_setup_teardown(test_sweep_member, fx_setup, fx_teardown),
      cmocka_unit_test_setup_teardown(test_sweep_group_deleted, fx_setup, fx_teardown),
      cmocka_unit_test_setup_teardown(test_sweep_all_paged, fx_setup, fx_teardown),
      cmocka_unit_test_setup_teardown(test_sweep_budget, fx_setup, fx_teardown),
      cmocka_unit_test_setup_teardown(test_sweep_rerun_after_rollback, fx_setup, fx_teardown),
      cmocka_unit_test_setup_teardown(test_sweep_einval, fx_setup, fx_teardown),
      cmocka_unit_test_setup_teardown(test_originator_deliveries, fx_setup, fx_teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
