/* CoAP over DTLS 1.2 on UDP (RFC 7252 §9, RFC 6347), keyed by AKMA (architecture §3.1, §4).
 *
 * One socket per listener; datagrams are demultiplexed by source address to per-peer DTLS
 * state on memory BIOs. A peer gets state only after it has proved its address with a
 * HelloVerifyRequest cookie (DTLSv1_listen on one shared stateless SSL), and at most
 * max_handshakes of them may be half-open at once, so a ClientHello flood, spoofed or not,
 * costs bounded memory. Before any handshake datagram reaches OpenSSL it is scanned for the
 * ClientKeyExchange; when K_AF is not known yet that datagram is held (with at most a few
 * that follow it in the client's flight; retransmissions are dropped) until the AAnF answers.
 * Handshake retransmission uses OpenSSL's DTLS timer on the loop.
 *
 * A ClientHello with a valid cookie from the address of an open association (the client
 * restarted, or a NAT gave its port to someone else; RFC 6347 §4.2.8) starts a new handshake
 * beside the association, which goes on: only when the new handshake completes (its Finished
 * verified with a K_AF) does the old association end. Until then the address's datagrams are
 * split: those with an epoch-0 record or a handshake record go to the new handshake, the rest
 * (application data and alerts under the old keys) to the old association. A cookie is
 * therefore no licence to tear down a session; and the cookie key rotates on a timer
 * (m5_akma_ctx_rotate_cookie_key), so a cookie seen once does not stay valid.
 *
 * Once a handshake with one of the suites ue_dtls12rec.c handles is done, the epoch-1 keys are
 * taken from OpenSSL and the client's application data and alerts are read here; OpenSSL keeps
 * the rest (a retransmitted flight of the client's, answered with ours) and writes what we
 * send, until the first application-data record from the client authenticates: the client
 * has our last flight then (RFC 6347 §4.2.4), the SSL object (40+ KiB) is freed and the
 * session's records are all ours, with the same keys (the device sees nothing). Sessions of
 * other suites keep OpenSSL to the end. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/err.h>

#include "core/err.h"
#include "core/hmap.h"
#include "core/log.h"
#include "server/ue/ue_conn.h"
#include "server/ue/ue_dtls12rec.h"
#include "tls/tls.h"

#define DOM "ue"
/* Datagrams we send stay within this (no path-MTU discovery: 1200 fits loopback, IPv6's
 * 1280 minimum and every real link). */
#define DTLS_MTU 1200
#define DTLS_REC_HDR 13
#define RX_MAX (16384 + 2048 + DTLS_REC_HDR) /* the largest DTLS 1.2 record */
#define RX_BATCH 64                          /* datagrams per wake-up */
#define MAX_HELD 4 /* the ClientKeyExchange and what follows it in the client's flight */
#define ADDR_KEY_MAX 19

typedef struct {
  ue_listener_t base;
  m5_hmap_t *peers; /* address key -> dtls_conn_t */
  SSL *listen_ssl;  /* stateless cookie exchange; becomes a peer's SSL once it verifies */
  BIO_ADDR *listen_peer;
  ue_d12_ctx_t rec; /* this worker's record crypto (ue_dtls12rec.h); rec.prf NULL: none */
  uint8_t rx[RX_MAX];
  uint8_t tx[UE_D12_REC_MAX]; /* the record being sealed */
} dtls_listener_t;

typedef struct dtls_conn dtls_conn_t;

struct dtls_conn {
  ue_conn_t base;
  /* An open association with a new handshake from its address (succ), and that handshake's
   * way back (pred). The peers map points at the open one until the new one completes. */
  dtls_conn_t *succ, *pred;
  m5_timer_id_t rt_timer;
  uint8_t *held[MAX_HELD];
  size_t held_len[MAX_HELD];
  unsigned n_held;
  uint8_t rec_on;      /* REC_* */
  uint8_t warn_alerts; /* warning alerts in a row (RFC 5246 §7.2 leaves the limit to us) */
  ue_d12_t rec;        /* the records' keys, sequence numbers and window (REC_PENDING on) */
};

/* Who does a session's records: OpenSSL; ue_dtls12rec reads application data and alerts while
 * OpenSSL keeps the handshake's state and writes (the client may not have our last flight);
 * ue_dtls12rec alone, the SSL freed. */
