/* Unit tests for src/lib/tls/akma.c: AKMA-keyed TLS 1.3, TLS 1.2 and DTLS 1.2 handshakes
 * between our client and server contexts, driven in memory. The test plays the transport: it
 * scans input before feeding it, and the K_AF "arrives from the AAnF" one round after the
 * server asked for it, so every handshake really pauses. K_AF values are derived here
 * independently, with the Ua* identifiers written out as TS 33.220 Annex H gives them. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "core/err.h"
#include "crypto/akma.h"
#include "crypto/codec.h"
#include "tls/akma.h"

#define FQDN "localhost"
#define SUPI "001010123456789"
#define ROUNDS 40

static const uint8_t UA13[5] = {0x01, 0x00, 0x00, 0x00, 0x07};

typedef struct {
  SSL_CTX *sctx, *cctx;
  SSL *s, *c;
  BIO *s_in, *s_out, *c_in, *c_out;
  uint8_t kakma[M5_AKMA_KEY_LEN];
  char akid[M5_AKMA_AKID_MAX + 1];
  uint8_t expect_ua[M5_AKMA_UA_LEN];
  const char *raw_identity; /* test client sends this identity instead of the library's */
  int wrong_key;
  int chunk; /* TLS: deliver client bytes to the scanner this many at a time */
  /* transport */
  uint8_t c2s[65536];
  size_t c2s_n;
  int holding;
  int key_due; /* a want was seen; the key arrives next round */
  int wants;
  m5_akma_want_t want;
  int scan_eproto;
  /* outcome */
  int s_done, c_done, s_failed, c_failed;
  int s_alert_read, c_alert_read;
  int hvr_sent;
} pair_t;

static void info_cb(const SSL *ssl, int where, int ret) {
  pair_t *p = SSL_get_app_data(ssl);
  if (!p || (where & SSL_CB_READ_ALERT) != SSL_CB_READ_ALERT) return;
  if (ssl == p->s)
    p->s_alert_read = ret & 0xff;
  else
    p->c_alert_read = ret & 0xff;
}

static void msg_cb(int write_p, int version, int content_type, const void *buf, size_t len,
                   SSL *ssl, void *arg) {
  (void)version, (void)arg;
  pair_t *p = SSL_get_app_data(ssl);
  if (p && ssl == p->s && write_p && content_type == SSL3_RT_HANDSHAKE && len > 0 &&
      ((const uint8_t *)buf)[0] == DTLS1_MT_HELLO_VERIFY_REQUEST)
    p->hvr_sent++;
}

static BIO *mem_bio(void) {
  BIO *b = BIO_new(BIO_s_mem());
  assert_non_null(b);
  BIO_set_mem_eof_return(b, -1);
  return b;
}

static void test_kakma(uint8_t kakma[M5_AKMA_KEY_LEN], char *akid, size_t akid_len) {
  uint8_t kausf[M5_AKMA_KEY_LEN], atid[M5_AKMA_KEY_LEN];
  char realm[128];
  for (int i = 0; i < M5_AKMA_KEY_LEN; i++)
    kausf[i] = (uint8_t)(0xa0 + i);
  assert_int_equal(m5_akma_kakma(kausf, SUPI, kakma), M5_OK);
  assert_int_equal(m5_akma_atid(kausf, SUPI, atid), M5_OK);
  assert_int_equal(m5_akma_realm_from_supi(SUPI, 2, realm, sizeof realm), M5_OK);
  assert_int_equal(m5_akma_akid(M5_AKMA_DEFAULT_RID, atid, realm, akid, akid_len), M5_OK);
}

static const char *const NAMES[] = {FQDN, "m5s.example.org"};

static m5_akma_server_opts_t opts_default(void) {
  m5_akma_server_opts_t o = {NAMES, 2, 0, 0};
  return o;
}

