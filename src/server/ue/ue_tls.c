/* CoAP over TLS on TCP (RFC 8323; TLS 1.3, and 1.2 if the context allows it), keyed by AKMA
 * (architecture §3.1, §4).
 *
 * The socket is read into a buffer and handed to OpenSSL through a memory BIO, so that during
 * the handshake the bytes can be scanned before OpenSSL sees them: whole records only, and
 * when they carry a TLS 1.2 ClientKeyExchange whose K_AF is not known yet they stay in the
 * buffer until the AAnF answers. TLS 1.3 pauses in the ClientHello callback instead. Output
 * is queued with backpressure: above OUT_HIGH queued bytes the connection is not read, above
 * OUT_MAX it fails. ALPN: "coap" is selected, a list without it is refused with
 * no_application_protocol, no ALPN at all is fine (RFC 8323 §4.1).
 *
 * Once a TLS 1.3 handshake with TLS_AES_128_GCM_SHA256 is done, the SSL object is freed and
 * the records are protected here (ue_rec13.c, with the traffic secrets from the key log
 * callback): an idle session then holds its keys and sequence numbers, not OpenSSL's ~14 KiB.
 * Other suites and TLS 1.2 keep OpenSSL to the end. */
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
#include <openssl/tls1.h>

#include "core/buf.h"
#include "core/err.h"
#include "core/log.h"
#include "core/net.h"
#include "server/ue/ue_conn.h"
#include "server/ue/ue_rec13.h"
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
  ue_rec13_ctx_t rec;         /* this worker's record crypto (ue_rec13.h); rec.cx NULL: none */
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
  int rec_on;      /* TLS 1.3 records are ours, the SSL is freed (c->ssl NULL) */
  ue_rec13_t rec;  /* the traffic secrets from the key log, then the record keys */
} tls_conn_t;

static int conn_idx = -1; /* SSL ex_data: its tls_conn_t (keylog_cb) */

static const ue_rec13_ctx_t *conn_cx(tls_conn_t *tc) {
  return &((tls_listener_t *)tc->base.l)->rec;
}

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
  if (tc->rec_on) {
    int rc = M5_OK;
    while (rc == M5_OK && off < tc->plain.len) {
      size_t n = tc->plain.len - off;
      if (n > UE_REC13_PLAIN_MAX) n = UE_REC13_PLAIN_MAX;
      /* RFC 8446 §5.5: AES-GCM keys SHOULD be updated before about 2^24.5 full records; our
       * own KeyUpdate (update_not_requested) goes under the old key, the next record under
       * the new one. */
      if (tc->rec.tx.seq >= UE_REC13_TX_RECORDS_PER_KEY)
        rc = ue_rec13_key_update(conn_cx(tc), &tc->rec, &tc->out);
      if (rc != M5_OK) break;
      rc = ue_rec13_seal(conn_cx(tc), &tc->rec, UE_CT_APP, tc->plain.data + off, n, &tc->out);
      off += n;
    }
    m5_buf_reset(&tc->plain);
    if (rc != M5_OK) {
      m5_buf_reset(&tc->out);
      c->fatal = 1;
      ue_conn_close(c, rc == M5_ERANGE ? "output backlog too large" : "TLS write failed");
    }
    return;
  }
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
  if (tc->bios_fresh || !c->ssl || c->state != UE_CONN_OPEN || c->closing) return;
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
  if (tc->rec_on) { /* records are sealed into out: written from there */
    size_t before = tc->out.len;
    if (tc->plain.len) push_plain(tc);
    if (!before && tc->out.len) write_out(tc);
    update_events(tc);
    return;
  }
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

/* ---- our own TLS 1.3 records (ue_rec13.h) ---- */

/* Seals one record of type ct and puts it on the wire behind what is queued. */
static int rec_send(tls_conn_t *tc, uint8_t ct, const uint8_t *p, size_t n) {
  size_t before = tc->out.len;
  int rc = ue_rec13_seal(conn_cx(tc), &tc->rec, ct, p, n, &tc->out);
  if (rc == M5_OK && !before) write_out(tc);
  return rc;
}

