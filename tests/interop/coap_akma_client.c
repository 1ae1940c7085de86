/* Interop peer for MSGin5G-1 (docs/protocol.md): a UE built on libcoap's client library
 * (libcoap 4.3, OpenSSL flavour), not on our CoAP stack.
 *
 * It opens a DTLS 1.2 PSK session keyed by AKMA with a binary key (libcoap's CLI takes text
 * keys only): identity "3GPP-AKMA" + A-KID, key = the 32 raw K_AF bytes, SNI "localhost". It
 * registers (POST msgin5g, REG: 2.01 or 2.04 expected), prints "registered <code>" on stderr,
 * then serves its own resource msgin5g on the same session: the first MSG the server pushes
 * is answered 2.04 with a MSGRESP body and printed as one line on stdout; exit 0. Timeout or
 * any failure: a message on stderr, exit 1. Usage errors: exit 2.
 *
 *   coap_akma_client --port P --kaf [SUITE=]HEX [--kaf SUITE=HEX ...] --akid TEXT --ue ID
 *                    [--host 127.0.0.1] [--sni localhost] [--timeout S] [-v]
 *
 * K_AF depends on the (D)TLS 1.2 suite the server picks (Ua* id 01 00 01 yy zz). libcoap
 * offers every PSK suite OpenSSL has, so the server picks by its own preference
 * (ECDHE-PSK-CHACHA20-POLY1305, 0xCCAC, first). A plain --kaf HEX is used whatever the suite;
 * --kaf ccac=HEX --kaf 00a8=HEX ... give one key per suite: the key is chosen in libcoap's
 * identity-hint callback, which runs after the ServerHello, from the negotiated suite.
 *
 * Build: cc -o coap_akma_client coap_akma_client.c $(pkg-config --cflags --libs
 * libcoap-3-openssl openssl) */
#include <coap3/coap.h>
#include <openssl/ssl.h>

#include <arpa/inet.h>
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define KAF_LEN 32
#define MAX_KEYS 8

typedef struct {
  int suite; /* protocol id, -1 = any */
  uint8_t key[KAF_LEN];
} kaf_t;

static kaf_t g_keys[MAX_KEYS];
static size_t g_n_keys;
static char g_identity[600];
static coap_dtls_cpsk_info_t g_cpsk;
static int g_verbose;
static const char *g_ue;

static int g_reg_done;   /* 1 = registered, -1 = failed */
static int g_got_msg;    /* 1 = a MSG was answered */
static int g_failed;     /* session error */
static char g_fail_why[256];

static void die_usage(const char *msg) {
  fprintf(stderr, "coap_akma_client: %s\n", msg);
  fprintf(stderr, "usage: coap_akma_client --port P --kaf [SUITE=]HEX --akid TEXT --ue ID "
                  "[--host H] [--sni NAME] [--timeout S] [-v]\n");
  exit(2);
}

