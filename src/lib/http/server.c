/* HTTP server core (server.h): the listener, connections and their TLS handshake and I/O on
 * the worker loop, the choice between HTTP/2 (RFC 9113) and HTTP/1.1 (RFC 9112) by ALPN
 * (RFC 7301) or by the first bytes, idle timeouts and graceful drain. Exchanges live in
 * exchange.c, the protocols in h2.c and h1.c. */
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/err.h>

#include "core/err.h"
#include "core/log.h"
#include "core/net.h"
#include "http/http_int.h"
#include "tls/tls.h"

#define H2_PREFACE "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
#define H2_PREFACE_LEN 24u
#define LINGER_MS 2000u
#define ACCEPT_BATCH 64
#define ACCEPT_PAUSE_MS 100u
/* RFC 9113 §6.8: announce the shutdown, let requests already in flight arrive, then send the
 * GOAWAY that names the last stream we will process. */
#define GOAWAY_GRACE_MS 200u
#define READ_BATCH 32

/* ---- connection I/O ---- */

static void conn_close(m5_http_conn_t *c);

/* > 0 bytes, 0 at EOF, M5_EAGAIN, or M5_EIO. */
static ssize_t io_read(m5_http_conn_t *c, uint8_t *buf, size_t n) {
  if (!c->ssl) {
    ssize_t r = recv(c->fd, buf, n, 0);
    if (r >= 0) return r;
    return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR ? M5_EAGAIN : M5_EIO;
  }
  ERR_clear_error();
  int r = SSL_read(c->ssl, buf, n > INT32_MAX ? INT32_MAX : (int)n);
  c->ssl_read_wants_write = 0;
  if (r > 0) return r;
  switch (SSL_get_error(c->ssl, r)) {
  case SSL_ERROR_WANT_READ:
    return M5_EAGAIN;
  case SSL_ERROR_WANT_WRITE:
    c->ssl_read_wants_write = 1;
    return M5_EAGAIN;
  case SSL_ERROR_ZERO_RETURN:
    return 0;
  default: {
    char why[256];
    M5_LOGD("tls", "%s: read failed: %s", c->peer, m5_tls_last_error(why, sizeof why));
    return M5_EIO;
  }
  }
}

static ssize_t io_write(m5_http_conn_t *c, const uint8_t *buf, size_t n) {
  if (!c->ssl) {
    ssize_t r = send(c->fd, buf, n, MSG_NOSIGNAL);
    if (r >= 0) return r;
    return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR ? M5_EAGAIN : M5_EIO;
  }
  ERR_clear_error();
  int r = SSL_write(c->ssl, buf, n > INT32_MAX ? INT32_MAX : (int)n);
  c->ssl_write_wants_read = 0;
  if (r > 0) return r;
  switch (SSL_get_error(c->ssl, r)) {
  case SSL_ERROR_WANT_WRITE:
    return M5_EAGAIN;
  case SSL_ERROR_WANT_READ:
    c->ssl_write_wants_read = 1;
    return M5_EAGAIN;
  default: {
    char why[256];
    M5_LOGD("tls", "%s: write failed: %s", c->peer, m5_tls_last_error(why, sizeof why));
    return M5_EIO;
  }
  }
}

static int read_paused(const m5_http_conn_t *c) {
  if (c->phase == M5_CONN_HANDSHAKE) return 1;
  if (c->phase == M5_CONN_LINGER) return 0;
  if (c->peer_eof) return 1;
  if (c->out.len >= 4 * M5_HTTP_OUT_HIGH) return 1;
  return c->phase != M5_CONN_H2 && c->in.len >= M5_HTTP_IN_MAX;
}

static void update_events(m5_http_conn_t *c) {
  uint32_t ev;
  if (c->phase == M5_CONN_HANDSHAKE) {
    ev = c->hs_want;
  } else {
    ev = 0;
    if (!read_paused(c) || c->ssl_write_wants_read) ev |= M5_EV_READ;
    if ((c->out.len && !c->ssl_write_wants_read) || c->ssl_read_wants_write) ev |= M5_EV_WRITE;
  }
  if (ev != c->events && m5_loop_mod_fd(c->srv->loop, c->fd, ev) == M5_OK) c->events = ev;
}

