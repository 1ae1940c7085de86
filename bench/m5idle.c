/* m5idle: idle UEs for m5s's memory per connected device and its registration storm
 * (docs/benchmarks.md, "Idle devices and registration storm"). Not a product part.
 *
 *   m5idle --print-subscribers --clients N
 *     the subscribers, one "SUPI K_AUSF(hex) UE-Service-ID" line each, for
 *     `m5ctl subscriber import`: idle-<i>, SUPI 0010196<i as 8 digits>, K_AUSF f9..f9<i>.
 *   m5idle --port P --clients N [--dtls] [--parallel 32] [--server-pid PID] [--metrics-port M]
 *          [--settle S] [--hold S] [--timeout S] [--label NAME] [--host H] [--fqdn F]
 *     N UEs on one loop (bench/bu.c: libm5c channel, TLS 1.3 or DTLS 1.2 with the AKMA PSK,
 *     REG of the UE Service ID), at most --parallel handshakes + REGs at once. Once every UE is
 *     registered (the storm: connects_per_s = registered / time from the first open to the last
 *     REG answer) the UEs stay idle for --settle seconds, then the server's RSS (VmRSS of
 *     /proc/PID/status) is read again, and the SQLite heap m5s reports on /metrics
 *     (msgin5g_store_sqlite_memory_bytes: page cache and statements) at both points, so that
 *     kib_per_client = (RSS growth - SQLite heap growth) / N excludes the store's cache. Then
 *     --hold more seconds idle; a session lost at any point after registration fails the run.
 *     Prints one line:
 *       RESULT system=<label> transport=tls|dtls clients=N registered= dead= lost= refused=
 *       retries= connect_s= connects_per_s= rss0_kib= rss1_kib= sqlite0_kib= sqlite1_kib=
 *       kib_per_client= gen_rss_kib= srv_cpu_us_per_connect= gen_cpu_us_per_connect=
 *     (CPU: utime + stime of the server, and of m5idle itself, from the first open to the last
 *     REG answer, per registered UE)
 *     Exit 0 when every UE registered and none was lost, 1 otherwise. */
#include "bu.h"
#include "procstat.h"

#include "core/err.h"
#include "core/log.h"
#include "crypto/codec.h"

#include <arpa/inet.h>
#include <getopt.h>
#include <netinet/in.h>
#include <openssl/crypto.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#define TICK_MS 5u

static struct {
  m5_loop_t *loop;
  bu_pool_t pool;
  const char *label;
  int n, dtls, server_pid, metrics_port;
  double settle_s, hold_s, timeout_s;
  uint64_t t_start, t_settled, t_measured;
  long rss0, rss1, sq0, sq1;
  double srv_cpu0, srv_cpu1, gen_cpu0, gen_cpu1; /* over the connect phase */
  int exit_code, printed;
} G;

static void subscriber(int i, char *id, size_t idcap, char supi[16], uint8_t kausf[32]) {
  snprintf(id, idcap, "idle-%d", i);
  snprintf(supi, 16, "0010196%08u", (unsigned)i % 100000000u);
  memset(kausf, 0xf9, 32);
  kausf[28] = (uint8_t)(i >> 24);
  kausf[29] = (uint8_t)(i >> 16);
  kausf[30] = (uint8_t)(i >> 8);
  kausf[31] = (uint8_t)i;
}

/* msgin5g_store_sqlite_memory_bytes from m5s's /metrics (plain HTTP/1.1 on loopback), in KiB;
 * 0 without --metrics-port, -1 when it cannot be read. */
static long sqlite_kib(void) {
  if (!G.metrics_port) return 0;
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return -1;
  struct timeval tv = {5, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)G.metrics_port)};
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  static char buf[65536];
  size_t n = 0;
  const char req[] = "GET /metrics HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: close\r\n\r\n";
  if (connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0 &&
      send(fd, req, sizeof req - 1, MSG_NOSIGNAL) == (ssize_t)(sizeof req - 1)) {
    ssize_t r;
    while (n < sizeof buf - 1 && (r = recv(fd, buf + n, sizeof buf - 1 - n, 0)) > 0)
      n += (size_t)r;
  }
  close(fd);
  buf[n] = 0;
  const char *p = strstr(buf, "\nmsgin5g_store_sqlite_memory_bytes ");
  if (!p) return -1;
  return atol(p + sizeof "\nmsgin5g_store_sqlite_memory_bytes " - 1) / 1024;
}

