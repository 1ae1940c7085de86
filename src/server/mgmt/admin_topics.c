/* The Messaging Topic rules on the management API (docs/admin-api.md "Topic rules";
 * topics_rules.h): GET /admin/v1/topic-rules lists them, PUT replaces them as a whole
 * ({"rules": ["PREFIX [subscribe=PATTERNS] [publish=PATTERNS]", ...]}; all or nothing, a bad
 * rule is 400 naming it). Every worker reads the same rule set, so a PUT applies to the next
 * TOPICSUB or topic message everywhere. It is not written back to the configuration file:
 * topics.rules applies again at the next start. Behind the admin token like every change.
 * Also: the topic subscriptions of an AS client removed (DELETE /admin/v1/as-clients/{id}). */
#include "server/mgmt/admin_int.h"

#include "core/err.h"
#include "core/log.h"
#include "server/test_hooks.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DOM "admin"

static void get_rules(topics_rules_t *r, m5_http_exchange_t *ex) {
  m5_strlist_t l;
  if (topics_rules_get(r, &l) != 0) {
    admin_problem(ex, 500, "Internal Server Error", "out of memory", NULL, NULL, NULL);
    return;
  }
  json_t *arr = json_array();
  for (size_t i = 0; i < l.n; i++) {
    if (arr) json_array_append_new(arr, json_string(l.v[i]));
    free(l.v[i]);
  }
  free(l.v);
  admin_respond_json(ex, 200, json_pack("{s:o}", "rules", arr));
}

static void put_rules(topics_rules_t *r, m5_http_exchange_t *ex, const m5_http_request_t *req) {
  json_t *o = admin_json_object(ex, req);
  if (!o) return;
  json_t *arr = json_object_get(o, "rules");
  const char **lines = NULL;
  size_t n = arr && json_is_array(arr) ? json_array_size(arr) : 0;
  char err[256], param[32];
  if (!arr || !json_is_array(arr)) {
    admin_problem(ex, 400, "Bad Request", "rules must be an array of strings", "rules",
                  arr ? "not an array" : "missing", NULL);
  } else if (n > TOPICS_RULES_MAX) {
    admin_problem(ex, 400, "Bad Request", "too many rules", "rules", "too many", NULL);
  } else if (n && !(lines = calloc(n, sizeof *lines))) {
    admin_problem(ex, 500, "Internal Server Error", "out of memory", NULL, NULL, NULL);
  } else {
    size_t i;
    for (i = 0; i < n; i++) {
      json_t *v = json_array_get(arr, i);
      if (!json_is_string(v)) break;
      lines[i] = json_string_value(v);
    }
    if (i < n) {
      snprintf(param, sizeof param, "rules[%zu]", i);
      admin_problem(ex, 400, "Bad Request", "each rule is a string", param, "not a string", NULL);
    } else if (topics_rules_set(r, lines, n, err, sizeof err) != 0) {
      admin_problem(ex, 400, "Bad Request", err, "rules", "invalid", NULL);
    } else {
      M5_LOGI(DOM, "topic rules replaced (%zu rules)", n);
      get_rules(r, ex);
    }
  }
  free(lines);
  json_decref(o);
}

void admin_topic_rules(admin_t *a, m5_http_exchange_t *ex, const m5_http_request_t *req) {
  if (!a->opts.topic_rules) {
    admin_problem(ex, 404, "Not Found", "this server has no topic rules", NULL, NULL, NULL);
  } else if (!strcmp(req->method, "GET")) {
    get_rules(a->opts.topic_rules, ex);
  } else if (!strcmp(req->method, "PUT")) {
    put_rules(a->opts.topic_rules, ex, req);
  } else {
    m5_http_header_t allow = {"allow", "GET, PUT"};
    admin_problem(ex, 405, "Method Not Allowed", "topic-rules accepts GET and PUT", NULL, NULL,
                  &allow);
  }
}

/* ---- a removed AS client's subscriptions ---- */

typedef struct {
  m5_store_job_t job; /* first: the store hands back &job.base */
  pending_t *p;
} drop_t;

#define DROP_RETRY_MS 200

static void drop_submit(m5_loop_t *loop, void *arg) {
  drop_t *d = arg;
  if (m5_store_submit(d->p->a->opts.store, &d->job) == 0) return;
  if (m5_loop_timer_add(loop, DROP_RETRY_MS, drop_submit, d)) return;
  M5_LOGE(DOM, "AS client %s: cannot drop its topic subscriptions (the store is busy)",
          d->job.rcpt.addr);
  admin_as_topics_failed(d->p);
  admin_finish(d->p);
  free(d);
}

/* The client is gone but its subscriptions are not: a later client of that asSvcId must not
 * inherit them, so the operator is told to DELETE again (which drops them, then 404). */
void admin_as_topics_failed(pending_t *p) {
  admin_problem(p->ex, 500, "Internal Server Error",
                "the AS client is removed but its topic subscriptions could not be dropped; "
                "DELETE it again",
                NULL, NULL, NULL);
}

int admin_as_drop_topics(pending_t *p) {
  admin_t *a = p->a;
  drop_t *d = a->opts.store ? calloc(1, sizeof *d) : NULL;
  if (!d && !a->opts.store) return 0;
  char hook[4096]; /* test builds: the drop fails, as a failing store would make it */
  if (d && m5_test_hook_armed("fail-as-topics-drop", hook, sizeof hook)) {
    free(d);
    d = NULL;
  }
  if (!d) {
    M5_LOGE(DOM, "AS client %s: cannot drop its topic subscriptions (out of memory)",
            p->as->as_svc_id);
    admin_as_topics_failed(p);
    admin_finish(p);
    return 1;
  }
  d->p = p;
  d->job.op = M5_STORE_TOPIC_UNSUB; /* no topics: all of them */
  d->job.arg = d;
  d->job.base.reply = a->store_replies;
  snprintf(d->job.rcpt.type, sizeof d->job.rcpt.type, "AS");
  snprintf(d->job.rcpt.addr, sizeof d->job.rcpt.addr, "%s", p->as->as_svc_id);
  drop_submit(a->loop, d);
  return 1;
}

void admin_as_topics_done(m5_store_job_t *job) {
  drop_t *d = (drop_t *)job;
  if (job->status != 0) {
    M5_LOGE(DOM, "AS client %s: the store failed to drop its topic subscriptions (%s)",
            job->rcpt.addr, m5_strerror(job->status));
    admin_as_topics_failed(d->p);
  } else if (d->p->job.status == M5_ENOENT) { /* a repeated DELETE */
    admin_problem(d->p->ex, 404, "Not Found", "no AS client with this asSvcId", NULL, NULL, NULL);
  } else {
    m5_http_respond(d->p->ex, 204, NULL, NULL, 0);
  }
  admin_finish(d->p);
  m5_store_job_clear(job);
  free(d);
}
