/* Keys for MSGin5G-3 access tokens: our own EC P-256 signing key, read from PEM, with its
 * RFC 7638 thumbprint as kid, and JWK Sets (RFC 7517 §5) of issuers' public keys. Only EC
 * P-256 signature keys are kept: the JOSE profile of TS 33.210 cl. 6.3 allows ES256 alone
 * (msgin5g-security.md §5.2). */
#include "oauth/jwk_int.h"

#include "core/err.h"
#include "crypto/codec.h"

#include <cjose/error.h>
#include <errno.h>
#include <jansson.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/pem.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define COORD_LEN 32 /* octets of a P-256 coordinate or private scalar */
#define KEYGEN_HINT                                                                                \
  "run `m5ctl pki init` (it writes m5s-token.key) or `openssl genpkey -algorithm EC -pkeyopt "     \
  "ec_paramgen_curve:P-256`"

/* RFC 7638 §3.2: the required members of an EC key (crv, kty, x, y) in lexicographic order,
 * without whitespace; the kid is base64url(SHA-256) of that text. */
static int ec_thumbprint(const char *x, const char *y, char kid[M5_JWK_KID_MAX + 1]) {
  char json[160];
  int n = snprintf(json, sizeof json,
                   "{\"crv\":\"P-256\",\"kty\":\"EC\",\"x\":\"%s\",\"y\":\"%s\"}", x, y);
  if (n < 0 || (size_t)n >= sizeof json) return M5_ERANGE;
  uint8_t md[32];
  unsigned mdlen = 0;
  if (EVP_Digest(json, (size_t)n, md, &mdlen, EVP_sha256(), NULL) != 1 || mdlen != sizeof md)
    return M5_ECRYPTO;
  return m5_b64url_encode(md, sizeof md, kid, M5_JWK_KID_MAX + 1);
}

/* Makes k->cj from the coordinates (and the private scalar d, or NULL). cjose copies the
 * buffers (it does not write them: the casts only fit its non-const spec) and refuses a point
 * off the curve, reporting it as CJOSE_ERR_NO_MEMORY, so M5_EINVAL is the likelier truth. */
static int jwk_fill(m5_jwk_t *k, const uint8_t x[COORD_LEN], const uint8_t y[COORD_LEN],
                    const uint8_t *d) {
  cjose_jwk_ec_keyspec spec = {
      .crv = CJOSE_JWK_EC_P_256,
      .d = (uint8_t *)d,
      .dlen = d ? COORD_LEN : 0,
      .x = (uint8_t *)x,
      .xlen = COORD_LEN,
      .y = (uint8_t *)y,
      .ylen = COORD_LEN,
  };
  cjose_err cerr;
  memset(&cerr, 0, sizeof cerr);
  k->cj = cjose_jwk_create_EC_spec(&spec, &cerr);
  if (!k->cj) {
    /* cjose leaves OpenSSL's reasons queued; a later TLS call on this thread would read them
     * as its own (SSL_get_error consults the queue). */
    ERR_clear_error();
    return M5_EINVAL;
  }
  k->has_private = d != NULL;
  if (m5_b64url_encode(x, COORD_LEN, k->x, sizeof k->x) ||
      m5_b64url_encode(y, COORD_LEN, k->y, sizeof k->y))
    return M5_ERANGE;
  return M5_OK;
}

static void jwk_clear(m5_jwk_t *k) {
  if (k->cj) cjose_jwk_release(k->cj); /* EC_KEY_free clears the private scalar */
  memset(k, 0, sizeof *k);
}

/* ---- our own key ---- */

/* A key file must never make OpenSSL prompt on a terminal: an encrypted key is just refused. */
static int no_passphrase(char *buf, int size, int rwflag, void *u) {
  (void)buf, (void)size, (void)rwflag, (void)u;
  return -1;
}

static int is_p256(const char *group) {
  int nid = OBJ_sn2nid(group);
  if (nid == NID_undef) nid = EC_curve_nist2nid(group);
  return nid == NID_X9_62_prime256v1;
}

