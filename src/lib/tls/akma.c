/* AKMA-keyed (D)TLS for MSGin5G-1: K_AF (TS 33.535 A.4) as the external PSK of TLS 1.3
 * (33.535 B.1.3.2.2, RFC 8446 §4.2.11) and of (D)TLS 1.2 PSK / ECDHE_PSK suites (B.1.3.2.1,
 * Annex C; RFC 4279, RFC 5489), with the Ua* identifiers of TS 33.220 Annex H. The server
 * never blocks on the AAnF: it learns the A-KID from the ClientHello's pre_shared_key
 * extension (TLS 1.3) or from the plaintext ClientKeyExchange before OpenSSL reads it
 * ((D)TLS 1.2), and the transport supplies the key later (architecture §4). */
#include "tls/akma.h"

#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "core/err.h"
#include "crypto/codec.h"

/* (D)TLS 1.2, server preference: forward secrecy first, then the RFC 7252 mandatory suite. */
#define PSK12_CIPHERS "ECDHE-PSK-CHACHA20-POLY1305:PSK-AES128-GCM-SHA256:PSK-AES128-CCM8"
/* Both SHA-256 suites, so one external PSK (SHA-256 by RFC 8446 §4.2.11) fits either. */
#define TLS13_SUITES "TLS_AES_128_GCM_SHA256:TLS_CHACHA20_POLY1305_SHA256"
#define GROUPS "X25519:P-256"

#define PREFIX M5_AKMA_PSK_PREFIX
#define PREFIX_LEN (sizeof PREFIX - 1)
#define COOKIE_LEN 32             /* HMAC-SHA256 */
#define PEER_MAX (2 + 2 + 16 + 4) /* family, port, address, IPv6 scope */

#define EXT_SERVER_NAME 0
#define EXT_PRE_SHARED_KEY 41
#define EXT_SUPPORTED_VERSIONS 43

#define REC_HANDSHAKE 22
#define REC_CCS 20
#define REC_APPDATA 23
#define HS_CLIENT_KEY_EXCHANGE 16
#define TLS_REC_HDR 5
#define DTLS_REC_HDR 13
#define TLS_HS_HDR 4
#define DTLS_HS_HDR 12
#define TLS_REC_MAX (16384 + 2048) /* RFC 5246 §6.2.3: TLSCiphertext.length limit */
/* The part of a ClientKeyExchange that names the PSK: identity length and identity. */
#define CKE_ID_MAX (2 + PSK_MAX_IDENTITY_LEN)

/* The server's names and cookie keys, kept with the SSL_CTX. The context is shared by every
 * worker thread: the keys are read and rotated under the lock. */
typedef struct {
  size_t n_fqdns;
  char (*fqdns)[M5_AKMA_FQDN_MAX + 1];
  pthread_mutex_t cookie_lock;
  int lock_ok;
  uint8_t cookie_key[2][32]; /* [0] makes new cookies; [1] (the one before) still verifies */
} ctx_data_t;

/* Where the scan of a TLS byte stream stands between calls (the transport feeds every byte
 * it does not hold, so records and handshake messages may end in a later call). */
typedef struct {
  uint8_t rec_hdr[TLS_REC_HDR];
  size_t rec_have; /* header bytes seen of the current record */
  size_t rec_left; /* body bytes still to come of the current record */
  int rec_in_body;
  int rec_type;
  uint8_t hs_hdr[TLS_HS_HDR];
  size_t hs_have;
  size_t hs_left;
  int hs_in_body;
  int hs_type;
  uint8_t cke[CKE_ID_MAX];
  size_t cke_have;
  int done; /* plaintext handshake over (ChangeCipherSpec or encrypted data seen) */
} tls_scan_t;

typedef struct {
  /* server */
  m5_akma_want_t want;
  int wanted;
  char akid[M5_AKMA_AKID_MAX + 1]; /* presented by the client */
  int have_akid;
  char fqdn[M5_AKMA_FQDN_MAX + 1]; /* the server name the client asked for */
  int have_fqdn;
  m5_akma_key_t key;
  char key_akid[M5_AKMA_AKID_MAX + 1];
  uint8_t key_ua[M5_AKMA_UA_LEN];
  int key_set;
  int key_used; /* a PSK callback handed the key to OpenSSL */
  uint8_t peer[PEER_MAX];
  size_t peer_len;
  tls_scan_t scan;
  /* client */
  int client;
  uint8_t kakma[M5_AKMA_KEY_LEN];
  char cli_fqdn[M5_AKMA_FQDN_MAX + 1];
  char identity[PREFIX_LEN + M5_AKMA_AKID_MAX + 1];
} akma_state_t;

static int ssl_idx = -1;
static int ctx_idx = -1;
static pthread_once_t idx_once = PTHREAD_ONCE_INIT;

static void state_free(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl,
                       void *argp) {
  (void)parent, (void)ad, (void)idx, (void)argl, (void)argp;
  if (ptr) OPENSSL_clear_free(ptr, sizeof(akma_state_t));
}

static void ctx_data_free(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl,
                          void *argp) {
  (void)parent, (void)ad, (void)idx, (void)argl, (void)argp;
  ctx_data_t *d = ptr;
  if (!d) return;
  if (d->lock_ok) pthread_mutex_destroy(&d->cookie_lock);
  OPENSSL_free(d->fqdns);
  OPENSSL_clear_free(d, sizeof *d);
}

