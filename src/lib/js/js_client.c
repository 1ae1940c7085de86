/* The libnats 3.4.1 wrapper of js_client.h: connection, JetStream context, ensure of streams and
 * KV buckets, async publishes with a Nats-Msg-Id and a per-client acknowledgement callback
 * (issue 13). libnats units: jsOptions.Wait and jsPubOptions.MaxWait in ms, stream Duplicates,
 * MaxAge and kvConfig.TTL in ns (3.4.1; checked against a server in the design work). */
#include "js/js_client.h"

#include "core/err.h"
#include "crypto/codec.h"

#include <nats/nats.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define NS_PER_MS 1000000LL

struct m5_js_client {
  natsOptions *opts;
  natsConnection *nc;
  jsCtx *js;
  int64_t timeout_ms;
  m5_js_ack_fn on_ack;
  void *ack_arg;
};

struct m5_js_kv {
  kvStore *kv;
  jsCtx *js;       /* the client's: writes are plain publishes (m5_js_kv_create) */
  m5_js_client_t *c;
  char bucket[64]; /* validated by ensure: A-Z a-z 0-9 _ - */
  char stream[80]; /* KV_<bucket> */
};

__attribute__((format(printf, 4, 5))) static int say(char *err, size_t err_size, int rc,
                                                     const char *fmt, ...) {
  if (err && err_size) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, err_size, fmt, ap);
    va_end(ap);
  }
  return rc;
}

/* "what: <libnats' last error of this thread, or the status text>". */
static int nats_fail(char *err, size_t err_size, int rc, natsStatus s, const char *what) {
  const char *t = nats_GetLastError(NULL);
  return say(err, err_size, rc, "%s: %s", what, t && *t ? t : natsStatus_GetText(s));
}

/* The m5 code of a failed libnats call. */
static int nats_rc(natsStatus s) {
  switch (s) {
  case NATS_TIMEOUT:
    return M5_ETIMEDOUT;
  case NATS_INVALID_ARG:
    return M5_EINVAL;
  case NATS_NOT_FOUND:
    return M5_ENOENT;
  case NATS_NO_RESPONDERS:
  /* the connection is down or being re-established (a NATS node died, or all): the request
   * may or may not have reached the cluster; like "no responders", the caller answers "come
   * back" (docs/scale-out.md) */
  case NATS_CONNECTION_DISCONNECTED:
  case NATS_NO_SERVER:
  case NATS_STALE_CONNECTION:
  case NATS_NOT_YET_CONNECTED:
  case NATS_INSUFFICIENT_BUFFER:
    return M5_EAGAIN;
  case NATS_NO_MEMORY:
    return M5_ENOMEM;
  default:
    return M5_EIO;
  }
}

/* A compare-and-set's failure other than a stale revision (kv update, kv delete): M5_EAGAIN
 * means "stale revision, read again" there, so "come back" (the cluster unreachable or without
 * responders) is M5_ETIMEDOUT: not known to be written, and the caller answers "come back" all
 * the same, without taking the key for written by someone else. */
static int cas_rc(natsStatus s) {
  int rc = nats_rc(s);
  return rc == M5_EAGAIN ? M5_ETIMEDOUT : rc;
}

/* The id of an async KV write (m5_js_kv_publish_async): not a Nats-Msg-Id, which the server
 * would keep in memory for the bucket's duplicate window (and which would answer a repeat
 * "duplicate" without checking the revision); it only names the write in its acknowledgement. */
#define PUB_ID_HDR "M5-Pub-Id"

/* While the connection is down (reconnecting: a NATS node died, or all of them), libnats
 * would buffer a request and send it once it is back, long after its caller gave up: a dedup
 * claim or a delivery stored after the sender was told 5.03 / 503. The calls that write (and
 * the leader reads of an accept) fail at once instead: M5_EAGAIN, nothing sent. A request sent
 * just before the connection dropped may still arrive: its outcome stays unknown, as for a
 * timeout (docs/store.md, the claim). */
static int unreachable(m5_js_client_t *c, char *err, size_t err_size, const char *what) {
  if (natsConnection_Status(c->nc) == NATS_CONN_STATUS_CONNECTED) return M5_OK;
  return say(err, err_size, M5_EAGAIN, "%s: NATS unreachable (reconnecting)", what);
}

/* The outcome of an async publish, on a libnats thread. The message is destroyed BEFORE the
 * caller hears of it: the callback may be what lets the owner close the client and exit, and a
 * message still to be freed after it would race that (seen as a leak at exit under load). So
 * the subject and msg_id are copied first (both bounded: m5_js_publish_async). */
static void on_pub_ack(jsCtx *js, natsMsg *msg, jsPubAck *pa, jsPubAckErr *pae, void *closure) {
  (void)js;
  m5_js_client_t *c = closure;
  char id[M5_JS_PUB_NAME_MAX + 1] = "", subject[M5_JS_PUB_NAME_MAX + 1] = "";
  const char *h = NULL;
  if ((natsMsgHeader_Get(msg, "Nats-Msg-Id", &h) == NATS_OK && h) ||
      (natsMsgHeader_Get(msg, PUB_ID_HDR, &h) == NATS_OK && h)) /* a KV write's */
    snprintf(id, sizeof id, "%s", h);
  const char *subj = natsMsg_GetSubject(msg);
  snprintf(subject, sizeof subject, "%s", subj ? subj : "");
  natsMsg_Destroy(msg); /* ours in the handler (nats.h, jsPubAckHandler) */
  m5_js_ack_t a = {.status = M5_OK, .msg_id = id, .subject = subject, .text = ""};
  if (pae) {
    a.js_code = (int)pae->ErrCode;
    a.text = pae->ErrText && *pae->ErrText ? pae->ErrText : natsStatus_GetText(pae->Err);
    if (pae->Err == NATS_TIMEOUT)
      a.status = M5_ETIMEDOUT;
    else if (nats_rc(pae->Err) == M5_EAGAIN)
      a.status = M5_EAGAIN;
    else if (pae->ErrCode == JSStreamStoreFailedErr) /* a stream limit with DiscardNew */
      a.status = M5_EFULL;
    else
      a.status = M5_EIO;
  } else if (pa) {
    a.seq = pa->Sequence;
    a.duplicate = pa->Duplicate;
  } else {
    a.status = M5_EIO;
    a.text = "no acknowledgement";
  }
  c->on_ack(c->ack_arg, &a);
}

static bool set(const char *v) { return v && *v; }

/* The first line of path (a secret): malloc'ed, wiped and freed by the caller (m5_wipe). */
static int read_secret(const char *path, char **out, char *err, size_t err_size) {
  *out = NULL;
  FILE *f = fopen(path, "r");
  if (!f) return say(err, err_size, M5_EINVAL, "js client: cannot read %s", path);
  char *buf = calloc(1, 1025);
  size_t n = buf ? fread(buf, 1, 1024, f) : 0;
  int more = buf && n == 1024 && fgetc(f) != EOF;
  fclose(f);
  if (!buf) return say(err, err_size, M5_ENOMEM, "js client: out of memory");
  char *nl = memchr(buf, '\n', n);
  size_t len = nl ? (size_t)(nl - buf) : n;
  if (len && buf[len - 1] == '\r') len--;
  if (!len || (more && !nl) || memchr(buf, 0, len)) {
    m5_wipe(buf, 1025);
    free(buf);
    return say(err, err_size, M5_EINVAL, "js client: %s: want the password on its first line "
               "(1-1024 bytes)", path);
  }
  m5_wipe(buf + len, 1025 - len);
  *out = buf;
  return M5_OK;
}

