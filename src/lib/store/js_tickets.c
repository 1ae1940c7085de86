/* Report tickets of the JetStream message store (store.h ACCEPT ticket_put / ticket_check;
 * docs/delivery.md "Who may report on what"; issue 13), in KV bucket P_tickets (TTL
 * report_window_ms). Key t.<hex HMAC(originator)>.<hash(originator, msgId, reporter)> (typed
 * keys "UE:ue1"), value "<ori_gen> <rep_gen>", "used" once a report was stored on it. The
 * originator's token first, so that a REBIND drops its tickets with one subject-filtered purge
 * (js_sweep.c). At most max_tickets_per_originator per originator, counted cluster-wide as the
 * quotas are (js_quota.c: each node's count of the tickets it wrote in the window, published);
 * a ticket goes when its report is stored, when the delivery to its recipient fails or
 * expires (js_failed_delivery), at its originator's REBIND, and with its TTL. */
#include "js_int.h"

#include "core/err.h"
#include "core/log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* "t.<hex HMAC(typed ori)>": the first tokens of an originator's ticket keys. */
void js_ticket_ori_prefix(const m5_msg_addr_t *ori, char out[67]) {
  char typed[M5_MSG_ADDR_MAX + 24], h[65];
  int n = snprintf(typed, sizeof typed, "%s:%s", ori->type, ori->addr);
  js_hash_hex(typed, n > 0 ? (size_t)n : 0, h);
  snprintf(out, 67, "t.%s", h);
}

static void ticket_key(const m5_msg_addr_t *ori, const char *msg_id, const m5_msg_addr_t *rep,
                       char out[JS_TICKET_KEY]) {
  char buf[3 * (M5_MSG_ADDR_MAX + 20)], p[67];
  int n = snprintf(buf, sizeof buf, "%s:%s\n%s\n%s:%s", ori->type, ori->addr, msg_id, rep->type,
                   rep->addr);
  char h[65];
  js_hash_hex(buf, n > 0 ? (size_t)n : 0, h);
  js_ticket_ori_prefix(ori, p);
  snprintf(out, JS_TICKET_KEY, "%s.%s", p, h);
}

static void typed_key(const m5_msg_addr_t *a, char out[M5_MSG_ADDR_MAX + 24]) {
  snprintf(out, M5_MSG_ADDR_MAX + 24, "%s:%s", a->type, a->addr);
}

static bool reportable(const m5_msg_addr_t *a) {
  return !strcmp(a->type, "UE") || !strcmp(a->type, "AS");
}

/* One ticket per stored recipient, published together (KV puts) and awaited. */
void js_tickets_put(js_store_t *s, m5_store_job_t *job) {
  const m5_store_msg_t *m = &job->msg;
  if (!job->ticket_put || !m->deliv_st_req || !reportable(&m->ori) || !job->n_rcpts) return;
  if (js_pub_begin(s, job->n_rcpts)) return;
  char typed[M5_MSG_ADDR_MAX + 24];
  typed_key(&m->ori, typed);
  uint64_t have = js_tickets_count(s, typed);
  size_t without = 0;
  for (size_t i = 0; i < job->n_rcpts; i++) {
    const m5_store_rcpt_t *r = &job->rcpts[i];
    bool room = r->id && have < s->o.max_tickets_per_originator;
    if (r->id && !room) without++;
    if (!room) { /* not stored for it (it cannot report), or the originator's bound */
      pthread_mutex_lock(&s->pub_mu);
      s->pubs[i].done = true;
      s->n_done++;
      pthread_mutex_unlock(&s->pub_mu);
      continue;
    }
    char key[JS_TICKET_KEY], subj[JS_SUBJ_MAX], val[48], mid[200];
    ticket_key(&m->ori, m->msg_id, &r->addr, key);
    snprintf(subj, sizeof subj, "$KV.%s.%s", s->tickets_bucket, key);
    int vl = snprintf(val, sizeof val, "%llu %llu", (unsigned long long)m->ori_gen,
                      (unsigned long long)r->gen);
    snprintf(mid, sizeof mid, "tk/%s/%zu", key + 2, i);
    js_pub(s, i, subj, val, (size_t)vl, mid);
    have++;
  }
  js_pub_wait(s);
  for (size_t i = 0; i < job->n_rcpts; i++) {
    if (!s->pubs[i].msg_id) continue;
    if (s->pubs[i].status != M5_OK)
      M5_LOGW("store", "jetstream: report ticket of %s for %s not stored", m->msg_id,
              job->rcpts[i].addr.addr);
    else if (!s->pubs[i].duplicate) /* (a renewal is no new ticket) */
      js_tickets_counted(s, typed, 1);
  }
  js_pub_end(s);
  if (without)
    M5_LOGD("store",
            "jetstream: %s has %llu report tickets (the bound): %zu recipients of %s "
            "got none",
            typed, (unsigned long long)s->o.max_tickets_per_originator, without, m->msg_id);
}

/* ticket_check: the report from msg.ori to rcpts[0] about msgId is stored only on the ticket
 * naming msg.ori, which it uses up (compare-and-set to "used"); else job->discarded. */
int js_ticket_check(js_store_t *s, m5_store_job_t *job, js_ticket_use_t *u) {
  memset(u, 0, sizeof *u);
  if (job->n_rcpts != 1) return M5_EINVAL;
  if (job->discarded) return M5_OK; /* to a generation re-bound since (js_quota_check) */
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
  typed_key(&r->addr, u->ori);
  js_tickets_counted(s, u->ori, -1); /* used up (given back if the report is then refused) */
  return M5_OK;
}

/* A report refused after it used its ticket: the ticket is given back. */
void js_ticket_restore(js_store_t *s, const js_ticket_use_t *u) {
  if (!u->hit) return;
  char err[256];
  if (m5_js_kv_update(s->tickets, u->key, u->val, strlen(u->val), u->used_rev, NULL, err,
                      sizeof err))
    M5_LOGW("store", "jetstream: ticket restore: %s", err);
  else
    js_tickets_counted(s, u->ori, 1);
}

static bool reportable_ori(const m5_msg_addr_t *a) {
  return !strcmp(a->type, "UE") || !strcmp(a->type, "AS");
}

bool js_failed_delivery(js_store_t *s, const m5_store_delivery_t *d) {
  const m5_store_msg_t *m = &d->msg;
  if (!m->deliv_st_req || !strcmp(m->app_id, M5_STORE_REPORT_APP) || !reportable_ori(&m->ori))
    return false;
  /* the recipient never got it: it reports on nothing (the sender gets the store's report) */
  if (reportable_ori(&d->rcpt)) {
    char key[JS_TICKET_KEY], err[256], typed[M5_MSG_ADDR_MAX + 24];
    ticket_key(&m->ori, m->msg_id, &d->rcpt, key);
    uint8_t *v = NULL;
    size_t len = 0;
    if (m5_js_kv_get(s->tickets, key, &v, &len, NULL, err, sizeof err) == M5_OK) {
      bool unused = len != 4 || memcmp(v, "used", 4);
      if (m5_js_kv_purge(s->tickets, key, 0, err, sizeof err))
        M5_LOGW("store", "jetstream: dropping the ticket of a failed delivery: %s", err);
      else if (unused) {
        typed_key(&m->ori, typed);
        js_tickets_counted(s, typed, -1);
      }
    }
    free(v);
  }
  /* a UE originator re-bound since it sent: a delivery is pushed only to its own generation */
  return !strcmp(m->ori.type, "UE") && m->ori_gen && m->ori_gen < js_gen_known(s, m->ori.addr);
}
