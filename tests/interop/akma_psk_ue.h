/* What the raw OpenSSL AKMA UEs of the interop tests (dtls_rehello.c, tls13_rec.c) share:
 * their credentials from the command line (K_AF as 64 hex digits, the PSK identity
 * "3GPP-AKMA" + A-KID), OpenSSL's PSK client callback handing them over, and die(). Each
 * tool is one C file built by its test script, so this is a header of static functions. */
#ifndef M5_TESTS_AKMA_PSK_UE_H
#define M5_TESTS_AKMA_PSK_UE_H

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static unsigned char g_kaf[32];
static char g_identity[300];

/* Prints "FAIL <what> <OpenSSL's reason>" and exits 1. */
static void die(const char *what) {
  char e[256] = "";
  unsigned long x = ERR_get_error();
  if (x) ERR_error_string_n(x, e, sizeof e);
  printf("FAIL %s %s\n", what, e);
  exit(1);
}

static unsigned int psk_cb(SSL *ssl, const char *hint, char *id, unsigned int max_id,
                           unsigned char *psk, unsigned int max_psk) {
  (void)ssl, (void)hint;
  if (strlen(g_identity) + 1 > max_id || max_psk < sizeof g_kaf) return 0;
  strcpy(id, g_identity);
  memcpy(psk, g_kaf, sizeof g_kaf);
  return sizeof g_kaf;
}

/* K_AF from kaf_hex (64 hex digits: the caller checks the length) and the identity. */
static void akma_psk_args(const char *kaf_hex, const char *akid) {
  for (int i = 0; i < 32; i++)
    sscanf(kaf_hex + 2 * i, "%2hhx", &g_kaf[i]);
  snprintf(g_identity, sizeof g_identity, "3GPP-AKMA%s", akid);
}

#endif
