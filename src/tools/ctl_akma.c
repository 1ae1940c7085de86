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
  const char *supi, *af_fqdn, *ua_text, *rid, *realm;
  int mnc_len; /* 0 = not given */
  uint8_t kausf[M5_AKMA_KEY_LEN];
  int have_kausf;
  uint8_t ua[M5_AKMA_UA_LEN];
} akma_args_t;

/* --kausf: 64 hex digits. The argv copy is wiped once decoded so the key does not linger in the
 * process image longer than needed. */
static int parse_kausf(char *text, akma_args_t *a) {
  size_t len = strlen(text);
  size_t n = 0;
  if (len != KEY_HEX_LEN) {
    m5_wipe(text, len);
    return m5ctl_usage_error("--kausf: expected %d hex digits (%d octets), got %zu", KEY_HEX_LEN,
                             M5_AKMA_KEY_LEN, len);
  }
  int rc = m5_hex_decode(text, a->kausf, sizeof a->kausf, &n);
  m5_wipe(text, len);
  if (rc || n != M5_AKMA_KEY_LEN)
    return m5ctl_usage_error("--kausf: expected %d hex digits (%d octets), found a non-hex "
                             "character",
                             KEY_HEX_LEN, M5_AKMA_KEY_LEN);
  a->have_kausf = 1;
  return 0;
}

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
  enum { OPT_KAUSF = 256, OPT_SUPI, OPT_FQDN, OPT_UA, OPT_RID, OPT_REALM, OPT_MNC_LEN };
  static const struct option opts[] = {
      {"kausf", required_argument, NULL, OPT_KAUSF},
      {"supi", required_argument, NULL, OPT_SUPI},
      {"af-fqdn", required_argument, NULL, OPT_FQDN},
      {"ua", required_argument, NULL, OPT_UA},
      {"rid", required_argument, NULL, OPT_RID},
      {"realm", required_argument, NULL, OPT_REALM},
      {"mnc-len", required_argument, NULL, OPT_MNC_LEN},
      {NULL, 0, NULL, 0},
  };
  opterr = 0; /* we print our own one-line messages */
  optind = 1;
  int c, rc;
  /* Leading ':' makes a missing option argument ':' rather than '?'. */
  while ((c = getopt_long(argc, argv, ":", opts, NULL)) != -1) {
    switch (c) {
    case OPT_KAUSF:
      if ((rc = parse_kausf(optarg, a))) return rc;
      break;
    case OPT_SUPI:
      if (m5_akma_supi_valid(optarg))
        return m5ctl_usage_error("--supi: expected the IMSI as 5 to 15 digits (no 'imsi-' "
                                 "prefix), got '%s'",
                                 optarg);
      a->supi = optarg;
      break;
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
    case OPT_RID:
      if (m5_akma_rid_valid(optarg))
        return m5ctl_usage_error("--rid: expected 1 to 4 digits, got '%s'", optarg);
      a->rid = optarg;
      break;
    case OPT_REALM:
      if (m5_akma_fqdn_valid(optarg))
        return m5ctl_usage_error("--realm: expected a domain name such as "
                                 "5gc.mnc001.mcc001.3gppnetwork.org, got '%s'",
                                 optarg);
      a->realm = optarg;
      break;
    case OPT_MNC_LEN:
      if (strcmp(optarg, "2") && strcmp(optarg, "3"))
        return m5ctl_usage_error("--mnc-len: expected 2 or 3, got '%s'", optarg);
      a->mnc_len = optarg[0] - '0';
      break;
    case ':':
      return m5ctl_usage_error("%s: missing value", argv[optind - 1]);
    default:
      /* optopt names a short option; an unknown long one is the element just consumed. */
      if (optopt) return m5ctl_usage_error("-%c: unknown option; see m5ctl --help", optopt);
      return m5ctl_usage_error("%s: unknown option; see m5ctl --help", argv[optind - 1]);
    }
  }
  if (optind < argc)
    return m5ctl_usage_error("%s: unexpected argument; see m5ctl --help", argv[optind]);
  if (!a->have_kausf) return m5ctl_usage_error("--kausf: required (K_AUSF as 64 hex digits)");
  if (!a->supi) return m5ctl_usage_error("--supi: required (IMSI digits)");
  if (!a->af_fqdn)
    return m5ctl_usage_error("--af-fqdn: required (the AF's host name, as sent in SNI)");
  if (a->realm && a->mnc_len)
    return m5ctl_usage_error("--mnc-len: cannot be combined with --realm");
  if (!a->ua_text) m5_akma_ua_tls13(a->ua);
  if (!a->rid) a->rid = M5_AKMA_DEFAULT_RID;
  return 0;
}

/* Derives and prints the four lines: 0 on success, 2 for unusable arguments, 1 if OpenSSL
 * fails. */
static int derive_and_print(const akma_args_t *a) {
  uint8_t kakma[M5_AKMA_KEY_LEN], atid[M5_AKMA_KEY_LEN], kaf[M5_AKMA_KEY_LEN];
  char kakma_hex[KEY_HEX_LEN + 1], atid_hex[KEY_HEX_LEN + 1], kaf_hex[KEY_HEX_LEN + 1];
  char realm_buf[M5_AKMA_FQDN_MAX + 1], akid[M5_AKMA_AKID_MAX];
  const char *realm = a->realm ? a->realm : realm_buf;
  int mnc_len = a->mnc_len ? a->mnc_len : 2;
  int rc = 1;

  if (!a->realm && m5_akma_realm_from_supi(a->supi, mnc_len, realm_buf, sizeof realm_buf)) {
    rc = m5ctl_usage_error("--supi: '%s' is too short for an MCC and a %d-digit MNC", a->supi,
                           mnc_len);
    goto out;
  }
  if (m5_akma_kakma(a->kausf, a->supi, kakma) || m5_akma_atid(a->kausf, a->supi, atid) ||
      m5_akma_kaf(kakma, a->af_fqdn, a->ua, kaf)) {
    fputs("m5ctl: cannot derive the AKMA keys: OpenSSL HMAC-SHA-256 failed\n", stderr);
    goto out;
  }
  /* Only an explicit realm can be long enough to push the NAI past its limit. */
  if (m5_akma_akid(a->rid, atid, realm, akid, sizeof akid)) {
    rc = m5ctl_usage_error("--realm: the A-KID would exceed %d characters; use a shorter realm",
                           M5_AKMA_AKID_MAX - 1);
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
  m5_wipe(a.kausf, sizeof a.kausf);
  return rc;
}
