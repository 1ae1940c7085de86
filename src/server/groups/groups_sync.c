/* The store catching up with membership changes (groups_sync.h). */
#include "server/groups/groups_sync.h"

#include "core/err.h"
#include "core/log.h"
#include "server/groups/groups_fanout.h"
#include "server/test_hooks.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DOM "groups"
#define EVENTS_MAX 4096     /* changes waiting for their sweep */
#define RETRY_MS 200        /* the store was busy */
#define SWEEP_MESSAGES 64   /* messages one sweep job looks at */

/* One change to sweep for: a member (principal) of a group, or a whole group (principal ""),
 * or every group message (all). */
typedef struct ev {
  struct ev *next;
  int all;
  groups_kind_t kind;
  char id[M5_MSG_NAME_MAX + 1];
  groups_principal_t member;
} ev_t;

struct groups_sync {
  m5_loop_t *loop;
  registry_t *reg;
  m5_store_t *store;
  m5_mailbox_t *events;  /* ev_t from the registry's DB thread */
  m5_mailbox_t *replies; /* the sweep's store job */
  ev_t *head, *tail;     /* waiting for the running sweep */
  size_t n_waiting;      /* at most EVENTS_MAX: beyond, one sweep of everything replaces them */
  atomic_int lost;       /* a change could not be posted: sweep everything */
  m5_store_job_t job;    /* the one sweep running (job.base first: the store hands it back) */
  ev_t *cur;             /* its change */
  int busy;
  m5_timer_id_t retry, lost_timer;
};

/* The sweep job of change e from cursor: every delivery of that group to that member, or of
 * that group, or of every group and area. */
/* A sweep of every group and area message from cursor (its reply to reply): the start-up one,
 * and the base of the others. */
static void sweep_all_job(m5_store_job_t *j, registry_t *reg, m5_mailbox_t *reply,
                          uint64_t cursor) {
  memset(j, 0, sizeof *j);
  j->op = M5_STORE_GROUP_SWEEP;
  j->base.reply = reply;
  j->group_check = groups_fanout_check;
  j->group_check_arg = reg;
  j->limit = SWEEP_MESSAGES;
  j->id = cursor;
}

static void set_job(groups_sync_t *g, const ev_t *e, uint64_t cursor) {
  m5_store_job_t *j = &g->job;
  sweep_all_job(j, g->reg, g->replies, cursor);
  if (e->all) return;
  snprintf(j->msg.dest.type, sizeof j->msg.dest.type, "%s",
           e->kind == GROUPS_AREA ? "BC" : "GROUP");
  snprintf(j->msg.dest.addr, sizeof j->msg.dest.addr, "%s", e->id);
  if (e->member[0]) {
    snprintf(j->rcpt.type, sizeof j->rcpt.type, "%s", strncmp(e->member, "as:", 3) ? "UE" : "AS");
    snprintf(j->rcpt.addr, sizeof j->rcpt.addr, "%s", e->member + 3);
  }
}

static void next(groups_sync_t *g);

static void on_retry(m5_loop_t *loop, void *arg) {
  (void)loop;
  groups_sync_t *g = arg;
  g->retry = 0;
  next(g);
}

static void free_list(ev_t *e) {
  while (e) {
    ev_t *n = e->next;
    free(e);
    e = n;
  }
}

/* Starts the next sweep unless one runs or waits: a lost change first (a sweep of everything
 * covers every other change waiting). */
static void next(groups_sync_t *g) {
  if (g->busy || g->retry) return;
  if (!g->cur && atomic_exchange(&g->lost, 0)) {
    if (!(g->cur = calloc(1, sizeof *g->cur))) {
      atomic_store(&g->lost, 1);
      g->retry = m5_loop_timer_add(g->loop, RETRY_MS, on_retry, g);
      return;
    }
    g->cur->all = 1;
    free_list(g->head);
    g->head = g->tail = NULL;
    g->n_waiting = 0;
    set_job(g, g->cur, 0);
  } else if (!g->cur && g->head) {
    g->cur = g->head;
    g->head = g->head->next;
    if (!g->head) g->tail = NULL;
    g->n_waiting--;
    set_job(g, g->cur, 0);
  }
  if (!g->cur) return;
  char path[4096]; /* test builds: the sweep held, as a crash before it would leave it */
  if (m5_test_hook_armed("hold-group-sweep", path, sizeof path)) {
    g->retry = m5_loop_timer_add(g->loop, RETRY_MS, on_retry, g);
    return;
  }
  if (m5_store_submit(g->store, &g->job) == 0)
    g->busy = 1;
  else /* the store's queue is full: the same job a little later */
    g->retry = m5_loop_timer_add(g->loop, RETRY_MS, on_retry, g);
}

static void on_event(void *msg, void *arg) {
  groups_sync_t *g = arg;
  ev_t *e = msg;
  if (g->n_waiting >= EVENTS_MAX) {
    /* Changes come faster than their sweeps (e.g. a group emptied and filled again and
     * again): one sweep of every group message covers them all, in bounded memory. */
    free(e);
    free_list(g->head);
    g->head = g->tail = NULL;
    g->n_waiting = 0;
    atomic_store(&g->lost, 1);
    next(g);
    return;
  }
  g->n_waiting++;
  e->next = NULL;
  if (g->tail)
    g->tail->next = e;
  else
    g->head = e;
  g->tail = e;
  next(g);
}

