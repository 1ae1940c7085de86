/* Unit tests for the HTTP/2 client (client.h) against our own HTTP/2 server (server.h) with
 * mutual TLS on loopback. The server runs on an m5_loop in its own thread; the client runs on
 * a second loop driven by the test thread. The certificates are made by the openssl CLI in a
 * scratch directory (as in test_http.c), with a second CA that the server does not chain to,
 * and a server certificate carrying a gateway's SAN URI (peer_uri). */
#include "core/err.h"
#include "core/loop.h"
#include "http/client.h"
#include "http/server.h"
#include "tls/tls.h"

#include "testutil.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

static char g_dir[64];
static char g_ca[128], g_ca2[128], g_srv_crt[128], g_srv_key[128], g_cli_crt[128], g_cli_key[128];
/* a server certificate also carrying urn:msgin5g:gw:gw1 */
static char g_gw_crt[128], g_gw_key[128];

/* ---- the server: /echo, /late?ms, /big?bytes; every answer names the connection count ---- */

typedef struct server server_t;

typedef struct late {
  server_t *s;
  m5_http_exchange_t *ex;
  m5_timer_id_t timer;
  struct late *next;
} late_t;

struct server {
  tu_http_server_t h;
  SSL_CTX *tls;
  late_t *late;        /* answers not sent yet */
  atomic_int requests; /* requests that reached the handler */
};

static void answer(server_t *s, m5_http_exchange_t *ex, const char *what) {
  char out[256];
  int n = snprintf(out, sizeof out, "%s conns=%zu", what, m5_http_server_conn_count(s->h.srv));
  m5_http_respond(ex, 200, "application/json", out, (size_t)n);
}

static void late_cb(m5_loop_t *loop, void *arg) {
  (void)loop;
  late_t *l = arg;
  server_t *s = l->s;
  for (late_t **pp = &s->late; *pp; pp = &(*pp)->next)
    if (*pp == l) {
      *pp = l->next;
      break;
    }
  answer(s, l->ex, "late");
  free(l);
}

static void handler(m5_http_exchange_t *ex, const m5_http_request_t *req, void *arg) {
  server_t *s = arg;
  atomic_fetch_add(&s->requests, 1);
  if (strcmp(req->path, "/late") == 0) {
    late_t *l = calloc(1, sizeof *l);
    assert_non_null(l);
    l->s = s;
    l->ex = ex;
    l->timer =
        m5_loop_timer_add(s->h.loop, (uint64_t)atoi(req->query ? req->query : "100"), late_cb, l);
    assert_true(l->timer != 0);
    l->next = s->late;
    s->late = l;
    return;
  }
  if (strcmp(req->path, "/big") == 0) {
    size_t n = (size_t)atoi(req->query ? req->query : "0");
    char *big = malloc(n);
    assert_non_null(big);
    memset(big, 'b', n);
    m5_http_respond(ex, 200, "application/json", big, n);
    free(big);
    return;
  }
  char out[512];
  if (strcmp(req->path, "/req") == 0) { /* m5_http_client_request: what arrived */
    snprintf(out, sizeof out, "m=%s ctype=%s auth=%s body=%s", req->method,
             req->content_type ? req->content_type : "-",
             req->authorization ? req->authorization : "-", (const char *)req->body);
    answer(s, ex, out);
    return;
  }
  snprintf(out, sizeof out, "v=%d ctype=%s body=%s", req->version,
           req->content_type ? req->content_type : "-", (const char *)req->body);
  answer(s, ex, out);
}

/* On the server's loop thread: what is still pending gets 503. */
static void answer_pending(void *arg) {
  server_t *s = arg;
  while (s->late) {
    late_t *l = s->late;
    s->late = l->next;
    m5_loop_timer_cancel(s->h.loop, l->timer);
    m5_http_respond(l->ex, 503, NULL, NULL, 0);
    free(l);
  }
}