static void idx_init(void) {
  ssl_idx = SSL_get_ex_new_index(0, NULL, NULL, NULL, state_free);
  ctx_idx = SSL_CTX_get_ex_new_index(0, NULL, NULL, NULL, ctx_data_free);
}

static akma_state_t *state_of(SSL *ssl) {
  pthread_once(&idx_once, idx_init);
  if (!ssl || ssl_idx < 0) return NULL;
  return SSL_get_ex_data(ssl, ssl_idx);
}

/* Callbacks attach on demand, so a transport that forgot m5_akma_ssl_attach() still fails
 * closed rather than crashing. */
static akma_state_t *state_need(SSL *ssl) {
  if (m5_akma_ssl_attach(ssl) != M5_OK) return NULL;
  return state_of(ssl);
}

static const ctx_data_t *ctx_data_of(SSL *ssl) {
  pthread_once(&idx_once, idx_init);
  if (ctx_idx < 0) return NULL;
  return SSL_CTX_get_ex_data(SSL_get_SSL_CTX(ssl), ctx_idx);
}

int m5_akma_ssl_attach(SSL *ssl) {
  pthread_once(&idx_once, idx_init);
  if (!ssl || ssl_idx < 0) return M5_EINVAL;
  if (SSL_get_ex_data(ssl, ssl_idx)) return M5_OK;
  akma_state_t *st = OPENSSL_zalloc(sizeof *st);
  if (!st) return M5_ENOMEM;
  if (!SSL_set_ex_data(ssl, ssl_idx, st)) {
    OPENSSL_free(st);
    return M5_ENOMEM;
  }
  return M5_OK;
}

/* ---- identities and names ---- */

/* "3GPP-AKMA" + A-KID, or "3GPP-AKMA." + A-KID (architecture §4). The A-KID is opaque to the
 * AF; it only has to be printable ASCII so it can be logged and sent to the AAnF. */
static int identity_to_akid(const uint8_t *id, size_t n, char out[M5_AKMA_AKID_MAX + 1]) {
  if (n <= PREFIX_LEN || memcmp(id, PREFIX, PREFIX_LEN) != 0) return M5_EPROTO;
  id += PREFIX_LEN;
  n -= PREFIX_LEN;
  if (id[0] == '.') id++, n--;
  if (n == 0 || n > M5_AKMA_AKID_MAX) return M5_EPROTO;
  for (size_t i = 0; i < n; i++)
    if (id[i] < 0x21 || id[i] > 0x7e) return M5_EPROTO;
  memcpy(out, id, n);
  out[n] = '\0';
  return M5_OK;
}

/* The configured name equal (ignoring case, RFC 6066 §3) to the n octets at name, or NULL. */
static const char *name_match(const ctx_data_t *d, const char *name, size_t n) {
  for (size_t i = 0; i < d->n_fqdns; i++)
    if (strlen(d->fqdns[i]) == n && strncasecmp(d->fqdns[i], name, n) == 0) return d->fqdns[i];
  return NULL;
}

/* Records the name K_AF is derived for: the client's own spelling of one of our names (it
 * derives K_AF from the octets it sent), or the primary name when it sent no SNI. 0 when the
 * name is not ours. */
static int record_fqdn(akma_state_t *st, const ctx_data_t *d, const char *sni, size_t n) {
  if (!sni) {
    snprintf(st->fqdn, sizeof st->fqdn, "%s", d->fqdns[0]);
  } else {
    if (!name_match(d, sni, n) || n >= sizeof st->fqdn) return 0;
    memcpy(st->fqdn, sni, n);
    st->fqdn[n] = '\0';
  }
  st->have_fqdn = 1;
  return 1;
}

static void want_fill(akma_state_t *st, const ctx_data_t *d, const char *akid,
                      const uint8_t ua[M5_AKMA_UA_LEN]) {
  memset(&st->want, 0, sizeof st->want);
  snprintf(st->want.akid, sizeof st->want.akid, "%s", akid);
  snprintf(st->want.fqdn, sizeof st->want.fqdn, "%s", st->have_fqdn ? st->fqdn : d->fqdns[0]);
  memcpy(st->want.ua, ua, M5_AKMA_UA_LEN);
  st->wanted = 1;
}

static void record_akid(akma_state_t *st, const char *akid) {
  snprintf(st->akid, sizeof st->akid, "%s", akid);
  st->have_akid = 1;
}

static int key_matches(const akma_state_t *st, const char *akid, const uint8_t ua[M5_AKMA_UA_LEN]) {
  return st->key_set && strcmp(st->key_akid, akid) == 0 &&
         memcmp(st->key_ua, ua, M5_AKMA_UA_LEN) == 0;
}

/* The suite ServerHello carries: pending while the handshake runs, current afterwards. */
static const SSL_CIPHER *chosen_cipher(SSL *ssl) {
  const SSL_CIPHER *c = SSL_get_pending_cipher(ssl);
  return c ? c : SSL_get_current_cipher(ssl);
}

/* ---- server callbacks ---- */

