/* Load-generator core (lc.h): phases, the end-to-end window, open-loop pacing, counting,
 * latency and pacing-lag histograms, the server's CPU / RSS from /proc/PID and the machine's
 * CPU from /proc/stat. */
#include "lc.h"

#include "procstat.h"

#include <openssl/objects.h>
#include <openssl/ssl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#define HIST_US 200000 /* exact 1 us buckets up to 200 ms, a sorted overflow list beyond */
#define GEN_BOUND_PCT 90.0
#define MISS_FRACTION 0.95 /* a paced window below 95 % of its rate missed it */

typedef enum { P_IDLE, P_WARM1, P_SAT, P_WARM2, P_HALF, P_DRAIN, P_DONE } phase_t;

typedef struct {
  uint64_t sent, recvd, dups, failed;
  uint64_t *seen; /* bitmap of received sequence numbers */
  size_t seen_words;
  uint64_t next_due; /* paced: scheduled time of the pair's next send */
} pair_t;

typedef struct {
  uint64_t *b; /* HIST_US counters */
  uint64_t *over;
  size_t n_over, cap_over;
  uint64_t n;
} hist_t;

/* /proc/stat's first line, in clock ticks. */
typedef struct {
  unsigned long long busy, iowait, total;
} mach_t;

typedef struct {
  uint64_t start_ns, end_ns, delivered, failed, sent;
  hist_t lat, lag;
  double srv_cpu0, srv_cpu1, srv_sys0, srv_sys1, gen_cpu0, gen_cpu1;
  mach_t m0, m1;
  long rss_kib, hwm_kib;
  double target_rate;
  int paced;
} win_t;

static lc_opts_t O;
static pair_t *P;
static phase_t ph = P_IDLE;
static uint64_t ph_start, interval_ns;
static win_t W[2]; /* 0: saturation, 1: paced */
static win_t *cur;
static int reported_fail, sessions_lost, exit_code = 1, tls_done;

uint64_t lc_now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

double lc_proc_cpu_s(int pid, double *sys) {
  if (!pid) { /* no server given: no server figures (not this process's) */
    if (sys) *sys = 0;
    return 0;
  }
  return bench_proc_cpu_s(pid, sys);
}

/* Every core: user nice system idle iowait irq softirq steal (guest is inside user). Busy is
 * all but idle and steal (another guest's time): kernel threads (the fsync work of jbd2 and
 * kworkers), softirq (loopback TCP) and iowait (a core waiting for the disk) count. */
static void mach_read(mach_t *m) {
  memset(m, 0, sizeof *m);
  FILE *f = fopen("/proc/stat", "r");
  if (!f) return;
  unsigned long long v[8] = {0};
  if (fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2], &v[3], &v[4],
             &v[5], &v[6], &v[7]) == 8) {
    m->busy = v[0] + v[1] + v[2] + v[4] + v[5] + v[6];
    m->iowait = v[4];
    m->total = m->busy + v[3];
  }
  fclose(f);
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
  case 'R': o->rate = atof(arg); return 1;
  case 'd': o->drain_s = atof(arg); return 1;
  case 'P': o->server_pid = atoi(arg); return 1;
  default: return 0;
  }
}

int lc_init(const lc_opts_t *o) {
  O = *o;
  P = calloc((size_t)O.pairs, sizeof *P);
  int ok = P != NULL;
  for (int i = 0; i < 2; i++) {
    W[i].lat.b = calloc(HIST_US, sizeof(uint64_t));
    W[i].lag.b = calloc(HIST_US, sizeof(uint64_t));
    ok = ok && W[i].lat.b && W[i].lag.b;
  }
  return ok ? 0 : -1;
}

int lc_sending(void) {
  return ph >= P_WARM1 && ph <= P_HALF;
}

int lc_exit_code(void) {
  return exit_code;
}

static void hist_add(hist_t *h, uint64_t us) {
  h->n++;
  if (us < HIST_US) {
    h->b[us]++;
    return;
  }
  if (h->n_over == h->cap_over) {
    h->cap_over = h->cap_over ? h->cap_over * 2 : 1024;
    h->over = realloc(h->over, h->cap_over * sizeof *h->over);
    if (!h->over) abort();
  }
  h->over[h->n_over++] = us;
}

static uint64_t inflight(const pair_t *p) {
  return p->sent - p->recvd - p->failed;
}

static void count_failed(pair_t *p, int i, const char *why) {
  p->failed++;
  if (cur) cur->failed++;
  if (reported_fail++ < 5) fprintf(stderr, "%s: pair %d: message refused: %s\n", O.system, i, why);
}

