/* m5c: the MSGin5G client command line tool on libm5c (docs/client.md). AKMA credentials as
 * m5ctl takes them (TS 33.535 Annex A; A-KID text of architecture §4), the AF FQDN rule of
 * architecture §4 (--af-fqdn, else the config, else the server's DNS name), and one JSON object
 * per line on stdout. Exit codes: 0 ok, 1 refused / DELY_FAILED, 2 usage, 3 connection,
 * handshake or authentication failure, 4 timeout. */
#include "m5c.h"

#include "core/config.h"
#include "core/err.h"
#include "crypto/akma.h"
#include "crypto/codec.h"

#include <arpa/inet.h>
#include <getopt.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum { EXIT_REFUSED = 1, EXIT_USAGE = 2, EXIT_AUTH = 3, EXIT_TIMEOUT = 4 };
#define KEY_HEX_LEN (2 * M5_AKMA_KEY_LEN)
#define DEFAULT_TIMEOUT_MS 10000

typedef enum {
  CMD_NONE,
  CMD_REGISTER,
  CMD_DEREGISTER,
  CMD_SEND,
  CMD_LISTEN,
  CMD_SUBSCRIBE,
  CMD_UNSUBSCRIBE
} cmd_t;
#define COMMANDS "register, deregister, send, listen, subscribe or unsubscribe"

/* Settings from the YAML file: keys = the long option names. */
typedef struct {
  char *server, *transport, *af_fqdn, *ue_svc_id, *kausf, *supi, *rid, *realm, *kakma, *akid,
      *timeout;
  int64_t mnc_len;
  int tls12;
} file_cfg_t;

#define C(k, f, t, d, lo, hi, h)                                                                   \
  { k, t, offsetof(file_cfg_t, f), d, lo, hi, h }
static const m5_cfg_item_t cfg_items[] = {
    C("server", server, M5_CFG_STR, NULL, 0, 0, "coaps://HOST[:PORT] or coaps+tcp://..."),
    C("transport", transport, M5_CFG_STR, NULL, 0, 0, "dtls or tls (overrides the scheme)"),
    C("af-fqdn", af_fqdn, M5_CFG_STR, NULL, 0, 0, "the AF's FQDN (SNI, K_AF derivation)"),
    C("ue-svc-id", ue_svc_id, M5_CFG_STR, NULL, 0, 0, "the UE Service ID to register"),
    C("kausf", kausf, M5_CFG_STR, NULL, 0, 0, "K_AUSF, 64 hex digits"),
    C("supi", supi, M5_CFG_STR, NULL, 0, 0, "IMSI digits"),
    C("rid", rid, M5_CFG_STR, NULL, 0, 0, "routing indicator, default 0000"),
    C("realm", realm, M5_CFG_STR, NULL, 0, 0, "A-KID realm"),
    C("mnc-len", mnc_len, M5_CFG_INT, "0", 0, 3, "MNC digits in the SUPI (2 or 3)"),
    C("kakma", kakma, M5_CFG_STR, NULL, 0, 0, "K_AKMA, 64 hex digits (with akid)"),
    C("akid", akid, M5_CFG_STR, NULL, 0, 0, "the A-KID text (with kakma)"),
    C("timeout", timeout, M5_CFG_STR, NULL, 0, 0, "seconds"),
    C("tls12", tls12, M5_CFG_BOOL, "false", 0, 0, "allow TLS 1.2 on coaps+tcp (test aid)"),
};
#undef C
#define N_CFG (sizeof cfg_items / sizeof cfg_items[0])

typedef struct {
  cmd_t cmd;
  const char *config, *server, *transport, *af_fqdn, *ue_svc_id, *supi, *rid, *realm, *akid,
      *timeout, *to, *payload, *msg_id, *count, *expire, *priority;
  uint8_t kausf[M5_AKMA_KEY_LEN], kakma[M5_AKMA_KEY_LEN];
  int have_kausf, have_kakma, mnc_len, tls12, report, store_fwd;
  const char *const *topics; /* subscribe / unsubscribe: the TOPIC arguments (in argv) */
  size_t n_topics;
} args_t;

static int usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int usage_error(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fputs("m5c: ", stderr);
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
  return EXIT_USAGE;
}

