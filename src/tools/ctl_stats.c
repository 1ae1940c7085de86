/* m5ctl stats: GET {m5s-admin}/admin/v1/stats (docs/admin-api.md) and print each figure as
 * one "name value" line, named as on /metrics (Prometheus names and labels), in the order of
 * the table below. Figures the server does not send are skipped. */
#include "ctl.h"

#include "core/buf.h"

#include <curl/curl.h>
#include <getopt.h>
#include <jansson.h>
#include <stdio.h>

#define STATS_PATH "/admin/v1/stats"
#define MAX_ANSWER 65536

/* The /metrics sample for each member (key, or key.sub) of the JSON answer. */
static const struct {
  const char *key, *sub, *name;
} rows[] = {
    {"messagesQueued", NULL, "msgin5g_messages_queued"},
    {"messagesDelivered", NULL, "msgin5g_messages_delivered_total"},
    {"messagesExpired", NULL, "msgin5g_messages_expired_total"},
    {"messagesFailed", NULL, "msgin5g_messages_failed_total"},
    {"messagesRefused", "queueFull", "msgin5g_messages_refused_total{reason=\"queue_full\"}"},
    {"messagesRefused", "storeFull", "msgin5g_messages_refused_total{reason=\"store_full\"}"},
    {"messagesRefused", "originatorQuota",
     "msgin5g_messages_refused_total{reason=\"originator_quota\"}"},
    {"duplicates", NULL, "msgin5g_duplicates_total"},
    {"sessions", "dtls", "msgin5g_sessions{transport=\"dtls\"}"},
    {"sessions", "tls", "msgin5g_sessions{transport=\"tls\"}"},
    {"registrations", NULL, "msgin5g_registrations"},
    {"akmaFetches", NULL, "msgin5g_akma_fetches_total"},
    {"akmaRefused", "handshakes", "msgin5g_akma_refused_total{reason=\"handshakes\"}"},
    {"akmaRefused", "handshakesPerAddr",
     "msgin5g_akma_refused_total{reason=\"handshakes_per_addr\"}"},
    {"akmaRefused", "handshakesPerPrefix",
     "msgin5g_akma_refused_total{reason=\"handshakes_per_prefix\"}"},
    {"akmaRefused", "fetches", "msgin5g_akma_refused_total{reason=\"fetches\"}"},
    {"akmaRefused", "fetchesPerAddr", "msgin5g_akma_refused_total{reason=\"fetches_per_addr\"}"},
    {"akmaRefused", "fetchesPerPrefix",
     "msgin5g_akma_refused_total{reason=\"fetches_per_prefix\"}"},
    {"akmaRefused", "unknownAkidRate", "msgin5g_akma_refused_total{reason=\"unknown_akid_rate\"}"},
    {"akmaRefused", "sourceTableFull", "msgin5g_akma_refused_total{reason=\"source_table_full\"}"},
    {"reportsDropped", NULL, "msgin5g_reports_dropped_total"},
    {"deliveriesRequeued", NULL, "msgin5g_deliveries_requeued_total"},
    {"storeSynchronous", NULL, "msgin5g_store_synchronous"},
    {"storeCommits", "synced", "msgin5g_store_commits_total{synced=\"yes\"}"},
    {"storeCommits", "unsynced", "msgin5g_store_commits_total{synced=\"no\"}"},
    {"storeSqliteMemory", NULL, "msgin5g_store_sqlite_memory_bytes"},
    {"inFlight", "accepts", "msgin5g_accepts_in_flight"},
    {"inFlight", "acceptBytes", "msgin5g_accepts_in_flight_bytes"},
    {"inFlight", "waiting", "msgin5g_requests_waiting"},
    {"inFlight", "waitingBytes", "msgin5g_requests_waiting_bytes"},
    {"inFlight", "waitedTotal", "msgin5g_requests_waited_total"},
    {"inFlight", "busyTotal", "msgin5g_requests_busy_total"},
    {"storeCacheBytes", NULL, "msgin5g_store_cache_bytes"},
    {"storeJs", "connected", "msgin5g_store_js_connected"},
    {"storeJs", "consumerPending", "msgin5g_store_js_consumer_pending"},
};

static int parse_args(int argc, char **argv, const char **admin) {
  enum { OPT_M5S_ADMIN = M5CTL_OPT_OWN, OPT_HELP };
  static const struct option opts[] = {
      {"m5s-admin", required_argument, NULL, OPT_M5S_ADMIN},
      {"help", no_argument, NULL, OPT_HELP},
      {NULL, 0, NULL, 0},
  };
  int c, rc;
  opterr = 0;
  optind = 1;
  while ((c = getopt_long(argc, argv, ":", opts, NULL)) != -1) {
    if (c == OPT_HELP) {
      printf("usage: m5ctl stats [--m5s-admin URL]   (default URL %s)\n", M5CTL_DEFAULT_M5S_ADMIN);
      return -1;
    }
    if (c != OPT_M5S_ADMIN) return m5ctl_option_error(c, argv);
    if ((rc = m5ctl_m5s_admin_option(optarg, admin))) return rc;
  }
  return m5ctl_operand_error(argc, argv);
}

/* Prints the figures of a 200 answer; 1 when it is not the expected JSON object. */
static int print_stats(const m5_buf_t *answer) {
  json_t *o = json_loadb((const char *)answer->data, answer->len, 0, NULL);
  if (!json_is_object(o)) {
    fputs("m5ctl: the m5s answer to " STATS_PATH " is not a JSON object\n", stderr);
    json_decref(o);
    return 1;
  }
  for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
    json_t *v = json_object_get(o, rows[i].key);
    if (rows[i].sub) v = json_object_get(v, rows[i].sub);
    if (json_is_integer(v)) printf("%s %lld\n", rows[i].name, (long long)json_integer_value(v));
  }
  json_decref(o);
  return 0;
}

static int fetch(const char *admin) {
  m5_buf_t answer;
  m5_buf_init(&answer, MAX_ANSWER);
  long status;
  int rc = m5ctl_admin_request(admin, NULL, "GET", STATS_PATH, NULL, NULL, &answer, &status);
  if (rc == 0)
    rc = status == 200 ? print_stats(&answer)
                       : m5ctl_admin_refused(status, &answer, "m5s refused GET " STATS_PATH);
  m5_buf_free(&answer);
  return rc;
}

int m5ctl_stats(int argc, char **argv) {
  const char *admin = M5CTL_DEFAULT_M5S_ADMIN;
  int rc = parse_args(argc, argv, &admin);
  if (rc) return rc < 0 ? 0 : rc;
  if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
    fputs("m5ctl: cannot initialise libcurl\n", stderr);
    return 1;
  }
  rc = fetch(admin);
  curl_global_cleanup();
  return rc;
}
