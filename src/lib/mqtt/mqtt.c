/* MQTT 3.1.1 / 5.0 client packet codec (mqtt.h). Layouts: MQTT 3.1.1 §2-§3, MQTT 5.0 §2-§3. */
#include "mqtt.h"

#include "core/err.h"

#include <string.h>

#define REM_MAX 268435455u /* the largest remaining length four bytes can say (§2.1.4) */

int m5_mqtt_frame(const uint8_t *p, size_t avail, size_t max_rem, uint8_t *type_flags, size_t *hdr,
                  size_t *rem) {
  if (avail < 2) return 0;
  size_t v = 0;
  for (size_t i = 0;; i++) {
    if (i == 4) return M5_EPROTO; /* a fifth length byte */
    if (1 + i >= avail) return 0;
    v |= (size_t)(p[1 + i] & 127) << (7 * i);
    if (!(p[1 + i] & 128)) {
      if (v > max_rem) return M5_ERANGE;
      if (avail - (2 + i) < v) return 0;
      *type_flags = p[0];
      *hdr = 2 + i;
      *rem = v;
      return 1;
    }
  }
}

/* ---- encoding ---- */

static size_t vbi_len(size_t v) {
  return v < 128 ? 1 : v < 16384 ? 2 : v < 2097152 ? 3 : 4;
}

static size_t put_vbi(uint8_t *p, size_t v) {
  size_t k = 0;
  do {
    uint8_t b = (uint8_t)(v & 127);
    v >>= 7;
    p[k++] = (uint8_t)(b | (v ? 128 : 0));
  } while (v);
  return k;
}

static uint8_t *put16(uint8_t *p, size_t v) {
  p[0] = (uint8_t)(v >> 8);
  p[1] = (uint8_t)v;
  return p + 2;
}

static uint8_t *put32(uint8_t *p, uint32_t v) {
  p[0] = (uint8_t)(v >> 24);
  p[1] = (uint8_t)(v >> 16);
  p[2] = (uint8_t)(v >> 8);
  p[3] = (uint8_t)v;
  return p + 4;
}

static uint8_t *put_str(uint8_t *p, const void *s, size_t n) {
  p = put16(p, n);
  if (n) memcpy(p, s, n);
  return p + n;
}

/* Reserves header + rem bytes at the end of b and writes the fixed header; the body pointer,
 * or NULL with *rc set. */
static uint8_t *begin(m5_buf_t *b, uint8_t first, size_t rem, int *rc) {
  if (rem > REM_MAX) {
    *rc = M5_EINVAL;
    return NULL;
  }
  size_t hl = 1 + vbi_len(rem), at = b->len;
  static const uint8_t zero[64];
  for (size_t left = hl + rem; left;) { /* grow through the buffer's own bound */
    size_t k = left < sizeof zero ? left : sizeof zero;
    int r = m5_buf_append(b, zero, k);
    if (r) {
      b->len = at;
      *rc = r;
      return NULL;
    }
    left -= k;
  }
  uint8_t *p = b->data + at;
  p[0] = first;
  return p + 1 + put_vbi(p + 1, rem);
}

int m5_mqtt_put_connect(m5_buf_t *b, const m5_mqtt_connect_t *c) {
  size_t idn = strlen(c->client_id), un = c->username ? strlen(c->username) : 0;
  if (idn > 65535 || un > 65535 || c->password_len > 65535) return M5_EINVAL;
  bool v5 = c->version == M5_MQTT_V5;
  size_t props = 0;
  if (v5) {
    if (c->session_expiry_s) props += 5;
    if (c->receive_max) props += 3;
    if (c->max_packet) props += 5;
  }
  size_t rem = 10 + (v5 ? vbi_len(props) + props : 0) + 2 + idn;
  if (c->username) rem += 2 + un;
  if (c->password) rem += 2 + c->password_len;
  int rc = 0;
  uint8_t *p = begin(b, M5_MQTT_CONNECT << 4, rem, &rc);
  if (!p) return rc;
  p = put_str(p, "MQTT", 4);
  *p++ = (uint8_t)c->version;
  *p++ = (uint8_t)((c->username ? 0x80 : 0) | (c->password ? 0x40 : 0) | (c->clean ? 0x02 : 0));
  p = put16(p, c->keepalive_s);
  if (v5) {
    p += put_vbi(p, props);
    if (c->session_expiry_s) {
      *p++ = M5_MQTT_P_SESSION_EXPIRY;
      p = put32(p, c->session_expiry_s);
    }
    if (c->receive_max) {
      *p++ = M5_MQTT_P_RECEIVE_MAX;
      p = put16(p, c->receive_max);
    }
    if (c->max_packet) {
      *p++ = M5_MQTT_P_MAX_PACKET;
      p = put32(p, c->max_packet);
    }
  }
  p = put_str(p, c->client_id, idn);
  if (c->username) p = put_str(p, c->username, un);
  if (c->password) put_str(p, c->password, c->password_len);
  return 0;
}