static int servername_cb(SSL *ssl, int *al, void *arg) {
  (void)arg;
  akma_state_t *st = state_need(ssl);
  const ctx_data_t *d = ctx_data_of(ssl);
  if (!st || !d) {
    *al = SSL_AD_INTERNAL_ERROR;
    return SSL_TLSEXT_ERR_ALERT_FATAL;
  }
  const char *sni = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
  if (!record_fqdn(st, d, sni, sni ? strlen(sni) : 0)) {
    *al = SSL_AD_UNRECOGNIZED_NAME;
    return SSL_TLSEXT_ERR_ALERT_FATAL;
  }
  return SSL_TLSEXT_ERR_OK;
}

static uint16_t get16(const uint8_t *p) {
  return (uint16_t)(p[0] << 8 | p[1]);
}
static uint32_t get24(const uint8_t *p) {
  return (uint32_t)p[0] << 16 | (uint32_t)p[1] << 8 | p[2];
}

/* RFC 6066 §3 server_name extension: the host_name entry, or *name = NULL when there is
 * none. M5_EPROTO if malformed. */
static int parse_sni(const uint8_t *p, size_t n, const char **name, size_t *len) {
  *name = NULL;
  if (n < 2 || get16(p) != n - 2) return M5_EPROTO;
  for (size_t i = 2; i < n;) {
    if (n - i < 3) return M5_EPROTO;
    size_t l = get16(p + i + 1);
    if (n - i - 3 < l) return M5_EPROTO;
    if (p[i] == TLSEXT_NAMETYPE_host_name) {
      *name = (const char *)(p + i + 3);
      *len = l;
      return M5_OK;
    }
    i += 3 + l;
  }
  return M5_OK;
}

/* 1 if the supported_versions extension (RFC 8446 §4.2.1) offers TLS 1.3. */
static int offers_tls13(SSL *ssl) {
  const unsigned char *p;
  size_t n;
  if (!SSL_client_hello_get0_ext(ssl, EXT_SUPPORTED_VERSIONS, &p, &n)) return 0;
  if (n < 1 || p[0] != n - 1) return 0;
  for (size_t i = 1; i + 1 < n; i += 2)
    if (get16(p + i) == TLS1_3_VERSION) return 1;
  return 0;
}

/* The first AKMA identity of the pre_shared_key extension (RFC 8446 §4.2.11: identities
 * <7..2^16-1> of {identity<1..2^16-1>, obfuscated_ticket_age uint32}, then the binders).
 * M5_ENOENT if no identity carries the prefix, M5_EPROTO if malformed. */
static int psk_ext_akid(const uint8_t *p, size_t n, char akid[M5_AKMA_AKID_MAX + 1]) {
  if (n < 2) return M5_EPROTO;
  size_t list = get16(p);
  if (list > n - 2) return M5_EPROTO;
  for (size_t i = 2; i < 2 + list;) {
    if (2 + list - i < 2) return M5_EPROTO;
    size_t l = get16(p + i);
    if (2 + list - i - 2 < l + 4) return M5_EPROTO;
    if (identity_to_akid(p + i + 2, l, akid) == M5_OK) return M5_OK;
    i += 2 + l + 4;
  }
  return M5_ENOENT;
}

/* Runs before OpenSSL negotiates the version or parses extensions, so the handshake can
 * pause here (SSL_CLIENT_HELLO_RETRY) until the transport has K_AF. */
static int client_hello_cb(SSL *ssl, int *al, void *arg) {
  (void)arg;
  akma_state_t *st = state_need(ssl);
  const ctx_data_t *d = ctx_data_of(ssl);
  if (!st || !d) {
    *al = SSL_AD_INTERNAL_ERROR;
    return SSL_CLIENT_HELLO_ERROR;
  }
  /* The servername callback would reject a foreign name too, but only after this one; do
   * it first so no key is fetched for a name that is not ours. */
  const unsigned char *ext;
  size_t ext_len;
  const char *sni = NULL;
  size_t sni_len = 0;
  if (SSL_client_hello_get0_ext(ssl, EXT_SERVER_NAME, &ext, &ext_len) &&
      parse_sni(ext, ext_len, &sni, &sni_len) != M5_OK) {
    *al = SSL_AD_DECODE_ERROR;
    return SSL_CLIENT_HELLO_ERROR;
  }
  if (!record_fqdn(st, d, sni, sni_len)) {
    *al = SSL_AD_UNRECOGNIZED_NAME;
    return SSL_CLIENT_HELLO_ERROR;
  }
  /* A client without TLS 1.3 goes on to the 1.2 PSK path (or to OpenSSL's version alert). */
  if (!offers_tls13(ssl)) return SSL_CLIENT_HELLO_SUCCESS;
  if (!SSL_client_hello_get0_ext(ssl, EXT_PRE_SHARED_KEY, &ext, &ext_len)) {
    /* No PSK offered and we have no certificate: TLS 1.3 cannot work. A client that also
     * speaks 1.2 may still do the 1.2 PSK handshake when the context allows it. */
    if (SSL_get_min_proto_version(ssl) <= TLS1_2_VERSION &&
        SSL_set_max_proto_version(ssl, TLS1_2_VERSION))
      return SSL_CLIENT_HELLO_SUCCESS;
    *al = SSL_AD_HANDSHAKE_FAILURE;
    return SSL_CLIENT_HELLO_ERROR;
  }
  char akid[M5_AKMA_AKID_MAX + 1];
  int rc = psk_ext_akid(ext, ext_len, akid);
  if (rc != M5_OK) {
    *al = rc == M5_ENOENT ? SSL_AD_UNKNOWN_PSK_IDENTITY : SSL_AD_DECODE_ERROR;
    return SSL_CLIENT_HELLO_ERROR;
  }
  record_akid(st, akid);
  uint8_t ua[M5_AKMA_UA_LEN];
  m5_akma_ua_tls13(ua);
  if (key_matches(st, akid, ua)) return SSL_CLIENT_HELLO_SUCCESS;
  if (st->key_set) {
    /* A second ClientHello (after HelloRetryRequest) naming someone else. */
    *al = SSL_AD_UNKNOWN_PSK_IDENTITY;
    return SSL_CLIENT_HELLO_ERROR;
  }
  want_fill(st, d, akid, ua);
  return SSL_CLIENT_HELLO_RETRY;
}

