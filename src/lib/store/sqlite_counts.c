/* The SQLite backend's in-memory figures (sqlite_int.h): PENDING deliveries per (kind,
 * recipient) for the per-recipient caps, quota use per originator, the set of deliveries in
 * flight for REQUEUE_STALE; and their rebuild from the tables (at open and after a rollback).
 * Writer thread only. */
#include "sqlite_int.h"

#include "core/err.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- PENDING counts per (kind, recipient) (key: kind type NUL addr), quota use per
 * originator (key: type NUL addr NUL gen), the in-flight set ----
 *
 * The quota use is per binding generation of a UE originator (messages.ori_gen; 0 for an AS):
 * a UE Service ID re-bound to another subscriber starts with none of the previous one's use,
 * while the previous one's messages still queued stay charged to it until they go. */

static size_t pending_key(const m5_msg_addr_t *a, int kind, char *key, size_t keylen) {
  size_t t = strnlen(a->type, sizeof a->type), n = strnlen(a->addr, sizeof a->addr);
  size_t k = kind >= 0 ? 1 : 0;
  if (k + t + 1 + n > keylen) return 0;
  if (k) key[0] = (char)('0' + kind);
  memcpy(key + k, a->type, t);
  key[k + t] = '\0';
  memcpy(key + k + t + 1, a->addr, n);
  return k + t + 1 + n;
}

uint64_t sq_pending_get(sq_t *s, const m5_msg_addr_t *a, int kind) {
  char key[1 + sizeof a->type + sizeof a->addr];
  size_t klen = pending_key(a, kind, key, sizeof key);
  const uint64_t *n = klen ? m5_hmap_get(s->pending, key, klen) : NULL;
  return n ? *n : 0;
}

/* The quota key of (a, gen): type NUL addr NUL gen (8 bytes). */
static size_t ori_key(const m5_msg_addr_t *a, uint64_t gen, char *key, size_t keylen) {
  size_t klen = pending_key(a, -1, key, keylen);
  if (!klen || klen + 1 + sizeof gen > keylen) return 0;
  key[klen] = '\0';
  memcpy(key + klen + 1, &gen, sizeof gen);
  return klen + 1 + sizeof gen;
}

#define ORI_KEY_MAX (sizeof(m5_msg_addr_t) + 1 + sizeof(uint64_t))

sq_ori_t sq_ori_get(sq_t *s, const m5_msg_addr_t *a, uint64_t gen) {
  char key[ORI_KEY_MAX];
  size_t klen = ori_key(a, gen, key, sizeof key);
  const sq_ori_t *o = klen ? m5_hmap_get(s->oris, key, klen) : NULL;
  sq_ori_t none = {0, 0, 0};
  return o ? *o : none;
}

/* Originators at zero keep their entry (a sender whose messages are delivered at once would
 * otherwise cost an allocation per message); past this many entries those are dropped. */
#define ORI_ENTRIES_MAX 65536

typedef struct {
  char (*keys)[ORI_KEY_MAX];
  size_t *lens, n;
} zero_oris_t;

static void count_zero(const void *key, size_t klen, void *val, void *arg) {
  (void)key;
  (void)klen;
  size_t *n = arg;
  if (((const sq_ori_t *)val)->msgs == 0) (*n)++;
}

static void collect_zero(const void *key, size_t klen, void *val, void *arg) {
  zero_oris_t *z = arg;
  if (((const sq_ori_t *)val)->msgs != 0 || klen > sizeof z->keys[0]) return;
  memcpy(z->keys[z->n], key, klen);
  z->lens[z->n++] = klen;
}

static void drop_zero_oris(sq_t *s) {
  size_t n = 0;
  m5_hmap_foreach(s->oris, count_zero, &n);
  zero_oris_t z = {calloc(n ? n : 1, sizeof z.keys[0]), calloc(n ? n : 1, sizeof *z.lens), 0};
  if (z.keys && z.lens) {
    m5_hmap_foreach(s->oris, collect_zero, &z);
    for (size_t i = 0; i < z.n; i++)
      free(m5_hmap_del(s->oris, z.keys[i], z.lens[i]));
  }
  free(z.keys);
  free(z.lens);
}

