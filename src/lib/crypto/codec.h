/* Byte <-> text encodings used for keys and identifiers: lowercase hex and base64url. */
#ifndef M5_CRYPTO_CODEC_H
#define M5_CRYPTO_CODEC_H

#include <stddef.h>
#include <stdint.h>

/* Writes 2*n lowercase hex digits and a NUL; outlen must be >= 2*n+1 (else M5_ERANGE). */
int m5_hex_encode(const uint8_t *in, size_t n, char *out, size_t outlen);
/* Strict: even length, [0-9a-fA-F] only, exactly the decoded length written to *outn.
 * M5_EINVAL for bad characters or odd length, M5_ERANGE if out is too small. */
int m5_hex_decode(const char *in, uint8_t *out, size_t outlen, size_t *outn);
/* base64url (RFC 4648 §5) without padding, NUL-terminated. */
int m5_b64url_encode(const uint8_t *in, size_t n, char *out, size_t outlen);
int m5_b64url_decode(const char *in, uint8_t *out, size_t outlen, size_t *outn);

/* Wipes a buffer holding secrets (OPENSSL_cleanse: not optimised away). */
void m5_wipe(void *p, size_t n);
/* Constant-time equality of two n-byte buffers: 1 equal, 0 not. */
int m5_ct_equal(const void *a, const void *b, size_t n);
/* Fills p with n bytes from OpenSSL's CSPRNG. */
int m5_random_bytes(void *p, size_t n);

#endif