static int hexval(int c) {
  if (c >= '0' && c <= '9') return c - '0';
  c = tolower(c);
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

static int parse_hex(const char *s, uint8_t *out, size_t n) {
  if (strlen(s) != 2 * n) return -1;
  for (size_t i = 0; i < n; i++) {
    int h = hexval(s[2 * i]), l = hexval(s[2 * i + 1]);
    if (h < 0 || l < 0) return -1;
    out[i] = (uint8_t)(h << 4 | l);
  }
  return 0;
}

static void add_key(const char *arg) {
  if (g_n_keys == MAX_KEYS) die_usage("too many --kaf");
  kaf_t *k = &g_keys[g_n_keys];
  const char *eq = strchr(arg, '=');
  k->suite = -1;
  if (eq) {
    uint8_t id[2];
    char s[5];
    if (eq - arg != 4) die_usage("--kaf SUITE=HEX: SUITE is 4 hex digits (e.g. ccac, 00a8)");
    memcpy(s, arg, 4);
    s[4] = 0;
    if (parse_hex(s, id, 2) != 0) die_usage("--kaf: bad suite id");
    k->suite = id[0] << 8 | id[1];
    arg = eq + 1;
  }
  if (parse_hex(arg, k->key, KAF_LEN) != 0) die_usage("--kaf: want 64 hex digits (32 bytes)");
  g_n_keys++;
}

/* The identity-hint callback: runs inside OpenSSL's PSK client callback (after ServerHello),
 * so the negotiated suite is known and the matching K_AF can be chosen. */
static const coap_dtls_cpsk_info_t *on_hint(coap_str_const_t *hint, coap_session_t *session,
                                            void *arg) {
  (void)arg;
  coap_tls_library_t lib = COAP_TLS_LIBRARY_NOTLS;
  SSL *ssl = coap_session_get_tls(session, &lib);
  int suite = -1;
  if (ssl && lib == COAP_TLS_LIBRARY_OPENSSL) {
    const SSL_CIPHER *c = SSL_get_pending_cipher(ssl);
    if (!c) c = SSL_get_current_cipher(ssl);
    if (c) suite = SSL_CIPHER_get_protocol_id(c);
  }
  if (g_verbose)
    fprintf(stderr, "coap_akma_client: identity hint \"%.*s\", suite 0x%04x\n",
            hint ? (int)hint->length : 0, hint ? (const char *)hint->s : "", (unsigned)suite);
  const kaf_t *pick = NULL;
  for (size_t i = 0; i < g_n_keys && !pick; i++)
    if (g_keys[i].suite == suite) pick = &g_keys[i];
  for (size_t i = 0; i < g_n_keys && !pick; i++)
    if (g_keys[i].suite == -1) pick = &g_keys[i];
  if (!pick) {
    fprintf(stderr, "coap_akma_client: no --kaf for the negotiated suite 0x%04x\n",
            (unsigned)suite);
    return NULL; /* libcoap aborts the handshake */
  }
  g_cpsk.identity.s = (const uint8_t *)g_identity;
  g_cpsk.identity.length = strlen(g_identity);
  g_cpsk.key.s = pick->key;
  g_cpsk.key.length = KAF_LEN;
  return &g_cpsk;
}

static void fail_now(const char *why) {
  if (!g_failed) {
    g_failed = 1;
    snprintf(g_fail_why, sizeof g_fail_why, "%s", why);
  }
}

static int on_event(coap_session_t *session, const coap_event_t event) {
  (void)session;
  switch (event) {
  case COAP_EVENT_DTLS_CONNECTED:
    if (g_verbose) fprintf(stderr, "coap_akma_client: DTLS connected\n");
    break;
  case COAP_EVENT_DTLS_CLOSED:
    fail_now("DTLS session closed by the server");
    break;
  case COAP_EVENT_DTLS_ERROR:
    fail_now("DTLS error (handshake refused: wrong K_AF, identity or SNI?)");
    break;
  case COAP_EVENT_SESSION_FAILED:
    fail_now("session failed");
    break;
  default:
    break;
  }
  return 0;
}

static void on_nack(coap_session_t *session, const coap_pdu_t *sent, coap_nack_reason_t reason,
                    const coap_mid_t mid) {
  (void)session;
  (void)sent;
  (void)mid;
  static const char *names[] = {"too many retries", "not deliverable", "RST",
                                "TLS failed",       "ICMP issue",      "bad response",
                                "TLS layer failure", "WebSocket layer failure"};
  char buf[128];
  snprintf(buf, sizeof buf, "request not answered: %s",
           (unsigned)reason < sizeof names / sizeof names[0] ? names[reason] : "?");
  fail_now(buf);
}

static void print_code(char *buf, size_t n, coap_pdu_code_t c) {
  snprintf(buf, n, "%u.%02u", ((unsigned)c >> 5) & 7u, (unsigned)c & 31u);
}

static coap_response_t on_response(coap_session_t *session, const coap_pdu_t *sent,
                                   const coap_pdu_t *received, const coap_mid_t mid) {
  (void)session;
  (void)sent;
  (void)mid;
  size_t len = 0;
  const uint8_t *data = NULL;
  char code[16];
  coap_pdu_code_t c = coap_pdu_get_code(received);
  print_code(code, sizeof code, c);
  coap_get_data(received, &len, &data);
  if (c == COAP_RESPONSE_CODE_CREATED || c == COAP_RESPONSE_CODE_CHANGED) {
    fprintf(stderr, "registered %s %.*s\n", code, (int)len, data ? (const char *)data : "");
    g_reg_done = 1;
  } else {
    fprintf(stderr, "coap_akma_client: REG answered %s %.*s\n", code, (int)len,
            data ? (const char *)data : "");
    g_reg_done = -1;
  }
  fflush(stderr);
  return COAP_RESPONSE_OK;
}

/* msgId out of a JSON body without a JSON library: the first "msgId" string member. Good
 * enough for a test peer (our server writes compact JSON; escapes are not expected in ids). */
static void find_msgid(const char *body, size_t len, char *out, size_t outlen) {
  out[0] = 0;
  const char *end = body + len, *p = body;
  while (p < end) {
    const char *k = memmem(p, (size_t)(end - p), "\"msgId\"", 7);
    if (!k) return;
    p = k + 7;
    while (p < end && (*p == ' ' || *p == ':' || *p == '\t')) p++;
    if (p < end && *p == '"') {
      p++;
      size_t i = 0;
      while (p < end && *p != '"' && i + 1 < outlen) out[i++] = *p++;
      out[i] = 0;
      return;
    }
  }
}

static void on_post(coap_resource_t *resource, coap_session_t *session,
                    const coap_pdu_t *request, const coap_string_t *query,
                    coap_pdu_t *response) {
  (void)resource;
  (void)session;
  (void)query;
  size_t len = 0;
  const uint8_t *data = NULL;
  coap_get_data(request, &len, &data);
  char msgid[80];
  find_msgid((const char *)data, data ? len : 0, msgid, sizeof msgid);
  if (!data || len == 0 || !memmem(data, len, "\"MSG\"", 5)) {
    coap_pdu_set_code(response, COAP_RESPONSE_CODE_BAD_REQUEST);
    fprintf(stderr, "coap_akma_client: pushed request is not a MSG: %.*s\n", (int)len,
            data ? (const char *)data : "");
    return;
  }
  printf("%.*s\n", (int)len, (const char *)data);
  fflush(stdout);
  char body[160];
  int n = snprintf(body, sizeof body, "{\"msgType\":\"MSGRESP\",\"msgId\":\"%s\"}", msgid);
  uint8_t fmt[4];
  coap_pdu_set_code(response, COAP_RESPONSE_CODE_CHANGED);
  coap_add_option(response, COAP_OPTION_CONTENT_FORMAT,
                  coap_encode_var_safe(fmt, sizeof fmt, COAP_MEDIATYPE_APPLICATION_JSON), fmt);
  coap_add_data(response, (size_t)n, (const uint8_t *)body);
  g_got_msg = 1;
}

/* libcoap logs INFO and DEBUG to stdout by default; stdout carries the received MSG only. */
static void log_to_stderr(coap_log_t level, const char *message) {
  (void)level;
  fputs(message, stderr);
}

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
  const char *host = "127.0.0.1", *akid = NULL, *sni = "localhost";
  int port = 0;
  double timeout = 20;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    const char *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (!strcmp(a, "-v")) {
      g_verbose = 1;
      continue;
    }
    if (!v) die_usage("missing value");
    if (!strcmp(a, "--port")) port = atoi(v);
    else if (!strcmp(a, "--kaf")) add_key(v);
    else if (!strcmp(a, "--akid")) akid = v;
    else if (!strcmp(a, "--ue")) g_ue = v;
    else if (!strcmp(a, "--host")) host = v;
    else if (!strcmp(a, "--sni")) sni = v;
    else if (!strcmp(a, "--timeout")) timeout = atof(v);
    else die_usage("unknown option");
    i++;
  }
  if (port <= 0 || port > 65535 || !akid || !g_ue || g_n_keys == 0 || timeout <= 0)
    die_usage("--port, --kaf, --akid and --ue are required");
  if (strlen(akid) + 10 > sizeof g_identity) die_usage("--akid too long");
  snprintf(g_identity, sizeof g_identity, "3GPP-AKMA%s", akid);

  coap_startup();
  coap_set_log_handler(log_to_stderr);
  coap_set_log_level(g_verbose ? LOG_INFO : LOG_ERR);
  coap_dtls_set_log_level(g_verbose ? LOG_INFO : LOG_ERR);
  if (!coap_dtls_is_supported()) {
    fprintf(stderr, "coap_akma_client: this libcoap has no DTLS\n");
    return 1;
  }

  coap_address_t dst;
  coap_address_init(&dst);
  dst.addr.sin.sin_family = AF_INET;
  dst.addr.sin.sin_port = htons((uint16_t)port);
  if (inet_pton(AF_INET, host, &dst.addr.sin.sin_addr) != 1) die_usage("--host: IPv4 literal");
  dst.size = sizeof dst.addr.sin;

  coap_context_t *ctx = coap_new_context(NULL);
  if (!ctx) {
    fprintf(stderr, "coap_akma_client: coap_new_context failed\n");
    return 1;
  }
  /* Our own resource: the server pushes mobile-terminated messages to it over our session. */
  coap_resource_t *r = coap_resource_init(coap_make_str_const("msgin5g"), 0);
  coap_register_handler(r, COAP_REQUEST_POST, on_post);
  coap_add_resource(ctx, r);
  coap_register_response_handler(ctx, on_response);
  coap_register_nack_handler(ctx, on_nack);
  coap_register_event_handler(ctx, on_event);

  coap_dtls_cpsk_t setup;
  memset(&setup, 0, sizeof setup);
  setup.version = COAP_DTLS_CPSK_SETUP_VERSION;
  setup.validate_ih_call_back = on_hint;
  setup.client_sni = (char *)sni;
  setup.psk_info.identity.s = (const uint8_t *)g_identity;
  setup.psk_info.identity.length = strlen(g_identity);
  setup.psk_info.key.s = g_keys[0].key; /* replaced in on_hint by the suite's key */
  setup.psk_info.key.length = KAF_LEN;

  coap_session_t *session = coap_new_client_session_psk2(ctx, NULL, &dst, COAP_PROTO_DTLS,
                                                         &setup);
  if (!session) {
    fprintf(stderr, "coap_akma_client: coap_new_client_session_psk2 failed\n");
    coap_free_context(ctx);
    return 1;
  }

  /* REG */
  coap_pdu_t *pdu = coap_new_pdu(COAP_MESSAGE_CON, COAP_REQUEST_CODE_POST, session);
  uint8_t tok[8], fmt[4];
  size_t toklen = 0;
  coap_session_new_token(session, &toklen, tok);
  char body[300];
  int blen = snprintf(body, sizeof body, "{\"msgType\":\"REG\",\"ueSvcId\":\"%s\"}", g_ue);
  if (!pdu || !coap_add_token(pdu, toklen, tok) ||
      !coap_add_option(pdu, COAP_OPTION_URI_PATH, 7, (const uint8_t *)"msgin5g") ||
      !coap_add_option(pdu, COAP_OPTION_CONTENT_FORMAT,
                       coap_encode_var_safe(fmt, sizeof fmt, COAP_MEDIATYPE_APPLICATION_JSON),
                       fmt) ||
      blen <= 0 || (size_t)blen >= sizeof body ||
      !coap_add_data(pdu, (size_t)blen, (const uint8_t *)body)) {
    fprintf(stderr, "coap_akma_client: cannot build the REG request\n");
    return 1;
  }
  if (coap_send(session, pdu) == COAP_INVALID_MID) {
    fprintf(stderr, "coap_akma_client: coap_send failed\n");
    return 1;
  }

  int rc = 1;
  double deadline = now_s() + timeout, done_at = 0;
  for (;;) {
    coap_io_process(ctx, 100);
    if (g_failed && !g_got_msg) {
      fprintf(stderr, "coap_akma_client: %s\n", g_fail_why);
      break;
    }
    if (g_reg_done < 0) break;
    if (g_got_msg) {
      /* The answer went out as the piggy-backed ACK; linger briefly to answer a
       * retransmission in case our ACK was lost. */
      if (done_at == 0) done_at = now_s() + 0.3;
      if (now_s() >= done_at) {
        rc = 0;
        break;
      }
      continue;
    }
    if (now_s() >= deadline) {
      fprintf(stderr, "coap_akma_client: timeout after %gs: %s\n", timeout,
              g_reg_done ? "registered, but no MSG was pushed to us"
                         : "no answer to REG (handshake or request failed)");
      break;
    }
  }
  coap_session_release(session);
  coap_free_context(ctx);
  coap_cleanup();
  return rc;
}
