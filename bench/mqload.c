/* mqload: the Mosquitto side of docs/benchmarks.md. One process, one epoll loop, 2N MQTT
 * 3.1.1 clients over TLS 1.3 PSK of our own (bench/mqc.h: raw sockets + OpenSSL, each
 * client's packets of one loop iteration written with one SSL_write and one send(), the
 * discipline libm5c's channel follows on the m5load side). Sender k publishes QoS 1 to its
 * own topic bench/<k>; receiver k is its only subscriber (QoS 1). The pattern and the report
 * are lc.c's, as for m5load.
 *
 *   mqload --print-psk --pairs N      the broker's psk_file lines ("identity:hexkey")
 *   mqload --port P --pairs N [--window 20] [--warm S] [--secs S] [--half F | --rate R]
 *          [--server-pid PID] [--ca FILE] [--persistent]
 *                                  (exit status 1: a message lost / duplicated / refused or a
 *                                   session lost; lc.h)
 *   --ca FILE: the broker presents a certificate (for localhost) from this CA instead of
 *   taking the PSKs (RabbitMQ, the durable peer: Erlang's TLS has no TLS 1.3 external PSK);
 *   --persistent: sessions without clean session, so a subscription outlives its connection
 *   (a durable queue on RabbitMQ).
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
#include "mqc.h"

#include <getopt.h>
#include <openssl/crypto.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CONNECT_PARALLEL 32 /* handshakes at once while the clients come up */

typedef struct {
  mqc_t m; /* first: the mqc_t * of a callback is the cl_t * */
  int pair, sender, waiting, ready;
  char topic[32];
} cl_t;

static cl_t *cl;
static int n_cl, n_ready, n_opening, started, stop, lost_sessions, bad_topic;
static int fan_n; /* fan-out mode: subscribers (cl[1..fan_n]; cl[0] publishes); 0 = pairs */

static void psk(int i, char id[32], uint8_t key[32]) {
  snprintf(id, 32, fan_n ? "fan%d" : "bench%d", i);
  for (int k = 0; k < 32; k++)
    key[k] = (uint8_t)(k < 28 ? (fan_n ? 0xf5 : 0xa5) : (i >> (8 * (31 - k))) & 0xff);
}

/* ---- fan-out mode ---- */

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
    int rc = mqc_publish(&p->m, FAN_TOPIC, pl, LC_PAYLOAD);
    if (rc == MQC_WAIT) return;
    if (rc) {
      fprintf(stderr, "mqload: publish %u: the publisher is down or its output full\n", idx);
      FN.bad++;
      stop = 1;
      return;
    }
    FN.send_ns[idx] = t;
    if (!FN.t_burst && (FN.sent == 1 || FN.k == 1)) {
      FN.t_burst = t;
      FN.cpu0 = lc_proc_cpu_s(FN.server_pid, NULL);
    }
    FN.sent++;
  }
}

static void fan_on_message(cl_t *c, const uint8_t *pl, size_t n) {
  uint32_t idx;
  if (c->sender || n < 12) {
    FN.bad++;
    return;
  }
  memcpy(&idx, pl + 8, 4);
  if (idx >= (uint32_t)FN.k) {
    FN.bad++;
    return;
  }
  uint64_t *w = &FN.seen[(size_t)(c->m.idx - 1) * FN.words + idx / 64], bit = 1ull << (idx % 64);
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

/* ---- point to point ---- */

static int send_msg(void *arg, int pair, const uint8_t payload[LC_PAYLOAD]) {
  (void)arg;
  cl_t *s = &cl[2 * pair];
  int rc = mqc_publish(&s->m, s->topic, payload, LC_PAYLOAD);
  if (rc == MQC_WAIT) { /* MQC_INFLIGHT unacknowledged: on_puback pumps the pair again */
    s->waiting = 1;
    return LC_WAIT;
  }
  if (rc && s->m.st == MQC_DEAD) return LC_WAIT; /* a lost session is counted by on_down */
  /* A refusal is reported to lc as a message sent and refused (lc_failed() before lc counted
   * it as sent would make its in-flight count wrap). */
  if (rc) {
    fprintf(stderr, "mqload: pair %d: publish refused: the client's output is full\n", pair);
    return LC_REFUSED;
  }
  return LC_SENT;
}

/* ---- client events ---- */

static void on_ready(mqc_t *m) {
  cl_t *c = (cl_t *)m;
  c->ready = 1;
  n_opening--;
  n_ready++;
}

static void on_message(mqc_t *m, const uint8_t *topic, size_t tlen, const uint8_t *pl, size_t n) {
  cl_t *c = (cl_t *)m;
  if (c->sender || tlen != strlen(c->topic) || memcmp(topic, c->topic, tlen)) {
    /* the broker delivered what this client never subscribed to: not a result */
    if (bad_topic++ < 5)
      fprintf(stderr, "mqload: client %d: a PUBLISH on a topic it did not subscribe to\n", m->idx);
    if (fan_n)
      FN.bad++;
    else
      lc_session_lost(c->topic, "a PUBLISH on a topic it did not subscribe to");
    return;
  }
  if (fan_n)
    fan_on_message(c, pl, n);
  else
    lc_received(c->pair, pl, n);
}

static void on_puback(mqc_t *m) {
  cl_t *c = (cl_t *)m;
  if (fan_n) {
    FN.acked++;
    return;
  }
  if (c->waiting) {
    c->waiting = 0;
    lc_pump(c->pair);
  }
}

static void on_down(mqc_t *m, const char *why) {
  cl_t *c = (cl_t *)m;
  if (lost_sessions++ < 5) fprintf(stderr, "mqload: client %d: %s\n", m->idx, why);
  if (c->ready)
    n_ready--;
  else
    n_opening--;
  c->ready = 0;
  if (!fan_n && started) {
    char who[32];
    snprintf(who, sizeof who, "%s%d", c->sender ? "sender" : "receiver", c->pair);
    lc_session_lost(who, why);
  }
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
          "              [--label NAME] [--ca FILE] [--persistent]\n" LC_USAGE);
  exit(2);
}