int m5_mqtt_put_subscribe(m5_buf_t *b, int version, uint16_t pid, const char *filter, uint8_t qos) {
  size_t fl = strlen(filter);
  if (fl > 65535) return M5_EINVAL;
  bool v5 = version == M5_MQTT_V5;
  size_t rem = 2 + (v5 ? 1 : 0) + 2 + fl + 1;
  int rc = 0;
  uint8_t *p = begin(b, M5_MQTT_SUBSCRIBE << 4 | 2, rem, &rc); /* flags 0010 (§3.8.1) */
  if (!p) return rc;
  p = put16(p, pid);
  if (v5) *p++ = 0; /* no properties */
  p = put_str(p, filter, fl);
  *p = v5 ? qos : (uint8_t)(qos & 3); /* v5: the subscription options byte */
  return 0;
}

int m5_mqtt_put_publish(m5_buf_t *b, int version, const char *topic, uint8_t qos, bool dup,
                        uint16_t pid, const m5_mqtt_pair_t *user, size_t n_user,
                        const uint8_t *payload, size_t plen) {
  size_t tl = strlen(topic);
  if (tl > 65535 || qos > 1) return M5_EINVAL;
  bool v5 = version == M5_MQTT_V5;
  size_t props = 0;
  for (size_t i = 0; v5 && i < n_user; i++) {
    if (user[i].klen > 65535 || user[i].vlen > 65535) return M5_EINVAL;
    props += 1 + 2 + user[i].klen + 2 + user[i].vlen;
  }
  if (props > REM_MAX) return M5_EINVAL;
  size_t rem = 2 + tl + (qos ? 2 : 0) + (v5 ? vbi_len(props) + props : 0) + plen;
  int rc = 0;
  uint8_t *p =
      begin(b, (uint8_t)(M5_MQTT_PUBLISH << 4 | (dup && qos ? 8 : 0) | qos << 1), rem, &rc);
  if (!p) return rc;
  p = put_str(p, topic, tl);
  if (qos) p = put16(p, pid);
  if (v5) {
    p += put_vbi(p, props);
    for (size_t i = 0; i < n_user; i++) {
      *p++ = M5_MQTT_P_USER;
      p = put_str(p, user[i].key, user[i].klen);
      p = put_str(p, user[i].val, user[i].vlen);
    }
  }
  if (plen) memcpy(p, payload, plen);
  return 0;
}

int m5_mqtt_put_puback(m5_buf_t *b, int version, uint16_t pid, uint8_t reason) {
  bool with_reason = version == M5_MQTT_V5 && reason;
  int rc = 0;
  uint8_t *p = begin(b, M5_MQTT_PUBACK << 4, with_reason ? 3 : 2, &rc);
  if (!p) return rc;
  p = put16(p, pid);
  if (with_reason) *p = reason; /* no properties: the property length may be omitted */
  return 0;
}

int m5_mqtt_put_empty(m5_buf_t *b, uint8_t type) {
  int rc = 0;
  return begin(b, (uint8_t)(type << 4), 0, &rc) ? 0 : rc;
}

/* ---- decoding ---- */

static uint16_t get16(const uint8_t *p) {
  return (uint16_t)(p[0] << 8 | p[1]);
}