static void usage(FILE *out) {
  fputs("usage: m5c [OPTIONS] COMMAND [OPTIONS]\n"
        "\n"
        "commands:\n"
        "  register                          open a session and register (REG)\n"
        "  deregister                        register, then DEREG\n"
        "  send --to ue:ID --payload TEXT    send a MSG, print the server's MSGRESP\n"
        "       [--msg-id ID]                (default: random)\n"
        "       [--report]                   ask for a delivery report (delivStReqInd)\n"
        "       [--store-forward]            store if the recipient is unreachable (stoAndFwInd)\n"
        "       [--expire S]                 expiry: now + S seconds (stoAndFwParams.exprTime)\n"
        "       [--priority high|middle|low] (default middle)\n"
        "       (--to also as:ID, group:ID, bc:AREA, topic:NAME)\n"
        "  listen [--count N] [--timeout S]  print each message or delivery report pushed to this\n"
        "                                    UE as one JSON line (\"via\" for a group, area or\n"
        "                                    topic message); without --count until --timeout\n"
        "                                    or Ctrl-C\n"
        "  subscribe TOPIC... [--expire S]   subscribe to Messaging Topics (TOPICSUB; at most 32,\n"
        "                                    until now + S seconds, default: the server's), print\n"
        "                                    the server's answer\n"
        "  unsubscribe TOPIC...              end those subscriptions (TOPICUNSUB)\n"
        "\n"
        "options (before or after the command):\n"
        "  --config FILE         YAML file whose keys are these long option names\n"
        "  --server URI          coaps://HOST[:PORT] (DTLS) or coaps+tcp://HOST[:PORT] (TLS),\n"
        "                        port 5684 by default\n"
        "  --transport dtls|tls  overrides the URI's scheme\n"
        "  --af-fqdn FQDN        the server's AKMA AF name (default: the URI's host if it is\n"
        "                        a DNS name)\n"
        "  --ue-svc-id ID        the UE Service ID\n"
        "  --kausf HEX --supi DIGITS [--rid RID] [--realm REALM | --mnc-len 2|3]\n"
        "                        derive K_AKMA and the A-KID (as m5ctl akma derive)\n"
        "  --kakma HEX --akid TEXT\n"
        "                        or give them directly\n"
        "  --timeout S           per exchange (default 10); listen: total time\n"
        "  --tls12               allow TLS 1.2 on coaps+tcp (test aid)\n"
        "  --help                this text\n"
        "\n"
        "exit codes: 0 ok (DELY_STORED included), 1 refused by the server or DELY_FAILED,\n"
        "2 usage, 3 connection, handshake or authentication failure (4.01 included),\n"
        "4 timeout (listen: before --count messages arrived)\n",
        out);
}

/* A 64-hex-digit key; the text is wiped whatever happens. */
static int parse_key(const char *name, char *text, uint8_t key[M5_AKMA_KEY_LEN], int *have) {
  size_t len = strlen(text), n = 0;
  int rc = len == KEY_HEX_LEN ? m5_hex_decode(text, key, M5_AKMA_KEY_LEN, &n) : -1;
  m5_wipe(text, len);
  if (rc || n != M5_AKMA_KEY_LEN) {
    m5_wipe(key, M5_AKMA_KEY_LEN);
    return usage_error("%s: expected %d hex digits (%d octets)", name, KEY_HEX_LEN,
                       M5_AKMA_KEY_LEN);
  }
  *have = 1;
  return 0;
}

