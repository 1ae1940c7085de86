/* Who may message whom (TS 23.554 cl. 8.3.2 step 3, cl. 8.7.1.1: the MSGin5G Server checks
 * that the originator is authorised to send to the recipient before it resolves the target).
 * Pure logic, no I/O: the operator's policy (m5s configuration `policy.*`, replaced at run
 * time through the admin API and kept by the registry, registry.h), the per-AS list of UE
 * Service ID patterns it may message (`ueSvcIds`), and the one decision every message goes
 * through, policy_check(). docs/delivery.md "Who may message whom".
 *
 * Reports (IMDN, DeliveryStatusReport) are not messages: the caller does not ask this module
 * about them (they only go back to what was sent, docs/delivery.md). */
#ifndef M5_SERVER_POLICY_H
#define M5_SERVER_POLICY_H

#include "msg/msg.h"

#include <jansson.h>
#include <stddef.h>

#define POLICY_PATTERNS_MAX 16
#define POLICY_PATTERN_MAX M5_MSG_ADDR_MAX

/* A list of glob patterns: '*' matches any run of characters (also none); every other
 * character matches itself. A pattern is 1-128 printable ASCII characters without spaces (a
 * UE Service ID's rule, msg.h); an asSvcId pattern is also checked against its own rule by
 * whoever takes it. n = 0: matches nothing. */
typedef struct {
  size_t n;
  char v[POLICY_PATTERNS_MAX][POLICY_PATTERN_MAX + 1];
} policy_patterns_t;

/* The operator's policy, per direction (originator type -> recipient type). */
typedef struct {
  int ue_to_ue;               /* a UE may message another UE (default yes) */
  policy_patterns_t ue_to_as; /* asSvcIds a UE may message (default "*": every AS client) */
  int as_to_ue;               /* an AS may message the UEs its ueSvcIds match (default yes) */
  int as_to_as;               /* an AS may message an AS (default no) */
} policy_t;

typedef enum { POLICY_ALLOW = 0, POLICY_DENY = 1 } policy_verdict_t;

/* The built-in defaults (docs/delivery.md). */
void policy_defaults(policy_t *p);
/* 1 when text matches the glob pattern. */
int policy_glob(const char *pattern, const char *text);
/* 1 when text matches one of ps. */
int policy_patterns_match(const policy_patterns_t *ps, const char *text);
/* 1 when s is a valid pattern (1-128 characters 0x21-0x7e). */
int policy_pattern_valid(const char *s);
/* Appends s (checked; a repeat is kept once): 0, M5_EINVAL (invalid), M5_ERANGE (full). */
int policy_patterns_add(policy_patterns_t *ps, const char *s);
/* ps from / to the space-separated text the registry stores; M5_EINVAL for a bad entry. */
int policy_patterns_from_text(policy_patterns_t *ps, const char *text);
void policy_patterns_to_text(const policy_patterns_t *ps, char *out, size_t outlen);
/* ["p1", ...] (new reference; NULL when out of memory). */
json_t *policy_patterns_json(const policy_patterns_t *ps);
/* ps from a JSON array of 0-16 pattern strings: 0, or M5_EINVAL with the reason in why. */
int policy_patterns_from_json(const json_t *a, policy_patterns_t *ps, char *why, size_t whylen);

/* The policy as the admin API shows and takes it and the registry stores it:
 * {"ueToUe": bool, "ueToAs": [patterns], "asToUe": bool, "asToAs": bool}. */
json_t *policy_to_json(const policy_t *p);
/* From such an object; every member is required (a PUT replaces the whole policy), unknown
 * members are refused. 0, or M5_EINVAL with the member in param and the reason in why. */
int policy_from_json(const json_t *o, policy_t *p, char *param, size_t paramlen, char *why,
                     size_t whylen);

/* The check every message (MSG from a UE, deliver-as-message from an AS) goes through once, at
 * acceptance and before its recipient is resolved (so a refusal says nothing about whether
 * the recipient exists). ori_as_ue_svc_ids: for an AS originator, its AS client's ueSvcIds
 * (NULL: no such AS client, refused). *why (may be NULL) gets a static reason for the log.
 *   UE -> UE     p->ue_to_ue
 *   UE -> AS     dest asSvcId matches p->ue_to_as (an unknown AS allowed by it stays
 *                UNKNOWN_RECIPIENT: resolution's answer, as for an unknown UE)
 *   AS -> UE     p->as_to_ue and the UE Service ID matches the AS's ueSvcIds
 *   AS -> AS     p->as_to_as
 *   -> GROUP, BC, TOPIC  not decided here (allowed): the group's or area's members and
 *                grants (groups/), the topic's per-prefix rule (topics/) decide; the fan-out
 *                then asks again for each recipient (sender -> member), so a group never
 *                reaches a UE the sender could not message directly
 *   other types  allowed (resolution answers UNKNOWN_RECIPIENT) */
policy_verdict_t policy_check(const policy_t *p, const m5_msg_addr_t *ori,
                              const m5_msg_addr_t *dest,
                              const policy_patterns_t *ori_as_ue_svc_ids, const char **why);

#endif
