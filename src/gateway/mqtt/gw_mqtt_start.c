/* m5gw_mqtt_adapter's configuration (the mqtt.* keys), start and stop, and the registration
 * of the devices it serves with m5s through the core (gw_adapter.h: m5gw_register, at most
 * 1,000 IDs a call, retried with back-off while the core reports failure). The messages both
 * ways are gw_mqtt.c's. */
#include "gw_mqtt_int.h"

#include "core/err.h"
#include "core/log.h"
#include "core/net.h"
#include "tls/tls.h"

#include <openssl/crypto.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define DOM GWMQ_DOM
#define REG_CHUNK 1000         /* IDs per m5gw_register call (the contract's bound) */
#define REG_RETRY_MAX_MS 60000 /* the back-off of a failed registration, at most */
#define PASSWORD_MAX 1024

#define O(f) offsetof(gwmq_cfg_t, f)
static const m5_cfg_item_t cfg_items[] = {
    {"mqtt.host", M5_CFG_STR, O(host), "127.0.0.1", 0, 0,
     "the broker's IP address (a literal: no DNS lookup on the loop)"},
    {"mqtt.port", M5_CFG_INT, O(port), "1883", 1, 65535, "the broker's port"},
    {"mqtt.tls", M5_CFG_BOOL, O(tls), "false", 0, 0,
     "TLS to the broker (production); plain TCP only for a loopback broker (the demo)"},
    {"mqtt.ca", M5_CFG_STR, O(ca), NULL, 0, 0, "CA bundle the broker's certificate must chain to"},
    {"mqtt.cert", M5_CFG_STR, O(cert), NULL, 0, 0,
     "our client certificate (PEM), if the broker asks"},
    {"mqtt.key", M5_CFG_STR, O(key), NULL, 0, 0, "its private key"},
    {"mqtt.tls_name", M5_CFG_STR, O(tls_name), NULL, 0, 0,
     "the DNS name the broker's certificate must carry (default: mqtt.host)"},
    {"mqtt.client_id", M5_CFG_STR, O(client_id), "msgin5g-gw", 0, 0,
     "our MQTT client identifier (the persistent session's name on the broker)"},
    {"mqtt.username", M5_CFG_STR, O(username), "gateway", 0, 0, "our user name at the broker"},
    {"mqtt.password_file", M5_CFG_STR, O(password_file), NULL, 0, 0,
     "file holding our broker password (first line; mode 0600); empty: no password"},
    {"mqtt.devices", M5_CFG_STRLIST, O(devices), NULL, 0, 0,
     "the device IDs (= UE Service IDs) this gateway serves and registers with m5s (any other "
     "m5s holds for it is de-registered)"},
    {"mqtt.keepalive_s", M5_CFG_INT, O(keepalive_s), "60", 5, 3600, "MQTT keep-alive (seconds)"},
    {"mqtt.session_expiry_s", M5_CFG_INT, O(session_expiry_s), "4294967295", 60, 4294967295,
     "how long the broker keeps our session while we are away (4294967295: forever)"},
    {"mqtt.max_inflight", M5_CFG_INT, O(max_inflight), "64", 1, 65535,
     "downlink publishes waiting for the broker's PUBACK, at most"},
    {"mqtt.receive_max", M5_CFG_INT, O(receive_max), "100", 1, 65535,
     "device messages the broker may hand us before we acknowledge (they wait for the spool)"},
    {"mqtt.queue_max", M5_CFG_INT, O(queue_max), "1000", 1, 1000000,
     "downlinks and reports waiting for an in-flight slot, at most (beyond: RETRY)"},
    {"mqtt.max_payload", M5_CFG_INT, O(max_payload), "65536", 1, 16777216,
     "largest message payload either way (bytes)"},
    {"mqtt.reconnect_min_ms", M5_CFG_INT, O(reconnect_min_ms), "200", 10, 600000,
     "first reconnection delay; doubles up to mqtt.reconnect_max_ms"},
    {"mqtt.reconnect_max_ms", M5_CFG_INT, O(reconnect_max_ms), "30000", 10, 3600000,
     "longest reconnection delay"},
};
#undef O

/* ---- registration of the served devices with m5s (through the core) ---- */

static void reg_send(m5_loop_t *loop, void *arg);