/* Server and client SSLs on memory BIOs (dtls: 1 = DTLS, 0 = TLS); opts NULL: the default. */
static void pair_init(pair_t *p, int dtls, const m5_akma_server_opts_t *opts, int cli_tls12,
                      const char *cli_fqdn) {
  memset(p, 0, sizeof *p);
  char err[256];
  m5_akma_server_opts_t dflt = opts_default();
  p->sctx = m5_akma_server_ctx_new(dtls, opts ? opts : &dflt, err, sizeof err);
  assert_non_null(p->sctx);
  p->cctx = m5_akma_client_ctx_new(dtls, cli_tls12, err, sizeof err);
  assert_non_null(p->cctx);
  SSL_CTX_set_info_callback(p->sctx, info_cb);
  SSL_CTX_set_info_callback(p->cctx, info_cb);
  SSL_CTX_set_msg_callback(p->sctx, msg_cb);
  p->s = SSL_new(p->sctx);
  p->c = SSL_new(p->cctx);
  assert_non_null(p->s);
  assert_non_null(p->c);
  SSL_set_app_data(p->s, p);
  SSL_set_app_data(p->c, p);
  p->s_in = mem_bio(), p->s_out = mem_bio(), p->c_in = mem_bio(), p->c_out = mem_bio();
  SSL_set_bio(p->s, p->s_in, p->s_out);
  SSL_set_bio(p->c, p->c_in, p->c_out);
  SSL_set_accept_state(p->s);
  SSL_set_connect_state(p->c);
  if (dtls) {
    SSL_set_options(p->s, SSL_OP_NO_QUERY_MTU);
    SSL_set_options(p->c, SSL_OP_NO_QUERY_MTU);
    DTLS_set_link_mtu(p->s, 1400);
    DTLS_set_link_mtu(p->c, 1400);
  }
  assert_int_equal(m5_akma_ssl_attach(p->s), M5_OK);
  if (dtls) {
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons(40000)};
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(m5_akma_ssl_set_peer(p->s, (struct sockaddr *)&sin, sizeof sin), M5_OK);
  }
  test_kakma(p->kakma, p->akid, sizeof p->akid);
  m5_akma_cred_t cred;
  memset(&cred, 0, sizeof cred);
  memcpy(cred.kakma, p->kakma, sizeof cred.kakma);
  snprintf(cred.akid, sizeof cred.akid, "%s", p->akid);
  snprintf(cred.fqdn, sizeof cred.fqdn, "%s", cli_fqdn);
  assert_int_equal(m5_akma_ssl_attach(p->c), M5_OK);
  assert_int_equal(m5_akma_client_ssl_setup(p->c, &cred), M5_OK);
  m5_wipe(&cred, sizeof cred);
}

static void pair_free(pair_t *p) {
  SSL_free(p->s);
  SSL_free(p->c);
  SSL_CTX_free(p->sctx);
  SSL_CTX_free(p->cctx);
  ERR_clear_error();
}

static void drain(BIO *from, uint8_t *buf, size_t cap, size_t *n) {
  int r;
  while (*n < cap && (r = BIO_read(from, buf + *n, (int)(cap - *n))) > 0)
    *n += (size_t)r;
}

static void move(BIO *from, BIO *to) {
  uint8_t buf[16384];
  int r;
  while ((r = BIO_read(from, buf, sizeof buf)) > 0)
    assert_int_equal(BIO_write(to, buf, r), r);
}

/* The AAnF's answer, derived here from K_AKMA and the wanted AF_ID. */
static void deliver_key(pair_t *p) {
  m5_akma_key_t key;
  memset(&key, 0, sizeof key);
  assert_int_equal(m5_akma_kaf(p->kakma, p->want.fqdn, p->want.ua, key.kaf), M5_OK);
  if (p->wrong_key) key.kaf[0] ^= 0x01;
  key.expiry = (int64_t)time(NULL) + 3600;
  snprintf(key.supi, sizeof key.supi, "%s", SUPI);
  assert_int_equal(m5_akma_ssl_set_key(p->s, &key), M5_OK);
  m5_wipe(&key, sizeof key);
}

