/* m5ctl subscriber import FILE: `subscriber add --ue-svc-id` for a whole fleet. The file
 * (ctl_import_file.c) is checked first and refused whole, before anything is sent. Then each
 * line goes through the same two APIs as `add` with the same code for the keys (ctl.h,
 * "the AAnF as the AUSF calls it"): Naanf_AKMA_AnchorKey_Register (TS 29.535 cl. 5.2.2.2) with
 * the AUSF's certificate, then m5s's binding of the UE Service ID (docs/admin-api.md). One
 * GET of the binding comes before its PUT: a binding already naming the line's SUPI is left
 * as it is, so importing the same file again changes nothing in m5s, and a PUT over another
 * SUPI is counted as re-bound (the PUT's 200 alone cannot tell the two apart).
 *
 * Speed comes from concurrency, not from other APIs: a libcurl multi handle keeps up to
 * --parallel lines (default and maximum 64) in progress, each with one request in flight:
 * HTTP/2 streams multiplexed over one TLS connection to the AAnF, and HTTP/1.1 keep-alive
 * connections to the management port, one per line in progress. Not h2c there, although m5s
 * speaks it: libcurl before 8.0 (7.88 is Debian 12's) fails every request after the first on
 * a reused prior-knowledge connection ("Error in the HTTP2 framing layer", curl issue 10634);
 * an https:// management URL gets HTTP/2 over TLS, multiplexed like the AAnF's. 64 is the
 * number of changes the management port lets wait for its database before it answers 503, so
 * this command alone never meets that bound; a 503 from either server (someone else is busy
 * too) is waited out for its Retry-After and the request repeated, up to MAX_RETRIES times. */
#include "ctl.h"
#include "ctl_import_file.h"

#include "core/buf.h"
#include "core/err.h"
#include "crypto/akma.h"
#include "crypto/codec.h"

#include <curl/curl.h>
#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define BINDINGS_PATH "/admin/v1/bindings/"
#define MAX_ANSWER 65536
#define PARALLEL_MAX 64 /* = m5s's admin max_inflight (src/server/admin.c) */
#define TIMEOUT_S 30L   /* per request; the servers answer in order of their disk's fsyncs */
#define MAX_RETRIES 30  /* 503s waited out per request before the line counts as failed */
#define RETRY_AFTER_MAX 30

typedef struct {
  m5ctl_akma_in_t in; /* rid, realm, mnc_len for every line (kausf and supi are the file's) */
  const char *path, *aanf, *pki, *m5s_admin, *admin_token;
  long parallel;
} import_args_t;

static int parse_args(int argc, char **argv, import_args_t *a) {
  enum { OPT_AANF = M5CTL_OPT_OWN, OPT_PKI, OPT_M5S_ADMIN, OPT_ADMIN_TOKEN, OPT_PARALLEL };
  static const struct option opts[] = {
      {"rid", required_argument, NULL, M5CTL_OPT_RID},
      {"realm", required_argument, NULL, M5CTL_OPT_REALM},
      {"mnc-len", required_argument, NULL, M5CTL_OPT_MNC_LEN},
      {"aanf", required_argument, NULL, OPT_AANF},
      {"pki", required_argument, NULL, OPT_PKI},
      {"m5s-admin", required_argument, NULL, OPT_M5S_ADMIN},
      {"admin-token", required_argument, NULL, OPT_ADMIN_TOKEN},
      {"parallel", required_argument, NULL, OPT_PARALLEL},
      {NULL, 0, NULL, 0},
  };
  int c, rc;
  char *end;
  opterr = 0;
  optind = 1;
  while ((c = getopt_long(argc, argv, ":", opts, NULL)) != -1) {
    if ((rc = m5ctl_akma_in_option(&a->in, c, optarg)) >= 0) {
      if (rc) return rc;
      continue;
    }
    switch (c) {
    case OPT_AANF:
      if ((rc = m5ctl_aanf_option(optarg, &a->aanf))) return rc;
      break;
    case OPT_PKI:
      a->pki = optarg;
      break;
    case OPT_M5S_ADMIN:
      if ((rc = m5ctl_m5s_admin_option(optarg, &a->m5s_admin))) return rc;
      break;
    case OPT_ADMIN_TOKEN:
      a->admin_token = optarg;
      break;
    case OPT_PARALLEL:
      a->parallel = strtol(optarg, &end, 10);
      if (!*optarg || *end || a->parallel < 1 || a->parallel > PARALLEL_MAX)
        return m5ctl_usage_error("--parallel: expected 1 to %d, got '%s'", PARALLEL_MAX, optarg);
      break;
    default:
      return m5ctl_option_error(c, argv);
    }
  }
  if (optind >= argc)
    return m5ctl_usage_error("FILE: required (one 'SUPI K_AUSF ueSvcId' a line; - for stdin)");
  a->path = argv[optind++];
  if ((rc = m5ctl_operand_error(argc, argv))) return rc;
  if (a->in.realm && a->in.mnc_len)
    return m5ctl_usage_error("--mnc-len: cannot be combined with --realm");
  if (!a->aanf) a->aanf = M5CTL_DEFAULT_AANF;
  if (!a->pki) a->pki = M5CTL_DEFAULT_PKI;
  if (!a->m5s_admin) a->m5s_admin = M5CTL_DEFAULT_M5S_ADMIN;
  if (!a->parallel) a->parallel = PARALLEL_MAX;
  return 0;
}

