/* The MQTT gateway's broker connection (mqtt_conn.h): socket, TLS, CONNECT, framing,
 * keep-alive (MQTT 5.0 §3.1.2.10: a PINGREQ within the keep-alive, the server silent for
 * 1.5 times it means the connection is dead), reconnection with back-off. */
#include "mqtt_conn.h"

#include "core/err.h"
#include "core/log.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/rand.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define DOM "mqtt"
#define CONNECT_TIMEOUT_MS 10000 /* TCP + TLS + CONNACK */
#define RECV_CHUNK 16384
#define STABLE_MS 10000 /* a session this long resets the reconnection back-off */

typedef enum { ST_IDLE, ST_TCP, ST_TLS, ST_CONNACK, ST_UP } st_t;

struct gwmq_conn {
  m5_loop_t *loop;
  gwmq_conn_opts_t o;
  char *host, *tls_name, *client_id, *username;
  uint8_t *password;
  gwmq_conn_cbs_t cbs;
  void *arg;
  st_t st;
  int fd;
  uint32_t events;
  SSL *ssl;
  m5_buf_t in, out; /* plaintext: read, not parsed yet / to send (partly sent) */
  size_t out_off;   /* bytes of out already handed to the socket / SSL_write */
  m5_defer_t flush;
  m5_timer_id_t t_retry, t_tick;
  uint64_t last_rx_ms, last_tx_ms, started_ms, up_ms;
  uint32_t backoff_ms;
};

static void schedule_reconnect(gwmq_conn_t *c);
static void start(m5_loop_t *loop, void *arg);
static void on_io(m5_loop_t *loop, int fd, uint32_t events, void *arg);

static char *dup_or_null(const char *s) {
  return s ? strdup(s) : NULL;
}

bool gwmq_conn_is_up(const gwmq_conn_t *c) {
  return c->st == ST_UP;
}

m5_buf_t *gwmq_conn_out(gwmq_conn_t *c) {
  return &c->out;
}

static void close_socket(gwmq_conn_t *c) {
  if (c->ssl) {
    SSL_free(c->ssl);
    c->ssl = NULL;
    ERR_clear_error();
  }
  if (c->fd >= 0) {
    m5_loop_del_fd(c->loop, c->fd);
    close(c->fd);
    c->fd = -1;
  }
  m5_loop_defer_cancel(c->loop, &c->flush);
  if (c->out.len) OPENSSL_cleanse(c->out.data, c->out.len); /* maybe an unsent CONNECT */
  m5_buf_reset(&c->in);
  m5_buf_reset(&c->out);
  c->out_off = 0;
  c->events = 0;
}

static void drop(gwmq_conn_t *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void drop(gwmq_conn_t *c, const char *fmt, ...) {
  if (c->st == ST_IDLE) return;
  char why[256];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(why, sizeof why, fmt, ap);
  va_end(ap);
  bool was_up = c->st == ST_UP;
  /* the back-off starts again only after a session that lasted: a broker that accepts and
   * then drops us at once is not hammered */
  if (was_up && m5_loop_now_ms(c->loop) - c->up_ms >= STABLE_MS) c->backoff_ms = 0;
  close_socket(c);
  c->st = ST_IDLE;
  M5_LOGW(DOM, "broker %s:%u: %s%s", c->host, c->o.port, was_up ? "connection lost: " : "", why);
  schedule_reconnect(c);
  c->cbs.down(c->arg, why);
}

void gwmq_conn_drop(gwmq_conn_t *c, const char *why) {
  drop(c, "%s", why);
}

static void set_events(gwmq_conn_t *c, uint32_t ev) {
  if (c->fd < 0 || ev == c->events) return;
  m5_loop_mod_fd(c->loop, c->fd, ev);
  c->events = ev;
}

/* ---- output ---- */

/* Hands the unsent part of out to the socket / TLS; waits for M5_EV_WRITE if it cannot all
 * go now. 0, or -1 when the connection was dropped. */
static int write_out(gwmq_conn_t *c) {
  while (c->out_off < c->out.len) {
    size_t n = c->out.len - c->out_off;
    const uint8_t *p = c->out.data + c->out_off;
    ssize_t w;
    if (c->ssl) {
      ERR_clear_error();
      int r = SSL_write(c->ssl, p, n > INT32_MAX ? INT32_MAX : (int)n);
      if (r <= 0) {
        int e = SSL_get_error(c->ssl, r);
        if (e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ) {
          set_events(c, M5_EV_READ | M5_EV_WRITE);
          return 0;
        }
        drop(c, "TLS write failed");
        return -1;
      }
      w = r;
    } else {
      w = send(c->fd, p, n, MSG_NOSIGNAL);
      if (w < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) {
          set_events(c, M5_EV_READ | M5_EV_WRITE);
          return 0;
        }
        drop(c, "send failed: %s", strerror(errno));
        return -1;
      }
    }
    c->out_off += (size_t)w;
    c->last_tx_ms = m5_loop_now_ms(c->loop);
  }
  if (c->st == ST_CONNACK) OPENSSL_cleanse(c->out.data, c->out.len); /* CONNECT: the password */
  m5_buf_reset(&c->out);
  c->out_off = 0;
  set_events(c, M5_EV_READ);
  return 0;
}

