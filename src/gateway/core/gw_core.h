/* m5gw's core, seen from main.c: runs the gateway of a loaded configuration until SIGTERM or
 * SIGINT (gw_core.c). */
#ifndef M5_GATEWAY_GW_CORE_H
#define M5_GATEWAY_GW_CORE_H

#include "gateway/core/gw_config.h"

#include <sys/socket.h>

/* 0 after a clean stop, else a negative M5_E* after printing why on stderr. */
int m5gw_run(const m5gw_cfg_t *cfg);

#endif
