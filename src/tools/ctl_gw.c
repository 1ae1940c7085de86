/* m5ctl gateway add|remove|list: the message gateway clients of m5s (MSGin5G-2 for kind sms,
 * MSGin5G-4 for kind mqtt; docs/northbound.md "Gateways"), configured on m5s's management
 * port: PUT {m5s-admin}/admin/v1/gateways/{gwId} {"kind", "target", "ueSvcIds"}, DELETE, and
 * GET /admin/v1/gateways (docs/admin-api.md, "Message gateways"), with the management token
 * (--admin-token). The gwId, the target and the pattern are checked here first by m5s's rules,
 * so a typo is a usage error that changes nothing; m5s checks them again. */
#include "ctl.h"

#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <string.h>

#define GW_PATH "/admin/v1/gateways/"
#define GW_LIST "/admin/v1/gateways"
#define PATTERN_MAX 128 /* a UE Service ID's length */
#define MAX_ANSWER (1 << 20)

typedef enum { GW_ADD, GW_REMOVE, GW_LIST_CMD } gw_verb_t;

typedef struct {
  gw_verb_t verb;
  m5ctl_admin_t admin;
  const char *id, *kind, *target, *pattern;
} gw_args_t;

/* A UE Service ID (1-128 printable characters, no spaces; '"' and '\\' refused too, so the body
 * needs no escaping), or a prefix of one followed by one trailing '*'. */
static int pattern_valid(const char *s) {
  size_t n = strlen(s);
  if (n == 0 || n > PATTERN_MAX) return 0;
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    if (c < 0x21 || c > 0x7e || c == '"' || c == '\\') return 0;
    if (c == '*' && i != n - 1) return 0;
  }
  return 1;
}

static void usage(gw_verb_t v) {
  if (v == GW_ADD)
    printf("usage: m5ctl gateway add --gw-id ID --kind sms|mqtt --target HOST:PORT\n"
           "                         --ue-svc-ids PATTERN [--m5s-admin URL] [--admin-token FILE]\n"
           "  (kind sms: a Legacy 3GPP Message Gateway, MSGin5G-2; mqtt: a Non-3GPP Message\n"
           "  Gateway, MSGin5G-4; HOST:PORT: its delivery service; PATTERN: the UE Service IDs\n"
           "  it may register and send as, an exact ID or a prefix ending in '*', e.g. mq*;\n"
           "  default URL %s; token file --admin-token, else $%s, else %s)\n",
           M5CTL_DEFAULT_M5S_ADMIN, M5CTL_ADMIN_TOKEN_ENV, M5CTL_DEFAULT_ADMIN_TOKEN);
  else if (v == GW_REMOVE)
    printf("usage: m5ctl gateway remove --gw-id ID [--m5s-admin URL] [--admin-token FILE]\n"
           "  (the UE Service IDs it registered go with it)\n");
  else
    printf("usage: m5ctl gateway list [--m5s-admin URL] [--admin-token FILE]\n"
           "  (one line per gateway: gwId kind target pattern registered-UEs)\n");
}

/* 0, 2 after a usage error, -1 after --help. */
static int parse_args(int argc, char **argv, gw_args_t *a) {
  enum { OPT_ID = M5CTL_OPT_OWN, OPT_KIND, OPT_TARGET, OPT_PATTERN, OPT_HELP };
  static const struct option opts[] = {
      {"gw-id", required_argument, NULL, OPT_ID},
      {"kind", required_argument, NULL, OPT_KIND},
      {"target", required_argument, NULL, OPT_TARGET},
      {"ue-svc-ids", required_argument, NULL, OPT_PATTERN},
      M5CTL_ADMIN_OPTIONS,
      {"help", no_argument, NULL, OPT_HELP},
      {NULL, 0, NULL, 0},
  };
  const gw_verb_t v = a->verb;
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
      if (v == GW_LIST_CMD) return m5ctl_usage_error("--gw-id: not for `m5ctl gateway list`");
      if ((rc = m5ctl_id_option("--gw-id", optarg, &a->id))) return rc;
      break;
    case OPT_KIND:
      if (v != GW_ADD) return m5ctl_usage_error("--kind: only for `m5ctl gateway add`");
      if (strcmp(optarg, "sms") != 0 && strcmp(optarg, "mqtt") != 0)
        return m5ctl_usage_error("--kind: expected sms or mqtt, got '%s'", optarg);
      a->kind = optarg;
      break;
    case OPT_TARGET:
      if (v != GW_ADD) return m5ctl_usage_error("--target: only for `m5ctl gateway add`");
      if (a->target) return m5ctl_usage_error("--target: given twice");
      if ((why = m5ctl_target_problem(optarg)))
        return m5ctl_usage_error("--target: '%s': %s; expected HOST:PORT such as gw1.example:9444",
                                 optarg, why);
      a->target = optarg;
      break;
    case OPT_PATTERN:
      if (v != GW_ADD) return m5ctl_usage_error("--ue-svc-ids: only for `m5ctl gateway add`");
      if (a->pattern) return m5ctl_usage_error("--ue-svc-ids: given twice");
      if (!pattern_valid(optarg))
        return m5ctl_usage_error("--ue-svc-ids: '%s': expected a UE Service ID or a prefix of one "
                                 "ending in '*' (1-%d printable characters without spaces, "
                                 "quotes or backslashes), such as mq*",
                                 optarg, PATTERN_MAX);
      a->pattern = optarg;
      break;
    case OPT_HELP:
      usage(v);
      return -1;
    default:
      return m5ctl_option_error(c, argv);
    }
  }
  if ((rc = m5ctl_operand_error(argc, argv))) return rc;
  if (v != GW_LIST_CMD && !a->id)
    return m5ctl_usage_error("--gw-id: required (the gateway's gwId)");
  if (v == GW_ADD && !a->kind) return m5ctl_usage_error("--kind: required (sms or mqtt)");
  if (v == GW_ADD && !a->target)
    return m5ctl_usage_error(
        "--target: required (the HOST:PORT of the gateway's delivery service)");
  if (v == GW_ADD && !a->pattern)
    return m5ctl_usage_error("--ue-svc-ids: required (the UE Service IDs it may register)");
  return 0;
}

