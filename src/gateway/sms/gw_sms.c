/* m5gw_sms_adapter: the Legacy 3GPP Message Gateway's device side (TS 23.554 cl. 5.3.4, 6.4),
 * an SMPP 3.4 ESME bound as transceiver to the operator's SMSC (sms_link.c holds the session).
 *
 *  - a message to one of our devices (deliver()) becomes submit_sm to its MSISDN, encoded by
 *    content and split into concatenated SMS (sms_codec.h); DELIVERED once the SMSC answered
 *    submit_sm_resp OK for every part;
 *  - a mobile-originated deliver_sm becomes an uplink message from the device's UE Service ID
 *    (MSISDN <-> UE Service ID from `sms.devices`, its destination from `sms.routes` or another
 *    device's MSISDN); concatenated SMS are reassembled; deliver_sm_resp is held until m5s
 *    acknowledged the message (M5GW_UP_ACCEPTED);
 *  - SMSC delivery receipts for messages sent with a report requested become reports to m5s;
 *    a report m5s sends about a device's message becomes an SMPP "ESME Delivery
 *    Acknowledgement" (submit_sm, esm_class 0x08) to the device.
 * docs/gateways-sms.md is the user's account of all of this. */
#include "sms_int.h"

#include "core/err.h"
#include "core/log.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>


/* ---- configuration ---- */

#define OFF(f) offsetof(sms_cfg_t, f)
static const m5_cfg_item_t cfg_items[] = {
    {"sms.host", M5_CFG_STR, OFF(host), "127.0.0.1", 0, 0, "SMSC host (SMPP 3.4 over TCP)"},
    {"sms.port", M5_CFG_INT, OFF(port), "2775", 1, 65535, "SMSC port"},
    {"sms.system_id", M5_CFG_STR, OFF(system_id), NULL, 0, 0,
     "system_id of bind_transceiver (1-15 characters, required)"},
    {"sms.password", M5_CFG_STR, OFF(password), NULL, 0, 0,
     "password of bind_transceiver (0-8 characters; never logged)"},
    {"sms.system_type", M5_CFG_STR, OFF(system_type), NULL, 0, 0,
     "system_type of bind_transceiver (0-12 characters)"},
    {"sms.devices", M5_CFG_STRLIST, OFF(devices), NULL, 0, 0,
     "the devices: 'MSISDN=ueSvcId' entries (MSISDN in international digits, '+' optional)"},
    {"sms.routes", M5_CFG_STRLIST, OFF(routes), NULL, 0, 0,
     "addresses devices send to: 'ADDR=TYPE:ID' entries, e.g. '1000=AS:as1', '2000=UE:ue1'"},
    {"sms.source_addr", M5_CFG_STR, OFF(source_addr), "MSGIN5G", 0, 0,
     "source_addr of submit_sm when the originator has no route (alphanumeric <= 11 or digits)"},
    {"sms.window", M5_CFG_INT, OFF(window), "10", 1, 1000, "submit_sm outstanding at most"},
    {"sms.enquire_link_ms", M5_CFG_INT, OFF(enquire_link_ms), "30000", 100, 3600000,
     "enquire_link after this long without a PDU from the SMSC"},
    {"sms.response_timeout_ms", M5_CFG_INT, OFF(response_timeout_ms), "10000", 100, 600000,
     "a connect, bind, submit_sm or enquire_link unanswered this long drops the link"},
    {"sms.reconnect_min_ms", M5_CFG_INT, OFF(reconnect_min_ms), "500", 10, 600000,
     "first reconnection delay (doubles up to sms.reconnect_max_ms)"},
    {"sms.reconnect_max_ms", M5_CFG_INT, OFF(reconnect_max_ms), "30000", 10, 3600000,
     "longest reconnection delay"},
    {"sms.throttle_retry_ms", M5_CFG_INT, OFF(throttle_retry_ms), "1000", 10, 600000,
     "pause after ESME_RTHROTTLED / ESME_RMSGQFUL before sending again"},
    {"sms.throttle_retries", M5_CFG_INT, OFF(throttle_retries), "10", 0, 255,
     "throttling answers one part may get before its message is handed back as RETRY"},
    {"sms.max_parts", M5_CFG_INT, OFF(max_parts), "16", 1, 255,
     "parts of a concatenated SMS at most, both ways"},
    {"sms.reassembly_timeout_ms", M5_CFG_INT, OFF(reassembly_timeout_ms), "30000", 100, 3600000,
     "a concatenated SMS from a device missing a part this long is refused"},
    {"sms.max_pending_mo", M5_CFG_INT, OFF(max_pending_mo), "1000", 1, 100000,
     "device messages held (waiting for m5s, or reassembly) at most"},
    {"sms.receipts_max", M5_CFG_INT, OFF(receipts_max), "10000", 0, 1000000,
     "SMSC message ids awaiting a delivery receipt at most (the oldest are forgotten)"},
    {"sms.receipt_ttl_s", M5_CFG_INT, OFF(receipt_ttl_s), "172800", 1, 2592000,
     "how long a delivery receipt is waited for"},
    {"sms.queue_max", M5_CFG_INT, OFF(queue_max), "10000", 1, 1000000,
     "SMS parts waiting for the submit window at most (more: RETRY)"},
    {"sms.report_to_device", M5_CFG_BOOL, OFF(report_to_device), "true", 0, 0,
     "send m5s's reports on a device's messages to it as an ESME Delivery Acknowledgement"},
    {"sms.register_devices", M5_CFG_BOOL, OFF(register_devices), "true", 0, 0,
     "register the devices' UE Service IDs with m5s at start, de-register any other it holds"},
};

