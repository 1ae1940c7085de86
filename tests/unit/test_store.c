/* Unit tests for src/lib/store through the m5_store interface: accept and due, priority then
 * arrival order, final states, the dedup window (across a reopen, its end, the per-originator
 * bound), the queue and store caps, expiry, back-off, group commit, durability across kill -9,
 * and refusal of corrupt, truncated and foreign files.
 *
 * Run without arguments: the SQLite backend. Run as `test_store --jetstream nats://host:port
 * [replicas]` (tests/js/test_store_contract.sh, which starts the nats-server; replicas 3 on a
 * 3-server cluster, by hand): the same behaviour tests
 * against the JetStream backend (issue 13), each test in streams of its own (a prefix per
 * test); the tests of what that backend does not do yet, or of SQLite's file, are listed with
 * the reason and skipped (js_skips in main). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sqlite3.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/err.h"
#include "core/loop.h"
#include "js/js_client.h"
#include "store/store.h"
#include "testutil.h"

static char dir[256];
static char db_path[320];
static int64_t fake_now; /* Unix ms, for stores opened with fake_clock */
/* --jetstream URL: the JetStream backend, on that nats-server, under a prefix per test */
static bool js_mode;
static const char *js_url;
static int js_replicas = 1;
static char js_prefix[64];
static int js_test_no;

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
  m5_store_t *store; /* set for the group commit check in on_reply */
  int done, want;
  int bad_order; /* replies that came before the commit carrying them */
} fx_t;

static void on_reply(void *msg, void *arg) {
  fx_t *f = arg;
  m5_store_job_t *job = msg;
  if (f->store && job->status == 0) {
    m5_store_stats_t st;
    m5_store_stats(f->store, &st);
    if (job->commit_no == 0 || st.commits < job->commit_no) f->bad_order++;
  }
  if (++f->done >= f->want) m5_loop_stop(f->loop);
}

