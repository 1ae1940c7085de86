/* Unit tests for the MSGin5G-1 transports (ue_transport.h): a DTLS and a TLS listener on a
 * loop thread with hooks that echo, keyed by the real m5-aanf (provisioned with m5ctl), and
 * clients made with OpenSSL (m5_akma_client_*) plus our CoAP endpoint over loopback sockets.
 * Covered: handshake and request/response over DTLS 1.2, TLS 1.3 and TLS 1.2; ALPN; unknown
 * A-KID and foreign SNI refused with the right alert while the listener keeps serving; peers
 * vanishing mid-handshake cleaned up by the handshake timeout; a ClientHello/garbage flood
 * creating no state; max_handshakes; K_AF expiry closing the session; closes by the peer, by
 * the server logic and by ue_listener_free. */
#include "coap/endpoint.h"
#include "core/err.h"
#include "core/log.h"
#include "core/loop.h"
#include "crypto/akma.h"
#include "crypto/codec.h"
#include "server/ue/akma_keys.h"
#include "server/ue/ue_conn.h"
#include "tls/akma.h"

#include "testutil.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>

#include <cmocka.h>

#define SUPI "001010123456789"
#define KAUSF "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"
#define OTHER_KAUSF "1f1e1d1c1b1a191817161514131211100f0e0d0c0b0a09080706050403020100"
#define MAX_HS 8
#define HS_TIMEOUT_MS 1500u
#define SHORT_LIFETIME_S 2
#define ALERT(a) (SSL_AD_REASON_OFFSET + (a))

static char g_dir[64], g_pki[128];
static tu_aanf_t g_aanf[2]; /* [1]: K_AF lifetime SHORT_LIFETIME_S */
static m5_akma_cred_t g_cred, g_unknown;

/* Credentials derived like a UE does (TS 33.535 A.2-A.4) from a K_AUSF. */
static int make_cred(const char *kausf_hex, m5_akma_cred_t *cred) {
  uint8_t kausf[M5_AKMA_KEY_LEN], atid[M5_AKMA_KEY_LEN];
  size_t n;
  char realm[128];
  memset(cred, 0, sizeof *cred);
  if (m5_hex_decode(kausf_hex, kausf, sizeof kausf, &n) != M5_OK ||
      m5_akma_kakma(kausf, SUPI, cred->kakma) != M5_OK || m5_akma_atid(kausf, SUPI, atid) ||
      m5_akma_realm_from_supi(SUPI, 2, realm, sizeof realm) ||
      m5_akma_akid(M5_AKMA_DEFAULT_RID, atid, realm, cred->akid, sizeof cred->akid))
    return -1;
  snprintf(cred->fqdn, sizeof cred->fqdn, "localhost");
  return 0;
}

/* ---- the server loop thread ---- */

typedef struct {
  akma_keys_t *keys;
  SSL_CTX *dctx, *tctx;
  ue_listener_t *dtls, *tls;
  uint16_t dport, tport;
  src_limits_t *limits;
} server_t;

/* [1]: K_AF lifetime SHORT_LIFETIME_S; [2]: AAnF 0 with per-source bounds (BUCKET unproven
 * A-KIDs per prefix, never refilled) */
#define N_SRV 3
#define BUCKET 3
static server_t g_srv[N_SRV];
static m5_loop_t *g_loop;
static tu_loop_thread_t g_lt;
static char g_setup_err[512];

/* What the hooks saw (written on the loop thread). */
static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;
static int g_opened, g_closed;
static char g_why[128], g_transport[8], g_supi[M5_AKMA_SUPI_MAX + 1], g_akid[M5_AKMA_AKID_MAX + 1];
static int g_kaf_wiped;
static int64_t g_expiry, g_closed_at_ms;

static int64_t wall_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void h_opened(ue_session_t *s, void *arg) {
  (void)arg;
  pthread_mutex_lock(&g_lock);
  g_opened++;
  snprintf(g_transport, sizeof g_transport, "%s", s->transport);
  snprintf(g_supi, sizeof g_supi, "%s", s->key.supi);
  snprintf(g_akid, sizeof g_akid, "%s", s->akid);
  g_expiry = s->key.expiry;
  g_kaf_wiped = 1;
  for (size_t i = 0; i < sizeof s->key.kaf; i++)
    g_kaf_wiped &= s->key.kaf[i] == 0;
  pthread_mutex_unlock(&g_lock);
}

static void h_request(ue_session_t *s, m5_coap_req_t *req, void *arg) {
  (void)arg;
  size_t n;
  const uint8_t *b = m5_coap_req_body(req, &n);
  int close_after = n == 5 && memcmp(b, "close", 5) == 0;
  m5_coap_ep_respond(req, M5_COAP_CONTENT, M5_COAP_FORMAT_JSON, b, n, NULL, 0);
  if (close_after) ue_session_close(s, "closed by the logic");
}

static void h_closed(ue_session_t *s, const char *why, void *arg) {
  (void)s;
  (void)arg;
  pthread_mutex_lock(&g_lock);
  g_closed++;
  g_closed_at_ms = wall_ms();
  snprintf(g_why, sizeof g_why, "%s", why);
  pthread_mutex_unlock(&g_lock);
}

