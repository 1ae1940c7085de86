/* Recipients of group and broadcast messages, and the check before each of their deliveries
 * goes out (groups_fanout.h; groups.h "the contract with the fan-out"). */
#include "server/groups/groups_fanout.h"

#include "core/err.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

int groups_kind_of(const char *addr_type, groups_kind_t *kind) {
  if (!strcmp(addr_type, "GROUP"))
    *kind = GROUPS_GROUP;
  else if (!strcmp(addr_type, "BC"))
    *kind = GROUPS_AREA;
  else
    return M5_EINVAL;
  return 0;
}

int groups_principal_of(const m5_msg_addr_t *a, groups_principal_t p) {
  const char *prefix = !strcmp(a->type, "UE") ? "ue:" : !strcmp(a->type, "AS") ? "as:" : NULL;
  if (!prefix) return M5_EINVAL;
  int n = snprintf(p, GROUPS_PRINCIPAL_MAX + 1, "%s%s", prefix, a->addr);
  return n > 0 && n <= GROUPS_PRINCIPAL_MAX ? 0 : M5_EINVAL;
}

/* "ue:ID" / "as:ID" back into an address: 0, or M5_EINVAL. */
static int addr_of(const char *principal, m5_msg_addr_t *a) {
  memset(a, 0, sizeof *a);
  if (!strncmp(principal, "ue:", 3))
    snprintf(a->type, sizeof a->type, "UE");
  else if (!strncmp(principal, "as:", 3))
    snprintf(a->type, sizeof a->type, "AS");
  else
    return M5_EINVAL;
  int n = snprintf(a->addr, sizeof a->addr, "%s", principal + 3);
  return n > 0 && (size_t)n < sizeof a->addr ? 0 : M5_EINVAL;
}

int groups_fanout_may_send(registry_t *reg, const m5_msg_addr_t *ori, const m5_msg_addr_t *dest) {
  groups_kind_t kind;
  groups_principal_t sender;
  if (groups_kind_of(dest->type, &kind) != 0 || groups_principal_of(ori, sender) != 0) return 0;
  return groups_may_send(reg, kind, dest->addr, sender);
}

size_t groups_fanout_size(registry_t *reg, const m5_msg_addr_t *dest) {
  groups_kind_t kind;
  return groups_kind_of(dest->type, &kind) == 0 ? groups_size(reg, kind, dest->addr) : 0;
}

int groups_fanout_recipients(registry_t *reg, router_t *router, const char *self_node,
                             const m5_msg_addr_t *ori, const m5_msg_addr_t *dest,
                             int64_t first_retry_ms, m5_store_rcpt_t **out, size_t *n,
                             uint64_t *gen) {
  *out = NULL;
  *n = 0;
  groups_kind_t kind;
  if (groups_kind_of(dest->type, &kind) != 0) return M5_EINVAL;
  groups_member_t *members = NULL;
  size_t n_members = 0;
  int rc = groups_members(reg, kind, dest->addr, &members, &n_members, gen);
  if (rc != 0) return rc;
  m5_store_rcpt_t *r = n_members ? calloc(n_members, sizeof *r) : NULL;
  if (n_members && !r) {
    free(members);
    return M5_ENOMEM;
  }
  int64_t now = (int64_t)time(NULL);
  size_t k = 0;
  for (size_t i = 0; i < n_members; i++) {
    m5_msg_addr_t a;
    if (addr_of(members[i].principal, &a) != 0) continue;
    if (!strcmp(a.type, ori->type) && !strcmp(a.addr, ori->addr)) continue; /* not to itself */
    /* Who may message whom holds member by member (TS 23.554 cl. 8.3.2 step 3): a member the
     * policy keeps from this sender (an AS's ueSvcIds, ueToUe, ...) is left out silently. */
    if (registry_policy_check(reg, ori, &a, NULL) != POLICY_ALLOW) continue;
    m5_store_rcpt_t *x = &r[k];
    x->addr = a;
    x->next_attempt_ms = first_retry_ms;
    router_loc_t loc;
    char target[2]; /* only whether the AS has a targetUri */
    if (!strcmp(a.type, "UE")) {
      registry_entry_t e;
      uint64_t gw_gen;
      if (registry_gw_holder(reg, a.addr, NULL, &gw_gen) == 0) {
        /* a device behind a message gateway: pushed to its gateway at once, as a message
         * addressed to it alone is (ue_accept.c) */
        x->gen = gw_gen;
        x->in_flight = 1;
      } else if (registry_lookup(reg, a.addr, now, &e) == 0) {
        x->gen = e.gen;
        x->in_flight = router_find(router, a.addr, &loc) == 0;
        if (!x->in_flight && self_node && self_node[0] && e.registered && e.node[0] &&
            strcmp(e.node, self_node) != 0) {
          /* its session is on another node of the cluster (as ue_accept.c on_other_node):
           * queued on that node's subjects, due at once there (its DUE_ANY tick pushes it) */
          snprintf(x->node, sizeof x->node, "%s", e.node);
          x->next_attempt_ms = now * 1000;
        }
      } else {
        continue; /* neither bound nor held by a gateway: nobody to reach */
      }
    } else {
      if (registry_as_target(reg, a.addr, target, sizeof target) != 0) continue; /* removed */
      x->in_flight = target[0] != '\0';
    }
    k++;
  }
  free(members);
  if (k == 0) {
    free(r);
    r = NULL;
  }
  *out = r;
  *n = k;
  return 0;
}

const char *groups_fanout_check(void *arg, const m5_msg_addr_t *dest, const m5_msg_addr_t *rcpt,
                                uint64_t group_gen) {
  registry_t *reg = arg;
  groups_kind_t kind;
  groups_principal_t member;
  if (!group_gen || groups_kind_of(dest->type, &kind) != 0) return NULL;
  if (groups_principal_of(rcpt, member) != 0) return M5_CAUSE_LEFT_GROUP;
  if (groups_delivery_valid(reg, kind, dest->addr, member, group_gen) == 0) return NULL;
  return groups_exists(reg, kind, dest->addr) ? M5_CAUSE_LEFT_GROUP : M5_CAUSE_GROUP_DELETED;
}
