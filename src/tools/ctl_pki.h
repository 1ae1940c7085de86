/* m5ctl pki: what `pki init` (ctl_pki.c) and `pki issue` (ctl_pki_issue.c) share, so both issue
 * certificates of the same profile (TS 33.310 cl. 6.1.3c, msgin5g-security.md §5.4) and write
 * them the same way: PEM, keys PKCS#8 with mode 0600, every set of files renamed into place only
 * once all of it is written. */
#ifndef M5_TOOLS_CTL_PKI_H
#define M5_TOOLS_CTL_PKI_H

#include <openssl/evp.h>
#include <openssl/x509.h>
#include <stddef.h>

#define M5CTL_PKI_DEFAULT_DIR "./var/pki"
/* Leaves: the CA/Browser Forum's former ceiling, which TLS clients still enforce, by default;
 * at most 3 years (TS 33.310 cl. 6.1.3c). */
#define M5CTL_PKI_LEAF_DAYS 825
#define M5CTL_PKI_MAX_DAYS 1095

typedef struct {
  const char *stem; /* <stem>.crt and <stem>.key */
  const char *cn;
  const char *san; /* X509V3 config syntax ("URI:urn:..."); NULL for the CA */
  const char *eku; /* NULL for the CA */
} m5ctl_pki_entity_t;

typedef struct {
  EVP_PKEY *key;
  X509 *crt; /* NULL for a bare key (the token signing key) */
} m5ctl_pki_pair_t;

/* One file of a set: pair's key (is_key) or certificate, as <dir>/<stem>.key or .crt. */
typedef struct {
  const char *stem;
  const m5ctl_pki_pair_t *pair;
  int is_key;
} m5ctl_pki_file_t;

/* Makes a fresh EC P-256 key and the certificate for e, valid for days, signed by issuer
 * (NULL: self-signed, the CA). 0 on success; -1 with the reason on the OpenSSL error queue. */
int m5ctl_pki_pair_new(const m5ctl_pki_entity_t *e, const m5ctl_pki_pair_t *issuer, int days,
                       m5ctl_pki_pair_t *out);
/* Frees both halves (OpenSSL cleanses EC private keys when freeing them); p may be all NULL. */
void m5ctl_pki_pair_free(m5ctl_pki_pair_t *p);

/* <dir>/<stem><suffix> into out; -1 if it does not fit. */
int m5ctl_pki_path(char *out, size_t outlen, const char *dir, const char *stem, const char *suffix);

/* Prints "m5ctl: cannot <what> <file>: <OpenSSL's first reason>" and returns 1. */
int m5ctl_pki_ossl_fail(const char *what, const char *file);

/* Writes the n files as <name>.tmp, then renames them all into place, printing each final
 * path after prefix, one per line. 0 on success; 1 after a message, with the .tmp files
 * removed. */
int m5ctl_pki_write_set(const char *dir, const m5ctl_pki_file_t *files, size_t n,
                        const char *prefix);

#endif
