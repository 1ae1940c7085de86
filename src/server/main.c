/* m5s: the MSGin5G Server (TS 23.554) and AKMA AF (TS 33.535). Entry point: arguments,
 * configuration and the registry, then the runtime in server_run.c. */
#include "core/daemon.h"
#include "core/log.h"
#include "js/js_client.h"
#include "server/groups/groups.h"
#include "server/groups/groups_sync.h"
#include "server/registry/rebind_sync.h"
#include "server/registry/registry.h"
#include "server/server_config.h"
#include "server/server_run.h"
#include "store/store.h"

#include <sqlite3.h>
#include <stdio.h>
#include <string.h>

#ifndef M5_VERSION
#define M5_VERSION "unknown"
#endif

static void usage(FILE *out) {
  fputs("usage: m5s [--config FILE]\n"
        "       m5s --help | --version\n\n"
        "MSGin5G Server: MSGin5G-1 (CoAP over DTLS and over TLS, keyed by AKMA) for UEs, and a\n"
        "management port with /healthz and the admin API. Runs with built-in defaults when no\n"
        "configuration file is given; SIGTERM or SIGINT drains and exits 0.\n\n"
        "configuration keys (YAML mappings: tls.cert is cert: under tls:):\n",
        out);
  server_config_print_help(out);
}

/* A start-up failure after the registry opened: everything closed, exit status 1. */
static int stop_early(registry_t *reg, m5_store_t *store, server_config_t *cfg, int shared) {
  if (store) m5_store_close(store);
  registry_close(reg);
  if (shared) m5_js_library_close(); /* after every NATS client */
  server_config_free(cfg);
  return 1;
}

