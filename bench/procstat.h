/* What the bench tools read about processes (docs/benchmarks.md): CPU time and resident memory
 * from /proc, and the open-file limit they raise before holding thousands of sessions. One copy
 * for lc.c, m5idle, mqidle, storm and m5fan. Not a product part. */
#ifndef M5_BENCH_PROCSTAT_H
#define M5_BENCH_PROCSTAT_H

/* utime + stime of pid (0 = this process) in seconds from /proc/PID/stat; *sys, when not
 * NULL, the stime part; 0 when unreadable. */
double bench_proc_cpu_s(int pid, double *sys);
/* VmRSS of pid (0 = this process) in KiB from /proc/PID/status; -1 when unreadable. */
long bench_proc_rss_kib(int pid);
/* The soft RLIMIT_NOFILE up to the hard one; a warning on stderr, prefixed "who: ", when it
 * stays below need + 64 descriptors. */
void bench_raise_nofile(const char *who, int need);

#endif
