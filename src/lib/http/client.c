/* HTTP/2 client on a worker loop (client.h): libcurl's multi socket interface driven by the
 * loop. curl tells us which sockets to watch (CURLMOPT_SOCKETFUNCTION) and when to call it
 * back (CURLMOPT_TIMERFUNCTION); the loop reports readiness and we hand it to
 * curl_multi_socket_action(), then collect finished transfers with curl_multi_info_read().
 *
 * curl's callbacks only record what to watch: curl is never re-entered from inside one of
 * them (a timeout of 0 becomes a 0 ms loop timer), and user callbacks only run from the loop
 * (fd events and timers), never from inside m5_http_client_post_json(). All requests of a
 * client share curl's connection cache, so with CURLOPT_PIPEWAIT concurrent requests to one
 * origin become streams of one HTTP/2 connection. */
#include "http/client.h"

#include "core/err.h"
#include "core/log.h"
#include "tls/tls.h"

#include <curl/curl.h>
#include <openssl/crypto.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define DEFAULT_TIMEOUT_MS 5000u
#define DEFAULT_MAX_INFLIGHT 1024u
#define DEFAULT_MAX_RESPONSE (1024u * 1024u)

typedef struct req {
  m5_http_client_t *c;
  CURL *easy;
  struct req *prev, *next;
  m5_http_client_fn cb;
  void *arg;
  char *body; /* our copy of the request body, wiped when the transfer ends */
  size_t body_len;
  struct curl_slist *headers; /* this request's own header lines (m5_http_client_request) */
  const char *method;         /* a static string: m5_http_client_request's method, or NULL */
  char *peer_uri;             /* SAN URI the server must carry (m5_http_req_opts_t), or NULL */
  int wrong_peer;             /* on_prereq refused the server: M5_EPERM */
  uint8_t *resp;              /* response body, NUL-terminated, wiped after the callback */
  size_t resp_len, resp_cap;
  int too_big;
} req_t;

struct m5_http_client {
  m5_loop_t *loop;
  CURLM *multi;
  struct curl_slist *headers;
  char *cert_file, *key_file, *ca_file;
  uint32_t timeout_ms;
  size_t max_inflight, max_response;
  m5_timer_id_t timer;
  req_t *reqs; /* every request added to the multi handle */
  size_t inflight;
  int dispatching; /* inside a user callback run by complete_done() */
  int closing;     /* m5_http_client_free() ran while dispatching: free when it unwinds */
};

/* A non-NULL socketp for curl_multi_assign(): the fd is registered with the loop. */
static char g_watched;

static pthread_once_t g_curl_once = PTHREAD_ONCE_INIT;
static CURLcode g_curl_init_rc = CURLE_FAILED_INIT;

