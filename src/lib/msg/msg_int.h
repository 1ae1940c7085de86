/* Internals of the MSGin5G-1 body codec shared by msg.c (the member table, the jansson parser
 * that gives every diagnostic), msg_encode.c (the writer) and msg_scan.c (the allocation-free
 * parser of the usual bodies). Not for other modules: they use msg.h. */
#ifndef M5_MSG_MSG_INT_H
#define M5_MSG_MSG_INT_H

#include "msg/msg.h"

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define T(x) (1u << (x))

typedef enum {
  K_SVC_ID,  /* char[]: m5_msg_svc_id_valid */
  K_MSG_ID,  /* char[]: m5_msg_id_valid */
  K_TEXT,    /* char[]: 1..cap-1 bytes, no control characters */
  K_CAUSE,   /* char[]: 1..cap-1 bytes of UTF-8 without control characters (C0, DEL, C1) */
  K_ADDR,    /* m5_msg_addr_t: {addrType, addr} */
  K_B64,     /* payload / payload_len */
  K_BOOL,    /* bool, omitted when false */
  K_PRIO,    /* m5_msg_prio_t, omitted when MIDDLE */
  K_TIME,    /* int64_t Unix seconds as RFC 3339, omitted when 0 */
  K_SAF,     /* stoAndFwParams {exprTime} -> expr_time */
  K_OBJECT,  /* char *: the member's object as compact JSON text */
  K_TOPICS,  /* topics / n_topics: an array of 1-M5_MSG_TOPICS_MAX distinct names */
  K_CHECKED, /* not kept in m5_msg_t: only its JSON type is checked */
} kind_t;

typedef struct {
  const char *name;
  kind_t kind;
  size_t off;         /* into m5_msg_t */
  size_t cap;         /* char[] size */
  unsigned mandatory; /* T(type) bits */
  unsigned optional;
  json_type jtype; /* K_CHECKED only */
  /* The TS 29.538 forms (m5_msg_parse_as / m5_msg_encode_as), T(type) bits: */
  unsigned ts_optional; /* mandatory on MSGin5G-1, optional there (ASMessageDelivery.payload) */
  unsigned ts_omit;     /* not a member of the schema written (UEMessageDelivery.priority) */
} member_t;

#define MSG_N_TYPES 9   /* m5_msg_type_t: REG .. TOPICUNSUB */
#define MSG_N_PRIOS 3   /* m5_msg_prio_t */
#define MSG_N_MEMBERS 20

extern const char *const msg_type_names[MSG_N_TYPES];
extern const char *const msg_prio_names[MSG_N_PRIOS];
/* One row per member, in the order bodies are written (msg.c; msg_encode.c writes them). */
extern const member_t msg_members[MSG_N_MEMBERS];

/* 1..max bytes without control characters. */
bool msg_text_valid(const char *s, size_t max);
/* 1..max bytes of UTF-8 without control characters: C0, DEL and C1 (U+0080-U+009F). */
bool msg_cause_valid(const char *s, size_t max);
/* Length of the valid UTF-8 sequence at s (1-4), 0 if invalid. */
size_t msg_utf8_seq(const unsigned char *s);
/* Strict RFC 4648 §4 base64 of len bytes: a malloc'd buffer (free() it) in *out. */
int msg_b64_decode(const char *in, size_t len, uint8_t **out, size_t *outn);
/* RFC 3339 date-time (NUL-terminated) to Unix seconds. */
int msg_time_parse(const char *s, int64_t *out);

/* msg_scan.c: parses a body that is a JSON object of the usual shape (strings without escapes
 * or bytes above 0x7e, true / false / null, nested objects; no numbers, no arrays) into out
 * (zeroed by the caller, prio MIDDLE; type: the type of the body for m5_msg_parse_as, or -1
 * to read msgType), with exactly the checks of the jansson parser. 0 if the body is accepted;
 * otherwise 1 (out may hold a payload: m5_msg_free it and zero it again), and the jansson
 * parser decides, with its diagnostic: the result is the same, only slower. */
int msg_scan_parse(const uint8_t *body, size_t len, int type, bool ts, m5_msg_t *out);

/* m5_msg_parse / m5_msg_parse_as through jansson alone (the reference msg_scan_parse must
 * agree with: tests/unit/test_msg.c, tests/fuzz/fuzz_msg.c). */
int msg_parse_tree(const uint8_t *body, size_t len, int type, m5_msg_t *out, char *diag,
                   size_t diag_len);

#endif
