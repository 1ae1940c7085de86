/* Exchanges (server.h): one request and its single response. The exchange belongs to the
 * connection while the request arrives, to the handler until it calls m5_http_respond*(),
 * and is kept as an orphan when the connection closes first, so a late answer is dropped
 * (and the exchange freed) rather than written to a freed connection. Handler responses are
 * checked here (status range, header names, no CR/LF injection, RFC 9110 §5 and RFC 9113
 * §8.2) before h2.c or h1.c frame them. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "core/err.h"
#include "core/log.h"
#include "http/http_int.h"

m5_http_exchange_t *m5_http_ex_new(m5_http_conn_t *c, int version) {
  m5_http_exchange_t *ex = calloc(1, sizeof *ex);
  if (!ex) return NULL;
  ex->loop = c->srv->loop;
  ex->conn = c;
  ex->state = M5_EX_RECEIVING;
  ex->req.version = version;
  ex->req.ssl = c->ssl;
  ex->keep_alive = 1;
  m5_buf_init(&ex->body, c->srv->o.max_body + 1); /* + 1: the NUL handlers get */
  m5_buf_init(&ex->hname, M5_HTTP_MAX_HEADER_BYTES);
  m5_buf_init(&ex->hvalue, M5_HTTP_MAX_HEADER_BYTES);
  m5_buf_init(&ex->url, M5_HTTP_MAX_HEADER_BYTES);
  ex->next = c->exchanges;
  if (c->exchanges) c->exchanges->prev = ex;
  c->exchanges = ex;
  return ex;
}

static void ex_unlink(m5_http_exchange_t *ex) {
  m5_http_conn_t *c = ex->conn;
  if (!c) return;
  if (ex->prev)
    ex->prev->next = ex->next;
  else
    c->exchanges = ex->next;
  if (ex->next) ex->next->prev = ex->prev;
  ex->prev = ex->next = NULL;
  if (c->h1_ex == ex) c->h1_ex = NULL;
  ex->conn = NULL;
  ex->req.ssl = NULL;
}

void m5_http_ex_free(m5_http_exchange_t *ex) {
  ex_unlink(ex);
  free(ex->method);
  free(ex->target);
  free(ex->content_type);
  if (ex->authorization) {
    /* A bearer token is a credential. */
    OPENSSL_cleanse(ex->authorization, strlen(ex->authorization));
    free(ex->authorization);
  }
  /* Bodies carry keys (kAkma in, kaf out): wipe them, not just free them. */
  m5_buf_wipe_free(&ex->body);
  m5_buf_free(&ex->hname);
  m5_buf_wipe_free(&ex->hvalue); /* may hold an Authorization value */
  m5_buf_free(&ex->url);
  if (ex->resp) OPENSSL_clear_free(ex->resp, ex->resp_len);
  free(ex);
}

void m5_http_ex_release(m5_http_exchange_t *ex) {
  if (ex->state == M5_EX_DISPATCHED)
    ex_unlink(ex);
  else
    m5_http_ex_free(ex);
}

size_t m5_http_conn_dispatched(const m5_http_conn_t *c) {
  size_t n = 0;
  for (const m5_http_exchange_t *ex = c->exchanges; ex; ex = ex->next)
    n += ex->state == M5_EX_DISPATCHED;
  return n;
}

void m5_http_ex_dispatch(m5_http_exchange_t *ex) {
  m5_http_server_t *srv = ex->conn->srv;
  m5_http_request_t *r = &ex->req;
  r->method = ex->method;
  r->path = ex->target;
  r->query = NULL;
  char *q = strchr(ex->target, '?');
  if (q) {
    *q = '\0';
    r->query = q + 1;
  }
  r->content_type = ex->content_type;
  r->authorization = ex->authorization;
  if (ex->body.len > 0) {
    if (m5_buf_append(&ex->body, "", 1) != M5_OK) {
      m5_http_ex_problem(ex, 500, "Internal Server Error"); /* out of memory */
      return;
    }
    r->body = ex->body.data;
    r->body_len = ex->body.len - 1;
  } else {
    r->body = (const uint8_t *)"";
    r->body_len = 0;
  }
  m5_buf_free(&ex->hname);
  m5_buf_wipe_free(&ex->hvalue);
  m5_buf_free(&ex->url);
  ex->state = M5_EX_DISPATCHED;
  srv->o.handler(ex, r, srv->o.arg);
}

