/* SMPP 3.4 PDU framing, checks and libsmpp34 wrappers (see smpp_pdu.h). */
#include "smpp_pdu.h"

#include "core/err.h"

#include <arpa/inet.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "smpp34_heap.h"
#include "smpp34_params.h"

extern char smpp34_strerror[2048];

static uint32_t rd32(const uint8_t *p) {
  return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

int m5_smpp_hdr(const uint8_t *buf, size_t n, m5_smpp_hdr_t *h) {
  if (n < M5_SMPP_HDR) return M5_EAGAIN;
  h->len = rd32(buf), h->id = rd32(buf + 4), h->status = rd32(buf + 8), h->seq = rd32(buf + 12);
  if (h->len < M5_SMPP_HDR || h->len > M5_SMPP_MAX_PDU) return M5_EPROTO;
  return M5_OK;
}

void m5_smpp_hdr_only(uint8_t out[16], uint32_t id, uint32_t status, uint32_t seq) {
  uint32_t v[4] = {htonl(16), htonl(id), htonl(status), htonl(seq)};
  memcpy(out, v, 16);
}

/* A C-Octet String of at most max octets with its NUL at p[*i..]. */
static int cstr(const uint8_t *p, size_t len, size_t *i, size_t max, const char *name,
                char *why, size_t whylen) {
  for (size_t k = 0; k < max && *i + k < len; k++)
    if (p[*i + k] == 0) {
      *i += k + 1;
      return M5_OK;
    }
  m5_set_why(why, whylen, "%s: not a C-Octet String of at most %zu octets", name, max);
  return M5_EPROTO;
}

/* The optional parameters the adapter reads, with the sizes libsmpp34 reads them at (min..max
 * octets). SMPP 3.4 has a receiver ignore the optional parameters it does not support: the
 * others are left out of the library's copy (smpp_pdu.h says why). */
static const struct {
  uint16_t tag;
  uint16_t min, max;
} kept[] = {{0x0424, 0, 1024}, /* message_payload */
            {0x020C, 2, 2},    /* sar_msg_ref_num */
            {0x020E, 1, 1},    /* sar_total_segments */
            {0x020F, 1, 1},    /* sar_segment_seqnum */
            {0x001E, 1, 65},   /* receipted_message_id */
            {0x0427, 1, 1}};   /* message_state */

/* Copies the optional parameters from p[i..len) that keep[] (or none, when keep is false)
 * lists into out[o..], after checking that every one is whole. Returns the new length. */
static int tlvs(const uint8_t *p, size_t len, size_t i, bool keep, uint8_t *out, size_t o,
                char *why, size_t whylen) {
  unsigned n = 0;
  while (i < len) {
    if (len - i < 4) {
      m5_set_why(why, whylen, "optional parameter at %zu: truncated header", i);
      return M5_EPROTO;
    }
    unsigned tag = (unsigned)p[i] << 8 | p[i + 1];
    size_t l = (size_t)p[i + 2] << 8 | p[i + 3];
    if (l > len - i - 4) {
      m5_set_why(why, whylen, "optional parameter 0x%04x: length %zu overruns the PDU", tag, l);
      return M5_EPROTO;
    }
    for (size_t k = 0; keep && k < sizeof(kept) / sizeof(kept[0]); k++) {
      if (kept[k].tag != tag) continue;
      if (l < kept[k].min || l > kept[k].max) {
        m5_set_why(why, whylen, "optional parameter 0x%04x: length %zu (%u..%u)", tag, l,
                   kept[k].min, kept[k].max);
        return M5_EPROTO;
      }
      if (++n > M5_SMPP_MAX_TLVS) {
        m5_set_why(why, whylen, "more than %u optional parameters", M5_SMPP_MAX_TLVS);
        return M5_EPROTO;
      }
      memcpy(out + o, p + i, 4 + l);
      o += 4 + l;
    }
    i += 4 + l;
  }
  uint32_t v = htonl((uint32_t)o);
  memcpy(out, &v, 4);
  return (int)o;
}

int m5_smpp_check_deliver_sm(const uint8_t *p, size_t len, uint8_t *out, char *why,
                             size_t whylen) {
  size_t i = M5_SMPP_HDR;
  static const struct {
    const char *name;
    size_t max;   /* C-Octet String size */
    size_t fixed; /* fixed octets after it */
  } f[] = {{"service_type", 6, 2},  {"source_addr", 21, 2},         {"destination_addr", 21, 3},
           {"schedule_delivery_time", 17, 0}, {"validity_period", 17, 5}};
  if (len > M5_SMPP_MAX_PDU) return M5_EPROTO;
  for (size_t k = 0; k < sizeof(f) / sizeof(f[0]); k++) {
    if (cstr(p, len, &i, f[k].max, f[k].name, why, whylen)) return M5_EPROTO;
    if (len - i < f[k].fixed) {
      m5_set_why(why, whylen, "truncated after %s", f[k].name);
      return M5_EPROTO;
    }
    i += f[k].fixed;
  }
  size_t sm_len = p[i - 1];
  if (sm_len > len - i) {
    m5_set_why(why, whylen, "sm_length %zu overruns the PDU", sm_len);
    return M5_EPROTO;
  }
  memcpy(out, p, i + sm_len);
  return tlvs(p, len, i + sm_len, true, out, i + sm_len, why, whylen);
}

int m5_smpp_check_resp_id(const uint8_t *p, size_t len, size_t id_max, uint8_t *out, char *why,
                          size_t whylen) {
  size_t i = M5_SMPP_HDR;
  if (len > M5_SMPP_MAX_PDU) return M5_EPROTO;
  if (cstr(p, len, &i, id_max, "message_id/system_id", why, whylen)) return M5_EPROTO;
  memcpy(out, p, i);
  return tlvs(p, len, i, false, out, i, why, whylen);
}

/* ---- the library's allocations, tracked so a failed unpack leaks nothing ---- */

typedef struct blk {
  struct blk *prev, *next;
  size_t size;
  max_align_t pad[];
} blk_t;

static _Thread_local blk_t *live;

static void *trk_malloc(size_t sz) {
  blk_t *b = malloc(sizeof(blk_t) + sz);
  if (!b) abort(); /* the library does not check: failing here is safer than a NULL write */
  b->size = sz;
  b->prev = NULL, b->next = live;
  if (live) live->prev = b;
  live = b;
  return b->pad;
}

static void trk_free(void *p) {
  if (!p) return;
  blk_t *b = (blk_t *)((char *)p - offsetof(blk_t, pad));
  if (b->prev) b->prev->next = b->next;
  else live = b->next;
  if (b->next) b->next->prev = b->prev;
  free(b);
}

static void *trk_realloc(void *p, size_t sz) {
  if (!p) return trk_malloc(sz);
  blk_t *b = (blk_t *)((char *)p - offsetof(blk_t, pad));
  void *n = trk_malloc(sz);
  size_t old = b->size;
  memcpy(n, p, old < sz ? old : sz);
  trk_free(p);
  return n;
}

static void install_allocator(void) {
  static const struct smpp34_memory_functions mf = {trk_malloc, trk_realloc, trk_free};
  smpp34_set_memory_functions(&mf);
}

void m5_smpp_unpack_end(void) {
  while (live)
    trk_free(live->pad);
}

size_t m5_smpp_lib_blocks(void) {
  size_t n = 0;
  for (blk_t *b = live; b; b = b->next)
    n++;
  return n;
}

int m5_smpp_unpack(uint32_t id, const uint8_t *pdu, size_t len, void *out, char *why,
                   size_t whylen) {
  static pthread_once_t once = PTHREAD_ONCE_INIT;
  pthread_once(&once, install_allocator);
  if (len > M5_SMPP_MAX_PDU) return M5_EPROTO;
  /* NULs after the PDU: the library's C-Octet String reader calls strlen() on its input. */
  uint8_t buf[M5_SMPP_MAX_PDU + 8];
  memcpy(buf, pdu, len);
  memset(buf + len, 0, sizeof(buf) - len);
  if (smpp34_unpack(id, out, buf, (int)len) != 0) {
    m5_set_why(why, whylen, "libsmpp34: %.200s", smpp34_strerror);
    return M5_EPROTO;
  }
  return M5_OK;
}

int m5_smpp_pack(uint32_t id, void *pdu, uint8_t *out, size_t cap) {
  int n = 0;
  if (cap > INT32_MAX || smpp34_pack(id, out, (int)cap, &n, pdu) != 0 || n < 16) return M5_EINVAL;
  return n;
}

const tlv_t *m5_smpp_tlv(const tlv_t *list, uint16_t tag) {
  for (const tlv_t *t = list; t; t = t->next)
    if (t->tag == tag) return t;
  return NULL;
}

size_t m5_smpp_lib_log_len(void) { return strnlen(smpp34_strerror, sizeof(smpp34_strerror)); }