static void on_flush(m5_loop_t *loop, void *arg) {
  (void)loop;
  gwmq_conn_t *c = arg;
  if ((c->st == ST_CONNACK || c->st == ST_UP) && !(c->events & M5_EV_WRITE)) write_out(c);
}

void gwmq_conn_kick(gwmq_conn_t *c) {
  if (c->st == ST_CONNACK || c->st == ST_UP) m5_loop_defer(c->loop, &c->flush, on_flush, c);
}

/* ---- input ---- */

static void on_packet(gwmq_conn_t *c, uint8_t tf, const uint8_t *b, size_t len) {
  uint8_t type = tf >> 4;
  if (c->st == ST_CONNACK) {
    m5_mqtt_connack_t ca;
    if (type != M5_MQTT_CONNACK || m5_mqtt_parse_connack(M5_MQTT_V5, b, len, &ca)) {
      drop(c, "malformed or unexpected packet (type %u) instead of CONNACK", type);
      return;
    }
    if (ca.code) {
      drop(c, "CONNACK refused the connection (reason 0x%02x%s)", ca.code,
           ca.code == 0x86 || ca.code == 0x87 ? ": bad user name or password, or not authorized"
                                              : "");
      return;
    }
    c->st = ST_UP;
    c->up_ms = m5_loop_now_ms(c->loop);
    M5_LOGI(DOM, "broker %s:%u: connected as %s (session %s)", c->host, c->o.port, c->client_id,
            ca.session_present ? "resumed" : "new");
    c->cbs.up(c->arg, &ca);
    return;
  }
  if (type == M5_MQTT_PINGRESP) {
    if (len) drop(c, "malformed PINGRESP");
    return;
  }
  if (type == M5_MQTT_DISCONNECT) {
    drop(c, "the broker sent DISCONNECT (reason 0x%02x)", len ? b[0] : 0);
    return;
  }
  c->cbs.packet(c->arg, tf, b, len);
}

/* Parses every complete packet in c->in. */
static void parse_in(gwmq_conn_t *c) {
  size_t off = 0;
  while (c->st == ST_CONNACK || c->st == ST_UP) {
    uint8_t tf;
    size_t hdr, rem;
    int r = m5_mqtt_frame(c->in.data + off, c->in.len - off, c->o.max_packet, &tf, &hdr, &rem);
    if (r == 0) break;
    if (r < 0) {
      drop(c, r == M5_ERANGE ? "a packet larger than mqtt.max_packet from the broker"
                             : "malformed remaining length from the broker");
      return;
    }
    on_packet(c, tf, c->in.data + off + hdr, rem);
    off += hdr + rem;
    if (c->st == ST_IDLE) return; /* dropped: in was reset */
  }
  if (c->st != ST_IDLE) m5_buf_consume(&c->in, off);
}

static void read_in(gwmq_conn_t *c) {
  uint8_t buf[RECV_CHUNK];
  for (;;) {
    ssize_t r;
    if (c->ssl) {
      ERR_clear_error();
      int k = SSL_read(c->ssl, buf, sizeof buf);
      if (k <= 0) {
        int e = SSL_get_error(c->ssl, k);
        if (e == SSL_ERROR_WANT_READ) return;
        if (e == SSL_ERROR_WANT_WRITE) {
          set_events(c, M5_EV_READ | M5_EV_WRITE);
          return;
        }
        drop(c, e == SSL_ERROR_ZERO_RETURN ? "the broker closed the TLS session"
                                           : "TLS error on the session");
        return;
      }
      r = k;
    } else {
      r = recv(c->fd, buf, sizeof buf, 0);
      if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) return;
      if (r <= 0) {
        drop(c, "the broker closed the connection%s%s", r ? ": " : "", r ? strerror(errno) : "");
        return;
      }
    }
    c->last_rx_ms = m5_loop_now_ms(c->loop);
    if (m5_buf_append(&c->in, buf, (size_t)r)) {
      drop(c, "input buffer full");
      return;
    }
    parse_in(c);
    if (c->st == ST_IDLE) return;
  }
}

/* ---- connecting ---- */

