/* The contract between the message gateway's core and one device-side adapter.
 *
 * A gateway process (m5gw) has one core and one adapter, both on the same loop thread:
 *  - the core (gw_core.c & co.) faces m5s over MSGin5G-2/-4 (TS 23.554 cl. 5.3.4; TS 29.538):
 *    it fetches and renews its token, registers the devices it serves, sends what devices
 *    originate to `deliver-ue-message` from a durable local spool, hosts MSGG_L3GDelivery or
 *    MSGG_N3GDelivery (`deliver-message`, `deliver-report`) on its own TLS listener;
 *  - the adapter faces the devices' own system: an SMSC over SMPP 3.4 (Legacy 3GPP Message
 *    Gateway, kind "sms") or an MQTT broker (Non-3GPP Message Gateway, kind "mqtt").
 * Neither knows the other's wire: the adapter never speaks HTTP, the core never speaks SMPP or
 * MQTT. Every string passed across is only valid during the call (copy what you keep). */
#ifndef M5_GATEWAY_GW_ADAPTER_H
#define M5_GATEWAY_GW_ADAPTER_H

#include "core/config.h"
#include "core/loop.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct m5gw_core m5gw_core_t;

/* One message, either way. Addresses as on the wire of TS 29.538 (Address: addrType upper
 * case, e.g. "UE", "AS", "GROUP"; addr the ID). */
typedef struct {
  const char *ori_type, *ori_addr;   /* uplink: "UE" + the device's UE Service ID */
  const char *dest_type, *dest_addr; /* downlink: "UE" + the device's UE Service ID */
  const char *msg_id;                /* never NULL: uplink IDs are the adapter's, stable across
                                        a re-send of the same device message where it can */
  const char *app_id;                /* or NULL */
  const uint8_t *payload;            /* raw bytes (base64 only on the HTTP wire) */
  size_t payload_len;
  bool report_requested;             /* delivStReqInd */
} m5gw_msg_t;

/* A delivery status report (DeliveryStatusReport of TS 29.538): about the message msg_id that
 * ori_* sent to dest_*; deliv_st as on the wire ("DELIVERED", "FAILED", ...); failure_cause or
 * NULL. */
typedef struct {
  const char *ori_type, *ori_addr;
  const char *dest_type, *dest_addr;
  const char *msg_id;
  const char *deliv_st;
  const char *failure_cause;
} m5gw_report_t;

/* ---- adapter -> core ---- */

/* What became of an uplink message; the callback runs on the loop, never inside the call that
 * started it, once per phase that applies:
 *   M5GW_UP_SPOOLED  : durable in the gateway's spool (fsync'd); survives kill -9, and the core
 *                      will keep sending it to m5s until m5s answers for good;
 *   M5GW_UP_ACCEPTED : m5s acknowledged it (a 2xx); final; reason = the MessageDeliveryAck's
 *                      "status[: failureCause]" when it has one ("DELY_STORED",
 *                      "DELY_FAILED: UNKNOWN_RECIPIENT": m5s took it but cannot deliver it),
 *                      else NULL;
 *   M5GW_UP_REFUSED  : m5s refused it for good (4xx; reason = the ProblemDetails' detail), or
 *                      the spool refused it (full, bad input); final, nothing kept.
 * The MQTT adapter acknowledges its device at SPOOLED, the SMS adapter answers deliver_sm_resp
 * at ACCEPTED. After a restart the core re-sends spooled messages without calling anyone. */
typedef enum { M5GW_UP_SPOOLED, M5GW_UP_ACCEPTED, M5GW_UP_REFUSED } m5gw_up_phase_t;
typedef void (*m5gw_up_fn)(void *arg, m5gw_up_phase_t phase, const char *reason);
int m5gw_uplink(m5gw_core_t *core, const m5gw_msg_t *msg, m5gw_up_fn cb, void *arg);

