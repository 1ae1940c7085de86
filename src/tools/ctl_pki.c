/* m5ctl pki init: the development PKI (architecture §4, msgin5g-security.md §5.4): one CA and
 * the leaf certificates of the AAnF, the MSGin5G server, the AUSF role, an AS and a gateway,
 * built with the OpenSSL 3 C API, plus the key m5s signs its MSGin5G-3 access tokens with (ES256,
 * TS 33.210 cl. 6.3). Profile after TS 33.310 cl. 6.1.3c: EC P-256 keys, ecdsa-with-SHA256,
 * X.509 v3, random positive serials of at most 20 octets, SKI/AKI, critical keyUsage and
 * basicConstraints, EKU per role. Private keys are PEM (PKCS#8) with mode 0600.
 * Every file is first written as <name>.tmp and renamed only once the whole set exists, so an
 * interrupted run never leaves a mixture of old and new certificates.
 * The issuing and writing helpers are shared with `pki issue` (ctl_pki.h). */
#include "ctl_pki.h"

#include "ctl.h"

#include "crypto/akma.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define CA_DAYS 3650
/* The top bit of 20 octets clear: positive and at most 20 octets (RFC 5280 cl. 4.1.2.2). */
#define SERIAL_BITS 159
#define N_ENTITIES 6
/* Not a certificate and signed by nobody: it is kept, or made, on its own (see init). */
#define TOKEN_STEM "m5s-token"

int m5ctl_pki_ossl_fail(const char *what, const char *file) {
  char reason[256] = "unknown OpenSSL error";
  unsigned long e = ERR_get_error();
  if (e) ERR_error_string_n(e, reason, sizeof reason);
  ERR_clear_error();
  fprintf(stderr, "m5ctl: cannot %s %s: %s\n", what, file, reason);
  return 1;
}

static int add_ext(X509 *crt, X509V3_CTX *ctx, int nid, const char *value) {
  X509_EXTENSION *ext = X509V3_EXT_nconf_nid(NULL, ctx, nid, value);
  if (!ext) return -1;
  int ok = X509_add_ext(crt, ext, -1);
  X509_EXTENSION_free(ext);
  return ok ? 0 : -1;
}

static int set_random_serial(X509 *crt) {
  BIGNUM *bn = BN_new();
  int ok = bn && BN_rand(bn, SERIAL_BITS, BN_RAND_TOP_ONE, BN_RAND_BOTTOM_ANY) &&
           BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(crt));
  BN_free(bn);
  return ok ? 0 : -1;
}

int m5ctl_pki_pair_new(const m5ctl_pki_entity_t *e, const m5ctl_pki_pair_t *issuer, int days,
                       m5ctl_pki_pair_t *out) {
  X509 *crt = NULL;
  X509_NAME *name = NULL;
  EVP_PKEY *key = EVP_EC_gen("P-256");
  if (!key || !(crt = X509_new()) || !(name = X509_NAME_new())) goto fail;
  if (!X509_set_version(crt, X509_VERSION_3) || set_random_serial(crt) ||
      !X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8, (const unsigned char *)e->cn, -1, -1,
                                  0) ||
      !X509_set_subject_name(crt, name) ||
      !X509_set_issuer_name(crt, issuer ? X509_get_subject_name(issuer->crt) : name) ||
      !X509_gmtime_adj(X509_getm_notBefore(crt), 0) ||
      !X509_time_adj_ex(X509_getm_notAfter(crt), days, 0, NULL) || !X509_set_pubkey(crt, key))
    goto fail;

  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, issuer ? issuer->crt : crt, crt, NULL, NULL, 0);
  /* The SKI goes first: for the self-signed CA the AKI is copied from it. */
  if (add_ext(crt, &ctx, NID_subject_key_identifier, "hash") ||
      add_ext(crt, &ctx, NID_authority_key_identifier, "keyid:always"))
    goto fail;
  if (!issuer) {
    if (add_ext(crt, &ctx, NID_basic_constraints, "critical,CA:TRUE") ||
        add_ext(crt, &ctx, NID_key_usage, "critical,keyCertSign,cRLSign"))
      goto fail;
  } else if (add_ext(crt, &ctx, NID_basic_constraints, "critical,CA:FALSE") ||
             add_ext(crt, &ctx, NID_key_usage, "critical,digitalSignature") ||
             add_ext(crt, &ctx, NID_ext_key_usage, e->eku) ||
             add_ext(crt, &ctx, NID_subject_alt_name, e->san)) {
    goto fail;
  }
  if (!X509_sign(crt, issuer ? issuer->key : key, EVP_sha256())) goto fail;
  X509_NAME_free(name);
  out->key = key;
  out->crt = crt;
  return 0;
