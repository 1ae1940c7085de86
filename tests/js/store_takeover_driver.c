/* The takeover of a dead node's deliveries by m5_store on NATS JetStream (issue 13;
 * src/lib/store/js_takeover.c), through the store's job interface, against the nats-server of
 * `store_takeover_driver nats://host:port` (tests/js/test_store_takeover.sh starts it). Real
 * time: a node is dead 10 s after its last liveness write, so each test waits (bounded) for
 * the takeover.
 *  - test_takeover: node b holds a UE delivery, an AS delivery and a failure report, then
 *    stops (no more liveness writes); node a, which watched b, takes all three over onto its
 *    own subjects: they are due in a's index (DUE_ANY, which moves nothing itself), with their
 *    payloads, and a concludes them; b restarted under its name finds nothing left;
 *  - test_takeover_race: nodes a and c both see b dead, and b left more deliveries than one tick
 *    moves (600 > 256), so the taker holds its lease across ticks while the other looks: one
 *    lease, every delivery of b ends on exactly one of them, each once, none lost; b restarted
 *    finds nothing left;
 *  - test_no_self_takeover: two live nodes, each with deliveries on its own subjects, for
 *    longer than a dead node's key lives: nothing moves (a node never judges itself, nor a
 *    node that keeps writing its key). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <time.h>
#include <unistd.h>

#include "core/err.h"
#include "core/loop.h"
#include "js/js_client.h"
#include "store/store.h"

static const char *js_url;
static char prefix[64];
static int test_no;
static const int64_t NOW = 1700000000000; /* the store's clock (expiry, next attempts) */