/* TLS and credentials into the options (m5_js_auth_t). */
static int set_auth(natsOptions *opts, const m5_js_auth_t *a, char *err, size_t err_size) {
  if (set(a->tls_cert) != set(a->tls_key))
    return say(err, err_size, M5_EINVAL, "js client: a TLS client certificate needs its key");
  if (set(a->password_file) && !set(a->user))
    return say(err, err_size, M5_EINVAL, "js client: a password needs a user name");
  if (set(a->creds_file) && set(a->user))
    return say(err, err_size, M5_EINVAL, "js client: a user name or a credentials file, not both");
  natsStatus s = NATS_OK;
  if (set(a->tls_ca) || set(a->tls_cert)) {
    s = natsOptions_SetSecure(opts, true);
    if (s == NATS_OK && set(a->tls_ca)) {
      s = natsOptions_LoadCATrustedCertificates(opts, a->tls_ca);
      if (s != NATS_OK) return nats_fail(err, err_size, M5_EINVAL, s, a->tls_ca);
    }
    if (s == NATS_OK && set(a->tls_cert)) {
      s = natsOptions_LoadCertificatesChain(opts, a->tls_cert, a->tls_key);
      if (s != NATS_OK) return nats_fail(err, err_size, M5_EINVAL, s, a->tls_cert);
    }
  }
  if (s == NATS_OK && set(a->user)) {
    char *pw = NULL;
    if (set(a->password_file)) {
      int rc = read_secret(a->password_file, &pw, err, err_size);
      if (rc) return rc;
    }
    s = natsOptions_SetUserInfo(opts, a->user, pw);
    if (pw) {
      m5_wipe(pw, strlen(pw));
      free(pw);
    }
    if (s != NATS_OK) return say(err, err_size, M5_EINVAL, "js client: user %s: rejected", a->user);
  }
  if (s == NATS_OK && set(a->creds_file)) {
    s = natsOptions_SetUserCredentialsFromFiles(opts, a->creds_file, NULL);
    if (s != NATS_OK) return say(err, err_size, M5_EINVAL, "js client: credentials file %s: "
                                 "rejected", a->creds_file);
  }
  return s == NATS_OK ? M5_OK : nats_fail(err, err_size, M5_EINVAL, s, "js client TLS options");
}

int m5_js_client_open(m5_js_client_t **out, const m5_js_client_opts_t *o, char *err,
                      size_t err_size) {
  if (!out || !o || !o->servers || !o->n_servers || o->n_servers > 64 || !o->on_ack)
    return say(err, err_size, M5_EINVAL, "js client: servers (1-64) and on_ack are required");
  *out = NULL;
  m5_js_client_t *c = calloc(1, sizeof *c);
  if (!c) return say(err, err_size, M5_ENOMEM, "js client: out of memory");
  c->timeout_ms = o->timeout_ms > 0 ? o->timeout_ms : 5000;
  c->on_ack = o->on_ack;
  c->ack_arg = o->ack_arg;
  natsStatus s = natsOptions_Create(&c->opts);
  if (s == NATS_OK)
    s = natsOptions_SetServers(c->opts, (const char **)o->servers, (int)o->n_servers);
  if (s == NATS_OK) s = natsOptions_SetMaxReconnect(c->opts, -1);
  if (s == NATS_OK)
    s = natsOptions_SetReconnectWait(c->opts,
                                     o->reconnect_wait_ms > 0 ? o->reconnect_wait_ms : 200);
  if (s == NATS_OK) s = natsOptions_SetTimeout(c->opts, c->timeout_ms);
  /* requests pending when the connection drops fail at once instead of running into the timeout */
  if (s == NATS_OK) s = natsOptions_SetFailRequestsOnDisconnect(c->opts, true);
  if (s == NATS_OK && o->name) s = natsOptions_SetName(c->opts, o->name);
  if (s != NATS_OK) {
    int rc = nats_fail(err, err_size, M5_EINVAL, s, "js client options");
    m5_js_client_close(c);
    return rc;
  }
  int arc = set_auth(c->opts, &o->auth, err, err_size);
  if (arc) {
    m5_js_client_close(c);
    return arc;
  }
  /* One attempt tries each server once; a server that is restarting or busy (a cluster coming
   * up, a loaded machine) may refuse it, so keep trying until the timeout. */
  int64_t deadline = nats_Now() + c->timeout_ms;
  int64_t wait = o->reconnect_wait_ms > 0 ? o->reconnect_wait_ms : 200;
  int attempts = 0;
  while ((s = natsConnection_Connect(&c->nc, c->opts)) != NATS_OK && s != NATS_INVALID_ARG &&
         nats_Now() + wait < deadline) {
    attempts++;
    nats_Sleep(wait);
  }
  if (s != NATS_OK) {
    char what[96];
    snprintf(what, sizeof what, "js client: connect to the NATS servers (%d attempts, status %d)",
             attempts + 1, (int)s);
    int rc = nats_fail(err, err_size, nats_rc(s), s, what);
    m5_js_client_close(c);
    return rc;
  }
  jsOptions jo;
  jsOptions_Init(&jo);
  jo.Wait = c->timeout_ms;
  jo.PublishAsync.MaxPending = o->max_pending > 0 ? o->max_pending : 4096;
  jo.PublishAsync.AckHandler = on_pub_ack;
  jo.PublishAsync.AckHandlerClosure = c;
  s = natsConnection_JetStream(&c->js, c->nc, &jo);
  if (s != NATS_OK) {
    int rc = nats_fail(err, err_size, M5_EIO, s, "js client: JetStream context");
    m5_js_client_close(c);
    return rc;
  }
  *out = c;
  return M5_OK;
}

void m5_js_client_close(m5_js_client_t *c) {
  if (!c) return;
  /* Drain first: what the cluster already sent (late acknowledgements, replies) is delivered
   * and freed by libnats' threads before the connection goes, instead of being left in a
   * subscription's queue at exit. */
  if (c->nc && natsConnection_DrainTimeout(c->nc, c->timeout_ms) == NATS_OK) {
    int64_t deadline = nats_Now() + c->timeout_ms;
    while (!natsConnection_IsClosed(c->nc) && nats_Now() < deadline)
      nats_Sleep(10);
  }
  if (c->nc) natsConnection_Close(c->nc);
  if (c->js) jsCtx_Destroy(c->js);
  if (c->nc) natsConnection_Destroy(c->nc);
  if (c->opts) natsOptions_Destroy(c->opts);
  free(c);
}

bool m5_js_client_connected(m5_js_client_t *c) {
  return c && c->nc && natsConnection_Status(c->nc) == NATS_CONN_STATUS_CONNECTED;
}

/* Appends "; what" differences to a buffer. */
typedef struct {
  char *p;
  size_t size, len;
  int n;
} diffs_t;

