/* The message store's checkpoints, off the writer thread (docs/store.md "Checkpoints").
 *
 * In WAL mode a checkpoint copies the pages the WAL holds back into the database file and
 * fsyncs it. Run by the writer itself (SQLite's wal_autocheckpoint), it stopped every commit
 * for its whole length: 8,192 frames took 15-50 ms, every ~9,000 messages under load, and
 * every message that arrived meanwhile waited: that was the p99 of a partial load
 * (docs/benchmarks.md). Here a thread of its own, with a connection of its own, runs PASSIVE
 * checkpoints, which never wait for the writer and which the writer never waits for: it
 * copies what was committed when it started while the writer goes on appending. Once it has
 * copied everything, the writer's next transaction starts the WAL over from its beginning,
 * so the file stays bounded.
 *
 * The writer pokes it from SQLite's WAL hook after each commit once the WAL holds
 * SQ_CKPT_PAGES frames. Should it ever fall far behind (SQ_CKPT_HARD frames: a stuck disk, a
 * starved thread), the writer checkpoints itself, as before: the WAL never grows without
 * bound. */
#include "sqlite_int.h"

#include "core/err.h"
#include "core/log.h"

#include <stdio.h>

#define SQ_CKPT_PAGES 4096      /* frames in the WAL that start a checkpoint */
#define SQ_CKPT_HARD (8 * 4096) /* frames at which the writer checkpoints itself */

static void *ckpt_main(void *arg) {
  sq_t *s = arg;
  pthread_setname_np(pthread_self(), "store-ckpt");
  pthread_mutex_lock(&s->ckpt_lock);
  for (;;) {
    while (!s->ckpt_stop && !s->ckpt_wanted) pthread_cond_wait(&s->ckpt_cond, &s->ckpt_lock);
    if (s->ckpt_stop) break;
    s->ckpt_wanted = 0;
    pthread_mutex_unlock(&s->ckpt_lock);
    int log = 0, copied = 0;
    int rc = sqlite3_wal_checkpoint_v2(s->ckpt_db, NULL, SQLITE_CHECKPOINT_PASSIVE, &log, &copied);
    pthread_mutex_lock(&s->ckpt_lock);
    if (rc == SQLITE_OK) {
      s->ckpt_runs++;
    } else if ((rc & 0xff) != SQLITE_BUSY) {
      /* BUSY: the writer ran one of its own (SQ_CKPT_HARD) just now; anything else is
       * logged, and the next poke tries again. */
      M5_LOGW(SQ_DOM, "%s: background checkpoint failed: %s", s->path,
              sqlite3_errmsg(s->ckpt_db));
    }
  }
  pthread_mutex_unlock(&s->ckpt_lock);
  return NULL;
}

/* Writer thread, after each commit: pages = frames in the WAL now. */
static int wal_hook(void *arg, sqlite3 *db, const char *name, int pages) {
  sq_t *s = arg;
  if (pages >= SQ_CKPT_HARD) {
    int log = 0, copied = 0;
    if (sqlite3_wal_checkpoint_v2(db, name, SQLITE_CHECKPOINT_PASSIVE, &log, &copied) ==
        SQLITE_OK)
      M5_LOGW(SQ_DOM, "%s: the background checkpoint fell behind (%d WAL frames): the writer "
              "ran one itself", s->path, pages);
    return SQLITE_OK;
  }
  if (pages >= SQ_CKPT_PAGES) {
    pthread_mutex_lock(&s->ckpt_lock);
    s->ckpt_wanted = 1;
    pthread_cond_signal(&s->ckpt_cond);
    pthread_mutex_unlock(&s->ckpt_lock);
  }
  return SQLITE_OK;
}

int sq_ckpt_start(sq_t *s, char *err, size_t errlen) {
  pthread_mutex_init(&s->ckpt_lock, NULL);
  pthread_cond_init(&s->ckpt_cond, NULL);
  s->ckpt_inited = 1;
  int rc = sqlite3_open_v2(s->path, &s->ckpt_db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL);
  if (rc == SQLITE_OK)
    rc = sqlite3_exec(s->ckpt_db, "PRAGMA synchronous=FULL", NULL, NULL, NULL);
  if (rc != SQLITE_OK) {
    snprintf(err, errlen, "store %s: cannot open its checkpoint connection: %s", s->path,
             s->ckpt_db ? sqlite3_errmsg(s->ckpt_db) : "out of memory");
    return M5_EIO;
  }
  if (pthread_create(&s->ckpt_thread, NULL, ckpt_main, s) != 0) {
    snprintf(err, errlen, "store %s: cannot start its checkpoint thread", s->path);
    return M5_EIO;
  }
  s->ckpt_started = 1;
  /* From here on SQLite's own wal_autocheckpoint is off: the hook replaces it. */
  sqlite3_wal_hook(s->db, wal_hook, s);
  return M5_OK;
}

void sq_ckpt_stop(sq_t *s) {
  if (s->db) sqlite3_wal_hook(s->db, NULL, NULL);
  if (s->ckpt_started) {
    pthread_mutex_lock(&s->ckpt_lock);
    s->ckpt_stop = 1;
    pthread_cond_signal(&s->ckpt_cond);
    pthread_mutex_unlock(&s->ckpt_lock);
    pthread_join(s->ckpt_thread, NULL);
    s->ckpt_started = 0;
  }
  if (s->ckpt_db) sqlite3_close(s->ckpt_db);
  s->ckpt_db = NULL;
  if (s->ckpt_inited) {
    pthread_cond_destroy(&s->ckpt_cond);
    pthread_mutex_destroy(&s->ckpt_lock);
    s->ckpt_inited = 0;
  }
}

uint64_t sq_ckpt_runs(sq_t *s) {
  if (!s->ckpt_inited) return 0;
  pthread_mutex_lock(&s->ckpt_lock);
  uint64_t n = s->ckpt_runs;
  pthread_mutex_unlock(&s->ckpt_lock);
  return n;
}
