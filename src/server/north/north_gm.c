/* SS_GroupManagement (TS 29.549 cl. 5.2.3 / 6.2, the SEAL group management server's API; TS
 * 23.434 cl. 10.3; TS 23.554 cl. 8.7.4) for Application Servers on the northbound listener
 * (docs/northbound.md, "Groups: SEAL group management"):
 *   POST   /ss-gm/v1/group-documents              create (201 + Location + VALGroupDocument)
 *   GET    /ss-gm/v1/group-documents              the caller's groups [?val-group-id=]
 *                                                 [&val-service-id=] (an array of documents
 *                                                 without members: bounded by groups)
 *   GET    /ss-gm/v1/group-documents/{groupDocId} one [?group-members=][&group-configuration=]
 *   PUT    /ss-gm/v1/group-documents/{groupDocId} replace (200 + VALGroupDocument)
 *   PATCH  /ss-gm/v1/group-documents/{groupDocId} RFC 7396 merge patch (200 + VALGroupDocument)
 *   DELETE /ss-gm/v1/group-documents/{groupDocId} delete (204)
 * groupDocId is the valGroupId. Mutual TLS and a token with scope ss-gm (an AS client with auth
 * mtls: its certificate alone). Every configured AS client may create groups; the creator is
 * granted SEND and MANAGE on its group; another AS reaches a group only with a MANAGE grant
 * from the operator (m5ctl group grant GROUP as:ID --manage). Authorization comes first: on
 * /{groupDocId} an unknown group and another's get the same 403 NOT_AUTHORIZED. Members are
 * ValTargetUe with valUeId = a UE Service ID (valUserId is refused); AS members the operator
 * added are not part of the document and stay through PUT and PATCH. Bodies that break the
 * schema get 400 with invalidParams naming the member. */
#include "server/north/north_int.h"

#include "core/err.h"
#include "core/log.h"
#include "server/groups/groups.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DOM "north"
#define CT_MERGE_PATCH "application/merge-patch+json"

typedef struct {
  groups_job_t job; /* first: the reply is the record */
  north_t *n;
  m5_http_exchange_t *ex;
  char as[REGISTRY_AS_ID_MAX + 1];
  int delete; /* answered 204 */
} gpending_t;

/* ---- the document ---- */

static void not_authorized(m5_http_exchange_t *ex) {
  north_problem(ex, 403, "NOT_AUTHORIZED",
                "this AS may not manage a group of that groupDocId (or there is none)", NULL,
                NULL);
}

/* What m5s keeps of a document besides its id and members (groups.h attrs). */
static const char *const kept_strings[] = {"grpDesc", "valGrpConf", "valSvcInf"};
#define N_KEPT_STRINGS 3
#define ATTR_TEXT_MAX 1024
#define SERVICE_IDS_MAX 16

/* The VALGroupDocument of (kind group) id without its members: valGroupId, the kept
 * attributes, resUri. NULL when the group is gone or out of memory. */
static json_t *doc_json(north_t *n, const char *id, int config, int rest) {
  groups_info_t info;
  if (groups_get(n->o.reg, GROUPS_GROUP, id, &info) != 0) return NULL;
  json_t *o = json_pack("{s:s}", "valGroupId", id);
  json_t *attrs = info.attrs ? json_loads(info.attrs, 0, NULL) : NULL;
  groups_info_clear(&info);
  const char *k;
  json_t *v;
  json_object_foreach(attrs, k, v) {
    int is_conf = !strcmp(k, "valGrpConf");
    if (o && ((is_conf && config) || (!is_conf && rest))) json_object_set(o, k, v);
  }
  json_decref(attrs);
  if (o && rest) {
    char uri[1024];
    snprintf(uri, sizeof uri, "%s%s/%s", n->o.ctx->base_url, NORTH_GM, id);
    json_object_set_new(o, "resUri", json_string(uri));
  }
  return o;
}

