/* K_AF source of the AKMA AF (akma_keys.h; TS 33.535 cl. 6.3, TS 29.535
 * Naanf_AKMA_ApplicationKey_Get, architecture §3.4 and §4).
 *
 * One cache entry per (A-KID, FQDN, Ua* id), in a hash map:
 *  - PENDING: one AAnF request is in flight; every handshake that needs the key waits on the
 *    entry's list, so a burst of handshakes for one UE costs one request;
 *  - KEY: K_AF with its expiry, served until the expiry (wall clock, as the AAnF states it);
 *  - NOENT: the AAnF had no context for the A-KID. Kept for NOENT_TTL_MS (monotonic), so a UE
 *    retrying with a stale A-KID, or a flood of one unknown A-KID, costs one AAnF request per
 *    second rather than one per ClientHello. get() answers M5_ENOENT at once for it. A new
 *    registration at the AAnF is therefore seen at most a second late.
 * Other failures are not cached: the next handshake asks again.
 *
 * KEY and NOENT entries sit in a min-heap by the time they stop being valid; a sweep (at each
 * get() and on a 1 s timer while the heap is not empty) wipes the expired ones, and when
 * max_cached entries are held the earliest-expiring one makes room. PENDING entries are
 * bounded by max_fetches (requests in flight), and their waiters by max_waiting.
 *
 * A PENDING entry whose last waiter goes (every handshake that wanted the key has ended) is
 * abandoned: its HTTP request is cancelled (an HTTP/2 stream reset) and the entry dropped, so
 * a peer that sends a ClientHello and hangs up holds no request slot (architecture §4; the
 * per-source bounds in front of this are src_limits.h's).
 *
 * Waiters are indexed by their pointer, so akma_keys_cancel() is O(1) and a waiter can wait
 * for one key at a time. Callbacks run from the loop (the HTTP client's completion), never
 * from inside akma_keys_get(); one of them may call get, cancel or even akma_keys_free.
 * K_AF is wiped when an entry goes and is never logged; so is the kaf text in the parsed
 * answer (the HTTP client wipes the response body). */
#include "server/ue/akma_keys.h"

#include "core/err.h"
#include "core/hmap.h"
#include "core/log.h"
#include "crypto/codec.h"
#include "http/client.h"

#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define DEFAULT_TIMEOUT_MS 3000u
#define DEFAULT_MAX_CACHED 100000u
#define DEFAULT_MAX_WAITING 10000u
#define DEFAULT_MAX_FETCHES 512u
#define NOENT_TTL_MS 1000u
#define SWEEP_MS 1000u
#define API_PATH "/naanf-akma/v1/retrieve-applicationkey"

enum { E_PENDING, E_KEY, E_NOENT };

typedef struct wnode wnode_t;

typedef struct {
  wnode_t *head, *tail;
} wlist_t;

typedef struct entry entry_t;

struct wnode {
  entry_t *e; /* the PENDING entry waited on; NULL once its answer is being delivered */
  void *waiter;
  akma_keys_fn done;
  wlist_t *list;
  wnode_t *prev, *next;
};

struct entry {
  akma_keys_t *k;
  int state;
  m5_akma_key_t key;
  int64_t until_ms;       /* wall clock: KEY entries are served while now < this */
  uint64_t noent_mono_ms; /* NOENT entries answer M5_ENOENT while the monotonic clock < this */
  size_t heap_pos;        /* SIZE_MAX: not in the heap (PENDING) */
  wlist_t waiters;
  size_t klen;
  unsigned char hkey[]; /* akid NUL fqdn NUL ua[5]: the map key */
};

struct akma_keys {
  m5_loop_t *loop;
  m5_http_client_t *http;
  char *url;
  size_t max_cached, max_waiting, max_fetches;
  size_t n_pending;   /* PENDING entries = AAnF requests in flight */
  m5_hmap_t *entries; /* hkey -> entry_t */
  m5_hmap_t *waiters; /* the waiter pointer's bytes -> wnode_t */
  entry_t **heap;     /* KEY and NOENT entries, earliest until_ms first */
  size_t heap_len, heap_cap;
  m5_timer_id_t sweep_timer;
  int depth; /* callbacks running */
  int dying; /* akma_keys_free() ran inside a callback: finish when they unwind */
};