static int queue_connect(gwmq_conn_t *c) {
  m5_mqtt_connect_t m = {
      .version = M5_MQTT_V5,
      .client_id = c->client_id,
      .clean = false, /* persistent: the broker keeps our subscription and queue while away */
      .keepalive_s = c->o.keepalive_s,
      .username = c->username,
      .password = c->password,
      .password_len = c->o.password_len,
      .session_expiry_s = c->o.session_expiry_s,
      .receive_max = c->o.receive_max,
      .max_packet = c->o.max_packet,
  };
  return m5_mqtt_put_connect(&c->out, &m);
}

static void connected(gwmq_conn_t *c) {
  c->st = ST_CONNACK;
  m5_buf_reset(&c->out); /* CONNECT comes first, whatever was queued while we were away */
  c->out_off = 0;
  if (queue_connect(c)) {
    drop(c, "cannot queue CONNECT");
    return;
  }
  write_out(c);
}

static void handshake(gwmq_conn_t *c) {
  ERR_clear_error();
  int r = SSL_do_handshake(c->ssl);
  if (r == 1) {
    connected(c);
    return;
  }
  int e = SSL_get_error(c->ssl, r);
  if (e == SSL_ERROR_WANT_READ) {
    set_events(c, M5_EV_READ);
    return;
  }
  if (e == SSL_ERROR_WANT_WRITE) {
    set_events(c, M5_EV_READ | M5_EV_WRITE);
    return;
  }
  long v = SSL_get_verify_result(c->ssl);
  char buf[200];
  unsigned long ec = ERR_peek_last_error();
  ERR_error_string_n(ec, buf, sizeof buf);
  drop(c, "TLS handshake failed: %s%s%s", v != X509_V_OK ? X509_verify_cert_error_string(v) : "",
       v != X509_V_OK ? "; " : "", ec ? buf : "closed by the broker");
}

static void on_io(m5_loop_t *loop, int fd, uint32_t events, void *arg) {
  (void)loop;
  (void)fd;
  gwmq_conn_t *c = arg;
  if (c->st == ST_TCP) {
    int err = 0;
    socklen_t l = sizeof err;
    if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &l) || err) {
      drop(c, "cannot connect: %s", strerror(err ? err : errno));
      return;
    }
    if (!(events & M5_EV_WRITE)) return;
    if (!c->o.tls) {
      set_events(c, M5_EV_READ);
      connected(c);
      return;
    }
    c->st = ST_TLS;
    handshake(c);
    return;
  }
  if (c->st == ST_TLS) {
    handshake(c);
    return;
  }
  if ((events & M5_EV_WRITE) && write_out(c)) return;
  if (events & (M5_EV_READ | M5_EV_ERROR)) read_in(c); /* until recv / SSL_read would block */
}

