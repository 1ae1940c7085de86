/* Naanf_AKMA handlers (TS 29.535 cl. 5.2.2.2 AnchorKey_Register, 5.2.2.3 ApplicationKey_Get,
 * 5.2.2.4 Context_Remove) and /healthz.
 *
 * Authorisation is by the mutual-TLS peer certificate (architecture §3.4, §4): the AUSF role
 * is the SAN URI urn:msgin5g:ausf; an AF is the SAN dNSName equal to the afId it asks for,
 * and that afId must be on afs.allowed. Register and remove check the role before reading
 * the body; retrieve needs the body's afId first. Status codes and causes: TS 29.535 / the
 * OpenAPI files and TS 29.500 Table 5.2.7.2-1; docs/aanf.md lists them. */
#include "aanf_api.h"

#include "aanf_msg.h"
#include "core/err.h"
#include "core/log.h"
#include "crypto/akma.h"
#include "crypto/codec.h"
#include "tls/tls.h"

#include <openssl/x509v3.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define DOM "aanf"
#define BASE "/naanf-akma/v1"
#define PATH_REGISTER BASE "/register-anchorkey"
#define PATH_RETRIEVE BASE "/retrieve-applicationkey"
#define PATH_REMOVE BASE "/remove-context"
#define CT_JSON "application/json"
#define CT_PROBLEM "application/problem+json"
#define CALLER_MAX 96

struct aanf_api {
  m5_loop_t *loop;
  m5_mailbox_t *replies; /* DB jobs come back here; capacity = max_inflight */
  aanf_api_opts_t opts;
  size_t inflight;
  void (*idle_cb)(void *arg);
  void *idle_arg;
};

/* One request waiting for the DB thread. The job is first so the reply maps back to it. */
typedef struct {
  aanf_db_job_t job;
  aanf_api_t *api;
  m5_http_exchange_t *ex;
  const char *path; /* static route string, for the log line */
  aanf_key_req_t kreq;
  char caller[CALLER_MAX];
} pending_t;

/* Keeps a certificate-supplied name printable in the log line. */
static void copy_printable(char *out, size_t outlen, const unsigned char *s, int n) {
  size_t j = 0;
  for (int i = 0; i < n && j + 1 < outlen; i++)
    out[j++] = (s[i] >= 0x21 && s[i] < 0x7f) ? (char)s[i] : '?';
  out[j] = '\0';
}

/* The caller's identity for logs: the first SAN URI (roles), else the first SAN dNSName. */
static void caller_name(SSL *ssl, char *out, size_t outlen) {
  snprintf(out, outlen, "-");
  X509 *cert = ssl ? SSL_get0_peer_certificate(ssl) : NULL;
  if (!cert) return;
  GENERAL_NAMES *names = X509_get_ext_d2i(cert, NID_subject_alt_name, NULL, NULL);
  if (!names) return;
  const ASN1_IA5STRING *dns = NULL, *uri = NULL;
  for (int i = 0; i < sk_GENERAL_NAME_num(names); i++) {
    const GENERAL_NAME *gn = sk_GENERAL_NAME_value(names, i);
    if (gn->type == GEN_URI && !uri) uri = gn->d.uniformResourceIdentifier;
    if (gn->type == GEN_DNS && !dns) dns = gn->d.dNSName;
  }
  const ASN1_IA5STRING *pick = uri ? uri : dns;
  if (pick) copy_printable(out, outlen, ASN1_STRING_get0_data(pick), ASN1_STRING_length(pick));
  GENERAL_NAMES_free(names);
}

static void log_line(const char *method, const char *path, int status, const char *caller) {
  if (status >= 500)
    M5_LOGW(DOM, "%s %s %d caller=%s", method, path, status, caller);
  else
    M5_LOGI(DOM, "%s %s %d caller=%s", method, path, status, caller);
}

