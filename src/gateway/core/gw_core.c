/* m5gw's core (gw_adapter.h, docs/gateways.md): one event loop holding the adapter, the token,
 * the registrations, the uplink spool and sender, and the MSGG listener; started by main.c,
 * stopped by SIGTERM or SIGINT: the spool is committed, the adapter stopped (its outstanding
 * deliveries answered 503), the listeners drained, the process exits 0 within 5 s. What m5s
 * has not acknowledged stays in the spool for the next start. */
#include "gateway/core/gw_core.h"

#include "core/daemon.h"
#include "core/err.h"
#include "core/log.h"
#include "core/workers.h"
#include "gateway/core/gw_int.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void gw_problem_text(const uint8_t *body, size_t len, long http_status, char *out, size_t outlen) {
  json_t *o = body && len ? json_loadb((const char *)body, len, 0, NULL) : NULL;
  const char *keys[] = {"detail", "error_description", "cause", "error", "title"};
  const char *t = NULL;
  for (size_t i = 0; !t && i < sizeof keys / sizeof keys[0]; i++)
    t = json_string_value(json_object_get(o, keys[i]));
  snprintf(out, outlen, "%s", t ? t : m5_http_reason((int)http_status));
  json_decref(o);
}

uint64_t gw_backoff_next(const m5gw_config_t *cfg, uint64_t cur) {
  uint64_t lo = (uint64_t)cfg->up_retry_min_ms, hi = (uint64_t)cfg->up_retry_max_ms;
  if (cur < lo) return lo;
  return cur >= hi / 2 ? hi : cur * 2;
}

void gw_on_token(m5gw_core_t *core) {
  gw_reg_pump(core);
  gw_sync_kick(core); /* after the pump: the adapter's registrations go first */
  gw_up_pump(core);
}

typedef struct {
  m5gw_core_t core;
  m5_workers_t *ws;
} run_t;

static void on_drained(void *arg) {
  run_t *r = arg;
  m5_loop_stop(r->core.loop);
}

static void drain_listeners(void *arg) {
  run_t *r = arg;
  gw_msgg_drain(&r->core, on_drained, r);
}

/* What devices sent is on disk and the adapter was told so: now it stops (its deliveries still
 * waiting are answered 503), and what it handed over meanwhile is committed too. */
static void drain_adapter(void *arg) {
  run_t *r = arg;
  m5gw_core_t *core = &r->core;
  if (core->adapter_live) {
    core->ops->stop(core->adapter);
    core->adapter_live = false;
  }
  core->stopping = true;
  gw_up_when_flushed(core, drain_listeners, r);
}

static void on_drain(void *arg, size_t index) {
  (void)index;
  run_t *r = arg;
  gw_up_when_flushed(&r->core, drain_adapter, r);
}

/* The URLs of m5s's resources. */
static int urls(m5gw_core_t *core) {
  const char *b = core->cfg->m5s_url;
  int w1 = snprintf(core->url_token, sizeof core->url_token, "%s/oauth2/token", b);
  int w2 =
      snprintf(core->url_reg, sizeof core->url_reg, "%s/msgs-gwueregistration/v1/registrations", b);
  int w3 =
      snprintf(core->url_msg, sizeof core->url_msg, "%s/msgs-msgdelivery/v1/deliver-ue-message", b);
  int w4 = snprintf(core->url_report, sizeof core->url_report,
                    "%s/msgs-msgdelivery/v1/deliver-report", b);
  return w1 > 0 && (size_t)w1 < sizeof core->url_token && w2 > 0 &&
                 (size_t)w2 < sizeof core->url_reg && w3 > 0 && (size_t)w3 < sizeof core->url_msg &&
                 w4 > 0 && (size_t)w4 < sizeof core->url_report
             ? 0
             : M5_ERANGE;
}

