/* Naanf_AKMA body codec (TS 29.535 cl. 6.1.6, TS 29.522 cl. 5.x AKMA data types, TS 29.571
 * ProblemDetails). jansson parses with JSON_REJECT_DUPLICATES: a repeated member could make
 * two readers of one body disagree (which kAkma did we store?), so it is a format error. */
#include "aanf_msg.h"

#include "core/err.h"
#include "crypto/codec.h"
#include "crypto/json_wipe.h"

#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CAUSE_FORMAT "INVALID_MSG_FORMAT"
#define CAUSE_MISSING "MANDATORY_IE_MISSING"
#define CAUSE_INCORRECT "MANDATORY_IE_INCORRECT"
#define CAUSE_OPT_INCORRECT "OPTIONAL_IE_INCORRECT"
#define TITLE_BAD "Bad Request"

/* jansson frees the text of every string it parsed or built (K_AKMA and K_AF in hex among
 * them) with its free hook; wiping each block there means no key text lingers in freed heap,
 * including the lexer's scratch buffers that no caller could reach (crypto/json_wipe.h). */
void aanf_msg_init(void) {
  m5_json_wipe_install();
}

void aanf_problem_set(aanf_problem_t *pb, int status, const char *title, const char *cause,
                      const char *param, const char *fmt, ...) {
  va_list ap;
  pb->status = status;
  pb->title = title;
  pb->cause = cause;
  pb->param = param;
  va_start(ap, fmt);
  vsnprintf(pb->detail, sizeof pb->detail, fmt, ap);
  va_end(ap);
  /* The detail may quote the peer's bytes (jansson's error text does): keep it printable
   * ASCII, so it is valid UTF-8 even when cut mid-character and always encodes as JSON. */
  for (char *c = pb->detail; *c; c++)
    if (*c < 0x20 || *c > 0x7e) *c = '?';
}

static json_t *load_object(const uint8_t *body, size_t len, aanf_problem_t *pb) {
  json_error_t e;
  json_t *root = json_loadb((const char *)body, len, JSON_REJECT_DUPLICATES, &e);
  if (!root) {
    /* jansson's text names the position and what it expected; it can quote a short token
     * of the body, which is the caller's own input and is never logged. */
    aanf_problem_set(pb, 400, TITLE_BAD, CAUSE_FORMAT, NULL,
                     "malformed JSON body: line %d "
                     "column %d: %s",
                     e.line, e.column, e.text);
    return NULL;
  }
  if (!json_is_object(root)) {
    json_decref(root);
    aanf_problem_set(pb, 400, TITLE_BAD, CAUSE_FORMAT, NULL, "the body must be a JSON object");
    return NULL;
  }
  return root;
}

/* The member as a string: M5_ENOENT when absent and optional, else 0 or M5_EINVAL. */
static int get_string(json_t *obj, const char *name, const char *pointer, int mandatory,
                      const char **out, aanf_problem_t *pb) {
  json_t *v = json_object_get(obj, name);
  *out = NULL;
  if (!v) {
    if (!mandatory) return M5_ENOENT;
    aanf_problem_set(pb, 400, TITLE_BAD, CAUSE_MISSING, pointer, "%s is mandatory", name);
    return M5_EINVAL;
  }
  if (!json_is_string(v)) {
    aanf_problem_set(pb, 400, TITLE_BAD, mandatory ? CAUSE_INCORRECT : CAUSE_OPT_INCORRECT, pointer,
                     "%s must be a string", name);
    return M5_EINVAL;
  }
  *out = json_string_value(v);
  return 0;
}

static int all_hex(const char *s) {
  for (; *s; s++)
    if (!((*s >= '0' && *s <= '9') || (*s >= 'a' && *s <= 'f') || (*s >= 'A' && *s <= 'F')))
      return 0;
  return 1;
}

/* SupportedFeatures (TS 29.571): hex digits only. We support no optional feature, so a
 * valid value is accepted and otherwise ignored. */
static int check_supp_feat(json_t *obj, aanf_problem_t *pb) {
  const char *s;
  int rc = get_string(obj, "suppFeat", "/suppFeat", 0, &s, pb);
  if (rc == M5_ENOENT) return 0;
  if (rc != 0) return rc;
  if (!all_hex(s)) {
    aanf_problem_set(pb, 400, TITLE_BAD, CAUSE_OPT_INCORRECT, "/suppFeat",
                     "suppFeat must be a string of hex digits");
    return M5_EINVAL;
  }
  return 0;
}

/* Supi (TS 29.571): we hold IMSI-type SUPIs only, because the AKMA KDF input and the A-KID
 * realm are defined here for IMSIs (TS 33.501 A.7.0); "nai-", "gci-", "gli-" are refused. */
