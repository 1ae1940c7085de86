/* Session directory and cross-worker hand-off (TS 23.554 cl. 8.3.3; architecture §6): which
 * worker holds the live MSGin5G-1 session of a UE Service ID, and mailboxes to reach that
 * worker. Sessions live on any worker; the directory is one table behind a mutex (lookups are
 * short and hold no I/O), keyed by UE Service ID, holding the worker index and the session's
 * id (a handle, never a pointer: the session may be gone by the time a message arrives, and
 * the target worker checks). */
#ifndef M5_SERVER_ROUTER_H
#define M5_SERVER_ROUTER_H

#include "core/loop.h"
#include "msg/msg.h"

#include <stddef.h>
#include <stdint.h>

typedef struct router router_t;

typedef struct {
  unsigned worker;
  uint64_t sid; /* ue_session_t.id */
  uint64_t gen; /* the binding generation the session registered under (registry.h) */
} router_loc_t;

typedef enum {
  ROUTER_DELIVER, /* to the target's inbox: push body to session sid; the target concludes
                     the store delivery deliv_id itself (delivered, rescheduled or failed).
                     With a token, it also answers with a ROUTER_RESULT to the origin */
  ROUTER_RESULT,  /* to the origin's results mailbox: status of a DELIVER */
  ROUTER_CLOSE,   /* to the target's inbox: close session sid (replaced by a newer one, or its
                     binding changed) */
  ROUTER_DUE,     /* to the timer worker's inbox: push what is stored for the recipient
                     rcpt_type:ue_svc_id now (an AS or a gateway's device just registered) */
} router_kind_t;

/* One message between workers; malloc'd by the sender, owned by the receiver. */
typedef struct {
  router_kind_t kind;
  uint64_t sid;    /* DELIVER, CLOSE: the target session */
  unsigned origin; /* DELIVER: the worker to send the RESULT to */
  void *token;     /* DELIVER -> RESULT: the origin's pending request, echoed back */
  int status;      /* RESULT: 0 accepted (pushed), M5_ENOENT no such session, M5_EFULL its
                      queue is full */
  char ue_svc_id[M5_MSG_ADDR_MAX + 1]; /* DELIVER, DUE: the recipient; CLOSE: the session's */
  char rcpt_type[4];                   /* DUE: "AS" or "UE" */
  char *body; /* DELIVER: the server-side MSG body (malloc'd, NUL-terminated) */
  size_t len;
  char msg_id[M5_MSG_ID_MAX + 1]; /* DELIVER: for logs */
  uint64_t deliv_id;              /* DELIVER: the store's delivery id (0: none) */
  uint32_t attempts;              /* DELIVER: attempts before this one */
  int sto_fwd;                    /* DELIVER: retry on failure (else the delivery fails) */
  int from_timer;                 /* DELIVER: handed out by the back-off timer */
  uint64_t gen;                   /* DELIVER: the recipient generation of the delivery */
} router_msg_t;

router_msg_t *router_msg_new(router_kind_t kind);
void router_msg_free(router_msg_t *m);

router_t *router_new(size_t n_workers);
void router_free(router_t *r);
/* Worker i's mailboxes (on its loop). results must have room for every DELIVER that worker
 * has outstanding, so that a RESULT post never fails. */
int router_attach(router_t *r, unsigned worker, m5_mailbox_t *inbox, m5_mailbox_t *results);

/* Records where the live session of ue_svc_id is. Returns 1 and the replaced location in *old
 * when another session held it (the caller closes that one: the newer session wins), 0 when
 * none did, M5_ENOMEM. */
int router_bind(router_t *r, const char *ue_svc_id, router_loc_t loc, router_loc_t *old);
/* Forgets ue_svc_id if session sid still holds it (a replaced session must not unbind its
 * successor): 0, or M5_ENOENT. */
int router_unbind(router_t *r, const char *ue_svc_id, uint64_t sid);
/* 0 and *out, or M5_ENOENT when no live session is known. */
int router_find(router_t *r, const char *ue_svc_id, router_loc_t *out);
size_t router_count(router_t *r);

/* Posts to worker's inbox (DELIVER, CLOSE) or results mailbox (RESULT). On success the
 * receiver owns m. M5_EFULL (the caller keeps m), M5_ENOENT for an unknown worker. */
int router_post(router_t *r, unsigned worker, router_msg_t *m);

/* Asks the worker holding ue_svc_id's live session to close it (its binding changed or went
 * away). 0 when a CLOSE was posted, M5_ENOENT when there is no live session, M5_EFULL. */
int router_kick(router_t *r, const char *ue_svc_id);

#endif
