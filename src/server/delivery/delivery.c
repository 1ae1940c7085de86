/* Forwarding from the message store (see delivery.h, docs/delivery.md). Every attempt ends in
 * the store: a push_t waits for the UE's answer, then an sjob_t (MARK_DELIVERED, RESCHEDULE or
 * MARK_FAILED) for the store's DB thread. Pushes and jobs carry a session's id, never its pointer:
 * the session may close meanwhile. A failure or expiry report is written by the store in the
 * transaction of the failure (MARK_FAILED, EXPIRE); this file only pushes it at once. A
 * conclusion that fails in the store leaves its delivery in flight: the timer worker's
 * REQUEUE_STALE queues such deliveries again after in_flight_max_ms. The pushes to Application
 * Servers and message gateways over HTTP/2 are in delivery_http.c (delivery_int.h). */
#include "server/delivery/delivery.h"
#include "server/delivery/delivery_int.h"

#include "coap/coap.h"
#include "core/err.h"
#include "core/hmap.h"
#include "core/log.h"
#include "core/str.h"
#include "msg/msg.h"
#include "server/groups/groups_fanout.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define RESOURCE "msgin5g"     /* the one MSGin5G-1 resource, on the UE as on the server */
#define BACKOFF_MAX_MS 300000  /* doubling up to 5 min */
#define TICK_MS 1000           /* back-off and expiry timer (worker opts.timers) */
#define TICK_BUDGET 128        /* deliveries one tick hands out at most */
#define EXPIRE_BATCH 256       /* expired deliveries one tick handles at most */
#define DUE_BATCH 32           /* stored deliveries pushed to one recipient at a time */
#define DUE_PERIOD_MS 5000     /* "sends anything" looks for stored messages this often */
#define INFLIGHT_SKIP_MS 10000 /* a due delivery whose push is still running: look later */
#define SPARE_MAX 128          /* finished store jobs kept for reuse (sjob_new) */
#define HELD_RETRY_MS 200      /* a conclusion the store could not take is offered again */
/* A conclusion waits up to LATER_WAIT_MS (or until LATER_MAX wait) for this worker's next
 * accept, so that both reach the store thread in one hand-off and one batch, and their replies
 * come back in one wake-up: at a steady load one crossing each way per message instead of two.
 * Nothing a peer sees waits for it (the UE's answer has been handled; a report the conclusion
 * brings goes out at most LATER_WAIT_MS later). */
#define LATER_WAIT_MS 5
#define LATER_MAX 64
#define REQUEUE_PERIOD_MAX_MS 30000 /* REQUEUE_STALE at least this often (timer worker) */

/* Per-session state: the UE it registered as, and its stored deliveries being pushed from a
 * DUE (one DUE at a time per session). */
typedef struct {
  ue_session_t *s;
  int registered;
  char ue_svc_id[M5_MSG_ADDR_MAX + 1];
  uint64_t gen; /* the binding generation it registered under */
  int due_busy, due_more;
  size_t due_out;
  int64_t last_due_ms;
} peer_t;

typedef enum {
  SJ_MARK,
  SJ_DUE,
  SJ_DUE_ANY,
  SJ_EXPIRE,
  SJ_DUE_AS,
  SJ_REQUEUE,
  SJ_REBIND
} sjob_kind_t;

/* A message store job. job is first: the store hands back &job.base == the sjob_t. */
typedef struct sjob {
  m5_store_job_t job;
  delivery_t *dv;
  sjob_kind_t kind;
  uint64_t sid;         /* SJ_DUE, SJ_MARK: the session (0: none) */
  int from_due;         /* SJ_MARK: the push came from that session's DUE */
  void *held_next;      /* SJ_MARK not taken by the store yet: dv->held list */
} sjob_t;

/* A push in flight towards a UE; keeps the body until the endpoint is done with it. */
typedef struct {
  delivery_t *dv;
  char *body;
  size_t len;
  uint64_t id; /* the store's delivery */
  uint32_t attempts;
  int sto_fwd;
  uint64_t sid;
  int from_due;
  char msg_id[M5_MSG_ID_MAX + 1];
  char dest[M5_MSG_ADDR_MAX + 1];
} push_t;



static peer_t *peer_find(delivery_t *dv, uint64_t sid) {
  return m5_hmap_get(dv->peers, &sid, sizeof sid);
}

void dlv_check_idle(delivery_t *dv) {
  if (!dv->idle_done) return;
  if (dv->store_inflight || dv->n_held || (dv->pushes && dv->drain_timer)) return;
  if (dv->drain_timer) m5_loop_timer_cancel(dv->loop, dv->drain_timer);
  dv->drain_timer = 0;
  void (*done)(void *) = dv->idle_done;
  dv->idle_done = NULL;
  done(dv->idle_arg);
}

int64_t dlv_wall_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Delay before attempt number `attempts` + 1 (attempts >= 1). */
static int64_t backoff_ms(uint32_t attempts) {
  int64_t d = BACKOFF_FIRST_MS;
  for (uint32_t i = 1; i < attempts && d < BACKOFF_MAX_MS; i++)
    d *= 2;
  return d > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : d;
}

int dlv_is_report(const m5_store_msg_t *m) {
  return strcmp(m->app_id, DELIVERY_IMDN_APP) == 0;
}

