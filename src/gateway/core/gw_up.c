/* The uplink (gw_adapter.h: m5gw_uplink, m5gw_report_up): what devices originate, made
 * durable in the spool, then sent to m5s's deliver-ue-message / deliver-report (TS 29.538
 * MSGS_MSGDelivery; docs/gateways.md, "The spool").
 *
 * A message is encoded into its TS 29.538 body at once and waits in `pending`; once per loop
 * iteration (commit_defer) every pending body is inserted and every finished row deleted in
 * one transaction, on the spool's own thread (a job thread: the loop never waits for the
 * disk; one transaction out at a time, the next gathers what came meanwhile), and only after
 * its COMMIT (fsync) does the adapter hear SPOOLED. The
 * durable ones wait in `queue`, oldest first; up to uplink.window of them are out to m5s at
 * once. A 2xx or a refusal for good (4xx but 401, 408, 429) ends a message: its row is deleted
 * at the next commit. Anything else (m5s unreachable, a timeout, 429, 5xx) leaves it queued
 * and holds every sending for a back-off (uplink.retry_min_ms doubling up to
 * uplink.retry_max_ms), after which the oldest is tried first again. m5s drops repeats by
 * (oriAddr, msgId), so a message sent twice (the answer lost, a restart before the delete was
 * committed) is delivered once. */
#include "gateway/core/gw_int.h"

#include "core/err.h"
#include "core/jobthread.h"
#include "core/log.h"
#include "core/str.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

static void list_push(up_list_t *l, up_entry_t *e) {
  e->next = NULL;
  e->prev = l->tail;
  if (l->tail)
    l->tail->next = e;
  else
    l->head = e;
  l->tail = e;
}

static void list_remove(up_list_t *l, up_entry_t *e) {
  if (e->prev)
    e->prev->next = e->next;
  else
    l->head = e->next;
  if (e->next)
    e->next->prev = e->prev;
  else
    l->tail = e->prev;
  e->prev = e->next = NULL;
}

static void entry_free(up_entry_t *e) {
  free(e->body);
  free(e);
}

/* The callback of an entry, unless the adapter is gone. */
static void notify(m5gw_core_t *core, up_entry_t *e, m5gw_up_phase_t phase, const char *reason) {
  if (e->cb && core->adapter_live) e->cb(e->arg, phase, reason);
}

static void on_commit(m5_loop_t *loop, void *arg);

static void schedule_commit(m5gw_core_t *core) {
  m5_loop_defer(core->loop, &core->commit_defer, on_commit, core);
}

/* An entry that is over: forget it; its row goes at the next commit. */
static void finish(m5gw_core_t *core, up_entry_t *e) {
  list_remove(&core->queue, e);
  core->n_msgs--;
  core->bytes -= e->len;
  if (core->n_done == core->cap_done) {
    size_t cap = core->cap_done ? core->cap_done * 2 : 64;
    int64_t *d = realloc(core->done_seqs, cap * sizeof *d);
    if (!d) { /* the row stays: it is re-sent after a restart, and m5s drops the repeat */
      entry_free(e);
      return;
    }
    core->done_seqs = d;
    core->cap_done = cap;
  }
  core->done_seqs[core->n_done++] = e->seq;
  schedule_commit(core);
  entry_free(e);
}

/* ---- the spool's commits, on its own thread ---- */

/* One transaction: the bodies that wait (entries) and the rows that are done (dels). */
typedef struct {
  m5_job_t base; /* first: the job thread hands back &base */
  m5gw_core_t *core;
  up_list_t entries;
  int64_t *dels;
  size_t n_dels;
  int rc;
  char why[200];
} commit_job_t;

