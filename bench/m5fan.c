/* m5fan: the fan-out generator of docs/benchmarks.md and tests/it/test_m5s_group_10k.sh. One
 * process, one m5_loop, thousands of UE sessions over CoAP over TLS 1.3 with the AKMA PSK
 * (bu.c's pool on libm5c's channel), members of a group or subscribers of a Messaging Topic
 * (TS 23.554 cl. 8.7.4, 8.8), and optionally one sender UE of its own:
 *
 *   m5fan --print-subscribers --members N
 *       N members (fan-0 .. fan-<N-1>) and the sender (fan-sender), one `SUPI K_AUSF ueSvcId`
 *       a line: the file `m5ctl subscriber import` reads.
 *   m5fan --port P --members N [--range A:B] [--parallel 32] [--topic NAME]
 *         [--send K --to group:ID|topic:NAME] [--state FILE] [--quiet S] [--timeout S]
 *       connects and registers members [A, B) (default [0, N)) with at most --parallel
 *       handshakes + REGs in progress at once; with --topic, each sends TOPICSUB for NAME;
 *       once all are up, the sender sends K MSGs with stoAndFwInd to the destination. Every
 *       pushed MSG is answered 2.04 + MSGRESP and recorded as (member, msgId).
 *
 * What a member must get: every msgId this run sent and every one a `S` line of the state file
 * names (an earlier run sent it), each exactly once over all runs sharing the state file. The
 * state file (append-only, text): `S <msgId>` before a message is sent (`X <msgId>` when the
 * server refused it), `R <member> <msgId>` when a member first gets one (`D ...` again); a
 * second run after a server restart reads it, so a message a member already got in the first
 * run and gets again is a duplicate. A run that meets a refusal or a failed session stops as
 * soon as its sends are answered. The run ends when every
 * registered member has every expected msgId (then after --quiet seconds, which catch late
 * duplicates) or at --timeout, and prints one line:
 *
 *   RESULT system=LABEL members= connected= registered= subscribed= sent= expected= received=
 *          duplicates= missing= unexpected= lost= refused= busy= retries= seconds= connect_s=
 *          hs_per_s= fanout_s= deliveries_per_s= reach_p50_ms= reach_max_ms= reach_one_ms=
 *          srv_cpu_s= srv_us_per_delivery=
 *
 * connected: handshakes completed (one per member at best); registered: REG answered 2.01 /
 * 2.04; received: first deliveries in this run; missing: expected (member, msgId) pairs of
 * registered members not received; unexpected: pushes of msgIds nobody sent (or to the
 * sender); lost: registered sessions that went down; refused: REG, TOPICSUB or MSG answered
 * other than 2.xx (or DELY_FAILED); busy: 5.03 answers to the sender's MSGs (the server's
 * back-pressure: each is sent again after its Max-Age, with the same msgId; not a failure);
 * retries: handshakes or REGs that failed and were tried again (m5s's per-source bounds refuse
 * handshakes beyond them; not a failure); connect_s, hs_per_s: from the first handshake to the last
 * REG answer; fanout_s: from the first send of this run (without sends: from the first
 * handshake) to the last first delivery, and deliveries_per_s the deliveries over it;
 * reach_*: per message sent in this run, from its send to its last member's delivery.
 * --one-first (the benchmark's pattern): the first message goes alone (reach_one_ms: the time
 * it takes to reach every registered member), the other K-1 back to back (at most 20
 * unanswered) once it arrived everywhere; then fanout_s and deliveries_per_s are those of that
 * burst, and with --server-pid, srv_us_per_delivery is the server's CPU (utime + stime of
 * /proc/PID/stat, from the burst's first send to the completion) per delivery of the burst.
 * Exit 1 on any duplicate, missing, unexpected, lost, refused, or member not registered; 2 on a
 * usage error. */
#include "bu.h"
#include "procstat.h"
#include "lc.h"

#include "core/err.h"
#include "core/log.h"
#include "crypto/codec.h"

#include <getopt.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#define PATH "msgin5g"
#define MEMBER_PREFIX "fan-"
#define SENDER_ID "fan-sender"
#define EXTRA_MSGS 64  /* room for msgIds nobody announced (counted as unexpected) */
#define SEND_WINDOW 20 /* MSGs of the sender without an answer yet */
#define TICK_MS 5
#define CHECK_MS 50
#define PROGRESS_S 5

typedef struct {
  char id[M5_MSG_ID_MAX + 1];
  int expected;          /* sent by this run or named by a state file's S line */
  uint64_t sent_ns;      /* this run's send time; 0: not sent by this run */
  int answered;          /* finally (a 5.03 is not final) */
  uint64_t retry_ns;     /* after a 5.03: when to send it again; 0 = not waiting */
  uint64_t got, last_ns; /* first deliveries in this run, the time of the last one */
} fmsg_t;