int main(int argc, char **argv) {
  const char *config_path;
  int rc = m5_daemon_args(argc, argv, "m5s", M5_VERSION, usage, &config_path);
  if (rc >= 0) return rc;

  server_config_t cfg;
  char err[512];
  if (server_config_load(config_path, &cfg, err, sizeof err) != 0) {
    fprintf(stderr, "m5s: %s\n", err);
    server_config_free(&cfg);
    return 1;
  }
  m5_daemon_setup(cfg.log_level);
  server_process_init(); /* before the registry opens its SQLite database or JSON is read */
  /* store.sqlite_memstatus: counting back on, still before SQLite initialises */
  if (cfg.store_sqlite_memstatus) (void)sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 1);

  registry_t *reg = registry_open(cfg.db_path, err, sizeof err);
  if (!reg) {
    fprintf(stderr, "m5s: %s\n", err);
    server_config_free(&cfg);
    return 1;
  }
  /* store.backend jetstream: bindings and registrations are the cluster's, in NATS KV */
  int shared = !strcmp(cfg.store_backend, "jetstream");
  if (shared) {
    registry_js_opts_t ro = {.servers = (const char *const *)cfg.store_js_servers.v,
                             .n_servers = cfg.store_js_servers.n,
                             .replicas = (int)cfg.store_js_replicas,
                             .prefix = cfg.store_js_prefix,
                             .node = cfg.node_name,
                             .timeout_ms = cfg.store_js_timeout_ms,
                             .tls_ca = cfg.store_js_tls_ca,
                             .tls_cert = cfg.store_js_tls_cert,
                             .tls_key = cfg.store_js_tls_key,
                             .user = cfg.store_js_user,
                             .password_file = cfg.store_js_password_file,
                             .creds = cfg.store_js_creds};
    if (registry_js_attach(reg, &ro, err, sizeof err) != 0) {
      fprintf(stderr, "m5s: %s\n", err);
      return stop_early(reg, NULL, &cfg, shared);
    }
  }
  policy_t policy; /* who may message whom: unless the admin API stored one */
  server_config_policy(&cfg, &policy);
  registry_policy_configure(reg, &policy);
  groups_limits_t gl = {(size_t)cfg.groups_max_groups, (size_t)cfg.groups_max_members,
                        (size_t)cfg.groups_max_total_members, (size_t)cfg.groups_max_grants,
                        (size_t)cfg.groups_max_groups_per_as,
                        (size_t)cfg.groups_max_members_per_as};
  groups_set_limits(reg, &gl);
  /* The message store: store.path, or store.db beside db.path. */
  char spath[4096];
  if (cfg.store_path && cfg.store_path[0]) {
    snprintf(spath, sizeof spath, "%s", cfg.store_path);
  } else {
    const char *slash = strrchr(cfg.db_path, '/');
    if (slash)
      snprintf(spath, sizeof spath, "%.*s/store.db", (int)(slash - cfg.db_path), cfg.db_path);
    else
      snprintf(spath, sizeof spath, "store.db");
  }
  m5_store_opts_t so;
  m5_store_opts_init(&so);
  so.path = spath;
  if (shared) {
    so.backend = M5_STORE_BACKEND_JETSTREAM;
    so.js.servers = (const char *const *)cfg.store_js_servers.v;
    so.js.n_servers = cfg.store_js_servers.n;
    so.js.replicas = (int)cfg.store_js_replicas;
    so.js.prefix = cfg.store_js_prefix;
    so.js.node = cfg.node_name;
    so.js.timeout_ms = cfg.store_js_timeout_ms;
    so.js.tls_ca = cfg.store_js_tls_ca;
    so.js.tls_cert = cfg.store_js_tls_cert;
    so.js.tls_key = cfg.store_js_tls_key;
    so.js.user = cfg.store_js_user;
    so.js.password_file = cfg.store_js_password_file;
    so.js.creds = cfg.store_js_creds;
  }
  so.max_per_recipient = (uint64_t)cfg.store_max_per_recipient;
  so.max_queued = (uint64_t)cfg.store_max_total;
  so.queue_cap = (size_t)cfg.store_queue;
  so.dedup_window_ms = cfg.store_dedup_window_s * 1000;
  so.max_msgs_per_originator = (uint64_t)cfg.store_max_msgs_per_originator;
  so.max_bytes_per_originator = (uint64_t)cfg.store_max_bytes_per_originator;
  so.max_deliveries_per_originator = (uint64_t)cfg.store_max_deliveries_per_originator;
  so.max_per_recipient_per_originator = (uint64_t)cfg.store_max_per_recipient_per_originator;
  so.max_reports_per_recipient = (uint64_t)cfg.store_max_reports_per_recipient;
  so.report_ttl_s = cfg.store_max_ttl_s;
  /* a report can come as late as its message may live, after it was delivered */
  so.report_window_ms = 2 * cfg.store_max_ttl_s * 1000;
  so.max_tickets_per_originator = (uint64_t)cfg.store_max_report_tickets_per_originator;
  m5_store_t *store = m5_store_open(&so, err, sizeof err);
  if (!store) {
    fprintf(stderr, "m5s: store: %s\n", err);
    return stop_early(reg, NULL, &cfg, shared);
  }
  /* The store catches up with binding changes it missed (a crash between the commits). */
  if (rebind_sync(reg, store, err, sizeof err) != 0) {
    fprintf(stderr, "m5s: %s\n", err);
    return stop_early(reg, store, &cfg, shared);
  }
  /* ... and with membership changes it missed (groups_sync.h). */
  if (groups_sync_startup(reg, store, err, sizeof err) != 0) {
    fprintf(stderr, "m5s: %s\n", err);
    return stop_early(reg, store, &cfg, shared);
  }
  rc = server_run(&cfg, reg, store, m5_daemon_workers(cfg.workers));
  server_config_free(&cfg);
  if (shared) m5_js_library_close(); /* every NATS client is closed (registry, store) */
  if (rc == 0) M5_LOGI("m5s", "stopped");
  return rc == 0 ? 0 : 1;
}
