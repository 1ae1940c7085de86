/* m5ctl subscriber add: plays the AUSF's part of TS 33.535 cl. 6.1 for a development
 * subscriber. From K_AUSF it derives K_AKMA and the A-KID (Annex A.2, A.3; A-KID text form of
 * architecture §4) and registers them at the AAnF with Naanf_AKMA_AnchorKey_Register
 * (TS 29.535: POST {apiRoot}/naanf-akma/v1/register-anchorkey, AkmaKeyInfo) over HTTP/2 with
 * the AUSF's client certificate (SAN URI urn:msgin5g:ausf, architecture §3.4). With
 * --ue-svc-id it then binds that UE Service ID to the SUPI in m5s through its admin API
 * (PUT {m5s-admin}/admin/v1/bindings/{ueSvcId}, docs/admin-api.md), so the UE may register.
 * The AAnF side (URL, certificate files, the body with its derived keys, the answer's check)
 * is exported through ctl.h for `subscriber import` (ctl_import.c), which sends the same. */
#include "ctl.h"

#include "core/buf.h"
#include "core/err.h"
#include "crypto/akma.h"
#include "crypto/codec.h"

#include <curl/curl.h>
#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define KEY_HEX_LEN (2 * M5_AKMA_KEY_LEN)
#define BINDINGS_PATH "/admin/v1/bindings/"
#define REGISTER_PATH "/naanf-akma/v1/register-anchorkey"
#define MAX_ANSWER 65536

typedef struct {
  m5ctl_akma_in_t in;
  const char *aanf, *pki;
  const char *ue_svc_id, *m5s_admin; /* NULL = no binding in m5s */
  const char *admin_token;           /* --admin-token FILE; NULL = the default's */
} sub_args_t;

static int parse_args(int argc, char **argv, sub_args_t *a) {
  enum { OPT_AANF = M5CTL_OPT_OWN, OPT_PKI, OPT_UE_SVC_ID, OPT_M5S_ADMIN, OPT_ADMIN_TOKEN };
  static const struct option opts[] = {
      M5CTL_AKMA_IN_OPTIONS,
      {"aanf", required_argument, NULL, OPT_AANF},
      {"pki", required_argument, NULL, OPT_PKI},
      {"ue-svc-id", required_argument, NULL, OPT_UE_SVC_ID},
      {"m5s-admin", required_argument, NULL, OPT_M5S_ADMIN},
      {"admin-token", required_argument, NULL, OPT_ADMIN_TOKEN},
      {NULL, 0, NULL, 0},
  };
  int c, rc;
  opterr = 0;
  optind = 1;
  while ((c = getopt_long(argc, argv, ":", opts, NULL)) != -1) {
    if ((rc = m5ctl_akma_in_option(&a->in, c, optarg)) >= 0) {
      if (rc) return rc;
      continue;
    }
    switch (c) {
    case OPT_AANF:
      if ((rc = m5ctl_aanf_option(optarg, &a->aanf))) return rc;
      break;
    case OPT_PKI:
      a->pki = optarg;
      break;
    case OPT_UE_SVC_ID:
      /* m5s checks the text itself (and names the problem); here only what makes no URL. */
      if (optarg[0] == '\0' || strlen(optarg) > 128)
        return m5ctl_usage_error("--ue-svc-id: expected 1-128 characters, got '%s'", optarg);
      a->ue_svc_id = optarg;
      break;
    case OPT_M5S_ADMIN:
      if ((rc = m5ctl_m5s_admin_option(optarg, &a->m5s_admin))) return rc;
      break;
    case OPT_ADMIN_TOKEN:
      a->admin_token = optarg;
      break;
    default:
      return m5ctl_option_error(c, argv);
    }
  }
  if ((rc = m5ctl_operand_error(argc, argv))) return rc;
  if (!a->in.supi) return m5ctl_usage_error("--supi: required (IMSI digits)");
  if (!a->in.have_kausf) return m5ctl_usage_error("--kausf: required (K_AUSF as 64 hex digits)");
  if (a->in.realm && a->in.mnc_len)
    return m5ctl_usage_error("--mnc-len: cannot be combined with --realm");
  if (!a->aanf) a->aanf = M5CTL_DEFAULT_AANF;
  if (!a->pki) a->pki = M5CTL_DEFAULT_PKI;
  if (a->m5s_admin && !a->ue_svc_id)
    return m5ctl_usage_error("--m5s-admin: only meaningful with --ue-svc-id");
  if (a->admin_token && !a->ue_svc_id)
    return m5ctl_usage_error("--admin-token: only meaningful with --ue-svc-id");
  if (!a->m5s_admin) a->m5s_admin = M5CTL_DEFAULT_M5S_ADMIN;
  return 0;
}

