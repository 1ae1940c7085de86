/* CoAP over TLS on TCP (RFC 8323; TLS 1.3, and 1.2 if the context allows it), keyed by AKMA
 * (architecture §3.1, §4).
 *
 * The socket is read into a buffer and handed to OpenSSL through a memory BIO, so that during
 * the handshake the bytes can be scanned before OpenSSL sees them: whole records only, and
 * when they carry a TLS 1.2 ClientKeyExchange whose K_AF is not known yet they stay in the
 * buffer until the AAnF answers. TLS 1.3 pauses in the ClientHello callback instead. Output
 * is queued with backpressure: above OUT_HIGH queued bytes the connection is not read, above
 * OUT_MAX it fails. ALPN: "coap" is selected, a list without it is refused with
 * no_application_protocol, no ALPN at all is fine (RFC 8323 §4.1). */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/err.h>

#include "core/buf.h"
#include "core/err.h"
#include "core/log.h"
#include "core/net.h"
#include "server/ue/ue_conn.h"
#include "tls/tls.h"

#define DOM "ue"
#define TLS_REC_HDR 5
#define TLS_REC_MAX (16384 + 2048) /* TLSCiphertext.length limit (RFC 5246 §6.2.3) */
#define IN_MAX (2 * (TLS_REC_HDR + TLS_REC_MAX))
#define READ_CHUNK 16384
#define READ_BATCH 4
#define OUT_HIGH (256u * 1024u)
#define OUT_MAX (4u * 1024u * 1024u)
#define ACCEPT_BATCH 64
#define ACCEPT_PAUSE_MS 100u

typedef struct {
  ue_listener_t base;
  m5_timer_id_t accept_timer; /* accepting paused after EMFILE & co */
} tls_listener_t;

typedef struct {
  ue_conn_t base;
  int fd;
  uint32_t events; /* current epoll interest */
  m5_buf_t in;     /* read from the socket, not yet given to OpenSSL */
  size_t held;     /* bytes at the front of in that wait for K_AF */
  m5_buf_t out;    /* ciphertext not yet written */
  m5_buf_t plain;  /* CoAP bytes not yet given to SSL_write (see tls_send) */
  m5_defer_t push; /* the end-of-iteration write of plain */
  int bios_fresh;  /* the handshake's memory BIOs were replaced (trim_idle) */
} tls_conn_t;

/* ---- output ---- */

static void update_events(tls_conn_t *tc) {
  ue_conn_t *c = &tc->base;
  uint32_t want = 0;
  if (!c->closing && c->state != UE_CONN_WAIT_KEY && tc->out.len < OUT_HIGH && tc->in.len < IN_MAX)
    want |= M5_EV_READ;
  if (tc->out.len) want |= M5_EV_WRITE;
  if (want != tc->events && m5_loop_mod_fd(c->l->loop, tc->fd, want) == M5_OK) tc->events = want;
}

/* Writes what it can; M5_EIO when the connection is broken. */
static int write_some(tls_conn_t *tc, const uint8_t *p, size_t n, size_t *done) {
  *done = 0;
  while (*done < n) {
    ssize_t r = send(tc->fd, p + *done, n - *done, MSG_NOSIGNAL);
    if (r > 0) {
      *done += (size_t)r;
    } else if (r < 0 && errno == EINTR) {
      continue;
    } else if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      return M5_OK;
    } else {
      M5_LOGD(DOM, "%s: write failed: %s", tc->base.peer, r < 0 ? strerror(errno) : "closed");
      return M5_EIO;
    }
  }
  return M5_OK;
}

static void write_out(tls_conn_t *tc) {
  size_t done;
  int rc = write_some(tc, tc->out.data, tc->out.len, &done);
  m5_buf_consume(&tc->out, done);
  if (rc != M5_OK) {
    m5_buf_reset(&tc->out);
    tc->base.fatal = 1;
    ue_conn_close(&tc->base, "connection broken");
  }
}

