/* MSGS_ASRegistration (TS 29.538 cl. 5.2; TS 23.554 cl. 8.2.5, 8.2.6): an Application Server
 * registers itself (POST /msgs-asregistration/v1/registrations, 201 + Location +
 * ASRegistrationAck) and deregisters (DELETE .../registrations/{registrationId}, 204). Only as
 * its own asSvcId (certificate = token sub = body asSvcId), with the scope
 * msgs-asregistration, and with a targetUri on its allow-list that is not one of this server's
 * own listeners. At most one registration per AS: a new one replaces the old. */
#include "server/north/north_int.h"

#include "core/err.h"
#include "core/log.h"
#include "crypto/codec.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define DOM "north"

typedef struct {
  registry_job_t job; /* first: the reply is the record */
  registry_as_t as;
  north_t *n;
  m5_http_exchange_t *ex;
} pending_t;

static json_t *ack(const char *as_svc_id, int status, const char *title, const char *detail,
                   const char *instance) {
  json_t *r = json_pack("{s:s, s:i, s:s}", "title", title, "status", status, "detail", detail);
  if (r && instance) json_object_set_new(r, "instance", json_string(instance));
  return json_pack("{s:s, s:o}", "asSvcId", as_svc_id, "result", r);
}

void north_asreg_done(registry_job_t *job) {
  pending_t *p = (pending_t *)job;
  north_t *n = p->n;
  if (job->op == REGISTRY_AS_REGISTER) {
    if (job->status == M5_ENOENT) {
      north_problem(p->ex, 403, "UNKNOWN_AS", "the AS client was removed meanwhile", NULL, NULL);
    } else if (job->status == M5_EPERM) {
      north_problem(p->ex, 403, "TARGET_NOT_ALLOWED",
                    "targetUri's host:port is not on this AS client's allow-list", "targetUri",
                    "not allowed");
    } else if (job->status != 0) {
      M5_LOGE(DOM, "AS %s: registering failed: %s", p->as.as_svc_id, m5_strerror(job->status));
      north_problem(p->ex, 500, NULL, "the registry failed; see the server's log", NULL, NULL);
    } else {
      char loc[REGISTRY_URI_MAX + 128];
      snprintf(loc, sizeof loc, "%s%s/%s", n->o.ctx->base_url, NORTH_ASREG,
               p->as.registration_id);
      M5_LOGI(DOM, "AS %s registered (%s), targetUri %s", p->as.as_svc_id,
              p->as.registration_id, p->as.target_uri[0] ? p->as.target_uri : "none");
      if (p->as.target_uri[0] && n->o.api) ue_api_as_registered(n->o.api, p->as.as_svc_id);
      m5_http_header_t h = {"location", loc};
      north_json(p->ex, 201, ack(p->as.as_svc_id, 201, "Created", "the AS is registered", loc), &h,
                 1);
    }
  } else {
    if (job->status == M5_ENOENT) {
      north_problem(p->ex, 404, "RESOURCE_NOT_FOUND", "no such registration of this AS", NULL,
                    NULL);
    } else if (job->status != 0) {
      M5_LOGE(DOM, "AS %s: deregistering failed: %s", p->as.as_svc_id, m5_strerror(job->status));
      north_problem(p->ex, 500, NULL, "the registry failed; see the server's log", NULL, NULL);
    } else {
      M5_LOGI(DOM, "AS %s deregistered (%s)", p->as.as_svc_id, p->as.registration_id);
      m5_http_respond(p->ex, 204, NULL, NULL, 0);
    }
  }
  free(p);
  north_job_finished(n);
}

static void submit(north_t *n, pending_t *p) {
  p->job.base.reply = n->replies;
  p->job.as = &p->as;
  /* Bounded: the reply mailbox has room for NORTH_MAX_REG_INFLIGHT, and registrations share
   * the registry thread with every UE's REG. */
  if (n->inflight >= NORTH_MAX_REG_INFLIGHT || registry_submit(n->o.reg, &p->job) != 0) {
    north_problem_retry(p->ex, 503, "the registry is busy; retry later", "1");
    free(p);
    return;
  }
  north_job_started(n);
}

/* An optional string member of 1..max characters without control characters. */
static int opt_text(json_t *o, const char *name, size_t max, const char **out) {
  json_t *v = json_object_get(o, name);
  *out = NULL;
  if (!v) return 0;
  if (!json_is_string(v) || json_string_length(v) == 0 || json_string_length(v) > max)
    return M5_EINVAL;
  for (const char *s = json_string_value(v); *s; s++)
    if ((unsigned char)*s < 0x20 || *s == 0x7f) return M5_EINVAL;
  *out = json_string_value(v);
  return 0;
}