fail:
  X509_NAME_free(name);
  X509_free(crt);
  EVP_PKEY_free(key);
  return -1;
}

void m5ctl_pki_pair_free(m5ctl_pki_pair_t *p) {
  EVP_PKEY_free(p->key);
  X509_free(p->crt);
  p->key = NULL;
  p->crt = NULL;
}

int m5ctl_pki_path(char *out, size_t outlen, const char *dir, const char *stem,
                   const char *suffix) {
  int n = snprintf(out, outlen, "%s/%s%s", dir, stem, suffix);
  return n < 0 || (size_t)n >= outlen ? -1 : 0;
}

/* Writes one PEM object to path with exactly the given mode (umask cannot widen it, and the
 * fchmod narrows a stale file left by an earlier interrupted run). */
static int write_pem(const char *path, mode_t mode, const m5ctl_pki_pair_t *p, int is_key) {
  int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, mode);
  if (fd < 0 || fchmod(fd, mode)) {
    fprintf(stderr,
            "m5ctl: cannot write %s: %s; check the directory's permissions or choose "
            "another --dir\n",
            path, strerror(errno));
    if (fd >= 0) close(fd);
    return 1;
  }
  FILE *f = fdopen(fd, "w");
  if (!f) {
    close(fd);
    fprintf(stderr, "m5ctl: cannot write %s: %s\n", path, strerror(errno));
    return 1;
  }
  int ok = is_key ? PEM_write_PrivateKey(f, p->key, NULL, NULL, 0, NULL, NULL)
                  : PEM_write_X509(f, p->crt);
  if (fclose(f) || !ok) {
    if (!ok) return m5ctl_pki_ossl_fail("write", path);
    fprintf(stderr, "m5ctl: cannot write %s: %s; is the disk full?\n", path, strerror(errno));
    return 1;
  }
  return 0;
}

/* The final and the temporary name of f; -1 if they do not fit. */
static int set_paths(const char *dir, const m5ctl_pki_file_t *f, char path[PATH_MAX],
                     char tmp[PATH_MAX]) {
  const char *suffix = f->is_key ? ".key" : ".crt";
  if (m5ctl_pki_path(path, PATH_MAX, dir, f->stem, suffix)) return -1;
  int n = snprintf(tmp, PATH_MAX, "%s.tmp", path);
  return n < 0 || n >= PATH_MAX ? -1 : 0;
}

int m5ctl_pki_write_set(const char *dir, const m5ctl_pki_file_t *files, size_t n,
                        const char *prefix) {
  char path[PATH_MAX], tmp[PATH_MAX];
  int rc = 1;
  for (size_t i = 0; i < n; i++) {
    if (set_paths(dir, &files[i], path, tmp)) {
      fprintf(stderr, "m5ctl: --dir: path too long\n");
      goto out;
    }
    if (write_pem(tmp, files[i].is_key ? 0600 : 0644, files[i].pair, files[i].is_key)) goto out;
  }
  for (size_t i = 0; i < n; i++) {
    if (set_paths(dir, &files[i], path, tmp) || rename(tmp, path)) {
      fprintf(stderr, "m5ctl: cannot rename %s to %s: %s; rerun with --force\n", tmp, path,
              strerror(errno));
      goto out;
    }
    printf("%s%s\n", prefix, path);
  }
  rc = 0;
out:
  for (size_t i = 0; rc && i < n; i++)
    if (!set_paths(dir, &files[i], path, tmp)) unlink(tmp);
  return rc;
}

