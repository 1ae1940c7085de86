/* m5-aanf configuration: the settings, their defaults and the YAML table that loads them
 * (architecture §2: one YAML file, sane defaults so the daemon starts with no file at all). */
#ifndef M5_AANF_CONFIG_H
#define M5_AANF_CONFIG_H

#include "core/config.h"

#include <stddef.h>
#include <stdint.h>

typedef struct {
  char *listen_host; /* Naanf_AKMA: HTTP/2 over mutual TLS */
  int64_t listen_port;
  char *mgmt_host; /* /healthz: HTTP/1.1 and h2c, loopback only */
  int64_t mgmt_port;
  char *tls_cert;
  char *tls_key;
  char *tls_ca;
  char *db_path;
  int64_t kaf_lifetime_s;   /* K_AF expiry = time of the request + this (TS 33.535 6.2) */
  m5_strlist_t afs_allowed; /* AF FQDNs that may retrieve K_AF */
  int64_t workers;          /* 0 = one per CPU it may run on */
  int64_t max_body;         /* request bodies above this get 413 */
  char *log_level;
} aanf_config_t;

/* Loads defaults, then path's values (path may be NULL), then checks the values that the
 * table cannot (hosts, FQDNs on the allow-list, log level). err gets one line naming the key. */
int aanf_config_load(const char *path, aanf_config_t *cfg, char *err, size_t errlen);
void aanf_config_free(aanf_config_t *cfg);
void aanf_config_print_help(void *stream /* FILE * */);

#endif
