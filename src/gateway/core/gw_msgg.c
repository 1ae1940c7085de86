/* The MSGG listener: MSGG_L3GDelivery (kind sms) or MSGG_N3GDelivery (kind mqtt) of TS
 * 29.538 cl. 5.6 / 5.7, the gateway's side of MSGin5G-2/-4, on HTTP/2 over TLS:
 *   POST /<api>/v1/deliver-message  (L3gMessageDelivery / N3gMessageDelivery) -> 204
 *   POST /<api>/v1/deliver-report   (DeliveryStatusReport)                    -> 204
 * Only m5s may call it (docs/gateways.md, "Security"): its client certificate must chain to
 * tls.ca and carry m5s.name (checked in the handshake by OpenSSL's host check, and again per
 * request); anything else fails the handshake. A delivery goes to the adapter, whose outcome
 * is the answer: delivered 204, retry later 503 (Retry-After), unknown device 404, content the
 * device side cannot carry 400 (gw_adapter.h). Bodies are checked before the adapter sees
 * them; a bad one gets a ProblemDetails naming the IE. At most msgg.max_inflight deliveries
 * wait for the adapter at once (503 beyond). */
#include "gateway/core/gw_int.h"

#include "core/err.h"
#include "core/log.h"
#include "core/net.h"
#include "http/problem.h"
#include "tls/tls.h"

#include <jansson.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define CT_JSON "application/json"
#define RETRY_AFTER_S "5"

typedef struct gw_dl {
  struct gw_dl *prev, *next;
  m5gw_core_t *core;
  m5_http_exchange_t *ex;
  char msg_id[M5_MSG_ID_MAX + 1];
  char dest[M5_MSG_ADDR_MAX + 1];
  bool answered;
} gw_dl_t;

/* ---- answers ---- */

static void problem(m5_http_exchange_t *ex, int status, const char *cause, const char *detail,
                    const char *param, const char *reason) {
  const m5_http_header_t retry = {"retry-after", RETRY_AFTER_S};
  m5_problem_respond(ex, status, m5_problem_json(status, NULL, cause, detail, param, reason),
                     status == 503 || status == 429 ? &retry : NULL);
}

/* "payload: not base64" -> param "payload" */
static void bad_ie(m5_http_exchange_t *ex, const char *diag) {
  char param[40];
  size_t k = strcspn(diag, ":.");
  snprintf(param, sizeof param, "%.*s", (int)(k < sizeof param ? k : sizeof param - 1), diag);
  problem(ex, 400, strstr(diag, "missing") ? "MANDATORY_IE_MISSING" : "INVALID_MSG_FORMAT", diag,
          param, diag);
}

/* ---- who is calling ---- */

/* 1 if the connection's client certificate carries m5s.name (a DNS SAN, or an IP SAN when
 * the name is an address). The handshake checked it already (verify param); this is the
 * second line. */
static int peer_is_m5s(const m5gw_core_t *core, SSL *ssl) {
  X509 *cert = ssl ? SSL_get0_peer_certificate(ssl) : NULL;
  if (!cert || SSL_get_verify_result(ssl) != X509_V_OK) return 0;
  const char *name = core->cfg->m5s_name;
  if (m5_net_is_address(name)) return X509_check_ip_asc(cert, name, 0) == 1;
  return X509_check_host(cert, name, 0, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS, NULL) == 1;
}

/* ---- deliver-message ---- */

static void dl_unlink(gw_dl_t *d) {
  m5gw_core_t *core = d->core;
  if (d->prev)
    d->prev->next = d->next;
  else
    core->dls = d->next;
  if (d->next) d->next->prev = d->prev;
  core->dl_inflight--;
}

