/* AKMA context store on SQLite, served by one thread (architecture §5, §6; TS 33.535 6.1).
 *
 * Why these pragmas: WAL so that reads never wait for the writer's fsync; synchronous=FULL
 * because a registration acknowledged to the AUSF must survive a crash (the AUSF keeps no
 * AKMA material, 6.1 step 4); secure_delete so that a replaced or removed K_AKMA is zeroed
 * in the database pages rather than left in free space. */
#include "aanf_db.h"

#include "core/err.h"
#include "core/fs.h"
#include "core/jobthread.h"
#include "core/log.h"
#include "crypto/codec.h"

#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define DOM "db"

struct aanf_db {
  sqlite3 *conn;
  sqlite3_stmt *st_clear; /* delete the SUPI's old context and any holder of the A-KID */
  sqlite3_stmt *st_insert;
  sqlite3_stmt *st_lookup;
  sqlite3_stmt *st_remove;
  m5_jobthread_t *thread;
};

static const char schema[] = "CREATE TABLE IF NOT EXISTS akma_ctx ("
                             " akid TEXT PRIMARY KEY,"
                             " supi TEXT NOT NULL UNIQUE,"
                             " kakma BLOB NOT NULL CHECK (length(kakma) = 32),"
                             " registered INTEGER NOT NULL);"
                             "PRAGMA user_version = 1;";

static int prepare(aanf_db_t *db, const char *sql, sqlite3_stmt **st, char *err, size_t errlen) {
  if (sqlite3_prepare_v3(db->conn, sql, -1, SQLITE_PREPARE_PERSISTENT, st, NULL) != SQLITE_OK) {
    snprintf(err, errlen, "database: cannot prepare statement: %s", sqlite3_errmsg(db->conn));
    return M5_EIO;
  }
  return 0;
}

static void db_free(aanf_db_t *db) {
  m5_jobthread_free(db->thread);
  sqlite3_finalize(db->st_clear);
  sqlite3_finalize(db->st_insert);
  sqlite3_finalize(db->st_lookup);
  sqlite3_finalize(db->st_remove);
  if (db->conn) sqlite3_close(db->conn);
  free(db);
}

static void run_job(m5_job_t *job, void *ctx);

aanf_db_t *aanf_db_open(const char *path, char *err, size_t errlen) {
  aanf_db_t *db = calloc(1, sizeof *db);
  if (!db) {
    snprintf(err, errlen, "database: out of memory");
    return NULL;
  }
  /* 0700: the directory holds K_AKMA of every subscriber. */
  if (m5_fs_mkdir_parents(path, 0700, "db.path", err, errlen) != 0) goto fail;
  if (sqlite3_open_v2(path, &db->conn, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL) !=
      SQLITE_OK) {
    snprintf(err, errlen, "cannot open database %s: %s; check db.path", path,
             db->conn ? sqlite3_errmsg(db->conn) : "out of memory");
    goto fail;
  }
  sqlite3_extended_result_codes(db->conn, 1);
  char *msg = NULL;
  if (sqlite3_exec(db->conn,
                   "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA secure_delete=ON;",
                   NULL, NULL, &msg) != SQLITE_OK ||
      sqlite3_exec(db->conn, schema, NULL, NULL, &msg) != SQLITE_OK) {
    snprintf(err, errlen, "cannot initialise database %s: %s", path, msg ? msg : "?");
    sqlite3_free(msg);
    goto fail;
  }
  if (prepare(db, "DELETE FROM akma_ctx WHERE supi = ?1 OR akid = ?2", &db->st_clear, err,
              errlen) ||
      prepare(db, "INSERT INTO akma_ctx (akid, supi, kakma, registered) VALUES (?1, ?2, ?3, ?4)",
              &db->st_insert, err, errlen) ||
      prepare(db, "SELECT supi, kakma FROM akma_ctx WHERE akid = ?1", &db->st_lookup, err,
              errlen) ||
      prepare(db, "DELETE FROM akma_ctx WHERE supi = ?1", &db->st_remove, err, errlen))
    goto fail;
  db->thread = m5_jobthread_new(run_job, db);
  if (!db->thread) {
    snprintf(err, errlen, "database: cannot create its thread's event loop");
    goto fail;
  }
  return db;
fail:
  db_free(db);
  return NULL;
}

