/* mqc (mqc.h): a small MQTT 3.1.1 client over TLS 1.3 PSK for bench/mqload. The packets
 * (MQTT 3.1.1 §2-§3: CONNECT, CONNACK, PUBLISH, PUBACK, SUBSCRIBE, SUBACK, PINGREQ, PINGRESP)
 * are the project's codec's (src/lib/mqtt/mqtt.h, shared with the MQTT message gateway);
 * this file is the bench's I/O discipline around it. */
#include "mqc.h"

#include "core/err.h"
#include "mqtt/mqtt.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define KEEPALIVE_S 60
#define IN_CAP 16384       /* plaintext read but not parsed; a packet is far smaller */
#define MAX_PACKET 4096    /* the broker sends us nothing bigger (64-byte payloads) */
#define OUT_MAX (1u << 20) /* plaintext queued in one iteration */
#define RECV_CHUNK 65536

static struct {
  mqc_cbs_t cbs;
  SSL_CTX *ctx;
  int ep;
  struct sockaddr_in sa;
  mqc_t *dirty;
  int verify;     /* the broker presents a certificate (mqc_init's ca_file) instead of a PSK */
  int persistent; /* CONNECT with clean session 0 */
  uint64_t n_send, n_recv, n_poll, n_write; /* for mqc_io_report */
} G;

static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* TLS 1.3 takes the external PSK from this callback (hash SHA-256, the suite the broker
 * pins: TLS_AES_128_GCM_SHA256); the broker's psk_file holds the same identity and key. */
static unsigned int psk_cb(SSL *ssl, const char *hint, char *id, unsigned int id_max,
                           unsigned char *psk, unsigned int psk_max) {
  (void)hint;
  mqc_t *c = SSL_get_app_data(ssl);
  size_t n = c ? strlen(c->psk_id) : 0;
  if (!c || n + 1 > id_max || psk_max < sizeof c->key) return 0;
  memcpy(id, c->psk_id, n + 1);
  memcpy(psk, c->key, sizeof c->key);
  return (unsigned int)sizeof c->key;
}

int mqc_init(const mqc_cbs_t *cbs, const char *host, int port, const char *ca_file,
             int persistent) {
  G.cbs = *cbs;
  G.sa.sin_family = AF_INET;
  G.sa.sin_port = htons((uint16_t)port);
  if (inet_pton(AF_INET, host, &G.sa.sin_addr) != 1) {
    fprintf(stderr, "mqload: %s is not an IPv4 address\n", host);
    return -1;
  }
  G.ep = epoll_create1(EPOLL_CLOEXEC);
  G.ctx = SSL_CTX_new(TLS_client_method());
  if (G.ep < 0 || !G.ctx || !SSL_CTX_set_min_proto_version(G.ctx, TLS1_3_VERSION) ||
      !SSL_CTX_set_ciphersuites(G.ctx, "TLS_AES_128_GCM_SHA256") ||
      !SSL_CTX_set1_groups_list(G.ctx, "X25519")) {
    fprintf(stderr, "mqload: cannot set up OpenSSL\n");
    return -1;
  }
  G.persistent = persistent;
  if (ca_file) { /* a broker without TLS 1.3 PSK (RabbitMQ): its certificate, for localhost */
    G.verify = 1;
    if (SSL_CTX_load_verify_locations(G.ctx, ca_file, NULL) != 1) {
      fprintf(stderr, "mqload: cannot read the CA %s\n", ca_file);
      return -1;
    }
    SSL_CTX_set_verify(G.ctx, SSL_VERIFY_PEER, NULL);
    return 0;
  }
  SSL_CTX_set_verify(G.ctx, SSL_VERIFY_NONE, NULL); /* the PSK authenticates the broker */
  SSL_CTX_set_psk_client_callback(G.ctx, psk_cb);
  return 0;
}

static void set_events(mqc_t *c, int wout) {
  if (c->wout == wout) return;
  struct epoll_event ev = {.events = EPOLLIN | (wout ? EPOLLOUT : 0u), .data.ptr = c};
  epoll_ctl(G.ep, EPOLL_CTL_MOD, c->fd, &ev);
  c->wout = wout;
}

