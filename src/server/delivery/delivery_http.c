/* Pushes to Application Servers and message gateways (delivery_int.h): an HTTP/2 POST of a
 * stored delivery to the AS's {targetUri}/deliver-message or deliver-report (TS 29.538
 * MSGS_MSGDelivery, architecture §3.2), or to a gateway's MSGG_L3GDelivery / MSGG_N3GDelivery
 * (TS 29.538; docs/northbound.md "Gateways"), with m5s's certificate; the answer concludes the
 * attempt in the store like a UE's (delivery.c). */
#include "server/delivery/delivery_int.h"

#include "core/err.h"
#include "core/hmap.h"
#include "core/log.h"
#include "core/str.h"
#include "http/client.h"
#include "msg/msg.h"
#include "server/gw/gw_deliver.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define AS_TIMEOUT_MS 10000 /* one POST to an Application Server */

/* A push in flight towards an Application Server (POST to its targetUri) or a message
 * gateway (POST to its deliver-message / deliver-report, gw). */
typedef struct {
  delivery_t *dv;
  uint64_t id;
  uint32_t attempts;
  int sto_fwd;
  int gw;
  char gw_id[REGISTRY_AS_ID_MAX + 1]; /* gw: the gateway meant, whose certificate must answer */
  char msg_id[M5_MSG_ID_MAX + 1];
  char dest[M5_MSG_ADDR_MAX + 1];
} as_push_t;

/* ---- point-to-application: POST to the AS's targetUri (architecture §3.2) ---- */

static void on_as_done(void *arg, int status, long http, const uint8_t *body, size_t len) {
  (void)body;
  (void)len;
  as_push_t *p = arg;
  delivery_t *dv = p->dv;
  if (dv->freeing) { /* stays in flight in the store: queued again at the next start */
    free(p);
    return;
  }
  if (p->gw) {
    const char *cause;
    switch (gw_deliver_outcome(status, http, &cause)) {
    case GW_OUT_DELIVERED:
      M5_LOGD(DOM, "MSG %s delivered to %s's gateway (HTTP %ld)", p->msg_id, p->dest, http);
      dlv_conclude(dv, M5_STORE_MARK_DELIVERED, p->id, NULL, 0, p->attempts + 1, 0, 0);
      break;
    case GW_OUT_FAILED:
      M5_LOGW(DOM, "MSG %s: %s's gateway refused it (HTTP %ld: %s)", p->msg_id, p->dest, http,
              cause);
      dlv_conclude(dv, M5_STORE_MARK_FAILED, p->id, cause, 0, p->attempts + 1, 0, 0);
      break;
    case GW_OUT_RETRY:
      if (status == M5_EPERM) /* an operator's error (target, DNS, certificate): kept, retried */
        M5_LOGW(DOM,
                "MSG %s to %s: not delivered: the server at gateway %s's target is not gateway "
                "%s (its certificate lacks SAN URI urn:msgin5g:gw:%s)%s",
                p->msg_id, p->dest, p->gw_id, p->gw_id, p->gw_id,
                p->sto_fwd ? ", kept for a retry" : "");
      else
        M5_LOGI(DOM, "MSG %s to %s's gateway: not delivered (%s, HTTP %ld)%s", p->msg_id, p->dest,
                status ? m5_strerror(status) : "answered", http,
                p->sto_fwd ? ", kept for a retry" : "");
      dlv_conclude_unreached(dv, p->id, p->attempts, p->sto_fwd, 0, 0);
      break;
    }
  } else if (status == 0 && http >= 200 && http < 300) {
    M5_LOGD(DOM, "MSG %s delivered to AS %s (HTTP %ld)", p->msg_id, p->dest, http);
    dlv_conclude(dv, M5_STORE_MARK_DELIVERED, p->id, NULL, 0, p->attempts + 1, 0, 0);
  } else if (status == 0 && http >= 400 && http < 500) {
    M5_LOGW(DOM, "MSG %s: AS %s refused it (HTTP %ld)", p->msg_id, p->dest, http);
    dlv_conclude(dv, M5_STORE_MARK_FAILED, p->id, M5_CAUSE_REJECTED, 0, p->attempts + 1, 0, 0);
  } else {
    M5_LOGI(DOM, "MSG %s to AS %s: not delivered (%s)%s", p->msg_id, p->dest,
            status ? m5_strerror(status) : "HTTP 5xx or other",
            p->sto_fwd ? ", kept for a retry" : "");
    dlv_conclude_unreached(dv, p->id, p->attempts, p->sto_fwd, 0, 0);
  }
  free(p);
  dv->pushes--;
  dlv_check_idle(dv);
}

static void http_push(delivery_t *dv, const m5_store_delivery_t *d, const char *url,
                      const char *gw_id, char *body, size_t len);

/* Pushes delivery d (body taken) to the Application Server d->rcpt.addr. */
void dlv_as_push(delivery_t *dv, const m5_store_delivery_t *d, char *body, size_t len) {
  uint64_t id = d->id;
  if (m5_hmap_get(dv->recent, &id, sizeof id) || m5_hmap_get(dv->inflight, &id, sizeof id)) {
    free(body); /* concluded meanwhile, or its push still runs */
    return;
  }
  char target[REGISTRY_URI_MAX + 1];
  if (!dv->opts.reg || registry_as_target(dv->opts.reg, d->rcpt.addr, target, sizeof target) != 0 ||
      !target[0]) {
    free(body);
    dlv_conclude_unreached(dv, id, d->attempts, d->msg.sto_fwd, 0, 0);
    return;
  }
  char url[REGISTRY_URI_MAX + 32];
  size_t n = strlen(target);
  while (n && target[n - 1] == '/')
    n--;
  snprintf(url, sizeof url, "%.*s/%s", (int)n, target,
           dlv_is_report(&d->msg) ? "deliver-report" : "deliver-message");
  http_push(dv, d, url, NULL, body, len);
}

