/* OpenSSL contexts per the TS 33.210 profile (architecture §4): TLS 1.2 and 1.3 only, no
 * 0-RTT, no renegotiation, no session tickets, AEAD suites only; and the certificate-identity
 * checks the servers authorise with (SAN dNSName for AFs, SAN URI for roles and clients).
 * The AKMA PSK callbacks join this module with the MSGin5G-1 issue. */
#ifndef M5_TLS_TLS_H
#define M5_TLS_TLS_H

#include <openssl/ssl.h>
#include <stddef.h>

typedef struct {
  const char *cert_file; /* PEM chain; required for servers, optional for clients */
  const char *key_file;  /* PEM private key */
  const char *ca_file;   /* PEM bundle that peers' certificates must chain to */
  int verify_peer;       /* server: require a client certificate; client: verify the server */
  const char *alpn;      /* comma-separated protocols ("h2"); NULL = no ALPN */
} m5_tls_opts_t;

/* Server context. With alpn set, a client whose ALPN list has none of them is refused with
 * the no_application_protocol alert; a client that sends no ALPN is accepted (the caller
 * then speaks its first protocol). err gets a message naming the file that failed. */
SSL_CTX *m5_tls_server_ctx_new(const m5_tls_opts_t *opts, char *err, size_t errlen);
SSL_CTX *m5_tls_client_ctx_new(const m5_tls_opts_t *opts, char *err, size_t errlen);

/* Peer-certificate identity (the peer's leaf certificate, verified by the handshake).
 * 1 if present, 0 if not (also when there is no certificate). */
int m5_tls_peer_has_san_dns(SSL *ssl, const char *name);
int m5_tls_peer_has_san_uri(SSL *ssl, const char *uri);
/* Copies the first SAN URI starting with prefix, without the prefix, into out. M5_ENOENT if
 * there is none, M5_ERANGE if it does not fit. */
int m5_tls_peer_san_uri_suffix(SSL *ssl, const char *prefix, char *out, size_t outlen);

/* The last OpenSSL error queue entries as one line (and clears the queue), for logs. */
const char *m5_tls_last_error(char *buf, size_t len);

#endif
