/* What the two MSGin5G-1 transports share (ue_dtls.c, ue_tls.c): the listener and connection
 * base objects, the AKMA handshake driven on memory BIOs with the wait for K_AF from the AAnF
 * (architecture §4 "Waiting for the AAnF without blocking"), the UE session with its CoAP
 * endpoint, its timers (handshake, idle, K_AF expiry) and its deferred close.
 *
 * Each transport embeds ue_listener_t / ue_conn_t as the first member of its own structs and
 * gives the operations below. Everything runs on the listener's loop. */
#ifndef M5_SERVER_UE_CONN_H
#define M5_SERVER_UE_CONN_H

#include "server/ue/ue_transport.h"

#include <netinet/in.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/socket.h>

typedef struct ue_conn ue_conn_t;

typedef struct {
  const char *name;         /* "dtls" / "tls": ue_session_t.transport and logs */
  m5_coap_transport_t coap; /* endpoint framing */
  /* After every SSL call: puts what OpenSSL wrote into the wbio on the wire and updates the
   * transport's own state (retransmission timer, epoll interest). */
  void (*flush)(ue_conn_t *c);
  /* The key wait ended (c->key_failed says how): feed the held input and go on. */
  void (*resume)(ue_conn_t *c);
  /* TLS 1.3 only, paused in the ClientHello callback without a key: a fatal alert. */
  void (*alert)(ue_conn_t *c, uint8_t alert);
  /* One datagram (DTLS: SSL_write and flush now) / a run of stream bytes (TLS: collected and
   * written at the next flush or the end of the loop iteration); 0 or M5_E*. */
  int (*send)(ue_conn_t *c, const uint8_t *p, size_t n);
  /* Optional: the handshake completed and the session is open (before the opened hook). The
   * transport may free c->ssl, here (TLS) or later (DTLS: once the client has its last flight),
   * and set it and the BIOs to NULL: it then protects its records itself and reads them
   * without ue_conn_drive. */
  void (*opened)(ue_conn_t *c);
  /* With c->ssl freed: our close_notify at the end of a session that did not fail. */
  void (*close_notify)(ue_conn_t *c);
  /* Frees the transport's part of a connection (not c itself, not the SSL). */
  void (*release)(ue_conn_t *c);
  /* Sets up the transport's part of a bound listener and watches its socket; 0, or M5_E* with
   * a message in err. */
  int (*start_listener)(ue_listener_t *l, char *err, size_t errlen);
  /* Frees the transport's part of the listener (not l itself), at ue_listener_free. */
  void (*free_listener)(ue_listener_t *l);
} ue_conn_ops_t;

struct ue_listener {
  m5_loop_t *loop;
  ue_listener_opts_t o; /* defaults applied; o.host not kept */
  const ue_conn_ops_t *ops;
  int fd;
  uint16_t port;
  char name[80]; /* "127.0.0.1:5684/udp" */
  ue_conn_t *conns;
  ue_conn_t *reap; /* closing, waiting for the reaper */
  m5_timer_id_t reap_timer;
  size_t n_handshakes;
  atomic_size_t n_sessions; /* also read by other threads (ue_listener_sessions) */
  uint64_t dropped;         /* handshakes refused at max_handshakes / max_sessions */
  int freeing;              /* ue_listener_free runs: closes from hooks are no-ops */
};

enum { UE_CONN_HANDSHAKE, UE_CONN_WAIT_KEY, UE_CONN_OPEN };

