/* m5load: the MSGin5G-1 load generator of docs/benchmarks.md. One process, one m5_loop, 2N
 * UE sessions over CoAP over TLS 1.3 (coaps+tcp, AKMA PSK: K_AF derived from K_AKMA in the
 * handshake, the server asks the real m5-aanf), built on libm5c's channel (src/client/chan.h:
 * non-blocking socket + TLS + CoAP endpoint), so every client shares the one loop. Sender k
 * (UE Service ID bs<k>) sends MSG to receiver k (br<k>); the pattern and the report are
 * lc.c's.
 *
 *   m5load --print-subscribers --pairs N      "ueSvcId supi kausf" per line, for provisioning
 *   m5load --port P --pairs N [--window 20] [--warm S] [--secs S] [--half F] [--server-pid PID]
 */
#include "lc.h"

#include "chan.h"
#include "core/err.h"
#include "core/log.h"
#include "crypto/akma.h"
#include "crypto/codec.h"

#include <getopt.h>
#include <time.h>
#include <unistd.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PATH "msgin5g"
#define MAX_OPENING 32
#define MAX_ATTEMPTS 5

typedef enum { C_IDLE, C_OPENING, C_REGISTERING, C_READY, C_DEAD } cstate_t;

typedef struct {
  int idx, pair, sender;
  char id[32];
  m5_akma_cred_t cred;
  m5c_chan_t *ch;
  m5_coap_ep_t *ep;
  cstate_t st;
  int attempts;
} cl_t;

static m5_loop_t *loop;
static SSL_CTX *ctx;
static m5c_opts_t copts;
static cl_t *cl;
static int n_cl, n_ready, n_opening, started, lost_sessions;
static uint64_t setup_deadline;
static int nodelay = 1;

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

static int make_cred(int i, const char *fqdn, m5_akma_cred_t *c) {
  char id[32], supi[16], realm[128];
  uint8_t kausf[32], atid[32];
  subscriber(i, id, supi, kausf);
  memset(c, 0, sizeof *c);
  if (m5_akma_kakma(kausf, supi, c->kakma) || m5_akma_atid(kausf, supi, atid) ||
      m5_akma_realm_from_supi(supi, 2, realm, sizeof realm) ||
      m5_akma_akid(M5_AKMA_DEFAULT_RID, atid, realm, c->akid, sizeof c->akid))
    return -1;
  snprintf(c->fqdn, sizeof c->fqdn, "%s", fqdn);
  return 0;
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

/* ---- base64 (RFC 4648 §4, padded), as the MSG payload is on the wire ---- */

static const char B64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static size_t b64_enc(const uint8_t *in, size_t n, char *out) {
  size_t o = 0;
  for (size_t i = 0; i < n; i += 3) {
    uint32_t v = (uint32_t)in[i] << 16;
    if (i + 1 < n) v |= (uint32_t)in[i + 1] << 8;
    if (i + 2 < n) v |= in[i + 2];
    out[o++] = B64[v >> 18 & 63];
    out[o++] = B64[v >> 12 & 63];
    out[o++] = i + 1 < n ? B64[v >> 6 & 63] : '=';
    out[o++] = i + 2 < n ? B64[v & 63] : '=';
  }
  out[o] = 0;
  return o;
}

static int b64_val(int c) {
  const char *p = c ? strchr(B64, c) : NULL;
  return p ? (int)(p - B64) : -1;
}

/* Decodes until the closing quote; returns the byte count or -1. */
static long b64_dec(const char *s, const char *end, uint8_t *out, size_t cap) {
  uint32_t acc = 0;
  int bits = 0;
  size_t o = 0;
  for (; s < end && *s != '"'; s++) {
    if (*s == '=' || *s == '\\') continue;
    int v = b64_val(*s);
    if (v < 0) return -1;
    acc = acc << 6 | (uint32_t)v;
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      if (o >= cap) return -1;
      out[o++] = (uint8_t)(acc >> bits);
    }
  }
  return (long)o;
}