static int64_t wall_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- the heap of cached entries ---- */

static void heap_set(akma_keys_t *k, size_t i, entry_t *e) {
  k->heap[i] = e;
  e->heap_pos = i;
}

static void heap_up(akma_keys_t *k, size_t i) {
  entry_t *e = k->heap[i];
  while (i > 0) {
    size_t p = (i - 1) / 2;
    if (k->heap[p]->until_ms <= e->until_ms) break;
    heap_set(k, i, k->heap[p]);
    i = p;
  }
  heap_set(k, i, e);
}

static void heap_down(akma_keys_t *k, size_t i) {
  entry_t *e = k->heap[i];
  for (;;) {
    size_t l = 2 * i + 1, r = l + 1, m = i;
    int64_t best = e->until_ms;
    if (l < k->heap_len && k->heap[l]->until_ms < best) {
      m = l;
      best = k->heap[l]->until_ms;
    }
    if (r < k->heap_len && k->heap[r]->until_ms < best) m = r;
    if (m == i) break;
    heap_set(k, i, k->heap[m]);
    i = m;
  }
  heap_set(k, i, e);
}

static int heap_push(akma_keys_t *k, entry_t *e) {
  if (k->heap_len == k->heap_cap) {
    size_t cap = k->heap_cap ? k->heap_cap * 2 : 64;
    entry_t **h = realloc(k->heap, cap * sizeof *h);
    if (!h) return M5_ENOMEM;
    k->heap = h;
    k->heap_cap = cap;
  }
  k->heap[k->heap_len] = e;
  e->heap_pos = k->heap_len++;
  heap_up(k, e->heap_pos);
  return M5_OK;
}

static void heap_remove(akma_keys_t *k, entry_t *e) {
  size_t i = e->heap_pos;
  if (i == SIZE_MAX) return;
  e->heap_pos = SIZE_MAX;
  entry_t *last = k->heap[--k->heap_len];
  if (last == e) return;
  k->heap[i] = last;
  last->heap_pos = i;
  heap_down(k, i);
  heap_up(k, last->heap_pos);
}

/* ---- entries ---- */

static void entry_free(void *p) {
  entry_t *e = p;
  m5_wipe(&e->key, sizeof e->key);
  free(e);
}

/* Removes a cached (not pending) entry from the heap and the map and wipes it. */
static void entry_drop(akma_keys_t *k, entry_t *e) {
  heap_remove(k, e);
  m5_hmap_del(k->entries, e->hkey, e->klen);
  entry_free(e);
}

static void sweep(akma_keys_t *k) {
  int64_t now = wall_ms();
  while (k->heap_len > 0 && k->heap[0]->until_ms <= now)
    entry_drop(k, k->heap[0]);
}

static void sweep_cb(m5_loop_t *loop, void *arg) {
  akma_keys_t *k = arg;
  k->sweep_timer = 0;
  sweep(k);
  if (k->heap_len > 0) k->sweep_timer = m5_loop_timer_add(loop, SWEEP_MS, sweep_cb, k);
}

/* Caches a finished entry (KEY or NOENT), making room if max_cached are held. */
static int entry_cache(akma_keys_t *k, entry_t *e) {
  sweep(k);
  while (k->heap_len > 0 && k->heap_len >= k->max_cached)
    entry_drop(k, k->heap[0]);
  int rc = heap_push(k, e);
  if (rc == M5_OK && !k->sweep_timer)
    k->sweep_timer = m5_loop_timer_add(k->loop, SWEEP_MS, sweep_cb, k);
  return rc;
}

/* The map key: akid NUL fqdn NUL ua. M5_EINVAL for names that are empty or too long. */
static int make_hkey(const m5_akma_want_t *w, unsigned char *out, size_t outlen, size_t *len) {
  size_t al = strnlen(w->akid, sizeof w->akid), fl = strnlen(w->fqdn, sizeof w->fqdn);
  if (al == 0 || al == sizeof w->akid || fl == 0 || fl == sizeof w->fqdn) return M5_EINVAL;
  size_t n = al + 1 + fl + 1 + M5_AKMA_UA_LEN;
  if (n > outlen) return M5_EINVAL;
  memcpy(out, w->akid, al + 1);
  memcpy(out + al + 1, w->fqdn, fl + 1);
  memcpy(out + al + 1 + fl + 1, w->ua, M5_AKMA_UA_LEN);
  *len = n;
  return M5_OK;
}

