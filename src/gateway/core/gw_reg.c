/* Registration of the devices a gateway serves (m5gw_register / m5gw_deregister of
 * gw_adapter.h): TS 23.554 cl. 8.2.3 / 8.2.4 for UEs that are not MSGin5G clients, over our
 * resource (TS 29.538 has none; docs/gateways.md, "Registration"):
 *   POST   {m5s}/msgs-gwueregistration/v1/registrations  {"gwId":..,"ueSvcIds":[..]} -> 201
 *   DELETE {m5s}/msgs-gwueregistration/v1/registrations/{ueSvcId}                  -> 204
 * with the token (scope msgs-gwueregistration). A refusal for good (4xx) ends the call with
 * its ProblemDetails' detail; m5s unreachable, 429 or 5xx is retried with the back-off until
 * it answers or the gateway stops (m5s is idempotent for IDs the gateway holds already). */
#include "gateway/core/gw_int.h"

#include "core/err.h"
#include "core/log.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#define REG_MAX_IDS 1000

struct gw_reg_op {
  gw_reg_op_t *next;
  m5gw_core_t *core;
  char *url;
  char *body; /* NULL: a DELETE */
  size_t len;
  const char *what; /* "registration of 3 IDs" for logs */
  char what_buf[M5_MSG_ADDR_MAX + 64];
  m5gw_reg_fn done;
  void *arg;
  bool inflight;
  m5_timer_id_t timer;
  uint64_t backoff_ms;
};

static void op_unlink_free(m5gw_core_t *core, gw_reg_op_t *op) {
  for (gw_reg_op_t **p = &core->regs; *p; p = &(*p)->next)
    if (*p == op) {
      *p = op->next;
      break;
    }
  if (op->timer) m5_loop_timer_cancel(core->loop, op->timer);
  free(op->url);
  free(op->body);
  free(op);
}

static void op_end(gw_reg_op_t *op, int status, const char *reason) {
  m5gw_core_t *core = op->core;
  m5gw_reg_fn done = op->done;
  void *arg = op->arg;
  if (status == 0)
    M5_LOGI(GW_DOM, "%s: done", op->what);
  else
    M5_LOGW(GW_DOM, "%s: refused: %s", op->what, reason);
  op_unlink_free(core, op);
  if (done && core->adapter_live) done(arg, status, reason);
}

static void op_send(gw_reg_op_t *op);

static void on_retry(m5_loop_t *loop, void *arg) {
  (void)loop;
  gw_reg_op_t *op = arg;
  op->timer = 0;
  op_send(op);
}

static void op_retry(gw_reg_op_t *op, const char *why) {
  op->backoff_ms = gw_backoff_next(op->core->cfg, op->backoff_ms);
  M5_LOGW(GW_DOM, "%s: %s; trying again in %llu ms", op->what, why,
          (unsigned long long)op->backoff_ms);
  op->timer = m5_loop_timer_add(op->core->loop, op->backoff_ms, on_retry, op);
}

static int status_of(long http) {
  switch (http) {
  case 403:
    return M5_EPERM;
  case 404:
    return M5_ENOENT;
  case 409:
    return M5_EEXIST;
  default:
    return M5_EINVAL;
  }
}

static void on_answer(void *arg, int status, long http, const uint8_t *body, size_t len) {
  gw_reg_op_t *op = arg;
  m5gw_core_t *core = op->core;
  op->inflight = false;
  if (core->stopping) return;
  char why[512];
  if (status != 0) {
    snprintf(why, sizeof why, "m5s unreachable (%s)", m5_strerror(status));
    op_retry(op, why);
  } else if (http == 201 || http == 200 || http == 204) {
    op_end(op, 0, NULL);
  } else if (http == 401) {
    gw_token_rejected(core);
    op_retry(op, "m5s refused the token; fetching another");
  } else if (http >= 400 && http < 500 && http != 408 && http != 429) {
    char detail[200];
    gw_problem_text(body, len, http, detail, sizeof detail);
    snprintf(why, sizeof why, "%ld %s", http, detail);
    op_end(op, status_of(http), why);
  } else {
    char detail[200];
    gw_problem_text(body, len, http, detail, sizeof detail);
    snprintf(why, sizeof why, "m5s answered %ld (%s)", http, detail);
    op_retry(op, why);
  }
}

