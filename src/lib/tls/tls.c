/* OpenSSL contexts for the certificate-based interfaces, per the TS 33.210 cl. 6.2 profile as
 * the architecture (§4 "Rules everywhere") narrows it: TLS 1.2 and 1.3 only, AEAD suites with
 * ECDHE only, no renegotiation, no 0-RTT, no tickets or session resumption, no compression.
 * ALPN selection follows RFC 7301 §3.2 (no common protocol -> no_application_protocol), and
 * the identity helpers read the RFC 5280 subjectAltName of the verified peer certificate. */
#include "tls/tls.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/x509v3.h>

#include "core/err.h"

/* TLS 1.3: the RFC 8446 §9.1 MUST suite first, then the two 33.210 SHOULD suites. */
#define TLS13_SUITES "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256"
/* TLS 1.2: forward-secret AEAD suites only (RFC 9325 §4.2); no CBC, no static RSA, no DHE. */
#define TLS12_CIPHERS                                                                              \
  "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"                                     \
  "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"                                     \
  "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305"
#define TLS_GROUPS "X25519:P-256:P-384"

/* The server's ALPN list (RFC 7301 wire format) lives in the SSL_CTX's ex_data, so it is
 * freed with the context and the caller has nothing to keep alive. */
typedef struct {
  size_t len;
  unsigned char data[];
} alpn_wire_t;

static int alpn_idx = -1;
static pthread_once_t alpn_once = PTHREAD_ONCE_INIT;

static void alpn_free(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl, void *argp) {
  (void)parent, (void)ad, (void)idx, (void)argl, (void)argp;
  OPENSSL_free(ptr);
}

static void alpn_index_init(void) {
  alpn_idx = SSL_CTX_get_ex_new_index(0, NULL, NULL, NULL, alpn_free);
}

const char *m5_tls_last_error(char *buf, size_t len) {
  if (len == 0) return buf;
  buf[0] = '\0';
  size_t used = 0;
  unsigned long e;
  const char *data = NULL;
  int flags = 0;
  while ((e = ERR_get_error_all(NULL, NULL, NULL, &data, &flags)) != 0) {
    const char *reason = ERR_reason_error_string(e);
    const char *lib = ERR_lib_error_string(e);
    int n = snprintf(buf + used, len - used, "%s%s%s%s%s%s", used ? "; " : "", lib ? lib : "",
                     lib ? ": " : "", reason ? reason : "unknown error",
                     (flags & ERR_TXT_STRING) && data && *data ? " " : "",
                     (flags & ERR_TXT_STRING) && data ? data : "");
    if (n < 0) break;
    used += (size_t)n;
    if (used >= len) {
      used = len - 1;
      ERR_clear_error();
      break;
    }
  }
  if (used == 0) snprintf(buf, len, "no OpenSSL error recorded");
  return buf;
}

/* Why a file could not be used: errno when the file is not readable at all (the common
 * case, and OpenSSL's own text for it is "system lib"), else OpenSSL's reason. */
static const char *file_problem(const char *path, char *tmp, size_t tmplen) {
  if (access(path, R_OK) != 0) {
    ERR_clear_error();
    snprintf(tmp, tmplen, "%s", strerror(errno));
    return tmp;
  }
  return m5_tls_last_error(tmp, tmplen);
}

static void set_err(char *err, size_t errlen, const char *what, const char *path,
                    const char *setting) {
  char why[256];
  const char *reason = file_problem(path, why, sizeof why);
  if (err && errlen)
    snprintf(err, errlen, "cannot load %s %s: %s; run `m5ctl pki init` or set %s", what, path,
             reason, setting);
}

/* "h2,http/1.1" -> "\x02h2\x08http/1.1". M5_EINVAL on an empty or over-long entry. */
static int alpn_to_wire(const char *list, unsigned char *out, size_t outlen, size_t *wlen) {
  size_t w = 0;
  const char *p = list;
  while (*p) {
    const char *comma = strchr(p, ',');
    size_t n = comma ? (size_t)(comma - p) : strlen(p);
    if (n == 0 || n > 255 || w + 1 + n > outlen) return M5_EINVAL;
    out[w++] = (unsigned char)n;
    memcpy(out + w, p, n);
    w += n;
    p += n;
    if (*p == ',' && *++p == '\0') return M5_EINVAL; /* trailing comma: an empty entry */
  }
  if (w == 0) return M5_EINVAL;
  *wlen = w;
  return M5_OK;
}

