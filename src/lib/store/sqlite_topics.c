/* Messaging Topic subscriptions in the SQLite store (store.h M5_STORE_TOPIC_*; TS 23.554
 * cl. 8.8.1-8.8.3; docs/store.md, docs/delivery.md "Messaging Topics"). Table topic_subs
 * (schema 4, sqlite.c): one row per (topic, subscriber), the subscriber's binding generation
 * and the subscription's expiry.
 *
 * Why in the store: a subscription must survive sessions and restarts, and must end in the
 * very transaction that re-binds its UE Service ID (REBIND), like everything else the old
 * subscriber left. Expired rows are never listed (TOPIC_SUBSCRIBERS compares with now) and are
 * swept a few at a time, so an expiry needs no timer of its own. */
#include "sqlite_int.h"

#include "core/err.h"
#include "core/log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SWEEP_MAX 64
#define SWEEP_EVERY_MS 1000

static const char *const tp_sql[TP_COUNT] = {
    [TP_DROP_EXPIRED_OF] = "DELETE FROM topic_subs WHERE sub_addr = ?1 AND sub_type = ?2"
                           " AND expiry <= ?3",
    [TP_COUNT_OF] = "SELECT count(*) FROM topic_subs WHERE sub_addr = ?1 AND sub_type = ?2",
    [TP_HAS] = "SELECT 1 FROM topic_subs WHERE topic = ?1 AND sub_type = ?2 AND sub_addr = ?3",
    [TP_COUNT_TOPIC] = "SELECT count(*) FROM topic_subs WHERE topic = ?1 AND expiry > ?2",
    [TP_PUT] = "INSERT INTO topic_subs (topic, sub_type, sub_addr, gen, expiry, since_ms)"
               " VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (topic, sub_type, sub_addr)"
               " DO UPDATE SET gen = excluded.gen, expiry = excluded.expiry",
    [TP_DEL] = "DELETE FROM topic_subs WHERE topic = ?1 AND sub_type = ?2 AND sub_addr = ?3",
    [TP_LIST] = "SELECT sub_type, sub_addr, gen, expiry FROM topic_subs WHERE topic = ?1"
                " AND expiry > ?2 ORDER BY since_ms, sub_addr LIMIT ?3",
    [TP_DROP_ALL_OF] = "DELETE FROM topic_subs WHERE sub_addr = ?1 AND sub_type = ?2",
    [TP_DROP_REBOUND] = "DELETE FROM topic_subs WHERE sub_addr = ?1 AND sub_type = 'UE'"
                        " AND gen < ?2",
    [TP_SWEEP] = "DELETE FROM topic_subs WHERE (topic, sub_type, sub_addr) IN (SELECT topic,"
                 " sub_type, sub_addr FROM topic_subs WHERE expiry <= ?1 LIMIT ?2)",
};

int sq_topics_prepare(sq_t *s) {
  return sq_prepare_set(s, tp_sql, s->tp, TP_COUNT);
}

void sq_topics_finalize(sq_t *s) {
  sq_finalize_set(s->tp, TP_COUNT);
}

/* Runs a one-row count/exists query; *n = its first column, 0 without a row. */
static int scalar(sq_t *s, sqlite3_stmt *st, int64_t *n, const char *what) {
  int r = sqlite3_step(st);
  *n = r == SQLITE_ROW ? sqlite3_column_int64(st, 0) : 0;
  sq_done(st);
  if (r == SQLITE_ROW || r == SQLITE_DONE) return 0;
  sq_log_error(s, what);
  return M5_EIO;
}

static int sub_valid(const m5_store_job_t *job) {
  const m5_msg_addr_t *a = &job->rcpt;
  if (strcmp(a->type, "UE") != 0 && strcmp(a->type, "AS") != 0) return 0;
  if (!a->addr[0] || !job->topics || job->n_topics == 0 || job->n_topics > M5_STORE_TOPICS_MAX)
    return 0;
  for (size_t i = 0; i < job->n_topics; i++)
    if (!job->topics[i][0]) return 0;
  return 1;
}

