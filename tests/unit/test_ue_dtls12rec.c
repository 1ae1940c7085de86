/* Unit tests for src/server/ue/ue_dtls12rec.c, m5s's own DTLS 1.2 record layer, against
 * OpenSSL's: for each of the three suites m5s offers UEs over DTLS (PSK-AES128-GCM-SHA256,
 * PSK-AES128-CCM8, ECDHE-PSK-CHACHA20-POLY1305) a real OpenSSL DTLS 1.2 client and server
 * complete a PSK handshake in memory and the server sends a few records; then the record keys
 * are taken from the server's SSL (as ue_dtls.c does) and this layer takes the server's place:
 * the client's records must open here and ours must be read by the client, in both directions
 * over a long run, with replayed, reordered, too old, tampered, wrong-epoch and wrong-version
 * records dropped (RFC 6347 §4.1.2.6, §4.1.2.7), alerts both ways, and the last sequence
 * number used without ever wrapping. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "core/err.h"
#include "server/ue/ue_dtls12rec.h"

static const uint8_t PSK[32] = {1,  2,  3,  4,  5,  6,  7,  8,  9,  10, 11, 12, 13, 14, 15, 16,
                                17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32};

typedef struct {
  SSL_CTX *sctx, *cctx;
  SSL *s, *c;
  BIO *s_in, *s_out, *c_in, *c_out;
  ue_d12_ctx_t x;
  ue_d12_t r;
  uint8_t last_openssl_nonce[8]; /* of the server's last record before the switch */
} pair_t;

static unsigned int psk_server(SSL *ssl, const char *id, unsigned char *psk, unsigned int max) {
  (void)ssl;
  if (strcmp(id, "ue") != 0 || max < sizeof PSK) return 0;
  memcpy(psk, PSK, sizeof PSK);
  return sizeof PSK;
}

static unsigned int psk_client(SSL *ssl, const char *hint, char *id, unsigned int max_id,
                               unsigned char *psk, unsigned int max) {
  (void)ssl, (void)hint;
  if (max_id < 3 || max < sizeof PSK) return 0;
  strcpy(id, "ue");
  memcpy(psk, PSK, sizeof PSK);
  return sizeof PSK;
}

static SSL *new_ssl(SSL_CTX *ctx, BIO **in, BIO **out) {
  SSL *ssl = SSL_new(ctx);
  *in = BIO_new(BIO_s_mem());
  *out = BIO_new(BIO_s_mem());
  assert_non_null(ssl);
  BIO_set_mem_eof_return(*in, -1);
  BIO_set_mem_eof_return(*out, -1);
  SSL_set_bio(ssl, *in, *out);
  SSL_set_options(ssl, SSL_OP_NO_QUERY_MTU);
  DTLS_set_link_mtu(ssl, 1200);
  return ssl;
}

/* Moves what from wrote into to; with track, the server's output goes through saw_tx, as in
 * ue_dtls.c. Returns the bytes moved. */
static size_t move(pair_t *p, BIO *from, BIO *to, int track) {
  char *data = NULL;
  long n = BIO_get_mem_data(from, &data);
  if (n <= 0) return 0;
  if (track) {
    ue_d12_saw_tx(&p->r, (const uint8_t *)data, (size_t)n);
    memcpy(p->last_openssl_nonce, p->r.tx_last_nonce, 8);
  }
  assert_int_equal(BIO_write(to, data, (int)n), (int)n);
  (void)BIO_reset(from);
  return (size_t)n;
}

