/* Unit tests for src/aanf/aanf_msg.c: the Naanf_AKMA request bodies (TS 29.535 AkmaKeyInfo,
 * CtxRemove; TS 29.522 AkmaAfKeyRequest with our uaSecProtId), the precise 400 causes and
 * JSON pointers a caller gets for each defect, and the response bodies. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "aanf_msg.h"
#include "core/err.h"

#define AKID "0000.vX0oRg@5gc.mnc001.mcc001.3gppnetwork.org"
#define KAKMA "3dd5f8b66d40a12d31b8d4856eb5b2c14f9b013bcfccde61dfbbd9185a7fcb3c"

static int parse_ki(const char *body, aanf_key_info_t *ki, aanf_problem_t *pb) {
  return aanf_msg_parse_key_info((const uint8_t *)body, strlen(body), ki, pb);
}

static int parse_kr(const char *body, aanf_key_req_t *kr, aanf_problem_t *pb) {
  return aanf_msg_parse_key_req((const uint8_t *)body, strlen(body), kr, pb);
}

/* Asserts a 400 with the given cause and JSON pointer (NULL = no invalidParams). */
static void assert_problem(const aanf_problem_t *pb, const char *cause, const char *param) {
  assert_int_equal(pb->status, 400);
  assert_string_equal(pb->cause, cause);
  if (param)
    assert_string_equal(pb->param, param);
  else
    assert_null(pb->param);
  assert_true(strlen(pb->detail) > 0);
}

static void test_key_info_ok(void **state) {
  (void)state;
  aanf_key_info_t ki;
  aanf_problem_t pb;
  assert_int_equal(parse_ki("{\"supi\":\"imsi-001010123456789\",\"aKId\":\"" AKID
                            "\",\"kAkma\":\"" KAKMA "\",\"suppFeat\":\"0\",\"future\":[1]}",
                            &ki, &pb),
                   0);
  assert_string_equal(ki.supi, "001010123456789");
  assert_string_equal(ki.akid, AKID);
  assert_int_equal(ki.kakma[0], 0x3d);
  assert_int_equal(ki.kakma[31], 0x3c);

  char *out;
  size_t len;
  assert_int_equal(aanf_msg_key_info_json(&ki, &out, &len), 0);
  assert_int_equal(len, strlen(out));
  json_t *j = json_loads(out, 0, NULL);
  assert_non_null(j);
  assert_string_equal(json_string_value(json_object_get(j, "supi")), "imsi-001010123456789");
  assert_string_equal(json_string_value(json_object_get(j, "aKId")), AKID);
  assert_string_equal(json_string_value(json_object_get(j, "kAkma")), KAKMA);
  json_decref(j);
  aanf_msg_free_secret(out, len);
  aanf_msg_key_info_wipe(&ki);
  static const uint8_t zero[M5_AKMA_KEY_LEN];
  assert_memory_equal(ki.kakma, zero, sizeof zero);
}

static void test_key_info_format_errors(void **state) {
  (void)state;
  aanf_key_info_t ki;
  aanf_problem_t pb;
  assert_int_equal(parse_ki("{\"supi\":", &ki, &pb), M5_EINVAL);
  assert_problem(&pb, "INVALID_MSG_FORMAT", NULL);
  assert_int_equal(parse_ki("", &ki, &pb), M5_EINVAL);
  assert_problem(&pb, "INVALID_MSG_FORMAT", NULL);
  assert_int_equal(parse_ki("[1,2]", &ki, &pb), M5_EINVAL);
  assert_problem(&pb, "INVALID_MSG_FORMAT", NULL);
  assert_int_equal(parse_ki("{\"supi\":\"imsi-001010123456789\",\"aKId\":\"a@b\",\"kAkma\":\"" KAKMA
                            "\",\"kAkma\":\"" KAKMA "\"}",
                            &ki, &pb),
                   M5_EINVAL);
  assert_problem(&pb, "INVALID_MSG_FORMAT", NULL);
  assert_non_null(strstr(pb.detail, "duplicate"));
}

