/* The dedup window of the SQLite backend (architecture §5; TS 23.554 cl. 8.3.6; docs/store.md
 * "Dedup window"), run by the writer thread inside the batch's transaction.
 *
 * Time is cut into buckets of window / dedup_buckets. A key is a duplicate while its bucket is
 * within the last dedup_buckets buckets, so it is recognised for at least the window and at
 * most one bucket longer. Whole buckets go at once: an originator's stale buckets when it
 * sends again, its oldest live bucket when it is over dedup_max_per_sender, and the stale
 * buckets of originators that went quiet a few at a time at the start of each batch.
 *
 * The table `dedup` (ori, msg_id) -> bucket, status, cause is the only copy on disk (schema
 * 7). How many entries each originator has per bucket, which the bound and the sweep need, is
 * kept in memory alone: rebuilt from `dedup` at open (one scan in primary-key order, so each
 * originator's rows come together and no sort is needed) and, lazily, after any rollback.
 * Schema 6 kept those counts in a table too (dedup_buckets), which cost an upsert to a second
 * B-tree per message and a read per new originator; the counts are a function of `dedup`, so
 * the table added nothing to what a crash keeps.
 *
 * An ACCEPT claims its key first (sq_dedup_claim): one INSERT that does nothing when the key
 * exists, so a new key, the common case, costs one statement; only an existing one is read
 * (a duplicate, or a stale entry taken over). A message then refused gives the key back
 * (sq_dedup_unclaim, in the same transaction: nothing of a refusal is kept); one stored or
 * discarded is counted (sq_dedup_record), after its originator's bound is enforced. The bound
 * and the sweep cost no statement until a bucket really goes. */
#include "sqlite_int.h"

#include "core/err.h"
#include "core/log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SWEEP_PER_BATCH 64

typedef struct {
  int64_t bucket, n;
} sq_bkt_t;

/* One originator's counts: ascending bucket order, no bucket at 0. */
typedef struct {
  size_t nb, cap;
  sq_bkt_t b[];
} sq_dbkt_t;

/* A stale (originator, bucket) pair, found by the walk at a bucket change. */
typedef struct sq_stale {
  int64_t bucket;
  char ori[];
} sq_stale_t;

static int bind_key(sqlite3_stmt *st, int i, const char *t) {
  return sqlite3_bind_text(st, i, t, (int)strnlen(t, M5_STORE_KEY_MAX + 1), SQLITE_STATIC);
}

static int64_t bucket_of(sq_t *s, int64_t now_ms) {
  return now_ms / s->bucket_ms;
}

/* The oldest bucket still in the window. */
static int64_t live_from(sq_t *s, int64_t cur) {
  return cur - (int64_t)s->o.dedup_buckets;
}

static void free_stale(sq_t *s) {
  for (size_t i = s->stale_next; i < s->n_stale; i++)
    free(s->stale[i]);
  free(s->stale);
  s->stale = NULL;
  s->n_stale = s->stale_next = 0;
}

void sq_dedup_free(sq_t *s) {
  if (s->dbkt) m5_hmap_free(s->dbkt, free);
  s->dbkt = NULL;
  free_stale(s);
}

void sq_dedup_invalidate(sq_t *s) {
  s->dbkt_dirty = 1;
}

/* The originators whose counts the job being run changed, so that a job rolled back to its
 * savepoint (a batch run again job by job) costs a reload of those few, not of the table. */
static void touch(sq_t *s, const char *ori, size_t olen) {
  if (s->touched_over) return; /* also the fast run of a batch, which has no savepoints */
  if (olen > M5_STORE_KEY_MAX) olen = M5_STORE_KEY_MAX;
  for (size_t i = 0; i < s->n_touched; i++)
    if (!strncmp(s->touched[i], ori, olen) && !s->touched[i][olen]) return;
  if (s->n_touched == SQ_TOUCHED_MAX) {
    s->touched_over = 1;
    return;
  }
  memcpy(s->touched[s->n_touched], ori, olen);
  s->touched[s->n_touched][olen] = 0;
  s->n_touched++;
}

void sq_dedup_job_begin(sq_t *s) {
  s->n_touched = 0;
  s->touched_over = 0;
}

