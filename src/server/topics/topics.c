/* Messaging Topics on MSGin5G-1 (topics.h; TS 23.554 cl. 8.8; docs/protocol.md §4). */
#include "server/topics/topics.h"

#include "coap/coap.h"
#include "core/err.h"
#include "core/log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define DOM "topics"
#define RETRY_AFTER_S 1

struct topics {
  m5_loop_t *loop;
  topics_opts_t o;
  m5_mailbox_t *replies;
  size_t inflight;
  void (*idle)(void *);
  void *idle_arg;
};

/* A TOPICSUB / TOPICUNSUB waiting for the store. job is first: the store hands back
 * &job.base == the sub_t. */
typedef struct {
  m5_store_job_t job;
  topics_t *t;
  m5_coap_req_t *req;    /* a UE's, or NULL for an AS's: */
  topics_as_reply_fn fn; /* the northbound answer */
  void *ctx;
  m5_msg_type_t type;
  m5_msg_name_t *topics; /* owned, borrowed by the job */
  size_t n_topics;
} sub_t;

static void sub_free(sub_t *s) {
  m5_store_job_clear(&s->job);
  free(s->topics);
  free(s);
}

static void respond_retry(m5_coap_req_t *req, const char *why) {
  uint8_t v[4];
  m5_coap_opt_t opt = {M5_COAP_OPT_MAX_AGE, 0, v};
  opt.len = m5_coap_uint_encode(RETRY_AFTER_S, v);
  m5_coap_ep_respond(req, M5_COAP_SERVICE_UNAVAILABLE, 0, (const uint8_t *)why, strlen(why), &opt,
                     1);
}

/* 2.04 with a body of the request's msgType: its msgTopics, and for TOPICSUB the expiry set. */
static void respond_done(sub_t *s) {
  m5_msg_t a;
  memset(&a, 0, sizeof a);
  a.type = s->type;
  a.prio = M5_PRIO_MIDDLE;
  a.topics = s->topics;
  a.n_topics = s->n_topics;
  if (s->type == M5_MSG_TOPICSUB) a.expiry = s->job.topic_expiry;
  char *body = NULL;
  size_t len = 0;
  if (m5_msg_encode(&a, &body, &len) != 0) {
    M5_LOGE(DOM, "cannot encode a %s answer", m5_msg_type_name(s->type));
    m5_coap_ep_respond_error(s->req, M5_COAP_INTERNAL_ERROR, "cannot encode the answer");
    return;
  }
  m5_coap_ep_respond(s->req, M5_COAP_CHANGED, M5_COAP_FORMAT_JSON, (const uint8_t *)body, len, NULL,
                     0);
  free(body);
}

/* Answers a refusal: CoAP code and diagnostic to a UE, status and detail to an AS. */
static void refuse(sub_t *s, uint8_t code, int status, const char *diag) {
  if (s->req) {
    if (code == M5_COAP_SERVICE_UNAVAILABLE)
      respond_retry(s->req, diag);
    else
      m5_coap_ep_respond_error(s->req, code, diag);
  } else {
    s->fn(s->ctx, status, diag, 0);
  }
}

static void done_sub(sub_t *s) {
  m5_store_job_t *j = &s->job;
  const char *what = m5_msg_type_name(s->type);
  char diag[96];
  if (j->status == M5_EPERM) {
    M5_LOGI(DOM, "%s from %s refused: its binding changed", what, j->rcpt.addr);
    refuse(s, M5_COAP_FORBIDDEN, M5_EPERM, "ueSvcId: the binding of this UE Service ID changed");
  } else if (j->status != 0) {
    M5_LOGE(DOM, "%s from %s: the message store failed (%s)", what, j->rcpt.addr,
            m5_strerror(j->status));
    refuse(s, M5_COAP_SERVICE_UNAVAILABLE, M5_EAGAIN, "the message store failed");
  } else if (j->outcome == M5_STORE_SUBS_FULL) {
    M5_LOGI(DOM, "%s from %s: at topics.max_per_subscriber", what, j->rcpt.addr);
    refuse(s, M5_COAP_FORBIDDEN, M5_EFULL, "msgTopics: too many subscriptions");
  } else if (j->outcome == M5_STORE_TOPIC_FULL) {
    M5_LOGI(DOM, "%s from %s: topic %s at topics.max_subscribers", what, j->rcpt.addr,
            s->topics[j->topic_index]);
    snprintf(diag, sizeof diag, "msgTopics[%zu]: the topic has its maximum of subscribers",
             j->topic_index);
    refuse(s, M5_COAP_FORBIDDEN, M5_EFULL, diag);
  } else {
    M5_LOGI(DOM, "%s from %s %s: %zu topic(s) (first %s)", what, j->rcpt.type, j->rcpt.addr,
            s->n_topics, s->topics[0]);
    if (s->req)
      respond_done(s);
    else
      s->fn(s->ctx, 0, NULL, j->topic_expiry);
  }
}