static int parse_args(int argc, char **argv, args_t *a) {
  enum {
    O_CONFIG = 256,
    O_SERVER,
    O_TRANSPORT,
    O_AF_FQDN,
    O_UE,
    O_KAUSF,
    O_SUPI,
    O_RID,
    O_REALM,
    O_MNC,
    O_KAKMA,
    O_AKID,
    O_TIMEOUT,
    O_TLS12,
    O_TO,
    O_PAYLOAD,
    O_MSG_ID,
    O_COUNT,
    O_REPORT,
    O_STORE_FWD,
    O_EXPIRE,
    O_PRIORITY,
    O_HELP
  };
  static const struct option opts[] = {
      {"config", required_argument, NULL, O_CONFIG},
      {"server", required_argument, NULL, O_SERVER},
      {"transport", required_argument, NULL, O_TRANSPORT},
      {"af-fqdn", required_argument, NULL, O_AF_FQDN},
      {"ue-svc-id", required_argument, NULL, O_UE},
      {"kausf", required_argument, NULL, O_KAUSF},
      {"supi", required_argument, NULL, O_SUPI},
      {"rid", required_argument, NULL, O_RID},
      {"realm", required_argument, NULL, O_REALM},
      {"mnc-len", required_argument, NULL, O_MNC},
      {"kakma", required_argument, NULL, O_KAKMA},
      {"akid", required_argument, NULL, O_AKID},
      {"timeout", required_argument, NULL, O_TIMEOUT},
      {"tls12", no_argument, NULL, O_TLS12},
      {"to", required_argument, NULL, O_TO},
      {"payload", required_argument, NULL, O_PAYLOAD},
      {"msg-id", required_argument, NULL, O_MSG_ID},
      {"count", required_argument, NULL, O_COUNT},
      {"report", no_argument, NULL, O_REPORT},
      {"store-forward", no_argument, NULL, O_STORE_FWD},
      {"expire", required_argument, NULL, O_EXPIRE},
      {"priority", required_argument, NULL, O_PRIORITY},
      {"help", no_argument, NULL, O_HELP},
      {NULL, 0, NULL, 0},
  };
  opterr = 0;
  optind = 1;
  int c, rc;
  while ((c = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
    switch (c) {
    case O_CONFIG:
      a->config = optarg;
      break;
    case O_SERVER:
      a->server = optarg;
      break;
    case O_TRANSPORT:
      a->transport = optarg;
      break;
    case O_AF_FQDN:
      a->af_fqdn = optarg;
      break;
    case O_UE:
      a->ue_svc_id = optarg;
      break;
    case O_SUPI:
      a->supi = optarg;
      break;
    case O_RID:
      a->rid = optarg;
      break;
    case O_REALM:
      a->realm = optarg;
      break;
    case O_AKID:
      a->akid = optarg;
      break;
    case O_TIMEOUT:
      a->timeout = optarg;
      break;
    case O_TO:
      a->to = optarg;
      break;
    case O_PAYLOAD:
      a->payload = optarg;
      break;
    case O_MSG_ID:
      a->msg_id = optarg;
      break;
    case O_COUNT:
      a->count = optarg;
      break;
    case O_REPORT:
      a->report = 1;
      break;
    case O_STORE_FWD:
      a->store_fwd = 1;
      break;
    case O_EXPIRE:
      a->expire = optarg;
      break;
    case O_PRIORITY:
      a->priority = optarg;
      break;
    case O_TLS12:
      a->tls12 = 1;
      break;
    case O_MNC:
      if (strcmp(optarg, "2") && strcmp(optarg, "3"))
        return usage_error("--mnc-len: expected 2 or 3, got '%s'", optarg);
      a->mnc_len = optarg[0] - '0';
      break;
    case O_KAUSF:
      if ((rc = parse_key("--kausf", optarg, a->kausf, &a->have_kausf))) return rc;
      break;
    case O_KAKMA:
      if ((rc = parse_key("--kakma", optarg, a->kakma, &a->have_kakma))) return rc;
      break;
    case 'h':
    case O_HELP:
      usage(stdout);
      return -1;
    case ':':
      return usage_error("%s: missing value", argv[optind - 1]);
    default:
      /* optopt names a short option; for a long one (unknown, or given a value it does not
       * take, where optopt holds its code) the element just consumed names it. */
      if (optopt > 0 && optopt < 128)
        return usage_error("-%c: unknown option; see m5c --help", optopt);
      return usage_error("%s: unknown option; see m5c --help", argv[optind - 1]);
    }
  }
  if (optind >= argc) return usage_error("COMMAND: missing; expected " COMMANDS);
  static const struct {
    const char *name;
    cmd_t cmd;
  } cmds[] = {{"register", CMD_REGISTER},     {"deregister", CMD_DEREGISTER},
              {"send", CMD_SEND},             {"listen", CMD_LISTEN},
              {"subscribe", CMD_SUBSCRIBE},   {"unsubscribe", CMD_UNSUBSCRIBE}};
  for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++)
    if (!strcmp(argv[optind], cmds[i].name)) a->cmd = cmds[i].cmd;
  if (a->cmd == CMD_NONE)
    return usage_error("%s: unknown command; expected " COMMANDS, argv[optind]);
  if (a->cmd == CMD_SUBSCRIBE || a->cmd == CMD_UNSUBSCRIBE) {
    /* getopt_long moved every non-option to the end: the command, then the topics ("--"
     * ends the options, for a topic that starts with '-'). */
    a->topics = (const char *const *)argv + optind + 1;
    a->n_topics = (size_t)(argc - optind - 1);
  } else if (optind + 1 < argc) {
    return usage_error("%s: unexpected argument; see m5c --help", argv[optind + 1]);
  }
  if (a->cmd != CMD_SEND && a->cmd != CMD_SUBSCRIBE && a->expire)
    return usage_error("--expire: only for send and subscribe");
  if (a->cmd != CMD_SEND) {
    if (a->to) return usage_error("--to: only for send");
    if (a->payload) return usage_error("--payload: only for send");
    if (a->msg_id) return usage_error("--msg-id: only for send");
    if (a->report) return usage_error("--report: only for send");
    if (a->store_fwd) return usage_error("--store-forward: only for send");
    if (a->priority) return usage_error("--priority: only for send");
  }
  if (a->cmd != CMD_LISTEN && a->count) return usage_error("--count: only for listen");
  return 0;
}

/* ---- merged settings ---- */

typedef struct {
  char host[M5_AKMA_FQDN_MAX + 3];
  uint16_t port;
  m5c_transport_t transport;
  int host_is_ip;
} server_t;

