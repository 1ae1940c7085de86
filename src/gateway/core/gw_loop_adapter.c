/* The "loop" adapter: a device side that exists in test builds only (M5_TEST_HOOKS, never in
 * `make run` or a release build), so that the core can be tested against real peers (curl as
 * m5s, a node HTTPS server as m5s's API) before and besides the SMS and MQTT adapters. Its
 * devices echo: a message delivered to device D from X comes back as a message from D to X
 * (msgId "echo-<msgId>", asking for a report if the original did), and a report is sent up
 * when one was asked for. A destination whose
 * ID starts with "unknown" is an unknown device (404), "busy" a device side that asks for a
 * retry (503), "toolarge" content it cannot carry (400), "silent" one that never answers
 * until the gateway stops (503 then). Every call is one JSON line in loop.log. */
#ifdef M5_TEST_HOOKS
#include "core/err.h"
#include "core/log.h"
#include "core/str.h"
#include "gateway/gw_adapter.h"

#include <jansson.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
  char *log_path;
  m5_strlist_t reg;
  m5_strlist_t dereg;
  int echo;
} loop_cfg_t;

static const m5_cfg_item_t loop_items[] = {
    {"loop.log", M5_CFG_STR, offsetof(loop_cfg_t, log_path), NULL, 0, 0,
     "file receiving one JSON line per adapter event (test builds only)"},
    {"loop.register", M5_CFG_STRLIST, offsetof(loop_cfg_t, reg), NULL, 0, 0,
     "UE Service IDs registered with m5s at start"},
    {"loop.deregister", M5_CFG_STRLIST, offsetof(loop_cfg_t, dereg), NULL, 0, 0,
     "UE Service IDs de-registered once the registration is done"},
    {"loop.echo", M5_CFG_BOOL, offsetof(loop_cfg_t, echo), "true", 0, 0,
     "send each delivered message back up from its recipient"},
};

typedef struct dl {
  struct dl *next;
  struct loop_state *st;
  m5gw_dl_fn done;
  void *arg;
  m5gw_dl_result_t result;
  char reason[64];
  m5_timer_id_t timer;
} dl_t;

typedef struct up up_t;

typedef struct loop_state {
  m5_loop_t *loop;
  const loop_cfg_t *cfg;
  m5gw_core_t *core;
  dl_t *dls;
  up_t *ups; /* uplinks not final yet: freed at stop (the core calls no one after it) */
} loop_state_t;

static void log_line(loop_state_t *st, json_t *o) {
  char *text = o ? json_dumps(o, JSON_COMPACT) : NULL;
  json_decref(o);
  if (!text) return;
  M5_LOGI("loop", "%s", text);
  if (st->cfg->log_path && *st->cfg->log_path) {
    FILE *f = fopen(st->cfg->log_path, "a");
    if (f) {
      fprintf(f, "%s\n", text);
      fclose(f);
    }
  }
  free(text);
}

static const char *phase_name(m5gw_up_phase_t p) {
  return p == M5GW_UP_SPOOLED ? "SPOOLED" : p == M5GW_UP_ACCEPTED ? "ACCEPTED" : "REFUSED";
}

struct up {
  up_t *prev, *next;
  loop_state_t *st;
  char msg_id[65]; /* a msgId: at most 64 characters */
};

static void up_unlink(up_t *u) {
  if (u->prev)
    u->prev->next = u->next;
  else
    u->st->ups = u->next;
  if (u->next) u->next->prev = u->prev;
}

static void on_up(void *arg, m5gw_up_phase_t phase, const char *reason) {
  up_t *u = arg;
  log_line(u->st, json_pack("{s:s, s:s, s:s, s:s?}", "event", "up", "msgId", u->msg_id, "phase",
                            phase_name(phase), "reason", reason));
  if (phase != M5GW_UP_SPOOLED) {
    up_unlink(u);
    free(u);
  }
}

static void on_dereg(void *arg, int status, const char *reason) {
  log_line(arg, json_pack("{s:s, s:i, s:s?}", "event", "deregistered", "status", status, "reason",
                          reason));
}

static void on_reg(void *arg, int status, const char *reason) {
  loop_state_t *st = arg;
  log_line(
      st, json_pack("{s:s, s:i, s:s?}", "event", "registered", "status", status, "reason", reason));
  for (size_t i = 0; status == 0 && i < st->cfg->dereg.n; i++)
    if (m5gw_deregister(st->core, st->cfg->dereg.v[i], on_dereg, st) != 0)
      on_dereg(st, M5_EINVAL, "refused by the core");
}

static void dl_fire(m5_loop_t *loop, void *arg) {
  (void)loop;
  dl_t *d = arg;
  loop_state_t *st = d->st;
  for (dl_t **p = &st->dls; *p; p = &(*p)->next)
    if (*p == d) {
      *p = d->next;
      break;
    }
  d->done(d->arg, d->result, d->reason);
  free(d);
}

static int prefixed(const char *s, const char *p) {
  return strncmp(s, p, strlen(p)) == 0;
}