__attribute__((format(printf, 2, 3))) static void diff(diffs_t *d, const char *fmt, ...) {
  if (d->len + 2 >= d->size) return;
  if (d->n++) d->len += (size_t)snprintf(d->p + d->len, d->size - d->len, "; ");
  if (d->len >= d->size) return;
  va_list ap;
  va_start(ap, fmt);
  int k = vsnprintf(d->p + d->len, d->size - d->len, fmt, ap);
  va_end(ap);
  if (k > 0) d->len += (size_t)k < d->size - d->len ? (size_t)k : d->size - d->len - 1;
}

static bool has_subject(const jsStreamConfig *cfg, const char *subj) {
  for (int i = 0; i < cfg->SubjectsLen; i++)
    if (!strcmp(cfg->Subjects[i], subj)) return true;
  return false;
}

/* Stream info of name: M5_OK (*si set), M5_ENOENT, or an error. */
static int stream_info(m5_js_client_t *c, const char *name, jsStreamInfo **si, char *err,
                       size_t err_size) {
  jsErrCode jerr = 0;
  *si = NULL;
  natsStatus s = js_GetStreamInfo(si, c->js, name, NULL, &jerr);
  if (s == NATS_OK) return M5_OK;
  if (s == NATS_NOT_FOUND || jerr == JSStreamNotFoundErr)
    return say(err, err_size, M5_ENOENT, "stream %s: not found", name);
  return nats_fail(err, err_size, nats_rc(s), s, name);
}

/* The differences of an existing stream to the wanted settings, into err; M5_EEXIST if any. */
static int compare_stream(const char *what, const jsStreamConfig *have,
                          const m5_js_stream_spec_t *s, int64_t history, int64_t max_age_ns,
                          char *err, size_t err_size) {
  char buf[512] = "";
  diffs_t d = {buf, sizeof buf, 0, 0};
  if (s->subjects) {
    for (size_t i = 0; i < s->n_subjects; i++)
      if (!has_subject(have, s->subjects[i])) diff(&d, "subject %s missing", s->subjects[i]);
    for (int i = 0; i < have->SubjectsLen; i++) {
      bool want = false;
      for (size_t j = 0; j < s->n_subjects && !want; j++)
        want = !strcmp(have->Subjects[i], s->subjects[j]);
      if (!want) diff(&d, "extra subject %s", have->Subjects[i]);
    }
  }
  if (have->Storage != js_FileStorage) diff(&d, "storage memory (want file)");
  if (have->Replicas != (s->replicas > 0 ? s->replicas : 1))
    diff(&d, "replicas %lld (want %d)", (long long)have->Replicas,
         s->replicas > 0 ? s->replicas : 1);
  if (s->duplicate_window_ms && have->Duplicates != s->duplicate_window_ms * NS_PER_MS)
    diff(&d, "duplicate window %lld ms (want %lld ms)", (long long)(have->Duplicates / NS_PER_MS),
         (long long)s->duplicate_window_ms);
  if (history && have->MaxMsgsPerSubject != history)
    diff(&d, "history %lld (want %lld)", (long long)have->MaxMsgsPerSubject, (long long)history);
  if (history && have->MaxAge != max_age_ns)
    diff(&d, "ttl %lld ms (want %lld ms)", (long long)(have->MaxAge / NS_PER_MS),
         (long long)(max_age_ns / NS_PER_MS));
  if (!d.n) return M5_OK;
  return say(err, err_size, M5_EEXIST, "%s exists with other settings: %s", what, buf);
}

/* The limits of a stream spec into a config (0 = none: -1 for the server). */
static void set_limits(jsStreamConfig *cfg, const m5_js_stream_spec_t *s) {
  cfg->MaxMsgs = s->max_msgs > 0 ? s->max_msgs : -1;
  cfg->MaxMsgsPerSubject = s->max_msgs_per_subject > 0 ? s->max_msgs_per_subject : -1;
  cfg->Discard = (s->max_msgs > 0 || s->discard_new_per_subject) ? js_DiscardNew : js_DiscardOld;
  cfg->DiscardNewPerSubject = s->discard_new_per_subject;
  cfg->AllowDirect = s->allow_direct;
}

static bool limits_differ(const jsStreamConfig *have, const m5_js_stream_spec_t *s) {
  jsStreamConfig want = *have;
  set_limits(&want, s);
  return want.MaxMsgs != have->MaxMsgs || want.MaxMsgsPerSubject != have->MaxMsgsPerSubject ||
         want.Discard != have->Discard || want.DiscardNewPerSubject != have->DiscardNewPerSubject ||
         want.AllowDirect != have->AllowDirect;
}

int m5_js_ensure_stream(m5_js_client_t *c, const m5_js_stream_spec_t *s, char *err,
                        size_t err_size) {
  if (!c || !s || !s->name || !*s->name || !s->subjects || !s->n_subjects || s->n_subjects > 64 ||
      s->duplicate_window_ms < 0)
    return say(err, err_size, M5_EINVAL, "ensure stream: name and 1-64 subjects are required");
  char what[160];
  snprintf(what, sizeof what, "stream %s", s->name);
  jsStreamInfo *si = NULL;
  int rc = stream_info(c, s->name, &si, err, err_size);
  if (rc == M5_ENOENT) {
    jsStreamConfig cfg;
    jsStreamConfig_Init(&cfg);
    cfg.Name = s->name;
    cfg.Subjects = (const char **)s->subjects;
    cfg.SubjectsLen = (int)s->n_subjects;
    cfg.Storage = js_FileStorage;
    cfg.Replicas = s->replicas > 0 ? s->replicas : 1;
    cfg.Duplicates = s->duplicate_window_ms * NS_PER_MS;
    set_limits(&cfg, s);
    jsErrCode jerr = 0;
    natsStatus st = js_AddStream(&si, c->js, &cfg, NULL, &jerr);
    if (st == NATS_OK) {
      jsStreamInfo_Destroy(si);
      return M5_OK;
    }
    if (jerr != JSStreamNameExistErr) /* not a concurrent creator: a real failure */
      return nats_fail(err, err_size, nats_rc(st), st, what);
    rc = stream_info(c, s->name, &si, err, err_size);
  }
  if (rc) return rc;
  rc = compare_stream(what, si->Config, s, 0, 0, err, err_size);
  if (!rc && limits_differ(si->Config, s)) { /* limits follow the configuration */
    jsStreamConfig cfg = *si->Config;
    set_limits(&cfg, s);
    jsStreamInfo *nsi = NULL;
    jsErrCode jerr = 0;
    natsStatus st = js_UpdateStream(&nsi, c->js, &cfg, NULL, &jerr);
    if (st != NATS_OK) rc = nats_fail(err, err_size, nats_rc(st), st, what);
    jsStreamInfo_Destroy(nsi);
  }
  jsStreamInfo_Destroy(si);
  return rc;
}

int m5_js_stream_msgs(m5_js_client_t *c, const char *stream, uint64_t *msgs, char *err,
                      size_t err_size) {
  if (!c || !stream || !msgs) return say(err, err_size, M5_EINVAL, "stream msgs: bad arguments");
  jsStreamInfo *si = NULL;
  int rc = stream_info(c, stream, &si, err, err_size);
  if (rc) return rc;
  *msgs = si->State.Msgs;
  jsStreamInfo_Destroy(si);
  return M5_OK;
}

