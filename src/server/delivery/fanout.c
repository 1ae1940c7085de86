/* Chunked and paced pushes of many-recipient messages (fanout.h). */
#include "server/delivery/fanout.h"

#include "core/err.h"
#include "core/log.h"

#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define DOM "ue"
#define CHUNK 256       /* deliveries handed to delivery.c per loop iteration */
#define PACE_TICK_MS 20 /* how often paced batches take from the bucket */
#define PUSH_BYTES_MAX (16u << 20) /* pushes in flight on this worker before chunks wait */
#define PUSH_WAIT_MS 5

typedef struct {
  uint64_t id, gen;
  int64_t next_ms; /* the store's in-flight mark of the delivery (m5_store_rcpt_t) */
  m5_msg_addr_t addr;
} item_t;

/* One message's deliveries still to push. */
typedef struct batch {
  struct batch *next;
  m5_store_msg_t msg; /* payload owned */
  item_t *items;
  size_t n, pos;
  char *body; /* the push body for a UE member, encoded once at the first push (NULL: each
                 push encodes its own) */
  size_t body_len;
  int encoded;
} batch_t;

/* The broadcast queue of the whole server: every worker adds to it, the pacer (one worker)
 * takes from it, so that the rate and the priority order hold across workers. */
struct fanout_pace {
  pthread_mutex_t lock;
  double per_ms, tokens, burst;
  uint64_t last_ms;
  batch_t *paced; /* by priority (HIGH first), then arrival */
  size_t waiting;
};

struct fanout {
  m5_loop_t *loop;
  delivery_t *dv;
  fanout_pace_t *pace;
  int pacer;                 /* this worker pushes the broadcast queue */
  int64_t stale_ms;          /* a paced delivery this late is left to the store's re-queue */
  batch_t *fast, *fast_tail; /* group and topic messages: FIFO, a chunk per iteration */
  size_t waiting;
  m5_defer_t defer;
  m5_timer_id_t timer;
  m5_timer_id_t wait; /* chunks wait for pushes in flight to conclude */
};

fanout_pace_t *fanout_pace_new(uint32_t per_s) {
  fanout_pace_t *p = calloc(1, sizeof *p);
  if (!p || pthread_mutex_init(&p->lock, NULL) != 0) {
    free(p);
    return NULL;
  }
  if (per_s == 0) per_s = 1;
  p->per_ms = per_s / 1000.0;
  p->burst = per_s / 10.0 < 1 ? 1 : per_s / 10.0;
  p->tokens = p->burst;
  p->last_ms = m5_clock_mono_ms();
  return p;
}

static void batch_free(batch_t *b);

size_t fanout_pace_backlog(fanout_pace_t *p) {
  pthread_mutex_lock(&p->lock);
  size_t n = p->waiting;
  pthread_mutex_unlock(&p->lock);
  return n;
}

void fanout_pace_free(fanout_pace_t *p) {
  if (!p) return;
  if (p->waiting)
    M5_LOGI(DOM, "%zu broadcast deliveries not pushed yet: they go out after the restart",
            p->waiting);
  for (batch_t *b = p->paced, *n; b; b = n) {
    n = b->next;
    batch_free(b);
  }
  pthread_mutex_destroy(&p->lock);
  free(p);
}

/* Under p->lock: how many of want may go now, taken from the bucket. */
static size_t take_locked(fanout_pace_t *p, size_t want) {
  uint64_t now = m5_clock_mono_ms();
  p->tokens += (double)(now - p->last_ms) * p->per_ms;
  if (p->tokens > p->burst) p->tokens = p->burst;
  p->last_ms = now;
  size_t got = p->tokens >= (double)want ? want : (size_t)p->tokens;
  p->tokens -= (double)got;
  return got;
}

static void batch_free(batch_t *b) {
  free(b->body);
  free(b->msg.payload);
  free(b->items);
  free(b);
}

static void run_paced(m5_loop_t *loop, void *arg);

fanout_t *fanout_new(m5_loop_t *loop, delivery_t *dv, fanout_pace_t *pace, int pacer,
                     int64_t in_flight_max_ms) {
  fanout_t *f = calloc(1, sizeof *f);
  if (!f) return NULL;
  f->loop = loop;
  f->dv = dv;
  f->pace = pace;
  f->pacer = pace && pacer;
  f->stale_ms = (in_flight_max_ms > 0 ? in_flight_max_ms : 300000) / 2;
  if (f->pacer && !(f->timer = m5_loop_timer_add(loop, PACE_TICK_MS, run_paced, f))) {
    free(f);
    return NULL;
  }
  return f;
}

void fanout_free(fanout_t *f) {
  if (!f) return;
  m5_loop_defer_cancel(f->loop, &f->defer);
  if (f->timer) m5_loop_timer_cancel(f->loop, f->timer);
  if (f->wait) m5_loop_timer_cancel(f->loop, f->wait);
  if (f->waiting)
    M5_LOGI(DOM, "%zu deliveries of group or broadcast messages not pushed yet: they go out "
                 "after the restart", f->waiting);
  for (batch_t *b = f->fast, *n; b; b = n) {
    n = b->next;
    batch_free(b);
  }
  free(f);
}

size_t fanout_waiting(const fanout_t *f) {
  return f->waiting;
}

static int64_t wall_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Pushes deliveries [from, to) of b. A paced one whose turn came more than half of
 * store.in_flight_max_s after its in-flight mark is not pushed: the store queues it again at
 * that limit (REQUEUE_STALE) and the back-off timer pushes it, unpaced but once; pushing it
 * here too could deliver it twice. */