/* The string value of "key": in a JSON text (no unescaping: ids and base64 need none). */
static const char *json_str(const char *body, size_t len, const char *key, size_t *vlen) {
  char pat[32];
  int pn = snprintf(pat, sizeof pat, "\"%s\":\"", key);
  const char *end = body + len;
  const char *p = memmem(body, len, pat, (size_t)pn);
  if (!p) return NULL;
  p += pn;
  const char *q = memchr(p, '"', (size_t)(end - p));
  if (!q) return NULL;
  *vlen = (size_t)(q - p);
  return p;
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

static int send_msg(void *arg, int pair, const uint8_t payload[LC_PAYLOAD]) {
  (void)arg;
  cl_t *s = &cl[2 * pair];
  if (s->st != C_READY) return -1;
  static uint64_t *seqs;
  /* msgIds must differ from run to run: m5s's dedup window (10 min) outlives a run and would
   * answer a repeated (oriAddr, msgId) with its first ack without forwarding it. */
  static unsigned run_nonce;
  if (!seqs) {
    seqs = calloc((size_t)n_cl, sizeof *seqs);
    run_nonce = (unsigned)getpid() ^ (unsigned)time(NULL);
  }
  char b64[4 * LC_PAYLOAD / 3 + 8], body[512];
  b64_enc(payload, LC_PAYLOAD, b64);
  int n = snprintf(body, sizeof body,
                   "{\"msgType\":\"MSG\",\"oriAddr\":{\"addrType\":\"UE\",\"addr\":\"%s\"},"
                   "\"destAddr\":{\"addrType\":\"UE\",\"addr\":\"%s\"},\"msgId\":\"%x-%d-%llu\","
                   "\"payload\":\"%s\"}",
                   s->id, cl[2 * pair + 1].id, run_nonce, pair, (unsigned long long)seqs[pair]++,
                   b64);
  return m5_coap_ep_request(s->ep, M5_COAP_POST, PATH, M5_COAP_FORMAT_JSON, (const uint8_t *)body,
                            (size_t)n, msg_done, (void *)(intptr_t)pair);
}

static void on_request(m5_coap_ep_t *ep, m5_coap_req_t *req, void *arg) {
  (void)ep;
  cl_t *c = arg;
  size_t len, idl = 0, pl = 0;
  const char *body = (const char *)m5_coap_req_body(req, &len);
  const char *id = json_str(body, len, "msgId", &idl);
  const char *p = json_str(body, len, "payload", &pl);
  uint8_t payload[LC_PAYLOAD + 8];
  long n = p ? b64_dec(p, p + pl, payload, sizeof payload) : -1;
  if (!id || n < 0 || idl > M5_MSG_ID_MAX) {
    m5_coap_ep_respond_error(req, M5_COAP_BAD_REQUEST, "bench: not a MSG");
    return;
  }
  char ans[256];
  int an = snprintf(ans, sizeof ans,
                    "{\"msgType\":\"MSGRESP\",\"msgId\":\"%.*s\",\"oriAddr\":{\"addrType\":\"UE\","
                    "\"addr\":\"%s\"}}",
                    (int)idl, id, cl[2 * c->pair].id);
  m5_coap_ep_respond(req, M5_COAP_CHANGED, M5_COAP_FORMAT_JSON, (const uint8_t *)ans, (size_t)an,
                     NULL, 0);
  lc_received(c->pair, payload, (size_t)n);
}

/* ---- sessions ---- */

static void reg_done(void *arg, int status, const m5_coap_msg_t *resp, const uint8_t *body,
                     size_t len) {
  cl_t *c = arg;
  if (c->st != C_REGISTERING) return;
  if (status || (resp->code != M5_COAP_CREATED && resp->code != M5_COAP_CHANGED)) {
    char code[8];
    fprintf(stderr, "m5load: %s: REG failed: %s %.*s\n", c->id,
            status ? m5_strerror(status) : m5_coap_code_str(resp->code, code, sizeof code),
            (int)(len > 100 ? 100 : len), body ? (const char *)body : "");
    c->st = C_DEAD;
    return;
  }
  c->st = C_READY;
  n_ready++;
}

static void chan_up(m5c_chan_t *ch, m5_coap_ep_t *ep, void *arg) {
  (void)ch;
  cl_t *c = arg;
  n_opening--;
  c->ep = ep;
  c->st = C_REGISTERING;
  char body[128];
  int n = snprintf(body, sizeof body, "{\"msgType\":\"REG\",\"ueSvcId\":\"%s\"}", c->id);
  if (m5_coap_ep_request(ep, M5_COAP_POST, PATH, M5_COAP_FORMAT_JSON, (const uint8_t *)body,
                         (size_t)n, reg_done, c))
    c->st = C_DEAD;
}

static void chan_down(m5c_chan_t *ch, int status, const char *why, void *arg) {
  cl_t *c = arg;
  if (c->st == C_OPENING) n_opening--;
  if (c->st == C_READY) n_ready--;
  m5c_chan_free(ch);
  c->ch = NULL;
  c->ep = NULL;
  if (started) {
    if (lost_sessions++ < 5) fprintf(stderr, "m5load: %s: session lost: %s\n", c->id, why);
    c->st = C_DEAD;
    return;
  }
  fprintf(stderr, "m5load: %s: %s (%s)%s\n", c->id, why, m5_strerror(status),
          c->attempts < MAX_ATTEMPTS ? "; retrying" : "");
  c->st = c->attempts < MAX_ATTEMPTS ? C_IDLE : C_DEAD;
}

static void open_more(void) {
  static const m5c_chan_cbs_t cbs = {chan_up, on_request, chan_down};
  for (int i = 0; i < n_cl && n_opening < MAX_OPENING; i++) {
    cl_t *c = &cl[i];
    if (c->st != C_IDLE) continue;
    char err[200];
    c->attempts++;
    c->ch = m5c_chan_open(loop, ctx, &copts, &c->cred, &cbs, c, err, sizeof err);
    if (!c->ch) {
      fprintf(stderr, "m5load: %s: %s\n", c->id, err);
      c->st = C_DEAD;
      continue;
    }
    c->st = C_OPENING;
    n_opening++;
  }
}

static int exit_code;

static void tick(m5_loop_t *l, void *arg) {
  (void)arg;
  if (!started) {
    open_more();
    if (n_ready == n_cl) {
      started = 1;
      lc_start();
    } else if (lc_now_ns() > setup_deadline) {
      int dead = 0;
      for (int i = 0; i < n_cl; i++) dead += cl[i].st == C_DEAD;
      fprintf(stderr, "m5load: only %d of %d sessions registered (%d failed) in time\n", n_ready,
              n_cl, dead);
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

static void usage(void) {
  fprintf(stderr,
          "usage: m5load --print-subscribers --pairs N\n"
          "       m5load [--host 127.0.0.1] --port P [--fqdn localhost] --pairs N [--window 20]\n"
          "              [--warm S] [--secs S] [--half F] [--drain S] [--server-pid PID]\n"
          "              [--label NAME] [--nagle]\n"
          "  --nagle: turn Nagle's algorithm back on (libm5c sets TCP_NODELAY)\n");
  exit(2);
}

int main(int argc, char **argv) {
  const char *host = "127.0.0.1", *fqdn = "localhost", *label = "m5s";
  int port = 0, print = 0;
  lc_opts_t o = {.pairs = 50, .window = 20, .warm_s = 3, .meas_s = 10, .half = 0.5, .drain_s = 5};
  static const struct option lo[] = {
      {"host", 1, 0, 'h'},  {"port", 1, 0, 'p'},  {"fqdn", 1, 0, 'f'}, LC_LONG_OPTIONS,
      {"label", 1, 0, 'l'}, {"print-subscribers", 0, 0, 'x'}, {"nagle", 0, 0, 'N'},
      {0, 0, 0, 0}};
  int opt;
  while ((opt = getopt_long(argc, argv, "", lo, NULL)) != -1) {
    switch (opt) {
    case 'h': host = optarg; break;
    case 'p': port = atoi(optarg); break;
    case 'f': fqdn = optarg; break;
    case 'l': label = optarg; break;
    case 'x': print = 1; break;
    case 'N': nodelay = 0; break;
    default:
      if (!lc_option(&o, opt, optarg)) usage();
    }
  }
  if (o.pairs < 1 || o.window < 1) usage();
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
  if (port < 1 || port > 65535) usage();
  signal(SIGPIPE, SIG_IGN);
  m5_log_set_level(M5_LOG_WARN);
  char err[256];
  loop = m5_loop_new();
  ctx = m5_akma_client_ctx_new(0, 0, err, sizeof err);
  if (!loop || !ctx) {
    fprintf(stderr, "m5load: %s\n", ctx ? "out of memory" : err);
    return 1;
  }
  copts.host = host;
  copts.port = (uint16_t)port;
  copts.transport = M5C_TLS;
  n_cl = 2 * o.pairs;
  cl = calloc((size_t)n_cl, sizeof *cl);
  for (int i = 0; i < n_cl; i++) {
    char supi[16];
    uint8_t kausf[32];
    cl[i].idx = i;
    cl[i].pair = i / 2;
    cl[i].sender = !(i % 2);
    subscriber(i, cl[i].id, supi, kausf);
    if (make_cred(i, fqdn, &cl[i].cred)) {
      fprintf(stderr, "m5load: cannot derive the AKMA credentials\n");
      return 1;
    }
  }
  o.system = label;
  o.send = send_msg;
  o.done = done;
  if (lc_init(&o)) return 1;
  setup_deadline = lc_now_ns() + 60000000000ull;
  m5_loop_timer_add(loop, 0, tick, NULL);
  m5_loop_run(loop);
  return exit_code;
}
