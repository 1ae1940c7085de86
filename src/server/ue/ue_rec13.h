/* The TLS 1.3 record layer of an established MSGin5G-1 session over TCP, once OpenSSL's SSL
 * object is gone (ue_rec13.c says why): record protection with TLS_AES_128_GCM_SHA256
 * (RFC 8446 §5.2-§5.3), traffic keys from the application traffic secrets (§7.1, §7.3), and
 * the only post-handshake message a client may send us, KeyUpdate (§4.6.3). */
#ifndef M5_SERVER_UE_REC13_H
#define M5_SERVER_UE_REC13_H

#include "core/buf.h"

#include <openssl/evp.h>
#include <stddef.h>
#include <stdint.h>

#define UE_REC13_HDR 5
#define UE_REC13_TAG 16
#define UE_REC13_PLAIN_MAX 16384u           /* 2^14 (§5.1) */
#define UE_REC13_CIPHER_MAX (16384u + 256u) /* TLSCiphertext.length limit (§5.2) */
#define UE_REC13_SECRET 32                  /* SHA-256 */

/* Alert descriptions (§6). */
enum {
  UE_ALERT_CLOSE_NOTIFY = 0,
  UE_ALERT_UNEXPECTED_MESSAGE = 10,
  UE_ALERT_BAD_RECORD_MAC = 20,
  UE_ALERT_RECORD_OVERFLOW = 22,
  UE_ALERT_ILLEGAL_PARAMETER = 47,
  UE_ALERT_DECODE_ERROR = 50,
  UE_ALERT_INTERNAL_ERROR = 80,
  UE_ALERT_USER_CANCELED = 90,
};

/* Content types (§5.1). */
enum { UE_CT_ALERT = 21, UE_CT_HANDSHAKE = 22, UE_CT_APP = 23 };

/* One direction: 16 + 12 + 32 + 8 bytes. */
typedef struct {
  uint8_t key[16], iv[12];
  uint8_t secret[UE_REC13_SECRET]; /* kept for the next KeyUpdate */
  uint64_t seq;
} ue_rec13_dir_t;

/* What an idle session holds: keys, ivs, secrets, sequence numbers, and at most the first
 * bytes of a KeyUpdate split across records. */
typedef struct {
  ue_rec13_dir_t rx, tx; /* client -> server, server -> client */
  uint8_t got;           /* keylog: 1 = client secret, 2 = server secret */
  uint8_t hs_len;        /* bytes of a post-handshake message seen so far */
  uint8_t hs[5];         /* KeyUpdate: type, uint24 length, request_update */
} ue_rec13_t;

/* Takes a TLS 1.3 key log line (SSL_CTX_set_keylog_callback): CLIENT_TRAFFIC_SECRET_0 and
 * SERVER_TRAFFIC_SECRET_0 of SHA-256 size are kept in binary, anything else is ignored. */
void ue_rec13_keylog(ue_rec13_t *r, const char *line);
/* A worker's crypto, shared by its sessions: AES-128-GCM re-keyed per record (sessions hold
 * no cipher state) and HMAC-SHA256 for the key schedule. M5_OK or M5_ENOMEM. */
typedef struct {
  EVP_CIPHER_CTX *cx;
  EVP_MAC *hmac;
} ue_rec13_ctx_t;
int ue_rec13_ctx_init(ue_rec13_ctx_t *x);
void ue_rec13_ctx_free(ue_rec13_ctx_t *x);

/* Both secrets were captured: derives the keys and ivs; M5_OK, else M5_EINVAL / M5_ENOMEM
 * (the caller keeps OpenSSL then). */
int ue_rec13_start(const ue_rec13_ctx_t *x, ue_rec13_t *r);
/* Wipes everything (OPENSSL_cleanse). */
void ue_rec13_wipe(ue_rec13_t *r);

/* Appends one record of inner type ct carrying p[0..n) (n <= UE_REC13_PLAIN_MAX) to out.
 * M5_OK; M5_ERANGE / M5_ENOMEM (out full); M5_EFULL when the sequence number would wrap
 * (the caller closes: §5.3); M5_ECRYPTO on a cipher failure. */
int ue_rec13_seal(const ue_rec13_ctx_t *x, ue_rec13_t *r, uint8_t ct, const uint8_t *p, size_t n,
                  m5_buf_t *out);
/* Removes the protection of the complete record rec[0..len) (header included) in place:
 * 0 with *ct, *pt, *ptlen set (padding stripped), or the alert to send. */
int ue_rec13_open(const ue_rec13_ctx_t *x, ue_rec13_t *r, uint8_t *rec, size_t len, uint8_t *ct,
                  uint8_t **pt, size_t *ptlen);
/* The plaintext of a handshake record: 0 with *respond = 1 when the peer asked for our own
 * KeyUpdate (send it with ue_rec13_key_update, then it is done), or the alert to send. Only
 * KeyUpdate is accepted; the client's keys are updated here. */
int ue_rec13_handshake(const ue_rec13_ctx_t *x, ue_rec13_t *r, const uint8_t *p, size_t n,
                       int *respond);
/* Records m5s seals under one key before it updates its own (RFC 8446 §5.5). */
#define UE_REC13_TX_RECORDS_PER_KEY (1ull << 24)
/* Seals our KeyUpdate (update_not_requested) with the current keys, then moves ours on. */
int ue_rec13_key_update(const ue_rec13_ctx_t *x, ue_rec13_t *r, m5_buf_t *out);

#endif