static int parse_supi(json_t *obj, char out[AANF_IMSI_MAX + 1], aanf_problem_t *pb) {
  const char *s;
  int rc = get_string(obj, "supi", "/supi", 1, &s, pb);
  if (rc != 0) return rc;
  if (strncmp(s, "imsi-", 5) != 0) {
    aanf_problem_set(pb, 400, TITLE_BAD, CAUSE_INCORRECT, "/supi",
                     "only IMSI-type SUPIs are supported: expected imsi-<5..15 digits>");
    return M5_EINVAL;
  }
  s += 5;
  size_t n = strlen(s);
  if (n < 5 || n > AANF_IMSI_MAX || strspn(s, "0123456789") != n) {
    aanf_problem_set(pb, 400, TITLE_BAD, CAUSE_INCORRECT, "/supi",
                     "supi must be imsi- followed by 5 to 15 decimal digits");
    return M5_EINVAL;
  }
  memcpy(out, s, n + 1);
  return 0;
}

/* AKId is an NAI (RFC 7542): non-empty, bounded, and no control characters, so that it can
 * be stored, compared and shown safely. Beyond that the AAnF treats it as opaque. */
static int parse_akid(json_t *obj, char out[M5_AKMA_AKID_MAX + 1], aanf_problem_t *pb) {
  const char *s;
  int rc = get_string(obj, "aKId", "/aKId", 1, &s, pb);
  if (rc != 0) return rc;
  size_t n = strlen(s);
  if (n == 0 || n > M5_AKMA_AKID_MAX) {
    aanf_problem_set(pb, 400, TITLE_BAD, CAUSE_INCORRECT, "/aKId", "aKId must hold 1 to %d octets",
                     M5_AKMA_AKID_MAX);
    return M5_EINVAL;
  }
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    if (c < 0x20 || c == 0x7f) {
      aanf_problem_set(pb, 400, TITLE_BAD, CAUSE_INCORRECT, "/aKId",
                       "aKId must not contain control characters");
      return M5_EINVAL;
    }
  }
  memcpy(out, s, n + 1);
  return 0;
}

int aanf_msg_parse_key_info(const uint8_t *body, size_t len, aanf_key_info_t *out,
                            aanf_problem_t *pb) {
  const char *hex;
  size_t n = 0;
  int rc = M5_EINVAL;
  memset(out, 0, sizeof *out);
  json_t *root = load_object(body, len, pb);
  if (!root) return M5_EINVAL;
  /* AkmaKeyInfo is oneOf supi / gpsi; this AAnF keys contexts by SUPI only. */
  int has_supi = json_object_get(root, "supi") != NULL;
  int has_gpsi = json_object_get(root, "gpsi") != NULL;
  if (has_supi && has_gpsi) {
    aanf_problem_set(pb, 400, TITLE_BAD, CAUSE_INCORRECT, "/gpsi",
                     "supi and gpsi are mutually exclusive (oneOf)");
    goto out;
  }
  if (!has_supi && has_gpsi) {
    aanf_problem_set(pb, 400, TITLE_BAD, CAUSE_MISSING, "/supi",
                     "GPSI-keyed contexts are not supported; send supi");
    goto out;
  }
  if (parse_supi(root, out->supi, pb) != 0 || parse_akid(root, out->akid, pb) != 0 ||
      get_string(root, "kAkma", "/kAkma", 1, &hex, pb) != 0)
    goto out;
  if (strlen(hex) != 2 * M5_AKMA_KEY_LEN ||
      m5_hex_decode(hex, out->kakma, sizeof out->kakma, &n) != 0 || n != M5_AKMA_KEY_LEN) {
    aanf_problem_set(pb, 400, TITLE_BAD, CAUSE_INCORRECT, "/kAkma",
                     "kAkma must be %d hex digits (a 256-bit key)", 2 * M5_AKMA_KEY_LEN);
    goto out;
  }
  rc = check_supp_feat(root, pb);
out:
  if (rc != 0) aanf_msg_key_info_wipe(out);
  json_decref(root);
  return rc;
}

