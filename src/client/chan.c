/* libm5c channel (chan.h): socket, AKMA-keyed (D)TLS handshake and the CoAP endpoint of one
 * session (architecture §3.1 transports, §4 AKMA; RFC 7252 over DTLS 1.2, RFC 8323 over TLS).
 *
 * DTLS uses BIO_dgram on a connected UDP socket: the socket filters foreign senders and turns
 * an ICMP port-unreachable into ECONNREFUSED, which moves on to the host's next address (a
 * "localhost" that resolves to ::1 first while the server listens on 127.0.0.1).
 *
 * Over TLS the channel writes and reads in bulk, as m5s's UE transport does (ue_tls.c): the
 * CoAP messages the endpoint sends during one loop iteration (a client with 20 requests in
 * flight answering the pushes read in one go, or sending its next requests) are collected in
 * ch->out and leave with one SSL_write at the end of the iteration (m5_loop_defer), so one
 * TLS record and one send() rather than one per message; and reads use OpenSSL's read-ahead,
 * one read() of up to a record buffer instead of a header and a body read per record. System
 * calls and records per message are what a client holding many sessions (bench/m5load) pays
 * most for; a lone m5c is not slowed: the flush happens before the loop waits again. */
#include "chan.h"

#include "core/err.h"
#include "core/log.h"
#include "crypto/codec.h"
#include "tls/tls.h"

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define DOM "m5c"
#define DTLS_LINK_MTU 1400
#define TLS_OUT_MAX (1u << 20) /* plaintext waiting for a writable socket */
#define READ_CHUNK 16384

typedef enum { CH_CONNECTING, CH_HANDSHAKE, CH_UP, CH_DOWN } ch_state_t;

struct m5c_chan {
  m5_loop_t *loop;
  m5c_chan_cbs_t cbs;
  void *arg;
  SSL_CTX *ctx;
  m5_akma_cred_t cred;
  int dtls;
  struct addrinfo *ai_list, *ai;
  int fd;
  uint32_t watching;
  SSL *ssl;
  ch_state_t state;
  m5_timer_id_t dtls_timer, fail_timer;
  int fail_status;
  char fail_why[200];
  m5_coap_ep_t *ep;
  m5_buf_t out;       /* TLS: plaintext queued this iteration, or SSL_write could not take yet */
  m5_defer_t flush_d; /* TLS: ch->out leaves at the end of the iteration */
  m5_defer_t pend_d;  /* TLS: records read ahead with the handshake's last flight */
};

static void on_io(m5_loop_t *loop, int fd, uint32_t events, void *arg);
static void try_connect(m5c_chan_t *ch);

static void watch(m5c_chan_t *ch, uint32_t events) {
  if (ch->fd < 0 || events == ch->watching) return;
  if (ch->watching ? m5_loop_mod_fd(ch->loop, ch->fd, events)
                   : m5_loop_add_fd(ch->loop, ch->fd, events, on_io, ch))
    M5_LOGW(DOM, "cannot watch the socket");
  ch->watching = events;
}

/* Drops socket, SSL and endpoint of the current attempt. */
static void teardown(m5c_chan_t *ch, int polite) {
  if (ch->ep) {
    m5_coap_ep_t *ep = ch->ep;
    ch->ep = NULL;
    m5_coap_ep_free(ep);
  }
  if (ch->dtls_timer) m5_loop_timer_cancel(ch->loop, ch->dtls_timer);
  ch->dtls_timer = 0;
  m5_loop_defer_cancel(ch->loop, &ch->flush_d);
  m5_loop_defer_cancel(ch->loop, &ch->pend_d);
  if (ch->ssl) {
    if (polite && SSL_is_init_finished(ch->ssl)) SSL_shutdown(ch->ssl);
    SSL_free(ch->ssl);
    ch->ssl = NULL;
  }
  if (ch->fd >= 0) {
    if (ch->watching) m5_loop_del_fd(ch->loop, ch->fd);
    close(ch->fd);
  }
  ch->fd = -1;
  ch->watching = 0;
  m5_buf_reset(&ch->out);
}

/* The channel is done: everything released now, the owner told. The owner may free ch inside
 * on_down, so nothing touches ch afterwards. */
