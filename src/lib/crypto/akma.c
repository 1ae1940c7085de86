/* AKMA key hierarchy and identifiers: TS 33.535 Annex A.2-A.4 (K_AKMA, A-TID, K_AF), cl. 6.1
 * (A-KID as an RFC 7542 NAI) and the Ua* security protocol identifiers of TS 33.220 Annex H.
 * Text forms of the A-KID and realm follow architecture §4 (msgin5g-security.md §3). */
#include "crypto/akma.h"

#include "core/err.h"
#include "crypto/codec.h"
#include "crypto/kdf.h"

#include <stdio.h>
#include <string.h>

#define FC_KAKMA 0x80
#define FC_ATID 0x81
#define FC_KAF 0x82
#define SUPI_MIN 5  /* MCC (3) + MNC (2) is the least an IMSI can be checked for */
#define SUPI_MAX 15 /* TS 23.003 cl. 2.2 */
#define RID_MAX 4
#define LABEL_MAX 63
#define ATID_B64_LEN 43 /* 32 octets, unpadded base64url */

static int all_digits(const char *s, size_t len) {
  for (size_t i = 0; i < len; i++)
    if (s[i] < '0' || s[i] > '9') return 0;
  return 1;
}

int m5_akma_supi_valid(const char *supi) {
  if (!supi) return M5_EINVAL;
  size_t len = strnlen(supi, SUPI_MAX + 1);
  if (len < SUPI_MIN || len > SUPI_MAX || !all_digits(supi, len)) return M5_EINVAL;
  return M5_OK;
}

int m5_akma_rid_valid(const char *rid) {
  if (!rid) return M5_EINVAL;
  size_t len = strnlen(rid, RID_MAX + 1);
  if (len < 1 || len > RID_MAX || !all_digits(rid, len)) return M5_EINVAL;
  return M5_OK;
}

