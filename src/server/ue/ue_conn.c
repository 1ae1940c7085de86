/* The part of the MSGin5G-1 transports that does not depend on UDP or TCP (ue_conn.h): the
 * AKMA handshake on memory BIOs with its non-blocking wait for K_AF (architecture §4), the
 * UE session and its CoAP endpoint, the handshake / idle / K_AF-expiry timers ("K_AF never
 * outlives its expiry"), and closing, which always happens from a 0 ms timer so nothing is
 * freed under a caller that still uses it. */
#include "server/ue/ue_conn.h"

#include <arpa/inet.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/err.h>

#include "core/err.h"
#include "core/log.h"
#include "core/net.h"
#include "tls/tls.h"

#define DOM "ue"
#define APP_READ_MAX 16384

/* Session ids are unique in the process and never reused: other threads hold them as handles. */
static atomic_uint_fast64_t next_session_id = 1;

/* ---- addresses, sockets ---- */

void ue_addr_str(const struct sockaddr *sa, char *out, size_t outlen) {
  char ip[INET6_ADDRSTRLEN] = "?";
  unsigned port = 0;
  if (sa->sa_family == AF_INET) {
    const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
    inet_ntop(AF_INET, &in->sin_addr, ip, sizeof ip);
    port = ntohs(in->sin_port);
    snprintf(out, outlen, "%s:%u", ip, port);
  } else if (sa->sa_family == AF_INET6) {
    const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
    inet_ntop(AF_INET6, &in6->sin6_addr, ip, sizeof ip);
    port = ntohs(in6->sin6_port);
    snprintf(out, outlen, "[%s]:%u", ip, port);
  } else {
    snprintf(out, outlen, "?");
  }
}

static int bind_socket(ue_listener_t *l, const char *host, int socktype, char *err, size_t errlen) {
  const char *proto = socktype == SOCK_DGRAM ? "udp" : "tcp";
  char why[200];
  int fd = m5_net_listen(host, l->o.port, socktype, why, sizeof why);
  if (fd < 0) {
    snprintf(err, errlen, "%s (%s)", why, proto);
    return M5_EIO;
  }
  struct sockaddr_storage ss;
  socklen_t sl = sizeof ss;
  if (getsockname(fd, (struct sockaddr *)&ss, &sl) == 0) {
    l->port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                             : ((struct sockaddr_in *)&ss)->sin_port);
    char a[64];
    ue_addr_str((struct sockaddr *)&ss, a, sizeof a);
    snprintf(l->name, sizeof l->name, "%s/%s", a, proto);
  } else {
    l->port = l->o.port;
    snprintf(l->name, sizeof l->name, "%s:%u/%s", host ? host : "*", (unsigned)l->port, proto);
  }
  l->fd = fd;
  return M5_OK;
}

ue_listener_t *ue_listener_new(m5_loop_t *loop, const ue_listener_opts_t *opts,
                               const ue_conn_ops_t *ops, size_t size, char *err, size_t errlen) {
  char dummy[8];
  if (!err || !errlen) {
    err = dummy;
    errlen = sizeof dummy;
  }
  err[0] = '\0';
  int dgram = ops->coap == M5_COAP_DGRAM;
  ue_listener_t *l = calloc(1, size);
  if (!l) {
    snprintf(err, errlen, "MSGin5G-1 %s listener: out of memory", dgram ? "DTLS" : "TLS");
    return NULL;
  }
  l->fd = -1;
  l->ops = ops;
  if (!loop || !opts || !opts->ctx || !opts->keys || !opts->hooks.request) {
    snprintf(err, errlen, "MSGin5G-1 listener: missing loop, TLS context, K_AF source or hooks");
    ue_listener_free(l);
    return NULL;
  }
  l->loop = loop;
  l->o = *opts;
  l->o.host = NULL;
  l->o.coap.transport = ops->coap;
  if (!l->o.max_sessions) l->o.max_sessions = 100000;
  if (!l->o.max_handshakes) l->o.max_handshakes = 1024;
  if (!l->o.handshake_timeout_ms) l->o.handshake_timeout_ms = 10000;
  if (!l->o.idle_timeout_ms) l->o.idle_timeout_ms = 600000;
  if (bind_socket(l, opts->host, dgram ? SOCK_DGRAM : SOCK_STREAM, err, errlen) != M5_OK ||
      ops->start_listener(l, err, errlen) != M5_OK) {
    ue_listener_free(l);
    return NULL;
  }
  M5_LOGD(DOM, "listening on %s (CoAP over %s)", l->name, dgram ? "DTLS" : "TLS");
  return l;
}