static void go_down(m5c_chan_t *ch, int status, const char *why) {
  if (ch->state == CH_DOWN) return;
  ch->state = CH_DOWN;
  if (ch->fail_timer) m5_loop_timer_cancel(ch->loop, ch->fail_timer);
  ch->fail_timer = 0;
  teardown(ch, 0);
  ch->cbs.on_down(ch, status, why, ch->arg);
}

static void fail_fire(m5_loop_t *loop, void *arg) {
  (void)loop;
  m5c_chan_t *ch = arg;
  ch->fail_timer = 0;
  go_down(ch, ch->fail_status, ch->fail_why);
}

/* Failure noticed inside the endpoint's stack: report it from a fresh loop iteration. */
static void fail_later(m5c_chan_t *ch, int status, const char *why) {
  if (ch->state == CH_DOWN || ch->fail_timer) return;
  ch->fail_status = status;
  snprintf(ch->fail_why, sizeof ch->fail_why, "%s", why);
  ch->fail_timer = m5_loop_timer_add(ch->loop, 0, fail_fire, ch);
  if (!ch->fail_timer) go_down(ch, status, why);
}

/* ---- endpoint glue ---- */

static int flush_out(m5c_chan_t *ch) {
  while (ch->out.len) {
    int n =
        SSL_write(ch->ssl, ch->out.data, (int)(ch->out.len > INT32_MAX ? INT32_MAX : ch->out.len));
    if (n > 0) {
      m5_buf_consume(&ch->out, (size_t)n);
      continue;
    }
    int e = SSL_get_error(ch->ssl, n);
    if (e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ) {
      watch(ch, M5_EV_READ | M5_EV_WRITE);
      return 0;
    }
    return M5_EIO;
  }
  watch(ch, M5_EV_READ);
  return 0;
}

/* The end of the loop iteration: what the endpoint sent during it leaves in one SSL_write. A
 * socket that cannot take it keeps it for on_io's M5_EV_WRITE (the channel then watches it). */
static void flush_deferred(m5_loop_t *loop, void *arg) {
  (void)loop;
  m5c_chan_t *ch = arg;
  if (ch->state != CH_UP || !ch->ssl || (ch->watching & M5_EV_WRITE)) return;
  if (flush_out(ch)) go_down(ch, M5_ECLOSED, "connection lost while sending");
}

static int ep_send(void *io, const uint8_t *p, size_t n) {
  m5c_chan_t *ch = io;
  if (ch->state != CH_UP || !ch->ssl) return M5_ECLOSED;
  if (n > INT32_MAX) return M5_ERANGE;
  if (ch->dtls) {
    int w = SSL_write(ch->ssl, p, (int)n);
    if (w > 0) return 0;
    /* A full socket buffer loses this datagram; the CoAP layer retransmits. */
    int e = SSL_get_error(ch->ssl, w);
    if (e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ) return 0;
    ERR_clear_error();
    return M5_EIO;
  }
  if (ch->out.len + n > TLS_OUT_MAX) return M5_EFULL;
  int rc = m5_buf_append(&ch->out, p, n);
  if (!rc) m5_loop_defer(ch->loop, &ch->flush_d, flush_deferred, ch);
  return rc;
}

static void ep_request(m5_coap_ep_t *ep, m5_coap_req_t *req, void *arg) {
  m5c_chan_t *ch = arg;
  ch->cbs.on_request(ep, req, ch->arg);
}

static void ep_error(m5_coap_ep_t *ep, int status, const char *why, void *arg) {
  (void)ep;
  (void)status;
  char buf[200];
  snprintf(buf, sizeof buf, "CoAP session failed: %s", why ? why : "unknown error");
  fail_later(arg, M5_ECLOSED, buf);
}

/* ---- handshake ---- */

static void dtls_timer_fire(m5_loop_t *loop, void *arg);

static void arm_dtls_timer(m5c_chan_t *ch) {
  if (ch->dtls_timer) m5_loop_timer_cancel(ch->loop, ch->dtls_timer);
  ch->dtls_timer = 0;
  struct timeval tv;
  if (!ch->dtls || !DTLSv1_get_timeout(ch->ssl, &tv)) return;
  uint64_t ms = (uint64_t)tv.tv_sec * 1000 + (uint64_t)tv.tv_usec / 1000;
  ch->dtls_timer = m5_loop_timer_add(ch->loop, ms, dtls_timer_fire, ch);
}

