/* The SMS gateway's SMPP 3.4 session with the SMSC (SMPP 3.4 cl. 2.2-2.9, 4.1, 4.11, 4.7.1):
 * a non-blocking TCP connection on the gateway's loop, bind_transceiver, enquire_link both
 * ways, a window of outstanding submit_sm, throttling (ESME_RTHROTTLED, ESME_RMSGQFUL) paused
 * and retried, response timeouts, and reconnection with exponential back-off whenever the
 * bind is refused, dropped, unbound or left unanswered. Everything the SMSC sends is framed
 * and checked here before anything else reads it (smpp_pdu.h). */
#include "sms_int.h"

#include "core/err.h"
#include "core/log.h"

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define OUT_MAX (1u << 20)
#define TICK_MS 200u

static void on_io(m5_loop_t *loop, int fd, uint32_t ev, void *arg);
static void schedule_reconnect(sms_t *s);

uint32_t sms_link_seq(sms_t *s) {
  uint32_t q = s->next_seq++;
  if (s->next_seq == 0 || s->next_seq > 0x7FFFFFFFu) s->next_seq = 1;
  return q;
}

static void want_write(sms_t *s) {
  if (s->fd >= 0)
    m5_loop_mod_fd(s->loop, s->fd, M5_EV_READ | (s->out.len ? M5_EV_WRITE : 0u));
}

int sms_link_send(sms_t *s, const uint8_t *pdu, size_t len) {
  if (s->fd < 0) return M5_ECLOSED;
  int rc = m5_buf_append(&s->out, pdu, len);
  if (rc) {
    /* 1 MiB the SMSC does not read: the link is dropped at the next tick (not here, in the
     * middle of handling a PDU). */
    s->out_stuck = true;
    return rc;
  }
  want_write(s);
  return M5_OK;
}

void sms_link_send_hdr(sms_t *s, uint32_t id, uint32_t status, uint32_t seq) {
  uint8_t b[16];
  m5_smpp_hdr_only(b, id, status, seq);
  sms_link_send(s, b, sizeof(b));
}

void sms_link_queue(sms_t *s, sms_part_t *p, bool front) {
  p->next = NULL;
  if (front) {
    p->next = s->q_head;
    s->q_head = p;
    if (!s->q_tail) s->q_tail = p;
  } else {
    if (s->q_tail) s->q_tail->next = p;
    else s->q_head = p;
    s->q_tail = p;
  }
  s->n_queued++;
}

static uint64_t now_ms(sms_t *s) { return m5_loop_now_ms(s->loop); }

/* ---- connection ---- */

void sms_link_close(sms_t *s, const char *why) {
  if (s->fd >= 0) {
    M5_LOGW(SMS_DOM, "SMSC %s:%lld: link closed: %s", s->cfg->host, (long long)s->cfg->port,
            why);
    m5_loop_del_fd(s->loop, s->fd);
    close(s->fd);
    s->fd = -1;
  }
  bool was_bound = s->st == LINK_BOUND;
  s->st = LINK_DOWN;
  m5_buf_reset(&s->in);
  /* The bind PDU carried the password: wipe what was queued. */
  if (s->out.data) explicit_bzero(s->out.data, s->out.cap);
  m5_buf_reset(&s->out);
  s->bind_seq = s->enq_seq = 0;
  s->out_stuck = false;
  (void)was_bound;
  sms_on_link_down(s);
  if (!s->stopping) schedule_reconnect(s);
}

static void send_bind(sms_t *s) {
  bind_transceiver_t b;
  memset(&b, 0, sizeof(b));
  b.command_id = BIND_TRANSCEIVER;
  b.sequence_number = s->bind_seq = sms_link_seq(s);
  const sms_cfg_t *c = s->cfg;
  snprintf((char *)b.system_id, sizeof(b.system_id), "%s", c->system_id);
  snprintf((char *)b.password, sizeof(b.password), "%s", c->password ? c->password : "");
  snprintf((char *)b.system_type, sizeof(b.system_type), "%s",
           c->system_type ? c->system_type : "");
  b.interface_version = SMPP_VERSION;
  uint8_t out[128];
  int n = m5_smpp_pack(BIND_TRANSCEIVER, &b, out, sizeof(out));
  explicit_bzero(b.password, sizeof(b.password));
  if (n < 0) {
    explicit_bzero(out, sizeof(out));
    sms_link_close(s, "cannot pack bind_transceiver (system_id, password or system_type too "
                      "long?)");
    return;
  }
  sms_link_send(s, out, (size_t)n);
  explicit_bzero(out, sizeof(out));
  s->st = LINK_BINDING;
  s->deadline_ms = now_ms(s) + (uint64_t)s->cfg->response_timeout_ms;
}