static int fx_setup(void **state) {
  fx_t *f = calloc(1, sizeof *f);
  f->loop = m5_loop_new();
  f->replies = m5_mailbox_new(f->loop, 2048, on_reply, f);
  if (tu_mkdtemp(dir, sizeof dir, "m5-store") != 0) return -1;
  snprintf(db_path, sizeof db_path, "%s/var/store.db", dir);
  snprintf(js_prefix, sizeof js_prefix, "t%d_%d", (int)getpid(), ++js_test_no);
  set_now(1700000000000);
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

static m5_store_t *open_store(const m5_store_opts_t *o) {
  char err[512];
  m5_store_t *s = m5_store_open(o, err, sizeof err);
  if (!s) fail_msg("m5_store_open: %s", err);
  return s;
}

static void default_opts(m5_store_opts_t *o) {
  m5_store_opts_init(o);
  o->path = db_path;
  o->clock_ms = fake_clock;
  if (js_mode) {
    o->backend = M5_STORE_BACKEND_JETSTREAM;
    o->js.servers = &js_url;
    o->js.n_servers = 1;
    o->js.replicas = js_replicas;
    o->js.prefix = js_prefix;
    o->js.node = "a";
    o->js.timeout_ms = 10000;
  }
}

/* Submits and waits for the reply on this thread's loop. */
static int run(fx_t *f, m5_store_t *s, m5_store_job_t *job) {
  job->base.reply = f->replies;
  f->done = 0;
  f->want = 1;
  assert_int_equal(m5_store_submit(s, job), 0);
  assert_int_equal(m5_loop_run(f->loop), 0);
  assert_int_equal(f->done, 1);
  return job->status;
}

static void addr(m5_msg_addr_t *a, const char *type, const char *id) {
  memset(a, 0, sizeof *a);
  snprintf(a->type, sizeof a->type, "%s", type);
  snprintf(a->addr, sizeof a->addr, "%s", id);
}

/* An accept job from UE:ori to the listed UEs; payload is "body of <msg_id>". */
typedef struct {
  m5_store_job_t job;
  m5_store_rcpt_t rcpts[4];
  char payload[96];
} accept_t;

static m5_store_job_t *mk_accept(accept_t *a, const char *ori, const char *msg_id,
                                 m5_msg_prio_t prio, const char *const *to, size_t n) {
  memset(a, 0, sizeof *a);
  m5_store_job_t *j = &a->job;
  j->op = M5_STORE_ACCEPT;
  addr(&j->msg.ori, "UE", ori);
  addr(&j->msg.dest, "UE", n ? to[0] : "none");
  snprintf(j->msg.msg_id, sizeof j->msg.msg_id, "%s", msg_id);
  snprintf(j->msg.app_id, sizeof j->msg.app_id, "app1");
  j->msg.prio = prio;
  j->msg.sto_fwd = true;
  int len = snprintf(a->payload, sizeof a->payload, "body of %s", msg_id);
  j->msg.payload = (uint8_t *)a->payload;
  j->msg.payload_len = (size_t)len;
  for (size_t i = 0; i < n; i++) {
    addr(&a->rcpts[i].addr, "UE", to[i]);
    a->rcpts[i].next_attempt_ms = fake_now + 1000;
  }
  j->rcpts = a->rcpts;
  j->n_rcpts = n;
  snprintf(j->dedup_ori, sizeof j->dedup_ori, "UE:%s", ori);
  snprintf(j->dedup_id, sizeof j->dedup_id, "%s", msg_id);
  return j;
}

static m5_store_outcome_t accept1(fx_t *f, m5_store_t *s, const char *ori, const char *msg_id,
                                  m5_msg_prio_t prio, const char *to, uint64_t *id) {
  accept_t a;
  const char *rc[] = {to};
  m5_store_job_t *j = mk_accept(&a, ori, msg_id, prio, rc, 1);
  assert_int_equal(run(f, s, j), 0);
  if (id) *id = a.rcpts[0].id;
  return j->outcome;
}

static void due(fx_t *f, m5_store_t *s, const char *to, size_t limit, m5_store_job_t *j) {
  memset(j, 0, sizeof *j);
  j->op = M5_STORE_DUE;
  addr(&j->rcpt, "UE", to);
  j->limit = limit;
  assert_int_equal(run(f, s, j), 0);
}

static int simple(fx_t *f, m5_store_t *s, m5_store_op_t op, uint64_t id, m5_store_job_t *j) {
  memset(j, 0, sizeof *j);
  j->op = op;
  j->id = id;
  snprintf(j->cause, sizeof j->cause, "%s", M5_CAUSE_UNREACHABLE);
  return run(f, s, j);
}

static uint64_t pending_of(fx_t *f, m5_store_t *s, const char *to) {
  m5_store_job_t j = {.op = M5_STORE_COUNTS};
  addr(&j.rcpt, "UE", to);
  assert_int_equal(run(f, s, &j), 0);
  return j.pending;
}

static void test_accept_due_delivered(void **state) {
  fx_t *f = *state;
  m5_store_opts_t o;
  default_opts(&o);
  m5_store_t *s = open_store(&o);
  uint64_t id = 0;
  assert_int_equal(accept1(f, s, "ue1", "m1", M5_PRIO_MIDDLE, "ue2", &id), M5_STORE_ACCEPTED);
  assert_true(id != 0);

  m5_store_job_t j;
  due(f, s, "ue2", 10, &j);
  assert_int_equal(j.n_items, 1);
  m5_store_delivery_t *d = &j.items[0];
  assert_int_equal(d->id, id);
  assert_int_equal(d->state, M5_DELIV_PENDING);
  assert_string_equal(d->rcpt.addr, "ue2");
  assert_string_equal(d->msg.ori.addr, "ue1");
  assert_string_equal(d->msg.msg_id, "m1");
  assert_string_equal(d->msg.app_id, "app1");
  assert_true(d->msg.sto_fwd);
  assert_int_equal(d->msg.accepted_at_ms, fake_now);
  assert_int_equal(d->msg.payload_len, strlen("body of m1"));
  assert_memory_equal(d->msg.payload, "body of m1", d->msg.payload_len);
  m5_store_job_clear(&j);
  due(f, s, "ue3", 10, &j);
  assert_int_equal(j.n_items, 0);
  m5_store_job_clear(&j);
  assert_int_equal(pending_of(f, s, "ue2"), 1);

  assert_int_equal(simple(f, s, M5_STORE_MARK_DELIVERED, id, &j), 0);
  assert_int_equal(j.n_items, 1);
  assert_int_equal(j.items[0].state, M5_DELIV_DELIVERED);
  assert_string_equal(j.items[0].msg.msg_id, "m1"); /* what a delivery report needs */
  m5_store_job_clear(&j);
  due(f, s, "ue2", 10, &j);
  assert_int_equal(j.n_items, 0);
  m5_store_job_clear(&j);
  assert_int_equal(simple(f, s, M5_STORE_MARK_DELIVERED, id, &j), M5_ENOENT);
  assert_int_equal(pending_of(f, s, "ue2"), 0);

  m5_store_stats_t st;
  m5_store_stats(s, &st);
  assert_int_equal(st.accepted, 1);
  assert_int_equal(st.delivered, 1);
  assert_int_equal(st.queued, 0);
  assert_int_equal(st.messages, 0);
  m5_store_close(s);
}

static void test_priority_then_arrival(void **state) {
  fx_t *f = *state;
  m5_store_opts_t o;
  default_opts(&o);
  m5_store_t *s = open_store(&o);
  static const struct {
    const char *id;
    m5_msg_prio_t prio;
  } in[] = {{"a", M5_PRIO_LOW},  {"b", M5_PRIO_HIGH}, {"c", M5_PRIO_MIDDLE},
            {"d", M5_PRIO_HIGH}, {"e", M5_PRIO_LOW},  {"f", M5_PRIO_MIDDLE}};
  for (size_t i = 0; i < 6; i++)
    assert_int_equal(accept1(f, s, "ue1", in[i].id, in[i].prio, "ue2", NULL), M5_STORE_ACCEPTED);
  m5_store_close(s); /* the order survives a restart */
  s = open_store(&o);
  /* a later HIGH goes before the earlier MIDDLE and LOW ones */
  assert_int_equal(accept1(f, s, "ue1", "g", M5_PRIO_HIGH, "ue2", NULL), M5_STORE_ACCEPTED);
  m5_store_job_t j;
  due(f, s, "ue2", 100, &j);
  const char *want[] = {"b", "d", "g", "c", "f", "a", "e"};
  assert_int_equal(j.n_items, 7);
  for (size_t i = 0; i < 7; i++)
    assert_string_equal(j.items[i].msg.msg_id, want[i]);
  m5_store_job_clear(&j);
  due(f, s, "ue2", 2, &j); /* the limit */
  assert_int_equal(j.n_items, 2);
  assert_string_equal(j.items[1].msg.msg_id, "d");
  m5_store_job_clear(&j);
  m5_store_close(s);
}

static void test_group_body_once(void **state) {
  fx_t *f = *state;
  m5_store_opts_t o;
  default_opts(&o);
  m5_store_t *s = open_store(&o);
  accept_t a;
  const char *to[] = {"ue2", "ue3", "ue4"};
  m5_store_job_t *j = mk_accept(&a, "ue1", "g1", M5_PRIO_MIDDLE, to, 3);
  assert_int_equal(run(f, s, j), 0);
  assert_int_equal(j->outcome, M5_STORE_ACCEPTED);
  m5_store_stats_t st;
  m5_store_stats(s, &st);
  assert_int_equal(st.messages, 1);
  assert_int_equal(st.queued, 3);
  m5_store_job_t k;
  assert_int_equal(simple(f, s, M5_STORE_MARK_DELIVERED, a.rcpts[0].id, &k), 0);
  m5_store_job_clear(&k);
  assert_int_equal(simple(f, s, M5_STORE_MARK_FAILED, a.rcpts[1].id, &k), 0);
  assert_int_equal(k.items[0].state, M5_DELIV_FAILED);
  assert_string_equal(k.items[0].failure_cause, M5_CAUSE_UNREACHABLE);
  m5_store_job_clear(&k);
  m5_store_stats(s, &st);
  assert_int_equal(st.messages, 1); /* ue4 still waits for the body */
  due(f, s, "ue4", 10, &k);
  assert_int_equal(k.n_items, 1);
  assert_memory_equal(k.items[0].msg.payload, "body of g1", 10);
  m5_store_job_clear(&k);
  assert_int_equal(simple(f, s, M5_STORE_MARK_DELIVERED, a.rcpts[2].id, &k), 0);
  m5_store_job_clear(&k);
  m5_store_stats(s, &st);
  assert_int_equal(st.messages, 0);
  assert_int_equal(st.queued, 0);
  assert_int_equal(st.delivered, 2);
  assert_int_equal(st.failed, 1);
  m5_store_close(s);
}

static void test_dedup_window_and_restart(void **state) {
  fx_t *f = *state;
  m5_store_opts_t o;
  default_opts(&o);
  o.dedup_window_ms = 10000;
  o.dedup_buckets = 10;
  m5_store_t *s = open_store(&o);
  accept_t a;
  const char *to[] = {"ue2"};
  m5_store_job_t *j = mk_accept(&a, "ue1", "m1", M5_PRIO_MIDDLE, to, 1);
  snprintf(j->ack.status, sizeof j->ack.status, "DELY_STORED");
  assert_int_equal(run(f, s, j), 0);
  assert_int_equal(j->outcome, M5_STORE_ACCEPTED);
  /* an ack of DELY_FAILED, nothing stored, is repeated as well */
  j = mk_accept(&a, "ue1", "m2", M5_PRIO_MIDDLE, NULL, 0);
  snprintf(j->ack.status, sizeof j->ack.status, "DELY_FAILED");
  snprintf(j->ack.failure_cause, sizeof j->ack.failure_cause, M5_CAUSE_UNREACHABLE);
  assert_int_equal(run(f, s, j), 0);
  assert_int_equal(j->outcome, M5_STORE_ACCEPTED);

  set_now(fake_now + 5000);
  j = mk_accept(&a, "ue1", "m1", M5_PRIO_MIDDLE, to, 1);
  assert_int_equal(run(f, s, j), 0);
  assert_int_equal(j->outcome, M5_STORE_DUPLICATE);
  assert_string_equal(j->orig_ack.status, "DELY_STORED");
  assert_int_equal(a.rcpts[0].id, 0);
  assert_int_equal(pending_of(f, s, "ue2"), 1); /* not queued twice */
  /* another originator may use the same msgId */
  assert_int_equal(accept1(f, s, "ue9", "m1", M5_PRIO_MIDDLE, "ue2", NULL), M5_STORE_ACCEPTED);

  m5_store_close(s);
  s = open_store(&o);
  j = mk_accept(&a, "ue1", "m1", M5_PRIO_MIDDLE, to, 1);
  assert_int_equal(run(f, s, j), 0);
  assert_int_equal(j->outcome, M5_STORE_DUPLICATE);
  j = mk_accept(&a, "ue1", "m2", M5_PRIO_MIDDLE, to, 1);
  assert_int_equal(run(f, s, j), 0);
  assert_int_equal(j->outcome, M5_STORE_DUPLICATE);
  assert_string_equal(j->orig_ack.status, "DELY_FAILED");
  assert_string_equal(j->orig_ack.failure_cause, M5_CAUSE_UNREACHABLE);
  m5_store_stats_t st;
  m5_store_stats(s, &st);
  assert_int_equal(st.duplicates, 2);

  if (js_mode) { /* the window is the bucket's TTL, in the cluster's time */
    print_message("jetstream: the end of the dedup window (KV TTL, real time) is not checked\n");
    m5_store_close(s);
    return;
  }
  /* the window (10 s, at most one 1 s bucket more) has passed: new again */
  set_now(fake_now - 5000 + 11001);
  j = mk_accept(&a, "ue1", "m1", M5_PRIO_MIDDLE, to, 1);
  assert_int_equal(run(f, s, j), 0);
  assert_int_equal(j->outcome, M5_STORE_ACCEPTED);
  assert_int_equal(pending_of(f, s, "ue2"), 3);
  m5_store_close(s);
}

static void test_dedup_sender_bound(void **state) {
  fx_t *f = *state;
  m5_store_opts_t o;
  default_opts(&o);
  o.dedup_window_ms = 10000;
  o.dedup_buckets = 10;
  o.dedup_max_per_sender = 4;
  set_now(1700000000000); /* a bucket boundary: 1 s buckets */
  m5_store_t *s = open_store(&o);
  const char *ids[] = {"a", "b", "c", "d"};
  for (size_t i = 0; i < 4; i++)
    assert_int_equal(accept1(f, s, "ue1", ids[i], M5_PRIO_MIDDLE, "ue2", NULL), M5_STORE_ACCEPTED);
  assert_int_equal(accept1(f, s, "ue7", "a", M5_PRIO_MIDDLE, "ue2", NULL), M5_STORE_ACCEPTED);
  assert_int_equal(accept1(f, s, "ue1", "d", M5_PRIO_MIDDLE, "ue2", NULL), M5_STORE_DUPLICATE);
  set_now(fake_now + 1000);
  /* the fifth entry of ue1 pushes its oldest bucket (a-d) out */
  assert_int_equal(accept1(f, s, "ue1", "e", M5_PRIO_MIDDLE, "ue2", NULL), M5_STORE_ACCEPTED);
  assert_int_equal(accept1(f, s, "ue1", "e", M5_PRIO_MIDDLE, "ue2", NULL), M5_STORE_DUPLICATE);
  assert_int_equal(accept1(f, s, "ue1", "a", M5_PRIO_MIDDLE, "ue2", NULL), M5_STORE_ACCEPTED);
  /* other originators keep theirs */
  assert_int_equal(accept1(f, s, "ue7", "a", M5_PRIO_MIDDLE, "ue2", NULL), M5_STORE_DUPLICATE);
  /* all of an originator's entries in the current bucket: the fifth drops that bucket and is
   * then its only entry */
  const char *xs[] = {"x1", "x2", "x3", "x4", "x5"};
  for (size_t i = 0; i < 5; i++)
    assert_int_equal(accept1(f, s, "ue5", xs[i], M5_PRIO_MIDDLE, "ue2", NULL), M5_STORE_ACCEPTED);
  assert_int_equal(accept1(f, s, "ue5", "x5", M5_PRIO_MIDDLE, "ue2", NULL), M5_STORE_DUPLICATE);
  assert_int_equal(accept1(f, s, "ue5", "x1", M5_PRIO_MIDDLE, "ue2", NULL), M5_STORE_ACCEPTED);
  m5_store_close(s);
}

static void test_queue_cap(void **state) {
  fx_t *f = *state;
  m5_store_opts_t o;
  default_opts(&o);
  o.max_per_recipient = 2;
  o.max_per_recipient_per_originator = 2; /* one sender fills the queue here */
  m5_store_t *s = open_store(&o);
  uint64_t id1;
  assert_int_equal(accept1(f, s, "ue1", "m1", M5_PRIO_MIDDLE, "ue2", &id1), M5_STORE_ACCEPTED);
  assert_int_equal(accept1(f, s, "ue1", "m2", M5_PRIO_MIDDLE, "ue2", NULL), M5_STORE_ACCEPTED);
  accept_t a;
  const char *to[] = {"ue2"};
  m5_store_job_t *j = mk_accept(&a, "ue1", "m3", M5_PRIO_HIGH, to, 1);
  assert_int_equal(run(f, s, j), 0);
  assert_int_equal(j->outcome, M5_STORE_QUEUE_FULL);
  assert_int_equal(a.rcpts[0].status, M5_STORE_QUEUE_FULL);
  assert_int_equal(a.rcpts[0].id, 0);
  m5_store_job_t k;
  due(f, s, "ue2", 10, &k);
  assert_int_equal(k.n_items, 2);
  m5_store_job_clear(&k);

  /* a group: non-partial refuses all, partial skips the full queue */
  const char *grp[] = {"ue2", "ue3"};
  j = mk_accept(&a, "ue1", "g1", M5_PRIO_MIDDLE, grp, 2);
  assert_int_equal(run(f, s, j), 0);
  assert_int_equal(j->outcome, M5_STORE_QUEUE_FULL);
  assert_int_equal(pending_of(f, s, "ue3"), 0);
  j = mk_accept(&a, "ue1", "g1", M5_PRIO_MIDDLE, grp, 2);
  j->partial = true;
  assert_int_equal(run(f, s, j), 0);
  assert_int_equal(j->outcome, M5_STORE_ACCEPTED);
  assert_int_equal(a.rcpts[0].status, M5_STORE_QUEUE_FULL);
  assert_int_equal(a.rcpts[1].status, M5_STORE_ACCEPTED);
  assert_true(a.rcpts[1].id != 0);
  assert_int_equal(pending_of(f, s, "ue3"), 1);

  /* nothing of the refused m3 was kept, not even its msgId: once there is room it goes in */
  assert_int_equal(simple(f, s, M5_STORE_MARK_DELIVERED, id1, &k), 0);
  m5_store_job_clear(&k);
  assert_int_equal(accept1(f, s, "ue1", "m3", M5_PRIO_HIGH, "ue2", NULL), M5_STORE_ACCEPTED);
  m5_store_stats_t st;
  m5_store_stats(s, &st);
  assert_int_equal(st.refused_queue_full, 2);
  m5_store_close(s);
}

static void test_store_cap(void **state) {
  fx_t *f = *state;
  m5_store_opts_t o;
  default_opts(&o);
  o.max_queued = 3;
  m5_store_t *s = open_store(&o);
  accept_t a;
  const char *grp[] = {"ue2", "ue3"};
  m5_store_job_t *j = mk_accept(&a, "ue1", "g1", M5_PRIO_MIDDLE, grp, 2);
  assert_int_equal(run(f, s, j), 0);
  assert_int_equal(j->outcome, M5_STORE_ACCEPTED);
  j = mk_accept(&a, "ue1", "g2", M5_PRIO_MIDDLE, grp, 2);
  j->partial = true;
  assert_int_equal(run(f, s, j), 0);
  assert_int_equal(j->outcome, M5_STORE_STORE_FULL);
  assert_int_equal(a.rcpts[0].id, 0);
  m5_store_stats_t st;
  m5_store_stats(s, &st);
  assert_int_equal(st.queued, 2);
  assert_int_equal(st.messages, js_mode ? 2 : 1); /* jetstream: a body per delivery */
  assert_int_equal(st.refused_store_full, 1);
  /* the refused message was not remembered either */
  assert_int_equal(accept1(f, s, "ue1", "g2", M5_PRIO_MIDDLE, "ue4", NULL), M5_STORE_ACCEPTED);
  m5_store_close(s);
}

static void test_expire(void **state) {
  fx_t *f = *state;
  m5_store_opts_t o;
  default_opts(&o);
  m5_store_t *s = open_store(&o);
  int64_t now_s = fake_now / 1000;
  accept_t a;
  const char *to[] = {"ue2"};
  m5_store_job_t *j = mk_accept(&a, "ue1", "short", M5_PRIO_MIDDLE, to, 1);
  j->msg.expr_time = now_s + 10;
  j->msg.deliv_st_req = true;
  assert_int_equal(run(f, s, j), 0);
  j = mk_accept(&a, "ue1", "long", M5_PRIO_MIDDLE, to, 1);
  j->msg.expr_time = now_s + 3600;
  assert_int_equal(run(f, s, j), 0);
  assert_int_equal(accept1(f, s, "ue1", "never", M5_PRIO_MIDDLE, "ue2", NULL), M5_STORE_ACCEPTED);

  m5_store_job_t k = {.op = M5_STORE_EXPIRE, .now_ms = fake_now + 9000, .limit = 10};
  assert_int_equal(run(f, s, &k), 0);
  assert_int_equal(k.n_items, 0);
  m5_store_job_clear(&k);
  k = (m5_store_job_t){.op = M5_STORE_EXPIRE, .now_ms = fake_now + 10000, .limit = 10};
  assert_int_equal(run(f, s, &k), 0);
  assert_int_equal(k.n_items, 1);
  assert_string_equal(k.items[0].msg.msg_id, "short");
  assert_int_equal(k.items[0].state, M5_DELIV_EXPIRED);
  assert_string_equal(k.items[0].failure_cause, M5_CAUSE_EXPIRED);
  assert_true(k.items[0].msg.deliv_st_req);
  assert_true(k.items[0].report_id != 0); /* its failure report, written with the expiry */
  assert_string_equal(k.items[0].msg.ori.addr, "ue1");
  m5_store_job_clear(&k);
  k = (m5_store_job_t){.op = M5_STORE_EXPIRE, .now_ms = fake_now + 20000, .limit = 10};
  assert_int_equal(run(f, s, &k), 0);
  assert_int_equal(k.n_items, 0); /* once */
  m5_store_job_clear(&k);
  due(f, s, "ue2", 10, &k);
  assert_int_equal(k.n_items, 2);
  m5_store_job_clear(&k);
  m5_store_stats_t st;
  m5_store_stats(s, &st);
  assert_int_equal(st.expired, 1);
  assert_int_equal(st.queued, 3); /* "long", "never" and the report to ue1 */
  assert_int_equal(st.reports, 1);
  m5_store_close(s);
}

static void test_reschedule_due_any(void **state) {
  fx_t *f = *state;
  m5_store_opts_t o;
  default_opts(&o);
  m5_store_t *s = open_store(&o);
  int64_t t0 = fake_now;
  uint64_t id;
  assert_int_equal(accept1(f, s, "ue1", "m1", M5_PRIO_MIDDLE, "ue2", &id), M5_STORE_ACCEPTED);
  m5_store_job_t k = {.op = M5_STORE_DUE_ANY, .now_ms = t0 + 999, .limit = 10};
  assert_int_equal(run(f, s, &k), 0);
  assert_int_equal(k.n_items, 0);
  k = (m5_store_job_t){.op = M5_STORE_DUE_ANY, .now_ms = t0 + 1000, .limit = 10};
  assert_int_equal(run(f, s, &k), 0);
  assert_int_equal(k.n_items, 1);
  assert_int_equal(k.items[0].id, id);
  assert_int_equal(k.items[0].attempts, 0);
  m5_store_job_clear(&k);

  k = (m5_store_job_t){
      .op = M5_STORE_RESCHEDULE, .id = id, .next_attempt_ms = t0 + 5000, .attempts = 1};
  assert_int_equal(run(f, s, &k), 0);
  k = (m5_store_job_t){.op = M5_STORE_DUE_ANY, .now_ms = t0 + 4999, .limit = 10};
  assert_int_equal(run(f, s, &k), 0);
  assert_int_equal(k.n_items, 0);
  k = (m5_store_job_t){.op = M5_STORE_DUE_ANY, .now_ms = t0 + 5000, .limit = 10};
  assert_int_equal(run(f, s, &k), 0);
  assert_int_equal(k.n_items, 1);
  assert_int_equal(k.items[0].attempts, 1);
  assert_int_equal(k.items[0].next_attempt_ms, t0 + 5000);
  m5_store_job_clear(&k);
  k = (m5_store_job_t){.op = M5_STORE_RESCHEDULE, .id = id + 100, .next_attempt_ms = 1};
  assert_int_equal(run(f, s, &k), M5_ENOENT);

  assert_int_equal(simple(f, s, M5_STORE_MARK_FAILED, id, &k), 0);
  m5_store_job_clear(&k);
  k = (m5_store_job_t){.op = M5_STORE_DUE_ANY, .now_ms = t0 + 99999, .limit = 10};
  assert_int_equal(run(f, s, &k), 0);
  assert_int_equal(k.n_items, 0);
  k = (m5_store_job_t){.op = M5_STORE_RESCHEDULE, .id = id, .next_attempt_ms = 1};
  assert_int_equal(run(f, s, &k), M5_ENOENT); /* final states stay final */
  m5_store_close(s);
}

/* An accept whose recipient is pushed at once (in_flight): DUE, DUE_ANY and EXPIRE leave it
 * alone until it is concluded; RESCHEDULE queues it; reopening the store (after a crash)
 * queues what was still in flight; it counts as pending throughout. */
static m5_store_outcome_t accept_in_flight(fx_t *f, m5_store_t *s, const char *msg_id,
                                           int64_t expr_time, uint64_t *id) {
  accept_t a;
  const char *to[] = {"ue2"};
  m5_store_job_t *j = mk_accept(&a, "ue1", msg_id, M5_PRIO_MIDDLE, to, 1);
  a.rcpts[0].in_flight = true;
  j->msg.expr_time = expr_time;
  assert_int_equal(run(f, s, j), 0);
  *id = a.rcpts[0].id;
  return j->outcome;
}

static size_t count_listed(fx_t *f, m5_store_t *s, m5_store_op_t op, int64_t now_ms) {
  m5_store_job_t k = {.op = op, .now_ms = now_ms, .limit = 10};
  addr(&k.rcpt, "UE", "ue2");
  assert_int_equal(run(f, s, &k), 0);
  size_t n = k.n_items;
  m5_store_job_clear(&k);
  return n;
}

static void test_in_flight(void **state) {
  fx_t *f = *state;
  m5_store_opts_t o;
  default_opts(&o);
  m5_store_t *s = open_store(&o);
  int64_t later = fake_now + 3600 * 1000;
  int64_t expr = fake_now / 1000 + 60;
  uint64_t a, b, c;
  assert_int_equal(accept_in_flight(f, s, "i1", expr, &a), M5_STORE_ACCEPTED);
  assert_int_equal(accept_in_flight(f, s, "i2", expr, &b), M5_STORE_ACCEPTED);
  assert_int_equal(accept_in_flight(f, s, "i3", expr, &c), M5_STORE_ACCEPTED);
  assert_int_equal(pending_of(f, s, "ue2"), 3);
  assert_int_equal(count_listed(f, s, M5_STORE_DUE, 0), 0);
  assert_int_equal(count_listed(f, s, M5_STORE_DUE_ANY, later), 0);
  assert_int_equal(count_listed(f, s, M5_STORE_EXPIRE, later), 0); /* past its exprTime */

  m5_store_job_t k;
  assert_int_equal(simple(f, s, M5_STORE_MARK_DELIVERED, a, &k), 0);
  assert_int_equal(k.items[0].state, M5_DELIV_DELIVERED);
  m5_store_job_clear(&k);
  k = (m5_store_job_t){
      .op = M5_STORE_RESCHEDULE, .id = b, .next_attempt_ms = fake_now + 2000, .attempts = 1};
  assert_int_equal(run(f, s, &k), 0);
  assert_int_equal(count_listed(f, s, M5_STORE_DUE, 0), 1);
  assert_int_equal(count_listed(f, s, M5_STORE_DUE_ANY, fake_now + 2000), 1);
  assert_int_equal(pending_of(f, s, "ue2"), 2);

  /* c is still in flight when the process goes: after a reopen it is queued, due at once */
  m5_store_close(s);
  s = open_store(&o);
  assert_int_equal(pending_of(f, s, "ue2"), 2);
  m5_store_job_t d;
  due(f, s, "ue2", 10, &d);
  assert_int_equal(d.n_items, 2);
  assert_int_equal(d.items[0].id, b);
  assert_int_equal(d.items[1].id, c);
  assert_int_equal(d.items[1].state, M5_DELIV_PENDING);
  m5_store_job_clear(&d);
  assert_int_equal(count_listed(f, s, M5_STORE_EXPIRE, later), 2);
  m5_store_close(s);
}

/* A delivery in flight since its accept, as the only recipient of its message, is concluded
 * from the copy of its row the store keeps in memory: MARK_DELIVERED and MARK_FAILED return
 * what reading the row gives (the same as for a delivery that was read: compared field by
 * field), the message goes with it (counts, quota), and MARK_FAILED writes its report. A copy
 * never outlives its row: a second conclusion is M5_ENOENT. */
static void expect_same_delivery(const m5_store_delivery_t *x, const m5_store_delivery_t *y) {
  assert_string_equal(x->rcpt.type, y->rcpt.type);
  assert_string_equal(x->rcpt.addr, y->rcpt.addr);
  assert_int_equal(x->state, y->state);
  assert_int_equal(x->attempts, y->attempts);
  assert_string_equal(x->failure_cause, y->failure_cause);
  assert_string_equal(x->msg.ori.type, y->msg.ori.type);
  assert_string_equal(x->msg.ori.addr, y->msg.ori.addr);
  assert_string_equal(x->msg.dest.type, y->msg.dest.type);
  assert_string_equal(x->msg.dest.addr, y->msg.dest.addr);
  assert_string_equal(x->msg.app_id, y->msg.app_id);
  assert_int_equal(x->msg.prio, y->msg.prio);
  assert_int_equal(x->msg.deliv_st_req, y->msg.deliv_st_req);
  assert_int_equal(x->msg.sto_fwd, y->msg.sto_fwd);
  assert_int_equal(x->msg.expr_time, y->msg.expr_time);
  assert_int_equal(x->msg.accepted_at_ms, y->msg.accepted_at_ms);
  assert_null(x->msg.payload);
  assert_null(y->msg.payload);
  assert_int_equal(x->msg.ori_gen, y->msg.ori_gen);
  assert_int_equal(x->msg.group_gen, y->msg.group_gen);
  assert_int_equal(x->rcpt_gen, y->rcpt_gen);
  assert_int_equal(x->report_id != 0, y->report_id != 0);
}

static void test_in_flight_conclusion(void **state) {
  fx_t *f = *state;
  m5_store_opts_t o;
  default_opts(&o);
  o.max_msgs_per_originator = 4;
  m5_store_t *s = open_store(&o);
  int64_t expr = fake_now / 1000 + 60;
  accept_t a[4];
  const char *to[] = {"ue2"};
  for (int i = 0; i < 4; i++) {
    char id[8];
    snprintf(id, sizeof id, "c%d", i);
    m5_store_job_t *j = mk_accept(&a[i], "ue1", id, M5_PRIO_HIGH, to, 1);
    a[i].rcpts[0].in_flight = i % 2 == 0; /* c0, c2 in flight; c1, c3 read back */
    a[i].rcpts[0].next_attempt_ms = fake_now + 1000;
    j->msg.expr_time = expr;
    j->msg.deliv_st_req = true;
    j->msg.sto_fwd = true;
    snprintf(j->msg.app_id, sizeof j->msg.app_id, "app.x");
    assert_int_equal(run(f, s, j), 0);
    assert_int_equal(j->outcome, M5_STORE_ACCEPTED);
  }
  m5_store_stats_t st;
  m5_store_stats(s, &st);
  assert_int_equal(st.messages, 4);
  m5_store_job_t k[4];
  assert_int_equal(simple(f, s, M5_STORE_MARK_DELIVERED, a[0].rcpts[0].id, &k[0]), 0);
  assert_int_equal(simple(f, s, M5_STORE_MARK_DELIVERED, a[1].rcpts[0].id, &k[1]), 0);
  memset(&k[2], 0, sizeof k[2]);
  k[2].op = M5_STORE_MARK_FAILED;
  k[2].id = a[2].rcpts[0].id;
  snprintf(k[2].cause, sizeof k[2].cause, M5_CAUSE_UNREACHABLE);
  assert_int_equal(run(f, s, &k[2]), 0);
  memset(&k[3], 0, sizeof k[3]);
  k[3].op = M5_STORE_MARK_FAILED;
  k[3].id = a[3].rcpts[0].id;
  snprintf(k[3].cause, sizeof k[3].cause, M5_CAUSE_UNREACHABLE);
  assert_int_equal(run(f, s, &k[3]), 0);
  for (int i = 0; i < 4; i++) {
    assert_int_equal(k[i].n_items, 1);
    assert_int_equal(k[i].items[0].id, a[i].rcpts[0].id);
    char id[8];
    snprintf(id, sizeof id, "c%d", i);
    assert_string_equal(k[i].items[0].msg.msg_id, id);
  }
  assert_int_equal(k[0].items[0].state, M5_DELIV_DELIVERED);
  assert_int_equal(k[2].items[0].state, M5_DELIV_FAILED);
  assert_string_equal(k[2].items[0].failure_cause, M5_CAUSE_UNREACHABLE);
  assert_true(k[2].items[0].report_id != 0); /* its report, in the same transaction */
  expect_same_delivery(&k[0].items[0], &k[1].items[0]);
  expect_same_delivery(&k[2].items[0], &k[3].items[0]);
  for (int i = 0; i < 4; i++)
    m5_store_job_clear(&k[i]);
  /* the messages went with their deliveries: counts, and the sender's quota of 4 */
  m5_store_stats(s, &st);
  assert_int_equal(st.messages, 2); /* the two reports */
  assert_int_equal(pending_of(f, s, "ue2"), 0);
  for (int i = 0; i < 4; i++) {
    char id[8];
    snprintf(id, sizeof id, "d%d", i);
    assert_int_equal(accept1(f, s, "ue1", id, M5_PRIO_MIDDLE, "ue2", NULL), M5_STORE_ACCEPTED);
  }
  m5_store_job_t again;
  assert_int_equal(simple(f, s, M5_STORE_MARK_DELIVERED, a[0].rcpts[0].id, &again), M5_ENOENT);
  m5_store_close(s);
}

/* ---- reports written with their failure (docs/store.md "Reports") ---- */

/* A delivery report waiting for `to`, as DUE returns it (after a reopen: it is durable). */
static void expect_report(fx_t *f, m5_store_t *s, const char *type, const char *to,
                          const char *from, const char *msg_id, const char *text) {
  m5_store_job_t d;
  memset(&d, 0, sizeof d);
  d.op = M5_STORE_DUE;
  addr(&d.rcpt, type, to);
  d.limit = 10;
  assert_int_equal(run(f, s, &d), 0);
  size_t found = 0;
  for (size_t i = 0; i < d.n_items; i++) {
    const m5_store_msg_t *m = &d.items[i].msg;
    if (strcmp(m->app_id, M5_STORE_REPORT_APP) != 0 || strcmp(m->msg_id, msg_id) != 0) continue;
    found++;
    assert_string_equal(m->ori.addr, from);
    assert_string_equal(m->dest.addr, to);
    assert_int_equal(m->payload_len, strlen(text));
    assert_memory_equal(m->payload, text, strlen(text));
    assert_true(m->sto_fwd);
  }
  assert_int_equal(found, 1);
  m5_store_job_clear(&d);
}

static m5_store_outcome_t accept_report_req(fx_t *f, m5_store_t *s, const char *ori_type,
                                            const char *ori, const char *msg_id, const char *to,
                                            int64_t expr, uint64_t *id) {
  accept_t a;
  const char *rc[] = {to};
  m5_store_job_t *j = mk_accept(&a, ori, msg_id, M5_PRIO_MIDDLE, rc, 1);
  addr(&j->msg.ori, ori_type, ori);
  j->msg.deliv_st_req = true;
  j->ticket_put = true; /* as m5s asks for every message with delivStReqInd */
  j->msg.expr_time = expr;
  assert_int_equal(run(f, s, j), 0);
  if (id) *id = a.rcpts[0].id;
  return j->outcome;
}

/* MARK_FAILED and EXPIRE write the failure report in their own transaction: once their reply
 * is in, a reopened store has it, for a UE and for an AS originator; a full queue of the
 * originator does not refuse it; the reports have their own bound. */
static void test_report_with_failure(void **state) {
  fx_t *f = *state;
  m5_store_opts_t o;
  default_opts(&o);
  o.max_per_recipient = 1;
  o.max_reports_per_recipient = 2;
  m5_store_t *s = open_store(&o);
  int64_t expr = fake_now / 1000 + 10;
  uint64_t id1, id2;
  assert_int_equal(accept_report_req(f, s, "UE", "ue1", "m-fail", "ue2", 0, &id1),
                   M5_STORE_ACCEPTED);
  assert_int_equal(accept_report_req(f, s, "AS", "as1", "m-exp", "ue3", expr, &id2),
                   M5_STORE_ACCEPTED);
  /* ue1's queue is full (max_per_recipient 1): its failure report still goes in */
  assert_int_equal(accept1(f, s, "ue9", "filler", M5_PRIO_MIDDLE, "ue1", NULL), M5_STORE_ACCEPTED);
  assert_int_equal(accept1(f, s, "ue8", "filler2", M5_PRIO_MIDDLE, "ue1", NULL),
                   M5_STORE_QUEUE_FULL);

  m5_store_job_t k;
  memset(&k, 0, sizeof k);
  k.op = M5_STORE_MARK_FAILED;
  k.id = id1;
  snprintf(k.cause, sizeof k.cause, "%s", M5_CAUSE_UNREACHABLE);
  k.next_attempt_ms = fake_now + 2000;
  assert_int_equal(run(f, s, &k), 0);
  assert_int_equal(k.n_items, 1);
  uint64_t rep1 = k.items[0].report_id;
  assert_true(rep1 != 0);
  /* what the caller pushes at once is what the store wrote */
  m5_store_delivery_t r;
  assert_int_equal(m5_store_report_of(&k.items[0], 0, &r), 0);
  assert_int_equal(r.id, rep1);
  assert_string_equal(r.rcpt.addr, "ue1");
  assert_string_equal((const char *)r.msg.payload, "REPT_DELY_FAILED RECIPIENT_UNREACHABLE");
  free(r.msg.payload);
  m5_store_job_clear(&k);
  k = (m5_store_job_t){.op = M5_STORE_EXPIRE, .now_ms = fake_now + 10000, .limit = 10};
  assert_int_equal(run(f, s, &k), 0);
  assert_int_equal(k.n_items, 1);
  assert_true(k.items[0].report_id != 0);
  m5_store_job_clear(&k);
  /* a report is not itself reported on, and a report expires without one */
  m5_store_close(s);

  s = open_store(&o); /* the reports were committed with the failure and the expiry */
  expect_report(f, s, "UE", "ue1", "ue2", "m-fail", "REPT_DELY_FAILED RECIPIENT_UNREACHABLE");
  expect_report(f, s, "AS", "as1", "ue3", "m-exp", "REPT_DELY_FAILED EXPIRED");
  m5_store_stats_t st;
  m5_store_stats(s, &st);
  assert_int_equal(st.queued, 3); /* filler + the two reports */
  assert_int_equal(pending_of(f, s, "ue1"), 1); /* the report is not in max_per_recipient's count */

  /* ue1's report bound (2): a second report fits, a third is not written */
  uint64_t id3, id4;
  assert_int_equal(accept_report_req(f, s, "UE", "ue1", "m-3", "ue4", 0, &id3), M5_STORE_ACCEPTED);
  assert_int_equal(accept_report_req(f, s, "UE", "ue1", "m-4", "ue5", 0, &id4), M5_STORE_ACCEPTED);
  assert_int_equal(simple(f, s, M5_STORE_MARK_FAILED, id3, &k), 0);
  assert_true(k.items[0].report_id != 0);
  m5_store_job_clear(&k);
  assert_int_equal(simple(f, s, M5_STORE_MARK_FAILED, id4, &k), 0);
  assert_int_equal(k.items[0].report_id, 0);
  m5_store_job_clear(&k);
  m5_store_stats(s, &st);
  assert_int_equal(st.reports, 1);
  assert_int_equal(st.reports_dropped, 1);
  /* the reports are charged to no originator: ue2 can still send */
  m5_store_close(s);
  o.max_msgs_per_originator = 1;
  s = open_store(&o);
  assert_int_equal(accept1(f, s, "ue2", "after", M5_PRIO_MIDDLE, "ue7", NULL), M5_STORE_ACCEPTED);
  m5_store_close(s);
}

static m5_store_job_t *mk_report(accept_t *a, const char *ori, const char *msg_id,
                                 const char *to);
static m5_store_job_t *mk_gen_accept(accept_t *a, const char *ori_type, const char *ori,
                                     uint64_t ori_gen, const char *msg_id, const char *to,
                                     uint64_t to_gen, bool report_req);

/* A delivery report from a peer (a UE's IMDN, an AS's deliver-report) has the reports' own
 * bound: a full queue of its recipient does not refuse it, nor does the reporter's quota or
 * its share of that queue, and it is charged to neither; beyond max_reports_per_recipient it
 * is refused with QUEUE_FULL, nothing written, also after a reopen; one reporter holds at most
 * half of a recipient's reports (ORIGINATOR_QUOTA beyond). */
static void test_peer_report_own_bound(void **state) {
  fx_t *f = *state;
  m5_store_opts_t o;
  default_opts(&o);
  o.max_per_recipient = 4;
  o.max_per_recipient_per_originator = 4;
  o.max_reports_per_recipient = 3;
  o.max_msgs_per_originator = 4;
  m5_store_t *s = open_store(&o);
  accept_t a;
  /* ue1 asks for reports on r-1 .. r-4: r-2 from ue3, r-3 from as1 (a message to an AS),
   * r-4 from ue2 and ue5 (two recipients), r-1 from ue2; ue3 fills ue1's queue and uses up its
   * quota */
  const char *ids[] = {"r-1", "r-2", "r-3", "r-4"}, *tos[] = {"ue2", "ue3", "as1", "ue2"};
  for (int i = 0; i < 4; i++) {
    const char *rc[] = {tos[i], "ue5"};
    m5_store_job_t *mj = mk_accept(&a, "ue1", ids[i], M5_PRIO_MIDDLE, rc, i == 3 ? 2 : 1);
    if (i == 2) addr(&a.rcpts[0].addr, "AS", "as1");
    mj->msg.deliv_st_req = mj->ticket_put = true;
    mj->partial = true;
    assert_int_equal(run(f, s, mj), 0);
    assert_int_equal(mj->outcome, M5_STORE_ACCEPTED);
  }
  for (int i = 0; i < 4; i++) {
    char id[16];
    snprintf(id, sizeof id, "fill-%d", i);
    assert_int_equal(accept1(f, s, "ue3", id, M5_PRIO_MIDDLE, "ue1", NULL), M5_STORE_ACCEPTED);
  }
  assert_int_equal(accept1(f, s, "ue4", "one-more", M5_PRIO_MIDDLE, "ue1", NULL),
                   M5_STORE_QUEUE_FULL);
  /* ue3 reports too (its quota is used up): refused by nothing but the reports' bound */
  assert_int_equal(run(f, s, mk_report(&a, "ue2", "r-1", "ue1")), 0);
  assert_int_equal(a.job.outcome, M5_STORE_ACCEPTED);
  assert_false(a.job.discarded);
  assert_true(a.rcpts[0].id != 0);
  m5_store_job_t *j = mk_report(&a, "ue3", "r-2", "ue1");
  assert_int_equal(run(f, s, j), 0);
  assert_int_equal(j->outcome, M5_STORE_ACCEPTED);
  /* an AS's deliver-report to ue1 */
  j = mk_report(&a, "as1", "r-3", "ue1");
  addr(&j->msg.ori, "AS", "as1");
  snprintf(j->dedup_ori, sizeof j->dedup_ori, "AS:as1");
  assert_int_equal(run(f, s, j), 0);
  assert_int_equal(j->outcome, M5_STORE_ACCEPTED);
  assert_int_equal(pending_of(f, s, "ue1"), 4); /* the reports are not in the messages' count */
  /* ue3 (4 bodies stored) and ue2 were charged nothing: ue2 can still send 4 */
  for (int i = 0; i < 4; i++) {
    char id[16];
    snprintf(id, sizeof id, "ue2-%d", i);
    assert_int_equal(accept1(f, s, "ue2", id, M5_PRIO_MIDDLE, "ue9", NULL), M5_STORE_ACCEPTED);
  }
  assert_int_equal(accept1(f, s, "ue2", "ue2-4", M5_PRIO_MIDDLE, "ue9", NULL),
                   M5_STORE_ORIGINATOR_QUOTA);
  m5_store_close(s);
  /* after a reopen the bound still counts the three waiting reports: the fourth is refused,
   * nothing written (a retry once one is delivered is judged afresh) */
  s = open_store(&o);
  assert_int_equal(pending_of(f, s, "ue1"), 4);
  assert_int_equal(run(f, s, mk_report(&a, "ue2", "r-4", "ue1")), 0);
  assert_int_equal(a.job.outcome, M5_STORE_QUEUE_FULL);
  assert_int_equal(a.rcpts[0].id, 0);
  m5_store_job_t d;
  due(f, s, "ue1", 100, &d);
  assert_int_equal(d.n_items, 7);
  uint64_t rep = 0;
  for (size_t i = 0; i < d.n_items; i++)
    if (!strcmp(d.items[i].msg.app_id, M5_STORE_REPORT_APP)) rep = d.items[i].id;
  m5_store_job_clear(&d);
  assert_true(rep != 0);
  m5_store_job_t k;
  assert_int_equal(simple(f, s, M5_STORE_MARK_DELIVERED, rep, &k), 0);
  m5_store_job_clear(&k);
  assert_int_equal(run(f, s, mk_report(&a, "ue2", "r-4", "ue1")), 0);
  assert_int_equal(a.job.outcome, M5_STORE_ORIGINATOR_QUOTA); /* ue2 holds 1 of 3 (half) */
  assert_int_equal(run(f, s, mk_report(&a, "ue5", "r-4", "ue1")), 0);
  assert_int_equal(a.job.outcome, M5_STORE_ACCEPTED);
  m5_store_close(s);
}

/* ---- quotas per originator ---- */

static void test_originator_quota(void **state) {
  fx_t *f = *state;
  m5_store_opts_t o;
  default_opts(&o);
  o.max_msgs_per_originator = 2;
  o.max_bytes_per_originator = 1000;
  m5_store_t *s = open_store(&o);
  uint64_t id1;
  assert_int_equal(accept1(f, s, "ue1", "q1", M5_PRIO_MIDDLE, "ue2", &id1), M5_STORE_ACCEPTED);
  assert_int_equal(accept1(f, s, "ue1", "q2", M5_PRIO_MIDDLE, "ue3", NULL), M5_STORE_ACCEPTED);
  assert_int_equal(accept1(f, s, "ue1", "q3", M5_PRIO_MIDDLE, "ue2", NULL),
                   M5_STORE_ORIGINATOR_QUOTA);
  /* another sender to the same recipient is unaffected */
  assert_int_equal(accept1(f, s, "ue4", "q1", M5_PRIO_MIDDLE, "ue2", NULL), M5_STORE_ACCEPTED);
  m5_store_stats_t st;
  m5_store_stats(s, &st);
  assert_int_equal(st.refused_originator_quota, 1);
  assert_int_equal(st.queued, 3);
  /* nothing was written for q3, not even its msgId: once a body is gone it goes through */
  m5_store_job_t k;
  assert_int_equal(simple(f, s, M5_STORE_MARK_DELIVERED, id1, &k), 0);
  m5_store_job_clear(&k);
  assert_int_equal(accept1(f, s, "ue1", "q3", M5_PRIO_MIDDLE, "ue2", NULL), M5_STORE_ACCEPTED);
  assert_int_equal(accept1(f, s, "ue1", "q4", M5_PRIO_MIDDLE, "ue2", NULL),
                   M5_STORE_ORIGINATOR_QUOTA);
  /* the bytes: an AS with one large body */
  accept_t a;
  const char *to[] = {"ue2"};
  m5_store_job_t *j = mk_accept(&a, "as1", "big", M5_PRIO_MIDDLE, to, 1);
  addr(&j->msg.ori, "AS", "as1");
  static uint8_t big[1001];
  j->msg.payload = big;
  j->msg.payload_len = sizeof big;
  assert_int_equal(run(f, s, j), 0);
  assert_int_equal(j->outcome, M5_STORE_ORIGINATOR_QUOTA);
  j = mk_accept(&a, "as1", "big", M5_PRIO_MIDDLE, to, 1);
  addr(&j->msg.ori, "AS", "as1");
  j->msg.payload = big;
  j->msg.payload_len = sizeof big - 1;
  assert_int_equal(run(f, s, j), 0);
  assert_int_equal(j->outcome, M5_STORE_ACCEPTED);
  /* a DELY_FAILED ack (no recipient) stores no body and is never refused by the quota */
  j = mk_accept(&a, "ue1", "q5", M5_PRIO_MIDDLE, NULL, 0);
  snprintf(j->ack.status, sizeof j->ack.status, "DELY_FAILED");
  assert_int_equal(run(f, s, j), 0);
  assert_int_equal(j->outcome, M5_STORE_ACCEPTED);
  /* the use is read back from the tables at open */
  m5_store_close(s);
  s = open_store(&o);
  assert_int_equal(accept1(f, s, "ue1", "q6", M5_PRIO_MIDDLE, "ue2", NULL),
                   M5_STORE_ORIGINATOR_QUOTA);
  assert_int_equal(accept1(f, s, "ue5", "q6", M5_PRIO_MIDDLE, "ue2", NULL), M5_STORE_ACCEPTED);
  m5_store_close(s);
}

/* One sender holds at most max_per_recipient_per_originator (by default half) of a victim's
 * queue: beyond, ORIGINATOR_QUOTA, and the queue keeps room for the others. */
static void test_originator_share(void **state) {
  fx_t *f = *state;
  m5_store_opts_t o;
  default_opts(&o);
  o.max_per_recipient = 4; /* a share of 2 */
  m5_store_t *s = open_store(&o);
  assert_int_equal(accept1(f, s, "bad", "s1", M5_PRIO_MIDDLE, "victim", NULL), M5_STORE_ACCEPTED);
  assert_int_equal(accept1(f, s, "bad", "s2", M5_PRIO_MIDDLE, "victim", NULL), M5_STORE_ACCEPTED);
  /* the queue has 2 (= the share): now counted; "bad" is at its share */
  assert_int_equal(accept1(f, s, "bad", "s3", M5_PRIO_MIDDLE, "victim", NULL),
                   M5_STORE_ORIGINATOR_QUOTA);
  assert_int_equal(accept1(f, s, "bad", "s3", M5_PRIO_MIDDLE, "other", NULL), M5_STORE_ACCEPTED);
  /* a group: non-partial is refused whole, partial skips the queue of its share */
  accept_t a;
  const char *grp[] = {"victim", "third"};
  m5_store_job_t *j = mk_accept(&a, "bad", "g1", M5_PRIO_MIDDLE, grp, 2);
  assert_int_equal(run(f, s, j), 0);
  assert_int_equal(j->outcome, M5_STORE_ORIGINATOR_QUOTA);
  assert_int_equal(pending_of(f, s, "third"), 0);
  j = mk_accept(&a, "bad", "g1", M5_PRIO_MIDDLE, grp, 2);
  j->partial = true;
  assert_int_equal(run(f, s, j), 0);
  assert_int_equal(j->outcome, M5_STORE_ACCEPTED);
  assert_int_equal(a.rcpts[0].status, M5_STORE_ORIGINATOR_QUOTA);
  assert_int_equal(a.rcpts[1].status, M5_STORE_ACCEPTED);
  /* the others still get in, up to the queue's own cap */
  assert_int_equal(accept1(f, s, "good", "s1", M5_PRIO_MIDDLE, "victim", NULL), M5_STORE_ACCEPTED);
  assert_int_equal(accept1(f, s, "good2", "s1", M5_PRIO_MIDDLE, "victim", NULL),
                   M5_STORE_ACCEPTED);
  assert_int_equal(accept1(f, s, "good3", "s1", M5_PRIO_MIDDLE, "victim", NULL),
                   M5_STORE_QUEUE_FULL);
  m5_store_stats_t st;
  m5_store_stats(s, &st);
  assert_int_equal(st.refused_originator_quota, 2);
  assert_int_equal(st.refused_queue_full, 1);
  m5_store_close(s);
}

/* ---- nothing stays in flight ---- */

/* A conclusion that fails (here a trigger makes deleting an in-flight row fail, as a full disk
 * would) leaves its delivery in flight; REQUEUE_STALE queues it again once its time has
 * passed, without a restart, and it can then be concluded. */
static void test_requeue_stale(void **state) {
  fx_t *f = *state;
  m5_store_opts_t o;
  default_opts(&o);
  m5_store_t *s = open_store(&o);
  m5_store_close(s);
  sqlite3 *db;
  assert_int_equal(sqlite3_open(db_path, &db), SQLITE_OK);
  assert_int_equal(sqlite3_exec(db,
                                "CREATE TRIGGER stuck BEFORE DELETE ON deliveries"
                                " WHEN OLD.state = 4 BEGIN SELECT RAISE(ABORT, 'stuck'); END;",
                                NULL, NULL, NULL),
                   SQLITE_OK);
  sqlite3_close(db);
  s = open_store(&o);
  int64_t expr = fake_now / 1000 + 3600;
  uint64_t a, b;
  assert_int_equal(accept_in_flight(f, s, "r1", expr, &a), M5_STORE_ACCEPTED);
  assert_int_equal(accept_in_flight(f, s, "r2", expr, &b), M5_STORE_ACCEPTED);
  m5_store_job_t k;
  assert_int_equal(simple(f, s, M5_STORE_MARK_DELIVERED, a, &k), M5_EIO);
  m5_store_job_clear(&k);
  k = (m5_store_job_t){
      .op = M5_STORE_RESCHEDULE, .id = b, .next_attempt_ms = fake_now + 5000, .attempts = 1};
  assert_int_equal(run(f, s, &k), 0);
  assert_int_equal(count_listed(f, s, M5_STORE_DUE, 0), 1); /* b; a is stuck in flight */
  /* not yet: a's push could still be running */
  k = (m5_store_job_t){.op = M5_STORE_REQUEUE_STALE, .now_ms = fake_now};
  assert_int_equal(run(f, s, &k), 0);
  assert_int_equal(k.pending, 0);
  k = (m5_store_job_t){.op = M5_STORE_REQUEUE_STALE, .now_ms = fake_now + 1000};
  assert_int_equal(run(f, s, &k), 0);
  assert_int_equal(k.pending, 1); /* a only: b was concluded */
  assert_int_equal(count_listed(f, s, M5_STORE_DUE, 0), 2);
  assert_int_equal(count_listed(f, s, M5_STORE_DUE_ANY, fake_now + 1000), 1);
  k = (m5_store_job_t){.op = M5_STORE_REQUEUE_STALE, .now_ms = fake_now + 9000};
  assert_int_equal(run(f, s, &k), 0);
  assert_int_equal(k.pending, 0); /* once */
  assert_int_equal(simple(f, s, M5_STORE_MARK_DELIVERED, a, &k), 0); /* PENDING now */
  m5_store_job_clear(&k);
  m5_store_stats_t st;
  m5_store_stats(s, &st);
  assert_int_equal(st.requeued, 1);
  assert_int_equal(st.delivered, 1);
  assert_int_equal(st.queued, 1);
  m5_store_close(s);
}

/* ---- durability level ---- */

/* SQLite's syncs of the WAL, counted by wrapping fsync/fdatasync in this program (the
 * executable's definitions come first for libsqlite3's calls). */
static int wal_syncs;

static int is_wal_fd(int fd) {
  char link[64], target[512];
  snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
  ssize_t n = readlink(link, target, sizeof target - 1);
  if (n < 4) return 0;
  target[n] = '\0';
  return strcmp(target + n - 4, "-wal") == 0;
}

typedef int (*sync_fn)(int);

static int counted_sync(const char *name, int fd) {
  void *sym = dlsym(RTLD_NEXT, name);
  sync_fn real;
  memcpy(&real, &sym, sizeof real);
  if (is_wal_fd(fd)) __atomic_add_fetch(&wal_syncs, 1, __ATOMIC_SEQ_CST);
  return real ? real(fd) : -1;
}

int fsync(int fd) {
  return counted_sync("fsync", fd);
}

int fdatasync(int fd) {
  return counted_sync("fdatasync", fd);
}

/* The store runs with synchronous=FULL (read back from SQLite) and every commit that carries
 * an accept syncs the WAL before the reply: a kill -9 cannot tell (the page cache survives
 * it), so the syscalls are counted. */
static void test_synchronous_full(void **state) {
  fx_t *f = *state;
  m5_store_opts_t o;
  default_opts(&o);
  m5_store_t *s = open_store(&o);
  m5_store_stats_t st;
  m5_store_stats(s, &st);
  assert_int_equal(st.synchronous, 2); /* FULL */
  uint64_t commits0 = st.commits;
  int syncs0 = __atomic_load_n(&wal_syncs, __ATOMIC_SEQ_CST);
  for (int i = 0; i < 20; i++) {
    char id[16];
    snprintf(id, sizeof id, "sync-%d", i);
    int before = __atomic_load_n(&wal_syncs, __ATOMIC_SEQ_CST);
    assert_int_equal(accept1(f, s, "ue1", id, M5_PRIO_MIDDLE, "ue2", NULL), M5_STORE_ACCEPTED);
    /* the reply came after the sync of its commit */
    assert_true(__atomic_load_n(&wal_syncs, __ATOMIC_SEQ_CST) > before);
  }
  m5_store_stats(s, &st);
  int syncs = __atomic_load_n(&wal_syncs, __ATOMIC_SEQ_CST) - syncs0;
  print_message("%d WAL syncs for %llu commits\n", syncs,
                (unsigned long long)(st.commits - commits0));
  assert_true(st.commits - commits0 == 20);
  assert_true(syncs >= 20);
  m5_store_close(s);
}

/* A batch of delivery conclusions alone does not wait for a WAL sync (nothing is acknowledged
 * to anyone on its reply), and the next accept's sync covers its frames: the conclusion is on
 * disk before any later acknowledgement leaves. */
static void test_conclusions_unsynced(void **state) {
  fx_t *f = *state;
  m5_store_opts_t o;
  default_opts(&o);
  m5_store_t *s = open_store(&o);
  accept_t a;
  const char *to[] = {"ue2", "ue3"};
  m5_store_job_t *j = mk_accept(&a, "ue1", "c1", M5_PRIO_MIDDLE, to, 2);
  int syncs = __atomic_load_n(&wal_syncs, __ATOMIC_SEQ_CST);
  assert_int_equal(run(f, s, j), 0);
  assert_int_equal(j->outcome, M5_STORE_ACCEPTED);
  assert_true(__atomic_load_n(&wal_syncs, __ATOMIC_SEQ_CST) > syncs);
  m5_store_stats_t st;
  m5_store_stats(s, &st);
  uint64_t commits0 = st.commits, unsynced0 = st.unsynced_commits;

  syncs = __atomic_load_n(&wal_syncs, __ATOMIC_SEQ_CST);
  m5_store_job_t k;
  assert_int_equal(simple(f, s, M5_STORE_MARK_DELIVERED, a.rcpts[0].id, &k), 0);
  m5_store_job_clear(&k);
  assert_int_equal(simple(f, s, M5_STORE_RESCHEDULE, a.rcpts[1].id, &k), 0);
  m5_store_job_clear(&k);
  assert_int_equal(__atomic_load_n(&wal_syncs, __ATOMIC_SEQ_CST), syncs);
  m5_store_stats(s, &st);
  assert_int_equal(st.commits - commits0, 2);
  assert_int_equal(st.unsynced_commits - unsynced0, 2);

  /* the next accept syncs again (and with it the conclusions' frames) */
  assert_int_equal(accept1(f, s, "ue1", "c2", M5_PRIO_MIDDLE, "ue2", NULL), M5_STORE_ACCEPTED);
  assert_true(__atomic_load_n(&wal_syncs, __ATOMIC_SEQ_CST) > syncs);
  m5_store_stats(s, &st);
  assert_int_equal(st.unsynced_commits - unsynced0, 2);
  assert_int_equal(st.synchronous, 2); /* what an accept is committed with */
  m5_store_close(s);
}

#define BURST 500

static void test_group_commit(void **state) {
  fx_t *f = *state;
  m5_store_opts_t o;
  default_opts(&o);
  o.clock_ms = NULL;
  o.queue_cap = 1024;
  m5_store_t *s = open_store(&o);
  accept_t *a = calloc(BURST, sizeof *a);
  f->store = s;
  f->done = 0;
  f->want = BURST;
  const char *to[] = {"ue2"};
  for (int i = 0; i < BURST; i++) {
    char id[16];
    snprintf(id, sizeof id, "b%d", i);
    m5_store_job_t *j = mk_accept(&a[i], "ue1", id, M5_PRIO_MIDDLE, to, 1);
    j->base.reply = f->replies;
    assert_int_equal(m5_store_submit(s, j), 0);
  }
  uint64_t t = tu_now_ms();
  while (f->done < BURST && tu_now_ms() - t < 20000)
    assert_int_equal(m5_loop_run(f->loop), 0);
  assert_int_equal(f->done, BURST);
  assert_int_equal(f->bad_order, 0);
  f->store = NULL;
  for (int i = 0; i < BURST; i++) {
    assert_int_equal(a[i].job.status, 0);
    assert_int_equal(a[i].job.outcome, M5_STORE_ACCEPTED);
  }
  m5_store_stats_t st;
  m5_store_stats(s, &st);
  print_message("group commit: %d accepts in %llu commits, %llu batches\n", BURST,
                (unsigned long long)st.commits, (unsigned long long)st.batches);
  assert_int_equal(st.jobs, BURST);
  assert_true(st.commits <= BURST / 10);
  /* replies were posted in submission order */
  for (int i = 1; i < BURST; i++)
    assert_true(a[i].job.commit_no >= a[i - 1].job.commit_no);
  free(a);
  m5_store_close(s);
}

/* A job that fails half-way (here a trigger makes the delivery insert fail after the message
 * row went in) is undone alone: the jobs batched with it are committed, the queue counts
 * stay right, and the store goes on. The jobs are submitted together so that they share a
 * batch, which runs first without savepoints and then again job by job. */
#define FAILING_BURST 9

static void test_failing_job_in_batch(void **state) {
  fx_t *f = *state;
  m5_store_opts_t o;
  default_opts(&o);
  o.dedup_max_per_sender = FAILING_BURST - FAILING_BURST / 3 + 1; /* what is kept, and one */
  m5_store_t *s = open_store(&o);
  m5_store_close(s);
  sqlite3 *db;
  assert_int_equal(sqlite3_open(db_path, &db), SQLITE_OK);
  assert_int_equal(sqlite3_exec(db,
                                "CREATE TRIGGER boom BEFORE INSERT ON deliveries"
                                " WHEN NEW.rcpt_addr = 'boom' BEGIN SELECT RAISE(ABORT, 'boom'); END;",
                                NULL, NULL, NULL),
                   SQLITE_OK);
  sqlite3_close(db);
  s = open_store(&o);
  accept_t a[FAILING_BURST];
  f->store = s;
  f->done = 0;
  f->want = FAILING_BURST;
  for (int i = 0; i < FAILING_BURST; i++) {
    char id[16];
    snprintf(id, sizeof id, "f%d", i);
    const char *to[] = {i % 3 == 1 ? "boom" : "ue2"};
    m5_store_job_t *j = mk_accept(&a[i], "ue1", id, M5_PRIO_MIDDLE, to, 1);
    j->base.reply = f->replies;
    assert_int_equal(m5_store_submit(s, j), 0);
  }
  uint64_t t = tu_now_ms();
  while (f->done < FAILING_BURST && tu_now_ms() - t < 20000)
    assert_int_equal(m5_loop_run(f->loop), 0);
  assert_int_equal(f->done, FAILING_BURST);
  assert_int_equal(f->bad_order, 0);
  f->store = NULL;
  for (int i = 0; i < FAILING_BURST; i++) {
    if (i % 3 == 1) {
      assert_int_equal(a[i].job.status, M5_EIO);
    } else {
      assert_int_equal(a[i].job.status, 0);
      assert_int_equal(a[i].job.outcome, M5_STORE_ACCEPTED);
      assert_true(a[i].rcpts[0].id != 0);
    }
  }
  m5_store_stats_t st;
  m5_store_stats(s, &st);
  assert_int_equal(st.accepted, 6);
  assert_int_equal(st.queued, 6);
  assert_int_equal(st.messages, 6);
  assert_int_equal(pending_of(f, s, "ue2"), 6);
  assert_int_equal(pending_of(f, s, "boom"), 0);
  m5_store_job_t j;
  due(f, s, "ue2", 100, &j);
  assert_int_equal(j.n_items, 6);
  m5_store_job_clear(&j);
  /* The dedup counts (in memory, schema 7) are those of what was kept: the rolled-back run
   * of the batch counted ue1's first msgIds once already. ue1 has 6 entries, so one more
   * fits its bound and its window stays whole. */
  assert_int_equal(accept1(f, s, "ue1", "g1", M5_PRIO_MIDDLE, "ue2", NULL), M5_STORE_ACCEPTED);
  assert_int_equal(accept1(f, s, "ue1", "f0", M5_PRIO_MIDDLE, "ue2", NULL), M5_STORE_DUPLICATE);
  /* nothing of a failed job was kept, not even its msgId: a retransmission goes through
   * once the cause is gone */
  m5_store_close(s);
  assert_int_equal(sqlite3_open(db_path, &db), SQLITE_OK);
  assert_int_equal(sqlite3_exec(db, "DROP TRIGGER boom", NULL, NULL, NULL), SQLITE_OK);
  sqlite3_close(db);
  s = open_store(&o);
  assert_int_equal(accept1(f, s, "ue1", "f2", M5_PRIO_MIDDLE, "ue2", NULL), M5_STORE_DUPLICATE);
  assert_int_equal(accept1(f, s, "ue1", "f1", M5_PRIO_MIDDLE, "boom", NULL), M5_STORE_ACCEPTED);
  assert_int_equal(pending_of(f, s, "ue2"), 7);
  assert_int_equal(pending_of(f, s, "boom"), 1);
  m5_store_close(s);
}

/* ---- durability across kill -9 ---- */

#define CRASH_ACKS 200
#define CRASH_MAX 4000
#define CRASH_WINDOW 32

typedef struct {
  m5_store_t *s;
  int fd;
  int next;
  accept_t *a;
} child_t;

static void child_submit(child_t *c, accept_t *a, m5_mailbox_t *mb) {
  char id[16];
  snprintf(id, sizeof id, "k%d", c->next++);
  const char *to[] = {"ue2"};
  m5_store_job_t *j = mk_accept(a, "ue1", id, M5_PRIO_MIDDLE, to, 1);
  j->base.reply = mb;
  j->arg = mb;
  if (m5_store_submit(c->s, j) != 0) _exit(3);
}

static child_t child;

static void child_reply(void *msg, void *arg) {
  (void)arg;
  accept_t *a = msg;
  if (a->job.status != 0 || a->job.outcome != M5_STORE_ACCEPTED) _exit(4);
  char line[32];
  int n = snprintf(line, sizeof line, "%s\n", a->job.msg.msg_id);
  if (write(child.fd, line, (size_t)n) != n) _exit(5);
  if (child.next < CRASH_MAX) child_submit(&child, a, a->job.arg);
}

static void child_main(int fd) {
  m5_loop_t *loop = m5_loop_new();
  m5_mailbox_t *mb = m5_mailbox_new(loop, 256, child_reply, NULL);
  m5_store_opts_t o;
  m5_store_opts_init(&o);
  o.path = db_path;
  o.max_per_recipient = CRASH_MAX;
  o.max_per_recipient_per_originator = CRASH_MAX;
  char err[512];
  child.s = m5_store_open(&o, err, sizeof err);
  child.fd = fd;
  if (!loop || !mb || !child.s) _exit(2);
  accept_t *a = calloc(CRASH_WINDOW, sizeof *a);
  for (int i = 0; i < CRASH_WINDOW; i++)
    child_submit(&child, &a[i], mb);
  m5_loop_run(loop);
  _exit(6);
}

static void test_crash_durability(void **state) {
  fx_t *f = *state;
  int p[2];
  assert_int_equal(pipe(p), 0);
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    close(p[0]);
    child_main(p[1]);
  }
  close(p[1]);
  static unsigned char acked[CRASH_MAX];
  memset(acked, 0, sizeof acked);
  int n_acked = 0;
  char buf[4096];
  size_t have = 0;
  uint64_t t0 = tu_now_ms();
  while (n_acked < CRASH_ACKS && tu_now_ms() - t0 < 20000) {
    struct pollfd pfd = {.fd = p[0], .events = POLLIN};
    if (poll(&pfd, 1, 200) <= 0) continue;
    ssize_t r = read(p[0], buf + have, sizeof buf - 1 - have);
    if (r <= 0) break;
    have += (size_t)r;
    char *line = buf, *nl;
    while ((nl = memchr(line, '\n', have - (size_t)(line - buf)))) {
      *nl = '\0';
      int k = atoi(line + 1);
      if (k >= 0 && k < CRASH_MAX && !acked[k]) {
        acked[k] = 1;
        n_acked++;
      }
      line = nl + 1;
    }
    have -= (size_t)(line - buf);
    memmove(buf, line, have);
  }
  kill(pid, SIGKILL);
  int wst;
  assert_int_equal(waitpid(pid, &wst, 0), pid);
  assert_true(WIFSIGNALED(wst)); /* it was killed mid-stream, not finished */
  close(p[0]);
  assert_true(n_acked >= CRASH_ACKS);

  m5_store_opts_t o;
  m5_store_opts_init(&o);
  o.path = db_path;
  o.max_per_recipient = CRASH_MAX;
  o.max_per_recipient_per_originator = CRASH_MAX;
  m5_store_t *s = open_store(&o);
  static unsigned char seen[CRASH_MAX];
  memset(seen, 0, sizeof seen);
  /* Page through the queue by delivering what due returns. */
  for (;;) {
    m5_store_job_t j;
    due(f, s, "ue2", M5_STORE_LIST_MAX, &j);
    if (j.n_items == 0) break;
    for (size_t i = 0; i < j.n_items; i++) {
      int k = atoi(j.items[i].msg.msg_id + 1);
      assert_true(k >= 0 && k < CRASH_MAX);
      assert_int_equal(seen[k], 0); /* exactly once */
      seen[k] = 1;
      m5_store_job_t m;
      assert_int_equal(simple(f, s, M5_STORE_MARK_DELIVERED, j.items[i].id, &m), 0);
      m5_store_job_clear(&m);
    }
    m5_store_job_clear(&j);
  }
  int missing = 0;
  for (int k = 0; k < CRASH_MAX; k++)
    if (acked[k] && !seen[k]) missing++;
  assert_int_equal(missing, 0);
  /* and each acked msgId is still a duplicate after the restart */
  for (int k = 0; k < CRASH_MAX; k++) {
    if (!acked[k]) continue;
    char id[16];
    snprintf(id, sizeof id, "k%d", k);
    assert_int_equal(accept1(f, s, "ue1", id, M5_PRIO_MIDDLE, "ue2", NULL), M5_STORE_DUPLICATE);
  }
  m5_store_close(s);
}

