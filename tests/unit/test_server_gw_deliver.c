/* Unit tests for src/server/gw/gw_deliver.c: the URL of a gateway's delivery service per kind,
 * the L3g/N3gMessageDelivery body made from the northbound form (the store-and-forward
 * members, which those schemas do not declare, left out; a report's body as is), and what each
 * answer of a gateway means (TS 29.538: 204 delivered; 404 and 400 failed for good; 429, 408,
 * 5xx and no answer retried). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/err.h"
#include "msg/msg.h"
#include "server/gw/gw_deliver.h"

static void test_url(void **state) {
  (void)state;
  registry_gw_t g;
  memset(&g, 0, sizeof g);
  strcpy(g.target, "gw1.example:9444");
  char url[128];
  g.kind = REGISTRY_GW_MQTT;
  assert_int_equal(gw_deliver_url(&g, 0, url, sizeof url), 0);
  assert_string_equal(url, "https://gw1.example:9444/msgg-n3gdelivery/v1/deliver-message");
  assert_int_equal(gw_deliver_url(&g, 1, url, sizeof url), 0);
  assert_string_equal(url, "https://gw1.example:9444/msgg-n3gdelivery/v1/deliver-report");
  g.kind = REGISTRY_GW_SMS;
  assert_int_equal(gw_deliver_url(&g, 0, url, sizeof url), 0);
  assert_string_equal(url, "https://gw1.example:9444/msgg-l3gdelivery/v1/deliver-message");
  assert_int_equal(gw_deliver_url(&g, 0, url, 20), M5_ERANGE);
}

static void test_body(void **state) {
  (void)state;
  const char *as = "{\"oriAddr\":{\"addrType\":\"UE\",\"addr\":\"ue1\"},\"destAddr\":{\"addrType\":"
                   "\"UE\",\"addr\":\"mq1\"},\"msgId\":\"m1\",\"payload\":\"aGk=\",\"stoAndFwInd\":"
                   "true,\"stoAndFwParams\":{\"exprTime\":\"2030-01-01T00:00:00Z\"},"
                   "\"delivStReqInd\":true}";
  char *body = NULL;
  size_t len = 0;
  assert_int_equal(gw_deliver_body(as, strlen(as), 0, "mq1", &body, &len), 0);
  assert_int_equal(len, strlen(body));
  assert_null(strstr(body, "stoAndFw"));
  assert_non_null(strstr(body, "\"payload\":\"aGk=\""));
  assert_non_null(strstr(body, "\"delivStReqInd\":true"));
  assert_non_null(strstr(body, "\"oriAddr\":{\"addrType\":\"UE\",\"addr\":\"ue1\"}"));
  free(body);
  const char *rep = "{\"oriAddr\":{\"addrType\":\"UE\",\"addr\":\"ue1\"},\"msgId\":\"m1\"}";
  assert_int_equal(gw_deliver_body(rep, strlen(rep), 1, "mq1", &body, &len), 0);
  assert_string_equal(body, rep);
  free(body);
  /* a group's message: destAddr becomes the device the gateway delivers to */
  const char *grp = "{\"oriAddr\":{\"addrType\":\"UE\",\"addr\":\"ue1\"},\"destAddr\":{\"addrType\":"
                    "\"GROUP\",\"addr\":\"fleet\"},\"msgId\":\"m2\",\"payload\":\"aGk=\"}";
  assert_int_equal(gw_deliver_body(grp, strlen(grp), 0, "mq2", &body, &len), 0);
  assert_non_null(strstr(body, "\"destAddr\":{\"addrType\":\"UE\",\"addr\":\"mq2\"}"));
  assert_null(strstr(body, "GROUP"));
  free(body);
  assert_int_equal(gw_deliver_body("[1]", 3, 0, "mq1", &body, &len), M5_EINVAL);
  assert_int_equal(gw_deliver_body("{", 1, 0, "mq1", &body, &len), M5_EINVAL);
}

static void test_outcome(void **state) {
  (void)state;
  const char *cause;
  assert_int_equal(gw_deliver_outcome(0, 204, &cause), GW_OUT_DELIVERED);
  assert_null(cause);
  assert_int_equal(gw_deliver_outcome(0, 200, &cause), GW_OUT_DELIVERED);
  assert_int_equal(gw_deliver_outcome(0, 404, &cause), GW_OUT_FAILED);
  assert_string_equal(cause, M5_CAUSE_UNKNOWN_RECIPIENT);
  assert_int_equal(gw_deliver_outcome(0, 400, &cause), GW_OUT_FAILED);
  assert_string_equal(cause, M5_CAUSE_REJECTED);
  assert_int_equal(gw_deliver_outcome(0, 403, &cause), GW_OUT_FAILED);
  assert_int_equal(gw_deliver_outcome(0, 429, &cause), GW_OUT_RETRY);
  assert_int_equal(gw_deliver_outcome(0, 408, &cause), GW_OUT_RETRY);
  assert_int_equal(gw_deliver_outcome(0, 503, &cause), GW_OUT_RETRY);
  assert_int_equal(gw_deliver_outcome(0, 500, &cause), GW_OUT_RETRY);
  assert_int_equal(gw_deliver_outcome(M5_ETIMEDOUT, 0, &cause), GW_OUT_RETRY);
  assert_int_equal(gw_deliver_outcome(M5_EIO, 0, &cause), GW_OUT_RETRY);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_url),
      cmocka_unit_test(test_body),
      cmocka_unit_test(test_outcome),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