/* On the spool's thread (or the main thread once that one is gone). */
static void run_commit(m5_job_t *job, void *ctx) {
  gw_spool_t *sp = ctx;
  commit_job_t *j = (commit_job_t *)job;
  int rc = gw_spool_begin(sp);
  for (up_entry_t *e = j->entries.head; e && rc == 0; e = e->next)
    rc = gw_spool_insert(sp, e->is_report, e->body, e->len, &e->seq);
  for (size_t i = 0; i < j->n_dels && rc == 0; i++)
    rc = gw_spool_delete(sp, j->dels[i]);
  if (rc == 0) rc = gw_spool_commit(sp);
  if (rc != 0) {
    snprintf(j->why, sizeof j->why, "%s", gw_spool_error(sp));
    gw_spool_rollback(sp);
  }
  j->rc = rc;
}

static void flush_check(m5gw_core_t *core);

/* Back on the loop: tell the adapters, queue for sending. */
static void commit_done(commit_job_t *j) {
  m5gw_core_t *core = j->core;
  core->commit_busy = false;
  if (j->rc != 0) {
    M5_LOGE(GW_DOM, "spool: cannot commit: %s; %s refused", j->why,
            j->entries.head ? "new messages" : "nothing");
    for (up_entry_t *e; (e = j->entries.head) != NULL;) {
      list_remove(&j->entries, e);
      core->n_msgs--;
      core->bytes -= e->len;
      core->up_refused++;
      notify(core, e, M5GW_UP_REFUSED, "the gateway's spool cannot be written");
      entry_free(e);
    }
    /* the deletions are tried again with the next commit (if this fails too, the rows are sent
     * again after a restart and m5s drops the repeats) */
    for (size_t i = 0; i < j->n_dels; i++) {
      if (core->n_done == core->cap_done) {
        size_t cap = core->cap_done ? core->cap_done * 2 : 64;
        int64_t *d = realloc(core->done_seqs, cap * sizeof *d);
        if (!d) break;
        core->done_seqs = d;
        core->cap_done = cap;
      }
      core->done_seqs[core->n_done++] = j->dels[i];
    }
  } else {
    /* A callback may call m5gw_uplink again: that lands in pending for the next commit. */
    up_list_t now = j->entries;
    for (up_entry_t *e = now.head, *next; e; e = next) {
      next = e->next;
      list_push(&core->queue, e);
      M5_LOGD(GW_DOM, "spooled %s %s from %s (row %lld)", e->is_report ? "report" : "message",
              e->msg_id, e->ori, (long long)e->seq);
    }
    /* now's entries are the queue's last ones, in order; a callback may end one of them
     * (never: ends come from m5s's answers, later), so walk by count */
    for (up_entry_t *e = now.head; e; e = e == now.tail ? NULL : e->next)
      notify(core, e, M5GW_UP_SPOOLED, NULL);
  }
  free(j->dels);
  free(j);
  if (core->flush_left) core->flush_left--;
  if (core->pending.head || core->n_done) schedule_commit(core);
  flush_check(core);
  gw_up_pump(core);
}

static void on_reply(void *msg, void *arg) {
  (void)arg;
  commit_done(msg);
}

/* The job of what waits now, taken out of core; NULL when out of memory. */
static commit_job_t *job_take(m5gw_core_t *core) {
  commit_job_t *j = calloc(1, sizeof *j);
  if (!j) return NULL;
  j->base.reply = core->spool_replies;
  j->core = core;
  j->entries = core->pending;
  core->pending.head = core->pending.tail = NULL;
  j->dels = core->done_seqs;
  j->n_dels = core->n_done;
  core->done_seqs = NULL;
  core->n_done = core->cap_done = 0;
  return j;
}

static void job_give_back(m5gw_core_t *core, commit_job_t *j) {
  core->pending = j->entries; /* nothing was added meanwhile: same loop iteration */
  core->done_seqs = j->dels;
  core->n_done = core->cap_done = j->n_dels;
  free(j);
}

static void on_commit_retry(m5_loop_t *loop, void *arg) {
  (void)loop;
  m5gw_core_t *core = arg;
  core->commit_timer = 0;
  schedule_commit(core);
}

