/* MSGin5G-1 server logic: request checks, REG / DEREG against the registry, MSG and IMDN
 * acceptance into the message store and their forwarding (see ue_api.h, docs/delivery.md).
 * Every request is answered exactly once: either at once, or from a pending_t that waits for
 * the registry's DB thread, or from a sjob_t that waits for the message store. Pending
 * requests carry the session's id, never its pointer: the session may close meanwhile (the
 * answer then goes to an orphaned request, which the endpoint frees). */
#include "ue_api.h"

#include "coap/coap.h"
#include "core/err.h"
#include "core/hmap.h"
#include "core/log.h"
#include "msg/msg.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define DOM "ue"
#define RESOURCE "msgin5g"
#define RETRY_AFTER_S 1       /* Max-Age of a 5.03 when a queue is full */
#define DRAIN_RETRY_S 5       /* Max-Age of a 5.03 while the server shuts down */
#define STORE_FULL_RETRY_S 30 /* Max-Age of a 5.03 when the store is at store.max_total */

/* Forwarding from the store (docs/delivery.md). */
#define BACKOFF_FIRST_MS 2000  /* first retry after a failed or impossible attempt */
#define BACKOFF_MAX_MS 300000  /* doubling up to 5 min */
#define TICK_MS 1000           /* back-off and expiry timer (worker opts.timers) */
#define TICK_BUDGET 128        /* deliveries one tick hands out at most */
#define EXPIRE_BATCH 256       /* expired deliveries one tick handles at most */
#define DUE_BATCH 32           /* stored deliveries pushed to one recipient at a time */
#define DUE_PERIOD_MS 5000     /* "sends anything" looks for stored messages this often */
#define INFLIGHT_SKIP_MS 10000 /* a due delivery whose push is still running: look later */
#define RECENT_MAX 1024        /* finished delivery ids remembered per worker */
/* app_id of a stored delivery report: a UE's appId cannot start with a control character. */
#define IMDN_APP                                                                                   \
  "\x1f"                                                                                           \
  "IMDN"
#define IMDN_KEY "IMDN/" /* dedup key space of reports: '/' is not allowed in a msgId */

/* Per-session state (ue_session_t.app). */
typedef struct {
  ue_session_t *s;
  int registered;
  char ue_svc_id[M5_MSG_ADDR_MAX + 1];
  /* Stored deliveries being pushed from a DUE: one DUE at a time per session. */
  int due_busy, due_more;
  size_t due_out;
  int64_t last_due_ms;
} sess_t;

typedef enum { P_REG, P_DEREG } pending_kind_t;

/* A request waiting. job is first: the registry hands back &job.base == the pending_t. */
typedef struct pending {
  registry_job_t job;
  ue_api_t *api;
  pending_kind_t kind;
  struct pending *prev, *next;
  uint64_t sid;
  m5_coap_req_t *req;
} pending_t;

typedef enum { SJ_ACCEPT, SJ_REPORT, SJ_MARK, SJ_DUE, SJ_DUE_ANY, SJ_EXPIRE } sjob_kind_t;

/* A message store job. job is first: the store hands back &job.base == the sjob_t. */
typedef struct {
  m5_store_job_t job;
  ue_api_t *api;
  sjob_kind_t kind;
  m5_coap_req_t *req;   /* SJ_ACCEPT: the MSG / IMDN to answer */
  int is_imdn;          /* SJ_ACCEPT */
  m5_store_rcpt_t rcpt; /* SJ_ACCEPT, SJ_REPORT */
  uint8_t *payload;     /* SJ_ACCEPT, SJ_REPORT: owned, borrowed by the store */
  uint64_t sid;         /* SJ_DUE, SJ_MARK: the session (0: none) */
  int from_due;         /* SJ_MARK: the push came from that session's DUE */
} sjob_t;

/* A push in flight towards a UE; keeps the body until the endpoint is done with it. */
typedef struct {
  ue_api_t *api;
  char *body;
  uint64_t id; /* the store's delivery */
  uint32_t attempts;
  int sto_fwd;
  uint64_t sid;
  int from_due;
  char msg_id[M5_MSG_ID_MAX + 1];
  char dest[M5_MSG_ADDR_MAX + 1];
} push_t;

struct ue_api {
  m5_loop_t *loop;
  ue_api_opts_t opts;
  m5_hmap_t *sessions;         /* session id (8 bytes) -> sess_t */
  m5_mailbox_t *reg_replies;   /* registry jobs come back here */
  m5_mailbox_t *store_replies; /* message store jobs come back here */
  m5_mailbox_t *inbox;         /* DELIVER / CLOSE from any worker */
  m5_mailbox_t *results;       /* RESULT of DELIVERs (unused: DELIVERs conclude where pushed) */
  pending_t *pending;          /* every pending_t, for drain and free */
  size_t reg_inflight, store_inflight, pushes;
  m5_hmap_t *inflight; /* delivery id -> api: pushed, not concluded in the store yet */
  m5_hmap_t *recent;   /* delivery id -> api: delivered or failed lately */
  uint64_t recent_ring[RECENT_MAX];
  size_t recent_pos;
  int due_any_busy, expire_busy;
  m5_timer_id_t tick;
  int draining;
  m5_timer_id_t drain_timer;
  void (*drain_done)(void *arg);
  void *drain_arg;
};

/* ---- small helpers ---- */

static sess_t *sess_find(ue_api_t *api, uint64_t sid) {
  return m5_hmap_get(api->sessions, &sid, sizeof sid);
}

static void respond_retry(m5_coap_req_t *req, uint8_t code, uint32_t seconds, const char *diag) {
  uint8_t v[4];
  m5_coap_opt_t opt = {M5_COAP_OPT_MAX_AGE, 0, v};
  opt.len = m5_coap_uint_encode(seconds, v);
  m5_coap_ep_respond(req, code, 0 /* text/plain */, (const uint8_t *)diag, strlen(diag), &opt, 1);
}

static void respond_msg(m5_coap_req_t *req, uint8_t code, const m5_msg_t *m) {
  char *body = NULL;
  size_t len = 0;
  if (m5_msg_encode(m, &body, &len) != 0) {
    M5_LOGE(DOM, "cannot encode a %s answer", m5_msg_type_name(m->type));
    m5_coap_ep_respond_error(req, M5_COAP_INTERNAL_ERROR, "cannot encode the answer");
    return;
  }
  m5_coap_ep_respond(req, code, M5_COAP_FORMAT_JSON, (const uint8_t *)body, len, NULL, 0);
  free(body);
}