/* The registration of the devices with m5s: one record for all batches of a round. */
typedef struct sms_reg {
  sms_t *s; /* NULL once the adapter stopped */
  unsigned pending;
  int status;
  char reason[160];
} sms_reg_t;

/* ---- small helpers ---- */

static bool is_digits(const char *a, size_t max) {
  size_t n = strlen(a);
  return n >= 1 && n <= max && strspn(a, "0123456789") == n;
}

/* ---- downlink: m5s -> device ---- */

static void job_free(sms_job_t *j) {
  sms_t *s = j->s;
  for (sms_job_t **pp = &s->jobs; *pp; pp = &(*pp)->next)
    if (*pp == j) {
      *pp = j->next;
      break;
    }
  free(j->parts);
  free(j);
}

static void job_defer(m5_loop_t *loop, void *arg) {
  sms_job_t *j = arg;
  (void)loop;
  m5gw_dl_fn done = j->done;
  j->done = NULL;
  if (done) done(j->arg, j->result, j->reason[0] ? j->reason : NULL);
  if (!j->inflight) job_free(j);
}

/* Removes the job's parts from the send queue (the in-flight ones wait for their answer). */
static void unqueue_parts(sms_t *s, sms_job_t *j) {
  for (sms_part_t **pp = &s->q_head; *pp;) {
    if ((*pp)->job == j) {
      *pp = (*pp)->next;
      s->n_queued--;
    } else {
      pp = &(*pp)->next;
    }
  }
  s->q_tail = NULL;
  for (sms_part_t *p = s->q_head; p; p = p->next)
    s->q_tail = p;
}

__attribute__((format(printf, 3, 4))) static void job_finish(sms_job_t *j, m5gw_dl_result_t res,
                                                            const char *fmt, ...) {
  if (j->finished) return;
  sms_t *s = j->s;
  j->finished = true;
  j->result = res;
  if (fmt) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(j->reason, sizeof(j->reason), fmt, ap);
    va_end(ap);
  }
  unqueue_parts(s, j);
  if (j->rcpt) {
    sms_rcpt_t *r = j->rcpt;
    j->rcpt = NULL;
    r->job = NULL;
    if (res == M5GW_DL_DELIVERED) {
      r->job_done = true;
      if (r->n_final == r->n_parts) { /* every receipt came before the last submit_sm_resp */
        sms_rcpt_report(s, r, r->failed, r->cause);
        sms_rcpt_free(s, r);
      }
    } else {
      sms_rcpt_free(s, r);
    }
  }
  if (!j->done) {
    if (res != M5GW_DL_DELIVERED)
      M5_LOGW(SMS_DOM, "acknowledgement to %s not sent: %s", j->msisdn, j->reason);
    if (!j->inflight) job_free(j);
    return;
  }
  m5_loop_defer(s->loop, &j->defer, job_defer, j);
}

