/* m5gw's configuration table and checks (gw_config.h). The file holds the core's keys and
 * the adapter's "<kind>.*" keys; which adapter's depends on `kind`, a key of the same file, so
 * it is read twice: first with every built-in adapter's keys (to learn the kind), then with
 * the chosen adapter's only, so that another kind's key is an "unknown key" error naming its
 * line. */
#include "gateway/core/gw_config.h"

#include "core/daemon.h"
#include "core/err.h"
#include "core/net.h"
#include "msg/msg.h"

#include <stdalign.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#define C(f) offsetof(m5gw_config_t, f)
static const m5_cfg_item_t core_items[] = {
    {"gw_id", M5_CFG_STR, C(gw_id), NULL, 0, 0,
     "required: this gateway's gwId (1-64 of A-Z a-z 0-9 . _ -), the SAN URI "
     "urn:msgin5g:gw:<gw_id> of tls.cert and the --gw-id of `m5ctl gateway add`"},
    {"kind", M5_CFG_STR, C(kind), NULL, 0, 0,
     "required: sms (Legacy 3GPP Message Gateway, MSGG_L3GDelivery) or mqtt (Non-3GPP Message "
     "Gateway, MSGG_N3GDelivery); the <kind>.* keys below configure its adapter"},
    {"m5s.url", M5_CFG_STR, C(m5s_url), "https://localhost:8443", 0, 0,
     "m5s's northbound base URL (https://host:port): tokens, registrations, deliver-ue-message"},
    {"m5s.name", M5_CFG_STR, C(m5s_name), NULL, 0, 0,
     "DNS name or IP address m5s's client certificate must carry (SAN) when it calls the MSGG "
     "listener; empty = the host of m5s.url"},
    {"tls.cert", M5_CFG_STR, C(tls_cert), NULL, 0, 0,
     "the gateway's certificate (PEM, SAN URI urn:msgin5g:gw:<gw_id>, from `m5ctl pki issue "
     "--gw-id`); empty = var/pki/gw-<gw_id>.crt"},
    {"tls.key", M5_CFG_STR, C(tls_key), NULL, 0, 0,
     "its private key (PEM); empty = var/pki/gw-<gw_id>.key"},
    {"tls.ca", M5_CFG_STR, C(tls_ca), "var/pki/ca.crt", 0, 0,
     "CA bundle m5s's certificate must chain to, both ways"},
    {"msgg.host", M5_CFG_STR, C(msgg_host), "127.0.0.1", 0, 0,
     "address of the MSGG listener (HTTP/2 over TLS, only m5s's certificate accepted)"},
    {"msgg.port", M5_CFG_INT, C(msgg_port), "9443", 1, 65535,
     "port of the MSGG listener (the HOST:PORT given to `m5ctl gateway add --target`)"},
    {"msgg.cert", M5_CFG_STR, C(msgg_cert), NULL, 0, 0,
     "server certificate of the MSGG listener (PEM, extendedKeyUsage serverAuth, SAN naming the "
     "--target host and SAN URI urn:msgin5g:gw:<gw_id>, from `m5ctl pki issue --gw-id`); "
     "empty = var/pki/msgg-<gw_id>.crt"},
    {"msgg.key", M5_CFG_STR, C(msgg_key), NULL, 0, 0,
     "its private key; empty = var/pki/msgg-<gw_id>.key"},
    {"msgg.max_body", M5_CFG_INT, C(msgg_max_body), "262144", 1024, 16777216,
     "largest request body m5s may send, bytes (larger: 413)"},
    {"msgg.max_inflight", M5_CFG_INT, C(msgg_max_inflight), "1024", 1, 65536,
     "downlink deliveries waiting for the adapter at once; more get 503 with Retry-After"},
    {"mgmt.host", M5_CFG_STR, C(mgmt_host), "127.0.0.1", 0, 0,
     "address of the management listener (/healthz); must be a loopback address"},
    {"mgmt.port", M5_CFG_INT, C(mgmt_port), "9095", 1, 65535, "port of the management listener"},
    {"spool.path", M5_CFG_STR, C(spool_path), NULL, 0, 0,
     "SQLite file of the uplink spool (created with its directory); empty = "
     "var/gw/<gw_id>/spool.db"},
    {"spool.max_msgs", M5_CFG_INT, C(spool_max_msgs), "10000", 1, 1000000,
     "messages and reports the spool holds at most; more are refused (the device side retries)"},
    {"spool.max_bytes", M5_CFG_INT, C(spool_max_bytes), "16777216", 65536, 1073741824,
     "bytes of bodies the spool holds at most (they are also kept in memory)"},
    {"uplink.window", M5_CFG_INT, C(up_window), "8", 1, 256,
     "spooled messages being sent to m5s at once, oldest first"},
    {"uplink.timeout_ms", M5_CFG_INT, C(up_timeout_ms), "10000", 100, 300000,
     "one request to m5s (token, registration, uplink)"},
    {"uplink.retry_min_ms", M5_CFG_INT, C(up_retry_min_ms), "1000", 10, 600000,
     "first wait after m5s could not be reached or answered 429/5xx; doubles each time"},
    {"uplink.retry_max_ms", M5_CFG_INT, C(up_retry_max_ms), "60000", 10, 3600000,
     "longest wait between attempts"},
    {"uplink.max_payload", M5_CFG_INT, C(up_max_payload), "65536", 1, 1048576,
     "largest payload of one uplink message, bytes (larger: refused)"},
    {"log.level", M5_CFG_STR, C(log_level), "info", 0, 0, "error, warn, info or debug"},
};
#undef C
#define N_CORE (sizeof core_items / sizeof core_items[0])