/* TLS 1.3 external PSK: a session whose master key is K_AF. TLS_AES_128_GCM_SHA256 only
 * fixes the PSK's hash (SHA-256), so either of our suites may still be negotiated. */
static SSL_SESSION *psk_session(SSL *ssl, const uint8_t kaf[M5_AKMA_KEY_LEN]) {
  static const unsigned char aes128gcmsha256[] = {0x13, 0x01};
  const SSL_CIPHER *cipher = SSL_CIPHER_find(ssl, aes128gcmsha256);
  SSL_SESSION *sess = SSL_SESSION_new();
  if (!cipher || !sess || !SSL_SESSION_set1_master_key(sess, kaf, M5_AKMA_KEY_LEN) ||
      !SSL_SESSION_set_cipher(sess, cipher) ||
      !SSL_SESSION_set_protocol_version(sess, TLS1_3_VERSION)) {
    SSL_SESSION_free(sess);
    return NULL;
  }
  return sess;
}

static int psk_find_session_cb(SSL *ssl, const unsigned char *identity, size_t identity_len,
                               SSL_SESSION **sess) {
  *sess = NULL;
  akma_state_t *st = state_of(ssl);
  char akid[M5_AKMA_AKID_MAX + 1];
  uint8_t ua[M5_AKMA_UA_LEN];
  m5_akma_ua_tls13(ua);
  /* Not ours: answer "no such PSK"; with no certificate the handshake then fails. */
  if (!st || identity_to_akid(identity, identity_len, akid) != M5_OK || !key_matches(st, akid, ua))
    return 1;
  *sess = psk_session(ssl, st->key.kaf);
  if (!*sess) return 0;
  st->key_used = 1;
  return 1;
}

static unsigned int psk_server_cb(SSL *ssl, const char *identity, unsigned char *psk,
                                  unsigned int max_psk_len) {
  akma_state_t *st = state_of(ssl);
  const SSL_CIPHER *cipher = chosen_cipher(ssl);
  char akid[M5_AKMA_AKID_MAX + 1];
  uint8_t ua[M5_AKMA_UA_LEN];
  /* OpenSSL also asks this callback in TLS 1.3 when psk_find_session_cb found nothing. */
  if (!st || !identity || !cipher || SSL_version(ssl) == TLS1_3_VERSION ||
      max_psk_len < M5_AKMA_KEY_LEN ||
      identity_to_akid((const uint8_t *)identity, strlen(identity), akid) != M5_OK)
    return 0;
  record_akid(st, akid);
  m5_akma_ua_tls12(SSL_CIPHER_get_protocol_id(cipher), ua);
  if (!key_matches(st, akid, ua)) return 0;
  memcpy(psk, st->key.kaf, M5_AKMA_KEY_LEN);
  st->key_used = 1;
  return M5_AKMA_KEY_LEN;
}

/* ---- DTLS cookies (RFC 6347 §4.2.1): HMAC-SHA256 of the peer address ---- */

/* The cookie for this SSL's peer under key `which` (0 current, 1 previous). */
static int cookie_mac(SSL *ssl, int which, uint8_t out[COOKIE_LEN]) {
  const akma_state_t *st = state_of(ssl);
  ctx_data_t *d = (ctx_data_t *)ctx_data_of(ssl);
  /* Without a peer the cookie would prove nothing: refuse rather than bind to "". */
  if (!st || !d || !d->lock_ok || st->peer_len == 0) return 0;
  uint8_t key[sizeof d->cookie_key[0]];
  pthread_mutex_lock(&d->cookie_lock);
  memcpy(key, d->cookie_key[which], sizeof key);
  pthread_mutex_unlock(&d->cookie_lock);
  unsigned int len = 0;
  int ok = HMAC(EVP_sha256(), key, sizeof key, st->peer, st->peer_len, out, &len) != NULL &&
           len == COOKIE_LEN;
  OPENSSL_cleanse(key, sizeof key);
  return ok;
}

static int cookie_generate_cb(SSL *ssl, unsigned char *cookie, unsigned int *cookie_len) {
  uint8_t mac[COOKIE_LEN];
  if (!cookie_mac(ssl, 0, mac)) return 0;
  memcpy(cookie, mac, COOKIE_LEN);
  *cookie_len = COOKIE_LEN;
  return 1;
}

/* A cookie made under the current key or the one before it: one that was handed out just
 * before a rotation still works for the client's answer. */
static int cookie_verify_cb(SSL *ssl, const unsigned char *cookie, unsigned int cookie_len) {
  uint8_t mac[COOKIE_LEN];
  if (cookie_len != COOKIE_LEN) return 0;
  for (int which = 0; which < 2; which++)
    if (cookie_mac(ssl, which, mac) && m5_ct_equal(mac, cookie, COOKIE_LEN)) return 1;
  return 0;
}

