/* The TLS 1.3 record layer of an established UE session over TCP (RFC 8446 §5, §7.3, §4.6.3),
 * used by ue_tls.c once the AKMA handshake is done and OpenSSL's SSL object is freed.
 *
 * Why by hand: memory per idle device. OpenSSL keeps about 13.8 KiB per idle TLS connection
 * even with SSL_MODE_RELEASE_BUFFERS (the SSL, its SSL_SESSION, the record layer's cipher and
 * hash contexts, the memory BIOs), which alone is more than the 12 KiB a whole idle UE may cost
 * (docs/benchmarks.md). No well-kept library offers an OpenSSL-compatible TLS 1.3 record layer
 * that runs without the SSL object it came from. Kernel TLS (kTLS) is not used: it would move
 * the record state into kernel memory, which RSS does not show, and the issue compares memory
 * in RSS with neither side using kTLS (it also needs the tls module). What is left is small:
 * AES-128-GCM with a per-record nonce, the content type inside the record, KeyUpdate, alerts. A
 * session holds 152 bytes of keys, ivs, secrets and sequence numbers; the cipher context (and the
 * HMAC of the key schedule) belongs to the worker, and the cipher is re-keyed per record.
 *
 * Only TLS_AES_128_GCM_SHA256 is done here (the suite our server prefers); another negotiated
 * suite keeps OpenSSL's record layer (ue_tls.c). The traffic secrets come from OpenSSL's key
 * log callback (the only public way to get them), kept in binary; OpenSSL wipes its text. */
#include "server/ue/ue_rec13.h"

#include <stdio.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/params.h>

#include "core/err.h"

#define KEY_LEN 16
#define IV_LEN 12

static int hexval(int ch) {
  if (ch >= '0' && ch <= '9') return ch - '0';
  if (ch >= 'a' && ch <= 'f') return ch - 'a' + 10;
  if (ch >= 'A' && ch <= 'F') return ch - 'A' + 10;
  return -1;
}

void ue_rec13_keylog(ue_rec13_t *r, const char *line) {
  static const char cl[] = "CLIENT_TRAFFIC_SECRET_0 ", sl[] = "SERVER_TRAFFIC_SECRET_0 ";
  uint8_t *dst;
  uint8_t bit;
  if (strncmp(line, cl, sizeof cl - 1) == 0) {
    dst = r->rx.secret;
    bit = 1;
  } else if (strncmp(line, sl, sizeof sl - 1) == 0) {
    dst = r->tx.secret;
    bit = 2;
  } else {
    return;
  }
  const char *p = strchr(line + sizeof cl - 1, ' ');      /* after the client random */
  if (!p || strlen(p + 1) != 2 * UE_REC13_SECRET) return; /* not SHA-256: not ours */
  p++;
  for (size_t i = 0; i < UE_REC13_SECRET; i++) {
    int hi = hexval(p[2 * i]), lo = hexval(p[2 * i + 1]);
    if (hi < 0 || lo < 0) {
      OPENSSL_cleanse(dst, UE_REC13_SECRET);
      r->got = (uint8_t)(r->got & ~bit);
      return;
    }
    dst[i] = (uint8_t)(hi << 4 | lo);
  }
  r->got |= bit;
}

/* HKDF-Expand-Label(secret, label[i], "", len[i]) with SHA-256 (§7.1) for n labels, len <= 32:
 * one HMAC block each, T(1) = HMAC(secret, HkdfLabel || 0x01) (RFC 5869 §2.3), one HMAC
 * context keyed once and freed (wiped) at the end. */
static int expand_labels(const ue_rec13_ctx_t *x, const uint8_t *secret, const char *const *label,
                         uint8_t *const *out, const size_t *len, size_t n) {
  EVP_MAC_CTX *m = EVP_MAC_CTX_new(x->hmac);
  if (!m) return M5_ENOMEM;
  OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string("digest", (char *)"SHA256", 0),
                         OSSL_PARAM_construct_end()};
  uint8_t info[2 + 1 + 6 + 32 + 1 + 1], mac[32];
  int rc = M5_OK;
  for (size_t i = 0; i < n && rc == M5_OK; i++) {
    size_t ll = strlen(label[i]), k = 0, maclen = 0;
    if (len[i] > sizeof mac || ll > 32) {
      rc = M5_EINVAL;
      break;
    }
    info[k++] = (uint8_t)(len[i] >> 8);
    info[k++] = (uint8_t)len[i];
    info[k++] = (uint8_t)(6 + ll);
    memcpy(info + k, "tls13 ", 6);
    k += 6;
    memcpy(info + k, label[i], ll);
    k += ll;
    info[k++] = 0; /* empty context */
    info[k++] = 1; /* the block counter */
    /* The first init sets the key; the next ones start over with it (key NULL). */
    if (!EVP_MAC_init(m, i ? NULL : secret, i ? 0 : UE_REC13_SECRET, i ? NULL : params) ||
        !EVP_MAC_update(m, info, k) || !EVP_MAC_final(m, mac, &maclen, sizeof mac) ||
        maclen != sizeof mac) {
      rc = M5_ECRYPTO;
      break;
    }
    memcpy(out[i], mac, len[i]);
  }
  OPENSSL_cleanse(mac, sizeof mac);
  EVP_MAC_CTX_free(m); /* frees the keyed state, wiped by OpenSSL */
  return rc;
}

