/* The northbound listener (north.h): its shared context, one HTTP/2 server per worker, the
 * routing, and the checks every request goes through: who is calling (the client
 * certificate) and, on the MSGin5G-3 APIs, the bearer token. */
#include "north_int.h"

#include "core/err.h"
#include "core/log.h"
#include "tls/tls.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define DOM "north"
#define MAX_BODY (64 * 1024)
#define LEEWAY_S 30 /* clock skew allowed on exp, nbf, iat */

/* ---- the shared context ---- */

static void add_own(north_ctx_t *c, const char *host, int64_t port) {
  if (!port || c->n_own == sizeof c->own / sizeof c->own[0]) return;
  char uri[300];
  snprintf(uri, sizeof uri, "https://%s:%lld", host, (long long)port);
  if (registry_uri_hostport(uri, c->own[c->n_own]) == 0) c->n_own++;
}

north_ctx_t *north_ctx_new(const server_config_t *cfg, char *err, size_t errlen) {
  north_ctx_t *c = calloc(1, sizeof *c);
  if (!c) {
    snprintf(err, errlen, "out of memory");
    return NULL;
  }
  m5_tls_opts_t to = {.cert_file = cfg->tls_cert,
                      .key_file = cfg->tls_key,
                      .ca_file = cfg->tls_ca,
                      .verify_peer = 1,
                      .alpn = "h2"};
  char e[256];
  if (!(c->tls = m5_tls_server_ctx_new(&to, e, sizeof e))) {
    snprintf(err, errlen, "tls.cert/tls.key/tls.ca (northbound): %s", e);
    goto fail;
  }
  if (cfg->north_base_url[0])
    snprintf(c->base_url, sizeof c->base_url, "%s", cfg->north_base_url);
  else
    snprintf(c->base_url, sizeof c->base_url, "https://%s:%lld", cfg->fqdns.v[0],
             (long long)cfg->north_port);
  if (strlen(c->base_url) > M5_JWT_URL_MAX) { /* it is the tokens' iss */
    snprintf(err, errlen, "north.base_url: '%s' is longer than %d characters", c->base_url,
             M5_JWT_URL_MAX);
    goto fail;
  }
  c->token_lifetime_s = cfg->oauth_token_lifetime_s;
  if (cfg->oauth_key[0]) {
    if (!(c->key = m5_jwk_load_pem(cfg->oauth_key, e, sizeof e))) {
      snprintf(err, errlen, "oauth.key: %s", e);
      goto fail;
    }
    c->keys = m5_jwks_from_key(c->key);
    c->jwks_json = c->keys ? m5_jwks_to_json(c->keys) : NULL;
    if (!c->jwks_json) {
      snprintf(err, errlen, "oauth.key: out of memory");
      goto fail;
    }
  }
  /* Our own listeners under the names a targetUri could give them. */
  const char *hosts[] = {"localhost", "127.0.0.1", "[::1]", cfg->north_host};
  const int64_t ports[] = {cfg->north_port, cfg->ue_port, cfg->mgmt_port};
  for (size_t p = 0; p < 3; p++) {
    for (size_t h = 0; h < sizeof hosts / sizeof hosts[0]; h++) add_own(c, hosts[h], ports[p]);
    for (size_t f = 0; f < cfg->fqdns.n && f < 1; f++) add_own(c, cfg->fqdns.v[f], ports[p]);
  }
  return c;
fail:
  north_ctx_free(c);
  return NULL;
}

void north_ctx_free(north_ctx_t *c) {
  if (!c) return;
  if (c->tls) SSL_CTX_free(c->tls);
  m5_jwk_free(c->key);
  m5_jwks_free(c->keys);
  free(c->jwks_json);
  free(c);
}

/* ---- answers ---- */

void north_json(m5_http_exchange_t *ex, int status, json_t *o, const m5_http_header_t *hdrs,
                size_t n_hdrs) {
  char *text = o ? json_dumps(o, JSON_COMPACT) : NULL;
  json_decref(o);
  if (!text) {
    m5_http_respond(ex, 500, NULL, NULL, 0);
    return;
  }
  m5_http_header_t h[6] = {{"content-type", NORTH_CT_JSON}};
  size_t n = 1;
  for (size_t i = 0; i < n_hdrs && n < 6; i++) h[n++] = hdrs[i];
  m5_http_respond_headers(ex, status, h, n, text, strlen(text));
  free(text);
}

static const char *status_title(int status) {
  switch (status) {
  case 400:
    return "Bad Request";
  case 401:
    return "Unauthorized";
  case 403:
    return "Forbidden";
  case 404:
    return "Not Found";
  case 405:
    return "Method Not Allowed";
  case 413:
    return "Payload Too Large";
  case 415:
    return "Unsupported Media Type";
  case 503:
    return "Service Unavailable";
  default:
    return "Internal Server Error";
  }
}