SSL *ue_ssl_new(SSL_CTX *ctx, BIO **rbio, BIO **wbio) {
  SSL *ssl = SSL_new(ctx);
  BIO *r = BIO_new(BIO_s_mem()), *w = BIO_new(BIO_s_mem());
  if (!ssl || !r || !w || m5_akma_ssl_attach(ssl) != M5_OK) {
    BIO_free(r);
    BIO_free(w);
    SSL_free(ssl);
    return NULL;
  }
  /* An empty memory BIO means "no more input yet", not end of file. */
  BIO_set_mem_eof_return(r, -1);
  BIO_set_mem_eof_return(w, -1);
  SSL_set_bio(ssl, r, w);
  SSL_set_accept_state(ssl);
  /* Idle sessions keep no record buffers (architecture §6: memory per idle session). */
  SSL_set_mode(ssl, SSL_MODE_RELEASE_BUFFERS);
  *rbio = r;
  *wbio = w;
  return ssl;
}

/* ---- closing ---- */

static void conn_destroy(ue_conn_t *c, const char *why) {
  ue_listener_t *l = c->l;
  if (c->hs_timer) m5_loop_timer_cancel(l->loop, c->hs_timer);
  if (c->idle_timer) m5_loop_timer_cancel(l->loop, c->idle_timer);
  if (c->expiry_timer) m5_loop_timer_cancel(l->loop, c->expiry_timer);
  c->hs_timer = c->idle_timer = c->expiry_timer = 0;
  if (c->waiting) {
    /* Its request is cancelled if nobody else waits for it; the token stays spent. */
    akma_keys_cancel(l->o.keys, c);
    src_fetch_end(&c->src);
  }
  c->waiting = 0;
  c->closing = 1;
  if (c->state != UE_CONN_OPEN) {
    l->n_handshakes--;
    src_hs_end(&c->src);
  }
  src_unref(l->o.limits, &c->src);
  if (c->state == UE_CONN_OPEN && !c->no_notify && !c->fatal && ue_conn_bufs(c) == M5_OK) {
    l->ops->flush(c); /* what the transport still holds goes before the close_notify */
    if (c->ssl) {
      ERR_clear_error();
      SSL_shutdown(c->ssl); /* close_notify; we do not wait for the peer's */
      ERR_clear_error();
    } else if (l->ops->close_notify) {
      l->ops->close_notify(c);
    }
    c->shut = 1;
    l->ops->flush(c);
  }
  c->shut = 1;
  ue_session_t *s = c->s;
  if (s) {
    M5_LOGI(DOM, "%s: session %llu (%s, A-KID %s) closed: %s", c->peer, (unsigned long long)s->id,
            s->transport, s->akid, why);
    if (l->o.hooks.closed) l->o.hooks.closed(s, why, l->o.hooks.arg);
    /* Outgoing requests still waiting complete with M5_ECLOSED here. */
    m5_coap_ep_free(s->ep);
    s->ep = NULL;
    OPENSSL_cleanse(&s->key, sizeof s->key);
    free(s);
    c->s = NULL;
    l->n_sessions--;
  }
  l->ops->release(c);
  free(c->want);
  SSL_free(c->ssl); /* wipes the AKMA state and its key */
  if (c->prev)
    c->prev->next = c->next;
  else
    l->conns = c->next;
  if (c->next) c->next->prev = c->prev;
  free(c);
}

