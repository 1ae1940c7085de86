/* Unit tests for the event loop: fd readiness, timers (order, cancel, stale ids), mailboxes
 * across threads (order, bound, drop on free), stop from another thread, signals, deferred
 * calls (once per iteration, after the events; cancel and re-queue from a callback); posting
 * several messages at once; a job thread answering the jobs of one wake-up together; and how
 * many worker loops a daemon runs (m5_daemon_workers). */
#include "core/daemon.h"
#include "core/err.h"
#include "core/jobthread.h"
#include "core/loop.h"

#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

typedef struct {
  m5_loop_t *loop;
  int order[16];
  int n;
} trace_t;

static void record(trace_t *t, int v) {
  if (t->n < 16) t->order[t->n++] = v;
}

/* ---- fds ---- */

typedef struct {
  trace_t *t;
  int fd;
} fd_ctx_t;

static void on_readable(m5_loop_t *loop, int fd, uint32_t events, void *arg) {
  fd_ctx_t *c = arg;
  char buf[8];
  assert_true(events & M5_EV_READ);
  ssize_t n = read(fd, buf, sizeof buf);
  assert_int_equal(n, 1);
  record(c->t, buf[0]);
  m5_loop_del_fd(loop, fd); /* removing itself from inside the callback must be safe */
  m5_loop_stop(loop);
}

static void test_fd_readiness(void **state) {
  (void)state;
  m5_loop_t *loop = m5_loop_new();
  assert_non_null(loop);
  int p[2];
  assert_int_equal(pipe(p), 0);
  trace_t t = {.loop = loop};
  fd_ctx_t c = {&t, p[0]};
  assert_int_equal(m5_loop_add_fd(loop, p[0], M5_EV_READ, on_readable, &c), M5_OK);
  assert_int_equal(m5_loop_add_fd(loop, p[0], M5_EV_READ, on_readable, &c), M5_EEXIST);
  assert_int_equal(write(p[1], "x", 1), 1);
  assert_int_equal(m5_loop_run(loop), M5_OK);
  assert_int_equal(t.n, 1);
  assert_int_equal(t.order[0], 'x');
  assert_int_equal(m5_loop_del_fd(loop, p[0]), M5_ENOENT);
  close(p[0]);
  close(p[1]);
  m5_loop_free(loop);
}

/* ---- timers ---- */

typedef struct {
  trace_t *t;
  int v;
  int stop;
} timer_ctx_t;

static void on_timer(m5_loop_t *loop, void *arg) {
  timer_ctx_t *c = arg;
  record(c->t, c->v);
  if (c->stop) m5_loop_stop(loop);
}

static void test_timers_fire_in_order_and_cancel(void **state) {
  (void)state;
  m5_loop_t *loop = m5_loop_new();
  trace_t t = {.loop = loop};
  timer_ctx_t a = {&t, 1, 0}, b = {&t, 2, 0}, c = {&t, 3, 0}, last = {&t, 4, 1};
  uint64_t t0 = m5_clock_mono_ms();
  assert_true(m5_loop_timer_add(loop, 30, on_timer, &c) != 0);
  m5_timer_id_t idb = m5_loop_timer_add(loop, 20, on_timer, &b);
  assert_true(m5_loop_timer_add(loop, 10, on_timer, &a) != 0);
  assert_true(m5_loop_timer_add(loop, 40, on_timer, &last) != 0);
  assert_int_equal(m5_loop_timer_cancel(loop, idb), M5_OK);
  assert_int_equal(m5_loop_timer_cancel(loop, idb), M5_ENOENT);
  assert_int_equal(m5_loop_timer_cancel(loop, 0), M5_ENOENT);
  assert_int_equal(m5_loop_run(loop), M5_OK);
  assert_true(m5_clock_mono_ms() - t0 >= 40);
  assert_int_equal(t.n, 3);
  assert_int_equal(t.order[0], 1);
  assert_int_equal(t.order[1], 3);
  assert_int_equal(t.order[2], 4);
  m5_loop_free(loop);
}

