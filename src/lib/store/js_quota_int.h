/* Private to js_quota.c (counts, the accept's checks) and js_quota_sync.c (the generations,
 * the thread that publishes and watches P_quota, the watcher of P_gens, open and close): the
 * JetStream store's per-originator counts (issue 13 decision 4; js_quota.c says how). */
#ifndef M5_STORE_JS_QUOTA_INT_H
#define M5_STORE_JS_QUOTA_INT_H

#include "js_int.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#define Q_PUBLISH_MS 1000  /* a change is published within this */
#define Q_REFRESH_MS 20000 /* every key is put again this often */
#define Q_TTL_MS 60000     /* P_quota's TTL: the keys of a node that stopped */
#define Q_WARN_MS 10000    /* a thread's warnings while the cluster is away: one per 10 s */
#define Q_NB 10            /* buckets of a windowed count (dedup entries, tickets) */
#define Q_KEY_MAX 160

enum { QK_ORI = 'o', QK_PAIR = 'p', QK_DEDUP = 'd', QK_TICKET = 't' };

/* A count of this node's. o: v = messages, bytes, deliveries; the others v[0]. d and t are
 * windowed: per time bucket (the dedup window / the ticket life cut into Q_NB), with the first
 * KV revision of each bucket (d: what a purge of the older entries keeps). */
typedef struct {
  uint64_t v[3];
  uint64_t pub[3]; /* the value of this node's key in P_quota */
  bool published;  /* this node's key holds pub (an empty value is 0) */
  int64_t pub_ms;  /* when it was last put */
  int64_t wb[Q_NB];
  uint64_t wn[Q_NB], wrev[Q_NB];
  char kv[Q_KEY_MAX]; /* the key without ".<node>" */
} q_own_t;

typedef struct {
  uint64_t v[3];
} q_vals_t;

struct js_quota {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  m5_hmap_t *own;     /* raw key (raw_*) -> q_own_t (under mu) */
  m5_hmap_t *msgs;    /* raw ori key \n msgId \n accepted_at -> deliveries here (store thread) */
  m5_hmap_t *stale;   /* P_quota keys of this node from before this start (under mu) */
  m5_hmap_t *others;  /* full key of another node -> q_vals_t (under mu) */
  m5_hmap_t *sum;     /* kv suffix -> q_vals_t, summed over the other nodes (under mu) */
  size_t other_pairs; /* p. keys in sum: none, the share needs no hash per recipient */
  m5_hmap_t *gens;    /* UE Service ID -> generation + 1 (under mu) */
  m5_js_kv_t *kv, *gens_kv;
  m5_js_kv_watch_t *w, *gw;
  pthread_t th, gth;
  bool th_on, gth_on, stop, ready, gready;
  int64_t warned_ms, gwarned_ms; /* the last warning of each thread (at most one per Q_WARN_MS) */
};

#define Q_RAW_MAX (2 * (M5_MSG_ADDR_MAX + 48) + 48) /* a count's in-memory key (js_quota.c) */

/* Windowed counts: drops the buckets older than the window (v[0] = what is left); the bucket of
 * now for a window. */
void js_q_win_roll(q_own_t *o, int64_t bucket);
int64_t js_q_win_bucket(js_store_t *s, int64_t window_ms);

#endif
