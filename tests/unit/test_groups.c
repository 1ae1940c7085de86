/* Unit tests for src/server/groups/ (groups.h): groups and broadcast areas in the registry's
 * database through its DB thread, and the in-memory copy the message path will read: create,
 * members (UEs and ASs; areas UEs only), grants and who may send / manage, the generation and
 * since contract with the fan-out (a removed member, a deleted and re-created group), the
 * change hook, every bound, a 10,000-member group, persistence across a reopen, the
 * in-place upgrade of an m5s.db from before groups, the hand-over of a re-bound UE Service ID
 * and of a deleted AS client (nothing of the old holder's stays), and the per-AS member
 * budget. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <sqlite3.h>

#include "core/err.h"
#include "core/loop.h"
#include "server/groups/groups.h"
#include "server/registry/registry.h"
#include "testutil.h"

typedef struct {
  m5_loop_t *loop;
  m5_mailbox_t *replies;
  m5_job_t *done;
} fixture_t;

static char dir_template[] = "/tmp/m5s-groups-XXXXXX";
static char db_path[256];

static void on_reply(void *msg, void *arg) {
  fixture_t *f = arg;
  f->done = msg;
  m5_loop_stop(f->loop);
}

static fixture_t F;

static int run(registry_t *r, groups_job_t *job) {
  job->rj.base.reply = F.replies;
  F.done = NULL;
  assert_int_equal(groups_submit(r, job), 0);
  assert_int_equal(m5_loop_run(F.loop), 0);
  assert_ptr_equal(F.done, &job->rj.base);
  return job->status;
}

/* op on (kind, id) with principal p (or NULL) */
static int op(registry_t *r, groups_op_t o, groups_kind_t kind, const char *id, const char *p,
              unsigned rights, groups_job_t *out) {
  groups_job_t job;
  memset(&job, 0, sizeof job);
  job.op = o;
  job.kind = kind;
  snprintf(job.id, sizeof job.id, "%s", id);
  if (p) snprintf(job.principal, sizeof job.principal, "%s", p);
  job.rights = rights;
  int rc = run(r, &job);
  if (out) *out = job;
  groups_job_clear(&job);
  return rc;
}

static int create(registry_t *r, groups_kind_t kind, const char *id, const char *creator,
                  size_t n, const char *prefix, groups_job_t *out) {
  groups_job_t job;
  memset(&job, 0, sizeof job);
  job.op = GROUPS_CREATE;
  job.kind = kind;
  snprintf(job.id, sizeof job.id, "%s", id);
  snprintf(job.creator, sizeof job.creator, "%s", creator ? creator : "");
  if (n) {
    job.members = calloc(n, sizeof *job.members);
    assert_non_null(job.members);
    for (size_t i = 0; i < n; i++)
      snprintf(job.members[i], sizeof job.members[i], "%s%zu", prefix, i);
    job.n_members = n;
  }
  int rc = run(r, &job);
  if (out) *out = job;
  groups_job_clear(&job);
  return rc;
}

static registry_t *open_started(const groups_limits_t *lim) {
  char err[256];
  registry_t *r = registry_open(db_path, err, sizeof err);
  if (!r) fail_msg("registry_open: %s", err);
  if (lim) groups_set_limits(r, lim);
  assert_int_equal(registry_start(r, 16), 0);
  return r;
}

typedef struct {
  int deleted, removed;
  char last_member[GROUPS_PRINCIPAL_MAX + 1];
} hook_log_t;

static void hook(void *arg, groups_kind_t kind, const char *id, groups_event_t ev,
                 const char *member, uint64_t gen) {
  (void)kind;
  (void)id;
  (void)gen;
  hook_log_t *h = arg;
  if (ev == GROUPS_EV_DELETED) h->deleted++;
  if (ev == GROUPS_EV_MEMBER_REMOVED) {
    h->removed++;
    snprintf(h->last_member, sizeof h->last_member, "%s", member);
  }
}

