/* The management token file (admin_token.h). */
#include "server/mgmt/admin_token.h"

#include "core/err.h"
#include "core/fs.h"
#include "crypto/codec.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define KEY "mgmt.token_file"
#define TOKEN_BYTES 32

static int is_hex(char c) {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

static int is_b64url(char c) {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '-' ||
         c == '_';
}

int admin_token_valid(const char *text, size_t len) {
  int (*ok)(char) = len == 64 ? is_hex : len == 43 ? is_b64url : NULL;
  if (!ok) return 0;
  for (size_t i = 0; i < len; i++)
    if (!ok(text[i])) return 0;
  return 1;
}

/* The existing file: regular, not group/other accessible, one token and an optional newline. */
static int read_existing(int fd, const char *path, char out[ADMIN_TOKEN_MAX + 1], char *err,
                         size_t errlen) {
  struct stat st;
  if (fstat(fd, &st) != 0) {
    snprintf(err, errlen, "%s: cannot stat %s: %s", KEY, path, strerror(errno));
    return M5_EIO;
  }
  if (!S_ISREG(st.st_mode)) {
    snprintf(err, errlen, "%s: %s is not a regular file", KEY, path);
    return M5_EINVAL;
  }
  if (st.st_mode & 077) {
    snprintf(err, errlen,
             "%s: %s has mode %04o; it holds the management credential and must not be readable "
             "by others: chmod 600 it (or remove it and m5s writes a new token)",
             KEY, path, (unsigned)(st.st_mode & 07777));
    return M5_EPERM;
  }
  char buf[ADMIN_TOKEN_MAX + 8];
  ssize_t n = read(fd, buf, sizeof buf);
  if (n < 0) {
    snprintf(err, errlen, "%s: cannot read %s: %s", KEY, path, strerror(errno));
    return M5_EIO;
  }
  size_t len = (size_t)n;
  if (len && buf[len - 1] == '\n') len--;
  if (len && buf[len - 1] == '\r') len--;
  int rc = 0;
  if (!admin_token_valid(buf, len)) {
    snprintf(err, errlen,
             "%s: %s does not hold a token (64 hex digits or 43 base64url characters, one "
             "line); remove it and m5s writes a new one",
             KEY, path);
    rc = M5_EINVAL;
  } else {
    memcpy(out, buf, len);
    out[len] = '\0';
  }
  m5_wipe(buf, sizeof buf);
  return rc;
}

static int fsync_dir(const char *path) {
  char dir[4096];
  const char *slash = strrchr(path, '/');
  if (!slash) {
    snprintf(dir, sizeof dir, ".");
  } else if (slash == path) {
    snprintf(dir, sizeof dir, "/");
  } else {
    if ((size_t)(slash - path) >= sizeof dir) return M5_ERANGE;
    snprintf(dir, sizeof dir, "%.*s", (int)(slash - path), path);
  }
  int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return M5_EIO;
  int rc = fsync(fd) == 0 ? 0 : M5_EIO;
  close(fd);
  return rc;
}

/* Writes a fresh token to a temporary file and links it to path: 0, or M5_EEXIST when another
 * process created path meanwhile (the caller reads that one). */
static int create(const char *path, char out[ADMIN_TOKEN_MAX + 1], char *err, size_t errlen) {
  char tmp[4096];
  int n = snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
  if (n < 0 || (size_t)n >= sizeof tmp) {
    snprintf(err, errlen, "%s: '%s' is too long", KEY, path);
    return M5_ERANGE;
  }
  uint8_t raw[TOKEN_BYTES];
  char line[ADMIN_TOKEN_MAX + 2];
  if (m5_random_bytes(raw, sizeof raw) != 0 ||
      m5_hex_encode(raw, sizeof raw, line, sizeof line) != 0) {
    m5_wipe(raw, sizeof raw);
    snprintf(err, errlen, "%s: cannot draw random bytes for the token", KEY);
    return M5_EIO;
  }
  m5_wipe(raw, sizeof raw);
  line[ADMIN_TOKEN_MAX] = '\n';
  unlink(tmp); /* a leftover of a crashed start with our pid */
  int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
  int rc = fd < 0 ? M5_EIO : 0;
  if (rc == 0 && (fchmod(fd, 0600) != 0 || write(fd, line, sizeof line - 1) != (ssize_t)(sizeof line - 1) ||
                  fsync(fd) != 0))
    rc = M5_EIO;
  if (rc != 0) snprintf(err, errlen, "%s: cannot write %s: %s", KEY, tmp, strerror(errno));
  if (fd >= 0) close(fd);
  if (rc == 0 && link(tmp, path) != 0) {
    if (errno == EEXIST) {
      rc = M5_EEXIST;
    } else {
      snprintf(err, errlen, "%s: cannot create %s: %s", KEY, path, strerror(errno));
      rc = M5_EIO;
    }
  }
  if (fd >= 0) unlink(tmp);
  if (rc == 0 && fsync_dir(path) != 0) {
    snprintf(err, errlen, "%s: cannot sync the directory of %s: %s", KEY, path, strerror(errno));
    rc = M5_EIO;
  }
  if (rc == 0) {
    memcpy(out, line, ADMIN_TOKEN_MAX);
    out[ADMIN_TOKEN_MAX] = '\0';
  }
  m5_wipe(line, sizeof line);
  return rc;
}

int admin_token_load(const char *path, char out[ADMIN_TOKEN_MAX + 1], int *created, char *err,
                     size_t errlen) {
  *created = 0;
  if (!path || !path[0]) {
    snprintf(err, errlen, "%s: empty; the management port needs a token file", KEY);
    return M5_EINVAL;
  }
  for (int attempt = 0; attempt < 2; attempt++) {
    int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd >= 0) {
      int rc = read_existing(fd, path, out, err, errlen);
      close(fd);
      return rc;
    }
    if (errno != ENOENT) {
      snprintf(err, errlen, "%s: cannot open %s: %s", KEY, path, strerror(errno));
      return M5_EIO;
    }
    if (m5_fs_mkdir_parents(path, 0700, KEY, err, errlen) != 0) return M5_EIO;
    int rc = create(path, out, err, errlen);
    if (rc != M5_EEXIST) {
      *created = rc == 0;
      return rc;
    }
  }
  snprintf(err, errlen, "%s: %s appears and disappears; is another m5s starting?", KEY, path);
  return M5_EIO;
}
