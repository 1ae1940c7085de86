/* MSGin5G-1 body codec (architecture §3.1; member names from TS 29.538 cl. 6.1.6, DateTime
 * from TS 29.571 = RFC 3339 date-time, payload base64 per RFC 4648 §4): the member table, the
 * validators and the parser with its diagnostics. The writer is msg_encode.c, the fast parser
 * of the usual bodies msg_scan.c.
 *
 * One table row per member says its JSON name, its kind, where it lives in m5_msg_t and for
 * which message types it is mandatory or optional; parsing and encoding both walk that table,
 * so renaming a member (TS 24.538 cl. 7 alignment) is a one-line change. */
#include "msg/msg.h"

#include "core/err.h"
#include "msg/msg_int.h"

#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *const msg_type_names[MSG_N_TYPES] = {
    [M5_MSG_REG] = "REG",
    [M5_MSG_DEREG] = "DEREG",
    [M5_MSG_MSG] = "MSG",
    [M5_MSG_MSGRESP] = "MSGRESP",
    [M5_MSG_IMDN] = "IMDN",
    [M5_MSG_SEGREC] = "SEGREC",
    [M5_MSG_SEGCONFIR] = "SEGCONFIR",
    [M5_MSG_TOPICSUB] = "TOPICSUB",
    [M5_MSG_TOPICUNSUB] = "TOPICUNSUB",
};

const char *const msg_prio_names[MSG_N_PRIOS] = {"LOW", "MIDDLE", "HIGH"};


#define F(field) offsetof(m5_msg_t, field), sizeof(((m5_msg_t *)0)->field)
#define ADDRESSED (T(M5_MSG_MSG) | T(M5_MSG_IMDN))
#define SEG (T(M5_MSG_SEGREC) | T(M5_MSG_SEGCONFIR))
#define TOPIC (T(M5_MSG_TOPICSUB) | T(M5_MSG_TOPICUNSUB))

const member_t msg_members[MSG_N_MEMBERS] = {
    {"msgTopics", K_TOPICS, F(topics), TOPIC, 0, 0, 0, 0},
    {"ueSvcId", K_SVC_ID, F(ue_svc_id), T(M5_MSG_REG) | T(M5_MSG_DEREG), 0, 0, 0, 0},
    {"clientProfile", K_OBJECT, F(client_profile_json), 0, T(M5_MSG_REG), 0, 0, 0},
    {"expiry", K_TIME, F(expiry), 0, T(M5_MSG_REG) | T(M5_MSG_TOPICSUB), 0, 0, 0},
    {"oriAddr", K_ADDR, F(ori), ADDRESSED, T(M5_MSG_MSGRESP), 0, 0, 0},
    {"destAddr", K_ADDR, F(dest), ADDRESSED, 0, 0, 0, 0},
    {"msgId", K_MSG_ID, F(msg_id), ADDRESSED | T(M5_MSG_MSGRESP), 0, 0, 0, 0},
    {"appId", K_TEXT, F(app_id), 0, T(M5_MSG_MSG), 0, 0, 0},
    {"delivStReqInd", K_BOOL, F(deliv_st_req), 0, T(M5_MSG_MSG), 0, 0, 0},
    {"payload", K_B64, F(payload), T(M5_MSG_MSG), 0, 0, T(M5_MSG_MSG), 0},
    {"priority", K_PRIO, F(prio), 0, T(M5_MSG_MSG), 0, 0, T(M5_MSG_MSG)},
    {"stoAndFwInd", K_BOOL, F(sto_fwd), 0, T(M5_MSG_MSG), 0, 0, 0},
    {"stoAndFwParams", K_SAF, F(expr_time), 0, T(M5_MSG_MSG), 0, 0, 0},
    {"delivSt", K_TEXT, F(deliv_st), T(M5_MSG_IMDN), 0, 0, 0, 0},
    {"status", K_TEXT, F(status), 0, T(M5_MSG_MSGRESP), 0, 0, 0},
    {"failureCause", K_CAUSE, F(failure_cause), 0, T(M5_MSG_MSGRESP) | T(M5_MSG_IMDN), 0, 0, 0},
    {"segInd", K_CHECKED, 0, 0, 0, T(M5_MSG_MSG), JSON_TRUE, 0, 0},
    {"segParams", K_CHECKED, 0, 0, 0, T(M5_MSG_MSG), JSON_OBJECT, 0, 0},
    {"segId", K_CHECKED, 0, 0, SEG, 0, JSON_STRING, 0, 0},
    {"segNumb", K_CHECKED, 0, 0, 0, SEG, JSON_ARRAY, 0, 0},
};

