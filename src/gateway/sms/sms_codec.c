/* SMS content codecs (see sms_codec.h): TS 23.038 GSM 7-bit default alphabet, UCS-2, 8-bit
 * data, TS 23.040 concatenation UDH, SMPP 3.4 Appendix B delivery receipts. */
#include "sms_codec.h"

#include "core/err.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

/* TS 23.038 cl. 6.2.1: the default alphabet, septet -> Unicode code point. 0x1B is the escape
 * to the extension table (decoded alone as a space-like NBSP, never encoded). */
static const uint16_t gsm_default[128] = {
    0x0040, 0x00A3, 0x0024, 0x00A5, 0x00E8, 0x00E9, 0x00F9, 0x00EC, /* 00 */
    0x00F2, 0x00C7, 0x000A, 0x00D8, 0x00F8, 0x000D, 0x00C5, 0x00E5, /* 08 */
    0x0394, 0x005F, 0x03A6, 0x0393, 0x039B, 0x03A9, 0x03A0, 0x03A8, /* 10 */
    0x03A3, 0x0398, 0x039E, 0x00A0, 0x00C6, 0x00E6, 0x00DF, 0x00C9, /* 18 */
    0x0020, 0x0021, 0x0022, 0x0023, 0x00A4, 0x0025, 0x0026, 0x0027, /* 20 */
    0x0028, 0x0029, 0x002A, 0x002B, 0x002C, 0x002D, 0x002E, 0x002F, /* 28 */
    0x0030, 0x0031, 0x0032, 0x0033, 0x0034, 0x0035, 0x0036, 0x0037, /* 30 */
    0x0038, 0x0039, 0x003A, 0x003B, 0x003C, 0x003D, 0x003E, 0x003F, /* 38 */
    0x00A1, 0x0041, 0x0042, 0x0043, 0x0044, 0x0045, 0x0046, 0x0047, /* 40 */
    0x0048, 0x0049, 0x004A, 0x004B, 0x004C, 0x004D, 0x004E, 0x004F, /* 48 */
    0x0050, 0x0051, 0x0052, 0x0053, 0x0054, 0x0055, 0x0056, 0x0057, /* 50 */
    0x0058, 0x0059, 0x005A, 0x00C4, 0x00D6, 0x00D1, 0x00DC, 0x00A7, /* 58 */
    0x00BF, 0x0061, 0x0062, 0x0063, 0x0064, 0x0065, 0x0066, 0x0067, /* 60 */
    0x0068, 0x0069, 0x006A, 0x006B, 0x006C, 0x006D, 0x006E, 0x006F, /* 68 */
    0x0070, 0x0071, 0x0072, 0x0073, 0x0074, 0x0075, 0x0076, 0x0077, /* 70 */
    0x0078, 0x0079, 0x007A, 0x00E4, 0x00F6, 0x00F1, 0x00FC, 0x00E0, /* 78 */
};

/* TS 23.038 cl. 6.2.1.1: the extension table, reached with 0x1B. */
static const struct {
  uint8_t code;
  uint16_t cp;
} gsm_ext[] = {{0x0A, 0x000C}, {0x14, 0x005E}, {0x28, 0x007B}, {0x29, 0x007D}, {0x2F, 0x005C},
               {0x3C, 0x005B}, {0x3D, 0x007E}, {0x3E, 0x005D}, {0x40, 0x007C}, {0x65, 0x20AC}};

/* Reads one code point of strict UTF-8; returns its length or 0 when malformed. */
static size_t utf8_next(const uint8_t *p, size_t n, uint32_t *cp) {
  if (n == 0) return 0;
  uint8_t c = p[0];
  if (c < 0x80) {
    *cp = c;
    return 1;
  }
  size_t len;
  uint32_t v, min;
  if ((c & 0xE0) == 0xC0) {
    len = 2, v = c & 0x1Fu, min = 0x80;
  } else if ((c & 0xF0) == 0xE0) {
    len = 3, v = c & 0x0Fu, min = 0x800;
  } else if ((c & 0xF8) == 0xF0) {
    len = 4, v = c & 0x07u, min = 0x10000;
  } else {
    return 0;
  }
  if (n < len) return 0;
  for (size_t i = 1; i < len; i++) {
    if ((p[i] & 0xC0) != 0x80) return 0;
    v = (v << 6) | (p[i] & 0x3Fu);
  }
  if (v < min || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF)) return 0;
  *cp = v;
  return len;
}