static void handshake_failed(m5c_chan_t *ch, int ssl_err) {
  char buf[160], why[240];
  int err = errno;
  if (ssl_err == SSL_ERROR_SYSCALL &&
      (err == ECONNREFUSED || err == EHOSTUNREACH || err == ENETUNREACH)) {
    ERR_clear_error();
    if (ch->ai && ch->ai->ai_next) {
      ch->ai = ch->ai->ai_next;
      teardown(ch, 0);
      try_connect(ch);
      return;
    }
    snprintf(why, sizeof why, "cannot reach the server: %s", strerror(err));
    go_down(ch, M5_EIO, why);
    return;
  }
  if (ssl_err == SSL_ERROR_SSL) {
    snprintf(why, sizeof why, "(D)TLS handshake failed: %s", m5_tls_last_error(buf, sizeof buf));
  } else {
    ERR_clear_error();
    snprintf(why, sizeof why, "(D)TLS handshake failed: the server closed the connection%s%s",
             err ? ": " : "", err ? strerror(err) : "");
  }
  go_down(ch, M5_ECRYPTO, why);
}

static int read_session(m5c_chan_t *ch);

/* Records read ahead together with the server's last handshake flight: the socket will not
 * signal them again. */
static void pending_read(m5_loop_t *loop, void *arg) {
  (void)loop;
  m5c_chan_t *ch = arg;
  if (ch->state == CH_UP) read_session(ch);
}

static void session_up(m5c_chan_t *ch) {
  if (ch->dtls_timer) m5_loop_timer_cancel(ch->loop, ch->dtls_timer);
  ch->dtls_timer = 0;
  m5_coap_ep_opts_t o;
  memset(&o, 0, sizeof o);
  o.transport = ch->dtls ? M5_COAP_DGRAM : M5_COAP_STREAM;
  static const m5_coap_ep_cbs_t cbs = {ep_send, ep_request, ep_error};
  ch->ep = m5_coap_ep_new(ch->loop, &o, &cbs, ch, ch);
  if (!ch->ep) {
    go_down(ch, M5_EIO, "cannot create the CoAP endpoint: out of memory");
    return;
  }
  ch->state = CH_UP;
  watch(ch, M5_EV_READ);
  if (!ch->dtls && m5_coap_ep_start(ch->ep)) {
    go_down(ch, M5_EIO, "cannot send the CoAP CSM");
    return;
  }
  M5_LOGD(DOM, "session up (%s, %s)", SSL_get_version(ch->ssl), SSL_get_cipher_name(ch->ssl));
  if (!ch->dtls && SSL_has_pending(ch->ssl)) m5_loop_defer(ch->loop, &ch->pend_d, pending_read, ch);
  ch->cbs.on_up(ch, ch->ep, ch->arg);
}

static void drive_handshake(m5c_chan_t *ch) {
  ERR_clear_error();
  errno = 0;
  int r = SSL_do_handshake(ch->ssl);
  if (r == 1) {
    session_up(ch);
    return;
  }
  int e = SSL_get_error(ch->ssl, r);
  if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
    watch(ch, e == SSL_ERROR_WANT_WRITE ? M5_EV_READ | M5_EV_WRITE : M5_EV_READ);
    arm_dtls_timer(ch);
    return;
  }
  handshake_failed(ch, e);
}

static void dtls_timer_fire(m5_loop_t *loop, void *arg) {
  (void)loop;
  m5c_chan_t *ch = arg;
  ch->dtls_timer = 0;
  if (ch->state != CH_HANDSHAKE) return;
  if (DTLSv1_handle_timeout(ch->ssl) < 0) {
    handshake_failed(ch, SSL_ERROR_SSL);
    return;
  }
  arm_dtls_timer(ch);
}

