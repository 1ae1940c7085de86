/* REBIND and GROUP_SWEEP of the JetStream message store (store.h; issue 13; docs/store.md "The
 * JetStream backend"): m5s runs both at start-up.
 *
 * REBIND covers the cluster from any node: the UE's deliveries of older generations fail where
 * they are (this node's from its index, other nodes' read from their subjects: the delete
 * decides who concluded), its dedup entries and report tickets as an originator go (purges of
 * the KV keys behind its own token, d.<hex HMAC("UE:<id>")>.> and t.<...>.>), and the
 * generation is remembered in KV P_gens (js_quota.c), which every node copies: an accept from
 * an older generation is then M5_EPERM. The shared generation is written last, so a REBIND cut
 * short (a crash, the cluster away) is done again by its repeat; a job bringing a newer
 * generation than the node's copy reads the shared one and runs the REBIND itself when that is
 * older (the accept's catch-up, as SQLite's). GROUP_SWEEP looks at this node's index. */
#include "js_int.h"

#include "core/err.h"
#include "core/log.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Fails (cause, with the reports asked for, due at once) the listed deliveries; counts them. */
static uint64_t fail_all(js_store_t *s, m5_store_job_t *job, js_elist_t *l,
                         const char *const *causes) {
  uint64_t n = 0;
  int64_t keep = job->next_attempt_ms;
  job->next_attempt_ms = js_now_ms(s); /* their reports: due at once */
  for (size_t i = 0; i < l->n; i++) {
    m5_store_delivery_t d;
    int rc = js_conclude(s, job, l->v[i], M5_DELIV_FAILED, causes[i], &d);
    if (rc == M5_ENOENT) continue;
    if (rc) {
      job->status = rc;
      break;
    }
    n++;
    js_stat_add(s, &s->st.failed, 1);
  }
  job->next_attempt_ms = keep;
  return n;
}

/* rcpt's deliveries on other nodes' subjects of a generation older than gen fail where they
 * are (any node may conclude a delivery: the delete decides; one in flight there is then
 * M5_ENOENT to its node's MARK). Nothing moves: the current generation's stay with the node
 * that holds (or will hold) the session. Adds to *n. */
static void rebind_others(js_store_t *s, m5_store_job_t *job, uint64_t *n) {
  int64_t keep = job->next_attempt_ms;
  job->next_attempt_ms = js_now_ms(s); /* their reports: due at once */
  for (int f = 0; f < 2 && !job->status; f++) {
    js_other_t *o = NULL;
    size_t k = js_read_others(s, &job->rcpt, f, &o);
    for (size_t i = 0; i < k; i++) {
      if (!job->status && o[i].rcpt_gen && o[i].rcpt_gen < job->gen) {
        m5_store_delivery_t d;
        int rc = js_conclude_msg(s, job, f, &o[i].m, M5_DELIV_FAILED, M5_STORE_CAUSE_REBOUND, &d);
        if (rc == M5_OK) {
          (*n)++;
          js_stat_add(s, &s->st.failed, 1);
        } else if (rc != M5_ENOENT) {
          job->status = rc;
        }
      }
      m5_js_msg_free(&o[i].m);
    }
    free(o);
  }
  job->next_attempt_ms = keep;
}

/* Purges the KV keys behind prefix (".>" added) in kv: M5_OK or the cluster's error. */
static int purge_prefix(m5_js_kv_t *kv, const char *prefix) {
  char filter[80], err[256];
  snprintf(filter, sizeof filter, "%s.>", prefix);
  int rc = m5_js_kv_purge(kv, filter, 0, err, sizeof err);
  if (rc) M5_LOGW("store", "jetstream: rebind: %s", err);
  return rc;
}

static void fail_older(js_store_t *s, m5_store_job_t *job);

/* REBIND of job->rcpt.addr to job->gen (job: the REBIND, or one made for a catch-up). */
static int rebind_run(js_store_t *s, m5_store_job_t *job) {
  const char *ue = job->rcpt.addr;
  uint64_t gen = job->gen, known = js_gen_known(s, ue), stored = 0;
  job->rebind_failed = 0;
  if (known >= gen) return M5_OK; /* done already (a repeat at start-up) */
  int rc = js_gen_read(s, ue, &stored, NULL);
  if (rc) return js_fail_status(rc);
  if (stored >= gen) return M5_OK; /* another node ran it */
  /* this node's copy first, so that the failures below write no report to the old subscriber
   * of this very ID (js_failed_delivery); put back if the REBIND does not finish */
  js_gen_local(s, ue, gen);
  fail_older(s, job);
  js_topics_rebind(s, job); /* its topic subscriptions of an older generation (P_topics) */
  char typed[M5_MSG_ADDR_MAX + 8], prefix[67];
  snprintf(typed, sizeof typed, "UE:%s", ue);
  if (!job->status && stored) { /* (an ID bound for the first time has no window to drop) */
    js_dedup_ori_prefix(typed, prefix);
    if ((rc = purge_prefix(s->dedup, prefix)))
      job->status = js_fail_status(rc);
    else
      js_quota_forget_dedup(s, typed);
  }
  if (!job->status) {
    js_ticket_ori_prefix(&job->rcpt, prefix);
    if ((rc = purge_prefix(s->tickets, prefix)))
      job->status = js_fail_status(rc);
    else
      js_tickets_counted(s, typed, 0);
  }
  if (!job->status && (rc = js_gen_write(s, ue, gen))) job->status = js_fail_status(rc);
  if (job->status) {
    js_gen_forget(s, ue, stored > known ? stored : known);
    return job->status;
  }
  if (stored || job->rebind_failed)
    M5_LOGI("store",
            "jetstream: UE %s re-bound (generation %" PRIu64 "): %" PRIu64
            " queued deliveries failed",
            ue, gen, job->rebind_failed);
  return M5_OK;
}

