/* m5load: the MSGin5G-1 load generator of docs/benchmarks.md. One process, one m5_loop, 2N
 * UE sessions over CoAP over TLS 1.3 (coaps+tcp, AKMA PSK: K_AF derived from K_AKMA in the
 * handshake, the server asks the real m5-aanf), built on libm5c's channel (src/client/chan.h:
 * non-blocking socket + TLS + CoAP endpoint), so every client shares the one loop; the
 * sessions, credentials and body helpers are bu.c's (shared with m5fan). Sender k (UE Service
 * ID bs<k>) sends MSG to receiver k (br<k>); the pattern and the report are lc.c's.
 *
 *   m5load --print-subscribers --pairs N      "ueSvcId supi kausf" per line, for provisioning
 *   m5load --port P --pairs N [--window 20] [--warm S] [--secs S] [--half F | --rate R]
 *          [--server-pid PID] [--dtls]   (exit status 1: a message lost / duplicated / refused
 *                                         or a session lost; lc.h)
 *
 * --dtls: the same over CoAP over DTLS 1.2 (coaps, UDP, same port number), libm5c's DTLS
 * channel (CoAP confirmable messages, retransmitted by the CoAP layer).
 *
 * --recv-port P: the receivers br<k> connect to P, the senders to --port: two m5s nodes
 * sharing one JetStream store (docs/scale-out.md), every message accepted on one node and
 * delivered by the other (bench/js.sh).
 *
 * Application-to-point (--north URL): the senders are one Application Server instead of the
 * UEs bs<k>: every message of pair k is a POST of an ASMessageDelivery to URL (m5s's
 * northbound deliver-as-message, HTTP/2 over TLS with the AS's certificate, --as-cert / --as-key
 * / --ca, and its bearer token read from --token-file) from --as-id to br<k>; only the N
 * receivers connect. The HTTP/2 client is libm5c's sibling in src/lib/http (libcurl's multi
 * interface on the same loop); a 200 without DELY_FAILED is an accepted message.
 */
#include "lc.h"

#include "bu.h"
#include "core/err.h"
#include "core/log.h"
#include "crypto/codec.h"
#include "http/client.h"

#include <getopt.h>
#include <time.h>
#include <unistd.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/crypto.h>
#include <openssl/ssl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PATH "msgin5g"

static m5_loop_t *loop;
static bu_pool_t pool;
static int started;
static uint64_t setup_deadline;
static int nodelay = 1;

/* --north: the AS sending to the receivers; only receivers are in the pool then. */
#define NORTH_INFLIGHT 100 /* in flight at once: m5s's HTTP/2 streams per connection (100) */
static int npairs;
static struct {
  const char *url, *as_id;
  m5_http_client_t *http;
} north;
/* The pool index of pair k's receiver, and the pair of a pool index. */
static int rcv_ue(int pair) {
  return north.url ? pair : 2 * pair + 1;
}
static int ue_pair(int idx) {
  return north.url ? idx : idx / 2;
}

/* Deterministic test subscribers: UE i (sender of pair k = 2k, receiver = 2k+1). */
static void subscriber(int i, char id[32], char supi[16], uint8_t kausf[32]) {
  snprintf(id, 32, "b%c%d", i % 2 ? 'r' : 's', i / 2);
  snprintf(supi, 16, "0010199%08u", (unsigned)i % 100000000u);
  memset(kausf, 0xbe, 32);
  kausf[28] = (uint8_t)(i >> 24);
  kausf[29] = (uint8_t)(i >> 16);
  kausf[30] = (uint8_t)(i >> 8);
  kausf[31] = (uint8_t)i;
}

/* libm5c's channel sets TCP_NODELAY before connect(), as mqload's clients and both servers
 * do. --nagle turns it back off to measure what Nagle's algorithm costs pipelined small
 * requests (a delayed ACK can hold them up to 40 ms): the link option -Wl,--wrap=connect
 * routes chan.c's connect() through here (bench/CMakeLists.txt). */
int __real_connect(int fd, const struct sockaddr *sa, socklen_t len);
int __wrap_connect(int fd, const struct sockaddr *sa, socklen_t len);
int __wrap_connect(int fd, const struct sockaddr *sa, socklen_t len) {
  int on = nodelay ? 1 : 0, type = 0;
  socklen_t tl = sizeof type;
  if (!getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &tl) && type == SOCK_STREAM)
    (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof on);
  return __real_connect(fd, sa, len);
}

/* ---- traffic ---- */

