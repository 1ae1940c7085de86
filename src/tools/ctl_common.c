/* m5ctl: what several commands share. The getopt error wording; the ID rule of asSvcId and
 * gwId; the HTTP requests (libcurl) and the calls of m5s's management API (docs/admin-api.md)
 * with its bearer token and their one-line reports; and the subscriber inputs of the AKMA commands (akma derive,
 * subscriber add) with their validation and the derivation of K_AKMA and the A-KID (TS 33.535
 * Annex A.2, A.3; A-KID text form of architecture §4), so both commands accept the same
 * arguments and agree on the keys. */
#include "ctl.h"

#include "msg/msg.h"

#include "core/err.h"
#include "crypto/codec.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

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

int m5ctl_id_valid(const char *id) {
  return m5_msg_as_id_valid(id); /* the rule m5s applies */
}

/* ---- HTTP ---- */

#define TIMEOUT_S 10L

static size_t on_data(char *p, size_t size, size_t n, void *arg) {
  return m5_buf_append(arg, p, size * n) == 0 ? size * n : 0;
}

/* Appends line to list; on failure keeps list and sets *oom. */
static struct curl_slist *add_header(struct curl_slist *list, const char *line, int *oom) {
  struct curl_slist *l = line && !*oom ? curl_slist_append(list, line) : list;
  if (!l) *oom = 1;
  return l ? l : list;
}

/* Frees a header list, wiping each line first: libcurl keeps its own copy of the
 * "Authorization: Bearer <management token>" line, which must not outlive the request. */
void m5ctl_headers_free(struct curl_slist *list) {
  for (struct curl_slist *l = list; l; l = l->next)
    if (l->data) m5_wipe(l->data, strlen(l->data));
  curl_slist_free_all(list);
}

int m5ctl_http_perform(const m5ctl_request_t *r, m5_buf_t *answer, long *status,
                       char errbuf[CURL_ERROR_SIZE]) {
  CURL *c = curl_easy_init();
  int oom = !c;
  struct curl_slist *hdrs = add_header(NULL, r->accept, &oom);
  hdrs = add_header(hdrs, r->authorization, &oom);
  if (r->body) {
    hdrs = add_header(hdrs, "Content-Type: application/json", &oom);
    /* No 100-continue round trip before a larger body: the peer answers the request anyway. */
    hdrs = add_header(hdrs, "Expect:", &oom);
  }
  if (oom) {
    fputs("m5ctl: cannot set up libcurl: out of memory\n", stderr);
    m5ctl_headers_free(hdrs);
    curl_easy_cleanup(c);
    return -1;
  }
  errbuf[0] = '\0';
  curl_easy_setopt(c, CURLOPT_URL, r->url);
  curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, r->protocols);
  if (r->method) curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, r->method);
  if (r->cert) {
    curl_easy_setopt(c, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_2TLS);
    curl_easy_setopt(c, CURLOPT_SSLVERSION, (long)CURL_SSLVERSION_TLSv1_2);
    curl_easy_setopt(c, CURLOPT_SSLCERT, r->cert);
    curl_easy_setopt(c, CURLOPT_SSLKEY, r->key);
    curl_easy_setopt(c, CURLOPT_CAINFO, r->ca);
  }
  curl_easy_setopt(c, CURLOPT_TIMEOUT, TIMEOUT_S);
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  if (hdrs) curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);
  if (r->body) {
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, r->body);
    curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)r->len);
  }
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, answer);
  curl_easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf);
  CURLcode cc = curl_easy_perform(c);
  *status = 0;
  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, status);
  m5ctl_headers_free(hdrs);
  curl_easy_cleanup(c);
  if (cc == CURLE_OK) return 0;
  if (!errbuf[0]) snprintf(errbuf, CURL_ERROR_SIZE, "%s", curl_easy_strerror(cc));
  return 1;
}

/* ---- m5s's management API ---- */

int m5ctl_m5s_admin_option(const char *arg, const char **url) {
  if ((strncmp(arg, "http://", 7) != 0 || arg[7] == '\0') &&
      (strncmp(arg, "https://", 8) != 0 || arg[8] == '\0'))
    return m5ctl_usage_error("--m5s-admin: expected an http:// URL such as %s, got '%s'",
                             M5CTL_DEFAULT_M5S_ADMIN, arg);
  *url = arg;
  return 0;
}