/* The bytes are HTTP/1.1 on a listener that speaks only HTTP/2: say so precisely
 * (RFC 9110 §15.6.6) instead of dropping the connection. */
static void reject_http1(m5_http_conn_t *c) {
  static const char body[] = "This port speaks HTTP/2 only (ALPN h2 or prior knowledge).\n";
  m5_buf_reset(&c->out);
  m5_buf_printf(&c->out,
                "HTTP/1.1 505 HTTP Version Not Supported\r\nContent-Type: text/plain\r\n"
                "Content-Length: %zu\r\nConnection: close\r\n\r\n%s",
                sizeof body - 1, body);
  c->phase = M5_CONN_LINGER;
  c->close_after_write = 1;
  m5_buf_reset(&c->in);
}

static int sniff(m5_http_conn_t *c) {
  size_t k = c->in.len < H2_PREFACE_LEN ? c->in.len : H2_PREFACE_LEN;
  const m5_http_server_opts_t *o = &c->srv->o;
  if (memcmp(c->in.data, H2_PREFACE, k) == 0) {
    if (k < H2_PREFACE_LEN) return M5_OK; /* need more */
    if (!c->ssl && !o->allow_h2c) {
      M5_LOGD("http", "%s: h2c prior knowledge on a listener without h2c; closed", c->peer);
      return M5_EPROTO;
    }
    int rc = m5_http_h2_start(c);
    if (rc) return rc;
    rc = m5_http_h2_recv(c, c->in.data, c->in.len);
    m5_buf_wipe_free(&c->in);
    return rc;
  }
  if (o->allow_http1) {
    m5_http_h1_start(c);
    return m5_http_h1_process(c);
  }
  if (c->in.data[0] >= 'A' && c->in.data[0] <= 'Z') {
    M5_LOGD("http", "%s: HTTP/1.1 on an HTTP/2-only listener; answered 505", c->peer);
    reject_http1(c);
    return M5_OK;
  }
  return M5_EPROTO;
}

static int conn_input(m5_http_conn_t *c, const uint8_t *data, size_t n) {
  switch (c->phase) {
  case M5_CONN_H2:
    return m5_http_h2_recv(c, data, n);
  case M5_CONN_SNIFF:
  case M5_CONN_H1: {
    int rc = m5_buf_append(&c->in, data, n);
    if (rc) return rc;
    return c->phase == M5_CONN_SNIFF ? sniff(c) : m5_http_h1_process(c);
  }
  case M5_CONN_LINGER:
  case M5_CONN_HANDSHAKE:
    break;
  }
  return M5_OK;
}

/* Whether input counts as activity for the idle timer. Not while lingering, or a peer could
 * trickle bytes to hold a closed connection open; and on cleartext and HTTP/1.1 only once the
 * preface or a request head is complete (its method parsed), so that must arrive within the
 * idle timeout of the accept or the last response (slowloris). Our writes count in conn_flush. */
static int read_is_progress(const m5_http_conn_t *c) {
  switch (c->phase) {
  case M5_CONN_H2:
    return 1;
  case M5_CONN_H1:
    return c->h1_ex && c->h1_ex->method;
  default:
    return 0;
  }
}

/* Reads until the socket (and OpenSSL's buffer) is empty or input is paused. M5_ECLOSED at
 * EOF. */
