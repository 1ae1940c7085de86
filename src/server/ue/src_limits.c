/* Per-source bounds of a worker's MSGin5G-1 listeners (src_limits.h).
 *
 * Nodes are keyed by a tag byte and the address bytes: 1 = IPv4 address, 2 = IPv6 address,
 * 3 = IPv4 /24, 4 = IPv6 /64. A node in use (refs > 0) is never evicted, and every node in
 * use is held by a live connection, so nodes in use are bounded by twice the half-open and
 * open connections that hold them (an open session lets go of its nodes when it opens). An
 * unused address node carries nothing and goes at once; an unused prefix node is kept while
 * its bucket is refilling (it remembers that the prefix sent unknown A-KIDs), on an LRU list
 * whose oldest node makes room when the table is full. Without that list an attacker could
 * refill its own bucket by making the table forget it; with it, forgetting takes max_nodes
 * other sources. */
#include "server/ue/src_limits.h"

#include "core/err.h"
#include "core/hmap.h"
#include "core/log.h"
#include "core/loop.h"

#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DOM "ue"
#define DEFAULT_MAX_NODES 16384u
#define MILLI 1000u /* bucket tokens are counted in thousandths */
#define LOG_EVERY_MS 1000u
#define KEY_MAX 17

struct src_node {
  src_node_t *lru_prev, *lru_next; /* on the idle list while refs == 0 */
  uint32_t refs, hs, fetch;
  uint64_t tokens_m;  /* prefix nodes: thousandths of a token */
  uint64_t refill_ms; /* when tokens_m was last brought up to date */
  int is_prefix;
  size_t klen;
  uint8_t key[KEY_MAX];
};

typedef struct {
  uint64_t last_ms;    /* last log line */
  uint64_t since_last; /* refusals since then */
} log_state_t;

struct src_limits {
  src_limits_opts_t o;
  m5_hmap_t *nodes;
  src_node_t *lru_head, *lru_tail; /* idle prefix nodes, oldest first */
  atomic_uint_fast64_t refused[SRC_N_REASONS];
  atomic_uint_fast64_t fetches;
  log_state_t log[SRC_N_REASONS];
};

static const char *const reason_names[SRC_N_REASONS] = {
    [SRC_OK] = "ok",
    [SRC_HANDSHAKES] = "handshakes",
    [SRC_HANDSHAKES_ADDR] = "handshakes_per_addr",
    [SRC_HANDSHAKES_PREFIX] = "handshakes_per_prefix",
    [SRC_FETCHES] = "fetches",
    [SRC_FETCHES_ADDR] = "fetches_per_addr",
    [SRC_FETCHES_PREFIX] = "fetches_per_prefix",
    [SRC_UNKNOWN_RATE] = "unknown_akid_rate",
    [SRC_TABLE_FULL] = "source_table_full",
};

const char *src_reason_name(src_reason_t why) {
  return (unsigned)why < SRC_N_REASONS ? reason_names[why] : "?";
}

src_limits_t *src_limits_new(const src_limits_opts_t *opts) {
  src_limits_t *s = calloc(1, sizeof *s);
  if (!s) return NULL;
  if (opts) s->o = *opts;
  if (!s->o.max_nodes) s->o.max_nodes = DEFAULT_MAX_NODES;
  s->nodes = m5_hmap_new();
  if (!s->nodes) {
    free(s);
    return NULL;
  }
  for (int i = 0; i < SRC_N_REASONS; i++)
    atomic_init(&s->refused[i], 0);
  atomic_init(&s->fetches, 0);
  return s;
}

void src_limits_free(src_limits_t *s) {
  if (!s) return;
  m5_hmap_free(s->nodes, free);
  free(s);
}

size_t src_limits_nodes(const src_limits_t *s) {
  return s ? m5_hmap_count(s->nodes) : 0;
}

/* ---- keys ---- */

