/* Test driver for src/lib/js (issue 13): runs one scenario of js_client against the real
 * nats-server processes of tests/js/test_js_client.sh and prints what it saw; exit 0 only when
 * every expectation of the scenario held (a failure says which on stderr).
 * Usage: js_client_driver URL[,URL...] REPLICAS SCENARIO [ARGS]
 *   ensure            ensure stream + KV twice (idempotent), then mismatching specs refused
 *   publish N         N async publishes all acknowledged; a repeated Nats-Msg-Id is a duplicate
 *   kv                create-only, get, update with the current and with a stale revision
 *   failover N        N publishes one after the other (retrying an unacknowledged one with the
 *                     same Nats-Msg-Id), prints "progress K"; the script kills a node meanwhile;
 *                     at the end the stream holds exactly N messages; prints the longest gap
 *   down MAX_WAIT_MS  waits until the script has stopped every server, publishes once: the
 *                     outcome must be reported (an error) without hanging
 *   watch             a KV watcher: the end-of-initial-values marker on an empty bucket, then
 *                     the current values, the marker, later writes in revision order, and a
 *                     stop from another thread ending a blocked next */
#include "core/err.h"
#include "js/js_client.h"
#include "js/js_names.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static int n_ok, n_err, n_dup, n_acks;
static int n_timeout, n_noresp; /* of n_err: M5_ETIMEDOUT, M5_EAGAIN (no responders) */
static int last_status;
static char last_text[160];
static pthread_t main_thread;
static int acks_on_main; /* the callback must run on a libnats thread */

static void on_ack(void *arg, const m5_js_ack_t *a) {
  (void)arg;
  pthread_mutex_lock(&mu);
  if (pthread_equal(pthread_self(), main_thread)) acks_on_main++;
  n_acks++;
  last_status = a->status;
  snprintf(last_text, sizeof last_text, "%s (js %d) for %s", a->text, a->js_code, a->msg_id);
  if (a->status == M5_OK) {
    n_ok++;
    if (a->duplicate) n_dup++;
  } else {
    n_err++;
    n_timeout += a->status == M5_ETIMEDOUT;
    n_noresp += a->status == M5_EAGAIN;
  }
  pthread_cond_broadcast(&cv);
  pthread_mutex_unlock(&mu);
}

static int64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Waits until n_acks >= want or timeout_ms; returns whether reached. */
static int wait_acks(int want, int64_t timeout_ms) {
  struct timespec dl;
  clock_gettime(CLOCK_REALTIME, &dl);
  dl.tv_sec += (time_t)(timeout_ms / 1000);
  dl.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
  if (dl.tv_nsec >= 1000000000L) dl.tv_sec++, dl.tv_nsec -= 1000000000L;
  pthread_mutex_lock(&mu);
  while (n_acks < want)
    if (pthread_cond_timedwait(&cv, &mu, &dl)) break;
  int ok = n_acks >= want;
  pthread_mutex_unlock(&mu);
  return ok;
}

#define CHECK(cond, ...)                                                                           \
  do {                                                                                             \
    if (!(cond)) {                                                                                 \
      fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__);                                         \
      fprintf(stderr, __VA_ARGS__);                                                                \
      fprintf(stderr, "\n");                                                                       \
      rc = 1;                                                                                      \
      goto out;                                                                                    \
    }                                                                                              \
  } while (0)

static const char *subjects[] = {"t.>"};

static m5_js_stream_spec_t stream_spec(int replicas) {
  return (m5_js_stream_spec_t){.name = "T",
                               .subjects = subjects,
                               .n_subjects = 1,
                               .replicas = replicas,
                               .duplicate_window_ms = 120000};
}