void lc_pump(int i) {
  pair_t *p = &P[i];
  if (!lc_sending()) return;
  uint64_t now = lc_now_ns();
  for (;;) {
    uint64_t t = now;
    if (interval_ns) { /* open loop: every send that is due, late ones included */
      if (now < p->next_due) break;
      t = p->next_due;
    } else if (inflight(p) >= (uint64_t)O.window) {
      break;
    }
    uint8_t pl[LC_PAYLOAD];
    uint64_t seq = p->sent;
    uint32_t pi = (uint32_t)i;
    memset(pl, 'x', sizeof pl);
    memcpy(pl, &t, 8); /* latency counts from the scheduled time when paced */
    memcpy(pl + 8, &pi, 4);
    memcpy(pl + 12, &seq, 8);
    int rc = O.send(O.arg, i, pl);
    if (rc == LC_WAIT) break;
    p->sent++;
    if (cur) {
      cur->sent++;
      if (interval_ns) hist_add(&cur->lag, (now - t) / 1000);
    }
    if (interval_ns) p->next_due += interval_ns;
    if (rc == LC_REFUSED) { /* counted as sent and refused; the run is not a result */
      count_failed(p, i, "refused by the client library");
      break;
    }
  }
}

static void win_begin(win_t *w) {
  w->start_ns = lc_now_ns();
  w->srv_cpu0 = lc_proc_cpu_s(O.server_pid, &w->srv_sys0);
  w->gen_cpu0 = gen_cpu_s();
  mach_read(&w->m0);
  cur = w;
}

static void win_end(win_t *w) {
  w->end_ns = lc_now_ns();
  w->srv_cpu1 = lc_proc_cpu_s(O.server_pid, &w->srv_sys1);
  w->gen_cpu1 = gen_cpu_s();
  mach_read(&w->m1);
  srv_mem(&w->rss_kib, &w->hwm_kib);
  cur = NULL;
}

static int cmp_u64(const void *a, const void *b) {
  uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
  return x < y ? -1 : x > y;
}

/* The q-quantile (0..1) in microseconds. */
static double pct(hist_t *h, double q) {
  uint64_t n = h->n;
  if (!n) return 0;
  uint64_t rank = (uint64_t)(q * (double)(n - 1)) + 1, acc = 0;
  for (size_t us = 0; us < HIST_US; us++) {
    acc += h->b[us];
    if (acc >= rank) return (double)us;
  }
  qsort(h->over, h->n_over, sizeof *h->over, cmp_u64);
  size_t k = (size_t)(rank - acc - 1);
  return k < h->n_over ? (double)h->over[k] : (double)HIST_US;
}

static double max_us(hist_t *h) {
  if (h->n_over) {
    uint64_t m = 0;
    for (size_t k = 0; k < h->n_over; k++)
      if (h->over[k] > m) m = h->over[k];
    return (double)m;
  }
  for (size_t us = HIST_US; us-- > 0;)
    if (h->b[us]) return (double)us;
  return 0;
}

static void report_win(const char *name, win_t *w) {
  if (!w->start_ns) return; /* the run ended before this window began */
  if (!w->end_ns) win_end(w);
  double secs = (double)(w->end_ns - w->start_ns) / 1e9, hz = (double)sysconf(_SC_CLK_TCK);
  double rate = (double)w->delivered / secs, srv = w->srv_cpu1 - w->srv_cpu0;
  double gen = w->gen_cpu1 - w->gen_cpu0, gen_pct = 100.0 * gen / secs;
  double mach = (double)(w->m1.busy - w->m0.busy) / hz;
  double mach_tot = (double)(w->m1.total - w->m0.total) / hz;
  double io = (double)(w->m1.iowait - w->m0.iowait) / hz;
  double minus_gen = mach > gen ? mach - gen : 0;
  double send_rate = (double)w->sent / secs;
  int missed = w->paced && (send_rate < MISS_FRACTION * w->target_rate ||
                            rate < MISS_FRACTION * w->target_rate);
  printf("RESULT system=%s phase=%s mode=%s pairs=%d window=%d secs=%.2f target_rate=%.0f "
         "send_rate=%.0f delivered=%llu rate=%.0f failed=%llu missed=%d lag_p50_us=%.0f "
         "lag_p99_us=%.0f lag_max_us=%.0f srv_cpu_s=%.2f srv_cpu_pct=%.1f srv_sys_pct=%.1f "
         "srv_us_per_msg=%.2f mach_cpu_pct=%.1f mach_iowait_pct=%.1f mach_busy_pct=%.1f "
         "mach_us_per_msg=%.2f mach_other_pct=%.1f gen_cpu_pct=%.1f gen_bound=%d p50_us=%.0f p99_us=%.0f "
         "p999_us=%.0f max_us=%.0f srv_rss_kib=%ld srv_hwm_kib=%ld\n",
         O.system, name, w->paced ? "open" : "closed", O.pairs, O.window, secs, w->target_rate,
         send_rate, (unsigned long long)w->delivered, rate, (unsigned long long)w->failed, missed,
         pct(&w->lag, 0.50), pct(&w->lag, 0.99), max_us(&w->lag), srv, 100.0 * srv / secs,
         100.0 * (w->srv_sys1 - w->srv_sys0) / secs,
         w->delivered ? 1e6 * srv / (double)w->delivered : 0.0, 100.0 * minus_gen / secs,
         100.0 * io / secs, mach_tot > 0 ? 100.0 * mach / mach_tot : 0.0,
         w->delivered ? 1e6 * minus_gen / (double)w->delivered : 0.0,
         minus_gen > srv ? 100.0 * (minus_gen - srv) / secs : 0.0, gen_pct,
         gen_pct > GEN_BOUND_PCT, pct(&w->lat, 0.50), pct(&w->lat, 0.99), pct(&w->lat, 0.999),
         max_us(&w->lat), w->rss_kib, w->hwm_kib);
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
  if (!(O.rate > 0)) report_win("sat", &W[0]);
  if (O.half > 0 || O.rate > 0) report_win(O.rate > 0 ? "paced" : "half", &W[1]);
  exit_code = lost || dups || failed || sessions_lost;
  printf("RESULT system=%s phase=total sent=%llu delivered=%llu lost=%llu dup=%llu failed=%llu "
         "lost_sessions=%d ok=%d\n",
         O.system, (unsigned long long)sent, (unsigned long long)recvd, (unsigned long long)lost,
         (unsigned long long)dups, (unsigned long long)failed, sessions_lost, !exit_code);
  fflush(stdout);
  if (exit_code)
    fprintf(stderr, "%s: NOT A RESULT: %llu lost, %llu duplicated, %llu refused, %d sessions lost\n",
            O.system, (unsigned long long)lost, (unsigned long long)dups,
            (unsigned long long)failed, sessions_lost);
  O.done(O.arg);
}

