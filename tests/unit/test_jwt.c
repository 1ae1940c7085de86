/* Unit tests for src/lib/oauth (jwt.h): MSGin5G-3 access tokens. Keys come from OpenSSL
 * (EVP_EC_gen) in a scratch directory. Every forged token is built here by hand with OpenSSL
 * (ECDSA, HMAC, base64) and jansson, not with cjose, and is otherwise valid and signed by the
 * trusted key wherever that makes sense, so each rejection is owed to the one check it targets.
 * Thumbprints (RFC 7638, RFC 8705 x5t#S256) and signatures are recomputed independently; the
 * RFC 7638 computation is first checked against the published RFC 9449 §6.1 jkt. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/err.h"
#include "oauth/jwt.h"
#include "testutil.h"

#include <jansson.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#define ISS "https://m5s.example.org"
#define AUD "https://m5s.example.org/msgin5g-3"
#define SUB "as1-7f3a9c"
#define NOW 1800000000
#define LEEWAY 30

typedef struct {
  char dir[256];
  char key_path[320];
  EVP_PKEY *pk;    /* the trusted issuer's key */
  EVP_PKEY *other; /* someone else's P-256 key */
  m5_jwk_t *jwk;   /* pk, as m5_jwk_load_pem reads it */
  m5_jwks_t *set;  /* its public half */
  const char *kid;
  char x5t_a[M5_JWT_X5T_LEN + 1], x5t_b[M5_JWT_X5T_LEN + 1]; /* two certificates' */
} fx_t;

static fx_t *F;

/* ---- independent encodings and crypto (OpenSSL only) ---- */

/* base64url without padding, via OpenSSL's standard base64; malloc'd. */
static char *b64u(const void *p, size_t n) {
  char *o = malloc(4 * (n / 3 + 1) + 1);
  assert_non_null(o);
  int len = EVP_EncodeBlock((unsigned char *)o, p, (int)n);
  assert_true(len >= 0);
  while (len > 0 && o[len - 1] == '=')
    len--;
  o[len] = '\0';
  for (char *c = o; *c; c++)
    *c = *c == '+' ? '-' : *c == '/' ? '_' : *c;
  return o;
}

static char *b64u_str(const char *s) {
  return b64u(s, strlen(s));
}

/* Decodes unpadded base64url (test input, known good); malloc'd, NUL-terminated. */
static char *b64u_dec(const char *s, size_t n, size_t *outn) {
  char *std = malloc(n + 4);
  assert_non_null(std);
  size_t i = 0;
  for (; i < n; i++)
    std[i] = s[i] == '-' ? '+' : s[i] == '_' ? '/' : s[i];
  while (i % 4)
    std[i++] = '=';
  std[i] = '\0';
  unsigned char *o = malloc(i / 4 * 3 + 1);
  assert_non_null(o);
  int len = EVP_DecodeBlock(o, (unsigned char *)std, (int)i);
  assert_true(len >= 0);
  len -= (int)(i - n); /* EVP_DecodeBlock counts the padding as zero octets */
  o[len] = '\0';
  free(std);
  if (outn) *outn = (size_t)len;
  return (char *)o;
}

static void sha256_b64u(const void *p, size_t n, char out[M5_JWT_X5T_LEN + 1]) {
  unsigned char md[32];
  unsigned mdlen = 0;
  assert_int_equal(EVP_Digest(p, n, md, &mdlen, EVP_sha256(), NULL), 1);
  char *t = b64u(md, mdlen);
  assert_int_equal(strlen(t), M5_JWT_X5T_LEN);
  memcpy(out, t, M5_JWT_X5T_LEN + 1);
  free(t);
}

/* RFC 7638 §3.2 for an EC key, written out by hand. */
static void thumbprint(const char *x, const char *y, char out[M5_JWT_X5T_LEN + 1]) {
  char json[256];
  int n = snprintf(json, sizeof json,
                   "{\"crv\":\"P-256\",\"kty\":\"EC\",\"x\":\"%s\",\"y\":\"%s\"}", x, y);
  assert_true(n > 0 && (size_t)n < sizeof json);
  sha256_b64u(json, (size_t)n, out);
}

/* A key value (coordinate, private scalar) as base64url of its size octets (RFC 7518 §6.2). */
static char *bn_param_b64u_n(EVP_PKEY *k, const char *param, int size) {
  BIGNUM *bn = NULL;
  unsigned char buf[66];
  assert_true(size <= (int)sizeof buf);
  assert_int_equal(EVP_PKEY_get_bn_param(k, param, &bn), 1);
  assert_int_equal(BN_bn2binpad(bn, buf, size), size);
  BN_clear_free(bn);
  char *t = b64u(buf, (size_t)size);
  OPENSSL_cleanse(buf, sizeof buf);
  return t;
}

static char *bn_param_b64u(EVP_PKEY *k, const char *param) {
  return bn_param_b64u_n(k, param, 32);
}

/* ES256 over input with k: OpenSSL gives DER, JWS wants R||S (RFC 7518 §3.4). md lets a test
 * sign what an ES384 header claims with the same P-256 key. */
static char *es_sign(EVP_PKEY *k, const EVP_MD *md, const char *input) {
  EVP_MD_CTX *ctx = EVP_MD_CTX_new();
  unsigned char der[128], rs[64];
  size_t derlen = sizeof der;
  assert_int_equal(EVP_DigestSignInit(ctx, NULL, md, NULL, k), 1);
  assert_int_equal(EVP_DigestSign(ctx, der, &derlen, (const unsigned char *)input, strlen(input)),
                   1);
  EVP_MD_CTX_free(ctx);
  const unsigned char *p = der;
  ECDSA_SIG *sig = d2i_ECDSA_SIG(NULL, &p, (long)derlen);
  assert_non_null(sig);
  assert_int_equal(BN_bn2binpad(ECDSA_SIG_get0_r(sig), rs, 32), 32);
  assert_int_equal(BN_bn2binpad(ECDSA_SIG_get0_s(sig), rs + 32, 32), 32);
  ECDSA_SIG_free(sig);
  return b64u(rs, sizeof rs);
}

/* 1 when token's R||S signature verifies with OpenSSL alone. */
static int es_verify(EVP_PKEY *k, const char *token) {
  const char *dot = strrchr(token, '.');
  size_t n = 0;
  char *rs = b64u_dec(dot + 1, strlen(dot + 1), &n);
  int ok = 0;
  if (n == 64) {
    ECDSA_SIG *sig = ECDSA_SIG_new();
    ECDSA_SIG_set0(sig, BN_bin2bn((unsigned char *)rs, 32, NULL),
                   BN_bin2bn((unsigned char *)rs + 32, 32, NULL));
    unsigned char *der = NULL;
    int derlen = i2d_ECDSA_SIG(sig, &der);
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    ok = EVP_DigestVerifyInit(ctx, NULL, EVP_sha256(), NULL, k) == 1 &&
         EVP_DigestVerify(ctx, der, (size_t)derlen, (const unsigned char *)token,
                          (size_t)(dot - token)) == 1;
    EVP_MD_CTX_free(ctx);
    OPENSSL_free(der);
    ECDSA_SIG_free(sig);
  }
  free(rs);
  return ok;
}

static char *join3(const char *a, const char *b, const char *c) {
  size_t n = strlen(a) + strlen(b) + strlen(c) + 3;
  char *t = malloc(n);
  assert_non_null(t);
  snprintf(t, n, "%s.%s.%s", a, b, c);
  return t;
}