static void do_connect(m5_loop_t *loop, void *arg) {
  sms_t *s = arg;
  (void)loop;
  s->t_reconnect = 0;
  char port[8];
  snprintf(port, sizeof(port), "%lld", (long long)s->cfg->port);
  struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV};
  struct addrinfo *ai = NULL;
  hints.ai_flags |= AI_NUMERICHOST;
  int grc = getaddrinfo(s->cfg->host, port, &hints, &ai);
  if (grc == EAI_NONAME) { /* a name: resolved here, synchronously (docs/gateways-sms.md) */
    hints.ai_flags &= ~AI_NUMERICHOST;
    grc = getaddrinfo(s->cfg->host, port, &hints, &ai);
  }
  if (grc) {
    M5_LOGW(SMS_DOM, "SMSC %s: %s", s->cfg->host, gai_strerror(grc));
    schedule_reconnect(s);
    return;
  }
  int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  int rc = fd < 0 ? -1 : connect(fd, ai->ai_addr, ai->ai_addrlen);
  freeaddrinfo(ai);
  if (fd < 0 || (rc < 0 && errno != EINPROGRESS)) {
    M5_LOGW(SMS_DOM, "SMSC %s:%s: connect: %s", s->cfg->host, port, strerror(errno));
    if (fd >= 0) close(fd);
    schedule_reconnect(s);
    return;
  }
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  s->fd = fd;
  s->gen++;
  s->st = LINK_CONNECTING;
  s->deadline_ms = now_ms(s) + (uint64_t)s->cfg->response_timeout_ms;
  if (m5_loop_add_fd(s->loop, fd, M5_EV_READ | M5_EV_WRITE, on_io, s) != M5_OK) {
    close(fd);
    s->fd = -1;
    s->st = LINK_DOWN;
    schedule_reconnect(s);
  }
}

static void schedule_reconnect(sms_t *s) {
  if (s->stopping || s->t_reconnect) return;
  uint64_t d = s->backoff_ms;
  M5_LOGI(SMS_DOM, "reconnecting to the SMSC in %llu ms", (unsigned long long)d);
  s->t_reconnect = m5_loop_timer_add(s->loop, d, do_connect, s);
  uint64_t next = d * 2;
  s->backoff_ms = next > (uint64_t)s->cfg->reconnect_max_ms ? (uint64_t)s->cfg->reconnect_max_ms
                                                            : next;
}

/* ---- the submit window ---- */

static int pack_part(sms_t *s, sms_part_t *p, uint8_t *out, size_t cap) {
  sms_job_t *j = p->job;
  submit_sm_t m;
  memset(&m, 0, sizeof(m));
  m.command_id = SUBMIT_SM;
  m.sequence_number = p->seq = sms_link_seq(s);
  /* A device's MSISDN is international; a route's or sms.source_addr's digits (a short code)
   * go as TON unknown, letters as alphanumeric. */
  bool src_digits = j->src[0] && strspn(j->src, "0123456789") == strlen(j->src);
  m.source_addr_ton = j->src_msisdn ? TON_International
                      : src_digits  ? TON_Unknown
                                    : TON_Alphanumeric;
  m.source_addr_npi = src_digits ? NPI_ISDN_E163_E164 : NPI_Unknown;
  snprintf((char *)m.source_addr, sizeof(m.source_addr), "%s", j->src);
  m.dest_addr_ton = TON_International;
  m.dest_addr_npi = NPI_ISDN_E163_E164;
  snprintf((char *)m.destination_addr, sizeof(m.destination_addr), "%s", j->msisdn);
  m.esm_class = (uint8_t)(j->esm | (j->n_parts > 1 ? SMPP34_UDHI_IND : 0));
  m.registered_delivery = j->registered_delivery;
  m.data_coding = j->dc;
  m.sm_length = p->sm_len;
  memcpy(m.short_message, p->sm, p->sm_len);
  return m5_smpp_pack(SUBMIT_SM, &m, out, cap);
}

