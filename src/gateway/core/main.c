/* m5gw: a message gateway of TS 23.554 (cl. 5.3.4): the Legacy 3GPP Message Gateway (kind
 * sms: SMS devices behind an SMSC, MSGin5G-2) or the Non-3GPP Message Gateway (kind mqtt: MQTT
 * devices on a broker, MSGin5G-4), one kind per configuration file (docs/architecture.md).
 * Entry point: arguments, configuration, then the core (gw_core.c). */
#include "core/daemon.h"
#include "core/log.h"
#include "crypto/json_wipe.h"
#include "gateway/core/gw_config.h"
#include "gateway/core/gw_core.h"

#include <stdio.h>

#ifndef M5_VERSION
#define M5_VERSION "unknown"
#endif

static void usage(FILE *out) {
  fprintf(out,
          "usage: m5gw --config FILE\n"
          "       m5gw --help | --version\n\n"
          "Message gateway of MSGin5G (TS 23.554): kind sms (SMPP 3.4 towards an SMSC) or mqtt\n"
          "(an MQTT broker's client); towards m5s over HTTP/2 with mutual TLS and tokens.\n"
          "Kinds built into this binary: %s. SIGTERM or SIGINT commits the spool, stops the\n"
          "adapter and exits 0. docs/gateways.md explains set-up and security.\n\n"
          "configuration keys (YAML mappings: tls.cert is cert: under tls:):\n",
          m5gw_kinds_built());
  m5gw_config_print_help(out);
}

int main(int argc, char **argv) {
  const char *config_path;
  int rc = m5_daemon_args(argc, argv, "m5gw", M5_VERSION, usage, &config_path);
  if (rc >= 0) return rc;
  if (!config_path) {
    fprintf(stderr, "m5gw: --config FILE is required (gw_id and kind have no default)\n");
    return 2;
  }
  m5gw_cfg_t cfg;
  char err[768];
  if (m5gw_config_load(config_path, &cfg, err, sizeof err) != 0) {
    fprintf(stderr, "m5gw: %s\n", err);
    return 1;
  }
  m5_daemon_setup(cfg.core->log_level);
  m5_json_wipe_install();
  rc = m5gw_run(&cfg);
  m5gw_config_free(&cfg);
  if (rc == 0) M5_LOGI("gw", "stopped");
  return rc == 0 ? 0 : 1;
}