/* mkdir -p; the last component (the directory holding private keys) gets mode 0700. */
static int make_dir(const char *dir) {
  char path[PATH_MAX];
  int n = snprintf(path, sizeof path, "%s", dir);
  if (n < 0 || (size_t)n >= sizeof path) {
    fprintf(stderr, "m5ctl: --dir: path too long\n");
    return 1;
  }
  while (n > 1 && path[n - 1] == '/')
    path[--n] = '\0';
  for (char *p = path + 1; *p; p++) {
    if (*p != '/') continue;
    *p = '\0';
    if (mkdir(path, 0755) && errno != EEXIST) {
      fprintf(stderr, "m5ctl: cannot create directory %s: %s; choose another --dir\n", path,
              strerror(errno));
      return 1;
    }
    *p = '/';
  }
  struct stat st;
  if ((mkdir(path, 0700) && errno != EEXIST) || stat(path, &st)) {
    fprintf(stderr, "m5ctl: cannot create directory %s: %s; choose another --dir\n", path,
            strerror(errno));
    return 1;
  }
  if (!S_ISDIR(st.st_mode)) {
    fprintf(stderr, "m5ctl: %s exists and is not a directory; choose another --dir\n", path);
    return 1;
  }
  return 0;
}

/* Counts which of the 2 * N_ENTITIES files exist; *missing names the first absent one. */
static int count_existing(const char *dir, const m5ctl_pki_entity_t *ents, char *missing,
                          size_t mlen) {
  int present = 0;
  missing[0] = '\0';
  for (int i = 0; i < N_ENTITIES; i++) {
    for (int k = 0; k < 2; k++) {
      char path[PATH_MAX];
      if (m5ctl_pki_path(path, sizeof path, dir, ents[i].stem, k ? ".key" : ".crt")) return -1;
      if (access(path, F_OK) == 0)
        present++;
      else if (!missing[0])
        snprintf(missing, mlen, "%s", path);
    }
  }
  return present;
}

/* Makes the certificates (certs) and the token key (token) and writes them as one set. */
static int generate(const char *dir, const m5ctl_pki_entity_t *ents, int certs, int token) {
  m5ctl_pki_pair_t pairs[N_ENTITIES + 1]; /* the last one holds the token key */
  m5ctl_pki_file_t files[2 * N_ENTITIES + 1];
  size_t n = 0;
  char path[PATH_MAX];
  int rc = 1;
  memset(pairs, 0, sizeof pairs);

  for (int i = 0; certs && i < N_ENTITIES; i++) {
    if (m5ctl_pki_pair_new(&ents[i], i ? &pairs[0] : NULL, i ? M5CTL_PKI_LEAF_DAYS : CA_DAYS,
                           &pairs[i])) {
      if (m5ctl_pki_path(path, sizeof path, dir, ents[i].stem, ".crt")) path[0] = '\0';
      m5ctl_pki_ossl_fail("create certificate", path);
      goto out;
    }
    files[n++] = (m5ctl_pki_file_t){ents[i].stem, &pairs[i], 0};
    files[n++] = (m5ctl_pki_file_t){ents[i].stem, &pairs[i], 1};
  }
  if (token) {
    if (!(pairs[N_ENTITIES].key = EVP_EC_gen("P-256"))) {
      if (m5ctl_pki_path(path, sizeof path, dir, TOKEN_STEM, ".key")) path[0] = '\0';
      m5ctl_pki_ossl_fail("create key", path);
      goto out;
    }
    files[n++] = (m5ctl_pki_file_t){TOKEN_STEM, &pairs[N_ENTITIES], 1};
  }
  rc = m5ctl_pki_write_set(dir, files, n, "pki: wrote ");
out:
  for (int i = 0; i <= N_ENTITIES; i++)
    m5ctl_pki_pair_free(&pairs[i]);
  return rc;
}

