/* Back-pressure of MSGin5G-1 requests on the message store (docs/delivery.md "Back-pressure"):
 * when this worker has max_store_inflight accepts outstanding, a UE's next MSG or IMDN is not
 * refused 5.03 but waits, unanswered, until a store reply makes room. The device's own CoAP
 * window (RFC 8323 pipelining, or NSTART on DTLS) then holds back its further requests: the
 * device is throttled, nothing is lost and nothing is answered twice.
 *
 * Fairness and bounds: a session with waiting requests also parks every later request of its
 * own (its order is kept); the sessions with waiting requests take turns, one request each
 * (round), so a session with a deep pipeline cannot hold the others back. What waits is the
 * CoAP request alone (parsed again when served): per session at most what its endpoint lets
 * it have unanswered (its CoAP window, at most coap's max_queued), per worker at most
 * max_waiting; beyond that the answer is 5.03, as when the store is full (store.max_total) or
 * the server shuts down. */
#include "server/ue/ue_api_int.h"

#include "core/log.h"

#include <stdlib.h>

struct wait_req {
  wait_req_t *next;
  m5_coap_req_t *req;
  size_t bytes;
};

#define WAIT_RETRY_MS 1 /* the store's queue is full of other workers' jobs: look again */

int ue_wait_busy(const ue_api_t *api) {
  return api->store_inflight >= api->opts.max_store_inflight || api->held_head ||
         api->round_head || delivery_held(api->dl);
}

static void round_add(ue_api_t *api, sess_t *ss) {
  ss->rnext = NULL;
  ss->rprev = api->round_tail;
  if (api->round_tail)
    api->round_tail->rnext = ss;
  else
    api->round_head = ss;
  api->round_tail = ss;
  ss->in_round = 1;
}

static void round_del(ue_api_t *api, sess_t *ss) {
  if (!ss->in_round) return;
  if (ss->rprev)
    ss->rprev->rnext = ss->rnext;
  else
    api->round_head = ss->rnext;
  if (ss->rnext)
    ss->rnext->rprev = ss->rprev;
  else
    api->round_tail = ss->rprev;
  ss->rprev = ss->rnext = NULL;
  ss->in_round = 0;
}

static void figures(ue_api_t *api) {
  atomic_store_explicit(&api->fig_waiting, api->n_waiting, memory_order_relaxed);
}

/* Takes the oldest waiting request of ss off its list (ss must have one). */
static m5_coap_req_t *take(ue_api_t *api, sess_t *ss) {
  wait_req_t *w = ss->wait_head;
  ss->wait_head = w->next;
  if (!ss->wait_head) ss->wait_tail = NULL;
  ss->n_wait--;
  api->n_waiting--;
  atomic_fetch_sub_explicit(&api->fig_waiting_bytes, w->bytes, memory_order_relaxed);
  m5_coap_req_t *req = w->req;
  free(w);
  figures(api);
  return req;
}

void ue_wait_park(ue_api_t *api, sess_t *ss, m5_coap_req_t *req) {
  wait_req_t *w = api->n_waiting < api->max_waiting ? malloc(sizeof *w) : NULL;
  if (!w) {
    atomic_fetch_add_explicit(&api->fig_busy, 1, memory_order_relaxed);
    M5_LOGW(DOM, "%s: %zu requests wait for the message store already; answering 5.03",
            ss->ue_svc_id[0] ? ss->ue_svc_id : ss->s->peer, api->n_waiting);
    ue_respond_retry(req, M5_COAP_SERVICE_UNAVAILABLE, RETRY_AFTER_S, "the message store is busy");
    return;
  }
  w->next = NULL;
  w->req = req;
  w->bytes = sizeof *w + m5_coap_req_bytes(req);
  if (ss->wait_tail)
    ss->wait_tail->next = w;
  else
    ss->wait_head = w;
  ss->wait_tail = w;
  ss->n_wait++;
  api->n_waiting++;
  atomic_fetch_add_explicit(&api->fig_waited, 1, memory_order_relaxed);
  atomic_fetch_add_explicit(&api->fig_waiting_bytes, w->bytes, memory_order_relaxed);
  figures(api);
  if (!ss->in_round) round_add(api, ss);
  ue_wait_rearm(api);
}