static void test_members_grants_send_manage(void **state) {
  (void)state;
  char err[256];
  registry_t *r = registry_open(db_path, err, sizeof err);
  assert_non_null(r);
  hook_log_t h = {0};
  groups_set_hook(r, hook, &h);
  assert_int_equal(registry_start(r, 16), 0);
  groups_job_t j;

  assert_int_equal(create(r, GROUPS_GROUP, "fleet.a", "as:as1", 0, "", &j), 0);
  assert_true(j.created);
  assert_int_equal(create(r, GROUPS_GROUP, "fleet.a", "", 0, "", &j), M5_EEXIST);
  assert_int_equal(create(r, GROUPS_GROUP, "bad name", "", 0, "", &j), M5_EINVAL);
  assert_int_equal(create(r, GROUPS_AREA, "fleet.a", "", 0, "", &j), 0); /* own name space */
  assert_int_equal(create(r, GROUPS_AREA, "x", "as:as1", 0, "", &j), M5_EINVAL); /* operator's */
  assert_int_equal(op(r, GROUPS_ADD_MEMBER, GROUPS_GROUP, "fleet.a", "ue:ue1", 0, &j), 0);
  assert_true(j.created);
  assert_int_equal(op(r, GROUPS_ADD_MEMBER, GROUPS_GROUP, "fleet.a", "ue:ue1", 0, &j), 0);
  assert_false(j.created);
  assert_int_equal(op(r, GROUPS_ADD_MEMBER, GROUPS_GROUP, "fleet.a", "as:as3", 0, NULL), 0);
  assert_int_equal(op(r, GROUPS_ADD_MEMBER, GROUPS_GROUP, "fleet.a", "xx:1", 0, NULL), M5_EINVAL);
  assert_int_equal(op(r, GROUPS_ADD_MEMBER, GROUPS_GROUP, "nope", "ue:ue1", 0, &j), M5_ENOENT);
  assert_false(j.found);
  assert_int_equal(op(r, GROUPS_ADD_MEMBER, GROUPS_AREA, "fleet.a", "as:as3", 0, NULL),
                   M5_EINVAL); /* areas hold UEs only */
  assert_int_equal(op(r, GROUPS_ADD_MEMBER, GROUPS_AREA, "fleet.a", "ue:ue9", 0, NULL), 0);

  /* who may send: members and SEND grants on a group; only grants on an area */
  assert_true(groups_may_send(r, GROUPS_GROUP, "fleet.a", "ue:ue1"));
  assert_true(groups_may_send(r, GROUPS_GROUP, "fleet.a", "as:as1")); /* the creator */
  assert_false(groups_may_send(r, GROUPS_GROUP, "fleet.a", "as:as2"));
  assert_false(groups_may_send(r, GROUPS_GROUP, "nope", "ue:ue1"));
  assert_false(groups_may_send(r, GROUPS_AREA, "fleet.a", "ue:ue9"));
  assert_int_equal(op(r, GROUPS_GRANT, GROUPS_AREA, "fleet.a", "as:as2", GROUPS_RIGHT_SEND, NULL), 0);
  assert_true(groups_may_send(r, GROUPS_AREA, "fleet.a", "as:as2"));
  assert_int_equal(op(r, GROUPS_GRANT, GROUPS_AREA, "fleet.a", "as:as2", GROUPS_RIGHT_MANAGE, NULL),
                   M5_EINVAL);
  assert_int_equal(op(r, GROUPS_GRANT, GROUPS_GROUP, "fleet.a", "ue:ue5", GROUPS_RIGHT_MANAGE, NULL),
                   M5_EINVAL); /* only ASs manage */
  assert_true(groups_may_manage(r, "fleet.a", "as1"));
  assert_false(groups_may_manage(r, "fleet.a", "as2"));
  assert_int_equal(op(r, GROUPS_GRANT, GROUPS_GROUP, "fleet.a", "as:as2",
                      GROUPS_RIGHT_SEND | GROUPS_RIGHT_MANAGE, &j), 0);
  assert_true(j.created);
  assert_true(groups_may_manage(r, "fleet.a", "as2"));
  assert_true(groups_may_send(r, GROUPS_GROUP, "fleet.a", "as:as2"));
  assert_int_equal(op(r, GROUPS_REVOKE, GROUPS_GROUP, "fleet.a", "as:as2", 0, NULL), 0);
  assert_false(groups_may_manage(r, "fleet.a", "as2"));
  assert_int_equal(op(r, GROUPS_REVOKE, GROUPS_GROUP, "fleet.a", "as:as2", 0, &j), M5_ENOENT);
  assert_true(j.found);
  char(*ids)[M5_MSG_NAME_MAX + 1] = NULL;
  size_t n_ids;
  assert_int_equal(groups_managed_by(r, GROUPS_GROUP, "as:as1", &ids, &n_ids), 0);
  assert_int_equal(n_ids, 1);
  assert_string_equal(ids[0], "fleet.a");
  free(ids);

  /* the fan-out's contract: a delivery made at G is valid while the member stays */
  groups_member_t *m;
  size_t n;
  uint64_t g1;
  assert_int_equal(groups_members(r, GROUPS_GROUP, "fleet.a", &m, &n, &g1), 0);
  assert_int_equal(n, 2);
  assert_string_equal(m[0].principal, "as:as3");
  assert_string_equal(m[1].principal, "ue:ue1");
  free(m);
  assert_int_equal(groups_delivery_valid(r, GROUPS_GROUP, "fleet.a", "ue:ue1", g1), 0);
  assert_int_equal(op(r, GROUPS_DEL_MEMBER, GROUPS_GROUP, "fleet.a", "ue:ue1", 0, NULL), 0);
  assert_int_equal(h.removed, 1);
  assert_string_equal(h.last_member, "ue:ue1");
  assert_false(groups_may_send(r, GROUPS_GROUP, "fleet.a", "ue:ue1"));
  assert_int_equal(groups_delivery_valid(r, GROUPS_GROUP, "fleet.a", "ue:ue1", g1), M5_ENOENT);
  /* added again: the old delivery stays invalid, a new one is valid */
  assert_int_equal(op(r, GROUPS_ADD_MEMBER, GROUPS_GROUP, "fleet.a", "ue:ue1", 0, &j), 0);
  assert_true(j.gen > g1);
  assert_int_equal(groups_delivery_valid(r, GROUPS_GROUP, "fleet.a", "ue:ue1", g1), M5_ENOENT);
  assert_int_equal(groups_delivery_valid(r, GROUPS_GROUP, "fleet.a", "ue:ue1", j.gen), 0);
  assert_int_equal(groups_delivery_valid(r, GROUPS_GROUP, "fleet.a", "as:as3", g1), 0);
  assert_int_equal(op(r, GROUPS_DEL_MEMBER, GROUPS_GROUP, "fleet.a", "ue:zz", 0, &j), M5_ENOENT);
  assert_true(j.found);

  /* delete and re-create: every old delivery fails */
  uint64_t g2 = j.gen;
  assert_int_equal(op(r, GROUPS_DELETE, GROUPS_GROUP, "fleet.a", NULL, 0, NULL), 0);
  assert_int_equal(h.deleted, 1);
  assert_int_equal(op(r, GROUPS_DELETE, GROUPS_GROUP, "fleet.a", NULL, 0, NULL), M5_ENOENT);
  assert_int_equal(groups_delivery_valid(r, GROUPS_GROUP, "fleet.a", "as:as3", g2), M5_ENOENT);
  assert_int_equal(create(r, GROUPS_GROUP, "fleet.a", "", 3, "as:as", &j), 0);
  assert_int_equal(groups_delivery_valid(r, GROUPS_GROUP, "fleet.a", "as:as3", g2), M5_ENOENT);
  assert_int_equal(groups_delivery_valid(r, GROUPS_GROUP, "fleet.a", "as:as2", j.gen), 0);
  assert_false(groups_may_manage(r, "fleet.a", "as1")); /* the old grant went with it */

  /* update: replace the members (kept ones keep since), merge attributes */
  groups_job_t u;
  memset(&u, 0, sizeof u);
  u.op = GROUPS_UPDATE;
  u.kind = GROUPS_GROUP;
  snprintf(u.id, sizeof u.id, "fleet.a");
  u.set_members = 1;
  u.members = calloc(3, sizeof *u.members);
  snprintf(u.members[0], sizeof u.members[0], "as:as2");
  snprintf(u.members[1], sizeof u.members[1], "ue:new");
  snprintf(u.members[2], sizeof u.members[2], "ue:new"); /* twice: once */
  u.n_members = 3;
  u.attrs = strdup("{\"grpDesc\":\"d\",\"valGrpConf\":\"c\"}");
  uint64_t g3 = j.gen;
  h.removed = 0;
  assert_int_equal(run(r, &u), 0);
  groups_job_clear(&u);
  assert_int_equal(h.removed, 2); /* as:as0, as:as1 */
  assert_int_equal(groups_delivery_valid(r, GROUPS_GROUP, "fleet.a", "as:as2", g3), 0);
  assert_int_equal(groups_delivery_valid(r, GROUPS_GROUP, "fleet.a", "ue:new", g3), M5_ENOENT);
  memset(&u, 0, sizeof u);
  u.op = GROUPS_UPDATE;
  u.kind = GROUPS_GROUP;
  snprintf(u.id, sizeof u.id, "fleet.a");
  u.attrs = strdup("{\"grpDesc\":null,\"valSvcInf\":\"i\"}");
  assert_int_equal(run(r, &u), 0);
  groups_job_clear(&u);
  groups_info_t info;
  assert_int_equal(groups_get(r, GROUPS_GROUP, "fleet.a", &info), 0);
  assert_int_equal(info.n_members, 2);
  assert_string_equal(info.attrs, "{\"valGrpConf\":\"c\",\"valSvcInf\":\"i\"}");
  groups_info_clear(&info);
  /* a batch of members: one transaction; present ones keep their since */
  assert_int_equal(create(r, GROUPS_GROUP, "batch", "", 0, "", &j), 0);
  const char *const b1[] = {"ue:a", "ue:b", "ue:a"}, *const b2[] = {"ue:b", "ue:c"};
  uint64_t gb = 0;
  for (int round = 0; round < 2; round++) {
    memset(&u, 0, sizeof u);
    u.op = GROUPS_ADD_MEMBERS;
    u.kind = GROUPS_GROUP;
    snprintf(u.id, sizeof u.id, "batch");
    u.n_members = round ? 2 : 3;
    u.members = calloc(u.n_members, sizeof *u.members);
    for (size_t i = 0; i < u.n_members; i++)
      snprintf(u.members[i], sizeof u.members[i], "%s", round ? b2[i] : b1[i]);
    assert_int_equal(run(r, &u), 0);
    assert_int_equal(u.created, round ? 1 : 2);
    groups_job_clear(&u);
    if (!round) gb = u.gen;
  }
  assert_int_equal(groups_delivery_valid(r, GROUPS_GROUP, "batch", "ue:b", gb), 0);
  assert_int_equal(groups_delivery_valid(r, GROUPS_GROUP, "batch", "ue:c", gb), M5_ENOENT);
  assert_int_equal(op(r, GROUPS_DELETE, GROUPS_GROUP, "batch", NULL, 0, NULL), 0);
  assert_int_equal(groups_count(r, GROUPS_GROUP), 1);
  assert_int_equal(groups_count(r, GROUPS_AREA), 1);
  registry_close(r);

  /* persisted: a reopen finds everything, and generations keep growing */
  r = open_started(NULL);
  assert_int_equal(groups_get(r, GROUPS_GROUP, "fleet.a", &info), 0);
  assert_string_equal(info.creator, "");
  assert_int_equal(info.n_members, 2);
  uint64_t g4 = info.gen;
  groups_info_clear(&info);
  assert_true(groups_may_send(r, GROUPS_AREA, "fleet.a", "as:as2"));
  assert_int_equal(groups_delivery_valid(r, GROUPS_GROUP, "fleet.a", "ue:new", g4), 0);
  assert_int_equal(op(r, GROUPS_DELETE, GROUPS_GROUP, "fleet.a", NULL, 0, NULL), 0);
  assert_int_equal(create(r, GROUPS_GROUP, "fleet.a", "", 0, "", &j), 0);
  assert_true(j.gen > g4);
  registry_close(r);
}

