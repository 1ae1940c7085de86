/* m5gw_mqtt_adapter: the device side of the Non-3GPP Message Gateway (TS 23.554 cl. 5.3.4,
 * MSGin5G-4 towards m5s through the core) as an MQTT client of the operator's broker
 * (Mosquitto). docs/gateways-mqtt.md is the user's view; docs/decisions.md says why our own
 * client code (src/lib/mqtt + mqtt_conn.c) instead of libmosquitto.
 *
 *  - uplink: subscribed to msgin5g/+/out/# at QoS 1 in a persistent session; a PUBLISH on
 *    msgin5g/<deviceId>/out/<addrType>/<addr> from a device this gateway serves becomes
 *    m5gw_uplink(); its PUBACK leaves only at M5GW_UP_SPOOLED, so a message the gateway has
 *    not made durable stays the broker's, which redelivers it after a reconnection;
 *  - downlink: deliver() publishes QoS 1 to msgin5g/<deviceId>/in with the MQTT 5 user
 *    properties oriAddr and msgId; DELIVERED at the broker's PUBACK (a reason code below
 *    0x80 other than "no matching subscribers"), RETRY when the broker is away; at that PUBACK a
 *    message that asked for a report gets the device's DELIVERED one (m5gw_report_up);
 *  - report(): a QoS 1 message on the device's inbox with msgType=REPORT (docs).
 * The gateway speaks MQTT 5 to the broker (user properties exist only there; the broker
 * strips them for MQTT 3.1.1 devices, which get the bare payload). */
#include "gw_mqtt_int.h"

#include "core/err.h"
#include "core/log.h"

#include <jansson.h>
#include <openssl/rand.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DOM GWMQ_DOM

/* ---- helpers ---- */

bool gwmq_device_id_ok(const char *id) {
  return m5_msg_svc_id_valid(id) && !strpbrk(id, "/+#");
}

static bool served(const gw_t *g, const char *id, size_t n) {
  return m5_hmap_get(g->devices, id, n) != NULL;
}

static uint16_t next_pid(gw_t *g) {
  for (;;) {
    if (!++g->pid) g->pid = 1;
    bool used = g->pid == g->sub_pid && !g->subscribed;
    for (size_t i = 0; i < g->n_infl && !used; i++)
      used = g->infl[i]->pid == g->pid;
    if (!used) return g->pid;
  }
}

/* ---- downlink: completions, queue, window ---- */

static void run_done(m5_loop_t *loop, void *arg) {
  (void)loop;
  gw_t *g = arg;
  dl_t *d = g->done_head;
  g->done_head = g->done_tail = NULL;
  while (d) {
    dl_t *next = d->next;
    if (d->done) d->done(d->arg, d->res, d->reason[0] ? d->reason : NULL);
    m5_buf_free(&d->pkt);
    free(d);
    d = next;
  }
}

/* d's outcome goes to its caller on the loop, never inside the call that handed it over. */
static void complete(gw_t *g, dl_t *d, m5gw_dl_result_t res, const char *reason) {
  d->res = res;
  size_t n = reason ? strnlen(reason, sizeof d->reason - 1) : 0; /* cut a long one short */
  if (n) memcpy(d->reason, reason, n);
  d->reason[n] = '\0';
  d->next = NULL;
  if (g->done_tail)
    g->done_tail->next = d;
  else
    g->done_head = d;
  g->done_tail = d;
  m5_loop_defer(g->loop, &g->done_defer, run_done, g);
}

static void pump(gw_t *g) {
  size_t window = (size_t)g->cfg->max_inflight;
  if (g->peer_recv_max && g->peer_recv_max < window) window = g->peer_recv_max;
  bool sent = false;
  while (g->wait_head && g->n_infl < window && gwmq_conn_is_up(g->conn)) {
    dl_t *d = g->wait_head;
    if (g->peer_max_packet && d->pkt.len > g->peer_max_packet) {
      /* the broker would end the session over it (MQTT 5 §3.2.2.3.6): it cannot be carried */
      g->wait_head = d->next;
      if (!g->wait_head) g->wait_tail = NULL;
      g->n_wait--;
      complete(g, d, M5GW_DL_FAILED_CONTENT, "larger than the broker's maximum packet size");
      continue;
    }
    d->pid = next_pid(g);
    d->pkt.data[d->pid_off] = (uint8_t)(d->pid >> 8);
    d->pkt.data[d->pid_off + 1] = (uint8_t)d->pid;
    if (m5_buf_append(gwmq_conn_out(g->conn), d->pkt.data, d->pkt.len)) break;
    g->wait_head = d->next;
    if (!g->wait_head) g->wait_tail = NULL;
    g->n_wait--;
    g->infl[g->n_infl++] = d;
    M5_LOGD(DOM, "%s: published (packet id %u)", d->what, d->pid);
    sent = true;
  }
  if (sent) gwmq_conn_kick(g->conn);
}

