/* Load-generator core shared by m5load (m5s, MSGin5G-1) and mqload (Mosquitto, MQTT): the
 * pattern of docs/benchmarks.md, independent of the protocol.
 *
 * N sender/receiver pairs. Each sender sends 64-byte payloads (send time, pair, sequence) to
 * its own receiver; at most `window` messages per pair are in flight END TO END (sent, not
 * yet seen by the receiver). Phases: warm-up, saturation window (closed loop, as fast as the
 * window allows), then optionally warm-up and a window rate-limited to a fraction of the
 * measured saturation rate, then a drain (no new sends, wait for the last messages), and the
 * report: delivered / lost / duplicated, latency percentiles of each window, the server's
 * CPU (utime + stime of /proc/PID/stat) and RSS, and the generator's own CPU.
 *
 * The protocol side calls lc_start() once every client is ready, lc_tick() about every
 * millisecond, lc_received() for every message a receiver gets (before or after its ack,
 * as the protocol does it) and lc_failed() for a message the server refused. It provides
 * send(): 0 when the message left (or is queued in the client library), non-zero when the
 * pair must wait for the next tick. */
#ifndef M5_BENCH_LC_H
#define M5_BENCH_LC_H

#include <stddef.h>
#include <stdint.h>

#define LC_PAYLOAD 64

typedef struct {
  int pairs;
  int window;         /* end-to-end in-flight limit per pair */
  double warm_s;      /* warm-up before each measurement window */
  double meas_s;      /* each measurement window */
  double half;        /* fraction of the saturation rate for the second window; 0 = none */
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
      {"half", 1, 0, 'H'}, {"drain", 1, 0, 'd'}, {"server-pid", 1, 0, 'P'}
int lc_option(lc_opts_t *o, int opt, const char *arg);

int lc_init(const lc_opts_t *o);
void lc_start(void);
/* Call about every ms; paces the rate-limited window and moves the phases on. */
void lc_tick(void);
/* A receiver got the payload of pair `pair` (the pair it belongs to). */
void lc_received(int pair, const uint8_t *payload, size_t len);
/* The server refused or could not take a message of pair `pair`. */
void lc_failed(int pair, const char *why);
/* Let pair `pair` send what its window allows now (e.g. after a send() that failed became
 * possible again). */
void lc_pump(int pair);
int lc_sending(void);
uint64_t lc_now_ns(void);
/* CPU seconds of process pid so far (user + system; *sys, when not NULL, the system part), from
 * /proc/PID/stat; 0 when pid is 0 or unreadable. */
double lc_proc_cpu_s(int pid, double *sys);

#endif