static void step(SSL *ssl, int *done, int *failed) {
  if (*done || *failed) return;
  int r = SSL_do_handshake(ssl);
  if (r == 1) {
    *done = 1;
    return;
  }
  int e = SSL_get_error(ssl, r);
  if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE && e != SSL_ERROR_WANT_CLIENT_HELLO_CB)
    *failed = 1;
}

/* Server transport: key arriving, then scan and feed (or hold) the client's bytes. */
static void server_input(pair_t *p) {
  if (p->key_due) {
    p->key_due = 0;
    deliver_key(p);
    p->holding = 0;
  }
  if (p->c2s_n == 0 || p->holding) return;
  size_t off = 0;
  while (off < p->c2s_n) {
    size_t n = p->c2s_n - off;
    if (p->chunk > 0 && n > (size_t)p->chunk) n = (size_t)p->chunk;
    int rc = m5_akma_scan_input(p->s, p->c2s + off, n, &p->want);
    if (rc == 1) {
      p->wants++;
      p->key_due = 1;
      p->holding = 1;
      break;
    }
    if (rc == M5_EPROTO) p->scan_eproto++;
    assert_true(rc == 0 || rc == M5_EAGAIN || rc == M5_EPROTO);
    assert_int_equal(BIO_write(p->s_in, p->c2s + off, (int)n), (int)n);
    off += n;
  }
  memmove(p->c2s, p->c2s + off, p->c2s_n - off);
  p->c2s_n -= off;
}

static void run(pair_t *p) {
  for (int i = 0; i < ROUNDS && !(p->s_done && p->c_done); i++) {
    step(p->c, &p->c_done, &p->c_failed);
    drain(p->c_out, p->c2s, sizeof p->c2s, &p->c2s_n);
    server_input(p);
    step(p->s, &p->s_done, &p->s_failed);
    if (!p->s_done && !p->s_failed && !p->key_due && SSL_want_client_hello_cb(p->s)) {
      assert_int_equal(m5_akma_ssl_wanted(p->s, &p->want), M5_OK);
      p->wants++;
      p->key_due = 1;
    }
    move(p->s_out, p->c_in);
    if (p->s_failed && p->c_failed) break;
  }
}

static void roundtrip(pair_t *p) {
  char buf[64];
  assert_int_equal(SSL_write(p->c, "ping", 4), 4);
  move(p->c_out, p->s_in);
  assert_int_equal(SSL_read(p->s, buf, sizeof buf), 4);
  assert_memory_equal(buf, "ping", 4);
  assert_int_equal(SSL_write(p->s, "pong", 4), 4);
  move(p->s_out, p->c_in);
  /* TLS 1.3: the client may first meet post-handshake messages; none are sent (no tickets). */
  assert_int_equal(SSL_read(p->c, buf, sizeof buf), 4);
  assert_memory_equal(buf, "pong", 4);
}

static void assert_keyed(pair_t *p, const uint8_t ua[M5_AKMA_UA_LEN]) {
  assert_true(p->s_done);
  assert_true(p->c_done);
  assert_int_equal(p->wants, 1);
  assert_string_equal(p->want.akid, p->akid);
  assert_string_equal(p->want.fqdn, FQDN);
  assert_memory_equal(p->want.ua, ua, M5_AKMA_UA_LEN);
  const m5_akma_key_t *k = m5_akma_ssl_key(p->s);
  assert_non_null(k);
  uint8_t kaf[M5_AKMA_KEY_LEN];
  assert_int_equal(m5_akma_kaf(p->kakma, FQDN, ua, kaf), M5_OK);
  assert_memory_equal(k->kaf, kaf, sizeof kaf);
  assert_string_equal(k->supi, SUPI);
  assert_string_equal(m5_akma_ssl_akid(p->s), p->akid);
  /* Wiping K_AF after the handshake keeps SUPI and expiry and the session working. */
  int64_t expiry = k->expiry;
  m5_akma_ssl_wipe_key(p->s);
  k = m5_akma_ssl_key(p->s);
  assert_non_null(k);
  uint8_t zero[M5_AKMA_KEY_LEN] = {0};
  assert_memory_equal(k->kaf, zero, sizeof zero);
  assert_string_equal(k->supi, SUPI);
  assert_int_equal(k->expiry, expiry);
  roundtrip(p);
}