/* Builds the QoS 1 PUBLISH of d (packet id 0 until pump patches it). */
static int build_publish(dl_t *d, const char *topic, const m5_mqtt_pair_t *props, size_t n,
                         const uint8_t *pl, size_t plen) {
  m5_buf_init(&d->pkt, 0);
  int rc = m5_mqtt_put_publish(&d->pkt, M5_MQTT_V5, topic, 1, false, 0, props, n, pl, plen);
  if (rc) return rc;
  size_t hl = 1;
  while (d->pkt.data[hl] & 0x80)
    hl++;
  d->pid_off = hl + 1 + 2 + strlen(topic);
  return 0;
}

static void enqueue(gw_t *g, dl_t *d) {
  d->next = NULL;
  if (g->wait_tail)
    g->wait_tail->next = d;
  else
    g->wait_head = d;
  g->wait_tail = d;
  g->n_wait++;
  pump(g);
}

static m5_mqtt_pair_t pair(const char *k, const char *v) {
  return (m5_mqtt_pair_t){k, v, strlen(k), strlen(v)};
}

/* A report to device dev's inbox (docs/gateways-mqtt.md "Reports"). */
static int publish_report(gw_t *g, const char *dev, const char *msg_id, const char *from_type,
                          const char *from_addr, const char *deliv_st, const char *cause) {
  if (!gwmq_conn_is_up(g->conn)) return M5_EAGAIN;
  if (g->n_wait >= (size_t)g->cfg->queue_max) return M5_EFULL;
  char topic[M5_MSG_ADDR_MAX + 16], from[M5_MSG_ADDR_MAX + 24];
  snprintf(topic, sizeof topic, "msgin5g/%s/in", dev);
  snprintf(from, sizeof from, "%s:%s", from_type, from_addr);
  json_t *j = json_pack("{s:s, s:s, s:{s:s, s:s}, s:s}", "msgType", "REPORT", "msgId", msg_id,
                        "destAddr", "addrType", from_type, "addr", from_addr, "delivSt", deliv_st);
  if (j && cause) json_object_set_new(j, "failureCause", json_string(cause));
  char *body = j ? json_dumps(j, JSON_COMPACT) : NULL;
  json_decref(j);
  dl_t *d = calloc(1, sizeof *d);
  bool cause_ok = cause && m5_mqtt_utf8_ok((const uint8_t *)cause, strlen(cause));
  m5_mqtt_pair_t props[5] = {pair("msgType", "REPORT"), pair("msgId", msg_id),
                             pair("oriAddr", from), pair("delivSt", deliv_st),
                             cause_ok ? pair("failureCause", cause) : pair("", "")};
  if (!body || !d ||
      build_publish(d, topic, props, cause_ok ? 5 : 4, (uint8_t *)body, strlen(body))) {
    free(body);
    if (d) m5_buf_free(&d->pkt);
    free(d);
    return M5_ENOMEM;
  }
  free(body);
  snprintf(d->what, sizeof d->what, "report %s -> %s", msg_id, dev);
  enqueue(g, d);
  return 0;
}

/* The device's report on a message it now has (the broker holds it for the device's session):
 * DELIVERED, from the device to the message's sender, through the spool to m5s's
 * deliver-report (docs/gateways-mqtt.md "Reports"). */
