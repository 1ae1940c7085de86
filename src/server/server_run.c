/* m5s threads, listeners, signals and graceful drain (architecture §2, §6), in the pattern of
 * m5-aanf's aanf_run.c: everything that can fail at start-up (binding, contexts) is created on
 * the main thread before any worker runs, so errors are reported synchronously;
 * pthread_create orders that set-up before the worker's first use of its loop.
 *
 * Drain order per worker: ue_api stops taking requests and waits for what it has in flight
 * (registry jobs always, cross-worker results and pushes up to DRAIN_MS), worker 0 also drains
 * the management server and the admin API's registry jobs; then the UE listeners are freed
 * (sessions closed, their closed hooks run) and the loop stops. The registry is closed only
 * after every worker has stopped and before any ue_api is freed, so each DB reply lands in a
 * mailbox that still exists. */
#include "server_run.h"

#include "admin.h"
#include "akma_keys.h"
#include "core/err.h"
#include "core/log.h"
#include "core/net.h"
#include "http/server.h"
#include "router.h"
#include "tls/akma.h"
#include "ue_api.h"
#include "ue_transport.h"

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#define DOM "m5s"
#define DRAIN_MS 3000 /* exit stays < 5 s */
#define REG_QUEUE 8192

typedef struct run run_t;

typedef struct {
  run_t *run;
  unsigned index;
  m5_loop_t *loop;
  akma_keys_t *keys;
  ue_api_t *api;
  ue_listener_t *udp, *tcp;
  m5_http_server_t *mgmt; /* worker 0 only */
  admin_t *admin;         /* worker 0 only */
  m5_mailbox_t *ctl;      /* "drain" from worker 0's signal handler */
  pthread_t thread;
  int thread_started;
  int waiting; /* drain steps still running */
  int draining;
} worker_t;

struct run {
  worker_t *w;
  size_t n;
  router_t *router;
  registry_t *reg;
  SSL_CTX *dtls, *tls;
  atomic_int ready;
  int signalled;
};

static void step_done(void *arg) {
  worker_t *w = arg;
  if (--w->waiting > 0) return;
  if (w->udp) ue_listener_free(w->udp);
  if (w->tcp) ue_listener_free(w->tcp);
  w->udp = w->tcp = NULL;
  m5_loop_stop(w->loop);
}

static void on_mgmt_drained(void *arg) {
  worker_t *w = arg;
  admin_when_idle(w->admin, step_done, w);
}

static void on_ctl(void *msg, void *arg) {
  (void)msg;
  worker_t *w = arg;
  if (w->draining) return;
  w->draining = 1;
  w->waiting = w->mgmt ? 2 : 1;
  if (w->mgmt) m5_http_server_drain(w->mgmt, DRAIN_MS, on_mgmt_drained, w);
  ue_api_drain(w->api, DRAIN_MS, step_done, w);
}

static void drain_all(run_t *run) {
  for (size_t i = 0; i < run->n; i++)
    if (run->w[i].ctl && m5_mailbox_post(run->w[i].ctl, &run->w[i]) != 0)
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
  M5_LOGI(DOM, "%s: draining, then exiting", signo == SIGTERM ? "SIGTERM" : "SIGINT");
  atomic_store(&run->ready, 0);
  drain_all(run);
}

static void *worker_main(void *arg) {
  worker_t *w = arg;
  int rc = m5_loop_run(w->loop);
  if (rc != 0) M5_LOGE(DOM, "worker %u: event loop failed: %s", w->index, m5_strerror(rc));
  return NULL;
}

