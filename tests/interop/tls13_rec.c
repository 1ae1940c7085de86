/* A TLS 1.3 UE (OpenSSL, on memory BIOs so that its records can be altered on the way) for
 * tests/interop/test_m5s_tls13_records.sh: m5s does the records of an established
 * TLS_AES_128_GCM_SHA256 session itself (src/server/ue/ue_rec13.c), and this checks them
 * against OpenSSL's client. Identity "3GPP-AKMA" + A-KID, PSK = K_AF, SNI localhost, ALPN
 * coap, CoAP over TLS (RFC 8323): a CSM, sent in one TCP write with our Finished (so the
 * server finds application data behind the handshake), then a REG of UE (2.01 or 2.04).
 *  - keyupdate: three rounds of KeyUpdate with update_requested, each followed by a REG that
 *    must be answered (the server reads under our new key, we read under its new one), and
 *    the server must have sent one KeyUpdate of its own per request; then a KeyUpdate without
 *    request and a REG; then our close_notify, which the server answers with its own before
 *    closing the connection (RFC 8446 §4.6.3, §6.1).
 *  - tamper: a REG whose record has one bit flipped: the server must answer with a
 *    bad_record_mac alert and close the connection (RFC 8446 §5.2);
 *  - plain: a KeyUpdate in a plaintext handshake record after the handshake:
 *    unexpected_message and close (§5);
 *  - overflow: a record header announcing 2^14 + 257 bytes: record_overflow and close
 *    (§5.2), before the body arrives.
 * Prints "OK" and exits 0, or "FAIL ..." and exits 1.
 * Usage: tls13_rec PORT KAF_HEX AKID UE keyupdate|tamper|plain|overflow */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <openssl/err.h>
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
static SSL *g_ssl;
static BIO *g_rbio, *g_wbio;
static int g_eof;
static int g_server_key_updates; /* KeyUpdate messages received */
static int g_alert = -1;         /* last alert received */
static uint8_t g_stream[65536];  /* CoAP bytes read, not parsed yet */
static size_t g_stream_len;

/* Counts what the server sends after the handshake: its KeyUpdates, its alerts. */
static void msg_cb(int write_p, int version, int content_type, const void *buf, size_t len,
                   SSL *ssl, void *arg) {
  (void)version, (void)ssl, (void)arg;
  const uint8_t *p = buf;
  if (write_p || len < 1) return;
  if (content_type == SSL3_RT_HANDSHAKE && p[0] == SSL3_MT_KEY_UPDATE)
    g_server_key_updates++;
  if (content_type == SSL3_RT_ALERT && len >= 2) g_alert = p[1];
}