/* A compact JWS of hdr and claims (JSON texts) signed ES256 with k. */
static char *forge_md(EVP_PKEY *k, const EVP_MD *md, const char *hdr, const char *claims) {
  char *h = b64u_str(hdr), *p = b64u_str(claims);
  char *input = join3(h, p, "");
  input[strlen(input) - 1] = '\0';
  char *s = es_sign(k, md, input);
  char *t = join3(h, p, s);
  free(h), free(p), free(input), free(s);
  return t;
}

static char *forge(EVP_PKEY *k, const char *hdr, const char *claims) {
  return forge_md(k, EVP_sha256(), hdr, claims);
}

static char *std_header(void) {
  char *h = malloc(256);
  assert_non_null(h);
  snprintf(h, 256, "{\"alg\":\"ES256\",\"typ\":\"at+jwt\",\"kid\":\"%s\"}", F->kid);
  return h;
}

/* Valid claims for (ISS, AUD, NOW); tests edit the object before dumping it. */
static json_t *std_claims(void) {
  json_t *c =
      json_pack("{s:s, s:s, s:s, s:s, s:s, s:I, s:I, s:s}", "iss", ISS, "sub", SUB, "aud", AUD,
                "client_id", SUB, "scope", "msgs-asregistration msgs-msgdelivery", "iat",
                (json_int_t)(NOW - 10), "exp", (json_int_t)(NOW + 300), "jti", "jti-0001");
  assert_non_null(c);
  return c;
}

/* Takes c: dumps it and signs it under the standard header with the trusted key. */
static char *forge_claims(json_t *c) {
  char *text = json_dumps(c, JSON_COMPACT);
  json_decref(c);
  char *h = std_header();
  char *t = forge(F->pk, h, text);
  free(h), free(text);
  return t;
}

static m5_jwt_expect_t expect(void) {
  m5_jwt_expect_t x = {ISS, AUD, NOW, LEEWAY, NULL, 0};
  return x;
}

/* Verifies tok under x and asserts the result; on rejection also that the claims are zeroed
 * and that diag explains in printable words without echoing the token, its kid or sub. */
