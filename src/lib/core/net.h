/* Socket helpers shared by the daemons: address checks for configuration, the start-up port
 * probe, the listening socket and its accept loop. */
#ifndef M5_CORE_NET_H
#define M5_CORE_NET_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

/* 1 if host is a literal IPv4 or IPv6 address. */
int m5_net_is_address(const char *host);
/* 1 if host is a literal loopback address (127.0.0.0/8 or ::1). */
int m5_net_is_loopback(const char *host);

/* The longest "host:port" of the two functions below: a DNS name (253) or [IPv6], ':', port. */
#define M5_NET_HOSTPORT_MAX 262

/* "host:port" of an https URI, host lowercased (a final dot dropped), port 443 when absent.
 * M5_EINVAL for anything but https://host[:port][/path] with host a DNS name, a dotted-quad
 * IPv4 address or a bracketed IPv6 address inet_pton takes (a host of digits and dots that is
 * not a dotted quad, such as 127.1 or 2130706433, is refused); no userinfo, query, fragment,
 * spaces or control characters. Used wherever a targetUri is checked (m5s) or a host:port is
 * given for one (m5ctl, the admin API), so that all agree. */
int m5_net_https_hostport(const char *uri, char out[M5_NET_HOSTPORT_MAX + 1]);
/* NULL when text is a host:port exactly as m5_net_https_hostport gives it for
 * "https://<text>" (explicit port, lowercase, no final dot), else what is wrong with it, in
 * words for an error message. */
const char *m5_net_hostport_problem(const char *text);

/* Workers bind with SO_REUSEPORT, which would also let a second daemon of the same user share
 * a port and silently take part of its traffic. A bind without SO_REUSEPORT fails while anyone
 * uses the port, so this probe, run before the workers bind, tells the operator instead.
 * socktype is SOCK_STREAM or SOCK_DGRAM. Returns M5_EEXIST (with a message in err naming
 * host:port) when the port is taken, else 0: other failures (an unknown address, no
 * permission) are left for the real bind to report. */
int m5_net_probe_port(const char *host, uint16_t port, int socktype, char *err, size_t errlen);

/* A non-blocking, close-on-exec socket of socktype bound to host:port (NULL host: any) with
 * SO_REUSEADDR and SO_REUSEPORT (one listener per worker), listening if SOCK_STREAM. The first
 * address getaddrinfo gives that works. Returns the fd, or -1 with "cannot bind host:port:
 * reason" in err. Shared by the HTTP server and the MSGin5G-1 listeners. */
int m5_net_listen(const char *host, uint16_t port, int socktype, char *err, size_t errlen);

/* Accepts up to batch connections on the listening socket fd, each non-blocking and
 * close-on-exec, and hands each to on_conn (which owns cfd from then on). Returns 0 once none
 * is pending or after batch; -1 with errno set when accept failed for want of descriptors or
 * memory: the pending connection stays readable, so a level-triggered caller pauses the
 * listener instead of spinning on it. Shared by the HTTP server and the MSGin5G-1 TLS listener. */
int m5_net_accept(int fd, int batch,
                  void (*on_conn)(int cfd, const struct sockaddr *sa, socklen_t salen, void *arg),
                  void *arg);

#endif