m5_jwk_t *m5_jwk_load_pem(const char *path, char *err, size_t errlen) {
  if (!path || !path[0]) {
    m5_set_why(err, errlen, "no token signing key file given; " KEYGEN_HINT);
    return NULL;
  }
  FILE *f = fopen(path, "re");
  if (!f) {
    m5_set_why(err, errlen, "cannot read token signing key %s: %s; " KEYGEN_HINT, path,
               strerror(errno));
    return NULL;
  }
  EVP_PKEY *pkey = PEM_read_PrivateKey(f, NULL, no_passphrase, NULL);
  fclose(f);
  m5_jwk_t *k = NULL;
  BIGNUM *bx = NULL, *by = NULL, *bd = NULL;
  uint8_t x[COORD_LEN], y[COORD_LEN], d[COORD_LEN];
  char group[64] = "";
  size_t glen = 0;
  if (!pkey) {
    m5_set_why(err, errlen,
               "token signing key %s is not an unencrypted PEM private key; " KEYGEN_HINT, path);
    goto fail;
  }
  if (!EVP_PKEY_is_a(pkey, "EC")) {
    const char *type = EVP_PKEY_get0_type_name(pkey);
    m5_set_why(err, errlen, "token signing key %s is %s, not EC P-256 (ES256); " KEYGEN_HINT, path,
               type ? type : "of an unknown type");
    goto fail;
  }
  if (EVP_PKEY_get_group_name(pkey, group, sizeof group, &glen) != 1 || !is_p256(group)) {
    m5_set_why(err, errlen, "token signing key %s is on curve %s, not P-256 (ES256); " KEYGEN_HINT,
               path, group[0] ? group : "(explicit parameters)");
    goto fail;
  }
  if (EVP_PKEY_get_bn_param(pkey, OSSL_PKEY_PARAM_EC_PUB_X, &bx) != 1 ||
      EVP_PKEY_get_bn_param(pkey, OSSL_PKEY_PARAM_EC_PUB_Y, &by) != 1 ||
      EVP_PKEY_get_bn_param(pkey, OSSL_PKEY_PARAM_PRIV_KEY, &bd) != 1 ||
      BN_bn2binpad(bx, x, COORD_LEN) != COORD_LEN || BN_bn2binpad(by, y, COORD_LEN) != COORD_LEN ||
      BN_bn2binpad(bd, d, COORD_LEN) != COORD_LEN) {
    m5_set_why(err, errlen, "token signing key %s: cannot read its EC key values", path);
    goto fail;
  }
  if (!(k = calloc(1, sizeof *k))) {
    m5_set_why(err, errlen, "token signing key %s: out of memory", path);
    goto fail;
  }
  int rc = jwk_fill(k, x, y, d);
  if (!rc) rc = ec_thumbprint(k->x, k->y, k->kid);
  if (rc) {
    m5_set_why(err, errlen, "token signing key %s: cannot use it as a JWK (%s)", path,
               m5_strerror(rc));
    goto fail;
  }
  m5_wipe(d, sizeof d);
  BN_free(bx);
  BN_free(by);
  BN_clear_free(bd);
  EVP_PKEY_free(pkey);
  return k;
fail:
  ERR_clear_error();
  m5_wipe(d, sizeof d);
  BN_free(bx);
  BN_free(by);
  BN_clear_free(bd);
  EVP_PKEY_free(pkey);
  m5_jwk_free(k);
  return NULL;
}

const char *m5_jwk_kid(const m5_jwk_t *k) {
  return k ? k->kid : NULL;
}

void m5_jwk_free(m5_jwk_t *k) {
  if (!k) return;
  jwk_clear(k);
  free(k);
}

/* ---- key sets ---- */

const m5_jwk_t *m5_jwks_find(const m5_jwks_t *s, const char *kid) {
  if (!s || !kid) return NULL;
  for (size_t i = 0; i < s->n; i++)
    if (!strcmp(s->keys[i].kid, kid)) return &s->keys[i];
  return NULL;
}

/* RFC 7517 §4.2-4.4: a key for something else (encryption, another algorithm, a key_ops list
 * without "verify") is not an error, just not ours to use. A member of the wrong JSON type
 * counts as "something else" too. */