int m5_js_stream_bytes(m5_js_client_t *c, const char *stream, uint64_t *bytes, char *err,
                       size_t err_size) {
  if (!c || !stream || !bytes) return say(err, err_size, M5_EINVAL, "stream bytes: bad arguments");
  jsStreamInfo *si = NULL;
  int rc = stream_info(c, stream, &si, err, err_size);
  if (rc) return rc;
  *bytes = si->State.Bytes;
  jsStreamInfo_Destroy(si);
  return M5_OK;
}

int m5_js_ensure_kv(m5_js_client_t *c, const m5_js_kv_spec_t *s, m5_js_kv_t **kv, char *err,
                    size_t err_size) {
  if (!c || !s || !s->bucket || !*s->bucket || strlen(s->bucket) > 63 || !kv || s->history < 1 ||
      s->history > 64 || s->ttl_ms < 0 || (s->ttl_ms && s->ttl_ms < 100))
    return say(err, err_size, M5_EINVAL,
               "ensure kv: bucket, history 1-64 and a ttl of 0 or >= 100 ms are required");
  *kv = NULL;
  char what[160], stream[80];
  snprintf(what, sizeof what, "kv bucket %s", s->bucket);
  snprintf(stream, sizeof stream, "KV_%s", s->bucket); /* the stream behind a bucket */
  m5_js_kv_t *k = calloc(1, sizeof *k);
  if (!k) return say(err, err_size, M5_ENOMEM, "ensure kv: out of memory");
  k->js = c->js;
  k->c = c;
  snprintf(k->bucket, sizeof k->bucket, "%s", s->bucket);
  snprintf(k->stream, sizeof k->stream, "%s", stream);
  jsStreamInfo *si = NULL;
  int rc = stream_info(c, stream, &si, err, err_size);
  if (rc == M5_ENOENT) {
    kvConfig cfg;
    kvConfig_Init(&cfg);
    cfg.Bucket = s->bucket;
    cfg.History = (uint8_t)s->history;
    cfg.TTL = s->ttl_ms * NS_PER_MS; /* ns in libnats 3.4.1 */
    cfg.StorageType = js_FileStorage;
    cfg.Replicas = s->replicas > 0 ? s->replicas : 1;
    natsStatus st = js_CreateKeyValue(&k->kv, c->js, &cfg);
    if (st == NATS_OK) {
      *kv = k;
      return M5_OK;
    }
    /* a concurrent creator with other settings makes the server refuse; compare below */
    rc = stream_info(c, stream, &si, err, err_size);
    if (rc == M5_ENOENT) rc = nats_fail(err, err_size, M5_EIO, st, what);
  }
  if (!rc) {
    m5_js_stream_spec_t want = {.name = stream, .replicas = s->replicas};
    rc = compare_stream(what, si->Config, &want, s->history, s->ttl_ms * NS_PER_MS, err, err_size);
    jsStreamInfo_Destroy(si);
  }
  if (!rc) {
    natsStatus st = js_KeyValue(&k->kv, c->js, s->bucket);
    if (st != NATS_OK) rc = nats_fail(err, err_size, M5_EIO, st, what);
  }
  if (rc) {
    free(k);
    return rc;
  }
  *kv = k;
  return M5_OK;
}

void m5_js_kv_close(m5_js_kv_t *kv) {
  if (!kv) return;
  kvStore_Destroy(kv->kv);
  free(kv);
}

int m5_js_publish_async(m5_js_client_t *c, const char *subject, const void *data, size_t len,
                        const char *msg_id, int64_t max_wait_ms, char *err, size_t err_size) {
  if (!c || !subject || !*subject || (!data && len) || len > INT32_MAX || !msg_id || !*msg_id)
    return say(err, err_size, M5_EINVAL, "publish: subject and msg_id are required");
  if (strlen(subject) > M5_JS_PUB_NAME_MAX || strlen(msg_id) > M5_JS_PUB_NAME_MAX)
    return say(err, err_size, M5_EINVAL, "publish: subject and msg_id of at most %d bytes",
               M5_JS_PUB_NAME_MAX);
  int rc = unreachable(c, err, err_size, subject);
  if (rc) return rc;
  natsMsg *m = NULL;
  natsStatus s = natsMsg_Create(&m, subject, NULL, data, (int)len);
  if (s != NATS_OK) return nats_fail(err, err_size, M5_EINVAL, s, subject);
  jsPubOptions po;
  jsPubOptions_Init(&po);
  po.MsgId = msg_id;
  po.MaxWait = max_wait_ms > 0 ? max_wait_ms : c->timeout_ms;
  s = js_PublishMsgAsync(c->js, &m, &po); /* takes m over on success (m = NULL) */
  if (s == NATS_OK) return M5_OK;
  natsMsg_Destroy(m);
  return nats_fail(err, err_size, s == NATS_TIMEOUT ? M5_EFULL : nats_rc(s), s, subject);
}

int m5_js_publish_flush(m5_js_client_t *c, int64_t timeout_ms) {
  if (!c) return M5_EINVAL;
  jsPubOptions po;
  jsPubOptions_Init(&po);
  po.MaxWait = timeout_ms > 0 ? timeout_ms : c->timeout_ms;
  natsStatus s = js_PublishAsyncComplete(c->js, &po);
  return s == NATS_OK ? M5_OK : s == NATS_TIMEOUT ? M5_ETIMEDOUT : M5_EIO;
}

/* KV writes are publishes to the bucket's subject with a per-subject expected sequence, so the
 * outcome comes with the server's error code (10071: a concurrent writer won). kvStore_Create /
 * kvStore_Update report it only as the thread's last error text, which libnats' own follow-up
 * calls may overwrite: under load a conflict was once seen as a bare "Error". */
#define KV_OP_HDR "KV-Operation" /* "DEL" / "PURGE" on a delete marker */

/* The subject of key in kv's stream, "$KV.<bucket>.<key>" (fits: kv_key_ok bounds the key). */
static void kv_subject(const m5_js_kv_t *kv, const char *key, char subj[M5_JS_PUB_NAME_MAX + 1]) {
  snprintf(subj, M5_JS_PUB_NAME_MAX + 1, "$KV.%s.%s", kv->bucket, key);
}

/* m is a KV delete marker (a delete or a purge), not a value. */
static bool kv_is_delete(natsMsg *m) {
  const char *op = NULL;
  return natsMsgHeader_Get(m, KV_OP_HDR, &op) == NATS_OK && op &&
         (!strcmp(op, "DEL") || !strcmp(op, "PURGE"));
}

/* Publishes data to key, expecting its last revision to be last_rev (0: no message at all). */
static natsStatus kv_put_expect(m5_js_kv_t *kv, const char *key, const void *data, size_t len,
                                uint64_t last_rev, uint64_t *rev, jsErrCode *jerr) {
  char subj[M5_JS_PUB_NAME_MAX + 1];
  kv_subject(kv, key, subj);
  jsPubOptions po;
  jsPubOptions_Init(&po);
  if (last_rev)
    po.ExpectLastSubjectSeq = last_rev;
  else
    po.ExpectNoMessage = true;
  jsPubAck *pa = NULL;
  *jerr = 0;
  natsStatus s = js_Publish(&pa, kv->js, subj, data, (int)len, &po, jerr);
  if (s == NATS_OK && rev) *rev = pa->Sequence;
  jsPubAck_Destroy(pa);
  return s;
}

