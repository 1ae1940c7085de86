/* Per-originator bounds and binding generations of the JetStream message store, cluster-wide
 * (store.h m5_store_opts_t quotas, M5_STORE_REBIND; issue 13 decision 4; docs/store.md "The
 * JetStream backend", docs/scale-out.md "Limits").
 *
 * Quotas without a round trip per accept. Each node counts, from its own index (js_store.c calls
 * js_quota_index for every delivery that enters or leaves it) and its own accepts, per
 * originator: messages, payload bytes and deliveries (key o.<h(ori, gen)>), its deliveries in
 * each recipient's queue (p<family>.<h(rcpt)>.<h(ori, gen)>), its dedup entries in the window
 * (d.<h(dedup key's originator)>) and its report tickets (t.<h(ori)>). A thread of its own
 * (js_quota_sync.c) publishes what changed to KV bucket P_quota as <that>.<node> at most once a
 * second (a key whose count fell to zero gets an empty value; every key is put again every 20 s,
 * and the bucket's TTL, 60 s, removes the keys of a node that died), and watches the bucket,
 * summing the other nodes' last values. An accept is refused ORIGINATOR_QUOTA when this node's
 * count + the others' + the message passes a bound: the cluster may pass a bound by what the other
 * nodes accepted since they last published (about a second, plus their consumers' lag), never more.
 * A pair (recipient, originator) is published only once it holds half the share
 * (max_per_recipient_per_originator), so a remote queue's share may also be passed by less than
 * half of it.
 *
 * Generations: KV bucket P_gens (no TTL), key g.<enc(UE Service ID)> = the last generation a
 * REBIND gave (js_sweep.c; kept in js_quota_sync.c); every node keeps a copy filled by a watcher
 * (its own thread), and reads the key through the leader only when a job brings a generation newer
 * than its copy (a REBIND it may have missed). */
#include "js_quota_int.h"

#include "core/err.h"
#include "core/log.h"
#include "js/js_names.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ---------------------------------------------------------------- names */

/* 32 hex characters of the store's HMAC of text: the keys of P_quota (nodes derive the same). */
static void h32(const char *text, size_t len, char out[33]) {
  char h[65];
  js_hash_hex(text, len, h);
  memcpy(out, h, 32);
  out[32] = 0;
}

/* The in-memory key of a count ("raw": no hash on the common path): its kind, then what it
 * counts for, '\n' apart. o: originator type, addr, generation; p<family>: recipient type,
 * addr, then the originator's three; d: a dedup key's originator; t: a typed originator. */

static size_t raw_ori(char *out, const m5_msg_addr_t *ori, uint64_t gen) {
  int n = snprintf(out, Q_RAW_MAX, "o\n%s\n%s\n%" PRIu64, ori->type, ori->addr, gen);
  return n > 0 && n < Q_RAW_MAX ? (size_t)n : 0;
}

static size_t raw_pair(char *out, int fam, const m5_msg_addr_t *r, const m5_msg_addr_t *ori,
                       uint64_t gen) {
  int n = snprintf(out, Q_RAW_MAX, "p%d\n%s\n%s\n%s\n%s\n%" PRIu64, fam, r->type, r->addr,
                   ori->type, ori->addr, gen);
  return n > 0 && n < Q_RAW_MAX ? (size_t)n : 0;
}

static size_t raw_one(char *out, char kind, const char *name) {
  int n = snprintf(out, Q_RAW_MAX, "%c\n%s", kind, name);
  return n > 0 && n < Q_RAW_MAX ? (size_t)n : 0;
}

/* The P_quota key of a raw key (without ".<node>"): what it counts for, hashed (32 hex of
 * HMAC-SHA-256 each): o.<h(ori, gen)>, p<family>.<h(rcpt)>.<h(ori, gen)>, d.<h>, t.<h>. */