static void check_x(const char *tok, size_t len, const m5_jwt_expect_t *x, m5_jwt_err_t want,
                    m5_jwt_claims_t *out) {
  m5_jwt_claims_t c;
  char diag[256];
  memset(&c, 0xa5, sizeof c);
  memset(diag, 'Z', sizeof diag);
  m5_jwt_err_t e = m5_jwt_verify(tok, len, F->set, x, &c, diag, sizeof diag);
  if (e != want)
    fail_msg("verify gave %s (%s), expected %s", m5_jwt_err_name(e), diag, m5_jwt_err_name(want));
  if (want != M5_JWT_OK) {
    static const m5_jwt_claims_t zero;
    assert_memory_equal(&c, &zero, sizeof c);
    assert_true(diag[0] != '\0' && strlen(diag) < sizeof diag);
    for (const char *p = diag; *p; p++) /* an RFC 6750 error_description */
      assert_true(*p >= 0x20 && *p < 0x7f && *p != '"' && *p != '\\');
    assert_null(strstr(diag, F->kid));
    assert_null(strstr(diag, SUB));
    /* Token parts, kids and keys are long base64url runs; no word of ours is 16 letters. */
    size_t run = 0;
    for (const char *p = diag; *p; p++) {
      int b64 = (*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') ||
                *p == '-' || *p == '_';
      run = b64 ? run + 1 : 0;
      if (run >= 16) fail_msg("diag \"%s\" carries a long base64url run", diag);
    }
  } else {
    assert_string_equal(diag, "");
  }
  if (out) *out = c;
}

static void check(const char *tok, m5_jwt_err_t want) {
  m5_jwt_expect_t x = expect();
  check_x(tok, strlen(tok), &x, want, NULL);
}

/* Verifies then frees a token made by one of the forge helpers. */
static void check_free(char *tok, m5_jwt_err_t want) {
  check(tok, want);
  free(tok);
}

static void check_claims_free(json_t *c, m5_jwt_err_t want) {
  check_free(forge_claims(c), want);
}

static char *issue_std(const char *cnf) {
  m5_jwt_issue_t c = {ISS,      SUB,       AUD,  SUB, "msgs-asregistration msgs-msgdelivery",
                      NOW - 10, NOW + 300, NULL, cnf};
  char *tok = NULL;
  assert_int_equal(m5_jwt_issue(F->jwk, &c, &tok), M5_OK);
  assert_non_null(tok);
  return tok;
}

/* ---- fixture: keys generated once for the whole group ---- */

static int write_key(const char *path, EVP_PKEY *k, int public_only, const char *pass) {
  FILE *f = fopen(path, "w");
  if (!f) return -1;
  int ok = public_only ? PEM_write_PUBKEY(f, k)
           : pass      ? PEM_write_PrivateKey(f, k, EVP_aes_256_cbc(), (unsigned char *)pass,
                                              (int)strlen(pass), NULL, NULL)
                       : PEM_write_PrivateKey(f, k, NULL, NULL, 0, NULL, NULL);
  return fclose(f) == 0 && ok == 1 ? 0 : -1;
}

static int group_setup(void **state) {
  (void)state;
  char err[512] = "";
  F = calloc(1, sizeof *F);
  if (!F || tu_mkdtemp(F->dir, sizeof F->dir, "m5-jwt")) return -1;
  snprintf(F->key_path, sizeof F->key_path, "%s/m5s-token.key", F->dir);
  F->pk = EVP_EC_gen("P-256");
  F->other = EVP_EC_gen("P-256");
  if (!F->pk || !F->other || write_key(F->key_path, F->pk, 0, NULL)) return -1;
  if (!(F->jwk = m5_jwk_load_pem(F->key_path, err, sizeof err))) {
    fprintf(stderr, "m5_jwk_load_pem: %s\n", err);
    return -1;
  }
  F->kid = m5_jwk_kid(F->jwk);
  F->set = m5_jwks_from_key(F->jwk);
  sha256_b64u("certificate A", 13, F->x5t_a);
  sha256_b64u("certificate B", 13, F->x5t_b);
  return F->set ? 0 : -1;
}

static int group_teardown(void **state) {
  (void)state;
  m5_jwks_free(F->set);
  m5_jwk_free(F->jwk);
  EVP_PKEY_free(F->pk);
  EVP_PKEY_free(F->other);
  tu_rmtree(F->dir);
  free(F);
  return 0;
}

/* ---- keys ---- */

/* RFC 7638: kid = base64url(SHA-256({"crv","kty","x","y"})). The hand-written computation is
 * first held against the published RFC 9449 §6.1 example (jkt of its DPoP key). */
static void test_kid_is_rfc7638_thumbprint(void **state) {
  (void)state;
  char t[M5_JWT_X5T_LEN + 1];
  thumbprint("l8tFrhx-34tV3hRICRDY9zCkDlpBhF42UQUfWVAWBFs",
             "9VE4jf_Ok_o64zbTTlcuNJajHmt6v9TDVrU0CdvGRDA", t);
  assert_string_equal(t, "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I");

  char *x = bn_param_b64u(F->pk, OSSL_PKEY_PARAM_EC_PUB_X);
  char *y = bn_param_b64u(F->pk, OSSL_PKEY_PARAM_EC_PUB_Y);
  thumbprint(x, y, t);
  assert_string_equal(m5_jwk_kid(F->jwk), t);
  free(x), free(y);
}

static void assert_load_fails(const char *path, const char *why) {
  char err[512] = "";
  m5_jwk_t *k = m5_jwk_load_pem(path, err, sizeof err);
  assert_null(k);
  if (!strstr(err, path) || (why && !strstr(err, why)))
    fail_msg("error \"%s\" should name %s and say %s", err, path, why ? why : "why");
}

/* Only an unencrypted EC P-256 private key loads; every refusal names the file. An encrypted
 * key must not make OpenSSL prompt for a passphrase (the test would hang on a terminal). */
static void test_load_pem_refuses(void **state) {
  (void)state;
  char path[400];
  snprintf(path, sizeof path, "%s/missing.key", F->dir);
  assert_load_fails(path, "No such file");

  EVP_PKEY *rsa = EVP_RSA_gen(2048), *p384 = EVP_EC_gen("P-384");
  assert_non_null(rsa);
  assert_non_null(p384);
  snprintf(path, sizeof path, "%s/rsa.key", F->dir);
  assert_int_equal(write_key(path, rsa, 0, NULL), 0);
  assert_load_fails(path, "RSA");
  snprintf(path, sizeof path, "%s/p384.key", F->dir);
  assert_int_equal(write_key(path, p384, 0, NULL), 0);
  assert_load_fails(path, "P-256");
  snprintf(path, sizeof path, "%s/public.pem", F->dir);
  assert_int_equal(write_key(path, F->pk, 1, NULL), 0);
  assert_load_fails(path, "private key");
  snprintf(path, sizeof path, "%s/encrypted.key", F->dir);
  assert_int_equal(write_key(path, F->pk, 0, "secret pass"), 0);
  assert_load_fails(path, "unencrypted");
  snprintf(path, sizeof path, "%s/garbage.key", F->dir);
  FILE *f = fopen(path, "w");
  assert_non_null(f);
  fputs("not a key\n", f);
  fclose(f);
  assert_load_fails(path, NULL);
  EVP_PKEY_free(rsa);
  EVP_PKEY_free(p384);

  char err[512] = "";
  assert_null(m5_jwk_load_pem(NULL, err, sizeof err));
  assert_true(err[0] != '\0');
}

/* Our JWKS carries exactly the public members, never "d", and reads back into a set that
 * verifies our tokens. */
static void test_jwks_to_json_public_only(void **state) {
  (void)state;
  char *text = m5_jwks_to_json(F->set);
  assert_non_null(text);
  char *d = bn_param_b64u(F->pk, OSSL_PKEY_PARAM_PRIV_KEY);
  assert_null(strstr(text, d));
  free(d);

  json_t *root = json_loads(text, JSON_REJECT_DUPLICATES, NULL);
  assert_non_null(root);
  assert_int_equal(json_object_size(root), 1);
  json_t *keys = json_object_get(root, "keys");
  assert_int_equal(json_array_size(keys), 1);
  json_t *k = json_array_get(keys, 0);
  assert_int_equal(json_object_size(k), 7);
  char *x = bn_param_b64u(F->pk, OSSL_PKEY_PARAM_EC_PUB_X);
  char *y = bn_param_b64u(F->pk, OSSL_PKEY_PARAM_EC_PUB_Y);
  const char *want[][2] = {{"kty", "EC"},   {"crv", "P-256"}, {"x", x},        {"y", y},
                           {"kid", F->kid}, {"use", "sig"},   {"alg", "ES256"}};
  for (size_t i = 0; i < 7; i++)
    assert_string_equal(json_string_value(json_object_get(k, want[i][0])), want[i][1]);
  assert_null(json_object_get(k, "d"));
  free(x), free(y);
  json_decref(root);

  char err[256] = "";
  m5_jwks_t *back = m5_jwks_parse(text, strlen(text), err, sizeof err);
  assert_non_null(back);
  assert_int_equal(m5_jwks_count(back), 1);
  char *tok = issue_std(NULL);
  m5_jwt_expect_t xp = expect();
  m5_jwt_claims_t c;
  assert_int_equal(m5_jwt_verify(tok, strlen(tok), back, &xp, &c, err, sizeof err), M5_JWT_OK);
  free(tok);
  m5_jwks_free(back);
  free(text);
}

/* {"kty":"EC","crv":"P-256",...} member text of a key, for hand-made sets. */
static char *ec_member(EVP_PKEY *k, const char *kid, const char *extra) {
  char *x = bn_param_b64u(k, OSSL_PKEY_PARAM_EC_PUB_X);
  char *y = bn_param_b64u(k, OSSL_PKEY_PARAM_EC_PUB_Y);
  char *m = malloc(512);
  assert_non_null(m);
  snprintf(m, 512, "{\"kty\":\"EC\",\"crv\":\"P-256\",\"x\":\"%s\",\"y\":\"%s\"%s%s%s%s}", x, y,
           kid ? ",\"kid\":\"" : "", kid ? kid : "", kid ? "\"" : "", extra ? extra : "");
  free(x), free(y);
  return m;
}

static void assert_jwks_fails(const char *doc, size_t len, const char *why) {
  char err[512] = "";
  m5_jwks_t *s = m5_jwks_parse(doc, len, err, sizeof err);
  if (s) {
    m5_jwks_free(s);
    fail_msg("JWKS accepted, expected a refusal (%s)", why);
  }
  if (!strstr(err, why)) fail_msg("error \"%s\" should say \"%s\"", err, why);
}

/* RFC 7517 §5 as jwt.h words it: foreign keys are skipped, everything doubtful is refused. */
static void test_jwks_parse_rules(void **state) {
  (void)state;
  EVP_PKEY *p384 = EVP_EC_gen("P-384");
  assert_non_null(p384);
  char *a = ec_member(F->pk, "issuer-a", ",\"use\":\"sig\",\"alg\":\"ES256\"");
  char *b = ec_member(F->other, "issuer-b", ",\"key_ops\":[\"verify\"]");
  char *enc = ec_member(F->other, "enc", ",\"use\":\"enc\"");
  char *es384 = ec_member(F->other, "es384", ",\"alg\":\"ES384\"");
  char *ops = ec_member(F->other, "ops", ",\"key_ops\":[\"encrypt\"]");
  char *x = bn_param_b64u_n(p384, OSSL_PKEY_PARAM_EC_PUB_X, 48);
  char doc[8192];
  snprintf(doc, sizeof doc,
           "{\"keys\":[{\"kty\":\"RSA\",\"n\":\"AQAB\",\"e\":\"AQAB\",\"kid\":\"rsa\"},"
           "{\"kty\":\"oct\",\"k\":\"c2VjcmV0\",\"kid\":\"oct\"},"
           "{\"kty\":\"EC\",\"crv\":\"P-384\",\"x\":\"%s\",\"y\":\"%s\",\"kid\":\"p384\"},"
           "%s,%s,%s,%s,%s],\"other\":1}",
           x, x, a, enc, es384, ops, b);
  char err[512] = "";
  m5_jwks_t *s = m5_jwks_parse(doc, strlen(doc), err, sizeof err);
  if (!s) fail_msg("%s", err);
  assert_int_equal(m5_jwks_count(s), 2);
  /* Both usable keys verify tokens naming them; the skipped ones are simply unknown kids. */
  m5_jwt_expect_t xp = expect();
  json_t *c = std_claims();
  char *ctext = json_dumps(c, JSON_COMPACT);
  json_decref(c);
  const struct {
    EVP_PKEY *k;
    const char *kid;
    m5_jwt_err_t want;
  } uses[] = {{F->pk, "issuer-a", M5_JWT_OK},        {F->other, "issuer-b", M5_JWT_OK},
              {F->other, "enc", M5_JWT_UNKNOWN_KID}, {F->other, "es384", M5_JWT_UNKNOWN_KID},
              {F->other, "ops", M5_JWT_UNKNOWN_KID}, {F->pk, "issuer-b", M5_JWT_BAD_SIGNATURE}};
  for (size_t i = 0; i < sizeof uses / sizeof uses[0]; i++) {
    char h[128];
    snprintf(h, sizeof h, "{\"alg\":\"ES256\",\"typ\":\"at+jwt\",\"kid\":\"%s\"}", uses[i].kid);
    char *tok = forge(uses[i].k, h, ctext);
    assert_int_equal(m5_jwt_verify(tok, strlen(tok), s, &xp, NULL, err, sizeof err), uses[i].want);
    free(tok);
  }
  free(ctext);
  m5_jwks_free(s);

  char *nokid = ec_member(F->pk, NULL, NULL);
  char *priv_d = ec_member(F->pk, "k1", ",\"d\":\"AAAA\"");
  char *k1 = ec_member(F->pk, "k1", NULL);
  char *k1b = ec_member(F->other, "k1", NULL);
  snprintf(doc, sizeof doc, "{\"keys\":[%s]}", nokid);
  assert_jwks_fails(doc, strlen(doc), "kid");
  char long_kid[130];
  memset(long_kid, 'k', 129);
  long_kid[129] = '\0';
  char *lk = ec_member(F->pk, long_kid, NULL);
  snprintf(doc, sizeof doc, "{\"keys\":[%s]}", lk);
  assert_jwks_fails(doc, strlen(doc), "kid");
  free(lk);
  snprintf(doc, sizeof doc, "{\"keys\":[%s,%s]}", k1, k1b);
  assert_jwks_fails(doc, strlen(doc), "repeats kid");
  snprintf(doc, sizeof doc, "{\"keys\":[%s]}", priv_d);
  assert_jwks_fails(doc, strlen(doc), "private");
  snprintf(doc, sizeof doc,
           "{\"keys\":[%s,{\"kty\":\"RSA\",\"n\":\"AQAB\",\"e\":\"AQAB\","
           "\"d\":\"AQAB\",\"kid\":\"r\"}]}",
           k1);
  assert_jwks_fails(doc, strlen(doc), "private");
  snprintf(doc, sizeof doc, "{\"keys\":[{\"kty\":\"RSA\",\"n\":\"AQAB\",\"e\":\"AQAB\"},%s]}", enc);
  assert_jwks_fails(doc, strlen(doc), "no usable key");
  snprintf(doc, sizeof doc, "{\"keys\":[],\"keys\":[%s]}", k1);
  assert_jwks_fails(doc, strlen(doc), "duplicate");
  snprintf(doc, sizeof doc, "{\"keys\":[%s]", k1);
  assert_jwks_fails(doc, strlen(doc), "not valid JSON");
  assert_jwks_fails("{\"keys\":{}}", 11, "\"keys\" array");
  assert_jwks_fails("[]", 2, "\"keys\" array");
  assert_jwks_fails("{\"keys\":[1]}", 12, "keys[0]");
  /* x of 31 octets; then a point off the curve (y = x) */
  char *xs = bn_param_b64u(F->pk, OSSL_PKEY_PARAM_EC_PUB_X);
  snprintf(doc, sizeof doc,
           "{\"keys\":[{\"kty\":\"EC\",\"crv\":\"P-256\",\"x\":\"%.41s\",\"y\":\"%s\","
           "\"kid\":\"s\"}]}",
           xs, xs);
  assert_jwks_fails(doc, strlen(doc), "32 octets");
  snprintf(doc, sizeof doc,
           "{\"keys\":[{\"kty\":\"EC\",\"crv\":\"P-256\",\"x\":\"%s\",\"y\":\"%s\","
           "\"kid\":\"s\"}]}",
           xs, xs);
  assert_jwks_fails(doc, strlen(doc), "not a point");
  /* more than M5_JWKS_MAX_KEYS usable keys */
  size_t o = (size_t)snprintf(doc, sizeof doc, "{\"keys\":[");
  for (int i = 0; i <= M5_JWKS_MAX_KEYS; i++) {
    char kid[16];
    snprintf(kid, sizeof kid, "k%d", i);
    char *m = ec_member(F->pk, kid, NULL);
    assert_true(o + strlen(m) + 4 < sizeof doc);
    o += (size_t)snprintf(doc + o, sizeof doc - o, "%s%s", i ? "," : "", m);
    free(m);
  }
  snprintf(doc + o, sizeof doc - o, "]}");
  assert_true(strlen(doc) < sizeof doc - 1);
  assert_jwks_fails(doc, strlen(doc), "more than");
  /* over M5_JWKS_MAX bytes, whatever it holds */
  char *huge = malloc(M5_JWKS_MAX + 1);
  assert_non_null(huge);
  memset(huge, ' ', M5_JWKS_MAX + 1);
  assert_jwks_fails(huge, M5_JWKS_MAX + 1, "limit");
  free(huge);

  free(xs), free(x), free(a), free(b), free(enc), free(es384), free(ops);
  free(nokid), free(priv_d), free(k1), free(k1b);
  EVP_PKEY_free(p384);
}

/* ---- issuing ---- */

/* issue -> verify: the header is exactly RFC 9068's, the claims are all there (no nbf), the
 * signature verifies with OpenSSL alone, and the token binds to the certificate. */
static void test_issue_round_trip(void **state) {
  (void)state;
  char *tok = issue_std(F->x5t_a);
  assert_true(es_verify(F->pk, tok));

  const char *d1 = strchr(tok, '.'), *d2 = strrchr(tok, '.');
  char *hdr = b64u_dec(tok, (size_t)(d1 - tok), NULL);
  char want[256];
  snprintf(want, sizeof want, "{\"alg\":\"ES256\",\"typ\":\"at+jwt\",\"kid\":\"%s\"}", F->kid);
  assert_string_equal(hdr, want);
  free(hdr);
  char *pl = b64u_dec(d1 + 1, (size_t)(d2 - d1 - 1), NULL);
  json_t *c = json_loads(pl, JSON_REJECT_DUPLICATES, NULL);
  assert_non_null(c);
  assert_string_equal(json_string_value(json_object_get(c, "aud")), AUD);
  assert_string_equal(json_string_value(json_object_get(json_object_get(c, "cnf"), "x5t#S256")),
                      F->x5t_a);
  assert_null(json_object_get(c, "nbf"));
  assert_int_equal(json_object_size(c), 9);
  json_decref(c);
  free(pl);

  m5_jwt_expect_t x = expect();
  x.cert_x5t_s256 = F->x5t_a;
  x.require_cnf = 1;
  m5_jwt_claims_t got;
  check_x(tok, strlen(tok), &x, M5_JWT_OK, &got);
  assert_string_equal(got.iss, ISS);
  assert_string_equal(got.sub, SUB);
  assert_string_equal(got.client_id, SUB);
  assert_string_equal(got.scope, "msgs-asregistration msgs-msgdelivery");
  assert_int_equal(got.iat, NOW - 10);
  assert_int_equal(got.exp, NOW + 300);
  assert_int_equal(got.bound, 1);
  /* jti: 128 random bits -> 22 base64url characters, different each time */
  assert_int_equal(strlen(got.jti), 22);
  char *tok2 = issue_std(NULL);
  m5_jwt_claims_t got2;
  check_x(tok2, strlen(tok2), &x, M5_JWT_CNF_MISMATCH, NULL);
  x.require_cnf = 0;
  check_x(tok2, strlen(tok2), &x, M5_JWT_OK, &got2);
  assert_int_equal(got2.bound, 0);
  assert_string_not_equal(got.jti, got2.jti);
  /* a caller's jti is kept */
  m5_jwt_issue_t ci = {ISS, SUB, AUD, SUB, "s", NOW, NOW + 1, "my-jti", NULL};
  char *tok3 = NULL;
  assert_int_equal(m5_jwt_issue(F->jwk, &ci, &tok3), M5_OK);
  check_x(tok3, strlen(tok3), &x, M5_JWT_OK, &got2);
  assert_string_equal(got2.jti, "my-jti");
  free(tok), free(tok2), free(tok3);

  assert_true(m5_jwt_has_scope(&got, "msgs-msgdelivery"));
  assert_true(m5_jwt_has_scope(&got, "msgs-asregistration"));
  assert_false(m5_jwt_has_scope(&got, "msgs"));
  assert_false(m5_jwt_has_scope(&got, "msgs-msgdelivery msgs-asregistration"));
  assert_false(m5_jwt_has_scope(&got, ""));
  assert_false(m5_jwt_has_scope(&got, NULL));
}

/* Signatures whose R or S starts with zero octets must still be 32+32 octets: many tokens,
 * each checked by OpenSSL alone and by the verifier. */
static void test_issue_many_signatures(void **state) {
  (void)state;
  m5_jwt_expect_t x = expect();
  for (int i = 0; i < 256; i++) {
    char *tok = issue_std(NULL);
    assert_true(es_verify(F->pk, tok));
    assert_int_equal(m5_jwt_verify(tok, strlen(tok), F->set, &x, NULL, NULL, 0), M5_JWT_OK);
    free(tok);
  }
}

/* The issuer refuses what the verifier would refuse. */
static void test_issue_refuses(void **state) {
  (void)state;
  char long_id[M5_JWT_ID_MAX + 2];
  memset(long_id, 'a', sizeof long_id - 1);
  long_id[sizeof long_id - 1] = '\0';
  const m5_jwt_issue_t ok = {ISS, SUB, AUD, SUB, "s", NOW, NOW + 60, NULL, NULL};
  m5_jwt_issue_t bad[12];
  for (size_t i = 0; i < 12; i++)
    bad[i] = ok;
  bad[0].iss = NULL;
  bad[1].sub = "";
  bad[2].aud = NULL;
  bad[3].client_id = NULL;
  bad[4].scope = NULL;
  bad[5].sub = long_id;
  bad[6].exp = NOW;
  bad[7].iat = -1;
  bad[8].cnf_x5t_s256 = "short";
  bad[9].jti = long_id;
  bad[10].sub = "\xff\xfe";
  bad[11].cnf_x5t_s256 = "!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!";
  char *tok = (char *)1;
  for (size_t i = 0; i < 12; i++) {
    assert_int_equal(m5_jwt_issue(F->jwk, &bad[i], &tok), M5_EINVAL);
    assert_null(tok);
  }
  assert_int_equal(m5_jwt_issue(NULL, &ok, &tok), M5_EINVAL);
  assert_int_equal(m5_jwt_issue(F->jwk, NULL, &tok), M5_EINVAL);
  assert_int_equal(m5_jwt_issue(F->jwk, &ok, NULL), M5_EINVAL);
  long_id[M5_JWT_ID_MAX] = '\0'; /* exactly the maximum is fine */
  bad[5].sub = long_id;
  assert_int_equal(m5_jwt_issue(F->jwk, &bad[5], &tok), M5_OK);
  free(tok);
}

/* ---- verifying: header ---- */

/* alg is pinned to ES256 before any signature is looked at: alg none with an empty signature,
 * the classic HS256 token keyed with the issuer's public key PEM, ES384 (signed with SHA-384
 * by the issuer's own key, which cjose 0.6.2.1 would verify), a lowercase and a missing alg. */
static void test_verify_alg(void **state) {
  (void)state;
  json_t *c = std_claims();
  char *claims = json_dumps(c, JSON_COMPACT);
  json_decref(c);
  char h[256];

  snprintf(h, sizeof h, "{\"alg\":\"ES256\",\"typ\":\"at+jwt\",\"kid\":\"%s\"}", F->kid);
  check_free(forge(F->pk, h, claims), M5_JWT_OK); /* the forging itself is sound */

  snprintf(h, sizeof h, "{\"alg\":\"none\",\"typ\":\"at+jwt\",\"kid\":\"%s\"}", F->kid);
  char *hb = b64u_str(h), *pb = b64u_str(claims);
  char *tok = join3(hb, pb, "");
  check(tok, M5_JWT_BAD_HEADER);
  free(tok), free(hb);

  BIO *bio = BIO_new(BIO_s_mem());
  assert_int_equal(PEM_write_bio_PUBKEY(bio, F->pk), 1);
  char *pem = NULL;
  long pemlen = BIO_get_mem_data(bio, &pem);
  snprintf(h, sizeof h, "{\"alg\":\"HS256\",\"typ\":\"at+jwt\",\"kid\":\"%s\"}", F->kid);
  hb = b64u_str(h);
  char *input = join3(hb, pb, "");
  input[strlen(input) - 1] = '\0';
  unsigned char mac[32];
  unsigned maclen = 0;
  assert_non_null(
      HMAC(EVP_sha256(), pem, (int)pemlen, (unsigned char *)input, strlen(input), mac, &maclen));
  char *sb = b64u(mac, maclen);
  tok = join3(hb, pb, sb);
  check(tok, M5_JWT_BAD_HEADER);
  free(tok), free(sb), free(input), free(hb), free(pb);
  BIO_free(bio);

  snprintf(h, sizeof h, "{\"alg\":\"ES384\",\"typ\":\"at+jwt\",\"kid\":\"%s\"}", F->kid);
  check_free(forge_md(F->pk, EVP_sha384(), h, claims), M5_JWT_BAD_HEADER);
  snprintf(h, sizeof h, "{\"alg\":\"es256\",\"typ\":\"at+jwt\",\"kid\":\"%s\"}", F->kid);
  check_free(forge(F->pk, h, claims), M5_JWT_BAD_HEADER);
  snprintf(h, sizeof h, "{\"typ\":\"at+jwt\",\"kid\":\"%s\"}", F->kid);
  check_free(forge(F->pk, h, claims), M5_JWT_BAD_HEADER);
  snprintf(h, sizeof h, "{\"alg\":[\"ES256\"],\"typ\":\"at+jwt\",\"kid\":\"%s\"}", F->kid);
  check_free(forge(F->pk, h, claims), M5_JWT_BAD_HEADER);
  free(claims);
}

/* Header members that bring a key or a key location, and crit, are refused even on a token the
 * trusted key signed; typ must be at+jwt (case-insensitive, with or without application/). */
static void test_verify_header_members(void **state) {
  (void)state;
  json_t *c = std_claims();
  char *claims = json_dumps(c, JSON_COMPACT);
  json_decref(c);
  char *jwk = m5_jwks_to_json(F->set); /* a public JWK set; its first key as "jwk" */
  json_t *js = json_loads(jwk, 0, NULL);
  char *one = json_dumps(json_array_get(json_object_get(js, "keys"), 0), JSON_COMPACT);
  json_decref(js);
  free(jwk);
  const struct {
    const char *extra;
    m5_jwt_err_t want;
  } cases[] = {
      {",\"jwk\":", M5_JWT_BAD_HEADER}, /* followed by the key */
      {",\"jku\":\"https://evil.example/jwks\"", M5_JWT_BAD_HEADER},
      {",\"x5u\":\"https://evil.example/cert\"", M5_JWT_BAD_HEADER},
      {",\"x5c\":[\"MIIB\"]", M5_JWT_BAD_HEADER},
      {",\"crit\":[\"exp\"]", M5_JWT_BAD_HEADER},
      {",\"cty\":\"JWT\"", M5_JWT_OK}, /* an unrelated member is fine */
  };
  char h[1024];
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    int is_jwk = i == 0;
    snprintf(h, sizeof h, "{\"alg\":\"ES256\",\"typ\":\"at+jwt\",\"kid\":\"%s\"%s%s}", F->kid,
             cases[i].extra, is_jwk ? one : "");
    check_free(forge(F->pk, h, claims), cases[i].want);
  }
  free(one);

  const struct {
    const char *typ;
    m5_jwt_err_t want;
  } typs[] = {{"\"JWT\"", M5_JWT_BAD_HEADER},
              {"\"jwt\"", M5_JWT_BAD_HEADER},
              {"\"at+jwt \"", M5_JWT_BAD_HEADER},
              {"1", M5_JWT_BAD_HEADER},
              {"\"AT+JWT\"", M5_JWT_OK},
              {"\"application/at+jwt\"", M5_JWT_OK},
              {"\"Application/AT+JWT\"", M5_JWT_OK},
              {"\"application/jwt\"", M5_JWT_BAD_HEADER}};
  for (size_t i = 0; i < sizeof typs / sizeof typs[0]; i++) {
    snprintf(h, sizeof h, "{\"alg\":\"ES256\",\"typ\":%s,\"kid\":\"%s\"}", typs[i].typ, F->kid);
    check_free(forge(F->pk, h, claims), typs[i].want);
  }
  snprintf(h, sizeof h, "{\"alg\":\"ES256\",\"kid\":\"%s\"}", F->kid);
  check_free(forge(F->pk, h, claims), M5_JWT_BAD_HEADER);
  /* A repeated member: a reader keeping the first alg and one keeping the last disagree. */
  snprintf(h, sizeof h, "{\"alg\":\"HS256\",\"alg\":\"ES256\",\"typ\":\"at+jwt\",\"kid\":\"%s\"}",
           F->kid);
  check_free(forge(F->pk, h, claims), M5_JWT_MALFORMED);
  free(claims);
}