int m5ctl_pki_init(int argc, char **argv) {
  enum { OPT_DIR = 256, OPT_FORCE, OPT_FQDN };
  static const struct option opts[] = {
      {"dir", required_argument, NULL, OPT_DIR},
      {"force", no_argument, NULL, OPT_FORCE},
      {"fqdn", required_argument, NULL, OPT_FQDN},
      {NULL, 0, NULL, 0},
  };
  const char *dir = M5CTL_PKI_DEFAULT_DIR, *fqdn = "localhost";
  int force = 0, c, rc;
  opterr = 0;
  optind = 1;
  while ((c = getopt_long(argc, argv, ":", opts, NULL)) != -1) {
    switch (c) {
    case OPT_DIR:
      if (!optarg[0]) return m5ctl_usage_error("--dir: must not be empty");
      dir = optarg;
      break;
    case OPT_FORCE:
      force = 1;
      break;
    case OPT_FQDN:
      if (m5_akma_fqdn_valid(optarg))
        return m5ctl_usage_error("--fqdn: expected a host name of dot-separated letters, "
                                 "digits and hyphens, got '%s'",
                                 optarg);
      fqdn = optarg;
      break;
    default:
      return m5ctl_option_error(c, argv);
    }
  }
  if ((rc = m5ctl_operand_error(argc, argv))) return rc;

  char m5s_san[M5_AKMA_FQDN_MAX + 32];
  snprintf(m5s_san, sizeof m5s_san, "DNS:%s,IP:127.0.0.1", fqdn);
  /* The CA comes first: the others are signed with its key. */
  const m5ctl_pki_entity_t ents[N_ENTITIES] = {
      {"ca", "msgin5g dev CA", NULL, NULL},
      {"aanf", "aanf.localhost", "DNS:localhost,DNS:aanf.localhost,IP:127.0.0.1", "serverAuth"},
      /* m5s is both the MSGin5G server and, towards the AAnF, an AF whose afId is its dNSName. */
      {"m5s", fqdn, m5s_san, "serverAuth,clientAuth"},
      {"ausf", "ausf", "URI:urn:msgin5g:ausf", "clientAuth"},
      {"as1", "as1", "URI:urn:msgin5g:as:as1", "clientAuth"},
      {"gw1", "gw1", "URI:urn:msgin5g:gw:gw1", "clientAuth"},
  };

  if (make_dir(dir)) return 1;
  char missing[PATH_MAX], token_path[PATH_MAX];
  int present = count_existing(dir, ents, missing, sizeof missing);
  if (present < 0 || m5ctl_pki_path(token_path, sizeof token_path, dir, TOKEN_STEM, ".key")) {
    fprintf(stderr, "m5ctl: --dir: path too long\n");
    return 1;
  }
  /* Never overwrite part of someone's PKI silently: keys may already be deployed. */
  if (!force && present > 0 && present < 2 * N_ENTITIES) {
    fprintf(stderr,
            "m5ctl: %s holds an incomplete PKI (%s is missing); run `m5ctl pki init "
            "--dir %s --force` to regenerate all of it\n",
            dir, missing, dir);
    return 1;
  }
  /* The token key depends on no certificate, so a PKI made before it existed just gains one;
   * like the certificates, an existing one is replaced only with --force. */
  int certs = force || present == 0;
  int token = force || access(token_path, F_OK) != 0;
  if (!certs) printf("pki: kept existing %s\n", dir);
  if (!certs && !token) return 0;
  return generate(dir, ents, certs, token);
}
