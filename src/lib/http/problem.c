/* ProblemDetails answers (problem.h). */
#include "http/problem.h"

#include <stdlib.h>
#include <string.h>

json_t *m5_problem_json(int status, const char *title, const char *cause, const char *detail,
                        const char *param, const char *reason) {
  json_t *o = json_pack("{s:s, s:i, s:s}", "title", title ? title : m5_http_reason(status),
                        "status", status, "detail", detail);
  if (o && cause) json_object_set_new(o, "cause", json_string(cause));
  if (o && param)
    json_object_set_new(o, "invalidParams",
                        json_pack("[{s:s, s:s}]", "param", param, "reason", reason));
  return o;
}

void m5_problem_respond(m5_http_exchange_t *ex, int status, json_t *o,
                        const m5_http_header_t *extra) {
  char *text = o ? json_dumps(o, JSON_COMPACT) : NULL;
  json_decref(o);
  if (!text) {
    m5_http_respond(ex, 500, NULL, NULL, 0);
    return;
  }
  m5_http_header_t h[2] = {{"content-type", M5_CT_PROBLEM}};
  size_t n = 1;
  if (extra) h[n++] = *extra;
  m5_http_respond_headers(ex, status, h, n, text, strlen(text));
  free(text);
}
