/* libFuzzer harness for m5s's own DTLS 1.2 record layer (src/server/ue/ue_dtls12rec.c): for
 * each suite, any datagram a peer sends, cut into records as ue_dtls.c cuts it, must open or be
 * dropped without touching memory outside it, and a record that does not open must leave the
 * replay window as it was; and whatever a record carries, sealing it and opening the result
 * must give it back once, a second time never (a replay).
 * Input: byte 0 picks the suite and the starting sequence numbers, the rest is the datagram
 * (and the plaintext of the round trip).
 * M5_FUZZ_SOURCES: src/server/ue/ue_dtls12rec.c
 * M5_FUZZ_PKGS: openssl */
#include "core/err.h"
#include "server/ue/ue_dtls12rec.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static ue_d12_ctx_t *ctx(void) {
  static ue_d12_ctx_t x;
  static int ready;
  if (!ready) {
    if (ue_d12_ctx_init(&x) != M5_OK) __builtin_trap();
    ready = 1;
  }
  return &x;
}

/* A session of suite aead whose client and server keys are the same (so that what it seals,
 * it opens), with its sequence numbers at seq. */
static void session(ue_d12_t *r, int aead, uint64_t seq) {
  static const uint8_t master[48] = {7}, cr[32] = {1}, sr[32] = {2};
  memset(r, 0, sizeof *r);
  r->tx_seen = 1;
  if (ue_d12_start_keys(ctx(), r, aead, master, cr, sr) != M5_OK) __builtin_trap();
  memcpy(r->rx.key, r->tx.key, sizeof r->rx.key);
  memcpy(r->rx.iv, r->tx.iv, sizeof r->rx.iv);
  r->tx.seq = seq;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1 || size > UE_D12_PLAIN_MAX) return 0;
  int aead = UE_D12_AES128_GCM + data[0] % 3;
  /* 0 is the client's Finished, already in the window */
  uint64_t seq = (data[0] >> 2) & 1 ? UE_D12_SEQ_LAST - 2 : 1u + (data[0] >> 3);
  data++, size--;
  ue_d12_t r;
  session(&r, aead, seq);

  /* Any datagram: each record opens or is dropped; a dropped one changes nothing. */
  uint8_t *dg = malloc(size ? size : 1);
  if (!dg) return 0;
  memcpy(dg, data, size);
  for (size_t off = 0, rl; (rl = ue_d12_record_len(dg + off, size - off)) != 0; off += rl) {
    ue_d12_t before = r;
    uint8_t *pt = NULL;
    size_t ptn = 0;
    if (ue_d12_open(ctx(), &r, dg + off, rl, &pt, &ptn) == UE_D12_OK) {
      if (pt < dg + off || pt + ptn > dg + off + rl) __builtin_trap();
    } else if (memcmp(&before, &r, sizeof r) != 0) {
      __builtin_trap();
    }
  }
  free(dg);

  /* Round trip: sealed, it opens to the same bytes, once. */
  session(&r, aead, seq);
  uint8_t *rec = malloc(size + UE_D12_HDR + UE_D12_OVERHEAD), *copy = NULL;
  size_t len = 0;
  if (!rec) return 0;
  if (ue_d12_seal(ctx(), &r, UE_D12_APP, data, size, rec, &len) != M5_OK) __builtin_trap();
  if (ue_d12_record_len(rec, len) != len) __builtin_trap();
  copy = malloc(len);
  if (!copy) __builtin_trap();
  memcpy(copy, rec, len);
  uint8_t *pt = NULL;
  size_t ptn = 0;
  if (ue_d12_open(ctx(), &r, rec, len, &pt, &ptn) != UE_D12_OK || ptn != size ||
      (size && memcmp(pt, data, size) != 0))
    __builtin_trap();
  if (ue_d12_open(ctx(), &r, copy, len, &pt, &ptn) != UE_D12_DROP) __builtin_trap();
  free(copy);
  free(rec);
  ue_d12_wipe(&r);
  return 0;
}
