/* HTTP/2 (RFC 9113) for the server through nghttp2: one session per connection fed from the
 * connection's input and drained into its output buffer (mem_recv / mem_send, no I/O inside
 * nghttp2), one exchange per request stream, responses from a data provider over a copy of
 * the handler's body. nghttp2 enforces the framing rules, the HTTP messaging rules (pseudo
 * headers, content-length) and SETTINGS_MAX_CONCURRENT_STREAMS; this file adds the limits
 * on header and body size. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/err.h"
#include "core/log.h"
#include "http/http_int.h"

static m5_http_exchange_t *stream_ex(nghttp2_session *s, int32_t stream_id) {
  return nghttp2_session_get_stream_user_data(s, stream_id);
}

static int on_begin_headers(nghttp2_session *s, const nghttp2_frame *f, void *ud) {
  m5_http_conn_t *c = ud;
  if (f->hd.type != NGHTTP2_HEADERS || f->headers.cat != NGHTTP2_HCAT_REQUEST) return 0;
  /* SETTINGS_MAX_CONCURRENT_STREAMS bounds open streams only; a request the peer resets
   * keeps its handler busy. Bound handlers per connection too, or HEADERS + RST_STREAM pairs
   * start work without limit. REFUSED_STREAM: the client may retry (RFC 9113 §8.7). */
  if (m5_http_conn_dispatched(c) >= c->srv->o.max_streams) {
    (void)nghttp2_submit_rst_stream(s, NGHTTP2_FLAG_NONE, f->hd.stream_id, NGHTTP2_REFUSED_STREAM);
    return 0;
  }
  m5_http_exchange_t *ex = m5_http_ex_new(c, 2);
  /* Out of memory: refuse this stream only (RST_STREAM), not the whole connection. */
  if (!ex) return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
  ex->stream_id = f->hd.stream_id;
  if (nghttp2_session_set_stream_user_data(s, f->hd.stream_id, ex) != 0) {
    m5_http_ex_free(ex);
    return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
  }
  return 0;
}

static int set_field(char **dst, const uint8_t *v, size_t len) {
  if (*dst) return 0; /* the first occurrence counts */
  char *s = malloc(len + 1);
  if (!s) return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
  memcpy(s, v, len);
  s[len] = '\0';
  *dst = s;
  return 0;
}

static int name_is(const uint8_t *name, size_t len, const char *lit) {
  return strlen(lit) == len && memcmp(name, lit, len) == 0;
}

static int on_header(nghttp2_session *s, const nghttp2_frame *f, const uint8_t *name,
                     size_t namelen, const uint8_t *value, size_t valuelen, uint8_t flags,
                     void *ud) {
  (void)flags, (void)ud;
  if (f->hd.type != NGHTTP2_HEADERS) return 0;
  m5_http_exchange_t *ex = stream_ex(s, f->hd.stream_id);
  if (!ex || ex->state != M5_EX_RECEIVING) return 0;
  /* RFC 9113 §6.5.2 counts 32 octets of overhead per field, as we do. */
  ex->header_bytes += namelen + valuelen + 32;
  if (ex->header_bytes > M5_HTTP_MAX_HEADER_BYTES) ex->hdr_overflow = 1;
  if (ex->hdr_overflow || f->headers.cat != NGHTTP2_HCAT_REQUEST) return 0; /* trailers */
  /* nghttp2 has already rejected NUL, CR, LF and uppercase names (http messaging on). */
  if (name_is(name, namelen, ":method")) return set_field(&ex->method, value, valuelen);
  if (name_is(name, namelen, ":path")) return set_field(&ex->target, value, valuelen);
  if (name_is(name, namelen, "content-type")) return set_field(&ex->content_type, value, valuelen);
  if (name_is(name, namelen, "authorization"))
    return set_field(&ex->authorization, value, valuelen);
  return 0;
}

static int on_data_chunk(nghttp2_session *s, uint8_t flags, int32_t stream_id, const uint8_t *data,
                         size_t len, void *ud) {
  (void)flags, (void)ud;
  m5_http_exchange_t *ex = stream_ex(s, stream_id);
  if (!ex || ex->state != M5_EX_RECEIVING) return 0; /* answered early (413): discard */
  size_t max = ex->conn->srv->o.max_body;
  if (len > max - ex->body.len) {
    /* Answer now rather than buffer what we will refuse anyway; nghttp2 resets the
     * stream's remaining upload once the response is complete (RFC 9113 §8.1). */
    ex->too_large = 1;
    m5_buf_free(&ex->body);
    m5_http_ex_problem(ex, 413, "Payload Too Large");
    return 0;
  }
  if (m5_buf_append(&ex->body, data, len) != M5_OK) {
    /* Out of memory. Any non-zero return here is fatal to the whole session (unlike in the
     * header callbacks), so reset just this stream. */
    (void)nghttp2_submit_rst_stream(s, NGHTTP2_FLAG_NONE, stream_id, NGHTTP2_INTERNAL_ERROR);
    m5_buf_free(&ex->body);
    ex->state = M5_EX_RESPONDED; /* the reset is its answer: the rest of it is discarded */
  }
  return 0;
}

