/* AKMA-keyed (D)TLS for MSGin5G-1 (TS 33.535 Annex B/C, architecture §4): K_AF as the
 * pre-shared key, PSK identity hint "3GPP-AKMA", identity "3GPP-AKMA" + A-KID (the server also
 * accepts "3GPP-AKMA." + A-KID), AF_ID = FQDN || Ua* id (01 00 00 00 07 for TLS 1.3,
 * 01 00 01 yy zz with the negotiated suite for (D)TLS 1.2).
 *
 * Server side, waiting for the AAnF without blocking: the transport drives the handshake on
 * memory BIOs and asks this module, before feeding input and after each SSL_do_handshake,
 * whether a K_AF is wanted:
 *  - TLS 1.3: the ClientHello callback finds the identity in the pre_shared_key extension and,
 *    without a key, pauses the handshake (SSL_ERROR_WANT_CLIENT_HELLO_CB);
 *  - (D)TLS 1.2: the identity only comes in the plaintext ClientKeyExchange, after the suite is
 *    chosen; m5_akma_scan_input() finds it in the records before OpenSSL sees them, and the
 *    transport holds those bytes (and drops retransmissions) until the key is set.
 * The transport fetches the key (asynchronously), sets it with m5_akma_ssl_set_key() and
 * resumes; the PSK callbacks then answer from the per-SSL key. */
#ifndef M5_TLS_AKMA_H
#define M5_TLS_AKMA_H

#include "crypto/akma.h"

#include <openssl/ssl.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#define M5_AKMA_SUPI_MAX 63

typedef struct {
  uint8_t kaf[M5_AKMA_KEY_LEN];
  int64_t expiry; /* Unix seconds; sessions keyed by it end then */
  char supi[M5_AKMA_SUPI_MAX + 1]; /* digits, as the AAnF returned them (without "imsi-") */
} m5_akma_key_t;

typedef struct {
  char akid[M5_AKMA_AKID_MAX + 1];
  char fqdn[M5_AKMA_FQDN_MAX + 1]; /* the server name the client asked for (SNI or primary) */
  uint8_t ua[M5_AKMA_UA_LEN];
} m5_akma_want_t;

typedef struct {
  const char *const *fqdns; /* the server's names; [0] is the primary (no SNI -> this one) */
  size_t n_fqdns;
  int allow_psk_ke;         /* TLS 1.3 psk_ke (no (EC)DHE) for constrained UEs; psk_dhe_ke is preferred */
  int allow_tls12;          /* TLS (not DTLS) 1.2 when the client insists */
} m5_akma_server_opts_t;

/* Server contexts. dtls = 1: DTLS 1.2 only, suites ECDHE-PSK-CHACHA20-POLY1305,
 * PSK-AES128-GCM-SHA256, PSK-AES128-CCM8 in server order, cookie exchange on. dtls = 0:
 * TLS 1.3 (AES-128-GCM, ChaCha20-Poly1305) and, if allowed, TLS 1.2 with the same PSK suites.
 * No tickets, no renegotiation, no 0-RTT; SNI not among the names -> alert 112. The context
 * keeps a copy of the names. */
SSL_CTX *m5_akma_server_ctx_new(int dtls, const m5_akma_server_opts_t *opts, char *err,
                                size_t errlen);

/* DTLS server context: a fresh cookie key; the one it replaces still verifies cookies until
 * the next rotation (call it on a timer: a cookie then lives one to two periods). Any thread.
 * M5_EINVAL for a context not from m5_akma_server_ctx_new. */
int m5_akma_ctx_rotate_cookie_key(SSL_CTX *ctx);

/* Per-SSL AKMA state; call once after SSL_new on a server or client SSL. The state (and the
 * key in it, wiped) is freed with the SSL. */
int m5_akma_ssl_attach(SSL *ssl);
/* DTLS: the peer address that cookies are bound to. */
int m5_akma_ssl_set_peer(SSL *ssl, const struct sockaddr *sa, socklen_t len);

/* Server: inspect not-yet-fed handshake bytes (one datagram for DTLS; the buffered stream for
 * TLS). Returns 1 when they carry a (D)TLS 1.2 ClientKeyExchange whose K_AF is not set yet
 * (then *want is filled: hold the bytes), 0 when they can be fed, M5_EAGAIN when a TLS record
 * is incomplete and the bytes decide nothing yet (feed them anyway: OpenSSL waits too), or
 * M5_EPROTO for an identity that is not an AKMA identity (feed them: the handshake fails with
 * unknown_psk_identity). */
int m5_akma_scan_input(SSL *ssl, const uint8_t *p, size_t n, m5_akma_want_t *want);
/* Server, TLS 1.3: after SSL_do_handshake failed with SSL_ERROR_WANT_CLIENT_HELLO_CB, the
 * identity and names the paused handshake waits for. M5_ENOENT if none. */
int m5_akma_ssl_wanted(SSL *ssl, m5_akma_want_t *want);
/* Server: the K_AF for this handshake (copied). Then resume (SSL_do_handshake or feed the
 * held bytes). */
int m5_akma_ssl_set_key(SSL *ssl, const m5_akma_key_t *key);
/* After the handshake: the key that authenticated the peer (SUPI, expiry), or NULL. */
const m5_akma_key_t *m5_akma_ssl_key(SSL *ssl);
/* After the handshake: wipes K_AF from the per-SSL state (SUPI and expiry stay), so the key
 * does not sit in memory for the whole session once the caller has what it needs. */
void m5_akma_ssl_wipe_key(SSL *ssl);
/* The A-KID the client presented, or NULL. */
const char *m5_akma_ssl_akid(SSL *ssl);

/* Client contexts: dtls = 1 DTLS 1.2 with the three PSK suites; dtls = 0 TLS 1.3 (and 1.2
 * if tls12 is set, for tests and old stacks). */
SSL_CTX *m5_akma_client_ctx_new(int dtls, int tls12, char *err, size_t errlen);

typedef struct {
  uint8_t kakma[M5_AKMA_KEY_LEN];
  char akid[M5_AKMA_AKID_MAX + 1];
  char fqdn[M5_AKMA_FQDN_MAX + 1]; /* sent as SNI and used in AF_ID */
} m5_akma_cred_t;

/* Client: sets SNI and the credentials (copied; K_AF is derived inside the PSK callbacks with
 * the Ua* id of the protocol and suite actually negotiated). */
int m5_akma_client_ssl_setup(SSL *ssl, const m5_akma_cred_t *cred);

#endif
