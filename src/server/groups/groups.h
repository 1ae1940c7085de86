/* Groups and broadcast areas as data (TS 23.554 cl. 8.7.4 group messaging through SEAL group
 * management, TS 23.434 cl. 10.3, API TS 29.549 SS_GroupManagement; cl. 8.6.1 broadcast
 * areas): who is in a group or an area, who may send to it, who may manage it, and who made
 * it. The operator manages both on the management port (mgmt/admin_groups.c, m5ctl group and
 * m5ctl area); Application Servers manage groups, not areas, through the SEAL GM API on the
 * northbound listener (north/north_gm.c).
 *
 * Storage: tables of the registry's database (m5s.db), written on the registry's DB thread
 * (jobs submitted with groups_submit, committed with synchronous=FULL: they are
 * configuration), and an in-memory copy under a lock of its own that the DB thread updates
 * right after each commit. Readers (the message path) never wait for the disk and only see
 * committed state. With store.backend jetstream the groups live in NATS KV instead, shared by
 * every node (groups_js.c): the jobs write the bucket and answer once this node's watcher
 * thread, the only writer of the in-memory copy then, applied the write.
 *
 * Names: a group's valGroupId (the addr of a GROUP address) and an area id (the addr of a BC
 * address) are m5_msg_name_valid() names; groups and areas are separate name spaces.
 * Principals: "ue:<UE Service ID>" or "as:<asSvcId>". A group's members are UEs and ASs; an
 * area's members are UEs only. A grant names a principal and its rights: SEND (may send to the
 * group or area without being a member) and, on groups only, MANAGE (may read, change and
 * delete it through the SEAL GM API). The creator of a group made through SEAL GM (an AS) is
 * granted SEND|MANAGE; the operator manages everything and holds no grant.
 *
 * ---- The contract with the fan-out (group and broadcast messages, next) ----
 * Every group and area has a generation `gen`, taken from one counter that only grows (across
 * deletions, re-creations and restarts: it is at least the wall clock in ms): every change of
 * a group (members, grants, attributes) gives it a new gen, and each member carries `since`,
 * the gen of the change that (last) added it. A message to a group is resolved at acceptance
 * with groups_members(), which returns the members and the gen they were read at (G); each
 * per-member delivery records (kind, id, G). Before pushing such a delivery, and again when it
 * could not be pushed and would be kept, the fan-out must call groups_delivery_valid(kind, id,
 * member, G): it is 0 (deliver) only if the group still exists, the member is still in it, and
 * the member's since <= G. So
 *  - a member removed while messages are queued for it no longer gets them, from the moment
 *    the removal is committed (and not after a later re-adding either: since > G);
 *  - a deleted group's queued deliveries all fail (and a group re-created under the same name
 *    gets members whose since is above every old G).
 * The check is the atomic part: it reads the same memory copy the commit updated, under the
 * same lock. To fail those deliveries in the message store promptly (and send the failure
 * reports that were asked for), the fan-out registers a hook (groups_set_hook) that the DB
 * thread calls after each commit with what changed; the hook must not block (post to a
 * mailbox). Since a crash can come between the registry's commit and the store's, the fan-out
 * must also, at start-up, fail every queued group delivery for which groups_delivery_valid()
 * is no longer 0 (the same catch-up rebind_sync does for UE Service IDs).
 * Removals also come from the registry's own jobs, the hand-over of an identifier
 * (groups_int.h): a UE Service ID re-bound or un-bound leaves every group and area, a deleted
 * AS client's grants, memberships and created groups go; the hook is called for them the same
 * way, after that job's commit. */
#ifndef M5_SERVER_GROUPS_H
#define M5_SERVER_GROUPS_H

#include "msg/msg.h"
#include "server/registry/registry.h"

#include <stddef.h>
#include <stdint.h>

typedef enum {
  GROUPS_GROUP = 0, /* addrType GROUP: a VAL group (SEAL GM) */
  GROUPS_AREA = 1,  /* addrType BC: a broadcast area */
} groups_kind_t;

#define GROUPS_RIGHT_SEND 1u
#define GROUPS_RIGHT_MANAGE 2u /* groups only */

