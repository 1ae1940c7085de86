/* Group and broadcast messages in the SQLite store (store.h M5_STORE_GROUP_SWEEP; TS 23.554
 * cl. 8.6.1, 8.7.4; docs/store.md "Group messages", docs/delivery.md "Groups and broadcast").
 *
 * A GROUP or BC message is stored once with one delivery per member read at acceptance, and
 * with the generation of the group or area it was read at (messages.group_gen, schema 5).
 * The membership changes afterwards: the fan-out checks each delivery before it pushes it,
 * and this sweep catches up with what is queued (a member removed, a group deleted, or every
 * change missed while m5s was down). It asks the caller's group_check about each PENDING
 * delivery and fails the ones it names a cause for, each with the failure report its
 * originator asked for (sq_finish, as MARK_FAILED), in the job's transaction. Deliveries in
 * flight (state 4) are left to their pusher, which checks them itself.
 *
 * Reads: only partial indexes that hold group messages alone (schema 5) and primary keys:
 * the messages of one group by (dest, id), of all groups by id, a message's deliveries by their
 * id range (ids of one message are consecutive; deliveries have no index on msg), and one
 * member's deliveries through the queue index joined to the group's index. A job looks at
 * `limit` messages at most, and at no more deliveries than one ACCEPT may write
 * (M5_STORE_RCPT_MAX) beyond its first message, so that one job never holds the store's
 * thread much longer than the largest accept; the caller runs it again from the cursor while
 * `more` says so. */
#include "sqlite_int.h"

#include "core/err.h"
#include "core/log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SWEEP_LIMIT_DEFAULT 64
#define SWEEP_DLV_BUDGET ((int64_t)M5_STORE_RCPT_MAX)

/* INDEXED BY: the planner could otherwise walk deliveries by primary key from the cursor (it
 * is ordered by id) or read message rows; the indexes are part of schema 5, which open makes
 * sure of. */
static const char *const gr_sql[GR_COUNT] = {
    [GR_MSGS_OF] = "SELECT id, dest_type, dest_addr, group_gen, first_dlv, n_dlv FROM messages"
                   " INDEXED BY messages_group WHERE dest_type = ?1 AND dest_addr = ?2"
                   " AND group_gen > 0 AND id > ?3 ORDER BY id LIMIT ?4",
    [GR_MSGS_ALL] = "SELECT id, dest_type, dest_addr, group_gen, first_dlv, n_dlv FROM messages"
                    " INDEXED BY messages_group_all WHERE group_gen > 0 AND id > ?1"
                    " ORDER BY id LIMIT ?2",
    [GR_DLVS] = "SELECT id, rcpt_type, rcpt_addr FROM deliveries WHERE id BETWEEN ?1 AND ?2"
                " AND state = 0",
    /* the cursor is a delivery id here: a member's queue is ordered by priority, so this
     * sorts it (at most max_per_recipient rows) */
    [GR_MEMBER] = "SELECT d.id, m.group_gen FROM deliveries d INDEXED BY deliveries_queue"
                  " JOIN messages m INDEXED BY messages_group ON m.dest_type = ?3"
                  " AND m.dest_addr = ?4 AND m.id = d.msg AND m.group_gen > 0"
                  " WHERE d.rcpt_addr = ?1 AND d.rcpt_type = ?2 AND d.state = 0 AND d.id > ?5"
                  " ORDER BY d.id LIMIT ?6",
};

int sq_groups_prepare(sq_t *s) {
  return sq_prepare_set(s, gr_sql, s->gr, GR_COUNT);
}

void sq_groups_finalize(sq_t *s) {
  sq_finalize_set(s->gr, GR_COUNT);
}

static void col_text(sqlite3_stmt *st, int col, char *out, size_t outlen) {
  const unsigned char *t = sqlite3_column_text(st, col);
  snprintf(out, outlen, "%s", t ? (const char *)t : "");
}

/* Deliveries to fail, collected before any is failed: failing one changes the tables the
 * statements are reading. cause is group_check's static text. */
typedef struct {
  uint64_t id;
  const char *cause;
} fail_t;

typedef struct {
  fail_t *v;
  size_t n, cap;
} fails_t;

static int fails_push(fails_t *f, uint64_t id, const char *cause) {
  if (f->n == f->cap) {
    size_t ncap = f->cap ? f->cap * 2 : 64;
    fail_t *nv = realloc(f->v, ncap * sizeof *nv);
    if (!nv) return M5_ENOMEM;
    f->v = nv;
    f->cap = ncap;
  }
  f->v[f->n].id = id;
  f->v[f->n].cause = cause;
  f->n++;
  return 0;
}