/* A fatal alert, protected like every record after the handshake (RFC 8446 §6), and the
 * end of the connection: nothing is sent after it, no close_notify. */
static void rec_fatal(tls_conn_t *tc, int alert, const char *why) {
  ue_conn_t *c = &tc->base;
  char msg[64];
  snprintf(msg, sizeof msg, "TLS alert %d sent: %s", alert, why);
  M5_LOGD(DOM, "%s: %s", c->peer, msg);
  if (!c->closing) {
    if (tc->plain.len) push_plain(tc); /* what was answered before goes first */
    const uint8_t a[2] = {2 /* fatal */, (uint8_t)alert};
    if (!c->closing) (void)rec_send(tc, UE_CT_ALERT, a, sizeof a);
  }
  c->fatal = 1;
  ue_conn_close(c, msg);
}

/* conn_destroy: our close_notify (RFC 8446 §6.1) after whatever is still pending. */
static void rec_close_notify(ue_conn_t *c) {
  tls_conn_t *tc = (tls_conn_t *)c;
  if (!tc->rec_on || c->fatal) return;
  if (tc->plain.len) push_plain(tc);
  const uint8_t a[2] = {1 /* warning */, UE_ALERT_CLOSE_NOTIFY};
  size_t before = tc->out.len;
  if (ue_rec13_seal(conn_cx(tc), &tc->rec, UE_CT_ALERT, a, sizeof a, &tc->out) == M5_OK && !before)
    write_out(tc);
}

static void rec_alert_in(tls_conn_t *tc, const uint8_t *p, size_t n) {
  ue_conn_t *c = &tc->base;
  if (n != 2) {
    rec_fatal(tc, UE_ALERT_DECODE_ERROR, "alert of a wrong length");
    return;
  }
  if (p[1] == UE_ALERT_CLOSE_NOTIFY) {
    M5_LOGD(DOM, "%s: close_notify from the peer", c->peer);
    ue_conn_close(c, "peer closed"); /* ours follows at the close */
    return;
  }
  if (p[1] == UE_ALERT_USER_CANCELED) return; /* a close_notify follows (§6.1) */
  char msg[64];
  snprintf(msg, sizeof msg, "TLS alert %u from the peer", (unsigned)p[1]);
  M5_LOGD(DOM, "%s: %s", c->peer, msg);
  c->fatal = 1;
  ue_conn_close(c, msg);
}

static void rec_handshake_in(tls_conn_t *tc, const uint8_t *p, size_t n) {
  ue_conn_t *c = &tc->base;
  int respond = 0;
  int alert = ue_rec13_handshake(conn_cx(tc), &tc->rec, p, n, &respond);
  if (alert) {
    rec_fatal(tc, alert,
              alert == UE_ALERT_UNEXPECTED_MESSAGE ? "post-handshake message other than KeyUpdate"
                                                   : "malformed KeyUpdate");
    return;
  }
  if (!respond || tc->rec.hs_len) return;
  /* update_requested: our KeyUpdate before any more application data (§4.6.3); the CoAP
   * bytes already answered go first, under the old key. */
  if (tc->plain.len) push_plain(tc);
  if (c->closing) return;
  size_t before = tc->out.len;
  int rc = ue_rec13_key_update(conn_cx(tc), &tc->rec, &tc->out);
  if (rc != M5_OK) {
    m5_buf_reset(&tc->out);
    c->fatal = 1;
    ue_conn_close(c, rc == M5_ERANGE ? "output backlog too large" : "TLS write failed");
    return;
  }
  M5_LOGD(DOM, "%s: KeyUpdate answered", c->peer);
  if (!before) write_out(tc);
}

/* Handles the complete records at the front of p[0..n) (decrypted in place); returns the
 * bytes used. A record error sends its alert and closes. */
