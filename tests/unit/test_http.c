/* Unit tests for the HTTP server (server.h) and the TLS profile (tls.h), driven by real
 * clients on loopback: libcurl for HTTP/2 over TLS 1.3 with a client certificate, h2c with
 * prior knowledge and HTTP/1.1 keep-alive; a raw OpenSSL client for what curl cannot do
 * (TLS 1.1, no ALPN); raw sockets for pipelining. The server runs on an m5_loop in its own
 * thread; the certificates are made by the openssl CLI in a scratch directory. */
#include "core/err.h"
#include "core/loop.h"
#include "http/server.h"
#include "tls/tls.h"

#include "testutil.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <errno.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#define MAX_BODY 1024u

static char g_dir[64];
static char g_ca[128], g_srv_crt[128], g_srv_key[128], g_cli_crt[128], g_cli_key[128];

static atomic_int g_late_started, g_late_done, g_late_rc, g_handled;

/* Waits up to ms for *v to reach want. */
static int wait_for(atomic_int *v, int want, unsigned ms) {
  uint64_t end = tu_now_ms() + ms;
  while (atomic_load(v) < want) {
    if (tu_now_ms() > end) return 0;
    tu_sleep_ms(5);
  }
  return 1;
}

/* ---- the handler under test ---- */

typedef struct {
  m5_http_exchange_t *ex;
} later_t;

static void later_cb(m5_loop_t *loop, void *arg) {
  (void)loop;
  later_t *l = arg;
  atomic_store(&g_late_rc, m5_http_respond(l->ex, 200, "text/plain", "late", 4));
  atomic_fetch_add(&g_late_done, 1);
  free(l);
}

static void handler(m5_http_exchange_t *ex, const m5_http_request_t *req, void *arg) {
  (void)arg;
  atomic_fetch_add(&g_handled, 1);
  if (strcmp(req->path, "/status/404") == 0) {
    static const char nf[] = "{\"status\":404,\"title\":\"Not Found\"}";
    m5_http_respond(ex, 404, "application/problem+json", nf, sizeof nf - 1);
    return;
  }
  if (strcmp(req->path, "/big") == 0) {
    static char big[32768];
    memset(big, 'b', sizeof big);
    m5_http_respond(ex, 200, "text/plain", big, sizeof big);
    return;
  }
  if (strcmp(req->path, "/later") == 0) {
    unsigned ms = req->query ? (unsigned)atoi(req->query) : 200;
    later_t *l = malloc(sizeof *l);
    assert_non_null(l);
    l->ex = ex;
    assert_true(m5_loop_timer_add(m5_http_exchange_loop(ex), ms, later_cb, l) != 0);
    atomic_fetch_add(&g_late_started, 1);
    return;
  }
  char san[64] = "-";
  if (req->ssl && m5_tls_peer_san_uri_suffix(req->ssl, "urn:msgin5g:as:", san, sizeof san) != 0)
    snprintf(san, sizeof san, "none");
  char out[2048];
  int n = snprintf(out, sizeof out,
                   "v=%d method=%s path=%s query=%s ctype=%s auth=%s san=%s dns=%d uri=%d "
                   "len=%zu body=%s",
                   req->version, req->method, req->path, req->query ? req->query : "-",
                   req->content_type ? req->content_type : "-",
                   req->authorization ? req->authorization : "-", san,
                   m5_tls_peer_has_san_dns(req->ssl, "AF.Example.COM"),
                   m5_tls_peer_has_san_uri(req->ssl, "urn:msgin5g:as:as-0001"), req->body_len,
                   (const char *)req->body);
  m5_http_header_t h[] = {{"content-type", "text/plain"}, {"x-echo", "1"}};
  m5_http_respond_headers(ex, 200, h, 2, out, (size_t)n < sizeof out ? (size_t)n : sizeof out - 1);
}

/* ---- a server on its own loop thread ---- */

typedef struct server {
  tu_http_server_t h;
  SSL_CTX *tls;
  atomic_int drained;
  uint64_t drain_ms;
} server_t;

static void drained_cb(void *arg) {
  server_t *s = arg;
  atomic_store(&s->drained, 1);
}

/* On the server's loop thread. */
static void server_drain(void *arg) {
  server_t *s = arg;
  m5_http_server_drain(s->h.srv, (uint32_t)s->drain_ms, drained_cb, s);
}

static server_t *server_start(SSL_CTX *tls, int http1, int h2c, uint32_t idle_ms) {
  server_t *s = calloc(1, sizeof *s);
  assert_non_null(s);
  s->tls = tls;
  m5_http_server_opts_t o = {.host = "127.0.0.1",
                             .tls = tls,
                             .allow_http1 = http1,
                             .allow_h2c = h2c,
                             .max_body = MAX_BODY,
                             .max_streams = 16,
                             .idle_timeout_ms = idle_ms,
                             .handler = handler};
  char err[256];
  if (tu_http_server_start(&s->h, &o, err, sizeof err) != 0) fail_msg("server: %s", err);
  return s;
}

