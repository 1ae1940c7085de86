/* Unit tests for the MSGin5G-1 body codec (msg/msg.h, architecture §3.1): round trips of every
 * type, the diagnostics naming each missing or mistyped IE, strict base64 and RFC 3339, the
 * validators, and what must be tolerated (unknown members, open enum values). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/err.h"
#include "msg/msg.h"
#include "msg/msg_int.h"

#include <jansson.h>

static int parse(const char *text, m5_msg_t *m, char *diag, size_t dl) {
  return m5_msg_parse((const uint8_t *)text, strlen(text), m, diag, dl);
}

/* Parses text, expects M5_EINVAL with exactly this diagnostic. */
static void expect_diag(const char *text, const char *want) {
  m5_msg_t m;
  char diag[256];
  int rc = parse(text, &m, diag, sizeof diag);
  if (rc != M5_EINVAL || strcmp(diag, want)) {
    print_error("body %s: rc %d diag '%s', want '%s'\n", text, rc, diag, want);
    fail();
  }
  assert_null(m.payload);
  assert_null(m.client_profile_json);
}

static void set_addr(m5_msg_addr_t *a, const char *type, const char *addr) {
  snprintf(a->type, sizeof a->type, "%s", type);
  snprintf(a->addr, sizeof a->addr, "%s", addr);
}

/* Encodes m, parses the text back and compares every member the type carries. */
static void round_trip(const m5_msg_t *m, const char *want_text) {
  char *text = NULL;
  size_t len = 0;
  assert_int_equal(m5_msg_encode(m, &text, &len), M5_OK);
  assert_non_null(text);
  assert_int_equal(len, strlen(text));
  if (want_text) assert_string_equal(text, want_text);
  m5_msg_t back;
  char diag[128];
  int rc = parse(text, &back, diag, sizeof diag);
  if (rc) print_error("%s: %s\n", text, diag);
  assert_int_equal(rc, M5_OK);
  assert_int_equal(back.type, m->type);
  assert_string_equal(back.ue_svc_id, m->ue_svc_id);
  assert_string_equal(back.ori.type, m->ori.type);
  assert_string_equal(back.ori.addr, m->ori.addr);
  assert_string_equal(back.msg_id, m->msg_id);
  assert_int_equal(back.payload_len, m->payload_len);
  if (m->payload_len) assert_memory_equal(back.payload, m->payload, m->payload_len);
  assert_int_equal(back.prio, m->prio);
  assert_int_equal(back.expr_time, m->expr_time);
  assert_int_equal(back.expiry, m->expiry);
  assert_string_equal(back.status, m->status);
  assert_string_equal(back.failure_cause, m->failure_cause);
  assert_string_equal(back.deliv_st, m->deliv_st);
  if (m->client_profile_json)
    assert_string_equal(back.client_profile_json, m->client_profile_json);
  else
    assert_null(back.client_profile_json);
  assert_int_equal(back.n_topics, m->n_topics);
  for (size_t i = 0; i < m->n_topics; i++)
    assert_string_equal(back.topics[i], m->topics[i]);
  m5_msg_free(&back);
  free(text);
}

static m5_msg_t blank(m5_msg_type_t type) {
  m5_msg_t m;
  memset(&m, 0, sizeof m);
  m.type = type;
  m.prio = M5_PRIO_MIDDLE;
  return m;
}

static void test_round_trip_reg_dereg(void **state) {
  (void)state;
  m5_msg_t m = blank(M5_MSG_REG);
  strcpy(m.ue_svc_id, "ue1@example");
  round_trip(&m, "{\"msgType\":\"REG\",\"ueSvcId\":\"ue1@example\"}");
  m.client_profile_json = "{\"maxSegSize\":512,\"aggregation\":true}";
  m.expiry = 1748779200; /* 2025-06-01T12:00:00Z */
  round_trip(&m, "{\"msgType\":\"REG\",\"ueSvcId\":\"ue1@example\",\"clientProfile\":"
                 "{\"maxSegSize\":512,\"aggregation\":true},\"expiry\":\"2025-06-01T12:00:00Z\"}");
  m5_msg_t d = blank(M5_MSG_DEREG);
  strcpy(d.ue_svc_id, "ue1");
  round_trip(&d, "{\"msgType\":\"DEREG\",\"ueSvcId\":\"ue1\"}");
}

static void test_round_trip_msg(void **state) {
  (void)state;
  m5_msg_t m = blank(M5_MSG_MSG);
  set_addr(&m.ori, "UE", "ue1");
  set_addr(&m.dest, "AS", "meter-as");
  strcpy(m.msg_id, "m-1");
  uint8_t bin[] = {0, 1, 2, 0xff, 0xfe};
  m.payload = bin;
  m.payload_len = sizeof bin;
  round_trip(&m, "{\"msgType\":\"MSG\",\"oriAddr\":{\"addrType\":\"UE\",\"addr\":\"ue1\"},"
                 "\"destAddr\":{\"addrType\":\"AS\",\"addr\":\"meter-as\"},\"msgId\":\"m-1\","
                 "\"payload\":\"AAEC//4=\"}");
  strcpy(m.app_id, "meter-app");
  m.deliv_st_req = true;
  m.prio = M5_PRIO_HIGH;
  m.sto_fwd = true;
  m.expr_time = 1748779200;
  round_trip(&m, "{\"msgType\":\"MSG\",\"oriAddr\":{\"addrType\":\"UE\",\"addr\":\"ue1\"},"
                 "\"destAddr\":{\"addrType\":\"AS\",\"addr\":\"meter-as\"},\"msgId\":\"m-1\","
                 "\"appId\":\"meter-app\",\"delivStReqInd\":true,\"payload\":\"AAEC//4=\","
                 "\"priority\":\"HIGH\",\"stoAndFwInd\":true,"
                 "\"stoAndFwParams\":{\"exprTime\":\"2025-06-01T12:00:00Z\"}}");
  m.prio = M5_PRIO_LOW;
  m.payload = NULL;
  m.payload_len = 0;
  round_trip(&m, NULL);
}

static void test_round_trip_msgresp_imdn(void **state) {
  (void)state;
  m5_msg_t r = blank(M5_MSG_MSGRESP);
  strcpy(r.msg_id, "m-1");
  round_trip(&r, "{\"msgType\":\"MSGRESP\",\"msgId\":\"m-1\"}");
  set_addr(&r.ori, "UE", "ue1");
  strcpy(r.status, "DELY_FAILED");
  strcpy(r.failure_cause, M5_CAUSE_NOT_REGISTERED);
  round_trip(&r, "{\"msgType\":\"MSGRESP\",\"oriAddr\":{\"addrType\":\"UE\",\"addr\":\"ue1\"},"
                 "\"msgId\":\"m-1\",\"status\":\"DELY_FAILED\","
                 "\"failureCause\":\"RECIPIENT_NOT_REGISTERED\"}");
  m5_msg_t i = blank(M5_MSG_IMDN);
  set_addr(&i.ori, "UE", "ue2");
  set_addr(&i.dest, "UE", "ue1");
  strcpy(i.msg_id, "m-1");
  strcpy(i.deliv_st, "REPT_DELY_FAILED");
  strcpy(i.failure_cause, M5_CAUSE_EXPIRED);
  round_trip(&i, "{\"msgType\":\"IMDN\",\"oriAddr\":{\"addrType\":\"UE\",\"addr\":\"ue2\"},"
                 "\"destAddr\":{\"addrType\":\"UE\",\"addr\":\"ue1\"},\"msgId\":\"m-1\","
                 "\"delivSt\":\"REPT_DELY_FAILED\",\"failureCause\":\"EXPIRED\"}");
}

/* The types whose mandatory IEs m5_msg_t does not hold parse (members checked) but cannot be
 * encoded rather than being encoded without them. */