/* 2.04 with a MSGRESP (MessageDeliveryAck) body; status NULL = accepted for delivery. */
static void respond_ack(m5_coap_req_t *req, const char *msg_id, const m5_msg_addr_t *ori,
                        const char *status, const char *cause) {
  m5_msg_t a;
  memset(&a, 0, sizeof a);
  a.type = M5_MSG_MSGRESP;
  a.prio = M5_PRIO_MIDDLE;
  snprintf(a.msg_id, sizeof a.msg_id, "%s", msg_id);
  a.ori = *ori;
  if (status) snprintf(a.status, sizeof a.status, "%s", status);
  if (cause) snprintf(a.failure_cause, sizeof a.failure_cause, "%s", cause);
  respond_msg(req, M5_COAP_CHANGED, &a);
}

static void check_drained(ue_api_t *api) {
  if (api->draining && api->tick) {
    m5_loop_timer_cancel(api->loop, api->tick);
    api->tick = 0;
  }
  if (!api->draining || !api->drain_done) return;
  if (api->reg_inflight || api->store_inflight || (api->pushes && api->drain_timer)) return;
  if (api->drain_timer) m5_loop_timer_cancel(api->loop, api->drain_timer);
  api->drain_timer = 0;
  void (*done)(void *) = api->drain_done;
  api->drain_done = NULL;
  done(api->drain_arg);
}

static pending_t *pending_new(ue_api_t *api, pending_kind_t kind, ue_session_t *s,
                              m5_coap_req_t *req) {
  pending_t *p = calloc(1, sizeof *p);
  if (!p) return NULL;
  p->api = api;
  p->kind = kind;
  p->sid = s->id;
  p->req = req;
  p->next = api->pending;
  if (p->next) p->next->prev = p;
  api->pending = p;
  return p;
}

static void pending_free(pending_t *p) {
  ue_api_t *api = p->api;
  if (p->prev)
    p->prev->next = p->next;
  else
    api->pending = p->next;
  if (p->next) p->next->prev = p->prev;
  free(p);
}

/* ---- the message store: jobs, forwarding, reports ---- */

