/* AKMA key hierarchy, TS 33.535 Annex A with the project's text forms (architecture §4):
 *   K_AKMA = KDF(K_AUSF, 0x80, "AKMA", SUPI)
 *   A-TID  = KDF(K_AUSF, 0x81, "A-TID", SUPI)
 *   A-KID  = <RID>.<base64url(A-TID), no padding>@<realm>
 *   K_AF   = KDF(K_AKMA, 0x82, AF_ID),  AF_ID = FQDN || Ua* security protocol id (5 octets)
 * SUPI here is the bare digits of an IMSI (no "imsi-" prefix), TS 33.501 A.7.0. */
#ifndef M5_CRYPTO_AKMA_H
#define M5_CRYPTO_AKMA_H

#include <stddef.h>
#include <stdint.h>

#define M5_AKMA_KEY_LEN 32
#define M5_AKMA_UA_LEN 5
#define M5_AKMA_AKID_MAX 256 /* RFC 7542 recommends NAIs of at most 253 octets */
#define M5_AKMA_FQDN_MAX 253
#define M5_AKMA_DEFAULT_RID "0000"
#define M5_AKMA_PSK_PREFIX "3GPP-AKMA" /* PSK identity hint and identity prefix */

int m5_akma_kakma(const uint8_t kausf[M5_AKMA_KEY_LEN], const char *supi,
                  uint8_t out[M5_AKMA_KEY_LEN]);
int m5_akma_atid(const uint8_t kausf[M5_AKMA_KEY_LEN], const char *supi,
                 uint8_t out[M5_AKMA_KEY_LEN]);

/* Checks that supi is 5..15 decimal digits (IMSI form). */
int m5_akma_supi_valid(const char *supi);
/* Realm "5gc.mnc<MNC 3 digits>.mcc<MCC>.3gppnetwork.org" from an IMSI with mnc_len 2 or 3. */
int m5_akma_realm_from_supi(const char *supi, int mnc_len, char *out, size_t outlen);
/* RID: 1..4 decimal digits. */
int m5_akma_rid_valid(const char *rid);
/* "<rid>.<base64url(atid)>@<realm>"; M5_ERANGE if it does not fit outlen. */
int m5_akma_akid(const char *rid, const uint8_t atid[M5_AKMA_KEY_LEN], const char *realm, char *out,
                 size_t outlen);

/* Ua* security protocol identifiers, TS 33.220 Annex H. */
void m5_akma_ua_tls13(uint8_t ua[M5_AKMA_UA_LEN]);                 /* 01 00 00 00 07 */
void m5_akma_ua_tls12(uint16_t suite, uint8_t ua[M5_AKMA_UA_LEN]); /* 01 00 01 yy zz */
/* Parses the 10-hex-digit form ("0100000007"); M5_EINVAL otherwise. */
int m5_akma_ua_parse_hex(const char *hex, uint8_t ua[M5_AKMA_UA_LEN]);
/* FQDN check: 1..253 octets of LDH labels separated by dots, no trailing dot. */
int m5_akma_fqdn_valid(const char *fqdn);

int m5_akma_kaf(const uint8_t kakma[M5_AKMA_KEY_LEN], const char *af_fqdn,
                const uint8_t ua[M5_AKMA_UA_LEN], uint8_t out[M5_AKMA_KEY_LEN]);

#endif
