/* storm: the raw OpenSSL TLS 1.3 PSK handshake rate, the reference of m5s's registration storm
 * (docs/benchmarks.md, "Idle devices and registration storm"). Not a product part.
 *
 *   storm --serve --port P [--workers 2]
 *     a bare PSK server: W threads, each with its own SO_REUSEPORT listener and epoll loop
 *     (as m5s's workers), non-blocking SSL_accept, the PSK found from the identity by one
 *     HMAC (what a warm K_AF lookup would cost at most), no ALPN, no application data: the
 *     connection is kept until the client closes it. Runs until SIGTERM.
 *   storm --port P --connects N [--parallel 32] [--label raw_psk] [--timeout S] [--server-pid PID]
 *     N handshakes, --parallel at once; each connection is kept open (as m5idle keeps its UEs,
 *     so that both servers end up holding N connections) and all are closed (close_notify)
 *     once every handshake is done. Prints
 *       RESULT system=<label> connects=N done= failed= seconds= connects_per_s= suite= group=
 *       srv_cpu_us_per_connect= gen_cpu_us_per_connect= rss_kib_per_conn=
 *     (utime + stime per handshake; the server's RSS growth per connection held, read once
 *     the last handshake is done: what OpenSSL alone keeps per idle TLS session, with
 *     SSL_MODE_RELEASE_BUFFERS, plus a socket and a 40-byte record)
 *
 * `openssl s_server`/`s_time` cannot be the reference: s_server serves one connection at a
 * time on one thread, and s_time has no PSK option. Both sides here use what m5s and libm5c
 * use: TLS 1.3 only, TLS_AES_128_GCM_SHA256 first (server preference) then ChaCha20-Poly1305,
 * groups X25519 then P-256, psk_dhe_ke, no session tickets, SSL_MODE_RELEASE_BUFFERS. The
 * negotiated suite and group are printed. */
#include "procstat.h"

#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/objects.h>
#include <openssl/ssl.h>
#include <pthread.h>
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

#define SUITES "TLS_AES_128_GCM_SHA256:TLS_CHACHA20_POLY1305_SHA256"
#define GROUPS "X25519:P-256"

typedef struct conn {
  int fd, idx, up;
  SSL *ssl;
  struct conn *next; /* client: the connections held open */
} conn_t;

static int port, workers = 2;
static volatile sig_atomic_t stop;

static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static int psk_of(const unsigned char *id, size_t n, uint8_t key[32]) {
  unsigned int len = 32;
  return HMAC(EVP_sha256(), "storm", 5, id, n, key, &len) != NULL;
}

static SSL_SESSION *psk_session(SSL *ssl, const unsigned char *id, size_t n) {
  uint8_t key[32];
  SSL_SESSION *s = SSL_SESSION_new();
  const SSL_CIPHER *c = SSL_CIPHER_find(ssl, (const unsigned char[]){0x13, 0x01});
  int ok = s && c && psk_of(id, n, key) && SSL_SESSION_set1_master_key(s, key, sizeof key) &&
           SSL_SESSION_set_cipher(s, c) && SSL_SESSION_set_protocol_version(s, TLS1_3_VERSION);
  OPENSSL_cleanse(key, sizeof key);
  if (!ok) {
    SSL_SESSION_free(s);
    return NULL;
  }
  return s;
}

static int find_cb(SSL *ssl, const unsigned char *id, size_t n, SSL_SESSION **sess) {
  *sess = psk_session(ssl, id, n);
  return 1; /* no session: unknown identity, the handshake fails */
}

static int use_cb(SSL *ssl, const EVP_MD *md, const unsigned char **id, size_t *idlen,
                  SSL_SESSION **sess) {
  (void)md;
  conn_t *c = SSL_get_app_data(ssl);
  static char ident[32];
  snprintf(ident, sizeof ident, "storm-%d", c->idx);
  *id = (const unsigned char *)ident;
  *idlen = strlen(ident);
  *sess = psk_session(ssl, *id, *idlen);
  return *sess != NULL;
}