static void test_key_info_member_errors(void **state) {
  (void)state;
  aanf_key_info_t ki;
  aanf_problem_t pb;
  assert_int_equal(parse_ki("{\"supi\":\"imsi-001010123456789\",\"aKId\":\"a@b\"}", &ki, &pb),
                   M5_EINVAL);
  assert_problem(&pb, "MANDATORY_IE_MISSING", "/kAkma");
  assert_int_equal(
      parse_ki("{\"supi\":\"imsi-001010123456789\",\"kAkma\":\"" KAKMA "\"}", &ki, &pb), M5_EINVAL);
  assert_problem(&pb, "MANDATORY_IE_MISSING", "/aKId");
  assert_int_equal(parse_ki("{\"aKId\":\"a@b\",\"kAkma\":\"" KAKMA "\"}", &ki, &pb), M5_EINVAL);
  assert_problem(&pb, "MANDATORY_IE_MISSING", "/supi");
  assert_int_equal(
      parse_ki("{\"supi\":\"imsi-001010123456789\",\"aKId\":\"a@b\",\"kAkma\":7}", &ki, &pb),
      M5_EINVAL);
  assert_problem(&pb, "MANDATORY_IE_INCORRECT", "/kAkma");
  /* One digit short, and a non-hex digit: neither value may appear in the detail. */
  assert_int_equal(parse_ki("{\"supi\":\"imsi-001010123456789\",\"aKId\":\"a@b\",\"kAkma\":\""
                            "3dd5f8b66d40a12d31b8d4856eb5b2c14f9b013bcfccde61dfbbd9185a7fcb3\"}",
                            &ki, &pb),
                   M5_EINVAL);
  assert_problem(&pb, "MANDATORY_IE_INCORRECT", "/kAkma");
  assert_null(strstr(pb.detail, "3dd5f8"));
  assert_int_equal(parse_ki("{\"supi\":\"imsi-001010123456789\",\"aKId\":\"a@b\",\"kAkma\":\""
                            "xdd5f8b66d40a12d31b8d4856eb5b2c14f9b013bcfccde61dfbbd9185a7fcb3c\"}",
                            &ki, &pb),
                   M5_EINVAL);
  assert_problem(&pb, "MANDATORY_IE_INCORRECT", "/kAkma");
  assert_int_equal(parse_ki("{\"supi\":\"nai-user@example.org\",\"aKId\":\"a@b\",\"kAkma\":\"" KAKMA
                            "\"}",
                            &ki, &pb),
                   M5_EINVAL);
  assert_problem(&pb, "MANDATORY_IE_INCORRECT", "/supi");
  assert_non_null(strstr(pb.detail, "IMSI"));
  assert_int_equal(
      parse_ki("{\"supi\":\"imsi-0010\",\"aKId\":\"a@b\",\"kAkma\":\"" KAKMA "\"}", &ki, &pb),
      M5_EINVAL);
  assert_problem(&pb, "MANDATORY_IE_INCORRECT", "/supi");
  assert_int_equal(parse_ki("{\"gpsi\":\"msisdn-15551230000\",\"aKId\":\"a@b\",\"kAkma\":\"" KAKMA
                            "\"}",
                            &ki, &pb),
                   M5_EINVAL);
  assert_problem(&pb, "MANDATORY_IE_MISSING", "/supi");
  assert_int_equal(parse_ki("{\"supi\":\"imsi-001010123456789\",\"gpsi\":\"msisdn-1555\","
                            "\"aKId\":\"a@b\",\"kAkma\":\"" KAKMA "\"}",
                            &ki, &pb),
                   M5_EINVAL);
  assert_problem(&pb, "MANDATORY_IE_INCORRECT", "/gpsi");
  assert_int_equal(parse_ki("{\"supi\":\"imsi-001010123456789\",\"aKId\":\"\",\"kAkma\":\"" KAKMA
                            "\"}",
                            &ki, &pb),
                   M5_EINVAL);
  assert_problem(&pb, "MANDATORY_IE_INCORRECT", "/aKId");
  assert_int_equal(
      parse_ki("{\"supi\":\"imsi-001010123456789\",\"aKId\":\"a\\nb\",\"kAkma\":\"" KAKMA "\"}",
               &ki, &pb),
      M5_EINVAL);
  assert_problem(&pb, "MANDATORY_IE_INCORRECT", "/aKId");
  assert_int_equal(parse_ki("{\"supi\":\"imsi-001010123456789\",\"aKId\":\"a@b\",\"kAkma\":\"" KAKMA
                            "\",\"suppFeat\":\"xyz\"}",
                            &ki, &pb),
                   M5_EINVAL);
  assert_problem(&pb, "OPTIONAL_IE_INCORRECT", "/suppFeat");
}