static int for_es256_signatures(json_t *jk) {
  json_t *v;
  if ((v = json_object_get(jk, "use")) &&
      (!json_is_string(v) || strcmp(json_string_value(v), "sig")))
    return 0;
  if ((v = json_object_get(jk, "alg")) &&
      (!json_is_string(v) || strcmp(json_string_value(v), "ES256")))
    return 0;
  if ((v = json_object_get(jk, "key_ops"))) {
    size_t i;
    json_t *op;
    int verify = 0;
    if (!json_is_array(v)) return 0;
    json_array_foreach(v, i, op) {
      if (json_is_string(op) && !strcmp(json_string_value(op), "verify")) verify = 1;
    }
    if (!verify) return 0;
  }
  return 1;
}

/* A coordinate: exactly 32 octets in canonical unpadded base64url (RFC 7518 §6.2.1.2); the
 * decoder refuses longer text (M5_ERANGE) and anything but the canonical spelling. */
static int coord_decode(json_t *v, uint8_t out[COORD_LEN]) {
  size_t n = 0;
  if (!json_is_string(v) || m5_b64url_decode(json_string_value(v), out, COORD_LEN, &n) ||
      n != COORD_LEN)
    return M5_EINVAL;
  return M5_OK;
}

/* Adds keys[i] to s when it is a usable key; 1 added, 0 skipped, -1 error (in err). */
static int jwks_add(m5_jwks_t *s, size_t cap, json_t *jk, size_t i, char *err, size_t errlen) {
  if (!json_is_object(jk)) {
    m5_set_why(err, errlen, "JWKS keys[%zu] is not a JSON object", i);
    return -1;
  }
  /* Checked before anything is skipped: a set that publishes a private key, of any type, has
   * leaked it, and its issuer must hear so rather than have us quietly ignore the key. */
  if (json_object_get(jk, "d")) {
    m5_set_why(err, errlen,
               "JWKS keys[%zu] carries a private key (\"d\"); an issuer must publish public keys "
               "only",
               i);
    return -1;
  }
  json_t *kty = json_object_get(jk, "kty"), *crv = json_object_get(jk, "crv");
  if (!json_is_string(kty) || strcmp(json_string_value(kty), "EC")) return 0;
  if (!json_is_string(crv) || strcmp(json_string_value(crv), "P-256")) return 0;
  if (!for_es256_signatures(jk)) return 0;

  json_t *kid = json_object_get(jk, "kid");
  if (!json_is_string(kid) || !json_string_length(kid) ||
      json_string_length(kid) > M5_JWK_KID_MAX) {
    m5_set_why(err, errlen,
               "JWKS keys[%zu] (EC P-256) has no usable \"kid\" (a string of 1 to %d characters); "
               "tokens name their key by kid",
               i, M5_JWK_KID_MAX);
    return -1;
  }
  const char *kid_s = json_string_value(kid);
  if (m5_jwks_find(s, kid_s)) {
    m5_set_why(err, errlen, "JWKS keys[%zu] repeats kid \"%s\"; kids must be unique", i, kid_s);
    return -1;
  }
  if (s->n == cap) {
    m5_set_why(err, errlen, "JWKS has more than %d usable keys", M5_JWKS_MAX_KEYS);
    return -1;
  }
  uint8_t x[COORD_LEN], y[COORD_LEN];
  if (coord_decode(json_object_get(jk, "x"), x) || coord_decode(json_object_get(jk, "y"), y)) {
    m5_set_why(err, errlen,
               "JWKS key \"%s\": \"x\" and \"y\" must each be 32 octets in unpadded base64url",
               kid_s);
    return -1;
  }
  m5_jwk_t *k = &s->keys[s->n];
  if (jwk_fill(k, x, y, NULL)) {
    jwk_clear(k);
    m5_set_why(err, errlen, "JWKS key \"%s\": (x, y) is not a point on P-256", kid_s);
    return -1;
  }
  memcpy(k->kid, kid_s, json_string_length(kid) + 1);
  s->n++;
  return 1;
}