static int scenario_ensure(m5_js_client_t *c, int r) {
  int rc = 0;
  char err[512];
  m5_js_kv_t *kv = NULL;
  m5_js_stream_spec_t s = stream_spec(r);
  m5_js_kv_spec_t k = {.bucket = "m5t", .replicas = r, .history = 1, .ttl_ms = 60000};
  for (int i = 0; i < 2; i++) {
    CHECK(m5_js_ensure_stream(c, &s, err, sizeof err) == M5_OK, "ensure stream %d: %s", i, err);
    CHECK(m5_js_ensure_kv(c, &k, &kv, err, sizeof err) == M5_OK, "ensure kv %d: %s", i, err);
    m5_js_kv_close(kv);
    kv = NULL;
  }
  printf("ensure twice: ok\n");
  m5_js_stream_spec_t bad = s;
  const char *other[] = {"t.>", "x.>"};
  bad.subjects = other;
  bad.n_subjects = 2;
  bad.replicas = r == 1 ? 3 : 1;
  bad.duplicate_window_ms = 600000;
  int e = m5_js_ensure_stream(c, &bad, err, sizeof err);
  printf("mismatching stream: %d %s\n", e, err);
  CHECK(e == M5_EEXIST, "mismatching stream not refused (%d)", e);
  m5_js_kv_spec_t badk = k;
  badk.history = 5;
  badk.ttl_ms = 30000;
  e = m5_js_ensure_kv(c, &badk, &kv, err, sizeof err);
  printf("mismatching kv: %d %s\n", e, err);
  CHECK(e == M5_EEXIST && !kv, "mismatching kv not refused (%d)", e);
out:
  m5_js_kv_close(kv);
  return rc;
}

static int scenario_publish(m5_js_client_t *c, int r, int n) {
  int rc = 0;
  char err[256], id[64];
  m5_js_stream_spec_t s = stream_spec(r);
  uint64_t before = 0, after = 0;
  CHECK(m5_js_ensure_stream(c, &s, err, sizeof err) == M5_OK, "ensure: %s", err);
  CHECK(m5_js_stream_msgs(c, "T", &before, err, sizeof err) == M5_OK, "msgs: %s", err);
  for (int i = 0; i < n; i++) {
    snprintf(id, sizeof id, "pub/%d", i);
    CHECK(m5_js_publish_async(c, "t.pub", id, strlen(id), id, 0, err, sizeof err) == M5_OK,
          "publish %d: %s", i, err);
  }
  CHECK(wait_acks(n, 30000), "only %d of %d acknowledgements", n_acks, n);
  CHECK(n_ok == n && n_dup == 0, "acks: %d ok, %d dup, %d errors (last %s)", n_ok, n_dup, n_err,
        last_text);
  /* the same Nats-Msg-Id again: reported as a duplicate, not stored twice */
  CHECK(m5_js_publish_async(c, "t.pub", "again", 5, "pub/7", 0, err, sizeof err) == M5_OK,
        "republish: %s", err);
  CHECK(wait_acks(n + 1, 30000), "no acknowledgement of the repeated id");
  CHECK(n_ok == n + 1 && n_dup == 1, "repeated id: %d ok, %d dup (%s)", n_ok, n_dup, last_text);
  CHECK(m5_js_stream_msgs(c, "T", &after, err, sizeof err) == M5_OK, "msgs: %s", err);
  printf("published %d acked %d duplicates %d stored %llu\n", n + 1, n_ok, n_dup,
         (unsigned long long)(after - before));
  CHECK(after - before == (uint64_t)n, "stream grew by %llu, want %d",
        (unsigned long long)(after - before), n);
  CHECK(acks_on_main == 0, "an acknowledgement ran on the publishing thread");
out:
  return rc;
}