/* coaps://HOST[:PORT][/] or coaps+tcp://...; HOST may be an [IPv6] literal. */
static int parse_server(const char *name, const char *uri, server_t *s) {
  const char *p;
  if (!strncmp(uri, "coaps://", 8)) {
    s->transport = M5C_DTLS;
    p = uri + 8;
  } else if (!strncmp(uri, "coaps+tcp://", 12)) {
    s->transport = M5C_TLS;
    p = uri + 12;
  } else {
    return usage_error("%s: expected coaps://HOST[:PORT] or coaps+tcp://HOST[:PORT], got '%s'",
                       name, uri);
  }
  const char *host = p, *end;
  size_t hlen;
  if (*p == '[') {
    end = strchr(p, ']');
    if (!end) return usage_error("%s: unterminated [IPv6 address] in '%s'", name, uri);
    host = p + 1;
    hlen = (size_t)(end - host);
    p = end + 1;
  } else {
    hlen = strcspn(p, ":/");
    p += hlen;
  }
  if (!hlen || hlen >= sizeof s->host) return usage_error("%s: no usable host in '%s'", name, uri);
  memcpy(s->host, host, hlen);
  s->host[hlen] = '\0';
  s->port = M5C_DEFAULT_PORT;
  if (*p == ':') {
    char *e;
    unsigned long v = strtoul(p + 1, &e, 10);
    if (e == p + 1 || v == 0 || v > 65535 || (*e && strcmp(e, "/")))
      return usage_error("%s: expected a port in 1..65535 after the host in '%s'", name, uri);
    s->port = (uint16_t)v;
    p = e;
  }
  if (*p && strcmp(p, "/"))
    return usage_error("%s: unexpected '%s' after the host (no path, query or user part)", name, p);
  uint8_t tmp[16];
  s->host_is_ip = inet_pton(AF_INET, s->host, tmp) == 1 || inet_pton(AF_INET6, s->host, tmp) == 1;
  if (host != uri && host[-1] == '[' && !s->host_is_ip)
    return usage_error("%s: '%s' in brackets is not an IPv6 address", name, s->host);
  return 0;
}

/* Seconds (decimals allowed) as milliseconds. */
static int parse_seconds(const char *name, const char *text, uint64_t *ms) {
  char *e;
  double v = strtod(text, &e);
  if (e == text || *e || !isfinite(v) || v <= 0 || v > 31536000)
    return usage_error("%s: expected a number of seconds > 0, got '%s'", name, text);
  *ms = (uint64_t)(v * 1000.0 + 0.5);
  if (!*ms) *ms = 1;
  return 0;
}

/* "FILE: key" for values from the configuration, "--key" for command-line ones. */
static const char *src_name(char *buf, size_t n, const char *cfg_path, int from_cli,
                            const char *key) {
  if (from_cli)
    snprintf(buf, n, "--%s", key);
  else
    snprintf(buf, n, "%s: %s", cfg_path, key);
  return buf;
}

/* The file's strings are "" when the key is absent. */
static const char *nz(const char *s) {
  return s && s[0] ? s : NULL;
}
#define PICK(field, key) (a->field ? a->field : nz(f->field))
#define NAME(field, key) src_name(nb, sizeof nb, a->config, a->field != NULL, key)

typedef struct {
  server_t srv;
  m5_akma_cred_t cred;
  const char *ue_svc_id;
  uint64_t timeout_ms; /* 0 = not given */
  int tls12;
} settings_t;

