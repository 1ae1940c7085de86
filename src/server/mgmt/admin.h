/* m5s management API on the management port (architecture §3.3; docs/admin-api.md):
 * /healthz and the UE Service ID bindings (the SEAL CM role of TS 33.501 Y.2: which
 * subscriber, by SUPI, may register which UE Service ID). HTTP/1.1 or h2c, loopback only (the
 * configuration refuses any other address: off loopback it would need mutual TLS too). Every
 * request but GET /healthz, /metrics and /admin/v1/stats must carry Authorization: Bearer
 * <the token of mgmt.token_file> (admin_token.h), else 401 and nothing changes. Changes go
 * through the registry's DB thread and are answered once committed; a changed or removed
 * binding closes the UE's live session. Also /metrics (Prometheus text) and /admin/v1/stats
 * (the same figures as JSON): see admin_stats_t. */
#ifndef M5_SERVER_ADMIN_H
#define M5_SERVER_ADMIN_H

#include "core/loop.h"
#include "http/server.h"
#include "server/delivery/router.h"
#include "server/registry/registry.h"
#include "server/topics/topics_rules.h"
#include "store/store.h"

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

typedef struct admin admin_t;

/* The figures of GET /metrics and GET /admin/v1/stats (docs/admin-api.md). With
 * admin_opts_t.store the store's come from m5_store_stats() (queued = .queued, delivered =
 * .delivered, expired = .expired, failed = .failed, refused_queue_full / refused_store_full /
 * refused_originator_quota, reports_dropped, requeued, synchronous and duplicates = the same
 * names); sessions and registrations are the server's own gauges,
 * filled by admin_opts_t.stats. */
typedef struct {
  uint64_t queued;                                 /* gauge: deliveries PENDING now */
  uint64_t delivered, expired, failed, duplicates; /* counters since start */
  uint64_t refused_queue_full, refused_store_full; /* counters since start */
  uint64_t sessions_dtls, sessions_tls;            /* gauges: live MSGin5G-1 sessions */
  uint64_t registrations;                          /* gauge: unexpired UE registrations */
  /* AKMA key fetches (counters since start): AAnF requests started, and handshakes refused by
   * a bound (src_limits.h), by reason */
  uint64_t akma_fetches;
  uint64_t akma_refused_handshakes, akma_refused_handshakes_addr, akma_refused_handshakes_prefix;
  uint64_t akma_refused_fetches, akma_refused_fetches_addr, akma_refused_fetches_prefix;
  uint64_t akma_refused_unknown_rate, akma_refused_table_full;
  uint64_t refused_originator_quota;               /* counter: a sender over its quota */
  uint64_t reports_dropped;  /* counter: failure reports beyond max_reports_per_recipient */
  uint64_t requeued;         /* counter: in-flight deliveries never concluded, queued again */
  uint64_t synchronous;      /* gauge: the store's PRAGMA synchronous (2 = FULL) */
  uint64_t commits_synced, commits_unsynced; /* counters: the store's commits with and without
                                                their own fsync (conclusions alone) */
  uint64_t sqlite_memory;    /* gauge: bytes SQLite holds in the process (page cache included) */
  /* Messages in flight in the workers (ue_api_figures): gauges of the accepts waiting for the
   * store and the UE requests waiting for room (back-pressure), with the bytes each holds;
   * counters of requests that waited and that were refused 5.03 busy. */
  uint64_t accepts_in_flight, accept_bytes, requests_waiting, requests_waiting_bytes;
  uint64_t requests_waited, requests_busy;
  uint64_t store_cache_bytes; /* gauge: SQLite's page cache (m5_store_stats_t.cache_bytes) */
  /* gauges of the JetStream store (0 on SQLite): connected to NATS, consumer lag */
  uint64_t store_js_connected, store_js_consumer_pending;
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
  admin_stats_fn stats;    /* NULL: sessions and registrations are 0 */
  void *stats_arg;
  /* The bearer token (admin_token.h), borrowed by admin_new, which keeps only its SHA-256;
   * NULL or "": every request but the open ones is refused. */
  const char *token;
  topics_rules_t *topic_rules; /* GET/PUT /admin/v1/topic-rules; NULL: 404 */
  struct ue_api *api; /* this worker's: a removed gateway's IDs are told to the store; or NULL */
} admin_opts_t;

admin_t *admin_new(m5_loop_t *loop, const admin_opts_t *opts);
/* Only once admin_when_idle() reported idle, or after the registry is closed. */
void admin_free(admin_t *a);
/* m5_http_handler_fn for the management listener (arg = admin_t *). */
void admin_handle(m5_http_exchange_t *ex, const m5_http_request_t *req, void *arg);
/* done(arg) on the loop once no registry job is outstanding (at once if none is). */
void admin_when_idle(admin_t *a, void (*done)(void *arg), void *arg);

#endif
