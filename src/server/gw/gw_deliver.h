/* m5s -> message gateway (MSGin5G-2 / MSGin5G-4; TS 29.538 MSGG_L3GDelivery, MSGG_N3GDelivery;
 * docs/northbound.md "Gateways"): the URL and body of the push of a stored delivery to a UE
 * that a gateway holds. delivery.c pushes it like an AS's (store-and-forward, retries, expiry,
 * reports) and reads the answer with gw_deliver_outcome. */
#ifndef M5_SERVER_GW_DELIVER_H
#define M5_SERVER_GW_DELIVER_H

#include "server/registry/registry.h"
#include "store/store.h"

#include <stddef.h>

/* The API root of gateway g's delivery service: "https://<target>/msgg-l3gdelivery/v1" (kind
 * sms) or ".../msgg-n3gdelivery/v1" (kind mqtt), and the operation: deliver-report for a
 * stored report, else deliver-message. M5_ERANGE when it does not fit. */
int gw_deliver_url(const registry_gw_t *g, int is_report, char *url, size_t len);

/* The body for delivery d (is_report: a DeliveryStatusReport; else an L3gMessageDelivery /
 * N3gMessageDelivery: the members of UEMessageDelivery that schema declares, payload
 * base64, destAddr the device ue_svc_id), malloc'd into *body. as_body is delivery_encode's AS
 * form of d, borrowed. */
int gw_deliver_body(const char *as_body, size_t as_len, int is_report, const char *ue_svc_id,
                    char **body, size_t *len);

/* What a gateway's answer means (TS 29.538 cl. 5.x.2: 204 delivered; 404 an unknown device
 * and 400 content it cannot carry, failed for good; 429, 5xx, a timeout or no answer: not
 * delivered, retried). */
typedef enum { GW_OUT_DELIVERED, GW_OUT_FAILED, GW_OUT_RETRY } gw_outcome_t;
gw_outcome_t gw_deliver_outcome(int status, long http, const char **cause);

#endif