/* ---- files that are not a healthy store ---- */

static void make_filled_store(fx_t *f) {
  m5_store_opts_t o;
  default_opts(&o);
  m5_store_t *s = open_store(&o);
  static char big[1024];
  memset(big, 'x', sizeof big);
  for (int i = 0; i < 300; i++) {
    accept_t a;
    char id[16];
    snprintf(id, sizeof id, "f%d", i);
    const char *to[] = {"ue2"};
    m5_store_job_t *j = mk_accept(&a, "ue1", id, M5_PRIO_MIDDLE, to, 1);
    j->msg.payload = (uint8_t *)big;
    j->msg.payload_len = sizeof big;
    assert_int_equal(run(f, s, j), 0);
  }
  m5_store_close(s);
}

static void expect_refused(const char *why) {
  m5_store_opts_t o;
  default_opts(&o);
  char err[512] = "";
  m5_store_t *s = m5_store_open(&o, err, sizeof err);
  if (s) {
    m5_store_close(s);
    fail_msg("%s: the store opened", why);
  }
  print_message("%s: %s\n", why, err);
  assert_non_null(strstr(err, db_path));
}

static off_t file_size(const char *path) {
  struct stat st;
  assert_int_equal(stat(path, &st), 0);
  return st.st_size;
}

static void test_corrupt_overwritten(void **state) {
  make_filled_store(*state);
  off_t size = file_size(db_path);
  assert_true(size > 64 * 1024);
  int fd = open(db_path, O_WRONLY);
  assert_true(fd >= 0);
  static unsigned char junk[8192];
  memset(junk, 0xa5, sizeof junk);
  assert_int_equal(pwrite(fd, junk, sizeof junk, size / 2), (ssize_t)sizeof junk);
  close(fd);
  expect_refused("overwritten");
}