static void test_bounds_and_big_group(void **state) {
  (void)state;
  groups_limits_t lim = {.max_groups = 3, .max_members = 10000, .max_total_members = 10003,
                         .max_grants = 2, .max_per_as = 1};
  registry_t *r = open_started(&lim);
  groups_job_t j;
  struct timespec t0, t1;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  assert_int_equal(create(r, GROUPS_GROUP, "big", "", 10000, "ue:member-", &j), 0);
  clock_gettime(CLOCK_MONOTONIC, &t1);
  /* logged, never asserted: one transaction for the 10,000 rows */
  print_message("a 10,000-member group created in %.1f ms\n",
                (double)(t1.tv_sec - t0.tv_sec) * 1e3 + (double)(t1.tv_nsec - t0.tv_nsec) / 1e6);
  groups_member_t *m;
  size_t n;
  assert_int_equal(groups_members(r, GROUPS_GROUP, "big", &m, &n, NULL), 0);
  assert_int_equal(n, 10000);
  free(m);
  assert_true(groups_may_send(r, GROUPS_GROUP, "big", "ue:member-9999"));
  assert_int_equal(op(r, GROUPS_ADD_MEMBER, GROUPS_GROUP, "big", "ue:one-more", 0, &j), M5_ERANGE);
  assert_non_null(strstr(j.why, "max_members"));
  assert_int_equal(create(r, GROUPS_GROUP, "over", "", 10001, "ue:m", &j), M5_ERANGE);
  assert_int_equal(create(r, GROUPS_GROUP, "total", "", 4, "ue:m", &j), M5_ERANGE);
  assert_non_null(strstr(j.why, "max_total_members"));
  /* one AS may not take the whole name space */
  assert_int_equal(create(r, GROUPS_GROUP, "by-as1", "as:as1", 0, "", &j), 0);
  assert_int_equal(create(r, GROUPS_GROUP, "by-as1.b", "as:as1", 0, "", &j), M5_ERANGE);
  assert_non_null(strstr(j.why, "max_groups_per_as"));
  assert_int_equal(op(r, GROUPS_DELETE, GROUPS_GROUP, "by-as1", NULL, 0, NULL), 0);
  assert_int_equal(create(r, GROUPS_GROUP, "g2", "", 3, "ue:m", &j), 0);
  assert_int_equal(op(r, GROUPS_ADD_MEMBER, GROUPS_GROUP, "g2", "ue:x", 0, &j), M5_ERANGE);
  assert_int_equal(create(r, GROUPS_AREA, "a3", "", 0, "", &j), 0);
  assert_int_equal(create(r, GROUPS_AREA, "a4", "", 0, "", &j), M5_ERANGE);
  assert_non_null(strstr(j.why, "max_groups"));
  assert_int_equal(op(r, GROUPS_GRANT, GROUPS_AREA, "a3", "as:a", GROUPS_RIGHT_SEND, NULL), 0);
  assert_int_equal(op(r, GROUPS_GRANT, GROUPS_AREA, "a3", "ue:b", GROUPS_RIGHT_SEND, NULL), 0);
  assert_int_equal(op(r, GROUPS_GRANT, GROUPS_AREA, "a3", "as:c", GROUPS_RIGHT_SEND, &j), M5_ERANGE);
  /* a change of rights is no new grant */
  assert_int_equal(op(r, GROUPS_GRANT, GROUPS_GROUP, "g2", "as:a", GROUPS_RIGHT_SEND, NULL), 0);
  assert_int_equal(op(r, GROUPS_GRANT, GROUPS_GROUP, "g2", "as:b", GROUPS_RIGHT_SEND, NULL), 0);
  assert_int_equal(op(r, GROUPS_GRANT, GROUPS_GROUP, "g2", "as:a", 3, NULL), 0);
  /* deleting frees its members from the total */
  assert_int_equal(op(r, GROUPS_DELETE, GROUPS_GROUP, "g2", NULL, 0, NULL), 0);
  assert_int_equal(create(r, GROUPS_GROUP, "g3", "", 3, "ue:m", &j), 0);
  registry_close(r);
  /* the big group loads again */
  clock_gettime(CLOCK_MONOTONIC, &t0);
  r = open_started(NULL);
  clock_gettime(CLOCK_MONOTONIC, &t1);
  print_message("reopened with 10,006 members in %.1f ms\n",
                (double)(t1.tv_sec - t0.tv_sec) * 1e3 + (double)(t1.tv_nsec - t0.tv_nsec) / 1e6);
  assert_true(groups_may_send(r, GROUPS_GROUP, "big", "ue:member-0"));
  groups_info_t info;
  assert_int_equal(groups_get(r, GROUPS_GROUP, "big", &info), 0);
  assert_int_equal(info.n_members, 10000);
  groups_info_clear(&info);
  registry_close(r);
}

