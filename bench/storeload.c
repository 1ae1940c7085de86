/* storeload: the message store alone under load (issue 13, docs/benchmarks.md "Scale-out on
 * JetStream"): N ACCEPTs (64-byte payloads, a dedup key each, one recipient each, spread over
 * 1,000 originators and 1,000 recipients so that no quota or queue bound is reached), at most
 * W of them waiting for the store at once (as m5s's workers submit them), then N
 * MARK_DELIVERED of what was accepted, the same way. Prints one line:
 *   RESULT backend=<sqlite|jetstream> replicas=<r> window=<w> n=<n> accepts_per_s=<v>
 *          marks_per_s=<v> accept_rounds=<batches> failed=<jobs not answered OK>
 * Usage: storeload [--jetstream URL[,URL...]] [--replicas R] [--prefix P] [--dir DIR]
 *                  [--n N] [--window W]
 * SQLite: a fresh file under --dir (default /tmp). JetStream: streams and buckets under a
 * prefix of their own (default "sl<pid>"), deleted by nobody: give the NATS servers a fresh
 * store directory. */
#include "core/err.h"
#include "core/loop.h"
#include "js/js_client.h"
#include "store/store.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

typedef struct {
  m5_store_job_t job;
  m5_store_rcpt_t rcpt;
  char payload[64];
} slot_t;

typedef struct {
  m5_loop_t *loop;
  m5_mailbox_t *mb;
  m5_store_t *s;
  size_t n, next, done, failed;
  int phase; /* 0 accept, 1 mark */
  uint64_t *ids;
} run_t;