int m5_akma_ctx_rotate_cookie_key(SSL_CTX *ctx) {
  pthread_once(&idx_once, idx_init);
  ctx_data_t *d = ctx && ctx_idx >= 0 ? SSL_CTX_get_ex_data(ctx, ctx_idx) : NULL;
  if (!d || !d->lock_ok) return M5_EINVAL;
  uint8_t fresh[sizeof d->cookie_key[0]];
  if (m5_random_bytes(fresh, sizeof fresh) != M5_OK) return M5_EIO;
  pthread_mutex_lock(&d->cookie_lock);
  memcpy(d->cookie_key[1], d->cookie_key[0], sizeof fresh);
  memcpy(d->cookie_key[0], fresh, sizeof fresh);
  pthread_mutex_unlock(&d->cookie_lock);
  OPENSSL_cleanse(fresh, sizeof fresh);
  return M5_OK;
}

int m5_akma_ssl_set_peer(SSL *ssl, const struct sockaddr *sa, socklen_t len) {
  akma_state_t *st = state_need(ssl);
  if (!st || !sa) return M5_EINVAL;
  uint8_t *p = st->peer;
  /* Family, port and address only: sockaddr padding must not change the cookie. */
  if (sa->sa_family == AF_INET && len >= (socklen_t)sizeof(struct sockaddr_in)) {
    const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
    p[0] = 0, p[1] = AF_INET;
    memcpy(p + 2, &in->sin_port, 2);
    memcpy(p + 4, &in->sin_addr, 4);
    st->peer_len = 8;
  } else if (sa->sa_family == AF_INET6 && len >= (socklen_t)sizeof(struct sockaddr_in6)) {
    const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
    p[0] = 0, p[1] = AF_INET6;
    memcpy(p + 2, &in6->sin6_port, 2);
    memcpy(p + 4, &in6->sin6_addr, 16);
    memcpy(p + 20, &in6->sin6_scope_id, 4);
    st->peer_len = 24;
  } else {
    return M5_EINVAL;
  }
  return M5_OK;
}

/* ---- contexts ---- */

static void ctx_err(char *err, size_t errlen, const char *what) {
  char why[256];
  unsigned long e;
  why[0] = '\0';
  if ((e = ERR_peek_last_error()) != 0) ERR_error_string_n(e, why, sizeof why);
  ERR_clear_error();
  if (err && errlen) snprintf(err, errlen, "%s%s%s", what, why[0] ? ": " : "", why);
}

/* What every AKMA context shares (architecture §4 "Rules everywhere"). */
static int common_profile(SSL_CTX *ctx, int dtls) {
  SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET | SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION);
  if (!SSL_CTX_set_num_tickets(ctx, 0) || !SSL_CTX_set_max_early_data(ctx, 0) ||
      !SSL_CTX_set_recv_max_early_data(ctx, 0) || !SSL_CTX_set1_groups_list(ctx, GROUPS) ||
      !SSL_CTX_set_cipher_list(ctx, PSK12_CIPHERS))
    return 0;
  if (dtls)
    return SSL_CTX_set_min_proto_version(ctx, DTLS1_2_VERSION) &&
           SSL_CTX_set_max_proto_version(ctx, DTLS1_2_VERSION);
  return SSL_CTX_set_ciphersuites(ctx, TLS13_SUITES) &&
         SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION);
}

