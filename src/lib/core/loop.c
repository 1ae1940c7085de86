/* Event loop: epoll (level-triggered), one-shot timers in a binary heap, signalfd, and
 * eventfd-woken mailboxes. One loop per worker thread (architecture §6). */
#include "core/loop.h"

#include "core/err.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <time.h>
#include <unistd.h>

#define M5_LOOP_MAX_EVENTS 256
#define M5_LOOP_MAX_SIGNALS 8
/* Messages handled per mailbox wake-up before other events get their turn. */
#define M5_MAILBOX_BATCH 1024

typedef struct {
  m5_io_cb cb; /* NULL = free slot */
  void *arg;
  uint32_t events;
  uint32_t gen; /* bumped on every removal, so stale epoll events are recognised */
} fd_watch_t;

/* A timer lives in a slot; its id is (generation << 32 | slot + 1), so a cancelled or fired
 * timer's id never matches a reused slot. */
typedef struct {
  uint64_t when;
  m5_timer_cb cb;
  void *arg;
  uint32_t gen;
  uint32_t heap_pos; /* UINT32_MAX = not scheduled (slot free) */
} timer_slot_t;

typedef struct {
  int signo;
  m5_signal_cb cb;
  void *arg;
} signal_watch_t;

struct m5_loop {
  int epfd;
  int wakefd; /* eventfd used by m5_loop_stop */
  int sigfd;  /* -1 until the first m5_loop_signal */
  sigset_t sigmask;
  atomic_bool stop;
  uint64_t now;

  fd_watch_t *fds;
  size_t nfds;

  timer_slot_t *slots;
  uint32_t nslots;
  uint32_t *free_slots;
  uint32_t nfree;
  uint32_t *heap; /* slot indices ordered by when */
  uint32_t heap_len;

  signal_watch_t signals[M5_LOOP_MAX_SIGNALS];
  size_t nsignals;

  m5_defer_t *defer_head, *defer_tail; /* deferred calls, in the order they were asked */
};

struct m5_mailbox {
  m5_loop_t *owner;
  int efd;
  pthread_mutex_t lock;
  void **ring;
  size_t cap, head, count;
  m5_mailbox_fn handler;
  void *arg;
  atomic_int posting; /* posters between taking the lock and their wake-up write */
};

uint64_t m5_clock_mono_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

uint64_t m5_loop_now_ms(m5_loop_t *loop) {
  return loop->now;
}

static uint32_t to_epoll(uint32_t ev) {
  uint32_t e = 0;
  if (ev & M5_EV_READ) e |= EPOLLIN | EPOLLRDHUP;
  if (ev & M5_EV_WRITE) e |= EPOLLOUT;
  return e;
}

static uint32_t from_epoll(uint32_t e) {
  uint32_t ev = 0;
  if (e & (EPOLLIN | EPOLLRDHUP)) ev |= M5_EV_READ;
  if (e & EPOLLOUT) ev |= M5_EV_WRITE;
  if (e & (EPOLLERR | EPOLLHUP)) ev |= M5_EV_ERROR;
  return ev;
}

m5_loop_t *m5_loop_new(void) {
  m5_loop_t *loop = calloc(1, sizeof *loop);
  if (!loop) return NULL;
  loop->sigfd = -1;
  sigemptyset(&loop->sigmask);
  loop->epfd = epoll_create1(EPOLL_CLOEXEC);
  loop->wakefd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (loop->epfd < 0 || loop->wakefd < 0) goto fail;
  /* The wake fd is registered directly (not as an fd watch): data.u64 = UINT64_MAX marks it. */
  struct epoll_event ev = {.events = EPOLLIN, .data.u64 = UINT64_MAX};
  if (epoll_ctl(loop->epfd, EPOLL_CTL_ADD, loop->wakefd, &ev) < 0) goto fail;
  loop->now = m5_clock_mono_ms();
  return loop;
fail:
  if (loop->epfd >= 0) close(loop->epfd);
  if (loop->wakefd >= 0) close(loop->wakefd);
  free(loop);
  return NULL;
}

void m5_loop_free(m5_loop_t *loop) {
  if (!loop) return;
  close(loop->epfd);
  close(loop->wakefd);
  if (loop->sigfd >= 0) close(loop->sigfd);
  free(loop->fds);
  free(loop->slots);
  free(loop->free_slots);
  free(loop->heap);
  free(loop);
}

/* ---- file descriptors ---- */

