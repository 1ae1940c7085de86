/* The JSON line `m5c listen` prints for a body the server pushed (docs/client.md): the body as
 * received, plus `payloadText` when the payload is UTF-8 and, for a MSG that reached this UE
 * through a group, a broadcast area or a Messaging Topic (TS 23.554 cl. 8.7.4, 8.6.1, 8.8; the
 * server keeps that address as the pushed MSG's destAddr, docs/protocol.md §4), a member
 * "via": {"addrType": "GROUP"|"BC"|"TOPIC", "addr": ...}. Apart from the binary, so that the
 * line can be unit-tested without a session. */
#include "m5c.h"

#include <jansson.h>
#include <stdlib.h>

char *m5c_push_line(const m5_msg_t *m, const uint8_t *body, size_t len) {
  json_t *o = json_loadb((const char *)body, len, 0, NULL);
  if (!json_is_object(o)) {
    json_decref(o);
    return NULL;
  }
  if (m->type == M5_MSG_MSG) {
    /* json_stringn refuses text that is not UTF-8: then there is no payloadText. */
    json_t *text = json_stringn((const char *)(m->payload ? m->payload : (const uint8_t *)""),
                                m->payload_len);
    if (text) json_object_set_new(o, "payloadText", text);
    if (m5_msg_addr_is_named(m->dest.type))
      json_object_set_new(o, "via", json_pack("{s:s, s:s}", "addrType", m->dest.type, "addr",
                                              m->dest.addr));
  }
  char *line = json_dumps(o, JSON_COMPACT);
  json_decref(o);
  return line;
}
