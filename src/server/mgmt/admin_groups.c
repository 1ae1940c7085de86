/* /admin/v1/groups/{id} and /admin/v1/areas/{id} (docs/admin-api.md, "Groups and broadcast
 * areas"): the operator's side of groups (server/groups/groups.h; SEAL group management,
 * TS 23.434) and broadcast areas (TS 23.554 cl. 8.6.1).
 *   PUT    {base}/{id}                      create (201; 200 when it exists: unchanged)
 *   GET    {base}/{id}                      the group: creator, member count, grants
 *   DELETE {base}/{id}                      delete it with its members and grants (204)
 *   GET    {base}/{id}/members              the members, one JSON array of "ue:ID" / "as:ID"
 *   POST   {base}/{id}/members              add a batch: a JSON array of principals, one
 *                                           transaction (200 {"id", "added", "members"})
 *   PUT    {base}/{id}/members/{ue:ID|as:ID}  add (201; 200 when it was a member)
 *   DELETE {base}/{id}/members/{ue:ID|as:ID}  remove (204)
 *   PUT    {base}/{id}/grants/{as:ID|ue:ID}   grant; optional body {"rights": ["send",
 *                                             "manage"]}, default ["send"]; manage: an AS on
 *                                             a group only (201; 200 when it was granted)
 *   DELETE {base}/{id}/grants/{as:ID|ue:ID}   revoke (204)
 * An area's members are UEs only. Every change is one registry job, answered once committed. */
#include "server/mgmt/admin_int.h"

#include "core/err.h"
#include "core/log.h"
#include "server/groups/groups.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define DOM "admin"
#define GROUPS_BASE "/admin/v1/groups/"
#define AREAS_BASE "/admin/v1/areas/"

typedef struct {
  groups_job_t job; /* first: the reply is the record */
  admin_t *a;
  m5_http_exchange_t *ex;
} gpending_t;

int admin_groups_path(const char *path) {
  return (!strncmp(path, GROUPS_BASE, strlen(GROUPS_BASE)) && path[strlen(GROUPS_BASE)]) ||
         (!strncmp(path, AREAS_BASE, strlen(AREAS_BASE)) && path[strlen(AREAS_BASE)]);
}

static const char *what(groups_kind_t kind) {
  return kind == GROUPS_AREA ? "broadcast area" : "group";
}

static json_t *rights_json(unsigned rights) {
  json_t *v = json_array();
  if (v && (rights & GROUPS_RIGHT_SEND)) json_array_append_new(v, json_string("send"));
  if (v && (rights & GROUPS_RIGHT_MANAGE)) json_array_append_new(v, json_string("manage"));
  return v;
}

static json_t *group_json(const groups_info_t *g) {
  json_t *grants = json_array();
  for (size_t i = 0; grants && i < g->n_grants; i++)
    json_array_append_new(grants, json_pack("{s:s, s:o}", "principal", g->grants[i].principal,
                                            "rights", rights_json(g->grants[i].rights)));
  json_t *o = json_pack("{s:s, s:s, s:s, s:I, s:o, s:I}", "id", g->id, "kind",
                        groups_kind_name(g->kind), "creator",
                        g->creator[0] ? g->creator : "operator", "members",
                        (json_int_t)g->n_members, "grants", grants, "createdAt",
                        (json_int_t)g->created_at);
  json_t *attrs = g->attrs ? json_loads(g->attrs, 0, NULL) : NULL;
  if (o && json_is_object(attrs)) json_object_set(o, "attrs", attrs);
  json_decref(attrs);
  return o;
}

static void answer_group(admin_t *a, m5_http_exchange_t *ex, groups_kind_t kind, const char *id,
                         int status) {
  groups_info_t info;
  int rc = groups_get(a->opts.reg, kind, id, &info);
  if (rc == M5_ENOENT) {
    char d[64];
    snprintf(d, sizeof d, "no such %s", what(kind));
    admin_problem(ex, 404, "Not Found", d, NULL, NULL, NULL);
  } else if (rc != 0) {
    admin_problem(ex, 500, "Internal Server Error", "out of memory", NULL, NULL, NULL);
  } else {
    admin_respond_json(ex, status, group_json(&info));
    groups_info_clear(&info);
  }
}