/* The server refused the handshake with alert, before anything was asked of the AAnF. */
static void assert_refused(const pair_t *p, int alert) {
  assert_true(p->s_failed);
  assert_int_equal(p->c_alert_read, alert);
  assert_int_equal(p->wants, 0);
}

static void test_tls13_psk_dhe_ke(void **state) {
  (void)state;
  for (int allow_ke = 0; allow_ke <= 1; allow_ke++) {
    m5_akma_server_opts_t o = opts_default();
    o.allow_psk_ke = allow_ke; /* psk_dhe_ke must win even when psk_ke is allowed */
    pair_t p;
    pair_init(&p, 0, &o, 0, FQDN);
    if (allow_ke) SSL_set_options(p.c, SSL_OP_ALLOW_NO_DHE_KEX);
    run(&p);
    assert_keyed(&p, UA13);
    assert_int_equal(SSL_version(p.s), TLS1_3_VERSION);
    assert_int_not_equal(SSL_get_negotiated_group(p.s), 0);
    assert_string_equal(SSL_CIPHER_get_name(SSL_get_current_cipher(p.s)), "TLS_AES_128_GCM_SHA256");
    pair_free(&p);
  }
}

/* Both SHA-256 suites work with the one PSK. */
static void test_tls13_chacha(void **state) {
  (void)state;
  pair_t p;
  pair_init(&p, 0, NULL, 0, FQDN);
  assert_true(SSL_set_ciphersuites(p.c, "TLS_CHACHA20_POLY1305_SHA256"));
  run(&p);
  assert_keyed(&p, UA13);
  assert_string_equal(SSL_CIPHER_get_name(SSL_get_current_cipher(p.s)),
                      "TLS_CHACHA20_POLY1305_SHA256");
  pair_free(&p);
}

/* HelloRetryRequest (the client's key share is for a group we do not take): the second
 * ClientHello goes through the callback again with the key already set, and no second
 * AAnF request is made. */
static void test_tls13_hello_retry(void **state) {
  (void)state;
  pair_t p;
  pair_init(&p, 0, NULL, 0, FQDN);
  assert_true(SSL_set1_groups_list(p.c, "P-384:X25519"));
  run(&p);
  assert_keyed(&p, UA13);
  assert_int_equal(SSL_get_negotiated_group(p.s), NID_X25519);
  pair_free(&p);
}

/* A constrained client with no usable key share: psk_ke only when the server allows it. */
static void test_tls13_psk_ke(void **state) {
  (void)state;
  for (int allow_ke = 1; allow_ke >= 0; allow_ke--) {
    m5_akma_server_opts_t o = opts_default();
    o.allow_psk_ke = allow_ke;
    pair_t p;
    pair_init(&p, 0, &o, 0, FQDN);
    SSL_set_options(p.c, SSL_OP_ALLOW_NO_DHE_KEX);
    assert_true(SSL_set1_groups_list(p.c, "ffdhe2048"));
    run(&p);
    if (allow_ke) {
      assert_keyed(&p, UA13);
      assert_int_equal(SSL_get_negotiated_group(p.s), 0); /* no (EC)DHE: psk_ke */
    } else {
      assert_true(p.s_failed);
      assert_true(p.c_failed);
      assert_null(m5_akma_ssl_key(p.s));
    }
    pair_free(&p);
  }
}

static const struct {
  const char *name;
  uint16_t id;
} SUITES12[] = {
    {"ECDHE-PSK-CHACHA20-POLY1305", 0xccac},
    {"PSK-AES128-GCM-SHA256", 0x00a8},
    {"PSK-AES128-CCM8", 0xc0a8},
};

static void ua12(uint16_t id, uint8_t ua[M5_AKMA_UA_LEN]) {
  ua[0] = 0x01, ua[1] = 0x00, ua[2] = 0x01;
  ua[3] = (uint8_t)(id >> 8), ua[4] = (uint8_t)id;
}