/* Pushes delivery d to the message gateway g that holds its UE recipient, under the ID's
 * generation gen (server/gw/gw_deliver.h). A delivery queued for another holder of the ID
 * (gen differs: the ID changed hands since) is never pushed to this one: not an attempt, the
 * store fails it (REBIND). */
void dlv_gw_push(delivery_t *dv, const m5_store_delivery_t *d, const registry_gw_t *g,
                 uint64_t gen) {
  uint64_t id = d->id;
  if (m5_hmap_get(dv->recent, &id, sizeof id) || m5_hmap_get(dv->inflight, &id, sizeof id))
    return; /* concluded meanwhile, or its push still runs */
  if (d->rcpt_gen != gen) {
    M5_LOGI(DOM,
            "MSG %s to %s: queued under generation %llu, the ID is gateway %s's under "
            "%llu; not pushed",
            d->msg.msg_id, d->rcpt.addr, (unsigned long long)d->rcpt_gen, g->gw_id,
            (unsigned long long)gen);
    dlv_conclude(dv, M5_STORE_RESCHEDULE, id, NULL, dlv_wall_ms() + BACKOFF_FIRST_MS, d->attempts,
                 0, 0);
    return;
  }
  char url[REGISTRY_HOSTPORT_MAX + 64];
  char *as_body = NULL, *body = NULL;
  size_t as_len = 0, len = 0;
  int rep = dlv_is_report(&d->msg);
  if (gw_deliver_url(g, rep, url, sizeof url) != 0 ||
      delivery_encode(d, 1, &as_body, &as_len) != 0 ||
      gw_deliver_body(as_body, as_len, rep, d->rcpt.addr, &body, &len) != 0) {
    free(as_body);
    M5_LOGE(DOM, "delivery %llu: cannot make its body for gateway %s", (unsigned long long)id,
            g->gw_id);
    dlv_conclude(dv, M5_STORE_RESCHEDULE, id, NULL, dlv_wall_ms() + BACKOFF_FIRST_MS, d->attempts,
                 0, 0);
    return;
  }
  free(as_body);
  http_push(dv, d, url, g->gw_id, body, len);
}

/* POSTs body (taken) to url for delivery d; the answer concludes it (on_as_done). For a
 * gateway (gw_id), only to a server whose certificate carries the SAN URI
 * urn:msgin5g:gw:<gw_id>: the CA and the target's host name alone would also let another
 * gateway, or an AS, of the same CA stand at that address. */
static void http_push(delivery_t *dv, const m5_store_delivery_t *d, const char *url,
                      const char *gw_id, char *body, size_t len) {
  uint64_t id = d->id;
  char err[200];
  if (!dv->http) {
    m5_http_client_opts_t ho = {.cert_file = dv->opts.tls_cert,
                                .key_file = dv->opts.tls_key,
                                .ca_file = dv->opts.tls_ca,
                                .timeout_ms = AS_TIMEOUT_MS};
    if (!(dv->http = m5_http_client_new(dv->loop, &ho, err, sizeof err)))
      M5_LOGE(DOM, "cannot make the HTTP client for Application Servers: %s", err);
  }
  as_push_t *p = calloc(1, sizeof *p);
  if (!dv->http || !p || m5_hmap_put(dv->inflight, &id, sizeof id, dv, NULL) != 0) {
    free(p);
    free(body);
    dlv_conclude(dv, M5_STORE_RESCHEDULE, id, NULL, dlv_wall_ms() + BACKOFF_FIRST_MS, d->attempts,
                 0, 0);
    return;
  }
  p->dv = dv;
  p->id = id;
  p->attempts = d->attempts;
  p->sto_fwd = d->msg.sto_fwd;
  p->gw = gw_id != NULL;
  m5_str_copy(p->gw_id, sizeof p->gw_id, gw_id ? gw_id : "");
  m5_str_copy(p->msg_id, sizeof p->msg_id, d->msg.msg_id);
  m5_str_copy(p->dest, sizeof p->dest, d->rcpt.addr);
  int rc;
  if (gw_id) {
    char uri[sizeof p->gw_id + 16];
    snprintf(uri, sizeof uri, "urn:msgin5g:gw:%s", gw_id);
    m5_http_req_opts_t ro = {.peer_uri = uri};
    rc = m5_http_client_request(dv->http, url, &ro, body, len, on_as_done, p);
  } else {
    rc = m5_http_client_post_json(dv->http, url, body, len, on_as_done, p);
  }
  free(body);
  if (rc != 0) {
    free(p);
    m5_hmap_del(dv->inflight, &id, sizeof id);
    dlv_conclude(dv, M5_STORE_RESCHEDULE, id, NULL, dlv_wall_ms() + BACKOFF_FIRST_MS, d->attempts,
                 0, 0);
    return;
  }
  dv->pushes++;
}
