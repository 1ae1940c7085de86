/* A DTLS 1.2 UE (OpenSSL on memory BIOs over one UDP socket, so that its records can be held,
 * replayed, reordered and altered on the way) for tests/interop/test_m5s_dtls12_records.sh:
 * once the client's first application data has authenticated, m5s does the records of the
 * session itself (src/server/ue/ue_dtls12rec.c), and this checks them against OpenSSL's
 * client. Identity "3GPP-AKMA" + A-KID, PSK = K_AF of the suite, SNI localhost, CoAP over
 * DTLS (RFC 7252): a REG of UE (2.01 or 2.04) first, then CoAP pings (CON, empty: answered
 * with a RST of the same message id), each in a record of its own:
 *  - all: a replayed record gets no answer (had it passed, CoAP would answer the repeated REG
 *    again); two records sent in reverse order are both answered; a record held back while
 *    70 newer ones passed gets no answer (older than the 64-record window); a record with one
 *    bit flipped gets no answer and the genuine one sent afterwards is answered; a record
 *    whose sequence number was pushed far ahead (not authentic) does not move the window: the
 *    next genuine one is answered; a long run of pings is answered one by one (OpenSSL's
 *    client checks every record m5s sends: epoch, sequence number, nonce, tag); last, a
 *    renegotiation (a ClientHello at epoch 1) is answered with a no_renegotiation warning
 *    (RFC 5746 §4.5; the caller checks that the session is still open).
 *  - close: our close_notify is answered with m5s's close_notify.
 * Prints "OK" and exits 0, or "FAIL ..." and exits 1.
 * Usage: dtls12_rec PORT KAF_HEX AKID UE SUITE all|close [PINGS] */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <arpa/inet.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "akma_psk_ue.h"

static int g_fd;
static SSL *g_ssl;
static BIO *g_rbio, *g_wbio;
static int g_alert_level = -1, g_alert = -1; /* the last alert m5s sent */

static void msg_cb(int write_p, int version, int content_type, const void *buf, size_t len,
                   SSL *ssl, void *arg) {
  (void)version, (void)ssl, (void)arg;
  const uint8_t *p = buf;
  if (!write_p && content_type == SSL3_RT_ALERT && len >= 2) {
    g_alert_level = p[0];
    g_alert = p[1];
  }
}

static void fail(const char *fmt, const char *what, long v) {
  printf("FAIL ");
  printf(fmt, what, v);
  printf("\n");
  exit(1);
}

/* What OpenSSL wrote: one record (an SSL_write of ours), copied out, not sent. */
static size_t take_record(uint8_t *rec, size_t cap) {
  char *data = NULL;
  long n = BIO_get_mem_data(g_wbio, &data);
  if (n <= 0 || (size_t)n > cap) die("no record written");
  memcpy(rec, data, (size_t)n);
  (void)BIO_reset(g_wbio);
  return (size_t)n;
}

static void send_raw(const uint8_t *p, size_t n) {
  if (send(g_fd, p, n, 0) != (ssize_t)n) die("send");
}

static void flush_out(void) {
  uint8_t buf[4096];
  int n;
  while ((n = BIO_read(g_wbio, buf, sizeof buf)) > 0)
    send_raw(buf, (size_t)n);
}

/* Feeds the datagrams that arrive within ms to OpenSSL; 1 if any did. */
static int pump(int ms) {
  struct pollfd p = {.fd = g_fd, .events = POLLIN};
  if (poll(&p, 1, ms) <= 0) return 0;
  uint8_t buf[16384 + 512];
  ssize_t r = recv(g_fd, buf, sizeof buf, 0);
  if (r <= 0) return 0;
  BIO_write(g_rbio, buf, (int)r);
  return 1;
}

/* Reads the CoAP messages OpenSSL has; returns the first one with message id mid: its type
 * and code as (type << 8 | code), or -1 when none yet. */
static int read_mid(uint16_t mid) {
  uint8_t m[2048];
  int found = -1;
  for (;;) {
    int r = SSL_read(g_ssl, m, sizeof m);
    if (r <= 0) {
      ERR_clear_error();
      return found;
    }
    if (r >= 4 && (m[2] << 8 | m[3]) == mid && found < 0) found = (m[0] >> 4 & 3) << 8 | m[1];
  }
}

