/* MSGin5G-1 server logic: request checks, REG / DEREG against the registry, MSG and IMDN
 * acceptance into the message store (ue_accept.c; see ue_api.h, docs/delivery.md); their
 * forwarding is delivery.c's. Every request is answered exactly once: either at once, or from a pending_t
 * that waits for the registry's DB thread, or from an accept_t that waits for the message store.
 * Pending requests carry the session's id, never its pointer: the session may close meanwhile (the
 * answer then goes to an orphaned request, which the endpoint frees). */
#include "server/ue/ue_api_int.h"

#include "core/err.h"
#include "core/hmap.h"
#include "core/log.h"
#include "core/str.h"
#include "msg/msg.h"
#include "server/test_hooks.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define RESOURCE "msgin5g"

/* ---- small helpers ---- */

static sess_t *sess_find(ue_api_t *api, uint64_t sid) {
  return m5_hmap_get(api->sessions, &sid, sizeof sid);
}

void ue_respond_retry(m5_coap_req_t *req, uint8_t code, uint32_t seconds, const char *diag) {
  uint8_t v[4];
  m5_coap_opt_t opt = {M5_COAP_OPT_MAX_AGE, 0, v};
  opt.len = m5_coap_uint_encode(seconds, v);
  m5_coap_ep_respond(req, code, 0 /* text/plain */, (const uint8_t *)diag, strlen(diag), &opt, 1);
}

void ue_respond_msg(m5_coap_req_t *req, uint8_t code, const m5_msg_t *m) {
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

/* Once no request waits for the registry or the store, no new delivery starts here: what is
 * left is delivery.c's. */
void ue_api_check_drained(ue_api_t *api) {
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
    m5_str_copy(m->ue_svc_id, sizeof m->ue_svc_id, id);
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
  m5_str_copy(ss->ue_svc_id, sizeof ss->ue_svc_id, job->ue_svc_id);
  M5_LOGI(DOM, "%s: registered (%s, %s, %s)", job->ue_svc_id, job->created ? "new" : "again",
          ss->s->transport, ss->s->peer);
  m5_msg_t a;
  memset(&a, 0, sizeof a);
  a.type = M5_MSG_REG;
  a.prio = M5_PRIO_MIDDLE;
  m5_str_copy(a.ue_svc_id, sizeof a.ue_svc_id, job->ue_svc_id);
  a.expiry = job->expiry;
  ue_respond_msg(p->req, job->created ? M5_COAP_CREATED : M5_COAP_CHANGED, &a);
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
  ue_api_check_drained(api);
}

static void on_reg_reply(void *msg, void *arg) {
  pending_t *p = msg; /* job.base is the first member */
  /* test builds: between the registry's write and the session's router entry */
  hold_or_go(arg, "reg-write", p, finish_reg_reply);
}

static void submit_job(ue_api_t *api, pending_t *p) {
  p->job.base.reply = api->reg_replies;
  if (api->draining) { /* held by a test hook across the start of a drain */
    ue_respond_retry(p->req, M5_COAP_SERVICE_UNAVAILABLE, DRAIN_RETRY_S, "server shutting down");
    pending_free(p);
    ue_api_check_drained(api);
    return;
  }
  int rc = api->reg_inflight >= api->opts.max_reg_inflight
               ? M5_EFULL
               : registry_submit(api->opts.reg, &p->job);
  if (rc == 0) {
    api->reg_inflight++;
    return;
  }
  ue_respond_retry(p->req, M5_COAP_SERVICE_UNAVAILABLE, RETRY_AFTER_S, "registry busy");
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
  /* Shared registry (store.backend jetstream): this node's memory may lag a binding made on
   * another node a moment ago, so a miss here is decided by the registry's job, which reads
   * the shared binding (registry_js.c); gen 0 stands for "whichever is in force". */
  int shared = registry_shared(api->opts.reg);
  int found = registry_lookup(api->opts.reg, m->ue_svc_id, now, &e) == 0 &&
              !strcmp(e.supi, s->key.supi);
  if (!found && shared) e.gen = 0;
  if (!found && !shared) {
    M5_LOGI(DOM, "REG %s refused (%s %s): not bound to the session's subscriber", m->ue_svc_id,
            s->transport, s->peer);
    m5_coap_ep_respond_error(req, M5_COAP_FORBIDDEN, "ueSvcId: not bound to this subscriber");
    return;
  }
  pending_t *p = pending_new(api, P_REG, s, req);
  if (!p) {
    ue_respond_retry(req, M5_COAP_SERVICE_UNAVAILABLE, RETRY_AFTER_S, "out of memory");
    return;
  }
  p->job.op = REGISTRY_REGISTER;
  m5_str_copy(p->job.ue_svc_id, sizeof p->job.ue_svc_id, m->ue_svc_id);
  m5_str_copy(p->job.supi, sizeof p->job.supi, s->key.supi);
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
    ue_respond_retry(req, M5_COAP_SERVICE_UNAVAILABLE, RETRY_AFTER_S, "out of memory");
    return;
  }
  p->job.op = REGISTRY_DEREGISTER;
  m5_str_copy(p->job.ue_svc_id, sizeof p->job.ue_svc_id, m->ue_svc_id);
  submit_job(api, p);
}

topics_t *ue_api_topics(ue_api_t *api) {
  return api->topics;
}

