/* Internal to the HTTP server (not installed, not for other modules): the connection and
 * exchange objects that server.c (listener, connections, TLS, I/O, drain), h2.c (HTTP/2,
 * RFC 9113, via nghttp2) and h1.c (HTTP/1.1, RFC 9112, via http-parser) share. */
#ifndef M5_HTTP_HTTP_INT_H
#define M5_HTTP_HTTP_INT_H

#include <http_parser.h>
#include <nghttp2/nghttp2.h>
#include <stdint.h>

#include "core/buf.h"
#include "http/server.h"

/* Request head limit (request line or pseudo-headers plus fields), like nginx's default
 * large_client_header_buffers; answered with 431. */
#define M5_HTTP_MAX_HEADER_BYTES 16384u
/* Output queued for the socket above which no more frames are pulled from nghttp2 and no
 * more input is read: a peer that does not read cannot make us buffer without bound. */
#define M5_HTTP_OUT_HIGH (64u * 1024u)
/* HTTP/1.1 input buffered while a request is with the handler (pipelining). */
#define M5_HTTP_IN_MAX (64u * 1024u)

typedef struct m5_http_conn m5_http_conn_t;

typedef enum {
  M5_EX_RECEIVING,  /* request still arriving; owned by the connection */
  M5_EX_DISPATCHED, /* with the handler, until it responds */
  M5_EX_RESPONDED,  /* HTTP/2 response being sent; owned by the connection again */
} m5_http_ex_state_t;

struct m5_http_exchange {
  m5_loop_t *loop;
  m5_http_conn_t *conn; /* NULL once orphaned: the connection closed under the handler */
  m5_http_exchange_t *prev, *next;
  m5_http_ex_state_t state;
  int32_t stream_id; /* HTTP/2 */
  m5_http_request_t req;
  char *method, *target, *content_type, *authorization;
  m5_buf_t body;
  size_t header_bytes;
  unsigned too_large : 1, hdr_overflow : 1, keep_alive : 1, is_head : 1, expect_continue : 1;
  /* HTTP/2: the peer reset the stream while the handler works. The exchange stays on the
   * connection's list so it keeps counting against the per-connection handler limit (a
   * reset does not end the handler's work: "rapid reset", CVE-2023-44487); the answer is
   * dropped. */
  unsigned stream_closed : 1;
  /* HTTP/2 response body, read by the nghttp2 data provider. */
  uint8_t *resp;
  size_t resp_len, resp_off;
  /* HTTP/1.1 header assembly (http-parser may split a field across callbacks). */
  m5_buf_t hname, hvalue, url;
  int last_was_value;
};

typedef enum {
  M5_CONN_HANDSHAKE, /* TLS handshake in progress */
  M5_CONN_SNIFF,     /* waiting for enough bytes to tell HTTP/2 from HTTP/1.1 */
  M5_CONN_H2,
  M5_CONN_H1,
  M5_CONN_LINGER, /* final bytes queued or sent; input is discarded until EOF */
} m5_http_conn_phase_t;

struct m5_http_conn {
  m5_http_server_t *srv;
  m5_http_conn_t *prev, *next;
  int fd;
  SSL *ssl;
  m5_http_conn_phase_t phase;
  uint32_t events;  /* what the loop watches now */
  uint32_t hs_want; /* M5_EV_READ or M5_EV_WRITE, as the handshake asked */
  unsigned ssl_read_wants_write : 1, ssl_write_wants_read : 1, close_after_write : 1,
      half_closed : 1, in_io : 1, fatal : 1, idle_goaway : 1,
      peer_eof : 1; /* HTTP/1.1 client half-closed: answer what arrived, then close */
  m5_buf_t in, out;
  uint64_t last_active;
  m5_timer_id_t idle_timer;
  m5_http_exchange_t *exchanges; /* every exchange still tied to this connection */
  nghttp2_session *h2;
  http_parser h1;
  m5_http_exchange_t *h1_ex; /* request being parsed or with the handler */
  char peer[64];
};

struct m5_http_server {
  m5_loop_t *loop;
  int lfd;
  m5_http_server_opts_t o; /* with defaults filled in; o.host is not kept */
  m5_http_conn_t *conns;
  size_t n_conns;
  int draining;
  m5_timer_id_t drain_timer, goaway_timer, done_timer, accept_timer;
  void (*done)(void *arg);
  void *done_arg;
  uint64_t last_full_log;
  nghttp2_session_callbacks *h2_cbs;
  nghttp2_option *h2_opt;
  http_parser_settings h1_settings;
};

/* server.c: exchanges and connections. */
m5_http_exchange_t *m5_http_ex_new(m5_http_conn_t *c, int version);
void m5_http_ex_free(m5_http_exchange_t *ex);
/* The connection went away: a dispatched exchange becomes an orphan the handler still owns;
 * any other is freed. */
void m5_http_ex_release(m5_http_exchange_t *ex);
/* Hands the complete request to the handler. ex may be freed when this returns. */
void m5_http_ex_dispatch(m5_http_exchange_t *ex);
/* Exchanges on c that a handler still holds. */
size_t m5_http_conn_dispatched(const m5_http_conn_t *c);
/* Sends a response the server makes itself (413, 431, 400), as problem+json. */
void m5_http_ex_problem(m5_http_exchange_t *ex, int status, const char *title);
/* After a response outside the connection's I/O callback: process, write, maybe close. */
void m5_http_conn_kick(m5_http_conn_t *c);
int m5_http_status_has_body(int status);

/* h2.c */
int m5_http_h2_init(m5_http_server_t *srv);
void m5_http_h2_cleanup(m5_http_server_t *srv);
int m5_http_h2_start(m5_http_conn_t *c);
int m5_http_h2_recv(m5_http_conn_t *c, const uint8_t *data, size_t len);
int m5_http_h2_fill(m5_http_conn_t *c);
int m5_http_h2_finished(m5_http_conn_t *c);
void m5_http_h2_goaway(m5_http_conn_t *c, int final);
int m5_http_h2_respond(m5_http_exchange_t *ex, int status, const char *content_type,
                       const m5_http_header_t *hdrs, size_t n_hdrs, const void *body, size_t len);

/* h1.c */
void m5_http_h1_init(m5_http_server_t *srv);
void m5_http_h1_start(m5_http_conn_t *c);
int m5_http_h1_process(m5_http_conn_t *c);
int m5_http_h1_idle(const m5_http_conn_t *c);
int m5_http_h1_respond(m5_http_exchange_t *ex, int status, const char *content_type,
                       const m5_http_header_t *hdrs, size_t n_hdrs, const void *body, size_t len);

#endif