/* Encrypts the pending CoAP bytes, as few records as fit (16 KiB each). */
static void push_plain(tls_conn_t *tc) {
  ue_conn_t *c = &tc->base;
  m5_loop_defer_cancel(c->l->loop, &tc->push);
  if (c->state != UE_CONN_OPEN || c->shut || (c->closing && c->fatal)) {
    m5_buf_reset(&tc->plain);
    return;
  }
  size_t off = 0;
  while (off < tc->plain.len) {
    size_t n = tc->plain.len - off;
    if (n > 16384) n = 16384;
    if (ERR_peek_error()) ERR_clear_error(); /* as read_app (ue_conn.c) */
    int r = SSL_write(c->ssl, tc->plain.data + off, (int)n);
    if (r <= 0) {
      char e[256];
      M5_LOGD(DOM, "%s: TLS write failed: %s", c->peer, m5_tls_last_error(e, sizeof e));
      m5_buf_reset(&tc->plain);
      c->fatal = 1;
      ue_conn_close(c, "TLS write failed");
      return;
    }
    off += (size_t)r;
  }
  m5_buf_reset(&tc->plain);
}

/* An idle session holds no I/O buffers of its own (docs/benchmarks.md, idle devices): each is
 * freed once empty and allocated again by the next append. And once the handshake is over,
 * the memory BIOs that carried its flights (sized for them: a ClientHello with its key share
 * and PSK binder) are swapped for fresh ones while both are empty, so that an established
 * session's BIOs only grow as large as its own records. */
static BIO *fresh_mem_bio(void) {
  BIO *b = BIO_new(BIO_s_mem());
  if (b) BIO_set_mem_eof_return(b, -1);
  return b;
}

static void trim_idle(tls_conn_t *tc) {
  ue_conn_t *c = &tc->base;
  if (!tc->in.len) m5_buf_free(&tc->in);
  if (!tc->out.len) m5_buf_free(&tc->out);
  if (!tc->plain.len) m5_buf_free(&tc->plain);
  if (tc->bios_fresh || c->state != UE_CONN_OPEN || c->closing) return;
  if (BIO_ctrl_pending(c->rbio) || BIO_ctrl_pending(c->wbio)) return;
  BIO *r = fresh_mem_bio(), *w = fresh_mem_bio();
  if (!r || !w) { /* keep the old ones: nothing lost but memory */
    BIO_free(r);
    BIO_free(w);
    return;
  }
  SSL_set0_rbio(c->ssl, r); /* frees the old BIO */
  SSL_set0_wbio(c->ssl, w);
  c->rbio = r;
  c->wbio = w;
  tc->bios_fresh = 1;
}

/* Puts the pending CoAP bytes, then whatever OpenSSL wrote, on the wire. */
static void tls_flush(ue_conn_t *c) {
  tls_conn_t *tc = (tls_conn_t *)c;
  if (tc->plain.len) push_plain(tc);
  char *data = NULL;
  long n = BIO_get_mem_data(c->wbio, &data);
  if (n > 0 && data) {
    const uint8_t *p = (const uint8_t *)data;
    size_t len = (size_t)n, done = 0;
    int rc = M5_OK;
    if (tc->out.len == 0) rc = write_some(tc, p, len, &done);
    if (rc == M5_OK && done < len) rc = m5_buf_append(&tc->out, p + done, len - done);
    (void)BIO_reset(c->wbio);
    if (rc != M5_OK) {
      m5_buf_reset(&tc->out);
      c->fatal = 1;
      ue_conn_close(c, rc == M5_ERANGE ? "output backlog too large" : "connection broken");
    }
  }
  update_events(tc);
}

static void push_deferred(m5_loop_t *loop, void *arg) {
  (void)loop;
  tls_conn_t *tc = arg;
  if (tc->base.closing) return;
  tls_flush(&tc->base);
  if (!tc->base.closing) trim_idle(tc);
}

/* CoAP messages are collected and written at the end of the loop iteration (or at the next
 * flush, e.g. after the records read in one go were handled), in as few TLS records and
 * send() calls as possible: a peer with 20 requests in flight gets its 20 answers in one
 * record rather than twenty. Order is kept, since every CoAP byte goes through plain. A
 * write error closes the connection, which fails whatever still waits on it. */
