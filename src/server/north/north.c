/* The northbound listener (north.h): its shared context, one HTTP/2 server per worker, the
 * routing, and the checks every request goes through: who is calling (the client
 * certificate) and, on the MSGin5G-3 APIs, the bearer token (not needed by an AS client
 * configured with auth mtls). */
#include "server/north/north_int.h"

#include "core/err.h"
#include "core/log.h"
#include "http/problem.h"
#include "tls/tls.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define DOM "north"
#define MAX_BODY (64 * 1024)
#define LEEWAY_S 30 /* clock skew allowed on exp, nbf, iat */

/* ---- the shared context ---- */

/* ---- the server's own listeners (targetUri must not name them) ---- */

static int add_name(north_ctx_t *c, const char *name, size_t n) {
  if (n == 0 || (n == 7 && !strncmp(name, "0.0.0.0", 7)) || (n == 2 && !strncmp(name, "::", 2)))
    return 0;
  char **v = realloc(c->own_names, (c->n_own_names + 1) * sizeof *v);
  if (!v) return M5_ENOMEM;
  c->own_names = v;
  if (!(v[c->n_own_names] = strndup(name, n))) return M5_ENOMEM;
  for (char *p = v[c->n_own_names]; *p; p++) *p = (char)tolower((unsigned char)*p);
  if (n > 1 && v[c->n_own_names][n - 1] == '.') v[c->n_own_names][n - 1] = '\0';
  c->n_own_names++;
  return 0;
}

static int add_addr(north_ctx_t *c, const struct in6_addr *a) {
  struct in6_addr *v = realloc(c->own_addrs, (c->n_own_addrs + 1) * sizeof *v);
  if (!v) return M5_ENOMEM;
  c->own_addrs = v;
  v[c->n_own_addrs++] = *a;
  return 0;
}

static void v4_mapped(struct in_addr v4, struct in6_addr *out) {
  memset(out, 0, sizeof *out);
  out->s6_addr[10] = out->s6_addr[11] = 0xff;
  memcpy(&out->s6_addr[12], &v4, 4);
}

static int own_setup(north_ctx_t *c, const server_config_t *cfg) {
  c->own_ports[0] = (uint16_t)cfg->north_port;
  c->own_ports[1] = (uint16_t)cfg->ue_port;
  c->own_ports[2] = (uint16_t)cfg->mgmt_port;
  int rc = add_name(c, "localhost", 9);
  for (size_t i = 0; rc == 0 && i < cfg->fqdns.n; i++)
    rc = add_name(c, cfg->fqdns.v[i], strlen(cfg->fqdns.v[i]));
  if (rc == 0) rc = add_name(c, cfg->north_host, strlen(cfg->north_host));
  const char *h = c->base_url + 8; /* after https:// */
  size_t hn = h[0] == '[' ? strcspn(h, "]") + 1 : strcspn(h, ":/");
  if (rc == 0) rc = add_name(c, h, hn);
  struct ifaddrs *ifs = NULL;
  if (rc == 0 && getifaddrs(&ifs) == 0) {
    for (struct ifaddrs *i = ifs; rc == 0 && i; i = i->ifa_next) {
      if (!i->ifa_addr) continue;
      struct in6_addr a;
      if (i->ifa_addr->sa_family == AF_INET) {
        v4_mapped(((struct sockaddr_in *)(void *)i->ifa_addr)->sin_addr, &a);
        rc = add_addr(c, &a);
      } else if (i->ifa_addr->sa_family == AF_INET6) {
        rc = add_addr(c, &((struct sockaddr_in6 *)(void *)i->ifa_addr)->sin6_addr);
      }
    }
    freeifaddrs(ifs);
  }
  return rc;
}

/* An IP literal in any spelling inet_aton / inet_pton take, as v4-mapped IPv6; 0 if it is one. */
static int ip_literal(const char *host, struct in6_addr *out) {
  struct in_addr v4;
  if (host[0] == '[') {
    char inner[64];
    size_t n = strlen(host);
    if (n < 3 || n - 2 >= sizeof inner) return M5_EINVAL;
    memcpy(inner, host + 1, n - 2);
    inner[n - 2] = '\0';
    return inet_pton(AF_INET6, inner, out) == 1 ? 0 : M5_EINVAL;
  }
  if (inet_aton(host, &v4) == 0) return M5_EINVAL; /* also 127.1, 2130706433, 0x7f.1 */
  v4_mapped(v4, out);
  return 0;
}

