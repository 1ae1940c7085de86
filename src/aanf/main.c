/* m5-aanf: the AKMA Anchor Function (TS 33.535, Naanf_AKMA of TS 29.535) that stands in for
 * the operator's AAnF (architecture §2, §3.4). Entry point: arguments, configuration, TLS
 * context and database, then the runtime in aanf_run.c. */
#include "aanf_config.h"
#include "aanf_db.h"
#include "aanf_msg.h"
#include "aanf_run.h"
#include "core/daemon.h"
#include "core/log.h"
#include "tls/tls.h"

#include <stdio.h>

#ifndef M5_VERSION
#define M5_VERSION "unknown"
#endif

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

int main(int argc, char **argv) {
  const char *config_path;
  int rc = m5_daemon_args(argc, argv, "m5-aanf", M5_VERSION, usage, &config_path);
  if (rc >= 0) return rc;

  aanf_config_t cfg;
  char err[512];
  if (aanf_config_load(config_path, &cfg, err, sizeof err) != 0) {
    fprintf(stderr, "m5-aanf: %s\n", err);
    aanf_config_free(&cfg);
    return 1;
  }
  m5_daemon_setup(cfg.log_level);
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
  rc = aanf_run(&cfg, tls, db, m5_daemon_workers(cfg.workers));
  aanf_db_close(db);
  SSL_CTX_free(tls);
  aanf_config_free(&cfg);
  if (rc == 0) M5_LOGI("aanf", "stopped");
  return rc == 0 ? 0 : 1;
}
