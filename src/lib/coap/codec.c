/* CoAP message codec (coap.h): RFC 7252 §3 (UDP header, token, options in delta encoding with
 * the 13/14 extensions, payload marker) and RFC 8323 §3.2 (stream framing: Len nibble with
 * 13/14/15 extensions, TKL, code). Every extended field has exactly one encoding, so
 * encode(parse(x)) == x for every x that parses. */
#include "coap/coap.h"

#include <stdio.h>
#include <string.h>

#include "core/err.h"

/* Options and payload from p up to end (shared by both framings). */
static int parse_opts(const uint8_t *p, const uint8_t *end, m5_coap_msg_t *out) {
  uint32_t num = 0;
  out->n_opts = 0;
  out->payload = NULL;
  out->payload_len = 0;
  while (p < end) {
    uint8_t b = *p++;
    if (b == 0xFF) {
      if (p == end) return M5_EPROTO; /* marker followed by a zero-length payload */
      out->payload = p;
      out->payload_len = (size_t)(end - p);
      return M5_OK;
    }
    uint32_t delta = b >> 4, olen = b & 0x0Fu;
    uint32_t *fields[2] = {&delta, &olen};
    for (int i = 0; i < 2; i++) {
      uint32_t *f = fields[i];
      if (*f == 15) return M5_EPROTO;
      if (*f == 13) {
        if (end - p < 1) return M5_EPROTO;
        *f = 13u + p[0];
        p += 1;
      } else if (*f == 14) {
        if (end - p < 2) return M5_EPROTO;
        *f = 269u + (((uint32_t)p[0] << 8) | p[1]);
        p += 2;
      }
    }
    num += delta;
    if (num > UINT16_MAX || olen > UINT16_MAX) return M5_EPROTO;
    if ((size_t)(end - p) < olen) return M5_EPROTO;
    if (out->n_opts == M5_COAP_MAX_OPTS) return M5_ERANGE;
    m5_coap_opt_t *o = &out->opts[out->n_opts++];
    o->num = (uint16_t)num;
    o->len = (uint16_t)olen;
    o->val = olen ? p : NULL;
    p += olen;
  }
  return M5_OK;
}

int m5_coap_parse_udp(const uint8_t *buf, size_t len, m5_coap_msg_t *out) {
  if (!buf || !out) return M5_EINVAL;
  if (len < 4) return M5_EPROTO;
  if ((buf[0] >> 6) != 1) return M5_EPROTO;
  uint8_t tkl = buf[0] & 0x0Fu;
  if (tkl > M5_COAP_MAX_TOKEN) return M5_EPROTO;
  out->type = (m5_coap_type_t)((buf[0] >> 4) & 0x3u);
  out->code = buf[1];
  out->mid = (uint16_t)((buf[2] << 8) | buf[3]);
  /* RFC 7252 §4.1: an Empty message is the bare 4-byte header. */
  if (out->code == M5_COAP_EMPTY && (tkl != 0 || len != 4)) return M5_EPROTO;
  if (len - 4 < tkl) return M5_EPROTO;
  out->token_len = tkl;
  memset(out->token, 0, sizeof out->token);
  if (tkl) memcpy(out->token, buf + 4, tkl);
  return parse_opts(buf + 4 + tkl, buf + len, out);
}

