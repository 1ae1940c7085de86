/* Message gateways on the northbound listener (MSGin5G-2 / MSGin5G-4; TS 23.554 cl. 5.3.4,
 * 8.2.3, 8.2.4; docs/northbound.md "Gateways"): who is calling (a gateway certificate, SAN URI
 * urn:msgin5g:gw:<gwId>, of a configured gateway client), which UE Service IDs it may
 * originate as (its pattern, and only those it holds), and our UE registration resource
 * (TS 29.538 has none; in the style of MSGS_ASRegistration):
 *   POST /msgs-gwueregistration/v1/registrations {"gwId", "ueSvcIds": [1..1000]} -> 201, the
 *        same body; all or nothing; 403 outside the pattern or another gwId; 409 an ID bound
 *        to a subscriber or held by another gateway;
 *   DELETE /msgs-gwueregistration/v1/registrations/{ueSvcId} -> 204 (404: not held by it);
 *   GET /msgs-gwueregistration/v1/registrations[?limit=1..1000][&after=<ueSvcId>] -> 200
 *        {"gwId", "ueSvcIds": [the caller's own, in byte order, after the cursor], "more"}:
 *        what m5s holds for the gateway, so that it can drop what it no longer serves.
 * Scope msgs-gwueregistration. Each ID that changes holder takes a new binding generation in
 * the registry's transaction; the message store is then told (ue_api_rebind), so what it kept
 * for the previous holder is failed and its dedup state dropped. */
#include "server/north/north_int.h"

#include "core/err.h"
#include "core/log.h"
#include "tls/tls.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DOM "north"
#define GW_DUE_MAX 64 /* devices of one registration whose stored messages are pushed at once */

int north_peer_is_gw(const m5_http_request_t *req) {
  char id[REGISTRY_AS_ID_MAX + 1];
  return req->ssl && SSL_get0_peer_certificate(req->ssl) &&
         m5_tls_peer_san_uri_suffix(req->ssl, NORTH_GW_URI_PREFIX, id, sizeof id) == 0;
}

int north_gw_caller(north_t *n, m5_http_exchange_t *ex, const m5_http_request_t *req,
                    north_caller_t *c) {
  memset(c, 0, sizeof c[0]);
  c->gw = 1;
  c->auth = REGISTRY_AS_AUTH_TOKEN; /* a gateway always shows a token */
  X509 *cert = req->ssl ? SSL_get0_peer_certificate(req->ssl) : NULL;
  if (!cert ||
      m5_tls_peer_san_uri_suffix(req->ssl, NORTH_GW_URI_PREFIX, c->as_svc_id,
                                 sizeof c->as_svc_id) != 0 ||
      !registry_as_id_valid(c->as_svc_id)) {
    north_problem(ex, 403, "NOT_A_GATEWAY",
                  "this API is for message gateways: the client certificate names none (SAN URI "
                  "urn:msgin5g:gw:<gwId>)",
                  NULL, NULL);
    return M5_EPERM;
  }
  registry_gw_t g;
  if (registry_gw_lookup(n->o.reg, c->as_svc_id, &g) != 0) {
    north_problem(ex, 403, "UNKNOWN_GATEWAY", "this message gateway is not a configured client",
                  NULL, NULL);
    return M5_EPERM;
  }
  if (m5_jwt_x5t_s256(cert, c->x5t) != 0) {
    north_problem(ex, 500, NULL, "cannot hash the client certificate", NULL, NULL);
    return M5_ECRYPTO;
  }
  return 0;
}