/* ---- validators ---- */

bool m5_msg_id_valid(const char *id) {
  size_t n = 0;
  for (; id[n]; n++) {
    char c = id[n];
    if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' ||
          c == '_' || c == ':' || c == '-'))
      return false;
    if (n >= M5_MSG_ID_MAX) return false;
  }
  return n > 0;
}

bool m5_msg_svc_id_valid(const char *id) {
  size_t n = 0;
  for (; id[n]; n++) {
    unsigned char c = (unsigned char)id[n];
    if (c < 0x21 || c > 0x7e || n >= M5_MSG_ADDR_MAX) return false;
  }
  return n > 0;
}

/* Length of the valid UTF-8 sequence at s (1-4), 0 if invalid (RFC 3629: no overlongs, no
 * surrogates, nothing above U+10FFFF). */
size_t msg_utf8_seq(const unsigned char *s) {
  unsigned char c = s[0];
  if (c < 0x80) return 1;
  size_t n;
  uint32_t cp;
  if (c >= 0xc2 && c <= 0xdf) {
    n = 2;
    cp = c & 0x1fu;
  } else if (c >= 0xe0 && c <= 0xef) {
    n = 3;
    cp = c & 0x0fu;
  } else if (c >= 0xf0 && c <= 0xf4) {
    n = 4;
    cp = c & 0x07u;
  } else {
    return 0;
  }
  for (size_t i = 1; i < n; i++) {
    if ((s[i] & 0xc0) != 0x80) return 0;
    cp = cp << 6 | (s[i] & 0x3fu);
  }
  if ((n == 3 && cp < 0x800) || (n == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
      (cp >= 0xd800 && cp <= 0xdfff))
    return 0;
  return n;
}

/* 1..max bytes without control characters (the text came through jansson: valid UTF-8). */
bool msg_text_valid(const char *s, size_t max) {
  size_t n = 0;
  for (; s[n]; n++) {
    unsigned char c = (unsigned char)s[n];
    if (c < 0x20 || c == 0x7f || n >= max) return false;
  }
  return n > 0;
}


/* 1..max bytes of UTF-8 without control characters: C0, DEL and C1 (U+0080-U+009F). */
bool msg_cause_valid(const char *s, size_t max) {
  const unsigned char *u = (const unsigned char *)s;
  size_t n = 0;
  while (u[n]) {
    size_t k = msg_utf8_seq(u + n);
    if (!k || u[n] < 0x20 || u[n] == 0x7f || (u[n] == 0xc2 && u[n + 1] < 0xa0) || n + k > max)
      return false;
    n += k;
  }
  return n > 0;
}

bool m5_msg_as_id_valid(const char *id) {
  size_t n = strlen(id);
  return n >= 1 && n <= M5_MSG_AS_ID_MAX &&
         strspn(id, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-") == n;
}

#define NAME_CHARSET "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._:-"
#define NAME_RULE "1-128 characters of A-Z a-z 0-9 . _ : -"

bool m5_msg_name_valid(const char *name) {
  size_t n = strnlen(name, M5_MSG_NAME_MAX + 1);
  return n >= 1 && n <= M5_MSG_NAME_MAX && strspn(name, NAME_CHARSET) == n;
}

bool m5_msg_addr_is_named(const char *addr_type) {
  return !strcmp(addr_type, "GROUP") || !strcmp(addr_type, "BC") || !strcmp(addr_type, "TOPIC");
}

const char *m5_msg_type_name(m5_msg_type_t t) {
  return (size_t)t < MSG_N_TYPES ? msg_type_names[t] : "?";
}

const char *m5_msg_prio_name(m5_msg_prio_t p) {
  return (size_t)p < MSG_N_PRIOS ? msg_prio_names[p] : "?";
}

/* ---- base64, RFC 4648 §4: the standard alphabet with padding, nothing else accepted (the
 * encoder's side is in msg_encode.c) ---- */

/* The value of each base64 character, -1 for any other byte. */
static const int8_t b64_values[256] = {
    -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
    -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
    -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, 62, -1, -1, -1, 63,
    52, 53, 54, 55, 56, 57, 58, 59, 60, 61, -1, -1, -1, -1, -1, -1,
    -1, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14,
    15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, -1, -1, -1, -1, -1,
    -1, 26, 27, 28, 29, 30, 31, 32, 33, 34, 35, 36, 37, 38, 39, 40,
    41, 42, 43, 44, 45, 46, 47, 48, 49, 50, 51, -1, -1, -1, -1, -1,
    -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
    -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
    -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
    -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
    -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
    -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
    -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
    -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
};

static int b64_value(unsigned char c) {
  return b64_values[c];
}

/* Strict: length a multiple of 4, '=' only as the last one or two characters, and the unused
 * bits before the padding zero (RFC 4648 §3.5), so every accepted text has one encoding. */
int msg_b64_decode(const char *in, size_t len, uint8_t **out, size_t *outn) {
  *out = NULL;
  *outn = 0;
  if (len % 4) return M5_EINVAL;
  size_t pad = 0;
  if (len && in[len - 1] == '=') pad = in[len - 2] == '=' ? 2 : 1;
  size_t n = len / 4 * 3 - pad;
  uint8_t *buf = malloc(n ? n : 1);
  if (!buf) return M5_ENOMEM;
  size_t o = 0, i = 0;
  /* Every quad but the last: four characters, three bytes, no padding allowed. */
  for (; i + 4 < len; i += 4) {
    int a = b64_values[(unsigned char)in[i]], b = b64_values[(unsigned char)in[i + 1]],
        c = b64_values[(unsigned char)in[i + 2]], d = b64_values[(unsigned char)in[i + 3]];
    if ((a | b | c | d) < 0) goto bad;
    uint32_t w = (uint32_t)a << 18 | (uint32_t)b << 12 | (uint32_t)c << 6 | (uint32_t)d;
    buf[o++] = (uint8_t)(w >> 16);
    buf[o++] = (uint8_t)(w >> 8);
    buf[o++] = (uint8_t)w;
  }
  for (; i < len; i += 4) {
    int v[4];
    bool last = i + 4 == len;
    for (size_t j = 0; j < 4; j++) {
      if (last && j >= 4 - pad) {
        v[j] = 0;
        continue;
      }
      if ((v[j] = b64_value((unsigned char)in[i + j])) < 0) goto bad;
    }
    uint32_t w = (uint32_t)v[0] << 18 | (uint32_t)v[1] << 12 | (uint32_t)v[2] << 6 | (uint32_t)v[3];
    if (last && ((pad == 1 && (w & 0xff)) || (pad == 2 && (w & 0xffff)))) goto bad;
    buf[o++] = (uint8_t)(w >> 16);
    if (o < n) buf[o++] = (uint8_t)(w >> 8);
    if (o < n) buf[o++] = (uint8_t)w;
  }
  *out = buf;
  *outn = n;
  return 0;
bad:
  free(buf);
  return M5_EINVAL;
}

/* ---- RFC 3339 date-time -> Unix seconds: parsed by hand (offsets, no TZ); msg_encode.c
 * prints them as UTC ---- */

static int64_t days_from_civil(int64_t y, int64_t m, int64_t d) {
  y -= m <= 2;
  int64_t era = (y >= 0 ? y : y - 399) / 400;
  int64_t yoe = y - era * 400;
  int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
  int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + doe - 719468;
}

/* Reads exactly n digits. */
static bool digits(const char **p, int n, int64_t *out) {
  int64_t v = 0;
  for (int i = 0; i < n; i++) {
    char c = (*p)[i];
    if (c < '0' || c > '9') return false;
    v = v * 10 + (c - '0');
  }
  *p += n;
  *out = v;
  return true;
}

/* "2025-06-01T12:00:00Z", "2025-06-01t12:00:00.250+02:00": fractions are truncated, a leap
 * second counts as the next second. */
int msg_time_parse(const char *s, int64_t *out) {
  static const int mdays[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  const char *p = s;
  int64_t y, mo, d, h, mi, sec, oh = 0, om = 0;
  if (!digits(&p, 4, &y) || *p++ != '-' || !digits(&p, 2, &mo) || *p++ != '-' ||
      !digits(&p, 2, &d) || (*p != 'T' && *p != 't'))
    return M5_EINVAL;
  p++;
  if (!digits(&p, 2, &h) || *p++ != ':' || !digits(&p, 2, &mi) || *p++ != ':' ||
      !digits(&p, 2, &sec))
    return M5_EINVAL;
  if (*p == '.') {
    if (p[1] < '0' || p[1] > '9') return M5_EINVAL;
    for (p++; *p >= '0' && *p <= '9'; p++) {
    }
  }
  int sign = 0;
  if (*p == 'Z' || *p == 'z') {
    p++;
  } else if (*p == '+' || *p == '-') {
    sign = *p++ == '+' ? 1 : -1;
    if (!digits(&p, 2, &oh) || *p++ != ':' || !digits(&p, 2, &om) || oh > 23 || om > 59)
      return M5_EINVAL;
  } else {
    return M5_EINVAL;
  }
  if (*p) return M5_EINVAL;
  bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
  if (mo < 1 || mo > 12 || d < 1 || d > mdays[mo - 1] || (mo == 2 && d == 29 && !leap) || h > 23 ||
      mi > 59 || sec > 60)
    return M5_EINVAL;
  int64_t t = days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + sec;
  *out = t - sign * (oh * 3600 + om * 60);
  return 0;
}

/* ---- parsing ---- */

__attribute__((format(printf, 3, 4))) static int fail(char *diag, size_t diag_len, const char *fmt,
                                                      ...) {
  if (diag && diag_len) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(diag, diag_len, fmt, ap);
    va_end(ap);
  }
  return M5_EINVAL;
}

static const char *json_type_word(json_type t) {
  switch (t) {
  case JSON_OBJECT:
    return "an object";
  case JSON_ARRAY:
    return "an array";
  case JSON_STRING:
    return "a string";
  case JSON_TRUE:
  case JSON_FALSE:
    return "a boolean";
  default:
    return "a number";
  }
}

/* Copies a string member into a char[cap] after the kind's check. */
static int get_text(json_t *v, const char *name, kind_t kind, char *dst, size_t cap, char *diag,
                    size_t dl) {
  if (!json_is_string(v)) return fail(diag, dl, "%s: expected a string", name);
  const char *s = json_string_value(v);
  bool ok;
  const char *what;
  switch (kind) {
  case K_MSG_ID:
    ok = m5_msg_id_valid(s);
    what = "expected 1-64 characters of A-Z a-z 0-9 . _ : -";
    break;
  case K_SVC_ID:
    ok = m5_msg_svc_id_valid(s);
    what = "expected 1-128 printable characters without spaces";
    break;
  case K_CAUSE:
    ok = msg_cause_valid(s, cap - 1);
    what = NULL;
    if (!ok)
      return fail(diag, dl, "%s: expected 1-%zu bytes of UTF-8 text without control characters",
                  name, cap - 1);
    break;
  default:
    ok = msg_text_valid(s, cap - 1);
    what = NULL;
    break;
  }
  if (!ok) {
    if (what) return fail(diag, dl, "%s: %s", name, what);
    return fail(diag, dl, "%s: expected 1-%zu characters without control characters", name,
                cap - 1);
  }
  strcpy(dst, s);
  return 0;
}

static int get_addr(json_t *v, const char *name, m5_msg_addr_t *a, char *diag, size_t dl) {
  if (!json_is_object(v)) return fail(diag, dl, "%s: expected an object", name);
  json_t *t = json_object_get(v, "addrType"), *x = json_object_get(v, "addr");
  char sub[64];
  if (!t) return fail(diag, dl, "%s.addrType: missing", name);
  snprintf(sub, sizeof sub, "%s.addrType", name);
  if (!json_is_string(t)) return fail(diag, dl, "%s: expected a string", sub);
  /* Open enum: any word is kept, as long as it fits. */
  if (!m5_msg_svc_id_valid(json_string_value(t)) || json_string_length(t) >= sizeof a->type)
    return fail(diag, dl, "%s: expected a word of 1-%zu characters such as UE or AS", sub,
                sizeof a->type - 1);
  strcpy(a->type, json_string_value(t));
  if (!x) return fail(diag, dl, "%s.addr: missing", name);
  snprintf(sub, sizeof sub, "%s.addr", name);
  int rc = get_text(x, sub, K_SVC_ID, a->addr, sizeof a->addr, diag, dl);
  if (!rc && m5_msg_addr_is_named(a->type) && !m5_msg_name_valid(a->addr))
    return fail(diag, dl, "%s: expected a %s name of " NAME_RULE, sub, a->type);
  return rc;
}

/* msgTopics: an array of 1..M5_MSG_TOPICS_MAX names, no two equal (a duplicate is a sender's
 * mistake, and refusing it keeps "one entry, one subscription" for the server). */
static int get_topics(json_t *v, const char *name, m5_msg_t *m, char *diag, size_t dl) {
  if (!json_is_array(v)) return fail(diag, dl, "%s: expected an array", name);
  size_t n = json_array_size(v);
  if (!n) return fail(diag, dl, "%s: empty (expected 1-%d topic names)", name, M5_MSG_TOPICS_MAX);
  if (n > M5_MSG_TOPICS_MAX)
    return fail(diag, dl, "%s: %zu topics, at most %d in one request", name, n,
                M5_MSG_TOPICS_MAX);
  m5_msg_name_t *t = calloc(n, sizeof *t);
  if (!t) return M5_ENOMEM;
  m->topics = t; /* m5_msg_free releases it, also when an entry below is refused */
  for (size_t i = 0; i < n; i++) {
    json_t *e = json_array_get(v, i);
    if (!json_is_string(e)) return fail(diag, dl, "%s[%zu]: expected a string", name, i);
    const char *s = json_string_value(e);
    if (json_string_length(e) != strlen(s) || !m5_msg_name_valid(s))
      return fail(diag, dl, "%s[%zu]: expected a topic name of " NAME_RULE, name, i);
    for (size_t j = 0; j < i; j++)
      if (!strcmp(t[j], s)) return fail(diag, dl, "%s[%zu]: duplicate of %s[%zu]", name, i, name, j);
    strcpy(t[i], s);
    m->n_topics = i + 1;
  }
  return 0;
}

static int get_member(const member_t *mb, json_t *v, m5_msg_t *m, char *diag, size_t dl) {
  char *field = (char *)m + mb->off;
  switch (mb->kind) {
  case K_SVC_ID:
  case K_MSG_ID:
  case K_TEXT:
  case K_CAUSE:
    return get_text(v, mb->name, mb->kind, field, mb->cap, diag, dl);
  case K_ADDR:
    return get_addr(v, mb->name, (m5_msg_addr_t *)(void *)field, diag, dl);
  case K_B64: {
    if (!json_is_string(v)) return fail(diag, dl, "%s: expected a string", mb->name);
    int rc = msg_b64_decode(json_string_value(v), json_string_length(v), &m->payload, &m->payload_len);
    if (rc == M5_ENOMEM) return rc;
    if (rc) return fail(diag, dl, "%s: not base64 (RFC 4648 §4, with padding)", mb->name);
    return 0;
  }
  case K_BOOL:
    if (!json_is_boolean(v)) return fail(diag, dl, "%s: expected true or false", mb->name);
    *(bool *)(void *)field = json_is_true(v);
    return 0;
  case K_PRIO: {
    if (!json_is_string(v)) return fail(diag, dl, "%s: expected a string", mb->name);
    const char *s = json_string_value(v);
    /* Open enum: a value we do not know is accepted and handled as the default. */
    m->prio = M5_PRIO_MIDDLE;
    for (size_t i = 0; i < MSG_N_PRIOS; i++)
      if (!strcmp(s, msg_prio_names[i])) m->prio = (m5_msg_prio_t)i;
    return 0;
  }
  case K_TIME: {
    int64_t t;
    if (!json_is_string(v) || msg_time_parse(json_string_value(v), &t) || t <= 0)
      return fail(diag, dl, "%s: expected an RFC 3339 date-time after 1970", mb->name);
    *(int64_t *)(void *)field = t;
    return 0;
  }
  case K_SAF: {
    if (!json_is_object(v)) return fail(diag, dl, "%s: expected an object", mb->name);
    json_t *e = json_object_get(v, "exprTime");
    int64_t t;
    if (e && (!json_is_string(e) || msg_time_parse(json_string_value(e), &t) || t <= 0))
      return fail(diag, dl, "%s.exprTime: expected an RFC 3339 date-time after 1970", mb->name);
    if (e) m->expr_time = t;
    return 0;
  }
  case K_OBJECT: {
    if (!json_is_object(v)) return fail(diag, dl, "%s: expected an object", mb->name);
    char *text = json_dumps(v, JSON_COMPACT);
    if (!text) return M5_ENOMEM;
    *(char **)(void *)field = text;
    return 0;
  }
  case K_TOPICS:
    return get_topics(v, mb->name, m, diag, dl);
  case K_CHECKED:
    if (mb->jtype == JSON_TRUE ? !json_is_boolean(v) : json_typeof(v) != mb->jtype)
      return fail(diag, dl, "%s: expected %s", mb->name, json_type_word(mb->jtype));
    return 0;
  }
  return M5_EINVAL;
}

/* jansson reports a duplicate as "duplicate object key near '\"msgId\"'" (2.14): name the key. */
static int duplicate_diag(const json_error_t *e, char *diag, size_t dl) {
  const char *q = strstr(e->text, "near '\"");
  if (q) {
    q += 7;
    size_t n = strcspn(q, "\"");
    return fail(diag, dl, "body: duplicate key '%.*s'", (int)(n > 64 ? 64 : n), q);
  }
  return fail(diag, dl, "body: duplicate key");
}

/* The member whose string value holds byte `pos` of a body that is JSON up to there (jansson
 * stops in a string it cannot decode: the error position is inside it or just after its
 * closing quote): "oriAddr.addr" into out, or "" when it is not inside a member's value (a key,
 * an array, the top level). Only keys of nested objects, at most 3 deep, are named. */
static void member_at(const uint8_t *b, size_t len, size_t pos, char *out, size_t outlen) {
  enum { DEPTH = 3 };
  char keys[DEPTH][40];
  int depth = 0;            /* of the object or array we are in (0 = top) */
  bool in_obj[DEPTH + 1];   /* per depth: an object (keys) or an array */
  bool want_key = false;    /* in an object, the next string is a key */
  int str_is = 0;           /* the last string started: 1 key, 2 a member's value, 3 other */
  int str_depth = 0;
  out[0] = '\0';
  in_obj[0] = false;
  for (size_t i = 0; i < len && i < pos; i++) {
    uint8_t c = b[i];
    if (c == '"') {
      size_t start = ++i;
      while (i < len && i < pos && b[i] != '"')
        i += b[i] == '\\' ? 2 : 1;
      str_depth = depth;
      if (want_key && in_obj[depth]) {
        str_is = 1;
        if (depth >= 1 && depth <= DEPTH) {
          size_t n = (i < len ? i : len) - start;
          snprintf(keys[depth - 1], sizeof keys[0], "%.*s", (int)(n < 39 ? n : 39),
                   (const char *)b + start);
        }
        want_key = false;
      } else {
        str_is = depth >= 1 && in_obj[depth] ? 2 : 3;
      }
      continue;
    }
    if (c == '{' || c == '[') {
      if (depth >= DEPTH) return; /* deeper than we name */
      in_obj[++depth] = c == '{';
      want_key = c == '{';
    } else if (c == '}' || c == ']') {
      if (depth > 0) depth--;
      want_key = false;
    } else if (c == ',') {
      want_key = in_obj[depth];
    }
  }
  if (str_is != 2 || str_depth < 1) return;
  size_t o = 0;
  for (int d = 0; d < str_depth && o < outlen; d++) {
    if (!in_obj[d + 1]) return; /* inside an array: no member name */
    int n = snprintf(out + o, outlen - o, "%s%s", d ? "." : "", keys[d]);
    if (n < 0) return;
    o += (size_t)n;
  }
}

/* The diagnostic of a body jansson refused: a duplicate key, or text that is not UTF-8 (or a
 * \u0000 or an unpaired surrogate escape) named by the member holding it; else "not JSON". */
static int load_diag(const uint8_t *body, size_t len, const json_error_t *e, char *diag,
                     size_t dl) {
  enum json_error_code code = json_error_code(e);
  if (code == json_error_duplicate_key) return duplicate_diag(e, diag, dl);
  const char *what = code == json_error_invalid_utf8       ? "not valid UTF-8"
                     : code == json_error_null_character   ? "contains \\u0000"
                     : strstr(e->text, "invalid Unicode ") ? "an invalid \\u escape (a lone surrogate)"
                                                           : NULL;
  if (what) {
    char name[128];
    member_at(body, len, e->position > 0 ? (size_t)e->position : 0, name, sizeof name);
    return fail(diag, dl, "%s: %s", name[0] ? name : "body", what);
  }
  return fail(diag, dl, "body: not JSON (%s at offset %d)", e->text, e->position);
}

static int parse_members(json_t *root, m5_msg_t *out, bool ts, char *diag, size_t diag_len);
static int load_diag(const uint8_t *body, size_t len, const json_error_t *e, char *diag,
                     size_t dl);

static int tree_parse(const uint8_t *body, size_t len, m5_msg_t *out, char *diag, size_t diag_len) {
  memset(out, 0, sizeof *out);
  out->prio = M5_PRIO_MIDDLE;
  if (diag && diag_len) diag[0] = '\0';
  if (!body || !len) return fail(diag, diag_len, "body: empty");
  json_error_t err;
  json_t *root =
      json_loadb((const char *)body, len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &err);
  if (!root) return load_diag(body, len, &err, diag, diag_len);
  int rc;
  if (!json_is_object(root)) {
    rc = fail(diag, diag_len, "body: not a JSON object");
    goto out;
  }
  json_t *t = json_object_get(root, "msgType");
  if (!t) {
    rc = fail(diag, diag_len, "msgType: missing");
    goto out;
  }
  if (!json_is_string(t)) {
    rc = fail(diag, diag_len, "msgType: expected a string");
    goto out;
  }
  size_t ti = 0;
  while (ti < MSG_N_TYPES && strcmp(msg_type_names[ti], json_string_value(t)))
    ti++;
  if (ti == MSG_N_TYPES) {
    rc = fail(diag, diag_len, "msgType: unknown value '%.32s'", json_string_value(t));
    goto out;
  }
  out->type = (m5_msg_type_t)ti;
  rc = parse_members(root, out, false, diag, diag_len);
out:
  json_decref(root);
  if (rc) m5_msg_free(out);
  return rc;
}

/* The members of type out->type from root, by the table (ts: the TS 29.538 form). */
static int parse_members(json_t *root, m5_msg_t *out, bool ts, char *diag, size_t diag_len) {
  unsigned ti = (unsigned)out->type;
  int rc;
  for (size_t i = 0; i < MSG_N_MEMBERS; i++) {
    const member_t *mb = &msg_members[i];
    if (!((mb->mandatory | mb->optional) & T(ti))) continue;
    json_t *v = json_object_get(root, mb->name);
    if (!v) {
      if ((mb->mandatory & T(ti)) && !(ts && (mb->ts_optional & T(ti))))
        return fail(diag, diag_len, "%s: missing", mb->name);
      continue;
    }
    if ((rc = get_member(mb, v, out, diag, diag_len))) return rc;
  }
  out->sto_fwd_given = json_object_get(root, "stoAndFwInd") != NULL;
  return 0;
}

static int tree_parse_as(const uint8_t *body, size_t len, m5_msg_type_t type, m5_msg_t *out,
                         char *diag, size_t diag_len) {
  memset(out, 0, sizeof *out);
  out->prio = M5_PRIO_MIDDLE;
  out->type = type;
  if (diag && diag_len) diag[0] = '\0';
  if ((size_t)type >= MSG_N_TYPES) return fail(diag, diag_len, "body: unknown type");
  if (!body || !len) return fail(diag, diag_len, "body: empty");
  json_error_t err;
  json_t *root = json_loadb((const char *)body, len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &err);
  if (!root) return load_diag(body, len, &err, diag, diag_len);
  int rc = json_is_object(root) ? parse_members(root, out, true, diag, diag_len)
                                : fail(diag, diag_len, "body: not a JSON object");
  json_decref(root);
  if (rc) m5_msg_free(out);
  return rc;
}

int msg_parse_tree(const uint8_t *body, size_t len, int type, m5_msg_t *out, char *diag,
                   size_t diag_len) {
  return type < 0 ? tree_parse(body, len, out, diag, diag_len)
                  : tree_parse_as(body, len, (m5_msg_type_t)type, out, diag, diag_len);
}

/* The usual body is read by msg_scan.c without building a tree: jansson allocates a node per
 * value and a string per member (and frees them through the wiping hook, json_wipe.h), about
 * 50,000 instructions for a 64-byte MSG, a quarter of the server's whole cost per message
 * (docs/benchmarks.md). Anything else, every refusal included, goes through jansson, which
 * gives the diagnostic: the scan only ever says "accepted, with this result" or "ask jansson". */
static int parse(const uint8_t *body, size_t len, int type, m5_msg_t *out, char *diag,
                 size_t diag_len) {
  if (body && len && (type < 0 || (size_t)type < MSG_N_TYPES)) {
    memset(out, 0, sizeof *out);
    out->prio = M5_PRIO_MIDDLE;
    if (type >= 0) out->type = (m5_msg_type_t)type;
    if (msg_scan_parse(body, len, type, type >= 0, out) == 0) {
      if (diag && diag_len) diag[0] = '\0';
      return 0;
    }
    m5_msg_free(out);
  }
  return msg_parse_tree(body, len, type, out, diag, diag_len);
}

int m5_msg_parse(const uint8_t *body, size_t len, m5_msg_t *out, char *diag, size_t diag_len) {
  return parse(body, len, -1, out, diag, diag_len);
}

int m5_msg_parse_as(const uint8_t *body, size_t len, m5_msg_type_t type, m5_msg_t *out,
                    char *diag, size_t diag_len) {
  return parse(body, len, (int)type, out, diag, diag_len);
}

void m5_msg_free(m5_msg_t *m) {
  if (!m) return;
  free(m->payload);
  m->payload = NULL;
  m->payload_len = 0;
  free(m->client_profile_json);
  m->client_profile_json = NULL;
  free(m->topics);
  m->topics = NULL;
  m->n_topics = 0;
}