static void start(m5_loop_t *loop, void *arg) {
  (void)loop;
  gwmq_conn_t *c = arg;
  c->t_retry = 0;
  struct sockaddr_storage ss;
  socklen_t sl;
  memset(&ss, 0, sizeof ss);
  struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
  struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
  if (inet_pton(AF_INET, c->host, &s4->sin_addr) == 1) {
    s4->sin_family = AF_INET;
    s4->sin_port = htons(c->o.port);
    sl = sizeof *s4;
  } else if (inet_pton(AF_INET6, c->host, &s6->sin6_addr) == 1) {
    s6->sin6_family = AF_INET6;
    s6->sin6_port = htons(c->o.port);
    sl = sizeof *s6;
  } else {
    c->st = ST_TCP; /* so that drop() reports and retries */
    drop(c, "mqtt.host %s is not an IP address", c->host);
    return;
  }
  c->fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  c->st = ST_TCP;
  c->started_ms = m5_loop_now_ms(c->loop);
  int one = 1;
  if (c->fd < 0) {
    drop(c, "socket: %s", strerror(errno));
    return;
  }
  setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  if (connect(c->fd, (struct sockaddr *)&ss, sl) && errno != EINPROGRESS) {
    int e = errno;
    close(c->fd);
    c->fd = -1;
    drop(c, "cannot connect: %s", strerror(e));
    return;
  }
  if (m5_loop_add_fd(c->loop, c->fd, M5_EV_READ | M5_EV_WRITE, on_io, c)) {
    close(c->fd);
    c->fd = -1;
    drop(c, "cannot watch the socket");
    return;
  }
  c->events = M5_EV_READ | M5_EV_WRITE;
  if (c->o.tls) {
    c->ssl = SSL_new(c->o.tls);
    if (!c->ssl || !SSL_set_fd(c->ssl, c->fd) || !SSL_set1_host(c->ssl, c->tls_name) ||
        !SSL_set_tlsext_host_name(c->ssl, c->tls_name)) {
      drop(c, "cannot set up TLS");
      return;
    }
    SSL_set_mode(c->ssl, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    SSL_set_connect_state(c->ssl);
  }
}

/* The next attempt after the back-off: doubling from reconnect_min_ms to reconnect_max_ms,
 * with up to a quarter of jitter so that gateways restarted together spread out. */
static void schedule_reconnect(gwmq_conn_t *c) {
  if (c->t_retry) return;
  uint32_t b = c->backoff_ms ? c->backoff_ms * 2 : c->o.reconnect_min_ms;
  if (b > c->o.reconnect_max_ms) b = c->o.reconnect_max_ms;
  c->backoff_ms = b;
  uint16_t r = 0;
  RAND_bytes((unsigned char *)&r, sizeof r);
  uint64_t d = b - (uint64_t)b * r / 65535u / 4u;
  M5_LOGI(DOM, "broker %s:%u: next attempt in %llu ms", c->host, c->o.port, (unsigned long long)d);
  c->t_retry = m5_loop_timer_add(c->loop, d, start, c);
}

/* Once a second: the connect timeout, PINGREQ when we sent nothing for half the keep-alive,
 * the connection dropped when the broker said nothing for 1.5 keep-alives. */
static void tick(m5_loop_t *loop, void *arg) {
  gwmq_conn_t *c = arg;
  uint64_t now = m5_loop_now_ms(loop), ka = (uint64_t)c->o.keepalive_s * 1000u;
  c->t_tick = m5_loop_timer_add(loop, 1000, tick, c);
  if (c->st != ST_IDLE && c->st != ST_UP && now - c->started_ms > CONNECT_TIMEOUT_MS) {
    drop(c, "no CONNACK within %d s", CONNECT_TIMEOUT_MS / 1000);
    return;
  }
  if (c->st != ST_UP || !ka) return;
  if (now - c->last_rx_ms > ka + ka / 2) {
    drop(c, "the broker was silent for %llu s (keep-alive %u s)",
         (unsigned long long)((now - c->last_rx_ms) / 1000), c->o.keepalive_s);
    return;
  }
  if (now - c->last_tx_ms >= ka / 2 && !m5_mqtt_put_empty(&c->out, M5_MQTT_PINGREQ)) {
    c->last_tx_ms = now;
    gwmq_conn_kick(c);
  }
}

gwmq_conn_t *gwmq_conn_new(m5_loop_t *loop, const gwmq_conn_opts_t *o, const gwmq_conn_cbs_t *cbs,
                           void *arg) {
  gwmq_conn_t *c = calloc(1, sizeof *c);
  if (!c) return NULL;
  c->loop = loop;
  c->o = *o;
  c->cbs = *cbs;
  c->arg = arg;
  c->fd = -1;
  c->host = dup_or_null(o->host);
  c->tls_name = dup_or_null(o->tls_name ? o->tls_name : o->host);
  c->client_id = dup_or_null(o->client_id);
  c->username = dup_or_null(o->username);
  if (o->password) {
    c->password = malloc(o->password_len ? o->password_len : 1);
    if (c->password) memcpy(c->password, o->password, o->password_len);
  }
  m5_buf_init(&c->in, (size_t)o->max_packet + 5 + RECV_CHUNK);
  m5_buf_init(&c->out, 0);
  if (!c->host || !c->tls_name || !c->client_id || (o->username && !c->username) ||
      (o->password && !c->password)) {
    gwmq_conn_free(c);
    return NULL;
  }
  c->t_tick = m5_loop_timer_add(loop, 1000, tick, c);
  c->last_rx_ms = c->last_tx_ms = m5_loop_now_ms(loop);
  start(loop, c);
  return c;
}

void gwmq_conn_free(gwmq_conn_t *c) {
  if (!c) return;
  if (c->st == ST_UP && !m5_mqtt_put_empty(&c->out, M5_MQTT_DISCONNECT)) {
    /* a clean DISCONNECT, best effort: the session stays on the broker (session expiry) */
    if (c->ssl) {
      ERR_clear_error();
      SSL_write(c->ssl, c->out.data + c->out_off, (int)(c->out.len - c->out_off));
    } else if (c->fd >= 0) {
      (void)!send(c->fd, c->out.data + c->out_off, c->out.len - c->out_off, MSG_NOSIGNAL);
    }
  }
  close_socket(c);
  m5_loop_timer_cancel(c->loop, c->t_retry);
  m5_loop_timer_cancel(c->loop, c->t_tick);
  if (c->password) OPENSSL_cleanse(c->password, c->o.password_len);
  m5_buf_wipe_free(&c->out); /* CONNECT carried the password */
  m5_buf_free(&c->in);
  free(c->password);
  free(c->host);
  free(c->tls_name);
  free(c->client_id);
  free(c->username);
  free(c);
}
