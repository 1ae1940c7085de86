/* Bench UEs (bu.h): credentials, base64 and JSON bits, and the pool of UE sessions with a
 * bounded number of handshakes in progress. */
#include "bu.h"

#include "core/err.h"
#include "crypto/akma.h"

#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define PATH "msgin5g"

uint64_t bu_now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

int bu_cred(const char *supi, const uint8_t kausf[32], const char *fqdn, m5_akma_cred_t *c) {
  char realm[128];
  uint8_t atid[32];
  memset(c, 0, sizeof *c);
  int rc = m5_akma_kakma(kausf, supi, c->kakma) || m5_akma_atid(kausf, supi, atid) ||
           m5_akma_realm_from_supi(supi, 2, realm, sizeof realm) ||
           m5_akma_akid(M5_AKMA_DEFAULT_RID, atid, realm, c->akid, sizeof c->akid);
  OPENSSL_cleanse(atid, sizeof atid);
  if (rc) return -1;
  snprintf(c->fqdn, sizeof c->fqdn, "%s", fqdn);
  return 0;
}

/* ---- base64, JSON ---- */

static const char B64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

size_t bu_b64_enc(const uint8_t *in, size_t n, char *out) {
  size_t o = 0;
  for (size_t i = 0; i < n; i += 3) {
    uint32_t v = (uint32_t)in[i] << 16;
    if (i + 1 < n) v |= (uint32_t)in[i + 1] << 8;
    if (i + 2 < n) v |= in[i + 2];
    out[o++] = B64[v >> 18 & 63];
    out[o++] = B64[v >> 12 & 63];
    out[o++] = i + 1 < n ? B64[v >> 6 & 63] : '=';
    out[o++] = i + 2 < n ? B64[v & 63] : '=';
  }
  out[o] = 0;
  return o;
}

static int b64_val(int c) {
  const char *p = c ? strchr(B64, c) : NULL;
  return p ? (int)(p - B64) : -1;
}

long bu_b64_dec(const char *s, const char *end, uint8_t *out, size_t cap) {
  uint32_t acc = 0;
  int bits = 0;
  size_t o = 0;
  for (; s < end && *s != '"'; s++) {
    if (*s == '=' || *s == '\\') continue;
    int v = b64_val(*s);
    if (v < 0) return -1;
    acc = acc << 6 | (uint32_t)v;
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      if (o >= cap) return -1;
      out[o++] = (uint8_t)(acc >> bits);
    }
  }
  return (long)o;
}

const char *bu_json_str(const char *body, size_t len, const char *key, size_t *vlen) {
  char pat[40];
  int pn = snprintf(pat, sizeof pat, "\"%s\":\"", key);
  if (!body || pn < 0 || (size_t)pn >= sizeof pat) return NULL;
  const char *end = body + len;
  const char *p = memmem(body, len, pat, (size_t)pn);
  if (!p) return NULL;
  p += pn;
  const char *q = memchr(p, '"', (size_t)(end - p));
  if (!q) return NULL;
  *vlen = (size_t)(q - p);
  return p;
}

/* ---- the pool ---- */

static void ue_dead(bu_ue_t *u, int lost, const char *why) {
  bu_pool_t *p = u->pool;
  u->st = BU_DEAD;
  p->n_dead++;
  if (lost) p->n_lost++;
  if (p->cbs.on_down) p->cbs.on_down(u, lost, why, p->arg);
}

static void reg_done(void *arg, int status, const m5_coap_msg_t *resp, const uint8_t *body,
                     size_t len) {
  bu_ue_t *u = arg;
  bu_pool_t *p = u->pool;
  if (u->st != BU_REGISTERING) return;
  p->n_opening--;
  if (status || (resp->code != M5_COAP_CREATED && resp->code != M5_COAP_CHANGED)) {
    char code[8], why[200];
    snprintf(why, sizeof why, "REG failed: %s %.*s",
             status ? m5_strerror(status) : m5_coap_code_str(resp->code, code, sizeof code),
             (int)(len > 100 ? 100 : len), body ? (const char *)body : "");
    if (!status) p->n_refused++;
    ue_dead(u, 0, why);
    return;
  }
  u->st = BU_READY;
  p->n_ready++;
  p->t_last_ready = bu_now_ns();
  if (p->cbs.on_ready) p->cbs.on_ready(u, p->arg);
}