/* kid must name a key of the set; a token naming our kid but signed by another key fails on
 * its signature. */
static void test_verify_kid(void **state) {
  (void)state;
  json_t *c = std_claims();
  char *claims = json_dumps(c, JSON_COMPACT);
  json_decref(c);
  check_free(forge(F->pk, "{\"alg\":\"ES256\",\"typ\":\"at+jwt\"}", claims), M5_JWT_UNKNOWN_KID);
  check_free(forge(F->pk, "{\"alg\":\"ES256\",\"typ\":\"at+jwt\",\"kid\":\"other\"}", claims),
             M5_JWT_UNKNOWN_KID);
  check_free(forge(F->pk, "{\"alg\":\"ES256\",\"typ\":\"at+jwt\",\"kid\":7}", claims),
             M5_JWT_UNKNOWN_KID);
  char *h = std_header();
  check_free(forge(F->other, h, claims), M5_JWT_BAD_SIGNATURE);
  /* the signature is judged before the claims: these would be MISSING_CLAIM */
  check_free(forge(F->other, h, "{}"), M5_JWT_BAD_SIGNATURE);
  free(h), free(claims);
}

/* ---- verifying: signature and form ---- */

static char *replace_part(const char *tok, int part, const char *with) {
  const char *d1 = strchr(tok, '.'), *d2 = strrchr(tok, '.');
  char *h = strndup(tok, (size_t)(d1 - tok)), *p = strndup(d1 + 1, (size_t)(d2 - d1 - 1));
  char *s = strdup(d2 + 1);
  char *t = join3(part == 0 ? with : h, part == 1 ? with : p, part == 2 ? with : s);
  free(h), free(p), free(s);
  return t;
}