SSL_CTX *m5_akma_server_ctx_new(int dtls, const m5_akma_server_opts_t *opts, char *err,
                                size_t errlen) {
  if (err && errlen) err[0] = '\0';
  if (!opts || !opts->fqdns || opts->n_fqdns == 0) {
    if (err && errlen) snprintf(err, errlen, "the AKMA server needs its FQDN; set akma.fqdn");
    return NULL;
  }
  for (size_t i = 0; i < opts->n_fqdns; i++)
    if (m5_akma_fqdn_valid(opts->fqdns[i]) != M5_OK) {
      if (err && errlen)
        snprintf(err, errlen,
                 "invalid AKMA server name \"%.64s\": K_AF needs a DNS name (letters, digits, "
                 "hyphens, dots; no trailing dot); fix akma.fqdn",
                 opts->fqdns[i] ? opts->fqdns[i] : "");
      return NULL;
    }
  pthread_once(&idx_once, idx_init);
  ctx_data_t *d = OPENSSL_zalloc(sizeof *d);
  if (d) d->fqdns = OPENSSL_zalloc(opts->n_fqdns * sizeof *d->fqdns);
  if (ctx_idx < 0 || ssl_idx < 0 || !d || !d->fqdns) {
    ctx_data_free(NULL, d, NULL, 0, 0, NULL);
    if (err && errlen)
      snprintf(err, errlen, "cannot create the AKMA server context: out of memory");
    return NULL;
  }
  d->n_fqdns = opts->n_fqdns;
  for (size_t i = 0; i < opts->n_fqdns; i++)
    snprintf(d->fqdns[i], sizeof d->fqdns[i], "%s", opts->fqdns[i]);
  d->lock_ok = pthread_mutex_init(&d->cookie_lock, NULL) == 0;
  if (!d->lock_ok || m5_random_bytes(d->cookie_key, sizeof d->cookie_key) != M5_OK) {
    ctx_data_free(NULL, d, NULL, 0, 0, NULL);
    ctx_err(err, errlen, "cannot create the AKMA server context: no random bytes");
    return NULL;
  }

  ERR_clear_error();
  SSL_CTX *ctx = SSL_CTX_new(dtls ? DTLS_server_method() : TLS_server_method());
  if (!ctx) {
    ctx_data_free(NULL, d, NULL, 0, 0, NULL);
    ctx_err(err, errlen, "cannot create the AKMA server context");
    return NULL;
  }
  if (!SSL_CTX_set_ex_data(ctx, ctx_idx, d)) {
    ctx_data_free(NULL, d, NULL, 0, 0, NULL);
    goto fail;
  }
  if (!common_profile(ctx, dtls) ||
      (!dtls &&
       !SSL_CTX_set_min_proto_version(ctx, opts->allow_tls12 ? TLS1_2_VERSION : TLS1_3_VERSION)) ||
      !SSL_CTX_use_psk_identity_hint(ctx, PREFIX))
    goto fail;
  /* A resumed session would skip the K_AF check; tickets are off above, the cache here. */
  SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
  SSL_CTX_set_options(ctx, SSL_OP_CIPHER_SERVER_PREFERENCE);
  /* OpenSSL 3.0 has no SSL_OP_PREFER_NO_DHE_KEX: with ALLOW_NO_DHE_KEX it still picks
   * psk_dhe_ke whenever the client offers it with a usable key share. */
  if (opts->allow_psk_ke) SSL_CTX_set_options(ctx, SSL_OP_ALLOW_NO_DHE_KEX);
  SSL_CTX_set_tlsext_servername_callback(ctx, servername_cb);
  SSL_CTX_set_psk_server_callback(ctx, psk_server_cb);
  if (dtls) {
    SSL_CTX_set_options(ctx, SSL_OP_COOKIE_EXCHANGE);
    SSL_CTX_set_cookie_generate_cb(ctx, cookie_generate_cb);
    SSL_CTX_set_cookie_verify_cb(ctx, cookie_verify_cb);
  } else {
    SSL_CTX_set_psk_find_session_callback(ctx, psk_find_session_cb);
    SSL_CTX_set_client_hello_cb(ctx, client_hello_cb, NULL);
  }
  return ctx;
fail:
  ctx_err(err, errlen, "cannot configure the AKMA server context");
  SSL_CTX_free(ctx);
  return NULL;
}

/* ---- server: the key exchange ---- */

int m5_akma_ssl_wanted(SSL *ssl, m5_akma_want_t *want) {
  const akma_state_t *st = state_of(ssl);
  if (!want) return M5_EINVAL;
  if (!st || !st->wanted) return M5_ENOENT;
  *want = st->want;
  return M5_OK;
}

int m5_akma_ssl_set_key(SSL *ssl, const m5_akma_key_t *key) {
  akma_state_t *st = state_of(ssl);
  if (!key) return M5_EINVAL;
  if (!st || !st->wanted) return M5_ENOENT;
  /* A key that has already expired must not open a session (architecture §4). */
  if (key->expiry <= (int64_t)time(NULL)) return M5_ERANGE;
  m5_wipe(&st->key, sizeof st->key);
  st->key = *key;
  memcpy(st->key_akid, st->want.akid, sizeof st->key_akid);
  memcpy(st->key_ua, st->want.ua, M5_AKMA_UA_LEN);
  st->key_set = 1;
  st->wanted = 0;
  return M5_OK;
}

const m5_akma_key_t *m5_akma_ssl_key(SSL *ssl) {
  akma_state_t *st = state_of(ssl);
  if (!st || !st->key_set || !st->key_used || !SSL_is_init_finished(ssl)) return NULL;
  return &st->key;
}

void m5_akma_ssl_wipe_key(SSL *ssl) {
  akma_state_t *st = state_of(ssl);
  /* Only once the handshake is over: no PSK callback can ask for it again (no renegotiation,
   * no post-handshake PSK use). */
  if (st && SSL_is_init_finished(ssl)) m5_wipe(st->key.kaf, sizeof st->key.kaf);
}

const char *m5_akma_ssl_akid(SSL *ssl) {
  akma_state_t *st = state_of(ssl);
  return st && st->have_akid ? st->akid : NULL;
}

/* A ClientKeyExchange identity was found (RFC 4279 §2 and RFC 5489 §2: psk_identity comes
 * first for PSK and ECDHE_PSK alike). */
static int cke_identity(SSL *ssl, akma_state_t *st, const uint8_t *id, size_t n,
                        m5_akma_want_t *want) {
  char akid[M5_AKMA_AKID_MAX + 1];
  if (n > PSK_MAX_IDENTITY_LEN || identity_to_akid(id, n, akid) != M5_OK) return M5_EPROTO;
  const SSL_CIPHER *cipher = SSL_get_pending_cipher(ssl);
  const ctx_data_t *d = ctx_data_of(ssl);
  /* Before our ServerHello, or a foreign context: OpenSSL rejects the message itself. */
  if (!cipher || !d) return 0;
  record_akid(st, akid);
  uint8_t ua[M5_AKMA_UA_LEN];
  m5_akma_ua_tls12(SSL_CIPHER_get_protocol_id(cipher), ua);
  want_fill(st, d, akid, ua);
  *want = st->want;
  return 1;
}