int m5_coap_parse_tcp(const uint8_t *buf, size_t len, size_t max_len, m5_coap_msg_t *out,
                      size_t *consumed, size_t *need) {
  if ((!buf && len) || !out || !consumed || !need) return M5_EINVAL;
  *consumed = 0;
  *need = 0;
  if (len < 1) return M5_EAGAIN;
  uint8_t tkl = buf[0] & 0x0Fu;
  if (tkl > M5_COAP_MAX_TOKEN) return M5_EPROTO;
  uint8_t lnib = buf[0] >> 4;
  size_t ext = lnib == 13 ? 1 : lnib == 14 ? 2 : lnib == 15 ? 4 : 0;
  if (len < 1 + ext) return M5_EAGAIN;
  uint64_t body = lnib;
  if (lnib == 13) {
    body = 13u + buf[1];
  } else if (lnib == 14) {
    body = 269u + (((uint32_t)buf[1] << 8) | buf[2]);
  } else if (lnib == 15) {
    body = 65805u +
           (((uint64_t)buf[1] << 24) | ((uint64_t)buf[2] << 16) | ((uint64_t)buf[3] << 8) | buf[4]);
  }
  uint64_t total = 1u + ext + 1u + tkl + body;
  if (total > max_len) return M5_ERANGE;
  if (len < total) {
    *need = (size_t)total;
    return M5_EAGAIN;
  }
  const uint8_t *p = buf + 1 + ext;
  out->type = M5_COAP_CON;
  out->mid = 0;
  out->code = *p++;
  out->token_len = tkl;
  memset(out->token, 0, sizeof out->token);
  if (tkl) memcpy(out->token, p, tkl);
  p += tkl;
  int rc = parse_opts(p, buf + total, out);
  if (rc) return rc;
  *consumed = (size_t)total;
  return M5_OK;
}

/* Checks what both encoders require: token length, option order, payload pointer. */
static int msg_check(const m5_coap_msg_t *m) {
  if (m->token_len > M5_COAP_MAX_TOKEN || m->n_opts > M5_COAP_MAX_OPTS) return M5_EINVAL;
  if (m->payload_len && !m->payload) return M5_EINVAL;
  for (size_t i = 0; i < m->n_opts; i++) {
    if (i && m->opts[i].num < m->opts[i - 1].num) return M5_EINVAL;
    if (m->opts[i].len && !m->opts[i].val) return M5_EINVAL;
  }
  return M5_OK;
}

/* Nibble plus extension bytes for one option delta or length (RFC 7252 §3.1). */
static uint8_t ext_encode(uint32_t v, uint8_t ext[2], size_t *n) {
  if (v < 13) {
    *n = 0;
    return (uint8_t)v;
  }
  if (v < 269) {
    ext[0] = (uint8_t)(v - 13);
    *n = 1;
    return 13;
  }
  ext[0] = (uint8_t)((v - 269) >> 8);
  ext[1] = (uint8_t)(v - 269);
  *n = 2;
  return 14;
}

/* Options and payload: the part after the token in both framings. */
static int encode_opts(const m5_coap_msg_t *m, m5_buf_t *out) {
  uint16_t prev = 0;
  for (size_t i = 0; i < m->n_opts; i++) {
    const m5_coap_opt_t *o = &m->opts[i];
    uint8_t hdr[5], dext[2], lext[2];
    size_t dn, ln;
    uint8_t dn_nib = ext_encode((uint32_t)(o->num - prev), dext, &dn);
    uint8_t ln_nib = ext_encode(o->len, lext, &ln);
    size_t h = 0;
    hdr[h++] = (uint8_t)((dn_nib << 4) | ln_nib);
    memcpy(hdr + h, dext, dn);
    h += dn;
    memcpy(hdr + h, lext, ln);
    h += ln;
    int rc = m5_buf_append(out, hdr, h);
    if (!rc) rc = m5_buf_append(out, o->val, o->len);
    if (rc) return rc;
    prev = o->num;
  }
  if (m->payload_len) {
    uint8_t marker = 0xFF;
    int rc = m5_buf_append(out, &marker, 1);
    if (!rc) rc = m5_buf_append(out, m->payload, m->payload_len);
    if (rc) return rc;
  }
  return M5_OK;
}

int m5_coap_encode_udp(const m5_coap_msg_t *m, m5_buf_t *out) {
  if (!m || !out || m->type > M5_COAP_RST) return M5_EINVAL;
  int rc = msg_check(m);
  if (rc) return rc;
  size_t start = out->len;
  uint8_t hdr[4 + M5_COAP_MAX_TOKEN];
  hdr[0] = (uint8_t)(0x40u | ((unsigned)m->type << 4) | m->token_len);
  hdr[1] = m->code;
  hdr[2] = (uint8_t)(m->mid >> 8);
  hdr[3] = (uint8_t)m->mid;
  memcpy(hdr + 4, m->token, m->token_len);
  rc = m5_buf_append(out, hdr, 4u + m->token_len);
  if (!rc) rc = encode_opts(m, out);
  if (rc) out->len = start;
  return rc;
}