static int run_reg(registry_t *r, registry_job_t *job) {
  job->base.reply = F.replies;
  F.done = NULL;
  assert_int_equal(registry_submit(r, job), 0);
  assert_int_equal(m5_loop_run(F.loop), 0);
  assert_ptr_equal(F.done, &job->base);
  return job->status;
}

static int bind_ue(registry_t *r, const char *id, const char *supi) {
  registry_job_t j;
  memset(&j, 0, sizeof j);
  j.op = supi ? REGISTRY_BIND : REGISTRY_UNBIND;
  snprintf(j.ue_svc_id, sizeof j.ue_svc_id, "%s", id);
  if (supi) snprintf(j.supi, sizeof j.supi, "%s", supi);
  return run_reg(r, &j);
}

static int as_client(registry_t *r, const char *id, int del) {
  registry_as_t as;
  memset(&as, 0, sizeof as);
  snprintf(as.as_svc_id, sizeof as.as_svc_id, "%s", id);
  if (!del) {
    as.n_targets = 1;
    snprintf(as.targets[0], sizeof as.targets[0], "as.example:443");
  }
  registry_job_t j;
  memset(&j, 0, sizeof j);
  j.op = del ? REGISTRY_AS_DEL : REGISTRY_AS_PUT;
  j.as = &as;
  return run_reg(r, &j);
}

