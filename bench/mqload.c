/* mqload: the Mosquitto side of docs/benchmarks.md. One process, one epoll loop, 2N
 * libmosquitto clients over TLS-PSK (the broker negotiates TLS 1.3), driven through
 * mosquitto_loop_read / _write / _misc on their sockets (no libmosquitto threads). Sender k
 * publishes QoS 1 to its own topic bench/<k>; receiver k is its only subscriber (QoS 1). The
 * pattern and the report are lc.c's, as for m5load.
 *
 *   mqload --print-psk --pairs N      the broker's psk_file lines ("identity:hexkey")
 *   mqload --port P --pairs N [--window 20] [--warm S] [--secs S] [--half F | --rate R]
 *          [--server-pid PID]      (exit status 1: a message lost / duplicated / refused or a
 *                                   session lost; lc.h)
 *
 * Fan-out mode (docs/benchmarks.md "Group fan-out", the peer of bench/m5fan.c): N subscribers
 * of the one topic fan/all (QoS 1) and one publisher (QoS 1), pattern and RESULT line as
 * m5fan's --one-first: message 0 alone (reach_one_ms: until every subscriber has it), then
 * K-1 back to back, at most 20 unacknowledged (PUBACK) by the broker, measured as a burst from
 * its first publish to its last delivery. Each subscriber must get each message once.
 *
 *   mqload --print-psk --fanout N     the psk_file lines of the N subscribers and the publisher
 *   mqload --port P --fanout N --msgs K [--server-pid PID] [--label NAME] [--quiet S]
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
static int fan_n; /* fan-out mode: subscribers (cl[1..fan_n]; cl[0] publishes); 0 = pairs */

static void psk(int i, char id[32], char hex[65]) {
  snprintf(id, 32, fan_n ? "fan%d" : "bench%d", i);
  for (int k = 0; k < 32; k++)
    snprintf(hex + 2 * k, 3, "%02x", k < 28 ? (fan_n ? 0xf5 : 0xa5) : (i >> (8 * (31 - k))) & 0xff);
}

/* ---- fan-out mode ---- */

static void update(cl_t *c);

#define FAN_TOPIC "fan/all"
#define FAN_WINDOW 20

static struct {
  int k, sent, acked, one_sent_all;
  uint64_t *send_ns, *got, *last_ns; /* per message */
  uint64_t *seen;                    /* per subscriber: bitmap of messages, words each */
  size_t words;
  uint64_t received, dups, bad, t_burst, t_complete, t_start;
  double quiet_s, cpu0, cpu1;
  int server_pid;
  const char *label;
} FN;

static void fan_publish(void) {
  cl_t *p = &cl[0];
  while (FN.sent < FN.k && FN.sent - FN.acked < FAN_WINDOW) {
    if (FN.sent == 1 && FN.got[0] < (uint64_t)fan_n) return; /* message 0 alone first */
    uint8_t pl[LC_PAYLOAD];
    uint32_t idx = (uint32_t)FN.sent;
    uint64_t t = lc_now_ns();
    memset(pl, 'f', sizeof pl);
    memcpy(pl, &t, 8);
    memcpy(pl + 8, &idx, 4);
    FN.send_ns[idx] = t;
    if (!FN.t_burst && (FN.sent == 1 || FN.k == 1)) {
      FN.t_burst = t;
      FN.cpu0 = lc_proc_cpu_s(FN.server_pid, NULL);
    }
    int rc = mosquitto_publish(p->m, NULL, FAN_TOPIC, LC_PAYLOAD, pl, 1, false);
    if (rc) {
      fprintf(stderr, "mqload: publish %u: %s\n", idx, mosquitto_strerror(rc));
      FN.bad++;
      stop = 1;
      return;
    }
    FN.sent++;
    update(p);
  }
}

static void fan_on_publish(struct mosquitto *m, void *obj, int mid) {
  (void)m;
  (void)obj;
  (void)mid;
  FN.acked++;
}

static void fan_on_message(struct mosquitto *m, void *obj, const struct mosquitto_message *msg) {
  (void)m;
  cl_t *c = obj;
  uint32_t idx;
  if (c->sender || msg->payloadlen < 12) {
    FN.bad++;
    return;
  }
  memcpy(&idx, (const uint8_t *)msg->payload + 8, 4);
  if (idx >= (uint32_t)FN.k) {
    FN.bad++;
    return;
  }
  uint64_t *w = &FN.seen[(size_t)(c->idx - 1) * FN.words + idx / 64], bit = 1ull << (idx % 64);
  if (*w & bit) {
    FN.dups++;
    return;
  }
  *w |= bit;
  FN.received++;
  FN.got[idx]++;
  FN.last_ns[idx] = lc_now_ns();
}