static void on_commit(m5_loop_t *loop, void *arg) {
  (void)loop;
  m5gw_core_t *core = arg;
  /* refusals decided before the spool saw them (full, bad input): told here, on the loop */
  for (up_entry_t *e; (e = core->refused.head) != NULL;) {
    list_remove(&core->refused, e);
    notify(core, e, M5GW_UP_REFUSED, e->body);
    entry_free(e);
  }
  if (core->commit_busy || (!core->pending.head && !core->n_done)) {
    flush_check(core);
    return;
  }
  commit_job_t *j = job_take(core);
  if (!j || m5_jobthread_submit(core->spool_thread, &j->base) != 0) {
    if (j) job_give_back(core, j);
    if (!core->commit_timer) /* out of memory or the queue full: shortly again */
      core->commit_timer = m5_loop_timer_add(core->loop, 10, on_commit_retry, core);
    return;
  }
  core->commit_busy = true;
}

/* Runs the flush callback once what waited when it was asked for is on disk. */
static void flush_check(m5gw_core_t *core) {
  if (!core->flush_cb) return;
  bool idle = !core->commit_busy && !core->pending.head && !core->n_done;
  if (!idle && core->flush_left) return;
  void (*cb)(void *) = core->flush_cb;
  core->flush_cb = NULL;
  cb(core->flush_arg);
}

/* ---- sending ---- */

static void on_backoff(m5_loop_t *loop, void *arg) {
  (void)loop;
  m5gw_core_t *core = arg;
  core->up_timer = 0;
  core->up_backing_off = false;
  gw_up_pump(core);
}

static void back_off(m5gw_core_t *core, const char *why) {
  core->up_retried++;
  if (core->up_backing_off) return;
  core->up_backoff_ms = gw_backoff_next(core->cfg, core->up_backoff_ms);
  M5_LOGW(GW_DOM, "uplink: %s; %zu waiting in the spool, next attempt in %llu ms", why,
          core->n_msgs, (unsigned long long)core->up_backoff_ms);
  core->up_backing_off = true;
  core->up_timer = m5_loop_timer_add(core->loop, core->up_backoff_ms, on_backoff, core);
}

static void on_sent(void *arg, int status, long http, const uint8_t *body, size_t len) {
  up_entry_t *e = arg;
  m5gw_core_t *core = e->core;
  e->inflight = false;
  core->up_inflight--;
  if (core->stopping) return;
  char why[512];
  if (status != 0) {
    snprintf(why, sizeof why, "m5s unreachable (%s)", m5_strerror(status));
    back_off(core, why);
  } else if (http >= 200 && http < 300) {
    core->up_backoff_ms = 0;
    core->up_accepted++;
    char reason[128] = "";
    json_t *o = json_loadb((const char *)body, len, 0, NULL);
    const char *st = json_string_value(json_object_get(o, "status"));
    const char *fc = json_string_value(json_object_get(o, "failureCause"));
    if (st) snprintf(reason, sizeof reason, "%s%s%s", st, fc ? ": " : "", fc ? fc : "");
    M5_LOGI(GW_DOM, "%s %s from %s accepted by m5s%s%s", e->is_report ? "report" : "message",
            e->msg_id, e->ori, reason[0] ? ": " : "", reason);
    json_decref(o);
    notify(core, e, M5GW_UP_ACCEPTED, reason[0] ? reason : NULL);
    finish(core, e);
  } else if (http == 401) {
    gw_problem_text(body, len, http, why, sizeof why);
    /* a new token, and a pause: a gateway m5s keeps refusing must not spin */
    gw_token_rejected(core);
    char w2[600];
    snprintf(w2, sizeof w2, "m5s refused the token (%s); fetching another", why);
    back_off(core, w2);
  } else if (http >= 400 && http < 500 && http != 408 && http != 429) {
    gw_problem_text(body, len, http, why, sizeof why);
    core->up_refused++;
    M5_LOGW(GW_DOM, "%s %s from %s refused by m5s: %ld %s", e->is_report ? "report" : "message",
            e->msg_id, e->ori, http, why);
    notify(core, e, M5GW_UP_REFUSED, why);
    finish(core, e);
  } else {
    char detail[200];
    gw_problem_text(body, len, http, detail, sizeof detail);
    snprintf(why, sizeof why, "m5s answered %ld (%s)", http, detail);
    back_off(core, why);
  }
  gw_up_pump(core);
}

