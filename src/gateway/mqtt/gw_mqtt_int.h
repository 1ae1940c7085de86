/* The MQTT adapter's internals shared by gw_mqtt.c (messages both ways, the broker
 * connection's callbacks) and gw_mqtt_start.c (configuration, start, stop, registration of
 * the served devices). Not a public interface: gw_adapter.h is. */
#ifndef M5_GATEWAY_MQTT_GW_MQTT_INT_H
#define M5_GATEWAY_MQTT_GW_MQTT_INT_H

#include "../gw_adapter.h"
#include "mqtt_conn.h"

#include "core/hmap.h"
#include "msg/msg.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define GWMQ_DOM "mqtt"

/* The mqtt.* keys (gw_mqtt_start.c's table). */
typedef struct {
  char *host;
  int64_t port;
  int tls;
  char *ca, *cert, *key, *tls_name;
  char *client_id, *username, *password_file;
  m5_strlist_t devices;
  int64_t keepalive_s, session_expiry_s, max_inflight, receive_max, queue_max, max_payload;
  int64_t reconnect_min_ms, reconnect_max_ms;
} gwmq_cfg_t;

typedef struct gw gw_t;

/* A device message between its PUBLISH and its final phase. */
typedef struct up {
  struct up *prev, *next;
  gw_t *gw; /* NULL once the adapter stopped */
  uint16_t pid;
  bool in_table; /* its PUBACK is still owed to the broker (pid in gw->pend) */
  bool spooled, final, report_req;
  char dev[M5_MSG_ADDR_MAX + 1], msg_id[M5_MSG_ID_MAX + 1];
  char dest[M5_MSG_ADDR_MAX + 16];
} up_t;

/* A downlink message or a report, as a ready PUBLISH whose packet id is patched at sending. */
typedef struct dl {
  struct dl *next;
  m5gw_dl_fn done; /* NULL for a report */
  void *arg;
  m5_buf_t pkt;
  size_t pid_off;
  uint16_t pid;
  m5gw_dl_result_t res;
  char reason[160];
  char what[M5_MSG_ID_MAX + M5_MSG_ADDR_MAX + 8]; /* "msgId -> device", for logs */
  /* a message whose sender asked for a report (delivStReqInd): the device's DELIVERED report
   * goes up (m5gw_report_up) at the broker's PUBACK */
  bool report_req;
  char ori_type[8], ori_addr[M5_MSG_ADDR_MAX + 1], dev[M5_MSG_ADDR_MAX + 1];
  char msg_id[M5_MSG_ID_MAX + 1];
} dl_t;

typedef struct reg {
  gw_t *gw; /* NULL once the adapter stopped */
  size_t off, n;
  uint32_t delay_ms;
  m5_timer_id_t timer;
  bool waiting; /* a m5gw_register call is outstanding */
} reg_t;

struct gw {
  m5_loop_t *loop;
  m5gw_core_t *core;
  const gwmq_cfg_t *cfg;
  SSL_CTX *tls;
  gwmq_conn_t *conn;
  m5_hmap_t *devices;
  uint16_t pid, sub_pid, peer_recv_max;
  uint32_t peer_max_packet; /* the broker's Maximum Packet Size; 0: none */
  bool subscribed;
  dl_t *wait_head, *wait_tail, *done_head, *done_tail;
  size_t n_wait;
  dl_t **infl; /* cfg->max_inflight slots */
  size_t n_infl;
  up_t **pend; /* cfg->receive_max slots: device messages whose PUBACK we owe */
  size_t n_pend;
  up_t *ups; /* every live up_t */
  reg_t **regs;
  size_t n_regs;
  m5_defer_t done_defer;
};

/* gw_mqtt.c */
extern const gwmq_conn_cbs_t gwmq_conn_cbs; /* the broker connection's callbacks */
bool gwmq_device_id_ok(const char *id);
/* Ends every delivery in flight or waiting with RETRY (why) and runs the completions now. */
void gwmq_fail_all(gw_t *g, const char *why);
int gwmq_deliver(void *state, const m5gw_msg_t *msg, m5gw_dl_fn done, void *arg);
int gwmq_report(void *state, const m5gw_report_t *r);

#endif