static void on_reply(void *msg, void *arg) {
  topics_t *t = arg;
  sub_t *s = msg; /* job.base is the first member */
  t->inflight--;
  done_sub(s);
  sub_free(s);
  if (t->idle) t->idle(t->idle_arg);
}

/* A TOPICSUB (type) or TOPICUNSUB from who (generation gen), answered on req or through
 * fn(ctx). expiry_req: the one asked for (0: the default). */
static void request(topics_t *t, const m5_msg_addr_t *who, uint64_t gen,
                    const m5_msg_name_t *topics, size_t n, m5_msg_type_t type, int64_t expiry_req,
                    m5_coap_req_t *req, topics_as_reply_fn fn, void *ctx) {
  sub_t tmp = {.req = req, .fn = fn, .ctx = ctx};
  int sub = type == M5_MSG_TOPICSUB;
  time_t now = time(NULL);
  int64_t expiry = 0;
  if (sub) {
    /* The policy first, all or nothing: nothing changes when one topic is refused. */
    for (size_t i = 0; i < n; i++)
      if (t->o.rules && !topics_rules_may(t->o.rules, topics[i], who, TOPICS_SUBSCRIBE)) {
        char diag[48];
        snprintf(diag, sizeof diag, "msgTopics[%zu]: NOT_AUTHORIZED", i);
        M5_LOGI(DOM, "TOPICSUB from %s %s: %s may not be subscribed by it", who->type, who->addr,
                topics[i]);
        refuse(&tmp, M5_COAP_FORBIDDEN, M5_EPERM, diag);
        return;
      }
    int64_t cap = (int64_t)now + t->o.max_expiry_s;
    expiry = expiry_req ? expiry_req : (int64_t)now + t->o.default_expiry_s;
    if (expiry <= (int64_t)now) {
      refuse(&tmp, M5_COAP_BAD_REQUEST, M5_EINVAL, "expiry: already passed");
      return;
    }
    if (expiry > cap) expiry = cap;
  }
  sub_t *s = calloc(1, sizeof *s);
  if (s) s->topics = calloc(n, sizeof *s->topics);
  if (!s || !s->topics || t->inflight >= t->o.max_inflight) {
    refuse(&tmp, M5_COAP_SERVICE_UNAVAILABLE, M5_EAGAIN,
           s && s->topics ? "the message store is busy" : "out of memory");
    if (s) sub_free(s);
    return;
  }
  memcpy(s->topics, topics, n * sizeof *s->topics);
  s->n_topics = n;
  s->t = t;
  s->req = req;
  s->fn = fn;
  s->ctx = ctx;
  s->type = type;
  m5_store_job_t *j = &s->job;
  j->op = sub ? M5_STORE_TOPIC_SUB : M5_STORE_TOPIC_UNSUB;
  j->arg = s;
  j->base.reply = t->replies;
  j->rcpt = *who;
  j->gen = gen;
  j->topics = s->topics;
  j->n_topics = s->n_topics;
  j->topic_expiry = expiry;
  j->max_subs = t->o.max_per_subscriber;
  j->max_subscribers = t->o.max_subscribers;
  if (m5_store_submit(t->o.store, j) != 0) {
    refuse(s, M5_COAP_SERVICE_UNAVAILABLE, M5_EAGAIN, "the message store is busy");
    sub_free(s);
    return;
  }
  t->inflight++;
}

void topics_ue_request(topics_t *t, m5_coap_req_t *req, const char *ue_svc_id, uint64_t gen,
                       const m5_msg_t *m) {
  m5_msg_addr_t who;
  memset(&who, 0, sizeof who);
  snprintf(who.type, sizeof who.type, "UE");
  snprintf(who.addr, sizeof who.addr, "%s", ue_svc_id);
  request(t, &who, gen, m->topics, m->n_topics, m->type, m->type == M5_MSG_TOPICSUB ? m->expiry : 0,
          req, NULL, NULL);
}