static size_t utf8_put(uint32_t cp, uint8_t *out) {
  if (cp < 0x80) {
    out[0] = (uint8_t)cp;
    return 1;
  }
  if (cp < 0x800) {
    out[0] = (uint8_t)(0xC0 | (cp >> 6));
    out[1] = (uint8_t)(0x80 | (cp & 0x3F));
    return 2;
  }
  if (cp < 0x10000) {
    out[0] = (uint8_t)(0xE0 | (cp >> 12));
    out[1] = (uint8_t)(0x80 | ((cp >> 6) & 0x3F));
    out[2] = (uint8_t)(0x80 | (cp & 0x3F));
    return 3;
  }
  out[0] = (uint8_t)(0xF0 | (cp >> 18));
  out[1] = (uint8_t)(0x80 | ((cp >> 12) & 0x3F));
  out[2] = (uint8_t)(0x80 | ((cp >> 6) & 0x3F));
  out[3] = (uint8_t)(0x80 | (cp & 0x3F));
  return 4;
}

bool m5_sms_utf8_valid(const uint8_t *in, size_t n) {
  for (size_t i = 0; i < n;) {
    uint32_t cp;
    size_t l = utf8_next(in + i, n - i, &cp);
    if (!l) return false;
    i += l;
  }
  return true;
}

/* The septets for a code point: 1 (default table), 2 (escape + extension) or 0 (none). */
static size_t gsm_septets(uint32_t cp, uint8_t s[2]) {
  if (cp != 0x00A0) /* NBSP is how 0x1B alone decodes; never encode it as an escape */
    for (unsigned i = 0; i < 128; i++)
      if (gsm_default[i] == cp && i != 0x1B) {
        s[0] = (uint8_t)i;
        return 1;
      }
  for (size_t i = 0; i < sizeof(gsm_ext) / sizeof(gsm_ext[0]); i++)
    if (gsm_ext[i].cp == cp) {
      s[0] = 0x1B;
      s[1] = gsm_ext[i].code;
      return 2;
    }
  return 0;
}

int m5_sms_gsm7_from_utf8(const uint8_t *in, size_t n, uint8_t *out, size_t cap,
                          size_t *outlen) {
  size_t o = 0;
  for (size_t i = 0; i < n;) {
    uint32_t cp;
    size_t l = utf8_next(in + i, n - i, &cp);
    if (!l) return M5_EINVAL;
    uint8_t s[2];
    size_t k = gsm_septets(cp, s);
    if (!k || o + k > cap) return M5_ERANGE;
    memcpy(out + o, s, k);
    o += k;
    i += l;
  }
  *outlen = o;
  return M5_OK;
}

static int ucs2_from_utf8(const uint8_t *in, size_t n, uint8_t *out, size_t cap,
                          size_t *outlen) {
  size_t o = 0;
  for (size_t i = 0; i < n;) {
    uint32_t cp;
    size_t l = utf8_next(in + i, n - i, &cp);
    if (!l) return M5_EINVAL;
    if (cp >= 0x10000) {
      if (o + 4 > cap) return M5_ERANGE;
      uint32_t v = cp - 0x10000;
      uint16_t hi = (uint16_t)(0xD800 | (v >> 10)), lo = (uint16_t)(0xDC00 | (v & 0x3FF));
      out[o++] = (uint8_t)(hi >> 8), out[o++] = (uint8_t)hi;
      out[o++] = (uint8_t)(lo >> 8), out[o++] = (uint8_t)lo;
    } else {
      if (o + 2 > cap) return M5_ERANGE;
      out[o++] = (uint8_t)(cp >> 8), out[o++] = (uint8_t)cp;
    }
    i += l;
  }
  *outlen = o;
  return M5_OK;
}

int m5_sms_encode(const uint8_t *in, size_t n, uint8_t *dc, uint8_t *out, size_t cap,
                  size_t *outlen) {
  if (!m5_sms_utf8_valid(in, n)) {
    if (n > cap) return M5_ERANGE;
    if (n) memcpy(out, in, n);
    *outlen = n;
    *dc = M5_SMS_DC_8BIT;
    return M5_OK;
  }
  int rc = m5_sms_gsm7_from_utf8(in, n, out, cap, outlen);
  if (rc == M5_OK) {
    *dc = M5_SMS_DC_GSM7;
    return M5_OK;
  }
  /* Not every character fits (or out was short for septets: UCS-2 needs no less room). */
  *dc = M5_SMS_DC_UCS2;
  return ucs2_from_utf8(in, n, out, cap, outlen);
}

