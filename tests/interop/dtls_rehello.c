/* A DTLS UE and a second handshake from its own address and port, for
 * tests/interop/test_m5s_dtls_rehello.sh (RFC 6347 §4.2.8). One UDP socket:
 *  1. session A: a DTLS 1.2 handshake (PSK-AES128-GCM-SHA256, identity "3GPP-AKMA" + A-KID,
 *     K_AF given) and a CoAP REG of UE over it (2.01 or 2.04 expected);
 *  2. from the same socket, a second DTLS client B (OpenSSL on memory BIOs, its datagrams
 *     sent and read by hand) sends a ClientHello, gets the HelloVerifyRequest and answers with
 *     the valid cookie; then
 *     - mode forge: B stops there (it does not know, or does not use, a K_AF): the server's
 *       flight is read and dropped, and session A must still work: a second REG over A gets
 *       its answer;
 *     - mode complete: B finishes its handshake with the K_AF; a REG over B must be answered,
 *       and a REG over A must not be (the server replaced A by B).
 * Prints "OK" and exits 0, or "FAIL ..." and exits 1.
 * Usage: dtls_rehello PORT KAF_HEX AKID UE forge|complete */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "akma_psk_ue.h"

static int g_fd;

static SSL_CTX *client_ctx(void) {
  SSL_CTX *ctx = SSL_CTX_new(DTLS_client_method());
  if (!ctx || !SSL_CTX_set_cipher_list(ctx, "PSK-AES128-GCM-SHA256")) die("ctx");
  SSL_CTX_set_min_proto_version(ctx, DTLS1_2_VERSION);
  SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
  SSL_CTX_set_psk_client_callback(ctx, psk_cb);
  return ctx;
}

/* A CoAP CON POST msgin5g, Content-Format 50, REG of ue. */
static size_t coap_reg(uint8_t *out, const char *ue, uint16_t mid) {
  size_t n = 0;
  out[n++] = 0x41; /* ver 1, CON, TKL 1 */
  out[n++] = 0x02; /* POST */
  out[n++] = (uint8_t)(mid >> 8);
  out[n++] = (uint8_t)mid;
  out[n++] = (uint8_t)mid; /* token */
  out[n++] = 0xb7;         /* Uri-Path (11), length 7 */
  memcpy(out + n, "msgin5g", 7);
  n += 7;
  out[n++] = 0x11; /* Content-Format (12 = 11 + 1), length 1 */
  out[n++] = 50;
  out[n++] = 0xff;
  n += (size_t)sprintf((char *)out + n, "{\"msgType\":\"REG\",\"ueSvcId\":\"%s\"}", ue);
  return n;
}

/* Waits up to ms for one datagram on the socket; its length, or 0 on timeout. */
static size_t recv_dgram(uint8_t *buf, size_t cap, int ms) {
  struct pollfd p = {.fd = g_fd, .events = POLLIN};
  if (poll(&p, 1, ms) <= 0) return 0;
  ssize_t r = recv(g_fd, buf, cap, 0);
  return r > 0 ? (size_t)r : 0;
}

/* Session A (on the socket): sends a REG, returns the response code byte or 0 on timeout. */
static int reg_over_a(SSL *a, const char *ue, uint16_t mid) {
  uint8_t req[200], resp[2048];
  size_t n = coap_reg(req, ue, mid);
  if (SSL_write(a, req, (int)n) != (int)n) die("SSL_write A");
  struct timespec t0;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  for (;;) {
    struct pollfd p = {.fd = g_fd, .events = POLLIN};
    if (poll(&p, 1, 200) > 0) {
      int r = SSL_read(a, resp, sizeof resp);
      if (r >= 4 && resp[2] == (uint8_t)(mid >> 8) && resp[3] == (uint8_t)mid) return resp[1];
      if (r <= 0) ERR_clear_error();
    }
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    if ((t.tv_sec - t0.tv_sec) * 1000 + (t.tv_nsec - t0.tv_nsec) / 1000000 > 3000) return 0;
  }
}

/* B: moves what B wrote to the socket. */
static void b_flush(BIO *wbio) {
  uint8_t buf[8192];
  int n;
  while ((n = BIO_read(wbio, buf, sizeof buf)) > 0)
    if (send(g_fd, buf, (size_t)n, 0) != n) die("send B");
}

static int code_ok(int code) {
  return code == 0x41 || code == 0x44; /* 2.01, 2.04 */
}

