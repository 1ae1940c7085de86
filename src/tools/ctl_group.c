/* m5ctl group|area VERB ...: groups (SEAL group management, TS 23.434) and broadcast areas
 * (TS 23.554 cl. 8.6.1) on m5s's management port (docs/admin-api.md, "Groups and broadcast
 * areas"), with the management token (--admin-token, as for m5ctl as add):
 *   create NAME | delete NAME | list NAME (the members, one "ue:ID" / "as:ID" a line)
 *   add NAME MEMBER | remove NAME MEMBER      (an area's members are UEs: ue:ID)
 *   grant NAME as:ID|ue:ID [--manage] | revoke NAME as:ID|ue:ID
 * Names and principals are checked here by m5s's rules first, so a typo is a usage error that
 * changes nothing. */
#include "ctl.h"

#include "msg/msg.h"

#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <string.h>

#define MAX_ANSWER (16 * 1024 * 1024) /* a member list of 100,000 */

typedef struct {
  int area;
  const char *verb, *name, *who;
  m5ctl_admin_t admin;
  int manage;
} grp_args_t;

static const char *const verbs[] = {"create", "delete", "list", "add", "remove", "grant", "revoke"};
#define N_VERBS (sizeof verbs / sizeof verbs[0])

static int takes_principal(const char *verb) {
  return !strcmp(verb, "add") || !strcmp(verb, "remove") || !strcmp(verb, "grant") ||
         !strcmp(verb, "revoke");
}

static void usage(int area) {
  const char *k = area ? "area" : "group", *K = area ? "AREA" : "GROUP";
  printf("usage: m5ctl %s create|delete|list %s [--m5s-admin URL] [--admin-token FILE]\n"
         "       m5ctl %s add|remove %s %s [--m5s-admin URL] [--admin-token FILE]\n"
         "       m5ctl %s grant|revoke %s as:ID|ue:ID%s [--m5s-admin URL] [--admin-token FILE]\n"
         "  (%s: 1-128 of A-Z a-z 0-9 . _ : -; list prints one member a line; grant: may send%s;\n"
         "  default URL %s; token file --admin-token, else $%s, else %s)\n",
         k, K, k, K, area ? "ue:ID" : "ue:ID|as:ID", k, K, area ? "" : " [--manage]", K,
         area ? "" : ", --manage: an AS may also manage it through SEAL GM",
         M5CTL_DEFAULT_M5S_ADMIN, M5CTL_ADMIN_TOKEN_ENV, M5CTL_DEFAULT_ADMIN_TOKEN);
}

static int principal_ok(const char *p, int member_of_area) {
  if (!strncmp(p, "ue:", 3)) return m5_msg_svc_id_valid(p + 3);
  if (!strncmp(p, "as:", 3)) return !member_of_area && m5_msg_as_id_valid(p + 3);
  return 0;
}

/* 0, 2 after a usage error, -1 after --help. argv[0] is "group" or "area". */
static int parse_args(int argc, char **argv, grp_args_t *a) {
  enum { OPT_MANAGE = M5CTL_OPT_OWN, OPT_HELP };
  static const struct option opts[] = {
      M5CTL_ADMIN_OPTIONS,
      {"manage", no_argument, NULL, OPT_MANAGE},
      {"help", no_argument, NULL, OPT_HELP},
      {NULL, 0, NULL, 0},
  };
  const char *k = a->area ? "area" : "group";
  int c, rc;
  opterr = 0;
  optind = 1;
  while ((c = getopt_long(argc, argv, ":", opts, NULL)) != -1) {
    if ((rc = m5ctl_admin_option(&a->admin, c, optarg)) >= 0) {
      if (rc) return rc;
      continue;
    }
    switch (c) {
    case OPT_MANAGE:
      a->manage = 1;
      break;
    case OPT_HELP:
      usage(a->area);
      return -1;
    default:
      return m5ctl_option_error(c, argv);
    }
  }
  char **op = argv + optind;
  int n = argc - optind;
  if (n < 1)
    return m5ctl_usage_error("%s: expected a command: create, add, remove, list, grant, revoke "
                             "or delete; see m5ctl %s --help",
                             k, k);
  a->verb = op[0];
  size_t v = 0;
  while (v < N_VERBS && strcmp(verbs[v], a->verb)) v++;
  if (v == N_VERBS)
    return m5ctl_usage_error("%s %s: unknown command; expected create, add, remove, list, grant, "
                             "revoke or delete",
                             k, a->verb);
  int want = takes_principal(a->verb) ? 3 : 2;
  if (n < 2)
    return m5ctl_usage_error("%s %s: the %s name is missing", k, a->verb, k);
  a->name = op[1];
  if (!m5_msg_name_valid(a->name))
    return m5ctl_usage_error("%s %s: '%s': a name is 1-128 of A-Z a-z 0-9 . _ : -", k, a->verb,
                             a->name);
  if (want == 3 && n < 3)
    return m5ctl_usage_error("%s %s: expected %s after the name", k, a->verb,
                             a->area && strncmp(a->verb, "grant", 5) && strcmp(a->verb, "revoke")
                                 ? "ue:ID"
                                 : "ue:ID or as:ID");
  if (n > want) return m5ctl_usage_error("%s: unexpected argument; see m5ctl %s --help", op[want], k);
  if (want == 3) {
    a->who = op[2];
    int member = !strcmp(a->verb, "add") || !strcmp(a->verb, "remove");
    if (!principal_ok(a->who, a->area && member))
      return m5ctl_usage_error("%s %s: '%s': expected %s", k, a->verb, a->who,
                               a->area && member
                                   ? "ue:<UE Service ID> (an area's members are UEs)"
                                   : "ue:<UE Service ID> or as:<asSvcId>");
  }
  if (a->manage && (strcmp(a->verb, "grant") != 0 || a->area || strncmp(a->who, "as:", 3) != 0))
    return m5ctl_usage_error("--manage: only for `m5ctl group grant GROUP as:ID`");
  return 0;
}

