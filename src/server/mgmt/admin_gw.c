/* /admin/v1/gateways (docs/admin-api.md "Message gateways"): the message gateway clients of
 * MSGin5G-2 (kind sms, a Legacy 3GPP Message Gateway) and MSGin5G-4 (kind mqtt, a Non-3GPP
 * Message Gateway), in the style of the AS clients:
 *   PUT /admin/v1/gateways/{gwId} {"kind": "sms"|"mqtt", "target": "host:port",
 *       "ueSvcIds": PATTERN} creates (201) or replaces (200) one: where its delivery service
 *       listens, and the UE Service IDs it may register and originate as (an exact ID or a
 *       prefix ending in '*'). IDs it holds that a new pattern no longer allows are released;
 *   GET /admin/v1/gateways/{gwId} shows it with the number of IDs it holds, GET
 *       /admin/v1/gateways lists them all;
 *   DELETE /admin/v1/gateways/{gwId}: 204; the client and every ID it holds go in one
 *       transaction, and the message store is told of each released ID (what it kept for the
 *       gateway's devices fails, their dedup state goes). */
#include "server/mgmt/admin_int.h"

#include "core/err.h"
#include "core/log.h"
#include "server/ue/ue_api.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DOM "admin"

static json_t *gw_json(const registry_gw_t *g) {
  return json_pack("{s:s, s:s, s:s, s:s, s:I}", "gwId", g->gw_id, "kind",
                   registry_gw_kind_name(g->kind), "target", g->target, "ueSvcIds", g->pattern,
                   "registeredUes", (json_int_t)g->n_ues);
}

/* g from a PUT body; 0, or answers 400 and returns M5_EINVAL. */
static int read_gw(m5_http_exchange_t *ex, json_t *o, registry_gw_t *g) {
  json_t *kind = json_object_get(o, "kind"), *target = json_object_get(o, "target"),
         *pat = json_object_get(o, "ueSvcIds");
  if (!json_is_string(kind) || registry_gw_kind_parse(json_string_value(kind), &g->kind) != 0) {
    admin_problem(ex, 400, "Bad Request",
                  "kind must be \"sms\" (MSGin5G-2) or \"mqtt\" (MSGin5G-4)", "kind",
                  kind ? "not sms or mqtt" : "missing", NULL);
    return M5_EINVAL;
  }
  const char *t = json_is_string(target) ? json_string_value(target) : NULL;
  const char *why = t        ? admin_hostport(t, g->target, sizeof g->target)
                    : target ? "not a string"
                             : "missing";
  if (why) {
    admin_problem(ex, 400, "Bad Request",
                  "target must be the host:port of the gateway's delivery service (a DNS name, "
                  "an IPv4 address or [IPv6], and a port 1-65535)",
                  "target", why, NULL);
    return M5_EINVAL;
  }
  const char *p = json_is_string(pat) ? json_string_value(pat) : NULL;
  if (!p || strlen(p) >= sizeof g->pattern || !registry_gw_pattern_valid(p)) {
    admin_problem(ex, 400, "Bad Request",
                  "ueSvcIds must be one pattern: a UE Service ID, or a prefix of one ending in "
                  "'*' (\"mq*\"; \"*\": any)",
                  "ueSvcIds", pat ? "not a pattern" : "missing", NULL);
    return M5_EINVAL;
  }
  snprintf(g->pattern, sizeof g->pattern, "%s", p);
  return 0;
}

static pending_t *pending_new(admin_t *a, m5_http_exchange_t *ex, const char *id) {
  pending_t *p = calloc(1, sizeof *p);
  registry_gw_t *g = p ? calloc(1, sizeof *g) : NULL;
  if (!g) {
    free(p);
    admin_problem(ex, 500, "Internal Server Error", "out of memory", NULL, NULL, NULL);
    return NULL;
  }
  snprintf(g->gw_id, sizeof g->gw_id, "%s", id);
  p->a = a;
  p->ex = ex;
  p->gw = g;
  p->job.gw = g;
  return p;
}

