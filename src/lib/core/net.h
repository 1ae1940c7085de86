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