void gw_up_pump(m5gw_core_t *core) {
  if (core->stopping || core->up_backing_off || !gw_token(core)) return;
  m5_http_req_opts_t o = {.method = "POST", .bearer_token = gw_token(core)};
  for (up_entry_t *e = core->queue.head; e && core->up_inflight < (size_t)core->cfg->up_window;
       e = e->next) {
    if (e->inflight) continue;
    int rc = m5_http_client_request(core->http, e->is_report ? core->url_report : core->url_msg, &o,
                                    e->body, e->len, on_sent, e);
    if (rc != 0) {
      back_off(core, m5_strerror(rc));
      return;
    }
    e->inflight = true;
    core->up_inflight++;
    core->up_sent++;
  }
}

/* ---- entry from the adapter ---- */

static up_entry_t *entry_new(m5gw_core_t *core, bool is_report, char *body, size_t len,
                             const char *ori, const char *msg_id, m5gw_up_fn cb, void *arg) {
  up_entry_t *e = calloc(1, sizeof *e);
  if (!e) return NULL;
  e->core = core;
  e->is_report = is_report;
  e->body = body;
  e->len = len;
  m5_str_copy(e->ori, sizeof e->ori, ori ? ori : "");
  m5_str_copy(e->msg_id, sizeof e->msg_id, msg_id ? msg_id : "");
  e->cb = cb;
  e->arg = arg;
  return e;
}

/* A refusal told through the callback on the loop (never inside the call): the reason rides
 * in body. */
static int refuse(m5gw_core_t *core, m5gw_up_fn cb, void *arg, const char *reason) {
  core->up_refused++;
  if (!cb) return M5_EINVAL;
  char *r = strdup(reason);
  up_entry_t *e = r ? entry_new(core, false, r, 0, "", "", cb, arg) : NULL;
  if (!e) {
    free(r);
    return M5_ENOMEM;
  }
  list_push(&core->refused, e);
  schedule_commit(core);
  return 0;
}

static bool addr_ok(const char *type, const char *addr) {
  return type && addr && type[0] && strlen(type) < sizeof(((m5_msg_addr_t *)0)->type) &&
         m5_msg_svc_id_valid(addr);
}

/* Room for one more body of len bytes. */
static bool room(const m5gw_core_t *core, size_t len) {
  return core->n_msgs < (size_t)core->cfg->spool_max_msgs &&
         core->bytes + len <= (size_t)core->cfg->spool_max_bytes;
}

static int enqueue(m5gw_core_t *core, bool is_report, char *body, size_t len, const char *ori,
                   const char *msg_id, m5gw_up_fn cb, void *arg) {
  up_entry_t *e = entry_new(core, is_report, body, len, ori, msg_id, cb, arg);
  if (!e) {
    free(body);
    return M5_ENOMEM;
  }
  list_push(&core->pending, e);
  core->n_msgs++;
  core->bytes += len;
  schedule_commit(core);
  return 0;
}