static int build_settings(args_t *a, file_cfg_t *f, settings_t *s) {
  char nb[300];
  int rc;
  const char *server = PICK(server, "server");
  if (!server) return usage_error("--server: required (coaps://HOST or coaps+tcp://HOST)");
  if ((rc = parse_server(NAME(server, "server"), server, &s->srv))) return rc;
  const char *transport = PICK(transport, "transport");
  if (transport) {
    if (!strcmp(transport, "dtls"))
      s->srv.transport = M5C_DTLS;
    else if (!strcmp(transport, "tls"))
      s->srv.transport = M5C_TLS;
    else
      return usage_error("%s: expected dtls or tls, got '%s'", NAME(transport, "transport"),
                         transport);
  }
  s->tls12 = a->tls12 || f->tls12;

  const char *fqdn = PICK(af_fqdn, "af-fqdn");
  if (fqdn) {
    if (m5_akma_fqdn_valid(fqdn))
      return usage_error("%s: expected a host name of dot-separated letters, digits and hyphens "
                         "(no trailing dot), got '%s'",
                         NAME(af_fqdn, "af-fqdn"), fqdn);
  } else if (s->srv.host_is_ip) {
    return usage_error("--af-fqdn: required when --server names an IP address (the AF's FQDN, "
                       "sent as SNI and used to derive K_AF)");
  } else if (m5_akma_fqdn_valid(s->srv.host)) {
    return usage_error("--af-fqdn: required: the server host '%s' is not a valid FQDN",
                       s->srv.host);
  } else {
    fqdn = s->srv.host;
  }
  size_t flen = strlen(fqdn); /* validated: at most M5_AKMA_FQDN_MAX */
  memcpy(s->cred.fqdn, fqdn, flen + 1);

  s->ue_svc_id = PICK(ue_svc_id, "ue-svc-id");
  if (!s->ue_svc_id) return usage_error("--ue-svc-id: required (the UE Service ID)");
  if (!m5_msg_svc_id_valid(s->ue_svc_id))
    return usage_error("%s: expected 1-128 printable characters without spaces, got '%s'",
                       NAME(ue_svc_id, "ue-svc-id"), s->ue_svc_id);

  const char *timeout = PICK(timeout, "timeout");
  if (timeout && (rc = parse_seconds(NAME(timeout, "timeout"), timeout, &s->timeout_ms))) return rc;

  /* Keys from the file join the command line's unless the command line gave the other kind. */
  int cli_kind = a->have_kausf || a->have_kakma;
  if (!cli_kind && nz(f->kausf) &&
      (rc = parse_key(src_name(nb, sizeof nb, a->config, 0, "kausf"), f->kausf, a->kausf,
                      &a->have_kausf)))
    return rc;
  if (!cli_kind && nz(f->kakma) &&
      (rc = parse_key(src_name(nb, sizeof nb, a->config, 0, "kakma"), f->kakma, a->kakma,
                      &a->have_kakma)))
    return rc;
  const char *supi = PICK(supi, "supi"), *rid = PICK(rid, "rid"), *realm = PICK(realm, "realm");
  const char *akid = PICK(akid, "akid");
  int mnc_len = a->mnc_len ? a->mnc_len : (int)f->mnc_len;
  if (!a->mnc_len && f->mnc_len && f->mnc_len != 2 && f->mnc_len != 3)
    return usage_error("%s: mnc-len: expected 2 or 3", a->config);
  if (a->have_kausf && a->have_kakma)
    return usage_error("--kakma: cannot be combined with --kausf (give one kind of credential)");
  if (a->have_kakma) {
    if (!akid) return usage_error("--akid: required with --kakma");
    if (supi || rid || realm || mnc_len)
      return usage_error("%s: only with --kausf", supi    ? "--supi"
                                                  : rid   ? "--rid"
                                                  : realm ? "--realm"
                                                          : "--mnc-len");
    if (!m5_msg_svc_id_valid(akid) || strlen(akid) > M5_AKMA_AKID_MAX)
      return usage_error("%s: expected an A-KID such as 0000.<base64url>@realm, got '%s'",
                         NAME(akid, "akid"), akid);
    memcpy(s->cred.kakma, a->kakma, sizeof s->cred.kakma);
    snprintf(s->cred.akid, sizeof s->cred.akid, "%s", akid);
    return 0;
  }
  if (!a->have_kausf) return usage_error("--kausf: required (or --kakma with --akid)");
  if (akid) return usage_error("--akid: only with --kakma (--kausf derives it)");
  if (!supi) return usage_error("--supi: required with --kausf (IMSI digits)");
  if (m5_akma_supi_valid(supi))
    return usage_error("%s: expected the IMSI as 5 to 15 digits (no 'imsi-' prefix), got '%s'",
                       NAME(supi, "supi"), supi);
  if (rid && m5_akma_rid_valid(rid))
    return usage_error("%s: expected 1 to 4 digits, got '%s'", NAME(rid, "rid"), rid);
  if (realm && m5_akma_fqdn_valid(realm))
    return usage_error("%s: expected a domain name such as 5gc.mnc001.mcc001.3gppnetwork.org, "
                       "got '%s'",
                       NAME(realm, "realm"), realm);
  if (realm && mnc_len) return usage_error("--mnc-len: cannot be combined with --realm");
  char realm_buf[M5_AKMA_FQDN_MAX + 1];
  if (!realm) {
    if (m5_akma_realm_from_supi(supi, mnc_len ? mnc_len : 2, realm_buf, sizeof realm_buf))
      return usage_error("--supi: '%s' is too short for an MCC and a %d-digit MNC", supi,
                         mnc_len ? mnc_len : 2);
    realm = realm_buf;
  }
  uint8_t atid[M5_AKMA_KEY_LEN];
  if (m5_akma_kakma(a->kausf, supi, s->cred.kakma) || m5_akma_atid(a->kausf, supi, atid)) {
    fputs("m5c: cannot derive the AKMA keys: OpenSSL HMAC-SHA-256 failed\n", stderr);
    return EXIT_REFUSED;
  }
  if (m5_akma_akid(rid ? rid : M5_AKMA_DEFAULT_RID, atid, realm, s->cred.akid, sizeof s->cred.akid))
    return usage_error("--realm: the A-KID would exceed %d characters; use a shorter realm",
                       M5_AKMA_AKID_MAX);
  return 0;
}

