/* Registration of the devices a gateway serves (m5gw_register / m5gw_deregister of
 * gw_adapter.h): TS 23.554 cl. 8.2.3 / 8.2.4 for UEs that are not MSGin5G clients, over our
 * resource (TS 29.538 has none; docs/gateways.md, "Registration"):
 *   POST   {m5s}/msgs-gwueregistration/v1/registrations  {"gwId":..,"ueSvcIds":[..]} -> 201
 *   DELETE {m5s}/msgs-gwueregistration/v1/registrations/{ueSvcId}                  -> 204
 *   GET    {m5s}/msgs-gwueregistration/v1/registrations?limit=..&after=..          -> 200
 * with the token (scope msgs-gwueregistration). A refusal for good (4xx) ends the call with
 * its ProblemDetails' detail; m5s unreachable, 429 or 5xx is retried with the back-off until
 * it answers or the gateway stops (m5s is idempotent for IDs the gateway holds already). The
 * listing is gw_sync.c's (gw_reg_request), which converges m5s to the adapter's devices. */
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
  const char *method; /* "POST" (with body), "DELETE" or "GET" */
  char *body;
  size_t len;
  const char *what; /* "registration of 3 IDs" for logs */
  char what_buf[M5_MSG_ADDR_MAX + 64];
  m5gw_reg_fn done;   /* the adapter's (only while it is live), or */
  gw_req_fn req_done; /* the core's own (gw_sync.c), with the answer's body */
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

static bool is_post(const gw_reg_op_t *op) {
  return !strcmp(op->method, "POST");
}

bool gw_reg_posting(const m5gw_core_t *core) {
  for (const gw_reg_op_t *op = core->regs; op; op = op->next)
    if (is_post(op)) return true;
  return false;
}

static void op_end(gw_reg_op_t *op, int status, const char *reason, const uint8_t *body,
                   size_t len) {
  m5gw_core_t *core = op->core;
  m5gw_reg_fn done = op->done;
  gw_req_fn req_done = op->req_done;
  void *arg = op->arg;
  bool registered = status == 0 && is_post(op);
  if (status == 0 && !strcmp(op->method, "GET"))
    M5_LOGD(GW_DOM, "%s: done", op->what);
  else if (status == 0)
    M5_LOGI(GW_DOM, "%s: done", op->what);
  else
    M5_LOGW(GW_DOM, "%s: refused: %s", op->what, reason);
  op_unlink_free(core, op);
  if (req_done)
    req_done(arg, status, reason, body, len);
  else if (done && core->adapter_live)
    done(arg, status, reason);
  /* m5s took a registration: it may hold others from before, which the next convergence
   * finds; it starts once no registration is out any more */
  if (registered) gw_sync_request(core);
  gw_sync_kick(core);
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
    op_end(op, 0, NULL, body, len);
  } else if (http == 401) {
    gw_token_rejected(core);
    op_retry(op, "m5s refused the token; fetching another");
  } else if (http >= 400 && http < 500 && http != 408 && http != 429) {
    char detail[200];
    gw_problem_text(body, len, http, detail, sizeof detail);
    snprintf(why, sizeof why, "%ld %s", http, detail);
    op_end(op, status_of(http), why, NULL, 0);
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
  m5_http_req_opts_t o = {.method = op->method, .bearer_token = gw_token(core)};
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

static gw_reg_op_t *op_new(m5gw_core_t *core, const char *method, m5gw_reg_fn done, void *arg) {
  gw_reg_op_t *op = calloc(1, sizeof *op);
  if (!op) return NULL;
  op->core = core;
  op->method = method;
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
  gw_reg_op_t *op = body ? op_new(core, "POST", done, arg) : NULL;
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

char *gw_reg_url(const m5gw_core_t *core, const char *sep, const char *id) {
  /* the ID as one path segment or query value: every byte outside the unreserved set
   * percent-encoded */
  size_t cap = strlen(core->url_reg) + strlen(sep) + strlen(id) * 3 + 1;
  char *url = malloc(cap);
  if (!url) return NULL;
  size_t off = (size_t)snprintf(url, cap, "%s%s", core->url_reg, sep);
  for (const unsigned char *p = (const unsigned char *)id; *p; p++) {
    if ((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') ||
        strchr("-._~", *p))
      url[off++] = (char)*p;
    else
      off += (size_t)snprintf(url + off, cap - off, "%%%02X", *p);
  }
  url[off] = '\0';
  return url;
}

int m5gw_deregister(m5gw_core_t *core, const char *id, m5gw_reg_fn done, void *arg) {
  if (!core || !id || !m5_msg_svc_id_valid(id) || core->stopping) return M5_EINVAL;
  gw_reg_op_t *op = op_new(core, "DELETE", done, arg);
  if (!op) return M5_ENOMEM;
  if (!(op->url = gw_reg_url(core, "/", id))) {
    free(op);
    return M5_ENOMEM;
  }
  snprintf(op->what_buf, sizeof op->what_buf, "de-registration of %s", id);
  op_start(core, op);
  return 0;
}

int gw_reg_request(m5gw_core_t *core, const char *method, char *url, const char *what,
                   gw_req_fn done, void *arg) {
  gw_reg_op_t *op = core->stopping ? NULL : op_new(core, method, NULL, arg);
  if (!op) {
    free(url);
    return core->stopping ? M5_EINVAL : M5_ENOMEM;
  }
  op->url = url;
  op->req_done = done;
  snprintf(op->what_buf, sizeof op->what_buf, "%s", what);
  op_start(core, op);
  return 0;
}

void gw_reg_stop(m5gw_core_t *core) {
  while (core->regs)
    op_unlink_free(core, core->regs);
}
