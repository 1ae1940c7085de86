/* Report tickets of the JetStream message store (store.h ACCEPT ticket_put / ticket_check;
 * docs/delivery.md "Who may report on what"; issue 13), in KV bucket P_tickets (TTL
 * report_window_ms). Key t.<hash(originator, msgId, reporter)> (typed keys "UE:ue1"), value
 * "<ori_gen> <rep_gen>", "used" once a report was stored on it. Not kept here: the
 * per-originator bound (max_tickets_per_originator), the drop at a failure or a REBIND (a
 * ticket ends with its TTL). */
#include "js_int.h"

#include "core/err.h"
#include "core/log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void ticket_key(const m5_msg_addr_t *ori, const char *msg_id, const m5_msg_addr_t *rep,
                       char out[70]) {
  char buf[3 * (M5_MSG_ADDR_MAX + 20)];
  int n = snprintf(buf, sizeof buf, "%s:%s\n%s\n%s:%s", ori->type, ori->addr, msg_id, rep->type,
                   rep->addr);
  char h[65];
  js_hash_hex(buf, n > 0 ? (size_t)n : 0, h);
  snprintf(out, 70, "t.%s", h);
}

static bool reportable(const m5_msg_addr_t *a) {
  return !strcmp(a->type, "UE") || !strcmp(a->type, "AS");
}

/* One ticket per stored recipient, published together (KV puts) and awaited. */
void js_tickets_put(js_store_t *s, m5_store_job_t *job) {
  const m5_store_msg_t *m = &job->msg;
  if (!job->ticket_put || !m->deliv_st_req || !reportable(&m->ori) || !job->n_rcpts) return;
  if (js_pub_begin(s, job->n_rcpts)) return;
  for (size_t i = 0; i < job->n_rcpts; i++) {
    const m5_store_rcpt_t *r = &job->rcpts[i];
    if (!r->id) {
      pthread_mutex_lock(&s->pub_mu);
      s->pubs[i].done = true;
      s->n_done++;
      pthread_mutex_unlock(&s->pub_mu);
      continue;
    }
    char key[70], subj[JS_SUBJ_MAX], val[48], mid[128];
    ticket_key(&m->ori, m->msg_id, &r->addr, key);
    snprintf(subj, sizeof subj, "$KV.%s.%s", s->tickets_bucket, key);
    int vl = snprintf(val, sizeof val, "%llu %llu", (unsigned long long)m->ori_gen,
                      (unsigned long long)r->gen);
    snprintf(mid, sizeof mid, "tk/%s/%zu", key + 2, i);
    js_pub(s, i, subj, val, (size_t)vl, mid);
  }
  js_pub_wait(s);
  for (size_t i = 0; i < job->n_rcpts; i++)
    if (s->pubs[i].msg_id && s->pubs[i].status != M5_OK)
      M5_LOGW("store", "jetstream: report ticket of %s for %s not stored", m->msg_id,
              job->rcpts[i].addr.addr);
  js_pub_end(s);
}

/* ticket_check: the report from msg.ori to rcpts[0] about msgId is stored only on the ticket
 * naming msg.ori, which it uses up (compare-and-set to "used"); else job->discarded. */
int js_ticket_check(js_store_t *s, m5_store_job_t *job, js_ticket_use_t *u) {
  memset(u, 0, sizeof *u);
  if (job->n_rcpts != 1) return M5_EINVAL;
  m5_store_rcpt_t *r = &job->rcpts[0];
  const m5_store_msg_t *m = &job->msg;
  ticket_key(&r->addr, m->msg_id, &m->ori, u->key);
  uint8_t *v = NULL;
  size_t vl = 0;
  uint64_t rev = 0;
  char err[256];
  int rc = m5_js_kv_get(s->tickets, u->key, &v, &vl, &rev, err, sizeof err);
  if (rc == M5_ENOENT) {
    job->discarded = true;
    return M5_OK;
  }
  if (rc) {
    M5_LOGW("store", "jetstream: ticket get: %s", err);
    return M5_EIO;
  }
  unsigned long long gen = 0, rep_gen = 0;
  bool ok = vl < sizeof u->val && sscanf((const char *)v, "%llu %llu", &gen, &rep_gen) == 2;
  if (ok) snprintf(u->val, sizeof u->val, "%s", (const char *)v);
  free(v);
  /* used already; a UE reporter of a newer generation than the one the message was stored
   * for; a UE originator re-bound since it sent */
  if (!ok || (!strcmp(m->ori.type, "UE") && rep_gen < m->ori_gen) ||
      (!strcmp(r->addr.type, "UE") && gen < r->gen)) {
    job->discarded = true;
    return M5_OK;
  }
  if (!strcmp(r->addr.type, "UE")) r->gen = gen;
  rc = m5_js_kv_update(s->tickets, u->key, "used", 4, rev, &u->used_rev, err, sizeof err);
  if (rc == M5_EAGAIN) { /* a concurrent report used it */
    job->discarded = true;
    return M5_OK;
  }
  if (rc) {
    M5_LOGW("store", "jetstream: ticket update: %s", err);
    return M5_EIO;
  }
  u->hit = true;
  return M5_OK;
}

/* A report refused after it used its ticket: the ticket is given back. */
void js_ticket_restore(js_store_t *s, const js_ticket_use_t *u) {
  if (!u->hit) return;
  char err[256];
  if (m5_js_kv_update(s->tickets, u->key, u->val, strlen(u->val), u->used_rev, NULL, err,
                      sizeof err))
    M5_LOGW("store", "jetstream: ticket restore: %s", err);
}