static void get_members(admin_t *a, m5_http_exchange_t *ex, groups_kind_t kind, const char *id) {
  groups_member_t *m;
  size_t n;
  int rc = groups_members(a->opts.reg, kind, id, &m, &n, NULL);
  if (rc == M5_ENOENT) {
    char d[64];
    snprintf(d, sizeof d, "no such %s", what(kind));
    admin_problem(ex, 404, "Not Found", d, NULL, NULL, NULL);
    return;
  }
  json_t *v = rc == 0 ? json_array() : NULL;
  for (size_t i = 0; v && i < n; i++)
    if (json_array_append_new(v, json_string(m[i].principal)) != 0) {
      json_decref(v);
      v = NULL;
    }
  free(rc == 0 ? m : NULL);
  if (!v) {
    admin_problem(ex, 500, "Internal Server Error", "out of memory", NULL, NULL, NULL);
    return;
  }
  admin_respond_json(ex, 200, v);
}

/* ---- jobs ---- */

static void finish(gpending_t *p) {
  admin_t *a = p->a;
  groups_job_clear(&p->job);
  free(p);
  admin_job_done(a);
}

void admin_groups_drop(void *job) {
  gpending_t *p = job;
  groups_job_clear(&p->job);
  free(p);
}

static void submit(admin_t *a, gpending_t *p) {
  static const m5_http_header_t retry = {"retry-after", "1"};
  p->job.rj.base.reply = a->replies;
  int rc = a->inflight >= a->opts.max_inflight ? M5_EFULL : groups_submit(a->opts.reg, &p->job);
  if (rc == 0) {
    a->inflight++;
    return;
  }
  admin_problem(p->ex, 503, "Service Unavailable", "the registry is busy; retry later", NULL,
                NULL, &retry);
  admin_groups_drop(p);
}

void admin_groups_done(void *msg) {
  gpending_t *p = msg;
  groups_job_t *job = &p->job;
  const char *w = what(job->kind);
  char d[GROUPS_PRINCIPAL_MAX + 64];
  if (job->status == M5_ENOENT) {
    if (!job->found)
      snprintf(d, sizeof d, "no such %s", w);
    else
      snprintf(d, sizeof d, "%s is not %s of this %s", job->principal,
               job->op == GROUPS_DEL_MEMBER ? "a member" : "granted", w);
    admin_problem(p->ex, 404, "Not Found", d, NULL, NULL, NULL);
  } else if (job->status == M5_ERANGE) {
    snprintf(d, sizeof d, "refused: %s", job->why ? job->why : "a bound is reached");
    admin_problem(p->ex, 409, "Conflict", d, NULL, NULL, NULL);
  } else if (job->status == M5_EINVAL) {
    admin_problem(p->ex, 400, "Bad Request", job->why ? job->why : "invalid",
                  job->op == GROUPS_GRANT && job->why && !strncmp(job->why, "rights", 6)
                      ? "rights"
                      : "principal",
                  "invalid", NULL);
  } else if (job->status != 0 && job->status != M5_EEXIST) {
    admin_problem(p->ex, 500, "Internal Server Error", "the registry failed; see the server's log",
                  NULL, NULL, NULL);
  } else {
    int created = job->status == 0 && job->created;
    switch (job->op) {
    case GROUPS_CREATE:
      if (created) M5_LOGI(DOM, "%s %s created", w, job->id);
      answer_group(p->a, p->ex, job->kind, job->id, created ? 201 : 200);
      break;
    case GROUPS_DELETE:
    case GROUPS_DEL_MEMBER:
    case GROUPS_REVOKE:
      M5_LOGI(DOM, "%s %s: %s%s%s", w, job->id,
              job->op == GROUPS_DELETE ? "deleted" : job->op == GROUPS_REVOKE ? "revoked " : "removed ",
              job->principal, "");
      m5_http_respond(p->ex, 204, NULL, NULL, 0);
      break;
    case GROUPS_ADD_MEMBERS: {
      groups_info_t info;
      json_int_t total = groups_get(p->a->opts.reg, job->kind, job->id, &info) == 0
                             ? (json_int_t)info.n_members
                             : -1;
      if (total >= 0) groups_info_clear(&info);
      M5_LOGI(DOM, "%s %s: %d members added", w, job->id, job->created);
      admin_respond_json(p->ex, 200, json_pack("{s:s, s:i, s:I}", "id", job->id, "added",
                                               job->created, "members", total));
      break;
    }
    default: {
      if (created)
        M5_LOGI(DOM, "%s %s: %s %s", w, job->id,
                job->op == GROUPS_GRANT ? "granted" : "added", job->principal);
      json_t *o = json_pack("{s:s, s:s}", "id", job->id,
                            job->op == GROUPS_GRANT ? "principal" : "member", job->principal);
      if (o && job->op == GROUPS_GRANT) json_object_set_new(o, "rights", rights_json(job->rights));
      admin_respond_json(p->ex, created ? 201 : 200, o);
      break;
    }
    }
  }
  finish(p);
}