static int scenario_kv(m5_js_client_t *c, int r) {
  int rc = 0;
  char err[256], key[8 + M5_JS_TOKEN_SIZE], tok[M5_JS_TOKEN_SIZE];
  m5_js_kv_t *kv = NULL;
  uint8_t *val = NULL;
  size_t vl;
  uint64_t rev1 = 0, rev2 = 0, rev = 0;
  m5_js_kv_spec_t k = {.bucket = "m5t", .replicas = r, .history = 1, .ttl_ms = 60000};
  CHECK(m5_js_ensure_kv(c, &k, &kv, err, sizeof err) == M5_OK, "ensure kv: %s", err);
  /* keys from js_names, among them tokens starting with '-' and '_' and the empty ID's "_" */
  const char *ids[] = {"UE:ue1@example.com", "a.*.> b/%", "\xfb\xff", "\xfc", ""};
  for (size_t i = 0; i < sizeof ids / sizeof *ids; i++) {
    CHECK(m5_js_name_encode(ids[i], strlen(ids[i]), tok, sizeof tok, NULL) == M5_OK, "encode");
    snprintf(key, sizeof key, "u.%s", tok);
    CHECK(m5_js_kv_create(kv, key, "v1", 2, &rev1, err, sizeof err) == M5_OK, "create %s: %s", key,
          err);
    int e = m5_js_kv_create(kv, key, "v2", 2, &rev, err, sizeof err);
    CHECK(e == M5_EEXIST, "create-only on an existing key %s gave %d (%s)", key, e, err);
    CHECK(m5_js_kv_get(kv, key, &val, &vl, &rev, err, sizeof err) == M5_OK, "get: %s", err);
    CHECK(vl == 2 && !memcmp(val, "v1", 2) && rev == rev1, "get %s: wrong value or revision", key);
    free(val);
    val = NULL;
    CHECK(m5_js_kv_update(kv, key, "v3", 2, rev1, &rev2, err, sizeof err) == M5_OK,
          "update with the current revision: %s", err);
    e = m5_js_kv_update(kv, key, "v4", 2, rev1, &rev, err, sizeof err);
    CHECK(e == M5_EAGAIN, "update with a stale revision gave %d (%s)", e, err);
    CHECK(m5_js_kv_get(kv, key, &val, &vl, &rev, err, sizeof err) == M5_OK && rev == rev2 &&
              !memcmp(val, "v3", 2),
          "after the refused update: %s", err);
    free(val);
    val = NULL;
    printf("kv %s: create %llu, create again refused, update %llu, stale refused: %s\n", key,
           (unsigned long long)rev1, (unsigned long long)rev2, err);
  }
  CHECK(m5_js_kv_get(kv, "u.nosuch", &val, &vl, &rev, err, sizeof err) == M5_ENOENT,
        "get of an absent key");
out:
  free(val);
  m5_js_kv_close(kv);
  return rc;
}

typedef struct {
  m5_js_kv_watch_t *w;
} stopper_t;

static void *stop_later(void *arg) {
  usleep(300 * 1000); /* the main thread is blocked in next by then (its timeout is 60 s) */
  m5_js_kv_watch_stop(((stopper_t *)arg)->w);
  return NULL;
}

/* The next change within 15 s: M5_OK and *ch, else the status. */
static int next_change(m5_js_kv_watch_t *w, m5_js_kv_change_t *ch, char *err, size_t n) {
  int e;
  for (int i = 0; i < 15; i++)
    if ((e = m5_js_kv_watch_next(w, 1000, ch, err, n)) != M5_ETIMEDOUT) return e;
  return M5_ETIMEDOUT;
}