/* Answers with a ProblemDetails body; the request log line goes with it. */
static void respond_problem(m5_http_exchange_t *ex, const aanf_problem_t *pb, const char *method,
                            const char *path, const char *caller, const m5_http_header_t *extra,
                            size_t n_extra) {
  char *body = NULL;
  size_t len = 0;
  m5_http_header_t hdrs[3] = {{"content-type", CT_PROBLEM}};
  size_t n = 1;
  for (size_t i = 0; i < n_extra && n < 3; i++)
    hdrs[n++] = extra[i];
  if (aanf_msg_problem_json(pb, &body, &len) != 0) {
    m5_http_respond(ex, 500, NULL, NULL, 0);
    log_line(method, path, 500, caller);
    return;
  }
  m5_http_respond_headers(ex, pb->status, hdrs, n, body, len);
  free(body);
  log_line(method, path, pb->status, caller);
}

static void problem(m5_http_exchange_t *ex, int status, const char *title, const char *cause,
                    const char *method, const char *path, const char *caller, const char *detail) {
  aanf_problem_t pb;
  aanf_problem_set(&pb, status, title, cause, NULL, "%s", detail);
  respond_problem(ex, &pb, method, path, caller, NULL, 0);
}

static void system_failure(m5_http_exchange_t *ex, const char *path, const char *caller) {
  problem(ex, 500, "Internal Server Error", "SYSTEM_FAILURE", "POST", path, caller,
          "the AKMA context store failed; see the AAnF's log");
}

/* Answers with a JSON body that may hold a key, then wipes it. */
static void respond_secret(m5_http_exchange_t *ex, const char *path, const char *caller, char *body,
                           size_t len) {
  m5_http_respond(ex, 200, CT_JSON, body, len);
  aanf_msg_free_secret(body, len);
  log_line("POST", path, 200, caller);
}

static void finish(pending_t *p) {
  aanf_api_t *api = p->api;
  m5_wipe(p, sizeof *p);
  free(p);
  api->inflight--;
  if (api->inflight == 0 && api->idle_cb) {
    void (*cb)(void *) = api->idle_cb;
    api->idle_cb = NULL;
    cb(api->idle_arg);
  }
}

static void done_register(pending_t *p) {
  aanf_db_job_t *job = &p->job;
  aanf_key_info_t ki;
  char *body = NULL;
  size_t len = 0;
  if (job->status != 0) {
    system_failure(p->ex, p->path, p->caller);
    return;
  }
  memcpy(ki.supi, job->supi, sizeof ki.supi);
  memcpy(ki.akid, job->akid, sizeof ki.akid);
  memcpy(ki.kakma, job->kakma, sizeof ki.kakma);
  /* AkmaKeyInfo is the 200 body (TS 29.535 OpenAPI); kAkma is required in it, so the
   * registration is echoed whole, to the AUSF that sent it, over the same TLS session. */
  int rc = aanf_msg_key_info_json(&ki, &body, &len);
  aanf_msg_key_info_wipe(&ki);
  if (rc != 0) {
    system_failure(p->ex, p->path, p->caller);
    return;
  }
  respond_secret(p->ex, p->path, p->caller, body, len);
}

static void done_retrieve(pending_t *p) {
  aanf_db_job_t *job = &p->job;
  uint8_t kaf[M5_AKMA_KEY_LEN];
  char *body = NULL;
  size_t len = 0;
  if (job->status == M5_ENOENT) {
    /* TS 29.535: 204 "the requested AKMA Application material does not exist". */
    m5_http_respond(p->ex, 204, NULL, NULL, 0);
    log_line("POST", p->path, 204, p->caller);
    return;
  }
  if (job->status != 0) {
    system_failure(p->ex, p->path, p->caller);
    return;
  }
  int rc = m5_akma_kaf(job->kakma, p->kreq.af_id, p->kreq.ua, kaf);
  if (rc == 0) {
    time_t expiry = time(NULL) + (time_t)p->api->opts.kaf_lifetime_s;
    rc = aanf_msg_af_key_data_json(kaf, expiry, p->kreq.anon ? NULL : job->supi, &body, &len);
  }
  m5_wipe(kaf, sizeof kaf);
  if (rc != 0) {
    system_failure(p->ex, p->path, p->caller);
    return;
  }
  respond_secret(p->ex, p->path, p->caller, body, len);
}