static int conn_read(m5_http_conn_t *c) {
  uint8_t buf[16384];
  for (int i = 0;; i++) {
    if (read_paused(c) || c->fatal) return M5_OK;
    /* Level-triggered epoll wakes us again for data left in the socket, but not for
     * records OpenSSL already holds. */
    if (i >= READ_BATCH && !(c->ssl && SSL_has_pending(c->ssl))) return M5_OK;
    size_t want = sizeof buf;
    if (c->phase != M5_CONN_H2 && c->phase != M5_CONN_LINGER && M5_HTTP_IN_MAX - c->in.len < want)
      want = M5_HTTP_IN_MAX - c->in.len;
    ssize_t r = io_read(c, buf, want);
    if (r == M5_EAGAIN) return M5_OK;
    if (r == 0 && c->phase == M5_CONN_H1 && !(c->h1_ex && c->h1_ex->state == M5_EX_DISPATCHED)) {
      /* A client may shut down its sending side after its requests (RFC 9112 §9.6): answers
       * already queued and requests complete in the buffer are still delivered, then
       * conn_finished closes. EOF while a handler works is taken, as nginx does, for a
       * client that gave up: that answer is dropped. */
      c->peer_eof = 1;
      return M5_OK;
    }
    if (r <= 0) return M5_ECLOSED;
    int rc = conn_input(c, buf, (size_t)r);
    if (rc) return rc;
    if (read_is_progress(c)) c->last_active = m5_loop_now_ms(c->srv->loop);
  }
}

static void begin_linger(m5_http_conn_t *c) {
  /* Half-close and read until the peer closes too, so our last bytes are not destroyed by
   * an RST for input we never read (RFC 9112 §9.6). */
  c->phase = M5_CONN_LINGER;
  c->half_closed = 1;
  if (c->ssl) {
    ERR_clear_error();
    (void)SSL_shutdown(c->ssl);
  }
  shutdown(c->fd, SHUT_WR);
  c->last_active = m5_loop_now_ms(c->srv->loop);
}

/* Pipelined HTTP/1.1 requests waiting behind an answered one: parse them (h1_process stops
 * while the output is above M5_HTTP_OUT_HIGH), and read records OpenSSL already holds, which
 * epoll will not report. Runs handlers, so only with in_io set. */
static int conn_h1_pump(m5_http_conn_t *c) {
  int rc = m5_http_h1_process(c);
  if (rc == M5_OK && c->phase == M5_CONN_H1 && c->ssl && SSL_has_pending(c->ssl)) rc = conn_read(c);
  return rc;
}

/* Produces output (HTTP/2 frames, HTTP/1.1 answers) while the queue is short and writes it;
 * the queue is filled again as the socket takes it, so a peer that does not read holds
 * at most about M5_HTTP_OUT_HIGH of our memory. Runs handlers, so only with in_io set. */
static int conn_flush(m5_http_conn_t *c) {
  for (;;) {
    int rc = c->phase == M5_CONN_H2   ? m5_http_h2_fill(c)
             : c->phase == M5_CONN_H1 ? conn_h1_pump(c)
                                      : M5_OK;
    if (rc) return rc;
    if (c->fatal) return M5_EPROTO; /* never send a half-queued answer */
    if (c->out.len == 0) break;
    ssize_t w = io_write(c, c->out.data, c->out.len);
    if (w == M5_EAGAIN) return M5_OK;
    if (w < 0) return M5_ECLOSED;
    m5_buf_consume(&c->out, (size_t)w);
    c->last_active = m5_loop_now_ms(c->srv->loop);
  }
  if (c->close_after_write && !c->half_closed) begin_linger(c);
  return M5_OK;
}

static int conn_start_app(m5_http_conn_t *c) {
  const unsigned char *alpn = NULL;
  unsigned int alen = 0;
  SSL_get0_alpn_selected(c->ssl, &alpn, &alen);
  M5_LOGD("tls", "%s: %s %s, ALPN %.*s", c->peer, SSL_get_version(c->ssl),
          SSL_get_cipher_name(c->ssl), alen ? (int)alen : 4, alen ? (const char *)alpn : "none");
  if (alen == 2 && memcmp(alpn, "h2", 2) == 0) return m5_http_h2_start(c);
  if (alen == 8 && memcmp(alpn, "http/1.1", 8) == 0) {
    if (!c->srv->o.allow_http1) return M5_EPROTO; /* the context offered what we refuse */
    m5_http_h1_start(c);
    return M5_OK;
  }
  c->phase = M5_CONN_SNIFF; /* no ALPN: HTTP/2 by default, see sniff() */
  return M5_OK;
}