/* ---- commands ---- */

typedef struct {
  m5c_t *c;
  long want, got;
  int interrupted;
} listen_t;

static void on_signal(m5_loop_t *loop, int signo, void *arg) {
  (void)loop;
  (void)signo;
  listen_t *l = arg;
  l->interrupted = 1;
  m5c_stop(l->c);
}

/* One line per message (m5c_push_line: the body as received, payloadText, via). */
static void print_message(m5c_t *c, const m5_msg_t *m, const uint8_t *body, size_t len, void *arg) {
  listen_t *l = arg;
  char *line = m5c_push_line(m, body, len);
  if (line)
    printf("%s\n", line);
  else
    printf("%.*s\n", (int)(len > INT32_MAX ? INT32_MAX : len), (const char *)body);
  fflush(stdout);
  free(line);
  if (l->want && ++l->got >= l->want) m5c_stop(c);
}

/* Exit code and message for a failed libm5c call. */
static int fail_exit(m5c_t *c, const char *cmd, int rc, int connecting) {
  fprintf(stderr, "m5c: %s: %s\n", cmd, m5c_last_error(c)[0] ? m5c_last_error(c) : m5_strerror(rc));
  switch (rc) {
  case M5_ECRYPTO:
    return EXIT_AUTH;
  case M5_ETIMEDOUT:
  case M5_EAGAIN:
    return connecting ? EXIT_AUTH : EXIT_TIMEOUT;
  case M5_EIO:
    return connecting ? EXIT_AUTH : EXIT_REFUSED;
  default:
    return EXIT_REFUSED;
  }
}

static int print_msg_json(const m5_msg_t *m) {
  char *text = NULL;
  if (m5_msg_encode(m, &text, NULL)) return -1;
  printf("%s\n", text);
  fflush(stdout);
  free(text);
  return 0;
}

/* --priority: high, middle or low (checked by check_send_args). */
static m5_msg_prio_t parse_priority(const char *text) {
  return !strcmp(text, "high") ? M5_PRIO_HIGH : !strcmp(text, "low") ? M5_PRIO_LOW : M5_PRIO_MIDDLE;
}

static int do_send(m5c_t *c, const args_t *a, const char *ue) {
  static const struct {
    const char *prefix, *type;
  } kinds[] = {
      {"ue:", "UE"}, {"as:", "AS"}, {"group:", "GROUP"}, {"bc:", "BC"}, {"topic:", "TOPIC"}};
  m5_msg_t m;
  memset(&m, 0, sizeof m);
  m.type = M5_MSG_MSG;
  m.prio = M5_PRIO_MIDDLE;
  for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++) {
    size_t n = strlen(kinds[i].prefix);
    if (!strncmp(a->to, kinds[i].prefix, n)) {
      snprintf(m.dest.type, sizeof m.dest.type, "%s", kinds[i].type);
      snprintf(m.dest.addr, sizeof m.dest.addr, "%s", a->to + n);
    }
  }
  snprintf(m.ori.type, sizeof m.ori.type, "UE");
  snprintf(m.ori.addr, sizeof m.ori.addr, "%s", ue);
  if (a->msg_id) {
    snprintf(m.msg_id, sizeof m.msg_id, "%s", a->msg_id);
  } else {
    uint8_t rnd[12];
    if (m5_random_bytes(rnd, sizeof rnd) ||
        m5_hex_encode(rnd, sizeof rnd, m.msg_id, sizeof m.msg_id)) {
      fputs("m5c: send: cannot make a random msgId\n", stderr);
      return EXIT_REFUSED;
    }
  }
  m.payload = (uint8_t *)(uintptr_t)a->payload;
  m.payload_len = strlen(a->payload);
  m.deliv_st_req = a->report;
  m.sto_fwd = a->store_fwd;
  if (a->priority) m.prio = parse_priority(a->priority);
  if (a->expire) m.expr_time = (int64_t)time(NULL) + strtoll(a->expire, NULL, 10);
  int rc = m5c_connect(c);
  if (rc) return fail_exit(c, "send", rc, 1);
  m5_msg_t resp;
  rc = m5c_send(c, &m, &resp);
  if (rc) return fail_exit(c, "send", rc, 0);
  print_msg_json(&resp);
  int code = 0;
  if (!strcmp(resp.status, "DELY_FAILED")) {
    fprintf(stderr, "m5c: send: 2.04 DELY_FAILED%s%s\n", resp.failure_cause[0] ? ": " : "",
            resp.failure_cause);
    code = EXIT_REFUSED;
  }
  m5_msg_free(&resp);
  return code;
}