static long now_ms(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

/* What OpenSSL wrote, to the socket; with tamper, the last byte of it flipped (the record's
 * authentication tag). */
static void flush_out(int tamper) {
  uint8_t buf[16384 + 512];
  int n;
  while ((n = BIO_read(g_wbio, buf, sizeof buf)) > 0) {
    if (tamper) buf[n - 1] ^= 0x01;
    if (send(g_fd, buf, (size_t)n, MSG_NOSIGNAL) != n) die("send");
  }
}

/* Waits up to ms for bytes from the socket and gives them to OpenSSL: 1, 0 on timeout. */
static int pump_in(int ms) {
  struct pollfd p = {.fd = g_fd, .events = POLLIN};
  if (g_eof || poll(&p, 1, ms) <= 0) return 0;
  uint8_t buf[16384];
  ssize_t r = recv(g_fd, buf, sizeof buf, 0);
  if (r <= 0) {
    g_eof = 1;
    return 0;
  }
  if (BIO_write(g_rbio, buf, (int)r) != (int)r) die("BIO_write");
  return 1;
}

/* One CoAP-over-TCP message (RFC 8323 §3.2): code, 1-byte token, options and payload. */
static size_t coap_tcp(uint8_t *out, uint8_t code, uint8_t token, const uint8_t *rest, size_t n) {
  size_t h = 0;
  if (n < 13) {
    out[h++] = (uint8_t)(n << 4 | 1);
  } else if (n < 269) {
    out[h++] = 13 << 4 | 1;
    out[h++] = (uint8_t)(n - 13);
  } else {
    out[h++] = 14 << 4 | 1;
    out[h++] = (uint8_t)((n - 269) >> 8);
    out[h++] = (uint8_t)(n - 269);
  }
  out[h++] = code;
  out[h++] = token;
  memcpy(out + h, rest, n);
  return h + n;
}

static void app_write(const uint8_t *p, size_t n, int tamper) {
  if (SSL_write(g_ssl, p, (int)n) != (int)n) die("SSL_write");
  flush_out(tamper);
}

/* Reads what OpenSSL has into g_stream; -1 when the session ended (close_notify or error). */
static int app_read(void) {
  for (;;) {
    if (g_stream_len == sizeof g_stream) die("stream buffer full");
    int r = SSL_read(g_ssl, g_stream + g_stream_len, (int)(sizeof g_stream - g_stream_len));
    if (r > 0) {
      g_stream_len += (size_t)r;
      continue;
    }
    int err = SSL_get_error(g_ssl, r);
    flush_out(0);
    if (err == SSL_ERROR_WANT_READ) return 0;
    return -1;
  }
}

/* The next whole CoAP message in g_stream: its code and token, consumed; 0 if none yet. */
static int next_msg(uint8_t *code, uint8_t *token) {
  if (g_stream_len < 2) return 0;
  size_t len = g_stream[0] >> 4, tkl = g_stream[0] & 15, ext = 0;
  if (len == 13) ext = 1;
  if (len == 14) ext = 2;
  if (len == 15) die("message too long");
  if (g_stream_len < 1 + ext) return 0;
  if (ext == 1) len = 13 + g_stream[1];
  if (ext == 2) len = 269 + ((size_t)g_stream[1] << 8 | g_stream[2]);
  size_t total = 1 + ext + 1 + tkl + len;
  if (g_stream_len < total) return 0;
  *code = g_stream[1 + ext];
  *token = tkl ? g_stream[2 + ext] : 0;
  memmove(g_stream, g_stream + total, g_stream_len - total);
  g_stream_len -= total;
  return 1;
}

/* Sends a REG with token tok; returns the answer's code, 0 on timeout, -1 if the session
 * ended. Signals are skipped, a Ping answered. */
static int reg(const char *ue, uint8_t tok, int tamper) {
  uint8_t rest[256], msg[300];
  size_t n = 0;
  rest[n++] = 0xb7; /* Uri-Path (11), length 7 */
  memcpy(rest + n, "msgin5g", 7);
  n += 7;
  rest[n++] = 0x11; /* Content-Format (12), length 1 */
  rest[n++] = 50;
  rest[n++] = 0xff;
  n += (size_t)snprintf((char *)rest + n, sizeof rest - n,
                        "{\"msgType\":\"REG\",\"ueSvcId\":\"%s\"}", ue);
  app_write(msg, coap_tcp(msg, 0x02 /* POST */, tok, rest, n), tamper);
  long t0 = now_ms();
  while (now_ms() - t0 < 5000) {
    uint8_t code, token;
    while (next_msg(&code, &token)) {
      if (code == 0xe2) { /* Ping 7.02 -> Pong 7.03 */
        uint8_t pong[8];
        app_write(pong, coap_tcp(pong, 0xe3, token, NULL, 0), 0);
      } else if (code < 0xe0 && token == tok) {
        return code;
      }
    }
    if (app_read() < 0) return -1;
    if (g_eof) return -1;
    pump_in(200);
  }
  return 0;
}

/* After something the server must refuse: its alert (protected, read by OpenSSL), then the
 * end of the connection. */
static int expect_alert(int want, const char *what) {
  long t0 = now_ms();
  while (!g_eof && now_ms() - t0 < 5000) {
    pump_in(200);
    if (app_read() < 0) ERR_clear_error();
  }
  if (g_alert != want || !g_eof) {
    printf("FAIL %s: alert %d (want %d), connection %s\n", what, g_alert, want,
           g_eof ? "closed" : "still open");
    return 0;
  }
  fprintf(stderr, "%s: alert %d, connection closed\n", what, want);
  return 1;
}

static int ok_code(int code) {
  return code == 0x41 /* 2.01 */ || code == 0x44 /* 2.04 */;
}

int main(int argc, char **argv) {
  if (argc != 6 || strlen(argv[2]) != 64) {
    fprintf(stderr, "usage: tls13_rec PORT KAF_HEX AKID UE keyupdate|tamper|plain|overflow\n");
    return 2;
  }
  akma_psk_args(argv[2], argv[3]);
  const char *ue = argv[4], *mode = argv[5];

  g_fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(argv[1]))};
  inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
  if (g_fd < 0 || connect(g_fd, (struct sockaddr *)&sa, sizeof sa) != 0) die("connect");

  SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
  if (!ctx || !SSL_CTX_set_ciphersuites(ctx, "TLS_AES_128_GCM_SHA256")) die("ctx");
  SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION);
  SSL_CTX_set_psk_client_callback(ctx, psk_cb);
  static const unsigned char alpn[] = {4, 'c', 'o', 'a', 'p'};
  SSL_CTX_set_alpn_protos(ctx, alpn, sizeof alpn);
  g_ssl = SSL_new(ctx);
  g_rbio = BIO_new(BIO_s_mem());
  g_wbio = BIO_new(BIO_s_mem());
  if (!g_ssl || !g_rbio || !g_wbio) die("SSL_new");
  BIO_set_mem_eof_return(g_rbio, -1);
  SSL_set_bio(g_ssl, g_rbio, g_wbio);
  SSL_set_tlsext_host_name(g_ssl, "localhost");
  SSL_set_msg_callback(g_ssl, msg_cb);
  SSL_set_connect_state(g_ssl);
  long t0 = now_ms();
  for (;;) {
    int r = SSL_do_handshake(g_ssl);
    if (r == 1) break; /* our Finished waits for the CSM: both in one send (below) */
    flush_out(0);
    if (SSL_get_error(g_ssl, r) != SSL_ERROR_WANT_READ) die("handshake");
    if (now_ms() - t0 > 5000) die("handshake timeout");
    pump_in(200);
  }
  if (strcmp(SSL_get_cipher_name(g_ssl), "TLS_AES_128_GCM_SHA256") != 0) die("suite");
  uint8_t csm[8];
  app_write(csm, coap_tcp(csm, 0xe1 /* 7.01 */, 0, NULL, 0), 0);
  int code = reg(ue, 1, 0);
  if (!ok_code(code)) {
    printf("FAIL first REG: code 0x%02x\n", code);
    return 1;
  }

  if (strcmp(mode, "keyupdate") == 0) {
    for (int i = 0; i < 3; i++) {
      if (!SSL_key_update(g_ssl, SSL_KEY_UPDATE_REQUESTED)) die("SSL_key_update");
      code = reg(ue, (uint8_t)(10 + i), 0);
      if (code != 0x44) {
        printf("FAIL REG after KeyUpdate %d (update_requested): code 0x%02x\n", i + 1, code);
        return 1;
      }
    }
    if (g_server_key_updates != 3) {
      printf("FAIL the server sent %d KeyUpdates for 3 requests\n", g_server_key_updates);
      return 1;
    }
    if (!SSL_key_update(g_ssl, SSL_KEY_UPDATE_NOT_REQUESTED)) die("SSL_key_update");
    code = reg(ue, 20, 0);
    if (code != 0x44 || g_server_key_updates != 3) {
      printf("FAIL REG after KeyUpdate (not requested): code 0x%02x, %d server KeyUpdates\n",
             code, g_server_key_updates);
      return 1;
    }
    /* close_notify both ways: ours, then the server's, then the end of the stream. */
    SSL_shutdown(g_ssl);
    flush_out(0);
    int got = 0;
    t0 = now_ms();
    while (!g_eof && now_ms() - t0 < 5000) {
      pump_in(200);
      int r = SSL_read(g_ssl, g_stream, sizeof g_stream);
      if (r <= 0 && SSL_get_error(g_ssl, r) == SSL_ERROR_ZERO_RETURN) got = 1;
      ERR_clear_error();
    }
    if (!got || !g_eof) {
      printf("FAIL after our close_notify: %s\n",
             !got ? "no close_notify from the server" : "connection not closed");
      return 1;
    }
    fprintf(stderr, "3 KeyUpdates answered, close_notify both ways\n");
  } else if (strcmp(mode, "tamper") == 0) {
    code = reg(ue, 30, 1);
    if (code != -1) {
      printf("FAIL a tampered REG got code 0x%02x\n", code);
      return 1;
    }
    if (!expect_alert(SSL_AD_BAD_RECORD_MAC, "tampered record")) return 1;
  } else if (strcmp(mode, "plain") == 0) {
    static const uint8_t rec[] = {22, 3, 3, 0, 5, 24, 0, 0, 1, 0};
    if (send(g_fd, rec, sizeof rec, MSG_NOSIGNAL) != (ssize_t)sizeof rec) die("send");
    if (!expect_alert(SSL_AD_UNEXPECTED_MESSAGE, "plaintext handshake record")) return 1;
  } else if (strcmp(mode, "overflow") == 0) {
    static const uint8_t hdr[] = {23, 3, 3, (16384 + 257) >> 8, (uint8_t)(16384 + 257)};
    if (send(g_fd, hdr, sizeof hdr, MSG_NOSIGNAL) != (ssize_t)sizeof hdr) die("send");
    if (!expect_alert(SSL_AD_RECORD_OVERFLOW, "record too long")) return 1;
  } else {
    fprintf(stderr, "unknown mode %s\n", mode);
    return 2;
  }
  printf("OK\n");
  return 0;
}