static int dbkt_add(sq_t *s, const char *ori, size_t olen, int64_t bucket, int64_t delta);

/* One originator's counts from the table again. */
static int reload_ori(sq_t *s, const char *ori) {
  size_t olen = strlen(ori);
  free(m5_hmap_del(s->dbkt, ori, olen));
  sqlite3_stmt *st = s->st[ST_DEDUP_ORI];
  bind_key(st, 1, ori);
  int r, rc = 0;
  while (rc == 0 && (r = sqlite3_step(st)) == SQLITE_ROW)
    rc = dbkt_add(s, ori, olen, sqlite3_column_int64(st, 0), sqlite3_column_int64(st, 1));
  if (rc == 0 && r != SQLITE_DONE) {
    sq_log_error(s, "reloading an originator's dedup counts");
    rc = M5_EIO;
  }
  sqlite3_reset(st);
  sqlite3_clear_bindings(st);
  return rc;
}

void sq_dedup_job_undone(sq_t *s) {
  if (s->touched_over || !s->dbkt) s->dbkt_dirty = 1;
  for (size_t i = 0; i < s->n_touched && !s->dbkt_dirty; i++)
    if (reload_ori(s, s->touched[i]) != 0) s->dbkt_dirty = 1;
  sq_dedup_job_begin(s);
}

/* "count of (ori, bucket) += delta" (INT64_MIN: the bucket goes; a count at 0 goes). 0, or
 * M5_ENOMEM (the counts are then reloaded before they are used again). */
static int dbkt_add(sq_t *s, const char *ori, size_t olen, int64_t bucket, int64_t delta) {
  touch(s, ori, olen);
  sq_dbkt_t *d = m5_hmap_get(s->dbkt, ori, olen);
  if (!d) {
    if (delta <= 0) return 0;
    if (!(d = malloc(sizeof *d + 2 * sizeof d->b[0]))) goto nomem;
    d->nb = 0;
    d->cap = 2;
    if (m5_hmap_put(s->dbkt, ori, olen, d, NULL) != 0) {
      free(d);
      goto nomem;
    }
  }
  size_t i = 0;
  while (i < d->nb && d->b[i].bucket < bucket)
    i++;
  if (i < d->nb && d->b[i].bucket == bucket) {
    d->b[i].n = delta == INT64_MIN ? 0 : d->b[i].n + delta;
    if (d->b[i].n <= 0) {
      memmove(&d->b[i], &d->b[i + 1], (d->nb - i - 1) * sizeof d->b[0]);
      d->nb--;
    }
  } else if (delta > 0) {
    if (d->nb == d->cap) {
      /* linear growth: an originator uses at most dedup_buckets + 1 buckets but most use 1 */
      sq_dbkt_t *g = realloc(d, sizeof *d + (d->cap + 4) * sizeof d->b[0]);
      if (!g) goto nomem;
      g->cap += 4;
      if (g != d) m5_hmap_put(s->dbkt, ori, olen, g, NULL); /* the key exists: no allocation */
      d = g;
    }
    memmove(&d->b[i + 1], &d->b[i], (d->nb - i) * sizeof d->b[0]);
    d->b[i].bucket = bucket;
    d->b[i].n = delta;
    d->nb++;
  }
  if (d->nb == 0) free(m5_hmap_del(s->dbkt, ori, olen));
  return 0;
nomem:
  s->dbkt_dirty = 1;
  return M5_ENOMEM;
}

/* Rebuilds the counts from `dedup` (at open, and after a rollback). */
static int load(sq_t *s) {
  m5_hmap_t *old = s->dbkt;
  if (!(s->dbkt = m5_hmap_new())) {
    s->dbkt = old;
    return M5_ENOMEM;
  }
  free_stale(s);
  s->swept_bucket = -1;
  int rc = 0, r;
  sqlite3_stmt *st = s->st[ST_DEDUP_ALL];
  while ((r = sqlite3_step(st)) == SQLITE_ROW) {
    const char *ori = (const char *)sqlite3_column_text(st, 0);
    if (!ori) continue;
    size_t olen = (size_t)sqlite3_column_bytes(st, 0);
    if ((rc = dbkt_add(s, ori, olen, sqlite3_column_int64(st, 1), 1)) != 0) break;
  }
  sqlite3_reset(st);
  if (rc == 0 && r != SQLITE_DONE) {
    sq_log_error(s, "loading the dedup window");
    rc = M5_EIO;
  }
  if (rc != 0) {
    m5_hmap_free(s->dbkt, free);
    s->dbkt = old;
    s->dbkt_dirty = 1;
    return rc;
  }
  if (old) m5_hmap_free(old, free);
  s->dbkt_dirty = 0;
  return 0;
}