static SSL_CTX *ctx_new(int server) {
  SSL_CTX *ctx = SSL_CTX_new(server ? TLS_server_method() : TLS_client_method());
  if (!ctx || !SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION) ||
      !SSL_CTX_set_ciphersuites(ctx, SUITES) || !SSL_CTX_set1_groups_list(ctx, GROUPS) ||
      !SSL_CTX_set_num_tickets(ctx, 0))
    return NULL;
  SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET | SSL_OP_CIPHER_SERVER_PREFERENCE);
  SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
  SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
  if (server)
    SSL_CTX_set_psk_find_session_callback(ctx, find_cb);
  else
    SSL_CTX_set_psk_use_session_callback(ctx, use_cb);
  return ctx;
}

static void conn_free(conn_t *c) {
  if (c->ssl) SSL_free(c->ssl);
  close(c->fd);
  free(c);
}

/* ---- server ---- */

static void *serve_thread(void *arg) {
  SSL_CTX *ctx = arg;
  int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0), one = 1;
  setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  setsockopt(lfd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
  struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (bind(lfd, (struct sockaddr *)&sa, sizeof sa) || listen(lfd, 4096)) {
    perror("storm: listen");
    exit(1);
  }
  int ep = epoll_create1(0);
  struct epoll_event e = {.events = EPOLLIN, .data.ptr = NULL};
  epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &e);
  while (!stop) {
    struct epoll_event ev[128];
    int k = epoll_wait(ep, ev, 128, 100);
    for (int i = 0; i < k; i++) {
      conn_t *c = ev[i].data.ptr;
      if (!c) {
        int fd;
        while ((fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK)) >= 0) {
          setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
          c = calloc(1, sizeof *c);
          c->fd = fd;
          c->ssl = SSL_new(ctx);
          SSL_set_fd(c->ssl, fd);
          SSL_set_accept_state(c->ssl);
          struct epoll_event ce = {.events = EPOLLIN, .data.ptr = c};
          epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ce);
        }
        continue;
      }
      ERR_clear_error();
      int r = 0;
      if (!c->up) {
        r = SSL_do_handshake(c->ssl);
        if (r == 1) c->up = 1;
      }
      if (c->up) {
        char b[256];
        r = SSL_read(c->ssl, b, sizeof b);
      }
      if (r <= 0) {
        int err = SSL_get_error(c->ssl, r);
        if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE) {
          struct epoll_event ce = {.events = err == SSL_ERROR_WANT_READ ? EPOLLIN : EPOLLOUT,
                                   .data.ptr = c};
          epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ce);
          continue;
        }
        epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
        conn_free(c);
      }
    }
  }
  return NULL;
}

static void on_term(int sig) {
  (void)sig;
  stop = 1;
}

/* ---- client ---- */