static void srv_start(void *arg) {
  int which = *(int *)arg;
  server_t *s = &g_srv[which];
  char err[256] = "", crt[160], key[160], ca[160];
  snprintf(crt, sizeof crt, "%s/m5s.crt", g_pki);
  snprintf(key, sizeof key, "%s/m5s.key", g_pki);
  snprintf(ca, sizeof ca, "%s/ca.crt", g_pki);
  akma_keys_opts_t ko = {
      .aanf_url = g_aanf[which == 2 ? 0 : which].url, .cert_file = crt, .key_file = key,
      .ca_file = ca};
  static const char *const names[] = {"localhost"};
  m5_akma_server_opts_t ao = {.fqdns = names, .n_fqdns = 1, .allow_psk_ke = 1, .allow_tls12 = 1};
  if (!(s->keys = akma_keys_new(g_loop, &ko, err, sizeof err)) ||
      !(s->dctx = m5_akma_server_ctx_new(1, &ao, err, sizeof err)) ||
      !(s->tctx = m5_akma_server_ctx_new(0, &ao, err, sizeof err))) {
    snprintf(g_setup_err, sizeof g_setup_err, "server %d: %s", which, err);
    return;
  }
  ue_listener_opts_t lo = {
      .host = "127.0.0.1",
      .ctx = s->dctx,
      .keys = s->keys,
      .max_handshakes = MAX_HS,
      .handshake_timeout_ms = HS_TIMEOUT_MS,
      .idle_timeout_ms = 30000,
      .hooks = {.opened = h_opened, .request = h_request, .closed = h_closed},
  };
  if (which == 2) {
    src_limits_opts_t so = {.unknown_burst = BUCKET, .unknown_per_s = 0};
    if (!(s->limits = src_limits_new(&so))) {
      snprintf(g_setup_err, sizeof g_setup_err, "server %d: out of memory", which);
      return;
    }
    lo.limits = s->limits;
  }
  if (!(s->dtls = ue_dtls_listener_new(g_loop, &lo, err, sizeof err))) {
    snprintf(g_setup_err, sizeof g_setup_err, "server %d dtls: %s", which, err);
    return;
  }
  lo.ctx = s->tctx;
  if (!(s->tls = ue_tls_listener_new(g_loop, &lo, err, sizeof err))) {
    snprintf(g_setup_err, sizeof g_setup_err, "server %d tls: %s", which, err);
    return;
  }
  s->dport = ue_listener_port(s->dtls);
  s->tport = ue_listener_port(s->tls);
}

static void srv_stop(void *arg) {
  server_t *s = &g_srv[*(int *)arg];
  ue_listener_free(s->dtls);
  ue_listener_free(s->tls);
  s->dtls = s->tls = NULL;
  if (s->keys) akma_keys_free(s->keys);
  s->keys = NULL;
  SSL_CTX_free(s->dctx);
  SSL_CTX_free(s->tctx);
  s->dctx = s->tctx = NULL;
  src_limits_free(s->limits);
  s->limits = NULL;
}

typedef struct {
  int which, tls;
  size_t sessions, handshakes;
  uint64_t dropped;
} counts_t;

static void counts_fn(void *arg) {
  counts_t *c = arg;
  ue_listener_t *l = c->tls ? g_srv[c->which].tls : g_srv[c->which].dtls;
  c->sessions = ue_listener_sessions(l);
  c->handshakes = ue_listener_handshakes(l);
  c->dropped = ue_listener_dropped(l);
}

static counts_t counts(int which, int tls) {
  counts_t c = {.which = which, .tls = tls};
  tu_loop_thread_call(&g_lt, counts_fn, &c);
  return c;
}

/* Polls until the listener has that many sessions and handshakes, or ms pass. */
static counts_t wait_counts(int which, int tls, size_t sessions, size_t handshakes, unsigned ms) {
  counts_t c = counts(which, tls);
  for (unsigned t = 0; t < ms && (c.sessions != sessions || c.handshakes != handshakes); t += 20) {
    tu_sleep_ms(20);
    c = counts(which, tls);
  }
  return c;
}

static int closed_count(char *why, size_t len) {
  pthread_mutex_lock(&g_lock);
  int n = g_closed;
  if (why) snprintf(why, len, "%s", g_why);
  pthread_mutex_unlock(&g_lock);
  return n;
}

/* Waits until more than `before` sessions closed; returns the last reason. */
static void wait_closed(int before, char *why, size_t len, unsigned ms) {
  for (unsigned t = 0; t < ms && closed_count(NULL, 0) <= before; t += 20)
    tu_sleep_ms(20);
  assert_true(closed_count(why, len) > before);
}

/* ---- clients ---- */

static m5_loop_t *g_cloop;
static uint16_t g_bind_port; /* nonzero: clients bind to this local port */

typedef struct {
  int fd, dtls;
  SSL_CTX *ctx;
  SSL *ssl;
  m5_coap_ep_t *ep;
  int reason; /* ERR reason of a failed handshake */
  int eof, ep_error, got, timed_out;
  int status;
  uint8_t code;
  uint8_t body[32768];
  size_t body_len;
} client_t;

static int c_send(void *io, const uint8_t *p, size_t n) {
  client_t *c = io;
  ERR_clear_error();
  return SSL_write(c->ssl, p, (int)n) > 0 ? M5_OK : M5_EIO;
}

