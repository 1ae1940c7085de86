/* m5s as an OAuth 2.0 authorization server for its own northbound API (architecture §3.2):
 * POST /oauth2/token (RFC 6749 §4.4 client credentials; the client is authenticated by its
 * TLS certificate, RFC 8705 §2.1 tls_client_auth, and the token is bound to that certificate,
 * §3.1 cnf x5t#S256), GET /.well-known/jwks.json (RFC 7517) and
 * GET /.well-known/oauth-authorization-server (RFC 8414). Tokens are RFC 9068 JWTs signed
 * ES256 (src/lib/oauth/jwt.h). A token is never logged. */
#include "server/north/north_int.h"

#include "core/err.h"
#include "core/log.h"
#include "crypto/codec.h"
#include "tls/tls.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define DOM "north"
#define CT_FORM "application/x-www-form-urlencoded"
#define FORM_MAX_PARAMS 64 /* parameters looked at; more is refused */
#define FORM_VALUE_MAX 512 /* of the parameters we use; others are skipped unread */

/* RFC 6749 §5.2 error response. */
static void oauth_error(m5_http_exchange_t *ex, int status, const char *error, const char *why) {
  static const m5_http_header_t no_store[] = {{"cache-control", "no-store"}, {"pragma", "no-cache"}};
  json_t *o = json_pack("{s:s, s:s}", "error", error, "error_description", why);
  if (status == 401) {
    /* the client authenticated by TLS: the challenge names that scheme-less method */
    static const m5_http_header_t h[] = {{"cache-control", "no-store"},
                                         {"pragma", "no-cache"},
                                         {"www-authenticate", "Bearer realm=\"msgin5g\""}};
    north_json(ex, status, o, h, 3);
    return;
  }
  north_json(ex, status, o, no_store, 2);
}

/* ---- application/x-www-form-urlencoded (the WHATWG/HTML form encoding RFC 6749 uses) ---- */

typedef struct {
  char name[32];
  char value[FORM_VALUE_MAX + 1];
} param_t;

static int hexv(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

/* Decodes [p, p+n) into out (cap with the NUL); M5_EINVAL for a bad escape, a NUL or a
 * control character, or too long. */
static int form_decode(const char *p, size_t n, char *out, size_t cap) {
  size_t j = 0;
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)p[i];
    if (c == '+') {
      c = ' ';
    } else if (c == '%') {
      if (i + 2 >= n) return M5_EINVAL;
      int hi = hexv(p[i + 1]), lo = hexv(p[i + 2]);
      if (hi < 0 || lo < 0) return M5_EINVAL;
      c = (unsigned char)(hi * 16 + lo);
      i += 2;
    }
    if (c < 0x20 || c == 0x7f || j + 1 >= cap) return M5_EINVAL;
    out[j++] = (char)c;
  }
  out[j] = '\0';
  return 0;
}

/* The parameters the token endpoint uses; RFC 6749 §3.2 says others are ignored. */
static const char *const known[] = {"grant_type", "scope", "client_id", "client_secret"};
#define N_KNOWN (sizeof known / sizeof known[0])

/* Splits the body (at most FORM_MAX_PARAMS parameters) and keeps the known ones; a known
 * parameter given twice is an error, one with an empty value counts as omitted (RFC 6749
 * §3.1, §3.2). 0, or M5_EINVAL with why. */
static int form_parse(const char *body, size_t len, param_t *ps, size_t *n, const char **why) {
  *n = 0;
  size_t i = 0, seen = 0;
  while (i < len) {
    size_t end = i;
    while (end < len && body[end] != '&') end++;
    if (end > i) {
      if (++seen > FORM_MAX_PARAMS) {
        *why = "too many parameters";
        return M5_EINVAL;
      }
      const char *eq = memchr(body + i, '=', end - i);
      size_t nlen = eq ? (size_t)(eq - (body + i)) : end - i;
      char name[32];
      if (form_decode(body + i, nlen, name, sizeof name) != 0) name[0] = '\0'; /* not ours */
      size_t k = 0;
      while (k < N_KNOWN && strcmp(name, known[k])) k++;
      if (k < N_KNOWN && eq && eq + 1 < body + end) {
        param_t *p = &ps[*n];
        if (*n == N_KNOWN) { /* cannot happen: a repeat is refused below */
          *why = "a parameter given twice";
          return M5_EINVAL;
        }
        snprintf(p->name, sizeof p->name, "%s", name);
        if (form_decode(eq + 1, (size_t)(body + end - eq - 1), p->value, sizeof p->value) != 0) {
          *why = "a parameter that is not form-encoded text, or too long";
          return M5_EINVAL;
        }
        for (size_t j = 0; j < *n; j++)
          if (!strcmp(ps[j].name, p->name)) {
            *why = "a parameter given twice";
            return M5_EINVAL;
          }
        (*n)++;
      }
    }
    i = end + 1;
  }
  return 0;
}