static server_t *server_start_with(const char *crt, const char *key) {
  server_t *s = calloc(1, sizeof *s);
  assert_non_null(s);
  m5_tls_opts_t t = {
      .cert_file = crt, .key_file = key, .ca_file = g_ca, .verify_peer = 1, .alpn = "h2"};
  char err[512];
  s->tls = m5_tls_server_ctx_new(&t, err, sizeof err);
  if (!s->tls) fail_msg("tls: %s", err);
  m5_http_server_opts_t o = {
      .host = "127.0.0.1", .tls = s->tls, .max_streams = 100, .handler = handler, .arg = s};
  if (tu_http_server_start(&s->h, &o, err, sizeof err) != 0) fail_msg("server: %s", err);
  return s;
}

static server_t *server_start(void) {
  return server_start_with(g_srv_crt, g_srv_key);
}

static void server_stop(server_t *s) {
  tu_loop_thread_call(&s->h.lt, answer_pending, s);
  tu_http_server_stop(&s->h);
  SSL_CTX_free(s->tls);
  free(s);
}

/* ---- the client side ---- */

typedef struct {
  int calls;
  int status;
  long http_status;
  char body[512];
  size_t len;
} result_t;

static int g_done;

static void on_result(void *arg, int status, long http_status, const uint8_t *body, size_t len) {
  result_t *r = arg;
  r->calls++;
  r->status = status;
  r->http_status = http_status;
  r->len = len;
  if (status == 0) {
    assert_non_null(body);
    assert_int_equal(body[len], '\0');
    snprintf(r->body, sizeof r->body, "%s", (const char *)body);
  } else {
    assert_null(body);
  }
  g_done++;
}

/* Runs the client loop until want callbacks have run in all, or ms pass. */
static void run_until(m5_loop_t *loop, int want, unsigned ms) {
  tu_loop_run_until(loop, &g_done, want, ms);
}

static m5_http_client_t *client_new(m5_loop_t *loop, const char *ca, int with_cert,
                                    uint32_t timeout_ms, size_t max_inflight, size_t max_response) {
  m5_http_client_opts_t o = {.cert_file = with_cert ? g_cli_crt : NULL,
                             .key_file = with_cert ? g_cli_key : NULL,
                             .ca_file = ca,
                             .timeout_ms = timeout_ms,
                             .max_inflight = max_inflight,
                             .max_response = max_response};
  char err[256];
  m5_http_client_t *c = m5_http_client_new(loop, &o, err, sizeof err);
  if (!c) fail_msg("client: %s", err);
  return c;
}

static void url(char *out, size_t n, const server_t *s, const char *path) {
  snprintf(out, n, "https://localhost:%u%s", (unsigned)s->h.port, path);
}

static const char JSON[] = "{\"afId\":\"localhost\",\"aKId\":\"0000.abc@realm\"}";

/* ---- tests ---- */

static void test_post_200_with_body(void **state) {
  (void)state;
  server_t *s = server_start();
  m5_loop_t *loop = m5_loop_new();
  m5_http_client_t *c = client_new(loop, g_ca, 1, 0, 0, 0);
  char u[128];
  url(u, sizeof u, s, "/echo");
  result_t r = {0};
  g_done = 0;
  assert_int_equal(m5_http_client_post_json(c, u, JSON, strlen(JSON), on_result, &r), M5_OK);
  assert_int_equal(r.calls, 0); /* never from inside post_json */
  assert_int_equal(m5_http_client_inflight(c), 1);
  run_until(loop, 1, 5000);
  assert_int_equal(r.calls, 1);
  assert_int_equal(r.status, 0);
  assert_int_equal(r.http_status, 200);
  assert_int_equal(m5_http_client_inflight(c), 0);
  char want[256];
  snprintf(want, sizeof want, "v=2 ctype=application/json body=%s conns=1", JSON);
  assert_string_equal(r.body, want);
  assert_int_equal(r.len, strlen(want));
  m5_http_client_free(c);
  m5_loop_free(loop);
  server_stop(s);
}

/* m5_http_client_request: the method, the body's media type and a bearer token per request
 * (the gateway's form to /oauth2/token, its DELETE, a renewed token under a running client),
 * and the client's own token when the request names none. */