static int tls_send(ue_conn_t *c, const uint8_t *p, size_t n) {
  tls_conn_t *tc = (tls_conn_t *)c;
  if (c->closing || c->state != UE_CONN_OPEN) return M5_EIO;
  if (n > OUT_MAX || tc->out.len + tc->plain.len + n > OUT_MAX) return M5_EFULL;
  if (m5_buf_append(&tc->plain, p, n) != M5_OK) return M5_ENOMEM;
  m5_loop_defer(c->l->loop, &tc->push, push_deferred, tc);
  return M5_OK;
}

/* A plaintext fatal alert record (RFC 8446 §6): the handshake paused before our first
 * record, so this is what the client reads first. */
static void tls_alert(ue_conn_t *c, uint8_t alert) {
  const uint8_t rec[] = {21, 3, 3, 0, 2, 2 /* fatal */, alert};
  if (BIO_write(c->wbio, rec, (int)sizeof rec) == (int)sizeof rec) tls_flush(c);
}

/* ---- input ---- */

/* Bytes of the complete records at the front of p; all of it if p is not TLS at all (OpenSSL
 * then fails the handshake on it). */
static size_t complete_records(const uint8_t *p, size_t n) {
  size_t off = 0;
  while (n - off >= TLS_REC_HDR) {
    size_t body = ((size_t)p[off + 3] << 8) | p[off + 4];
    if (body > TLS_REC_MAX) return n;
    if (TLS_REC_HDR + body > n - off) break;
    off += TLS_REC_HDR + body;
  }
  return off;
}

static int feed(tls_conn_t *tc, size_t n) {
  ue_conn_t *c = &tc->base;
  if (n == 0) return M5_OK;
  if (BIO_write(c->rbio, tc->in.data, (int)n) != (int)n) {
    ue_conn_close(c, "out of memory");
    return M5_ENOMEM;
  }
  m5_buf_consume(&tc->in, n);
  return M5_OK;
}

static void process_input(tls_conn_t *tc) {
  ue_conn_t *c = &tc->base;
  while (!c->closing && c->state != UE_CONN_WAIT_KEY) {
    if (c->state == UE_CONN_OPEN) {
      if (feed(tc, tc->in.len) == M5_OK) ue_conn_drive(c);
      return;
    }
    /* Handshake: whole records only, so the scan sees a ClientKeyExchange in one piece. */
    size_t n = complete_records(tc->in.data, tc->in.len);
    if (n == 0) return;
    if (!c->key_failed && m5_akma_scan_input(c->ssl, tc->in.data, n, c->want) == 1) {
      tc->held = n;
      ue_conn_want_key(c);
      return;
    }
    if (feed(tc, n) != M5_OK) return;
    ue_conn_drive(c);
  }
}

static void tls_resume(ue_conn_t *c) {
  tls_conn_t *tc = (tls_conn_t *)c;
  size_t held = tc->held;
  tc->held = 0;
  c->wait_ch = 0;
  /* Without a key the held ClientKeyExchange makes OpenSSL send unknown_psk_identity. */
  if (feed(tc, held) != M5_OK) return;
  ue_conn_drive(c);
  if (!c->key_failed) process_input(tc);
  update_events(tc);
}

static void read_input(tls_conn_t *tc) {
  ue_conn_t *c = &tc->base;
  uint8_t buf[READ_CHUNK];
  for (int i = 0; i < READ_BATCH; i++) {
    if (c->closing || c->state == UE_CONN_WAIT_KEY || tc->out.len >= OUT_HIGH) return;
    size_t room = IN_MAX - tc->in.len;
    if (room == 0) return;
    ssize_t r = recv(tc->fd, buf, room < sizeof buf ? room : sizeof buf, 0);
    if (r > 0) {
      ue_conn_touch(c);
      if (c->state == UE_CONN_OPEN && tc->in.len == 0) {
        if (BIO_write(c->rbio, buf, (int)r) != (int)r) {
          ue_conn_close(c, "out of memory");
          return;
        }
        ue_conn_drive(c);
      } else if (m5_buf_append(&tc->in, buf, (size_t)r) == M5_OK) {
        process_input(tc);
      } else {
        ue_conn_close(c, "out of memory");
        return;
      }
      if ((size_t)r < sizeof buf) return;
    } else if (r == 0) {
      M5_LOGD(DOM, "%s: connection closed by the peer", c->peer);
      ue_conn_close(c, "peer closed");
      return;
    } else if (errno == EINTR) {
      continue;
    } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
      return;
    } else {
      M5_LOGD(DOM, "%s: read failed: %s", c->peer, strerror(errno));
      c->fatal = 1;
      ue_conn_close(c, "connection broken");
      return;
    }
  }
}