static void push_range(fanout_t *f, batch_t *b, size_t from, size_t to, int paced) {
  m5_store_delivery_t d;
  memset(&d, 0, sizeof d);
  d.msg = b->msg; /* borrowed: delivery_accepted encodes it at once */
  int64_t late = paced ? wall_ms() - f->stale_ms : INT64_MIN;
  if (!b->encoded) { /* the same body for every UE member: encoded once, copied per push */
    b->encoded = 1;
    if (delivery_encode(&d, 0, &b->body, &b->body_len) != 0) b->body = NULL;
  }
  for (size_t i = from; i < to; i++) {
    const item_t *it = &b->items[i];
    if (it->next_ms < late) {
      M5_LOGW(DOM, "MSG %s to %s:%s: its paced turn came too late; left to the store's re-queue",
              b->msg.msg_id, it->addr.type, it->addr.addr);
      continue;
    }
    d.id = it->id;
    d.rcpt = it->addr;
    d.rcpt_gen = it->gen;
    delivery_accepted_encoded(f->dv, &d, b->body, b->body_len);
  }
}

/* Pushes up to budget deliveries of b (advancing b->pos): how many it pushed. */
static size_t push_some(fanout_t *f, batch_t *b, size_t budget) {
  size_t from = b->pos;
  size_t k = b->n - from < budget ? b->n - from : budget;
  b->pos += k;
  push_range(f, b, from, b->pos, 0);
  f->waiting -= k;
  return k;
}

static void run_fast(m5_loop_t *loop, void *arg);

static void schedule(fanout_t *f) {
  if (f->fast) m5_loop_defer(f->loop, &f->defer, run_fast, f);
}

static void run_fast_later(m5_loop_t *loop, void *arg) {
  fanout_t *f = arg;
  f->wait = 0;
  run_fast(loop, arg);
}

static void run_fast(m5_loop_t *loop, void *arg) {
  fanout_t *f = arg;
  if (delivery_push_bytes(f->dv) > PUSH_BYTES_MAX) {
    /* Each push holds its own encoded body until the UE answers: a message to a large group
     * must not make the worker hold a copy per member at once. */
    if (!f->wait) f->wait = m5_loop_timer_add(loop, PUSH_WAIT_MS, run_fast_later, f);
    if (f->wait) return;
  }
  size_t budget = CHUNK;
  while (f->fast && budget) {
    batch_t *b = f->fast;
    budget -= push_some(f, b, budget);
    if (b->pos == b->n) {
      f->fast = b->next;
      if (!f->fast) f->fast_tail = NULL;
      batch_free(b);
    }
  }
  schedule(f);
}

/* The pacer's tick: as many broadcast deliveries as the bucket allows, from the head of the
 * shared queue (the highest priority, the oldest). A batch is taken off the queue while its
 * part is pushed, so that the lock is not held across delivery.c. */
static void run_paced(m5_loop_t *loop, void *arg) {
  fanout_t *f = arg;
  fanout_pace_t *p = f->pace;
  for (size_t round = 0; round < 8; round++) {
    pthread_mutex_lock(&p->lock);
    batch_t *b = p->paced;
    size_t k = b ? take_locked(p, b->n - b->pos < CHUNK ? b->n - b->pos : CHUNK) : 0;
    size_t from = b ? b->pos : 0;
    if (b) {
      b->pos += k;
      p->waiting -= k;
      if (b->pos == b->n) p->paced = b->next; /* done: ours to free */
    }
    pthread_mutex_unlock(&p->lock);
    if (!k) break;
    push_range(f, b, from, from + k, 1);
    if (b->pos == b->n) batch_free(b);
  }
  f->timer = m5_loop_timer_add(loop, PACE_TICK_MS, run_paced, f);
}

int fanout_start(fanout_t *f, const m5_store_msg_t *msg, const m5_store_rcpt_t *rcpts, size_t n,
                 int paced) {
  size_t k = 0;
  for (size_t i = 0; i < n; i++)
    if (rcpts[i].id && rcpts[i].in_flight) k++;
  if (k == 0) return 0;
  batch_t *b = calloc(1, sizeof *b);
  if (b) b->items = malloc(k * sizeof *b->items);
  if (b && b->items && msg->payload_len && !(b->msg.payload = malloc(msg->payload_len))) {
    free(b->items);
    b->items = NULL;
  }
  if (!b || !b->items) {
    if (b) free(b);
    M5_LOGE(DOM, "MSG %s: out of memory; its %zu deliveries to live recipients go out after "
            "store.in_flight_max_s", msg->msg_id, k);
    return M5_ENOMEM;
  }
  uint8_t *payload = b->msg.payload;
  b->msg = *msg;
  b->msg.payload = payload;
  if (msg->payload_len) memcpy(payload, msg->payload, msg->payload_len);
  for (size_t i = 0; i < n; i++) {
    if (!rcpts[i].id || !rcpts[i].in_flight) continue;
    item_t *it = &b->items[b->n++];
    it->id = rcpts[i].id;
    it->gen = rcpts[i].gen;
    it->next_ms = rcpts[i].next_attempt_ms;
    it->addr = rcpts[i].addr;
  }
  if (paced && f->pace) {
    /* behind every batch of the same or a higher priority (m5_msg_prio_t: HIGH is largest) */
    fanout_pace_t *p = f->pace;
    pthread_mutex_lock(&p->lock);
    batch_t **pp = &p->paced;
    while (*pp && (*pp)->msg.prio >= msg->prio)
      pp = &(*pp)->next;
    b->next = *pp;
    *pp = b;
    p->waiting += b->n;
    pthread_mutex_unlock(&p->lock);
    return 0;
  }
  f->waiting += b->n;
  if (f->fast_tail)
    f->fast_tail->next = b;
  else
    f->fast = b;
  f->fast_tail = b;
  schedule(f);
  return 0;
}