static void curl_init_once(void) {
  g_curl_init_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

static void wipe_free(void *p, size_t n) {
  if (!p) return;
  OPENSSL_cleanse(p, n);
  free(p);
}

static void free_headers(struct curl_slist *h);

static void req_release(req_t *r) {
  m5_http_client_t *c = r->c;
  if (r->prev)
    r->prev->next = r->next;
  else
    c->reqs = r->next;
  if (r->next) r->next->prev = r->prev;
  c->inflight--;
  curl_multi_remove_handle(c->multi, r->easy);
  curl_easy_cleanup(r->easy);
  wipe_free(r->body, r->body_len);
  r->body = NULL;
  free_headers(r->headers);
  r->headers = NULL;
}

static void req_free(req_t *r) {
  wipe_free(r->resp, r->resp_cap);
  free(r->peer_uri);
  free(r);
}

/* Runs the callback of a finished (or abandoned) request and frees it. */
static void req_finish(req_t *r, int status, long http_status) {
  req_release(r);
  const uint8_t *body = r->resp ? r->resp : (const uint8_t *)"";
  r->cb(r->arg, status, http_status, status == 0 ? body : NULL, status == 0 ? r->resp_len : 0);
  req_free(r);
}

static int map_curl_error(CURLcode rc, const req_t *r) {
  if (r->too_big) return M5_ERANGE;
  if (r->wrong_peer) return M5_EPERM;
  if (rc == CURLE_OPERATION_TIMEDOUT) return M5_ETIMEDOUT;
  return M5_EIO;
}

/* The header lines may carry a bearer token: wiped before libcurl frees them. */
static void free_headers(struct curl_slist *h) {
  for (struct curl_slist *l = h; l; l = l->next)
    OPENSSL_cleanse(l->data, strlen(l->data));
  curl_slist_free_all(h);
}

static void client_destroy(m5_http_client_t *c) {
  if (c->timer) m5_loop_timer_cancel(c->loop, c->timer);
  c->timer = 0;
  /* cleanup calls the socket callback (REMOVE) for connections still open. */
  curl_multi_cleanup(c->multi);
  if (c->timer) m5_loop_timer_cancel(c->loop, c->timer);
  free_headers(c->headers);
  free(c->cert_file);
  free(c->key_file);
  free(c->ca_file);
  free(c);
}

static void complete_done(m5_http_client_t *c) {
  CURLMsg *msg;
  int left;
  c->dispatching++;
  while (!c->closing && (msg = curl_multi_info_read(c->multi, &left)) != NULL) {
    if (msg->msg != CURLMSG_DONE) continue;
    req_t *r = NULL;
    curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&r);
    if (!r) continue;
    CURLcode rc = msg->data.result;
    long http_status = 0;
    if (rc == CURLE_OK) curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &http_status);
    int status = rc == CURLE_OK ? 0 : map_curl_error(rc, r);
    if (status != 0)
      M5_LOGD("http", "request failed: %s (%s)", curl_easy_strerror(rc), m5_strerror(status));
    req_finish(r, status, http_status);
  }
  c->dispatching--;
  if (c->closing && c->dispatching == 0) client_destroy(c);
}

/* ---- curl -> loop ---- */

static void on_fd(m5_loop_t *loop, int fd, uint32_t events, void *arg) {
  (void)loop;
  m5_http_client_t *c = arg;
  int mask = 0;
  if (events & M5_EV_READ) mask |= CURL_CSELECT_IN;
  if (events & M5_EV_WRITE) mask |= CURL_CSELECT_OUT;
  if (events & M5_EV_ERROR) mask |= CURL_CSELECT_ERR;
  int running;
  curl_multi_socket_action(c->multi, fd, mask, &running);
  complete_done(c);
}

static int on_socket(CURL *easy, curl_socket_t s, int what, void *userp, void *socketp) {
  (void)easy;
  m5_http_client_t *c = userp;
  if (what == CURL_POLL_REMOVE) {
    if (socketp) m5_loop_del_fd(c->loop, s);
    curl_multi_assign(c->multi, s, NULL);
    return 0;
  }
  uint32_t ev = 0;
  if (what == CURL_POLL_IN || what == CURL_POLL_INOUT) ev |= M5_EV_READ;
  if (what == CURL_POLL_OUT || what == CURL_POLL_INOUT) ev |= M5_EV_WRITE;
  if (socketp) {
    if (m5_loop_mod_fd(c->loop, s, ev) == M5_OK) return 0;
  }
  /* A new socket (or one whose number was reused after curl closed the old one without
   * telling us): forget any stale registration, then watch it. */
  m5_loop_del_fd(c->loop, s);
  if (m5_loop_add_fd(c->loop, s, ev, on_fd, c) != M5_OK) {
    M5_LOGW("http", "cannot watch socket %d", (int)s);
    return -1;
  }
  curl_multi_assign(c->multi, s, &g_watched);
  return 0;
}

static void on_timer(m5_loop_t *loop, void *arg) {
  (void)loop;
  m5_http_client_t *c = arg;
  c->timer = 0;
  int running;
  curl_multi_socket_action(c->multi, CURL_SOCKET_TIMEOUT, 0, &running);
  complete_done(c);
}

static int on_curl_timer(CURLM *multi, long timeout_ms, void *userp) {
  (void)multi;
  m5_http_client_t *c = userp;
  if (c->timer) m5_loop_timer_cancel(c->loop, c->timer);
  c->timer = 0;
  if (timeout_ms < 0) return 0;
  c->timer = m5_loop_timer_add(c->loop, (uint64_t)timeout_ms, on_timer, c);
  return c->timer ? 0 : -1;
}