static void test_request_method_type_bearer(void **state) {
  (void)state;
  server_t *s = server_start();
  m5_loop_t *loop = m5_loop_new();
  m5_http_client_opts_t o = {
      .cert_file = g_cli_crt, .key_file = g_cli_key, .ca_file = g_ca, .bearer_token = "client-tok"};
  char err[256];
  m5_http_client_t *c = m5_http_client_new(loop, &o, err, sizeof err);
  assert_non_null(c);
  char u[128];
  url(u, sizeof u, s, "/req");
  result_t r[4] = {{0}};
  g_done = 0;
  const char form[] = "grant_type=client_credentials";
  m5_http_req_opts_t f = {.method = "POST",
                          .content_type = "application/x-www-form-urlencoded",
                          .bearer_token = "req-tok"};
  assert_int_equal(m5_http_client_request(c, u, &f, form, strlen(form), on_result, &r[0]), M5_OK);
  m5_http_req_opts_t d = {.method = "DELETE", .bearer_token = "req-tok2"};
  assert_int_equal(m5_http_client_request(c, u, &d, NULL, 0, on_result, &r[1]), M5_OK);
  assert_int_equal(m5_http_client_request(c, u, NULL, JSON, strlen(JSON), on_result, &r[2]), M5_OK);
  m5_http_req_opts_t bad = {.method = "BREW"};
  assert_int_equal(m5_http_client_request(c, u, &bad, NULL, 0, on_result, &r[3]), M5_EINVAL);
  m5_http_req_opts_t get_body = {.method = "GET"};
  assert_int_equal(m5_http_client_request(c, u, &get_body, "x", 1, on_result, &r[3]), M5_EINVAL);
  assert_int_equal(g_done, 0); /* never from inside the call */
  run_until(loop, 3, 5000);
  for (int i = 0; i < 3; i++) {
    assert_int_equal(r[i].status, 0);
    assert_int_equal(r[i].http_status, 200);
  }
  assert_string_equal(r[0].body, "m=POST ctype=application/x-www-form-urlencoded auth=Bearer "
                                 "req-tok body=grant_type=client_credentials conns=1");
  assert_string_equal(r[1].body, "m=DELETE ctype=- auth=Bearer req-tok2 body= conns=1");
  char want[256];
  snprintf(want, sizeof want,
           "m=POST ctype=application/json auth=Bearer client-tok body=%s "
           "conns=1",
           JSON);
  assert_string_equal(r[2].body, want);
  assert_int_equal(r[3].calls, 0);
  m5_http_client_free(c);
  m5_loop_free(loop);
  server_stop(s);
}

/* Many requests at once become streams of one HTTP/2 connection. */
static void test_concurrent_on_one_connection(void **state) {
  (void)state;
  enum { N = 40 };
  server_t *s = server_start();
  m5_loop_t *loop = m5_loop_new();
  m5_http_client_t *c = client_new(loop, g_ca, 1, 0, 0, 0);
  char u[128];
  url(u, sizeof u, s, "/late?100");
  static result_t r[N];
  memset(r, 0, sizeof r);
  g_done = 0;
  for (int i = 0; i < N; i++)
    assert_int_equal(m5_http_client_post_json(c, u, JSON, strlen(JSON), on_result, &r[i]), M5_OK);
  assert_int_equal(m5_http_client_inflight(c), N);
  assert_int_equal(g_done, 0);
  run_until(loop, N, 10000);
  for (int i = 0; i < N; i++) {
    assert_int_equal(r[i].calls, 1);
    assert_int_equal(r[i].status, 0);
    assert_int_equal(r[i].http_status, 200);
    assert_string_equal(r[i].body, "late conns=1");
  }
  m5_http_client_free(c);
  m5_loop_free(loop);
  server_stop(s);
}