static void test_seg_types(void **state) {
  (void)state;
  m5_msg_t m;
  char diag[128];
  assert_int_equal(
      parse("{\"msgType\":\"SEGREC\",\"segId\":\"s1\",\"segNumb\":[2,3]}", &m, diag, sizeof diag),
      M5_OK);
  assert_int_equal(m.type, M5_MSG_SEGREC);
  m5_msg_free(&m);
  expect_diag("{\"msgType\":\"SEGCONFIR\"}", "segId: missing");
  expect_diag("{\"msgType\":\"SEGREC\",\"segId\":1}", "segId: expected a string");
  m5_msg_t e = blank(M5_MSG_SEGREC);
  char *text = NULL;
  assert_int_equal(m5_msg_encode(&e, &text, NULL), M5_EINVAL);
  assert_null(text);
}

/* TOPICSUB / TOPICUNSUB (TS 23.554 cl. 8.8.1, docs/protocol.md §4): msgTopics kept in the
 * struct, in order; the optional expiry of TOPICSUB; both directions (request and answer). */
static void test_round_trip_topics(void **state) {
  (void)state;
  m5_msg_name_t names[3] = {"meters.east", "alarm:fire_1", "a-b"};
  m5_msg_t m = blank(M5_MSG_TOPICSUB);
  m.topics = names;
  m.n_topics = 1;
  round_trip(&m, "{\"msgType\":\"TOPICSUB\",\"msgTopics\":[\"meters.east\"]}");
  m.n_topics = 3;
  m.expiry = 1748779200;
  round_trip(&m, "{\"msgType\":\"TOPICSUB\",\"msgTopics\":[\"meters.east\",\"alarm:fire_1\","
                 "\"a-b\"],\"expiry\":\"2025-06-01T12:00:00Z\"}");
  /* TOPICUNSUB has no expiry: not written, ignored when read (unknown member). */
  m.type = M5_MSG_TOPICUNSUB;
  char *text = NULL;
  assert_int_equal(m5_msg_encode(&m, &text, NULL), M5_OK);
  assert_string_equal(text, "{\"msgType\":\"TOPICUNSUB\",\"msgTopics\":[\"meters.east\","
                            "\"alarm:fire_1\",\"a-b\"]}");
  free(text);
  m5_msg_t p;
  char diag[128];
  assert_int_equal(parse("{\"msgType\":\"TOPICUNSUB\",\"expiry\":\"x\",\"msgTopics\":[\"t\"]}", &p,
                         diag, sizeof diag),
                   M5_OK);
  assert_int_equal(p.type, M5_MSG_TOPICUNSUB);
  assert_int_equal(p.n_topics, 1);
  assert_string_equal(p.topics[0], "t");
  assert_int_equal(p.expiry, 0);
  m5_msg_free(&p);
  assert_null(p.topics);
  assert_int_equal(p.n_topics, 0);
  /* The most a request may carry: M5_MSG_TOPICS_MAX names of M5_MSG_NAME_MAX characters. */
  static m5_msg_name_t many[M5_MSG_TOPICS_MAX];
  for (size_t i = 0; i < M5_MSG_TOPICS_MAX; i++) {
    memset(many[i], 'x', M5_MSG_NAME_MAX);
    many[i][M5_MSG_NAME_MAX] = '\0';
    snprintf(many[i], 8, "t%03zu", i);
    many[i][4] = '.'; /* snprintf's NUL replaced: still 128 characters */
  }
  m5_msg_t big = blank(M5_MSG_TOPICSUB);
  big.topics = many;
  big.n_topics = M5_MSG_TOPICS_MAX;
  round_trip(&big, NULL);
}

/* Each bad msgTopics is refused naming the IE (and the entry), and nothing leaks. */
static void test_topics_refused(void **state) {
  (void)state;
  expect_diag("{\"msgType\":\"TOPICUNSUB\"}", "msgTopics: missing");
  expect_diag("{\"msgType\":\"TOPICSUB\",\"msgTopics\":\"t\"}", "msgTopics: expected an array");
  expect_diag("{\"msgType\":\"TOPICSUB\",\"msgTopics\":[]}",
              "msgTopics: empty (expected 1-32 topic names)");
  expect_diag("{\"msgType\":\"TOPICSUB\",\"msgTopics\":[\"a\",7]}", "msgTopics[1]: expected a string");
  expect_diag("{\"msgType\":\"TOPICSUB\",\"msgTopics\":[\"\"]}",
              "msgTopics[0]: expected a topic name of 1-128 characters of A-Z a-z 0-9 . _ : -");
  expect_diag("{\"msgType\":\"TOPICUNSUB\",\"msgTopics\":[\"ok\",\"a b\"]}",
              "msgTopics[1]: expected a topic name of 1-128 characters of A-Z a-z 0-9 . _ : -");
  expect_diag("{\"msgType\":\"TOPICSUB\",\"msgTopics\":[\"a/b\"]}",
              "msgTopics[0]: expected a topic name of 1-128 characters of A-Z a-z 0-9 . _ : -");
  expect_diag("{\"msgType\":\"TOPICSUB\",\"msgTopics\":[\"caf\u00e9\"]}",
              "msgTopics[0]: expected a topic name of 1-128 characters of A-Z a-z 0-9 . _ : -");
  expect_diag("{\"msgType\":\"TOPICSUB\",\"msgTopics\":[\"a\",\"b\",\"a\"]}",
              "msgTopics[2]: duplicate of msgTopics[0]");
  expect_diag("{\"msgType\":\"TOPICSUB\",\"msgTopics\":[\"t\"],\"expiry\":\"tomorrow\"}",
              "expiry: expected an RFC 3339 date-time after 1970");
  /* 129 characters, and 33 topics. */
  char body[8192];
  char long_name[M5_MSG_NAME_MAX + 2];
  memset(long_name, 'n', M5_MSG_NAME_MAX + 1);
  long_name[M5_MSG_NAME_MAX + 1] = '\0';
  snprintf(body, sizeof body, "{\"msgType\":\"TOPICSUB\",\"msgTopics\":[\"%s\"]}", long_name);
  expect_diag(body, "msgTopics[0]: expected a topic name of 1-128 characters of A-Z a-z 0-9 . _ : -");
  long_name[M5_MSG_NAME_MAX] = '\0'; /* 128: accepted */
  snprintf(body, sizeof body, "{\"msgType\":\"TOPICSUB\",\"msgTopics\":[\"%s\"]}", long_name);
  m5_msg_t m;
  char diag[256];
  assert_int_equal(parse(body, &m, diag, sizeof diag), M5_OK);
  m5_msg_free(&m);
  size_t o = (size_t)snprintf(body, sizeof body, "{\"msgType\":\"TOPICSUB\",\"msgTopics\":[");
  for (int i = 0; i <= M5_MSG_TOPICS_MAX; i++)
    o += (size_t)snprintf(body + o, sizeof body - o, "%s\"t%d\"", i ? "," : "", i);
  snprintf(body + o, sizeof body - o, "]}");
  expect_diag(body, "msgTopics: 33 topics, at most 32 in one request");
  /* The encoder refuses what the parser would: a bad name, a duplicate, none, too many. */
  m5_msg_name_t names[2] = {"a", "a"};
  m5_msg_t e = blank(M5_MSG_TOPICSUB);
  char *text = NULL;
  assert_int_equal(m5_msg_encode(&e, &text, NULL), M5_EINVAL); /* no topics */
  e.topics = names;
  e.n_topics = 2;
  assert_int_equal(m5_msg_encode(&e, &text, NULL), M5_EINVAL); /* duplicate */
  strcpy(names[1], "b c");
  assert_int_equal(m5_msg_encode(&e, &text, NULL), M5_EINVAL); /* bad name */
  strcpy(names[1], "b");
  e.n_topics = M5_MSG_TOPICS_MAX + 1;
  assert_int_equal(m5_msg_encode(&e, &text, NULL), M5_EINVAL); /* too many */
  assert_null(text);
  e.n_topics = 2;
  assert_int_equal(m5_msg_encode(&e, &text, NULL), M5_OK);
  free(text);
}

