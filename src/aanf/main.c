/* m5-aanf: the AKMA Anchor Function (TS 33.535, Naanf_AKMA of TS 29.535) that stands in for
 * the operator's AAnF (architecture §2, §3.4). Entry point: arguments, configuration, TLS
 * context and database, then the runtime in aanf_run.c. */
#include "aanf_config.h"
#include "aanf_db.h"
#include "aanf_msg.h"
#include "aanf_run.h"
#include "core/log.h"
#include "tls/tls.h"

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
  fputs(
      "usage: m5-aanf [--config FILE]\n"
      "       m5-aanf --help | --version\n\n"
      "AKMA Anchor Function: Naanf_AKMA (TS 29.535) over HTTP/2 with mutual TLS.\n"
      "Runs with built-in defaults when no configuration file is given; SIGTERM or SIGINT\n"
      "drains and exits 0.\n\nconfiguration keys (YAML mappings: tls.cert is cert: under tls:):\n",
      out);
  aanf_config_print_help(out);
}

static size_t worker_count(const aanf_config_t *cfg) {
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
      printf("m5-aanf %s\n", M5_VERSION);
      return 0;
    }
    if (!strcmp(argv[i], "--config") && i + 1 < argc) {
      config_path = argv[++i];
      continue;
    }
    fprintf(stderr, "m5-aanf: unknown argument '%s'; see m5-aanf --help\n", argv[i]);
    return 2;
  }

  aanf_config_t cfg;
  char err[512];
  if (aanf_config_load(config_path, &cfg, err, sizeof err) != 0) {
    fprintf(stderr, "m5-aanf: %s\n", err);
    aanf_config_free(&cfg);
    return 1;
  }
  m5_log_level_t level;
  m5_log_level_parse(cfg.log_level, &level);
  m5_log_set_level(level);

  /* Files this process creates (the database, its WAL) hold K_AKMA: owner only. */
  umask(077);
  /* A peer closing mid-write must not kill the process; the loops own the other signals. */
  signal(SIGPIPE, SIG_IGN);
  static const int sigs[] = {SIGTERM, SIGINT};
  m5_signals_block(sigs, sizeof sigs / sizeof sigs[0]);
  aanf_msg_init();

  m5_tls_opts_t to = {.cert_file = cfg.tls_cert,
                      .key_file = cfg.tls_key,
                      .ca_file = cfg.tls_ca,
                      .verify_peer = 1,
                      .alpn = "h2"};
  SSL_CTX *tls = m5_tls_server_ctx_new(&to, err, sizeof err);
  if (!tls) {
    fprintf(stderr, "m5-aanf: %s (%s)\n", err,
            config_path ? config_path : "built-in defaults, relative to the working directory");
    aanf_config_free(&cfg);
    return 1;
  }
  aanf_db_t *db = aanf_db_open(cfg.db_path, err, sizeof err);
  if (!db) {
    fprintf(stderr, "m5-aanf: %s\n", err);
    SSL_CTX_free(tls);
    aanf_config_free(&cfg);
    return 1;
  }
  int rc = aanf_run(&cfg, tls, db, worker_count(&cfg));
  aanf_db_close(db);
  SSL_CTX_free(tls);
  aanf_config_free(&cfg);
  if (rc == 0) M5_LOGI("aanf", "stopped");
  return rc == 0 ? 0 : 1;
}
