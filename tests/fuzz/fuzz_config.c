/* libFuzzer harness for the YAML configuration loader: any file content must give either a
 * loaded config or an error message, never a crash or a leak.
 * M5_FUZZ_SOURCES: src/lib/core/config.c src/lib/core/err.c
 * M5_FUZZ_PKGS: yaml-0.1 */
#include "core/config.h"
#include "core/err.h"

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/mman.h>
#include <unistd.h>

typedef struct {
  char *host;
  int64_t port;
  int verbose;
  m5_strlist_t names;
  char *nested;
} fuzz_cfg_t;

static const m5_cfg_item_t items[] = {
    {"listen.host", M5_CFG_STR, offsetof(fuzz_cfg_t, host), "127.0.0.1", 0, 0, "host"},
    {"listen.port", M5_CFG_INT, offsetof(fuzz_cfg_t, port), "7443", 1, 65535, "port"},
    {"verbose", M5_CFG_BOOL, offsetof(fuzz_cfg_t, verbose), "false", 0, 0, "flag"},
    {"afs.allowed", M5_CFG_STRLIST, offsetof(fuzz_cfg_t, names), "localhost", 0, 0, "list"},
    {"a.b.c", M5_CFG_STR, offsetof(fuzz_cfg_t, nested), NULL, 0, 0, "deep"},
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  int fd = memfd_create("cfg", 0);
  if (fd < 0) return 0;
  if (write(fd, data, size) != (ssize_t)size) {
    close(fd);
    return 0;
  }
  char path[64], err[512];
  snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
  fuzz_cfg_t cfg;
  int rc = m5_config_load(path, items, sizeof items / sizeof items[0], &cfg, err, sizeof err);
  if (rc == M5_OK && (cfg.port < 1 || cfg.port > 65535)) __builtin_trap();
  m5_config_free(items, sizeof items / sizeof items[0], &cfg);
  close(fd);
  return 0;
}
