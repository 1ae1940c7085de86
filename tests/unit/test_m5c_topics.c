/* Unit tests for libm5c's Messaging Topic exchanges (m5c_subscribe / m5c_unsubscribe, TS 23.554
 * cl. 8.8.1, docs/protocol.md §4) against a scripted MSGin5G server: a thread that accepts
 * coaps+tcp (TLS 1.3 keyed by AKMA with a K_AF derived from a known K_AKMA, RFC 8323 framing
 * through our CoAP codec), answers REG, records every other request body and answers it from a
 * script. Covered: the TOPICSUB / TOPICUNSUB bodies on the wire; a 2.04 with the answer body
 * (topics and the expiry the server set) and a 2.04 without body; 4.00 (a server without
 * topics), 4.03 (NOT_AUTHORIZED) and a malformed 2.04 mapped to the documented statuses with
 * the server's diagnostic; bad topic lists refused before anything is sent. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "client/m5c.h"
#include "coap/coap.h"
#include "core/buf.h"
#include "core/err.h"
#include "crypto/akma.h"
#include "tls/akma.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_SCRIPT 8

typedef struct {
  uint8_t code;
  const char *body; /* NULL: none */
} answer_t;

typedef struct {
  int lfd;
  uint16_t port;
  SSL_CTX *ctx;
  pthread_t th;
  uint8_t kakma[M5_AKMA_KEY_LEN];
  pthread_mutex_t mu;
  answer_t script[MAX_SCRIPT];
  size_t n_script, next;
  char got[MAX_SCRIPT][1024]; /* bodies of the requests other than REG, in order */
  size_t n_got;
  int accepted;
  int conn; /* the connection being served, -1 if none (teardown ends it after a failure) */
} fake_t;

static int ssl_write_all(SSL *ssl, const uint8_t *p, size_t n) {
  while (n) {
    int w = SSL_write(ssl, p, (int)n);
    if (w <= 0) return -1;
    p += w;
    n -= (size_t)w;
  }
  return 0;
}

static void send_coap(SSL *ssl, uint8_t code, const m5_coap_msg_t *req, const char *body) {
  m5_coap_msg_t r;
  memset(&r, 0, sizeof r);
  r.code = code;
  if (req) {
    r.token_len = req->token_len;
    memcpy(r.token, req->token, req->token_len);
  }
  uint8_t fmt[4]; /* the option value is borrowed until the encoding */
  if (body) {
    uint16_t n = m5_coap_uint_encode(M5_COAP_FORMAT_JSON, fmt);
    if (code < M5_COAP_BAD_REQUEST) m5_coap_msg_add_opt(&r, M5_COAP_OPT_CONTENT_FORMAT, fmt, n);
    r.payload = (const uint8_t *)body;
    r.payload_len = strlen(body);
  }
  m5_buf_t out;
  m5_buf_init(&out, 0);
  if (m5_coap_encode_tcp(&r, &out) == 0) ssl_write_all(ssl, out.data, out.len);
  m5_buf_free(&out);
}

/* One request: REG is answered 2.01, anything else recorded and answered from the script. */
static void handle(fake_t *f, SSL *ssl, const m5_coap_msg_t *m) {
  if (m->code == M5_COAP_CSM || m->code == M5_COAP_PONG) return;
  if (m->code == M5_COAP_PING) {
    send_coap(ssl, M5_COAP_PONG, m, NULL);
    return;
  }
  if (m->code != M5_COAP_POST) return;
  char body[1024];
  snprintf(body, sizeof body, "%.*s", (int)(m->payload_len < 1023 ? m->payload_len : 1023),
           m->payload ? (const char *)m->payload : "");
  if (strstr(body, "\"msgType\":\"REG\"")) {
    send_coap(ssl, M5_COAP_CREATED, m,
              "{\"msgType\":\"REG\",\"ueSvcId\":\"ue1\",\"expiry\":\"2030-01-01T00:00:00Z\"}");
    return;
  }
  pthread_mutex_lock(&f->mu);
  if (f->n_got < MAX_SCRIPT) snprintf(f->got[f->n_got++], sizeof f->got[0], "%s", body);
  answer_t a = f->next < f->n_script ? f->script[f->next++]
                                     : (answer_t){M5_COAP_INTERNAL_ERROR, "no script left"};
  pthread_mutex_unlock(&f->mu);
  send_coap(ssl, a.code, m, a.body);
}