static size_t align_up(size_t n) {
  size_t a = alignof(max_align_t);
  return (n + a - 1) / a * a;
}

/* A table of the core's items and those of the adapters in ops[0..n_ops) (each shifted to its
 * place after the core's struct), and the block they fill; adapter i's part at *off[i]. */
static int build(const m5gw_adapter_ops_t *const *ops, size_t n_ops, m5_cfg_item_t **items,
                 size_t *n_items, void **block, size_t *offs) {
  size_t n = N_CORE, size = align_up(sizeof(m5gw_config_t));
  for (size_t i = 0; i < n_ops; i++) {
    offs[i] = size;
    size = align_up(size + ops[i]->cfg_size);
    n += ops[i]->n_cfg_items;
  }
  *items = calloc(n, sizeof **items);
  *block = calloc(1, size);
  if (!*items || !*block) {
    free(*items);
    free(*block);
    return M5_ENOMEM;
  }
  memcpy(*items, core_items, sizeof core_items);
  size_t k = N_CORE;
  for (size_t i = 0; i < n_ops; i++)
    for (size_t j = 0; j < ops[i]->n_cfg_items; j++) {
      (*items)[k] = ops[i]->cfg_items[j];
      (*items)[k++].offset += offs[i];
    }
  *n_items = n;
  return 0;
}

/* Replaces an empty string setting with pre + gw_id + post. */
static int derive(char **field, const char *pre, const char *gw_id, const char *post) {
  if (*field && **field) return 0;
  size_t n = strlen(pre) + strlen(gw_id) + strlen(post) + 1;
  char *s = malloc(n);
  if (!s) return M5_ENOMEM;
  snprintf(s, n, "%s%s%s", pre, gw_id, post);
  free(*field);
  *field = s;
  return 0;
}

/* m5s.name from m5s.url's host:port: the host without the port (and an IPv6's brackets). */
static int derive_name(m5gw_config_t *c, const char *hostport) {
  if (c->m5s_name && *c->m5s_name) return 0;
  const char *colon = strrchr(hostport, ':');
  size_t n = colon ? (size_t)(colon - hostport) : strlen(hostport);
  if (n >= 2 && hostport[0] == '[') {
    hostport++;
    n -= 2;
  }
  char *s = strndup(hostport, n);
  if (!s) return M5_ENOMEM;
  free(c->m5s_name);
  c->m5s_name = s;
  return 0;
}

