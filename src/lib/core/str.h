/* Bounded string copies for the per-message paths: snprintf(dst, cap, "%s", src) costs about
 * 600 instructions through vfprintf for what strnlen + memcpy do in a few dozen
 * (docs/benchmarks.md, "Where the worker threads' instructions per message went"). Same
 * result: at most cap - 1 bytes, always NUL-terminated (when cap > 0). */
#ifndef M5_CORE_STR_H
#define M5_CORE_STR_H

#include <stddef.h>
#include <string.h>

/* Copies src into dst[cap], truncated; returns the length copied. */
static inline size_t m5_str_copy(char *dst, size_t cap, const char *src) {
  if (!cap) return 0;
  size_t n = strnlen(src, cap - 1);
  memcpy(dst, src, n);
  dst[n] = '\0';
  return n;
}

/* "a" sep "b" into dst[cap], truncated like snprintf(dst, cap, "%s%c%s", a, sep, b). */
static inline void m5_str_join(char *dst, size_t cap, const char *a, char sep, const char *b) {
  size_t n = m5_str_copy(dst, cap, a);
  if (n + 1 < cap) {
    dst[n] = sep;
    m5_str_copy(dst + n + 1, cap - n - 1, b);
  }
}

#endif
