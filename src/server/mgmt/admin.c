/* Management handlers: the bearer token check in front of everything but GET /healthz,
 * /metrics and /admin/v1/stats; /healthz, /admin/v1/bindings/{ueSvcId}, /metrics (Prometheus
 * text exposition format 0.0.4) and /admin/v1/stats (see admin.h and docs/admin-api.md).
 * Errors are RFC 9457 problem details with invalidParams naming the offending member. */
#include "server/mgmt/admin_int.h"

#include "core/err.h"
#include "core/log.h"
#include "http/problem.h"
#include "msg/msg.h"
#include "server/test_hooks.h"

#include <jansson.h>
#include <openssl/crypto.h>
#include <openssl/sha.h>
#include <signal.h>
#include <sqlite3.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define DOM "admin"
#define BINDINGS "/admin/v1/bindings/"
#define STATS "/admin/v1/stats"
#define METRICS "/metrics"
#define CT_PROM "text/plain; version=0.0.4; charset=utf-8"

void admin_respond_json(m5_http_exchange_t *ex, int status, json_t *o) {
  char *text = o ? json_dumps(o, JSON_COMPACT) : NULL;
  json_decref(o);
  if (!text) {
    m5_http_respond(ex, 500, NULL, NULL, 0);
    return;
  }
  m5_http_respond(ex, status, CT_JSON, text, strlen(text));
  free(text);
}

void admin_problem(m5_http_exchange_t *ex, int status, const char *title, const char *detail,
                   const char *param, const char *reason, const m5_http_header_t *extra) {
  m5_problem_respond(ex, status, m5_problem_json(status, title, NULL, detail, param, reason),
                     extra);
}

static json_t *binding_json(const char *id, const char *supi, int registered) {
  return json_pack("{s:s, s:s, s:b}", "ueSvcId", id, "supi", supi, "registered", registered);
}

static void idle_check(admin_t *a) {
  if (a->inflight == 0 && a->idle_cb) {
    void (*cb)(void *) = a->idle_cb;
    a->idle_cb = NULL;
    cb(a->idle_arg);
  }
}

void admin_finish(pending_t *p) {
  admin_t *a = p->a;
  free(p->as);
  free(p->gw);
  if (p->job.op == REGISTRY_GW_DEL || p->job.op == REGISTRY_GW_PUT) {
    free(p->job.ids); /* the released IDs, the registry's */
    free(p->job.gens);
  }
  free(p);
  admin_job_done(a);
}

void admin_job_done(admin_t *a) {
  a->inflight--;
  idle_check(a);
}

/* The subscriber behind a UE Service ID changed or went away: its session must not stay. */
static void kick(admin_t *a, const char *id) {
  int rc = router_kick(a->opts.router, id);
  if (rc == 0)
    M5_LOGI(DOM, "%s: binding changed; closing its live session", id);
  else if (rc != M5_ENOENT)
    M5_LOGW(DOM, "%s: binding changed, but its live session could not be closed: %s", id,
            m5_strerror(rc));
}

/* ---- a binding that changed: its queue in the message store (docs/delivery.md) ---- */

#define REBIND_RETRY_MS 200
/* A REBIND the store failed (I/O error, full disk) is retried on a timer, from this delay
 * doubling up to the most, until the store has it; at most RETRIES_MAX at once (beyond, and at
 * shutdown, it is left to the next start, and to the store's catch-up: a message from or to
 * the new subscriber runs the missed REBIND itself, docs/store.md). */
#define REBIND_FAIL_RETRY_MS 1000
#define REBIND_FAIL_RETRY_MAX_MS 60000
#define RETRIES_MAX 16

/* M5_STORE_REBIND for a binding that changed (job.base is first: the store hands it back). */
typedef struct admin_rebind {
  m5_store_job_t job;
  pending_t *p; /* the HTTP exchange, answered with the count of failed deliveries; NULL once
                   answered (a retry) */
  admin_t *a;
  uint64_t delay_ms;          /* a retry's next delay */
  m5_timer_id_t timer;        /* a retry waiting */
  struct admin_rebind *next;  /* in a->retries while waiting */
} rebind_t;

/* The answer of a PUT or DELETE once the message store knows of the change (failed: the
 * deliveries it failed; -1: it could not be told, see the log). */
static void answer_binding(pending_t *p, int64_t failed) {
  registry_job_t *job = &p->job;
  json_t *o;
  int status;
  if (job->op == REGISTRY_UNBIND) {
    o = json_pack("{s:s}", "ueSvcId", job->ue_svc_id);
    status = 200;
  } else {
    registry_entry_t e;
    int registered =
        registry_lookup(p->a->opts.reg, job->ue_svc_id, (int64_t)time(NULL), &e) == 0 &&
        e.registered;
    o = binding_json(job->ue_svc_id, job->supi, registered);
    status = job->created ? 201 : 200;
  }
  if (o && failed >= 0) json_object_set_new(o, "failedDeliveries", json_integer(failed));
  admin_respond_json(p->ex, status, o);
  admin_finish(p);
}

