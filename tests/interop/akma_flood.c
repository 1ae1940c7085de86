/* A ClientHello flood for tests/interop/test_m5s_akma_flood.sh: N TLS 1.3 connections to
 * m5s's MSGin5G-1 TCP port, C of them at once, connection i bound to PREFIX.(1 + i % 254)
 * (Linux routes all of 127/8 to lo). Each offers an external PSK with the identity
 * "3GPP-AKMA" + a random A-KID and a random key (OpenSSL's psk_use_session callback), so the
 * ClientHello carries the pre_shared_key extension and m5s asks its AAnF for that A-KID
 * before the peer has proved anything. A connection waits at most HOLD ms for m5s's answer
 * (an alert, a close, or a ServerHello it could not finish: the key is random), then hangs up
 * and the next one starts. Prints one line of outcomes:
 *   sent=N refused=R (alert or close before any ServerHello) answered=A (a ServerHello)
 *   held=H (hung up by us after HOLD ms) failed=F (connect or bind errors)
 * Build: cc akma_flood.c -lssl -lcrypto. Usage: akma_flood PORT N C HOLD_MS PREFIX */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

typedef struct {
  int fd;
  SSL *ssl;
  long long start_ms;
  int hello_seen;
  short events; /* what the handshake waits for */
  char identity[64];
} conn_t;

static long long now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int use_session_cb(SSL *ssl, const EVP_MD *md, const unsigned char **id, size_t *idlen,
                          SSL_SESSION **sess) {
  (void)md;
  conn_t *c = SSL_get_app_data(ssl);
  static const unsigned char aes128gcm[] = {0x13, 0x01};
  unsigned char key[32];
  RAND_bytes(key, sizeof key);
  SSL_SESSION *s = SSL_SESSION_new();
  const SSL_CIPHER *cipher = SSL_CIPHER_find(ssl, aes128gcm);
  if (!s || !cipher || !SSL_SESSION_set1_master_key(s, key, sizeof key) ||
      !SSL_SESSION_set_cipher(s, cipher) || !SSL_SESSION_set_protocol_version(s, TLS1_3_VERSION)) {
    SSL_SESSION_free(s);
    return 0;
  }
  *sess = s;
  *id = (const unsigned char *)c->identity;
  *idlen = strlen(c->identity);
  return 1;
}

static void msg_cb(int write_p, int version, int content_type, const void *buf, size_t len,
                   SSL *ssl, void *arg) {
  (void)version, (void)arg;
  const unsigned char *p = buf;
  /* handshake message from the server: ServerHello (2) */
  if (!write_p && content_type == SSL3_RT_HANDSHAKE && len > 0 && p[0] == 2) {
    conn_t *c = SSL_get_app_data(ssl);
    c->hello_seen = 1;
  }
}

int main(int argc, char **argv) {
  if (argc != 6) {
    fprintf(stderr, "usage: akma_flood PORT N C HOLD_MS PREFIX\n");
    return 2;
  }
  /* m5s closes refused connections early; a write to one must not kill the flood (the test
   * must fail on its AAnF count, not on a SIGPIPE). */
  signal(SIGPIPE, SIG_IGN);
  int port = atoi(argv[1]), total = atoi(argv[2]), conc = atoi(argv[3]), hold = atoi(argv[4]);
  const char *prefix = argv[5];
  SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
  SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION);
  SSL_CTX_set_ciphersuites(ctx, "TLS_AES_128_GCM_SHA256");
  SSL_CTX_set_msg_callback(ctx, msg_cb);
  conn_t *cs = calloc((size_t)conc, sizeof *cs);
  struct pollfd *pfd = calloc((size_t)conc, sizeof *pfd);
  if (!ctx || !cs || !pfd) return 1;
  for (int i = 0; i < conc; i++)
    cs[i].fd = -1;
  int started = 0, done = 0, refused = 0, answered = 0, held = 0, failed = 0;
  while (done < total) {
    /* fill free slots */
    for (int i = 0; i < conc && started < total; i++) {
      conn_t *c = &cs[i];
      if (c->fd >= 0) continue;
      int n = started++;
      char src[32];
      snprintf(src, sizeof src, "%s.%d", prefix, 1 + n % 254);
      struct sockaddr_in sa = {.sin_family = AF_INET}, da = {.sin_family = AF_INET};
      inet_pton(AF_INET, src, &sa.sin_addr);
      inet_pton(AF_INET, "127.0.0.1", &da.sin_addr);
      da.sin_port = htons((uint16_t)port);
      int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
      if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof sa) != 0 ||
          (connect(fd, (struct sockaddr *)&da, sizeof da) != 0 && errno != EINPROGRESS)) {
        if (fd >= 0) close(fd);
        failed++;
        done++;
        continue;
      }
      unsigned char r[12];
      RAND_bytes(r, sizeof r);
      char akid[40];
      for (int k = 0; k < 12; k++)
        snprintf(akid + 2 * k, 3, "%02x", r[k]);
      snprintf(c->identity, sizeof c->identity, "3GPP-AKMA%s@flood.example", akid);
      c->fd = fd;
      c->ssl = SSL_new(ctx);
      c->hello_seen = 0;
      c->events = POLLOUT; /* the connect completing */
      c->start_ms = now_ms();
      SSL_set_app_data(c->ssl, c);
      SSL_set_fd(c->ssl, fd);
      SSL_set_tlsext_host_name(c->ssl, "localhost");
      SSL_set_psk_use_session_callback(c->ssl, use_session_cb);
      SSL_set_connect_state(c->ssl);
    }
    int nfds = 0;
    for (int i = 0; i < conc; i++) {
      pfd[i].fd = cs[i].fd;
      pfd[i].events = cs[i].events;
      pfd[i].revents = 0;
      if (cs[i].fd >= 0) nfds++;
    }
    if (nfds == 0) continue;
    poll(pfd, (nfds_t)conc, 50);
    long long now = now_ms();
    for (int i = 0; i < conc; i++) {
      conn_t *c = &cs[i];
      if (c->fd < 0) continue;
      int outcome = 0; /* 1 refused, 2 answered, 3 held, 4 failed */
      if (pfd[i].revents) {
        ERR_clear_error();
        int rv = SSL_do_handshake(c->ssl);
        int e = rv == 1 ? SSL_ERROR_NONE : SSL_get_error(c->ssl, rv);
        if (rv == 1 || (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE))
          outcome = c->hello_seen ? 2 : 1;
        else if (c->hello_seen)
          outcome = 2;
        else
          c->events = e == SSL_ERROR_WANT_WRITE ? POLLOUT : POLLIN;
      }
      if (!outcome && now - c->start_ms >= hold) outcome = 3;
      if (!outcome) continue;
      if (outcome == 1) refused++;
      if (outcome == 2) answered++;
      if (outcome == 3) held++;
      SSL_free(c->ssl);
      close(c->fd);
      c->ssl = NULL;
      c->fd = -1;
      done++;
    }
  }
  printf("sent=%d refused=%d answered=%d held=%d failed=%d\n", total, refused, answered, held,
         failed);
  SSL_CTX_free(ctx);
  free(cs);
  free(pfd);
  return 0;
}