static size_t rec_input(tls_conn_t *tc, uint8_t *p, size_t n) {
  ue_conn_t *c = &tc->base;
  size_t off = 0;
  while (!c->closing && c->s && n - off >= UE_REC13_HDR) {
    size_t body = ((size_t)p[off + 3] << 8) | p[off + 4];
    if (body > UE_REC13_CIPHER_MAX) {
      rec_fatal(tc, UE_ALERT_RECORD_OVERFLOW, "record too long");
      return n;
    }
    if (UE_REC13_HDR + body > n - off) break;
    uint8_t ct = 0, *pt = NULL;
    size_t ptn = 0;
    int alert = ue_rec13_open(conn_cx(tc), &tc->rec, p + off, UE_REC13_HDR + body, &ct, &pt, &ptn);
    off += UE_REC13_HDR + body;
    if (alert) {
      rec_fatal(tc, alert,
                alert == UE_ALERT_BAD_RECORD_MAC ? "record does not authenticate"
                                                 : "malformed record");
      return n;
    }
    /* A handshake message split over records is never interleaved with others (§5.1). */
    if (tc->rec.hs_len && ct != UE_CT_HANDSHAKE) {
      rec_fatal(tc, UE_ALERT_UNEXPECTED_MESSAGE, "record inside a handshake message");
      return n;
    }
    if (ct == UE_CT_APP) {
      if (!ptn) continue;
      int rc = m5_coap_ep_input(c->s->ep, pt, ptn);
      if (rc != M5_OK) {
        M5_LOGD(DOM, "%s: CoAP stream input failed: %s", c->peer, m5_strerror(rc));
        ue_conn_close(c, "coap: bad stream");
      }
    } else if (ct == UE_CT_ALERT) {
      rec_alert_in(tc, pt, ptn);
    } else if (ct == UE_CT_HANDSHAKE) {
      rec_handshake_in(tc, pt, ptn);
    } else {
      rec_fatal(tc, UE_ALERT_UNEXPECTED_MESSAGE, "unknown content type");
      return n;
    }
  }
  return off;
}

/* The records held in tc->in, then the answers on the wire. */
static void rec_drive(tls_conn_t *tc) {
  size_t used = rec_input(tc, tc->in.data, tc->in.len);
  m5_buf_consume(&tc->in, used < tc->in.len ? used : tc->in.len);
  if (tc->base.closing) m5_buf_reset(&tc->in);
  tls_flush(&tc->base);
}

/* The handshake is done (ue_conn.c calls this before anything is sent on the session): with
 * TLS 1.3 and TLS_AES_128_GCM_SHA256, both traffic secrets captured and nothing left inside
 * OpenSSL, the bytes still in its read BIO go back in front of tc->in and the SSL is freed.
 * Otherwise the secrets are wiped and OpenSSL stays. */