static void test_corrupt_truncated(void **state) {
  make_filled_store(*state);
  off_t size = file_size(db_path);
  assert_int_equal(truncate(db_path, size / 2), 0);
  expect_refused("truncated");
  assert_int_equal(truncate(db_path, 0), 0);
  expect_refused("truncated to nothing");
  assert_int_equal(file_size(db_path), 0); /* and left as it was */
}

static long user_version(void) {
  sqlite3 *db = NULL;
  sqlite3_stmt *st = NULL;
  assert_int_equal(sqlite3_open(db_path, &db), SQLITE_OK);
  assert_int_equal(sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &st, NULL), SQLITE_OK);
  assert_int_equal(sqlite3_step(st), SQLITE_ROW);
  long v = (long)sqlite3_column_int64(st, 0);
  sqlite3_finalize(st);
  sqlite3_close(db);
  return v;
}

/* What 6 -> 7 did, undone: dedup_buckets back, with the counts it would hold. */
#define UNDO_7_TO_6                                                                                \
  "CREATE TABLE dedup_buckets (ori TEXT NOT NULL, bucket INTEGER NOT NULL, n INTEGER NOT NULL," \
  " PRIMARY KEY (ori, bucket)) WITHOUT ROWID;"                                                   \
  "CREATE INDEX dedup_buckets_age ON dedup_buckets (bucket);"                                    \
  "INSERT INTO dedup_buckets SELECT ori, bucket, count(*) FROM dedup GROUP BY ori, bucket;"      \
  "PRAGMA user_version = 6;"

/* A store written by schema `from` (1: the first, with the dedup index on (ori, bucket); 2:
 * without it) opens, is upgraded in place to 3 (both of its parts: messages.kind for the
 * reports and quotas, the binding generations and report tickets) and on to 7, and keeps its
 * messages and its dedup window. The file is made from a schema 7 store by undoing what 6 -> 7, 5 -> 6,
 * 4 -> 5, 3 -> 4, 2 -> 3 (and 1 -> 2) did, which leaves the tables as the older versions created them. */
static void schema_upgraded(fx_t *f, int from) {
  m5_store_opts_t o;
  default_opts(&o);
  m5_store_t *s = open_store(&o);
  uint64_t id;
  assert_int_equal(accept1(f, s, "ue1", "old1", M5_PRIO_MIDDLE, "ue2", &id), M5_STORE_ACCEPTED);
  m5_store_close(s);
  sqlite3 *db = NULL;
  assert_int_equal(sqlite3_open(db_path, &db), SQLITE_OK);
  assert_int_equal(sqlite3_exec(db, UNDO_7_TO_6, NULL, NULL, NULL), SQLITE_OK);
  assert_int_equal(sqlite3_exec(db,
                                "DROP INDEX messages_group; DROP INDEX messages_group_all;"
                                "ALTER TABLE messages DROP COLUMN group_gen;"
                                "DROP TABLE topic_subs;"
                                "DROP INDEX report_tickets_age; DROP TABLE report_tickets;"
                                "DROP TABLE binding_gens;"
                                "ALTER TABLE messages DROP COLUMN kind;"
                                "ALTER TABLE messages DROP COLUMN ori_gen;"
                                "ALTER TABLE deliveries DROP COLUMN rcpt_gen;"
                                "PRAGMA user_version = 2;",
                                NULL, NULL, NULL),
                   SQLITE_OK);
  if (from == 1)
    assert_int_equal(sqlite3_exec(db,
                                  "CREATE INDEX dedup_sender_bucket ON dedup (ori, bucket);"
                                  "PRAGMA user_version = 1;",
                                  NULL, NULL, NULL),
                     SQLITE_OK);
  sqlite3_close(db);
  assert_int_equal(user_version(), from);
  s = open_store(&o);
  assert_int_equal(accept1(f, s, "ue1", "old1", M5_PRIO_MIDDLE, "ue2", NULL), M5_STORE_DUPLICATE);
  m5_store_job_t j;
  due(f, s, "ue2", 10, &j);
  assert_int_equal(j.n_items, 1);
  assert_int_equal(j.items[0].id, id);
  assert_int_equal(j.items[0].rcpt_gen, 1); /* rows from before generations: generation 1 */
  assert_int_equal(j.items[0].msg.ori_gen, 1);
  m5_store_job_clear(&j);
  /* the old message is the sender's (messages.kind 0: the quota counts it) */
  m5_store_opts_t q = o;
  q.max_msgs_per_originator = 1;
  m5_store_close(s); /* the store holds its file exclusively while open */
  assert_int_equal(user_version(), 7);
  s = open_store(&q);
  /* (ue1's binding from before generations is generation 1 too, as the registry's is; the
   * quota use is per generation) */
  accept_t ga;
  assert_int_equal(run(f, s, mk_gen_accept(&ga, "UE", "ue1", 1, "old2", "ue2", 0, false)), 0);
  assert_int_equal(ga.job.outcome, M5_STORE_ORIGINATOR_QUOTA);
  /* binding_gens and rcpt_gen work: a re-bind of ue2 fails the old message (generation 1),
   * which frees ue1's quota */
  m5_store_job_t rb;
  memset(&rb, 0, sizeof rb);
  rb.op = M5_STORE_REBIND;
  addr(&rb.rcpt, "UE", "ue2");
  rb.gen = 2;
  assert_int_equal(run(f, s, &rb), 0);
  assert_int_equal(rb.rebind_failed, 1);
  assert_int_equal(pending_of(f, s, "ue2"), 0);
  assert_int_equal(run(f, s, mk_gen_accept(&ga, "UE", "ue1", 1, "old2", "ue2", 0, false)), 0);
  assert_int_equal(ga.job.outcome, M5_STORE_ACCEPTED);
  m5_store_close(s);
  assert_int_equal(sqlite3_open(db_path, &db), SQLITE_OK);
  sqlite3_stmt *st = NULL;
  assert_int_equal(sqlite3_prepare_v2(db,
                                      "SELECT count(*) FROM sqlite_schema"
                                      " WHERE name = 'dedup_sender_bucket'",
                                      -1, &st, NULL),
                   SQLITE_OK);
  assert_int_equal(sqlite3_step(st), SQLITE_ROW);
  assert_int_equal(sqlite3_column_int(st, 0), 0);
  sqlite3_finalize(st);
  sqlite3_close(db);
}

static void test_schema_1_upgraded(void **state) {
  schema_upgraded(*state, 1);
}

static void test_schema_2_upgraded(void **state) {
  schema_upgraded(*state, 2);
}

static long sql_count(const char *sql);

/* A schema 6 store (dedup_buckets holding the counts per originator and bucket) is upgraded
 * in place to 7 (the counts in memory, rebuilt from dedup at open) and keeps its whole dedup
 * window: its msgIds are still duplicates, and they still count in their originator's
 * dedup_max_per_sender, so the bound drops the oldest bucket as before the upgrade. */
static void test_schema_6_upgraded(void **state) {
  fx_t *f = *state;
  m5_store_opts_t o;
  default_opts(&o);
  o.dedup_window_ms = 10000;
  o.dedup_buckets = 10;
  o.dedup_max_per_sender = 4;
  set_now(1700000000000); /* a bucket boundary: 1 s buckets */
  m5_store_t *s = open_store(&o);
  const char *ids[] = {"a", "b", "c", "d"};
  for (size_t i = 0; i < 4; i++)
    assert_int_equal(accept1(f, s, "ue1", ids[i], M5_PRIO_MIDDLE, "ue2", NULL), M5_STORE_ACCEPTED);
  assert_int_equal(accept1(f, s, "ue7", "a", M5_PRIO_MIDDLE, "ue2", NULL), M5_STORE_ACCEPTED);
  m5_store_close(s);
  sqlite3 *db = NULL;
  assert_int_equal(sqlite3_open(db_path, &db), SQLITE_OK);
  assert_int_equal(sqlite3_exec(db, UNDO_7_TO_6, NULL, NULL, NULL), SQLITE_OK);
  sqlite3_close(db);
  assert_int_equal(user_version(), 6);
  assert_int_equal(sql_count("SELECT sum(n) FROM dedup_buckets"), 5);
  s = open_store(&o);
  assert_int_equal(accept1(f, s, "ue1", "d", M5_PRIO_MIDDLE, "ue2", NULL), M5_STORE_DUPLICATE);
  assert_int_equal(accept1(f, s, "ue7", "a", M5_PRIO_MIDDLE, "ue2", NULL), M5_STORE_DUPLICATE);
  set_now(fake_now + 1000);
  /* the fifth entry of ue1 pushes its oldest bucket (a-d, from before the upgrade) out */
  assert_int_equal(accept1(f, s, "ue1", "e", M5_PRIO_MIDDLE, "ue2", NULL), M5_STORE_ACCEPTED);
  assert_int_equal(accept1(f, s, "ue1", "a", M5_PRIO_MIDDLE, "ue2", NULL), M5_STORE_ACCEPTED);
  assert_int_equal(accept1(f, s, "ue7", "a", M5_PRIO_MIDDLE, "ue2", NULL), M5_STORE_DUPLICATE);
  m5_store_close(s);
  assert_int_equal(user_version(), 7);
  assert_int_equal(sql_count("SELECT count(*) FROM sqlite_schema WHERE name = 'dedup_buckets'"),
                   0);
  assert_int_equal(sql_count("SELECT count(*) FROM dedup WHERE ori = 'UE:ue1'"), 2); /* e, a */
}

/* ---- re-bound UE Service IDs (M5_STORE_REBIND, binding generations, report tickets) ---- */

static int rebind(fx_t *f, m5_store_t *s, const char *ue, uint64_t gen, uint64_t *failed) {
  m5_store_job_t j;
  memset(&j, 0, sizeof j);
  j.op = M5_STORE_REBIND;
  addr(&j.rcpt, "UE", ue);
  j.gen = gen;
  int rc = run(f, s, &j);
  if (failed) *failed = j.rebind_failed;
  return rc;
}

/* An accept from ori (type "UE" or "AS") at generation ori_gen to the UE `to` at to_gen. */
static m5_store_job_t *mk_gen_accept(accept_t *a, const char *ori_type, const char *ori,
                                     uint64_t ori_gen, const char *msg_id, const char *to,
                                     uint64_t to_gen, bool report_req) {
  const char *rc[] = {to};
  m5_store_job_t *j = mk_accept(a, ori, msg_id, M5_PRIO_MIDDLE, rc, 1);
  addr(&j->msg.ori, ori_type, ori);
  snprintf(j->dedup_ori, sizeof j->dedup_ori, "%s:%s", ori_type, ori);
  j->msg.ori_gen = ori_gen;
  j->msg.deliv_st_req = report_req;
  j->ticket_put = report_req; /* as m5s asks, for UE and AS senders alike */
  a->rcpts[0].gen = to_gen;
  return j;
}

/* A report (as ue_api.c stores an IMDN) from UE ori to the UE `to` about msg_id. */
static m5_store_job_t *mk_report(accept_t *a, const char *ori, const char *msg_id,
                                 const char *to) {
  const char *rc[] = {to};
  m5_store_job_t *j = mk_accept(a, ori, msg_id, M5_PRIO_MIDDLE, rc, 1);
  snprintf(j->msg.app_id, sizeof j->msg.app_id, "%s", M5_STORE_REPORT_APP);
  snprintf(j->dedup_id, sizeof j->dedup_id, "IMDN/%s/%s", msg_id, to);
  j->ticket_check = true;
  return j;
}

/* Re-binding ue2 fails its queue in one job, with a RECIPIENT_REBOUND report to each
 * originator that asked (a UE, for its own generation, and an AS), drops ue2's dedup window
 * and report tickets, refuses what the old ue2 still sends, and is a no-op when repeated
 * (after a reopen too: what m5s does at every start). */
static void test_rebind(void **state) {
  fx_t *f = *state;
  m5_store_opts_t o;
  default_opts(&o);
  m5_store_t *s = open_store(&o);
  uint64_t failed = 99;
  assert_int_equal(rebind(f, s, "ue1", 10, &failed), 0);
  assert_int_equal(failed, 0);
  assert_int_equal(rebind(f, s, "ue2", 20, NULL), 0);
  accept_t a;
  /* Queued for ue2 (generation 20): from ue1 with and without a report asked, from an AS. */
  assert_int_equal(run(f, s, mk_gen_accept(&a, "UE", "ue1", 10, "m1", "ue2", 20, true)), 0);
  assert_int_equal(a.rcpts[0].gen, 20);
  assert_int_equal(run(f, s, mk_gen_accept(&a, "UE", "ue1", 10, "m2", "ue2", 20, false)), 0);
  assert_int_equal(run(f, s, mk_gen_accept(&a, "AS", "as1", 0, "a3", "ue2", 20, true)), 0);
  /* What the old ue2 sent: m5 asked for a report (a ticket at generation 20). */
  assert_int_equal(run(f, s, mk_gen_accept(&a, "UE", "ue2", 20, "m5", "ue1", 10, true)), 0);
  assert_int_equal(run(f, s, mk_report(&a, "ue1", "m5", "ue2")), 0); /* before: forwarded */
  assert_false(a.job.discarded);
  assert_int_equal(a.rcpts[0].gen, 20);
  assert_int_equal(pending_of(f, s, "ue2"), 3); /* the report has the reports' own bound */

  assert_int_equal(rebind(f, s, "ue2", 30, &failed), 0);
  assert_int_equal(failed, 4); /* m1, m2, a3 and the report on m5 */
  assert_int_equal(pending_of(f, s, "ue2"), 0);
  m5_store_job_t j;
  due(f, s, "ue2", 10, &j);
  assert_int_equal(j.n_items, 0);
  m5_store_job_clear(&j);
  /* The originators that asked got their report, addressed to their own generation. */
  due(f, s, "ue1", 10, &j);
  size_t reports = 0;
  for (size_t i = 0; i < j.n_items; i++) {
    const m5_store_delivery_t *d = &j.items[i];
    if (strcmp(d->msg.app_id, M5_STORE_REPORT_APP) != 0) continue;
    reports++;
    assert_string_equal(d->msg.msg_id, "m1");
    assert_string_equal(d->msg.ori.addr, "ue2");
    assert_int_equal(d->rcpt_gen, 10);
    assert_int_equal(d->msg.payload_len, strlen("REPT_DELY_FAILED RECIPIENT_REBOUND"));
    assert_memory_equal(d->msg.payload, "REPT_DELY_FAILED RECIPIENT_REBOUND", d->msg.payload_len);
  }
  assert_int_equal(reports, 1); /* none for m2, which asked for none */
  m5_store_job_clear(&j);
  m5_store_job_t ja;
  memset(&ja, 0, sizeof ja);
  ja.op = M5_STORE_DUE;
  addr(&ja.rcpt, "AS", "as1");
  ja.limit = 10;
  assert_int_equal(run(f, s, &ja), 0);
  assert_int_equal(ja.n_items, 1);
  assert_string_equal(ja.items[0].msg.msg_id, "a3");
  assert_string_equal(ja.items[0].msg.app_id, M5_STORE_REPORT_APP);
  m5_store_job_clear(&ja);

  /* The old ue2 (generation 20) may not send any more; the new one starts without its
   * dedup window: m5 again is a new message, not a duplicate. */
  assert_int_equal(run(f, s, mk_gen_accept(&a, "UE", "ue2", 20, "m6", "ue1", 10, false)),
                   M5_EPERM);
  /* A report on what the old ue2 sent is dropped (its ticket and dedup window went); a
   * report nobody asked for too. */
  assert_int_equal(run(f, s, mk_report(&a, "ue3", "m5", "ue2")), 0);
  assert_true(a.job.discarded);
  assert_int_equal(a.rcpts[0].id, 0);
  assert_int_equal(run(f, s, mk_gen_accept(&a, "UE", "ue2", 30, "m5", "ue1", 10, false)), 0);
  assert_int_equal(a.job.outcome, M5_STORE_ACCEPTED);
  assert_int_equal(run(f, s, mk_report(&a, "ue1", "nobody-asked", "ue2")), 0);
  assert_true(a.job.discarded);
  /* Without a ticket, a report on a msgId the new ue2 sent lately (in its dedup window, but
   * asking for no report) is nobody's either. */
  assert_int_equal(run(f, s, mk_report(&a, "ue5", "m5", "ue2")), 0);
  assert_true(a.job.discarded);
  assert_int_equal(a.job.outcome, M5_STORE_ACCEPTED);
  assert_int_equal(a.rcpts[0].id, 0);
  assert_int_equal(pending_of(f, s, "ue2"), 0);
  /* A report on what the new ue2 sends reaches it. */
  assert_int_equal(run(f, s, mk_gen_accept(&a, "UE", "ue2", 30, "m7", "ue1", 10, true)), 0);
  assert_int_equal(run(f, s, mk_report(&a, "ue1", "m7", "ue2")), 0);
  assert_false(a.job.discarded);
  assert_int_equal(a.rcpts[0].gen, 30);
  /* A message resolved before the re-bind but stored after it is for the new ue2. */
  assert_int_equal(run(f, s, mk_gen_accept(&a, "UE", "ue1", 10, "m8", "ue2", 20, false)), 0);
  assert_int_equal(a.rcpts[0].gen, 30);
  /* A server-made report to the old generation of a re-bound ID is dropped. */
  const char *to1[] = {"ue2"};
  m5_store_job_t *rj = mk_accept(&a, "ue1", "m9", M5_PRIO_MIDDLE, to1, 1);
  snprintf(rj->msg.app_id, sizeof rj->msg.app_id, "%s", M5_STORE_REPORT_APP);
  rj->dedup_id[0] = '\0';
  a.rcpts[0].gen = 20;
  assert_int_equal(run(f, s, rj), 0);
  assert_true(rj->discarded);
  assert_int_equal(pending_of(f, s, "ue2"), 1); /* m8 (and the report on m7) */

  /* Repeats and older generations change nothing, also after a reopen. */
  assert_int_equal(rebind(f, s, "ue2", 30, &failed), 0);
  assert_int_equal(failed, 0);
  assert_int_equal(rebind(f, s, "ue2", 25, &failed), 0);
  assert_int_equal(failed, 0);
  m5_store_close(s);
  s = open_store(&o);
  assert_int_equal(rebind(f, s, "ue2", 30, &failed), 0);
  assert_int_equal(failed, 0);
  assert_int_equal(pending_of(f, s, "ue2"), 1);
  due(f, s, "ue2", 10, &j);
  assert_int_equal(j.n_items, 2); /* m8 and the report on m7 */
  m5_store_job_clear(&j);

  /* In flight at the re-bind (being pushed to the old session): not failed by it, but its
   * RESCHEDULE (the push failed) fails it as RECIPIENT_REBOUND instead of queueing it. */
  assert_int_equal(rebind(f, s, "ue4", 40, NULL), 0);
  m5_store_job_t *fj = mk_gen_accept(&a, "UE", "ue1", 10, "m10", "ue4", 40, true);
  a.rcpts[0].in_flight = true;
  assert_int_equal(run(f, s, fj), 0);
  uint64_t id = a.rcpts[0].id;
  assert_int_equal(rebind(f, s, "ue4", 50, &failed), 0);
  assert_int_equal(failed, 0);
  memset(&j, 0, sizeof j);
  j.op = M5_STORE_RESCHEDULE;
  j.id = id;
  j.next_attempt_ms = fake_now + 2000;
  j.attempts = 1;
  assert_int_equal(run(f, s, &j), 0);
  assert_int_equal(pending_of(f, s, "ue4"), 0);
  assert_int_equal(simple(f, s, M5_STORE_MARK_DELIVERED, id, &j), M5_ENOENT);
  due(f, s, "ue1", 100, &j);
  reports = 0;
  for (size_t i = 0; i < j.n_items; i++)
    if (!strcmp(j.items[i].msg.msg_id, "m10")) reports++;
  assert_int_equal(reports, 1);
  m5_store_job_clear(&j);
  m5_store_close(s);
}

