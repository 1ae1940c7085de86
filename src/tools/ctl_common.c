/* m5ctl: what several commands share. The getopt error wording, and the subscriber inputs of
 * the AKMA commands (akma derive, subscriber add) with their validation and the derivation of
 * K_AKMA and the A-KID (TS 33.535 Annex A.2, A.3; A-KID text form of architecture §4), so both
 * commands accept the same arguments and agree on the keys. */
#include "ctl.h"

#include "crypto/codec.h"

#include <stdio.h>
#include <string.h>

#define KEY_HEX_LEN (2 * M5_AKMA_KEY_LEN)

int m5ctl_option_error(int c, char **argv) {
  if (c == ':') return m5ctl_usage_error("%s: missing value", argv[optind - 1]);
  /* optopt names a short option; an unknown long one (or a long option given a value it does
   * not take, where optopt holds the option's code) is the element just consumed. */
  if (optopt > 0 && optopt < 128)
    return m5ctl_usage_error("-%c: unknown option; see m5ctl --help", optopt);
  return m5ctl_usage_error("%s: unknown option; see m5ctl --help", argv[optind - 1]);
}

int m5ctl_operand_error(int argc, char **argv) {
  if (optind < argc)
    return m5ctl_usage_error("%s: unexpected argument; see m5ctl --help", argv[optind]);
  return 0;
}

/* --kausf: 64 hex digits. */
static int parse_kausf(m5ctl_akma_in_t *in, char *text) {
  size_t len = strlen(text), n = 0;
  int rc = len == KEY_HEX_LEN ? m5_hex_decode(text, in->kausf, sizeof in->kausf, &n) : -1;
  m5_wipe(text, len);
  if (!rc && n == M5_AKMA_KEY_LEN) {
    in->have_kausf = 1;
    return 0;
  }
  if (len != KEY_HEX_LEN)
    return m5ctl_usage_error("--kausf: expected %d hex digits (%d octets), got %zu", KEY_HEX_LEN,
                             M5_AKMA_KEY_LEN, len);
  return m5ctl_usage_error("--kausf: expected %d hex digits (%d octets), found a non-hex "
                           "character",
                           KEY_HEX_LEN, M5_AKMA_KEY_LEN);
}

int m5ctl_akma_in_option(m5ctl_akma_in_t *in, int c, char *arg) {
  switch (c) {
  case M5CTL_OPT_KAUSF:
    return parse_kausf(in, arg);
  case M5CTL_OPT_SUPI:
    if (m5_akma_supi_valid(arg))
      return m5ctl_usage_error("--supi: expected the IMSI as 5 to 15 digits (no 'imsi-' "
                               "prefix), got '%s'",
                               arg);
    in->supi = arg;
    return 0;
  case M5CTL_OPT_RID:
    if (m5_akma_rid_valid(arg))
      return m5ctl_usage_error("--rid: expected 1 to 4 digits, got '%s'", arg);
    in->rid = arg;
    return 0;
  case M5CTL_OPT_REALM:
    if (m5_akma_fqdn_valid(arg))
      return m5ctl_usage_error("--realm: expected a domain name such as "
                               "5gc.mnc001.mcc001.3gppnetwork.org, got '%s'",
                               arg);
    in->realm = arg;
    return 0;
  case M5CTL_OPT_MNC_LEN:
    if (strcmp(arg, "2") && strcmp(arg, "3"))
      return m5ctl_usage_error("--mnc-len: expected 2 or 3, got '%s'", arg);
    in->mnc_len = arg[0] - '0';
    return 0;
  default:
    return -1;
  }
}

int m5ctl_akma_in_derive(const m5ctl_akma_in_t *in, uint8_t kakma[M5_AKMA_KEY_LEN],
                         uint8_t atid[M5_AKMA_KEY_LEN], char akid[M5_AKMA_AKID_MAX]) {
  char realm_buf[M5_AKMA_FQDN_MAX + 1];
  const char *realm = in->realm ? in->realm : realm_buf;
  const char *rid = in->rid ? in->rid : M5_AKMA_DEFAULT_RID;
  int mnc_len = in->mnc_len ? in->mnc_len : 2;
  int rc = 1;

  if (!in->realm && m5_akma_realm_from_supi(in->supi, mnc_len, realm_buf, sizeof realm_buf)) {
    rc = m5ctl_usage_error("--supi: '%s' is too short for an MCC and a %d-digit MNC", in->supi,
                           mnc_len);
    goto fail;
  }
  if (m5_akma_kakma(in->kausf, in->supi, kakma) || m5_akma_atid(in->kausf, in->supi, atid)) {
    fputs("m5ctl: cannot derive the AKMA keys: OpenSSL HMAC-SHA-256 failed\n", stderr);
    goto fail;
  }
  /* Only an explicit realm can be long enough to push the NAI past its limit. */
  if (m5_akma_akid(rid, atid, realm, akid, M5_AKMA_AKID_MAX)) {
    rc = m5ctl_usage_error("--realm: the A-KID would exceed %d characters; use a shorter realm",
                           M5_AKMA_AKID_MAX - 1);
    goto fail;
  }
  return 0;
fail:
  m5_wipe(kakma, M5_AKMA_KEY_LEN);
  return rc;
}
