/* MSGin5G-1 bodies (architecture §3.1, docs/protocol.md): one JSON object per CoAP payload,
 * `msgType` one of REG, DEREG, MSG, MSGRESP, IMDN, SEGREC, SEGCONFIR, TOPICSUB, TOPICUNSUB,
 * member names as in TS 29.538. The codec is table-driven (one table row per member: name,
 * type, mandatory for which types) so the names can be aligned with TS 24.538 cl. 7 later.
 *
 * Parsing rejects duplicate keys, a non-object, an unknown msgType, a missing mandatory IE or
 * a wrongly typed one, naming the IE in the diagnostic ("4.00 msgId: missing"; text that is not
 * UTF-8 is named too: "failureCause: not valid UTF-8"); unknown members are ignored and unknown
 * enum values of open enums (addrType, priority) are kept as text.
 *
 * Names (TS 23.554 cl. 8.7.4 groups, 8.6.1 broadcast areas, 8.8 Messaging Topics; our binding,
 * docs/protocol.md §4): a GROUP, BC or TOPIC address and every msgTopics entry is 1-128
 * characters of A-Z a-z 0-9 . _ : - (m5_msg_name_valid), checked when parsing and encoding. */
#ifndef M5_MSG_MSG_H
#define M5_MSG_MSG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum {
  M5_MSG_REG,
  M5_MSG_DEREG,
  M5_MSG_MSG,
  M5_MSG_MSGRESP,
  M5_MSG_IMDN,
  M5_MSG_SEGREC,
  M5_MSG_SEGCONFIR,
  M5_MSG_TOPICSUB,
  M5_MSG_TOPICUNSUB,
} m5_msg_type_t;

#define M5_MSG_ID_MAX 64    /* msgId: 1-64 of [A-Za-z0-9._:-] */
#define M5_MSG_ADDR_MAX 128 /* service ids */
#define M5_MSG_CAUSE_MAX 64 /* the failure causes m5s itself gives (stored with a delivery) */
/* failureCause as a UE's IMDN or an AS's DeliveryStatusReport carries it (free text of the
 * reporting party, passed through to the recipient of the report): 1-256 bytes of UTF-8
 * without control characters (C0, DEL, C1). */
#define M5_MSG_FAILURE_CAUSE_MAX 256
/* Group (valGroupId), broadcast area and Messaging Topic names: 1-M5_MSG_NAME_MAX characters
 * of A-Z a-z 0-9 . _ : - */
#define M5_MSG_NAME_MAX 128
/* msgTopics of one TOPICSUB / TOPICUNSUB: 1-M5_MSG_TOPICS_MAX names, no two equal. A bound of
 * this binding (TS 23.554 Table 8.8.1-1 says "one or more"), so a request's work is bounded. */
#define M5_MSG_TOPICS_MAX 32

typedef char m5_msg_name_t[M5_MSG_NAME_MAX + 1];

typedef struct {
  char type[16]; /* addrType: "UE", "AS", "GROUP", "BC", "TOPIC" (open enum) */
  char addr[M5_MSG_ADDR_MAX + 1];
} m5_msg_addr_t;

typedef enum { M5_PRIO_LOW = 0, M5_PRIO_MIDDLE = 1, M5_PRIO_HIGH = 2 } m5_msg_prio_t;

/* A decoded body. Strings are copied into the struct; payload points into `payload_buf`
 * (decoded from base64), which m5_msg_free() releases. */
typedef struct {
  m5_msg_type_t type;
  /* REG / DEREG */
  char ue_svc_id[M5_MSG_ADDR_MAX + 1];
  char *client_profile_json; /* REG clientProfile kept as compact JSON text, or NULL */
  /* MSG / IMDN / MSGRESP */
  m5_msg_addr_t ori, dest;
  char msg_id[M5_MSG_ID_MAX + 1];
  char app_id[M5_MSG_ADDR_MAX + 1]; /* "" when absent */
  uint8_t *payload; /* decoded bytes (MSG) */
  size_t payload_len;
  bool deliv_st_req;   /* delivStReqInd, default false */
  m5_msg_prio_t prio;  /* priority, default MIDDLE */
  bool sto_fwd;        /* stoAndFwInd, default false */
  bool sto_fwd_given;  /* parse: stoAndFwInd was in the body (mandatory in TS 29.538's
                          ASMessageDelivery) */
  int64_t expr_time;   /* stoAndFwParams.exprTime as Unix seconds, 0 = absent */
  /* IMDN */
  char deliv_st[32];   /* delivSt: REPT_DELY_SUCCESS / REPT_DELY_FAILED */
  /* MSGRESP (MessageDeliveryAck) and IMDN */
  char status[32];     /* "" = accepted; DELY_STORED, DELY_FAILED */
  char failure_cause[M5_MSG_FAILURE_CAUSE_MAX + 1];
  /* REG answer; TOPICSUB and its answer */
  int64_t expiry;      /* REG response: registration expiry; TOPICSUB: the subscription's end
                          (TS 23.554 Table 8.8.1-1 "Expiration"), 0 = absent; Unix seconds */
  /* TOPICSUB / TOPICUNSUB and their answers: msgTopics, n_topics names. m5_msg_parse
   * allocates the array (m5_msg_free releases it); to encode, point it at the caller's array
   * (and do not m5_msg_free that message, as with payload). */
  m5_msg_name_t *topics;
  size_t n_topics;
} m5_msg_t;

