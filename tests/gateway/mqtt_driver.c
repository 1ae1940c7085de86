/* mqtt_driver: a test harness around m5gw_mqtt_adapter and a real Mosquitto broker (not a
 * product part). It runs the adapter on an m5_loop exactly as the gateway core does, and is
 * the core's side of gw_adapter.h for the tests: m5gw_uplink / m5gw_report_up /
 * m5gw_register / m5gw_deregister record each call as a line on stdout, and a small spool
 * stand-in answers uplinks (SPOOLED, then ACCEPTED) under the test's control. Commands come
 * one per line on stdin (tests/gateway/mqtt_lib.bash writes them through a FIFO):
 *
 *   deliver DEVICE MSGID ORITYPE:ORIADDR TEXT   -> "dl MSGID RESULT reason" when done
 *   report DEVICE MSGID DESTTYPE:DESTADDR DELIVST [CAUSE]   -> "report rc=N"
 *   spool hold | spool release | spool refuse | spool ok
 *   m5s refuse | m5s ok        (after SPOOLED: REFUSED "forbidden by the test" / ACCEPTED)
 *   quit
 *
 * Output lines: "register ID,ID,...", "uplink ori=UE:mq1 dest=UE:ue2 msgId=.. appId=..
 * report=0|1 payload=HEX", "spooled MSGID", "dl ...", "report rc=N", "ready", "stopped".
 *
 *   mqtt_driver --config FILE [--debug] [--reg-fail N]
 *   (FILE: the adapter's mqtt.* keys, YAML; --reg-fail: the first N registrations fail, as
 *   with m5s unreachable) */
#include "../../src/gateway/gw_adapter.h"

#include "core/err.h"
#include "core/log.h"

#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static m5_loop_t *loop;
static void *state;
static const m5gw_adapter_ops_t *ops = &m5gw_mqtt_adapter;

static enum { SP_OK, SP_HOLD, SP_REFUSE } spool_mode;
static int m5s_refuse;
static int reg_fail; /* registrations still to fail */

typedef struct held {
  struct held *next;
  m5gw_up_fn cb;
  void *arg;
  char msg_id[80];
  int stage; /* 0: SPOOLED next; 1: final next */
} held_t;

static held_t *held_head;

