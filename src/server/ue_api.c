/* MSGin5G-1 server logic: request checks, REG / DEREG against the registry, MSG routing (see
 * ue_api.h). Every request is answered exactly once: either at once, or from a pending_t that
 * waits for the registry's DB thread or for another worker's result. Pending requests carry
 * the session's id, never its pointer: the session may close meanwhile (the answer then goes
 * to an orphaned request, which the endpoint frees). */
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
#define RETRY_AFTER_S 1 /* Max-Age of a 5.03 when a queue is full */
#define DRAIN_RETRY_S 5 /* Max-Age of a 5.03 while the server shuts down */

/* Per-session state (ue_session_t.app). */
typedef struct {
  ue_session_t *s;
  int registered;
  char ue_svc_id[M5_MSG_ADDR_MAX + 1];
} sess_t;

typedef enum { P_REG, P_DEREG, P_ROUTED } pending_kind_t;

/* A request waiting. job is first: the registry hands back &job.base == the pending_t. */
typedef struct pending {
  registry_job_t job;
  ue_api_t *api;
  pending_kind_t kind;
  struct pending *prev, *next;
  uint64_t sid;
  m5_coap_req_t *req; /* NULL once answered (a routed MSG answered at drain time) */
  char msg_id[M5_MSG_ID_MAX + 1];
  m5_msg_addr_t ori, dest;
} pending_t;

/* A push in flight towards a UE; keeps the body until the endpoint is done with it. */
typedef struct {
  ue_api_t *api;
  char *body;
  char msg_id[M5_MSG_ID_MAX + 1];
  char dest[M5_MSG_ADDR_MAX + 1];
} push_t;

