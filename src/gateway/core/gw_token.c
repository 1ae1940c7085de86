/* The gateway's access token (MSGin5G-2/-4 security, TS 33.501 Annex Y.5; docs/gateways.md,
 * "Security"): OAuth 2.0 client credentials (RFC 6749 §4.4) at m5s's POST /oauth2/token, the
 * gateway authenticated by its certificate (RFC 8705 tls_client_auth), the token bound to that
 * certificate (cnf x5t#S256), so it is worthless without the gateway's key. Scopes
 * msgs-msgdelivery (deliver-ue-message, deliver-report) and msgs-gwueregistration (ours).
 * Renewed at 80% of its lifetime; after a failure fetched again with the uplink's back-off;
 * dropped and fetched again when m5s answers 401. The token is never logged and is wiped when
 * replaced. */
#include "gateway/core/gw_int.h"

#include "core/err.h"
#include "core/log.h"

#include <jansson.h>
#include <openssl/crypto.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define TOKEN_MAX 8192 /* longer than any JWT m5s issues */

static void fetch(m5gw_core_t *core);

static void drop(m5gw_core_t *core) {
  if (core->token) {
    OPENSSL_cleanse(core->token, core->token_len);
    free(core->token);
  }
  core->token = NULL;
  core->token_len = 0;
}

static void on_timer(m5_loop_t *loop, void *arg) {
  (void)loop;
  m5gw_core_t *core = arg;
  core->token_timer = 0;
  fetch(core);
}

static void later(m5gw_core_t *core, uint64_t ms) {
  if (core->token_timer) m5_loop_timer_cancel(core->loop, core->token_timer);
  core->token_timer = m5_loop_timer_add(core->loop, ms, on_timer, core);
}

static void failed(m5gw_core_t *core, const char *why) {
  core->token_backoff_ms = gw_backoff_next(core->cfg, core->token_backoff_ms);
  M5_LOGW(GW_DOM, "no access token yet (%s); asking again in %llu ms", why,
          (unsigned long long)core->token_backoff_ms);
  later(core, core->token_backoff_ms);
}

static void on_token(void *arg, int status, long http, const uint8_t *body, size_t len) {
  m5gw_core_t *core = arg;
  core->token_busy = false;
  if (core->stopping) return;
  char why[512];
  if (status != 0) {
    snprintf(why, sizeof why, "m5s unreachable at %.300s (%s)", core->url_token,
             m5_strerror(status));
    failed(core, why);
    return;
  }
  if (http != 200) {
    char detail[200];
    gw_problem_text(body, len, http, detail, sizeof detail);
    snprintf(why, sizeof why, "m5s refused a token: %ld %s", http, detail);
    failed(core, why);
    return;
  }
  json_t *o = json_loadb((const char *)body, len, 0, NULL);
  const char *tok = json_string_value(json_object_get(o, "access_token"));
  const char *type = json_string_value(json_object_get(o, "token_type"));
  json_t *exp = json_object_get(o, "expires_in");
  size_t tlen = tok ? strlen(tok) : 0;
  if (!tok || !tlen || tlen > TOKEN_MAX || !type || strcasecmp(type, "Bearer") != 0 ||
      !json_is_integer(exp) || json_integer_value(exp) < 1) {
    json_decref(o); /* the wiping allocator hooks clear the token's copy */
    failed(core, "m5s's token response lacks access_token, token_type Bearer or expires_in");
    return;
  }
  char *copy = malloc(tlen + 1);
  if (!copy) {
    json_decref(o);
    failed(core, "out of memory");
    return;
  }
  memcpy(copy, tok, tlen + 1);
  json_int_t lifetime = json_integer_value(exp);
  json_decref(o);
  drop(core);
  core->token = copy;
  core->token_len = tlen;
  core->token_backoff_ms = 0;
  core->tokens_fetched++;
  /* renewed at 80% of its lifetime, so a request never leaves with a token about to expire */
  uint64_t renew_ms = (uint64_t)lifetime * 800;
  if (renew_ms < 1000) renew_ms = 1000;
  later(core, renew_ms);
  M5_LOGI(GW_DOM, "access token obtained (%lld s, renewed in %llu s)", (long long)lifetime,
          (unsigned long long)(renew_ms / 1000));
  gw_on_token(core);
}

static void fetch(m5gw_core_t *core) {
  if (core->token_busy || core->stopping) return;
  static const char form[] = "grant_type=client_credentials&scope=msgs-msgdelivery%20"
                             "msgs-gwueregistration";
  m5_http_req_opts_t o = {.method = "POST", .content_type = "application/x-www-form-urlencoded"};
  /* client_id is the certificate's gwId; sent so that m5s can check they agree */
  char body[sizeof form + 16 + 80];
  snprintf(body, sizeof body, "%s&client_id=%s", form, core->cfg->gw_id);
  int rc =
      m5_http_client_request(core->http, core->url_token, &o, body, strlen(body), on_token, core);
  if (rc != 0) {
    failed(core, m5_strerror(rc));
    return;
  }
  core->token_busy = true;
}

void gw_token_start(m5gw_core_t *core) {
  fetch(core);
}

const char *gw_token(const m5gw_core_t *core) {
  return core->token;
}

void gw_token_rejected(m5gw_core_t *core) {
  drop(core);
  if (core->token_timer) m5_loop_timer_cancel(core->loop, core->token_timer);
  core->token_timer = 0;
  fetch(core);
}

void gw_token_stop(m5gw_core_t *core) {
  if (core->token_timer) m5_loop_timer_cancel(core->loop, core->token_timer);
  core->token_timer = 0;
  drop(core);
}
