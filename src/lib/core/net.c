/* Address checks and the start-up port probe (see net.h). */
#include "net.h"

#include "err.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

int m5_net_is_address(const char *host) {
  struct in_addr a4;
  struct in6_addr a6;
  return inet_pton(AF_INET, host, &a4) == 1 || inet_pton(AF_INET6, host, &a6) == 1;
}

int m5_net_is_loopback(const char *host) {
  struct in_addr a4;
  struct in6_addr a6;
  if (inet_pton(AF_INET, host, &a4) == 1) return (ntohl(a4.s_addr) >> 24) == 127;
  if (inet_pton(AF_INET6, host, &a6) == 1) return IN6_IS_ADDR_LOOPBACK(&a6);
  return 0;
}

int m5_net_probe_port(const char *host, uint16_t port, int socktype, char *err, size_t errlen) {
  struct sockaddr_in a4 = {.sin_family = AF_INET, .sin_port = htons(port)};
  struct sockaddr_in6 a6 = {.sin6_family = AF_INET6, .sin6_port = htons(port)};
  struct sockaddr *sa = (struct sockaddr *)&a4;
  socklen_t len = sizeof a4;
  if (inet_pton(AF_INET, host, &a4.sin_addr) != 1) {
    if (inet_pton(AF_INET6, host, &a6.sin6_addr) != 1) return 0;
    sa = (struct sockaddr *)&a6;
    len = sizeof a6;
  }
  int fd = socket(sa->sa_family, socktype | SOCK_CLOEXEC, 0);
  if (fd < 0) return 0;
  /* TCP: a connection in TIME_WAIT is no conflict. Not on UDP, where SO_REUSEADDR on both
   * sockets would let them share the port and hide the very conflict sought. */
  int one = 1;
  if (socktype == SOCK_STREAM) setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  int rc = bind(fd, sa, len) == 0 ? 0 : errno;
  close(fd);
  if (rc != EADDRINUSE) return 0;
  snprintf(err, errlen, "%s:%u/%s is already in use", host, (unsigned)port,
           socktype == SOCK_DGRAM ? "udp" : "tcp");
  return M5_EEXIST;
}

int m5_net_listen(const char *host, uint16_t port, int socktype, char *err, size_t errlen) {
  char pstr[8];
  snprintf(pstr, sizeof pstr, "%u", (unsigned)port);
  struct addrinfo hints = {
      .ai_family = AF_UNSPEC, .ai_socktype = socktype, .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
  struct addrinfo *res = NULL;
  int g = getaddrinfo(host, pstr, &hints, &res);
  if (g != 0) {
    snprintf(err, errlen, "cannot bind %s:%u: %s", host ? host : "*", (unsigned)port,
             gai_strerror(g));
    return -1;
  }
  int fd = -1, saved = 0;
  for (struct addrinfo *ai = res; ai && fd < 0; ai = ai->ai_next) {
    fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol);
    if (fd < 0) {
      saved = errno;
      continue;
    }
    int one = 1;
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0 ||
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) < 0 ||
        bind(fd, ai->ai_addr, ai->ai_addrlen) < 0 ||
        (socktype == SOCK_STREAM && listen(fd, SOMAXCONN) < 0)) {
      saved = errno;
      close(fd);
      fd = -1;
    }
  }
  freeaddrinfo(res);
  if (fd < 0)
    snprintf(err, errlen, "cannot bind %s:%u: %s", host ? host : "*", (unsigned)port,
             strerror(saved));
  return fd;
}

int m5_net_accept(int fd, int batch,
                  void (*on_conn)(int cfd, const struct sockaddr *sa, socklen_t salen, void *arg),
                  void *arg) {
  for (int i = 0; i < batch; i++) {
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    int cfd = accept4(fd, (struct sockaddr *)&ss, &sl, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (cfd < 0) {
      if (errno == EINTR || errno == ECONNABORTED) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) return 0;
      return -1;
    }
    on_conn(cfd, (struct sockaddr *)&ss, sl, arg);
  }
  return 0;
}
