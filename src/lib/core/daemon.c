/* Entry-point helpers shared by the daemons (see daemon.h). */
#include "daemon.h"

#include "err.h"
#include "log.h"
#include "loop.h"
#include "net.h"

#include <sched.h>
#include <signal.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAX_WORKERS 64

int m5_daemon_args(int argc, char **argv, const char *name, const char *version,
                   void (*usage)(FILE *out), const char **config_path) {
  *config_path = NULL;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
      usage(stdout);
      return 0;
    }
    if (!strcmp(argv[i], "--version")) {
      printf("%s %s\n", name, version);
      return 0;
    }
    if (!strcmp(argv[i], "--config") && i + 1 < argc) {
      *config_path = argv[++i];
      continue;
    }
    fprintf(stderr, "%s: unknown argument '%s'; see %s --help\n", name, argv[i], name);
    return 2;
  }
  return -1;
}

int m5_daemon_check_address(const char *src, const char *key, const char *value, char *err,
                            size_t errlen) {
  if (m5_net_is_address(value)) return 0;
  snprintf(err, errlen, "%s: %s: expected an IPv4 or IPv6 address, got '%s'", src, key, value);
  return M5_EINVAL;
}

int m5_daemon_check_log_level(const char *src, const char *value, char *err, size_t errlen) {
  m5_log_level_t level;
  if (m5_log_level_parse(value, &level) == 0) return 0;
  snprintf(err, errlen, "%s: log.level: expected error, warn, info or debug, got '%s'", src, value);
  return M5_EINVAL;
}

void m5_daemon_setup(const char *log_level) {
  m5_log_level_t level = M5_LOG_INFO;
  m5_log_level_parse(log_level, &level);
  m5_log_set_level(level);
  umask(077);
  signal(SIGPIPE, SIG_IGN);
  static const int sigs[] = {SIGTERM, SIGINT};
  m5_signals_block(sigs, sizeof sigs / sizeof sigs[0]);
}

/* The CPUs this process may run on (taskset, a cgroup cpuset, a container's CPU set), not
 * those the machine has: a worker more than the CPUs it gets only adds thread switches (on
 * one core, 2 workers delivered 0.67x what 1 did: docs/benchmarks.md). */
static long usable_cpus(void) {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof set, &set) == 0 && CPU_COUNT(&set) > 0) return CPU_COUNT(&set);
  return sysconf(_SC_NPROCESSORS_ONLN);
}

size_t m5_daemon_workers(int64_t configured) {
  long n = configured > 0 ? (long)configured : usable_cpus();
  if (n < 1) n = 1;
  if (n > MAX_WORKERS) n = MAX_WORKERS;
  return (size_t)n;
}

int m5_daemon_probe(const char *name, const char *keys, const char *host, int64_t port,
                    int socktype) {
  char err[160];
  if (m5_net_probe_port(host, (uint16_t)port, socktype, err, sizeof err) == 0) return 0;
  fprintf(stderr, "%s: %s: %s (another %s running?); stop it or choose another port\n", name, keys,
          err, name);
  return M5_EIO;
}
