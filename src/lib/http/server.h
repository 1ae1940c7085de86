/* HTTP server on a worker loop: HTTP/2 (nghttp2) over TLS with ALPN "h2", and on cleartext
 * listeners HTTP/2 with prior knowledge (h2c) and/or HTTP/1.1 (http-parser), chosen by the
 * first bytes of the connection. Non-blocking; one m5_http_server_t per loop and listener;
 * several loops share a port through SO_REUSEPORT (architecture §3.3, §6).
 *
 * A handler receives each complete request and answers it, at once or later (on the same
 * loop), with exactly one m5_http_respond*() call on the exchange. If the connection closed
 * in between, the response is dropped and the exchange freed: handlers never see a dangling
 * connection. The request and its strings stay valid until the response call; req->ssl turns
 * NULL once the connection is gone. A handler must not free the server it runs in. */
#ifndef M5_HTTP_SERVER_H
#define M5_HTTP_SERVER_H

#include "core/loop.h"
#include <openssl/ssl.h>
#include <stddef.h>
#include <stdint.h>

typedef struct m5_http_server m5_http_server_t;
typedef struct m5_http_exchange m5_http_exchange_t;

typedef struct {
  const char *method;        /* "GET", "POST", ... */
  const char *path;          /* without the query */
  const char *query;         /* after '?', or NULL */
  const char *content_type;  /* or NULL */
  const char *authorization; /* or NULL */
  const uint8_t *body;       /* NUL-terminated copy; body_len excludes the NUL */
  size_t body_len;
  int version; /* 2 for HTTP/2, 1 for HTTP/1.1 */
  SSL *ssl;    /* the connection's TLS object (peer certificate), NULL if clear */
} m5_http_request_t;

typedef void (*m5_http_handler_fn)(m5_http_exchange_t *ex, const m5_http_request_t *req, void *arg);

typedef struct {
  const char *host; /* address to bind, e.g. "127.0.0.1" or "::" */
  uint16_t port;
  SSL_CTX *tls;             /* NULL = cleartext listener (the caller keeps ownership) */
  int allow_http1;          /* accept HTTP/1.1 (management ports) */
  int allow_h2c;            /* accept HTTP/2 prior knowledge on a cleartext listener */
  size_t max_body;          /* larger request bodies get 413; 0 = 1 MiB */
  size_t max_conns;         /* further connections are closed at accept; 0 = 10000 */
  uint32_t max_streams;     /* SETTINGS_MAX_CONCURRENT_STREAMS; 0 = 100 */
  uint32_t idle_timeout_ms; /* idle connections are closed; 0 = 60000 */
  m5_http_handler_fn handler;
  void *arg;
} m5_http_server_opts_t;

/* Binds (SO_REUSEADDR + SO_REUSEPORT) and listens. NULL with a message in err on failure
 * ("cannot bind 127.0.0.1:7443: Address already in use"). */
m5_http_server_t *m5_http_server_new(m5_loop_t *loop, const m5_http_server_opts_t *opts, char *err,
                                     size_t errlen);
/* Stops accepting, sends GOAWAY on HTTP/2 connections, closes idle ones; done(arg) runs on the
 * loop once every connection has closed (or after timeout_ms, when the rest are closed). */
void m5_http_server_drain(m5_http_server_t *srv, uint32_t timeout_ms, void (*done)(void *arg),
                          void *arg);
/* Closes the listener and every connection at once. */
void m5_http_server_free(m5_http_server_t *srv);
size_t m5_http_server_conn_count(const m5_http_server_t *srv);

typedef struct {
  const char *name; /* lowercase */
  const char *value;
} m5_http_header_t;

/* Answers the exchange (which is invalid afterwards). body may be NULL with len 0. */
int m5_http_respond(m5_http_exchange_t *ex, int status, const char *content_type, const void *body,
                    size_t len);
int m5_http_respond_headers(m5_http_exchange_t *ex, int status, const m5_http_header_t *hdrs,
                            size_t n_hdrs, const void *body, size_t len);
/* The reason phrase of an HTTP status ("Not Found"; "Status" for one it does not know): the
 * HTTP/1.1 status line, and the title of problem details. */
const char *m5_http_reason(int status);
/* The loop the exchange belongs to (for handlers that answer later). */
m5_loop_t *m5_http_exchange_loop(const m5_http_exchange_t *ex);

#endif