static int ensure_fd_slot(m5_loop_t *loop, int fd) {
  if (fd < 0) return M5_EINVAL;
  if ((size_t)fd < loop->nfds) return M5_OK;
  size_t n = loop->nfds ? loop->nfds : 64;
  while (n <= (size_t)fd)
    n *= 2;
  fd_watch_t *p = realloc(loop->fds, n * sizeof *p);
  if (!p) return M5_ENOMEM;
  memset(p + loop->nfds, 0, (n - loop->nfds) * sizeof *p);
  loop->fds = p;
  loop->nfds = n;
  return M5_OK;
}

static uint64_t fd_token(int fd, uint32_t gen) {
  return (uint64_t)gen << 32 | (uint32_t)fd;
}

int m5_loop_add_fd(m5_loop_t *loop, int fd, uint32_t events, m5_io_cb cb, void *arg) {
  if (!cb) return M5_EINVAL;
  int rc = ensure_fd_slot(loop, fd);
  if (rc) return rc;
  fd_watch_t *w = &loop->fds[fd];
  if (w->cb) return M5_EEXIST;
  struct epoll_event ev = {.events = to_epoll(events), .data.u64 = fd_token(fd, w->gen)};
  if (epoll_ctl(loop->epfd, EPOLL_CTL_ADD, fd, &ev) < 0) return M5_EIO;
  w->cb = cb;
  w->arg = arg;
  w->events = events;
  return M5_OK;
}

int m5_loop_mod_fd(m5_loop_t *loop, int fd, uint32_t events) {
  if (fd < 0 || (size_t)fd >= loop->nfds || !loop->fds[fd].cb) return M5_ENOENT;
  fd_watch_t *w = &loop->fds[fd];
  if (w->events == events) return M5_OK;
  struct epoll_event ev = {.events = to_epoll(events), .data.u64 = fd_token(fd, w->gen)};
  if (epoll_ctl(loop->epfd, EPOLL_CTL_MOD, fd, &ev) < 0) return M5_EIO;
  w->events = events;
  return M5_OK;
}

int m5_loop_del_fd(m5_loop_t *loop, int fd) {
  if (fd < 0 || (size_t)fd >= loop->nfds || !loop->fds[fd].cb) return M5_ENOENT;
  fd_watch_t *w = &loop->fds[fd];
  /* Failure means the fd was closed already, which removed it from epoll anyway. */
  (void)epoll_ctl(loop->epfd, EPOLL_CTL_DEL, fd, NULL);
  w->cb = NULL;
  w->arg = NULL;
  w->events = 0;
  w->gen++;
  return M5_OK;
}

/* ---- timers ---- */

static int timer_less(const m5_loop_t *loop, uint32_t a, uint32_t b) {
  return loop->slots[loop->heap[a]].when < loop->slots[loop->heap[b]].when;
}

static void heap_swap(m5_loop_t *loop, uint32_t a, uint32_t b) {
  uint32_t t = loop->heap[a];
  loop->heap[a] = loop->heap[b];
  loop->heap[b] = t;
  loop->slots[loop->heap[a]].heap_pos = a;
  loop->slots[loop->heap[b]].heap_pos = b;
}

static void heap_up(m5_loop_t *loop, uint32_t i) {
  while (i > 0) {
    uint32_t parent = (i - 1) / 2;
    if (!timer_less(loop, i, parent)) break;
    heap_swap(loop, i, parent);
    i = parent;
  }
}

static void heap_down(m5_loop_t *loop, uint32_t i) {
  for (;;) {
    uint32_t l = 2 * i + 1, r = l + 1, m = i;
    if (l < loop->heap_len && timer_less(loop, l, m)) m = l;
    if (r < loop->heap_len && timer_less(loop, r, m)) m = r;
    if (m == i) break;
    heap_swap(loop, i, m);
    i = m;
  }
}

/* Removes heap entry i and frees its slot for reuse. */
static void heap_remove(m5_loop_t *loop, uint32_t i) {
  uint32_t slot = loop->heap[i];
  uint32_t last = --loop->heap_len;
  if (i != last) {
    heap_swap(loop, i, last);
    heap_down(loop, i);
    heap_up(loop, i);
  }
  timer_slot_t *t = &loop->slots[slot];
  t->heap_pos = UINT32_MAX;
  t->cb = NULL;
  t->arg = NULL;
  t->gen++;
  loop->free_slots[loop->nfree++] = slot;
}