/* Waits up to ms for the answer to mid: (type << 8 | code), or 0 on timeout. */
static int answer(uint16_t mid, int ms) {
  for (int waited = 0; waited < ms; waited += 50) {
    int got = read_mid(mid);
    if (got >= 0) return got == 0 ? 0x1000 : got;
    pump(50);
  }
  int got = read_mid(mid);
  return got < 0 ? 0 : (got == 0 ? 0x1000 : got);
}

/* A CoAP ping (CON, 0.00) in one record, copied into rec (not sent). */
static size_t ping_record(uint16_t mid, uint8_t *rec, size_t cap) {
  const uint8_t m[4] = {0x40, 0x00, (uint8_t)(mid >> 8), (uint8_t)mid};
  if (SSL_write(g_ssl, m, sizeof m) != (int)sizeof m) die("SSL_write ping");
  return take_record(rec, cap);
}

#define RST 0x300 /* type 3, code 0.00 */

static void expect_rst(uint16_t mid, const char *what) {
  int a = answer(mid, 3000);
  if (a != RST) fail("%s: ping %ld not answered with a RST", what, mid);
}

static void expect_silence(uint16_t mid, const char *what) {
  int a = answer(mid, 1000);
  if (a) fail("%s: answered (0x%lx) although the record must be dropped", what, a);
}

/* A CoAP CON POST msgin5g (Content-Format 50) REG of ue. */
static size_t reg_record(const char *ue, uint16_t mid, uint8_t *rec, size_t cap) {
  uint8_t m[200];
  size_t n = 0;
  m[n++] = 0x41, m[n++] = 0x02, m[n++] = (uint8_t)(mid >> 8), m[n++] = (uint8_t)mid;
  m[n++] = 0x77; /* token */
  m[n++] = 0xb7; /* Uri-Path, 7 bytes */
  memcpy(m + n, "msgin5g", 7), n += 7;
  m[n++] = 0x11, m[n++] = 50, m[n++] = 0xff; /* Content-Format 50, payload marker */
  n +=
      (size_t)snprintf((char *)m + n, sizeof m - n, "{\"msgType\":\"REG\",\"ueSvcId\":\"%s\"}", ue);
  if (SSL_write(g_ssl, m, (int)n) != (int)n) die("SSL_write REG");
  return take_record(rec, cap);
}