static int cmp_u64(const void *a, const void *b) {
  uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
  return x < y ? -1 : x > y;
}

static void fan_report(void) {
  uint64_t want = (uint64_t)fan_n * (uint64_t)FN.k, burst = 0, last = 0;
  uint64_t *reach = calloc((size_t)FN.k, sizeof *reach);
  size_t nr = 0;
  for (int i = 0; i < FN.k; i++) {
    if (FN.got[i] == (uint64_t)fan_n && reach) reach[nr++] = FN.last_ns[i] - FN.send_ns[i];
    if (FN.send_ns[i] < FN.t_burst || !FN.t_burst) continue;
    burst += FN.got[i];
    if (FN.last_ns[i] > last) last = FN.last_ns[i];
  }
  if (reach) qsort(reach, nr, sizeof *reach, cmp_u64);
  double fan = burst && last > FN.t_burst ? (double)(last - FN.t_burst) / 1e9 : 0;
  double one = FN.got[0] == (uint64_t)fan_n ? (double)(FN.last_ns[0] - FN.send_ns[0]) / 1e6 : 0;
  double cpu = FN.cpu1 > FN.cpu0 ? FN.cpu1 - FN.cpu0 : 0;
  printf("RESULT system=%s members=%d registered=%d sent=%d expected=%d received=%llu "
         "duplicates=%llu missing=%llu unexpected=%llu lost=%d seconds=%.2f fanout_s=%.3f "
         "deliveries_per_s=%.0f reach_p50_ms=%.1f reach_max_ms=%.1f reach_one_ms=%.1f "
         "srv_cpu_s=%.2f srv_us_per_delivery=%.1f\n",
         FN.label, fan_n, n_ready - 1, FN.sent, FN.k, (unsigned long long)FN.received,
         (unsigned long long)FN.dups, (unsigned long long)(want - FN.received),
         (unsigned long long)FN.bad, lost_sessions, (double)(lc_now_ns() - FN.t_start) / 1e9, fan,
         fan > 0 ? (double)burst / fan : 0, nr ? (double)reach[(nr - 1) / 2] / 1e6 : 0,
         nr ? (double)reach[nr - 1] / 1e6 : 0, one, cpu, burst ? 1e6 * cpu / (double)burst : 0);
  fflush(stdout);
  free(reach);
}

/* Called every ms once everyone is connected and subscribed; 1 when the run is over. */
static int fan_tick(void) {
  uint64_t now = lc_now_ns();
  if (now - FN.t_start > 180000000000ull) {
    fprintf(stderr, "mqload: fan-out not complete after 180 s\n");
    return 1;
  }
  fan_publish();
  if (!FN.t_complete && FN.received == (uint64_t)fan_n * (uint64_t)FN.k) {
    FN.t_complete = now;
    FN.cpu1 = lc_proc_cpu_s(FN.server_pid, NULL);
  }
  if (FN.t_complete && now - FN.t_complete >= (uint64_t)(FN.quiet_s * 1e9)) return 1;
  return lost_sessions || FN.bad;
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
  if (s->st != C_READY) return LC_WAIT; /* a lost session is counted by on_disconnect */
  /* libmosquitto queues the publish (beyond its 20 in flight) and never makes us wait. A
   * refusal here is reported to lc as a message sent and refused: calling lc_failed() before
   * lc counted it as sent made its in-flight count wrap. */
  int rc = mosquitto_publish(s->m, NULL, s->topic, LC_PAYLOAD, payload, 1, false);
  if (rc) {
    fprintf(stderr, "mqload: pair %d: publish: %s\n", pair, mosquitto_strerror(rc));
    return LC_REFUSED;
  }
  update(s);
  return LC_SENT;
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
  if (!fan_n && started) {
    char who[32];
    snprintf(who, sizeof who, "%s%d", c->sender ? "sender" : "receiver", c->pair);
    lc_session_lost(who, mosquitto_strerror(rc));
  }
  if (c->fd >= 0) epoll_ctl(ep_fd, EPOLL_CTL_DEL, c->fd, NULL);
  c->fd = -1;
}

static void done(void *arg) {
  (void)arg;
  stop = 1;
}

static void usage(void) {
  fprintf(stderr,
          "usage: mqload --print-psk --pairs N | --fanout N\n"
          "       mqload [--host 127.0.0.1] --port P --fanout N --msgs K [--server-pid PID]\n"
          "              [--label NAME] [--quiet S]\n"
          "       mqload [--host 127.0.0.1] --port P --pairs N [--window 20] [--warm S]\n"
          "              [--secs S] [--half F | --rate R] [--drain S] [--server-pid PID]\n"
          "              [--label NAME]\n" LC_USAGE);
  exit(2);
}

