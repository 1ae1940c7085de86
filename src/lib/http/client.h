/* HTTP/2 client on a worker loop: libcurl's multi interface driven by the loop's epoll and
 * timers (CURLMOPT_SOCKETFUNCTION / TIMERFUNCTION), HTTP/2 over TLS with a client
 * certificate. Used by m5s for N-AKMA (architecture §3.4) and later for AS and gateway
 * delivery. Nothing blocks the loop: not the connection set-up, not DNS (only literal
 * addresses and localhost are resolved without the threaded resolver; libcurl's threaded
 * resolver handles the rest). */
#ifndef M5_HTTP_CLIENT_H
#define M5_HTTP_CLIENT_H

#include "core/loop.h"

#include <stddef.h>
#include <stdint.h>

typedef struct m5_http_client m5_http_client_t;

typedef struct {
  const char *cert_file; /* client certificate (PEM), or NULL */
  const char *key_file;
  const char *ca_file;      /* servers must chain to it, and match the URL's host name */
  const char *bearer_token; /* sent as "Authorization: Bearer <token>" on every request, or
                               NULL; copied, and the copy wiped when the client is freed */
  uint32_t timeout_ms;      /* whole request; 0 = 5000 */
  size_t max_inflight;      /* further requests get M5_EFULL; 0 = 1024 */
  size_t max_response;      /* larger bodies fail the request with M5_ERANGE; 0 = 1 MiB */
} m5_http_client_opts_t;

m5_http_client_t *m5_http_client_new(m5_loop_t *loop, const m5_http_client_opts_t *opts, char *err,
                                     size_t errlen);
/* Requests still running complete with M5_ECLOSED before this returns. */
void m5_http_client_free(m5_http_client_t *c);

/* status 0: a response arrived (http_status, body; body is NUL-terminated, len excludes it);
 * negative: M5_ETIMEDOUT, M5_EIO (connect/TLS failure), M5_ERANGE, M5_ECLOSED, M5_EPERM (the
 * server is not the peer_uri asked for: nothing was sent). Runs once, on
 * the loop, never from inside the call that started the request. */
typedef void (*m5_http_client_fn)(void *arg, int status, long http_status, const uint8_t *body,
                                  size_t len);

/* POSTs a JSON body (copied, wiped after sending). */
int m5_http_client_post_json(m5_http_client_t *c, const char *url, const char *json, size_t len,
                             m5_http_client_fn cb, void *arg);
/* One request with what the client's defaults do not cover (the gateway's token request is a
 * form, its de-registration a DELETE, its bearer token renewed under a running client). */
typedef struct {
  const char *method;       /* "POST", "PUT", "DELETE" or "GET"; NULL = "POST" */
  const char *content_type; /* of the body; NULL = application/json (no body: not sent) */
  const char *bearer_token; /* this request's "Authorization: Bearer", overriding the
                               client's; copied and the copy wiped; NULL = the client's */
  const char *peer_uri;     /* the server's certificate (verified against the CA and the URL's
                               host) must also carry this SAN URI, e.g. urn:msgin5g:gw:gw1;
                               checked on every request, a reused connection's too, before
                               anything is sent; without it the request fails with M5_EPERM
                               (logged with the URI the certificate names). NULL = no check */
} m5_http_req_opts_t;

/* Sends body (copied, wiped after sending; NULL with len 0 = none) with opts (NULL = a JSON
 * POST as m5_http_client_post_json); the same callback contract. */
int m5_http_client_request(m5_http_client_t *c, const char *url, const m5_http_req_opts_t *opts,
                           const void *body, size_t len, m5_http_client_fn cb, void *arg);
/* GETs url (e.g. a JWKS document); the same callback contract. */
int m5_http_client_get(m5_http_client_t *c, const char *url, m5_http_client_fn cb, void *arg);
/* Abandons the running request started with (cb, arg): its callback will not run, its slot
 * is free at once (an HTTP/2 request is reset). M5_ENOENT if there is none. Not from inside
 * that request's own callback. */
int m5_http_client_cancel(m5_http_client_t *c, m5_http_client_fn cb, void *arg);
size_t m5_http_client_inflight(const m5_http_client_t *c);

#endif
