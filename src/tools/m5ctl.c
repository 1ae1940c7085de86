/* m5ctl: entry point and command table. A row with verb NULL is a one-word command
 * ("m5ctl stats"). */
#include "ctl.h"
#include "crypto/json_wipe.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

typedef struct {
  const char *group, *verb;
  int (*fn)(int argc, char **argv);
  const char *summary;
} m5ctl_cmd_t;

static const m5ctl_cmd_t commands[] = {
    {"akma", "derive", m5ctl_akma_derive,
     "--kausf HEX --supi DIGITS --af-fqdn FQDN [--ua tls13|tls12:XXXX] [--rid RID]\n"
     "            [--realm REALM | --mnc-len 2|3]   print K_AKMA, A-TID, A-KID and K_AF"},
    {"pki", "init", m5ctl_pki_init,
     "[--dir DIR] [--force] [--fqdn NAME]   create the development CA, certificates and\n"
     "            m5s's token signing key m5s-token.key (default ./var/pki; NAME = the MSGin5G\n"
     "            server's FQDN, default localhost)"},
    {"pki", "issue", m5ctl_pki_issue,
     "--as-svc-id ID | --gw-id ID [--host NAME]... [--dir DIR] [--days N] [--force]\n"
     "            issue from the CA in DIR an Application Server's client certificate\n"
     "            (as-ID.crt/.key), or a message gateway's client certificate (gw-ID.crt/.key)\n"
     "            and its MSGG listener's server certificate (msgg-ID.crt/.key) naming the\n"
     "            host names or IP addresses NAME (up to 8; default localhost and 127.0.0.1)\n"
     "            (ID: 1-64 of A-Z a-z 0-9 . _ -; N <= 1095, default 825)"},
    {"subscriber", "add", m5ctl_subscriber_add,
     "--supi DIGITS --kausf HEX [--rid RID] [--realm REALM | --mnc-len 2|3] [--aanf URL]\n"
     "            [--pki DIR] [--ue-svc-id ID [--m5s-admin URL] [--admin-token FILE]]\n"
     "            register the subscriber's anchor key at the AAnF and, with --ue-svc-id, bind\n"
     "            that UE Service ID to it at the MSGin5G server"},
    {"subscriber", "import", m5ctl_subscriber_import,
     "FILE [--parallel N] [--rid RID] [--realm REALM | --mnc-len 2|3]\n"
     "            [--aanf URL] [--pki DIR] [--m5s-admin URL] [--admin-token FILE]\n"
     "            `subscriber add --ue-svc-id` for every line 'SUPI K_AUSF ueSvcId' of FILE\n"
     "            (- = stdin; blank lines and # comments ignored), checked whole before\n"
     "            anything is sent (exit 2 naming FILE:LINE), then N lines at once (1-64,\n"
     "            default 64); prints 'imported N subscribers (M re-bound, K failed\n"
     "            deliveries) in X s', each failed line on stderr; exit 1 if any failed"},
    {"as", "add", m5ctl_as_add,
     "--as-svc-id ID --target HOST:PORT [--target HOST:PORT ...] [--auth token|mtls]\n"
     "            [--m5s-admin URL] [--admin-token FILE]   allow the Application Server ID on\n"
     "            the northbound API, or replace its targets: the 1-16 HOST:PORTs its targetUri\n"
     "            may name (a DNS name, IPv4 or [IPv6], and a port; ID: 1-64 of A-Z a-z 0-9 . _\n"
     "            -; default URL http://127.0.0.1:9090); --auth mtls: it may call without an\n"
     "            access token, on the strength of its client certificate (default: token);\n"
     "            [--ue-svc-ids PATTERN[,PATTERN...]]: the UE Service IDs it may message\n"
     "            ('*' matches any run of characters, e.g. sensor-*; default *)"},
    {"as", "remove", m5ctl_as_remove,
     "--as-svc-id ID [--m5s-admin URL] [--admin-token FILE]   remove that Application Server\n"
     "            and its registration"},
    {"gateway", "add", m5ctl_gateway_add,
     "--gw-id ID --kind sms|mqtt --target HOST:PORT --ue-svc-ids PATTERN [--m5s-admin URL]\n"
     "            [--admin-token FILE]   allow a message gateway (sms: MSGin5G-2, mqtt:\n"
     "            MSGin5G-4): its delivery service and the UE Service IDs it may register\n"
     "            (an ID or a prefix ending in '*')"},
    {"gateway", "remove", m5ctl_gateway_remove,
     "--gw-id ID [...]   remove it and the UE Service IDs it registered"},
    {"gateway", "list", m5ctl_gateway_list, "[...]   one line each: gwId kind target pattern UEs"},
    {"group", NULL, m5ctl_group,
     "create|delete|list GROUP | add|remove GROUP ue:ID|as:ID | grant|revoke GROUP\n"
     "            as:ID|ue:ID [--manage]  [--m5s-admin URL] [--admin-token FILE]   the groups of\n"
     "            group messages (list: one member a line; grant: may send without being a\n"
     "            member, --manage: an AS may also manage it through SEAL GM)"},
    {"area", NULL, m5ctl_area,
     "create|delete|list AREA | add|remove AREA ue:ID | grant|revoke AREA as:ID|ue:ID\n"
     "            [--m5s-admin URL] [--admin-token FILE]   the broadcast areas (members: UEs;\n"
     "            grant: who may broadcast to it)"},
    {"stats", NULL, m5ctl_stats,
     "[--m5s-admin URL]   print the MSGin5G server's delivery counters and gauges, one\n"
     "            'name value' line each (as on its /metrics; default URL http://127.0.0.1:9090)"},
};

int m5ctl_usage_error(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fputs("m5ctl: ", stderr);
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
  return 2;
}

static void usage(FILE *out) {
  fputs("usage: m5ctl GROUP COMMAND [OPTIONS]\n\n", out);
  for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
    fprintf(out, "  %s%s%s %s\n", commands[i].group, commands[i].verb ? " " : "",
            commands[i].verb ? commands[i].verb : "", commands[i].summary);
  fputs(
      "\nThe commands that change or read m5s (subscriber add --ue-svc-id, subscriber import, as,\n"
      "gateway, group, area) send its management token, read from --admin-token FILE, else\n"
      "$" M5CTL_ADMIN_TOKEN_ENV ", else " M5CTL_DEFAULT_ADMIN_TOKEN " (where m5s writes it at its\n"
      "first start).\n",
      out);
}

int main(int argc, char **argv) {
  m5_json_wipe_install(); /* K_AKMA in hex passes through jansson (subscriber add) */
  if (argc >= 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
    /* One write for the whole text (it is over stdio's 4 KiB block): a reader that stops at
     * the first line it wants (`m5ctl --help | grep -q ...`) then never costs us a SIGPIPE. */
    static char buf[1 << 15];
    setvbuf(stdout, buf, _IOFBF, sizeof buf);
    usage(stdout);
    return 0;
  }
  for (size_t i = 0; argc >= 2 && i < sizeof commands / sizeof commands[0]; i++)
    if (!commands[i].verb && !strcmp(argv[1], commands[i].group))
      return commands[i].fn(argc - 1, argv + 1);
  if (argc < 3) {
    usage(stderr);
    return 2;
  }
  for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
    if (commands[i].verb && !strcmp(argv[1], commands[i].group) &&
        !strcmp(argv[2], commands[i].verb))
      return commands[i].fn(argc - 2, argv + 2);
  fprintf(stderr, "m5ctl: unknown command '%s %s'; see m5ctl --help\n", argv[1], argv[2]);
  return 2;
}