static int is_member(registry_t *r, groups_kind_t kind, const char *id, const char *p) {
  groups_member_t *m;
  size_t n;
  int found = 0;
  if (groups_members(r, kind, id, &m, &n, NULL) != 0) return 0;
  for (size_t i = 0; i < n; i++)
    found |= !strcmp(m[i].principal, p);
  free(m);
  return found;
}

static size_t n_grants(registry_t *r, groups_kind_t kind, const char *id) {
  groups_info_t info;
  assert_int_equal(groups_get(r, kind, id, &info), 0);
  size_t n = info.n_grants;
  groups_info_clear(&info);
  return n;
}

/* The hand-over of an identifier (groups_int.h): a re-bound or un-bound UE Service ID leaves
 * every group and area, its grants go; a deleted AS client's grants, memberships and created
 * groups go; each in the registry job's transaction, each removal told to the hook. */
static void test_handover(void **state) {
  (void)state;
  char err[256];
  registry_t *r = registry_open(db_path, err, sizeof err);
  assert_non_null(r);
  hook_log_t h;
  memset(&h, 0, sizeof h);
  groups_set_hook(r, hook, &h);
  assert_int_equal(registry_start(r, 16), 0);
  groups_job_t j;
  assert_int_equal(bind_ue(r, "u1", "001010000000001"), 0);
  assert_int_equal(as_client(r, "as1", 0), 0);
  assert_int_equal(create(r, GROUPS_GROUP, "g1", "", 0, "", NULL), 0);
  assert_int_equal(op(r, GROUPS_ADD_MEMBER, GROUPS_GROUP, "g1", "ue:u1", 0, NULL), 0);
  assert_int_equal(op(r, GROUPS_ADD_MEMBER, GROUPS_GROUP, "g1", "ue:u2", 0, NULL), 0);
  assert_int_equal(op(r, GROUPS_ADD_MEMBER, GROUPS_GROUP, "g1", "as:as1", 0, NULL), 0);
  assert_int_equal(op(r, GROUPS_GRANT, GROUPS_GROUP, "g1", "as:as1", 3, NULL), 0);
  assert_int_equal(create(r, GROUPS_AREA, "a1", "", 0, "", NULL), 0);
  assert_int_equal(op(r, GROUPS_ADD_MEMBER, GROUPS_AREA, "a1", "ue:u1", 0, NULL), 0);
  assert_int_equal(op(r, GROUPS_GRANT, GROUPS_AREA, "a1", "ue:u1", GROUPS_RIGHT_SEND, NULL), 0);
  assert_int_equal(op(r, GROUPS_GRANT, GROUPS_AREA, "a1", "as:as1", GROUPS_RIGHT_SEND, NULL), 0);
  assert_int_equal(create(r, GROUPS_GROUP, "mine", "as:as1", 3, "ue:m", &j), 0);
  uint64_t g_before = j.gen;
  uint64_t at;
  groups_member_t *m;
  size_t n;
  assert_int_equal(groups_members(r, GROUPS_GROUP, "g1", &m, &n, &at), 0);
  free(m);

  /* the same SUPI again: nothing changes */
  assert_int_equal(bind_ue(r, "u1", "001010000000001"), 0);
  assert_true(is_member(r, GROUPS_GROUP, "g1", "ue:u1"));
  assert_int_equal(h.removed, 0);
  /* another SUPI: ue:u1 leaves g1 and a1, its grant on a1 goes; u2 stays */
  assert_int_equal(bind_ue(r, "u1", "001010000000002"), 0);
  assert_false(is_member(r, GROUPS_GROUP, "g1", "ue:u1"));
  assert_false(is_member(r, GROUPS_AREA, "a1", "ue:u1"));
  assert_false(groups_may_send(r, GROUPS_AREA, "a1", "ue:u1"));
  assert_false(groups_may_send(r, GROUPS_GROUP, "g1", "ue:u1"));
  assert_true(is_member(r, GROUPS_GROUP, "g1", "ue:u2"));
  assert_int_equal(n_grants(r, GROUPS_AREA, "a1"), 1);
  assert_int_equal(h.removed, 2); /* one MEMBER_REMOVED per membership */
  assert_string_equal(h.last_member, "ue:u1");
  /* a delivery made for the old holder fails */
  assert_int_equal(groups_delivery_valid(r, GROUPS_GROUP, "g1", "ue:u1", at), M5_ENOENT);
  assert_int_equal(groups_delivery_valid(r, GROUPS_GROUP, "g1", "ue:u2", at), 0);
  /* added again, then un-bound: gone again */
  assert_int_equal(op(r, GROUPS_ADD_MEMBER, GROUPS_GROUP, "g1", "ue:u1", 0, NULL), 0);
  assert_int_equal(bind_ue(r, "u1", NULL), 0);
  assert_false(is_member(r, GROUPS_GROUP, "g1", "ue:u1"));
  assert_int_equal(h.removed, 3);

  /* deleting the AS client: its created group is deleted (hook DELETED), its membership
   * and grants elsewhere go */
  h.removed = 0;
  assert_int_equal(as_client(r, "as1", 1), 0);
  assert_int_equal(groups_get(r, GROUPS_GROUP, "mine", &(groups_info_t){0}), M5_ENOENT);
  assert_int_equal(h.deleted, 1);
  assert_int_equal(h.removed, 1);
  assert_false(is_member(r, GROUPS_GROUP, "g1", "as:as1"));
  assert_int_equal(n_grants(r, GROUPS_GROUP, "g1"), 0);
  assert_int_equal(n_grants(r, GROUPS_AREA, "a1"), 0);
  assert_false(groups_may_manage(r, "g1", "as1"));
  char(*ids)[M5_MSG_NAME_MAX + 1] = NULL;
  assert_int_equal(groups_managed_by(r, GROUPS_GROUP, "as:as1", &ids, &n), 0);
  assert_int_equal(n, 0);
  free(ids);
  /* the deleted group's members left the total: a group of them fits again */
  groups_info_t info;
  assert_int_equal(groups_get(r, GROUPS_GROUP, "g1", &info), 0);
  assert_true(info.gen > g_before);
  assert_int_equal(info.n_members, 1);
  groups_info_clear(&info);
  /* re-created under the same asSvcId: it starts with nothing */
  assert_int_equal(as_client(r, "as1", 0), 0);
  assert_false(groups_may_manage(r, "g1", "as1"));
  assert_false(groups_may_send(r, GROUPS_AREA, "a1", "as:as1"));
  assert_int_equal(as_client(r, "nobody", 1), M5_ENOENT);
  registry_close(r);
  /* committed: the rows are gone too */
  r = open_started(NULL);
  assert_int_equal(groups_get(r, GROUPS_GROUP, "mine", &(groups_info_t){0}), M5_ENOENT);
  assert_false(is_member(r, GROUPS_GROUP, "g1", "as:as1"));
  assert_false(is_member(r, GROUPS_GROUP, "g1", "ue:u1"));
  assert_int_equal(n_grants(r, GROUPS_AREA, "a1"), 0);
  assert_int_equal(n_grants(r, GROUPS_GROUP, "g1"), 0);
  assert_true(is_member(r, GROUPS_GROUP, "g1", "ue:u2"));
  registry_close(r);
}