void sms_link_pump(sms_t *s) {
  if (s->st != LINK_BOUND) return;
  uint64_t now = now_ms(s);
  if (now < s->throttle_until_ms) return;
  while (s->q_head && s->n_inflight < (unsigned)s->cfg->window) {
    sms_part_t *p = s->q_head;
    if (p->not_before_ms > now) break;
    s->q_head = p->next;
    if (!s->q_head) s->q_tail = NULL;
    s->n_queued--;
    uint8_t out[512];
    int n = pack_part(s, p, out, sizeof(out));
    if (n < 0 || sms_link_send(s, out, (size_t)n) != M5_OK) {
      /* A part gw_sms.c built that the library refuses, or the SMSC not reading what we
       * send: the message goes back to m5s rather than round this loop again. */
      sms_on_submit_resp(s, p, ESME_RSYSERR, NULL);
      continue;
    }
    p->deadline_ms = now + (uint64_t)s->cfg->response_timeout_ms;
    p->next = s->inflight;
    s->inflight = p;
    s->n_inflight++;
    p->job->inflight++;
  }
}

static sms_part_t *take_inflight(sms_t *s, uint32_t seq) {
  for (sms_part_t **pp = &s->inflight; *pp; pp = &(*pp)->next)
    if ((*pp)->seq == seq) {
      sms_part_t *p = *pp;
      *pp = p->next;
      p->next = NULL;
      s->n_inflight--;
      p->job->inflight--;
      return p;
    }
  return NULL;
}

/* ---- what the SMSC sends ---- */

static void on_submit_resp(sms_t *s, const m5_smpp_hdr_t *h, const uint8_t *pdu) {
  sms_part_t *p = take_inflight(s, h->seq);
  if (!p) {
    M5_LOGD(SMS_DOM, "submit_sm_resp for unknown sequence %u ignored", h->seq);
    return;
  }
  char why[256] = "", id[66] = "";
  uint32_t status = h->status;
  if (status == ESME_ROK && h->id == SUBMIT_SM_RESP) {
    submit_sm_resp_t r;
    memset(&r, 0, sizeof(r));
    uint8_t chk[M5_SMPP_MAX_PDU];
    int cl = m5_smpp_check_resp_id(pdu, h->len, 65, chk, why, sizeof(why));
    if (cl < 0 || m5_smpp_unpack(SUBMIT_SM_RESP, chk, (size_t)cl, &r, why, sizeof(why))) {
      m5_smpp_unpack_end();
      M5_LOGW(SMS_DOM, "malformed submit_sm_resp (sequence %u): %s", h->seq, why);
      /* The SMSC took the message (status 0) but its id is unreadable: no receipt can be
       * matched; the submit itself succeeded. */
    } else {
      snprintf(id, sizeof(id), "%s", (const char *)r.message_id);
      m5_smpp_unpack_end();
    }
  }
  sms_on_submit_resp(s, p, status, id);
  sms_link_pump(s);
}

static void on_bind_resp(sms_t *s, const m5_smpp_hdr_t *h, const uint8_t *pdu) {
  if (s->st != LINK_BINDING || h->seq != s->bind_seq) {
    M5_LOGD(SMS_DOM, "unexpected bind_transceiver_resp ignored");
    return;
  }
  char why[300];
  if (h->status != ESME_ROK) {
    snprintf(why, sizeof(why), "bind_transceiver refused: command_status 0x%08x", h->status);
    sms_link_close(s, why);
    return;
  }
  bind_transceiver_resp_t r;
  memset(&r, 0, sizeof(r));
  uint8_t chk[M5_SMPP_MAX_PDU];
  int cl = m5_smpp_check_resp_id(pdu, h->len, 16, chk, why, sizeof(why));
  if (cl < 0 || m5_smpp_unpack(BIND_TRANSCEIVER_RESP, chk, (size_t)cl, &r, why, sizeof(why))) {
    m5_smpp_unpack_end();
    char w2[400];
    snprintf(w2, sizeof(w2), "malformed bind_transceiver_resp: %s", why);
    sms_link_close(s, w2);
    return;
  }
  M5_LOGI(SMS_DOM, "bound to SMSC %s:%lld as transceiver (SMSC system_id '%s')", s->cfg->host,
          (long long)s->cfg->port, (const char *)r.system_id);
  m5_smpp_unpack_end();
  s->st = LINK_BOUND;
  s->bind_seq = 0;
  s->backoff_ms = (uint64_t)s->cfg->reconnect_min_ms;
  s->enq_sent_ms = 0;
  sms_on_bound(s);
  sms_link_pump(s);
}