static uint32_t get32(const uint8_t *p) {
  return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* A Variable Byte Integer at *p (before end): 0 and *p advanced, or M5_EPROTO. */
static int get_vbi(const uint8_t **p, const uint8_t *end, uint32_t *v) {
  uint32_t x = 0;
  for (int i = 0; i < 4; i++) {
    if (*p >= end) return M5_EPROTO;
    uint8_t c = *(*p)++;
    x |= (uint32_t)(c & 127) << (7 * i);
    if (!(c & 128)) {
      *v = x;
      return 0;
    }
  }
  return M5_EPROTO;
}

/* A two-byte-length string or binary at *p. */
static int get_str(const uint8_t **p, const uint8_t *end, const uint8_t **s, size_t *n) {
  if (end - *p < 2) return M5_EPROTO;
  size_t l = get16(*p);
  if ((size_t)(end - *p) - 2 < l) return M5_EPROTO;
  *s = *p + 2;
  *n = l;
  *p += 2 + l;
  return 0;
}

int m5_mqtt_prop_next(const uint8_t **p, const uint8_t *end, m5_mqtt_prop_t *prop) {
  if (*p >= end) return 0;
  memset(prop, 0, sizeof *prop);
  uint32_t id;
  if (get_vbi(p, end, &id) || id > 0x2a) return M5_EPROTO;
  prop->id = (uint8_t)id;
  size_t left = (size_t)(end - *p);
  switch (id) {
  case 0x01:
  case 0x17:
  case 0x19:
  case 0x24:
  case 0x25:
  case 0x28:
  case 0x29:
  case 0x2a:
    if (left < 1) return M5_EPROTO;
    prop->num = *(*p)++;
    return 1;
  case 0x13:
  case 0x21:
  case 0x22:
  case 0x23:
    if (left < 2) return M5_EPROTO;
    prop->num = get16(*p);
    *p += 2;
    return 1;
  case 0x02:
  case 0x11:
  case 0x18:
  case 0x27:
    if (left < 4) return M5_EPROTO;
    prop->num = get32(*p);
    *p += 4;
    return 1;
  case 0x0b:
    return get_vbi(p, end, &prop->num) ? M5_EPROTO : 1;
  case 0x03:
  case 0x08:
  case 0x09:
  case 0x12:
  case 0x15:
  case 0x16:
  case 0x1a:
  case 0x1c:
  case 0x1f:
    return get_str(p, end, &prop->data, &prop->len) ? M5_EPROTO : 1;
  case 0x26:
    if (get_str(p, end, &prop->data, &prop->len) || get_str(p, end, &prop->data2, &prop->len2))
      return M5_EPROTO;
    return 1;
  default:
    return M5_EPROTO;
  }
}

/* The v5 property block at *p: its bytes in [*props, *props + *n), *p past it. */
static int get_props(const uint8_t **p, const uint8_t *end, const uint8_t **props, size_t *n) {
  uint32_t l;
  if (get_vbi(p, end, &l) || (size_t)(end - *p) < l) return M5_EPROTO;
  *props = *p;
  *n = l;
  *p += l;
  const uint8_t *q = *props, *qe = *props + l; /* validate the whole block once */
  m5_mqtt_prop_t pr;
  int r;
  while ((r = m5_mqtt_prop_next(&q, qe, &pr)) == 1)
    ;
  return r;
}

int m5_mqtt_parse_connack(int version, const uint8_t *b, size_t len, m5_mqtt_connack_t *out) {
  memset(out, 0, sizeof *out);
  out->receive_max = 65535;
  out->max_qos = 1;
  if (len < 2 || (b[0] & 0xfe)) return M5_EPROTO;
  out->session_present = b[0] & 1;
  out->code = b[1];
  if (version != M5_MQTT_V5) return len == 2 ? 0 : M5_EPROTO;
  const uint8_t *p = b + 2, *end = b + len, *props;
  size_t n;
  if (len == 2) return 0; /* a refusal may stop after the reason code */
  if (get_props(&p, end, &props, &n) || p != end) return M5_EPROTO;
  m5_mqtt_prop_t pr;
  for (const uint8_t *q = props; m5_mqtt_prop_next(&q, props + n, &pr) == 1;) {
    if (pr.id == M5_MQTT_P_RECEIVE_MAX) {
      if (!pr.num) return M5_EPROTO; /* 0 is a protocol error (§3.2.2.3.3) */
      out->receive_max = (uint16_t)pr.num;
    } else if (pr.id == M5_MQTT_P_MAX_PACKET) {
      out->max_packet = pr.num;
    } else if (pr.id == M5_MQTT_P_MAX_QOS) {
      out->max_qos = (uint8_t)pr.num;
    }
  }
  return 0;
}

int m5_mqtt_parse_publish(int version, uint8_t type_flags, const uint8_t *b, size_t len,
                          m5_mqtt_publish_t *out) {
  memset(out, 0, sizeof *out);
  out->qos = (type_flags >> 1) & 3;
  out->dup = type_flags & 8;
  out->retain = type_flags & 1;
  if (out->qos > 1 || (out->dup && !out->qos)) return M5_EPROTO;
  const uint8_t *p = b, *end = b + len;
  if (get_str(&p, end, &out->topic, &out->tlen)) return M5_EPROTO;
  if (out->qos) {
    if (end - p < 2) return M5_EPROTO;
    out->pid = get16(p);
    p += 2;
    if (!out->pid) return M5_EPROTO;
  }
  if (version == M5_MQTT_V5 && get_props(&p, end, &out->props, &out->props_len)) return M5_EPROTO;
  out->payload = p;
  out->plen = (size_t)(end - p);
  return 0;
}

int m5_mqtt_parse_puback(int version, const uint8_t *b, size_t len, uint16_t *pid,
                         uint8_t *reason) {
  *reason = 0;
  if (len < 2) return M5_EPROTO;
  *pid = get16(b);
  if (version != M5_MQTT_V5) return len == 2 ? 0 : M5_EPROTO;
  if (len >= 3) *reason = b[2];
  if (len > 3) {
    const uint8_t *p = b + 3, *props;
    size_t n;
    if (get_props(&p, b + len, &props, &n) || p != b + len) return M5_EPROTO;
  }
  return 0;
}

int m5_mqtt_parse_suback(int version, const uint8_t *b, size_t len, uint16_t *pid, uint8_t *code) {
  if (len < 3) return M5_EPROTO;
  *pid = get16(b);
  const uint8_t *p = b + 2, *end = b + len, *props;
  size_t n;
  if (version == M5_MQTT_V5 && get_props(&p, end, &props, &n)) return M5_EPROTO;
  if (end - p != 1) return M5_EPROTO; /* we subscribe one filter at a time */
  *code = *p;
  return 0;
}

bool m5_mqtt_utf8_ok(const uint8_t *s, size_t n) {
  for (size_t i = 0; i < n;) {
    uint8_t c = s[i];
    if (!c) return false;
    if (c < 0x80) {
      i++;
      continue;
    }
    size_t k = c >= 0xf0 && c <= 0xf4 ? 3 : c >= 0xe0 ? 2 : c >= 0xc2 && c < 0xe0 ? 1 : 0;
    if (!k || c > 0xf4 || n - i <= k) return false;
    uint32_t cp = c & (0x3f >> k);
    for (size_t j = 1; j <= k; j++) {
      if ((s[i + j] & 0xc0) != 0x80) return false;
      cp = cp << 6 | (s[i + j] & 0x3f);
    }
    if ((k == 2 && cp < 0x800) || (k == 3 && (cp < 0x10000 || cp > 0x10ffff)) ||
        (cp >= 0xd800 && cp <= 0xdfff))
      return false; /* overlong, out of range, surrogate */
    i += k + 1;
  }
  return true;
}

bool m5_mqtt_topic_name_ok(const uint8_t *s, size_t n) {
  if (!n || n > 65535 || !m5_mqtt_utf8_ok(s, n)) return false;
  return !memchr(s, '+', n) && !memchr(s, '#', n);
}
