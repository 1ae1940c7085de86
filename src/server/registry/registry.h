/* The m5s registry (TS 23.554 cl. 8.2.1, 8.2.2; architecture §4): the binding table UE
 * Service ID -> SUPI that authorises a REG (the SEAL CM / configuration-function role,
 * managed through the admin API), and the registration state that target resolution reads
 * (cl. 5.3.2.2). Both are persisted in SQLite so they survive restarts.
 *
 * Threads: SQLite runs on a job thread of its own. An in-memory copy of both tables is loaded
 * at open and kept in sync by that thread, which updates it right after each commit, under
 * a read-write lock. So workers read (registry_lookup) without waiting for the disk and only
 * ever see committed state; every change goes through a job. Durability: a binding change is
 * acknowledged after an fsync (synchronous=FULL); a registration after its WAL write
 * (synchronous=NORMAL): it survives a crash of the process, and a power loss may forget the
 * last ones, which the UEs, whose sessions are gone then anyway, re-create with their next REG.
 * With store.backend jetstream (several m5s nodes) the same tables live in NATS KV instead and
 * are the cluster's (registry_js_attach below; registry_js.c). */
#ifndef M5_SERVER_REGISTRY_H
#define M5_SERVER_REGISTRY_H

#include "core/jobthread.h"
#include "core/net.h"
#include "msg/msg.h"
#include "server/policy/policy.h"
#include "tls/akma.h"

#include <stddef.h>
#include <stdint.h>

#define REGISTRY_ID_MAX M5_MSG_ADDR_MAX
#define REGISTRY_SUPI_MAX M5_AKMA_SUPI_MAX
#define REGISTRY_NODE_MAX 32 /* node.name */

typedef struct registry registry_t;

typedef struct {
  char ue_svc_id[REGISTRY_ID_MAX + 1];
  char supi[REGISTRY_SUPI_MAX + 1];
  int registered;        /* a registration exists and its expiry has not passed */
  int64_t registered_at; /* Unix seconds; 0 when there is no registration */
  int64_t expiry;
  /* The binding's generation (docs/delivery.md "Re-bound UE Service IDs"): assigned by the
   * registry when the ID is bound to a SUPI it was not bound to (created, re-bound to another
   * SUPI, or created again after a removal), persisted, strictly increasing per ID across
   * all of these (a removal also takes one). A PUT of the same SUPI keeps it. Sessions,
   * deliveries and reports carry the generation they were made under. */
  uint64_t gen;
  /* The m5s node holding the registration's session (node.name; issue 13): the message store
   * queues its deliveries there. "" on the sqlite backend (one node) and when unregistered. */
  char node[REGISTRY_NODE_MAX + 1];
} registry_entry_t;

/* An Application Server client of MSGin5G-3 (architecture §3.2), configured through the admin
 * API: its asSvcId (= its certificate's SAN URI urn:msgin5g:as:<asSvcId> = its token's sub),
 * the host:port pairs its targetUri may name, and its registration (TS 29.538
 * ASRegistration), at most one: a new one replaces it. */
#define REGISTRY_AS_ID_MAX 64
#define REGISTRY_AS_TARGETS_MAX 16
#define REGISTRY_HOSTPORT_MAX M5_NET_HOSTPORT_MAX /* core/net.h */
#define REGISTRY_URI_MAX 1024
#define REGISTRY_REG_ID_LEN 32 /* hex of 128 random bits */

/* How an AS client authenticates its MSGin5G-3 requests besides its client certificate
 * (which it always needs): with an OAuth2 access token (the default), or with the certificate
 * alone (TS 33.501 Annex Y.4 is TLS-based; TS 29.538's security schemes allow no token). */
typedef enum {
  REGISTRY_AS_AUTH_TOKEN = 0,
  REGISTRY_AS_AUTH_MTLS = 1,
} registry_as_auth_t;