/* "ue:" or "as:" and the ID */
#define GROUPS_PRINCIPAL_MAX (3 + M5_MSG_ADDR_MAX)
typedef char groups_principal_t[GROUPS_PRINCIPAL_MAX + 1];
/* The attributes of a VAL group document m5s keeps and gives back (grpDesc, valGrpConf,
 * valSvcInf, valServiceIds) as one JSON object text, at most this long. */
#define GROUPS_ATTRS_MAX 8192

/* The bounds (m5s configuration groups.*; docs/m5s.md). */
typedef struct {
  size_t max_groups;        /* groups and areas together; default 10000 */
  size_t max_members;       /* per group or area; default 100000 */
  size_t max_total_members; /* over all of them; default 1000000 */
  size_t max_grants;        /* per group or area; default 64 */
  size_t max_per_as;        /* groups one AS may have created (SEAL GM); default 1000; so that
                               no AS can take the whole name space (0 = the default) */
  size_t max_members_per_as; /* members of all the groups one AS created together (whoever
                                adds them); default 100000; so that no AS can take the whole
                                max_total_members (0 = the default) */
} groups_limits_t;

#define GROUPS_DEFAULT_MAX_GROUPS 10000
#define GROUPS_DEFAULT_MAX_MEMBERS 100000
#define GROUPS_DEFAULT_MAX_TOTAL_MEMBERS 1000000
#define GROUPS_DEFAULT_MAX_GRANTS 64
#define GROUPS_DEFAULT_MAX_PER_AS 1000
#define GROUPS_DEFAULT_MAX_MEMBERS_PER_AS 100000

/* "group" / "area" */
const char *groups_kind_name(groups_kind_t kind);
/* A principal as accepted: "ue:" + m5_msg_svc_id_valid, or "as:" + m5_msg_as_id_valid; an
 * area's members must be UEs (pass member_of_area = 1). 1 = valid. */
int groups_principal_valid(const char *p, int member_of_area);

/* Before registry_start (after registry_open, which creates the tables and loads them with
 * the defaults): the bounds in force. Counts already above a lowered bound are kept; only
 * growth is refused. */
void groups_set_limits(registry_t *r, const groups_limits_t *lim);

/* ---- changes: jobs on the registry's DB thread ---- */

typedef enum {
  GROUPS_CREATE,     /* in: kind, id, creator ("" = the operator; "as:ID": that AS, granted
                        SEND|MANAGE), members (optional initial list), attrs (optional).
                        out: created = 1; M5_EEXIST when it exists (nothing changes) */
  GROUPS_DELETE,     /* in: kind, id. M5_ENOENT */
  GROUPS_UPDATE,     /* in: kind, id; members when set_members (the new list, replacing the
                        old: members kept keep their since; keep_as_members: and the AS
                        members stay); attrs when set: a JSON object merged into the kept ones
                        (RFC 7396: a null value removes), or, with replace_attrs, replacing
                        them. M5_ENOENT */
  GROUPS_ADD_MEMBER, /* in: kind, id, principal. out: created (was not a member); M5_ENOENT */
  GROUPS_ADD_MEMBERS, /* in: kind, id, members (a batch, one transaction). out: created = how
                         many were not members yet (the others keep their since); M5_ENOENT */
  GROUPS_DEL_MEMBER, /* in: kind, id, principal. M5_ENOENT: no group, or not a member
                        (found = 1 tells the second apart) */
  GROUPS_GRANT,      /* in: kind, id, principal, rights (replacing its rights). out: created */
  GROUPS_REVOKE,     /* in: kind, id, principal. M5_ENOENT (found as for DEL_MEMBER) */
} groups_op_t;

typedef struct groups_job {
  registry_job_t rj; /* first: rj.base.reply is the submitter's mailbox; the reply is this job */
  groups_op_t op;
  groups_kind_t kind;
  char id[M5_MSG_NAME_MAX + 1];
  groups_principal_t principal;
  unsigned rights;
  groups_principal_t creator;
  groups_principal_t *members; /* owned (groups_job_clear frees it) */
  size_t n_members;
  int set_members;
  int keep_as_members; /* UPDATE with set_members: the AS members stay (SEAL GM lists UEs only) */
  char *attrs; /* owned, a JSON object text, or NULL */
  int replace_attrs;   /* UPDATE: attrs replace the kept ones whole (NULL: none are kept) */
  /* out */
  int status;       /* 0, M5_ENOENT, M5_EEXIST, M5_EINVAL, M5_ERANGE (a bound: see why), M5_EIO */
  int created;
  int found;        /* the group exists (for M5_ENOENT answers) */
  const char *why;  /* M5_ERANGE / M5_EINVAL: which bound or input, static text */
  uint64_t gen;     /* the group's generation after the change */
  void *arg;        /* the submitter's */
} groups_job_t;

