/* Identifiers as one NATS subject token / KV key token: base64url without padding, canonical
 * (see js_names.h for the choice and the rules it was checked against). */
#include "js/js_names.h"

#include "core/err.h"
#include "crypto/codec.h"
#include "msg/msg.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

_Static_assert(M5_MSG_ADDR_MAX <= M5_JS_ID_MAX && M5_MSG_ID_MAX <= M5_JS_ID_MAX,
               "M5_JS_ID_MAX must cover every identifier encoded into a subject or key");

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
  if (!len) { /* the empty ID: a token must not be empty */
    out[0] = '_';
    out[1] = '\0';
  } else if (m5_b64url_encode(id, len, out, out_size) != M5_OK) {
    return M5_ERANGE;
  }
  if (out_len) *out_len = need;
  return M5_OK;
}

/* A base64url character (RFC 4648 §5 alphabet)? */
static int b64url_char(unsigned char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
         c == '_';
}

int m5_js_name_decode(const char *tok, size_t tok_len, uint8_t *out, size_t out_size,
                      size_t *out_len, char *diag, size_t diag_size) {
  if (!tok || (!out && out_size) || !out_len) return M5_EINVAL;
  *out_len = 0;
  if (tok_len == 0) return say(diag, diag_size, M5_EINVAL, "empty token");
  if (tok_len > M5_JS_TOKEN_MAX)
    return say(diag, diag_size, M5_ERANGE, "token longer than %d characters", M5_JS_TOKEN_MAX);
  if (tok_len == 1 && tok[0] == '_') return M5_OK; /* the empty ID */
  /* The checks that name a position or a length here; the conversion, and its canonical check
   * of the last character's unused bits, is crypto/codec.h's. */
  if (tok_len % 4 == 1)
    return say(diag, diag_size, M5_EINVAL, "token length %zu is not a base64url length", tok_len);
  for (size_t i = 0; i < tok_len; i++)
    if (!b64url_char((unsigned char)tok[i]))
      return say(diag, diag_size, M5_EINVAL, "character %zu is not base64url", i);
  size_t n = tok_len / 4 * 3 + (tok_len % 4 ? tok_len % 4 - 1 : 0);
  if (n > out_size) return say(diag, diag_size, M5_ERANGE, "decoded ID needs %zu bytes", n);
  char text[M5_JS_TOKEN_SIZE];
  memcpy(text, tok, tok_len);
  text[tok_len] = '\0';
  if (m5_b64url_decode(text, out, out_size, out_len) != M5_OK) {
    *out_len = 0;
    return say(diag, diag_size, M5_EINVAL, "character %zu has non-zero unused bits", tok_len - 1);
  }
  return M5_OK;
}
