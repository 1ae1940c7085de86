/* REBIND and GROUP_SWEEP of the JetStream message store (store.h; issue 13), per node and
 * partial (docs/store.md "The JetStream backend"): m5s runs both at start-up. */
#include "js_int.h"

#include "core/err.h"

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

/* rcpt's queued deliveries of a generation older than gen fail (RECIPIENT_REBOUND): this
 * node's from its index, other nodes' where they are, so one node's REBIND covers the cluster.
 * Not done here yet: dropping rcpt's dedup entries as an originator, tickets; the
 * generation is not remembered (a repeat finds nothing older left). */
void js_rebind(js_store_t *s, m5_store_job_t *job) {
  if (strcmp(job->rcpt.type, "UE") || !job->gen) {
    job->status = M5_EINVAL;
    return;
  }
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
  }
  free(causes);
  free(l.v);
  js_topics_rebind(s, job); /* its topic subscriptions of an older generation */
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
