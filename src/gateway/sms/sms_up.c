/* The SMS adapter's device -> m5s half (see gw_sms.c for the whole): mobile-originated
 * deliver_sm (checked, decoded, mapped to the device's UE Service ID and a route), reassembly of
 * concatenated SMS, deliver_sm_resp held until m5s accepted the message, and SMSC delivery
 * receipts turned into reports to m5s. */
#include "sms_int.h"

#include "core/err.h"
#include "core/log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

const char *sms_norm_addr(const char *a) { return a[0] == '+' ? a + 1 : a; }

/* A msgId for a device message: m5s drops a repeated (oriAddr, msgId), so it must not repeat,
 * not even across restarts. */
static void new_id(char out[25]) {
  uint8_t r[12];
  if (getrandom(r, sizeof(r), 0) != (ssize_t)sizeof(r)) {
    static uint32_t ctr;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    uint64_t t = (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
    uint32_t c = ++ctr;
    memcpy(r, &t, 8);
    memcpy(r + 8, &c, 4);
  }
  for (size_t i = 0; i < sizeof(r); i++)
    snprintf(out + 2 * i, 3, "%02x", r[i]);
}

void sms_resp(sms_t *s, uint32_t seq, uint32_t status) {
  deliver_sm_resp_t r;
  memset(&r, 0, sizeof(r));
  r.command_id = DELIVER_SM_RESP;
  r.command_status = status;
  r.sequence_number = seq;
  uint8_t out[32];
  int n = m5_smpp_pack(DELIVER_SM_RESP, &r, out, sizeof(out));
  if (n > 0) sms_link_send(s, out, (size_t)n);
}

/* ---- receipts ---- */

void sms_rcpt_free(sms_t *s, sms_rcpt_t *r) {
  if (r->job) r->job->rcpt = NULL;
  for (unsigned i = 0; i < r->n_ids; i++) {
    if (r->ids[i] && m5_hmap_del(s->rcpt_by_id, r->ids[i], strlen(r->ids[i]))) s->n_rcpt_ids--;
    free(r->ids[i]);
  }
  if (r->prev) r->prev->next = r->next;
  else if (s->rcpt_head == r) s->rcpt_head = r->next;
  if (r->next) r->next->prev = r->prev;
  else if (s->rcpt_tail == r) s->rcpt_tail = r->prev;
  free(r->ids);
  free(r->msg_id), free(r->ori_type), free(r->ori_addr), free(r->ue);
  free(r);
}

sms_rcpt_t *sms_rcpt_new(sms_t *s, const m5gw_msg_t *m, unsigned n_parts) {
  sms_rcpt_t *r = calloc(1, sizeof(*r));
  if (!r) return NULL;
  r->s = s;
  r->msg_id = strdup(m->msg_id);
  r->ori_type = strdup(m->ori_type ? m->ori_type : "");
  r->ori_addr = strdup(m->ori_addr ? m->ori_addr : "");
  r->ue = strdup(m->dest_addr);
  r->ids = calloc(n_parts, sizeof(char *));
  r->n_parts = n_parts;
  r->expires_ms = m5_loop_now_ms(s->loop) + (uint64_t)s->cfg->receipt_ttl_s * 1000u;
  if (!r->msg_id || !r->ori_type || !r->ori_addr || !r->ue || !r->ids) {
    sms_rcpt_free(s, r);
    return NULL;
  }
  r->prev = s->rcpt_tail;
  if (s->rcpt_tail) s->rcpt_tail->next = r;
  else s->rcpt_head = r;
  s->rcpt_tail = r;
  return r;
}

void sms_rcpt_map(sms_t *s, sms_rcpt_t *r, const char *id) {
  if (!id || !id[0] || r->n_ids >= r->n_parts) return;
  while (s->n_rcpt_ids >= (unsigned)s->cfg->receipts_max && s->rcpt_head) {
    sms_rcpt_t *old = s->rcpt_head;
    if (old == r) return;
    M5_LOGW(SMS_DOM, "receipts: forgetting message %s (sms.receipts_max reached)", old->msg_id);
    sms_rcpt_free(s, old);
  }
  if (s->n_rcpt_ids >= (unsigned)s->cfg->receipts_max) return;
  char *k = strdup(id);
  if (!k) return;
  void *old = NULL;
  if (m5_hmap_put(s->rcpt_by_id, k, strlen(k), r, &old) != M5_OK) {
    free(k);
    return;
  }
  if (!old) s->n_rcpt_ids++;
  r->ids[r->n_ids++] = k;
}

/* Sends the report once every part's receipt is in; M5_OK or the core's refusal. */
int sms_rcpt_report(sms_t *s, sms_rcpt_t *r, bool failed, const char *cause) {
  /* gw_adapter.h: a report names the reported message's sender (ori) and recipient (dest, our
   * device); the core turns it into the wire's form (oriAddr = the reporter). */
  m5gw_report_t rep = {.ori_type = r->ori_type,
                       .ori_addr = r->ori_addr,
                       .dest_type = "UE",
                       .dest_addr = r->ue,
                       .msg_id = r->msg_id,
                       .deliv_st = failed ? "REPT_DELY_FAILED" : "REPT_DELY_SUCCESS",
                       .failure_cause = failed ? cause : NULL};
  int rc = m5gw_report_up(s->core, &rep);
  if (rc < 0) {
    M5_LOGW(SMS_DOM, "report on %s not taken by the core (%d)", r->msg_id, rc);
    return rc;
  }
  M5_LOGI(SMS_DOM, "report on %s to %s:%s: %s", r->msg_id, r->ori_type, r->ori_addr,
          rep.deliv_st);
  return M5_OK;
}

/* A receipt (deliver_sm with esm_class "SMSC Delivery Receipt"). */
static void on_receipt(sms_t *s, uint32_t seq, const deliver_sm_t *d, const uint8_t *body,
                       size_t blen) {
  char id[66] = "", stat[16] = "", err[16] = "", why[200] = "";
  m5_sms_rcpt_state_t st = M5_SMS_RCPT_PENDING;
  bool have_st = false;
  const tlv_t *t = m5_smpp_tlv(d->tlv, TLVID_receipted_message_id);
  if (t && t->length > 0 && t->length <= 65) {
    memcpy(id, t->value.octet, t->length);
    id[t->length] = 0;
  }
  t = m5_smpp_tlv(d->tlv, TLVID_message_state);
  if (t && t->length == 1) {
    static const char *const names[] = {"state 0",     "ENROUTE",  "DELIVERED",
                                        "EXPIRED",     "DELETED",  "UNDELIVERABLE",
                                        "ACCEPTED",    "UNKNOWN",  "REJECTED"};
    uint8_t v = t->value.val08;
    st = m5_sms_rcpt_from_message_state(v);
    if (v < sizeof(names) / sizeof(names[0])) snprintf(stat, sizeof(stat), "%s", names[v]);
    else snprintf(stat, sizeof(stat), "state %u", v);
    have_st = true;
  }
  if (!id[0] || !have_st) {
    char tid[66];
    m5_sms_rcpt_state_t tst;
    if (m5_sms_receipt_parse(body, blen, tid, sizeof(tid), &tst, stat, sizeof(stat), err,
                             sizeof(err), why, sizeof(why)) != M5_OK) {
      M5_LOGW(SMS_DOM, "delivery receipt from the SMSC unreadable (%s): acknowledged, ignored",
              why);
      sms_resp(s, seq, ESME_ROK);
      return;
    }
    if (!id[0]) snprintf(id, sizeof(id), "%s", tid);
    if (!have_st) st = tst;
  }
  /* The SMSC's words go into a failureCause: printable ASCII only. */
  for (char *c = err; *c; c++)
    if (*c < 0x21 || *c > 0x7E) *c = '?';
  sms_rcpt_t *r = m5_hmap_get(s->rcpt_by_id, id, strlen(id));
  if (!r || st == M5_SMS_RCPT_PENDING) {
    M5_LOGD(SMS_DOM, "receipt for SMSC id %s (%s): nothing to report", id, stat);
    sms_resp(s, seq, ESME_ROK);
    return;
  }
  bool last = r->job_done && r->n_final + 1 == r->n_parts;
  bool failed = r->failed || st != M5_SMS_RCPT_DELIVERED;
  char cause[160];
  if (st != M5_SMS_RCPT_DELIVERED)
    snprintf(cause, sizeof(cause), "SMSC receipt: stat %s%s%s", stat, err[0] ? " err " : "",
             err);
  else
    snprintf(cause, sizeof(cause), "%s", r->cause);
  if (last) {
    if (sms_rcpt_report(s, r, failed, cause) != M5_OK) {
      sms_resp(s, seq, ESME_RX_T_APPN); /* the SMSC sends the receipt again */
      return;
    }
    sms_rcpt_free(s, r);
  } else {
    r->n_final++;
    if (st != M5_SMS_RCPT_DELIVERED && !r->failed) {
      r->failed = true;
      snprintf(r->cause, sizeof(r->cause), "%s", cause);
    }
    if (m5_hmap_del(s->rcpt_by_id, id, strlen(id))) s->n_rcpt_ids--;
  }
  sms_resp(s, seq, ESME_ROK);
}

/* ---- uplink: device -> m5s ---- */

static void mo_answer(sms_t *s, sms_mo_t *mo, uint32_t status) {
  if (mo->gen != s->gen || s->fd < 0) return; /* that connection is gone: the SMSC resends */
  for (unsigned i = 0; i < mo->n_seqs; i++)
    sms_resp(s, mo->seqs[i], status);
}

static void mo_unlink_free(sms_mo_t *mo) {
  sms_t *s = mo->s;
  if (s) {
    for (sms_mo_t **pp = &s->mo; *pp; pp = &(*pp)->next)
      if (*pp == mo) {
        *pp = mo->next;
        s->n_mo--;
        break;
      }
  }
  free(mo->key);
  free(mo);
}

/* How long m5s's answer to a device message whose connection had gone is kept for the
 * SMSC's redelivery of it (which comes after the next bind). */
#define ANSWERED_TTL_MS (10u * 60u * 1000u)

/* m5s answered mo but its connection is gone: the SMSC delivers it again after the next bind,
 * and that copy gets this answer at once instead of going to m5s as a new message. */
static void mo_keep_answered(sms_t *s, sms_mo_t *mo, uint32_t status) {
  for (sms_mo_t **pp = &s->mo; *pp; pp = &(*pp)->next)
    if (*pp == mo) {
      *pp = mo->next;
      s->n_mo--;
      break;
    }
  mo->status = status;
  mo->expires_ms = m5_loop_now_ms(s->loop) + ANSWERED_TTL_MS;
  mo->next = s->answered, s->answered = mo, s->n_answered++;
  if (s->n_answered <= (unsigned)s->cfg->max_pending_mo) return;
  sms_mo_t **pp = &s->answered; /* too many: the oldest is forgotten */
  while ((*pp)->next)
    pp = &(*pp)->next;
  free((*pp)->key);
  free(*pp);
  *pp = NULL;
  s->n_answered--;
}

static void on_up(void *arg, m5gw_up_phase_t phase, const char *reason) {
  sms_mo_t *mo = arg;
  sms_t *s = mo->s;
  if (phase == M5GW_UP_SPOOLED) {
    if (s) M5_LOGD(SMS_DOM, "device message %s spooled", mo->msg_id);
    return;
  }
  if (s) {
    /* m5s took it but cannot deliver it (MessageDeliveryAck DELY_FAILED, e.g. an unknown
     * recipient): no report will come from anyone, so the SMSC hears a permanent failure and
     * tells the device as for a refusal. */
    bool failed = phase == M5GW_UP_ACCEPTED && reason && !strncmp(reason, "DELY_FAILED", 11);
    if (failed) phase = M5GW_UP_REFUSED;
    uint32_t status = phase == M5GW_UP_ACCEPTED ? ESME_ROK : ESME_RX_P_APPN;
    bool gone = mo->gen != s->gen || s->fd < 0;
    if (phase == M5GW_UP_ACCEPTED)
      M5_LOGI(SMS_DOM, "device message %s accepted by m5s: deliver_sm_resp OK%s", mo->msg_id,
              gone ? " when the SMSC delivers it again (its connection is gone)" : "");
    else
      M5_LOGW(SMS_DOM, "device message %s refused (%s): deliver_sm_resp ESME_RX_P_APPN%s",
              mo->msg_id, reason ? reason : "no reason",
              gone ? " when the SMSC delivers it again (its connection is gone)" : "");
    if (gone) {
      mo_keep_answered(s, mo, status);
      return;
    }
    mo_answer(s, mo, status);
  }
  mo_unlink_free(mo);
}

static void answer_all(sms_t *s, const uint32_t *seqs, unsigned n, uint32_t status) {
  for (unsigned i = 0; i < n; i++)
    sms_resp(s, seqs[i], status);
}

/* A whole device message (one SMS or a reassembled one). */
static void mo_submit(sms_t *s, const char *msisdn, const char *dest, uint8_t dc,
                      const uint8_t *raw, size_t n, const uint32_t *seqs, unsigned n_seqs,
                      bool report) {
  const char *ue = m5_hmap_get(s->by_msisdn, msisdn, strlen(msisdn));
  const char *route = m5_hmap_get(s->route_by_addr, dest, strlen(dest));
  char routebuf[300];
  if (!route) {
    const char *peer = m5_hmap_get(s->by_msisdn, dest, strlen(dest));
    if (peer) snprintf(routebuf, sizeof(routebuf), "UE:%s", peer), route = routebuf;
  }
  if (!ue || !route) { /* checked by the caller; kept for safety */
    answer_all(s, seqs, n_seqs, ESME_RX_P_APPN);
    return;
  }
  /* A redelivery after a reconnection of a message still waiting for m5s: answer it with that
   * one instead of sending it twice. Within one connection every deliver_sm is a message. */
  size_t kl = strlen(msisdn) + 1 + strlen(dest) + 1 + 1 + n;
  uint8_t *key = malloc(kl ? kl : 1);
  if (!key) {
    answer_all(s, seqs, n_seqs, ESME_RX_T_APPN);
    return;
  }
  size_t o = 0;
  memcpy(key + o, msisdn, strlen(msisdn) + 1), o += strlen(msisdn) + 1;
  memcpy(key + o, dest, strlen(dest) + 1), o += strlen(dest) + 1;
  key[o++] = dc;
  if (n) memcpy(key + o, raw, n);
  for (sms_mo_t **pp = &s->answered; *pp; pp = &(*pp)->next) {
    sms_mo_t *mo = *pp;
    if (mo->gen == s->gen || mo->keylen != kl || memcmp(mo->key, key, kl) != 0) continue;
    M5_LOGI(SMS_DOM, "device message %s redelivered by the SMSC: m5s answered it already: "
            "deliver_sm_resp 0x%08x", mo->msg_id, mo->status);
    answer_all(s, seqs, n_seqs, mo->status);
    *pp = mo->next;
    s->n_answered--;
    free(mo->key), free(mo), free(key);
    return;
  }
  for (sms_mo_t *mo = s->mo; mo; mo = mo->next)
    if (mo->gen != s->gen && mo->keylen == kl && memcmp(mo->key, key, kl) == 0) {
      M5_LOGI(SMS_DOM, "device message %s redelivered by the SMSC: waiting for m5s", mo->msg_id);
      mo->gen = s->gen;
      memcpy(mo->seqs, seqs, n_seqs * sizeof(uint32_t));
      mo->n_seqs = n_seqs;
      free(key);
      return;
    }
  size_t cap = 3 * n + 4;
  uint8_t *text = malloc(cap);
  char why[200] = "";
  size_t tlen = 0;
  if (!text || m5_sms_decode(dc, raw, n, text, cap, &tlen, why, sizeof(why)) != M5_OK) {
    M5_LOGW(SMS_DOM, "message from %s refused: %s", msisdn, text ? why : "out of memory");
    answer_all(s, seqs, n_seqs, text ? ESME_RX_P_APPN : ESME_RX_T_APPN);
    free(text), free(key);
    return;
  }
  sms_mo_t *mo = calloc(1, sizeof(*mo));
  if (!mo) {
    answer_all(s, seqs, n_seqs, ESME_RX_T_APPN);
    free(text), free(key);
    return;
  }
  mo->s = s, mo->gen = s->gen, mo->key = key, mo->keylen = kl, mo->n_seqs = n_seqs;
  memcpy(mo->seqs, seqs, n_seqs * sizeof(uint32_t));
  char type[16];
  const char *colon = strchr(route, ':');
  snprintf(type, sizeof(type), "%.*s", (int)(colon - route), route);
  m5gw_msg_t m = {.ori_type = "UE",
                  .ori_addr = ue,
                  .dest_type = type,
                  .dest_addr = colon + 1,
                  .msg_id = mo->msg_id,
                  .payload = text,
                  .payload_len = tlen,
                  .report_requested = report};
  /* The SMSC's copy of a message the gateway spooled before a restart (its deliver_sm_resp
   * never went out): the same msgId, so that m5s takes it as the repeat it is. */
  if (!m5gw_uplink_restored(s->core, &m, mo->msg_id, sizeof(mo->msg_id))) new_id(mo->msg_id);
  mo->next = s->mo, s->mo = mo, s->n_mo++;
  int rc = m5gw_uplink(s->core, &m, on_up, mo);
  free(text);
  if (rc < 0) {
    M5_LOGW(SMS_DOM, "device message from %s not taken by the core (%d)", msisdn, rc);
    answer_all(s, seqs, n_seqs, rc == M5_EFULL ? ESME_RX_T_APPN : ESME_RX_P_APPN);
    mo_unlink_free(mo);
    return;
  }
  M5_LOGI(SMS_DOM, "device message %s from %s (%s) to %s, %zu octets", mo->msg_id, msisdn, ue,
          route, tlen);
}

static void rs_free(sms_t *s, sms_rs_t *r) {
  for (sms_rs_t **pp = &s->rs; *pp; pp = &(*pp)->next)
    if (*pp == r) {
      *pp = r->next;
      s->n_rs--;
      break;
    }
  for (unsigned i = 0; i < r->total; i++)
    free(r->part[i].data);
  free(r);
}

static void rs_add(sms_t *s, uint32_t seq, const char *msisdn, const char *dest,
                   const m5_sms_concat_t *c, uint8_t dc, bool report, const uint8_t *body,
                   size_t blen) {
  sms_rs_t *r = s->rs;
  for (; r; r = r->next)
    if (r->ref == c->ref && r->total == c->total && !strcmp(r->msisdn, msisdn) &&
        !strcmp(r->dest, dest))
      break;
  if (!r) {
    if (s->n_mo + s->n_rs >= (unsigned)s->cfg->max_pending_mo) {
      sms_resp(s, seq, ESME_RX_T_APPN);
      return;
    }
    r = calloc(1, sizeof(*r) + c->total * sizeof(r->part[0]));
    if (!r) {
      sms_resp(s, seq, ESME_RX_T_APPN);
      return;
    }
    snprintf(r->msisdn, sizeof(r->msisdn), "%s", msisdn);
    snprintf(r->dest, sizeof(r->dest), "%s", dest);
    r->ref = c->ref, r->total = c->total, r->dc = dc, r->report = report;
    r->deadline_ms = m5_loop_now_ms(s->loop) + (uint64_t)s->cfg->reassembly_timeout_ms;
    r->next = s->rs, s->rs = r, s->n_rs++;
  }
  unsigned i = c->seq - 1u;
  if (r->part[i].data || dc != r->dc) {
    M5_LOGW(SMS_DOM, "concatenated SMS from %s ref %u: part %u %s", msisdn, c->ref, c->seq,
            dc != r->dc ? "has another data_coding: refused" : "repeated: refused for now");
    sms_resp(s, seq, dc != r->dc ? ESME_RX_P_APPN : ESME_RX_T_APPN);
    return;
  }
  r->part[i].data = malloc(blen ? blen : 1);
  if (!r->part[i].data) {
    sms_resp(s, seq, ESME_RX_T_APPN);
    return;
  }
  if (blen) memcpy(r->part[i].data, body, blen);
  r->part[i].len = (uint16_t)blen;
  r->part[i].seq = seq;
  r->report = r->report || report;
  if (++r->have < r->total) return;
  size_t n = 0;
  for (unsigned k = 0; k < r->total; k++)
    n += r->part[k].len;
  uint8_t *all = malloc(n ? n : 1);
  uint32_t seqs[M5_SMS_MAX_PARTS];
  for (unsigned k = 0; k < r->total; k++)
    seqs[k] = r->part[k].seq;
  if (!all) {
    answer_all(s, seqs, r->total, ESME_RX_T_APPN);
  } else {
    size_t o = 0;
    for (unsigned k = 0; k < r->total; k++) {
      if (r->part[k].len) memcpy(all + o, r->part[k].data, r->part[k].len);
      o += r->part[k].len;
    }
    mo_submit(s, r->msisdn, r->dest, r->dc, all, n, seqs, r->total, r->report);
    free(all);
  }
  rs_free(s, r);
}

void sms_on_deliver_sm(sms_t *s, const m5_smpp_hdr_t *h, const uint8_t *pdu) {
  char why[300] = "";
  deliver_sm_t d;
  memset(&d, 0, sizeof(d));
  uint8_t chk[M5_SMPP_MAX_PDU];
  int cl = m5_smpp_check_deliver_sm(pdu, h->len, chk, why, sizeof(why));
  if (cl < 0 || m5_smpp_unpack(DELIVER_SM, chk, (size_t)cl, &d, why, sizeof(why))) {
    m5_smpp_unpack_end();
    M5_LOGW(SMS_DOM, "malformed deliver_sm (sequence %u): %s: generic_nack", h->seq, why);
    sms_link_send_hdr(s, GENERIC_NACK, ESME_RINVCMDLEN, h->seq);
    return;
  }
  const uint8_t *body = d.short_message;
  size_t blen = d.sm_length;
  const tlv_t *pl = m5_smpp_tlv(d.tlv, TLVID_message_payload);
  if (!blen && pl) body = pl->value.octet, blen = pl->length;
  uint8_t esm_type = d.esm_class & 0x3C;
  if (esm_type == SMPP34_DELIVERY_RECEIPT) {
    on_receipt(s, h->seq, &d, body, blen);
    m5_smpp_unpack_end();
    return;
  }
  if (esm_type != 0) { /* an SME acknowledgement or intermediate notification: nothing to do */
    M5_LOGD(SMS_DOM, "deliver_sm with esm_class 0x%02x acknowledged and ignored", d.esm_class);
    sms_resp(s, h->seq, ESME_ROK);
    m5_smpp_unpack_end();
    return;
  }
  char msisdn[22], dest[22];
  snprintf(msisdn, sizeof(msisdn), "%.20s", sms_norm_addr((const char *)d.source_addr));
  snprintf(dest, sizeof(dest), "%.20s", sms_norm_addr((const char *)d.destination_addr));
  uint32_t status = ESME_ROK;
  if (!m5_hmap_get(s->by_msisdn, msisdn, strlen(msisdn))) {
    M5_LOGW(SMS_DOM, "deliver_sm from %s: not a device of this gateway: ESME_RINVSRCADR", msisdn);
    status = ESME_RINVSRCADR;
  } else if (!m5_hmap_get(s->route_by_addr, dest, strlen(dest)) &&
             !m5_hmap_get(s->by_msisdn, dest, strlen(dest))) {
    M5_LOGW(SMS_DOM, "deliver_sm from %s to %s: no route (sms.routes): ESME_RINVDSTADR", msisdn,
            dest);
    status = ESME_RINVDSTADR;
  }
  m5_sms_concat_t c = {0};
  if (!status && (d.esm_class & SMPP34_UDHI_IND)) {
    size_t hl = 0;
    if (m5_sms_udh_parse(body, blen, &hl, &c, why, sizeof(why)) != M5_OK) {
      M5_LOGW(SMS_DOM, "deliver_sm from %s: %s: ESME_RX_P_APPN", msisdn, why);
      status = ESME_RX_P_APPN;
    } else {
      body += hl, blen -= hl;
    }
  }
  const tlv_t *sr = m5_smpp_tlv(d.tlv, TLVID_sar_msg_ref_num),
              *st = m5_smpp_tlv(d.tlv, TLVID_sar_total_segments),
              *sq = m5_smpp_tlv(d.tlv, TLVID_sar_segment_seqnum);
  if (!status && !c.present && sr && st && sq) {
    c.present = true, c.ref = sr->value.val16, c.total = st->value.val08, c.seq = sq->value.val08;
    if (!c.total || !c.seq || c.seq > c.total) {
      M5_LOGW(SMS_DOM, "deliver_sm from %s: SAR segment %u of %u: ESME_RX_P_APPN", msisdn, c.seq,
              c.total);
      status = ESME_RX_P_APPN;
    }
  }
  if (!status && c.present && c.total > s->cfg->max_parts) {
    M5_LOGW(SMS_DOM, "deliver_sm from %s: %u parts, more than sms.max_parts: ESME_RX_P_APPN",
            msisdn, c.total);
    status = ESME_RX_P_APPN;
  }
  bool report = (d.registered_delivery & 0x0C) != 0; /* SME acknowledgement requested */
  if (status) {
    sms_resp(s, h->seq, status);
  } else if (c.present && c.total > 1) {
    rs_add(s, h->seq, msisdn, dest, &c, d.data_coding, report, body, blen);
  } else if (s->n_mo + s->n_rs >= (unsigned)s->cfg->max_pending_mo) {
    sms_resp(s, h->seq, ESME_RX_T_APPN);
  } else {
    mo_submit(s, msisdn, dest, d.data_coding, body, blen, &h->seq, 1, report);
  }
  m5_smpp_unpack_end();
}

void sms_up_tick(sms_t *s, uint64_t now) {
  for (sms_rs_t *r = s->rs, *nx; r; r = nx) {
    nx = r->next;
    if (now < r->deadline_ms) continue;
    char got[256] = "", miss[256] = "";
    size_t og = 0, om = 0;
    for (unsigned i = 0; i < r->total; i++) {
      char *b = r->part[i].data ? got : miss;
      size_t *o = r->part[i].data ? &og : &om;
      int w = snprintf(b + *o, 256 - *o, "%s%u", *o ? "," : "", i + 1);
      if (w > 0 && *o + (size_t)w < 256) *o += (size_t)w;
    }
    M5_LOGW(SMS_DOM,
            "concatenated SMS from %s to %s (ref %u): part(s) %s of %u missing after %lld ms; "
            "part(s) %s refused with ESME_RX_P_APPN",
            r->msisdn, r->dest, r->ref, miss, r->total, (long long)s->cfg->reassembly_timeout_ms,
            got);
    for (unsigned i = 0; i < r->total; i++)
      if (r->part[i].data) sms_resp(s, r->part[i].seq, ESME_RX_P_APPN);
    rs_free(s, r);
  }
  for (sms_mo_t **pp = &s->answered; *pp;) {
    sms_mo_t *mo = *pp;
    if (mo->expires_ms > now) {
      pp = &mo->next;
      continue;
    }
    *pp = mo->next;
    s->n_answered--;
    free(mo->key), free(mo);
  }
  while (s->rcpt_head && s->rcpt_head->job_done && s->rcpt_head->expires_ms <= now) {
    M5_LOGW(SMS_DOM, "no delivery receipt for message %s within sms.receipt_ttl_s",
            s->rcpt_head->msg_id);
    sms_rcpt_free(s, s->rcpt_head);
  }
}


void sms_up_link_down(sms_t *s) {
  /* Parts of a concatenated SMS not yet answered: the SMSC delivers them again. */
  while (s->rs)
    rs_free(s, s->rs);
}

void sms_up_stop(sms_t *s) {
  for (sms_mo_t *mo = s->mo; mo; mo = mo->next)
    mo->s = NULL; /* freed by their callbacks, which the core still owes */
  s->mo = NULL;
  while (s->answered) {
    sms_mo_t *mo = s->answered;
    s->answered = mo->next;
    free(mo->key), free(mo);
  }
  s->n_answered = 0;
  while (s->rs)
    rs_free(s, s->rs);
  while (s->rcpt_head)
    sms_rcpt_free(s, s->rcpt_head);
}
