/* Unit tests for libm5c's channel over TLS (src/client/chan.c): its write discipline. The
 * server is played here on the same m5_loop (a loopback socket, our AKMA server context with
 * K_AF derived in the test), and it reads the client's bytes record by record, so the test
 * sees which CoAP messages shared a TLS record:
 *  - the messages the endpoint sends during one loop iteration leave in one record (one
 *    SSL_write at the end of the iteration), not one record each;
 *  - m5c_chan_free() called before the end of that iteration (here from a timer, which runs
 *    before the deferred calls) still lets them leave, ahead of close_notify. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "client/chan.h"
#include "coap/coap.h"
#include "core/err.h"
#include "core/loop.h"
#include "crypto/akma.h"
#include "tls/akma.h"

#define FQDN "localhost"
#define SUPI "001010123456789"
#define N_REQ 5

typedef struct {
  m5_loop_t *loop;
  /* server */
  SSL_CTX *sctx;
  SSL *s;
  BIO *s_in, *s_out;
  int lfd, fd, hs_done, closed, close_notify, push_request;
  uint8_t kakma[M5_AKMA_KEY_LEN];
  char akid[M5_AKMA_AKID_MAX + 1];
  uint8_t rec[16384 + 512];
  size_t rec_n;
  uint8_t plain[65536];
  size_t plain_n;
  int posts, max_posts_in_record, changed;
  /* client */
  SSL_CTX *cctx;
  m5c_chan_t *ch;
  int up, down, free_in_timer;
  uint64_t deadline;
} T_t;

static T_t T;

static void srv_flush(void) {
  uint8_t buf[16384];
  int r;
  while ((r = BIO_read(T.s_out, buf, sizeof buf)) > 0) {
    size_t off = 0;
    while (off < (size_t)r) {
      ssize_t w = send(T.fd, buf + off, (size_t)r - off, MSG_NOSIGNAL);
      if (w < 0 && errno == EAGAIN) continue; /* a few hundred bytes: the buffer takes them */
      assert_true(w > 0);
      off += (size_t)w;
    }
  }
}

/* CoAP over TCP frames (RFC 8323 §3.2) at the front of T.plain: counts POSTs and 2.04s. */
static int srv_frames(void) {
  int posts = 0;
  size_t off = 0;
  while (T.plain_n - off >= 2) {
    const uint8_t *p = T.plain + off;
    size_t len = p[0] >> 4, tkl = p[0] & 15,
           ext = len == 13   ? 1
                 : len == 14 ? 2
                 : len == 15 ? 4
                             : 0;
    if (T.plain_n - off < 1 + ext + 1) break;
    if (len == 13) len = 13 + p[1];
    if (len == 14) len = 269 + ((size_t)p[1] << 8 | p[2]);
    assert_true(len < 65536);
    size_t total = 1 + ext + 1 + tkl + len;
    if (T.plain_n - off < total) break;
    uint8_t code = p[1 + ext];
    if (code == M5_COAP_POST) posts++;
    if (code == M5_COAP_CHANGED) T.changed++;
    off += total;
  }
  memmove(T.plain, T.plain + off, T.plain_n - off);
  T.plain_n -= off;
  return posts;
}

static void srv_handshake(void) {
  for (;;) {
    int r = SSL_do_handshake(T.s);
    if (r == 1) {
      T.hs_done = 1;
      /* our CSM (7.01, no options) and, for the free test, a request of ours (POST, token ab) */
      static const uint8_t csm[] = {0x00, 0xe1}, req[] = {0x01, M5_COAP_POST, 0xab};
      assert_int_equal(SSL_write(T.s, csm, sizeof csm), (int)sizeof csm);
      if (T.push_request) assert_int_equal(SSL_write(T.s, req, sizeof req), (int)sizeof req);
      break;
    }
    int e = SSL_get_error(T.s, r);
    if (e == SSL_ERROR_WANT_CLIENT_HELLO_CB) { /* the AAnF's K_AF, derived here */
      m5_akma_want_t want;
      m5_akma_key_t key;
      memset(&key, 0, sizeof key);
      assert_int_equal(m5_akma_ssl_wanted(T.s, &want), M5_OK);
      assert_int_equal(m5_akma_kaf(T.kakma, want.fqdn, want.ua, key.kaf), M5_OK);
      key.expiry = (int64_t)time(NULL) + 3600;
      snprintf(key.supi, sizeof key.supi, "%s", SUPI);
      assert_int_equal(m5_akma_ssl_set_key(T.s, &key), M5_OK);
      continue;
    }
    assert_int_equal(e, SSL_ERROR_WANT_READ);
    break;
  }
  srv_flush();
}