static void test_stale_timer_id_does_not_cancel_reused_slot(void **state) {
  (void)state;
  m5_loop_t *loop = m5_loop_new();
  trace_t t = {.loop = loop};
  timer_ctx_t a = {&t, 1, 0}, b = {&t, 2, 1};
  m5_timer_id_t old = m5_loop_timer_add(loop, 5, on_timer, &a);
  assert_int_equal(m5_loop_timer_cancel(loop, old), M5_OK);
  m5_timer_id_t fresh = m5_loop_timer_add(loop, 5, on_timer, &b); /* likely the same slot */
  assert_true(fresh != old);
  assert_int_equal(m5_loop_timer_cancel(loop, old), M5_ENOENT);
  assert_int_equal(m5_loop_run(loop), M5_OK);
  assert_int_equal(t.n, 1);
  assert_int_equal(t.order[0], 2);
  m5_loop_free(loop);
}

static void test_many_timers(void **state) {
  (void)state;
  m5_loop_t *loop = m5_loop_new();
  trace_t t = {.loop = loop};
  enum { N = 5000 };
  m5_timer_id_t ids[N];
  timer_ctx_t noop = {&t, 9, 0}, last = {&t, 7, 1};
  for (int i = 0; i < N; i++)
    ids[i] = m5_loop_timer_add(loop, (uint64_t)(1000 + i), on_timer, &noop);
  for (int i = 0; i < N; i++)
    assert_int_equal(m5_loop_timer_cancel(loop, ids[i]), M5_OK);
  assert_true(m5_loop_timer_add(loop, 1, on_timer, &last) != 0);
  assert_int_equal(m5_loop_run(loop), M5_OK);
  assert_int_equal(t.n, 1);
  assert_int_equal(t.order[0], 7);
  m5_loop_free(loop);
}

/* ---- mailboxes ---- */

typedef struct {
  m5_loop_t *loop;
  long sum;
  int received;
  int expected;
  int last;
  int in_order;
} mb_ctx_t;

static void on_msg(void *msg, void *arg) {
  mb_ctx_t *c = arg;
  int v = *(int *)msg;
  free(msg);
  if (v != c->last + 1) c->in_order = 0;
  c->last = v;
  c->sum += v;
  if (++c->received == c->expected) m5_loop_stop(c->loop);
}

typedef struct {
  m5_mailbox_t *mb;
  int count;
  int full_seen;
} producer_t;

static void *producer(void *arg) {
  producer_t *p = arg;
  for (int i = 1; i <= p->count; i++) {
    int *v = malloc(sizeof *v);
    *v = i;
    while (m5_mailbox_post(p->mb, v) == M5_EFULL) {
      p->full_seen = 1;
      usleep(100);
    }
  }
  return NULL;
}

static void test_mailbox_cross_thread_in_order(void **state) {
  (void)state;
  m5_loop_t *loop = m5_loop_new();
  mb_ctx_t c = {.loop = loop, .expected = 20000, .in_order = 1};
  m5_mailbox_t *mb = m5_mailbox_new(loop, 64, on_msg, &c);
  assert_non_null(mb);
  producer_t p = {mb, 20000, 0};
  pthread_t th;
  assert_int_equal(pthread_create(&th, NULL, producer, &p), 0);
  assert_int_equal(m5_loop_run(loop), M5_OK);
  pthread_join(th, NULL);
  assert_int_equal(c.received, 20000);
  assert_true(c.in_order);
  assert_int_equal(c.sum, 20000L * 20001L / 2);
  m5_mailbox_free(mb, free);
  m5_loop_free(loop);
}

static void test_mailbox_bound_and_drop(void **state) {
  (void)state;
  m5_loop_t *loop = m5_loop_new();
  mb_ctx_t c = {.loop = loop};
  m5_mailbox_t *mb = m5_mailbox_new(loop, 2, on_msg, &c);
  int *a = malloc(sizeof *a), *b = malloc(sizeof *b), *x = malloc(sizeof *x);
  *a = 1;
  *b = 2;
  *x = 3;
  assert_int_equal(m5_mailbox_post(mb, a), M5_OK);
  assert_int_equal(m5_mailbox_post(mb, b), M5_OK);
  assert_int_equal(m5_mailbox_post(mb, x), M5_EFULL); /* caller keeps x */
  free(x);
  m5_mailbox_free(mb, free); /* a and b are dropped through free: ASan checks no leak */
  assert_int_equal(c.received, 0);
  m5_loop_free(loop);
}