static int conn_handshake(m5_http_conn_t *c) {
  ERR_clear_error();
  int r = SSL_do_handshake(c->ssl);
  if (r == 1) {
    c->last_active = m5_loop_now_ms(c->srv->loop);
    int rc = conn_start_app(c);
    return rc ? rc : conn_read(c); /* the client's first request may be buffered already */
  }
  switch (SSL_get_error(c->ssl, r)) {
  case SSL_ERROR_WANT_READ:
    c->hs_want = M5_EV_READ;
    return M5_OK;
  case SSL_ERROR_WANT_WRITE:
    c->hs_want = M5_EV_WRITE;
    return M5_OK;
  default: {
    char why[256];
    M5_LOGD("tls", "%s: handshake failed: %s", c->peer, m5_tls_last_error(why, sizeof why));
    return M5_EPROTO;
  }
  }
}

static int conn_finished(m5_http_conn_t *c) {
  if (c->out.len) return 0;
  if (c->phase == M5_CONN_H2) return m5_http_h2_finished(c);
  /* After conn_flush, every complete request the half-closed client sent has been parsed;
   * only one a handler still holds keeps the connection. */
  return c->phase == M5_CONN_H1 && c->peer_eof &&
         !(c->h1_ex && c->h1_ex->state == M5_EX_DISPATCHED);
}

/* After any processing: write what is queued, then close or re-arm the watch. Called with
 * in_io set (conn_flush may run handlers, whose answers must not re-enter); clears it. */
static void conn_finish(m5_http_conn_t *c, int rc) {
  if (rc == M5_OK && c->fatal) rc = M5_EPROTO;
  if (rc == M5_OK && c->phase != M5_CONN_HANDSHAKE) rc = conn_flush(c);
  if (rc == M5_OK && conn_finished(c)) rc = M5_ECLOSED;
  c->in_io = 0;
  if (rc != M5_OK) {
    conn_close(c);
    return;
  }
  update_events(c);
}

static void conn_io(m5_loop_t *loop, int fd, uint32_t events, void *arg) {
  (void)loop, (void)fd;
  m5_http_conn_t *c = arg;
  int rc = M5_OK;
  c->in_io = 1;
  if (events & M5_EV_ERROR)
    /* EPOLLERR/EPOLLHUP: reset or shut both ways, so nothing more can be sent. epoll reports
     * it even when input is paused, level-triggered: not closing would spin the loop. */
    rc = M5_ECLOSED;
  else if (c->phase == M5_CONN_HANDSHAKE)
    rc = conn_handshake(c);
  else if (events & M5_EV_READ || c->ssl_read_wants_write)
    rc = conn_read(c);
  conn_finish(c, rc);
}

void m5_http_conn_kick(m5_http_conn_t *c) {
  if (!c || c->in_io) return; /* the I/O callback that called the handler finishes up */
  c->in_io = 1;
  conn_finish(c, M5_OK); /* also parses pipelined requests waiting behind this answer */
}

/* ---- connection lifetime ---- */

static void conn_idle(m5_loop_t *loop, void *arg) {
  m5_http_conn_t *c = arg;
  m5_http_server_t *srv = c->srv;
  c->idle_timer = 0;
  uint64_t limit =
      c->phase == M5_CONN_LINGER || c->idle_goaway ? LINGER_MS : srv->o.idle_timeout_ms;
  uint64_t now = m5_loop_now_ms(loop);
  uint64_t quiet = now - c->last_active;
  if (c->phase != M5_CONN_LINGER && m5_http_conn_dispatched(c) > 0) {
    /* A handler is still working: the client is waiting, not idle. */
    quiet = 0;
  } else if (quiet >= limit) {
    if (c->phase == M5_CONN_H2 && !c->idle_goaway) {
      /* Say goodbye properly (RFC 9113 §6.8) and give the GOAWAY a moment to leave. */
      M5_LOGD("http", "%s: idle for %llu ms; GOAWAY", c->peer, (unsigned long long)quiet);
      c->idle_goaway = 1;
      m5_http_h2_goaway(c, 1);
      c->last_active = now;
      c->idle_timer = m5_loop_timer_add(loop, LINGER_MS, conn_idle, c);
      m5_http_conn_kick(c);
      return;
    }
    M5_LOGD("http", "%s: idle for %llu ms; closed", c->peer, (unsigned long long)quiet);
    conn_close(c);
    return;
  }
  c->idle_timer = m5_loop_timer_add(loop, limit - quiet, conn_idle, c);
}