static json_t *problem_json(int status, const char *cause, const char *detail, const char *param,
                            const char *reason) {
  json_t *o = json_pack("{s:s, s:i, s:s}", "title", status_title(status), "status", status,
                        "detail", detail);
  if (o && cause) json_object_set_new(o, "cause", json_string(cause));
  if (o && param)
    json_object_set_new(o, "invalidParams",
                        json_pack("[{s:s, s:s}]", "param", param, "reason", reason));
  return o;
}

static void problem_with(m5_http_exchange_t *ex, int status, json_t *o,
                         const m5_http_header_t *extra) {
  char *text = o ? json_dumps(o, JSON_COMPACT) : NULL;
  json_decref(o);
  if (!text) {
    m5_http_respond(ex, 500, NULL, NULL, 0);
    return;
  }
  m5_http_header_t h[2] = {{"content-type", NORTH_CT_PROBLEM}};
  size_t n = 1;
  if (extra) h[n++] = *extra;
  m5_http_respond_headers(ex, status, h, n, text, strlen(text));
  free(text);
}

void north_problem(m5_http_exchange_t *ex, int status, const char *cause, const char *detail,
                   const char *param, const char *reason) {
  problem_with(ex, status, problem_json(status, cause, detail, param, reason), NULL);
}

void north_problem_retry(m5_http_exchange_t *ex, int status, const char *detail,
                         const char *retry_after) {
  m5_http_header_t h = {"retry-after", retry_after};
  problem_with(ex, status, problem_json(status, NULL, detail ? detail : "retry later", NULL, NULL),
               &h);
}

/* ---- who is calling ---- */

int north_caller(north_t *n, m5_http_exchange_t *ex, const m5_http_request_t *req,
                 north_caller_t *c) {
  memset(c, 0, sizeof *c);
  X509 *cert = req->ssl ? SSL_get0_peer_certificate(req->ssl) : NULL;
  if (!cert || m5_tls_peer_san_uri_suffix(req->ssl, NORTH_AS_URI_PREFIX, c->as_svc_id,
                                          sizeof c->as_svc_id) != 0 ||
      !registry_as_id_valid(c->as_svc_id)) {
    north_problem(ex, 403, "NOT_AN_AS",
                  "the client certificate names no Application Server (SAN URI "
                  "urn:msgin5g:as:<asSvcId>)",
                  NULL, NULL);
    return M5_EPERM;
  }
  registry_as_t *as = malloc(sizeof *as);
  int known = as && registry_as_lookup(n->o.reg, c->as_svc_id, as) == 0;
  free(as);
  if (!known) {
    north_problem(ex, 403, "UNKNOWN_AS", "this Application Server is not a configured AS client",
                  NULL, NULL);
    return M5_EPERM;
  }
  if (m5_jwt_x5t_s256(cert, c->x5t) != 0) {
    north_problem(ex, 500, NULL, "cannot hash the client certificate", NULL, NULL);
    return M5_ECRYPTO;
  }
  return 0;
}

/* 401/403 with WWW-Authenticate (RFC 6750 §3); the description is ours, never the token. */
static void bearer_error(m5_http_exchange_t *ex, int status, const char *error, const char *why,
                         const char *scope) {
  char hdr[512];
  if (error)
    snprintf(hdr, sizeof hdr, "Bearer realm=\"msgin5g\", error=\"%s\", error_description=\"%s\"%s%s%s",
             error, why, scope ? ", scope=\"" : "", scope ? scope : "", scope ? "\"" : "");
  else
    snprintf(hdr, sizeof hdr, "Bearer realm=\"msgin5g\"");
  m5_http_header_t h = {"www-authenticate", hdr};
  problem_with(ex, status,
               problem_json(status, status == 403 ? "INSUFFICIENT_SCOPE" : "INVALID_TOKEN", why,
                            NULL, NULL),
               &h);
}

int north_bearer(north_t *n, m5_http_exchange_t *ex, const m5_http_request_t *req,
                 const north_caller_t *c, const char *scope, m5_jwt_claims_t *claims) {
  const north_ctx_t *ctx = n->o.ctx;
  const char *a = req->authorization;
  if (!a || strncasecmp(a, "Bearer ", 7) != 0 || !a[7]) {
    bearer_error(ex, 401, a ? "invalid_request" : NULL,
                 "an Authorization: Bearer access token is required", NULL);
    return M5_EPERM;
  }
  if (!ctx->keys) {
    bearer_error(ex, 401, "invalid_token", "this server has no token issuer configured", NULL);
    return M5_EPERM;
  }
  const char *tok = a + 7;
  m5_jwt_expect_t x = {.issuer = ctx->base_url,
                       .audience = ctx->base_url,
                       .now = (int64_t)time(NULL),
                       .leeway_s = LEEWAY_S,
                       .cert_x5t_s256 = c->x5t,
                       .require_cnf = 1};
  char diag[160];
  m5_jwt_err_t e = m5_jwt_verify(tok, strlen(tok), ctx->keys, &x, claims, diag, sizeof diag);
  if (e != M5_JWT_OK) {
    M5_LOGI(DOM, "%s: token refused: %s", c->as_svc_id, m5_jwt_err_name(e));
    bearer_error(ex, 401, "invalid_token", diag, NULL);
    return M5_EPERM;
  }
  if (strcmp(claims->sub, c->as_svc_id) != 0 || strcmp(claims->client_id, c->as_svc_id) != 0) {
    bearer_error(ex, 401, "invalid_token", "the token was issued to another client", NULL);
    return M5_EPERM;
  }
  if (!m5_jwt_has_scope(claims, scope)) {
    char why[96];
    snprintf(why, sizeof why, "the token lacks the scope %s", scope);
    bearer_error(ex, 403, "insufficient_scope", why, scope);
    return M5_EPERM;
  }
  return 0;
}

