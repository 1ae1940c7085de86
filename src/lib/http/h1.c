/* HTTP/1.1 (RFC 9112) for the management listener, parsed by http-parser: persistent
 * connections, Content-Length and chunked request bodies, one request at a time per
 * connection (pipelined requests wait in the input buffer and are answered in order),
 * responses framed with Content-Length. The parser is paused at the end of each message so
 * the handler never runs inside it. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/err.h"
#include "core/log.h"
#include "http/http_int.h"

static m5_http_exchange_t *cur(http_parser *p) {
  m5_http_conn_t *c = p->data;
  return c->h1_ex;
}

/* Counts bytes of the request head; over the limit the parse stops and the answer is 431. */
static int head_bytes(m5_http_exchange_t *ex, size_t n) {
  ex->header_bytes += n;
  if (ex->header_bytes > M5_HTTP_MAX_HEADER_BYTES) {
    ex->hdr_overflow = 1;
    return -1;
  }
  return 0;
}

static int on_message_begin(http_parser *p) {
  m5_http_conn_t *c = p->data;
  m5_http_exchange_t *ex = m5_http_ex_new(c, 1);
  if (!ex) return -1;
  c->h1_ex = ex;
  return 0;
}

static int on_url(http_parser *p, const char *at, size_t len) {
  m5_http_exchange_t *ex = cur(p);
  if (!ex || head_bytes(ex, len)) return -1;
  return m5_buf_append(&ex->url, at, len) ? -1 : 0;
}

static char *dup_buf(const m5_buf_t *b) {
  char *s = malloc(b->len + 1);
  if (!s) return NULL;
  if (b->len) memcpy(s, b->data, b->len);
  s[b->len] = '\0';
  return s;
}

/* One complete field: keep those the handler or the framing needs. */
static int commit_header(m5_http_exchange_t *ex) {
  if (!ex->last_was_value) return 0;
  ex->last_was_value = 0;
  char **dst = NULL;
  const char *name = (const char *)ex->hname.data;
  size_t nlen = ex->hname.len;
  if (nlen == 12 && strncasecmp(name, "content-type", 12) == 0)
    dst = &ex->content_type;
  else if (nlen == 13 && strncasecmp(name, "authorization", 13) == 0)
    dst = &ex->authorization;
  else if (nlen == 6 && strncasecmp(name, "expect", 6) == 0)
    ex->expect_continue =
        ex->hvalue.len == 12 && strncasecmp((const char *)ex->hvalue.data, "100-continue", 12) == 0;
  int rc = 0;
  if (dst && !*dst) { /* the first occurrence counts */
    *dst = dup_buf(&ex->hvalue);
    if (!*dst) rc = -1;
  }
  m5_buf_reset(&ex->hname);
  m5_buf_reset(&ex->hvalue);
  return rc;
}

static int on_header_field(http_parser *p, const char *at, size_t len) {
  m5_http_exchange_t *ex = cur(p);
  if (!ex || head_bytes(ex, len) || commit_header(ex)) return -1;
  return m5_buf_append(&ex->hname, at, len) ? -1 : 0;
}

static int on_header_value(http_parser *p, const char *at, size_t len) {
  m5_http_exchange_t *ex = cur(p);
  if (!ex || head_bytes(ex, len)) return -1;
  ex->last_was_value = 1;
  return m5_buf_append(&ex->hvalue, at, len) ? -1 : 0;
}

/* origin-form is what clients send; absolute-form (RFC 9112 §3.2.2) is reduced to it. */
static int set_target(m5_http_exchange_t *ex, int is_connect) {
  const char *u = (const char *)ex->url.data;
  size_t ulen = ex->url.len;
  if (ulen == 0) return -1;
  if (u[0] == '/' || (ulen == 1 && u[0] == '*')) {
    ex->target = dup_buf(&ex->url);
    return ex->target ? 0 : -1;
  }
  struct http_parser_url pu;
  http_parser_url_init(&pu);
  if (http_parser_parse_url(u, ulen, is_connect, &pu) != 0) return -1;
  m5_buf_t t;
  m5_buf_init(&t, M5_HTTP_MAX_HEADER_BYTES);
  int rc = 0;
  if (pu.field_set & (1 << UF_PATH))
    rc = m5_buf_append(&t, u + pu.field_data[UF_PATH].off, pu.field_data[UF_PATH].len);
  else
    rc = m5_buf_append(&t, "/", 1);
  if (!rc && (pu.field_set & (1 << UF_QUERY))) {
    rc = m5_buf_append(&t, "?", 1);
    if (!rc) rc = m5_buf_append(&t, u + pu.field_data[UF_QUERY].off, pu.field_data[UF_QUERY].len);
  }
  if (!rc) ex->target = dup_buf(&t);
  m5_buf_free(&t);
  return !rc && ex->target ? 0 : -1;
}

static int on_headers_complete(http_parser *p) {
  m5_http_conn_t *c = p->data;
  m5_http_exchange_t *ex = cur(p);
  if (!ex || commit_header(ex)) return -1;
  ex->method = strdup(http_method_str((enum http_method)p->method));
  if (!ex->method || set_target(ex, p->method == HTTP_CONNECT) != 0) return -1;
  ex->is_head = p->method == HTTP_HEAD;
  /* An Upgrade (h2c, websocket) is not taken: the request is answered in HTTP/1.1 and the
   * connection closed, since the parser considers the rest another protocol. */
  ex->keep_alive = http_should_keep_alive(p) && !p->upgrade;
  if ((p->flags & F_CONTENTLENGTH) && p->content_length > c->srv->o.max_body) {
    ex->too_large = 1;
    return -1;
  }
  if (ex->expect_continue && p->http_major == 1 && p->http_minor >= 1 &&
      m5_buf_printf(&c->out, "HTTP/1.1 100 Continue\r\n\r\n") != M5_OK)
    return -1;
  return 0;
}

