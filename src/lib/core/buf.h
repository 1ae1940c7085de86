/* A growable byte buffer with a hard cap, for I/O and building bodies. */
#ifndef M5_CORE_BUF_H
#define M5_CORE_BUF_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
  uint8_t *data;
  size_t len; /* bytes in use, from data[0] */
  size_t cap; /* bytes allocated */
  size_t max; /* growth limit; 0 = SIZE_MAX/2 */
} m5_buf_t;

void m5_buf_init(m5_buf_t *b, size_t max);
/* Appends n bytes; M5_ERANGE if that would pass max, M5_ENOMEM if allocation fails. */
int m5_buf_append(m5_buf_t *b, const void *p, size_t n);
int m5_buf_printf(m5_buf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Drops the first n bytes (n <= len). */
void m5_buf_consume(m5_buf_t *b, size_t n);
void m5_buf_reset(m5_buf_t *b);     /* len = 0, keeps the allocation */
void m5_buf_free(m5_buf_t *b);      /* frees (without wiping) */
void m5_buf_wipe_free(m5_buf_t *b); /* wipes the allocation, then frees: for secrets */

#endif
