/* m5s runtime (architecture §6): N worker threads, each with its own loop, its own MSGin5G-1
 * listeners (DTLS/UDP and TLS/TCP on the shared port, SO_REUSEPORT), its own K_AF source and
 * ue_api; worker 0 also serves the management port and handles SIGTERM/SIGINT; the registry's
 * DB thread behind them all; the router between them. */
#ifndef M5_SERVER_RUN_H
#define M5_SERVER_RUN_H

#include "server/registry/registry.h"
#include "server/server_config.h"
#include "store/store.h"

#include <stddef.h>

/* Process-wide setup, first thing in main (before any thread, database or JSON): SQLite's
 * memory statistics off (m5_store_process_init) and jansson's freed buffers wiped (the K_AF
 * of every AkmaAfKeyData m5s reads passes through them in hex: crypto/json_wipe.h). */
void server_process_init(void);

/* Sets everything up (listeners bound before any error is returned), runs until SIGTERM or
 * SIGINT, drains (new requests 5.03, outstanding ones answered, at most about 3 s) and tears
 * down. Takes reg (opened, not started) and store (open) and closes both. Returns 0, or a
 * negative status after printing why. */
int server_run(const server_config_t *cfg, registry_t *reg, m5_store_t *store, size_t n_workers);

#endif
