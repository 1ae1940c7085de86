/* Unit tests for the MQTT 3.1.1 / 5.0 client packet codec (src/lib/mqtt/mqtt.h): byte
 * layouts against the specifications' examples, round trips, and hostile input (every
 * malformed form answers M5_EPROTO / M5_ERANGE, never reads past what arrived). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "core/buf.h"
#include "core/err.h"
#include "mqtt/mqtt.h"

static void test_connect_311_bytes(void **state) {
  (void)state;
  m5_buf_t b;
  m5_buf_init(&b, 0);
  m5_mqtt_connect_t c = {
      .version = M5_MQTT_V311, .client_id = "ab", .clean = true, .keepalive_s = 60};
  assert_int_equal(m5_mqtt_put_connect(&b, &c), 0);
  static const uint8_t want[] = {0x10, 14,   0, 4,  'M', 'Q', 'T', 'T',
                                 4,    0x02, 0, 60, 0,   2,   'a', 'b'};
  assert_int_equal(b.len, sizeof want);
  assert_memory_equal(b.data, want, sizeof want);
  m5_buf_free(&b);
}

static void test_connect_v5_props_and_credentials(void **state) {
  (void)state;
  m5_buf_t b;
  m5_buf_init(&b, 0);
  m5_mqtt_connect_t c = {.version = M5_MQTT_V5,
                         .client_id = "gw",
                         .keepalive_s = 30,
                         .username = "u",
                         .password = (const uint8_t *)"pw",
                         .password_len = 2,
                         .session_expiry_s = 0xffffffffu,
                         .receive_max = 100,
                         .max_packet = 70000};
  assert_int_equal(m5_mqtt_put_connect(&b, &c), 0);
  static const uint8_t want[] = {0x10, 35,   0,   4,    'M',  'Q',  'T',  'T',  5,    0xc0,
                                 0,    30,   13,  0x11, 0xff, 0xff, 0xff, 0xff, 0x21, 0,
                                 100,  0x27, 0,   1,    0x11, 0x70, 0,    2,    'g',  'w',
                                 0,    1,    'u', 0,    2,    'p',  'w'};
  assert_int_equal(b.len, 2 + 35);
  assert_memory_equal(b.data, want, sizeof want);
  m5_buf_free(&b);
}

static void test_frame(void **state) {
  (void)state;
  uint8_t tf;
  size_t hdr, rem;
  static const uint8_t ping[] = {0xd0, 0};
  assert_int_equal(m5_mqtt_frame(ping, 1, 100, &tf, &hdr, &rem), 0);
  assert_int_equal(m5_mqtt_frame(ping, 2, 100, &tf, &hdr, &rem), 1);
  assert_int_equal(tf, 0xd0);
  assert_int_equal(hdr, 2);
  assert_int_equal(rem, 0);
  static const uint8_t two[] = {0x30, 0x80, 0x01}; /* 128: two length bytes, body missing */
  assert_int_equal(m5_mqtt_frame(two, 3, 1000, &tf, &hdr, &rem), 0);
  assert_int_equal(m5_mqtt_frame(two, 3, 100, &tf, &hdr, &rem), M5_ERANGE);
  static const uint8_t five[] = {0x30, 0xff, 0xff, 0xff, 0xff, 0x01};
  assert_int_equal(m5_mqtt_frame(five, sizeof five, SIZE_MAX, &tf, &hdr, &rem), M5_EPROTO);
  static const uint8_t partial[] = {0x30, 0xff};
  assert_int_equal(m5_mqtt_frame(partial, sizeof partial, SIZE_MAX, &tf, &hdr, &rem), 0);
}