static int64_t now_us(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void addr(m5_msg_addr_t *a, const char *type, const char *id) {
  memset(a, 0, sizeof *a);
  snprintf(a->type, sizeof a->type, "%s", type);
  snprintf(a->addr, sizeof a->addr, "%s", id);
}

/* Fills slot x with job i of the phase and submits it. */
static void submit(run_t *r, slot_t *x) {
  size_t i = r->next++;
  m5_store_job_clear(&x->job);
  memset(x, 0, sizeof *x);
  m5_store_job_t *j = &x->job;
  j->base.reply = r->mb;
  j->arg = x;
  if (r->phase == 0) {
    char ori[32], to[32];
    snprintf(ori, sizeof ori, "ue%zu", i % 1000);
    snprintf(to, sizeof to, "rc%zu", (i / 1000 + i) % 1000);
    j->op = M5_STORE_ACCEPT;
    addr(&j->msg.ori, "UE", ori);
    addr(&j->msg.dest, "UE", to);
    addr(&x->rcpt.addr, "UE", to);
    snprintf(j->msg.msg_id, sizeof j->msg.msg_id, "m%zu", i);
    snprintf(j->msg.app_id, sizeof j->msg.app_id, "bench");
    j->msg.prio = M5_PRIO_MIDDLE;
    j->msg.sto_fwd = true;
    memset(x->payload, 'p', sizeof x->payload);
    j->msg.payload = (uint8_t *)x->payload;
    j->msg.payload_len = sizeof x->payload;
    j->rcpts = &x->rcpt;
    j->n_rcpts = 1;
    snprintf(j->dedup_ori, sizeof j->dedup_ori, "UE:%s", ori);
    snprintf(j->dedup_id, sizeof j->dedup_id, "m%zu", i);
    snprintf(j->ack.status, sizeof j->ack.status, "ACCEPTED");
  } else {
    j->op = M5_STORE_MARK_DELIVERED;
    j->id = r->ids[i];
  }
  if (m5_store_submit(r->s, j)) {
    fprintf(stderr, "storeload: submit failed\n");
    exit(1);
  }
}

static void on_reply(void *msg, void *arg) {
  run_t *r = arg;
  m5_store_job_t *j = msg;
  slot_t *x = j->arg;
  if (r->phase == 0) {
    if (j->status || j->outcome != M5_STORE_ACCEPTED)
      r->failed++;
    else
      r->ids[r->done] = x->rcpt.id;
  } else if (j->status) {
    r->failed++;
  }
  r->done++;
  if (r->next < r->n)
    submit(r, x);
  else if (r->done == r->n)
    m5_loop_stop(r->loop);
}

/* One phase with window w: its rate (jobs/s). */
static double phase(run_t *r, slot_t *slots, size_t w, int ph) {
  r->phase = ph;
  r->next = r->done = 0;
  int64_t t0 = now_us();
  for (size_t k = 0; k < w && r->next < r->n; k++)
    submit(r, &slots[k]);
  if (m5_loop_run(r->loop)) exit(1);
  int64_t dt = now_us() - t0;
  return dt > 0 ? (double)r->n * 1e6 / (double)dt : 0;
}

int main(int argc, char **argv) {
  const char *urls = NULL, *dir = "/tmp";
  char prefix[32];
  snprintf(prefix, sizeof prefix, "sl%d", (int)getpid());
  int replicas = 1;
  size_t n = 20000, w = 64;
  for (int i = 1; i < argc; i++) {
    const char *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (!strcmp(argv[i], "--jetstream") && v) urls = argv[++i];
    else if (!strcmp(argv[i], "--replicas") && v) replicas = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--prefix") && v) snprintf(prefix, sizeof prefix, "%s", argv[++i]);
    else if (!strcmp(argv[i], "--dir") && v) dir = argv[++i];
    else if (!strcmp(argv[i], "--n") && v) n = (size_t)strtoul(argv[++i], NULL, 10);
    else if (!strcmp(argv[i], "--window") && v) w = (size_t)strtoul(argv[++i], NULL, 10);
    else {
      fprintf(stderr, "usage: storeload [--jetstream URLS] [--replicas R] [--prefix P] [--dir DIR] "
                      "[--n N] [--window W]\n");
      return 2;
    }
  }
  if (!n || !w || w > 4096) return 2;
  m5_store_process_init();
  m5_store_opts_t o;
  m5_store_opts_init(&o);
  char path[512];
  snprintf(path, sizeof path, "%s/storeload-%d/store.db", dir, (int)getpid());
  o.path = path;
  char *list = NULL;
  const char *servers[16];
  if (urls) {
    list = strdup(urls);
    size_t k = 0;
    for (char *t = strtok(list, ","); t && k < 16; t = strtok(NULL, ","))
      servers[k++] = t;
    o.backend = M5_STORE_BACKEND_JETSTREAM;
    o.js.servers = servers;
    o.js.n_servers = k;
    o.js.replicas = replicas;
    o.js.prefix = prefix;
    o.js.node = "bench";
  }
  char err[512];
  run_t r = {.n = n};
  r.loop = m5_loop_new();
  r.mb = m5_mailbox_new(r.loop, 8192, on_reply, &r);
  r.ids = calloc(n, sizeof *r.ids);
  slot_t *slots = calloc(w, sizeof *slots);
  if (!r.loop || !r.mb || !r.ids || !slots) return 1;
  if (!(r.s = m5_store_open(&o, err, sizeof err))) {
    fprintf(stderr, "storeload: %s\n", err);
    return 1;
  }
  double acc = phase(&r, slots, w, 0);
  size_t failed = r.failed;
  m5_store_stats_t st;
  m5_store_stats(r.s, &st);
  r.n -= failed; /* marks only for what was accepted */
  double marks = r.n ? phase(&r, slots, w, 1) : 0;
  failed += r.failed;
  printf("RESULT backend=%s replicas=%d window=%zu n=%zu accepts_per_s=%.0f marks_per_s=%.0f "
         "accept_rounds=%llu failed=%zu\n",
         urls ? "jetstream" : "sqlite", urls ? replicas : 0, w, n, acc, marks,
         (unsigned long long)st.batches, failed);
  for (size_t k = 0; k < w; k++)
    m5_store_job_clear(&slots[k].job);
  m5_store_close(r.s);
  if (urls) m5_js_library_close();
  m5_mailbox_free(r.mb, NULL);
  m5_loop_free(r.loop);
  free(slots);
  free(r.ids);
  free(list);
  return failed ? 1 : 0;
}
