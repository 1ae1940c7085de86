/* MSGin5G-3 access tokens: RFC 9068 JWT access tokens as ES256 compact JWS (RFC 7515, TS 33.210
 * cl. 6.3, msgin5g-security.md §5.2), certificate-bound per RFC 8705 §3.1 (cnf x5t#S256).
 * cjose signs and checks the signature; everything cjose 0.6.2.1 leaves open is closed here
 * before it is called: it imports alg "none", ignores "crit", accepts '=' padding and a
 * signature with trailing octets (it splits sig_len / 2), and parses headers without refusing
 * duplicate members. So the compact form is split and checked first (alphabet, three parts,
 * header parsed with JSON_REJECT_DUPLICATES and vetted), the signature must be exactly the 64
 * octets of R||S, and only the payload cjose verified is read as claims. */
#include "oauth/jwk_int.h"

#include "core/err.h"
#include "crypto/codec.h"

#include <cjose/header.h>
#include <cjose/jws.h>
#include <jansson.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SIG_LEN 64     /* ES256: R || S, 32 octets each (RFC 7518 §3.4) */
#define SIG_B64_LEN 86 /* its unpadded base64url */
#define JTI_RAND 16    /* 128 random bits when the caller names no jti */

typedef struct {
  char *text;
  size_t len;
} diag_t;

__attribute__((format(printf, 3, 4))) static m5_jwt_err_t reject(diag_t *d, m5_jwt_err_t e,
                                                                 const char *fmt, ...) {
  if (d->text && d->len) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(d->text, d->len, fmt, ap);
    va_end(ap);
  }
  return e;
}

static int b64url_char(char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
         c == '_';
}

/* Locale-independent: typ is ASCII, and a server may run under any LC_CTYPE. */
static int ascii_caseeq(const char *a, const char *b) {
  for (; *a && *b; a++, b++) {
    char ca = *a >= 'A' && *a <= 'Z' ? (char)(*a - 'A' + 'a') : *a;
    char cb = *b >= 'A' && *b <= 'Z' ? (char)(*b - 'A' + 'a') : *b;
    if (ca != cb) return 0;
  }
  return *a == *b;
}

/* Decodes token[off, off+n) (base64url alphabet already checked) into a malloc'd buffer of
 * *outn octets. The text copy is part of a bearer credential, so it is wiped. */
static uint8_t *segment_decode(const char *token, size_t off, size_t n, size_t *outn) {
  char *text = malloc(n + 1);
  uint8_t *bin = malloc(n / 4 * 3 + 3);
  int ok = text && bin;
  if (ok) {
    memcpy(text, token + off, n);
    text[n] = '\0';
    ok = m5_b64url_decode(text, bin, n / 4 * 3 + 3, outn) == M5_OK;
    m5_wipe(text, n);
  }
  free(text);
  if (!ok) {
    free(bin);
    return NULL;
  }
  return bin;
}

/* ---- header ---- */

/* RFC 7515 §4.1 members that carry a key or say where to fetch one (a token must never pick
 * its own key: TS 33.210 cl. 6.3 forbids "jwk"), and "crit", which would oblige us to
 * understand extensions we do not implement. */
static const char *const refused_members[] = {"jwk", "jku", "x5u", "x5c", "crit"};

static m5_jwt_err_t check_header(json_t *h, const m5_jwks_t *keys, const m5_jwk_t **key,
                                 diag_t *d) {
  json_t *alg = json_object_get(h, "alg");
  if (!json_is_string(alg) || strcmp(json_string_value(alg), "ES256"))
    return reject(d, M5_JWT_BAD_HEADER, "alg must be ES256");
  for (size_t i = 0; i < sizeof refused_members / sizeof refused_members[0]; i++)
    if (json_object_get(h, refused_members[i]))
      return reject(d, M5_JWT_BAD_HEADER, "header member %s is not accepted", refused_members[i]);
  json_t *typ = json_object_get(h, "typ");
  if (!json_is_string(typ) || (!ascii_caseeq(json_string_value(typ), "at+jwt") &&
                               !ascii_caseeq(json_string_value(typ), "application/at+jwt")))
    return reject(d, M5_JWT_BAD_HEADER, "typ must be at+jwt (RFC 9068)");
  json_t *kid = json_object_get(h, "kid");
  if (!json_is_string(kid)) return reject(d, M5_JWT_UNKNOWN_KID, "header has no kid");
  if (!(*key = m5_jwks_find(keys, json_string_value(kid))))
    return reject(d, M5_JWT_UNKNOWN_KID, "kid names no key of the issuer");
  return M5_JWT_OK;
}

/* ---- claims ---- */