/* The revision of key's delete marker, or 0 when its last message is a value (or none). */
static natsStatus kv_deleted_rev(m5_js_kv_t *kv, const char *key, uint64_t *del_rev) {
  char subj[M5_JS_PUB_NAME_MAX + 1];
  kv_subject(kv, key, subj);
  natsMsg *m = NULL;
  jsErrCode jerr = 0;
  *del_rev = 0;
  natsStatus s = js_GetLastMsg(&m, kv->js, kv->stream, subj, NULL, &jerr);
  if (s == NATS_NOT_FOUND || jerr == JSNoMessageFoundErr) return NATS_OK;
  if (s != NATS_OK) return s;
  if (kv_is_delete(m)) *del_rev = natsMsg_GetSequence(m);
  natsMsg_Destroy(m);
  return NATS_OK;
}

static bool kv_key_ok(const char *key) {
  return key && *key && strlen(key) <= M5_JS_PUB_NAME_MAX - 80;
}

int m5_js_kv_create(m5_js_kv_t *kv, const char *key, const void *data, size_t len, uint64_t *rev,
                    char *err, size_t err_size) {
  if (!kv || !kv_key_ok(key) || (!data && len) || len > INT32_MAX)
    return say(err, err_size, M5_EINVAL, "kv create: bad arguments");
  if (unreachable(kv->c, err, err_size, key)) return M5_EAGAIN;
  jsErrCode jerr = 0;
  natsStatus s = kv_put_expect(kv, key, data, len, 0, rev, &jerr);
  if (s == NATS_OK) return M5_OK;
  if (jerr != JSStreamWrongLastSequenceErr) return nats_fail(err, err_size, nats_rc(s), s, key);
  /* the key has messages: a value (it exists), or a delete marker (absent: write over it) */
  uint64_t del_rev = 0;
  s = kv_deleted_rev(kv, key, &del_rev);
  if (s != NATS_OK) return nats_fail(err, err_size, nats_rc(s), s, key);
  if (!del_rev) return say(err, err_size, M5_EEXIST, "kv create %s: key exists", key);
  s = kv_put_expect(kv, key, data, len, del_rev, rev, &jerr);
  if (s == NATS_OK) return M5_OK;
  if (jerr == JSStreamWrongLastSequenceErr) /* written by someone else meanwhile */
    return say(err, err_size, M5_EEXIST, "kv create %s: key exists", key);
  return nats_fail(err, err_size, nats_rc(s), s, key);
}

/* Read through the stream's leader (a "get last message for subject" request), not
 * kvStore_Get: with AllowDirect (every bucket has it) libnats reads from any replica, and a
 * follower that has not applied the last write yet answers "no such key" right after a
 * successful create (seen on 3 nodes under load). The registry needs to read its own writes. */
int m5_js_kv_get(m5_js_kv_t *kv, const char *key, uint8_t **val, size_t *val_len, uint64_t *rev,
                 char *err, size_t err_size) {
  if (!kv || !kv_key_ok(key) || !val || !val_len)
    return say(err, err_size, M5_EINVAL, "kv get: bad arguments");
  if (unreachable(kv->c, err, err_size, key)) return M5_EAGAIN;
  *val = NULL;
  *val_len = 0;
  char subj[M5_JS_PUB_NAME_MAX + 1];
  kv_subject(kv, key, subj);
  natsMsg *m = NULL;
  jsErrCode jerr = 0;
  natsStatus s = js_GetLastMsg(&m, kv->js, kv->stream, subj, NULL, &jerr);
  if (s == NATS_NOT_FOUND || jerr == JSNoMessageFoundErr)
    return say(err, err_size, M5_ENOENT, "kv get %s: no such key", key);
  if (s != NATS_OK) return nats_fail(err, err_size, nats_rc(s), s, key);
  if (kv_is_delete(m)) {
    natsMsg_Destroy(m);
    return say(err, err_size, M5_ENOENT, "kv get %s: no such key", key);
  }
  int n = natsMsg_GetDataLength(m);
  size_t len = n > 0 ? (size_t)n : 0;
  uint8_t *v = malloc(len + 1);
  if (!v) {
    natsMsg_Destroy(m);
    return say(err, err_size, M5_ENOMEM, "kv get: out of memory");
  }
  if (len) memcpy(v, natsMsg_GetData(m), len);
  v[len] = 0;
  if (rev) *rev = natsMsg_GetSequence(m);
  natsMsg_Destroy(m);
  *val = v;
  *val_len = len;
  return M5_OK;
}

int m5_js_kv_update(m5_js_kv_t *kv, const char *key, const void *data, size_t len,
                    uint64_t last_rev, uint64_t *rev, char *err, size_t err_size) {
  if (!kv || !kv_key_ok(key) || (!data && len) || len > INT32_MAX || !last_rev)
    return say(err, err_size, M5_EINVAL, "kv update: bad arguments");
  if (unreachable(kv->c, err, err_size, key)) return M5_ETIMEDOUT;
  jsErrCode jerr = 0;
  natsStatus s = kv_put_expect(kv, key, data, len, last_rev, rev, &jerr);
  if (s == NATS_OK) return M5_OK;
  if (jerr == JSStreamWrongLastSequenceErr)
    return say(err, err_size, M5_EAGAIN, "kv update %s: revision %llu is stale", key,
               (unsigned long long)last_rev);
  return nats_fail(err, err_size, cas_rc(s), s, key);
}

int m5_js_kv_delete(m5_js_kv_t *kv, const char *key, uint64_t last_rev, char *err,
                    size_t err_size) {
  if (!kv || !kv_key_ok(key) || !last_rev)
    return say(err, err_size, M5_EINVAL, "kv delete: bad arguments");
  if (unreachable(kv->c, err, err_size, key)) return M5_ETIMEDOUT;
  char subj[M5_JS_PUB_NAME_MAX + 1];
  kv_subject(kv, key, subj);
  natsMsg *m = NULL;
  natsStatus s = natsMsg_Create(&m, subj, NULL, NULL, 0);
  if (s == NATS_OK) s = natsMsgHeader_Set(m, KV_OP_HDR, "DEL");
  jsPubOptions po;
  jsPubOptions_Init(&po);
  po.ExpectLastSubjectSeq = last_rev;
  jsPubAck *pa = NULL;
  jsErrCode jerr = 0;
  if (s == NATS_OK) s = js_PublishMsg(&pa, kv->js, m, &po, &jerr);
  natsMsg_Destroy(m);
  jsPubAck_Destroy(pa);
  if (s == NATS_OK) return M5_OK;
  if (jerr == JSStreamWrongLastSequenceErr)
    return say(err, err_size, M5_EAGAIN, "kv delete %s: revision %llu is stale", key,
               (unsigned long long)last_rev);
  return nats_fail(err, err_size, cas_rc(s), s, key);
}

struct m5_js_kv_watch {
  kvWatcher *w;
  kvEntry *cur; /* the entry handed out last (its key and value), freed by the next call */
};