/* ---- transfers ---- */

static size_t on_body(char *p, size_t sz, size_t n, void *ud) {
  req_t *r = ud;
  size_t k = sz * n;
  size_t max = r->c->max_response;
  if (k > max || r->resp_len > max - k) {
    r->too_big = 1;
    return 0; /* CURLE_WRITE_ERROR */
  }
  if (r->resp_len + k + 1 > r->resp_cap) {
    size_t cap = r->resp_cap ? r->resp_cap : 1024;
    while (cap < r->resp_len + k + 1)
      cap *= 2;
    if (cap > max + 1) cap = max + 1;
    /* Not realloc: the old block may hold key material and must be wiped. */
    uint8_t *nb = malloc(cap);
    if (!nb) return 0;
    if (r->resp_len) memcpy(nb, r->resp, r->resp_len);
    wipe_free(r->resp, r->resp_cap);
    r->resp = nb;
    r->resp_cap = cap;
  }
  memcpy(r->resp + r->resp_len, p, k);
  r->resp_len += k;
  r->resp[r->resp_len] = '\0';
  return k;
}

/* libcurl calls this once the connection is up (new or reused, the chain and host name
 * already verified by libcurl) and before the request goes out: the moment to check that the
 * server is the one the request is meant for (r->peer_uri). A session resumed by TLS keeps its
 * peer certificate and verify result, so it is checked like a full handshake. */
static int on_prereq(void *clientp, char *primary_ip, char *local_ip, int primary_port,
                     int local_port) {
  (void)local_ip;
  (void)local_port;
  req_t *r = clientp;
  struct curl_tlssessioninfo *ti = NULL;
  SSL *ssl = NULL;
  if (curl_easy_getinfo(r->easy, CURLINFO_TLS_SSL_PTR, &ti) == CURLE_OK && ti &&
      ti->backend == CURLSSLBACKEND_OPENSSL)
    ssl = ti->internals;
  if (ssl && m5_tls_peer_has_san_uri(ssl, r->peer_uri)) return CURL_PREREQFUNC_OK;
  char seen[160] = "";
  int rc = ssl ? m5_tls_peer_san_uri_suffix(ssl, "", seen, sizeof seen) : M5_EINVAL;
  if (rc == M5_OK) {
    for (char *p = seen; *p; p++) /* the peer's text: no control characters into the log */
      if (*p < 0x20 || *p > 0x7e) *p = '?';
  } else {
    snprintf(seen, sizeof seen, "%s",
             !ssl              ? "(its certificate cannot be read)"
             : rc == M5_ERANGE ? "(a SAN URI too long to show)"
                               : "no SAN URI");
  }
  const char *url = NULL;
  curl_easy_getinfo(r->easy, CURLINFO_EFFECTIVE_URL, &url);
  M5_LOGW("http",
          "%s: refused the server at %s port %d: its certificate (valid for this CA and host) "
          "names %s, not %s; request not sent",
          url ? url : "?", primary_ip ? primary_ip : "?", primary_port, seen, r->peer_uri);
  r->wrong_peer = 1;
  return CURL_PREREQFUNC_ABORT;
}