void sms_on_submit_resp(sms_t *s, sms_part_t *p, uint32_t status, const char *smsc_id) {
  sms_job_t *j = p->job;
  if (j->finished) {
    if (!j->inflight && !j->defer.queued && !j->done) job_free(j);
    return;
  }
  switch (status) {
  case ESME_ROK:
    if (j->rcpt) sms_rcpt_map(s, j->rcpt, smsc_id);
    if (++j->n_acked == j->n_parts) job_finish(j, M5GW_DL_DELIVERED, NULL);
    return;
  case ESME_RTHROTTLED:
  case ESME_RMSGQFUL:
    if (++p->throttles > s->cfg->throttle_retries) {
      job_finish(j, M5GW_DL_RETRY, "SMSC throttling (command_status 0x%08x) after %u retries",
                 status, p->throttles - 1u);
      return;
    }
    M5_LOGI(SMS_DOM, "SMSC throttling (0x%08x): pausing %lld ms", status,
            (long long)s->cfg->throttle_retry_ms);
    s->throttle_until_ms = m5_loop_now_ms(s->loop) + (uint64_t)s->cfg->throttle_retry_ms;
    sms_link_queue(s, p, true);
    return;
  case ESME_RINVDSTADR:
  case ESME_RINVDSTTON:
  case ESME_RINVDSTNPI:
    job_finish(j, M5GW_DL_FAILED_UNKNOWN, "the SMSC refused destination %s (command_status "
               "0x%08x)", j->msisdn, status);
    return;
  case ESME_RSYSERR:
  case ESME_RSUBMITFAIL:
  case ESME_RX_T_APPN:
  case ESME_RUNKNOWNERR:
    job_finish(j, M5GW_DL_RETRY, "SMSC error (command_status 0x%08x)", status);
    return;
  default:
    if (status >= 0x400)
      job_finish(j, M5GW_DL_RETRY, "SMSC vendor error (command_status 0x%08x)", status);
    else
      job_finish(j, M5GW_DL_FAILED_CONTENT, "the SMSC refused the message (command_status "
                 "0x%08x)", status);
    return;
  }
}

/* The source_addr of an SMS from type:addr (see docs/gateways-sms.md, "Mapping"). */
static const char *src_for(sms_t *s, const char *type, const char *addr, bool *is_msisdn,
                           char *buf, size_t cap) {
  *is_msisdn = false;
  if (type && addr) {
    snprintf(buf, cap, "%s:%s", type, addr);
    const char *a = m5_hmap_get(s->route_by_id, buf, strlen(buf));
    if (a) return a;
    if (!strcmp(type, "UE")) {
      const char *m = m5_hmap_get(s->by_ue, addr, strlen(addr));
      if (m) {
        *is_msisdn = true;
        return m;
      }
    }
  }
  return s->cfg->source_addr;
}

static sms_job_t *job_new(sms_t *s, const char *msisdn, const char *ori_type,
                          const char *ori_addr) {
  sms_job_t *j = calloc(1, sizeof(*j));
  if (!j) return NULL;
  j->s = s;
  snprintf(j->msisdn, sizeof(j->msisdn), "%s", msisdn);
  char buf[300];
  snprintf(j->src, sizeof(j->src), "%s",
           src_for(s, ori_type, ori_addr, &j->src_msisdn, buf, sizeof(buf)));
  j->next = s->jobs, s->jobs = j;
  return j;
}

/* Encodes, splits and queues a body; M5_ERANGE when it needs more than sms.max_parts. */
static int job_fill(sms_t *s, sms_job_t *j, const uint8_t *payload, size_t n, bool force_gsm) {
  size_t cap = 2 * n + 2;
  uint8_t *units = malloc(cap);
  if (!units) return M5_ENOMEM;
  size_t ul = 0;
  int rc = force_gsm ? m5_sms_gsm7_from_utf8(payload, n, units, cap, &ul)
                     : m5_sms_encode(payload, n, &j->dc, units, cap, &ul);
  if (force_gsm) j->dc = M5_SMS_DC_GSM7;
  m5_sms_seg_t segs[M5_SMS_MAX_PARTS];
  int k = rc ? rc : m5_sms_split(j->dc, units, ul, segs, (size_t)s->cfg->max_parts);
  if (k < 0) {
    free(units);
    return k;
  }
  j->parts = calloc((size_t)k, sizeof(sms_part_t));
  if (!j->parts) {
    free(units);
    return M5_ENOMEM;
  }
  j->n_parts = (uint8_t)k;
  uint8_t ref = s->next_ref++;
  for (int i = 0; i < k; i++) {
    sms_part_t *p = &j->parts[i];
    p->job = j, p->idx = (uint8_t)i;
    size_t o = 0;
    if (k > 1) m5_sms_udh_concat(p->sm, ref, (uint8_t)k, (uint8_t)(i + 1)), o = 6;
    memcpy(p->sm + o, units + segs[i].off, segs[i].len);
    p->sm_len = (uint8_t)(o + segs[i].len);
  }
  free(units);
  for (int i = 0; i < k; i++)
    sms_link_queue(s, &j->parts[i], false);
  return k;
}

