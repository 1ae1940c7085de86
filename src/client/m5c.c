/* libm5c (m5c.h): registration on every new session, MSG/DEREG/TOPICSUB/TOPICUNSUB exchanges
 * (TS 23.554 cl. 8.3.2, 8.8.1), the answers to
 * server pushes (2.04 + MSGRESP after the application saw the message), the delivery reports
 * (IMDN) for pushed messages that ask for one, and the receive-side duplicate filter by
 * (oriAddr, msgId) that makes at-least-once delivery exactly-once for the application
 * (architecture §3.1, §4 "application-level replay"). */
#include "m5c.h"

#include "chan.h"
#include "core/err.h"
#include "core/log.h"
#include "crypto/codec.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DOM "m5c"
#define PATH "msgin5g"
#define RECONNECT_MIN_MS 1000
#define RECONNECT_MAX_MS 30000

typedef enum { S_IDLE, S_OPENING, S_REGISTERING, S_READY } state_t;

/* A delivery report waiting to be sent, or in flight (sent on the session that is up). */
typedef struct imdn {
  struct imdn *next;
  m5c_t *c;
  char *body; /* the encoded IMDN */
  size_t len;
  char msg_id[M5_MSG_ID_MAX + 1]; /* for logs */
  int inflight;
} imdn_t;

struct m5c {
  m5_loop_t *loop;
  SSL_CTX *ctx;
  m5c_opts_t o; /* strings below are our copies */
  char *host, *ue_svc_id, *client_profile;
  m5_akma_cred_t cred;

  state_t st;
  m5c_chan_t *ch;
  m5c_chan_t *closing; /* detached, freed from close_timer (never inside its own stack) */
  m5_coap_ep_t *ep;    /* the channel's, while it is up */
  int open_status;     /* 1 while opening; then 0 or the failure */
  m5_timer_id_t open_timer, close_timer, retry_timer;
  uint64_t backoff_ms;
  int running, stop, fatal;
  int64_t expiry;

  uint8_t last_code;
  char last_err[256];

  char *seen[M5C_DEDUP_WINDOW]; /* ring of "TYPE\x1fADDRTYPE\x1fADDR\x1fMSGID" */
  size_t seen_next;

  imdn_t *imdns; /* oldest first */
  size_t n_imdns;
};