int aanf_msg_parse_key_req(const uint8_t *body, size_t len, aanf_key_req_t *out,
                           aanf_problem_t *pb) {
  const char *s;
  int rc = M5_EINVAL;
  memset(out, 0, sizeof *out);
  json_t *root = load_object(body, len, pb);
  if (!root) return M5_EINVAL;
  /* afId carries the AF's FQDN; the Ua* id that completes AF_ID travels in uaSecProtId
   * (architecture §3.4), because raw octets cannot ride in a JSON string. */
  if (get_string(root, "afId", "/afId", 1, &s, pb) != 0) goto out;
  if (m5_akma_fqdn_valid(s) != 0) {
    aanf_problem_set(pb, 400, TITLE_BAD, CAUSE_INCORRECT, "/afId",
                     "afId must be the AF's FQDN (LDH labels, at most %d octets)",
                     M5_AKMA_FQDN_MAX);
    goto out;
  }
  memcpy(out->af_id, s, strlen(s) + 1);
  if (parse_akid(root, out->akid, pb) != 0) goto out;
  int r = get_string(root, "uaSecProtId", "/uaSecProtId", 0, &s, pb);
  if (r == M5_ENOENT) {
    m5_akma_ua_tls13(out->ua);
  } else if (r != 0) {
    goto out;
  } else if (m5_akma_ua_parse_hex(s, out->ua) != 0) {
    aanf_problem_set(pb, 400, TITLE_BAD, CAUSE_OPT_INCORRECT, "/uaSecProtId",
                     "uaSecProtId must be 10 hex digits (TS 33.220 Annex H), e.g. 0100000007");
    goto out;
  }
  json_t *anon = json_object_get(root, "anonInd");
  if (anon && !json_is_boolean(anon)) {
    aanf_problem_set(pb, 400, TITLE_BAD, CAUSE_OPT_INCORRECT, "/anonInd",
                     "anonInd must be a boolean");
    goto out;
  }
  out->anon = anon && json_is_true(anon);
  rc = check_supp_feat(root, pb);
out:
  json_decref(root);
  return rc;
}

int aanf_msg_parse_ctx_remove(const uint8_t *body, size_t len, aanf_ctx_remove_t *out,
                              aanf_problem_t *pb) {
  memset(out, 0, sizeof *out);
  json_t *root = load_object(body, len, pb);
  if (!root) return M5_EINVAL;
  int rc = parse_supi(root, out->supi, pb);
  json_decref(root);
  return rc;
}

void aanf_msg_key_info_wipe(aanf_key_info_t *ki) {
  m5_wipe(ki, sizeof *ki);
}

static int dump(json_t *obj, char **out, size_t *len) {
  if (!obj) return M5_ENOMEM;
  *out = json_dumps(obj, JSON_COMPACT);
  json_decref(obj);
  if (!*out) return M5_ENOMEM;
  *len = strlen(*out);
  return 0;
}

int aanf_msg_problem_json(const aanf_problem_t *pb, char **out, size_t *len) {
  json_t *o = json_object();
  if (!o) return M5_ENOMEM;
  int bad = json_object_set_new(o, "title", json_string(pb->title)) ||
            json_object_set_new(o, "status", json_integer(pb->status)) ||
            json_object_set_new(o, "detail", json_string(pb->detail));
  if (!bad && pb->cause) bad = json_object_set_new(o, "cause", json_string(pb->cause));
  if (!bad && pb->param) {
    json_t *ip = json_pack("[{s:s, s:s}]", "param", pb->param, "reason", pb->detail);
    bad = !ip || json_object_set_new(o, "invalidParams", ip);
  }
  if (bad) {
    json_decref(o);
    return M5_ENOMEM;
  }
  return dump(o, out, len);
}

int aanf_msg_key_info_json(const aanf_key_info_t *ki, char **out, size_t *len) {
  char hex[2 * M5_AKMA_KEY_LEN + 1];
  char supi[5 + AANF_IMSI_MAX + 1];
  snprintf(supi, sizeof supi, "imsi-%s", ki->supi);
  if (m5_hex_encode(ki->kakma, sizeof ki->kakma, hex, sizeof hex) != 0) return M5_EINVAL;
  int rc =
      dump(json_pack("{s:s, s:s, s:s}", "supi", supi, "aKId", ki->akid, "kAkma", hex), out, len);
  m5_wipe(hex, sizeof hex);
  return rc;
}

int aanf_msg_af_key_data_json(const uint8_t kaf[M5_AKMA_KEY_LEN], time_t expiry, const char *supi,
                              char **out, size_t *len) {
  char hex[2 * M5_AKMA_KEY_LEN + 1];
  char when[32];
  char s[5 + AANF_IMSI_MAX + 1];
  if (aanf_msg_rfc3339(expiry, when, sizeof when) != 0) return M5_EINVAL;
  if (m5_hex_encode(kaf, M5_AKMA_KEY_LEN, hex, sizeof hex) != 0) return M5_EINVAL;
  json_t *o;
  if (supi) {
    snprintf(s, sizeof s, "imsi-%s", supi);
    o = json_pack("{s:s, s:s, s:s}", "kaf", hex, "expiry", when, "supi", s);
  } else {
    o = json_pack("{s:s, s:s}", "kaf", hex, "expiry", when);
  }
  int rc = dump(o, out, len);
  m5_wipe(hex, sizeof hex);
  return rc;
}

void aanf_msg_free_secret(char *text, size_t len) {
  if (!text) return;
  m5_wipe(text, len);
  free(text);
}

int aanf_msg_rfc3339(time_t t, char *out, size_t outlen) {
  struct tm tm;
  if (!gmtime_r(&t, &tm)) return M5_ERANGE;
  if (strftime(out, outlen, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0) return M5_ERANGE;
  return 0;
}
