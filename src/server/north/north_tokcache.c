/* Bearer tokens this worker verified lately (north_int.h). Verifying an ES256 token is an
 * ECDSA verification plus two JSON parses: the largest single cost of a deliver-as-message
 * when every request pays it (a perf profile under bench/vs-mosquitto's m5s-north run). An AS
 * sends the same token on every request for its whole lifetime (oauth.token_lifetime_s), so
 * each worker remembers, for a few tokens, the claims it verified: keyed by the token's
 * SHA-256 (the token itself, a bearer credential, is never kept), valid only on a connection
 * with the same client certificate, only until the token's exp (with the same leeway as the
 * verification), and for an external issuer's token only while the key set it was verified
 * with is still in use.
 * Everything else (nbf and iat were in the past at the verification and stay so; issuer and
 * audience are this server's constants) cannot change while the entry lives. A token that
 * fails verification is never remembered. Whatever a hit skips, the caller's checks (who the
 * certificate names, that AS client, the scope) still run on every request. */
#include "server/north/north_int.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct north_tok {
  uint8_t digest[32];
  char x5t[M5_JWT_X5T_LEN + 1];
  int used, ext;
  uint64_t keys_gen; /* ext: north_t.ext_keys_gen at the verification */
  m5_jwt_claims_t claims;
};

static int token_digest(const char *tok, size_t len, uint8_t digest[32]) {
  unsigned int n = 0;
  return EVP_Digest(tok, len, digest, &n, EVP_sha256(), NULL) == 1 && n == 32 ? 0 : -1;
}

static north_tok_t *slot(north_t *n, const uint8_t digest[32]) {
  return &n->toks[((size_t)digest[0] << 8 | digest[1]) % NORTH_TOK_SLOTS];
}

int north_tok_lookup(north_t *n, const char *tok, size_t len, const char *x5t, int64_t now,
                     int64_t leeway_s, m5_jwt_claims_t *out, uint8_t digest[32]) {
  if (token_digest(tok, len, digest)) return -1;
  if (!n->toks) return 0;
  north_tok_t *t = slot(n, digest);
  int64_t until;
  if (!t->used || CRYPTO_memcmp(t->digest, digest, 32) != 0 || strcmp(t->x5t, x5t) != 0 ||
      (t->ext && t->keys_gen != n->ext_keys_gen))
    return 0;
  /* check_times' rule: expired when exp + leeway <= now (no overflow: then never) */
  if (!__builtin_add_overflow(t->claims.exp, leeway_s, &until) && until <= now) {
    north_tok_forget(t);
    return 0;
  }
  *out = t->claims;
  return 1;
}

void north_tok_store(north_t *n, const uint8_t digest[32], const char *x5t, int ext,
                     const m5_jwt_claims_t *claims) {
  if (!n->toks && !(n->toks = calloc(NORTH_TOK_SLOTS, sizeof *n->toks))) return;
  north_tok_t *t = slot(n, digest);
  north_tok_forget(t);
  memcpy(t->digest, digest, 32);
  snprintf(t->x5t, sizeof t->x5t, "%s", x5t);
  t->ext = ext;
  t->keys_gen = n->ext_keys_gen;
  t->claims = *claims;
  t->used = 1;
}

void north_tok_forget(north_tok_t *t) {
  OPENSSL_cleanse(t, sizeof *t);
}

void north_tok_free(north_t *n) {
  if (!n->toks) return;
  OPENSSL_cleanse(n->toks, NORTH_TOK_SLOTS * sizeof *n->toks);
  free(n->toks);
  n->toks = NULL;
}
