/* The 3GPP generic KDF, TS 33.220 Annex B.2 (msgin5g-security.md §2):
 * HMAC-SHA-256(Key, FC || P0 || L0 || ... || Pn || Ln), Li two octets big-endian.
 * Unlike open5gs' ogs_kdf_common() the parameter count is explicit, so a zero-length Pi still
 * contributes its 00 00 length field. */
#include "crypto/kdf.h"

#include "core/err.h"

#include <limits.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <string.h>

#define KDF_PARAM_MAX 65535u /* what a two-octet Li can express */

int m5_hmac_sha256(const uint8_t *key, size_t key_len, const uint8_t *data, size_t len,
                   uint8_t out[32]) {
  /* OpenSSL rejects a NULL key even when its length is zero; an empty key is legal HMAC. */
  static const uint8_t empty = 0;
  if ((!key && key_len) || (!data && len) || !out) return M5_EINVAL;
  if (key_len > INT_MAX) return M5_ERANGE;
  unsigned int out_len = 0;
  if (!HMAC(EVP_sha256(), key ? key : &empty, (int)key_len, data ? data : &empty, len, out,
            &out_len) ||
      out_len != 32)
    return M5_ECRYPTO;
  return M5_OK;
}

int m5_kdf(const uint8_t *key, size_t key_len, uint8_t fc, const m5_kdf_param_t *params,
           size_t n_params, uint8_t out[M5_KDF_OUT_LEN]) {
  if (!key || !out || (!params && n_params)) return M5_EINVAL;
  size_t s_len = 1;
  for (size_t i = 0; i < n_params; i++) {
    if (!params[i].p && params[i].len) return M5_EINVAL;
    if (params[i].len > KDF_PARAM_MAX) return M5_ERANGE;
    if (s_len > SIZE_MAX - 2 - params[i].len) return M5_ERANGE;
    s_len += params[i].len + 2;
  }
  /* S carries SUPIs and key identifiers: heap-allocated so it can be wiped whatever its size. */
  uint8_t *s = OPENSSL_malloc(s_len);
  if (!s) return M5_ENOMEM;
  size_t o = 0;
  s[o++] = fc;
  for (size_t i = 0; i < n_params; i++) {
    if (params[i].len) memcpy(s + o, params[i].p, params[i].len);
    o += params[i].len;
    s[o++] = (uint8_t)(params[i].len >> 8);
    s[o++] = (uint8_t)params[i].len;
  }
  int rc = m5_hmac_sha256(key, key_len, s, s_len, out);
  OPENSSL_clear_free(s, s_len);
  return rc;
}