/* `"members":[{"valUeId":"..."},...]`: the UE members, sorted, written straight to text from
 * one snapshot (no JSON value per member: a 100,000-member group costs one snapshot, one sort
 * and one buffer of the answer's size, and the answer is at most groups.max_members entries).
 * 0 and *out (malloc'd, *len bytes, not terminated), or *out NULL when there is no UE member
 * (minItems 1: the member is left out); M5_ENOMEM. */
static int members_text(north_t *n, const char *id, char **out, size_t *len) {
  groups_member_t *m = NULL;
  size_t nm = 0, cap = 0;
  *out = NULL;
  *len = 0;
  int rc = groups_members(n->o.reg, GROUPS_GROUP, id, &m, &nm, NULL);
  if (rc != 0) return rc == M5_ENOMEM ? rc : 0; /* gone: as with none */
  /* a UE Service ID is printable ASCII: only " and \ are escaped */
  for (size_t i = 0; i < nm; i++)
    if (!strncmp(m[i].principal, "ue:", 3)) cap += 16 + 2 * strlen(m[i].principal + 3);
  char *t = cap ? malloc(cap + 16) : NULL;
  if (cap && !t) rc = M5_ENOMEM;
  size_t o = 0;
  if (t) {
    memcpy(t, "\"members\":[", 11);
    o = 11;
  }
  for (size_t i = 0; t && i < nm; i++) {
    if (strncmp(m[i].principal, "ue:", 3) != 0) continue;
    if (o > 11) t[o++] = ',';
    memcpy(t + o, "{\"valUeId\":\"", 12);
    o += 12;
    for (const char *c = m[i].principal + 3; *c; c++) {
      if (*c == '"' || *c == '\\') t[o++] = '\\';
      t[o++] = *c;
    }
    t[o++] = '"';
    t[o++] = '}';
  }
  free(m);
  if (t) {
    t[o++] = ']';
    *out = t;
    *len = o;
  }
  return rc;
}

/* Answers with the document of id (doc_json's o, taken) and, with members, its UE members
 * spliced in before the closing brace; o NULL: the group is gone (403, as for any group the AS
 * may not manage). */
static void respond_doc(north_t *n, m5_http_exchange_t *ex, int status, const char *id, json_t *o,
                        int members, const m5_http_header_t *hdrs, size_t n_hdrs) {
  if (!o) {
    not_authorized(ex);
    return;
  }
  char *text = json_dumps(o, JSON_COMPACT), *mt = NULL, *body = NULL;
  json_decref(o);
  size_t tl = text ? strlen(text) : 0, ml = 0;
  int rc = text && tl >= 2 && text[tl - 1] == '}' ? 0 : M5_ENOMEM;
  if (rc == 0 && members) rc = members_text(n, id, &mt, &ml);
  if (rc == 0 && mt && (body = malloc(tl + ml + 1)) == NULL) rc = M5_ENOMEM;
  if (body) {
    memcpy(body, text, tl - 1);
    body[tl - 1] = ',';
    memcpy(body + tl, mt, ml);
    body[tl + ml] = '}';
    tl += ml + 1;
  }
  free(mt);
  if (rc != 0) {
    north_problem(ex, 500, NULL, "out of memory", NULL, NULL);
  } else {
    m5_http_header_t h[4] = {{"content-type", NORTH_CT_JSON}};
    size_t nh = 1;
    for (size_t i = 0; i < n_hdrs && nh < 4; i++) h[nh++] = hdrs[i];
    m5_http_respond_headers(ex, status, h, nh, body ? body : text, tl);
  }
  free(body);
  free(text);
}

/* A body that breaks the schema (or m5s's bounds on it): 400 naming the member. */
static int bad(m5_http_exchange_t *ex, const char *param, const char *reason) {
  char detail[200];
  snprintf(detail, sizeof detail, "%s: %s", param, reason);
  north_problem(ex, 400, "INVALID_MSG_FORMAT", detail, param, reason);
  return M5_EINVAL;
}

static int text_ok(json_t *v, size_t max) {
  return json_is_string(v) && json_string_length(v) <= max;
}