static void rebind_submit(m5_loop_t *loop, void *arg) {
  rebind_t *rb = arg;
  if (m5_store_submit(rb->p->a->opts.store, &rb->job) == 0) return;
  /* The store's queue is full: the change is committed in the registry and must reach the
   * store too; until it does, deliveries of the old generation are never pushed to a new
   * session (delivery.c), and m5s repeats it at its next start. */
  if (m5_loop_timer_add(loop, REBIND_RETRY_MS, rebind_submit, rb)) return;
  M5_LOGE(DOM, "%s: cannot tell the message store of the binding change; it is told at the next "
               "start", rb->job.rcpt.addr);
  answer_binding(rb->p, -1);
  free(rb);
}

static void retry_unlink(admin_t *a, rebind_t *rb) {
  for (rebind_t **pp = &a->retries; *pp; pp = &(*pp)->next)
    if (*pp == rb) {
      *pp = rb->next;
      a->n_retries--;
      return;
    }
}

/* A retry's timer: submitted again (counted in inflight while the store has it, so that a
 * shutdown waits for its reply), or, with the store's queue full, after the same delay. */
static void retry_fire(m5_loop_t *loop, void *arg) {
  rebind_t *rb = arg;
  admin_t *a = rb->a;
  rb->timer = 0;
  m5_store_job_clear(&rb->job);
  rb->job.status = 0;
  if (m5_store_submit(a->opts.store, &rb->job) == 0) {
    retry_unlink(a, rb);
    a->inflight++;
    return;
  }
  if ((rb->timer = m5_loop_timer_add(loop, rb->delay_ms, retry_fire, rb)) != 0) return;
  retry_unlink(a, rb);
  M5_LOGE(DOM, "%s: cannot retry telling the message store of the binding change; it is told at "
               "the next start", rb->job.rcpt.addr);
  free(rb);
}

/* Keeps rb for a retry after its delay (doubling); 0, or -1 when it cannot (rb is the
 * caller's to free). */
static int retry_later(admin_t *a, rebind_t *rb) {
  if (a->idle_cb || a->n_retries >= RETRIES_MAX) return -1; /* shutting down, or too many */
  rb->delay_ms = rb->delay_ms ? rb->delay_ms * 2 : REBIND_FAIL_RETRY_MS;
  if (rb->delay_ms > REBIND_FAIL_RETRY_MAX_MS) rb->delay_ms = REBIND_FAIL_RETRY_MAX_MS;
  if (!(rb->timer = m5_loop_timer_add(a->loop, rb->delay_ms, retry_fire, rb))) return -1;
  rb->next = a->retries;
  a->retries = rb;
  a->n_retries++;
  return 0;
}

static void on_rebind_reply(void *msg, void *arg) {
  admin_t *a = arg;
  if (((m5_store_job_t *)msg)->op == M5_STORE_TOPIC_UNSUB) { /* admin_topics.c */
    admin_as_topics_done(msg);
    return;
  }
  rebind_t *rb = msg;
  pending_t *p = rb->p;
  rb->p = NULL;
  if (rb->job.status != 0) {
    if (p) answer_binding(p, -1);
    else a->inflight--;
    if (retry_later(a, rb) == 0) {
      M5_LOGE(DOM, "%s: the message store failed to start it clean (%s); retrying in %llu ms",
              rb->job.rcpt.addr, m5_strerror(rb->job.status), (unsigned long long)rb->delay_ms);
      idle_check(a);
      return;
    }
    M5_LOGE(DOM, "%s: the message store failed to start it clean (%s); it does at the next "
                 "start, or with the first message from or to the new subscriber",
            rb->job.rcpt.addr, m5_strerror(rb->job.status));
  } else {
    M5_LOGI(DOM, "%s: %llu queued deliveries failed (RECIPIENT_REBOUND)%s", rb->job.rcpt.addr,
            (unsigned long long)rb->job.rebind_failed, p ? "" : " (retried)");
    if (p) answer_binding(p, (int64_t)rb->job.rebind_failed);
    else a->inflight--;
  }
  m5_store_job_clear(&rb->job);
  free(rb);
  idle_check(a);
}