/* groups.max_members_per_as: the members of all the groups one AS created, together. */
static void test_members_per_as(void **state) {
  (void)state;
  groups_limits_t lim = {.max_groups = 100, .max_members = 100, .max_total_members = 1000,
                         .max_grants = 8, .max_per_as = 10, .max_members_per_as = 5};
  registry_t *r = open_started(&lim);
  groups_job_t j;
  assert_int_equal(create(r, GROUPS_GROUP, "x1", "as:x", 4, "ue:a", &j), 0);
  assert_int_equal(create(r, GROUPS_GROUP, "x2", "as:x", 2, "ue:b", &j), M5_ERANGE);
  assert_non_null(strstr(j.why, "max_members_per_as"));
  assert_int_equal(create(r, GROUPS_GROUP, "x2", "as:x", 1, "ue:b", &j), 0);
  assert_int_equal(op(r, GROUPS_ADD_MEMBER, GROUPS_GROUP, "x1", "ue:c", 0, &j), M5_ERANGE);
  assert_non_null(strstr(j.why, "max_members_per_as"));
  /* the same budget through a replacing list and a batch */
  groups_job_t u;
  memset(&u, 0, sizeof u);
  u.op = GROUPS_UPDATE;
  u.kind = GROUPS_GROUP;
  snprintf(u.id, sizeof u.id, "x2");
  u.set_members = 1;
  u.n_members = 2;
  u.members = calloc(2, sizeof *u.members);
  snprintf(u.members[0], sizeof u.members[0], "ue:b0");
  snprintf(u.members[1], sizeof u.members[1], "ue:b1");
  assert_int_equal(run(r, &u), M5_ERANGE);
  groups_job_clear(&u);
  memset(&u, 0, sizeof u);
  u.op = GROUPS_ADD_MEMBERS;
  u.kind = GROUPS_GROUP;
  snprintf(u.id, sizeof u.id, "x2");
  u.n_members = 1;
  u.members = calloc(1, sizeof *u.members);
  snprintf(u.members[0], sizeof u.members[0], "ue:z");
  assert_int_equal(run(r, &u), M5_ERANGE);
  groups_job_clear(&u);
  /* another AS, and the operator, have budgets of their own */
  assert_int_equal(create(r, GROUPS_GROUP, "y1", "as:y", 5, "ue:a", &j), 0);
  assert_int_equal(create(r, GROUPS_GROUP, "op", "", 50, "ue:a", &j), 0);
  /* leaving frees the budget */
  assert_int_equal(op(r, GROUPS_DEL_MEMBER, GROUPS_GROUP, "x1", "ue:a0", 0, NULL), 0);
  assert_int_equal(op(r, GROUPS_ADD_MEMBER, GROUPS_GROUP, "x2", "ue:b9", 0, NULL), 0);
  registry_close(r);
}