static void test_akid_length_bound(void **state) {
  (void)state;
  char akid[M5_AKMA_AKID_MAX + 2];
  char body[600];
  aanf_key_info_t ki;
  aanf_problem_t pb;
  memset(akid, 'a', M5_AKMA_AKID_MAX);
  akid[M5_AKMA_AKID_MAX] = '\0';
  snprintf(body, sizeof body, "{\"supi\":\"imsi-00101\",\"aKId\":\"%s\",\"kAkma\":\"%s\"}", akid,
           KAKMA);
  assert_int_equal(parse_ki(body, &ki, &pb), 0);
  assert_int_equal(strlen(ki.akid), M5_AKMA_AKID_MAX);
  strcat(akid, "a");
  snprintf(body, sizeof body, "{\"supi\":\"imsi-00101\",\"aKId\":\"%s\",\"kAkma\":\"%s\"}", akid,
           KAKMA);
  assert_int_equal(parse_ki(body, &ki, &pb), M5_EINVAL);
  assert_problem(&pb, "MANDATORY_IE_INCORRECT", "/aKId");
}

static void test_key_req(void **state) {
  (void)state;
  aanf_key_req_t kr;
  aanf_problem_t pb;
  static const uint8_t tls13[5] = {1, 0, 0, 0, 7}, psk_gcm[5] = {1, 0, 1, 0x00, 0xa8};
  assert_int_equal(parse_kr("{\"afId\":\"localhost\",\"aKId\":\"" AKID "\"}", &kr, &pb), 0);
  assert_string_equal(kr.af_id, "localhost");
  assert_string_equal(kr.akid, AKID);
  assert_memory_equal(kr.ua, tls13, 5);
  assert_false(kr.anon);
  assert_int_equal(parse_kr("{\"afId\":\"m5s.example.org\",\"aKId\":\"x@y\",\"uaSecProtId\":"
                            "\"01000100a8\",\"anonInd\":true,\"suppFeat\":\"\",\"gpsi\":1}",
                            &kr, &pb),
                   0);
  assert_memory_equal(kr.ua, psk_gcm, 5);
  assert_true(kr.anon);

  assert_int_equal(parse_kr("{\"aKId\":\"x@y\"}", &kr, &pb), M5_EINVAL);
  assert_problem(&pb, "MANDATORY_IE_MISSING", "/afId");
  assert_int_equal(parse_kr("{\"afId\":\"localhost\"}", &kr, &pb), M5_EINVAL);
  assert_problem(&pb, "MANDATORY_IE_MISSING", "/aKId");
  assert_int_equal(parse_kr("{\"afId\":[],\"aKId\":\"x@y\"}", &kr, &pb), M5_EINVAL);
  assert_problem(&pb, "MANDATORY_IE_INCORRECT", "/afId");
  assert_int_equal(parse_kr("{\"afId\":\"bad_host.\",\"aKId\":\"x@y\"}", &kr, &pb), M5_EINVAL);
  assert_problem(&pb, "MANDATORY_IE_INCORRECT", "/afId");
  assert_int_equal(
      parse_kr("{\"afId\":\"localhost\",\"aKId\":\"x@y\",\"uaSecProtId\":\"0100\"}", &kr, &pb),
      M5_EINVAL);
  assert_problem(&pb, "OPTIONAL_IE_INCORRECT", "/uaSecProtId");
  assert_int_equal(
      parse_kr("{\"afId\":\"localhost\",\"aKId\":\"x@y\",\"uaSecProtId\":7}", &kr, &pb), M5_EINVAL);
  assert_problem(&pb, "OPTIONAL_IE_INCORRECT", "/uaSecProtId");
  assert_int_equal(
      parse_kr("{\"afId\":\"localhost\",\"aKId\":\"x@y\",\"anonInd\":\"yes\"}", &kr, &pb),
      M5_EINVAL);
  assert_problem(&pb, "OPTIONAL_IE_INCORRECT", "/anonInd");
}

static void test_ctx_remove(void **state) {
  (void)state;
  aanf_ctx_remove_t cr;
  aanf_problem_t pb;
  const char *ok = "{\"supi\":\"imsi-001010123456789\"}";
  assert_int_equal(aanf_msg_parse_ctx_remove((const uint8_t *)ok, strlen(ok), &cr, &pb), 0);
  assert_string_equal(cr.supi, "001010123456789");
  const char *missing = "{}";
  assert_int_equal(aanf_msg_parse_ctx_remove((const uint8_t *)missing, 2, &cr, &pb), M5_EINVAL);
  assert_problem(&pb, "MANDATORY_IE_MISSING", "/supi");
}

