/* ProblemDetails answers (TS 29.571 ProblemDetails, RFC 7807 application/problem+json): one
 * builder and one sender for every HTTP API the project serves (m5s's northbound and management
 * APIs, m5gw's MSGG listener), so they all write the same members the same way. */
#ifndef M5_HTTP_PROBLEM_H
#define M5_HTTP_PROBLEM_H

#include "http/server.h"

#include <jansson.h>

#define M5_CT_PROBLEM "application/problem+json"

/* {"title","status","detail"} plus "cause" when cause is given and "invalidParams" [{param,
 * reason}] when param is; title NULL: the status's reason phrase. NULL when out of memory. */
json_t *m5_problem_json(int status, const char *title, const char *cause, const char *detail,
                        const char *param, const char *reason);

/* Answers status with the problem o (taken; NULL or unprintable: a bare 500) and the header
 * extra when given. */
void m5_problem_respond(m5_http_exchange_t *ex, int status, json_t *o,
                        const m5_http_header_t *extra);

#endif