static void reap(ue_listener_t *l) {
  while (l->reap) {
    ue_conn_t *c = l->reap;
    l->reap = c->reap_next;
    char why[sizeof c->why];
    memcpy(why, c->why, sizeof why);
    conn_destroy(c, why);
  }
}

static void reap_cb(m5_loop_t *loop, void *arg) {
  (void)loop;
  ue_listener_t *l = arg;
  l->reap_timer = 0;
  reap(l);
}

void ue_conn_close(ue_conn_t *c, const char *why) {
  ue_listener_t *l = c->l;
  if (c->closing || l->freeing) return;
  c->closing = 1;
  snprintf(c->why, sizeof c->why, "%s", why ? why : "closed");
  c->reap_next = l->reap;
  l->reap = c;
  /* Without a timer the reaper runs at the next one that fires (the handshake or idle timer
   * of some connection) or at ue_listener_free: closing is late, never lost. */
  if (!l->reap_timer) l->reap_timer = m5_loop_timer_add(l->loop, 0, reap_cb, l);
}

static void session_close(ue_session_t *s, const char *why) {
  ue_conn_close(s->transport_priv, why);
}

/* ---- timers ---- */

static void hs_timeout_cb(m5_loop_t *loop, void *arg) {
  (void)loop;
  ue_conn_t *c = arg;
  c->hs_timer = 0;
  M5_LOGD(DOM, "%s: handshake timed out after %u ms%s", c->peer, c->l->o.handshake_timeout_ms,
          c->waiting ? " waiting for the AAnF" : "");
  ue_conn_close(c, "handshake timeout");
  reap(c->l);
}

static void idle_cb(m5_loop_t *loop, void *arg) {
  ue_conn_t *c = arg;
  c->idle_timer = 0;
  uint64_t now = m5_loop_now_ms(loop), idle = c->l->o.idle_timeout_ms;
  if (now - c->last_rx_ms >= idle) {
    ue_conn_close(c, "idle timeout");
    reap(c->l);
    return;
  }
  c->idle_timer = m5_loop_timer_add(loop, idle - (now - c->last_rx_ms), idle_cb, c);
  if (!c->idle_timer) ue_conn_close(c, "out of timers");
}

static void expiry_cb(m5_loop_t *loop, void *arg) {
  (void)loop;
  ue_conn_t *c = arg;
  c->expiry_timer = 0;
  ue_conn_close(c, "K_AF expired");
  reap(c->l);
}

void ue_conn_touch(ue_conn_t *c) {
  c->last_rx_ms = m5_loop_now_ms(c->l->loop);
}

/* ---- connections ---- */

void ue_conn_refused(ue_listener_t *l, src_reason_t why, const struct sockaddr *sa) {
  l->dropped++;
  if (!l->o.limits) return;
  char peer[64];
  ue_addr_str(sa, peer, sizeof peer);
  src_refused(l->o.limits, why, peer, m5_loop_now_ms(l->loop));
}

src_reason_t ue_conn_admit(ue_listener_t *l, const struct sockaddr *sa, src_ref_t *src) {
  src_reason_t why = src_ref(l->o.limits, sa, src);
  if (why == SRC_OK) why = src_hs_check(l->o.limits, src);
  if (why != SRC_OK) {
    src_unref(l->o.limits, src);
    ue_conn_refused(l, why, sa);
  }
  return why;
}