/* Checks body (a VALGroupDocument, or with patch a VALGroupDocumentPatch) and fills job's
 * members (set_members when present) and attrs (the kept attributes given). 0, or answers
 * 400 and returns M5_EINVAL. */
static int read_doc(m5_http_exchange_t *ex, json_t *body, int patch, groups_job_t *job) {
  json_t *v;
  const char *k;
  /* null is no value any of these members takes (the schemas declare none nullable) */
  json_object_foreach(body, k, v) if (json_is_null(v)) return bad(ex, k, "null is not allowed");
  v = json_object_get(body, "valGroupId");
  if (!patch && !v) return bad(ex, "valGroupId", "missing");
  if (v && !json_is_string(v)) return bad(ex, "valGroupId", "not a string");
  if (v && !m5_msg_name_valid(json_string_value(v)))
    return bad(ex, "valGroupId", "must be 1-128 characters of A-Z a-z 0-9 . _ : -");
  json_t *attrs = json_object();
  if (!attrs) return bad(ex, "body", "out of memory");
  for (size_t i = 0; i < N_KEPT_STRINGS; i++) {
    v = json_object_get(body, kept_strings[i]);
    if (!v) continue;
    if (!text_ok(v, ATTR_TEXT_MAX)) {
      json_decref(attrs);
      return bad(ex, kept_strings[i], "not a string of at most 1024 characters");
    }
    json_object_set(attrs, kept_strings[i], v);
  }
  v = json_object_get(body, "valServiceIds");
  if (v) {
    int ok = json_is_array(v) && json_array_size(v) >= 1 && json_array_size(v) <= SERVICE_IDS_MAX;
    for (size_t i = 0; ok && i < json_array_size(v); i++)
      ok = text_ok(json_array_get(v, i), M5_MSG_ADDR_MAX);
    if (!ok) {
      json_decref(attrs);
      return bad(ex, "valServiceIds", "not an array of 1-16 strings");
    }
    json_object_set(attrs, "valServiceIds", v);
  }
  /* declared members m5s does not use: their types are checked, their values not kept */
  static const char *const strings[] = {"valSvcAreaId", "extGrpId", "com5GLanType", "suppFeat",
                                        "resUri"};
  for (size_t i = 0; i < sizeof strings / sizeof strings[0]; i++)
    if ((v = json_object_get(body, strings[i])) && !json_is_string(v)) {
      json_decref(attrs);
      return bad(ex, strings[i], "not a string");
    }
  static const char *const objects[] = {"locInfo", "addLocInfo"};
  for (size_t i = 0; i < 2; i++)
    if ((v = json_object_get(body, objects[i])) && !json_is_object(v)) {
      json_decref(attrs);
      return bad(ex, objects[i], "not an object");
    }
  if (json_object_size(attrs)) job->attrs = json_dumps(attrs, JSON_COMPACT | JSON_SORT_KEYS);
  json_decref(attrs);
  v = json_object_get(body, "members");
  if (!v) return 0;
  size_t n = json_array_size(v);
  if (!json_is_array(v) || n == 0) return bad(ex, "members", "not an array of 1 or more ValTargetUe");
  if (!(job->members = calloc(n, sizeof *job->members))) return bad(ex, "members", "out of memory");
  for (size_t i = 0; i < n; i++) {
    json_t *m = json_array_get(v, i), *ue = json_object_get(m, "valUeId");
    char param[48];
    snprintf(param, sizeof param, "members[%zu]", i);
    if (!json_is_object(m)) return bad(ex, param, "not a ValTargetUe object");
    if (json_object_get(m, "valUserId"))
      return bad(ex, param, json_object_get(m, "valUeId")
                                ? "valUserId and valUeId: a ValTargetUe has exactly one"
                                : "valUserId: VAL user IDs are not supported; name the UE by "
                                  "valUeId (its UE Service ID)");
    if (!ue) return bad(ex, param, "valUeId is missing");
    if (!json_is_string(ue) || !m5_msg_svc_id_valid(json_string_value(ue)))
      return bad(ex, param, "valUeId must be a UE Service ID (1-128 printable characters)");
    snprintf(job->members[i], sizeof job->members[i], "ue:%s", json_string_value(ue));
  }
  job->n_members = n;
  job->set_members = 1;
  return 0;
}

