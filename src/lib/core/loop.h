/* Event loop: one per worker thread (architecture §6). epoll for file descriptors, a binary
 * heap of one-shot timers on the monotonic clock, signalfd for signals, and mailboxes
 * (eventfd-woken bounded queues) for hand-off from other threads.
 *
 * Everything except m5_loop_stop() and m5_mailbox_post() must be called from the thread
 * running the loop. Callbacks run on that thread and must not block. */
#ifndef M5_CORE_LOOP_H
#define M5_CORE_LOOP_H

#include <stddef.h>
#include <stdint.h>

typedef struct m5_loop m5_loop_t;

enum { M5_EV_READ = 1u, M5_EV_WRITE = 2u, M5_EV_ERROR = 4u /* reported only: EPOLLERR|EPOLLHUP */ };

typedef void (*m5_io_cb)(m5_loop_t *loop, int fd, uint32_t events, void *arg);
typedef void (*m5_timer_cb)(m5_loop_t *loop, void *arg);
typedef void (*m5_signal_cb)(m5_loop_t *loop, int signo, void *arg);

/* Timer handle; 0 is never a valid id. Handles, not pointers, so a fired or cancelled timer
 * cannot be touched after free. */
typedef uint64_t m5_timer_id_t;

m5_loop_t *m5_loop_new(void);
void m5_loop_free(m5_loop_t *loop); /* closes nothing the caller registered */

/* Watches fd for the given M5_EV_* events (level-triggered). One registration per fd. */
int m5_loop_add_fd(m5_loop_t *loop, int fd, uint32_t events, m5_io_cb cb, void *arg);
int m5_loop_mod_fd(m5_loop_t *loop, int fd, uint32_t events);
int m5_loop_del_fd(m5_loop_t *loop, int fd); /* safe to call from inside the fd's callback */

/* One-shot timer after delay_ms; returns 0 when the heap cannot grow. */
m5_timer_id_t m5_loop_timer_add(m5_loop_t *loop, uint64_t delay_ms, m5_timer_cb cb, void *arg);
/* Cancels a pending timer; unknown or already-fired ids are ignored (returns M5_ENOENT). */
int m5_loop_timer_cancel(m5_loop_t *loop, m5_timer_id_t id);

/* Deferred call: runs cb(loop, arg) once, at the end of the current loop iteration (after the
 * events and timers that are due), before the loop waits again. For work that should happen
 * once per iteration however many events asked for it, e.g. writing out a connection's
 * responses in one go. The caller owns the m5_defer_t (zeroed before first use) and keeps it
 * alive until it ran or was cancelled; deferring an already queued one does nothing. A call
 * deferred from inside a deferred callback runs in the next iteration (without waiting). */
typedef struct m5_defer {
  struct m5_defer *prev, *next;
  m5_timer_cb cb;
  void *arg;
  int queued;
} m5_defer_t;

void m5_loop_defer(m5_loop_t *loop, m5_defer_t *d, m5_timer_cb cb, void *arg);
void m5_loop_defer_cancel(m5_loop_t *loop, m5_defer_t *d); /* no-op when not queued */

/* Monotonic milliseconds, refreshed once per loop iteration. */
uint64_t m5_loop_now_ms(m5_loop_t *loop);
/* Monotonic milliseconds read from the clock now. */
uint64_t m5_clock_mono_ms(void);

/* Delivers signo to cb on this loop (the signal is blocked for the calling thread; block it
 * in every thread, see m5_signals_block, before starting workers). */
int m5_loop_signal(m5_loop_t *loop, int signo, m5_signal_cb cb, void *arg);
/* Blocks the given signals in the calling thread (and threads it creates afterwards). */
int m5_signals_block(const int *signos, size_t n);

/* Runs until m5_loop_stop() (also one requested before the call); returns 0, or a negative
 * status if epoll failed. */
int m5_loop_run(m5_loop_t *loop);
/* Asks the loop to return from m5_loop_run(); callable from any thread or a callback. */
void m5_loop_stop(m5_loop_t *loop);

/* Mailbox: a bounded multi-producer queue drained on its owner loop. handler(msg, arg) runs
 * on the owner loop for each posted message, in posting order. */
typedef struct m5_mailbox m5_mailbox_t;
typedef void (*m5_mailbox_fn)(void *msg, void *arg);

m5_mailbox_t *m5_mailbox_new(m5_loop_t *owner, size_t capacity, m5_mailbox_fn handler, void *arg);
/* From any thread. M5_EFULL when capacity messages are waiting (the caller keeps msg). */
int m5_mailbox_post(m5_mailbox_t *mb, void *msg);
/* Posts msgs[0..n) in order, as many as fit, under one lock and with at most one wake-up of the
 * owner: returns how many were posted (the caller keeps the rest). */
size_t m5_mailbox_post_many(m5_mailbox_t *mb, void *const *msgs, size_t n);
/* A post in two steps, for a caller that posts under a lock of its own: the message is queued
 * at once (0 or M5_EFULL, as m5_mailbox_post), and the owner is woken by
 * m5_mailbox_post_finish(mb, wake), to be called exactly once after every successful
 * m5_mailbox_post_start, once the caller's lock is released (a wake-up under the lock would
 * switch to an owner that then blocks on that lock). */
int m5_mailbox_post_start(m5_mailbox_t *mb, void *msg, int *wake);
void m5_mailbox_post_finish(m5_mailbox_t *mb, int wake);
/* On the owner thread; messages still queued are passed to drop(msg) if drop is non-NULL. */
void m5_mailbox_free(m5_mailbox_t *mb, void (*drop)(void *msg));

#endif
