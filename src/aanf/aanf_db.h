/* AKMA context store of m5-aanf (TS 33.535 cl. 6.1): one context per SUPI {A-KID, K_AKMA},
 * found by A-KID; a new registration for a SUPI replaces its old context (6.1 step 5).
 *
 * SQLite runs on a thread of its own (architecture §6): a worker fills an aanf_db_job_t,
 * submits it, and gets the same job back, finished, through the reply mailbox on its own loop.
 * No worker ever waits for SQLite. */
#ifndef M5_AANF_DB_H
#define M5_AANF_DB_H

#include "aanf_msg.h"
#include "core/jobthread.h"

#include <stddef.h>
#include <stdint.h>

typedef struct aanf_db aanf_db_t;

typedef enum {
  AANF_DB_REGISTER, /* in: supi, akid, kakma; status 0 */
  AANF_DB_LOOKUP,   /* in: akid; out: supi, kakma; status 0 or M5_ENOENT */
  AANF_DB_REMOVE,   /* in: supi; status 0 or M5_ENOENT */
} aanf_db_op_t;

typedef struct aanf_db_job {
  m5_job_t base; /* first: base.reply is the submitter's mailbox, which gets the job back */
  aanf_db_op_t op;
  int status;                   /* set by the DB thread: 0, M5_ENOENT or M5_EIO */
  char supi[AANF_IMSI_MAX + 1]; /* IMSI digits */
  char akid[M5_AKMA_AKID_MAX + 1];
  uint8_t kakma[M5_AKMA_KEY_LEN]; /* secret: the submitter wipes it when done */
  void *arg;                      /* the submitter's own context */
} aanf_db_job_t;

/* Opens (creating the directory, the file and the schema) on the calling thread, so start-up
 * errors are reported before any thread runs. NULL with a message in err on failure. */
aanf_db_t *aanf_db_open(const char *path, char *err, size_t errlen);
/* Starts the DB thread; queue_cap bounds the jobs waiting for it. */
int aanf_db_start(aanf_db_t *db, size_t queue_cap);
/* From any thread. M5_EFULL when the queue is full (the caller keeps the job). The reply
 * mailbox must have room for every job its owner has outstanding: the DB thread does not
 * drop a finished job, it retries the post. */
int aanf_db_submit(aanf_db_t *db, aanf_db_job_t *job);
/* Stops the thread (after its queue is empty; submit nothing afterwards) and closes. */
void aanf_db_close(aanf_db_t *db);

#endif