static int loop_deliver(void *state, const m5gw_msg_t *m, m5gw_dl_fn done, void *arg) {
  loop_state_t *st = state;
  dl_t *d = calloc(1, sizeof *d);
  if (!d) return M5_ENOMEM;
  d->st = st;
  d->done = done;
  d->arg = arg;
  json_t *o =
      json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s%, s:b, s:s?}", "event", "deliver", "oriType",
                m->ori_type, "ori", m->ori_addr, "destType", m->dest_type, "dest", m->dest_addr,
                "msgId", m->msg_id, "payload", (const char *)m->payload, m->payload_len, "report",
                m->report_requested, "appId", m->app_id);
  log_line(st, o);
  d->result = M5GW_DL_DELIVERED;
  if (prefixed(m->dest_addr, "unknown")) {
    d->result = M5GW_DL_FAILED_UNKNOWN;
    snprintf(d->reason, sizeof d->reason, "no device %.32s", m->dest_addr);
  } else if (prefixed(m->dest_addr, "busy")) {
    d->result = M5GW_DL_RETRY;
    snprintf(d->reason, sizeof d->reason, "device side busy");
  } else if (prefixed(m->dest_addr, "toolarge")) {
    d->result = M5GW_DL_FAILED_CONTENT;
    snprintf(d->reason, sizeof d->reason, "payload too large for the device");
  }
  d->next = st->dls;
  st->dls = d;
  if (prefixed(m->dest_addr, "silent")) return 0; /* answered at stop */
  d->timer = m5_loop_timer_add(st->loop, 0, dl_fire, d);
  if (d->result != M5GW_DL_DELIVERED) return 0;
  if (m->report_requested) {
    m5gw_report_t r = {.ori_type = m->ori_type,
                       .ori_addr = m->ori_addr,
                       .dest_type = "UE",
                       .dest_addr = m->dest_addr,
                       .msg_id = m->msg_id,
                       .deliv_st = "DELIVERED"};
    int rc = m5gw_report_up(st->core, &r);
    log_line(st, json_pack("{s:s, s:s, s:i}", "event", "report_up", "msgId", m->msg_id, "rc", rc));
  }
  if (!st->cfg->echo) return 0;
  up_t *u = calloc(1, sizeof *u);
  if (!u) return 0;
  u->st = st;
  snprintf(u->msg_id, sizeof u->msg_id, "echo-%.58s", m->msg_id);
  m5gw_msg_t back = {.ori_type = "UE",
                     .ori_addr = m->dest_addr,
                     .dest_type = m->ori_type,
                     .dest_addr = m->ori_addr,
                     .msg_id = u->msg_id,
                     .app_id = m->app_id,
                     .payload = m->payload,
                     .payload_len = m->payload_len,
                     .report_requested = m->report_requested};
  u->next = st->ups;
  if (st->ups) st->ups->prev = u;
  st->ups = u;
  if (m5gw_uplink(st->core, &back, on_up, u) != 0) {
    up_unlink(u);
    free(u);
  }
  return 0;
}

static int loop_report(void *state, const m5gw_report_t *r) {
  loop_state_t *st = state;
  log_line(st, json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s?}", "event", "report", "ori",
                         r->ori_addr, "dest", r->dest_addr, "msgId", r->msg_id, "delivSt",
                         r->deliv_st, "destType", r->dest_type, "failureCause", r->failure_cause));
  return prefixed(r->ori_addr, "unknown") ? M5_ENOENT : 0;
}

static int loop_start(m5_loop_t *loop, const void *cfg, m5gw_core_t *core, void **state, char *err,
                      size_t errlen) {
  loop_state_t *st = calloc(1, sizeof *st);
  if (!st) {
    snprintf(err, errlen, "out of memory");
    return M5_ENOMEM;
  }
  st->loop = loop;
  st->cfg = cfg;
  st->core = core;
  *state = st;
  if (st->cfg->reg.n) {
    int rc = m5gw_register(core, (const char *const *)st->cfg->reg.v, st->cfg->reg.n, on_reg, st);
    if (rc != 0) {
      snprintf(err, errlen, "loop.register: refused (%s)", m5_strerror(rc));
      free(st);
      return rc;
    }
  }
  log_line(st, json_pack("{s:s}", "event", "started"));
  return 0;
}

static void loop_stop(void *state) {
  loop_state_t *st = state;
  while (st->dls) {
    dl_t *d = st->dls;
    st->dls = d->next;
    if (d->timer) m5_loop_timer_cancel(st->loop, d->timer);
    d->done(d->arg, M5GW_DL_RETRY, "gateway stopping");
    free(d);
  }
  while (st->ups) {
    up_t *u = st->ups;
    up_unlink(u);
    free(u);
  }
  log_line(st, json_pack("{s:s}", "event", "stopped"));
  free(st);
}

/* loop.register, when given: the core de-registers at m5s what it holds for the gateway
 * besides them (without it, m5s is left alone: most tests of the core register nothing). */
static int loop_served(void *state, void (*each)(void *arg, const char *ue_svc_id), void *arg) {
  const loop_state_t *st = state;
  if (!st->cfg->reg.n) return M5_ENOENT;
  for (size_t i = 0; i < st->cfg->reg.n; i++)
    each(arg, st->cfg->reg.v[i]);
  return 0;
}

const m5gw_adapter_ops_t m5gw_loop_adapter = {.kind = "loop",
                                              .api = "msgg-n3gdelivery",
                                              .cfg_items = loop_items,
                                              .n_cfg_items =
                                                  sizeof loop_items / sizeof loop_items[0],
                                              .cfg_size = sizeof(loop_cfg_t),
                                              .start = loop_start,
                                              .deliver = loop_deliver,
                                              .report = loop_report,
                                              .served = loop_served,
                                              .stop = loop_stop};
#else
typedef int m5gw_loop_adapter_absent; /* ISO C wants a declaration in every file */
#endif