static void srv_check_drained(m5_http_server_t *srv);

static void conn_close(m5_http_conn_t *c) {
  m5_http_server_t *srv = c->srv;
  if (c->prev)
    c->prev->next = c->next;
  else
    srv->conns = c->next;
  if (c->next) c->next->prev = c->prev;
  srv->n_conns--;
  m5_loop_del_fd(srv->loop, c->fd);
  if (c->idle_timer) m5_loop_timer_cancel(srv->loop, c->idle_timer);
  if (c->h2) nghttp2_session_del(c->h2);
  while (c->exchanges)
    m5_http_ex_release(c->exchanges);
  SSL_free(c->ssl);
  close(c->fd);
  /* Plaintext of whole exchanges, keys included, may remain in the I/O buffers. */
  m5_buf_wipe_free(&c->in);
  m5_buf_wipe_free(&c->out);
  M5_LOGD("http", "%s: closed (%zu connections left)", c->peer, srv->n_conns);
  free(c);
  srv_check_drained(srv);
}

static void peer_name(const struct sockaddr_storage *ss, socklen_t len, char *out, size_t n) {
  char host[INET6_ADDRSTRLEN], port[8];
  if (getnameinfo((const struct sockaddr *)ss, len, host, sizeof host, port, sizeof port,
                  NI_NUMERICHOST | NI_NUMERICSERV) != 0) {
    snprintf(out, n, "?");
    return;
  }
  snprintf(out, n, ss->ss_family == AF_INET6 ? "[%s]:%s" : "%s:%s", host, port);
}

