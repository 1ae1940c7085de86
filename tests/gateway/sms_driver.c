/* Test driver for the SMS adapter (not a product): runs m5gw_sms_adapter on a loop against a
 * real SMSC and plays the gateway core's side of gw_adapter.h by recording what the adapter
 * calls, so tests/gateway/sms_* can drive both ends. The core itself (src/gateway/core) links
 * the same adapter.
 *
 *   m5gw_sms_driver CONFIG.yaml [N]   (the adapter's sms.* keys; the first N m5gw_register
 *                                     calls fail, as when m5s is unreachable)
 *
 * stdin, one command a line:
 *   deliver TAG ORI_TYPE ORI_ADDR DEST_UE REPORT(0|1) HEX   -> "DL TAG RESULT reason"
 *   report REP_TYPE REP_ADDR DEVICE_UE MSGID DELIVST [CAUSE] -> "REPORT_RC rc" (a report by
 *                               REP on the device's message MSGID)
 *   uplink accept|refuse|hold   how m5gw_uplink answers (SPOOLED, then ACCEPTED / REFUSED /
 *                               nothing until "release")
 *   release                     ACCEPTED for every held uplink
 *   register ok|fail            how m5gw_register answers from now on
 *   ping                        -> "PONG" (everything before it was handled)
 *   quit                        stop() the adapter and exit
 * stdout, one event a line: READY, REGISTER <n> <ids>, UP <msgId> <oriType>:<ori>
 *   <destType>:<dest> <report> <hex payload>, REPORT_UP <sender> <recipient> <msgId> <delivSt>
 *   <cause> (the reported message's sender and recipient, gw_adapter.h),
 *   DL <tag> <DELIVERED|RETRY|FAILED_UNKNOWN|FAILED_CONTENT> <reason>. */
#include "gw_adapter.h"

#include "core/config.h"
#include "core/err.h"
#include "core/log.h"
#include "core/loop.h"

#include <fcntl.h>
#include <stdarg.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* A callback the core owes the adapter: an uplink phase or a registration's answer. */
typedef struct held {
  struct held *next, *prev;
  m5gw_up_fn cb;
  m5gw_reg_fn reg;
  void *arg;
  m5gw_up_phase_t phase;
  int status;
  char reason[64];
  m5_timer_id_t timer;
} held_t;

struct m5gw_core {
  m5_loop_t *loop;
  const m5gw_adapter_ops_t *ops;
  void *state;
  enum { UP_ACCEPT, UP_REFUSE, UP_HOLD } up_mode;
  int reg_fail;
  held_t *held;      /* waiting for "release" */
  held_t *scheduled; /* callbacks due on a timer */
  char line[70000];
  size_t line_len;
  int quitting;
};

static m5gw_core_t core;