static void finish(void) {
  if (!G.printed) {
    G.printed = 1;
    const bu_pool_t *p = &G.pool;
    double cs = p->t_last_ready > p->t_first_open
                    ? (double)(p->t_last_ready - p->t_first_open) / 1e9
                    : 0;
    double per = 0;
    if (G.t_measured && p->n_ready > 0)
      per = ((double)(G.rss1 - G.rss0) - (double)(G.sq1 - G.sq0)) / (double)p->n_ready;
    printf("RESULT system=%s transport=%s clients=%d registered=%d dead=%d lost=%d refused=%d "
           "retries=%d connect_s=%.3f connects_per_s=%.1f rss0_kib=%ld rss1_kib=%ld "
           "sqlite0_kib=%ld sqlite1_kib=%ld kib_per_client=%.2f gen_rss_kib=%ld "
           "srv_cpu_us_per_connect=%.1f gen_cpu_us_per_connect=%.1f\n",
           G.label, G.dtls ? "dtls" : "tls", G.n, G.t_settled ? p->n_ready : p->n_ready,
           p->n_dead, p->n_lost, p->n_refused, p->retries, cs,
           cs > 0 ? (double)p->n_ready / cs : 0.0, G.rss0, G.rss1, G.sq0, G.sq1, per,
           bench_proc_rss_kib(0), p->n_ready ? (G.srv_cpu1 - G.srv_cpu0) / p->n_ready : 0.0,
           p->n_ready ? (G.gen_cpu1 - G.gen_cpu0) / p->n_ready : 0.0);
    fflush(stdout);
    if (!G.t_measured || p->n_dead || p->n_lost || p->n_ready != G.n) G.exit_code = 1;
  }
  m5_loop_stop(G.loop);
}

static void on_down(bu_ue_t *u, int lost, const char *why, void *arg) {
  (void)arg;
  static int shown;
  if (shown++ < 5) fprintf(stderr, "m5idle: %s %s: %s\n", u->id, lost ? "lost" : "failed", why);
}

static void tick(m5_loop_t *l, void *arg) {
  (void)arg;
  uint64_t now = bu_now_ns();
  bu_pool_open(&G.pool);
  if (G.pool.n_lost) {
    finish();
    return;
  }
  if (now - G.t_start > (uint64_t)(G.timeout_s * 1e9)) {
    fprintf(stderr, "m5idle: timeout after %.0f s: %d of %d registered\n", G.timeout_s,
            G.pool.n_ready, G.n);
    finish();
    return;
  }
  if (!G.t_settled && bu_pool_settled(&G.pool)) {
    G.t_settled = now;
    G.srv_cpu1 = G.server_pid ? 1e6 * bench_proc_cpu_s(G.server_pid, NULL) : 0;
    G.gen_cpu1 = 1e6 * bench_proc_cpu_s(0, NULL);
    G.pool.frozen = 1; /* from here on a session going down is lost */
    fprintf(stderr, "m5idle: %d registered, %d failed in %.2f s; idle for %.1f s\n",
            G.pool.n_ready, G.pool.n_dead,
            (double)(G.pool.t_last_ready - G.pool.t_first_open) / 1e9, G.settle_s);
    if (G.pool.n_dead) {
      finish();
      return;
    }
  }
  if (G.t_settled && !G.t_measured && now - G.t_settled >= (uint64_t)(G.settle_s * 1e9)) {
    G.t_measured = now;
    G.rss1 = bench_proc_rss_kib(G.server_pid);
    G.sq1 = sqlite_kib();
  }
  if (G.t_measured && now - G.t_measured >= (uint64_t)(G.hold_s * 1e9)) {
    finish();
    return;
  }
  m5_loop_timer_add(l, TICK_MS, tick, NULL);
}

static void usage(void) {
  fprintf(stderr,
          "usage: m5idle --print-subscribers --clients N\n"
          "       m5idle [--host 127.0.0.1] --port P [--fqdn localhost] --clients N [--dtls]\n"
          "              [--parallel 32] [--server-pid PID] [--metrics-port P] [--settle 2]\n"
          "              [--hold 0] [--timeout 300] [--label m5s]\n");
  exit(2);
}