int m5_sms_decode(uint8_t data_coding, const uint8_t *in, size_t n, uint8_t *out, size_t cap,
                  size_t *outlen, char *why, size_t whylen) {
  size_t o = 0;
  if (data_coding == 0x00 || (data_coding >= 0xF0 && data_coding <= 0xF3)) {
    for (size_t i = 0; i < n; i++) {
      uint8_t s = in[i];
      if (s > 0x7F) {
        m5_set_why(why, whylen, "data_coding 0: octet %u at %u is not a GSM 7-bit septet", s,
                   (unsigned)i);
        return M5_EINVAL;
      }
      uint32_t cp = gsm_default[s];
      if (s == 0x1B && i + 1 < n) {
        uint8_t e = in[++i];
        if (e > 0x7F) {
          m5_set_why(why, whylen, "data_coding 0: octet %u at %u is not a GSM 7-bit septet", e,
                     (unsigned)i);
          return M5_EINVAL;
        }
        /* TS 23.038: a code without an extension character shows its default character. */
        cp = e == 0x1B ? 0x0020 : gsm_default[e];
        for (size_t k = 0; k < sizeof(gsm_ext) / sizeof(gsm_ext[0]); k++)
          if (gsm_ext[k].code == e) cp = gsm_ext[k].cp;
      }
      if (o + 4 > cap) return M5_ERANGE;
      o += utf8_put(cp, out + o);
    }
  } else if (data_coding == 0x01 || data_coding == 0x03) {
    for (size_t i = 0; i < n; i++) {
      if (data_coding == 0x01 && in[i] > 0x7F) {
        m5_set_why(why, whylen, "data_coding 1 (IA5): octet %u at %u is not 7-bit", in[i],
                   (unsigned)i);
        return M5_EINVAL;
      }
      if (o + 2 > cap) return M5_ERANGE;
      o += utf8_put(in[i], out + o);
    }
  } else if (data_coding == 0x08) {
    if (n % 2) {
      m5_set_why(why, whylen, "data_coding 8 (UCS-2): odd length %u", (unsigned)n);
      return M5_EINVAL;
    }
    for (size_t i = 0; i < n; i += 2) {
      uint32_t cp = (uint32_t)in[i] << 8 | in[i + 1];
      if (cp >= 0xD800 && cp <= 0xDBFF && i + 3 < n) {
        uint32_t lo = (uint32_t)in[i + 2] << 8 | in[i + 3];
        if (lo >= 0xDC00 && lo <= 0xDFFF) {
          cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
          i += 2;
        }
      }
      if (cp >= 0xD800 && cp <= 0xDFFF) cp = 0xFFFD;
      if (o + 4 > cap) return M5_ERANGE;
      o += utf8_put(cp, out + o);
    }
  } else if (data_coding == 0x02 || data_coding == 0x04 ||
             (data_coding >= 0xF4 && data_coding <= 0xF7)) {
    if (n > cap) return M5_ERANGE;
    if (n) memcpy(out, in, n);
    o = n;
  } else {
    m5_set_why(why, whylen, "data_coding %u is not supported (0, 1, 2, 3, 4, 8, 0xF0-0xF7)",
               data_coding);
    return M5_EINVAL;
  }
  *outlen = o;
  return M5_OK;
}

size_t m5_sms_tpud_octets(uint8_t dc, size_t udh_len, size_t units) {
  if (dc != M5_SMS_DC_GSM7) return udh_len + units;
  /* The UDH is padded with fill bits to a septet boundary (TS 23.040 cl. 9.2.3.24). */
  size_t septets = (udh_len * 8 + 6) / 7 + units;
  return (septets * 7 + 7) / 8;
}

int m5_sms_split(uint8_t dc, const uint8_t *units, size_t n, m5_sms_seg_t *segs,
                 size_t max_segs) {
  if (max_segs == 0) return M5_ERANGE;
  size_t single = dc == M5_SMS_DC_GSM7 ? 160 : M5_SMS_TPUD_MAX;
  if (n <= single) {
    segs[0].off = 0, segs[0].len = n;
    return 1;
  }
  size_t per = dc == M5_SMS_DC_GSM7 ? 153 : M5_SMS_TPUD_MAX - M5_SMS_UDH_CONCAT;
  size_t k = 0;
  for (size_t off = 0; off < n;) {
    if (k == max_segs) return M5_ERANGE;
    size_t len = n - off < per ? n - off : per;
    if (off + len < n) {
      if (dc == M5_SMS_DC_GSM7) {
        /* Do not end on an escape whose extension code would start the next part. Count the
         * escapes before the cut: an escape at an odd position in a run is a code (0x1B 0x1B). */
        size_t run = 0;
        for (size_t j = off + len; j > off && units[j - 1] == 0x1B; j--)
          run++;
        if (run % 2) len--;
      } else if (dc == M5_SMS_DC_UCS2) {
        len &= ~(size_t)1;
        uint8_t hi = units[off + len - 2];
        if (hi >= 0xD8 && hi <= 0xDB) len -= 2; /* a high surrogate: keep the pair together */
      }
    }
    segs[k].off = off, segs[k].len = len;
    k++;
    off += len;
  }
  return (int)k;
}

void m5_sms_udh_concat(uint8_t out[6], uint8_t ref, uint8_t total, uint8_t seq) {
  out[0] = 5, out[1] = 0x00, out[2] = 3, out[3] = ref, out[4] = total, out[5] = seq;
}