int m5gw_uplink(m5gw_core_t *core, const m5gw_msg_t *msg, m5gw_up_fn cb, void *arg) {
  if (!core || !msg) return M5_EINVAL;
  if (core->stopping) return refuse(core, cb, arg, "the gateway is stopping");
  if (!msg->ori_type || strcmp(msg->ori_type, "UE") != 0 || !addr_ok("UE", msg->ori_addr))
    return refuse(core, cb, arg, "oriAddr: a device's UE Service ID (addrType UE) is required");
  if (!addr_ok(msg->dest_type, msg->dest_addr))
    return refuse(core, cb, arg, "destAddr: addrType and a valid addr are required");
  if (!msg->msg_id || !m5_msg_id_valid(msg->msg_id))
    return refuse(core, cb, arg, "msgId: 1-64 of A-Z a-z 0-9 . _ : - required");
  if (msg->app_id && (!msg->app_id[0] || strlen(msg->app_id) > M5_MSG_ADDR_MAX))
    return refuse(core, cb, arg, "appId: 1-128 characters");
  if (msg->payload_len > (size_t)core->cfg->up_max_payload)
    return refuse(core, cb, arg, "payload: larger than uplink.max_payload");
  m5_msg_t m;
  memset(&m, 0, sizeof m);
  m.type = M5_MSG_MSG;
  m5_str_copy(m.ori.type, sizeof m.ori.type, "UE");
  m5_str_copy(m.ori.addr, sizeof m.ori.addr, msg->ori_addr);
  m5_str_copy(m.dest.type, sizeof m.dest.type, msg->dest_type);
  m5_str_copy(m.dest.addr, sizeof m.dest.addr, msg->dest_addr);
  m5_str_copy(m.msg_id, sizeof m.msg_id, msg->msg_id);
  if (msg->app_id) m5_str_copy(m.app_id, sizeof m.app_id, msg->app_id);
  m.payload = (uint8_t *)msg->payload;
  m.payload_len = msg->payload_len;
  m.deliv_st_req = msg->report_requested;
  m.prio = M5_PRIO_MIDDLE;
  m.sto_fwd = true; /* m5s keeps it for a recipient that is away, as for a UE's MSG */
  char *body = NULL;
  size_t len = 0;
  if (m5_msg_encode_as(&m, &body, &len) != 0 || !body) {
    free(body);
    return refuse(core, cb, arg, "the message cannot be encoded (see the gateway's log)");
  }
  if (!room(core, len)) {
    free(body);
    M5_LOGW(GW_DOM, "spool full (%zu messages, %zu bytes): message %s from %s refused",
            core->n_msgs, core->bytes, msg->msg_id, msg->ori_addr);
    return refuse(core, cb, arg, "the gateway's spool is full");
  }
  return enqueue(core, false, body, len, msg->ori_addr, msg->msg_id, cb, arg);
}

/* DeliveryStatusReport's delivSt: the wire values, and the adapter's plain words for them. */
static const char *deliv_st_wire(const char *s) {
  if (!s) return NULL;
  if (!strcmp(s, "REPT_DELY_SUCCESS") || !strcmp(s, "DELIVERED") || !strcmp(s, "SUCCESS"))
    return "REPT_DELY_SUCCESS";
  if (!strcmp(s, "REPT_DELY_FAILED") || !strcmp(s, "FAILED") || !strcmp(s, "UNDELIVERABLE") ||
      !strcmp(s, "EXPIRED"))
    return "REPT_DELY_FAILED";
  return NULL;
}

int m5gw_report_up(m5gw_core_t *core, const m5gw_report_t *r) {
  if (!core || !r || core->stopping) return M5_EINVAL;
  const char *st = deliv_st_wire(r->deliv_st);
  if (!addr_ok(r->ori_type, r->ori_addr) || !addr_ok(r->dest_type, r->dest_addr) || !st ||
      !r->msg_id || !m5_msg_id_valid(r->msg_id))
    return M5_EINVAL;
  /* On the wire a DeliveryStatusReport comes from its reporter: oriAddr is the device (the
   * reported message's recipient), destAddr the message's sender, as in a UE's IMDN; the
   * adapter's m5gw_report_t names the message's sender and recipient (gw_adapter.h). */
  m5_msg_t m;
  memset(&m, 0, sizeof m);
  m.type = M5_MSG_IMDN;
  m5_str_copy(m.ori.type, sizeof m.ori.type, r->dest_type);
  m5_str_copy(m.ori.addr, sizeof m.ori.addr, r->dest_addr);
  m5_str_copy(m.dest.type, sizeof m.dest.type, r->ori_type);
  m5_str_copy(m.dest.addr, sizeof m.dest.addr, r->ori_addr);
  m5_str_copy(m.msg_id, sizeof m.msg_id, r->msg_id);
  m5_str_copy(m.deliv_st, sizeof m.deliv_st, st);
  if (r->failure_cause) m5_str_copy(m.failure_cause, sizeof m.failure_cause, r->failure_cause);
  char *body = NULL;
  size_t len = 0;
  if (m5_msg_encode_as(&m, &body, &len) != 0 || !body) {
    free(body);
    return M5_EINVAL;
  }
  if (!room(core, len)) {
    free(body);
    M5_LOGW(GW_DOM, "spool full: report on %s refused", r->msg_id);
    return M5_EFULL;
  }
  return enqueue(core, true, body, len, r->dest_addr, r->msg_id, NULL, NULL); /* from the device */
}

