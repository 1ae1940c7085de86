/* Identifiers as one NATS subject token / KV key token: base64url without padding, canonical
 * (see js_names.h for the choice and the rules it was checked against). */
#include "js/js_names.h"

#include "core/err.h"
#include "msg/msg.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

_Static_assert(M5_MSG_ADDR_MAX <= M5_JS_ID_MAX && M5_MSG_ID_MAX <= M5_JS_ID_MAX,
               "M5_JS_ID_MAX must cover every identifier encoded into a subject or key");

static const char b64u[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/* The value of a base64url character, -1 for any other byte. */
static int val(unsigned char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '-') return 62;
  if (c == '_') return 63;
  return -1;
}

__attribute__((format(printf, 4, 5))) static int say(char *diag, size_t diag_size, int rc,
                                                     const char *fmt, ...) {
  if (diag && diag_size) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(diag, diag_size, fmt, ap);
    va_end(ap);
  }
  return rc;
}

int m5_js_name_encode(const void *id, size_t len, char *out, size_t out_size, size_t *out_len) {
  if ((!id && len) || !out) return M5_EINVAL;
  size_t need = len ? (len * 4 + 2) / 3 : 1;
  if (out_size) out[0] = '\0';
  if (len > M5_JS_ID_MAX || out_size < need + 1) return M5_ERANGE;
  const uint8_t *p = id;
  size_t o = 0;
  if (!len) out[o++] = '_'; /* the empty ID: a token must not be empty */
  for (size_t i = 0; i < len; i += 3) {
    uint32_t v = (uint32_t)p[i] << 16;
    if (i + 1 < len) v |= (uint32_t)p[i + 1] << 8;
    if (i + 2 < len) v |= p[i + 2];
    out[o++] = b64u[(v >> 18) & 63];
    out[o++] = b64u[(v >> 12) & 63];
    if (i + 1 < len) out[o++] = b64u[(v >> 6) & 63];
    if (i + 2 < len) out[o++] = b64u[v & 63];
  }
  out[o] = '\0';
  if (out_len) *out_len = o;
  return M5_OK;
}

int m5_js_name_decode(const char *tok, size_t tok_len, uint8_t *out, size_t out_size,
                      size_t *out_len, char *diag, size_t diag_size) {
  if (!tok || (!out && out_size) || !out_len) return M5_EINVAL;
  *out_len = 0;
  if (tok_len == 0) return say(diag, diag_size, M5_EINVAL, "empty token");
  if (tok_len > M5_JS_TOKEN_MAX)
    return say(diag, diag_size, M5_ERANGE, "token longer than %d characters", M5_JS_TOKEN_MAX);
  if (tok_len == 1 && tok[0] == '_') return M5_OK; /* the empty ID */
  if (tok_len % 4 == 1)
    return say(diag, diag_size, M5_EINVAL, "token length %zu is not a base64url length", tok_len);
  size_t n = tok_len / 4 * 3 + (tok_len % 4 ? tok_len % 4 - 1 : 0);
  if (n > out_size) return say(diag, diag_size, M5_ERANGE, "decoded ID needs %zu bytes", n);
  for (size_t i = 0; i < tok_len; i++)
    if (val((unsigned char)tok[i]) < 0)
      return say(diag, diag_size, M5_EINVAL, "character %zu is not base64url", i);
  size_t o = 0;
  for (size_t i = 0; i < tok_len; i += 4) {
    size_t k = tok_len - i < 4 ? tok_len - i : 4;
    uint32_t v = 0;
    for (size_t j = 0; j < 4; j++)
      v = v << 6 | (j < k ? (uint32_t)val((unsigned char)tok[i + j]) : 0u);
    /* k chars carry 6k bits of which 8(k-1) are data: the rest must be zero (canonical). */
    if ((k == 2 && (v & 0xffff)) || (k == 3 && (v & 0xff)))
      return say(diag, diag_size, M5_EINVAL, "character %zu has non-zero unused bits", tok_len - 1);
    out[o++] = (uint8_t)(v >> 16);
    if (k > 2) out[o++] = (uint8_t)(v >> 8);
    if (k > 3) out[o++] = (uint8_t)v;
  }
  *out_len = o;
  return M5_OK;
}