void topics_as_request(topics_t *t, const char *as_svc_id, const m5_msg_name_t *topics, size_t n,
                       int sub, int64_t expiry, topics_as_reply_fn fn, void *ctx) {
  m5_msg_addr_t who;
  memset(&who, 0, sizeof who);
  snprintf(who.type, sizeof who.type, "AS");
  snprintf(who.addr, sizeof who.addr, "%s", as_svc_id);
  request(t, &who, 0, topics, n, sub ? M5_MSG_TOPICSUB : M5_MSG_TOPICUNSUB, expiry, NULL, fn, ctx);
}

int topics_may_publish(const topics_t *t, const char *topic, const m5_msg_addr_t *ori) {
  if (!topic || !ori) return 0;
  return !t->o.rules || topics_rules_may(t->o.rules, topic, ori, TOPICS_PUBLISH);
}

int topics_recipients(const m5_store_sub_t *subs, size_t n_subs, const m5_msg_addr_t *publisher,
                      router_t *router, registry_t *reg, const char *self, int64_t first_retry_ms,
                      m5_store_rcpt_t **out, size_t *n) {
  int64_t now_s = (int64_t)time(NULL);
  *out = NULL;
  *n = 0;
  if (n_subs == 0) return 0;
  m5_store_rcpt_t *r = calloc(n_subs, sizeof *r);
  if (!r) return M5_ENOMEM;
  size_t k = 0;
  for (size_t i = 0; i < n_subs; i++) {
    const m5_store_sub_t *s = &subs[i];
    if (!strcmp(s->addr.type, publisher->type) && !strcmp(s->addr.addr, publisher->addr))
      continue; /* the publisher does not get its own message */
    /* Who may message whom holds for a topic's fan-out too (TS 23.554 cl. 8.3.2 step 3): a
     * subscriber the policy keeps from this publisher (an AS's ueSvcIds, ueToUe, asToUe, ...)
     * is left out silently, so the answer tells nothing about who subscribed. */
    if (reg && registry_policy_check(reg, publisher, &s->addr, NULL) != POLICY_ALLOW) continue;
    m5_store_rcpt_t *x = &r[k++];
    x->addr = s->addr;
    x->gen = s->gen;
    x->next_attempt_ms = first_retry_ms;
    router_loc_t loc;
    char target[2]; /* only whether the AS has a targetUri */
    registry_entry_t e;
    if (!strcmp(s->addr.type, "UE")) {
      x->in_flight = router_find(router, s->addr.addr, &loc) == 0;
      /* registered on another node of the cluster: queued there, which pushes it */
      if (!x->in_flight && self && *self && reg &&
          registry_lookup(reg, s->addr.addr, now_s, &e) == 0 && e.registered && e.node[0] &&
          strcmp(e.node, self) != 0) {
        snprintf(x->node, sizeof x->node, "%s", e.node);
        x->next_attempt_ms = now_s * 1000;
      }
    } else
      x->in_flight =
          reg && registry_as_target(reg, s->addr.addr, target, sizeof target) == 0 && target[0];
  }
  if (k == 0) {
    free(r);
    r = NULL;
  }
  *out = r;
  *n = k;
  return 0;
}

/* ---- life cycle ---- */

topics_t *topics_new(m5_loop_t *loop, const topics_opts_t *o, void (*idle)(void *), void *arg) {
  topics_t *t = calloc(1, sizeof *t);
  if (!t) return NULL;
  t->loop = loop;
  t->o = *o;
  if (!t->o.default_expiry_s) t->o.default_expiry_s = 86400;
  if (!t->o.max_expiry_s) t->o.max_expiry_s = 30 * 86400;
  if (!t->o.max_per_subscriber) t->o.max_per_subscriber = 100;
  if (!t->o.max_subscribers) t->o.max_subscribers = 10000;
  if (!t->o.max_inflight) t->o.max_inflight = 1024;
  t->idle = idle;
  t->idle_arg = arg;
  t->replies = m5_mailbox_new(loop, t->o.max_inflight, on_reply, t);
  if (!t->replies || !t->o.store) {
    topics_free(t);
    return NULL;
  }
  return t;
}

static void drop_sub(void *msg) {
  sub_t *s = msg;
  if (s->req)
    respond_retry(s->req, "server shutting down");
  else
    s->fn(s->ctx, M5_ECLOSED, NULL, 0); /* the listener is gone: only ctx is freed */
  sub_free(s);
}

void topics_free(topics_t *t) {
  if (!t) return;
  if (t->replies) m5_mailbox_free(t->replies, drop_sub);
  free(t);
}

size_t topics_inflight(const topics_t *t) {
  return t->inflight;
}
