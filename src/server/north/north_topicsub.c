/* Messaging Topic subscriptions of Application Servers (TS 23.554 cl. 8.8; docs/northbound.md
 * "MSGS_TopicSubscription"). Our design, in the style of MSGS_ASRegistration: TS 29.538's
 * msgs-topiclistevent is between servers, and the standard has no API by which an AS itself
 * subscribes. POST /msgs-topicsubscription/v1/subscriptions with {asSvcId, msgTopics,
 * expiry?} subscribes the calling AS (or renews) to 1-32 topics: 201 + Location of the first
 * topic's resource + {asSvcId, msgTopics, expiry}; DELETE .../subscriptions/{topic} ends one
 * (204, also when there was none). Scope msgs-topicsub; asSvcId must be the caller's. The
 * subscriptions are the store's, as a UE's (topics.h), and the topic rules apply ("as:ID"). */
#include "server/north/north_int.h"

#include "core/err.h"
#include "core/log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define DOM "north"

typedef struct {
  m5_http_exchange_t *ex;
  north_t *n;
  char as_svc_id[REGISTRY_AS_ID_MAX + 1];
  m5_msg_name_t *topics; /* owned */
  size_t n_topics;
  int sub;
} ts_pending_t;

static void ts_free(ts_pending_t *p) {
  free(p->topics);
  free(p);
}

static void on_done(void *ctx, int status, const char *detail, int64_t expiry) {
  ts_pending_t *p = ctx;
  if (status == M5_ECLOSED) {
    /* the listener is gone */
  } else if (status == M5_EPERM) {
    north_problem(p->ex, 403, M5_CAUSE_NOT_AUTHORIZED, detail, "msgTopics", "NOT_AUTHORIZED");
  } else if (status == M5_EFULL) {
    north_problem(p->ex, 403, "SUBSCRIPTION_LIMIT", detail, "msgTopics", "limit reached");
  } else if (status == M5_EINVAL) {
    north_problem(p->ex, 400, "OPTIONAL_IE_INCORRECT", detail, "expiry", "already passed");
  } else if (status != 0) {
    north_problem_retry(p->ex, 503, detail ? detail : "retry later", "1");
  } else if (!p->sub) {
    m5_http_respond(p->ex, 204, NULL, NULL, 0);
  } else {
    char loc[1024], when[32];
    snprintf(loc, sizeof loc, "%s%s/%s", p->n->o.ctx->base_url, NORTH_TOPICSUB, p->topics[0]);
    time_t t = (time_t)expiry;
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", &tm);
    json_t *list = json_array();
    for (size_t i = 0; list && i < p->n_topics; i++)
      json_array_append_new(list, json_string(p->topics[i]));
    json_t *o =
        json_pack("{s:s, s:o, s:s}", "asSvcId", p->as_svc_id, "msgTopics", list, "expiry", when);
    m5_http_header_t h = {"location", loc};
    north_json(p->ex, 201, o, &h, 1);
  }
  ts_free(p);
}

static void submit(north_t *n, m5_http_exchange_t *ex, const north_caller_t *c,
                   const m5_msg_name_t *topics, size_t n_topics, int sub, int64_t expiry) {
  ts_pending_t *p = calloc(1, sizeof *p);
  if (p) p->topics = calloc(n_topics, sizeof *p->topics);
  if (!p || !p->topics || !n->o.api) {
    if (p) ts_free(p);
    north_problem(ex, 500, NULL, "out of memory", NULL, NULL);
    return;
  }
  memcpy(p->topics, topics, n_topics * sizeof *topics);
  p->n_topics = n_topics;
  p->ex = ex;
  p->n = n;
  p->sub = sub;
  snprintf(p->as_svc_id, sizeof p->as_svc_id, "%s", c->as_svc_id);
  topics_as_request(ue_api_topics(n->o.api), c->as_svc_id, p->topics, n_topics, sub, expiry,
                    on_done, p);
}

static void do_subscribe(north_t *n, m5_http_exchange_t *ex, const m5_http_request_t *req,
                         const north_caller_t *c) {
  json_t *o = north_body(ex, req);
  if (!o) return;
  json_t *id = json_object_get(o, "asSvcId");
  m5_msg_t m;
  char diag[160];
  memset(&m, 0, sizeof m);
  if (!id) {
    north_problem(ex, 400, "MANDATORY_IE_MISSING", "asSvcId is missing", "asSvcId", "missing");
  } else if (!json_is_string(id) || strcmp(json_string_value(id), c->as_svc_id) != 0) {
    north_problem(ex, 403, "AS_ID_MISMATCH", "an AS may subscribe only as its own asSvcId",
                  "asSvcId", "not the authenticated AS");
  } else if (m5_msg_parse_as(req->body, req->body_len, M5_MSG_TOPICSUB, &m, diag, sizeof diag) !=
             0) {
    size_t k = strcspn(diag, ":[");
    char param[16];
    snprintf(param, sizeof param, "%.*s", (int)(k < sizeof param ? k : sizeof param - 1), diag);
    north_problem(ex, 400, strstr(diag, "missing") ? "MANDATORY_IE_MISSING" : "INVALID_MSG_FORMAT",
                  diag, param, diag);
  } else {
    submit(n, ex, c, m.topics, m.n_topics, 1, m.expiry);
  }
  m5_msg_free(&m);
  json_decref(o);
}

void north_topicsub(north_t *n, m5_http_exchange_t *ex, const m5_http_request_t *req) {
  const char *rest = req->path + strlen(NORTH_TOPICSUB);
  int collection = rest[0] == '\0';
  if (!collection && (rest[0] != '/' || !m5_msg_name_valid(rest + 1))) {
    north_problem(ex, 404, "RESOURCE_NOT_FOUND", "no such topic subscription resource", NULL, NULL);
    return;
  }
  if (strcmp(req->method, collection ? "POST" : "DELETE") != 0) {
    north_problem(ex, 405, NULL,
                  collection ? "the collection accepts POST" : "a subscription accepts DELETE",
                  NULL, NULL);
    return;
  }
  north_caller_t c;
  m5_jwt_claims_t claims;
  if (north_caller(n, ex, req, &c) != 0 ||
      north_bearer(n, ex, req, &c, NORTH_SCOPE_TOPICSUB, &claims) != 0)
    return;
  if (collection) {
    do_subscribe(n, ex, req, &c);
    return;
  }
  m5_msg_name_t topic;
  snprintf(topic, sizeof topic, "%s", rest + 1);
  M5_LOGD(DOM, "AS %s unsubscribes from %s", c.as_svc_id, topic);
  submit(n, ex, &c, &topic, 1, 0, 0);
}