int m5_coap_encode_tcp(const m5_coap_msg_t *m, m5_buf_t *out) {
  if (!m || !out) return M5_EINVAL;
  int rc = msg_check(m);
  if (rc) return rc;
  /* Options and payload go first into a scratch buffer: their length leads the frame. */
  m5_buf_t body;
  m5_buf_init(&body, 0);
  rc = encode_opts(m, &body);
  if (rc) {
    m5_buf_free(&body);
    return rc;
  }
  uint8_t hdr[6 + M5_COAP_MAX_TOKEN];
  size_t h = 1, n = body.len;
  if (n < 13) {
    hdr[0] = (uint8_t)(n << 4);
  } else if (n < 269) {
    hdr[0] = 13 << 4;
    hdr[h++] = (uint8_t)(n - 13);
  } else if (n < 65805) {
    hdr[0] = 14 << 4;
    hdr[h++] = (uint8_t)((n - 269) >> 8);
    hdr[h++] = (uint8_t)(n - 269);
  } else if ((uint64_t)n - 65805u <= UINT32_MAX) {
    uint32_t v = (uint32_t)(n - 65805);
    hdr[0] = 15 << 4;
    hdr[h++] = (uint8_t)(v >> 24);
    hdr[h++] = (uint8_t)(v >> 16);
    hdr[h++] = (uint8_t)(v >> 8);
    hdr[h++] = (uint8_t)v;
  } else {
    m5_buf_free(&body);
    return M5_ERANGE;
  }
  hdr[0] |= m->token_len;
  hdr[h++] = m->code;
  memcpy(hdr + h, m->token, m->token_len);
  h += m->token_len;
  size_t start = out->len;
  rc = m5_buf_append(out, hdr, h);
  if (!rc) rc = m5_buf_append(out, body.data, body.len);
  if (rc) out->len = start;
  m5_buf_free(&body);
  return rc;
}

int m5_coap_msg_add_opt(m5_coap_msg_t *m, uint16_t num, const uint8_t *val, uint16_t len) {
  if (!m || (len && !val)) return M5_EINVAL;
  if (m->n_opts >= M5_COAP_MAX_OPTS) return M5_ERANGE;
  size_t i = m->n_opts;
  while (i > 0 && m->opts[i - 1].num > num)
    i--;
  memmove(&m->opts[i + 1], &m->opts[i], (m->n_opts - i) * sizeof m->opts[0]);
  m->opts[i].num = num;
  m->opts[i].len = len;
  m->opts[i].val = len ? val : NULL;
  m->n_opts++;
  return M5_OK;
}

const m5_coap_opt_t *m5_coap_msg_opt(const m5_coap_msg_t *m, uint16_t num, size_t idx) {
  if (!m) return NULL;
  for (size_t i = 0; i < m->n_opts && i < M5_COAP_MAX_OPTS; i++) {
    if (m->opts[i].num != num) continue;
    if (idx == 0) return &m->opts[i];
    idx--;
  }
  return NULL;
}

int m5_coap_opt_uint(const m5_coap_opt_t *o, uint32_t *out) {
  if (!o || !out) return M5_EINVAL;
  if (o->len > 4) return M5_ERANGE;
  uint32_t v = 0;
  for (uint16_t i = 0; i < o->len; i++)
    v = (v << 8) | o->val[i];
  *out = v;
  return M5_OK;
}

uint16_t m5_coap_uint_encode(uint32_t v, uint8_t buf[4]) {
  uint16_t n = v > 0xFFFFFFu ? 4 : v > 0xFFFFu ? 3 : v > 0xFFu ? 2 : v ? 1 : 0;
  for (uint16_t i = 0; i < n; i++)
    buf[i] = (uint8_t)(v >> (8u * (n - 1u - i)));
  return n;
}

const char *m5_coap_code_str(uint8_t code, char *buf, size_t len) {
  if (!buf || len == 0) return "";
  snprintf(buf, len, "%u.%02u", (unsigned)(code >> 5), (unsigned)(code & 0x1Fu));
  return buf;
}
