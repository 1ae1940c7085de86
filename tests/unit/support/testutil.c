/* Helpers shared by the unit tests: see testutil.h. */
#include "testutil.h"

#include "core/err.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <netinet/in.h>
#include <semaphore.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#ifndef M5_BIN_DIR
#error "M5_BIN_DIR must name the directory holding m5-aanf and m5ctl"
#endif

/* ---- time and process ---- */

void tu_sleep_ms(unsigned ms) {
  struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
  nanosleep(&ts, NULL);
}

uint64_t tu_now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

void tu_process_init(void) {
  signal(SIGPIPE, SIG_IGN);
  srand((unsigned)(time(NULL) ^ getpid()));
}

uint16_t tu_random_port(void) {
  return (uint16_t)(20000 + rand() % 40000);
}

/* ---- scratch directories ---- */

int tu_mkdtemp(char *dir, size_t len, const char *prefix) {
  int n = snprintf(dir, len, "/tmp/%s-XXXXXX", prefix);
  if (n < 0 || (size_t)n >= len || !mkdtemp(dir)) {
    fprintf(stderr, "cannot create a scratch directory /tmp/%s-*: %s\n", prefix, strerror(errno));
    return -1;
  }
  return 0;
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
  (void)st, (void)flag, (void)ftw;
  return remove(path) == 0 ? 0 : -1;
}

int tu_rmtree(const char *dir) {
  if (nftw(dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS) != 0) {
    fprintf(stderr, "cannot remove %s: %s\n", dir, strerror(errno));
    return -1;
  }
  return 0;
}

/* ---- commands and processes ---- */

/* Waits for pid until deadline (tu_now_ms); its wait status, or -1 after killing its group. */
static int wait_until(pid_t pid, uint64_t deadline) {
  int st;
  for (;;) {
    pid_t r = waitpid(pid, &st, WNOHANG);
    if (r == pid) return st;
    if (r < 0 && errno != EINTR) return -1;
    if (tu_now_ms() >= deadline) break;
    tu_sleep_ms(10);
  }
  kill(-pid, SIGKILL);
  waitpid(pid, NULL, 0);
  return -1;
}

int tu_run(const char *dir, unsigned timeout_s, const char *fmt, ...) {
  char cmd[2048], log[512];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(cmd, sizeof cmd, fmt, ap);
  va_end(ap);
  if (n < 0 || (size_t)n >= sizeof cmd) return -1;
  snprintf(log, sizeof log, "%s/setup.log", dir);
  pid_t pid = fork();
  if (pid < 0) return -1;
  if (pid == 0) {
    setpgid(0, 0); /* so that a timeout ends the command's children too */
    int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0600);
    if (fd < 0 || chdir(dir) != 0) _exit(126);
    dup2(fd, 1);
    dup2(fd, 2);
    execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
    _exit(127);
  }
  int st = wait_until(pid, tu_now_ms() + (uint64_t)timeout_s * 1000u);
  if (st < 0) {
    fprintf(stderr, "timed out after %u s: %s (in %s)\n", timeout_s, cmd, dir);
    return -1;
  }
  if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
    fprintf(stderr, "failed: %s; see %s\n", cmd, log);
    return -1;
  }
  return 0;
}

pid_t tu_spawn(const char *log, char *const argv[]) {
  pid_t pid = fork();
  if (pid != 0) return pid < 0 ? -1 : pid;
  int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0600);
  if (fd >= 0) {
    dup2(fd, 1);
    dup2(fd, 2);
  }
  execv(argv[0], argv);
  _exit(127);
}

void tu_kill(pid_t pid, unsigned grace_ms) {
  if (pid <= 0) return;
  kill(pid, SIGCONT);
  kill(pid, SIGTERM);
  int st;
  for (unsigned t = 0; t < grace_ms && waitpid(pid, &st, WNOHANG) == 0; t += 100)
    tu_sleep_ms(100);
  kill(pid, SIGKILL); /* fails harmlessly once it was reaped */
  waitpid(pid, NULL, 0);
}

