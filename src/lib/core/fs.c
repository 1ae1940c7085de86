/* File system helpers (see fs.h). */
#include "fs.h"

#include "err.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

int m5_fs_mkdir_parents(const char *path, mode_t mode, const char *what, char *err, size_t errlen) {
  char dir[4096];
  size_t n = strlen(path);
  if (n >= sizeof dir) {
    snprintf(err, errlen, "%s: '%s' is too long", what, path);
    return M5_ERANGE;
  }
  memcpy(dir, path, n + 1);
  char *slash = strrchr(dir, '/');
  if (!slash || slash == dir) return 0;
  *slash = '\0';
  for (char *p = dir + 1;; p++) {
    if (*p != '/' && *p != '\0') continue;
    char c = *p;
    *p = '\0';
    if (mkdir(dir, mode) != 0 && errno != EEXIST) {
      snprintf(err, errlen, "cannot create directory %s for %s: %s", dir, what, strerror(errno));
      return M5_EIO;
    }
    *p = c;
    if (c == '\0') break;
  }
  return 0;
}