ue_conn_t *ue_conn_new(ue_listener_t *l, size_t size, SSL *ssl, const struct sockaddr *sa,
                       socklen_t salen, src_ref_t *src) {
  ue_conn_t *c = size >= sizeof *c && salen <= sizeof c->addr ? calloc(1, size) : NULL;
  if (!c) {
    SSL_free(ssl);
    src_unref(l->o.limits, src);
    return NULL;
  }
  c->l = l;
  c->ssl = ssl;
  c->want = calloc(1, sizeof *c->want);
  c->rbio = SSL_get_rbio(ssl);
  c->wbio = SSL_get_wbio(ssl);
  memcpy(&c->addr, sa, salen);
  c->addrlen = salen;
  ue_addr_str(sa, c->peer, sizeof c->peer);
  c->state = UE_CONN_HANDSHAKE;
  c->hs_timer = c->want ? m5_loop_timer_add(l->loop, l->o.handshake_timeout_ms, hs_timeout_cb, c)
                        : 0;
  if (!c->hs_timer) {
    SSL_free(ssl);
    src_unref(l->o.limits, src);
    free(c->want);
    free(c);
    return NULL;
  }
  c->src = *src;
  memset(src, 0, sizeof *src);
  src_hs_begin(&c->src);
  c->next = l->conns;
  if (l->conns) l->conns->prev = c;
  l->conns = c;
  l->n_handshakes++;
  ue_conn_touch(c);
  return c;
}

/* ---- the session ---- */

static int ep_send(void *io, const uint8_t *p, size_t n) {
  ue_conn_t *c = io;
  if (c->shut || !c->s) return M5_ECLOSED;
  return c->l->ops->send(c, p, n);
}

static void ep_on_request(m5_coap_ep_t *ep, m5_coap_req_t *req, void *arg) {
  (void)ep;
  ue_conn_t *c = arg;
  if (!c->s || c->closing) {
    m5_coap_ep_respond_error(req, M5_COAP_SERVICE_UNAVAILABLE, "session closing");
    return;
  }
  c->l->o.hooks.request(c->s, req, c->l->o.hooks.arg);
}

static void ep_on_error(m5_coap_ep_t *ep, int status, const char *why, void *arg) {
  (void)ep;
  ue_conn_t *c = arg;
  char msg[96];
  snprintf(msg, sizeof msg, "coap: %s", why ? why : m5_strerror(status));
  M5_LOGD(DOM, "%s: %s", c->peer, msg);
  ue_conn_close(c, msg);
}

