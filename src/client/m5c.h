/* libm5c: the MSGin5G Client (UE side of MSGin5G-1, architecture §3.1 and §4).
 *
 * One client holds one session to one server: CoAP over DTLS 1.2 (coaps://) or over TLS 1.3
 * (coaps+tcp://, ALPN "coap"), keyed by AKMA (PSK = K_AF, derived inside the handshake from
 * K_AKMA and the AF's FQDN; identity "3GPP-AKMA" + A-KID). Every new session starts with REG
 * of the client's UE Service ID; a lost session is re-opened (and re-registered) by
 * m5c_run().
 *
 * The calls are blocking in the sense that each one runs the client's own event loop until
 * its exchange is done or its timeout passes; messages the server pushes meanwhile go to the
 * on_message callback. The server gets 2.04 with a MSGRESP after the callback returned, so a
 * message counts as delivered only once the application has seen it. Pushes repeated by the
 * server (same oriAddr and msgId, e.g. after a lost ACK) are answered again but not handed to
 * the application twice (bounded window of the last M5C_DEDUP_WINDOW messages).
 *
 * Delivery reports: for a pushed MSG with delivStReqInd true the client sends the server an
 * IMDN (oriAddr = this UE, destAddr = the message's oriAddr, same msgId, delivSt
 * REPT_DELY_SUCCESS) after on_message returned and the 2.04 went out, without waiting for its
 * answer. A 2.xx answer settles it; a 4.xx (a server without IMDN support answers 4.00) is
 * logged and the report dropped, never an error of the session; a lost session, a time-out or
 * a 5.xx keeps it for the next session, which sends it again right after its REG. At most
 * M5C_IMDN_MAX reports wait (beyond, the oldest waiting one is dropped with a warning);
 * m5c_free() drops those still waiting.
 *
 * Everything runs on the calling thread; a client must not be used from two threads. */
#ifndef M5_CLIENT_M5C_H
#define M5_CLIENT_M5C_H

#include "core/loop.h"
#include "msg/msg.h"
#include "tls/akma.h"

#include <stddef.h>
#include <stdint.h>

typedef struct m5c m5c_t;

#define M5C_DEFAULT_PORT 5684
#define M5C_DEDUP_WINDOW 1024
#define M5C_IMDN_MAX 256

typedef enum { M5C_DTLS, M5C_TLS } m5c_transport_t;

/* A pushed MSG or IMDN, parsed (m) and as received (body, len: the JSON text). */
typedef void (*m5c_message_fn)(m5c_t *c, const m5_msg_t *m, const uint8_t *body, size_t len,
                               void *arg);

typedef struct {
  const char *host; /* DNS name or IP literal of the server */
  uint16_t port;    /* 0 = M5C_DEFAULT_PORT */
  m5c_transport_t transport;
  int tls12;                  /* TLS transport: also offer TLS 1.2 (test aid) */
  const m5_akma_cred_t *cred; /* K_AKMA, A-KID, AF FQDN (SNI); copied, wiped on free */
  const char *ue_svc_id;      /* the UE Service ID to register */
  const char *client_profile; /* REG clientProfile as JSON object text, or NULL */
  uint32_t timeout_ms;        /* per exchange (connect, REG, MSG, DEREG); 0 = 10000 */
  m5c_message_fn on_message;  /* may be NULL: pushes are acknowledged and dropped */
  void *arg;
} m5c_opts_t;

/* Copies what it needs from opts (the strings and the credentials). NULL when an option is
 * unusable or memory is short; err then says which. Opens nothing yet. */
m5c_t *m5c_new(const m5c_opts_t *opts, char *err, size_t errlen);
/* Closes the session (without DEREG) and wipes the keys. */
void m5c_free(m5c_t *c);

/* Opens the session: connect, (D)TLS handshake, on TLS the CSM, then REG. 0 once registered;
 * M5_ECRYPTO when the handshake or the authentication failed (also 4.01 to REG), M5_EIO when
 * the server cannot be reached, M5_EPERM when the server refused REG (4.03, ...),
 * M5_ETIMEDOUT. Connecting an open session only repeats nothing and returns 0. */
int m5c_connect(m5c_t *c);
/* DEREG, then closes the session. */
int m5c_deregister(m5c_t *c);