/* A request the server answers too late fails alone; the others on the connection succeed. */
static void test_timeout_spares_others(void **state) {
  (void)state;
  server_t *s = server_start();
  m5_loop_t *loop = m5_loop_new();
  m5_http_client_t *c = client_new(loop, g_ca, 1, 500, 0, 0);
  char slow[128], fast[128];
  url(slow, sizeof slow, s, "/late?3000");
  url(fast, sizeof fast, s, "/late?50");
  result_t rs = {0}, rf[5];
  memset(rf, 0, sizeof rf);
  g_done = 0;
  uint64_t t0 = m5_clock_mono_ms();
  assert_int_equal(m5_http_client_post_json(c, slow, JSON, strlen(JSON), on_result, &rs), M5_OK);
  for (int i = 0; i < 5; i++)
    assert_int_equal(m5_http_client_post_json(c, fast, JSON, strlen(JSON), on_result, &rf[i]),
                     M5_OK);
  run_until(loop, 6, 5000);
  uint64_t took = m5_clock_mono_ms() - t0;
  assert_int_equal(rs.calls, 1);
  assert_int_equal(rs.status, M5_ETIMEDOUT);
  assert_true(took >= 450 && took < 2500);
  for (int i = 0; i < 5; i++) {
    assert_int_equal(rf[i].calls, 1);
    assert_int_equal(rf[i].status, 0);
    assert_string_equal(rf[i].body, "late conns=1");
  }
  /* The connection survives the cancelled stream. */
  result_t again = {0};
  assert_int_equal(m5_http_client_post_json(c, fast, JSON, strlen(JSON), on_result, &again), M5_OK);
  run_until(loop, 7, 5000);
  assert_int_equal(again.status, 0);
  assert_string_equal(again.body, "late conns=1");
  m5_http_client_free(c);
  m5_loop_free(loop);
  server_stop(s);
}

static uint16_t unused_port(void) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  assert_true(fd >= 0);
  struct sockaddr_in a = {.sin_family = AF_INET};
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
  socklen_t len = sizeof a;
  assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
  close(fd); /* bound but never listening: connections to it are refused */
  return ntohs(a.sin_port);
}

static int one_request(m5_http_client_t *c, m5_loop_t *loop, const char *u, result_t *r) {
  memset(r, 0, sizeof *r);
  g_done = 0;
  int rc = m5_http_client_post_json(c, u, JSON, strlen(JSON), on_result, r);
  if (rc != M5_OK) return rc;
  assert_int_equal(r->calls, 0);
  run_until(loop, 1, 8000);
  assert_int_equal(r->calls, 1);
  return r->status;
}

static void test_transport_failures(void **state) {
  (void)state;
  server_t *s = server_start();
  m5_loop_t *loop = m5_loop_new();
  result_t r;
  char u[128];

  m5_http_client_t *c = client_new(loop, g_ca, 1, 0, 0, 0);
  snprintf(u, sizeof u, "https://127.0.0.1:%u/echo", (unsigned)unused_port());
  assert_int_equal(one_request(c, loop, u, &r), M5_EIO); /* refused */
  m5_http_client_free(c);

  url(u, sizeof u, s, "/echo");
  c = client_new(loop, g_ca2, 1, 0, 0, 0);
  assert_int_equal(one_request(c, loop, u, &r), M5_EIO); /* server not signed by our CA */
  m5_http_client_free(c);

  c = client_new(loop, g_ca, 0, 0, 0, 0);
  assert_int_equal(one_request(c, loop, u, &r), M5_EIO); /* no client certificate */
  m5_http_client_free(c);

  c = client_new(loop, g_ca, 1, 0, 0, 1000);
  url(u, sizeof u, s, "/big?1000");
  assert_int_equal(one_request(c, loop, u, &r), 0); /* exactly the limit */
  assert_int_equal(r.len, 1000);
  url(u, sizeof u, s, "/big?20000");
  assert_int_equal(one_request(c, loop, u, &r), M5_ERANGE);
  m5_http_client_free(c);

  /* Not https: refused by the client, never sent in clear. */
  c = client_new(loop, g_ca, 1, 0, 0, 0);
  snprintf(u, sizeof u, "http://127.0.0.1:%u/echo", (unsigned)s->h.port);
  assert_int_equal(one_request(c, loop, u, &r), M5_EIO);
  m5_http_client_free(c);

  m5_loop_free(loop);
  server_stop(s);
}

