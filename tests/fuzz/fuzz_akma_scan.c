/* libFuzzer harness for m5_akma_scan_input(), which reads (D)TLS records a peer sends before
 * OpenSSL does (to find the PSK identity in a 1.2 ClientKeyExchange): any bytes, split at any
 * point, on a DTLS or a TLS server SSL, must give one of its documented results and a
 * NUL-terminated A-KID when it asks for a key.
 * M5_FUZZ_SOURCES: src/lib/tls/akma.c src/lib/crypto/akma.c src/lib/crypto/kdf.c
 * M5_FUZZ_SOURCES: src/lib/crypto/codec.c src/lib/core/err.c
 * M5_FUZZ_PKGS: openssl */
#include "core/err.h"
#include "tls/akma.h"

#include <stdint.h>
#include <string.h>

static SSL_CTX *ctx_for(int dtls) {
  static SSL_CTX *ctx[2];
  if (!ctx[dtls]) {
    static const char *const names[] = {"localhost"};
    m5_akma_server_opts_t o = {.fqdns = names, .n_fqdns = 1, .allow_psk_ke = 1, .allow_tls12 = 1};
    char err[256];
    ctx[dtls] = m5_akma_server_ctx_new(dtls, &o, err, sizeof err);
    if (!ctx[dtls]) __builtin_trap();
  }
  return ctx[dtls];
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 2) return 0;
  int dtls = data[0] & 1;
  size_t split = data[1];
  data += 2;
  size -= 2;
  SSL *ssl = SSL_new(ctx_for(dtls));
  if (!ssl || m5_akma_ssl_attach(ssl) != M5_OK) __builtin_trap();
  SSL_set_accept_state(ssl);
  m5_akma_want_t want;
  size_t first = split < size ? split : size;
  /* Held bytes are rescanned whole (the transport's contract): first a prefix, then all. */
  int results[2] = {m5_akma_scan_input(ssl, data, first, &want),
                    m5_akma_scan_input(ssl, data, size, &want)};
  for (int i = 0; i < 2; i++) {
    int rc = results[i];
    if (rc != 0 && rc != 1 && rc != M5_EAGAIN && rc != M5_EPROTO) __builtin_trap();
    if (rc == 1 && strnlen(want.akid, sizeof want.akid) == sizeof want.akid) __builtin_trap();
  }
  SSL_free(ssl);
  return 0;
}