int m5_js_kv_watch(m5_js_kv_t *kv, m5_js_kv_watch_t **w, char *err, size_t err_size) {
  if (!kv || !w) return say(err, err_size, M5_EINVAL, "kv watch: bad arguments");
  *w = NULL;
  m5_js_kv_watch_t *x = calloc(1, sizeof *x);
  if (!x) return say(err, err_size, M5_ENOMEM, "kv watch: out of memory");
  natsStatus s = kvStore_WatchAll(&x->w, kv->kv, NULL);
  if (s != NATS_OK) {
    free(x);
    return nats_fail(err, err_size, nats_rc(s), s, kv->bucket);
  }
  *w = x;
  return M5_OK;
}

int m5_js_kv_watch_next(m5_js_kv_watch_t *w, int64_t timeout_ms, m5_js_kv_change_t *ch, char *err,
                        size_t err_size) {
  if (!w || !ch || timeout_ms <= 0) return say(err, err_size, M5_EINVAL, "kv watch: bad arguments");
  memset(ch, 0, sizeof *ch);
  if (w->cur) {
    kvEntry_Destroy(w->cur);
    w->cur = NULL;
  }
  kvEntry *e = NULL;
  natsStatus s = kvWatcher_Next(&e, w->w, timeout_ms);
  if (s == NATS_TIMEOUT) return M5_ETIMEDOUT;
  if (s == NATS_ILLEGAL_STATE) return say(err, err_size, M5_ECLOSED, "kv watch: stopped");
  if (s != NATS_OK) return nats_fail(err, err_size, nats_rc(s), s, "kv watch");
  if (!e) return M5_OK; /* the initial values are done */
  w->cur = e;
  ch->key = kvEntry_Key(e);
  ch->rev = kvEntry_Revision(e);
  kvOperation op = kvEntry_Operation(e);
  ch->deleted = op == kvOp_Delete || op == kvOp_Purge;
  int n = kvEntry_ValueLen(e);
  ch->len = ch->deleted || n < 0 ? 0 : (size_t)n;
  ch->val = ch->len ? (const uint8_t *)kvEntry_Value(e) : (const uint8_t *)"";
  return M5_OK;
}

void m5_js_kv_watch_stop(m5_js_kv_watch_t *w) {
  if (w) kvWatcher_Stop(w->w);
}

void m5_js_kv_watch_free(m5_js_kv_watch_t *w) {
  if (!w) return;
  if (w->cur) kvEntry_Destroy(w->cur);
  kvWatcher_Destroy(w->w);
  free(w);
}

/* ---- messages by sequence and subject ---- */

void m5_js_msg_free(m5_js_msg_t *m) {
  if (!m) return;
  free(m->subject);
  free(m->data);
  memset(m, 0, sizeof *m);
}

/* Copies a libnats message into out and destroys it. */
static int take_msg(natsMsg *m, m5_js_msg_t *out, char *err, size_t err_size) {
  memset(out, 0, sizeof *out);
  const char *subj = natsMsg_GetSubject(m);
  int n = natsMsg_GetDataLength(m);
  size_t len = n > 0 ? (size_t)n : 0;
  out->subject = strdup(subj ? subj : "");
  out->data = malloc(len + 1);
  if (!out->subject || !out->data) {
    natsMsg_Destroy(m);
    m5_js_msg_free(out);
    return say(err, err_size, M5_ENOMEM, "get msg: out of memory");
  }
  if (len) memcpy(out->data, natsMsg_GetData(m), len);
  out->data[len] = 0;
  out->len = len;
  out->seq = natsMsg_GetSequence(m);
  out->time_ns = natsMsg_GetTime(m);
  natsMsg_Destroy(m);
  return M5_OK;
}

int m5_js_get_msg(m5_js_client_t *c, const char *stream, uint64_t seq, m5_js_msg_t *out, char *err,
                  size_t err_size) {
  if (!c || !stream || !seq || !out) return say(err, err_size, M5_EINVAL, "get msg: bad arguments");
  if (unreachable(c, err, err_size, stream)) return M5_EAGAIN;
  natsMsg *m = NULL;
  jsErrCode jerr = 0;
  natsStatus s = js_GetMsg(&m, c->js, stream, seq, NULL, &jerr);
  if (s == NATS_NOT_FOUND || jerr == JSNoMessageFoundErr || jerr == JSSequenceNotFoundErr)
    return say(err, err_size, M5_ENOENT, "%s: no message %llu", stream, (unsigned long long)seq);
  if (s != NATS_OK) return nats_fail(err, err_size, nats_rc(s), s, stream);
  return take_msg(m, out, err, err_size);
}

int m5_js_next_by_subject(m5_js_client_t *c, const char *stream, const char *subject, uint64_t seq,
                          m5_js_msg_t *out, char *err, size_t err_size) {
  if (!c || !stream || !subject || !out)
    return say(err, err_size, M5_EINVAL, "next by subject: bad arguments");
  jsDirectGetMsgOptions dg;
  jsDirectGetMsgOptions_Init(&dg);
  dg.Sequence = seq;
  dg.NextBySubject = subject;
  natsMsg *m = NULL;
  natsStatus s = js_DirectGetMsg(&m, c->js, stream, NULL, &dg);
  if (s == NATS_NOT_FOUND)
    return say(err, err_size, M5_ENOENT, "%s: no more on %s", stream, subject);
  if (s != NATS_OK) return nats_fail(err, err_size, nats_rc(s), s, stream);
  return take_msg(m, out, err, err_size);
}

int m5_js_delete_msg(m5_js_client_t *c, const char *stream, uint64_t seq, char *err,
                     size_t err_size) {
  if (!c || !stream || !seq) return say(err, err_size, M5_EINVAL, "delete msg: bad arguments");
  if (unreachable(c, err, err_size, stream)) return M5_EAGAIN;
  jsErrCode jerr = 0;
  natsStatus s = js_DeleteMsg(c->js, stream, seq, NULL, &jerr);
  if (s == NATS_OK) return M5_OK;
  /* a message already deleted comes back as "message delete failed" (10057) with the text
   * "no message found" (nats-server 2.9.10, when it is not the stream's last one) */
  const char *t = nats_GetLastError(NULL);
  if (s == NATS_NOT_FOUND || jerr == JSNoMessageFoundErr || jerr == JSSequenceNotFoundErr ||
      (jerr == JSStreamMsgDeleteFailed && t && strstr(t, "no message found")))
    return say(err, err_size, M5_ENOENT, "%s: no message %llu", stream, (unsigned long long)seq);
  return nats_fail(err, err_size, nats_rc(s), s, stream);
}

int m5_js_subjects(m5_js_client_t *c, const char *stream, const char *filter,
                   void (*fn)(void *arg, const char *subject, uint64_t msgs), void *arg, char *err,
                   size_t err_size) {
  if (!c || !stream || !filter || !fn)
    return say(err, err_size, M5_EINVAL, "subjects: bad arguments");
  jsOptions o;
  jsOptions_Init(&o);
  o.Stream.Info.SubjectsFilter = filter;
  jsStreamInfo *si = NULL;
  jsErrCode jerr = 0;
  natsStatus s = js_GetStreamInfo(&si, c->js, stream, &o, &jerr);
  if (s != NATS_OK) return nats_fail(err, err_size, nats_rc(s), s, stream);
  if (si->State.Subjects)
    for (int i = 0; i < si->State.Subjects->Count; i++)
      fn(arg, si->State.Subjects->List[i].Subject, si->State.Subjects->List[i].Msgs);
  jsStreamInfo_Destroy(si);
  return M5_OK;
}