static void c_on_request(m5_coap_ep_t *ep, m5_coap_req_t *req, void *arg) {
  (void)ep;
  (void)arg;
  m5_coap_ep_respond_error(req, M5_COAP_NOT_FOUND, "no");
}

static void c_on_error(m5_coap_ep_t *ep, int status, const char *why, void *arg) {
  (void)ep;
  (void)status;
  (void)why;
  client_t *c = arg;
  c->ep_error = 1;
  m5_loop_stop(g_cloop);
}

static void c_io(m5_loop_t *loop, int fd, uint32_t events, void *arg) {
  (void)fd;
  (void)events;
  client_t *c = arg;
  uint8_t buf[16384];
  for (;;) {
    ERR_clear_error();
    int n = SSL_read(c->ssl, buf, sizeof buf);
    if (n > 0) {
      if (c->ep) m5_coap_ep_input(c->ep, buf, (size_t)n);
      continue;
    }
    int e = SSL_get_error(c->ssl, n);
    if (e == SSL_ERROR_WANT_READ) return;
    c->eof = 1;
    m5_loop_del_fd(loop, c->fd);
    m5_loop_stop(loop);
    return;
  }
}

/* Drives the client handshake on the non-blocking socket: 0, -1 failed (c->reason), -2 no
 * answer within ms. */
static int drive(client_t *c, unsigned ms) {
  uint64_t end = tu_now_ms() + ms;
  for (;;) {
    ERR_clear_error();
    int r = SSL_do_handshake(c->ssl);
    if (r == 1) return 0;
    int e = SSL_get_error(c->ssl, r);
    if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE) {
      c->reason = ERR_GET_REASON(ERR_peek_last_error());
      return -1;
    }
    uint64_t now = tu_now_ms();
    if (now >= end) return -2;
    int wait = (int)(end - now);
    struct timeval tv;
    if (c->dtls && DTLSv1_get_timeout(c->ssl, &tv) > 0) {
      int t = (int)(tv.tv_sec * 1000 + tv.tv_usec / 1000);
      if (t < wait) wait = t;
    }
    struct pollfd p = {.fd = c->fd, .events = POLLIN};
    if (poll(&p, 1, wait) == 0 && c->dtls) DTLSv1_handle_timeout(c->ssl);
  }
}

/* A socket connected to 127.0.0.1:port and an SSL on it, handshake not started. */
static void client_init(client_t *c, int dtls, int tls12, uint16_t port, const m5_akma_cred_t *cred,
                        const char *alpn, size_t alpn_len) {
  memset(c, 0, sizeof *c);
  c->dtls = dtls;
  char err[256];
  c->ctx = m5_akma_client_ctx_new(dtls, tls12, err, sizeof err);
  assert_non_null(c->ctx);
  c->fd = socket(AF_INET, (dtls ? SOCK_DGRAM : SOCK_STREAM) | SOCK_NONBLOCK, 0);
  assert_true(c->fd >= 0);
  if (g_bind_port) {
    int one = 1;
    setsockopt(c->fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in b = {.sin_family = AF_INET, .sin_port = htons(g_bind_port)};
    b.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(c->fd, (struct sockaddr *)&b, sizeof b), 0);
  }
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  int rc = connect(c->fd, (struct sockaddr *)&a, sizeof a);
  assert_true(rc == 0 || errno == EINPROGRESS);
  if (!dtls) {
    struct pollfd p = {.fd = c->fd, .events = POLLOUT};
    assert_int_equal(poll(&p, 1, 2000), 1);
  }
  c->ssl = SSL_new(c->ctx);
  assert_non_null(c->ssl);
  assert_int_equal(m5_akma_ssl_attach(c->ssl), M5_OK);
  assert_int_equal(m5_akma_client_ssl_setup(c->ssl, cred), M5_OK);
  if (tls12) SSL_set_max_proto_version(c->ssl, dtls ? DTLS1_2_VERSION : TLS1_2_VERSION);
  if (alpn)
    assert_int_equal(SSL_set_alpn_protos(c->ssl, (const uint8_t *)alpn, (unsigned)alpn_len), 0);
  if (dtls) {
    BIO *bio = BIO_new_dgram(c->fd, BIO_NOCLOSE);
    assert_non_null(bio);
    BIO_ADDR *peer = BIO_ADDR_new();
    BIO_ADDR_rawmake(peer, AF_INET, &a.sin_addr, sizeof a.sin_addr, a.sin_port);
    BIO_ctrl_set_connected(bio, peer);
    BIO_ADDR_free(peer);
    SSL_set_bio(c->ssl, bio, bio);
  } else {
    SSL_set_fd(c->ssl, c->fd);
  }
  SSL_set_connect_state(c->ssl);
}

static void client_free(client_t *c) {
  if (c->ep) m5_coap_ep_free(c->ep);
  c->ep = NULL;
  if (c->ssl) {
    m5_loop_del_fd(g_cloop, c->fd);
    SSL_free(c->ssl);
  }
  if (c->fd >= 0) close(c->fd);
  SSL_CTX_free(c->ctx);
  memset(c, 0, sizeof *c);
  c->fd = -1;
}

