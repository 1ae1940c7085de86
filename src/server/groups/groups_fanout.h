/* The message side of groups and broadcast areas (TS 23.554 cl. 8.7.4 group messages, cl.
 * 8.6.1 broadcast; docs/delivery.md "Groups and broadcast"): who receives a message sent to a
 * GROUP or BC address, resolved once at acceptance, and whether one of its deliveries may
 * still go out (the fan-out's half of the contract in groups.h). Pure reads of the groups'
 * in-memory copy, the registry and the router: any thread. */
#ifndef M5_SERVER_GROUPS_FANOUT_H
#define M5_SERVER_GROUPS_FANOUT_H

#include "server/delivery/router.h"
#include "server/groups/groups.h"
#include "store/store.h"

#include <stddef.h>
#include <stdint.h>

/* GROUP -> GROUPS_GROUP, BC -> GROUPS_AREA: 0, or M5_EINVAL for any other addrType. */
int groups_kind_of(const char *addr_type, groups_kind_t *kind);
/* "ue:ID" / "as:ID" of a UE or AS address into p: 0, or M5_EINVAL. */
int groups_principal_of(const m5_msg_addr_t *a, groups_principal_t p);

/* May ori (a UE or an AS) send to dest (a GROUP or BC address)? A member or a SEND grant on a
 * group, a SEND grant on an area (groups_may_send). 1 or 0; 0 also for an unknown group, so
 * that the refusal reveals nothing. */
int groups_fanout_may_send(registry_t *reg, const m5_msg_addr_t *ori, const m5_msg_addr_t *dest);

/* The members of the group or area dest now (0 for none or no such group). */
size_t groups_fanout_size(registry_t *reg, const m5_msg_addr_t *dest);

/* The recipients of a message from ori to dest (GROUP or BC), as one ACCEPT's rcpts: every
 * member as of now except ori itself, less the members the policy keeps from ori (the same
 * registry_policy_check a direct message passes, so a group never reaches a UE its sender may
 * not message), less UE members whose UE Service ID is not bound to a subscriber (nobody to
 * deliver to). A UE recipient carries its binding generation; in_flight is set for those with
 * a live session (a UE on some worker, an AS registered with a targetUri), which the caller
 * pushes after the accept; next_attempt_ms = first_retry_ms. A UE registered on another node
 * of the cluster (self_node: this node's node.name, "" or NULL on one node) gets that node in
 * its node field, not in flight, due at once (the store queues it on that node's subjects,
 * which pushes it; docs/scale-out.md "Routing"). *gen: the group's generation the
 * members were read at (the message's group_gen). *out is malloc'd (NULL when none).
 * 0; M5_ENOENT (no such group: deleted since the sender was authorized); M5_ENOMEM. */
int groups_fanout_recipients(registry_t *reg, router_t *router, const char *self_node,
                             const m5_msg_addr_t *ori, const m5_msg_addr_t *dest,
                             int64_t first_retry_ms, m5_store_rcpt_t **out, size_t *n,
                             uint64_t *gen);

/* May delivery (rcpt) of a message to dest, resolved at group_gen, still go out? NULL when it
 * may (or when dest is no group or area message: group_gen 0), else the failureCause it is
 * failed with: M5_CAUSE_GROUP_DELETED (no such group or area now), M5_CAUSE_LEFT_GROUP (rcpt
 * is no longer a member, or became one again after group_gen). arg is the registry_t: the
 * same function is the store's GROUP_SWEEP check (store.h). */
const char *groups_fanout_check(void *reg, const m5_msg_addr_t *dest, const m5_msg_addr_t *rcpt,
                                uint64_t group_gen);

#endif