static void dispatch(delivery_t *dv, const m5_store_delivery_t *d, int from, const char *ue_body,
                     size_t ue_len);

/* Finished jobs are kept for the next ones (at most SPARE_MAX): an sjob_t is about 1.8 KB, above
 * malloc's per-thread cache, so each fresh one costs a trip through the allocator's bins. */
static sjob_t *sjob_new(delivery_t *dv, sjob_kind_t kind, m5_store_op_t op) {
  sjob_t *j = dv->spare;
  if (j) {
    dv->spare = j->held_next;
    dv->n_spare--;
    memset(j, 0, sizeof *j);
  } else if (!(j = calloc(1, sizeof *j))) {
    return NULL;
  }
  j->dv = dv;
  j->kind = kind;
  j->job.op = op;
  j->job.arg = j;
  j->job.base.reply = dv->store_replies;
  return j;
}

static void sjob_free(sjob_t *j) {
  m5_store_job_clear(&j->job);
  delivery_t *dv = j->dv;
  if (dv->freeing || dv->n_spare >= SPARE_MAX) {
    free(j);
    return;
  }
  j->held_next = dv->spare;
  dv->spare = j;
  dv->n_spare++;
}

/* 0, or M5_EFULL (too many outstanding, or the store's queue is full): the caller keeps j. */
static int sjob_submit(delivery_t *dv, sjob_t *j) {
  if (dv->store_inflight >= dv->opts.max_store_inflight) return M5_EFULL;
  int rc = m5_store_submit(dv->opts.store, &j->job);
  if (rc == 0) dv->store_inflight++;
  return rc;
}

static void recent_add(delivery_t *dv, uint64_t id) {
  uint64_t *slot = &dv->recent_ring[dv->recent_pos];
  if (*slot) m5_hmap_del(dv->recent, slot, sizeof *slot);
  *slot = id;
  if (m5_hmap_put(dv->recent, &id, sizeof id, dv, NULL) != 0) *slot = 0;
  dv->recent_pos = (dv->recent_pos + 1) % RECENT_MAX;
}

static void held_retry(m5_loop_t *loop, void *arg);

static void hold(delivery_t *dv, sjob_t *j) {
  if (!dv->n_held)
    M5_LOGW(DOM, "delivery %llu: the message store is busy; its conclusion waits",
            (unsigned long long)j->job.id);
  j->held_next = NULL;
  if (dv->held_tail)
    dv->held_tail->held_next = j;
  else
    dv->held = j;
  dv->held_tail = j;
  dv->n_held++;
  if (!dv->held_timer) dv->held_timer = m5_loop_timer_add(dv->loop, HELD_RETRY_MS, held_retry, dv);
}

/* Offers the held conclusions again, oldest first, until the store is busy again. Each store
 * reply of ours makes room for one, so they go out as soon as there is room (on_store_reply),
 * not a timer period later; the timer only covers a store full of other workers' jobs. */
static void held_offer(delivery_t *dv) {
  while (dv->held && sjob_submit(dv, dv->held) == 0) {
    dv->held = dv->held->held_next;
    if (!dv->held) dv->held_tail = NULL;
    dv->n_held--;
  }
}

size_t delivery_held(const delivery_t *dv) {
  return dv->n_held;
}

static void held_retry(m5_loop_t *loop, void *arg) {
  delivery_t *dv = arg;
  dv->held_timer = 0;
  held_offer(dv);
  if (dv->held)
    dv->held_timer = m5_loop_timer_add(loop, HELD_RETRY_MS, held_retry, dv);
  else
    dlv_check_idle(dv);
}

/* Submits the waiting conclusions now, in order (behind any the store could not take). */
static void later_flush(delivery_t *dv) {
  if (dv->later_timer) m5_loop_timer_cancel(dv->loop, dv->later_timer);
  dv->later_timer = 0;
  while (dv->later) {
    sjob_t *j = dv->later;
    dv->later = j->held_next;
    dv->n_later--;
    if (dv->held || sjob_submit(dv, j) != 0) hold(dv, j);
  }
  dv->later_tail = NULL;
}

static void later_timeout(m5_loop_t *loop, void *arg) {
  (void)loop;
  delivery_t *dv = arg;
  dv->later_timer = 0;
  later_flush(dv);
}

void delivery_flush_conclusions(delivery_t *dv) {
  if (dv->later) later_flush(dv);
}

static void later_add(delivery_t *dv, sjob_t *j) {
  j->held_next = NULL;
  if (dv->later_tail)
    dv->later_tail->held_next = j;
  else
    dv->later = j;
  dv->later_tail = j;
  if (++dv->n_later >= LATER_MAX) {
    later_flush(dv);
  } else if (!dv->later_timer) {
    dv->later_timer = m5_loop_timer_add(dv->loop, LATER_WAIT_MS, later_timeout, dv);
    if (!dv->later_timer) later_flush(dv);
  }
}

/* Concludes delivery id in the store (op MARK_DELIVERED, MARK_FAILED with cause, RESCHEDULE
 * to next_ms with attempts), from a push of session sid (0: none). A busy store holds the
 * conclusion back (hold), it is never dropped. */