static int run(const void *ctx) {
  const grp_args_t *a = ctx;
  const char *k = a->area ? "area" : "group";
  char path[256];
  const char *method = "GET", *body = NULL, *segment = NULL;
  const char *v = a->verb;
  snprintf(path, sizeof path, "/admin/v1/%s/", a->area ? "areas" : "groups");
  if (!strcmp(v, "create") || !strcmp(v, "delete")) {
    method = v[0] == 'c' ? "PUT" : "DELETE";
    segment = a->name;
  } else if (!strcmp(v, "list")) {
    snprintf(path + strlen(path), sizeof path - strlen(path), "%s/members", a->name);
  } else {
    int member = !strcmp(v, "add") || !strcmp(v, "remove");
    method = !strcmp(v, "add") || !strcmp(v, "grant") ? "PUT" : "DELETE";
    snprintf(path + strlen(path), sizeof path - strlen(path), "%s/%s/", a->name,
             member ? "members" : "grants");
    segment = a->who;
    if (!strcmp(v, "grant"))
      body = a->manage ? "{\"rights\":[\"send\",\"manage\"]}" : "{\"rights\":[\"send\"]}";
  }
  m5_buf_t answer;
  long status;
  m5_buf_init(&answer, MAX_ANSWER);
  int rc = m5ctl_admin_call(&a->admin, method, path, segment, body, &answer, &status);
  if (rc) goto out;
  if (status != 200 && status != 201 && status != 204) {
    rc = m5ctl_admin_refused(status, &answer, "m5s refused %s %s %s%s%s", k, v, a->name,
                             a->who ? " " : "", a->who ? a->who : "");
    goto out;
  }
  if (!strcmp(v, "list")) {
    json_t *arr = json_loadb((const char *)answer.data, answer.len, 0, NULL);
    if (!json_is_array(arr)) {
      fprintf(stderr, "m5ctl: m5s answered the member list with something else than an array\n");
      rc = 1;
    }
    for (size_t i = 0; !rc && i < json_array_size(arr); i++) {
      const char *m = json_string_value(json_array_get(arr, i));
      if (m) puts(m);
    }
    json_decref(arr);
  } else if (!strcmp(v, "create")) {
    printf("%s %s: %s\n", k, a->name, status == 201 ? "created" : "exists (unchanged)");
  } else if (!strcmp(v, "delete")) {
    printf("%s %s: deleted\n", k, a->name);
  } else if (!strcmp(v, "add")) {
    printf("%s: %s %s %s\n", a->who, status == 201 ? "added to" : "already in", k, a->name);
  } else if (!strcmp(v, "remove")) {
    printf("%s: removed from %s %s\n", a->who, k, a->name);
  } else if (!strcmp(v, "grant")) {
    printf("%s: may send to%s %s %s\n", a->who, a->manage ? " and manage" : "", k, a->name);
  } else {
    printf("%s: grant on %s %s revoked\n", a->who, k, a->name);
  }
out:
  m5_buf_free(&answer);
  return rc;
}

static int command(int argc, char **argv, int area) {
  grp_args_t a = {.area = area};
  int rc = parse_args(argc, argv, &a);
  if (rc) return rc < 0 ? 0 : rc;
  return m5ctl_with_curl(run, &a);
}

int m5ctl_group(int argc, char **argv) {
  return command(argc, argv, 0);
}

int m5ctl_area(int argc, char **argv) {
  return command(argc, argv, 1);
}