/* Handshake, three records from OpenSSL's server, then our layer takes over. */
static void pair_up(pair_t *p, const char *suite, int expect_aead) {
  memset(p, 0, sizeof *p);
  p->sctx = SSL_CTX_new(DTLS_server_method());
  p->cctx = SSL_CTX_new(DTLS_client_method());
  assert_non_null(p->sctx);
  assert_non_null(p->cctx);
  for (int i = 0; i < 2; i++) {
    SSL_CTX *ctx = i ? p->cctx : p->sctx;
    assert_true(SSL_CTX_set_cipher_list(ctx, suite));
    assert_true(SSL_CTX_set_min_proto_version(ctx, DTLS1_2_VERSION));
    assert_true(SSL_CTX_set_max_proto_version(ctx, DTLS1_2_VERSION));
    SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET | SSL_OP_NO_RENEGOTIATION);
  }
  SSL_CTX_set_psk_server_callback(p->sctx, psk_server);
  SSL_CTX_set_psk_client_callback(p->cctx, psk_client);
  p->s = new_ssl(p->sctx, &p->s_in, &p->s_out);
  p->c = new_ssl(p->cctx, &p->c_in, &p->c_out);
  SSL_set_accept_state(p->s);
  SSL_set_connect_state(p->c);
  int sd = 0, cd = 0;
  for (int round = 0; round < 20 && !(sd && cd); round++) {
    if (!cd) cd = SSL_do_handshake(p->c) == 1;
    move(p, p->c_out, p->s_in, 0);
    if (!sd) sd = SSL_do_handshake(p->s) == 1;
    move(p, p->s_out, p->c_in, 1);
  }
  assert_true(sd && cd);
  assert_int_equal(ue_d12_suite(p->s), expect_aead);
  /* OpenSSL's server sends a few records of its own before the switch. */
  uint8_t buf[64];
  for (int i = 0; i < 3; i++) {
    assert_int_equal(SSL_write(p->s, "before", 6), 6);
    move(p, p->s_out, p->c_in, 1);
    assert_int_equal(SSL_read(p->c, buf, sizeof buf), 6);
  }
  assert_int_equal(p->r.tx.seq, 4); /* its Finished was 0, then 1, 2, 3 */
  assert_int_equal(ue_d12_ctx_init(&p->x), M5_OK);
  assert_int_equal(ue_d12_start(&p->x, &p->r, p->s), M5_OK);
  assert_int_equal(p->r.aead, expect_aead);
}

static void pair_free(pair_t *p) {
  SSL_free(p->s);
  SSL_free(p->c);
  SSL_CTX_free(p->sctx);
  SSL_CTX_free(p->cctx);
  ue_d12_ctx_free(&p->x);
  ue_d12_wipe(&p->r);
}

/* One record the client wrote (after SSL_write or SSL_shutdown), copied out. */
static size_t client_record(pair_t *p, uint8_t *rec, size_t cap) {
  char *data = NULL;
  long n = BIO_get_mem_data(p->c_out, &data);
  assert_true(n > 0 && (size_t)n <= cap);
  assert_int_equal(ue_d12_record_len((const uint8_t *)data, (size_t)n), (size_t)n);
  memcpy(rec, data, (size_t)n);
  (void)BIO_reset(p->c_out);
  return (size_t)n;
}

static size_t client_write(pair_t *p, const void *msg, size_t n, uint8_t *rec, size_t cap) {
  assert_int_equal(SSL_write(p->c, msg, (int)n), (int)n);
  return client_record(p, rec, cap);
}

/* Opens a copy of rec (opening decrypts in place); the result, and the plaintext in out. */
static int open_copy(pair_t *p, const uint8_t *rec, size_t n, uint8_t *out, size_t *outn) {
  uint8_t tmp[UE_D12_REC_MAX], *pt = NULL;
  size_t ptn = 0;
  memcpy(tmp, rec, n);
  int rc = ue_d12_open(&p->x, &p->r, tmp, n, &pt, &ptn);
  if (rc == UE_D12_OK) {
    assert_int_equal(tmp[0], rec[0]);
    if (out) memcpy(out, pt, ptn);
    if (outn) *outn = ptn;
  }
  return rc;
}

/* Seals msg with our layer and has OpenSSL's client read it. */
static void server_send(pair_t *p, const uint8_t *msg, size_t n) {
  uint8_t rec[UE_D12_REC_MAX], got[UE_D12_PLAIN_MAX];
  size_t rl = 0;
  assert_int_equal(ue_d12_seal(&p->x, &p->r, UE_D12_APP, msg, n, rec, &rl), M5_OK);
  assert_int_equal(ue_d12_record_len(rec, rl), rl);
  assert_int_equal(BIO_write(p->c_in, rec, (int)rl), (int)rl);
  int r = SSL_read(p->c, got, sizeof got);
  assert_int_equal(r, (int)n);
  assert_memory_equal(got, msg, n);
}

static void fill(uint8_t *b, size_t n, unsigned seed) {
  for (size_t i = 0; i < n; i++)
    b[i] = (uint8_t)(seed * 31u + i * 7u);
}

