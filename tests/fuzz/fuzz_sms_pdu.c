/* libFuzzer harness for what an SMSC sends the SMS gateway (src/gateway/sms/): every input is
 * a PDU as read from the socket. It goes through the same steps as in sms_link.c / gw_sms.c:
 * the header bounds, the structural check of a deliver_sm / bind_transceiver_resp /
 * submit_sm_resp, libsmpp34's unpack (behind those checks, with our allocator), the optional
 * parameters the adapter reads, the UDH, the decoding of the short message by its data_coding
 * and the receipt text. Nothing may crash, read out of bounds or leave a library allocation
 * behind. */
/* clang-format off */
/* M5_FUZZ_SOURCES: src/gateway/sms/smpp_pdu.c src/gateway/sms/sms_codec.c src/lib/core/err.c */
/* M5_FUZZ_PKGS: libsmpp34 */
/* clang-format on */
#include "../../src/gateway/sms/sms_codec.h"
#include "../../src/gateway/sms/smpp_pdu.h"
#include "core/err.h"

#include <stdlib.h>
#include <string.h>

static void body(const deliver_sm_t *d) {
  const uint8_t *b = d->short_message;
  size_t n = d->sm_length;
  const tlv_t *pl = m5_smpp_tlv(d->tlv, TLVID_message_payload);
  if (!n && pl) b = pl->value.octet, n = pl->length;
  char why[200];
  if (d->esm_class & 0x40) {
    size_t hl;
    m5_sms_concat_t c;
    if (m5_sms_udh_parse(b, n, &hl, &c, why, sizeof(why)) != M5_OK) return;
    b += hl, n -= hl;
  }
  uint8_t *out = malloc(3 * n + 4);
  size_t ol;
  if (out) m5_sms_decode(d->data_coding, b, n, out, 3 * n + 4, &ol, why, sizeof(why));
  free(out);
  char id[66], stat[16], err[16];
  m5_sms_rcpt_state_t st;
  m5_sms_receipt_parse(b, n, id, sizeof(id), &st, stat, sizeof(stat), err, sizeof(err), why,
                       sizeof(why));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  m5_smpp_hdr_t h;
  if (m5_smpp_hdr(data, size, &h) != M5_OK || size < h.len) return 0;
  char why[300];
  static uint8_t chk[M5_SMPP_MAX_PDU];
  if (h.id == DELIVER_SM) {
    deliver_sm_t d;
    memset(&d, 0, sizeof(d));
    int cl = m5_smpp_check_deliver_sm(data, h.len, chk, why, sizeof(why));
    if (cl >= 0 && m5_smpp_unpack(DELIVER_SM, chk, (size_t)cl, &d, why, sizeof(why)) == M5_OK)
      body(&d);
  } else if (h.id == BIND_TRANSCEIVER_RESP || h.id == SUBMIT_SM_RESP) {
    union {
      bind_transceiver_resp_t b;
      submit_sm_resp_t s;
    } u;
    memset(&u, 0, sizeof(u));
    int cl = m5_smpp_check_resp_id(data, h.len, h.id == SUBMIT_SM_RESP ? 65 : 16, chk, why,
                                   sizeof(why));
    if (cl >= 0) m5_smpp_unpack(h.id, chk, (size_t)cl, &u, why, sizeof(why));
  }
  m5_smpp_unpack_end();
  if (m5_smpp_lib_blocks() != 0) abort();
  if (m5_smpp_lib_log_len() >= 2000) abort(); /* the library's 2 KiB log stays bounded */
  return 0;
}
