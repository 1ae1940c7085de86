/* Socket address helpers shared by the daemons: address checks for configuration and the
 * start-up port probe. */
#ifndef M5_CORE_NET_H
#define M5_CORE_NET_H

#include <stddef.h>
#include <stdint.h>

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

#endif