int main(int argc, char **argv) {
  const char *host = "127.0.0.1", *fqdn = "localhost";
  int port = 0, print = 0, parallel = 32;
  G.label = "m5s";
  G.settle_s = 2;
  G.timeout_s = 300;
  static const struct option lo[] = {{"host", 1, 0, 'h'},         {"port", 1, 0, 'p'},
                                     {"fqdn", 1, 0, 'f'},         {"clients", 1, 0, 'n'},
                                     {"dtls", 0, 0, 'D'},         {"parallel", 1, 0, 'P'},
                                     {"server-pid", 1, 0, 'S'},   {"metrics-port", 1, 0, 'M'},
                                     {"settle", 1, 0, 's'},       {"hold", 1, 0, 'H'},
                                     {"timeout", 1, 0, 'T'},      {"label", 1, 0, 'l'},
                                     {"print-subscribers", 0, 0, 'x'}, {0, 0, 0, 0}};
  int opt;
  while ((opt = getopt_long(argc, argv, "", lo, NULL)) != -1) {
    switch (opt) {
    case 'h': host = optarg; break;
    case 'p': port = atoi(optarg); break;
    case 'f': fqdn = optarg; break;
    case 'n': G.n = atoi(optarg); break;
    case 'D': G.dtls = 1; break;
    case 'P': parallel = atoi(optarg); break;
    case 'S': G.server_pid = atoi(optarg); break;
    case 'M': G.metrics_port = atoi(optarg); break;
    case 's': G.settle_s = atof(optarg); break;
    case 'H': G.hold_s = atof(optarg); break;
    case 'T': G.timeout_s = atof(optarg); break;
    case 'l': G.label = optarg; break;
    case 'x': print = 1; break;
    default: usage();
    }
  }
  if (G.n < 1 || G.n > 10000000) usage();
  if (print) {
    for (int i = 0; i < G.n; i++) {
      char id[64], supi[16], hex[65];
      uint8_t kausf[32];
      subscriber(i, id, sizeof id, supi, kausf);
      m5_hex_encode(kausf, 32, hex, sizeof hex);
      OPENSSL_cleanse(kausf, sizeof kausf);
      printf("%s %s %s\n", supi, hex, id);
    }
    return 0;
  }
  if (port < 1 || port > 65535 || parallel < 1 || G.settle_s < 0 || G.hold_s < 0 ||
      G.timeout_s <= 0 || G.metrics_port < 0 || G.metrics_port > 65535)
    usage();

  signal(SIGPIPE, SIG_IGN);
  m5_log_set_level(M5_LOG_WARN);
  bench_raise_nofile("m5idle", G.n);
  char err[256];
  G.loop = m5_loop_new();
  SSL_CTX *ctx = m5_akma_client_ctx_new(G.dtls, 0, err, sizeof err);
  if (!G.loop || !ctx) {
    fprintf(stderr, "m5idle: %s\n", ctx ? "out of memory" : err);
    return 1;
  }
  static const bu_cbs_t cbs = {NULL, NULL, on_down};
  if (bu_pool_init(&G.pool, G.loop, ctx, host, (uint16_t)port, G.n, &cbs, NULL)) return 1;
  G.pool.copts.transport = G.dtls ? M5C_DTLS : M5C_TLS;
  G.pool.max_opening = parallel;
  G.pool.quiet = 1;
  for (int i = 0; i < G.n; i++) {
    char supi[16];
    uint8_t kausf[32];
    subscriber(i, G.pool.ue[i].id, sizeof G.pool.ue[i].id, supi, kausf);
    int rc = bu_cred(supi, kausf, fqdn, &G.pool.ue[i].cred);
    OPENSSL_cleanse(kausf, sizeof kausf);
    if (rc) {
      fprintf(stderr, "m5idle: cannot derive the AKMA credentials\n");
      return 1;
    }
  }
  G.rss0 = bench_proc_rss_kib(G.server_pid);
  G.sq0 = sqlite_kib();
  if ((G.server_pid && G.rss0 < 0) || G.sq0 < 0) {
    fprintf(stderr, "m5idle: cannot read the server's %s\n",
            G.sq0 < 0 ? "msgin5g_store_sqlite_memory_bytes (--metrics-port)" : "RSS");
    return 1;
  }
  G.srv_cpu0 = G.server_pid ? 1e6 * bench_proc_cpu_s(G.server_pid, NULL) : 0;
  G.gen_cpu0 = 1e6 * bench_proc_cpu_s(0, NULL);
  G.t_start = bu_now_ns();
  fprintf(stderr, "m5idle: %d UEs over %s, %d handshakes at once; server RSS %ld KiB\n", G.n,
          G.dtls ? "DTLS 1.2" : "TLS 1.3", parallel, G.rss0);
  m5_loop_timer_add(G.loop, 0, tick, NULL);
  m5_loop_run(G.loop);
  if (!G.printed) finish();
  bu_pool_free(&G.pool);
  SSL_CTX_free(ctx);
  m5_loop_free(G.loop);
  return G.exit_code;
}