static int grow_timers(m5_loop_t *loop) {
  uint32_t n = loop->nslots ? loop->nslots * 2 : 64;
  if (n < loop->nslots || n > UINT32_MAX / 2) return M5_EFULL;
  timer_slot_t *s = realloc(loop->slots, n * sizeof *s);
  if (!s) return M5_ENOMEM;
  loop->slots = s;
  uint32_t *f = realloc(loop->free_slots, n * sizeof *f);
  if (!f) return M5_ENOMEM;
  loop->free_slots = f;
  uint32_t *h = realloc(loop->heap, n * sizeof *h);
  if (!h) return M5_ENOMEM;
  loop->heap = h;
  for (uint32_t i = loop->nslots; i < n; i++) {
    s[i] = (timer_slot_t){.heap_pos = UINT32_MAX};
    f[loop->nfree++] = i;
  }
  loop->nslots = n;
  return M5_OK;
}

m5_timer_id_t m5_loop_timer_add(m5_loop_t *loop, uint64_t delay_ms, m5_timer_cb cb, void *arg) {
  if (!cb) return 0;
  if (loop->nfree == 0 && grow_timers(loop) != M5_OK) return 0;
  uint32_t slot = loop->free_slots[--loop->nfree];
  timer_slot_t *t = &loop->slots[slot];
  uint64_t now = m5_clock_mono_ms();
  t->when = delay_ms > UINT64_MAX - now ? UINT64_MAX : now + delay_ms;
  t->cb = cb;
  t->arg = arg;
  t->heap_pos = loop->heap_len;
  loop->heap[loop->heap_len++] = slot;
  heap_up(loop, t->heap_pos);
  return (uint64_t)t->gen << 32 | ((uint64_t)slot + 1);
}

int m5_loop_timer_cancel(m5_loop_t *loop, m5_timer_id_t id) {
  uint64_t low = id & 0xffffffffu;
  if (low == 0 || low > loop->nslots) return M5_ENOENT;
  uint32_t slot = (uint32_t)(low - 1);
  timer_slot_t *t = &loop->slots[slot];
  if (t->gen != (uint32_t)(id >> 32) || t->heap_pos == UINT32_MAX) return M5_ENOENT;
  heap_remove(loop, t->heap_pos);
  return M5_OK;
}

static void run_due_timers(m5_loop_t *loop) {
  /* Timers added by a callback with delay 0 run in the next iteration, not this one, so a
   * callback re-arming itself cannot starve I/O. */
  uint64_t now = loop->now;
  while (loop->heap_len > 0) {
    timer_slot_t *t = &loop->slots[loop->heap[0]];
    if (t->when > now) break;
    m5_timer_cb cb = t->cb;
    void *arg = t->arg;
    heap_remove(loop, 0);
    cb(loop, arg);
    if (atomic_load(&loop->stop)) return;
  }
}

static int next_timeout_ms(m5_loop_t *loop) {
  if (loop->defer_head) return 0;
  if (loop->heap_len == 0) return -1;
  uint64_t when = loop->slots[loop->heap[0]].when, now = m5_clock_mono_ms();
  if (when <= now) return 0;
  uint64_t d = when - now;
  return d > 60000 ? 60000 : (int)d;
}

/* ---- signals ---- */

int m5_signals_block(const int *signos, size_t n) {
  sigset_t set;
  sigemptyset(&set);
  for (size_t i = 0; i < n; i++)
    sigaddset(&set, signos[i]);
  return pthread_sigmask(SIG_BLOCK, &set, NULL) == 0 ? M5_OK : M5_EIO;
}

int m5_loop_signal(m5_loop_t *loop, int signo, m5_signal_cb cb, void *arg) {
  if (!cb || loop->nsignals == M5_LOOP_MAX_SIGNALS) return M5_EFULL;
  if (m5_signals_block(&signo, 1) != M5_OK) return M5_EIO;
  sigaddset(&loop->sigmask, signo);
  int fd = signalfd(loop->sigfd, &loop->sigmask, SFD_NONBLOCK | SFD_CLOEXEC);
  if (fd < 0) return M5_EIO;
  if (loop->sigfd < 0) {
    loop->sigfd = fd;
    /* UINT64_MAX - 1 marks the signal fd in epoll data. */
    struct epoll_event ev = {.events = EPOLLIN, .data.u64 = UINT64_MAX - 1};
    if (epoll_ctl(loop->epfd, EPOLL_CTL_ADD, fd, &ev) < 0) return M5_EIO;
  }
  loop->signals[loop->nsignals++] = (signal_watch_t){signo, cb, arg};
  return M5_OK;
}