enum { REC_OPENSSL, REC_PENDING, REC_OURS };
#define MAX_WARN_ALERTS 5

static size_t addr_key(const struct sockaddr *sa, uint8_t out[ADDR_KEY_MAX]) {
  if (sa->sa_family == AF_INET6) {
    const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)sa;
    out[0] = 6;
    memcpy(out + 1, &a->sin6_port, 2);
    memcpy(out + 3, &a->sin6_addr, 16);
    return 19;
  }
  const struct sockaddr_in *a = (const struct sockaddr_in *)sa;
  out[0] = 4;
  memcpy(out + 1, &a->sin_port, 2);
  memcpy(out + 3, &a->sin_addr, 4);
  return 7;
}

/* ---- output ---- */

static void send_dgram(ue_conn_t *c, const uint8_t *p, size_t n) {
  ssize_t r = sendto(c->l->fd, p, n, 0, (const struct sockaddr *)&c->addr, c->addrlen);
  if (r < 0) M5_LOGD(DOM, "%s: datagram of %zu bytes not sent: %s", c->peer, n, strerror(errno));
}

/* A DTLS memory BIO is a byte stream: split it into records and pack whole records into
 * datagrams of at most DTLS_MTU bytes (RFC 6347 §4.1.1 allows several per datagram). */
static void send_records(ue_conn_t *c, const uint8_t *p, size_t n) {
  size_t start = 0, off = 0;
  while (n - off >= DTLS_REC_HDR) {
    size_t rl = DTLS_REC_HDR + (((size_t)p[off + 11] << 8) | p[off + 12]);
    if (rl > n - off) break;
    if (off > start && off + rl - start > DTLS_MTU) {
      send_dgram(c, p + start, off - start);
      start = off;
    }
    off += rl;
  }
  if (n > start) send_dgram(c, p + start, n - start);
}

static void drain_wbio(ue_conn_t *c, BIO *wbio) {
  char *data = NULL;
  long n = BIO_get_mem_data(wbio, &data);
  if (n > 0 && data) send_records(c, (const uint8_t *)data, (size_t)n);
  if (n > 0) (void)BIO_reset(wbio);
}

static void rt_cb(m5_loop_t *loop, void *arg);

static void rt_arm(dtls_conn_t *dc) {
  ue_conn_t *c = &dc->base;
  if (dc->rt_timer) m5_loop_timer_cancel(c->l->loop, dc->rt_timer);
  dc->rt_timer = 0;
  /* While we wait for K_AF the client has our flight (it sent its ClientKeyExchange): it
   * retransmits on its own timer, and our retransmissions would only make it do so sooner. */
  if (c->closing || c->shut || c->state != UE_CONN_HANDSHAKE) return;
  struct timeval tv;
  if (DTLSv1_get_timeout(c->ssl, &tv) <= 0) return;
  uint64_t ms = (uint64_t)tv.tv_sec * 1000 + (uint64_t)tv.tv_usec / 1000;
  dc->rt_timer = m5_loop_timer_add(c->l->loop, ms, rt_cb, dc);
}

static void dtls_flush(ue_conn_t *c) {
  dtls_conn_t *dc = (dtls_conn_t *)c;
  if (!c->ssl) return; /* our records go out as they are sealed */
  /* Where OpenSSL's epoch-1 sequence numbers are, for ours to go on from (its Finished, its
   * retransmissions, what it sends before the switch). */
  if (c->state != UE_CONN_OPEN || dc->rec_on == REC_PENDING) {
    char *data = NULL;
    long n = BIO_get_mem_data(c->wbio, &data);
    if (n > 0 && data) ue_d12_saw_tx(&dc->rec, (const uint8_t *)data, (size_t)n);
  }
  drain_wbio(c, c->wbio);
  rt_arm(dc);
}

static void rt_cb(m5_loop_t *loop, void *arg) {
  (void)loop;
  dtls_conn_t *dc = arg;
  ue_conn_t *c = &dc->base;
  dc->rt_timer = 0;
  if (ue_conn_bufs(c) != M5_OK) {
    ue_conn_close(c, "out of memory");
    return;
  }
  ERR_clear_error();
  long r = DTLSv1_handle_timeout(c->ssl);
  if (r < 0) {
    char e[256];
    M5_LOGD(DOM, "%s: DTLS handshake retransmissions exhausted: %s", c->peer,
            m5_tls_last_error(e, sizeof e));
    c->fatal = 1;
    ue_conn_close(c, "handshake timeout");
    return;
  }
  dtls_flush(c);
}

