/* Status codes shared by every module: 0 = success, negative M5_E* = failure.
 * Functions returning pointers use NULL for failure instead. */
#ifndef M5_CORE_ERR_H
#define M5_CORE_ERR_H

#include <stddef.h>

enum {
  M5_OK = 0,
  M5_EINVAL = -1,  /* bad argument or malformed input */
  M5_ENOMEM = -2,  /* allocation failed */
  M5_EIO = -3,     /* system call or I/O failed (errno says more) */
  M5_ENOENT = -4,  /* no such object */
  M5_EEXIST = -5,  /* already there */
  M5_EAGAIN = -6,  /* try again later (would block) */
  M5_EFULL = -7,   /* bounded queue or pool exhausted */
  M5_ERANGE = -8,  /* value or length out of range */
  M5_EPERM = -9,   /* not allowed */
  M5_EPROTO = -10, /* protocol violation by the peer */
  M5_ETIMEDOUT = -11,
  M5_ECRYPTO = -12, /* a cryptographic primitive failed */
  M5_ECLOSED = -13, /* the connection or object is gone */
};

/* A short English description of a status code ("invalid argument", ...). */
const char *m5_strerror(int status);

/* Writes a diagnostic for the caller (printf format) into why[whylen]; nothing when why is NULL
 * or whylen 0, so callers that do not want the text pass NULL. */
__attribute__((format(printf, 3, 4))) void m5_set_why(char *why, size_t whylen, const char *fmt,
                                                      ...);

#endif