m5_jwks_t *m5_jwks_parse(const char *json, size_t len, char *err, size_t errlen) {
  if (!json) {
    m5_set_why(err, errlen, "no JWKS document");
    return NULL;
  }
  if (len > M5_JWKS_MAX) {
    m5_set_why(err, errlen, "JWKS document of %zu bytes is over the limit of %d", len, M5_JWKS_MAX);
    return NULL;
  }
  json_error_t je;
  json_t *root = json_loadb(json, len, JSON_REJECT_DUPLICATES, &je);
  if (!root) {
    /* jansson's text may quote a few bytes of the document, which is public key data. */
    m5_set_why(err, errlen, "JWKS is not valid JSON (line %d column %d: %s)", je.line, je.column,
               je.text);
    return NULL;
  }
  m5_jwks_t *s = calloc(1, sizeof *s);
  json_t *keys = json_object_get(root, "keys");
  if (!s || !(s->keys = calloc(M5_JWKS_MAX_KEYS, sizeof *s->keys))) {
    m5_set_why(err, errlen, "JWKS: out of memory");
    goto fail;
  }
  if (!json_is_object(root) || !json_is_array(keys)) {
    m5_set_why(err, errlen, "JWKS is not an object with a \"keys\" array (RFC 7517 §5)");
    goto fail;
  }
  size_t i;
  json_t *jk;
  json_array_foreach(keys, i, jk) {
    if (jwks_add(s, M5_JWKS_MAX_KEYS, jk, i, err, errlen) < 0) goto fail;
  }
  if (!s->n) {
    m5_set_why(err, errlen, "JWKS holds no usable key (kty EC, crv P-256, for ES256 signatures)");
    goto fail;
  }
  json_decref(root);
  return s;
fail:
  json_decref(root);
  m5_jwks_free(s);
  return NULL;
}

m5_jwks_t *m5_jwks_from_key(const m5_jwk_t *k) {
  if (!k || !k->cj) return NULL;
  m5_jwks_t *s = calloc(1, sizeof *s);
  if (!s || !(s->keys = calloc(1, sizeof *s->keys))) goto fail;
  uint8_t x[COORD_LEN], y[COORD_LEN];
  size_t nx = 0, ny = 0;
  if (m5_b64url_decode(k->x, x, sizeof x, &nx) || m5_b64url_decode(k->y, y, sizeof y, &ny) ||
      nx != COORD_LEN || ny != COORD_LEN)
    goto fail;
  /* A fresh public-only key rather than a reference to k: the set then never holds, and can
   * never export, the private scalar, whatever happens to k. */
  if (jwk_fill(&s->keys[0], x, y, NULL)) goto fail;
  memcpy(s->keys[0].kid, k->kid, sizeof k->kid);
  s->n = 1;
  return s;
fail:
  m5_jwks_free(s);
  return NULL;
}

static json_t *key_json(const m5_jwk_t *k) {
  json_t *o = json_object();
  if (!o) return NULL;
  const char *const members[][2] = {{"kty", "EC"},   {"crv", "P-256"}, {"x", k->x},     {"y", k->y},
                                    {"kid", k->kid}, {"use", "sig"},   {"alg", "ES256"}};
  for (size_t i = 0; i < sizeof members / sizeof members[0]; i++)
    if (json_object_set_new(o, members[i][0], json_string(members[i][1]))) {
      json_decref(o);
      return NULL;
    }
  return o;
}

char *m5_jwks_to_json(const m5_jwks_t *s) {
  if (!s) return NULL;
  json_t *root = json_object(), *keys = json_array();
  char *out = NULL;
  if (!root || !keys || json_object_set(root, "keys", keys)) goto out;
  /* Written from our own fields (x, y, kid), never from the cjose key: no code path here can
   * reach a private part. */
  for (size_t i = 0; i < s->n; i++)
    if (json_array_append_new(keys, key_json(&s->keys[i]))) goto out;
  /* Sized first, then written into our own malloc'd buffer, so the caller's free() matches
   * whatever allocator jansson was given (json_set_alloc_funcs). */
  size_t n = json_dumpb(root, NULL, 0, JSON_COMPACT);
  if (!n || !(out = malloc(n + 1))) goto out;
  if (json_dumpb(root, out, n, JSON_COMPACT) != n) {
    free(out);
    out = NULL;
    goto out;
  }
  out[n] = '\0';
out:
  json_decref(keys);
  json_decref(root);
  return out;
}

size_t m5_jwks_count(const m5_jwks_t *s) {
  return s ? s->n : 0;
}

void m5_jwks_free(m5_jwks_t *s) {
  if (!s) return;
  if (s->keys)
    for (size_t i = 0; i < s->n; i++)
      jwk_clear(&s->keys[i]);
  free(s->keys);
  free(s);
}