static int on_frame_recv(nghttp2_session *s, const nghttp2_frame *f, void *ud) {
  (void)ud;
  if (f->hd.type != NGHTTP2_HEADERS && f->hd.type != NGHTTP2_DATA) return 0;
  m5_http_exchange_t *ex = stream_ex(s, f->hd.stream_id);
  if (!ex || ex->state != M5_EX_RECEIVING) return 0;
  if (ex->hdr_overflow) {
    m5_http_ex_problem(ex, 431, "Request Header Fields Too Large");
    return 0;
  }
  if (!(f->hd.flags & NGHTTP2_FLAG_END_STREAM)) return 0;
  if (!ex->method || !ex->target) {
    /* Only reachable for CONNECT, which has no :path (RFC 9113 §8.5); we serve none. */
    m5_http_ex_problem(ex, 405, "Method Not Allowed");
    return 0;
  }
  ex->is_head = strcmp(ex->method, "HEAD") == 0;
  m5_http_ex_dispatch(ex);
  return 0;
}

static int on_stream_close(nghttp2_session *s, int32_t stream_id, uint32_t error_code, void *ud) {
  (void)error_code, (void)ud;
  m5_http_exchange_t *ex = stream_ex(s, stream_id);
  if (!ex) return 0;
  if (ex->state == M5_EX_DISPATCHED)
    ex->stream_closed = 1; /* still counted on the connection until the handler answers */
  else
    m5_http_ex_free(ex);
  return 0;
}

static ssize_t body_read(nghttp2_session *s, int32_t stream_id, uint8_t *buf, size_t length,
                         uint32_t *data_flags, nghttp2_data_source *src, void *ud) {
  (void)s, (void)stream_id, (void)ud;
  m5_http_exchange_t *ex = src->ptr;
  size_t n = ex->resp_len - ex->resp_off;
  if (n > length) n = length;
  if (n) memcpy(buf, ex->resp + ex->resp_off, n);
  ex->resp_off += n;
  if (ex->resp_off == ex->resp_len) *data_flags |= NGHTTP2_DATA_FLAG_EOF;
  return (ssize_t)n;
}

int m5_http_h2_init(m5_http_server_t *srv) {
  if (nghttp2_session_callbacks_new(&srv->h2_cbs) != 0) return M5_ENOMEM;
  if (nghttp2_option_new(&srv->h2_opt) != 0) {
    nghttp2_session_callbacks_del(srv->h2_cbs);
    srv->h2_cbs = NULL;
    return M5_ENOMEM;
  }
  nghttp2_session_callbacks *cb = srv->h2_cbs;
  nghttp2_session_callbacks_set_on_begin_headers_callback(cb, on_begin_headers);
  nghttp2_session_callbacks_set_on_header_callback(cb, on_header);
  nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, on_data_chunk);
  nghttp2_session_callbacks_set_on_frame_recv_callback(cb, on_frame_recv);
  nghttp2_session_callbacks_set_on_stream_close_callback(cb, on_stream_close);
  /* Closed streams are kept only for RFC 7540 priorities, which we do not use. */
  nghttp2_option_set_no_closed_streams(srv->h2_opt, 1);
  return M5_OK;
}

void m5_http_h2_cleanup(m5_http_server_t *srv) {
  nghttp2_session_callbacks_del(srv->h2_cbs);
  nghttp2_option_del(srv->h2_opt);
  srv->h2_cbs = NULL;
  srv->h2_opt = NULL;
}

int m5_http_h2_start(m5_http_conn_t *c) {
  m5_http_server_t *srv = c->srv;
  if (nghttp2_session_server_new2(&c->h2, srv->h2_cbs, c, srv->h2_opt) != 0) return M5_ENOMEM;
  nghttp2_settings_entry iv[] = {
      {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, srv->o.max_streams},
      {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, M5_HTTP_MAX_HEADER_BYTES},
  };
  if (nghttp2_submit_settings(c->h2, NGHTTP2_FLAG_NONE, iv, sizeof iv / sizeof iv[0]) != 0)
    return M5_ENOMEM;
  c->phase = M5_CONN_H2;
  /* A closing server still answers this connection, but announces it at once. */
  if (srv->draining) m5_http_h2_goaway(c, 0);
  return M5_OK;
}