int sq_ori_add(sq_t *s, const m5_msg_addr_t *a, uint64_t gen, int64_t msgs, int64_t bytes,
               int64_t dlvs) {
  char key[ORI_KEY_MAX];
  size_t klen = ori_key(a, gen, key, sizeof key);
  if (!klen) return M5_EINVAL;
  sq_ori_t *o = m5_hmap_get(s->oris, key, klen);
  if (!o) {
    if (msgs <= 0) return 0;
    if (m5_hmap_count(s->oris) >= ORI_ENTRIES_MAX) drop_zero_oris(s);
    if (!(o = calloc(1, sizeof *o))) return M5_ENOMEM;
    if (m5_hmap_put(s->oris, key, klen, o, NULL) != 0) {
      free(o);
      return M5_ENOMEM;
    }
  }
  o->msgs = msgs < 0 && (uint64_t)-msgs >= o->msgs ? 0 : (uint64_t)((int64_t)o->msgs + msgs);
  o->bytes = bytes < 0 && (uint64_t)-bytes >= o->bytes ? 0 : (uint64_t)((int64_t)o->bytes + bytes);
  o->dlvs = dlvs < 0 && (uint64_t)-dlvs >= o->dlvs ? 0 : (uint64_t)((int64_t)o->dlvs + dlvs);
  return 0;
}

/* The in-flight set: delivery id -> sq_flight_t. For a delivery accepted in flight as the one
 * recipient of its message, the entry also keeps what reading its row back would give (the
 * strings packed in one allocation, ~100-200 bytes), so that its conclusion (MARK_DELIVERED
 * on the common path) writes without reading: sq_inflight_row. Entries rebuilt from the table
 * (sq_load_counts, after a rollback) have no copy: their conclusion reads the row. The copy is
 * only ever what this process wrote in the same transactions as the row, and goes with the
 * entry (a conclusion, a RESCHEDULE, REQUEUE_STALE, a reload). */
enum { FS_RTYPE, FS_RADDR, FS_OTYPE, FS_OADDR, FS_DTYPE, FS_DADDR, FS_MSGID, FS_APPID, FS_N };

struct sq_flight {
  int64_t since_ms; /* next_attempt_ms of the row: REQUEUE_STALE's cutoff */
  int has_row;      /* the fields below are the row's */
  uint64_t msg_row;
  int kind;
  int64_t plen;
  m5_msg_prio_t prio;
  bool deliv_st_req, sto_fwd;
  int64_t expr_time, accepted_at_ms;
  uint64_t rcpt_gen, ori_gen, group_gen;
  uint16_t len[FS_N];
  char str[]; /* the FS_N strings, each with its NUL */
};

int sq_inflight_put(sq_t *s, uint64_t id, int64_t since_ms, const m5_store_msg_t *m,
                    const m5_store_rcpt_t *r, uint64_t msg_row, int kind) {
  const char *src[FS_N] = {0};
  size_t lens[FS_N] = {0}, total = 0;
  if (m && r) {
    src[FS_RTYPE] = r->addr.type, src[FS_RADDR] = r->addr.addr;
    src[FS_OTYPE] = m->ori.type, src[FS_OADDR] = m->ori.addr;
    src[FS_DTYPE] = m->dest.type, src[FS_DADDR] = m->dest.addr;
    src[FS_MSGID] = m->msg_id, src[FS_APPID] = m->app_id;
    static const size_t max[FS_N] = {sizeof r->addr.type, sizeof r->addr.addr,
                                     sizeof m->ori.type,  sizeof m->ori.addr,
                                     sizeof m->dest.type, sizeof m->dest.addr,
                                     sizeof m->msg_id,    sizeof m->app_id};
    for (int i = 0; i < FS_N; i++) {
      lens[i] = strnlen(src[i], max[i] - 1);
      total += lens[i] + 1;
    }
  }
  sq_flight_t *f = malloc(sizeof *f + total);
  if (!f) return M5_ENOMEM;
  f->since_ms = since_ms;
  f->has_row = m && r;
  if (f->has_row) {
    f->msg_row = msg_row;
    f->kind = kind;
    f->plen = (int64_t)m->payload_len;
    f->prio = m->prio;
    f->deliv_st_req = m->deliv_st_req;
    f->sto_fwd = m->sto_fwd;
    f->expr_time = m->expr_time;
    f->accepted_at_ms = m->accepted_at_ms;
    f->rcpt_gen = r->gen;
    f->ori_gen = m->ori_gen;
    f->group_gen = m->group_gen;
    char *p = f->str;
    for (int i = 0; i < FS_N; i++) {
      f->len[i] = (uint16_t)lens[i];
      memcpy(p, src[i], lens[i]);
      p[lens[i]] = 0;
      p += lens[i] + 1;
    }
  }
  void *old = NULL;
  if (m5_hmap_put(s->inflight, &id, sizeof id, f, &old) != 0) {
    free(f);
    return M5_ENOMEM;
  }
  free(old);
  return 0;
}