static int run_client(int n, int parallel, const char *label, double timeout_s, int srv_pid) {
  SSL_CTX *ctx = ctx_new(0);
  int ep = epoll_create1(0);
  if (!ctx || ep < 0) return 1;
  int next = 0, open = 0, done = 0, failed = 0;
  conn_t *held = NULL;
  char suite[64] = "none", group[32] = "none";
  double srv0 = srv_pid ? 1e6 * bench_proc_cpu_s(srv_pid, NULL) : 0, gen0 = 1e6 * bench_proc_cpu_s(0, NULL);
  long rss0 = srv_pid ? bench_proc_rss_kib(srv_pid) : -1, rss1 = -1;
  uint64_t t0 = now_ns(), t_last = t0;
  while (done + failed < n) {
    while (next < n && open < parallel) {
      conn_t *c = calloc(1, sizeof *c);
      c->idx = next++;
      c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
      int one = 1;
      setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
      struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
      sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
      c->ssl = SSL_new(ctx);
      SSL_set_app_data(c->ssl, c);
      SSL_set_fd(c->ssl, c->fd);
      SSL_set_connect_state(c->ssl);
      struct epoll_event e = {.events = EPOLLOUT, .data.ptr = c};
      epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &e);
      if (connect(c->fd, (struct sockaddr *)&sa, sizeof sa) && errno != EINPROGRESS) {
        failed++;
        conn_free(c);
        continue;
      }
      open++;
    }
    struct epoll_event ev[256];
    int k = epoll_wait(ep, ev, 256, 100);
    for (int i = 0; i < k; i++) {
      conn_t *c = ev[i].data.ptr;
      ERR_clear_error();
      int r = SSL_do_handshake(c->ssl);
      if (r == 1) {
        if (!done) {
          snprintf(suite, sizeof suite, "%s", SSL_get_cipher_name(c->ssl));
          int g = (int)SSL_get_negotiated_group(c->ssl);
          snprintf(group, sizeof group, "%s", g ? OBJ_nid2sn(g) : "none");
        }
        done++;
        /* kept open until every handshake is done, as m5idle keeps its UEs: the server
         * side then pays for the connections it holds, as m5s does */
        epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
        c->up = 1;
        c->next = held;
        held = c;
        open--;
        t_last = now_ns();
        continue;
      } else {
        int err = SSL_get_error(c->ssl, r);
        if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE) {
          struct epoll_event e = {.events = err == SSL_ERROR_WANT_READ ? EPOLLIN : EPOLLOUT,
                                  .data.ptr = c};
          epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &e);
          continue;
        }
        if (failed++ < 3) fprintf(stderr, "storm: handshake %d failed\n", c->idx);
      }
      epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
      conn_free(c);
      open--;
      t_last = now_ns();
    }
    if (now_ns() - t0 > (uint64_t)(timeout_s * 1e9)) {
      fprintf(stderr, "storm: timeout: %d of %d done\n", done, n);
      break;
    }
  }
  if (srv_pid) rss1 = bench_proc_rss_kib(srv_pid); /* every connection still open */
  double s = (double)(t_last - t0) / 1e9;
  double srv1 = srv_pid ? 1e6 * bench_proc_cpu_s(srv_pid, NULL) : 0, gen1 = 1e6 * bench_proc_cpu_s(0, NULL);
  printf("RESULT system=%s connects=%d done=%d failed=%d seconds=%.3f connects_per_s=%.1f "
         "suite=%s group=%s srv_cpu_us_per_connect=%.1f gen_cpu_us_per_connect=%.1f "
         "rss_kib_per_conn=%.2f\n",
         label, n, done, failed, s, s > 0 ? done / s : 0.0, suite, group,
         done ? (srv1 - srv0) / done : 0.0, done ? (gen1 - gen0) / done : 0.0,
         done && rss0 >= 0 && rss1 >= 0 ? (double)(rss1 - rss0) / done : 0.0);
  while (held) {
    conn_t *c = held;
    held = c->next;
    SSL_shutdown(c->ssl);
    conn_free(c);
  }
  SSL_CTX_free(ctx);
  return done == n ? 0 : 1;
}

static void usage(void) {
  fprintf(stderr, "usage: storm --serve --port P [--workers 2]\n"
                  "       storm --port P --connects N [--parallel 32] [--label raw_psk] "
                  "[--timeout 120] [--server-pid PID]\n");
  exit(2);
}

int main(int argc, char **argv) {
  int serve = 0, n = 0, parallel = 32, srv_pid = 0;
  double timeout_s = 120;
  const char *label = "raw_psk";
  static const struct option lo[] = {{"serve", 0, 0, 'x'},    {"port", 1, 0, 'p'},
                                     {"workers", 1, 0, 'w'},  {"connects", 1, 0, 'n'},
                                     {"parallel", 1, 0, 'P'}, {"label", 1, 0, 'l'},
                                     {"timeout", 1, 0, 'T'},  {"server-pid", 1, 0, 'S'},
                                     {0, 0, 0, 0}};
  int opt;
  while ((opt = getopt_long(argc, argv, "", lo, NULL)) != -1) {
    switch (opt) {
    case 'x': serve = 1; break;
    case 'p': port = atoi(optarg); break;
    case 'w': workers = atoi(optarg); break;
    case 'n': n = atoi(optarg); break;
    case 'P': parallel = atoi(optarg); break;
    case 'l': label = optarg; break;
    case 'T': timeout_s = atof(optarg); break;
    case 'S': srv_pid = atoi(optarg); break;
    default: usage();
    }
  }
  if (port < 1 || port > 65535 || workers < 1 || workers > 64 || parallel < 1) usage();
  signal(SIGPIPE, SIG_IGN);
  if (!serve) {
    if (n < 1) usage();
    return run_client(n, parallel, label, timeout_s, srv_pid);
  }
  signal(SIGTERM, on_term);
  signal(SIGINT, on_term);
  SSL_CTX *ctx = ctx_new(1);
  if (!ctx) return 1;
  pthread_t t[64];
  for (int i = 0; i < workers; i++)
    pthread_create(&t[i], NULL, serve_thread, ctx);
  for (int i = 0; i < workers; i++)
    pthread_join(t[i], NULL);
  SSL_CTX_free(ctx);
  return 0;
}