/* ---- waiters ---- */

static void wlist_unlink(wnode_t *n) {
  wlist_t *l = n->list;
  if (n->prev)
    n->prev->next = n->next;
  else
    l->head = n->next;
  if (n->next)
    n->next->prev = n->prev;
  else
    l->tail = n->prev;
  n->prev = n->next = NULL;
  n->list = NULL;
}

static void wlist_append(wlist_t *l, wnode_t *n) {
  n->list = l;
  n->next = NULL;
  n->prev = l->tail;
  if (l->tail)
    l->tail->next = n;
  else
    l->head = n;
  l->tail = n;
}

static int waiter_add(akma_keys_t *k, entry_t *e, void *waiter, akma_keys_fn done) {
  if (m5_hmap_get(k->waiters, &waiter, sizeof waiter)) return M5_EEXIST;
  wnode_t *n = calloc(1, sizeof *n);
  if (!n) return M5_ENOMEM;
  n->e = e;
  n->waiter = waiter;
  n->done = done;
  if (m5_hmap_put(k->waiters, &waiter, sizeof waiter, n, NULL) != M5_OK) {
    free(n);
    return M5_ENOMEM;
  }
  wlist_append(&e->waiters, n);
  return M5_OK;
}

static void on_answer(void *arg, int status, long http_status, const uint8_t *body, size_t len);

/* Last waiter gone: the request no longer serves anyone and must not hold a slot. */
static void abandon(akma_keys_t *k, entry_t *e) {
  m5_http_client_cancel(k->http, on_answer, e);
  m5_hmap_del(k->entries, e->hkey, e->klen);
  k->n_pending--;
  entry_free(e);
}

/* Removes a waiter without abandoning its entry (the entry is being set up). */
static void n_detach(akma_keys_t *k, void *waiter) {
  wnode_t *n = m5_hmap_del(k->waiters, &waiter, sizeof waiter);
  if (!n) return;
  wlist_unlink(n);
  free(n);
}

void akma_keys_cancel(akma_keys_t *k, void *waiter) {
  if (!k) return;
  wnode_t *n = m5_hmap_del(k->waiters, &waiter, sizeof waiter);
  if (!n) return;
  entry_t *e = n->e;
  wlist_unlink(n);
  free(n);
  if (e && e->state == E_PENDING && !e->waiters.head && !k->dying) abandon(k, e);
}

static void destroy(akma_keys_t *k) {
  if (k->sweep_timer) m5_loop_timer_cancel(k->loop, k->sweep_timer);
  m5_hmap_free(k->entries, entry_free);
  m5_hmap_free(k->waiters, free);
  free(k->heap);
  free(k->url);
  free(k);
}

/* Calls every waiter of the list (detached from its entry) with the result. */
static void deliver(akma_keys_t *k, wlist_t *l, int status, const m5_akma_key_t *key) {
  k->depth++;
  while (l->head) {
    wnode_t *n = l->head;
    wlist_unlink(n);
    m5_hmap_del(k->waiters, &n->waiter, sizeof n->waiter);
    void *waiter = n->waiter;
    akma_keys_fn done = n->done;
    free(n);
    if (k->dying)
      done(waiter, M5_ECLOSED, NULL);
    else
      done(waiter, status, status == 0 ? key : NULL);
  }
  k->depth--;
}

/* ---- the AAnF's answer ---- */

static int digits(const char *p, int n, int *out) {
  int v = 0;
  for (int i = 0; i < n; i++) {
    if (p[i] < '0' || p[i] > '9') return -1;
    v = v * 10 + (p[i] - '0');
  }
  *out = v;
  return 0;
}

/* RFC 3339 date-time ("2026-11-29T03:17:31Z", optional fraction, "Z" or a numeric offset)
 * to Unix seconds. */