static int sms_deliver(void *state, const m5gw_msg_t *msg, m5gw_dl_fn done, void *arg) {
  sms_t *s = state;
  const char *msisdn = msg->dest_type && !strcmp(msg->dest_type, "UE") && msg->dest_addr
                           ? m5_hmap_get(s->by_ue, msg->dest_addr, strlen(msg->dest_addr))
                           : NULL;
  sms_job_t *j = job_new(s, msisdn ? msisdn : "", msg->ori_type, msg->ori_addr);
  if (!j) return M5_ENOMEM;
  j->done = done, j->arg = arg;
  if (!msisdn) {
    job_finish(j, M5GW_DL_FAILED_UNKNOWN, "no MSISDN for %s:%s (sms.devices)",
               msg->dest_type ? msg->dest_type : "?", msg->dest_addr ? msg->dest_addr : "?");
    return M5_OK;
  }
  if (s->st != LINK_BOUND) {
    job_finish(j, M5GW_DL_RETRY, "not bound to the SMSC");
    return M5_OK;
  }
  if (s->n_queued >= (unsigned)s->cfg->queue_max) {
    job_finish(j, M5GW_DL_RETRY, "sms.queue_max parts already wait for the SMSC");
    return M5_OK;
  }
  if (msg->payload_len > (size_t)s->cfg->max_parts * 160u) {
    job_finish(j, M5GW_DL_FAILED_CONTENT, "%zu octets need more than sms.max_parts (%lld) SMS",
               msg->payload_len, (long long)s->cfg->max_parts);
    return M5_OK;
  }
  if (msg->report_requested && s->cfg->receipts_max > 0)
    j->registered_delivery = SMPP34_DELIVERY_RECEIPT_ON;
  int k = job_fill(s, j, msg->payload, msg->payload_len, false);
  if (k == M5_ERANGE) {
    job_finish(j, M5GW_DL_FAILED_CONTENT, "%zu octets need more than sms.max_parts (%lld) SMS",
               msg->payload_len, (long long)s->cfg->max_parts);
    return M5_OK;
  }
  if (k < 0) {
    job_finish(j, M5GW_DL_RETRY, "out of memory");
    return M5_OK;
  }
  if (msg->report_requested && s->cfg->receipts_max > 0) {
    j->rcpt = sms_rcpt_new(s, msg, (unsigned)k);
    if (j->rcpt) j->rcpt->job = j;
  }
  M5_LOGI(SMS_DOM, "message %s to %s (%s): %d SMS, data_coding %u", msg->msg_id, msg->dest_addr,
          msisdn, k, j->dc);
  sms_link_pump(s);
  return M5_OK;
}

/* A report on a message one of our devices sent: gw_adapter.h names that message's sender (ori:
 * our device) and its recipient (dest: who reports). */