int main(int argc, char **argv) {
  if ((argc != 7 && argc != 8) || strlen(argv[2]) != 64) {
    fprintf(stderr, "usage: dtls12_rec PORT KAF_HEX AKID UE SUITE all|close [PINGS]\n");
    return 2;
  }
  akma_psk_args(argv[2], argv[3]);
  const char *ue = argv[4], *mode = argv[6];
  int pings = argc == 8 ? atoi(argv[7]) : 1000;
  struct sockaddr_in da = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(argv[1]))};
  inet_pton(AF_INET, "127.0.0.1", &da.sin_addr);
  g_fd = socket(AF_INET, SOCK_DGRAM, 0);
  if (g_fd < 0 || connect(g_fd, (struct sockaddr *)&da, sizeof da) != 0) die("socket");

  SSL_CTX *ctx = SSL_CTX_new(DTLS_client_method());
  if (!ctx || !SSL_CTX_set_cipher_list(ctx, argv[5])) die("ctx");
  SSL_CTX_set_min_proto_version(ctx, DTLS1_2_VERSION);
  SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
  SSL_CTX_set_psk_client_callback(ctx, psk_cb);
  g_ssl = SSL_new(ctx);
  g_rbio = BIO_new(BIO_s_mem());
  g_wbio = BIO_new(BIO_s_mem());
  BIO_set_mem_eof_return(g_rbio, -1);
  BIO_set_mem_eof_return(g_wbio, -1);
  SSL_set_bio(g_ssl, g_rbio, g_wbio);
  SSL_set_options(g_ssl, SSL_OP_NO_QUERY_MTU);
  DTLS_set_link_mtu(g_ssl, 1200);
  SSL_set_tlsext_host_name(g_ssl, "localhost");
  SSL_set_msg_callback(g_ssl, msg_cb);
  SSL_set_connect_state(g_ssl);
  int done = 0;
  for (int round = 0; round < 60 && !done; round++) {
    int r = SSL_do_handshake(g_ssl);
    if (r == 1)
      done = 1;
    else if (SSL_get_error(g_ssl, r) != SSL_ERROR_WANT_READ)
      die("handshake");
    flush_out();
    if (!done && !pump(1000)) DTLSv1_handle_timeout(g_ssl);
  }
  if (!done) fail("%s%ld", "handshake did not complete", 0);
  fprintf(stderr, "handshake: %s %s\n", SSL_get_version(g_ssl), SSL_get_cipher_name(g_ssl));

  uint8_t reg[512], rec[512];
  size_t rl = reg_record(ue, 1, reg, sizeof reg);
  send_raw(reg, rl);
  int code = answer(1, 5000) & 0xff;
  if (code != 0x41 && code != 0x44) fail("%s: 0x%lx", "REG", code);
  fprintf(stderr, "REG answered\n");

  if (strcmp(mode, "close") == 0) {
    SSL_shutdown(g_ssl);
    flush_out();
    for (int i = 0; i < 60 && g_alert < 0; i++) {
      pump(50);
      uint8_t b[64];
      if (SSL_read(g_ssl, b, sizeof b) <= 0) ERR_clear_error();
    }
    if (g_alert != 0 || g_alert_level != 1)
      fail("%s (last alert %ld)", "no close_notify back", g_alert);
    fprintf(stderr, "close_notify answered\n");
    printf("OK\n");
    return 0;
  }

  /* Replay of the REG's record. */
  send_raw(reg, rl);
  expect_silence(1, "replayed REG record");
  fprintf(stderr, "replay: dropped\n");

  /* Reordered. */
  uint8_t a[64], b[64];
  size_t al = ping_record(100, a, sizeof a), bl = ping_record(101, b, sizeof b);
  send_raw(b, bl);
  send_raw(a, al);
  expect_rst(101, "reordered (second)");
  expect_rst(100, "reordered (first)");
  fprintf(stderr, "reorder: both answered\n");

  /* Older than the window. */
  uint8_t old[64];
  size_t ol = ping_record(200, old, sizeof old);
  for (uint16_t i = 0; i < 70; i++) {
    size_t n = ping_record((uint16_t)(300 + i), rec, sizeof rec);
    send_raw(rec, n);
    expect_rst((uint16_t)(300 + i), "window filler");
  }
  send_raw(old, ol);
  expect_silence(200, "record 70 behind");
  fprintf(stderr, "too old: dropped\n");

  /* Tampered, then the genuine record. */
  size_t n = ping_record(400, rec, sizeof rec);
  uint8_t bad[64];
  memcpy(bad, rec, n);
  bad[n - 3] ^= 0x10;
  send_raw(bad, n);
  expect_silence(400, "tampered record");
  send_raw(rec, n);
  expect_rst(400, "genuine record after a tampered copy");
  /* A forged sequence number far ahead must not move the window. */
  n = ping_record(401, rec, sizeof rec);
  memcpy(bad, rec, n);
  bad[5] ^= 0x40;
  send_raw(bad, n);
  expect_silence(401, "record with a forged sequence number");
  send_raw(rec, n);
  expect_rst(401, "genuine record after a forged sequence number");
  n = ping_record(402, rec, sizeof rec);
  send_raw(rec, n);
  expect_rst(402, "next record after a forged sequence number");
  fprintf(stderr, "tamper: dropped, session intact\n");

  /* A long run. */
  for (int i = 0; i < pings; i++) {
    uint16_t mid = (uint16_t)(1000 + i);
    n = ping_record(mid, rec, sizeof rec);
    send_raw(rec, n);
    expect_rst(mid, "long run");
  }
  fprintf(stderr, "long run: %d pings answered\n", pings);

  /* Renegotiation: a ClientHello at epoch 1. */
  g_alert = g_alert_level = -1;
  if (!SSL_renegotiate(g_ssl)) die("SSL_renegotiate");
  int r = SSL_do_handshake(g_ssl);
  if (r == 1 || SSL_get_error(g_ssl, r) != SSL_ERROR_WANT_READ) die("renegotiation start");
  flush_out();
  for (int i = 0; i < 40 && g_alert < 0; i++) {
    pump(50);
    if (SSL_do_handshake(g_ssl) <= 0) ERR_clear_error();
  }
  if (g_alert != 100 || g_alert_level != 1)
    fail("%s (alert %ld)", "renegotiation not refused with a no_renegotiation warning", g_alert);
  fprintf(stderr, "renegotiation: refused with no_renegotiation\n");
  printf("OK\n");
  return 0;
}
