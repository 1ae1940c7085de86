/* The northbound listener of m5s: MSGin5G-3 for Application Servers (architecture §3.2, §4;
 * TS 29.538; TS 33.501 Y.3, Y.4; docs/northbound.md). HTTP/2 over TLS 1.2/1.3 with ALPN h2 on
 * every worker (SO_REUSEPORT), client certificates required and verified against tls.ca: an
 * AS is known by its SAN URI urn:msgin5g:as:<asSvcId> and must be a configured AS client
 * (admin API). On top, OAuth2: m5s's own token endpoint (client credentials, the client
 * authenticated by its certificate, tokens bound to it, RFC 8705), its JWKS and metadata, and
 * bearer tokens checked on every MSGin5G-3 request.
 *
 * The shared part (north_ctx_t: TLS context, signing key, key set) is made on the main thread
 * before any worker runs and only read afterwards; each worker has its north_t. */
#ifndef M5_SERVER_NORTH_H
#define M5_SERVER_NORTH_H

#include "core/loop.h"
#include "http/server.h"
#include "oauth/jwt.h"
#include "server/registry/registry.h"
#include "server/server_config.h"
#include "server/ue/ue_api.h"

#include <netinet/in.h>
#include <openssl/ssl.h>

#define NORTH_SCOPE_REG "msgs-asregistration"
#define NORTH_SCOPE_DELIVERY "msgs-msgdelivery"
#define NORTH_SCOPE_TOPICSUB "msgs-topicsub" /* our topic subscriptions (north_topicsub.c) */
#define NORTH_SCOPE_GM "ss-gm" /* SEAL group management (north_gm.c) */
#define NORTH_AS_URI_PREFIX "urn:msgin5g:as:"
/* Message gateways (server/gw/, docs/northbound.md "Gateways"): their certificates' SAN URI,
 * and our scope of the UE registration resource (gw/gw_north.c). */
#define NORTH_GW_URI_PREFIX "urn:msgin5g:gw:"
#define NORTH_SCOPE_GWREG "msgs-gwueregistration"

typedef struct {
  SSL_CTX *tls;
  m5_jwk_t *key;   /* NULL: no token endpoint (oauth.key empty) */
  m5_jwks_t *keys; /* the keys tokens are checked with (ours) */
  char *jwks_json; /* GET /.well-known/jwks.json */
  char base_url[512];
  int64_t token_lifetime_s;
  /* An external issuer (oauth.issuer_url): each worker fetches its JWKS (north_t). */
  char ext_issuer[M5_JWT_URL_MAX + 1];
  char ext_jwks_url[1024];
  char ext_ca[1024];
  int64_t ext_refresh_s;
  /* The server's own listeners, refused as targetUri (north_target_is_own): their ports, the
   * names it answers to, and the addresses of this host. */
  uint16_t own_ports[3];
  char **own_names; /* lowercase: server.fqdns, localhost, north.base_url's and north.host */
  size_t n_own_names;
  struct in6_addr *own_addrs; /* IPv4 as v4-mapped */
  size_t n_own_addrs;
} north_ctx_t;

/* 1 if uri (an https URI) names one of this server's listeners: one of its ports on one of
 * its names, a loopback or unspecified address in any spelling (127.1, 2130706433,
 * [::ffff:127.0.0.1], [0::1]), or an address of this host. Names are not resolved. */
int north_target_is_own(const north_ctx_t *c, const char *uri);

/* From the configuration; NULL with a message naming the key in err. */
north_ctx_t *north_ctx_new(const server_config_t *cfg, char *err, size_t errlen);
void north_ctx_free(north_ctx_t *c);

typedef struct north north_t;

typedef struct {
  const north_ctx_t *ctx;
  registry_t *reg;
  ue_api_t *api; /* this worker's: messages from ASes go through its accept path */
  const char *host;
  uint16_t port;
} north_opts_t;

north_t *north_new(m5_loop_t *loop, const north_opts_t *o, char *err, size_t errlen);
/* Stops accepting and closes idle connections; done(arg) once all are closed. */
void north_drain(north_t *n, uint32_t timeout_ms, void (*done)(void *arg), void *arg);
/* Only once the registry replies it waits for are in (after north_drain's done). */
void north_free(north_t *n);

#endif
