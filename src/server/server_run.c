/* m5s listeners per worker and their graceful drain (architecture §2, §6); the threads,
 * signals and start-up order are core/workers.h's, as for m5-aanf: everything that can fail at
 * start-up (binding, contexts) is created on the main thread before any worker runs.
 *
 * Drain order per worker: ue_api stops taking requests and waits for what it has in flight
 * (registry jobs always, cross-worker results and pushes up to DRAIN_MS), worker 0 also drains
 * the management server and the admin API's registry jobs; then the UE listeners are freed
 * (sessions closed, their closed hooks run) and the loop stops. The registry is closed only
 * after every worker has stopped and before any ue_api is freed, so each DB reply lands in a
 * mailbox that still exists; the message store likewise. */
#include "server/server_run.h"

#include "core/daemon.h"
#include "core/err.h"
#include "core/log.h"
#include "core/workers.h"
#include "crypto/codec.h"
#include "crypto/json_wipe.h"
#include "http/server.h"
#include "server/delivery/fanout.h"
#include "server/delivery/router.h"
#include "server/groups/groups_sync.h"
#include "server/mgmt/admin.h"
#include "server/mgmt/admin_token.h"
#include "server/north/north.h"
#include "server/ue/akma_keys.h"
#include "server/ue/ue_api.h"
#include "server/ue/ue_transport.h"
#include "tls/akma.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <time.h>

#define DOM "m5s"
#define DRAIN_MS 3000 /* exit stays < 5 s */
#define REG_QUEUE 8192

typedef struct run run_t;

typedef struct {
  run_t *run;
  m5_loop_t *loop;
  akma_keys_t *keys;
  src_limits_t *limits; /* per-source bounds of this worker's listeners */
  ue_api_t *api;
  ue_listener_t *udp, *tcp;
  m5_http_server_t *mgmt; /* worker 0 only */
  north_t *north;         /* NULL when north.port is 0 */
  admin_t *admin;         /* worker 0 only */
  int waiting;            /* drain steps still running */
  m5_timer_id_t cookie_timer; /* worker 0: rotates the DTLS cookie key */
  uint32_t cookie_ms;
} worker_t;

struct run {
  m5_workers_t *ws;
  worker_t *w;
  size_t n_workers;
  /* Guards the workers' udp/tcp pointers against the admin's reads (worker 0) while a worker
   * frees its listeners at the end of its drain. */
  pthread_mutex_t lock;
  router_t *router;
  registry_t *reg;
  m5_store_t *store;
  topics_rules_t *topic_rules; /* topics.rules, shared by the workers */
  fanout_pace_t *bc_pace;       /* broadcast.rate, shared by the workers */
  groups_sync_t *groups_sync;   /* on worker 0: the store's sweeps after membership changes */
  SSL_CTX *dtls, *tls;
  north_ctx_t *north; /* NULL when north.port is 0 */
  char admin_token[ADMIN_TOKEN_MAX + 1]; /* until worker 0's admin API has hashed it */
};

static void step_done(void *arg) {
  worker_t *w = arg;
  if (--w->waiting > 0) return;
  pthread_mutex_lock(&w->run->lock);
  ue_listener_t *udp = w->udp, *tcp = w->tcp;
  w->udp = w->tcp = NULL;
  pthread_mutex_unlock(&w->run->lock);
  if (udp) ue_listener_free(udp);
  if (tcp) ue_listener_free(tcp);
  m5_loop_stop(w->loop);
}

/* admin_stats_fn, on worker 0: the live sessions of every worker's listeners and the unexpired
 * registrations. */
