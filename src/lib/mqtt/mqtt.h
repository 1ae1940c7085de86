/* MQTT packet codec: the client side of MQTT 3.1.1 (OASIS, 2014) and MQTT 5.0 (OASIS, 2019),
 * the packets a client sends and receives for QoS 0/1 (§2 fixed header and Variable Byte
 * Integer; §3.1 CONNECT, §3.2 CONNACK, §3.3 PUBLISH, §3.4 PUBACK, §3.8 SUBSCRIBE, §3.9 SUBACK,
 * §3.12 PINGREQ, §3.13 PINGRESP, §3.14 DISCONNECT; MQTT 5 §2.2.2 properties).
 *
 * No I/O here: encoders append a whole packet to an m5_buf_t (whose max bounds the output),
 * decoders read one packet body that m5_mqtt_frame() cut out of the input. Shared by the
 * MQTT message gateway (src/gateway/mqtt/) and the benchmark client (bench/mqc.c), which each
 * do their own non-blocking socket and TLS work on their own loop.
 *
 * Decoders treat the input as hostile: every length is checked against what is there, a
 * remaining length takes at most 4 bytes, properties are walked with bounds, and anything
 * malformed returns M5_EPROTO (never an assert). */
#ifndef M5_MQTT_MQTT_H
#define M5_MQTT_MQTT_H

#include "core/buf.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum { M5_MQTT_V311 = 4, M5_MQTT_V5 = 5 }; /* the protocol level byte of CONNECT */

/* Packet types, as the high nibble of the first byte (flags in the low nibble). */
enum {
  M5_MQTT_CONNECT = 1,
  M5_MQTT_CONNACK = 2,
  M5_MQTT_PUBLISH = 3,
  M5_MQTT_PUBACK = 4,
  M5_MQTT_SUBSCRIBE = 8,
  M5_MQTT_SUBACK = 9,
  M5_MQTT_PINGREQ = 12,
  M5_MQTT_PINGRESP = 13,
  M5_MQTT_DISCONNECT = 14,
};

/* MQTT 5 property identifiers used here (§2.2.2.2). */
enum {
  M5_MQTT_P_SESSION_EXPIRY = 0x11, /* four-byte integer */
  M5_MQTT_P_RECEIVE_MAX = 0x21,    /* two-byte integer */
  M5_MQTT_P_MAX_QOS = 0x24,        /* byte */
  M5_MQTT_P_USER = 0x26,           /* UTF-8 string pair */
  M5_MQTT_P_MAX_PACKET = 0x27,     /* four-byte integer */
  M5_MQTT_P_REASON_STRING = 0x1f,  /* UTF-8 string */
};

/* Reason codes a client acts on (MQTT 5 §2.4; a 3.1.1 CONNACK's return codes 1..5 are the
 * old meanings, anything non-zero is a refusal). */
enum {
  M5_MQTT_RC_NO_SUBSCRIBERS = 0x10, /* PUBACK: accepted, but no session subscribed */
  M5_MQTT_RC_NOT_AUTHORIZED = 0x87,
  M5_MQTT_RC_TOPIC_INVALID = 0x90,
  M5_MQTT_RC_PACKET_TOO_LARGE = 0x95,
  M5_MQTT_RC_QUOTA = 0x97,
};

/* A UTF-8 string pair (User Property). */
typedef struct {
  const char *key, *val;
  size_t klen, vlen;
} m5_mqtt_pair_t;

typedef struct {
  int version;           /* M5_MQTT_V311 or M5_MQTT_V5 */
  const char *client_id; /* 1..23 characters is what every server must take */
  bool clean;            /* clean session (3.1.1) / clean start (5) */
  uint16_t keepalive_s;
  const char *username;    /* or NULL */
  const uint8_t *password; /* or NULL; password_len bytes */
  size_t password_len;
  /* MQTT 5 only (0 = absent): */
  uint32_t session_expiry_s; /* 0xFFFFFFFF: never */
  uint16_t receive_max;      /* QoS 1 publishes the server may have unacknowledged to us */
  uint32_t max_packet;       /* the largest packet we take */
} m5_mqtt_connect_t;

typedef struct {
  bool session_present;
  uint8_t code;         /* 0 = accepted */
  uint16_t receive_max; /* v5 property; 65535 when absent (and always for 3.1.1) */
  uint32_t max_packet;  /* v5 property; 0 = no limit */
  uint8_t max_qos;      /* v5 property; 1 when absent (we never use 2) */
} m5_mqtt_connack_t;

