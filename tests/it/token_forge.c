/* Test tool: signs an access token with m5s's own token key through the same C issuing code
 * as m5s's token endpoint (oauth/jwt.h m5_jwt_issue), with the claims the caller chooses, so
 * an integration test can present m5s with a token m5s itself would never issue (no cnf)
 * and see its bearer check refuse it. Built for the tests only (tests/CMakeLists.txt).
 *   token_forge KEY.pem ISS AUD SUB SCOPE X5T|- [EXP_IN_S]   ("-": no cnf claim; exp = now +
 *   EXP_IN_S, default 300, negative for a token that expired already or is about to, given
 *   m5s's leeway of 30 s; iat 60 s before exp) -> the token on stdout */
#include "oauth/jwt.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

int main(int argc, char **argv) {
  if (argc != 7 && argc != 8) {
    fputs("usage: token_forge KEY.pem ISS AUD SUB SCOPE X5T|- [EXP_IN_S]\n", stderr);
    return 2;
  }
  char err[256];
  m5_jwk_t *key = m5_jwk_load_pem(argv[1], err, sizeof err);
  if (!key) {
    fprintf(stderr, "token_forge: %s\n", err);
    return 1;
  }
  int64_t now = (int64_t)time(NULL);
  int64_t exp = now + (argc == 8 ? strtoll(argv[7], NULL, 10) : 300);
  m5_jwt_issue_t c = {.iss = argv[2],
                      .aud = argv[3],
                      .sub = argv[4],
                      .client_id = argv[4],
                      .scope = argv[5],
                      .iat = exp - 60 < now ? exp - 60 : now,
                      .exp = exp,
                      .cnf_x5t_s256 = strcmp(argv[6], "-") ? argv[6] : NULL};
  char *tok = NULL;
  int rc = m5_jwt_issue(key, &c, &tok);
  m5_jwk_free(key);
  if (rc) {
    fprintf(stderr, "token_forge: m5_jwt_issue: %d\n", rc);
    return 1;
  }
  puts(tok);
  free(tok);
  return 0;
}