static void test_inflight_bound(void **state) {
  (void)state;
  server_t *s = server_start();
  m5_loop_t *loop = m5_loop_new();
  m5_http_client_t *c = client_new(loop, g_ca, 1, 0, 2, 0);
  char u[128];
  url(u, sizeof u, s, "/late?50");
  result_t r[3];
  memset(r, 0, sizeof r);
  g_done = 0;
  assert_int_equal(m5_http_client_post_json(c, u, JSON, strlen(JSON), on_result, &r[0]), M5_OK);
  assert_int_equal(m5_http_client_post_json(c, u, JSON, strlen(JSON), on_result, &r[1]), M5_OK);
  assert_int_equal(m5_http_client_post_json(c, u, JSON, strlen(JSON), on_result, &r[2]), M5_EFULL);
  run_until(loop, 2, 5000);
  assert_int_equal(r[0].status, 0);
  assert_int_equal(r[1].status, 0);
  assert_int_equal(r[2].calls, 0);
  /* Room again once they are done. */
  assert_int_equal(m5_http_client_post_json(c, u, JSON, strlen(JSON), on_result, &r[2]), M5_OK);
  run_until(loop, 3, 5000);
  assert_int_equal(r[2].status, 0);
  m5_http_client_free(c);
  m5_loop_free(loop);
  server_stop(s);
}

/* Freeing the client completes what is pending with M5_ECLOSED, once, before it returns. */
static void test_free_with_pending(void **state) {
  (void)state;
  server_t *s = server_start();
  m5_loop_t *loop = m5_loop_new();
  m5_http_client_t *c = client_new(loop, g_ca, 1, 0, 0, 0);
  char u[128];
  url(u, sizeof u, s, "/late?3000");
  result_t r[3];
  memset(r, 0, sizeof r);
  g_done = 0;
  for (int i = 0; i < 3; i++)
    assert_int_equal(m5_http_client_post_json(c, u, JSON, strlen(JSON), on_result, &r[i]), M5_OK);
  run_until(loop, 3, 300); /* the requests are on the wire now */
  assert_int_equal(g_done, 0);
  m5_http_client_free(c);
  for (int i = 0; i < 3; i++) {
    assert_int_equal(r[i].calls, 1);
    assert_int_equal(r[i].status, M5_ECLOSED);
  }
  run_until(loop, 100, 200); /* nothing more arrives */
  assert_int_equal(g_done, 3);
  m5_loop_free(loop);
  server_stop(s);
}

/* peer_uri: a request goes out only to a server whose certificate carries the SAN URI asked
 * for, also on a connection an earlier request (with another or no peer_uri) opened; a
 * refused one fails with M5_EPERM and never reaches the server. */
