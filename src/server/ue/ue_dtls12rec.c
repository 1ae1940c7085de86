/* The DTLS 1.2 record layer of an established UE session over UDP (RFC 6347 §4.1, RFC 5246
 * §6.2.3.3, §6.3), used by ue_dtls.c once the AKMA handshake is done and the client has shown
 * that it has our last flight; OpenSSL's SSL object is then freed.
 *
 * Why by hand: memory per idle device. OpenSSL keeps 40+ KiB per idle DTLS 1.2 association
 * even with its record buffers released between datagrams: the handshake buffer (init_buf,
 * 21.8 KiB, "in case there are any unexpected retransmits"), the last flight kept for
 * retransmission with the epoch-0 write state, the SSL and its session (docs/benchmarks.md,
 * "Idle devices"). It cannot rebuild an association from saved keys, and no well-kept library
 * offers a DTLS 1.2 record layer that runs without the SSL object it came from. What is left
 * after the handshake is small: one AEAD per suite, a 13-byte header, epoch 1, 48-bit
 * sequence numbers, a 64-record replay window. A session holds 144 bytes of keys, salts,
 * sequence numbers and window; the cipher contexts belong to the worker and are re-keyed per
 * record (as ue_rec13.c does for TLS 1.3).
 *
 * The suites are the three m5s offers UEs over DTLS (tls/akma.c); the key block is the TLS 1.2
 * PRF (SHA-256 for all three) of the master secret, which OpenSSL 3.0 exposes
 * (SSL_SESSION_get_master_key), over the two randoms. Nonces:
 *  - AES-128-GCM (RFC 5288 §3) and AES-128-CCM_8 (RFC 6655 §3): the 4-byte salt of the key
 *    block and an 8-byte explicit nonce carried in the record. OpenSSL's GCM starts its explicit
 *    nonces at a random value and counts up, its CCM uses the sequence number; ours go on
 *    counting from the last one OpenSSL sent in the session, so no nonce repeats under a key.
 *  - ChaCha20-Poly1305 (RFC 7905 §2): the 12-byte IV XOR the 64-bit epoch||sequence number.
 * The additional data is epoch||seq, type, version and the plaintext's length. */
#include "server/ue/ue_dtls12rec.h"

#include <string.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/kdf.h>
#include <openssl/params.h>
#include <openssl/tls1.h>

#include "core/err.h"

#define EPOCH 1
#define MASTER_LEN 48
#define RANDOM_LEN 32
#define EXPLICIT_LEN 8

static const struct {
  const char *cipher;
  size_t key, iv, explicit_len, tag;
} aeads[4] = {
    [UE_D12_AES128_GCM] = {"AES-128-GCM", 16, 4, EXPLICIT_LEN, 16},
    [UE_D12_AES128_CCM8] = {"AES-128-CCM", 16, 4, EXPLICIT_LEN, 8},
    [UE_D12_CHACHA20] = {"ChaCha20-Poly1305", 32, 12, 0, 16},
};

static uint64_t get48(const uint8_t *p) {
  uint64_t v = 0;
  for (int i = 0; i < 6; i++)
    v = v << 8 | p[i];
  return v;
}

static uint64_t get64(const uint8_t *p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; i++)
    v = v << 8 | p[i];
  return v;
}

static void put64(uint8_t *p, uint64_t v) {
  for (int i = 7; i >= 0; i--, v >>= 8)
    p[i] = (uint8_t)v;
}

/* ---- the worker's crypto ---- */

int ue_d12_ctx_init(ue_d12_ctx_t *x) {
  memset(x, 0, sizeof *x);
  int ok = (x->prf = EVP_KDF_fetch(NULL, OSSL_KDF_NAME_TLS1_PRF, NULL)) != NULL;
  for (int a = UE_D12_AES128_GCM; ok && a <= UE_D12_CHACHA20; a++) {
    EVP_CIPHER *c = EVP_CIPHER_fetch(NULL, aeads[a].cipher, NULL);
    x->cx[a] = EVP_CIPHER_CTX_new();
    /* Bound once; a record sets key and nonce only. CCM's tag length and nonce length are
     * part of its key setup, so they come first (RFC 6655: 8-byte tag, 12-byte nonce). */
    ok = c && x->cx[a] && EVP_CipherInit_ex(x->cx[a], c, NULL, NULL, NULL, 1) &&
         EVP_CIPHER_CTX_ctrl(x->cx[a], EVP_CTRL_AEAD_SET_IVLEN, 12, NULL) > 0 &&
         (a != UE_D12_AES128_CCM8 ||
          EVP_CIPHER_CTX_ctrl(x->cx[a], EVP_CTRL_AEAD_SET_TAG, 8, NULL) > 0);
    EVP_CIPHER_free(c); /* the context holds its own reference */
  }
  if (!ok) {
    ue_d12_ctx_free(x);
    return M5_ENOMEM;
  }
  return M5_OK;
}