typedef struct {
  char as_svc_id[REGISTRY_AS_ID_MAX + 1];
  registry_as_auth_t auth;
  size_t n_targets;
  char targets[REGISTRY_AS_TARGETS_MAX][REGISTRY_HOSTPORT_MAX + 1]; /* "host:port", lowercase */
  char registration_id[REGISTRY_REG_ID_LEN + 1];                   /* "" = not registered */
  char target_uri[REGISTRY_URI_MAX + 1];
  char app_id[M5_MSG_ADDR_MAX + 1];
  int64_t registered_at;
  /* The UE Service IDs this AS may message (policy.h; default "*", n = 0: none). */
  policy_patterns_t ue_svc_ids;
  /* The m5s node that took its registration (node.name; issue 13): the message store queues
   * its deliveries there. "" on the sqlite backend and when unregistered. */
  char node[REGISTRY_NODE_MAX + 1];
} registry_as_t;

typedef enum {
  REGISTRY_BIND,       /* in: ue_svc_id, supi. out: created, old_supi, gen, old_gen. A new
                          SUPI drops the registration made under the old one and takes a
                          new generation (gen != old_gen: the message store must start the
                          ID clean, M5_STORE_REBIND) and, in the same transaction, drops
                          every group and area membership and grant of ue:<id> (groups_int.h
                          "hand-over"); the same SUPI changes nothing */
  REGISTRY_UNBIND,     /* in: ue_svc_id. out: old_supi, old_gen, gen (the removal's own
                          generation, kept for the ID); M5_ENOENT. Drops the registration
                          and, in the same transaction, ue:<id>'s group memberships and grants */
  REGISTRY_REGISTER,   /* in: ue_svc_id, supi, gen (as registry_lookup gave it),
                          registered_at, expiry. out: created (there was no unexpired
                          registration); M5_EPERM when the binding is gone, names another
                          SUPI or has another generation now */
  REGISTRY_DEREGISTER, /* in: ue_svc_id; M5_ENOENT when not registered */
  /* Application Servers; `as` points to the caller's record (borrowed until the reply). */
  REGISTRY_AS_PUT,        /* in: as->as_svc_id, auth, targets, ue_svc_ids. out: created. A registration whose
                             targetUri the new list no longer allows is dropped */
  REGISTRY_AS_DEL,        /* in: as->as_svc_id; M5_ENOENT. Drops its registration and, in
                             the same transaction, every grant to and membership of as:<id>
                             and every group it created (SEAL GM), as DELETE does (the hook) */
  REGISTRY_AS_REGISTER,   /* in: as->as_svc_id, registration_id, target_uri, app_id,
                             registered_at. out: created (no earlier registration), *as = the
                             stored record. M5_ENOENT: no such AS client; M5_EPERM: target_uri
                             ("" = none) is not on the client's list (checked here against
                             the list as it is when the job runs) */
  REGISTRY_AS_DEREGISTER, /* in: as->as_svc_id, registration_id; M5_ENOENT unless that is
                             the AS's registration */
  /* Who may message whom (registry_policy.c); `policy` points to the caller's record. */
  REGISTRY_POLICY_PUT, /* in: *policy. Stored: it replaces the configured one, also after a
                          restart */
  REGISTRY_POLICY_DEL, /* drops the stored one: the configured one applies again. out:
                          created = 1 if there was a stored one */
  /* Message gateways (registry_gw.c; MSGin5G-2/-4): `gw` points to the caller's record. */
  REGISTRY_GW_PUT,     /* in: gw->gw_id, kind, target, pattern. out: created. IDs the gateway
                          holds that the new pattern no longer allows are released (each with
                          a new generation, listed in ids/gens like GW_DEL's) */
  REGISTRY_GW_DEL,     /* in: gw->gw_id; M5_ENOENT. In one transaction: the client and every
                          UE Service ID it holds, each released with a new generation. out:
                          ids/gens/n_ids (malloc'd by the registry, the submitter frees them) */
  REGISTRY_GW_UE_REG,  /* in: gw->gw_id, ids/n_ids (the caller's). All or nothing: M5_ENOENT
                          (no such gateway), M5_EPERM (ids[bad] outside its pattern),
                          M5_EEXIST (ids[bad] bound to a subscriber or held by another
                          gateway), M5_ERANGE (it would hold more than
                          REGISTRY_GW_HELD_MAX). An ID this gateway holds already keeps its
                          generation; a new one takes one. out: gens[i] for each (the
                          caller's array), fresh[i] (or NULL) */
  REGISTRY_GW_UE_DEREG, /* in: gw->gw_id, ue_svc_id; M5_ENOENT unless this gateway holds it.
                          out: gen (the release's own generation) */
  REGISTRY_GW_UE_LIST, /* in: gw->gw_id, ue_svc_id (the cursor: only IDs after it, "" = from
                          the first), ids (the caller's array of n_ids, 1..REGISTRY_GW_UES_MAX).
                          out: the IDs this gateway holds, in byte order, in ids/n_ids; more = 1
                          when others follow the last. M5_ENOENT: no such gateway. Reads the
                          database (the authority), not the memory copy (with jetstream: the
                          memory copy, which the cluster's bucket feeds) */
  REGISTRY_GROUPS,        /* the job is a groups_job_t (server/groups/groups.h), which has
                             this job first; submitted by groups_submit */
  REGISTRY_JS_PURGE,      /* internal to registry_js.c, which submits it with a job of its
                             own: an ID that changed hands on another node leaves this node's
                             groups (with store.backend jetstream) */
} registry_op_t;