static int pki_file(const char *dir, const char *name, char *out, size_t outlen) {
  if ((size_t)snprintf(out, outlen, "%s/%s", dir, name) >= outlen)
    return m5ctl_usage_error("--pki: '%s' is too long", dir);
  if (access(out, R_OK) != 0) {
    fprintf(stderr, "m5ctl: cannot read %s: %s; run `m5ctl pki init` or pass --pki DIR\n", out,
            strerror(errno));
    return 1;
  }
  return 0;
}

int m5ctl_aanf_option(const char *arg, const char **url) {
  /* Only https: K_AKMA must never travel in clear text. */
  if (strncmp(arg, "https://", 8) != 0 || arg[8] == '\0')
    return m5ctl_usage_error("--aanf: expected an https:// URL such as %s, got '%s'",
                             M5CTL_DEFAULT_AANF, arg);
  *url = arg;
  return 0;
}

int m5ctl_aanf_setup(const char *aanf, const char *pki, m5ctl_aanf_t *out) {
  int rc = pki_file(pki, "ausf.crt", out->cert, sizeof out->cert);
  if (!rc) rc = pki_file(pki, "ausf.key", out->key, sizeof out->key);
  if (!rc) rc = pki_file(pki, "ca.crt", out->ca, sizeof out->ca);
  if (rc) return rc;
  size_t base = strlen(aanf);
  while (base > 8 && aanf[base - 1] == '/')
    base--;
  if ((size_t)snprintf(out->url, sizeof out->url, "%.*s%s", (int)base, aanf, REGISTER_PATH) >=
      sizeof out->url)
    return m5ctl_usage_error("--aanf: the URL is too long");
  return 0;
}

void m5ctl_aanf_problem_text(long status, const m5_buf_t *answer, char *out, size_t cap) {
  json_t *pd = json_loadb((const char *)answer->data, answer->len, 0, NULL);
  const char *title = json_string_value(json_object_get(pd, "title"));
  const char *detail = json_string_value(json_object_get(pd, "detail"));
  const char *cause = json_string_value(json_object_get(pd, "cause"));
  snprintf(out, cap, "%ld %s%s%s%s%s%s", status, title ? title : "(no ProblemDetails)",
           detail ? ": " : "", detail ? detail : "", cause ? " (" : "", cause ? cause : "",
           cause ? ")" : "");
  for (char *c = out; *c; c++) /* peer text on our one line */
    if (*c < 0x20 || *c >= 0x7f) *c = '?';
  json_decref(pd);
}

/* Prints the AAnF's ProblemDetails (TS 29.571) in one line; 1 = the operation failed. */
static int report_refusal(long status, const m5_buf_t *answer) {
  char text[1024];
  m5ctl_aanf_problem_text(status, answer, text, sizeof text);
  fprintf(stderr, "m5ctl: the AAnF refused the registration: %s\n", text);
  return 1;
}

int m5ctl_anchorkey_confirmed(const m5_buf_t *answer, const char *akid) {
  json_t *ki = json_loadb((const char *)answer->data, answer->len, 0, NULL);
  const char *got = json_string_value(json_object_get(ki, "aKId"));
  int ok = got && !strcmp(got, akid);
  json_t *key = json_object_get(ki, "kAkma");
  if (json_is_string(key)) m5_wipe((char *)json_string_value(key), json_string_length(key));
  json_decref(ki);
  return ok;
}

/* The 200 answer is the registered AkmaKeyInfo; its aKId must be ours. */
static int check_answer(const m5_buf_t *answer, const char *akid) {
  if (m5ctl_anchorkey_confirmed(answer, akid)) return 0;
  fputs("m5ctl: the AAnF answered 200 without our aKId; registration unconfirmed\n", stderr);
  return 1;
}

static int post(const sub_args_t *a, const char *body, size_t len, const char *akid) {
  char errbuf[CURL_ERROR_SIZE];
  m5ctl_aanf_t *aanf = calloc(1, sizeof *aanf);
  if (!aanf) {
    fputs("m5ctl: out of memory\n", stderr);
    return 1;
  }
  int rc = m5ctl_aanf_setup(a->aanf, a->pki, aanf);
  if (rc) {
    free(aanf);
    return rc;
  }
  const m5ctl_request_t r = {.url = aanf->url,
                             .protocols = "https",
                             .accept = "Accept: application/json, application/problem+json",
                             .cert = aanf->cert,
                             .key = aanf->key,
                             .ca = aanf->ca,
                             .body = body,
                             .len = len};
  m5_buf_t answer; /* echoes kAkma: wiped when released */
  m5_buf_init(&answer, MAX_ANSWER);
  long status;
  rc = m5ctl_http_perform(&r, &answer, &status, errbuf);
  if (rc < 0) {
    rc = 1;
  } else if (rc > 0) {
    fprintf(stderr, "m5ctl: cannot register at the AAnF %s: %s; is m5-aanf running (--aanf)?\n",
            aanf->url, errbuf);
  } else if (status == 200) {
    rc = check_answer(&answer, akid);
  } else {
    rc = report_refusal(status, &answer);
  }
  m5_buf_wipe_free(&answer);
  free(aanf);
  return rc;
}