static void reg_done(void *arg, int status, const char *reason) {
  reg_t *r = arg;
  r->waiting = false;
  if (!r->gw) {
    free(r);
    return;
  }
  const gwmq_cfg_t *cfg = r->gw->cfg;
  if (!status) {
    M5_LOGI(DOM, "registered %zu devices with m5s (%s ...)", r->n, cfg->devices.v[r->off]);
    return;
  }
  r->delay_ms = r->delay_ms ? r->delay_ms * 2 : 1000;
  if (r->delay_ms > REG_RETRY_MAX_MS) r->delay_ms = REG_RETRY_MAX_MS;
  M5_LOGE(DOM, "registering devices %s .. %s with m5s failed: %s (%s); again in %u ms",
          cfg->devices.v[r->off], cfg->devices.v[r->off + r->n - 1], m5_strerror(status),
          reason ? reason : "no reason", r->delay_ms);
  r->timer = m5_loop_timer_add(r->gw->loop, r->delay_ms, reg_send, r);
}

static void reg_send(m5_loop_t *loop, void *arg) {
  (void)loop;
  reg_t *r = arg;
  r->timer = 0;
  r->waiting = true;
  int rc = m5gw_register(r->gw->core, (const char *const *)r->gw->cfg->devices.v + r->off, r->n,
                         reg_done, r);
  if (rc) {
    r->waiting = false;
    reg_done(r, rc, "the core did not take the request");
  }
}

/* ---- the adapter's operations ---- */

static int read_password(const char *path, uint8_t *out, size_t *n, char *err, size_t errlen) {
  FILE *f = fopen(path, "r");
  struct stat st;
  if (!f) {
    snprintf(err, errlen, "mqtt.password_file %s: cannot read it", path);
    return M5_EIO;
  }
  if (fstat(fileno(f), &st) || (st.st_mode & 077)) {
    fclose(f);
    snprintf(err, errlen,
             "mqtt.password_file %s: must not be readable by group or others "
             "(chmod 600)",
             path);
    return M5_EPERM;
  }
  char buf[PASSWORD_MAX + 2];
  size_t k = fread(buf, 1, sizeof buf - 1, f);
  fclose(f);
  buf[k] = '\0';
  k = strcspn(buf, "\r\n");
  int rc = 0;
  if (!k || k > PASSWORD_MAX) {
    snprintf(err, errlen, "mqtt.password_file %s: expected one line of 1-%d bytes", path,
             PASSWORD_MAX);
    rc = M5_EINVAL;
  } else {
    memcpy(out, buf, k);
    *n = k;
  }
  OPENSSL_cleanse(buf, sizeof buf);
  return rc;
}

static void gw_free(gw_t *g) {
  gwmq_conn_free(g->conn);
  SSL_CTX_free(g->tls);
  m5_hmap_free(g->devices, NULL);
  free(g->infl);
  free(g->pend);
  free(g->regs);
  free(g);
}