static void test_tls12_each_suite(void **state) {
  (void)state;
  for (int chunk = 0; chunk <= 7; chunk += 7) {
    for (size_t i = 0; i < sizeof SUITES12 / sizeof SUITES12[0]; i++) {
      m5_akma_server_opts_t o = opts_default();
      o.allow_tls12 = 1;
      pair_t p;
      pair_init(&p, 0, &o, 1, FQDN);
      p.chunk = chunk; /* 7: records and messages split across scan calls */
      assert_true(SSL_set_max_proto_version(p.c, TLS1_2_VERSION));
      assert_true(SSL_set_cipher_list(p.c, SUITES12[i].name));
      run(&p);
      uint8_t ua[M5_AKMA_UA_LEN];
      ua12(SUITES12[i].id, ua);
      assert_keyed(&p, ua);
      assert_int_equal(SSL_version(p.s), TLS1_2_VERSION);
      assert_int_equal(SSL_CIPHER_get_protocol_id(SSL_get_current_cipher(p.s)), SUITES12[i].id);
      pair_free(&p);
    }
  }
}

/* Without allow_tls12 a 1.2-only client is refused. */
static void test_tls12_not_allowed(void **state) {
  (void)state;
  pair_t p;
  pair_init(&p, 0, NULL, 1, FQDN);
  assert_true(SSL_set_max_proto_version(p.c, TLS1_2_VERSION));
  run(&p);
  assert_refused(&p, SSL_AD_PROTOCOL_VERSION);
  assert_true(p.c_failed);
  pair_free(&p);
}

static void test_dtls12_each_suite(void **state) {
  (void)state;
  for (size_t i = 0; i < sizeof SUITES12 / sizeof SUITES12[0]; i++) {
    pair_t p;
    pair_init(&p, 1, NULL, 0, FQDN);
    assert_true(SSL_set_cipher_list(p.c, SUITES12[i].name));
    run(&p);
    uint8_t ua[M5_AKMA_UA_LEN];
    ua12(SUITES12[i].id, ua);
    assert_int_equal(p.hvr_sent, 1);
    assert_keyed(&p, ua);
    assert_int_equal(SSL_version(p.s), DTLS1_2_VERSION);
    assert_int_equal(SSL_CIPHER_get_protocol_id(SSL_get_current_cipher(p.s)), SUITES12[i].id);
    pair_free(&p);
  }
}

/* With every suite offered, the server's order decides: ECDHE-PSK first. */
static void test_dtls12_server_preference(void **state) {
  (void)state;
  pair_t p;
  pair_init(&p, 1, NULL, 0, FQDN);
  assert_true(SSL_set_cipher_list(p.c, "PSK-AES128-CCM8:PSK-AES128-GCM-SHA256:"
                                       "ECDHE-PSK-CHACHA20-POLY1305"));
  run(&p);
  uint8_t ua[M5_AKMA_UA_LEN];
  ua12(0xccac, ua);
  assert_keyed(&p, ua);
  pair_free(&p);
}

/* The cookie is bound to the peer address: another address's cookie fails verification. */
static void test_dtls_cookie_bound_to_peer(void **state) {
  (void)state;
  pair_t p;
  pair_init(&p, 1, NULL, 0, FQDN);
  step(p.c, &p.c_done, &p.c_failed);
  move(p.c_out, p.s_in);
  step(p.s, &p.s_done, &p.s_failed); /* HelloVerifyRequest */
  assert_int_equal(p.hvr_sent, 1);
  struct sockaddr_in6 other = {.sin6_family = AF_INET6, .sin6_port = htons(40000)};
  other.sin6_addr.s6_addr[15] = 1;
  assert_int_equal(m5_akma_ssl_set_peer(p.s, (struct sockaddr *)&other, sizeof other), M5_OK);
  run(&p);
  assert_refused(&p, SSL_AD_HANDSHAKE_FAILURE); /* cookie mismatch */
  pair_free(&p);
}

