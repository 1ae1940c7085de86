/* Growable byte buffer with a hard cap (buf.h). The cap is what keeps a peer from making us
 * allocate without bound; the contents are left untouched by every failed call. */
#include "core/buf.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/err.h"

#define BUF_MIN_CAP 64u

static size_t buf_limit(const m5_buf_t *b) {
  return b->max ? b->max : SIZE_MAX / 2;
}

void m5_buf_init(m5_buf_t *b, size_t max) {
  b->data = NULL;
  b->len = 0;
  b->cap = 0;
  b->max = max;
}

/* Makes room for need bytes in total. need may be one byte past the limit (for the NUL that
 * vsnprintf writes), never more, so it cannot overflow when doubled.
 * The old block is copied and wiped rather than realloc'd: a buffer does not know whether it
 * holds a secret, and realloc would leave a copy in freed memory that m5_buf_wipe_free cannot
 * reach. Growth is geometric, so the copy costs O(1) amortised per byte. */
static int buf_reserve(m5_buf_t *b, size_t need) {
  if (need <= b->cap) return M5_OK;
  size_t cap = b->cap ? b->cap : BUF_MIN_CAP;
  while (cap < need)
    cap *= 2;
  if (cap > buf_limit(b) + 1) cap = buf_limit(b) + 1; /* never allocate what max forbids */
  uint8_t *p = malloc(cap);
  if (!p) return M5_ENOMEM;
  if (b->data) {
    memcpy(p, b->data, b->len);
    explicit_bzero(b->data, b->cap);
    free(b->data);
  }
  b->data = p;
  b->cap = cap;
  return M5_OK;
}

int m5_buf_append(m5_buf_t *b, const void *p, size_t n) {
  if (n == 0) return M5_OK;
  if (n > buf_limit(b) - b->len) return M5_ERANGE;
  int rc = buf_reserve(b, b->len + n);
  if (rc) return rc;
  memcpy(b->data + b->len, p, n);
  b->len += n;
  return M5_OK;
}

int m5_buf_printf(m5_buf_t *b, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(NULL, 0, fmt, ap);
  va_end(ap);
  if (n < 0) return M5_EINVAL;
  size_t need = (size_t)n;
  if (need > buf_limit(b) - b->len) return M5_ERANGE;
  /* + 1 for vsnprintf's NUL, which is not counted in len and may sit past max. */
  int rc = buf_reserve(b, b->len + need + 1);
  if (rc) return rc;
  va_start(ap, fmt);
  vsnprintf((char *)b->data + b->len, need + 1, fmt, ap);
  va_end(ap);
  b->len += need;
  return M5_OK;
}

void m5_buf_consume(m5_buf_t *b, size_t n) {
  if (n >= b->len) {
    b->len = 0;
    return;
  }
  memmove(b->data, b->data + n, b->len - n);
  b->len -= n;
}

void m5_buf_reset(m5_buf_t *b) {
  b->len = 0;
}

void m5_buf_free(m5_buf_t *b) {
  free(b->data);
  m5_buf_init(b, b->max);
}

void m5_buf_wipe_free(m5_buf_t *b) {
  if (b->data) explicit_bzero(b->data, b->cap);
  m5_buf_free(b);
}