static void report_delivered(gw_t *g, const dl_t *d) {
  m5gw_report_t r = {.ori_type = d->ori_type,
                     .ori_addr = d->ori_addr,
                     .dest_type = "UE",
                     .dest_addr = d->dev,
                     .msg_id = d->msg_id,
                     .deliv_st = "DELIVERED"};
  int rc = m5gw_report_up(g->core, &r);
  if (rc)
    M5_LOGW(DOM, "%s: delivered, but its report to %s:%s is lost (%s)", d->what, d->ori_type,
            d->ori_addr, m5_strerror(rc));
}

/* The broker's PUBACK for one of our publishes. */
static void on_puback(gw_t *g, uint16_t pid, uint8_t rc) {
  for (size_t i = 0; i < g->n_infl; i++) {
    dl_t *d = g->infl[i];
    if (d->pid != pid) continue;
    memmove(g->infl + i, g->infl + i + 1, (g->n_infl - i - 1) * sizeof *g->infl);
    g->n_infl--;
    char why[120];
    if (rc == M5_MQTT_RC_NO_SUBSCRIBERS) {
      /* nobody would get it: no session (online or persistent) subscribed to the inbox */
      complete(g, d, M5GW_DL_RETRY, "no device session subscribed to its inbox yet");
    } else if (rc < 0x80) {
      M5_LOGD(DOM, "%s: accepted by the broker", d->what);
      if (d->report_req) report_delivered(g, d);
      complete(g, d, M5GW_DL_DELIVERED, NULL);
    } else if (rc == M5_MQTT_RC_PACKET_TOO_LARGE) {
      complete(g, d, M5GW_DL_FAILED_CONTENT, "the broker refused the message as too large");
    } else if (rc == M5_MQTT_RC_TOPIC_INVALID) {
      complete(g, d, M5GW_DL_FAILED_UNKNOWN, "the broker refused the device's inbox topic");
    } else {
      /* not authorized (our ACL), quota, ...: the operator's to fix, the message may wait */
      snprintf(why, sizeof why, "the broker refused the publish (reason 0x%02x)", rc);
      M5_LOGE(DOM, "%s: %s", d->what, why);
      complete(g, d, M5GW_DL_RETRY, why);
    }
    pump(g);
    return;
  }
  M5_LOGW(DOM, "PUBACK for packet id %u, not in flight: ignored", pid);
}

/* ---- uplink ---- */

static void up_free_if_done(up_t *e) {
  if (!e->final || e->in_table) return;
  if (e->gw) {
    if (e->prev)
      e->prev->next = e->next;
    else
      e->gw->ups = e->next;
    if (e->next) e->next->prev = e->prev;
  }
  free(e);
}

static void pend_remove(gw_t *g, up_t *e) {
  for (size_t i = 0; i < g->n_pend; i++)
    if (g->pend[i] == e) {
      g->pend[i] = g->pend[--g->n_pend];
      break;
    }
  e->in_table = false;
}

static void send_puback(gw_t *g, uint16_t pid, uint8_t reason) {
  if (!m5_mqtt_put_puback(gwmq_conn_out(g->conn), M5_MQTT_V5, pid, reason)) gwmq_conn_kick(g->conn);
}

/* The gateway's own FAILED report on device message e (it asked for one), cause or NULL. */
static void report_failed(gw_t *g, up_t *e, const char *cause) {
  char *colon = strchr(e->dest, ':');
  if (!colon) return;
  *colon = '\0';
  publish_report(g, e->dev, e->msg_id, e->dest, colon + 1, "FAILED", cause);
  *colon = ':';
}