static const char *const required_claims[] = {"iss", "sub",       "aud",   "exp",
                                              "iat", "client_id", "scope", "jti"};

/* Copies string claim name into out (size bytes), refusing other types, overlong values and,
 * unless empty_ok, the empty string. */
static m5_jwt_err_t copy_claim(json_t *c, const char *name, char *out, size_t size, int empty_ok,
                               diag_t *d) {
  json_t *v = json_object_get(c, name);
  if (!json_is_string(v) || json_string_length(v) >= size || (!empty_ok && !json_string_length(v)))
    return reject(d, M5_JWT_MALFORMED, "claim %s must be a %sstring of at most %zu bytes", name,
                  empty_ok ? "" : "non-empty ", size - 1);
  memcpy(out, json_string_value(v), json_string_length(v) + 1);
  return M5_JWT_OK;
}

static m5_jwt_err_t int_claim(json_t *c, const char *name, int64_t *out, diag_t *d) {
  json_t *v = json_object_get(c, name);
  /* RFC 7519 NumericDate allows fractions; RFC 9068 issuers send integers, and a number we
   * would have to round is refused rather than guessed at. */
  if (!json_is_integer(v))
    return reject(d, M5_JWT_MALFORMED, "claim %s must be an integer (seconds)", name);
  *out = (int64_t)json_integer_value(v);
  return M5_JWT_OK;
}

static m5_jwt_err_t check_audience(json_t *aud, const char *want, diag_t *d) {
  int found = 0;
  if (json_is_string(aud)) {
    found = want && !strcmp(json_string_value(aud), want);
  } else if (json_is_array(aud)) {
    size_t i;
    json_t *a;
    json_array_foreach(aud, i, a) {
      if (!json_is_string(a)) return reject(d, M5_JWT_MALFORMED, "aud must hold strings only");
      if (want && !strcmp(json_string_value(a), want)) found = 1;
    }
  } else {
    return reject(d, M5_JWT_MALFORMED, "aud must be a string or an array of strings");
  }
  return found ? M5_JWT_OK : reject(d, M5_JWT_BAD_AUDIENCE, "aud does not name this server");
}

static m5_jwt_err_t check_times(json_t *c, const m5_jwt_expect_t *x, m5_jwt_claims_t *out,
                                diag_t *d) {
  m5_jwt_err_t e;
  int64_t nbf = 0, leeway = x->leeway_s > 0 ? x->leeway_s : 0, t;
  if ((e = int_claim(c, "exp", &out->exp, d)) || (e = int_claim(c, "iat", &out->iat, d))) return e;
  int has_nbf = json_object_get(c, "nbf") != NULL;
  if (has_nbf && (e = int_claim(c, "nbf", &nbf, d))) return e;
  /* Overflow-checked: exp and iat are the token's, any 64-bit value. An exp so large that
   * exp + leeway overflows is simply far in the future. */
  if (!__builtin_add_overflow(out->exp, leeway, &t) && t <= x->now)
    return reject(d, M5_JWT_EXPIRED, "token has expired");
  int64_t latest = __builtin_add_overflow(x->now, leeway, &t) ? INT64_MAX : t;
  if (has_nbf && nbf > latest)
    return reject(d, M5_JWT_NOT_YET_VALID, "token is not valid yet (nbf)");
  if (out->iat > latest)
    return reject(d, M5_JWT_NOT_YET_VALID, "token is issued in the future (iat)");
  return M5_JWT_OK;
}

/* RFC 8705 §3: a token bound to a certificate is only good on a connection authenticated by
 * that certificate; the thumbprints are compared in constant time. */
static m5_jwt_err_t check_binding(json_t *c, const m5_jwt_expect_t *x, m5_jwt_claims_t *out,
                                  diag_t *d) {
  json_t *cnf = json_object_get(c, "cnf");
  if (cnf) {
    if (!json_is_object(cnf)) return reject(d, M5_JWT_MALFORMED, "cnf must be a JSON object");
    json_t *t = json_object_get(cnf, "x5t#S256");
    if (json_object_size(cnf) != (t ? 1u : 0u))
      return reject(d, M5_JWT_CNF_MISMATCH,
                    "token is bound by a confirmation method other than x5t#S256");
    if (t) {
      if (!json_is_string(t) || json_string_length(t) != M5_JWT_X5T_LEN)
        return reject(d, M5_JWT_MALFORMED, "cnf x5t#S256 must be %d characters of base64url",
                      M5_JWT_X5T_LEN);
      if (!x->cert_x5t_s256)
        return reject(d, M5_JWT_CNF_MISMATCH,
                      "token is bound to a client certificate and none was presented");
      if (strnlen(x->cert_x5t_s256, M5_JWT_X5T_LEN + 1) != M5_JWT_X5T_LEN ||
          !m5_ct_equal(json_string_value(t), x->cert_x5t_s256, M5_JWT_X5T_LEN))
        return reject(d, M5_JWT_CNF_MISMATCH, "token is bound to another client certificate");
      out->bound = 1;
    }
  }
  if (!out->bound && x->require_cnf)
    return reject(d, M5_JWT_CNF_MISMATCH,
                  "token is not bound to a client certificate (cnf x5t#S256)");
  return M5_JWT_OK;
}