static int sms_report(void *state, const m5gw_report_t *r) {
  sms_t *s = state;
  const char *msisdn = r->ori_type && !strcmp(r->ori_type, "UE") && r->ori_addr
                           ? m5_hmap_get(s->by_ue, r->ori_addr, strlen(r->ori_addr))
                           : NULL;
  if (!msisdn) return M5_ENOENT;
  if (!s->cfg->report_to_device) return M5_OK;
  if (s->n_queued >= (unsigned)s->cfg->queue_max) return M5_EFULL;
  bool ok = r->deliv_st && !strcmp(r->deliv_st, "REPT_DELY_SUCCESS");
  /* SMPP 3.4 Appendix B's receipt text, readable on a handset; only GSM characters. */
  char text[256];
  char cause[64] = "";
  if (!ok && r->failure_cause)
    for (size_t i = 0, o = 0; r->failure_cause[i] && o + 1 < sizeof(cause); i++) {
      unsigned char ch = (unsigned char)r->failure_cause[i];
      cause[o++] = (char)(ch >= 0x20 && ch < 0x7F && ch != '[' && ch != ']' && ch != '{' &&
                                  ch != '}' && ch != '\\' && ch != '^' && ch != '~' &&
                                  ch != '|' && ch != '`'
                              ? ch
                              : '?');
      cause[o] = 0;
    }
  snprintf(text, sizeof(text), "id:%.64s sub:001 dlvrd:%s stat:%s err:000 text:%s", r->msg_id,
           ok ? "001" : "000", ok ? "DELIVRD" : "UNDELIV", cause);
  sms_job_t *j = job_new(s, msisdn, r->dest_type, r->dest_addr);
  if (!j) return M5_ENOMEM;
  j->esm = SMPP34_DELIVERY_ACK; /* ESME Delivery Acknowledgement (SMPP 3.4 cl. 5.2.12) */
  size_t tl = strlen(text);
  if (tl > 160) tl = 160;
  int k = job_fill(s, j, (const uint8_t *)text, tl, true);
  if (k < 0) {
    job_free(j);
    return k;
  }
  M5_LOGI(SMS_DOM, "report on %s to device %s: %s", r->msg_id, msisdn, r->deliv_st);
  sms_link_pump(s);
  return M5_OK;
}

/* ---- the link's events ---- */

void sms_on_link_down(sms_t *s) {
  /* The answers to what was in flight will never come: hand every message back to m5s to
   * retry (the SMSC may have taken some parts: SMS is at least once). Acknowledgements to
   * devices are sent again after the next bind. */
  sms_part_t *fl = s->inflight;
  s->inflight = NULL;
  s->n_inflight = 0;
  while (fl) {
    sms_part_t *p = fl;
    fl = p->next;
    p->job->inflight--;
    if (!p->job->done && !p->job->finished) sms_link_queue(s, p, true);
    else if (p->job->finished && !p->job->inflight && !p->job->defer.queued && !p->job->done)
      job_free(p->job);
  }
  for (sms_job_t *j = s->jobs, *nx; j; j = nx) {
    nx = j->next;
    if (j->done && !j->finished) job_finish(j, M5GW_DL_RETRY, "SMSC link lost");
  }
  sms_up_link_down(s);
  s->throttle_until_ms = 0;
}

void sms_on_bound(sms_t *s) { (void)s; }

void sms_tick(sms_t *s, uint64_t now) { sms_up_tick(s, now); }

/* ---- registration of the devices with m5s ---- */

static void reg_start(m5_loop_t *loop, void *arg);

static void on_reg(void *arg, int status, const char *reason) {
  sms_reg_t *g = arg;
  if (status && !g->status) {
    g->status = status;
    snprintf(g->reason, sizeof(g->reason), "%s", reason ? reason : "");
  }
  if (--g->pending) return;
  sms_t *s = g->s;
  status = g->status;
  char why[160];
  snprintf(why, sizeof(why), "%s", g->reason);
  free(g);
  if (!s) return;
  s->reg = NULL;
  if (status == 0) {
    M5_LOGI(SMS_DOM, "%zu device(s) registered with m5s", s->cfg->devices.n);
    return;
  }
  M5_LOGW(SMS_DOM, "registering the devices failed (%d: %s): again in %llu ms", status, why,
          (unsigned long long)s->reg_backoff_ms);
  s->t_reg = m5_loop_timer_add(s->loop, s->reg_backoff_ms, reg_start, s);
  s->reg_backoff_ms = s->reg_backoff_ms * 2 > 60000 ? 60000 : s->reg_backoff_ms * 2;
}

/* Every device, in calls of at most the contract's 1,000 IDs (registering is idempotent for
 * IDs the gateway holds, so a failed round is simply done again). */
static void reg_start(m5_loop_t *loop, void *arg) {
  sms_t *s = arg;
  (void)loop;
  s->t_reg = 0;
  size_t n = s->cfg->devices.n;
  const char **ids = calloc(n ? n : 1, sizeof(char *));
  sms_reg_t *g = calloc(1, sizeof(*g));
  if (!ids || !g) {
    free(ids), free(g);
    return;
  }
  for (size_t i = 0; i < n; i++)
    ids[i] = strchr(s->cfg->devices.v[i], '=') + 1;
  g->s = s;
  g->pending = 1; /* held until every batch is asked */
  s->reg = g;
  for (size_t off = 0; off < n; off += 1000) {
    size_t k = n - off > 1000 ? 1000 : n - off;
    g->pending++;
    int rc = m5gw_register(s->core, ids + off, k, on_reg, g);
    if (rc < 0) {
      g->pending--;
      if (!g->status) g->status = rc, snprintf(g->reason, sizeof(g->reason), "not sent");
      break;
    }
  }
  free(ids);
  on_reg(g, 0, NULL); /* the hold */
}

