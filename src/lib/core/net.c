/* Address checks and the start-up port probe (see net.h). */
#include "net.h"

#include "err.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
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

/* ---- https URIs and host:port ---- */

static int dns_name_valid(const char *h, size_t n) {
  if (n == 0 || n > 253) return 0;
  size_t label = 0;
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)h[i];
    if (c == '.') {
      if (label == 0) return 0;
      label = 0;
    } else if (isalnum(c) || c == '-') {
      if (++label > 63) return 0;
    } else {
      return 0;
    }
  }
  return label > 0 || h[n - 1] == '.';
}

/* "[...]" holding an IPv6 address inet_pton takes (no zone id). */
static int ipv6_literal_valid(const char *h, size_t n) {
  if (n < 4 || n > 47 || h[0] != '[' || h[n - 1] != ']') return 0;
  char inner[48];
  memcpy(inner, h + 1, n - 2);
  inner[n - 2] = '\0';
  struct in6_addr a;
  return inet_pton(AF_INET6, inner, &a) == 1;
}

/* A host of digits and dots only is an IPv4 address, and then it must be a dotted quad
 * (999.1.1.1, 127.1 or 2130706433 are neither names nor addresses). */
static int numeric_host_valid(const char *h, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (!isdigit((unsigned char)h[i]) && h[i] != '.') return 1; /* a name: not this rule's */
  char v4[16];
  if (n >= sizeof v4) return 0;
  memcpy(v4, h, n);
  v4[n] = '\0';
  struct in_addr a;
  return inet_pton(AF_INET, v4, &a) == 1;
}

int m5_net_https_hostport(const char *uri, char out[M5_NET_HOSTPORT_MAX + 1]) {
  static const char scheme[] = "https://";
  if (strncasecmp(uri, scheme, sizeof scheme - 1) != 0) return M5_EINVAL;
  const char *h = uri + sizeof scheme - 1;
  size_t auth = strcspn(h, "/?#");
  if (h[auth] == '?' || h[auth] == '#' || strpbrk(h, "?#")) return M5_EINVAL;
  if (memchr(h, '@', auth)) return M5_EINVAL; /* no userinfo */
  for (const char *p = h; *p; p++) /* no spaces, no control characters in the whole URI */
    if ((unsigned char)*p <= 0x20 || (unsigned char)*p >= 0x7f) return M5_EINVAL;
  size_t hostlen = auth;
  const char *port = NULL;
  if (h[0] == '[') {
    const char *close = memchr(h, ']', auth);
    if (!close) return M5_EINVAL;
    hostlen = (size_t)(close - h) + 1;
    if (hostlen < auth) {
      if (h[hostlen] != ':') return M5_EINVAL;
      port = h + hostlen + 1;
    }
    if (!ipv6_literal_valid(h, hostlen)) return M5_EINVAL;
  } else {
    const char *colon = memchr(h, ':', auth);
    if (colon) {
      hostlen = (size_t)(colon - h);
      port = colon + 1;
    }
    if (!dns_name_valid(h, hostlen) || !numeric_host_valid(h, hostlen)) return M5_EINVAL;
  }
  long p = 443;
  if (port) {
    size_t plen = (size_t)(h + auth - port);
    if (plen == 0 || plen > 5) return M5_EINVAL;
    p = 0;
    for (size_t i = 0; i < plen; i++) {
      if (!isdigit((unsigned char)port[i])) return M5_EINVAL;
      p = p * 10 + (port[i] - '0');
    }
    if (p < 1 || p > 65535) return M5_EINVAL;
  }
  if (hostlen + 7 > M5_NET_HOSTPORT_MAX) return M5_EINVAL;
  for (size_t i = 0; i < hostlen; i++)
    out[i] = (char)tolower((unsigned char)h[i]);
  if (hostlen > 1 && out[hostlen - 1] == '.' && out[0] != '[') hostlen--; /* FQDN dot */
  snprintf(out + hostlen, M5_NET_HOSTPORT_MAX + 1 - hostlen, ":%ld", p);
  return 0;
}

const char *m5_net_hostport_problem(const char *text) {
  char uri[M5_NET_HOSTPORT_MAX + 16], hp[M5_NET_HOSTPORT_MAX + 1];
  if (strstr(text, "://")) return "a URL, not host:port";
  if (strlen(text) > M5_NET_HOSTPORT_MAX) return "too long";
  snprintf(uri, sizeof uri, "https://%s", text);
  if (strpbrk(text, "/?#@") || m5_net_https_hostport(uri, hp) != 0)
    return text[0] == '['
               ? "the host is not an IPv6 address in [ ], or the port is not 1-65535"
               : "the host is not a DNS name or an IPv4 address, or the port is not 1-65535";
  if (strcmp(hp, text) == 0) return NULL;
  const char *colon = strrchr(text, ':'), *close = strrchr(text, ']');
  if (!colon || (close && colon < close)) return "no port";
  if (colon[1] == '0') return "the port must be written without leading zeros";
  return "write the host in lowercase and without a final dot";
}