/* What is stored for an AS or a gateway's device that just registered goes out now, from the
 * timer worker (server_run.c: worker 0): the back-off timer lists stored deliveries there too,
 * and only on one worker do the two listings share the set of pushes in flight, so a delivery
 * both hand out at once is pushed once, not twice. Should the post fail, the back-off timer
 * finds them a little later. */
#define TIMER_WORKER 0u

static void due_here(ue_api_t *api, const char *type, const char *addr) {
  if (!strcmp(type, "AS"))
    delivery_as_registered(api->dl, addr);
  else
    delivery_gw_registered(api->dl, addr);
}

static void due_on_timer_worker(ue_api_t *api, const char *type, const char *addr) {
  if (api->opts.timers) {
    due_here(api, type, addr);
    return;
  }
  router_msg_t *m = router_msg_new(ROUTER_DUE);
  if (m) {
    m5_str_copy(m->rcpt_type, sizeof m->rcpt_type, type);
    m5_str_copy(m->ue_svc_id, sizeof m->ue_svc_id, addr);
  }
  if (!m || router_post(api->opts.router, TIMER_WORKER, m) != 0) {
    router_msg_free(m);
    M5_LOGD(DOM, "%s %s registered: its stored messages wait for the back-off timer", type, addr);
  }
}

void ue_api_as_registered(ue_api_t *api, const char *as_svc_id) {
  due_on_timer_worker(api, "AS", as_svc_id);
}

void ue_api_gw_registered(ue_api_t *api, const char *ue_svc_id) {
  due_on_timer_worker(api, "UE", ue_svc_id);
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
  if (m->kind == ROUTER_DUE) due_here(api, m->rcpt_type, m->ue_svc_id);
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
  ue_wait_session_closed(api, ss);
  delivery_session_closed(api->dl, s->id);
  m5_hmap_del(api->sessions, &s->id, sizeof s->id);
  s->app = NULL;
  free(ss);
}

static void on_request(ue_session_t *s, m5_coap_req_t *req, void *arg) {
  ue_api_t *api = arg;
  sess_t *ss = s->app;
  if (!ss) {
    m5_coap_ep_respond_error(req, M5_COAP_INTERNAL_ERROR, "session state missing");
    return;
  }
  if (api->draining) {
    ue_respond_retry(req, M5_COAP_SERVICE_UNAVAILABLE, DRAIN_RETRY_S, "server shutting down");
    return;
  }
  if (ss->n_wait) { /* behind its waiting ones, whatever it is: the session's order holds */
    ue_wait_park(api, ss, req);
    return;
  }
  ue_api_serve(api, ss, req, 0);
}

void ue_api_serve(ue_api_t *api, sess_t *ss, m5_coap_req_t *req, int resumed) {
  ue_session_t *s = ss->s;
  char diag[160];
  m5_msg_t m;
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
  } else if ((m.type == M5_MSG_MSG || m.type == M5_MSG_IMDN) && !resumed && ue_wait_busy(api)) {
    ue_wait_park(api, ss, req); /* back-pressure: served once the store has room */
  } else if (m.type == M5_MSG_MSG || m.type == M5_MSG_IMDN) {
    delivery_ue_active(api->dl, s->id); /* the UE is here: what was stored for it goes out */
    ue_accept_request(api, ss, req, &m, m.type == M5_MSG_IMDN);
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
  ue_api_check_drained(arg);
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
  api->max_waiting = api->opts.max_waiting ? api->opts.max_waiting : 65536;
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
  if (api->dl) api->fan = fanout_new(loop, api->dl, api->opts.bc_pace, api->opts.timers,
                                      api->opts.in_flight_max_ms);
  topics_opts_t topts = api->opts.topics;
  topts.store = api->opts.store;
  api->topics = topics_new(loop, &topts, topics_idle, api);
  api->sessions = m5_hmap_new();
  api->store_replies = m5_mailbox_new(loop, api->opts.max_store_inflight, ue_accept_on_store_reply, api);
  api->reg_replies = m5_mailbox_new(loop, api->opts.max_reg_inflight, on_reg_reply, api);
  api->inbox = m5_mailbox_new(loop, api->opts.inbox_cap, on_inbox, api);
  api->results = m5_mailbox_new(loop, api->opts.max_routed, on_result, api);
  if (!api->dl || !api->fan || !api->topics || !api->sessions || !api->store_replies || !api->reg_replies ||
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

void ue_api_free(ue_api_t *api) {
  if (!api) return;
  /* The pending list owns every pending_t, wherever its job or result message is. */
  ue_wait_flush(api); /* the sessions are closed: only held accepts can be left */
  if (api->reg_replies) m5_mailbox_free(api->reg_replies, NULL);
  if (api->store_replies) m5_mailbox_free(api->store_replies, ue_accept_drop);
  fanout_free(api->fan);
  delivery_free(api->dl);
  topics_free(api->topics);
  if (api->results) m5_mailbox_free(api->results, drop_router_msg);
  if (api->inbox) m5_mailbox_free(api->inbox, drop_router_msg);
  while (api->pending) {
    pending_t *p = api->pending;
    if (p->req)
      ue_respond_retry(p->req, M5_COAP_SERVICE_UNAVAILABLE, DRAIN_RETRY_S, "server shutting down");
    pending_free(p);
  }
  if (api->sessions) m5_hmap_free(api->sessions, free);
  ue_accept_free_spares(api);
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
  ue_wait_flush(api);
  delivery_drain(api->dl, timeout_ms);
  ue_api_check_drained(api);
}

size_t ue_api_sessions(const ue_api_t *api) {
  return m5_hmap_count(api->sessions);
}