static void test_peer_uri(void **state) {
  (void)state;
  server_t *s = server_start_with(g_gw_crt, g_gw_key);
  m5_loop_t *loop = m5_loop_new();
  m5_http_client_t *c = client_new(loop, g_ca, 1, 0, 0, 0);
  char u[128];
  url(u, sizeof u, s, "/echo");
  m5_http_req_opts_t gw1 = {.peer_uri = "urn:msgin5g:gw:gw1"};
  m5_http_req_opts_t gw2 = {.peer_uri = "urn:msgin5g:gw:gw2"};
  m5_http_req_opts_t prefix = {.peer_uri = "urn:msgin5g:gw:gw"};
  result_t r[5] = {{0}};
  g_done = 0;
  assert_int_equal(m5_http_client_request(c, u, &gw1, JSON, strlen(JSON), on_result, &r[0]), M5_OK);
  run_until(loop, 1, 5000);
  assert_int_equal(r[0].status, 0);
  assert_int_equal(r[0].http_status, 200);
  /* the connection gw1's request opened is there; gw2's and a prefix's are refused on it */
  assert_int_equal(m5_http_client_request(c, u, &gw2, JSON, strlen(JSON), on_result, &r[1]), M5_OK);
  run_until(loop, 2, 5000);
  assert_int_equal(r[1].calls, 1);
  assert_int_equal(r[1].status, M5_EPERM);
  assert_int_equal(m5_http_client_request(c, u, &prefix, JSON, strlen(JSON), on_result, &r[2]),
                   M5_OK);
  run_until(loop, 3, 5000);
  assert_int_equal(r[2].status, M5_EPERM);
  assert_int_equal(atomic_load(&s->requests), 1);
  /* without peer_uri, and with the right one again: sent */
  assert_int_equal(m5_http_client_post_json(c, u, JSON, strlen(JSON), on_result, &r[3]), M5_OK);
  assert_int_equal(m5_http_client_request(c, u, &gw1, JSON, strlen(JSON), on_result, &r[4]), M5_OK);
  run_until(loop, 5, 5000);
  assert_int_equal(r[3].http_status, 200);
  assert_int_equal(r[4].http_status, 200);
  assert_int_equal(atomic_load(&s->requests), 3);
  m5_http_client_free(c);
  server_stop(s);

  /* a server of the same CA for the same host without any SAN URI */
  s = server_start();
  c = client_new(loop, g_ca, 1, 0, 0, 0);
  url(u, sizeof u, s, "/echo");
  result_t n = {0};
  g_done = 0;
  assert_int_equal(m5_http_client_request(c, u, &gw1, JSON, strlen(JSON), on_result, &n), M5_OK);
  run_until(loop, 1, 5000);
  assert_int_equal(n.status, M5_EPERM);
  assert_int_equal(atomic_load(&s->requests), 0);
  m5_http_client_free(c);
  m5_loop_free(loop);
  server_stop(s);
}

/* ---- PKI ---- */

static int setup_pki(void **state) {
  (void)state;
  tu_process_init();
  if (tu_mkdtemp(g_dir, sizeof g_dir, "m5httpc") || tu_pki_ca(g_dir, "ca", "TestCA") ||
      tu_pki_ca(g_dir, "ca2", "OtherCA") ||
      tu_pki_leaf(g_dir, "ca", "srv", "localhost", TU_EXT_SERVER) ||
      tu_pki_leaf(g_dir, "ca", "gw", "gw1",
                  "subjectAltName=URI:urn:msgin5g:gw:gw1,DNS:localhost\n"
                  "extendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n") ||
      tu_pki_leaf(g_dir, "ca", "cli", "localhost",
                  "subjectAltName=DNS:localhost\nextendedKeyUsage=clientAuth\n"
                  "basicConstraints=CA:FALSE\n"))
    return -1;
  snprintf(g_ca, sizeof g_ca, "%s/ca.crt", g_dir);
  snprintf(g_ca2, sizeof g_ca2, "%s/ca2.crt", g_dir);
  snprintf(g_srv_crt, sizeof g_srv_crt, "%s/srv.crt", g_dir);
  snprintf(g_srv_key, sizeof g_srv_key, "%s/srv.key", g_dir);
  snprintf(g_cli_crt, sizeof g_cli_crt, "%s/cli.crt", g_dir);
  snprintf(g_cli_key, sizeof g_cli_key, "%s/cli.key", g_dir);
  snprintf(g_gw_crt, sizeof g_gw_crt, "%s/gw.crt", g_dir);
  snprintf(g_gw_key, sizeof g_gw_key, "%s/gw.key", g_dir);
  return 0;
}

static int teardown_pki(void **state) {
  (void)state;
  return tu_rmtree(g_dir);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_post_200_with_body),
      cmocka_unit_test(test_concurrent_on_one_connection),
      cmocka_unit_test(test_request_method_type_bearer),
      cmocka_unit_test(test_timeout_spares_others),
      cmocka_unit_test(test_transport_failures),
      cmocka_unit_test(test_inflight_bound),
      cmocka_unit_test(test_free_with_pending),
      cmocka_unit_test(test_peer_uri),
  };
  return cmocka_run_group_tests(tests, setup_pki, teardown_pki);
}