static void suffix_of(const char *raw, char out[Q_KEY_MAX]) {
  char a[33], b[33];
  out[0] = 0;
  if (raw[0] == QK_PAIR) {
    const char *x = raw + 3, *sep = strchr(x, '\n');
    if (sep) sep = strchr(sep + 1, '\n');
    if (!sep) return;
    h32(x, (size_t)(sep - x), a);
    h32(sep + 1, strlen(sep + 1), b);
    snprintf(out, Q_KEY_MAX, "p%c.%s.%s", raw[1], a, b);
  } else {
    h32(raw + 2, strlen(raw + 2), a);
    snprintf(out, Q_KEY_MAX, "%c.%s", raw[0], a);
  }
}

/* "d.<hex HMAC(ori)>": the first token of an originator's dedup keys, which REBIND purges by. */
void js_dedup_ori_prefix(const char *dedup_ori, char out[67]) {
  char h[65];
  js_hash_hex(dedup_ori, strlen(dedup_ori), h);
  snprintf(out, 67, "d.%s", h);
}

/* The dedup key of (dedup_ori, dedup_id): d.<hex HMAC(ori)>.<hash> (hash: of both, as the
 * Msg-Ids of the accept's publishes). */
void js_dedup_key(const m5_store_job_t *job, const char *hash, char *out, size_t size) {
  char p[67];
  js_dedup_ori_prefix(job->dedup_ori, p);
  snprintf(out, size, "%s.%s", p, hash);
}

/* ---------------------------------------------------------------- own counts */

static q_own_t *own_get(struct js_quota *q, const char *raw, bool create) {
  size_t kl = strlen(raw);
  q_own_t *o = kl ? m5_hmap_get(q->own, raw, kl) : NULL;
  if (o || !create || !kl) return o;
  if (!(o = calloc(1, sizeof *o))) return NULL;
  suffix_of(raw, o->kv);
  if (!o->kv[0] || m5_hmap_put(q->own, raw, kl, o, NULL)) {
    free(o);
    return NULL;
  }
  return o;
}

/* The others' sum for raw (o: its entry of this node's, if any, which knows its key). */
static const q_vals_t *others_of(struct js_quota *q, const char *raw, const q_own_t *o) {
  if (!m5_hmap_count(q->sum)) return NULL;
  char suffix[Q_KEY_MAX];
  if (o)
    snprintf(suffix, sizeof suffix, "%s", o->kv);
  else
    suffix_of(raw, suffix);
  return m5_hmap_get(q->sum, suffix, strlen(suffix));
}

static void own_add(struct js_quota *q, const char *raw, int64_t d0, int64_t d1, int64_t d2) {
  q_own_t *o = own_get(q, raw, d0 > 0 || d1 > 0 || d2 > 0);
  if (!o) return;
  int64_t d[3] = {d0, d1, d2};
  for (int i = 0; i < 3; i++)
    o->v[i] = d[i] < 0 && (uint64_t)-d[i] >= o->v[i] ? 0 : (uint64_t)((int64_t)o->v[i] + d[i]);
}

/* Windowed counts: drops the buckets older than the window; v[0] = what is left. */
void js_q_win_roll(q_own_t *o, int64_t bucket) {
  uint64_t n = 0;
  for (int i = 0; i < Q_NB; i++) {
    if (o->wn[i] && o->wb[i] <= bucket - Q_NB) o->wn[i] = 0;
    n += o->wn[i];
  }
  o->v[0] = n;
}

int64_t js_q_win_bucket(js_store_t *s, int64_t window_ms) {
  int64_t w = window_ms / Q_NB > 0 ? window_ms / Q_NB : 1;
  return js_now_ms(s) / w;
}

static void win_add(q_own_t *o, int64_t bucket, uint64_t rev) {
  int i = (int)(bucket % Q_NB);
  if (o->wb[i] != bucket || !o->wn[i]) {
    o->wb[i] = bucket;
    o->wn[i] = 0;
    o->wrev[i] = rev;
  }
  o->wn[i]++;
  if (rev && (!o->wrev[i] || rev < o->wrev[i])) o->wrev[i] = rev;
  js_q_win_roll(o, bucket);
}