/* The cookie key rotates: a cookie handed out under the previous key still verifies (the
 * client answering a HelloVerifyRequest sent just before a rotation), one from two keys back
 * does not. */
static void test_dtls_cookie_rotation(void **state) {
  (void)state;
  for (int rotations = 0; rotations <= 2; rotations++) {
    pair_t p;
    pair_init(&p, 1, NULL, 0, FQDN);
    step(p.c, &p.c_done, &p.c_failed);
    move(p.c_out, p.s_in);
    step(p.s, &p.s_done, &p.s_failed); /* HelloVerifyRequest with a cookie under the key now */
    assert_int_equal(p.hvr_sent, 1);
    for (int i = 0; i < rotations; i++)
      assert_int_equal(m5_akma_ctx_rotate_cookie_key(p.sctx), M5_OK);
    run(&p);
    if (rotations < 2) {
      uint8_t ua[M5_AKMA_UA_LEN];
      ua12(0xccac, ua);
      assert_keyed(&p, ua);
    } else {
      assert_refused(&p, SSL_AD_HANDSHAKE_FAILURE); /* the cookie's key is gone */
    }
    pair_free(&p);
  }
  assert_int_equal(m5_akma_ctx_rotate_cookie_key(NULL), M5_EINVAL);
}

static void test_wrong_kaf(void **state) {
  (void)state;
  for (int dtls = 0; dtls <= 1; dtls++) {
    pair_t p;
    pair_init(&p, dtls, NULL, 0, FQDN);
    p.wrong_key = 1;
    run(&p);
    assert_int_equal(p.wants, 1);
    assert_false(p.s_done);
    assert_false(p.c_done);
    assert_null(m5_akma_ssl_key(p.s));
    /* TLS 1.3: the binder does not verify (illegal_parameter). DTLS 1.2: the client's
     * Finished fails its MAC and is dropped silently (RFC 6347 §4.1.2.7); the handshake
     * never completes and the transport's handshake timeout ends it. */
    if (!dtls) {
      assert_true(p.s_failed);
      assert_int_equal(p.c_alert_read, SSL_AD_ILLEGAL_PARAMETER);
    }
    pair_free(&p);
  }
}

static void test_sni_not_ours(void **state) {
  (void)state;
  for (int dtls = 0; dtls <= 1; dtls++) {
    pair_t p;
    pair_init(&p, dtls, NULL, 0, "other.example.org");
    run(&p);
    assert_refused(&p, SSL_AD_UNRECOGNIZED_NAME);
    pair_free(&p);
  }
}

/* A second name of the server, and no SNI at all (-> the primary name). */
static void test_sni_second_name_and_none(void **state) {
  (void)state;
  pair_t p;
  pair_init(&p, 0, NULL, 0, "M5S.example.org");
  run(&p);
  assert_true(p.s_done);
  assert_string_equal(p.want.fqdn, "M5S.example.org"); /* the client's spelling: its AF_ID */
  pair_free(&p);

  for (int dtls = 0; dtls <= 1; dtls++) {
    pair_init(&p, dtls, NULL, 0, FQDN);
    assert_true(SSL_set_tlsext_host_name(p.c, NULL));
    run(&p);
    assert_true(p.s_done);
    assert_string_equal(p.want.fqdn, FQDN);
    pair_free(&p);
  }
}

/* Test clients presenting their own identity string. */
static int raw_use_session_cb(SSL *ssl, const EVP_MD *md, const unsigned char **id, size_t *idlen,
                              SSL_SESSION **sess) {
  (void)md;
  pair_t *p = SSL_get_app_data(ssl);
  uint8_t kaf[M5_AKMA_KEY_LEN];
  static const unsigned char tls_aes_128_gcm_sha256[] = {0x13, 0x01};
  if (m5_akma_kaf(p->kakma, FQDN, UA13, kaf) != M5_OK) return 0;
  SSL_SESSION *s = SSL_SESSION_new();
  if (!s || !SSL_SESSION_set1_master_key(s, kaf, sizeof kaf) ||
      !SSL_SESSION_set_cipher(s, SSL_CIPHER_find(ssl, tls_aes_128_gcm_sha256)) ||
      !SSL_SESSION_set_protocol_version(s, TLS1_3_VERSION)) {
    SSL_SESSION_free(s);
    return 0;
  }
  *sess = s;
  *id = (const unsigned char *)p->raw_identity;
  *idlen = strlen(p->raw_identity);
  return 1;
}