/* The failure reports a re-bind writes are the store's one kind of failure report (as
 * MARK_FAILED's): kind 1, outside the originator's max_per_recipient count, bounded by
 * max_reports_per_recipient, queued for the generation that sent the message, and none for a
 * UE re-bound since it sent; the failed messages leave their originator's quota; an in-flight
 * delivery failed by its RESCHEDULE leaves the in-flight set. */
static void test_rebind_reports(void **state) {
  fx_t *f = *state;
  m5_store_opts_t o;
  default_opts(&o);
  o.max_reports_per_recipient = 2;
  o.max_msgs_per_originator = 3;
  m5_store_t *s = open_store(&o);
  assert_int_equal(rebind(f, s, "ue1", 10, NULL), 0);
  assert_int_equal(rebind(f, s, "ue2", 20, NULL), 0);
  assert_int_equal(rebind(f, s, "ue3", 30, NULL), 0);
  accept_t a;
  const char *ids[] = {"q1", "q2", "q3"};
  for (size_t i = 0; i < 3; i++) {
    assert_int_equal(run(f, s, mk_gen_accept(&a, "UE", "ue1", 10, ids[i], "ue2", 20, true)), 0);
    assert_int_equal(a.job.outcome, M5_STORE_ACCEPTED);
  }
  assert_int_equal(run(f, s, mk_gen_accept(&a, "UE", "ue1", 10, "q4", "ue3", 30, true)), 0);
  assert_int_equal(a.job.outcome, M5_STORE_ORIGINATOR_QUOTA);
  m5_store_stats_t st0, st;
  m5_store_stats(s, &st0);
  uint64_t failed = 0;
  assert_int_equal(rebind(f, s, "ue2", 21, &failed), 0);
  assert_int_equal(failed, 3);
  m5_store_stats(s, &st);
  assert_int_equal(st.failed - st0.failed, 3);
  assert_int_equal(st.reports - st0.reports, 2); /* ue1's report bound */
  assert_int_equal(st.reports_dropped - st0.reports_dropped, 1);
  assert_int_equal(pending_of(f, s, "ue1"), 0); /* not in max_per_recipient's count */
  m5_store_job_t j;
  due(f, s, "ue1", 10, &j);
  assert_int_equal(j.n_items, 2);
  for (size_t i = 0; i < j.n_items; i++) {
    const m5_store_delivery_t *d = &j.items[i];
    assert_string_equal(d->msg.app_id, M5_STORE_REPORT_APP);
    assert_string_equal(d->msg.ori.addr, "ue2");
    assert_int_equal(d->rcpt_gen, 10);
    assert_int_equal(d->msg.payload_len, strlen("REPT_DELY_FAILED RECIPIENT_REBOUND"));
    assert_memory_equal(d->msg.payload, "REPT_DELY_FAILED RECIPIENT_REBOUND", d->msg.payload_len);
  }
  m5_store_job_clear(&j);
  /* ue1's quota went with its failed messages */
  assert_int_equal(run(f, s, mk_gen_accept(&a, "UE", "ue1", 10, "q4", "ue3", 30, true)), 0);
  assert_int_equal(a.job.outcome, M5_STORE_ACCEPTED);
  uint64_t q4 = a.rcpts[0].id;

  /* ue1 re-bound: the reports queued for its old subscriber fail (and are not reported on),
   * and a failure of what the old subscriber sent writes no report for anybody */
  m5_store_stats(s, &st0);
  assert_int_equal(rebind(f, s, "ue1", 11, &failed), 0);
  assert_int_equal(failed, 2);
  m5_store_stats(s, &st);
  assert_int_equal(st.reports - st0.reports, 0);
  assert_int_equal(simple(f, s, M5_STORE_MARK_FAILED, q4, &j), 0);
  assert_int_equal(j.items[0].report_id, 0);
  m5_store_job_clear(&j);
  assert_int_equal(run(f, s, mk_gen_accept(&a, "UE", "ue1", 11, "q5", "ue3", 30, true)), 0);
  assert_int_equal(simple(f, s, M5_STORE_MARK_FAILED, a.rcpts[0].id, &j), 0);
  assert_true(j.items[0].report_id != 0);
  assert_int_equal(j.items[0].report_gen, 11);
  m5_store_delivery_t r;
  assert_int_equal(m5_store_report_of(&j.items[0], 0, &r), 0);
  assert_int_equal(r.rcpt_gen, 11); /* what delivery.c pushes at once */
  free(r.msg.payload);
  m5_store_job_clear(&j);

  /* In flight at ue3's re-bind: its RESCHEDULE fails it, with its report, and it leaves the
   * in-flight set (REQUEUE_STALE finds nothing) */
  m5_store_job_t *fj = mk_gen_accept(&a, "UE", "ue1", 11, "q6", "ue3", 30, true);
  a.rcpts[0].in_flight = true;
  assert_int_equal(run(f, s, fj), 0);
  uint64_t q6 = a.rcpts[0].id;
  assert_int_equal(rebind(f, s, "ue3", 31, &failed), 0);
  assert_int_equal(failed, 0);
  memset(&j, 0, sizeof j);
  j.op = M5_STORE_RESCHEDULE;
  j.id = q6;
  j.next_attempt_ms = fake_now + 2000;
  j.attempts = 1;
  assert_int_equal(run(f, s, &j), 0);
  memset(&j, 0, sizeof j);
  j.op = M5_STORE_REQUEUE_STALE;
  j.now_ms = fake_now + 86400 * 1000;
  assert_int_equal(run(f, s, &j), 0);
  assert_int_equal(j.pending, 0);
  due(f, s, "ue1", 10, &j);
  assert_int_equal(j.n_items, 2); /* the reports on q5 and q6 */
  for (size_t i = 0; i < j.n_items; i++) assert_int_equal(j.items[i].rcpt_gen, 11);
  m5_store_job_clear(&j);
  m5_store_close(s);
}

/* A job rolled back to its savepoint (a batch run again job by job) takes its changes to the
 * in-memory dedup counts with it. An accept from ue1 at a generation newer than the store's
 * catches the missed re-bind up, which drops ue1's dedup window (rows and counts), and then
 * fails (a trigger refuses its delivery): the rows come back with the rollback, so the counts
 * must too. ue1's two msgIds then still count in its dedup_max_per_sender (2): a third drops
 * their bucket, and "a" is new again. Were the counts left as the failed job made them (none),
 * "a" would stay a duplicate and ue1 would keep more entries than its bound. */
static void test_dedup_counts_after_failed_job(void **state) {
  fx_t *f = *state;
  m5_store_opts_t o;
  default_opts(&o);
  o.dedup_max_per_sender = 2;
  m5_store_t *s = open_store(&o);
  assert_int_equal(rebind(f, s, "ue1", 1, NULL), 0);
  assert_int_equal(accept1(f, s, "ue1", "a", M5_PRIO_MIDDLE, "ue2", NULL), M5_STORE_ACCEPTED);
  assert_int_equal(accept1(f, s, "ue1", "b", M5_PRIO_MIDDLE, "ue2", NULL), M5_STORE_ACCEPTED);
  m5_store_close(s);
  sqlite3 *db;
  assert_int_equal(sqlite3_open(db_path, &db), SQLITE_OK);
  assert_int_equal(sqlite3_exec(db,
                                "CREATE TRIGGER boom BEFORE INSERT ON deliveries"
                                " WHEN NEW.rcpt_addr = 'boom' BEGIN SELECT RAISE(ABORT, 'boom'); END;",
                                NULL, NULL, NULL),
                   SQLITE_OK);
  sqlite3_close(db);
  s = open_store(&o);
  /* one batch: an accept of ue9 (which reads the dedup counts), then the failing one */
  accept_t z, y;
  const char *to[] = {"ue2"};
  m5_store_job_t *zj = mk_accept(&z, "ue9", "z", M5_PRIO_MIDDLE, to, 1);
  m5_store_job_t *yj = mk_gen_accept(&y, "UE", "ue1", 2, "c", "boom", 0, false);
  zj->base.reply = yj->base.reply = f->replies;
  f->done = 0;
  f->want = 2;
  assert_int_equal(m5_store_submit(s, zj), 0);
  assert_int_equal(m5_store_submit(s, yj), 0);
  uint64_t t = tu_now_ms();
  while (f->done < 2 && tu_now_ms() - t < 20000)
    assert_int_equal(m5_loop_run(f->loop), 0);
  assert_int_equal(f->done, 2);
  assert_int_equal(zj->status, 0);
  assert_int_equal(zj->outcome, M5_STORE_ACCEPTED);
  assert_int_equal(yj->status, M5_EIO);
  assert_int_equal(accept1(f, s, "ue1", "b", M5_PRIO_MIDDLE, "ue2", NULL), M5_STORE_DUPLICATE);
  assert_int_equal(accept1(f, s, "ue1", "c", M5_PRIO_MIDDLE, "ue2", NULL), M5_STORE_ACCEPTED);
  assert_int_equal(accept1(f, s, "ue1", "a", M5_PRIO_MIDDLE, "ue2", NULL), M5_STORE_ACCEPTED);
  m5_store_close(s);
}

/* A REBIND that fails half-way (its second report cannot be written) is rolled back whole,
 * and the in-memory figures it had changed (queue counts, the originator's quota, the
 * generation) are rebuilt: the queue is as before, the quota still full, and the re-bind, once
 * it can be written, fails both deliveries. */
static void test_rebind_rollback(void **state) {
  fx_t *f = *state;
  m5_store_opts_t o;
  default_opts(&o);
  o.max_msgs_per_originator = 2;
  m5_store_t *s = open_store(&o);
  m5_store_close(s);
  sqlite3 *db;
  assert_int_equal(sqlite3_open(db_path, &db), SQLITE_OK);
  assert_int_equal(sqlite3_exec(db,
                                "CREATE TRIGGER boom BEFORE INSERT ON messages"
                                " WHEN NEW.kind = 1 AND NEW.msg_id = 'r2'"
                                " BEGIN SELECT RAISE(ABORT, 'boom'); END;",
                                NULL, NULL, NULL),
                   SQLITE_OK);
  sqlite3_close(db);
  s = open_store(&o);
  assert_int_equal(rebind(f, s, "ue1", 10, NULL), 0);
  assert_int_equal(rebind(f, s, "ue2", 20, NULL), 0);
  accept_t a;
  assert_int_equal(run(f, s, mk_gen_accept(&a, "UE", "ue1", 10, "r1", "ue2", 20, true)), 0);
  assert_int_equal(run(f, s, mk_gen_accept(&a, "UE", "ue1", 10, "r2", "ue2", 20, true)), 0);
  assert_int_equal(a.job.outcome, M5_STORE_ACCEPTED);
  m5_store_stats_t st0, st;
  m5_store_stats(s, &st0);
  assert_int_equal(rebind(f, s, "ue2", 21, NULL), M5_EIO);
  m5_store_stats(s, &st);
  assert_int_equal(st.queued, st0.queued);
  assert_int_equal(st.messages, st0.messages);
  assert_int_equal(st.failed, st0.failed);
  assert_int_equal(st.reports, st0.reports);
  assert_int_equal(pending_of(f, s, "ue2"), 2);
  m5_store_job_t j;
  due(f, s, "ue1", 10, &j);
  assert_int_equal(j.n_items, 0); /* r1's report went with the rollback */
  m5_store_job_clear(&j);
  assert_int_equal(run(f, s, mk_gen_accept(&a, "UE", "ue1", 10, "r3", "ue3", 0, false)), 0);
  assert_int_equal(a.job.outcome, M5_STORE_ORIGINATOR_QUOTA);
  /* the generation was rolled back too: a repeat is not taken for done */
  m5_store_close(s);
  assert_int_equal(sqlite3_open(db_path, &db), SQLITE_OK);
  assert_int_equal(sqlite3_exec(db, "DROP TRIGGER boom;", NULL, NULL, NULL), SQLITE_OK);
  sqlite3_close(db);
  s = open_store(&o);
  uint64_t failed = 0;
  assert_int_equal(rebind(f, s, "ue2", 21, &failed), 0);
  assert_int_equal(failed, 2);
  assert_int_equal(pending_of(f, s, "ue2"), 0);
  assert_int_equal(run(f, s, mk_gen_accept(&a, "UE", "ue1", 10, "r3", "ue3", 0, false)), 0);
  assert_int_equal(a.job.outcome, M5_STORE_ACCEPTED);
  m5_store_close(s);
}

/* The store holds its file exclusively: a second store on the same file (another m5s) is
 * refused at open with an error that says so, and the first one goes on. */
/* ---- Messaging Topic subscriptions (M5_STORE_TOPIC_*) ---- */

static m5_msg_name_t topic_names[M5_STORE_TOPICS_MAX];

static int topic_job(fx_t *f, m5_store_t *s, m5_store_op_t op, const char *type, const char *who,
                     uint64_t gen, const char *topics, int64_t expiry, m5_store_job_t *j) {
  memset(j, 0, sizeof *j);
  j->op = op;
  addr(&j->rcpt, type, who);
  j->gen = gen;
  size_t n = 0;
  char buf[512];
  snprintf(buf, sizeof buf, "%s", topics);
  for (char *save = NULL, *t = strtok_r(buf, " ", &save); t; t = strtok_r(NULL, " ", &save))
    snprintf(topic_names[n++], sizeof topic_names[0], "%s", t);
  j->topics = topic_names;
  j->n_topics = n;
  j->topic_expiry = expiry;
  return run(f, s, j);
}

static m5_store_outcome_t sub(fx_t *f, m5_store_t *s, const char *ue, uint64_t gen,
                              const char *topics, int64_t expiry) {
  m5_store_job_t j;
  assert_int_equal(topic_job(f, s, M5_STORE_TOPIC_SUB, "UE", ue, gen, topics, expiry, &j), 0);
  return j.outcome;
}

/* The subscribers of topic, "UE:a@gen UE:b@gen ..." in the store's order. */
static const char *subscribers(fx_t *f, m5_store_t *s, const char *topic) {
  static char out[1024];
  m5_store_job_t j;
  assert_int_equal(topic_job(f, s, M5_STORE_TOPIC_SUBSCRIBERS, "UE", "x", 0, topic, 0, &j), 0);
  out[0] = '\0';
  for (size_t i = 0; i < j.n_subs; i++) {
    size_t l = strlen(out);
    snprintf(out + l, sizeof out - l, "%s%s:%s@%llu", i ? " " : "", j.subs[i].addr.type,
             j.subs[i].addr.addr, (unsigned long long)j.subs[i].gen);
  }
  m5_store_job_clear(&j);
  assert_null(j.subs);
  return out;
}

/* Subscribe, renew, unsubscribe; the bounds per subscriber and per topic (all or nothing);
 * expiry; a reopen keeps them; a re-bind drops the old generation's only, in its job; a
 * subscription from a generation older than the store's is refused. */
static void test_topics(void **state) {
  fx_t *f = *state;
  m5_store_opts_t o;
  default_opts(&o);
  m5_store_t *s = open_store(&o);
  int64_t now_s = fake_now / 1000;
  assert_int_equal(rebind(f, s, "ue1", 5, NULL), 0);
  assert_int_equal(sub(f, s, "ue1", 5, "t.a t.b", now_s + 100), M5_STORE_ACCEPTED);
  assert_int_equal(sub(f, s, "ue2", 1, "t.a", now_s + 100), M5_STORE_ACCEPTED);
  m5_store_job_t j;
  assert_int_equal(topic_job(f, s, M5_STORE_TOPIC_SUB, "AS", "as1", 0, "t.a", now_s + 100, &j), 0);
  assert_string_equal(subscribers(f, s, "t.a"), "AS:as1@0 UE:ue1@5 UE:ue2@1"); /* same ms */
  assert_string_equal(subscribers(f, s, "t.b"), "UE:ue1@5");
  assert_string_equal(subscribers(f, s, "t.c"), "");
  /* renewing is no new subscription; the bound counts unexpired subscriptions of ue1 */
  assert_int_equal(sub(f, s, "ue1", 5, "t.a", now_s + 200), M5_STORE_ACCEPTED);
  assert_int_equal(topic_job(f, s, M5_STORE_TOPIC_SUB, "UE", "ue1", 5, "t.c t.d", now_s + 100, &j),
                   0);
  assert_int_equal(j.outcome, M5_STORE_ACCEPTED);
  memset(&j, 0, sizeof j);
  j.op = M5_STORE_TOPIC_SUB;
  addr(&j.rcpt, "UE", "ue1");
  snprintf(topic_names[0], sizeof topic_names[0], "t.e");
  j.topics = topic_names;
  j.n_topics = 1;
  j.topic_expiry = now_s + 100;
  j.max_subs = 4;
  assert_int_equal(run(f, s, &j), 0);
  assert_int_equal(j.outcome, M5_STORE_SUBS_FULL);
  /* the topic bound: t.a has 3; t.b then t.a for ue3, refused as a whole at index 1 */
  memset(&j, 0, sizeof j);
  j.op = M5_STORE_TOPIC_SUB;
  addr(&j.rcpt, "UE", "ue3");
  snprintf(topic_names[0], sizeof topic_names[0], "t.b");
  snprintf(topic_names[1], sizeof topic_names[1], "t.a");
  j.topics = topic_names;
  j.n_topics = 2;
  j.topic_expiry = now_s + 100;
  j.max_subscribers = 3;
  assert_int_equal(run(f, s, &j), 0);
  assert_int_equal(j.outcome, M5_STORE_TOPIC_FULL);
  assert_int_equal(j.topic_index, 1);
  assert_string_equal(subscribers(f, s, "t.b"), "UE:ue1@5");
  /* unsubscribe (one not subscribed is no error) */
  assert_int_equal(topic_job(f, s, M5_STORE_TOPIC_UNSUB, "AS", "as1", 0, "t.a t.zz", 0, &j), 0);
  assert_string_equal(subscribers(f, s, "t.a"), "UE:ue1@5 UE:ue2@1");
  /* expiry: ue2's ends at +100, ue1's renewed one at +200 */
  set_now(fake_now + 150 * 1000);
  assert_string_equal(subscribers(f, s, "t.a"), "UE:ue1@5");
  /* a reopen keeps them */
  m5_store_close(s);
  s = open_store(&o);
  assert_string_equal(subscribers(f, s, "t.a"), "UE:ue1@5");
  /* ue1 re-bound to generation 6: what it made under 5 goes; the new subscriber's stays */
  now_s = fake_now / 1000;
  assert_int_equal(sub(f, s, "ue4", 7, "t.a", now_s + 100), M5_STORE_ACCEPTED);
  assert_int_equal(rebind(f, s, "ue4", 7, NULL), 0); /* already under 7: kept */
  assert_int_equal(rebind(f, s, "ue1", 6, NULL), 0);
  assert_string_equal(subscribers(f, s, "t.a"), "UE:ue4@7");
  assert_string_equal(subscribers(f, s, "t.b"), "");
  /* the old ue1 (generation 5) can subscribe no more; the new one can */
  assert_int_equal(topic_job(f, s, M5_STORE_TOPIC_SUB, "UE", "ue1", 5, "t.a", now_s + 100, &j),
                   M5_EPERM);
  assert_int_equal(sub(f, s, "ue1", 6, "t.a", now_s + 100), M5_STORE_ACCEPTED);
  assert_string_equal(subscribers(f, s, "t.a"), "UE:ue1@6 UE:ue4@7");
  /* every subscription of a subscriber at once (an AS client removed) */
  assert_int_equal(topic_job(f, s, M5_STORE_TOPIC_SUB, "AS", "as2", 0, "t.x t.y", now_s + 9, &j),
                   0);
  assert_string_equal(subscribers(f, s, "t.y"), "AS:as2@0");
  assert_int_equal(topic_job(f, s, M5_STORE_TOPIC_UNSUB, "AS", "as2", 0, "", 0, &j), 0);
  assert_string_equal(subscribers(f, s, "t.x"), "");
  assert_string_equal(subscribers(f, s, "t.y"), "");
  assert_string_equal(subscribers(f, s, "t.a"), "UE:ue1@6 UE:ue4@7");
  /* bad jobs */
  assert_int_equal(topic_job(f, s, M5_STORE_TOPIC_SUB, "UE", "ue1", 6, "t.a", 0, &j), M5_EINVAL);
  assert_int_equal(topic_job(f, s, M5_STORE_TOPIC_SUB, "GROUP", "g", 0, "t.a", now_s + 9, &j),
                   M5_EINVAL);
  m5_store_close(s);
}