static void handle_pdu(sms_t *s, const m5_smpp_hdr_t *h, const uint8_t *pdu) {
  s->last_rx_ms = now_ms(s);
  bool bound = s->st == LINK_BOUND;
  switch (h->id) {
  case BIND_TRANSCEIVER_RESP: on_bind_resp(s, h, pdu); return;
  case ENQUIRE_LINK:
    sms_link_send_hdr(s, ENQUIRE_LINK_RESP, ESME_ROK, h->seq);
    return;
  case ENQUIRE_LINK_RESP:
    if (h->seq == s->enq_seq) s->enq_seq = 0;
    return;
  case UNBIND:
    sms_link_send_hdr(s, UNBIND_RESP, ESME_ROK, h->seq);
    /* Flush the answer before closing: best effort, the socket is non-blocking. */
    if (s->out.len) {
      ssize_t w = write(s->fd, s->out.data, s->out.len);
      (void)w;
    }
    sms_link_close(s, "the SMSC unbound");
    return;
  case UNBIND_RESP: return;
  case SUBMIT_SM_RESP:
  case GENERIC_NACK:
    if (h->id == GENERIC_NACK && h->seq == s->bind_seq && s->st == LINK_BINDING) {
      sms_link_close(s, "bind_transceiver answered with generic_nack");
      return;
    }
    if (h->id == GENERIC_NACK && h->seq == s->enq_seq) { /* an answer all the same */
      s->enq_seq = 0;
      return;
    }
    on_submit_resp(s, h, pdu);
    return;
  case DELIVER_SM:
    if (!bound) {
      sms_link_send_hdr(s, DELIVER_SM_RESP, ESME_RINVBNDSTS, h->seq);
      return;
    }
    sms_on_deliver_sm(s, h, pdu);
    return;
  case ALERT_NOTIFICATION: return; /* no response is defined */
  default:
    if (h->id & 0x80000000u) {
      M5_LOGD(SMS_DOM, "response 0x%08x (sequence %u) ignored", h->id, h->seq);
      return;
    }
    /* data_sm, outbind, submit_sm, query_sm, ... are not for an ESME bound like this one. */
    M5_LOGW(SMS_DOM, "command_id 0x%08x from the SMSC answered with generic_nack", h->id);
    sms_link_send_hdr(s, GENERIC_NACK, ESME_RINVCMDID, h->seq);
    return;
  }
}

static void on_readable(sms_t *s) {
  /* At most 16 reads a turn: an SMSC sending without pause cannot hold the loop. */
  for (int turn = 0; turn < 16; turn++) {
    uint8_t tmp[8192];
    ssize_t r = read(s->fd, tmp, sizeof(tmp));
    if (r == 0) {
      sms_link_close(s, "the SMSC closed the connection");
      return;
    }
    if (r < 0) {
      if (errno == EAGAIN || errno == EINTR) break;
      sms_link_close(s, strerror(errno));
      return;
    }
    if (m5_buf_append(&s->in, tmp, (size_t)r) != M5_OK) {
      sms_link_close(s, "out of memory");
      return;
    }
    uint64_t gen = s->gen;
    while (s->fd >= 0 && s->gen == gen) {
      m5_smpp_hdr_t h;
      int rc = m5_smpp_hdr(s->in.data, s->in.len, &h);
      if (rc == M5_EAGAIN) break;
      if (rc != M5_OK) {
        char why[160];
        snprintf(why, sizeof(why), "malformed PDU: command_length %u (16..%u)", h.len,
                 M5_SMPP_MAX_PDU);
        /* The stream cannot be followed past a bad length: answer, then reconnect. */
        sms_link_send_hdr(s, GENERIC_NACK, ESME_RINVCMDLEN, h.seq);
        if (s->out.len) {
          ssize_t w = write(s->fd, s->out.data, s->out.len);
          (void)w;
        }
        sms_link_close(s, why);
        return;
      }
      if (s->in.len < h.len) break;
      handle_pdu(s, &h, s->in.data);
      if (s->fd < 0 || s->gen != gen) return;
      m5_buf_consume(&s->in, h.len);
    }
    if (s->fd < 0) return;
  }
}

static void on_writable(sms_t *s) {
  while (s->out.len) {
    ssize_t w = write(s->fd, s->out.data, s->out.len);
    if (w < 0) {
      if (errno == EAGAIN || errno == EINTR) break;
      sms_link_close(s, strerror(errno));
      return;
    }
    /* Wipe what went out: a bind_transceiver carries the password. */
    explicit_bzero(s->out.data, (size_t)w);
    m5_buf_consume(&s->out, (size_t)w);
  }
  want_write(s);
}

