/* Load-generator core (lc.h): phases, the end-to-end window, pacing, counting, latency
 * histogram and the server's CPU / RSS from /proc. */
#include "lc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#define HIST_US 200000 /* exact 1 us buckets up to 200 ms, a sorted overflow list beyond */

typedef enum { P_IDLE, P_WARM1, P_SAT, P_WARM2, P_HALF, P_DRAIN, P_DONE } phase_t;

typedef struct {
  uint64_t sent, recvd, dups, failed;
  uint64_t *seen; /* bitmap of received sequence numbers */
  size_t seen_words;
  uint64_t next_due;
} pair_t;

typedef struct {
  uint64_t start_ns, end_ns, delivered, failed;
  uint64_t *hist; /* HIST_US counters */
  uint64_t *over;
  size_t n_over, cap_over;
  double srv_cpu0, srv_cpu1, srv_sys0, srv_sys1, gen_cpu0, gen_cpu1;
  long rss_kib, hwm_kib;
  double target_rate;
} win_t;

static lc_opts_t O;
static pair_t *P;
static phase_t ph = P_IDLE;
static uint64_t ph_start, interval_ns;
static win_t W[2]; /* 0: saturation, 1: rate-limited */
static win_t *cur;
static int reported_fail;

uint64_t lc_now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* The server's CPU seconds (user + system; *sys gets the system part). */
static double srv_cpu_s2(double *sys) {
  return lc_proc_cpu_s(O.server_pid, sys);
}

double lc_proc_cpu_s(int pid, double *sys) {
  if (sys) *sys = 0;
  if (!pid) return 0;
  char path[64], buf[1024];
  snprintf(path, sizeof path, "/proc/%d/stat", pid);
  FILE *f = fopen(path, "r");
  if (!f) return 0;
  size_t n = fread(buf, 1, sizeof buf - 1, f);
  fclose(f);
  buf[n] = 0;
  char *p = strrchr(buf, ')'); /* comm may hold spaces */
  if (!p) return 0;
  unsigned long ut = 0, st = 0;
  /* after ")": state(3) ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime(14) stime(15) */
  if (sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st) != 2) return 0;
  if (sys) *sys = (double)st / (double)sysconf(_SC_CLK_TCK);
  return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

static void srv_mem(long *rss, long *hwm) {
  *rss = *hwm = 0;
  if (!O.server_pid) return;
  char path[64], line[256];
  snprintf(path, sizeof path, "/proc/%d/status", O.server_pid);
  FILE *f = fopen(path, "r");
  if (!f) return;
  while (fgets(line, sizeof line, f)) {
    if (!strncmp(line, "VmRSS:", 6)) *rss = strtol(line + 6, NULL, 10);
    if (!strncmp(line, "VmHWM:", 6)) *hwm = strtol(line + 6, NULL, 10);
  }
  fclose(f);
}