/* The address and prefix keys of sa; 0 if it is not IP. */
static int make_keys(const struct sockaddr *sa, uint8_t ak[KEY_MAX], size_t *al,
                     uint8_t pk[KEY_MAX], size_t *pl) {
  static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  const uint8_t *v4 = NULL;
  if (sa->sa_family == AF_INET) {
    v4 = (const uint8_t *)&((const struct sockaddr_in *)sa)->sin_addr;
  } else if (sa->sa_family == AF_INET6) {
    const uint8_t *v6 = (const uint8_t *)&((const struct sockaddr_in6 *)sa)->sin6_addr;
    if (memcmp(v6, mapped, sizeof mapped) == 0) {
      v4 = v6 + 12;
    } else {
      ak[0] = 2;
      memcpy(ak + 1, v6, 16);
      *al = 17;
      pk[0] = 4;
      memcpy(pk + 1, v6, 8);
      *pl = 9;
      return 1;
    }
  } else {
    return 0;
  }
  ak[0] = 1;
  memcpy(ak + 1, v4, 4);
  *al = 5;
  pk[0] = 3;
  memcpy(pk + 1, v4, 3);
  *pl = 4;
  return 1;
}

/* ---- the idle list ---- */

static void lru_unlink(src_limits_t *s, src_node_t *n) {
  if (n->lru_prev)
    n->lru_prev->lru_next = n->lru_next;
  else if (s->lru_head == n)
    s->lru_head = n->lru_next;
  else
    return; /* not on the list */
  if (n->lru_next)
    n->lru_next->lru_prev = n->lru_prev;
  else
    s->lru_tail = n->lru_prev;
  n->lru_prev = n->lru_next = NULL;
}

static void lru_append(src_limits_t *s, src_node_t *n) {
  n->lru_next = NULL;
  n->lru_prev = s->lru_tail;
  if (s->lru_tail)
    s->lru_tail->lru_next = n;
  else
    s->lru_head = n;
  s->lru_tail = n;
}

static void node_drop(src_limits_t *s, src_node_t *n) {
  lru_unlink(s, n);
  m5_hmap_del(s->nodes, n->key, n->klen);
  free(n);
}

/* ---- buckets ---- */

static uint64_t bucket_cap(const src_limits_t *s) {
  return (uint64_t)s->o.unknown_burst * MILLI;
}

static void refill(const src_limits_t *s, src_node_t *n, uint64_t now_ms) {
  if (now_ms <= n->refill_ms) return;
  uint64_t add = (now_ms - n->refill_ms) * s->o.unknown_per_s; /* thousandths per ms */
  uint64_t cap = bucket_cap(s);
  n->tokens_m = cap - n->tokens_m <= add ? cap : n->tokens_m + add;
  n->refill_ms = now_ms;
}

/* ---- nodes ---- */

static src_node_t *node_get(src_limits_t *s, const uint8_t *key, size_t klen, int is_prefix,
                            uint64_t now_ms) {
  src_node_t *n = m5_hmap_get(s->nodes, key, klen);
  if (n) {
    if (n->refs == 0) lru_unlink(s, n);
    return n;
  }
  if (m5_hmap_count(s->nodes) >= s->o.max_nodes) {
    if (!s->lru_head) return NULL;
    node_drop(s, s->lru_head);
  }
  n = calloc(1, sizeof *n);
  if (!n) return NULL;
  memcpy(n->key, key, klen);
  n->klen = klen;
  n->is_prefix = is_prefix;
  n->tokens_m = bucket_cap(s);
  n->refill_ms = now_ms;
  if (m5_hmap_put(s->nodes, n->key, klen, n, NULL) != M5_OK) {
    free(n);
    return NULL;
  }
  return n;
}

static void node_release(src_limits_t *s, src_node_t *n, uint64_t now_ms) {
  if (!n || --n->refs > 0) return;
  if (n->is_prefix && s->o.unknown_burst) {
    refill(s, n, now_ms);
    if (n->tokens_m < bucket_cap(s)) {
      lru_append(s, n); /* remembers the prefix's unknown A-KIDs until it has refilled */
      return;
    }
  }
  node_drop(s, n);
}

src_reason_t src_ref(src_limits_t *s, const struct sockaddr *sa, src_ref_t *r) {
  memset(r, 0, sizeof *r);
  if (!s) return SRC_OK;
  uint8_t ak[KEY_MAX], pk[KEY_MAX];
  size_t al, pl;
  if (!make_keys(sa, ak, &al, pk, &pl)) return SRC_OK; /* not IP: nothing to bound it by */
  uint64_t now = m5_clock_mono_ms();
  src_node_t *net = node_get(s, pk, pl, 1, now);
  if (!net) return SRC_TABLE_FULL;
  net->refs++;
  src_node_t *addr = node_get(s, ak, al, 0, now);
  if (!addr) {
    node_release(s, net, now);
    return SRC_TABLE_FULL;
  }
  addr->refs++;
  r->addr = addr;
  r->net = net;
  return SRC_OK;
}

