/* What the daemons' entry points (m5s, m5-aanf) do alike (architecture §2): the command line
 * (--config FILE, --help, --version), the configuration checks they share, the process
 * settings taken before any thread starts, the worker count and the start-up port probe. Every
 * message starts with the daemon's name, so the operator sees which process said it. */
#ifndef M5_CORE_DAEMON_H
#define M5_CORE_DAEMON_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* Reads argv: "--config FILE" sets *config_path (left NULL without it: built-in defaults),
 * "--help" or "-h" calls usage(stdout), "--version" prints "NAME VERSION". Returns -1 when the
 * daemon should start, else its exit code: 0 after help or version, 2 after "NAME: unknown
 * argument 'X'; see NAME --help" on stderr. */
int m5_daemon_args(int argc, char **argv, const char *name, const char *version,
                   void (*usage)(FILE *out), const char **config_path);

/* Sets the log level (log_level already checked by the configuration loader), the umask to
 * owner only (the daemons' databases hold keys or name subscribers), ignores SIGPIPE (a peer
 * closing mid-write must not kill the process) and blocks SIGTERM and SIGINT in the calling
 * thread and those it starts, so that only the loop watching them takes them. */
void m5_daemon_setup(const char *log_level);

/* Checks of configuration values that both daemons have, after m5_config_load; src names the
 * file or "defaults". 0, or M5_EINVAL with "SRC: KEY: expected ..., got 'VALUE'" in err. */
int m5_daemon_check_address(const char *src, const char *key, const char *value, char *err,
                            size_t errlen);
int m5_daemon_check_log_level(const char *src, const char *value, char *err, size_t errlen);

/* Worker threads for the "workers" setting: configured if positive, else one per CPU this
 * process may run on (its affinity mask: taskset, cpusets; else the online CPUs);
 * always 1..64. */
size_t m5_daemon_workers(int64_t configured);

/* m5_net_probe_port for the listener configured under keys ("mgmt.host/mgmt.port"): 0 if
 * host:port is free, else M5_EIO after "NAME: KEYS: host:port/tcp is already in use (another
 * NAME running?); stop it or choose another port" on stderr. */
int m5_daemon_probe(const char *name, const char *keys, const char *host, int64_t port,
                    int socktype);

#endif