/* Sends MSG m (its type must be M5_MSG_MSG; an empty oriAddr is filled with this UE) and
 * waits for the answer. 0 with *resp filled (m5_msg_free() it) when the server answered 2.04:
 * resp->status is "" (accepted), DELY_STORED or DELY_FAILED (+ failure_cause). Other answers:
 * M5_EPERM (4.03, 4.13, 4.29, 5.03, ...), M5_EINVAL (4.00, or m unusable), M5_ECRYPTO (4.01),
 * M5_ETIMEDOUT, M5_ECLOSED (session lost). Opens the session first if needed. */
int m5c_send(m5c_t *c, const m5_msg_t *m, m5_msg_t *resp);

/* Messaging Topics (TS 23.554 cl. 8.8.1; docs/protocol.md §4): subscribes this UE to the n
 * topics (1..M5_MSG_TOPICS_MAX names, each m5_msg_name_valid, no two equal; checked before
 * anything is sent: M5_EINVAL) until expiry (Unix seconds; 0 = the server's default), and
 * waits for the answer. 0 with *resp filled (m5_msg_free() it) when the server answered 2.04:
 * resp->type M5_MSG_TOPICSUB, resp->topics / n_topics the subscribed topics and resp->expiry
 * the subscriptions' end as the server set it (0 if the server's 2.04 had no body). Other
 * answers as m5c_send (M5_EINVAL for 4.00, e.g. a server without topics; M5_EPERM for 4.03, a
 * topic this UE may not subscribe to). Opens the session first if needed. The subscriptions
 * belong to the UE Service ID and outlive the session. */
int m5c_subscribe(m5c_t *c, const char *const *topics, size_t n, int64_t expiry,
                  m5_msg_t *resp);
/* TOPICUNSUB of the n topics (same rules; a topic not subscribed is not an error): 0 with
 * *resp (type M5_MSG_TOPICUNSUB) on 2.04, other answers as m5c_subscribe. */
int m5c_unsubscribe(m5c_t *c, const char *const *topics, size_t n, m5_msg_t *resp);

/* The JSON line m5c listen prints for a pushed body (m parsed from body, as on_message gets
 * them): the body as received, plus "payloadText" when a MSG's payload is UTF-8 and, for a
 * MSG whose destAddr is a GROUP, BC or TOPIC address (it came through a group, a broadcast
 * area or a topic), "via": {"addrType": ..., "addr": ...}. malloc'd text without a newline
 * (free() it); NULL when out of memory or body is not a JSON object. */
char *m5c_push_line(const m5_msg_t *m, const uint8_t *body, size_t len);

/* Runs the loop for up to timeout_ms (0 = until m5c_stop()), handing pushes to on_message and
 * re-opening a lost session with back-off. 0 when stopped, M5_ETIMEDOUT when the time ran
 * out, M5_ECRYPTO when re-authentication failed for good (4.01 / handshake refused), M5_EIO. */
int m5c_run(m5c_t *c, uint64_t timeout_ms);
/* Makes m5c_run() (or the exchange in progress) return; callable from on_message or a signal
 * callback on the client's loop. */
void m5c_stop(m5c_t *c);

/* Runs the loop until no delivery report is in flight any more (answered, or its session
 * lost), at most timeout_ms (0 = no limit), e.g. before m5c_free() after m5c_run(). 0 when no
 * report waits any more; M5_EAGAIN when some wait for the next session; M5_ETIMEDOUT. */
int m5c_flush_reports(m5c_t *c, uint64_t timeout_ms);
/* Delivery reports not settled yet (in flight or waiting for the next session). */
size_t m5c_pending_reports(const m5c_t *c);

/* The loop the client runs on, e.g. for m5_loop_signal(). */
m5_loop_t *m5c_loop(m5c_t *c);

/* After a failed call: the CoAP code the server answered (0 if none, e.g. on a timeout) and a
 * one-line explanation (the server's diagnostic payload, or what failed locally). */
uint8_t m5c_last_code(const m5c_t *c);
const char *m5c_last_error(const m5c_t *c);
/* The registration's expiry from the last REG answer (Unix seconds), 0 if it gave none. */
int64_t m5c_reg_expiry(const m5c_t *c);

#endif