static int scan_dtls(SSL *ssl, akma_state_t *st, const uint8_t *p, size_t n, m5_akma_want_t *want) {
  for (size_t i = 0; n - i >= DTLS_REC_HDR;) {
    const uint8_t *rec = p + i;
    size_t len = get16(rec + 11);
    if (n - i - DTLS_REC_HDR < len) return 0; /* truncated: OpenSSL drops it */
    i += DTLS_REC_HDR + len;
    if (rec[0] != REC_HANDSHAKE || get16(rec + 3) != 0) continue; /* epoch 0 only */
    const uint8_t *b = rec + DTLS_REC_HDR;
    for (size_t j = 0; len - j >= DTLS_HS_HDR;) {
      const uint8_t *h = b + j;
      size_t mlen = get24(h + 1), off = get24(h + 6), flen = get24(h + 9);
      if (len - j - DTLS_HS_HDR < flen) break;
      j += DTLS_HS_HDR + flen;
      if (h[0] != HS_CLIENT_KEY_EXCHANGE) continue;
      /* A fragmented ClientKeyExchange is not reassembled here: OpenSSL gets it and, with no
       * key, the handshake fails with unknown_psk_identity. */
      if (off != 0 || flen != mlen || flen < 2) return M5_EPROTO;
      size_t idlen = get16(h + DTLS_HS_HDR);
      if (idlen > flen - 2) return M5_EPROTO;
      return cke_identity(ssl, st, h + DTLS_HS_HDR + 2, idlen, want);
    }
  }
  return 0;
}

/* Handshake bytes of plaintext records, as one stream. Returns 1 with *id and *idlen set when a
 * ClientKeyExchange identity is complete, M5_EPROTO for an over-long one, else 0. */
static int scan_hs(tls_scan_t *s, const uint8_t *q, size_t m, const uint8_t **id, size_t *idlen) {
  for (size_t j = 0; j < m;) {
    if (!s->hs_in_body) {
      s->hs_hdr[s->hs_have++] = q[j++];
      if (s->hs_have < TLS_HS_HDR) continue;
      s->hs_have = 0;
      s->hs_type = s->hs_hdr[0];
      s->hs_left = get24(s->hs_hdr + 1);
      s->hs_in_body = s->hs_left > 0;
      s->cke_have = 0;
      continue;
    }
    size_t take = m - j < s->hs_left ? m - j : s->hs_left;
    if (s->hs_type == HS_CLIENT_KEY_EXCHANGE) {
      size_t room = sizeof s->cke - s->cke_have;
      size_t c = take < room ? take : room;
      memcpy(s->cke + s->cke_have, q + j, c);
      s->cke_have += c;
      if (s->cke_have >= 2) {
        size_t l = get16(s->cke);
        if (l > PSK_MAX_IDENTITY_LEN) return M5_EPROTO;
        if (s->cke_have >= 2 + l) {
          *id = s->cke + 2;
          *idlen = l;
          return 1;
        }
      }
    }
    j += take;
    s->hs_left -= take;
    if (s->hs_left == 0) s->hs_in_body = 0;
  }
  return 0;
}

static int scan_tls(SSL *ssl, akma_state_t *st, const uint8_t *p, size_t n, m5_akma_want_t *want) {
  /* Work on a copy: bytes we ask the transport to hold must be seen again next time. */
  tls_scan_t s = st->scan;
  int rc = 0;
  const uint8_t *id = NULL;
  size_t idlen = 0;
  size_t i = 0;
  while (i < n && !s.done) {
    if (!s.rec_in_body) {
      s.rec_hdr[s.rec_have++] = p[i++];
      if (s.rec_have < TLS_REC_HDR) continue;
      s.rec_have = 0;
      s.rec_type = s.rec_hdr[0];
      s.rec_left = get16(s.rec_hdr + 3);
      /* Past the plaintext handshake (or not TLS at all): nothing more to find. */
      if (s.rec_type == REC_CCS || s.rec_type == REC_APPDATA || s.rec_left > TLS_REC_MAX) {
        s.done = 1;
        break;
      }
      s.rec_in_body = s.rec_left > 0;
      continue;
    }
    size_t take = n - i < s.rec_left ? n - i : s.rec_left;
    if (s.rec_type == REC_HANDSHAKE) {
      rc = scan_hs(&s, p + i, take, &id, &idlen);
      if (rc != 0) break;
    }
    i += take;
    s.rec_left -= take;
    if (s.rec_left == 0) s.rec_in_body = 0;
  }
  if (rc == 1) {
    rc = cke_identity(ssl, st, id, idlen, want);
    if (rc == 1) return 1; /* held: state not advanced */
  }
  if (rc != 0) s.done = 1; /* the identity is decided; the rest is OpenSSL's */
  int partial = !s.done && (s.rec_have > 0 || s.rec_in_body);
  st->scan = s;
  if (rc != 0) return rc;
  return partial ? M5_EAGAIN : 0;
}