/* Seals one record of ours and sends it in a datagram of its own. */
static int rec_send(dtls_conn_t *dc, uint8_t ct, const uint8_t *p, size_t n) {
  ue_conn_t *c = &dc->base;
  dtls_listener_t *dl = (dtls_listener_t *)c->l;
  size_t len = 0;
  int rc = ue_d12_seal(&dl->rec, &dc->rec, ct, p, n, dl->tx, &len);
  if (rc == M5_OK) send_dgram(c, dl->tx, len);
  return rc;
}

static int dtls_send(ue_conn_t *c, const uint8_t *p, size_t n) {
  if (n == 0 || n > 16384) return M5_ERANGE;
  dtls_conn_t *dc = (dtls_conn_t *)c;
  if (dc->rec_on == REC_OURS) {
    int rc = rec_send(dc, UE_D12_APP, p, n);
    if (rc == M5_EFULL) { /* 2^48 records sent: the association ends (RFC 6347 §4.1) */
      c->fatal = 1;
      ue_conn_close(c, "DTLS sequence numbers exhausted");
    }
    return rc == M5_OK ? M5_OK : M5_EIO;
  }
  if (ue_conn_bufs(c) != M5_OK) return M5_ENOMEM;
  ERR_clear_error();
  int r = SSL_write(c->ssl, p, (int)n);
  dtls_flush(c);
  ue_conn_bufs_release(c);
  if (r <= 0) {
    char e[256];
    M5_LOGD(DOM, "%s: DTLS write failed: %s", c->peer, m5_tls_last_error(e, sizeof e));
    return M5_EIO;
  }
  return M5_OK;
}

static void dtls_alert(ue_conn_t *c, uint8_t alert) {
  (void)c;
  (void)alert; /* DTLS is 1.2 only: the key wait never pauses in the ClientHello callback */
}

/* ---- input ---- */

static void feed(ue_conn_t *c, const uint8_t *p, size_t n) {
  if (BIO_write(c->rbio, p, (int)n) != (int)n) {
    ue_conn_close(c, "out of memory");
    return;
  }
  ue_conn_drive(c);
}

static int hold(dtls_conn_t *dc, const uint8_t *p, size_t n) {
  if (dc->n_held >= MAX_HELD) return M5_EFULL;
  uint8_t *copy = malloc(n);
  if (!copy) return M5_ENOMEM;
  memcpy(copy, p, n);
  dc->held[dc->n_held] = copy;
  dc->held_len[dc->n_held++] = n;
  return M5_OK;
}

/* ---- our own DTLS 1.2 records (ue_dtls12rec.h) ---- */

/* A fatal alert of ours (once the records are ours; before, OpenSSL's state is the one that
 * knows the sequence numbers) and the end of the session, without close_notify. */
static void rec_fatal(dtls_conn_t *dc, uint8_t alert, const char *why) {
  ue_conn_t *c = &dc->base;
  char msg[80];
  snprintf(msg, sizeof msg, "DTLS alert %u sent: %s", (unsigned)alert, why);
  M5_LOGD(DOM, "%s: %s", c->peer, msg);
  if (dc->rec_on == REC_OURS && !c->closing) {
    const uint8_t a[2] = {2 /* fatal */, alert};
    (void)rec_send(dc, UE_D12_ALERT, a, sizeof a);
  }
  c->fatal = 1;
  ue_conn_close(c, msg);
}

/* conn_destroy: our close_notify, once the records are ours. */
static void dtls_close_notify(ue_conn_t *c) {
  dtls_conn_t *dc = (dtls_conn_t *)c;
  if (dc->rec_on != REC_OURS || c->fatal) return;
  const uint8_t a[2] = {1 /* warning */, 0 /* close_notify */};
  (void)rec_send(dc, UE_D12_ALERT, a, sizeof a);
}