/* A schema 3 store (before topics) is upgraded in place to 6, keeping its messages. */
static void test_schema_3_upgraded(void **state) {
  fx_t *f = *state;
  m5_store_opts_t o;
  default_opts(&o);
  m5_store_t *s = open_store(&o);
  uint64_t id;
  assert_int_equal(accept1(f, s, "ue1", "old1", M5_PRIO_MIDDLE, "ue2", &id), M5_STORE_ACCEPTED);
  m5_store_close(s);
  sqlite3 *db = NULL;
  assert_int_equal(sqlite3_open(db_path, &db), SQLITE_OK);
  assert_int_equal(sqlite3_exec(db, UNDO_7_TO_6, NULL, NULL, NULL), SQLITE_OK);
  assert_int_equal(
      sqlite3_exec(db,
                   "DROP TABLE report_tickets;" /* schema 3's, below */
                   "CREATE TABLE report_tickets (ori TEXT NOT NULL, msg_id TEXT NOT NULL,"
                   " gen INTEGER NOT NULL, until_ms INTEGER NOT NULL,"
                   " PRIMARY KEY (ori, msg_id)) WITHOUT ROWID;"
                   "CREATE INDEX report_tickets_age ON report_tickets (until_ms);"
                   "DROP INDEX messages_group; DROP INDEX messages_group_all;"
                   "ALTER TABLE messages DROP COLUMN group_gen;"
                   "DROP TABLE topic_subs; PRAGMA user_version = 3;",
                   NULL, NULL, NULL),
      SQLITE_OK);
  sqlite3_close(db);
  assert_int_equal(user_version(), 3);
  s = open_store(&o);
  m5_store_job_t j;
  due(f, s, "ue2", 10, &j);
  assert_int_equal(j.n_items, 1);
  assert_int_equal(j.items[0].id, id);
  m5_store_job_clear(&j);
  assert_int_equal(sub(f, s, "ue2", 1, "t.a", fake_now / 1000 + 60), M5_STORE_ACCEPTED);
  assert_string_equal(subscribers(f, s, "t.a"), "UE:ue2@1");
  m5_store_close(s);
  assert_int_equal(user_version(), 7);
}

/* The quota use and the queue share of a UE originator belong to its binding generation: the
 * subscriber a UE Service ID is re-bound to is not refused ORIGINATOR_QUOTA for what the
 * previous one stored, and the previous one's messages still queued stay charged to it (also
 * after a reopen, which rebuilds the use from the tables). */
static void test_quota_per_generation(void **state) {
  fx_t *f = *state;
  m5_store_opts_t o;
  default_opts(&o);
  o.max_msgs_per_originator = 2;
  o.max_per_recipient = 4; /* a share of 2 */
  m5_store_t *s = open_store(&o);
  assert_int_equal(rebind(f, s, "ue1", 10, NULL), 0);
  assert_int_equal(rebind(f, s, "ue2", 20, NULL), 0);
  accept_t a;
  uint64_t old1;
  assert_int_equal(run(f, s, mk_gen_accept(&a, "UE", "ue1", 10, "o-1", "ue2", 20, false)), 0);
  assert_int_equal(a.job.outcome, M5_STORE_ACCEPTED);
  old1 = a.rcpts[0].id;
  assert_int_equal(run(f, s, mk_gen_accept(&a, "UE", "ue1", 10, "o-2", "ue2", 20, false)), 0);
  assert_int_equal(a.job.outcome, M5_STORE_ACCEPTED);
  assert_int_equal(run(f, s, mk_gen_accept(&a, "UE", "ue1", 10, "o-3", "ue3", 0, false)), 0);
  assert_int_equal(a.job.outcome, M5_STORE_ORIGINATOR_QUOTA);
  /* ue1 re-bound: the new subscriber has its own quota and its own share of ue2's queue */
  assert_int_equal(rebind(f, s, "ue1", 30, NULL), 0);
  assert_int_equal(run(f, s, mk_gen_accept(&a, "UE", "ue1", 30, "n-1", "ue2", 20, false)), 0);
  assert_int_equal(a.job.outcome, M5_STORE_ACCEPTED);
  assert_int_equal(run(f, s, mk_gen_accept(&a, "UE", "ue1", 30, "n-2", "ue2", 20, false)), 0);
  assert_int_equal(a.job.outcome, M5_STORE_ACCEPTED);
  assert_int_equal(run(f, s, mk_gen_accept(&a, "UE", "ue1", 30, "n-3", "ue3", 0, false)), 0);
  assert_int_equal(a.job.outcome, M5_STORE_ORIGINATOR_QUOTA);
  assert_int_equal(pending_of(f, s, "ue2"), 4);
  m5_store_close(s);
  s = open_store(&o);
  /* the old subscriber's message leaving frees nothing of the new one's quota */
  m5_store_job_t k;
  assert_int_equal(simple(f, s, M5_STORE_MARK_DELIVERED, old1, &k), 0);
  m5_store_job_clear(&k);
  assert_int_equal(run(f, s, mk_gen_accept(&a, "UE", "ue1", 30, "n-3", "ue3", 0, false)), 0);
  assert_int_equal(a.job.outcome, M5_STORE_ORIGINATOR_QUOTA);
  m5_store_close(s);
}

/* A REBIND that never reached the store (it failed, or m5s could not queue it) is caught up
 * by the first job that brings the newer generation, in that job's transaction: from the new
 * subscriber as a sender (its reused msgId is not a duplicate of the old one's, the old queue
 * is failed with its reports, the old tickets go) and as a recipient. The REBIND arriving later
 * changes nothing. */
static void test_rebind_caught_up(void **state) {
  fx_t *f = *state;
  m5_store_opts_t o;
  default_opts(&o);
  m5_store_t *s = open_store(&o);
  assert_int_equal(rebind(f, s, "ue1", 10, NULL), 0);
  assert_int_equal(rebind(f, s, "ue2", 20, NULL), 0);
  assert_int_equal(rebind(f, s, "ue3", 40, NULL), 0);
  accept_t a;
  assert_int_equal(run(f, s, mk_gen_accept(&a, "UE", "ue2", 20, "dup-1", "ue1", 10, true)), 0);
  assert_int_equal(run(f, s, mk_gen_accept(&a, "UE", "ue1", 10, "q-1", "ue2", 20, true)), 0);
  assert_int_equal(run(f, s, mk_gen_accept(&a, "UE", "ue1", 10, "x-1", "ue3", 40, true)), 0);
  assert_int_equal(pending_of(f, s, "ue2"), 1);
  /* ue2 re-bound to generation 30, but the store was not told: the new ue2 sends dup-1 */
  assert_int_equal(run(f, s, mk_gen_accept(&a, "UE", "ue2", 30, "dup-1", "ue1", 10, false)), 0);
  assert_int_equal(a.job.outcome, M5_STORE_ACCEPTED);
  assert_int_equal(pending_of(f, s, "ue2"), 0); /* q-1 failed (RECIPIENT_REBOUND) */
  assert_int_equal(run(f, s, mk_gen_accept(&a, "UE", "ue2", 20, "late", "ue1", 10, false)),
                   M5_EPERM); /* the old ue2 may not send any more */
  /* ue3 re-bound to 50 unknown to the store: a message for the new ue3 catches it up */
  assert_int_equal(run(f, s, mk_gen_accept(&a, "UE", "ue1", 10, "x-2", "ue3", 50, false)), 0);
  assert_int_equal(a.job.outcome, M5_STORE_ACCEPTED);
  m5_store_job_t j;
  due(f, s, "ue3", 10, &j);
  assert_int_equal(j.n_items, 1);
  assert_string_equal(j.items[0].msg.msg_id, "x-2");
  assert_int_equal(j.items[0].rcpt_gen, 50);
  m5_store_job_clear(&j);
  /* ue1 asked for reports on q-1 and x-1: both failed RECIPIENT_REBOUND */
  due(f, s, "ue1", 100, &j);
  size_t reports = 0;
  for (size_t i = 0; i < j.n_items; i++) {
    const m5_store_msg_t *m = &j.items[i].msg;
    if (strcmp(m->app_id, M5_STORE_REPORT_APP) != 0 || !strcmp(m->msg_id, "dup-1")) continue;
    reports++;
    assert_memory_equal(m->payload, "REPT_DELY_FAILED RECIPIENT_REBOUND", m->payload_len);
  }
  assert_int_equal(reports, 2);
  m5_store_job_clear(&j);
  uint64_t failed = 99;
  assert_int_equal(rebind(f, s, "ue2", 30, &failed), 0); /* the late REBIND: a no-op */
  assert_int_equal(failed, 0);
  assert_int_equal(rebind(f, s, "ue3", 50, &failed), 0);
  assert_int_equal(failed, 0);
  m5_store_close(s);
}

/* One number from the closed store's file (the store holds it exclusively while open). */
static long sql_count(const char *sql) {
  sqlite3 *db = NULL;
  sqlite3_stmt *st = NULL;
  assert_int_equal(sqlite3_open(db_path, &db), SQLITE_OK);
  assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
  assert_int_equal(sqlite3_step(st), SQLITE_ROW);
  long v = (long)sqlite3_column_int64(st, 0);
  sqlite3_finalize(st);
  sqlite3_close(db);
  return v;
}

/* Report tickets are bounded per originating UE (max_tickets_per_originator, counted across
 * reopens), a ticket goes when the report it admits is stored, and expired ones free their
 * place: further MSGs asking for a report do not grow the table. A MSG beyond the bound is
 * still accepted, and a report on it is dropped (no dedup-window fallback: see
 * test_store_tickets.c for the reporter and the AS side). */
static void test_ticket_cap(void **state) {
  fx_t *f = *state;
  m5_store_opts_t o;
  default_opts(&o);
  o.max_tickets_per_originator = 3;
  o.report_window_ms = 60000;
  m5_store_t *s = open_store(&o);
  assert_int_equal(rebind(f, s, "ue1", 10, NULL), 0);
  assert_int_equal(rebind(f, s, "ue2", 20, NULL), 0);
  accept_t a;
  char id[16];
  for (int i = 1; i <= 5; i++) {
    snprintf(id, sizeof id, "t-%d", i);
    assert_int_equal(run(f, s, mk_gen_accept(&a, "UE", "ue1", 10, id, "ue2", 20, true)), 0);
    assert_int_equal(a.job.outcome, M5_STORE_ACCEPTED);
  }
  assert_int_equal(run(f, s, mk_report(&a, "ue2", "t-1", "ue1")), 0);
  assert_false(a.job.discarded);
  assert_int_equal(a.rcpts[0].gen, 10);
  m5_store_close(s);
  assert_int_equal(sql_count("SELECT count(*) FROM report_tickets WHERE ori = 'UE:ue1'"), 2);
  assert_int_equal(sql_count("SELECT count(*) FROM report_tickets WHERE msg_id IN"
                             " ('t-1', 't-4', 't-5')"),
                   0);
  s = open_store(&o); /* the count is read back: one place is free */
  assert_int_equal(run(f, s, mk_gen_accept(&a, "UE", "ue1", 10, "t-6", "ue2", 20, true)), 0);
  assert_int_equal(run(f, s, mk_gen_accept(&a, "UE", "ue1", 10, "t-7", "ue2", 20, true)), 0);
  assert_int_equal(a.job.outcome, M5_STORE_ACCEPTED);
  /* without a ticket, the report on t-5 is dropped, although t-5 is in ue1's dedup window */
  assert_int_equal(run(f, s, mk_report(&a, "ue2", "t-5", "ue1")), 0);
  assert_true(a.job.discarded);
  assert_int_equal(a.rcpts[0].id, 0);
  m5_store_close(s);
  assert_int_equal(sql_count("SELECT count(*) FROM report_tickets WHERE ori = 'UE:ue1'"), 3);
  assert_int_equal(sql_count("SELECT count(*) FROM report_tickets WHERE msg_id = 't-7'"), 0);
  /* once expired (and swept at the start of a batch) they make room again */
  s = open_store(&o);
  set_now(fake_now + 61000);
  (void)pending_of(f, s, "ue1");
  assert_int_equal(run(f, s, mk_gen_accept(&a, "UE", "ue1", 10, "t-8", "ue2", 20, true)), 0);
  m5_store_close(s);
  assert_int_equal(sql_count("SELECT count(*) FROM report_tickets WHERE ori = 'UE:ue1'"), 1);
  assert_int_equal(sql_count("SELECT count(*) FROM report_tickets WHERE msg_id = 't-8'"), 1);
}

static void test_second_open_refused(void **state) {
  fx_t *f = *state;
  m5_store_opts_t o;
  default_opts(&o);
  m5_store_t *s = open_store(&o);
  assert_int_equal(accept1(f, s, "ue1", "x1", M5_PRIO_MIDDLE, "ue2", NULL), M5_STORE_ACCEPTED);
  char err[512];
  m5_store_t *again = m5_store_open(&o, err, sizeof err);
  assert_null(again);
  print_message("second open: %s\n", err);
  assert_non_null(strstr(err, "in use by another process"));
  assert_int_equal(accept1(f, s, "ue1", "x2", M5_PRIO_MIDDLE, "ue2", NULL), M5_STORE_ACCEPTED);
  m5_store_close(s);
}

static void test_not_a_store(void **state) {
  (void)state;
  char parent[320];
  snprintf(parent, sizeof parent, "%s/var", dir);
  mkdir(parent, 0700);
  FILE *fp = fopen(db_path, "w");
  assert_non_null(fp);
  for (int i = 0; i < 100; i++)
    fputs("this is not an SQLite database at all\n", fp);
  fclose(fp);
  off_t size = file_size(db_path);
  expect_refused("text file");
  assert_int_equal(file_size(db_path), size);

  /* an SQLite file of something else */
  unlink(db_path);
  sqlite3 *db = NULL;
  assert_int_equal(sqlite3_open(db_path, &db), SQLITE_OK);
  assert_int_equal(
      sqlite3_exec(db, "CREATE TABLE t (x); INSERT INTO t VALUES (1);", NULL, NULL, NULL),
      SQLITE_OK);
  sqlite3_close(db);
  expect_refused("foreign SQLite database");
}

/* ---- JetStream only: two m5s nodes on one NATS (issue 13, docs/store.md "JetStream") ---- */

static m5_store_t *open_node(const char *node) {
  m5_store_opts_t o;
  default_opts(&o);
  o.js.node = node;
  return open_store(&o);
}

static size_t due_any_n(fx_t *f, m5_store_t *s, uint64_t *first_id) {
  m5_store_job_t k = {.op = M5_STORE_DUE_ANY, .now_ms = fake_now + 3600 * 1000, .limit = 10};
  assert_int_equal(run(f, s, &k), 0);
  size_t n = k.n_items;
  if (n && first_id) *first_id = k.items[0].id;
  m5_store_job_clear(&k);
  return n;
}

static uint64_t counts_of(fx_t *f, m5_store_t *s, const char *to) {
  return pending_of(f, s, to);
}

/* Polls (the other node's consumer brings it) until COUNTS of `to` on s is want; 20 s bound. */
static void wait_counts(fx_t *f, m5_store_t *s, const char *to, uint64_t want) {
  for (int i = 0; i < 2000; i++) {
    if (counts_of(f, s, to) == want) return;
    usleep(10000);
  }
  fail_msg("COUNTS of %s never reached %llu", to, (unsigned long long)want);
}

static uint64_t accept_for_node(fx_t *f, m5_store_t *s, const char *msg_id, m5_msg_prio_t prio,
                                const char *to, const char *node) {
  accept_t a;
  const char *rc[] = {to};
  m5_store_job_t *j = mk_accept(&a, "ue1", msg_id, prio, rc, 1);
  snprintf(a.rcpts[0].node, sizeof a.rcpts[0].node, "%s", node);
  assert_int_equal(run(f, s, j), 0);
  assert_int_equal(j->outcome, M5_STORE_ACCEPTED);
  assert_true(a.rcpts[0].id != 0);
  return a.rcpts[0].id;
}

/* A delivery accepted on node a for a recipient held by node b is due on b (its consumer
 * brings it), not on a; DUE(rcpt) on a moves b's queued deliveries of rcpt to a, in priority
 * then arrival order; b's conclusion of a moved delivery is M5_ENOENT (the delete is the
 * linearisation point), and only the new owner concludes it. */
/* DUE_ANY with hand_out (delivery.c's back-off batches) on JetStream: what it hands out is in
 * flight, so the next DUE_ANY right behind it finds the rest, not the same items again, and
 * `more` says a batch was full with more due; REQUEUE_STALE gives back what was never
 * concluded. Without hand_out DUE_ANY only reads (the tests above poll it). */
static void test_js_due_any_hand_out(void **state) {
  fx_t *f = *state;
  m5_store_t *a = open_node("a");
  accept_for_node(f, a, "h1", M5_PRIO_MIDDLE, "ue7", "");
  accept_for_node(f, a, "h2", M5_PRIO_MIDDLE, "ue7", "");
  accept_for_node(f, a, "h3", M5_PRIO_MIDDLE, "ue7", "");
  int64_t later = fake_now + 3600 * 1000;
  m5_store_job_t k = {.op = M5_STORE_DUE_ANY, .now_ms = later, .limit = 2, .hand_out = true};
  assert_int_equal(run(f, a, &k), 0);
  assert_int_equal(k.n_items, 2);
  assert_true(k.more);
  m5_store_job_clear(&k);
  k = (m5_store_job_t){.op = M5_STORE_DUE_ANY, .now_ms = later, .limit = 2, .hand_out = true};
  assert_int_equal(run(f, a, &k), 0);
  assert_int_equal(k.n_items, 1); /* the third, not the first two again */
  assert_false(k.more);
  m5_store_job_clear(&k);
  assert_int_equal(due_any_n(f, a, NULL), 0); /* all three in flight */
  k = (m5_store_job_t){.op = M5_STORE_REQUEUE_STALE, .now_ms = later + 1};
  assert_int_equal(run(f, a, &k), 0);
  assert_int_equal(k.pending, 3);
  m5_store_job_clear(&k);
  assert_int_equal(due_any_n(f, a, NULL), 3);
  assert_int_equal(due_any_n(f, a, NULL), 3); /* read only without hand_out */
  m5_store_close(a);
}

static void test_js_two_nodes(void **state) {
  fx_t *f = *state;
  m5_store_t *a = open_node("a"), *b = open_node("b");
  m5_store_stats_t st;
  m5_store_stats(a, &st);
  assert_int_equal(st.jetstream, 1);
  assert_int_equal(st.js_connected, 1);
  uint64_t id = accept_for_node(f, a, "x1", M5_PRIO_MIDDLE, "ue9", "b");
  wait_counts(f, b, "ue9", 1);
  assert_int_equal(counts_of(f, a, "ue9"), 0);
  uint64_t got = 0;
  assert_int_equal(due_any_n(f, a, NULL), 0);
  assert_int_equal(due_any_n(f, b, &got), 1);
  assert_int_equal(got, id);

  /* three for ue8, queued on b; the UE comes to a: DUE on a moves them, HIGH first */
  uint64_t low = accept_for_node(f, a, "m-low", M5_PRIO_LOW, "ue8", "b");
  uint64_t high = accept_for_node(f, b, "m-high", M5_PRIO_HIGH, "ue8", "");
  uint64_t mid = accept_for_node(f, a, "m-mid", M5_PRIO_MIDDLE, "ue8", "b");
  wait_counts(f, b, "ue8", 3);
  m5_store_job_t d;
  due(f, a, "ue8", 10, &d);
  assert_int_equal(d.n_items, 3);
  assert_string_equal(d.items[0].msg.msg_id, "m-high");
  assert_string_equal(d.items[1].msg.msg_id, "m-mid");
  assert_string_equal(d.items[2].msg.msg_id, "m-low");
  assert_memory_equal(d.items[0].msg.payload, "body of m-high", d.items[0].msg.payload_len);
  uint64_t new_ids[3];
  for (int i = 0; i < 3; i++) {
    new_ids[i] = d.items[i].id;
    assert_true(new_ids[i] != low && new_ids[i] != high && new_ids[i] != mid);
  }
  m5_store_job_clear(&d);
  assert_int_equal(counts_of(f, a, "ue8"), 3);
  /* the old owner: its conclusion finds the delivery gone */
  m5_store_job_t k;
  assert_int_equal(simple(f, b, M5_STORE_MARK_DELIVERED, high, &k), M5_ENOENT);
  m5_store_job_clear(&k);
  assert_int_equal(simple(f, b, M5_STORE_MARK_FAILED, mid, &k), M5_ENOENT);
  m5_store_job_clear(&k);
  assert_int_equal(due_any_n(f, b, &got), 1); /* x1 only: low left b's index on reading */
  assert_int_equal(got, id);
  assert_int_equal(counts_of(f, b, "ue8"), 0);
  /* the new owner concludes them */
  for (int i = 0; i < 3; i++) {
    assert_int_equal(simple(f, a, M5_STORE_MARK_DELIVERED, new_ids[i], &k), 0);
    m5_store_job_clear(&k);
  }
  assert_int_equal(counts_of(f, a, "ue8"), 0);
  /* a second DUE on a finds nothing left to move */
  due(f, a, "ue8", 10, &d);
  assert_int_equal(d.n_items, 0);
  m5_store_job_clear(&d);
  /* b restarts: its index is rebuilt from its subjects (x1 only) */
  m5_store_close(b);
  b = open_node("b");
  assert_int_equal(due_any_n(f, b, &got), 1);
  assert_int_equal(got, id);
  m5_store_close(b);
  m5_store_close(a);
}

/* Waits until node s lists want as topic's subscribers (its copy of P_topics is filled by
 * its own watcher: another node's write arrives a moment later). */
static void wait_subscribers(fx_t *f, m5_store_t *s, const char *topic, const char *want) {
  const char *got = "";
  for (int i = 0; i < 2000; i++) {
    if (!strcmp(got = subscribers(f, s, topic), want)) return;
    usleep(10000);
  }
  fail_msg("subscribers of %s: \"%s\", want \"%s\"", topic, got, want);
}

/* Topic subscriptions are the cluster's (KV bucket P_topics): one made on node a is among
 * node b's subscribers and counts against b's bounds; an unsubscription on b is seen on a; a
 * REBIND on b drops the old generation's subscriptions made on a, and a's TOPIC_SUB of that
 * generation is then refused (M5_EPERM); b's copy is rebuilt at reopen. */
static void test_js_topics_two_nodes(void **state) {
  fx_t *f = *state;
  m5_store_t *a = open_node("a"), *b = open_node("b");
  int64_t now_s = fake_now / 1000;
  assert_int_equal(sub(f, a, "ue1", 1, "t.x t.y", now_s + 100), M5_STORE_ACCEPTED);
  wait_subscribers(f, b, "t.x", "UE:ue1@1");
  m5_store_job_t j;
  assert_int_equal(topic_job(f, b, M5_STORE_TOPIC_SUB, "AS", "as1", 0, "t.x", now_s + 100, &j), 0);
  assert_int_equal(j.outcome, M5_STORE_ACCEPTED);
  wait_subscribers(f, a, "t.x", "AS:as1@0 UE:ue1@1"); /* the same ms: by address */
  /* b's bounds count a's subscriptions: t.x has 2, ue1 has 2 */
  memset(&j, 0, sizeof j);
  j.op = M5_STORE_TOPIC_SUB;
  addr(&j.rcpt, "UE", "ue2");
  snprintf(topic_names[0], sizeof topic_names[0], "t.x");
  j.topics = topic_names;
  j.n_topics = 1;
  j.topic_expiry = now_s + 100;
  j.max_subscribers = 2;
  assert_int_equal(run(f, b, &j), 0);
  assert_int_equal(j.outcome, M5_STORE_TOPIC_FULL);
  memset(&j, 0, sizeof j);
  j.op = M5_STORE_TOPIC_SUB;
  addr(&j.rcpt, "UE", "ue1");
  snprintf(topic_names[0], sizeof topic_names[0], "t.z");
  j.topics = topic_names;
  j.n_topics = 1;
  j.topic_expiry = now_s + 100;
  j.max_subs = 2;
  assert_int_equal(run(f, b, &j), 0);
  assert_int_equal(j.outcome, M5_STORE_SUBS_FULL);
  /* a renewal on b of a's subscription (compare-and-set on a's revision) */
  assert_int_equal(sub(f, b, "ue1", 1, "t.x", now_s + 300), M5_STORE_ACCEPTED);
  /* an unsubscription on b is seen on a */
  assert_int_equal(topic_job(f, b, M5_STORE_TOPIC_UNSUB, "UE", "ue1", 0, "t.x", 0, &j), 0);
  assert_string_equal(subscribers(f, b, "t.x"), "AS:as1@0"); /* b's own write: at once */
  wait_subscribers(f, a, "t.x", "AS:as1@0");
  assert_string_equal(subscribers(f, a, "t.y"), "UE:ue1@1");
  /* ue1 re-bound on b: what it made under generation 1 on a goes, everywhere */
  assert_int_equal(rebind(f, b, "ue1", 2, NULL), 0);
  assert_string_equal(subscribers(f, b, "t.y"), "");
  wait_subscribers(f, a, "t.y", "");
  assert_int_equal(topic_job(f, a, M5_STORE_TOPIC_SUB, "UE", "ue1", 1, "t.y", now_s + 100, &j),
                   M5_EPERM);
  assert_int_equal(sub(f, a, "ue1", 2, "t.y", now_s + 100), M5_STORE_ACCEPTED);
  /* every subscription of an AS at once, from the other node */
  assert_int_equal(topic_job(f, a, M5_STORE_TOPIC_UNSUB, "AS", "as1", 0, "", 0, &j), 0);
  assert_string_equal(subscribers(f, a, "t.x"), "");
  wait_subscribers(f, b, "t.x", "");
  /* b restarts: its copy is the bucket's */
  m5_store_close(b);
  b = open_node("b");
  assert_string_equal(subscribers(f, b, "t.y"), "UE:ue1@2");
  /* expired: listed nowhere, and swept (deleted from the bucket) by the first node to look */
  set_now(fake_now + 200 * 1000);
  assert_string_equal(subscribers(f, b, "t.y"), "");
  set_now(fake_now - 200 * 1000);
  wait_subscribers(f, a, "t.y", ""); /* gone from a's copy too: b deleted it */
  m5_store_close(b);
  m5_store_close(a);
}