static m5_jwt_err_t check_claims(json_t *c, const m5_jwt_expect_t *x, m5_jwt_claims_t *out,
                                 diag_t *d) {
  m5_jwt_err_t e;
  for (size_t i = 0; i < sizeof required_claims / sizeof required_claims[0]; i++)
    if (!json_object_get(c, required_claims[i]))
      return reject(d, M5_JWT_MISSING_CLAIM, "claim %s is missing", required_claims[i]);
  if ((e = copy_claim(c, "iss", out->iss, sizeof out->iss, 0, d)) ||
      (e = copy_claim(c, "sub", out->sub, sizeof out->sub, 0, d)) ||
      (e = copy_claim(c, "client_id", out->client_id, sizeof out->client_id, 0, d)) ||
      (e = copy_claim(c, "jti", out->jti, sizeof out->jti, 0, d)) ||
      (e = copy_claim(c, "scope", out->scope, sizeof out->scope, 1, d)))
    return e;
  if (strcmp(out->iss, x->issuer))
    return reject(d, M5_JWT_BAD_ISSUER, "iss is not the expected issuer");
  if ((e = check_audience(json_object_get(c, "aud"), x->audience, d))) return e;
  if ((e = check_times(c, x, out, d))) return e;
  return check_binding(c, x, out, d);
}

/* ---- verifying ---- */

static m5_jwt_err_t verify(const char *token, size_t len, const m5_jwks_t *keys,
                           const m5_jwt_expect_t *x, m5_jwt_claims_t *out, diag_t *d) {
  if (len > M5_JWT_MAX)
    return reject(d, M5_JWT_TOO_LARGE, "token is longer than %d bytes", M5_JWT_MAX);
  if (!token || !len) return reject(d, M5_JWT_MALFORMED, "no token");
  if (!x || !x->issuer) return reject(d, M5_JWT_BAD_ISSUER, "no issuer is configured");

  size_t dot[2], ndots = 0;
  for (size_t i = 0; i < len; i++) {
    if (token[i] == '.' && ndots < 2)
      dot[ndots++] = i;
    else if (!b64url_char(token[i]))
      return reject(d, M5_JWT_MALFORMED, "token is not three base64url parts");
  }
  if (ndots != 2 || dot[0] == 0 || dot[1] == dot[0] + 1)
    return reject(d, M5_JWT_MALFORMED, "token is not three base64url parts");

  m5_jwt_err_t e;
  size_t n = 0;
  uint8_t *hdr_text = segment_decode(token, 0, dot[0], &n);
  json_t *hdr =
      hdr_text ? json_loadb((const char *)hdr_text, n, JSON_REJECT_DUPLICATES, NULL) : NULL;
  free(hdr_text);
  if (!json_is_object(hdr)) {
    json_decref(hdr);
    return reject(d, M5_JWT_MALFORMED, "header is not a base64url JSON object");
  }
  const m5_jwk_t *key = NULL;
  e = check_header(hdr, keys, &key, d);
  json_decref(hdr);
  if (e) return e;

  size_t sig_b64 = len - dot[1] - 1;
  /* cjose 0.6.2.1 would split a longer signature in the middle and ignore the rest, so the
   * same token could be presented in several spellings. */
  uint8_t *sig = sig_b64 == SIG_B64_LEN ? segment_decode(token, dot[1] + 1, sig_b64, &n) : NULL;
  int sig_ok = sig && n == SIG_LEN;
  if (sig) m5_wipe(sig, n);
  free(sig);
  if (!sig_ok) return reject(d, M5_JWT_BAD_SIGNATURE, "signature is not the 64 octets of ES256");

  cjose_err cerr;
  memset(&cerr, 0, sizeof cerr);
  cjose_jws_t *jws = cjose_jws_import(token, len, &cerr);
  if (!jws) {
    ERR_clear_error();
    return reject(d, M5_JWT_MALFORMED, "token is not a JWS");
  }
  uint8_t *payload = NULL;
  size_t plen = 0;
  if (!cjose_jws_verify(jws, key->cj, &cerr)) {
    /* cjose leaves OpenSSL's reasons queued; TLS on this thread would take them as its own. */
    ERR_clear_error();
    cjose_jws_release(jws);
    return reject(d, M5_JWT_BAD_SIGNATURE, "signature does not verify");
  }
  json_t *claims = NULL;
  if (cjose_jws_get_plaintext(jws, &payload, &plen, &cerr))
    claims = json_loadb((const char *)payload, plen, JSON_REJECT_DUPLICATES, NULL);
  cjose_jws_release(jws);
  if (!json_is_object(claims)) {
    json_decref(claims);
    return reject(d, M5_JWT_MALFORMED, "claims are not a JSON object without duplicate members");
  }
  e = check_claims(claims, x, out, d);
  json_decref(claims);
  return e;
}

