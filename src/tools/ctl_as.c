/* m5ctl as add|remove: the Application Server clients of the northbound MSGin5G-3 API
 * (architecture §3.2; docs/northbound.md, "Who may call"), configured on m5s's management
 * port: PUT {m5s-admin}/admin/v1/as-clients/{asSvcId} {"targets": ["host:port", ...],
 * "auth": "token"|"mtls", "ueSvcIds": ["pattern", ...]} and DELETE (docs/admin-api.md, "Application Server clients"), with
 * the management token (--admin-token). The asSvcId and every target are
 * checked here first by m5s's rules (the ID rule of m5ctl_id_valid, the host:port rule of
 * core/net.h that m5s applies too), so a typo is a usage error that changes nothing; m5s
 * checks them again. */
#include "ctl.h"

#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <string.h>

#define AS_PATH "/admin/v1/as-clients/"
#define TARGETS_MAX 16   /* m5s: REGISTRY_AS_TARGETS_MAX */
#define PATTERNS_MAX 16  /* m5s: POLICY_PATTERNS_MAX */
#define PATTERN_MAX 128  /* m5s: POLICY_PATTERN_MAX (a UE Service ID's length) */
#define MAX_ANSWER 65536

typedef struct {
  int add; /* 1: m5ctl as add, 0: m5ctl as remove */
  m5ctl_admin_t admin;
  const char *id;
  const char *auth;        /* --auth token|mtls; NULL = not given (m5s: token) */
  const char *targets[TARGETS_MAX];
  size_t n_targets;
  const char *ue_svc_ids; /* --ue-svc-ids P[,P...]; NULL = not given (m5s: "*") */
} as_args_t;

/* --ue-svc-ids: 1-16 comma-separated patterns of 1-128 printable characters without spaces
 * (m5s's rule, policy.h); '"' and '\\' are refused too, so the body needs no escaping. */
static int patterns_valid(const char *s) {
  size_t n = 0, len = 0;
  for (;; s++) {
    if (*s == ',' || *s == '\0') {
      if (len == 0 || ++n > PATTERNS_MAX) return 0;
      if (*s == '\0') return 1;
      len = 0;
      continue;
    }
    unsigned char c = (unsigned char)*s;
    if (c < 0x21 || c > 0x7e || c == '"' || c == '\\' || ++len > PATTERN_MAX) return 0;
  }
}

static void usage(int add) {
  if (add)
    printf("usage: m5ctl as add --as-svc-id ID --target HOST:PORT [--target HOST:PORT ...]\n"
           "                    [--auth token|mtls] [--ue-svc-ids PATTERN[,PATTERN...]]\n"
           "                    [--m5s-admin URL] [--admin-token FILE]\n"
           "  (at most %d targets; --auth mtls: the AS may call without an access token, on the\n"
           "  strength of its client certificate; default token; --ue-svc-ids: the UE Service\n"
           "  IDs it may message, '*' matching any run of characters, e.g. sensor-*; default *;\n"
           "  default URL %s; token file --admin-token, else $%s, else %s)\n",
           TARGETS_MAX, M5CTL_DEFAULT_M5S_ADMIN, M5CTL_ADMIN_TOKEN_ENV, M5CTL_DEFAULT_ADMIN_TOKEN);
  else
    printf("usage: m5ctl as remove --as-svc-id ID [--m5s-admin URL] [--admin-token FILE]\n"
           "  (default URL %s; token file --admin-token, else $%s, else %s)\n",
           M5CTL_DEFAULT_M5S_ADMIN, M5CTL_ADMIN_TOKEN_ENV, M5CTL_DEFAULT_ADMIN_TOKEN);
}

/* 0, 2 after a usage error, -1 after --help. */
static int parse_args(int argc, char **argv, as_args_t *a) {
  enum { OPT_ID = M5CTL_OPT_OWN, OPT_TARGET, OPT_AUTH, OPT_UE_SVC_IDS, OPT_HELP };
  static const struct option opts[] = {
      {"as-svc-id", required_argument, NULL, OPT_ID},
      {"target", required_argument, NULL, OPT_TARGET},
      M5CTL_ADMIN_OPTIONS,
      {"auth", required_argument, NULL, OPT_AUTH},
      {"ue-svc-ids", required_argument, NULL, OPT_UE_SVC_IDS},
      {"help", no_argument, NULL, OPT_HELP},
      {NULL, 0, NULL, 0},
  };
  const int add = a->add;
  const char *why;
  int c, rc;
  opterr = 0;
  optind = 1;
  while ((c = getopt_long(argc, argv, ":", opts, NULL)) != -1) {
    if ((rc = m5ctl_admin_option(&a->admin, c, optarg)) >= 0) {
      if (rc) return rc;
      continue;
    }
    switch (c) {
    case OPT_ID:
      if ((rc = m5ctl_id_option("--as-svc-id", optarg, &a->id))) return rc;
      break;
    case OPT_TARGET:
      if (!add) return m5ctl_usage_error("--target: only for `m5ctl as add`");
      if (a->n_targets == TARGETS_MAX)
        return m5ctl_usage_error("--target: at most %d per AS client", TARGETS_MAX);
      if ((why = m5ctl_target_problem(optarg)))
        return m5ctl_usage_error("--target: '%s': %s; expected HOST:PORT such as "
                                 "as1.example:9443",
                                 optarg, why);
      a->targets[a->n_targets++] = optarg;
      break;
    case OPT_AUTH:
      if (!add) return m5ctl_usage_error("--auth: only for `m5ctl as add`");
      if (strcmp(optarg, "token") != 0 && strcmp(optarg, "mtls") != 0)
        return m5ctl_usage_error("--auth: expected token or mtls, got '%s'", optarg);
      a->auth = optarg;
      break;
    case OPT_UE_SVC_IDS:
      if (!add) return m5ctl_usage_error("--ue-svc-ids: only for `m5ctl as add`");
      if (a->ue_svc_ids) return m5ctl_usage_error("--ue-svc-ids: given twice");
      if (!patterns_valid(optarg))
        return m5ctl_usage_error("--ue-svc-ids: '%s': expected 1-%d comma-separated patterns of "
                                 "1-%d printable characters without spaces, quotes or "
                                 "backslashes, such as sensor-*",
                                 optarg, PATTERNS_MAX, PATTERN_MAX);
      a->ue_svc_ids = optarg;
      break;
    case OPT_HELP:
      usage(add);
      return -1;
    default:
      return m5ctl_option_error(c, argv);
    }
  }
  if ((rc = m5ctl_operand_error(argc, argv))) return rc;
  if (!a->id) return m5ctl_usage_error("--as-svc-id: required (the AS's asSvcId)");
  if (add && !a->n_targets)
    return m5ctl_usage_error("--target: required, once per host:port the AS's targetUri may "
                             "name");
  return 0;
}