int js_rebind_to(js_store_t *s, const char *ue, uint64_t gen, uint64_t *failed) {
  m5_store_job_t *j = calloc(1, sizeof *j);
  if (!j) return M5_ENOMEM;
  j->op = M5_STORE_REBIND;
  snprintf(j->rcpt.type, sizeof j->rcpt.type, "UE");
  snprintf(j->rcpt.addr, sizeof j->rcpt.addr, "%s", ue);
  j->gen = gen;
  int rc = rebind_run(s, j);
  *failed = j->rebind_failed;
  free(j);
  return rc;
}

void js_rebind(js_store_t *s, m5_store_job_t *job) {
  if (strcmp(job->rcpt.type, "UE") || !job->rcpt.addr[0] || !job->gen) {
    job->status = M5_EINVAL;
    return;
  }
  job->status = rebind_run(s, job);
}

bool js_reschedule_rebound(js_store_t *s, m5_store_job_t *job, js_entry_t *e) {
  js_rec_t r;
  if (js_rec_decode(e->rec, e->rec_len, &r) || strcmp(r.d.rcpt.type, "UE") ||
      r.d.rcpt_gen >= js_gen_known(s, r.d.rcpt.addr))
    return false;
  int64_t keep = job->next_attempt_ms;
  job->next_attempt_ms = js_now_ms(s); /* its report: due at once */
  m5_store_delivery_t d;
  int rc = js_conclude(s, job, e, M5_DELIV_FAILED, M5_STORE_CAUSE_REBOUND, &d);
  job->next_attempt_ms = keep;
  if (rc == M5_OK) js_stat_add(s, &s->st.failed, 1);
  if (rc && rc != M5_ENOENT) job->status = rc;
  return true;
}

/* rcpt's queued deliveries of a generation older than gen fail (RECIPIENT_REBOUND): this
 * node's from its index, other nodes' where they are, so one node's REBIND covers the cluster
 * (into job->rebind_failed, job->status). */
static void fail_older(js_store_t *s, m5_store_job_t *job) {
  uint64_t others = 0;
  rebind_others(s, job, &others);
  if (job->status) return;
  js_drain_inbox(s);
  js_rcpt_t *rc = js_index_rcpt(s, &job->rcpt);
  js_elist_t l = {0};
  for (js_entry_t *e = rc ? rc->head : NULL; e; e = e->next) {
    js_rec_t r;
    if (js_rec_decode(e->rec, e->rec_len, &r) == 0 && r.d.rcpt_gen && r.d.rcpt_gen < job->gen &&
        !e->in_flight && js_el_push(&l, e)) {
      job->status = M5_ENOMEM;
      break;
    }
  }
  const char **causes = l.n ? malloc(l.n * sizeof *causes) : NULL;
  if (l.n && !causes) job->status = M5_ENOMEM;
  if (!job->status) {
    for (size_t i = 0; i < l.n; i++)
      causes[i] = M5_STORE_CAUSE_REBOUND;
    job->rebind_failed = others + fail_all(s, job, &l, causes);
  } else {
    job->rebind_failed = others;
  }
  free(causes);
  free(l.v);
}

typedef struct {
  m5_store_job_t *job;
  js_elist_t l;
  const char **causes;
  size_t cap;
  int rc;
} sweep_t;

static void sweep_one(const void *key, size_t klen, void *val, void *arg) {
  (void)key;
  (void)klen;
  sweep_t *sw = arg;
  js_entry_t *e = val;
  js_rec_t r;
  const m5_store_job_t *j = sw->job;
  if (sw->rc || e->in_flight || js_rec_decode(e->rec, e->rec_len, &r) || !r.d.msg.group_gen) return;
  if (j->msg.dest.type[0] &&
      (strcmp(j->msg.dest.type, r.d.msg.dest.type) || strcmp(j->msg.dest.addr, r.d.msg.dest.addr)))
    return;
  if (j->rcpt.type[0] &&
      (strcmp(j->rcpt.type, r.d.rcpt.type) || strcmp(j->rcpt.addr, r.d.rcpt.addr)))
    return;
  const char *cause =
      j->group_check(j->group_check_arg, &r.d.msg.dest, &r.d.rcpt, r.d.msg.group_gen);
  if (!cause) return;
  if (sw->l.n == sw->cap) {
    size_t cap = sw->cap ? 2 * sw->cap : 64;
    const char **nc = realloc(sw->causes, cap * sizeof *nc);
    if (!nc) {
      sw->rc = M5_ENOMEM;
      return;
    }
    sw->causes = nc;
    sw->cap = cap;
  }
  if (js_el_push(&sw->l, e)) {
    sw->rc = M5_ENOMEM;
    return;
  }
  sw->causes[sw->l.n - 1] = cause;
}

/* This node's queued group and broadcast deliveries that group_check names a cause for fail,
 * in one pass over the index (each node sweeps its own; the cursor is not needed: more is
 * never set). */
void js_group_sweep(js_store_t *s, m5_store_job_t *job) {
  if (!job->group_check || (job->rcpt.type[0] && !job->msg.dest.type[0])) {
    job->status = M5_EINVAL;
    return;
  }
  sweep_t sw = {.job = job};
  m5_hmap_foreach(s->by_id, sweep_one, &sw);
  if (sw.rc)
    job->status = sw.rc;
  else
    job->group_failed = fail_all(s, job, &sw.l, sw.causes);
  free(sw.causes);
  free(sw.l.v);
  job->more = false;
}
