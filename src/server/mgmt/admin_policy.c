/* /admin/v1/policy (docs/admin-api.md): who may message whom (policy.h; TS 23.554 cl. 8.3.2
 * step 3). GET shows the policy in force with its source ("configuration": m5s's policy.*
 * keys, or "admin": stored by a PUT); PUT {"ueToUe", "ueToAs", "asToUe", "asToAs"} replaces
 * it, stored in the registry so it survives restarts, in force for the next message once
 * committed; DELETE drops the stored one, so the configuration's applies again. Behind the
 * management token like every admin change (admin.c). */
#include "server/mgmt/admin_int.h"

#include "core/log.h"

#include <stdlib.h>
#include <string.h>

#define DOM "admin"

/* The pending record of a PUT or DELETE, with the policy the job points to: one allocation,
 * freed by admin_finish's free(p). */
typedef struct {
  pending_t p; /* first */
  policy_t policy;
} policy_pending_t;

static json_t *policy_doc(admin_t *a) {
  policy_t p;
  int stored = 0;
  registry_policy_get(a->opts.reg, &p, &stored);
  json_t *o = policy_to_json(&p);
  if (o) json_object_set_new(o, "source", json_string(stored ? "admin" : "configuration"));
  return o;
}

static void submit(admin_t *a, m5_http_exchange_t *ex, registry_op_t op, const policy_t *pol) {
  policy_pending_t *pp = calloc(1, sizeof *pp);
  if (!pp) {
    admin_problem(ex, 500, "Internal Server Error", "out of memory", NULL, NULL, NULL);
    return;
  }
  if (pol) pp->policy = *pol;
  pp->p.a = a;
  pp->p.ex = ex;
  pp->p.job.op = op;
  pp->p.job.policy = &pp->policy;
  admin_submit(a, &pp->p);
}

static void put_policy(admin_t *a, m5_http_exchange_t *ex, const m5_http_request_t *req) {
  json_t *o = admin_json_object(ex, req);
  if (!o) return;
  json_object_del(o, "source"); /* read-only: a GET's document can be PUT back as it is */
  policy_t pol;
  char param[72], why[160];
  if (policy_from_json(o, &pol, param, sizeof param, why, sizeof why) != 0) {
    admin_problem(ex, 400, "Bad Request",
                  "the policy is {\"ueToUe\": bool, \"ueToAs\": [asSvcId patterns], "
                  "\"asToUe\": bool, \"asToAs\": bool}, every member given",
                  param, why, NULL);
  } else {
    submit(a, ex, REGISTRY_POLICY_PUT, &pol);
  }
  json_decref(o);
}

void admin_policy_done(pending_t *p) {
  registry_job_t *job = &p->job;
  if (job->status != 0) {
    admin_problem(p->ex, 500, "Internal Server Error", "the registry failed; see the server's log",
                  NULL, NULL, NULL);
  } else {
    if (job->op == REGISTRY_POLICY_PUT)
      M5_LOGI(DOM, "policy replaced (ueToUe %s, %zu ueToAs patterns, asToUe %s, asToAs %s); "
                   "stored, it outlasts restarts",
              job->policy->ue_to_ue ? "true" : "false", job->policy->ue_to_as.n,
              job->policy->as_to_ue ? "true" : "false", job->policy->as_to_as ? "true" : "false");
    else
      M5_LOGI(DOM, "policy: %s; the configuration's applies",
              job->created ? "the stored one removed" : "none was stored");
    admin_respond_json(p->ex, 200, policy_doc(p->a));
  }
  admin_finish(p);
}

void admin_policy(admin_t *a, m5_http_exchange_t *ex, const m5_http_request_t *req) {
  static const m5_http_header_t allow = {"allow", "GET, PUT, DELETE"};
  if (!strcmp(req->method, "GET"))
    admin_respond_json(ex, 200, policy_doc(a));
  else if (!strcmp(req->method, "PUT"))
    put_policy(a, ex, req);
  else if (!strcmp(req->method, "DELETE"))
    submit(a, ex, REGISTRY_POLICY_DEL, NULL);
  else
    admin_problem(ex, 405, "Method Not Allowed", "the policy accepts GET, PUT and DELETE", NULL,
                  NULL, &allow);
}