void sq_inflight_del(sq_t *s, uint64_t id) {
  free(m5_hmap_del(s->inflight, &id, sizeof id));
}

int64_t sq_flight_since(const sq_flight_t *f) {
  return f->since_ms;
}

static void unpack(char *dst, size_t cap, const char **p, size_t len) {
  if (len >= cap) len = cap - 1;
  memcpy(dst, *p, len);
  dst[len] = 0;
  *p += strlen(*p) + 1;
}

int sq_inflight_row(sq_t *s, uint64_t id, m5_store_delivery_t *d, sq_row_t *rm) {
  const sq_flight_t *f = m5_hmap_get(s->inflight, &id, sizeof id);
  if (!f || !f->has_row) return 0;
  memset(d, 0, sizeof *d);
  d->id = id;
  d->state = M5_DELIV_PENDING;
  d->next_attempt_ms = f->since_ms;
  d->rcpt_gen = f->rcpt_gen;
  m5_store_msg_t *m = &d->msg;
  const char *p = f->str;
  unpack(d->rcpt.type, sizeof d->rcpt.type, &p, f->len[FS_RTYPE]);
  unpack(d->rcpt.addr, sizeof d->rcpt.addr, &p, f->len[FS_RADDR]);
  unpack(m->ori.type, sizeof m->ori.type, &p, f->len[FS_OTYPE]);
  unpack(m->ori.addr, sizeof m->ori.addr, &p, f->len[FS_OADDR]);
  unpack(m->dest.type, sizeof m->dest.type, &p, f->len[FS_DTYPE]);
  unpack(m->dest.addr, sizeof m->dest.addr, &p, f->len[FS_DADDR]);
  unpack(m->msg_id, sizeof m->msg_id, &p, f->len[FS_MSGID]);
  unpack(m->app_id, sizeof m->app_id, &p, f->len[FS_APPID]);
  m->prio = f->prio;
  m->deliv_st_req = f->deliv_st_req;
  m->sto_fwd = f->sto_fwd;
  m->expr_time = f->expr_time;
  m->accepted_at_ms = f->accepted_at_ms;
  m->ori_gen = f->ori_gen;
  m->group_gen = f->group_gen;
  rm->msg = (int64_t)f->msg_row;
  rm->open = 1;
  rm->first = (int64_t)id;
  rm->n = 1;
  rm->kind = f->kind;
  rm->plen = f->plen;
  rm->cached = 1;
  return 1;
}

/* A count in map under key moved by delta: created when it rises from nothing, removed when
 * it falls to zero (so a map holds only what is in use). 0, or M5_ENOMEM. */
static int counter_add(m5_hmap_t *map, const void *key, size_t klen, int64_t delta) {
  uint64_t *n = m5_hmap_get(map, key, klen);
  if (!n) {
    if (delta <= 0) return 0;
    if (!(n = calloc(1, sizeof *n))) return M5_ENOMEM;
    if (m5_hmap_put(map, key, klen, n, NULL) != 0) {
      free(n);
      return M5_ENOMEM;
    }
  }
  if (delta < 0 && (uint64_t)-delta >= *n) {
    free(m5_hmap_del(map, key, klen));
    return 0;
  }
  *n = (uint64_t)((int64_t)*n + delta);
  return 0;
}