static void server_stop(server_t *s) {
  tu_http_server_stop(&s->h);
  SSL_CTX_free(s->tls);
  free(s);
}

static SSL_CTX *server_tls(int verify_peer) {
  m5_tls_opts_t t = {.cert_file = g_srv_crt,
                     .key_file = g_srv_key,
                     .ca_file = g_ca,
                     .verify_peer = verify_peer,
                     .alpn = "h2"};
  char err[512];
  SSL_CTX *ctx = m5_tls_server_ctx_new(&t, err, sizeof err);
  if (!ctx) fail_msg("tls: %s", err);
  return ctx;
}

/* ---- clients ---- */

typedef struct {
  CURLcode rc;
  long status;
  long version;
  long connects;
  char body[4096];
  size_t len;
  char err[CURL_ERROR_SIZE];
} resp_t;

static size_t on_body(char *p, size_t sz, size_t n, void *ud) {
  resp_t *r = ud;
  size_t k = sz * n;
  size_t room = sizeof r->body - 1 - r->len;
  memcpy(r->body + r->len, p, k < room ? k : room);
  r->len += k < room ? k : room;
  r->body[r->len] = '\0';
  return k;
}

enum { C_H2TLS, C_H1TLS, C_H2C, C_H1 };

static CURL *client(server_t *s, int kind, int with_cert, struct curl_slist **resolve) {
  CURL *h = curl_easy_init();
  assert_non_null(h);
  curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, 5000L);
  curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, 3000L);
  if (kind == C_H2TLS || kind == C_H1TLS) {
    char r[64];
    snprintf(r, sizeof r, "localhost:%u:127.0.0.1", (unsigned)s->h.port);
    *resolve = curl_slist_append(NULL, r);
    curl_easy_setopt(h, CURLOPT_RESOLVE, *resolve);
    curl_easy_setopt(h, CURLOPT_CAINFO, g_ca);
    curl_easy_setopt(h, CURLOPT_SSLVERSION, (long)CURL_SSLVERSION_TLSv1_3);
    if (with_cert) {
      curl_easy_setopt(h, CURLOPT_SSLCERT, g_cli_crt);
      curl_easy_setopt(h, CURLOPT_SSLKEY, g_cli_key);
    }
  }
  long v = kind == C_H2TLS ? CURL_HTTP_VERSION_2TLS
           : kind == C_H2C ? CURL_HTTP_VERSION_2_PRIOR_KNOWLEDGE
                           : CURL_HTTP_VERSION_1_1;
  curl_easy_setopt(h, CURLOPT_HTTP_VERSION, v);
  return h;
}

static void perform(CURL *h, server_t *s, int kind, const char *path, const char *post,
                    size_t postlen, resp_t *r) {
  char url[256];
  snprintf(url, sizeof url, "%s://%s:%u%s", kind <= C_H1TLS ? "https" : "http",
           kind <= C_H1TLS ? "localhost" : "127.0.0.1", (unsigned)s->h.port, path);
  memset(r, 0, sizeof *r);
  curl_easy_setopt(h, CURLOPT_URL, url);
  curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
  curl_easy_setopt(h, CURLOPT_WRITEDATA, r);
  curl_easy_setopt(h, CURLOPT_ERRORBUFFER, r->err);
  if (post) {
    curl_easy_setopt(h, CURLOPT_POSTFIELDS, post);
    curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, (long)postlen);
  } else {
    curl_easy_setopt(h, CURLOPT_HTTPGET, 1L);
  }
  r->rc = curl_easy_perform(h);
  curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &r->status);
  curl_easy_getinfo(h, CURLINFO_HTTP_VERSION, &r->version);
  curl_easy_getinfo(h, CURLINFO_NUM_CONNECTS, &r->connects);
}

/* One request on a fresh handle. */
static void request(server_t *s, int kind, int with_cert, const char *path, const char *post,
                    resp_t *r) {
  struct curl_slist *res = NULL;
  CURL *h = client(s, kind, with_cert, &res);
  perform(h, s, kind, path, post, post ? strlen(post) : 0, r);
  curl_easy_cleanup(h);
  curl_slist_free_all(res);
}