/* "<id>: created|updated, targets a b ...[, auth mtls ...]": the targets as m5s stored them
 * (lowercase, each once), or as sent when its answer does not list them. */
static void print_added(const as_args_t *a, long status, const m5_buf_t *answer) {
  json_t *o = json_loadb((const char *)answer->data, answer->len, 0, NULL);
  json_t *t = json_object_get(o, "targets");
  const char *auth = json_string_value(json_object_get(o, "auth"));
  printf("%s: %s, targets", a->id, status == 201 ? "created" : "updated");
  if (json_array_size(t) > 0) {
    for (size_t i = 0; i < json_array_size(t); i++) {
      const char *s = json_string_value(json_array_get(t, i));
      printf(" %s", s ? s : "?");
    }
  } else {
    for (size_t i = 0; i < a->n_targets; i++)
      printf(" %s", a->targets[i]);
  }
  /* Only the exception is named: "token" is what every AS client had before --auth. */
  if (auth ? !strcmp(auth, "mtls") : a->auth && !strcmp(a->auth, "mtls"))
    printf(", auth mtls (no access token needed)");
  /* Likewise the UEs only when narrowed: ["*"] is every AS client's default. */
  json_t *u = json_object_get(o, "ueSvcIds");
  const char *first = json_string_value(json_array_get(u, 0));
  if (u && !(json_array_size(u) == 1 && first && !strcmp(first, "*"))) {
    printf(", ueSvcIds");
    for (size_t i = 0; i < json_array_size(u); i++) {
      const char *s = json_string_value(json_array_get(u, i));
      printf("%s%s", i ? "," : " ", s ? s : "?");
    }
  }
  putchar('\n');
  json_decref(o);
}

/* The body, NUL-terminated: every target is checked text of A-Z a-z 0-9 - . : [ ], auth
 * token or mtls, and the patterns have no '"' or '\\', so none needs JSON escaping. */
static int build_body(const as_args_t *a, m5_buf_t *body) {
  int rc = m5_buf_printf(body, "{\"targets\":[");
  for (size_t i = 0; !rc && i < a->n_targets; i++)
    rc = m5_buf_printf(body, "%s\"%s\"", i ? "," : "", a->targets[i]);
  if (!rc)
    rc = m5_buf_printf(body, "]%s%s%s", a->auth ? ",\"auth\":\"" : "", a->auth ? a->auth : "",
                       a->auth ? "\"" : "");
  if (!rc && a->ue_svc_ids) {
    rc = m5_buf_printf(body, ",\"ueSvcIds\":[");
    for (const char *p = a->ue_svc_ids; !rc && *p;) {
      size_t n = strcspn(p, ",");
      rc = m5_buf_printf(body, "%s\"%.*s\"", p == a->ue_svc_ids ? "" : ",", (int)n, p);
      p += n;
      if (*p == ',') p++;
    }
    if (!rc) rc = m5_buf_printf(body, "]");
  }
  if (!rc) rc = m5_buf_printf(body, "}");
  return rc;
}

static int run(const void *ctx) {
  const as_args_t *a = ctx;
  const int add = a->add;
  m5_buf_t body, answer;
  long status;
  int rc = 1;
  m5_buf_init(&body, 0);
  m5_buf_init(&answer, MAX_ANSWER);
  if (add && build_body(a, &body) != 0) {
    fputs("m5ctl: cannot build the request: out of memory\n", stderr);
    goto out;
  }
  rc = m5ctl_admin_call(&a->admin, add ? "PUT" : "DELETE", AS_PATH, a->id,
                        add ? (const char *)body.data : NULL, &answer, &status);
  if (rc) goto out;
  if (add && (status == 201 || status == 200)) {
    print_added(a, status, &answer);
  } else if (!add && status == 204) {
    printf("%s: removed\n", a->id);
  } else {
    rc = m5ctl_admin_refused(status, &answer,
                             add ? "m5s refused AS client %s" : "m5s cannot remove AS client %s",
                             a->id);
  }
out:
  m5_buf_free(&answer);
  m5_buf_free(&body);
  return rc;
}

static int as_command(int argc, char **argv, int add) {
  as_args_t a = {.add = add};
  int rc = parse_args(argc, argv, &a);
  if (rc) return rc < 0 ? 0 : rc;
  return m5ctl_with_curl(run, &a);
}

int m5ctl_as_add(int argc, char **argv) {
  return as_command(argc, argv, 1);
}

int m5ctl_as_remove(int argc, char **argv) {
  return as_command(argc, argv, 0);
}