void dlv_conclude(delivery_t *dv, m5_store_op_t op, uint64_t id, const char *cause,
                     int64_t next_ms, uint32_t attempts, uint64_t sid, int from_due) {
  sjob_t *j = sjob_new(dv, SJ_MARK, op);
  if (!j) {
    /* Out of memory: the delivery stays in flight in the store until REQUEUE_STALE. */
    M5_LOGE(DOM, "delivery %llu: out of memory, its outcome is not recorded (queued again "
            "after store.in_flight_max_s)", (unsigned long long)id);
    m5_hmap_del(dv->inflight, &id, sizeof id);
    if (from_due) {
      peer_t *ss = m5_hmap_get(dv->peers, &sid, sizeof sid);
      if (ss && ss->due_out && --ss->due_out == 0) ss->due_busy = 0;
    }
    return;
  }
  j->job.id = id;
  if (cause) m5_str_copy(j->job.cause, sizeof j->job.cause, cause);
  /* MARK_FAILED: its failure report is pushed at once (done_mark); the back-off timer's first
   * look at it is one back-off later. */
  j->job.next_attempt_ms =
      op == M5_STORE_MARK_FAILED && !next_ms ? dlv_wall_ms() + BACKOFF_FIRST_MS : next_ms;
  j->job.attempts = attempts;
  j->sid = sid;
  j->from_due = from_due;
  /* A push from a stored queue (from_due) is not held back: the next page of that queue is
   * read only once every conclusion of this one is back. */
  if (!from_due && !dv->draining && !dv->idle_done) {
    later_add(dv, j);
    return;
  }
  later_flush(dv);
  if (dv->held || sjob_submit(dv, j) != 0) hold(dv, j); /* keeps the order of conclusions */
}

/* The recipient has no live session or the push failed: retry later (store-and-forward) or
 * fail the delivery. */
void dlv_conclude_unreached(delivery_t *dv, uint64_t id, uint32_t attempts, int sto_fwd,
                               uint64_t sid, int from_due) {
  if (sto_fwd)
    dlv_conclude(dv, M5_STORE_RESCHEDULE, id, NULL, dlv_wall_ms() + backoff_ms(attempts + 1),
                 attempts + 1, sid, from_due);
  else
    dlv_conclude(dv, M5_STORE_MARK_FAILED, id, M5_CAUSE_UNREACHABLE, 0, attempts + 1, sid,
                 from_due);
}

static void on_push_done(void *arg, int status, const m5_coap_msg_t *resp, const uint8_t *body,
                         size_t len) {
  (void)body;
  (void)len;
  push_t *p = arg;
  delivery_t *dv = p->dv;
  char code[8];
  if (status == M5_EAGAIN) {
    /* Never sent: its UE deregistered (delivery_deregistered). Not an attempt; pending again,
     * for the next REG or the back-off timer. */
    M5_LOGD(DOM, "MSG %s to %s: not sent, the UE deregistered", p->msg_id, p->dest);
    dlv_conclude(dv, M5_STORE_RESCHEDULE, p->id, NULL, dlv_wall_ms() + BACKOFF_FIRST_MS,
                 p->attempts, p->sid, p->from_due);
  } else if (status == 0 && resp->code == M5_COAP_CHANGED) {
    M5_LOGD(DOM, "MSG %s delivered to %s", p->msg_id, p->dest);
    dlv_conclude(dv, M5_STORE_MARK_DELIVERED, p->id, NULL, 0, p->attempts + 1, p->sid, p->from_due);
  } else {
    if (status == 0)
      M5_LOGW(DOM, "MSG %s to %s: the UE answered %s", p->msg_id, p->dest,
              m5_coap_code_str(resp->code, code, sizeof code));
    else
      M5_LOGI(DOM, "MSG %s to %s: not delivered (%s)%s", p->msg_id, p->dest, m5_strerror(status),
              p->sto_fwd ? ", kept for a retry" : "");
    dlv_conclude_unreached(dv, p->id, p->attempts, p->sto_fwd, p->sid, p->from_due);
  }
  dv->push_bytes -= p->len;
  free(p->body);
  free(p);
  dv->pushes--;
  dlv_check_idle(dv);
}

enum { FROM_NEW = 0, FROM_DUE = 1, FROM_TIMER = 2 };

/* Pushes delivery id (body taken) over the live session sid of dest, on this worker. Every
 * outcome ends in the store: delivered, rescheduled or failed. from: FROM_NEW (just
 * accepted), FROM_DUE (the session's DUE), FROM_TIMER (the back-off timer). */
