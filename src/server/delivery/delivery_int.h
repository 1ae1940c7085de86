/* What delivery.c (the store side and the pushes to UEs) and delivery_http.c (the pushes to
 * Application Servers and message gateways over HTTP/2) share: the worker's delivery state and
 * the ways every attempt ends in the store. Internal to src/server/delivery; other modules use
 * delivery.h. */
#ifndef M5_SERVER_DELIVERY_INT_H
#define M5_SERVER_DELIVERY_INT_H

#include "server/delivery/delivery.h"

#include "core/hmap.h"
#include "http/client.h"

#include <stddef.h>
#include <stdint.h>

#define DOM "ue"
#define BACKOFF_FIRST_MS 2000 /* first retry after a failed or impossible attempt */
#define RECENT_MAX 1024       /* finished delivery ids remembered per worker */

typedef struct sjob sjob_t; /* a message store job (delivery.c) */

struct delivery {
  m5_loop_t *loop;
  delivery_opts_t opts;
  m5_hmap_t *peers;            /* session id (8 bytes) -> peer_t */
  m5_mailbox_t *store_replies; /* message store jobs come back here */
  size_t store_inflight, pushes;
  size_t push_bytes;   /* bodies of the pushes to UEs in flight on this worker */
  m5_hmap_t *inflight; /* delivery id -> dv: pushed, not concluded in the store yet */
  m5_hmap_t *recent;   /* delivery id -> dv: delivered or failed lately */
  uint64_t recent_ring[RECENT_MAX];
  size_t recent_pos;
  int due_any_busy, expire_busy, requeue_busy;
  int64_t last_requeue_ms;
  m5_timer_id_t tick;
  int draining;
  m5_timer_id_t drain_timer;
  void (*idle_done)(void *arg);
  void *idle_arg;
  /* Conclusions (SJ_MARK) the store could not take (busy): offered again in order. A
   * delivery pushed right after its accept is in flight in the store and invisible to the
   * back-off timer, so its conclusion must not be dropped. */
  sjob_t *held, *held_tail;
  sjob_t *spare; /* finished jobs kept for reuse (sjob_new), n_spare of them */
  size_t n_spare;
  size_t n_held;
  m5_timer_id_t held_timer;
  sjob_t *later, *later_tail; /* conclusions waiting to ride with the next accept */
  size_t n_later;
  m5_timer_id_t later_timer;
  m5_http_client_t *http; /* pushes to Application Servers; made at the first one */
  int freeing;            /* delivery_free runs: the store is closed, conclude nothing */
};

/* Concludes delivery id in the store (op MARK_DELIVERED, MARK_FAILED with cause, RESCHEDULE
 * to next_ms with attempts), from a push of session sid (0: none). A busy store holds the
 * conclusion back, it is never dropped. */
void dlv_conclude(delivery_t *dv, m5_store_op_t op, uint64_t id, const char *cause, int64_t next_ms,
                  uint32_t attempts, uint64_t sid, int from_due);
/* The recipient has no live session or the push failed: retry later (store-and-forward) or
 * fail the delivery. */
void dlv_conclude_unreached(delivery_t *dv, uint64_t id, uint32_t attempts, int sto_fwd,
                            uint64_t sid, int from_due);
/* Tells delivery_when_idle's caller once nothing is outstanding any more. */
void dlv_check_idle(delivery_t *dv);
int64_t dlv_wall_ms(void);
/* 1 for a stored delivery report (an IMDN), 0 for a message. */
int dlv_is_report(const m5_store_msg_t *m);

/* delivery_http.c: pushes delivery d (body taken) to the Application Server d->rcpt.addr. */
void dlv_as_push(delivery_t *dv, const m5_store_delivery_t *d, char *body, size_t len);
/* delivery_http.c: pushes delivery d to the message gateway g that holds its UE recipient,
 * under the ID's generation gen (server/gw/gw_deliver.h). */
void dlv_gw_push(delivery_t *dv, const m5_store_delivery_t *d, const registry_gw_t *g,
                 uint64_t gen);

#endif