static void conn_new(m5_http_server_t *srv, int fd, const struct sockaddr_storage *ss,
                     socklen_t sslen) {
  m5_http_conn_t *c = calloc(1, sizeof *c);
  if (!c) {
    close(fd);
    return;
  }
  c->srv = srv;
  c->fd = fd;
  m5_buf_init(&c->in, M5_HTTP_IN_MAX);
  m5_buf_init(&c->out, 0);
  peer_name(ss, sslen, c->peer, sizeof c->peer);
  int one = 1;
  (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  if (srv->o.tls) {
    c->ssl = SSL_new(srv->o.tls);
    if (!c->ssl || SSL_set_fd(c->ssl, fd) != 1) {
      ERR_clear_error();
      SSL_free(c->ssl);
      free(c);
      close(fd);
      return;
    }
    SSL_set_accept_state(c->ssl);
    SSL_set_mode(c->ssl, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    c->phase = M5_CONN_HANDSHAKE;
    c->hs_want = M5_EV_READ;
  } else {
    c->phase = M5_CONN_SNIFF;
  }
  c->events = M5_EV_READ;
  c->last_active = m5_loop_now_ms(srv->loop);
  c->idle_timer = m5_loop_timer_add(srv->loop, srv->o.idle_timeout_ms, conn_idle, c);
  if (!c->idle_timer || m5_loop_add_fd(srv->loop, fd, c->events, conn_io, c) != M5_OK) {
    if (c->idle_timer) m5_loop_timer_cancel(srv->loop, c->idle_timer);
    SSL_free(c->ssl);
    free(c);
    close(fd);
    return;
  }
  c->next = srv->conns;
  if (srv->conns) srv->conns->prev = c;
  srv->conns = c;
  srv->n_conns++;
  M5_LOGD("http", "%s: accepted (%zu connections)", c->peer, srv->n_conns);
}

/* ---- listener ---- */

static void accept_resume(m5_loop_t *loop, void *arg) {
  m5_http_server_t *srv = arg;
  srv->accept_timer = 0;
  if (srv->lfd >= 0) m5_loop_mod_fd(loop, srv->lfd, M5_EV_READ);
}

static void srv_accept_one(int cfd, const struct sockaddr *sa, socklen_t sl, void *arg) {
  m5_http_server_t *srv = arg;
  if (srv->n_conns >= srv->o.max_conns) {
    uint64_t now = m5_loop_now_ms(srv->loop);
    if (now - srv->last_full_log >= 10000) {
      M5_LOGW("http", "connection limit (%zu) reached; refusing new connections", srv->o.max_conns);
      srv->last_full_log = now;
    }
    close(cfd);
    return;
  }
  conn_new(srv, cfd, (const struct sockaddr_storage *)sa, sl);
}

static void srv_accept(m5_loop_t *loop, int fd, uint32_t events, void *arg) {
  (void)events;
  m5_http_server_t *srv = arg;
  if (m5_net_accept(fd, ACCEPT_BATCH, srv_accept_one, srv) == 0) return;
  /* Out of descriptors or memory: stop watching for a moment instead of spinning. */
  M5_LOGW("http", "accept failed: %s; pausing the listener for %u ms", strerror(errno),
          ACCEPT_PAUSE_MS);
  if (m5_loop_mod_fd(loop, fd, 0) == M5_OK)
    srv->accept_timer = m5_loop_timer_add(loop, ACCEPT_PAUSE_MS, accept_resume, srv);
}

m5_http_server_t *m5_http_server_new(m5_loop_t *loop, const m5_http_server_opts_t *opts, char *err,
                                     size_t errlen) {
  char dummy[8];
  if (!err || !errlen) {
    err = dummy;
    errlen = sizeof dummy;
  }
  err[0] = '\0';
  if (!loop || !opts || !opts->handler) {
    snprintf(err, errlen, "HTTP server: missing loop, options or handler");
    return NULL;
  }
  if (!opts->tls && !opts->allow_http1 && !opts->allow_h2c) {
    snprintf(err, errlen, "cleartext listener %s:%u allows neither HTTP/1.1 nor h2c",
             opts->host ? opts->host : "*", (unsigned)opts->port);
    return NULL;
  }
  /* SSL_write reaches write(2) on the socket, which raises SIGPIPE when the peer has gone;
   * a daemon must get EPIPE instead. Only the default disposition is changed. */
  struct sigaction sa;
  if (sigaction(SIGPIPE, NULL, &sa) == 0 && sa.sa_handler == SIG_DFL) signal(SIGPIPE, SIG_IGN);

  m5_http_server_t *srv = calloc(1, sizeof *srv);
  if (!srv) {
    snprintf(err, errlen, "HTTP server: out of memory");
    return NULL;
  }
  srv->loop = loop;
  srv->o = *opts;
  srv->o.host = NULL;
  if (!srv->o.max_body) srv->o.max_body = 1024 * 1024;
  if (!srv->o.max_conns) srv->o.max_conns = 10000;
  if (!srv->o.max_streams) srv->o.max_streams = 100;
  if (!srv->o.idle_timeout_ms) srv->o.idle_timeout_ms = 60000;
  m5_http_h1_init(srv);
  if (m5_http_h2_init(srv) != M5_OK) {
    snprintf(err, errlen, "HTTP server: out of memory");
    free(srv);
    return NULL;
  }
  srv->lfd = m5_net_listen(opts->host, opts->port, SOCK_STREAM, err, errlen);
  if (srv->lfd < 0) {
    m5_http_h2_cleanup(srv);
    free(srv);
    return NULL;
  }
  if (m5_loop_add_fd(loop, srv->lfd, M5_EV_READ, srv_accept, srv) != M5_OK) {
    snprintf(err, errlen, "cannot watch %s:%u on the loop", opts->host ? opts->host : "*",
             (unsigned)opts->port);
    close(srv->lfd);
    m5_http_h2_cleanup(srv);
    free(srv);
    return NULL;
  }
  return srv;
}

size_t m5_http_server_conn_count(const m5_http_server_t *srv) {
  return srv->n_conns;
}

static void cancel_timer(m5_http_server_t *srv, m5_timer_id_t *t) {
  if (*t) m5_loop_timer_cancel(srv->loop, *t);
  *t = 0;
}

static void close_listener(m5_http_server_t *srv) {
  cancel_timer(srv, &srv->accept_timer);
  if (srv->lfd < 0) return;
  m5_loop_del_fd(srv->loop, srv->lfd);
  close(srv->lfd);
  srv->lfd = -1;
}

/* ---- drain ---- */

static void drain_finish(m5_http_server_t *srv) {
  cancel_timer(srv, &srv->drain_timer);
  cancel_timer(srv, &srv->goaway_timer);
  cancel_timer(srv, &srv->done_timer);
  void (*done)(void *) = srv->done;
  srv->done = NULL;
  if (done) done(srv->done_arg); /* may free srv */
}

static void drain_done_cb(m5_loop_t *loop, void *arg) {
  (void)loop;
  m5_http_server_t *srv = arg;
  srv->done_timer = 0;
  drain_finish(srv);
}

static void srv_check_drained(m5_http_server_t *srv) {
  /* From a timer, not from here: this runs deep inside connection code, and done() may well
   * free the server. */
  if (srv->draining && srv->done && srv->n_conns == 0 && !srv->done_timer)
    srv->done_timer = m5_loop_timer_add(srv->loop, 0, drain_done_cb, srv);
}

static void drain_timeout_cb(m5_loop_t *loop, void *arg) {
  (void)loop;
  m5_http_server_t *srv = arg;
  srv->drain_timer = 0;
  if (srv->n_conns)
    M5_LOGW("http", "drain timed out; closing %zu remaining connections", srv->n_conns);
  while (srv->conns)
    conn_close(srv->conns);
  drain_finish(srv);
}

static void drain_goaway_cb(m5_loop_t *loop, void *arg) {
  (void)loop;
  m5_http_server_t *srv = arg;
  srv->goaway_timer = 0;
  for (m5_http_conn_t *c = srv->conns, *next; c; c = next) {
    next = c->next;
    if (c->phase != M5_CONN_H2) continue;
    m5_http_h2_goaway(c, 1);
    m5_http_conn_kick(c);
  }
}

void m5_http_server_drain(m5_http_server_t *srv, uint32_t timeout_ms, void (*done)(void *arg),
                          void *arg) {
  if (srv->draining) return;
  srv->draining = 1;
  srv->done = done;
  srv->done_arg = arg;
  close_listener(srv);
  for (m5_http_conn_t *c = srv->conns, *next; c; c = next) {
    next = c->next;
    switch (c->phase) {
    case M5_CONN_HANDSHAKE:
    case M5_CONN_SNIFF:
      conn_close(c);
      break;
    case M5_CONN_H2:
      m5_http_h2_goaway(c, 0);
      m5_http_conn_kick(c);
      break;
    case M5_CONN_H1:
      /* A connection mid-request finishes it; its response carries Connection: close. */
      if (m5_http_h1_idle(c)) conn_close(c);
      break;
    case M5_CONN_LINGER:
      break;
    }
  }
  srv->goaway_timer = m5_loop_timer_add(
      srv->loop, timeout_ms / 2 < GOAWAY_GRACE_MS ? timeout_ms / 2 : GOAWAY_GRACE_MS,
      drain_goaway_cb, srv);
  srv->drain_timer = m5_loop_timer_add(srv->loop, timeout_ms, drain_timeout_cb, srv);
  srv_check_drained(srv);
}

void m5_http_server_free(m5_http_server_t *srv) {
  if (!srv) return;
  srv->done = NULL; /* closing connections below must not schedule done() */
  cancel_timer(srv, &srv->drain_timer);
  cancel_timer(srv, &srv->goaway_timer);
  cancel_timer(srv, &srv->done_timer);
  close_listener(srv);
  while (srv->conns)
    conn_close(srv->conns);
  m5_http_h2_cleanup(srv);
  free(srv);
}