static void push_delivery(delivery_t *dv, uint64_t sid, const char *dest, uint64_t gen, char *body,
                          size_t len, const char *msg_id, uint64_t id, uint32_t attempts,
                          int sto_fwd, int from) {
  int from_due = from == FROM_DUE;
  if (m5_hmap_get(dv->recent, &id, sizeof id)) { /* delivered or failed meanwhile */
    free(body);
    return;
  }
  if (m5_hmap_get(dv->inflight, &id, sizeof id)) { /* its push still runs */
    free(body);
    if (!from_due)
      dlv_conclude(dv, M5_STORE_RESCHEDULE, id, NULL, dlv_wall_ms() + INFLIGHT_SKIP_MS, attempts, 0,
                   0);
    return;
  }
  peer_t *ss = peer_find(dv, sid);
  if (!ss || !ss->registered || strcmp(ss->ue_svc_id, dest) != 0) {
    free(body);
    dlv_conclude_unreached(dv, id, attempts, sto_fwd, 0, 0);
    return;
  }
  if (ss->gen != gen) {
    /* Queued for another subscriber of this UE Service ID (it was re-bound): never pushed to
     * this session. Not an attempt; the store fails it (RECIPIENT_REBOUND) when it learns of
     * the re-bind, at the latest when this reschedule reaches it. */
    M5_LOGI(DOM, "MSG %s to %s: queued under binding generation %llu, the session has %llu; "
                 "not pushed", msg_id, dest, (unsigned long long)gen, (unsigned long long)ss->gen);
    free(body);
    dlv_conclude(dv, M5_STORE_RESCHEDULE, id, NULL, dlv_wall_ms() + BACKOFF_FIRST_MS, attempts, 0,
                 0);
    return;
  }
  if (dv->opts.reg && !registry_gen_current(dv->opts.reg, dest, gen)) {
    /* The session's generation (and the delivery's) is no longer the binding's: the ID was
     * un-bound or re-bound and the CLOSE to this worker was lost (a full mailbox). Nothing
     * more goes to that session: it is closed (deferred: the caller may still hold its state),
     * and the delivery goes back to the store, not as an attempt, where REBIND fails it. */
    M5_LOGI(DOM, "MSG %s to %s: the binding changed since session %llu registered; not pushed, "
                 "the session is closed", msg_id, dest, (unsigned long long)sid);
    free(body);
    dlv_conclude(dv, M5_STORE_RESCHEDULE, id, NULL, dlv_wall_ms() + BACKOFF_FIRST_MS, attempts, 0,
                 0);
    ue_session_close(ss->s, "binding changed");
    return;
  }
  if (from == FROM_TIMER && ss->due_busy) {
    /* The session's DUE is draining this recipient's queue in priority order and covers it
     * (it was PENDING before that DUE or comes with its next batch). */
    free(body);
    return;
  }
  push_t *p = calloc(1, sizeof *p);
  if (!p || m5_hmap_put(dv->inflight, &id, sizeof id, dv, NULL) != 0) {
    free(p);
    free(body);
    dlv_conclude(dv, M5_STORE_RESCHEDULE, id, NULL, dlv_wall_ms() + BACKOFF_FIRST_MS, attempts, 0,
                 0);
    return;
  }
  p->dv = dv;
  p->body = body;
  p->id = id;
  p->attempts = attempts;
  p->sto_fwd = sto_fwd;
  p->sid = sid;
  p->from_due = from_due;
  m5_str_copy(p->msg_id, sizeof p->msg_id, msg_id);
  m5_str_copy(p->dest, sizeof p->dest, dest);
  int rc = m5_coap_ep_request(ss->s->ep, M5_COAP_POST, RESOURCE, M5_COAP_FORMAT_JSON,
                              (const uint8_t *)body, len, on_push_done, p);
  if (rc != 0) {
    free(p->body);
    free(p);
    m5_hmap_del(dv->inflight, &id, sizeof id);
    if (rc == M5_EFULL) /* the session's outgoing queue is full: not an attempt */
      dlv_conclude(dv, M5_STORE_RESCHEDULE, id, NULL, dlv_wall_ms() + BACKOFF_FIRST_MS, attempts, 0,
                   0);
    else
      dlv_conclude_unreached(dv, id, attempts, sto_fwd, 0, 0);
    return;
  }
  dv->pushes++;
  p->len = len;
  dv->push_bytes += len;
  if (from_due) ss->due_out++;
}

/* The body the server sends for a delivery: the MSG, or the IMDN of a stored report; for an
 * Application Server (for_as) the TS 29.538 form without msgType (UEMessageDelivery,
 * DeliveryStatusReport). */
int delivery_encode(const m5_store_delivery_t *d, int for_as, char **body, size_t *len) {
  m5_msg_t m;
  memset(&m, 0, sizeof m);
  m.ori = d->msg.ori;
  m.dest = d->msg.dest;
  m.prio = d->msg.prio;
  m5_str_copy(m.msg_id, sizeof m.msg_id, d->msg.msg_id);
  if (dlv_is_report(&d->msg)) {
    /* payload: "delivSt" or "delivSt failureCause" */
    m.type = M5_MSG_IMDN;
    char buf[sizeof m.deliv_st + sizeof m.failure_cause + 2];
    size_t n = d->msg.payload_len < sizeof buf - 1 ? d->msg.payload_len : sizeof buf - 1;
    memcpy(buf, d->msg.payload ? (const char *)d->msg.payload : "", n);
    buf[n] = '\0';
    char *sp = strchr(buf, ' ');
    if (sp) {
      *sp = '\0';
      snprintf(m.failure_cause, sizeof m.failure_cause, "%.*s", (int)sizeof m.failure_cause - 1,
               sp + 1);
    }
    snprintf(m.deliv_st, sizeof m.deliv_st, "%.*s", (int)sizeof m.deliv_st - 1, buf);
  } else {
    m.type = M5_MSG_MSG;
    m5_str_copy(m.app_id, sizeof m.app_id, d->msg.app_id);
    m.payload = d->msg.payload;
    m.payload_len = d->msg.payload_len;
    m.deliv_st_req = d->msg.deliv_st_req;
    m.sto_fwd = d->msg.sto_fwd;
    if (d->msg.sto_fwd) m.expr_time = d->msg.expr_time;
  }
  return for_as ? m5_msg_encode_as(&m, body, len) : m5_msg_encode(&m, body, len);
}