m5_jwt_err_t m5_jwt_verify(const char *token, size_t len, const m5_jwks_t *keys,
                           const m5_jwt_expect_t *x, m5_jwt_claims_t *out, char *diag,
                           size_t diag_len) {
  diag_t d = {diag, diag_len};
  m5_jwt_claims_t got;
  memset(&got, 0, sizeof got);
  if (diag && diag_len) diag[0] = '\0';
  m5_jwt_err_t e = verify(token, len, keys, x, &got, &d);
  /* Only a verified token's claims leave here; a rejected one's partial copy never does. */
  if (out) {
    if (e == M5_JWT_OK)
      *out = got;
    else
      memset(out, 0, sizeof *out);
  }
  m5_wipe(&got, sizeof got);
  return e;
}

int m5_jwt_has_scope(const m5_jwt_claims_t *c, const char *scope) {
  if (!c || !scope || !scope[0] || strchr(scope, ' ')) return 0;
  size_t n = strlen(scope);
  for (const char *p = c->scope; *p;) {
    while (*p == ' ')
      p++;
    const char *end = p;
    while (*end && *end != ' ')
      end++;
    if ((size_t)(end - p) == n && !memcmp(p, scope, n)) return 1;
    p = end;
  }
  return 0;
}

const char *m5_jwt_err_name(m5_jwt_err_t e) {
  switch (e) {
  case M5_JWT_OK:
    return "ok";
  case M5_JWT_MALFORMED:
    return "malformed";
  case M5_JWT_TOO_LARGE:
    return "too_large";
  case M5_JWT_BAD_HEADER:
    return "bad_header";
  case M5_JWT_UNKNOWN_KID:
    return "unknown_kid";
  case M5_JWT_BAD_SIGNATURE:
    return "bad_signature";
  case M5_JWT_MISSING_CLAIM:
    return "missing_claim";
  case M5_JWT_BAD_ISSUER:
    return "bad_issuer";
  case M5_JWT_BAD_AUDIENCE:
    return "bad_audience";
  case M5_JWT_EXPIRED:
    return "expired";
  case M5_JWT_NOT_YET_VALID:
    return "not_yet_valid";
  case M5_JWT_CNF_MISMATCH:
    return "cnf_mismatch";
  }
  return "unknown";
}

/* ---- issuing ---- */

/* A string claim we may issue: present, non-empty, and small enough for m5_jwt_claims_t. */
static int claim_ok(const char *s, size_t max) {
  return s && s[0] && strnlen(s, max + 1) <= max;
}

/* Sets a string member; jansson refuses text that is not UTF-8 (or fails to allocate). */
static int put_str(json_t *o, const char *name, const char *v) {
  json_t *s = json_string(v);
  return s && !json_object_set_new(o, name, s) ? M5_OK : M5_EINVAL;
}

static int put_int(json_t *o, const char *name, int64_t v) {
  return json_object_set_new(o, name, json_integer((json_int_t)v)) ? M5_ENOMEM : M5_OK;
}

/* The claims of c as compact JSON in a malloc'd buffer of *n bytes (not NUL-terminated). */
static int claims_text(const m5_jwt_issue_t *c, const char *jti, char **text, size_t *n) {
  json_t *o = json_object(), *cnf = NULL;
  int rc = o ? M5_OK : M5_ENOMEM;
  if (!rc) rc = put_str(o, "iss", c->iss);
  if (!rc) rc = put_str(o, "sub", c->sub);
  if (!rc) rc = put_str(o, "aud", c->aud);
  if (!rc) rc = put_str(o, "client_id", c->client_id);
  if (!rc) rc = put_str(o, "scope", c->scope);
  if (!rc) rc = put_int(o, "iat", c->iat);
  if (!rc) rc = put_int(o, "exp", c->exp);
  if (!rc) rc = put_str(o, "jti", jti);
  if (!rc && c->cnf_x5t_s256) {
    if (!(cnf = json_object()) || put_str(cnf, "x5t#S256", c->cnf_x5t_s256) ||
        json_object_set(o, "cnf", cnf))
      rc = M5_ENOMEM;
  }
  *text = NULL;
  if (!rc) {
    *n = json_dumpb(o, NULL, 0, JSON_COMPACT);
    if (!*n || !(*text = malloc(*n)) || json_dumpb(o, *text, *n, JSON_COMPACT) != *n)
      rc = M5_ENOMEM;
  }
  if (rc) {
    free(*text);
    *text = NULL;
  }
  json_decref(cnf);
  json_decref(o);
  return rc;
}