static int step_done(aanf_db_t *db, sqlite3_stmt *st, const char *what) {
  int rc = sqlite3_step(st);
  sqlite3_reset(st);
  sqlite3_clear_bindings(st);
  if (rc != SQLITE_DONE) {
    M5_LOGE(DOM, "%s failed: %s", what, sqlite3_errmsg(db->conn));
    return M5_EIO;
  }
  return 0;
}

static int exec_simple(aanf_db_t *db, const char *sql) {
  if (sqlite3_exec(db->conn, sql, NULL, NULL, NULL) != SQLITE_OK) {
    M5_LOGE(DOM, "%s failed: %s", sql, sqlite3_errmsg(db->conn));
    return M5_EIO;
  }
  return 0;
}

static int do_register(aanf_db_t *db, aanf_db_job_t *job) {
  if (exec_simple(db, "BEGIN IMMEDIATE") != 0) return M5_EIO;
  sqlite3_bind_text(db->st_clear, 1, job->supi, -1, SQLITE_STATIC);
  sqlite3_bind_text(db->st_clear, 2, job->akid, -1, SQLITE_STATIC);
  int rc = step_done(db, db->st_clear, "removing the old AKMA context");
  if (rc == 0) {
    sqlite3_bind_text(db->st_insert, 1, job->akid, -1, SQLITE_STATIC);
    sqlite3_bind_text(db->st_insert, 2, job->supi, -1, SQLITE_STATIC);
    sqlite3_bind_blob(db->st_insert, 3, job->kakma, M5_AKMA_KEY_LEN, SQLITE_STATIC);
    sqlite3_bind_int64(db->st_insert, 4, (sqlite3_int64)time(NULL));
    rc = step_done(db, db->st_insert, "storing the AKMA context");
  }
  if (rc == 0) rc = exec_simple(db, "COMMIT");
  if (rc != 0) exec_simple(db, "ROLLBACK");
  return rc;
}

static int do_lookup(aanf_db_t *db, aanf_db_job_t *job) {
  sqlite3_stmt *st = db->st_lookup;
  int rc;
  sqlite3_bind_text(st, 1, job->akid, -1, SQLITE_STATIC);
  int s = sqlite3_step(st);
  if (s == SQLITE_ROW) {
    const unsigned char *supi = sqlite3_column_text(st, 0);
    const void *key = sqlite3_column_blob(st, 1);
    size_t supi_len = supi ? strlen((const char *)supi) : 0;
    if (!supi || supi_len >= sizeof job->supi || !key ||
        sqlite3_column_bytes(st, 1) != M5_AKMA_KEY_LEN) {
      M5_LOGE(DOM, "corrupt AKMA context row (bad supi or key length)");
      rc = M5_EIO;
    } else {
      memcpy(job->supi, supi, supi_len + 1);
      memcpy(job->kakma, key, M5_AKMA_KEY_LEN);
      rc = 0;
    }
  } else if (s == SQLITE_DONE) {
    rc = M5_ENOENT;
  } else {
    M5_LOGE(DOM, "looking up an AKMA context failed: %s", sqlite3_errmsg(db->conn));
    rc = M5_EIO;
  }
  sqlite3_reset(st);
  sqlite3_clear_bindings(st);
  return rc;
}

static int do_remove(aanf_db_t *db, aanf_db_job_t *job) {
  sqlite3_bind_text(db->st_remove, 1, job->supi, -1, SQLITE_STATIC);
  int rc = step_done(db, db->st_remove, "removing an AKMA context");
  if (rc == 0 && sqlite3_changes(db->conn) == 0) rc = M5_ENOENT;
  return rc;
}

static void run_job(m5_job_t *base, void *ctx) {
  aanf_db_t *db = ctx;
  aanf_db_job_t *job = (aanf_db_job_t *)base;
  switch (job->op) {
  case AANF_DB_REGISTER:
    job->status = do_register(db, job);
    break;
  case AANF_DB_LOOKUP:
    job->status = do_lookup(db, job);
    break;
  case AANF_DB_REMOVE:
    job->status = do_remove(db, job);
    break;
  default:
    job->status = M5_EINVAL;
    break;
  }
}

int aanf_db_start(aanf_db_t *db, size_t queue_cap) {
  m5_jobthread_set_name(db->thread, "aanf-db");
  return m5_jobthread_start(db->thread, queue_cap);
}

int aanf_db_submit(aanf_db_t *db, aanf_db_job_t *job) {
  return m5_jobthread_submit(db->thread, &job->base);
}

void aanf_db_close(aanf_db_t *db) {
  if (!db) return;
  db_free(db);
}