/* Hands delivery d to the worker holding its recipient's live session (this one or another,
 * through the router), or concludes it when there is none. from: see push_delivery. */
static void dispatch(delivery_t *dv, const m5_store_delivery_t *d, int from, const char *ue_body,
                     size_t ue_len) {
  char *body = NULL;
  size_t len = 0;
  int to_as = !strcmp(d->rcpt.type, "AS");
  /* A group or broadcast message goes only to who is still a member (groups.h, "the contract
   * with the fan-out"): checked before every push, on the memory the removal's commit
   * updated, so nothing goes out after a member left or the group was deleted. */
  const char *left =
      dv->opts.reg && d->msg.group_gen
          ? groups_fanout_check(dv->opts.reg, &d->msg.dest, &d->rcpt, d->msg.group_gen)
          : NULL;
  if (left) {
    M5_LOGI(DOM, "MSG %s to %s %s: not pushed to %s:%s (%s)", d->msg.msg_id, d->msg.dest.type,
            d->msg.dest.addr, d->rcpt.type, d->rcpt.addr, left);
    dlv_conclude(dv, M5_STORE_MARK_FAILED, d->id, left, 0, d->attempts, 0, 0);
    return;
  }
  registry_gw_t g;
  uint64_t gen;
  if (!to_as && dv->opts.reg && !strcmp(d->rcpt.type, "UE") &&
      registry_gw_holder(dv->opts.reg, d->rcpt.addr, &g, &gen) == 0) {
    dlv_gw_push(dv, d, &g, gen); /* a device behind a message gateway */
    return;
  }
  if (ue_body && !to_as) { /* the fan-out's one encoding of the message: a copy to own */
    if ((body = malloc(ue_len + 1))) {
      memcpy(body, ue_body, ue_len);
      body[ue_len] = '\0';
      len = ue_len;
    }
  }
  if (!body && delivery_encode(d, to_as, &body, &len) != 0) {
    M5_LOGE(DOM, "delivery %llu: cannot encode its body", (unsigned long long)d->id);
    dlv_conclude(dv, M5_STORE_MARK_FAILED, d->id, M5_CAUSE_UNREACHABLE, 0, d->attempts, 0, 0);
    return;
  }
  if (to_as) {
    dlv_as_push(dv, d, body, len);
    return;
  }
  router_loc_t loc;
  if (strcmp(d->rcpt.type, "UE") != 0 || router_find(dv->opts.router, d->rcpt.addr, &loc) != 0) {
    free(body);
    dlv_conclude_unreached(dv, d->id, d->attempts, d->msg.sto_fwd, 0, 0);
    return;
  }
  if (loc.worker == dv->opts.worker) {
    push_delivery(dv, loc.sid, d->rcpt.addr, d->rcpt_gen, body, len, d->msg.msg_id, d->id,
                  d->attempts, d->msg.sto_fwd, from);
    return;
  }
  router_msg_t *rm = router_msg_new(ROUTER_DELIVER);
  if (!rm) {
    free(body);
    dlv_conclude(dv, M5_STORE_RESCHEDULE, d->id, NULL, dlv_wall_ms() + BACKOFF_FIRST_MS,
                 d->attempts, 0, 0);
    return;
  }
  rm->sid = loc.sid;
  rm->origin = dv->opts.worker;
  rm->body = body;
  rm->len = len;
  rm->deliv_id = d->id;
  rm->attempts = d->attempts;
  rm->sto_fwd = d->msg.sto_fwd;
  rm->from_timer = from == FROM_TIMER;
  rm->gen = d->rcpt_gen;
  m5_str_copy(rm->ue_svc_id, sizeof rm->ue_svc_id, d->rcpt.addr);
  m5_str_copy(rm->msg_id, sizeof rm->msg_id, d->msg.msg_id);
  if (router_post(dv->opts.router, loc.worker, rm) != 0) {
    router_msg_free(rm);
    dlv_conclude(dv, M5_STORE_RESCHEDULE, d->id, NULL, dlv_wall_ms() + BACKOFF_FIRST_MS,
                 d->attempts, 0, 0);
  }
}

/* The failure report the store wrote with the failure or expiry of d (d->report_id), pushed
 * at once; should that push not happen, the back-off timer finds it. */
static void push_report(delivery_t *dv, const m5_store_delivery_t *d) {
  if (!d->report_id) return;
  m5_store_delivery_t r;
  if (m5_store_report_of(d, 0, &r) != 0) {
    M5_LOGW(DOM, "out of memory: the failure report of MSG %s waits for the back-off timer",
            d->msg.msg_id);
    return;
  }
  M5_LOGI(DOM, "failure report of MSG %s queued for %s:%s", d->msg.msg_id, r.rcpt.type,
          r.rcpt.addr);
  dispatch(dv, &r, FROM_NEW, NULL, 0);
  free(r.msg.payload);
}

