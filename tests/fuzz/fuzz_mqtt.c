/* libFuzzer harness for the MQTT codec (src/lib/mqtt/mqtt.h) on what a broker sends: the input
 * is a byte stream cut into packets by m5_mqtt_frame, each parsed as the MQTT gateway (MQTT 5)
 * and the bench client (3.1.1) do, properties walked to the end. Checks that nothing reads past
 * a packet and that a parsed PUBLISH re-encodes to a packet that parses to the same fields.
 * M5_FUZZ_SOURCES: src/lib/mqtt/mqtt.c src/lib/core/buf.c src/lib/core/err.c
 * M5_FUZZ_PKGS: */
#include "core/buf.h"
#include "core/err.h"
#include "mqtt/mqtt.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static void one(int ver, uint8_t tf, const uint8_t *b, size_t len) {
  uint16_t pid;
  uint8_t code;
  m5_mqtt_connack_t ca;
  m5_mqtt_publish_t p;
  switch (tf >> 4) {
  case M5_MQTT_CONNACK:
    (void)m5_mqtt_parse_connack(ver, b, len, &ca);
    break;
  case M5_MQTT_PUBACK:
    (void)m5_mqtt_parse_puback(ver, b, len, &pid, &code);
    break;
  case M5_MQTT_SUBACK:
    (void)m5_mqtt_parse_suback(ver, b, len, &pid, &code);
    break;
  case M5_MQTT_PUBLISH: {
    if (m5_mqtt_parse_publish(ver, tf, b, len, &p)) break;
    m5_mqtt_pair_t up[8];
    size_t n = 0;
    m5_mqtt_prop_t pr;
    for (const uint8_t *q = p.props; q && m5_mqtt_prop_next(&q, p.props + p.props_len, &pr) == 1;)
      if (pr.id == M5_MQTT_P_USER && n < 8)
        up[n++] = (m5_mqtt_pair_t){(const char *)pr.data, (const char *)pr.data2, pr.len, pr.len2};
    (void)m5_mqtt_topic_name_ok(p.topic, p.tlen);
    if (p.tlen > 200 || memchr(p.topic, 0, p.tlen) || p.qos == 0) break;
    char topic[201];
    memcpy(topic, p.topic, p.tlen);
    topic[p.tlen] = '\0';
    m5_buf_t o;
    m5_buf_init(&o, 0);
    if (!m5_mqtt_put_publish(&o, ver, topic, p.qos, p.dup, p.pid, up, ver == M5_MQTT_V5 ? n : 0,
                             p.payload, p.plen)) {
      uint8_t tf2;
      size_t hdr, rem;
      m5_mqtt_publish_t p2;
      if (m5_mqtt_frame(o.data, o.len, SIZE_MAX, &tf2, &hdr, &rem) != 1 ||
          m5_mqtt_parse_publish(ver, tf2, o.data + hdr, rem, &p2) || p2.pid != p.pid ||
          p2.plen != p.plen || memcmp(p2.payload, p.payload, p.plen) || p2.tlen != p.tlen)
        abort();
    }
    m5_buf_free(&o);
    break;
  }
  default:
    break;
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  for (int ver = M5_MQTT_V311; ver <= M5_MQTT_V5; ver++) {
    size_t off = 0;
    for (;;) {
      uint8_t tf;
      size_t hdr, rem;
      int r = m5_mqtt_frame(data + off, size - off, 65536, &tf, &hdr, &rem);
      if (r != 1) break;
      /* a copy of exactly the packet: ASan sees any read past it */
      uint8_t *pkt = malloc(rem ? rem : 1);
      if (!pkt) return 0;
      memcpy(pkt, data + off + hdr, rem);
      one(ver, tf, pkt, rem);
      free(pkt);
      off += hdr + rem;
    }
  }
  return 0;
}
