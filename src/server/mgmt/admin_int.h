/* Shared by the management handlers: admin.c (health, bindings, metrics), admin_as.c
 * (Application Server clients), admin_gw.c (message gateway clients), admin_policy.c (who may
 * message whom), admin_topics.c (Messaging Topic rules), admin_groups.c (groups and areas), and
 * admin_input.c (what they read from a request alike). */
#ifndef M5_SERVER_ADMIN_INT_H
#define M5_SERVER_ADMIN_INT_H

#include "server/mgmt/admin.h"

#include <jansson.h>

#define ADMIN_AS_CLIENTS "/admin/v1/as-clients/"
#define ADMIN_POLICY "/admin/v1/policy"
#define ADMIN_GATEWAYS "/admin/v1/gateways"
#define ADMIN_TOPIC_RULES "/admin/v1/topic-rules"
#define CT_JSON "application/json"

struct admin {
  m5_loop_t *loop;
  admin_opts_t opts; /* .token is not kept: see token_sha256 */
  unsigned char token_sha256[32];
  int have_token;
  m5_mailbox_t *replies;
  m5_mailbox_t *store_replies; /* M5_STORE_REBIND after a binding changed (admin.c) */
  size_t inflight;
  struct admin_rebind *retries; /* REBINDs the store failed, waiting for their retry (admin.c) */
  size_t n_retries;
  void (*idle_cb)(void *arg);
  void *idle_arg;
};

/* A registry job waiting for its commit, with the exchange to answer. */
typedef struct {
  registry_job_t job; /* first: the reply is &job.base */
  admin_t *a;
  m5_http_exchange_t *ex;
  registry_as_t *as; /* owned; job.as points to it for the REGISTRY_AS_* ops */
  registry_gw_t *gw; /* owned; job.gw points to it for the REGISTRY_GW_* ops */
} pending_t;

/* Sends o (taken) as JSON. */
void admin_respond_json(m5_http_exchange_t *ex, int status, json_t *o);
/* RFC 9457 problem details; param/reason: one invalidParams entry, or NULL; extra: one more
 * header or NULL. */
void admin_problem(m5_http_exchange_t *ex, int status, const char *title, const char *detail,
                   const char *param, const char *reason, const m5_http_header_t *extra);
/* Submits p's job (503 and p freed when the registry is busy). */
void admin_submit(admin_t *a, pending_t *p);
/* Frees p after its answer; reports idle. */
void admin_finish(pending_t *p);
/* One registry job of a fewer outstanding (admin_finish's second half); reports idle. */
void admin_job_done(admin_t *a);
/* Percent-decodes one path segment into out (cap bytes with the NUL); M5_EINVAL for a bad
 * escape, a '/', or a result that does not fit. */
int admin_decode_segment(const char *seg, char *out, size_t cap);

/* admin_input.c: what several handlers read the same way. */
/* A PUT's body as a JSON object (duplicate members refused), the caller's to decref; NULL after
 * answering 415 (not application/json) or 400 (not a JSON object). */
json_t *admin_json_object(m5_http_exchange_t *ex, const m5_http_request_t *req);
/* A client's ID ({asSvcId}, {gwId}: name) from the path segment seg into id: 0, or answers 400
 * naming it and returns M5_EINVAL when it is badly escaped or breaks registry_as_id_valid. */
int admin_client_id(m5_http_exchange_t *ex, const char *seg, const char *name,
                    char id[REGISTRY_AS_ID_MAX + 1]);
/* text lowercased into out (cap bytes with the NUL) and checked as host:port (core/net.h):
 * NULL when it is one, else why not ("too long" when it does not fit). */
const char *admin_hostport(const char *text, char *out, size_t cap);

/* admin_as.c */
void admin_as_clients(admin_t *a, m5_http_exchange_t *ex, const m5_http_request_t *req);
void admin_as_done(pending_t *p); /* the reply of a REGISTRY_AS_* job */

/* admin_gw.c: /admin/v1/gateways[/{gwId}] (message gateway clients) */
void admin_gateways(admin_t *a, m5_http_exchange_t *ex, const m5_http_request_t *req);
void admin_gw_done(pending_t *p); /* the reply of a REGISTRY_GW_* job */

/* admin_policy.c */
void admin_policy(admin_t *a, m5_http_exchange_t *ex, const m5_http_request_t *req);
void admin_policy_done(pending_t *p); /* the reply of a REGISTRY_POLICY_* job */
/* admin_topics.c */
/* A removed AS client's topic subscriptions go too (an asSvcId may be given to another AS
 * later): 1 when p is answered (and finished) here: 204 once the store has dropped them (404
 * for a repeated DELETE, p's job ENOENT), 500 when they could not be dropped; 0 when there is
 * no store (answer now). */
int admin_as_drop_topics(pending_t *p);
/* The store's reply to admin_as_drop_topics' job (admin.c's store mailbox). */
void admin_as_topics_done(m5_store_job_t *job);
/* Answers p's DELETE: the client is removed, its topic subscriptions could not be dropped
 * (500: DELETE again, which drops them). */
void admin_as_topics_failed(pending_t *p);
void admin_topic_rules(admin_t *a, m5_http_exchange_t *ex, const m5_http_request_t *req);
/* admin_groups.c: /admin/v1/groups/... and /admin/v1/areas/... */
int admin_groups_path(const char *path); /* 1 if path is one of theirs */
void admin_groups(admin_t *a, m5_http_exchange_t *ex, const m5_http_request_t *req);
void admin_groups_done(void *job); /* the reply of a REGISTRY_GROUPS job */
void admin_groups_drop(void *job); /* one that came after the loop stopped */

#endif
