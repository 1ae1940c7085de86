/* m5s configuration table and the checks beyond what the generic loader does. */
#include "server/server_config.h"

#include "core/daemon.h"
#include "core/err.h"
#include "core/net.h"
#include "crypto/akma.h"
#include "server/topics/topics_rules.h"

#include <ctype.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

/* ue.host defaults to every interface: the MSGin5G-1 port is the one devices reach, and that
 * is what an operator deploying a server expects. Tests and `make run` bind 127.0.0.1. */
static const m5_cfg_item_t items[] = {
    {"ue.host", M5_CFG_STR, offsetof(server_config_t, ue_host), "0.0.0.0", 0, 0,
     "address of the MSGin5G-1 listeners (CoAP over DTLS on udp, CoAP over TLS on tcp)"},
    {"ue.port", M5_CFG_INT, offsetof(server_config_t, ue_port), "5684", 1, 65535,
     "port of the MSGin5G-1 listeners (the same number on udp and tcp)"},
    {"ue.max_sessions", M5_CFG_INT, offsetof(server_config_t, ue_max_sessions), "100000", 1,
     10000000, "established UE sessions per worker and transport"},
    {"ue.idle_timeout_s", M5_CFG_INT, offsetof(server_config_t, ue_idle_timeout_s), "600", 10,
     86400, "a UE session without traffic for this long is closed"},
    /* Per-source bounds (docs/m5s.md "Bounds before a UE has proved anything"). Prefix: /24
     * for IPv4, /64 for IPv6. The defaults let one address run a 10,000-UE fleet: they bound
     * what is half-open or waiting at once, not sessions. */
    {"ue.max_handshakes", M5_CFG_INT, offsetof(server_config_t, ue_max_handshakes), "1024", 1,
     10000000, "half-open handshakes per worker and transport, all sources together"},
    {"ue.max_handshakes_per_addr", M5_CFG_INT,
     offsetof(server_config_t, ue_max_handshakes_per_addr), "256", 1, 10000000,
     "half-open handshakes per worker from one address (beyond: refused)"},
    {"ue.max_handshakes_per_prefix", M5_CFG_INT,
     offsetof(server_config_t, ue_max_handshakes_per_prefix), "512", 1, 10000000,
     "half-open handshakes per worker from one /24 (IPv4) or /64 (IPv6)"},
    {"ue.source_table_size", M5_CFG_INT, offsetof(server_config_t, ue_source_table_size), "16384",
     1024, 10000000, "addresses and prefixes tracked per worker (least recently used go)"},
    {"ue.dtls_cookie_rotate_s", M5_CFG_INT, offsetof(server_config_t, ue_dtls_cookie_rotate_s),
     "60", 1, 86400,
     "the DTLS cookie key is replaced this often (the previous one still verifies)"},
    {"aanf.max_fetches", M5_CFG_INT, offsetof(server_config_t, aanf_max_fetches), "512", 1,
     10000000, "AAnF requests in flight per worker (beyond: the handshake is refused)"},
    {"aanf.max_fetches_per_addr", M5_CFG_INT, offsetof(server_config_t, aanf_max_fetches_per_addr),
     "64", 1, 10000000, "handshakes per worker from one address waiting for the AAnF"},
    {"aanf.max_fetches_per_prefix", M5_CFG_INT,
     offsetof(server_config_t, aanf_max_fetches_per_prefix), "128", 1, 10000000,
     "handshakes per worker from one /24 or /64 waiting for the AAnF"},
    {"aanf.unknown_akid_burst", M5_CFG_INT, offsetof(server_config_t, aanf_unknown_akid_burst),
     "128", 1, 10000000,
     "AAnF fetches per worker and prefix for A-KIDs not yet proven good (bucket size; a K_AF "
     "answer gives the token back, \"no context\" keeps it)"},
    {"aanf.unknown_akid_per_s", M5_CFG_INT, offsetof(server_config_t, aanf_unknown_akid_per_s),
     "10", 1, 10000000, "refill of that bucket, tokens per second"},
    {"mgmt.host", M5_CFG_STR, offsetof(server_config_t, mgmt_host), "127.0.0.1", 0, 0,
     "address of the management listener (/healthz, admin API); must be a loopback address"},
    {"mgmt.port", M5_CFG_INT, offsetof(server_config_t, mgmt_port), "9090", 1, 65535,
     "port of the management listener"},
    {"mgmt.token_file", M5_CFG_STR, offsetof(server_config_t, mgmt_token_file),
     "var/m5s/admin.token", 0, 0,
     "the admin API's bearer token (Authorization: Bearer <token> on every request but "
     "/healthz, /metrics, /admin/v1/stats); written with 256 random bits at the first start "
     "(mode 0600, directory 0700), read at later ones"},
    {"aanf.url", M5_CFG_STR, offsetof(server_config_t, aanf_url), "https://localhost:7443", 0, 0,
     "base URL of the AAnF (Naanf_AKMA over HTTP/2 with mutual TLS)"},
    {"aanf.timeout_ms", M5_CFG_INT, offsetof(server_config_t, aanf_timeout_ms), "3000", 100, 60000,
     "time allowed for one AAnF request (the UE's handshake waits that long at most)"},
    {"tls.cert", M5_CFG_STR, offsetof(server_config_t, tls_cert), "var/pki/m5s.crt", 0, 0,
     "the server's certificate as AKMA AF towards the AAnF (SAN dNSName = server.fqdns[0])"},
    {"tls.key", M5_CFG_STR, offsetof(server_config_t, tls_key), "var/pki/m5s.key", 0, 0,
     "its private key (PEM)"},
    {"tls.ca", M5_CFG_STR, offsetof(server_config_t, tls_ca), "var/pki/ca.crt", 0, 0,
     "CA bundle the AAnF's certificate must chain to"},
    {"server.fqdns", M5_CFG_STRLIST, offsetof(server_config_t, fqdns), "localhost", 0, 0,
     "the server's names (SNI; K_AF is derived for them); the first is the primary"},
    {"north.host", M5_CFG_STR, offsetof(server_config_t, north_host), "0.0.0.0", 0, 0,
     "address of the northbound listener (MSGin5G-3 for Application Servers, HTTP/2 + mTLS)"},
    {"north.port", M5_CFG_INT, offsetof(server_config_t, north_port), "8443", 0, 65535,
     "its port; 0 = no northbound listener"},
    {"north.base_url", M5_CFG_STR, offsetof(server_config_t, north_base_url), "", 0, 0,
     "the northbound API root as ASes reach it (the tokens' aud and iss); empty = "
     "https://<server.fqdns[0]>:<north.port>"},
    {"oauth.key", M5_CFG_STR, offsetof(server_config_t, oauth_key), "var/pki/m5s-token.key", 0, 0,
     "EC P-256 key (PEM) that signs the access tokens of POST /oauth2/token; empty = no token "
     "endpoint"},
    {"oauth.token_lifetime_s", M5_CFG_INT, offsetof(server_config_t, oauth_token_lifetime_s),
     "300", 30, 86400, "lifetime of an issued access token"},
    {"oauth.issuer_url", M5_CFG_STR, offsetof(server_config_t, oauth_issuer_url), "", 0, 0,
     "an external OAuth2 issuer (its tokens' iss) whose ES256 access tokens are accepted too; "
     "empty = only ours"},
    {"oauth.jwks_url", M5_CFG_STR, offsetof(server_config_t, oauth_jwks_url), "", 0, 0,
     "the external issuer's JWKS (https), fetched at start, every oauth.jwks_refresh_s and "
     "when a token names an unknown kid"},
    {"oauth.jwks_ca", M5_CFG_STR, offsetof(server_config_t, oauth_jwks_ca), "", 0, 0,
     "CA bundle for the JWKS server; empty = tls.ca"},
    {"oauth.jwks_refresh_s", M5_CFG_INT, offsetof(server_config_t, oauth_jwks_refresh_s), "300", 1,
     86400, "how often the external issuer's JWKS is fetched again"},
    {"db.path", M5_CFG_STR, offsetof(server_config_t, db_path), "var/m5s/m5s.db", 0, 0,
     "SQLite file holding bindings and registrations (created with its directory)"},
    {"store.path", M5_CFG_STR, offsetof(server_config_t, store_path), "", 0, 0,
     "SQLite file of the message store; empty = store.db in db.path's directory"},
    {"store.backend", M5_CFG_STR, offsetof(server_config_t, store_backend), "sqlite", 0, 0,
     "sqlite (one node, store.path) or jetstream (nodes sharing a NATS JetStream cluster: "
     "store.js.*, node.name; docs/scale-out.md)"},
    {"store.js.servers", M5_CFG_STRLIST, offsetof(server_config_t, store_js_servers),
     "nats://127.0.0.1:4222", 0, 0, "the NATS servers (nats://host:port), tried in order"},
    {"store.js.replicas", M5_CFG_INT, offsetof(server_config_t, store_js_replicas), "1", 1, 5,
     "replicas of every stream and bucket: 1, or 3 in a cluster of 3 NATS servers"},
    {"store.js.prefix", M5_CFG_STR, offsetof(server_config_t, store_js_prefix), "m5", 0, 0,
     "prefix of the stream and bucket names and subjects (letters, digits; one deployment "
     "per prefix)"},
    {"store.js.timeout_ms", M5_CFG_INT, offsetof(server_config_t, store_js_timeout_ms), "5000",
     100, 600000, "connect, and every request to the NATS cluster"},
    {"store.js.tls_ca", M5_CFG_STR, offsetof(server_config_t, store_js_tls_ca), "", 0, 0,
     "PEM CA bundle of the NATS servers' certificates; set: TLS to NATS (empty: plaintext)"},
    {"store.js.tls_cert", M5_CFG_STR, offsetof(server_config_t, store_js_tls_cert), "", 0, 0,
     "PEM client certificate for NATS servers that verify clients (with store.js.tls_key)"},
    {"store.js.tls_key", M5_CFG_STR, offsetof(server_config_t, store_js_tls_key), "", 0, 0,
     "its private key (PEM)"},
    {"store.js.user", M5_CFG_STR, offsetof(server_config_t, store_js_user), "", 0, 0,
     "user name at the NATS servers (with store.js.password_file); empty: none"},
    {"store.js.password_file", M5_CFG_STR, offsetof(server_config_t, store_js_password_file), "",
     0, 0, "file holding that user's password on its first line (read at start, never logged)"},
    {"store.js.creds", M5_CFG_STR, offsetof(server_config_t, store_js_creds), "", 0, 0,
     "NATS credentials file (user JWT + NKey seed), instead of user and password"},
    {"node.name", M5_CFG_STR, offsetof(server_config_t, node_name), "", 0, 0,
     "this m5s node's name, unique in the cluster (letters, digits, '-', '_'; at most 32); "
     "required with store.backend jetstream"},
    {"store.max_per_recipient", M5_CFG_INT, offsetof(server_config_t, store_max_per_recipient),
     "1000", 1, 100000000, "pending messages per recipient (beyond: DELY_FAILED/QUEUE_FULL)"},
    {"store.max_total", M5_CFG_INT, offsetof(server_config_t, store_max_total), "1000000", 1,
     1000000000, "pending messages in all (beyond: 5.03, the server is overloaded)"},
    {"store.queue", M5_CFG_INT, offsetof(server_config_t, store_queue), "4096", 8, 1048576,
     "jobs waiting for the store's writer; each worker's accepts share half (more MSGs wait, "
     "unanswered, and the devices' CoAP windows hold back the rest)"},
    {"store.dedup_window_s", M5_CFG_INT, offsetof(server_config_t, store_dedup_window_s), "600", 10,
     604800, "a repeated (oriAddr, msgId) within this time gets the original answer"},
    {"store.max_ttl_s", M5_CFG_INT, offsetof(server_config_t, store_max_ttl_s), "86400", 1,
     31536000, "longest time a message is kept for delivery (caps stoAndFwParams.exprTime)"},
    {"store.max_msgs_per_originator", M5_CFG_INT,
     offsetof(server_config_t, store_max_msgs_per_originator), "10000", 1, 1000000000,
     "messages one sender (UE or AS) may have stored (beyond: DELY_FAILED/ORIGINATOR_QUOTA)"},
    {"store.max_bytes_per_originator", M5_CFG_INT,
     offsetof(server_config_t, store_max_bytes_per_originator), "67108864", 1, 1099511627776,
     "payload bytes one sender may have stored (beyond: DELY_FAILED/ORIGINATOR_QUOTA)"},
    {"store.max_deliveries_per_originator", M5_CFG_INT,
     offsetof(server_config_t, store_max_deliveries_per_originator), "250000", 1, 1000000000,
     "deliveries of one sender's messages not final yet: a group, area or topic message counts "
     "one per recipient (beyond: DELY_FAILED/ORIGINATOR_QUOTA)"},
    {"store.max_per_recipient_per_originator", M5_CFG_INT,
     offsetof(server_config_t, store_max_per_recipient_per_originator), "0", 0, 100000000,
     "pending messages one sender may have for one recipient (beyond: DELY_FAILED/"
     "ORIGINATOR_QUOTA); 0 = half of store.max_per_recipient"},
    {"store.max_reports_per_recipient", M5_CFG_INT,
     offsetof(server_config_t, store_max_reports_per_recipient), "1000", 1, 100000000,
     "reports (m5s's failure reports, peers' IMDNs / deliver-reports) waiting per originator, "
     "apart from max_per_recipient (beyond: not written / QUEUE_FULL)"},
    {"store.max_report_tickets_per_originator", M5_CFG_INT,
     offsetof(server_config_t, store_max_report_tickets_per_originator), "10000", 0, 100000000,
     "report tickets one sender (UE or AS) may hold, one per stored recipient of a message "
     "asking for a report (beyond: that recipient gets none and its report is dropped)"},
    {"store.in_flight_max_s", M5_CFG_INT, offsetof(server_config_t, store_in_flight_max_s), "300",
     1, 86400, "a push whose outcome could not be recorded is queued again after this"},
    {"store.sqlite_memstatus", M5_CFG_BOOL, offsetof(server_config_t, store_sqlite_memstatus),
     "false", 0, 0,
     "count SQLite's heap (msgin5g_store_sqlite_memory_bytes; off: the gauge reads 0): a "
     "process-wide lock per SQLite allocation, for memory measurements (bench/idle.sh)"},
    {"topics.default_expiry_s", M5_CFG_INT, offsetof(server_config_t, topics_default_expiry_s),
     "86400", 60, 31536000, "Messaging Topics: life of a TOPICSUB without expiry"},
    {"topics.max_expiry_s", M5_CFG_INT, offsetof(server_config_t, topics_max_expiry_s), "2592000",
     60, 31536000, "Messaging Topics: the latest expiry a TOPICSUB gets, from now (caps it)"},
    {"topics.max_per_subscriber", M5_CFG_INT, offsetof(server_config_t, topics_max_per_subscriber),
     "100", 1, 100000,
     "Messaging Topics: subscriptions of one UE Service ID or AS (beyond: 4.03 / 403)"},
    {"topics.max_subscribers", M5_CFG_INT, offsetof(server_config_t, topics_max_subscribers),
     "10000", 1, 100000, "Messaging Topics: subscribers of one topic (beyond: 4.03)"},
    {"topics.rules", M5_CFG_STRLIST, offsetof(server_config_t, topics_rules), NULL, 0, 0,
     "Messaging Topics: who may subscribe/publish, one 'PREFIX [subscribe=PATTERNS] "
     "[publish=PATTERNS]' per entry (docs/m5s.md); none = every registered UE and AS"},
    {"groups.max_groups", M5_CFG_INT, offsetof(server_config_t, groups_max_groups), "10000", 0,
     100000000, "groups and broadcast areas together (beyond: a create is refused)"},
    {"groups.max_members", M5_CFG_INT, offsetof(server_config_t, groups_max_members), "100000", 0,
     100000000, "members of one group or area"},
    {"groups.max_total_members", M5_CFG_INT,
     offsetof(server_config_t, groups_max_total_members), "1000000", 0, 1000000000,
     "members of all groups and areas together (they are held in memory)"},
    {"groups.max_groups_per_as", M5_CFG_INT, offsetof(server_config_t, groups_max_groups_per_as),
     "1000", 1, 100000000, "groups one Application Server may create through SEAL GM"},
    {"groups.max_members_per_as", M5_CFG_INT,
     offsetof(server_config_t, groups_max_members_per_as), "100000", 1, 1000000000,
     "members of all the groups one Application Server created through SEAL GM together"},
    {"groups.max_grants", M5_CFG_INT, offsetof(server_config_t, groups_max_grants), "64", 0,
     100000, "grants (who may send or manage without being a member) per group or area"},
    {"broadcast.rate", M5_CFG_INT, offsetof(server_config_t, broadcast_rate), "1000", 1, 10000000,
     "broadcast messages: deliveries a second over the whole server (paced so that a large "
     "area never starves point-to-point traffic)"},
    {"workers", M5_CFG_INT, offsetof(server_config_t, workers), "0", 0, 256,
     "worker threads; 0 = one per CPU this process may run on"},
    {"coap.max_body", M5_CFG_INT, offsetof(server_config_t, coap_max_body), "65536", 1024, 1048576,
     "largest CoAP body in bytes (larger requests get 4.13)"},
    {"coap.nstart", M5_CFG_INT, offsetof(server_config_t, coap_nstart), "1", 1, 64,
     "UDP: confirmable requests outstanding towards one UE (RFC 7252 NSTART)"},
    {"coap.window", M5_CFG_INT, offsetof(server_config_t, coap_window), "20", 1, 1024,
     "TCP: requests outstanding towards one UE (pipelining window)"},
    {"reg.lifetime_s", M5_CFG_INT, offsetof(server_config_t, reg_lifetime_s), "86400", 60, 31536000,
     "registration lifetime: the expiry returned in the REG answer"},
    /* Who may message whom (docs/delivery.md); PUT /admin/v1/policy replaces these at run
     * time, and what it stores wins over them until DELETE /admin/v1/policy. */
    {"policy.ue_to_ue", M5_CFG_BOOL, offsetof(server_config_t, policy_ue_to_ue), "true", 0, 0,
     "a UE may message another UE (false: DELY_FAILED/NOT_AUTHORIZED)"},
    {"policy.ue_to_as", M5_CFG_STRLIST, offsetof(server_config_t, policy_ue_to_as), "*", 0, 0,
     "asSvcId patterns a UE may message ('*' = any run of characters; [] = no AS)"},
    {"policy.as_to_ue", M5_CFG_BOOL, offsetof(server_config_t, policy_as_to_ue), "true", 0, 0,
     "an AS may message the UEs its ueSvcIds match (m5ctl as add --ue-svc-ids; false: none)"},
    {"policy.as_to_as", M5_CFG_BOOL, offsetof(server_config_t, policy_as_to_as), "false", 0, 0,
     "an AS may message another AS through deliver-as-message"},
    {"log.level", M5_CFG_STR, offsetof(server_config_t, log_level), "info", 0, 0,
     "error, warn, info or debug"},
};
#define N_ITEMS (sizeof items / sizeof items[0])

