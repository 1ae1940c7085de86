/* K_AF source for the MSGin5G server, the AKMA AF (TS 33.535 cl. 6.3, architecture §3.4):
 * asks the AAnF (Naanf_AKMA_ApplicationKey_Get over HTTP/2 + mTLS, with our uaSecProtId) and
 * caches the answer by (A-KID, AF_ID) until its expiry, on one worker loop. Concurrent
 * handshakes for the same key share one AAnF request. A slow or absent AAnF delays only the
 * handshakes that need it. */
#ifndef M5_SERVER_AKMA_KEYS_H
#define M5_SERVER_AKMA_KEYS_H

#include "core/loop.h"
#include "tls/akma.h"

typedef struct akma_keys akma_keys_t;

typedef struct {
  const char *aanf_url;  /* e.g. "https://localhost:7443" (the /naanf-akma/v1/... is appended) */
  const char *cert_file; /* the AF's client certificate: SAN dNSName = afId */
  const char *key_file;
  const char *ca_file;
  uint32_t timeout_ms;   /* per AAnF request; 0 = 3000 */
  size_t max_cached;     /* entries; the oldest expiring go first; 0 = 100000 */
  size_t max_waiting;    /* handshakes waiting at once; beyond: M5_EFULL; 0 = 10000 */
  size_t max_fetches;    /* AAnF requests in flight; beyond: M5_EFULL; 0 = 512 */
} akma_keys_opts_t;

akma_keys_t *akma_keys_new(m5_loop_t *loop, const akma_keys_opts_t *opts, char *err,
                           size_t errlen);
/* Waiters still pending get M5_ECLOSED; cached keys are wiped. */
void akma_keys_free(akma_keys_t *k);

/* status: 0 with the key; M5_ENOENT the AAnF has no context for the A-KID (204/404); M5_EPERM
 * it refused us (403); M5_ETIMEDOUT / M5_EIO it is slow or down; M5_EPROTO a bad answer. */
typedef void (*akma_keys_fn)(void *waiter, int status, const m5_akma_key_t *key);

/* If the key is cached and not expired: copies it to *key and returns 0. Otherwise returns
 * M5_EAGAIN and calls done(waiter, ...) later on the loop (never from inside this call), or
 * an error at once (M5_EFULL). */
int akma_keys_get(akma_keys_t *k, const m5_akma_want_t *want, m5_akma_key_t *key,
                  akma_keys_fn done, void *waiter);
/* Forgets a waiter whose handshake died; its callback will not run. When it was the last
 * waiter of a request in flight, the request is cancelled: it no longer holds a slot. */
void akma_keys_cancel(akma_keys_t *k, void *waiter);

/* What akma_keys_get would do for want, without doing it: answer from the cache (HIT: a
 * key, or a remembered "no context"), join a request in flight (PENDING) or start one (MISS).
 * The transport charges per-source bounds by it before calling get. */
enum { AKMA_KEYS_HIT, AKMA_KEYS_PENDING, AKMA_KEYS_MISS };
int akma_keys_peek(akma_keys_t *k, const m5_akma_want_t *want);
/* AAnF requests in flight now. */
size_t akma_keys_pending(const akma_keys_t *k);

#endif
