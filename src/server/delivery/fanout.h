/* Pushing the deliveries of one message to many recipients (group, broadcast and topic
 * messages; docs/delivery.md "Groups and broadcast"): after the ACCEPT that stored the body
 * once and a delivery per recipient, the deliveries marked in flight (recipients with a live
 * session) are handed to delivery.c a chunk at a time, one chunk per loop iteration, so that a
 * 10,000-member group never holds a worker for one long stretch and point-to-point traffic on
 * the same loop goes on between chunks. Broadcast messages are paced instead: they go out at
 * most at broadcast.rate deliveries a second over the whole server (one token bucket shared
 * by the workers), the waiting ones in priority order (HIGH, MIDDLE, LOW, then arrival) over
 * the whole server: one queue that every worker adds to and one worker (the pacer) pushes
 * from, so that a large area never starves point-to-point traffic.
 *
 * What is waiting here is in flight in the store: should m5s stop first, the store queues those
 * deliveries again when it is reopened and they go out after the restart (due at once).
 * One fanout_t per worker loop; the pace is shared. */
#ifndef M5_SERVER_FANOUT_H
#define M5_SERVER_FANOUT_H

#include "core/loop.h"
#include "server/delivery/delivery.h"
#include "store/store.h"

#include <stddef.h>
#include <stdint.h>

typedef struct fanout_pace fanout_pace_t;
typedef struct fanout fanout_t;

/* The process-wide pace of broadcast pushes: per_s deliveries a second (at least 1), with a
 * burst of a tenth of a second's worth. NULL when out of memory. */
fanout_pace_t *fanout_pace_new(uint32_t per_s);
/* After every worker stopped: what is still queued stays in flight in the store. */
void fanout_pace_free(fanout_pace_t *p);
/* From any thread: broadcast deliveries queued now (to place a new broadcast's turns). */
size_t fanout_pace_backlog(fanout_pace_t *p);

/* pace may be NULL: broadcast messages are then pushed like the others. pacer: this worker
 * pushes the broadcast queue (exactly one worker of those sharing pace). in_flight_max_ms:
 * store.in_flight_max_s (delivery.h): a paced delivery whose turn comes more than half of it
 * after its in-flight mark is left to the store's re-queue, so that it never goes out twice. */
fanout_t *fanout_new(m5_loop_t *loop, delivery_t *dv, fanout_pace_t *pace, int pacer,
                     int64_t in_flight_max_ms);
/* On the loop's thread after it stopped: what is still waiting stays in flight in the store. */
void fanout_free(fanout_t *f);

/* After an ACCEPT of msg (payload copied) to rcpts: the ones stored (id != 0) and in flight
 * are pushed from now on, paced when paced is set. 0, or M5_ENOMEM (those deliveries then
 * stay in flight in the store and are queued again after store.in_flight_max_s). */
int fanout_start(fanout_t *f, const m5_store_msg_t *msg, const m5_store_rcpt_t *rcpts, size_t n,
                 int paced);
/* Deliveries waiting here to be pushed (broadcast ones: in the pace's queue). */
size_t fanout_waiting(const fanout_t *f);

#endif