int m5_http_h2_recv(m5_http_conn_t *c, const uint8_t *data, size_t len) {
  ssize_t r = nghttp2_session_mem_recv(c->h2, data, len);
  if (r < 0) {
    M5_LOGD("http", "%s: HTTP/2: %s", c->peer, nghttp2_strerror((int)r));
    return M5_EPROTO;
  }
  return M5_OK;
}

int m5_http_h2_fill(m5_http_conn_t *c) {
  while (c->out.len < M5_HTTP_OUT_HIGH) {
    const uint8_t *data = NULL;
    ssize_t n = nghttp2_session_mem_send(c->h2, &data);
    if (n < 0) {
      M5_LOGD("http", "%s: HTTP/2: %s", c->peer, nghttp2_strerror((int)n));
      return M5_EPROTO;
    }
    if (n == 0) break;
    int rc = m5_buf_append(&c->out, data, (size_t)n);
    if (rc) return rc;
  }
  return M5_OK;
}

int m5_http_h2_finished(m5_http_conn_t *c) {
  return !nghttp2_session_want_read(c->h2) && !nghttp2_session_want_write(c->h2);
}

void m5_http_h2_goaway(m5_http_conn_t *c, int final) {
  if (!final) {
    (void)nghttp2_submit_shutdown_notice(c->h2);
    return;
  }
  /* Streams up to the last one we started stay served; the session ends after them. */
  (void)nghttp2_submit_goaway(c->h2, NGHTTP2_FLAG_NONE,
                              nghttp2_session_get_last_proc_stream_id(c->h2), NGHTTP2_NO_ERROR,
                              NULL, 0);
}

int m5_http_h2_respond(m5_http_exchange_t *ex, int status, const char *content_type,
                       const m5_http_header_t *hdrs, size_t n_hdrs, const void *body, size_t len) {
  m5_http_conn_t *c = ex->conn;
  ex->state = M5_EX_RESPONDED;
  int with_body = m5_http_status_has_body(status);
  char st[8], cl[24];
  snprintf(st, sizeof st, "%d", status);
  snprintf(cl, sizeof cl, "%zu", with_body ? len : 0); /* HEAD: the length GET would have */
  if (!with_body || ex->is_head) len = 0;
  if (len) {
    ex->resp = malloc(len);
    if (!ex->resp) {
      (void)nghttp2_submit_rst_stream(c->h2, NGHTTP2_FLAG_NONE, ex->stream_id,
                                      NGHTTP2_INTERNAL_ERROR);
      return M5_ENOMEM;
    }
    memcpy(ex->resp, body, len);
    ex->resp_len = len;
  }
  nghttp2_nv *nva = calloc(n_hdrs + 3, sizeof *nva);
  if (!nva) {
    (void)nghttp2_submit_rst_stream(c->h2, NGHTTP2_FLAG_NONE, ex->stream_id,
                                    NGHTTP2_INTERNAL_ERROR);
    return M5_ENOMEM;
  }
  size_t n = 0;
#define NV(nm, val)                                                                                \
  nva[n++] = (nghttp2_nv){(uint8_t *)(nm), (uint8_t *)(val), strlen(nm), strlen(val),              \
                          NGHTTP2_NV_FLAG_NONE}
  NV(":status", st);
  if (content_type) NV("content-type", content_type);
  if (with_body) NV("content-length", cl);
  for (size_t i = 0; i < n_hdrs; i++)
    NV(hdrs[i].name, hdrs[i].value);
#undef NV
  nghttp2_data_provider prd = {.source.ptr = ex, .read_callback = body_read};
  /* nghttp2 copies the header block, so nva may go when this returns. */
  int rv = nghttp2_submit_response(c->h2, ex->stream_id, nva, n, len ? &prd : NULL);
  free(nva);
  if (rv != 0) {
    M5_LOGD("http", "%s: stream %d: cannot respond: %s", c->peer, ex->stream_id,
            nghttp2_strerror(rv));
    (void)nghttp2_submit_rst_stream(c->h2, NGHTTP2_FLAG_NONE, ex->stream_id,
                                    NGHTTP2_INTERNAL_ERROR);
    return M5_EIO;
  }
  return M5_OK;
}