static void on_delivered(void *arg, m5gw_dl_result_t result, const char *reason) {
  gw_dl_t *d = arg;
  if (d->answered) return; /* an adapter calling twice: the first answer stands */
  d->answered = true;
  m5gw_core_t *core = d->core;
  const char *why = reason && *reason ? reason : "no reason given";
  switch (result) {
  case M5GW_DL_DELIVERED:
    core->dl_delivered++;
    M5_LOGI(GW_DOM, "message %s delivered to %s", d->msg_id, d->dest);
    m5_http_respond(d->ex, 204, NULL, NULL, 0);
    break;
  case M5GW_DL_FAILED_UNKNOWN:
    core->dl_failed++;
    M5_LOGI(GW_DOM, "message %s: unknown device %s (%s)", d->msg_id, d->dest, why);
    problem(d->ex, 404, "UNKNOWN_DEVICE", why, "destAddr", "no such device behind this gateway");
    break;
  case M5GW_DL_FAILED_CONTENT:
    core->dl_failed++;
    M5_LOGI(GW_DOM, "message %s to %s cannot be carried: %s", d->msg_id, d->dest, why);
    problem(d->ex, 400, "CONTENT_NOT_SUPPORTED", why, "payload", why);
    break;
  case M5GW_DL_RETRY:
  default:
    core->dl_retry++;
    M5_LOGI(GW_DOM, "message %s to %s: later (%s)", d->msg_id, d->dest, why);
    problem(d->ex, 503, "DEVICE_SIDE_UNAVAILABLE", why, NULL, NULL);
    break;
  }
  dl_unlink(d);
  free(d);
}

static void deliver_message(m5gw_core_t *core, m5_http_exchange_t *ex,
                            const m5_http_request_t *req) {
  m5_msg_t m;
  char diag[160];
  if (m5_msg_parse_as(req->body, req->body_len, M5_MSG_MSG, &m, diag, sizeof diag) != 0) {
    bad_ie(ex, diag);
    return;
  }
  json_t *o = json_loadb((const char *)req->body, req->body_len, 0, NULL);
  bool seg = json_is_true(json_object_get(o, "segInd"));
  json_decref(o);
  if (seg) {
    problem(ex, 400, "INVALID_MSG_FORMAT",
            "segInd: this gateway takes whole messages only (m5s does not segment towards it)",
            "segInd", "segmented delivery not supported");
  } else if (strcmp(m.dest.type, "UE") != 0) {
    problem(ex, 400, "INVALID_MSG_FORMAT",
            "destAddr: a gateway delivers to its devices: addrType must be UE", "destAddr",
            "addrType is not UE");
  } else if (core->dl_inflight >= (size_t)core->cfg->msgg_max_inflight || !core->adapter_live) {
    problem(ex, 503, NULL, "too many deliveries in progress; retry later", NULL, NULL);
  } else {
    gw_dl_t *d = calloc(1, sizeof *d);
    if (!d) {
      problem(ex, 500, NULL, "out of memory", NULL, NULL);
      m5_msg_free(&m);
      return;
    }
    d->core = core;
    d->ex = ex;
    snprintf(d->msg_id, sizeof d->msg_id, "%s", m.msg_id);
    snprintf(d->dest, sizeof d->dest, "%s", m.dest.addr);
    d->next = core->dls;
    if (core->dls) core->dls->prev = d;
    core->dls = d;
    core->dl_inflight++;
    m5gw_msg_t gm = {.ori_type = m.ori.type,
                     .ori_addr = m.ori.addr,
                     .dest_type = m.dest.type,
                     .dest_addr = m.dest.addr,
                     .msg_id = m.msg_id,
                     .app_id = m.app_id[0] ? m.app_id : NULL,
                     .payload = m.payload ? m.payload : (const uint8_t *)"",
                     .payload_len = m.payload_len,
                     .report_requested = m.deliv_st_req};
    M5_LOGD(GW_DOM, "deliver-message %s from %s:%s to %s (%zu bytes)", m.msg_id, m.ori.type,
            m.ori.addr, m.dest.addr, m.payload_len);
    int rc = core->ops->deliver(core->adapter, &gm, on_delivered, d);
    if (rc != 0 && !d->answered) {
      char why[96];
      snprintf(why, sizeof why, "the device side refused the delivery (%s)", m5_strerror(rc));
      on_delivered(d, rc == M5_EINVAL ? M5GW_DL_FAILED_CONTENT : M5GW_DL_RETRY, why);
    }
  }
  m5_msg_free(&m);
}

/* ---- deliver-report ---- */

