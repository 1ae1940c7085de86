/* Worker threads, their drain command and SIGTERM/SIGINT (see workers.h). */
#include "workers.h"

#include "err.h"
#include "log.h"

#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>

typedef struct {
  m5_workers_t *ws;
  size_t index;
  m5_loop_t *loop;
  m5_mailbox_t *ctl; /* "drain" from worker 0's signal handler */
  pthread_t thread;
  int thread_started;
  int draining;
} worker_t;

struct m5_workers {
  m5_workers_opts_t o;
  worker_t *w;
  atomic_int ready;
  int signalled;
};

static void on_ctl(void *msg, void *arg) {
  (void)msg;
  worker_t *w = arg;
  if (w->draining) return;
  w->draining = 1;
  w->ws->o.drain(w->ws->o.arg, w->index);
}

static void drain_all(m5_workers_t *ws) {
  for (size_t i = 0; i < ws->o.n; i++)
    if (m5_mailbox_post(ws->w[i].ctl, &ws->w[i]) != 0)
      M5_LOGE(ws->o.dom, "cannot tell worker %zu to drain (its command queue is full)", i);
}

static void on_signal(m5_loop_t *loop, int signo, void *arg) {
  (void)loop;
  m5_workers_t *ws = arg;
  if (ws->signalled) {
    M5_LOGI(ws->o.dom, "signal %d: already draining", signo);
    return;
  }
  ws->signalled = 1;
  M5_LOGI(ws->o.dom, "%s: %s", signo == SIGTERM ? "SIGTERM" : "SIGINT", ws->o.drain_msg);
  atomic_store(&ws->ready, 0);
  drain_all(ws);
}

static void *worker_main(void *arg) {
  worker_t *w = arg;
  /* "m5s-w1" in top -H, perf and /proc/PID/task (worker 0 is the main thread and keeps the
   * process's own name, which pgrep and pidof look for). */
  char nm[16];
  snprintf(nm, sizeof nm, "%.9s-w%zu", w->ws->o.name ? w->ws->o.name : "m5", w->index);
  pthread_setname_np(pthread_self(), nm);
  int rc = m5_loop_run(w->loop);
  if (rc != 0)
    M5_LOGE(w->ws->o.dom, "worker %zu: event loop failed: %s", w->index, m5_strerror(rc));
  return NULL;
}

m5_workers_t *m5_workers_new(const m5_workers_opts_t *opts) {
  m5_workers_t *ws = calloc(1, sizeof *ws);
  worker_t *w = calloc(opts->n, sizeof *w);
  if (!ws || !w) {
    fprintf(stderr, "%s: out of memory\n", opts->name);
    free(ws);
    free(w);
    return NULL;
  }
  ws->o = *opts;
  ws->w = w;
  atomic_init(&ws->ready, 0);
  for (size_t i = 0; i < opts->n; i++) {
    w[i].ws = ws;
    w[i].index = i;
    w[i].loop = m5_loop_new();
    if (!w[i].loop) {
      fprintf(stderr, "%s: cannot create an event loop: out of memory or file descriptors\n",
              opts->name);
      goto fail;
    }
    w[i].ctl = m5_mailbox_new(w[i].loop, 4, on_ctl, &w[i]);
    if (!w[i].ctl) {
      fprintf(stderr, "%s: out of memory setting up worker %zu\n", opts->name, i);
      goto fail;
    }
  }
  if (m5_loop_signal(w[0].loop, SIGTERM, on_signal, ws) != 0 ||
      m5_loop_signal(w[0].loop, SIGINT, on_signal, ws) != 0) {
    fprintf(stderr, "%s: cannot watch SIGTERM/SIGINT\n", opts->name);
    goto fail;
  }
  return ws;
fail:
  m5_workers_free(ws);
  return NULL;
}

void m5_workers_free(m5_workers_t *ws) {
  if (!ws) return;
  for (size_t i = 0; i < ws->o.n; i++) {
    if (ws->w[i].ctl) m5_mailbox_free(ws->w[i].ctl, NULL);
    if (ws->w[i].loop) m5_loop_free(ws->w[i].loop);
  }
  free(ws->w);
  free(ws);
}

m5_loop_t *m5_workers_loop(m5_workers_t *ws, size_t index) {
  return ws->w[index].loop;
}

const atomic_int *m5_workers_ready(const m5_workers_t *ws) {
  return &ws->ready;
}

int m5_workers_start(m5_workers_t *ws) {
  for (size_t i = 1; i < ws->o.n; i++) {
    if (pthread_create(&ws->w[i].thread, NULL, worker_main, &ws->w[i]) != 0) {
      fprintf(stderr, "%s: cannot start worker thread %zu\n", ws->o.name, i);
      drain_all(ws); /* the workers already running stop the normal way */
      return M5_EIO;
    }
    ws->w[i].thread_started = 1;
  }
  atomic_store(&ws->ready, 1);
  return 0;
}

int m5_workers_run(m5_workers_t *ws) {
  int rc = 0;
  if (m5_loop_run(ws->w[0].loop) != 0) {
    M5_LOGE(ws->o.dom, "worker 0: event loop failed; draining the other workers");
    drain_all(ws);
    rc = M5_EIO;
  }
  for (size_t i = 1; i < ws->o.n; i++)
    if (ws->w[i].thread_started) pthread_join(ws->w[i].thread, NULL);
  return rc;
}