void src_unref(src_limits_t *s, src_ref_t *r) {
  if (!s || !r->addr) return;
  uint64_t now = m5_clock_mono_ms();
  node_release(s, r->addr, now);
  node_release(s, r->net, now);
  r->addr = r->net = NULL;
}

/* ---- the bounds ---- */

src_reason_t src_hs_check(const src_limits_t *s, const src_ref_t *r) {
  if (!s || !r->addr) return SRC_OK;
  if (s->o.hs_per_addr && r->addr->hs >= s->o.hs_per_addr) return SRC_HANDSHAKES_ADDR;
  if (s->o.hs_per_prefix && r->net->hs >= s->o.hs_per_prefix) return SRC_HANDSHAKES_PREFIX;
  return SRC_OK;
}

void src_hs_begin(src_ref_t *r) {
  if (!r->addr) return;
  r->addr->hs++;
  r->net->hs++;
}

void src_hs_end(src_ref_t *r) {
  if (!r->addr) return;
  if (r->addr->hs) r->addr->hs--;
  if (r->net->hs) r->net->hs--;
}

src_reason_t src_fetch_check(const src_limits_t *s, const src_ref_t *r) {
  if (!s || !r->addr) return SRC_OK;
  if (s->o.fetch_per_addr && r->addr->fetch >= s->o.fetch_per_addr) return SRC_FETCHES_ADDR;
  if (s->o.fetch_per_prefix && r->net->fetch >= s->o.fetch_per_prefix) return SRC_FETCHES_PREFIX;
  return SRC_OK;
}

void src_fetch_begin(src_ref_t *r) {
  if (!r->addr) return;
  r->addr->fetch++;
  r->net->fetch++;
}

void src_fetch_end(src_ref_t *r) {
  if (!r->addr) return;
  if (r->addr->fetch) r->addr->fetch--;
  if (r->net->fetch) r->net->fetch--;
}

src_reason_t src_unknown_take(src_limits_t *s, src_ref_t *r, uint64_t now_ms) {
  if (!s || !r->net || !s->o.unknown_burst) return SRC_OK;
  refill(s, r->net, now_ms);
  if (r->net->tokens_m < MILLI) return SRC_UNKNOWN_RATE;
  r->net->tokens_m -= MILLI;
  return SRC_OK;
}

void src_unknown_refund(src_limits_t *s, src_ref_t *r, uint64_t now_ms) {
  if (!s || !r->net || !s->o.unknown_burst) return;
  refill(s, r->net, now_ms);
  uint64_t cap = bucket_cap(s);
  r->net->tokens_m = cap - r->net->tokens_m <= MILLI ? cap : r->net->tokens_m + MILLI;
}

/* ---- counting and logging ---- */

void src_refused(src_limits_t *s, src_reason_t why, const char *peer, uint64_t now_ms) {
  if (!s || (unsigned)why >= SRC_N_REASONS || why == SRC_OK) return;
  atomic_fetch_add_explicit(&s->refused[why], 1, memory_order_relaxed);
  log_state_t *ls = &s->log[why];
  ls->since_last++;
  if (ls->last_ms && now_ms - ls->last_ms < LOG_EVERY_MS) return;
  M5_LOGI(DOM, "%s: handshake refused (%s)%s; %llu refused for this reason since the last such "
          "line", peer ? peer : "?", src_reason_name(why),
          why == SRC_UNKNOWN_RATE ? ": too many unknown A-KIDs from its prefix" : "",
          (unsigned long long)ls->since_last);
  ls->last_ms = now_ms ? now_ms : 1;
  ls->since_last = 0;
}

uint64_t src_refused_count(const src_limits_t *s, src_reason_t why) {
  if (!s || (unsigned)why >= SRC_N_REASONS) return 0;
  return atomic_load_explicit(&s->refused[why], memory_order_relaxed);
}

void src_fetch_started(src_limits_t *s) {
  if (s) atomic_fetch_add_explicit(&s->fetches, 1, memory_order_relaxed);
}

uint64_t src_fetches_count(const src_limits_t *s) {
  return s ? atomic_load_explicit(&s->fetches, memory_order_relaxed) : 0;
}