static void do_register(north_t *n, m5_http_exchange_t *ex, const m5_http_request_t *req,
                        const north_caller_t *c) {
  json_t *o = north_body(ex, req);
  if (!o) return;
  const char *id = NULL, *app = NULL, *target = NULL;
  json_t *prof = json_object_get(o, "asProf");
  registry_as_t *client = malloc(sizeof *client);
  if (!client) {
    north_problem(ex, 500, NULL, "out of memory", NULL, NULL);
  } else if (!json_object_get(o, "asSvcId")) {
    north_problem(ex, 400, "MANDATORY_IE_MISSING", "asSvcId is missing", "asSvcId", "missing");
  } else if (opt_text(o, "asSvcId", REGISTRY_AS_ID_MAX, &id) != 0) {
    north_problem(ex, 400, "MANDATORY_IE_INCORRECT", "asSvcId must be a non-empty string",
                  "asSvcId", "not a string of 1-64 characters");
  } else if (strcmp(id, c->as_svc_id) != 0) {
    north_problem(ex, 403, "AS_ID_MISMATCH", "an AS may register only as its own asSvcId",
                  "asSvcId", "not the authenticated AS");
  } else if (opt_text(o, "appId", M5_MSG_ADDR_MAX, &app) != 0) {
    north_problem(ex, 400, "OPTIONAL_IE_INCORRECT", "appId must be a string of 1-128 characters",
                  "appId", "invalid");
  } else if (opt_text(o, "targetUri", REGISTRY_URI_MAX, &target) != 0) {
    north_problem(ex, 400, "OPTIONAL_IE_INCORRECT", "targetUri must be a string", "targetUri",
                  "invalid");
  } else if (prof && !json_is_object(prof)) {
    north_problem(ex, 400, "OPTIONAL_IE_INCORRECT", "asProf must be an object", "asProf",
                  "not an object");
  } else if (registry_as_lookup(n->o.reg, c->as_svc_id, client) != 0) {
    north_problem(ex, 403, "UNKNOWN_AS", "this Application Server is not a configured AS client",
                  NULL, NULL);
  } else if (target && (!registry_as_target_allowed(client, target) ||
                        north_target_is_own(n->o.ctx, target))) {
    char hp[REGISTRY_HOSTPORT_MAX + 1];
    int https = m5_net_https_hostport(target, hp) == 0;
    north_problem(ex, https ? 403 : 400, https ? "TARGET_NOT_ALLOWED" : "OPTIONAL_IE_INCORRECT",
                  !https ? "targetUri must be https://host[:port][/path]"
                  : north_target_is_own(n->o.ctx, target)
                      ? "targetUri names this server's own listener"
                      : "targetUri's host:port is not on this AS client's allow-list",
                  "targetUri", https ? "not allowed" : "not an https URI");
  } else {
    pending_t *p = calloc(1, sizeof *p);
    uint8_t rnd[REGISTRY_REG_ID_LEN / 2];
    if (!p || m5_random_bytes(rnd, sizeof rnd) != 0) {
      free(p);
      north_problem(ex, 500, NULL, "out of memory", NULL, NULL);
    } else {
      p->n = n;
      p->ex = ex;
      p->job.op = REGISTRY_AS_REGISTER;
      snprintf(p->as.as_svc_id, sizeof p->as.as_svc_id, "%s", c->as_svc_id);
      m5_hex_encode(rnd, sizeof rnd, p->as.registration_id, sizeof p->as.registration_id);
      snprintf(p->as.target_uri, sizeof p->as.target_uri, "%s", target ? target : "");
      snprintf(p->as.app_id, sizeof p->as.app_id, "%s", app ? app : "");
      p->as.registered_at = (int64_t)time(NULL);
      submit(n, p);
    }
  }
  free(client);
  json_decref(o);
}

static int hex_id(const char *s) {
  size_t i = 0;
  for (; s[i]; i++)
    if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f'))) return 0;
  return i == REGISTRY_REG_ID_LEN;
}

void north_asreg(north_t *n, m5_http_exchange_t *ex, const m5_http_request_t *req) {
  const char *rest = req->path + strlen(NORTH_ASREG);
  int collection = rest[0] == '\0';
  if (collection ? strcmp(req->method, "POST") != 0 : strcmp(req->method, "DELETE") != 0) {
    north_problem(ex, 405, NULL,
                  collection ? "registrations accepts POST" : "a registration accepts DELETE",
                  NULL, NULL);
    return;
  }
  north_caller_t c;
  m5_jwt_claims_t claims;
  if (north_caller(n, ex, req, &c) != 0 ||
      north_bearer(n, ex, req, &c, NORTH_SCOPE_REG, &claims) != 0)
    return;
  if (collection) {
    do_register(n, ex, req, &c);
    return;
  }
  const char *id = rest + 1;
  if (!hex_id(id)) {
    north_problem(ex, 404, "RESOURCE_NOT_FOUND", "no such registration of this AS", NULL, NULL);
    return;
  }
  pending_t *p = calloc(1, sizeof *p);
  if (!p) {
    north_problem(ex, 500, NULL, "out of memory", NULL, NULL);
    return;
  }
  p->n = n;
  p->ex = ex;
  p->job.op = REGISTRY_AS_DEREGISTER;
  snprintf(p->as.as_svc_id, sizeof p->as.as_svc_id, "%s", c.as_svc_id);
  snprintf(p->as.registration_id, sizeof p->as.registration_id, "%s", id);
  submit(n, p);
}