static void start_due(delivery_t *dv, peer_t *ss) {
  if (ss->due_busy || !ss->registered) return;
  sjob_t *j = sjob_new(dv, SJ_DUE, M5_STORE_DUE);
  if (!j) return;
  snprintf(j->job.rcpt.type, sizeof j->job.rcpt.type, "UE");
  m5_str_copy(j->job.rcpt.addr, sizeof j->job.rcpt.addr, ss->ue_svc_id);
  j->job.limit = DUE_BATCH;
  j->sid = ss->s->id;
  ss->last_due_ms = dlv_wall_ms();
  if (sjob_submit(dv, j) != 0) {
    sjob_free(j);
    return;
  }
  ss->due_busy = 1;
}

static void done_mark(sjob_t *j) {
  delivery_t *dv = j->dv;
  m5_store_job_t *sj = &j->job;
  m5_hmap_del(dv->inflight, &sj->id, sizeof sj->id);
  if (sj->op != M5_STORE_RESCHEDULE && sj->status == 0) recent_add(dv, sj->id);
  if (sj->op == M5_STORE_MARK_FAILED && sj->status == 0 && sj->n_items)
    push_report(dv, &sj->items[0]);
  if (sj->status != 0 && sj->status != M5_ENOENT)
    M5_LOGE(DOM, "delivery %llu: the message store could not record its outcome (%s); it is "
            "queued again after store.in_flight_max_s", (unsigned long long)sj->id,
            m5_strerror(sj->status));
  if (j->from_due) {
    peer_t *ss = peer_find(dv, j->sid);
    if (ss && ss->due_out && --ss->due_out == 0) {
      ss->due_busy = 0;
      if (ss->due_more && !dv->draining) start_due(dv, ss);
    }
  }
}

static void done_due(sjob_t *j) {
  delivery_t *dv = j->dv;
  peer_t *ss = peer_find(dv, j->sid);
  if (!ss) return; /* the items stay PENDING: the back-off timer or the next REG */
  if (j->job.status == 0) {
    for (size_t i = 0; i < j->job.n_items; i++)
      dispatch(dv, &j->job.items[i], FROM_DUE, NULL, 0);
    if (j->job.n_items)
      M5_LOGI(DOM, "%s: %zu stored message(s) pushed", ss->ue_svc_id, j->job.n_items);
  }
  ss->due_more = j->job.status == 0 && j->job.n_items == j->job.limit;
  if (ss->due_out == 0) ss->due_busy = 0;
}

static void submit_due_any(delivery_t *dv, int64_t now);

static void done_due_any(sjob_t *j) {
  j->dv->due_any_busy = 0;
  if (j->job.status != 0) return;
  for (size_t i = 0; i < j->job.n_items; i++)
    dispatch(j->dv, &j->job.items[i], FROM_TIMER, NULL, 0);
  /* a store that marks what it handed out in flight (JetStream) says when more are due: the
   * next batch now, not at the next tick */
  if (j->job.more && !j->dv->draining) submit_due_any(j->dv, dlv_wall_ms());
}

/* What was stored for an Application Server that just registered, or for a device its gateway
 * just registered: pushed now, not at its next back-off time. */
static void done_due_as(sjob_t *j) {
  if (j->job.status != 0) return;
  for (size_t i = 0; i < j->job.n_items; i++)
    dispatch(j->dv, &j->job.items[i], FROM_TIMER, NULL, 0);
  if (j->job.n_items)
    M5_LOGI(DOM, "%s %s: %zu stored message(s) pushed", j->job.rcpt.type, j->job.rcpt.addr,
            j->job.n_items);
}

static void done_expire(sjob_t *j) {
  j->dv->expire_busy = 0;
  if (j->job.status != 0) return;
  for (size_t i = 0; i < j->job.n_items; i++) {
    const m5_store_delivery_t *d = &j->job.items[i];
    M5_LOGI(DOM, "%s %s from %s to %s expired", dlv_is_report(&d->msg) ? "report of" : "MSG",
            d->msg.msg_id, d->msg.ori.addr, d->rcpt.addr);
    push_report(j->dv, d);
  }
}

static void on_store_reply(void *msg, void *arg) {
  delivery_t *dv = arg;
  sjob_t *j = msg; /* job.base is the first member */
  dv->store_inflight--;
  switch (j->kind) {
  case SJ_REQUEUE:
    dv->requeue_busy = 0;
    break;
  case SJ_REBIND:
    if (j->job.status != 0)
      M5_LOGW(DOM,
              "%s changed holder: the store could not be told now (%s); it catches up at "
              "the next message from or to it, or at the next start",
              j->job.rcpt.addr, m5_strerror(j->job.status));
    else if (j->job.rebind_failed)
      M5_LOGI(DOM,
              "%s changed holder: %llu queued deliveries of the previous one failed "
              "(RECIPIENT_REBOUND)",
              j->job.rcpt.addr, (unsigned long long)j->job.rebind_failed);
    break;
  case SJ_MARK:
    done_mark(j);
    break;
  case SJ_DUE:
    done_due(j);
    break;
  case SJ_DUE_ANY:
    done_due_any(j);
    break;
  case SJ_DUE_AS:
    done_due_as(j);
    break;
  case SJ_EXPIRE:
    done_expire(j);
    break;
  }
  sjob_free(j);
  if (dv->held && !dv->freeing) held_offer(dv);
  dlv_check_idle(dv);
}

