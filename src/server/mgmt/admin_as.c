/* /admin/v1/as-clients/{asSvcId} (docs/admin-api.md): the Application Server clients of the
 * northbound MSGin5G-3 API. PUT {"targets": ["host:port", ...], "auth": "token"|"mtls",
 * "ueSvcIds": ["pattern", ...]} creates (201) or replaces (200) one: the host:port pairs its
 * registration's targetUri may name (architecture §3.2), whether it needs an access token
 * (the default) or its client certificate suffices (mtls), and the UE Service IDs it may
 * message (policy.h; default ["*"]);
 * GET shows it with its registration; DELETE removes it and its registration (204). */
#include "server/mgmt/admin_int.h"

#include "core/err.h"
#include "core/log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DOM "admin"

static json_t *as_json(const registry_as_t *a) {
  json_t *t = json_array();
  for (size_t i = 0; t && i < a->n_targets; i++)
    json_array_append_new(t, json_string(a->targets[i]));
  json_t *o = json_pack("{s:s, s:s, s:o, s:o, s:b}", "asSvcId", a->as_svc_id, "auth",
                        registry_as_auth_name(a->auth), "targets", t, "ueSvcIds",
                        policy_patterns_json(&a->ue_svc_ids), "registered",
                        a->registration_id[0] != '\0');
  if (o && a->registration_id[0]) {
    json_object_set_new(o, "registrationId", json_string(a->registration_id));
    json_object_set_new(o, "targetUri", json_string(a->target_uri));
  }
  return o;
}

/* Fills a->targets from the body's "targets"; 0, or answers 400 and returns M5_EINVAL. */
static int read_targets(m5_http_exchange_t *ex, json_t *body, registry_as_t *a) {
  json_t *t = json_object_get(body, "targets");
  if (!t) {
    admin_problem(ex, 400, "Bad Request", "targets is missing", "targets", "missing", NULL);
    return M5_EINVAL;
  }
  if (!json_is_array(t) || json_array_size(t) == 0 ||
      json_array_size(t) > REGISTRY_AS_TARGETS_MAX) {
    admin_problem(ex, 400, "Bad Request", "targets must be an array of 1-16 host:port strings",
                  "targets", "not an array of 1-16 entries", NULL);
    return M5_EINVAL;
  }
  for (size_t i = 0; i < json_array_size(t); i++) {
    json_t *v = json_array_get(t, i);
    const char *text = json_is_string(v) ? json_string_value(v) : NULL;
    char hp[REGISTRY_HOSTPORT_MAX + 1];
    /* The stored form is what a targetUri's authority gives, so the allow-list compares as
     * text. */
    const char *why = text ? admin_hostport(text, hp, sizeof hp) : "not a string";
    if (why) {
      char param[32];
      snprintf(param, sizeof param, "targets[%zu]", i);
      admin_problem(ex, 400, "Bad Request",
                    "each target must be host:port (a DNS name, an IPv4 address or [IPv6], and "
                    "a port 1-65535)",
                    param, why, NULL);
      return M5_EINVAL;
    }
    int ok = 1;
    for (size_t k = 0; k < a->n_targets; k++)
      if (!strcmp(a->targets[k], hp)) ok = 0;
    if (ok) memcpy(a->targets[a->n_targets++], hp, sizeof hp);
  }
  return 0;
}

/* a->auth from the body's optional "auth" (absent: token, as a PUT replaces the whole client);
 * 0, or answers 400 and returns M5_EINVAL. */
static int read_auth(m5_http_exchange_t *ex, json_t *body, registry_as_t *a) {
  json_t *v = json_object_get(body, "auth");
  a->auth = REGISTRY_AS_AUTH_TOKEN;
  if (v && (!json_is_string(v) || registry_as_auth_parse(json_string_value(v), &a->auth) != 0)) {
    admin_problem(ex, 400, "Bad Request",
                  "auth must be \"token\" (an access token is needed, the default) or \"mtls\" "
                  "(the client certificate suffices)",
                  "auth", "not token or mtls", NULL);
    return M5_EINVAL;
  }
  return 0;
}

/* a->ue_svc_ids from the body's optional "ueSvcIds" (absent: ["*"], every UE, as a PUT
 * replaces the whole client); 0, or answers 400 and returns M5_EINVAL. */
static int read_ue_svc_ids(m5_http_exchange_t *ex, json_t *body, registry_as_t *a) {
  json_t *v = json_object_get(body, "ueSvcIds");
  char why[160];
  if (!v) {
    policy_patterns_from_text(&a->ue_svc_ids, "*");
    return 0;
  }
  if (policy_patterns_from_json(v, &a->ue_svc_ids, why, sizeof why) != 0) {
    admin_problem(ex, 400, "Bad Request",
                  "ueSvcIds must be an array of 0-16 UE Service ID patterns ('*' matches any "
                  "run of characters)",
                  "ueSvcIds", why, NULL);
    return M5_EINVAL;
  }
  return 0;
}