/* Starts the next clients, CONNECT_PARALLEL handshakes at once. */
static int open_more(int *next) {
  while (*next < n_cl && n_opening < CONNECT_PARALLEL) {
    cl_t *c = &cl[*next];
    char id[32], cid[40];
    uint8_t key[32];
    c->m.idx = *next;
    c->pair = *next / 2;
    c->sender = fan_n ? *next == 0 : !(*next % 2);
    if (fan_n) {
      snprintf(c->topic, sizeof c->topic, FAN_TOPIC);
      snprintf(cid, sizeof cid, "f%d", *next);
    } else {
      snprintf(c->topic, sizeof c->topic, "bench/%d", c->pair);
      snprintf(cid, sizeof cid, "b%c%d", c->sender ? 's' : 'r', c->pair);
    }
    psk(*next, id, key);
    int rc = mqc_open(&c->m, cid, id, key, c->sender ? NULL : c->topic);
    OPENSSL_cleanse(key, sizeof key);
    if (rc) return -1;
    n_opening++;
    (*next)++;
  }
  return 0;
}

int main(int argc, char **argv) {
  const char *host = "127.0.0.1", *label = "mosquitto";
  int port = 0, print = 0, persistent = 0;
  const char *ca = NULL;
  lc_opts_t o = {.pairs = 50, .window = 20, .warm_s = 3, .meas_s = 10, .half = 0.5, .drain_s = 5};
  static const struct option lo[] = {
      {"host", 1, 0, 'h'},  {"port", 1, 0, 'p'}, LC_LONG_OPTIONS,
      {"label", 1, 0, 'l'}, {"print-psk", 0, 0, 'x'}, {"fanout", 1, 0, 'F'},
      {"msgs", 1, 0, 'K'},  {"quiet", 1, 0, 'Q'}, {"ca", 1, 0, 'c'},
      {"persistent", 0, 0, 'S'}, {0, 0, 0, 0}};
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
    case 'c': ca = optarg; break;
    case 'S': persistent = 1; break;
    default:
      if (!lc_option(&o, opt, optarg)) usage();
    }
  }
  if (o.pairs < 1 || o.window < 1 || fan_n < 0) usage();
  n_cl = fan_n ? fan_n + 1 : 2 * o.pairs;
  if (print) {
    for (int i = 0; i < n_cl; i++) {
      char id[32];
      uint8_t key[32];
      psk(i, id, key);
      printf("%s:", id);
      for (int k = 0; k < 32; k++)
        printf("%02x", key[k]);
      printf("\n");
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
  static const mqc_cbs_t cbs = {on_ready, on_message, on_puback, on_down};
  cl = calloc((size_t)n_cl, sizeof *cl);
  o.system = label;
  o.send = send_msg;
  o.done = done;
  if (!cl || mqc_init(&cbs, host, port, ca, persistent) || (!fan_n && lc_init(&o))) return 1;

  /* One loop: events, the 1 ms tick, the keep-alive once a second, then every client's
   * output of this iteration leaves (mqc_flush). */
  uint64_t last_tick = 0, last_misc = lc_now_ns(), deadline = lc_now_ns() + 60000000000ull;
  int next = 0;
  while (!stop) {
    if (!started && open_more(&next)) return 1;
    if (mqc_poll(1) < 0) return 1;
    uint64_t now = lc_now_ns();
    if (now - last_tick >= 1000000) {
      last_tick = now;
      if (!started) {
        if (n_ready == n_cl) {
          started = 1;
          SSL *ssl = cl[0].m.ssl;
          fprintf(stderr, "mqload: %s %s\n", SSL_get_version(ssl), SSL_get_cipher_name(ssl));
          if (!fan_n) {
            lc_start();
            lc_tls_report(ssl);
          }
        } else if (lost_sessions || now > deadline) {
          fprintf(stderr, "mqload: only %d of %d clients ready%s\n", n_ready, n_cl,
                  lost_sessions ? " (a client failed)" : " in time");
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
        mqc_keepalive(&cl[i].m, now);
    }
    mqc_flush();
  }
  mqc_io_report();
  if (fan_n) {
    fan_report();
    return FN.dups || FN.bad || lost_sessions || FN.received != (uint64_t)fan_n * (uint64_t)FN.k;
  }
  return lc_exit_code();
}
