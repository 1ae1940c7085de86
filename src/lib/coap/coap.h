/* CoAP messages: codec for RFC 7252 (UDP: 4-byte header, message id) and RFC 8323 (TCP:
 * Len/TKL framing, no type or message id), options in delta encoding, codes and option
 * numbers. Parsing borrows pointers into the input buffer; nothing is allocated. */
#ifndef M5_COAP_COAP_H
#define M5_COAP_COAP_H

#include "core/buf.h"

#include <stddef.h>
#include <stdint.h>

typedef enum { M5_COAP_CON = 0, M5_COAP_NON = 1, M5_COAP_ACK = 2, M5_COAP_RST = 3 } m5_coap_type_t;

#define M5_COAP_CODE(c, dd) ((uint8_t)(((c) << 5) | (dd)))
enum {
  M5_COAP_EMPTY = 0,
  M5_COAP_GET = 1,
  M5_COAP_POST = 2,
  M5_COAP_PUT = 3,
  M5_COAP_DELETE = 4,
  M5_COAP_CREATED = M5_COAP_CODE(2, 1),
  M5_COAP_DELETED = M5_COAP_CODE(2, 2),
  M5_COAP_CHANGED = M5_COAP_CODE(2, 4),
  M5_COAP_CONTENT = M5_COAP_CODE(2, 5),
  M5_COAP_CONTINUE = M5_COAP_CODE(2, 31),
  M5_COAP_BAD_REQUEST = M5_COAP_CODE(4, 0),
  M5_COAP_UNAUTHORIZED = M5_COAP_CODE(4, 1),
  M5_COAP_BAD_OPTION = M5_COAP_CODE(4, 2),
  M5_COAP_FORBIDDEN = M5_COAP_CODE(4, 3),
  M5_COAP_NOT_FOUND = M5_COAP_CODE(4, 4),
  M5_COAP_METHOD_NOT_ALLOWED = M5_COAP_CODE(4, 5),
  M5_COAP_REQUEST_INCOMPLETE = M5_COAP_CODE(4, 8),
  M5_COAP_TOO_LARGE = M5_COAP_CODE(4, 13),
  M5_COAP_UNSUPPORTED_FORMAT = M5_COAP_CODE(4, 15),
  M5_COAP_TOO_MANY_REQUESTS = M5_COAP_CODE(4, 29),
  M5_COAP_INTERNAL_ERROR = M5_COAP_CODE(5, 0),
  M5_COAP_SERVICE_UNAVAILABLE = M5_COAP_CODE(5, 3),
  /* RFC 8323 signalling codes (TCP only) */
  M5_COAP_CSM = M5_COAP_CODE(7, 1),
  M5_COAP_PING = M5_COAP_CODE(7, 2),
  M5_COAP_PONG = M5_COAP_CODE(7, 3),
  M5_COAP_RELEASE = M5_COAP_CODE(7, 4),
  M5_COAP_ABORT = M5_COAP_CODE(7, 5),
};

enum {
  M5_COAP_OPT_URI_HOST = 3,
  M5_COAP_OPT_URI_PORT = 7,
  M5_COAP_OPT_URI_PATH = 11,
  M5_COAP_OPT_CONTENT_FORMAT = 12,
  M5_COAP_OPT_MAX_AGE = 14,
  M5_COAP_OPT_URI_QUERY = 15,
  M5_COAP_OPT_ACCEPT = 17,
  M5_COAP_OPT_BLOCK2 = 23,
  M5_COAP_OPT_BLOCK1 = 27,
  M5_COAP_OPT_SIZE2 = 28,
  M5_COAP_OPT_SIZE1 = 60,
  /* CSM options (RFC 8323 §5.3), meaningful only with code 7.01 */
  M5_COAP_OPT_CSM_MAX_MESSAGE_SIZE = 2,
  M5_COAP_OPT_CSM_BLOCK_WISE = 4,
};

#define M5_COAP_FORMAT_JSON 50
#define M5_COAP_MAX_OPTS 24
#define M5_COAP_MAX_TOKEN 8

typedef struct {
  uint16_t num;
  uint16_t len;
  const uint8_t *val; /* borrowed */
} m5_coap_opt_t;

typedef struct {
  m5_coap_type_t type; /* UDP only */
  uint8_t code;
  uint16_t mid; /* UDP only */
  uint8_t token_len;
  uint8_t token[M5_COAP_MAX_TOKEN];
  m5_coap_opt_t opts[M5_COAP_MAX_OPTS]; /* ascending option numbers */
  size_t n_opts;
  const uint8_t *payload; /* borrowed; NULL when payload_len is 0 */
  size_t payload_len;
} m5_coap_msg_t;

/* Parses one UDP datagram. M5_EPROTO for a malformed message (bad version, TKL > 8, option
 * overflow, payload marker without payload, reserved nibble 15), M5_ERANGE for more than
 * M5_COAP_MAX_OPTS options. */
int m5_coap_parse_udp(const uint8_t *buf, size_t len, m5_coap_msg_t *out);
/* Parses one RFC 8323 message from the front of a stream buffer. M5_EAGAIN when more bytes are
 * needed (*need = total bytes needed if known, else 0); *consumed = bytes of the message.
 * M5_ERANGE when the message would exceed max_len (the peer broke our Max-Message-Size). */
int m5_coap_parse_tcp(const uint8_t *buf, size_t len, size_t max_len, m5_coap_msg_t *out,
                      size_t *consumed, size_t *need);
int m5_coap_encode_udp(const m5_coap_msg_t *m, m5_buf_t *out); /* appends */
int m5_coap_encode_tcp(const m5_coap_msg_t *m, m5_buf_t *out); /* appends */

/* Inserts an option keeping the numbers in ascending order (stable for repeats). */
int m5_coap_msg_add_opt(m5_coap_msg_t *m, uint16_t num, const uint8_t *val, uint16_t len);
/* The idx-th (0-based) option with that number, or NULL. */
const m5_coap_opt_t *m5_coap_msg_opt(const m5_coap_msg_t *m, uint16_t num, size_t idx);
/* Decodes an unsigned-integer option value (0..4 bytes); M5_ERANGE if longer. */
int m5_coap_opt_uint(const m5_coap_opt_t *o, uint32_t *out);
/* Encodes v in the minimal number of bytes into buf[4]; returns that length (0 for v = 0). */
uint16_t m5_coap_uint_encode(uint32_t v, uint8_t buf[4]);

/* "4.04" style text for logs. buf >= 5 bytes. */
const char *m5_coap_code_str(uint8_t code, char *buf, size_t len);

#endif
