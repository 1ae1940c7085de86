/* m5ctl: what the commands that configure m5s through its management port (docs/admin-api.md)
 * share, so that `m5ctl as`, `m5ctl gateway` and `m5ctl group|area` take --m5s-admin,
 * --admin-token, their client IDs and their HOST:PORT targets by one rule each and call m5s the
 * same way. */
#include "ctl.h"

#include "core/net.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>

int m5ctl_admin_option(m5ctl_admin_t *a, int c, const char *arg) {
  if (c == M5CTL_OPT_M5S_ADMIN) return m5ctl_m5s_admin_option(arg, &a->url);
  if (c != M5CTL_OPT_ADMIN_TOKEN) return -1;
  a->token_file = arg;
  return 0;
}

int m5ctl_admin_call(const m5ctl_admin_t *a, const char *method, const char *path,
                     const char *segment, const char *body, m5_buf_t *answer, long *status) {
  return m5ctl_admin_request(a->url ? a->url : M5CTL_DEFAULT_M5S_ADMIN,
                             m5ctl_admin_token_file(a->token_file), method, path, segment, body,
                             answer, status);
}

int m5ctl_id_option(const char *name, const char *arg, const char **id) {
  if (*id) return m5ctl_usage_error("%s: given twice", name);
  if (!m5ctl_id_valid(arg))
    return m5ctl_usage_error("%s: expected 1 to %d of the characters A-Z a-z 0-9 . _ -, got '%s'",
                             name, M5CTL_ID_MAX, arg);
  *id = arg;
  return 0;
}

/* m5s lowercases a target before it applies the core/net.h rule, so the same is done here: a
 * target m5s would take is never refused as a usage error. */
const char *m5ctl_target_problem(const char *text) {
  char lower[M5_NET_HOSTPORT_MAX + 1];
  size_t n = strlen(text);
  if (n > M5_NET_HOSTPORT_MAX) return "too long";
  for (size_t i = 0; i <= n; i++)
    lower[i] = (char)tolower((unsigned char)text[i]);
  return m5_net_hostport_problem(lower);
}

int m5ctl_with_curl(int (*fn)(const void *ctx), const void *ctx) {
  if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
    fputs("m5ctl: cannot initialise libcurl\n", stderr);
    return 1;
  }
  int rc = fn(ctx);
  curl_global_cleanup();
  return rc;
}
