/* The message store catching up with membership changes (groups.h, "the contract with the
 * fan-out"; docs/delivery.md "Groups and broadcast"). The check before each push
 * (groups_fanout_check in delivery.c) is what keeps a message from a member who left; this
 * module fails the left-behind deliveries in the store promptly, so that queues, counts and
 * the failure reports their senders asked for do not wait for the member's return or the
 * message's expiry:
 *  - at run time, the registry's DB thread tells each removed member and each deleted group
 *    or area (groups_set_hook) to a mailbox on one worker's loop, which runs M5_STORE_GROUP_SWEEP
 *    for it (one job at a time, paged, retried while the store is busy); should that mailbox
 *    be full, the change is not lost: a sweep of every group message runs instead;
 *  - at start-up, before the workers, one sweep of every group and area message, since m5s
 *    can stop between the registry's commit and the store's (as rebind_sync does for
 *    bindings). */
#ifndef M5_SERVER_GROUPS_SYNC_H
#define M5_SERVER_GROUPS_SYNC_H

#include "core/loop.h"
#include "server/registry/registry.h"
#include "store/store.h"

#include <stddef.h>

typedef struct groups_sync groups_sync_t;

/* On loop (a worker's); sets the registry's groups hook: call before registry_start. NULL
 * when out of memory. */
groups_sync_t *groups_sync_new(m5_loop_t *loop, registry_t *reg, m5_store_t *store);
/* After the registry and the store are closed and the loop has stopped. */
void groups_sync_free(groups_sync_t *g);

/* On the calling thread, before registry_start and the workers: every queued delivery of a
 * group or area message that may no longer go out is failed (with its reports). 0, or M5_E*
 * with a message in err. */
int groups_sync_startup(registry_t *reg, m5_store_t *store, char *err, size_t errlen);

#endif
