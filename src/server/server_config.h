/* m5s configuration: the settings, their defaults and the YAML table that loads them
 * (architecture §2: one YAML file, sane defaults so the daemon starts with no file at all).
 * docs/m5s.md lists the keys. */
#ifndef M5_SERVER_CONFIG_H
#define M5_SERVER_CONFIG_H

#include "core/config.h"
#include "server/policy/policy.h"

#include <stddef.h>
#include <stdint.h>

typedef struct {
  char *ue_host; /* MSGin5G-1: CoAP over DTLS (udp) and over TLS (tcp), same port */
  int64_t ue_port;
  int64_t ue_max_sessions; /* per worker */
  int64_t ue_idle_timeout_s;
  /* Bounds on what a peer gets before it has proved a K_AF (src_limits.h), per worker */
  int64_t ue_max_handshakes; /* per worker and transport, all sources */
  int64_t ue_max_handshakes_per_addr, ue_max_handshakes_per_prefix;
  int64_t ue_source_table_size;
  int64_t ue_dtls_cookie_rotate_s;
  int64_t aanf_max_fetches; /* AAnF requests in flight */
  int64_t aanf_max_fetches_per_addr, aanf_max_fetches_per_prefix;
  int64_t aanf_unknown_akid_burst, aanf_unknown_akid_per_s;
  char *mgmt_host; /* /healthz and the admin API: HTTP/1.1 and h2c, loopback only */
  int64_t mgmt_port;
  char *mgmt_token_file; /* the admin API's bearer token (admin_token.h) */
  char *aanf_url;
  int64_t aanf_timeout_ms;
  char *tls_cert; /* the AF's client certificate towards the AAnF (SAN dNSName = FQDN) */
  char *tls_key;
  char *tls_ca;
  m5_strlist_t fqdns; /* server.fqdns: the names K_AF is derived for; [0] is the primary */
  /* MSGin5G-3 for Application Servers (docs/northbound.md): HTTP/2 over TLS with client
   * certificates, OAuth2 bearer tokens */
  char *north_host;
  int64_t north_port;     /* 0 = no northbound listener */
  char *north_base_url;   /* "" = https://<server.fqdns[0]>:<north.port> (tokens' aud) */
  char *oauth_key;        /* our token signing key (EC P-256 PEM); "" = no token endpoint */
  int64_t oauth_token_lifetime_s;
  char *oauth_issuer_url; /* an external issuer whose tokens are accepted too ("" = none) */
  char *oauth_jwks_url;   /* its JWKS */
  char *oauth_jwks_ca;    /* CA for the JWKS server; "" = tls.ca */
  int64_t oauth_jwks_refresh_s;
  char *db_path;
  char *store_path; /* the message store (store-and-forward, dedup); "" = beside db.path */
  /* Scale-out (issue 13, docs/scale-out.md): "sqlite" (one node) or "jetstream" (nodes
   * sharing a NATS JetStream cluster: store.js.*, node.name). */
  char *store_backend;
  m5_strlist_t store_js_servers; /* nats://host:port URLs */
  int64_t store_js_replicas;
  char *store_js_prefix; /* stream, bucket and subject prefix */
  int64_t store_js_timeout_ms;
  char *store_js_tls_ca, *store_js_tls_cert, *store_js_tls_key; /* TLS towards NATS */
  char *store_js_user, *store_js_password_file, *store_js_creds; /* credentials */
  char *node_name; /* this node's name in the cluster (its queue subjects) */
  int64_t store_max_per_recipient;
  int64_t store_max_total;
  int64_t store_queue;
  int64_t store_dedup_window_s;
  int64_t store_max_ttl_s;
  int64_t store_max_msgs_per_originator, store_max_bytes_per_originator;
  int64_t store_max_deliveries_per_originator;
  int64_t store_max_per_recipient_per_originator;
  int64_t store_max_reports_per_recipient;
  int64_t store_max_report_tickets_per_originator;
  int64_t store_in_flight_max_s;
  int store_sqlite_memstatus; /* SQLite counts its heap (the sqlite memory gauge) */
  int64_t topics_default_expiry_s, topics_max_expiry_s; /* Messaging Topics (topics/) */
  int64_t topics_max_per_subscriber, topics_max_subscribers;
  m5_strlist_t topics_rules; /* topics_rules.h lines */
  /* groups and broadcast areas (server/groups/groups.h) */
  int64_t groups_max_groups, groups_max_members, groups_max_total_members, groups_max_grants;
  int64_t groups_max_groups_per_as, groups_max_members_per_as;
  int64_t broadcast_rate; /* broadcast pushes a second, server-wide (delivery/fanout.h) */
  int64_t workers;
  int64_t coap_max_body;
  int64_t coap_nstart;
  int64_t coap_window;
  int64_t reg_lifetime_s;
  /* Who may message whom (policy.h; docs/delivery.md): the initial policy; one stored through
   * the admin API (PUT /admin/v1/policy) takes precedence */
  int policy_ue_to_ue;
  m5_strlist_t policy_ue_to_as; /* asSvcId patterns */
  int policy_as_to_ue;
  int policy_as_to_as;
  char *log_level;
} server_config_t;

/* Loads defaults, then path's values (path may be NULL), then checks what the table cannot
 * (addresses, loopback management, FQDNs, the AAnF URL, log level). err names the key. */
int server_config_load(const char *path, server_config_t *cfg, char *err, size_t errlen);
void server_config_free(server_config_t *cfg);
void server_config_print_help(void *stream /* FILE * */);
/* The policy.* keys as a policy (checked by server_config_load: cannot fail after it). */
void server_config_policy(const server_config_t *cfg, policy_t *out);

#endif