static struct {
  /* options */
  const char *label, *topic, *state_path, *to_type, *to_addr;
  int members, from, to, send_k, payload_len, one_first, server_pid;
  double quiet_s, timeout_s;
  /* run */
  m5_loop_t *loop;
  bu_pool_t pool;
  int n_mem;   /* to - from; the sender (when sending) is pool.ue[n_mem] */
  int sending; /* the pool holds the sender */
  fmsg_t *msgs;
  int n_msgs, cap_msgs, n_expected;
  int *hash; /* open addressing over msgs: index + 1, 0 = empty */
  size_t hash_cap;
  uint64_t *got; /* n_mem x words bitmap of msgs received (over all runs) */
  size_t words;
  FILE *state;
  int state_dirty;
  unsigned nonce;
  /* counters */
  int subscribed, sub_pending, sent, send_inflight, next_send;
  uint64_t received, dups, unexpected, refused, busy;
  uint64_t t_start, t_first_send, t_last_delivery, t_complete, t_last_progress, t_last_check;
  uint64_t
      t_burst;   /* the send of the first message of the burst (all of them without --one-first) */
  int first_msg; /* the index of this run's first message, -1 before */
  double cpu0, cpu1; /* the server's CPU seconds at the burst's start and at completion */
  int stopping, exit_code;
} F;

/* ---- the fleet: deterministic subscribers ---- */

/* Member i: fan-<i>, SUPI 0010198<i as 8 digits>, K_AUSF fa..fa<i as 4 bytes>; the sender:
 * fan-sender, SUPI 001019799999999, K_AUSF fb..fb. Distinct from m5load's (0010199...). */
static void subscriber(int i, char *id, size_t idcap, char supi[16], uint8_t kausf[32]) {
  if (i < 0) {
    snprintf(id, idcap, "%s", SENDER_ID);
    snprintf(supi, 16, "001019799999999");
    memset(kausf, 0xfb, 32);
    return;
  }
  snprintf(id, idcap, MEMBER_PREFIX "%d", i);
  snprintf(supi, 16, "0010198%08u", (unsigned)i % 100000000u);
  memset(kausf, 0xfa, 32);
  kausf[28] = (uint8_t)(i >> 24);
  kausf[29] = (uint8_t)(i >> 16);
  kausf[30] = (uint8_t)(i >> 8);
  kausf[31] = (uint8_t)i;
}

/* ---- msgIds ---- */

static uint64_t fnv(const char *s, size_t n) {
  uint64_t h = 1469598103934665603ull;
  for (size_t i = 0; i < n; i++)
    h = (h ^ (uint8_t)s[i]) * 1099511628211ull;
  return h;
}

static int msg_find(const char *id, size_t n) {
  for (size_t k = fnv(id, n) & (F.hash_cap - 1);; k = (k + 1) & (F.hash_cap - 1)) {
    int v = F.hash[k];
    if (!v) return -1;
    fmsg_t *m = &F.msgs[v - 1];
    if (strlen(m->id) == n && !memcmp(m->id, id, n)) return v - 1;
  }
}

/* The index of msgId id (added when new and there is room); -1 when the table is full. */
static int msg_add(const char *id, size_t n) {
  int i = msg_find(id, n);
  if (i >= 0 || n > M5_MSG_ID_MAX || F.n_msgs == F.cap_msgs) return i;
  i = F.n_msgs++;
  memcpy(F.msgs[i].id, id, n);
  F.msgs[i].id[n] = 0;
  size_t k = fnv(id, n) & (F.hash_cap - 1);
  while (F.hash[k])
    k = (k + 1) & (F.hash_cap - 1);
  F.hash[k] = i + 1;
  return i;
}

static int got_test_set(int mem, int msg) {
  uint64_t *w = &F.got[(size_t)mem * F.words + (size_t)msg / 64], bit = 1ull << (msg % 64);
  int had = (*w & bit) != 0;
  *w |= bit;
  return had;
}

/* ---- the state file ---- */

