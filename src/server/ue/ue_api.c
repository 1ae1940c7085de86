/* MSGin5G-1 server logic: request checks, REG / DEREG against the registry, MSG and IMDN
 * acceptance into the message store (see ue_api.h, docs/delivery.md); their forwarding is
 * delivery.c's. Every request is answered exactly once: either at once, or from a pending_t
 * that waits for the registry's DB thread, or from an accept_t that waits for the message store.
 * Pending requests carry the session's id, never its pointer: the session may close meanwhile (the
 * answer then goes to an orphaned request, which the endpoint frees). */
#include "server/ue/ue_api.h"

#include "coap/coap.h"
#include "core/err.h"
#include "core/hmap.h"
#include "core/log.h"
#include "msg/msg.h"
#include "server/delivery/delivery.h"
#include "server/test_hooks.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define DOM "ue"
#define RESOURCE "msgin5g"
#define RETRY_AFTER_S 1       /* Max-Age of a 5.03 when a queue is full */
#define DRAIN_RETRY_S 5       /* Max-Age of a 5.03 while the server shuts down */
#define STORE_FULL_RETRY_S 30 /* Max-Age of a 5.03 when the store is at store.max_total */

#define IMDN_KEY "IMDN/" /* dedup key space of reports: '/' is not allowed in a msgId */

