/* Process figures of the bench tools (procstat.h). */
#include "procstat.h"

#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

static FILE *proc_file(int pid, const char *name) {
  char path[64];
  if (pid > 0)
    snprintf(path, sizeof path, "/proc/%d/%s", pid, name);
  else
    snprintf(path, sizeof path, "/proc/self/%s", name);
  return fopen(path, "r");
}

double bench_proc_cpu_s(int pid, double *sys) {
  if (sys) *sys = 0;
  char buf[1024];
  FILE *f = proc_file(pid, "stat");
  if (!f) return 0;
  size_t n = fread(buf, 1, sizeof buf - 1, f);
  fclose(f);
  buf[n] = 0;
  const char *p = strrchr(buf, ')'); /* the command name may hold spaces */
  unsigned long ut = 0, st = 0;
  /* after ")": state(3) ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt
   * utime(14) stime(15) */
  if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st) != 2)
    return 0;
  double tck = (double)sysconf(_SC_CLK_TCK);
  if (sys) *sys = (double)st / tck;
  return (double)(ut + st) / tck;
}

long bench_proc_rss_kib(int pid) {
  char line[256];
  FILE *f = proc_file(pid, "status");
  if (!f) return -1;
  long v = -1;
  while (fgets(line, sizeof line, f))
    if (sscanf(line, "VmRSS: %ld", &v) == 1) break;
  fclose(f);
  return v;
}

void bench_raise_nofile(const char *who, int need) {
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl)) return;
  if (rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    (void)setrlimit(RLIMIT_NOFILE, &rl);
  }
  if (rl.rlim_cur < (rlim_t)need + 64)
    fprintf(stderr, "%s: warning: RLIMIT_NOFILE %llu is below %d sessions (ulimit -n)\n", who,
            (unsigned long long)rl.rlim_cur, need);
}