/* ---- requests ---- */

/* The optional grant body: {"rights": ["send"|"manage", ...]} (absent: send). 0, or answers
 * 400 and returns M5_EINVAL. */
static int read_rights(m5_http_exchange_t *ex, const m5_http_request_t *req, unsigned *rights) {
  *rights = GROUPS_RIGHT_SEND;
  if (req->body_len == 0) return 0;
  json_t *o = admin_json_object(ex, req);
  if (!o) return M5_EINVAL;
  json_t *r = json_object_get(o, "rights");
  int rc = 0;
  if (r) {
    *rights = 0;
    for (size_t i = 0; json_is_array(r) && i < json_array_size(r); i++) {
      const char *s = json_string_value(json_array_get(r, i));
      *rights |= s && !strcmp(s, "send")     ? GROUPS_RIGHT_SEND
                 : s && !strcmp(s, "manage") ? GROUPS_RIGHT_MANAGE
                                             : 1u << 8;
    }
    if (!json_is_array(r) || !*rights || (*rights & (1u << 8))) {
      admin_problem(ex, 400, "Bad Request",
                    "rights must be a non-empty array of \"send\" and \"manage\"", "rights",
                    "invalid", NULL);
      rc = M5_EINVAL;
    }
  }
  json_decref(o);
  return rc;
}

/* POST {base}/{id}/members ["ue:ID", "as:ID", ...]: adds a batch in one transaction. */
static void add_members(admin_t *a, m5_http_exchange_t *ex, const m5_http_request_t *req,
                        groups_kind_t kind, const char *id) {
  if (!req->content_type || strncasecmp(req->content_type, CT_JSON, strlen(CT_JSON)) != 0) {
    admin_problem(ex, 415, "Unsupported Media Type", "the body must be application/json", NULL,
                  NULL, NULL);
    return;
  }
  json_error_t je;
  json_t *v = json_loadb((const char *)req->body, req->body_len, JSON_REJECT_DUPLICATES, &je);
  size_t n = json_array_size(v);
  if (!json_is_array(v) || n == 0) {
    admin_problem(ex, 400, "Bad Request", "the body must be a non-empty JSON array of principals",
                  "body", v ? "not a non-empty array" : je.text, NULL);
    json_decref(v);
    return;
  }
  gpending_t *p = calloc(1, sizeof *p);
  if (!p || !(p->job.members = calloc(n, sizeof *p->job.members))) {
    free(p);
    json_decref(v);
    admin_problem(ex, 500, "Internal Server Error", "out of memory", NULL, NULL, NULL);
    return;
  }
  for (size_t i = 0; i < n; i++) {
    const char *m = json_string_value(json_array_get(v, i));
    if (!m || !groups_principal_valid(m, kind == GROUPS_AREA)) {
      char param[32];
      snprintf(param, sizeof param, "[%zu]", i);
      admin_problem(ex, 400, "Bad Request",
                    kind == GROUPS_AREA ? "an area's member is ue:<UE Service ID>"
                                        : "a member is ue:<UE Service ID> or as:<asSvcId>",
                    param, "invalid", NULL);
      admin_groups_drop(p);
      json_decref(v);
      return;
    }
    snprintf(p->job.members[i], sizeof p->job.members[i], "%s", m);
  }
  json_decref(v);
  p->job.n_members = n;
  p->a = a;
  p->ex = ex;
  p->job.op = GROUPS_ADD_MEMBERS;
  p->job.kind = kind;
  memcpy(p->job.id, id, strlen(id) + 1); /* valid: fits */
  submit(a, p);
}