struct ue_api {
  m5_loop_t *loop;
  ue_api_opts_t opts;
  m5_hmap_t *sessions;       /* session id (8 bytes) -> sess_t */
  m5_mailbox_t *reg_replies; /* registry jobs come back here */
  m5_mailbox_t *inbox;       /* DELIVER / CLOSE from any worker */
  m5_mailbox_t *results;     /* RESULT of our DELIVERs */
  pending_t *pending;        /* every pending_t, for drain and free */
  size_t reg_inflight, routed_waiting, pushes;
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
  if (!api->draining || !api->drain_done) return;
  if (api->reg_inflight || api->routed_waiting || (api->pushes && api->drain_timer)) return;
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

/* ---- pushing to a UE on this worker ---- */

static void on_push_done(void *arg, int status, const m5_coap_msg_t *resp, const uint8_t *body,
                         size_t len) {
  (void)body;
  (void)len;
  push_t *p = arg;
  ue_api_t *api = p->api;
  char code[8];
  if (status == 0 && resp->code == M5_COAP_CHANGED) {
    M5_LOGD(DOM, "MSG %s delivered to %s", p->msg_id, p->dest);
  } else if (status == 0) {
    M5_LOGW(DOM, "MSG %s to %s: the UE answered %s", p->msg_id, p->dest,
            m5_coap_code_str(resp->code, code, sizeof code));
  } else {
    M5_LOGW(DOM, "MSG %s to %s: not delivered (%s)", p->msg_id, p->dest, m5_strerror(status));
  }
  free(p->body);
  free(p);
  api->pushes--;
  check_drained(api);
}

/* Hands body (taken) to the live session sid of dest: 0 accepted, M5_ENOENT no such
 * registered session here, M5_EFULL its outgoing queue is full. */
static int push_local(ue_api_t *api, uint64_t sid, const char *dest, char *body, size_t len,
                      const char *msg_id) {
  sess_t *ss = sess_find(api, sid);
  if (!ss || !ss->registered || strcmp(ss->ue_svc_id, dest) != 0) {
    free(body);
    return M5_ENOENT;
  }
  push_t *p = calloc(1, sizeof *p);
  if (!p) {
    free(body);
    return M5_ENOMEM;
  }
  p->api = api;
  p->body = body;
  snprintf(p->msg_id, sizeof p->msg_id, "%s", msg_id);
  snprintf(p->dest, sizeof p->dest, "%s", dest);
  int rc = m5_coap_ep_request(ss->s->ep, M5_COAP_POST, RESOURCE, M5_COAP_FORMAT_JSON,
                              (const uint8_t *)body, len, on_push_done, p);
  if (rc != 0) {
    free(p->body);
    free(p);
    return rc == M5_EFULL ? M5_EFULL : M5_ENOENT;
  }
  api->pushes++;
  return 0;
}

static void answer_routed(m5_coap_req_t *req, const char *msg_id, const m5_msg_addr_t *ori,
                          int status) {
  if (status == 0)
    respond_ack(req, msg_id, ori, NULL, NULL);
  else if (status == M5_EFULL)
    respond_ack(req, msg_id, ori, "DELY_FAILED", M5_CAUSE_QUEUE_FULL);
  else
    respond_ack(req, msg_id, ori, "DELY_FAILED", M5_CAUSE_UNREACHABLE);
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

/* ---- MSG ---- */

static void op_msg(ue_api_t *api, sess_t *ss, m5_coap_req_t *req, m5_msg_t *m) {
  if (strcmp(m->ori.type, "UE") != 0 || strcmp(m->ori.addr, ss->ue_svc_id) != 0) {
    m5_coap_ep_respond_error(req, M5_COAP_FORBIDDEN,
                             "oriAddr: not the UE Service ID this session registered");
    return;
  }
  /* Target resolution (TS 23.554 cl. 5.3.2.2). Only MSGin5G UEs are reachable so far. */
  registry_entry_t e;
  router_loc_t loc;
  const char *cause = NULL;
  if (strcmp(m->dest.type, "UE") != 0 ||
      registry_lookup(api->opts.reg, m->dest.addr, (int64_t)time(NULL), &e) != 0)
    cause = M5_CAUSE_UNKNOWN_RECIPIENT;
  else if (!e.registered)
    cause = M5_CAUSE_NOT_REGISTERED;
  else if (router_find(api->opts.router, m->dest.addr, &loc) != 0)
    cause = M5_CAUSE_UNREACHABLE;
  if (cause) {
    M5_LOGI(DOM, "MSG %s from %s to %s %s: %s", m->msg_id, m->ori.addr, m->dest.type, m->dest.addr,
            cause);
    respond_ack(req, m->msg_id, &m->ori, "DELY_FAILED", cause);
    return;
  }
  char *body = NULL;
  size_t len = 0;
  m->type = M5_MSG_MSG; /* the server-side MSG carries the same members */
  if (m5_msg_encode(m, &body, &len) != 0) {
    m5_coap_ep_respond_error(req, M5_COAP_INTERNAL_ERROR, "cannot encode the MSG");
    return;
  }
  if (loc.worker == api->opts.worker) {
    int rc = push_local(api, loc.sid, m->dest.addr, body, len, m->msg_id);
    M5_LOGD(DOM, "MSG %s from %s to %s: %s", m->msg_id, m->ori.addr, m->dest.addr,
            rc == 0 ? "pushed" : m5_strerror(rc));
    answer_routed(req, m->msg_id, &m->ori, rc);
    return;
  }
  router_msg_t *rm = router_msg_new(ROUTER_DELIVER);
  pending_t *p = api->routed_waiting < api->opts.max_routed && rm
                     ? pending_new(api, P_ROUTED, ss->s, req)
                     : NULL;
  if (!p) {
    free(body);
    router_msg_free(rm);
    respond_retry(req, M5_COAP_SERVICE_UNAVAILABLE, RETRY_AFTER_S, "too many messages in flight");
    return;
  }
  snprintf(p->msg_id, sizeof p->msg_id, "%s", m->msg_id);
  p->ori = m->ori;
  p->dest = m->dest;
  rm->sid = loc.sid;
  rm->origin = api->opts.worker;
  rm->token = p;
  rm->body = body;
  rm->len = len;
  snprintf(rm->ue_svc_id, sizeof rm->ue_svc_id, "%s", m->dest.addr);
  snprintf(rm->msg_id, sizeof rm->msg_id, "%s", m->msg_id);
  if (router_post(api->opts.router, loc.worker, rm) != 0) {
    router_msg_free(rm);
    pending_free(p);
    respond_retry(req, M5_COAP_SERVICE_UNAVAILABLE, RETRY_AFTER_S, "worker queue full");
    return;
  }
  api->routed_waiting++;
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
  if (m->kind != ROUTER_DELIVER) {
    router_msg_free(m);
    return;
  }
  char *body = m->body;
  m->body = NULL;
  m->status = push_local(api, m->sid, m->ue_svc_id, body, m->len, m->msg_id);
  m->kind = ROUTER_RESULT;
  if (router_post(api->opts.router, m->origin, m) != 0) {
    M5_LOGE(DOM, "cannot return the result of MSG %s to worker %u", m->msg_id, m->origin);
    router_msg_free(m);
  }
}

static void on_result(void *msg, void *arg) {
  ue_api_t *api = arg;
  router_msg_t *m = msg;
  pending_t *p = m->token;
  if (p->req) {
    answer_routed(p->req, p->msg_id, &p->ori, m->status);
    api->routed_waiting--;
  }
  router_msg_free(m);
  pending_free(p);
  check_drained(api);
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
  } else if (m.type == M5_MSG_MSG) {
    op_msg(api, ss, req, &m);
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
  api->sessions = m5_hmap_new();
  api->reg_replies = m5_mailbox_new(loop, api->opts.max_reg_inflight, on_reg_reply, api);
  api->inbox = m5_mailbox_new(loop, api->opts.inbox_cap, on_inbox, api);
  api->results = m5_mailbox_new(loop, api->opts.max_routed, on_result, api);
  if (!api->sessions || !api->reg_replies || !api->inbox || !api->results ||
      router_attach(api->opts.router, api->opts.worker, api->inbox, api->results) != 0) {
    ue_api_free(api);
    return NULL;
  }
  return api;
}

static void drop_router_msg(void *msg) {
  router_msg_free(msg);
}

void ue_api_free(ue_api_t *api) {
  if (!api) return;
  /* The pending list owns every pending_t, wherever its job or result message is. */
  if (api->reg_replies) m5_mailbox_free(api->reg_replies, NULL);
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

static void on_drain_timeout(m5_loop_t *loop, void *arg) {
  (void)loop;
  ue_api_t *api = arg;
  api->drain_timer = 0;
  for (pending_t *p = api->pending; p; p = p->next) {
    if (p->kind != P_ROUTED || !p->req) continue;
    respond_retry(p->req, M5_COAP_SERVICE_UNAVAILABLE, DRAIN_RETRY_S, "server shutting down");
    p->req = NULL; /* the pending_t stays until its RESULT arrives or ue_api_free */
    api->routed_waiting--;
  }
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