static void down(mqc_t *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void down(mqc_t *c, const char *fmt, ...) {
  if (c->st == MQC_DEAD) return;
  char why[200];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(why, sizeof why, fmt, ap);
  va_end(ap);
  c->st = MQC_DEAD;
  if (c->fd >= 0) {
    epoll_ctl(G.ep, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
  }
  c->fd = -1;
  SSL_free(c->ssl); /* and its BIOs */
  c->ssl = NULL;
  c->rb = c->wb = NULL;
  c->in_len = 0;
  m5_buf_free(&c->out);
  c->n_infl = 0;
  OPENSSL_cleanse(c->key, sizeof c->key);
  ERR_clear_error();
  G.cbs.down(c, why);
}

static void mark_dirty(mqc_t *c) {
  if (c->dirty) return;
  c->dirty = 1;
  c->next_dirty = G.dirty;
  G.dirty = c;
}

/* After a packet was appended to c->out: it leaves at the end of this iteration. */
static int queued(mqc_t *c, int rc) {
  if (rc) return -1;
  mark_dirty(c);
  return 0;
}

static int queue_connect(mqc_t *c) {
  /* level 4 (3.1.1), clean session, or none (a persistent session: the broker keeps the
   * subscription, a durable queue on RabbitMQ) */
  m5_mqtt_connect_t m = {.version = M5_MQTT_V311,
                         .client_id = c->cid,
                         .clean = !G.persistent,
                         .keepalive_s = KEEPALIVE_S};
  return queued(c, m5_mqtt_put_connect(&c->out, &m));
}

static uint16_t next_pid(mqc_t *c) {
  for (;;) {
    if (!++c->pid) c->pid = 1; /* 0 is not a packet id */
    int used = c->pid == c->sub_pid && c->st == MQC_SUBACK;
    for (int i = 0; i < c->n_infl && !used; i++)
      used = c->infl[i] == c->pid;
    if (!used) return c->pid;
  }
}

static int queue_subscribe(mqc_t *c) {
  c->sub_pid = next_pid(c);
  return queued(c, m5_mqtt_put_subscribe(&c->out, M5_MQTT_V311, c->sub_pid, c->sub, 1));
}

int mqc_publish(mqc_t *c, const char *topic, const uint8_t *pl, size_t n) {
  if (c->st == MQC_DEAD) return MQC_ERR;
  if (c->st != MQC_READY || c->n_infl >= MQC_INFLIGHT) return MQC_WAIT;
  uint16_t pid = next_pid(c);
  if (queued(c, m5_mqtt_put_publish(&c->out, M5_MQTT_V311, topic, 1, 0, pid, NULL, 0, pl, n)))
    return MQC_ERR;
  c->infl[c->n_infl++] = pid;
  return MQC_OK;
}

/* Hands what OpenSSL wrote to the socket: one send(); the rest waits for EPOLLOUT. */
static void send_pending(mqc_t *c) {
  char *data = NULL;
  long n = BIO_get_mem_data(c->wb, &data);
  if (n <= 0 || !data) {
    set_events(c, 0);
    return;
  }
  ssize_t s = send(c->fd, data, (size_t)n, MSG_NOSIGNAL);
  G.n_send++;
  if (s == n) {
    (void)BIO_reset(c->wb);
    set_events(c, 0);
    return;
  }
  if (s < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
    down(c, "connection lost while sending: %s", strerror(errno));
    return;
  }
  static uint8_t skip[RECV_CHUNK];
  for (size_t left = s > 0 ? (size_t)s : 0; left;) { /* drop what left from the BIO */
    int k = BIO_read(c->wb, skip, (int)(left < sizeof skip ? left : sizeof skip));
    if (k <= 0) break;
    left -= (size_t)k;
  }
  set_events(c, 1);
}

void mqc_flush(void) {
  mqc_t *c = G.dirty;
  G.dirty = NULL;
  while (c) {
    mqc_t *next = c->next_dirty;
    c->dirty = 0;
    c->next_dirty = NULL;
    if (c->st == MQC_DEAD) {
      c = next;
      continue;
    }
    if (c->out.len) {
      int w = SSL_write(c->ssl, c->out.data, (int)c->out.len); /* a memory BIO takes it all */
      G.n_write++;
      if (w != (int)c->out.len) {
        down(c, "SSL_write failed");
        c = next;
        continue;
      }
      m5_buf_reset(&c->out);
      c->last_tx_ns = now_ns();
    }
    if (!c->wout) send_pending(c); /* else EPOLLOUT sends it in order */
    c = next;
  }
}

void mqc_keepalive(mqc_t *c, uint64_t now) {
  if (c->st < MQC_CONNACK || c->st == MQC_DEAD) return;
  if (now - c->last_tx_ns < (uint64_t)KEEPALIVE_S * 500000000u) return;
  if (queued(c, m5_mqtt_put_empty(&c->out, M5_MQTT_PINGREQ)))
    return;            /* the output is full: something leaves anyway */
  c->last_tx_ns = now; /* one PINGREQ per half keep-alive, whatever flush does */
}

/* ---- input ---- */

static void on_packet(mqc_t *c, uint8_t tf, const uint8_t *b, size_t len) {
  uint16_t pid;
  uint8_t code;
  switch (tf >> 4) {
  case M5_MQTT_CONNACK: {
    m5_mqtt_connack_t ca;
    if (c->st != MQC_CONNACK || tf & 15 || m5_mqtt_parse_connack(M5_MQTT_V311, b, len, &ca)) break;
    if (ca.code) {
      down(c, "CONNACK refused the connection (return code %u)", ca.code);
      return;
    }
    if (c->sub[0]) {
      c->st = MQC_SUBACK;
      if (queue_subscribe(c)) down(c, "cannot queue SUBSCRIBE");
      return;
    }
    c->st = MQC_READY;
    G.cbs.ready(c);
    return;
  }
  case M5_MQTT_SUBACK:
    if (c->st != MQC_SUBACK || m5_mqtt_parse_suback(M5_MQTT_V311, b, len, &pid, &code) ||
        pid != c->sub_pid)
      break;
    if (code != 1) {
      down(c, "subscription to %s refused or not QoS 1 (return code 0x%02x)", c->sub, code);
      return;
    }
    c->st = MQC_READY;
    G.cbs.ready(c);
    return;
  case M5_MQTT_PUBACK: /* packet id of one of our publishes */
    if (c->st != MQC_READY || m5_mqtt_parse_puback(M5_MQTT_V311, b, len, &pid, &code)) break;
    for (int i = 0; i < c->n_infl; i++)
      if (c->infl[i] == pid) {
        c->infl[i] = c->infl[--c->n_infl];
        G.cbs.puback(c);
        return;
      }
    down(c, "PUBACK for packet id %u, not in flight", pid);
    return;
  case M5_MQTT_PINGRESP:
    if (len) break;
    return;
  case M5_MQTT_PUBLISH: {
    m5_mqtt_publish_t p;
    if (c->st != MQC_READY || m5_mqtt_parse_publish(M5_MQTT_V311, tf, b, len, &p)) {
      if (((tf >> 1) & 3) == 2) {
        down(c, "a QoS 2 PUBLISH (the subscription is QoS 1)");
        return;
      }
      break;
    }
    if (p.qos && queued(c, m5_mqtt_put_puback(&c->out, M5_MQTT_V311, p.pid, 0))) {
      down(c, "cannot queue PUBACK");
      return;
    }
    G.cbs.message(c, p.topic, p.tlen, p.payload, p.plen);
    return;
  }
  default:
    break;
  }
  down(c, "malformed or unexpected packet from the broker (type 0x%02x, %zu bytes, state %d)", tf,
       len, (int)c->st);
}

/* Parses the complete packets at the front of c->in. */
static void parse(mqc_t *c) {
  size_t off = 0;
  while (c->st != MQC_DEAD) {
    uint8_t tf;
    size_t hdr, rem;
    int r = m5_mqtt_frame(c->in + off, c->in_len - off, MAX_PACKET, &tf, &hdr, &rem);
    if (r == 0) break;
    if (r < 0) {
      down(c,
           r == M5_ERANGE ? "a packet of more than %d bytes from the broker"
                          : "malformed remaining length from the broker (at most %d bytes)",
           MAX_PACKET);
      return;
    }
    on_packet(c, tf, c->in + off + hdr, rem);
    off += hdr + rem;
  }
  if (c->st == MQC_DEAD) return;
  c->in_len -= off;
  if (off && c->in_len) memmove(c->in, c->in + off, c->in_len);
}

/* SSL_read until OpenSSL wants more input, parsing as it goes. */
static void read_app(mqc_t *c) {
  while (c->st != MQC_DEAD) {
    int r = SSL_read(c->ssl, c->in + c->in_len, (int)(IN_CAP - c->in_len));
    if (r > 0) {
      c->in_len += (size_t)r;
      parse(c);
      continue;
    }
    int e = SSL_get_error(c->ssl, r);
    if (e == SSL_ERROR_WANT_READ) break;
    down(c, e == SSL_ERROR_ZERO_RETURN ? "the broker closed the TLS session"
                                       : "TLS error on the session");
    return;
  }
  if (c->st != MQC_DEAD && BIO_ctrl_pending(c->wb)) mark_dirty(c); /* e.g. a KeyUpdate */
}

static void handshake(mqc_t *c) {
  int r = SSL_do_handshake(c->ssl);
  mark_dirty(c); /* a flight to send, or nothing */
  if (r == 1) {
    c->st = MQC_CONNACK;
    c->last_tx_ns = now_ns(); /* the keep-alive counts from CONNECT */
    if (queue_connect(c)) {
      down(c, "cannot queue CONNECT");
      return;
    }
    read_app(c); /* what came with the server's last flight */
    return;
  }
  int e = SSL_get_error(c->ssl, r);
  if (e != SSL_ERROR_WANT_READ) {
    char buf[160];
    ERR_error_string_n(ERR_peek_last_error(), buf, sizeof buf);
    down(c, "TLS handshake failed: %s", ERR_peek_last_error() ? buf : "closed by the broker");
  }
}

static BIO *mem_bio(void) {
  BIO *b = BIO_new(BIO_s_mem());
  if (b) BIO_set_mem_eof_return(b, -1); /* empty means "wait", not end of file */
  return b;
}

int mqc_open(mqc_t *c, const char *cid, const char *psk_id, const uint8_t key[32],
             const char *sub) {
  snprintf(c->cid, sizeof c->cid, "%s", cid);
  snprintf(c->psk_id, sizeof c->psk_id, "%s", psk_id);
  snprintf(c->sub, sizeof c->sub, "%s", sub ? sub : "");
  memcpy(c->key, key, sizeof c->key);
  m5_buf_init(&c->out, OUT_MAX);
  c->in = malloc(IN_CAP);
  c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  c->ssl = SSL_new(G.ctx);
  c->rb = mem_bio();
  c->wb = mem_bio();
  int one = 1;
  struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.ptr = c};
  if (!c->in || c->fd < 0 || !c->ssl || !c->rb || !c->wb ||
      setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) ||
      epoll_ctl(G.ep, EPOLL_CTL_ADD, c->fd, &ev) ||
      (connect(c->fd, (struct sockaddr *)&G.sa, sizeof G.sa) && errno != EINPROGRESS)) {
    fprintf(stderr, "mqload: client %s: cannot connect: %s\n", cid, strerror(errno));
    return -1;
  }
  SSL_set_bio(c->ssl, c->rb, c->wb);
  SSL_set_app_data(c->ssl, c);
  if (G.verify &&
      (!SSL_set1_host(c->ssl, "localhost") || !SSL_set_tlsext_host_name(c->ssl, "localhost"))) {
    fprintf(stderr, "mqload: client %s: cannot set the broker's name\n", cid);
    return -1;
  }
  SSL_set_connect_state(c->ssl);
  c->wout = 1;
  c->st = MQC_TCP;
  return 0;
}