/* What the file alone cannot say: a SUPI too short for the MCC and an --mnc-len 3 MNC of the
 * realm built from it. Printed like the file's own errors; 0 when every line derives. */
static int check_realms(const import_args_t *a, const m5ctl_import_list_t *l) {
  char realm[M5_AKMA_FQDN_MAX + 1];
  size_t bad = 0;
  for (size_t i = 0; !a->in.realm && i < l->n; i++) {
    if (!m5_akma_realm_from_supi(l->v[i].supi, a->in.mnc_len ? a->in.mnc_len : 2, realm,
                                 sizeof realm))
      continue;
    if (++bad <= M5CTL_IMPORT_ERRORS_SHOWN)
      fprintf(stderr, "%s:%u: supi: too short for an MCC and a %d-digit MNC (--mnc-len)\n", a->path,
              l->v[i].line, a->in.mnc_len ? a->in.mnc_len : 2);
  }
  if (bad)
    fprintf(stderr, "m5ctl: %s: refused (%zu bad line%s); nothing was sent\n", a->path, bad,
            bad == 1 ? "" : "s");
  return bad ? 2 : 0;
}

/* ---- the requests ---- */

typedef enum { STEP_REGISTER, STEP_LOOKUP, STEP_BIND } step_t;

typedef struct {
  CURL *h;
  m5ctl_import_entry_t *e; /* the line in progress; NULL = free */
  step_t step;
  int attached;                        /* h is in the multi handle */
  double retry_at;                     /* waiting out a 503 until then (monotonic seconds) */
  unsigned retries;                    /* of the current request */
  char body[M5CTL_ANCHORKEY_BODY_MAX]; /* holds K_AKMA while registering: wiped */
  size_t body_len;
  char akid[M5_AKMA_AKID_MAX];
  m5_buf_t answer, url;
  char errbuf[CURL_ERROR_SIZE];
} slot_t;

typedef struct {
  const import_args_t *a;
  m5ctl_aanf_t aanf;
  CURLM *multi;
  struct curl_slist *aanf_hdrs, *get_hdrs, *put_hdrs;
  long admin_version; /* CURL_HTTP_VERSION_* for the management port */
  size_t ok, rebound, failed;
  long long failed_deliveries;
} import_t;

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static size_t on_data(char *p, size_t size, size_t n, void *arg) {
  return m5_buf_append(arg, p, size * n) == 0 ? size * n : 0;
}