static void msg_done(void *arg, int status, const m5_coap_msg_t *resp, const uint8_t *body,
                     size_t len) {
  int pair = (int)(intptr_t)arg;
  char code[8], why[160];
  if (status) {
    lc_failed(pair, m5_strerror(status));
  } else if (resp->code != M5_COAP_CHANGED) {
    snprintf(why, sizeof why, "answer %s %.*s", m5_coap_code_str(resp->code, code, sizeof code),
             (int)(len > 100 ? 100 : len), (const char *)body);
    lc_failed(pair, why);
  } else if (len && memmem(body, len, "DELY_FAILED", 11)) {
    snprintf(why, sizeof why, "%.*s", (int)(len > 150 ? 150 : len), (const char *)body);
    lc_failed(pair, why);
  }
}

/* msgIds must differ from run to run: m5s's dedup window (10 min) outlives a run and would
 * answer a repeated (oriAddr, msgId) with its first ack without forwarding it. */
static int next_msg_id(int pair, char *out, size_t cap) {
  static uint64_t *seqs;
  static unsigned run_nonce;
  if (!seqs) {
    if (!(seqs = calloc((size_t)npairs, sizeof *seqs))) return -1;
    run_nonce = (unsigned)getpid() ^ (unsigned)time(NULL);
  }
  return snprintf(out, cap, "%x-%d-%llu", run_nonce, pair, (unsigned long long)seqs[pair]++);
}

static int send_msg(void *arg, int pair, const uint8_t payload[LC_PAYLOAD]) {
  (void)arg;
  bu_ue_t *s = &pool.ue[2 * pair];
  if (s->st != BU_READY) return LC_WAIT; /* a lost session is counted by on_down */
  char b64[4 * LC_PAYLOAD / 3 + 8], body[512], id[48];
  if (next_msg_id(pair, id, sizeof id) < 0) return LC_REFUSED;
  bu_b64_enc(payload, LC_PAYLOAD, b64);
  int n = snprintf(body, sizeof body,
                   "{\"msgType\":\"MSG\",\"oriAddr\":{\"addrType\":\"UE\",\"addr\":\"%s\"},"
                   "\"destAddr\":{\"addrType\":\"UE\",\"addr\":\"%s\"},\"msgId\":\"%s\","
                   "\"payload\":\"%s\"}",
                   s->id, pool.ue[2 * pair + 1].id, id, b64);
  int rc = m5_coap_ep_request(s->ep, M5_COAP_POST, PATH, M5_COAP_FORMAT_JSON,
                              (const uint8_t *)body, (size_t)n, msg_done, (void *)(intptr_t)pair);
  if (rc == M5_EFULL) return LC_WAIT; /* the endpoint's queue is full: the message waits in lc */
  if (rc) fprintf(stderr, "m5load: pair %d: %s\n", pair, m5_strerror(rc));
  return rc ? LC_REFUSED : LC_SENT;
}

/* ---- application-to-point (--north) ---- */

static void north_done(void *arg, int status, long http_status, const uint8_t *body, size_t len) {
  int pair = (int)(intptr_t)arg;
  char why[200];
  if (status) {
    lc_failed(pair, m5_strerror(status));
  } else if (http_status != 200 || (len && memmem(body, len, "DELY_FAILED", 11))) {
    snprintf(why, sizeof why, "HTTP %ld %.*s", http_status, (int)(len > 150 ? 150 : len),
             (const char *)body);
    lc_failed(pair, why);
  }
}

static int send_north(void *arg, int pair, const uint8_t payload[LC_PAYLOAD]) {
  (void)arg;
  if (pool.ue[rcv_ue(pair)].st != BU_READY) return LC_WAIT;
  if (m5_http_client_inflight(north.http) >= NORTH_INFLIGHT) return LC_WAIT;
  char b64[4 * LC_PAYLOAD / 3 + 8], body[512], id[48];
  if (next_msg_id(pair, id, sizeof id) < 0) return LC_REFUSED;
  bu_b64_enc(payload, LC_PAYLOAD, b64);
  int n = snprintf(body, sizeof body,
                   "{\"oriAddr\":{\"addrType\":\"AS\",\"addr\":\"%s\"},"
                   "\"destAddr\":{\"addrType\":\"UE\",\"addr\":\"%s\"},\"msgId\":\"%s\","
                   "\"payload\":\"%s\",\"stoAndFwInd\":false}",
                   north.as_id, pool.ue[rcv_ue(pair)].id, id, b64);
  int rc = m5_http_client_post_json(north.http, north.url, body, (size_t)n, north_done,
                                    (void *)(intptr_t)pair);
  if (rc == M5_EFULL) return LC_WAIT;
  if (rc) fprintf(stderr, "m5load: pair %d: %s\n", pair, m5_strerror(rc));
  return rc ? LC_REFUSED : LC_SENT;
}