/* r->body NULL: a GET. */
static int setup_easy(m5_http_client_t *c, req_t *r, const char *url) {
  CURL *h = r->easy;
  int bad = 0;
  bad |= curl_easy_setopt(h, CURLOPT_URL, url) != CURLE_OK;
  bad |= curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "https") != CURLE_OK;
  bad |= curl_easy_setopt(h, CURLOPT_PRIVATE, r) != CURLE_OK;
  bad |= curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L) != CURLE_OK;
  bad |= curl_easy_setopt(h, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_2TLS) != CURLE_OK;
  bad |= curl_easy_setopt(h, CURLOPT_PIPEWAIT, 1L) != CURLE_OK;
  bad |= curl_easy_setopt(h, CURLOPT_SSLVERSION, (long)CURL_SSLVERSION_TLSv1_2) != CURLE_OK;
  bad |= curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 1L) != CURLE_OK;
  bad |= curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 2L) != CURLE_OK;
  if (c->ca_file) {
    /* Only the configured CA: not the system store as well. */
    bad |= curl_easy_setopt(h, CURLOPT_CAINFO, c->ca_file) != CURLE_OK;
    bad |= curl_easy_setopt(h, CURLOPT_CAPATH, NULL) != CURLE_OK;
  }
  if (c->cert_file) {
    bad |= curl_easy_setopt(h, CURLOPT_SSLCERT, c->cert_file) != CURLE_OK;
    bad |= curl_easy_setopt(h, CURLOPT_SSLKEY, c->key_file) != CURLE_OK;
  }
  bad |= curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, (long)c->timeout_ms) != CURLE_OK;
  if (r->peer_uri) {
    bad |= curl_easy_setopt(h, CURLOPT_PREREQFUNCTION, on_prereq) != CURLE_OK;
    bad |= curl_easy_setopt(h, CURLOPT_PREREQDATA, r) != CURLE_OK;
  }
  if (r->method) { /* m5_http_client_request */
    bad |= curl_easy_setopt(h, CURLOPT_HTTPHEADER, r->headers) != CURLE_OK;
    if (r->body) {
      bad |= curl_easy_setopt(h, CURLOPT_POST, 1L) != CURLE_OK;
      bad |= curl_easy_setopt(h, CURLOPT_POSTFIELDS, r->body) != CURLE_OK;
      bad |= curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)r->body_len) != CURLE_OK;
    } else if (!strcmp(r->method, "GET")) {
      bad |= curl_easy_setopt(h, CURLOPT_HTTPGET, 1L) != CURLE_OK;
    }
    if (strcmp(r->method, "POST") != 0 && strcmp(r->method, "GET") != 0)
      bad |= curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, r->method) != CURLE_OK;
  } else if (r->body) {
    bad |= curl_easy_setopt(h, CURLOPT_HTTPHEADER, c->headers) != CURLE_OK;
    bad |= curl_easy_setopt(h, CURLOPT_POST, 1L) != CURLE_OK;
    bad |= curl_easy_setopt(h, CURLOPT_POSTFIELDS, r->body) != CURLE_OK;
    bad |= curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)r->body_len) != CURLE_OK;
  } else {
    bad |= curl_easy_setopt(h, CURLOPT_HTTPGET, 1L) != CURLE_OK;
  }
  bad |= curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body) != CURLE_OK;
  bad |= curl_easy_setopt(h, CURLOPT_WRITEDATA, r) != CURLE_OK;
  return bad ? M5_EINVAL : M5_OK;
}

/* A request of c with its callback and a copy of body (none when body is NULL), not started;
 * NULL when out of memory. */
static req_t *req_new(m5_http_client_t *c, m5_http_client_fn cb, void *arg, const void *body,
                      size_t len) {
  req_t *r = calloc(1, sizeof *r);
  if (!r) return NULL;
  r->c = c;
  r->cb = cb;
  r->arg = arg;
  if (body) {
    if (!(r->body = malloc(len + 1))) {
      free(r);
      return NULL;
    }
    r->body_len = len;
    if (len) memcpy(r->body, body, len);
    r->body[len] = '\0';
  }
  return r;
}

/* Frees a request that never started (its body and headers wiped). */
static void req_discard(req_t *r) {
  if (r->easy) curl_easy_cleanup(r->easy);
  wipe_free(r->body, r->body ? r->body_len + 1 : 0);
  free_headers(r->headers);
  free(r->peer_uri);
  free(r);
}

/* Hands r to libcurl and counts it in flight: M5_OK, or an error with r discarded. */
static int req_start(m5_http_client_t *c, req_t *r, const char *url) {
  int rc = (r->easy = curl_easy_init()) ? setup_easy(c, r, url) : M5_ENOMEM;
  if (rc == M5_OK && curl_multi_add_handle(c->multi, r->easy) != CURLM_OK) rc = M5_ENOMEM;
  if (rc != M5_OK) {
    req_discard(r);
    return rc;
  }
  r->next = c->reqs;
  if (c->reqs) c->reqs->prev = r;
  c->reqs = r;
  c->inflight++;
  return M5_OK;
}

