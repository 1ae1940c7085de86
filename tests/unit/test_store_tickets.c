/* Unit tests for report tickets in src/lib/store (store.h ACCEPT's ticket_put / ticket_check;
 * SQLite schema 6, sqlite_tickets.c; docs/delivery.md "Who may report on what"): a report to a
 * UE or an AS is stored only when the message it reports on asked its reporter for one (the
 * ticket names the reporter), once per recipient; anybody else who knows the msgId gets the
 * same answer and reaches nobody; a group message gives each stored member one ticket; the
 * bound per originator; a UE Service ID re-bound since it received the message reports on
 * nothing; a delivery that fails or expires takes its ticket; the upgrade of a schema 5 store;
 * the cost of a large group's tickets (logged). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <sqlite3.h>

#include "core/err.h"
#include "core/loop.h"
#include "store/store.h"
#include "testutil.h"

static char dir[256];
static char db_path[320];
static int64_t fake_now; /* Unix ms */

static int64_t fake_clock(void *arg) {
  (void)arg;
  return __atomic_load_n(&fake_now, __ATOMIC_SEQ_CST);
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

static int fx_setup(void **state) {
  fx_t *f = calloc(1, sizeof *f);
  f->loop = m5_loop_new();
  f->replies = m5_mailbox_new(f->loop, 64, on_reply, f);
  if (tu_mkdtemp(dir, sizeof dir, "m5-store-tickets") != 0) return -1;
  snprintf(db_path, sizeof db_path, "%s/var/store.db", dir);
  __atomic_store_n(&fake_now, 1700000000000, __ATOMIC_SEQ_CST);
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

static void opts(m5_store_opts_t *o) {
  m5_store_opts_init(o);
  o->path = db_path;
  o->clock_ms = fake_clock;
}

static m5_store_t *open_with(const m5_store_opts_t *o) {
  char err[512];
  m5_store_t *s = m5_store_open(o, err, sizeof err);
  if (!s) fail_msg("m5_store_open: %s", err);
  return s;
}

static m5_store_t *open_store(void) {
  m5_store_opts_t o;
  opts(&o);
  return open_with(&o);
}

static int run(fx_t *f, m5_store_t *s, m5_store_job_t *job) {
  job->base.reply = f->replies;
  f->done = 0;
  assert_int_equal(m5_store_submit(s, job), 0);
  assert_int_equal(m5_loop_run(f->loop), 0);
  assert_int_equal(f->done, 1);
  return job->status;
}

/* "UE:ue1" -> {UE, ue1} */
static void addr(m5_msg_addr_t *a, const char *s) {
  memset(a, 0, sizeof *a);
  const char *colon = strchr(s, ':');
  assert_non_null(colon);
  snprintf(a->type, sizeof a->type, "%.*s", (int)(colon - s), s);
  snprintf(a->addr, sizeof a->addr, "%s", colon + 1);
}

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

/* ---- messages and reports, as ue_accept.c asks the store for them ---- */

#define RCPTS_MAX 8

typedef struct {
  m5_store_job_t job;
  m5_store_rcpt_t rcpts[RCPTS_MAX];
  char payload[64];
} acc_t;

/* A message from ori ("UE:ue1", "AS:as1") to dest for the recipients to[] (partial: a full
 * queue skips its recipient); report_req: delivStReqInd, with the tickets m5s asks for. */
static m5_store_job_t *mk_msg(acc_t *a, const char *ori, const char *dest, const char *msg_id,
                              const char *const *to, size_t n, bool report_req) {
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
  j->ticket_put = report_req;
  int len = snprintf(a->payload, sizeof a->payload, "body of %s", msg_id);
  j->msg.payload = (uint8_t *)a->payload;
  j->msg.payload_len = (size_t)len;
  assert_true(n <= RCPTS_MAX);
  for (size_t i = 0; i < n; i++) {
    addr(&a->rcpts[i].addr, to[i]);
    a->rcpts[i].next_attempt_ms = fake_now + 1000;
  }
  j->rcpts = a->rcpts;
  j->n_rcpts = n;
  j->partial = true;
  snprintf(j->dedup_ori, sizeof j->dedup_ori, "%s", ori);
  snprintf(j->dedup_id, sizeof j->dedup_id, "%s", msg_id);
  return j;
}

/* A point-to-point message to `to`, stored. */
static void send1(fx_t *f, m5_store_t *s, const char *ori, const char *to, const char *msg_id,
                  bool report_req) {
  acc_t a;
  const char *rc[] = {to};
  assert_int_equal(run(f, s, mk_msg(&a, ori, to, msg_id, rc, 1, report_req)), 0);
  assert_int_equal(a.job.outcome, M5_STORE_ACCEPTED);
  assert_true(a.rcpts[0].id != 0);
}

/* A report (a UE's IMDN, an AS's deliver-report) from reporter to `to` on msg_id, as
 * ue_accept.c stores it (dedup key "IMDN/<msgId>/<dest>" of the reporter; tag, when given,
 * makes it another report rather than a retransmission). */
static m5_store_job_t *mk_report(acc_t *a, const char *reporter, const char *msg_id,
                                 const char *to, const char *tag) {
  const char *rc[] = {to};
  m5_store_job_t *j = mk_msg(a, reporter, to, msg_id, rc, 1, false);
  snprintf(j->msg.app_id, sizeof j->msg.app_id, "%s", M5_STORE_REPORT_APP);
  snprintf(j->dedup_id, sizeof j->dedup_id, "IMDN/%s/%s%s", msg_id, a->rcpts[0].addr.addr,
           tag ? tag : "");
  j->ticket_check = true;
  return j;
}

typedef enum { STORED, DROPPED, DUPLICATE } fate_t;

/* Runs the report; how it ended. Every report gets the same outcome (ACCEPTED) whether it is
 * stored or dropped: the reporter learns nothing about tickets. */
static fate_t report(fx_t *f, m5_store_t *s, const char *reporter, const char *msg_id,
                     const char *to, const char *tag) {
  acc_t a;
  assert_int_equal(run(f, s, mk_report(&a, reporter, msg_id, to, tag)), 0);
  if (a.job.outcome == M5_STORE_DUPLICATE) return DUPLICATE;
  assert_int_equal(a.job.outcome, M5_STORE_ACCEPTED);
  assert_int_equal(a.job.discarded, a.rcpts[0].id == 0);
  return a.rcpts[0].id ? STORED : DROPPED;
}

/* The reports waiting for who, "msgId<reporter,..." in queue order. */
static const char *reports_of(fx_t *f, m5_store_t *s, const char *who) {
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
    if (strcmp(m->app_id, M5_STORE_REPORT_APP) != 0) continue;
    int w = snprintf(out + len, sizeof out - len, "%s%s<%s", len ? "," : "", m->msg_id,
                     m->ori.addr);
    assert_true(w > 0 && (size_t)w < sizeof out - len);
    len += (size_t)w;
  }
  m5_store_job_clear(&j);
  return out;
}

static long tickets_of(m5_store_t **s, const m5_store_opts_t *o, const char *ori) {
  m5_store_close(*s); /* the store holds its file exclusively */
  char q[256];
  snprintf(q, sizeof q, "SELECT count(*) FROM report_tickets WHERE ori = '%s'", ori);
  long n = sql_long(q);
  *s = open_with(o);
  return n;
}

/* ---- tests ---- */

/* UE -> UE: the recipient's report is stored, once; a third UE that knows the msgId reports
 * first and reaches nobody (same answer), without using the recipient's ticket up; a message
 * that asked for no report takes none, although its msgId is in the sender's dedup window. */
static void test_report_from_recipient_only(void **state) {
  fx_t *f = *state;
  m5_store_opts_t o;
  opts(&o);
  m5_store_t *s = open_with(&o);
  send1(f, s, "UE:ue1", "UE:ue2", "m1", true);
  assert_int_equal(tickets_of(&s, &o, "UE:ue1"), 1);
  assert_int_equal(report(f, s, "UE:ue3", "m1", "UE:ue1", NULL), DROPPED);
  assert_int_equal(report(f, s, "AS:as1", "m1", "UE:ue1", NULL), DROPPED);
  assert_string_equal(reports_of(f, s, "UE:ue1"), "");
  assert_int_equal(report(f, s, "UE:ue2", "m1", "UE:ue1", NULL), STORED);
  assert_string_equal(reports_of(f, s, "UE:ue1"), "m1<ue2");
  /* a retransmission is answered as before; another report of ue2 on m1 reaches nobody */
  assert_int_equal(report(f, s, "UE:ue2", "m1", "UE:ue1", NULL), DUPLICATE);
  assert_int_equal(report(f, s, "UE:ue2", "m1", "UE:ue1", "#2"), DROPPED);
  assert_string_equal(reports_of(f, s, "UE:ue1"), "m1<ue2");
  assert_int_equal(tickets_of(&s, &o, "UE:ue1"), 0);
  /* no report asked: none taken, from the recipient either */
  send1(f, s, "UE:ue1", "UE:ue2", "m2", false);
  assert_int_equal(report(f, s, "UE:ue2", "m2", "UE:ue1", NULL), DROPPED);
  assert_string_equal(reports_of(f, s, "UE:ue1"), "m1<ue2");
  m5_store_close(s);
}

/* Reports to an AS are checked the same way: an AS's message asking for a report takes its
 * recipient's report only; one that asked for none takes none; a UE's message to an AS takes
 * that AS's deliver-report only. */
static void test_reports_to_as(void **state) {
  fx_t *f = *state;
  m5_store_opts_t o;
  opts(&o);
  m5_store_t *s = open_with(&o);
  send1(f, s, "AS:as1", "UE:ue2", "a1", true);
  assert_int_equal(report(f, s, "UE:ue3", "a1", "AS:as1", NULL), DROPPED);
  assert_int_equal(report(f, s, "AS:as2", "a1", "AS:as1", NULL), DROPPED);
  assert_string_equal(reports_of(f, s, "AS:as1"), "");
  assert_int_equal(report(f, s, "UE:ue2", "a1", "AS:as1", NULL), STORED);
  assert_int_equal(report(f, s, "UE:ue2", "a1", "AS:as1", "#2"), DROPPED);
  assert_string_equal(reports_of(f, s, "AS:as1"), "a1<ue2");
  send1(f, s, "AS:as1", "UE:ue2", "a2", false);
  assert_int_equal(report(f, s, "UE:ue2", "a2", "AS:as1", NULL), DROPPED);
  /* UE -> AS: the AS's deliver-report */
  send1(f, s, "UE:ue1", "AS:as2", "u1", true);
  assert_int_equal(report(f, s, "AS:as3", "u1", "UE:ue1", NULL), DROPPED);
  assert_int_equal(report(f, s, "UE:as2", "u1", "UE:ue1", NULL), DROPPED); /* a UE named so */
  assert_int_equal(report(f, s, "AS:as2", "u1", "UE:ue1", NULL), STORED);
  assert_string_equal(reports_of(f, s, "UE:ue1"), "u1<as2");
  assert_string_equal(reports_of(f, s, "AS:as1"), "a1<ue2");
  assert_int_equal(tickets_of(&s, &o, "AS:as1"), 0);
  m5_store_close(s);
}

/* A group message leaves one ticket per member it was stored for: each of those reports once;
 * a member whose queue was full (not stored for) and a non-member report on nothing. */
static void test_group_each_member_once(void **state) {
  fx_t *f = *state;
  m5_store_opts_t o;
  opts(&o);
  o.max_per_recipient = 2;
  m5_store_t *s = open_with(&o);
  send1(f, s, "UE:ueA", "UE:ue3", "fill-a", false); /* ue3's queue is full */
  send1(f, s, "UE:ueB", "UE:ue3", "fill-b", false);
  acc_t a;
  const char *members[] = {"UE:ue1", "UE:ue2", "UE:ue3", "AS:as1"};
  assert_int_equal(run(f, s, mk_msg(&a, "UE:ue9", "GROUP:g1", "g-1", members, 4, true)), 0);
  assert_int_equal(a.job.outcome, M5_STORE_ACCEPTED);
  assert_int_equal(a.rcpts[2].status, M5_STORE_QUEUE_FULL);
  assert_int_equal(tickets_of(&s, &o, "UE:ue9"), 3);
  assert_int_equal(report(f, s, "UE:ue4", "g-1", "UE:ue9", NULL), DROPPED);
  assert_int_equal(report(f, s, "UE:ue3", "g-1", "UE:ue9", NULL), DROPPED);
  assert_int_equal(report(f, s, "UE:ue2", "g-1", "UE:ue9", NULL), STORED);
  assert_int_equal(report(f, s, "UE:ue2", "g-1", "UE:ue9", "#2"), DROPPED);
  assert_int_equal(report(f, s, "AS:as1", "g-1", "UE:ue9", NULL), STORED);
  assert_int_equal(report(f, s, "UE:ue1", "g-1", "UE:ue9", NULL), STORED);
  assert_int_equal(report(f, s, "UE:ue1", "g-1", "UE:ue9", "#2"), DROPPED);
  assert_string_equal(reports_of(f, s, "UE:ue9"), "g-1<ue2,g-1<as1,g-1<ue1");
  assert_int_equal(tickets_of(&s, &o, "UE:ue9"), 0);
  m5_store_close(s);
}

/* At most max_tickets_per_originator per originator (an AS here): a group message beyond it
 * gives the members past the bound no ticket (their reports reach nobody; the message is
 * stored for them all the same), a used ticket makes room, and the count is read back at
 * open. */
static void test_ticket_bound(void **state) {
  fx_t *f = *state;
  m5_store_opts_t o;
  opts(&o);
  o.max_tickets_per_originator = 3;
  m5_store_t *s = open_with(&o);
  acc_t a;
  const char *members[] = {"UE:ue1", "UE:ue2", "UE:ue3", "UE:ue4"};
  assert_int_equal(run(f, s, mk_msg(&a, "AS:as1", "GROUP:g1", "b-1", members, 4, true)), 0);
  for (size_t i = 0; i < 4; i++)
    assert_true(a.rcpts[i].id != 0);
  assert_int_equal(tickets_of(&s, &o, "AS:as1"), 3);
  assert_int_equal(report(f, s, "UE:ue4", "b-1", "AS:as1", NULL), DROPPED);
  send1(f, s, "AS:as1", "UE:ue5", "b-2", true); /* at the bound: no ticket */
  assert_int_equal(report(f, s, "UE:ue5", "b-2", "AS:as1", NULL), DROPPED);
  assert_int_equal(report(f, s, "UE:ue1", "b-1", "AS:as1", NULL), STORED);
  assert_int_equal(tickets_of(&s, &o, "AS:as1"), 2); /* (a reopen: the count read back) */
  send1(f, s, "AS:as1", "UE:ue5", "b-3", true);
  send1(f, s, "AS:as1", "UE:ue6", "b-4", true); /* at the bound again */
  assert_int_equal(tickets_of(&s, &o, "AS:as1"), 3);
  assert_int_equal(report(f, s, "UE:ue6", "b-4", "AS:as1", NULL), DROPPED);
  assert_int_equal(report(f, s, "UE:ue5", "b-3", "AS:as1", NULL), STORED);
  /* another originator has its own bound */
  send1(f, s, "UE:ue7", "UE:ue8", "c-1", true);
  assert_int_equal(report(f, s, "UE:ue8", "c-1", "UE:ue7", NULL), STORED);
  assert_string_equal(reports_of(f, s, "AS:as1"), "b-1<ue1,b-3<ue5");
  m5_store_close(s);
}

static void rebind(fx_t *f, m5_store_t *s, const char *ue, uint64_t gen) {
  m5_store_job_t j;
  memset(&j, 0, sizeof j);
  j.op = M5_STORE_REBIND;
  addr(&j.rcpt, ue);
  j.gen = gen;
  assert_int_equal(run(f, s, &j), 0);
}

/* A report from the UE ue at generation gen (its session's). */
static fate_t report_gen(fx_t *f, m5_store_t *s, const char *ue, uint64_t gen,
                         const char *msg_id, const char *to) {
  acc_t a;
  m5_store_job_t *j = mk_report(&a, ue, msg_id, to, NULL);
  j->msg.ori_gen = gen;
  assert_int_equal(run(f, s, j), 0);
  assert_int_equal(j->outcome, M5_STORE_ACCEPTED);
  return a.rcpts[0].id ? STORED : DROPPED;
}

static void send_gen(fx_t *f, m5_store_t *s, const char *ori, uint64_t ori_gen, const char *to,
                     uint64_t to_gen, const char *msg_id) {
  acc_t a;
  const char *rc[] = {to};
  m5_store_job_t *j = mk_msg(&a, ori, to, msg_id, rc, 1, true);
  j->msg.ori_gen = ori_gen;
  a.rcpts[0].gen = to_gen;
  a.rcpts[0].in_flight = true; /* pushed at once, then concluded below */
  assert_int_equal(run(f, s, j), 0);
  assert_true(a.rcpts[0].id != 0);
  m5_store_job_t d;
  memset(&d, 0, sizeof d);
  d.op = M5_STORE_MARK_DELIVERED;
  d.id = a.rcpts[0].id;
  assert_int_equal(run(f, s, &d), 0);
  m5_store_job_clear(&d);
}

/* The new subscriber of a re-bound UE Service ID cannot report on what the previous one
 * received (the ticket names the recipient's generation), neither after the REBIND nor when
 * its first report is what catches the store up with it; the previous one may still report
 * on it up to the re-bind. */
static void test_reporter_rebound(void **state) {
  fx_t *f = *state;
  m5_store_t *s = open_store();
  rebind(f, s, "UE:ue1", 10);
  rebind(f, s, "UE:ue2", 20);
  rebind(f, s, "UE:ue3", 30);
  send_gen(f, s, "UE:ue1", 10, "UE:ue2", 20, "r-1"); /* delivered to ue2 at generation 20 */
  send_gen(f, s, "UE:ue1", 10, "UE:ue2", 20, "r-2");
  send_gen(f, s, "AS:as1", 0, "UE:ue3", 30, "r-3");
  assert_int_equal(report_gen(f, s, "UE:ue2", 20, "r-2", "UE:ue1"), STORED);
  rebind(f, s, "UE:ue2", 21);
  assert_int_equal(report_gen(f, s, "UE:ue2", 21, "r-1", "UE:ue1"), DROPPED);
  /* ue3 re-bound in the registry only: the report at generation 31 catches the store up */
  assert_int_equal(report_gen(f, s, "UE:ue3", 31, "r-3", "AS:as1"), DROPPED);
  assert_string_equal(reports_of(f, s, "UE:ue1"), "r-2<ue2");
  assert_string_equal(reports_of(f, s, "AS:as1"), "");
  m5_store_close(s);
}

/* A delivery that fails (MARK_FAILED) or expires (EXPIRE) takes its recipient's ticket: the
 * sender gets the store's failure report and no later report of that recipient, and the
 * ticket no longer counts in the sender's bound. */
static void test_failed_delivery_drops_ticket(void **state) {
  fx_t *f = *state;
  m5_store_opts_t o;
  opts(&o);
  m5_store_t *s = open_with(&o);
  acc_t a;
  const char *rc[] = {"UE:ue2", "UE:ue3"};
  m5_store_job_t *j = mk_msg(&a, "AS:as1", "GROUP:g1", "f-1", rc, 2, true);
  j->msg.expr_time = fake_now / 1000 + 10;
  assert_int_equal(run(f, s, j), 0);
  uint64_t to_ue2 = a.rcpts[0].id;
  assert_int_equal(tickets_of(&s, &o, "AS:as1"), 2);
  m5_store_job_t k;
  memset(&k, 0, sizeof k);
  k.op = M5_STORE_MARK_FAILED;
  k.id = to_ue2;
  snprintf(k.cause, sizeof k.cause, "RECIPIENT_UNREACHABLE");
  assert_int_equal(run(f, s, &k), 0);
  assert_true(k.items[0].report_id != 0);
  m5_store_job_clear(&k);
  assert_int_equal(report(f, s, "UE:ue2", "f-1", "AS:as1", NULL), DROPPED);
  __atomic_store_n(&fake_now, fake_now + 11000, __ATOMIC_SEQ_CST);
  memset(&k, 0, sizeof k);
  k.op = M5_STORE_EXPIRE;
  k.now_ms = fake_now;
  k.limit = 10;
  assert_int_equal(run(f, s, &k), 0);
  assert_int_equal(k.n_items, 1);
  m5_store_job_clear(&k);
  assert_int_equal(report(f, s, "UE:ue3", "f-1", "AS:as1", NULL), DROPPED);
  assert_string_equal(reports_of(f, s, "AS:as1"), "f-1<ue2,f-1<ue3"); /* the store's own */
  assert_int_equal(tickets_of(&s, &o, "AS:as1"), 0);
  m5_store_close(s);
}

/* A schema 5 store is upgraded in place to 6: a ticket of schema 5 (originator, msgId) keeps
 * working for one report from any reporter, as it did; an AS's message still queued asking for
 * a report gets a ticket for its recipient, living twice its own time to live. */
static void test_schema_5_upgraded(void **state) {
  fx_t *f = *state;
  m5_store_t *s = open_store();
  acc_t a;
  const char *rc[] = {"UE:ue2"};
  m5_store_job_t *j = mk_msg(&a, "AS:as1", "UE:ue2", "old-as", rc, 1, true);
  j->msg.expr_time = fake_now / 1000 + 100;
  assert_int_equal(run(f, s, j), 0);
  send1(f, s, "UE:ue1", "UE:ue2", "old-ue", true);
  m5_store_close(s);
  sqlite3 *db = NULL;
  assert_int_equal(sqlite3_open(db_path, &db), SQLITE_OK);
  assert_int_equal(sqlite3_exec(db,
                                "CREATE TABLE dedup_buckets (ori TEXT NOT NULL," /* 6 -> 7 */
                                " bucket INTEGER NOT NULL, n INTEGER NOT NULL,"
                                " PRIMARY KEY (ori, bucket)) WITHOUT ROWID;"
                                "CREATE INDEX dedup_buckets_age ON dedup_buckets (bucket);"
                                "DROP TABLE report_tickets;" /* schema 3 to 5's */
                                "CREATE TABLE report_tickets (ori TEXT NOT NULL,"
                                " msg_id TEXT NOT NULL, gen INTEGER NOT NULL,"
                                " until_ms INTEGER NOT NULL,"
                                " PRIMARY KEY (ori, msg_id)) WITHOUT ROWID;"
                                "CREATE INDEX report_tickets_age ON report_tickets (until_ms);"
                                "INSERT INTO report_tickets VALUES ('ue1', 'old-ue', 0,"
                                " 1800000000000);"
                                "PRAGMA user_version = 5;",
                                NULL, NULL, NULL),
                   SQLITE_OK);
  sqlite3_close(db);
  assert_int_equal(sql_long("PRAGMA user_version"), 5);
  s = open_store();
  assert_int_equal(report(f, s, "UE:ue7", "old-ue", "UE:ue1", NULL), STORED);
  assert_int_equal(report(f, s, "UE:ue2", "old-ue", "UE:ue1", NULL), DROPPED);
  assert_int_equal(report(f, s, "UE:ue3", "old-as", "AS:as1", NULL), DROPPED);
  assert_int_equal(report(f, s, "UE:ue2", "old-as", "AS:as1", NULL), STORED);
  send1(f, s, "UE:ue1", "UE:ue2", "new-ue", true);
  assert_int_equal(report(f, s, "UE:ue7", "new-ue", "UE:ue1", NULL), DROPPED);
  m5_store_close(s);
  assert_int_equal(sql_long("PRAGMA user_version"), 7);
  assert_int_equal(sql_long("SELECT count(*) FROM report_tickets"), 1); /* new-ue's */
}

/* The AS ticket's lifetime as the upgrade writes it: 2 x (exprTime - accepted). */
static void test_schema_5_as_ticket_life(void **state) {
  fx_t *f = *state;
  m5_store_t *s = open_store();
  acc_t a;
  const char *rc[] = {"UE:ue2"};
  m5_store_job_t *j = mk_msg(&a, "AS:as1", "UE:ue2", "old-as", rc, 1, true);
  j->msg.expr_time = fake_now / 1000 + 100;
  assert_int_equal(run(f, s, j), 0);
  m5_store_close(s);
  sqlite3 *db = NULL;
  assert_int_equal(sqlite3_open(db_path, &db), SQLITE_OK);
  assert_int_equal(sqlite3_exec(db,
                                "CREATE TABLE dedup_buckets (ori TEXT NOT NULL,"
                                " bucket INTEGER NOT NULL, n INTEGER NOT NULL,"
                                " PRIMARY KEY (ori, bucket)) WITHOUT ROWID;"
                                "CREATE INDEX dedup_buckets_age ON dedup_buckets (bucket);"
                                "DROP TABLE report_tickets;"
                                "CREATE TABLE report_tickets (ori TEXT NOT NULL,"
                                " msg_id TEXT NOT NULL, gen INTEGER NOT NULL,"
                                " until_ms INTEGER NOT NULL,"
                                " PRIMARY KEY (ori, msg_id)) WITHOUT ROWID;"
                                "CREATE INDEX report_tickets_age ON report_tickets (until_ms);"
                                "PRAGMA user_version = 5;",
                                NULL, NULL, NULL),
                   SQLITE_OK);
  sqlite3_close(db);
  m5_store_close(open_store());
  assert_int_equal(sql_long("SELECT count(*) FROM report_tickets WHERE ori = 'AS:as1'"
                            " AND msg_id = 'old-as' AND rep = 'UE:ue2'"),
                   1);
  char q[160];
  snprintf(q, sizeof q, "SELECT until_ms - %lld FROM report_tickets", (long long)fake_now);
  assert_int_equal(sql_long(q), 200000);
}

/* What the tickets of a large group message cost: one message to 10,000 members, with and
 * without delivStReqInd (10,000 tickets: the default bound), logged, not asserted. */
static void test_large_group_cost(void **state) {
  fx_t *f = *state;
  m5_store_t *s = open_store();
  enum { N = 10000 };
  m5_store_rcpt_t *r = calloc(N, sizeof *r);
  assert_non_null(r);
  uint64_t took[2];
  for (int with = 0; with < 2; with++) {
    acc_t a;
    m5_store_job_t *j = mk_msg(&a, "AS:as1", "GROUP:big", with ? "big-1" : "big-0", NULL, 0,
                               with);
    memset(r, 0, N * sizeof *r);
    for (size_t i = 0; i < N; i++) {
      snprintf(r[i].addr.type, sizeof r[i].addr.type, "UE");
      snprintf(r[i].addr.addr, sizeof r[i].addr.addr, "m%zu", i);
      r[i].next_attempt_ms = fake_now + 1000;
    }
    j->rcpts = r;
    j->n_rcpts = N;
    uint64_t t0 = tu_now_ms();
    assert_int_equal(run(f, s, j), 0);
    took[with] = tu_now_ms() - t0;
    assert_int_equal(j->outcome, M5_STORE_ACCEPTED);
  }
  assert_int_equal(report(f, s, "UE:m9999", "big-1", "AS:as1", NULL), STORED);
  assert_int_equal(report(f, s, "UE:m9999", "big-0", "AS:as1", NULL), DROPPED);
  m5_store_close(s);
  assert_int_equal(sql_long("SELECT count(*) FROM report_tickets"), N - 1);
  print_message("a 10,000-member message: %llu ms without tickets, %llu ms with 10,000\n",
                (unsigned long long)took[0], (unsigned long long)took[1]);
  free(r);
}

int main(void) {
  m5_store_process_init();
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_report_from_recipient_only, fx_setup, fx_teardown),
      cmocka_unit_test_setup_teardown(test_reports_to_as, fx_setup, fx_teardown),
      cmocka_unit_test_setup_teardown(test_group_each_member_once, fx_setup, fx_teardown),
      cmocka_unit_test_setup_teardown(test_ticket_bound, fx_setup, fx_teardown),
      cmocka_unit_test_setup_teardown(test_reporter_rebound, fx_setup, fx_teardown),
      cmocka_unit_test_setup_teardown(test_failed_delivery_drops_ticket, fx_setup, fx_teardown),
      cmocka_unit_test_setup_teardown(test_schema_5_upgraded, fx_setup, fx_teardown),
      cmocka_unit_test_setup_teardown(test_schema_5_as_ticket_life, fx_setup, fx_teardown),
      cmocka_unit_test_setup_teardown(test_large_group_cost, fx_setup, fx_teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