static void on_request(bu_ue_t *c, m5_coap_req_t *req, void *arg) {
  (void)arg;
  int pair = ue_pair(c->idx);
  size_t len, idl = 0, pl = 0;
  const char *body = (const char *)m5_coap_req_body(req, &len);
  const char *id = bu_json_str(body, len, "msgId", &idl);
  const char *p = bu_json_str(body, len, "payload", &pl);
  uint8_t payload[LC_PAYLOAD + 8];
  long n = p ? bu_b64_dec(p, p + pl, payload, sizeof payload) : -1;
  if (!id || n < 0 || idl > M5_MSG_ID_MAX) {
    m5_coap_ep_respond_error(req, M5_COAP_BAD_REQUEST, "bench: not a MSG");
    return;
  }
  char ans[256];
  int an = snprintf(ans, sizeof ans,
                    "{\"msgType\":\"MSGRESP\",\"msgId\":\"%.*s\",\"oriAddr\":{\"addrType\":\"%s\","
                    "\"addr\":\"%s\"}}",
                    (int)idl, id, north.url ? "AS" : "UE", north.url ? north.as_id : pool.ue[2 * pair].id);
  m5_coap_ep_respond(req, M5_COAP_CHANGED, M5_COAP_FORMAT_JSON, (const uint8_t *)ans, (size_t)an,
                     NULL, 0);
  lc_received(pair, payload, (size_t)n);
}

/* ---- sessions ---- */

static void on_down(bu_ue_t *u, int lost, const char *why, void *arg) {
  (void)arg;
  if (lost)
    lc_session_lost(u->id, why);
  else
    fprintf(stderr, "m5load: %s: %s\n", u->id, why);
}

/* The suite and key exchange of the first session, in the report (lc_tls_report). */
static void tls_info(const SSL *ssl, int where, int ret) {
  (void)ret;
  if (where & SSL_CB_HANDSHAKE_DONE) lc_tls_report(ssl);
}

static int exit_code;

static void tick(m5_loop_t *l, void *arg) {
  (void)arg;
  if (!started) {
    bu_pool_open(&pool);
    if (pool.n_ready == pool.n) {
      started = pool.frozen = 1;
      lc_start();
    } else if (lc_now_ns() > setup_deadline || pool.n_dead) {
      fprintf(stderr, "m5load: only %d of %d sessions registered (%d failed)\n", pool.n_ready,
              pool.n, pool.n_dead);
      exit_code = 1;
      m5_loop_stop(l);
      return;
    }
  } else {
    lc_tick();
  }
  m5_loop_timer_add(l, 1, tick, NULL);
}

static void done(void *arg) {
  (void)arg;
  m5_loop_stop(loop);
}

/* The AS's HTTP/2 client: its certificate, the server's CA, its bearer token (one line). */
static m5_http_client_t *north_client(const char *cert, const char *key, const char *ca,
                                      const char *token_file) {
  char tok[4096], err[256];
  FILE *f = fopen(token_file, "r");
  size_t n = f ? fread(tok, 1, sizeof tok - 1, f) : 0;
  if (f) fclose(f);
  while (n && (tok[n - 1] == '\n' || tok[n - 1] == '\r')) n--;
  tok[n] = '\0';
  if (!n) {
    fprintf(stderr, "m5load: no token in %s\n", token_file);
    return NULL;
  }
  m5_http_client_opts_t ho = {.cert_file = cert, .key_file = key, .ca_file = ca,
                              .bearer_token = tok, .timeout_ms = 30000,
                              .max_inflight = NORTH_INFLIGHT};
  m5_http_client_t *c = m5_http_client_new(loop, &ho, err, sizeof err);
  OPENSSL_cleanse(tok, sizeof tok);
  if (!c) fprintf(stderr, "m5load: %s\n", err);
  return c;
}

/* getopt_long value of --recv-port: outside the letters lc.h's options use ('R' is --rate). */
#define OPT_RECV_PORT 256

static void usage(void) {
  fprintf(stderr,
          "usage: m5load --print-subscribers --pairs N\n"
          "       m5load [--host 127.0.0.1] --port P [--fqdn localhost] --pairs N [--window 20]\n"
          "              [--warm S] [--secs S] [--half F | --rate R] [--drain S]\n"
          "              [--server-pid PID] [--label NAME] [--nagle] [--dtls] [--recv-port P]\n"
          "              [--north URL --as-id ID --as-cert F --as-key F --ca F --token-file F]\n"
          "  --nagle: turn Nagle's algorithm back on (libm5c sets TCP_NODELAY)\n"
          "  --dtls: CoAP over DTLS 1.2 (UDP, same port) instead of TLS 1.3 on TCP\n"
          "  --recv-port: the receivers connect to this port (another m5s node sharing the\n"
          "    store: every message crosses nodes), the senders to --port\n"
          "  --north: the senders are the Application Server ID posting deliver-as-message to URL\n"
          "    (HTTP/2, its certificate and key, the CA of the server, its bearer token in F)\n" LC_USAGE);
  exit(2);
}

