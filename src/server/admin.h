/* m5s management API on the management port (architecture §3.3; docs/admin-api.md):
 * /healthz and the UE Service ID bindings (the SEAL CM role of TS 33.501 Y.2: which
 * subscriber, by SUPI, may register which UE Service ID). HTTP/1.1 or h2c, loopback only,
 * no authentication (the configuration refuses any other address). Changes go through the
 * registry's DB thread and are answered once committed; a changed or removed binding closes
 * the UE's live session. Also /metrics (Prometheus text) and /admin/v1/stats (the same figures
 * as JSON): see admin_stats_t. */
#ifndef M5_SERVER_ADMIN_H
#define M5_SERVER_ADMIN_H

#include "core/loop.h"
#include "http/server.h"
#include "server/registry.h"
#include "server/router.h"
#include "store/store.h"

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

typedef struct admin admin_t;

/* The figures of GET /metrics and GET /admin/v1/stats (docs/admin-api.md). With
 * admin_opts_t.store the store's come from m5_store_stats() (queued = .queued, delivered =
 * .delivered, expired = .expired, failed = .failed, refused_queue_full / refused_store_full
 * and duplicates = the same names); sessions and registrations are the server's own gauges,
 * filled by admin_opts_t.stats. */
typedef struct {
  uint64_t queued;                                 /* gauge: deliveries PENDING now */
  uint64_t delivered, expired, failed, duplicates; /* counters since start */
  uint64_t refused_queue_full, refused_store_full; /* counters since start */
  uint64_t sessions_dtls, sessions_tls;            /* gauges: live MSGin5G-1 sessions */
  uint64_t registrations;                          /* gauge: unexpired UE registrations */
} admin_stats_t;

/* Fills in *out (already holding the store's figures, or zeroes) on the admin's loop; must
 * not block. */
typedef void (*admin_stats_fn)(void *arg, admin_stats_t *out);

typedef struct {
  registry_t *reg;
  router_t *router;
  const atomic_int *ready; /* /healthz answers 200 once this is non-zero */
  size_t max_inflight;     /* registry jobs outstanding; beyond: 503; 0 = 64 */
  m5_store_t *store;       /* NULL: the store's figures are 0, and a re-bind fails no queue */
  int64_t max_ttl_s;       /* exprTime of the RECIPIENT_REBOUND reports; 0 = 86400 */
  admin_stats_fn stats;    /* NULL: sessions and registrations are 0 */
  void *stats_arg;
} admin_opts_t;

admin_t *admin_new(m5_loop_t *loop, const admin_opts_t *opts);
/* Only once admin_when_idle() reported idle, or after the registry is closed. */
void admin_free(admin_t *a);
/* m5_http_handler_fn for the management listener (arg = admin_t *). */
void admin_handle(m5_http_exchange_t *ex, const m5_http_request_t *req, void *arg);
/* done(arg) on the loop once no registry job is outstanding (at once if none is). */
void admin_when_idle(admin_t *a, void (*done)(void *arg), void *arg);

#endif