/* A batch of what is due (at most TICK_BUDGET), unless one is out already. */
static void submit_due_any(delivery_t *dv, int64_t now) {
  if (dv->due_any_busy) return;
  sjob_t *j = sjob_new(dv, SJ_DUE_ANY, M5_STORE_DUE_ANY);
  if (!j) return;
  j->job.now_ms = now;
  j->job.limit = TICK_BUDGET;
  j->job.hand_out = true; /* done_due_any dispatches every item */
  if (sjob_submit(dv, j) == 0)
    dv->due_any_busy = 1;
  else
    sjob_free(j);
}

/* The back-off and expiry timer (one worker): bounded batches, one of each at a time. */
static void on_tick(m5_loop_t *loop, void *arg) {
  delivery_t *dv = arg;
  dv->tick = 0;
  if (dv->draining) return;
  int64_t now = dlv_wall_ms();
  submit_due_any(dv, now);
  /* Deliveries in flight whose conclusion never reached the store go back to the queue. */
  int64_t period = dv->opts.in_flight_max_ms / 2;
  if (period > REQUEUE_PERIOD_MAX_MS) period = REQUEUE_PERIOD_MAX_MS;
  if (!dv->requeue_busy && now - dv->last_requeue_ms >= period) {
    sjob_t *j = sjob_new(dv, SJ_REQUEUE, M5_STORE_REQUEUE_STALE);
    if (j) {
      j->job.now_ms = now - dv->opts.in_flight_max_ms;
      if (sjob_submit(dv, j) == 0) {
        dv->requeue_busy = 1;
        dv->last_requeue_ms = now;
      } else {
        sjob_free(j);
      }
    }
  }
  if (!dv->expire_busy) {
    sjob_t *j = sjob_new(dv, SJ_EXPIRE, M5_STORE_EXPIRE);
    if (j) {
      j->job.now_ms = now;
      j->job.next_attempt_ms = now + BACKOFF_FIRST_MS; /* its reports: pushed at once */
      j->job.limit = EXPIRE_BATCH;
      if (sjob_submit(dv, j) == 0)
        dv->expire_busy = 1;
      else
        sjob_free(j);
    }
  }
  dv->tick = m5_loop_timer_add(loop, TICK_MS, on_tick, dv);
}

/* ---- life cycle and what ue_api.c tells ---- */

delivery_t *delivery_new(m5_loop_t *loop, const delivery_opts_t *opts) {
  delivery_t *dv = calloc(1, sizeof *dv);
  if (!dv) return NULL;
  dv->loop = loop;
  dv->opts = *opts;
  if (!dv->opts.max_store_inflight) dv->opts.max_store_inflight = 8192;
  if (!dv->opts.max_ttl_s) dv->opts.max_ttl_s = 86400;
  if (dv->opts.in_flight_max_ms <= 0) dv->opts.in_flight_max_ms = 300000;
  dv->peers = m5_hmap_new();
  dv->inflight = m5_hmap_new();
  dv->recent = m5_hmap_new();
  /* Room for every job outstanding, plus the tick's three, so no reply post ever fails. */
  dv->store_replies = m5_mailbox_new(loop, dv->opts.max_store_inflight + 3, on_store_reply, dv);
  if (!dv->peers || !dv->inflight || !dv->recent || !dv->store_replies || !dv->opts.store) {
    delivery_free(dv);
    return NULL;
  }
  if (dv->opts.timers) dv->tick = m5_loop_timer_add(loop, TICK_MS, on_tick, dv);
  return dv;
}

/* A store reply that arrived after the loop stopped (the store was closed after it). */
static void drop_sjob(void *msg) {
  sjob_free(msg);
}

void delivery_free(delivery_t *dv) {
  if (!dv) return;
  if (dv->later_timer) m5_loop_timer_cancel(dv->loop, dv->later_timer);
  while (dv->later) { /* drained before (delivery_drain): none wait but after an error */
    sjob_t *j = dv->later;
    dv->later = j->held_next;
    j->held_next = dv->held;
    dv->held = j;
    dv->n_held++;
  }
  if (dv->n_held)
    M5_LOGW(DOM, "%zu delivery outcomes not recorded: those deliveries are queued again at the"
                 " next start", dv->n_held);
  while (dv->held) {
    sjob_t *j = dv->held;
    dv->held = j->held_next;
    sjob_free(j);
  }
  if (dv->held_timer) m5_loop_timer_cancel(dv->loop, dv->held_timer);
  dv->freeing = 1;
  if (dv->http) m5_http_client_free(dv->http); /* its pushes end now (M5_ECLOSED) */
  if (dv->store_replies) m5_mailbox_free(dv->store_replies, drop_sjob);
  if (dv->tick) m5_loop_timer_cancel(dv->loop, dv->tick);
  if (dv->drain_timer) m5_loop_timer_cancel(dv->loop, dv->drain_timer);
  if (dv->peers) m5_hmap_free(dv->peers, free);
  if (dv->inflight) m5_hmap_free(dv->inflight, NULL);
  if (dv->recent) m5_hmap_free(dv->recent, NULL);
  while (dv->spare) {
    sjob_t *j = dv->spare;
    dv->spare = j->held_next;
    free(j);
  }
  free(dv);
}

int64_t delivery_first_retry_ms(void) {
  return dlv_wall_ms() + BACKOFF_FIRST_MS;
}

size_t delivery_push_bytes(const delivery_t *dv) {
  return dv->push_bytes;
}

