/* OAuth 2.0 access tokens for MSGin5G-3 (architecture §3.2, §4; TS 33.210 cl. 6.3 JOSE
 * profile; RFC 9068 JWT access tokens, RFC 7515 JWS, RFC 7517 JWK, RFC 7638 thumbprints,
 * RFC 8705 certificate-bound tokens). Built on libcjose (JWS, JWK) and jansson (claims).
 *
 * Strict by design: the only algorithm is ES256 (P-256, SHA-256); the header must say
 * typ "at+jwt" (or "application/at+jwt") and name a kid found in the key set; a header that
 * carries keys or key locations (jwk, jku, x5u, x5c) or any "crit" is refused; the token is at
 * most M5_JWT_MAX bytes. Verification checks the signature before it trusts any claim, then
 * iss, aud, exp, nbf, iat, and, when the token is bound to a certificate (cnf x5t#S256) or
 * binding is required, the presented certificate's thumbprint. Nothing here logs a token. */
#ifndef M5_OAUTH_JWT_H
#define M5_OAUTH_JWT_H

#include <openssl/x509.h>
#include <stddef.h>
#include <stdint.h>

#define M5_JWT_MAX 8192      /* bytes of a compact token we look at */
#define M5_JWT_X5T_LEN 43    /* base64url (no padding) of a SHA-256 digest */
#define M5_JWT_ID_MAX 128    /* sub, client_id, jti */
#define M5_JWT_URL_MAX 255   /* iss */
#define M5_JWT_SCOPE_MAX 511 /* scope (space-separated) */
#define M5_JWKS_MAX 65536    /* bytes of a JWKS document we parse */
#define M5_JWKS_MAX_KEYS 32  /* usable keys in one set */

/* ---- keys ---- */

/* An EC P-256 key with its kid: private (ours, for issuing) or public only (an issuer's). */
typedef struct m5_jwk m5_jwk_t;

/* Loads a PEM private key (EC P-256 only). kid = its RFC 7638 JWK thumbprint (base64url
 * SHA-256 of {"crv","kty","x","y"}). NULL with a message naming the file in err. */
m5_jwk_t *m5_jwk_load_pem(const char *path, char *err, size_t errlen);
const char *m5_jwk_kid(const m5_jwk_t *k);
void m5_jwk_free(m5_jwk_t *k);

/* A key set (JWKS, RFC 7517 §5). */
typedef struct m5_jwks m5_jwks_t;

/* Parses a JWKS document (at most M5_JWKS_MAX bytes). Keys that are not EC P-256 signature
 * keys (kty RSA or oct, crv other than P-256, "use" other than "sig", "alg" other than "ES256",
 * "key_ops" without "verify") are skipped; a usable key without "kid" (or with one longer than
 * 128 characters), with x or y not 32 octets of base64url or not a point on the curve, two keys
 * with the same kid, more than M5_JWKS_MAX_KEYS usable keys, any key carrying private parts
 * ("d"), or no usable key at all is an error. Duplicate JSON members are an error. NULL with a
 * message in err. A set is read-only once made: threads may verify with it concurrently. */
m5_jwks_t *m5_jwks_parse(const char *json, size_t len, char *err, size_t errlen);
/* The public half of k as a one-key set (our own JWKS); NULL on allocation failure. */
m5_jwks_t *m5_jwks_from_key(const m5_jwk_t *k);
/* {"keys":[{"kty":"EC","crv":"P-256","x":..,"y":..,"kid":..,"use":"sig","alg":"ES256"}]}, public
 * parts only, malloc'd; NULL on allocation failure. */
char *m5_jwks_to_json(const m5_jwks_t *s);
size_t m5_jwks_count(const m5_jwks_t *s);
void m5_jwks_free(m5_jwks_t *s);

/* ---- issuing (our token endpoint) ---- */

typedef struct {
  const char *iss, *sub, *aud, *client_id;
  const char *scope;        /* space-separated */
  int64_t iat, exp;         /* Unix seconds */
  const char *jti;          /* NULL = 128 random bits, base64url */
  const char *cnf_x5t_s256; /* certificate binding (RFC 8705 §3.1), or NULL */
} m5_jwt_issue_t;

