/* libFuzzer harness for the hex and base64url decoders (keys and identifiers from peers and
 * command lines). Checks that a successful decode re-encodes to the same text.
 * M5_FUZZ_SOURCES: src/lib/crypto/codec.c src/lib/core/err.c
 * M5_FUZZ_PKGS: openssl */
#include "core/err.h"
#include "crypto/codec.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size > 4096) return 0;
  char *text = malloc(size + 1);
  if (!text) return 0;
  memcpy(text, data, size);
  text[size] = '\0';
  uint8_t out[2048];
  char again[4200];
  size_t n = 0;
  if (m5_hex_decode(text, out, sizeof out, &n) == M5_OK) {
    if (m5_hex_encode(out, n, again, sizeof again) != M5_OK || strcasecmp(again, text) != 0)
      __builtin_trap();
  }
  if (m5_b64url_decode(text, out, sizeof out, &n) == M5_OK) {
    if (m5_b64url_encode(out, n, again, sizeof again) != M5_OK || strcmp(again, text) != 0)
      __builtin_trap();
  }
  free(text);
  return 0;
}