static int tcp_connect(uint16_t port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  assert_true(fd >= 0);
  struct timeval tv = {3, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

/* Reads until EOF (or the 3 s receive timeout); returns the byte count. */
static size_t read_all(int fd, SSL *ssl, char *out, size_t outlen) {
  size_t len = 0;
  while (len < outlen - 1) {
    ssize_t n = ssl ? SSL_read(ssl, out + len, (int)(outlen - 1 - len))
                    : recv(fd, out + len, outlen - 1 - len, 0);
    if (n <= 0) break;
    len += (size_t)n;
  }
  out[len] = '\0';
  return len;
}

/* A raw OpenSSL client: what curl cannot be told to do. Returns the handshake result; on
 * failure *reason is the OpenSSL reason code. With send, writes it and reads the answer. */
static int raw_tls(uint16_t port, int version, const unsigned char *alpn, unsigned alpn_len,
                   const char *send, char *out, size_t outlen, int *reason) {
  SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
  assert_non_null(ctx);
  SSL_CTX_set_security_level(ctx, 0); /* so that the client really offers TLS 1.1 */
  SSL_CTX_set_min_proto_version(ctx, version);
  SSL_CTX_set_max_proto_version(ctx, version);
  assert_int_equal(SSL_CTX_use_certificate_chain_file(ctx, g_cli_crt), 1);
  assert_int_equal(SSL_CTX_use_PrivateKey_file(ctx, g_cli_key, SSL_FILETYPE_PEM), 1);
  if (alpn) assert_int_equal(SSL_CTX_set_alpn_protos(ctx, alpn, alpn_len), 0);
  int fd = tcp_connect(port);
  assert_true(fd >= 0);
  SSL *ssl = SSL_new(ctx);
  SSL_set_fd(ssl, fd);
  ERR_clear_error();
  int ok = SSL_connect(ssl) == 1;
  *reason = ok ? 0 : ERR_GET_REASON(ERR_peek_error());
  if (ok && send) {
    SSL_write(ssl, send, (int)strlen(send));
    read_all(fd, ssl, out, outlen);
  }
  ERR_clear_error();
  SSL_free(ssl);
  close(fd);
  SSL_CTX_free(ctx);
  return ok;
}

/* ---- PKI ---- */

static int setup_pki(void **state) {
  (void)state;
  tu_process_init();
  if (tu_mkdtemp(g_dir, sizeof g_dir, "m5http") || tu_pki_ca(g_dir, "ca", "TestCA") ||
      tu_pki_leaf(g_dir, "ca", "srv", "localhost", TU_EXT_SERVER) ||
      tu_pki_leaf(g_dir, "ca", "cli", "as-0001",
                  "subjectAltName=URI:urn:msgin5g:as:as-0001,DNS:af.example.com\n"
                  "extendedKeyUsage=clientAuth\nbasicConstraints=CA:FALSE\n"))
    return -1;
  snprintf(g_ca, sizeof g_ca, "%s/ca.crt", g_dir);
  snprintf(g_srv_crt, sizeof g_srv_crt, "%s/srv.crt", g_dir);
  snprintf(g_srv_key, sizeof g_srv_key, "%s/srv.key", g_dir);
  snprintf(g_cli_crt, sizeof g_cli_crt, "%s/cli.crt", g_dir);
  snprintf(g_cli_key, sizeof g_cli_key, "%s/cli.key", g_dir);
  return curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK ? 0 : -1;
}

static int teardown_pki(void **state) {
  (void)state;
  curl_global_cleanup();
  return tu_rmtree(g_dir);
}

/* ---- tests ---- */

static void test_tls_ctx_errors_name_the_file(void **state) {
  (void)state;
  char err[512];
  m5_tls_opts_t t = {.cert_file = "./var/pki/nope.crt", .key_file = g_srv_key};
  assert_null(m5_tls_server_ctx_new(&t, err, sizeof err));
  assert_non_null(strstr(err, "cannot load certificate ./var/pki/nope.crt: No such file"));
  assert_non_null(strstr(err, "m5ctl pki init"));
  t.cert_file = g_srv_crt;
  t.key_file = g_cli_key; /* exists, but belongs to another certificate */
  assert_null(m5_tls_server_ctx_new(&t, err, sizeof err));
  assert_non_null(strstr(err, "does not match"));
  t.key_file = g_srv_key;
  t.alpn = "h2,";
  assert_null(m5_tls_server_ctx_new(&t, err, sizeof err));
  assert_non_null(strstr(err, "ALPN"));
}

static void test_h2_tls13_mtls(void **state) {
  (void)state;
  server_t *s = server_start(server_tls(1), 0, 0, 0);
  resp_t r;
  request(s, C_H2TLS, 1, "/echo?x=1", "hello", &r);
  assert_int_equal(r.rc, CURLE_OK);
  assert_int_equal(r.status, 200);
  assert_int_equal(r.version, CURL_HTTP_VERSION_2_0);
  assert_non_null(strstr(r.body, "v=2 method=POST path=/echo query=x=1"));
  assert_non_null(strstr(r.body, "ctype=application/x-www-form-urlencoded"));
  assert_non_null(strstr(r.body, "san=as-0001 dns=1 uri=1 len=5 body=hello"));

  /* Status from the handler passes through, with its body. */
  request(s, C_H2TLS, 1, "/status/404", NULL, &r);
  assert_int_equal(r.rc, CURLE_OK);
  assert_int_equal(r.status, 404);
  assert_non_null(strstr(r.body, "\"title\":\"Not Found\""));

  /* No client certificate: the handshake fails (alert 116 in TLS 1.3), nothing served. */
  request(s, C_H2TLS, 0, "/echo", NULL, &r);
  assert_int_not_equal(r.rc, CURLE_OK);
  assert_int_equal(r.status, 0);

  /* And the server still serves the next client. */
  request(s, C_H2TLS, 1, "/echo", NULL, &r);
  assert_int_equal(r.status, 200);
  server_stop(s);
}

static void test_tls_alpn_and_versions(void **state) {
  (void)state;
  server_t *s = server_start(server_tls(1), 0, 0, 0);
  resp_t r;
  /* A client offering only http/1.1 gets no_application_protocol (RFC 7301 §3.2). */
  request(s, C_H1TLS, 1, "/echo", NULL, &r);
  assert_int_not_equal(r.rc, CURLE_OK);
  assert_non_null(strstr(r.err, "no application protocol"));
  int reason = 0;
  static const unsigned char h11[] = "\x08http/1.1";
  assert_false(raw_tls(s->h.port, TLS1_2_VERSION, h11, sizeof h11 - 1, NULL, NULL, 0, &reason));
  assert_int_equal(reason, SSL_R_TLSV1_ALERT_NO_APPLICATION_PROTOCOL);

  /* TLS 1.1 is refused with protocol_version. */
  assert_false(raw_tls(s->h.port, TLS1_1_VERSION, NULL, 0, NULL, NULL, 0, &reason));
  assert_int_equal(reason, SSL_R_TLSV1_ALERT_PROTOCOL_VERSION);

  /* TLS 1.2 with the certificate is fine; HTTP/1.1 without ALPN gets a precise 505. */
  char out[1024];
  assert_true(raw_tls(s->h.port, TLS1_2_VERSION, NULL, 0, "GET / HTTP/1.1\r\nHost: x\r\n\r\n", out,
                      sizeof out, &reason));
  assert_non_null(strstr(out, "HTTP/1.1 505 HTTP Version Not Supported\r\n"));
  assert_non_null(strstr(out, "HTTP/2 only"));

  /* The server kept serving throughout. */
  request(s, C_H2TLS, 1, "/echo", NULL, &r);
  assert_int_equal(r.rc, CURLE_OK);
  assert_int_equal(r.status, 200);
  server_stop(s);
}

static void test_body_limit(void **state) {
  (void)state;
  char big[MAX_BODY + 2];
  memset(big, 'a', sizeof big - 1);
  big[sizeof big - 1] = '\0';
  char fits[MAX_BODY + 1];
  memset(fits, 'b', sizeof fits - 1);
  fits[sizeof fits - 1] = '\0';

  server_t *s = server_start(server_tls(1), 0, 0, 0);
  resp_t r;
  request(s, C_H2TLS, 1, "/echo", big, &r);
  assert_int_equal(r.rc, CURLE_OK);
  assert_int_equal(r.status, 413);
  assert_string_equal(r.body, "{\"status\":413,\"title\":\"Payload Too Large\"}");
  request(s, C_H2TLS, 1, "/echo", fits, &r);
  assert_int_equal(r.status, 200);
  assert_non_null(strstr(r.body, "len=1024"));
  server_stop(s);

  s = server_start(NULL, 1, 1, 0);
  request(s, C_H1, 0, "/echo", big, &r);
  assert_int_equal(r.rc, CURLE_OK);
  assert_int_equal(r.status, 413);
  assert_string_equal(r.body, "{\"status\":413,\"title\":\"Payload Too Large\"}");
  request(s, C_H2C, 0, "/echo", big, &r);
  assert_int_equal(r.status, 413);
  request(s, C_H1, 0, "/echo", fits, &r);
  assert_int_equal(r.status, 200);
  server_stop(s);
}

static void test_cleartext_h2c_and_http1(void **state) {
  (void)state;
  server_t *s = server_start(NULL, 1, 1, 0);
  resp_t r;
  request(s, C_H2C, 0, "/a?b=c", "x=1", &r);
  assert_int_equal(r.rc, CURLE_OK);
  assert_int_equal(r.version, CURL_HTTP_VERSION_2_0);
  assert_non_null(strstr(r.body, "v=2 method=POST path=/a query=b=c"));
  assert_non_null(strstr(r.body, "san=- dns=0 uri=0"));

  /* HTTP/1.1 keep-alive: the second request reuses the connection. */
  struct curl_slist *hdrs = curl_slist_append(NULL, "Authorization: Bearer t0k");
  CURL *h = client(s, C_H1, 0, NULL);
  curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
  perform(h, s, C_H1, "/one", NULL, 0, &r);
  assert_int_equal(r.status, 200);
  assert_int_equal(r.version, CURL_HTTP_VERSION_1_1);
  assert_int_equal(r.connects, 1);
  assert_non_null(strstr(r.body, "v=1 method=GET path=/one query=- ctype=- auth=Bearer t0k"));
  perform(h, s, C_H1, "/status/404", NULL, 0, &r);
  assert_int_equal(r.status, 404);
  assert_int_equal(r.connects, 0);
  /* A chunked request body arrives whole. */
  struct curl_slist *te = curl_slist_append(NULL, "Transfer-Encoding: chunked");
  curl_easy_setopt(h, CURLOPT_HTTPHEADER, te);
  perform(h, s, C_H1, "/chunked", "abcdef", 6, &r);
  assert_int_equal(r.status, 200);
  assert_int_equal(r.connects, 0);
  assert_non_null(strstr(r.body, "len=6 body=abcdef"));
  curl_easy_cleanup(h);
  curl_slist_free_all(hdrs);
  curl_slist_free_all(te);

  /* Pipelined requests are answered in order; Connection: close is honoured. */
  int fd = tcp_connect(s->h.port);
  assert_true(fd >= 0);
  const char *two = "GET /p1 HTTP/1.1\r\nHost: x\r\n\r\n"
                    "GET /p2 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
  assert_int_equal(send(fd, two, strlen(two), 0), (ssize_t)strlen(two));
  char out[4096];
  read_all(fd, NULL, out, sizeof out); /* returns at EOF: the server closed */
  close(fd);
  char *p1 = strstr(out, "path=/p1"), *p2 = strstr(out, "path=/p2");
  assert_non_null(p1);
  assert_non_null(p2);
  assert_true(p1 < p2);
  assert_non_null(strstr(out, "connection: close"));

  /* Garbage gets 400 and a close, not a crash. */
  fd = tcp_connect(s->h.port);
  assert_true(fd >= 0);
  const char *bad = "GET / HTTP/1.1\r\nHo st\x01: x\r\n\r\n";
  assert_int_equal(send(fd, bad, strlen(bad), 0), (ssize_t)strlen(bad));
  read_all(fd, NULL, out, sizeof out);
  close(fd);
  assert_non_null(strstr(out, "HTTP/1.1 400 Bad Request"));
  server_stop(s);
}

static void test_h2_only_cleartext_refuses_http1(void **state) {
  (void)state;
  server_t *s = server_start(NULL, 0, 1, 0);
  resp_t r;
  request(s, C_H1, 0, "/echo", NULL, &r);
  assert_int_equal(r.status, 505);
  request(s, C_H2C, 0, "/echo", NULL, &r);
  assert_int_equal(r.status, 200);
  server_stop(s);
}

static void test_deferred_responses(void **state) {
  (void)state;
  server_t *s = server_start(server_tls(1), 0, 0, 0);
  resp_t r;
  /* Answered later, from a timer, while the client waits. */
  atomic_store(&g_late_done, 0);
  request(s, C_H2TLS, 1, "/later?100", NULL, &r);
  assert_int_equal(r.status, 200);
  assert_string_equal(r.body, "late");
  assert_int_equal(atomic_load(&g_late_rc), M5_OK);
  server_stop(s);

  /* The client gives up first: the late answer is dropped and freed (ASan watches). */
  for (int kind = C_H2TLS; kind <= C_H1; kind++) {
    if (kind == C_H1TLS) continue;
    s = kind == C_H2TLS ? server_start(server_tls(1), 0, 0, 0) : server_start(NULL, 1, 1, 0);
    atomic_store(&g_late_done, 0);
    atomic_store(&g_late_rc, 1);
    struct curl_slist *res = NULL;
    CURL *h = client(s, kind, 1, &res);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, 150L);
    perform(h, s, kind, "/later?400", NULL, 0, &r);
    curl_easy_cleanup(h); /* closes the connection */
    curl_slist_free_all(res);
    assert_int_equal(r.rc, CURLE_OPERATION_TIMEDOUT);
    assert_true(wait_for(&g_late_done, 1, 3000));
    assert_int_equal(atomic_load(&g_late_rc), M5_ECLOSED);
    server_stop(s);
  }

  /* The server is freed while a handler still holds an exchange. */
  s = server_start(NULL, 1, 1, 0);
  atomic_store(&g_late_started, 0);
  atomic_store(&g_late_done, 0);
  int fd = tcp_connect(s->h.port);
  const char *req = "GET /later?300 HTTP/1.1\r\nHost: x\r\n\r\n";
  assert_int_equal(send(fd, req, strlen(req), 0), (ssize_t)strlen(req));
  assert_true(wait_for(&g_late_started, 1, 3000));
  /* Free the server on its loop, which keeps running until the timer fired. */
  tu_http_server_close(&s->h);
  assert_null(s->h.srv);
  assert_true(wait_for(&g_late_done, 1, 3000));
  assert_int_equal(atomic_load(&g_late_rc), M5_ECLOSED);
  close(fd);
  server_stop(s);
}

typedef struct {
  server_t *s;
  resp_t r;
} bg_t;

static void *bg_request(void *arg) {
  bg_t *b = arg;
  request(b->s, C_H2C, 0, "/later?500", NULL, &b->r);
  return NULL;
}

static void test_drain(void **state) {
  (void)state;
  server_t *s = server_start(NULL, 1, 1, 0);
  /* An idle HTTP/1.1 keep-alive connection. */
  int idle = tcp_connect(s->h.port);
  const char *req = "GET /x HTTP/1.1\r\nHost: x\r\n\r\n";
  assert_int_equal(send(idle, req, strlen(req), 0), (ssize_t)strlen(req));
  char out[2048];
  assert_true(recv(idle, out, sizeof out, 0) > 0);

  /* A request in flight on HTTP/2. */
  atomic_store(&g_late_started, 0);
  bg_t b = {.s = s};
  pthread_t th;
  assert_int_equal(pthread_create(&th, NULL, bg_request, &b), 0);
  assert_true(wait_for(&g_late_started, 1, 3000));

  s->drain_ms = 4000;
  uint64_t t0 = tu_now_ms();
  tu_loop_thread_call(&s->h.lt, server_drain, s);
  /* The idle connection is closed at once. */
  assert_int_equal(recv(idle, out, sizeof out, 0), 0);
  close(idle);
  assert_true(wait_for(&s->drained, 1, 5000));
  uint64_t took = tu_now_ms() - t0;
  pthread_join(th, NULL);
  /* The request in flight was answered, and the drain ended with it, well before the
   * timeout. */
  assert_int_equal(b.r.rc, CURLE_OK);
  assert_int_equal(b.r.status, 200);
  assert_string_equal(b.r.body, "late");
  assert_true(took < 3000);
  /* No longer listening. */
  assert_int_equal(tcp_connect(s->h.port), -1);
  server_stop(s);
}

static void test_idle_timeout(void **state) {
  (void)state;
  server_t *s = server_start(NULL, 1, 1, 300);
  int fd = tcp_connect(s->h.port);
  assert_true(fd >= 0);
  uint64_t t0 = tu_now_ms();
  char c;
  assert_int_equal(recv(fd, &c, 1, 0), 0); /* closed by the server, not by our 3 s timeout */
  uint64_t took = tu_now_ms() - t0;
  assert_true(took >= 250 && took < 2000);
  close(fd);
  server_stop(s);
}

/* ---- peers misbehaving on purpose ---- */

static void put_frame(uint8_t *out, size_t *off, uint8_t type, uint8_t flags, uint32_t sid,
                      const void *payload, size_t len) {
  uint8_t *p = out + *off;
  p[0] = (uint8_t)(len >> 16), p[1] = (uint8_t)(len >> 8), p[2] = (uint8_t)len;
  p[3] = type, p[4] = flags;
  p[5] = (uint8_t)(sid >> 24), p[6] = (uint8_t)(sid >> 16), p[7] = (uint8_t)(sid >> 8);
  p[8] = (uint8_t)sid;
  if (len) memcpy(p + 9, payload, len);
  *off += 9 + len;
}

/* An HTTP/2 request HEADERS frame with END_STREAM, HPACK literals only. */
static void put_request(uint8_t *out, size_t *off, uint32_t sid, const char *path) {
  uint8_t hb[128];
  size_t n = 0, plen = strlen(path);
  hb[n++] = 0x82;                             /* :method GET (static index 2) */
  hb[n++] = 0x86;                             /* :scheme http (static index 6) */
  hb[n++] = 0x01, hb[n++] = 1, hb[n++] = 'x'; /* :authority x, not indexed */
  hb[n++] = 0x04, hb[n++] = (uint8_t)plen;    /* :path, not indexed */
  memcpy(hb + n, path, plen);
  n += plen;
  put_frame(out, off, 0x1, 0x5 /* END_STREAM | END_HEADERS */, sid, hb, n);
}

static int recv_exact(int fd, uint8_t *buf, size_t n) {
  for (size_t got = 0; got < n;) {
    ssize_t r = recv(fd, buf + got, n - got, 0);
    if (r <= 0) return -1;
    got += (size_t)r;
  }
  return 0;
}

/* Reads frames until HEADERS on stream sid; counts RST_STREAM(REFUSED_STREAM) on the way. */
static int h2_wait_headers(int fd, uint32_t sid, int *refused) {
  uint8_t hd[9], payload[16384];
  for (;;) {
    if (recv_exact(fd, hd, 9) != 0) return -1;
    size_t len = (size_t)hd[0] << 16 | (size_t)hd[1] << 8 | hd[2];
    uint32_t id = ((uint32_t)hd[5] << 24 | (uint32_t)hd[6] << 16 | (uint32_t)hd[7] << 8 | hd[8]) &
                  0x7fffffffu;
    if (len > sizeof payload || recv_exact(fd, payload, len) != 0) return -1;
    if (hd[3] == 0x3 && len == 4 && payload[3] == 0x7) (*refused)++;
    if (hd[3] == 0x1 && id == sid) return 0;
  }
}

/* "Rapid reset" (CVE-2023-44487): requests reset as soon as they are sent must not start
 * handler work beyond the per-connection stream limit (16 here), and the connection serves
 * again once the handlers have answered. */
static void test_h2_rapid_reset_bounded(void **state) {
  (void)state;
  server_t *s = server_start(NULL, 1, 1, 0);
  atomic_store(&g_late_started, 0);
  atomic_store(&g_late_done, 0);
  int fd = tcp_connect(s->h.port);
  assert_true(fd >= 0);
  static uint8_t out[8192];
  size_t off = 0;
  memcpy(out, "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 24);
  off = 24;
  put_frame(out, &off, 0x4, 0, 0, NULL, 0); /* SETTINGS */
  const uint8_t cancel[4] = {0, 0, 0, 0x8};
  for (uint32_t i = 0; i < 40; i++) {
    put_request(out, &off, 2 * i + 1, "/later?300");
    put_frame(out, &off, 0x3, 0, 2 * i + 1, cancel, sizeof cancel); /* RST_STREAM CANCEL */
  }
  assert_int_equal(send(fd, out, off, 0), (ssize_t)off);
  assert_true(wait_for(&g_late_started, 16, 3000));
  tu_sleep_ms(100);
  assert_int_equal(atomic_load(&g_late_started), 16);
  /* The reset streams' answers are dropped... */
  assert_true(wait_for(&g_late_done, 16, 3000));
  assert_int_equal(atomic_load(&g_late_rc), M5_ECLOSED);
  /* ...and the connection takes requests again. */
  off = 0;
  put_request(out, &off, 81, "/echo");
  assert_int_equal(send(fd, out, off, 0), (ssize_t)off);
  int refused = 0;
  assert_int_equal(h2_wait_headers(fd, 81, &refused), 0);
  assert_int_equal(refused, 24);
  close(fd);
  server_stop(s);
}

/* Pipelined HTTP/1.1 requests from a peer that does not read: answers are produced only as
 * the socket takes them (not input size x answer size in memory), and all arrive in the end. */
static void test_http1_pipelining_bounded(void **state) {
  (void)state;
  server_t *s = server_start(NULL, 1, 1, 0);
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  assert_true(fd >= 0);
  int small = 4096;
  setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof small); /* little kernel buffering */
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(s->h.port)};
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof a), 0);
  atomic_store(&g_handled, 0);
  /* 600 requests of 31 bytes, each answered with 32 KiB: 19 MB if all were answered at once. */
  static const char req[] = "GET /big HTTP/1.1\r\nHost: x\r\n\r\n";
  enum { N = 600 };
  static char all[N * (sizeof req - 1)];
  for (size_t i = 0; i < N; i++)
    memcpy(all + i * (sizeof req - 1), req, sizeof req - 1);
  assert_int_equal(send(fd, all, sizeof all, 0), (ssize_t)sizeof all);
  tu_sleep_ms(300);
  /* 64 KiB queued by us plus what the kernel's socket buffers hold (a few MB at most). */
  int handled = atomic_load(&g_handled);
  assert_true(handled > 0 && handled < 300);

  struct timeval tv = {3, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  static char buf[65536];
  size_t total = 0, each = 0, head = 0;
  while (each == 0 || total < N * each) {
    ssize_t r = recv(fd, buf + head, sizeof buf - 1 - head, 0);
    if (r <= 0) break;
    total += (size_t)r;
    if (each) continue;
    head += (size_t)r; /* the first answer's head: content-length says how long each is */
    buf[head] = '\0';
    const char *end = strstr(buf, "\r\n\r\n"), *cl = strstr(buf, "content-length: ");
    if (end && cl)
      each = (size_t)(end + 4 - buf) + (size_t)atoi(cl + 16);
    else if (head == sizeof buf - 1)
      break;
    else
      continue;
    head = 0;
  }
  assert_true(each > 32768);
  assert_int_equal(total, N * each); /* every request answered, nothing lost */
  assert_int_equal(atomic_load(&g_handled), N);
  close(fd);
  server_stop(s);
}