typedef struct {
  uint8_t qos; /* 0 or 1; a QoS 2 PUBLISH is M5_EPROTO for a QoS 1 client */
  bool dup, retain;
  uint16_t pid; /* 0 for QoS 0 */
  const uint8_t *topic;
  size_t tlen;
  const uint8_t *props; /* v5: the property bytes (m5_mqtt_prop_next); NULL for 3.1.1 */
  size_t props_len;
  const uint8_t *payload;
  size_t plen;
} m5_mqtt_publish_t;

typedef struct {
  uint8_t id;
  uint32_t num;                /* byte, two- and four-byte integers, Variable Byte Integer */
  const uint8_t *data, *data2; /* strings / binary data; data2: a pair's value */
  size_t len, len2;
} m5_mqtt_prop_t;

/* ---- framing ---- */

/* Cuts one packet from the front of p[0..avail): 1 and *type_flags (first byte), *hdr (fixed
 * header length), *rem (remaining length) when it is all there; 0 when more input is needed;
 * M5_EPROTO for a remaining length of more than 4 bytes; M5_ERANGE when rem > max_rem (a
 * bound the caller sets, so a peer cannot make it buffer without limit). */
int m5_mqtt_frame(const uint8_t *p, size_t avail, size_t max_rem, uint8_t *type_flags, size_t *hdr,
                  size_t *rem);

/* ---- encoders: append one packet to b; M5_ERANGE (past b's max) / M5_ENOMEM / M5_EINVAL
 * (a string longer than 65535 bytes, a packet over 268,435,455 bytes). b is unchanged on
 * failure. ---- */

int m5_mqtt_put_connect(m5_buf_t *b, const m5_mqtt_connect_t *c);
/* MQTT 5 subscription option (§3.8.3.1, Retain Handling 2): send no retained messages when
 * the subscription is made. OR it into put_subscribe's qos; ignored for 3.1.1. */
#define M5_MQTT_SUB_NO_RETAINED 0x20
/* One topic filter: the maximum QoS, with MQTT 5 options ORed in (M5_MQTT_SUB_*). */
int m5_mqtt_put_subscribe(m5_buf_t *b, int version, uint16_t pid, const char *filter, uint8_t qos);
/* QoS 0 or 1 (pid ignored for 0); user properties only with version 5. */
int m5_mqtt_put_publish(m5_buf_t *b, int version, const char *topic, uint8_t qos, bool dup,
                        uint16_t pid, const m5_mqtt_pair_t *user, size_t n_user,
                        const uint8_t *payload, size_t plen);
/* reason: v5 only (0 = success, written in the short form); ignored for 3.1.1. */
int m5_mqtt_put_puback(m5_buf_t *b, int version, uint16_t pid, uint8_t reason);
/* PINGREQ or DISCONNECT (normal disconnection): two bytes. */
int m5_mqtt_put_empty(m5_buf_t *b, uint8_t type);

/* ---- decoders of one packet body (b, len: after the fixed header); 0 or M5_EPROTO ---- */

int m5_mqtt_parse_connack(int version, const uint8_t *b, size_t len, m5_mqtt_connack_t *out);
/* type_flags: the first byte (QoS, DUP, RETAIN are in it). */
int m5_mqtt_parse_publish(int version, uint8_t type_flags, const uint8_t *b, size_t len,
                          m5_mqtt_publish_t *out);
/* *reason: 0 for 3.1.1 and for a v5 PUBACK without one. */
int m5_mqtt_parse_puback(int version, const uint8_t *b, size_t len, uint16_t *pid, uint8_t *reason);
/* A SUBACK for one filter: its packet id and return/reason code. */
int m5_mqtt_parse_suback(int version, const uint8_t *b, size_t len, uint16_t *pid, uint8_t *code);

/* Walks v5 properties: 1 with *prop filled and *p advanced, 0 at the end, M5_EPROTO for an
 * unknown identifier or a truncated value. */
int m5_mqtt_prop_next(const uint8_t **p, const uint8_t *end, m5_mqtt_prop_t *prop);

/* 1 if s[0..n) is a topic name a client may publish to: 1..65535 bytes of UTF-8 without
 * U+0000, and no wildcard ('+', '#'). */
bool m5_mqtt_topic_name_ok(const uint8_t *s, size_t n);
/* 1 if s[0..n) is well-formed UTF-8 without U+0000 (MQTT 5 §1.5.4). */
bool m5_mqtt_utf8_ok(const uint8_t *s, size_t n);

#endif