static void on_event(mqc_t *c, uint32_t events) {
  if (c->st == MQC_TCP) {
    int err = 0;
    socklen_t l = sizeof err;
    if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &l) || err) {
      down(c, "cannot connect: %s", strerror(err ? err : errno));
      return;
    }
    if (!(events & EPOLLOUT)) return;
    c->st = MQC_TLS;
    set_events(c, 0);
    handshake(c);
    return;
  }
  if (events & EPOLLOUT) {
    send_pending(c);
    if (c->st == MQC_DEAD) return;
  }
  if (!(events & (EPOLLIN | EPOLLERR | EPOLLHUP))) return;
  static uint8_t buf[RECV_CHUNK];
  ssize_t r = recv(c->fd, buf, sizeof buf, 0);
  G.n_recv++;
  if (r <= 0) {
    if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) return;
    down(c, "connection closed by the broker%s%s", r ? ": " : "", r ? strerror(errno) : "");
    return;
  }
  if (BIO_write(c->rb, buf, (int)r) != (int)r) {
    down(c, "out of memory");
    return;
  }
  if (c->st == MQC_TLS)
    handshake(c);
  else
    read_app(c);
}

int mqc_poll(int timeout_ms) {
  struct epoll_event evs[256];
  int n = epoll_wait(G.ep, evs, 256, timeout_ms);
  G.n_poll++;
  if (n < 0) return errno == EINTR ? 0 : -1;
  for (int k = 0; k < n; k++) {
    mqc_t *c = evs[k].data.ptr;
    if (c->st != MQC_DEAD) on_event(c, evs[k].events);
  }
  return n;
}

void mqc_io_report(void) {
  fprintf(stderr, "mqload: io: %llu send(), %llu recv(), %llu SSL_write, %llu epoll_wait\n",
          (unsigned long long)G.n_send, (unsigned long long)G.n_recv, (unsigned long long)G.n_write,
          (unsigned long long)G.n_poll);
}