static void put_gw(admin_t *a, m5_http_exchange_t *ex, const m5_http_request_t *req,
                   const char *id) {
  json_t *o = admin_json_object(ex, req);
  if (!o) return;
  pending_t *p = pending_new(a, ex, id);
  if (p && read_gw(ex, o, p->gw) != 0) {
    free(p->gw);
    free(p);
    p = NULL;
  }
  json_decref(o);
  if (!p) return;
  p->job.op = REGISTRY_GW_PUT;
  admin_submit(a, p);
}

/* The IDs the registry released (a removed gateway's, or outside a new pattern), each under
 * its new generation: the store fails what it kept for them and drops their dedup state. */
static void tell_store(pending_t *p) {
  registry_job_t *job = &p->job;
  for (size_t i = 0; i < job->n_ids; i++) {
    M5_LOGD(DOM, "gateway %s: %s released", p->gw->gw_id, job->ids[i]);
    if (p->a->opts.api) ue_api_rebind(p->a->opts.api, job->ids[i], job->gens[i]);
  }
}

void admin_gw_done(pending_t *p) {
  registry_job_t *job = &p->job;
  if (job->status == M5_ENOENT) {
    admin_problem(p->ex, 404, "Not Found", "no message gateway client with this gwId", NULL, NULL,
                  NULL);
  } else if (job->status != 0) {
    admin_problem(p->ex, 500, "Internal Server Error", "the registry failed; see the server's log",
                  NULL, NULL, NULL);
  } else if (job->op == REGISTRY_GW_DEL) {
    M5_LOGI(DOM, "gateway client %s removed with its %zu UE Service ID(s)", p->gw->gw_id,
            job->n_ids);
    tell_store(p);
    m5_http_respond(p->ex, 204, NULL, NULL, 0);
  } else {
    M5_LOGI(DOM, "gateway client %s %s (kind %s, target %s, ueSvcIds %s)", p->gw->gw_id,
            job->created ? "created" : "updated", registry_gw_kind_name(p->gw->kind), p->gw->target,
            p->gw->pattern);
    tell_store(p);
    registry_gw_t now;
    if (registry_gw_lookup(p->a->opts.reg, p->gw->gw_id, &now) != 0) now = *p->gw;
    admin_respond_json(p->ex, job->created ? 201 : 200, gw_json(&now));
  }
  admin_finish(p);
}

static void list_one(void *arg, const registry_gw_t *g) {
  json_array_append_new(arg, gw_json(g));
}

void admin_gateways(admin_t *a, m5_http_exchange_t *ex, const m5_http_request_t *req) {
  const char *rest = req->path + strlen(ADMIN_GATEWAYS);
  if (rest[0] == '\0' || (rest[0] == '/' && rest[1] == '\0')) {
    static const m5_http_header_t allow = {"allow", "GET"};
    if (strcmp(req->method, "GET") != 0) {
      admin_problem(ex, 405, "Method Not Allowed", "the gateway list accepts GET", NULL, NULL,
                    &allow);
      return;
    }
    json_t *arr = json_array();
    if (arr) registry_gw_foreach(a->opts.reg, list_one, arr);
    admin_respond_json(ex, 200, json_pack("{s:o}", "gateways", arr ? arr : json_array()));
    return;
  }
  static const m5_http_header_t allow = {"allow", "GET, PUT, DELETE"};
  char id[REGISTRY_AS_ID_MAX + 1];
  if (admin_client_id(ex, rest + 1, "gwId", id) != 0) return;
  if (!strcmp(req->method, "GET")) {
    registry_gw_t g;
    if (registry_gw_lookup(a->opts.reg, id, &g) != 0)
      admin_problem(ex, 404, "Not Found", "no message gateway client with this gwId", NULL, NULL,
                    NULL);
    else
      admin_respond_json(ex, 200, gw_json(&g));
  } else if (!strcmp(req->method, "PUT")) {
    put_gw(a, ex, req, id);
  } else if (!strcmp(req->method, "DELETE")) {
    pending_t *p = pending_new(a, ex, id);
    if (!p) return;
    p->job.op = REGISTRY_GW_DEL;
    admin_submit(a, p);
  } else {
    admin_problem(ex, 405, "Method Not Allowed", "a gateway client accepts GET, PUT and DELETE",
                  NULL, NULL, &allow);
  }
}