static void chan_up(m5c_chan_t *ch, m5_coap_ep_t *ep, void *arg) {
  (void)ch;
  bu_ue_t *u = arg;
  u->ep = ep;
  u->up = 1;
  u->st = BU_REGISTERING;
  char body[M5_MSG_ADDR_MAX + 64];
  int n = snprintf(body, sizeof body, "{\"msgType\":\"REG\",\"ueSvcId\":\"%s\"}", u->id);
  if (m5_coap_ep_request(ep, M5_COAP_POST, PATH, M5_COAP_FORMAT_JSON, (const uint8_t *)body,
                         (size_t)n, reg_done, u)) {
    u->pool->n_opening--;
    ue_dead(u, 0, "cannot send REG");
  }
}

static void chan_request(m5_coap_ep_t *ep, m5_coap_req_t *req, void *arg) {
  (void)ep;
  bu_ue_t *u = arg;
  if (u->st != BU_READY || !u->pool->cbs.on_request) {
    m5_coap_ep_respond_error(req, M5_COAP_SERVICE_UNAVAILABLE, "bench: not registered yet");
    return;
  }
  u->pool->cbs.on_request(u, req, u->pool->arg);
}

static void chan_down(m5c_chan_t *ch, int status, const char *why, void *arg) {
  bu_ue_t *u = arg;
  bu_pool_t *p = u->pool;
  bu_state_t was = u->st;
  m5c_chan_free(ch);
  u->ch = NULL;
  u->ep = NULL;
  if (was == BU_DEAD) return;
  if (was == BU_OPENING || was == BU_REGISTERING) p->n_opening--;
  if (was == BU_READY) p->n_ready--;
  char line[300];
  snprintf(line, sizeof line, "session down: %s (%s)", why, m5_strerror(status));
  if (was == BU_READY && p->frozen) {
    ue_dead(u, 1, line);
    return;
  }
  if (u->attempts >= p->max_attempts) {
    ue_dead(u, 0, line);
    return;
  }
  if (!p->quiet && p->retries < 5) fprintf(stderr, "bench: %s: %s; retrying\n", u->id, line);
  p->retries++;
  u->st = BU_IDLE;
  if (u->idx < p->next) p->next = u->idx;
}

int bu_pool_init(bu_pool_t *p, m5_loop_t *loop, SSL_CTX *ctx, const char *host, uint16_t port,
                 int n, const bu_cbs_t *cbs, void *arg) {
  memset(p, 0, sizeof *p);
  p->loop = loop;
  p->ctx = ctx;
  p->copts.host = host;
  p->copts.port = port;
  p->copts.transport = M5C_TLS;
  p->n = n;
  p->max_opening = 32;
  p->max_attempts = 5;
  p->cbs = *cbs;
  p->arg = arg;
  p->ue = calloc((size_t)(n > 0 ? n : 1), sizeof *p->ue);
  if (!p->ue) return -1;
  for (int i = 0; i < n; i++) {
    p->ue[i].idx = i;
    p->ue[i].pool = p;
  }
  return 0;
}

void bu_pool_open(bu_pool_t *p) {
  static const m5c_chan_cbs_t cbs = {chan_up, chan_request, chan_down};
  while (p->next < p->n && p->ue[p->next].st != BU_IDLE)
    p->next++;
  for (int i = p->next; i < p->n && p->n_opening < p->max_opening; i++) {
    bu_ue_t *u = &p->ue[i];
    if (u->st != BU_IDLE) continue;
    char err[200];
    if (!p->t_first_open) p->t_first_open = bu_now_ns();
    u->attempts++;
    m5c_opts_t o = p->copts; /* read at open only */
    if (u->port) o.port = u->port;
    u->ch = m5c_chan_open(p->loop, p->ctx, &o, &u->cred, &cbs, u, err, sizeof err);
    if (!u->ch) {
      ue_dead(u, 0, err);
      continue;
    }
    u->st = BU_OPENING;
    p->n_opening++;
  }
}

int bu_pool_settled(const bu_pool_t *p) {
  return p->n_ready + p->n_dead == p->n;
}

void bu_pool_free(bu_pool_t *p) {
  for (int i = 0; i < p->n; i++) {
    bu_ue_t *u = &p->ue[i];
    u->st = BU_DEAD; /* chan_down, if the free reports one, changes nothing */
    if (u->ch) m5c_chan_free(u->ch);
    u->ch = NULL;
    OPENSSL_cleanse(&u->cred, sizeof u->cred);
  }
  free(p->ue);
  p->ue = NULL;
}