/* ---- restored messages (m5gw_uplink_restored) ---- */

/* What identifies the device side's copy of a message restored from the spool at start. */
typedef struct up_restored {
  struct up_restored *next;
  char ori[M5_MSG_ADDR_MAX + 1];
  m5_msg_addr_t dest;
  char app_id[M5_MSG_ADDR_MAX + 1];
  char msg_id[M5_MSG_ID_MAX + 1];
  bool report;
  uint8_t *payload;
  size_t payload_len;
} up_restored_t;

static void restored_add(m5gw_core_t *core, const char *body, size_t len) {
  m5_msg_t m;
  memset(&m, 0, sizeof m);
  char diag[128];
  if (m5_msg_parse_as((const uint8_t *)body, len, M5_MSG_MSG, &m, diag, sizeof diag) != 0)
    return; /* sent as it is; only its copy cannot be recognised */
  up_restored_t *r = calloc(1, sizeof *r);
  if (r && m.payload_len && !(r->payload = malloc(m.payload_len))) {
    free(r);
    r = NULL;
  }
  if (r) {
    m5_str_copy(r->ori, sizeof r->ori, m.ori.addr);
    r->dest = m.dest;
    m5_str_copy(r->app_id, sizeof r->app_id, m.app_id);
    m5_str_copy(r->msg_id, sizeof r->msg_id, m.msg_id);
    r->report = m.deliv_st_req;
    if (m.payload_len) memcpy(r->payload, m.payload, m.payload_len);
    r->payload_len = m.payload_len;
    if (core->restored_tail)
      core->restored_tail->next = r;
    else
      core->restored = r;
    core->restored_tail = r;
  }
  m5_msg_free(&m);
}

int m5gw_uplink_restored(m5gw_core_t *core, const m5gw_msg_t *msg, char *msg_id, size_t cap) {
  if (!core || !msg || !msg->ori_addr || !msg->dest_type || !msg->dest_addr || !msg_id)
    return 0;
  const char *app = msg->app_id ? msg->app_id : "";
  up_restored_t *prev = NULL;
  for (up_restored_t *r = core->restored; r; prev = r, r = r->next) {
    if (r->report != msg->report_requested || r->payload_len != msg->payload_len ||
        strcmp(r->ori, msg->ori_addr) || strcmp(r->dest.type, msg->dest_type) ||
        strcmp(r->dest.addr, msg->dest_addr) || strcmp(r->app_id, app) ||
        (r->payload_len && memcmp(r->payload, msg->payload, r->payload_len)))
      continue;
    size_t n = strlen(r->msg_id);
    if (n >= cap) return 0;
    memcpy(msg_id, r->msg_id, n + 1);
    if (prev)
      prev->next = r->next;
    else
      core->restored = r->next;
    if (core->restored_tail == r) core->restored_tail = prev;
    free(r->payload);
    free(r);
    M5_LOGI(GW_DOM, "message %s from %s: sent again by the device side after the restart; "
            "the same msgId, so that m5s delivers it once", msg_id, msg->ori_addr);
    return 1;
  }
  return 0;
}

static void restored_free(m5gw_core_t *core) {
  for (up_restored_t *r = core->restored, *next; r; r = next) {
    next = r->next;
    free(r->payload);
    free(r);
  }
  core->restored = core->restored_tail = NULL;
}

/* ---- start and stop ---- */