static void op_send(gw_reg_op_t *op) {
  m5gw_core_t *core = op->core;
  if (op->inflight || op->timer || core->stopping || !gw_token(core)) return;
  m5_http_req_opts_t o = {.method = op->body ? "POST" : "DELETE", .bearer_token = gw_token(core)};
  int rc = m5_http_client_request(core->http, op->url, &o, op->body, op->body ? op->len : 0,
                                  on_answer, op);
  if (rc != 0) {
    op_retry(op, m5_strerror(rc));
    return;
  }
  op->inflight = true;
}

void gw_reg_pump(m5gw_core_t *core) {
  for (gw_reg_op_t *op = core->regs; op; op = op->next)
    op_send(op);
}

static gw_reg_op_t *op_new(m5gw_core_t *core, m5gw_reg_fn done, void *arg) {
  gw_reg_op_t *op = calloc(1, sizeof *op);
  if (!op) return NULL;
  op->core = core;
  op->done = done;
  op->arg = arg;
  op->what = op->what_buf;
  return op;
}

static void op_start(m5gw_core_t *core, gw_reg_op_t *op) {
  op->next = core->regs;
  core->regs = op;
  op_send(op); /* or when the token arrives (gw_on_token) */
}

int m5gw_register(m5gw_core_t *core, const char *const *ids, size_t n, m5gw_reg_fn done,
                  void *arg) {
  if (!core || !ids || n == 0 || n > REG_MAX_IDS || core->stopping) return M5_EINVAL;
  for (size_t i = 0; i < n; i++)
    if (!ids[i] || !m5_msg_svc_id_valid(ids[i])) return M5_EINVAL;
  json_t *list = json_array();
  for (size_t i = 0; list && i < n; i++)
    if (json_array_append_new(list, json_string(ids[i])) != 0) {
      json_decref(list);
      list = NULL;
    }
  json_t *o = list ? json_pack("{s:s, s:o}", "gwId", core->cfg->gw_id, "ueSvcIds", list) : NULL;
  char *body = o ? json_dumps(o, JSON_COMPACT) : NULL;
  json_decref(o);
  gw_reg_op_t *op = body ? op_new(core, done, arg) : NULL;
  if (!op || !(op->url = strdup(core->url_reg))) {
    free(body);
    if (op) free(op);
    return M5_ENOMEM;
  }
  op->body = body;
  op->len = strlen(body);
  if (n == 1)
    snprintf(op->what_buf, sizeof op->what_buf, "registration of %s", ids[0]);
  else
    snprintf(op->what_buf, sizeof op->what_buf, "registration of %zu IDs (%s, ...)", n, ids[0]);
  op_start(core, op);
  return 0;
}

int m5gw_deregister(m5gw_core_t *core, const char *id, m5gw_reg_fn done, void *arg) {
  if (!core || !id || !m5_msg_svc_id_valid(id) || core->stopping) return M5_EINVAL;
  gw_reg_op_t *op = op_new(core, done, arg);
  if (!op) return M5_ENOMEM;
  /* the ID as one path segment: every byte outside the unreserved set percent-encoded */
  size_t cap = strlen(core->url_reg) + 1 + strlen(id) * 3 + 1;
  op->url = malloc(cap);
  if (!op->url) {
    free(op);
    return M5_ENOMEM;
  }
  size_t off = (size_t)snprintf(op->url, cap, "%s/", core->url_reg);
  for (const unsigned char *p = (const unsigned char *)id; *p; p++) {
    if ((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') ||
        strchr("-._~", *p))
      op->url[off++] = (char)*p;
    else
      off += (size_t)snprintf(op->url + off, cap - off, "%%%02X", *p);
  }
  op->url[off] = '\0';
  snprintf(op->what_buf, sizeof op->what_buf, "de-registration of %s", id);
  op_start(core, op);
  return 0;
}

void gw_reg_stop(m5gw_core_t *core) {
  while (core->regs)
    op_unlink_free(core, core->regs);
}