/* Per-session state (ue_session_t.app). */
typedef struct {
  ue_session_t *s;
  int registered;
  char ue_svc_id[M5_MSG_ADDR_MAX + 1];
  uint64_t gen; /* the binding generation it registered under (registry.h) */
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

/* A MSG or IMDN being accepted into the message store. job is first: the store hands back
 * &job.base == the accept_t. */
typedef struct {
  m5_store_job_t job;
  ue_api_t *api;
  m5_coap_req_t *req;    /* the MSG / IMDN to answer, or NULL for an AS's */
  ue_api_reply_fn reply; /* an AS's: the northbound answer */
  void *reply_ctx;
  int is_imdn;
  m5_store_rcpt_t rcpt;
  uint8_t *payload; /* owned, borrowed by the store */
  /* A MSG to a TOPIC address: first TOPIC_SUBSCRIBERS, then the ACCEPT to them (topic_*). */
  m5_msg_name_t topic;
  m5_store_rcpt_t *fan; /* owned, borrowed by the store */
  size_t n_fan;
} accept_t;

struct ue_api {
  m5_loop_t *loop;
  ue_api_opts_t opts;
  delivery_t *dl;              /* forwarding from the store */
  topics_t *topics;            /* TOPICSUB / TOPICUNSUB, topic rules */
  m5_hmap_t *sessions;         /* session id (8 bytes) -> sess_t */
  m5_mailbox_t *reg_replies;   /* registry jobs come back here */
  m5_mailbox_t *store_replies; /* accept jobs come back here */
  m5_mailbox_t *inbox;         /* DELIVER / CLOSE from any worker */
  m5_mailbox_t *results;       /* RESULT of DELIVERs (unused: DELIVERs conclude where pushed) */
  pending_t *pending;          /* every pending_t, for drain and free */
  size_t reg_inflight, store_inflight;
  int draining;
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

/* Once no request waits for the registry or the store, no new delivery starts here: what is
 * left is delivery.c's. */
static void check_drained(ue_api_t *api) {
  if (!api->draining || !api->drain_done) return;
  if (api->reg_inflight || api->store_inflight || topics_inflight(api->topics)) return;
  void (*done)(void *) = api->drain_done;
  api->drain_done = NULL;
  delivery_when_idle(api->dl, done, api->drain_arg);
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

/* ---- acceptance into the message store ---- */

static accept_t *accept_new(ue_api_t *api) {
  accept_t *j = calloc(1, sizeof *j);
  if (!j) return NULL;
  j->api = api;
  j->job.op = M5_STORE_ACCEPT;
  j->job.arg = j;
  j->job.base.reply = api->store_replies;
  return j;
}

static void accept_free(accept_t *j) {
  m5_store_job_clear(&j->job);
  free(j->payload);
  free(j->fan);
  free(j);
}

/* 0, or M5_EFULL (too many outstanding, or the store's queue is full): the caller keeps j. */
static int accept_submit(ue_api_t *api, accept_t *j) {
  if (api->store_inflight >= api->opts.max_store_inflight) return M5_EFULL;
  int rc = m5_store_submit(api->opts.store, &j->job);
  if (rc == 0) api->store_inflight++;
  return rc;
}

/* The answers of an accept, to a UE (CoAP) or to an AS (reply callback). */
static void answer_ack(accept_t *j, const char *status, const char *cause) {
  m5_store_msg_t *sm = &j->job.msg;
  if (j->req)
    respond_ack(j->req, sm->msg_id, &sm->ori, status, cause);
  else
    j->reply(j->reply_ctx, UE_API_ACK, status, cause, 0, NULL);
}

static void answer_retry(accept_t *j, uint32_t seconds, const char *why) {
  if (j->req)
    respond_retry(j->req, M5_COAP_SERVICE_UNAVAILABLE, seconds, why);
  else
    j->reply(j->reply_ctx, UE_API_BUSY, NULL, NULL, seconds, why);
}

/* ---- a MSG to a TOPIC address (TS 23.554 cl. 8.8.3; docs/delivery.md "Messaging Topics") ----
 * accept_msg checks the publisher against the topic rules (a refusal is DELY_FAILED
 * NOT_AUTHORIZED, the same for a topic nobody ever used), then asks the store for the
 * topic's subscribers (TOPIC_SUBSCRIBERS); topic_resolved turns them into the recipients of
 * one ACCEPT (partial: a full queue skips its subscriber), and topic_dispatch pushes those
 * live at once. The sender's answer is the ACCEPT's: no status once stored for the current
 * subscribers, even none. */

static void topic_dispatch(accept_t *j) {
  m5_store_job_t *sj = &j->job;
  if (sj->n_rcpts == 0)
    M5_LOGI(DOM, "MSG %s from %s to topic %s: no subscribers, stored for nobody", sj->msg.msg_id,
            sj->msg.ori.addr, sj->msg.dest.addr);
  for (size_t i = 0; i < sj->n_rcpts; i++) {
    const m5_store_rcpt_t *r = &sj->rcpts[i];
    if (!r->id || !r->in_flight) continue; /* queued: goes out at its REG or back-off */
    m5_store_delivery_t d;
    memset(&d, 0, sizeof d);
    d.id = r->id;
    d.rcpt = r->addr;
    d.rcpt_gen = r->gen;
    d.msg = sj->msg; /* the payload is j's, still valid */
    delivery_accepted(j->api->dl, &d);
  }
}

static int accept_submit(ue_api_t *api, accept_t *j);
static void answer_retry(accept_t *j, uint32_t seconds, const char *why);

/* The subscribers came back (status 0): the same job becomes the ACCEPT to them. */
static void topic_resolved(accept_t *j) {
  ue_api_t *api = j->api;
  m5_store_job_t *sj = &j->job;
  int rc = topics_recipients(sj->subs, sj->n_subs, &sj->msg.ori, api->opts.router, api->opts.reg,
                             delivery_first_retry_ms(), &j->fan, &j->n_fan);
  m5_store_job_clear(sj); /* the subscriptions list */
  sj->topics = NULL;
  sj->n_topics = 0;
  sj->op = M5_STORE_ACCEPT;
  sj->rcpts = j->fan;
  sj->n_rcpts = j->n_fan;
  sj->partial = true;
  if (rc != 0) {
    answer_retry(j, RETRY_AFTER_S, "out of memory");
    accept_free(j);
    return;
  }
  if (accept_submit(api, j) != 0) {
    answer_retry(j, RETRY_AFTER_S, "the message store is busy");
    accept_free(j);
  }
}

/* accept_msg's resolution of a TOPIC address: NULL (the subscribers are looked up) or the
 * refusal's cause. */
static const char *topic_target(ue_api_t *api, const m5_msg_t *m) {
  return topics_may_publish(api->topics, m->dest.addr, &m->ori) ? NULL : M5_CAUSE_NOT_AUTHORIZED;
}

/* accept_msg's job for a TOPIC address that may be published on: the lookup first. */
static void topic_lookup(accept_t *j, const char *topic) {
  m5_store_job_t *sj = &j->job;
  snprintf(j->topic, sizeof j->topic, "%s", topic);
  sj->op = M5_STORE_TOPIC_SUBSCRIBERS;
  sj->topics = &j->topic;
  sj->n_topics = 1;
  sj->limit = M5_STORE_RCPT_MAX;
}

static void done_accept(accept_t *j) {
  m5_store_job_t *sj = &j->job;
  const char *what = j->is_imdn ? "IMDN" : "MSG";
  if (sj->status == M5_EPERM && j->req) {
    M5_LOGI(DOM, "%s %s from %s refused: its binding changed while it was being stored", what,
            sj->msg.msg_id, sj->msg.ori.addr);
    m5_coap_ep_respond_error(j->req, M5_COAP_FORBIDDEN,
                             "oriAddr: the binding of this UE Service ID changed");
    return;
  }
  if (sj->status != 0) {
    M5_LOGE(DOM, "%s %s from %s: the message store failed (%s)", what, sj->msg.msg_id,
            sj->msg.ori.addr, m5_strerror(sj->status));
    if (j->req)
      respond_retry(j->req, M5_COAP_SERVICE_UNAVAILABLE, RETRY_AFTER_S, "the message store failed");
    else
      j->reply(j->reply_ctx, UE_API_ERROR, NULL, NULL, RETRY_AFTER_S, "the message store failed");
    return;
  }
  switch (sj->outcome) {
  case M5_STORE_DUPLICATE:
    M5_LOGI(DOM, "%s %s from %s: a duplicate, answered as before", what, sj->msg.msg_id,
            sj->msg.ori.addr);
    answer_ack(j, sj->orig_ack.status[0] ? sj->orig_ack.status : NULL,
               sj->orig_ack.failure_cause[0] ? sj->orig_ack.failure_cause : NULL);
    return;
  case M5_STORE_QUEUE_FULL:
    M5_LOGI(DOM, "%s %s from %s to %s: the recipient's queue is full", what, sj->msg.msg_id,
            sj->msg.ori.addr, sj->msg.dest.addr);
    answer_ack(j, "DELY_FAILED", M5_CAUSE_QUEUE_FULL);
    return;
  case M5_STORE_ORIGINATOR_QUOTA:
    M5_LOGI(DOM, "%s %s from %s: the sender has its quota of stored messages", what,
            sj->msg.msg_id, sj->msg.ori.addr);
    answer_ack(j, "DELY_FAILED", M5_CAUSE_ORIGINATOR_QUOTA);
    return;
  case M5_STORE_STORE_FULL:
    M5_LOGW(DOM, "%s %s from %s: the message store is full (store.max_total)", what, sj->msg.msg_id,
            sj->msg.ori.addr);
    answer_retry(j, STORE_FULL_RETRY_S, "overloaded: the message store is full");
    return;
  case M5_STORE_SUBS_FULL: /* TOPIC_SUB's only */
  case M5_STORE_TOPIC_FULL:
  case M5_STORE_ACCEPTED:
    break;
  }
  M5_LOGD(DOM, "%s %s from %s to %s: accepted (%s)", what, sj->msg.msg_id, sj->msg.ori.addr,
          sj->msg.dest.addr, sj->ack.status[0] ? sj->ack.status : "for delivery");
  answer_ack(j, sj->ack.status[0] ? sj->ack.status : NULL,
             sj->ack.failure_cause[0] ? sj->ack.failure_cause : NULL);
  if (sj->discarded)
    M5_LOGI(DOM, "%s %s from %s to %s: dropped (%s asked for no report on it, or was re-bound "
                 "since)", what, sj->msg.msg_id, sj->msg.ori.addr, sj->msg.dest.addr,
            sj->msg.dest.addr);
  if (j->topic[0]) {
    topic_dispatch(j);
  } else if (sj->n_rcpts && j->rcpt.id) {
    m5_store_delivery_t d;
    memset(&d, 0, sizeof d);
    d.id = j->rcpt.id;
    d.rcpt = j->rcpt.addr;
    d.rcpt_gen = j->rcpt.gen;
    d.msg = sj->msg; /* the payload is j's, still valid */
    delivery_accepted(j->api->dl, &d);
  }
}

static void on_store_reply(void *msg, void *arg) {
  ue_api_t *api = arg;
  accept_t *j = msg; /* job.base is the first member */
  api->store_inflight--;
  if (j->job.op == M5_STORE_TOPIC_SUBSCRIBERS && j->job.status == 0) {
    topic_resolved(j);
    check_drained(api);
    return;
  }
  done_accept(j);
  accept_free(j);
  check_drained(api);
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
  router_loc_t here = {api->opts.worker, p->sid, job->gen};
  int rc = router_bind(api->opts.router, job->ue_svc_id, here, &old);
  if (rc < 0) {
    m5_coap_ep_respond_error(p->req, M5_COAP_SERVICE_UNAVAILABLE, "out of memory");
    return;
  }
  /* The admin API may have re-bound the ueSvcId to another SUPI (or unbound it) after the DB
   * thread accepted this REG; its kick (router_kick after that commit) may already have run
   * and found no session. Checking the binding only after router_bind closes that window:
   * either this lookup sees the new binding, or the kick runs after our bind and finds us. */
  if (!registry_gen_current(api->opts.reg, job->ue_svc_id, job->gen)) {
    router_unbind(api->opts.router, job->ue_svc_id, p->sid);
    /* The session we displaced belongs to the old subscriber too, and the kick may miss it. */
    if (rc == 1) close_replaced(api, job->ue_svc_id, old);
    M5_LOGI(DOM, "REG %s refused: its binding changed while it was being stored", job->ue_svc_id);
    m5_coap_ep_respond_error(p->req, M5_COAP_FORBIDDEN, "ueSvcId: not bound to this subscriber");
    return;
  }
  if (rc == 1) close_replaced(api, job->ue_svc_id, old);
  ss->registered = 1;
  ss->gen = job->gen;
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
  /* what was stored for it (under this generation) goes out */
  delivery_registered(api->dl, p->sid, job->ue_svc_id, job->gen);
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
  delivery_deregistered(api->dl, p->sid);
  M5_LOGI(DOM, "%s: deregistered", job->ue_svc_id);
  m5_coap_ep_respond(p->req, M5_COAP_DELETED, -1, NULL, 0, NULL, 0);
}

/* Test builds: a REG held at an armed point (test_hooks.h) goes on with fn(p) once the
 * point's file is gone, polled on the loop (nothing blocks). Elsewhere fn(p) runs at once. */
typedef struct {
  pending_t *p;
  void (*fn)(pending_t *p);
  char path[4096];
} hold_t;

static void hold_poll(m5_loop_t *loop, void *arg) {
  hold_t *h = arg;
  if (m5_test_hook_held(h->path) && m5_loop_timer_add(loop, 10, hold_poll, h)) return;
  h->fn(h->p);
  free(h);
}

static void hold_or_go(ue_api_t *api, const char *point, pending_t *p, void (*fn)(pending_t *)) {
  char path[4096];
  if (m5_test_hook_armed(point, path, sizeof path)) {
    hold_t *h = calloc(1, sizeof *h);
    if (h) {
      h->p = p;
      h->fn = fn;
      memcpy(h->path, path, sizeof h->path);
      M5_LOGI(DOM, "test hook %s: REG %s held", point, p->job.ue_svc_id);
      if (m5_loop_timer_add(api->loop, 10, hold_poll, h)) return;
      free(h);
    }
  }
  fn(p);
}

static void finish_reg_reply(pending_t *p) {
  ue_api_t *api = p->api;
  if (p->kind == P_REG)
    done_reg(p);
  else
    done_dereg(p);
  api->reg_inflight--;
  pending_free(p);
  check_drained(api);
}

static void on_reg_reply(void *msg, void *arg) {
  pending_t *p = msg; /* job.base is the first member */
  /* test builds: between the registry's write and the session's router entry */
  hold_or_go(arg, "reg-write", p, finish_reg_reply);
}

static void submit_job(ue_api_t *api, pending_t *p) {
  p->job.base.reply = api->reg_replies;
  if (api->draining) { /* held by a test hook across the start of a drain */
    respond_retry(p->req, M5_COAP_SERVICE_UNAVAILABLE, DRAIN_RETRY_S, "server shutting down");
    pending_free(p);
    check_drained(api);
    return;
  }
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

static void submit_reg(pending_t *p) {
  submit_job(p->api, p);
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
  p->job.gen = e.gen; /* the registry refuses the REG if the binding changes before it runs */
  p->job.registered_at = (int64_t)now;
  p->job.expiry = (int64_t)now + api->opts.reg_lifetime_s;
  hold_or_go(api, "reg-lookup", p, submit_reg); /* test builds: between lookup and write */
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

/* delivSt: a word (REPT_DELY_SUCCESS, ...). failureCause is free text, checked by the codec
 * (1-256 bytes of UTF-8 without control characters) and passed through as given. */
static int deliv_st_valid(const char *s) {
  for (; *s; s++)
    if (!((*s >= 'A' && *s <= 'Z') || (*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') ||
          *s == '_' || *s == '-' || *s == '.'))
      return 0;
  return 1;
}

/* Short keys stay readable; a long destAddr is hashed so the key fits M5_STORE_KEY_MAX. */
static void report_key(char *out, size_t outlen, const char *msg_id, const char *dest) {
  int n = snprintf(out, outlen, IMDN_KEY "%s/%s", msg_id, dest);
  if (n >= 0 && (size_t)n < outlen) return;
  /* Too long for the key: the destination is replaced by its hash (a msgId is at most 64). */
  uint64_t h = 1469598103934665603ull; /* FNV-1a */
  for (const char *p = dest; *p; p++)
    h = (h ^ (uint8_t)*p) * 1099511628211ull;
  n = snprintf(out, outlen, IMDN_KEY "%s/#%016llx", msg_id, (unsigned long long)h);
  if (n < 0 || (size_t)n >= outlen) out[0] = '\0'; /* cannot happen with the sizes in store.h */
}

/* A MSG or (is_imdn) an IMDN from the session's UE: resolve the recipient, accept into the
 * store (the ack is committed with it for dedup), answer from the store's reply. */
static void accept_msg(ue_api_t *api, const m5_msg_t *m, int is_imdn, uint64_t ori_gen,
                       m5_coap_req_t *req, ue_api_reply_fn reply, void *reply_ctx);

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
  if (is_imdn && (!m->deliv_st[0] || !deliv_st_valid(m->deliv_st))) {
    m5_coap_ep_respond_error(req, M5_COAP_BAD_REQUEST, "delivSt: expected e.g. REPT_DELY_SUCCESS");
    return;
  }
  accept_msg(api, m, is_imdn, ss->gen, req, NULL, NULL);
}

/* Resolves the recipient of m (from the UE or AS m->ori, already checked), accepts it into the
 * store with the ack it will get, and answers from the store's reply: to req (a UE's CoAP
 * request) or through reply(ctx) (an AS's). */
static void accept_msg(ue_api_t *api, const m5_msg_t *m, int is_imdn, uint64_t ori_gen,
                       m5_coap_req_t *req, ue_api_reply_fn reply, void *reply_ctx) {
  /* Target resolution (TS 23.554 cl. 5.3.2.2). Only MSGin5G UEs are reachable so far. A
   * report is always stored for its recipient (the originator) while that one is away. */
  int sto = is_imdn || m->sto_fwd;
  int64_t now = (int64_t)time(NULL);
  registry_entry_t e;
  e.gen = 0;
  router_loc_t loc;
  const char *status = NULL, *cause = NULL;
  char target[2]; /* only whether the AS has a targetUri: its first character is enough */
  const char *why = NULL;
  int topic = !is_imdn && !strcmp(m->dest.type, "TOPIC");
  /* Who may message whom (TS 23.554 cl. 8.3.2 step 3), before the recipient is resolved: a
   * refusal says nothing about whether it exists. Reports are not messages (policy.h). Stored
   * as a DELY_FAILED answer without delivery, so a retransmission gets it again. */
  if (!is_imdn && registry_policy_check(api->opts.reg, &m->ori, &m->dest, &why) != POLICY_ALLOW) {
    M5_LOGI(DOM, "MSG %s from %s:%s to %s:%s refused: %s", m->msg_id, m->ori.type, m->ori.addr,
            m->dest.type, m->dest.addr, why ? why : "not authorized");
    status = "DELY_FAILED", cause = M5_CAUSE_NOT_AUTHORIZED;
  } else if (topic) {
    /* the topic's own rule (topics.rules), also before anything is looked up */
    if ((cause = topic_target(api, m))) status = "DELY_FAILED";
  } else if (!strcmp(m->dest.type, "AS")) {
    /* point-to-application: "live" = registered with a targetUri (delivery.c POSTs to it) */
    if (registry_as_target(api->opts.reg, m->dest.addr, target, sizeof target) != 0)
      status = "DELY_FAILED", cause = M5_CAUSE_UNKNOWN_RECIPIENT;
    else if (target[0])
      status = NULL;
    else if (sto)
      status = "DELY_STORED";
    else
      status = "DELY_FAILED", cause = M5_CAUSE_NOT_REGISTERED;
  } else if (strcmp(m->dest.type, "UE") != 0 ||
             registry_lookup(api->opts.reg, m->dest.addr, now, &e) != 0)
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

  accept_t *j = accept_new(api);
  size_t plen = is_imdn ? strlen(m->deliv_st) + 1 + strlen(m->failure_cause) : m->payload_len;
  if (j) j->payload = malloc(plen + 1);
  if (j) {
    j->req = req;
    j->reply = reply;
    j->reply_ctx = reply_ctx;
  }
  if (!j || !j->payload) {
    if (j) accept_free(j);
    if (req)
      respond_retry(req, M5_COAP_SERVICE_UNAVAILABLE, RETRY_AFTER_S, "out of memory");
    else
      reply(reply_ctx, UE_API_BUSY, NULL, NULL, RETRY_AFTER_S, "out of memory");
    return;
  }
  if (is_imdn) {
    snprintf((char *)j->payload, plen + 1, "%s%s%s", m->deliv_st, m->failure_cause[0] ? " " : "",
             m->failure_cause);
    plen = strlen((char *)j->payload);
  } else if (plen) {
    memcpy(j->payload, m->payload, plen);
  }
  j->is_imdn = is_imdn;
  m5_store_job_t *sj = &j->job;
  m5_store_msg_t *sm = &sj->msg;
  sm->ori = m->ori;
  sm->dest = m->dest;
  snprintf(sm->msg_id, sizeof sm->msg_id, "%s", m->msg_id);
  snprintf(sm->app_id, sizeof sm->app_id, "%s", is_imdn ? DELIVERY_IMDN_APP : m->app_id);
  sm->prio = m->prio;
  sm->deliv_st_req = !is_imdn && m->deliv_st_req;
  sm->sto_fwd = sto;
  sm->expr_time = expr;
  sm->payload = j->payload;
  sm->payload_len = plen;
  /* Binding generations (docs/delivery.md "Re-bound UE Service IDs"): the store refuses a
   * UE originator that was re-bound meanwhile; a MSG asking for a report leaves a ticket, and
   * a report to a UE goes to the generation that sent the message, or to nobody. */
  sm->ori_gen = ori_gen;
  int to_ue = !strcmp(m->dest.type, "UE");
  sj->ticket_put = !is_imdn && m->deliv_st_req && !strcmp(m->ori.type, "UE");
  sj->ticket_check = is_imdn && to_ue;
  snprintf(sj->dedup_ori, sizeof sj->dedup_ori, "%s:%s", m->ori.type, m->ori.addr);
  if (is_imdn)
    report_key(sj->dedup_id, sizeof sj->dedup_id, m->msg_id, m->dest.addr);
  else
    snprintf(sj->dedup_id, sizeof sj->dedup_id, "%s", m->msg_id);
  if (status) snprintf(sj->ack.status, sizeof sj->ack.status, "%s", status);
  if (cause) snprintf(sj->ack.failure_cause, sizeof sj->ack.failure_cause, "%s", cause);
  if (!cause && topic) {
    topic_lookup(j, m->dest.addr);
  } else if (!cause) {
    j->rcpt.addr = m->dest;
    j->rcpt.gen = to_ue ? e.gen : 0; /* e is set: a UE recipient without a cause is bound */
    j->rcpt.next_attempt_ms = delivery_first_retry_ms();
    /* A live recipient is pushed as soon as the accept is committed (done_accept), and that
     * push always ends in a conclusion (delivery.c): in flight until then. */
    j->rcpt.in_flight = status == NULL;
    sj->rcpts = &j->rcpt;
    sj->n_rcpts = 1;
  }
  if (accept_submit(api, j) != 0) {
    answer_retry(j, RETRY_AFTER_S, "the message store is busy");
    accept_free(j);
  }
}

topics_t *ue_api_topics(ue_api_t *api) {
  return api->topics;
}

void ue_api_as_registered(ue_api_t *api, const char *as_svc_id) {
  delivery_as_registered(api->dl, as_svc_id);
}

void ue_api_accept_from_as(ue_api_t *api, const m5_msg_t *m, int is_report, ue_api_reply_fn reply,
                           void *ctx) {
  if (is_report && (!m->deliv_st[0] || !deliv_st_valid(m->deliv_st))) {
    reply(ctx, UE_API_INVALID, NULL, NULL, 0, "delivSt: expected e.g. REPT_DELY_SUCCESS");
    return;
  }
  if (api->draining) {
    reply(ctx, UE_API_BUSY, NULL, NULL, DRAIN_RETRY_S, "the server is shutting down");
    return;
  }
  accept_msg(api, m, is_report, 0, NULL, reply, ctx);
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
  if (m->kind == ROUTER_DELIVER) delivery_routed(api->dl, m);
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
  if (!ss || m5_hmap_put(api->sessions, &s->id, sizeof s->id, ss, NULL) != 0 ||
      delivery_session_opened(api->dl, s) != 0) {
    if (ss) m5_hmap_del(api->sessions, &s->id, sizeof s->id);
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
  delivery_session_closed(api->dl, s->id);
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
  /* Revocation does not depend on the CLOSE the admin API posts to this worker (its mailbox
   * may be full): every request of a registered session checks that its binding still has
   * the generation it registered under. */
  if (ss->registered && !registry_gen_current(api->opts.reg, ss->ue_svc_id, ss->gen)) {
    M5_LOGI(DOM, "%s: session %llu is stale (its binding changed or was removed); closing it",
            ss->ue_svc_id, (unsigned long long)s->id);
    m5_coap_ep_respond_error(req, M5_COAP_FORBIDDEN,
                             "ueSvcId: the binding of this UE Service ID changed; session closed");
    ue_session_close(s, "binding changed");
    m5_msg_free(&m);
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
    delivery_ue_active(api->dl, s->id); /* the UE is here: what was stored for it goes out */
    op_accept(api, ss, req, &m, m.type == M5_MSG_IMDN);
  } else if (m.type == M5_MSG_TOPICSUB || m.type == M5_MSG_TOPICUNSUB) {
    delivery_ue_active(api->dl, s->id);
    topics_ue_request(api->topics, req, ss->ue_svc_id, ss->gen, &m);
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

static void topics_idle(void *arg) {
  check_drained(arg);
}

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
  delivery_opts_t dopts = {.reg = api->opts.reg,
                           .tls_cert = api->opts.tls_cert,
                           .tls_key = api->opts.tls_key,
                           .tls_ca = api->opts.tls_ca,
                           .worker = api->opts.worker,
                           .router = api->opts.router,
                           .store = api->opts.store,
                           .max_ttl_s = api->opts.max_ttl_s,
                           .in_flight_max_ms = api->opts.in_flight_max_ms,
                           .timers = api->opts.timers,
                           .max_store_inflight = api->opts.max_store_inflight};
  api->dl = delivery_new(loop, &dopts);
  topics_opts_t topts = api->opts.topics;
  topts.store = api->opts.store;
  api->topics = topics_new(loop, &topts, topics_idle, api);
  api->sessions = m5_hmap_new();
  api->store_replies = m5_mailbox_new(loop, api->opts.max_store_inflight, on_store_reply, api);
  api->reg_replies = m5_mailbox_new(loop, api->opts.max_reg_inflight, on_reg_reply, api);
  api->inbox = m5_mailbox_new(loop, api->opts.inbox_cap, on_inbox, api);
  api->results = m5_mailbox_new(loop, api->opts.max_routed, on_result, api);
  if (!api->dl || !api->topics || !api->sessions || !api->store_replies || !api->reg_replies ||
      !api->inbox || !api->results || !api->opts.store ||
      router_attach(api->opts.router, api->opts.worker, api->inbox, api->results) != 0) {
    ue_api_free(api);
    return NULL;
  }
  return api;
}

static void drop_router_msg(void *msg) {
  router_msg_free(msg);
}

/* An accept reply that arrived after the loop stopped (the store was closed after it). */
static void drop_accept(void *msg) {
  accept_t *j = msg;
  if (j->req)
    respond_retry(j->req, M5_COAP_SERVICE_UNAVAILABLE, DRAIN_RETRY_S, "server shutting down");
  else if (j->reply) /* the northbound listener is gone: only its record is freed */
    j->reply(j->reply_ctx, UE_API_DROPPED, NULL, NULL, 0, NULL);
  accept_free(j);
}

void ue_api_free(ue_api_t *api) {
  if (!api) return;
  /* The pending list owns every pending_t, wherever its job or result message is. */
  if (api->reg_replies) m5_mailbox_free(api->reg_replies, NULL);
  if (api->store_replies) m5_mailbox_free(api->store_replies, drop_accept);
  delivery_free(api->dl);
  topics_free(api->topics);
  if (api->results) m5_mailbox_free(api->results, drop_router_msg);
  if (api->inbox) m5_mailbox_free(api->inbox, drop_router_msg);
  while (api->pending) {
    pending_t *p = api->pending;
    if (p->req)
      respond_retry(p->req, M5_COAP_SERVICE_UNAVAILABLE, DRAIN_RETRY_S, "server shutting down");
    pending_free(p);
  }
  if (api->sessions) m5_hmap_free(api->sessions, free);
  free(api);
}

ue_session_hooks_t ue_api_hooks(ue_api_t *api) {
  ue_session_hooks_t h = {
      .opened = on_opened, .request = on_request, .closed = on_closed, .arg = api};
  return h;
}

void ue_api_drain(ue_api_t *api, uint32_t timeout_ms, void (*done)(void *arg), void *arg) {
  api->draining = 1;
  api->drain_done = done;
  api->drain_arg = arg;
  delivery_drain(api->dl, timeout_ms);
  check_drained(api);
}

size_t ue_api_sessions(const ue_api_t *api) {
  return m5_hmap_count(api->sessions);
}