static void serve(fake_t *f, int fd) {
  SSL *ssl = SSL_new(f->ctx);
  if (!ssl || m5_akma_ssl_attach(ssl) || !SSL_set_fd(ssl, fd)) goto out;
  for (;;) {
    int r = SSL_accept(ssl);
    if (r == 1) break;
    if (SSL_get_error(ssl, r) != SSL_ERROR_WANT_CLIENT_HELLO_CB) goto out;
    m5_akma_want_t want;
    m5_akma_key_t key;
    memset(&key, 0, sizeof key);
    if (m5_akma_ssl_wanted(ssl, &want) || m5_akma_kaf(f->kakma, want.fqdn, want.ua, key.kaf))
      goto out;
    key.expiry = (int64_t)time(NULL) + 3600;
    snprintf(key.supi, sizeof key.supi, "001010000000001");
    m5_akma_ssl_set_key(ssl, &key);
  }
  send_coap(ssl, M5_COAP_CSM, NULL, NULL);
  m5_buf_t in;
  m5_buf_init(&in, 1 << 20);
  uint8_t chunk[4096];
  for (;;) {
    int n = SSL_read(ssl, chunk, sizeof chunk);
    if (n <= 0 || m5_buf_append(&in, chunk, (size_t)n)) break;
    for (;;) {
      m5_coap_msg_t m;
      size_t used = 0, need = 0;
      int rc = m5_coap_parse_tcp(in.data, in.len, 1 << 20, &m, &used, &need);
      if (rc == M5_EAGAIN) break;
      if (rc) goto done;
      handle(f, ssl, &m);
      m5_buf_consume(&in, used);
    }
  }
done:
  m5_buf_free(&in);
out:
  if (ssl) SSL_free(ssl);
  close(fd);
}

static void *fake_main(void *arg) {
  fake_t *f = arg;
  for (;;) {
    int fd = accept(f->lfd, NULL, NULL);
    if (fd < 0) return NULL; /* shut down */
    pthread_mutex_lock(&f->mu);
    f->accepted++;
    f->conn = fd;
    pthread_mutex_unlock(&f->mu);
    serve(f, fd);
    pthread_mutex_lock(&f->mu);
    f->conn = -1;
    pthread_mutex_unlock(&f->mu);
  }
}

static int setup(void **state) {
  fake_t *f = calloc(1, sizeof *f);
  if (!f) return -1;
  pthread_mutex_init(&f->mu, NULL);
  f->conn = -1;
  for (size_t i = 0; i < M5_AKMA_KEY_LEN; i++)
    f->kakma[i] = (uint8_t)(0x40 + i);
  static const char *const names[] = {"localhost"};
  m5_akma_server_opts_t so = {.fqdns = names, .n_fqdns = 1};
  char err[256];
  f->ctx = m5_akma_server_ctx_new(0, &so, err, sizeof err);
  struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t sl = sizeof sa;
  f->lfd = socket(AF_INET, SOCK_STREAM, 0);
  if (!f->ctx || f->lfd < 0 || bind(f->lfd, (struct sockaddr *)&sa, sizeof sa) ||
      listen(f->lfd, 4) || getsockname(f->lfd, (struct sockaddr *)&sa, &sl) ||
      pthread_create(&f->th, NULL, fake_main, f)) {
    fprintf(stderr, "fake server: %s\n", f->ctx ? "socket" : err);
    return -1;
  }
  f->port = ntohs(sa.sin_port);
  *state = f;
  return 0;
}