/* GROUP, BC and TOPIC addresses follow the name rule (UE and AS addresses keep theirs). */
static void test_named_addresses(void **state) {
  (void)state;
  assert_true(m5_msg_name_valid("g"));
  assert_true(m5_msg_name_valid("Fleet-7.area_3:north"));
  assert_false(m5_msg_name_valid(""));
  assert_false(m5_msg_name_valid("a b"));
  assert_false(m5_msg_name_valid("a@b"));
  assert_false(m5_msg_name_valid("a/b"));
  assert_false(m5_msg_name_valid("a\xc3\xa9"));
  char n[M5_MSG_NAME_MAX + 2];
  memset(n, 'a', sizeof n - 1);
  n[M5_MSG_NAME_MAX] = '\0';
  assert_true(m5_msg_name_valid(n));
  n[M5_MSG_NAME_MAX] = 'a';
  n[M5_MSG_NAME_MAX + 1] = '\0';
  assert_false(m5_msg_name_valid(n));
  assert_true(m5_msg_addr_is_named("GROUP"));
  assert_true(m5_msg_addr_is_named("BC"));
  assert_true(m5_msg_addr_is_named("TOPIC"));
  assert_false(m5_msg_addr_is_named("UE"));
  assert_false(m5_msg_addr_is_named("group"));

  static const char *const types[] = {"GROUP", "BC", "TOPIC"};
  for (size_t i = 0; i < 3; i++) {
    char body[512], want[256];
    m5_msg_t m;
    char diag[256];
    snprintf(body, sizeof body,
             "{\"msgType\":\"MSG\",\"oriAddr\":{\"addrType\":\"UE\",\"addr\":\"ue@1\"},"
             "\"destAddr\":{\"addrType\":\"%s\",\"addr\":\"fleet.7\"},\"msgId\":\"m\",\"payload\":\"\"}",
             types[i]);
    assert_int_equal(parse(body, &m, diag, sizeof diag), M5_OK);
    assert_string_equal(m.dest.type, types[i]);
    assert_string_equal(m.dest.addr, "fleet.7");
    char *text = NULL;
    assert_int_equal(m5_msg_encode(&m, &text, NULL), M5_OK);
    free(text);
    strcpy(m.dest.addr, "fleet@7"); /* a valid UE Service ID, not a name */
    assert_int_equal(m5_msg_encode(&m, &text, NULL), M5_EINVAL);
    assert_null(text);
    m5_msg_free(&m);
    snprintf(body, sizeof body,
             "{\"msgType\":\"MSG\",\"oriAddr\":{\"addrType\":\"UE\",\"addr\":\"ue1\"},"
             "\"destAddr\":{\"addrType\":\"%s\",\"addr\":\"fleet@7\"},\"msgId\":\"m\",\"payload\":\"\"}",
             types[i]);
    snprintf(want, sizeof want,
             "destAddr.addr: expected a %s name of 1-128 characters of A-Z a-z 0-9 . _ : -",
             types[i]);
    expect_diag(body, want);
  }
  /* The same rule on the TS 29.538 form (an AS's ASMessageDelivery to a group). */
  static const char as_body[] = "{\"oriAddr\":{\"addrType\":\"AS\",\"addr\":\"as1\"},"
                                "\"destAddr\":{\"addrType\":\"GROUP\",\"addr\":\"g#1\"},"
                                "\"msgId\":\"m\",\"stoAndFwInd\":false}";
  m5_msg_t a;
  char diag[256];
  assert_int_equal(m5_msg_parse_as((const uint8_t *)as_body, strlen(as_body), M5_MSG_MSG, &a, diag,
                                   sizeof diag),
                   M5_EINVAL);
  assert_string_equal(diag, "destAddr.addr: expected a GROUP name of 1-128 characters of A-Z a-z "
                            "0-9 . _ : -");
}