static int64_t wall_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void conn_established(ue_conn_t *c) {
  ue_listener_t *l = c->l;
  c->state = UE_CONN_OPEN;
  l->n_handshakes--;
  /* Proved by K_AF: the session no longer counts against its source. */
  src_hs_end(&c->src);
  src_unref(l->o.limits, &c->src);
  if (c->hs_timer) m5_loop_timer_cancel(l->loop, c->hs_timer);
  c->hs_timer = 0;
  const m5_akma_key_t *key = m5_akma_ssl_key(c->ssl);
  const char *akid = m5_akma_ssl_akid(c->ssl);
  if (!key || !akid) {
    M5_LOGI(DOM, "%s: handshake completed without an AKMA key; closing", c->peer);
    ue_conn_close(c, "no AKMA key");
    return;
  }
  if (l->n_sessions >= l->o.max_sessions) {
    l->dropped++;
    M5_LOGI(DOM, "%s: refused: %zu sessions is the limit (max_sessions)", c->peer,
            l->o.max_sessions);
    ue_conn_close(c, "too many sessions");
    return;
  }
  int64_t left_ms = key->expiry * 1000 - wall_ms();
  if (left_ms <= 0) {
    M5_LOGI(DOM, "%s: K_AF for A-KID %s expired during the handshake", c->peer, akid);
    ue_conn_close(c, "K_AF expired");
    return;
  }
  ue_session_t *s = calloc(1, sizeof *s);
  if (!s) {
    ue_conn_close(c, "out of memory");
    return;
  }
  s->id = atomic_fetch_add(&next_session_id, 1);
  s->worker = l->o.worker;
  s->transport = l->ops->name;
  s->peer = c->peer;
  s->key = *key;
  OPENSSL_cleanse(s->key.kaf, sizeof s->key.kaf);
  /* The SSL's AKMA state would otherwise keep K_AF until the session ends (conventions:
   * secrets are wiped after use); only SUPI and expiry are needed from here on. */
  m5_akma_ssl_wipe_key(c->ssl);
  snprintf(s->akid, sizeof s->akid, "%s", akid);
  s->transport_priv = c;
  s->close = session_close;
  m5_coap_ep_cbs_t cbs = {.send = ep_send, .on_request = ep_on_request, .on_error = ep_on_error};
  s->ep = m5_coap_ep_new(l->loop, &l->o.coap, &cbs, c, c);
  c->expiry_timer = m5_loop_timer_add(l->loop, (uint64_t)left_ms, expiry_cb, c);
  c->idle_timer = m5_loop_timer_add(l->loop, l->o.idle_timeout_ms, idle_cb, c);
  if (!s->ep || !c->expiry_timer || !c->idle_timer) {
    if (s->ep) m5_coap_ep_free(s->ep);
    free(s);
    M5_LOGW(DOM, "%s: cannot open a session: out of memory", c->peer);
    ue_conn_close(c, "out of memory");
    return;
  }
  c->s = s;
  l->n_sessions++;
  free(c->want); /* only a handshake waits for a key */
  c->want = NULL;
  const char *version = SSL_get_version(c->ssl), *suite = SSL_get_cipher_name(c->ssl); /* static */
  if (l->ops->opened) {
    l->ops->opened(c);
    if (c->closing) return;
  }
  M5_LOGI(DOM, "%s: session %llu open over %s (%s, %s), A-KID %s, K_AF expires in %lld s", c->peer,
          (unsigned long long)s->id, s->transport, version, suite, s->akid,
          (long long)(left_ms / 1000));
  if (l->ops->coap == M5_COAP_STREAM) {
    int rc = m5_coap_ep_start(s->ep);
    if (rc != M5_OK) {
      ue_conn_close(c, "cannot send CSM");
      return;
    }
  }
  if (l->o.hooks.opened) l->o.hooks.opened(s, l->o.hooks.arg);
}

/* ---- handshake and records ---- */

static void conn_fail(ue_conn_t *c, const char *what) {
  char e[256];
  m5_tls_last_error(e, sizeof e);
  c->fatal = 1;
  M5_LOGD(DOM, "%s: %s: %s", c->peer, what, e[0] ? e : "connection failed");
  ue_conn_close(c, what);
}

static void read_app(ue_conn_t *c) {
  if (!c->ssl) { /* the transport reads its records itself */
    c->l->ops->flush(c);
    return;
  }
  uint8_t buf[APP_READ_MAX];
  while (!c->closing && c->s) {
    /* SSL_get_error needs an empty error queue before the call, which ERR_peek_error checks
     * for a quarter of what ERR_clear_error costs (about 840 instructions) on every read. */
    if (ERR_peek_error()) ERR_clear_error();
    int n = SSL_read(c->ssl, buf, sizeof buf);
    if (n > 0) {
      int rc = m5_coap_ep_input(c->s->ep, buf, (size_t)n);
      if (rc != M5_OK && c->l->ops->coap == M5_COAP_STREAM) {
        M5_LOGD(DOM, "%s: CoAP stream input failed: %s", c->peer, m5_strerror(rc));
        ue_conn_close(c, "coap: bad stream");
      }
      /* Nothing left to decrypt (no bytes in the BIO, no record in OpenSSL's buffer): another
       * SSL_read would only say WANT_READ, at the cost of a record-layer pass and an error
       * queue clear per message. */
      if (c->closing || !c->s || (!SSL_has_pending(c->ssl) && BIO_ctrl_pending(c->rbio) == 0))
        break;
      continue;
    }
    int err = SSL_get_error(c->ssl, n);
    if (err == SSL_ERROR_WANT_READ) break;
    if (err == SSL_ERROR_ZERO_RETURN) {
      M5_LOGD(DOM, "%s: close_notify from the peer", c->peer);
      ue_conn_close(c, "peer closed");
    } else {
      conn_fail(c, "TLS record error");
    }
    break;
  }
  c->l->ops->flush(c);
}