static void deliver_report(m5gw_core_t *core, m5_http_exchange_t *ex,
                           const m5_http_request_t *req) {
  m5_msg_t m;
  char diag[160];
  if (m5_msg_parse_as(req->body, req->body_len, M5_MSG_IMDN, &m, diag, sizeof diag) != 0) {
    bad_ie(ex, diag);
    return;
  }
  if (strcmp(m.deliv_st, "REPT_DELY_SUCCESS") != 0 && strcmp(m.deliv_st, "REPT_DELY_FAILED") != 0) {
    problem(ex, 400, "INVALID_MSG_FORMAT",
            "delivSt: expected REPT_DELY_SUCCESS or REPT_DELY_FAILED", "delivSt", "unknown value");
  } else if (!core->adapter_live) {
    problem(ex, 503, NULL, "the gateway is stopping; retry later", NULL, NULL);
  } else {
    /* oriAddr is the reporter (the recipient of our device's message), destAddr our device,
     * the message's sender: m5gw_report_t names sender and recipient (gw_adapter.h). */
    m5gw_report_t r = {.ori_type = m.dest.type,
                       .ori_addr = m.dest.addr,
                       .dest_type = m.ori.type,
                       .dest_addr = m.ori.addr,
                       .msg_id = m.msg_id,
                       .deliv_st = m.deliv_st,
                       .failure_cause = m.failure_cause[0] ? m.failure_cause : NULL};
    int rc = core->ops->report(core->adapter, &r);
    core->reports_down++;
    M5_LOGI(GW_DOM, "report by %s:%s on %s from %s:%s: %s%s", m.ori.type, m.ori.addr, m.msg_id,
            m.dest.type, m.dest.addr, m.deliv_st, rc ? " (not taken by the device side)" : "");
    if (rc == 0)
      m5_http_respond(ex, 204, NULL, NULL, 0);
    else if (rc == M5_ENOENT)
      problem(ex, 404, "UNKNOWN_DEVICE", "the report names no device behind this gateway",
              "destAddr", "unknown device");
    else
      problem(ex, 503, NULL, "the device side cannot take the report now", NULL, NULL);
  }
  m5_msg_free(&m);
}

/* ---- routing ---- */

static int media_is_json(const char *ct) {
  size_t n = strlen(CT_JSON);
  return ct && strncasecmp(ct, CT_JSON, n) == 0 && (ct[n] == '\0' || ct[n] == ';');
}

static void handle(m5_http_exchange_t *ex, const m5_http_request_t *req, void *arg) {
  m5gw_core_t *core = arg;
  if (!peer_is_m5s(core, req->ssl)) { /* unreachable while the handshake checks it */
    problem(ex, 403, "NOT_M5S", "only the MSGin5G server may call this gateway", NULL, NULL);
    return;
  }
  char base[64];
  snprintf(base, sizeof base, "/%s/v1/", core->ops->api);
  size_t bl = strlen(base);
  const char *op = strncmp(req->path, base, bl) == 0 ? req->path + bl : NULL;
  int is_msg = op && !strcmp(op, "deliver-message"), is_rep = op && !strcmp(op, "deliver-report");
  if (!is_msg && !is_rep) {
    problem(ex, 404, "RESOURCE_NOT_FOUND", "no such resource on this gateway", NULL, NULL);
  } else if (strcmp(req->method, "POST") != 0) {
    problem(ex, 405, NULL, "this resource accepts POST", NULL, NULL);
  } else if (!media_is_json(req->content_type)) {
    problem(ex, 415, NULL, "the body must be application/json", NULL, NULL);
  } else if (is_msg) {
    deliver_message(core, ex, req);
  } else {
    deliver_report(core, ex, req);
  }
}

/* ---- management: /healthz ---- */

