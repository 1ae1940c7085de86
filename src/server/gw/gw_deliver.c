/* m5s -> message gateway: URL, body and answer of a push (gw_deliver.h). */
#include "server/gw/gw_deliver.h"

#include "core/err.h"
#include "msg/msg.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int gw_deliver_url(const registry_gw_t *g, int is_report, char *url, size_t len) {
  int n = snprintf(url, len, "https://%s/%s/v1/%s", g->target,
                   g->kind == REGISTRY_GW_MQTT ? "msgg-n3gdelivery" : "msgg-l3gdelivery",
                   is_report ? "deliver-report" : "deliver-message");
  return n < 0 || (size_t)n >= len ? M5_ERANGE : 0;
}

int gw_deliver_body(const char *as_body, size_t as_len, int is_report, const char *ue_svc_id,
                    char **body, size_t *len) {
  if (is_report) { /* DeliveryStatusReport: the same body an AS gets */
    if (!(*body = malloc(as_len + 1))) return M5_ENOMEM;
    memcpy(*body, as_body, as_len);
    (*body)[as_len] = '\0';
    *len = as_len;
    return 0;
  }
  /* L3gMessageDelivery / N3gMessageDelivery declare UEMessageDelivery's members but the store-
   * and-forward ones: the gateway gets no expiry to act on (m5s keeps the message until its
   * expiry; a gateway that cannot deliver answers 503 or 429 and m5s retries). */
  json_error_t je;
  json_t *o = json_loadb(as_body, as_len, 0, &je);
  if (!o || !json_is_object(o)) {
    json_decref(o);
    return M5_EINVAL;
  }
  json_object_del(o, "stoAndFwInd");
  json_object_del(o, "stoAndFwParams");
  /* The device the gateway is to deliver to: for a group's, an area's or a topic's message
   * the message's own destAddr names those, which the two APIs have no member to carry and a
   * gateway cannot deliver to. */
  json_t *dest = json_pack("{s:s, s:s}", "addrType", "UE", "addr", ue_svc_id);
  if (!dest || json_object_set_new(o, "destAddr", dest) != 0) {
    json_decref(o);
    return M5_ENOMEM;
  }
  *body = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
  json_decref(o);
  if (!*body) return M5_ENOMEM;
  *len = strlen(*body);
  return 0;
}

gw_outcome_t gw_deliver_outcome(int status, long http, const char **cause) {
  *cause = NULL;
  if (status == 0 && http >= 200 && http < 300) return GW_OUT_DELIVERED;
  if (status == 0 && http == 404) {
    *cause = M5_CAUSE_UNKNOWN_RECIPIENT;
    return GW_OUT_FAILED;
  }
  if (status == 0 && http >= 400 && http < 500 && http != 429 && http != 408) {
    *cause = M5_CAUSE_REJECTED;
    return GW_OUT_FAILED;
  }
  return GW_OUT_RETRY;
}