static int load_one(void *arg, int64_t seq, bool is_report, const char *body, size_t len) {
  m5gw_core_t *core = arg;
  char *copy = malloc(len + 1);
  up_entry_t *e = copy ? entry_new(core, is_report, copy, len, "", "", NULL, NULL) : NULL;
  if (!e) {
    free(copy);
    return M5_ENOMEM;
  }
  memcpy(copy, body, len);
  copy[len] = '\0';
  e->seq = seq;
  json_t *o = json_loadb(body, len, 0, NULL);
  const char *ori = json_string_value(json_object_get(json_object_get(o, "oriAddr"), "addr"));
  const char *id = json_string_value(json_object_get(o, "msgId"));
  m5_str_copy(e->ori, sizeof e->ori, ori ? ori : "?");
  m5_str_copy(e->msg_id, sizeof e->msg_id, id ? id : "?");
  json_decref(o);
  list_push(&core->queue, e);
  core->n_msgs++;
  core->bytes += len;
  if (!is_report) restored_add(core, body, len);
  return 0;
}

int gw_up_start(m5gw_core_t *core, char *err, size_t errlen) {
  core->spool = gw_spool_open(core->cfg->spool_path, err, errlen);
  if (!core->spool) return M5_EIO;
  if (gw_spool_load(core->spool, load_one, core) != 0) {
    snprintf(err, errlen, "spool %s: cannot read: %s", core->cfg->spool_path,
             gw_spool_error(core->spool));
    return M5_EIO;
  }
  if (core->n_msgs)
    M5_LOGI(GW_DOM, "spool: %zu messages and reports from before the restart, to be sent again",
            core->n_msgs);
  /* From here on the connection is the spool thread's: the loop never waits for the disk. */
  core->spool_replies = m5_mailbox_new(core->loop, 4, on_reply, core);
  core->spool_thread = core->spool_replies ? m5_jobthread_new(run_commit, core->spool) : NULL;
  if (!core->spool_thread || m5_jobthread_start(core->spool_thread, 4) != 0) {
    snprintf(err, errlen, "spool: cannot start its thread");
    return M5_EIO;
  }
  return 0;
}

void gw_up_when_flushed(m5gw_core_t *core, void (*cb)(void *arg), void *arg) {
  core->flush_cb = cb;
  core->flush_arg = arg;
  /* at most the commit under way and one more: new messages do not hold a stop forever */
  core->flush_left = core->commit_busy ? 2 : 1;
  schedule_commit(core);
}

/* The commit that was out when the thread stopped, if any: it came back as a reply. */
static void drop_reply(void *msg) {
  commit_done(msg);
}

void gw_up_stop(m5gw_core_t *core) {
  m5_loop_defer_cancel(core->loop, &core->commit_defer);
  if (core->up_timer) m5_loop_timer_cancel(core->loop, core->up_timer);
  if (core->commit_timer) m5_loop_timer_cancel(core->loop, core->commit_timer);
  core->up_timer = core->commit_timer = 0;
  core->flush_cb = NULL;
  /* the loop has stopped: the job out finishes, then what still waits is committed here */
  m5_jobthread_free(core->spool_thread);
  core->spool_thread = NULL;
  if (core->spool_replies) m5_mailbox_free(core->spool_replies, drop_reply);
  core->spool_replies = NULL;
  m5_loop_defer_cancel(core->loop, &core->commit_defer);
  if (core->spool && (core->pending.head || core->n_done)) {
    commit_job_t *j = job_take(core);
    if (j) {
      run_commit(&j->base, core->spool);
      core->commit_busy = true;
      commit_done(j);
      m5_loop_defer_cancel(core->loop, &core->commit_defer);
    }
  }
  if (core->spool) M5_LOGI(GW_DOM, "stopped; %zu left in the spool", core->n_msgs);
  up_list_t *lists[] = {&core->pending, &core->queue, &core->refused};
  for (size_t i = 0; i < 3; i++)
    for (up_entry_t *e; (e = lists[i]->head) != NULL;) {
      list_remove(lists[i], e);
      entry_free(e);
    }
  free(core->done_seqs);
  core->done_seqs = NULL;
  restored_free(core);
  gw_spool_close(core->spool);
  core->spool = NULL;
}