static void handle_mgmt(m5_http_exchange_t *ex, const m5_http_request_t *req, void *arg) {
  m5gw_core_t *core = arg;
  if (strcmp(req->path, "/healthz") != 0) {
    m5_http_respond(ex, 404, NULL, NULL, 0);
    return;
  }
  int ok = core->adapter_live && !core->stopping;
  json_t *o = json_pack(
      "{s:s, s:s, s:s, s:b, s:{s:I, s:I}, s:{s:I, s:I, s:I, s:I}, s:{s:I, s:I, s:I, s:I}}",
      "status", ok ? "ok" : "stopping", "gwId", core->cfg->gw_id, "kind", core->ops->kind, "token",
      core->token != NULL, "spool", "messages", (json_int_t)core->n_msgs, "bytes",
      (json_int_t)core->bytes, "uplink", "sent", (json_int_t)core->up_sent, "accepted",
      (json_int_t)core->up_accepted, "refused", (json_int_t)core->up_refused, "retried",
      (json_int_t)core->up_retried, "downlink", "delivered", (json_int_t)core->dl_delivered,
      "retry", (json_int_t)core->dl_retry, "failed", (json_int_t)core->dl_failed, "reports",
      (json_int_t)core->reports_down);
  char *text = o ? json_dumps(o, JSON_COMPACT) : NULL;
  json_decref(o);
  m5_http_respond(ex, text && ok ? 200 : 503, CT_JSON, text, text ? strlen(text) : 0);
  free(text);
}

/* ---- set-up ---- */

static SSL_CTX *listener_tls(const m5gw_config_t *cfg, char *err, size_t errlen) {
  const char *cert = cfg->msgg_cert, *key = cfg->msgg_key; /* gw_config.c derived them */
  m5_tls_opts_t to = {
      .cert_file = cert, .key_file = key, .ca_file = cfg->tls_ca, .verify_peer = 1, .alpn = "h2"};
  SSL_CTX *ctx = m5_tls_server_ctx_new(&to, err, errlen);
  if (!ctx) return NULL;
  /* m5s connects to this listener as a TLS client: a certificate without serverAuth would fail
   * its handshake at every delivery, so say so now. */
  X509 *x = SSL_CTX_get0_certificate(ctx);
  if (x && (X509_get_extension_flags(x) & EXFLAG_XKUSAGE) &&
      !(X509_get_extended_key_usage(x) & XKU_SSL_SERVER)) {
    snprintf(err, errlen,
             "msgg.cert: %s has no extendedKeyUsage serverAuth, so m5s cannot accept it as the "
             "MSGG listener's certificate; give msgg.cert/msgg.key a server certificate whose "
             "SAN names the --target host",
             cert);
    SSL_CTX_free(ctx);
    return NULL;
  }
  /* Pinning: the client certificate must chain to tls.ca AND name m5s (OpenSSL checks the
   * peer's name in the handshake when the verify parameters carry one). */
  X509_VERIFY_PARAM *vp = SSL_CTX_get0_param(ctx);
  int ok = m5_net_is_address(cfg->m5s_name) ? X509_VERIFY_PARAM_set1_ip_asc(vp, cfg->m5s_name)
                                            : X509_VERIFY_PARAM_set1_host(vp, cfg->m5s_name, 0);
  X509_VERIFY_PARAM_set_hostflags(vp, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
  if (ok != 1) {
    snprintf(err, errlen, "m5s.name: '%s' cannot be used as a certificate name", cfg->m5s_name);
    SSL_CTX_free(ctx);
    return NULL;
  }
  return ctx;
}

/* 0 if the PEM certificate in path carries the SAN URI uri. m5s knows a gateway only by it,
 * so a gateway started with another certificate (an AS's, another gateway's) would be refused
 * at every request: said at start instead. */
static int cert_has_uri(const char *path, const char *uri) {
  FILE *f = fopen(path, "r");
  X509 *x = f ? PEM_read_X509(f, NULL, NULL, NULL) : NULL;
  if (f) fclose(f);
  GENERAL_NAMES *names = x ? X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL) : NULL;
  int found = 0;
  for (int i = 0; names && i < sk_GENERAL_NAME_num(names) && !found; i++) {
    const GENERAL_NAME *g = sk_GENERAL_NAME_value(names, i);
    if (g->type != GEN_URI) continue;
    const unsigned char *d = ASN1_STRING_get0_data(g->d.uniformResourceIdentifier);
    size_t n = (size_t)ASN1_STRING_length(g->d.uniformResourceIdentifier);
    found = n == strlen(uri) && memcmp(d, uri, n) == 0;
  }
  GENERAL_NAMES_free(names);
  X509_free(x);
  return found ? 0 : M5_ENOENT;
}

