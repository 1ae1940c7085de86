/* Naanf_AKMA bodies (TS 29.535 cl. 6.1.6, TS 29.522 AkmaAfKeyRequest/AkmaAfKeyData) and
 * ProblemDetails (TS 29.571 cl. 5.2.4.1; causes from TS 29.500 Table 5.2.7.2-1): strict
 * parsing of the three request bodies into plain structs, and the response bodies.
 *
 * Parsing rejects duplicate keys, wrong types and malformed values with a problem that names
 * the member as a JSON pointer; unknown members are ignored (TS 29.500 cl. 6.6 style
 * extensibility). No HTTP here, so it is unit-tested on its own. */
#ifndef M5_AANF_MSG_H
#define M5_AANF_MSG_H

#include "crypto/akma.h"

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#define AANF_IMSI_MAX 15

/* One problem: the HTTP status and a ProblemDetails body with at most one invalid param. */
typedef struct {
  int status;
  const char *title; /* static text */
  const char *cause; /* static text, or NULL */
  const char *param; /* JSON pointer of the offending member ("/kAkma"), or NULL */
  char detail[200];  /* never holds key material */
} aanf_problem_t;

/* AkmaKeyInfo, the body of register-anchorkey (SUPI-keyed only). */
typedef struct {
  char supi[AANF_IMSI_MAX + 1]; /* IMSI digits, without "imsi-" */
  char akid[M5_AKMA_AKID_MAX + 1];
  uint8_t kakma[M5_AKMA_KEY_LEN]; /* secret: wipe with aanf_msg_key_info_wipe() */
} aanf_key_info_t;

/* AkmaAfKeyRequest, the body of retrieve-applicationkey, with our uaSecProtId extension. */
typedef struct {
  char af_id[M5_AKMA_FQDN_MAX + 1];
  char akid[M5_AKMA_AKID_MAX + 1];
  uint8_t ua[M5_AKMA_UA_LEN]; /* from uaSecProtId; 01 00 00 00 07 (TLS 1.3) when absent */
  int anon;                   /* anonInd */
} aanf_key_req_t;

/* CtxRemove, the body of remove-context. */
typedef struct {
  char supi[AANF_IMSI_MAX + 1];
} aanf_ctx_remove_t;

/* Installs jansson allocators that wipe every block they free (key text included). Call
 * once, before any other thread uses jansson. */
void aanf_msg_init(void);

/* Each returns 0, or M5_EINVAL with *pb filled (status 400). */
int aanf_msg_parse_key_info(const uint8_t *body, size_t len, aanf_key_info_t *out,
                            aanf_problem_t *pb);
int aanf_msg_parse_key_req(const uint8_t *body, size_t len, aanf_key_req_t *out,
                           aanf_problem_t *pb);
int aanf_msg_parse_ctx_remove(const uint8_t *body, size_t len, aanf_ctx_remove_t *out,
                              aanf_problem_t *pb);
void aanf_msg_key_info_wipe(aanf_key_info_t *ki);

/* Fills *pb; fmt is a printf format for detail. */
void aanf_problem_set(aanf_problem_t *pb, int status, const char *title, const char *cause,
                      const char *param, const char *fmt, ...)
    __attribute__((format(printf, 6, 7)));

/* Response bodies, NUL-terminated JSON text in *out (malloc'd) with its length in *len.
 * The ones carrying keys must be released with aanf_msg_free_secret(). */
int aanf_msg_problem_json(const aanf_problem_t *pb, char **out, size_t *len);
int aanf_msg_key_info_json(const aanf_key_info_t *ki, char **out, size_t *len);
/* AkmaAfKeyData {kaf, expiry, supi?}; supi NULL leaves it out (anonymous access). */
int aanf_msg_af_key_data_json(const uint8_t kaf[M5_AKMA_KEY_LEN], time_t expiry, const char *supi,
                              char **out, size_t *len);
void aanf_msg_free_secret(char *text, size_t len);

/* RFC 3339 UTC ("2026-01-02T03:04:05Z") into out (at least 21 bytes). */
int aanf_msg_rfc3339(time_t t, char *out, size_t outlen);

#endif