/* PUT {m5s-admin}/admin/v1/bindings/{ueSvcId} {"supi": "<digits>"}: 201 created, 200
 * updated; anything else is reported with the problem's detail. */
static int bind_ue(const sub_args_t *a, long long *failed) {
  char body[128];
  int n = snprintf(body, sizeof body, "{\"supi\":\"%s\"}", a->in.supi);
  if (n < 0 || (size_t)n >= sizeof body) return 1; /* a SUPI is at most 15 digits */
  m5_buf_t answer;
  m5_buf_init(&answer, MAX_ANSWER);
  long status;
  int rc =
      m5ctl_admin_request(a->m5s_admin, m5ctl_admin_token_file(a->admin_token), "PUT",
                          BINDINGS_PATH, a->ue_svc_id, body, &answer, &status);
  if (rc == 0 && status != 200 && status != 201)
    rc = m5ctl_admin_refused(status, &answer, "m5s refused the binding of %s", a->ue_svc_id);
  /* failedDeliveries: what was queued for the previous subscriber of a re-bound ID (absent
   * when m5s could not tell yet, see its log) */
  *failed = -1;
  json_t *o = rc == 0 ? json_loadb((const char *)answer.data, answer.len, 0, NULL) : NULL;
  json_t *f = json_object_get(o, "failedDeliveries");
  if (json_is_integer(f)) *failed = (long long)json_integer_value(f);
  json_decref(o);
  m5_buf_free(&answer);
  return rc;
}

int m5ctl_anchorkey_body(const m5ctl_akma_in_t *in, char body[M5CTL_ANCHORKEY_BODY_MAX],
                         size_t *len, char akid[M5_AKMA_AKID_MAX]) {
  uint8_t kakma[M5_AKMA_KEY_LEN], atid[M5_AKMA_KEY_LEN];
  char kakma_hex[KEY_HEX_LEN + 1] = "";
  int rc = m5ctl_akma_in_derive(in, kakma, atid, akid);
  if (rc) goto out;
  rc = 1;
  m5_hex_encode(kakma, sizeof kakma, kakma_hex, sizeof kakma_hex);
  /* Every value is digits, hex, base64url or LDH text: nothing needs JSON escaping. */
  int n = snprintf(body, M5CTL_ANCHORKEY_BODY_MAX,
                   "{\"supi\":\"imsi-%s\",\"aKId\":\"%s\",\"kAkma\":\"%s\"}", in->supi, akid,
                   kakma_hex);
  if (n < 0 || n >= M5CTL_ANCHORKEY_BODY_MAX) {
    m5_wipe(body, M5CTL_ANCHORKEY_BODY_MAX);
    goto out;
  }
  *len = (size_t)n;
  rc = 0;
out:
  m5_wipe(kakma, sizeof kakma);
  m5_wipe(kakma_hex, sizeof kakma_hex);
  return rc;
}

/* Derives K_AKMA and the A-KID, registers them, prints the confirmation line. */
static int add(const sub_args_t *a) {
  char akid[M5_AKMA_AKID_MAX], body[M5CTL_ANCHORKEY_BODY_MAX];
  size_t n = 0;
  int rc = m5ctl_anchorkey_body(&a->in, body, &n, akid);
  if (rc) goto out;
  rc = post(a, body, (size_t)n, akid);
  if (rc == 0) printf("registered supi=%s akid=%s\n", a->in.supi, akid);
  if (rc == 0 && a->ue_svc_id) {
    long long failed;
    rc = bind_ue(a, &failed);
    if (rc == 0 && failed >= 0)
      printf("bound ue_svc_id=%s supi=%s failed_deliveries=%lld\n", a->ue_svc_id, a->in.supi,
             failed);
    else if (rc == 0)
      printf("bound ue_svc_id=%s supi=%s\n", a->ue_svc_id, a->in.supi);
  }
out:
  m5_wipe(body, sizeof body);
  return rc;
}

int m5ctl_subscriber_add(int argc, char **argv) {
  sub_args_t a;
  memset(&a, 0, sizeof a);
  int rc = parse_args(argc, argv, &a);
  if (!rc) {
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
      fputs("m5ctl: cannot initialise libcurl\n", stderr);
      rc = 1;
    } else {
      rc = add(&a);
      curl_global_cleanup();
    }
  }
  m5_wipe(a.in.kausf, sizeof a.in.kausf);
  return rc;
}