/* An m5s.db from before groups (bindings and AS clients only) gains the tables in place and
 * keeps what it had. */
static void test_upgrade(void **state) {
  (void)state;
  sqlite3 *db = NULL;
  assert_int_equal(sqlite3_open(db_path, &db), SQLITE_OK);
  assert_int_equal(sqlite3_exec(db,
                                "CREATE TABLE bindings (ue_svc_id TEXT PRIMARY KEY,"
                                " supi TEXT NOT NULL) WITHOUT ROWID;"
                                "INSERT INTO bindings VALUES ('old', '001010000000007');",
                                NULL, NULL, NULL),
                   SQLITE_OK);
  sqlite3_close(db);
  registry_t *r = open_started(NULL);
  registry_entry_t e;
  assert_int_equal(registry_lookup(r, "old", 1000, &e), 0);
  assert_int_equal(groups_count(r, GROUPS_GROUP), 0);
  groups_job_t j;
  assert_int_equal(create(r, GROUPS_GROUP, "after", "", 1, "ue:old", &j), 0);
  registry_close(r);
  r = open_started(NULL);
  assert_true(groups_may_send(r, GROUPS_GROUP, "after", "ue:old0"));
  registry_close(r);
}

static void test_principals(void **state) {
  (void)state;
  assert_true(groups_principal_valid("ue:a/b%c", 1));
  assert_true(groups_principal_valid("as:as-1.x", 0));
  assert_false(groups_principal_valid("as:as-1.x", 1));
  assert_false(groups_principal_valid("as:a/b", 0));
  assert_false(groups_principal_valid("ue:", 0));
  assert_false(groups_principal_valid("ue:a b", 0));
  assert_false(groups_principal_valid("gw:x", 0));
  assert_string_equal(groups_kind_name(GROUPS_AREA), "area");
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

static int setup(void **state) {
  (void)state;
  if (!mkdtemp(dir_template)) return -1;
  snprintf(db_path, sizeof db_path, "%s/m5s.db", dir_template);
  F.loop = m5_loop_new();
  F.replies = m5_mailbox_new(F.loop, 4, on_reply, &F);
  return F.replies ? 0 : -1;
}

static int teardown(void **state) {
  (void)state;
  m5_mailbox_free(F.replies, NULL);
  m5_loop_free(F.loop);
  return tu_rmtree(dir_template);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup(test_members_grants_send_manage, fresh),
      cmocka_unit_test_setup(test_bounds_and_big_group, fresh),
      cmocka_unit_test_setup(test_upgrade, fresh),
      cmocka_unit_test_setup(test_handover, fresh),
      cmocka_unit_test_setup(test_members_per_as, fresh),
      cmocka_unit_test(test_principals),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