struct ue_conn {
  ue_listener_t *l;
  ue_conn_t *prev, *next, *reap_next;
  SSL *ssl;         /* NULL once the transport does the records itself (ops->opened) */
  BIO *rbio, *wbio; /* owned by ssl */
  union { /* IPv4 or IPv6 (28 bytes; a sockaddr_storage is 128, per idle session) */
    struct sockaddr sa;
    struct sockaddr_in in;
    struct sockaddr_in6 in6;
  } addr;
  socklen_t addrlen;
  char peer[64];
  int state;
  unsigned closing : 1;
  unsigned waiting : 1;    /* an akma_keys_get callback is pending */
  unsigned wait_ch : 1;    /* TLS 1.3: paused in the ClientHello callback */
  unsigned key_failed : 1; /* no K_AF: the held input goes to OpenSSL without one */
  unsigned no_notify : 1;  /* close without close_notify (the peer address has a new owner) */
  unsigned fatal : 1;      /* OpenSSL reported a fatal error: no SSL_shutdown */
  unsigned shut : 1;       /* being torn down: nothing more is sent */
  unsigned charged : 1;    /* this handshake started an AAnF fetch: a token of its prefix's
                              bucket of unproven A-KIDs (src_limits.h) */
  unsigned bufs_off : 1;   /* the SSL's record buffers are released (ue_conn_bufs_release) */
  src_ref_t src;           /* its address and prefix in l->o.limits while half-open */
  char why[96];
  m5_akma_want_t *want; /* the A-KID and names the handshake waits for; freed once open (512 B) */
  m5_timer_id_t hs_timer, idle_timer, expiry_timer;
  uint64_t last_rx_ms;
  ue_session_t *s; /* once open */
};

/* The transports' ue_*_listener_new: allocates size bytes (>= sizeof(ue_listener_t): the
 * transport's listener, the base first), zeroed, fills the base (defaults, copies of the
 * options, a socket bound with SO_REUSEADDR+SO_REUSEPORT, non-blocking: udp for an
 * M5_COAP_DGRAM transport, else tcp and listening), then runs ops->start_listener. NULL with a
 * message in err (which may be NULL) after freeing it all. */
ue_listener_t *ue_listener_new(m5_loop_t *loop, const ue_listener_opts_t *opts,
                               const ue_conn_ops_t *ops, size_t size, char *err, size_t errlen);

/* A new server SSL on memory BIOs with the AKMA state attached; NULL on failure. */
SSL *ue_ssl_new(SSL_CTX *ctx, BIO **rbio, BIO **wbio);

/* Whether a new handshake from sa may start: holds sa's nodes of the per-source table in *src
 * and checks its half-open bounds. Otherwise counts and logs the refusal (and l->dropped) and
 * returns why, holding nothing. */
src_reason_t ue_conn_admit(ue_listener_t *l, const struct sockaddr *sa, src_ref_t *src);
/* Counts and logs (rate-limited) a handshake refused for why; l->dropped too. */
void ue_conn_refused(ue_listener_t *l, src_reason_t why, const struct sockaddr *sa);
/* Allocates size bytes (>= sizeof(ue_conn_t)), zeroed, takes ssl and src (from
 * ue_conn_admit), links it and counts it as a handshake; starts the handshake timer. NULL on
 * failure (ssl and src are released then). */
ue_conn_t *ue_conn_new(ue_listener_t *l, size_t size, SSL *ssl, const struct sockaddr *sa,
                       socklen_t salen, src_ref_t *src);
/* Runs the handshake one step after input was fed (or a key set), opens the session when it
 * completes, then reads application records into the endpoint. */
void ue_conn_drive(ue_conn_t *c);
/* An established DTLS session's record buffers (about 34 KiB: OpenSSL's
 * SSL_MODE_RELEASE_BUFFERS frees them for TLS only) are released once a datagram or a send
 * is done (SSL_free_buffers; kept while OpenSSL still holds unread or unsent bytes), and
 * allocated again before the next SSL call: ue_conn_drive and the close_notify do it, the
 * transport before its own SSL_write or timer call. ue_conn_bufs: M5_OK or M5_ENOMEM. */
int ue_conn_bufs(ue_conn_t *c);
void ue_conn_bufs_release(ue_conn_t *c);
/* (D)TLS 1.2: the scan found the ClientKeyExchange (c->want filled); the input is held. */
void ue_conn_want_key(ue_conn_t *c);
/* Input arrived from the peer (idle timer). */
void ue_conn_touch(ue_conn_t *c);
/* Ends the connection later, from a 0 ms timer: never frees inside a caller's stack. */
void ue_conn_close(ue_conn_t *c, const char *why);

/* "ip:port" ("[v6]:port"). */
void ue_addr_str(const struct sockaddr *sa, char *out, size_t outlen);

/* Introspection for metrics and tests. */
size_t ue_listener_handshakes(const ue_listener_t *l);
uint64_t ue_listener_dropped(const ue_listener_t *l);
uint16_t ue_listener_port(const ue_listener_t *l);

#endif