typedef struct registry_job {
  m5_job_t base; /* first: base.reply is the submitter's mailbox */
  registry_op_t op;
  int status; /* 0, M5_ENOENT, M5_EPERM, M5_EIO */
  int created;
  char ue_svc_id[REGISTRY_ID_MAX + 1];
  char supi[REGISTRY_SUPI_MAX + 1];
  char old_supi[REGISTRY_SUPI_MAX + 1]; /* "" when there was no binding */
  int64_t registered_at;
  int64_t expiry;
  uint64_t gen, old_gen; /* see the ops; old_gen 0: there was no binding */
  registry_as_t *as;     /* REGISTRY_AS_* */
  policy_t *policy;      /* REGISTRY_POLICY_PUT */
  struct registry_gw *gw;                 /* REGISTRY_GW_* */
  char (*ids)[REGISTRY_ID_MAX + 1];      /* REGISTRY_GW_*: UE Service IDs */
  uint64_t *gens;                         /* their generations */
  unsigned char *fresh;                   /* GW_UE_REG (or NULL): 1 = newly taken */
  size_t n_ids, bad;                      /* bad: the index of the refused ID */
  int more;                               /* GW_UE_LIST: IDs follow the page */
  void *arg;         /* the submitter's */
} registry_job_t;

/* Opens (creating the directory 0700, the file and the schema) and loads the tables into
 * memory, on the calling thread, so start-up errors come before any thread runs. */
registry_t *registry_open(const char *path, char *err, size_t errlen);
/* ---- the registry shared through NATS KV (store.backend: jetstream; registry_js.c,
 * docs/scale-out.md "Registry on NATS KV") ----
 * Bindings (bucket <prefix>_bind), registrations (<prefix>_reg), AS clients with their
 * registration (<prefix>_as) and the stored policy (<prefix>_policy) are kept in KV instead of
 * SQLite, so that every m5s node of a cluster sees the same ones; the memory copy stays (workers
 * read it without waiting) and a watcher thread per bucket applies every change, this node's
 * and the others', to it. So are gateway clients (<prefix>_gw, registry_js_gw.c) and groups
 * and broadcast areas (<prefix>_groups, server/groups/groups_js.c, attached here too). */