static const char *drop_ue3(void *arg, const m5_msg_addr_t *dest, const m5_msg_addr_t *rcpt,
                            uint64_t group_gen) {
  (void)arg;
  assert_string_equal(dest->addr, "g1");
  assert_int_equal(group_gen, 5);
  return strcmp(rcpt->addr, "ue3") ? NULL : "NOT_A_MEMBER";
}

/* The partial REBIND and GROUP_SWEEP of the JetStream backend: REBIND on node a fails the
 * recipient's deliveries of an older generation queued on node b (moved first), with the
 * report asked for, and leaves the current generation's; b's conclusion is then M5_ENOENT. A
 * sweep fails the group deliveries group_check names a cause for, and only those. */
static void test_js_rebind_sweep(void **state) {
  fx_t *f = *state;
  m5_store_t *a = open_node("a"), *b = open_node("b");
  accept_t x;
  const char *to[] = {"ue2"};
  m5_store_job_t *j = mk_accept(&x, "ue1", "old", M5_PRIO_MIDDLE, to, 1);
  x.rcpts[0].gen = 1;
  j->msg.deliv_st_req = true;
  assert_int_equal(run(f, b, j), 0);
  uint64_t old = x.rcpts[0].id;
  m5_store_job_t k = {.op = M5_STORE_REBIND, .gen = 2};
  addr(&k.rcpt, "UE", "ue2");
  assert_int_equal(run(f, a, &k), 0);
  assert_int_equal(k.rebind_failed, 1);
  /* (accepted before the REBIND, a generation 2 would have caught it up on b itself) */
  j = mk_accept(&x, "ue1", "new", M5_PRIO_MIDDLE, to, 1);
  x.rcpts[0].gen = 2;
  assert_int_equal(run(f, b, j), 0);
  /* nothing moved: "new" stays queued where it was, for the node of the UE's session */
  assert_int_equal(counts_of(f, a, "ue2"), 0);
  m5_store_job_t m;
  assert_int_equal(simple(f, b, M5_STORE_MARK_DELIVERED, old, &m), M5_ENOENT);
  m5_store_job_clear(&m);
  assert_int_equal(counts_of(f, b, "ue2"), 1);
  due(f, b, "ue2", 10, &m);
  assert_int_equal(m.n_items, 1);
  assert_string_equal(m.items[0].msg.msg_id, "new");
  m5_store_job_clear(&m);
  expect_report(f, a, "UE", "ue1", "ue2", "old", "REPT_DELY_FAILED " M5_STORE_CAUSE_REBOUND);
  k = (m5_store_job_t){.op = M5_STORE_REBIND, .gen = 2};
  addr(&k.rcpt, "UE", "ue2");
  assert_int_equal(run(f, a, &k), 0);
  assert_int_equal(k.rebind_failed, 0); /* repeated: nothing older left */

  /* an AS may be pushed to from any node: DUE for it on a leaves b's deliveries on b */
  m5_store_job_t *ja = mk_accept(&x, "ue1", "to-as", M5_PRIO_MIDDLE, to, 1);
  addr(&x.rcpts[0].addr, "AS", "as1");
  addr(&ja->msg.dest, "AS", "as1");
  assert_int_equal(run(f, b, ja), 0);
  assert_int_equal(ja->outcome, M5_STORE_ACCEPTED);
  memset(&m, 0, sizeof m);
  m.op = M5_STORE_DUE;
  addr(&m.rcpt, "AS", "as1");
  m.limit = 10;
  assert_int_equal(run(f, a, &m), 0);
  assert_int_equal(m.n_items, 0);
  m5_store_job_clear(&m);
  memset(&m, 0, sizeof m);
  m.op = M5_STORE_DUE;
  addr(&m.rcpt, "AS", "as1");
  m.limit = 10;
  assert_int_equal(run(f, b, &m), 0);
  assert_int_equal(m.n_items, 1);
  m5_store_job_clear(&m);

  const char *grp[] = {"ue3", "ue4"};
  j = mk_accept(&x, "ue1", "grp", M5_PRIO_MIDDLE, grp, 2);
  addr(&j->msg.dest, "GROUP", "g1");
  j->msg.group_gen = 5;
  assert_int_equal(run(f, a, j), 0);
  k = (m5_store_job_t){.op = M5_STORE_GROUP_SWEEP, .group_check = drop_ue3};
  addr(&k.msg.dest, "GROUP", "g1");
  assert_int_equal(run(f, a, &k), 0);
  assert_int_equal(k.group_failed, 1);
  assert_false(k.more);
  assert_int_equal(counts_of(f, a, "ue3"), 0);
  assert_int_equal(counts_of(f, a, "ue4"), 1);
  m5_store_close(b);
  m5_store_close(a);
}

/* Per-originator quotas are cluster-wide (issue 13 decision 4): an originator at its bound
 * through node a is refused ORIGINATOR_QUOTA on node b once a's counts are published (within
 * about a second: what b accepts before is the overshoot, logged, each probe delivered at
 * once so that it leaves the count); a's delivery frees its place on b too. Report tickets
 * likewise: beyond max_tickets_per_originator through a, a message through b gets none, and
 * the report on it is discarded. */
static void test_js_quota_two_nodes(void **state) {
  fx_t *f = *state;
  m5_store_opts_t o;
  default_opts(&o);
  o.max_msgs_per_originator = 3;
  o.max_tickets_per_originator = 2;
  o.js.node = "a";
  m5_store_t *a = open_store(&o);
  o.js.node = "b";
  m5_store_t *b = open_store(&o);
  uint64_t first = 0, id;
  for (int i = 0; i < 3; i++) {
    char mid[16];
    snprintf(mid, sizeof mid, "qa-%d", i);
    assert_int_equal(accept1(f, a, "ue1", mid, M5_PRIO_MIDDLE, "ue2", &id), M5_STORE_ACCEPTED);
    if (!first) first = id;
  }
  assert_int_equal(accept1(f, a, "ue1", "qa-3", M5_PRIO_MIDDLE, "ue2", NULL),
                   M5_STORE_ORIGINATOR_QUOTA);
  /* as1: one message to two recipients asking for reports, through a: two tickets (the bound) */
  accept_t x;
  const char *two[] = {"ue5", "ue6"};
  m5_store_job_t *j = mk_accept(&x, "as1", "ta-1", M5_PRIO_MIDDLE, two, 2);
  addr(&j->msg.ori, "AS", "as1");
  snprintf(j->dedup_ori, sizeof j->dedup_ori, "AS:as1");
  j->msg.deliv_st_req = j->ticket_put = true;
  assert_int_equal(run(f, a, j), 0);
  assert_int_equal(j->outcome, M5_STORE_ACCEPTED);
  /* b learns a's counts: until then its accepts pass the bound (the overshoot) */
  uint64_t t0 = tu_now_ms();
  int overshoot = 0;
  m5_store_outcome_t out = M5_STORE_ACCEPTED;
  for (int i = 0; tu_now_ms() - t0 < 30000; i++) {
    char mid[16];
    snprintf(mid, sizeof mid, "qb-%d", i);
    out = accept1(f, b, "ue1", mid, M5_PRIO_MIDDLE, "ue3", &id);
    if (out != M5_STORE_ACCEPTED) break;
    overshoot++;
    m5_store_job_t k;
    assert_int_equal(simple(f, b, M5_STORE_MARK_DELIVERED, id, &k), 0);
    m5_store_job_clear(&k);
    usleep(20000);
  }
  print_message("node b refused ue1 after %llu ms; accepted before: %d (the overshoot)\n",
                (unsigned long long)(tu_now_ms() - t0), overshoot);
  assert_int_equal(out, M5_STORE_ORIGINATOR_QUOTA);
  /* as1's tickets through b: none once a's count is known; the report on it is discarded */
  t0 = tu_now_ms();
  int tk_overshoot = 0;
  bool discarded = false;
  for (int i = 0; !discarded && tu_now_ms() - t0 < 30000; i++) {
    char mid[16];
    snprintf(mid, sizeof mid, "tb-%d", i);
    const char *one[] = {"ue7"};
    j = mk_accept(&x, "as1", mid, M5_PRIO_MIDDLE, one, 1);
    addr(&j->msg.ori, "AS", "as1");
    snprintf(j->dedup_ori, sizeof j->dedup_ori, "AS:as1");
    j->msg.deliv_st_req = j->ticket_put = true;
    assert_int_equal(run(f, b, j), 0);
    assert_int_equal(j->outcome, M5_STORE_ACCEPTED);
    uint64_t mid_id = x.rcpts[0].id;
    m5_store_job_t k;
    assert_int_equal(simple(f, b, M5_STORE_MARK_DELIVERED, mid_id, &k), 0);
    m5_store_job_clear(&k);
    j = mk_report(&x, "ue7", mid, "as1");
    addr(&x.rcpts[0].addr, "AS", "as1");
    assert_int_equal(run(f, b, j), 0);
    discarded = j->discarded;
    if (!discarded) {
      tk_overshoot++;
      assert_int_equal(simple(f, b, M5_STORE_MARK_DELIVERED, x.rcpts[0].id, &k), 0);
      m5_store_job_clear(&k);
      usleep(20000);
    }
  }
  print_message("node b gave as1 no ticket after %llu ms; tickets before: %d (the overshoot)\n",
                (unsigned long long)(tu_now_ms() - t0), tk_overshoot);
  assert_true(discarded);
  /* a's delivery frees a place, on b too (refused probes store nothing) */
  m5_store_job_t k;
  assert_int_equal(simple(f, a, M5_STORE_MARK_DELIVERED, first, &k), 0);
  m5_store_job_clear(&k);
  t0 = tu_now_ms();
  for (int i = 0; tu_now_ms() - t0 < 30000; i++) {
    out = accept1(f, b, "ue1", "qb-free", M5_PRIO_MIDDLE, "ue3", NULL);
    if (out == M5_STORE_ACCEPTED) break;
    usleep(20000);
  }
  assert_int_equal(out, M5_STORE_ACCEPTED);
  assert_int_equal(accept1(f, b, "ue1", "qb-more", M5_PRIO_MIDDLE, "ue3", NULL),
                   M5_STORE_ORIGINATOR_QUOTA);
  m5_store_close(b);
  m5_store_close(a);
}

static void on_ack_none(void *arg, const m5_js_ack_t *ack) {
  (void)arg;
  (void)ack;
}

/* store.js max_bytes bounds the NATS disk whatever the payloads: deliveries of 4 KiB fill a
 * 16 KiB bound within a few accepts, which are then refused STORE_FULL and store nothing;
 * nothing accepted is lost (the stream holds every accepted delivery: a stream's own MaxBytes
 * would have discarded the oldest on nats-server 2.9). */
static void test_js_max_bytes(void **state) {
  fx_t *f = *state;
  m5_store_opts_t o;
  default_opts(&o);
  o.js.max_bytes = 16384;
  m5_store_t *s = open_store(&o);
  static char big[4096];
  memset(big, 'x', sizeof big);
  int accepted = 0, refused = 0;
  for (int i = 0; i < 20 && !refused; i++) {
    accept_t a;
    char id[16], to[16];
    snprintf(id, sizeof id, "big%d", i);
    snprintf(to, sizeof to, "ue%d", 100 + i);
    const char *rc[] = {to};
    m5_store_job_t *j = mk_accept(&a, "ue1", id, M5_PRIO_MIDDLE, rc, 1);
    j->msg.payload = (uint8_t *)big;
    j->msg.payload_len = sizeof big;
    assert_int_equal(run(f, s, j), 0);
    if (j->outcome == M5_STORE_ACCEPTED)
      accepted++;
    else if (j->outcome == M5_STORE_STORE_FULL)
      refused++;
    else
      fail_msg("outcome %d", (int)j->outcome);
  }
  print_message("4 KiB deliveries accepted before STORE_FULL: %d\n", accepted);
  assert_int_equal(refused, 1);
  assert_true(accepted >= 1 && accepted < 4);
  m5_js_client_t *c = NULL;
  char err[256], name[96];
  m5_js_client_opts_t co = {.servers = &js_url, .n_servers = 1, .on_ack = on_ack_none};
  assert_int_equal(m5_js_client_open(&c, &co, err, sizeof err), 0);
  uint64_t n = 0;
  snprintf(name, sizeof name, "%s_Q", js_prefix);
  assert_int_equal(m5_js_stream_msgs(c, name, &n, err, sizeof err), 0);
  assert_int_equal(n, (uint64_t)accepted);
  m5_js_client_close(c);
  /* the refused one's retry is tried afresh (refused again), the accepted ones' are duplicates */
  assert_int_equal(accept1(f, s, "ue1", "big0", M5_PRIO_MIDDLE, "ue100", NULL), M5_STORE_DUPLICATE);
  m5_store_close(s);
}

/* Report tickets on JetStream (KV P_tickets): a recipient's report on a message that asked for
 * one is stored once, on the ticket naming it as the reporter (given to the originator's
 * generation); a second report of that reporter, and one of a reporter that was not a
 * recipient, are discarded (only their dedup entry written, the same outcome); a report
 * refused for a full report queue gives its ticket back. */
static void test_js_tickets(void **state) {
  fx_t *f = *state;
  m5_store_opts_t o;
  default_opts(&o);
  o.max_reports_per_recipient = 1;
  m5_store_t *s = open_store(&o);
  accept_t a;
  assert_int_equal(run(f, s, mk_gen_accept(&a, "UE", "ue1", 3, "m1", "ue2", 1, true)), 0);
  assert_int_equal(a.job.outcome, M5_STORE_ACCEPTED);
  assert_int_equal(run(f, s, mk_gen_accept(&a, "UE", "ue1", 3, "m2", "ue2", 1, true)), 0);
  m5_store_job_t *j = mk_report(&a, "ue2", "m1", "ue1");
  j->msg.ori_gen = 1;
  assert_int_equal(run(f, s, j), 0);
  assert_int_equal(j->outcome, M5_STORE_ACCEPTED);
  assert_false(j->discarded);
  assert_true(a.rcpts[0].id != 0);
  assert_int_equal(a.rcpts[0].gen, 3); /* the generation that sent m1 */
  /* ue1's one report slot is taken: ue2's report on m2 is refused and keeps its ticket */
  j = mk_report(&a, "ue2", "m2", "ue1");
  assert_int_equal(run(f, s, j), 0);
  assert_int_equal(j->outcome, M5_STORE_QUEUE_FULL);
  m5_store_job_t d;
  due(f, s, "ue1", 10, &d);
  assert_int_equal(d.n_items, 1);
  uint64_t rep = d.items[0].id;
  m5_store_job_clear(&d);
  assert_int_equal(simple(f, s, M5_STORE_MARK_DELIVERED, rep, &d), 0);
  m5_store_job_clear(&d);
  j = mk_report(&a, "ue2", "m2", "ue1");
  assert_int_equal(run(f, s, j), 0);
  assert_int_equal(j->outcome, M5_STORE_ACCEPTED);
  assert_false(j->discarded);
  /* used up: the same reporter again (another IMDN id) is discarded */
  j = mk_report(&a, "ue2", "m1", "ue1");
  snprintf(j->dedup_id, sizeof j->dedup_id, "again");
  assert_int_equal(run(f, s, j), 0);
  assert_int_equal(j->outcome, M5_STORE_ACCEPTED);
  assert_true(j->discarded);
  assert_int_equal(a.rcpts[0].id, 0);
  /* ue3 was not a recipient of m1 */
  j = mk_report(&a, "ue3", "m1", "ue1");
  assert_int_equal(run(f, s, j), 0);
  assert_true(j->discarded);
  /* a discarded report is still remembered: its retransmission is a duplicate */
  j = mk_report(&a, "ue3", "m1", "ue1");
  assert_int_equal(run(f, s, j), 0);
  assert_int_equal(j->outcome, M5_STORE_DUPLICATE);
  assert_int_equal(pending_of(f, s, "ue1"), 0); /* messages only: the reports are apart */
  m5_store_close(s);
}

#ifdef M5_TEST_HOOKS
/* The JetStream store's test hook (store.h): when `point` is reached on store `on`, runs `job`
 * on store `other` (on the hook's thread, with a loop of its own) and returns `abandon`. */
static struct {
  const char *point;
  m5_store_t *on, *other;
  m5_store_job_t *job;
  int abandon, fired, job_rc;
} hk;

static int run_elsewhere(m5_store_t *s, m5_store_job_t *job) {
  fx_t g = {.loop = m5_loop_new(), .want = 1};
  if (!g.loop) return M5_ENOMEM;
  m5_mailbox_t *mb = m5_mailbox_new(g.loop, 16, on_reply, &g);
  int rc = mb ? M5_OK : M5_ENOMEM;
  job->base.reply = mb;
  if (!rc) rc = m5_store_submit(s, job);
  if (!rc) rc = m5_loop_run(g.loop);
  m5_mailbox_free(mb, NULL);
  m5_loop_free(g.loop);
  return rc;
}

static int js_hook(const char *point, m5_store_t *store, m5_store_job_t *job) {
  (void)job;
  if (hk.fired || store != hk.on || strcmp(point, hk.point)) return 0;
  hk.fired = 1;
  if (hk.job) hk.job_rc = run_elsewhere(hk.other, hk.job);
  return hk.abandon;
}

static void hook_at(const char *point, m5_store_t *on, m5_store_t *other, m5_store_job_t *job,
                    int abandon) {
  hk = (__typeof__(hk)){point, on, other, job, abandon, 0, 0};
  m5_store_js_test_hook = js_hook;
}

/* An accept of (UE:ue1, msg_id) for `to`, a UE held by node a. */
static m5_store_job_t *mk_for_a(accept_t *x, const char *msg_id, const char *to) {
  const char *rc[] = {to};
  m5_store_job_t *j = mk_accept(x, "ue1", msg_id, M5_PRIO_MIDDLE, rc, 1);
  snprintf(x->rcpts[0].node, sizeof x->rcpts[0].node, "a");
  return j;
}

/* The dedup claim (docs/store.md "The JetStream backend"): a retransmission accepted on node b
 * while node a's accept of the same msgId waits for its PubAcks (both publish with the same
 * Msg-Ids) answers M5_EAGAIN ("come back"), and a's accept stays: the message is queued once,
 * and b's retry then answers DUPLICATE. The claim of an accept that died is taken over once
 * stale: the taker adopts what the dead one stored (one copy); a claim of the accepting node
 * itself at once. A refused accept removes its claim: a retry is tried afresh. */
static void test_js_claim(void **state) {
  fx_t *f = *state;
  m5_store_opts_t o;
  default_opts(&o);
  o.js.node = "a";
  o.max_per_recipient = 1;
  m5_store_t *a = open_store(&o);
  o.js.node = "b";
  m5_store_t *b = open_store(&o);
  accept_t xa, xb;
  m5_store_job_t *ja = mk_for_a(&xa, "M", "ue6"), *jb = mk_for_a(&xb, "M", "ue6");
  hook_at("accept-published", a, b, jb, 0);
  assert_int_equal(run(f, a, ja), 0);
  m5_store_js_test_hook = NULL;
  assert_int_equal(hk.fired, 1);
  assert_int_equal(hk.job_rc, 0);
  assert_int_equal(ja->outcome, M5_STORE_ACCEPTED);
  assert_int_equal(jb->status, M5_EAGAIN); /* a's accept was at work */
  uint64_t id = xa.rcpts[0].id;
  m5_store_job_t d;
  due(f, a, "ue6", 10, &d);
  assert_int_equal(d.n_items, 1); /* stored, once */
  assert_int_equal(d.items[0].id, id);
  m5_store_job_clear(&d);
  jb = mk_for_a(&xb, "M", "ue6");
  assert_int_equal(run(f, b, jb), 0);
  assert_int_equal(jb->outcome, M5_STORE_DUPLICATE);

  /* a dies between its publishes and its final ack: the claim blocks the key until stale */
  ja = mk_for_a(&xa, "C", "ue7");
  hook_at("accept-published", a, NULL, NULL, 1);
  assert_int_equal(run(f, a, ja), M5_EIO);
  m5_store_js_test_hook = NULL;
  jb = mk_for_a(&xb, "C", "ue7");
  assert_int_equal(run(f, b, jb), M5_EAGAIN);
  set_now(fake_now + 2 * o.js.timeout_ms + 10000 + 1);
  jb = mk_for_a(&xb, "C", "ue7");
  assert_int_equal(run(f, b, jb), 0);
  assert_int_equal(jb->outcome, M5_STORE_ACCEPTED);
  due(f, a, "ue7", 10, &d);
  assert_int_equal(d.n_items, 1); /* the dead accept's delivery, adopted: no second copy */
  assert_int_equal(d.items[0].id, xb.rcpts[0].id);
  m5_store_job_clear(&d);
  jb = mk_for_a(&xb, "C", "ue7");
  assert_int_equal(run(f, a, jb), 0);
  assert_int_equal(jb->outcome, M5_STORE_DUPLICATE);

  /* an accept of a left its claim behind (abandoned between its publishes and its final ack,
   * as when NATS went away): the claim names a, so a's own retry takes it over at once, long
   * before it is stale, and adopts the delivery (one copy); b would still wait */
  ja = mk_for_a(&xa, "O", "ue8");
  hook_at("accept-published", a, NULL, NULL, 1);
  assert_int_equal(run(f, a, ja), M5_EIO);
  m5_store_js_test_hook = NULL;
  jb = mk_for_a(&xb, "O", "ue8");
  assert_int_equal(run(f, b, jb), M5_EAGAIN);
  ja = mk_for_a(&xa, "O", "ue8");
  assert_int_equal(run(f, a, ja), 0);
  assert_int_equal(ja->outcome, M5_STORE_ACCEPTED);
  due(f, a, "ue8", 10, &d);
  assert_int_equal(d.n_items, 1);
  assert_int_equal(d.items[0].id, xa.rcpts[0].id);
  m5_store_job_clear(&d);

  /* refused (ue6's queue is full): the claim goes, the retry is tried afresh */
  for (int i = 0; i < 2; i++) {
    ja = mk_for_a(&xa, "Q", "ue6");
    assert_int_equal(run(f, i ? b : a, ja), 0);
    assert_int_equal(ja->outcome, M5_STORE_QUEUE_FULL);
  }
  assert_int_equal(simple(f, a, M5_STORE_MARK_DELIVERED, id, &d), 0);
  m5_store_job_clear(&d);
  ja = mk_for_a(&xa, "Q", "ue6");
  assert_int_equal(run(f, b, ja), 0);
  assert_int_equal(ja->outcome, M5_STORE_ACCEPTED);
  wait_counts(f, a, "ue6", 1);
  m5_store_close(b);
  m5_store_close(a);
}