/* Fails what was collected (FAILED with its cause, its report written as MARK_FAILED writes
 * it, due at once) and empties the list. */
static int fails_run(sq_t *s, fails_t *f, m5_store_job_t *job) {
  int rc = 0;
  for (size_t i = 0; rc == 0 && i < f->n; i++) {
    m5_store_delivery_t d;
    memset(&d, 0, sizeof d);
    rc = sq_finish(s, f->v[i].id, M5_DELIV_FAILED, f->v[i].cause, 0, &d);
    free(d.msg.payload);
    if (rc == 0)
      job->group_failed++;
    else if (rc == M5_ENOENT) /* not PENDING any more (cannot happen within the job) */
      rc = 0;
  }
  f->n = 0;
  return rc;
}

static int is_group_dest(const m5_msg_addr_t *a) {
  return !strcmp(a->type, "GROUP") || !strcmp(a->type, "BC");
}

static int sweep_valid(const m5_store_job_t *job) {
  const m5_msg_addr_t *d = &job->msg.dest, *r = &job->rcpt;
  if (!job->group_check) return 0;
  if (d->type[0] && (!is_group_dest(d) || !d->addr[0])) return 0;
  if (r->type[0] &&
      ((strcmp(r->type, "UE") != 0 && strcmp(r->type, "AS") != 0) || !r->addr[0] || !d->type[0]))
    return 0;
  return 1;
}

/* One member of one group: its PENDING deliveries of that group's messages, in id order
 * from the cursor. */
static int sweep_member(sq_t *s, m5_store_job_t *job, size_t limit, fails_t *f) {
  sqlite3_stmt *st = s->gr[GR_MEMBER];
  sq_bind_str(st, 1, job->rcpt.addr, sizeof job->rcpt.addr);
  sq_bind_str(st, 2, job->rcpt.type, sizeof job->rcpt.type);
  sq_bind_str(st, 3, job->msg.dest.type, sizeof job->msg.dest.type);
  sq_bind_str(st, 4, job->msg.dest.addr, sizeof job->msg.dest.addr);
  sqlite3_bind_int64(st, 5, (int64_t)job->priv.from);
  sqlite3_bind_int64(st, 6, (int64_t)limit);
  size_t n = 0;
  uint64_t cursor = job->priv.from;
  int r = SQLITE_DONE, rc = 0;
  while (rc == 0 && n < limit && (r = sqlite3_step(st)) == SQLITE_ROW) {
    uint64_t id = (uint64_t)sqlite3_column_int64(st, 0);
    uint64_t gen = (uint64_t)sqlite3_column_int64(st, 1);
    n++;
    cursor = id;
    const char *cause = job->group_check(job->group_check_arg, &job->msg.dest, &job->rcpt, gen);
    if (cause) rc = fails_push(f, id, cause);
  }
  sq_done(st);
  if (rc != 0) return rc;
  if (n < limit && r != SQLITE_DONE) {
    sq_log_error(s, "listing a member's group deliveries");
    return M5_EIO;
  }
  if ((rc = fails_run(s, f, job)) != 0) return rc;
  job->id = cursor;
  job->more = n == limit;
  return 0;
}

typedef struct {
  int64_t id, first, n;
  uint64_t gen;
  m5_msg_addr_t dest;
} gmsg_t;

/* The messages of one group or area (msg.dest) or of all, in id order from the cursor: up to
 * limit, and no more deliveries than SWEEP_DLV_BUDGET after the first. */
static int list_messages(sq_t *s, m5_store_job_t *job, size_t limit, gmsg_t *out, size_t *n,
                         int *cut) {
  sqlite3_stmt *st;
  if (job->msg.dest.type[0]) {
    st = s->gr[GR_MSGS_OF];
    sq_bind_str(st, 1, job->msg.dest.type, sizeof job->msg.dest.type);
    sq_bind_str(st, 2, job->msg.dest.addr, sizeof job->msg.dest.addr);
    sqlite3_bind_int64(st, 3, (int64_t)job->priv.from);
    sqlite3_bind_int64(st, 4, (int64_t)limit);
  } else {
    st = s->gr[GR_MSGS_ALL];
    sqlite3_bind_int64(st, 1, (int64_t)job->priv.from);
    sqlite3_bind_int64(st, 2, (int64_t)limit);
  }
  *n = 0;
  *cut = 0;
  int64_t dlvs = 0;
  int r = SQLITE_DONE;
  while (*n < limit && (r = sqlite3_step(st)) == SQLITE_ROW) {
    gmsg_t *m = &out[*n];
    m->id = sqlite3_column_int64(st, 0);
    col_text(st, 1, m->dest.type, sizeof m->dest.type);
    col_text(st, 2, m->dest.addr, sizeof m->dest.addr);
    m->gen = (uint64_t)sqlite3_column_int64(st, 3);
    m->first = sqlite3_column_int64(st, 4);
    m->n = sqlite3_column_int64(st, 5);
    if (*n && dlvs + m->n > SWEEP_DLV_BUDGET) {
      *cut = 1;
      break;
    }
    dlvs += m->n;
    (*n)++;
  }
  sq_done(st);
  if (!*cut && *n < limit && r != SQLITE_DONE) {
    sq_log_error(s, "listing group messages");
    return M5_EIO;
  }
  return 0;
}