void ue_d12_ctx_free(ue_d12_ctx_t *x) {
  for (int a = 0; a < 4; a++)
    EVP_CIPHER_CTX_free(x->cx[a]);
  EVP_KDF_free(x->prf);
  memset(x, 0, sizeof *x);
}

/* ---- keys ---- */

int ue_d12_suite(const SSL *ssl) {
  const SSL_CIPHER *c = SSL_get_current_cipher(ssl);
  if (SSL_version(ssl) != DTLS1_2_VERSION || !c) return UE_D12_NONE;
  switch (SSL_CIPHER_get_id(c)) {
  case TLS1_CK_PSK_WITH_AES_128_GCM_SHA256:
    return UE_D12_AES128_GCM;
  case TLS1_CK_PSK_WITH_AES_128_CCM_8:
    return UE_D12_AES128_CCM8;
  case TLS1_CK_ECDHE_PSK_WITH_CHACHA20_POLY1305:
    return UE_D12_CHACHA20;
  default:
    return UE_D12_NONE;
  }
}

void ue_d12_saw_tx(ue_d12_t *r, const uint8_t *p, size_t n) {
  for (size_t off = 0, rl; (rl = ue_d12_record_len(p + off, n - off)) != 0; off += rl) {
    const uint8_t *rec = p + off;
    if (rec[3] != 0 || rec[4] != EPOCH) continue;
    uint64_t seq = get48(rec + 5);
    if (r->tx_seen && seq < r->tx.seq) continue;
    r->tx.seq = seq + 1;
    r->tx_seen = 1;
    memset(r->tx_last_nonce, 0, sizeof r->tx_last_nonce);
    if (rl - UE_D12_HDR >= EXPLICIT_LEN) memcpy(r->tx_last_nonce, rec + UE_D12_HDR, EXPLICIT_LEN);
  }
}

int ue_d12_start_keys(ue_d12_ctx_t *x, ue_d12_t *r, int aead, const uint8_t master[48],
                      const uint8_t client_random[32], const uint8_t server_random[32]) {
  if (aead <= UE_D12_NONE || aead > UE_D12_CHACHA20 || !x->prf || !r->tx_seen) return M5_EINVAL;
  static const char label[] = "key expansion";
  uint8_t seed[sizeof label - 1 + 2 * RANDOM_LEN], block[2 * 32 + 2 * 12];
  memcpy(seed, label, sizeof label - 1);
  memcpy(seed + sizeof label - 1, server_random, RANDOM_LEN);
  memcpy(seed + sizeof label - 1 + RANDOM_LEN, client_random, RANDOM_LEN);
  size_t kl = aeads[aead].key, il = aeads[aead].iv, bl = 2 * kl + 2 * il;
  OSSL_PARAM params[] = {
      OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, (char *)"SHA256", 0),
      OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SECRET, (void *)master, MASTER_LEN),
      OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SEED, seed, sizeof seed),
      OSSL_PARAM_construct_end()};
  EVP_KDF_CTX *k = EVP_KDF_CTX_new(x->prf);
  int ok = k && EVP_KDF_derive(k, block, bl, params) > 0;
  EVP_KDF_CTX_free(k); /* wipes its copy of the secret */
  if (ok) {
    /* key_block: client_write_key, server_write_key, client_write_IV, server_write_IV (AEAD
     * suites have no MAC keys: RFC 5246 §6.3, RFC 5288 §3). The server reads with the
     * client's. */
    memcpy(r->rx.key, block, kl);
    memcpy(r->tx.key, block + kl, kl);
    memcpy(r->rx.iv, block + 2 * kl, il);
    memcpy(r->tx.iv, block + 2 * kl + il, il);
    r->aead = (uint8_t)aead;
    r->tx_explicit = get64(r->tx_last_nonce) + 1;
    /* The client's Finished was epoch 1, sequence number 0 (RFC 6347 §4.1). */
    r->rx.seq = 0;
    r->window = 1;
  }
  OPENSSL_cleanse(block, sizeof block);
  return ok ? M5_OK : M5_ECRYPTO;
}