static int on_body(http_parser *p, const char *at, size_t len) {
  m5_http_conn_t *c = p->data;
  m5_http_exchange_t *ex = cur(p);
  if (!ex) return -1;
  if (len > c->srv->o.max_body - ex->body.len) { /* chunked bodies have no length up front */
    ex->too_large = 1;
    return -1;
  }
  return m5_buf_append(&ex->body, at, len) ? -1 : 0;
}

static int on_message_complete(http_parser *p) {
  /* Stop here: the handler runs after http_parser_execute returns, and pipelined bytes stay
   * in the buffer until this request is answered. */
  http_parser_pause(p, 1);
  return 0;
}

void m5_http_h1_init(m5_http_server_t *srv) {
  http_parser_settings *s = &srv->h1_settings;
  memset(s, 0, sizeof *s);
  s->on_message_begin = on_message_begin;
  s->on_url = on_url;
  s->on_header_field = on_header_field;
  s->on_header_value = on_header_value;
  s->on_headers_complete = on_headers_complete;
  s->on_body = on_body;
  s->on_message_complete = on_message_complete;
}

void m5_http_h1_start(m5_http_conn_t *c) {
  http_parser_init(&c->h1, HTTP_REQUEST);
  c->h1.data = c;
  c->phase = M5_CONN_H1;
}

int m5_http_h1_idle(const m5_http_conn_t *c) {
  return !c->h1_ex && c->in.len == 0 && c->out.len == 0;
}

/* The request cannot be parsed further: answer precisely and close, since the rest of the
 * input can no longer be framed. */
static void parse_failed(m5_http_conn_t *c, enum http_errno e) {
  m5_http_exchange_t *ex = c->h1_ex;
  if (!ex) ex = c->h1_ex = m5_http_ex_new(c, 1);
  if (!ex) {
    c->fatal = 1;
    return;
  }
  ex->keep_alive = 0;
  m5_buf_reset(&c->in);
  if (ex->too_large) {
    m5_http_ex_problem(ex, 413, "Payload Too Large");
  } else if (ex->hdr_overflow || e == HPE_HEADER_OVERFLOW) {
    m5_http_ex_problem(ex, 431, "Request Header Fields Too Large");
  } else {
    M5_LOGD("http", "%s: bad HTTP/1.1 request: %s", c->peer, http_errno_description(e));
    m5_http_ex_problem(ex, 400, "Bad Request");
  }
}

int m5_http_h1_process(m5_http_conn_t *c) {
  m5_http_server_t *srv = c->srv;
  /* Answers are not queued past M5_HTTP_OUT_HIGH: a peer pipelining small requests without
   * reading would otherwise make us buffer (input size x answer size); conn_flush calls
   * again as the socket drains. */
  while (c->phase == M5_CONN_H1 && !c->close_after_write && !c->fatal && c->in.len > 0 &&
         c->out.len < M5_HTTP_OUT_HIGH) {
    if (c->h1_ex && c->h1_ex->state != M5_EX_RECEIVING) return M5_OK; /* with the handler */
    size_t n = http_parser_execute(&c->h1, &srv->h1_settings, (const char *)c->in.data, c->in.len);
    enum http_errno e = HTTP_PARSER_ERRNO(&c->h1);
    if (e != HPE_OK && e != HPE_PAUSED) {
      parse_failed(c, e);
      return M5_OK;
    }
    m5_buf_consume(&c->in, n);
    if (e == HPE_OK) return M5_OK; /* the rest of the request has not arrived */
    http_parser_pause(&c->h1, 0);
    if (c->h1_ex) m5_http_ex_dispatch(c->h1_ex); /* may answer, and clear h1_ex, at once */
  }
  return M5_OK;
}

int m5_http_h1_respond(m5_http_exchange_t *ex, int status, const char *content_type,
                       const m5_http_header_t *hdrs, size_t n_hdrs, const void *body, size_t len) {
  m5_http_conn_t *c = ex->conn;
  int close = !ex->keep_alive || c->srv->draining;
  int with_body = m5_http_status_has_body(status);
  int rc = m5_buf_printf(&c->out, "HTTP/1.1 %d %s\r\n", status, m5_http_reason(status));
  if (!rc && content_type) rc = m5_buf_printf(&c->out, "content-type: %s\r\n", content_type);
  if (!rc && with_body) rc = m5_buf_printf(&c->out, "content-length: %zu\r\n", len);
  for (size_t i = 0; i < n_hdrs && !rc; i++)
    rc = m5_buf_printf(&c->out, "%s: %s\r\n", hdrs[i].name, hdrs[i].value);
  if (!rc && close) rc = m5_buf_printf(&c->out, "connection: close\r\n");
  if (!rc) rc = m5_buf_append(&c->out, "\r\n", 2);
  if (!rc && with_body && !ex->is_head) rc = m5_buf_append(&c->out, body, len);
  if (rc) c->fatal = 1; /* a half-written response cannot be repaired */
  if (close) c->close_after_write = 1;
  m5_http_ex_free(ex);
  return rc;
}