static unsigned int raw_client_cb(SSL *ssl, const char *hint, char *identity,
                                  unsigned int max_identity_len, unsigned char *psk,
                                  unsigned int max_psk_len) {
  (void)hint;
  pair_t *p = SSL_get_app_data(ssl);
  const SSL_CIPHER *c = SSL_get_pending_cipher(ssl);
  uint8_t ua[M5_AKMA_UA_LEN];
  if (!c || max_psk_len < 32 || strlen(p->raw_identity) > max_identity_len) return 0;
  ua12(SSL_CIPHER_get_protocol_id(c), ua);
  if (m5_akma_kaf(p->kakma, FQDN, ua, psk) != M5_OK) return 0;
  strcpy(identity, p->raw_identity);
  return 32;
}

static void raw_identity(pair_t *p, const char *id) {
  p->raw_identity = id;
  SSL_set_psk_use_session_callback(p->c, raw_use_session_cb);
  SSL_set_psk_client_callback(p->c, raw_client_cb);
}

static void test_identity_dot_separator(void **state) {
  (void)state;
  for (int dtls = 0; dtls <= 1; dtls++) {
    pair_t p;
    char id[300];
    pair_init(&p, dtls, NULL, 0, FQDN);
    snprintf(id, sizeof id, "3GPP-AKMA.%s", p.akid);
    raw_identity(&p, id);
    if (dtls) assert_true(SSL_set_cipher_list(p.c, "PSK-AES128-GCM-SHA256"));
    run(&p);
    uint8_t ua[M5_AKMA_UA_LEN];
    ua12(0x00a8, ua);
    assert_keyed(&p, dtls ? ua : UA13);
    pair_free(&p);
  }
}

static void test_unknown_identity_prefix(void **state) {
  (void)state;
  for (int dtls = 0; dtls <= 1; dtls++) {
    pair_t p;
    char id[300];
    pair_init(&p, dtls, NULL, 0, FQDN);
    snprintf(id, sizeof id, "3GPP-bootstrapping.%s", p.akid);
    raw_identity(&p, id);
    run(&p);
    assert_refused(&p, SSL_AD_UNKNOWN_PSK_IDENTITY);
    if (dtls) assert_int_equal(p.scan_eproto, 1);
    assert_null(m5_akma_ssl_key(p.s));
    pair_free(&p);
  }
}

static void test_dhe_psk_client_refused(void **state) {
  (void)state;
  pair_t p;
  pair_init(&p, 1, NULL, 0, FQDN);
  assert_true(SSL_set_cipher_list(p.c, "DHE-PSK-AES128-GCM-SHA256"));
  run(&p);
  assert_refused(&p, SSL_AD_HANDSHAKE_FAILURE);
  pair_free(&p);
}

static void test_tls11_refused(void **state) {
  (void)state;
  m5_akma_server_opts_t o = opts_default();
  o.allow_tls12 = 1;
  pair_t p;
  pair_init(&p, 0, &o, 1, FQDN);
  SSL_set_security_level(p.c, 0);
  assert_true(SSL_set_min_proto_version(p.c, TLS1_1_VERSION));
  assert_true(SSL_set_max_proto_version(p.c, TLS1_1_VERSION));
  assert_true(SSL_set_cipher_list(p.c, "PSK-AES128-CBC-SHA:@SECLEVEL=0"));
  run(&p);
  assert_refused(&p, SSL_AD_PROTOCOL_VERSION);
  pair_free(&p);
}

