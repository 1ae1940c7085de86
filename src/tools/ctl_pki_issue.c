/* m5ctl pki issue: one more client certificate from the development CA (architecture §3.2,
 * §4): an Application Server's for MSGin5G-3 (SAN URI urn:msgin5g:as:<asSvcId>) or a message
 * gateway's for MSGin5G-2/-4 (urn:msgin5g:gw:<gwId>), clientAuth only, with the profile and the
 * all-or-nothing writing of `pki init` (ctl_pki.h; TS 33.310 cl. 6.1.3c, validity at most
 * 3 years). */
#include "ctl_pki.h"

#include "ctl.h"

#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <openssl/pem.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int parse_days(const char *text, int *days) {
  char *end;
  errno = 0;
  long v = strtol(text, &end, 10);
  if (errno || end == text || *end || v < 1 || v > M5CTL_PKI_MAX_DAYS)
    return m5ctl_usage_error("--days: expected 1 to %d (at most 3 years, TS 33.310), got '%s'",
                             M5CTL_PKI_MAX_DAYS, text);
  *days = (int)v;
  return 0;
}

/* Reads the CA's certificate (is_key 0) or key from <dir>/ca.crt|key into ca; 1 after a
 * message. */
static int read_ca_part(const char *dir, int is_key, m5ctl_pki_pair_t *ca) {
  char path[PATH_MAX];
  if (m5ctl_pki_path(path, sizeof path, dir, "ca", is_key ? ".key" : ".crt")) {
    fprintf(stderr, "m5ctl: --dir: path too long\n");
    return 1;
  }
  FILE *f = fopen(path, "r");
  if (!f) {
    fprintf(stderr,
            "m5ctl: cannot read the CA's %s %s: %s; run `m5ctl pki init --dir %s` first or "
            "pass the --dir it used\n",
            is_key ? "key" : "certificate", path, strerror(errno), dir);
    return 1;
  }
  if (is_key)
    ca->key = PEM_read_PrivateKey(f, NULL, NULL, NULL);
  else
    ca->crt = PEM_read_X509(f, NULL, NULL, NULL);
  fclose(f);
  if (is_key ? !ca->key : !ca->crt)
    return m5ctl_pki_ossl_fail(is_key ? "read the CA's key" : "read the CA's certificate", path);
  return 0;
}

static int load_ca(const char *dir, m5ctl_pki_pair_t *ca) {
  if (read_ca_part(dir, 0, ca) || read_ca_part(dir, 1, ca)) return 1;
  if (!X509_check_private_key(ca->crt, ca->key)) {
    fprintf(stderr,
            "m5ctl: %s/ca.key does not belong to %s/ca.crt; regenerate the PKI with `m5ctl pki "
            "init --dir %s --force`\n",
            dir, dir, dir);
    return 1;
  }
  return 0;
}

/* Refuses (1, after a message) to replace an existing <stem>.crt or .key: either may already
 * be deployed. */
static int refuse_existing(const char *dir, const char *stem) {
  for (int k = 0; k < 2; k++) {
    char path[PATH_MAX];
    if (m5ctl_pki_path(path, sizeof path, dir, stem, k ? ".key" : ".crt")) {
      fprintf(stderr, "m5ctl: --dir: path too long\n");
      return 1;
    }
    if (access(path, F_OK) == 0) {
      fprintf(stderr, "m5ctl: %s exists; pass --force to replace it and its key\n", path);
      return 1;
    }
  }
  return 0;
}

/* A leaf that outlives its CA would stop verifying before its own notAfter. */
static int check_ca_lifetime(const char *dir, const m5ctl_pki_pair_t *ca,
                             const m5ctl_pki_pair_t *leaf) {
  if (ASN1_TIME_compare(X509_get0_notAfter(leaf->crt), X509_get0_notAfter(ca->crt)) <= 0) return 0;
  fprintf(stderr,
          "m5ctl: the CA in %s expires before the certificate would; pass a smaller --days or "
          "renew the PKI with `m5ctl pki init --dir %s --force`\n",
          dir, dir);
  return 1;
}

int m5ctl_pki_issue(int argc, char **argv) {
  enum { OPT_AS = 256, OPT_GW, OPT_DIR, OPT_DAYS, OPT_FORCE };
  /* clang-format off */
  static const struct option opts[] = {
      {"as-svc-id", required_argument, NULL, OPT_AS},
      {"gw-id", required_argument, NULL, OPT_GW},
      {"dir", required_argument, NULL, OPT_DIR},
      {"days", required_argument, NULL, OPT_DAYS},
      {"force", no_argument, NULL, OPT_FORCE},
      {NULL, 0, NULL, 0},
  };
  /* clang-format on */
  const char *dir = M5CTL_PKI_DEFAULT_DIR, *as_id = NULL, *gw_id = NULL;
  int days = M5CTL_PKI_LEAF_DAYS, force = 0, c, rc;
  opterr = 0;
  optind = 1;
  while ((c = getopt_long(argc, argv, ":", opts, NULL)) != -1) {
    switch (c) {
    case OPT_AS:
    case OPT_GW:
      if (!m5ctl_id_valid(optarg))
        return m5ctl_usage_error("%s: expected 1 to %d of the characters A-Z a-z 0-9 . _ -, "
                                 "got '%s'",
                                 c == OPT_AS ? "--as-svc-id" : "--gw-id", M5CTL_ID_MAX, optarg);
      if (c == OPT_AS)
        as_id = optarg;
      else
        gw_id = optarg;
      break;
    case OPT_DIR:
      if (!optarg[0]) return m5ctl_usage_error("--dir: must not be empty");
      dir = optarg;
      break;
    case OPT_DAYS:
      if ((rc = parse_days(optarg, &days))) return rc;
      break;
    case OPT_FORCE:
      force = 1;
      break;
    default:
      return m5ctl_option_error(c, argv);
    }
  }
  if ((rc = m5ctl_operand_error(argc, argv))) return rc;
  if (as_id && gw_id) return m5ctl_usage_error("--gw-id: cannot be combined with --as-svc-id");
  if (!as_id && !gw_id)
    return m5ctl_usage_error("--as-svc-id or --gw-id: required (whose certificate to issue)");

  const char *id = as_id ? as_id : gw_id, *kind = as_id ? "as" : "gw";
  char stem[M5CTL_ID_MAX + 4], san[M5CTL_ID_MAX + 32];
  snprintf(stem, sizeof stem, "%s-%s", kind, id);
  snprintf(san, sizeof san, "URI:urn:msgin5g:%s:%s", kind, id);
  const m5ctl_pki_entity_t ent = {stem, id, san, "clientAuth"};
  m5ctl_pki_pair_t ca = {NULL, NULL}, leaf = {NULL, NULL};

  rc = 1;
  if (load_ca(dir, &ca) || (!force && refuse_existing(dir, stem))) goto out;
  if (m5ctl_pki_pair_new(&ent, &ca, days, &leaf)) {
    char path[PATH_MAX];
    if (m5ctl_pki_path(path, sizeof path, dir, stem, ".crt")) path[0] = '\0';
    m5ctl_pki_ossl_fail("create certificate", path);
    goto out;
  }
  if (check_ca_lifetime(dir, &ca, &leaf)) goto out;
  const m5ctl_pki_file_t files[] = {{stem, &leaf, 0}, {stem, &leaf, 1}};
  rc = m5ctl_pki_write_set(dir, files, 2, "");
out:
  m5ctl_pki_pair_free(&leaf);
  m5ctl_pki_pair_free(&ca);
  return rc;
}