/* Drops the retries waiting for their timer (shutdown): the next start repeats them. */
static void drop_retries(admin_t *a) {
  while (a->retries) {
    rebind_t *rb = a->retries;
    a->retries = rb->next;
    if (rb->timer) m5_loop_timer_cancel(a->loop, rb->timer);
    M5_LOGW(DOM, "%s: shutting down before the message store had the binding change; it is told "
                 "at the next start", rb->job.rcpt.addr);
    m5_store_job_clear(&rb->job);
    free(rb);
  }
  a->n_retries = 0;
}

/* The binding of p's job got a new generation: the store fails the old subscriber's queue and
 * drops its dedup state, then the exchange is answered. */
static void start_rebind(pending_t *p) {
  admin_t *a = p->a;
  char hook[4096]; /* test builds: m5s dies between the registry's commit and the store's */
  if (m5_test_hook_armed("kill-before-store-rebind", hook, sizeof hook)) raise(SIGKILL);
  rebind_t *rb = a->opts.store ? calloc(1, sizeof *rb) : NULL;
  if (!rb) {
    answer_binding(p, a->opts.store ? -1 : 0);
    return;
  }
  rb->p = p;
  rb->a = a;
  rb->job.op = M5_STORE_REBIND;
  rb->job.arg = rb;
  rb->job.base.reply = a->store_replies;
  snprintf(rb->job.rcpt.type, sizeof rb->job.rcpt.type, "UE");
  snprintf(rb->job.rcpt.addr, sizeof rb->job.rcpt.addr, "%s", p->job.ue_svc_id);
  rb->job.gen = p->job.gen;
  rebind_submit(a->loop, rb);
}

static void on_reply(void *msg, void *arg) {
  (void)arg;
  pending_t *p = msg;
  registry_job_t *job = &p->job;
  if (job->op == REGISTRY_GROUPS) {
    admin_groups_done(msg);
    return;
  }
  if (job->as) {
    admin_as_done(p);
    return;
  }
  if (job->gw) {
    admin_gw_done(p);
    return;
  }
  if (job->op == REGISTRY_POLICY_PUT || job->op == REGISTRY_POLICY_DEL) {
    admin_policy_done(p);
    return;
  }
  if (job->status == M5_ENOENT) {
    admin_problem(p->ex, 404, "Not Found", "no binding for this UE Service ID", NULL, NULL, NULL);
  } else if (job->status == M5_EEXIST) {
    /* one space of UE Service IDs (registry.h "message gateways") */
    admin_problem(p->ex, 409, "Conflict",
                  "a message gateway holds this UE Service ID: it must deregister it (or the "
                  "gateway client be removed) before it is bound to a subscriber",
                  "ueSvcId", "held by a message gateway", NULL);
  } else if (job->status != 0) {
    admin_problem(p->ex, 500, "Internal Server Error", "the registry failed; see the server's log", NULL,
            NULL, NULL);
  } else {
    if (job->op == REGISTRY_UNBIND)
      M5_LOGI(DOM, "%s: binding removed", job->ue_svc_id);
    else
      M5_LOGI(DOM, "%s: binding %s", job->ue_svc_id,
              job->created                ? "created"
              : job->gen != job->old_gen ? "updated (re-bound to another subscriber)"
                                         : "updated (the same subscriber: nothing changed)");
    if (job->op == REGISTRY_UNBIND || (job->old_supi[0] && strcmp(job->old_supi, job->supi) != 0))
      kick(p->a, job->ue_svc_id);
    if (job->gen != job->old_gen) {
      start_rebind(p); /* answers once the store has it */
      return;
    }
    answer_binding(p, 0);
    return;
  }
  admin_finish(p);
}

void admin_submit(admin_t *a, pending_t *p) {
  static const m5_http_header_t retry = {"retry-after", "1"};
  p->job.base.reply = a->replies;
  int rc = a->inflight >= a->opts.max_inflight ? M5_EFULL : registry_submit(a->opts.reg, &p->job);
  if (rc == 0) {
    a->inflight++;
    return;
  }
  admin_problem(p->ex, 503, "Service Unavailable", "the registry is busy; retry later", NULL, NULL,
          &retry);
  free(p->as);
  free(p->gw);
  if (p->job.op == REGISTRY_GW_DEL || p->job.op == REGISTRY_GW_PUT) {
    free(p->job.ids); /* the released IDs, the registry's */
    free(p->job.gens);
  }
  free(p);
}