static void done_remove(pending_t *p) {
  if (p->job.status == M5_ENOENT) {
    problem(p->ex, 404, "Not Found", "CONTEXT_NOT_FOUND", "POST", p->path, p->caller,
            "no AKMA context exists for this SUPI");
  } else if (p->job.status != 0) {
    system_failure(p->ex, p->path, p->caller);
  } else {
    m5_http_respond(p->ex, 204, NULL, NULL, 0);
    log_line("POST", p->path, 204, p->caller);
  }
}

static void on_reply(void *msg, void *arg) {
  (void)arg;
  pending_t *p = msg; /* job is the first member */
  switch (p->job.op) {
  case AANF_DB_REGISTER:
    done_register(p);
    break;
  case AANF_DB_LOOKUP:
    done_retrieve(p);
    break;
  case AANF_DB_REMOVE:
    done_remove(p);
    break;
  }
  finish(p);
}

static pending_t *pending_new(aanf_api_t *api, m5_http_exchange_t *ex, const char *path,
                              const char *caller) {
  if (api->inflight >= api->opts.max_inflight) return NULL;
  pending_t *p = calloc(1, sizeof *p);
  if (!p) return NULL;
  p->api = api;
  p->ex = ex;
  p->path = path;
  p->job.base.reply = api->replies;
  p->job.arg = p;
  snprintf(p->caller, sizeof p->caller, "%s", caller);
  return p;
}

static void overloaded(m5_http_exchange_t *ex, const char *path, const char *caller) {
  static const m5_http_header_t retry = {"retry-after", "1"};
  aanf_problem_t pb;
  aanf_problem_set(&pb, 503, "Service Unavailable", "NF_CONGESTION", NULL,
                   "too many requests are waiting for the AKMA context store; retry later");
  respond_problem(ex, &pb, "POST", path, caller, &retry, 1);
}

/* Submits p's job; on failure answers 503 (or 500) and frees p. */
static void submit(aanf_api_t *api, pending_t *p) {
  int rc = aanf_db_submit(api->opts.db, &p->job);
  if (rc == 0) {
    api->inflight++;
    return;
  }
  if (rc == M5_EFULL)
    overloaded(p->ex, p->path, p->caller);
  else
    system_failure(p->ex, p->path, p->caller);
  m5_wipe(p, sizeof *p);
  free(p);
}

static int af_allowed(const aanf_api_t *api, const char *af_id) {
  const m5_strlist_t *l = api->opts.afs_allowed;
  for (size_t i = 0; i < l->n; i++)
    if (!strcasecmp(l->v[i], af_id)) return 1; /* DNS names compare without case */
  return 0;
}

static void op_register(aanf_api_t *api, m5_http_exchange_t *ex, const m5_http_request_t *req,
                        const char *caller) {
  aanf_problem_t pb;
  aanf_key_info_t ki;
  if (!m5_tls_peer_has_san_uri(req->ssl, AANF_AUSF_URI)) {
    problem(ex, 403, "Forbidden", "ROLE_NOT_ALLOWED", "POST", PATH_REGISTER, caller,
            "registering anchor keys needs the AUSF role (certificate SAN URI " AANF_AUSF_URI ")");
    return;
  }
  if (aanf_msg_parse_key_info(req->body, req->body_len, &ki, &pb) != 0) {
    respond_problem(ex, &pb, "POST", PATH_REGISTER, caller, NULL, 0);
    return;
  }
  pending_t *p = pending_new(api, ex, PATH_REGISTER, caller);
  if (!p) {
    aanf_msg_key_info_wipe(&ki);
    overloaded(ex, PATH_REGISTER, caller);
    return;
  }
  p->job.op = AANF_DB_REGISTER;
  memcpy(p->job.supi, ki.supi, sizeof ki.supi);
  memcpy(p->job.akid, ki.akid, sizeof ki.akid);
  memcpy(p->job.kakma, ki.kakma, sizeof ki.kakma);
  aanf_msg_key_info_wipe(&ki);
  submit(api, p);
}