/* What every request is checked against before anything is allocated. */
static int req_admissible(const m5_http_client_t *c) {
  if (c->closing) return M5_ECLOSED;
  if (c->inflight >= c->max_inflight) return M5_EFULL;
  return M5_OK;
}

int m5_http_client_get(m5_http_client_t *c, const char *url, m5_http_client_fn cb, void *arg) {
  if (!c || !url || !cb) return M5_EINVAL;
  int rc = req_admissible(c);
  if (rc != M5_OK) return rc;
  req_t *r = req_new(c, cb, arg, NULL, 0);
  return r ? req_start(c, r, url) : M5_ENOMEM;
}

int m5_http_client_post_json(m5_http_client_t *c, const char *url, const char *json, size_t len,
                             m5_http_client_fn cb, void *arg) {
  if (!c || !url || (!json && len) || !cb) return M5_EINVAL;
  int rc = req_admissible(c);
  if (rc != M5_OK) return rc;
  req_t *r = req_new(c, cb, arg, json ? json : "", len); /* always a body: a POST */
  return r ? req_start(c, r, url) : M5_ENOMEM;
}

/* The header lines of one m5_http_client_request: NULL when out of memory. */
static struct curl_slist *req_headers(const m5_http_client_t *c, const m5_http_req_opts_t *o,
                                      int has_body) {
  struct curl_slist *h = NULL, *n;
  for (struct curl_slist *l = c->headers; l; l = l->next) {
    if (!strncasecmp(l->data, "Content-Type:", 13)) continue;
    if (o->bearer_token && !strncasecmp(l->data, "Authorization:", 14)) continue;
    if (!(n = curl_slist_append(h, l->data))) goto fail;
    h = n;
  }
  if (has_body) {
    char line[160];
    int w = snprintf(line, sizeof line, "Content-Type: %s",
                     o->content_type ? o->content_type : "application/json");
    if (w < 0 || (size_t)w >= sizeof line || !(n = curl_slist_append(h, line))) goto fail;
    h = n;
  }
  if (o->bearer_token) {
    size_t len = strlen(o->bearer_token) + sizeof "Authorization: Bearer ";
    char *line = malloc(len);
    if (!line) goto fail;
    snprintf(line, len, "Authorization: Bearer %s", o->bearer_token);
    n = curl_slist_append(h, line);
    wipe_free(line, len);
    if (!n) goto fail;
    h = n;
  }
  return h;
fail:
  free_headers(h);
  return NULL;
}

int m5_http_client_request(m5_http_client_t *c, const char *url, const m5_http_req_opts_t *opts,
                           const void *body, size_t len, m5_http_client_fn cb, void *arg) {
  static const char *const methods[] = {"POST", "PUT", "DELETE", "GET"};
  m5_http_req_opts_t def = {0};
  const m5_http_req_opts_t *o = opts ? opts : &def;
  const char *method = NULL;
  for (size_t i = 0; i < sizeof methods / sizeof methods[0]; i++)
    if (!strcmp(o->method ? o->method : "POST", methods[i])) method = methods[i];
  if (!c || !url || (!body && len) || !cb || !method) return M5_EINVAL;
  if (body && !strcmp(method, "GET")) return M5_EINVAL;
  int rc = req_admissible(c);
  if (rc != M5_OK) return rc;
  req_t *r = req_new(c, cb, arg, body, len);
  if (!r) return M5_ENOMEM;
  r->method = method;
  if ((o->peer_uri && !(r->peer_uri = strdup(o->peer_uri))) ||
      !(r->headers = req_headers(c, o, body != NULL))) {
    req_discard(r);
    return M5_ENOMEM;
  }
  return req_start(c, r, url);
}

int m5_http_client_cancel(m5_http_client_t *c, m5_http_client_fn cb, void *arg) {
  if (!c || c->closing) return M5_ENOENT;
  for (req_t *r = c->reqs; r; r = r->next) {
    if (r->cb != cb || r->arg != arg) continue;
    /* Removing the handle resets its HTTP/2 stream; the connection stays for the others. */
    req_release(r);
    req_free(r);
    return M5_OK;
  }
  return M5_ENOENT;
}