static int check(m5gw_config_t *c, const char *src, char *err, size_t errlen) {
  if (!c->gw_id || !m5_msg_as_id_valid(c->gw_id)) {
    snprintf(err, errlen, "%s: gw_id: %s", src,
             c->gw_id && *c->gw_id ? "expected 1 to 64 of the characters A-Z a-z 0-9 . _ -"
                                   : "required (this gateway's gwId)");
    return M5_EINVAL;
  }
  char hostport[M5_NET_HOSTPORT_MAX + 1];
  if (m5_net_https_hostport(c->m5s_url, hostport) != 0) {
    snprintf(err, errlen, "%s: m5s.url: expected https://host[:port], got '%s'", src, c->m5s_url);
    return M5_EINVAL;
  }
  size_t ul = strlen(c->m5s_url);
  while (ul > 0 && c->m5s_url[ul - 1] == '/')
    c->m5s_url[--ul] = '\0'; /* paths are appended */
  if (derive_name(c, hostport) || derive(&c->tls_cert, "var/pki/gw-", c->gw_id, ".crt") ||
      derive(&c->tls_key, "var/pki/gw-", c->gw_id, ".key") ||
      derive(&c->msgg_cert, "var/pki/msgg-", c->gw_id, ".crt") ||
      derive(&c->msgg_key, "var/pki/msgg-", c->gw_id, ".key") ||
      derive(&c->spool_path, "var/gw/", c->gw_id, "/spool.db")) {
    snprintf(err, errlen, "%s: out of memory", src);
    return M5_ENOMEM;
  }
  if (m5_daemon_check_address(src, "msgg.host", c->msgg_host, err, errlen) != 0) return M5_EINVAL;
  if (!m5_net_is_loopback(c->mgmt_host)) {
    snprintf(err, errlen,
             "%s: mgmt.host: '%s' is not a loopback address; the management port has no "
             "authentication, so it may only listen on 127.0.0.0/8 or ::1",
             src, c->mgmt_host);
    return M5_EINVAL;
  }
  if (c->mgmt_port == c->msgg_port) {
    snprintf(err, errlen, "%s: mgmt.port: %lld is also msgg.port; choose another", src,
             (long long)c->mgmt_port);
    return M5_EINVAL;
  }
  if (c->up_retry_min_ms > c->up_retry_max_ms) {
    snprintf(err, errlen, "%s: uplink.retry_min_ms: %lld is above uplink.retry_max_ms (%lld)", src,
             (long long)c->up_retry_min_ms, (long long)c->up_retry_max_ms);
    return M5_EINVAL;
  }
  if (c->up_max_payload * 2 + 4096 > c->spool_max_bytes) {
    snprintf(err, errlen,
             "%s: spool.max_bytes: %lld cannot hold one message of uplink.max_payload (%lld "
             "bytes, base64 in its body)",
             src, (long long)c->spool_max_bytes, (long long)c->up_max_payload);
    return M5_EINVAL;
  }
  return m5_daemon_check_log_level(src, c->log_level, err, errlen);
}

int m5gw_config_load(const char *path, m5gw_cfg_t *out, char *err, size_t errlen) {
  memset(out, 0, sizeof *out);
  const char *src = path ? path : "defaults";
  size_t n_all = 0;
  while (m5gw_kinds[n_all])
    n_all++;
  size_t offs[8];
  if (n_all > sizeof offs / sizeof offs[0]) n_all = sizeof offs / sizeof offs[0];
  /* Pass 1: every adapter's keys, to read `kind`. */
  m5_cfg_item_t *items;
  size_t n;
  void *block;
  if (build(m5gw_kinds, n_all, &items, &n, &block, offs) != 0) {
    snprintf(err, errlen, "%s: out of memory", src);
    return M5_ENOMEM;
  }
  int rc = m5_config_load(path, items, n, block, err, errlen);
  char kind[32] = "";
  if (rc == 0) {
    const m5gw_config_t *c = block;
    if (!c->kind || !*c->kind) {
      snprintf(err, errlen, "%s: kind: required: one of %s", src, m5gw_kinds_built());
      rc = M5_EINVAL;
    } else if (!m5gw_kind_ops(c->kind)) {
      snprintf(err, errlen, "%s: kind: '%.32s' is not a kind this m5gw was built with (%s)", src,
               c->kind, m5gw_kinds_built());
      rc = M5_EINVAL;
    } else {
      snprintf(kind, sizeof kind, "%s", c->kind);
    }
    m5_config_free(items, n, block);
  }
  free(items);
  free(block);
  if (rc != 0) return rc;
  /* Pass 2: the core's keys and this kind's. */
  const m5gw_adapter_ops_t *ops = m5gw_kind_ops(kind);
  if (build(&ops, 1, &out->items, &out->n_items, &out->block, offs) != 0) {
    snprintf(err, errlen, "%s: out of memory", src);
    return M5_ENOMEM;
  }
  rc = m5_config_load(path, out->items, out->n_items, out->block, err, errlen);
  if (rc != 0) {
    free(out->items);
    free(out->block);
    memset(out, 0, sizeof *out);
    return rc;
  }
  out->core = out->block;
  out->ops = ops;
  out->adapter_cfg = (char *)out->block + offs[0];
  rc = check(out->core, src, err, errlen);
  if (rc != 0) m5gw_config_free(out);
  return rc;
}

void m5gw_config_free(m5gw_cfg_t *cfg) {
  if (cfg->block) m5_config_free(cfg->items, cfg->n_items, cfg->block);
  free(cfg->items);
  free(cfg->block);
  memset(cfg, 0, sizeof *cfg);
}

void m5gw_config_print_help(FILE *out) {
  m5_config_print_help(core_items, N_CORE, out);
  for (size_t i = 0; m5gw_kinds[i]; i++) {
    fprintf(out, "\nkind %s (adapter keys; only with kind: %s):\n", m5gw_kinds[i]->kind,
            m5gw_kinds[i]->kind);
    m5_config_print_help(m5gw_kinds[i]->cfg_items, m5gw_kinds[i]->n_cfg_items, out);
  }
}