static int64_t wall_ms(void) {
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

static int is_report(const m5_store_msg_t *m) {
  return strcmp(m->app_id, IMDN_APP) == 0;
}

static sjob_t *sjob_new(ue_api_t *api, sjob_kind_t kind, m5_store_op_t op) {
  sjob_t *j = calloc(1, sizeof *j);
  if (!j) return NULL;
  j->api = api;
  j->kind = kind;
  j->job.op = op;
  j->job.arg = j;
  j->job.base.reply = api->store_replies;
  return j;
}

static void sjob_free(sjob_t *j) {
  m5_store_job_clear(&j->job);
  free(j->payload);
  free(j);
}

/* 0, or M5_EFULL (too many outstanding, or the store's queue is full): the caller keeps j. */
static int sjob_submit(ue_api_t *api, sjob_t *j) {
  if (api->store_inflight >= api->opts.max_store_inflight) return M5_EFULL;
  int rc = m5_store_submit(api->opts.store, &j->job);
  if (rc == 0) api->store_inflight++;
  return rc;
}

static void recent_add(ue_api_t *api, uint64_t id) {
  uint64_t *slot = &api->recent_ring[api->recent_pos];
  if (*slot) m5_hmap_del(api->recent, slot, sizeof *slot);
  *slot = id;
  if (m5_hmap_put(api->recent, &id, sizeof id, api, NULL) != 0) *slot = 0;
  api->recent_pos = (api->recent_pos + 1) % RECENT_MAX;
}

/* Concludes delivery id in the store (op MARK_DELIVERED, MARK_FAILED with cause, RESCHEDULE
 * to next_ms with attempts), from a push of session sid (0: none). */
static void conclude(ue_api_t *api, m5_store_op_t op, uint64_t id, const char *cause,
                     int64_t next_ms, uint32_t attempts, uint64_t sid, int from_due) {
  sjob_t *j = sjob_new(api, SJ_MARK, op);
  if (j) {
    j->job.id = id;
    if (cause) snprintf(j->job.cause, sizeof j->job.cause, "%s", cause);
    j->job.next_attempt_ms = next_ms;
    j->job.attempts = attempts;
    j->sid = sid;
    j->from_due = from_due;
  }
  if (!j || sjob_submit(api, j) != 0) {
    /* Still PENDING in the store: the back-off timer finds it again. */
    M5_LOGW(DOM, "delivery %llu: the message store is busy; it will be retried",
            (unsigned long long)id);
    m5_hmap_del(api->inflight, &id, sizeof id);
    if (j) sjob_free(j);
    if (from_due) {
      sess_t *ss = m5_hmap_get(api->sessions, &sid, sizeof sid);
      if (ss && ss->due_out && --ss->due_out == 0) ss->due_busy = 0;
    }
  }
}

/* The recipient has no live session or the push failed: retry later (store-and-forward) or
 * fail the delivery. */
static void conclude_unreached(ue_api_t *api, uint64_t id, uint32_t attempts, int sto_fwd,
                               uint64_t sid, int from_due) {
  if (sto_fwd)
    conclude(api, M5_STORE_RESCHEDULE, id, NULL, wall_ms() + backoff_ms(attempts + 1), attempts + 1,
             sid, from_due);
  else
    conclude(api, M5_STORE_MARK_FAILED, id, M5_CAUSE_UNREACHABLE, 0, attempts + 1, sid, from_due);
}

static void on_push_done(void *arg, int status, const m5_coap_msg_t *resp, const uint8_t *body,
                         size_t len) {
  (void)body;
  (void)len;
  push_t *p = arg;
  ue_api_t *api = p->api;
  char code[8];
  if (status == 0 && resp->code == M5_COAP_CHANGED) {
    M5_LOGD(DOM, "MSG %s delivered to %s", p->msg_id, p->dest);
    conclude(api, M5_STORE_MARK_DELIVERED, p->id, NULL, 0, p->attempts + 1, p->sid, p->from_due);
  } else {
    if (status == 0)
      M5_LOGW(DOM, "MSG %s to %s: the UE answered %s", p->msg_id, p->dest,
              m5_coap_code_str(resp->code, code, sizeof code));
    else
      M5_LOGI(DOM, "MSG %s to %s: not delivered (%s)%s", p->msg_id, p->dest, m5_strerror(status),
              p->sto_fwd ? ", kept for a retry" : "");
    conclude_unreached(api, p->id, p->attempts, p->sto_fwd, p->sid, p->from_due);
  }
  free(p->body);
  free(p);
  api->pushes--;
  check_drained(api);
}

enum { FROM_NEW = 0, FROM_DUE = 1, FROM_TIMER = 2 };

/* Pushes delivery id (body taken) over the live session sid of dest, on this worker. Every
 * outcome ends in the store: delivered, rescheduled or failed. from: FROM_NEW (just
 * accepted), FROM_DUE (the session's DUE), FROM_TIMER (the back-off timer). */
static void push_delivery(ue_api_t *api, uint64_t sid, const char *dest, char *body, size_t len,
                          const char *msg_id, uint64_t id, uint32_t attempts, int sto_fwd,
                          int from) {
  int from_due = from == FROM_DUE;
  if (m5_hmap_get(api->recent, &id, sizeof id)) { /* delivered or failed meanwhile */
    free(body);
    return;
  }
  if (m5_hmap_get(api->inflight, &id, sizeof id)) { /* its push still runs */
    free(body);
    if (!from_due)
      conclude(api, M5_STORE_RESCHEDULE, id, NULL, wall_ms() + INFLIGHT_SKIP_MS, attempts, 0, 0);
    return;
  }
  sess_t *ss = sess_find(api, sid);
  if (!ss || !ss->registered || strcmp(ss->ue_svc_id, dest) != 0) {
    free(body);
    conclude_unreached(api, id, attempts, sto_fwd, 0, 0);
    return;
  }
  if (from == FROM_TIMER && ss->due_busy) {
    /* The session's DUE is draining this recipient's queue in priority order and covers it
     * (it was PENDING before that DUE or comes with its next batch). */
    free(body);
    return;
  }
  push_t *p = calloc(1, sizeof *p);
  if (!p || m5_hmap_put(api->inflight, &id, sizeof id, api, NULL) != 0) {
    free(p);
    free(body);
    conclude(api, M5_STORE_RESCHEDULE, id, NULL, wall_ms() + BACKOFF_FIRST_MS, attempts, 0, 0);
    return;
  }
  p->api = api;
  p->body = body;
  p->id = id;
  p->attempts = attempts;
  p->sto_fwd = sto_fwd;
  p->sid = sid;
  p->from_due = from_due;
  snprintf(p->msg_id, sizeof p->msg_id, "%s", msg_id);
  snprintf(p->dest, sizeof p->dest, "%s", dest);
  int rc = m5_coap_ep_request(ss->s->ep, M5_COAP_POST, RESOURCE, M5_COAP_FORMAT_JSON,
                              (const uint8_t *)body, len, on_push_done, p);
  if (rc != 0) {
    free(p->body);
    free(p);
    m5_hmap_del(api->inflight, &id, sizeof id);
    if (rc == M5_EFULL) /* the session's outgoing queue is full: not an attempt */
      conclude(api, M5_STORE_RESCHEDULE, id, NULL, wall_ms() + BACKOFF_FIRST_MS, attempts, 0, 0);
    else
      conclude_unreached(api, id, attempts, sto_fwd, 0, 0);
    return;
  }
  api->pushes++;
  if (from_due) ss->due_out++;
}

/* The body the server sends for a delivery: the MSG, or the IMDN of a stored report. */
static int encode_delivery(const m5_store_delivery_t *d, char **body, size_t *len) {
  m5_msg_t m;
  memset(&m, 0, sizeof m);
  m.ori = d->msg.ori;
  m.dest = d->msg.dest;
  m.prio = d->msg.prio;
  snprintf(m.msg_id, sizeof m.msg_id, "%s", d->msg.msg_id);
  if (is_report(&d->msg)) {
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
    snprintf(m.app_id, sizeof m.app_id, "%s", d->msg.app_id);
    m.payload = d->msg.payload;
    m.payload_len = d->msg.payload_len;
    m.deliv_st_req = d->msg.deliv_st_req;
    m.sto_fwd = d->msg.sto_fwd;
    if (d->msg.sto_fwd) m.expr_time = d->msg.expr_time;
  }
  return m5_msg_encode(&m, body, len);
}

/* Hands delivery d to the worker holding its recipient's live session (this one or another,
 * through the router), or concludes it when there is none. from: see push_delivery. */
static void dispatch(ue_api_t *api, const m5_store_delivery_t *d, int from) {
  char *body = NULL;
  size_t len = 0;
  if (encode_delivery(d, &body, &len) != 0) {
    M5_LOGE(DOM, "delivery %llu: cannot encode its body", (unsigned long long)d->id);
    conclude(api, M5_STORE_MARK_FAILED, d->id, M5_CAUSE_UNREACHABLE, 0, d->attempts, 0, 0);
    return;
  }
  router_loc_t loc;
  if (strcmp(d->rcpt.type, "UE") != 0 || router_find(api->opts.router, d->rcpt.addr, &loc) != 0) {
    free(body);
    conclude_unreached(api, d->id, d->attempts, d->msg.sto_fwd, 0, 0);
    return;
  }
  if (loc.worker == api->opts.worker) {
    push_delivery(api, loc.sid, d->rcpt.addr, body, len, d->msg.msg_id, d->id, d->attempts,
                  d->msg.sto_fwd, from);
    return;
  }
  router_msg_t *rm = router_msg_new(ROUTER_DELIVER);
  if (!rm) {
    free(body);
    conclude(api, M5_STORE_RESCHEDULE, d->id, NULL, wall_ms() + BACKOFF_FIRST_MS, d->attempts, 0,
             0);
    return;
  }
  rm->sid = loc.sid;
  rm->origin = api->opts.worker;
  rm->body = body;
  rm->len = len;
  rm->deliv_id = d->id;
  rm->attempts = d->attempts;
  rm->sto_fwd = d->msg.sto_fwd;
  rm->from_timer = from == FROM_TIMER;
  snprintf(rm->ue_svc_id, sizeof rm->ue_svc_id, "%s", d->rcpt.addr);
  snprintf(rm->msg_id, sizeof rm->msg_id, "%s", d->msg.msg_id);
  if (router_post(api->opts.router, loc.worker, rm) != 0) {
    router_msg_free(rm);
    conclude(api, M5_STORE_RESCHEDULE, d->id, NULL, wall_ms() + BACKOFF_FIRST_MS, d->attempts, 0,
             0);
  }
}

/* The originator asked for a report (delivStReqInd) and d will not be delivered: an IMDN from
 * the original recipient to the originator, stored and forwarded like a message. */
static void report_failure(ue_api_t *api, const m5_store_delivery_t *d, const char *cause) {
  if (!d->msg.deliv_st_req || is_report(&d->msg) || strcmp(d->msg.ori.type, "UE") != 0) return;
  sjob_t *j = sjob_new(api, SJ_REPORT, M5_STORE_ACCEPT);
  char text[96];
  int n = snprintf(text, sizeof text, "REPT_DELY_FAILED %s", cause && cause[0] ? cause : "EXPIRED");
  if (j) j->payload = malloc((size_t)n + 1);
  if (!j || !j->payload) {
    M5_LOGE(DOM, "out of memory: the failure report of MSG %s is lost", d->msg.msg_id);
    if (j) sjob_free(j);
    return;
  }
  memcpy(j->payload, text, (size_t)n + 1);
  m5_store_msg_t *m = &j->job.msg;
  m->ori = d->rcpt;
  m->dest = d->msg.ori;
  snprintf(m->msg_id, sizeof m->msg_id, "%s", d->msg.msg_id);
  snprintf(m->app_id, sizeof m->app_id, "%s", IMDN_APP);
  m->prio = d->msg.prio;
  m->sto_fwd = true;
  m->expr_time = (int64_t)time(NULL) + api->opts.max_ttl_s;
  m->payload = j->payload;
  m->payload_len = (size_t)n;
  j->rcpt.addr = d->msg.ori;
  j->rcpt.next_attempt_ms = wall_ms() + BACKOFF_FIRST_MS;
  j->job.rcpts = &j->rcpt;
  j->job.n_rcpts = 1;
  if (sjob_submit(api, j) != 0) {
    M5_LOGE(DOM, "the message store is busy: the failure report of MSG %s is lost", d->msg.msg_id);
    sjob_free(j);
  }
}

static void start_due(ue_api_t *api, sess_t *ss) {
  if (ss->due_busy || !ss->registered) return;
  sjob_t *j = sjob_new(api, SJ_DUE, M5_STORE_DUE);
  if (!j) return;
  snprintf(j->job.rcpt.type, sizeof j->job.rcpt.type, "UE");
  snprintf(j->job.rcpt.addr, sizeof j->job.rcpt.addr, "%s", ss->ue_svc_id);
  j->job.limit = DUE_BATCH;
  j->sid = ss->s->id;
  ss->last_due_ms = wall_ms();
  if (sjob_submit(api, j) != 0) {
    sjob_free(j);
    return;
  }
  ss->due_busy = 1;
}

static void done_accept(sjob_t *j) {
  ue_api_t *api = j->api;
  m5_store_job_t *sj = &j->job;
  const char *what = j->is_imdn ? "IMDN" : "MSG";
  if (sj->status != 0) {
    M5_LOGE(DOM, "%s %s from %s: the message store failed (%s)", what, sj->msg.msg_id,
            sj->msg.ori.addr, m5_strerror(sj->status));
    respond_retry(j->req, M5_COAP_SERVICE_UNAVAILABLE, RETRY_AFTER_S, "the message store failed");
    return;
  }
  switch (sj->outcome) {
  case M5_STORE_DUPLICATE:
    M5_LOGI(DOM, "%s %s from %s: a duplicate, answered as before", what, sj->msg.msg_id,
            sj->msg.ori.addr);
    respond_ack(j->req, sj->msg.msg_id, &sj->msg.ori,
                sj->orig_ack.status[0] ? sj->orig_ack.status : NULL,
                sj->orig_ack.failure_cause[0] ? sj->orig_ack.failure_cause : NULL);
    return;
  case M5_STORE_QUEUE_FULL:
    M5_LOGI(DOM, "%s %s from %s to %s: the recipient's queue is full", what, sj->msg.msg_id,
            sj->msg.ori.addr, sj->msg.dest.addr);
    respond_ack(j->req, sj->msg.msg_id, &sj->msg.ori, "DELY_FAILED", M5_CAUSE_QUEUE_FULL);
    return;
  case M5_STORE_STORE_FULL:
    M5_LOGW(DOM, "%s %s from %s: the message store is full (store.max_total)", what, sj->msg.msg_id,
            sj->msg.ori.addr);
    respond_retry(j->req, M5_COAP_SERVICE_UNAVAILABLE, STORE_FULL_RETRY_S,
                  "overloaded: the message store is full");
    return;
  case M5_STORE_ACCEPTED:
    break;
  }
  M5_LOGD(DOM, "%s %s from %s to %s: accepted (%s)", what, sj->msg.msg_id, sj->msg.ori.addr,
          sj->msg.dest.addr, sj->ack.status[0] ? sj->ack.status : "for delivery");
  respond_ack(j->req, sj->msg.msg_id, &sj->msg.ori, sj->ack.status[0] ? sj->ack.status : NULL,
              sj->ack.failure_cause[0] ? sj->ack.failure_cause : NULL);
  if (sj->n_rcpts && j->rcpt.id) {
    m5_store_delivery_t d;
    memset(&d, 0, sizeof d);
    d.id = j->rcpt.id;
    d.rcpt = j->rcpt.addr;
    d.msg = sj->msg; /* the payload is j's, still valid */
    dispatch(api, &d, FROM_NEW);
  }
}

static void done_report(sjob_t *j) {
  m5_store_job_t *sj = &j->job;
  if (sj->status != 0 || sj->outcome != M5_STORE_ACCEPTED || !j->rcpt.id) {
    M5_LOGW(DOM, "the failure report of MSG %s to %s is lost: %s", sj->msg.msg_id,
            sj->msg.dest.addr,
            sj->status ? m5_strerror(sj->status) : m5_store_outcome_name(sj->outcome));
    return;
  }
  M5_LOGI(DOM, "failure report of MSG %s queued for %s", sj->msg.msg_id, sj->msg.dest.addr);
  m5_store_delivery_t d;
  memset(&d, 0, sizeof d);
  d.id = j->rcpt.id;
  d.rcpt = j->rcpt.addr;
  d.msg = sj->msg;
  dispatch(j->api, &d, FROM_NEW);
}

static void done_mark(sjob_t *j) {
  ue_api_t *api = j->api;
  m5_store_job_t *sj = &j->job;
  m5_hmap_del(api->inflight, &sj->id, sizeof sj->id);
  if (sj->op != M5_STORE_RESCHEDULE && sj->status == 0) recent_add(api, sj->id);
  if (sj->op == M5_STORE_MARK_FAILED && sj->status == 0 && sj->n_items)
    report_failure(api, &sj->items[0], sj->items[0].failure_cause);
  if (j->from_due) {
    sess_t *ss = sess_find(api, j->sid);
    if (ss && ss->due_out && --ss->due_out == 0) {
      ss->due_busy = 0;
      if (ss->due_more && !api->draining) start_due(api, ss);
    }
  }
}

static void done_due(sjob_t *j) {
  ue_api_t *api = j->api;
  sess_t *ss = sess_find(api, j->sid);
  if (!ss) return; /* the items stay PENDING: the back-off timer or the next REG */
  if (j->job.status == 0) {
    for (size_t i = 0; i < j->job.n_items; i++)
      dispatch(api, &j->job.items[i], FROM_DUE);
    if (j->job.n_items)
      M5_LOGI(DOM, "%s: %zu stored message(s) pushed", ss->ue_svc_id, j->job.n_items);
  }
  ss->due_more = j->job.status == 0 && j->job.n_items == j->job.limit;
  if (ss->due_out == 0) ss->due_busy = 0;
}

static void done_due_any(sjob_t *j) {
  j->api->due_any_busy = 0;
  if (j->job.status != 0) return;
  for (size_t i = 0; i < j->job.n_items; i++)
    dispatch(j->api, &j->job.items[i], FROM_TIMER);
}

static void done_expire(sjob_t *j) {
  j->api->expire_busy = 0;
  if (j->job.status != 0) return;
  for (size_t i = 0; i < j->job.n_items; i++) {
    const m5_store_delivery_t *d = &j->job.items[i];
    M5_LOGI(DOM, "%s %s from %s to %s expired", is_report(&d->msg) ? "report of" : "MSG",
            d->msg.msg_id, d->msg.ori.addr, d->rcpt.addr);
    report_failure(j->api, d, M5_CAUSE_EXPIRED);
  }
}

static void on_store_reply(void *msg, void *arg) {
  ue_api_t *api = arg;
  sjob_t *j = msg; /* job.base is the first member */
  api->store_inflight--;
  switch (j->kind) {
  case SJ_ACCEPT:
    done_accept(j);
    break;
  case SJ_REPORT:
    done_report(j);
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
  case SJ_EXPIRE:
    done_expire(j);
    break;
  }
  sjob_free(j);
  check_drained(api);
}

/* The back-off and expiry timer (one worker): bounded batches, one of each at a time. */
static void on_tick(m5_loop_t *loop, void *arg) {
  ue_api_t *api = arg;
  api->tick = 0;
  if (api->draining) return;
  int64_t now = wall_ms();
  if (!api->due_any_busy) {
    sjob_t *j = sjob_new(api, SJ_DUE_ANY, M5_STORE_DUE_ANY);
    if (j) {
      j->job.now_ms = now;
      j->job.limit = TICK_BUDGET;
      if (sjob_submit(api, j) == 0)
        api->due_any_busy = 1;
      else
        sjob_free(j);
    }
  }
  if (!api->expire_busy) {
    sjob_t *j = sjob_new(api, SJ_EXPIRE, M5_STORE_EXPIRE);
    if (j) {
      j->job.now_ms = now;
      j->job.limit = EXPIRE_BATCH;
      if (sjob_submit(api, j) == 0)
        api->expire_busy = 1;
      else
        sjob_free(j);
    }
  }
  api->tick = m5_loop_timer_add(loop, TICK_MS, on_tick, api);
}

/* ---- REG / DEREG ---- */

/* The newer session wins (docs/protocol.md §3): the one it replaced is closed where it lives. */
static void close_replaced(ue_api_t *api, const char *id, router_loc_t old) {
  M5_LOGI(DOM, "%s: a newer session replaces session %llu", id, (unsigned long long)old.sid);
  if (old.worker == api->opts.worker) {
    sess_t *ss = sess_find(api, old.sid);
    if (ss) ue_session_close(ss->s, "replaced by a newer session");
    return;
  }
  router_msg_t *m = router_msg_new(ROUTER_CLOSE);
  if (m) {
    m->sid = old.sid;
    snprintf(m->ue_svc_id, sizeof m->ue_svc_id, "%s", id);
  }
  if (!m || router_post(api->opts.router, old.worker, m) != 0) {
    M5_LOGW(DOM, "%s: cannot ask worker %u to close the replaced session", id, old.worker);
    router_msg_free(m);
  }
}

static void done_reg(pending_t *p) {
  ue_api_t *api = p->api;
  registry_job_t *job = &p->job;
  sess_t *ss = sess_find(api, p->sid);
  if (job->status == M5_EPERM) {
    m5_coap_ep_respond_error(p->req, M5_COAP_FORBIDDEN, "ueSvcId: not bound to this subscriber");
    return;
  }
  if (job->status != 0) {
    m5_coap_ep_respond_error(p->req, M5_COAP_INTERNAL_ERROR, "the registry failed");
    return;
  }
  if (!ss) { /* closed meanwhile: registered, but unreachable */
    m5_coap_ep_respond_error(p->req, M5_COAP_INTERNAL_ERROR, "session closed");
    return;
  }
  /* Two REGs with different ueSvcIds can be in flight on one session (TCP pipelining, NSTART
   * > 1): op_reg let both through. The first one to finish wins; binding the second too would
   * leave a router entry for the first that no session answers to. */
  if (ss->registered && strcmp(ss->ue_svc_id, job->ue_svc_id) != 0) {
    m5_coap_ep_respond_error(p->req, M5_COAP_FORBIDDEN,
                             "ueSvcId: this session is registered as another UE Service ID");
    return;
  }
  router_loc_t old;
  router_loc_t here = {api->opts.worker, p->sid};
  int rc = router_bind(api->opts.router, job->ue_svc_id, here, &old);
  if (rc < 0) {
    m5_coap_ep_respond_error(p->req, M5_COAP_SERVICE_UNAVAILABLE, "out of memory");
    return;
  }
  /* The admin API may have re-bound the ueSvcId to another SUPI (or unbound it) after the DB
   * thread accepted this REG; its kick (router_kick after that commit) may already have run
   * and found no session. Checking the binding only after router_bind closes that window:
   * either this lookup sees the new binding, or the kick runs after our bind and finds us. */
  registry_entry_t now;
  if (registry_lookup(api->opts.reg, job->ue_svc_id, (int64_t)time(NULL), &now) != 0 ||
      strcmp(now.supi, ss->s->key.supi) != 0) {
    router_unbind(api->opts.router, job->ue_svc_id, p->sid);
    /* The session we displaced belongs to the old subscriber too, and the kick may miss it. */
    if (rc == 1) close_replaced(api, job->ue_svc_id, old);
    M5_LOGI(DOM, "REG %s refused: its binding changed while it was being stored", job->ue_svc_id);
    m5_coap_ep_respond_error(p->req, M5_COAP_FORBIDDEN, "ueSvcId: not bound to this subscriber");
    return;
  }
  if (rc == 1) close_replaced(api, job->ue_svc_id, old);
  ss->registered = 1;
  snprintf(ss->ue_svc_id, sizeof ss->ue_svc_id, "%s", job->ue_svc_id);
  M5_LOGI(DOM, "%s: registered (%s, %s, %s)", job->ue_svc_id, job->created ? "new" : "again",
          ss->s->transport, ss->s->peer);
  m5_msg_t a;
  memset(&a, 0, sizeof a);
  a.type = M5_MSG_REG;
  a.prio = M5_PRIO_MIDDLE;
  snprintf(a.ue_svc_id, sizeof a.ue_svc_id, "%s", job->ue_svc_id);
  a.expiry = job->expiry;
  respond_msg(p->req, job->created ? M5_COAP_CREATED : M5_COAP_CHANGED, &a);
  start_due(api, ss); /* what was stored for it goes out now */
}

static void done_dereg(pending_t *p) {
  ue_api_t *api = p->api;
  registry_job_t *job = &p->job;
  if (job->status != 0 && job->status != M5_ENOENT) {
    m5_coap_ep_respond_error(p->req, M5_COAP_INTERNAL_ERROR, "the registry failed");
    return;
  }
  router_unbind(api->opts.router, job->ue_svc_id, p->sid);
  sess_t *ss = sess_find(api, p->sid);
  if (ss) ss->registered = 0;
  M5_LOGI(DOM, "%s: deregistered", job->ue_svc_id);
  m5_coap_ep_respond(p->req, M5_COAP_DELETED, -1, NULL, 0, NULL, 0);
}

static void on_reg_reply(void *msg, void *arg) {
  ue_api_t *api = arg;
  pending_t *p = msg; /* job.base is the first member */
  if (p->kind == P_REG)
    done_reg(p);
  else
    done_dereg(p);
  api->reg_inflight--;
  pending_free(p);
  check_drained(api);
}

static void submit_job(ue_api_t *api, pending_t *p) {
  p->job.base.reply = api->reg_replies;
  int rc = api->reg_inflight >= api->opts.max_reg_inflight
               ? M5_EFULL
               : registry_submit(api->opts.reg, &p->job);
  if (rc == 0) {
    api->reg_inflight++;
    return;
  }
  respond_retry(p->req, M5_COAP_SERVICE_UNAVAILABLE, RETRY_AFTER_S, "registry busy");
  pending_free(p);
}

static void op_reg(ue_api_t *api, sess_t *ss, m5_coap_req_t *req, const m5_msg_t *m) {
  ue_session_t *s = ss->s;
  registry_entry_t e;
  if (ss->registered && strcmp(ss->ue_svc_id, m->ue_svc_id) != 0) {
    m5_coap_ep_respond_error(req, M5_COAP_FORBIDDEN,
                             "ueSvcId: this session is registered as another UE Service ID");
    return;
  }
  time_t now = time(NULL);
  if (registry_lookup(api->opts.reg, m->ue_svc_id, now, &e) != 0 ||
      strcmp(e.supi, s->key.supi) != 0) {
    M5_LOGI(DOM, "REG %s refused (%s %s): not bound to the session's subscriber", m->ue_svc_id,
            s->transport, s->peer);
    m5_coap_ep_respond_error(req, M5_COAP_FORBIDDEN, "ueSvcId: not bound to this subscriber");
    return;
  }
  pending_t *p = pending_new(api, P_REG, s, req);
  if (!p) {
    respond_retry(req, M5_COAP_SERVICE_UNAVAILABLE, RETRY_AFTER_S, "out of memory");
    return;
  }
  p->job.op = REGISTRY_REGISTER;
  snprintf(p->job.ue_svc_id, sizeof p->job.ue_svc_id, "%s", m->ue_svc_id);
  snprintf(p->job.supi, sizeof p->job.supi, "%s", s->key.supi);
  p->job.registered_at = (int64_t)now;
  p->job.expiry = (int64_t)now + api->opts.reg_lifetime_s;
  submit_job(api, p);
}

static void op_dereg(ue_api_t *api, sess_t *ss, m5_coap_req_t *req, const m5_msg_t *m) {
  if (strcmp(ss->ue_svc_id, m->ue_svc_id) != 0) {
    m5_coap_ep_respond_error(req, M5_COAP_FORBIDDEN,
                             "ueSvcId: not the UE Service ID this session registered");
    return;
  }
  pending_t *p = pending_new(api, P_DEREG, ss->s, req);
  if (!p) {
    respond_retry(req, M5_COAP_SERVICE_UNAVAILABLE, RETRY_AFTER_S, "out of memory");
    return;
  }
  p->job.op = REGISTRY_DEREGISTER;
  snprintf(p->job.ue_svc_id, sizeof p->job.ue_svc_id, "%s", m->ue_svc_id);
  submit_job(api, p);
}

/* ---- MSG and IMDN: acceptance into the store ---- */

static int cause_valid(const char *s) {
  for (; *s; s++)
    if (!((*s >= 'A' && *s <= 'Z') || (*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') ||
          *s == '_' || *s == '-' || *s == '.'))
      return 0;
  return 1;
}

/* Short keys stay readable; a long destAddr is hashed so the key fits M5_STORE_KEY_MAX. */
static void report_key(char *out, size_t outlen, const char *msg_id, const char *dest) {
  if (strlen(IMDN_KEY) + strlen(msg_id) + 1 + strlen(dest) < outlen) {
    snprintf(out, outlen, IMDN_KEY "%s/%s", msg_id, dest);
    return;
  }
  uint64_t h = 1469598103934665603ull; /* FNV-1a */
  for (const char *p = dest; *p; p++)
    h = (h ^ (uint8_t)*p) * 1099511628211ull;
  snprintf(out, outlen, IMDN_KEY "%s/#%016llx", msg_id, (unsigned long long)h);
}

/* A MSG or (is_imdn) an IMDN from the session's UE: resolve the recipient, accept into the
 * store (the ack is committed with it for dedup), answer from the store's reply. */
static void op_accept(ue_api_t *api, sess_t *ss, m5_coap_req_t *req, m5_msg_t *m, int is_imdn) {
  if (strcmp(m->ori.type, "UE") != 0 || strcmp(m->ori.addr, ss->ue_svc_id) != 0) {
    m5_coap_ep_respond_error(req, M5_COAP_FORBIDDEN,
                             "oriAddr: not the UE Service ID this session registered");
    return;
  }
  if (!is_imdn && (unsigned char)m->app_id[0] != 0 && (unsigned char)m->app_id[0] < 0x20) {
    m5_coap_ep_respond_error(req, M5_COAP_BAD_REQUEST, "appId: starts with a control character");
    return;
  }
  if (is_imdn && (!m->deliv_st[0] || !cause_valid(m->deliv_st))) {
    m5_coap_ep_respond_error(req, M5_COAP_BAD_REQUEST, "delivSt: expected e.g. REPT_DELY_SUCCESS");
    return;
  }
  if (is_imdn && !cause_valid(m->failure_cause)) {
    m5_coap_ep_respond_error(req, M5_COAP_BAD_REQUEST,
                             "failureCause: letters, digits, '_', '-', '.' only");
    return;
  }
  /* Target resolution (TS 23.554 cl. 5.3.2.2). Only MSGin5G UEs are reachable so far. A
   * report is always stored for its recipient (the originator) while that one is away. */
  int sto = is_imdn || m->sto_fwd;
  int64_t now = (int64_t)time(NULL);
  registry_entry_t e;
  router_loc_t loc;
  const char *status = NULL, *cause = NULL;
  if (strcmp(m->dest.type, "UE") != 0 || registry_lookup(api->opts.reg, m->dest.addr, now, &e) != 0)
    status = "DELY_FAILED", cause = M5_CAUSE_UNKNOWN_RECIPIENT;
  else if (router_find(api->opts.router, m->dest.addr, &loc) == 0)
    status = NULL; /* live: accepted for delivery */
  else if (sto)
    status = "DELY_STORED";
  else if (!e.registered)
    status = "DELY_FAILED", cause = M5_CAUSE_NOT_REGISTERED;
  else
    status = "DELY_FAILED", cause = M5_CAUSE_UNREACHABLE;
  int64_t cap = now + api->opts.max_ttl_s;
  int64_t expr = !is_imdn && m->expr_time ? m->expr_time : cap;
  if (expr > cap) expr = cap;
  if (!cause && expr <= now) status = "DELY_FAILED", cause = M5_CAUSE_EXPIRED;

  sjob_t *j = sjob_new(api, SJ_ACCEPT, M5_STORE_ACCEPT);
  size_t plen = is_imdn ? strlen(m->deliv_st) + 1 + strlen(m->failure_cause) : m->payload_len;
  if (j) j->payload = malloc(plen + 1);
  if (!j || !j->payload) {
    if (j) sjob_free(j);
    respond_retry(req, M5_COAP_SERVICE_UNAVAILABLE, RETRY_AFTER_S, "out of memory");
    return;
  }
  if (is_imdn) {
    snprintf((char *)j->payload, plen + 1, "%s%s%s", m->deliv_st, m->failure_cause[0] ? " " : "",
             m->failure_cause);
    plen = strlen((char *)j->payload);
  } else if (plen) {
    memcpy(j->payload, m->payload, plen);
  }
  j->req = req;
  j->is_imdn = is_imdn;
  m5_store_job_t *sj = &j->job;
  m5_store_msg_t *sm = &sj->msg;
  sm->ori = m->ori;
  sm->dest = m->dest;
  snprintf(sm->msg_id, sizeof sm->msg_id, "%s", m->msg_id);
  snprintf(sm->app_id, sizeof sm->app_id, "%s", is_imdn ? IMDN_APP : m->app_id);
  sm->prio = m->prio;
  sm->deliv_st_req = !is_imdn && m->deliv_st_req;
  sm->sto_fwd = sto;
  sm->expr_time = expr;
  sm->payload = j->payload;
  sm->payload_len = plen;
  snprintf(sj->dedup_ori, sizeof sj->dedup_ori, "UE:%s", m->ori.addr);
  if (is_imdn)
    report_key(sj->dedup_id, sizeof sj->dedup_id, m->msg_id, m->dest.addr);
  else
    snprintf(sj->dedup_id, sizeof sj->dedup_id, "%s", m->msg_id);
  if (status) snprintf(sj->ack.status, sizeof sj->ack.status, "%s", status);
  if (cause) snprintf(sj->ack.failure_cause, sizeof sj->ack.failure_cause, "%s", cause);
  if (!cause) {
    j->rcpt.addr = m->dest;
    j->rcpt.next_attempt_ms = wall_ms() + BACKOFF_FIRST_MS; /* the first attempt is ours */
    sj->rcpts = &j->rcpt;
    sj->n_rcpts = 1;
  }
  if (sjob_submit(api, j) != 0) {
    sjob_free(j);
    respond_retry(req, M5_COAP_SERVICE_UNAVAILABLE, RETRY_AFTER_S, "the message store is busy");
  }
}

/* ---- messages from other workers ---- */

static void on_inbox(void *msg, void *arg) {
  ue_api_t *api = arg;
  router_msg_t *m = msg;
  if (m->kind == ROUTER_CLOSE) {
    sess_t *ss = sess_find(api, m->sid);
    if (ss) {
      M5_LOGI(DOM, "%s: closing session %llu (%s)", m->ue_svc_id, (unsigned long long)m->sid,
              ss->registered ? "replaced or unbound" : "unbound");
      ue_session_close(ss->s, "replaced by a newer session or binding changed");
    }
    router_msg_free(m);
    return;
  }
  if (m->kind == ROUTER_DELIVER) {
    char *body = m->body;
    m->body = NULL;
    push_delivery(api, m->sid, m->ue_svc_id, body, m->len, m->msg_id, m->deliv_id, m->attempts,
                  m->sto_fwd, m->from_timer ? FROM_TIMER : FROM_NEW);
  }
  router_msg_free(m);
}

static void on_result(void *msg, void *arg) {
  (void)arg;
  router_msg_free(msg);
}

/* ---- session hooks ---- */

static void on_opened(ue_session_t *s, void *arg) {
  ue_api_t *api = arg;
  sess_t *ss = calloc(1, sizeof *ss);
  if (!ss || m5_hmap_put(api->sessions, &s->id, sizeof s->id, ss, NULL) != 0) {
    free(ss);
    M5_LOGE(DOM, "out of memory: closing the new session from %s", s->peer);
    s->app = NULL;
    ue_session_close(s, "out of memory");
    return;
  }
  ss->s = s;
  s->app = ss;
  M5_LOGD(DOM, "session %llu opened (%s %s)", (unsigned long long)s->id, s->transport, s->peer);
}

static void on_closed(ue_session_t *s, const char *why, void *arg) {
  ue_api_t *api = arg;
  sess_t *ss = s->app;
  if (!ss) return;
  if (ss->registered && router_unbind(api->opts.router, ss->ue_svc_id, s->id) == 0)
    M5_LOGI(DOM, "%s: session closed (%s); registered but unreachable", ss->ue_svc_id, why);
  else
    M5_LOGD(DOM, "session %llu closed (%s)", (unsigned long long)s->id, why);
  m5_hmap_del(api->sessions, &s->id, sizeof s->id);
  s->app = NULL;
  free(ss);
}

static void on_request(ue_session_t *s, m5_coap_req_t *req, void *arg) {
  ue_api_t *api = arg;
  sess_t *ss = s->app;
  char diag[160];
  m5_msg_t m;
  if (!ss) {
    m5_coap_ep_respond_error(req, M5_COAP_INTERNAL_ERROR, "session state missing");
    return;
  }
  if (api->draining) {
    respond_retry(req, M5_COAP_SERVICE_UNAVAILABLE, DRAIN_RETRY_S, "server shutting down");
    return;
  }
  if (strcmp(m5_coap_req_path(req), RESOURCE) != 0) {
    m5_coap_ep_respond_error(req, M5_COAP_NOT_FOUND, "Uri-Path: the resource is msgin5g");
    return;
  }
  if (m5_coap_req_method(req) != M5_COAP_POST) {
    m5_coap_ep_respond_error(req, M5_COAP_METHOD_NOT_ALLOWED, "msgin5g accepts POST only");
    return;
  }
  if (m5_coap_req_format(req) != M5_COAP_FORMAT_JSON) {
    m5_coap_ep_respond_error(req, M5_COAP_UNSUPPORTED_FORMAT,
                             "Content-Format: expected 50 (application/json)");
    return;
  }
  size_t len = 0;
  const uint8_t *body = m5_coap_req_body(req, &len);
  if (m5_msg_parse(body, len, &m, diag, sizeof diag) != 0) {
    m5_coap_ep_respond_error(req, M5_COAP_BAD_REQUEST, diag);
    return;
  }
  if (m.type != M5_MSG_REG && !ss->registered) {
    m5_coap_ep_respond_error(req, M5_COAP_UNAUTHORIZED,
                             "REG first: this session is not registered");
  } else if (m.type == M5_MSG_REG) {
    op_reg(api, ss, req, &m);
  } else if (m.type == M5_MSG_DEREG) {
    op_dereg(api, ss, req, &m);
  } else if (m.type == M5_MSG_MSG || m.type == M5_MSG_IMDN) {
    /* The UE is here: what was stored for it goes out (at most every DUE_PERIOD_MS). */
    if (wall_ms() - ss->last_due_ms >= DUE_PERIOD_MS) start_due(api, ss);
    op_accept(api, ss, req, &m, m.type == M5_MSG_IMDN);
  } else if (m.type == M5_MSG_MSGRESP) {
    m5_coap_ep_respond_error(req, M5_COAP_BAD_REQUEST,
                             "msgType MSGRESP: only an answer body, never a request");
  } else {
    snprintf(diag, sizeof diag, "msgType %s: not supported by this server yet",
             m5_msg_type_name(m.type));
    m5_coap_ep_respond_error(req, M5_COAP_BAD_REQUEST, diag);
  }
  m5_msg_free(&m);
}

/* ---- life cycle ---- */

ue_api_t *ue_api_new(m5_loop_t *loop, const ue_api_opts_t *opts) {
  ue_api_t *api = calloc(1, sizeof *api);
  if (!api) return NULL;
  api->loop = loop;
  api->opts = *opts;
  if (!api->opts.max_reg_inflight) api->opts.max_reg_inflight = 1024;
  if (!api->opts.max_routed) api->opts.max_routed = 4096;
  if (!api->opts.inbox_cap) api->opts.inbox_cap = 16384;
  if (!api->opts.max_store_inflight) api->opts.max_store_inflight = 8192;
  if (!api->opts.max_ttl_s) api->opts.max_ttl_s = 86400;
  api->sessions = m5_hmap_new();
  api->inflight = m5_hmap_new();
  api->recent = m5_hmap_new();
  /* Room for every job outstanding, plus the tick's two, so no reply post ever fails. */
  api->store_replies = m5_mailbox_new(loop, api->opts.max_store_inflight + 2, on_store_reply, api);
  api->reg_replies = m5_mailbox_new(loop, api->opts.max_reg_inflight, on_reg_reply, api);
  api->inbox = m5_mailbox_new(loop, api->opts.inbox_cap, on_inbox, api);
  api->results = m5_mailbox_new(loop, api->opts.max_routed, on_result, api);
  if (!api->sessions || !api->inflight || !api->recent || !api->store_replies ||
      !api->reg_replies || !api->inbox || !api->results || !api->opts.store ||
      router_attach(api->opts.router, api->opts.worker, api->inbox, api->results) != 0) {
    ue_api_free(api);
    return NULL;
  }
  if (api->opts.timers) api->tick = m5_loop_timer_add(loop, TICK_MS, on_tick, api);
  return api;
}

static void drop_router_msg(void *msg) {
  router_msg_free(msg);
}

/* A store reply that arrived after the loop stopped (the store was closed after it). */
static void drop_sjob(void *msg) {
  sjob_t *j = msg;
  if (j->kind == SJ_ACCEPT && j->req)
    respond_retry(j->req, M5_COAP_SERVICE_UNAVAILABLE, DRAIN_RETRY_S, "server shutting down");
  sjob_free(j);
}

void ue_api_free(ue_api_t *api) {
  if (!api) return;
  /* The pending list owns every pending_t, wherever its job or result message is. */
  if (api->reg_replies) m5_mailbox_free(api->reg_replies, NULL);
  if (api->store_replies) m5_mailbox_free(api->store_replies, drop_sjob);
  if (api->tick) m5_loop_timer_cancel(api->loop, api->tick);
  if (api->results) m5_mailbox_free(api->results, drop_router_msg);
  if (api->inbox) m5_mailbox_free(api->inbox, drop_router_msg);
  while (api->pending) {
    pending_t *p = api->pending;
    if (p->req)
      respond_retry(p->req, M5_COAP_SERVICE_UNAVAILABLE, DRAIN_RETRY_S, "server shutting down");
    pending_free(p);
  }
  if (api->sessions) m5_hmap_free(api->sessions, free);
  if (api->inflight) m5_hmap_free(api->inflight, NULL);
  if (api->recent) m5_hmap_free(api->recent, NULL);
  free(api);
}

ue_session_hooks_t ue_api_hooks(ue_api_t *api) {
  ue_session_hooks_t h = {
      .opened = on_opened, .request = on_request, .closed = on_closed, .arg = api};
  return h;
}

static void on_drain_timeout(m5_loop_t *loop, void *arg) {
  (void)loop;
  ue_api_t *api = arg;
  api->drain_timer = 0;
  if (api->pushes) M5_LOGW(DOM, "drain: %zu pushes to UEs still unanswered", api->pushes);
  check_drained(api);
}

void ue_api_drain(ue_api_t *api, uint32_t timeout_ms, void (*done)(void *arg), void *arg) {
  api->draining = 1;
  api->drain_done = done;
  api->drain_arg = arg;
  api->drain_timer = m5_loop_timer_add(api->loop, timeout_ms, on_drain_timeout, api);
  if (!api->drain_timer)
    on_drain_timeout(api->loop, api);
  else
    check_drained(api);
}

size_t ue_api_sessions(const ue_api_t *api) {
  return m5_hmap_count(api->sessions);
}
