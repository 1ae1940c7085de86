/* MSGin5G-1 body codec, the encoding side (m5_msg_encode, m5_msg_encode_as; architecture
 * §3.1, member names from TS 29.538 cl. 6.1.6): walks msg.c's member table and writes each
 * member m5_msg_t carries, checked by the same rules the parser applies (what we send, we
 * would accept). DateTime as RFC 3339 in UTC (TS 29.571), the payload as padded base64
 * (RFC 4648 §4).
 *
 * Written directly as compact JSON text, in table order after msgType (the output jansson's
 * json_dumps(JSON_COMPACT) gave for the same members, byte for byte). Not through jansson:
 * building and dumping a json_t tree cost about 18,000 instructions per body, a tenth of the
 * server's whole budget per message (docs/benchmarks.md); this writer needs a few hundred.
 * Every value is checked before it is written, exactly as before. */
#include "msg/msg.h"

#include "core/err.h"
#include "msg/msg_int.h"

#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char b64_alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/* t as RFC 3339 date-time in UTC; M5_ERANGE for t <= 0 or after 9999-12-31T23:59:59Z. */
static int time_format(int64_t t, char out[32]) {
  if (t <= 0 || t > 253402300799) return M5_ERANGE; /* 9999-12-31T23:59:59Z */
  time_t tt = (time_t)t;
  struct tm tm;
  if (!gmtime_r(&tt, &tm) || strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0) return M5_ERANGE;
  return 0;
}


typedef struct {
  char *p;
  size_t len, cap;
  int err;          /* first error: M5_ENOMEM */
  int sto_fwd_always; /* TS 29.538 form: stoAndFwInd is mandatory, written even when false */
} jw_t;

static void jw_put(jw_t *w, const char *s, size_t n) {
  if (w->err) return;
  if (n > SIZE_MAX / 2 - w->len - 1) {
    w->err = M5_ENOMEM;
    return;
  }
  if (w->len + n + 1 > w->cap) {
    size_t ncap = w->cap ? w->cap : 256;
    while (ncap < w->len + n + 1) ncap *= 2;
    char *np = realloc(w->p, ncap);
    if (!np) {
      w->err = M5_ENOMEM;
      return;
    }
    w->p = np;
    w->cap = ncap;
  }
  if (s) memcpy(w->p + w->len, s, n);
  w->len += n;
  w->p[w->len] = '\0';
}

static void jw_lit(jw_t *w, const char *s) {
  jw_put(w, s, strlen(s));
}

/* base64 of in[n] (RFC 4648 §4, padded), written straight into the buffer. */
static void jw_b64(jw_t *w, const uint8_t *in, size_t n) {
  if (n > (SIZE_MAX / 2 - 4) / 4 * 3) {
    w->err = M5_ENOMEM;
    return;
  }
  size_t out = (n + 2) / 3 * 4;
  size_t at = w->len;
  jw_put(w, NULL, out); /* room (and the NUL after it), filled below */
  if (w->err) return;
  char *o = w->p + at;
  for (size_t i = 0; i < n; i += 3) {
    uint32_t v = (uint32_t)in[i] << 16;
    if (i + 1 < n) v |= (uint32_t)in[i + 1] << 8;
    if (i + 2 < n) v |= in[i + 2];
    *o++ = b64_alphabet[v >> 18 & 63];
    *o++ = b64_alphabet[v >> 12 & 63];
    *o++ = i + 1 < n ? b64_alphabet[v >> 6 & 63] : '=';
    *o++ = i + 2 < n ? b64_alphabet[v & 63] : '=';
  }
}

/* A JSON string: quotes and backslashes escaped (the checked values hold no control
 * characters); M5_EINVAL for text that is not UTF-8. */