static int teardown(void **state) {
  fake_t *f = *state;
  pthread_mutex_lock(&f->mu);
  if (f->conn >= 0) shutdown(f->conn, SHUT_RDWR); /* a failed test left its client open */
  pthread_mutex_unlock(&f->mu);
  shutdown(f->lfd, SHUT_RDWR);
  close(f->lfd);
  pthread_join(f->th, NULL);
  SSL_CTX_free(f->ctx);
  pthread_mutex_destroy(&f->mu);
  free(f);
  return 0;
}

static m5c_t *client(fake_t *f) {
  m5_akma_cred_t cred;
  memset(&cred, 0, sizeof cred);
  memcpy(cred.kakma, f->kakma, sizeof cred.kakma);
  snprintf(cred.akid, sizeof cred.akid, "0000.dGVzdA@5gc.mnc01.mcc001.3gppnetwork.org");
  snprintf(cred.fqdn, sizeof cred.fqdn, "localhost");
  m5c_opts_t o = {.host = "127.0.0.1",
                  .port = f->port,
                  .transport = M5C_TLS,
                  .cred = &cred,
                  .ue_svc_id = "ue1",
                  .timeout_ms = 5000};
  char err[256];
  m5c_t *c = m5c_new(&o, err, sizeof err);
  if (!c) print_error("m5c_new: %s\n", err);
  assert_non_null(c);
  return c;
}

static void script(fake_t *f, uint8_t code, const char *body) {
  pthread_mutex_lock(&f->mu);
  f->script[f->n_script++] = (answer_t){code, body};
  pthread_mutex_unlock(&f->mu);
}

static void expect_got(fake_t *f, size_t i, const char *want) {
  pthread_mutex_lock(&f->mu);
  int ok = f->n_got > i && !strcmp(f->got[i], want);
  if (!ok) print_error("request %zu: got '%s', want '%s'\n", i, f->n_got > i ? f->got[i] : "", want);
  pthread_mutex_unlock(&f->mu);
  assert_true(ok);
}

