/* The uplink spool's file (gw_int.h): one SQLite database of its own, WAL with
 * synchronous=FULL, so that a COMMIT has reached the disk (fsync) before the core tells an
 * adapter M5GW_UP_SPOOLED; what a device sent then survives kill -9 and power loss and is
 * re-sent after a restart (docs/gateways.md, "The spool"). One table, rows in arrival order;
 * a row is deleted once m5s answered for it for good. The core commits once per loop
 * iteration for all the messages of that iteration (gw_up.c), so the fsyncs are shared. */
#include "gateway/core/gw_int.h"

#include "core/err.h"
#include "core/fs.h"
#include "core/log.h"

#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct gw_spool {
  sqlite3 *db;
  sqlite3_stmt *ins, *del, *sel, *begin, *commit, *rollback;
};

static const char *const SCHEMA = "PRAGMA journal_mode=WAL;"
                                  "PRAGMA synchronous=FULL;"
                                  "CREATE TABLE IF NOT EXISTS uplink("
                                  " seq INTEGER PRIMARY KEY AUTOINCREMENT,"
                                  " is_report INTEGER NOT NULL CHECK (is_report IN (0, 1)),"
                                  " body TEXT NOT NULL,"
                                  " created INTEGER NOT NULL DEFAULT (strftime('%s', 'now')));"
                                  "PRAGMA user_version=1;";

gw_spool_t *gw_spool_open(const char *path, char *err, size_t errlen) {
  if (m5_fs_mkdir_parents(path, 0700, "the spool", err, errlen) != 0) return NULL;
  gw_spool_t *sp = calloc(1, sizeof *sp);
  if (!sp) {
    snprintf(err, errlen, "spool: out of memory");
    return NULL;
  }
  int rc = sqlite3_open_v2(path, &sp->db,
                           SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
  char *msg = NULL;
  /* One process per spool: the lock taken here (a write in exclusive locking mode) is held
   * until close, so a second m5gw given the same file stops at start instead of sending the
   * same messages alongside. */
  if (rc == SQLITE_OK) rc = sqlite3_busy_timeout(sp->db, 100);
  if (rc == SQLITE_OK) rc = sqlite3_exec(sp->db, "PRAGMA locking_mode=EXCLUSIVE", NULL, NULL, &msg);
  if (rc == SQLITE_OK) rc = sqlite3_exec(sp->db, SCHEMA, NULL, NULL, &msg);
  if (rc == SQLITE_OK) rc = sqlite3_exec(sp->db, "BEGIN IMMEDIATE; COMMIT", NULL, NULL, &msg);
  if (rc == SQLITE_BUSY || rc == SQLITE_LOCKED) {
    snprintf(err, errlen, "spool %s: in use by another process (another m5gw on this file?)", path);
    sqlite3_free(msg);
    gw_spool_close(sp);
    return NULL;
  }
  if (rc == SQLITE_OK) rc = sqlite3_busy_timeout(sp->db, 2000);
  if (rc == SQLITE_OK) {
    int v = 0;
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(sp->db, "PRAGMA user_version", -1, &st, NULL) == SQLITE_OK) {
      if (sqlite3_step(st) == SQLITE_ROW) v = sqlite3_column_int(st, 0);
      sqlite3_finalize(st);
    }
    if (v != 1) {
      snprintf(err, errlen, "spool %s: schema version %d, this m5gw knows 1", path, v);
      gw_spool_close(sp);
      return NULL;
    }
  }
  struct {
    sqlite3_stmt **st;
    const char *sql;
  } prep[] = {{&sp->ins, "INSERT INTO uplink(is_report, body) VALUES (?1, ?2)"},
              {&sp->del, "DELETE FROM uplink WHERE seq = ?1"},
              {&sp->sel, "SELECT seq, is_report, body FROM uplink ORDER BY seq"},
              {&sp->begin, "BEGIN IMMEDIATE"},
              {&sp->commit, "COMMIT"},
              {&sp->rollback, "ROLLBACK"}};
  for (size_t i = 0; rc == SQLITE_OK && i < sizeof prep / sizeof prep[0]; i++)
    rc = sqlite3_prepare_v2(sp->db, prep[i].sql, -1, prep[i].st, NULL);
  if (rc != SQLITE_OK) {
    snprintf(err, errlen, "spool %s: %s", path, msg ? msg : sqlite3_errmsg(sp->db));
    sqlite3_free(msg);
    gw_spool_close(sp);
    return NULL;
  }
  return sp;
}

void gw_spool_close(gw_spool_t *sp) {
  if (!sp) return;
  sqlite3_finalize(sp->ins);
  sqlite3_finalize(sp->del);
  sqlite3_finalize(sp->sel);
  sqlite3_finalize(sp->begin);
  sqlite3_finalize(sp->commit);
  sqlite3_finalize(sp->rollback);
  sqlite3_close(sp->db);
  free(sp);
}

const char *gw_spool_error(gw_spool_t *sp) {
  return sqlite3_errmsg(sp->db);
}

static int step_reset(sqlite3_stmt *st) {
  int rc = sqlite3_step(st);
  sqlite3_reset(st);
  sqlite3_clear_bindings(st);
  return rc == SQLITE_DONE ? 0 : M5_EIO;
}

int gw_spool_load(gw_spool_t *sp,
                  int (*each)(void *arg, int64_t seq, bool is_report, const char *body, size_t len),
                  void *arg) {
  int rc, out = 0;
  while ((rc = sqlite3_step(sp->sel)) == SQLITE_ROW && out == 0) {
    const char *body = (const char *)sqlite3_column_text(sp->sel, 2);
    out = each(arg, sqlite3_column_int64(sp->sel, 0), sqlite3_column_int(sp->sel, 1) != 0,
               body ? body : "", (size_t)sqlite3_column_bytes(sp->sel, 2));
  }
  if (out == 0 && rc != SQLITE_DONE && rc != SQLITE_ROW) out = M5_EIO;
  sqlite3_reset(sp->sel);
  return out;
}

int gw_spool_begin(gw_spool_t *sp) {
  return step_reset(sp->begin);
}

int gw_spool_commit(gw_spool_t *sp) {
  return step_reset(sp->commit);
}

void gw_spool_rollback(gw_spool_t *sp) {
  if (!sqlite3_get_autocommit(sp->db)) step_reset(sp->rollback);
}

int gw_spool_insert(gw_spool_t *sp, bool is_report, const char *body, size_t len, int64_t *seq) {
  if (sqlite3_bind_int(sp->ins, 1, is_report ? 1 : 0) != SQLITE_OK ||
      sqlite3_bind_text(sp->ins, 2, body, (int)len, SQLITE_STATIC) != SQLITE_OK)
    return M5_EIO;
  int rc = step_reset(sp->ins);
  if (rc == 0) *seq = sqlite3_last_insert_rowid(sp->db);
  return rc;
}

int gw_spool_delete(gw_spool_t *sp, int64_t seq) {
  if (sqlite3_bind_int64(sp->del, 1, seq) != SQLITE_OK) return M5_EIO;
  return step_reset(sp->del);
}
