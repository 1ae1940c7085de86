/* m5-aanf listeners per worker and their graceful drain (architecture §2, §6); the threads,
 * signals and start-up order are core/workers.h's. */
#include "aanf_run.h"

#include "aanf_api.h"
#include "core/daemon.h"
#include "core/err.h"
#include "core/log.h"
#include "core/workers.h"
#include "http/server.h"

#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>

#define DOM "aanf"
#define DRAIN_MS 3000     /* connections still open after this are closed; exit stays < 5 s */
#define MAX_INFLIGHT 1024 /* DB jobs outstanding per worker */
#define DB_QUEUE 4096     /* DB jobs waiting for the DB thread, all workers together */

typedef struct {
  m5_loop_t *loop;
  m5_http_server_t *sbi;
  m5_http_server_t *mgmt; /* worker 0 only */
  aanf_api_t *api;
  int servers_draining;
} worker_t;

static void on_idle(void *arg) {
  worker_t *w = arg;
  m5_loop_stop(w->loop);
}

/* Once every connection is gone no new request can start; then the DB jobs still out are
 * waited for, since their replies come back to this loop's mailbox. */
static void on_server_drained(void *arg) {
  worker_t *w = arg;
  if (--w->servers_draining == 0) aanf_api_when_idle(w->api, on_idle, w);
}

static void on_drain(void *arg, size_t index) {
  worker_t *w = &((worker_t *)arg)[index];
  w->servers_draining = w->mgmt ? 2 : 1;
  if (w->mgmt) m5_http_server_drain(w->mgmt, DRAIN_MS, on_server_drained, w);
  m5_http_server_drain(w->sbi, DRAIN_MS, on_server_drained, w);
}

static int worker_setup(m5_workers_t *ws, size_t index, worker_t *w, const aanf_config_t *cfg,
                        SSL_CTX *tls, aanf_db_t *db) {
  char err[256];
  w->loop = m5_workers_loop(ws, index);
  aanf_api_opts_t ao = {.db = db,
                        .afs_allowed = &cfg->afs_allowed,
                        .kaf_lifetime_s = cfg->kaf_lifetime_s,
                        .ready = m5_workers_ready(ws),
                        .max_inflight = MAX_INFLIGHT};
  w->api = aanf_api_new(w->loop, &ao);
  if (!w->api) {
    fprintf(stderr, "m5-aanf: out of memory setting up worker %zu\n", index);
    return M5_ENOMEM;
  }
  m5_http_server_opts_t so = {.host = cfg->listen_host,
                              .port = (uint16_t)cfg->listen_port,
                              .tls = tls,
                              .max_body = (size_t)cfg->max_body,
                              .handler = aanf_api_sbi,
                              .arg = w->api};
  w->sbi = m5_http_server_new(w->loop, &so, err, sizeof err);
  if (!w->sbi) {
    fprintf(stderr, "m5-aanf: listen.host/listen.port: %s\n", err);
    return M5_EIO;
  }
  if (index != 0) return 0;
  m5_http_server_opts_t mo = {.host = cfg->mgmt_host,
                              .port = (uint16_t)cfg->mgmt_port,
                              .allow_http1 = 1,
                              .allow_h2c = 1,
                              .max_body = 4096,
                              .handler = aanf_api_mgmt,
                              .arg = w->api};
  w->mgmt = m5_http_server_new(w->loop, &mo, err, sizeof err);
  if (!w->mgmt) {
    fprintf(stderr, "m5-aanf: mgmt.host/mgmt.port: %s\n", err);
    return M5_EIO;
  }
  return 0;
}

static void worker_teardown(worker_t *w) {
  if (w->mgmt) m5_http_server_free(w->mgmt);
  if (w->sbi) m5_http_server_free(w->sbi);
  aanf_api_free(w->api);
}

int aanf_run(const aanf_config_t *cfg, SSL_CTX *tls, aanf_db_t *db, size_t n_workers) {
  worker_t *w = calloc(n_workers, sizeof *w);
  if (!w) {
    fprintf(stderr, "m5-aanf: out of memory\n");
    return M5_ENOMEM;
  }
  /* Refuses to start next to another process on our ports (see m5_net_probe_port). */
  int rc = m5_daemon_probe("m5-aanf", "listen.host/listen.port", cfg->listen_host, cfg->listen_port,
                           SOCK_STREAM);
  if (rc == 0)
    rc = m5_daemon_probe("m5-aanf", "mgmt.host/mgmt.port", cfg->mgmt_host, cfg->mgmt_port,
                         SOCK_STREAM);
  m5_workers_opts_t wo = {.name = "m5-aanf",
                          .dom = DOM,
                          .drain_msg = "draining connections, then exiting",
                          .n = n_workers,
                          .drain = on_drain,
                          .arg = w};
  m5_workers_t *ws = rc == 0 ? m5_workers_new(&wo) : NULL;
  if (rc == 0 && !ws) rc = M5_ENOMEM;
  for (size_t i = 0; i < n_workers && rc == 0; i++)
    rc = worker_setup(ws, i, &w[i], cfg, tls, db);
  if (rc == 0 && aanf_db_start(db, DB_QUEUE) != 0) {
    fprintf(stderr, "m5-aanf: cannot start the database thread\n");
    rc = M5_EIO;
  }
  if (rc == 0) {
    rc = m5_workers_start(ws);
    if (rc == 0)
      M5_LOGI(DOM,
              "ready: Naanf_AKMA on https://%s:%lld (%zu workers), health on "
              "http://%s:%lld/healthz",
              cfg->listen_host, (long long)cfg->listen_port, n_workers, cfg->mgmt_host,
              (long long)cfg->mgmt_port);
    int run_rc = m5_workers_run(ws);
    if (run_rc != 0) rc = run_rc;
  }
  for (size_t i = 0; i < n_workers; i++)
    worker_teardown(&w[i]);
  m5_workers_free(ws);
  free(w);
  return rc;
}