json_t *north_body(m5_http_exchange_t *ex, const m5_http_request_t *req) {
  if (!req->content_type ||
      strncasecmp(req->content_type, NORTH_CT_JSON, strlen(NORTH_CT_JSON)) != 0 ||
      (req->content_type[strlen(NORTH_CT_JSON)] && req->content_type[strlen(NORTH_CT_JSON)] != ';')) {
    north_problem(ex, 415, NULL, "the body must be application/json", NULL, NULL);
    return NULL;
  }
  json_error_t je;
  json_t *o = json_loadb((const char *)req->body, req->body_len, JSON_REJECT_DUPLICATES, &je);
  if (!o || !json_is_object(o)) {
    char why[200];
    snprintf(why, sizeof why, "%s", o ? "not a JSON object" : je.text);
    json_decref(o);
    north_problem(ex, 400, "INVALID_MSG_FORMAT", "the body is not a JSON object", "body", why);
    return NULL;
  }
  return o;
}

/* ---- routing ---- */

static void handle(m5_http_exchange_t *ex, const m5_http_request_t *req, void *arg) {
  north_t *n = arg;
  const char *p = req->path;
  if (!strcmp(p, "/oauth2/token")) {
    if (strcmp(req->method, "POST") != 0)
      north_problem(ex, 405, NULL, "the token endpoint accepts POST", NULL, NULL);
    else
      north_token(n, ex, req);
  } else if (!strcmp(p, "/.well-known/jwks.json")) {
    north_jwks(n, ex);
  } else if (!strcmp(p, "/.well-known/oauth-authorization-server")) {
    north_metadata(n, ex);
  } else if (!strncmp(p, NORTH_MSGDELIVERY "/", strlen(NORTH_MSGDELIVERY) + 1)) {
    north_msgdelivery(n, ex, req);
  } else if (!strncmp(p, NORTH_ASREG, strlen(NORTH_ASREG)) &&
             (p[strlen(NORTH_ASREG)] == '\0' || p[strlen(NORTH_ASREG)] == '/')) {
    north_asreg(n, ex, req);
  } else {
    north_problem(ex, 404, "RESOURCE_NOT_FOUND", "no such resource on the northbound API", NULL,
                  NULL);
  }
}

/* ---- life cycle ---- */

static void on_reply(void *msg, void *arg) {
  (void)arg;
  north_asreg_done(msg);
}

/* The drain's done() once the HTTP server drained and no registry job is outstanding. */
static void maybe_idle(north_t *n) {
  if (!n->idle_cb || !n->http_drained || n->inflight) return;
  void (*cb)(void *) = n->idle_cb;
  n->idle_cb = NULL;
  cb(n->idle_arg);
}

void north_job_started(north_t *n) {
  n->inflight++;
}

void north_job_finished(north_t *n) {
  n->inflight--;
  maybe_idle(n);
}

north_t *north_new(m5_loop_t *loop, const north_opts_t *o, char *err, size_t errlen) {
  north_t *n = calloc(1, sizeof *n);
  if (!n) {
    snprintf(err, errlen, "out of memory");
    return NULL;
  }
  n->loop = loop;
  n->o = *o;
  n->replies = m5_mailbox_new(loop, 256, on_reply, n);
  m5_http_server_opts_t so = {.host = o->host,
                              .port = o->port,
                              .tls = o->ctx->tls,
                              .max_body = MAX_BODY,
                              .handler = handle,
                              .arg = n};
  if (!n->replies || !(n->http = m5_http_server_new(loop, &so, err, errlen))) {
    if (!n->replies) snprintf(err, errlen, "out of memory");
    north_free(n);
    return NULL;
  }
  return n;
}

static void http_drained(void *arg) {
  north_t *n = arg;
  n->http_drained = 1;
  maybe_idle(n);
}

void north_drain(north_t *n, uint32_t timeout_ms, void (*done)(void *arg), void *arg) {
  n->idle_cb = done;
  n->idle_arg = arg;
  m5_http_server_drain(n->http, timeout_ms, http_drained, n);
}

/* A registry reply that came after the loop stopped: the job is the first member of its
 * pending record (north_asreg.c). */
static void drop_reply(void *msg) {
  free(msg);
}

void north_free(north_t *n) {
  if (!n) return;
  if (n->http) m5_http_server_free(n->http);
  if (n->replies) m5_mailbox_free(n->replies, drop_reply);
  free(n);
}