/* The key and iv of one direction from its secret (§7.3); a new sequence of records. */
static int dir_keys(const ue_rec13_ctx_t *x, ue_rec13_dir_t *d) {
  static const char *const labels[] = {"key", "iv"};
  uint8_t *const outs[] = {d->key, d->iv};
  static const size_t lens[] = {KEY_LEN, IV_LEN};
  d->seq = 0;
  return expand_labels(x, d->secret, labels, outs, lens, 2);
}

/* application_traffic_secret_N+1 = HKDF-Expand-Label(secret_N, "traffic upd", "", 32). */
static int dir_update(const ue_rec13_ctx_t *x, ue_rec13_dir_t *d) {
  static const char *const labels[] = {"traffic upd"};
  static const size_t lens[] = {UE_REC13_SECRET};
  uint8_t next[UE_REC13_SECRET];
  uint8_t *const outs[] = {next};
  int rc = expand_labels(x, d->secret, labels, outs, lens, 1);
  if (rc == M5_OK) memcpy(d->secret, next, sizeof next);
  OPENSSL_cleanse(next, sizeof next);
  return rc == M5_OK ? dir_keys(x, d) : rc;
}

int ue_rec13_start(const ue_rec13_ctx_t *x, ue_rec13_t *r) {
  if (r->got != 3) return M5_EINVAL;
  if (dir_keys(x, &r->rx) != M5_OK || dir_keys(x, &r->tx) != M5_OK) return M5_ECRYPTO;
  r->hs_len = 0;
  return M5_OK;
}

void ue_rec13_wipe(ue_rec13_t *r) {
  OPENSSL_cleanse(r, sizeof *r);
}

int ue_rec13_ctx_init(ue_rec13_ctx_t *x) {
  x->cx = EVP_CIPHER_CTX_new();
  x->hmac = EVP_MAC_fetch(NULL, "HMAC", NULL);
  EVP_CIPHER *gcm = EVP_CIPHER_fetch(NULL, "AES-128-GCM", NULL);
  /* The cipher is bound once; each record only sets key and nonce. */
  int ok = x->cx && x->hmac && gcm && EVP_CipherInit_ex(x->cx, gcm, NULL, NULL, NULL, 1);
  EVP_CIPHER_free(gcm); /* the context holds its own reference */
  if (!ok) {
    ue_rec13_ctx_free(x);
    return M5_ENOMEM;
  }
  return M5_OK;
}

void ue_rec13_ctx_free(ue_rec13_ctx_t *x) {
  EVP_CIPHER_CTX_free(x->cx);
  EVP_MAC_free(x->hmac);
  x->cx = NULL;
  x->hmac = NULL;
}

/* The per-record nonce: the iv XOR the 64-bit sequence number, left-padded (§5.3). */
static void nonce(const ue_rec13_dir_t *d, uint8_t out[IV_LEN]) {
  memcpy(out, d->iv, IV_LEN);
  for (int i = 0; i < 8; i++)
    out[IV_LEN - 1 - i] ^= (uint8_t)(d->seq >> (8 * i));
}

/* The worker's cipher context is keyed per record: it is given a zero key again after each
 * one, so no session's key stays in it once the record is done (a session's own keys are
 * wiped when it ends; this copy would otherwise wait for the next record on the worker). */
static void forget_key(const ue_rec13_ctx_t *x) {
  static const uint8_t zero[KEY_LEN];
  (void)EVP_CipherInit_ex(x->cx, NULL, NULL, zero, NULL, -1);
}

int ue_rec13_seal(const ue_rec13_ctx_t *x, ue_rec13_t *r, uint8_t ct, const uint8_t *p, size_t n,
                  m5_buf_t *out) {
  if (n > UE_REC13_PLAIN_MAX) return M5_EINVAL;
  if (r->tx.seq == UINT64_MAX) return M5_EFULL;
  size_t body = n + 1 + UE_REC13_TAG, start = out->len;
  /* opaque_type application_data, legacy_record_version 0x0303 (§5.2) */
  const uint8_t hdr[UE_REC13_HDR] = {UE_CT_APP, 3, 3, (uint8_t)(body >> 8), (uint8_t)body};
  static const uint8_t zero_tag[UE_REC13_TAG];
  int rc = m5_buf_append(out, hdr, sizeof hdr);
  if (rc == M5_OK) rc = m5_buf_append(out, p, n);
  if (rc == M5_OK) rc = m5_buf_append(out, &ct, 1);
  if (rc == M5_OK) rc = m5_buf_append(out, zero_tag, sizeof zero_tag);
  if (rc != M5_OK) {
    out->len = start;
    return rc;
  }
  uint8_t *rec = out->data + start, iv[IV_LEN];
  int l1 = 0, l2 = 0, l3 = 0;
  nonce(&r->tx, iv);
  /* In place: the plaintext and the content type, then the tag behind them. */
  int ok =
      EVP_CipherInit_ex(x->cx, NULL, NULL, r->tx.key, iv, 1) &&
      EVP_CipherUpdate(x->cx, NULL, &l1, rec, UE_REC13_HDR) &&
      EVP_CipherUpdate(x->cx, rec + UE_REC13_HDR, &l2, rec + UE_REC13_HDR, (int)(n + 1)) &&
      EVP_CipherFinal_ex(x->cx, rec + UE_REC13_HDR + l2, &l3) &&
      EVP_CIPHER_CTX_ctrl(x->cx, EVP_CTRL_AEAD_GET_TAG, UE_REC13_TAG, rec + UE_REC13_HDR + n + 1);
  forget_key(x);
  if (!ok || (size_t)(l2 + l3) != n + 1) {
    out->len = start;
    return M5_ECRYPTO;
  }
  r->tx.seq++;
  return M5_OK;
}