int sq_dedup_load(sq_t *s) {
  return load(s);
}

static int ready(sq_t *s) {
  return s->dbkt_dirty || !s->dbkt ? load(s) : 0;
}

static int drop_bucket(sq_t *s, const char *ori, int64_t bucket) {
  sqlite3_stmt *d = s->st[ST_DEDUP_DEL_BUCKET];
  bind_key(d, 1, ori);
  sqlite3_bind_int64(d, 2, bucket);
  if (sq_step_done(s, d, "dropping a dedup bucket") != 0) return M5_EIO;
  dbkt_add(s, ori, strnlen(ori, M5_STORE_KEY_MAX + 1), bucket, INT64_MIN);
  return 0;
}

typedef struct {
  sq_t *s;
  int64_t live;
  int failed;
} walk_t;

static void collect_stale(const void *key, size_t klen, void *val, void *arg) {
  walk_t *w = arg;
  const sq_dbkt_t *d = val;
  sq_t *s = w->s;
  for (size_t i = 0; i < d->nb && d->b[i].bucket < w->live && !w->failed; i++) {
    if (s->n_stale % 64 == 0) {
      sq_stale_t **g = realloc(s->stale, (s->n_stale + 64) * sizeof *g);
      if (!g) {
        w->failed = 1;
        return;
      }
      s->stale = g;
    }
    sq_stale_t *e = malloc(sizeof *e + klen + 1);
    if (!e) {
      w->failed = 1;
      return;
    }
    e->bucket = d->b[i].bucket;
    memcpy(e->ori, key, klen);
    e->ori[klen] = 0;
    s->stale[s->n_stale++] = e;
  }
}

/* At each bucket change one walk over the originators lists the stale (originator, bucket)
 * pairs; up to SWEEP_PER_BATCH of them go per batch (one that its originator dropped itself
 * meanwhile costs nothing). */
int sq_dedup_sweep(sq_t *s, int64_t now_ms) {
  int64_t cur = bucket_of(s, now_ms);
  if (cur == s->swept_bucket) return 0;
  if (ready(s) != 0) return M5_EIO;
  if (!s->stale) {
    walk_t w = {s, live_from(s, cur), 0};
    m5_hmap_foreach(s->dbkt, collect_stale, &w);
    if (w.failed) {
      free_stale(s);
      return 0; /* out of memory: the originators' own sends drop their stale buckets */
    }
  }
  size_t done = 0;
  while (s->stale_next < s->n_stale && done < SWEEP_PER_BATCH) {
    sq_stale_t *e = s->stale[s->stale_next];
    const sq_dbkt_t *d = m5_hmap_get(s->dbkt, e->ori, strlen(e->ori));
    int present = 0;
    for (size_t i = 0; d && i < d->nb && !present; i++)
      present = d->b[i].bucket == e->bucket;
    if (present) {
      if (drop_bucket(s, e->ori, e->bucket) != 0) return M5_EIO;
      done++;
    }
    free(e);
    s->stale_next++;
  }
  if (s->stale_next == s->n_stale) { /* done until the next bucket */
    free_stale(s);
    s->swept_bucket = cur;
  }
  return 0;
}

static int put_key(sq_t *s, sqlite3_stmt *st, const m5_store_job_t *job, int64_t cur) {
  bind_key(st, 1, job->dedup_ori);
  bind_key(st, 2, job->dedup_id);
  sqlite3_bind_int64(st, 3, cur);
  sqlite3_bind_text(st, 4, job->ack.status, (int)strnlen(job->ack.status, sizeof job->ack.status),
                    SQLITE_STATIC);
  sqlite3_bind_text(st, 5, job->ack.failure_cause,
                    (int)strnlen(job->ack.failure_cause, sizeof job->ack.failure_cause),
                    SQLITE_STATIC);
  return sq_step_done(s, st, "recording a msgId");
}