/* Configures s->h for the request of its step from scratch and adds it to the multi handle. */
static int attach(import_t *im, slot_t *s) {
  CURL *h = s->h;
  curl_easy_reset(h);
  m5_buf_wipe_free(&s->answer);
  m5_buf_init(&s->answer, MAX_ANSWER);
  s->errbuf[0] = '\0';
  curl_easy_setopt(h, CURLOPT_PRIVATE, s);
  curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(h, CURLOPT_TIMEOUT, TIMEOUT_S);
  /* An HTTP/2 request waits for the connection being set up rather than open another. */
  curl_easy_setopt(h, CURLOPT_PIPEWAIT, 1L);
  curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_data);
  curl_easy_setopt(h, CURLOPT_WRITEDATA, &s->answer);
  curl_easy_setopt(h, CURLOPT_ERRORBUFFER, s->errbuf);
  if (s->step == STEP_REGISTER) {
    curl_easy_setopt(h, CURLOPT_URL, im->aanf.url);
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "https");
    curl_easy_setopt(h, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_2TLS);
    curl_easy_setopt(h, CURLOPT_SSLVERSION, (long)CURL_SSLVERSION_TLSv1_2);
    curl_easy_setopt(h, CURLOPT_SSLCERT, im->aanf.cert);
    curl_easy_setopt(h, CURLOPT_SSLKEY, im->aanf.key);
    curl_easy_setopt(h, CURLOPT_CAINFO, im->aanf.ca);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, im->aanf_hdrs);
    curl_easy_setopt(h, CURLOPT_POSTFIELDS, s->body);
    curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, (long)s->body_len);
  } else {
    curl_easy_setopt(h, CURLOPT_URL, (const char *)s->url.data);
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(h, CURLOPT_HTTP_VERSION, im->admin_version);
    if (s->step == STEP_LOOKUP) {
      curl_easy_setopt(h, CURLOPT_HTTPHEADER, im->get_hdrs);
    } else {
      curl_easy_setopt(h, CURLOPT_HTTPHEADER, im->put_hdrs);
      curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, "PUT");
      curl_easy_setopt(h, CURLOPT_POSTFIELDS, s->body);
      curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, (long)s->body_len);
    }
  }
  if (curl_multi_add_handle(im->multi, h) != CURLM_OK) return -1;
  s->attached = 1;
  return 0;
}

/* The line is over: counted, reported if it failed (why != NULL), the slot freed. */
static void finish(import_t *im, slot_t *s, const char *why) {
  if (why) {
    fprintf(stderr, "%s:%u: %s: %s\n", im->a->path, s->e->line, s->e->ue_svc_id, why);
    im->failed++;
  } else {
    im->ok++;
  }
  m5_wipe(s->e->kausf, sizeof s->e->kausf);
  m5_wipe(s->body, sizeof s->body);
  m5_buf_wipe_free(&s->answer);
  m5_buf_init(&s->answer, MAX_ANSWER);
  s->e = NULL;
}

static void next_step(import_t *im, slot_t *s, step_t step) {
  s->step = step;
  s->retries = 0;
  if (attach(im, s) != 0) finish(im, s, "cannot start the request (libcurl)");
}

/* Takes line e into slot s: derives its body (the same code as `subscriber add`) and starts
 * the registration. */
static void start(import_t *im, slot_t *s, m5ctl_import_entry_t *e) {
  m5ctl_akma_in_t in = im->a->in;
  s->e = e;
  s->retry_at = 0;
  memcpy(in.kausf, e->kausf, sizeof in.kausf);
  in.have_kausf = 1;
  in.supi = e->supi;
  int rc = m5ctl_anchorkey_body(&in, s->body, &s->body_len, s->akid);
  m5_wipe(in.kausf, sizeof in.kausf);
  m5_wipe(e->kausf, sizeof e->kausf); /* K_AUSF is not needed any more */
  m5_buf_reset(&s->url);
  if (rc) {
    finish(im, s, "cannot derive K_AKMA and the A-KID");
  } else if (m5ctl_admin_url(im->a->m5s_admin, BINDINGS_PATH, e->ue_svc_id, &s->url) != 0) {
    finish(im, s, "the binding's URL is too long");
  } else {
    next_step(im, s, STEP_REGISTER);
  }
}