/* Reads FILE's S and R lines (a missing file is an empty state). 0 or -1 (printed). */
static int state_load(const char *path, int pass) {
  FILE *f = fopen(path, "r");
  if (!f) return 0;
  char line[512];
  int ln = 0, rc = 0;
  while (fgets(line, sizeof line, f)) {
    ln++;
    char *nl = strchr(line, '\n');
    if (nl) *nl = 0;
    if (!line[0] || line[0] == '#') continue;
    char id[130]; /* %129s */
    int mem;
    if (line[0] == 'S' && sscanf(line, "S %129s", id) == 1 && strlen(id) <= M5_MSG_ID_MAX) {
      if (pass == 0) {
        F.cap_msgs++;
      } else {
        int i = msg_add(id, strlen(id));
        if (i >= 0 && !F.msgs[i].expected) {
          F.msgs[i].expected = 1;
          F.n_expected++;
        }
      }
    } else if (line[0] == 'R' && sscanf(line, "R %d %129s", &mem, id) == 2 &&
               strlen(id) <= M5_MSG_ID_MAX) {
      if (pass == 1 && mem >= F.from && mem < F.to) {
        int i = msg_add(id, strlen(id));
        if (i >= 0) got_test_set(mem - F.from, i);
      }
    } else if (line[0] == 'X' && sscanf(line, "X %129s", id) == 1) { /* refused: not expected */
      int i = pass == 1 ? msg_find(id, strlen(id)) : -1;
      if (i >= 0 && F.msgs[i].expected) {
        F.msgs[i].expected = 0;
        F.n_expected--;
      }
    } else if (line[0] == 'D') { /* a duplicate an earlier run saw (it failed then) */
    } else {
      fprintf(stderr, "m5fan: %s:%d: not a state line (S msgId | R member msgId)\n", path, ln);
      rc = -1;
      break;
    }
  }
  fclose(f);
  return rc;
}

/* A line "KIND msgId" (mem < 0) or "KIND member msgId". */
static void state_write(char kind, const char *id, int mem) {
  if (!F.state) return;
  if (mem >= 0)
    fprintf(F.state, "%c %d %s\n", kind, mem, id);
  else
    fprintf(F.state, "%c %s\n", kind, id);
  F.state_dirty = 1;
}

static void state_flush(int sync) {
  if (!F.state || (!F.state_dirty && !sync)) return;
  if (fflush(F.state)) fprintf(stderr, "m5fan: writing %s failed\n", F.state_path);
  if (sync) fsync(fileno(F.state));
  F.state_dirty = 0;
}

/* ---- pushes ---- */

static void on_request(bu_ue_t *u, m5_coap_req_t *req, void *arg) {
  (void)arg;
  size_t len, idl = 0, tl = 0;
  const char *body = (const char *)m5_coap_req_body(req, &len);
  const char *type = bu_json_str(body, len, "msgType", &tl);
  const char *id = bu_json_str(body, len, "msgId", &idl);
  if (!type || !id || idl == 0 || idl > M5_MSG_ID_MAX) {
    m5_coap_ep_respond_error(req, M5_COAP_BAD_REQUEST, "m5fan: no msgType or msgId");
    F.unexpected++;
    return;
  }
  /* The request (body included) is freed by the answer: keep what is needed. */
  char mid[M5_MSG_ID_MAX + 1], mtype[16];
  memcpy(mid, id, idl);
  mid[idl] = 0;
  snprintf(mtype, sizeof mtype, "%.*s", (int)(tl < sizeof mtype ? tl : sizeof mtype - 1), type);
  /* The answer names the message's originator, as libm5c's does. */
  const char *ori = memmem(body, len, "\"oriAddr\":", 10);
  size_t al = 0, atl = 0;
  const char *oa = ori ? bu_json_str(ori, len - (size_t)(ori - body), "addr", &al) : NULL;
  const char *ot = ori ? bu_json_str(ori, len - (size_t)(ori - body), "addrType", &atl) : NULL;
  char ans[512];
  int an = snprintf(ans, sizeof ans,
                    "{\"msgType\":\"MSGRESP\",\"msgId\":\"%s\",\"oriAddr\":{\"addrType\":\"%.*s\","
                    "\"addr\":\"%.*s\"}}",
                    mid, (int)(ot && atl < 16 ? atl : 2), ot && atl < 16 ? ot : "UE",
                    (int)(oa && al <= M5_MSG_ADDR_MAX ? al : 0), oa ? oa : "");
  m5_coap_ep_respond(req, M5_COAP_CHANGED, M5_COAP_FORMAT_JSON, (const uint8_t *)ans,
                     (size_t)(an < (int)sizeof ans ? an : (int)sizeof ans - 1), NULL, 0);
  if (strcmp(mtype, "MSG") || u->idx >= F.n_mem) {
    if (F.unexpected++ < 5)
      fprintf(stderr, "m5fan: %s got an unexpected %s (msgId %s)\n", u->id, mtype, mid);
    return;
  }
  int m = msg_add(mid, idl);
  if (m < 0) {
    if (F.unexpected++ < 5)
      fprintf(stderr, "m5fan: %s: msgId %s: more unknown msgIds than there is room for\n", u->id,
              mid);
    return;
  }
  int gi = F.from + u->idx;
  if (got_test_set(u->idx, m)) {
    if (F.dups++ < 10)
      fprintf(stderr, "m5fan: duplicate: %s got msgId %s again\n", u->id, F.msgs[m].id);
    state_write('D', F.msgs[m].id, gi);
    return;
  }
  uint64_t now = bu_now_ns();
  F.received++;
  F.t_last_delivery = now;
  F.msgs[m].got++;
  F.msgs[m].last_ns = now;
  state_write('R', F.msgs[m].id, gi);
  if (!F.msgs[m].expected && F.unexpected++ < 5)
    fprintf(stderr, "m5fan: %s got msgId %s, which nobody sent\n", u->id, F.msgs[m].id);
}