static int parse_rfc3339(const char *s, int64_t *out) {
  int y, mo, d, h, mi, sec;
  if (strlen(s) < 20 || digits(s, 4, &y) || s[4] != '-' || digits(s + 5, 2, &mo) || s[7] != '-' ||
      digits(s + 8, 2, &d) || (s[10] != 'T' && s[10] != 't') || digits(s + 11, 2, &h) ||
      s[13] != ':' || digits(s + 14, 2, &mi) || s[16] != ':' || digits(s + 17, 2, &sec))
    return M5_EINVAL;
  if (mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || sec > 60) return M5_EINVAL;
  const char *p = s + 19;
  if (*p == '.') {
    p++;
    if (*p < '0' || *p > '9') return M5_EINVAL;
    while (*p >= '0' && *p <= '9')
      p++;
  }
  int off = 0;
  if ((p[0] == 'Z' || p[0] == 'z') && p[1] == '\0') {
    off = 0;
  } else if ((p[0] == '+' || p[0] == '-') && strlen(p) == 6 && p[3] == ':') {
    int oh, om;
    if (digits(p + 1, 2, &oh) || digits(p + 4, 2, &om) || oh > 23 || om > 59) return M5_EINVAL;
    off = (oh * 60 + om) * 60 * (p[0] == '+' ? 1 : -1);
  } else {
    return M5_EINVAL;
  }
  struct tm tm = {.tm_year = y - 1900,
                  .tm_mon = mo - 1,
                  .tm_mday = d,
                  .tm_hour = h,
                  .tm_min = mi,
                  .tm_sec = sec > 59 ? 59 : sec};
  time_t t = timegm(&tm);
  if (t == (time_t)-1) return M5_EINVAL;
  *out = (int64_t)t - off;
  return M5_OK;
}

/* AkmaAfKeyData {kaf, expiry, supi} -> key. M5_EPROTO for anything else. */
static int parse_key(const uint8_t *body, size_t len, m5_akma_key_t *key) {
  json_error_t jerr;
  json_t *root = json_loadb((const char *)body, len, JSON_REJECT_DUPLICATES, &jerr);
  if (!root) return M5_EPROTO;
  int rc = M5_EPROTO;
  json_t *jkaf = json_object_get(root, "kaf");
  const char *kaf = json_string_value(jkaf);
  const char *expiry = json_string_value(json_object_get(root, "expiry"));
  const char *supi = json_string_value(json_object_get(root, "supi"));
  size_t n = 0;
  if (!json_is_object(root) || !kaf || !expiry || !supi) goto out;
  if (strlen(kaf) != 2 * M5_AKMA_KEY_LEN ||
      m5_hex_decode(kaf, key->kaf, sizeof key->kaf, &n) != M5_OK || n != M5_AKMA_KEY_LEN)
    goto out;
  if (parse_rfc3339(expiry, &key->expiry) != M5_OK) goto out;
  if (strncmp(supi, "imsi-", 5) != 0 || m5_akma_supi_valid(supi + 5) != M5_OK ||
      strlen(supi + 5) > M5_AKMA_SUPI_MAX)
    goto out;
  snprintf(key->supi, sizeof key->supi, "%s", supi + 5);
  rc = M5_OK;
out:
  /* jansson frees its copy of the kaf text without wiping it. */
  if (kaf) m5_wipe((char *)kaf, strlen(kaf));
  json_decref(root);
  if (rc != M5_OK) m5_wipe(key, sizeof *key);
  return rc;
}