int m5gw_run(const m5gw_cfg_t *cfg) {
  run_t *r = calloc(1, sizeof *r);
  if (!r) {
    fprintf(stderr, "m5gw: out of memory\n");
    return M5_ENOMEM;
  }
  m5gw_core_t *core = &r->core;
  core->cfg = cfg->core;
  core->ops = cfg->ops;
  char err[512];
  int rc = urls(core);
  if (rc != 0) fprintf(stderr, "m5gw: m5s.url: too long\n");
  if (rc == 0)
    rc = m5_daemon_probe("m5gw", "msgg.host/msgg.port", cfg->core->msgg_host, cfg->core->msgg_port,
                         SOCK_STREAM);
  if (rc == 0)
    rc = m5_daemon_probe("m5gw", "mgmt.host/mgmt.port", cfg->core->mgmt_host, cfg->core->mgmt_port,
                         SOCK_STREAM);
  m5_workers_opts_t wo = {.name = "m5gw",
                          .dom = GW_DOM,
                          .drain_msg = "committing the spool, stopping the adapter, draining",
                          .n = 1,
                          .drain = on_drain,
                          .arg = r};
  if (rc == 0 && !(r->ws = m5_workers_new(&wo))) rc = M5_ENOMEM;
  if (rc == 0) {
    core->loop = m5_workers_loop(r->ws, 0);
    m5_http_client_opts_t co = {.cert_file = cfg->core->tls_cert,
                                .key_file = cfg->core->tls_key,
                                .ca_file = cfg->core->tls_ca,
                                .timeout_ms = (uint32_t)cfg->core->up_timeout_ms,
                                .max_inflight = (size_t)cfg->core->up_window + 1100,
                                .max_response = 65536};
    core->http = m5_http_client_new(core->loop, &co, err, sizeof err);
    if (!core->http) {
      fprintf(stderr, "m5gw: %s\n", err);
      rc = M5_EIO;
    }
  }
  if (rc == 0 && (rc = gw_up_start(core, err, sizeof err)) != 0) fprintf(stderr, "m5gw: %s\n", err);
  if (rc == 0 && (rc = gw_msgg_start(core, err, sizeof err)) != 0)
    fprintf(stderr, "m5gw: %s\n", err);
  if (rc == 0) {
    err[0] = '\0';
    /* before the adapter starts, so that what it registers at once waits for the token
       rather than failing */
    gw_token_start(core);
    core->adapter_live = true;
    rc = core->ops->start(core->loop, cfg->adapter_cfg, core, &core->adapter, err, sizeof err);
    if (rc != 0) {
      core->adapter_live = false;
      fprintf(stderr, "m5gw: %s adapter: %s\n", core->ops->kind, err[0] ? err : m5_strerror(rc));
    } else if ((rc = gw_sync_start(core, err, sizeof err)) != 0) {
      fprintf(stderr, "m5gw: %s\n", err);
    }
  }
  if (rc == 0) {
    rc = m5_workers_start(r->ws);
    if (rc == 0)
      M5_LOGI(GW_DOM,
              "ready: gateway %s (kind %s) towards %s; %s on https://%s:%lld; health on "
              "http://%s:%lld/healthz; spool %s",
              cfg->core->gw_id, core->ops->kind, cfg->core->m5s_url, core->ops->api,
              cfg->core->msgg_host, (long long)cfg->core->msgg_port, cfg->core->mgmt_host,
              (long long)cfg->core->mgmt_port, cfg->core->spool_path);
    int run_rc = m5_workers_run(r->ws);
    if (run_rc != 0) rc = run_rc;
  }
  /* teardown, on this thread, the loop stopped */
  core->stopping = true;
  if (core->adapter_live) {
    core->ops->stop(core->adapter);
    core->adapter_live = false;
  }
  if (core->http) m5_http_client_free(core->http); /* callbacks see `stopping` */
  gw_reg_stop(core);
  gw_sync_stop(core);
  gw_token_stop(core);
  gw_up_stop(core);
  gw_msgg_stop(core);
  m5_workers_free(r->ws);
  free(r);
  return rc;
}