/* ---- start / stop ---- */

static int add_pair(m5_hmap_t *a2b, m5_hmap_t *b2a, const char *a, const char *b,
                    const char *what, char *err, size_t errlen) {
  if (m5_hmap_get(a2b, a, strlen(a)) || m5_hmap_get(b2a, b, strlen(b))) {
    snprintf(err, errlen, "%s: '%s=%s' repeats an address or an ID", what, a, b);
    return M5_EINVAL;
  }
  char *ca = strdup(a), *cb = strdup(b);
  if (!ca || !cb || m5_hmap_put(a2b, a, strlen(a), cb, NULL) ||
      m5_hmap_put(b2a, b, strlen(b), ca, NULL)) {
    free(ca), free(cb);
    snprintf(err, errlen, "out of memory");
    return M5_ENOMEM;
  }
  return M5_OK;
}

static int load_maps(sms_t *s, char *err, size_t errlen) {
  const sms_cfg_t *c = s->cfg;
  for (size_t i = 0; i < c->devices.n; i++) {
    const char *e = c->devices.v[i], *eq = strchr(e, '=');
    char msisdn[32];
    if (!eq || (size_t)(eq - e) >= sizeof(msisdn)) goto bad_dev;
    snprintf(msisdn, sizeof(msisdn), "%.*s", (int)(eq - e), e);
    const char *m = sms_norm_addr(msisdn);
    if (!is_digits(m, 20) || !eq[1] || strlen(eq + 1) > 255 || strchr(eq + 1, ' ')) goto bad_dev;
    if (add_pair(s->by_msisdn, s->by_ue, m, eq + 1, "sms.devices", err, errlen)) return M5_EINVAL;
    continue;
  bad_dev:
    snprintf(err, errlen, "sms.devices: '%s': expected MSISDN=ueSvcId (MSISDN 1-20 digits)", e);
    return M5_EINVAL;
  }
  for (size_t i = 0; i < c->routes.n; i++) {
    const char *e = c->routes.v[i], *eq = strchr(e, '=');
    const char *colon = eq ? strchr(eq, ':') : NULL;
    char addr[32];
    if (!eq || !colon || colon == eq + 1 || !colon[1] || (size_t)(eq - e) >= sizeof(addr) ||
        eq == e)
      goto bad_route;
    snprintf(addr, sizeof(addr), "%.*s", (int)(eq - e), e);
    const char *a = sms_norm_addr(addr);
    if (strlen(a) > 20 || strspn(eq + 1, "ABCDEFGHIJKLMNOPQRSTUVWXYZ") != (size_t)(colon - eq - 1))
      goto bad_route;
    if (m5_hmap_get(s->by_msisdn, a, strlen(a))) {
      snprintf(err, errlen, "sms.routes: '%s': %s is a device's MSISDN", e, a);
      return M5_EINVAL;
    }
    if (add_pair(s->route_by_addr, s->route_by_id, a, eq + 1, "sms.routes", err, errlen))
      return M5_EINVAL;
    continue;
  bad_route:
    snprintf(err, errlen, "sms.routes: '%s': expected ADDR=TYPE:ID, e.g. 1000=AS:as1", e);
    return M5_EINVAL;
  }
  return M5_OK;
}

static void sms_stop(void *state);