static void fill_stats(void *arg, admin_stats_t *out) {
  run_t *run = arg;
  pthread_mutex_lock(&run->lock);
  for (size_t i = 0; i < run->n_workers; i++) {
    out->sessions_dtls += ue_listener_sessions(run->w[i].udp);
    out->sessions_tls += ue_listener_sessions(run->w[i].tcp);
    ue_api_figures_t f;
    if (!run->w[i].api) continue;
    ue_api_figures(run->w[i].api, &f);
    out->accepts_in_flight += f.accepts;
    out->accept_bytes += f.accept_bytes;
    out->requests_waiting += f.waiting;
    out->requests_waiting_bytes += f.waiting_bytes;
    out->requests_waited += f.waited_total;
    out->requests_busy += f.busy_total;
  }
  pthread_mutex_unlock(&run->lock);
  out->registrations = registry_registrations(run->reg, (int64_t)time(NULL));
  /* The tables live until every loop has stopped; their counters are atomics. */
  for (size_t i = 0; i < run->n_workers; i++) {
    const src_limits_t *s = run->w[i].limits;
    out->akma_fetches += src_fetches_count(s);
    out->akma_refused_handshakes += src_refused_count(s, SRC_HANDSHAKES);
    out->akma_refused_handshakes_addr += src_refused_count(s, SRC_HANDSHAKES_ADDR);
    out->akma_refused_handshakes_prefix += src_refused_count(s, SRC_HANDSHAKES_PREFIX);
    out->akma_refused_fetches += src_refused_count(s, SRC_FETCHES);
    out->akma_refused_fetches_addr += src_refused_count(s, SRC_FETCHES_ADDR);
    out->akma_refused_fetches_prefix += src_refused_count(s, SRC_FETCHES_PREFIX);
    out->akma_refused_unknown_rate += src_refused_count(s, SRC_UNKNOWN_RATE);
    out->akma_refused_table_full += src_refused_count(s, SRC_TABLE_FULL);
  }
}

/* Worker 0: a fresh DTLS cookie key every ue.dtls_cookie_rotate_s (the context is shared). */
static void cookie_rotate_cb(m5_loop_t *loop, void *arg) {
  worker_t *w = arg;
  w->cookie_timer = 0;
  if (m5_akma_ctx_rotate_cookie_key(w->run->dtls) != M5_OK)
    M5_LOGW(DOM, "cannot rotate the DTLS cookie key (no random bytes); the old one stays");
  w->cookie_timer = m5_loop_timer_add(loop, w->cookie_ms, cookie_rotate_cb, w);
}

static void on_mgmt_drained(void *arg) {
  worker_t *w = arg;
  admin_when_idle(w->admin, step_done, w);
}

static void on_drain(void *arg, size_t index) {
  worker_t *w = &((worker_t *)arg)[index];
  if (w->cookie_timer) m5_loop_timer_cancel(w->loop, w->cookie_timer);
  w->cookie_timer = 0;
  w->waiting = 1 + (w->mgmt != NULL) + (w->north != NULL);
  if (w->mgmt) m5_http_server_drain(w->mgmt, DRAIN_MS, on_mgmt_drained, w);
  if (w->north) north_drain(w->north, DRAIN_MS, step_done, w);
  ue_api_drain(w->api, DRAIN_MS, step_done, w);
}