static void test_verify_tampering(void **state) {
  (void)state;
  char *tok = issue_std(NULL);
  check(tok, M5_JWT_OK);
  size_t len = strlen(tok);
  const char *d1 = strchr(tok, '.'), *d2 = strrchr(tok, '.');

  /* one payload character changed (in the middle: still canonical base64url) */
  char *t = strdup(tok);
  size_t mid = (size_t)(d1 - tok) + (size_t)(d2 - d1) / 2;
  t[mid] = t[mid] == 'A' ? 'B' : 'A';
  check_free(t, M5_JWT_BAD_SIGNATURE);
  /* one signature character changed */
  t = strdup(tok);
  size_t at = (size_t)(d2 - tok) + 10;
  t[at] = t[at] == 'A' ? 'B' : 'A';
  check_free(t, M5_JWT_BAD_SIGNATURE);
  /* a different header (one more member) with the original signature */
  char h[256];
  snprintf(h, sizeof h, "{\"alg\":\"ES256\",\"typ\":\"at+jwt\",\"kid\":\"%s\",\"cty\":\"x\"}",
           F->kid);
  char *hb = b64u_str(h);
  check_free(replace_part(tok, 0, hb), M5_JWT_BAD_SIGNATURE);
  free(hb);
  /* another token's payload under this signature */
  char *tok2 = issue_std(F->x5t_a);
  const char *e1 = strchr(tok2, '.'), *e2 = strrchr(tok2, '.');
  char *p2 = strndup(e1 + 1, (size_t)(e2 - e1 - 1));
  check_free(replace_part(tok, 1, p2), M5_JWT_BAD_SIGNATURE);
  free(p2), free(tok2);
  /* 65 signature octets, R||S||00: cjose 0.6.2.1 alone accepts this second spelling */
  t = malloc(len + 2);
  snprintf(t, len + 2, "%sA", tok);
  check_free(t, M5_JWT_BAD_SIGNATURE);
  /* '=' padding (cjose accepts it too), a truncated and an empty signature */
  t = malloc(len + 3);
  snprintf(t, len + 3, "%s==", tok);
  check_free(t, M5_JWT_MALFORMED);
  check_free(strndup(tok, len - 2), M5_JWT_BAD_SIGNATURE);
  check_free(strndup(tok, (size_t)(d2 - tok) + 1), M5_JWT_BAD_SIGNATURE);
  /* a correct signature in DER (what OpenSSL gives), not R||S */
  EVP_MD_CTX *ctx = EVP_MD_CTX_new();
  unsigned char der[128];
  size_t derlen = sizeof der;
  assert_int_equal(EVP_DigestSignInit(ctx, NULL, EVP_sha256(), NULL, F->pk), 1);
  assert_int_equal(
      EVP_DigestSign(ctx, der, &derlen, (const unsigned char *)tok, (size_t)(d2 - tok)), 1);
  EVP_MD_CTX_free(ctx);
  char *db = b64u(der, derlen);
  check_free(replace_part(tok, 2, db), M5_JWT_BAD_SIGNATURE);
  free(db);
  free(tok);
}