int main(int argc, char **argv) {
  const char *host = "127.0.0.1", *label = "mosquitto";
  int port = 0, print = 0;
  lc_opts_t o = {.pairs = 50, .window = 20, .warm_s = 3, .meas_s = 10, .half = 0.5, .drain_s = 5};
  static const struct option lo[] = {
      {"host", 1, 0, 'h'},  {"port", 1, 0, 'p'}, LC_LONG_OPTIONS,
      {"label", 1, 0, 'l'}, {"print-psk", 0, 0, 'x'}, {"fanout", 1, 0, 'F'},
      {"msgs", 1, 0, 'K'},  {"quiet", 1, 0, 'Q'}, {0, 0, 0, 0}};
  int opt;
  while ((opt = getopt_long(argc, argv, "", lo, NULL)) != -1) {
    switch (opt) {
    case 'h': host = optarg; break;
    case 'p': port = atoi(optarg); break;
    case 'l': label = optarg; break;
    case 'x': print = 1; break;
    case 'F': fan_n = atoi(optarg); break;
    case 'K': FN.k = atoi(optarg); break;
    case 'Q': FN.quiet_s = atof(optarg); break;
    default:
      if (!lc_option(&o, opt, optarg)) usage();
    }
  }
  if (o.pairs < 1 || o.window < 1 || fan_n < 0) usage();
  n_cl = fan_n ? fan_n + 1 : 2 * o.pairs;
  if (print) {
    for (int i = 0; i < n_cl; i++) {
      char id[32], hex[65];
      psk(i, id, hex);
      printf("%s:%s\n", id, hex);
    }
    return 0;
  }
  if (port < 1 || port > 65535 || (fan_n && (FN.k < 1 || FN.quiet_s < 0))) usage();
  if (fan_n) {
    FN.words = ((size_t)FN.k + 63) / 64;
    FN.send_ns = calloc((size_t)FN.k, sizeof(uint64_t));
    FN.got = calloc((size_t)FN.k, sizeof(uint64_t));
    FN.last_ns = calloc((size_t)FN.k, sizeof(uint64_t));
    FN.seen = calloc((size_t)fan_n * FN.words, sizeof(uint64_t));
    FN.label = label;
    FN.server_pid = o.server_pid;
    FN.t_start = lc_now_ns();
    if (!FN.send_ns || !FN.got || !FN.last_ns || !FN.seen) return 1;
  }
  signal(SIGPIPE, SIG_IGN);
  mosquitto_lib_init();
  ep_fd = epoll_create1(EPOLL_CLOEXEC);
  cl = calloc((size_t)n_cl, sizeof *cl);
  o.system = label;
  o.send = send_msg;
  o.done = done;
  if (!cl || ep_fd < 0 || (!fan_n && lc_init(&o))) return 1;

  /* Sequential blocking connects (TCP + TLS-PSK handshake), then everything on the loop. */
  for (int i = 0; i < n_cl; i++) {
    cl_t *c = &cl[i];
    char id[32], hex[65], cid[40];
    c->idx = i;
    c->pair = i / 2;
    c->sender = fan_n ? i == 0 : !(i % 2);
    c->fd = -1;
    if (fan_n) {
      snprintf(c->topic, sizeof c->topic, FAN_TOPIC);
      snprintf(cid, sizeof cid, "f%d", i);
    } else {
      snprintf(c->topic, sizeof c->topic, "bench/%d", c->pair);
      snprintf(cid, sizeof cid, "b%c%d", c->sender ? 's' : 'r', c->pair);
    }
    psk(i, id, hex);
    c->m = mosquitto_new(cid, true, c);
    if (!c->m) return 1;
    mosquitto_int_option(c->m, MOSQ_OPT_TCP_NODELAY, 1);
    mosquitto_connect_callback_set(c->m, on_connect);
    mosquitto_subscribe_callback_set(c->m, on_subscribe);
    mosquitto_message_callback_set(c->m, fan_n ? fan_on_message : on_message);
    if (fan_n && c->sender) mosquitto_publish_callback_set(c->m, fan_on_publish);
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
          if (!fan_n) {
            lc_start();
            lc_tls_report(ssl);
          }
        } else if (now > deadline) {
          fprintf(stderr, "mqload: only %d of %d clients ready in time\n", n_ready, n_cl);
          return 1;
        }
      } else if (fan_n) {
        if (fan_tick()) stop = 1;
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
  if (fan_n) {
    fan_report();
    return FN.dups || FN.bad || lost_sessions || FN.received != (uint64_t)fan_n * (uint64_t)FN.k;
  }
  return lc_exit_code();
}