static void test_every_mandatory_ie_missing_is_named(void **state) {
  (void)state;
  static const struct {
    const char *body, *diag;
  } cases[] = {
      {"{\"msgType\":\"REG\"}", "ueSvcId: missing"},
      {"{\"msgType\":\"DEREG\"}", "ueSvcId: missing"},
      {"{\"msgType\":\"MSG\",\"destAddr\":{\"addrType\":\"UE\",\"addr\":\"b\"},\"msgId\":\"1\","
       "\"payload\":\"\"}",
       "oriAddr: missing"},
      {"{\"msgType\":\"MSG\",\"oriAddr\":{\"addrType\":\"UE\",\"addr\":\"a\"},\"msgId\":\"1\","
       "\"payload\":\"\"}",
       "destAddr: missing"},
      {"{\"msgType\":\"MSG\",\"oriAddr\":{\"addrType\":\"UE\",\"addr\":\"a\"},"
       "\"destAddr\":{\"addrType\":\"UE\",\"addr\":\"b\"},\"payload\":\"\"}",
       "msgId: missing"},
      {"{\"msgType\":\"MSG\",\"oriAddr\":{\"addrType\":\"UE\",\"addr\":\"a\"},"
       "\"destAddr\":{\"addrType\":\"UE\",\"addr\":\"b\"},\"msgId\":\"1\"}",
       "payload: missing"},
      {"{\"msgType\":\"MSG\",\"oriAddr\":{\"addr\":\"a\"},"
       "\"destAddr\":{\"addrType\":\"UE\",\"addr\":\"b\"},\"msgId\":\"1\",\"payload\":\"\"}",
       "oriAddr.addrType: missing"},
      {"{\"msgType\":\"MSG\",\"oriAddr\":{\"addrType\":\"UE\",\"addr\":\"a\"},"
       "\"destAddr\":{\"addrType\":\"UE\"},\"msgId\":\"1\",\"payload\":\"\"}",
       "destAddr.addr: missing"},
      {"{\"msgType\":\"MSGRESP\"}", "msgId: missing"},
      {"{\"msgType\":\"IMDN\",\"oriAddr\":{\"addrType\":\"UE\",\"addr\":\"a\"},"
       "\"destAddr\":{\"addrType\":\"UE\",\"addr\":\"b\"},\"msgId\":\"1\"}",
       "delivSt: missing"},
      {"{\"msgType\":\"IMDN\",\"destAddr\":{\"addrType\":\"UE\",\"addr\":\"b\"},\"msgId\":\"1\","
       "\"delivSt\":\"REPT_DELY_SUCCESS\"}",
       "oriAddr: missing"},
      {"{\"ueSvcId\":\"ue1\"}", "msgType: missing"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
    expect_diag(cases[i].body, cases[i].diag);
}

static void test_wrong_types_are_named(void **state) {
  (void)state;
  expect_diag("{\"msgType\":5}", "msgType: expected a string");
  expect_diag("{\"msgType\":\"PING\"}", "msgType: unknown value 'PING'");
  expect_diag("{\"msgType\":\"REG\",\"ueSvcId\":7}", "ueSvcId: expected a string");
  expect_diag("{\"msgType\":\"REG\",\"ueSvcId\":\"ue 1\"}",
              "ueSvcId: expected 1-128 printable characters without spaces");
  expect_diag("{\"msgType\":\"REG\",\"ueSvcId\":\"u\",\"clientProfile\":[]}",
              "clientProfile: expected an object");
  expect_diag("{\"msgType\":\"REG\",\"ueSvcId\":\"u\",\"expiry\":\"tomorrow\"}",
              "expiry: expected an RFC 3339 date-time after 1970");
  const char *head = "{\"msgType\":\"MSG\",\"oriAddr\":{\"addrType\":\"UE\",\"addr\":\"a\"},"
                     "\"destAddr\":{\"addrType\":\"UE\",\"addr\":\"b\"},\"msgId\":\"1\","
                     "\"payload\":\"\",";
  static const struct {
    const char *tail, *diag;
  } cases[] = {
      {"\"delivStReqInd\":\"yes\"}", "delivStReqInd: expected true or false"},
      {"\"stoAndFwInd\":1}", "stoAndFwInd: expected true or false"},
      {"\"priority\":2}", "priority: expected a string"},
      {"\"appId\":[]}", "appId: expected a string"},
      {"\"appId\":\"\"}", "appId: expected 1-128 characters without control characters"},
      {"\"stoAndFwParams\":\"x\"}", "stoAndFwParams: expected an object"},
      {"\"stoAndFwParams\":{\"exprTime\":\"2025-02-30T00:00:00Z\"}}",
       "stoAndFwParams.exprTime: expected an RFC 3339 date-time after 1970"},
      {"\"segInd\":\"true\"}", "segInd: expected a boolean"},
      {"\"segParams\":[]}", "segParams: expected an object"},
  };
  char body[512];
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    snprintf(body, sizeof body, "%s%s", head, cases[i].tail);
    expect_diag(body, cases[i].diag);
  }
  expect_diag("{\"msgType\":\"MSG\",\"oriAddr\":\"ue1\"}", "oriAddr: expected an object");
  expect_diag("{\"msgType\":\"MSG\",\"oriAddr\":{\"addrType\":\"UE\",\"addr\":1}}",
              "oriAddr.addr: expected a string");
  expect_diag("{\"msgType\":\"MSG\",\"oriAddr\":{\"addrType\":\"A-VERY-LONG-TYPE-NAME\","
              "\"addr\":\"a\"}}",
              "oriAddr.addrType: expected a word of 1-15 characters such as UE or AS");
}

static void test_body_level_errors(void **state) {
  (void)state;
  expect_diag("[1,2]", "body: not a JSON object");
  expect_diag("\"REG\"", "body: not a JSON object");
  m5_msg_t m;
  char diag[128];
  assert_int_equal(m5_msg_parse(NULL, 0, &m, diag, sizeof diag), M5_EINVAL);
  assert_string_equal(diag, "body: empty");
  assert_int_equal(parse("{\"msgType\":", &m, diag, sizeof diag), M5_EINVAL);
  assert_non_null(strstr(diag, "body: not JSON"));
  /* A NUL inside a string and invalid UTF-8 are refused by the JSON layer. */
  assert_int_equal(parse("{\"msgType\":\"REG\",\"ueSvcId\":\"a\\u0000b\"}", &m, diag, sizeof diag),
                   M5_EINVAL);
  assert_int_equal(parse("{\"msgType\":\"REG\",\"ueSvcId\":\"\xc3\x28\"}", &m, diag, sizeof diag),
                   M5_EINVAL);
  /* A short diag buffer is truncated, never overrun. */
  char tiny[6];
  assert_int_equal(parse("{\"msgType\":\"REG\"}", &m, tiny, sizeof tiny), M5_EINVAL);
  assert_string_equal(tiny, "ueSvc");
}

static void test_duplicate_keys_rejected(void **state) {
  (void)state;
  expect_diag("{\"msgType\":\"MSGRESP\",\"msgId\":\"a\",\"msgId\":\"b\"}",
              "body: duplicate key 'msgId'");
  expect_diag("{\"msgType\":\"MSG\",\"msgType\":\"REG\"}", "body: duplicate key 'msgType'");
  expect_diag("{\"msgType\":\"MSG\",\"oriAddr\":{\"addr\":\"a\",\"addr\":\"b\"}}",
              "body: duplicate key 'addr'");
}

static void test_base64_is_strict(void **state) {
  (void)state;
  static const struct {
    const char *b64;
    const char *bytes;
    size_t n;
  } good[] = {
      {"", "", 0},
      {"Zg==", "f", 1},
      {"Zm8=", "fo", 2},
      {"Zm9v", "foo", 3},
      {"Zm9vYg==", "foob", 4},
      {"Zm9vYmE=", "fooba", 5},
      {"Zm9vYmFy", "foobar", 6},
      {"+/+/", "\xfb\xff\xbf", 3},
  };
  char body[256];
  m5_msg_t m;
  char diag[128];
#define B64_BODY                                                                                   \
  "{\"msgType\":\"MSG\",\"oriAddr\":{\"addrType\":\"UE\",\"addr\":\"a\"},"                         \
  "\"destAddr\":{\"addrType\":\"UE\",\"addr\":\"b\"},\"msgId\":\"1\",\"payload\":\"%s\"}"
  for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
    snprintf(body, sizeof body, B64_BODY, good[i].b64);
    assert_int_equal(parse(body, &m, diag, sizeof diag), M5_OK);
    assert_int_equal(m.payload_len, good[i].n);
    if (good[i].n) assert_memory_equal(m.payload, good[i].bytes, good[i].n);
    m5_msg_free(&m);
  }
  /* RFC 4648 §5 alphabet, missing padding, whitespace, padding in the middle, too much padding,
   * non-zero bits before the padding. */
  static const char *const bad[] = {"Zm9v-_",   "Zg",    "Zm8",     "Zm9v\\nYmFy",
                                    "Zg==Zm9v", "Z===",  "====",    "Zh==",
                                    "Zm9=",     " Zm9v", "Zm9vYg=", "Zm9vYg==="};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    snprintf(body, sizeof body, B64_BODY, bad[i]);
    expect_diag(body, "payload: not base64 (RFC 4648 §4, with padding)");
  }
}

static void test_msg_id_charset_and_length(void **state) {
  (void)state;
  assert_true(m5_msg_id_valid("a"));
  assert_true(m5_msg_id_valid("AZaz09._:-"));
  char id[M5_MSG_ID_MAX + 2];
  memset(id, 'x', sizeof id);
  id[M5_MSG_ID_MAX] = '\0';
  assert_true(m5_msg_id_valid(id));
  id[M5_MSG_ID_MAX] = 'x';
  id[M5_MSG_ID_MAX + 1] = '\0';
  assert_false(m5_msg_id_valid(id));
  assert_false(m5_msg_id_valid(""));
  assert_false(m5_msg_id_valid("a b"));
  assert_false(m5_msg_id_valid("a/b"));
  assert_false(m5_msg_id_valid("a@b"));
  assert_false(m5_msg_id_valid("\xc3\xa9"));
  const char *want = "msgId: expected 1-64 characters of A-Z a-z 0-9 . _ : -";
  expect_diag("{\"msgType\":\"MSGRESP\",\"msgId\":\"\"}", want);
  expect_diag("{\"msgType\":\"MSGRESP\",\"msgId\":\"a/b\"}", want);
  char body[200];
  snprintf(body, sizeof body, "{\"msgType\":\"MSGRESP\",\"msgId\":\"%s\"}", id);
  expect_diag(body, want);

  assert_true(m5_msg_svc_id_valid("ue1@operator.example"));
  assert_false(m5_msg_svc_id_valid(""));
  assert_false(m5_msg_svc_id_valid("ue\t1"));
  char svc[M5_MSG_ADDR_MAX + 2];
  memset(svc, 's', sizeof svc);
  svc[M5_MSG_ADDR_MAX] = '\0';
  assert_true(m5_msg_svc_id_valid(svc));
  svc[M5_MSG_ADDR_MAX] = 's';
  svc[M5_MSG_ADDR_MAX + 1] = '\0';
  assert_false(m5_msg_svc_id_valid(svc));
}