static int start_tls(m5c_chan_t *ch) {
  ch->ssl = SSL_new(ch->ctx);
  if (!ch->ssl || m5_akma_client_ssl_setup(ch->ssl, &ch->cred)) return M5_ENOMEM;
  if (ch->dtls) {
    BIO *bio = BIO_new_dgram(ch->fd, BIO_NOCLOSE);
    if (!bio) return M5_ENOMEM;
    BIO_ctrl_dgram_connect(bio, ch->ai->ai_addr);
    BIO_ctrl_set_connected(bio, ch->ai->ai_addr);
    SSL_set_bio(ch->ssl, bio, bio);
    SSL_set_options(ch->ssl, SSL_OP_NO_QUERY_MTU);
    DTLS_set_link_mtu(ch->ssl, DTLS_LINK_MTU);
  } else {
    static const unsigned char alpn[] = "\x04"
                                        "coap";
    if (!SSL_set_fd(ch->ssl, ch->fd) || SSL_set_alpn_protos(ch->ssl, alpn, sizeof alpn - 1))
      return M5_ENOMEM;
    SSL_set_mode(ch->ssl, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    SSL_set_read_ahead(ch->ssl, 1);
  }
  SSL_set_connect_state(ch->ssl);
  ch->state = CH_HANDSHAKE;
  drive_handshake(ch);
  return 0;
}

/* Starts on ch->ai, moving on to the next address when the socket cannot even connect. */
static void try_connect(m5c_chan_t *ch) {
  int last = 0;
  for (; ch->ai; ch->ai = ch->ai->ai_next) {
    ch->fd = socket(ch->ai->ai_family, ch->ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
                    ch->ai->ai_protocol);
    if (ch->fd < 0) {
      last = errno;
      continue;
    }
    if (ch->ai->ai_socktype == SOCK_STREAM) {
      /* Small pipelined CoAP-over-TLS requests must not wait for delayed ACKs (Nagle). */
      int one = 1;
      if (setsockopt(ch->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) != 0)
        M5_LOGD(DOM, "TCP_NODELAY: %s", strerror(errno));
    }
    if (connect(ch->fd, ch->ai->ai_addr, ch->ai->ai_addrlen) == 0) {
      if (start_tls(ch)) go_down(ch, M5_EIO, "cannot set up the (D)TLS session: out of memory");
      return;
    }
    if (errno == EINPROGRESS) {
      ch->state = CH_CONNECTING;
      watch(ch, M5_EV_WRITE);
      return;
    }
    last = errno;
    close(ch->fd);
    ch->fd = -1;
  }
  char why[200];
  snprintf(why, sizeof why, "cannot reach the server: %s", strerror(last ? last : EHOSTUNREACH));
  go_down(ch, M5_EIO, why);
}

/* ---- established session ---- */

/* 1 when the channel went down (and may be freed already). Over TLS it stops once OpenSSL
 * holds nothing more (SSL_has_pending): the socket is level-triggered, so what is still in it
 * is read at the next iteration, and the read() that would only say EAGAIN is saved. */
static int read_session(m5c_chan_t *ch) {
  uint8_t buf[READ_CHUNK];
  while (ch->state == CH_UP) {
    ERR_clear_error();
    errno = 0;
    int n = SSL_read(ch->ssl, buf, sizeof buf);
    if (n > 0) {
      m5_coap_ep_input(ch->ep, buf, (size_t)n);
      if (!ch->dtls && ch->state == CH_UP && !SSL_has_pending(ch->ssl)) return 0;
      continue;
    }
    int e = SSL_get_error(ch->ssl, n);
    if (e == SSL_ERROR_WANT_READ) return 0;
    if (e == SSL_ERROR_WANT_WRITE) {
      watch(ch, M5_EV_READ | M5_EV_WRITE);
      return 0;
    }
    char why[200], tmp[160];
    if (e == SSL_ERROR_ZERO_RETURN)
      snprintf(why, sizeof why, "the server closed the session");
    else if (e == SSL_ERROR_SSL)
      snprintf(why, sizeof why, "session failed: %s", m5_tls_last_error(tmp, sizeof tmp));
    else
      snprintf(why, sizeof why, "connection lost%s%s", errno ? ": " : "",
               errno ? strerror(errno) : "");
    ERR_clear_error();
    go_down(ch, M5_ECLOSED, why);
    return 1;
  }
  return 0;
}

static void on_io(m5_loop_t *loop, int fd, uint32_t events, void *arg) {
  (void)loop;
  (void)fd;
  m5c_chan_t *ch = arg;
  switch (ch->state) {
  case CH_CONNECTING: {
    int err = 0;
    socklen_t len = sizeof err;
    if (getsockopt(ch->fd, SOL_SOCKET, SO_ERROR, &err, &len) || err) {
      m5_loop_del_fd(ch->loop, ch->fd);
      close(ch->fd);
      ch->fd = -1;
      ch->watching = 0;
      ch->ai = ch->ai->ai_next;
      if (ch->ai) {
        try_connect(ch);
      } else {
        char why[200];
        snprintf(why, sizeof why, "cannot reach the server: %s", strerror(err ? err : errno));
        go_down(ch, M5_EIO, why);
      }
      return;
    }
    if (start_tls(ch)) go_down(ch, M5_EIO, "cannot set up the (D)TLS session: out of memory");
    return;
  }
  case CH_HANDSHAKE:
    drive_handshake(ch);
    return;
  case CH_UP:
    if ((events & M5_EV_WRITE) && !ch->dtls && flush_out(ch)) {
      go_down(ch, M5_ECLOSED, "connection lost while sending");
      return;
    }
    if ((events & (M5_EV_READ | M5_EV_ERROR)) && read_session(ch)) return;
    if (ch->state == CH_UP && !ch->out.len && ch->watching != M5_EV_READ) watch(ch, M5_EV_READ);
    return;
  case CH_DOWN:
    return;
  }
}

/* ---- life cycle ---- */

static void start_fire(m5_loop_t *loop, void *arg) {
  (void)loop;
  m5c_chan_t *ch = arg;
  ch->fail_timer = 0;
  try_connect(ch);
}

m5c_chan_t *m5c_chan_open(m5_loop_t *loop, SSL_CTX *ctx, const m5c_opts_t *opts,
                          const m5_akma_cred_t *cred, const m5c_chan_cbs_t *cbs, void *arg,
                          char *err, size_t errlen) {
  m5c_chan_t *ch = calloc(1, sizeof *ch);
  if (!ch) {
    snprintf(err, errlen, "out of memory");
    return NULL;
  }
  ch->loop = loop;
  ch->cbs = *cbs;
  ch->arg = arg;
  ch->ctx = ctx;
  ch->cred = *cred;
  ch->dtls = opts->transport == M5C_DTLS;
  ch->fd = -1;
  m5_buf_init(&ch->out, TLS_OUT_MAX);
  char port[8];
  snprintf(port, sizeof port, "%u", opts->port ? opts->port : M5C_DEFAULT_PORT);
  struct addrinfo hints;
  memset(&hints, 0, sizeof hints);
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = ch->dtls ? SOCK_DGRAM : SOCK_STREAM;
  hints.ai_flags = AI_ADDRCONFIG;
  int rc = getaddrinfo(opts->host, port, &hints, &ch->ai_list);
  if (rc) {
    snprintf(err, errlen, "cannot resolve %s: %s", opts->host, gai_strerror(rc));
    m5_wipe(&ch->cred, sizeof ch->cred);
    free(ch);
    return NULL;
  }
  ch->ai = ch->ai_list;
  ch->state = CH_CONNECTING;
  /* Failures from here on are reported through on_down, from the loop. */
  ch->fail_timer = m5_loop_timer_add(loop, 0, start_fire, ch);
  if (!ch->fail_timer) {
    snprintf(err, errlen, "out of memory");
    m5c_chan_free(ch);
    return NULL;
  }
  return ch;
}

void m5c_chan_free(m5c_chan_t *ch) {
  if (!ch) return;
  if (ch->fail_timer) m5_loop_timer_cancel(ch->loop, ch->fail_timer);
  ch->state = CH_DOWN;
  if (ch->ep) {
    /* Let outstanding answers (a 2.04 just given) leave before close_notify. */
    if (!ch->dtls && ch->out.len) flush_out(ch);
  }
  teardown(ch, 1);
  if (ch->ai_list) freeaddrinfo(ch->ai_list);
  m5_buf_free(&ch->out);
  m5_wipe(&ch->cred, sizeof ch->cred);
  free(ch);
}