static int hexval(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

int admin_decode_segment(const char *seg, char *out, size_t cap) {
  size_t j = 0;
  for (size_t i = 0; seg[i]; i++) {
    char c = seg[i];
    if (c == '/') return M5_EINVAL;
    if (c == '%') {
      int hi = hexval(seg[i + 1]), lo = hi >= 0 ? hexval(seg[i + 2]) : -1;
      if (lo < 0) return M5_EINVAL;
      c = (char)(hi * 16 + lo);
      i += 2;
      if (c == '\0') return M5_EINVAL; /* %00 would cut the identifier short */
    }
    if (j + 1 >= cap) return M5_EINVAL;
    out[j++] = c;
  }
  out[j] = '\0';
  return 0;
}

/* A path segment that decodes to a valid UE Service ID. */
static int decode_id(const char *seg, char out[M5_MSG_ADDR_MAX + 1]) {
  if (admin_decode_segment(seg, out, M5_MSG_ADDR_MAX + 1) != 0) return M5_EINVAL;
  return m5_msg_svc_id_valid(out) ? 0 : M5_EINVAL;
}

static pending_t *pending_new(admin_t *a, m5_http_exchange_t *ex, registry_op_t op,
                              const char *id) {
  pending_t *p = calloc(1, sizeof *p);
  if (!p) return NULL;
  p->a = a;
  p->ex = ex;
  p->job.op = op;
  snprintf(p->job.ue_svc_id, sizeof p->job.ue_svc_id, "%s", id);
  return p;
}

static void put_binding(admin_t *a, m5_http_exchange_t *ex, const m5_http_request_t *req,
                        const char *id) {
  json_t *o = admin_json_object(ex, req);
  if (!o) return;
  json_t *supi = json_object_get(o, "supi");
  char digits[REGISTRY_SUPI_MAX + 1];
  if (!supi) {
    admin_problem(ex, 400, "Bad Request", "supi is missing", "supi", "missing", NULL);
  } else if (!json_is_string(supi) ||
             registry_normalise_supi(json_string_value(supi), digits) != 0) {
    admin_problem(ex, 400, "Bad Request", "supi must be 5-15 digits (an IMSI), optionally imsi-", "supi",
            "not an IMSI", NULL);
  } else {
    pending_t *p = pending_new(a, ex, REGISTRY_BIND, id);
    if (!p) {
      admin_problem(ex, 500, "Internal Server Error", "out of memory", NULL, NULL, NULL);
    } else {
      memcpy(p->job.supi, digits, sizeof digits);
      admin_submit(a, p);
    }
  }
  json_decref(o);
}

static void get_binding(admin_t *a, m5_http_exchange_t *ex, const char *id) {
  registry_entry_t e;
  if (registry_lookup(a->opts.reg, id, (int64_t)time(NULL), &e) != 0) {
    admin_problem(ex, 404, "Not Found", "no binding for this UE Service ID", NULL, NULL, NULL);
    return;
  }
  admin_respond_json(ex, 200, binding_json(e.ue_svc_id, e.supi, e.registered));
}

static void bindings(admin_t *a, m5_http_exchange_t *ex, const m5_http_request_t *req) {
  static const m5_http_header_t allow = {"allow", "GET, PUT, DELETE"};
  char id[M5_MSG_ADDR_MAX + 1];
  if (decode_id(req->path + strlen(BINDINGS), id) != 0) {
    admin_problem(ex, 400, "Bad Request",
            "the UE Service ID in the path must be 1-128 printable characters without spaces",
            "ueSvcId", "invalid", NULL);
    return;
  }
  if (!strcmp(req->method, "GET")) {
    get_binding(a, ex, id);
  } else if (!strcmp(req->method, "PUT")) {
    put_binding(a, ex, req, id);
  } else if (!strcmp(req->method, "DELETE")) {
    pending_t *p = pending_new(a, ex, REGISTRY_UNBIND, id);
    if (p)
      admin_submit(a, p);
    else
      admin_problem(ex, 500, "Internal Server Error", "out of memory", NULL, NULL, NULL);
  } else {
    admin_problem(ex, 405, "Method Not Allowed", "a binding accepts GET, PUT and DELETE", NULL, NULL,
            &allow);
  }
}

/* ---- /metrics and /admin/v1/stats ---- */

/* One sample: Prometheus name and labels, and where it sits in the JSON of /admin/v1/stats
 * (key, or key.sub). Samples of one metric are adjacent; the first carries HELP and TYPE. */
typedef struct {
  const char *name, *labels, *type, *help;
  const char *key, *sub;
  size_t off;
} metric_t;

#define OFF(f) offsetof(admin_stats_t, f)
static const metric_t metrics[] = {
    {"msgin5g_messages_queued", NULL, "gauge", "Deliveries waiting in the store now.",
     "messagesQueued", NULL, OFF(queued)},
    {"msgin5g_messages_delivered_total", NULL, "counter",
     "Deliveries the recipient acknowledged, since start.", "messagesDelivered", NULL,
     OFF(delivered)},
    {"msgin5g_messages_expired_total", NULL, "counter",
     "Deliveries removed because their exprTime passed, since start.", "messagesExpired", NULL,
     OFF(expired)},
    {"msgin5g_messages_failed_total", NULL, "counter",
     "Deliveries that failed for good, since start.", "messagesFailed", NULL, OFF(failed)},
    {"msgin5g_messages_refused_total", "reason=\"queue_full\"", "counter",
     "Messages refused: a full recipient queue (DELY_FAILED QUEUE_FULL) or a full store (5.03).",
     "messagesRefused", "queueFull", OFF(refused_queue_full)},
    {"msgin5g_messages_refused_total", "reason=\"store_full\"", NULL, NULL, "messagesRefused",
     "storeFull", OFF(refused_store_full)},
    {"msgin5g_messages_refused_total", "reason=\"originator_quota\"", NULL, NULL,
     "messagesRefused", "originatorQuota", OFF(refused_originator_quota)},
    {"msgin5g_duplicates_total", NULL, "counter",
     "Repeated (oriAddr, msgId) answered from the dedup window, since start.", "duplicates", NULL,
     OFF(duplicates)},
    {"msgin5g_sessions", "transport=\"dtls\"", "gauge", "Live MSGin5G-1 sessions.", "sessions",
     "dtls", OFF(sessions_dtls)},
    {"msgin5g_sessions", "transport=\"tls\"", NULL, NULL, "sessions", "tls", OFF(sessions_tls)},
    {"msgin5g_registrations", NULL, "gauge", "Unexpired UE registrations.", "registrations", NULL,
     OFF(registrations)},
    {"msgin5g_akma_fetches_total", NULL, "counter",
     "K_AF requests sent to the AAnF for UE handshakes, since start.", "akmaFetches", NULL,
     OFF(akma_fetches)},
    {"msgin5g_akma_refused_total", "reason=\"handshakes\"", "counter",
     "UE handshakes refused by a bound before the UE proved a K_AF (docs/m5s.md), since start.",
     "akmaRefused", "handshakes", OFF(akma_refused_handshakes)},
    {"msgin5g_akma_refused_total", "reason=\"handshakes_per_addr\"", NULL, NULL, "akmaRefused",
     "handshakesPerAddr", OFF(akma_refused_handshakes_addr)},
    {"msgin5g_akma_refused_total", "reason=\"handshakes_per_prefix\"", NULL, NULL, "akmaRefused",
     "handshakesPerPrefix", OFF(akma_refused_handshakes_prefix)},
    {"msgin5g_akma_refused_total", "reason=\"fetches\"", NULL, NULL, "akmaRefused", "fetches",
     OFF(akma_refused_fetches)},
    {"msgin5g_akma_refused_total", "reason=\"fetches_per_addr\"", NULL, NULL, "akmaRefused",
     "fetchesPerAddr", OFF(akma_refused_fetches_addr)},
    {"msgin5g_akma_refused_total", "reason=\"fetches_per_prefix\"", NULL, NULL, "akmaRefused",
     "fetchesPerPrefix", OFF(akma_refused_fetches_prefix)},
    {"msgin5g_akma_refused_total", "reason=\"unknown_akid_rate\"", NULL, NULL, "akmaRefused",
     "unknownAkidRate", OFF(akma_refused_unknown_rate)},
    {"msgin5g_akma_refused_total", "reason=\"source_table_full\"", NULL, NULL, "akmaRefused",
     "sourceTableFull", OFF(akma_refused_table_full)},
    {"msgin5g_reports_dropped_total", NULL, "counter",
     "Failure reports not written: the originator had store.max_reports_per_recipient waiting.",
     "reportsDropped", NULL, OFF(reports_dropped)},
    {"msgin5g_deliveries_requeued_total", NULL, "counter",
     "Deliveries whose outcome could not be recorded, queued again after store.in_flight_max_s.",
     "deliveriesRequeued", NULL, OFF(requeued)},
    {"msgin5g_store_synchronous", NULL, "gauge",
     "The message store's SQLite synchronous level as read back (0 OFF, 1 NORMAL, 2 FULL).",
     "storeSynchronous", NULL, OFF(synchronous)},
    {"msgin5g_store_commits_total", "synced=\"yes\"", "counter",
     "Message store commits that fsync'd the WAL before their replies (accepts among them).",
     "storeCommits", "synced", OFF(commits_synced)},
    {"msgin5g_store_commits_total", "synced=\"no\"", NULL, NULL, "storeCommits", "unsynced",
     OFF(commits_unsynced)},
    {"msgin5g_store_sqlite_memory_bytes", NULL, "gauge",
     "Heap bytes SQLite holds in this process (page caches, statements): what memory figures "
     "per session exclude.",
     "storeSqliteMemory", NULL, OFF(sqlite_memory)},
    {"msgin5g_accepts_in_flight", NULL, "gauge",
     "MSGs and reports being accepted: waiting for the message store's commit.", "inFlight",
     "accepts", OFF(accepts_in_flight)},
    {"msgin5g_accepts_in_flight_bytes", NULL, "gauge",
     "Memory those accepts hold (job, payload, recipients).", "inFlight", "acceptBytes",
     OFF(accept_bytes)},
    {"msgin5g_requests_waiting", NULL, "gauge",
     "UE requests held unanswered until the message store has room (back-pressure).", "inFlight",
     "waiting", OFF(requests_waiting)},
    {"msgin5g_requests_waiting_bytes", NULL, "gauge",
     "Memory those waiting requests hold (the CoAP request).", "inFlight", "waitingBytes",
     OFF(requests_waiting_bytes)},
    {"msgin5g_requests_waited_total", NULL, "counter",
     "UE requests that waited for room in the message store, since start.", "inFlight",
     "waitedTotal", OFF(requests_waited)},
    {"msgin5g_requests_busy_total", NULL, "counter",
     "UE requests answered 5.03 busy: 65536 waiting in their worker already, since start.",
     "inFlight", "busyTotal", OFF(requests_busy)},
    {"msgin5g_store_cache_bytes", NULL, "gauge",
     "Memory of the message store's SQLite page cache (up to 64 MiB), part of the RSS.",
     "storeCacheBytes", NULL, OFF(store_cache_bytes)},
    {"msgin5g_store_js_connected", NULL, "gauge",
     "1 while the JetStream message store is connected to its NATS cluster (0 on SQLite).",
     "storeJs", "connected", OFF(store_js_connected)},
    {"msgin5g_store_js_consumer_pending", NULL, "gauge",
     "Messages NATS still had to hand to this node's queue consumers (their lag; 0 on SQLite).",
     "storeJs", "consumerPending", OFF(store_js_consumer_pending)},
};
#undef OFF
#define N_METRICS (sizeof metrics / sizeof metrics[0])

static uint64_t metric_value(const admin_stats_t *st, const metric_t *m) {
  uint64_t v;
  memcpy(&v, (const char *)st + m->off, sizeof v);
  return v;
}

static void read_stats(admin_t *a, admin_stats_t *st) {
  memset(st, 0, sizeof *st);
  if (a->opts.store) {
    m5_store_stats_t ss;
    m5_store_stats(a->opts.store, &ss);
    st->queued = ss.queued;
    st->delivered = ss.delivered;
    st->expired = ss.expired;
    st->failed = ss.failed;
    st->duplicates = ss.duplicates;
    st->refused_queue_full = ss.refused_queue_full;
    st->refused_store_full = ss.refused_store_full;
    st->refused_originator_quota = ss.refused_originator_quota;
    st->reports_dropped = ss.reports_dropped;
    st->requeued = ss.requeued;
    st->synchronous = ss.synchronous;
    st->commits_synced = ss.commits - ss.unsynced_commits;
    st->commits_unsynced = ss.unsynced_commits;
    st->store_cache_bytes = ss.cache_bytes;
    st->store_js_connected = ss.js_connected;
    st->store_js_consumer_pending = ss.js_consumer_pending;
  }
  /* process-wide, so also the caches of stores opened by other modules of this process */
  sqlite3_int64 cur = 0, high = 0;
  if (sqlite3_status64(SQLITE_STATUS_MEMORY_USED, &cur, &high, 0) == SQLITE_OK && cur > 0)
    st->sqlite_memory = (uint64_t)cur;
  if (a->opts.stats) a->opts.stats(a->opts.stats_arg, st);
}

/* 1 for GET; anything else is answered 405 (0). */
static int get_only(m5_http_exchange_t *ex, const m5_http_request_t *req, const char *what) {
  static const m5_http_header_t allow = {"allow", "GET"};
  if (!strcmp(req->method, "GET")) return 1;
  char detail[64];
  snprintf(detail, sizeof detail, "%s accepts GET only", what);
  admin_problem(ex, 405, "Method Not Allowed", detail, NULL, NULL, &allow);
  return 0;
}

static void get_metrics(admin_t *a, m5_http_exchange_t *ex) {
  admin_stats_t st;
  read_stats(a, &st);
  char text[8192];
  size_t n = 0;
  for (size_t i = 0; i < N_METRICS && n < sizeof text; i++) {
    const metric_t *m = &metrics[i];
    int w = 0;
    if (m->help)
      w = snprintf(text + n, sizeof text - n, "# HELP %s %s\n# TYPE %s %s\n", m->name, m->help,
                   m->name, m->type);
    if (w > 0 && (size_t)w < sizeof text - n) n += (size_t)w;
    w = snprintf(text + n, sizeof text - n, "%s%s%s%s %llu\n", m->name, m->labels ? "{" : "",
                 m->labels ? m->labels : "", m->labels ? "}" : "",
                 (unsigned long long)metric_value(&st, m));
    if (w > 0) n += (size_t)w;
  }
  if (n >= sizeof text) { /* cannot happen with this table; never send a cut line */
    m5_http_respond(ex, 500, NULL, NULL, 0);
    return;
  }
  m5_http_respond(ex, 200, CT_PROM, text, n);
}

static void get_stats(admin_t *a, m5_http_exchange_t *ex) {
  admin_stats_t st;
  read_stats(a, &st);
  json_t *o = json_object();
  for (size_t i = 0; o && i < N_METRICS; i++) {
    const metric_t *m = &metrics[i];
    json_t *v = json_integer((json_int_t)metric_value(&st, m));
    if (!m->sub) {
      json_object_set_new(o, m->key, v);
      continue;
    }
    json_t *inner = json_object_get(o, m->key);
    if (!inner) {
      inner = json_object();
      json_object_set_new(o, m->key, inner);
    }
    json_object_set_new(inner, m->sub, v);
  }
  admin_respond_json(ex, 200, o);
}

/* ---- authentication ---- */

/* /healthz, /metrics and /admin/v1/stats need no token: health checks and monitoring read
 * figures that change nothing and name no subscriber. They serve GET only; any other method
 * on them is 405 with or without a token, as it changes nothing either. */
static int open_request(const m5_http_request_t *req) {
  return !strcmp(req->path, "/healthz") || !strcmp(req->path, METRICS) ||
         !strcmp(req->path, STATS);
}

/* 1 if the request carries "Authorization: Bearer <our token>". The token is compared as a
 * SHA-256 digest with CRYPTO_memcmp: the time taken says nothing about how much of it, or of
 * its length, was right. */
static int authorized(const admin_t *a, const m5_http_request_t *req) {
  const char *h = req->authorization;
  if (!a->have_token || !h || strncasecmp(h, "Bearer ", 7) != 0) return 0;
  const char *t = h + 7;
  while (*t == ' ')
    t++;
  size_t n = strlen(t);
  while (n && (t[n - 1] == ' ' || t[n - 1] == '\t'))
    n--;
  unsigned char d[SHA256_DIGEST_LENGTH];
  if (!n || !SHA256((const unsigned char *)t, n, d)) return 0;
  int ok = CRYPTO_memcmp(d, a->token_sha256, sizeof d) == 0;
  OPENSSL_cleanse(d, sizeof d);
  return ok;
}

/* 401 with the RFC 6750 challenge; the log names the request, never what it carried. */
static void unauthorized(m5_http_exchange_t *ex, const m5_http_request_t *req) {
  static const m5_http_header_t none = {"www-authenticate", "Bearer realm=\"m5s-admin\""};
  static const m5_http_header_t bad = {
      "www-authenticate", "Bearer realm=\"m5s-admin\", error=\"invalid_token\", "
                          "error_description=\"not the token of mgmt.token_file\""};
  int given = req->authorization != NULL;
  M5_LOGI(DOM, "%s %s refused: %s", req->method, req->path,
          given ? "wrong credentials" : "no Authorization header");
  admin_problem(ex, 401, "Unauthorized",
                given ? "the Authorization header does not carry the management token"
                      : "the management API needs Authorization: Bearer <the token in "
                        "mgmt.token_file>",
                NULL, NULL, given ? &bad : &none);
}

/* The JetStream store has lost its NATS cluster: this node can store nothing (its accepts
 * answer 5.03), so a load balancer should send its UEs elsewhere. */
static bool store_unreachable(admin_t *a) {
  if (!a->opts.store) return false;
  m5_store_stats_t ss;
  m5_store_stats(a->opts.store, &ss);
  return ss.jetstream && !ss.js_connected;
}

void admin_handle(m5_http_exchange_t *ex, const m5_http_request_t *req, void *arg) {
  admin_t *a = arg;
  if (!open_request(req) && !authorized(a, req)) {
    unauthorized(ex, req);
    return;
  }
  if (!strcmp(req->path, "/healthz")) {
    static const m5_http_header_t allow = {"allow", "GET"};
    if (strcmp(req->method, "GET") != 0) {
      admin_problem(ex, 405, "Method Not Allowed", "/healthz accepts GET only", NULL, NULL, &allow);
    } else if (atomic_load(a->opts.ready) && !store_unreachable(a)) {
      static const char ok[] = "{\"status\":\"ok\"}";
      m5_http_respond(ex, 200, CT_JSON, ok, sizeof ok - 1);
    } else if (atomic_load(a->opts.ready)) {
      static const char down[] = "{\"status\":\"unavailable\",\"cause\":\"NATS unreachable\"}";
      m5_http_respond(ex, 503, CT_JSON, down, sizeof down - 1);
    } else {
      static const char starting[] = "{\"status\":\"starting\"}";
      m5_http_respond(ex, 503, CT_JSON, starting, sizeof starting - 1);
    }
    return;
  }
  if (!strncmp(req->path, BINDINGS, strlen(BINDINGS)) && req->path[strlen(BINDINGS)]) {
    bindings(a, ex, req);
    return;
  }
  if (!strncmp(req->path, ADMIN_AS_CLIENTS, strlen(ADMIN_AS_CLIENTS)) &&
      req->path[strlen(ADMIN_AS_CLIENTS)]) {
    admin_as_clients(a, ex, req);
    return;
  }
  if (!strcmp(req->path, ADMIN_POLICY)) {
    admin_policy(a, ex, req);
    return;
  }
  if (!strncmp(req->path, ADMIN_GATEWAYS, strlen(ADMIN_GATEWAYS)) &&
      (req->path[strlen(ADMIN_GATEWAYS)] == '\0' || req->path[strlen(ADMIN_GATEWAYS)] == '/')) {
    admin_gateways(a, ex, req);
    return;
  }
  if (!strcmp(req->path, ADMIN_TOPIC_RULES)) {
    admin_topic_rules(a, ex, req);
    return;
  }
  if (admin_groups_path(req->path)) {
    admin_groups(a, ex, req);
    return;
  }
  if (!strcmp(req->path, METRICS)) {
    if (get_only(ex, req, METRICS)) get_metrics(a, ex);
    return;
  }
  if (!strcmp(req->path, STATS)) {
    if (get_only(ex, req, STATS)) get_stats(a, ex);
    return;
  }
  admin_problem(
      ex, 404, "Not Found",
      "the management port serves /healthz, /metrics, /admin/v1/stats, "
      "/admin/v1/bindings/{id}, /admin/v1/as-clients/{asSvcId}, /admin/v1/gateways[/{gwId}], "
      "/admin/v1/policy, "
      "/admin/v1/topic-rules, /admin/v1/groups/{id} and /admin/v1/areas/{id}",
      NULL, NULL, NULL);
}

admin_t *admin_new(m5_loop_t *loop, const admin_opts_t *opts) {
  admin_t *a = calloc(1, sizeof *a);
  if (!a) return NULL;
  a->loop = loop;
  a->opts = *opts;
  a->opts.token = NULL;
  if (opts->token && opts->token[0]) {
    if (!SHA256((const unsigned char *)opts->token, strlen(opts->token), a->token_sha256)) {
      free(a);
      return NULL;
    }
    a->have_token = 1;
  }
  if (!a->opts.max_inflight) a->opts.max_inflight = 64;
  a->replies = m5_mailbox_new(loop, a->opts.max_inflight, on_reply, a);
  a->store_replies = m5_mailbox_new(loop, a->opts.max_inflight + RETRIES_MAX, on_rebind_reply, a);
  if (!a->replies || !a->store_replies) {
    if (a->replies) m5_mailbox_free(a->replies, NULL);
    if (a->store_replies) m5_mailbox_free(a->store_replies, NULL);
    free(a);
    return NULL;
  }
  return a;
}

static void drop_pending(void *msg) {
  pending_t *p = msg;
  if (p->job.op == REGISTRY_GROUPS) {
    admin_groups_drop(msg);
    return;
  }
  free(p->as);
  free(p->gw);
  if (p->job.op == REGISTRY_GW_DEL || p->job.op == REGISTRY_GW_PUT) {
    free(p->job.ids); /* the released IDs, the registry's */
    free(p->job.gens);
  }
  free(p);
}

static void drop_rebind(void *msg) {
  rebind_t *rb = msg;
  m5_store_job_clear(&rb->job);
  if (rb->p) drop_pending(rb->p);
  free(rb);
}

void admin_free(admin_t *a) {
  if (!a) return;
  drop_retries(a);
  m5_mailbox_free(a->replies, drop_pending);
  OPENSSL_cleanse(a->token_sha256, sizeof a->token_sha256);
  m5_mailbox_free(a->store_replies, drop_rebind);
  free(a);
}

void admin_when_idle(admin_t *a, void (*done)(void *arg), void *arg) {
  drop_retries(a);
  if (a->inflight == 0) {
    done(arg);
    return;
  }
  a->idle_cb = done;
  a->idle_arg = arg;
}