/* ---- ordered consumer ---- */

struct m5_js_sub {
  natsSubscription *sub;
  m5_js_msg_fn fn;
  void *arg;
  uint64_t handed; /* consumer sequence of the last message fn returned from (atomic) */
  /* Close against a callback running on libnats' delivery thread: fn runs under mu and only
   * while !closed; complete is set by libnats' on-complete callback, after which the thread
   * calls nothing of ours again, so only then may s be freed. */
  pthread_mutex_t mu;
  pthread_cond_t cv;
  bool closed, complete;
};

static void on_sub_complete(void *closure) {
  m5_js_sub_t *s = closure;
  pthread_mutex_lock(&s->mu);
  s->complete = true;
  pthread_cond_broadcast(&s->cv);
  pthread_mutex_unlock(&s->mu);
}

static void on_sub_msg(natsConnection *nc, natsSubscription *sub, natsMsg *msg, void *closure) {
  (void)nc;
  (void)sub;
  m5_js_sub_t *s = closure;
  jsMsgMetaData *meta = NULL;
  if (natsMsg_GetMetaData(&meta, msg) == NATS_OK && meta) {
    int n = natsMsg_GetDataLength(msg);
    pthread_mutex_lock(&s->mu);
    if (!s->closed)
      s->fn(s->arg, meta->Sequence.Stream, natsMsg_GetSubject(msg), natsMsg_GetData(msg),
            n > 0 ? (size_t)n : 0, meta->NumPending);
    pthread_mutex_unlock(&s->mu);
    __atomic_store_n(&s->handed, meta->Sequence.Consumer, __ATOMIC_RELEASE);
    jsMsgMetaData_Destroy(meta);
  }
  natsMsg_Destroy(msg);
}

int m5_js_ordered_subscribe(m5_js_client_t *c, const char *stream, const char *filter,
                            m5_js_msg_fn fn, void *arg, m5_js_sub_t **out, char *err,
                            size_t err_size) {
  if (!c || !stream || !filter || !fn || !out)
    return say(err, err_size, M5_EINVAL, "ordered subscribe: bad arguments");
  *out = NULL;
  m5_js_sub_t *s = calloc(1, sizeof *s);
  if (!s) return say(err, err_size, M5_ENOMEM, "ordered subscribe: out of memory");
  s->fn = fn;
  s->arg = arg;
  pthread_mutex_init(&s->mu, NULL);
  pthread_cond_init(&s->cv, NULL);
  jsSubOptions so;
  jsSubOptions_Init(&so);
  so.Stream = stream;
  so.Ordered = true;
  so.Config.DeliverPolicy = js_DeliverAll;
  jsErrCode jerr = 0;
  natsStatus st = js_Subscribe(&s->sub, c->js, filter, on_sub_msg, s, NULL, &so, &jerr);
  if (st == NATS_OK) st = natsSubscription_SetOnCompleteCB(s->sub, on_sub_complete, s);
  if (st != NATS_OK) {
    int rc = nats_fail(err, err_size, nats_rc(st), st, filter);
    if (s->sub) m5_js_sub_close(s);
    else {
      pthread_cond_destroy(&s->cv);
      pthread_mutex_destroy(&s->mu);
      free(s);
    }
    return rc;
  }
  /* the consumer's backlog is bounded by the stream's limits, not by libnats' defaults */
  natsSubscription_SetPendingLimits(s->sub, -1, -1);
  *out = s;
  return M5_OK;
}

int m5_js_sub_pending(m5_js_sub_t *s, uint64_t *pending, bool *caught_up) {
  if (!s) return M5_EINVAL;
  jsConsumerInfo *ci = NULL;
  jsErrCode jerr = 0;
  natsStatus st = natsSubscription_GetConsumerInfo(&ci, s->sub, NULL, &jerr);
  if (st != NATS_OK) return nats_rc(st);
  if (pending) *pending = ci->NumPending;
  /* everything sent was handed over (the delivered sequence is the consumer's, not the
   * stream's, which also counts messages the filter skipped) */
  if (caught_up)
    *caught_up = ci->NumPending == 0 &&
                 __atomic_load_n(&s->handed, __ATOMIC_ACQUIRE) >= ci->Delivered.Consumer;
  jsConsumerInfo_Destroy(ci);
  return M5_OK;
}

void m5_js_sub_close(m5_js_sub_t *s) {
  if (!s) return;
  pthread_mutex_lock(&s->mu); /* waits for a callback in progress; none calls fn after this */
  s->closed = true;
  pthread_mutex_unlock(&s->mu);
  /* Unsubscribe and Drain end with a request deleting the consumer, which waits for the
   * client's timeout when the consumer lived on a NATS node that has died (seen: a node's stop
   * took 2 x store.js.timeout_ms after a kill -9 of one NATS node). The consumer is an
   * ephemeral one the server removes by itself once nobody listens, so a subscription that has
   * had a message is closed by an auto-unsubscribe at the count it reached (closed at once,
   * no request); one that never had any is drained as before. */
  int64_t delivered = 0;
  if (natsSubscription_GetDelivered(s->sub, &delivered) == NATS_OK && delivered > 0 &&
      delivered <= INT32_MAX && natsSubscription_AutoUnsubscribe(s->sub, (int)delivered) == NATS_OK)
    ;
  else if (natsSubscription_Drain(s->sub) == NATS_OK)
    natsSubscription_WaitForDrainCompletion(s->sub, 5000);
  else
    natsSubscription_Unsubscribe(s->sub); /* disconnected: drain is refused */
  /* Free only once libnats' delivery thread is done with s (its on-complete callback ran):
   * freeing earlier let a late message reach freed memory at shutdown while NATS was
   * reconnecting. If it never comes (libnats stuck), s is left allocated rather than freed
   * under a running thread. */
  struct timespec dl;
  clock_gettime(CLOCK_REALTIME, &dl);
  dl.tv_sec += 10;
  pthread_mutex_lock(&s->mu);
  while (!s->complete && pthread_cond_timedwait(&s->cv, &s->mu, &dl) == 0) {
  }
  bool done = s->complete;
  pthread_mutex_unlock(&s->mu);
  natsSubscription_Destroy(s->sub);
  if (!done) return;
  pthread_cond_destroy(&s->cv);
  pthread_mutex_destroy(&s->mu);
  free(s);
}

void m5_js_library_close(void) {
  /* Wait for libnats' threads: a publish's timeout reaches on_ack through a message that the
   * delivery thread frees only after the callback returned, so a process that exits right
   * after hearing of it (nats_Close does not wait) would leave that message behind. */
  nats_CloseAndWait(10000);
}