static void test_answers(void **state) {
  fake_t *f = *state;
  m5c_t *c = client(f);
  const char *const two[] = {"meters.east", "alarm:fire_1"};
  const char *const one[] = {"meters.east"};
  m5_msg_t r;

  /* 2.04 with the answer body: topics and the expiry the server set. */
  script(f, M5_COAP_CHANGED,
         "{\"msgType\":\"TOPICSUB\",\"msgTopics\":[\"meters.east\",\"alarm:fire_1\"],"
         "\"expiry\":\"2029-01-01T00:00:00Z\"}");
  assert_int_equal(m5c_subscribe(c, two, 2, 1893456000 /* 2030-01-01 */, &r), M5_OK);
  expect_got(f, 0,
             "{\"msgType\":\"TOPICSUB\",\"msgTopics\":[\"meters.east\",\"alarm:fire_1\"],"
             "\"expiry\":\"2030-01-01T00:00:00Z\"}");
  assert_int_equal(r.type, M5_MSG_TOPICSUB);
  assert_int_equal(r.n_topics, 2);
  assert_string_equal(r.topics[0], "meters.east");
  assert_string_equal(r.topics[1], "alarm:fire_1");
  assert_int_equal(r.expiry, 1861920000); /* 2029-01-01 */
  m5_msg_free(&r);

  /* No expiry asked: none sent. A 2.04 without body: done. */
  script(f, M5_COAP_CHANGED, NULL);
  assert_int_equal(m5c_subscribe(c, one, 1, 0, &r), M5_OK);
  expect_got(f, 1, "{\"msgType\":\"TOPICSUB\",\"msgTopics\":[\"meters.east\"]}");
  assert_int_equal(r.type, M5_MSG_TOPICSUB);
  assert_int_equal(r.n_topics, 0);
  m5_msg_free(&r);

  script(f, M5_COAP_CHANGED, "{\"msgType\":\"TOPICUNSUB\",\"msgTopics\":[\"meters.east\"]}");
  assert_int_equal(m5c_unsubscribe(c, one, 1, &r), M5_OK);
  expect_got(f, 2, "{\"msgType\":\"TOPICUNSUB\",\"msgTopics\":[\"meters.east\"]}");
  assert_int_equal(r.type, M5_MSG_TOPICUNSUB);
  assert_int_equal(r.n_topics, 1);
  m5_msg_free(&r);

  /* Refusals: the documented statuses, the CoAP code and the server's diagnostic. */
  script(f, M5_COAP_BAD_REQUEST, "msgType TOPICSUB: not supported by this server yet");
  assert_int_equal(m5c_subscribe(c, one, 1, 0, &r), M5_EINVAL);
  assert_int_equal(m5c_last_code(c), M5_COAP_BAD_REQUEST);
  assert_non_null(strstr(m5c_last_error(c), "not supported by this server yet"));
  assert_null(r.topics);
  script(f, M5_COAP_FORBIDDEN, "msgTopics[1]: NOT_AUTHORIZED");
  assert_int_equal(m5c_subscribe(c, two, 2, 0, &r), M5_EPERM);
  assert_int_equal(m5c_last_code(c), M5_COAP_FORBIDDEN);
  assert_non_null(strstr(m5c_last_error(c), "msgTopics[1]: NOT_AUTHORIZED"));

  /* A 2.04 whose body is not the request's type is a protocol error, not a success. */
  script(f, M5_COAP_CHANGED, "{\"msgType\":\"MSGRESP\",\"msgId\":\"x\"}");
  assert_int_equal(m5c_unsubscribe(c, one, 1, &r), M5_EPROTO);
  assert_non_null(strstr(m5c_last_error(c), "malformed"));
  assert_int_equal(r.n_topics, 0);
  script(f, M5_COAP_CHANGED, "{\"msgType\":\"TOPICSUB\",\"msgTopics\":[\"a b\"]}");
  assert_int_equal(m5c_subscribe(c, one, 1, 0, &r), M5_EPROTO);
  assert_non_null(strstr(m5c_last_error(c), "msgTopics[0]"));
  m5c_free(c);
}

/* A bad list is refused before the session is even opened. */
static void test_refused_locally(void **state) {
  fake_t *f = *state;
  m5c_t *c = client(f);
  m5_msg_t r;
  const char *const bad[] = {"ok", "a b"};
  const char *const dup[] = {"t", "t"};
  const char *const empty[] = {""};
  const char *many[M5_MSG_TOPICS_MAX + 1];
  char names[M5_MSG_TOPICS_MAX + 1][8];
  for (size_t i = 0; i <= M5_MSG_TOPICS_MAX; i++) {
    snprintf(names[i], sizeof names[i], "t%zu", i);
    many[i] = names[i];
  }
  assert_int_equal(m5c_subscribe(c, bad, 2, 0, &r), M5_EINVAL);
  assert_non_null(strstr(m5c_last_error(c), "topic 2"));
  assert_int_equal(m5c_unsubscribe(c, dup, 2, &r), M5_EINVAL);
  assert_non_null(strstr(m5c_last_error(c), "'t' given twice"));
  assert_int_equal(m5c_subscribe(c, empty, 1, 0, &r), M5_EINVAL);
  assert_int_equal(m5c_subscribe(c, many, 0, 0, &r), M5_EINVAL);
  assert_int_equal(m5c_subscribe(c, many, M5_MSG_TOPICS_MAX + 1, 0, &r), M5_EINVAL);
  assert_int_equal(m5c_subscribe(c, many, 1, -1, &r), M5_EINVAL);
  pthread_mutex_lock(&f->mu);
  int accepted = f->accepted;
  pthread_mutex_unlock(&f->mu);
  assert_int_equal(accepted, 0);
  m5c_free(c);
}

int main(void) {
  signal(SIGPIPE, SIG_IGN); /* a side that closes must not end the test */
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_refused_locally, setup, teardown),
      cmocka_unit_test_setup_teardown(test_answers, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