static void test_verify_malformed(void **state) {
  (void)state;
  const char *bad[] = {"",     "a",       "a.b",     "a.b.c.d",     ".b.c",
                       "a..c", "a b.c.d", "a+b.c.d", "eyJ9.e30.AA", "W10.e30.AA"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
    check(bad[i], M5_JWT_MALFORMED);
  /* a NUL inside the given length */
  char *tok = issue_std(NULL);
  size_t len = strlen(tok);
  tok[5] = '\0';
  m5_jwt_expect_t x = expect();
  check_x(tok, len, &x, M5_JWT_MALFORMED, NULL);
  free(tok);
  /* validly signed payloads that are not a claims object, or repeat a member */
  char *h = std_header();
  check_free(forge(F->pk, h, "[]"), M5_JWT_MALFORMED);
  check_free(forge(F->pk, h, "not json"), M5_JWT_MALFORMED);
  json_t *c = std_claims();
  char *text = json_dumps(c, JSON_COMPACT);
  json_decref(c);
  char dup[1024];
  snprintf(dup, sizeof dup, "{\"sub\":\"admin\",%s", text + 1);
  check_free(forge(F->pk, h, dup), M5_JWT_MALFORMED);
  free(text), free(h);
  /* no set, no expectations */
  char diag[128];
  tok = issue_std(NULL);
  assert_int_equal(m5_jwt_verify(tok, strlen(tok), NULL, NULL, NULL, diag, sizeof diag),
                   M5_JWT_BAD_ISSUER);
  x = expect();
  assert_int_equal(m5_jwt_verify(tok, strlen(tok), NULL, &x, NULL, diag, sizeof diag),
                   M5_JWT_UNKNOWN_KID);
  free(tok);
}

/* Exactly M5_JWT_MAX bytes is accepted; one byte more is refused without being parsed. */
static void test_verify_size(void **state) {
  (void)state;
  char *pad = calloc(M5_JWT_MAX, 1);
  assert_non_null(pad);
  int at_max = 0, over = 0;
  /* Unpadded base64url never has a length of 4k+1, so some header lengths cannot make the
   * exact total: vary the header by a space too. */
  for (int sp = 0; sp < 4 && !(at_max && over); sp++) {
    char h[256];
    snprintf(h, sizeof h, "{\"alg\":\"ES256\",%*s\"typ\":\"at+jwt\",\"kid\":\"%s\"}", sp, "",
             F->kid);
    for (size_t n = 5400; n < 6400 && !(at_max && over); n++) {
      json_t *c = std_claims();
      memset(pad, 'p', n);
      pad[n] = '\0';
      json_object_set_new(c, "pad", json_string(pad));
      char *text = json_dumps(c, JSON_COMPACT);
      json_decref(c);
      char *tok = forge(F->pk, h, text);
      free(text);
      size_t len = strlen(tok);
      if (len == M5_JWT_MAX) {
        check(tok, M5_JWT_OK);
        at_max = 1;
      } else if (len > M5_JWT_MAX && len <= M5_JWT_MAX + 2) {
        check(tok, M5_JWT_TOO_LARGE);
        over = 1;
      }
      free(tok);
    }
  }
  assert_true(at_max && over);
  free(pad);
  /* a large buffer with no terminator */
  char *big = malloc(1 << 20);
  assert_non_null(big);
  memset(big, 'A', 1 << 20);
  char diag[128];
  m5_jwt_expect_t x = expect();
  assert_int_equal(m5_jwt_verify(big, 1 << 20, F->set, &x, NULL, diag, sizeof diag),
                   M5_JWT_TOO_LARGE);
  free(big);
}

/* ---- verifying: claims ---- */

static void test_verify_missing_claims(void **state) {
  (void)state;
  const char *names[] = {"iss", "sub", "aud", "exp", "iat", "jti", "client_id", "scope"};
  for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
    json_t *c = std_claims();
    assert_int_equal(json_object_del(c, names[i]), 0);
    check_claims_free(c, M5_JWT_MISSING_CLAIM);
  }
}