static int jw_str(jw_t *w, const char *s) {
  const unsigned char *u = (const unsigned char *)s;
  size_t run = 0;
  /* The usual value, ASCII without a quote or backslash: written in one piece. */
  while (u[run] && u[run] < 0x80 && u[run] != '"' && u[run] != '\\')
    run++;
  if (!u[run]) {
    size_t at = w->len;
    jw_put(w, NULL, run + 2);
    if (w->err) return 0; /* encode reports it */
    w->p[at] = '"';
    memcpy(w->p + at + 1, s, run);
    w->p[at + run + 1] = '"';
    return 0;
  }
  run = 0;
  jw_put(w, "\"", 1);
  while (u[run]) {
    if (u[run] == '"' || u[run] == '\\') {
      jw_put(w, (const char *)u, run);
      jw_put(w, u[run] == '"' ? "\\\"" : "\\\\", 2);
      u += run + 1;
      run = 0;
      continue;
    }
    if (u[run] < 0x80) { /* ASCII: what msg_utf8_seq says (1), without the call */
      run++;
      continue;
    }
    size_t n = msg_utf8_seq(u + run);
    if (!n) return M5_EINVAL;
    run += n;
  }
  jw_put(w, (const char *)u, run);
  jw_put(w, "\"", 1);
  return 0;
}

/* ,"name": */
static void jw_key(jw_t *w, const char *name) {
  size_t n = strlen(name), at = w->len;
  jw_put(w, NULL, n + 4); /* room, filled below: one capacity check per key */
  if (w->err) return;
  char *o = w->p + at;
  o[0] = ',';
  o[1] = '"';
  memcpy(o + 2, name, n);
  o[n + 2] = '"';
  o[n + 3] = ':';
}

static int jw_time(jw_t *w, int64_t t) {
  char buf[32];
  if (time_format(t, buf)) return M5_EINVAL;
  return jw_str(w, buf);
}

/* Writes one member if m carries it; M5_EINVAL when a mandatory one is unusable. */
static int put_member(const member_t *mb, const m5_msg_t *m, bool mand, jw_t *w) {
  const char *field = (const char *)m + mb->off;
  switch (mb->kind) {
  case K_SVC_ID:
  case K_MSG_ID:
  case K_TEXT:
  case K_CAUSE:
    if (!field[0]) return mand ? M5_EINVAL : 0;
    if (mb->kind == K_SVC_ID   ? !m5_msg_svc_id_valid(field)
        : mb->kind == K_MSG_ID ? !m5_msg_id_valid(field)
        : mb->kind == K_CAUSE  ? !msg_cause_valid(field, mb->cap - 1)
                               : !msg_text_valid(field, mb->cap - 1))
      return M5_EINVAL;
    jw_key(w, mb->name);
    return jw_str(w, field);
  case K_ADDR: {
    const m5_msg_addr_t *a = (const m5_msg_addr_t *)(const void *)field;
    if (!a->type[0] && !a->addr[0]) return mand ? M5_EINVAL : 0;
    if (!m5_msg_svc_id_valid(a->type) || strlen(a->type) >= sizeof a->type ||
        !m5_msg_svc_id_valid(a->addr) || (m5_msg_addr_is_named(a->type) && !m5_msg_name_valid(a->addr)))
      return M5_EINVAL;
    jw_key(w, mb->name);
    jw_lit(w, "{\"addrType\":");
    jw_str(w, a->type);
    jw_lit(w, ",\"addr\":");
    jw_str(w, a->addr);
    jw_put(w, "}", 1);
    return 0;
  }
  case K_B64:
    if (!m->payload && m->payload_len) return M5_EINVAL;
    jw_key(w, mb->name);
    jw_put(w, "\"", 1);
    jw_b64(w, m->payload, m->payload_len);
    jw_put(w, "\"", 1);
    return 0;
  case K_BOOL:
    if (*(const bool *)(const void *)field) {
      jw_key(w, mb->name);
      jw_lit(w, "true");
    } else if (w->sto_fwd_always && !strcmp(mb->name, "stoAndFwInd")) {
      jw_key(w, mb->name);
      jw_lit(w, "false");
    }
    return 0;
  case K_PRIO:
    if (m->prio == M5_PRIO_MIDDLE) return 0;
    if ((size_t)m->prio >= MSG_N_PRIOS) return M5_EINVAL;
    jw_key(w, mb->name);
    return jw_str(w, msg_prio_names[m->prio]);
  case K_TIME: {
    int64_t t = *(const int64_t *)(const void *)field;
    if (!t) return 0;
    jw_key(w, mb->name);
    return jw_time(w, t);
  }
  case K_SAF:
    if (!m->expr_time) return 0;
    jw_key(w, mb->name);
    jw_lit(w, "{\"exprTime\":");
    if (jw_time(w, m->expr_time)) return M5_EINVAL;
    jw_put(w, "}", 1);
    return 0;
  case K_OBJECT: {
    /* Kept as jansson's compact text (parse); checked again and written out the same way. */
    const char *text = *(char *const *)(const void *)field;
    if (!text) return 0;
    json_t *v = json_loads(text, JSON_REJECT_DUPLICATES, NULL);
    char *again = json_is_object(v) ? json_dumps(v, JSON_COMPACT) : NULL;
    json_decref(v);
    if (!again) return M5_EINVAL;
    jw_key(w, mb->name);
    jw_lit(w, again);
    free(again);
    return 0;
  }
  case K_TOPICS: {
    /* The same rules as parsing: what we send, we would accept. */
    if (!m->n_topics) return mand ? M5_EINVAL : 0;
    if (!m->topics || m->n_topics > M5_MSG_TOPICS_MAX) return M5_EINVAL;
    for (size_t i = 0; i < m->n_topics; i++) {
      if (!m5_msg_name_valid(m->topics[i])) return M5_EINVAL;
      for (size_t j = 0; j < i; j++)
        if (!strcmp(m->topics[i], m->topics[j])) return M5_EINVAL;
    }
    jw_key(w, mb->name);
    for (size_t i = 0; i < m->n_topics; i++) {
      jw_put(w, i ? "," : "[", 1);
      jw_str(w, m->topics[i]); /* checked: ASCII without quotes or backslashes */
    }
    jw_put(w, "]", 1);
    return 0;
  }
  case K_CHECKED:
    /* Not represented in m5_msg_t: a type that needs it cannot be encoded. */
    return mand ? M5_EINVAL : 0;
  }
  return M5_EINVAL;
}