/* The client's first application data that authenticates: it has our last flight (RFC 6347
 * §4.2.4), OpenSSL's retransmission state is no longer needed. Everything it wrote has been
 * sent (dtls_flush after every SSL call), so our sequence numbers go on after its. */
static void rec_switch(dtls_conn_t *dc) {
  ue_conn_t *c = &dc->base;
  SSL_free(c->ssl); /* wipes the AKMA state and OpenSSL's copy of the keys */
  c->ssl = NULL;
  c->rbio = c->wbio = NULL;
  c->bufs_off = 0;
  dc->rec_on = REC_OURS;
  M5_LOGD(DOM, "%s: DTLS records handled by m5s from here", c->peer);
}

static void rec_alert_in(dtls_conn_t *dc, const uint8_t *p, size_t n) {
  ue_conn_t *c = &dc->base;
  if (n != 2) {
    rec_fatal(dc, 50 /* decode_error */, "alert of a wrong length");
    return;
  }
  if (p[0] == 1 && p[1] == 0) {
    M5_LOGD(DOM, "%s: close_notify from the peer", c->peer);
    ue_conn_close(c, "peer closed"); /* ours follows at the close */
    return;
  }
  if (p[0] == 1) { /* another warning: ignored, as OpenSSL does, a few in a row at most */
    if (++dc->warn_alerts >= MAX_WARN_ALERTS)
      rec_fatal(dc, 10 /* unexpected_message */, "too many warning alerts");
    return;
  }
  if (p[0] != 2) {
    rec_fatal(dc, 47 /* illegal_parameter */, "unknown alert level");
    return;
  }
  char msg[64];
  snprintf(msg, sizeof msg, "DTLS alert %u from the peer", (unsigned)p[1]);
  M5_LOGD(DOM, "%s: %s", c->peer, msg);
  c->fatal = 1;
  ue_conn_close(c, msg);
}

/* A handshake message at epoch 1 once the records are ours. A Finished is the client's last
 * flight again, late (it has ours: it sent application data): nothing to answer. A
 * ClientHello asks for renegotiation, which m5s does not do: a no_renegotiation warning, and
 * the session goes on, as OpenSSL answers it (SSL_OP_NO_RENEGOTIATION). Anything else is out
 * of place. Fragments are judged by their message type too. */
static void rec_handshake_in(dtls_conn_t *dc, const uint8_t *p, size_t n) {
  ue_conn_t *c = &dc->base;
  if (n < 12) { /* not even a message header: OpenSSL drops it */
    M5_LOGD(DOM, "%s: handshake fragment of %zu bytes dropped", c->peer, n);
    return;
  }
  if (p[0] == 20) {
    M5_LOGD(DOM, "%s: the client's Finished again, after its application data: dropped", c->peer);
    return;
  }
  if (p[0] == 1) {
    M5_LOGD(DOM, "%s: renegotiation refused (no_renegotiation)", c->peer);
    const uint8_t a[2] = {1 /* warning */, 100 /* no_renegotiation */};
    if (rec_send(dc, UE_D12_ALERT, a, sizeof a) == M5_EFULL) {
      c->fatal = 1;
      ue_conn_close(c, "DTLS sequence numbers exhausted");
    }
    return;
  }
  rec_fatal(dc, 10 /* unexpected_message */, "handshake message after the handshake");
}

static void rec_record(dtls_conn_t *dc, uint8_t ct, uint8_t *p, size_t n) {
  ue_conn_t *c = &dc->base;
  switch (ct) {
  case UE_D12_APP:
    if (dc->rec_on == REC_PENDING) rec_switch(dc);
    dc->warn_alerts = 0;
    if (n > UE_D12_PLAIN_MAX) {
      rec_fatal(dc, 22 /* record_overflow */, "record too long");
      return;
    }
    if (n && c->s) (void)m5_coap_ep_input(c->s->ep, p, n); /* errors: the endpoint's hooks */
    return;
  case UE_D12_ALERT:
    rec_alert_in(dc, p, n);
    return;
  case UE_D12_HANDSHAKE:
    rec_handshake_in(dc, p, n);
    return;
  case UE_D12_CCS:
    return; /* a late ChangeCipherSpec: dropped (OpenSSL does too) */
  default:
    rec_fatal(dc, 10 /* unexpected_message */, "unknown content type");
  }
}

