/* m5s: the MSGin5G Server (TS 23.554) and AKMA AF (TS 33.535). Entry point: arguments,
 * configuration and the registry, then the runtime in server_run.c. */
#include "core/log.h"
#include "core/loop.h"
#include "server/registry.h"
#include "server/server_config.h"
#include "server/server_run.h"

#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#ifndef M5_VERSION
#define M5_VERSION "unknown"
#endif
#define MAX_WORKERS 64

static void usage(FILE *out) {
  fputs("usage: m5s [--config FILE]\n"
        "       m5s --help | --version\n\n"
        "MSGin5G Server: MSGin5G-1 (CoAP over DTLS and over TLS, keyed by AKMA) for UEs, and a\n"
        "management port with /healthz and the admin API. Runs with built-in defaults when no\n"
        "configuration file is given; SIGTERM or SIGINT drains and exits 0.\n\n"
        "configuration keys (YAML mappings: tls.cert is cert: under tls:):\n",
        out);
  server_config_print_help(out);
}

static size_t worker_count(const server_config_t *cfg) {
  long n = cfg->workers > 0 ? (long)cfg->workers : sysconf(_SC_NPROCESSORS_ONLN);
  if (n < 1) n = 1;
  if (n > MAX_WORKERS) n = MAX_WORKERS;
  return (size_t)n;
}

int main(int argc, char **argv) {
  const char *config_path = NULL;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
      usage(stdout);
      return 0;
    }
    if (!strcmp(argv[i], "--version")) {
      printf("m5s %s\n", M5_VERSION);
      return 0;
    }
    if (!strcmp(argv[i], "--config") && i + 1 < argc) {
      config_path = argv[++i];
      continue;
    }
    fprintf(stderr, "m5s: unknown argument '%s'; see m5s --help\n", argv[i]);
    return 2;
  }

  server_config_t cfg;
  char err[512];
  if (server_config_load(config_path, &cfg, err, sizeof err) != 0) {
    fprintf(stderr, "m5s: %s\n", err);
    server_config_free(&cfg);
    return 1;
  }
  m5_log_level_t level;
  m5_log_level_parse(cfg.log_level, &level);
  m5_log_set_level(level);

  /* The database names subscribers (SUPIs): owner only. */
  umask(077);
  /* A peer closing mid-write must not kill the process; the loops own the other signals. */
  signal(SIGPIPE, SIG_IGN);
  static const int sigs[] = {SIGTERM, SIGINT};
  m5_signals_block(sigs, sizeof sigs / sizeof sigs[0]);

  registry_t *reg = registry_open(cfg.db_path, err, sizeof err);
  if (!reg) {
    fprintf(stderr, "m5s: %s\n", err);
    server_config_free(&cfg);
    return 1;
  }
  int rc = server_run(&cfg, reg, worker_count(&cfg));
  server_config_free(&cfg);
  if (rc == 0) M5_LOGI("m5s", "stopped");
  return rc == 0 ? 0 : 1;
}