static void test_publish_v5_round_trip(void **state) {
  (void)state;
  m5_buf_t b;
  m5_buf_init(&b, 0);
  m5_mqtt_pair_t up[2] = {{"oriAddr", "UE:ue1", 7, 6}, {"msgId", "m-1", 5, 3}};
  assert_int_equal(m5_mqtt_put_publish(&b, M5_MQTT_V5, "msgin5g/mq1/in", 1, true, 0x1234, up, 2,
                                       (const uint8_t *)"hi", 2),
                   0);
  uint8_t tf;
  size_t hdr, rem;
  assert_int_equal(m5_mqtt_frame(b.data, b.len, 1000, &tf, &hdr, &rem), 1);
  assert_int_equal(tf, 0x3a); /* PUBLISH, DUP, QoS 1 */
  m5_mqtt_publish_t p;
  assert_int_equal(m5_mqtt_parse_publish(M5_MQTT_V5, tf, b.data + hdr, rem, &p), 0);
  assert_int_equal(p.qos, 1);
  assert_true(p.dup);
  assert_int_equal(p.pid, 0x1234);
  assert_int_equal(p.tlen, 14);
  assert_memory_equal(p.topic, "msgin5g/mq1/in", 14);
  assert_int_equal(p.plen, 2);
  assert_memory_equal(p.payload, "hi", 2);
  const uint8_t *q = p.props;
  m5_mqtt_prop_t pr;
  assert_int_equal(m5_mqtt_prop_next(&q, p.props + p.props_len, &pr), 1);
  assert_int_equal(pr.id, M5_MQTT_P_USER);
  assert_memory_equal(pr.data, "oriAddr", 7);
  assert_memory_equal(pr.data2, "UE:ue1", 6);
  assert_int_equal(m5_mqtt_prop_next(&q, p.props + p.props_len, &pr), 1);
  assert_memory_equal(pr.data2, "m-1", 3);
  assert_int_equal(m5_mqtt_prop_next(&q, p.props + p.props_len, &pr), 0);
  /* every truncation of the body is refused, never read past */
  for (size_t n = 0; n < rem - 2; n++) {
    uint8_t cut[64];
    memcpy(cut, b.data + hdr, n);
    /* any cut before the payload falls inside the topic, packet id or properties */
    assert_int_equal(m5_mqtt_parse_publish(M5_MQTT_V5, tf, cut, n, &p), M5_EPROTO);
  }
  m5_buf_free(&b);
}

static void test_publish_malformed(void **state) {
  (void)state;
  m5_mqtt_publish_t p;
  static const uint8_t body[] = {0, 1, 't', 0, 0}; /* topic "t", packet id 0 */
  assert_int_equal(m5_mqtt_parse_publish(M5_MQTT_V311, 0x32, body, sizeof body, &p), M5_EPROTO);
  static const uint8_t ok[] = {0, 1, 't', 0, 7, 'x'};
  assert_int_equal(m5_mqtt_parse_publish(M5_MQTT_V311, 0x32, ok, sizeof ok, &p), 0);
  assert_int_equal(m5_mqtt_parse_publish(M5_MQTT_V311, 0x36, ok, sizeof ok, &p),
                   M5_EPROTO); /* QoS 3 */
  assert_int_equal(m5_mqtt_parse_publish(M5_MQTT_V311, 0x34, ok, sizeof ok, &p),
                   M5_EPROTO); /* QoS 2 */
  assert_int_equal(m5_mqtt_parse_publish(M5_MQTT_V311, 0x38, ok, sizeof ok, &p),
                   M5_EPROTO); /* DUP, QoS 0 */
  static const uint8_t long_topic[] = {0, 9, 't'};
  assert_int_equal(m5_mqtt_parse_publish(M5_MQTT_V311, 0x30, long_topic, sizeof long_topic, &p),
                   M5_EPROTO);
  /* v5: a property length past the end, an unknown property, a user property cut short */
  static const uint8_t plen[] = {0, 1, 't', 0, 7, 9, 0x26};
  assert_int_equal(m5_mqtt_parse_publish(M5_MQTT_V5, 0x32, plen, sizeof plen, &p), M5_EPROTO);
  static const uint8_t unknown[] = {0, 1, 't', 0, 7, 2, 0x7f, 0};
  assert_int_equal(m5_mqtt_parse_publish(M5_MQTT_V5, 0x32, unknown, sizeof unknown, &p), M5_EPROTO);
  static const uint8_t cut_pair[] = {0, 1, 't', 0, 7, 5, 0x26, 0, 1, 'k', 0};
  assert_int_equal(m5_mqtt_parse_publish(M5_MQTT_V5, 0x32, cut_pair, sizeof cut_pair, &p),
                   M5_EPROTO);
}

