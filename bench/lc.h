/* Load-generator core shared by m5load (m5s, MSGin5G-1) and mqload (Mosquitto, MQTT): the
 * pattern of docs/benchmarks.md, independent of the protocol.
 *
 * N sender/receiver pairs. Each sender sends 64-byte payloads (send time, pair, sequence) to
 * its own receiver. Two kinds of measurement window:
 *  - saturation (closed loop): at most `window` messages per pair in flight END TO END (sent,
 *    not yet seen by the receiver), sent as fast as the window allows;
 *  - paced (open loop): every pair has a schedule of send times at a fixed total rate; a send
 *    that cannot leave on time (client queue full) stays due and leaves as soon as it can,
 *    nothing is dropped, and its latency counts from its SCHEDULED time (no coordinated
 *    omission). The pacing lag (actual - scheduled send time) and the achieved rates are
 *    reported; a window whose sends or deliveries fall short of the rate is marked missed=1.
 * Phases: warm-up, saturation window, then optionally warm-up and a paced window (at `rate`,
 * or at `half` x the measured saturation), then a drain (no new sends, wait for the last
 * messages), and the report: delivered / lost / duplicated / refused, sessions lost, latency
 * percentiles of each window, the server's CPU (utime + stime of /proc/PID/stat) and RSS, the
 * machine's CPU (/proc/stat, every core: user, nice, system, irq, softirq, iowait) minus the
 * generator's own (and what of it is neither server nor generator: kernel threads, softirq,
 * iowait, other jobs: mach_other_pct), and the generator's own CPU (generator-bound above 90 %
 * of its core).
 * With `rate` set there is no saturation window: warm-up and paced window at that rate.
 *
 * The protocol side calls lc_start() once every client is ready, lc_tick() about every
 * millisecond, lc_received() for every message a receiver gets (before or after its ack,
 * as the protocol does it), lc_failed() for a sent message the server refused and
 * lc_session_lost() when a session dies after lc_start(). It provides send(): LC_SENT when
 * the message left (or is queued in the client library), LC_WAIT when the pair must wait
 * for a later tick (nothing was sent), LC_REFUSED when the client library refused it at once
 * (counted as sent and refused). A refusal, a lost or duplicated message or a lost session
 * makes lc_exit_code() non-zero: such a run is not a result (a lost session ends it at the
 * next tick, with the report of what there is). */
#ifndef M5_BENCH_LC_H
#define M5_BENCH_LC_H

#include <stddef.h>
#include <stdint.h>

#define LC_PAYLOAD 64

enum { LC_SENT = 0, LC_WAIT = 1, LC_REFUSED = -1 };

typedef struct {
  int pairs;
  int window;         /* end-to-end in-flight limit per pair (saturation window) */
  double warm_s;      /* warm-up before each measurement window */
  double meas_s;      /* each measurement window */
  double half;        /* paced window at this fraction of the saturation rate; 0 = none */
  double rate;        /* > 0: no saturation window; paced window at this many msg/s in all */
  double drain_s;     /* longest wait for in-flight messages at the end */
  int server_pid;     /* 0 = no server figures */
  const char *system; /* label printed in the report */
  int (*send)(void *arg, int pair, const uint8_t payload[LC_PAYLOAD]);
  void (*done)(void *arg); /* the report is printed: stop the loop */
  void *arg;
} lc_opts_t;

/* The pattern options both generators take, for their getopt_long tables; lc_option() parses
 * them. Returns 1 when opt was one of them, 0 otherwise. */
#define LC_LONG_OPTIONS                                                                            \
  {"pairs", 1, 0, 'n'}, {"window", 1, 0, 'w'}, {"warm", 1, 0, 'W'}, {"secs", 1, 0, 's'},          \
      {"half", 1, 0, 'H'}, {"drain", 1, 0, 'd'}, {"server-pid", 1, 0, 'P'}, {"rate", 1, 0, 'R'}
#define LC_USAGE                                                                                   \
  "  --secs S: each measuring window; --warm S: warm-up before each\n"                             \
  "  --window W: saturation window, W messages in flight per pair end to end (closed loop)\n"      \
  "  --half F: then a paced window (open loop) at F x the saturation rate (0: none)\n"             \
  "  --rate R: no saturation window, only a paced window at R msg/s in all (open loop)\n"          \
  "  --drain S: longest wait for the last messages; --server-pid PID: server CPU and RSS\n"        \
  "  exit status 1 when a message was lost, duplicated or refused, or a session lost\n"
int lc_option(lc_opts_t *o, int opt, const char *arg);

int lc_init(const lc_opts_t *o);
void lc_start(void);
/* Call about every ms; paces the open-loop window and moves the phases on. */
void lc_tick(void);
/* A receiver got the payload of pair `pair` (the pair it belongs to). */
void lc_received(int pair, const uint8_t *payload, size_t len);
/* The server refused or could not take a message of pair `pair` that send() had taken. */
void lc_failed(int pair, const char *why);
/* A session went down after lc_start() (the run is not a result). */
void lc_session_lost(const char *who, const char *why);
/* Let pair `pair` send what its window or schedule allows now (e.g. after a send() that
 * waited became possible again). */
void lc_pump(int pair);
int lc_sending(void);
/* 0 when the run finished with nothing lost, duplicated or refused and no session lost. */
int lc_exit_code(void);
/* Prints "TLS system=<label> version=.. suite=.. group=.. kex=.." for an established TLS
 * connection (an SSL *), once. */
void lc_tls_report(const void *ssl);
uint64_t lc_now_ns(void);
/* CPU seconds of process pid so far (user + system; *sys, when not NULL, the system part), from
 * /proc/PID/stat; 0 when pid is 0 or unreadable. */
double lc_proc_cpu_s(int pid, double *sys);

#endif
