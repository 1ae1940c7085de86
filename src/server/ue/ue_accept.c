/* MSGin5G-1 message acceptance (TS 23.554 cl. 8.3.2, 8.7, 8.8; docs/delivery.md): a MSG or IMDN
 * from a UE, or an AS's deliver-as-message / deliver-report, is checked (who may message whom,
 * the group's or topic's own rules), resolved to its recipients (a UE, an AS, a topic's
 * subscribers, a group's or area's members) and accepted into the message store with the ack
 * it gets (remembered for dedup); the answer comes from the store's reply, after the commit.
 * Then the live recipients are pushed (delivery.c, or fanout.c for many). */
#include "server/ue/ue_api_int.h"

#include "core/err.h"
#include "core/log.h"
#include "core/str.h"
#include "msg/msg.h"
#include "server/groups/groups_fanout.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define STORE_FULL_RETRY_S 30 /* Max-Age of a 5.03 when the store is at store.max_total */
#define FAN_RCPTS_MAX 200000  /* fan_charge(): about 40 MB of recipients per worker */
#define IMDN_KEY "IMDN/" /* dedup key space of reports: '/' is not allowed in a msgId */
#define SPARE_MAX 128    /* finished accepts kept for reuse (accept_new) */

/* 2.04 with a MSGRESP (MessageDeliveryAck) body; status NULL = accepted for delivery. */
static void respond_ack(m5_coap_req_t *req, const char *msg_id, const m5_msg_addr_t *ori,
                        const char *status, const char *cause) {
  m5_msg_t a;
  memset(&a, 0, sizeof a);
  a.type = M5_MSG_MSGRESP;
  a.prio = M5_PRIO_MIDDLE;
  m5_str_copy(a.msg_id, sizeof a.msg_id, msg_id);
  a.ori = *ori;
  if (status) m5_str_copy(a.status, sizeof a.status, status);
  if (cause) m5_str_copy(a.failure_cause, sizeof a.failure_cause, cause);
  ue_respond_msg(req, M5_COAP_CHANGED, &a);
}

/* ---- acceptance into the message store ---- */

/* Finished accepts are kept for the next ones (at most SPARE_MAX): an accept_t is about 2 KB,
 * above malloc's per-thread cache, so each fresh one costs a trip through the allocator's
 * bins (a large share of the worker's malloc time per message). */
static accept_t *accept_new(ue_api_t *api) {
  accept_t *j = api->spare;
  if (j) {
    api->spare = j->held_next;
    api->n_spare--;
    memset(j, 0, sizeof *j);
  } else if (!(j = calloc(1, sizeof *j))) {
    return NULL;
  }
  j->api = api;
  j->job.op = M5_STORE_ACCEPT;
  j->job.arg = j;
  j->job.base.reply = api->store_replies;
  j->bytes = sizeof *j;
  atomic_fetch_add_explicit(&api->fig_accepts, 1, memory_order_relaxed);
  atomic_fetch_add_explicit(&api->fig_accept_bytes, j->bytes, memory_order_relaxed);
  return j;
}

/* j holds n more bytes (its payload, its recipients): counted in the worker's figures. */
static void accept_charge(accept_t *j, size_t n) {
  j->bytes += n;
  atomic_fetch_add_explicit(&j->api->fig_accept_bytes, n, memory_order_relaxed);
}

static void accept_free(accept_t *j) {
  j->api->fan_rcpts -= j->fan_charged;
  atomic_fetch_sub_explicit(&j->api->fig_accepts, 1, memory_order_relaxed);
  atomic_fetch_sub_explicit(&j->api->fig_accept_bytes, j->bytes, memory_order_relaxed);
  m5_store_job_clear(&j->job);
  free(j->payload);
  free(j->fan);
  ue_api_t *api = j->api;
  if (api->n_spare >= SPARE_MAX) {
    free(j);
    return;
  }
  j->held_next = api->spare;
  api->spare = j;
  api->n_spare++;
}

void ue_accept_free_spares(ue_api_t *api) {
  while (api->spare) {
    accept_t *j = api->spare;
    api->spare = j->held_next;
    free(j);
  }
  api->n_spare = 0;
}