/* A datagram of an open session whose records are (partly) ours: each record in turn. Before
 * the switch, what is not epoch-1 application data or an alert goes to OpenSSL (the client's
 * last flight again, answered with our own); after it, records of another epoch are dropped,
 * as OpenSSL drops them (a new ClientHello never gets here: udp_cb). Records that do not
 * authenticate, replays and records older than the window are dropped without a word (RFC
 * 6347 §4.1.2.7), so a forged datagram changes nothing. */
static void rec_input(dtls_conn_t *dc, uint8_t *p, size_t n) {
  ue_conn_t *c = &dc->base;
  dtls_listener_t *dl = (dtls_listener_t *)c->l;
  int to_ssl = 0;
  for (size_t off = 0, rl; !c->closing && (rl = ue_d12_record_len(p + off, n - off)) != 0;
       off += rl) {
    uint8_t *rec = p + off, *pt = NULL;
    size_t ptn = 0;
    int epoch1 = rec[3] == 0 && rec[4] == 1;
    if (dc->rec_on == REC_PENDING &&
        (!epoch1 || (rec[0] != UE_D12_APP && rec[0] != UE_D12_ALERT))) {
      if (BIO_write(c->rbio, rec, (int)rl) != (int)rl) {
        ue_conn_close(c, "out of memory");
        return;
      }
      to_ssl = 1;
      continue;
    }
    if (!epoch1 || ue_d12_open(&dl->rec, &dc->rec, rec, rl, &pt, &ptn) != UE_D12_OK) {
      M5_LOGD(DOM, "%s: DTLS record dropped (epoch %u, not authentic, replayed or too old)",
              c->peer, (unsigned)(rec[3] << 8 | rec[4]));
      continue;
    }
    rec_record(dc, rec[0], pt, ptn);
  }
  if (to_ssl && c->ssl && !c->closing) {
    ue_conn_drive(c);
    ue_conn_bufs_release(c);
  }
}

/* The handshake is done (ue_conn.c calls this before anything is sent on the session): with
 * one of ue_dtls12rec's suites and nothing left inside OpenSSL, the keys are taken and the
 * client's records are read here from now on (REC_PENDING). Otherwise OpenSSL stays. */
static void rec_begin(dtls_conn_t *dc) {
  ue_conn_t *c = &dc->base;
  dtls_listener_t *dl = (dtls_listener_t *)c->l;
  if (dl->rec.prf && !SSL_has_pending(c->ssl) && BIO_ctrl_pending(c->rbio) == 0 &&
      ue_d12_start(&dl->rec, &dc->rec, c->ssl) == M5_OK) {
    dc->rec_on = REC_PENDING;
    return;
  }
  ue_d12_wipe(&dc->rec);
}

static void conn_input(dtls_conn_t *dc, uint8_t *p, size_t n) {
  ue_conn_t *c = &dc->base;
  if (c->closing) return;
  ue_conn_touch(c);
  if (c->state == UE_CONN_OPEN && dc->rec_on != REC_OPENSSL) {
    rec_input(dc, p, n);
    return;
  }
  if (c->state == UE_CONN_WAIT_KEY) {
    m5_akma_want_t w;
    /* A second ClientKeyExchange is the client retransmitting its flight: drop it. */
    if (m5_akma_scan_input(c->ssl, p, n, &w) != 1 && hold(dc, p, n) == M5_OK) return;
    M5_LOGD(DOM, "%s: datagram dropped while waiting for the AAnF", c->peer);
    return;
  }
  if (c->state == UE_CONN_HANDSHAKE && !c->key_failed) {
    int rc = m5_akma_scan_input(c->ssl, p, n, c->want);
    if (rc == 1) {
      if (hold(dc, p, n) != M5_OK) {
        ue_conn_close(c, "out of memory");
        return;
      }
      ue_conn_want_key(c);
      return;
    }
  }
  feed(c, p, n);
  ue_conn_bufs_release(c); /* an idle association keeps no record buffers */
}