int main(int argc, char **argv) {
  const char *host = "127.0.0.1", *fqdn = "localhost", *label = "m5s";
  int port = 0, recv_port = 0, print = 0, dtls = 0;
  const char *as_cert = NULL, *as_key = NULL, *ca = NULL, *token_file = NULL;
  lc_opts_t o = {.pairs = 50, .window = 20, .warm_s = 3, .meas_s = 10, .half = 0.5, .drain_s = 5};
  static const struct option lo[] = {
      {"host", 1, 0, 'h'},  {"port", 1, 0, 'p'},  {"fqdn", 1, 0, 'f'}, LC_LONG_OPTIONS,
      {"label", 1, 0, 'l'}, {"print-subscribers", 0, 0, 'x'}, {"nagle", 0, 0, 'N'},
      {"dtls", 0, 0, 'D'},  {"north", 1, 0, 'U'}, {"as-id", 1, 0, 'A'},  {"as-cert", 1, 0, 'C'},
      {"as-key", 1, 0, 'K'}, {"ca", 1, 0, 'c'},   {"token-file", 1, 0, 'T'},
      {"recv-port", 1, 0, OPT_RECV_PORT}, {0, 0, 0, 0}};
  int opt;
  while ((opt = getopt_long(argc, argv, "", lo, NULL)) != -1) {
    switch (opt) {
    case 'h': host = optarg; break;
    case 'p': port = atoi(optarg); break;
    case 'f': fqdn = optarg; break;
    case 'l': label = optarg; break;
    case 'x': print = 1; break;
    case 'N': nodelay = 0; break;
    case 'D': dtls = 1; break;
    case 'U': north.url = optarg; break;
    case 'A': north.as_id = optarg; break;
    case 'C': as_cert = optarg; break;
    case 'K': as_key = optarg; break;
    case 'c': ca = optarg; break;
    case 'T': token_file = optarg; break;
    case OPT_RECV_PORT: recv_port = atoi(optarg); break;
    default:
      if (!lc_option(&o, opt, optarg)) usage();
    }
  }
  if (o.pairs < 1 || o.window < 1) usage();
  if (north.url && (!north.as_id || !as_cert || !as_key || !ca || !token_file || dtls)) usage();
  npairs = o.pairs;
  if (print) {
    for (int i = 0; i < 2 * o.pairs; i++) {
      char id[32], supi[16], hex[65];
      uint8_t kausf[32];
      subscriber(i, id, supi, kausf);
      m5_hex_encode(kausf, 32, hex, sizeof hex);
      printf("%s %s %s\n", id, supi, hex);
    }
    return 0;
  }
  if (port < 1 || port > 65535 || recv_port < 0 || recv_port > 65535) usage();
  if (recv_port && north.url) usage(); /* the receivers of --north are on --port */
  signal(SIGPIPE, SIG_IGN);
  m5_log_set_level(M5_LOG_WARN);
  char err[256];
  loop = m5_loop_new();
  SSL_CTX *ctx = m5_akma_client_ctx_new(dtls, 0, err, sizeof err);
  if (!loop || !ctx) {
    fprintf(stderr, "m5load: %s\n", ctx ? "out of memory" : err);
    return 1;
  }
  SSL_CTX_set_info_callback(ctx, tls_info);
  static const bu_cbs_t cbs = {NULL, on_request, on_down};
  if (bu_pool_init(&pool, loop, ctx, host, (uint16_t)port, north.url ? o.pairs : 2 * o.pairs,
                   &cbs, NULL))
    return 1;
  pool.copts.transport = dtls ? M5C_DTLS : M5C_TLS;
  for (int i = 0; i < pool.n; i++) {
    char supi[16];
    uint8_t kausf[32];
    subscriber(north.url ? 2 * i + 1 : i, pool.ue[i].id, supi, kausf);
    if (!north.url && i % 2) pool.ue[i].port = (uint16_t)recv_port; /* br<k>; 0 = --port */
    int rc = bu_cred(supi, kausf, fqdn, &pool.ue[i].cred);
    OPENSSL_cleanse(kausf, sizeof kausf);
    if (rc) {
      fprintf(stderr, "m5load: cannot derive the AKMA credentials\n");
      return 1;
    }
  }
  if (north.url && !(north.http = north_client(as_cert, as_key, ca, token_file))) return 1;
  o.system = label;
  o.send = north.url ? send_north : send_msg;
  o.done = done;
  if (lc_init(&o)) return 1;
  setup_deadline = lc_now_ns() + 60000000000ull;
  m5_loop_timer_add(loop, 0, tick, NULL);
  m5_loop_run(loop);
  return exit_code ? exit_code : lc_exit_code();
}