/* --expire S (send, subscribe): whole seconds from now, at most ten years (an RFC 3339 time). */
static int check_expire(const args_t *a) {
  if (!a->expire) return 0;
  const char *p = a->expire;
  size_t n = strspn(p, "0123456789");
  if (!n || p[n] || n > 9 || strtoll(p, NULL, 10) <= 0 || strtoll(p, NULL, 10) > 315360000)
    return usage_error("--expire: expected whole seconds from now, 1..315360000, got '%s'", p);
  return 0;
}

static int check_send_args(const args_t *a) {
  if (a->cmd != CMD_SEND) return 0;
  if (!a->to) return usage_error("--to: required for send (ue:ID)");
  static const char *const prefixes[] = {"ue:", "as:", "group:", "bc:", "topic:"};
  size_t i = 0;
  for (; i < sizeof prefixes / sizeof prefixes[0]; i++)
    if (!strncmp(a->to, prefixes[i], strlen(prefixes[i]))) break;
  if (i == sizeof prefixes / sizeof prefixes[0] ||
      !m5_msg_svc_id_valid(a->to + strlen(prefixes[i])))
    return usage_error("--to: expected ue:ID (or as:, group:, bc:, topic:), got '%s'", a->to);
  if (i >= 2 && !m5_msg_name_valid(a->to + strlen(prefixes[i])))
    return usage_error("--to: a %s name is 1-128 characters of A-Z a-z 0-9 . _ : -, got '%s'",
                       prefixes[i], a->to);
  if (!a->payload) return usage_error("--payload: required for send");
  if (strlen(a->payload) > 65536) return usage_error("--payload: longer than 65536 bytes");
  if (a->msg_id && !m5_msg_id_valid(a->msg_id))
    return usage_error("--msg-id: expected 1-64 characters of A-Z a-z 0-9 . _ : -, got '%s'",
                       a->msg_id);
  if (a->priority && strcmp(a->priority, "high") && strcmp(a->priority, "middle") &&
      strcmp(a->priority, "low"))
    return usage_error("--priority: expected high, middle or low, got '%s'", a->priority);
  return check_expire(a);
}

/* subscribe / unsubscribe: 1..M5_MSG_TOPICS_MAX distinct names, refused before connecting. */
static int check_topic_args(const args_t *a) {
  if (a->cmd != CMD_SUBSCRIBE && a->cmd != CMD_UNSUBSCRIBE) return 0;
  if (!a->n_topics) return usage_error("TOPIC: missing; give one or more topic names");
  if (a->n_topics > M5_MSG_TOPICS_MAX)
    return usage_error("TOPIC: %zu topics, at most %d in one request", a->n_topics,
                       M5_MSG_TOPICS_MAX);
  for (size_t i = 0; i < a->n_topics; i++) {
    if (!m5_msg_name_valid(a->topics[i]))
      return usage_error("TOPIC: expected 1-128 characters of A-Z a-z 0-9 . _ : -, got '%s'",
                         a->topics[i]);
    for (size_t j = 0; j < i; j++)
      if (!strcmp(a->topics[i], a->topics[j]))
        return usage_error("TOPIC: '%s' given twice", a->topics[i]);
  }
  return check_expire(a);
}

/* subscribe / unsubscribe: prints the server's answer as one JSON line (TOPICSUB: msgTopics
 * and the expiry the server set), exit codes as send's. */
static int do_topics(m5c_t *c, const args_t *a) {
  const char *cmd = a->cmd == CMD_SUBSCRIBE ? "subscribe" : "unsubscribe";
  int rc = m5c_connect(c);
  if (rc) return fail_exit(c, cmd, rc, 1);
  m5_msg_t resp;
  int64_t expiry = a->expire ? (int64_t)time(NULL) + strtoll(a->expire, NULL, 10) : 0;
  rc = a->cmd == CMD_SUBSCRIBE ? m5c_subscribe(c, a->topics, a->n_topics, expiry, &resp)
                               : m5c_unsubscribe(c, a->topics, a->n_topics, &resp);
  if (rc) return fail_exit(c, cmd, rc, 0);
  m5_msg_t out = resp; /* a 2.04 without body: the request's topics were taken */
  m5_msg_name_t list[M5_MSG_TOPICS_MAX];
  if (!out.n_topics) {
    for (size_t i = 0; i < a->n_topics; i++)
      snprintf(list[i], sizeof list[i], "%s", a->topics[i]);
    out.topics = list;
    out.n_topics = a->n_topics;
  }
  print_msg_json(&out);
  m5_msg_free(&resp);
  return 0;
}