/* 0, or M5_EFULL (too many outstanding, or the store's queue is full): the caller keeps j. */
static int accept_submit(ue_api_t *api, accept_t *j) {
  if (api->store_inflight >= api->opts.max_store_inflight) return M5_EFULL;
  if (api->dl) delivery_flush_conclusions(api->dl); /* they ride with this accept */
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
    ue_respond_retry(j->req, M5_COAP_SERVICE_UNAVAILABLE, seconds, why);
  else
    j->reply(j->reply_ctx, UE_API_BUSY, NULL, NULL, seconds, why);
}

/* Submits j; when the store cannot take it now, a UE's waits in held (back-pressure, ue_wait.c)
 * and an AS's is answered busy (its HTTP/2 client retries). Past max_waiting held: busy. */
static void accept_submit_or_hold(ue_api_t *api, accept_t *j) {
  if (!api->held_head && accept_submit(api, j) == 0) return;
  if (j->req && api->n_held < api->max_waiting && !api->draining) {
    j->held_next = NULL;
    if (api->held_tail)
      api->held_tail->held_next = j;
    else
      api->held_head = j;
    api->held_tail = j;
    api->n_held++;
    ue_wait_rearm(api);
    return;
  }
  atomic_fetch_add_explicit(&api->fig_busy, 1, memory_order_relaxed);
  answer_retry(j, RETRY_AFTER_S, "the message store is busy");
  accept_free(j);
}

int ue_accept_retry_held(ue_api_t *api) {
  while (api->held_head) {
    accept_t *j = api->held_head;
    if (accept_submit(api, j) != 0) return 1;
    api->held_head = j->held_next;
    if (!api->held_head) api->held_tail = NULL;
    api->n_held--;
  }
  return 0;
}

void ue_accept_flush_held(ue_api_t *api) {
  while (api->held_head) {
    accept_t *j = api->held_head;
    api->held_head = j->held_next;
    api->n_held--;
    answer_retry(j, DRAIN_RETRY_S, "server shutting down");
    accept_free(j);
  }
  api->held_tail = NULL;
}

/* ---- a MSG to a TOPIC address (TS 23.554 cl. 8.8.3; docs/delivery.md "Messaging Topics") ----
 * accept_msg checks the publisher against the topic rules (a refusal is DELY_FAILED
 * NOT_AUTHORIZED, the same for a topic nobody ever used), then asks the store for the
 * topic's subscribers (TOPIC_SUBSCRIBERS); topic_resolved turns them into the recipients of
 * one ACCEPT (partial: a full queue skips its subscriber), and fanout.c pushes those
 * live (done_accept). The sender's answer is the ACCEPT's: no status once stored for the current
 * subscribers, even none. */


/* Recipients of group, area and topic messages resolved on this worker whose accept is not
 * answered yet are bounded: each holds a member or subscriber entry and an m5_store_rcpt_t
 * (about 200 bytes) until the store replies, and a sender in a 100,000-member group could
 * otherwise make the worker hold gigabytes by sending fast, before its quota refuses it. One
 * message of any size goes when nothing else is held. 0, or -1 (answered 5.03 and freed). */
static int fan_charge(accept_t *j, size_t n) {
  ue_api_t *api = j->api;
  if (api->fan_rcpts > 0 && api->fan_rcpts + n > FAN_RCPTS_MAX) {
    answer_retry(j, RETRY_AFTER_S, "busy: too many group recipients being stored");
    accept_free(j);
    return -1;
  }
  api->fan_rcpts += n;
  j->fan_charged = n;
  return 0;
}

/* The subscribers came back (status 0): the same job becomes the ACCEPT to them. */
static void topic_resolved(accept_t *j) {
  ue_api_t *api = j->api;
  m5_store_job_t *sj = &j->job;
  if (fan_charge(j, sj->n_subs) != 0) return;
  int rc = topics_recipients(sj->subs, sj->n_subs, &sj->msg.ori, api->opts.router, api->opts.reg,
                             api->opts.node, delivery_first_retry_ms(), &j->fan, &j->n_fan);
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
  accept_charge(j, j->n_fan * sizeof *j->fan);
  accept_submit_or_hold(api, j);
}

/* accept_msg's resolution of a TOPIC address: NULL (the subscribers are looked up) or the
 * refusal's cause. */
static const char *topic_target(ue_api_t *api, const m5_msg_t *m) {
  return topics_may_publish(api->topics, m->dest.addr, &m->ori) ? NULL : M5_CAUSE_NOT_AUTHORIZED;
}

