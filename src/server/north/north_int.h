/* Shared by the northbound handlers: north.c (listener, routing, who is calling, bearer
 * tokens, problem details), north_token.c (token endpoint, JWKS, metadata) and north_asreg.c
 * (MSGS_ASRegistration), north_msg.c (MSGS_MSGDelivery), north_topicsub.c (topic
 * subscriptions). */
#ifndef M5_SERVER_NORTH_INT_H
#define M5_SERVER_NORTH_INT_H

#include "server/north/north.h"

#include "http/client.h"

#include <jansson.h>

#define NORTH_CT_JSON "application/json"
#define NORTH_MAX_REG_INFLIGHT 64 /* registry jobs per worker (the reply mailbox holds 256) */

/* Bearer tokens verified lately, per worker (north_tokcache.c). */
#define NORTH_TOK_SLOTS 64
typedef struct north_tok north_tok_t;

struct north {
  m5_loop_t *loop;
  north_opts_t o;
  m5_http_server_t *http;
  m5_mailbox_t *replies; /* registry jobs come back here */
  size_t inflight;
  int http_drained;
  /* the external issuer's keys (this worker's copy) */
  m5_http_client_t *jwks_http;
  m5_jwks_t *ext_keys;
  uint64_t ext_keys_gen; /* +1 whenever ext_keys is replaced */
  north_tok_t *toks;     /* NORTH_TOK_SLOTS, made at the first verified token */
  int fetching, freeing;
  uint64_t last_fetch_ms;
  m5_timer_id_t refresh_timer;
  void (*idle_cb)(void *arg);
  void *idle_arg;
};

/* The calling AS: its asSvcId from its certificate, which is a configured AS client, that
 * client's authentication mode, and the certificate's x5t#S256. */
typedef struct {
  char as_svc_id[REGISTRY_AS_ID_MAX + 1]; /* or a gateway's gwId (gw) */
  int gw;                                 /* a message gateway (north_gw_caller) */
  registry_as_auth_t auth;
  char x5t[M5_JWT_X5T_LEN + 1];
} north_caller_t;

/* TS 29.571 ProblemDetails (status, title, detail, cause, invalidParams[0] = param/reason). */
void north_problem(m5_http_exchange_t *ex, int status, const char *cause, const char *detail,
                   const char *param, const char *reason);
/* 503/500 ProblemDetails with Retry-After (seconds). */
void north_problem_retry(m5_http_exchange_t *ex, int status, const char *detail,
                         const char *retry_after);
/* Sends o (taken) as application/json with the given extra headers. */
void north_json(m5_http_exchange_t *ex, int status, json_t *o, const m5_http_header_t *hdrs,
                size_t n_hdrs);
/* 0 and *c; or answers (403: no AS identity in the certificate or not a configured client). */
int north_caller(north_t *n, m5_http_exchange_t *ex, const m5_http_request_t *req,
                 north_caller_t *c);
/* Checks the bearer token for scope and the caller; 0 and *claims, or answers 401/403 with
 * the RFC 6750 WWW-Authenticate challenge. A caller whose AS client has auth mtls may send no
 * Authorization at all: 0 with *claims zeroed (its certificate, checked by north_caller, is
 * the credential); a token it does send is checked like anyone's. */
/* 1 and *out = the claims when this worker verified token on a connection with the client
 * certificate x5t and it is still good at now (exp + leeway_s; for an external issuer's token,
 * the same key set); 0 otherwise, with digest = the token's SHA-256 for north_tok_store; -1
 * when the digest could not be computed (verify, do not remember). */
int north_tok_lookup(north_t *n, const char *tok, size_t len, const char *x5t, int64_t now,
                     int64_t leeway_s, m5_jwt_claims_t *out, uint8_t digest[32]);
/* Remembers a token that verified (ext: with the external issuer's keys). */
void north_tok_store(north_t *n, const uint8_t digest[32], const char *x5t, int ext,
                     const m5_jwt_claims_t *claims);
void north_tok_forget(north_tok_t *t);
void north_tok_free(north_t *n);

int north_bearer(north_t *n, m5_http_exchange_t *ex, const m5_http_request_t *req,
                 const north_caller_t *c, const char *scope, m5_jwt_claims_t *claims);
/* 1 if content_type is type (case-insensitive), with or without parameters after ';'. */
int north_media_type_is(const char *content_type, const char *type);
/* Reads a JSON object body (415/400 answered on failure: NULL). */
json_t *north_body(m5_http_exchange_t *ex, const m5_http_request_t *req);

/* north_token.c */
void north_token(north_t *n, m5_http_exchange_t *ex, const m5_http_request_t *req);
void north_jwks(north_t *n, m5_http_exchange_t *ex);
void north_metadata(north_t *n, m5_http_exchange_t *ex);

/* north_asreg.c */
#define NORTH_ASREG "/msgs-asregistration/v1/registrations"
void north_asreg(north_t *n, m5_http_exchange_t *ex, const m5_http_request_t *req);
void north_asreg_done(registry_job_t *job); /* a registry reply (the job heads its record) */

/* north_msg.c */
#define NORTH_MSGDELIVERY "/msgs-msgdelivery/v1"
void north_msgdelivery(north_t *n, m5_http_exchange_t *ex, const m5_http_request_t *req);

/* north_topicsub.c (Messaging Topic subscriptions of ASs, our design) */
#define NORTH_TOPICSUB "/msgs-topicsubscription/v1/subscriptions"
void north_topicsub(north_t *n, m5_http_exchange_t *ex, const m5_http_request_t *req);
/* north_gm.c (SEAL SS_GroupManagement) */
#define NORTH_GM "/ss-gm/v1/group-documents"
void north_gm(north_t *n, m5_http_exchange_t *ex, const m5_http_request_t *req);
void north_gm_done(void *job); /* a REGISTRY_GROUPS reply */
void north_gm_drop(void *job); /* one that came after the loop stopped */

/* server/gw/gw_north.c: message gateways on this listener (MSGin5G-2/-4).
 * 1 if the request's client certificate names a gateway (SAN URI urn:msgin5g:gw:<gwId>). */
int north_peer_is_gw(const m5_http_request_t *req);
/* Like north_caller, for a gateway: 0 and *c (c->gw = 1, c->as_svc_id = the gwId), or answers
 * 403 (no gateway identity in the certificate, or not a configured gateway client). */
int north_gw_caller(north_t *n, m5_http_exchange_t *ex, const m5_http_request_t *req,
                    north_caller_t *c);
/* deliver-ue-message / deliver-report from a gateway: 0 when m's oriAddr is a UE Service ID
 * the gateway's pattern allows and the gateway holds (*ori_gen = its generation), else
 * answered 403. */
int north_gw_check_ori(north_t *n, m5_http_exchange_t *ex, const north_caller_t *c,
                       const m5_msg_t *m, uint64_t *ori_gen);
/* Our UE registration resource for gateways. */
#define NORTH_GWREG "/msgs-gwueregistration/v1/registrations"
void north_gwreg(north_t *n, m5_http_exchange_t *ex, const m5_http_request_t *req);
void north_gwreg_done(registry_job_t *job); /* a REGISTRY_GW_UE_* reply */
void north_gwreg_drop(registry_job_t *job); /* one after the loop stopped */

/* Counts a registry job in flight / done (for the drain). */
void north_job_started(north_t *n);
void north_job_finished(north_t *n);

#endif
