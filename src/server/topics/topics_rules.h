/* Who may subscribe to and publish on which Messaging Topics (TS 23.554 cl. 8.8: "the
 * MSGin5G Server checks whether the UE is authorized to subscribe"; docs/m5s.md "Messaging
 * Topics"): the operator's rules per topic name prefix. One rule set per process, shared by
 * every worker (read under a lock, replaced as a whole).
 *
 * A rule is one text line: "PREFIX [subscribe=PATTERNS] [publish=PATTERNS]". PREFIX is the
 * start of a topic name, or `*` for every topic. PATTERNS is a comma-separated list of
 * patterns on the party, written "ue:<ueSvcId>" or "as:<asSvcId>", where `*` matches any run of
 * characters and every other character itself (policy_glob, the same patterns as an AS
 * client's ueSvcIds; a UE Service ID may contain `?`, `[` or `\`, which match only
 * themselves): `ue:*`, `as:as1`, `ue:sensor-*`, `*`. A part left out allows everyone
 * registered (`*`); an empty one (`subscribe=`) allows nobody. The rule with the longest
 * matching prefix decides; a topic no rule matches is open to everyone registered. */
#ifndef M5_SERVER_TOPICS_RULES_H
#define M5_SERVER_TOPICS_RULES_H

#include "core/config.h"
#include "msg/msg.h"

#include <stddef.h>

#define TOPICS_RULES_MAX 256 /* rules in one set */

typedef struct topics_rules topics_rules_t;

typedef enum { TOPICS_SUBSCRIBE = 0, TOPICS_PUBLISH = 1 } topics_right_t;

/* A rule set from lines (may be empty: everyone may do everything). NULL and err naming the
 * line ("topics.rules[2]: ...") on a bad one. */
topics_rules_t *topics_rules_new(const char *const *lines, size_t n, char *err, size_t errlen);
void topics_rules_free(topics_rules_t *r);
/* Replaces the rules with those of lines, all or nothing: 0, or M5_EINVAL with err. */
int topics_rules_set(topics_rules_t *r, const char *const *lines, size_t n, char *err,
                     size_t errlen);
/* The rules as lines, one per rule in their canonical form (malloc'd strlist). */
int topics_rules_get(topics_rules_t *r, m5_strlist_t *out);
/* Whether party (an "UE" or "AS" address) may subscribe to / publish on topic. */
int topics_rules_may(topics_rules_t *r, const char *topic, const m5_msg_addr_t *party,
                     topics_right_t what);

#endif
