/* libFuzzer harness for the MSGin5G-1 body codec (msg/msg.h): bodies come from every UE and
 * from the server. A body that parses must encode (except the types whose IEs m5_msg_t does not
 * hold: SEGREC, SEGCONFIR), and the encoding must parse back to the same message and encode to the same text.
 * M5_FUZZ_SOURCES: src/lib/msg/msg.c src/lib/core/err.c
 * M5_FUZZ_PKGS: jansson */
#include "core/err.h"
#include "msg/msg.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size > 65536) return 0;
  m5_msg_t m;
  char diag[128];
  if (m5_msg_parse(data, size, &m, diag, sizeof diag) != M5_OK) {
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