/* ---- subscribing, sending ---- */

static void sub_done(void *arg, int status, const m5_coap_msg_t *resp, const uint8_t *body,
                     size_t len) {
  bu_ue_t *u = arg;
  F.sub_pending--;
  if (!status && resp->code == M5_COAP_CHANGED) {
    F.subscribed++;
    return;
  }
  char code[8];
  if (F.refused++ < 5)
    fprintf(stderr, "m5fan: %s: TOPICSUB %s: %s %.*s\n", u->id, F.topic,
            status ? m5_strerror(status) : m5_coap_code_str(resp->code, code, sizeof code),
            (int)(len > 100 ? 100 : len), body ? (const char *)body : "");
}

static void on_ready(bu_ue_t *u, void *arg) {
  (void)arg;
  if (!F.topic || u->idx >= F.n_mem) return;
  char body[256];
  int n = snprintf(body, sizeof body, "{\"msgType\":\"TOPICSUB\",\"msgTopics\":[\"%s\"]}", F.topic);
  if (m5_coap_ep_request(u->ep, M5_COAP_POST, PATH, M5_COAP_FORMAT_JSON, (const uint8_t *)body,
                         (size_t)n, sub_done, u)) {
    F.refused++;
    fprintf(stderr, "m5fan: %s: cannot send TOPICSUB\n", u->id);
    return;
  }
  F.sub_pending++;
}

static void on_down(bu_ue_t *u, int lost, const char *why, void *arg) {
  (void)arg;
  if (lost || u->pool->n_dead <= 5)
    fprintf(stderr, "m5fan: %s: %s%s\n", u->id, lost ? "session lost: " : "", why);
}

static void msg_done(void *arg, int status, const m5_coap_msg_t *resp, const uint8_t *body,
                     size_t len) {
  fmsg_t *m = &F.msgs[(intptr_t)arg];
  F.send_inflight--;
  char code[8];
  if (!status && resp->code == M5_COAP_SERVICE_UNAVAILABLE) {
    /* back-pressure (the store's queue is full): the same msgId again after Max-Age (its
     * dedup makes a repeat safe), as a sender of a real fleet would */
    const m5_coap_opt_t *o = m5_coap_msg_opt(resp, M5_COAP_OPT_MAX_AGE, 0);
    uint32_t age = 60; /* RFC 7252's default Max-Age */
    if (o && m5_coap_opt_uint(o, &age)) age = 60;
    if (age < 1) age = 1;
    m->retry_ns = bu_now_ns() + (uint64_t)age * 1000000000u;
    if (F.busy++ < 3)
      fprintf(stderr, "m5fan: MSG %s: 5.03 %.*s; again in %u s\n", m->id,
              (int)(len > 100 ? 100 : len), body ? (const char *)body : "", age);
    return;
  }
  m->answered = 1;
  if (status || resp->code != M5_COAP_CHANGED || (len && memmem(body, len, "DELY_FAILED", 11))) {
    F.refused++;
    fprintf(stderr, "m5fan: MSG %s to %s:%s: %s %.*s\n", m->id, F.to_type, F.to_addr,
            status ? m5_strerror(status) : m5_coap_code_str(resp->code, code, sizeof code),
            (int)(len > 200 ? 200 : len), body ? (const char *)body : "");
    /* nobody is to get it (the run has failed anyway) */
    m->expected = 0;
    F.n_expected--;
    state_write('X', m->id, -1);
  }
}