static const char *param(const param_t *ps, size_t n, const char *name) {
  for (size_t i = 0; i < n; i++)
    if (!strcmp(ps[i].name, name)) return ps[i].value;
  return NULL;
}

/* The scopes m5s grants, in the order a granted scope lists them: an AS client's, and a message
 * gateway's (docs/northbound.md "Gateways"). A token request without scope gets all of the
 * client's (every configured AS client may use every AS API; every gateway both of its own). */
static const char *const scopes[] = {NORTH_SCOPE_REG, NORTH_SCOPE_DELIVERY, NORTH_SCOPE_GM,
                                      NORTH_SCOPE_TOPICSUB};
#define N_SCOPES (sizeof scopes / sizeof scopes[0])
static const char *const gw_scopes[] = {NORTH_SCOPE_DELIVERY, NORTH_SCOPE_GWREG};
#define N_GW_SCOPES (sizeof gw_scopes / sizeof gw_scopes[0])
/* every scope the server knows, for its metadata */
static const char *const all_scopes[] = {NORTH_SCOPE_REG, NORTH_SCOPE_DELIVERY, NORTH_SCOPE_GM,
                                         NORTH_SCOPE_TOPICSUB, NORTH_SCOPE_GWREG};
#define N_ALL_SCOPES (sizeof all_scopes / sizeof all_scopes[0])

/* The granted scope: the requested one if every token is one of sc (default: all of sc). */
static int grant_scope(const char *req, const char *const *sc, size_t nsc, char *out,
                       size_t outlen) {
  int want[N_ALL_SCOPES] = {0}, any = 0;
  const char *p = req ? req : "";
  while (*p) {
    size_t k = strcspn(p, " "), i = 0;
    while (i < nsc && !(k == strlen(sc[i]) && !strncmp(p, sc[i], k)))
      i++;
    if (i < nsc)
      want[i] = any = 1;
    else if (k)
      return M5_EINVAL;
    p += k;
    while (*p == ' ') p++;
  }
  if (req && req[0] && !any) return M5_EINVAL;
  size_t off = 0;
  out[0] = '\0';
  for (size_t i = 0; i < nsc; i++)
    if (want[i] || !any) {
      int w = snprintf(out + off, outlen - off, "%s%s", off ? " " : "", sc[i]);
      if (w < 0 || (size_t)w >= outlen - off) return M5_ERANGE;
      off += (size_t)w;
    }
  return 0;
}