/* From any thread: submits the job on the registry's thread (rj.op is set here); M5_EFULL when
 * its queue is full (the caller keeps the job). */
int groups_submit(registry_t *r, groups_job_t *job);
/* Frees what the job owns (members, attrs); the job itself is the caller's. */
void groups_job_clear(groups_job_t *job);

/* ---- reading: any thread, without waiting for the disk ---- */

typedef struct {
  groups_principal_t principal;
  uint64_t since;
} groups_member_t;

typedef struct {
  groups_principal_t principal;
  unsigned rights;
} groups_grant_t;

typedef struct {
  groups_kind_t kind;
  char id[M5_MSG_NAME_MAX + 1];
  groups_principal_t creator; /* "" = the operator */
  uint64_t gen;
  int64_t created_at;          /* Unix seconds */
  size_t n_members;
  size_t n_grants;
  groups_grant_t *grants;      /* malloc'd by groups_get (free with groups_info_clear) */
  char *attrs;                 /* malloc'd JSON object text, or NULL */
} groups_info_t;

/* 0 and *out, or M5_ENOENT; M5_ENOMEM. */
int groups_get(registry_t *r, groups_kind_t kind, const char *id, groups_info_t *out);
void groups_info_clear(groups_info_t *info);

/* The members as of now, sorted by principal, into a malloc'd array (*out, *n; free() it),
 * and the gen they were read at (*gen, may be NULL). M5_ENOENT: no such group; M5_ENOMEM. */
int groups_members(registry_t *r, groups_kind_t kind, const char *id, groups_member_t **out,
                   size_t *n, uint64_t *gen);

/* The ids of the groups (or areas) principal may manage (a MANAGE grant), sorted, malloc'd
 * into *ids (free() it) and *n. For SEAL GM's GET of the collection. */
int groups_managed_by(registry_t *r, groups_kind_t kind, const char *principal,
                      char (**ids)[M5_MSG_NAME_MAX + 1], size_t *n);

/* 1 if sender ("ue:ID" / "as:ID") may send to the group or area now: on a GROUP, a member or a
 * SEND grant; on a BC area, a SEND grant only. 0 otherwise, also when there is no such group
 * (the caller answers both the same way: NOT_AUTHORIZED). */
int groups_may_send(registry_t *r, groups_kind_t kind, const char *id, const char *sender);
/* 1 if the AS as_svc_id holds a MANAGE grant on the group (0 also for an unknown group). */
int groups_may_manage(registry_t *r, const char *id, const char *as_svc_id);
/* The fan-out's check before pushing a delivery made at gen (see the contract above): 0 when
 * member is still in the group with since <= gen; M5_ENOENT otherwise. */
int groups_delivery_valid(registry_t *r, groups_kind_t kind, const char *id, const char *member,
                          uint64_t gen);

/* The members of the group (or area) now; 0 when it has none or does not exist. */
size_t groups_size(registry_t *r, groups_kind_t kind, const char *id);
/* 1 if the group (or area) exists now. */
int groups_exists(registry_t *r, groups_kind_t kind, const char *id);
/* The number of groups (or areas). */
size_t groups_count(registry_t *r, groups_kind_t kind);

/* ---- the change hook ---- */

typedef enum {
  GROUPS_EV_DELETED,        /* the group is gone: its queued deliveries fail */
  GROUPS_EV_MEMBER_REMOVED, /* member left: its queued deliveries of this group fail */
} groups_event_t;

/* fn(arg, kind, id, event, member ("" for DELETED), gen) on the registry's DB thread, after
 * the commit and the memory update, once per removed member or deleted group (on KV: on the
 * watcher thread, on every node, for every node's changes). Set before registry_start; fn
 * must not block. NULL removes it. */
typedef void (*groups_hook_fn)(void *arg, groups_kind_t kind, const char *id, groups_event_t ev,
                               const char *member, uint64_t gen);
void groups_set_hook(registry_t *r, groups_hook_fn fn, void *arg);

#endif
