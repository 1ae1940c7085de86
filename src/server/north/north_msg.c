/* MSGS_MSGDelivery for Application Servers (TS 29.538 cl. 5.3; TS 23.554 cl. 8.3.1):
 * POST /msgs-msgdelivery/v1/deliver-as-message with an ASMessageDelivery (the members of a
 * MSGin5G-1 MSG, stoAndFwInd mandatory): accepted into the message store like a UE's MSG
 * (ue_api_accept_from_as) and answered 200 + MessageDeliveryAck once committed; and
 * POST .../deliver-report with a DeliveryStatusReport (the members of an IMDN), a report on a
 * UE's message, stored and forwarded to that UE like a UE's IMDN.
 * Scope msgs-msgdelivery; oriAddr must be {AS, the caller's asSvcId}. A message the policy
 * refuses (who may message whom, policy.h) is 403 with cause NOT_AUTHORIZED.
 * Message gateways (MSGin5G-2/-4; server/gw/): POST .../deliver-ue-message with a
 * UEMessageDelivery from one of their devices, and .../deliver-report, oriAddr a UE Service ID
 * the gateway may originate as and holds (gw/gw_north.c); the same acceptance. */
#include "server/north/north_int.h"

#include "core/err.h"
#include "core/log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DOM "north"

/* The answer to send once the store replied. */
typedef struct {
  m5_http_exchange_t *ex;
  m5_msg_addr_t ori;
  char msg_id[M5_MSG_ID_MAX + 1];
} msg_pending_t;

/* 400 for a body whose diagnostic names the IE first ("destAddr: missing", "oriAddr.addr:
 * ...", "delivSt: ..."): that IE goes into invalidParams. */
static void bad_ie(m5_http_exchange_t *ex, const char *cause, const char *diag) {
  char param[40];
  size_t k = strcspn(diag, ":.");
  snprintf(param, sizeof param, "%.*s", (int)(k < sizeof param ? k : sizeof param - 1), diag);
  north_problem(ex, 400, cause, diag, param, diag);
}

/* A message the server's policy refuses (a topic the AS may not publish on: TS 23.554 cl.
 * 8.3.2 step 3) is a 403 with cause NOT_AUTHORIZED on the northbound API, not a
 * MessageDeliveryAck; the same answer for a target that does not exist. */
static int refused_by_policy(msg_pending_t *p, ue_api_outcome_t how, const char *cause) {
  if (how != UE_API_ACK || !cause || strcmp(cause, M5_CAUSE_NOT_AUTHORIZED) != 0) return 0;
  north_problem(p->ex, 403, M5_CAUSE_NOT_AUTHORIZED,
                "the server's policy does not let this AS send to destAddr", "destAddr",
                "NOT_AUTHORIZED");
  return 1;
}

static void on_accepted(void *ctx, ue_api_outcome_t how, const char *status, const char *cause,
                        uint32_t retry_s, const char *detail) {
  msg_pending_t *p = ctx;
  if (refused_by_policy(p, how, cause)) {
    /* answered */
  } else if (how == UE_API_ACK) {
    json_t *o = json_pack("{s:{s:s, s:s}, s:s}", "oriAddr", "addrType", p->ori.type, "addr",
                          p->ori.addr, "msgId", p->msg_id);
    if (o && status) json_object_set_new(o, "status", json_string(status));
    if (o && cause) json_object_set_new(o, "failureCause", json_string(cause));
    north_json(p->ex, 200, o, NULL, 0);
  } else if (how == UE_API_INVALID) {
    bad_ie(p->ex, "INVALID_MSG_FORMAT", detail);
  } else if (how == UE_API_FORBIDDEN) {
    north_problem(p->ex, 403, M5_CAUSE_NOT_AUTHORIZED, detail, "oriAddr", "changed holder");
  } else if (how != UE_API_DROPPED) {
    char after[16];
    snprintf(after, sizeof after, "%u", retry_s);
    north_problem_retry(p->ex, how == UE_API_BUSY ? 503 : 500, detail, after);
  }
  free(p);
}

