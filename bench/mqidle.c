/* mqidle: idle MQTT clients over TLS-PSK for Mosquitto's memory per connected client, the peer
 * of bench/m5idle.c (docs/benchmarks.md, "Idle devices and registration storm"). Not a
 * product part. Raw sockets + OpenSSL on one epoll loop (libmosquitto keeps a thread-free but
 * much heavier client per connection; the generator's own weight does not matter to the
 * figure, which is the broker's RSS, but 10,000 of them should fit on a small machine).
 *
 *   mqidle --print-psk --clients N        the broker's psk_file lines ("idle-<i>:hexkey")
 *   mqidle --port P --clients N [--parallel 32] [--server-pid PID] [--settle S] [--hold S]
 *          [--timeout S] [--label NAME] [--host 127.0.0.1]
 *
 * Each client: TCP, TLS 1.3 with an external PSK (identity idle-<i>, TLS_AES_128_GCM_SHA256
 * and X25519 (EC)DHE, as m5s negotiates: psk_dhe_ke), MQTT 3.1.1 CONNECT (clean session,
 * keep-alive 0: the broker never expects a PINGREQ), CONNACK 0, then idle. Same measurement
 * as m5idle: the broker's VmRSS before the first connect and --settle seconds after the last
 * CONNACK. Prints
 *   RESULT system=<label> transport=tls clients=N connected= failed= connect_s= connects_per_s=
 *   rss0_kib= rss1_kib= kib_per_client= gen_rss_kib= suite= group=
 * and exits 0 when every client connected and none was dropped. */
#include "procstat.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/objects.h>
#include <openssl/ssl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

enum { C_IDLE, C_CONNECTING, C_TLS, C_MQTT, C_UP, C_DEAD };

typedef struct {
  int fd, st, idx;
  SSL *ssl;
  uint8_t in[4];
  int in_len;
} mq_t;

static struct {
  int n, parallel, server_pid, epfd, opening, up, dead, next;
  double settle_s, hold_s, timeout_s;
  const char *label, *host;
  int port;
  SSL_CTX *ctx;
  mq_t *c;
  uint64_t t_first, t_last;
  char suite[64], group[32];
} M;

static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* The PSK of client i: HMAC-SHA256("mqidle", identity), 32 bytes. */
static void psk_of(const char *id, uint8_t key[32]) {
  unsigned int len = 32;
  HMAC(EVP_sha256(), "mqidle", 6, (const unsigned char *)id, strlen(id), key, &len);
}

static int psk_use_cb(SSL *ssl, const EVP_MD *md, const unsigned char **id, size_t *idlen,
                      SSL_SESSION **sess) {
  (void)md;
  mq_t *c = SSL_get_app_data(ssl);
  static char ident[32];
  snprintf(ident, sizeof ident, "idle-%d", c->idx);
  uint8_t key[32];
  psk_of(ident, key);
  SSL_SESSION *s = SSL_SESSION_new();
  const SSL_CIPHER *ciph = SSL_CIPHER_find(ssl, (const unsigned char[]){0x13, 0x01});
  int ok = s && ciph && SSL_SESSION_set1_master_key(s, key, sizeof key) &&
           SSL_SESSION_set_cipher(s, ciph) && SSL_SESSION_set_protocol_version(s, TLS1_3_VERSION);
  OPENSSL_cleanse(key, sizeof key);
  if (!ok) {
    SSL_SESSION_free(s);
    return 0;
  }
  *id = (const unsigned char *)ident;
  *idlen = strlen(ident);
  *sess = s;
  return 1;
}

static void set_ev(mq_t *c, uint32_t ev) {
  struct epoll_event e = {.events = ev, .data.ptr = c};
  epoll_ctl(M.epfd, EPOLL_CTL_MOD, c->fd, &e);
}

static void kill_c(mq_t *c, const char *why) {
  static int shown;
  if (shown++ < 5) fprintf(stderr, "mqidle: idle-%d: %s\n", c->idx, why);
  if (c->st != C_UP) M.opening--;
  else M.up--;
  c->st = C_DEAD;
  M.dead++;
  if (c->ssl) SSL_free(c->ssl);
  c->ssl = NULL;
  close(c->fd);
}

static void start(mq_t *c) {
  c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
  struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)M.port)};
  inet_pton(AF_INET, M.host, &sa.sin_addr);
  int one = 1;
  setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  M.opening++;
  c->st = C_CONNECTING;
  struct epoll_event e = {.events = EPOLLOUT, .data.ptr = c};
  if (c->fd < 0 || epoll_ctl(M.epfd, EPOLL_CTL_ADD, c->fd, &e) ||
      (connect(c->fd, (struct sockaddr *)&sa, sizeof sa) && errno != EINPROGRESS)) {
    kill_c(c, "cannot connect");
  }
}