int tu_http_healthy(uint16_t port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return 0;
  struct timeval tv = {1, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  int ok = 0;
  if (connect(fd, (struct sockaddr *)&a, sizeof a) == 0) {
    static const char req[] =
        "GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
    char buf[64] = {0};
    if (write(fd, req, sizeof req - 1) == (ssize_t)(sizeof req - 1) &&
        read(fd, buf, sizeof buf - 1) > 12)
      ok = strncmp(buf, "HTTP/1.1 200", 12) == 0;
  }
  close(fd);
  return ok;
}

/* ---- a throwaway PKI ---- */

#define EC_KEY_OPTS "-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes"

int tu_pki_ca(const char *dir, const char *name, const char *cn) {
  return tu_run(dir, 30,
                "openssl req -x509 " EC_KEY_OPTS " -keyout %s.key -out %s.crt -days 2 -subj /CN=%s "
                "-addext basicConstraints=critical,CA:TRUE "
                "-addext keyUsage=critical,keyCertSign,cRLSign",
                name, name, cn);
}

int tu_pki_leaf(const char *dir, const char *ca, const char *name, const char *cn,
                const char *ext) {
  char path[512];
  snprintf(path, sizeof path, "%s/%s.ext", dir, name);
  FILE *f = fopen(path, "w");
  if (!f) {
    fprintf(stderr, "cannot write %s: %s\n", path, strerror(errno));
    return -1;
  }
  int bad = fputs(ext, f) < 0;
  if (fclose(f) != 0 || bad) return -1;
  return tu_run(dir, 30,
                "openssl req -new " EC_KEY_OPTS " -keyout %s.key -out %s.csr -subj /CN=%s && "
                "openssl x509 -req -in %s.csr -CA %s.crt -CAkey %s.key -CAcreateserial -days 2 "
                "-sha256 -extfile %s.ext -out %s.crt",
                name, name, cn, name, ca, ca, name, name);
}

int tu_m5ctl_pki_init(const char *dir, const char *pki) {
  return tu_run(dir, 60, "%s/m5ctl pki init --dir %s", M5_BIN_DIR, pki);
}

/* ---- the real m5-aanf ---- */

int tu_aanf_start(tu_aanf_t *a, const char *dir, const char *name, const char *pki,
                  const char *extra_yaml) {
  memset(a, 0, sizeof *a);
  a->pid = -1;
  char cfg[256];
  snprintf(cfg, sizeof cfg, "%s/%s.yaml", dir, name);
  snprintf(a->log, sizeof a->log, "%s/%s.log", dir, name);
  for (int attempt = 0; attempt < 5; attempt++) {
    uint16_t port = tu_random_port(), mgmt = tu_random_port();
    if (port == mgmt) continue;
    FILE *f = fopen(cfg, "w");
    if (!f) return -1;
    fprintf(f,
            "listen: {host: 127.0.0.1, port: %u}\n"
            "mgmt: {host: 127.0.0.1, port: %u}\n"
            "tls: {cert: %s/aanf.crt, key: %s/aanf.key, ca: %s/ca.crt}\n"
            "db: {path: %s/%s/aanf.db}\n"
            "workers: 1\n"
            "afs:\n  allowed: [localhost]\n"
            "%s",
            (unsigned)port, (unsigned)mgmt, pki, pki, pki, dir, name, extra_yaml ? extra_yaml : "");
    fclose(f);
    char *argv[] = {M5_BIN_DIR "/m5-aanf", "--config", cfg, NULL};
    pid_t pid = tu_spawn(a->log, argv);
    if (pid < 0) return -1;
    for (int i = 0; i < 150; i++) {
      if (tu_http_healthy(mgmt)) {
        a->pid = pid;
        a->port = port;
        a->mgmt = mgmt;
        snprintf(a->url, sizeof a->url, "https://localhost:%u", (unsigned)port);
        return 0;
      }
      if (waitpid(pid, NULL, WNOHANG) == pid) { /* exited: most likely a port was taken */
        pid = -1;
        break;
      }
      tu_sleep_ms(100);
    }
    tu_kill(pid, 0);
  }
  fprintf(stderr, "m5-aanf did not start; see %s\n", a->log);
  return -1;
}

void tu_aanf_stop(tu_aanf_t *a) {
  tu_kill(a->pid, 5000);
  a->pid = -1;
}

int tu_subscriber_add(const char *dir, const tu_aanf_t *a, const char *pki, const char *supi,
                      const char *kausf_hex, char *akid, size_t akid_len) {
  char out[512], line[512] = "";
  snprintf(out, sizeof out, "%s/subscriber.out", dir);
  int rc =
      tu_run(dir, 30, "%s/m5ctl subscriber add --supi %s --kausf %s --aanf %s --pki %s >%s 2>&1",
             M5_BIN_DIR, supi, kausf_hex, a->url, pki, out);
  FILE *f = fopen(out, "r");
  if (f) {
    if (!fgets(line, sizeof line, f)) line[0] = '\0';
    fclose(f);
  }
  const char *at = strstr(line, " akid="); /* "registered supi=<supi> akid=<akid>" */
  if (rc != 0 || !at) {
    fprintf(stderr, "m5ctl subscriber add: %s\n", line);
    return -1;
  }
  snprintf(akid, akid_len, "%s", at + 6);
  akid[strcspn(akid, "\r\n ")] = '\0';
  return 0;
}

/* ---- loops ---- */

typedef struct {
  void (*fn)(void *);
  void *arg;
  sem_t done;
} call_t;

static void on_call(void *msg, void *arg) {
  (void)arg;
  call_t *c = msg;
  c->fn(c->arg);
  sem_post(&c->done);
}

static void *loop_thread_main(void *arg) {
  tu_loop_thread_t *t = arg;
  m5_loop_run(t->loop);
  return NULL;
}

int tu_loop_thread_start(tu_loop_thread_t *t, m5_loop_t *loop) {
  memset(t, 0, sizeof *t);
  t->loop = loop;
  t->mb = m5_mailbox_new(loop, 16, on_call, NULL);
  if (!t->mb) return -1;
  if (pthread_create(&t->th, NULL, loop_thread_main, t) != 0) {
    m5_mailbox_free(t->mb, NULL);
    t->mb = NULL;
    return -1;
  }
  t->running = 1;
  return 0;
}

void tu_loop_thread_call(tu_loop_thread_t *t, void (*fn)(void *), void *arg) {
  call_t c = {.fn = fn, .arg = arg};
  sem_init(&c.done, 0, 0);
  while (m5_mailbox_post(t->mb, &c) != M5_OK)
    tu_sleep_ms(1);
  sem_wait(&c.done);
  sem_destroy(&c.done);
}

void tu_loop_thread_stop(tu_loop_thread_t *t) {
  if (!t->running) return;
  m5_loop_stop(t->loop);
  pthread_join(t->th, NULL);
  m5_mailbox_free(t->mb, NULL);
  t->mb = NULL;
  t->running = 0;
}

typedef struct {
  const int *count;
  int want;
  uint64_t deadline;
} pump_t;

static void pump_cb(m5_loop_t *loop, void *arg) {
  pump_t *p = arg;
  if (*p->count >= p->want || m5_clock_mono_ms() > p->deadline) {
    m5_loop_stop(loop);
    return;
  }
  assert_true(m5_loop_timer_add(loop, 5, pump_cb, p) != 0);
}

void tu_loop_run_until(m5_loop_t *loop, const int *count, int want, unsigned ms) {
  pump_t p = {count, want, m5_clock_mono_ms() + ms};
  assert_true(m5_loop_timer_add(loop, 0, pump_cb, &p) != 0);
  m5_loop_run(loop);
  /* The pump may still be armed when something else stopped the loop: let it see the
   * deadline before p goes out of scope. */
  p.deadline = 0;
  p.want = 0;
  m5_loop_timer_add(loop, 0, pump_cb, &p);
  m5_loop_run(loop);
}

/* ---- an HTTP server on its own loop thread ---- */

int tu_http_server_start(tu_http_server_t *h, m5_http_server_opts_t *o, char *err, size_t err_len) {
  memset(h, 0, sizeof *h);
  h->loop = m5_loop_new();
  if (!h->loop) {
    snprintf(err, err_len, "m5_loop_new failed");
    return -1;
  }
  for (int tries = 0; tries < 50 && !h->srv; tries++) {
    o->port = tu_random_port();
    h->srv = m5_http_server_new(h->loop, o, err, err_len);
    if (!h->srv && !strstr(err, "Address already in use")) break;
  }
  if (h->srv && tu_loop_thread_start(&h->lt, h->loop) != 0) {
    snprintf(err, err_len, "cannot start the loop thread");
    m5_http_server_free(h->srv);
    h->srv = NULL;
  }
  if (!h->srv) {
    m5_loop_free(h->loop);
    memset(h, 0, sizeof *h);
    return -1;
  }
  h->port = o->port;
  return 0;
}

static void close_on_loop(void *arg) {
  tu_http_server_t *h = arg;
  if (h->srv) m5_http_server_free(h->srv);
  h->srv = NULL;
}

void tu_http_server_close(tu_http_server_t *h) {
  if (h->lt.running) tu_loop_thread_call(&h->lt, close_on_loop, h);
}

void tu_http_server_stop(tu_http_server_t *h) {
  tu_http_server_close(h);
  tu_loop_thread_stop(&h->lt);
  if (h->loop) m5_loop_free(h->loop);
  h->loop = NULL;
}