/* Parses a TS 29.538 body of the same members without msgType (ASMessageDelivery is a MSG,
 * DeliveryStatusReport an IMDN, MessageDeliveryAck a MSGRESP), as the given type; a msgType
 * member is ignored like any unknown one. `payload` is optional there (TS 29.538: an absent
 * payload is an empty message, payload_len 0). Diagnostics as m5_msg_parse. */
int m5_msg_parse_as(const uint8_t *body, size_t len, m5_msg_type_t type, m5_msg_t *out,
                    char *diag, size_t diag_len);

/* Parses a body. On failure returns M5_EINVAL and writes a diagnostic naming the IE
 * ("msgId: missing", "payload: not base64", "body: duplicate key 'msgId'") into diag. */
int m5_msg_parse(const uint8_t *body, size_t len, m5_msg_t *out, char *diag, size_t diag_len);
void m5_msg_free(m5_msg_t *m);

/* Encodes a body of m->type with the members that type carries (defaults omitted). Returns a
 * malloc'd NUL-terminated string in *out (free() it), or NULL on failure. */
int m5_msg_encode(const m5_msg_t *m, char **out, size_t *len);
/* The same members without msgType: the TS 29.538 body of that type (a MSG is a
 * UEMessageDelivery, an IMDN a DeliveryStatusReport, a MSGRESP a MessageDeliveryAck), with
 * only the members that schema declares (a UEMessageDelivery has no `priority`). */
int m5_msg_encode_as(const m5_msg_t *m, char **out, size_t *len);

/* Validators shared with the server logic. */
bool m5_msg_id_valid(const char *id);
bool m5_msg_svc_id_valid(const char *id); /* UE Service ID: 1-128 printable, no spaces */
/* An AS Service ID (asSvcId) or a gateway id as the northbound API, the certificates
 * (urn:msgin5g:as:<id>) and the file names of m5ctl pki take it: 1-M5_MSG_AS_ID_MAX
 * characters of A-Z a-z 0-9 . _ - */
#define M5_MSG_AS_ID_MAX 64
bool m5_msg_as_id_valid(const char *id);
/* A group, broadcast area or topic name: 1-M5_MSG_NAME_MAX characters of A-Z a-z 0-9 . _ : - */
bool m5_msg_name_valid(const char *name);
/* addrType GROUP, BC or TOPIC: an address whose addr is a name (m5_msg_name_valid) and which
 * reaches several UEs (a "via" address for the recipient). */
bool m5_msg_addr_is_named(const char *addr_type);
const char *m5_msg_type_name(m5_msg_type_t t);
const char *m5_msg_prio_name(m5_msg_prio_t p);

/* failureCause values (architecture §3.1) */
#define M5_CAUSE_UNKNOWN_RECIPIENT "UNKNOWN_RECIPIENT"
#define M5_CAUSE_NOT_REGISTERED "RECIPIENT_NOT_REGISTERED"
#define M5_CAUSE_UNREACHABLE "RECIPIENT_UNREACHABLE"
#define M5_CAUSE_NOT_AUTHORIZED "NOT_AUTHORIZED"
#define M5_CAUSE_EXPIRED "EXPIRED"
#define M5_CAUSE_QUEUE_FULL "QUEUE_FULL"
#define M5_CAUSE_ORIGINATOR_QUOTA "ORIGINATOR_QUOTA" /* the sender has too much stored */
#define M5_CAUSE_REJECTED "REJECTED_BY_RECIPIENT" /* an AS answered 4xx */
/* Group and broadcast messages (docs/delivery.md "Groups and broadcast") */
#define M5_CAUSE_LEFT_GROUP "RECIPIENT_LEFT_GROUP" /* removed from the group or area meanwhile */
#define M5_CAUSE_GROUP_DELETED "GROUP_DELETED"      /* the group or area was deleted meanwhile */
#define M5_CAUSE_NO_MEMBERS "NO_MEMBERS" /* an accepted message's ack (no status): stored for
                                            nobody, the group or area has no other member */

#endif