/* The open-loop schedule at `rate` msg/s in all, pairs staggered over one interval. */
static void pace(double rate, uint64_t now) {
  W[1].target_rate = rate;
  W[1].paced = 1;
  double per_pair = rate / O.pairs;
  interval_ns = per_pair > 0 ? (uint64_t)(1e9 / per_pair) : 1000000000u;
  if (!interval_ns) interval_ns = 1;
  for (int i = 0; i < O.pairs; i++) P[i].next_due = now + interval_ns * (uint64_t)i / (uint64_t)O.pairs;
}

void lc_start(void) {
  ph = P_WARM1;
  ph_start = lc_now_ns();
  if (O.rate > 0) pace(O.rate, ph_start);
  fprintf(stderr, "%s: %d pairs ready, warm-up %.1f s, window %.1f s%s\n", O.system, O.pairs,
          O.warm_s, O.meas_s, O.rate > 0 ? ", paced (open loop)" : "");
  for (int i = 0; i < O.pairs; i++) lc_pump(i);
}

void lc_tick(void) {
  uint64_t now = lc_now_ns();
  double el = (double)(now - ph_start) / 1e9;
  if (sessions_lost && ph != P_DONE) { /* not a result any more: report what there is, stop */
    finish();
    return;
  }
  switch (ph) {
  case P_WARM1:
    if (el >= O.warm_s) {
      ph_start = now;
      if (O.rate > 0) {
        ph = P_HALF;
        win_begin(&W[1]);
      } else {
        ph = P_SAT;
        win_begin(&W[0]);
      }
    }
    break;
  case P_SAT:
    if (el >= O.meas_s) {
      win_end(&W[0]);
      ph_start = now;
      if (O.half > 0) {
        pace((double)W[0].delivered / ((double)(W[0].end_ns - W[0].start_ns) / 1e9) * O.half, now);
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
  if (seq >= p->sent) { /* not a message this pair sent: count it as a duplicate, never as one */
    p->dups++;
    return;
  }
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
    uint64_t now = lc_now_ns();
    cur->delivered++;
    hist_add(&cur->lat, now > t ? (now - t) / 1000 : 0);
  }
  lc_pump(pair);
}

void lc_failed(int pair, const char *why) {
  if (pair < 0 || pair >= O.pairs) return;
  count_failed(&P[pair], pair, why);
  lc_pump(pair);
}

void lc_session_lost(const char *who, const char *why) {
  if (ph == P_IDLE || ph == P_DONE) return;
  if (sessions_lost++ < 5) fprintf(stderr, "%s: session %s lost mid-run: %s\n", O.system, who, why);
}

void lc_tls_report(const void *vssl) {
  const SSL *ssl = vssl;
  if (tls_done || !ssl) return;
  tls_done = 1;
  int nid = (int)SSL_get_negotiated_group((SSL *)ssl);
  const char *g = nid ? OBJ_nid2sn(nid & (int)~TLSEXT_nid_unknown) : NULL;
  printf("TLS system=%s version=%s suite=%s group=%s kex=%s\n", O.system, SSL_get_version(ssl),
         SSL_get_cipher_name(ssl), g ? g : "none",
         SSL_session_reused((SSL *)ssl) ? (nid ? "psk_dhe_ke" : "psk_ke") : (nid ? "ecdhe" : "?"));
  fflush(stdout);
}