static void print_gw(json_t *g) {
  printf("%s %s %s %s %lld\n", json_string_value(json_object_get(g, "gwId")),
         json_string_value(json_object_get(g, "kind")),
         json_string_value(json_object_get(g, "target")),
         json_string_value(json_object_get(g, "ueSvcIds")),
         (long long)json_integer_value(json_object_get(g, "registeredUes")));
}

static int run(const void *ctx) {
  const gw_args_t *a = ctx;
  const gw_verb_t v = a->verb;
  m5_buf_t body, answer;
  long status;
  int rc = 1;
  m5_buf_init(&body, 0);
  m5_buf_init(&answer, MAX_ANSWER);
  if (v == GW_ADD && m5_buf_printf(&body, "{\"kind\":\"%s\",\"target\":\"%s\",\"ueSvcIds\":\"%s\"}",
                                   a->kind, a->target, a->pattern) != 0) {
    fputs("m5ctl: cannot build the request: out of memory\n", stderr);
    goto out;
  }
  const char *method = v == GW_ADD ? "PUT" : v == GW_REMOVE ? "DELETE" : "GET";
  rc = m5ctl_admin_call(&a->admin, method, v == GW_LIST_CMD ? GW_LIST : GW_PATH,
                        v == GW_LIST_CMD ? NULL : a->id,
                        v == GW_ADD ? (const char *)body.data : NULL, &answer, &status);
  if (rc) goto out;
  if (v == GW_ADD && (status == 201 || status == 200)) {
    printf("%s: %s, kind %s, target %s, ueSvcIds %s\n", a->id,
           status == 201 ? "created" : "updated", a->kind, a->target, a->pattern);
  } else if (v == GW_REMOVE && status == 204) {
    printf("%s: removed\n", a->id);
  } else if (v == GW_LIST_CMD && status == 200) {
    json_t *o = json_loadb((const char *)answer.data, answer.len, 0, NULL);
    json_t *arr = json_object_get(o, "gateways");
    for (size_t i = 0; i < json_array_size(arr); i++)
      print_gw(json_array_get(arr, i));
    json_decref(o);
  } else {
    rc = m5ctl_admin_refused(status, &answer,
                             v == GW_ADD      ? "m5s refused gateway %s"
                             : v == GW_REMOVE ? "m5s cannot remove gateway %s"
                                              : "m5s cannot list the gateways%s",
                             a->id ? a->id : "");
  }
out:
  m5_buf_free(&answer);
  m5_buf_free(&body);
  return rc;
}

static int gw_command(int argc, char **argv, gw_verb_t v) {
  gw_args_t a = {.verb = v};
  int rc = parse_args(argc, argv, &a);
  if (rc) return rc < 0 ? 0 : rc;
  return m5ctl_with_curl(run, &a);
}

int m5ctl_gateway_add(int argc, char **argv) {
  return gw_command(argc, argv, GW_ADD);
}

int m5ctl_gateway_remove(int argc, char **argv) {
  return gw_command(argc, argv, GW_REMOVE);
}

int m5ctl_gateway_list(int argc, char **argv) {
  return gw_command(argc, argv, GW_LIST_CMD);
}
