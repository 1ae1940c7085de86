/* m5ctl: operator tooling. Each command lives in its own ctl_<group>.c and is reached through
 * the table in m5ctl.c. A command gets argv starting at its own name (argv[0] = "derive" for
 * "m5ctl akma derive") and returns the process exit code: 0 success, 1 failure of the
 * operation, 2 bad usage (one line on stderr naming the argument). */
#ifndef M5_TOOLS_CTL_H
#define M5_TOOLS_CTL_H

#include "core/buf.h"
#include "crypto/akma.h"

#include <curl/curl.h>
#include <getopt.h>
#include <stddef.h>
#include <stdint.h>

int m5ctl_akma_derive(int argc, char **argv);    /* ctl_akma.c */
int m5ctl_pki_init(int argc, char **argv);       /* ctl_pki.c */
int m5ctl_pki_issue(int argc, char **argv);      /* ctl_pki_issue.c */
int m5ctl_subscriber_add(int argc, char **argv); /* ctl_subscriber.c */
int m5ctl_subscriber_import(int argc, char **argv); /* ctl_import.c */
int m5ctl_stats(int argc, char **argv);          /* ctl_stats.c */
int m5ctl_as_add(int argc, char **argv);         /* ctl_as.c */
int m5ctl_as_remove(int argc, char **argv);      /* ctl_as.c */
int m5ctl_gateway_add(int argc, char **argv);    /* ctl_gw.c */
int m5ctl_gateway_remove(int argc, char **argv); /* ctl_gw.c */
int m5ctl_gateway_list(int argc, char **argv);   /* ctl_gw.c */
int m5ctl_group(int argc, char **argv);          /* ctl_group.c: m5ctl group VERB ... */
int m5ctl_area(int argc, char **argv);           /* ctl_group.c: m5ctl area VERB ... */

/* Prints "m5ctl: <msg>" on stderr and returns 2, for usage errors. */
int m5ctl_usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Usage errors for what getopt_long (optstring starting with ':') returned and the command does
 * not handle: ':' is a missing value, anything else an unknown option. Returns 2. */
int m5ctl_option_error(int c, char **argv);
/* After getopt_long returned -1: 2 with a usage error if an operand is left over, else 0. */
int m5ctl_operand_error(int argc, char **argv);

/* An asSvcId or gwId as m5s accepts it: 1 to M5CTL_ID_MAX characters of A-Z a-z 0-9 . _ -
 * (it goes into URNs, URL paths and file names unescaped). 1 = valid. */
#define M5CTL_ID_MAX 64 /* = M5_MSG_AS_ID_MAX */
int m5ctl_id_valid(const char *id);

/* ---- HTTP (ctl_common.c): a command brackets these with curl_global_init/cleanup ---------- */

/* One request: a JSON body (if any) sent with method (NULL: POST with a body, GET without). */
typedef struct {
  const char *url;
  const char *protocols; /* CURLOPT_PROTOCOLS_STR: "https", "http,https" */
  const char *method;
  const char *accept;          /* an "Accept: ..." header line, or NULL */
  const char *authorization;   /* an "Authorization: ..." header line, or NULL */
  const char *cert, *key, *ca; /* all or none: HTTP/2 over TLS 1.2+ with this client cert */
  const char *body;            /* sent as application/json; NULL = no body */
  size_t len;
} m5ctl_request_t;

/* Performs r, appending the answer's body to answer (whose max bounds it; the caller frees or
 * wipes it). Returns -1 after printing when libcurl cannot be set up, 1 when the transfer
 * failed (why in errbuf, nothing printed), else 0 with the HTTP status in *status. */
int m5ctl_http_perform(const m5ctl_request_t *r, m5_buf_t *answer, long *status,
                       char errbuf[CURL_ERROR_SIZE]);

/* m5s's management port (docs/admin-api.md), the --m5s-admin option of every command. */
#define M5CTL_DEFAULT_M5S_ADMIN "http://127.0.0.1:9090"

/* Checks the value of --m5s-admin: 0 and *url = arg, or 2 after a usage error. */
int m5ctl_m5s_admin_option(const char *arg, const char **url);

/* The management port's bearer token (docs/admin-api.md, "Authentication"), which m5s writes
 * to its mgmt.token_file: read from --admin-token FILE, else $M5_ADMIN_TOKEN_FILE, else
 * var/m5s/admin.token (m5s's default, relative to where both run). */
#define M5CTL_DEFAULT_ADMIN_TOKEN "var/m5s/admin.token"
#define M5CTL_ADMIN_TOKEN_ENV "M5_ADMIN_TOKEN_FILE"
/* The file to read: opt (--admin-token's value, NULL if not given), else the environment's,
 * else the default. */
const char *m5ctl_admin_token_file(const char *opt);

/* "Authorization: Bearer <token>" from the token file into line (cap: M5CTL_AUTH_LINE_MAX);
 * 0, or 1 after printing why. A secret: the caller wipes line. */
#define M5CTL_TOKEN_MAX 128
#define M5CTL_AUTH_LINE_MAX (M5CTL_TOKEN_MAX + 32)
int m5ctl_admin_auth_header(const char *token_file, char *line, size_t cap);
/* Frees a libcurl header list, wiping each line first (one may hold the management token). */
void m5ctl_headers_free(struct curl_slist *list);

/* {admin}{path}{segment} (segment NULL = none, else percent-encoded as one path segment) with
 * a terminating NUL appended to url, whose max bounds it; 0, or M5_ERANGE when too long. */
int m5ctl_admin_url(const char *admin, const char *path, const char *segment, m5_buf_t *url);