static int worker_setup(run_t *run, unsigned index, const server_config_t *cfg) {
  char err[256];
  worker_t *w = &run->w[index];
  w->run = run;
  w->loop = m5_workers_loop(run->ws, index);
  akma_keys_opts_t ko = {.aanf_url = cfg->aanf_url,
                         .cert_file = cfg->tls_cert,
                         .key_file = cfg->tls_key,
                         .ca_file = cfg->tls_ca,
                         .timeout_ms = (uint32_t)cfg->aanf_timeout_ms,
                         .max_fetches = (size_t)cfg->aanf_max_fetches};
  w->keys = akma_keys_new(w->loop, &ko, err, sizeof err);
  if (!w->keys) {
    fprintf(stderr, "m5s: aanf.url / tls.*: %s\n", err);
    return M5_EIO;
  }
  src_limits_opts_t lim = {.hs_per_addr = (uint32_t)cfg->ue_max_handshakes_per_addr,
                           .hs_per_prefix = (uint32_t)cfg->ue_max_handshakes_per_prefix,
                           .fetch_per_addr = (uint32_t)cfg->aanf_max_fetches_per_addr,
                           .fetch_per_prefix = (uint32_t)cfg->aanf_max_fetches_per_prefix,
                           .unknown_burst = (uint32_t)cfg->aanf_unknown_akid_burst,
                           .unknown_per_s = (uint32_t)cfg->aanf_unknown_akid_per_s,
                           .max_nodes = (size_t)cfg->ue_source_table_size};
  w->limits = src_limits_new(&lim);
  if (!w->limits) {
    fprintf(stderr, "m5s: out of memory setting up worker %u\n", index);
    return M5_ENOMEM;
  }
  /* Each worker's accepts, and its deliveries' conclusions, get an equal share of the store's
   * queue: they wait in the worker (back-pressure, ue_wait.c) rather than overflow it. */
  size_t share = (size_t)cfg->store_queue / (2 * run->n_workers);
  ue_api_opts_t ao = {.worker = index,
                      .max_store_inflight = share ? share : 1,
                      .reg = run->reg,
                      .router = run->router,
                      .reg_lifetime_s = cfg->reg_lifetime_s,
                      .store = run->store,
                      .max_ttl_s = cfg->store_max_ttl_s,
                      .in_flight_max_ms = cfg->store_in_flight_max_s * 1000,
                      .tls_cert = cfg->tls_cert,
                      .tls_key = cfg->tls_key,
                      .tls_ca = cfg->tls_ca,
                      .timers = index == 0,
                      .topics = {.rules = run->topic_rules,
                                 .default_expiry_s = cfg->topics_default_expiry_s,
                                 .max_expiry_s = cfg->topics_max_expiry_s,
                                 .max_per_subscriber = (uint64_t)cfg->topics_max_per_subscriber,
                                 .max_subscribers = (uint64_t)cfg->topics_max_subscribers},
                      .bc_pace = run->bc_pace,
                      .bc_rate = (uint32_t)cfg->broadcast_rate};
  ue_api_t *api = ue_api_new(w->loop, &ao);
  pthread_mutex_lock(&run->lock); /* fill_stats reads it from worker 0 */
  w->api = api;
  pthread_mutex_unlock(&run->lock);
  if (!w->api) {
    fprintf(stderr, "m5s: out of memory setting up worker %u\n", index);
    return M5_ENOMEM;
  }
  ue_listener_opts_t lo = {.host = cfg->ue_host,
                           .port = (uint16_t)cfg->ue_port,
                           .ctx = run->dtls,
                           .keys = w->keys,
                           .worker = index,
                           .coap = {.max_body = (size_t)cfg->coap_max_body,
                                    .nstart = (unsigned)cfg->coap_nstart,
                                    .window = (unsigned)cfg->coap_window},
                           .max_sessions = (size_t)cfg->ue_max_sessions,
                           .max_handshakes = (size_t)cfg->ue_max_handshakes,
                           .limits = w->limits,
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
  if (run->north) {
    north_opts_t no = {.ctx = run->north,
                       .reg = run->reg,
                       .api = w->api,
                       .host = cfg->north_host,
                       .port = (uint16_t)cfg->north_port};
    w->north = north_new(w->loop, &no, err, sizeof err);
    if (!w->north) {
      fprintf(stderr, "m5s: north.host/north.port: %s\n", err);
      return M5_EIO;
    }
  }
  if (index != 0) return 0;
  w->cookie_ms = (uint32_t)(cfg->ue_dtls_cookie_rotate_s * 1000);
  w->cookie_timer = m5_loop_timer_add(w->loop, w->cookie_ms, cookie_rotate_cb, w);
  if (!w->cookie_timer) {
    fprintf(stderr, "m5s: out of memory setting up worker %u\n", index);
    return M5_ENOMEM;
  }
  run->groups_sync = groups_sync_new(w->loop, run->reg, run->store);
  if (!run->groups_sync) {
    fprintf(stderr, "m5s: out of memory setting up worker %u\n", index);
    return M5_ENOMEM;
  }
  admin_opts_t mo = {.reg = run->reg,
                     .router = run->router,
                     .ready = m5_workers_ready(run->ws),
                     .store = run->store,
                     .stats = fill_stats,
                     .stats_arg = run,
                     .token = run->admin_token,
                     .topic_rules = run->topic_rules,
                     .api = w->api};
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
  return 0;
}

/* The listeners on the main thread after the loops ran; transports free on their loop's
 * thread, which has stopped by now. Their pushes' callbacks may still submit store jobs, so
 * this runs before the store is closed; the rest (worker_teardown) after it. */
static void worker_teardown_listeners(worker_t *w) {
  if (w->mgmt) m5_http_server_free(w->mgmt);
  north_free(w->north);
  w->north = NULL;
  if (w->udp) ue_listener_free(w->udp);
  if (w->tcp) ue_listener_free(w->tcp);
  w->mgmt = NULL;
  w->udp = w->tcp = NULL;
}

static void worker_teardown(worker_t *w) {
  worker_teardown_listeners(w);
  ue_api_free(w->api);
  admin_free(w->admin);
  if (w->keys) akma_keys_free(w->keys);
  src_limits_free(w->limits);
  w->limits = NULL;
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
  if (cfg->north_port && !(run->north = north_ctx_new(cfg, err, sizeof err))) {
    fprintf(stderr, "m5s: %s\n", err);
    return M5_ECRYPTO;
  }
  return 0;
}

void server_process_init(void) {
  m5_store_process_init();
  m5_json_wipe_install();
}

/* The admin API's token (admin_token.h): read, or written on the first start. */
static int admin_token_setup(run_t *run, const server_config_t *cfg) {
  char err[512];
  int created = 0;
  if (admin_token_load(cfg->mgmt_token_file, run->admin_token, &created, err, sizeof err) != 0) {
    fprintf(stderr, "m5s: %s\n", err);
    return M5_EPERM;
  }
  if (created)
    M5_LOGI(DOM, "mgmt.token_file: wrote a new management token to %s (mode 0600)",
            cfg->mgmt_token_file);
  return 0;
}

/* A binding or registration changed (registry watcher thread; shared registry only, for a change
 * made on any node): the session registered under a generation no longer in force, or replaced
 * by a newer one on another node, is closed, on the worker that holds it (router.c's
 * ROUTER_CLOSE). On one node the admin API closes them itself (admin.c kick). */
static void on_registry_change(void *arg, const char *ue_svc_id, uint64_t gen,
                               registry_change_t why) {
  router_t *router = arg;
  router_loc_t loc;
  if (router_find(router, ue_svc_id, &loc) != 0) return;
  if (why == REGISTRY_CHANGE_BINDING && loc.gen == gen) return; /* registered under it */
  router_msg_t *m = router_msg_new(ROUTER_CLOSE);
  if (m) {
    m->sid = loc.sid;
    snprintf(m->ue_svc_id, sizeof m->ue_svc_id, "%s", ue_svc_id);
  }
  if (!m || router_post(router, loc.worker, m) != 0) {
    M5_LOGW(DOM, "%s: its binding changed, but its session could not be closed", ue_svc_id);
    router_msg_free(m);
    return;
  }
  M5_LOGI(DOM, "%s: %s; closing its session here", ue_svc_id,
          why == REGISTRY_CHANGE_MOVED ? "registered on another node"
                                       : "binding changed in the cluster");
}

int server_run(const server_config_t *cfg, registry_t *reg, m5_store_t *store, size_t n_workers) {
  run_t run = {.reg = reg, .store = store, .n_workers = n_workers};
  run.w = calloc(n_workers, sizeof *run.w);
  run.router = router_new(n_workers);
  char terr[256] = "out of memory";
  run.topic_rules = topics_rules_new((const char *const *)cfg->topics_rules.v, cfg->topics_rules.n,
                                     terr, sizeof terr);
  run.bc_pace = fanout_pace_new((uint32_t)cfg->broadcast_rate);
  if (!run.w || !run.router || !run.topic_rules || !run.bc_pace ||
      pthread_mutex_init(&run.lock, NULL) != 0) {
    fprintf(stderr, "m5s: %s\n", run.topic_rules ? "out of memory" : terr);
    free(run.w);
    router_free(run.router);
    topics_rules_free(run.topic_rules);
    fanout_pace_free(run.bc_pace);
    registry_close(reg);
    m5_store_close(store);
    return M5_ENOMEM;
  }
  int rc = m5_daemon_probe("m5s", "ue.host/ue.port", cfg->ue_host, cfg->ue_port, SOCK_DGRAM);
  if (rc == 0)
    rc = m5_daemon_probe("m5s", "ue.host/ue.port", cfg->ue_host, cfg->ue_port, SOCK_STREAM);
  if (rc == 0)
    rc = m5_daemon_probe("m5s", "mgmt.host/mgmt.port", cfg->mgmt_host, cfg->mgmt_port, SOCK_STREAM);
  if (rc == 0 && cfg->north_port)
    rc = m5_daemon_probe("m5s", "north.host/north.port", cfg->north_host, cfg->north_port,
                         SOCK_STREAM);
  if (rc == 0) rc = admin_token_setup(&run, cfg);
  if (rc == 0) rc = contexts(&run, cfg);
  m5_workers_opts_t wo = {.name = "m5s",
                          .dom = DOM,
                          .drain_msg = "draining, then exiting",
                          .n = n_workers,
                          .drain = on_drain,
                          .arg = run.w};
  if (rc == 0 && !(run.ws = m5_workers_new(&wo))) rc = M5_ENOMEM;
  for (size_t i = 0; i < n_workers && rc == 0; i++)
    rc = worker_setup(&run, (unsigned)i, cfg);
  m5_wipe(run.admin_token, sizeof run.admin_token);
  if (rc == 0) registry_set_change_hook(reg, on_registry_change, run.router);
  if (rc == 0 && registry_start(reg, REG_QUEUE) != 0) {
    fprintf(stderr, "m5s: cannot start the registry's database thread\n");
    rc = M5_EIO;
  }
  if (rc == 0) {
    rc = m5_workers_start(run.ws);
    if (rc == 0)
      M5_LOGI(DOM,
              "ready: MSGin5G-1 on coaps://%s:%lld (udp) and coaps+tcp://%s:%lld, %zu workers, "
              "%zu bindings; management on http://%s:%lld; northbound %s%s",
              cfg->ue_host, (long long)cfg->ue_port, cfg->ue_host, (long long)cfg->ue_port,
              n_workers, registry_count(reg), cfg->mgmt_host, (long long)cfg->mgmt_port,
              run.north ? run.north->base_url : "off", run.north && !run.north->key ? " (no token endpoint)" : "");
    int run_rc = m5_workers_run(run.ws);
    if (run_rc != 0) rc = run_rc;
  }
  /* Replies of jobs still queued need the workers' mailboxes: close before freeing them. */
  registry_close(reg);
  for (size_t i = 0; i < n_workers; i++)
    worker_teardown_listeners(&run.w[i]);
  m5_store_close(store);
  for (size_t i = 0; i < n_workers; i++)
    worker_teardown(&run.w[i]);
  groups_sync_free(run.groups_sync);
  m5_workers_free(run.ws);
  router_free(run.router);
  fanout_pace_free(run.bc_pace);
  topics_rules_free(run.topic_rules);
  if (run.dtls) SSL_CTX_free(run.dtls);
  if (run.tls) SSL_CTX_free(run.tls);
  north_ctx_free(run.north);
  free(run.w);
  pthread_mutex_destroy(&run.lock);
  return rc;
}
