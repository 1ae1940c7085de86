/* What the management handlers read from a request the same way (docs/admin-api.md): a PUT's
 * JSON object body, a client's ID in the path ({asSvcId}, {gwId}) and a client's host:port
 * target, so every resource refuses bad input with the same problem details. */
#include "server/mgmt/admin_int.h"

#include "core/err.h"
#include "core/net.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

json_t *admin_json_object(m5_http_exchange_t *ex, const m5_http_request_t *req) {
  if (!req->content_type || strncasecmp(req->content_type, CT_JSON, strlen(CT_JSON)) != 0) {
    admin_problem(ex, 415, "Unsupported Media Type", "the body must be application/json", NULL,
                  NULL, NULL);
    return NULL;
  }
  json_error_t jerr;
  json_t *o = json_loadb((const char *)req->body, req->body_len, JSON_REJECT_DUPLICATES, &jerr);
  if (!o || !json_is_object(o)) {
    admin_problem(ex, 400, "Bad Request", "the body is not a JSON object", "body",
                  o ? "not an object" : jerr.text, NULL);
    json_decref(o);
    return NULL;
  }
  return o;
}

int admin_client_id(m5_http_exchange_t *ex, const char *seg, const char *name,
                    char id[REGISTRY_AS_ID_MAX + 1]) {
  if (admin_decode_segment(seg, id, REGISTRY_AS_ID_MAX + 1) == 0 && registry_as_id_valid(id))
    return 0;
  char detail[96];
  snprintf(detail, sizeof detail,
           "the %s in the path must be 1-64 characters of A-Z a-z 0-9 . _ -", name);
  admin_problem(ex, 400, "Bad Request", detail, name, "invalid", NULL);
  return M5_EINVAL;
}

/* Lowercased on the way in (the stored form); otherwise exactly what a URI's authority gives
 * (core/net.h), so a stored target compares with one taken from a targetUri as text. */
const char *admin_hostport(const char *text, char *out, size_t cap) {
  size_t n = strlen(text);
  if (n >= cap) return "too long";
  for (size_t k = 0; k <= n; k++)
    out[k] = (char)tolower((unsigned char)text[k]);
  return m5_net_hostport_problem(out);
}