int north_target_is_own(const north_ctx_t *c, const char *uri) {
  char hp[REGISTRY_HOSTPORT_MAX + 1];
  if (m5_net_https_hostport(uri, hp) != 0) return 0;
  char *colon = strrchr(hp, ':');
  long port = colon ? strtol(colon + 1, NULL, 10) : 0;
  int ours = 0;
  for (size_t i = 0; i < 3; i++)
    if (c->own_ports[i] && port == c->own_ports[i]) ours = 1;
  if (!ours) return 0;
  *colon = '\0';
  for (size_t i = 0; i < c->n_own_names; i++)
    if (!strcmp(hp, c->own_names[i])) return 1;
  struct in6_addr a;
  if (ip_literal(hp, &a) != 0) return 0;
  if (IN6_IS_ADDR_LOOPBACK(&a) || IN6_IS_ADDR_UNSPECIFIED(&a)) return 1;
  if (IN6_IS_ADDR_V4MAPPED(&a) && (a.s6_addr[12] == 127 || (!a.s6_addr[12] && !a.s6_addr[13] &&
                                                            !a.s6_addr[14] && !a.s6_addr[15])))
    return 1;
  for (size_t i = 0; i < c->n_own_addrs; i++)
    if (!memcmp(&a, &c->own_addrs[i], sizeof a)) return 1;
  return 0;
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
  if (cfg->oauth_issuer_url[0]) {
    if (strlen(cfg->oauth_issuer_url) > M5_JWT_URL_MAX ||
        strlen(cfg->oauth_jwks_url) >= sizeof c->ext_jwks_url) {
      snprintf(err, errlen, "oauth.issuer_url / oauth.jwks_url: too long");
      goto fail;
    }
    snprintf(c->ext_issuer, sizeof c->ext_issuer, "%s", cfg->oauth_issuer_url);
    snprintf(c->ext_jwks_url, sizeof c->ext_jwks_url, "%s", cfg->oauth_jwks_url);
    snprintf(c->ext_ca, sizeof c->ext_ca, "%s",
             cfg->oauth_jwks_ca[0] ? cfg->oauth_jwks_ca : cfg->tls_ca);
    c->ext_refresh_s = cfg->oauth_jwks_refresh_s;
  }
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
  if (own_setup(c, cfg) != 0) {
    snprintf(err, errlen, "out of memory");
    goto fail;
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
  for (size_t i = 0; i < c->n_own_names; i++) free(c->own_names[i]);
  free(c->own_names);
  free(c->own_addrs);
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


void north_problem(m5_http_exchange_t *ex, int status, const char *cause, const char *detail,
                   const char *param, const char *reason) {
  m5_problem_respond(ex, status, m5_problem_json(status, NULL, cause, detail, param, reason),
                     NULL);
}

void north_problem_retry(m5_http_exchange_t *ex, int status, const char *detail,
                         const char *retry_after) {
  m5_http_header_t h = {"retry-after", retry_after};
  m5_problem_respond(
      ex, status,
      m5_problem_json(status, NULL, NULL, detail ? detail : "retry later", NULL, NULL), &h);
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
  if (registry_as_auth(n->o.reg, c->as_svc_id, &c->auth) != 0) {
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
  m5_problem_respond(ex, status,
                     m5_problem_json(status, NULL,
                                     status == 403 ? "INSUFFICIENT_SCOPE" : "INVALID_TOKEN", why,
                                     NULL, NULL),
                     &h);
}

/* ---- the external issuer's JWKS (per worker, refreshed without blocking) ---- */

#define JWKS_MIN_INTERVAL_MS 5000 /* an unknown kid fetches again at most this often */

static void jwks_fetch(north_t *n);

static void on_jwks(void *arg, int status, long http, const uint8_t *body, size_t len) {
  north_t *n = arg;
  n->fetching = 0;
  if (n->freeing) return;
  const char *url = n->o.ctx->ext_jwks_url;
  if (status != 0 || http != 200) {
    M5_LOGW(DOM, "JWKS %s: %s%ld; keeping the keys we have (%zu)", url,
            status ? m5_strerror(status) : "HTTP ", status ? 0L : http, m5_jwks_count(n->ext_keys));
    return;
  }
  char err[256];
  m5_jwks_t *k = m5_jwks_parse((const char *)body, len, err, sizeof err);
  if (!k) {
    M5_LOGW(DOM, "JWKS %s: %s; keeping the keys we have", url, err);
    return;
  }
  m5_jwks_free(n->ext_keys);
  n->ext_keys = k;
  n->ext_keys_gen++; /* tokens verified with the old set are verified again */
  M5_LOGD(DOM, "JWKS %s: %zu keys", url, m5_jwks_count(k));
}

static void jwks_fetch(north_t *n) {
  uint64_t now = m5_loop_now_ms(n->loop);
  if (!n->jwks_http || n->fetching || (n->last_fetch_ms && now - n->last_fetch_ms < JWKS_MIN_INTERVAL_MS))
    return;
  n->last_fetch_ms = now;
  if (m5_http_client_get(n->jwks_http, n->o.ctx->ext_jwks_url, on_jwks, n) == 0) n->fetching = 1;
}

static void on_refresh(m5_loop_t *loop, void *arg) {
  north_t *n = arg;
  n->last_fetch_ms = 0; /* the periodic fetch is never rate-limited away */
  jwks_fetch(n);
  n->refresh_timer = m5_loop_timer_add(loop, (uint64_t)n->o.ctx->ext_refresh_s * 1000, on_refresh, n);
}

int north_bearer(north_t *n, m5_http_exchange_t *ex, const m5_http_request_t *req,
                 const north_caller_t *c, const char *scope, m5_jwt_claims_t *claims) {
  const north_ctx_t *ctx = n->o.ctx;
  const char *a = req->authorization;
  if (!a && c->auth == REGISTRY_AS_AUTH_MTLS) {
    memset(claims, 0, sizeof *claims);
    M5_LOGD(DOM, "%s: no access token; its client certificate suffices (auth mtls)",
            c->as_svc_id);
    return 0;
  }
  if (!a || strncasecmp(a, "Bearer ", 7) != 0 || !a[7]) {
    bearer_error(ex, 401, a ? "invalid_request" : NULL,
                 "an Authorization: Bearer access token is required", NULL);
    return M5_EPERM;
  }
  if (!ctx->keys && !ctx->ext_issuer[0]) {
    bearer_error(ex, 401, "invalid_token", "this server has no token issuer configured", NULL);
    return M5_EPERM;
  }
  const char *tok = a + 7;
  size_t tok_len = strlen(tok);
  int64_t now = (int64_t)time(NULL);
  uint8_t digest[32];
  m5_jwt_err_t e = M5_JWT_OK;
  char diag[160];
  /* A token verified on this certificate lately is not verified again (north_tokcache.c). */
  int cached = tok_len <= M5_JWT_MAX
                   ? north_tok_lookup(n, tok, tok_len, c->x5t, now, LEEWAY_S, claims, digest)
                   : -1;
  if (cached != 1) {
    m5_jwt_expect_t x = {.issuer = ctx->base_url,
                         .audience = ctx->base_url,
                         .now = now,
                         .leeway_s = LEEWAY_S,
                         .cert_x5t_s256 = c->x5t,
                         .require_cnf = 1};
    int ext = 0;
    e = ctx->keys ? m5_jwt_verify(tok, tok_len, ctx->keys, &x, claims, diag, sizeof diag)
                  : M5_JWT_UNKNOWN_KID;
    /* Not one of ours: the external issuer's, whose tokens need not be bound (a cnf they
     * carry is checked all the same). */
    if ((e == M5_JWT_UNKNOWN_KID || e == M5_JWT_BAD_ISSUER) && ctx->ext_issuer[0]) {
      x.issuer = ctx->ext_issuer;
      x.require_cnf = 0;
      ext = 1;
      if (!n->ext_keys) {
        e = M5_JWT_UNKNOWN_KID;
        snprintf(diag, sizeof diag, "the token issuer's keys are not available yet; retry");
        jwks_fetch(n);
      } else {
        e = m5_jwt_verify(tok, tok_len, n->ext_keys, &x, claims, diag, sizeof diag);
        if (e == M5_JWT_UNKNOWN_KID) jwks_fetch(n); /* a rotated key: fetch, the retry may pass */
      }
    }
    if (e == M5_JWT_OK && cached == 0) north_tok_store(n, digest, c->x5t, ext, claims);
  }
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

int north_media_type_is(const char *content_type, const char *type) {
  size_t n = strlen(type);
  return content_type && strncasecmp(content_type, type, n) == 0 &&
         (content_type[n] == '\0' || content_type[n] == ';');
}

json_t *north_body(m5_http_exchange_t *ex, const m5_http_request_t *req) {
  if (!north_media_type_is(req->content_type, NORTH_CT_JSON)) {
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
  } else if (!strcmp(p, "/.well-known/jwks.json") ||
             !strcmp(p, "/.well-known/oauth-authorization-server")) {
    if (strcmp(req->method, "GET") != 0)
      north_problem(ex, 405, NULL, "this resource accepts GET", NULL, NULL);
    else if (p[13] == 'j')
      north_jwks(n, ex);
    else
      north_metadata(n, ex);
  } else if (!strncmp(p, NORTH_MSGDELIVERY "/", strlen(NORTH_MSGDELIVERY) + 1)) {
    north_msgdelivery(n, ex, req);
  } else if (!strncmp(p, NORTH_TOPICSUB, strlen(NORTH_TOPICSUB)) &&
             (p[strlen(NORTH_TOPICSUB)] == '\0' || p[strlen(NORTH_TOPICSUB)] == '/')) {
    north_topicsub(n, ex, req);
  } else if (!strncmp(p, NORTH_ASREG, strlen(NORTH_ASREG)) &&
             (p[strlen(NORTH_ASREG)] == '\0' || p[strlen(NORTH_ASREG)] == '/')) {
    north_asreg(n, ex, req);
  } else if (!strncmp(p, NORTH_GWREG, strlen(NORTH_GWREG)) &&
             (p[strlen(NORTH_GWREG)] == '\0' || p[strlen(NORTH_GWREG)] == '/')) {
    north_gwreg(n, ex, req);
  } else if (!strncmp(p, NORTH_GM, strlen(NORTH_GM)) &&
             (p[strlen(NORTH_GM)] == '\0' || p[strlen(NORTH_GM)] == '/')) {
    north_gm(n, ex, req);
  } else {
    north_problem(ex, 404, "RESOURCE_NOT_FOUND", "no such resource on the northbound API", NULL,
                  NULL);
  }
}

/* ---- life cycle ---- */

static int is_gwreg(const registry_job_t *j) {
  return j->op == REGISTRY_GW_UE_REG || j->op == REGISTRY_GW_UE_DEREG ||
         j->op == REGISTRY_GW_UE_LIST;
}

static void on_reply(void *msg, void *arg) {
  (void)arg;
  if (((registry_job_t *)msg)->op == REGISTRY_GROUPS)
    north_gm_done(msg);
  else if (is_gwreg(msg))
    north_gwreg_done(msg);
  else
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
  if (o->ctx->ext_issuer[0]) {
    m5_http_client_opts_t ho = {.ca_file = o->ctx->ext_ca, .timeout_ms = 10000,
                                .max_response = M5_JWKS_MAX};
    if (!(n->jwks_http = m5_http_client_new(loop, &ho, err, errlen))) {
      north_free(n);
      return NULL;
    }
    jwks_fetch(n);
    n->refresh_timer =
        m5_loop_timer_add(loop, (uint64_t)o->ctx->ext_refresh_s * 1000, on_refresh, n);
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
 * pending record (north_asreg.c, north_gm.c). */
static void drop_reply(void *msg) {
  if (((registry_job_t *)msg)->op == REGISTRY_GROUPS)
    north_gm_drop(msg);
  else if (is_gwreg(msg))
    north_gwreg_drop(msg);
  else
    free(msg);
}

void north_free(north_t *n) {
  if (!n) return;
  n->freeing = 1;
  if (n->refresh_timer) m5_loop_timer_cancel(n->loop, n->refresh_timer);
  if (n->jwks_http) m5_http_client_free(n->jwks_http);
  m5_jwks_free(n->ext_keys);
  north_tok_free(n);
  if (n->http) m5_http_server_free(n->http);
  if (n->replies) m5_mailbox_free(n->replies, drop_reply);
  free(n);
}