static int worker_setup(run_t *run, worker_t *w, const server_config_t *cfg) {
  char err[256];
  w->run = run;
  w->loop = m5_loop_new();
  if (!w->loop) {
    fprintf(stderr, "m5s: cannot create an event loop: out of memory or file descriptors\n");
    return M5_ENOMEM;
  }
  akma_keys_opts_t ko = {.aanf_url = cfg->aanf_url,
                         .cert_file = cfg->tls_cert,
                         .key_file = cfg->tls_key,
                         .ca_file = cfg->tls_ca,
                         .timeout_ms = (uint32_t)cfg->aanf_timeout_ms};
  w->keys = akma_keys_new(w->loop, &ko, err, sizeof err);
  if (!w->keys) {
    fprintf(stderr, "m5s: aanf.url / tls.*: %s\n", err);
    return M5_EIO;
  }
  ue_api_opts_t ao = {.worker = w->index,
                      .reg = run->reg,
                      .router = run->router,
                      .reg_lifetime_s = cfg->reg_lifetime_s};
  w->api = ue_api_new(w->loop, &ao);
  w->ctl = m5_mailbox_new(w->loop, 4, on_ctl, w);
  if (!w->api || !w->ctl) {
    fprintf(stderr, "m5s: out of memory setting up worker %u\n", w->index);
    return M5_ENOMEM;
  }
  ue_listener_opts_t lo = {.host = cfg->ue_host,
                           .port = (uint16_t)cfg->ue_port,
                           .ctx = run->dtls,
                           .keys = w->keys,
                           .worker = w->index,
                           .coap = {.max_body = (size_t)cfg->coap_max_body,
                                    .nstart = (unsigned)cfg->coap_nstart,
                                    .window = (unsigned)cfg->coap_window},
                           .max_sessions = (size_t)cfg->ue_max_sessions,
                           .idle_timeout_ms = (uint32_t)(cfg->ue_idle_timeout_s * 1000),
                           .hooks = ue_api_hooks(w->api)};
  w->udp = ue_dtls_listener_new(w->loop, &lo, err, sizeof err);
  if (!w->udp) {
    fprintf(stderr, "m5s: ue.host/ue.port (udp): %s\n", err);
    return M5_EIO;
  }
  lo.ctx = run->tls;
  w->tcp = ue_tls_listener_new(w->loop, &lo, err, sizeof err);
  if (!w->tcp) {
    fprintf(stderr, "m5s: ue.host/ue.port (tcp): %s\n", err);
    return M5_EIO;
  }
  if (w->index != 0) return 0;
  admin_opts_t mo = {.reg = run->reg, .router = run->router, .ready = &run->ready};
  w->admin = admin_new(w->loop, &mo);
  if (!w->admin) {
    fprintf(stderr, "m5s: out of memory setting up the admin API\n");
    return M5_ENOMEM;
  }
  m5_http_server_opts_t so = {.host = cfg->mgmt_host,
                              .port = (uint16_t)cfg->mgmt_port,
                              .allow_http1 = 1,
                              .allow_h2c = 1,
                              .max_body = 16384,
                              .handler = admin_handle,
                              .arg = w->admin};
  w->mgmt = m5_http_server_new(w->loop, &so, err, sizeof err);
  if (!w->mgmt) {
    fprintf(stderr, "m5s: mgmt.host/mgmt.port: %s\n", err);
    return M5_EIO;
  }
  if (m5_loop_signal(w->loop, SIGTERM, on_signal, run) != 0 ||
      m5_loop_signal(w->loop, SIGINT, on_signal, run) != 0) {
    fprintf(stderr, "m5s: cannot watch SIGTERM/SIGINT\n");
    return M5_EIO;
  }
  return 0;
}

/* The listeners on the main thread before the loops run; transports free on their loop's
 * thread, which has stopped by now. */
static void worker_teardown(worker_t *w) {
  if (w->mgmt) m5_http_server_free(w->mgmt);
  if (w->udp) ue_listener_free(w->udp);
  if (w->tcp) ue_listener_free(w->tcp);
  ue_api_free(w->api);
  admin_free(w->admin);
  if (w->keys) akma_keys_free(w->keys);
  if (w->ctl) m5_mailbox_free(w->ctl, NULL);
  if (w->loop) m5_loop_free(w->loop);
}