/* Handshake, then a CoAP endpoint over the session. */
static int client_open(client_t *c, int dtls, int tls12, uint16_t port, const m5_akma_cred_t *cred,
                       const char *alpn, size_t alpn_len) {
  client_init(c, dtls, tls12, port, cred, alpn, alpn_len);
  int rc = drive(c, 5000);
  if (rc != 0) return rc;
  m5_coap_ep_opts_t o = {.transport = dtls ? M5_COAP_DGRAM : M5_COAP_STREAM};
  m5_coap_ep_cbs_t cbs = {.send = c_send, .on_request = c_on_request, .on_error = c_on_error};
  c->ep = m5_coap_ep_new(g_cloop, &o, &cbs, c, c);
  assert_non_null(c->ep);
  assert_int_equal(m5_loop_add_fd(g_cloop, c->fd, M5_EV_READ, c_io, c), M5_OK);
  if (!dtls) assert_int_equal(m5_coap_ep_start(c->ep), M5_OK);
  return 0;
}

static void c_resp(void *arg, int status, const m5_coap_msg_t *resp, const uint8_t *body,
                   size_t len) {
  client_t *c = arg;
  c->got = 1;
  c->status = status;
  c->code = resp ? resp->code : 0;
  c->body_len = len < sizeof c->body ? len : sizeof c->body;
  if (body && c->body_len) memcpy(c->body, body, c->body_len);
  m5_loop_stop(g_cloop);
}

static void c_deadline(m5_loop_t *loop, void *arg) {
  client_t *c = arg;
  c->timed_out = 1;
  m5_loop_stop(loop);
}

/* Runs the client loop until stop (response, EOF, error) or ms pass. */
static void client_run(client_t *c, unsigned ms) {
  c->timed_out = 0;
  m5_timer_id_t t = m5_loop_timer_add(g_cloop, ms, c_deadline, c);
  m5_loop_run(g_cloop);
  m5_loop_timer_cancel(g_cloop, t);
}

/* POST msgin5g with body; asserts a 2.05 echo. */
static void client_echo(client_t *c, const uint8_t *body, size_t len) {
  c->got = 0;
  assert_int_equal(
      m5_coap_ep_request(c->ep, M5_COAP_POST, "msgin5g", M5_COAP_FORMAT_JSON, body, len, c_resp, c),
      M5_OK);
  for (int i = 0; i < 20 && !c->got && !c->eof && !c->ep_error; i++)
    client_run(c, 500);
  assert_true(c->got);
  assert_int_equal(c->status, M5_OK);
  assert_int_equal(c->code, M5_COAP_CONTENT);
  assert_int_equal(c->body_len, len);
  assert_memory_equal(c->body, body, len);
}

static void client_wait_eof(client_t *c, unsigned ms) {
  uint64_t end = tu_now_ms() + ms;
  while (!c->eof && tu_now_ms() < end)
    client_run(c, 100);
  assert_true(c->eof);
}

/* ---- setup ---- */

static int setup(void **state) {
  (void)state;
  tu_process_init();
  if (tu_mkdtemp(g_dir, sizeof g_dir, "m5uetr")) return -1;
  snprintf(g_pki, sizeof g_pki, "%s/pki", g_dir);
  char lifetime[64], akid[M5_AKMA_AKID_MAX + 1];
  snprintf(lifetime, sizeof lifetime, "kaf: {lifetime_s: %d}\n", SHORT_LIFETIME_S);
  if (tu_m5ctl_pki_init(g_dir, g_pki) || tu_aanf_start(&g_aanf[0], g_dir, "aanf0", g_pki, NULL) ||
      tu_aanf_start(&g_aanf[1], g_dir, "aanf1", g_pki, lifetime))
    return -1;
  for (int i = 0; i < 2; i++)
    if (tu_subscriber_add(g_dir, &g_aanf[i], g_pki, SUPI, KAUSF, akid, sizeof akid)) return -1;
  if (make_cred(KAUSF, &g_cred) || make_cred(OTHER_KAUSF, &g_unknown)) return -1;
  if (strcmp(akid, g_cred.akid) != 0) {
    fprintf(stderr, "A-KID mismatch: m5ctl %s, derived %s\n", akid, g_cred.akid);
    return -1;
  }
  m5_log_set_level(getenv("M5_TEST_DEBUG") ? M5_LOG_DEBUG : M5_LOG_WARN);
  g_loop = m5_loop_new();
  g_cloop = m5_loop_new();
  if (!g_loop || !g_cloop || tu_loop_thread_start(&g_lt, g_loop) != 0) return -1;
  for (int i = 0; i < N_SRV; i++) {
    tu_loop_thread_call(&g_lt, srv_start, &i);
    if (g_setup_err[0]) {
      fprintf(stderr, "%s\n", g_setup_err);
      return -1;
    }
  }
  return 0;
}

static int teardown(void **state) {
  (void)state;
  if (g_lt.running) {
    for (int i = 0; i < N_SRV; i++)
      tu_loop_thread_call(&g_lt, srv_stop, &i);
    tu_loop_thread_stop(&g_lt);
  }
  if (g_loop) m5_loop_free(g_loop);
  if (g_cloop) m5_loop_free(g_cloop);
  for (int i = 0; i < 2; i++)
    tu_aanf_stop(&g_aanf[i]);
  return tu_rmtree(g_dir);
}