static void up_cb(void *arg, m5gw_up_phase_t phase, const char *reason) {
  up_t *e = arg;
  gw_t *g = e->gw;
  switch (phase) {
  case M5GW_UP_SPOOLED:
    e->spooled = true;
    if (g && e->in_table && gwmq_conn_is_up(g->conn)) {
      send_puback(g, e->pid, 0);
      pend_remove(g, e);
    } /* else the broker redelivers it after the reconnection and on_publish acknowledges */
    break;
  case M5GW_UP_ACCEPTED:
    e->final = true;
    /* m5s took it but could not deliver it (MessageDeliveryAck status DELY_FAILED, e.g. an
     * unknown recipient): no report will follow from anyone but us */
    if (reason && !strncmp(reason, "DELY_FAILED", 11)) {
      M5_LOGI(DOM, "%s -> %s (%s): m5s cannot deliver it: %s", e->dev, e->dest, e->msg_id,
              reason);
      if (g && e->report_req) report_failed(g, e, reason[11] == ':' ? reason + 13 : NULL);
      break;
    }
    M5_LOGD(DOM, "%s -> %s (%s): accepted by m5s", e->dev, e->dest, e->msg_id);
    break;
  case M5GW_UP_REFUSED:
    e->final = true;
    if (!e->spooled) {
      /* the spool did not take it: it is still the broker's (no PUBACK). A new session makes
       * the broker redeliver it, after the back-off. */
      M5_LOGW(DOM, "%s -> %s: the spool refused it (%s); the broker keeps it", e->dev, e->dest,
              reason ? reason : "no reason");
      if (g && e->in_table) {
        pend_remove(g, e);
        if (gwmq_conn_is_up(g->conn))
          gwmq_conn_drop(g->conn, "reconnecting so that the broker redelivers what the spool "
                                  "refused");
      }
      break;
    }
    M5_LOGW(DOM, "%s -> %s (%s): refused by m5s: %s", e->dev, e->dest, e->msg_id,
            reason ? reason : "no reason");
    if (g && e->report_req) report_failed(g, e, reason);
    break;
  }
  up_free_if_done(e);
}

/* Refuses one device message for good: acknowledged to the broker (it would come back
 * forever otherwise), logged, not passed on. */
static void refuse(gw_t *g, const m5_mqtt_publish_t *p, const char *why) {
  char t[201]; /* the device's topic, printable only: a log line is not the device's to shape */
  size_t n = p->tlen < sizeof t - 1 ? p->tlen : sizeof t - 1;
  for (size_t i = 0; i < n; i++)
    t[i] = p->topic[i] >= 0x20 && p->topic[i] < 0x7f ? (char)p->topic[i] : '?';
  t[n] = '\0';
  M5_LOGW(DOM, "refused a message on '%s': %s", t, why);
  if (p->qos) send_puback(g, p->pid, M5_MQTT_RC_TOPIC_INVALID);
}

/* Splits "msgin5g/<dev>/out/<addrType>/<addr>" into its three fields (NUL-terminated copies);
 * NULL, or what is wrong. */
static const char *parse_topic(const uint8_t *t, size_t n, char dev[M5_MSG_ADDR_MAX + 1],
                               char type[8], char addr[M5_MSG_ADDR_MAX + 1]) {
  const char *s = (const char *)t, *end = s + n;
  if (n < 8 || memcmp(s, "msgin5g/", 8)) return "not under msgin5g/";
  const char *f[4];
  size_t l[4];
  const char *q = s + 8;
  for (int i = 0; i < 4; i++) {
    const char *slash = i < 3 ? memchr(q, '/', (size_t)(end - q)) : NULL;
    f[i] = q;
    l[i] = (size_t)((slash ? slash : end) - q);
    if (i < 3 && !slash) return "expected msgin5g/<deviceId>/out/<addrType>/<addr>";
    q = slash ? slash + 1 : end;
  }
  if (memchr(f[3], '/', l[3])) return "expected msgin5g/<deviceId>/out/<addrType>/<addr>";
  if (l[1] != 3 || memcmp(f[1], "out", 3)) return "expected msgin5g/<deviceId>/out/...";
  if (!l[0] || l[0] > M5_MSG_ADDR_MAX || memchr(f[0], '\0', l[0])) return "bad device ID";
  memcpy(dev, f[0], l[0]);
  dev[l[0]] = '\0';
  if (!gwmq_device_id_ok(dev)) return "bad device ID";
  static const char *const types[] = {"UE", "AS", "GROUP", "BC", "TOPIC"};
  bool ok = false;
  for (size_t i = 0; i < sizeof types / sizeof *types && !ok; i++)
    ok = l[2] == strlen(types[i]) && !memcmp(f[2], types[i], l[2]);
  if (!ok) return "addrType must be UE, AS, GROUP, BC or TOPIC (upper case)";
  memcpy(type, f[2], l[2]);
  type[l[2]] = '\0';
  if (!l[3] || l[3] > M5_MSG_ADDR_MAX || memchr(f[3], '\0', l[3])) return "bad address";
  memcpy(addr, f[3], l[3]);
  addr[l[3]] = '\0';
  if (!m5_msg_svc_id_valid(addr)) return "bad address";
  return NULL;
}