size_t m5_http_client_inflight(const m5_http_client_t *c) {
  return c ? c->inflight : 0;
}

/* ---- lifecycle ---- */

static char *dup_opt(const char *s, int *bad) {
  if (!s) return NULL;
  char *d = strdup(s);
  if (!d) *bad = 1;
  return d;
}

m5_http_client_t *m5_http_client_new(m5_loop_t *loop, const m5_http_client_opts_t *opts, char *err,
                                     size_t errlen) {
  if (!loop || !opts) {
    snprintf(err, errlen, "http client: no loop or options");
    return NULL;
  }
  if (!opts->cert_file != !opts->key_file) {
    snprintf(err, errlen, "http client: a client certificate needs its key and vice versa");
    return NULL;
  }
  pthread_once(&g_curl_once, curl_init_once);
  if (g_curl_init_rc != CURLE_OK) {
    snprintf(err, errlen, "http client: cannot initialise libcurl: %s",
             curl_easy_strerror(g_curl_init_rc));
    return NULL;
  }
  m5_http_client_t *c = calloc(1, sizeof *c);
  if (!c) {
    snprintf(err, errlen, "http client: out of memory");
    return NULL;
  }
  c->loop = loop;
  c->timeout_ms = opts->timeout_ms ? opts->timeout_ms : DEFAULT_TIMEOUT_MS;
  c->max_inflight = opts->max_inflight ? opts->max_inflight : DEFAULT_MAX_INFLIGHT;
  c->max_response = opts->max_response ? opts->max_response : DEFAULT_MAX_RESPONSE;
  int bad = 0;
  c->cert_file = dup_opt(opts->cert_file, &bad);
  c->key_file = dup_opt(opts->key_file, &bad);
  c->ca_file = dup_opt(opts->ca_file, &bad);
  struct curl_slist *h = curl_slist_append(NULL, "Content-Type: application/json");
  if (h) c->headers = h;
  h = h ? curl_slist_append(c->headers, "Accept: application/json") : NULL;
  h = h ? curl_slist_append(c->headers, "Expect:") : NULL;
  if (h && opts->bearer_token) {
    size_t n = strlen(opts->bearer_token) + sizeof "Authorization: Bearer ";
    char *line = malloc(n);
    if (line) {
      snprintf(line, n, "Authorization: Bearer %s", opts->bearer_token);
      h = curl_slist_append(c->headers, line);
      wipe_free(line, n);
    } else {
      h = NULL;
    }
  }
  if (!h) bad = 1;
  c->multi = curl_multi_init();
  if (!c->multi || bad) goto fail;
  bad |= curl_multi_setopt(c->multi, CURLMOPT_SOCKETFUNCTION, on_socket) != CURLM_OK;
  bad |= curl_multi_setopt(c->multi, CURLMOPT_SOCKETDATA, c) != CURLM_OK;
  bad |= curl_multi_setopt(c->multi, CURLMOPT_TIMERFUNCTION, on_curl_timer) != CURLM_OK;
  bad |= curl_multi_setopt(c->multi, CURLMOPT_TIMERDATA, c) != CURLM_OK;
  bad |= curl_multi_setopt(c->multi, CURLMOPT_PIPELINING, (long)CURLPIPE_MULTIPLEX) != CURLM_OK;
  if (bad) goto fail;
  return c;
fail:
  snprintf(err, errlen, "http client: cannot set up libcurl (out of memory?)");
  if (c->multi) curl_multi_cleanup(c->multi);
  free_headers(c->headers);
  free(c->cert_file);
  free(c->key_file);
  free(c->ca_file);
  free(c);
  return NULL;
}

void m5_http_client_free(m5_http_client_t *c) {
  if (!c || c->closing) return;
  c->closing = 1;
  /* Callbacks may start requests (refused: closing) but cannot free us twice. */
  c->dispatching++;
  while (c->reqs)
    req_finish(c->reqs, M5_ECLOSED, 0);
  c->dispatching--;
  if (c->dispatching == 0) client_destroy(c);
}