static int issue_checks(const m5_jwt_issue_t *c) {
  if (!claim_ok(c->iss, M5_JWT_URL_MAX) || !claim_ok(c->aud, M5_JWT_URL_MAX) ||
      !claim_ok(c->sub, M5_JWT_ID_MAX) || !claim_ok(c->client_id, M5_JWT_ID_MAX) ||
      !claim_ok(c->scope, M5_JWT_SCOPE_MAX) || (c->jti && !claim_ok(c->jti, M5_JWT_ID_MAX)))
    return M5_EINVAL;
  if (c->iat < 0 || c->exp <= c->iat) return M5_EINVAL;
  if (c->cnf_x5t_s256) {
    uint8_t md[32];
    size_t n = 0;
    if (strnlen(c->cnf_x5t_s256, M5_JWT_X5T_LEN + 1) != M5_JWT_X5T_LEN ||
        m5_b64url_decode(c->cnf_x5t_s256, md, sizeof md, &n) || n != sizeof md)
      return M5_EINVAL;
  }
  return M5_OK;
}

int m5_jwt_issue(const m5_jwk_t *key, const m5_jwt_issue_t *c, char **out) {
  if (out) *out = NULL;
  if (!key || !key->cj || !key->has_private || !c || !out || issue_checks(c)) return M5_EINVAL;

  char jti[M5_JWT_ID_MAX + 1];
  if (c->jti) {
    snprintf(jti, sizeof jti, "%s", c->jti);
  } else {
    uint8_t r[JTI_RAND];
    int rc = m5_random_bytes(r, sizeof r);
    if (!rc) rc = m5_b64url_encode(r, sizeof r, jti, sizeof jti);
    if (rc) return rc;
  }
  char *payload = NULL;
  size_t plen = 0;
  int rc = claims_text(c, jti, &payload, &plen);
  if (rc) return rc;

  cjose_err cerr;
  memset(&cerr, 0, sizeof cerr);
  cjose_header_t *hdr = cjose_header_new(&cerr);
  cjose_jws_t *jws = NULL;
  const char *compact = NULL;
  rc = M5_ENOMEM;
  if (hdr && cjose_header_set(hdr, CJOSE_HDR_ALG, CJOSE_HDR_ALG_ES256, &cerr) &&
      cjose_header_set(hdr, "typ", "at+jwt", &cerr) &&
      cjose_header_set(hdr, CJOSE_HDR_KID, key->kid, &cerr)) {
    rc = M5_ECRYPTO;
    jws = cjose_jws_sign(key->cj, hdr, (const uint8_t *)payload, plen, &cerr);
    if (jws && cjose_jws_export(jws, &compact, &cerr) && compact) {
      size_t n = strlen(compact);
      rc = (*out = malloc(n + 1)) ? M5_OK : M5_ENOMEM;
      if (*out) memcpy(*out, compact, n + 1);
    } else if (cerr.code == CJOSE_ERR_NO_MEMORY) {
      rc = M5_ENOMEM;
    }
  }
  if (rc) ERR_clear_error();
  if (jws) cjose_jws_release(jws);
  if (hdr) cjose_header_release(hdr);
  free(payload);
  return rc;
}

int m5_jwt_x5t_s256(const X509 *cert, char out[M5_JWT_X5T_LEN + 1]) {
  if (!cert || !out) return M5_EINVAL;
  unsigned char *der = NULL;
  int n = i2d_X509(cert, &der);
  uint8_t md[32];
  unsigned mdlen = 0;
  int ok = n > 0 && EVP_Digest(der, (size_t)n, md, &mdlen, EVP_sha256(), NULL) == 1 &&
           mdlen == sizeof md;
  OPENSSL_free(der);
  if (!ok) {
    ERR_clear_error();
    return M5_ECRYPTO;
  }
  return m5_b64url_encode(md, sizeof md, out, M5_JWT_X5T_LEN + 1);
}