/* The owner may free a mailbox as soon as it has handled the last message it waits for (a
 * worker after its last DB reply). A message can be taken by an owner that is already
 * draining, before the poster's eventfd wake-up; the poster must be done with the mailbox by
 * then. Deterministic under ThreadSanitizer; under ASan it catches the use after free only
 * when the poster is preempted in that window, so it is repeated. */
typedef struct {
  m5_loop_t *loop;
  m5_mailbox_t *mb;
  atomic_int phase;
  int post_rc[2]; /* checked on the test thread: cmocka asserts only there */
} teardown_ctx_t;

static int msg_first, msg_last;

static void on_teardown_msg(void *msg, void *arg) {
  teardown_ctx_t *c = arg;
  if (msg == &msg_first) {
    /* Hold the owner inside its drain until the second post is under way. */
    atomic_store(&c->phase, 1);
    while (atomic_load(&c->phase) != 2) {
    }
    return;
  }
  m5_loop_stop(c->loop);
}

static void *teardown_poster(void *arg) {
  teardown_ctx_t *c = arg;
  c->post_rc[0] = m5_mailbox_post(c->mb, &msg_first);
  while (atomic_load(&c->phase) != 1) {
  }
  atomic_store(&c->phase, 2);
  c->post_rc[1] = m5_mailbox_post(c->mb, &msg_last);
  return NULL;
}

static void test_mailbox_free_right_after_last_message(void **state) {
  (void)state;
  for (int i = 0; i < 300; i++) {
    teardown_ctx_t c = {.loop = m5_loop_new()};
    assert_non_null(c.loop);
    c.mb = m5_mailbox_new(c.loop, 4, on_teardown_msg, &c);
    assert_non_null(c.mb);
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, teardown_poster, &c), 0);
    assert_int_equal(m5_loop_run(c.loop), M5_OK);
    m5_mailbox_free(c.mb, NULL); /* before the join, as a daemon's worker teardown does */
    pthread_join(th, NULL);
    assert_int_equal(c.post_rc[0], M5_OK);
    assert_int_equal(c.post_rc[1], M5_OK);
    m5_loop_free(c.loop);
  }
}

/* ---- stop and signals ---- */

static void *stopper(void *arg) {
  usleep(20000);
  m5_loop_stop(arg);
  return NULL;
}

static void test_stop_from_other_thread(void **state) {
  (void)state;
  m5_loop_t *loop = m5_loop_new();
  pthread_t th;
  assert_int_equal(pthread_create(&th, NULL, stopper, loop), 0);
  assert_int_equal(m5_loop_run(loop), M5_OK); /* nothing registered: only the stop wakes it */
  pthread_join(th, NULL);
  m5_loop_free(loop);
}

static void on_signal(m5_loop_t *loop, int signo, void *arg) {
  *(int *)arg = signo;
  m5_loop_stop(loop);
}

static void test_signal_delivery(void **state) {
  (void)state;
  m5_loop_t *loop = m5_loop_new();
  int got = 0;
  assert_int_equal(m5_loop_signal(loop, SIGUSR1, on_signal, &got), M5_OK);
  assert_int_equal(kill(getpid(), SIGUSR1), 0);
  assert_int_equal(m5_loop_run(loop), M5_OK);
  assert_int_equal(got, SIGUSR1);
  m5_loop_free(loop);
}

/* ---- deferred calls ---- */

typedef struct {
  trace_t *t;
  m5_defer_t d, other;
  int asked; /* how often the flush was asked for */
} defer_ctx_t;

static void on_flush_then_stop(m5_loop_t *loop, void *arg) {
  defer_ctx_t *c = arg;
  record(c->t, 'F');
  m5_loop_stop(loop);
}

/* Reads the bytes there are and asks for the flush after each: a connection answering
 * requests. */
static void on_requests(m5_loop_t *loop, int fd, uint32_t events, void *arg) {
  defer_ctx_t *c = arg;
  (void)events;
  char b;
  while (read(fd, &b, 1) == 1) {
    record(c->t, b);
    m5_loop_defer(loop, &c->d, on_flush_then_stop, c);
    c->asked++;
  }
}