/* Two nodes move the same delivery at once (a UE's REG on one, a DUE on the other): node b has
 * read c's delivery when node a moves it; b's copy is its own (Msg-Id with b's name) and goes
 * when b finds the old one gone; a's copy, the only one, stays. */
static void test_js_move_race(void **state) {
  fx_t *f = *state;
  m5_store_t *a = open_node("a"), *b = open_node("b"), *c = open_node("c");
  accept_for_node(f, c, "mv1", M5_PRIO_MIDDLE, "ue7", "");
  wait_counts(f, c, "ue7", 1);
  m5_store_job_t da = {.op = M5_STORE_DUE, .limit = 10};
  addr(&da.rcpt, "UE", "ue7");
  hook_at("move-listed", b, a, &da, 0);
  m5_store_job_t d;
  due(f, b, "ue7", 10, &d);
  m5_store_js_test_hook = NULL;
  assert_int_equal(hk.fired, 1);
  assert_int_equal(hk.job_rc, 0);
  assert_int_equal(da.status, 0);
  assert_int_equal(da.n_items, 1); /* a moved it first */
  uint64_t id = da.items[0].id;
  m5_store_job_clear(&da);
  assert_int_equal(d.n_items, 0); /* b found it gone */
  m5_store_job_clear(&d);
  due(f, a, "ue7", 10, &d);
  assert_int_equal(d.n_items, 1); /* a's copy is still there */
  assert_int_equal(d.items[0].id, id);
  assert_memory_equal(d.items[0].msg.payload, "body of mv1", d.items[0].msg.payload_len);
  m5_store_job_clear(&d);
  assert_int_equal(simple(f, a, M5_STORE_MARK_DELIVERED, id, &d), 0);
  m5_store_job_clear(&d);
  m5_store_close(c);
  m5_store_close(b);
  m5_store_close(a);
}

/* Two nodes conclude the same delivery at once: node b fails it (MARK_FAILED) and, between its
 * report and its delete, node a's REBIND fails it too. a's delete wins (b's MARK is M5_ENOENT)
 * and a's report stays: exactly one report reaches the originator. */
static void test_js_conclude_race(void **state) {
  fx_t *f = *state;
  m5_store_t *a = open_node("a"), *b = open_node("b");
  accept_t x;
  const char *to[] = {"ue2"};
  m5_store_job_t *j = mk_accept(&x, "ue1", "old", M5_PRIO_MIDDLE, to, 1);
  x.rcpts[0].gen = 1;
  j->msg.deliv_st_req = true;
  assert_int_equal(run(f, b, j), 0);
  uint64_t old = x.rcpts[0].id;
  m5_store_job_t k = {.op = M5_STORE_REBIND, .gen = 2};
  addr(&k.rcpt, "UE", "ue2");
  hook_at("conclude-reported", b, a, &k, 0);
  m5_store_job_t m;
  assert_int_equal(simple(f, b, M5_STORE_MARK_FAILED, old, &m), M5_ENOENT);
  m5_store_job_clear(&m);
  m5_store_js_test_hook = NULL;
  assert_int_equal(hk.fired, 1);
  assert_int_equal(hk.job_rc, 0);
  assert_int_equal(k.status, 0);
  assert_int_equal(k.rebind_failed, 1);
  expect_report(f, a, "UE", "ue1", "ue2", "old", "REPT_DELY_FAILED " M5_STORE_CAUSE_REBOUND);
  m5_store_close(b);
  m5_store_close(a);
}

/* A TOPIC_SUB of an old generation racing a REBIND on another node: node a checked ue5's
 * generation (1) and is about to write when node b's REBIND to 2 writes the generation and
 * drops ue5's subscriptions (a's is not written yet). a's write then comes after the drop:
 * its second read of the generation refuses it (M5_EPERM) and removes it, so no subscription
 * of the old generation is left on either node. */
static void test_js_topics_rebind_race(void **state) {
  fx_t *f = *state;
  m5_store_t *a = open_node("a"), *b = open_node("b");
  int64_t now_s = fake_now / 1000;
  m5_store_job_t rb;
  memset(&rb, 0, sizeof rb);
  rb.op = M5_STORE_REBIND;
  addr(&rb.rcpt, "UE", "ue5");
  rb.gen = 2;
  hook_at("topic-sub-checked", a, b, &rb, 0);
  m5_store_job_t j;
  assert_int_equal(topic_job(f, a, M5_STORE_TOPIC_SUB, "UE", "ue5", 1, "t.r", now_s + 100, &j),
                   M5_EPERM);
  m5_store_js_test_hook = NULL;
  assert_int_equal(hk.fired, 1);
  assert_int_equal(hk.job_rc, 0);
  assert_int_equal(rb.status, 0);
  assert_string_equal(subscribers(f, a, "t.r"), "");
  wait_subscribers(f, b, "t.r", "");
  assert_int_equal(sub(f, a, "ue5", 2, "t.r", now_s + 100), M5_STORE_ACCEPTED);
  wait_subscribers(f, b, "t.r", "UE:ue5@2");
  m5_store_close(b);
  m5_store_close(a);
}

/* Pipelined accepts (docs/store.md "The accept and its claim"): ACCEPTs waiting in the queue
 * run as one batch (one round of claims, one of publishes, one of final acks: one commit_no),
 * and each ends as it would alone: a new key is accepted, a key with a final ack is DUPLICATE
 * with it, a key claimed by another node's live accept is M5_EAGAIN, a refusal (QUEUE_FULL)
 * deletes its deliveries and removes its claim (the retry is tried afresh), and a second job
 * of a key already in the batch waits for the next batch: DUPLICATE with the first's ack, as
 * two accepts in a row. The batch is queued while the store thread is busy with job 0 (the
 * hook submits it there). */
static struct {
  m5_store_t *on;
  m5_store_job_t **jobs;
  size_t n;
  fx_t *f;
  int fired;
} bk;

static int batch_hook(const char *point, m5_store_t *store, m5_store_job_t *job) {
  (void)job;
  if (bk.fired || store != bk.on || strcmp(point, "accept-published")) return 0;
  bk.fired = 1;
  for (size_t i = 0; i < bk.n; i++) {
    bk.jobs[i]->base.reply = bk.f->replies;
    if (m5_store_submit(store, bk.jobs[i])) return 0;
  }
  return 0;
}

static void test_js_batch(void **state) {
  fx_t *f = *state;
  m5_store_opts_t o;
  default_opts(&o);
  o.max_per_recipient = 1;
  o.js.node = "a";
  m5_store_t *a = open_store(&o);
  o.js.node = "b";
  m5_store_t *b = open_store(&o);
  /* before: P has its final ack; L is claimed by b's accept, which died before its final ack
   * (a live claim for the stale bound); ue4's queue is full */
  assert_int_equal(accept1(f, a, "ue1", "P", M5_PRIO_MIDDLE, "ue9", NULL), M5_STORE_ACCEPTED);
  accept_t xl;
  m5_store_job_t *jl = mk_for_a(&xl, "L", "ue8");
  hook_at("accept-published", b, NULL, NULL, 1);
  assert_int_equal(run(f, b, jl), M5_EIO);
  m5_store_js_test_hook = NULL;
  uint64_t full_id = 0;
  assert_int_equal(accept1(f, a, "ue1", "F0", M5_PRIO_MIDDLE, "ue4", &full_id), M5_STORE_ACCEPTED);

  enum { NB = 7 };
  static accept_t x[NB];
  static const char *ids[NB] = {"B1", "P", "L", "F", "", "B2", "B1"};
  static const char *to[NB] = {"ue3", "ue5", "ue8", "ue4", "ue6", "ue7", "ue3"};
  m5_store_job_t *jobs[NB];
  for (size_t i = 0; i < NB; i++) {
    jobs[i] = mk_for_a(&x[i], ids[i], to[i]);
    snprintf(jobs[i]->ack.status, sizeof jobs[i]->ack.status, "ack%zu", i);
  }
  accept_t x0;
  m5_store_job_t *j0 = mk_for_a(&x0, "J0", "ue2");
  bk = (__typeof__(bk)){a, jobs, NB, f, 0};
  m5_store_js_test_hook = batch_hook;
  j0->base.reply = f->replies;
  f->done = 0;
  f->want = 1 + NB;
  assert_int_equal(m5_store_submit(a, j0), 0);
  assert_int_equal(m5_loop_run(f->loop), 0);
  m5_store_js_test_hook = NULL;
  assert_int_equal(bk.fired, 1);
  assert_int_equal(f->done, 1 + NB);
  assert_int_equal(j0->status, 0);
  assert_int_equal(j0->outcome, M5_STORE_ACCEPTED);
  /* one batch after J0's round: B1, the one without a dedup key and B2 accepted together */
  const size_t ok[] = {0, 4, 5};
  for (size_t i = 0; i < 3; i++) {
    assert_int_equal(jobs[ok[i]]->status, 0);
    assert_int_equal(jobs[ok[i]]->outcome, M5_STORE_ACCEPTED);
    assert_int_equal(jobs[ok[i]]->commit_no, jobs[0]->commit_no);
  }
  assert_true(jobs[0]->commit_no > j0->commit_no);
  print_message("pipelined: J0 in round %llu, the batch in round %llu\n",
                (unsigned long long)j0->commit_no, (unsigned long long)jobs[0]->commit_no);
  assert_int_equal(jobs[1]->status, 0);
  assert_int_equal(jobs[1]->outcome, M5_STORE_DUPLICATE);
  assert_int_equal(jobs[2]->status, M5_EAGAIN); /* b's claim is live */
  assert_int_equal(jobs[3]->status, 0);
  assert_int_equal(jobs[3]->outcome, M5_STORE_QUEUE_FULL);
  /* the second B1: as after the first, a duplicate with its ack */
  assert_int_equal(jobs[6]->status, 0);
  assert_int_equal(jobs[6]->outcome, M5_STORE_DUPLICATE);
  assert_string_equal(jobs[6]->orig_ack.status, "ack0");
  /* stored once each */
  const char *got[] = {"ue3", "ue6", "ue7"};
  for (size_t i = 0; i < 3; i++) {
    m5_store_job_t d;
    due(f, a, got[i], 10, &d);
    assert_int_equal(d.n_items, 1);
    m5_store_job_clear(&d);
  }
  wait_counts(f, a, "ue8", 1); /* the dead accept's delivery (b's consumer), no other */
  assert_int_equal(pending_of(f, a, "ue5"), 0);
  /* F's refusal removed its claim: with room, its retry is accepted */
  m5_store_job_t d;
  assert_int_equal(simple(f, a, M5_STORE_MARK_DELIVERED, full_id, &d), 0);
  m5_store_job_clear(&d);
  m5_store_job_t *jf = mk_for_a(&x[3], "F", "ue4");
  assert_int_equal(run(f, a, jf), 0);
  assert_int_equal(jf->outcome, M5_STORE_ACCEPTED);
  m5_store_close(b);
  m5_store_close(a);
}
/* MARK_DELIVERED jobs waiting in a row: their deletes go in one round trip (one commit_no)
 * and each is answered as alone: concluded (its delivery in items), M5_ENOENT for an id an
 * earlier job of the batch concluded, for a delivery deleted by someone else (which leaves
 * the index) and for an unknown id. */
static void test_js_mark_batch(void **state) {
  fx_t *f = *state;
  m5_store_opts_t o;
  default_opts(&o);
  o.js.node = "a";
  m5_store_t *a = open_store(&o);
  uint64_t id[3];
  const char *to[3] = {"ue11", "ue12", "ue13"};
  for (int i = 0; i < 3; i++) {
    char mid[8];
    snprintf(mid, sizeof mid, "mb%d", i);
    assert_int_equal(accept1(f, a, "ue1", mid, M5_PRIO_MIDDLE, to[i], &id[i]), M5_STORE_ACCEPTED);
  }
  /* ue13's delivery is deleted behind a's back (as another node's conclusion would) */
  m5_js_client_t *c = NULL;
  char err[256], name[96];
  m5_js_client_opts_t co = {.servers = &js_url, .n_servers = 1, .on_ack = on_ack_none};
  assert_int_equal(m5_js_client_open(&c, &co, err, sizeof err), 0);
  snprintf(name, sizeof name, "%s_Q", js_prefix);
  assert_int_equal(m5_js_delete_msg(c, name, id[2] >> 1, err, sizeof err), 0);
  enum { NB = 5 };
  static m5_store_job_t mk[NB];
  m5_store_job_t *jobs[NB];
  const uint64_t ids[NB] = {id[0], id[1], id[0], id[2], 12346};
  for (size_t i = 0; i < NB; i++) {
    memset(&mk[i], 0, sizeof mk[i]);
    mk[i].op = M5_STORE_MARK_DELIVERED;
    mk[i].id = ids[i];
    jobs[i] = &mk[i];
  }
  accept_t x0;
  m5_store_job_t *j0 = mk_for_a(&x0, "J0", "ue2");
  bk = (__typeof__(bk)){a, jobs, NB, f, 0};
  m5_store_js_test_hook = batch_hook;
  j0->base.reply = f->replies;
  f->done = 0;
  f->want = 1 + NB;
  assert_int_equal(m5_store_submit(a, j0), 0);
  assert_int_equal(m5_loop_run(f->loop), 0);
  m5_store_js_test_hook = NULL;
  assert_int_equal(f->done, 1 + NB);
  for (size_t i = 0; i < 2; i++) {
    assert_int_equal(mk[i].status, 0);
    assert_int_equal(mk[i].n_items, 1);
    assert_int_equal(mk[i].items[0].id, ids[i]);
    assert_int_equal(mk[i].items[0].state, M5_DELIV_DELIVERED);
  }
  assert_true(mk[0].commit_no != 0);
  assert_int_equal(mk[1].commit_no, mk[0].commit_no); /* one round trip */
  for (size_t i = 2; i < NB; i++)
    assert_int_equal(mk[i].status, M5_ENOENT);
  for (size_t i = 0; i < NB; i++)
    m5_store_job_clear(&mk[i]);
  for (int i = 0; i < 3; i++)
    assert_int_equal(pending_of(f, a, to[i]), 0);
  uint64_t left = 0;
  assert_int_equal(m5_js_stream_msgs(c, name, &left, err, sizeof err), 0);
  assert_int_equal(left, 1); /* J0's */
  m5_js_client_close(c);
  m5_store_close(a);
}
#endif

/* What the JetStream backend does not do (yet), or what only SQLite has: skipped there. */
static const struct {
  const char *test, *why;
} js_skips[] = {
    {"test_group_body_once", "bodies are kept with each delivery (no shared body)"},
    {"test_requeue_stale", "the stuck conclusion is made by an SQLite trigger"},
    {"test_synchronous_full", "SQLite's fsync"},
    {"test_conclusions_unsynced", "SQLite's fsync"},
    {"test_schema_1_upgraded", "SQLite schema"},
    {"test_schema_2_upgraded", "SQLite schema"},
    {"test_schema_6_upgraded", "SQLite schema"},
    {"test_schema_3_upgraded", "SQLite schema"},
    {"test_rebind_rollback", "SQLite rollback"},
    {"test_ticket_cap", "reads the SQLite table (jetstream: test_js_quota_two_nodes)"},
    {"test_second_open_refused", "SQLite file lock"},
    {"test_failing_job_in_batch", "SQLite group commit and rollback"},
    {"test_dedup_counts_after_failed_job", "SQLite rollback"},
    {"test_group_commit", "SQLite group commit"},
    {"test_crash_durability", "SQLite file after kill -9 (jetstream: tests/js)"},
    {"test_corrupt_overwritten", "SQLite file"},
    {"test_corrupt_truncated", "SQLite file"},
    {"test_not_a_store", "SQLite file"},
};

static const char *js_skip_reason(const char *name) {
  for (size_t i = 0; i < sizeof js_skips / sizeof js_skips[0]; i++)
    if (!strcmp(js_skips[i].test, name)) return js_skips[i].why;
  return NULL;
}

int main(int argc, char **argv) {
  tu_process_init();
  if ((argc == 3 || argc == 4) && !strcmp(argv[1], "--jetstream")) {
    js_mode = true;
    js_url = argv[2];
    if (argc == 4) js_replicas = atoi(argv[3]);
  } else if (argc != 1) {
    fprintf(stderr, "usage: %s [--jetstream nats://host:port [replicas]]\n", argv[0]);
    return 2;
  }
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_accept_due_delivered, fx_setup, fx_teardown),
      cmocka_unit_test_setup_teardown(test_priority_then_arrival, fx_setup, fx_teardown),
      cmocka_unit_test_setup_teardown(test_group_body_once, fx_setup, fx_teardown),
      cmocka_unit_test_setup_teardown(test_dedup_window_and_restart, fx_setup, fx_teardown),
      cmocka_unit_test_setup_teardown(test_dedup_sender_bound, fx_setup, fx_teardown),
      cmocka_unit_test_setup_teardown(test_queue_cap, fx_setup, fx_teardown),
      cmocka_unit_test_setup_teardown(test_store_cap, fx_setup, fx_teardown),
      cmocka_unit_test_setup_teardown(test_expire, fx_setup, fx_teardown),
      cmocka_unit_test_setup_teardown(test_reschedule_due_any, fx_setup, fx_teardown),
      cmocka_unit_test_setup_teardown(test_in_flight, fx_setup, fx_teardown),
      cmocka_unit_test_setup_teardown(test_in_flight_conclusion, fx_setup, fx_teardown),
      cmocka_unit_test_setup_teardown(test_report_with_failure, fx_setup, fx_teardown),
      cmocka_unit_test_setup_teardown(test_peer_report_own_bound, fx_setup, fx_teardown),
      cmocka_unit_test_setup_teardown(test_originator_quota, fx_setup, fx_teardown),
      cmocka_unit_test_setup_teardown(test_originator_share, fx_setup, fx_teardown),
      cmocka_unit_test_setup_teardown(test_requeue_stale, fx_setup, fx_teardown),
      cmocka_unit_test_setup_teardown(test_synchronous_full, fx_setup, fx_teardown),
      cmocka_unit_test_setup_teardown(test_conclusions_unsynced, fx_setup, fx_teardown),
      cmocka_unit_test_setup_teardown(test_schema_1_upgraded, fx_setup, fx_teardown),
      cmocka_unit_test_setup_teardown(test_schema_2_upgraded, fx_setup, fx_teardown),
      cmocka_unit_test_setup_teardown(test_schema_6_upgraded, fx_setup, fx_teardown),
      cmocka_unit_test_setup_teardown(test_schema_3_upgraded, fx_setup, fx_teardown),
      cmocka_unit_test_setup_teardown(test_topics, fx_setup, fx_teardown),
      cmocka_unit_test_setup_teardown(test_rebind, fx_setup, fx_teardown),
      cmocka_unit_test_setup_teardown(test_rebind_reports, fx_setup, fx_teardown),
      cmocka_unit_test_setup_teardown(test_rebind_rollback, fx_setup, fx_teardown),
      cmocka_unit_test_setup_teardown(test_ticket_cap, fx_setup, fx_teardown),
      cmocka_unit_test_setup_teardown(test_quota_per_generation, fx_setup, fx_teardown),
      cmocka_unit_test_setup_teardown(test_rebind_caught_up, fx_setup, fx_teardown),
      cmocka_unit_test_setup_teardown(test_second_open_refused, fx_setup, fx_teardown),
      cmocka_unit_test_setup_teardown(test_failing_job_in_batch, fx_setup, fx_teardown),
      cmocka_unit_test_setup_teardown(test_dedup_counts_after_failed_job, fx_setup, fx_teardown),
      cmocka_unit_test_setup_teardown(test_group_commit, fx_setup, fx_teardown),
      cmocka_unit_test_setup_teardown(test_crash_durability, fx_setup, fx_teardown),
      cmocka_unit_test_setup_teardown(test_corrupt_overwritten, fx_setup, fx_teardown),
      cmocka_unit_test_setup_teardown(test_corrupt_truncated, fx_setup, fx_teardown),
      cmocka_unit_test_setup_teardown(test_not_a_store, fx_setup, fx_teardown),
  };
  if (!js_mode) return cmocka_run_group_tests(tests, NULL, NULL);
  struct CMUnitTest run_tests[sizeof tests / sizeof tests[0]];
  size_t n = 0;
  for (size_t i = 0; i < sizeof tests / sizeof tests[0]; i++) {
    const char *why = js_skip_reason(tests[i].name);
    if (why)
      printf("[ SKIPPED  ] %s on jetstream: %s\n", tests[i].name, why);
    else
      run_tests[n++] = tests[i];
  }
  const struct CMUnitTest js_only[] = {
      cmocka_unit_test_setup_teardown(test_js_two_nodes, fx_setup, fx_teardown),
      cmocka_unit_test_setup_teardown(test_js_due_any_hand_out, fx_setup, fx_teardown),
      cmocka_unit_test_setup_teardown(test_js_topics_two_nodes, fx_setup, fx_teardown),
      cmocka_unit_test_setup_teardown(test_js_rebind_sweep, fx_setup, fx_teardown),
      cmocka_unit_test_setup_teardown(test_js_tickets, fx_setup, fx_teardown),
      cmocka_unit_test_setup_teardown(test_js_max_bytes, fx_setup, fx_teardown),
      cmocka_unit_test_setup_teardown(test_js_quota_two_nodes, fx_setup, fx_teardown),
#ifdef M5_TEST_HOOKS
      cmocka_unit_test_setup_teardown(test_js_claim, fx_setup, fx_teardown),
      cmocka_unit_test_setup_teardown(test_js_move_race, fx_setup, fx_teardown),
      cmocka_unit_test_setup_teardown(test_js_conclude_race, fx_setup, fx_teardown),
      cmocka_unit_test_setup_teardown(test_js_topics_rebind_race, fx_setup, fx_teardown),
      cmocka_unit_test_setup_teardown(test_js_batch, fx_setup, fx_teardown),
      cmocka_unit_test_setup_teardown(test_js_mark_batch, fx_setup, fx_teardown),
#endif
  };
  enum { N_ALL = sizeof tests / sizeof tests[0] + sizeof js_only / sizeof js_only[0] };
  struct CMUnitTest all[N_ALL];
  memcpy(all, run_tests, n * sizeof *all);
  memcpy(all + n, js_only, sizeof js_only);
  n += sizeof js_only / sizeof js_only[0];
  int rc = _cmocka_run_group_tests("test_store on jetstream", all, n, NULL, NULL);
  m5_js_library_close();
  return rc;
}