static void drive(mq_t *c) {
  if (c->st == C_CONNECTING) {
    int err = 0;
    socklen_t l = sizeof err;
    getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &l);
    if (err) {
      kill_c(c, strerror(err));
      return;
    }
    c->ssl = SSL_new(M.ctx);
    if (!c->ssl) {
      kill_c(c, "SSL_new");
      return;
    }
    SSL_set_app_data(c->ssl, c);
    SSL_set_fd(c->ssl, c->fd);
    SSL_set_connect_state(c->ssl);
    c->st = C_TLS;
  }
  if (c->st == C_TLS) {
    ERR_clear_error();
    int r = SSL_do_handshake(c->ssl);
    if (r != 1) {
      int e = SSL_get_error(c->ssl, r);
      if (e == SSL_ERROR_WANT_READ) set_ev(c, EPOLLIN);
      else if (e == SSL_ERROR_WANT_WRITE) set_ev(c, EPOLLOUT);
      else kill_c(c, "TLS handshake failed");
      return;
    }
    if (!M.suite[0]) {
      snprintf(M.suite, sizeof M.suite, "%s", SSL_get_cipher_name(c->ssl));
      int g = (int)SSL_get_negotiated_group(c->ssl);
      snprintf(M.group, sizeof M.group, "%s", g ? OBJ_nid2sn(g) : "none");
    }
    char pkt[64];
    char id[32];
    int idn = snprintf(id, sizeof id, "idle-%d", c->idx);
    int rem = 10 + 2 + idn;
    int k = 0;
    pkt[k++] = 0x10;
    pkt[k++] = (char)rem;
    memcpy(pkt + k, "\0\4MQTT\4\2\0\0", 10); /* protocol 4, clean session, keep-alive 0 */
    k += 10;
    pkt[k++] = 0;
    pkt[k++] = (char)idn;
    memcpy(pkt + k, id, (size_t)idn);
    k += idn;
    if (SSL_write(c->ssl, pkt, k) != k) {
      kill_c(c, "CONNECT not written");
      return;
    }
    c->st = C_MQTT;
    set_ev(c, EPOLLIN);
  }
  if (c->st == C_MQTT || c->st == C_UP) {
    for (;;) {
      uint8_t b[64];
      ERR_clear_error();
      int r = SSL_read(c->ssl, b, sizeof b);
      if (r <= 0) {
        int e = SSL_get_error(c->ssl, r);
        if (e == SSL_ERROR_WANT_READ) return;
        kill_c(c, c->st == C_UP ? "lost (closed by the broker)" : "no CONNACK");
        return;
      }
      if (c->st == C_UP) {
        kill_c(c, "unexpected data from the broker");
        return;
      }
      for (int i = 0; i < r && c->in_len < 4; i++)
        c->in[c->in_len++] = b[i];
      if (c->in_len == 4) {
        if (c->in[0] != 0x20 || c->in[1] != 2 || c->in[3] != 0) {
          kill_c(c, "CONNACK refused");
          return;
        }
        c->st = C_UP;
        M.opening--;
        M.up++;
        M.t_last = now_ns();
      }
    }
  }
}

static void usage(void) {
  fprintf(stderr, "usage: mqidle --print-psk --clients N\n"
                  "       mqidle [--host 127.0.0.1] --port P --clients N [--parallel 32]\n"
                  "              [--server-pid PID] [--settle 2] [--hold 0] [--timeout 300]\n"
                  "              [--label mosquitto]\n");
  exit(2);
}

