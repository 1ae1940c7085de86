/* Helpers shared by the unit tests (tests/unit/test_*.c): scratch directories, commands run
 * with a deadline, a throwaway PKI made by the openssl CLI, the real m5-aanf started on random
 * loopback ports and provisioned with m5ctl, an m5_loop run on its own thread, and processes
 * ended by pid. Everything is bounded in time and uses only loopback. Functions that can fail
 * return 0 or -1 (and say why on stderr), so that they serve in cmocka setup functions too. */
#ifndef M5_TESTUTIL_H
#define M5_TESTUTIL_H

#include "core/loop.h"
#include "http/server.h"

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* ---- time and process ---- */

void tu_sleep_ms(unsigned ms);
uint64_t tu_now_ms(void); /* CLOCK_MONOTONIC */

/* Ignores SIGPIPE (a peer that closes must not end the test) and seeds rand() for ports. */
void tu_process_init(void);

/* A random port in 20000..59999; the caller retries when it turns out to be taken. */
uint16_t tu_random_port(void);

/* ---- scratch directories ---- */

/* Creates /tmp/<prefix>-XXXXXX into dir (len bytes). */
int tu_mkdtemp(char *dir, size_t len, const char *prefix);

/* Removes dir and everything below it (links are removed, not followed). */
int tu_rmtree(const char *dir);

/* ---- commands and processes ---- */

/* Runs the shell command made from fmt in dir, output appended to <dir>/setup.log; 0 when it
 * exits 0 within timeout_s. On timeout its whole process group is killed. */
int tu_run(const char *dir, unsigned timeout_s, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Starts argv[0] (a path) with stdout and stderr appended to log; the pid, or -1. */
pid_t tu_spawn(const char *log, char *const argv[]);

/* Ends pid: SIGCONT (it may be stopped), SIGTERM, up to grace_ms for it to exit, then
 * SIGKILL; always reaps it. Does nothing for pid <= 0. */
void tu_kill(pid_t pid, unsigned grace_ms);

/* 1 when GET /healthz on 127.0.0.1:port answers 200 within a second. */
int tu_http_healthy(uint16_t port);

/* ---- a throwaway PKI (EC P-256, valid 2 days) ---- */

/* A self-signed CA: <dir>/<name>.crt and <dir>/<name>.key. */
int tu_pki_ca(const char *dir, const char *name, const char *cn);

/* <dir>/<name>.crt and .key signed by <dir>/<ca>.crt and .key; ext is the extension section
 * (lines "subjectAltName=...\n" and so on). */
int tu_pki_leaf(const char *dir, const char *ca, const char *name, const char *cn, const char *ext);

/* The usual extensions of a server certificate for localhost and 127.0.0.1. */
#define TU_EXT_SERVER                                                                              \
  "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n"                       \
  "basicConstraints=CA:FALSE\n"

/* `m5ctl pki init --dir <pki>`: the development PKI m5-aanf, m5s and AFs use. */
int tu_m5ctl_pki_init(const char *dir, const char *pki);

/* ---- the real m5-aanf ---- */

typedef struct {
  pid_t pid;
  uint16_t port, mgmt;
  char url[64];  /* https://localhost:<port> */
  char log[256]; /* its stdout and stderr */
} tu_aanf_t;

/* Starts m5-aanf with <dir>/<name>.yaml (written here: the PKI in pki, the database under
 * <dir>/<name>/, AF localhost allowed, then extra_yaml if not NULL) on random loopback ports,
 * retrying a lost port race; 0 once /healthz answers 200. */
int tu_aanf_start(tu_aanf_t *a, const char *dir, const char *name, const char *pki,
                  const char *extra_yaml);
void tu_aanf_stop(tu_aanf_t *a);

/* `m5ctl subscriber add` against a running AAnF; the A-KID it registered goes to akid. */
int tu_subscriber_add(const char *dir, const tu_aanf_t *a, const char *pki, const char *supi,
                      const char *kausf_hex, char *akid, size_t akid_len);

/* ---- loops ---- */

/* An m5_loop running on its own thread, with a mailbox to run code on it. */
typedef struct {
  m5_loop_t *loop;
  m5_mailbox_t *mb;
  pthread_t th;
  int running;
} tu_loop_thread_t;

int tu_loop_thread_start(tu_loop_thread_t *t, m5_loop_t *loop);

/* Runs fn(arg) on the loop thread and waits until it has returned. */
void tu_loop_thread_call(tu_loop_thread_t *t, void (*fn)(void *), void *arg);

/* Stops the loop, joins the thread and frees the mailbox; the loop stays the caller's. */
void tu_loop_thread_stop(tu_loop_thread_t *t);

/* Runs loop on this thread until *count reaches want or ms pass. */
void tu_loop_run_until(m5_loop_t *loop, const int *count, int want, unsigned ms);

/* ---- an HTTP server on its own loop thread ---- */

typedef struct {
  m5_loop_t *loop;
  tu_loop_thread_t lt;
  m5_http_server_t *srv;
  uint16_t port;
} tu_http_server_t;

/* A new loop, m5_http_server_new on it with o on a random loopback port (o->port is set;
 * ports in use are retried), and the loop running on its thread. 0, or -1 with err. */
int tu_http_server_start(tu_http_server_t *h, m5_http_server_opts_t *o, char *err, size_t err_len);

/* Frees the server on its loop thread, which keeps running; nothing once it is freed. */
void tu_http_server_close(tu_http_server_t *h);

/* tu_http_server_close, then stops the thread and frees the loop. */
void tu_http_server_stop(tu_http_server_t *h);

#endif