static void on_publish(gw_t *g, uint8_t tf, const uint8_t *b, size_t len) {
  m5_mqtt_publish_t p;
  if (m5_mqtt_parse_publish(M5_MQTT_V5, tf, b, len, &p)) {
    gwmq_conn_drop(g->conn, "malformed PUBLISH from the broker");
    return;
  }
  if (p.qos) {
    for (size_t i = 0; i < g->n_pend; i++) {
      up_t *e = g->pend[i];
      if (e->pid != p.pid) continue;
      /* the broker's redelivery of a message we have: acknowledge it once it is spooled */
      if (e->spooled) {
        send_puback(g, e->pid, 0);
        pend_remove(g, e);
        up_free_if_done(e);
      }
      return;
    }
    if (g->n_pend >= (size_t)g->cfg->receive_max) {
      gwmq_conn_drop(g->conn, "the broker passed our receive maximum");
      return;
    }
  }
  char dev[M5_MSG_ADDR_MAX + 1], type[8], addr[M5_MSG_ADDR_MAX + 1];
  const char *bad = parse_topic(p.topic, p.tlen, dev, type, addr);
  if (bad) {
    refuse(g, &p, bad);
    return;
  }
  if (!served(g, dev, strlen(dev))) {
    refuse(g, &p, "not a device of this gateway");
    return;
  }
  if (p.plen > (size_t)g->cfg->max_payload) {
    refuse(g, &p, "payload larger than mqtt.max_payload");
    return;
  }
  char msg_id[M5_MSG_ID_MAX + 1] = "", app_id[M5_MSG_ADDR_MAX + 1] = "";
  bool report = false;
  m5_mqtt_prop_t pr;
  for (const uint8_t *q = p.props; q && m5_mqtt_prop_next(&q, p.props + p.props_len, &pr) == 1;) {
    if (pr.id != M5_MQTT_P_USER) continue;
    char *dst = NULL;
    size_t cap = 0;
    if (pr.len == 5 && !memcmp(pr.data, "msgId", 5)) {
      dst = msg_id;
      cap = sizeof msg_id;
    } else if (pr.len == 5 && !memcmp(pr.data, "appId", 5)) {
      dst = app_id;
      cap = sizeof app_id;
    } else if (pr.len == 13 && !memcmp(pr.data, "delivStReqInd", 13)) {
      report = pr.len2 == 4 && !memcmp(pr.data2, "true", 4);
    }
    if (!dst) continue;
    if (pr.len2 >= cap || memchr(pr.data2, '\0', pr.len2)) {
      refuse(g, &p, "user property msgId or appId too long");
      return;
    }
    memcpy(dst, pr.data2, pr.len2);
    dst[pr.len2] = '\0';
  }
  if (msg_id[0] && !m5_msg_id_valid(msg_id)) {
    refuse(g, &p, "user property msgId: expected 1-64 of A-Z a-z 0-9 . _ : -");
    return;
  }
  if (app_id[0] && !m5_msg_svc_id_valid(app_id)) {
    refuse(g, &p, "user property appId: expected 1-128 printable characters without spaces");
    return;
  }
  if (!msg_id[0]) { /* an MQTT 3.1.1 device (or one that sets none): ours */
    uint8_t r[12];
    if (RAND_bytes(r, sizeof r) != 1) {
      gwmq_conn_drop(g->conn, "no random bytes for a msgId");
      return;
    }
    for (size_t i = 0; i < sizeof r; i++)
      snprintf(msg_id + 2 * i, 3, "%02x", r[i]);
  }
  up_t *e = calloc(1, sizeof *e);
  if (!e) {
    gwmq_conn_drop(g->conn, "out of memory");
    return;
  }
  e->gw = g;
  e->pid = p.pid;
  e->report_req = report;
  snprintf(e->dev, sizeof e->dev, "%s", dev);
  snprintf(e->msg_id, sizeof e->msg_id, "%s", msg_id);
  snprintf(e->dest, sizeof e->dest, "%s:%s", type, addr);
  e->next = g->ups;
  if (g->ups) g->ups->prev = e;
  g->ups = e;
  if (p.qos) {
    e->in_table = true;
    g->pend[g->n_pend++] = e;
  }
  m5gw_msg_t m = {.ori_type = "UE",
                  .ori_addr = dev,
                  .dest_type = type,
                  .dest_addr = addr,
                  .msg_id = msg_id,
                  .app_id = app_id[0] ? app_id : NULL,
                  .payload = p.payload,
                  .payload_len = p.plen,
                  .report_requested = report};
  M5_LOGD(DOM, "%s -> %s:%s (%s, %zu bytes%s)", dev, type, addr, msg_id, p.plen,
          p.dup ? ", redelivered" : "");
  int rc = m5gw_uplink(g->core, &m, up_cb, e);
  if (rc) {
    e->final = true;
    if (e->in_table) pend_remove(g, e);
    up_free_if_done(e);
    M5_LOGW(DOM, "%s -> %s:%s: the spool refused it (%s); the broker keeps it", dev, type, addr,
            m5_strerror(rc));
    if (p.qos)
      gwmq_conn_drop(g->conn, "reconnecting so that the broker redelivers what the "
                              "spool refused");
  }
}