static void op_retrieve(aanf_api_t *api, m5_http_exchange_t *ex, const m5_http_request_t *req,
                        const char *caller) {
  aanf_problem_t pb;
  aanf_key_req_t kr;
  if (aanf_msg_parse_key_req(req->body, req->body_len, &kr, &pb) != 0) {
    respond_problem(ex, &pb, "POST", PATH_RETRIEVE, caller, NULL, 0);
    return;
  }
  /* The AF must be the one named by afId, or one AF could obtain another's K_AF; checked
   * before the allow-list so a caller cannot probe which other AFs are allowed. Then TS 33.535
   * 6.2 step 3: the AAnF checks that the AF may get AKMA keys (local policy). */
  if (!m5_tls_peer_has_san_dns(req->ssl, kr.af_id)) {
    aanf_problem_set(&pb, 403, "Forbidden", "AF_NOT_ALLOWED", NULL,
                     "the client certificate does not name afId %.64s as a SAN dNSName", kr.af_id);
    respond_problem(ex, &pb, "POST", PATH_RETRIEVE, caller, NULL, 0);
    return;
  }
  if (!af_allowed(api, kr.af_id)) {
    aanf_problem_set(&pb, 403, "Forbidden", "AF_NOT_ALLOWED", NULL,
                     "AF %.64s is not allowed to use AKMA here (afs.allowed)", kr.af_id);
    respond_problem(ex, &pb, "POST", PATH_RETRIEVE, caller, NULL, 0);
    return;
  }
  pending_t *p = pending_new(api, ex, PATH_RETRIEVE, caller);
  if (!p) {
    overloaded(ex, PATH_RETRIEVE, caller);
    return;
  }
  p->job.op = AANF_DB_LOOKUP;
  p->kreq = kr;
  memcpy(p->job.akid, kr.akid, sizeof kr.akid);
  submit(api, p);
}

static void op_remove(aanf_api_t *api, m5_http_exchange_t *ex, const m5_http_request_t *req,
                      const char *caller) {
  aanf_problem_t pb;
  aanf_ctx_remove_t cr;
  if (!m5_tls_peer_has_san_uri(req->ssl, AANF_AUSF_URI)) {
    problem(ex, 403, "Forbidden", "ROLE_NOT_ALLOWED", "POST", PATH_REMOVE, caller,
            "removing AKMA contexts needs the AUSF role (certificate SAN URI " AANF_AUSF_URI ")");
    return;
  }
  if (aanf_msg_parse_ctx_remove(req->body, req->body_len, &cr, &pb) != 0) {
    respond_problem(ex, &pb, "POST", PATH_REMOVE, caller, NULL, 0);
    return;
  }
  pending_t *p = pending_new(api, ex, PATH_REMOVE, caller);
  if (!p) {
    overloaded(ex, PATH_REMOVE, caller);
    return;
  }
  p->job.op = AANF_DB_REMOVE;
  memcpy(p->job.supi, cr.supi, sizeof cr.supi);
  submit(api, p);
}

/* "application/json", optionally with parameters ("; charset=utf-8"). */
static int is_json(const char *ct) {
  size_t n = strlen(CT_JSON);
  if (!ct || strncasecmp(ct, CT_JSON, n) != 0) return 0;
  ct += n;
  while (*ct == ' ' || *ct == '\t')
    ct++;
  return *ct == '\0' || *ct == ';';
}