/* ---- jobs ---- */

void north_gm_drop(void *msg) {
  gpending_t *p = msg;
  groups_job_clear(&p->job);
  free(p);
}

static void submit(north_t *n, gpending_t *p) {
  p->job.rj.base.reply = n->replies;
  if (n->inflight >= NORTH_MAX_REG_INFLIGHT || groups_submit(n->o.reg, &p->job) != 0) {
    north_problem_retry(p->ex, 503, "the registry is busy; retry later", "1");
    north_gm_drop(p);
    return;
  }
  north_job_started(n);
}

void north_gm_done(void *msg) {
  gpending_t *p = msg;
  north_t *n = p->n;
  groups_job_t *job = &p->job;
  if (job->status == M5_EEXIST) {
    north_problem(p->ex, 403, "GROUP_EXISTS",
                  "a group with this valGroupId exists (one name space for every AS and the "
                  "operator)",
                  "valGroupId", "in use");
  } else if (job->status == M5_ENOENT) {
    not_authorized(p->ex); /* deleted meanwhile: as for any group it cannot manage */
  } else if (job->status == M5_ERANGE) {
    north_problem(p->ex, 403, "LIMIT_REACHED", job->why ? job->why : "a bound is reached", NULL,
                  NULL);
  } else if (job->status == M5_EINVAL) {
    bad(p->ex, job->op == GROUPS_CREATE ? "valGroupId" : "members", job->why ? job->why : "invalid");
  } else if (job->status != 0) {
    M5_LOGE(DOM, "AS %s: group %s: %s", p->as, job->id, m5_strerror(job->status));
    north_problem(p->ex, 500, NULL, "the registry failed; see the server's log", NULL, NULL);
  } else if (p->delete) {
    M5_LOGI(DOM, "AS %s deleted group %s", p->as, job->id);
    m5_http_respond(p->ex, 204, NULL, NULL, 0);
  } else {
    json_t *o = doc_json(n, job->id, 1, 1); /* NULL: gone again already (403) */
    if (o && job->op == GROUPS_CREATE) {
      M5_LOGI(DOM, "AS %s created group %s (%zu members)", p->as, job->id, job->n_members);
      char loc[1024];
      snprintf(loc, sizeof loc, "%s", json_string_value(json_object_get(o, "resUri")));
      m5_http_header_t h = {"location", loc};
      respond_doc(n, p->ex, 201, job->id, o, 1, &h, 1);
    } else {
      if (o) M5_LOGI(DOM, "AS %s changed group %s", p->as, job->id);
      respond_doc(n, p->ex, 200, job->id, o, 1, NULL, 0);
    }
  }
  north_gm_drop(p);
  north_job_finished(n);
}

/* ---- requests ---- */

static gpending_t *pending(north_t *n, m5_http_exchange_t *ex, const north_caller_t *c,
                           groups_op_t op, const char *id) {
  gpending_t *p = calloc(1, sizeof *p);
  if (!p) {
    north_problem(ex, 500, NULL, "out of memory", NULL, NULL);
    return NULL;
  }
  p->n = n;
  p->ex = ex;
  memcpy(p->as, c->as_svc_id, sizeof p->as);
  p->job.op = op;
  p->job.kind = GROUPS_GROUP;
  memcpy(p->job.id, id, strlen(id) + 1); /* a valid name: fits */
  return p;
}

/* One query parameter's value (percent-decoding not needed: the values we read are names
 * and booleans); 1 if present. */
static int query_get(const char *q, const char *name, char *out, size_t cap) {
  size_t nl = strlen(name);
  while (q && *q) {
    size_t len = strcspn(q, "&");
    if (len > nl && !strncmp(q, name, nl) && q[nl] == '=') {
      size_t vl = len - nl - 1;
      if (vl >= cap) vl = cap - 1;
      memcpy(out, q + nl + 1, vl);
      out[vl] = '\0';
      return 1;
    }
    q += len;
    if (*q == '&') q++;
  }
  return 0;
}