const char *m5_http_reason(int status) {
  switch (status) {
  case 100:
    return "Continue";
  case 200:
    return "OK";
  case 201:
    return "Created";
  case 202:
    return "Accepted";
  case 204:
    return "No Content";
  case 301:
    return "Moved Permanently";
  case 302:
    return "Found";
  case 303:
    return "See Other";
  case 304:
    return "Not Modified";
  case 307:
    return "Temporary Redirect";
  case 308:
    return "Permanent Redirect";
  case 400:
    return "Bad Request";
  case 401:
    return "Unauthorized";
  case 403:
    return "Forbidden";
  case 404:
    return "Not Found";
  case 405:
    return "Method Not Allowed";
  case 406:
    return "Not Acceptable";
  case 408:
    return "Request Timeout";
  case 409:
    return "Conflict";
  case 410:
    return "Gone";
  case 411:
    return "Length Required";
  case 412:
    return "Precondition Failed";
  case 413:
    return "Payload Too Large";
  case 414:
    return "URI Too Long";
  case 415:
    return "Unsupported Media Type";
  case 422:
    return "Unprocessable Content";
  case 429:
    return "Too Many Requests";
  case 431:
    return "Request Header Fields Too Large";
  case 500:
    return "Internal Server Error";
  case 501:
    return "Not Implemented";
  case 502:
    return "Bad Gateway";
  case 503:
    return "Service Unavailable";
  case 504:
    return "Gateway Timeout";
  case 505:
    return "HTTP Version Not Supported";
  default:
    return "Status";
  }
}

/* RFC 9110 §6.4.1: 204 and 304 carry no content (and 204 no Content-Length either). */
int m5_http_status_has_body(int status) {
  return status != 204 && status != 304;
}

static int answer(m5_http_exchange_t *ex, int status, const char *content_type,
                  const m5_http_header_t *hdrs, size_t n, const void *body, size_t len) {
  m5_http_conn_t *c = ex->conn;
  int rc = ex->req.version == 2 ? m5_http_h2_respond(ex, status, content_type, hdrs, n, body, len)
                                : m5_http_h1_respond(ex, status, content_type, hdrs, n, body, len);
  m5_http_conn_kick(c);
  return rc;
}

void m5_http_ex_problem(m5_http_exchange_t *ex, int status, const char *title) {
  char body[160];
  int n = snprintf(body, sizeof body, "{\"status\":%d,\"title\":\"%s\"}", status, title);
  answer(ex, status, "application/problem+json", NULL, 0, body, (size_t)n);
}

/* Response heads a handler builds must not smuggle a second header or message (CR/LF) or
 * break HPACK's rules (RFC 9113 §8.2: lowercase names, no NUL/CR/LF). */
static int header_ok(const m5_http_header_t *h) {
  /* Framing is ours: a handler's content-length or connection header would contradict it. */
  static const char *const framing[] = {"content-length",  "connection", "transfer-encoding",
                                        "keep-alive",      "upgrade",    "te",
                                        "proxy-connection"};
  if (!h->name || !h->value || !*h->name) return 0;
  for (size_t i = 0; i < sizeof framing / sizeof framing[0]; i++)
    if (strcmp(h->name, framing[i]) == 0) return 0;
  for (const char *p = h->name; *p; p++)
    if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || strchr("!#$%&'*+-.^_`|~", *p)))
      return 0;
  return strpbrk(h->value, "\r\n") == NULL;
}

static int respond(m5_http_exchange_t *ex, int status, const char *content_type,
                   const m5_http_header_t *hdrs, size_t n, const void *body, size_t len) {
  if (!ex || ex->state != M5_EX_DISPATCHED) return M5_EINVAL;
  if (!ex->conn || ex->stream_closed) {
    /* The client went away (or reset the stream) while the handler worked: nothing to send. */
    m5_http_ex_free(ex);
    return M5_ECLOSED;
  }
  int bad = status < 200 || status > 599 || (len && !body) ||
            (content_type && strpbrk(content_type, "\r\n"));
  for (size_t i = 0; i < n && !bad; i++)
    bad = !header_ok(&hdrs[i]);
  if (bad) {
    M5_LOGE("http", "handler for %s %s built an invalid response (status %d); sent 500",
            ex->req.method, ex->req.path, status);
    m5_http_ex_problem(ex, 500, "Internal Server Error");
    return M5_EINVAL;
  }
  return answer(ex, status, content_type, hdrs, n, body, len);
}

int m5_http_respond(m5_http_exchange_t *ex, int status, const char *content_type, const void *body,
                    size_t len) {
  return respond(ex, status, content_type, NULL, 0, body, len);
}

int m5_http_respond_headers(m5_http_exchange_t *ex, int status, const m5_http_header_t *hdrs,
                            size_t n_hdrs, const void *body, size_t len) {
  return respond(ex, status, NULL, hdrs, n_hdrs, body, len);
}

m5_loop_t *m5_http_exchange_loop(const m5_http_exchange_t *ex) {
  return ex->loop;
}