static void set_err(m5c_t *c, uint8_t code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void set_err(m5c_t *c, uint8_t code, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(c->last_err, sizeof c->last_err, fmt, ap);
  va_end(ap);
  c->last_code = code;
}

/* "4.03: <diagnostic>" from an error answer. */
static void set_answer_err(m5c_t *c, const char *what, const m5_coap_msg_t *resp,
                           const uint8_t *body, size_t len) {
  char code[8];
  int n = len > 200 ? 200 : (int)len;
  set_err(c, resp->code, "%s: server answered %s%s%.*s", what,
          m5_coap_code_str(resp->code, code, sizeof code), n ? ": " : "", n,
          n ? (const char *)body : "");
}

static void wake(m5c_t *c) {
  m5_loop_stop(c->loop);
}

/* ---- session ---- */

static void start_open(m5c_t *c);
static void imdn_flush(m5c_t *c);

static void close_fire(m5_loop_t *loop, void *arg) {
  (void)loop;
  m5c_t *c = arg;
  c->close_timer = 0;
  m5c_chan_t *ch = c->closing;
  c->closing = NULL;
  m5c_chan_free(ch);
}

/* Detaches the current channel and frees it from the next loop iteration. */
static void close_session(m5c_t *c) {
  c->st = S_IDLE;
  c->ep = NULL;
  if (!c->ch) return;
  if (c->closing) m5c_chan_free(c->closing); /* from an earlier iteration: not on the stack */
  c->closing = c->ch;
  c->ch = NULL;
  /* Without a timer the channel waits in c->closing for the next close or m5c_free(). */
  if (!c->close_timer) c->close_timer = m5_loop_timer_add(c->loop, 0, close_fire, c);
}

static void retry_fire(m5_loop_t *loop, void *arg) {
  (void)loop;
  m5c_t *c = arg;
  c->retry_timer = 0;
  if (c->st == S_IDLE && c->running) start_open(c);
}

/* An open attempt ended (status 0 = registered) or an established session was lost. */
static void session_result(m5c_t *c, int status) {
  if (c->open_timer) m5_loop_timer_cancel(c->loop, c->open_timer);
  c->open_timer = 0;
  if (!status) {
    c->st = S_READY;
    c->open_status = 0;
    c->backoff_ms = 0;
    imdn_flush(c);
    wake(c);
    return;
  }
  if (c->open_status == 1) c->open_status = status;
  close_session(c);
  if (c->running) {
    if (status == M5_ECRYPTO || status == M5_EPERM) {
      c->fatal = status; /* retrying cannot fix refused credentials */
    } else if (!c->retry_timer) {
      c->backoff_ms = c->backoff_ms ? c->backoff_ms * 2 : RECONNECT_MIN_MS;
      if (c->backoff_ms > RECONNECT_MAX_MS) c->backoff_ms = RECONNECT_MAX_MS;
      M5_LOGW(DOM, "%s; reconnecting in %llu ms", c->last_err, (unsigned long long)c->backoff_ms);
      c->retry_timer = m5_loop_timer_add(c->loop, c->backoff_ms, retry_fire, c);
    }
  }
  wake(c);
}

static void reg_done(void *arg, int status, const m5_coap_msg_t *resp, const uint8_t *body,
                     size_t len) {
  m5c_t *c = arg;
  if (c->st != S_REGISTERING) return;
  if (status) {
    if (status == M5_ECLOSED) return; /* on_down tells why */
    set_err(c, 0, "REG: %s",
            status == M5_ETIMEDOUT ? "no answer from the server" : "the server reset the exchange");
    session_result(c, status == M5_ETIMEDOUT ? M5_ETIMEDOUT : M5_EIO);
    return;
  }
  if (resp->code == M5_COAP_CREATED || resp->code == M5_COAP_CHANGED) {
    m5_msg_t m;
    char diag[128];
    c->expiry = 0;
    if (len && m5_msg_parse(body, len, &m, diag, sizeof diag) == M5_OK) {
      c->expiry = m.expiry;
      m5_msg_free(&m);
    }
    M5_LOGD(DOM, "registered %s", c->ue_svc_id);
    session_result(c, 0);
    return;
  }
  set_answer_err(c, "REG", resp, body, len);
  session_result(c, resp->code == M5_COAP_UNAUTHORIZED ? M5_ECRYPTO : M5_EPERM);
}

static void chan_up(m5c_chan_t *ch, m5_coap_ep_t *ep, void *arg) {
  (void)ch;
  m5c_t *c = arg;
  c->ep = ep;
  c->st = S_REGISTERING;
  m5_msg_t reg;
  memset(&reg, 0, sizeof reg);
  reg.type = M5_MSG_REG;
  snprintf(reg.ue_svc_id, sizeof reg.ue_svc_id, "%s", c->ue_svc_id);
  reg.client_profile_json = c->client_profile;
  char *body = NULL;
  size_t len = 0;
  int rc = m5_msg_encode(&reg, &body, &len);
  if (!rc)
    rc = m5_coap_ep_request(ep, M5_COAP_POST, PATH, M5_COAP_FORMAT_JSON, (const uint8_t *)body, len,
                            reg_done, c);
  free(body);
  if (rc) {
    set_err(c, 0, "REG: cannot send it: %s", m5_strerror(rc));
    session_result(c, M5_EIO);
  }
}

static void chan_down(m5c_chan_t *ch, int status, const char *why, void *arg) {
  m5c_t *c = arg;
  if (c->ch != ch) return; /* one already detached: close_fire frees it */
  c->ch = NULL;
  c->ep = NULL;
  m5c_chan_free(ch);
  if (c->st == S_IDLE) return;
  set_err(c, 0, "%s", why);
  session_result(c, status);
}

static void open_timeout(m5_loop_t *loop, void *arg) {
  (void)loop;
  m5c_t *c = arg;
  c->open_timer = 0;
  if (c->st == S_OPENING || c->st == S_REGISTERING) {
    set_err(c, 0, "%s",
            c->st == S_OPENING ? "no (D)TLS session within the timeout"
                               : "REG: no answer within the timeout");
    session_result(c, c->st == S_OPENING ? M5_ECRYPTO : M5_ETIMEDOUT);
  }
}

static void on_request(m5_coap_ep_t *ep, m5_coap_req_t *req, void *arg);

static void start_open(m5c_t *c) {
  static const m5c_chan_cbs_t cbs = {chan_up, on_request, chan_down};
  char err[200];
  c->open_status = 1;
  c->st = S_OPENING;
  c->ch = m5c_chan_open(c->loop, c->ctx, &c->o, &c->cred, &cbs, c, err, sizeof err);
  if (!c->ch) {
    set_err(c, 0, "%s", err);
    session_result(c, M5_EIO);
    return;
  }
  c->open_timer = m5_loop_timer_add(c->loop, c->o.timeout_ms, open_timeout, c);
}

static void deadline_fire(m5_loop_t *loop, void *arg) {
  *(int *)arg = 1;
  m5_loop_stop(loop);
}

/* Runs the loop until done(c, arg), timeout_ms (0 = none; M5_ETIMEDOUT), m5c_stop()
 * (M5_EAGAIN) or, inside m5c_run(), a failure retrying cannot fix. */
static int wait_until(m5c_t *c, int (*done)(m5c_t *, void *), void *arg, uint64_t timeout_ms) {
  int expired = 0;
  m5_timer_id_t t = 0;
  if (timeout_ms && !(t = m5_loop_timer_add(c->loop, timeout_ms, deadline_fire, &expired)))
    return M5_ENOMEM;
  int rc = 0;
  while (!done(c, arg) && !expired && !c->stop && !c->fatal)
    if ((rc = m5_loop_run(c->loop))) break;
  if (t) m5_loop_timer_cancel(c->loop, t);
  if (done(c, arg)) return 0;
  if (rc) return rc;
  if (c->stop) {
    c->stop = 0;
    return M5_EAGAIN;
  }
  return c->fatal ? c->fatal : M5_ETIMEDOUT;
}

static int opened(m5c_t *c, void *arg) {
  (void)arg;
  return c->open_status != 1;
}

int m5c_connect(m5c_t *c) {
  if (c->st == S_READY) return 0;
  if (c->st == S_IDLE) {
    if (c->retry_timer) m5_loop_timer_cancel(c->loop, c->retry_timer);
    c->retry_timer = 0;
    start_open(c);
  }
  int rc = wait_until(c, opened, NULL, 0);
  if (rc) {
    if (c->open_timer) m5_loop_timer_cancel(c->loop, c->open_timer);
    c->open_timer = 0;
    c->open_status = rc;
    close_session(c);
    if (rc == M5_EAGAIN) set_err(c, 0, "interrupted");
    return rc;
  }
  return c->open_status;
}

/* ---- request / answer exchanges ---- */

typedef struct {
  m5_loop_t *loop;
  int done, abandoned, status;
  uint8_t code;
  uint8_t *body;
  size_t len;
} op_t;

static void op_done(void *arg, int status, const m5_coap_msg_t *resp, const uint8_t *body,
                    size_t len) {
  op_t *op = arg;
  if (op->abandoned) {
    free(op);
    return;
  }
  op->done = 1;
  op->status = status;
  if (!status) {
    op->code = resp->code;
    if (len && (op->body = malloc(len))) {
      memcpy(op->body, body, len);
      op->len = len;
    }
  }
  m5_loop_stop(op->loop);
}

static int op_finished(m5c_t *c, void *arg) {
  (void)c;
  return ((op_t *)arg)->done;
}

/* Sends m and waits for the answer; 0 with *op_out (free the op and its body) when an answer
 * came, whatever its code. */
static int exchange(m5c_t *c, const char *what, const m5_msg_t *m, op_t **op_out) {
  *op_out = NULL;
  int rc = m5c_connect(c);
  if (rc) return rc;
  char *body = NULL;
  size_t len = 0;
  if ((rc = m5_msg_encode(m, &body, &len))) {
    set_err(c, 0, "%s: the message cannot be encoded (check msgId, addresses and times)", what);
    return M5_EINVAL;
  }
  op_t *op = calloc(1, sizeof *op);
  if (!op) {
    free(body);
    set_err(c, 0, "%s: out of memory", what);
    return M5_ENOMEM;
  }
  op->loop = c->loop;
  rc = m5_coap_ep_request(c->ep, M5_COAP_POST, PATH, M5_COAP_FORMAT_JSON, (const uint8_t *)body,
                          len, op_done, op);
  free(body);
  if (rc) {
    free(op);
    set_err(c, 0, "%s: cannot send it: %s", what, m5_strerror(rc));
    return rc;
  }
  rc = wait_until(c, op_finished, op, c->o.timeout_ms);
  if (rc) {
    op->abandoned = 1; /* op_done frees it when the endpoint gives up on the exchange */
    set_err(c, 0, "%s: %s", what,
            rc == M5_ETIMEDOUT ? "no answer within the timeout" : "interrupted");
    return rc;
  }
  if (op->status == M5_ERANGE) {
    /* The request is over the server's CSM Max-Message-Size (TCP), or the answer over ours:
     * the session is still up, nothing was lost. */
    set_err(c, 0,
            "%s: too large: the request exceeds the server's Max-Message-Size (%zu bytes) "
            "or the answer exceeds ours",
            what, m5_coap_ep_peer_max_message(c->ep));
    free(op);
    return M5_ERANGE;
  }
  if (op->status) {
    rc = op->status == M5_ETIMEDOUT ? M5_ETIMEDOUT
         : op->status == M5_EPROTO  ? M5_EPROTO
                                    : M5_ECLOSED;
    char lost[sizeof c->last_err];
    snprintf(lost, sizeof lost, "%s", c->last_err[0] ? c->last_err : "the session was lost");
    set_err(c, 0, "%s: %s", what,
            rc == M5_ETIMEDOUT ? "no answer from the server"
            : rc == M5_EPROTO  ? "the server reset the exchange"
                               : lost);
    free(op);
    return rc;
  }
  *op_out = op;
  return 0;
}

static void op_free(op_t *op) {
  if (!op) return;
  free(op->body);
  free(op);
}

/* The status for an error answer, after recording it. */
static int refused(m5c_t *c, const char *what, op_t *op) {
  m5_coap_msg_t resp;
  memset(&resp, 0, sizeof resp);
  resp.code = op->code;
  set_answer_err(c, what, &resp, op->body, op->len);
  if (op->code == M5_COAP_UNAUTHORIZED) return M5_ECRYPTO;
  if (op->code == M5_COAP_BAD_REQUEST) return M5_EINVAL;
  return M5_EPERM;
}

/* The body of a 2.04 answer, which must be a `want` body; M5_EPROTO (resp zeroed) if not. */
static int answer_body(m5c_t *c, const char *what, const op_t *op, m5_msg_type_t want,
                       m5_msg_t *resp) {
  char diag[160];
  diag[0] = '\0';
  if (m5_msg_parse(op->body, op->len, resp, diag, sizeof diag) == 0 && resp->type == want)
    return 0;
  if (!diag[0]) snprintf(diag, sizeof diag, "not a %s body", m5_msg_type_name(want));
  m5_msg_free(resp);
  memset(resp, 0, sizeof *resp);
  set_err(c, op->code, "%s: the server's answer is malformed: %s", what, diag);
  return M5_EPROTO;
}

int m5c_send(m5c_t *c, const m5_msg_t *m, m5_msg_t *resp) {
  memset(resp, 0, sizeof *resp);
  c->last_code = 0;
  c->last_err[0] = '\0';
  if (m->type != M5_MSG_MSG) {
    set_err(c, 0, "send: only MSG bodies can be sent this way");
    return M5_EINVAL;
  }
  m5_msg_t msg = *m;
  if (!msg.ori.addr[0]) {
    snprintf(msg.ori.type, sizeof msg.ori.type, "UE");
    snprintf(msg.ori.addr, sizeof msg.ori.addr, "%s", c->ue_svc_id);
  }
  op_t *op;
  int rc = exchange(c, "MSG", &msg, &op);
  if (rc) return rc;
  c->last_code = op->code;
  if (op->code != M5_COAP_CHANGED) {
    rc = refused(c, "MSG", op);
  } else if (!op->len) {
    resp->type = M5_MSG_MSGRESP; /* an empty 2.04: accepted */
    snprintf(resp->msg_id, sizeof resp->msg_id, "%s", m->msg_id);
  } else {
    rc = answer_body(c, "MSG", op, M5_MSG_MSGRESP, resp);
  }
  op_free(op);
  return rc;
}

/* TOPICSUB / TOPICUNSUB: 2.04 with a body of the request's msgType (docs/protocol.md §4). */
static int topics(m5c_t *c, m5_msg_type_t type, const char *const *names, size_t n,
                  int64_t expiry, m5_msg_t *resp) {
  memset(resp, 0, sizeof *resp);
  c->last_code = 0;
  c->last_err[0] = '\0';
  const char *what = m5_msg_type_name(type);
  if (!n || n > M5_MSG_TOPICS_MAX || expiry < 0) {
    set_err(c, 0, "%s: expected 1-%d topics and an expiry >= 0", what, M5_MSG_TOPICS_MAX);
    return M5_EINVAL;
  }
  m5_msg_name_t list[M5_MSG_TOPICS_MAX];
  for (size_t i = 0; i < n; i++) {
    if (!names[i] || !m5_msg_name_valid(names[i])) {
      set_err(c, 0, "%s: topic %zu: expected 1-%d characters of A-Z a-z 0-9 . _ : -", what, i + 1,
              M5_MSG_NAME_MAX);
      return M5_EINVAL;
    }
    snprintf(list[i], sizeof list[i], "%s", names[i]);
    for (size_t j = 0; j < i; j++)
      if (!strcmp(list[i], list[j])) {
        set_err(c, 0, "%s: topic '%s' given twice", what, list[i]);
        return M5_EINVAL;
      }
  }
  m5_msg_t m;
  memset(&m, 0, sizeof m);
  m.type = type;
  m.prio = M5_PRIO_MIDDLE;
  m.topics = list;
  m.n_topics = n;
  m.expiry = type == M5_MSG_TOPICSUB ? expiry : 0;
  op_t *op;
  int rc = exchange(c, what, &m, &op);
  if (rc) return rc;
  c->last_code = op->code;
  if (op->code != M5_COAP_CHANGED) {
    rc = refused(c, what, op);
  } else if (!op->len) {
    resp->type = type; /* an empty 2.04: done, without details */
  } else {
    rc = answer_body(c, what, op, type, resp);
  }
  op_free(op);
  return rc;
}

int m5c_subscribe(m5c_t *c, const char *const *names, size_t n, int64_t expiry, m5_msg_t *resp) {
  return topics(c, M5_MSG_TOPICSUB, names, n, expiry, resp);
}

int m5c_unsubscribe(m5c_t *c, const char *const *names, size_t n, m5_msg_t *resp) {
  return topics(c, M5_MSG_TOPICUNSUB, names, n, 0, resp);
}

int m5c_deregister(m5c_t *c) {
  c->last_code = 0;
  c->last_err[0] = '\0';
  m5_msg_t m;
  memset(&m, 0, sizeof m);
  m.type = M5_MSG_DEREG;
  snprintf(m.ue_svc_id, sizeof m.ue_svc_id, "%s", c->ue_svc_id);
  op_t *op;
  int rc = exchange(c, "DEREG", &m, &op);
  if (rc) return rc;
  c->last_code = op->code;
  rc = op->code == M5_COAP_DELETED ? 0 : refused(c, "DEREG", op);
  op_free(op);
  if (!rc) close_session(c);
  return rc;
}

/* ---- delivery reports (IMDN) ---- */

static void imdn_unlink_free(m5c_t *c, imdn_t *d) {
  for (imdn_t **pp = &c->imdns; *pp; pp = &(*pp)->next)
    if (*pp == d) {
      *pp = d->next;
      c->n_imdns--;
      break;
    }
  free(d->body);
  free(d);
}

static void imdn_done(void *arg, int status, const m5_coap_msg_t *resp, const uint8_t *body,
                      size_t len) {
  imdn_t *d = arg;
  m5c_t *c = d->c;
  d->inflight = 0;
  wake(c); /* m5c_flush_reports waits for this: it re-checks, the loop would not return */
  if (status) {
    /* Lost session, time-out or reset: kept for the next session (imdn_flush). */
    if (c->st == S_READY)
      M5_LOGD(DOM, "IMDN for %s: %s; sent again on the next session", d->msg_id,
              m5_strerror(status));
    return;
  }
  char code[8];
  int n = len > 200 ? 200 : (int)len;
  m5_coap_code_str(resp->code, code, sizeof code);
  if (resp->code >> 5 == 2) {
    M5_LOGD(DOM, "IMDN for %s: server answered %s", d->msg_id, code);
  } else if (resp->code >> 5 == 5) {
    /* 5.03 overload, 5.00: kept for the next session, like a lost one. */
    M5_LOGW(DOM, "IMDN for %s: server answered %s%s%.*s; sent again on the next session", d->msg_id,
            code, n ? ": " : "", n, n ? (const char *)body : "");
    return;
  } else {
    /* 4.xx will not change by repeating it (a server without IMDN support answers 4.00):
     * the report is dropped, the session and the message are unaffected. */
    M5_LOGI(DOM, "IMDN for %s: server answered %s%s%.*s; report dropped", d->msg_id, code,
            n ? ": " : "", n, n ? (const char *)body : "");
  }
  imdn_unlink_free(c, d);
}

static void imdn_send(m5c_t *c, imdn_t *d) {
  if (d->inflight || c->st != S_READY || !c->ep) return;
  int rc = m5_coap_ep_request(c->ep, M5_COAP_POST, PATH, M5_COAP_FORMAT_JSON,
                              (const uint8_t *)d->body, d->len, imdn_done, d);
  if (rc)
    M5_LOGW(DOM, "IMDN for %s: cannot send it now (%s); sent again on the next session", d->msg_id,
            m5_strerror(rc));
  else
    d->inflight = 1;
}

/* Sends every report not in flight, on a session that has just registered. */
static void imdn_flush(m5c_t *c) {
  for (imdn_t *d = c->imdns; d; d = d->next)
    imdn_send(c, d);
}

/* Queues (and sends, if the session is up) the report that m was handed to the application. */
static void imdn_queue(m5c_t *c, const m5_msg_t *m) {
  m5_msg_t r;
  memset(&r, 0, sizeof r);
  r.type = M5_MSG_IMDN;
  snprintf(r.ori.type, sizeof r.ori.type, "UE");
  snprintf(r.ori.addr, sizeof r.ori.addr, "%s", c->ue_svc_id);
  r.dest = m->ori;
  memcpy(r.msg_id, m->msg_id, sizeof r.msg_id);
  snprintf(r.deliv_st, sizeof r.deliv_st, "REPT_DELY_SUCCESS");
  imdn_t *d = calloc(1, sizeof *d);
  if (!d || m5_msg_encode(&r, &d->body, &d->len)) {
    M5_LOGW(DOM, "IMDN for %s: cannot build it; report dropped", m->msg_id);
    if (d) free(d->body);
    free(d);
    return;
  }
  d->c = c;
  memcpy(d->msg_id, m->msg_id, sizeof d->msg_id);
  if (c->n_imdns >= M5C_IMDN_MAX) {
    /* The oldest one not in flight makes room (in flight: it completes on its own). */
    imdn_t *old = c->imdns;
    while (old && old->inflight)
      old = old->next;
    if (old) {
      M5_LOGW(DOM, "IMDN for %s: %d reports wait already; the oldest is dropped", old->msg_id,
              M5C_IMDN_MAX);
      imdn_unlink_free(c, old);
    }
  }
  imdn_t **pp = &c->imdns;
  while (*pp)
    pp = &(*pp)->next;
  *pp = d;
  c->n_imdns++;
  imdn_send(c, d);
}

static int imdns_settled(m5c_t *c, void *arg) {
  (void)arg;
  for (imdn_t *d = c->imdns; d; d = d->next)
    if (d->inflight) return 0;
  return 1;
}

int m5c_flush_reports(m5c_t *c, uint64_t timeout_ms) {
  if (imdns_settled(c, NULL)) return c->n_imdns ? M5_EAGAIN : 0;
  int rc = wait_until(c, imdns_settled, NULL, timeout_ms);
  if (rc) return rc;
  return c->n_imdns ? M5_EAGAIN : 0;
}

size_t m5c_pending_reports(const m5c_t *c) {
  return c->n_imdns;
}

/* ---- pushes from the server ---- */

static char *seen_key(const m5_msg_t *m) {
  size_t n = strlen(m->ori.type) + strlen(m->ori.addr) + strlen(m->msg_id) + 16;
  char *k = malloc(n);
  if (k)
    snprintf(k, n, "%s\x1f%s\x1f%s\x1f%s", m5_msg_type_name(m->type), m->ori.type, m->ori.addr,
             m->msg_id);
  return k;
}

static int seen_before(m5c_t *c, const char *key) {
  for (size_t i = 0; i < M5C_DEDUP_WINDOW; i++)
    if (c->seen[i] && !strcmp(c->seen[i], key)) return 1;
  return 0;
}

static void seen_add(m5c_t *c, char *key) {
  free(c->seen[c->seen_next]);
  c->seen[c->seen_next] = key;
  c->seen_next = (c->seen_next + 1) % M5C_DEDUP_WINDOW;
}

static void answer_msgresp(m5_coap_req_t *req, const m5_msg_t *m) {
  m5_msg_t r;
  memset(&r, 0, sizeof r);
  r.type = M5_MSG_MSGRESP;
  r.ori = m->ori;
  memcpy(r.msg_id, m->msg_id, sizeof r.msg_id);
  char *body = NULL;
  size_t len = 0;
  if (m5_msg_encode(&r, &body, &len)) {
    m5_coap_ep_respond_error(req, M5_COAP_INTERNAL_ERROR, "cannot encode the MSGRESP");
    return;
  }
  m5_coap_ep_respond(req, M5_COAP_CHANGED, M5_COAP_FORMAT_JSON, (const uint8_t *)body, len, NULL,
                     0);
  free(body);
}

static void on_request(m5_coap_ep_t *ep, m5_coap_req_t *req, void *arg) {
  (void)ep;
  m5c_t *c = arg;
  if (m5_coap_req_method(req) != M5_COAP_POST) {
    m5_coap_ep_respond_error(req, M5_COAP_METHOD_NOT_ALLOWED, "only POST");
    return;
  }
  if (strcmp(m5_coap_req_path(req), PATH)) {
    m5_coap_ep_respond_error(req, M5_COAP_NOT_FOUND, "the only resource is msgin5g");
    return;
  }
  int fmt = m5_coap_req_format(req);
  if (fmt != -1 && fmt != M5_COAP_FORMAT_JSON) {
    m5_coap_ep_respond_error(req, M5_COAP_UNSUPPORTED_FORMAT, "expected application/json (50)");
    return;
  }
  size_t len;
  const uint8_t *body = m5_coap_req_body(req, &len);
  m5_msg_t m;
  char diag[160];
  if (m5_msg_parse(body, len, &m, diag, sizeof diag)) {
    M5_LOGW(DOM, "refused a push from the server: %s", diag);
    m5_coap_ep_respond_error(req, M5_COAP_BAD_REQUEST, diag);
    return;
  }
  if (m.type != M5_MSG_MSG && m.type != M5_MSG_IMDN) {
    snprintf(diag, sizeof diag, "msgType: %s is not sent to a UE", m5_msg_type_name(m.type));
    m5_msg_free(&m);
    m5_coap_ep_respond_error(req, M5_COAP_BAD_REQUEST, diag);
    return;
  }
  char *key = seen_key(&m);
  if (!key) {
    m5_msg_free(&m);
    m5_coap_ep_respond_error(req, M5_COAP_SERVICE_UNAVAILABLE, "out of memory");
    return;
  }
  int report = 0;
  if (seen_before(c, key)) {
    M5_LOGD(DOM, "repeated %s %s from %s: answered again, not delivered twice",
            m5_msg_type_name(m.type), m.msg_id, m.ori.addr);
    free(key);
  } else {
    seen_add(c, key);
    if (c->o.on_message) c->o.on_message(c, &m, body, len, c->o.arg);
    report = m.type == M5_MSG_MSG && m.deliv_st_req;
  }
  answer_msgresp(req, &m);
  if (report) imdn_queue(c, &m);
  m5_msg_free(&m);
}

/* ---- running ---- */

static int never(m5c_t *c, void *arg) {
  (void)c;
  (void)arg;
  return 0;
}

int m5c_run(m5c_t *c, uint64_t timeout_ms) {
  c->running = 1;
  c->fatal = 0;
  if (c->st == S_IDLE && !c->retry_timer) start_open(c);
  int rc = wait_until(c, never, NULL, timeout_ms);
  c->running = 0;
  if (c->retry_timer) m5_loop_timer_cancel(c->loop, c->retry_timer);
  c->retry_timer = 0;
  c->fatal = 0;
  return rc == M5_EAGAIN ? 0 : rc;
}

void m5c_stop(m5c_t *c) {
  c->stop = 1;
  m5_loop_stop(c->loop);
}

m5_loop_t *m5c_loop(m5c_t *c) {
  return c->loop;
}

uint8_t m5c_last_code(const m5c_t *c) {
  return c->last_code;
}

const char *m5c_last_error(const m5c_t *c) {
  return c->last_err;
}

int64_t m5c_reg_expiry(const m5c_t *c) {
  return c->expiry;
}

/* ---- life cycle ---- */

static char *dup_or_null(const char *s, int *failed) {
  if (!s) return NULL;
  char *d = strdup(s);
  if (!d) *failed = 1;
  return d;
}

m5c_t *m5c_new(const m5c_opts_t *opts, char *err, size_t errlen) {
  if (!opts->host || !opts->host[0]) {
    snprintf(err, errlen, "no server host");
    return NULL;
  }
  if (!opts->ue_svc_id || !m5_msg_svc_id_valid(opts->ue_svc_id)) {
    snprintf(err, errlen, "UE Service ID: expected 1-128 printable characters without spaces");
    return NULL;
  }
  if (!opts->cred || m5_akma_fqdn_valid(opts->cred->fqdn) || !opts->cred->akid[0]) {
    snprintf(err, errlen, "AKMA credentials: need K_AKMA, an A-KID and the AF's FQDN");
    return NULL;
  }
  if (opts->client_profile) {
    m5_msg_t probe;
    memset(&probe, 0, sizeof probe);
    probe.type = M5_MSG_REG;
    snprintf(probe.ue_svc_id, sizeof probe.ue_svc_id, "%s", opts->ue_svc_id);
    probe.client_profile_json = (char *)(uintptr_t)opts->client_profile;
    char *text = NULL;
    int rc = m5_msg_encode(&probe, &text, NULL);
    free(text);
    if (rc) {
      snprintf(err, errlen, "clientProfile: expected a JSON object");
      return NULL;
    }
  }
  m5c_t *c = calloc(1, sizeof *c);
  if (!c) {
    snprintf(err, errlen, "out of memory");
    return NULL;
  }
  c->o = *opts;
  if (!c->o.timeout_ms) c->o.timeout_ms = 10000;
  c->cred = *opts->cred;
  c->o.cred = &c->cred;
  int failed = 0;
  c->host = dup_or_null(opts->host, &failed);
  c->ue_svc_id = dup_or_null(opts->ue_svc_id, &failed);
  c->client_profile = dup_or_null(opts->client_profile, &failed);
  c->o.host = c->host;
  c->o.ue_svc_id = c->ue_svc_id;
  c->o.client_profile = c->client_profile;
  c->loop = failed ? NULL : m5_loop_new();
  if (!c->loop) {
    snprintf(err, errlen, "out of memory");
    m5c_free(c);
    return NULL;
  }
  c->ctx = m5_akma_client_ctx_new(opts->transport == M5C_DTLS, opts->tls12, err, errlen);
  if (!c->ctx) {
    m5c_free(c);
    return NULL;
  }
  return c;
}

void m5c_free(m5c_t *c) {
  if (!c) return;
  c->st = S_IDLE; /* endpoint callbacks during the frees below find nothing to do */
  if (c->loop) {
    m5_timer_id_t *timers[] = {&c->open_timer, &c->close_timer, &c->retry_timer};
    for (size_t i = 0; i < sizeof timers / sizeof timers[0]; i++)
      if (*timers[i]) m5_loop_timer_cancel(c->loop, *timers[i]);
  }
  m5c_chan_free(c->ch);
  m5c_chan_free(c->closing);
  if (c->ctx) SSL_CTX_free(c->ctx);
  for (size_t i = 0; i < M5C_DEDUP_WINDOW; i++)
    free(c->seen[i]);
  while (c->imdns) { /* the channels are gone: nothing is in flight any more */
    imdn_t *d = c->imdns;
    c->imdns = d->next;
    free(d->body);
    free(d);
  }
  if (c->loop) m5_loop_free(c->loop);
  free(c->host);
  free(c->ue_svc_id);
  free(c->client_profile);
  m5_wipe(&c->cred, sizeof c->cred);
  free(c);
}