int north_gw_check_ori(north_t *n, m5_http_exchange_t *ex, const north_caller_t *c,
                       const m5_msg_t *m, uint64_t *ori_gen) {
  registry_gw_t g, holder;
  if (strcmp(m->ori.type, "UE") != 0) {
    north_problem(ex, 403, "NOT_AUTHORIZED",
                  "oriAddr: a message gateway sends only as its devices ({\"addrType\":\"UE\", "
                  "\"addr\": <UE Service ID>})",
                  "oriAddr", "not a UE");
    return M5_EPERM;
  }
  if (registry_gw_lookup(n->o.reg, c->as_svc_id, &g) != 0 ||
      !registry_gw_pattern_match(g.pattern, m->ori.addr)) {
    north_problem(ex, 403, "NOT_AUTHORIZED",
                  "oriAddr: this UE Service ID is outside the gateway's pattern", "oriAddr",
                  "outside the gateway's pattern");
    return M5_EPERM;
  }
  if (registry_gw_holder(n->o.reg, m->ori.addr, &holder, ori_gen) != 0 ||
      strcmp(holder.gw_id, c->as_svc_id) != 0) {
    north_problem(ex, 403, "NOT_AUTHORIZED",
                  "oriAddr: this UE Service ID is not registered by this gateway", "oriAddr",
                  "not registered by this gateway");
    return M5_EPERM;
  }
  return 0;
}

/* ---- the registration resource ---- */

typedef struct {
  registry_job_t job; /* first: the reply is the record */
  registry_gw_t gw;
  north_t *n;
  m5_http_exchange_t *ex;
  json_t *body; /* POST: the answer (the request's gwId and ueSvcIds) */
  char (*ids)[REGISTRY_ID_MAX + 1];
  uint64_t *gens;
  unsigned char *fresh;
} pending_t;

static void pending_free(pending_t *p) {
  json_decref(p->body);
  free(p->ids);
  free(p->gens);
  free(p->fresh);
  free(p);
}

void north_gwreg_drop(registry_job_t *job) {
  pending_free((pending_t *)job);
}

void north_gwreg_done(registry_job_t *job) {
  pending_t *p = (pending_t *)job;
  north_t *n = p->n;
  const char *gw = p->gw.gw_id;
  char why[REGISTRY_ID_MAX + 96], param[32];
  const char *bad = job->ids && job->bad < job->n_ids ? job->ids[job->bad] : "";
  snprintf(param, sizeof param, "ueSvcIds[%zu]", job->bad);
  if (job->status == M5_ENOENT && job->op != REGISTRY_GW_UE_DEREG) {
    north_problem(p->ex, 403, "UNKNOWN_GATEWAY", "the gateway client was removed meanwhile", NULL,
                  NULL);
  } else if (job->status == M5_ENOENT) {
    north_problem(p->ex, 404, "RESOURCE_NOT_FOUND", "this gateway holds no such UE Service ID",
                  NULL, NULL);
  } else if (job->status == M5_EPERM) {
    snprintf(why, sizeof why, "%s: outside the gateway's pattern", bad);
    north_problem(p->ex, 403, "NOT_AUTHORIZED", why, param, "outside the gateway's pattern");
  } else if (job->status == M5_EEXIST) {
    snprintf(why, sizeof why, "%s: bound to an MSGin5G subscriber or held by another gateway", bad);
    north_problem(p->ex, 409, "UE_SVC_ID_IN_USE", why, param, "in use");
  } else if (job->status == M5_ERANGE) {
    north_problem(p->ex, 403, "LIMIT_REACHED",
                  "a message gateway may hold at most 100000 UE Service IDs", "ueSvcIds",
                  "too many for this gateway");
  } else if (job->status == M5_EINVAL) {
    snprintf(why, sizeof why, "%s: not a valid UE Service ID", bad);
    north_problem(p->ex, 400, "INVALID_MSG_FORMAT", why, param, "not a valid UE Service ID");
  } else if (job->status != 0) {
    M5_LOGE(DOM, "gateway %s: the registry failed: %s", gw, m5_strerror(job->status));
    north_problem(p->ex, 500, NULL, "the registry failed; see the server's log", NULL, NULL);
  } else if (job->op == REGISTRY_GW_UE_LIST) {
    json_t *ids = json_array();
    for (size_t i = 0; ids && i < job->n_ids; i++)
      if (json_array_append_new(ids, json_string(p->ids[i])) != 0) {
        json_decref(ids);
        ids = NULL;
      }
    json_t *o =
        ids ? json_pack("{s:s, s:o, s:b}", "gwId", gw, "ueSvcIds", ids, "more", job->more) : NULL;
    if (o)
      north_json(p->ex, 200, o, NULL, 0);
    else
      north_problem(p->ex, 500, NULL, "out of memory", NULL, NULL);
  } else if (job->op == REGISTRY_GW_UE_REG) {
    size_t fresh = 0;
    for (size_t i = 0; i < job->n_ids; i++)
      if (p->fresh[i]) {
        fresh++;
        if (n->o.api) ue_api_rebind(n->o.api, p->ids[i], p->gens[i]);
      } else if (n->o.api && i < GW_DUE_MAX) {
        /* registered again: the gateway is back, what waits for the device goes out now (the
         * first GW_DUE_MAX of a request; the others with the back-off timer) */
        ue_api_gw_registered(n->o.api, p->ids[i]);
      }
    M5_LOGI(DOM, "gateway %s registered %zu UE Service ID(s), %zu new", gw, job->n_ids, fresh);
    char loc[600];
    snprintf(loc, sizeof loc, "%s%s", n->o.ctx->base_url, NORTH_GWREG);
    m5_http_header_t h = {"location", loc};
    json_t *b = p->body;
    p->body = NULL;
    north_json(p->ex, 201, b, &h, 1);
  } else {
    M5_LOGI(DOM, "gateway %s deregistered %s", gw, job->ue_svc_id);
    if (n->o.api) ue_api_rebind(n->o.api, job->ue_svc_id, job->gen);
    m5_http_respond(p->ex, 204, NULL, NULL, 0);
  }
  pending_free(p);
  north_job_finished(n);
}

