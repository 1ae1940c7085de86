/* mqload: the Mosquitto side of docs/benchmarks.md. One process, one epoll loop, 2N
 * libmosquitto clients over TLS-PSK (the broker negotiates TLS 1.3), driven through
 * mosquitto_loop_read / _write / _misc on their sockets (no libmosquitto threads). Sender k
 * publishes QoS 1 to its own topic bench/<k>; receiver k is its only subscriber (QoS 1). The
 * pattern and the report are lc.c's, as for m5load.
 *
 *   mqload --print-psk --pairs N      the broker's psk_file lines ("identity:hexkey")
 *   mqload --port P --pairs N [--window 20] [--warm S] [--secs S] [--half F] [--server-pid PID]
 */
#include "lc.h"

#include <errno.h>
#include <getopt.h>
#include <mosquitto.h>
#include <openssl/ssl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>

typedef enum { C_NEW, C_CONNECTING, C_SUBSCRIBING, C_READY, C_DEAD } cstate_t;

typedef struct {
  int idx, pair, sender;
  struct mosquitto *m;
  int fd;
  int wout; /* EPOLLOUT armed */
  cstate_t st;
  char topic[32];
} cl_t;

static cl_t *cl;
static int n_cl, n_ready, started, stop, ep_fd, lost_sessions;

static void psk(int i, char id[32], char hex[65]) {
  snprintf(id, 32, "bench%d", i);
  for (int k = 0; k < 32; k++) snprintf(hex + 2 * k, 3, "%02x", k < 28 ? 0xa5 : (i >> (8 * (31 - k))) & 0xff);
}

static void update(cl_t *c) {
  if (c->fd < 0) return;
  int want = mosquitto_want_write(c->m) ? 1 : 0;
  if (want == c->wout) return;
  struct epoll_event ev = {.events = EPOLLIN | (want ? EPOLLOUT : 0), .data.ptr = c};
  epoll_ctl(ep_fd, EPOLL_CTL_MOD, c->fd, &ev);
  c->wout = want;
}

static int send_msg(void *arg, int pair, const uint8_t payload[LC_PAYLOAD]) {
  (void)arg;
  cl_t *s = &cl[2 * pair];
  if (s->st != C_READY) return -1;
  int rc = mosquitto_publish(s->m, NULL, s->topic, LC_PAYLOAD, payload, 1, false);
  if (rc) {
    lc_failed(pair, mosquitto_strerror(rc));
    return -1;
  }
  update(s);
  return 0;
}

static void on_connect(struct mosquitto *m, void *obj, int rc) {
  cl_t *c = obj;
  if (rc) {
    fprintf(stderr, "mqload: client %d: CONNACK %d (%s)\n", c->idx, rc,
            mosquitto_connack_string(rc));
    c->st = C_DEAD;
    return;
  }
  if (c->sender) {
    c->st = C_READY;
    n_ready++;
    return;
  }
  c->st = C_SUBSCRIBING;
  if (mosquitto_subscribe(m, NULL, c->topic, 1)) c->st = C_DEAD;
}

static void on_subscribe(struct mosquitto *m, void *obj, int mid, int n, const int *qos) {
  (void)m;
  (void)mid;
  cl_t *c = obj;
  if (n < 1 || qos[0] != 1) {
    fprintf(stderr, "mqload: client %d: subscription refused\n", c->idx);
    c->st = C_DEAD;
    return;
  }
  c->st = C_READY;
  n_ready++;
}

static void on_message(struct mosquitto *m, void *obj, const struct mosquitto_message *msg) {
  (void)m;
  cl_t *c = obj;
  lc_received(c->pair, msg->payload, (size_t)msg->payloadlen);
}

static void on_disconnect(struct mosquitto *m, void *obj, int rc) {
  (void)m;
  cl_t *c = obj;
  if (lost_sessions++ < 5) fprintf(stderr, "mqload: client %d: disconnected (%d: %s)\n", c->idx, rc,
                                   mosquitto_strerror(rc));
  if (c->st == C_READY) n_ready--;
  c->st = C_DEAD;
  if (c->fd >= 0) epoll_ctl(ep_fd, EPOLL_CTL_DEL, c->fd, NULL);
  c->fd = -1;
}

static void done(void *arg) {
  (void)arg;
  stop = 1;
}

static void usage(void) {
  fprintf(stderr,
          "usage: mqload --print-psk --pairs N\n"
          "       mqload [--host 127.0.0.1] --port P --pairs N [--window 20] [--warm S]\n"
          "              [--secs S] [--half F] [--drain S] [--server-pid PID] [--label NAME]\n");
  exit(2);
}