/* One taken back (a ticket used or dropped): from the oldest bucket, whose keys go first. */
static void win_sub(q_own_t *o, int64_t bucket) {
  js_q_win_roll(o, bucket);
  for (int64_t b = bucket - Q_NB + 1; b <= bucket; b++) {
    int i = (int)(((b % Q_NB) + Q_NB) % Q_NB);
    if (o->wn[i] && o->wb[i] == b) {
      o->wn[i]--;
      break;
    }
  }
  js_q_win_roll(o, bucket);
}

static void win_clear(q_own_t *o) {
  memset(o->wn, 0, sizeof o->wn);
  o->v[0] = 0;
}

/* ---------------------------------------------------------------- the index hook */

/* payload length: the last 8 bytes of a record's head (js_rec_encode) */
static uint64_t rec_plen(const js_entry_t *e, const js_rec_t *r) {
  uint64_t v = 0;
  if (r->head_len < 8 || e->rec_len < r->head_len) return 0;
  for (size_t i = r->head_len - 8; i < r->head_len; i++)
    v = (v << 8) | e->rec[i];
  return v;
}

void js_quota_index(js_store_t *s, const js_entry_t *e, int delta) {
  struct js_quota *q = s->quota;
  js_rec_t r;
  if (!q || js_rec_decode(e->rec, e->rec_len, &r)) return;
  const m5_store_msg_t *m = &r.d.msg;
  char key[Q_RAW_MAX], ok[Q_RAW_MAX];
  raw_pair(key, e->fam, &r.d.rcpt, &m->ori, m->ori_gen);
  raw_ori(ok, &m->ori, m->ori_gen);
  pthread_mutex_lock(&q->mu);
  own_add(q, key, delta, 0, 0);
  if (e->fam == JS_FAM_Q && !r.report) {
    /* a message counts once per node however many of its deliveries are here */
    char mk[Q_RAW_MAX + M5_MSG_ID_MAX + 24];
    int n = snprintf(mk, sizeof mk, "%s\n%s\n%" PRId64, ok, m->msg_id, m->accepted_at_ms);
    size_t kl = n > 0 ? (size_t)n : 0;
    uintptr_t c = (uintptr_t)m5_hmap_get(q->msgs, mk, kl);
    int64_t dm = 0, db = 0;
    if (delta > 0) {
      if (!c) dm = 1, db = (int64_t)rec_plen(e, &r);
      if (m5_hmap_put(q->msgs, mk, kl, (void *)(c + 1), NULL)) dm = db = 0;
    } else if (c) {
      if (c == 1) {
        m5_hmap_del(q->msgs, mk, kl);
        dm = -1, db = -(int64_t)rec_plen(e, &r);
      } else {
        m5_hmap_put(q->msgs, mk, kl, (void *)(c - 1), NULL);
      }
    }
    own_add(q, ok, dm, db, delta);
  }
  pthread_mutex_unlock(&q->mu);
}

/* ---------------------------------------------------------------- the accept's checks */

static bool is_ue(const m5_msg_addr_t *a) {
  return !strcmp(a->type, "UE");
}

/* A generation newer than this node's copy: a REBIND this node has not seen (another node ran
 * it, or it never ran): read the shared one, and run it here when it is older still. */
static int catch_up(js_store_t *s, const char *ue, uint64_t gen) {
  if (gen <= js_gen_known(s, ue)) return M5_OK;
  uint64_t failed = 0;
  int rc = js_rebind_to(s, ue, gen, &failed);
  if (!rc && failed)
    M5_LOGW("store",
            "jetstream: UE %s came with generation %" PRIu64 ", newer than the store's: "
            "its re-bind caught up (%" PRIu64 " queued deliveries failed)",
            ue, gen, failed);
  return rc;
}

