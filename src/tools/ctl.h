/* m5ctl: operator tooling. Each command lives in its own ctl_<group>.c and is reached through
 * the table in m5ctl.c. A command gets argv starting at its own name (argv[0] = "derive" for
 * "m5ctl akma derive") and returns the process exit code: 0 success, 1 failure of the
 * operation, 2 bad usage (one line on stderr naming the argument). */
#ifndef M5_TOOLS_CTL_H
#define M5_TOOLS_CTL_H

#include "crypto/akma.h"

#include <getopt.h>
#include <stdint.h>

int m5ctl_akma_derive(int argc, char **argv);    /* ctl_akma.c */
int m5ctl_pki_init(int argc, char **argv);       /* ctl_pki.c */
int m5ctl_pki_issue(int argc, char **argv);      /* ctl_pki_issue.c */
int m5ctl_subscriber_add(int argc, char **argv); /* ctl_subscriber.c */
int m5ctl_stats(int argc, char **argv);          /* ctl_stats.c */

/* Prints "m5ctl: <msg>" on stderr and returns 2, for usage errors. */
int m5ctl_usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Usage errors for what getopt_long (optstring starting with ':') returned and the command does
 * not handle: ':' is a missing value, anything else an unknown option. Returns 2. */
int m5ctl_option_error(int c, char **argv);
/* After getopt_long returned -1: 2 with a usage error if an operand is left over, else 0. */
int m5ctl_operand_error(int argc, char **argv);

/* The subscriber as its AUSF knows it, shared by the AKMA commands (ctl_common.c): --kausf,
 * --supi, --rid, --realm, --mnc-len. Start from all zeroes; kausf is a secret the owner wipes
 * with m5_wipe on every path. The strings are borrowed from argv. */
typedef struct {
  uint8_t kausf[M5_AKMA_KEY_LEN];
  int have_kausf;
  const char *supi, *rid, *realm; /* NULL = not given */
  int mnc_len;                    /* 0 = not given */
} m5ctl_akma_in_t;

/* getopt_long values of those options; a command numbers its own from M5CTL_OPT_OWN. */
enum {
  M5CTL_OPT_KAUSF = 256,
  M5CTL_OPT_SUPI,
  M5CTL_OPT_RID,
  M5CTL_OPT_REALM,
  M5CTL_OPT_MNC_LEN,
  M5CTL_OPT_OWN
};

/* Their rows, for a command's struct option table. */
/* clang-format off */
#define M5CTL_AKMA_IN_OPTIONS                             \
  {"kausf", required_argument, NULL, M5CTL_OPT_KAUSF},    \
  {"supi", required_argument, NULL, M5CTL_OPT_SUPI},      \
  {"rid", required_argument, NULL, M5CTL_OPT_RID},        \
  {"realm", required_argument, NULL, M5CTL_OPT_REALM},    \
  {"mnc-len", required_argument, NULL, M5CTL_OPT_MNC_LEN}
/* clang-format on */

/* Takes option c with its value arg if it is one of those: 0 when taken, 2 after a usage error,
 * -1 when c is not one of them (the caller handles it). The argv text of --kausf is wiped
 * whatever happens, so the key does not linger in the process image. */
int m5ctl_akma_in_option(m5ctl_akma_in_t *in, int c, char *arg);

/* Derives K_AKMA, A-TID and the A-KID text (TS 33.535 Annex A.2, A.3; architecture §4) from
 * in, which must have kausf and supi. The realm is in->realm or else built from the SUPI with
 * an in->mnc_len-digit MNC (2 if not given), the RID is M5_AKMA_DEFAULT_RID if not given.
 * 0 on success; 1 if OpenSSL failed, 2 for arguments that make no A-KID, after printing the
 * message. On failure kakma holds no key material. */
int m5ctl_akma_in_derive(const m5ctl_akma_in_t *in, uint8_t kakma[M5_AKMA_KEY_LEN],
                         uint8_t atid[M5_AKMA_KEY_LEN], char akid[M5_AKMA_AKID_MAX]);

#endif