int main(int argc, char **argv) {
  const char *host = "127.0.0.1", *label = "mosquitto";
  int port = 0, print = 0;
  lc_opts_t o = {.pairs = 50, .window = 20, .warm_s = 3, .meas_s = 10, .half = 0.5, .drain_s = 5};
  static const struct option lo[] = {
      {"host", 1, 0, 'h'},  {"port", 1, 0, 'p'}, LC_LONG_OPTIONS,
      {"label", 1, 0, 'l'}, {"print-psk", 0, 0, 'x'}, {0, 0, 0, 0}};
  int opt;
  while ((opt = getopt_long(argc, argv, "", lo, NULL)) != -1) {
    switch (opt) {
    case 'h': host = optarg; break;
    case 'p': port = atoi(optarg); break;
    case 'l': label = optarg; break;
    case 'x': print = 1; break;
    default:
      if (!lc_option(&o, opt, optarg)) usage();
    }
  }
  if (o.pairs < 1 || o.window < 1) usage();
  n_cl = 2 * o.pairs;
  if (print) {
    for (int i = 0; i < n_cl; i++) {
      char id[32], hex[65];
      psk(i, id, hex);
      printf("%s:%s\n", id, hex);
    }
    return 0;
  }
  if (port < 1 || port > 65535) usage();
  signal(SIGPIPE, SIG_IGN);
  mosquitto_lib_init();
  ep_fd = epoll_create1(EPOLL_CLOEXEC);
  cl = calloc((size_t)n_cl, sizeof *cl);
  o.system = label;
  o.send = send_msg;
  o.done = done;
  if (!cl || ep_fd < 0 || lc_init(&o)) return 1;

  /* Sequential blocking connects (TCP + TLS-PSK handshake), then everything on the loop. */
  for (int i = 0; i < n_cl; i++) {
    cl_t *c = &cl[i];
    char id[32], hex[65], cid[40];
    c->idx = i;
    c->pair = i / 2;
    c->sender = !(i % 2);
    c->fd = -1;
    snprintf(c->topic, sizeof c->topic, "bench/%d", c->pair);
    snprintf(cid, sizeof cid, "b%c%d", c->sender ? 's' : 'r', c->pair);
    psk(i, id, hex);
    c->m = mosquitto_new(cid, true, c);
    if (!c->m) return 1;
    mosquitto_int_option(c->m, MOSQ_OPT_TCP_NODELAY, 1);
    mosquitto_connect_callback_set(c->m, on_connect);
    mosquitto_subscribe_callback_set(c->m, on_subscribe);
    mosquitto_message_callback_set(c->m, on_message);
    mosquitto_disconnect_callback_set(c->m, on_disconnect);
    int rc = mosquitto_tls_psk_set(c->m, hex, id, NULL);
    if (!rc) rc = mosquitto_connect(c->m, host, port, 60);
    if (rc) {
      fprintf(stderr, "mqload: client %d: connect: %s\n", i, mosquitto_strerror(rc));
      return 1;
    }
    c->fd = mosquitto_socket(c->m);
    c->st = C_CONNECTING;
    c->wout = 1;
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.ptr = c};
    if (epoll_ctl(ep_fd, EPOLL_CTL_ADD, c->fd, &ev)) return 1;
  }

  uint64_t last_tick = 0, last_misc = lc_now_ns(), deadline = lc_now_ns() + 60000000000ull;
  int printed_tls = 0;
  struct epoll_event evs[256];
  while (!stop) {
    int n = epoll_wait(ep_fd, evs, 256, 1);
    if (n < 0 && errno != EINTR) return 1;
    for (int k = 0; k < n; k++) {
      cl_t *c = evs[k].data.ptr;
      if (c->fd < 0) continue;
      if (evs[k].events & (EPOLLIN | EPOLLERR | EPOLLHUP)) mosquitto_loop_read(c->m, 1);
      if (c->fd >= 0 && (evs[k].events & EPOLLOUT)) mosquitto_loop_write(c->m, 1);
      update(c);
    }
    uint64_t now = lc_now_ns();
    if (now - last_tick >= 1000000) {
      last_tick = now;
      if (!started) {
        if (n_ready == n_cl) {
          started = 1;
          SSL *ssl = mosquitto_ssl_get(cl[0].m);
          if (ssl && !printed_tls++)
            fprintf(stderr, "mqload: %s %s\n", SSL_get_version(ssl), SSL_get_cipher_name(ssl));
          lc_start();
        } else if (now > deadline) {
          fprintf(stderr, "mqload: only %d of %d clients ready in time\n", n_ready, n_cl);
          return 1;
        }
      } else {
        lc_tick();
      }
    }
    if (now - last_misc >= 1000000000) {
      last_misc = now;
      for (int i = 0; i < n_cl; i++)
        if (cl[i].fd >= 0) mosquitto_loop_misc(cl[i].m);
    }
  }
  return 0;
}