void aanf_api_sbi(m5_http_exchange_t *ex, const m5_http_request_t *req, void *arg) {
  static const m5_http_header_t allow = {"allow", "POST"};
  aanf_api_t *api = arg;
  char caller[CALLER_MAX];
  char method[16];
  caller_name(req->ssl, caller, sizeof caller);
  copy_printable(method, sizeof method, (const unsigned char *)req->method,
                 (int)strnlen(req->method, sizeof method));
  void (*op)(aanf_api_t *, m5_http_exchange_t *, const m5_http_request_t *, const char *) = NULL;
  const char *path = NULL;
  if (!strcmp(req->path, PATH_REGISTER)) {
    op = op_register;
    path = PATH_REGISTER;
  } else if (!strcmp(req->path, PATH_RETRIEVE)) {
    op = op_retrieve;
    path = PATH_RETRIEVE;
  } else if (!strcmp(req->path, PATH_REMOVE)) {
    op = op_remove;
    path = PATH_REMOVE;
  }
  if (!op) {
    /* The request path is the peer's own text: it is not copied into the log. */
    problem(ex, 404, "Not Found", "RESOURCE_URI_STRUCTURE_NOT_FOUND", method, "(unknown path)",
            caller, "no such resource in Naanf_AKMA");
    return;
  }
  if (strcmp(req->method, "POST") != 0) {
    aanf_problem_t pb;
    aanf_problem_set(&pb, 405, "Method Not Allowed", NULL, NULL, "%s accepts POST only", path);
    respond_problem(ex, &pb, method, path, caller, &allow, 1);
    return;
  }
  if (!is_json(req->content_type)) {
    problem(ex, 415, "Unsupported Media Type", NULL, "POST", path, caller,
            "the request body must be application/json");
    return;
  }
  op(api, ex, req, caller);
}

void aanf_api_mgmt(m5_http_exchange_t *ex, const m5_http_request_t *req, void *arg) {
  static const m5_http_header_t allow = {"allow", "GET"};
  aanf_api_t *api = arg;
  if (strcmp(req->path, "/healthz") != 0) {
    problem(ex, 404, "Not Found", "RESOURCE_URI_STRUCTURE_NOT_FOUND", "-", "(unknown)", "mgmt",
            "the management port serves /healthz only");
    return;
  }
  if (strcmp(req->method, "GET") != 0) {
    aanf_problem_t pb;
    aanf_problem_set(&pb, 405, "Method Not Allowed", NULL, NULL, "/healthz accepts GET only");
    respond_problem(ex, &pb, "-", "/healthz", "mgmt", &allow, 1);
    return;
  }
  if (atomic_load(api->opts.ready)) {
    static const char ok[] = "{\"status\":\"ok\"}";
    m5_http_respond(ex, 200, CT_JSON, ok, sizeof ok - 1);
  } else {
    static const char starting[] = "{\"status\":\"starting\"}";
    m5_http_respond(ex, 503, CT_JSON, starting, sizeof starting - 1);
  }
}

aanf_api_t *aanf_api_new(m5_loop_t *loop, const aanf_api_opts_t *opts) {
  aanf_api_t *api = calloc(1, sizeof *api);
  if (!api) return NULL;
  api->loop = loop;
  api->opts = *opts;
  if (api->opts.max_inflight == 0) api->opts.max_inflight = 1;
  api->replies = m5_mailbox_new(loop, api->opts.max_inflight, on_reply, api);
  if (!api->replies) {
    free(api);
    return NULL;
  }
  return api;
}

void aanf_api_free(aanf_api_t *api) {
  if (!api) return;
  m5_mailbox_free(api->replies, NULL);
  free(api);
}

void aanf_api_when_idle(aanf_api_t *api, void (*done)(void *arg), void *arg) {
  if (api->inflight == 0) {
    done(arg);
    return;
  }
  api->idle_cb = done;
  api->idle_arg = arg;
}