static void retry_cb(m5_loop_t *loop, void *arg) {
  (void)loop;
  ue_api_t *api = arg;
  api->wait_timer = 0;
  ue_wait_pump(api);
}

void ue_wait_rearm(ue_api_t *api) {
  /* A store reply of ours pumps again; with none outstanding only the timer will. */
  if ((api->held_head || api->round_head) && (api->store_inflight == 0 || delivery_held(api->dl)) &&
      !api->wait_timer && !api->draining)
    api->wait_timer = m5_loop_timer_add(api->loop, WAIT_RETRY_MS, retry_cb, api);
}

void ue_wait_pump(ue_api_t *api) {
  if (!ue_accept_retry_held(api)) {
    while (api->round_head && api->store_inflight < api->opts.max_store_inflight &&
           !delivery_held(api->dl)) {
      sess_t *ss = api->round_head;
      round_del(api, ss);
      m5_coap_req_t *req = take(api, ss);
      if (ss->n_wait) round_add(api, ss); /* its next one after the others' */
      ue_api_serve(api, ss, req, 1);
      if (api->held_head) break; /* the store's queue is full: wait for room */
    }
  }
  ue_wait_rearm(api);
}

/* The orphans' endpoints are freed by now: answering one only frees it (endpoint.h). */
static void free_orphans(ue_api_t *api) {
  while (api->orphans) {
    wait_req_t *w = api->orphans;
    api->orphans = w->next;
    ue_respond_retry(w->req, M5_COAP_SERVICE_UNAVAILABLE, RETRY_AFTER_S, "session closed");
    free(w);
  }
}

static void orphan_cb(m5_loop_t *loop, void *arg) {
  (void)loop;
  ue_api_t *api = arg;
  api->orphan_timer = 0;
  free_orphans(api);
}

void ue_wait_session_closed(ue_api_t *api, sess_t *ss) {
  /* Its endpoint is freed right after this hook: the requests are let go afterwards, never
   * answered into a connection being torn down. */
  round_del(api, ss);
  while (ss->n_wait) {
    wait_req_t *w = ss->wait_head;
    ss->wait_head = w->next;
    ss->n_wait--;
    api->n_waiting--;
    atomic_fetch_sub_explicit(&api->fig_waiting_bytes, w->bytes, memory_order_relaxed);
    w->next = api->orphans;
    api->orphans = w;
  }
  ss->wait_tail = NULL;
  figures(api);
  if (api->orphans && !api->orphan_timer)
    api->orphan_timer = m5_loop_timer_add(api->loop, 0, orphan_cb, api);
}

void ue_wait_flush(ue_api_t *api) {
  while (api->round_head) {
    sess_t *ss = api->round_head;
    round_del(api, ss);
    while (ss->n_wait) {
      m5_coap_req_t *req = take(api, ss);
      ue_respond_retry(req, M5_COAP_SERVICE_UNAVAILABLE, DRAIN_RETRY_S, "server shutting down");
    }
  }
  ue_accept_flush_held(api);
  if (api->wait_timer) m5_loop_timer_cancel(api->loop, api->wait_timer);
  api->wait_timer = 0;
  if (api->orphan_timer) m5_loop_timer_cancel(api->loop, api->orphan_timer);
  api->orphan_timer = 0;
  free_orphans(api);
}

void ue_api_figures(ue_api_t *api, ue_api_figures_t *out) {
  out->accepts = atomic_load_explicit(&api->fig_accepts, memory_order_relaxed);
  out->accept_bytes = atomic_load_explicit(&api->fig_accept_bytes, memory_order_relaxed);
  out->waiting = atomic_load_explicit(&api->fig_waiting, memory_order_relaxed);
  out->waiting_bytes = atomic_load_explicit(&api->fig_waiting_bytes, memory_order_relaxed);
  out->waited_total = atomic_load_explicit(&api->fig_waited, memory_order_relaxed);
  out->busy_total = atomic_load_explicit(&api->fig_busy, memory_order_relaxed);
}