static int gens_check(js_store_t *s, m5_store_job_t *job) {
  m5_store_msg_t *m = &job->msg;
  int rc;
  if (is_ue(&m->ori)) {
    if (m->ori_gen && m->ori_gen < js_gen_known(s, m->ori.addr)) return M5_EPERM;
    if (m->ori_gen && (rc = catch_up(s, m->ori.addr, m->ori_gen))) return rc;
    uint64_t known = js_gen_known(s, m->ori.addr);
    if (m->ori_gen && m->ori_gen < known) return M5_EPERM; /* re-bound on another node */
    if (!m->ori_gen) m->ori_gen = known;
  }
  bool report = !strcmp(m->app_id, M5_STORE_REPORT_APP);
  for (size_t i = 0; i < job->n_rcpts; i++) {
    m5_store_rcpt_t *r = &job->rcpts[i];
    if (!is_ue(&r->addr)) continue;
    if ((rc = catch_up(s, r->addr.addr, r->gen))) return rc;
    uint64_t known = js_gen_known(s, r->addr.addr);
    if (report && r->gen && r->gen < known && job->n_rcpts == 1) job->discarded = true;
    if (r->gen < known) r->gen = known;
  }
  return M5_OK;
}

/* The originator's use (this node's + the others' last published) + this message within its
 * bounds, and its share of each recipient's queue. */
static m5_store_outcome_t over_quota(js_store_t *s, m5_store_job_t *job, bool *partly) {
  struct js_quota *q = s->quota;
  const m5_store_msg_t *m = &job->msg;
  bool report = job->n_rcpts == 1 && !strcmp(m->app_id, M5_STORE_REPORT_APP);
  int fam = report ? JS_FAM_R : JS_FAM_Q;
  uint64_t qcap = report ? s->o.max_reports_per_recipient : s->o.max_per_recipient;
  uint64_t scap = report ? (qcap / 2 ? qcap / 2 : 1) : s->o.max_per_recipient_per_originator;
  if (!scap) scap = qcap / 2 ? qcap / 2 : 1;
  char key[Q_RAW_MAX];
  *partly = false;
  m5_store_outcome_t out = M5_STORE_ACCEPTED;
  pthread_mutex_lock(&q->mu);
  if (!report) {
    raw_ori(key, &m->ori, m->ori_gen);
    const q_own_t *o = own_get(q, key, false);
    const q_vals_t *ot = others_of(q, key, o);
    uint64_t msgs = (o ? o->v[0] : 0) + (ot ? ot->v[0] : 0);
    uint64_t bytes = (o ? o->v[1] : 0) + (ot ? ot->v[1] : 0);
    uint64_t dlvs = (o ? o->v[2] : 0) + (ot ? ot->v[2] : 0);
    if (msgs + 1 > s->o.max_msgs_per_originator ||
        dlvs + job->n_rcpts > s->o.max_deliveries_per_originator ||
        bytes + m->payload_len > s->o.max_bytes_per_originator)
      out = M5_STORE_ORIGINATOR_QUOTA;
  }
  size_t skipped = 0;
  for (size_t i = 0; out == M5_STORE_ACCEPTED && i < job->n_rcpts; i++) {
    m5_store_rcpt_t *r = &job->rcpts[i];
    bool here = !r->node[0] || !strcmp(r->node, s->node);
    /* a full queue of this node's is QUEUE_FULL (the stream says so), not a quota */
    if (here) {
      js_rcpt_t *rc = js_index_rcpt(s, &r->addr);
      uint64_t qn = 0;
      for (js_entry_t *e = rc && rc->n >= scap ? rc->head : NULL; e; e = e->next)
        qn += e->fam == fam;
      if (qn >= qcap) continue;
    }
    raw_pair(key, fam, &r->addr, &m->ori, m->ori_gen);
    const q_own_t *o = own_get(q, key, false);
    const q_vals_t *ot = q->other_pairs ? others_of(q, key, o) : NULL;
    if ((o ? o->v[0] : 0) + (ot ? ot->v[0] : 0) < scap) continue;
    r->status = M5_STORE_ORIGINATOR_QUOTA;
    skipped++;
  }
  pthread_mutex_unlock(&q->mu);
  if (out != M5_STORE_ACCEPTED) return out;
  if (skipped && (!job->partial || skipped == job->n_rcpts)) return M5_STORE_ORIGINATOR_QUOTA;
  *partly = skipped != 0;
  return M5_STORE_ACCEPTED;
}