static void on_answer(void *arg, int status, long http_status, const uint8_t *body, size_t len) {
  entry_t *e = arg;
  akma_keys_t *k = e->k;
  m5_akma_key_t key;
  memset(&key, 0, sizeof key);
  int rc = status;
  if (k->dying) {
    rc = M5_ECLOSED;
  } else if (status == M5_ERANGE) {
    rc = M5_EPROTO; /* an answer far larger than AkmaAfKeyData */
  } else if (status == 0) {
    if (http_status == 200)
      rc = parse_key(body, len, &key);
    else if (http_status == 204 || http_status == 404)
      rc = M5_ENOENT;
    else if (http_status == 403)
      rc = M5_EPERM;
    else
      rc = M5_EPROTO;
    if (rc == M5_OK && key.expiry <= wall_ms() / 1000) {
      M5_LOGW("akma", "the AAnF sent a K_AF that has already expired; check both clocks");
      rc = M5_EPROTO;
    }
  }
  if (rc == M5_EPERM)
    M5_LOGW("akma", "the AAnF refused us (403): is our certificate's dNSName on its allow-list?");
  else if (rc == M5_EPROTO)
    M5_LOGW("akma", "unusable answer from the AAnF (HTTP %ld)", http_status);
  else if (rc != M5_OK && rc != M5_ENOENT)
    M5_LOGD("akma", "AAnF request failed: %s", m5_strerror(rc));

  k->n_pending--;
  wlist_t waiting = e->waiters;
  for (wnode_t *n = waiting.head; n; n = n->next) {
    n->list = &waiting;
    n->e = NULL;
  }
  e->waiters.head = e->waiters.tail = NULL;

  int cached = 0;
  if (rc == M5_OK || rc == M5_ENOENT) {
    e->state = rc == M5_OK ? E_KEY : E_NOENT;
    if (rc == M5_OK) {
      e->key = key;
      e->until_ms = key.expiry * 1000;
    } else {
      e->noent_mono_ms = m5_clock_mono_ms() + NOENT_TTL_MS;
      e->until_ms = wall_ms() + NOENT_TTL_MS;
    }
    cached = entry_cache(k, e) == M5_OK;
  }
  if (!cached) {
    m5_hmap_del(k->entries, e->hkey, e->klen);
    entry_free(e);
  }
  deliver(k, &waiting, rc, &key);
  m5_wipe(&key, sizeof key);
  if (k->dying && k->depth == 0) destroy(k);
}

/* AkmaAfKeyRequest with our uaSecProtId (omitted for TLS 1.3, its default). */
static char *request_body(const m5_akma_want_t *want, size_t *len) {
  static const uint8_t tls13[M5_AKMA_UA_LEN] = {0x01, 0x00, 0x00, 0x00, 0x07};
  json_t *o = json_pack("{s:s, s:s}", "afId", want->fqdn, "aKId", want->akid);
  if (!o) return NULL; /* not UTF-8 */
  if (memcmp(want->ua, tls13, sizeof tls13) != 0) {
    char hex[2 * M5_AKMA_UA_LEN + 1];
    m5_hex_encode(want->ua, M5_AKMA_UA_LEN, hex, sizeof hex);
    if (json_object_set_new(o, "uaSecProtId", json_string(hex)) != 0) {
      json_decref(o);
      return NULL;
    }
  }
  char *s = json_dumps(o, JSON_COMPACT);
  json_decref(o);
  if (s) *len = strlen(s);
  return s;
}

int akma_keys_get(akma_keys_t *k, const m5_akma_want_t *want, m5_akma_key_t *key, akma_keys_fn done,
                  void *waiter) {
  if (!k || !want || !key || !done) return M5_EINVAL;
  if (k->dying) return M5_ECLOSED;
  unsigned char hkey[M5_AKMA_AKID_MAX + M5_AKMA_FQDN_MAX + 2 + M5_AKMA_UA_LEN];
  size_t klen;
  int rc = make_hkey(want, hkey, sizeof hkey, &klen);
  if (rc != M5_OK) return rc;
  sweep(k);
  entry_t *e = m5_hmap_get(k->entries, hkey, klen);
  if (e && e->state == E_KEY) {
    *key = e->key;
    return M5_OK;
  }
  if (e && e->state == E_NOENT) {
    if (m5_clock_mono_ms() < e->noent_mono_ms) return M5_ENOENT;
    entry_drop(k, e);
    e = NULL;
  }
  if (m5_hmap_count(k->waiters) >= k->max_waiting) return M5_EFULL;
  if (e) {
    rc = waiter_add(k, e, waiter, done);
    return rc == M5_OK ? M5_EAGAIN : rc;
  }
  if (m5_hmap_get(k->waiters, &waiter, sizeof waiter)) return M5_EEXIST;
  if (k->n_pending >= k->max_fetches) return M5_EFULL;

  size_t blen = 0;
  char *body = request_body(want, &blen);
  if (!body) return M5_EINVAL;
  e = calloc(1, sizeof *e + klen);
  if (!e) {
    free(body);
    return M5_ENOMEM;
  }
  e->k = k;
  e->state = E_PENDING;
  e->heap_pos = SIZE_MAX;
  e->klen = klen;
  memcpy(e->hkey, hkey, klen);
  rc = m5_hmap_put(k->entries, hkey, klen, e, NULL);
  if (rc == M5_OK) {
    rc = waiter_add(k, e, waiter, done);
    if (rc != M5_OK) m5_hmap_del(k->entries, hkey, klen);
  }
  if (rc == M5_OK) {
    rc = m5_http_client_post_json(k->http, k->url, body, blen, on_answer, e);
    if (rc != M5_OK) {
      n_detach(k, waiter);
      m5_hmap_del(k->entries, hkey, klen);
    } else {
      k->n_pending++;
    }
  }
  free(body);
  if (rc != M5_OK) {
    free(e);
    return rc;
  }
  return M5_EAGAIN;
}

