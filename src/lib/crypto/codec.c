/* Byte <-> text codecs for keys and identifiers: lowercase hex and unpadded base64url
 * (RFC 4648 §5, used for the A-TID inside the A-KID, TS 33.535 cl. 6.1 / architecture §4),
 * plus wiping, constant-time comparison and randomness on top of OpenSSL. */
#include "crypto/codec.h"

#include "core/err.h"

#include <limits.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <string.h>

static const char hex_digits[] = "0123456789abcdef";
static const char b64url_alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

int m5_hex_encode(const uint8_t *in, size_t n, char *out, size_t outlen) {
  if ((!in && n) || !out) return M5_EINVAL;
  if (n > (SIZE_MAX - 1) / 2 || outlen < 2 * n + 1) return M5_ERANGE;
  for (size_t i = 0; i < n; i++) {
    out[2 * i] = hex_digits[in[i] >> 4];
    out[2 * i + 1] = hex_digits[in[i] & 0x0f];
  }
  out[2 * n] = '\0';
  return M5_OK;
}

static int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

int m5_hex_decode(const char *in, uint8_t *out, size_t outlen, size_t *outn) {
  if (!in || (!out && outlen) || !outn) return M5_EINVAL;
  size_t len = strlen(in);
  if (len % 2) return M5_EINVAL;
  /* Validate everything before writing so a rejected input leaves out untouched. */
  for (size_t i = 0; i < len; i++)
    if (hex_value(in[i]) < 0) return M5_EINVAL;
  if (len / 2 > outlen) return M5_ERANGE;
  for (size_t i = 0; i < len / 2; i++)
    out[i] = (uint8_t)(hex_value(in[2 * i]) << 4 | hex_value(in[2 * i + 1]));
  *outn = len / 2;
  return M5_OK;
}

int m5_b64url_encode(const uint8_t *in, size_t n, char *out, size_t outlen) {
  if ((!in && n) || !out) return M5_EINVAL;
  /* Unpadded: 4 characters per full 3-octet group, then 2 or 3 for a 1- or 2-octet tail. */
  if (n / 3 > (SIZE_MAX - 4) / 4) return M5_ERANGE;
  size_t need = n / 3 * 4 + (n % 3 ? n % 3 + 1 : 0) + 1;
  if (outlen < need) return M5_ERANGE;
  size_t o = 0, i = 0;
  for (; i + 3 <= n; i += 3) {
    uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
    out[o++] = b64url_alphabet[v >> 18 & 0x3f];
    out[o++] = b64url_alphabet[v >> 12 & 0x3f];
    out[o++] = b64url_alphabet[v >> 6 & 0x3f];
    out[o++] = b64url_alphabet[v & 0x3f];
  }
  if (n - i == 1) {
    uint32_t v = (uint32_t)in[i] << 16;
    out[o++] = b64url_alphabet[v >> 18 & 0x3f];
    out[o++] = b64url_alphabet[v >> 12 & 0x3f];
  } else if (n - i == 2) {
    uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8;
    out[o++] = b64url_alphabet[v >> 18 & 0x3f];
    out[o++] = b64url_alphabet[v >> 12 & 0x3f];
    out[o++] = b64url_alphabet[v >> 6 & 0x3f];
  }
  out[o] = '\0';
  return M5_OK;
}

static int b64url_value(char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '-') return 62;
  if (c == '_') return 63;
  return -1;
}

int m5_b64url_decode(const char *in, uint8_t *out, size_t outlen, size_t *outn) {
  if (!in || (!out && outlen) || !outn) return M5_EINVAL;
  size_t len = strlen(in);
  /* A single leftover character cannot encode a whole octet: never produced by an encoder. */
  if (len % 4 == 1) return M5_EINVAL;
  for (size_t i = 0; i < len; i++)
    if (b64url_value(in[i]) < 0)
      return M5_EINVAL; /* includes '=' padding and the '+' '/' of standard base64 */
  size_t tail = len % 4;
  /* Only the canonical encoding is accepted: the unused low bits of the last character must be
   * zero, otherwise two texts would decode to the same octets (identifiers compare as text). */
  if (tail == 2 && (b64url_value(in[len - 1]) & 0x0f)) return M5_EINVAL;
  if (tail == 3 && (b64url_value(in[len - 1]) & 0x03)) return M5_EINVAL;
  size_t need = len / 4 * 3 + (tail ? tail - 1 : 0);
  if (need > outlen) return M5_ERANGE;
  size_t o = 0, i = 0;
  for (; i + 4 <= len; i += 4) {
    uint32_t v = (uint32_t)b64url_value(in[i]) << 18 | (uint32_t)b64url_value(in[i + 1]) << 12 |
                 (uint32_t)b64url_value(in[i + 2]) << 6 | (uint32_t)b64url_value(in[i + 3]);
    out[o++] = (uint8_t)(v >> 16);
    out[o++] = (uint8_t)(v >> 8);
    out[o++] = (uint8_t)v;
  }
  if (tail) {
    uint32_t v = (uint32_t)b64url_value(in[i]) << 18 | (uint32_t)b64url_value(in[i + 1]) << 12;
    if (tail == 3) v |= (uint32_t)b64url_value(in[i + 2]) << 6;
    out[o++] = (uint8_t)(v >> 16);
    if (tail == 3) out[o++] = (uint8_t)(v >> 8);
  }
  *outn = o;
  return M5_OK;
}

void m5_wipe(void *p, size_t n) {
  if (p && n) OPENSSL_cleanse(p, n);
}

int m5_ct_equal(const void *a, const void *b, size_t n) {
  return CRYPTO_memcmp(a, b, n) == 0;
}

int m5_random_bytes(void *p, size_t n) {
  if (!p && n) return M5_EINVAL;
  if (n > INT_MAX) return M5_ERANGE;
  if (n && RAND_bytes(p, (int)n) != 1) return M5_ECRYPTO;
  return M5_OK;
}