static void on_io(m5_loop_t *loop, int fd, uint32_t ev, void *arg) {
  sms_t *s = arg;
  (void)loop;
  (void)fd;
  if (s->st == LINK_CONNECTING) {
    int err = 0;
    socklen_t l = sizeof(err);
    if (getsockopt(s->fd, SOL_SOCKET, SO_ERROR, &err, &l) < 0) err = errno;
    if (err) {
      char why[160];
      snprintf(why, sizeof(why), "connect: %s", strerror(err));
      sms_link_close(s, why);
      return;
    }
    if (!(ev & (M5_EV_WRITE | M5_EV_READ))) return;
    send_bind(s);
    if (s->fd < 0) return;
  }
  if (ev & (M5_EV_READ | M5_EV_ERROR)) {
    on_readable(s);
    if (s->fd < 0) return;
  }
  if (s->out.len || (ev & M5_EV_WRITE)) on_writable(s);
}

/* Response timeouts, the keep-alive, the end of a throttling pause, and gw_sms.c's own
 * deadlines. */
static void on_tick(m5_loop_t *loop, void *arg) {
  sms_t *s = arg;
  s->t_tick = 0;
  uint64_t now = m5_loop_now_ms(loop);
  if (s->fd >= 0 && s->out_stuck) {
    s->out_stuck = false;
    sms_link_close(s, "the SMSC does not read what the gateway sends");
  }
  if (s->fd >= 0) {
    if ((s->st == LINK_CONNECTING || s->st == LINK_BINDING) && now >= s->deadline_ms) {
      sms_link_close(s, s->st == LINK_CONNECTING ? "connect timed out"
                                                 : "bind_transceiver unanswered");
    } else if (s->st == LINK_BOUND) {
      bool late = false;
      for (sms_part_t *p = s->inflight; p; p = p->next)
        if (now >= p->deadline_ms) late = true;
      if (late) {
        sms_link_close(s, "submit_sm unanswered");
      } else if (s->enq_seq && now >= s->enq_sent_ms + (uint64_t)s->cfg->response_timeout_ms) {
        sms_link_close(s, "enquire_link unanswered");
      } else if (!s->enq_seq && now >= s->last_rx_ms + (uint64_t)s->cfg->enquire_link_ms &&
                 now >= s->enq_sent_ms + (uint64_t)s->cfg->enquire_link_ms) {
        s->enq_seq = sms_link_seq(s);
        s->enq_sent_ms = now;
        sms_link_send_hdr(s, ENQUIRE_LINK, ESME_ROK, s->enq_seq);
      }
      if (s->st == LINK_BOUND) sms_link_pump(s);
    }
  }
  sms_tick(s, now);
  if (!s->stopping) s->t_tick = m5_loop_timer_add(loop, TICK_MS, on_tick, s);
}

void sms_link_start(sms_t *s) {
  s->fd = -1;
  s->st = LINK_DOWN;
  s->next_seq = 1;
  s->backoff_ms = (uint64_t)s->cfg->reconnect_min_ms;
  m5_buf_init(&s->in, 0);
  m5_buf_init(&s->out, OUT_MAX);
  s->t_tick = m5_loop_timer_add(s->loop, TICK_MS, on_tick, s);
  s->t_reconnect = m5_loop_timer_add(s->loop, 0, do_connect, s);
}

void sms_link_stop(sms_t *s) {
  s->stopping = true;
  if (s->t_tick) m5_loop_timer_cancel(s->loop, s->t_tick);
  if (s->t_reconnect) m5_loop_timer_cancel(s->loop, s->t_reconnect);
  s->t_tick = s->t_reconnect = 0;
  if (s->fd >= 0 && s->st == LINK_BOUND) {
    uint8_t b[16];
    m5_smpp_hdr_only(b, UNBIND, ESME_ROK, sms_link_seq(s));
    m5_buf_append(&s->out, b, sizeof(b));
    ssize_t w = write(s->fd, s->out.data, s->out.len); /* best effort */
    (void)w;
  }
  if (s->fd >= 0) {
    m5_loop_del_fd(s->loop, s->fd);
    close(s->fd);
    s->fd = -1;
  }
  s->st = LINK_DOWN;
  m5_buf_free(&s->in);
  if (s->out.data) explicit_bzero(s->out.data, s->out.cap);
  m5_buf_free(&s->out);
}