/* Found by fuzz/aanf_msg: jansson's error text quotes the peer's bytes; a 400 must still be
 * encodable when those bytes are not UTF-8 (it used to fail as if out of memory). */
static void test_problem_from_invalid_utf8_body(void **state) {
  (void)state;
  static const uint8_t body[] = {'{', '"', 'a', 'f', 'I', '\\', 0xdd, 0x93, '"', ':', '1', '}'};
  aanf_key_req_t kr;
  aanf_problem_t pb;
  assert_int_equal(aanf_msg_parse_key_req(body, sizeof body, &kr, &pb), M5_EINVAL);
  assert_int_equal(pb.status, 400);
  char *out;
  size_t len;
  assert_int_equal(aanf_msg_problem_json(&pb, &out, &len), 0);
  json_t *j = json_loads(out, 0, NULL);
  assert_non_null(j);
  assert_string_equal(json_string_value(json_object_get(j, "cause")), "INVALID_MSG_FORMAT");
  json_decref(j);
  free(out);
}

static void test_problem_json(void **state) {
  (void)state;
  aanf_problem_t pb;
  char *out;
  size_t len;
  aanf_problem_set(&pb, 400, "Bad Request", "MANDATORY_IE_INCORRECT", "/kAkma", "kAkma %s",
                   "must be hex");
  assert_int_equal(aanf_msg_problem_json(&pb, &out, &len), 0);
  json_t *j = json_loads(out, JSON_REJECT_DUPLICATES, NULL);
  assert_non_null(j);
  assert_int_equal(json_integer_value(json_object_get(j, "status")), 400);
  assert_string_equal(json_string_value(json_object_get(j, "title")), "Bad Request");
  assert_string_equal(json_string_value(json_object_get(j, "cause")), "MANDATORY_IE_INCORRECT");
  assert_string_equal(json_string_value(json_object_get(j, "detail")), "kAkma must be hex");
  json_t *ip = json_array_get(json_object_get(j, "invalidParams"), 0);
  assert_string_equal(json_string_value(json_object_get(ip, "param")), "/kAkma");
  assert_string_equal(json_string_value(json_object_get(ip, "reason")), "kAkma must be hex");
  json_decref(j);
  free(out);

  aanf_problem_set(&pb, 415, "Unsupported Media Type", NULL, NULL, "json only");
  assert_int_equal(aanf_msg_problem_json(&pb, &out, &len), 0);
  j = json_loads(out, 0, NULL);
  assert_null(json_object_get(j, "cause"));
  assert_null(json_object_get(j, "invalidParams"));
  json_decref(j);
  free(out);
}

static void test_af_key_data_json(void **state) {
  (void)state;
  uint8_t kaf[M5_AKMA_KEY_LEN];
  char *out;
  size_t len;
  for (int i = 0; i < M5_AKMA_KEY_LEN; i++)
    kaf[i] = (uint8_t)(0xa0 + i % 16);
  assert_int_equal(aanf_msg_af_key_data_json(kaf, 86400 + 3661, "001010123456789", &out, &len), 0);
  json_t *j = json_loads(out, 0, NULL);
  assert_string_equal(json_string_value(json_object_get(j, "expiry")), "1970-01-02T01:01:01Z");
  assert_string_equal(json_string_value(json_object_get(j, "supi")), "imsi-001010123456789");
  assert_int_equal(strlen(json_string_value(json_object_get(j, "kaf"))), 64);
  assert_memory_equal(json_string_value(json_object_get(j, "kaf")), "a0a1a2a3", 8);
  json_decref(j);
  aanf_msg_free_secret(out, len);

  assert_int_equal(aanf_msg_af_key_data_json(kaf, 0, NULL, &out, &len), 0);
  j = json_loads(out, 0, NULL);
  assert_null(json_object_get(j, "supi"));
  assert_string_equal(json_string_value(json_object_get(j, "expiry")), "1970-01-01T00:00:00Z");
  json_decref(j);
  aanf_msg_free_secret(out, len);
}

int main(void) {
  aanf_msg_init();
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_key_info_ok),
      cmocka_unit_test(test_key_info_format_errors),
      cmocka_unit_test(test_key_info_member_errors),
      cmocka_unit_test(test_akid_length_bound),
      cmocka_unit_test(test_key_req),
      cmocka_unit_test(test_ctx_remove),
      cmocka_unit_test(test_problem_json),
      cmocka_unit_test(test_problem_from_invalid_utf8_body),
      cmocka_unit_test(test_af_key_data_json),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