static void dispatch_signals(m5_loop_t *loop) {
  struct signalfd_siginfo si;
  while (read(loop->sigfd, &si, sizeof si) == (ssize_t)sizeof si) {
    for (size_t i = 0; i < loop->nsignals; i++)
      if (loop->signals[i].signo == (int)si.ssi_signo)
        loop->signals[i].cb(loop, (int)si.ssi_signo, loop->signals[i].arg);
  }
}

/* ---- running ---- */

/* One read takes the whole counter (not a semaphore eventfd); a write after it makes the fd
 * readable again, so a second read could only ever return EAGAIN: one syscall saved per
 * wake-up, which at low load is one per message and hop. */
static void drain_eventfd(int fd) {
  uint64_t v;
  ssize_t r = read(fd, &v, sizeof v);
  (void)r;
}

void m5_loop_stop(m5_loop_t *loop) {
  atomic_store(&loop->stop, true);
  uint64_t one = 1;
  /* A full eventfd counter already guarantees a wake-up; nothing to do on failure. */
  if (write(loop->wakefd, &one, sizeof one) < 0) return;
}

/* ---- deferred calls ---- */

void m5_loop_defer(m5_loop_t *loop, m5_defer_t *d, m5_timer_cb cb, void *arg) {
  if (d->queued) return;
  d->cb = cb;
  d->arg = arg;
  d->queued = 1;
  d->next = NULL;
  d->prev = loop->defer_tail;
  if (loop->defer_tail)
    loop->defer_tail->next = d;
  else
    loop->defer_head = d;
  loop->defer_tail = d;
}

void m5_loop_defer_cancel(m5_loop_t *loop, m5_defer_t *d) {
  if (!d->queued) return;
  if (d->prev)
    d->prev->next = d->next;
  else
    loop->defer_head = d->next;
  if (d->next)
    d->next->prev = d->prev;
  else
    loop->defer_tail = d->prev;
  d->prev = d->next = NULL;
  d->queued = 0;
}

/* Runs the calls queued before this point; those they queue go behind a marker node and wait
 * for the next iteration. A callback may cancel any other queued call and free its owner: we
 * hold no pointer into the list but the marker, which lives on this stack. */
static void run_deferred(m5_loop_t *loop) {
  if (!loop->defer_head) return;
  m5_defer_t marker = {0};
  m5_loop_defer(loop, &marker, NULL, NULL);
  while (loop->defer_head != &marker) {
    m5_defer_t *d = loop->defer_head;
    m5_loop_defer_cancel(loop, d);
    d->cb(loop, d->arg);
  }
  m5_loop_defer_cancel(loop, &marker);
}

int m5_loop_run(m5_loop_t *loop) {
  struct epoll_event evs[M5_LOOP_MAX_EVENTS];
  while (!atomic_load(&loop->stop)) {
    int n = epoll_wait(loop->epfd, evs, M5_LOOP_MAX_EVENTS, next_timeout_ms(loop));
    if (n < 0) {
      if (errno == EINTR) continue;
      return M5_EIO;
    }
    loop->now = m5_clock_mono_ms();
    for (int i = 0; i < n && !atomic_load(&loop->stop); i++) {
      uint64_t tok = evs[i].data.u64;
      if (tok == UINT64_MAX) {
        drain_eventfd(loop->wakefd);
        continue;
      }
      if (tok == UINT64_MAX - 1) {
        dispatch_signals(loop);
        continue;
      }
      int fd = (int)(uint32_t)tok;
      if ((size_t)fd >= loop->nfds) continue;
      fd_watch_t *w = &loop->fds[fd];
      /* A callback earlier in this batch may have removed (or replaced) this watch. */
      if (!w->cb || w->gen != (uint32_t)(tok >> 32)) continue;
      w->cb(loop, fd, from_epoll(evs[i].events), w->arg);
    }
    loop->now = m5_clock_mono_ms();
    run_due_timers(loop);
    run_deferred(loop);
  }
  /* Reset here rather than on entry: a stop requested before run() must not be lost. */
  atomic_store(&loop->stop, false);
  return M5_OK;
}

/* ---- mailboxes ---- */

static void mailbox_io(m5_loop_t *loop, int fd, uint32_t events, void *arg) {
  (void)loop;
  (void)fd;
  (void)events;
  m5_mailbox_t *mb = arg;
  drain_eventfd(mb->efd);
  for (int handled = 0;; handled++) {
    pthread_mutex_lock(&mb->lock);
    if (mb->count == 0) {
      pthread_mutex_unlock(&mb->lock);
      return;
    }
    if (handled == M5_MAILBOX_BATCH) {
      /* Yield to other events; the eventfd brings us back on the next iteration. */
      pthread_mutex_unlock(&mb->lock);
      uint64_t one = 1;
      if (write(mb->efd, &one, sizeof one) < 0) return;
      return;
    }
    void *msg = mb->ring[mb->head];
    mb->head = (mb->head + 1) % mb->cap;
    mb->count--;
    pthread_mutex_unlock(&mb->lock);
    mb->handler(msg, mb->arg);
  }
}