/* ---- tests ---- */

static void check_session_fields(const char *transport) {
  pthread_mutex_lock(&g_lock);
  assert_string_equal(g_transport, transport);
  assert_string_equal(g_supi, SUPI);
  assert_string_equal(g_akid, g_cred.akid);
  assert_true(g_kaf_wiped);
  assert_true(g_expiry > (int64_t)time(NULL));
  pthread_mutex_unlock(&g_lock);
}

static void test_dtls_echo_and_peer_close(void **state) {
  (void)state;
  client_t c;
  assert_int_equal(client_open(&c, 1, 0, g_srv[0].dport, &g_cred, NULL, 0), 0);
  static const uint8_t body[] = "{\"msgType\":\"REG\",\"ueSvcId\":\"ue1\"}";
  client_echo(&c, body, sizeof body - 1);
  check_session_fields("dtls");
  /* A body over one block travels with Block-wise transfer through the same session. */
  uint8_t big[3000];
  for (size_t i = 0; i < sizeof big; i++)
    big[i] = (uint8_t)('a' + i % 26);
  client_echo(&c, big, sizeof big);
  assert_int_equal(counts(0, 0).sessions, 1);
  int before = closed_count(NULL, 0);
  SSL_shutdown(c.ssl);
  char why[128];
  wait_closed(before, why, sizeof why, 3000);
  assert_string_equal(why, "peer closed");
  assert_int_equal(wait_counts(0, 0, 0, 0, 2000).sessions, 0);
  client_free(&c);
}

static void test_tls13_echo_and_logic_close(void **state) {
  (void)state;
  client_t c;
  static const char alpn[] = "\002h2\004coap";
  assert_int_equal(client_open(&c, 0, 0, g_srv[0].tport, &g_cred, alpn, sizeof alpn - 1), 0);
  assert_int_equal(SSL_version(c.ssl), TLS1_3_VERSION);
  const unsigned char *sel;
  unsigned sel_len;
  SSL_get0_alpn_selected(c.ssl, &sel, &sel_len);
  assert_int_equal(sel_len, 4);
  assert_memory_equal(sel, "coap", 4);
  uint8_t big[20000];
  for (size_t i = 0; i < sizeof big; i++)
    big[i] = (uint8_t)('A' + i % 26);
  client_echo(&c, big, sizeof big);
  check_session_fields("tls");
  int before = closed_count(NULL, 0);
  client_echo(&c, (const uint8_t *)"close", 5);
  client_wait_eof(&c, 3000);
  char why[128];
  wait_closed(before, why, sizeof why, 3000);
  assert_string_equal(why, "closed by the logic");
  assert_int_equal(wait_counts(0, 1, 0, 0, 2000).sessions, 0);
  client_free(&c);
}

static void test_tls12_echo(void **state) {
  (void)state;
  client_t c;
  assert_int_equal(client_open(&c, 0, 1, g_srv[0].tport, &g_cred, NULL, 0), 0);
  assert_int_equal(SSL_version(c.ssl), TLS1_2_VERSION);
  static const uint8_t body[] = "{\"msgType\":\"MSG\"}";
  client_echo(&c, body, sizeof body - 1);
  check_session_fields("tls");
  int before = closed_count(NULL, 0);
  client_free(&c); /* TCP close without close_notify */
  char why[128];
  wait_closed(before, why, sizeof why, 3000);
  assert_string_equal(why, "peer closed");
}

static void test_alpn_without_coap_refused(void **state) {
  (void)state;
  client_t c;
  static const char alpn[] = "\002h2";
  assert_int_equal(client_open(&c, 0, 0, g_srv[0].tport, &g_cred, alpn, sizeof alpn - 1), -1);
  assert_int_equal(c.reason, ALERT(SSL_AD_NO_APPLICATION_PROTOCOL));
  client_free(&c);
}

/* Unknown A-KID: the handshake fails at once with unknown_psk_identity, on every transport,
 * and the listeners go on serving. */
static void test_unknown_akid(void **state) {
  (void)state;
  struct {
    int dtls, tls12;
  } kinds[] = {{1, 0}, {0, 0}, {0, 1}};
  for (size_t k = 0; k < sizeof kinds / sizeof kinds[0]; k++) {
    client_t c;
    uint64_t t0 = tu_now_ms();
    int rc = client_open(&c, kinds[k].dtls, kinds[k].tls12,
                         kinds[k].dtls ? g_srv[0].dport : g_srv[0].tport, &g_unknown, NULL, 0);
    assert_int_equal(rc, -1);
    assert_int_equal(c.reason, ALERT(SSL_AD_UNKNOWN_PSK_IDENTITY));
    assert_true(tu_now_ms() - t0 < 3000);
    client_free(&c);
    assert_int_equal(client_open(&c, kinds[k].dtls, kinds[k].tls12,
                                 kinds[k].dtls ? g_srv[0].dport : g_srv[0].tport, &g_cred, NULL, 0),
                     0);
    client_echo(&c, (const uint8_t *)"{}", 2);
    client_free(&c);
  }
  assert_int_equal(wait_counts(0, 0, 0, 0, 3000).handshakes, 0);
  assert_int_equal(wait_counts(0, 1, 0, 0, 3000).handshakes, 0);
}