void admin_groups(admin_t *a, m5_http_exchange_t *ex, const m5_http_request_t *req) {
  static const m5_http_header_t allow_doc = {"allow", "GET, PUT, DELETE"};
  static const m5_http_header_t allow_get = {"allow", "GET, POST"};
  static const m5_http_header_t allow_put = {"allow", "PUT, DELETE"};
  groups_kind_t kind = strncmp(req->path, AREAS_BASE, strlen(AREAS_BASE)) ? GROUPS_GROUP
                                                                            : GROUPS_AREA;
  const char *rest = req->path + strlen(kind == GROUPS_AREA ? AREAS_BASE : GROUPS_BASE);
  const char *idparam = kind == GROUPS_AREA ? "areaId" : "groupId";
  /* {id}[/members[/{p}] | /grants/{p}] */
  char seg[3][GROUPS_PRINCIPAL_MAX + 1];
  size_t nseg = 0;
  while (*rest && nseg < 3) {
    size_t n = strcspn(rest, "/");
    char raw[3 * (GROUPS_PRINCIPAL_MAX + 1)];
    if (n == 0 || n >= sizeof raw) break;
    memcpy(raw, rest, n);
    raw[n] = '\0';
    if (admin_decode_segment(raw, seg[nseg], sizeof seg[nseg]) != 0) break;
    nseg++;
    rest += n;
    if (*rest == '/') rest++;
  }
  if (nseg == 0 || !m5_msg_name_valid(seg[0])) {
    admin_problem(ex, 400, "Bad Request",
                  "the name in the path must be 1-128 characters of A-Z a-z 0-9 . _ : -", idparam,
                  "invalid", NULL);
    return;
  }
  int members = nseg >= 2 && !strcmp(seg[1], "members");
  int grants = nseg >= 2 && !strcmp(seg[1], "grants");
  if (*rest || (nseg >= 2 && !members && !grants) || (grants && nseg != 3)) {
    admin_problem(ex, 404, "Not Found",
                  "under a group or area: /members, /members/{ue:ID|as:ID}, /grants/{as:ID|ue:ID}",
                  NULL, NULL, NULL);
    return;
  }
  const char *id = seg[0], *m = req->method;
  if (nseg == 1 || (members && nseg == 2)) {
    if (nseg == 2 && !strcmp(m, "POST")) {
      add_members(a, ex, req, kind, id);
    } else if (nseg == 2 && strcmp(m, "GET") != 0) {
      admin_problem(ex, 405, "Method Not Allowed", "the member list accepts GET and POST", NULL,
                    NULL, &allow_get);
    } else if (nseg == 2) {
      get_members(a, ex, kind, id);
    } else if (!strcmp(m, "GET")) {
      answer_group(a, ex, kind, id, 200);
    } else if (strcmp(m, "PUT") != 0 && strcmp(m, "DELETE") != 0) {
      admin_problem(ex, 405, "Method Not Allowed", "a group or area accepts GET, PUT and DELETE",
                    NULL, NULL, &allow_doc);
    } else {
      gpending_t *p = calloc(1, sizeof *p);
      if (!p) {
        admin_problem(ex, 500, "Internal Server Error", "out of memory", NULL, NULL, NULL);
        return;
      }
      p->a = a;
      p->ex = ex;
      p->job.op = !strcmp(m, "PUT") ? GROUPS_CREATE : GROUPS_DELETE;
      p->job.kind = kind;
      memcpy(p->job.id, id, strlen(id) + 1); /* valid: fits */
      submit(a, p);
    }
    return;
  }
  /* a member or a grant */
  const char *who = seg[2];
  if (strcmp(m, "PUT") != 0 && strcmp(m, "DELETE") != 0) {
    admin_problem(ex, 405, "Method Not Allowed", "a member or grant accepts PUT and DELETE", NULL,
                  NULL, &allow_put);
    return;
  }
  if (!groups_principal_valid(who, members && kind == GROUPS_AREA)) {
    admin_problem(ex, 400, "Bad Request",
                  members && kind == GROUPS_AREA
                      ? "an area's member is ue:<UE Service ID>"
                      : "the principal must be ue:<UE Service ID> or as:<asSvcId>",
                  members ? "member" : "principal", "invalid", NULL);
    return;
  }
  unsigned rights = 0;
  if (grants && !strcmp(m, "PUT") && read_rights(ex, req, &rights) != 0) return;
  gpending_t *p = calloc(1, sizeof *p);
  if (!p) {
    admin_problem(ex, 500, "Internal Server Error", "out of memory", NULL, NULL, NULL);
    return;
  }
  p->a = a;
  p->ex = ex;
  int put = !strcmp(m, "PUT");
  p->job.op = members ? (put ? GROUPS_ADD_MEMBER : GROUPS_DEL_MEMBER)
                      : (put ? GROUPS_GRANT : GROUPS_REVOKE);
  p->job.kind = kind;
  p->job.rights = rights;
  memcpy(p->job.id, id, strlen(id) + 1); /* valid: fits */
  snprintf(p->job.principal, sizeof p->job.principal, "%s", who);
  submit(a, p);
}
