/* The DTLS 1.2 record layer of an established MSGin5G-1 session over UDP once OpenSSL's SSL
 * object is gone (ue_dtls12rec.c says why): the AEAD record protection of RFC 6347 §4.1 with
 * RFC 5246 §6.2.3.3 for the suites m5s offers UEs (akma.c): PSK-AES128-GCM-SHA256 (RFC 5487,
 * 5288), PSK-AES128-CCM8 (RFC 6655) and ECDHE-PSK-CHACHA20-POLY1305 (RFC 7905); the record
 * keys from the master secret (RFC 5246 §6.3); 48-bit sequence numbers that never wrap; the
 * anti-replay window of RFC 6347 §4.1.2.6. */
#ifndef M5_SERVER_UE_DTLS12REC_H
#define M5_SERVER_UE_DTLS12REC_H

#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <stddef.h>
#include <stdint.h>

#define UE_D12_HDR 13                      /* type, version, epoch, seq, length */
#define UE_D12_PLAIN_MAX 16384u            /* 2^14 (RFC 5246 §6.2.1) */
#define UE_D12_CIPHER_MAX (16384u + 2048u) /* DTLSCiphertext.length limit */
#define UE_D12_OVERHEAD 24                 /* explicit nonce + tag, at most */
#define UE_D12_REC_MAX (UE_D12_HDR + UE_D12_PLAIN_MAX + UE_D12_OVERHEAD)
#define UE_D12_SEQ_LAST ((UINT64_C(1) << 48) - 1) /* the last sequence number */

/* Content types (RFC 5246 §6.2.1). */
enum { UE_D12_CCS = 20, UE_D12_ALERT = 21, UE_D12_HANDSHAKE = 22, UE_D12_APP = 23 };

/* The AEAD of a session; NONE: not ours (the session keeps OpenSSL). */
enum { UE_D12_NONE, UE_D12_AES128_GCM, UE_D12_AES128_CCM8, UE_D12_CHACHA20 };

/* One direction of epoch 1: key, write IV (GCM/CCM: the 4-byte salt; ChaCha20: 12 bytes). */
typedef struct {
  uint8_t key[32], iv[12];
  uint64_t seq; /* tx: the next to send; rx: the highest accepted (the window's right edge) */
} ue_d12_dir_t;

/* What an idle session holds (144 bytes). */
typedef struct {
  ue_d12_dir_t rx, tx;      /* client -> server, server -> client */
  uint64_t window;          /* rx: bit i set = rx.seq - i accepted */
  uint64_t tx_explicit;     /* GCM/CCM: the next explicit nonce */
  uint8_t aead;             /* UE_D12_*; NONE until ue_d12_start */
  uint8_t tx_seen;          /* an epoch-1 record of OpenSSL's was seen (ue_d12_saw_tx) */
  uint8_t tx_last_nonce[8]; /* the explicit nonce of OpenSSL's last epoch-1 record */
} ue_d12_t;

/* A worker's crypto, shared by its sessions: one cipher context per AEAD, re-keyed per record
 * (sessions hold no cipher state), and the TLS 1.2 PRF. */
typedef struct {
  EVP_CIPHER_CTX *cx[4];  /* by UE_D12_* (cx[0] unused) */
  const ue_d12_t *key[4]; /* whose key cx[i] holds (ue_d12_forget) */
  EVP_KDF *prf;
} ue_d12_ctx_t;

/* M5_OK, or M5_ENOMEM (nothing allocated then: sessions keep OpenSSL). */
int ue_d12_ctx_init(ue_d12_ctx_t *x);
void ue_d12_ctx_free(ue_d12_ctx_t *x);

/* The AEAD of an established DTLS 1.2 SSL's suite, UE_D12_NONE if not one of ours. */
int ue_d12_suite(const SSL *ssl);

/* Takes the records OpenSSL wrote for the session (p[0..n): whole records, as they go on the
 * wire): the highest epoch-1 sequence number and its explicit nonce, so that ours continue
 * after OpenSSL's (its Finished, its retransmissions, what it sent before the switch). */
void ue_d12_saw_tx(ue_d12_t *r, const uint8_t *p, size_t n);

/* The handshake of ssl (a DTLS 1.2 server) is complete: derives the epoch-1 keys from its
 * master secret and randoms (RFC 5246 §6.3) and starts the read window with the client's
 * Finished (epoch 1, sequence number 0). M5_OK; M5_EINVAL (not our suite, no epoch-1 record
 * of OpenSSL's seen) or M5_ECRYPTO: the caller keeps OpenSSL. */
int ue_d12_start(ue_d12_ctx_t *x, ue_d12_t *r, SSL *ssl);
/* The same from the parts (for tests): master secret (48 bytes) and the two randoms. */
int ue_d12_start_keys(ue_d12_ctx_t *x, ue_d12_t *r, int aead, const uint8_t master[48],
                      const uint8_t client_random[32], const uint8_t server_random[32]);
/* Wipes everything (OPENSSL_cleanse). */
void ue_d12_wipe(ue_d12_t *r);
/* The session r ends: if the worker's cipher context still holds one of its keys (it did the
 * last record), the context gets a zero key, so no ended session's key stays in it. */
void ue_d12_forget(ue_d12_ctx_t *x, const ue_d12_t *r);

/* The length of the record at the front of p[0..n): 0 when p does not hold a whole record
 * header and body (the rest of a datagram is then dropped, RFC 6347 §4.1.2.7). */
size_t ue_d12_record_len(const uint8_t *p, size_t n);

/* Seals one epoch-1 record of type ct carrying p[0..n) (n <= UE_D12_PLAIN_MAX) into out
 * (room for n + UE_D12_HDR + UE_D12_OVERHEAD bytes): M5_OK with *outlen set; M5_EFULL when
 * every sequence number is used (the caller ends the session: RFC 6347 §4.1); M5_EINVAL;
 * M5_ECRYPTO. */
int ue_d12_seal(ue_d12_ctx_t *x, ue_d12_t *r, uint8_t ct, const uint8_t *p, size_t n, uint8_t *out,
                size_t *outlen);

/* What ue_d12_open found. DROP: not epoch 1, not DTLS 1.2, a replay, older than the window,
 * too short, or it does not authenticate: discarded without a word (RFC 6347 §4.1.2.1,
 * §4.1.2.7); the window is unchanged. */
enum { UE_D12_OK = 0, UE_D12_DROP = 1 };
/* Removes the protection of the whole record rec[0..len) (header included) in place: OK with
 * *pt, *ptlen (the content type is rec[0]) and the record marked in the window, or DROP. */
int ue_d12_open(ue_d12_ctx_t *x, ue_d12_t *r, uint8_t *rec, size_t len, uint8_t **pt,
                size_t *ptlen);

#endif