int sq_topics_sub(sq_t *s, m5_store_job_t *job) {
  if (!sub_valid(job) || job->topic_expiry <= 0) return M5_EINVAL;
  const m5_msg_addr_t *a = &job->rcpt;
  int64_t now_ms = sq_now_ms(s);
  int64_t now_s = now_ms / 1000;
  job->topic_index = 0;
  /* A UE's subscription belongs to the binding it was made under: an older one than the
   * store knows was re-bound meanwhile (its REBIND dropped what it had). */
  uint64_t gen = 0;
  if (!strcmp(a->type, "UE")) {
    uint64_t known;
    if (sq_gen_of(s, a->addr, &known) != 0) return M5_EIO;
    if (job->gen && job->gen < known) return M5_EPERM;
    gen = job->gen > known ? job->gen : known;
  }
  /* Everything is checked before anything is written (all or nothing without a savepoint),
   * except dropping the subscriber's own expired rows, which changes nothing it could see. */
  sqlite3_stmt *st = s->tp[TP_DROP_EXPIRED_OF];
  sq_bind_str(st, 1, a->addr, sizeof a->addr);
  sq_bind_str(st, 2, a->type, sizeof a->type);
  sqlite3_bind_int64(st, 3, now_s);
  if (sq_step_done(s, st, "dropping a subscriber's expired subscriptions") != 0) return M5_EIO;
  int64_t have = 0, n_new = 0, has;
  st = s->tp[TP_COUNT_OF];
  sq_bind_str(st, 1, a->addr, sizeof a->addr);
  sq_bind_str(st, 2, a->type, sizeof a->type);
  if (scalar(s, st, &have, "counting a subscriber's subscriptions") != 0) return M5_EIO;
  int is_new[M5_STORE_TOPICS_MAX];
  for (size_t i = 0; i < job->n_topics; i++) {
    st = s->tp[TP_HAS];
    sq_bind_str(st, 1, job->topics[i], sizeof job->topics[i]);
    sq_bind_str(st, 2, a->type, sizeof a->type);
    sq_bind_str(st, 3, a->addr, sizeof a->addr);
    if (scalar(s, st, &has, "looking up a subscription") != 0) return M5_EIO;
    is_new[i] = !has;
    n_new += !has;
  }
  if (job->max_subs && (uint64_t)(have + n_new) > job->max_subs) {
    job->outcome = M5_STORE_SUBS_FULL;
    return 0;
  }
  for (size_t i = 0; job->max_subscribers && i < job->n_topics; i++) {
    if (!is_new[i]) continue;
    int64_t subscribers;
    st = s->tp[TP_COUNT_TOPIC];
    sq_bind_str(st, 1, job->topics[i], sizeof job->topics[i]);
    sqlite3_bind_int64(st, 2, now_s);
    if (scalar(s, st, &subscribers, "counting a topic's subscribers") != 0) return M5_EIO;
    if ((uint64_t)subscribers >= job->max_subscribers) {
      job->outcome = M5_STORE_TOPIC_FULL;
      job->topic_index = i;
      return 0;
    }
  }
  for (size_t i = 0; i < job->n_topics; i++) {
    st = s->tp[TP_PUT];
    sq_bind_str(st, 1, job->topics[i], sizeof job->topics[i]);
    sq_bind_str(st, 2, a->type, sizeof a->type);
    sq_bind_str(st, 3, a->addr, sizeof a->addr);
    sqlite3_bind_int64(st, 4, (int64_t)gen);
    sqlite3_bind_int64(st, 5, job->topic_expiry);
    sqlite3_bind_int64(st, 6, now_ms);
    if (sq_step_done(s, st, "storing a subscription") != 0) return M5_EIO;
  }
  job->gen = gen;
  job->outcome = M5_STORE_ACCEPTED;
  return 0;
}