static int probe(const char *keys, const char *host, int64_t port, int socktype) {
  char err[160];
  if (m5_net_probe_port(host, (uint16_t)port, socktype, err, sizeof err) == 0) return 0;
  fprintf(stderr, "m5s: %s: %s (another m5s running?); stop it or choose another port\n", keys,
          err);
  return M5_EIO;
}

static int contexts(run_t *run, const server_config_t *cfg) {
  char err[256];
  m5_akma_server_opts_t o = {.fqdns = (const char *const *)cfg->fqdns.v,
                             .n_fqdns = cfg->fqdns.n,
                             .allow_psk_ke = 1,
                             .allow_tls12 = 1};
  run->dtls = m5_akma_server_ctx_new(1, &o, err, sizeof err);
  if (run->dtls) run->tls = m5_akma_server_ctx_new(0, &o, err, sizeof err);
  if (!run->dtls || !run->tls) {
    fprintf(stderr, "m5s: server.fqdns: cannot set up (D)TLS: %s\n", err);
    return M5_ECRYPTO;
  }
  return 0;
}

int server_run(const server_config_t *cfg, registry_t *reg, size_t n_workers) {
  run_t run = {.n = n_workers, .reg = reg};
  int rc = 0;
  atomic_init(&run.ready, 0);
  run.w = calloc(n_workers, sizeof *run.w);
  run.router = router_new(n_workers);
  if (!run.w || !run.router) {
    fprintf(stderr, "m5s: out of memory\n");
    free(run.w);
    router_free(run.router);
    return M5_ENOMEM;
  }
  for (size_t i = 0; i < n_workers; i++)
    run.w[i].index = (unsigned)i;
  rc = probe("ue.host/ue.port", cfg->ue_host, cfg->ue_port, SOCK_DGRAM);
  if (rc == 0) rc = probe("ue.host/ue.port", cfg->ue_host, cfg->ue_port, SOCK_STREAM);
  if (rc == 0) rc = probe("mgmt.host/mgmt.port", cfg->mgmt_host, cfg->mgmt_port, SOCK_STREAM);
  if (rc == 0) rc = contexts(&run, cfg);
  for (size_t i = 0; i < n_workers && rc == 0; i++)
    rc = worker_setup(&run, &run.w[i], cfg);
  if (rc == 0 && registry_start(reg, REG_QUEUE) != 0) {
    fprintf(stderr, "m5s: cannot start the registry's database thread\n");
    rc = M5_EIO;
  }
  if (rc != 0) goto out;
  for (size_t i = 1; i < n_workers; i++) {
    if (pthread_create(&run.w[i].thread, NULL, worker_main, &run.w[i]) != 0) {
      fprintf(stderr, "m5s: cannot start worker thread %zu\n", i);
      rc = M5_EIO;
      break;
    }
    run.w[i].thread_started = 1;
  }
  if (rc == 0) {
    atomic_store(&run.ready, 1);
    M5_LOGI(DOM,
            "ready: MSGin5G-1 on coaps://%s:%lld (udp) and coaps+tcp://%s:%lld, %zu workers, "
            "%zu bindings; management on http://%s:%lld",
            cfg->ue_host, (long long)cfg->ue_port, cfg->ue_host, (long long)cfg->ue_port, n_workers,
            registry_count(reg), cfg->mgmt_host, (long long)cfg->mgmt_port);
  } else {
    drain_all(&run);
  }
  if (m5_loop_run(run.w[0].loop) != 0) {
    M5_LOGE(DOM, "worker 0: event loop failed; draining the other workers");
    drain_all(&run);
    rc = M5_EIO;
  }
  for (size_t i = 1; i < n_workers; i++)
    if (run.w[i].thread_started) pthread_join(run.w[i].thread, NULL);
out:
  /* Replies of jobs still queued need the workers' mailboxes: close before freeing them. */
  registry_close(reg);
  for (size_t i = 0; i < n_workers; i++)
    worker_teardown(&run.w[i]);
  router_free(run.router);
  if (run.dtls) SSL_CTX_free(run.dtls);
  if (run.tls) SSL_CTX_free(run.tls);
  free(run.w);
  return rc;
}
