/* m5ctl pki issue: one more certificate from the development CA (architecture §3.2, §4), with
 * the profile and the all-or-nothing writing of `pki init` (ctl_pki.h; TS 33.310 cl. 6.1.3c,
 * validity at most 3 years):
 * - an Application Server's for MSGin5G-3: SAN URI urn:msgin5g:as:<asSvcId>, clientAuth only;
 * - a message gateway's two for MSGin5G-2/-4, written as one set: gw-<gwId> (SAN URI
 *   urn:msgin5g:gw:<gwId>, clientAuth only: how it calls m5s) and msgg-<gwId> (the same SAN URI
 *   plus the dNSNames and IP addresses of its MSGG listener, --host, default localhost and
 *   127.0.0.1 as m5s's own certificate; serverAuth only: the listener m5s calls, where m5s
 *   checks the target's host name and the SAN URI of the gateway it means to reach).
 *   Two certificates, not one with both usages: a client certificate naming hosts would pass
 *   wherever a host name identifies a client (m5gw's pin of m5s.name, the AAnF's afId), and
 *   in the development PKI every host is localhost, m5s's own name (docs/security.md). */
#include "ctl_pki.h"

#include "ctl.h"

#include "crypto/akma.h"

#include <arpa/inet.h>
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

/* A gateway listener's names: at most this many --host, each a host name or an IP literal. */
#define MAX_HOSTS 8
#define HOST_SAN_MAX (MAX_HOSTS * (M5_AKMA_FQDN_MAX + 8))

/* Appends ",DNS:<host>" or ",IP:<host>" to san (X509V3 config syntax); a usage error (2) when
 * host is neither a host name nor an IPv4/IPv6 literal. */
static int add_host(char *san, size_t sanlen, const char *host) {
  unsigned char addr[16];
  int ip = inet_pton(AF_INET, host, addr) == 1 || inet_pton(AF_INET6, host, addr) == 1;
  if (!ip && m5_akma_fqdn_valid(host))
    return m5ctl_usage_error("--host: expected a host name of dot-separated letters, digits "
                             "and hyphens or an IP address, got '%s'",
                             host);
  size_t n = strlen(san);
  int w = snprintf(san + n, sanlen - n, ",%s:%s", ip ? "IP" : "DNS", host);
  if (w < 0 || (size_t)w >= sanlen - n) return m5ctl_usage_error("--host: names too long");
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
  enum { OPT_AS = 256, OPT_GW, OPT_DIR, OPT_DAYS, OPT_FORCE, OPT_HOST };
  /* clang-format off */
  static const struct option opts[] = {
      {"as-svc-id", required_argument, NULL, OPT_AS},
      {"gw-id", required_argument, NULL, OPT_GW},
      {"dir", required_argument, NULL, OPT_DIR},
      {"days", required_argument, NULL, OPT_DAYS},
      {"force", no_argument, NULL, OPT_FORCE},
      {"host", required_argument, NULL, OPT_HOST},
      {NULL, 0, NULL, 0},
  };
  /* clang-format on */
  const char *dir = M5CTL_PKI_DEFAULT_DIR, *as_id = NULL, *gw_id = NULL;
  const char *hosts[MAX_HOSTS];
  size_t n_hosts = 0;
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
    case OPT_HOST:
      if (n_hosts == MAX_HOSTS) return m5ctl_usage_error("--host: at most %d names", MAX_HOSTS);
      hosts[n_hosts++] = optarg;
      break;
    default:
      return m5ctl_option_error(c, argv);
    }
  }
  if ((rc = m5ctl_operand_error(argc, argv))) return rc;
  if (as_id && gw_id) return m5ctl_usage_error("--gw-id: cannot be combined with --as-svc-id");
  if (!as_id && !gw_id)
    return m5ctl_usage_error("--as-svc-id or --gw-id: required (whose certificate to issue)");

  if (as_id && n_hosts)
    return m5ctl_usage_error("--host: only for --gw-id (an Application Server's certificate is "
                             "a client certificate)");

  const char *id = as_id ? as_id : gw_id, *kind = as_id ? "as" : "gw";
  /* "msgg-" cannot clash with "gw-" or "as-" stems: IDs never hold a character before them. */
  char stem[M5CTL_ID_MAX + 4], lstem[M5CTL_ID_MAX + 6], san[M5CTL_ID_MAX + 32],
      lsan[M5CTL_ID_MAX + 32 + HOST_SAN_MAX];
  snprintf(stem, sizeof stem, "%s-%s", kind, id);
  snprintf(san, sizeof san, "URI:urn:msgin5g:%s:%s", kind, id);
  snprintf(lstem, sizeof lstem, "msgg-%s", id);
  snprintf(lsan, sizeof lsan, "%s", san);
  if (gw_id) {
    /* The MSGG listener's names: those m5s may dial (the --target of `m5ctl gateway add`). */
    static const char *const def_hosts[] = {"localhost", "127.0.0.1"};
    const char *const *h = n_hosts ? hosts : def_hosts;
    size_t nh = n_hosts ? n_hosts : 2;
    for (size_t i = 0; i < nh; i++)
      if ((rc = add_host(lsan, sizeof lsan, h[i]))) return rc;
  }
  const m5ctl_pki_entity_t ents[] = {{stem, id, san, "clientAuth"},
                                     {lstem, id, lsan, "serverAuth"}};
  size_t n = gw_id ? 2 : 1;
  m5ctl_pki_pair_t ca = {NULL, NULL}, leaves[2] = {{NULL, NULL}, {NULL, NULL}};
  m5ctl_pki_file_t files[4];

  rc = 1;
  if (load_ca(dir, &ca)) goto out;
  for (size_t i = 0; i < n; i++) {
    if (!force && refuse_existing(dir, ents[i].stem)) goto out;
  }
  for (size_t i = 0; i < n; i++) {
    if (m5ctl_pki_pair_new(&ents[i], &ca, days, &leaves[i])) {
      char path[PATH_MAX];
      if (m5ctl_pki_path(path, sizeof path, dir, ents[i].stem, ".crt")) path[0] = '\0';
      m5ctl_pki_ossl_fail("create certificate", path);
      goto out;
    }
    if (check_ca_lifetime(dir, &ca, &leaves[i])) goto out;
    files[2 * i] = (m5ctl_pki_file_t){ents[i].stem, &leaves[i], 0};
    files[2 * i + 1] = (m5ctl_pki_file_t){ents[i].stem, &leaves[i], 1};
  }
  rc = m5ctl_pki_write_set(dir, files, 2 * n, "");
out:
  for (size_t i = 0; i < 2; i++)
    m5ctl_pki_pair_free(&leaves[i]);
  m5ctl_pki_pair_free(&ca);
  return rc;
}
