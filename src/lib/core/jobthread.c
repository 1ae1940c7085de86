/* Job thread (see jobthread.h): an m5_loop of its own whose inbox mailbox carries the jobs.
 *
 * For a thread that commits the jobs of a wake-up together (m5_jobthread_set_batch_sched: the
 * message store), those jobs are run first and answered together at the end of the loop
 * iteration (a deferred call), each owner's replies in one post: a worker that submitted k
 * jobs in a row is woken once for their k replies, not k times (on a shared core, every
 * reply posted alone would wake the worker and switch to it). */
#include "jobthread.h"

#include "err.h"
#include "log.h"

#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#define DOM "core"
#define REPLY_RETRY_MS 1

struct m5_jobthread {
  void (*run)(m5_job_t *job, void *ctx);
  void *ctx;
  m5_loop_t *loop;
  m5_mailbox_t *inbox;
  pthread_t thread;
  int started;
  m5_job_t *retry_head; /* finished jobs whose reply mailbox was full */
  m5_job_t **ran;       /* run, their replies waiting for the end of the iteration */
  size_t n_ran, cap_ran;
  m5_defer_t flush;
  m5_timer_id_t retry_timer;
  int stopping;
  char name[16];
  int batch_sched; /* m5_jobthread_set_batch_sched */
};

/* A job pointer that is not a job: posted by m5_jobthread_free() after every real job, so
 * the mailbox's order guarantees the queue is empty when the thread stops. */
static m5_job_t stop_marker;

m5_jobthread_t *m5_jobthread_new(void (*run)(m5_job_t *job, void *ctx), void *ctx) {
  m5_jobthread_t *t = calloc(1, sizeof *t);
  if (!t) return NULL;
  t->run = run;
  t->ctx = ctx;
  t->loop = m5_loop_new();
  if (!t->loop) {
    free(t);
    return NULL;
  }
  return t;
}

static void maybe_stop(m5_jobthread_t *t) {
  if (t->stopping && !t->retry_head && !t->n_ran) m5_loop_stop(t->loop);
}

static void reply(m5_jobthread_t *t, m5_job_t *job);

static void on_retry(m5_loop_t *loop, void *arg) {
  (void)loop;
  m5_jobthread_t *t = arg;
  m5_job_t *list = t->retry_head;
  t->retry_head = NULL;
  t->retry_timer = 0;
  while (list) {
    m5_job_t *job = list;
    list = job->next;
    job->next = NULL;
    reply(t, job);
  }
  maybe_stop(t);
}

static void reply(m5_jobthread_t *t, m5_job_t *job) {
  if (m5_mailbox_post(job->reply, job) == 0) return;
  job->next = t->retry_head;
  t->retry_head = job;
  if (!t->retry_timer) {
    t->retry_timer = m5_loop_timer_add(t->loop, REPLY_RETRY_MS, on_retry, t);
    if (!t->retry_timer) M5_LOGE(DOM, "cannot arm the job reply retry timer; retrying later");
  }
}

/* Posts the replies of the jobs run in this iteration, in run order, one post per run of
 * consecutive jobs of one owner. What a full mailbox does not take waits for the retry. */
static void flush_replies(m5_loop_t *loop, void *arg) {
  (void)loop;
  m5_jobthread_t *t = arg;
  size_t i = 0;
  while (i < t->n_ran) {
    m5_mailbox_t *mb = t->ran[i]->reply;
    size_t k = i + 1;
    while (k < t->n_ran && t->ran[k]->reply == mb) k++;
    size_t posted = m5_mailbox_post_many(mb, (void *const *)&t->ran[i], k - i);
    for (size_t j = i + posted; j < k; j++) reply(t, t->ran[j]);
    i = k;
  }
  t->n_ran = 0;
  maybe_stop(t);
}

