/* Messaging Topics on MSGin5G-1 (TS 23.554 cl. 8.8.1-8.8.3; docs/protocol.md §4 "Messaging
 * Topics", docs/delivery.md "Messaging Topics"): a registered UE's TOPICSUB / TOPICUNSUB,
 * stored through the message store (M5_STORE_TOPIC_SUB / _UNSUB: a subscription belongs to
 * the UE Service ID and its binding generation, survives sessions and restarts), and the
 * recipients of a message to a TOPIC address: the topic's subscribers when it is accepted,
 * the publisher left out. Who may subscribe and publish: topics_rules.h.
 *
 * One topics_t per worker loop (ue_api.c owns it); everything runs on that loop. */
#ifndef M5_SERVER_TOPICS_H
#define M5_SERVER_TOPICS_H

#include "coap/endpoint.h"
#include "core/loop.h"
#include "msg/msg.h"
#include "server/delivery/router.h"
#include "server/registry/registry.h"
#include "server/topics/topics_rules.h"
#include "store/store.h"

#include <stddef.h>
#include <stdint.h>

typedef struct topics topics_t;

typedef struct {
  m5_store_t *store;
  topics_rules_t *rules;       /* shared by the workers; NULL: everyone may do everything */
  int64_t default_expiry_s;    /* a TOPICSUB without expiry: now + this; 0 = 86400 */
  int64_t max_expiry_s;        /* the latest expiry: now + this; 0 = 30 days */
  uint64_t max_per_subscriber; /* subscriptions of one UE or AS; 0 = 100 */
  uint64_t max_subscribers;    /* subscribers of one topic; 0 = 10000 */
  size_t max_inflight;         /* store jobs outstanding (beyond: 5.03); 0 = 1024 */
} topics_opts_t;

/* idle(arg) runs on the loop whenever a store job of this module comes back (the drain
 * waits for topics_inflight() to reach 0). NULL when out of memory. */
topics_t *topics_new(m5_loop_t *loop, const topics_opts_t *o, void (*idle)(void *), void *arg);
/* After the loop has stopped and the store is closed: what still waits gets 5.03. */
void topics_free(topics_t *t);
size_t topics_inflight(const topics_t *t);

/* A TOPICSUB or TOPICUNSUB m from the registered UE ue_svc_id (binding generation gen) on
 * req: answered once, now or when the store replied. m is only read. */
void topics_ue_request(topics_t *t, m5_coap_req_t *req, const char *ue_svc_id, uint64_t gen,
                       const m5_msg_t *m);

/* The answer to an AS's subscription request: status 0 (done; expiry: the one set, for a
 * subscription), M5_EPERM (a topic it may not subscribe to; detail names it), M5_EFULL (a
 * bound; detail), M5_EINVAL (expiry already passed), M5_EAGAIN (the store is busy or failed:
 * retry), M5_ECLOSED (the server stopped: free ctx, answer nothing). */
typedef void (*topics_as_reply_fn)(void *ctx, int status, const char *detail, int64_t expiry);
/* The AS as_svc_id subscribes to (sub) or unsubscribes from the n topics; expiry 0: the
 * default. fn(ctx, ...) runs exactly once, now or later on this loop. */
void topics_as_request(topics_t *t, const char *as_svc_id, const m5_msg_name_t *topics, size_t n,
                       int sub, int64_t expiry, topics_as_reply_fn fn, void *ctx);

/* Whether ori (a UE or an AS) may publish on topic. */
int topics_may_publish(const topics_t *t, const char *topic, const m5_msg_addr_t *ori);

/* The recipients of a message from publisher to a topic whose subscriptions are subs: one
 * per subscriber but the publisher and those the policy of who may message whom keeps from
 * it (reg's registry_policy_check), stamped with its generation; in flight (pushed at once by
 * the caller) when it is live now (a UE with a session on some worker, an AS with a
 * targetUri), else queued, first due at first_retry_ms. A UE registered on another m5s node
 * of the cluster (self: this node's node.name; NULL or "" on one node) is queued on that
 * node (m5_store_rcpt_t.node), due at once there: that node pushes it, as ue_accept does for
 * a point-to-point message. *out is malloc'd (NULL when *n is 0). 0 or M5_ENOMEM. */
int topics_recipients(const m5_store_sub_t *subs, size_t n_subs, const m5_msg_addr_t *publisher,
                      router_t *router, registry_t *reg, const char *self, int64_t first_retry_ms,
                      m5_store_rcpt_t **out, size_t *n);

#endif