int m5_akma_fqdn_valid(const char *fqdn) {
  if (!fqdn) return M5_EINVAL;
  size_t len = strnlen(fqdn, M5_AKMA_FQDN_MAX + 1);
  if (len < 1 || len > M5_AKMA_FQDN_MAX) return M5_EINVAL;
  /* RFC 1123 host names: labels of 1..63 letters, digits and hyphens, no hyphen at either end.
   * The FQDN goes into AF_ID octet for octet, so anything looser would only make K_AF
   * mismatches harder to diagnose. */
  size_t label = 0;
  for (size_t i = 0; i <= len; i++) {
    char c = fqdn[i];
    if (c == '.' || c == '\0') {
      if (label == 0 || fqdn[i - 1] == '-') return M5_EINVAL;
      label = 0;
      continue;
    }
    int ldh =
        (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-';
    if (!ldh || (label == 0 && c == '-') || ++label > LABEL_MAX) return M5_EINVAL;
  }
  return M5_OK;
}

int m5_akma_realm_from_supi(const char *supi, int mnc_len, char *out, size_t outlen) {
  if (m5_akma_supi_valid(supi) || (mnc_len != 2 && mnc_len != 3) || !out ||
      strlen(supi) < 3 + (size_t)mnc_len)
    return M5_EINVAL;
  /* The realm always spells the MNC with three digits (TS 23.003 cl. 19.2): 01 -> mnc001. */
  char mnc[4] = {'0', supi[3], supi[4], '\0'};
  if (mnc_len == 3) memcpy(mnc, supi + 3, 3);
  int n = snprintf(out, outlen, "5gc.mnc%s.mcc%.3s.3gppnetwork.org", mnc, supi);
  if (n < 0 || (size_t)n >= outlen) return M5_ERANGE;
  return M5_OK;
}

int m5_akma_akid(const char *rid, const uint8_t atid[M5_AKMA_KEY_LEN], const char *realm, char *out,
                 size_t outlen) {
  if (m5_akma_rid_valid(rid) || !atid || m5_akma_fqdn_valid(realm) || !out) return M5_EINVAL;
  char b64[ATID_B64_LEN + 1];
  int rc = m5_b64url_encode(atid, M5_AKMA_KEY_LEN, b64, sizeof b64);
  if (rc) return rc;
  int n = snprintf(out, outlen, "%s.%s@%s", rid, b64, realm);
  if (n < 0 || (size_t)n >= outlen || (size_t)n >= M5_AKMA_AKID_MAX) {
    if (outlen) out[0] = '\0';
    return M5_ERANGE;
  }
  return M5_OK;
}

void m5_akma_ua_tls13(uint8_t ua[M5_AKMA_UA_LEN]) {
  static const uint8_t id[M5_AKMA_UA_LEN] = {0x01, 0x00, 0x00, 0x00, 0x07};
  memcpy(ua, id, M5_AKMA_UA_LEN);
}

void m5_akma_ua_tls12(uint16_t suite, uint8_t ua[M5_AKMA_UA_LEN]) {
  ua[0] = 0x01;
  ua[1] = 0x00;
  ua[2] = 0x01;
  ua[3] = (uint8_t)(suite >> 8);
  ua[4] = (uint8_t)suite;
}

int m5_akma_ua_parse_hex(const char *hex, uint8_t ua[M5_AKMA_UA_LEN]) {
  uint8_t tmp[M5_AKMA_UA_LEN];
  size_t n = 0;
  if (!hex || !ua || m5_hex_decode(hex, tmp, sizeof tmp, &n) || n != M5_AKMA_UA_LEN)
    return M5_EINVAL;
  memcpy(ua, tmp, M5_AKMA_UA_LEN);
  return M5_OK;
}

/* K_AKMA and A-TID share the shape KDF(K_AUSF, FC, label, SUPI). */
static int derive_from_kausf(const uint8_t kausf[M5_AKMA_KEY_LEN], uint8_t fc, const char *label,
                             const char *supi, uint8_t out[M5_AKMA_KEY_LEN]) {
  if (!kausf || !out || m5_akma_supi_valid(supi)) return M5_EINVAL;
  const m5_kdf_param_t params[2] = {
      {(const uint8_t *)label, strlen(label)},
      {(const uint8_t *)supi, strlen(supi)},
  };
  return m5_kdf(kausf, M5_AKMA_KEY_LEN, fc, params, 2, out);
}

int m5_akma_kakma(const uint8_t kausf[M5_AKMA_KEY_LEN], const char *supi,
                  uint8_t out[M5_AKMA_KEY_LEN]) {
  return derive_from_kausf(kausf, FC_KAKMA, "AKMA", supi, out);
}

int m5_akma_atid(const uint8_t kausf[M5_AKMA_KEY_LEN], const char *supi,
                 uint8_t out[M5_AKMA_KEY_LEN]) {
  return derive_from_kausf(kausf, FC_ATID, "A-TID", supi, out);
}

int m5_akma_kaf(const uint8_t kakma[M5_AKMA_KEY_LEN], const char *af_fqdn,
                const uint8_t ua[M5_AKMA_UA_LEN], uint8_t out[M5_AKMA_KEY_LEN]) {
  if (!kakma || !ua || !out || m5_akma_fqdn_valid(af_fqdn)) return M5_EINVAL;
  /* AF_ID = FQDN || the five raw Ua* octets, one KDF parameter (TS 33.535 A.4). */
  uint8_t af_id[M5_AKMA_FQDN_MAX + M5_AKMA_UA_LEN];
  size_t fqdn_len = strlen(af_fqdn);
  memcpy(af_id, af_fqdn, fqdn_len);
  memcpy(af_id + fqdn_len, ua, M5_AKMA_UA_LEN);
  const m5_kdf_param_t param = {af_id, fqdn_len + M5_AKMA_UA_LEN};
  return m5_kdf(kakma, M5_AKMA_KEY_LEN, FC_KAF, &param, 1, out);
}
