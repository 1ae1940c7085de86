/* The management port's bearer token (docs/admin-api.md, "Authentication"): 256 random bits
 * that m5s writes, as 64 lowercase hex digits, to mgmt.token_file at its first start and reads
 * again at every later one, so m5ctl and operators' scripts keep working across restarts. The
 * file is the credential: it must be a regular file of mode 0600 or narrower (m5s refuses to
 * start otherwise), in a directory created 0700. */
#ifndef M5_SERVER_ADMIN_TOKEN_H
#define M5_SERVER_ADMIN_TOKEN_H

#include <stddef.h>

#define ADMIN_TOKEN_MAX 64 /* 64 hex digits; a token of 43 base64url characters is read too */

/* Reads the token at path, or creates it (parent directories 0700, the file 0600, written to a
 * temporary name and linked into place, so a crash or a second m5s never leaves a partial
 * file). 0 and the token in out (the caller wipes it); else M5_EIO / M5_EPERM / M5_EINVAL with
 * a one-line reason naming mgmt.token_file in err. *created is set when the file was new. */
int admin_token_load(const char *path, char out[ADMIN_TOKEN_MAX + 1], int *created, char *err,
                     size_t errlen);

/* 1 if text (len bytes) is a token as the file may hold one: 64 hex digits or 43 base64url
 * characters (256 bits either way). */
int admin_token_valid(const char *text, size_t len);

#endif