static int scenario_watch(m5_js_client_t *c, int r) {
  int rc = 0;
  char err[256] = "";
  m5_js_kv_t *kv = NULL;
  m5_js_kv_watch_t *w = NULL;
  m5_js_kv_change_t ch;
  uint64_t r1 = 0, r2 = 0, r3 = 0;
  int e0;
  m5_js_kv_spec_t k = {.bucket = "m5w", .replicas = r, .history = 1, .ttl_ms = 0};
  CHECK(m5_js_ensure_kv(c, &k, &kv, err, sizeof err) == M5_OK, "ensure kv: %s", err);
  /* an empty bucket: the marker at once */
  CHECK(m5_js_kv_watch(kv, &w, err, sizeof err) == M5_OK, "watch: %s", err);
  CHECK(next_change(w, &ch, err, sizeof err) == M5_OK && !ch.key, "no marker on an empty bucket");
  m5_js_kv_watch_free(w);
  w = NULL;
  CHECK(m5_js_kv_create(kv, "k.one", "1", 1, &r1, err, sizeof err) == M5_OK, "create: %s", err);
  CHECK(m5_js_kv_create(kv, "k.two", "22", 2, &r2, err, sizeof err) == M5_OK, "create: %s", err);
  CHECK(m5_js_kv_watch(kv, &w, err, sizeof err) == M5_OK, "watch: %s", err);
  /* The initial values in revision order and the marker. libnats sets the marker by the
   * pending count the server sends with each value; under load on 3 replicas it was once seen
   * before the last initial value. What the registry relies on holds either way (it applies
   * every value it is given, before or after the marker), so that is what is checked: both
   * values, in order, exact, and a marker, within the first three events. */
  int seen_one = 0, seen_two = 0, seen_marker = 0;
  for (int i = 0; i < 3; i++) {
    e0 = next_change(w, &ch, err, sizeof err);
    CHECK(e0 == M5_OK, "initial event %d: %d (%s)", i, e0, err);
    if (!ch.key) {
      seen_marker++;
    } else if (!strcmp(ch.key, "k.one")) {
      CHECK(ch.rev == r1 && ch.len == 1 && !memcmp(ch.val, "1", 1) && !ch.deleted && !seen_two,
            "first initial value: rev %llu (want %llu), after k.two %d", (unsigned long long)ch.rev,
            (unsigned long long)r1, seen_two);
      seen_one++;
    } else {
      CHECK(!strcmp(ch.key, "k.two") && ch.rev == r2 && ch.len == 2 && !memcmp(ch.val, "22", 2),
            "second initial value: key %s rev %llu (want k.two %llu)", ch.key,
            (unsigned long long)ch.rev, (unsigned long long)r2);
      seen_two++;
    }
  }
  CHECK(seen_one == 1 && seen_two == 1 && seen_marker == 1,
        "initial events: k.one %d, k.two %d, markers %d (want one each)", seen_one, seen_two,
        seen_marker);
  CHECK(m5_js_kv_update(kv, "k.one", "333", 3, r1, &r3, err, sizeof err) == M5_OK, "update: %s",
        err);
  CHECK(next_change(w, &ch, err, sizeof err) == M5_OK && ch.key && !strcmp(ch.key, "k.one") &&
            ch.rev == r3 && r3 > r2 && ch.len == 3 && !memcmp(ch.val, "333", 3),
        "the later write");
  int e = m5_js_kv_watch_next(w, 200, &ch, err, sizeof err);
  CHECK(e == M5_ETIMEDOUT, "nothing new, yet next gave %d", e);
  stopper_t st = {w};
  pthread_t t;
  CHECK(pthread_create(&t, NULL, stop_later, &st) == 0, "thread");
  int64_t t0 = now_ms();
  e = m5_js_kv_watch_next(w, 60000, &ch, err, sizeof err);
  pthread_join(t, NULL);
  CHECK(e == M5_ECLOSED, "a stopped watcher's next gave %d (%s)", e, err);
  printf("watch: marker on an empty bucket; initial %llu %llu, marker, update %llu; stop ended a "
         "blocked next after %lld ms\n",
         (unsigned long long)r1, (unsigned long long)r2, (unsigned long long)r3,
         (long long)(now_ms() - t0));
out:
  m5_js_kv_watch_free(w);
  m5_js_kv_close(kv);
  return rc;
}

static int scenario_failover(m5_js_client_t *c, int r, int n) {
  int rc = 0;
  char err[256], id[64];
  m5_js_stream_spec_t s = stream_spec(r);
  uint64_t before = 0, after = 0;
  CHECK(m5_js_ensure_stream(c, &s, err, sizeof err) == M5_OK, "ensure: %s", err);
  CHECK(m5_js_stream_msgs(c, "T", &before, err, sizeof err) == M5_OK, "msgs: %s", err);
  int64_t last_ok = now_ms(), gap = 0, deadline = now_ms() + 60000;
  int retries = 0;
  for (int i = 0; i < n; i++) {
    snprintf(id, sizeof id, "fo/%d", i);
    for (;;) {
      CHECK(now_ms() < deadline, "publish %d not acknowledged in 60 s (last: %s)", i, last_text);
      int want = n_acks + 1;
      CHECK(m5_js_publish_async(c, "t.fo", id, strlen(id), id, 2000, err, sizeof err) == M5_OK,
            "publish %d: %s", i, err);
      CHECK(wait_acks(want, 10000), "no outcome of publish %d within 10 s", i);
      if (last_status == M5_OK) break;
      retries++;
      usleep(100 * 1000); /* an election takes seconds: do not spin */
    }
    int64_t t = now_ms();
    if (t - last_ok > gap) gap = t - last_ok;
    last_ok = t;
    printf("progress %d\n", i + 1);
    fflush(stdout);
    usleep(20 * 1000);
  }
  CHECK(m5_js_stream_msgs(c, "T", &after, err, sizeof err) == M5_OK, "msgs: %s", err);
  printf("failover: %d acknowledged, %d retried publishes (%d no responders, %d timeouts), "
         "%d duplicates, stored %llu, longest gap between acknowledgements %lld ms\n",
         n, retries, n_noresp, n_timeout, n_dup, (unsigned long long)(after - before),
         (long long)gap);
  CHECK(after - before == (uint64_t)n, "stream grew by %llu, want %d",
        (unsigned long long)(after - before), n);
out:
  return rc;
}