int js_quota_check(js_store_t *s, m5_store_job_t *job) {
  if (!s->quota) return 0;
  int rc = gens_check(s, job);
  if (rc) {
    job->status = rc == M5_EPERM ? M5_EPERM : js_fail_status(rc);
    return 1;
  }
  if (!job->n_rcpts || job->discarded) return 0;
  bool partly = false;
  m5_store_outcome_t out = over_quota(s, job, &partly);
  if (out == M5_STORE_ACCEPTED) return 0;
  for (size_t i = 0; i < job->n_rcpts; i++)
    job->rcpts[i].id = 0;
  /* a retransmission of a message accepted before is a duplicate, not a refusal: only a
   * refusal pays this read */
  if (job->dedup_id[0]) {
    char hash[65], key[160], err[256];
    char buf[2 * (M5_STORE_KEY_MAX + 1) + 1];
    int n = snprintf(buf, sizeof buf, "%s\n%s", job->dedup_ori, job->dedup_id);
    js_hash_hex(buf, n > 0 ? (size_t)n : 0, hash);
    js_dedup_key(job, hash, key, sizeof key);
    uint8_t *v = NULL;
    size_t len = 0;
    rc = m5_js_kv_get(s->dedup, key, &v, &len, NULL, err, sizeof err);
    if (rc == M5_OK) {
      bool claim = len >= 9 && !memcmp(v, "#pending ", 9);
      if (claim) {
        job->status = M5_EAGAIN;
      } else {
        const uint8_t *nl = memchr(v, '\n', len);
        size_t sl = nl ? (size_t)(nl - v) : len;
        memset(&job->orig_ack, 0, sizeof job->orig_ack);
        snprintf(job->orig_ack.status, sizeof job->orig_ack.status, "%.*s", (int)sl, (char *)v);
        if (nl)
          snprintf(job->orig_ack.failure_cause, sizeof job->orig_ack.failure_cause, "%.*s",
                   (int)(len - sl - 1), (const char *)nl + 1);
        job->outcome = M5_STORE_DUPLICATE;
        js_stat_add(s, &s->st.duplicates, 1);
      }
      free(v);
      return 1;
    }
    if (rc != M5_ENOENT) {
      job->status = js_fail_status(rc);
      return 1;
    }
  }
  job->outcome = out;
  js_stat_add(s, &s->st.refused_originator_quota, 1);
  return 1;
}

/* An accepted dedup entry counts in its originator's window. dedup_max_per_sender: an
 * originator past its bound loses its oldest buckets of entries (a purge of its keys older
 * than the first revision of the oldest bucket kept; of all but this one when the bucket of
 * this one goes too), never its newest, never another originator's. After the claim, so that
 * a duplicate costs nothing and the purge never takes the new entry. */