int m5_akma_scan_input(SSL *ssl, const uint8_t *p, size_t n, m5_akma_want_t *want) {
  if (!ssl || (!p && n) || !want) return M5_EINVAL;
  akma_state_t *st = state_need(ssl);
  if (!st) return M5_ENOMEM;
  /* One handshake per SSL (no renegotiation): once keyed or done there is nothing to find. */
  if (st->key_set || SSL_is_init_finished(ssl) || n == 0) return 0;
  if (SSL_is_dtls(ssl)) return scan_dtls(ssl, st, p, n, want);
  /* TLS 1.3 streams are scanned too (SSL_version() says 1.3 before anything is negotiated);
   * their first ChangeCipherSpec or encrypted record ends the scan. */
  return scan_tls(ssl, st, p, n, want);
}

/* ---- client ---- */

SSL_CTX *m5_akma_client_ctx_new(int dtls, int tls12, char *err, size_t errlen) {
  if (err && errlen) err[0] = '\0';
  pthread_once(&idx_once, idx_init);
  ERR_clear_error();
  SSL_CTX *ctx = SSL_CTX_new(dtls ? DTLS_client_method() : TLS_client_method());
  if (!ctx) {
    ctx_err(err, errlen, "cannot create the AKMA client context");
    return NULL;
  }
  if (!common_profile(ctx, dtls) ||
      (!dtls && !SSL_CTX_set_min_proto_version(ctx, tls12 ? TLS1_2_VERSION : TLS1_3_VERSION))) {
    ctx_err(err, errlen, "cannot configure the AKMA client context");
    SSL_CTX_free(ctx);
    return NULL;
  }
  return ctx;
}

static int psk_use_session_cb(SSL *ssl, const EVP_MD *md, const unsigned char **id, size_t *idlen,
                              SSL_SESSION **sess) {
  *sess = NULL;
  akma_state_t *st = state_of(ssl);
  /* After a HelloRetryRequest md is the chosen suite's hash; ours are all SHA-256. */
  if (!st || !st->client || (md && !EVP_MD_is_a(md, "SHA256"))) return 1;
  uint8_t ua[M5_AKMA_UA_LEN], kaf[M5_AKMA_KEY_LEN];
  m5_akma_ua_tls13(ua);
  if (m5_akma_kaf(st->kakma, st->cli_fqdn, ua, kaf) != M5_OK) return 0;
  *sess = psk_session(ssl, kaf);
  m5_wipe(kaf, sizeof kaf);
  if (!*sess) return 0;
  *id = (const unsigned char *)st->identity;
  *idlen = strlen(st->identity);
  return 1;
}

static unsigned int psk_client_cb(SSL *ssl, const char *hint, char *identity,
                                  unsigned int max_identity_len, unsigned char *psk,
                                  unsigned int max_psk_len) {
  akma_state_t *st = state_of(ssl);
  /* In TLS 1.3 OpenSSL asks this callback only if psk_use_session_cb gave no session; there
   * is no ServerHello yet, so no suite to derive for. */
  const SSL_CIPHER *cipher = chosen_cipher(ssl);
  if (!st || !st->client || !cipher || max_psk_len < M5_AKMA_KEY_LEN ||
      SSL_CIPHER_get_protocol_id(cipher) >> 8 == 0x13)
    return 0;
  /* A server hinting at another scheme wants another key. */
  if (hint && *hint && strcmp(hint, PREFIX) != 0) return 0;
  size_t idlen = strlen(st->identity);
  if (idlen > max_identity_len) return 0;
  uint8_t ua[M5_AKMA_UA_LEN], kaf[M5_AKMA_KEY_LEN];
  m5_akma_ua_tls12(SSL_CIPHER_get_protocol_id(cipher), ua);
  if (m5_akma_kaf(st->kakma, st->cli_fqdn, ua, kaf) != M5_OK) return 0;
  memcpy(identity, st->identity, idlen + 1);
  memcpy(psk, kaf, M5_AKMA_KEY_LEN);
  m5_wipe(kaf, sizeof kaf);
  return M5_AKMA_KEY_LEN;
}

int m5_akma_client_ssl_setup(SSL *ssl, const m5_akma_cred_t *cred) {
  if (!ssl || !cred || m5_akma_fqdn_valid(cred->fqdn) != M5_OK) return M5_EINVAL;
  char akid[M5_AKMA_AKID_MAX + 1];
  size_t alen = strnlen(cred->akid, sizeof cred->akid);
  if (alen == sizeof cred->akid) return M5_EINVAL;
  /* Check the A-KID the way the server will read it back out of the identity. */
  char identity[PREFIX_LEN + M5_AKMA_AKID_MAX + 1];
  memcpy(identity, PREFIX, PREFIX_LEN);
  memcpy(identity + PREFIX_LEN, cred->akid, alen + 1);
  if (identity_to_akid((const uint8_t *)identity, PREFIX_LEN + alen, akid) != M5_OK ||
      strcmp(akid, cred->akid) != 0)
    return M5_EINVAL;
  int rc = m5_akma_ssl_attach(ssl);
  if (rc != M5_OK) return rc;
  akma_state_t *st = state_of(ssl);
  if (!SSL_set_tlsext_host_name(ssl, cred->fqdn)) return M5_ENOMEM;
  st->client = 1;
  memcpy(st->kakma, cred->kakma, sizeof st->kakma);
  snprintf(st->cli_fqdn, sizeof st->cli_fqdn, "%s", cred->fqdn);
  memcpy(st->identity, identity, sizeof st->identity);
  SSL_set_psk_use_session_callback(ssl, psk_use_session_cb);
  SSL_set_psk_client_callback(ssl, psk_client_cb);
  return M5_OK;
}