/* RFC 7301 §3.2: pick the first of our protocols (our preference order) that the client
 * offers. No overlap -> fatal no_application_protocol alert. Only called when the client
 * sent ALPN, so clients without ALPN are still accepted. */
static int alpn_select(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                       const unsigned char *in, unsigned int inlen, void *arg) {
  (void)arg;
  const alpn_wire_t *ours = SSL_CTX_get_ex_data(SSL_get_SSL_CTX(ssl), alpn_idx);
  if (!ours) return SSL_TLSEXT_ERR_NOACK;
  for (size_t i = 0; i < ours->len; i += 1u + ours->data[i]) {
    size_t olen = ours->data[i];
    for (unsigned int j = 0; j < inlen;) {
      unsigned int clen = in[j];
      if (clen == 0 || (size_t)j + 1 + clen > inlen) return SSL_TLSEXT_ERR_ALERT_FATAL;
      if (clen == olen && memcmp(in + j + 1, ours->data + i + 1, olen) == 0) {
        *out = in + j + 1;
        *outlen = (unsigned char)clen;
        return SSL_TLSEXT_ERR_OK;
      }
      j += 1 + clen;
    }
  }
  return SSL_TLSEXT_ERR_ALERT_FATAL;
}

static int apply_profile(SSL_CTX *ctx, char *err, size_t errlen) {
  char why[256];
  if (!SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) ||
      !SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION) ||
      !SSL_CTX_set_ciphersuites(ctx, TLS13_SUITES) ||
      !SSL_CTX_set_cipher_list(ctx, TLS12_CIPHERS) || !SSL_CTX_set1_groups_list(ctx, TLS_GROUPS)) {
    if (err && errlen)
      snprintf(err, errlen, "cannot apply the TLS profile: %s", m5_tls_last_error(why, sizeof why));
    return M5_ECRYPTO;
  }
  SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_TICKET | SSL_OP_NO_COMPRESSION);
  /* No session tickets (architecture §4): TLS 1.3 would otherwise send two by default. */
  SSL_CTX_set_num_tickets(ctx, 0);
  SSL_CTX_set_max_early_data(ctx, 0);
  SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
  return M5_OK;
}

static int load_identity(SSL_CTX *ctx, const m5_tls_opts_t *opts, char *err, size_t errlen) {
  if (SSL_CTX_use_certificate_chain_file(ctx, opts->cert_file) != 1) {
    set_err(err, errlen, "certificate", opts->cert_file, "tls.cert");
    return M5_EINVAL;
  }
  if (!opts->key_file) {
    if (err && errlen)
      snprintf(err, errlen, "certificate %s has no private key; set tls.key", opts->cert_file);
    return M5_EINVAL;
  }
  /* OpenSSL checks the key against the certificate while loading it. */
  if (SSL_CTX_use_PrivateKey_file(ctx, opts->key_file, SSL_FILETYPE_PEM) == 1 &&
      SSL_CTX_check_private_key(ctx) == 1)
    return M5_OK;
  unsigned long e = ERR_peek_last_error();
  if (ERR_GET_LIB(e) != ERR_LIB_X509 || ERR_GET_REASON(e) != X509_R_KEY_VALUES_MISMATCH) {
    set_err(err, errlen, "private key", opts->key_file, "tls.key");
    return M5_EINVAL;
  }
  ERR_clear_error();
  if (err && errlen)
    snprintf(err, errlen, "private key %s does not match certificate %s; check tls.key",
             opts->key_file, opts->cert_file);
  return M5_EINVAL;
}