/* ---- the connection's callbacks ---- */

static void on_up(void *arg, const m5_mqtt_connack_t *ca) {
  gw_t *g = arg;
  g->peer_recv_max = ca->receive_max;
  g->peer_max_packet = ca->max_packet;
  if (!ca->session_present) /* what we owed the old session is moot: nobody will ask again */
    while (g->n_pend) {
      up_t *e = g->pend[0];
      pend_remove(g, e);
      up_free_if_done(e);
    }
  g->subscribed = false;
  g->sub_pid = next_pid(g);
  /* no retained messages: a device's retained publish would come again at every subscription
   * (every reconnection) and be handed to m5s again */
  if (m5_mqtt_put_subscribe(gwmq_conn_out(g->conn), M5_MQTT_V5, g->sub_pid, "msgin5g/+/out/#",
                            1 | M5_MQTT_SUB_NO_RETAINED)) {
    gwmq_conn_drop(g->conn, "cannot queue SUBSCRIBE");
    return;
  }
  gwmq_conn_kick(g->conn);
  pump(g);
}

static void on_down(void *arg, const char *why) {
  gw_t *g = arg;
  g->subscribed = false;
  g->peer_recv_max = 0;
  char reason[200];
  snprintf(reason, sizeof reason, "broker connection lost before its PUBACK: %s", why);
  for (size_t i = 0; i < g->n_infl; i++)
    complete(g, g->infl[i], M5GW_DL_RETRY, reason);
  g->n_infl = 0;
  while (g->wait_head) {
    dl_t *d = g->wait_head;
    g->wait_head = d->next;
    complete(g, d, M5GW_DL_RETRY, "broker connection lost");
  }
  g->wait_tail = NULL;
  g->n_wait = 0;
}

static void on_packet(void *arg, uint8_t tf, const uint8_t *b, size_t len) {
  gw_t *g = arg;
  uint16_t pid;
  uint8_t code;
  switch (tf >> 4) {
  case M5_MQTT_PUBLISH:
    on_publish(g, tf, b, len);
    return;
  case M5_MQTT_PUBACK:
    if (tf & 15 || m5_mqtt_parse_puback(M5_MQTT_V5, b, len, &pid, &code)) break;
    on_puback(g, pid, code);
    return;
  case M5_MQTT_SUBACK:
    if (tf & 15 || m5_mqtt_parse_suback(M5_MQTT_V5, b, len, &pid, &code) || pid != g->sub_pid)
      break;
    if (code != 1) {
      char why[120];
      snprintf(why, sizeof why, "subscription to msgin5g/+/out/# %s (code 0x%02x)",
               code < 0x80 ? "granted below QoS 1" : "refused: check the broker's ACL", code);
      M5_LOGE(DOM, "%s", why);
      gwmq_conn_drop(g->conn, why);
      return;
    }
    g->subscribed = true;
    M5_LOGI(DOM, "subscribed to msgin5g/+/out/# (QoS 1); serving %zu devices",
            m5_hmap_count(g->devices));
    return;
  default:
    break;
  }
  char why[80];
  snprintf(why, sizeof why, "malformed or unexpected packet from the broker (type %u)", tf >> 4);
  gwmq_conn_drop(g->conn, why);
}