int gw_msgg_start(m5gw_core_t *core, char *err, size_t errlen) {
  const m5gw_config_t *cfg = core->cfg;
  char uri[128];
  snprintf(uri, sizeof uri, "urn:msgin5g:gw:%s", cfg->gw_id);
  if (cert_has_uri(cfg->tls_cert, uri) != 0) {
    snprintf(err, errlen,
             "tls.cert: %s is not gateway %s's certificate (no SAN URI %s; `m5ctl pki issue "
             "--gw-id %s` issues one)",
             cfg->tls_cert, cfg->gw_id, uri, cfg->gw_id);
    return M5_EINVAL;
  }
  core->msgg_tls = listener_tls(cfg, err, errlen);
  if (!core->msgg_tls) return M5_EINVAL;
  /* m5s delivers only to a listener whose certificate names the gateway it delivers for. */
  if (cert_has_uri(cfg->msgg_cert, uri) != 0) {
    snprintf(err, errlen,
             "msgg.cert: %s is not gateway %s's MSGG listener certificate (no SAN URI %s, "
             "which m5s requires before it delivers; `m5ctl pki issue --gw-id %s` issues one as "
             "msgg-%s.crt)",
             cfg->msgg_cert, cfg->gw_id, uri, cfg->gw_id, cfg->gw_id);
    SSL_CTX_free(core->msgg_tls);
    core->msgg_tls = NULL;
    return M5_EINVAL;
  }
  char e[256];
  m5_http_server_opts_t so = {.host = cfg->msgg_host,
                              .port = (uint16_t)cfg->msgg_port,
                              .tls = core->msgg_tls,
                              .max_body = (size_t)cfg->msgg_max_body,
                              .max_conns = 64, /* m5s's workers, a few connections each */
                              .handler = handle,
                              .arg = core};
  core->msgg = m5_http_server_new(core->loop, &so, e, sizeof e);
  if (!core->msgg) {
    snprintf(err, errlen, "msgg.host/msgg.port: %s", e);
    return M5_EIO;
  }
  m5_http_server_opts_t mo = {.host = cfg->mgmt_host,
                              .port = (uint16_t)cfg->mgmt_port,
                              .allow_http1 = 1,
                              .allow_h2c = 1,
                              .max_body = 4096,
                              .handler = handle_mgmt,
                              .arg = core};
  core->mgmt = m5_http_server_new(core->loop, &mo, e, sizeof e);
  if (!core->mgmt) {
    snprintf(err, errlen, "mgmt.host/mgmt.port: %s", e);
    return M5_EIO;
  }
  return 0;
}

typedef struct {
  int left;
  void (*done)(void *arg);
  void *arg;
} drain_t;

static void one_drained(void *arg) {
  drain_t *d = arg;
  if (--d->left == 0) {
    void (*done)(void *) = d->done;
    void *a = d->arg;
    free(d);
    done(a);
  }
}

void gw_msgg_drain(m5gw_core_t *core, void (*done)(void *arg), void *arg) {
  drain_t *d = malloc(sizeof *d);
  if (!d) {
    done(arg);
    return;
  }
  d->left = 2;
  d->done = done;
  d->arg = arg;
  m5_http_server_drain(core->msgg, 2000, one_drained, d);
  m5_http_server_drain(core->mgmt, 2000, one_drained, d);
}

void gw_msgg_stop(m5gw_core_t *core) {
  /* deliveries an adapter never answered: their exchanges go with the server */
  while (core->dls) {
    gw_dl_t *d = core->dls;
    M5_LOGW(GW_DOM, "message %s: the adapter never answered its delivery", d->msg_id);
    d->answered = true;
    dl_unlink(d);
    free(d);
  }
  if (core->msgg) m5_http_server_free(core->msgg);
  if (core->mgmt) m5_http_server_free(core->mgmt);
  core->msgg = core->mgmt = NULL;
  SSL_CTX_free(core->msgg_tls);
  core->msgg_tls = NULL;
}