static void dtls_resume(ue_conn_t *c) {
  dtls_conn_t *dc = (dtls_conn_t *)c;
  unsigned n = dc->n_held;
  uint8_t *held[MAX_HELD];
  size_t len[MAX_HELD];
  memcpy(held, dc->held, sizeof held);
  memcpy(len, dc->held_len, sizeof len);
  dc->n_held = 0;
  for (unsigned i = 0; i < n; i++) {
    /* Without a key only the ClientKeyExchange goes in: OpenSSL answers it with an alert. */
    if (!c->closing && (i == 0 || !c->key_failed)) {
      if (i == 0)
        feed(c, held[i], len[i]);
      else
        conn_input(dc, held[i], len[i]);
    }
    free(held[i]);
  }
}

static void dtls_release(ue_conn_t *c) {
  dtls_conn_t *dc = (dtls_conn_t *)c;
  dtls_listener_t *dl = (dtls_listener_t *)c->l;
  if (dc->rt_timer) m5_loop_timer_cancel(c->l->loop, dc->rt_timer);
  dc->rt_timer = 0;
  ue_d12_forget(&dl->rec, &dc->rec); /* its key leaves the worker's cipher context */
  for (unsigned i = 0; i < dc->n_held; i++)
    free(dc->held[i]);
  dc->n_held = 0;
  uint8_t key[ADDR_KEY_MAX];
  size_t kl = addr_key((struct sockaddr *)&c->addr, key);
  if (dc->pred) { /* a new handshake that did not complete: the association stays */
    dc->pred->succ = NULL;
    dc->pred = NULL;
  }
  if (dc->succ) { /* the association ends first: its address goes to the new handshake */
    dtls_conn_t *succ = dc->succ;
    dc->succ = NULL;
    succ->pred = NULL;
    if (m5_hmap_get(dl->peers, key, kl) == dc &&
        m5_hmap_put(dl->peers, key, kl, succ, NULL) != M5_OK)
      m5_hmap_del(dl->peers, key, kl);
    ue_d12_wipe(&dc->rec);
    return;
  }
  /* The address may already belong to the peer's new association. */
  if (m5_hmap_get(dl->peers, key, kl) == dc) m5_hmap_del(dl->peers, key, kl);
  ue_d12_wipe(&dc->rec);
}

/* The new handshake beside an open association completed: it takes the address, and the old
 * association ends silently (RFC 6347 §4.2.8: the client has shown it holds a K_AF). */
static void dtls_opened(ue_conn_t *c) {
  dtls_conn_t *dc = (dtls_conn_t *)c;
  dtls_listener_t *dl = (dtls_listener_t *)c->l;
  rec_begin(dc);
  dtls_conn_t *old = dc->pred;
  if (!old) return;
  dc->pred = NULL;
  old->succ = NULL;
  uint8_t key[ADDR_KEY_MAX];
  size_t kl = addr_key((struct sockaddr *)&c->addr, key);
  if (m5_hmap_put(dl->peers, key, kl, dc, NULL) != M5_OK) {
    ue_conn_close(c, "out of memory");
    return;
  }
  M5_LOGD(DOM, "%s: the new DTLS association replaces the open one", c->peer);
  old->base.no_notify = 1;
  ue_conn_close(&old->base, "peer started a new association");
}

static void dtls_free_listener(ue_listener_t *l) {
  dtls_listener_t *dl = (dtls_listener_t *)l;
  m5_hmap_free(dl->peers, NULL);
  SSL_free(dl->listen_ssl);
  BIO_ADDR_free(dl->listen_peer);
  ue_d12_ctx_free(&dl->rec);
}

static int dtls_start_listener(ue_listener_t *l, char *err, size_t errlen);

static const ue_conn_ops_t dtls_ops = {
    .name = "dtls",
    .coap = M5_COAP_DGRAM,
    .flush = dtls_flush,
    .resume = dtls_resume,
    .alert = dtls_alert,
    .send = dtls_send,
    .release = dtls_release,
    .opened = dtls_opened,
    .close_notify = dtls_close_notify,
    .start_listener = dtls_start_listener,
    .free_listener = dtls_free_listener,
};

/* ---- new peers ---- */

static int looks_like_client_hello(const uint8_t *p, size_t n) {
  /* handshake record, DTLS major version, epoch 0, handshake type client_hello */
  return n >= DTLS_REC_HDR + 12 && p[0] == 22 && p[1] == 0xfe && p[3] == 0 && p[4] == 0 &&
         p[DTLS_REC_HDR] == 1;
}