/* Appends text percent-encoded as one URL path segment (RFC 3986: all but unreserved). */
static int append_segment(m5_buf_t *b, const char *text) {
  static const char hex[] = "0123456789ABCDEF";
  for (const unsigned char *p = (const unsigned char *)text; *p; p++) {
    int unreserved = (*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') ||
                     (*p >= '0' && *p <= '9') || *p == '-' || *p == '.' || *p == '_' || *p == '~';
    char esc[3] = {'%', hex[*p >> 4], hex[*p & 15]};
    if (m5_buf_append(b, unreserved ? (const char *)p : esc, unreserved ? 1 : 3) != 0)
      return M5_ERANGE;
  }
  return 0;
}

const char *m5ctl_admin_token_file(const char *opt) {
  const char *env = getenv(M5CTL_ADMIN_TOKEN_ENV);
  return opt ? opt : env && env[0] ? env : M5CTL_DEFAULT_ADMIN_TOKEN;
}

int m5ctl_admin_auth_header(const char *file, char *line, size_t cap) {
  char buf[M5CTL_TOKEN_MAX + 2];
  const char *why = NULL;
  int fd = open(file, O_RDONLY | O_CLOEXEC);
  ssize_t n = fd < 0 ? -1 : read(fd, buf, sizeof buf);
  if (n < 0) why = strerror(errno);
  if (fd >= 0) close(fd);
  size_t len = n > 0 ? (size_t)n : 0;
  while (!why && len && (buf[len - 1] == '\n' || buf[len - 1] == '\r'))
    len--;
  for (size_t i = 0; !why && i < len; i++)
    if (buf[i] <= 0x20 || buf[i] >= 0x7f) why = "not a token (one line without spaces)";
  if (!why && (len == 0 || len > M5CTL_TOKEN_MAX)) why = "not a token (one line of 64 hex digits)";
  int w = why ? 0 : snprintf(line, cap, "Authorization: Bearer %.*s", (int)len, buf);
  m5_wipe(buf, sizeof buf);
  if (!why && (w < 0 || (size_t)w >= cap)) why = "too long";
  if (!why) return 0;
  fprintf(stderr,
          "m5ctl: cannot read admin token %s: %s; start m5s once or pass --admin-token FILE\n",
          file, why);
  return 1;
}

int m5ctl_admin_url(const char *admin, const char *path, const char *segment, m5_buf_t *url) {
  size_t base = strlen(admin);
  while (base > 8 && admin[base - 1] == '/')
    base--;
  if (m5_buf_append(url, admin, base) != 0 || m5_buf_append(url, path, strlen(path)) != 0 ||
      (segment && append_segment(url, segment) != 0) || m5_buf_append(url, "", 1) != 0)
    return M5_ERANGE;
  return 0;
}

int m5ctl_admin_request(const char *admin, const char *token_file, const char *method,
                        const char *path, const char *segment, const char *body,
                        m5_buf_t *answer, long *status) {
  char errbuf[CURL_ERROR_SIZE], auth[M5CTL_AUTH_LINE_MAX];
  if (token_file && m5ctl_admin_auth_header(token_file, auth, sizeof auth) != 0) return 1;
  m5_buf_t url;
  m5_buf_init(&url, 4096);
  if (m5ctl_admin_url(admin, path, segment, &url) != 0) {
    m5_buf_free(&url);
    m5_wipe(auth, sizeof auth);
    return m5ctl_usage_error("--m5s-admin: the URL is too long");
  }
  const m5ctl_request_t r = {.url = (const char *)url.data,
                             .protocols = "http,https",
                             .method = method,
                             .accept = "Accept: application/json, application/problem+json",
                             .authorization = token_file ? auth : NULL,
                             .body = body,
                             .len = body ? strlen(body) : 0};
  int rc = m5ctl_http_perform(&r, answer, status, errbuf);
  if (rc > 0)
    fprintf(stderr, "m5ctl: cannot reach the m5s admin API %s: %s; is m5s running (--m5s-admin)?\n",
            (const char *)url.data, errbuf);
  m5_buf_free(&url);
  m5_wipe(auth, sizeof auth);
  return rc ? 1 : 0;
}

/* Appends peer text to b: control characters and non-ASCII as '?'. */
static void put_text(m5_buf_t *b, const char *s) {
  for (; *s; s++) {
    char c = *s >= 0x20 && *s < 0x7f ? *s : '?';
    m5_buf_append(b, &c, 1); /* a full buffer cuts the line short */
  }
}

void m5ctl_admin_problem_text(long status, const m5_buf_t *answer, char *out, size_t cap) {
  json_t *pd = json_loadb((const char *)answer->data, answer->len, 0, NULL);
  const char *detail = json_string_value(json_object_get(pd, "detail"));
  json_t *bad = json_array_get(json_object_get(pd, "invalidParams"), 0);
  const char *param = json_string_value(json_object_get(bad, "param"));
  const char *reason = json_string_value(json_object_get(bad, "reason"));
  m5_buf_t b;
  m5_buf_init(&b, cap > 1 ? cap - 1 : 1); /* max 0 would mean no bound */
  m5_buf_printf(&b, "%ld ", status);
  put_text(&b, detail ? detail : "(no problem details)");
  if (param) {
    put_text(&b, " (");
    put_text(&b, param);
    if (reason) put_text(&b, ": ");
    put_text(&b, reason ? reason : "");
    put_text(&b, ")");
  }
  if (cap > 0) snprintf(out, cap, "%.*s", (int)b.len, b.data ? (const char *)b.data : "");
  m5_buf_free(&b);
  json_decref(pd);
}

int m5ctl_admin_refused(long status, const m5_buf_t *answer, const char *fmt, ...) {
  char text[1024];
  m5ctl_admin_problem_text(status, answer, text, sizeof text);
  va_list ap;
  va_start(ap, fmt);
  fputs("m5ctl: ", stderr);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fprintf(stderr, ": %s", text);
  if (status == 401) fputs("; is --admin-token the token file of this m5s?", stderr);
  fputc('\n', stderr);
  return 1;
}

/* ---- AKMA inputs ---- */

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