/* One whole record from the client: into the server's SSL, and what it carried counted. */
static void srv_record(void) {
  assert_int_equal(BIO_write(T.s_in, T.rec, (int)T.rec_n), (int)T.rec_n);
  if (!T.hs_done) {
    srv_handshake();
    return;
  }
  for (;;) {
    int r = SSL_read(T.s, T.plain + T.plain_n, (int)(sizeof T.plain - T.plain_n));
    if (r > 0) {
      T.plain_n += (size_t)r;
      continue;
    }
    if (SSL_get_error(T.s, r) == SSL_ERROR_ZERO_RETURN) T.close_notify = 1;
    break;
  }
  int posts = srv_frames();
  T.posts += posts;
  if (posts > T.max_posts_in_record) T.max_posts_in_record = posts;
}

static void srv_io(m5_loop_t *loop, int fd, uint32_t events, void *arg) {
  (void)events;
  (void)arg;
  uint8_t buf[65536];
  ssize_t r = recv(fd, buf, sizeof buf, 0);
  if (r <= 0) {
    if (r < 0 && errno == EAGAIN) return;
    T.closed = 1;
    m5_loop_del_fd(loop, fd);
    return;
  }
  for (size_t i = 0; i < (size_t)r; i++) { /* TLS records: 5-byte header, then its length */
    assert_true(T.rec_n < sizeof T.rec);
    T.rec[T.rec_n++] = buf[i];
    if (T.rec_n >= 5 && T.rec_n == 5 + ((size_t)T.rec[3] << 8 | T.rec[4])) {
      srv_record();
      T.rec_n = 0;
    }
  }
}

static BIO *mem_bio(void) {
  BIO *b = BIO_new(BIO_s_mem());
  assert_non_null(b);
  BIO_set_mem_eof_return(b, -1);
  return b;
}

static void srv_accept(m5_loop_t *loop, int fd, uint32_t events, void *arg) {
  (void)events;
  (void)arg;
  T.fd = accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
  assert_true(T.fd >= 0);
  T.s = SSL_new(T.sctx);
  assert_non_null(T.s);
  T.s_in = mem_bio();
  T.s_out = mem_bio();
  SSL_set_bio(T.s, T.s_in, T.s_out);
  SSL_set_accept_state(T.s);
  assert_int_equal(m5_akma_ssl_attach(T.s), M5_OK);
  m5_loop_del_fd(loop, fd);
  assert_int_equal(m5_loop_add_fd(loop, T.fd, M5_EV_READ, srv_io, NULL), M5_OK);
}

/* ---- the client side ---- */

static void resp_cb(void *arg, int status, const m5_coap_msg_t *resp, const uint8_t *body,
                    size_t len) {
  (void)arg;
  (void)status;
  (void)resp;
  (void)body;
  (void)len;
}

static void free_fire(m5_loop_t *loop, void *arg) {
  (void)arg;
  m5c_chan_free(T.ch);
  T.ch = NULL;
  (void)loop;
}

static void on_up(m5c_chan_t *ch, m5_coap_ep_t *ep, void *arg) {
  (void)ch;
  (void)arg;
  T.up = 1;
  if (T.push_request) return;
  /* queued until the server's CSM arrives, then sent in the iteration that reads it */
  for (int i = 0; i < N_REQ; i++)
    assert_int_equal(m5_coap_ep_request(ep, M5_COAP_POST, "msgin5g", M5_COAP_FORMAT_JSON,
                                        (const uint8_t *)"{}", 2, resp_cb, NULL),
                     M5_OK);
}

static void on_request(m5_coap_ep_t *ep, m5_coap_req_t *req, void *arg) {
  (void)ep;
  (void)arg;
  m5_coap_ep_respond(req, M5_COAP_CHANGED, M5_COAP_FORMAT_JSON, (const uint8_t *)"{}", 2, NULL, 0);
  /* the owner closes the channel in this iteration, before the deferred write ran */
  assert_true(m5_loop_timer_add(T.loop, 0, free_fire, NULL) != 0);
}