typedef struct {
  const char *const *servers; /* nats:// URLs */
  size_t n_servers;
  int replicas;       /* of the buckets: 1, or 3 in a cluster */
  const char *prefix; /* bucket names: <prefix>_bind, <prefix>_reg */
  const char *node;   /* this node's name (1..REGISTRY_NODE_MAX of A-Z a-z 0-9 _ -) */
  int64_t timeout_ms; /* every NATS request, and a job's wait for its own write */
  /* TLS and credentials towards NATS (store.js.tls_*, user, password_file, creds; NULL or ""
   * = unused): see m5_js_auth_t (js/js_client.h) */
  const char *tls_ca, *tls_cert, *tls_key, *user, *password_file, *creds;
} registry_js_opts_t;
/* After registry_open, before registry_start, on the calling thread: connects, creates the
 * buckets if missing, replaces the memory copy of bindings and registrations by the buckets'
 * contents and starts the watchers. 0, or M5_E* with a message in err. */
int registry_js_attach(registry_t *r, const registry_js_opts_t *o, char *err, size_t errlen);
/* A binding or registration changed (watcher thread; with jetstream only, for every change,
 * whichever node made it): reason BINDING: ue_svc_id's binding is at gen now (0: removed and
 * gen of the removal in gen): a session registered under another generation must go;
 * MOVED: ue_svc_id registered on another node (its newer session wins): a session here must
 * go. fn must not block nor call the registry's jobs. Set before the first session. */
typedef enum { REGISTRY_CHANGE_BINDING = 0, REGISTRY_CHANGE_MOVED = 1 } registry_change_t;
void registry_set_change_hook(registry_t *r,
                              void (*fn)(void *arg, const char *ue_svc_id, uint64_t gen,
                                         registry_change_t why),
                              void *arg);
/* 1 when the registry is shared through NATS KV. */
int registry_shared(registry_t *r);

/* Starts the DB thread; queue_cap bounds the jobs waiting for it. */
int registry_start(registry_t *r, size_t queue_cap);
/* From any thread; M5_EFULL when the queue is full (the caller keeps the job). */
int registry_submit(registry_t *r, registry_job_t *job);
/* Finishes the queued jobs, stops the thread and closes. */
void registry_close(registry_t *r);

/* From any thread, without waiting for the disk: 0 and *out, or M5_ENOENT when the UE Service
 * ID is not bound. `now` (Unix seconds) decides whether the registration is still valid. */
int registry_lookup(registry_t *r, const char *ue_svc_id, int64_t now, registry_entry_t *out);
/* From any thread: 1 when ue_svc_id is bound now at generation gen (a session registered
 * under gen may go on), else 0. The check every request of a registered session makes. */
int registry_gen_current(registry_t *r, const char *ue_svc_id, uint64_t gen);
/* Before registry_start, on the calling thread: fn(arg, ue_svc_id, gen) for every UE Service
 * ID the registry has ever bound, with its last generation (removed IDs included), so the
 * message store can catch up with changes it missed (a crash between the two commits). */
int registry_gens_foreach(registry_t *r, void (*fn)(void *arg, const char *ue_svc_id, uint64_t gen),
                          void *arg);
/* From any thread: the bindings, and the registrations whose expiry has not passed at `now`. */
size_t registry_count(registry_t *r);
size_t registry_registrations(registry_t *r, int64_t now);

/* From any thread: 0 and *out, or M5_ENOENT when no AS client has that asSvcId. */
int registry_as_lookup(registry_t *r, const char *as_svc_id, registry_as_t *out);
size_t registry_as_count(registry_t *r);
/* On the message path, without copying the record: M5_ENOENT when no AS client has that
 * asSvcId; else 0, with its registration's targetUri in target ("" when it is not registered
 * or registered without one; NULL target: not wanted). */
int registry_as_target(registry_t *r, const char *as_svc_id, char *target, size_t target_len);
/* From any thread: 0 and the AS client's authentication mode in *auth, or M5_ENOENT. */
int registry_as_auth(registry_t *r, const char *as_svc_id, registry_as_auth_t *auth);
/* "token" / "mtls" and back (M5_EINVAL for anything else). */
const char *registry_as_auth_name(registry_as_auth_t auth);
int registry_as_auth_parse(const char *name, registry_as_auth_t *auth);
/* An asSvcId as accepted anywhere (admin API, certificates, tokens): 1-64 characters of
 * A-Z a-z 0-9 . _ - (it is part of a URI and of file names). */