int m5_sms_udh_parse(const uint8_t *sm, size_t n, size_t *hdr_len, m5_sms_concat_t *c,
                     char *why, size_t whylen) {
  memset(c, 0, sizeof(*c));
  if (n < 1 || (size_t)sm[0] + 1 > n) {
    m5_set_why(why, whylen, "UDH: length %u overruns the %u-octet message", n ? sm[0] : 0u,
               (unsigned)n);
    return M5_EINVAL;
  }
  size_t end = (size_t)sm[0] + 1;
  for (size_t i = 1; i < end;) {
    if (i + 2 > end || i + 2 + sm[i + 1] > end) {
      m5_set_why(why, whylen, "UDH: IE 0x%02x at %u overruns the header", sm[i], (unsigned)i);
      return M5_EINVAL;
    }
    uint8_t iei = sm[i], l = sm[i + 1];
    const uint8_t *v = sm + i + 2;
    if (iei == 0x00 || iei == 0x08) {
      if (l != (iei == 0x00 ? 3 : 4)) {
        m5_set_why(why, whylen, "UDH: concatenation IE 0x%02x has length %u", iei, l);
        return M5_EINVAL;
      }
      c->present = true;
      c->ref = iei == 0x00 ? v[0] : (uint16_t)((unsigned)v[0] << 8 | v[1]);
      c->total = v[l - 2];
      c->seq = v[l - 1];
      if (c->total == 0 || c->seq == 0 || c->seq > c->total) {
        m5_set_why(why, whylen, "UDH: concatenation part %u of %u", c->seq, c->total);
        return M5_EINVAL;
      }
    }
    i += 2 + (size_t)l;
  }
  *hdr_len = end;
  return M5_OK;
}

m5_sms_rcpt_state_t m5_sms_rcpt_from_message_state(uint8_t v) {
  switch (v) {
  case 2: return M5_SMS_RCPT_DELIVERED;
  case 3: return M5_SMS_RCPT_EXPIRED;
  case 4: /* DELETED */
  case 5: /* UNDELIVERABLE */
  case 8: return M5_SMS_RCPT_FAILED; /* REJECTED */
  default: return M5_SMS_RCPT_PENDING; /* ENROUTE, ACCEPTED, UNKNOWN, SKIPPED */
  }
}

/* The value after "key:" up to the next space (or the end), case-insensitively found at the
 * start or after a space. */
static int field(const uint8_t *t, size_t n, const char *key, char *out, size_t cap) {
  size_t kl = strlen(key);
  for (size_t i = 0; i + kl <= n; i++) {
    if ((i == 0 || t[i - 1] == ' ') && strncasecmp((const char *)t + i, key, kl) == 0) {
      size_t j = i + kl, o = 0;
      while (j < n && t[j] != ' ' && t[j] != 0) {
        if (o + 1 >= cap) return M5_ERANGE;
        out[o++] = (char)t[j++];
      }
      out[o] = 0;
      return M5_OK;
    }
  }
  return M5_ENOENT;
}

int m5_sms_receipt_parse(const uint8_t *text, size_t n, char *id, size_t idcap,
                         m5_sms_rcpt_state_t *st, char *stat, size_t statcap, char *err,
                         size_t errcap, char *why, size_t whylen) {
  if (field(text, n, "id:", id, idcap) != M5_OK || !id[0]) {
    m5_set_why(why, whylen, "receipt: no id: field (or longer than %u)", (unsigned)idcap - 1);
    return M5_EINVAL;
  }
  if (field(text, n, "stat:", stat, statcap) != M5_OK) {
    m5_set_why(why, whylen, "receipt: no stat: field (or longer than %u)", (unsigned)statcap - 1);
    return M5_EINVAL;
  }
  if (field(text, n, "err:", err, errcap) != M5_OK) err[0] = 0;
  static const struct {
    const char *w;
    m5_sms_rcpt_state_t s;
  } words[] = {{"DELIVRD", M5_SMS_RCPT_DELIVERED}, {"EXPIRED", M5_SMS_RCPT_EXPIRED},
               {"DELETED", M5_SMS_RCPT_FAILED},    {"UNDELIV", M5_SMS_RCPT_FAILED},
               {"REJECTD", M5_SMS_RCPT_FAILED},    {"ACCEPTD", M5_SMS_RCPT_PENDING},
               {"ENROUTE", M5_SMS_RCPT_PENDING},   {"UNKNOWN", M5_SMS_RCPT_PENDING}};
  for (size_t i = 0; i < sizeof(words) / sizeof(words[0]); i++)
    if (strcasecmp(stat, words[i].w) == 0) {
      *st = words[i].s;
      return M5_OK;
    }
  m5_set_why(why, whylen, "receipt: unknown stat word '%s'", stat);
  return M5_EINVAL;
}