static void test_unknown_members_ignored_open_enums_kept(void **state) {
  (void)state;
  m5_msg_t m;
  char diag[128];
  const char *body = "{\"msgType\":\"MSG\",\"future\":{\"x\":[1,2]},"
                     "\"oriAddr\":{\"addrType\":\"MQTT\",\"addr\":\"a\",\"extra\":1},"
                     "\"destAddr\":{\"addrType\":\"TOPIC\",\"addr\":\"t.1\"},\"msgId\":\"1\","
                     "\"payload\":\"aGk=\",\"priority\":\"URGENT\",\"ueSvcId\":17}";
  assert_int_equal(parse(body, &m, diag, sizeof diag), M5_OK);
  assert_string_equal(m.ori.type, "MQTT");
  assert_string_equal(m.dest.type, "TOPIC");
  assert_int_equal(m.prio, M5_PRIO_MIDDLE);
  assert_int_equal(m.payload_len, 2);
  assert_memory_equal(m.payload, "hi", 2);
  m5_msg_free(&m);
  assert_int_equal(parse("{\"msgType\":\"MSGRESP\",\"msgId\":\"1\",\"status\":\"DELY_LATER\","
                         "\"failureCause\":\"SOMETHING_NEW\"}",
                         &m, diag, sizeof diag),
                   M5_OK);
  assert_string_equal(m.status, "DELY_LATER");
  assert_string_equal(m.failure_cause, "SOMETHING_NEW");
  assert_string_equal(m.msg_id, "1");
  m5_msg_free(&m);
  assert_int_equal(parse("{\"msgType\":\"MSG\",\"oriAddr\":{\"addrType\":\"UE\",\"addr\":\"a\"},"
                         "\"destAddr\":{\"addrType\":\"UE\",\"addr\":\"b\"},\"msgId\":\"1\","
                         "\"payload\":\"\",\"priority\":\"LOW\",\"delivStReqInd\":false}",
                         &m, diag, sizeof diag),
                   M5_OK);
  assert_int_equal(m.prio, M5_PRIO_LOW);
  assert_false(m.deliv_st_req);
  assert_int_equal(m.payload_len, 0);
  m5_msg_free(&m);
}

static void test_rfc3339_forms(void **state) {
  (void)state;
  static const struct {
    const char *text;
    int64_t t;
  } good[] = {
      {"2025-06-01T12:00:00Z", 1748779200},      {"2025-06-01t12:00:00z", 1748779200},
      {"2025-06-01T14:00:00+02:00", 1748779200}, {"2025-06-01T11:30:00.999-00:30", 1748779200},
      {"2024-02-29T00:00:00Z", 1709164800},      {"1970-01-01T00:00:01Z", 1},
      {"2000-03-01T00:00:00Z", 951868800},
  };
  char body[200];
  m5_msg_t m;
  char diag[128];
  for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
    snprintf(body, sizeof body, "{\"msgType\":\"REG\",\"ueSvcId\":\"u\",\"expiry\":\"%s\"}",
             good[i].text);
    assert_int_equal(parse(body, &m, diag, sizeof diag), M5_OK);
    assert_int_equal(m.expiry, good[i].t);
    m5_msg_free(&m);
  }
  static const char *const bad[] = {"2025-06-01 12:00:00Z",     "2025-06-01T12:00:00",
                                    "2023-02-29T00:00:00Z",     "2025-13-01T00:00:00Z",
                                    "2025-06-01T24:00:00Z",     "2025-06-01T12:00:00.Z",
                                    "2025-06-01T12:00:00+0200", "1970-01-01T00:00:00Z",
                                    "25-06-01T12:00:00Z",       "2025-06-01T12:00:00Zjunk"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    snprintf(body, sizeof body, "{\"msgType\":\"REG\",\"ueSvcId\":\"u\",\"expiry\":\"%s\"}",
             bad[i]);
    expect_diag(body, "expiry: expected an RFC 3339 date-time after 1970");
  }
  /* Encoding gives UTC with Z, also across a leap day. */
  m5_msg_t r = blank(M5_MSG_REG);
  strcpy(r.ue_svc_id, "u");
  r.expiry = 1709164800 + 86399;
  round_trip(&r, "{\"msgType\":\"REG\",\"ueSvcId\":\"u\",\"expiry\":\"2024-02-29T23:59:59Z\"}");
}

static void test_encode_refuses_invalid(void **state) {
  (void)state;
  char *text = NULL;
  m5_msg_t m = blank(M5_MSG_MSG);
  set_addr(&m.ori, "UE", "a");
  set_addr(&m.dest, "UE", "b");
  assert_int_equal(m5_msg_encode(&m, &text, NULL), M5_EINVAL); /* no msgId */
  strcpy(m.msg_id, "bad id");
  assert_int_equal(m5_msg_encode(&m, &text, NULL), M5_EINVAL);
  strcpy(m.msg_id, "ok");
  m.dest.addr[0] = '\0';
  assert_int_equal(m5_msg_encode(&m, &text, NULL), M5_EINVAL);
  set_addr(&m.dest, "UE", "b");
  m.prio = (m5_msg_prio_t)7;
  assert_int_equal(m5_msg_encode(&m, &text, NULL), M5_EINVAL);
  m.prio = M5_PRIO_MIDDLE;
  m.expr_time = -5;
  assert_int_equal(m5_msg_encode(&m, &text, NULL), M5_EINVAL);
  m.expr_time = 0;
  assert_int_equal(m5_msg_encode(&m, &text, NULL), M5_OK);
  free(text);
  m5_msg_t r = blank(M5_MSG_REG);
  strcpy(r.ue_svc_id, "u");
  r.client_profile_json = "[1]";
  assert_int_equal(m5_msg_encode(&r, &text, NULL), M5_EINVAL);
  assert_null(text);
}

/* The encoder writes JSON by hand: its text must be what jansson itself writes for the same
 * object (quotes and backslashes escaped, UTF-8 kept as is), and text that is not UTF-8 is
 * refused rather than written. */
static void test_encode_escapes_like_jansson(void **state) {
  (void)state;
  m5_msg_t m = blank(M5_MSG_MSG);
  set_addr(&m.ori, "UE", "ue\\\"1");
  set_addr(&m.dest, "UE", "b");
  strcpy(m.msg_id, "x");
  strcpy(m.app_id, "caf\xc3\xa9 \"quoted\" back\\slash \xf0\x9f\x93\xa1");
  char *text = NULL;
  size_t len = 0;
  assert_int_equal(m5_msg_encode(&m, &text, &len), M5_OK);
  json_t *v = json_loads(text, JSON_REJECT_DUPLICATES, NULL);
  assert_non_null(v);
  char *canon = json_dumps(v, JSON_COMPACT);
  assert_string_equal(text, canon);
  assert_string_equal(json_string_value(json_object_get(v, "appId")), m.app_id);
  assert_string_equal(json_string_value(json_object_get(json_object_get(v, "oriAddr"), "addr")),
                      m.ori.addr);
  free(canon);
  json_decref(v);
  free(text);
  round_trip(&m, NULL);

  const char *bad_utf8[] = {"\xc3", "a\xff", "\xed\xa0\x80" /* a surrogate */,
                            "\xc0\xaf" /* overlong */, "\xf4\x90\x80\x80" /* > U+10FFFF */};
  for (size_t i = 0; i < sizeof bad_utf8 / sizeof bad_utf8[0]; i++) {
    snprintf(m.app_id, sizeof m.app_id, "%s", bad_utf8[i]);
    text = NULL;
    assert_int_equal(m5_msg_encode(&m, &text, NULL), M5_EINVAL);
    assert_null(text);
  }
}

/* TS 29.538 bodies: the same members without msgType, both ways; stoAndFwInd's presence is
 * reported (mandatory in ASMessageDelivery). */