/* A boolean query parameter: 0/1 in *v (absent: 0); M5_EINVAL after a 400. */
static int query_bool(m5_http_exchange_t *ex, const char *q, const char *name, int *v) {
  char t[8];
  *v = 0;
  if (!query_get(q, name, t, sizeof t)) return 0;
  if (!strcmp(t, "true")) *v = 1;
  else if (strcmp(t, "false") != 0) return bad(ex, name, "not true or false");
  return 0;
}

static int has_service(json_t *doc, const char *svc) {
  json_t *ids = json_object_get(doc, "valServiceIds");
  for (size_t i = 0; i < json_array_size(ids); i++)
    if (!strcmp(json_string_value(json_array_get(ids, i)), svc)) return 1;
  return 0;
}

static int hexv(char c) {
  return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10
                                        : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

/* groupDocId, percent-decoded (a client may write ':' as %3A), as a valid name; M5_EINVAL. */
static int decode_id(const char *seg, char id[M5_MSG_NAME_MAX + 1]) {
  size_t j = 0;
  for (size_t i = 0; seg[i]; i++) {
    int c = (unsigned char)seg[i];
    if (c == '%') {
      int hi = hexv(seg[i + 1]), lo = hi >= 0 ? hexv(seg[i + 2]) : -1;
      if (lo < 0) return M5_EINVAL;
      c = hi * 16 + lo;
      i += 2;
      if (c == 0) return M5_EINVAL; /* %00 would cut the name short */
    }
    if (j == M5_MSG_NAME_MAX) return M5_EINVAL;
    id[j++] = (char)c;
  }
  id[j] = '\0';
  return m5_msg_name_valid(id) ? 0 : M5_EINVAL;
}

static void list(north_t *n, m5_http_exchange_t *ex, const m5_http_request_t *req,
                 const north_caller_t *c) {
  char raw[3 * M5_MSG_NAME_MAX + 2] = "", want_id[M5_MSG_NAME_MAX + 1] = "";
  char svc[M5_MSG_ADDR_MAX + 2] = "";
  int by_id = query_get(req->query, "val-group-id", raw, sizeof raw);
  if (by_id && decode_id(raw, want_id) != 0) want_id[0] = '\0'; /* no name: matches none */
  int by_svc = query_get(req->query, "val-service-id", svc, sizeof svc);
  groups_principal_t me;
  snprintf(me, sizeof me, "as:%s", c->as_svc_id);
  char(*ids)[M5_MSG_NAME_MAX + 1] = NULL;
  size_t nids = 0;
  json_t *arr = json_array();
  if (!arr || groups_managed_by(n->o.reg, GROUPS_GROUP, me, &ids, &nids) != 0) {
    json_decref(arr);
    north_problem(ex, 500, NULL, "out of memory", NULL, NULL);
    return;
  }
  /* The documents without their members (read one document for them): the answer and the
   * work stay bounded by the number of groups the AS manages, not by their members. */
  for (size_t i = 0; i < nids; i++) {
    if (by_id && strcmp(ids[i], want_id) != 0) continue;
    json_t *d = doc_json(n, ids[i], 1, 1);
    if (d && by_svc && !has_service(d, svc)) {
      json_decref(d);
      continue;
    }
    if (d) json_array_append_new(arr, d);
  }
  free(ids);
  north_json(ex, 200, arr, NULL, 0);
}

static void create(north_t *n, m5_http_exchange_t *ex, const m5_http_request_t *req,
                   const north_caller_t *c) {
  json_t *body = north_body(ex, req);
  if (!body) return;
  groups_job_t tmp;
  memset(&tmp, 0, sizeof tmp);
  if (read_doc(ex, body, 0, &tmp) != 0) {
    groups_job_clear(&tmp);
    json_decref(body);
    return;
  }
  gpending_t *p =
      pending(n, ex, c, GROUPS_CREATE, json_string_value(json_object_get(body, "valGroupId")));
  json_decref(body);
  if (!p) {
    groups_job_clear(&tmp);
    return;
  }
  p->job.members = tmp.members;
  p->job.n_members = tmp.n_members;
  p->job.attrs = tmp.attrs;
  snprintf(p->job.creator, sizeof p->job.creator, "as:%s", c->as_svc_id);
  submit(n, p);
}

static void change(north_t *n, m5_http_exchange_t *ex, const m5_http_request_t *req,
                   const north_caller_t *c, const char *id, int put) {
  json_t *body = NULL;
  if (put) {
    body = north_body(ex, req);
  } else if (!north_media_type_is(req->content_type, CT_MERGE_PATCH)) {
    north_problem(ex, 415, NULL, "a PATCH body is application/merge-patch+json (RFC 7396)", NULL,
                  NULL);
    return;
  } else {
    json_error_t je;
    body = json_loadb((const char *)req->body, req->body_len, JSON_REJECT_DUPLICATES, &je);
    if (!json_is_object(body)) {
      json_decref(body);
      bad(ex, "body", "not a JSON object");
      return;
    }
  }
  if (!body) return;
  gpending_t *p = pending(n, ex, c, GROUPS_UPDATE, id);
  json_t *gid = json_object_get(body, "valGroupId");
  if (!p) {
    json_decref(body);
    return;
  }
  if (read_doc(ex, body, !put, &p->job) != 0) {
    north_gm_drop(p);
  } else if (gid && strcmp(json_string_value(gid), id) != 0) {
    bad(ex, "valGroupId", "is not the groupDocId (a group's id does not change)");
    north_gm_drop(p);
  } else {
    p->job.keep_as_members = 1;
    if (put) {
      p->job.replace_attrs = 1;
      p->job.set_members = 1; /* none given: the document has no UE members */
    }
    submit(n, p);
  }
  json_decref(body);
}

void north_gm(north_t *n, m5_http_exchange_t *ex, const m5_http_request_t *req) {
  const char *rest = req->path + strlen(NORTH_GM);
  int collection = rest[0] == '\0';
  const char *m = req->method;
  if (collection ? strcmp(m, "POST") && strcmp(m, "GET")
                 : strcmp(m, "GET") && strcmp(m, "PUT") && strcmp(m, "PATCH") && strcmp(m, "DELETE")) {
    north_problem(ex, 405, NULL,
                  collection ? "group-documents accepts POST and GET"
                             : "a group document accepts GET, PUT, PATCH and DELETE",
                  NULL, NULL);
    return;
  }
  north_caller_t c;
  m5_jwt_claims_t claims;
  if (north_caller(n, ex, req, &c) != 0 ||
      north_bearer(n, ex, req, &c, NORTH_SCOPE_GM, &claims) != 0)
    return;
  if (collection) {
    if (!strcmp(m, "POST"))
      create(n, ex, req, &c);
    else
      list(n, ex, req, &c);
    return;
  }
  /* Authorization first: an unknown group and another's look the same. */
  char id[M5_MSG_NAME_MAX + 1];
  if (decode_id(rest + 1, id) != 0 || !groups_may_manage(n->o.reg, id, c.as_svc_id)) {
    not_authorized(ex);
    return;
  }
  if (!strcmp(m, "GET")) {
    int members, config;
    if (query_bool(ex, req->query, "group-members", &members) != 0 ||
        query_bool(ex, req->query, "group-configuration", &config) != 0)
      return;
    int whole = !members && !config;
    respond_doc(n, ex, 200, id, doc_json(n, id, config || whole, whole), members || whole, NULL, 0);
  } else if (!strcmp(m, "DELETE")) {
    gpending_t *p = pending(n, ex, &c, GROUPS_DELETE, id);
    if (p) {
      p->delete = 1;
      submit(n, p);
    }
  } else {
    change(n, ex, req, &c, id, !strcmp(m, "PUT"));
  }
}