/* A job of op on the AS client id, with its own copy to fill; NULL after answering 500. */
static pending_t *pending_new(admin_t *a, m5_http_exchange_t *ex, registry_op_t op,
                              const char *id) {
  pending_t *p = calloc(1, sizeof *p);
  registry_as_t *as = p ? calloc(1, sizeof *as) : NULL;
  if (!as) {
    free(p);
    admin_problem(ex, 500, "Internal Server Error", "out of memory", NULL, NULL, NULL);
    return NULL;
  }
  snprintf(as->as_svc_id, sizeof as->as_svc_id, "%s", id);
  p->a = a;
  p->ex = ex;
  p->as = as;
  p->job.op = op;
  p->job.as = as;
  return p;
}

static void put_client(admin_t *a, m5_http_exchange_t *ex, const m5_http_request_t *req,
                       const char *id) {
  json_t *o = admin_json_object(ex, req);
  if (!o) return;
  pending_t *p = pending_new(a, ex, REGISTRY_AS_PUT, id);
  if (p && (read_auth(ex, o, p->as) != 0 || read_targets(ex, o, p->as) != 0 ||
            read_ue_svc_ids(ex, o, p->as) != 0)) {
    free(p->as);
    free(p);
    p = NULL;
  }
  json_decref(o);
  if (p) admin_submit(a, p);
}

void admin_as_done(pending_t *p) {
  registry_job_t *job = &p->job;
  if (job->status == M5_ENOENT && job->op == REGISTRY_AS_DEL) {
    /* A DELETE repeated after its topic subscriptions could not be dropped: drop them now
     * (no client, nothing else to do), then 404. */
    if (admin_as_drop_topics(p)) return;
    admin_problem(p->ex, 404, "Not Found", "no AS client with this asSvcId", NULL, NULL, NULL);
  } else if (job->status == M5_ENOENT) {
    admin_problem(p->ex, 404, "Not Found", "no AS client with this asSvcId", NULL, NULL, NULL);
  } else if (job->status != 0) {
    admin_problem(p->ex, 500, "Internal Server Error", "the registry failed; see the server's log",
                  NULL, NULL, NULL);
  } else if (job->op == REGISTRY_AS_DEL) {
    M5_LOGI(DOM, "AS client %s removed", p->as->as_svc_id);
    if (admin_as_drop_topics(p)) return; /* answers once the store has it */
    m5_http_respond(p->ex, 204, NULL, NULL, 0);
  } else {
    M5_LOGI(DOM, "AS client %s %s (auth %s, %zu targets, %zu ueSvcIds patterns)",
            p->as->as_svc_id, job->created ? "created" : "updated",
            registry_as_auth_name(p->as->auth), p->as->n_targets, p->as->ue_svc_ids.n);
    registry_as_t now;
    if (registry_as_lookup(p->a->opts.reg, p->as->as_svc_id, &now) != 0) now = *p->as;
    admin_respond_json(p->ex, job->created ? 201 : 200, as_json(&now));
  }
  admin_finish(p);
}

void admin_as_clients(admin_t *a, m5_http_exchange_t *ex, const m5_http_request_t *req) {
  static const m5_http_header_t allow = {"allow", "GET, PUT, DELETE"};
  char id[REGISTRY_AS_ID_MAX + 1];
  if (admin_client_id(ex, req->path + strlen(ADMIN_AS_CLIENTS), "asSvcId", id) != 0) return;
  if (!strcmp(req->method, "GET")) {
    registry_as_t *as = malloc(sizeof *as);
    if (!as) {
      admin_problem(ex, 500, "Internal Server Error", "out of memory", NULL, NULL, NULL);
    } else if (registry_as_lookup(a->opts.reg, id, as) != 0) {
      admin_problem(ex, 404, "Not Found", "no AS client with this asSvcId", NULL, NULL, NULL);
    } else {
      admin_respond_json(ex, 200, as_json(as));
    }
    free(as);
  } else if (!strcmp(req->method, "PUT")) {
    put_client(a, ex, req, id);
  } else if (!strcmp(req->method, "DELETE")) {
    pending_t *p = pending_new(a, ex, REGISTRY_AS_DEL, id);
    if (p) admin_submit(a, p);
  } else {
    admin_problem(ex, 405, "Method Not Allowed", "an AS client accepts GET, PUT and DELETE", NULL,
                  NULL, &allow);
  }
}
