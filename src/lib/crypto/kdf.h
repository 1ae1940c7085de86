/* The 3GPP generic key derivation function, TS 33.220 Annex B.2:
 *   derived = HMAC-SHA-256(Key, S),  S = FC || P0 || L0 || ... || Pn || Ln
 * Li is the two-octet big-endian length of Pi; a zero-length Pi still emits 00 00. */
#ifndef M5_CRYPTO_KDF_H
#define M5_CRYPTO_KDF_H

#include <stddef.h>
#include <stdint.h>

#define M5_KDF_OUT_LEN 32

typedef struct {
  const uint8_t *p;
  size_t len; /* at most 65535 */
} m5_kdf_param_t;

/* Writes 32 octets to out. M5_ERANGE if a parameter is longer than 65535 octets, M5_EINVAL for
 * NULL arguments, M5_ECRYPTO if HMAC fails. S is wiped after use. */
int m5_kdf(const uint8_t *key, size_t key_len, uint8_t fc, const m5_kdf_param_t *params,
           size_t n_params, uint8_t out[M5_KDF_OUT_LEN]);

/* HMAC-SHA-256 over data (used by the KDF; exposed for the RFC 4231 checks). */
int m5_hmac_sha256(const uint8_t *key, size_t key_len, const uint8_t *data, size_t len,
                   uint8_t out[32]);

#endif
