/* The daemons' worker pool (architecture §6): N event loops, worker 0's on the calling thread,
 * the others on threads of their own. Worker 0's loop takes SIGTERM and SIGINT and tells every
 * worker to drain; the pool joins the threads once their loops have stopped.
 *
 * The daemon sets up each worker's listeners on its loop (m5_workers_loop) on the main thread
 * before m5_workers_start, so that a bind or certificate error is reported synchronously at
 * start-up; pthread_create orders that set-up before the worker's first use of its loop. */
#ifndef M5_CORE_WORKERS_H
#define M5_CORE_WORKERS_H

#include "loop.h"

#include <stdatomic.h>
#include <stddef.h>

typedef struct m5_workers m5_workers_t;

typedef struct {
  const char *name;      /* the daemon ("m5s"): prefix of the start-up errors on stderr */
  const char *dom;       /* log domain */
  const char *drain_msg; /* logged as "SIGTERM: <drain_msg>" */
  size_t n;              /* workers, at least 1 */
  /* Runs once on worker index's loop when it is to drain; the daemon stops that loop
   * (m5_loop_stop) when the worker has finished. */
  void (*drain)(void *arg, size_t index);
  void *arg;
} m5_workers_opts_t;

/* Creates the loops and what carries the drain command, and watches SIGTERM and SIGINT on
 * worker 0's loop (block them first, see m5_daemon_setup). NULL after printing why. */
m5_workers_t *m5_workers_new(const m5_workers_opts_t *opts);
/* Frees the loops, after m5_workers_run or instead of it; the daemon has freed what it set up
 * on them. */
void m5_workers_free(m5_workers_t *ws);

m5_loop_t *m5_workers_loop(m5_workers_t *ws, size_t index);
/* 1 from a successful m5_workers_start until a signal starts the drain, for /healthz. */
const atomic_int *m5_workers_ready(const m5_workers_t *ws);

/* Starts workers 1..n-1 and marks the pool ready. If a thread cannot start, returns M5_EIO
 * after printing why and telling those already running to drain. m5_workers_run follows in
 * either case. */
int m5_workers_start(m5_workers_t *ws);
/* Runs worker 0's loop until it stops, then joins the others. 0, or M5_EIO if worker 0's
 * event loop failed (the others are told to drain). */
int m5_workers_run(m5_workers_t *ws);

#endif