static void io_cb(m5_loop_t *loop, int fd, uint32_t events, void *arg) {
  (void)loop;
  (void)fd;
  tls_conn_t *tc = arg;
  ue_conn_t *c = &tc->base;
  if ((events & M5_EV_WRITE) && tc->out.len) write_out(tc);
  if (!c->closing && (events & (M5_EV_READ | M5_EV_ERROR))) read_input(tc);
  /* Hang-up or error while not reading (waiting for K_AF, backpressure): nothing more will
   * arrive or leave. */
  if (!c->closing && (events & M5_EV_ERROR)) {
    M5_LOGD(DOM, "%s: socket error or hang-up", c->peer);
    c->fatal = 1;
    ue_conn_close(c, "connection broken");
  }
  if (!c->closing || tc->out.len)
    update_events(tc);
  else if (tc->events && m5_loop_mod_fd(c->l->loop, tc->fd, 0) == M5_OK)
    tc->events = 0;
  if (!c->closing) trim_idle(tc);
}

static void tls_release(ue_conn_t *c) {
  tls_conn_t *tc = (tls_conn_t *)c;
  if (tc->fd >= 0) {
    m5_loop_del_fd(c->l->loop, tc->fd);
    close(tc->fd);
    tc->fd = -1;
  }
  m5_loop_defer_cancel(c->l->loop, &tc->push);
  m5_buf_free(&tc->in);
  m5_buf_free(&tc->out);
  m5_buf_free(&tc->plain);
}

static void tls_free_listener(ue_listener_t *l) {
  tls_listener_t *tl = (tls_listener_t *)l;
  if (tl->accept_timer) m5_loop_timer_cancel(l->loop, tl->accept_timer);
}

static int tls_start_listener(ue_listener_t *l, char *err, size_t errlen);

static const ue_conn_ops_t tls_ops = {
    .name = "tls",
    .coap = M5_COAP_STREAM,
    .flush = tls_flush,
    .resume = tls_resume,
    .alert = tls_alert,
    .send = tls_send,
    .release = tls_release,
    .start_listener = tls_start_listener,
    .free_listener = tls_free_listener,
};

/* ---- accepting ---- */

static void listen_cb(m5_loop_t *loop, int fd, uint32_t events, void *arg);

static void accept_resume_cb(m5_loop_t *loop, void *arg) {
  tls_listener_t *tl = arg;
  tl->accept_timer = 0;
  m5_loop_mod_fd(loop, tl->base.fd, M5_EV_READ);
}

static void accept_one(int fd, const struct sockaddr *sa, socklen_t sl, void *arg) {
  tls_listener_t *tl = arg;
  ue_listener_t *l = &tl->base;
  char peer[64];
  if (l->n_handshakes >= l->o.max_handshakes || l->n_sessions >= l->o.max_sessions) {
    ue_conn_refused(l, SRC_HANDSHAKES, sa);
    if (m5_log_enabled(M5_LOG_DEBUG, DOM)) {
      ue_addr_str(sa, peer, sizeof peer);
      M5_LOGD(DOM, "%s: connection refused: %zu handshakes, %zu sessions (limits %zu, %zu)", peer,
              l->n_handshakes, l->n_sessions, l->o.max_handshakes, l->o.max_sessions);
    }
    close(fd);
    return;
  }
  /* Per-source bounds: refused before any TLS state exists, by closing the connection. */
  src_ref_t src;
  if (ue_conn_admit(l, sa, &src) != SRC_OK) {
    close(fd);
    return;
  }
  /* Small pipelined CoAP-over-TLS messages must not wait for delayed ACKs (Nagle). */
  int one = 1;
  if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) != 0)
    M5_LOGD(DOM, "%s: TCP_NODELAY: %s", l->name, strerror(errno));
  BIO *r, *w;
  SSL *ssl = ue_ssl_new(l->o.ctx, &r, &w);
  tls_conn_t *tc = ssl ? (tls_conn_t *)ue_conn_new(l, sizeof *tc, ssl, sa, sl, &src) : NULL;
  if (!ssl) src_unref(l->o.limits, &src);
  if (!tc) {
    ue_addr_str(sa, peer, sizeof peer);
    M5_LOGW(DOM, "%s: cannot accept a connection: out of memory", peer);
    close(fd);
    return;
  }
  tc->fd = fd;
  m5_buf_init(&tc->in, IN_MAX);
  m5_buf_init(&tc->out, OUT_MAX);
  m5_buf_init(&tc->plain, OUT_MAX);
  if (m5_loop_add_fd(l->loop, fd, M5_EV_READ, io_cb, tc) != M5_OK) {
    ue_conn_close(&tc->base, "cannot watch the socket");
    return;
  }
  tc->events = M5_EV_READ;
}