int sq_dedup_claim(sq_t *s, m5_store_job_t *job, int64_t now_ms, int *dup) {
  *dup = 0;
  int64_t cur = bucket_of(s, now_ms);
  if (ready(s) != 0) return M5_EIO;
  /* the common case, a new key, in one statement */
  if (put_key(s, s->st[ST_DEDUP_PUT], job, cur) != 0) return M5_EIO;
  if (sqlite3_changes(s->db) == 1) return 0;
  sqlite3_stmt *st = s->st[ST_DEDUP_GET];
  bind_key(st, 1, job->dedup_ori);
  bind_key(st, 2, job->dedup_id);
  int r = sqlite3_step(st);
  int64_t bucket = 0;
  if (r == SQLITE_ROW) {
    bucket = sqlite3_column_int64(st, 0);
    const unsigned char *t = sqlite3_column_text(st, 1);
    snprintf(job->orig_ack.status, sizeof job->orig_ack.status, "%s", t ? (const char *)t : "");
    t = sqlite3_column_text(st, 2);
    snprintf(job->orig_ack.failure_cause, sizeof job->orig_ack.failure_cause, "%s",
             t ? (const char *)t : "");
  }
  sqlite3_reset(st);
  sqlite3_clear_bindings(st);
  if (r != SQLITE_ROW) {
    sq_log_error(s, "looking up a msgId");
    return M5_EIO;
  }
  if (bucket >= live_from(s, cur)) {
    *dup = 1;
    return 0;
  }
  /* a stale entry: the key is new again, and taken over for this message */
  memset(&job->orig_ack, 0, sizeof job->orig_ack);
  if (put_key(s, s->st[ST_DEDUP_RENEW], job, cur) != 0) return M5_EIO;
  dbkt_add(s, job->dedup_ori, strnlen(job->dedup_ori, M5_STORE_KEY_MAX + 1), bucket, -1);
  return 0;
}

int sq_dedup_unclaim(sq_t *s, const m5_store_job_t *job) {
  sqlite3_stmt *del = s->st[ST_DEDUP_DEL_ONE];
  bind_key(del, 1, job->dedup_ori);
  bind_key(del, 2, job->dedup_id);
  return sq_step_done(s, del, "removing a msgId") == 0 ? 0 : M5_EIO;
}

int sq_dedup_record(sq_t *s, m5_store_job_t *job, int64_t now_ms) {
  int64_t cur = bucket_of(s, now_ms);
  if (ready(s) != 0) return M5_EIO;
  size_t olen = strnlen(job->dedup_ori, M5_STORE_KEY_MAX + 1);
  const sq_dbkt_t *d = m5_hmap_get(s->dbkt, job->dedup_ori, olen);
  int64_t live = 0; /* the claimed key is not counted yet */
  for (size_t i = 0; d && i < d->nb; i++)
    if (d->b[i].bucket >= live_from(s, cur)) live += d->b[i].n;
  /* ascending bucket order: the stale ones, then the oldest live ones while over the bound
   * (drop_bucket may free d: look it up again each time) */
  int took_key = 0;
  while ((d = m5_hmap_get(s->dbkt, job->dedup_ori, olen)) && d->nb) {
    int64_t b = d->b[0].bucket, n = d->b[0].n;
    int stale = b < live_from(s, cur);
    if (!stale && (uint64_t)live + 1 <= s->o.dedup_max_per_sender) break;
    if (drop_bucket(s, job->dedup_ori, b) != 0) return M5_EIO;
    if (b == cur) took_key = 1; /* the whole current bucket went, the claimed key with it */
    if (!stale) live -= n;
  }
  if (took_key && put_key(s, s->st[ST_DEDUP_PUT], job, cur) != 0) return M5_EIO;
  dbkt_add(s, job->dedup_ori, olen, cur, 1);
  return 0;
}

void sq_dedup_forget_ori(sq_t *s, const char *ori) {
  size_t olen = strnlen(ori, M5_STORE_KEY_MAX + 1);
  touch(s, ori, olen);
  if (s->dbkt) free(m5_hmap_del(s->dbkt, ori, olen));
}
