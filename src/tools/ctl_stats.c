/* m5ctl stats: GET {m5s-admin}/admin/v1/stats (docs/admin-api.md) and print each figure as
 * one "name value" line, named as on /metrics (Prometheus names and labels), in the order of
 * the table below. Figures the server does not send are skipped. */
#include "ctl.h"

#include "core/buf.h"

#include <curl/curl.h>
#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <string.h>

#define DEFAULT_M5S_ADMIN "http://127.0.0.1:9090"
#define STATS_PATH "/admin/v1/stats"
#define TIMEOUT_S 10L
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
    {"duplicates", NULL, "msgin5g_duplicates_total"},
    {"sessions", "dtls", "msgin5g_sessions{transport=\"dtls\"}"},
    {"sessions", "tls", "msgin5g_sessions{transport=\"tls\"}"},
    {"registrations", NULL, "msgin5g_registrations"},
};

static size_t on_data(char *p, size_t size, size_t n, void *arg) {
  return m5_buf_append(arg, p, size * n) == 0 ? size * n : 0;
}

static int parse_args(int argc, char **argv, const char **admin) {
  enum { OPT_M5S_ADMIN = M5CTL_OPT_OWN, OPT_HELP };
  static const struct option opts[] = {
      {"m5s-admin", required_argument, NULL, OPT_M5S_ADMIN},
      {"help", no_argument, NULL, OPT_HELP},
      {NULL, 0, NULL, 0},
  };
  int c;
  opterr = 0;
  optind = 1;
  while ((c = getopt_long(argc, argv, ":", opts, NULL)) != -1) {
    if (c == OPT_HELP) {
      printf("usage: m5ctl stats [--m5s-admin URL]   (default URL %s)\n", DEFAULT_M5S_ADMIN);
      return -1;
    }
    if (c != OPT_M5S_ADMIN) return m5ctl_option_error(c, argv);
    if ((strncmp(optarg, "http://", 7) != 0 || optarg[7] == '\0') &&
        (strncmp(optarg, "https://", 8) != 0 || optarg[8] == '\0'))
      return m5ctl_usage_error("--m5s-admin: expected an http:// URL such as %s, got '%s'",
                               DEFAULT_M5S_ADMIN, optarg);
    *admin = optarg;
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
  char url[2048], errbuf[CURL_ERROR_SIZE] = "";
  size_t base = strlen(admin);
  while (base > 8 && admin[base - 1] == '/')
    base--;
  if ((size_t)snprintf(url, sizeof url, "%.*s%s", (int)base, admin, STATS_PATH) >= sizeof url)
    return m5ctl_usage_error("--m5s-admin: the URL is too long");
  CURL *c = curl_easy_init();
  if (!c) {
    fputs("m5ctl: cannot set up libcurl\n", stderr);
    return 1;
  }
  m5_buf_t answer;
  m5_buf_init(&answer, MAX_ANSWER);
  curl_easy_setopt(c, CURLOPT_URL, url);
  curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(c, CURLOPT_TIMEOUT, TIMEOUT_S);
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &answer);
  curl_easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf);
  CURLcode cc = curl_easy_perform(c);
  long status = 0;
  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
  curl_easy_cleanup(c);
  int rc = 1;
  if (cc != CURLE_OK) {
    fprintf(stderr, "m5ctl: cannot reach the m5s admin API %s: %s; is m5s running (--m5s-admin)?\n",
            url, errbuf[0] ? errbuf : curl_easy_strerror(cc));
  } else if (status != 200) {
    fprintf(stderr, "m5ctl: m5s answered %ld to GET %s\n", status, url);
  } else {
    rc = print_stats(&answer);
  }
  m5_buf_free(&answer);
  return rc;
}

int m5ctl_stats(int argc, char **argv) {
  const char *admin = DEFAULT_M5S_ADMIN;
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