static void listen_cb(m5_loop_t *loop, int fd, uint32_t events, void *arg) {
  (void)events;
  tls_listener_t *tl = arg;
  if (m5_net_accept(fd, ACCEPT_BATCH, accept_one, tl) == 0) return;
  /* Out of descriptors or memory: a level-triggered listener would spin; pause it. */
  M5_LOGW(DOM, "%s: accept: %s; pausing for %u ms", tl->base.name, strerror(errno),
          ACCEPT_PAUSE_MS);
  if (!tl->accept_timer && m5_loop_mod_fd(loop, fd, 0) == M5_OK &&
      !(tl->accept_timer = m5_loop_timer_add(loop, ACCEPT_PAUSE_MS, accept_resume_cb, tl)))
    m5_loop_mod_fd(loop, fd, M5_EV_READ);
}

/* ---- ALPN (RFC 8323 §4.1) ---- */

static int alpn_cb(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                   const unsigned char *in, unsigned int inlen, void *arg) {
  (void)ssl;
  (void)arg;
  for (unsigned int i = 0; i < inlen;) {
    unsigned int n = in[i];
    if (n > inlen - i - 1) break;
    if (n == 4 && memcmp(in + i + 1, "coap", 4) == 0) {
      *out = in + i + 1;
      *outlen = 4;
      return SSL_TLSEXT_ERR_OK;
    }
    i += 1 + n;
  }
  return SSL_TLSEXT_ERR_ALERT_FATAL; /* no_application_protocol */
}

/* The ALPN callback belongs to the context, which the workers share: the first listener sets
 * it, before any handshake on that context can read it; the others find it marked. */
static pthread_mutex_t alpn_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_once_t alpn_once = PTHREAD_ONCE_INIT;
static int alpn_idx = -1;

static void alpn_idx_init(void) {
  alpn_idx = SSL_CTX_get_ex_new_index(0, NULL, NULL, NULL, NULL);
}

static int install_alpn(SSL_CTX *ctx) {
  static char mark;
  pthread_once(&alpn_once, alpn_idx_init);
  if (alpn_idx < 0) return M5_ENOMEM;
  int rc = M5_OK;
  pthread_mutex_lock(&alpn_lock);
  if (SSL_CTX_get_ex_data(ctx, alpn_idx) != &mark) {
    SSL_CTX_set_alpn_select_cb(ctx, alpn_cb, NULL);
    if (!SSL_CTX_set_ex_data(ctx, alpn_idx, &mark)) rc = M5_ENOMEM;
  }
  pthread_mutex_unlock(&alpn_lock);
  return rc;
}

static int tls_start_listener(ue_listener_t *l, char *err, size_t errlen) {
  if (install_alpn(l->o.ctx) != M5_OK ||
      m5_loop_add_fd(l->loop, l->fd, M5_EV_READ, listen_cb, l) != M5_OK) {
    snprintf(err, errlen, "MSGin5G-1 TLS listener %s: out of memory", l->name);
    return M5_ENOMEM;
  }
  return M5_OK;
}

ue_listener_t *ue_tls_listener_new(m5_loop_t *loop, const ue_listener_opts_t *opts, char *err,
                                   size_t errlen) {
  return ue_listener_new(loop, opts, &tls_ops, sizeof(tls_listener_t), err, errlen);
}
