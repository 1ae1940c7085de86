/* m5-aanf configuration table and the checks beyond what the generic loader does. */
#include "aanf_config.h"

#include "core/daemon.h"
#include "core/err.h"
#include "core/net.h"
#include "crypto/akma.h"

#include <stdio.h>
#include <string.h>

static const m5_cfg_item_t items[] = {
    {"listen.host", M5_CFG_STR, offsetof(aanf_config_t, listen_host), "127.0.0.1", 0, 0,
     "address of the Naanf_AKMA listener (HTTP/2 over mutual TLS)"},
    {"listen.port", M5_CFG_INT, offsetof(aanf_config_t, listen_port), "7443", 1, 65535,
     "port of the Naanf_AKMA listener"},
    {"mgmt.host", M5_CFG_STR, offsetof(aanf_config_t, mgmt_host), "127.0.0.1", 0, 0,
     "address of the management listener (/healthz); must be a loopback address"},
    {"mgmt.port", M5_CFG_INT, offsetof(aanf_config_t, mgmt_port), "9091", 1, 65535,
     "port of the management listener"},
    {"tls.cert", M5_CFG_STR, offsetof(aanf_config_t, tls_cert), "var/pki/aanf.crt", 0, 0,
     "server certificate chain (PEM)"},
    {"tls.key", M5_CFG_STR, offsetof(aanf_config_t, tls_key), "var/pki/aanf.key", 0, 0,
     "server private key (PEM)"},
    {"tls.ca", M5_CFG_STR, offsetof(aanf_config_t, tls_ca), "var/pki/ca.crt", 0, 0,
     "CA bundle that client certificates (AUSF, AFs) must chain to"},
    {"db.path", M5_CFG_STR, offsetof(aanf_config_t, db_path), "var/aanf/aanf.db", 0, 0,
     "SQLite file holding the AKMA contexts (created with its directory)"},
    {"kaf.lifetime_s", M5_CFG_INT, offsetof(aanf_config_t, kaf_lifetime_s), "3600", 1, 604800,
     "K_AF lifetime in seconds (the expiry returned with K_AF)"},
    {"afs.allowed", M5_CFG_STRLIST, offsetof(aanf_config_t, afs_allowed), "localhost", 0, 0,
     "FQDNs of the AFs that may retrieve K_AF (the AF's certificate must carry it as SAN DNS)"},
    {"workers", M5_CFG_INT, offsetof(aanf_config_t, workers), "0", 0, 256,
     "worker threads; 0 = one per CPU this process may run on"},
    {"http.max_body", M5_CFG_INT, offsetof(aanf_config_t, max_body), "16384", 1024, 1048576,
     "largest accepted request body in bytes (larger ones get 413)"},
    {"log.level", M5_CFG_STR, offsetof(aanf_config_t, log_level), "info", 0, 0,
     "error, warn, info or debug"},
};
#define N_ITEMS (sizeof items / sizeof items[0])

static int check(const aanf_config_t *cfg, const char *src, char *err, size_t errlen) {
  if (m5_daemon_check_address(src, "listen.host", cfg->listen_host, err, errlen) != 0)
    return M5_EINVAL;
  /* The management port has no authentication; the architecture (§3.3) requires mutual TLS
   * as soon as it leaves loopback, which this daemon does not offer there, so it refuses. */
  if (!m5_net_is_loopback(cfg->mgmt_host)) {
    snprintf(err, errlen,
             "%s: mgmt.host: '%s' is not a loopback address; the management port has no "
             "authentication, so it may only listen on 127.0.0.0/8 or ::1",
             src, cfg->mgmt_host);
    return M5_EINVAL;
  }
  if (cfg->listen_port == cfg->mgmt_port && !strcmp(cfg->listen_host, cfg->mgmt_host)) {
    snprintf(err, errlen, "%s: mgmt.port: %lld is also listen.port; choose another", src,
             (long long)cfg->mgmt_port);
    return M5_EINVAL;
  }
  if (cfg->afs_allowed.n == 0) {
    snprintf(err, errlen, "%s: afs.allowed: the list is empty, so no AF could get a key", src);
    return M5_EINVAL;
  }
  for (size_t i = 0; i < cfg->afs_allowed.n; i++) {
    if (m5_akma_fqdn_valid(cfg->afs_allowed.v[i]) != 0) {
      snprintf(err, errlen, "%s: afs.allowed: '%s' is not a valid FQDN", src,
               cfg->afs_allowed.v[i]);
      return M5_EINVAL;
    }
  }
  return m5_daemon_check_log_level(src, cfg->log_level, err, errlen);
}

int aanf_config_load(const char *path, aanf_config_t *cfg, char *err, size_t errlen) {
  memset(cfg, 0, sizeof *cfg);
  int rc = m5_config_load(path, items, N_ITEMS, cfg, err, errlen);
  if (rc != 0) return rc;
  return check(cfg, path ? path : "defaults", err, errlen);
}

void aanf_config_free(aanf_config_t *cfg) {
  m5_config_free(items, N_ITEMS, cfg);
}

void aanf_config_print_help(void *stream) {
  m5_config_print_help(items, N_ITEMS, stream);
}