int sq_topics_unsub(sq_t *s, m5_store_job_t *job) {
  const m5_msg_addr_t *a = &job->rcpt;
  if (job->n_topics == 0 && a->addr[0] && (!strcmp(a->type, "UE") || !strcmp(a->type, "AS"))) {
    sqlite3_stmt *st = s->tp[TP_DROP_ALL_OF];
    sq_bind_str(st, 1, a->addr, sizeof a->addr);
    sq_bind_str(st, 2, a->type, sizeof a->type);
    if (sq_step_done(s, st, "removing a subscriber's subscriptions") != 0) return M5_EIO;
    job->outcome = M5_STORE_ACCEPTED;
    return 0;
  }
  if (!sub_valid(job)) return M5_EINVAL;
  for (size_t i = 0; i < job->n_topics; i++) {
    sqlite3_stmt *st = s->tp[TP_DEL];
    sq_bind_str(st, 1, job->topics[i], sizeof job->topics[i]);
    sq_bind_str(st, 2, a->type, sizeof a->type);
    sq_bind_str(st, 3, a->addr, sizeof a->addr);
    if (sq_step_done(s, st, "removing a subscription") != 0) return M5_EIO;
  }
  job->outcome = M5_STORE_ACCEPTED;
  return 0;
}

int sq_topics_list(sq_t *s, m5_store_job_t *job) {
  if (!job->topics || job->n_topics < 1 || !job->topics[0][0]) return M5_EINVAL;
  size_t limit = job->limit && job->limit < M5_STORE_RCPT_MAX ? job->limit : M5_STORE_RCPT_MAX;
  sqlite3_stmt *st = s->tp[TP_LIST];
  sq_bind_str(st, 1, job->topics[0], sizeof job->topics[0]);
  sqlite3_bind_int64(st, 2, sq_now_ms(s) / 1000);
  sqlite3_bind_int64(st, 3, (int64_t)limit);
  size_t cap = 0;
  int r, rc = 0;
  while ((r = sqlite3_step(st)) == SQLITE_ROW) {
    if (job->n_subs == cap) {
      size_t ncap = cap ? cap * 2 : 16;
      m5_store_sub_t *n = realloc(job->subs, ncap * sizeof *n);
      if (!n) {
        rc = M5_ENOMEM;
        break;
      }
      job->subs = n;
      cap = ncap;
    }
    m5_store_sub_t *sub = &job->subs[job->n_subs++];
    memset(sub, 0, sizeof *sub);
    const unsigned char *t = sqlite3_column_text(st, 0);
    snprintf(sub->addr.type, sizeof sub->addr.type, "%s", t ? (const char *)t : "");
    t = sqlite3_column_text(st, 1);
    snprintf(sub->addr.addr, sizeof sub->addr.addr, "%s", t ? (const char *)t : "");
    sub->gen = (uint64_t)sqlite3_column_int64(st, 2);
    sub->expiry = sqlite3_column_int64(st, 3);
  }
  sq_done(st);
  if (rc == 0 && r != SQLITE_DONE) {
    sq_log_error(s, "listing a topic's subscribers");
    rc = M5_EIO;
  }
  if (rc != 0) {
    free(job->subs);
    job->subs = NULL;
    job->n_subs = 0;
    return rc == M5_ENOMEM ? M5_ENOMEM : M5_EIO;
  }
  return 0;
}

int sq_topics_drop_rebound(sq_t *s, const char *addr, uint64_t gen) {
  sqlite3_stmt *st = s->tp[TP_DROP_REBOUND];
  sq_bind_str(st, 1, addr, M5_MSG_ADDR_MAX + 1);
  sqlite3_bind_int64(st, 2, (int64_t)gen);
  return sq_step_done(s, st, "dropping a re-bound UE's subscriptions");
}

int sq_topics_sweep(sq_t *s, int64_t now_ms) {
  if (now_ms - s->topics_swept_ms < SWEEP_EVERY_MS) return 0;
  sqlite3_stmt *st = s->tp[TP_SWEEP];
  sqlite3_bind_int64(st, 1, now_ms / 1000);
  sqlite3_bind_int(st, 2, SWEEP_MAX);
  if (sq_step_done(s, st, "dropping expired subscriptions") != 0) return M5_EIO;
  if (sqlite3_changes(s->db) < SWEEP_MAX) s->topics_swept_ms = now_ms;
  return 0;
}