static int load_ca(SSL_CTX *ctx, const char *ca_file, int server, char *err, size_t errlen) {
  if (SSL_CTX_load_verify_locations(ctx, ca_file, NULL) != 1) {
    set_err(err, errlen, "CA bundle", ca_file, "tls.ca");
    return M5_EINVAL;
  }
  if (server) {
    /* Tell clients which CAs we accept, so one with several certificates picks the right one. */
    STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(ca_file);
    if (!names) {
      set_err(err, errlen, "CA bundle", ca_file, "tls.ca");
      return M5_EINVAL;
    }
    SSL_CTX_set_client_CA_list(ctx, names);
  }
  return M5_OK;
}

static int set_alpn(SSL_CTX *ctx, const char *alpn, int server, char *err, size_t errlen) {
  unsigned char wire[512];
  size_t wlen = 0;
  if (alpn_to_wire(alpn, wire, sizeof wire, &wlen) != M5_OK) {
    if (err && errlen) snprintf(err, errlen, "invalid ALPN list \"%s\"", alpn);
    return M5_EINVAL;
  }
  if (!server) {
    /* Unlike most of OpenSSL, this one returns 0 on success. */
    if (SSL_CTX_set_alpn_protos(ctx, wire, (unsigned int)wlen) != 0) {
      if (err && errlen) snprintf(err, errlen, "cannot set ALPN \"%s\"", alpn);
      return M5_ENOMEM;
    }
    return M5_OK;
  }
  pthread_once(&alpn_once, alpn_index_init);
  alpn_wire_t *w = OPENSSL_malloc(sizeof *w + wlen);
  if (alpn_idx < 0 || !w) {
    OPENSSL_free(w);
    if (err && errlen) snprintf(err, errlen, "cannot set ALPN \"%s\": out of memory", alpn);
    return M5_ENOMEM;
  }
  w->len = wlen;
  memcpy(w->data, wire, wlen);
  if (!SSL_CTX_set_ex_data(ctx, alpn_idx, w)) {
    OPENSSL_free(w);
    if (err && errlen) snprintf(err, errlen, "cannot set ALPN \"%s\": out of memory", alpn);
    return M5_ENOMEM;
  }
  SSL_CTX_set_alpn_select_cb(ctx, alpn_select, NULL);
  return M5_OK;
}

static SSL_CTX *ctx_new(const m5_tls_opts_t *opts, int server, char *err, size_t errlen) {
  if (err && errlen) err[0] = '\0';
  if (!opts || (server && !opts->cert_file) || (opts->verify_peer && server && !opts->ca_file)) {
    if (err && errlen)
      snprintf(err, errlen, "%s",
               !opts || !opts->cert_file ? "a TLS server needs a certificate; set tls.cert"
                                         : "verifying clients needs a CA bundle; set tls.ca");
    return NULL;
  }
  ERR_clear_error();
  SSL_CTX *ctx = SSL_CTX_new(server ? TLS_server_method() : TLS_client_method());
  if (!ctx) {
    char why[256];
    if (err && errlen)
      snprintf(err, errlen, "cannot create TLS context: %s", m5_tls_last_error(why, sizeof why));
    return NULL;
  }
  if (apply_profile(ctx, err, errlen) != M5_OK) goto fail;
  /* Level 2 (112-bit security): RSA and DH keys of at least 2048 bits, EC of at least 224,
   * no SHA-1 signatures, for every certificate either side shows, ours included (TS 33.310:
   * P-256 or RSA-2048 and more). */
  SSL_CTX_set_security_level(ctx, 2);
  if (opts->cert_file && load_identity(ctx, opts, err, errlen) != M5_OK) goto fail;
  if (opts->ca_file && load_ca(ctx, opts->ca_file, server, err, errlen) != M5_OK) goto fail;
  if (opts->alpn && set_alpn(ctx, opts->alpn, server, err, errlen) != M5_OK) goto fail;
  if (server) {
    SSL_CTX_set_options(ctx, SSL_OP_CIPHER_SERVER_PREFERENCE);
    /* No resumption at all: a resumed TLS 1.2 session would skip the client-certificate
     * check this context exists to enforce, and stateful caches grow with the fleet. */
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    if (opts->verify_peer)
      SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
  } else if (opts->verify_peer) {
    if (!opts->ca_file && SSL_CTX_set_default_verify_paths(ctx) != 1) {
      char why[256];
      if (err && errlen)
        snprintf(err, errlen, "cannot load the system CA store: %s; set tls.ca",
                 m5_tls_last_error(why, sizeof why));
      goto fail;
    }
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
  }
  return ctx;
fail:
  SSL_CTX_free(ctx);
  ERR_clear_error();
  return NULL;
}

