/* Status codes (err.h): their short English descriptions, for logs and CLI messages. */
#include "core/err.h"

#include <stdarg.h>
#include <stdio.h>

const char *m5_strerror(int status) {
  switch (status) {
  case M5_OK:
    return "success";
  case M5_EINVAL:
    return "invalid argument";
  case M5_ENOMEM:
    return "out of memory";
  case M5_EIO:
    return "input/output error";
  case M5_ENOENT:
    return "not found";
  case M5_EEXIST:
    return "already exists";
  case M5_EAGAIN:
    return "try again later";
  case M5_EFULL:
    return "queue or pool full";
  case M5_ERANGE:
    return "out of range";
  case M5_EPERM:
    return "not allowed";
  case M5_EPROTO:
    return "protocol error";
  case M5_ETIMEDOUT:
    return "timed out";
  case M5_ECRYPTO:
    return "cryptographic failure";
  case M5_ECLOSED:
    return "closed";
  default:
    return "unknown error";
  }
}

void m5_set_why(char *why, size_t whylen, const char *fmt, ...) {
  if (!why || !whylen) return;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(why, whylen, fmt, ap);
  va_end(ap);
}