static void on_job(void *msg, void *arg) {
  m5_jobthread_t *t = arg;
  m5_job_t *job = msg;
  if (job == &stop_marker) {
    flush_replies(t->loop, t);
    t->stopping = 1;
    maybe_stop(t);
    return;
  }
  /* A retry timer that could not be armed: every new job is another chance. */
  if (t->retry_head && !t->retry_timer) on_retry(t->loop, t);
  t->run(job, t->ctx);
  /* A thread that commits each job on its own answers it at once: holding the reply until the
   * wake-up's other jobs (and their fsyncs) are done would only delay it. */
  if (!t->batch_sched) {
    reply(t, job);
    return;
  }
  if (t->n_ran == t->cap_ran) {
    size_t cap = t->cap_ran ? 2 * t->cap_ran : 64;
    m5_job_t **v = realloc(t->ran, cap * sizeof *v);
    if (!v) { /* no room to wait: answered alone, at once */
      reply(t, job);
      return;
    }
    t->ran = v;
    t->cap_ran = cap;
  }
  t->ran[t->n_ran++] = job;
  m5_loop_defer(t->loop, &t->flush, flush_replies, t);
}

void m5_jobthread_set_name(m5_jobthread_t *t, const char *name) {
  snprintf(t->name, sizeof t->name, "%s", name);
}

void m5_jobthread_set_batch_sched(m5_jobthread_t *t) {
  t->batch_sched = 1;
}

static void *thread_main(void *arg) {
  m5_jobthread_t *t = arg;
  if (t->name[0]) pthread_setname_np(pthread_self(), t->name);
  /* SCHED_BATCH (when asked for: the message store's thread): woken by a job, this thread does
   * not preempt the loop thread that posted it (the kernel's wake-up preemption skips batch
   * threads); it runs when that thread sleeps or its time slice ends. On a core the two share, a worker then finishes its loop iteration,
   * posting everything the iteration produced (a delivery's conclusions and the next accept),
   * before the store takes them as one batch; preempted at its first post, the worker made
   * the store commit each post alone (bench/hops.sh: about half of the commits were
   * conclusions alone before). Its share of the CPU is unchanged; on a core of its own nothing
   * changes at all. */
  struct sched_param sp = {0};
  if (t->batch_sched && pthread_setschedparam(pthread_self(), SCHED_BATCH, &sp) != 0)
    M5_LOGW(DOM, "job thread %s: cannot run as SCHED_BATCH (it will commit in smaller batches)",
            t->name);
  int rc = m5_loop_run(t->loop);
  if (rc != 0) M5_LOGE(DOM, "job thread loop failed: %s", m5_strerror(rc));
  return NULL;
}

int m5_jobthread_start(m5_jobthread_t *t, size_t queue_cap) {
  if (t->started) return M5_EEXIST;
  t->inbox = m5_mailbox_new(t->loop, queue_cap, on_job, t);
  if (!t->inbox) return M5_ENOMEM;
  if (pthread_create(&t->thread, NULL, thread_main, t) != 0) return M5_EIO;
  t->started = 1;
  return 0;
}

int m5_jobthread_submit(m5_jobthread_t *t, m5_job_t *job) {
  if (!t->started) return M5_ECLOSED;
  job->next = NULL;
  return m5_mailbox_post(t->inbox, job);
}

int m5_jobthread_submit_start(m5_jobthread_t *t, m5_job_t *job, int *wake) {
  if (!t->started) return M5_ECLOSED;
  job->next = NULL;
  return m5_mailbox_post_start(t->inbox, job, wake);
}

void m5_jobthread_submit_finish(m5_jobthread_t *t, int wake) {
  m5_mailbox_post_finish(t->inbox, wake);
}

void m5_jobthread_free(m5_jobthread_t *t) {
  if (!t) return;
  if (t->started) {
    int rc;
    while ((rc = m5_mailbox_post(t->inbox, &stop_marker)) == M5_EFULL) {
      struct timespec ts = {0, 1000000};
      nanosleep(&ts, NULL);
    }
    if (rc != 0) m5_loop_stop(t->loop);
    pthread_join(t->thread, NULL);
  }
  if (t->inbox) m5_mailbox_free(t->inbox, NULL);
  m5_loop_free(t->loop);
  free(t->ran);
  free(t);
}
