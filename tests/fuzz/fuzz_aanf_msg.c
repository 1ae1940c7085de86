/* libFuzzer harness for the Naanf_AKMA body parsers of m5-aanf (aanf_msg.c): every input goes
 * through the three request parsers; an accepted body must satisfy the invariants the
 * handlers rely on, a refused one must yield a complete 400 ProblemDetails.
 * M5_FUZZ_SOURCES: src/aanf/aanf_msg.c src/lib/crypto/akma.c src/lib/crypto/kdf.c
 * M5_FUZZ_SOURCES: src/lib/crypto/codec.c src/lib/crypto/json_wipe.c src/lib/core/err.c
 * M5_FUZZ_PKGS: jansson openssl */
#include "../../src/aanf/aanf_msg.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static void check_problem(const aanf_problem_t *pb) {
  char *json = NULL;
  size_t len = 0;
  if (pb->status != 400 || !pb->title || !pb->cause) __builtin_trap();
  if (aanf_msg_problem_json(pb, &json, &len) != 0 || len != strlen(json)) __builtin_trap();
  free(json);
}

static void check_imsi(const char *supi) {
  size_t n = strlen(supi);
  if (n < 5 || n > AANF_IMSI_MAX || strspn(supi, "0123456789") != n) __builtin_trap();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static int once;
  if (!once) {
    aanf_msg_init();
    once = 1;
  }
  aanf_problem_t pb;
  aanf_key_info_t ki;
  aanf_key_req_t kr;
  aanf_ctx_remove_t cr;
  if (aanf_msg_parse_key_info(data, size, &ki, &pb) == 0) {
    check_imsi(ki.supi);
    if (ki.akid[0] == '\0') __builtin_trap();
    char *json = NULL;
    size_t len = 0;
    if (aanf_msg_key_info_json(&ki, &json, &len) != 0) __builtin_trap();
    aanf_msg_free_secret(json, len);
    aanf_msg_key_info_wipe(&ki);
  } else {
    check_problem(&pb);
  }
  if (aanf_msg_parse_key_req(data, size, &kr, &pb) == 0) {
    if (kr.af_id[0] == '\0' || kr.akid[0] == '\0' || kr.ua[0] == 0xff) __builtin_trap();
  } else {
    check_problem(&pb);
  }
  if (aanf_msg_parse_ctx_remove(data, size, &cr, &pb) == 0)
    check_imsi(cr.supi);
  else
    check_problem(&pb);
  return 0;
}