/* Sends MSG i (again, after a 5.03) with stoAndFwInd. 0, or -1 when it could not be sent. */
static int send_one(int i) {
  bu_ue_t *s = &F.pool.ue[F.n_mem];
  fmsg_t *m = &F.msgs[i];
  uint8_t raw[4096];
  char b64[4096 * 4 / 3 + 8];
  size_t pl = (size_t)F.payload_len, il = strlen(m->id);
  memset(raw, 'f', pl);
  memcpy(raw, m->id, il < pl ? il : pl);
  bu_b64_enc(raw, pl, b64);
  size_t cap = strlen(b64) + 1024;
  char *body = malloc(cap);
  if (!body) abort();
  int n = snprintf(body, cap,
                   "{\"msgType\":\"MSG\",\"oriAddr\":{\"addrType\":\"UE\",\"addr\":\"%s\"},"
                   "\"destAddr\":{\"addrType\":\"%s\",\"addr\":\"%s\"},\"msgId\":\"%s\","
                   "\"stoAndFwInd\":true,\"payload\":\"%s\"}",
                   s->id, F.to_type, F.to_addr, m->id, b64);
  int rc = m5_coap_ep_request(s->ep, M5_COAP_POST, PATH, M5_COAP_FORMAT_JSON, (const uint8_t *)body,
                              (size_t)n, msg_done, (void *)(intptr_t)i);
  free(body);
  if (rc) {
    fprintf(stderr, "m5fan: MSG %s: cannot send: %s\n", m->id, m5_strerror(rc));
    F.refused++;
    m->answered = 1;
    return -1;
  }
  F.send_inflight++;
  return 0;
}

static void send_more(void) {
  if (F.refused) F.next_send = F.send_k; /* the run has failed: send no more */
  uint64_t now = bu_now_ns();
  for (int i = 0; i < F.n_msgs && F.send_inflight < SEND_WINDOW && !F.refused; i++) {
    if (!F.msgs[i].retry_ns || F.msgs[i].retry_ns > now) continue;
    F.msgs[i].retry_ns = 0;
    send_one(i);
  }
  while (F.next_send < F.send_k && F.send_inflight < SEND_WINDOW) {
    /* --one-first: message 0 alone, the others once it reached every registered member */
    if (F.one_first && F.next_send == 1 && F.msgs[F.first_msg].got < (uint64_t)F.pool.n_ready - 1)
      return;
    char mid[64];
    snprintf(mid, sizeof mid, "%08x-%d", F.nonce, F.next_send);
    int i = msg_add(mid, strlen(mid));
    if (i < 0) {
      fprintf(stderr, "m5fan: no room for msgId %s\n", mid);
      F.refused++;
      F.next_send = F.send_k;
      return;
    }
    fmsg_t *m = &F.msgs[i];
    if (!m->expected) F.n_expected++;
    m->expected = 1;
    state_write('S', m->id, -1);
    state_flush(1); /* on disk before anyone can receive it */
    m->sent_ns = bu_now_ns();
    if (!F.t_first_send) {
      F.t_first_send = m->sent_ns;
      F.first_msg = i;
    }
    if (!F.t_burst && (!F.one_first || F.next_send == 1 || F.send_k == 1)) {
      F.t_burst = m->sent_ns;
      F.cpu0 = lc_proc_cpu_s(F.server_pid, NULL);
    }
    F.next_send++;
    F.sent++;
    send_one(i);
  }
}

/* ---- the run ---- */

static int cmp_u64(const void *a, const void *b) {
  uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
  return x < y ? -1 : x > y;
}

/* Expected (member, msgId) pairs of registered members not received. */
static uint64_t missing_now(void) {
  uint64_t miss = 0;
  for (int i = 0; i < F.n_mem; i++) {
    if (F.pool.ue[i].st != BU_READY) continue;
    for (int m = 0; m < F.n_msgs; m++)
      if (F.msgs[m].expected && !(F.got[(size_t)i * F.words + (size_t)m / 64] & 1ull << (m % 64)))
        miss++;
  }
  return miss;
}

static int sends_done(void) {
  if (!F.sending) return 1;
  if (F.next_send < F.send_k) return 0;
  for (int m = 0; m < F.n_msgs; m++)
    if (F.msgs[m].sent_ns && (!F.msgs[m].answered || F.msgs[m].retry_ns)) return 0;
  return 1;
}