int gwmq_deliver(void *state, const m5gw_msg_t *msg, m5gw_dl_fn done, void *arg) {
  gw_t *g = state;
  dl_t *d = calloc(1, sizeof *d);
  if (!d) return M5_ENOMEM;
  d->done = done;
  d->arg = arg;
  const char *dev = msg->dest_addr ? msg->dest_addr : "";
  snprintf(d->what, sizeof d->what, "%s -> %s", msg->msg_id, dev);
  if (!msg->dest_type || strcmp(msg->dest_type, "UE") || !served(g, dev, strlen(dev))) {
    complete(g, d, M5GW_DL_FAILED_UNKNOWN, "not a device of this gateway");
    return 0;
  }
  if (msg->payload_len > (size_t)g->cfg->max_payload) {
    complete(g, d, M5GW_DL_FAILED_CONTENT, "payload larger than mqtt.max_payload");
    return 0;
  }
  if (!gwmq_conn_is_up(g->conn)) {
    complete(g, d, M5GW_DL_RETRY, "the broker is not connected");
    return 0;
  }
  if (g->n_wait >= (size_t)g->cfg->queue_max) {
    complete(g, d, M5GW_DL_RETRY, "too many messages waiting for the broker (mqtt.queue_max)");
    return 0;
  }
  char topic[M5_MSG_ADDR_MAX + 16], ori[M5_MSG_ADDR_MAX + 24];
  snprintf(topic, sizeof topic, "msgin5g/%s/in", dev);
  snprintf(ori, sizeof ori, "%s:%s", msg->ori_type ? msg->ori_type : "",
           msg->ori_addr ? msg->ori_addr : "");
  m5_mqtt_pair_t props[3] = {pair("oriAddr", ori), pair("msgId", msg->msg_id),
                             pair("appId", msg->app_id ? msg->app_id : "")};
  if (msg->report_requested && msg->ori_type && msg->ori_addr) {
    d->report_req = true;
    snprintf(d->ori_type, sizeof d->ori_type, "%s", msg->ori_type);
    snprintf(d->ori_addr, sizeof d->ori_addr, "%s", msg->ori_addr);
    snprintf(d->dev, sizeof d->dev, "%s", dev);
    snprintf(d->msg_id, sizeof d->msg_id, "%s", msg->msg_id);
  }
  if (build_publish(d, topic, props, msg->app_id ? 3 : 2, msg->payload, msg->payload_len)) {
    m5_buf_free(&d->pkt);
    complete(g, d, M5GW_DL_RETRY, "out of memory");
    return 0;
  }
  enqueue(g, d);
  return 0;
}

/* A device reads one vocabulary in delivSt, whoever made the report (docs/gateways-mqtt.md
 * "Reports"): the core passes m5s's reports with TS 29.538's wire values, the gateway's own
 * (m5s refused the message) says FAILED. */
static const char *deliv_st_device(const char *s) {
  if (!strcmp(s, "REPT_DELY_SUCCESS")) return "DELIVERED";
  if (!strcmp(s, "REPT_DELY_FAILED")) return "FAILED";
  return s;
}

int gwmq_report(void *state, const m5gw_report_t *r) {
  gw_t *g = state;
  const char *dev = r->ori_addr ? r->ori_addr : "";
  if (!r->ori_type || strcmp(r->ori_type, "UE") || !served(g, dev, strlen(dev)) || !r->msg_id ||
      !r->deliv_st || !r->dest_type || !r->dest_addr)
    return M5_ENOENT;
  return publish_report(g, dev, r->msg_id, r->dest_type, r->dest_addr,
                        deliv_st_device(r->deliv_st), r->failure_cause);
}

void gwmq_fail_all(gw_t *g, const char *why) {
  on_down(g, why);
  m5_loop_defer_cancel(g->loop, &g->done_defer);
  run_done(g->loop, g);
}

const gwmq_conn_cbs_t gwmq_conn_cbs = {on_up, on_packet, on_down};