/* 1..max characters, each a letter, a digit or one of extra. */
static bool name_ok(const char *s, size_t max, const char *extra) {
  size_t n = s ? strlen(s) : 0;
  if (n == 0 || n > max) return false;
  for (size_t i = 0; i < n; i++)
    if (!isalnum((unsigned char)s[i]) && !strchr(extra, s[i])) return false;
  return true;
}

static int check(const server_config_t *cfg, const char *src, char *err, size_t errlen) {
  if (m5_daemon_check_address(src, "ue.host", cfg->ue_host, err, errlen) != 0) return M5_EINVAL;
  char terr[256];
  topics_rules_t *tr = topics_rules_new((const char *const *)cfg->topics_rules.v,
                                        cfg->topics_rules.n, terr, sizeof terr);
  if (!tr) {
    snprintf(err, errlen, "%s: %s", src, terr);
    return M5_EINVAL;
  }
  topics_rules_free(tr);
  /* The management port authenticates with a bearer token only; the architecture (§3.3)
   * requires mutual TLS with an operator certificate as well as soon as it leaves loopback,
   * which is not implemented yet, so the server refuses (docs/admin-api.md). */
  if (!m5_net_is_loopback(cfg->mgmt_host)) {
    snprintf(err, errlen,
             "%s: mgmt.host: '%s' is not a loopback address; off loopback the management port "
             "needs mutual TLS with an operator client certificate besides its token, which is "
             "not implemented yet, so it may only listen on 127.0.0.0/8 or ::1",
             src, cfg->mgmt_host);
    return M5_EINVAL;
  }
  if (!cfg->mgmt_token_file[0]) {
    snprintf(err, errlen, "%s: mgmt.token_file: empty; the admin API needs its token file", src);
    return M5_EINVAL;
  }
  /* Both would bind with SO_REUSEPORT and share the tcp port without an error. */
  if (cfg->mgmt_port == cfg->ue_port) {
    snprintf(err, errlen, "%s: mgmt.port: %lld is also ue.port; choose another", src,
             (long long)cfg->mgmt_port);
    return M5_EINVAL;
  }
  if (cfg->north_port && (cfg->north_port == cfg->ue_port || cfg->north_port == cfg->mgmt_port)) {
    snprintf(err, errlen, "%s: north.port: %lld is also ue.port or mgmt.port; choose another",
             src, (long long)cfg->north_port);
    return M5_EINVAL;
  }
  if (cfg->north_port &&
      m5_daemon_check_address(src, "north.host", cfg->north_host, err, errlen) != 0)
    return M5_EINVAL;
  if (cfg->north_base_url[0] && (strncasecmp(cfg->north_base_url, "https://", 8) != 0 ||
                                 cfg->north_base_url[8] == '\0' ||
                                 cfg->north_base_url[strlen(cfg->north_base_url) - 1] == '/')) {
    snprintf(err, errlen, "%s: north.base_url: expected https://host[:port] without a trailing "
             "'/', got '%s'", src, cfg->north_base_url);
    return M5_EINVAL;
  }
  if (!cfg->oauth_issuer_url[0] != !cfg->oauth_jwks_url[0]) {
    snprintf(err, errlen, "%s: oauth.issuer_url and oauth.jwks_url go together", src);
    return M5_EINVAL;
  }
  if (cfg->oauth_jwks_url[0] && strncasecmp(cfg->oauth_jwks_url, "https://", 8) != 0) {
    snprintf(err, errlen, "%s: oauth.jwks_url: expected an https:// URL, got '%s'", src,
             cfg->oauth_jwks_url);
    return M5_EINVAL;
  }
  if (strcmp(cfg->store_backend, "sqlite") && strcmp(cfg->store_backend, "jetstream")) {
    snprintf(err, errlen, "%s: store.backend: expected sqlite or jetstream, got '%s'", src,
             cfg->store_backend);
    return -1;
  }
  if (!strcmp(cfg->store_backend, "jetstream")) {
    if (!name_ok(cfg->node_name, 32, "-_")) {
      snprintf(err, errlen,
               "%s: node.name: '%s': with store.backend jetstream each node needs a name of 1-32 "
               "letters, digits, '-' or '_'",
               src, cfg->node_name);
      return -1;
    }
    if (!name_ok(cfg->store_js_prefix, 16, "")) {
      snprintf(err, errlen, "%s: store.js.prefix: '%s': 1-16 letters or digits", src,
               cfg->store_js_prefix);
      return -1;
    }
    if (cfg->store_js_servers.n == 0) {
      snprintf(err, errlen, "%s: store.js.servers: the list is empty", src);
      return -1;
    }
    for (size_t i = 0; i < cfg->store_js_servers.n; i++)
      if (strncmp(cfg->store_js_servers.v[i], "nats://", 7)) {
        snprintf(err, errlen, "%s: store.js.servers: expected nats://host:port, got '%s'", src,
                 cfg->store_js_servers.v[i]);
        return -1;
      }
    if (cfg->store_js_replicas % 2 == 0) {
      snprintf(err, errlen, "%s: store.js.replicas: %lld: an odd number (1, 3, 5)", src,
               (long long)cfg->store_js_replicas);
      return -1;
    }
    if (!cfg->store_js_tls_cert[0] != !cfg->store_js_tls_key[0]) {
      snprintf(err, errlen, "%s: store.js.tls_cert and store.js.tls_key: both or neither", src);
      return -1;
    }
    if (!cfg->store_js_user[0] != !cfg->store_js_password_file[0]) {
      snprintf(err, errlen, "%s: store.js.user and store.js.password_file: both or neither", src);
      return -1;
    }
    if (cfg->store_js_user[0] && cfg->store_js_creds[0]) {
      snprintf(err, errlen, "%s: store.js.user or store.js.creds, not both", src);
      return -1;
    }
  }
  if (cfg->fqdns.n == 0) {
    snprintf(err, errlen, "%s: server.fqdns: the list is empty; give at least one name", src);
    return M5_EINVAL;
  }
  for (size_t i = 0; i < cfg->fqdns.n; i++) {
    if (m5_akma_fqdn_valid(cfg->fqdns.v[i]) != 0) {
      snprintf(err, errlen, "%s: server.fqdns: '%s' is not a valid FQDN", src, cfg->fqdns.v[i]);
      return M5_EINVAL;
    }
  }
  if (strncasecmp(cfg->aanf_url, "https://", 8) != 0 || cfg->aanf_url[8] == '\0') {
    snprintf(err, errlen, "%s: aanf.url: expected an https:// URL, got '%s'", src, cfg->aanf_url);
    return M5_EINVAL;
  }
  policy_patterns_t pats = {0};
  for (size_t i = 0; i < cfg->policy_ue_to_as.n; i++) {
    int rc = policy_patterns_add(&pats, cfg->policy_ue_to_as.v[i]);
    if (rc != 0) {
      snprintf(err, errlen, "%s: policy.ue_to_as: %s", src,
               rc == M5_ERANGE ? "at most 16 patterns"
                               : "a pattern is 1-128 printable characters without spaces");
      return M5_EINVAL;
    }
  }
  return m5_daemon_check_log_level(src, cfg->log_level, err, errlen);
}

void server_config_policy(const server_config_t *cfg, policy_t *out) {
  policy_defaults(out);
  out->ue_to_ue = cfg->policy_ue_to_ue;
  out->as_to_ue = cfg->policy_as_to_ue;
  out->as_to_as = cfg->policy_as_to_as;
  out->ue_to_as.n = 0;
  for (size_t i = 0; i < cfg->policy_ue_to_as.n; i++)
    policy_patterns_add(&out->ue_to_as, cfg->policy_ue_to_as.v[i]);
}

int server_config_load(const char *path, server_config_t *cfg, char *err, size_t errlen) {
  memset(cfg, 0, sizeof *cfg);
  int rc = m5_config_load(path, items, N_ITEMS, cfg, err, errlen);
  if (rc != 0) return rc;
  return check(cfg, path ? path : "defaults", err, errlen);
}

void server_config_free(server_config_t *cfg) {
  m5_config_free(items, N_ITEMS, cfg);
}

void server_config_print_help(void *stream) {
  m5_config_print_help(items, N_ITEMS, stream);
}