static int64_t fixed_clock(void *arg) {
  (void)arg;
  return NOW;
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

static int setup(void **state) {
  fx_t *f = calloc(1, sizeof *f);
  f->loop = m5_loop_new();
  f->replies = m5_mailbox_new(f->loop, 64, on_reply, f);
  snprintf(prefix, sizeof prefix, "tk%d_%d", (int)getpid(), ++test_no);
  *state = f;
  return f->loop && f->replies ? 0 : -1;
}

static int teardown(void **state) {
  fx_t *f = *state;
  m5_mailbox_free(f->replies, NULL);
  m5_loop_free(f->loop);
  free(f);
  return 0;
}

static m5_store_t *open_node(const char *node) {
  m5_store_opts_t o;
  m5_store_opts_init(&o);
  o.clock_ms = fixed_clock;
  o.backend = M5_STORE_BACKEND_JETSTREAM;
  o.js.servers = &js_url;
  o.js.n_servers = 1;
  o.js.replicas = 1;
  o.js.prefix = prefix;
  o.js.node = node;
  o.js.timeout_ms = 10000;
  char err[512];
  m5_store_t *s = m5_store_open(&o, err, sizeof err);
  if (!s) fail_msg("m5_store_open %s: %s", node, err);
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

static void addr(m5_msg_addr_t *a, const char *type, const char *id) {
  memset(a, 0, sizeof *a);
  snprintf(a->type, sizeof a->type, "%s", type);
  snprintf(a->addr, sizeof a->addr, "%s", id);
}

/* Accepts msg_id from UE:ori to type:to on s (this node's subjects); its delivery id. */
static uint64_t accept_on(fx_t *f, m5_store_t *s, const char *ori, const char *msg_id,
                          const char *type, const char *to, bool report) {
  m5_store_job_t j = {.op = M5_STORE_ACCEPT};
  m5_store_rcpt_t r = {0};
  char payload[96];
  addr(&j.msg.ori, "UE", ori);
  addr(&j.msg.dest, type, to);
  snprintf(j.msg.msg_id, sizeof j.msg.msg_id, "%s", msg_id);
  snprintf(j.msg.app_id, sizeof j.msg.app_id, "app1");
  j.msg.prio = M5_PRIO_MIDDLE;
  j.msg.sto_fwd = true;
  j.msg.deliv_st_req = report;
  int len = snprintf(payload, sizeof payload, "body of %s", msg_id);
  j.msg.payload = (uint8_t *)payload;
  j.msg.payload_len = (size_t)len;
  addr(&r.addr, type, to);
  r.next_attempt_ms = NOW + 1000;
  j.rcpts = &r;
  j.n_rcpts = 1;
  snprintf(j.dedup_ori, sizeof j.dedup_ori, "UE:%s", ori);
  snprintf(j.dedup_id, sizeof j.dedup_id, "%s", msg_id);
  assert_int_equal(run(f, s, &j), 0);
  assert_int_equal(j.outcome, M5_STORE_ACCEPTED);
  assert_true(r.id != 0);
  return r.id;
}

/* DUE_ANY on s (moves nothing: only s's index); the items in *j (m5_store_job_clear). */
static size_t due_any(fx_t *f, m5_store_t *s, m5_store_job_t *j) {
  memset(j, 0, sizeof *j);
  j->op = M5_STORE_DUE_ANY;
  j->now_ms = NOW + 3600 * 1000;
  j->limit = 1000;
  assert_int_equal(run(f, s, j), 0);
  return j->n_items;
}

static size_t due_any_n(fx_t *f, m5_store_t *s) {
  m5_store_job_t j;
  size_t n = due_any(f, s, &j);
  m5_store_job_clear(&j);
  return n;
}

static int64_t mono_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void nap_ms(int ms) {
  struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};
  nanosleep(&ts, NULL);
}

/* Deliveries in s's index (COUNTS' stats). */
static size_t indexed(fx_t *f, m5_store_t *s) {
  m5_store_job_t j = {.op = M5_STORE_COUNTS};
  addr(&j.rcpt, "UE", "nobody");
  assert_int_equal(run(f, s, &j), 0);
  return (size_t)j.stats.queued;
}

/* Polls (each job also drives the store's takeover tick) until the nodes hold want deliveries
 * in all; 90 s bound (sanitizers, loaded cores). Logs how long it took. */
static void wait_total(fx_t *f, m5_store_t **nodes, size_t n, size_t want, const char *what) {
  int64_t t0 = mono_ms();
  size_t got = 0;
  while (mono_ms() - t0 < 90000) {
    got = 0;
    for (size_t i = 0; i < n; i++)
      got += indexed(f, nodes[i]);
    if (got == want) {
      print_message("%s after %lld ms\n", what, (long long)(mono_ms() - t0));
      return;
    }
    nap_ms(200);
  }
  fail_msg("%s: %zu deliveries due on the live nodes after 90 s, want %zu", what, got, want);
}

static void test_takeover(void **state) {
  fx_t *f = *state;
  m5_store_t *a = open_node("a"), *b = open_node("b");
  accept_on(f, b, "ue1", "to-ue", "UE", "ue2", false);
  accept_on(f, b, "ue1", "to-as", "AS", "as1", false);
  uint64_t failing = accept_on(f, b, "ue5", "will-fail", "UE", "ue6", true);
  m5_store_job_t k = {.op = M5_STORE_MARK_FAILED, .id = failing};
  snprintf(k.cause, sizeof k.cause, "%s", M5_CAUSE_UNREACHABLE);
  assert_int_equal(run(f, b, &k), 0); /* a failure report for ue5, on b's report subjects */
  m5_store_job_clear(&k);
  assert_int_equal(due_any_n(f, b), 3);
  assert_int_equal(due_any_n(f, a), 0);
  m5_store_close(b); /* b stops writing its liveness key */

  m5_store_t *live[] = {a};
  wait_total(f, live, 1, 3, "b's 3 deliveries taken over by a");
  m5_store_job_t d;
  assert_int_equal(due_any(f, a, &d), 3);
  bool seen_ue = false, seen_as = false, seen_rep = false;
  for (size_t i = 0; i < d.n_items; i++) {
    m5_store_delivery_t *x = &d.items[i];
    if (!strcmp(x->msg.msg_id, "to-ue")) {
      seen_ue = true;
      assert_string_equal(x->rcpt.type, "UE");
      assert_string_equal(x->rcpt.addr, "ue2");
      assert_memory_equal(x->msg.payload, "body of to-ue", x->msg.payload_len);
    } else if (!strcmp(x->msg.msg_id, "to-as")) {
      seen_as = true;
      assert_string_equal(x->rcpt.type, "AS");
      assert_string_equal(x->rcpt.addr, "as1");
      assert_memory_equal(x->msg.payload, "body of to-as", x->msg.payload_len);
    } else if (!strcmp(x->msg.app_id, M5_STORE_REPORT_APP)) {
      seen_rep = true;
      assert_string_equal(x->rcpt.addr, "ue5");
    }
  }
  assert_true(seen_ue && seen_as && seen_rep);
  /* a owns them now: it concludes them */
  for (size_t i = 0; i < d.n_items; i++) {
    m5_store_job_t m = {.op = M5_STORE_MARK_DELIVERED, .id = d.items[i].id};
    assert_int_equal(run(f, a, &m), 0);
    m5_store_job_clear(&m);
  }
  m5_store_job_clear(&d);
  assert_int_equal(due_any_n(f, a), 0);
  /* b restarted under its name: nothing left on its subjects */
  b = open_node("b");
  assert_int_equal(due_any_n(f, b), 0);
  m5_store_close(b);
  m5_store_close(a);
}

#define RACE_N 600

static void test_takeover_race(void **state) {
  fx_t *f = *state;
  m5_store_t *a = open_node("a"), *c = open_node("c"), *b = open_node("b");
  for (int i = 0; i < RACE_N; i++) {
    char id[32], to[32];
    snprintf(id, sizeof id, "r-%d", i);
    snprintf(to, sizeof to, "as%d", i % 4);
    accept_on(f, b, "ue1", id, "AS", to, false);
  }
  assert_int_equal(indexed(f, b), RACE_N);
  m5_store_close(b);
  m5_store_t *live[] = {a, c};
  wait_total(f, live, 2, RACE_N, "b's deliveries taken over by a or c");
  for (int round = 0; round < 4; round++) { /* a second taker's ticks would move some now */
    indexed(f, a);
    indexed(f, c);
    nap_ms(1000);
  }
  m5_store_job_t da, dc;
  size_t na = due_any(f, a, &da), nc = due_any(f, c, &dc);
  print_message("a holds %zu, c holds %zu\n", na, nc);
  assert_int_equal(na + nc, RACE_N);
  assert_true(na == 0 || nc == 0); /* one lease: one taker */
  int seen[RACE_N] = {0};
  m5_store_job_t *both[] = {&da, &dc};
  for (int w = 0; w < 2; w++)
    for (size_t i = 0; i < both[w]->n_items; i++) {
      int n = -1;
      assert_int_equal(sscanf(both[w]->items[i].msg.msg_id, "r-%d", &n), 1);
      assert_true(n >= 0 && n < RACE_N);
      seen[n]++;
    }
  for (int i = 0; i < RACE_N; i++)
    assert_int_equal(seen[i], 1);
  m5_store_job_clear(&da);
  m5_store_job_clear(&dc);
  b = open_node("b");
  assert_int_equal(due_any_n(f, b), 0);
  m5_store_close(b);
  m5_store_close(c);
  m5_store_close(a);
}

/* Two live nodes, each with its own deliveries: nothing moves. */
static void test_no_self_takeover(void **state) {
  fx_t *f = *state;
  m5_store_t *a = open_node("a"), *b = open_node("b");
  accept_on(f, a, "ue1", "own-a", "AS", "as1", false);
  accept_on(f, b, "ue1", "own-b", "AS", "as1", false);
  int64_t t0 = mono_ms();
  while (mono_ms() - t0 < 16000) { /* past the 10 s a dead node's key lives */
    assert_int_equal(due_any_n(f, a), 1);
    assert_int_equal(due_any_n(f, b), 1);
    nap_ms(500);
  }
  m5_store_close(b);
  m5_store_close(a);
}

int main(int argc, char **argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: %s nats://host:port\n", argv[0]);
    return 2;
  }
  js_url = argv[1];
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_takeover, setup, teardown),
      cmocka_unit_test_setup_teardown(test_takeover_race, setup, teardown),
      cmocka_unit_test_setup_teardown(test_no_self_takeover, setup, teardown),
  };
  int rc = cmocka_run_group_tests(tests, NULL, NULL);
  m5_js_library_close();
  return rc;
}
