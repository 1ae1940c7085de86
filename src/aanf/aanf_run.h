/* m5-aanf runtime (architecture §6): N worker threads, each with its own loop, its own
 * Naanf_AKMA server on the shared port (SO_REUSEPORT) and its own aanf_api; worker 0 also
 * serves the management port and handles SIGTERM/SIGINT; the DB thread behind them all. */
#ifndef M5_AANF_RUN_H
#define M5_AANF_RUN_H

#include "aanf_config.h"
#include "aanf_db.h"

#include <openssl/ssl.h>
#include <stddef.h>

/* Sets everything up (listeners bound before returning errors), runs until SIGTERM or
 * SIGINT, drains (GOAWAY, in-flight requests answered, at most about 4 s) and tears down.
 * The caller keeps tls and db. Returns 0, or a negative status after printing why. */
int aanf_run(const aanf_config_t *cfg, SSL_CTX *tls, aanf_db_t *db, size_t n_workers);

#endif