/* accept_msg's job for a TOPIC address that may be published on: the lookup first. */
static void topic_lookup(accept_t *j, const char *topic) {
  m5_store_job_t *sj = &j->job;
  m5_str_copy(j->topic, sizeof j->topic, topic);
  j->many = 1;
  sj->op = M5_STORE_TOPIC_SUBSCRIBERS;
  sj->topics = &j->topic;
  sj->n_topics = 1;
  sj->limit = M5_STORE_RCPT_MAX;
}

/* ---- a MSG to a GROUP or BC address (TS 23.554 cl. 8.7.4, 8.6.1; docs/delivery.md "Groups
 * and broadcast") ----
 * accept_msg checks the sender first (a member or a SEND grant; an unknown group gets the
 * same NOT_AUTHORIZED), then group_resolve reads the members as of now, in memory: the
 * recipients of one ACCEPT (partial), the group's generation on the body (group_gen), so that
 * every delivery is checked against the membership before it goes out (delivery.c) and swept
 * when a member leaves or the group goes (groups_sync.c). The sender's answer is the ACCEPT's:
 * no status once stored for the current members, even none online; NO_MEMBERS as its
 * failureCause when there is nobody to store it for. */

/* 0 (j is ready to submit), or -1 (answered and freed). */
static int group_resolve(accept_t *j) {
  ue_api_t *api = j->api;
  m5_store_job_t *sj = &j->job;
  m5_store_msg_t *sm = &sj->msg;
  uint64_t gen = 0;
  int64_t first = delivery_first_retry_ms();
  if (fan_charge(j, groups_fanout_size(api->opts.reg, &sm->dest)) != 0) return -1;
  int rc = groups_fanout_recipients(api->opts.reg, api->opts.router, api->opts.node, &sm->ori,
                                    &sm->dest, first, &j->fan, &j->n_fan, &gen);
  if (rc == M5_ENOENT) { /* deleted since the sender was authorized: the same refusal */
    snprintf(sj->ack.status, sizeof sj->ack.status, "DELY_FAILED");
    m5_str_copy(sj->ack.failure_cause, sizeof sj->ack.failure_cause, M5_CAUSE_NOT_AUTHORIZED);
    return 0;
  }
  if (rc != 0) {
    answer_retry(j, RETRY_AFTER_S, "out of memory");
    accept_free(j);
    return -1;
  }
  accept_charge(j, j->n_fan * sizeof *j->fan);
  j->many = 1;
  j->paced = !strcmp(sm->dest.type, "BC");
  sm->group_gen = gen;
  sj->rcpts = j->fan;
  sj->n_rcpts = j->n_fan;
  sj->partial = true;
  if (j->paced) { /* a broadcast has no per-UE reports: delivStReqInd is ignored */
    sm->deliv_st_req = false;
    sj->ticket_put = false;
  }
  uint32_t rate = api->opts.bc_rate ? api->opts.bc_rate : 1;
  /* the paced turns start behind what is queued already (a HIGH broadcast coming later may
   * still overtake: fanout.c then leaves a delivery whose turn comes too late to the store) */
  size_t live = j->paced && api->opts.bc_pace ? fanout_pace_backlog(api->opts.bc_pace) : 0;
  for (size_t i = 0; i < j->n_fan; i++) {
    m5_store_rcpt_t *r = &j->fan[i];
    if (r->in_flight && j->paced) /* fanout.c's pace: the timers leave it alone until then */
      r->next_attempt_ms = first + (int64_t)(live++ * 1000 / rate);
    else if (!r->in_flight && !r->node[0] && sm->sto_fwd) /* away: its REG's DUE pushes it */
      r->next_attempt_ms = delivery_stored_retry_ms();
  }
  if (j->n_fan == 0)
    m5_str_copy(sj->ack.failure_cause, sizeof sj->ack.failure_cause, M5_CAUSE_NO_MEMBERS);
  return 0;
}