static void out(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void out(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vprintf(fmt, ap);
  va_end(ap);
  putchar('\n');
  fflush(stdout);
}

/* ---- the core's functions (gw_adapter.h), recorded ---- */

static void advance(m5_loop_t *l, void *arg) {
  (void)l;
  held_t *h = arg;
  if (h->stage == 0) {
    if (spool_mode == SP_REFUSE) {
      h->cb(h->arg, M5GW_UP_REFUSED, "spool full (test)");
      free(h);
      return;
    }
    out("spooled %s", h->msg_id);
    h->stage = 1;
    h->cb(h->arg, M5GW_UP_SPOOLED, NULL);
    m5_loop_timer_add(loop, 0, advance, h);
    return;
  }
  if (m5s_refuse)
    h->cb(h->arg, M5GW_UP_REFUSED, "forbidden by the test");
  else
    h->cb(h->arg, M5GW_UP_ACCEPTED, NULL);
  free(h);
}

int m5gw_uplink(m5gw_core_t *core, const m5gw_msg_t *m, m5gw_up_fn cb, void *arg) {
  (void)core;
  char hex[2 * 4096 + 1] = "";
  for (size_t i = 0; i < m->payload_len && i < 4096; i++)
    snprintf(hex + 2 * i, 3, "%02x", m->payload[i]);
  out("uplink ori=%s:%s dest=%s:%s msgId=%s appId=%s report=%d len=%zu payload=%s", m->ori_type,
      m->ori_addr, m->dest_type, m->dest_addr, m->msg_id, m->app_id ? m->app_id : "-",
      m->report_requested, m->payload_len, hex);
  held_t *h = calloc(1, sizeof *h);
  if (!h) return M5_ENOMEM;
  h->cb = cb;
  h->arg = arg;
  snprintf(h->msg_id, sizeof h->msg_id, "%s", m->msg_id);
  if (spool_mode == SP_HOLD) {
    h->next = held_head;
    held_head = h;
  } else {
    m5_loop_timer_add(loop, 0, advance, h);
  }
  return 0;
}

int m5gw_report_up(m5gw_core_t *core, const m5gw_report_t *r) {
  (void)core;
  out("report_up %s %s", r->msg_id, r->deliv_st);
  return 0;
}

typedef struct {
  m5gw_reg_fn done;
  void *arg;
  int status;
} reg_call_t;

static void reg_answer(m5_loop_t *l, void *arg) {
  (void)l;
  reg_call_t *c = arg;
  c->done(c->arg, c->status, c->status ? "m5s unreachable (test)" : NULL);
  free(c);
}

int m5gw_register(m5gw_core_t *core, const char *const *ids, size_t n, m5gw_reg_fn done,
                  void *arg) {
  (void)core;
  char line[8192] = "register ";
  for (size_t i = 0; i < n; i++) {
    strncat(line, ids[i], sizeof line - strlen(line) - 2);
    if (i + 1 < n) strncat(line, ",", sizeof line - strlen(line) - 1);
  }
  reg_call_t *c = malloc(sizeof *c);
  if (!c) return M5_ENOMEM;
  c->done = done;
  c->arg = arg;
  c->status = reg_fail > 0 ? M5_EIO : 0;
  if (reg_fail > 0) reg_fail--;
  out("%s%s", line, c->status ? " (failing)" : "");
  m5_loop_timer_add(loop, 0, reg_answer, c);
  return 0;
}

int m5gw_deregister(m5gw_core_t *core, const char *id, m5gw_reg_fn done, void *arg) {
  (void)core;
  out("deregister %s", id);
  reg_call_t *c = malloc(sizeof *c);
  if (!c) return M5_ENOMEM;
  c->done = done;
  c->arg = arg;
  c->status = 0;
  m5_loop_timer_add(loop, 0, reg_answer, c);
  return 0;
}

/* ---- commands ---- */

static const char *dl_name(m5gw_dl_result_t r) {
  switch (r) {
  case M5GW_DL_DELIVERED:
    return "DELIVERED";
  case M5GW_DL_RETRY:
    return "RETRY";
  case M5GW_DL_FAILED_UNKNOWN:
    return "FAILED_UNKNOWN";
  case M5GW_DL_FAILED_CONTENT:
    return "FAILED_CONTENT";
  }
  return "?";
}

static void dl_done(void *arg, m5gw_dl_result_t res, const char *reason) {
  char *id = arg;
  out("dl %s %s %s", id, dl_name(res), reason ? reason : "");
  free(id);
}

static void quit(void) {
  while (held_head) { /* what the spool stand-in held ends, as a core would at shutdown */
    held_t *h = held_head;
    held_head = h->next;
    h->cb(h->arg, M5GW_UP_REFUSED, "driver stopping");
    free(h);
  }
  if (state) ops->stop(state);
  state = NULL;
  out("stopped");
  m5_loop_stop(loop);
}

static void command(char *line) {
  char *sv = NULL, *w[6] = {0};
  int n = 0;
  for (char *t = strtok_r(line, " ", &sv); t && n < 6; t = strtok_r(NULL, n == 4 ? "" : " ", &sv))
    w[n++] = t;
  if (!n) return;
  if (!strcmp(w[0], "deliver") && n >= 4) {
    char *colon = strchr(w[3], ':');
    if (!colon) return;
    *colon = '\0';
    const char *text = w[4] ? w[4] : "";
    m5gw_msg_t m = {.ori_type = w[3],
                    .ori_addr = colon + 1,
                    .dest_type = "UE",
                    .dest_addr = w[1],
                    .msg_id = w[2],
                    .payload = (const uint8_t *)text,
                    .payload_len = strlen(text)};
    int rc = ops->deliver(state, &m, dl_done, strdup(w[2]));
    if (rc) out("dl %s call-failed %d", w[2], rc);
  } else if (!strcmp(w[0], "report") && n >= 5) {
    char *colon = strchr(w[3], ':');
    if (!colon) return;
    *colon = '\0';
    char *st = w[4], *cause = strchr(st, ' ');
    if (cause) *cause++ = '\0';
    m5gw_report_t r = {.ori_type = "UE",
                       .ori_addr = w[1],
                       .dest_type = w[3],
                       .dest_addr = colon + 1,
                       .msg_id = w[2],
                       .deliv_st = st,
                       .failure_cause = cause};
    out("report rc=%d", ops->report(state, &r));
  } else if (!strcmp(w[0], "spool") && n == 2) {
    if (!strcmp(w[1], "hold")) spool_mode = SP_HOLD;
    if (!strcmp(w[1], "ok")) spool_mode = SP_OK;
    if (!strcmp(w[1], "refuse")) spool_mode = SP_REFUSE;
    if (!strcmp(w[1], "release")) {
      spool_mode = SP_OK;
      while (held_head) {
        held_t *h = held_head;
        held_head = h->next;
        m5_loop_timer_add(loop, 0, advance, h);
      }
    }
    out("spool %s", w[1]);
  } else if (!strcmp(w[0], "m5s") && n == 2) {
    m5s_refuse = !strcmp(w[1], "refuse");
    out("m5s %s", w[1]);
  } else if (!strcmp(w[0], "quit")) {
    quit();
  } else {
    out("unknown command %s", w[0]);
  }
}

static char inbuf[1 << 20]; /* a line may carry a payload past mqtt.max_payload */
static size_t inlen;

static void on_stdin(m5_loop_t *l, int fd, uint32_t ev, void *arg) {
  (void)ev;
  (void)arg;
  ssize_t r = read(fd, inbuf + inlen, sizeof inbuf - 1 - inlen);
  if (r <= 0) { /* the test closed its end: stop */
    m5_loop_del_fd(l, fd);
    if (state) quit();
    return;
  }
  inlen += (size_t)r;
  char *nl;
  while ((nl = memchr(inbuf, '\n', inlen))) {
    *nl = '\0';
    size_t used = (size_t)(nl - inbuf) + 1;
    if (state) command(inbuf);
    memmove(inbuf, inbuf + used, inlen - used);
    inlen -= used;
  }
  if (inlen == sizeof inbuf - 1) inlen = 0; /* an over-long line: dropped */
}

static void on_signal(m5_loop_t *l, int signo, void *arg) {
  (void)l;
  (void)signo;
  (void)arg;
  if (state) quit();
}

int main(int argc, char **argv) {
  const char *config = NULL;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--config") && i + 1 < argc)
      config = argv[++i];
    else if (!strcmp(argv[i], "--debug"))
      m5_log_set_level(M5_LOG_DEBUG);
    else if (!strcmp(argv[i], "--reg-fail") && i + 1 < argc)
      reg_fail = atoi(argv[++i]);
  }
  if (!config) {
    fprintf(stderr, "usage: mqtt_driver --config FILE [--debug]\n");
    return 2;
  }
  void *cfg = calloc(1, ops->cfg_size);
  char err[512];
  if (!cfg || m5_config_load(config, ops->cfg_items, ops->n_cfg_items, cfg, err, sizeof err)) {
    fprintf(stderr, "mqtt_driver: %s\n", cfg ? err : "out of memory");
    free(cfg);
    return 2;
  }
  int sigs[] = {SIGTERM, SIGINT};
  m5_signals_block(sigs, 2);
  signal(SIGPIPE, SIG_IGN);
  loop = m5_loop_new();
  int rc = 1;
  if (!loop || m5_loop_signal(loop, SIGTERM, on_signal, NULL) ||
      m5_loop_signal(loop, SIGINT, on_signal, NULL)) {
    fprintf(stderr, "mqtt_driver: cannot set up the loop\n");
    goto done;
  }
  /* stdin that cannot be polled (/dev/null): no commands, SIGTERM stops it */
  if (m5_loop_add_fd(loop, 0, M5_EV_READ, on_stdin, NULL))
    fprintf(stderr, "mqtt_driver: stdin cannot be polled: no commands\n");
  if (ops->start(loop, cfg, (m5gw_core_t *)loop, &state, err, sizeof err)) {
    fprintf(stderr, "mqtt_driver: %s\n", err);
    goto done;
  }
  out("ready");
  m5_loop_run(loop);
  rc = 0;
done:
  if (loop) m5_loop_free(loop);
  m5_config_free(ops->cfg_items, ops->n_cfg_items, cfg);
  free(cfg);
  return rc;
}
