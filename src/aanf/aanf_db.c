/* AKMA context store on SQLite, served by one thread (architecture §5, §6; TS 33.535 6.1).
 *
 * Why these pragmas: WAL so that reads never wait for the writer's fsync; synchronous=FULL
 * because a registration acknowledged to the AUSF must survive a crash (the AUSF keeps no
 * AKMA material, 6.1 step 4); secure_delete so that a replaced or removed K_AKMA is zeroed
 * in the database pages rather than left in free space. */
#include "aanf_db.h"

#include "core/err.h"
#include "core/log.h"
#include "crypto/codec.h"

#include <errno.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#define DOM "db"
#define REPLY_RETRY_MS 1

struct aanf_db {
  sqlite3 *conn;
  sqlite3_stmt *st_clear; /* delete the SUPI's old context and any holder of the A-KID */
  sqlite3_stmt *st_insert;
  sqlite3_stmt *st_lookup;
  sqlite3_stmt *st_remove;
  m5_loop_t *loop;
  m5_mailbox_t *inbox;
  pthread_t thread;
  int started;
  aanf_db_job_t *retry_head; /* finished jobs whose reply mailbox was full */
  m5_timer_id_t retry_timer;
  int stopping;
};

static const char schema[] = "CREATE TABLE IF NOT EXISTS akma_ctx ("
                             " akid TEXT PRIMARY KEY,"
                             " supi TEXT NOT NULL UNIQUE,"
                             " kakma BLOB NOT NULL CHECK (length(kakma) = 32),"
                             " registered INTEGER NOT NULL);"
                             "PRAGMA user_version = 1;";

/* A job pointer that is not a job: posted by aanf_db_close() after every real job, so the
 * mailbox's order guarantees the queue is empty when the thread stops. */
static aanf_db_job_t stop_marker;

static int mkdirs(const char *path, char *err, size_t errlen) {
  char dir[4096];
  size_t n = strlen(path);
  if (n >= sizeof dir) {
    snprintf(err, errlen, "db.path: '%s' is too long", path);
    return M5_ERANGE;
  }
  memcpy(dir, path, n + 1);
  char *slash = strrchr(dir, '/');
  if (!slash || slash == dir) return 0;
  *slash = '\0';
  for (char *p = dir + 1;; p++) {
    if (*p != '/' && *p != '\0') continue;
    char c = *p;
    *p = '\0';
    /* 0700: the directory holds K_AKMA of every subscriber. */
    if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
      snprintf(err, errlen, "cannot create directory %s for db.path: %s", dir, strerror(errno));
      return M5_EIO;
    }
    *p = c;
    if (c == '\0') break;
  }
  return 0;
}

static int prepare(aanf_db_t *db, const char *sql, sqlite3_stmt **st, char *err, size_t errlen) {
  if (sqlite3_prepare_v3(db->conn, sql, -1, SQLITE_PREPARE_PERSISTENT, st, NULL) != SQLITE_OK) {
    snprintf(err, errlen, "database: cannot prepare statement: %s", sqlite3_errmsg(db->conn));
    return M5_EIO;
  }
  return 0;
}

static void db_free(aanf_db_t *db) {
  sqlite3_finalize(db->st_clear);
  sqlite3_finalize(db->st_insert);
  sqlite3_finalize(db->st_lookup);
  sqlite3_finalize(db->st_remove);
  if (db->conn) sqlite3_close(db->conn);
  if (db->inbox) m5_mailbox_free(db->inbox, NULL);
  if (db->loop) m5_loop_free(db->loop);
  free(db);
}

static void on_job(void *msg, void *arg);

aanf_db_t *aanf_db_open(const char *path, char *err, size_t errlen) {
  aanf_db_t *db = calloc(1, sizeof *db);
  if (!db) {
    snprintf(err, errlen, "database: out of memory");
    return NULL;
  }
  if (mkdirs(path, err, errlen) != 0) goto fail;
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
  db->loop = m5_loop_new();
  if (!db->loop) {
    snprintf(err, errlen, "database: cannot create its event loop");
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

static void maybe_stop(aanf_db_t *db) {
  if (db->stopping && !db->retry_head) m5_loop_stop(db->loop);
}

static void reply(aanf_db_t *db, aanf_db_job_t *job);

static void on_retry(m5_loop_t *loop, void *arg) {
  (void)loop;
  aanf_db_t *db = arg;
  aanf_db_job_t *list = db->retry_head;
  db->retry_head = NULL;
  db->retry_timer = 0;
  while (list) {
    aanf_db_job_t *job = list;
    list = job->db_next;
    job->db_next = NULL;
    reply(db, job);
  }
  maybe_stop(db);
}

/* The submitter bounds its outstanding jobs by its reply mailbox's capacity, so a full reply
 * mailbox is transient; the job is never dropped, since its owner is waiting for it, but
 * parked and posted again shortly. */
static void reply(aanf_db_t *db, aanf_db_job_t *job) {
  if (m5_mailbox_post(job->reply, job) == 0) return;
  job->db_next = db->retry_head;
  db->retry_head = job;
  if (!db->retry_timer) {
    db->retry_timer = m5_loop_timer_add(db->loop, REPLY_RETRY_MS, on_retry, db);
    if (!db->retry_timer) M5_LOGE(DOM, "cannot arm the reply retry timer; retrying later");
  }
}

static void on_job(void *msg, void *arg) {
  aanf_db_t *db = arg;
  aanf_db_job_t *job = msg;
  if (job == &stop_marker) {
    db->stopping = 1;
    maybe_stop(db);
    return;
  }
  if (db->retry_head && !db->retry_timer) on_retry(db->loop, db);
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
  reply(db, job);
}

static void *db_main(void *arg) {
  aanf_db_t *db = arg;
  int rc = m5_loop_run(db->loop);
  if (rc != 0) M5_LOGE(DOM, "database loop failed: %s", m5_strerror(rc));
  return NULL;
}

int aanf_db_start(aanf_db_t *db, size_t queue_cap) {
  db->inbox = m5_mailbox_new(db->loop, queue_cap, on_job, db);
  if (!db->inbox) return M5_ENOMEM;
  if (pthread_create(&db->thread, NULL, db_main, db) != 0) return M5_EIO;
  db->started = 1;
  return 0;
}

int aanf_db_submit(aanf_db_t *db, aanf_db_job_t *job) {
  return m5_mailbox_post(db->inbox, job);
}

void aanf_db_close(aanf_db_t *db) {
  if (!db) return;
  if (db->started) {
    int rc;
    while ((rc = m5_mailbox_post(db->inbox, &stop_marker)) == M5_EFULL) {
      struct timespec ts = {0, 1000000};
      nanosleep(&ts, NULL);
    }
    if (rc != 0) m5_loop_stop(db->loop);
    pthread_join(db->thread, NULL);
  }
  db_free(db);
}