static json_t *with(const char *name, json_t *v) {
  json_t *c = std_claims();
  assert_int_equal(json_object_set_new(c, name, v), 0);
  return c;
}

static json_t *with_str_len(const char *name, size_t n) {
  char *s = malloc(n + 1);
  assert_non_null(s);
  memset(s, 'a', n);
  s[n] = '\0';
  json_t *c = with(name, json_string(s));
  free(s);
  return c;
}

static void test_verify_claim_types(void **state) {
  (void)state;
  check_claims_free(with("exp", json_string("1800000300")), M5_JWT_MALFORMED);
  check_claims_free(with("exp", json_real(1800000300.0)), M5_JWT_MALFORMED);
  check_claims_free(with("iat", json_real(1799999990.5)), M5_JWT_MALFORMED);
  check_claims_free(with("nbf", json_string("0")), M5_JWT_MALFORMED);
  check_claims_free(with("exp", json_true()), M5_JWT_MALFORMED);
  check_claims_free(with("sub", json_integer(5)), M5_JWT_MALFORMED);
  check_claims_free(with("sub", json_string("")), M5_JWT_MALFORMED);
  check_claims_free(with("aud", json_integer(5)), M5_JWT_MALFORMED);
  check_claims_free(with("scope", json_null()), M5_JWT_MALFORMED);
  /* each string claim: exactly its buffer is fine, one more byte is not */
  const struct {
    const char *name;
    size_t max;
  } sizes[] = {{"sub", M5_JWT_ID_MAX},
               {"client_id", M5_JWT_ID_MAX},
               {"jti", M5_JWT_ID_MAX},
               {"scope", M5_JWT_SCOPE_MAX}};
  for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
    check_claims_free(with_str_len(sizes[i].name, sizes[i].max), M5_JWT_OK);
    check_claims_free(with_str_len(sizes[i].name, sizes[i].max + 1), M5_JWT_MALFORMED);
  }
  check_claims_free(with_str_len("iss", M5_JWT_URL_MAX + 1), M5_JWT_MALFORMED);
}

static void test_verify_iss_aud(void **state) {
  (void)state;
  check_claims_free(with("iss", json_string("https://evil.example.org")), M5_JWT_BAD_ISSUER);
  check_claims_free(with("iss", json_string(ISS "/")), M5_JWT_BAD_ISSUER);
  check_claims_free(with("aud", json_string("https://other.example.org")), M5_JWT_BAD_AUDIENCE);
  check_claims_free(with("aud", json_pack("[s,s]", "https://other.example.org", AUD)), M5_JWT_OK);
  check_claims_free(with("aud", json_pack("[s]", AUD)), M5_JWT_OK);
  check_claims_free(with("aud", json_pack("[s,s]", "https://a.example", "https://b.example")),
                    M5_JWT_BAD_AUDIENCE);
  check_claims_free(with("aud", json_array()), M5_JWT_BAD_AUDIENCE);
  check_claims_free(with("aud", json_pack("[s,i]", AUD, 1)), M5_JWT_MALFORMED);
}