static int start(m5_loop_t *loop, const void *cfgp, m5gw_core_t *core, void **state, char *err,
                 size_t errlen) {
  const gwmq_cfg_t *cfg = cfgp;
  if (cfg->reconnect_min_ms > cfg->reconnect_max_ms) {
    snprintf(err, errlen, "mqtt.reconnect_min_ms must not exceed mqtt.reconnect_max_ms");
    return M5_EINVAL;
  }
  if (!cfg->tls && !m5_net_is_loopback(cfg->host)) {
    snprintf(err, errlen,
             "mqtt.host %s is not a loopback address: set mqtt.tls (plain TCP "
             "carries the password in clear)",
             cfg->host);
    return M5_EINVAL;
  }
  if (cfg->tls && (!cfg->ca || !cfg->ca[0])) {
    snprintf(err, errlen, "mqtt.tls needs mqtt.ca (the CA of the broker's certificate)");
    return M5_EINVAL;
  }
  if (!cfg->client_id || !cfg->client_id[0] || strlen(cfg->client_id) > 64) {
    snprintf(err, errlen, "mqtt.client_id: expected 1-64 characters");
    return M5_EINVAL;
  }
  gw_t *g = calloc(1, sizeof *g);
  if (!g || !(g->devices = m5_hmap_new()) ||
      !(g->infl = calloc((size_t)cfg->max_inflight, sizeof *g->infl)) ||
      !(g->pend = calloc((size_t)cfg->receive_max, sizeof *g->pend))) {
    if (g) gw_free(g);
    snprintf(err, errlen, "out of memory");
    return M5_ENOMEM;
  }
  g->loop = loop;
  g->core = core;
  g->cfg = cfg;
  for (size_t i = 0; i < cfg->devices.n; i++) {
    const char *id = cfg->devices.v[i];
    if (!gwmq_device_id_ok(id)) {
      snprintf(err, errlen,
               "mqtt.devices: '%.130s' is not a device ID (1-128 printable "
               "characters without spaces, '/', '+' or '#')",
               id);
      gw_free(g);
      return M5_EINVAL;
    }
    if (m5_hmap_put(g->devices, id, strlen(id), (void *)1, NULL)) {
      gw_free(g);
      snprintf(err, errlen, "out of memory");
      return M5_ENOMEM;
    }
  }
  if (cfg->tls) {
    m5_tls_opts_t to = {.cert_file = cfg->cert && cfg->cert[0] ? cfg->cert : NULL,
                        .key_file = cfg->key && cfg->key[0] ? cfg->key : NULL,
                        .ca_file = cfg->ca,
                        .verify_peer = 1};
    g->tls = m5_tls_client_ctx_new(&to, err, errlen);
    if (!g->tls) {
      gw_free(g);
      return M5_EINVAL;
    }
  }
  uint8_t pw[PASSWORD_MAX];
  size_t pwn = 0;
  bool has_pw = cfg->password_file && cfg->password_file[0];
  if (has_pw) {
    int rc = read_password(cfg->password_file, pw, &pwn, err, errlen);
    if (rc) {
      gw_free(g);
      return rc;
    }
  }
  gwmq_conn_opts_t o = {
      .host = cfg->host,
      .port = (uint16_t)cfg->port,
      .tls = g->tls,
      .tls_name = cfg->tls_name && cfg->tls_name[0] ? cfg->tls_name : cfg->host,
      .client_id = cfg->client_id,
      .username = cfg->username && cfg->username[0] ? cfg->username : NULL,
      .password = has_pw ? pw : NULL,
      .password_len = pwn,
      .keepalive_s = (uint16_t)cfg->keepalive_s,
      .session_expiry_s = (uint32_t)cfg->session_expiry_s,
      .receive_max = (uint16_t)cfg->receive_max,
      .max_packet = (uint32_t)cfg->max_payload + 65536 + 1024, /* topic, properties */
      .reconnect_min_ms = (uint32_t)cfg->reconnect_min_ms,
      .reconnect_max_ms = (uint32_t)cfg->reconnect_max_ms,
  };
  g->conn = gwmq_conn_new(loop, &o, &gwmq_conn_cbs, g);
  OPENSSL_cleanse(pw, sizeof pw);
  size_t n_regs = (cfg->devices.n + REG_CHUNK - 1) / REG_CHUNK;
  if (!g->conn || (n_regs && !(g->regs = calloc(n_regs, sizeof *g->regs)))) {
    gw_free(g);
    snprintf(err, errlen, "out of memory");
    return M5_ENOMEM;
  }
  for (size_t i = 0; i < n_regs; i++) {
    reg_t *r = calloc(1, sizeof *r);
    if (!r) break; /* the rest: no registration; logged below */
    r->gw = g;
    r->off = i * REG_CHUNK;
    r->n = cfg->devices.n - r->off < REG_CHUNK ? cfg->devices.n - r->off : REG_CHUNK;
    g->regs[g->n_regs++] = r;
    r->timer = m5_loop_timer_add(loop, 0, reg_send, r); /* from the loop, not inside start */
  }
  if (g->n_regs < n_regs) M5_LOGE(DOM, "out of memory: not every device is registered");
  M5_LOGI(DOM, "MQTT adapter: broker %s:%lld (%s), %zu devices", cfg->host, (long long)cfg->port,
          cfg->tls ? "TLS" : "plain TCP on loopback", cfg->devices.n);
  *state = g;
  return 0;
}

static void stop(void *state) {
  gw_t *g = state;
  /* outstanding deliveries: RETRY now (m5s keeps them), before the adapter goes */
  gwmq_fail_all(g, "the gateway is stopping");
  for (up_t *e = g->ups, *next; e; e = next) { /* the core may still call up_cb */
    next = e->next;
    e->gw = NULL;
    e->prev = e->next = NULL;
    if (e->in_table) {
      e->in_table = false;
      if (e->final) free(e);
    }
  }
  for (size_t i = 0; i < g->n_regs; i++) {
    reg_t *r = g->regs[i];
    m5_loop_timer_cancel(g->loop, r->timer);
    if (r->waiting)
      r->gw = NULL; /* freed by reg_done */
    else
      free(r);
  }
  gw_free(g);
}

/* Every device of mqtt.devices (also none): the core de-registers at m5s what it holds for
 * the gateway besides them (gw_adapter.h). */
static int served(void *state, void (*each)(void *arg, const char *ue_svc_id), void *arg) {
  const gw_t *g = state;
  for (size_t i = 0; i < g->cfg->devices.n; i++)
    each(arg, g->cfg->devices.v[i]);
  return 0;
}

const m5gw_adapter_ops_t m5gw_mqtt_adapter = {
    .kind = "mqtt",
    .api = "msgg-n3gdelivery",
    .cfg_items = cfg_items,
    .n_cfg_items = sizeof cfg_items / sizeof *cfg_items,
    .cfg_size = sizeof(gwmq_cfg_t),
    .start = start,
    .deliver = gwmq_deliver,
    .report = gwmq_report,
    .served = served,
    .stop = stop,
};