int m5_js_kv_publish_async(m5_js_kv_t *kv, const char *key, const void *data, size_t len,
                           uint64_t last_rev, const char *msg_id, int64_t max_wait_ms,
                           char *err, size_t err_size) {
  if (!kv || !kv_key_ok(key) || (!data && len) || len > INT32_MAX || !msg_id || !*msg_id ||
      strlen(msg_id) > M5_JS_PUB_NAME_MAX || max_wait_ms <= 0)
    return say(err, err_size, M5_EINVAL, "kv publish: bad arguments");
  if (unreachable(kv->c, err, err_size, key)) return M5_EAGAIN;
  char subj[M5_JS_PUB_NAME_MAX + 1];
  kv_subject(kv, key, subj);
  natsMsg *m = NULL;
  natsStatus s = natsMsg_Create(&m, subj, NULL, data, (int)len);
  if (s != NATS_OK) return nats_fail(err, err_size, M5_EINVAL, s, key);
  s = natsMsgHeader_Set(m, PUB_ID_HDR, msg_id);
  if (s != NATS_OK) {
    natsMsg_Destroy(m);
    return nats_fail(err, err_size, M5_ENOMEM, s, key);
  }
  jsPubOptions po;
  jsPubOptions_Init(&po);
  po.MaxWait = max_wait_ms;
  if (last_rev)
    po.ExpectLastSubjectSeq = last_rev;
  else
    po.ExpectNoMessage = true;
  s = js_PublishMsgAsync(kv->js, &m, &po); /* takes m over on success */
  if (s == NATS_OK) return M5_OK;
  natsMsg_Destroy(m);
  return nats_fail(err, err_size, s == NATS_TIMEOUT ? M5_EFULL : M5_EIO, s, key);
}

/* The outcome of one answer to a "$JS.API.STREAM.MSG.DELETE" request (JSON): as
 * m5_js_delete_msg's. */
static int delete_outcome(natsMsg *m) {
  if (natsMsg_IsNoResponders(m)) return M5_EAGAIN;
  int n = natsMsg_GetDataLength(m);
  char buf[512];
  snprintf(buf, sizeof buf, "%.*s", n > 0 ? n : 0, n > 0 ? natsMsg_GetData(m) : "");
  if (strstr(buf, "\"success\":true")) return M5_OK;
  const char *ec = strstr(buf, "\"err_code\":");
  long code = ec ? strtol(ec + 11, NULL, 10) : 0;
  if (code == JSNoMessageFoundErr || code == JSSequenceNotFoundErr ||
      (code == JSStreamMsgDeleteFailed && strstr(buf, "no message found")))
    return M5_ENOENT;
  return M5_EIO;
}

int m5_js_delete_msgs(m5_js_client_t *c, const char *stream, const uint64_t *seqs, size_t n,
                      int *rcs, char *err, size_t err_size) {
  if (!c || !stream || !*stream || strlen(stream) > 200 || (n && (!seqs || !rcs)))
    return say(err, err_size, M5_EINVAL, "delete msgs: bad arguments");
  if (!n) return M5_OK;
  if (!m5_js_client_connected(c)) { /* fail at once, as a request does (FailRequestsOnDisconnect) */
    for (size_t i = 0; i < n; i++)
      rcs[i] = M5_EAGAIN;
    return say(err, err_size, M5_EAGAIN, "delete msgs: not connected to the NATS servers");
  }
  natsInbox *inbox = NULL;
  natsSubscription *sub = NULL;
  char wild[128], subj[256];
  natsStatus s = natsInbox_Create(&inbox);
  if (s == NATS_OK) {
    snprintf(wild, sizeof wild, "%s.*", (const char *)inbox);
    s = natsConnection_SubscribeSync(&sub, c->nc, wild);
  }
  if (s == NATS_OK) s = natsSubscription_SetPendingLimits(sub, -1, -1);
  int rc = M5_OK;
  if (s != NATS_OK) rc = nats_fail(err, err_size, nats_rc(s), s, "delete msgs");
  snprintf(subj, sizeof subj, "$JS.API.STREAM.MSG.DELETE.%s", stream);
  size_t sent = 0;
  for (size_t i = 0; i < n; i++) {
    rcs[i] = rc ? rc : M5_ETIMEDOUT; /* until its answer comes */
    if (rc) continue;
    char reply[160], body[64];
    snprintf(reply, sizeof reply, "%s.%zu", (const char *)inbox, i);
    int bl = snprintf(body, sizeof body, "{\"seq\":%llu,\"no_erase\":true}",
                      (unsigned long long)seqs[i]);
    s = natsConnection_PublishRequest(c->nc, subj, reply, body, bl);
    if (s != NATS_OK) {
      rc = nats_fail(err, err_size, nats_rc(s), s, "delete msgs");
      rcs[i] = rc;
      continue;
    }
    sent++;
  }
  int64_t deadline = nats_Now() + c->timeout_ms;
  for (size_t got = 0; got < sent;) {
    int64_t left = deadline - nats_Now();
    natsMsg *m = NULL;
    if (left <= 0 || natsSubscription_NextMsg(&m, sub, left) != NATS_OK) break;
    const char *dot = strrchr(natsMsg_GetSubject(m), '.');
    char *end = NULL;
    unsigned long long i = dot ? strtoull(dot + 1, &end, 10) : n;
    if (end && !*end && i < n && rcs[i] == M5_ETIMEDOUT) {
      rcs[i] = delete_outcome(m);
      got++;
    }
    natsMsg_Destroy(m);
  }
  if (sub) {
    natsSubscription_Unsubscribe(sub);
    natsSubscription_Destroy(sub);
  }
  natsInbox_Destroy(inbox);
  return rc;
}

void m5_js_client_disconnect(m5_js_client_t *c) {
  if (c && c->nc) natsConnection_Close(c->nc);
}

int m5_js_kv_put(m5_js_kv_t *kv, const char *key, const void *data, size_t len, uint64_t *rev,
                 char *err, size_t err_size) {
  if (!kv || !kv_key_ok(key) || (!data && len) || len > INT32_MAX)
    return say(err, err_size, M5_EINVAL, "kv put: bad arguments");
  if (unreachable(kv->c, err, err_size, key)) return M5_EAGAIN;
  char subj[M5_JS_PUB_NAME_MAX + 1];
  kv_subject(kv, key, subj);
  jsPubAck *pa = NULL;
  jsErrCode jerr = 0;
  natsStatus s = js_Publish(&pa, kv->js, subj, data, (int)len, NULL, &jerr);
  if (s == NATS_OK && rev) *rev = pa->Sequence;
  jsPubAck_Destroy(pa);
  if (s == NATS_OK) return M5_OK;
  return nats_fail(err, err_size, nats_rc(s), s, key);
}

int m5_js_kv_purge(m5_js_kv_t *kv, const char *filter, uint64_t before_rev, char *err,
                   size_t err_size) {
  if (!kv || !kv_key_ok(filter)) return say(err, err_size, M5_EINVAL, "kv purge: bad arguments");
  if (unreachable(kv->c, err, err_size, filter)) return M5_EAGAIN;
  char subj[M5_JS_PUB_NAME_MAX + 1];
  kv_subject(kv, filter, subj);
  jsOptions o;
  jsOptions_Init(&o);
  o.Stream.Purge.Subject = subj;
  o.Stream.Purge.Sequence = before_rev;
  jsErrCode jerr = 0;
  natsStatus s = js_PurgeStream(kv->js, kv->stream, &o, &jerr);
  if (s == NATS_OK) return M5_OK;
  return nats_fail(err, err_size, nats_rc(s), s, filter);
}
