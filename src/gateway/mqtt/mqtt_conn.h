/* The MQTT gateway's connection to its broker, on the m5_loop: a non-blocking TCP socket
 * (plain, or TLS through OpenSSL with the broker's certificate checked), CONNECT (MQTT 5),
 * framing of what arrives (src/lib/mqtt), an output buffer flushed once per loop iteration,
 * keep-alive (PINGREQ when idle, the connection dropped when the broker stays silent), and
 * reconnection with exponential back-off and jitter. What the packets mean is the adapter's
 * (gw_mqtt.c): this module hands it every packet after CONNACK. */
#ifndef M5_GATEWAY_MQTT_CONN_H
#define M5_GATEWAY_MQTT_CONN_H

#include "core/buf.h"
#include "core/loop.h"
#include "mqtt/mqtt.h"

#include <openssl/ssl.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct gwmq_conn gwmq_conn_t;

typedef struct {
  /* CONNACK accepted: the session is up (subscribe, publish). */
  void (*up)(void *arg, const m5_mqtt_connack_t *ca);
  /* A packet other than CONNACK / PINGRESP; b, len: its body. A malformed one: the callee
   * calls gwmq_conn_drop(). */
  void (*packet)(void *arg, uint8_t type_flags, const uint8_t *b, size_t len);
  /* The session is gone (was up, or never came up); a reconnection is scheduled. */
  void (*down)(void *arg, const char *why);
} gwmq_conn_cbs_t;

typedef struct {
  const char *host; /* an IPv4 or IPv6 literal: no DNS lookup on the loop */
  uint16_t port;
  SSL_CTX *tls;         /* NULL: plain TCP (loopback demo); else TLS, peer verified */
  const char *tls_name; /* the name the broker's certificate must carry (SNI too) */
  const char *client_id, *username;
  const uint8_t *password; /* copied */
  size_t password_len;
  uint16_t keepalive_s;
  uint32_t session_expiry_s;
  uint16_t receive_max;
  uint32_t max_packet;
  uint32_t reconnect_min_ms, reconnect_max_ms;
} gwmq_conn_opts_t;

/* Starts connecting at once. NULL when out of memory. */
gwmq_conn_t *gwmq_conn_new(m5_loop_t *loop, const gwmq_conn_opts_t *o, const gwmq_conn_cbs_t *cbs,
                           void *arg);
/* Closes (no callback) and frees; wipes the password. */
void gwmq_conn_free(gwmq_conn_t *c);

/* 1 between up() and down(). */
bool gwmq_conn_is_up(const gwmq_conn_t *c);
/* Where to append packets (between up() and down()); call gwmq_conn_kick() after. */
m5_buf_t *gwmq_conn_out(gwmq_conn_t *c);
/* What was appended leaves at the end of this loop iteration. */
void gwmq_conn_kick(gwmq_conn_t *c);
/* Ends the session (why is logged and given to down()), reconnecting after the back-off. */
void gwmq_conn_drop(gwmq_conn_t *c, const char *why);

#endif
