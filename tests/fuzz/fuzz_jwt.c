/* libFuzzer harness for the access-token library (oauth/jwt.h): tokens come from any AS on
 * every northbound request, JWKS documents from external issuers. The first input byte picks
 * the target: even = a token checked against a fixed key set (the seeds are valid tokens of
 * that key at the fixed time, so mutations reach the claim checks), odd = a JWKS document.
 * Whatever the input: no crash, no leak, a diagnostic on every refusal, zeroed claims.
 * M5_FUZZ_SOURCES: src/lib/oauth/jwt.c src/lib/oauth/jwks.c src/lib/crypto/codec.c
 * M5_FUZZ_SOURCES: src/lib/core/err.c
 * M5_FUZZ_PKGS: cjose jansson libcrypto */
#include "core/err.h"
#include "oauth/jwt.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The public key of the seed tokens in tests/fuzz/corpus/jwt (its private half was thrown away
 * once they were signed). */
static const char jwks_doc[] =
    "{\"keys\":[{\"kty\":\"EC\",\"crv\":\"P-256\",\"kid\":\"fuzz\","
    "\"x\":\"bMXmn4Kw0uKdBamO0E75ADpgSLbZO1c_QGhcLx9f8NQ\",\"y\":\"zXk_z7-W7PSpG37kirb4Ye8TPuNBnbSTjNAv8dQg9kY\"}]}";

static m5_jwks_t *keys;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1 || size > 70000) return 0;
  char err[256];
  if (!keys && !(keys = m5_jwks_parse(jwks_doc, sizeof jwks_doc - 1, err, sizeof err)))
    __builtin_trap();
  const char *in = (const char *)data + 1;
  size_t n = size - 1;
  if (data[0] & 1) {
    m5_jwks_t *s = m5_jwks_parse(in, n, err, sizeof err);
    if (!s && !err[0]) __builtin_trap();
    if (s) {
      char *json = m5_jwks_to_json(s);
      if (!json || strstr(json, "\"d\":")) __builtin_trap(); /* a private part, not a kid "d" */
      free(json);
      m5_jwks_free(s);
    }
    return 0;
  }
  m5_jwt_expect_t x = {.issuer = "https://m5s.example:8443",
                       .audience = "https://m5s.example:8443",
                       .now = 1700000100,
                       .leeway_s = 30,
                       .cert_x5t_s256 = "47DEQpj8HBSa-_TImW-5JCeuQeRkm5NMpJWZG3hSuFU",
                       .require_cnf = 1};
  m5_jwt_claims_t c;
  char diag[160];
  m5_jwt_err_t e = m5_jwt_verify(in, n, keys, &x, &c, diag, sizeof diag);
  if (e != M5_JWT_OK) {
    if (!diag[0] || c.sub[0] || c.exp) __builtin_trap();
  } else if (!c.sub[0] || !c.client_id[0] || !c.bound) {
    __builtin_trap();
  }
  return 0;
}
