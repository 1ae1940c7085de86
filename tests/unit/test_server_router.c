/* Unit tests for src/server/delivery/router.c: the session directory (the newer session wins, a
 * replaced session cannot unbind its successor) and posting between workers' mailboxes. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "core/err.h"
#include "core/loop.h"
#include "server/delivery/router.h"

static void test_directory(void **state) {
  (void)state;
  router_t *r = router_new(2);
  router_loc_t loc, old = {99, 99, 0};
  assert_int_equal(router_find(r, "ue1", &loc), M5_ENOENT);
  assert_int_equal(router_bind(r, "ue1", (router_loc_t){0, 1, 0}, &old), 0);
  assert_int_equal(old.sid, 99); /* untouched: nothing was replaced */
  assert_int_equal(router_bind(r, "ue1", (router_loc_t){0, 1, 0}, &old), 0); /* same session */
  assert_int_equal(router_bind(r, "ue1", (router_loc_t){1, 7, 0}, &old), 1);
  assert_int_equal(old.worker, 0);
  assert_int_equal(old.sid, 1);
  assert_int_equal(router_find(r, "ue1", &loc), 0);
  assert_int_equal(loc.worker, 1);
  assert_int_equal(loc.sid, 7);
  /* The replaced session closes later: it must not remove its successor. */
  assert_int_equal(router_unbind(r, "ue1", 1), M5_ENOENT);
  assert_int_equal(router_find(r, "ue1", &loc), 0);
  assert_int_equal(router_count(r), 1);
  assert_int_equal(router_unbind(r, "ue1", 7), 0);
  assert_int_equal(router_find(r, "ue1", &loc), M5_ENOENT);
  assert_int_equal(router_count(r), 0);
  router_free(r);
}

typedef struct {
  m5_loop_t *loop;
  router_msg_t *got;
  int box; /* 1 inbox, 2 results */
} sink_t;

static void on_inbox(void *msg, void *arg) {
  sink_t *s = arg;
  s->got = msg;
  s->box = 1;
  m5_loop_stop(s->loop);
}

static void on_results(void *msg, void *arg) {
  sink_t *s = arg;
  s->got = msg;
  s->box = 2;
  m5_loop_stop(s->loop);
}

static void test_post_and_kick(void **state) {
  (void)state;
  sink_t s = {.loop = m5_loop_new()};
  m5_mailbox_t *in = m5_mailbox_new(s.loop, 1, on_inbox, &s);
  m5_mailbox_t *res = m5_mailbox_new(s.loop, 1, on_results, &s);
  router_t *r = router_new(1);
  assert_int_equal(router_attach(r, 0, in, res), 0);
  assert_int_equal(router_attach(r, 1, in, res), M5_ENOENT);

  router_msg_t *m = router_msg_new(ROUTER_RESULT);
  assert_int_equal(router_post(r, 1, m), M5_ENOENT);
  assert_int_equal(router_post(r, 0, m), 0);
  assert_int_equal(m5_loop_run(s.loop), 0);
  assert_ptr_equal(s.got, m);
  assert_int_equal(s.box, 2);
  router_msg_free(s.got);

  /* kick: a CLOSE for the live session, to the worker holding it; none without one. */
  assert_int_equal(router_kick(r, "ue1"), M5_ENOENT);
  assert_int_equal(router_bind(r, "ue1", (router_loc_t){0, 42, 0}, NULL), 0);
  assert_int_equal(router_kick(r, "ue1"), 0);
  /* The inbox holds one message: a second one is refused, not lost silently. */
  assert_int_equal(router_kick(r, "ue1"), M5_EFULL);
  assert_int_equal(m5_loop_run(s.loop), 0);
  assert_int_equal(s.box, 1);
  assert_int_equal(s.got->kind, ROUTER_CLOSE);
  assert_int_equal(s.got->sid, 42);
  assert_string_equal(s.got->ue_svc_id, "ue1");
  router_msg_free(s.got);

  router_free(r);
  m5_mailbox_free(in, NULL);
  m5_mailbox_free(res, NULL);
  m5_loop_free(s.loop);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_directory),
      cmocka_unit_test(test_post_and_kick),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