int ue_conn_bufs(ue_conn_t *c) {
  if (!c->bufs_off || !c->ssl) return M5_OK;
  if (!SSL_alloc_buffers(c->ssl)) return M5_ENOMEM;
  c->bufs_off = 0;
  return M5_OK;
}

void ue_conn_bufs_release(ue_conn_t *c) {
  if (c->bufs_off || c->closing || c->state != UE_CONN_OPEN || !c->ssl) return;
  if (SSL_free_buffers(c->ssl)) c->bufs_off = 1; /* 0: bytes still pending, kept */
}

void ue_conn_drive(ue_conn_t *c) {
  if (c->closing || c->state == UE_CONN_WAIT_KEY) return;
  if (ue_conn_bufs(c) != M5_OK) {
    ue_conn_close(c, "out of memory");
    return;
  }
  if (c->state == UE_CONN_HANDSHAKE) {
    ERR_clear_error();
    int r = SSL_do_handshake(c->ssl);
    int err = r == 1 ? SSL_ERROR_NONE : SSL_get_error(c->ssl, r);
    c->l->ops->flush(c);
    if (r != 1) {
      if (err == SSL_ERROR_WANT_READ) return;
      if (err == SSL_ERROR_WANT_CLIENT_HELLO_CB && !c->key_failed &&
          m5_akma_ssl_wanted(c->ssl, c->want) == M5_OK) {
        c->wait_ch = 1;
        ue_conn_want_key(c);
        return;
      }
      conn_fail(c, c->key_failed ? "no K_AF" : "handshake failed");
      return;
    }
    if (c->key_failed) { /* cannot happen: no key, no handshake; be sure anyway */
      ue_conn_close(c, "no K_AF");
      return;
    }
    conn_established(c);
    if (c->closing) return;
  }
  read_app(c);
}

static void key_result(ue_conn_t *c, int status, const m5_akma_key_t *key) {
  ue_listener_t *l = c->l;
  c->state = UE_CONN_HANDSHAKE;
  if (c->closing) return;
  if (status == M5_OK) status = m5_akma_ssl_set_key(c->ssl, key);
  if (status != M5_OK) {
    M5_LOGI(DOM, "%s: handshake refused: no K_AF for A-KID %s (AF %s): %s", c->peer, c->want->akid,
            c->want->fqdn, status == M5_ENOENT ? "unknown to the AAnF" : m5_strerror(status));
    c->key_failed = 1;
    if (c->wait_ch) {
      /* TLS 1.3: OpenSSL would only pause again; answer the ClientHello ourselves. */
      l->ops->alert(c, status == M5_ENOENT ? 115 /* unknown_psk_identity */
                                           : 80 /* internal_error */);
    } else {
      /* (D)TLS 1.2: without a key OpenSSL answers the held ClientKeyExchange with its own
       * unknown_psk_identity alert. */
      l->ops->resume(c);
    }
    ue_conn_close(c, "no K_AF");
    return;
  }
  l->ops->resume(c);
}

/* A bound refused the key fetch: end the handshake at once. TLS gets an internal_error
 * alert (the ClientHello or the held ClientKeyExchange is never answered otherwise); DTLS is
 * dropped without a word (its alert op does nothing), as RFC 6347 §4.1.2.7 allows. */
static void refuse(ue_conn_t *c, src_reason_t why) {
  ue_listener_t *l = c->l;
  ue_conn_refused(l, why, (const struct sockaddr *)&c->addr);
  c->key_failed = 1;
  c->wait_ch = 0;
  l->ops->alert(c, 80 /* internal_error */);
  c->fatal = 1;
  char msg[64];
  snprintf(msg, sizeof msg, "refused: %s", src_reason_name(why));
  ue_conn_close(c, msg);
}