SSL_CTX *m5_tls_server_ctx_new(const m5_tls_opts_t *opts, char *err, size_t errlen) {
  return ctx_new(opts, 1, err, errlen);
}

SSL_CTX *m5_tls_client_ctx_new(const m5_tls_opts_t *opts, char *err, size_t errlen) {
  return ctx_new(opts, 0, err, errlen);
}

/* Calls match(value, len, arg) for each SAN of type gen_type in the verified peer leaf
 * certificate; stops at the first non-zero answer and returns it. */
static int san_each(SSL *ssl, int gen_type, int (*match)(const char *, size_t, void *), void *arg) {
  if (!ssl) return 0;
  X509 *cert = SSL_get0_peer_certificate(ssl);
  /* An unverified certificate names nobody (a server without verify_peer never asks for
   * one, but a client context without verification could still see one). */
  if (!cert || SSL_get_verify_result(ssl) != X509_V_OK) return 0;
  GENERAL_NAMES *gens = X509_get_ext_d2i(cert, NID_subject_alt_name, NULL, NULL);
  if (!gens) return 0;
  int found = 0;
  for (int i = 0; i < sk_GENERAL_NAME_num(gens) && !found; i++) {
    const GENERAL_NAME *g = sk_GENERAL_NAME_value(gens, i);
    if (g->type != gen_type) continue;
    /* GEN_DNS and GEN_URI are both IA5Strings. */
    const ASN1_IA5STRING *s = gen_type == GEN_DNS ? g->d.dNSName : g->d.uniformResourceIdentifier;
    int len = ASN1_STRING_length(s);
    const unsigned char *data = ASN1_STRING_get0_data(s);
    /* An embedded NUL would let "a.example\0.evil" pass a C-string comparison. */
    if (len <= 0 || !data || memchr(data, '\0', (size_t)len)) continue;
    found = match((const char *)data, (size_t)len, arg);
  }
  GENERAL_NAMES_free(gens);
  return found;
}

static int match_dns(const char *v, size_t len, void *arg) {
  const char *name = arg;
  return strlen(name) == len && strncasecmp(v, name, len) == 0;
}

static int match_uri(const char *v, size_t len, void *arg) {
  const char *uri = arg;
  return strlen(uri) == len && memcmp(v, uri, len) == 0;
}

int m5_tls_peer_has_san_dns(SSL *ssl, const char *name) {
  if (!name || !*name) return 0;
  return san_each(ssl, GEN_DNS, match_dns, (void *)name);
}

int m5_tls_peer_has_san_uri(SSL *ssl, const char *uri) {
  if (!uri || !*uri) return 0;
  return san_each(ssl, GEN_URI, match_uri, (void *)uri);
}

typedef struct {
  const char *prefix;
  char *out;
  size_t outlen;
  int rc;
} suffix_ctx_t;

static int match_prefix(const char *v, size_t len, void *arg) {
  suffix_ctx_t *s = arg;
  size_t plen = strlen(s->prefix);
  if (len < plen || memcmp(v, s->prefix, plen) != 0) return 0;
  size_t n = len - plen;
  if (n + 1 > s->outlen) {
    s->rc = M5_ERANGE;
  } else {
    memcpy(s->out, v + plen, n);
    s->out[n] = '\0';
    s->rc = M5_OK;
  }
  return 1;
}

int m5_tls_peer_san_uri_suffix(SSL *ssl, const char *prefix, char *out, size_t outlen) {
  if (!prefix || !out) return M5_EINVAL;
  suffix_ctx_t s = {prefix, out, outlen, M5_ENOENT};
  san_each(ssl, GEN_URI, match_prefix, &s);
  return s.rc;
}