int akma_keys_peek(akma_keys_t *k, const m5_akma_want_t *want) {
  unsigned char hkey[M5_AKMA_AKID_MAX + M5_AKMA_FQDN_MAX + 2 + M5_AKMA_UA_LEN];
  size_t klen;
  if (!k || !want || make_hkey(want, hkey, sizeof hkey, &klen) != M5_OK) return AKMA_KEYS_HIT;
  const entry_t *e = m5_hmap_get(k->entries, hkey, klen);
  if (!e) return AKMA_KEYS_MISS;
  if (e->state == E_PENDING) return AKMA_KEYS_PENDING;
  if (e->state == E_KEY && e->until_ms > wall_ms()) return AKMA_KEYS_HIT;
  if (e->state == E_NOENT && m5_clock_mono_ms() < e->noent_mono_ms) return AKMA_KEYS_HIT;
  return AKMA_KEYS_MISS;
}

size_t akma_keys_pending(const akma_keys_t *k) {
  return k ? k->n_pending : 0;
}

akma_keys_t *akma_keys_new(m5_loop_t *loop, const akma_keys_opts_t *opts, char *err,
                           size_t errlen) {
  if (!loop || !opts || !opts->aanf_url || !*opts->aanf_url) {
    snprintf(err, errlen, "akma: no AAnF URL configured");
    return NULL;
  }
  if (strncmp(opts->aanf_url, "https://", 8) != 0) {
    snprintf(err, errlen, "akma: AAnF URL %s is not https:// (N-AKMA needs mutual TLS)",
             opts->aanf_url);
    return NULL;
  }
  akma_keys_t *k = calloc(1, sizeof *k);
  if (!k) {
    snprintf(err, errlen, "akma: out of memory");
    return NULL;
  }
  k->loop = loop;
  k->max_cached = opts->max_cached ? opts->max_cached : DEFAULT_MAX_CACHED;
  k->max_waiting = opts->max_waiting ? opts->max_waiting : DEFAULT_MAX_WAITING;
  k->max_fetches = opts->max_fetches ? opts->max_fetches : DEFAULT_MAX_FETCHES;
  size_t ul = strlen(opts->aanf_url);
  while (ul > 8 && opts->aanf_url[ul - 1] == '/')
    ul--;
  k->url = malloc(ul + sizeof API_PATH);
  k->entries = m5_hmap_new();
  k->waiters = m5_hmap_new();
  if (!k->url || !k->entries || !k->waiters) {
    snprintf(err, errlen, "akma: out of memory");
    goto fail;
  }
  memcpy(k->url, opts->aanf_url, ul);
  memcpy(k->url + ul, API_PATH, sizeof API_PATH);
  /* Abandoned requests are cancelled, so the client never holds more than max_fetches. */
  m5_http_client_opts_t ho = {.cert_file = opts->cert_file,
                              .key_file = opts->key_file,
                              .ca_file = opts->ca_file,
                              .timeout_ms =
                                  opts->timeout_ms ? opts->timeout_ms : DEFAULT_TIMEOUT_MS,
                              .max_inflight = k->max_fetches,
                              .max_response = 16384};
  k->http = m5_http_client_new(loop, &ho, err, errlen);
  if (!k->http) goto fail;
  return k;
fail:
  m5_hmap_free(k->entries, NULL);
  m5_hmap_free(k->waiters, NULL);
  free(k->url);
  free(k);
  return NULL;
}

void akma_keys_free(akma_keys_t *k) {
  if (!k || k->dying) return;
  k->dying = 1;
  k->depth++;
  /* Pending requests complete with M5_ECLOSED, and so do their waiters (on_answer). */
  m5_http_client_free(k->http);
  k->http = NULL;
  k->depth--;
  if (k->depth == 0) destroy(k);
}