int ue_rec13_open(const ue_rec13_ctx_t *x, ue_rec13_t *r, uint8_t *rec, size_t len, uint8_t *ct,
                  uint8_t **pt, size_t *ptlen) {
  size_t body = len - UE_REC13_HDR;
  /* After the handshake every record is protected: a plaintext alert, handshake or
   * change_cipher_spec record is out of place (§5, §5.1). */
  if (rec[0] != UE_CT_APP) return UE_ALERT_UNEXPECTED_MESSAGE;
  if (body > UE_REC13_CIPHER_MAX) return UE_ALERT_RECORD_OVERFLOW;
  if (body < UE_REC13_TAG + 1) return UE_ALERT_DECODE_ERROR;   /* no room for a content type */
  if (r->rx.seq == UINT64_MAX) return UE_ALERT_INTERNAL_ERROR; /* never: 2^64 records */
  size_t n = body - UE_REC13_TAG;
  uint8_t iv[IV_LEN], *data = rec + UE_REC13_HDR;
  int l1 = 0, l2 = 0, l3 = 0;
  nonce(&r->rx, iv);
  int ok = EVP_CipherInit_ex(x->cx, NULL, NULL, r->rx.key, iv, 0) &&
           EVP_CIPHER_CTX_ctrl(x->cx, EVP_CTRL_AEAD_SET_TAG, UE_REC13_TAG, data + n) &&
           EVP_CipherUpdate(x->cx, NULL, &l1, rec, UE_REC13_HDR) &&
           EVP_CipherUpdate(x->cx, data, &l2, data, (int)n) &&
           EVP_CipherFinal_ex(x->cx, data + l2, &l3) > 0;
  forget_key(x);
  if (!ok || (size_t)(l2 + l3) != n) return UE_ALERT_BAD_RECORD_MAC;
  r->rx.seq++;
  /* TLSInnerPlaintext: content, the type, zero padding (§5.2, §5.4). */
  while (n > 0 && data[n - 1] == 0)
    n--;
  if (n == 0) return UE_ALERT_UNEXPECTED_MESSAGE; /* no non-zero octet */
  n--;
  if (n > UE_REC13_PLAIN_MAX) return UE_ALERT_RECORD_OVERFLOW;
  *ct = data[n];
  *pt = data;
  *ptlen = n;
  return 0;
}

int ue_rec13_handshake(const ue_rec13_ctx_t *x, ue_rec13_t *r, const uint8_t *p, size_t n,
                       int *respond) {
  *respond = 0;
  /* "Implementations MUST NOT send zero-length fragments of Handshake types" (§5.1). */
  if (n == 0) return UE_ALERT_UNEXPECTED_MESSAGE;
  for (size_t i = 0; i < n; i++) {
    r->hs[r->hs_len++] = p[i];
    if (r->hs_len == 1 && r->hs[0] != 24 /* key_update */) return UE_ALERT_UNEXPECTED_MESSAGE;
    if (r->hs_len == 4 && (r->hs[1] || r->hs[2] || r->hs[3] != 1)) return UE_ALERT_DECODE_ERROR;
    if (r->hs_len < 5) continue;
    uint8_t req = r->hs[4];
    r->hs_len = 0;
    if (req > 1) return UE_ALERT_ILLEGAL_PARAMETER; /* §4.6.3 */
    /* The key changes here: nothing may follow in this record (§5.1). */
    if (i + 1 != n) return UE_ALERT_UNEXPECTED_MESSAGE;
    if (dir_update(x, &r->rx) != M5_OK) return UE_ALERT_INTERNAL_ERROR;
    *respond = req;
  }
  return 0;
}

int ue_rec13_key_update(const ue_rec13_ctx_t *x, ue_rec13_t *r, m5_buf_t *out) {
  static const uint8_t ku[] = {24, 0, 0, 1, 0 /* update_not_requested */};
  int rc = ue_rec13_seal(x, r, UE_CT_HANDSHAKE, ku, sizeof ku, out);
  if (rc == M5_OK) rc = dir_update(x, &r->tx);
  return rc;
}
