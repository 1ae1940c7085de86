/* Per-source bounds of one worker's MSGin5G-1 listeners (both transports): what one peer
 * address, and one network prefix (/24 for IPv4, /64 for IPv6; an IPv4-mapped IPv6 address
 * counts as IPv4), may hold at once before it has proved anything with K_AF:
 *  - half-open handshakes (from the accepted connection / verified DTLS cookie until the
 *    session opens or the connection ends);
 *  - handshakes waiting for the AAnF (K_AF fetches);
 *  - AAnF fetches for A-KIDs that were not proven good, per prefix, as a token bucket: a fetch
 *    for an A-KID that is not cached takes a token, an answer with K_AF (or an AAnF failure,
 *    which is not the source's doing) gives it back; "no context" answers and fetches whose
 *    handshake went away keep it. A source whose A-KIDs keep coming back unknown is thus held
 *    to the refill rate.
 * The table is per worker (no locks), fixed in size: a node is kept while a connection holds
 * it or (prefixes) while its bucket is not full; idle ones go least recently used first.
 * Refusals are counted (read from any thread) and logged at most once a second per reason.
 * Spec: none (denial-of-service hardening of the AF role, TS 33.535 cl. 6.3; RFC 6347
 * §4.2.1 for why DTLS peers count only after their cookie). */
#ifndef M5_SERVER_SRC_LIMITS_H
#define M5_SERVER_SRC_LIMITS_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

typedef enum {
  SRC_OK = 0,
  SRC_HANDSHAKES,        /* the listener's max_handshakes (all sources) */
  SRC_HANDSHAKES_ADDR,   /* half-open handshakes of this address */
  SRC_HANDSHAKES_PREFIX, /* ... of its prefix */
  SRC_FETCHES,           /* AAnF requests in flight on this worker (all sources) */
  SRC_FETCHES_ADDR,      /* handshakes of this address waiting for the AAnF */
  SRC_FETCHES_PREFIX,    /* ... of its prefix */
  SRC_UNKNOWN_RATE,      /* the prefix's bucket of unproven A-KIDs is empty */
  SRC_TABLE_FULL,        /* no room for the source in the table */
  SRC_N_REASONS
} src_reason_t;

typedef struct {
  uint32_t hs_per_addr, hs_per_prefix;       /* 0 = no bound */
  uint32_t fetch_per_addr, fetch_per_prefix; /* 0 = no bound */
  uint32_t unknown_burst;                    /* bucket size; 0 = no bucket */
  uint32_t unknown_per_s;                    /* refill */
  size_t max_nodes;                          /* addresses + prefixes; 0 = 16384 */
} src_limits_opts_t;

typedef struct src_limits src_limits_t;
typedef struct src_node src_node_t;

/* What a connection holds: its address's and its prefix's nodes. */
typedef struct {
  src_node_t *addr, *net;
} src_ref_t;

src_limits_t *src_limits_new(const src_limits_opts_t *opts);
void src_limits_free(src_limits_t *s);

/* Finds or makes the nodes of sa's address and prefix and holds them. SRC_TABLE_FULL when the
 * table has no idle node to give up. */
src_reason_t src_ref(src_limits_t *s, const struct sockaddr *sa, src_ref_t *r);
/* Lets go of them (r is zeroed; a zeroed r is a no-op). */
void src_unref(src_limits_t *s, src_ref_t *r);

/* Half-open handshakes: whether one more is allowed; begin counts it, end uncounts it. */
src_reason_t src_hs_check(const src_limits_t *s, const src_ref_t *r);
void src_hs_begin(src_ref_t *r);
void src_hs_end(src_ref_t *r);

/* Handshakes waiting for the AAnF: the same. */
src_reason_t src_fetch_check(const src_limits_t *s, const src_ref_t *r);
void src_fetch_begin(src_ref_t *r);
void src_fetch_end(src_ref_t *r);

/* Takes a token from the prefix's bucket (SRC_UNKNOWN_RATE when it is empty); refund puts
 * one back (the A-KID proved good, or the AAnF failed). now_ms is monotonic. */
src_reason_t src_unknown_take(src_limits_t *s, src_ref_t *r, uint64_t now_ms);
void src_unknown_refund(src_limits_t *s, src_ref_t *r, uint64_t now_ms);

/* Counts a refusal and logs it (INFO, at most once a second per reason, with how many were
 * refused since the last line). peer: "ip:port" of an example. */
void src_refused(src_limits_t *s, src_reason_t why, const char *peer, uint64_t now_ms);
/* Refusals since start for one reason; from any thread. */
uint64_t src_refused_count(const src_limits_t *s, src_reason_t why);
/* AAnF requests started for this worker's handshakes (see src_fetch_started); any thread. */
void src_fetch_started(src_limits_t *s);
uint64_t src_fetches_count(const src_limits_t *s);
/* The reason's name in metrics labels and logs ("handshakes_per_addr", ...). */
const char *src_reason_name(src_reason_t why);
/* Nodes held now (tests, introspection). */
size_t src_limits_nodes(const src_limits_t *s);

#endif