/* One message: its PENDING deliveries (the id range), each asked about. */
static int check_message(sq_t *s, m5_store_job_t *job, const gmsg_t *m, fails_t *f) {
  sqlite3_stmt *st = s->gr[GR_DLVS];
  sqlite3_bind_int64(st, 1, m->first);
  sqlite3_bind_int64(st, 2, m->first + m->n - 1);
  int r = SQLITE_DONE, rc = 0;
  while (rc == 0 && (r = sqlite3_step(st)) == SQLITE_ROW) {
    uint64_t id = (uint64_t)sqlite3_column_int64(st, 0);
    m5_msg_addr_t rcpt;
    memset(&rcpt, 0, sizeof rcpt);
    col_text(st, 1, rcpt.type, sizeof rcpt.type);
    col_text(st, 2, rcpt.addr, sizeof rcpt.addr);
    const char *cause = job->group_check(job->group_check_arg, &m->dest, &rcpt, m->gen);
    if (cause) rc = fails_push(f, id, cause);
  }
  sq_done(st);
  if (rc != 0) return rc;
  if (r != SQLITE_DONE) {
    sq_log_error(s, "listing a group message's deliveries");
    return M5_EIO;
  }
  return 0;
}

/* One group or area (msg.dest), or all: message by message from the cursor. */
static int sweep_messages(sq_t *s, m5_store_job_t *job, size_t limit, fails_t *f) {
  gmsg_t *msgs = calloc(limit, sizeof *msgs);
  if (!msgs) return M5_ENOMEM;
  size_t n;
  int cut;
  int rc = list_messages(s, job, limit, msgs, &n, &cut);
  uint64_t cursor = job->priv.from;
  for (size_t i = 0; rc == 0 && i < n; i++) {
    rc = check_message(s, job, &msgs[i], f);
    if (rc == 0) rc = fails_run(s, f, job);
    cursor = (uint64_t)msgs[i].id;
  }
  free(msgs);
  if (rc != 0) return rc;
  job->id = cursor;
  job->more = cut || n == limit;
  return 0;
}

int sq_groups_sweep(sq_t *s, m5_store_job_t *job) {
  /* The cursor in is job->priv.from (the id submitted): this run may be the second of its
   * batch, after a rollback undid what the first one did. Out, id is the cursor reached, or
   * the one submitted when the job fails (status other than 0). */
  job->id = job->priv.from;
  job->group_failed = 0;
  job->more = false;
  if (!sweep_valid(job)) return M5_EINVAL;
  size_t limit = job->limit ? job->limit : SWEEP_LIMIT_DEFAULT;
  if (limit > M5_STORE_LIST_MAX) limit = M5_STORE_LIST_MAX;
  fails_t f = {0};
  int rc = job->rcpt.type[0] ? sweep_member(s, job, limit, &f) : sweep_messages(s, job, limit, &f);
  free(f.v);
  if (rc != 0) { /* rolled back: nothing of it stays */
    job->id = job->priv.from;
    job->group_failed = 0;
    job->more = false;
  }
  if (rc == 0 && job->group_failed) {
    char what[2 * (M5_MSG_ADDR_MAX + 1) + 2 * 16 + 32];
    if (!job->msg.dest.type[0])
      snprintf(what, sizeof what, "every group and area");
    else
      snprintf(what, sizeof what, "%s:%s%s%s%s%s", job->msg.dest.type, job->msg.dest.addr,
               job->rcpt.type[0] ? ", member " : "", job->rcpt.type, job->rcpt.type[0] ? ":" : "",
               job->rcpt.addr);
    M5_LOGI(SQ_DOM, "%s: group sweep of %s: %llu queued deliveries failed", s->path, what,
            (unsigned long long)job->group_failed);
  }
  return rc;
}
