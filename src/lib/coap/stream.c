/* RFC 8323 side of a CoAP endpoint (endpoint.h): the input stream cut into messages (§3.2),
 * CSM with Max-Message-Size (§5.3; Block-Wise-Transfer is not announced, so bodies travel
 * whole and one larger than the peer's Max-Message-Size fails with M5_ERANGE), Ping/Pong
 * (§5.4), Release (§5.5: queued requests fail, the endpoint reports M5_ECLOSED once nothing
 * is in flight) and Abort (§5.6, both ways). Requests wait for the peer's CSM before they go
 * out, so the size check uses the peer's real limit. */
#include "coap/ep_int.h"

#include <stdio.h>
#include <string.h>

#include "core/err.h"
#include "core/log.h"

#define DOM "coap"

int ep_stream_start(m5_coap_ep_t *ep) {
  if (ep->csm_sent) return M5_OK;
  m5_coap_msg_t m;
  memset(&m, 0, sizeof m);
  m.code = M5_COAP_CSM;
  uint8_t v[4];
  size_t mms = ep->o.max_message_size > UINT32_MAX ? UINT32_MAX : ep->o.max_message_size;
  m5_coap_msg_add_opt(&m, M5_COAP_OPT_CSM_MAX_MESSAGE_SIZE, v,
                      m5_coap_uint_encode((uint32_t)mms, v));
  int rc = ep_send_msg(ep, &m, NULL);
  if (rc) return rc;
  M5_LOGD(DOM, "sent CSM (Max-Message-Size %zu)", mms);
  ep->csm_sent = 1;
  ep_kick(ep);
  return M5_OK;
}

void ep_stream_abort(m5_coap_ep_t *ep, const char *diag) {
  if (ep_gone(ep)) return;
  m5_coap_msg_t m;
  memset(&m, 0, sizeof m);
  m.code = M5_COAP_ABORT;
  m.payload = (const uint8_t *)diag;
  m.payload_len = strlen(diag);
  if (ep_send_msg(ep, &m, NULL) == M5_ERANGE) { /* the peer's limit is tiny: abort bare */
    m.payload = NULL;
    m.payload_len = 0;
    ep_send_msg(ep, &m, NULL);
  }
  ep->aborted = 1;
  ep_fail(ep, M5_EPROTO, diag);
}

static void signal_in(m5_coap_ep_t *ep, const m5_coap_msg_t *m) {
  m5_coap_msg_t r;
  memset(&r, 0, sizeof r);
  switch (m->code) {
  case M5_COAP_CSM:
    for (size_t i = 0; i < m->n_opts; i++) {
      const m5_coap_opt_t *o = &m->opts[i];
      uint32_t v;
      if (o->num == M5_COAP_OPT_CSM_MAX_MESSAGE_SIZE) {
        if (m5_coap_opt_uint(o, &v)) {
          ep_stream_abort(ep, "CSM Max-Message-Size longer than 4 bytes");
          return;
        }
        ep->peer_max = v;
      } else if (o->num & 1u) { /* RFC 8323 §5.3: unknown critical CSM option */
        ep_stream_abort(ep, "unsupported critical option in CSM");
        return;
      }
    }
    M5_LOGD(DOM, "peer CSM: Max-Message-Size %zu", ep->peer_max);
    ep->csm_rcvd = 1;
    ep_kick(ep);
    break;
  case M5_COAP_PING:
    r.code = M5_COAP_PONG;
    r.token_len = m->token_len;
    memcpy(r.token, m->token, m->token_len);
    M5_LOGD(DOM, "Ping -> Pong");
    ep_send_msg(ep, &r, NULL);
    break;
  case M5_COAP_RELEASE:
    M5_LOGD(DOM, "peer sent Release");
    ep->released = 1;
    ep_kick(ep);
    break;
  case M5_COAP_ABORT: {
    /* The diagnostic is peer text: only its printable bytes reach our logs. */
    char diag[96];
    size_t n = 0;
    for (size_t i = 0; i < m->payload_len && n + 1 < sizeof diag; i++) {
      uint8_t c = m->payload[i];
      diag[n++] = (c >= 0x20 && c < 0x7F) ? (char)c : '?';
    }
    diag[n] = '\0';
    char why[128];
    snprintf(why, sizeof why, "peer sent Abort: %s", diag);
    ep_fail(ep, M5_ECLOSED, why);
    break;
  }
  default: /* Pong, and signals we do not know: nothing to do */
    break;
  }
}

static void msg_in(m5_coap_ep_t *ep, const m5_coap_msg_t *m, const uint8_t *raw, size_t len) {
  if (!ep->csm_rcvd && m->code != M5_COAP_CSM) {
    ep_stream_abort(ep, "first message is not a CSM");
    return;
  }
  unsigned cls = m->code >> 5;
  if (m->code == M5_COAP_EMPTY) return; /* §3.2: empty messages are ignored */
  if (cls == 7) {
    signal_in(ep, m);
  } else if (cls == 0) {
    ep_in_request(ep, m, raw, len);
  } else if (cls >= 2 && cls <= 5) {
    out_t *o = ep_out_by_token(ep, m);
    if (o)
      ep_out_response(ep, o, m);
    else
      M5_LOGD(DOM, "response for an unknown token dropped");
  }
}

int ep_stream_input(m5_coap_ep_t *ep, const uint8_t *p, size_t n) {
  if (ep->rx_busy) { /* from inside a callback: the outer loop parses it */
    if (m5_buf_append(&ep->rx, p, n)) {
      ep_stream_abort(ep, "input exceeds Max-Message-Size");
      return M5_EPROTO;
    }
    return M5_OK;
  }
  int rc = ep_stream_start(ep);
  if (rc) return rc;
  ep->rx_busy = 1;
  for (;;) {
    size_t room = ep->rx.max - ep->rx.len, take = n < room ? n : room;
    if (take && (rc = m5_buf_append(&ep->rx, p, take))) {
      ep_fail(ep, rc, "out of memory");
      break;
    }
    if (take) p += take;
    n -= take;
    size_t off = 0;
    while (ep->rx.len > off) {
      m5_coap_msg_t m;
      size_t used = 0, need = 0;
      rc = m5_coap_parse_tcp(ep->rx.data + off, ep->rx.len - off, ep->o.max_message_size, &m, &used,
                             &need);
      if (rc == M5_EAGAIN) {
        rc = M5_OK;
        break;
      }
      if (rc) {
        ep_stream_abort(ep,
                        rc == M5_ERANGE ? "message exceeds Max-Message-Size" : "malformed message");
        rc = M5_EPROTO;
        break;
      }
      msg_in(ep, &m, ep->rx.data + off, used);
      if (ep_gone(ep)) break;
      off += used;
    }
    if (rc || ep_gone(ep)) break;
    m5_buf_consume(&ep->rx, off);
    if (n == 0) break;
  }
  ep->rx_busy = 0;
  if (!rc && ep->aborted) rc = M5_EPROTO;
  if (ep->dead) return rc ? rc : M5_ECLOSED;
  if (!ep->rx.len) m5_buf_free(&ep->rx); /* an idle session holds no input buffer */
  return rc;
}