int ue_d12_start(ue_d12_ctx_t *x, ue_d12_t *r, SSL *ssl) {
  int aead = ue_d12_suite(ssl);
  SSL_SESSION *sess = SSL_get_session(ssl);
  uint8_t master[MASTER_LEN], cr[RANDOM_LEN], sr[RANDOM_LEN];
  if (aead == UE_D12_NONE || !sess) return M5_EINVAL;
  int rc = M5_EINVAL;
  if (SSL_SESSION_get_master_key(sess, master, sizeof master) == sizeof master &&
      SSL_get_client_random(ssl, cr, sizeof cr) == sizeof cr &&
      SSL_get_server_random(ssl, sr, sizeof sr) == sizeof sr)
    rc = ue_d12_start_keys(x, r, aead, master, cr, sr);
  OPENSSL_cleanse(master, sizeof master);
  return rc;
}

void ue_d12_wipe(ue_d12_t *r) {
  OPENSSL_cleanse(r, sizeof *r);
}

/* ---- records ---- */

size_t ue_d12_record_len(const uint8_t *p, size_t n) {
  if (n < UE_D12_HDR) return 0;
  size_t rl = UE_D12_HDR + ((size_t)p[11] << 8 | p[12]);
  return rl <= n ? rl : 0;
}

/* The nonce of the record with epoch||seq es and (GCM/CCM) explicit part ex. */
static void nonce(const ue_d12_t *r, const ue_d12_dir_t *d, uint64_t es, const uint8_t *ex,
                  uint8_t out[12]) {
  if (aeads[r->aead].explicit_len) {
    memcpy(out, d->iv, 4);
    memcpy(out + 4, ex, EXPLICIT_LEN);
    return;
  }
  memcpy(out, d->iv, 12);
  for (int i = 0; i < 8; i++)
    out[11 - i] ^= (uint8_t)(es >> (8 * i));
}

static void aad(const uint8_t *hdr, size_t plain, uint8_t out[UE_D12_HDR]) {
  memcpy(out, hdr + 3, 8); /* epoch, sequence number */
  memcpy(out + 8, hdr, 3); /* type, version */
  out[11] = (uint8_t)(plain >> 8);
  out[12] = (uint8_t)plain;
}

/* A zero key for the worker's cipher context. Not after every record (ue_rec13.c does that):
 * a key setup is about a sixth of a small record's cost here; instead the context is cleared
 * when the session whose key it holds ends (ue_d12_forget), which gives the same guarantee:
 * no ended session's key stays in it. */
static void forget_key(EVP_CIPHER_CTX *cx) {
  static const uint8_t zero[32];
  (void)EVP_CipherInit_ex(cx, NULL, NULL, zero, NULL, -1);
}

void ue_d12_forget(ue_d12_ctx_t *x, const ue_d12_t *r) {
  for (int a = 1; a < 4; a++)
    if (x->key[a] == r && x->cx[a]) {
      forget_key(x->cx[a]);
      x->key[a] = NULL;
    }
}