static int run(args_t *a, const settings_t *s) {
  listen_t l;
  memset(&l, 0, sizeof l);
  if (a->count) {
    char *e;
    l.want = strtol(a->count, &e, 10);
    if (e == a->count || *e || l.want <= 0 || l.want > 1000000000)
      return usage_error("--count: expected a positive number, got '%s'", a->count);
  }
  m5c_opts_t o;
  memset(&o, 0, sizeof o);
  o.host = s->srv.host;
  o.port = s->srv.port;
  o.transport = s->srv.transport;
  o.tls12 = s->tls12;
  o.cred = &s->cred;
  o.ue_svc_id = s->ue_svc_id;
  uint64_t tmo = s->timeout_ms ? s->timeout_ms : DEFAULT_TIMEOUT_MS;
  o.timeout_ms = (uint32_t)(tmo > UINT32_MAX ? UINT32_MAX : tmo);
  if (a->cmd == CMD_LISTEN && o.timeout_ms > DEFAULT_TIMEOUT_MS) o.timeout_ms = DEFAULT_TIMEOUT_MS;
  o.on_message = print_message;
  o.arg = &l;
  char err[256];
  m5c_t *c = m5c_new(&o, err, sizeof err);
  if (!c) {
    fprintf(stderr, "m5c: %s\n", err);
    return EXIT_REFUSED;
  }
  l.c = c;
  static const int sigs[] = {SIGINT, SIGTERM};
  if (m5_signals_block(sigs, 2) || m5_loop_signal(m5c_loop(c), SIGINT, on_signal, &l) ||
      m5_loop_signal(m5c_loop(c), SIGTERM, on_signal, &l)) {
    fputs("m5c: cannot set up signal handling\n", stderr);
    m5c_free(c);
    return EXIT_REFUSED;
  }
  int code = 0, rc;
  switch (a->cmd) {
  case CMD_REGISTER:
    if ((rc = m5c_connect(c))) {
      code = fail_exit(c, "register", rc, 1);
      break;
    }
    m5_msg_t r;
    memset(&r, 0, sizeof r);
    r.type = M5_MSG_REG;
    snprintf(r.ue_svc_id, sizeof r.ue_svc_id, "%s", s->ue_svc_id);
    r.expiry = m5c_reg_expiry(c);
    print_msg_json(&r);
    break;
  case CMD_DEREGISTER:
    if ((rc = m5c_connect(c)))
      code = fail_exit(c, "deregister", rc, 1);
    else if ((rc = m5c_deregister(c)))
      code = fail_exit(c, "deregister", rc, 0);
    break;
  case CMD_SEND:
    code = do_send(c, a, s->ue_svc_id);
    break;
  case CMD_SUBSCRIBE:
  case CMD_UNSUBSCRIBE:
    code = do_topics(c, a);
    break;
  case CMD_LISTEN:
    if ((rc = m5c_connect(c))) {
      code = fail_exit(c, "listen", rc, 1);
      break;
    }
    rc = m5c_run(c, s->timeout_ms);
    /* Delivery reports for the last messages may still be in flight: give them the exchange
     * timeout to be answered (those that cannot go are logged by libm5c). */
    m5c_flush_reports(c, o.timeout_ms);
    if (rc == M5_ETIMEDOUT || (rc == 0 && l.interrupted)) {
      if (l.want && l.got < l.want) {
        fprintf(stderr, "m5c: listen: %s after %ld of %ld messages\n",
                l.interrupted ? "interrupted" : "timed out", l.got, l.want);
        code = EXIT_TIMEOUT;
      }
    } else if (rc) {
      code = fail_exit(c, "listen", rc, 1);
    }
    break;
  case CMD_NONE:
    break;
  }
  m5c_free(c);
  return code;
}

int main(int argc, char **argv) {
  args_t a;
  memset(&a, 0, sizeof a);
  file_cfg_t f;
  memset(&f, 0, sizeof f);
  settings_t s;
  memset(&s, 0, sizeof s);
  int cfg_loaded = 0;
  int code = parse_args(argc, argv, &a);
  if (code < 0) {
    code = 0; /* --help */
    goto out;
  }
  if (code) goto out;
  char err[512];
  int rc = m5_config_load(a.config, cfg_items, N_CFG, &f, err, sizeof err);
  cfg_loaded = 1;
  if (rc) {
    code = usage_error("%s%s", a.config && rc == M5_EIO ? "--config: " : "", err);
    goto out;
  }
  if ((code = check_send_args(&a)) || (code = check_topic_args(&a)) ||
      (code = build_settings(&a, &f, &s)))
    goto out;
  code = run(&a, &s);
out:
  if (cfg_loaded) {
    if (f.kausf) m5_wipe(f.kausf, strlen(f.kausf));
    if (f.kakma) m5_wipe(f.kakma, strlen(f.kakma));
    m5_config_free(cfg_items, N_CFG, &f);
  }
  m5_wipe(&a.kausf, sizeof a.kausf);
  m5_wipe(&a.kakma, sizeof a.kakma);
  m5_wipe(&s.cred, sizeof s.cred);
  return code;
}
