/* Identifiers (UE Service IDs, AS IDs, msgIds: TS 23.554 clause 8 / TS 24.538 IEs) as ONE token of
 * a NATS subject and of a JetStream KV key, for the message store's JetStream backend (issue 13).
 *
 * Why an encoding at all: a UE Service ID may hold ':', '@', '.', spaces, '*', '>' or non-ASCII
 * bytes; none of those may appear in a KV key and '.', '*', '>' and whitespace break a subject.
 *
 * The encoding chosen: base64url WITHOUT padding (RFC 4648 §5) of the identifier's bytes.
 *  - Its alphabet A-Z a-z 0-9 '-' '_' lies inside both rule sets: a subject token may hold any
 *    byte but '.', '*', '>' and whitespace (NATS recommends exactly alphanumerics, '-', '_'),
 *    and a KV key may hold A-Z a-z 0-9 - _ / = . with '.' only between non-empty tokens
 *    (checked against libnats 3.4.1: ':', '@', ' ', '*', '>', '..', non-ASCII refused).
 *    Padding is left out because '=' is not a recommended subject character and carries no
 *    information (the length gives it back). No '.' is ever produced, so the result is one token.
 *  - Reversible without any table (a hash would need a reverse map in the cluster), deterministic
 *    (every node derives the same subject for the same ID), length 4/3 of the ID.
 *  - Canonical: decode refuses any token that encode would not produce (bad characters, a length
 *    of 1 mod 4, non-zero unused bits in the last character), so token <-> ID is a bijection and
 *    two different tokens never name the same ID.
 *  - The empty identifier would give an empty token, which neither a subject nor a KV key
 *    allows: it is encoded as the single character "_" (a length no base64url text has).
 * Percent-encoding was rejected: '%' is not allowed in KV keys.
 * A token may start with '-' or '_'; callers put a typed prefix token before it ("u.", "a." ...),
 * so it is never the first token of a subject or key. */
#ifndef M5_JS_NAMES_H
#define M5_JS_NAMES_H

#include <stddef.h>
#include <stdint.h>

/* The longest identifier accepted: the longest of M5_MSG_ADDR_MAX (service ids) and
 * M5_MSG_ID_MAX (msgId) of msg/msg.h (checked there by a static assertion in js_names.c). */
#define M5_JS_ID_MAX 128
/* Its longest token, and a buffer size holding it with its NUL. */
#define M5_JS_TOKEN_MAX ((M5_JS_ID_MAX * 4 + 2) / 3) /* 171 */
#define M5_JS_TOKEN_SIZE (M5_JS_TOKEN_MAX + 1)

/* Encodes id[0..len) into out (NUL-terminated) and its length into *out_len (may be NULL).
 * M5_ERANGE: len > M5_JS_ID_MAX or out_size too small (out is then ""); M5_EINVAL: NULL args. */
int m5_js_name_encode(const void *id, size_t len, char *out, size_t out_size, size_t *out_len);

/* Decodes the token tok[0..tok_len) into out[0..*out_len) (not NUL-terminated; out_size >=
 * M5_JS_ID_MAX always suffices). Refuses (M5_EINVAL, with a diagnostic naming the position and
 * the reason in diag when given) anything m5_js_name_encode does not produce; M5_ERANGE when the
 * token is longer than M5_JS_TOKEN_MAX or out_size is too small. */
int m5_js_name_decode(const char *tok, size_t tok_len, uint8_t *out, size_t out_size,
                      size_t *out_len, char *diag, size_t diag_size);

#endif