int sq_pending_add(sq_t *s, const m5_msg_addr_t *a, int kind, int64_t delta) {
  char key[1 + sizeof a->type + sizeof a->addr];
  size_t klen = pending_key(a, kind, key, sizeof key);
  if (!klen) return M5_EINVAL;
  return counter_add(s->pending, key, klen, delta);
}

static void free_val(void *v) {
  free(v);
}

/* ori: the typed key of report_tickets.ori ("UE:ue1", "AS:as1") */
uint64_t sq_tickets_get(sq_t *s, const char *ori) {
  const uint64_t *n = s->tickets ? m5_hmap_get(s->tickets, ori, strlen(ori)) : NULL;
  return n ? *n : 0;
}

int sq_tickets_add(sq_t *s, const char *ori, int64_t delta) {
  return counter_add(s->tickets, ori, strlen(ori), delta);
}

/* (Re)builds the counts from the tables: at open, and after a batch that failed half-way:
 * the queues per (kind, recipient), the quota use per originator, the in-flight set, the
 * report tickets per originator. */
int sq_load_counts(sq_t *s) {
  m5_hmap_t *fresh = m5_hmap_new(), *fresh_oris = m5_hmap_new(), *fresh_inflight = m5_hmap_new();
  m5_hmap_t *fresh_tickets = m5_hmap_new();
  if (!fresh || !fresh_oris || !fresh_inflight || !fresh_tickets) {
    if (fresh) m5_hmap_free(fresh, free_val);
    if (fresh_oris) m5_hmap_free(fresh_oris, free_val);
    if (fresh_inflight) m5_hmap_free(fresh_inflight, free_val);
    if (fresh_tickets) m5_hmap_free(fresh_tickets, free_val);
    return M5_ENOMEM;
  }
  m5_hmap_t *old = s->pending, *old_oris = s->oris, *old_inflight = s->inflight;
  m5_hmap_t *old_tickets = s->tickets;
  s->pending = fresh;
  s->oris = fresh_oris;
  s->inflight = fresh_inflight;
  s->tickets = fresh_tickets;
  s->queued = 0;
  sqlite3_stmt *st = NULL;
  int rc = M5_EIO;
  if (sqlite3_prepare_v2(s->db,
                         "SELECT rcpt_type, rcpt_addr, count(*) FROM deliveries"
                         " WHERE state IN (0, 4) GROUP BY rcpt_addr, rcpt_type",
                         -1, &st, NULL) != SQLITE_OK)
    goto out;
  int r;
  while ((r = sqlite3_step(st)) == SQLITE_ROW) {
    m5_msg_addr_t a = {0};
    snprintf(a.type, sizeof a.type, "%s", (const char *)sqlite3_column_text(st, 0));
    snprintf(a.addr, sizeof a.addr, "%s", (const char *)sqlite3_column_text(st, 1));
    int64_t n = sqlite3_column_int64(st, 2);
    if (sq_pending_add(s, &a, SQ_KIND_MSG, n) != 0) {
      rc = M5_ENOMEM;
      goto out;
    }
    s->queued += (uint64_t)n;
  }
  if (r != SQLITE_DONE) goto out;
  sqlite3_finalize(st);
  st = NULL;
  /* Of those, the reports the store wrote (one delivery each, at first_dlv) have their own
   * bound: moved from the messages' count to the reports'. */
  if (sqlite3_prepare_v2(s->db,
                         "SELECT d.rcpt_type, d.rcpt_addr, count(*) FROM messages m"
                         " JOIN deliveries d ON d.id = m.first_dlv"
                         " WHERE m.kind = 1 AND d.state IN (0, 4) GROUP BY d.rcpt_addr, d.rcpt_type",
                         -1, &st, NULL) != SQLITE_OK)
    goto out;
  while ((r = sqlite3_step(st)) == SQLITE_ROW) {
    m5_msg_addr_t a = {0};
    snprintf(a.type, sizeof a.type, "%s", (const char *)sqlite3_column_text(st, 0));
    snprintf(a.addr, sizeof a.addr, "%s", (const char *)sqlite3_column_text(st, 1));
    int64_t n = sqlite3_column_int64(st, 2);
    if (sq_pending_add(s, &a, SQ_KIND_REPORT, n) != 0 ||
        sq_pending_add(s, &a, SQ_KIND_MSG, -n) != 0) {
      rc = M5_ENOMEM;
      goto out;
    }
  }
  if (r != SQLITE_DONE) goto out;
  sqlite3_finalize(st);
  st = NULL;
  if (sqlite3_prepare_v2(s->db,
                         "SELECT ori_type, ori_addr, count(*), sum(length(payload)), ori_gen,"
                         " sum(open)"
                         " FROM messages WHERE kind = 0 GROUP BY ori_addr, ori_type, ori_gen",
                         -1, &st, NULL) != SQLITE_OK)
    goto out;
  while ((r = sqlite3_step(st)) == SQLITE_ROW) {
    m5_msg_addr_t a = {0};
    snprintf(a.type, sizeof a.type, "%s", (const char *)sqlite3_column_text(st, 0));
    snprintf(a.addr, sizeof a.addr, "%s", (const char *)sqlite3_column_text(st, 1));
    if (sq_ori_add(s, &a, (uint64_t)sqlite3_column_int64(st, 4), sqlite3_column_int64(st, 2),
                   sqlite3_column_int64(st, 3), sqlite3_column_int64(st, 5)) != 0) {
      rc = M5_ENOMEM;
      goto out;
    }
  }
  if (r != SQLITE_DONE) goto out;
  sqlite3_finalize(st);
  st = NULL;
  if (sqlite3_prepare_v2(s->db, "SELECT ori, count(*) FROM report_tickets GROUP BY ori", -1, &st,
                         NULL) != SQLITE_OK)
    goto out;
  while ((r = sqlite3_step(st)) == SQLITE_ROW) {
    const char *ori = (const char *)sqlite3_column_text(st, 0);
    if (ori && sq_tickets_add(s, ori, sqlite3_column_int64(st, 1)) != 0) {
      rc = M5_ENOMEM;
      goto out;
    }
  }
  if (r != SQLITE_DONE) goto out;
  sqlite3_finalize(st);
  st = NULL;
  /* Only after a rollback can rows be in flight here (open queues them all first); the scan
   * has no index, which the common path does not pay for. */
  if (sqlite3_prepare_v2(s->db, "SELECT id, next_attempt_ms FROM deliveries WHERE state = 4", -1,
                         &st, NULL) != SQLITE_OK)
    goto out;
  while ((r = sqlite3_step(st)) == SQLITE_ROW) {
    if (sq_inflight_put(s, (uint64_t)sqlite3_column_int64(st, 0), sqlite3_column_int64(st, 1), NULL,
                        NULL, 0, 0) != 0) {
      rc = M5_ENOMEM;
      goto out;
    }
  }
  if (r != SQLITE_DONE) goto out;
  sqlite3_finalize(st);
  st = NULL;
  if (sqlite3_prepare_v2(s->db,
                         "SELECT count(*), (SELECT coalesce(max(id), 0) FROM deliveries)"
                         ", coalesce(max(id), 0) FROM messages",
                         -1, &st, NULL) != SQLITE_OK ||
      sqlite3_step(st) != SQLITE_ROW)
    goto out;
  s->messages = (uint64_t)sqlite3_column_int64(st, 0);
  uint64_t max_dlv = (uint64_t)sqlite3_column_int64(st, 1);
  uint64_t max_msg = (uint64_t)sqlite3_column_int64(st, 2);
  /* Ids only grow (a rolled-back batch leaves a gap): arrival order is id order. */
  if (s->next_dlv_id <= max_dlv) s->next_dlv_id = max_dlv + 1;
  if (s->next_msg_id <= max_msg) s->next_msg_id = max_msg + 1;
  rc = 0;
out:
  if (rc != 0) sq_log_error(s, "loading the queue counts");
  sqlite3_finalize(st);
  if (old) m5_hmap_free(old, free_val);
  if (old_oris) m5_hmap_free(old_oris, free_val);
  if (old_inflight) m5_hmap_free(old_inflight, free_val);
  if (old_tickets) m5_hmap_free(old_tickets, free_val);
  return rc;
}