static void out(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void out(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vprintf(fmt, ap);
  va_end(ap);
  putchar('\n');
  fflush(stdout);
}

static void hexdump(char *dst, const uint8_t *p, size_t n) {
  for (size_t i = 0; i < n; i++)
    sprintf(dst + 2 * i, "%02x", p[i]);
  dst[2 * n] = 0;
  if (!n) strcpy(dst, "-");
}

/* ---- the core's functions, recorded ---- */

static void run_one(m5_loop_t *loop, void *arg) {
  held_t *h = arg;
  (void)loop;
  if (h->prev) h->prev->next = h->next;
  else core.scheduled = h->next;
  if (h->next) h->next->prev = h->prev;
  if (h->reg) h->reg(h->arg, h->status, h->reason[0] ? h->reason : NULL);
  else h->cb(h->arg, h->phase, h->reason[0] ? h->reason : NULL);
  free(h);
}

static void schedule(held_t *h, uint64_t ms) {
  h->prev = NULL, h->next = core.scheduled;
  if (core.scheduled) core.scheduled->prev = h;
  core.scheduled = h;
  h->timer = m5_loop_timer_add(core.loop, ms, run_one, h);
}

static void later(m5gw_up_fn cb, void *arg, m5gw_up_phase_t phase, const char *reason,
                  uint64_t ms) {
  held_t *h = calloc(1, sizeof(*h));
  if (!h) abort();
  h->cb = cb, h->arg = arg, h->phase = phase;
  snprintf(h->reason, sizeof(h->reason), "%s", reason ? reason : "");
  schedule(h, ms);
}

int m5gw_uplink(m5gw_core_t *c, const m5gw_msg_t *m, m5gw_up_fn cb, void *arg) {
  char *hex = malloc(2 * m->payload_len + 2);
  if (!hex) return M5_ENOMEM;
  hexdump(hex, m->payload, m->payload_len);
  out("UP %s %s:%s %s:%s %d %s", m->msg_id, m->ori_type, m->ori_addr, m->dest_type, m->dest_addr,
      m->report_requested ? 1 : 0, hex);
  free(hex);
  later(cb, arg, M5GW_UP_SPOOLED, NULL, 0);
  if (c->up_mode == UP_ACCEPT) {
    later(cb, arg, M5GW_UP_ACCEPTED, NULL, 1);
  } else if (c->up_mode == UP_REFUSE) {
    later(cb, arg, M5GW_UP_REFUSED, "403 oriAddr not allowed", 1);
  } else {
    held_t *h = calloc(1, sizeof(*h));
    if (!h) abort();
    h->cb = cb, h->arg = arg, h->phase = M5GW_UP_ACCEPTED;
    h->next = c->held, c->held = h;
  }
  return M5_OK;
}

int m5gw_report_up(m5gw_core_t *c, const m5gw_report_t *r) {
  (void)c;
  out("REPORT_UP %s:%s %s:%s %s %s %s", r->ori_type, r->ori_addr, r->dest_type, r->dest_addr,
      r->msg_id, r->deliv_st, r->failure_cause ? r->failure_cause : "-");
  return M5_OK;
}

int m5gw_uplink_restored(m5gw_core_t *c, const m5gw_msg_t *m, char *msg_id, size_t cap) {
  (void)c, (void)m, (void)msg_id, (void)cap;
  return 0; /* the driver has no spool: nothing is restored */
}

int m5gw_register(m5gw_core_t *c, const char *const *ids, size_t n, m5gw_reg_fn done,
                  void *arg) {
  char buf[4096] = "";
  size_t o = 0;
  for (size_t i = 0; i < n && o + 300 < sizeof(buf); i++)
    o += (size_t)snprintf(buf + o, sizeof(buf) - o, "%s%s", i ? "," : "", ids[i]);
  out("REGISTER %zu %s", n, buf);
  held_t *h = calloc(1, sizeof(*h));
  if (!h) return M5_ENOMEM;
  int fail = c->reg_fail > 0;
  if (fail) c->reg_fail--;
  h->reg = done, h->arg = arg, h->status = fail ? M5_EIO : 0;
  snprintf(h->reason, sizeof(h->reason), "%s", fail ? "m5s unreachable" : "");
  schedule(h, 1);
  return M5_OK;
}

int m5gw_deregister(m5gw_core_t *c, const char *id, m5gw_reg_fn done, void *arg) {
  (void)c, (void)id, (void)done, (void)arg;
  return M5_EINVAL;
}

/* ---- commands ---- */

static const char *dl_name(m5gw_dl_result_t r) {
  switch (r) {
  case M5GW_DL_DELIVERED: return "DELIVERED";
  case M5GW_DL_RETRY: return "RETRY";
  case M5GW_DL_FAILED_UNKNOWN: return "FAILED_UNKNOWN";
  default: return "FAILED_CONTENT";
  }
}

static void on_dl(void *arg, m5gw_dl_result_t res, const char *reason) {
  char *tag = arg;
  out("DL %s %s %s", tag, dl_name(res), reason ? reason : "-");
  free(tag);
}

static int unhex(const char *h, uint8_t *outp, size_t *n) {
  size_t l = strlen(h);
  if (!strcmp(h, "-")) l = 0;
  if (l % 2) return -1;
  for (size_t i = 0; i < l / 2; i++) {
    unsigned v;
    if (sscanf(h + 2 * i, "%2x", &v) != 1) return -1;
    outp[i] = (uint8_t)v;
  }
  *n = l / 2;
  return 0;
}

static void quit(void) {
  if (core.quitting) return;
  core.quitting = 1;
  core.ops->stop(core.state);
  /* What the core still owes the adapter after stop(): given now, as a core stopping would,
   * so the adapter's records of them are freed. */
  while (core.scheduled) {
    held_t *h = core.scheduled;
    m5_loop_timer_cancel(core.loop, h->timer);
    run_one(core.loop, h);
  }
  while (core.held) {
    held_t *h = core.held;
    core.held = h->next;
    h->cb(h->arg, M5GW_UP_REFUSED, "driver stopping");
    free(h);
  }
  m5_loop_stop(core.loop);
}

static void command(char *l) {
  char *save = NULL, *cmd = strtok_r(l, " ", &save);
  if (!cmd) return;
  if (!strcmp(cmd, "deliver")) {
    char *tag = strtok_r(NULL, " ", &save), *ot = strtok_r(NULL, " ", &save),
         *oa = strtok_r(NULL, " ", &save), *ue = strtok_r(NULL, " ", &save),
         *rep = strtok_r(NULL, " ", &save), *hex = strtok_r(NULL, " ", &save);
    static uint8_t payload[40000];
    size_t n = 0;
    if (!hex || unhex(hex, payload, &n)) {
      out("ERROR bad deliver line");
      return;
    }
    m5gw_msg_t m = {.ori_type = ot, .ori_addr = oa, .dest_type = "UE", .dest_addr = ue,
                    .msg_id = tag, .payload = payload, .payload_len = n,
                    .report_requested = rep[0] == '1'};
    char *t = strdup(tag);
    int rc = core.ops->deliver(core.state, &m, on_dl, t);
    if (rc) {
      out("DL %s ERROR %d", tag, rc);
      free(t);
    }
  } else if (!strcmp(cmd, "report")) {
    char *ot = strtok_r(NULL, " ", &save), *oa = strtok_r(NULL, " ", &save),
         *ue = strtok_r(NULL, " ", &save), *id = strtok_r(NULL, " ", &save),
         *st = strtok_r(NULL, " ", &save), *cause = strtok_r(NULL, "", &save);
    if (!st) {
      out("ERROR bad report line");
      return;
    }
    /* ot:oa is who reports (the recipient of the device's message), ue the device */
    m5gw_report_t r = {.ori_type = "UE", .ori_addr = ue, .dest_type = ot, .dest_addr = oa,
                       .msg_id = id, .deliv_st = st, .failure_cause = cause};
    out("REPORT_RC %d", core.ops->report(core.state, &r));
  } else if (!strcmp(cmd, "uplink")) {
    char *mode = strtok_r(NULL, " ", &save);
    core.up_mode = mode && !strcmp(mode, "refuse") ? UP_REFUSE
                   : mode && !strcmp(mode, "hold") ? UP_HOLD
                                                   : UP_ACCEPT;
    out("OK uplink");
  } else if (!strcmp(cmd, "release")) {
    while (core.held) {
      held_t *h = core.held;
      core.held = h->next;
      schedule(h, 0);
    }
    out("OK release");
  } else if (!strcmp(cmd, "register")) {
    char *mode = strtok_r(NULL, " ", &save);
    core.reg_fail = mode && !strcmp(mode, "fail") ? 1000000 : 0;
    out("OK register");
  } else if (!strcmp(cmd, "ping")) {
    out("PONG");
  } else if (!strcmp(cmd, "quit")) {
    quit();
  } else {
    out("ERROR unknown command %s", cmd);
  }
}

static void on_stdin(m5_loop_t *loop, int fd, uint32_t ev, void *arg) {
  (void)ev, (void)arg;
  char buf[8192];
  ssize_t r = read(fd, buf, sizeof(buf));
  if (r <= 0) {
    if (r == 0) {
      m5_loop_del_fd(loop, fd);
      quit();
    }
    return;
  }
  for (ssize_t i = 0; i < r && !core.quitting; i++) {
    if (buf[i] == '\n') {
      core.line[core.line_len] = 0;
      command(core.line);
      core.line_len = 0;
    } else if (core.line_len + 1 < sizeof(core.line)) {
      core.line[core.line_len++] = buf[i];
    }
  }
}

static void on_signal(m5_loop_t *loop, int signo, void *arg) {
  (void)loop, (void)signo, (void)arg;
  quit();
}

int main(int argc, char **argv) {
  if (argc != 2 && argc != 3) {
    fprintf(stderr, "usage: %s CONFIG.yaml [REGISTER_FAILURES]\n", argv[0]);
    return 2;
  }
  if (argc == 3) core.reg_fail = atoi(argv[2]);
  m5_log_set_level(M5_LOG_DEBUG);
  core.ops = &m5gw_sms_adapter;
  void *cfg = calloc(1, core.ops->cfg_size);
  char err[512];
  if (!cfg || m5_config_load(argv[1], core.ops->cfg_items, core.ops->n_cfg_items, cfg, err,
                             sizeof(err)) != M5_OK) {
    fprintf(stderr, "config: %s\n", err);
    free(cfg);
    return 2;
  }
  int sigs[] = {SIGTERM, SIGINT};
  m5_signals_block(sigs, 2);
  signal(SIGPIPE, SIG_IGN);
  core.loop = m5_loop_new();
  m5_loop_signal(core.loop, SIGTERM, on_signal, NULL);
  m5_loop_signal(core.loop, SIGINT, on_signal, NULL);
  if (core.ops->start(core.loop, cfg, &core, &core.state, err, sizeof(err)) != M5_OK) {
    fprintf(stderr, "start: %s\n", err);
    m5_config_free(core.ops->cfg_items, core.ops->n_cfg_items, cfg);
    free(cfg);
    m5_loop_free(core.loop);
    return 2;
  }
  fcntl(0, F_SETFL, fcntl(0, F_GETFL) | O_NONBLOCK);
  m5_loop_add_fd(core.loop, 0, M5_EV_READ, on_stdin, NULL);
  out("READY");
  m5_loop_run(core.loop);
  m5_loop_free(core.loop);
  m5_config_free(core.ops->cfg_items, core.ops->n_cfg_items, cfg);
  free(cfg);
  return 0;
}