/* The per-source bucket of unproven A-KIDs holds on every transport (TLS 1.3 reads the A-KID
 * from the ClientHello, TLS 1.2 and DTLS 1.2 from the ClientKeyExchange): BUCKET unknown
 * A-KIDs from 127.0.0.1 are asked of the AAnF (and refused with unknown_psk_identity); after
 * that a new unknown A-KID is refused without asking (TLS: internal_error alert at once; DTLS:
 * dropped, the client hears nothing), while a UE whose K_AF is cached still gets in. */
static void test_source_bucket_all_transports(void **state) {
  (void)state;
  server_t *s = &g_srv[2];
  struct {
    int dtls, tls12;
  } kinds[] = {{1, 0}, {0, 0}, {0, 1}};
  client_t c;
  /* The known UE first: its fetch takes a token and gives it back (K_AF); cached from now. */
  for (int dtls = 0; dtls < 2; dtls++) {
    assert_int_equal(client_open(&c, dtls, 0, dtls ? s->dport : s->tport, &g_cred, NULL, 0), 0);
    client_echo(&c, (const uint8_t *)"{}", 2);
    client_free(&c);
  }
  m5_akma_cred_t unknown = g_unknown;
  for (int round = 0; round < 2; round++) {
    for (size_t k = 0; k < sizeof kinds / sizeof kinds[0]; k++) {
      snprintf(unknown.akid, sizeof unknown.akid, "0000.dW5rbm93bg%d%zu@example.org", round, k);
      client_init(&c, kinds[k].dtls, kinds[k].tls12, kinds[k].dtls ? s->dport : s->tport,
                  &unknown, NULL, 0);
      int rc = drive(&c, kinds[k].dtls ? 2500 : 5000);
      if (round == 0) { /* asked: the AAnF has no context */
        assert_int_equal(rc, -1);
        assert_int_equal(c.reason, ALERT(SSL_AD_UNKNOWN_PSK_IDENTITY));
      } else if (kinds[k].dtls) { /* refused: dropped */
        assert_int_equal(rc, -2);
      } else { /* refused: internal_error */
        assert_int_equal(rc, -1);
        assert_int_equal(c.reason, ALERT(SSL_AD_INTERNAL_ERROR));
      }
      client_free(&c);
    }
  }
  assert_int_equal(src_refused_count(s->limits, SRC_UNKNOWN_RATE), 3);
  for (size_t k = 0; k < sizeof kinds / sizeof kinds[0]; k++) {
    assert_int_equal(client_open(&c, kinds[k].dtls, kinds[k].tls12,
                                 kinds[k].dtls ? s->dport : s->tport, &g_cred, NULL, 0),
                     0);
    client_echo(&c, (const uint8_t *)"{}", 2);
    client_free(&c);
  }
  assert_int_equal(src_refused_count(s->limits, SRC_UNKNOWN_RATE), 3);
}

static void test_foreign_sni(void **state) {
  (void)state;
  m5_akma_cred_t other = g_cred;
  snprintf(other.fqdn, sizeof other.fqdn, "other.example");
  for (int dtls = 0; dtls < 2; dtls++) {
    client_t c;
    assert_int_equal(
        client_open(&c, dtls, 0, dtls ? g_srv[0].dport : g_srv[0].tport, &other, NULL, 0), -1);
    assert_int_equal(c.reason, ALERT(SSL_AD_UNRECOGNIZED_NAME));
    client_free(&c);
  }
}

/* A DTLS client on memory BIOs, driven by hand so that it stops exactly where we want. */
typedef struct {
  int fd;
  SSL_CTX *ctx;
  SSL *ssl;
  BIO *rbio, *wbio;
} raw_t;

static void raw_init(raw_t *h, uint16_t port) {
  char err[256];
  h->ctx = m5_akma_client_ctx_new(1, 0, err, sizeof err);
  assert_non_null(h->ctx);
  h->ssl = SSL_new(h->ctx);
  assert_non_null(h->ssl);
  assert_int_equal(m5_akma_ssl_attach(h->ssl), M5_OK);
  assert_int_equal(m5_akma_client_ssl_setup(h->ssl, &g_cred), M5_OK);
  h->rbio = BIO_new(BIO_s_mem());
  h->wbio = BIO_new(BIO_s_mem());
  BIO_set_mem_eof_return(h->rbio, -1);
  SSL_set_bio(h->ssl, h->rbio, h->wbio);
  SSL_set_options(h->ssl, SSL_OP_NO_QUERY_MTU);
  DTLS_set_link_mtu(h->ssl, 1200);
  SSL_set_connect_state(h->ssl);
  h->fd = -1;
  if (port) {
    h->fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(h->fd, (struct sockaddr *)&a, sizeof a), 0);
  }
}

static void raw_free(raw_t *h) {
  SSL_free(h->ssl);
  SSL_CTX_free(h->ctx);
  if (h->fd >= 0) close(h->fd);
}

/* The client's next flight: runs the handshake and takes what it wrote. */
static size_t raw_step(raw_t *h, uint8_t *out, size_t cap) {
  SSL_do_handshake(h->ssl);
  char *data;
  long n = BIO_get_mem_data(h->wbio, &data);
  assert_true(n > 0 && (size_t)n <= cap);
  memcpy(out, data, (size_t)n);
  (void)BIO_reset(h->wbio);
  return (size_t)n;
}