static double gen_cpu_s(void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
         (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

int lc_option(lc_opts_t *o, int opt, const char *arg) {
  switch (opt) {
  case 'n': o->pairs = atoi(arg); return 1;
  case 'w': o->window = atoi(arg); return 1;
  case 'W': o->warm_s = atof(arg); return 1;
  case 's': o->meas_s = atof(arg); return 1;
  case 'H': o->half = atof(arg); return 1;
  case 'd': o->drain_s = atof(arg); return 1;
  case 'P': o->server_pid = atoi(arg); return 1;
  default: return 0;
  }
}

int lc_init(const lc_opts_t *o) {
  O = *o;
  P = calloc((size_t)O.pairs, sizeof *P);
  for (int i = 0; i < 2; i++) W[i].hist = calloc(HIST_US, sizeof(uint64_t));
  return P && W[0].hist && W[1].hist ? 0 : -1;
}

int lc_sending(void) {
  return ph >= P_WARM1 && ph <= P_HALF;
}

static uint64_t inflight(const pair_t *p) {
  return p->sent - p->recvd - p->failed;
}

void lc_pump(int i) {
  pair_t *p = &P[i];
  if (!lc_sending()) return;
  uint64_t now = interval_ns ? lc_now_ns() : 0;
  while (inflight(p) < (uint64_t)O.window) {
    if (interval_ns) {
      if (now < p->next_due) break;
      if (p->next_due + 50000000u < now) p->next_due = now; /* no burst after a stall */
    }
    uint8_t pl[LC_PAYLOAD];
    uint64_t t = lc_now_ns(), seq = p->sent;
    uint32_t pi = (uint32_t)i;
    memset(pl, 'x', sizeof pl);
    memcpy(pl, &t, 8);
    memcpy(pl + 8, &pi, 4);
    memcpy(pl + 12, &seq, 8);
    if (O.send(O.arg, i, pl)) break;
    p->sent++;
    if (interval_ns) p->next_due += interval_ns;
  }
}

static void win_begin(win_t *w) {
  w->start_ns = lc_now_ns();
  w->srv_cpu0 = srv_cpu_s2(&w->srv_sys0);
  w->gen_cpu0 = gen_cpu_s();
  cur = w;
}

static void win_end(win_t *w) {
  w->end_ns = lc_now_ns();
  w->srv_cpu1 = srv_cpu_s2(&w->srv_sys1);
  w->gen_cpu1 = gen_cpu_s();
  srv_mem(&w->rss_kib, &w->hwm_kib);
  cur = NULL;
}

static int cmp_u64(const void *a, const void *b) {
  uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
  return x < y ? -1 : x > y;
}

/* The q-quantile (0..1) in microseconds. */
static double pct(win_t *w, double q) {
  uint64_t n = w->delivered;
  if (!n) return 0;
  uint64_t rank = (uint64_t)(q * (double)(n - 1)) + 1, acc = 0;
  for (size_t us = 0; us < HIST_US; us++) {
    acc += w->hist[us];
    if (acc >= rank) return (double)us;
  }
  qsort(w->over, w->n_over, sizeof *w->over, cmp_u64);
  size_t k = (size_t)(rank - acc - 1);
  return k < w->n_over ? (double)w->over[k] : (double)HIST_US;
}

static double max_us(win_t *w) {
  if (w->n_over) {
    uint64_t m = 0;
    for (size_t k = 0; k < w->n_over; k++)
      if (w->over[k] > m) m = w->over[k];
    return (double)m;
  }
  for (size_t us = HIST_US; us-- > 0;)
    if (w->hist[us]) return (double)us;
  return 0;
}

static void report_win(const char *name, win_t *w) {
  double secs = (double)(w->end_ns - w->start_ns) / 1e9;
  double rate = (double)w->delivered / secs, srv = w->srv_cpu1 - w->srv_cpu0;
  printf("RESULT system=%s phase=%s pairs=%d window=%d secs=%.2f target_rate=%.0f delivered=%llu "
         "rate=%.0f failed=%llu srv_cpu_s=%.2f srv_cpu_pct=%.1f srv_sys_pct=%.1f srv_us_per_msg=%.2f "
         "gen_cpu_pct=%.1f p50_us=%.0f p99_us=%.0f p999_us=%.0f max_us=%.0f srv_rss_kib=%ld "
         "srv_hwm_kib=%ld\n",
         O.system, name, O.pairs, O.window, secs, w->target_rate, (unsigned long long)w->delivered,
         rate, (unsigned long long)w->failed, srv, 100.0 * srv / secs,
         100.0 * (w->srv_sys1 - w->srv_sys0) / secs,
         w->delivered ? 1e6 * srv / (double)w->delivered : 0.0,
         100.0 * (w->gen_cpu1 - w->gen_cpu0) / secs, pct(w, 0.50), pct(w, 0.99), pct(w, 0.999),
         max_us(w), w->rss_kib, w->hwm_kib);
}

static void finish(void) {
  ph = P_DONE;
  uint64_t sent = 0, recvd = 0, dups = 0, failed = 0, lost = 0;
  for (int i = 0; i < O.pairs; i++) {
    sent += P[i].sent;
    recvd += P[i].recvd;
    dups += P[i].dups;
    failed += P[i].failed;
    lost += inflight(&P[i]);
  }
  report_win("sat", &W[0]);
  if (O.half > 0) report_win("half", &W[1]);
  printf("RESULT system=%s phase=total sent=%llu delivered=%llu lost=%llu dup=%llu failed=%llu\n",
         O.system, (unsigned long long)sent, (unsigned long long)recvd, (unsigned long long)lost,
         (unsigned long long)dups, (unsigned long long)failed);
  fflush(stdout);
  O.done(O.arg);
}

void lc_start(void) {
  ph = P_WARM1;
  ph_start = lc_now_ns();
  fprintf(stderr, "%s: %d pairs ready, warm-up %.1f s, window %.1f s\n", O.system, O.pairs, O.warm_s,
          O.meas_s);
  for (int i = 0; i < O.pairs; i++) lc_pump(i);
}

void lc_tick(void) {
  uint64_t now = lc_now_ns();
  double el = (double)(now - ph_start) / 1e9;
  switch (ph) {
  case P_WARM1:
    if (el >= O.warm_s) {
      ph = P_SAT;
      ph_start = now;
      win_begin(&W[0]);
    }
    break;
  case P_SAT:
    if (el >= O.meas_s) {
      win_end(&W[0]);
      ph_start = now;
      if (O.half > 0) {
        double rate = (double)W[0].delivered / ((double)(W[0].end_ns - W[0].start_ns) / 1e9);
        W[1].target_rate = rate * O.half;
        double per_pair = W[1].target_rate / O.pairs;
        interval_ns = per_pair > 0 ? (uint64_t)(1e9 / per_pair) : 1000000000u;
        for (int i = 0; i < O.pairs; i++)
          P[i].next_due = now + interval_ns * (uint64_t)i / (uint64_t)O.pairs;
        ph = P_WARM2;
      } else {
        ph = P_DRAIN;
      }
    }
    break;
  case P_WARM2:
    if (el >= O.warm_s) {
      ph = P_HALF;
      ph_start = now;
      win_begin(&W[1]);
    }
    break;
  case P_HALF:
    if (el >= O.meas_s) {
      win_end(&W[1]);
      ph = P_DRAIN;
      ph_start = now;
    }
    break;
  case P_DRAIN: {
    uint64_t left = 0;
    for (int i = 0; i < O.pairs; i++) left += inflight(&P[i]);
    if (!left || el >= O.drain_s) finish();
    return;
  }
  default:
    return;
  }
  for (int i = 0; i < O.pairs; i++) lc_pump(i);
}

void lc_received(int pair, const uint8_t *payload, size_t len) {
  if (pair < 0 || pair >= O.pairs || len < 20) {
    if (!reported_fail++) fprintf(stderr, "%s: a message with a bad payload\n", O.system);
    return;
  }
  uint64_t t, seq;
  memcpy(&t, payload, 8);
  memcpy(&seq, payload + 12, 8);
  pair_t *p = &P[pair];
  size_t w = (size_t)(seq / 64);
  if (w >= p->seen_words) {
    size_t n = p->seen_words ? p->seen_words : 64;
    while (n <= w) n *= 2;
    uint64_t *s = realloc(p->seen, n * sizeof *s);
    if (!s) abort();
    memset(s + p->seen_words, 0, (n - p->seen_words) * sizeof *s);
    p->seen = s;
    p->seen_words = n;
  }
  uint64_t bit = 1ull << (seq % 64);
  if (p->seen[w] & bit) {
    p->dups++;
    return;
  }
  p->seen[w] |= bit;
  p->recvd++;
  if (cur) {
    uint64_t now = lc_now_ns(), us = now > t ? (now - t) / 1000 : 0;
    cur->delivered++;
    if (us < HIST_US) {
      cur->hist[us]++;
    } else {
      if (cur->n_over == cur->cap_over) {
        cur->cap_over = cur->cap_over ? cur->cap_over * 2 : 1024;
        cur->over = realloc(cur->over, cur->cap_over * sizeof *cur->over);
        if (!cur->over) abort();
      }
      cur->over[cur->n_over++] = us;
    }
  }
  lc_pump(pair);
}

void lc_failed(int pair, const char *why) {
  if (pair < 0 || pair >= O.pairs) return;
  P[pair].failed++;
  if (cur) cur->failed++;
  if (reported_fail++ < 5) fprintf(stderr, "%s: pair %d: message refused: %s\n", O.system, pair, why);
  lc_pump(pair);
}