static void report(void) {
  uint64_t now = bu_now_ns(), miss = missing_now();
  uint64_t *reach = calloc((size_t)F.n_msgs + 1, sizeof *reach);
  size_t nr = 0;
  for (int m = 0; m < F.n_msgs; m++)
    if (F.msgs[m].sent_ns && F.msgs[m].got && F.msgs[m].last_ns > F.msgs[m].sent_ns && reach)
      reach[nr++] = F.msgs[m].last_ns - F.msgs[m].sent_ns;
  if (reach) qsort(reach, nr, sizeof *reach, cmp_u64);
  double p50 = nr ? (double)reach[(nr - 1) / 2] / 1e6 : 0,
         pmax = nr ? (double)reach[nr - 1] / 1e6 : 0;
  free(reach);
  /* the burst: this run's messages sent from t_burst on (without sends: every delivery) */
  uint64_t t0 = F.t_burst ? F.t_burst : F.pool.t_first_open, burst = 0, last = 0;
  for (int m = 0; m < F.n_msgs; m++) {
    if (F.t_burst && F.msgs[m].sent_ns < F.t_burst) continue;
    burst += F.msgs[m].got;
    if (F.msgs[m].last_ns > last) last = F.msgs[m].last_ns;
  }
  if (!F.t_burst) last = F.t_last_delivery;
  double fan = burst && last > t0 ? (double)(last - t0) / 1e9 : 0;
  double one = F.one_first && F.t_first_send && F.msgs[F.first_msg].last_ns > F.t_first_send
                   ? (double)(F.msgs[F.first_msg].last_ns - F.t_first_send) / 1e6
                   : 0;
  double cpu = F.cpu1 > F.cpu0 ? F.cpu1 - F.cpu0 : 0;
  double con = F.pool.t_last_ready > F.pool.t_first_open
                   ? (double)(F.pool.t_last_ready - F.pool.t_first_open) / 1e9
                   : 0;
  int regd = 0;
  for (int i = 0; i < F.n_mem; i++)
    regd += F.pool.ue[i].st == BU_READY;
  int connected = 0;
  for (int i = 0; i < F.n_mem; i++)
    connected += F.pool.ue[i].up;
  printf(
      "RESULT system=%s members=%d connected=%d registered=%d subscribed=%d sent=%d "
      "expected=%d received=%llu duplicates=%llu missing=%llu unexpected=%llu lost=%d "
      "refused=%llu busy=%llu retries=%d seconds=%.2f connect_s=%.2f hs_per_s=%.0f fanout_s=%.3f "
      "deliveries_per_s=%.0f reach_p50_ms=%.1f reach_max_ms=%.1f reach_one_ms=%.1f "
      "srv_cpu_s=%.2f srv_us_per_delivery=%.1f\n",
      F.label, F.n_mem, connected, regd, F.subscribed, F.sent, F.n_expected,
      (unsigned long long)F.received, (unsigned long long)F.dups, (unsigned long long)miss,
      (unsigned long long)F.unexpected, F.pool.n_lost,
      (unsigned long long)(F.refused + (uint64_t)F.pool.n_refused), (unsigned long long)F.busy,
      F.pool.retries, (double)(now - F.t_start) / 1e9, con,
      con > 0 ? (double)(regd + F.sending) / con : 0, fan, fan > 0 ? (double)burst / fan : 0, p50,
      pmax, one, cpu, burst ? 1e6 * cpu / (double)burst : 0);
  fflush(stdout);
  int bad = F.dups || miss || F.unexpected || F.pool.n_lost || F.refused || F.pool.n_refused ||
            regd != F.n_mem || (F.sending && F.pool.ue[F.n_mem].st != BU_READY);
  F.exit_code = bad ? 1 : 0;
}

static void finish(void) {
  F.stopping = 1;
  state_flush(1);
  report();
  m5_loop_stop(F.loop);
}

static void progress(uint64_t now) {
  if (now - F.t_last_progress < (uint64_t)PROGRESS_S * 1000000000u) return;
  F.t_last_progress = now;
  fprintf(stderr,
          "m5fan: %.0f s: %d registered, %d opening, %d failed, %d subscribed, %d sent, "
          "%llu received, %llu duplicates\n",
          (double)(now - F.t_start) / 1e9, F.pool.n_ready, F.pool.n_opening, F.pool.n_dead,
          F.subscribed, F.sent, (unsigned long long)F.received, (unsigned long long)F.dups);
}