static void test_acks(void **state) {
  (void)state;
  uint16_t pid;
  uint8_t code;
  static const uint8_t pa311[] = {0x12, 0x34};
  assert_int_equal(m5_mqtt_parse_puback(M5_MQTT_V311, pa311, 2, &pid, &code), 0);
  assert_int_equal(pid, 0x1234);
  assert_int_equal(code, 0);
  static const uint8_t pa5[] = {0, 7, 0x10};
  assert_int_equal(m5_mqtt_parse_puback(M5_MQTT_V5, pa5, 3, &pid, &code), 0);
  assert_int_equal(code, M5_MQTT_RC_NO_SUBSCRIBERS);
  static const uint8_t pa5bad[] = {0, 7, 0x87, 3, 0x1f, 0, 5}; /* reason string cut short */
  assert_int_equal(m5_mqtt_parse_puback(M5_MQTT_V5, pa5bad, sizeof pa5bad, &pid, &code), M5_EPROTO);
  assert_int_equal(m5_mqtt_parse_puback(M5_MQTT_V5, pa5, 1, &pid, &code), M5_EPROTO);
  static const uint8_t sa5[] = {0, 9, 0, 1};
  assert_int_equal(m5_mqtt_parse_suback(M5_MQTT_V5, sa5, 4, &pid, &code), 0);
  assert_int_equal(pid, 9);
  assert_int_equal(code, 1);
  static const uint8_t sa_two[] = {0, 9, 0, 1, 1}; /* two codes for our one filter */
  assert_int_equal(m5_mqtt_parse_suback(M5_MQTT_V5, sa_two, 5, &pid, &code), M5_EPROTO);
  m5_mqtt_connack_t ca;
  static const uint8_t ca5[] = {1, 0, 3, 0x21, 0, 20};
  assert_int_equal(m5_mqtt_parse_connack(M5_MQTT_V5, ca5, sizeof ca5, &ca), 0);
  assert_true(ca.session_present);
  assert_int_equal(ca.receive_max, 20);
  static const uint8_t ca5zero[] = {0, 0, 3, 0x21, 0, 0}; /* receive maximum 0 */
  assert_int_equal(m5_mqtt_parse_connack(M5_MQTT_V5, ca5zero, sizeof ca5zero, &ca), M5_EPROTO);
  static const uint8_t ca_flags[] = {2, 0};
  assert_int_equal(m5_mqtt_parse_connack(M5_MQTT_V311, ca_flags, 2, &ca), M5_EPROTO);
  m5_buf_t b;
  m5_buf_init(&b, 0);
  assert_int_equal(m5_mqtt_put_puback(&b, M5_MQTT_V5, 0x0102, 0x90), 0);
  static const uint8_t want[] = {0x40, 3, 1, 2, 0x90};
  assert_memory_equal(b.data, want, sizeof want);
  m5_buf_free(&b);
}

static void test_bounded_output(void **state) {
  (void)state;
  m5_buf_t b;
  m5_buf_init(&b, 16);
  uint8_t pl[32] = {0};
  assert_int_equal(m5_mqtt_put_publish(&b, M5_MQTT_V311, "t", 1, false, 1, NULL, 0, pl, sizeof pl),
                   M5_ERANGE);
  assert_int_equal(b.len, 0); /* nothing half-written */
  assert_int_equal(m5_mqtt_put_empty(&b, M5_MQTT_PINGREQ), 0);
  assert_int_equal(b.len, 2);
  m5_buf_free(&b);
}

static void test_utf8_and_topics(void **state) {
  (void)state;
  assert_true(m5_mqtt_utf8_ok((const uint8_t *)"h\xc3\xa9llo \xe2\x82\xac \xf0\x9f\x98\x80", 15));
  assert_false(m5_mqtt_utf8_ok((const uint8_t *)"a\0b", 3));
  assert_false(m5_mqtt_utf8_ok((const uint8_t *)"\xc0\xaf", 2));         /* overlong '/' */
  assert_false(m5_mqtt_utf8_ok((const uint8_t *)"\xed\xa0\x80", 3));     /* surrogate */
  assert_false(m5_mqtt_utf8_ok((const uint8_t *)"\xf5\x80\x80\x80", 4)); /* past U+10FFFF */
  assert_false(m5_mqtt_utf8_ok((const uint8_t *)"\xe2\x82", 2));         /* cut short */
  assert_true(m5_mqtt_topic_name_ok((const uint8_t *)"msgin5g/mq1/in", 14));
  assert_false(m5_mqtt_topic_name_ok((const uint8_t *)"msgin5g/+/in", 12));
  assert_false(m5_mqtt_topic_name_ok((const uint8_t *)"", 0));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_connect_311_bytes),
      cmocka_unit_test(test_connect_v5_props_and_credentials),
      cmocka_unit_test(test_frame),
      cmocka_unit_test(test_publish_v5_round_trip),
      cmocka_unit_test(test_publish_malformed),
      cmocka_unit_test(test_acks),
      cmocka_unit_test(test_bounded_output),
      cmocka_unit_test(test_utf8_and_topics),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