/* A 503: the request again after its Retry-After (1 s when absent), or the line fails. */
static void busy(import_t *im, slot_t *s, const char *who) {
  curl_off_t after = 0;
  curl_easy_getinfo(s->h, CURLINFO_RETRY_AFTER, &after);
  if (++s->retries > MAX_RETRIES) {
    char why[128];
    snprintf(why, sizeof why, "%s still busy (503) after %d retries", who, MAX_RETRIES);
    finish(im, s, why);
    return;
  }
  if (after < 1) after = 1;
  if (after > RETRY_AFTER_MAX) after = RETRY_AFTER_MAX;
  s->retry_at = now_s() + (double)after;
}

static void registered(import_t *im, slot_t *s, long status) {
  char why[1200];
  if (status == 503) {
    m5_wipe(s->answer.data, s->answer.len);
    busy(im, s, "the AAnF");
    return;
  }
  if (status == 200 && m5ctl_anchorkey_confirmed(&s->answer, s->akid)) {
    m5_wipe(s->body, sizeof s->body); /* K_AKMA */
    int n = snprintf(s->body, sizeof s->body, "{\"supi\":\"%s\"}", s->e->supi);
    s->body_len = (size_t)n;
    next_step(im, s, STEP_LOOKUP);
    return;
  }
  char text[1024];
  if (status == 200)
    snprintf(text, sizeof text, "the AAnF answered 200 without our aKId");
  else
    m5ctl_aanf_problem_text(status, &s->answer, text, sizeof text);
  snprintf(why, sizeof why, "the AAnF refused the registration: %s", text);
  finish(im, s, why);
}

/* GET of the binding: the same SUPI already = done; none or another = PUT. */
static void looked_up(import_t *im, slot_t *s, long status) {
  if (status == 503) {
    busy(im, s, "m5s");
    return;
  }
  if (status == 404) {
    next_step(im, s, STEP_BIND);
    return;
  }
  if (status == 200) {
    json_t *o = json_loadb((const char *)s->answer.data, s->answer.len, 0, NULL);
    const char *supi = json_string_value(json_object_get(o, "supi"));
    int same = supi && !strcmp(supi, s->e->supi);
    json_decref(o);
    if (same)
      finish(im, s, NULL);
    else
      next_step(im, s, STEP_BIND);
    return;
  }
  char text[1024], why[1200];
  m5ctl_admin_problem_text(status, &s->answer, text, sizeof text);
  snprintf(why, sizeof why, "m5s refused to read the binding: %s%s", text,
           status == 401 ? "; is --admin-token the token file of this m5s?" : "");
  finish(im, s, why);
}

static void bound(import_t *im, slot_t *s, long status) {
  if (status == 503) {
    busy(im, s, "m5s");
    return;
  }
  if (status == 200 || status == 201) {
    /* failedDeliveries: what was queued for the previous subscriber of a re-bound ID; an m5s
     * that does not say is taken as none. */
    json_t *o = json_loadb((const char *)s->answer.data, s->answer.len, 0, NULL);
    json_t *f = json_object_get(o, "failedDeliveries");
    if (json_is_integer(f) && json_integer_value(f) > 0)
      im->failed_deliveries += (long long)json_integer_value(f);
    json_decref(o);
    if (status == 200) im->rebound++;
    finish(im, s, NULL);
    return;
  }
  char text[1024], why[1200];
  m5ctl_admin_problem_text(status, &s->answer, text, sizeof text);
  snprintf(why, sizeof why, "m5s refused the binding: %s%s", text,
           status == 401 ? "; is --admin-token the token file of this m5s?" : "");
  finish(im, s, why);
}