static void test_29538_bodies(void **state) {
  (void)state;
  m5_msg_t m = blank(M5_MSG_MSG);
  set_addr(&m.ori, "UE", "ue1");
  set_addr(&m.dest, "AS", "as1");
  strcpy(m.msg_id, "p2a-1");
  uint8_t bin[] = {1, 2, 3};
  m.payload = bin;
  m.payload_len = sizeof bin;
  char *text = NULL;
  size_t len = 0;
  assert_int_equal(m5_msg_encode_as(&m, &text, &len), M5_OK);
  assert_string_equal(text, "{\"oriAddr\":{\"addrType\":\"UE\",\"addr\":\"ue1\"},"
                            "\"destAddr\":{\"addrType\":\"AS\",\"addr\":\"as1\"},"
                            "\"msgId\":\"p2a-1\",\"payload\":\"AQID\",\"stoAndFwInd\":false}");
  assert_int_equal(len, strlen(text));
  m5_msg_t back;
  char diag[128];
  assert_int_equal(m5_msg_parse_as((const uint8_t *)text, len, M5_MSG_MSG, &back, diag, sizeof diag),
                   M5_OK);
  assert_true(back.sto_fwd_given); /* mandatory in UEMessageDelivery: always written */
  assert_string_equal(back.dest.addr, "as1");
  assert_int_equal(back.payload_len, 3);
  m5_msg_free(&back);
  free(text);
  const char *as_msg = "{\"oriAddr\":{\"addrType\":\"AS\",\"addr\":\"as1\"},\"destAddr\":"
                       "{\"addrType\":\"UE\",\"addr\":\"ue1\"},\"msgId\":\"a\",\"payload\":\"aGk=\","
                       "\"stoAndFwInd\":false}";
  assert_int_equal(m5_msg_parse_as((const uint8_t *)as_msg, strlen(as_msg), M5_MSG_MSG, &back, diag,
                                   sizeof diag),
                   M5_OK);
  assert_true(back.sto_fwd_given);
  assert_false(back.sto_fwd);
  m5_msg_free(&back);
  assert_int_equal(m5_msg_parse_as((const uint8_t *)"{\"msgId\":\"a\"}", 13, M5_MSG_MSG, &back, diag,
                                   sizeof diag),
                   M5_EINVAL);
  assert_string_equal(diag, "oriAddr: missing");
  m5_msg_t r = blank(M5_MSG_IMDN);
  set_addr(&r.ori, "UE", "ue1");
  set_addr(&r.dest, "AS", "as1");
  strcpy(r.msg_id, "m");
  strcpy(r.deliv_st, "REPT_DELY_SUCCESS");
  assert_int_equal(m5_msg_encode_as(&r, &text, &len), M5_OK);
  assert_null(strstr(text, "msgType"));
  assert_non_null(strstr(text, "\"delivSt\":\"REPT_DELY_SUCCESS\""));
  assert_int_equal(text[0], '{');
  assert_int_equal(text[1], '"');
  free(text);
}

/* TS 29.538 forms carry only the members their schema declares: priority is a member of
 * ASMessageDelivery (read) but not of UEMessageDelivery (never written to an AS, while the
 * MSGin5G-1 MSG to a UE keeps it); payload is optional in ASMessageDelivery (an absent one is
 * an empty message, written on as "payload":""). */
static void test_29538_members_as_declared(void **state) {
  (void)state;
  m5_msg_t m = blank(M5_MSG_MSG);
  set_addr(&m.ori, "UE", "ue1");
  set_addr(&m.dest, "AS", "as1");
  strcpy(m.msg_id, "p2a-2");
  strcpy(m.app_id, "meter");
  m.prio = M5_PRIO_HIGH;
  m.deliv_st_req = true;
  m.sto_fwd = true;
  m.expr_time = 1780000000;
  uint8_t bin[] = {1, 2, 3};
  m.payload = bin;
  m.payload_len = sizeof bin;
  char *text = NULL;
  size_t len = 0;
  assert_int_equal(m5_msg_encode_as(&m, &text, &len), M5_OK);
  assert_string_equal(text, "{\"oriAddr\":{\"addrType\":\"UE\",\"addr\":\"ue1\"},"
                            "\"destAddr\":{\"addrType\":\"AS\",\"addr\":\"as1\"},"
                            "\"msgId\":\"p2a-2\",\"appId\":\"meter\",\"delivStReqInd\":true,"
                            "\"payload\":\"AQID\",\"stoAndFwInd\":true,"
                            "\"stoAndFwParams\":{\"exprTime\":\"2026-05-28T20:26:40Z\"}}");
  assert_int_equal(len, strlen(text));
  free(text);
  assert_int_equal(m5_msg_encode(&m, &text, &len), M5_OK); /* MSGin5G-1 keeps it */
  assert_non_null(strstr(text, "\"priority\":\"HIGH\""));
  free(text);

  const char *no_payload = "{\"oriAddr\":{\"addrType\":\"AS\",\"addr\":\"as1\"},\"destAddr\":"
                           "{\"addrType\":\"UE\",\"addr\":\"ue1\"},\"msgId\":\"e\","
                           "\"priority\":\"LOW\",\"stoAndFwInd\":true}";
  m5_msg_t back;
  char diag[160];
  assert_int_equal(m5_msg_parse_as((const uint8_t *)no_payload, strlen(no_payload), M5_MSG_MSG,
                                   &back, diag, sizeof diag),
                   M5_OK);
  assert_int_equal(back.payload_len, 0);
  assert_int_equal(back.prio, M5_PRIO_LOW);
  back.type = M5_MSG_MSG;
  assert_int_equal(m5_msg_encode(&back, &text, &len), M5_OK); /* to the UE */
  assert_non_null(strstr(text, "\"payload\":\"\""));
  free(text);
  m5_msg_free(&back);
  /* on MSGin5G-1 payload stays mandatory */
  expect_diag("{\"msgType\":\"MSG\",\"oriAddr\":{\"addrType\":\"UE\",\"addr\":\"a\"},"
              "\"destAddr\":{\"addrType\":\"UE\",\"addr\":\"b\"},\"msgId\":\"1\"}",
              "payload: missing");
}

/* Parses an IMDN with this failureCause JSON text (quoted), expects rc and, on failure, diag;
 * the TS 29.538 DeliveryStatusReport the same. */
static void imdn_cause(const char *cause_json, int want_rc, const char *want_diag,
                       const char *want_cause) {
  char body[1024], as_body[1024], diag[160];
  snprintf(as_body, sizeof as_body,
           "{\"oriAddr\":{\"addrType\":\"UE\",\"addr\":\"a\"},\"destAddr\":{\"addrType\":\"UE\","
           "\"addr\":\"b\"},\"msgId\":\"1\",\"delivSt\":\"REPT_DELY_FAILED\",\"failureCause\":%s}",
           cause_json);
  snprintf(body, sizeof body, "{\"msgType\":\"IMDN\",%s", as_body + 1);
  for (int as = 0; as < 2; as++) {
    m5_msg_t m;
    const char *b = as ? as_body : body;
    int rc = as ? m5_msg_parse_as((const uint8_t *)b, strlen(b), M5_MSG_IMDN, &m, diag, sizeof diag)
                : parse(b, &m, diag, sizeof diag);
    if (rc != want_rc || (want_diag && strcmp(diag, want_diag))) {
      print_error("%s: rc %d diag '%s', want %d '%s'\n", b, rc, diag, want_rc,
                  want_diag ? want_diag : "");
      fail();
    }
    if (rc) continue;
    assert_string_equal(m.failure_cause, want_cause);
    /* passed on intact, in both forms */
    char *text = NULL;
    assert_int_equal(as ? m5_msg_encode_as(&m, &text, NULL) : m5_msg_encode(&m, &text, NULL),
                     M5_OK);
    /* the text as it came, raw UTF-8 (quotes and backslashes are escaped) */
    if (!strpbrk(want_cause, "\"\\") && !strstr(text, want_cause)) {
      print_error("encoded %s, want %s in it\n", text, want_cause);
      fail();
    }
    m5_msg_t back;
    assert_int_equal(as ? m5_msg_parse_as((const uint8_t *)text, strlen(text), M5_MSG_IMDN, &back,
                                          diag, sizeof diag)
                        : parse(text, &back, diag, sizeof diag),
                     M5_OK);
    assert_string_equal(back.failure_cause, want_cause);
    m5_msg_free(&back);
    m5_msg_free(&m);
    free(text);
  }
}

/* failureCause (IMDN, DeliveryStatusReport): 1-256 bytes of printable UTF-8, passed through;
 * control characters, invalid UTF-8 and 257 bytes are refused naming the IE. */