static void on_reply(void *msg, void *arg) {
  (void)msg; /* &g->job */
  groups_sync_t *g = arg;
  m5_store_job_t *j = &g->job;
  g->busy = 0;
  ev_t *e = g->cur;
  if (j->status != 0) { /* M5_EIO: the same page again, a little later */
    M5_LOGW(DOM, "sweeping group deliveries failed (%s); trying again", m5_strerror(j->status));
    set_job(g, e, j->id);
    g->retry = m5_loop_timer_add(g->loop, RETRY_MS, on_retry, g);
    return;
  }
  if (j->group_failed)
    M5_LOGI(DOM, "%s%s%s%s: %llu queued deliveries failed", e->all ? "every group message" : e->id,
            e->member[0] ? " (" : "", e->member, e->member[0] ? " left)" : " (deleted)",
            (unsigned long long)j->group_failed);
  if (j->more) {
    uint64_t cursor = j->id;
    set_job(g, e, cursor);
    next(g); /* submits it (g->cur is set), or retries it */
    return;
  }
  free(e);
  g->cur = NULL;
  next(g);
}

/* The registry's DB thread, after a commit: must not block. */
static void hook(void *arg, groups_kind_t kind, const char *id, groups_event_t ev,
                 const char *member, uint64_t gen) {
  (void)gen;
  groups_sync_t *g = arg;
  ev_t *e = calloc(1, sizeof *e);
  if (e) {
    e->kind = kind;
    snprintf(e->id, sizeof e->id, "%s", id);
    if (ev == GROUPS_EV_MEMBER_REMOVED) snprintf(e->member, sizeof e->member, "%s", member);
  }
  if (!e || m5_mailbox_post(g->events, e) != 0) {
    free(e);
    atomic_store(&g->lost, 1); /* picked up by the next sweep's end or the timer below */
  }
}

static void on_lost_check(m5_loop_t *loop, void *arg);

groups_sync_t *groups_sync_new(m5_loop_t *loop, registry_t *reg, m5_store_t *store) {
  groups_sync_t *g = calloc(1, sizeof *g);
  if (!g) return NULL;
  g->loop = loop;
  g->reg = reg;
  g->store = store;
  atomic_init(&g->lost, 0);
  g->events = m5_mailbox_new(loop, EVENTS_MAX, on_event, g);
  g->replies = m5_mailbox_new(loop, 1, on_reply, g);
  if (g->events && g->replies) g->lost_timer = m5_loop_timer_add(loop, 1000, on_lost_check, g);
  if (!g->events || !g->replies || !g->lost_timer) {
    groups_sync_free(g);
    return NULL;
  }
  groups_set_hook(reg, hook, g);
  return g;
}

/* A change lost to a full mailbox is noticed here at the latest (nothing else may wake us). */
static void on_lost_check(m5_loop_t *loop, void *arg) {
  groups_sync_t *g = arg;
  if (atomic_load(&g->lost)) next(g);
  g->lost_timer = m5_loop_timer_add(loop, 1000, on_lost_check, g);
}

static void drop_event(void *msg) {
  free(msg);
}

void groups_sync_free(groups_sync_t *g) {
  if (!g) return;
  /* the registry is closed: its hook is called no more */
  if (g->events) m5_mailbox_free(g->events, drop_event);
  if (g->replies) m5_mailbox_free(g->replies, NULL);
  if (g->retry) m5_loop_timer_cancel(g->loop, g->retry);
  if (g->lost_timer) m5_loop_timer_cancel(g->loop, g->lost_timer);
  free_list(g->head);
  free(g->cur);
  free(g);
}

/* ---- start-up ---- */

typedef struct {
  m5_loop_t *loop;
  int done;
} wait_t;

static void on_startup_reply(void *msg, void *arg) {
  (void)msg;
  wait_t *w = arg;
  w->done = 1;
  m5_loop_stop(w->loop);
}

int groups_sync_startup(registry_t *reg, m5_store_t *store, char *err, size_t errlen) {
  wait_t w = {m5_loop_new(), 0};
  m5_mailbox_t *mb = w.loop ? m5_mailbox_new(w.loop, 1, on_startup_reply, &w) : NULL;
  int rc = mb ? 0 : M5_ENOMEM;
  uint64_t failed = 0, cursor = 0;
  m5_store_job_t j;
  for (int more = 1; rc == 0 && more;) {
    sweep_all_job(&j, reg, mb, cursor);
    w.done = 0;
    rc = m5_store_submit(store, &j);
    if (rc == 0) m5_loop_run(w.loop);
    if (rc == 0 && !w.done) rc = M5_EIO;
    if (rc == 0) rc = j.status;
    failed += j.group_failed;
    cursor = j.id;
    more = j.more;
  }
  if (rc != 0)
    snprintf(err, errlen, "cannot catch the message store up with the groups: %s",
             m5_strerror(rc));
  else if (failed)
    M5_LOGI(DOM, "%llu queued deliveries of group or broadcast messages failed at start-up (their "
                 "recipients left, or the group went)", (unsigned long long)failed);
  if (mb) m5_mailbox_free(mb, NULL);
  if (w.loop) m5_loop_free(w.loop);
  return rc;
}