m5_mailbox_t *m5_mailbox_new(m5_loop_t *owner, size_t capacity, m5_mailbox_fn handler, void *arg) {
  if (!owner || !handler || capacity == 0) return NULL;
  m5_mailbox_t *mb = calloc(1, sizeof *mb);
  if (!mb) return NULL;
  mb->ring = calloc(capacity, sizeof *mb->ring);
  mb->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (!mb->ring || mb->efd < 0 || pthread_mutex_init(&mb->lock, NULL) != 0) {
    if (mb->efd >= 0) close(mb->efd);
    free(mb->ring);
    free(mb);
    return NULL;
  }
  mb->owner = owner;
  mb->cap = capacity;
  mb->handler = handler;
  mb->arg = arg;
  if (m5_loop_add_fd(owner, mb->efd, M5_EV_READ, mailbox_io, mb) != M5_OK) {
    pthread_mutex_destroy(&mb->lock);
    close(mb->efd);
    free(mb->ring);
    free(mb);
    return NULL;
  }
  return mb;
}

/* The wake-up is written after the unlock: written under the lock, it would wake the owner
 * (on a shared core, switch to it) while we still hold the lock, and the owner would block on
 * it at once: two more context switches and a futex round trip per hand-off. An owner may
 * drain this message as soon as the lock is free and then free the mailbox (a worker whose
 * last DB reply this is stops and tears down): `posting` makes m5_mailbox_free() wait until
 * we are done with mb->efd. */
static void wake_after_post(m5_mailbox_t *mb, int wake) {
  if (wake) {
    uint64_t one = 1;
    /* The message is queued either way; a failed write can only mean the counter is
     * saturated, which already wakes the owner. */
    ssize_t w = write(mb->efd, &one, sizeof one);
    (void)w;
  }
  atomic_fetch_sub_explicit(&mb->posting, 1, memory_order_release);
}

int m5_mailbox_post_start(m5_mailbox_t *mb, void *msg, int *wake) {
  atomic_fetch_add_explicit(&mb->posting, 1, memory_order_acquire);
  pthread_mutex_lock(&mb->lock);
  if (mb->count == mb->cap) {
    pthread_mutex_unlock(&mb->lock);
    atomic_fetch_sub_explicit(&mb->posting, 1, memory_order_release);
    return M5_EFULL;
  }
  mb->ring[(mb->head + mb->count) % mb->cap] = msg;
  /* Only the empty -> non-empty transition needs a wake-up: the owner drains until empty. */
  *wake = mb->count++ == 0;
  pthread_mutex_unlock(&mb->lock);
  return M5_OK;
}

void m5_mailbox_post_finish(m5_mailbox_t *mb, int wake) {
  wake_after_post(mb, wake);
}

int m5_mailbox_post(m5_mailbox_t *mb, void *msg) {
  int wake;
  int rc = m5_mailbox_post_start(mb, msg, &wake);
  if (rc == M5_OK) wake_after_post(mb, wake);
  return rc;
}

size_t m5_mailbox_post_many(m5_mailbox_t *mb, void *const *msgs, size_t n) {
  atomic_fetch_add_explicit(&mb->posting, 1, memory_order_acquire);
  pthread_mutex_lock(&mb->lock);
  int was_empty = mb->count == 0;
  size_t i = 0;
  for (; i < n && mb->count < mb->cap; i++)
    mb->ring[(mb->head + mb->count++) % mb->cap] = msgs[i];
  pthread_mutex_unlock(&mb->lock);
  wake_after_post(mb, was_empty && i > 0);
  return i;
}

void m5_mailbox_free(m5_mailbox_t *mb, void (*drop)(void *msg)) {
  if (!mb) return;
  /* A poster whose message we drained may still be about to write the wake-up. */
  while (atomic_load_explicit(&mb->posting, memory_order_acquire) > 0) sched_yield();
  m5_loop_del_fd(mb->owner, mb->efd);
  close(mb->efd);
  while (mb->count > 0) {
    void *msg = mb->ring[mb->head];
    mb->head = (mb->head + 1) % mb->cap;
    mb->count--;
    if (drop) drop(msg);
  }
  pthread_mutex_destroy(&mb->lock);
  free(mb->ring);
  free(mb);
}