/* deliver-as-message (a MSG) or deliver-report (is_report: a DeliveryStatusReport, an IMDN). */
static void deliver(north_t *n, m5_http_exchange_t *ex, const m5_http_request_t *req,
                    const north_caller_t *c, int is_report) {
  if (!north_media_type_is(req->content_type, NORTH_CT_JSON)) {
    north_problem(ex, 415, NULL, "the body must be application/json", NULL, NULL);
    return;
  }
  m5_msg_t m;
  char diag[160];
  uint64_t ori_gen = 0;
  if (m5_msg_parse_as(req->body, req->body_len, is_report ? M5_MSG_IMDN : M5_MSG_MSG, &m, diag,
                      sizeof diag) != 0) {
    bad_ie(ex, strstr(diag, "missing") ? "MANDATORY_IE_MISSING" : "INVALID_MSG_FORMAT", diag);
    return;
  }
  if (!is_report && !m.sto_fwd_given) {
    north_problem(ex, 400, "MANDATORY_IE_MISSING", "stoAndFwInd: missing", "stoAndFwInd",
                  "missing");
  } else if (!c->gw && (strcmp(m.ori.type, "AS") != 0 || strcmp(m.ori.addr, c->as_svc_id) != 0)) {
    north_problem(ex, 403, "AS_ID_MISMATCH", "oriAddr must be {\"addrType\":\"AS\", \"addr\": "
                  "the authenticated AS's asSvcId}", "oriAddr", "not the authenticated AS");
  } else if (c->gw && north_gw_check_ori(n, ex, c, &m, &ori_gen) != 0) {
    /* answered: a UE Service ID the gateway may not originate as, or does not hold */
  } else {
    msg_pending_t *p = calloc(1, sizeof *p);
    if (!p) {
      north_problem(ex, 500, NULL, "out of memory", NULL, NULL);
    } else {
      p->ex = ex;
      p->ori = m.ori;
      snprintf(p->msg_id, sizeof p->msg_id, "%s", m.msg_id);
      M5_LOGD(DOM, "%s %s from %s %s to %s:%s", is_report ? "report" : "MSG", m.msg_id,
              c->gw ? "gateway" : "AS", c->as_svc_id, m.dest.type, m.dest.addr);
      if (c->gw)
        ue_api_accept_from_gw(n->o.api, &m, is_report, ori_gen, on_accepted, p);
      else
        ue_api_accept_from_as(n->o.api, &m, is_report, on_accepted, p);
    }
  }
  m5_msg_free(&m);
}

void north_msgdelivery(north_t *n, m5_http_exchange_t *ex, const m5_http_request_t *req) {
  const char *op = req->path + strlen(NORTH_MSGDELIVERY);
  int is_report = strcmp(op, "/deliver-report") == 0;
  int from_ue = strcmp(op, "/deliver-ue-message") == 0; /* a gateway's device's message */
  if (!is_report && !from_ue && strcmp(op, "/deliver-as-message") != 0) {
    north_problem(ex, 404, "RESOURCE_NOT_FOUND", "no such resource on the northbound API", NULL,
                  NULL);
    return;
  }
  if (strcmp(req->method, "POST") != 0) {
    north_problem(ex, 405, NULL, "this resource accepts POST", NULL, NULL);
    return;
  }
  north_caller_t c;
  m5_jwt_claims_t claims;
  /* deliver-ue-message is a gateway's only (an AS certificate: 403), deliver-as-message an
   * AS's only (a gateway certificate: 403); deliver-report either's, by the certificate. */
  int gw = from_ue || (is_report && north_peer_is_gw(req));
  if ((gw ? north_gw_caller(n, ex, req, &c) : north_caller(n, ex, req, &c)) != 0 ||
      north_bearer(n, ex, req, &c, NORTH_SCOPE_DELIVERY, &claims) != 0)
    return;
  deliver(n, ex, req, &c, is_report);
}