static void test_failure_cause_utf8(void **state) {
  (void)state;
  const char *bad = "failureCause: expected 1-256 bytes of UTF-8 text without control characters";
  imdn_cause("\"RECIPIENT_GONE\"", M5_OK, NULL, "RECIPIENT_GONE");
  imdn_cause("\"disk full: sensor 7 (réservoir Nord) \xe6\xb0\xb4\xe4\xbd\x8d \xf0\x9f\x92\xa7\"",
             M5_OK, NULL,
             "disk full: sensor 7 (réservoir Nord) \xe6\xb0\xb4\xe4\xbd\x8d \xf0\x9f\x92\xa7");
  imdn_cause("\"quote \\\" and \\\\ kept\"", M5_OK, NULL, "quote \" and \\ kept");
  imdn_cause("\"\\u00e9t\\u00e9\"", M5_OK, NULL, "\xc3\xa9t\xc3\xa9"); /* escapes decode */
  /* 256 bytes (128 two-byte characters) pass, 257 do not */
  char c256[600] = "\"", c257[600] = "\"x", want[300] = "";
  for (int i = 0; i < 128; i++) {
    strcat(c256, "\xc3\xa9");
    strcat(c257, "\xc3\xa9");
    strcat(want, "\xc3\xa9");
  }
  strcat(c256, "\"");
  strcat(c257, "\"");
  imdn_cause(c256, M5_OK, NULL, want);
  imdn_cause(c257, M5_EINVAL, bad, NULL);
  imdn_cause("\"\"", M5_EINVAL, bad, NULL);
  imdn_cause("\"tab\\there\"", M5_EINVAL, bad, NULL);
  imdn_cause("\"line\\nbreak\"", M5_EINVAL, bad, NULL);
  imdn_cause("\"del\\u007f\"", M5_EINVAL, bad, NULL);
  imdn_cause("\"c1\\u0085\"", M5_EINVAL, bad, NULL);      /* NEL, a C1 control */
  imdn_cause("\"c1\xc2\x9b\"", M5_EINVAL, bad, NULL);      /* CSI as raw UTF-8 */
  imdn_cause("\"nbsp\xc2\xa0ok\"", M5_OK, NULL, "nbsp\xc2\xa0ok"); /* U+00A0 is printable */
  imdn_cause("\"nul\\u0000\"", M5_EINVAL, "failureCause: contains \\u0000", NULL);
  imdn_cause("\"bad \xff byte\"", M5_EINVAL, "failureCause: not valid UTF-8", NULL);
  imdn_cause("\"cut \xc3\"", M5_EINVAL, "failureCause: not valid UTF-8", NULL);
  imdn_cause("\"overlong \xc0\xaf\"", M5_EINVAL, "failureCause: not valid UTF-8", NULL);
  imdn_cause("\"surrogate \xed\xa0\x80\"", M5_EINVAL, "failureCause: not valid UTF-8", NULL);
  imdn_cause("\"\\ud800\"", M5_EINVAL, "failureCause: an invalid \\u escape (a lone surrogate)",
             NULL);
  imdn_cause("7", M5_EINVAL, "failureCause: expected a string", NULL);
  /* the IE is named wherever the bytes are; a key or the top level is "body" */
  expect_diag("{\"msgType\":\"MSG\",\"oriAddr\":{\"addrType\":\"UE\",\"addr\":\"a\xff\"}}",
              "oriAddr.addr: not valid UTF-8");
  expect_diag("{\"msgType\":\"MSG\",\"k\xff\":1}", "body: not valid UTF-8");
  expect_diag("[\"\xff\"]", "body: not valid UTF-8");
  expect_diag("{\"msgType\":\"MSG\",\"a\":[\"\xff\"]}", "body: not valid UTF-8");
  /* an encoder given a bad cause refuses it */
  m5_msg_t m = blank(M5_MSG_IMDN);
  set_addr(&m.ori, "UE", "a");
  set_addr(&m.dest, "UE", "b");
  strcpy(m.msg_id, "1");
  strcpy(m.deliv_st, "REPT_DELY_FAILED");
  strcpy(m.failure_cause, "bell\a");
  char *text = NULL;
  assert_int_equal(m5_msg_encode_as(&m, &text, NULL), M5_EINVAL);
  assert_null(text);
}

static void test_names(void **state) {
  (void)state;
  assert_string_equal(m5_msg_type_name(M5_MSG_TOPICUNSUB), "TOPICUNSUB");
  assert_string_equal(m5_msg_type_name(M5_MSG_MSGRESP), "MSGRESP");
  assert_string_equal(m5_msg_type_name((m5_msg_type_t)99), "?");
  assert_string_equal(m5_msg_prio_name(M5_PRIO_LOW), "LOW");
  assert_string_equal(m5_msg_prio_name(M5_PRIO_HIGH), "HIGH");
}

/* ---- the scanning parser (msg_scan.c) against the jansson one ----
 * m5_msg_parse reads the usual bodies without jansson and hands everything else to it. The two
 * must never differ: same status, same diagnostic, same message, byte for byte. */

static void same_as_tree(const uint8_t *body, size_t len, int type) {
  m5_msg_t a, b;
  char da[160], db[160];
  int ra = type < 0 ? m5_msg_parse(body, len, &a, da, sizeof da)
                    : m5_msg_parse_as(body, len, (m5_msg_type_t)type, &a, da, sizeof da);
  int rb = msg_parse_tree(body, len, type, &b, db, sizeof db);
  if (ra != rb || strcmp(da, db)) {
    print_error("body %.*s: %d '%s', jansson %d '%s'\n", (int)len, (const char *)body, ra, da, rb,
                db);
    fail();
  }
  if (ra) return;
  assert_int_equal(a.payload_len, b.payload_len);
  if (a.payload_len) assert_memory_equal(a.payload, b.payload, a.payload_len);
  assert_int_equal(a.n_topics, b.n_topics);
  if (a.n_topics) assert_memory_equal(a.topics, b.topics, a.n_topics * sizeof *a.topics);
  if (a.client_profile_json || b.client_profile_json)
    assert_string_equal(a.client_profile_json, b.client_profile_json);
  m5_msg_t ca = a, cb = b;
  ca.payload = cb.payload = NULL;
  ca.topics = cb.topics = NULL;
  ca.client_profile_json = cb.client_profile_json = NULL;
  if (memcmp(&ca, &cb, sizeof ca)) {
    print_error("body %.*s: parsed differently\n", (int)len, (const char *)body);
    fail();
  }
  m5_msg_free(&a);
  m5_msg_free(&b);
}

static void same_as_tree_s(const char *text, int type) {
  same_as_tree((const uint8_t *)text, strlen(text), type);
}

#define USUAL_MSG                                                                              \
  "{\"msgType\":\"MSG\",\"oriAddr\":{\"addrType\":\"UE\",\"addr\":\"ue-a.1\"},"                \
  "\"destAddr\":{\"addrType\":\"UE\",\"addr\":\"ue-b.1\"},\"msgId\":\"m-17\",\"appId\":\"x\","  \
  "\"delivStReqInd\":true,\"payload\":\"AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\","       \
  "\"priority\":\"HIGH\",\"stoAndFwInd\":false,"                                               \
  "\"stoAndFwParams\":{\"exprTime\":\"2030-01-02T03:04:05Z\"}}"

static void test_scan_takes_the_usual_bodies(void **state) {
  (void)state;
  /* The bodies libm5c and m5load send are read without jansson. */
  const char *usual[] = {
      USUAL_MSG,
      "{\"msgType\":\"REG\",\"ueSvcId\":\"ue-a.1\"}",
      "{\"msgType\":\"IMDN\",\"oriAddr\":{\"addrType\":\"UE\",\"addr\":\"b\"},\"destAddr\":"
      "{\"addrType\":\"UE\",\"addr\":\"a\"},\"msgId\":\"m\",\"delivSt\":\"REPT_DELY_SUCCESS\"}",
      " {\n\t\"msgType\" : \"MSGRESP\" ,\r\n \"msgId\":\"m\", \"x\":{\"y\":{}} , \"z\":null } \n",
  };
  for (size_t i = 0; i < sizeof usual / sizeof usual[0]; i++) {
    m5_msg_t m;
    memset(&m, 0, sizeof m);
    m.prio = M5_PRIO_MIDDLE;
    if (msg_scan_parse((const uint8_t *)usual[i], strlen(usual[i]), -1, false, &m) != 0) {
      print_error("not scanned: %s\n", usual[i]);
      fail();
    }
    m5_msg_free(&m);
    same_as_tree_s(usual[i], -1);
  }
  /* TS 29.538 forms (northbound), payload optional there */
  same_as_tree_s("{\"oriAddr\":{\"addrType\":\"AS\",\"addr\":\"as1\"},\"destAddr\":{\"addrType\":"
                 "\"UE\",\"addr\":\"u\"},\"msgId\":\"m\",\"stoAndFwInd\":true}",
                 M5_MSG_MSG);
  same_as_tree_s(USUAL_MSG, M5_MSG_MSG);
  same_as_tree_s(USUAL_MSG, M5_MSG_IMDN);
  same_as_tree_s(USUAL_MSG, 99);
}