/* Signs an access token with key (which must hold the private part): protected header
 * {"alg":"ES256","typ":"at+jwt","kid":<kid>}, the claims above (nbf is not set). Refuses what
 * m5_jwt_verify would refuse: every string claim non-empty valid UTF-8 within the sizes of
 * m5_jwt_claims_t, exp > iat >= 0, cnf_x5t_s256 (if given) M5_JWT_X5T_LEN characters. *out is
 * a malloc'd NUL-terminated compact JWS (a bearer credential: wipe it before freeing).
 * 0, or M5_EINVAL (missing or bad claim, public-only key), M5_ENOMEM, M5_ECRYPTO. */
int m5_jwt_issue(const m5_jwk_t *key, const m5_jwt_issue_t *c, char **out);

/* ---- verifying (every MSGin5G-3 request) ---- */

typedef enum {
  M5_JWT_OK = 0,
  M5_JWT_MALFORMED,     /* not three base64url parts, bad JSON, wrongly typed claim */
  M5_JWT_TOO_LARGE,     /* over M5_JWT_MAX */
  M5_JWT_BAD_HEADER,    /* alg not ES256 (none, HS256, ...), typ not at+jwt, jwk/jku/x5u/x5c/crit */
  M5_JWT_UNKNOWN_KID,   /* no kid, or not in the key set */
  M5_JWT_BAD_SIGNATURE, /* includes a tampered header or payload */
  M5_JWT_MISSING_CLAIM, /* iss, sub, aud, exp, iat, jti, client_id or scope absent */
  M5_JWT_BAD_ISSUER,
  M5_JWT_BAD_AUDIENCE,
  M5_JWT_EXPIRED,       /* exp + leeway <= now */
  M5_JWT_NOT_YET_VALID, /* nbf or iat later than now + leeway */
  M5_JWT_CNF_MISMATCH,  /* bound to another certificate, or unbound where binding is required */
} m5_jwt_err_t;

typedef struct {
  const char *issuer;        /* iss must equal it */
  const char *audience;      /* aud (a string, or an array of strings) must contain it */
  int64_t now;               /* Unix seconds */
  int64_t leeway_s;          /* clock skew allowed on exp, nbf and iat (negative = 0) */
  const char *cert_x5t_s256; /* thumbprint of the client certificate of this connection, or
                                NULL; a token with cnf x5t#S256 must match it */
  int require_cnf;           /* the token must be certificate-bound (our own issuer) */
} m5_jwt_expect_t;

typedef struct {
  char iss[M5_JWT_URL_MAX + 1];
  char sub[M5_JWT_ID_MAX + 1];
  char client_id[M5_JWT_ID_MAX + 1];
  char jti[M5_JWT_ID_MAX + 1];
  char scope[M5_JWT_SCOPE_MAX + 1];
  int64_t iat, exp;
  int bound; /* carried cnf x5t#S256 (and it matched) */
} m5_jwt_claims_t;

/* Verifies a compact token against keys and x. M5_JWT_OK fills *out (out may be NULL);
 * otherwise *out is zeroed and diag says what is wrong in words safe to return to the client
 * (never the token, its claim values or key material; printable ASCII without '"' or '\\', so
 * it fits an RFC 6750 error_description). typ is compared case-insensitively
 * (RFC 7515 §4.1.9: a media type). A cnf that binds the token by any other method than
 * x5t#S256 (RFC 9449 jkt, ...) is a CNF_MISMATCH: a binding we cannot check is refused, not
 * ignored. Empty sub, client_id or jti is MALFORMED. */
m5_jwt_err_t m5_jwt_verify(const char *token, size_t len, const m5_jwks_t *keys,
                           const m5_jwt_expect_t *x, m5_jwt_claims_t *out, char *diag,
                           size_t diag_len);
/* 1 if scope (a single scope token) is in c->scope's space-separated list, else 0. */
int m5_jwt_has_scope(const m5_jwt_claims_t *c, const char *scope);
/* A stable lowercase name of e ("bad_signature", ...) for logs and counters. */
const char *m5_jwt_err_name(m5_jwt_err_t e);

/* base64url(SHA-256(DER of cert)), 43 characters + NUL (RFC 8705 §3.1 x5t#S256).
 * 0, M5_EINVAL, M5_ECRYPTO. */
int m5_jwt_x5t_s256(const X509 *cert, char out[M5_JWT_X5T_LEN + 1]);

#endif