static SSL *listen_ssl(dtls_listener_t *dl) {
  if (dl->listen_ssl) return dl->listen_ssl;
  BIO *r, *w;
  SSL *ssl = ue_ssl_new(dl->base.o.ctx, &r, &w);
  if (!ssl) return NULL;
  /* OpenSSL keeps these across the SSL_clear in DTLSv1_listen only with NO_QUERY_MTU. */
  SSL_set_options(ssl, SSL_OP_NO_QUERY_MTU);
  DTLS_set_link_mtu(ssl, DTLS_MTU);
  dl->listen_ssl = ssl;
  return ssl;
}

static void new_peer(dtls_listener_t *dl, dtls_conn_t *old, const struct sockaddr *sa, socklen_t sl,
                     const uint8_t *p, size_t n) {
  ue_listener_t *l = &dl->base;
  char peer[64];
  if (!looks_like_client_hello(p, n)) {
    if (m5_log_enabled(M5_LOG_DEBUG, DOM)) {
      ue_addr_str(sa, peer, sizeof peer);
      M5_LOGD(DOM, "%s: %zu-byte datagram from an unknown peer is not a ClientHello: dropped", peer,
              n);
    }
    return;
  }
  if (old && old->succ) {
    /* One new handshake per association at a time: its retransmissions reach it in udp_cb. */
    return;
  }
  if (l->n_handshakes >= l->o.max_handshakes) {
    ue_conn_refused(l, SRC_HANDSHAKES, sa);
    if (m5_log_enabled(M5_LOG_DEBUG, DOM)) {
      ue_addr_str(sa, peer, sizeof peer);
      M5_LOGD(DOM, "%s: ClientHello dropped: %zu handshakes in progress (max_handshakes)", peer,
              l->o.max_handshakes);
    }
    return;
  }
  /* Per-source bounds before any work: a peer over them is dropped without an answer. */
  src_ref_t src;
  if (ue_conn_admit(l, sa, &src) != SRC_OK) return;
  SSL *ssl = listen_ssl(dl);
  if (!ssl) {
    src_unref(l->o.limits, &src);
    M5_LOGW(DOM, "%s: cannot create the DTLS listening state: out of memory", l->name);
    return;
  }
  BIO *rbio = SSL_get_rbio(ssl), *wbio = SSL_get_wbio(ssl);
  (void)BIO_reset(rbio);
  (void)BIO_reset(wbio);
  if (m5_akma_ssl_set_peer(ssl, sa, sl) != M5_OK || BIO_write(rbio, p, (int)n) != (int)n) {
    src_unref(l->o.limits, &src);
    return;
  }
  ERR_clear_error();
  int r = DTLSv1_listen(ssl, dl->listen_peer);
  /* The HelloVerifyRequest, if any, goes straight back: no state is kept for this peer. */
  ue_conn_t tmp = {.l = l, .addrlen = sl};
  memcpy(&tmp.addr, sa, sl < sizeof tmp.addr ? sl : sizeof tmp.addr);
  ue_addr_str(sa, tmp.peer, sizeof tmp.peer);
  drain_wbio(&tmp, wbio);
  (void)BIO_reset(rbio);
  if (r <= 0) {
    src_unref(l->o.limits, &src);
    if (r < 0) {
      char e[256];
      M5_LOGD(DOM, "%s: ClientHello rejected: %s", tmp.peer, m5_tls_last_error(e, sizeof e));
      SSL_free(dl->listen_ssl);
      dl->listen_ssl = NULL;
    }
    return;
  }
  /* The cookie is valid: the peer can receive at its address. The SSL becomes its own. */
  dl->listen_ssl = NULL;
  uint8_t key[ADDR_KEY_MAX];
  size_t kl = addr_key(sa, key);
  dtls_conn_t *dc = (dtls_conn_t *)ue_conn_new(l, sizeof *dc, ssl, sa, sl, &src);
  if (!dc) {
    M5_LOGW(DOM, "%s: cannot accept a DTLS handshake: out of memory", tmp.peer);
    return;
  }
  if (old) {
    /* RFC 6347 §4.2.8: a new handshake from the address of an open association (the client
     * restarted, or a NAT reused the port). It runs beside the association, which ends only
     * if it completes (dtls_opened). */
    M5_LOGD(DOM, "%s: new DTLS handshake beside the open association", tmp.peer);
    old->succ = dc;
    dc->pred = old;
  } else if (m5_hmap_put(dl->peers, key, kl, dc, NULL) != M5_OK) {
    ue_conn_close(&dc->base, "out of memory");
    return;
  }
  /* DTLSv1_listen consumed the ClientHello from the memory BIO (it cannot peek): again. */
  feed(&dc->base, p, n);
}