int main(int argc, char **argv) {
  if (argc != 6 || strlen(argv[2]) != 64) {
    fprintf(stderr, "usage: dtls_rehello PORT KAF_HEX AKID UE forge|complete\n");
    return 2;
  }
  akma_psk_args(argv[2], argv[3]);
  const char *ue = argv[4];
  int complete = strcmp(argv[5], "complete") == 0;
  struct sockaddr_in da = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(argv[1]))};
  inet_pton(AF_INET, "127.0.0.1", &da.sin_addr);
  g_fd = socket(AF_INET, SOCK_DGRAM, 0);
  if (g_fd < 0 || connect(g_fd, (struct sockaddr *)&da, sizeof da) != 0) die("socket");
  struct timeval tv = {.tv_sec = 5};
  setsockopt(g_fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);

  /* 1. session A */
  SSL_CTX *ctx = client_ctx();
  SSL *a = SSL_new(ctx);
  BIO *bio = BIO_new_dgram(g_fd, BIO_NOCLOSE);
  BIO_ctrl(bio, BIO_CTRL_DGRAM_SET_CONNECTED, 0, &da);
  SSL_set_bio(a, bio, bio);
  SSL_set_tlsext_host_name(a, "localhost");
  if (SSL_connect(a) != 1) die("handshake A");
  int code = reg_over_a(a, ue, 1);
  if (!code_ok(code)) {
    printf("FAIL REG over A answered 0x%02x\n", code);
    return 1;
  }
  fprintf(stderr, "A: registered\n");

  /* 2. B from the same socket: ClientHello, HelloVerifyRequest, ClientHello with the cookie */
  SSL *b = SSL_new(ctx);
  BIO *brd = BIO_new(BIO_s_mem()), *bwr = BIO_new(BIO_s_mem());
  BIO_set_mem_eof_return(brd, -1);
  BIO_set_mem_eof_return(bwr, -1);
  SSL_set_bio(b, brd, bwr);
  SSL_set_options(b, SSL_OP_NO_QUERY_MTU);
  DTLS_set_link_mtu(b, 1200);
  SSL_set_tlsext_host_name(b, "localhost");
  SSL_set_connect_state(b);
  uint8_t dg[16384];
  int hvr = 0, b_done = 0;
  for (int round = 0; round < 40 && !b_done; round++) {
    int r = SSL_do_handshake(b);
    if (r == 1) b_done = 1;
    else if (SSL_get_error(b, r) != SSL_ERROR_WANT_READ) die("handshake B");
    b_flush(bwr);
    if (b_done) break;
    size_t n = recv_dgram(dg, sizeof dg, 1000);
    if (n == 0) break;
    /* The first answer is the HelloVerifyRequest (handshake type 3). */
    if (n > 25 && dg[0] == 22 && dg[13] == 3) hvr = 1;
    if (!complete && hvr && n > 25 && dg[0] == 22 && dg[13] == 2) {
      /* ServerHello: the server took the cookie and started B's handshake. Stop here. */
      fprintf(stderr, "B: cookie accepted (ServerHello); not finishing\n");
      break;
    }
    BIO_write(brd, dg, (int)n);
  }
  if (!hvr) {
    printf("FAIL no HelloVerifyRequest for B\n");
    return 1;
  }
  if (!complete) {
    /* The rest of the server's flight for B, and nothing for A meanwhile. */
    while (recv_dgram(dg, sizeof dg, 300) > 0) {
    }
    code = reg_over_a(a, ue, 2);
    if (!code_ok(code)) {
      printf("FAIL session A no longer works after B's ClientHello with a valid cookie (0x%02x)\n",
             code);
      return 1;
    }
    fprintf(stderr, "A: still works after B's cookie\n");
    printf("OK\n");
    return 0;
  }
  if (!b_done) {
    printf("FAIL handshake B did not complete\n");
    return 1;
  }
  fprintf(stderr, "B: handshake completed\n");
  /* REG over B (its records by hand) */
  uint8_t req[200];
  size_t rn = coap_reg(req, ue, 3);
  if (SSL_write(b, req, (int)rn) != (int)rn) die("SSL_write B");
  b_flush(bwr);
  int got = 0;
  for (int i = 0; i < 30 && !got; i++) {
    size_t n = recv_dgram(dg, sizeof dg, 200);
    if (n == 0) continue;
    BIO_write(brd, dg, (int)n);
    uint8_t resp[2048];
    int r = SSL_read(b, resp, sizeof resp);
    if (r >= 4 && resp[3] == 3) {
      got = resp[1];
    } else {
      ERR_clear_error();
      b_flush(bwr);
    }
  }
  if (!code_ok(got)) {
    printf("FAIL REG over B answered 0x%02x\n", got);
    return 1;
  }
  fprintf(stderr, "B: registered\n");
  code = reg_over_a(a, ue, 4);
  if (code) {
    printf("FAIL session A still answered (0x%02x) after B completed\n", code);
    return 1;
  }
  fprintf(stderr, "A: replaced by B\n");
  printf("OK\n");
  return 0;
}
