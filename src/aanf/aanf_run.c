/* m5-aanf threads, listeners, signals and graceful drain (architecture §2, §6).
 *
 * Listeners and mailboxes are created on the main thread before any worker runs, so that a
 * bind or certificate error is reported synchronously at start-up; pthread_create orders that
 * set-up before the worker's first use of its loop. */
#include "aanf_run.h"

#include "aanf_api.h"
#include "core/err.h"
#include "core/log.h"
#include "core/net.h"
#include "http/server.h"

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#define DOM "aanf"
#define DRAIN_MS 3000     /* connections still open after this are closed; exit stays < 5 s */
#define MAX_INFLIGHT 1024 /* DB jobs outstanding per worker */
#define DB_QUEUE 4096     /* DB jobs waiting for the DB thread, all workers together */

typedef struct run run_t;

typedef struct {
  run_t *run;
  size_t index;
  m5_loop_t *loop;
  m5_http_server_t *sbi;
  m5_http_server_t *mgmt; /* worker 0 only */
  aanf_api_t *api;
  m5_mailbox_t *ctl; /* "drain" commands from worker 0's signal handler */
  pthread_t thread;
  int thread_started;
  int servers_draining;
  int draining;
} worker_t;

struct run {
  worker_t *w;
  size_t n;
  atomic_int ready;
  int signalled;
};

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

static void on_ctl(void *msg, void *arg) {
  (void)msg;
  worker_t *w = arg;
  if (w->draining) return;
  w->draining = 1;
  w->servers_draining = w->mgmt ? 2 : 1;
  if (w->mgmt) m5_http_server_drain(w->mgmt, DRAIN_MS, on_server_drained, w);
  m5_http_server_drain(w->sbi, DRAIN_MS, on_server_drained, w);
}

static void drain_all(run_t *run) {
  for (size_t i = 0; i < run->n; i++)
    if (m5_mailbox_post(run->w[i].ctl, &run->w[i]) != 0)
      M5_LOGE(DOM, "cannot tell worker %zu to drain (its command queue is full)", i);
}

static void on_signal(m5_loop_t *loop, int signo, void *arg) {
  (void)loop;
  run_t *run = arg;
  if (run->signalled) {
    M5_LOGI(DOM, "signal %d: already draining", signo);
    return;
  }
  run->signalled = 1;
  M5_LOGI(DOM, "%s: draining connections, then exiting", signo == SIGTERM ? "SIGTERM" : "SIGINT");
  atomic_store(&run->ready, 0);
  drain_all(run);
}

static void *worker_main(void *arg) {
  worker_t *w = arg;
  int rc = m5_loop_run(w->loop);
  if (rc != 0) M5_LOGE(DOM, "worker %zu: event loop failed: %s", w->index, m5_strerror(rc));
  return NULL;
}

static int worker_setup(run_t *run, worker_t *w, const aanf_config_t *cfg, SSL_CTX *tls,
                        aanf_db_t *db) {
  char err[256];
  w->run = run;
  w->loop = m5_loop_new();
  if (!w->loop) {
    fprintf(stderr, "m5-aanf: cannot create an event loop: out of memory or file descriptors\n");
    return M5_ENOMEM;
  }
  aanf_api_opts_t ao = {.db = db,
                        .afs_allowed = &cfg->afs_allowed,
                        .kaf_lifetime_s = cfg->kaf_lifetime_s,
                        .ready = &run->ready,
                        .max_inflight = MAX_INFLIGHT};
  w->api = aanf_api_new(w->loop, &ao);
  w->ctl = m5_mailbox_new(w->loop, 4, on_ctl, w);
  if (!w->api || !w->ctl) {
    fprintf(stderr, "m5-aanf: out of memory setting up worker %zu\n", w->index);
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
  if (w->index != 0) return 0;
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
  if (m5_loop_signal(w->loop, SIGTERM, on_signal, run) != 0 ||
      m5_loop_signal(w->loop, SIGINT, on_signal, run) != 0) {
    fprintf(stderr, "m5-aanf: cannot watch SIGTERM/SIGINT\n");
    return M5_EIO;
  }
  return 0;
}

/* Refuses to start next to another process on our ports (see m5_net_probe_port). */
static int probe_port(const char *keys, const char *host, int64_t port) {
  char err[160];
  if (m5_net_probe_port(host, (uint16_t)port, SOCK_STREAM, err, sizeof err) == 0) return 0;
  fprintf(stderr, "m5-aanf: %s: %s (another m5-aanf running?); stop it or choose another port\n",
          keys, err);
  return M5_EIO;
}

static void worker_teardown(worker_t *w) {
  if (w->mgmt) m5_http_server_free(w->mgmt);
  if (w->sbi) m5_http_server_free(w->sbi);
  aanf_api_free(w->api);
  if (w->ctl) m5_mailbox_free(w->ctl, NULL);
  if (w->loop) m5_loop_free(w->loop);
}

int aanf_run(const aanf_config_t *cfg, SSL_CTX *tls, aanf_db_t *db, size_t n_workers) {
  run_t run = {.n = n_workers};
  int rc = 0;
  atomic_init(&run.ready, 0);
  run.w = calloc(n_workers, sizeof *run.w);
  if (!run.w) {
    fprintf(stderr, "m5-aanf: out of memory\n");
    return M5_ENOMEM;
  }
  for (size_t i = 0; i < n_workers; i++)
    run.w[i].index = i;
  rc = probe_port("listen.host/listen.port", cfg->listen_host, cfg->listen_port);
  if (rc == 0) rc = probe_port("mgmt.host/mgmt.port", cfg->mgmt_host, cfg->mgmt_port);
  for (size_t i = 0; i < n_workers && rc == 0; i++)
    rc = worker_setup(&run, &run.w[i], cfg, tls, db);
  if (rc == 0 && aanf_db_start(db, DB_QUEUE) != 0) {
    fprintf(stderr, "m5-aanf: cannot start the database thread\n");
    rc = M5_EIO;
  }
  if (rc != 0) goto out;
  for (size_t i = 1; i < n_workers; i++) {
    if (pthread_create(&run.w[i].thread, NULL, worker_main, &run.w[i]) != 0) {
      fprintf(stderr, "m5-aanf: cannot start worker thread %zu\n", i);
      rc = M5_EIO;
      break;
    }
    run.w[i].thread_started = 1;
  }
  if (rc == 0) {
    atomic_store(&run.ready, 1);
    M5_LOGI(DOM,
            "ready: Naanf_AKMA on https://%s:%lld (%zu workers), health on "
            "http://%s:%lld/healthz",
            cfg->listen_host, (long long)cfg->listen_port, n_workers, cfg->mgmt_host,
            (long long)cfg->mgmt_port);
  } else {
    drain_all(&run); /* the workers already running stop the normal way */
  }
  if (m5_loop_run(run.w[0].loop) != 0) {
    M5_LOGE(DOM, "worker 0: event loop failed; draining the other workers");
    drain_all(&run);
    rc = M5_EIO;
  }
  for (size_t i = 1; i < n_workers; i++)
    if (run.w[i].thread_started) pthread_join(run.w[i].thread, NULL);
out:
  for (size_t i = 0; i < n_workers; i++)
    worker_teardown(&run.w[i]);
  free(run.w);
  return rc;
}