/* Beside an open association: whether a datagram belongs to the new handshake, i.e. has a
 * record of epoch 0 (ClientHello, ClientKeyExchange, ChangeCipherSpec, a plaintext alert) or
 * a handshake record (the Finished, epoch 1; the open association does no renegotiation). */
static int for_new_handshake(const uint8_t *p, size_t n) {
  for (size_t i = 0; n - i >= DTLS_REC_HDR;) {
    const uint8_t *rec = p + i;
    if (rec[0] == 22 || (rec[3] == 0 && rec[4] == 0)) return 1;
    i += DTLS_REC_HDR + (((size_t)rec[11] << 8) | rec[12]);
    if (i > n) break;
  }
  return 0;
}

static void udp_cb(m5_loop_t *loop, int fd, uint32_t events, void *arg) {
  (void)loop;
  (void)events;
  dtls_listener_t *dl = arg;
  for (int i = 0; i < RX_BATCH; i++) {
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    ssize_t n = recvfrom(fd, dl->rx, sizeof dl->rx, MSG_TRUNC, (struct sockaddr *)&ss, &sl);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno != EAGAIN && errno != EWOULDBLOCK)
        M5_LOGD(DOM, "%s: recvfrom: %s", dl->base.name, strerror(errno));
      return;
    }
    if ((size_t)n > sizeof dl->rx || n == 0 ||
        (ss.ss_family != AF_INET && ss.ss_family != AF_INET6))
      continue; /* truncated, empty or not IP: nothing DTLS */
    uint8_t key[ADDR_KEY_MAX];
    size_t kl = addr_key((struct sockaddr *)&ss, key);
    dtls_conn_t *dc = m5_hmap_get(dl->peers, key, kl);
    if (dc && dc->succ && (dc->base.closing || for_new_handshake(dl->rx, (size_t)n))) {
      conn_input(dc->succ, dl->rx, (size_t)n);
      continue;
    }
    if (dc && dc->base.closing) continue;
    if (!dc || (dc->base.state == UE_CONN_OPEN && looks_like_client_hello(dl->rx, (size_t)n)))
      new_peer(dl, dc, (struct sockaddr *)&ss, sl, dl->rx, (size_t)n);
    else
      conn_input(dc, dl->rx, (size_t)n);
  }
}

static int dtls_start_listener(ue_listener_t *l, char *err, size_t errlen) {
  dtls_listener_t *dl = (dtls_listener_t *)l;
  /* Without it (no such ciphers in this OpenSSL) sessions keep their SSL (rec_begin). */
  if (ue_d12_ctx_init(&dl->rec) != M5_OK)
    M5_LOGW(DOM,
            "%s: no AES-128-GCM / AES-128-CCM / ChaCha20-Poly1305 / TLS1-PRF: DTLS sessions "
            "keep OpenSSL's record layer",
            l->name);
  dl->peers = m5_hmap_new();
  dl->listen_peer = BIO_ADDR_new();
  if (!dl->peers || !dl->listen_peer || !listen_ssl(dl)) {
    snprintf(err, errlen, "MSGin5G-1 DTLS listener %s: out of memory", l->name);
    return M5_ENOMEM;
  }
  if (m5_loop_add_fd(l->loop, l->fd, M5_EV_READ, udp_cb, dl) != M5_OK) {
    snprintf(err, errlen, "MSGin5G-1 DTLS listener %s: cannot watch the socket", l->name);
    return M5_EIO;
  }
  return M5_OK;
}

ue_listener_t *ue_dtls_listener_new(m5_loop_t *loop, const ue_listener_opts_t *opts, char *err,
                                    size_t errlen) {
  return ue_listener_new(loop, opts, &dtls_ops, sizeof(dtls_listener_t), err, errlen);
}