static void run_suite(const char *suite, int aead) {
  pair_t p;
  pair_up(&p, suite, aead);
  uint8_t rec[UE_D12_REC_MAX], got[UE_D12_PLAIN_MAX], msg[1300];
  size_t n, gn;

  /* Ours continue after OpenSSL's records: its client accepts our first one (a reused
   * sequence number would be dropped as a replay), and GCM / CCM explicit nonces go on from
   * OpenSSL's last. */
  fill(msg, 100, 1);
  size_t rl = 0;
  assert_int_equal(ue_d12_seal(&p.x, &p.r, UE_D12_APP, msg, 100, rec, &rl), M5_OK);
  assert_int_equal(rec[3] << 8 | rec[4], 1);
  assert_int_equal(rec[10], 4);
  if (aead != UE_D12_CHACHA20) {
    uint64_t last = 0, ours = 0;
    for (int i = 0; i < 8; i++) {
      last = last << 8 | p.last_openssl_nonce[i];
      ours = ours << 8 | rec[UE_D12_HDR + i];
    }
    assert_true(ours == last + 1);
  }
  assert_int_equal(BIO_write(p.c_in, rec, (int)rl), (int)rl);
  assert_int_equal(SSL_read(p.c, got, sizeof got), 100);
  assert_memory_equal(got, msg, 100);

  /* Client -> us, in order. */
  fill(msg, 200, 2);
  n = client_write(&p, msg, 200, rec, sizeof rec);
  assert_int_equal(open_copy(&p, rec, n, got, &gn), UE_D12_OK);
  assert_int_equal(rec[0], UE_D12_APP);
  assert_int_equal(gn, 200);
  assert_memory_equal(got, msg, 200);

  /* Replay: the same record again is dropped. */
  assert_int_equal(open_copy(&p, rec, n, NULL, NULL), UE_D12_DROP);
  /* The client's Finished (sequence number 0) counts as seen. */
  uint8_t fin[UE_D12_REC_MAX];
  memcpy(fin, rec, n);
  memset(fin + 5, 0, 6);
  assert_int_equal(open_copy(&p, fin, n, NULL, NULL), UE_D12_DROP);

  /* Reordered: five records opened as 3, 1, 2, 5, 4; each once. */
  uint8_t five[5][128];
  size_t fl[5];
  for (int i = 0; i < 5; i++) {
    fill(msg, 10, 10u + (unsigned)i);
    fl[i] = client_write(&p, msg, 10, five[i], sizeof five[i]);
  }
  static const int order[] = {2, 0, 1, 4, 3};
  for (int k = 0; k < 5; k++) {
    int i = order[k];
    assert_int_equal(open_copy(&p, five[i], fl[i], got, &gn), UE_D12_OK);
    fill(msg, 10, 10u + (unsigned)i);
    assert_int_equal(gn, 10);
    assert_memory_equal(got, msg, 10);
  }
  for (int i = 0; i < 5; i++)
    assert_int_equal(open_copy(&p, five[i], fl[i], NULL, NULL), UE_D12_DROP);

  /* Too old: a record held back while 70 newer ones arrive has left the window; one 63
   * behind the right edge has not. */
  uint8_t old[128], edge[128];
  size_t ol = client_write(&p, "old", 3, old, sizeof old), el = 0;
  for (int i = 0; i < 70; i++) {
    n = client_write(&p, "newer", 5, rec, sizeof rec);
    if (i == 6) { /* 63 behind the last of the 70 */
      memcpy(edge, rec, n);
      el = n;
      continue;
    }
    assert_int_equal(open_copy(&p, rec, n, NULL, NULL), UE_D12_OK);
  }
  assert_int_equal(open_copy(&p, old, ol, NULL, NULL), UE_D12_DROP);
  assert_int_equal(open_copy(&p, edge, el, got, &gn), UE_D12_OK);
  assert_int_equal(gn, 5);

  /* Tampered: a bit flipped in the type, the version, the epoch, the sequence number, the
   * explicit nonce, the ciphertext or the tag: dropped, and the window unchanged (the
   * genuine record still opens afterwards). */
  fill(msg, 50, 3);
  n = client_write(&p, msg, 50, rec, sizeof rec);
  size_t spots[] = {0, 2, 4, 10, UE_D12_HDR, UE_D12_HDR + 9, n - 1};
  for (size_t k = 0; k < sizeof spots / sizeof spots[0]; k++) {
    uint8_t bad[128];
    memcpy(bad, rec, n);
    bad[spots[k]] ^= 0x04;
    assert_int_equal(open_copy(&p, bad, n, NULL, NULL), UE_D12_DROP);
  }
  /* A sequence number far ahead that does not authenticate does not move the window. */
  uint8_t ahead[128];
  memcpy(ahead, rec, n);
  ahead[5] ^= 0x80;
  assert_int_equal(open_copy(&p, ahead, n, NULL, NULL), UE_D12_DROP);
  assert_int_equal(open_copy(&p, rec, n, got, &gn), UE_D12_OK);
  assert_memory_equal(got, msg, 50);
  /* Too short for the nonce and tag. */
  uint8_t shorty[UE_D12_HDR + 4];
  memcpy(shorty, rec, UE_D12_HDR);
  shorty[11] = 0, shorty[12] = 4;
  assert_int_equal(open_copy(&p, shorty, sizeof shorty, NULL, NULL), UE_D12_DROP);

  /* A long run both ways, sizes 0..1299. */
  for (unsigned i = 0; i < 3000; i++) {
    size_t len = (i * 37u) % 1300u;
    fill(msg, len, i);
    if (len) {
      n = client_write(&p, msg, len, rec, sizeof rec);
      assert_int_equal(open_copy(&p, rec, n, got, &gn), UE_D12_OK);
      assert_int_equal(gn, len);
      assert_memory_equal(got, msg, len);
      server_send(&p, msg, len);
    }
  }
  /* A full-size record. */
  static uint8_t big[UE_D12_PLAIN_MAX];
  fill(big, sizeof big, 9);
  server_send(&p, big, sizeof big);
  assert_int_equal(ue_d12_seal(&p.x, &p.r, UE_D12_APP, big, sizeof big + 1, rec, &rl), M5_EINVAL);

  /* The client's close_notify is an alert record here. */
  SSL_shutdown(p.c);
  n = client_record(&p, rec, sizeof rec);
  assert_int_equal(open_copy(&p, rec, n, got, &gn), UE_D12_OK);
  assert_int_equal(rec[0], UE_D12_ALERT);
  assert_int_equal(gn, 2);
  assert_int_equal(got[0], 1);
  assert_int_equal(got[1], 0);

  /* The last sequence number is used, then none: the caller must end the session. */
  pair_t q;
  pair_up(&q, suite, aead);
  q.r.tx.seq = UE_D12_SEQ_LAST;
  server_send(&q, (const uint8_t *)"last", 4);
  assert_int_equal(ue_d12_seal(&q.x, &q.r, UE_D12_APP, (const uint8_t *)"x", 1, rec, &rl),
                   M5_EFULL);
  /* Our fatal alert ends the client's session. */
  pair_t a;
  pair_up(&a, suite, aead);
  const uint8_t alert[2] = {2, 10 /* unexpected_message */};
  assert_int_equal(ue_d12_seal(&a.x, &a.r, UE_D12_ALERT, alert, 2, rec, &rl), M5_OK);
  assert_int_equal(BIO_write(a.c_in, rec, (int)rl), (int)rl);
  int r = SSL_read(a.c, got, sizeof got);
  assert_true(r <= 0);
  assert_int_equal(SSL_get_error(a.c, r), SSL_ERROR_SSL);
  ERR_clear_error();

  /* At the end the worker's cipher context lets go of the session's key. */
  assert_ptr_equal(p.x.key[aead], &p.r);
  ue_d12_forget(&p.x, &q.r); /* another session: nothing to do */
  assert_ptr_equal(p.x.key[aead], &p.r);
  ue_d12_forget(&p.x, &p.r);
  assert_null(p.x.key[aead]);
  server_send(&p, (const uint8_t *)"after", 5); /* the context is re-keyed per record */

  /* Wiped means zero. */
  ue_d12_wipe(&p.r);
  static const ue_d12_t zero;
  assert_memory_equal(&p.r, &zero, sizeof zero);
  pair_free(&p);
  pair_free(&q);
  pair_free(&a);
}

