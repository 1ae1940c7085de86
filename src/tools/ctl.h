/* m5ctl: operator tooling. Each command lives in its own ctl_<group>.c and is reached through
 * the table in m5ctl.c. A command gets argv starting at its own name (argv[0] = "derive" for
 * "m5ctl akma derive") and returns the process exit code: 0 success, 1 failure of the
 * operation, 2 bad usage (one line on stderr naming the argument). */
#ifndef M5_TOOLS_CTL_H
#define M5_TOOLS_CTL_H

int m5ctl_akma_derive(int argc, char **argv);    /* ctl_akma.c */
int m5ctl_pki_init(int argc, char **argv);       /* ctl_pki.c */
int m5ctl_subscriber_add(int argc, char **argv); /* ctl_subscriber.c */

/* Prints "m5ctl: <msg>" on stderr and returns 2, for usage errors. */
int m5ctl_usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