static void done_accept(accept_t *j) {
  m5_store_job_t *sj = &j->job;
  const char *what = j->is_imdn ? "IMDN" : "MSG";
  if (sj->status == M5_EPERM && (j->req || !strcmp(sj->msg.ori.type, "UE"))) {
    M5_LOGI(DOM, "%s %s from %s refused: its binding changed while it was being stored", what,
            sj->msg.msg_id, sj->msg.ori.addr);
    if (j->req)
      m5_coap_ep_respond_error(j->req, M5_COAP_FORBIDDEN,
                               "oriAddr: the binding of this UE Service ID changed");
    else /* a gateway's device, whose ID changed holder meanwhile */
      j->reply(j->reply_ctx, UE_API_FORBIDDEN, NULL, NULL, 0,
               "oriAddr: this UE Service ID changed holder while the message was stored");
    return;
  }
  if (sj->status != 0) {
    M5_LOGE(DOM, "%s %s from %s: the message store failed (%s)", what, sj->msg.msg_id,
            sj->msg.ori.addr, m5_strerror(sj->status));
    /* Unreachable (a JetStream cluster without quorum), no answer in time, or another accept
     * of the same msgId at work on another node: nothing was acknowledged, the sender is told
     * to come back (503 / 5.03 with Retry-After / Max-Age). A timed-out JetStream publish may
     * still be stored later: the sender's retry with the same msgId is then answered as a
     * duplicate (docs/scale-out.md). */
    int unavailable = sj->status == M5_EAGAIN || sj->status == M5_ETIMEDOUT;
    const char *why = unavailable ? "the message store cannot confirm it now; send it again"
                                  : "the message store failed";
    if (j->req)
      ue_respond_retry(j->req, M5_COAP_SERVICE_UNAVAILABLE, RETRY_AFTER_S, why);
    else
      j->reply(j->reply_ctx, unavailable ? UE_API_BUSY : UE_API_ERROR, NULL, NULL, RETRY_AFTER_S,
               why);
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
    M5_LOGI(DOM, "%s %s from %s to %s: dropped (%s asked %s for no report on it, or one of them "
                 "was re-bound since)", what, sj->msg.msg_id, sj->msg.ori.addr, sj->msg.dest.addr,
            sj->msg.dest.addr, sj->msg.ori.addr);
  if (j->many) {
    int topic = !strcmp(sj->msg.dest.type, "TOPIC"), area = !strcmp(sj->msg.dest.type, "BC");
    if (sj->n_rcpts == 0)
      M5_LOGI(DOM, "MSG %s from %s to %s %s: no %s, stored for nobody", sj->msg.msg_id,
              sj->msg.ori.addr, topic ? "topic" : area ? "area" : "group", sj->msg.dest.addr,
              topic ? "subscribers" : "members");
    fanout_start(j->api->fan, &sj->msg, sj->rcpts, sj->n_rcpts, j->paced);
  } else if (sj->n_rcpts && j->rcpt.id && !j->rcpt.node[0]) {
    /* (a delivery queued on another node's subjects is that node's to push and conclude) */
    m5_store_delivery_t d;
    memset(&d, 0, sizeof d);
    d.id = j->rcpt.id;
    d.rcpt = j->rcpt.addr;
    d.rcpt_gen = j->rcpt.gen;
    d.msg = sj->msg; /* the payload is j's, still valid */
    delivery_accepted(j->api->dl, &d);
  }
}

void ue_accept_on_store_reply(void *msg, void *arg) {
  ue_api_t *api = arg;
  accept_t *j = msg; /* job.base is the first member */
  api->store_inflight--;
  if (j->job.op == M5_STORE_TOPIC_SUBSCRIBERS && j->job.status == 0) {
    topic_resolved(j);
  } else {
    done_accept(j);
    accept_free(j);
  }
  ue_wait_pump(api); /* room for one more: held accepts, then the waiting sessions in turn */
  ue_api_check_drained(api);
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
static void accept_msg(ue_api_t *api, const m5_msg_t *m, uint8_t **take, int is_imdn,
                       uint64_t ori_gen, m5_coap_req_t *req, ue_api_reply_fn reply,
                       void *reply_ctx);

void ue_accept_request(ue_api_t *api, sess_t *ss, m5_coap_req_t *req, m5_msg_t *m, int is_imdn) {
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
  /* the decoded payload (m5_msg_parse's) becomes the accept's: no second copy */
  accept_msg(api, m, is_imdn ? NULL : &m->payload, is_imdn, ss->gen, req, NULL, NULL);
}

/* The node holding a registered UE's session when that is another m5s node of the cluster
 * (store.backend jetstream; e from registry_lookup), else NULL. */
static const char *on_other_node(const ue_api_t *api, const registry_entry_t *e) {
  const char *self = api->opts.node;
  if (!self || !*self || !e->registered || !e->node[0] || !strcmp(e->node, self)) return NULL;
  return e->node;
}

/* Resolves the recipient of m (from the UE or AS m->ori, already checked), accepts it into the
 * store with the ack it will get, and answers from the store's reply: to req (a UE's CoAP
 * request) or through reply(ctx) (an AS's). take: &m->payload, a malloc'd buffer of the MSG's
 * payload_len bytes the accept may keep (setting it NULL), or NULL: the payload is copied. */
static void accept_msg(ue_api_t *api, const m5_msg_t *m, uint8_t **take, int is_imdn,
                       uint64_t ori_gen, m5_coap_req_t *req, ue_api_reply_fn reply,
                       void *reply_ctx) {
  /* Target resolution (TS 23.554 cl. 5.3.2.2): MSGin5G UEs, devices behind message gateways,
   * ASs, topics, groups. A report is always stored for its recipient (the originator) while
   * that one is away. */
  int sto = is_imdn || m->sto_fwd;
  int64_t now = (int64_t)time(NULL);
  registry_entry_t e;
  e.gen = 0;
  router_loc_t loc;
  const char *status = NULL, *cause = NULL;
  const char *remote = NULL; /* the node holding the recipient's session, when not this one */
  char target[2]; /* only whether the AS has a targetUri: its first character is enough */
  const char *why = NULL;
  int topic = !is_imdn && !strcmp(m->dest.type, "TOPIC");
  int group = !is_imdn && (!strcmp(m->dest.type, "GROUP") || !strcmp(m->dest.type, "BC"));
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
  } else if (group) {
    /* a member or a SEND grant, before anything is looked up (unknown: the same answer) */
    if (!groups_fanout_may_send(api->opts.reg, &m->ori, &m->dest))
      status = "DELY_FAILED", cause = M5_CAUSE_NOT_AUTHORIZED;
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
  } else if (!strcmp(m->dest.type, "UE") &&
             registry_gw_holder(api->opts.reg, m->dest.addr, NULL, &e.gen) == 0) {
    /* a device behind a message gateway (server/gw/): pushed to the gateway's deliver-message
     * at once, stored and retried like any recipient's when the gateway does not take it */
    status = NULL;
  } else if (strcmp(m->dest.type, "UE") != 0 ||
             registry_lookup(api->opts.reg, m->dest.addr, now, &e) != 0)
    status = "DELY_FAILED", cause = M5_CAUSE_UNKNOWN_RECIPIENT;
  else if (router_find(api->opts.router, m->dest.addr, &loc) == 0)
    status = NULL; /* live: accepted for delivery */
  else if ((remote = on_other_node(api, &e)) != NULL)
    status = NULL; /* live on another node, which pushes it */
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
  int taken = j && take && *take;
  if (taken) {
    j->payload = *take;
    *take = NULL; /* m->payload too: the same pointer */
  } else if (j) {
    j->payload = malloc(plen + 1);
  }
  if (j) {
    j->req = req;
    j->reply = reply;
    j->reply_ctx = reply_ctx;
  }
  if (!j || !j->payload) {
    if (j) accept_free(j);
    if (req)
      ue_respond_retry(req, M5_COAP_SERVICE_UNAVAILABLE, RETRY_AFTER_S, "out of memory");
    else
      reply(reply_ctx, UE_API_BUSY, NULL, NULL, RETRY_AFTER_S, "out of memory");
    return;
  }
  accept_charge(j, plen + 1);
  if (is_imdn) {
    snprintf((char *)j->payload, plen + 1, "%s%s%s", m->deliv_st, m->failure_cause[0] ? " " : "",
             m->failure_cause);
    plen = strlen((char *)j->payload);
  } else if (plen && !taken) {
    memcpy(j->payload, m->payload, plen);
  }
  j->is_imdn = is_imdn;
  m5_store_job_t *sj = &j->job;
  m5_store_msg_t *sm = &sj->msg;
  sm->ori = m->ori;
  sm->dest = m->dest;
  m5_str_copy(sm->msg_id, sizeof sm->msg_id, m->msg_id);
  m5_str_copy(sm->app_id, sizeof sm->app_id, is_imdn ? DELIVERY_IMDN_APP : m->app_id);
  sm->prio = m->prio;
  sm->deliv_st_req = !is_imdn && m->deliv_st_req;
  sm->sto_fwd = sto;
  sm->expr_time = expr;
  sm->payload = j->payload;
  sm->payload_len = plen;
  /* Binding generations (docs/delivery.md "Re-bound UE Service IDs"): the store refuses a
   * UE originator that was re-bound meanwhile. Report tickets (docs/delivery.md "Who may
   * report on what"): a MSG asking for a report, from a UE or an AS, leaves one per recipient
   * it is stored for; a report (a UE's IMDN, an AS's deliver-report) is stored only on the
   * ticket naming its reporter, and to a UE for the generation that sent the message; else it
   * is dropped, with the answer a stored one gets. */
  sm->ori_gen = ori_gen;
  int to_ue = !strcmp(m->dest.type, "UE");
  sj->ticket_put = !is_imdn && m->deliv_st_req;
  sj->ticket_check = is_imdn;
  m5_str_join(sj->dedup_ori, sizeof sj->dedup_ori, m->ori.type, ':', m->ori.addr);
  if (is_imdn)
    report_key(sj->dedup_id, sizeof sj->dedup_id, m->msg_id, m->dest.addr);
  else
    m5_str_copy(sj->dedup_id, sizeof sj->dedup_id, m->msg_id);
  if (status) m5_str_copy(sj->ack.status, sizeof sj->ack.status, status);
  if (cause) m5_str_copy(sj->ack.failure_cause, sizeof sj->ack.failure_cause, cause);
  if (!cause && topic) {
    topic_lookup(j, m->dest.addr);
  } else if (!cause && group) {
    if (group_resolve(j) != 0) return;
  } else if (!cause) {
    j->rcpt.addr = m->dest;
    j->rcpt.gen = to_ue ? e.gen : 0; /* e is set: a UE recipient without a cause is bound */
    j->rcpt.next_attempt_ms = delivery_first_retry_ms();
    /* A live recipient is pushed as soon as the accept is committed (done_accept), and that
     * push always ends in a conclusion (delivery.c): in flight until then. */
    j->rcpt.in_flight = status == NULL && !remote;
    if (remote) { /* queued on its node, due at once there (its DUE_ANY tick pushes it) */
      m5_str_copy(j->rcpt.node, sizeof j->rcpt.node, remote);
      j->rcpt.next_attempt_ms = now * 1000;
    }
    sj->rcpts = &j->rcpt;
    sj->n_rcpts = 1;
  }
  accept_submit_or_hold(api, j);
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
  accept_msg(api, m, NULL, is_report, 0, NULL, reply, ctx);
}

void ue_api_accept_from_gw(ue_api_t *api, const m5_msg_t *m, int is_report, uint64_t ori_gen,
                           ue_api_reply_fn reply, void *ctx) {
  if (is_report && (!m->deliv_st[0] || !deliv_st_valid(m->deliv_st))) {
    reply(ctx, UE_API_INVALID, NULL, NULL, 0, "delivSt: expected e.g. REPT_DELY_SUCCESS");
    return;
  }
  if (!is_report && (unsigned char)m->app_id[0] != 0 && (unsigned char)m->app_id[0] < 0x20) {
    reply(ctx, UE_API_INVALID, NULL, NULL, 0, "appId: starts with a control character");
    return;
  }
  if (api->draining) {
    reply(ctx, UE_API_BUSY, NULL, NULL, DRAIN_RETRY_S, "the server is shutting down");
    return;
  }
  accept_msg(api, m, NULL, is_report, ori_gen, NULL, reply, ctx);
}

void ue_api_rebind(ue_api_t *api, const char *ue_svc_id, uint64_t gen) {
  delivery_rebind(api->dl, ue_svc_id, gen);
}

/* An accept reply that arrived after the loop stopped (the store was closed after it). */
void ue_accept_drop(void *msg) {
  accept_t *j = msg;
  if (j->req)
    ue_respond_retry(j->req, M5_COAP_SERVICE_UNAVAILABLE, DRAIN_RETRY_S, "server shutting down");
  else if (j->reply) /* the northbound listener is gone: only its record is freed */
    j->reply(j->reply_ctx, UE_API_DROPPED, NULL, NULL, 0, NULL);
  accept_free(j);
}
