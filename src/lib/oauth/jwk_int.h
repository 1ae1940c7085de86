/* Internal to src/lib/oauth: the key and key-set structures that jwks.c builds and jwt.c signs
 * and verifies with. Not for other modules: they go through jwt.h. */
#ifndef M5_OAUTH_JWK_INT_H
#define M5_OAUTH_JWK_INT_H

#include "oauth/jwt.h"

#include <cjose/jwk.h>

/* kid values we store or look up; longer ones (from a JWKS or a token) never match. */
#define M5_JWK_KID_MAX 128
/* base64url text of one P-256 coordinate (32 octets). */
#define M5_JWK_COORD_B64 43

struct m5_jwk {
  cjose_jwk_t *cj; /* owns the OpenSSL key; private part only when has_private */
  int has_private;
  char kid[M5_JWK_KID_MAX + 1];
  char x[M5_JWK_COORD_B64 + 1], y[M5_JWK_COORD_B64 + 1];
};

struct m5_jwks {
  m5_jwk_t *keys; /* n public keys with distinct kids */
  size_t n;
};

/* The key named kid, or NULL (borrowed from s). */
const m5_jwk_t *m5_jwks_find(const m5_jwks_t *s, const char *kid);

#endif