/* Proves its address with the cookie, gets the server's flight, then goes silent. 0 if the
 * server answered the second ClientHello, -1 if no HelloVerifyRequest came. */
static int half_open_dtls(raw_t *h, uint16_t port) {
  uint8_t buf[4096];
  raw_init(h, port);
  size_t n = raw_step(h, buf, sizeof buf);
  assert_int_equal(send(h->fd, buf, n, 0), (ssize_t)n);
  struct pollfd p = {.fd = h->fd, .events = POLLIN};
  if (poll(&p, 1, 300) != 1) return -1;
  ssize_t r = recv(h->fd, buf, sizeof buf, 0);
  assert_true(r > 0);
  BIO_write(h->rbio, buf, (int)r);
  n = raw_step(h, buf, sizeof buf);
  assert_int_equal(send(h->fd, buf, n, 0), (ssize_t)n);
  return poll(&p, 1, 1000) == 1 ? 0 : -1;
}

static void test_vanishing_peers_and_max_handshakes(void **state) {
  (void)state;
  counts_t before = counts(0, 0);
  assert_int_equal(before.handshakes, 0);
  raw_t hs[MAX_HS + 3];
  int answered = 0;
  for (size_t i = 0; i < sizeof hs / sizeof hs[0]; i++)
    answered += half_open_dtls(&hs[i], g_srv[0].dport) == 0;
  assert_int_equal(answered, MAX_HS);
  counts_t now = counts(0, 0);
  assert_int_equal(now.handshakes, MAX_HS);
  assert_true(now.dropped >= before.dropped + 3);
  for (size_t i = 0; i < sizeof hs / sizeof hs[0]; i++)
    raw_free(&hs[i]);
  /* TCP peers that connect and say nothing. */
  int fds[3];
  for (int i = 0; i < 3; i++) {
    fds[i] = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(g_srv[0].tport)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(fds[i], (struct sockaddr *)&a, sizeof a), 0);
  }
  assert_int_equal(wait_counts(0, 1, 0, 3, 1000).handshakes, 3);
  /* The handshake timeout frees them all. */
  assert_int_equal(wait_counts(0, 0, 0, 0, HS_TIMEOUT_MS + 2000).handshakes, 0);
  assert_int_equal(wait_counts(0, 1, 0, 0, HS_TIMEOUT_MS + 2000).handshakes, 0);
  for (int i = 0; i < 3; i++) {
    char b;
    struct timeval tv = {2, 0};
    setsockopt(fds[i], SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    assert_true(read(fds[i], &b, 1) <= 0); /* the server closed it */
    close(fds[i]);
  }
  client_t c;
  assert_int_equal(client_open(&c, 1, 0, g_srv[0].dport, &g_cred, NULL, 0), 0);
  client_echo(&c, (const uint8_t *)"{}", 2);
  client_free(&c);
}

/* A real ClientHello as a client sends it first (no cookie). */
static size_t client_hello(uint8_t *out, size_t cap) {
  raw_t h;
  raw_init(&h, 0);
  size_t n = raw_step(&h, out, cap);
  raw_free(&h);
  return n;
}

static void test_flood(void **state) {
  (void)state;
  uint8_t ch[2048], d[2048];
  size_t ch_len = client_hello(ch, sizeof ch);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(g_srv[0].dport)};
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  int fd = -1;
  size_t max_seen = 0;
  for (int i = 0; i < 2000; i++) {
    if (i % 10 == 0) { /* a new source port every 10 datagrams */
      if (fd >= 0) close(fd);
      fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0);
      assert_true(fd >= 0);
    }
    size_t n;
    switch (i % 4) {
    case 0: /* a genuine first ClientHello */
      memcpy(d, ch, ch_len);
      n = ch_len;
      break;
    case 1: /* the same with its random changed */
      memcpy(d, ch, ch_len);
      RAND_bytes(d + 13 + 12 + 2, 32);
      n = ch_len;
      break;
    case 2: /* looks like a ClientHello, is junk */
      RAND_bytes(d, 300);
      d[0] = 22, d[1] = 0xfe, d[2] = 0xfd, d[3] = d[4] = 0, d[13] = 1;
      n = 300;
      break;
    default: /* noise */
      n = 1 + (size_t)(rand() % 1400);
      RAND_bytes(d, (int)n);
      break;
    }
    sendto(fd, d, n, 0, (struct sockaddr *)&a, sizeof a);
    if (i % 200 == 199) {
      counts_t c = counts(0, 0);
      if (c.handshakes > max_seen) max_seen = c.handshakes;
    }
  }
  close(fd);
  tu_sleep_ms(200);
  counts_t c = counts(0, 0);
  if (c.handshakes > max_seen) max_seen = c.handshakes;
  /* Nobody answered a HelloVerifyRequest: no state at all, well under the cap. */
  assert_true(max_seen <= MAX_HS);
  assert_int_equal(max_seen, 0);
  client_t cl;
  assert_int_equal(client_open(&cl, 1, 0, g_srv[0].dport, &g_cred, NULL, 0), 0);
  client_echo(&cl, (const uint8_t *)"{\"after\":\"flood\"}", 17);
  client_free(&cl);
}

