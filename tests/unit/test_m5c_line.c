/* Unit tests for the line `m5c listen` prints per pushed body (m5c_push_line, docs/client.md):
 * the body as received plus payloadText, and the "via" member for a MSG that came through a
 * group, a broadcast area or a Messaging Topic (its destAddr, docs/protocol.md §4); none for a
 * MSG addressed to the UE itself or for a delivery report. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "client/m5c.h"
#include "core/err.h"

/* The line for a body as libm5c hands it over (parsed, then the text). */
static char *line_for(const char *body) {
  m5_msg_t m;
  char diag[160];
  if (m5_msg_parse((const uint8_t *)body, strlen(body), &m, diag, sizeof diag)) {
    print_error("%s: %s\n", body, diag);
    fail();
  }
  char *line = m5c_push_line(&m, (const uint8_t *)body, strlen(body));
  m5_msg_free(&m);
  assert_non_null(line);
  return line;
}

static void expect_line(const char *body, const char *want) {
  char *line = line_for(body);
  if (strcmp(line, want)) print_error("body %s\n got  %s\n want %s\n", body, line, want);
  assert_string_equal(line, want);
  free(line);
}

#define ORI "\"oriAddr\":{\"addrType\":\"AS\",\"addr\":\"as1\"}"

static void test_via_group_bc_topic(void **state) {
  (void)state;
  expect_line("{\"msgType\":\"MSG\"," ORI ",\"destAddr\":{\"addrType\":\"GROUP\",\"addr\":\"fleet.7\"},"
              "\"msgId\":\"g1\",\"payload\":\"aGk=\"}",
              "{\"msgType\":\"MSG\"," ORI ",\"destAddr\":{\"addrType\":\"GROUP\",\"addr\":\"fleet.7\"},"
              "\"msgId\":\"g1\",\"payload\":\"aGk=\",\"payloadText\":\"hi\","
              "\"via\":{\"addrType\":\"GROUP\",\"addr\":\"fleet.7\"}}");
  expect_line("{\"msgType\":\"MSG\"," ORI ",\"destAddr\":{\"addrType\":\"BC\",\"addr\":\"area:north\"},"
              "\"msgId\":\"b1\",\"payload\":\"\"}",
              "{\"msgType\":\"MSG\"," ORI ",\"destAddr\":{\"addrType\":\"BC\",\"addr\":\"area:north\"},"
              "\"msgId\":\"b1\",\"payload\":\"\",\"payloadText\":\"\","
              "\"via\":{\"addrType\":\"BC\",\"addr\":\"area:north\"}}");
  /* Binary payload: no payloadText, still via. */
  expect_line("{\"msgType\":\"MSG\"," ORI ",\"destAddr\":{\"addrType\":\"TOPIC\",\"addr\":\"meters_e\"},"
              "\"msgId\":\"t1\",\"payload\":\"//4=\",\"delivStReqInd\":true}",
              "{\"msgType\":\"MSG\"," ORI ",\"destAddr\":{\"addrType\":\"TOPIC\",\"addr\":\"meters_e\"},"
              "\"msgId\":\"t1\",\"payload\":\"//4=\",\"delivStReqInd\":true,"
              "\"via\":{\"addrType\":\"TOPIC\",\"addr\":\"meters_e\"}}");
  /* A "via" the server put in the body is replaced by the one derived from destAddr. */
  expect_line("{\"msgType\":\"MSG\"," ORI ",\"destAddr\":{\"addrType\":\"GROUP\",\"addr\":\"g\"},"
              "\"via\":{\"addrType\":\"UE\",\"addr\":\"x\"},\"msgId\":\"g2\",\"payload\":\"\"}",
              "{\"msgType\":\"MSG\"," ORI ",\"destAddr\":{\"addrType\":\"GROUP\",\"addr\":\"g\"},"
              "\"via\":{\"addrType\":\"GROUP\",\"addr\":\"g\"},\"msgId\":\"g2\",\"payload\":\"\","
              "\"payloadText\":\"\"}");
}

static void test_no_via(void **state) {
  (void)state;
  /* Addressed to the UE itself (point-to-point, application-to-point). */
  expect_line("{\"msgType\":\"MSG\"," ORI ",\"destAddr\":{\"addrType\":\"UE\",\"addr\":\"ue1\"},"
              "\"msgId\":\"p1\",\"payload\":\"aGk=\"}",
              "{\"msgType\":\"MSG\"," ORI ",\"destAddr\":{\"addrType\":\"UE\",\"addr\":\"ue1\"},"
              "\"msgId\":\"p1\",\"payload\":\"aGk=\",\"payloadText\":\"hi\"}");
  /* A delivery report: printed as received. */
  expect_line("{\"msgType\":\"IMDN\",\"oriAddr\":{\"addrType\":\"UE\",\"addr\":\"ue2\"},"
              "\"destAddr\":{\"addrType\":\"UE\",\"addr\":\"ue1\"},\"msgId\":\"p1\","
              "\"delivSt\":\"REPT_DELY_SUCCESS\"}",
              "{\"msgType\":\"IMDN\",\"oriAddr\":{\"addrType\":\"UE\",\"addr\":\"ue2\"},"
              "\"destAddr\":{\"addrType\":\"UE\",\"addr\":\"ue1\"},\"msgId\":\"p1\","
              "\"delivSt\":\"REPT_DELY_SUCCESS\"}");
  /* An addrType this client does not know is not a "via". */
  expect_line("{\"msgType\":\"MSG\"," ORI ",\"destAddr\":{\"addrType\":\"MQTT\",\"addr\":\"q\"},"
              "\"msgId\":\"q1\",\"payload\":\"\"}",
              "{\"msgType\":\"MSG\"," ORI ",\"destAddr\":{\"addrType\":\"MQTT\",\"addr\":\"q\"},"
              "\"msgId\":\"q1\",\"payload\":\"\",\"payloadText\":\"\"}");
}

static void test_not_json(void **state) {
  (void)state;
  m5_msg_t m;
  memset(&m, 0, sizeof m);
  m.type = M5_MSG_MSG;
  assert_null(m5c_push_line(&m, (const uint8_t *)"[1]", 3));
  assert_null(m5c_push_line(&m, (const uint8_t *)"{", 1));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_via_group_bc_topic),
      cmocka_unit_test(test_no_via),
      cmocka_unit_test(test_not_json),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