static void on_down(m5c_chan_t *ch, int status, const char *why, void *arg) {
  (void)ch;
  (void)status;
  (void)arg;
  fprintf(stderr, "channel down: %s\n", why);
  T.down = 1;
}

static void watchdog(m5_loop_t *loop, void *arg) {
  (void)arg;
  int done = T.push_request ? T.closed : T.posts == N_REQ;
  if (done || T.down || m5_clock_mono_ms() > T.deadline) {
    m5_loop_stop(loop);
    return;
  }
  m5_loop_timer_add(loop, 1, watchdog, NULL);
}

static void run(int push_request) {
  memset(&T, 0, sizeof T);
  T.push_request = push_request;
  T.fd = -1;
  T.loop = m5_loop_new();
  assert_non_null(T.loop);
  char err[256];
  static const char *const names[] = {FQDN};
  m5_akma_server_opts_t so = {names, 1, 0, 0};
  T.sctx = m5_akma_server_ctx_new(0, &so, err, sizeof err);
  T.cctx = m5_akma_client_ctx_new(0, 0, err, sizeof err);
  assert_non_null(T.sctx);
  assert_non_null(T.cctx);

  uint8_t kausf[M5_AKMA_KEY_LEN], atid[M5_AKMA_KEY_LEN];
  char realm[128];
  for (int i = 0; i < M5_AKMA_KEY_LEN; i++)
    kausf[i] = (uint8_t)(0xa0 + i);
  assert_int_equal(m5_akma_kakma(kausf, SUPI, T.kakma), M5_OK);
  assert_int_equal(m5_akma_atid(kausf, SUPI, atid), M5_OK);
  assert_int_equal(m5_akma_realm_from_supi(SUPI, 2, realm, sizeof realm), M5_OK);
  assert_int_equal(m5_akma_akid(M5_AKMA_DEFAULT_RID, atid, realm, T.akid, sizeof T.akid), M5_OK);

  T.lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  struct sockaddr_in sa = {.sin_family = AF_INET};
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t sl = sizeof sa;
  assert_int_equal(bind(T.lfd, (struct sockaddr *)&sa, sizeof sa), 0);
  assert_int_equal(listen(T.lfd, 4), 0);
  assert_int_equal(getsockname(T.lfd, (struct sockaddr *)&sa, &sl), 0);
  assert_int_equal(m5_loop_add_fd(T.loop, T.lfd, M5_EV_READ, srv_accept, NULL), M5_OK);

  m5_akma_cred_t cred;
  memset(&cred, 0, sizeof cred);
  memcpy(cred.kakma, T.kakma, sizeof cred.kakma);
  snprintf(cred.akid, sizeof cred.akid, "%s", T.akid);
  snprintf(cred.fqdn, sizeof cred.fqdn, "%s", FQDN);
  m5c_opts_t o;
  memset(&o, 0, sizeof o);
  o.host = "127.0.0.1";
  o.port = ntohs(sa.sin_port);
  o.transport = M5C_TLS;
  static const m5c_chan_cbs_t cbs = {on_up, on_request, on_down};
  T.ch = m5c_chan_open(T.loop, T.cctx, &o, &cred, &cbs, NULL, err, sizeof err);
  assert_non_null(T.ch);
  T.deadline = m5_clock_mono_ms() + 10000;
  m5_loop_timer_add(T.loop, 1, watchdog, NULL);
  m5_loop_run(T.loop);
  assert_true(T.up);
}

static void cleanup(void) {
  m5c_chan_free(T.ch);
  if (T.fd >= 0) close(T.fd);
  close(T.lfd);
  SSL_free(T.s);
  SSL_CTX_free(T.sctx);
  SSL_CTX_free(T.cctx);
  m5_loop_free(T.loop);
  ERR_clear_error();
}

static void test_one_record_per_iteration(void **state) {
  (void)state;
  run(0);
  assert_false(T.down);
  assert_int_equal(T.posts, N_REQ);
  /* all of them in one TLS record: one SSL_write at the end of the iteration */
  assert_int_equal(T.max_posts_in_record, N_REQ);
  cleanup();
}

static void test_free_flushes_pending(void **state) {
  (void)state;
  run(1);
  /* the 2.04 queued in the iteration that freed the channel reached the server, then the
   * close_notify */
  assert_int_equal(T.changed, 1);
  assert_true(T.close_notify);
  cleanup();
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_one_record_per_iteration),
      cmocka_unit_test(test_free_flushes_pending),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
