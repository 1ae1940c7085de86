/* libFuzzer harness for js/js_names (issue 13): identifiers as one NATS subject / KV key token.
 * For any input up to M5_JS_ID_MAX bytes the encoding holds only token characters and decodes
 * back to the input; any input read as a token either is refused or re-encodes to exactly that
 * token (canonical: one ID, one token); decode never reads or writes out of bounds.
 * M5_FUZZ_SOURCES: src/lib/js/js_names.c src/lib/crypto/codec.c src/lib/core/err.c
 * M5_FUZZ_PKGS: openssl */
#include "core/err.h"
#include "js/js_names.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  char tok[M5_JS_TOKEN_SIZE];
  uint8_t id[M5_JS_ID_MAX];
  size_t tl, il;
  if (size <= M5_JS_ID_MAX) {
    if (m5_js_name_encode(data, size, tok, sizeof tok, &tl) != M5_OK) __builtin_trap();
    if (!tl || strlen(tok) != tl ||
        strspn(tok, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_") != tl)
      __builtin_trap();
    if (m5_js_name_decode(tok, tl, id, sizeof id, &il, NULL, 0) != M5_OK || il != size ||
        (size && memcmp(id, data, size)))
      __builtin_trap();
  } else if (m5_js_name_encode(data, size, tok, sizeof tok, &tl) != M5_ERANGE) {
    __builtin_trap();
  }
  /* the input as a token: exact-size heap copy so ASan sees any overread */
  char *t = malloc(size ? size : 1);
  if (!t) return 0;
  if (size) memcpy(t, data, size);
  char diag[64];
  int rc = m5_js_name_decode(t, size, id, sizeof id, &il, diag, sizeof diag);
  if (rc == M5_OK) {
    if (m5_js_name_encode(id, il, tok, sizeof tok, &tl) != M5_OK || tl != size ||
        memcmp(tok, t, size))
      __builtin_trap();
  } else if (rc != M5_EINVAL && rc != M5_ERANGE) {
    __builtin_trap();
  }
  free(t);
  return 0;
}