/* For a device side that sends again what it never saw acknowledged (an SMSC delivers a
 * deliver_sm again until it gets its deliver_sm_resp): after a restart (kill -9 included), a
 * message restored from the spool was handed over before it and never acknowledged to the
 * device side, which will send it again. This finds the restored message with the same
 * oriAddr, destAddr, appId, payload and report_requested as msg (each restored message is
 * found once, oldest first) and copies its msgId into msg_id (cap bytes): 1, else 0.
 * Uplinking the copy under that msgId makes it a repeat that m5s drops by (oriAddr, msgId):
 * the device's message reaches its recipient once. */
int m5gw_uplink_restored(m5gw_core_t *core, const m5gw_msg_t *msg, char *msg_id, size_t cap);

/* A report the device side produced (an SMSC delivery receipt, ...) about a message m5s
 * delivered to one of our devices: sent to m5s's deliver-report, spooled like a message. */
int m5gw_report_up(m5gw_core_t *core, const m5gw_report_t *r);

/* Registers (or de-registers) UE Service IDs with m5s as served by this gateway (our
 * resource /msgs-gwueregistration/v1, docs/gateways.md); done(arg, 0) or a negative M5_E*
 * with a reason. At most 1,000 IDs per call. */
typedef void (*m5gw_reg_fn)(void *arg, int status, const char *reason);
int m5gw_register(m5gw_core_t *core, const char *const *ue_svc_ids, size_t n, m5gw_reg_fn done,
                  void *arg);
int m5gw_deregister(m5gw_core_t *core, const char *ue_svc_id, m5gw_reg_fn done, void *arg);

/* ---- core -> adapter ---- */

/* The outcome of one downlink delivery; the core answers m5s's deliver-message with it:
 * DELIVERED -> 204 (the device's system took it: submit_sm_resp OK, broker's PUBACK),
 * RETRY     -> 503 (SMSC throttling or unreachable, broker down: m5s retries later),
 * FAILED    -> 404 unknown device / 400 content the device side cannot carry (reason says). */
typedef enum { M5GW_DL_DELIVERED, M5GW_DL_RETRY, M5GW_DL_FAILED_UNKNOWN, M5GW_DL_FAILED_CONTENT } m5gw_dl_result_t;
typedef void (*m5gw_dl_fn)(void *arg, m5gw_dl_result_t result, const char *reason);

typedef struct {
  const char *kind; /* "sms" or "mqtt": the configuration's `kind` */
  const char *api;  /* the MSGG API it hosts: "msgg-l3gdelivery" or "msgg-n3gdelivery" */
  /* Its configuration keys, named "<kind>.<key>" (e.g. "mqtt.host"), offsets into a struct
   * of cfg_size bytes; the core loads them from the same YAML file as its own keys. */
  const m5_cfg_item_t *cfg_items;
  size_t n_cfg_items;
  size_t cfg_size;
  /* Starts on loop; *state is the adapter's. cfg lives until after stop(). */
  int (*start)(m5_loop_t *loop, const void *cfg, m5gw_core_t *core, void **state, char *err,
               size_t errlen);
  /* Delivers one message to a device; done runs once, on the loop (possibly much later). */
  int (*deliver)(void *state, const m5gw_msg_t *msg, m5gw_dl_fn done, void *arg);
  /* A report m5s sends about a message one of our devices originated with report_requested. */
  int (*report)(void *state, const m5gw_report_t *r);
  /* The UE Service IDs this adapter serves by its configuration (the devices it registers),
   * each passed to each(arg, id) before it returns; 0, or M5_ENOENT when it registers none
   * of its own accord (then m5s's registrations are left alone). Called once, after start().
   * The core converges m5s to them: what m5s holds for the gateway besides these is
   * de-registered (gw_sync.c; docs/gateways.md "Registration"). NULL: as M5_ENOENT. */
  int (*served)(void *state, void (*each)(void *arg, const char *ue_svc_id), void *arg);
  /* Stops: outstanding deliver() calls complete with M5GW_DL_RETRY first. */
  void (*stop)(void *state);
} m5gw_adapter_ops_t;

extern const m5gw_adapter_ops_t m5gw_sms_adapter;  /* gw_sms*.c */
extern const m5gw_adapter_ops_t m5gw_mqtt_adapter; /* gw_mqtt*.c */

#endif
