/* m5ctl akma derive: prints the UE-side AKMA material for one subscriber and AF (TS 33.535
 * Annex A.2-A.4, A-KID text form of architecture §4), e.g. to configure a test UE or to check
 * an interop partner's keys against ours. Output is exactly four lines:
 *   kakma=<hex>  atid=<hex>  akid=<text>  kaf=<hex> */
#include "ctl.h"

#include "crypto/akma.h"
#include "crypto/codec.h"

#include <getopt.h>
#include <stdio.h>
#include <string.h>

#define KEY_HEX_LEN (2 * M5_AKMA_KEY_LEN)

typedef struct {
  m5ctl_akma_in_t in;
  const char *af_fqdn, *ua_text;
  uint8_t ua[M5_AKMA_UA_LEN];
} akma_args_t;

/* --ua tls13 | tls12:XXXX, XXXX the negotiated (D)TLS 1.2 cipher suite (TS 33.220 Annex H). */
static int parse_ua(const char *text, akma_args_t *a) {
  static const char tls12[] = "tls12:";
  if (!strcmp(text, "tls13")) {
    m5_akma_ua_tls13(a->ua);
    return 0;
  }
  uint8_t suite[2];
  size_t n = 0;
  if (!strncmp(text, tls12, sizeof tls12 - 1) && strlen(text) == sizeof tls12 - 1 + 4 &&
      !m5_hex_decode(text + sizeof tls12 - 1, suite, sizeof suite, &n) && n == 2) {
    m5_akma_ua_tls12((uint16_t)(suite[0] << 8 | suite[1]), a->ua);
    return 0;
  }
  return m5ctl_usage_error("--ua: expected tls13 or tls12:XXXX (cipher suite, 4 hex digits, "
                           "e.g. tls12:00a8), got '%s'",
                           text);
}

static int parse_args(int argc, char **argv, akma_args_t *a) {
  enum { OPT_FQDN = M5CTL_OPT_OWN, OPT_UA };
  static const struct option opts[] = {
      M5CTL_AKMA_IN_OPTIONS,
      {"af-fqdn", required_argument, NULL, OPT_FQDN},
      {"ua", required_argument, NULL, OPT_UA},
      {NULL, 0, NULL, 0},
  };
  opterr = 0; /* we print our own one-line messages */
  optind = 1;
  int c, rc;
  /* Leading ':' makes a missing option argument ':' rather than '?'. */
  while ((c = getopt_long(argc, argv, ":", opts, NULL)) != -1) {
    if ((rc = m5ctl_akma_in_option(&a->in, c, optarg)) >= 0) {
      if (rc) return rc;
      continue;
    }
    switch (c) {
    case OPT_FQDN:
      if (m5_akma_fqdn_valid(optarg))
        return m5ctl_usage_error("--af-fqdn: expected a host name of dot-separated letters, "
                                 "digits and hyphens (no trailing dot), got '%s'",
                                 optarg);
      a->af_fqdn = optarg;
      break;
    case OPT_UA:
      if ((rc = parse_ua(optarg, a))) return rc;
      a->ua_text = optarg;
      break;
    default:
      return m5ctl_option_error(c, argv);
    }
  }
  if ((rc = m5ctl_operand_error(argc, argv))) return rc;
  if (!a->in.have_kausf) return m5ctl_usage_error("--kausf: required (K_AUSF as 64 hex digits)");
  if (!a->in.supi) return m5ctl_usage_error("--supi: required (IMSI digits)");
  if (!a->af_fqdn)
    return m5ctl_usage_error("--af-fqdn: required (the AF's host name, as sent in SNI)");
  if (a->in.realm && a->in.mnc_len)
    return m5ctl_usage_error("--mnc-len: cannot be combined with --realm");
  if (!a->ua_text) m5_akma_ua_tls13(a->ua);
  return 0;
}

/* Derives and prints the four lines: 0 on success, 2 for unusable arguments, 1 if OpenSSL
 * fails. */
static int derive_and_print(const akma_args_t *a) {
  uint8_t kakma[M5_AKMA_KEY_LEN], atid[M5_AKMA_KEY_LEN], kaf[M5_AKMA_KEY_LEN];
  char kakma_hex[KEY_HEX_LEN + 1], atid_hex[KEY_HEX_LEN + 1], kaf_hex[KEY_HEX_LEN + 1];
  char akid[M5_AKMA_AKID_MAX];
  int rc = m5ctl_akma_in_derive(&a->in, kakma, atid, akid);
  if (rc) goto out;
  rc = 1;
  if (m5_akma_kaf(kakma, a->af_fqdn, a->ua, kaf)) {
    fputs("m5ctl: cannot derive the AKMA keys: OpenSSL HMAC-SHA-256 failed\n", stderr);
    goto out;
  }
  m5_hex_encode(kakma, sizeof kakma, kakma_hex, sizeof kakma_hex);
  m5_hex_encode(atid, sizeof atid, atid_hex, sizeof atid_hex);
  m5_hex_encode(kaf, sizeof kaf, kaf_hex, sizeof kaf_hex);
  printf("kakma=%s\natid=%s\nakid=%s\nkaf=%s\n", kakma_hex, atid_hex, akid, kaf_hex);
  if (fflush(stdout)) {
    perror("m5ctl: cannot write the keys to standard output");
    goto out;
  }
  rc = 0;
out:
  m5_wipe(kakma, sizeof kakma);
  m5_wipe(kaf, sizeof kaf);
  m5_wipe(kakma_hex, sizeof kakma_hex);
  m5_wipe(kaf_hex, sizeof kaf_hex);
  return rc;
}

int m5ctl_akma_derive(int argc, char **argv) {
  akma_args_t a;
  memset(&a, 0, sizeof a);
  int rc = parse_args(argc, argv, &a);
  if (!rc) rc = derive_and_print(&a);
  m5_wipe(a.in.kausf, sizeof a.in.kausf);
  return rc;
}