/* A peer resets its connection while a handler works and input is paused (64 KiB buffered
 * behind the request): the connection is closed at once, not left for epoll to report
 * EPOLLHUP in a busy loop until the handler answers. */
static void test_reset_while_input_paused(void **state) {
  (void)state;
  server_t *s = server_start(NULL, 1, 1, 0);
  atomic_store(&g_late_started, 0);
  atomic_store(&g_late_done, 0);
  atomic_store(&g_late_rc, 1);
  int fd = tcp_connect(s->h.port);
  assert_true(fd >= 0);
  const char *req = "GET /later?700 HTTP/1.1\r\nHost: x\r\n\r\n";
  assert_int_equal(send(fd, req, strlen(req), 0), (ssize_t)strlen(req));
  assert_true(wait_for(&g_late_started, 1, 3000));
  static char filler[70000];
  memset(filler, 'A', sizeof filler);
  assert_int_equal(send(fd, filler, sizeof filler, 0), (ssize_t)sizeof filler);
  tu_sleep_ms(100);
  struct linger lg = {1, 0};
  setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
  struct timespec c0, c1;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &c0);
  close(fd); /* RST */
  assert_true(wait_for(&g_late_done, 1, 3000));
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &c1);
  long cpu_ms = (c1.tv_sec - c0.tv_sec) * 1000L + (c1.tv_nsec - c0.tv_nsec) / 1000000L;
  assert_true(cpu_ms < 250); /* ~600 ms of waiting: a spin would use all of it */
  assert_int_equal(atomic_load(&g_late_rc), M5_ECLOSED);
  server_stop(s);
}

