/* mqc: the small MQTT 3.1.1 client of bench/mqload (docs/benchmarks.md), not a product part.
 * Raw non-blocking sockets on one epoll loop, TLS 1.3 with an external PSK through OpenSSL's
 * client callback (as libmosquitto's mosquitto_tls_psk_set), and the few packets the bench
 * pattern needs (MQTT 3.1.1 §3): CONNECT (clean session, keep-alive 60 s, PINGREQ when idle),
 * CONNACK, SUBSCRIBE QoS 1 / SUBACK, PUBLISH QoS 1 with packet ids and PUBACK both ways.
 *
 * Why not libmosquitto any more: driven with mosquitto_loop_read/_write it cost about 24 us of
 * generator CPU per message, so on a 2-core machine (server on one core, generator on the
 * other) the generator saturated before Mosquitto did. The I/O discipline here is the one the
 * m5s side (libm5c's channel) follows too, so that both generators pay alike:
 *  - output: the packets a client queues during one loop iteration are collected in plain
 *    text and written with ONE SSL_write and ONE send() at the end of the iteration
 *    (mqc_flush); a socket that cannot take it all keeps the rest and waits for EPOLLOUT;
 *  - input: one large recv() per readable event into a memory BIO, then SSL_read until it
 *    wants more; MQTT packets are parsed defensively (remaining length at most 4 bytes,
 *    every length checked against what arrived, unknown or malformed packets end the
 *    session through down(), never a crash).
 * At most MQC_INFLIGHT QoS 1 publishes per client wait for their PUBACK (libmosquitto's
 * default max_inflight_messages); mqc_publish answers MQC_WAIT beyond that. */
#ifndef M5_BENCH_MQC_H
#define M5_BENCH_MQC_H

#include "core/buf.h"

#include <openssl/ssl.h>
#include <stddef.h>
#include <stdint.h>

#define MQC_INFLIGHT 20

enum { MQC_OK = 0, MQC_WAIT = 1, MQC_ERR = -1 };

typedef enum { MQC_NEW, MQC_TCP, MQC_TLS, MQC_CONNACK, MQC_SUBACK, MQC_READY, MQC_DEAD } mqc_st_t;

typedef struct mqc mqc_t;

typedef struct {
  void (*ready)(mqc_t *c); /* CONNACK accepted (and the subscription granted QoS 1) */
  void (*message)(mqc_t *c, const uint8_t *topic, size_t tlen, const uint8_t *pl, size_t n);
  void (*puback)(mqc_t *c);                /* one of c's publishes was acknowledged */
  void (*down)(mqc_t *c, const char *why); /* c is dead (refused, malformed input, closed) */
} mqc_cbs_t;

struct mqc {
  int idx;   /* the owner's */
  void *arg; /* the owner's */
  mqc_st_t st;
  int n_infl; /* publishes waiting for their PUBACK */
  /* private */
  int fd, wout, dirty;
  SSL *ssl;
  BIO *rb, *wb;
  uint8_t *in; /* plaintext read but not parsed yet */
  size_t in_len;
  m5_buf_t out; /* plaintext queued this iteration (at most OUT_MAX) */
  uint16_t pid, sub_pid, infl[MQC_INFLIGHT];
  uint64_t last_tx_ns;
  mqc_t *next_dirty;
  char cid[40], psk_id[32], sub[64];
  uint8_t key[32];
};

/* The TLS context and the epoll set of every client; 0 or -1. ca_file NULL: the broker is
 * authenticated by each client's PSK (mqc_open); otherwise it must present a certificate for
 * "localhost" from that CA (no PSK offered). persistent: CONNECT without clean session. */
int mqc_init(const mqc_cbs_t *cbs, const char *host, int port, const char *ca_file, int persistent);
/* Starts client c (zeroed, idx and arg set): TCP connect, TLS with (psk_id, key), CONNECT as
 * cid, then SUBSCRIBE to sub (QoS 1) unless sub is NULL. The key is copied (wiped when c
 * dies). 0, or -1 when it could not even start (down() is not called then). */
int mqc_open(mqc_t *c, const char *cid, const char *psk_id, const uint8_t key[32], const char *sub);
/* Queues a QoS 1 PUBLISH; MQC_OK, MQC_WAIT (MQC_INFLIGHT unacknowledged, or not ready yet),
 * MQC_ERR (dead, or the output would exceed its bound). */
int mqc_publish(mqc_t *c, const char *topic, const uint8_t *pl, size_t n);
/* One wait for events (at most timeout_ms) and their handling; -1 when epoll failed. */
int mqc_poll(int timeout_ms);
/* A PINGREQ when c sent nothing for half its keep-alive; call for each client about once a
 * second (now: CLOCK_MONOTONIC ns). */
void mqc_keepalive(mqc_t *c, uint64_t now);
/* End of the loop iteration: what every client queued leaves, one SSL_write and one send()
 * per client. */
void mqc_flush(void);
/* The system calls and SSL_writes so far, on stderr (how well the discipline batches). */
void mqc_io_report(void);

#endif