static void test_verify_times(void **state) {
  (void)state;
  check_claims_free(with("exp", json_integer(NOW - LEEWAY)), M5_JWT_EXPIRED);
  check_claims_free(with("exp", json_integer(NOW - LEEWAY + 1)), M5_JWT_OK);
  check_claims_free(with("exp", json_integer(INT64_MAX)), M5_JWT_OK);
  check_claims_free(with("exp", json_integer(INT64_MIN)), M5_JWT_EXPIRED);
  check_claims_free(with("nbf", json_integer(NOW + LEEWAY + 1)), M5_JWT_NOT_YET_VALID);
  check_claims_free(with("nbf", json_integer(NOW + LEEWAY)), M5_JWT_OK);
  check_claims_free(with("iat", json_integer(NOW + LEEWAY + 1)), M5_JWT_NOT_YET_VALID);
  check_claims_free(with("iat", json_integer(NOW + LEEWAY)), M5_JWT_OK);
  /* a negative leeway counts as none */
  json_t *c = with("exp", json_integer(NOW + 1));
  char *tok = forge_claims(c);
  m5_jwt_expect_t x = expect();
  x.leeway_s = -100;
  check_x(tok, strlen(tok), &x, M5_JWT_OK, NULL);
  x.now = NOW + 1;
  check_x(tok, strlen(tok), &x, M5_JWT_EXPIRED, NULL);
  /* sums that overflow int64 (UBSan would say so) saturate: exp + leeway is far ahead */
  x.now = INT64_MAX;
  x.leeway_s = INT64_MAX;
  check_x(tok, strlen(tok), &x, M5_JWT_OK, NULL);
  free(tok);
}

/* RFC 8705 §3: the certificate binding. */
static void test_verify_cnf(void **state) {
  (void)state;
  m5_jwt_expect_t x = expect();
  char *bound_a = forge_claims(with("cnf", json_pack("{s:s}", "x5t#S256", F->x5t_a)));
  char *unbound = forge_claims(std_claims());
  size_t la = strlen(bound_a), lu = strlen(unbound);
  m5_jwt_claims_t got;

  x.cert_x5t_s256 = F->x5t_a;
  check_x(bound_a, la, &x, M5_JWT_OK, &got);
  assert_int_equal(got.bound, 1);
  x.require_cnf = 1;
  check_x(bound_a, la, &x, M5_JWT_OK, &got);
  check_x(unbound, lu, &x, M5_JWT_CNF_MISMATCH, NULL);
  x.require_cnf = 0;
  check_x(unbound, lu, &x, M5_JWT_OK, &got);
  assert_int_equal(got.bound, 0);
  x.cert_x5t_s256 = F->x5t_b;
  check_x(bound_a, la, &x, M5_JWT_CNF_MISMATCH, NULL);
  x.cert_x5t_s256 = NULL;
  check_x(bound_a, la, &x, M5_JWT_CNF_MISMATCH, NULL);
  x.cert_x5t_s256 = "short";
  check_x(bound_a, la, &x, M5_JWT_CNF_MISMATCH, NULL);
  free(bound_a), free(unbound);

  x = expect();
  x.cert_x5t_s256 = F->x5t_a;
  check_claims_free(with("cnf", json_pack("{s:s}", "jkt", F->x5t_a)), M5_JWT_CNF_MISMATCH);
  check_claims_free(with("cnf", json_pack("{s:s,s:s}", "x5t#S256", F->x5t_a, "jkt", F->x5t_a)),
                    M5_JWT_CNF_MISMATCH);
  check_claims_free(with("cnf", json_pack("{s:s}", "x5t#S256", "abc")), M5_JWT_MALFORMED);
  check_claims_free(with("cnf", json_string(F->x5t_a)), M5_JWT_MALFORMED);
}

/* ---- certificate thumbprint ---- */

static X509 *self_signed(EVP_PKEY *k) {
  X509 *c = X509_new();
  assert_non_null(c);
  X509_NAME *n = X509_NAME_new();
  X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC, (const unsigned char *)"as1", -1, -1, 0);
  assert_int_equal(X509_set_version(c, 2), 1);
  ASN1_INTEGER_set(X509_get_serialNumber(c), 42);
  X509_set_subject_name(c, n);
  X509_set_issuer_name(c, n);
  X509_gmtime_adj(X509_getm_notBefore(c), 0);
  X509_gmtime_adj(X509_getm_notAfter(c), 3600);
  assert_int_equal(X509_set_pubkey(c, k), 1);
  assert_true(X509_sign(c, k, EVP_sha256()) > 0);
  X509_NAME_free(n);
  return c;
}

static void test_x5t_s256(void **state) {
  (void)state;
  X509 *a = self_signed(F->pk), *b = self_signed(F->other);
  char got[M5_JWT_X5T_LEN + 1], want[M5_JWT_X5T_LEN + 1], got_b[M5_JWT_X5T_LEN + 1];
  unsigned char *der = NULL;
  int n = i2d_X509(a, &der);
  assert_true(n > 0);
  sha256_b64u(der, (size_t)n, want);
  OPENSSL_free(der);
  assert_int_equal(m5_jwt_x5t_s256(a, got), M5_OK);
  assert_string_equal(got, want);
  assert_int_equal(m5_jwt_x5t_s256(b, got_b), M5_OK);
  assert_string_not_equal(got, got_b);
  assert_int_equal(m5_jwt_x5t_s256(NULL, got), M5_EINVAL);

  /* End to end: bound to a, good on a connection with a, refused on one with b. */
  char *tok = issue_std(got);
  m5_jwt_expect_t x = expect();
  x.cert_x5t_s256 = got;
  x.require_cnf = 1;
  check_x(tok, strlen(tok), &x, M5_JWT_OK, NULL);
  x.cert_x5t_s256 = got_b;
  check_x(tok, strlen(tok), &x, M5_JWT_CNF_MISMATCH, NULL);
  free(tok);
  X509_free(a);
  X509_free(b);
}

static void test_err_names(void **state) {
  (void)state;
  for (int i = M5_JWT_OK; i <= M5_JWT_CNF_MISMATCH; i++) {
    const char *n = m5_jwt_err_name((m5_jwt_err_t)i);
    assert_string_not_equal(n, "unknown");
    for (int j = M5_JWT_OK; j < i; j++)
      assert_string_not_equal(n, m5_jwt_err_name((m5_jwt_err_t)j));
  }
  assert_string_equal(m5_jwt_err_name((m5_jwt_err_t)99), "unknown");
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_kid_is_rfc7638_thumbprint),
      cmocka_unit_test(test_load_pem_refuses),
      cmocka_unit_test(test_jwks_to_json_public_only),
      cmocka_unit_test(test_jwks_parse_rules),
      cmocka_unit_test(test_issue_round_trip),
      cmocka_unit_test(test_issue_many_signatures),
      cmocka_unit_test(test_issue_refuses),
      cmocka_unit_test(test_verify_alg),
      cmocka_unit_test(test_verify_header_members),
      cmocka_unit_test(test_verify_kid),
      cmocka_unit_test(test_verify_tampering),
      cmocka_unit_test(test_verify_malformed),
      cmocka_unit_test(test_verify_size),
      cmocka_unit_test(test_verify_missing_claims),
      cmocka_unit_test(test_verify_claim_types),
      cmocka_unit_test(test_verify_iss_aud),
      cmocka_unit_test(test_verify_times),
      cmocka_unit_test(test_verify_cnf),
      cmocka_unit_test(test_x5t_s256),
      cmocka_unit_test(test_err_names),
  };
  return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