/* An HTTP/1.1 client that shuts down its sending side after its requests still gets every
 * answer, and then the server closes. (One that closes while a handler works has given up:
 * test_deferred_responses.) */
static void test_http1_half_close_answered(void **state) {
  (void)state;
  server_t *s = server_start(NULL, 1, 1, 0);
  char out[4096];
  int fd = tcp_connect(s->h.port);
  assert_true(fd >= 0);
  const char *two = "GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\n\r\n";
  assert_int_equal(send(fd, two, strlen(two), 0), (ssize_t)strlen(two));
  shutdown(fd, SHUT_WR);
  uint64_t t0 = tu_now_ms();
  read_all(fd, NULL, out, sizeof out); /* returns at EOF: the server closed */
  close(fd);
  assert_true(tu_now_ms() - t0 < 2000);
  assert_non_null(strstr(out, "path=/a"));
  assert_non_null(strstr(out, "path=/b"));
  server_stop(s);
}

/* Sends chunk every every_ms until the server closes; the elapsed ms, or -1 after max_ms.
 * A lingering server has already sent its FIN, so there only a failing send (the server's
 * RST) says it closed. */
static long trickle_until_closed(int fd, const char *chunk, unsigned every_ms, unsigned max_ms) {
  uint64_t t0 = tu_now_ms();
  int eof = 0;
  while (tu_now_ms() - t0 < max_ms) {
    char b[4096];
    ssize_t r = eof ? -1 : recv(fd, b, sizeof b, MSG_DONTWAIT);
    if (r > 0) continue;
    if (r == 0) eof = 1;
    if (r < 0 && !eof && errno != EAGAIN && errno != EWOULDBLOCK) break;
    if (send(fd, chunk, strlen(chunk), MSG_NOSIGNAL) < 0) break;
    tu_sleep_ms(every_ms);
  }
  uint64_t took = tu_now_ms() - t0;
  return took >= max_ms ? -1 : (long)took;
}

