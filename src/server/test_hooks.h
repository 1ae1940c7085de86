/* Test hooks of m5s, compiled in only with the CMake option M5_TEST_HOOKS (set by `make
 * build-test`, never by `make run`, `make bench` or a release build: there the functions
 * below are constant 0 and every hook is dead code). A test names a directory in
 * M5_TEST_HOOK_DIR and creates a file named after a hook point in it to arm that point; m5s
 * creates "<point>.reached" there when it reaches an armed point. Points:
 *  - "reg-lookup": a REG waits between the worker's binding lookup and its registry job;
 *  - "reg-write": a REG waits between its registry write and the session's router entry;
 *    both until the file is removed (ue_api.c), so a test can change the binding in between;
 *  - "drop-close": the CLOSE the admin API posts to the worker of a session whose binding
 *    changed is dropped, as a full mailbox would (router.c);
 *  - "kill-before-store-rebind": m5s kills itself (SIGKILL) after a binding change is
 *    committed in the registry and before the message store is told (admin.c);
 *  - "hold-group-sweep": the store's sweeps after a group member's removal or a group's
 *    deletion wait while the file exists (groups_sync.c), so a test can kill m5s between the
 *    registry's commit and the store's;
 *  - "fail-as-topics-drop": dropping a removed AS client's topic subscriptions fails, as a
 *    failing store would make it (mgmt/admin_topics.c). */
#ifndef M5_SERVER_TEST_HOOKS_H
#define M5_SERVER_TEST_HOOKS_H

#include <stddef.h>

#ifdef M5_TEST_HOOKS
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

/* 1 and the point's file in path when point is armed (and marks it reached). */
static inline int m5_test_hook_armed(const char *point, char *path, size_t len) {
  const char *dir = getenv("M5_TEST_HOOK_DIR");
  if (!dir || !*dir) return 0;
  int n = snprintf(path, len, "%s/%s", dir, point);
  if (n < 0 || (size_t)n >= len || access(path, F_OK) != 0) return 0;
  char reached[4096];
  n = snprintf(reached, sizeof reached, "%s.reached", path);
  if (n > 0 && (size_t)n < sizeof reached) {
    int fd = open(reached, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
    if (fd >= 0) close(fd);
  }
  return 1;
}

/* 1 while path (an armed point's file) still exists. */
static inline int m5_test_hook_held(const char *path) {
  return access(path, F_OK) == 0;
}
#else
static inline int m5_test_hook_armed(const char *point, char *path, size_t len) {
  (void)point;
  (void)path;
  (void)len;
  return 0;
}
static inline int m5_test_hook_held(const char *path) {
  (void)path;
  return 0;
}
#endif

#endif