static void tls_opened(ue_conn_t *c) {
  tls_conn_t *tc = (tls_conn_t *)c;
  SSL *ssl = c->ssl;
  const SSL_CIPHER *suite = SSL_get_current_cipher(ssl);
  size_t held = BIO_ctrl_pending(c->rbio);
  m5_buf_t in;
  m5_buf_init(&in, IN_MAX);
  int ok = SSL_version(ssl) == TLS1_3_VERSION && suite &&
           SSL_CIPHER_get_id(suite) == TLS1_3_CK_AES_128_GCM_SHA256 && !SSL_has_pending(ssl) &&
           SSL_get_num_tickets(ssl) == 0 && BIO_ctrl_pending(c->wbio) == 0 && conn_cx(tc)->cx &&
           ue_rec13_start(conn_cx(tc), &tc->rec) == M5_OK;
  if (ok && held) { /* whole records that came with the client's Finished */
    uint8_t *tmp = malloc(held);
    ok = tmp && BIO_read(c->rbio, tmp, (int)held) == (int)held &&
         m5_buf_append(&in, tmp, held) == M5_OK &&
         m5_buf_append(&in, tc->in.data, tc->in.len) == M5_OK;
    free(tmp);
    if (!ok) { /* the read BIO is drained: cannot go back to OpenSSL */
      m5_buf_free(&in);
      ue_rec13_wipe(&tc->rec);
      ue_conn_close(c, "out of memory");
      return;
    }
  }
  if (!ok) {
    ue_rec13_wipe(&tc->rec);
    return;
  }
  if (held) {
    m5_buf_free(&tc->in);
    tc->in = in;
  }
  SSL_free(ssl); /* wipes the AKMA state too */
  c->ssl = NULL;
  c->rbio = c->wbio = NULL;
  tc->rec_on = 1;
  M5_LOGD(DOM, "%s: TLS 1.3 records handled by m5s from here", c->peer);
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
      if (tc->rec_on)
        rec_drive(tc);
      else if (feed(tc, tc->in.len) == M5_OK)
        ue_conn_drive(c);
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
      if (tc->rec_on && tc->in.len == 0) { /* straight from buf; a partial record is kept */
        size_t used = rec_input(tc, buf, (size_t)r);
        if (!c->closing && used < (size_t)r &&
            m5_buf_append(&tc->in, buf + used, (size_t)r - used) != M5_OK) {
          ue_conn_close(c, "out of memory");
          return;
        }
        tls_flush(c);
      } else if (c->state == UE_CONN_OPEN && tc->in.len == 0) {
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
  ue_rec13_wipe(&tc->rec);
}

static void tls_free_listener(ue_listener_t *l) {
  tls_listener_t *tl = (tls_listener_t *)l;
  if (tl->accept_timer) m5_loop_timer_cancel(l->loop, tl->accept_timer);
  ue_rec13_ctx_free(&tl->rec);
}

static int tls_start_listener(ue_listener_t *l, char *err, size_t errlen);

static const ue_conn_ops_t tls_ops = {
    .name = "tls",
    .coap = M5_COAP_STREAM,
    .flush = tls_flush,
    .resume = tls_resume,
    .alert = tls_alert,
    .send = tls_send,
    .opened = tls_opened,
    .close_notify = rec_close_notify,
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
  if (conn_idx >= 0) SSL_set_ex_data(ssl, conn_idx, tc); /* for keylog_cb */
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

/* The ALPN and key log callbacks belong to the context, which the workers share: the first
 * listener sets them, before any handshake on that context can read them; the others find it
 * marked. */
static pthread_mutex_t alpn_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_once_t alpn_once = PTHREAD_ONCE_INIT;
static int alpn_idx = -1;

static void alpn_idx_init(void) {
  alpn_idx = SSL_CTX_get_ex_new_index(0, NULL, NULL, NULL, NULL);
  conn_idx = SSL_get_ex_new_index(0, NULL, NULL, NULL, NULL);
}

/* The traffic secrets of our own connections (ue_rec13.h); OpenSSL wipes the line after. */
static void keylog_cb(const SSL *ssl, const char *line) {
  tls_conn_t *tc = conn_idx >= 0 ? SSL_get_ex_data(ssl, conn_idx) : NULL;
  if (tc) ue_rec13_keylog(&tc->rec, line);
}

static int install_alpn(SSL_CTX *ctx) {
  static char mark;
  pthread_once(&alpn_once, alpn_idx_init);
  if (alpn_idx < 0) return M5_ENOMEM;
  int rc = M5_OK;
  pthread_mutex_lock(&alpn_lock);
  if (SSL_CTX_get_ex_data(ctx, alpn_idx) != &mark) {
    SSL_CTX_set_alpn_select_cb(ctx, alpn_cb, NULL);
    SSL_CTX_set_keylog_callback(ctx, keylog_cb);
    if (!SSL_CTX_set_ex_data(ctx, alpn_idx, &mark)) rc = M5_ENOMEM;
  }
  pthread_mutex_unlock(&alpn_lock);
  return rc;
}

static int tls_start_listener(ue_listener_t *l, char *err, size_t errlen) {
  tls_listener_t *tl = (tls_listener_t *)l;
  /* Without it (no AES-128-GCM in this OpenSSL) sessions keep their SSL (tls_opened). */
  if (ue_rec13_ctx_init(&tl->rec) != M5_OK)
    M5_LOGW(DOM, "%s: no AES-128-GCM / HMAC: TLS sessions keep OpenSSL's record layer", l->name);
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