/* Slowloris: bytes trickled into a request head, or into a connection we are closing, do
 * not keep it open past the idle timeout (300 ms here) or the 2 s linger. */
static void test_trickling_peers_are_closed(void **state) {
  (void)state;
  server_t *s = server_start(NULL, 1, 1, 300);
  int fd = tcp_connect(s->h.port);
  assert_true(fd >= 0);
  assert_int_equal(send(fd, "GET / HTTP/1.1\r\n", 16, 0), 16);
  long took = trickle_until_closed(fd, "X: y\r\n", 50, 2500); /* keeps sending after a FIN */
  close(fd);
  assert_true(took >= 0 && took < 1500);
  server_stop(s);

  s = server_start(NULL, 0, 1, 300); /* HTTP/1.1 gets 505, then the connection lingers */
  fd = tcp_connect(s->h.port);
  assert_true(fd >= 0);
  const char *req = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
  assert_int_equal(send(fd, req, strlen(req), 0), (ssize_t)strlen(req));
  took = trickle_until_closed(fd, "x", 100, 4000);
  close(fd);
  assert_true(took >= 0 && took < 3000);
  server_stop(s);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_tls_ctx_errors_name_the_file),
      cmocka_unit_test(test_h2_tls13_mtls),
      cmocka_unit_test(test_tls_alpn_and_versions),
      cmocka_unit_test(test_body_limit),
      cmocka_unit_test(test_cleartext_h2c_and_http1),
      cmocka_unit_test(test_h2_only_cleartext_refuses_http1),
      cmocka_unit_test(test_deferred_responses),
      cmocka_unit_test(test_drain),
      cmocka_unit_test(test_idle_timeout),
      cmocka_unit_test(test_h2_rapid_reset_bounded),
      cmocka_unit_test(test_http1_pipelining_bounded),
      cmocka_unit_test(test_reset_while_input_paused),
      cmocka_unit_test(test_trickling_peers_are_closed),
      cmocka_unit_test(test_http1_half_close_answered),
  };
  return cmocka_run_group_tests(tests, setup_pki, teardown_pki);
}