static int scenario_down(m5_js_client_t *c, int64_t max_wait) {
  int rc = 0;
  char err[256] = "";
  printf("ready\n");
  fflush(stdout);
  int64_t dl = now_ms() + 30000;
  while (m5_js_client_connected(c) && now_ms() < dl)
    usleep(20 * 1000);
  CHECK(!m5_js_client_connected(c), "still connected 30 s after ready");
  int64_t t0 = now_ms();
  int e = m5_js_publish_async(c, "t.down", "x", 1, "down/1", max_wait, err, sizeof err);
  int64_t t1 = now_ms();
  if (e == M5_OK) {
    CHECK(wait_acks(1, max_wait * 5), "no outcome %lld ms after a publish with max wait %lld ms",
          (long long)(max_wait * 5), (long long)max_wait);
    CHECK(last_status != M5_OK, "acknowledged with every server down");
    printf("down: publish returned in %lld ms, outcome %d (%s) after %lld ms (max wait %lld)\n",
           (long long)(t1 - t0), last_status, last_text, (long long)(now_ms() - t0),
           (long long)max_wait);
  } else {
    printf("down: publish refused at once (%d: %s) in %lld ms\n", e, err, (long long)(t1 - t0));
  }
out:
  return rc;
}

int main(int argc, char **argv) {
  if (argc < 4) {
    fprintf(stderr, "usage: %s URL[,URL...] REPLICAS SCENARIO [ARG]\n", argv[0]);
    return 2;
  }
  main_thread = pthread_self();
  char *urls = strdup(argv[1]);
  const char *servers[8];
  size_t n = 0;
  for (char *save = NULL, *u = strtok_r(urls, ",", &save); u && n < 8;
       u = strtok_r(NULL, ",", &save))
    servers[n++] = u;
  int r = atoi(argv[2]);
  const char *sc = argv[3];
  int arg = argc > 4 ? atoi(argv[4]) : 0;
  m5_js_client_opts_t o = {.servers = servers,
                           .n_servers = n,
                           .timeout_ms = 15000, /* generous: ASan builds on 2 loaded cores */
                           .reconnect_wait_ms = 200,
                           .name = "js_client_driver",
                           .on_ack = on_ack};
  m5_js_client_t *c = NULL;
  char err[256];
  int rc = 1;
  if (m5_js_client_open(&c, &o, err, sizeof err) != M5_OK) {
    fprintf(stderr, "FAIL open: %s\n", err);
  } else if (!strcmp(sc, "ensure")) {
    rc = scenario_ensure(c, r);
  } else if (!strcmp(sc, "publish")) {
    rc = scenario_publish(c, r, arg);
  } else if (!strcmp(sc, "kv")) {
    rc = scenario_kv(c, r);
  } else if (!strcmp(sc, "failover")) {
    rc = scenario_failover(c, r, arg);
  } else if (!strcmp(sc, "watch")) {
    rc = scenario_watch(c, r);
  } else if (!strcmp(sc, "down")) {
    rc = scenario_down(c, arg);
  } else {
    fprintf(stderr, "unknown scenario %s\n", sc);
  }
  m5_js_client_close(c);
  m5_js_library_close();
  free(urls);
  return rc;
}