int registry_as_id_valid(const char *id);
/* 1 if uri's host:port is one of a's targets. */
int registry_as_target_allowed(const registry_as_t *a, const char *uri);

/* ---- message gateways (registry_gw.c; docs/northbound.md "Gateways") ----
 * A gateway client (MSGin5G-2 for kind sms, MSGin5G-4 for kind mqtt): its gwId (= its
 * certificate's SAN URI urn:msgin5g:gw:<gwId> = its token's sub), the host:port of its
 * MSGG_L3GDelivery / MSGG_N3GDelivery listener, and the pattern of the UE Service IDs it may
 * register and originate as (an exact ID, or a prefix ending in '*'). The UE Service IDs it
 * holds are one space with the subscribers' bindings: an ID is bound to a SUPI or held by one
 * gateway, never both; each hand-over (gateway <-> subscriber, gateway <-> gateway) gives
 * the ID a new binding generation, so what the message store kept for the previous holder is
 * failed and its dedup state dropped (M5_STORE_REBIND, docs/delivery.md). */
#define REGISTRY_GW_UES_MAX 1000      /* UE Service IDs per registration request */
#define REGISTRY_GW_HELD_MAX 100000   /* UE Service IDs one gateway may hold (memory: ~25 MB) */
typedef enum { REGISTRY_GW_SMS = 0, REGISTRY_GW_MQTT = 1 } registry_gw_kind_t;
typedef struct registry_gw {
  char gw_id[REGISTRY_AS_ID_MAX + 1];
  registry_gw_kind_t kind;
  char target[REGISTRY_HOSTPORT_MAX + 1]; /* "host:port", lowercase */
  char pattern[REGISTRY_ID_MAX + 1];
  size_t n_ues; /* out (lookups): the UE Service IDs it holds */
} registry_gw_t;

/* "sms" / "mqtt" and back (M5_EINVAL for anything else). */
const char *registry_gw_kind_name(registry_gw_kind_t k);
int registry_gw_kind_parse(const char *name, registry_gw_kind_t *k);
/* A pattern: a UE Service ID, or a prefix of one followed by a single trailing '*'. */
int registry_gw_pattern_valid(const char *p);
int registry_gw_pattern_match(const char *pattern, const char *ue_svc_id);
/* From any thread: 0 and *out, or M5_ENOENT. */
int registry_gw_lookup(registry_t *r, const char *gw_id, registry_gw_t *out);
size_t registry_gw_count(registry_t *r);
/* From any thread, on the message path: 0 when a gateway holds ue_svc_id, with that
 * gateway's record in *gw (or NULL) and the ID's generation in *gen (or NULL); M5_ENOENT. */
int registry_gw_holder(registry_t *r, const char *ue_svc_id, registry_gw_t *gw, uint64_t *gen);
/* From any thread: fn(arg, gw) for every gateway client, under the read lock (fn must not
 * call the registry). */
void registry_gw_foreach(registry_t *r, void (*fn)(void *arg, const registry_gw_t *gw), void *arg);

/* ---- who may message whom (registry_policy.c; docs/delivery.md) ----
 * The policy in force: the one stored by the admin API (REGISTRY_POLICY_PUT) if there is one,
 * else the configured one given here (m5s's policy.* keys). Before registry_start. */
void registry_policy_configure(registry_t *r, const policy_t *configured);
/* From any thread: a copy of the policy in force, and whether it is the stored one. */
void registry_policy_get(registry_t *r, policy_t *out, int *stored);
/* From any thread, on the message path: policy_check() for a message from ori to dest, with
 * the policy in force and (for an AS originator) its AS client's ueSvcIds, under the
 * registry's read lock (nothing copied). */
policy_verdict_t registry_policy_check(registry_t *r, const m5_msg_addr_t *ori,
                                       const m5_msg_addr_t *dest, const char **why);

/* "001010123456789" from that or "imsi-001010123456789"; M5_EINVAL unless 5-15 digits. */
int registry_normalise_supi(const char *in, char out[REGISTRY_SUPI_MAX + 1]);

#endif