static int sms_start(m5_loop_t *loop, const void *cfgp, m5gw_core_t *core, void **state,
                     char *err, size_t errlen) {
  const sms_cfg_t *c = cfgp;
  if (!c->system_id || !c->system_id[0] || strlen(c->system_id) > 15) {
    snprintf(err, errlen, "sms.system_id: required, 1-15 characters");
    return M5_EINVAL;
  }
  if ((c->password && strlen(c->password) > 8) ||
      (c->system_type && strlen(c->system_type) > 12)) {
    snprintf(err, errlen, "sms.password: at most 8 characters; sms.system_type: at most 12");
    return M5_EINVAL;
  }
  if (!c->source_addr || !c->source_addr[0] ||
      (!is_digits(c->source_addr, 20) && strlen(c->source_addr) > 11)) {
    snprintf(err, errlen, "sms.source_addr: 1-20 digits or 1-11 characters");
    return M5_EINVAL;
  }
  if (c->reconnect_max_ms < c->reconnect_min_ms) {
    snprintf(err, errlen, "sms.reconnect_max_ms: below sms.reconnect_min_ms");
    return M5_EINVAL;
  }
  sms_t *s = calloc(1, sizeof(*s));
  if (!s) return M5_ENOMEM;
  s->loop = loop, s->cfg = c, s->core = core, s->fd = -1;
  s->by_msisdn = m5_hmap_new(), s->by_ue = m5_hmap_new();
  s->route_by_addr = m5_hmap_new(), s->route_by_id = m5_hmap_new();
  s->rcpt_by_id = m5_hmap_new();
  uint8_t r = 0;
  if (getrandom(&r, 1, 0) == 1) s->next_ref = r;
  if (!s->by_msisdn || !s->by_ue || !s->route_by_addr || !s->route_by_id || !s->rcpt_by_id) {
    snprintf(err, errlen, "out of memory");
    sms_stop(s);
    return M5_ENOMEM;
  }
  if (load_maps(s, err, errlen) != M5_OK) {
    s->stopping = true;
    sms_stop(s);
    return M5_EINVAL;
  }
  s->reg_backoff_ms = 1000;
  sms_link_start(s);
  if (c->register_devices && c->devices.n) s->t_reg = m5_loop_timer_add(loop, 0, reg_start, s);
  M5_LOGI(SMS_DOM, "SMS adapter: %zu device(s), %zu route(s), SMSC %s:%lld", c->devices.n,
          c->routes.n, c->host, (long long)c->port);
  *state = s;
  return M5_OK;
}

static void sms_stop(void *state) {
  sms_t *s = state;
  if (!s) return;
  bool started = s->t_tick || s->fd >= 0 || s->t_reconnect || s->in.data || s->out.data;
  s->stopping = true;
  /* Outstanding deliveries complete with RETRY first (gw_adapter.h). */
  for (sms_job_t *j = s->jobs; j; j = j->next) {
    if (j->done && !j->finished) {
      j->finished = true, j->result = M5GW_DL_RETRY;
      snprintf(j->reason, sizeof(j->reason), "the gateway is stopping");
    }
    if (j->done) {
      m5_loop_defer_cancel(s->loop, &j->defer);
      m5gw_dl_fn done = j->done;
      j->done = NULL;
      done(j->arg, j->result, j->reason[0] ? j->reason : NULL);
    }
  }
  if (started) sms_link_stop(s);
  if (s->t_reg) m5_loop_timer_cancel(s->loop, s->t_reg);
  if (s->reg) s->reg->s = NULL; /* its callback may still come */
  sms_up_stop(s); /* before the jobs: a receipt record points at its job */
  while (s->jobs) {
    sms_job_t *j = s->jobs;
    s->jobs = j->next;
    free(j->parts);
    free(j);
  }
  m5_hmap_free(s->rcpt_by_id, NULL);
  m5_hmap_free(s->by_msisdn, free), m5_hmap_free(s->by_ue, free);
  m5_hmap_free(s->route_by_addr, free), m5_hmap_free(s->route_by_id, free);
  free(s);
}

/* The UE Service IDs of sms.devices ("MSISDN=ID"), when the adapter registers them: the core
 * de-registers at m5s what it holds for the gateway besides them (gw_adapter.h). */
static int sms_served(void *state, void (*each)(void *arg, const char *ue_svc_id), void *arg) {
  const sms_t *s = state;
  if (!s->cfg->register_devices) return M5_ENOENT;
  for (size_t i = 0; i < s->cfg->devices.n; i++)
    each(arg, strchr(s->cfg->devices.v[i], '=') + 1); /* checked by load_maps at start */
  return M5_OK;
}

const m5gw_adapter_ops_t m5gw_sms_adapter = {
    .kind = "sms",
    .api = "msgg-l3gdelivery",
    .cfg_items = cfg_items,
    .n_cfg_items = sizeof(cfg_items) / sizeof(cfg_items[0]),
    .cfg_size = sizeof(sms_cfg_t),
    .start = sms_start,
    .deliver = sms_deliver,
    .report = sms_report,
    .served = sms_served,
    .stop = sms_stop,
};