void js_quota_charge(js_store_t *s, const m5_store_job_t *job, uint64_t dedup_rev) {
  struct js_quota *q = s->quota;
  if (!q || !job->dedup_id[0] || job->status || job->outcome != M5_STORE_ACCEPTED) return;
  uint64_t max = s->o.dedup_max_per_sender;
  char key[Q_RAW_MAX];
  raw_one(key, QK_DEDUP, job->dedup_ori);
  int64_t b = js_q_win_bucket(s, s->o.dedup_window_ms);
  uint64_t cut = 0;
  pthread_mutex_lock(&q->mu);
  q_own_t *o = own_get(q, key, true);
  const q_vals_t *ot = others_of(q, key, o);
  uint64_t others = ot ? ot->v[0] : 0;
  if (o) win_add(o, b, dedup_rev);
  if (o && max && o->v[0] + others > max) {
    for (int64_t x = b - Q_NB + 1; x <= b && o->v[0] + others > max; x++) {
      int i = (int)(((x % Q_NB) + Q_NB) % Q_NB);
      if (o->wb[i] != x || !o->wn[i]) continue;
      if (x == b) { /* this one's own bucket: it alone stays */
        o->wn[i] = 1;
        o->wrev[i] = dedup_rev;
      } else {
        o->wn[i] = 0;
      }
      js_q_win_roll(o, b);
    }
    for (int64_t x = b - Q_NB + 1; x <= b && !cut; x++) {
      int i = (int)(((x % Q_NB) + Q_NB) % Q_NB);
      if (o->wn[i] && o->wb[i] == x) cut = o->wrev[i];
    }
    if (!cut || cut > dedup_rev) cut = dedup_rev;
  }
  pthread_mutex_unlock(&q->mu);
  if (!cut) return;
  char filter[80], err[256];
  js_dedup_ori_prefix(job->dedup_ori, filter);
  size_t fl = strlen(filter);
  snprintf(filter + fl, sizeof filter - fl, ".>");
  if (m5_js_kv_purge(s->dedup, filter, cut, err, sizeof err))
    M5_LOGW("store", "jetstream: dedup_max_per_sender: %s", err);
  else
    M5_LOGD("store",
            "jetstream: %s passed dedup_max_per_sender (%" PRIu64 "): its oldest "
            "entries dropped",
            job->dedup_ori, max);
}

/* ---------------------------------------------------------------- tickets (js_tickets.c) */

uint64_t js_tickets_count(js_store_t *s, const char *typed_ori) {
  struct js_quota *q = s->quota;
  if (!q) return 0;
  char key[Q_RAW_MAX];
  raw_one(key, QK_TICKET, typed_ori);
  int64_t b = js_q_win_bucket(s, s->o.report_window_ms);
  pthread_mutex_lock(&q->mu);
  q_own_t *o = own_get(q, key, false);
  if (o) js_q_win_roll(o, b);
  const q_vals_t *ot = others_of(q, key, o);
  uint64_t n = (o ? o->v[0] : 0) + (ot ? ot->v[0] : 0);
  pthread_mutex_unlock(&q->mu);
  return n;
}

void js_tickets_counted(js_store_t *s, const char *typed_ori, int delta) {
  struct js_quota *q = s->quota;
  if (!q) return;
  char key[Q_RAW_MAX];
  raw_one(key, QK_TICKET, typed_ori);
  int64_t b = js_q_win_bucket(s, s->o.report_window_ms);
  pthread_mutex_lock(&q->mu);
  q_own_t *o = own_get(q, key, delta > 0);
  if (o && delta > 0) win_add(o, b, 0);
  if (o && delta < 0) win_sub(o, b);
  if (o && delta == 0) win_clear(o);
  pthread_mutex_unlock(&q->mu);
}

/* REBIND: the originator's dedup entries went (a purge): so do this node's counts of them. */
void js_quota_forget_dedup(js_store_t *s, const char *dedup_ori) {
  struct js_quota *q = s->quota;
  if (!q) return;
  char key[Q_RAW_MAX];
  raw_one(key, QK_DEDUP, dedup_ori);
  pthread_mutex_lock(&q->mu);
  q_own_t *o = own_get(q, key, false);
  if (o) win_clear(o);
  pthread_mutex_unlock(&q->mu);
}