static void test_api_edges(void **state) {
  (void)state;
  char err[256];
  m5_akma_server_opts_t o = opts_default();
  SSL_CTX *ctx = m5_akma_server_ctx_new(0, &o, err, sizeof err);
  assert_non_null(ctx);
  SSL *ssl = SSL_new(ctx);
  assert_non_null(ssl);
  m5_akma_want_t w;
  m5_akma_key_t key;
  memset(&key, 0, sizeof key);
  key.expiry = (int64_t)time(NULL) + 60;
  assert_int_equal(m5_akma_ssl_wanted(ssl, &w), M5_ENOENT);
  assert_int_equal(m5_akma_ssl_set_key(ssl, &key), M5_ENOENT); /* nothing was asked */
  assert_null(m5_akma_ssl_key(ssl));
  assert_null(m5_akma_ssl_akid(ssl));
  assert_int_equal(m5_akma_scan_input(ssl, (const uint8_t *)"\x16\x03", 2, &w), M5_EAGAIN);
  SSL_free(ssl);
  SSL_CTX_free(ctx);

  const char *const bad[] = {"localhost."};
  m5_akma_server_opts_t ob = {bad, 1, 0, 0};
  assert_null(m5_akma_server_ctx_new(1, &ob, err, sizeof err));
  assert_non_null(strstr(err, "akma.fqdn"));
  m5_akma_server_opts_t none = {NULL, 0, 0, 0};
  assert_null(m5_akma_server_ctx_new(1, &none, err, sizeof err));

  /* An expired key is refused even when wanted. */
  pair_t p;
  pair_init(&p, 0, &o, 0, FQDN);
  step(p.c, &p.c_done, &p.c_failed);
  move(p.c_out, p.s_in);
  step(p.s, &p.s_done, &p.s_failed);
  assert_true(SSL_want_client_hello_cb(p.s));
  assert_int_equal(m5_akma_ssl_wanted(p.s, &w), M5_OK);
  key.expiry = (int64_t)time(NULL) - 1;
  assert_int_equal(m5_akma_ssl_set_key(p.s, &key), M5_ERANGE);
  pair_free(&p);

  m5_akma_cred_t cred;
  memset(&cred, 0, sizeof cred);
  snprintf(cred.fqdn, sizeof cred.fqdn, "%s", "192.0.2.1.");
  snprintf(cred.akid, sizeof cred.akid, "%s", "0000.x@realm");
  SSL_CTX *cctx = m5_akma_client_ctx_new(0, 0, err, sizeof err);
  ssl = SSL_new(cctx);
  assert_int_equal(m5_akma_client_ssl_setup(ssl, &cred), M5_EINVAL);
  snprintf(cred.fqdn, sizeof cred.fqdn, "%s", FQDN);
  snprintf(cred.akid, sizeof cred.akid, "%s", "with space@realm");
  assert_int_equal(m5_akma_client_ssl_setup(ssl, &cred), M5_EINVAL);
  SSL_free(ssl);
  SSL_CTX_free(cctx);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_tls13_psk_dhe_ke),
      cmocka_unit_test(test_tls13_chacha),
      cmocka_unit_test(test_tls13_hello_retry),
      cmocka_unit_test(test_tls13_psk_ke),
      cmocka_unit_test(test_tls12_each_suite),
      cmocka_unit_test(test_tls12_not_allowed),
      cmocka_unit_test(test_dtls12_each_suite),
      cmocka_unit_test(test_dtls12_server_preference),
      cmocka_unit_test(test_dtls_cookie_bound_to_peer),
      cmocka_unit_test(test_dtls_cookie_rotation),
      cmocka_unit_test(test_wrong_kaf),
      cmocka_unit_test(test_sni_not_ours),
      cmocka_unit_test(test_sni_second_name_and_none),
      cmocka_unit_test(test_identity_dot_separator),
      cmocka_unit_test(test_unknown_identity_prefix),
      cmocka_unit_test(test_dhe_psk_client_refused),
      cmocka_unit_test(test_tls11_refused),
      cmocka_unit_test(test_api_edges),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
