/* m5_store front (store.h): defaults, backend choice, job helpers. */
#include "store_int.h"

#include "core/err.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void m5_store_opts_init(m5_store_opts_t *o) {
  memset(o, 0, sizeof *o);
  o->backend = M5_STORE_BACKEND_SQLITE;
  o->queue_cap = 4096;
  o->max_per_recipient = 1000;
  o->max_queued = 1000000;
  o->dedup_window_ms = 10 * 60 * 1000;
  o->dedup_buckets = 10;
  o->dedup_max_per_sender = 10000;
  o->max_msgs_per_originator = 10000;
  o->max_bytes_per_originator = 64u * 1024 * 1024;
  o->max_deliveries_per_originator = 250000;
  o->max_reports_per_recipient = 1000;
  o->report_ttl_s = 86400;
  o->report_window_ms = 2 * 86400 * 1000;
  o->max_tickets_per_originator = 10000;
}

m5_store_t *m5_store_open(const m5_store_opts_t *o, char *err, size_t errlen) {
  switch (o->backend) {
  case M5_STORE_BACKEND_SQLITE:
    return m5_store_sqlite_open(o, err, errlen);
  case M5_STORE_BACKEND_JETSTREAM:
    return m5_store_js_open(o, err, errlen);
  }
  snprintf(err, errlen, "store: unknown backend %d", (int)o->backend);
  return NULL;
}

int m5_store_submit(m5_store_t *s, m5_store_job_t *job) {
  if ((unsigned)job->op > (unsigned)M5_STORE_GROUP_SWEEP) return M5_EINVAL; /* the last op */
  return s->ops->submit(s, job);
}

void m5_store_stats(m5_store_t *s, m5_store_stats_t *out) {
  s->ops->stats(s, out);
}

void m5_store_close(m5_store_t *s) {
  if (s) s->ops->close(s);
}

void m5_store_job_clear(m5_store_job_t *job) {
  for (size_t i = 0; i < job->n_items; i++)
    free(job->items[i].msg.payload);
  free(job->items);
  job->items = NULL;
  job->n_items = 0;
  free(job->subs);
  job->subs = NULL;
  job->n_subs = 0;
}

int m5_store_report_of(const m5_store_delivery_t *d, int64_t expr_time, m5_store_delivery_t *out) {
  memset(out, 0, sizeof *out);
  char text[sizeof d->failure_cause + 32];
  int n = snprintf(text, sizeof text, "REPT_DELY_FAILED %s",
                   d->failure_cause[0] ? d->failure_cause : M5_CAUSE_EXPIRED);
  if (n < 0) return M5_EINVAL;
  if (!(out->msg.payload = malloc((size_t)n + 1))) return M5_ENOMEM;
  memcpy(out->msg.payload, text, (size_t)n + 1);
  out->msg.payload_len = (size_t)n;
  out->id = d->report_id;
  out->rcpt = d->msg.ori;
  out->rcpt_gen = d->report_gen; /* a UE originator: the generation that sent d's message */
  out->state = M5_DELIV_PENDING;
  m5_store_msg_t *m = &out->msg;
  m->ori = d->rcpt;
  m->dest = d->msg.ori;
  snprintf(m->msg_id, sizeof m->msg_id, "%s", d->msg.msg_id);
  snprintf(m->app_id, sizeof m->app_id, "%s", M5_STORE_REPORT_APP);
  m->prio = d->msg.prio;
  m->sto_fwd = true;
  m->expr_time = expr_time;
  return 0;
}

const char *m5_store_outcome_name(m5_store_outcome_t o) {
  switch (o) {
  case M5_STORE_ACCEPTED:
    return "ACCEPTED";
  case M5_STORE_DUPLICATE:
    return "DUPLICATE";
  case M5_STORE_QUEUE_FULL:
    return "QUEUE_FULL";
  case M5_STORE_STORE_FULL:
    return "STORE_FULL";
  case M5_STORE_ORIGINATOR_QUOTA:
    return "ORIGINATOR_QUOTA";
  case M5_STORE_SUBS_FULL:
    return "SUBS_FULL";
  case M5_STORE_TOPIC_FULL:
    return "TOPIC_FULL";
  }
  return "?";
}

const char *m5_deliv_state_name(m5_deliv_state_t s) {
  switch (s) {
  case M5_DELIV_PENDING:
    return "PENDING";
  case M5_DELIV_DELIVERED:
    return "DELIVERED";
  case M5_DELIV_FAILED:
    return "FAILED";
  case M5_DELIV_EXPIRED:
    return "EXPIRED";
  }
  return "?";
}