static void done(import_t *im, slot_t *s, CURLcode cc) {
  long status = 0;
  curl_easy_getinfo(s->h, CURLINFO_RESPONSE_CODE, &status);
  curl_multi_remove_handle(im->multi, s->h);
  s->attached = 0;
  if (cc != CURLE_OK) {
    char why[CURL_ERROR_SIZE + 2300];
    const char *err = s->errbuf[0] ? s->errbuf : curl_easy_strerror(cc);
    if (s->step == STEP_REGISTER)
      snprintf(why, sizeof why, "cannot register at the AAnF %s: %s", im->aanf.url, err);
    else
      snprintf(why, sizeof why, "cannot reach the m5s admin API %s: %s", im->a->m5s_admin, err);
    finish(im, s, why);
  } else if (s->step == STEP_REGISTER) {
    registered(im, s, status);
  } else if (s->step == STEP_LOOKUP) {
    looked_up(im, s, status);
  } else {
    bound(im, s, status);
  }
}

/* Runs every line of l through the slots; returns 0, or -1 when libcurl itself fails. */
static int run(import_t *im, m5ctl_import_list_t *l, slot_t *slots, size_t nslots) {
  size_t next = 0;
  for (;;) {
    double now = now_s(), wake = now + 1.0;
    size_t busy_slots = 0;
    for (size_t i = 0; i < nslots; i++) {
      slot_t *s = &slots[i];
      if (!s->e && next < l->n) start(im, s, &l->v[next++]);
      if (s->e && !s->attached && s->retry_at <= now) {
        s->retry_at = 0;
        if (attach(im, s) != 0) finish(im, s, "cannot start the request (libcurl)");
      }
      if (s->e && !s->attached && s->retry_at < wake) wake = s->retry_at;
      if (s->e) busy_slots++;
    }
    if (!busy_slots && next >= l->n) return 0;
    int running = 0, left = 0;
    if (curl_multi_perform(im->multi, &running) != CURLM_OK) return -1;
    CURLMsg *m;
    int progress = 0;
    while ((m = curl_multi_info_read(im->multi, &left))) {
      char *priv = NULL;
      if (m->msg != CURLMSG_DONE) continue;
      curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, &priv);
      done(im, (slot_t *)(void *)priv, m->data.result);
      progress = 1;
    }
    /* A request that ended made a next one or freed its slot for the next line: start those
     * before waiting, for nothing may wake the wait until they are sent. */
    if (progress) continue;
    int ms = (int)((wake - now_s()) * 1000.0);
    if (curl_multi_poll(im->multi, NULL, 0, ms < 1 ? 1 : ms > 1000 ? 1000 : ms, NULL) != CURLM_OK)
      return -1;
  }
}

static struct curl_slist *headers(const char *const *lines, size_t n) {
  struct curl_slist *l = NULL;
  for (size_t i = 0; i < n; i++) {
    struct curl_slist *t = curl_slist_append(l, lines[i]);
    if (!t) {
      m5ctl_headers_free(l);
      return NULL;
    }
    l = t;
  }
  return l;
}


/* Before any key leaves: one GET of the first line's binding, so that an m5s that cannot be
 * reached or refuses the token is one line and exit 1 with nothing sent, not one failed line
 * per subscriber after each has been registered at the AAnF. */
static int preflight(const import_args_t *a, const m5ctl_import_list_t *l) {
  m5_buf_t answer;
  m5_buf_init(&answer, MAX_ANSWER);
  long status = 0;
  int rc = m5ctl_admin_request(a->m5s_admin, m5ctl_admin_token_file(a->admin_token), "GET",
                               BINDINGS_PATH, l->v[0].ue_svc_id, NULL, &answer, &status);
  if (rc == 0 && status != 200 && status != 404 && status != 503)
    rc = m5ctl_admin_refused(status, &answer, "m5s refused to read the binding of %s",
                             l->v[0].ue_svc_id);
  if (rc) fprintf(stderr, "m5ctl: %s: nothing was sent\n", a->path);
  m5_buf_free(&answer);
  return rc;
}