/* Three requests, one flush, after them, in the same iteration. */
static void test_defer_once_after_events(void **state) {
  (void)state;
  m5_loop_t *loop = m5_loop_new();
  int p[2];
  assert_int_equal(pipe(p), 0);
  assert_int_equal(fcntl(p[0], F_SETFL, O_NONBLOCK), 0);
  trace_t t = {.loop = loop};
  defer_ctx_t c = {.t = &t};
  assert_int_equal(m5_loop_add_fd(loop, p[0], M5_EV_READ, on_requests, &c), M5_OK);
  assert_int_equal(write(p[1], "abc", 3), 3);
  assert_int_equal(m5_loop_run(loop), M5_OK);
  assert_int_equal(c.asked, 3);
  assert_int_equal(t.n, 4);
  assert_int_equal(t.order[0], 'a');
  assert_int_equal(t.order[2], 'c');
  assert_int_equal(t.order[3], 'F');
  assert_false(c.d.queued);
  m5_loop_del_fd(loop, p[0]);
  close(p[0]);
  close(p[1]);
  m5_loop_free(loop);
}

static void on_other(m5_loop_t *loop, void *arg) {
  defer_ctx_t *c = arg;
  (void)loop;
  record(c->t, 'O');
}

/* Cancels the call queued behind it and queues itself again: that one runs in the next
 * iteration, the cancelled one never. */
static void on_cancel_other(m5_loop_t *loop, void *arg) {
  defer_ctx_t *c = arg;
  record(c->t, 'C');
  m5_loop_defer_cancel(loop, &c->other);
  m5_loop_defer_cancel(loop, &c->other); /* twice: a no-op */
  m5_loop_defer(loop, &c->d, on_flush_then_stop, c);
}

static void test_defer_cancel_and_requeue(void **state) {
  (void)state;
  m5_loop_t *loop = m5_loop_new();
  trace_t t = {.loop = loop};
  defer_ctx_t c = {.t = &t};
  m5_loop_defer(loop, &c.d, on_cancel_other, &c);
  m5_loop_defer(loop, &c.d, on_other, &c); /* already queued: ignored */
  m5_loop_defer(loop, &c.other, on_other, &c);
  m5_defer_t gone = {0};
  m5_loop_defer(loop, &gone, on_other, &c);
  m5_loop_defer_cancel(loop, &gone);
  assert_int_equal(m5_loop_run(loop), M5_OK);
  assert_int_equal(t.n, 2);
  assert_int_equal(t.order[0], 'C');
  assert_int_equal(t.order[1], 'F');
  m5_loop_free(loop);
}

/* ---- workers ---- */

/* "workers: 0" is one worker per CPU the daemon may run on (taskset, a cpuset), not per CPU
 * of the machine: pinned to one core, m5s must not start two workers that take turns on it. */
/* ---- posting many at once; the job thread's replies ---- */

static void count_msg(void *msg, void *arg) {
  (void)msg;
  (*(int *)arg)++;
}

static void test_mailbox_post_many_bound(void **state) {
  (void)state;
  m5_loop_t *loop = m5_loop_new();
  int got = 0;
  m5_mailbox_t *mb = m5_mailbox_new(loop, 4, count_msg, &got);
  int v[6] = {0};
  void *msgs[6] = {&v[0], &v[1], &v[2], &v[3], &v[4], &v[5]};
  assert_int_equal(m5_mailbox_post_many(mb, msgs, 3), 3);
  assert_int_equal(m5_mailbox_post_many(mb, msgs + 3, 3), 1); /* the bound: 4 */
  assert_int_equal(m5_mailbox_post(mb, msgs[5]), M5_EFULL);
  m5_mailbox_free(mb, NULL);
  m5_loop_free(loop);
}

typedef struct {
  m5_job_t base;
  int no;
  atomic_int *ran; /* jobs run so far, shared */
  int ran_at_reply; /* what *ran was when the owner got this reply */
} tjob_t;

static pthread_mutex_t gate_lock = PTHREAD_MUTEX_INITIALIZER;

