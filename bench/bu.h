/* Bench UEs: what the MSGin5G-1 generators m5load (point-to-point) and m5fan (group / topic
 * fan-out) share (docs/benchmarks.md). Not a product part: the generators build and read the
 * JSON bodies themselves (no jansson on their side), derive every UE's AKMA credentials from a
 * deterministic SUPI and K_AUSF, and hold thousands of UE sessions on one m5_loop.
 *
 * The pool: n UE sessions over libm5c's channel (src/client/chan.h: socket + TLS 1.3 with the
 * AKMA PSK + CoAP endpoint), each opened and registered (REG of its UE Service ID) with at most
 * max_opening handshakes and REGs in progress at once, so that a fleet stays inside m5s's
 * per-source bounds on half-open handshakes and AAnF fetches (docs/m5s.md, "Bounds before a UE
 * has proved anything"). A session that fails before it is registered is retried (up to
 * max_attempts opens); a refused REG is not retried. Once the owner sets `frozen`, a session
 * that goes down is lost (on_down with lost = 1), never re-opened. */
#ifndef M5_BENCH_BU_H
#define M5_BENCH_BU_H

#include "chan.h"

#include <stddef.h>
#include <stdint.h>

typedef enum { BU_IDLE, BU_OPENING, BU_REGISTERING, BU_READY, BU_DEAD } bu_state_t;

typedef struct bu_pool bu_pool_t;

typedef struct {
  char id[M5_MSG_ADDR_MAX + 1]; /* UE Service ID (set by the owner before bu_pool_open) */
  m5_akma_cred_t cred;          /* (set by the owner: bu_cred) */
  uint16_t port;                /* 0: the pool's server port; else this UE's (another m5s node) */
  int idx;
  bu_state_t st;
  int attempts;
  int up; /* a handshake of this UE completed (once is enough) */
  m5c_chan_t *ch;
  m5_coap_ep_t *ep; /* while BU_REGISTERING / BU_READY */
  bu_pool_t *pool;
  void *user;
} bu_ue_t;

typedef struct {
  /* REG answered 2.01 / 2.04: the session may send. */
  void (*on_ready)(bu_ue_t *u, void *arg);
  /* A request from the server on a registered session (a push). */
  void (*on_request)(bu_ue_t *u, m5_coap_req_t *req, void *arg);
  /* The UE is BU_DEAD: REG refused or every attempt failed (lost = 0), or a registered session
   * went down after the pool was frozen (lost = 1). why: one phrase. May be NULL. */
  void (*on_down)(bu_ue_t *u, int lost, const char *why, void *arg);
} bu_cbs_t;

struct bu_pool {
  m5_loop_t *loop;
  SSL_CTX *ctx;
  m5c_opts_t copts;
  bu_ue_t *ue;
  int n;
  int max_opening;  /* handshakes + REGs in progress at once (default 32) */
  int max_attempts; /* opens per UE before it is given up (default 5) */
  int frozen;       /* set by the owner: a session going down is lost, not retried */
  int quiet;        /* no per-UE lines on stderr for retries */
  bu_cbs_t cbs;
  void *arg;
  /* counters */
  int n_opening, n_ready, n_dead, n_lost, n_refused, retries;
  uint64_t t_first_open, t_last_ready; /* lc_now_ns() style monotonic ns */
  int next;                            /* no BU_IDLE UE below this index */
};

/* Deterministic credentials: K_AKMA, A-KID (default RID, realm from the SUPI, MNC of 2 digits)
 * and the AF FQDN, as `m5ctl subscriber add` provisions them. 0 or -1. */
int bu_cred(const char *supi, const uint8_t kausf[32], const char *fqdn, m5_akma_cred_t *c);

/* n UEs in BU_IDLE (ids and credentials to be filled by the owner). 0 or -1 (no memory). */
int bu_pool_init(bu_pool_t *p, m5_loop_t *loop, SSL_CTX *ctx, const char *host, uint16_t port,
                 int n, const bu_cbs_t *cbs, void *arg);
/* Starts handshakes while fewer than max_opening are in progress; call it every tick. */
void bu_pool_open(bu_pool_t *p);
/* Every UE is BU_READY or BU_DEAD. */
int bu_pool_settled(const bu_pool_t *p);
/* Closes every session (close_notify) and frees the pool; credentials wiped. */
void bu_pool_free(bu_pool_t *p);

/* base64 (RFC 4648 §4, padded), as MSG payloads are on the wire. enc writes 4*ceil(n/3)+1
 * bytes (with the NUL) and returns the length; dec reads until a '"' or end, returns the byte
 * count or -1. */
size_t bu_b64_enc(const uint8_t *in, size_t n, char *out);
long bu_b64_dec(const char *s, const char *end, uint8_t *out, size_t cap);

/* The string value of "key": in a JSON text (no unescaping: ids and base64 need none); NULL
 * when absent. */
const char *bu_json_str(const char *body, size_t len, const char *key, size_t *vlen);

uint64_t bu_now_ns(void);

#endif