static void tick(m5_loop_t *l, void *arg) {
  (void)arg;
  if (F.stopping) return;
  uint64_t now = bu_now_ns();
  bu_pool_open(&F.pool);
  state_flush(0);
  progress(now);
  int settled = bu_pool_settled(&F.pool) && !F.sub_pending;
  if (settled && F.sending && F.pool.ue[F.n_mem].st == BU_READY) send_more();
  if (now - F.t_start > (uint64_t)(F.timeout_s * 1e9)) {
    fprintf(stderr, "m5fan: timeout after %.0f s\n", F.timeout_s);
    finish();
    return;
  }
  if (settled && sends_done() && !F.t_complete &&
      (F.refused || F.pool.n_dead || F.pool.n_refused)) {
    fprintf(stderr, "m5fan: giving up: %llu refused, %d sessions failed or lost\n",
            (unsigned long long)(F.refused + (uint64_t)F.pool.n_refused), F.pool.n_dead);
    finish();
    return;
  }
  if (F.t_complete) {
    if (now - F.t_complete >= (uint64_t)(F.quiet_s * 1e9)) {
      finish();
      return;
    }
  } else if (settled && sends_done() && now - F.t_last_check >= CHECK_MS * 1000000u) {
    F.t_last_check = now;
    if (!missing_now()) {
      F.t_complete = now;
      F.cpu1 = lc_proc_cpu_s(F.server_pid, NULL);
      fprintf(stderr, "m5fan: complete after %.2f s; quiet period %.1f s\n",
              (double)(now - F.t_start) / 1e9, F.quiet_s);
      if (F.quiet_s <= 0) {
        finish();
        return;
      }
    }
  }
  m5_loop_timer_add(l, TICK_MS, tick, NULL);
}

static void usage(void) {
  fprintf(stderr,
          "usage: m5fan --print-subscribers --members N\n"
          "       m5fan [--host 127.0.0.1] --port P [--fqdn localhost] --members N [--range A:B]\n"
          "             [--parallel 32] [--topic NAME] [--send K --to group:ID|topic:NAME]\n"
          "             [--payload BYTES] [--state FILE] [--quiet S] [--timeout S] [--label NAME]\n"
          "             [--one-first] [--server-pid PID]\n");
  exit(2);
}

