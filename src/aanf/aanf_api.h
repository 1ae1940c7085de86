/* Naanf_AKMA service operations of m5-aanf (TS 29.535 cl. 5.2.2, 6.1) and its management
 * endpoint: HTTP handlers that authorise the caller by its certificate (architecture §3.4,
 * §4), parse with aanf_msg, hand storage to the DB thread and answer when it replies.
 * One aanf_api_t per worker loop. */
#ifndef M5_AANF_API_H
#define M5_AANF_API_H

#include "aanf_db.h"
#include "core/config.h"
#include "core/loop.h"
#include "http/server.h"

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#define AANF_AUSF_URI "urn:msgin5g:ausf" /* SAN URI of callers in the AUSF role */

typedef struct aanf_api aanf_api_t;

typedef struct {
  aanf_db_t *db;
  const m5_strlist_t *afs_allowed; /* borrowed; FQDNs allowed to retrieve K_AF */
  int64_t kaf_lifetime_s;
  const atomic_int *ready; /* /healthz answers 200 once this is non-zero */
  size_t max_inflight;     /* outstanding DB jobs per worker; more get 503 */
} aanf_api_opts_t;

aanf_api_t *aanf_api_new(m5_loop_t *loop, const aanf_api_opts_t *opts);
/* Only once aanf_api_when_idle() has reported idle (no DB job outstanding). */
void aanf_api_free(aanf_api_t *api);

/* m5_http_handler_fn for the Naanf_AKMA listener (arg = aanf_api_t *). */
void aanf_api_sbi(m5_http_exchange_t *ex, const m5_http_request_t *req, void *arg);
/* m5_http_handler_fn for the management listener (arg = aanf_api_t *). */
void aanf_api_mgmt(m5_http_exchange_t *ex, const m5_http_request_t *req, void *arg);

/* Calls done(arg) on the loop once no DB job is outstanding (at once if none is). */
void aanf_api_when_idle(aanf_api_t *api, void (*done)(void *arg), void *arg);

#endif