static int encode(const m5_msg_t *m, int with_type, char **out, size_t *len);

int m5_msg_encode(const m5_msg_t *m, char **out, size_t *len) {
  return encode(m, 1, out, len);
}

int m5_msg_encode_as(const m5_msg_t *m, char **out, size_t *len) {
  return encode(m, 0, out, len);
}

static int encode(const m5_msg_t *m, int with_type, char **out, size_t *len) {
  *out = NULL;
  if (len) *len = 0;
  if ((size_t)m->type >= MSG_N_TYPES) return M5_EINVAL;
  jw_t w = {0};
  w.sto_fwd_always = !with_type;
  size_t b64 = m->payload_len / 3 * 4 + 4;
  if (b64 < SIZE_MAX / 2 - 512) { /* one allocation for a usual body */
    w.cap = 512 + b64;
    if (!(w.p = malloc(w.cap))) return M5_ENOMEM;
  }
  if (with_type) {
    jw_lit(&w, "{\"msgType\":\"");
    jw_lit(&w, msg_type_names[m->type]);
    jw_put(&w, "\"", 1);
  } else {
    jw_put(&w, "{", 1);
  }
  size_t start = w.len; /* the members follow, each written with a leading comma */
  int rc = 0;
  for (size_t i = 0; !rc && i < MSG_N_MEMBERS; i++) {
    const member_t *mb = &msg_members[i];
    if (((mb->mandatory | mb->optional) & T(m->type)) &&
        !(!with_type && (mb->ts_omit & T(m->type))))
      rc = put_member(mb, m, mb->mandatory & T(m->type), &w);
  }
  jw_put(&w, "}", 1);
  if (!rc) rc = w.err;
  if (rc) {
    free(w.p);
    return rc;
  }
  if (!with_type && w.len > start + 1 && w.p[start] == ',') { /* "{," -> "{" */
    memmove(w.p + start, w.p + start + 1, w.len - start);
    w.len--;
  }
  *out = w.p;
  if (len) *len = w.len;
  return 0;
}