int main(int argc, char **argv) {
  const char *host = "127.0.0.1", *fqdn = "localhost", *to = NULL;
  int port = 0, print = 0, parallel = 32;
  F.label = "m5s";
  F.members = -1;
  F.from = 0;
  F.to = -1;
  F.quiet_s = 2;
  F.timeout_s = 300;
  F.payload_len = 64;
  F.first_msg = -1;
  static const struct option lo[] = {{"host", 1, 0, 'h'},
                                     {"port", 1, 0, 'p'},
                                     {"fqdn", 1, 0, 'f'},
                                     {"members", 1, 0, 'n'},
                                     {"range", 1, 0, 'r'},
                                     {"to", 1, 0, 'd'},
                                     {"parallel", 1, 0, 'P'},
                                     {"topic", 1, 0, 't'},
                                     {"send", 1, 0, 'k'},
                                     {"state", 1, 0, 's'},
                                     {"quiet", 1, 0, 'q'},
                                     {"timeout", 1, 0, 'T'},
                                     {"label", 1, 0, 'l'},
                                     {"payload", 1, 0, 'y'},
                                     {"one-first", 0, 0, 'o'},
                                     {"server-pid", 1, 0, 'S'},
                                     {"print-subscribers", 0, 0, 'x'},
                                     {0, 0, 0, 0}};
  int opt;
  while ((opt = getopt_long(argc, argv, "", lo, NULL)) != -1) {
    switch (opt) {
    case 'h':
      host = optarg;
      break;
    case 'p':
      port = atoi(optarg);
      break;
    case 'f':
      fqdn = optarg;
      break;
    case 'n':
      F.members = atoi(optarg);
      break;
    case 'r':
      if (sscanf(optarg, "%d:%d", &F.from, &F.to) != 2) usage();
      break;
    case 'd':
      to = optarg;
      break;
    case 'P':
      parallel = atoi(optarg);
      break;
    case 't':
      F.topic = optarg;
      break;
    case 'k':
      F.send_k = atoi(optarg);
      break;
    case 's':
      F.state_path = optarg;
      break;
    case 'q':
      F.quiet_s = atof(optarg);
      break;
    case 'T':
      F.timeout_s = atof(optarg);
      break;
    case 'l':
      F.label = optarg;
      break;
    case 'y':
      F.payload_len = atoi(optarg);
      break;
    case 'x':
      print = 1;
      break;
    case 'o':
      F.one_first = 1;
      break;
    case 'S':
      F.server_pid = atoi(optarg);
      break;
    default:
      usage();
    }
  }
  if (F.members < 1 || F.members > 100000000) usage();
  if (print) { /* the members, then the sender */
    for (int i = 0; i <= F.members; i++) {
      char id[64], supi[16], hex[65];
      uint8_t kausf[32];
      subscriber(i < F.members ? i : -1, id, sizeof id, supi, kausf);
      m5_hex_encode(kausf, 32, hex, sizeof hex);
      OPENSSL_cleanse(kausf, sizeof kausf);
      printf("%s %s %s\n", supi, hex, id);
    }
    return 0;
  }
  if (F.to < 0) F.to = F.members;
  if (port < 1 || port > 65535 || F.from < 0 || F.to > F.members || F.from >= F.to ||
      parallel < 1 || F.send_k < 0 || F.payload_len < 1 || F.payload_len > 4096 ||
      F.timeout_s <= 0 || F.quiet_s < 0)
    usage();
  if (F.topic && !m5_msg_name_valid(F.topic)) {
    fprintf(stderr, "m5fan: --topic: expected 1-128 characters of A-Z a-z 0-9 . _ : -\n");
    return 2;
  }
  if (F.send_k) {
    static char type[8], addr[M5_MSG_ADDR_MAX + 1];
    const char *c = to ? strchr(to, ':') : NULL;
    if (!c || (strncmp(to, "group:", 6) && strncmp(to, "topic:", 6)) || !m5_msg_name_valid(c + 1)) {
      fprintf(stderr, "m5fan: --send needs --to group:ID or --to topic:NAME\n");
      return 2;
    }
    snprintf(type, sizeof type, "%s", to[0] == 'g' ? "GROUP" : "TOPIC");
    snprintf(addr, sizeof addr, "%s", c + 1);
    F.to_type = type;
    F.to_addr = addr;
    F.sending = 1;
  }
  F.n_mem = F.to - F.from;

  /* msgIds: those of the state file, this run's, and some room for strays. */
  if (F.state_path && state_load(F.state_path, 0)) return 1;
  F.cap_msgs += F.send_k + EXTRA_MSGS;
  for (F.hash_cap = 64; F.hash_cap < 2 * (size_t)F.cap_msgs;)
    F.hash_cap *= 2;
  F.words = ((size_t)F.cap_msgs + 63) / 64;
  F.msgs = calloc((size_t)F.cap_msgs, sizeof *F.msgs);
  F.hash = calloc(F.hash_cap, sizeof *F.hash);
  F.got = calloc((size_t)F.n_mem * F.words, sizeof *F.got);
  if (!F.msgs || !F.hash || !F.got) {
    fprintf(stderr, "m5fan: out of memory\n");
    return 1;
  }
  if (F.state_path) {
    if (state_load(F.state_path, 1)) return 1;
    F.state = fopen(F.state_path, "a");
    if (!F.state) {
      perror(F.state_path);
      return 1;
    }
  }

  signal(SIGPIPE, SIG_IGN);
  m5_log_set_level(M5_LOG_WARN);
  bench_raise_nofile("m5fan", F.n_mem + F.sending);
  char err[256];
  F.loop = m5_loop_new();
  SSL_CTX *ctx = m5_akma_client_ctx_new(0, 0, err, sizeof err);
  if (!F.loop || !ctx) {
    fprintf(stderr, "m5fan: %s\n", ctx ? "out of memory" : err);
    return 1;
  }
  static const bu_cbs_t cbs = {on_ready, on_request, on_down};
  if (bu_pool_init(&F.pool, F.loop, ctx, host, (uint16_t)port, F.n_mem + F.sending, &cbs, NULL))
    return 1;
  F.pool.max_opening = parallel;
  F.pool.frozen = 1; /* a registered session that goes down is lost */
  for (int i = 0; i < F.pool.n; i++) {
    char supi[16];
    uint8_t kausf[32];
    subscriber(i < F.n_mem ? F.from + i : -1, F.pool.ue[i].id, sizeof F.pool.ue[i].id, supi, kausf);
    int rc = bu_cred(supi, kausf, fqdn, &F.pool.ue[i].cred);
    OPENSSL_cleanse(kausf, sizeof kausf);
    if (rc) {
      fprintf(stderr, "m5fan: cannot derive the AKMA credentials\n");
      return 1;
    }
  }
  /* msgIds differ from run to run (m5s's dedup window outlives a run) */
  if (RAND_bytes((unsigned char *)&F.nonce, sizeof F.nonce) != 1) {
    fprintf(stderr, "m5fan: no random bytes\n");
    return 1;
  }
  F.t_start = F.t_last_progress = bu_now_ns();
  fprintf(stderr,
          "m5fan: members %d..%d (%d)%s%s%s, %d handshakes at once, %d expected msgIds "
          "from the state file\n",
          F.from, F.to - 1, F.n_mem, F.topic ? ", topic " : "", F.topic ? F.topic : "",
          F.sending ? ", with the sender" : "", parallel, F.n_expected);
  m5_loop_timer_add(F.loop, 0, tick, NULL);
  m5_loop_run(F.loop);
  bu_pool_free(&F.pool);
  if (F.state) fclose(F.state);
  SSL_CTX_free(ctx);
  m5_loop_free(F.loop);
  free(F.msgs);
  free(F.hash);
  free(F.got);
  return F.exit_code;
}