/* RFC 6347 §4.2.8: a client that restarts on the same address and port (its old association
 * still open on the server) gets a new session; the old one ends. */
static void test_dtls_restart_same_port(void **state) {
  (void)state;
  int probe = socket(AF_INET, SOCK_DGRAM, 0);
  struct sockaddr_in b = {.sin_family = AF_INET};
  b.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t bl = sizeof b;
  assert_int_equal(bind(probe, (struct sockaddr *)&b, sizeof b), 0);
  assert_int_equal(getsockname(probe, (struct sockaddr *)&b, &bl), 0);
  close(probe);
  g_bind_port = ntohs(b.sin_port);
  client_t c1, c2;
  int rc = client_open(&c1, 1, 0, g_srv[0].dport, &g_cred, NULL, 0);
  if (rc == 0) client_echo(&c1, (const uint8_t *)"{\"n\":1}", 7);
  size_t open_before = counts(0, 0).sessions;
  int before = closed_count(NULL, 0);
  client_free(&c1); /* gone without close_notify */
  rc = rc ? rc : client_open(&c2, 1, 0, g_srv[0].dport, &g_cred, NULL, 0);
  g_bind_port = 0;
  assert_int_equal(rc, 0);
  client_echo(&c2, (const uint8_t *)"{\"n\":2}", 7);
  char why[128];
  wait_closed(before, why, sizeof why, 2000);
  assert_string_equal(why, "peer started a new association");
  assert_int_equal(counts(0, 0).sessions, open_before);
  client_free(&c2);
}

static void test_kaf_expiry_closes(void **state) {
  (void)state;
  for (int dtls = 0; dtls < 2; dtls++) {
    client_t c;
    int before = closed_count(NULL, 0);
    assert_int_equal(
        client_open(&c, dtls, 0, dtls ? g_srv[1].dport : g_srv[1].tport, &g_cred, NULL, 0), 0);
    client_echo(&c, (const uint8_t *)"{}", 2);
    pthread_mutex_lock(&g_lock);
    int64_t expiry = g_expiry;
    pthread_mutex_unlock(&g_lock);
    assert_true(expiry <= (int64_t)time(NULL) + SHORT_LIFETIME_S + 1);
    char why[128];
    wait_closed(before, why, sizeof why, (SHORT_LIFETIME_S + 3) * 1000);
    assert_string_equal(why, "K_AF expired");
    /* At the expiry (the loop's clock may run a few ms early, never late). */
    pthread_mutex_lock(&g_lock);
    int64_t at = g_closed_at_ms;
    pthread_mutex_unlock(&g_lock);
    assert_true(at >= expiry * 1000 - 200);
    assert_true(at <= expiry * 1000 + 200);
    /* The device sees the server's close_notify (over DTLS sealed by m5s's own record layer:
     * the echo above was the client's first application data), then over TLS the TCP close. */
    client_wait_eof(&c, 2000);
    assert_int_equal(wait_counts(1, !dtls, 0, 0, 2000).sessions, 0);
    client_free(&c);
  }
}

static void stop_server0(void *arg) {
  (void)arg;
  int which = 0;
  srv_stop(&which);
}

static void test_listener_free_closes_sessions(void **state) {
  (void)state;
  client_t t, d;
  assert_int_equal(client_open(&t, 0, 0, g_srv[0].tport, &g_cred, NULL, 0), 0);
  client_echo(&t, (const uint8_t *)"{}", 2);
  assert_int_equal(client_open(&d, 1, 0, g_srv[0].dport, &g_cred, NULL, 0), 0);
  client_echo(&d, (const uint8_t *)"{}", 2);
  /* Sessions of earlier tests whose DTLS clients left without close_notify are still open
   * (until their idle timeout): they close here too. */
  size_t open = counts(0, 0).sessions + counts(0, 1).sessions;
  assert_true(open >= 2);
  int before = closed_count(NULL, 0);
  tu_loop_thread_call(&g_lt, stop_server0, NULL);
  char why[128];
  assert_int_equal(closed_count(why, sizeof why), before + (int)open);
  assert_string_equal(why, "shutdown");
  client_wait_eof(&t, 2000);
  client_wait_eof(&d, 2000); /* close_notify over DTLS too */
  client_free(&t);
  client_free(&d);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_dtls_echo_and_peer_close),
      cmocka_unit_test(test_tls13_echo_and_logic_close),
      cmocka_unit_test(test_tls12_echo),
      cmocka_unit_test(test_alpn_without_coap_refused),
      cmocka_unit_test(test_unknown_akid),
      cmocka_unit_test(test_foreign_sni),
      cmocka_unit_test(test_source_bucket_all_transports),
      cmocka_unit_test(test_vanishing_peers_and_max_handshakes),
      cmocka_unit_test(test_flood),
      cmocka_unit_test(test_dtls_restart_same_port),
      cmocka_unit_test(test_kaf_expiry_closes),
      cmocka_unit_test(test_listener_free_closes_sessions),
  };
  if (getenv("M5_TEST_FILTER")) cmocka_set_test_filter(getenv("M5_TEST_FILTER"));
  return cmocka_run_group_tests(tests, setup, teardown);
}