int64_t delivery_stored_retry_ms(void) {
  return dlv_wall_ms() + BACKOFF_MAX_MS;
}

int delivery_session_opened(delivery_t *dv, ue_session_t *s) {
  peer_t *ss = calloc(1, sizeof *ss);
  if (!ss || m5_hmap_put(dv->peers, &s->id, sizeof s->id, ss, NULL) != 0) {
    free(ss);
    return M5_ENOMEM;
  }
  ss->s = s;
  return 0;
}

void delivery_registered(delivery_t *dv, uint64_t sid, const char *ue_svc_id, uint64_t gen) {
  peer_t *ss = peer_find(dv, sid);
  if (!ss) return;
  ss->registered = 1;
  ss->gen = gen;
  m5_str_copy(ss->ue_svc_id, sizeof ss->ue_svc_id, ue_svc_id);
  start_due(dv, ss);
}

void delivery_deregistered(delivery_t *dv, uint64_t sid) {
  peer_t *ss = peer_find(dv, sid);
  if (!ss) return;
  ss->registered = 0;
  /* Pushes still queued behind NSTART / the window must not reach a UE that deregistered:
   * they end now (on_push_done, M5_EAGAIN) and go back to the store, pending. */
  size_t n = m5_coap_ep_cancel_queued(ss->s->ep, M5_EAGAIN);
  if (n) M5_LOGI(DOM, "%s deregistered: %zu queued pushes kept for later", ss->ue_svc_id, n);
}

void delivery_ue_active(delivery_t *dv, uint64_t sid) {
  peer_t *ss = peer_find(dv, sid);
  if (ss && dlv_wall_ms() - ss->last_due_ms >= DUE_PERIOD_MS) start_due(dv, ss);
}

void delivery_session_closed(delivery_t *dv, uint64_t sid) {
  free(m5_hmap_del(dv->peers, &sid, sizeof sid));
}

/* What was stored for type:addr goes out now (up to `limit`; the back-off timer has the rest). */
static void due_now(delivery_t *dv, const char *type, const char *addr, size_t limit) {
  if (dv->draining) return;
  sjob_t *j = sjob_new(dv, SJ_DUE_AS, M5_STORE_DUE);
  if (!j) return;
  snprintf(j->job.rcpt.type, sizeof j->job.rcpt.type, "%s", type);
  m5_str_copy(j->job.rcpt.addr, sizeof j->job.rcpt.addr, addr);
  j->job.limit = limit;
  if (sjob_submit(dv, j) != 0) sjob_free(j); /* the back-off timer finds them */
}

void delivery_as_registered(delivery_t *dv, const char *as_svc_id) {
  due_now(dv, "AS", as_svc_id, M5_STORE_LIST_MAX);
}

void delivery_gw_registered(delivery_t *dv, const char *ue_svc_id) {
  due_now(dv, "UE", ue_svc_id, DUE_BATCH);
}

void delivery_rebind(delivery_t *dv, const char *ue_svc_id, uint64_t gen) {
  sjob_t *j = dv->draining ? NULL : sjob_new(dv, SJ_REBIND, M5_STORE_REBIND);
  if (!j) return; /* the store's catch-up: the next accept from or to the ID, or the start */
  snprintf(j->job.rcpt.type, sizeof j->job.rcpt.type, "UE");
  m5_str_copy(j->job.rcpt.addr, sizeof j->job.rcpt.addr, ue_svc_id);
  j->job.gen = gen;
  if (sjob_submit(dv, j) != 0) sjob_free(j);
}

void delivery_accepted(delivery_t *dv, const m5_store_delivery_t *d) {
  dispatch(dv, d, FROM_NEW, NULL, 0);
}

void delivery_accepted_encoded(delivery_t *dv, const m5_store_delivery_t *d, const char *ue_body,
                               size_t ue_len) {
  dispatch(dv, d, FROM_NEW, ue_body, ue_len);
}

void delivery_routed(delivery_t *dv, router_msg_t *m) {
  char *body = m->body;
  m->body = NULL;
  push_delivery(dv, m->sid, m->ue_svc_id, m->gen, body, m->len, m->msg_id, m->deliv_id,
                m->attempts, m->sto_fwd, m->from_timer ? FROM_TIMER : FROM_NEW);
}

static void on_drain_timeout(m5_loop_t *loop, void *arg) {
  (void)loop;
  delivery_t *dv = arg;
  dv->drain_timer = 0;
  if (dv->pushes) M5_LOGW(DOM, "drain: %zu pushes to UEs still unanswered", dv->pushes);
  dlv_check_idle(dv);
}

void delivery_drain(delivery_t *dv, uint32_t timeout_ms) {
  dv->draining = 1;
  later_flush(dv);
  if (dv->tick) m5_loop_timer_cancel(dv->loop, dv->tick);
  dv->tick = 0;
  dv->drain_timer = m5_loop_timer_add(dv->loop, timeout_ms, on_drain_timeout, dv);
  if (!dv->drain_timer && dv->pushes)
    M5_LOGW(DOM, "drain: %zu pushes to UEs still unanswered", dv->pushes);
}

void delivery_when_idle(delivery_t *dv, void (*done)(void *arg), void *arg) {
  later_flush(dv);
  dv->idle_done = done;
  dv->idle_arg = arg;
  dlv_check_idle(dv);
}