static void test_gcm(void **state) {
  (void)state;
  run_suite("PSK-AES128-GCM-SHA256", UE_D12_AES128_GCM);
}

static void test_ccm8(void **state) {
  (void)state;
  run_suite("PSK-AES128-CCM8", UE_D12_AES128_CCM8);
}

static void test_chacha20(void **state) {
  (void)state;
  run_suite("ECDHE-PSK-CHACHA20-POLY1305", UE_D12_CHACHA20);
}

/* A suite that is not ours is refused (the session keeps OpenSSL). */
static void test_other_suite(void **state) {
  (void)state;
  ue_d12_ctx_t x;
  ue_d12_t r;
  memset(&r, 0, sizeof r);
  uint8_t m[48] = {0}, cr[32] = {0}, sr[32] = {0};
  assert_int_equal(ue_d12_ctx_init(&x), M5_OK);
  r.tx_seen = 1;
  assert_int_equal(ue_d12_start_keys(&x, &r, UE_D12_NONE, m, cr, sr), M5_EINVAL);
  r.tx_seen = 0; /* no record of OpenSSL's seen: where our sequence numbers start is unknown */
  assert_int_equal(ue_d12_start_keys(&x, &r, UE_D12_AES128_GCM, m, cr, sr), M5_EINVAL);
  uint8_t rec[64] = {23, 0xfe, 0xfd, 0, 1};
  uint8_t *pt;
  size_t ptn;
  assert_int_equal(ue_d12_open(&x, &r, rec, UE_D12_HDR, &pt, &ptn), UE_D12_DROP);
  ue_d12_ctx_free(&x);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_gcm),
      cmocka_unit_test(test_ccm8),
      cmocka_unit_test(test_chacha20),
      cmocka_unit_test(test_other_suite),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