static void submit(north_t *n, pending_t *p) {
  p->job.base.reply = n->replies;
  p->job.gw = &p->gw;
  if (n->inflight >= NORTH_MAX_REG_INFLIGHT || registry_submit(n->o.reg, &p->job) != 0) {
    north_problem_retry(p->ex, 503, "the registry is busy; retry later", "1");
    pending_free(p);
    return;
  }
  north_job_started(n);
}

static int hexv(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

/* A percent-encoded path segment (or, with query set, a query value, where '/' and '?' may
 * stand unencoded) into out: 0, or M5_EINVAL (also for %00, which would cut it short). */
static int pct_decode(const char *s, int query, char *out, size_t cap) {
  size_t j = 0;
  for (; *s; s++) {
    int c = (unsigned char)*s;
    if (!query && (c == '/' || c == '?')) return M5_EINVAL;
    if (c == '%') {
      int hi = hexv(s[1]), lo = hi < 0 ? -1 : hexv(s[2]);
      if (lo < 0) return M5_EINVAL;
      c = hi * 16 + lo;
      s += 2;
      if (c == 0) return M5_EINVAL;
    }
    if (j + 1 >= cap) return M5_EINVAL;
    out[j++] = (char)c;
  }
  out[j] = '\0';
  return j ? 0 : M5_EINVAL;
}

static void reg_post(north_t *n, m5_http_exchange_t *ex, const m5_http_request_t *req,
                     const north_caller_t *c) {
  json_t *o = north_body(ex, req);
  if (!o) return;
  json_t *gw = json_object_get(o, "gwId"), *ids = json_object_get(o, "ueSvcIds");
  if (!json_is_string(gw)) {
    north_problem(ex, 400, gw ? "INVALID_MSG_FORMAT" : "MANDATORY_IE_MISSING",
                  gw ? "gwId: not a string" : "gwId: missing", "gwId",
                  gw ? "not a string" : "missing");
    json_decref(o);
    return;
  }
  if (!json_is_array(ids) || json_array_size(ids) == 0 ||
      json_array_size(ids) > REGISTRY_GW_UES_MAX) {
    north_problem(ex, 400, ids ? "INVALID_MSG_FORMAT" : "MANDATORY_IE_MISSING",
                  ids ? "ueSvcIds: an array of 1 to 1000 UE Service IDs" : "ueSvcIds: missing",
                  "ueSvcIds", ids ? "1 to 1000 UE Service IDs" : "missing");
    json_decref(o);
    return;
  }
  if (strcmp(json_string_value(gw), c->as_svc_id) != 0) {
    north_problem(ex, 403, "GW_ID_MISMATCH", "gwId must be the authenticated gateway's", "gwId",
                  "not the authenticated gateway");
    json_decref(o);
    return;
  }
  size_t k = json_array_size(ids);
  pending_t *p = calloc(1, sizeof *p);
  if (p) {
    p->ids = calloc(k, sizeof *p->ids);
    p->gens = calloc(k, sizeof *p->gens);
    p->fresh = calloc(k, 1);
  }
  if (!p || !p->ids || !p->gens || !p->fresh) {
    if (p) pending_free(p);
    json_decref(o);
    north_problem(ex, 500, NULL, "out of memory", NULL, NULL);
    return;
  }
  for (size_t i = 0; i < k; i++) {
    json_t *v = json_array_get(ids, i);
    const char *s = json_is_string(v) ? json_string_value(v) : NULL;
    if (!s || strlen(s) > REGISTRY_ID_MAX || !m5_msg_svc_id_valid(s)) {
      char param[32];
      snprintf(param, sizeof param, "ueSvcIds[%zu]", i);
      north_problem(ex, 400, "INVALID_MSG_FORMAT",
                    "ueSvcIds: each a UE Service ID (1-128 "
                    "printable characters, no spaces)",
                    param, "not a valid UE Service ID");
      pending_free(p);
      json_decref(o);
      return;
    }
    snprintf(p->ids[i], sizeof p->ids[i], "%s", s);
  }
  p->n = n;
  p->ex = ex;
  p->body = json_pack("{s:s, s:O}", "gwId", c->as_svc_id, "ueSvcIds", ids);
  json_decref(o);
  snprintf(p->gw.gw_id, sizeof p->gw.gw_id, "%s", c->as_svc_id);
  p->job.op = REGISTRY_GW_UE_REG;
  p->job.ids = p->ids;
  p->job.gens = p->gens;
  p->job.fresh = p->fresh;
  p->job.n_ids = k;
  submit(n, p);
}

static void reg_delete(north_t *n, m5_http_exchange_t *ex, const char *seg,
                       const north_caller_t *c) {
  pending_t *p = calloc(1, sizeof *p);
  if (!p) {
    north_problem(ex, 500, NULL, "out of memory", NULL, NULL);
    return;
  }
  if (pct_decode(seg, 0, p->job.ue_svc_id, sizeof p->job.ue_svc_id) != 0 ||
      !m5_msg_svc_id_valid(p->job.ue_svc_id)) {
    north_problem(ex, 404, "RESOURCE_NOT_FOUND", "not a UE Service ID", NULL, NULL);
    pending_free(p);
    return;
  }
  p->n = n;
  p->ex = ex;
  snprintf(p->gw.gw_id, sizeof p->gw.gw_id, "%s", c->as_svc_id);
  p->job.op = REGISTRY_GW_UE_DEREG;
  submit(n, p);
}

/* The query of a listing: limit (1..REGISTRY_GW_UES_MAX, default the most) and after (a UE
 * Service ID, percent-encoded), each at most once; anything else is refused, so that a typo
 * does not silently list from the start. 0, or answers 400 naming the parameter. */
static int list_query(m5_http_exchange_t *ex, const char *q, size_t *limit, char *after,
                      size_t after_cap) {
  *limit = REGISTRY_GW_UES_MAX;
  after[0] = '\0';
  int seen_limit = 0, seen_after = 0;
  while (q && *q) {
    size_t len = strcspn(q, "&");
    const char *eq = memchr(q, '=', len);
    size_t nl = eq ? (size_t)(eq - q) : len;
    char name[16], val[3 * REGISTRY_ID_MAX + 1];
    size_t vl = eq ? len - nl - 1 : 0;
    size_t i = 0; /* the name as it is named back: printable ASCII, cut at 15 */
    for (; i < nl && i + 1 < sizeof name; i++)
      name[i] = q[i] > 0x20 && q[i] < 0x7f ? q[i] : '?';
    name[i] = '\0';
    int is_limit = nl == 5 && !strncmp(q, "limit", 5);
    int is_after = nl == 5 && !strncmp(q, "after", 5);
    if (len == 0) { /* "a&&b", a trailing '&' */
    } else if (!is_limit && !is_after) {
      north_problem(ex, 400, "INVALID_QUERY_PARAM",
                    "unknown query parameter: the registrations take limit and after", name,
                    "unknown parameter");
      return M5_EINVAL;
    } else if ((is_limit && seen_limit++) || (is_after && seen_after++)) {
      north_problem(ex, 400, "INVALID_QUERY_PARAM", "a query parameter given twice", name,
                    "given twice");
      return M5_EINVAL;
    } else if (is_limit) {
      unsigned long v = 0;
      size_t k = 0;
      for (; k < vl && k < 5 && eq[1 + k] >= '0' && eq[1 + k] <= '9'; k++)
        v = v * 10 + (unsigned long)(eq[1 + k] - '0');
      if (vl == 0 || k != vl || v < 1 || v > REGISTRY_GW_UES_MAX) {
        north_problem(ex, 400, "INVALID_QUERY_PARAM", "limit: a number from 1 to 1000", "limit",
                      "not a number from 1 to 1000");
        return M5_EINVAL;
      }
      *limit = (size_t)v;
    } else {
      snprintf(val, sizeof val, "%.*s", (int)(vl < sizeof val ? vl : sizeof val - 1),
               eq ? eq + 1 : "");
      if (vl >= sizeof val || pct_decode(val, 1, after, after_cap) != 0 ||
          !m5_msg_svc_id_valid(after)) {
        north_problem(ex, 400, "INVALID_QUERY_PARAM",
                      "after: a UE Service ID (percent-encoded), the last of the previous page",
                      "after", "not a UE Service ID");
        return M5_EINVAL;
      }
    }
    q += len;
    if (*q == '&') q++;
  }
  return 0;
}

/* One page of the caller's registrations (the registry reads them from its database). */
static void reg_list(north_t *n, m5_http_exchange_t *ex, const m5_http_request_t *req,
                     const north_caller_t *c) {
  size_t limit;
  char after[REGISTRY_ID_MAX + 1];
  if (list_query(ex, req->query, &limit, after, sizeof after) != 0) return;
  pending_t *p = calloc(1, sizeof *p);
  if (p) p->ids = calloc(limit, sizeof *p->ids);
  if (!p || !p->ids) {
    if (p) pending_free(p);
    north_problem(ex, 500, NULL, "out of memory", NULL, NULL);
    return;
  }
  p->n = n;
  p->ex = ex;
  snprintf(p->gw.gw_id, sizeof p->gw.gw_id, "%s", c->as_svc_id);
  snprintf(p->job.ue_svc_id, sizeof p->job.ue_svc_id, "%s", after);
  p->job.op = REGISTRY_GW_UE_LIST;
  p->job.ids = p->ids;
  p->job.n_ids = limit;
  submit(n, p);
}

void north_gwreg(north_t *n, m5_http_exchange_t *ex, const m5_http_request_t *req) {
  const char *rest = req->path + strlen(NORTH_GWREG);
  int coll = rest[0] == '\0';
  int get = !strcmp(req->method, "GET");
  if (coll ? strcmp(req->method, "POST") != 0 && !get : strcmp(req->method, "DELETE") != 0) {
    north_problem(ex, 405, NULL,
                  coll ? "the registrations accept GET and POST" : "a registration accepts DELETE",
                  NULL, NULL);
    return;
  }
  if (!coll && !rest[1]) {
    north_problem(ex, 404, "RESOURCE_NOT_FOUND", "no such registration", NULL, NULL);
    return;
  }
  north_caller_t c;
  m5_jwt_claims_t claims;
  if (north_gw_caller(n, ex, req, &c) != 0 ||
      north_bearer(n, ex, req, &c, NORTH_SCOPE_GWREG, &claims) != 0)
    return;
  if (coll && get)
    reg_list(n, ex, req, &c);
  else if (coll)
    reg_post(n, ex, req, &c);
  else
    reg_delete(n, ex, rest + 1, &c);
}
