/* SMS content for the SMPP gateway: pure functions, no I/O (unit tested in
 * tests/gateway/sms_unit_codec.c).
 *
 *  - GSM 03.38 / TS 23.038 cl. 6.2.1 default alphabet and its extension table (cl. 6.2.1.1),
 *    carried in SMPP 3.4 with data_coding 0 as septets UNPACKED, one per octet (the SMSC packs
 *    them for the air interface);
 *  - UCS-2 (data_coding 8), written as UTF-16BE so characters outside the BMP survive as
 *    surrogate pairs;
 *  - 8-bit data (data_coding 4) for payloads that are not UTF-8;
 *  - concatenated SMS (TS 23.040 cl. 9.2.3.24.1: UDH IE 0x00, 8-bit reference; IE 0x08 with a
 *    16-bit reference is read too), split so that each part's TP-UD fits in 140 octets;
 *  - SMSC delivery receipts (SMPP 3.4 Appendix B text, message_state TLV values). */
#ifndef M5_GATEWAY_SMS_CODEC_H
#define M5_GATEWAY_SMS_CODEC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum { M5_SMS_DC_GSM7 = 0x00, M5_SMS_DC_8BIT = 0x04, M5_SMS_DC_UCS2 = 0x08 };

#define M5_SMS_TPUD_MAX 140u  /* octets of TP-UD in one SMS */
#define M5_SMS_UDH_CONCAT 6u  /* UDHL + IE 0x00 (ref, total, seq) */
#define M5_SMS_MAX_PARTS 255u /* an 8-bit part count */

/* True when in[0..n) is well-formed UTF-8 (no overlongs, no surrogates, <= U+10FFFF). */
bool m5_sms_utf8_valid(const uint8_t *in, size_t n);

/* Chooses the encoding of a payload and encodes it into out (cap >= 2 * n + 2 always
 * suffices): valid UTF-8 whose every character is in the GSM default alphabet or its
 * extension table -> septets (dc M5_SMS_DC_GSM7, an extension character as 0x1B + code);
 * other valid UTF-8 -> UTF-16BE (M5_SMS_DC_UCS2); anything else -> the bytes as they are
 * (M5_SMS_DC_8BIT). M5_ERANGE when out is too small. */
int m5_sms_encode(const uint8_t *in, size_t n, uint8_t *dc, uint8_t *out, size_t cap,
                  size_t *outlen);

/* UTF-8 -> GSM septets only: M5_ERANGE when a character is not in the alphabet (or out is
 * too small), M5_EINVAL when in is not UTF-8. */
int m5_sms_gsm7_from_utf8(const uint8_t *in, size_t n, uint8_t *out, size_t cap,
                          size_t *outlen);

/* Decodes a short message body as the gateway hands it to m5s: data_coding 0 (GSM septets,
 * unpacked) and 0xF0-0xF3 -> UTF-8; 1 (IA5) -> ASCII; 3 (Latin-1) -> UTF-8; 8 (UCS-2 /
 * UTF-16BE, a lone surrogate becoming U+FFFD) -> UTF-8; 2, 4 and 0xF4-0xF7 (8-bit data) -> the
 * bytes. out needs cap >= 3 * n. M5_EINVAL (why says what) for an octet > 0x7F in a 7-bit
 * coding, an odd UCS-2 length or an unknown data_coding; M5_ERANGE when out is too small. */
int m5_sms_decode(uint8_t data_coding, const uint8_t *in, size_t n, uint8_t *out, size_t cap,
                  size_t *outlen, char *why, size_t whylen);

/* One part of a message: units [off, off + len) of the encoded body. */
typedef struct {
  size_t off, len;
} m5_sms_seg_t;

/* Splits an encoded body into SMS parts. One part when it fits in 140 octets of TP-UD
 * (160 septets); else parts of at most 153 septets (GSM: 6 octets of UDH + 1 fill bit + 153
 * septets = 140 octets) or 134 octets, never cutting an escape pair (GSM) or a surrogate pair
 * (UCS-2). Returns the number of parts (>= 1; an empty body is one empty part) or M5_ERANGE
 * when more than max_segs parts would be needed. */
int m5_sms_split(uint8_t dc, const uint8_t *units, size_t n, m5_sms_seg_t *segs,
                 size_t max_segs);

/* Octets a TP-UD of udh_len octets of header plus units of the body takes on the air
 * interface (septets packed with fill bits for GSM). */
size_t m5_sms_tpud_octets(uint8_t dc, size_t udh_len, size_t units);

/* Writes the 6-octet concatenation UDH (05 00 03 ref total seq). */
void m5_sms_udh_concat(uint8_t out[6], uint8_t ref, uint8_t total, uint8_t seq);

typedef struct {
  bool present;    /* a concatenation IE was found */
  uint16_t ref;    /* 8- or 16-bit reference */
  uint8_t total;   /* >= 1 */
  uint8_t seq;     /* 1..total */
} m5_sms_concat_t;

/* Parses the UDH at the start of a short message with UDHI set: *hdr_len = 1 + UDHL octets to
 * skip; the concatenation IE (0x00 or 0x08) into *c (the last one wins, as TS 23.040 says
 * for a repeated IE); other IEs are skipped. M5_EINVAL (why) when the header overruns the
 * message or an IE its own header, or a concatenation IE has total 0 or seq 0 / > total. */
int m5_sms_udh_parse(const uint8_t *sm, size_t n, size_t *hdr_len, m5_sms_concat_t *c,
                     char *why, size_t whylen);

/* The final state an SMSC delivery receipt reports. */
typedef enum {
  M5_SMS_RCPT_PENDING = 0, /* ENROUTE / ACCEPTD / UNKNOWN: not final, nothing to report */
  M5_SMS_RCPT_DELIVERED,
  M5_SMS_RCPT_EXPIRED,
  M5_SMS_RCPT_FAILED, /* UNDELIV, REJECTD, DELETED */
} m5_sms_rcpt_state_t;

/* Maps a message_state TLV value (SMPP 3.4 cl. 5.2.28). */
m5_sms_rcpt_state_t m5_sms_rcpt_from_message_state(uint8_t v);

/* Parses the text of a receipt (SMPP 3.4 Appendix B: "id:IIII sub:SSS dlvrd:DDD submit date:
 * ... done date:... stat:DDDDDDD err:EEE text:..."): id into id (cap >= 66), the stat word
 * into *st, the err field (or "") into err (cap >= 8). M5_EINVAL (why) when id: or stat: is
 * missing, too long, or the stat word unknown. */
int m5_sms_receipt_parse(const uint8_t *text, size_t n, char *id, size_t idcap,
                         m5_sms_rcpt_state_t *st, char *stat, size_t statcap, char *err,
                         size_t errcap, char *why, size_t whylen);

#endif
