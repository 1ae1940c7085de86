/* A thread that serves jobs from other threads' loops, one at a time, in submission order:
 * the home of a blocking resource such as a SQLite connection (architecture §6: no worker
 * ever waits for the disk). A worker fills a job (an m5_job_t as its first member, naming
 * the worker's reply mailbox), submits it, and gets the same pointer back, finished, through
 * that mailbox on its own loop. On a thread that commits the jobs of one wake-up together
 * (m5_jobthread_set_batch_sched), they are all run before any of them is answered, and each
 * owner's replies then go in one post (one wake-up).
 *
 * A finished job is never dropped, since its owner waits for it: if the reply mailbox is
 * full, the job is parked and posted again about a millisecond later. Owners keep that
 * transient by bounding their outstanding jobs by their reply mailbox's capacity. */
#ifndef M5_CORE_JOBTHREAD_H
#define M5_CORE_JOBTHREAD_H

#include "loop.h"

#include <stddef.h>

typedef struct m5_job {
  m5_mailbox_t *reply; /* set by the submitter; the finished job is posted here */
  struct m5_job *next; /* private to the job thread */
} m5_job_t;

typedef struct m5_jobthread m5_jobthread_t;

/* run(job, ctx) executes each job on the thread (it may block: that is the point). */
m5_jobthread_t *m5_jobthread_new(void (*run)(m5_job_t *job, void *ctx), void *ctx);
/* Names the thread (at most 15 characters kept) for top -H, perf and /proc; before start. */
void m5_jobthread_set_name(m5_jobthread_t *t, const char *name);
/* For a thread whose run() commits the jobs of a wake-up together (the message store): it runs
 * as SCHED_BATCH and answers those jobs together (jobthread.c says why); before start. The
 * registry's and the AAnF's threads, one commit per job, answer each job at once. */
void m5_jobthread_set_batch_sched(m5_jobthread_t *t);
/* Starts the thread; queue_cap bounds the jobs waiting for it. */
int m5_jobthread_start(m5_jobthread_t *t, size_t queue_cap);
/* From any thread. M5_EFULL when the queue is full (the caller keeps the job), M5_ECLOSED
 * before start. */
int m5_jobthread_submit(m5_jobthread_t *t, m5_job_t *job);
/* The same in two steps, for a submitter that must submit under a lock of its own (see
 * m5_mailbox_post_start): _finish exactly once after every successful _start, after the
 * submitter's lock is released. */
int m5_jobthread_submit_start(m5_jobthread_t *t, m5_job_t *job, int *wake);
void m5_jobthread_submit_finish(m5_jobthread_t *t, int wake);
/* Runs the jobs still queued, delivers every reply, stops and joins the thread, frees. Submit
 * nothing afterwards; the reply mailboxes must still exist. NULL is ignored. */
void m5_jobthread_free(m5_jobthread_t *t);

#endif
