/* SMPP 3.4 PDUs for the gateway's ESME: framing and a structural check of what the SMSC sends
 * before libsmpp34 unpacks it, and thin pack/unpack wrappers around the library.
 *
 * libsmpp34 (1.14) trusts its input more than a network peer deserves, so nothing reaches it
 * unchecked (see smpp_pdu.c for each reason):
 *  - its C-Octet String reader runs strlen() on the input: every buffer it reads ends in NULs
 *    beyond the PDU;
 *  - it leaks the optional parameter it was reading when a PDU is malformed: its allocator is
 *    ours, and everything it allocated for one unpack is freed by m5_smpp_unpack_end();
 *  - it logs every field into a fixed 2,048-octet global with a running length that can go
 *    negative: a PDU reaches it only with at most M5_SMPP_MAX_TLVS optional parameters and the
 *    sizes SMPP 3.4 allows, which keeps that log far below its size (unit test
 *    sms_unit_pdu proves the worst case);
 *  - it reads a scalar optional parameter at its own size whatever its length field says, and
 *    then refuses the PDU or misreads the rest: it only gets the optional parameters the
 *    adapter reads, each checked to be of its size; the others (a vendor's, ...) are left
 *    out of its copy, which also keeps the log bound however many the SMSC sends. */
#ifndef M5_GATEWAY_SMPP_PDU_H
#define M5_GATEWAY_SMPP_PDU_H

#include <stddef.h>
#include <stdint.h>

#include "smpp34.h"
#include "smpp34_structs.h"

#define M5_SMPP_HDR 16u
#define M5_SMPP_MAX_PDU 2048u /* the largest PDU the ESME reads (a deliver_sm with a 1,024-octet
                                 message_payload fits) */
#define M5_SMPP_MAX_TLVS 16u

typedef struct {
  uint32_t len, id, status, seq;
} m5_smpp_hdr_t;

/* Reads the header of the PDU at the start of buf: M5_EAGAIN when fewer than 16 octets are
 * there, M5_EPROTO when command_length is below 16 or above M5_SMPP_MAX_PDU (the stream
 * cannot be followed any further). */
int m5_smpp_hdr(const uint8_t *buf, size_t n, m5_smpp_hdr_t *h);

/* Checks a complete deliver_sm (pdu[0..len)) against SMPP 3.4 cl. 4.6.1: every C-Octet String
 * terminated within its maximum size, sm_length within the PDU, every optional parameter
 * whole. Writes into out (M5_SMPP_MAX_PDU octets) the PDU for m5_smpp_unpack(): the same,
 * with only the optional parameters the adapter reads (message_payload, sar_*,
 * receipted_message_id, message_state; each of its size, at most M5_SMPP_MAX_TLVS of them)
 * and command_length set to match; the others are ignored, as SMPP 3.4 wants of a receiver
 * that does not support them. Returns out's length, or M5_EPROTO with why naming the field. */
int m5_smpp_check_deliver_sm(const uint8_t *pdu, size_t len, uint8_t *out, char *why,
                             size_t whylen);
/* The same for bind_transceiver_resp (system_id) and submit_sm_resp (message_id) with
 * command_status 0: out gets the header and the string, no optional parameters. */
int m5_smpp_check_resp_id(const uint8_t *pdu, size_t len, size_t id_max, uint8_t *out,
                          char *why, size_t whylen);

/* Unpacks a checked PDU into *out (the libsmpp34 struct of its command_id); M5_EPROTO (why:
 * the library's own account) when the library refuses it. Call m5_smpp_unpack_end() when
 * done with *out: it frees its optional parameters and whatever the library leaked. */
int m5_smpp_unpack(uint32_t id, const uint8_t *pdu, size_t len, void *out, char *why,
                   size_t whylen);
void m5_smpp_unpack_end(void);
/* Blocks the library allocated on this thread and nobody freed yet (0 after
 * m5_smpp_unpack_end()). */
size_t m5_smpp_lib_blocks(void);

/* Packs a libsmpp34 struct (command_id and sequence_number set) into out; returns the length
 * or M5_EINVAL (the library refused it: a field out of range). */
int m5_smpp_pack(uint32_t id, void *pdu, uint8_t *out, size_t cap);

/* A header-only PDU (enquire_link, enquire_link_resp, unbind, unbind_resp, generic_nack):
 * written directly, 16 octets. */
void m5_smpp_hdr_only(uint8_t out[16], uint32_t id, uint32_t status, uint32_t seq);

/* A TLV found by tag in a libsmpp34 list, or NULL. */
const tlv_t *m5_smpp_tlv(const tlv_t *list, uint16_t tag);

/* Octets libsmpp34 wrote into its log (smpp34_strerror) during the last pack or unpack. */
size_t m5_smpp_lib_log_len(void);

#endif