void north_token(north_t *n, m5_http_exchange_t *ex, const m5_http_request_t *req) {
  const north_ctx_t *ctx = n->o.ctx;
  if (!ctx->key) {
    north_problem(ex, 404, "RESOURCE_NOT_FOUND",
                  "this server issues no tokens (oauth.key is empty): use the configured issuer",
                  NULL, NULL);
    return;
  }
  if (!north_media_type_is(req->content_type, CT_FORM)) {
    oauth_error(ex, 400, "invalid_request", "the body must be application/x-www-form-urlencoded");
    return;
  }
  param_t ps[FORM_MAX_PARAMS];
  size_t np;
  const char *why = NULL;
  if (form_parse((const char *)req->body, req->body_len, ps, &np, &why) != 0) {
    oauth_error(ex, 400, "invalid_request", why);
    return;
  }
  const char *grant = param(ps, np, "grant_type");
  if (!grant) {
    oauth_error(ex, 400, "invalid_request", "grant_type is missing");
    return;
  }
  if (strcmp(grant, "client_credentials") != 0) {
    oauth_error(ex, 400, "unsupported_grant_type", "only client_credentials is supported");
    return;
  }
  if (param(ps, np, "client_secret") || req->authorization) {
    oauth_error(ex, 400, "invalid_request",
                "clients authenticate with their TLS certificate (tls_client_auth), not a secret");
    return;
  }
  north_caller_t c;
  memset(&c, 0, sizeof c);
  X509 *cert = req->ssl ? SSL_get0_peer_certificate(req->ssl) : NULL;
  /* An Application Server or a message gateway, by its certificate's SAN URI; each gets only
   * its own APIs' scopes. */
  int gw = cert && north_peer_is_gw(req);
  registry_gw_t g;
  int ok = cert &&
           m5_tls_peer_san_uri_suffix(req->ssl, gw ? NORTH_GW_URI_PREFIX : NORTH_AS_URI_PREFIX,
                                      c.as_svc_id, sizeof c.as_svc_id) == 0 &&
           registry_as_id_valid(c.as_svc_id) &&
           (gw ? registry_gw_lookup(n->o.reg, c.as_svc_id, &g) == 0
               : registry_as_target(n->o.reg, c.as_svc_id, NULL, 0) == 0);
  if (!ok) {
    oauth_error(ex, 401, "invalid_client",
                gw ? "the client certificate names no configured message gateway"
                   : "the client certificate names no configured Application Server");
    return;
  }
  const char *cid = param(ps, np, "client_id");
  if (cid && strcmp(cid, c.as_svc_id) != 0) {
    oauth_error(ex, 401, "invalid_client",
                gw ? "client_id is not the certificate's gwId"
                   : "client_id is not the certificate's asSvcId");
    return;
  }
  char scope[M5_JWT_SCOPE_MAX + 1];
  if (grant_scope(param(ps, np, "scope"), gw ? gw_scopes : scopes, gw ? N_GW_SCOPES : N_SCOPES,
                  scope, sizeof scope) != 0) {
    oauth_error(ex, 400, "invalid_scope",
                gw ? "a message gateway's scope may hold only " NORTH_SCOPE_DELIVERY
                     " and " NORTH_SCOPE_GWREG
                   : "scope may hold only " NORTH_SCOPE_REG ", " NORTH_SCOPE_DELIVERY
                     ", " NORTH_SCOPE_GM " and " NORTH_SCOPE_TOPICSUB);
    return;
  }
  if (m5_jwt_x5t_s256(cert, c.x5t) != 0) {
    oauth_error(ex, 500, "server_error", "cannot hash the client certificate");
    return;
  }
  int64_t now = (int64_t)time(NULL);
  m5_jwt_issue_t claims = {.iss = ctx->base_url,
                           .sub = c.as_svc_id,
                           .aud = ctx->base_url,
                           .client_id = c.as_svc_id,
                           .scope = scope,
                           .iat = now,
                           .exp = now + ctx->token_lifetime_s,
                           .cnf_x5t_s256 = c.x5t};
  char *token = NULL;
  if (m5_jwt_issue(ctx->key, &claims, &token) != 0) {
    oauth_error(ex, 500, "server_error", "cannot sign the token");
    return;
  }
  M5_LOGI(DOM, "%s%s: access token issued (scope %s, %lld s)", gw ? "gateway " : "", c.as_svc_id,
          scope, (long long)ctx->token_lifetime_s);
  /* Written by hand so that every copy of the token is ours to wipe (a JWS compact
   * serialisation and the scope words need no JSON escaping). */
  static const m5_http_header_t h[] = {{"content-type", NORTH_CT_JSON},
                                       {"cache-control", "no-store"},
                                       {"pragma", "no-cache"}};
  size_t cap = strlen(token) + strlen(scope) + 128;
  char *text = malloc(cap);
  int len = text ? snprintf(text, cap,
                            "{\"access_token\":\"%s\",\"token_type\":\"Bearer\","
                            "\"expires_in\":%lld,\"scope\":\"%s\"}",
                            token, (long long)ctx->token_lifetime_s, scope)
                 : -1;
  m5_wipe(token, strlen(token));
  free(token);
  if (len < 0 || (size_t)len >= cap) {
    free(text);
    oauth_error(ex, 500, "server_error", "out of memory");
    return;
  }
  m5_http_respond_headers(ex, 200, h, 3, text, (size_t)len);
  m5_wipe(text, (size_t)len);
  free(text);
}

void north_jwks(north_t *n, m5_http_exchange_t *ex) {
  const north_ctx_t *ctx = n->o.ctx;
  if (!ctx->jwks_json) {
    north_problem(ex, 404, "RESOURCE_NOT_FOUND", "this server issues no tokens", NULL, NULL);
    return;
  }
  m5_http_header_t h[] = {{"content-type", "application/jwk-set+json"},
                          {"cache-control", "max-age=300"}};
  m5_http_respond_headers(ex, 200, h, 2, ctx->jwks_json, strlen(ctx->jwks_json));
}

void north_metadata(north_t *n, m5_http_exchange_t *ex) {
  const north_ctx_t *ctx = n->o.ctx;
  if (!ctx->key) {
    north_problem(ex, 404, "RESOURCE_NOT_FOUND", "this server issues no tokens", NULL, NULL);
    return;
  }
  char token_ep[600], jwks[600];
  snprintf(token_ep, sizeof token_ep, "%s/oauth2/token", ctx->base_url);
  snprintf(jwks, sizeof jwks, "%s/.well-known/jwks.json", ctx->base_url);
  json_t *o = json_pack(
      "{s:s, s:s, s:s, s:[s], s:[s], s:[], s:b, s:[]}", "issuer", ctx->base_url,
      "token_endpoint", token_ep, "jwks_uri", jwks, "grant_types_supported", "client_credentials",
      "token_endpoint_auth_methods_supported", "tls_client_auth", "scopes_supported",
      "tls_client_certificate_bound_access_tokens", 1, "response_types_supported");
  json_t *sv = json_object_get(o, "scopes_supported");
  for (size_t i = 0; sv && i < N_ALL_SCOPES; i++)
    json_array_append_new(sv, json_string(all_scopes[i]));
  north_json(ex, 200, o, NULL, 0);
}
