/* libFuzzer harness for the MSGin5G-1 body codec (msg/msg.h): bodies come from every UE and
 * from the server. A body that parses must encode (except the types whose IEs m5_msg_t does not
 * hold: SEGREC, SEGCONFIR), and the encoding must parse back to the same message and encode to the same text.
 * Every body is also read by jansson alone (msg_parse_tree): the scanning parser (msg_scan.c)
 * must agree with it, status, diagnostic and message.
 * M5_FUZZ_SOURCES: src/lib/msg/msg.c src/lib/msg/msg_encode.c src/lib/msg/msg_scan.c src/lib/core/err.c
 * M5_FUZZ_PKGS: jansson */
#include "core/err.h"
#include "msg/msg.h"
#include "msg/msg_int.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* m (from m5_msg_parse, rc) and what jansson alone makes of the same body. */
static void same_as_tree(const uint8_t *data, size_t size, int rc, const m5_msg_t *m,
                         const char *diag) {
  m5_msg_t t;
  char tdiag[128];
  if (msg_parse_tree(data, size, -1, &t, tdiag, sizeof tdiag) != rc || strcmp(diag, tdiag))
    __builtin_trap();
  if (rc) return;
  if (t.payload_len != m->payload_len ||
      (m->payload_len && memcmp(t.payload, m->payload, m->payload_len)) ||
      t.n_topics != m->n_topics ||
      (m->n_topics && memcmp(t.topics, m->topics, m->n_topics * sizeof *m->topics)) ||
      !t.client_profile_json != !m->client_profile_json ||
      (m->client_profile_json && strcmp(t.client_profile_json, m->client_profile_json)))
    __builtin_trap();
  m5_msg_t a = *m, b = t;
  a.payload = b.payload = NULL;
  a.topics = b.topics = NULL;
  a.client_profile_json = b.client_profile_json = NULL;
  if (memcmp(&a, &b, sizeof a)) __builtin_trap();
  m5_msg_free(&t);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size > 65536) return 0;
  m5_msg_t m;
  char diag[128];
  int prc = m5_msg_parse(data, size, &m, diag, sizeof diag);
  same_as_tree(data, size, prc, &m, diag);
  if (prc != M5_OK) {
    if (!memchr(diag, '\0', sizeof diag) || !diag[0]) __builtin_trap();
    return 0;
  }
  char *text = NULL, *again = NULL;
  size_t len = 0, len2 = 0;
  int rc = m5_msg_encode(&m, &text, &len);
  if (rc == M5_OK) {
    m5_msg_t back;
    if (m5_msg_parse((const uint8_t *)text, len, &back, diag, sizeof diag) != M5_OK)
      __builtin_trap();
    if (back.type != m.type || back.payload_len != m.payload_len ||
        (m.payload_len && memcmp(back.payload, m.payload, m.payload_len)) ||
        strcmp(back.msg_id, m.msg_id) || strcmp(back.ori.addr, m.ori.addr) ||
        back.expr_time != m.expr_time || back.expiry != m.expiry || back.prio != m.prio ||
        back.n_topics != m.n_topics || strcmp(back.dest.type, m.dest.type) ||
        strcmp(back.dest.addr, m.dest.addr))
      __builtin_trap();
    for (size_t i = 0; i < m.n_topics; i++)
      if (strcmp(back.topics[i], m.topics[i]) || !m5_msg_name_valid(m.topics[i]))
        __builtin_trap();
    if (m5_msg_encode(&back, &again, &len2) != M5_OK || len2 != len || memcmp(text, again, len))
      __builtin_trap();
    m5_msg_free(&back);
  } else if (m.type != M5_MSG_SEGREC && m.type != M5_MSG_SEGCONFIR) {
    __builtin_trap();
  }
  free(text);
  free(again);
  m5_msg_free(&m);
  return 0;
}