/* method {admin}{path}{segment} on the management port, segment (NULL = none) percent-encoded
 * as one path segment, body (NULL = none) as JSON, with "Authorization: Bearer <token>" read
 * from token_file (NULL = no token: the open GET /admin/v1/stats). 0 with the status in
 * *status and its body appended to answer; 1 after printing one line when the token file
 * cannot be read or m5s cannot be reached; 2 after a usage error when the URL is too long. */
int m5ctl_admin_request(const char *admin, const char *token_file, const char *method,
                        const char *path, const char *segment, const char *body,
                        m5_buf_t *answer, long *status);

/* "<status> <detail> (<param>: <reason>)" from a refused admin request's problem+json answer
 * (RFC 9457: detail, invalidParams[0]) into out, peer text made printable. */
void m5ctl_admin_problem_text(long status, const m5_buf_t *answer, char *out, size_t cap);

/* Prints "m5ctl: <fmt ...>: <status> <detail> (<param>: <reason>)" on one line from the
 * problem+json answer (RFC 9457: detail, invalidParams[0]) of a refused admin request and
 * returns 1. */
int m5ctl_admin_refused(long status, const m5_buf_t *answer, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

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
  M5CTL_OPT_M5S_ADMIN,   /* --m5s-admin URL: M5CTL_ADMIN_OPTIONS */
  M5CTL_OPT_ADMIN_TOKEN, /* --admin-token FILE: M5CTL_ADMIN_OPTIONS */
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

/* ---- commands on m5s's management port (ctl_admin_cmd.c): as, gateway, group, area ---- */

/* Where such a command calls: --m5s-admin and --admin-token as given, NULL while not given. */
typedef struct {
  const char *url;        /* NULL = M5CTL_DEFAULT_M5S_ADMIN */
  const char *token_file; /* NULL = m5ctl_admin_token_file's choice */
} m5ctl_admin_t;

/* Their rows, for a command's struct option table. */
/* clang-format off */
#define M5CTL_ADMIN_OPTIONS                                           \
  {"m5s-admin", required_argument, NULL, M5CTL_OPT_M5S_ADMIN},        \
  {"admin-token", required_argument, NULL, M5CTL_OPT_ADMIN_TOKEN}
/* clang-format on */

/* Takes option c with its value arg if it is one of those: 0 when taken, 2 after a usage error,
 * -1 when c is not one of them (the caller handles it). */
int m5ctl_admin_option(m5ctl_admin_t *a, int c, const char *arg);

/* m5ctl_admin_request at a's URL with a's token file, defaults filled in. */
int m5ctl_admin_call(const m5ctl_admin_t *a, const char *method, const char *path,
                     const char *segment, const char *body, m5_buf_t *answer, long *status);

/* A client's ID option (name: "--as-svc-id", "--gw-id"): 0 and *id = arg; 2 after a usage
 * error when it is given twice (*id already set) or breaks m5ctl_id_valid. */
int m5ctl_id_option(const char *name, const char *arg, const char **id);

/* What is wrong with text as a client's HOST:PORT target, or NULL when m5s takes it: m5s's rule
 * (core/net.h) after the lowercasing m5s does too. */
const char *m5ctl_target_problem(const char *text);

/* fn(ctx) between curl_global_init and curl_global_cleanup: what fn returns, or 1 after printing
 * when libcurl cannot be initialised. */
int m5ctl_with_curl(int (*fn)(const void *ctx), const void *ctx);

/* ---- the AAnF as the AUSF calls it (ctl_subscriber.c; subscriber add and import) ---------- */

#define M5CTL_DEFAULT_AANF "https://localhost:7443"
#define M5CTL_DEFAULT_PKI "./var/pki"

/* Checks the value of --aanf (https only: K_AKMA never travels in clear): 0 and *url = arg,
 * or 2 after a usage error. */
int m5ctl_aanf_option(const char *arg, const char **url);

/* Where and how Naanf_AKMA_AnchorKey_Register is called: its URL and the AUSF's client
 * certificate, key and the CA in the PKI directory. */
typedef struct {
  char url[2048], cert[4096], key[4096], ca[4096];
} m5ctl_aanf_t;

/* Fills out from --aanf's URL and --pki's directory: 0; 1 after printing which file cannot be
 * read; 2 after a usage error. */
int m5ctl_aanf_setup(const char *aanf, const char *pki, m5ctl_aanf_t *out);

/* The register-anchorkey body (AkmaKeyInfo: supi, aKId, kAkma) for in, with K_AKMA and the
 * A-KID derived by m5ctl_akma_in_derive; akid receives the A-KID. Returns what that returns
 * (0; 1 or 2 after printing). The body holds K_AKMA: the caller wipes it. */
#define M5CTL_ANCHORKEY_BODY_MAX (M5_AKMA_AKID_MAX + 2 * M5_AKMA_KEY_LEN + 128)
int m5ctl_anchorkey_body(const m5ctl_akma_in_t *in, char body[M5CTL_ANCHORKEY_BODY_MAX],
                         size_t *len, char akid[M5_AKMA_AKID_MAX]);

/* Whether a 200 answer to it is the AkmaKeyInfo registered with our akid (1) or not (0); the
 * kAkma it echoes is wiped in the parsed copy (the caller wipes answer). */
int m5ctl_anchorkey_confirmed(const m5_buf_t *answer, const char *akid);

/* "<status> <title>: <detail> (<cause>)" from the AAnF's ProblemDetails (TS 29.571) into out,
 * peer text made printable. */
void m5ctl_aanf_problem_text(long status, const m5_buf_t *answer, char *out, size_t cap);

#endif