static void test_scan_agrees_with_jansson(void **state) {
  (void)state;
  /* What the scan must hand over (or refuse exactly as jansson does). */
  const char *edge[] = {
      "{}", "{ }", "[]", "\"MSG\"", "true", "null", "", " ", "{\"msgType\":\"MSG\"", "{\"msgType\"}",
      "{\"msgType\":\"REG\",\"ueSvcId\":\"u\"}x", "{\"msgType\":\"REG\",\"ueSvcId\":\"u\"}{}",
      "{\"msgType\":\"REG\",\"ueSvcId\":\"u\",}", "{,\"msgType\":\"REG\",\"ueSvcId\":\"u\"}",
      "{\"msgType\":\"REG\" \"ueSvcId\":\"u\"}", "{\"msgType\":\"REG\",\"ueSvcId\":\"u\",\"a\":truex}",
      "{\"msgType\":\"REG\",\"ueSvcId\":\"u\",\"a\":tru}", "{\"msgType\":\"REG\",\"ueSvcId\":\"u\",\"a\":nul}",
      "{\"msgType\":\"REG\",\"ueSvcId\":\"u\",\"a\":1}", "{\"msgType\":\"REG\",\"ueSvcId\":\"u\",\"a\":[1]}",
      "{\"msgType\":\"REG\",\"ueSvcId\":\"u\",\"a\":-0.5e3}", "{\"msgType\":\"REG\",\"ueSvcId\":\"u\",\"a\":{\"b\":1,\"b\":2}}",
      "{\"msgType\":\"REG\",\"ueSvcId\":\"u\",\"a\":{\"b\":{\"c\":{\"d\":{\"e\":{}}}}}}",
      "{\"msgType\":\"REG\",\"ueSvcId\":\"u\",\"a\":{\"b\":{\"c\":{}}}}",
      "{\"msgType\":\"REG\",\"ueSvcId\":\"u\x7f\"}", "{\"msgType\":\"REG\",\"ueSvcId\":\"u\\u0041\"}",
      "{\"msgType\":\"REG\",\"ueSvcId\":\"u\\/\"}", "{\"msgType\":\"RE\\u0047\",\"ueSvcId\":\"u\"}",
      "{\"msgType\":\"REG\",\"ueSvcId\":\"u\",\"msgTyp\\u0065\":\"MSG\"}",
      "{\"msgType\":\"REG\",\"ueSvcId\":\"\"}", "{\"msgType\":\"REG\",\"ueSvcId\":\"a b\"}",
      "{\"msgType\":\"REG\",\"ueSvcId\":\"u\",\"clientProfile\":{\"a\":\"b\"}}",
      "{\"msgType\":\"REG\",\"ueSvcId\":\"u\",\"expiry\":\"2030-01-02T03:04:05.123456789012345678901234567890123456789012345+01:00\"}",
      "{\"msgType\":\"REG\",\"ueSvcId\":\"u\",\"expiry\":\"1970-01-01T00:00:00Z\"}",
      "{\"msgType\":\"REG\",\"ueSvcId\":\"u\",\"expiry\":null}",
      "{\"msgType\":\"TOPICSUB\",\"msgTopics\":[\"a\"]}", "{\"msgType\":\"MSG\",\"segInd\":true}",
      "{\"msgType\":\"MSG\",\"msgId\":\"m\",\"oriAddr\":{\"addrType\":\"UE\",\"addr\":\"a\"},\"destAddr\":"
      "{\"addrType\":\"GROUP\",\"addr\":\"g!\"},\"payload\":\"\"}",
      "{\"msgType\":\"MSG\",\"msgId\":\"m\",\"oriAddr\":{\"addrType\":\"UE\",\"addr\":\"a\"},\"destAddr\":"
      "{\"addrType\":\"TOPIC\",\"addr\":\"t.1\"},\"payload\":\"\",\"segInd\":false,\"segParams\":{}}",
      "{\"msgType\":\"MSG\",\"msgId\":\"m\",\"oriAddr\":{\"addrType\":\"UE\",\"addr\":\"a\"},\"destAddr\":"
      "{\"addrType\":\"UE\",\"addr\":\"b\",\"addr\":\"c\"},\"payload\":\"\"}",
      "{\"msgType\":\"MSG\",\"msgId\":\"m\",\"oriAddr\":{\"addrType\":\"UE\",\"addr\":\"a\"},\"destAddr\":"
      "{\"addrType\":\"0123456789abcdef\",\"addr\":\"b\"},\"payload\":\"\"}",
      "{\"msgType\":\"MSG\",\"msgId\":\"m\",\"oriAddr\":{\"addrType\":\"UE\",\"addr\":\"a\"},\"destAddr\":"
      "{\"addrType\":\"UE\",\"addr\":\"b\"},\"payload\":\"AA==\",\"priority\":\"URGENT\",\"appId\":null}",
  };
  for (size_t i = 0; i < sizeof edge / sizeof edge[0]; i++) {
    same_as_tree_s(edge[i], -1);
    same_as_tree_s(edge[i], M5_MSG_MSG);
  }
  /* Every one-byte change of a full MSG: deleted, or replaced by a byte that matters to JSON. */
  const char *base = USUAL_MSG;
  size_t n = strlen(base);
  char *buf = malloc(n + 1);
  assert_non_null(buf);
  static const char repl[] = "\"\\{}[],: \t\n0aA=\x01\x7f\x80\xff";
  for (size_t i = 0; i < n; i++) {
    memcpy(buf, base, i);
    memcpy(buf + i, base + i + 1, n - i - 1);
    same_as_tree((const uint8_t *)buf, n - 1, -1);
    memcpy(buf, base, n);
    for (size_t k = 0; k < sizeof repl - 1; k++) {
      buf[i] = repl[k];
      same_as_tree((const uint8_t *)buf, n, -1);
      same_as_tree((const uint8_t *)buf, n, M5_MSG_MSG);
    }
  }
  /* and cut short at every length */
  for (size_t i = 0; i < n; i++)
    same_as_tree((const uint8_t *)base, i, -1);
  free(buf);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_round_trip_reg_dereg),
      cmocka_unit_test(test_round_trip_msg),
      cmocka_unit_test(test_round_trip_msgresp_imdn),
      cmocka_unit_test(test_seg_types),
      cmocka_unit_test(test_round_trip_topics),
      cmocka_unit_test(test_topics_refused),
      cmocka_unit_test(test_named_addresses),
      cmocka_unit_test(test_every_mandatory_ie_missing_is_named),
      cmocka_unit_test(test_wrong_types_are_named),
      cmocka_unit_test(test_body_level_errors),
      cmocka_unit_test(test_duplicate_keys_rejected),
      cmocka_unit_test(test_base64_is_strict),
      cmocka_unit_test(test_msg_id_charset_and_length),
      cmocka_unit_test(test_unknown_members_ignored_open_enums_kept),
      cmocka_unit_test(test_rfc3339_forms),
      cmocka_unit_test(test_encode_refuses_invalid),
      cmocka_unit_test(test_encode_escapes_like_jansson),
      cmocka_unit_test(test_29538_bodies),
      cmocka_unit_test(test_29538_members_as_declared),
      cmocka_unit_test(test_failure_cause_utf8),
      cmocka_unit_test(test_names),
      cmocka_unit_test(test_scan_takes_the_usual_bodies),
      cmocka_unit_test(test_scan_agrees_with_jansson),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