int main(int argc, char **argv) {
  int print = 0;
  M.parallel = 32;
  M.settle_s = 2;
  M.timeout_s = 300;
  M.label = "mosquitto";
  M.host = "127.0.0.1";
  static const struct option lo[] = {
      {"host", 1, 0, 'h'},   {"port", 1, 0, 'p'},  {"clients", 1, 0, 'n'},
      {"parallel", 1, 0, 'P'}, {"server-pid", 1, 0, 'S'}, {"settle", 1, 0, 's'},
      {"hold", 1, 0, 'H'},   {"timeout", 1, 0, 'T'}, {"label", 1, 0, 'l'},
      {"print-psk", 0, 0, 'x'}, {0, 0, 0, 0}};
  int opt;
  while ((opt = getopt_long(argc, argv, "", lo, NULL)) != -1) {
    switch (opt) {
    case 'h': M.host = optarg; break;
    case 'p': M.port = atoi(optarg); break;
    case 'n': M.n = atoi(optarg); break;
    case 'P': M.parallel = atoi(optarg); break;
    case 'S': M.server_pid = atoi(optarg); break;
    case 's': M.settle_s = atof(optarg); break;
    case 'H': M.hold_s = atof(optarg); break;
    case 'T': M.timeout_s = atof(optarg); break;
    case 'l': M.label = optarg; break;
    case 'x': print = 1; break;
    default: usage();
    }
  }
  if (M.n < 1 || M.n > 10000000) usage();
  if (print) {
    for (int i = 0; i < M.n; i++) {
      char id[32];
      uint8_t key[32];
      snprintf(id, sizeof id, "idle-%d", i);
      psk_of(id, key);
      printf("%s:", id);
      for (int k = 0; k < 32; k++)
        printf("%02x", key[k]);
      printf("\n");
      OPENSSL_cleanse(key, sizeof key);
    }
    return 0;
  }
  if (M.port < 1 || M.port > 65535 || M.parallel < 1 || M.timeout_s <= 0) usage();
  signal(SIGPIPE, SIG_IGN);
  bench_raise_nofile("mqidle", M.n);
  M.ctx = SSL_CTX_new(TLS_client_method());
  if (!M.ctx || !SSL_CTX_set_min_proto_version(M.ctx, TLS1_3_VERSION) ||
      !SSL_CTX_set_ciphersuites(M.ctx, "TLS_AES_128_GCM_SHA256") ||
      !SSL_CTX_set1_groups_list(M.ctx, "X25519")) {
    fprintf(stderr, "mqidle: cannot set up OpenSSL\n");
    return 1;
  }
  SSL_CTX_set_verify(M.ctx, SSL_VERIFY_NONE, NULL);
  SSL_CTX_set_psk_use_session_callback(M.ctx, psk_use_cb);
  SSL_CTX_set_mode(M.ctx, SSL_MODE_RELEASE_BUFFERS);
  M.c = calloc((size_t)M.n, sizeof *M.c);
  M.epfd = epoll_create1(0);
  if (!M.c || M.epfd < 0) return 1;
  for (int i = 0; i < M.n; i++)
    M.c[i].idx = i;
  long rss0 = bench_proc_rss_kib(M.server_pid), rss1 = -1;
  fprintf(stderr, "mqidle: %d clients, %d at once; broker RSS %ld KiB\n", M.n, M.parallel, rss0);
  uint64_t t0 = now_ns(), t_settled = 0, t_meas = 0;
  M.t_first = t0;
  int rc = 0;
  for (;;) {
    while (M.next < M.n && M.opening < M.parallel)
      start(&M.c[M.next++]);
    struct epoll_event ev[256];
    int k = epoll_wait(M.epfd, ev, 256, 5);
    for (int i = 0; i < k; i++) {
      mq_t *c = ev[i].data.ptr;
      if (c->st != C_DEAD) drive(c);
    }
    uint64_t now = now_ns();
    if (M.dead) {
      rc = 1;
      break;
    }
    if (now - t0 > (uint64_t)(M.timeout_s * 1e9)) {
      fprintf(stderr, "mqidle: timeout: %d of %d connected\n", M.up, M.n);
      rc = 1;
      break;
    }
    if (!t_settled && M.up == M.n) {
      t_settled = now;
      fprintf(stderr, "mqidle: %d connected in %.2f s; idle for %.1f s\n", M.up,
              (double)(M.t_last - M.t_first) / 1e9, M.settle_s);
    }
    if (t_settled && !t_meas && now - t_settled >= (uint64_t)(M.settle_s * 1e9)) {
      t_meas = now;
      rss1 = bench_proc_rss_kib(M.server_pid);
    }
    if (t_meas && now - t_meas >= (uint64_t)(M.hold_s * 1e9)) break;
  }
  double cs = M.t_last > M.t_first ? (double)(M.t_last - M.t_first) / 1e9 : 0;
  printf("RESULT system=%s transport=tls clients=%d connected=%d failed=%d connect_s=%.3f "
         "connects_per_s=%.1f rss0_kib=%ld rss1_kib=%ld kib_per_client=%.2f gen_rss_kib=%ld "
         "suite=%s group=%s\n",
         M.label, M.n, M.up, M.dead, cs, cs > 0 ? M.up / cs : 0.0, rss0, rss1,
         t_meas && M.up ? (double)(rss1 - rss0) / M.up : 0.0, bench_proc_rss_kib(0),
         M.suite[0] ? M.suite : "none", M.group[0] ? M.group : "none");
  fflush(stdout);
  if (!t_meas) rc = 1;
  for (int i = 0; i < M.n; i++) {
    mq_t *c = &M.c[i];
    if (c->st == C_IDLE || c->st == C_DEAD) continue;
    if (c->ssl) SSL_free(c->ssl);
    close(c->fd);
  }
  free(M.c);
  SSL_CTX_free(M.ctx);
  return rc;
}