static void run_tjob(m5_job_t *base, void *ctx) {
  (void)ctx;
  tjob_t *j = (tjob_t *)base;
  if (j->no == 0) { /* the first job waits at the gate, so the others queue up behind it */
    pthread_mutex_lock(&gate_lock);
    pthread_mutex_unlock(&gate_lock);
  }
  if (j->no == 4) { /* the last one is slow: a reply posted before it ran would be seen */
    struct timespec ts = {0, 50 * 1000 * 1000};
    nanosleep(&ts, NULL);
  }
  atomic_fetch_add(j->ran, 1);
}

typedef struct {
  m5_loop_t *loop;
  int replies;
} towner_t;

static void on_tjob_reply(void *msg, void *arg) {
  towner_t *o = arg;
  tjob_t *j = msg;
  j->ran_at_reply = atomic_load(j->ran);
  if (++o->replies == 5) m5_loop_stop(o->loop);
}

/* Jobs that waited together are answered together: no reply leaves while a job of the same
 * wake-up is still running, so the submitting worker wakes once for all of them. */
static void test_jobthread_replies_together(void **state) {
  (void)state;
  m5_loop_t *loop = m5_loop_new();
  towner_t o = {.loop = loop};
  m5_mailbox_t *replies = m5_mailbox_new(loop, 16, on_tjob_reply, &o);
  m5_jobthread_t *t = m5_jobthread_new(run_tjob, NULL);
  m5_jobthread_set_batch_sched(t); /* a thread that commits a wake-up's jobs together */
  assert_int_equal(m5_jobthread_start(t, 16), 0);
  atomic_int ran = 0;
  tjob_t jobs[5];
  pthread_mutex_lock(&gate_lock);
  for (int i = 0; i < 5; i++) {
    jobs[i] = (tjob_t){.base.reply = replies, .no = i, .ran = &ran};
    assert_int_equal(m5_jobthread_submit(t, &jobs[i].base), 0);
  }
  /* job 0 is running (or about to), the rest wait in the inbox */
  struct timespec ts = {0, 20 * 1000 * 1000};
  nanosleep(&ts, NULL);
  pthread_mutex_unlock(&gate_lock);
  assert_int_equal(m5_loop_run(loop), M5_OK);
  assert_int_equal(o.replies, 5);
  /* jobs 1..4 were in the inbox together: each reply came after all four ran */
  for (int i = 1; i < 5; i++) assert_int_equal(jobs[i].ran_at_reply, 5);
  m5_jobthread_free(t);
  m5_mailbox_free(replies, NULL);
  m5_loop_free(loop);
}

static void test_workers_follow_affinity(void **state) {
  (void)state;
  cpu_set_t old, one;
  assert_int_equal(sched_getaffinity(0, sizeof old, &old), 0);
  size_t all = (size_t)CPU_COUNT(&old);
  assert_int_equal(m5_daemon_workers(0), all > 64 ? 64 : all);
  CPU_ZERO(&one);
  for (int i = 0; i < CPU_SETSIZE; i++) {
    if (CPU_ISSET(i, &old)) {
      CPU_SET(i, &one);
      break;
    }
  }
  assert_int_equal(sched_setaffinity(0, sizeof one, &one), 0);
  size_t pinned = m5_daemon_workers(0);
  assert_int_equal(sched_setaffinity(0, sizeof old, &old), 0);
  assert_int_equal(pinned, 1);
  assert_int_equal(m5_daemon_workers(3), 3); /* a configured count is taken as it is */
  assert_int_equal(m5_daemon_workers(1000), 64);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_fd_readiness),
      cmocka_unit_test(test_timers_fire_in_order_and_cancel),
      cmocka_unit_test(test_stale_timer_id_does_not_cancel_reused_slot),
      cmocka_unit_test(test_many_timers),
      cmocka_unit_test(test_mailbox_cross_thread_in_order),
      cmocka_unit_test(test_mailbox_bound_and_drop),
      cmocka_unit_test(test_mailbox_free_right_after_last_message),
      cmocka_unit_test(test_stop_from_other_thread),
      cmocka_unit_test(test_signal_delivery),
      cmocka_unit_test(test_defer_once_after_events),
      cmocka_unit_test(test_defer_cancel_and_requeue),
      cmocka_unit_test(test_mailbox_post_many_bound),
      cmocka_unit_test(test_jobthread_replies_together),
      cmocka_unit_test(test_workers_follow_affinity),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