static int import_all(import_t *im, m5ctl_import_list_t *l) {
  const import_args_t *a = im->a;
  char auth[M5CTL_AUTH_LINE_MAX];
  int rc = m5ctl_aanf_setup(a->aanf, a->pki, &im->aanf);
  if (rc) return rc;
  if (l->n && (rc = preflight(a, l)) != 0) return rc;
  if (m5ctl_admin_auth_header(m5ctl_admin_token_file(a->admin_token), auth, sizeof auth)) return 1;
  static const char accept[] = "Accept: application/json, application/problem+json";
  const char *aanf_h[] = {accept, "Content-Type: application/json", "Expect:"};
  const char *get_h[] = {accept, auth};
  const char *put_h[] = {accept, auth, "Content-Type: application/json", "Expect:"};
  im->aanf_hdrs = headers(aanf_h, 3);
  im->get_hdrs = headers(get_h, 2);
  im->put_hdrs = headers(put_h, 4);
  m5_wipe(auth, sizeof auth);
  im->admin_version = strncmp(a->m5s_admin, "http://", 7) == 0 ? (long)CURL_HTTP_VERSION_1_1
                                                               : (long)CURL_HTTP_VERSION_2TLS;
  size_t nslots = (size_t)a->parallel < l->n ? (size_t)a->parallel : l->n;
  slot_t *slots = calloc(nslots ? nslots : 1, sizeof *slots);
  im->multi = curl_multi_init();
  rc = im->aanf_hdrs && im->get_hdrs && im->put_hdrs && slots && im->multi ? 0 : -1;
  for (size_t i = 0; rc == 0 && i < nslots; i++) {
    m5_buf_init(&slots[i].answer, MAX_ANSWER);
    m5_buf_init(&slots[i].url, 4096);
    if (!(slots[i].h = curl_easy_init())) rc = -1;
  }
  if (rc == 0) {
    /* HTTP/2: one connection, every line a stream on it; HTTP/1.1: a connection per slot. */
    curl_multi_setopt(im->multi, CURLMOPT_PIPELINING, (long)CURLPIPE_MULTIPLEX);
    curl_multi_setopt(im->multi, CURLMOPT_MAX_HOST_CONNECTIONS, (long)nslots);
    curl_multi_setopt(im->multi, CURLMOPT_MAXCONNECTS, (long)nslots + 1);
    rc = run(im, l, slots, nslots);
  }
  if (rc) fputs("m5ctl: libcurl failed (out of memory?)\n", stderr);
  for (size_t i = 0; slots && i < nslots; i++) {
    if (slots[i].attached) curl_multi_remove_handle(im->multi, slots[i].h);
    if (slots[i].h) curl_easy_cleanup(slots[i].h);
    m5_wipe(slots[i].body, sizeof slots[i].body);
    m5_buf_wipe_free(&slots[i].answer);
    m5_buf_free(&slots[i].url);
  }
  free(slots);
  if (im->multi) curl_multi_cleanup(im->multi);
  m5ctl_headers_free(im->aanf_hdrs);
  m5ctl_headers_free(im->get_hdrs);
  m5ctl_headers_free(im->put_hdrs);
  return rc ? 1 : 0;
}

int m5ctl_subscriber_import(int argc, char **argv) {
  import_args_t a;
  memset(&a, 0, sizeof a);
  m5ctl_import_list_t list = {0};
  int rc = parse_args(argc, argv, &a);
  if (rc) return rc;
  rc = m5ctl_import_read(a.path, stderr, &list);
  if (rc) return rc == M5_EINVAL ? 2 : 1;
  if ((rc = check_realms(&a, &list))) {
    m5ctl_import_list_free(&list);
    return rc;
  }
  import_t im = {.a = &a};
  double t0 = now_s();
  if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
    fputs("m5ctl: cannot initialise libcurl\n", stderr);
    rc = 1;
  } else {
    rc = import_all(&im, &list);
    curl_global_cleanup();
  }
  if (rc == 0) {
    printf("imported %zu subscribers (%zu re-bound, %lld failed deliveries) in %.1f s\n", im.ok,
           im.rebound, im.failed_deliveries, now_s() - t0);
    if (im.failed)
      fprintf(stderr,
              "m5ctl: %s: %zu of %zu lines failed (listed above); the others are "
              "provisioned\n",
              a.path, im.failed, list.n);
    if (fflush(stdout)) rc = 1;
    if (im.failed) rc = 1;
  }
  m5ctl_import_list_free(&list);
  return rc;
}