/* The bucket's token comes back when the A-KID proved good, or when the AAnF failed (not the
 * source's doing); a "no context" answer keeps it. */
static void settle_token(ue_conn_t *c, int status) {
  if (!c->charged) return;
  c->charged = 0;
  if (status != M5_ENOENT)
    src_unknown_refund(c->l->o.limits, &c->src, m5_loop_now_ms(c->l->loop));
}

static void key_done(void *waiter, int status, const m5_akma_key_t *key) {
  ue_conn_t *c = waiter;
  c->waiting = 0;
  src_fetch_end(&c->src);
  settle_token(c, status);
  key_result(c, status, key);
}

void ue_conn_want_key(ue_conn_t *c) {
  ue_listener_t *l = c->l;
  m5_akma_key_t key;
  c->state = UE_CONN_WAIT_KEY;
  l->ops->flush(c);
  /* A cached answer costs the AAnF nothing; joining or starting a request is bounded per
   * source, and starting one for an A-KID nobody has proved takes a token. */
  int look = akma_keys_peek(l->o.keys, c->want);
  if (look != AKMA_KEYS_HIT) {
    src_reason_t why = src_fetch_check(l->o.limits, &c->src);
    if (why == SRC_OK && look == AKMA_KEYS_MISS) {
      why = src_unknown_take(l->o.limits, &c->src, m5_loop_now_ms(l->loop));
      c->charged = why == SRC_OK && l->o.limits && c->src.net;
    }
    if (why != SRC_OK) {
      refuse(c, why);
      return;
    }
  }
  int rc = akma_keys_get(l->o.keys, c->want, &key, key_done, c);
  if (rc == M5_EAGAIN) {
    c->waiting = 1;
    src_fetch_begin(&c->src);
    if (look == AKMA_KEYS_MISS) src_fetch_started(l->o.limits);
    M5_LOGD(DOM, "%s: waiting for the K_AF of A-KID %s", c->peer, c->want->akid);
    return;
  }
  if (rc == M5_EFULL) {
    if (c->charged) { /* no request was made */
      c->charged = 0;
      src_unknown_refund(l->o.limits, &c->src, m5_loop_now_ms(l->loop));
    }
    refuse(c, SRC_FETCHES);
    return;
  }
  settle_token(c, rc);
  key_result(c, rc, rc == M5_OK ? &key : NULL);
  OPENSSL_cleanse(&key, sizeof key);
}

/* ---- listener ---- */

void ue_listener_free(ue_listener_t *l) {
  if (!l) return;
  if (l->reap_timer) m5_loop_timer_cancel(l->loop, l->reap_timer);
  l->reap_timer = 0;
  reap(l);
  /* From here on, a hook closing another session must not queue it for a reaper that would
   * outlive the listener: every connection is torn down below anyway. */
  l->freeing = 1;
  for (ue_conn_t *c = l->conns; c; c = c->next)
    c->closing = 1;
  while (l->conns)
    conn_destroy(l->conns, "shutdown");
  if (l->fd >= 0) {
    m5_loop_del_fd(l->loop, l->fd);
    close(l->fd);
  }
  if (l->ops->free_listener) l->ops->free_listener(l);
  free(l);
}

size_t ue_listener_sessions(const ue_listener_t *l) {
  return l ? atomic_load_explicit(&l->n_sessions, memory_order_relaxed) : 0;
}

size_t ue_listener_handshakes(const ue_listener_t *l) {
  return l ? l->n_handshakes : 0;
}

uint64_t ue_listener_dropped(const ue_listener_t *l) {
  return l ? l->dropped : 0;
}

uint16_t ue_listener_port(const ue_listener_t *l) {
  return l ? l->port : 0;
}
