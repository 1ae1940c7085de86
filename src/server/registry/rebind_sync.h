/* Start-up catch-up of the message store with the registry's binding generations
 * (docs/delivery.md "Re-bound UE Service IDs"): a binding change is committed first in the
 * registry (m5s.db), then in the store (store.db, M5_STORE_REBIND); m5s can die between the
 * two. Before any listener runs, every UE Service ID's last generation is given to the store
 * again; the store does what it missed and ignores what it has (a repeat is a no-op).
 * Skipped (0) while the registry is shared through NATS KV: the JetStream store has no REBIND
 * yet. */
#ifndef M5_SERVER_REBIND_SYNC_H
#define M5_SERVER_REBIND_SYNC_H

#include "server/registry/registry.h"
#include "store/store.h"

#include <stdint.h>

/* On the calling thread, before registry_start and before the workers: 0, or M5_E* with a
 * message in err. The failure reports the store writes live store.report_ttl_s. */
int rebind_sync(registry_t *reg, m5_store_t *store, char *err, size_t errlen);

#endif