/* AEAD in place over d[0..n) with the tag at tag (sealed: written; opened: checked). */
static int aead_run(ue_d12_ctx_t *x, const ue_d12_t *r, const uint8_t *key, const uint8_t iv[12],
                    const uint8_t a[UE_D12_HDR], uint8_t *d, size_t n, uint8_t *tag, int enc) {
  EVP_CIPHER_CTX *cx = x->cx[r->aead];
  x->key[r->aead] = r;
  int ccm = r->aead == UE_D12_AES128_CCM8, tl = (int)aeads[r->aead].tag, l = 0, l2 = 0;
  int ok = EVP_CipherInit_ex(cx, NULL, NULL, key, iv, enc) &&
           (enc || EVP_CIPHER_CTX_ctrl(cx, EVP_CTRL_AEAD_SET_TAG, tl, tag) > 0) &&
           (!ccm || EVP_CipherUpdate(cx, NULL, &l, NULL, (int)n)) && /* CCM: the length first */
           EVP_CipherUpdate(cx, NULL, &l, a, UE_D12_HDR) &&
           EVP_CipherUpdate(cx, d, &l, d, (int)n) > 0;
  /* CCM checks the tag in its one update; the others at the end. */
  if (ok && !(ccm && !enc)) ok = EVP_CipherFinal_ex(cx, d + l, &l2) > 0 && (size_t)(l + l2) == n;
  if (ok && enc) ok = EVP_CIPHER_CTX_ctrl(cx, EVP_CTRL_AEAD_GET_TAG, tl, tag) > 0;
  return ok;
}

int ue_d12_seal(ue_d12_ctx_t *x, ue_d12_t *r, uint8_t ct, const uint8_t *p, size_t n, uint8_t *out,
                size_t *outlen) {
  if (n > UE_D12_PLAIN_MAX || r->aead == UE_D12_NONE) return M5_EINVAL;
  if (r->tx.seq > UE_D12_SEQ_LAST) return M5_EFULL; /* never wrap (RFC 6347 §4.1) */
  size_t ex = aeads[r->aead].explicit_len, body = ex + n + aeads[r->aead].tag;
  uint64_t es = (uint64_t)EPOCH << 48 | r->tx.seq;
  out[0] = ct;
  out[1] = 0xfe, out[2] = 0xfd; /* DTLS 1.2 */
  put64(out + 3, es);
  out[11] = (uint8_t)(body >> 8);
  out[12] = (uint8_t)body;
  if (ex) put64(out + UE_D12_HDR, r->tx_explicit);
  uint8_t *d = out + UE_D12_HDR + ex, iv[12], a[UE_D12_HDR];
  memmove(d, p, n);
  nonce(r, &r->tx, es, out + UE_D12_HDR, iv);
  aad(out, n, a);
  if (!aead_run(x, r, r->tx.key, iv, a, d, n, d + n, 1)) return M5_ECRYPTO;
  r->tx.seq++;
  r->tx_explicit++;
  *outlen = UE_D12_HDR + body;
  return M5_OK;
}

int ue_d12_open(ue_d12_ctx_t *x, ue_d12_t *r, uint8_t *rec, size_t len, uint8_t **pt,
                size_t *ptlen) {
  if (r->aead == UE_D12_NONE || len < UE_D12_HDR || rec[1] != 0xfe || rec[2] != 0xfd ||
      rec[3] != 0 || rec[4] != EPOCH)
    return UE_D12_DROP;
  size_t ex = aeads[r->aead].explicit_len, tl = aeads[r->aead].tag, body = len - UE_D12_HDR;
  if (body < ex + tl || body > UE_D12_CIPHER_MAX) return UE_D12_DROP;
  /* RFC 6347 §4.1.2.6: newer than the right edge, or inside the window and not seen yet;
   * the window moves only for a record that authenticates. */
  uint64_t seq = get48(rec + 5), diff = 0;
  if (seq <= r->rx.seq) {
    diff = r->rx.seq - seq;
    if (diff >= 64 || (r->window >> diff & 1)) return UE_D12_DROP;
  }
  size_t n = body - ex - tl;
  uint8_t *d = rec + UE_D12_HDR + ex, iv[12], a[UE_D12_HDR];
  nonce(r, &r->rx, (uint64_t)EPOCH << 48 | seq, rec + UE_D12_HDR, iv);
  aad(rec, n, a);
  if (!aead_run(x, r, r->rx.key, iv, a, d, n, d + n, 0)) return UE_D12_DROP;
  if (seq > r->rx.seq) {
    uint64_t shift = seq - r->rx.seq;
    r->window = shift >= 64 ? 1 : (r->window << shift | 1);
    r->rx.seq = seq;
  } else {
    r->window |= UINT64_C(1) << diff;
  }
  *pt = d;
  *ptlen = n;
  return UE_D12_OK;
}
