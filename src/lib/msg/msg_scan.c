/* The allocation-free parser of the usual MSGin5G-1 bodies (msg_int.h, architecture §3.1): one
 * pass over the text records where each value is (a few dozen tokens on the stack), then the
 * member table of msg.c is walked with the same checks as the jansson parser, copying straight
 * from the text. Only the decoded payload is allocated.
 *
 * It accepts a subset of JSON on which it knows it agrees with jansson (RFC 8259 as jansson
 * 2.14 reads it with JSON_REJECT_DUPLICATES): objects, strings of the bytes 0x20-0x7e without
 * a backslash, true, false and null, with JSON whitespace between. A number, an array, an
 * escape, a byte outside 0x20-0x7e in a string, nesting deeper than SCAN_DEPTH, more than
 * SCAN_TOKENS values, a duplicate key or any check that fails, and it gives up (1): the
 * jansson parser then reads the body again and gives the answer, with its diagnostic. So a
 * body's result never depends on which parser read it (tests/unit/test_msg.c and
 * tests/fuzz/fuzz_msg.c compare both). */
#include "msg/msg_int.h"

#include "core/err.h"

#include <stdlib.h>
#include <string.h>

#define SCAN_TOKENS 64 /* values and keys of one body */
#define SCAN_DEPTH 4   /* objects within objects: the body, oriAddr, ... */

typedef enum { TK_OBJECT, TK_STRING, TK_TRUE, TK_FALSE, TK_NULL } tk_t;

typedef struct {
  tk_t type;
  unsigned end; /* the index after this value and everything in it */
  size_t off;   /* a string's text (without quotes) */
  size_t len;
} tok_t;

typedef struct {
  const uint8_t *b;
  size_t len, pos;
  tok_t tok[SCAN_TOKENS];
  unsigned n;
} scan_t;

static void skip_ws(scan_t *sc) {
  while (sc->pos < sc->len) {
    uint8_t c = sc->b[sc->pos];
    if (c != ' ' && c != '\t' && c != '\n' && c != '\r') return;
    sc->pos++;
  }
}

static int add_tok(scan_t *sc, tk_t type, size_t off, size_t len) {
  if (sc->n >= SCAN_TOKENS) return -1;
  tok_t *t = &sc->tok[sc->n];
  t->type = type;
  t->off = off;
  t->len = len;
  t->end = ++sc->n;
  return (int)sc->n - 1;
}

/* 1 for the bytes that end a run of plain string text: the quote, the backslash, control
 * characters and everything above 0x7e. */
static const uint8_t not_plain[256] = {
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
};

/* A string at sc->pos (its opening quote): printable ASCII without a backslash. */
static int scan_string(scan_t *sc) {
  size_t start = ++sc->pos, i = start;
  while (i < sc->len && !not_plain[sc->b[i]])
    i++;
  if (i >= sc->len || sc->b[i] != '"') return -1; /* an escape, a byte we leave to jansson */
  sc->pos = i + 1;
  return add_tok(sc, TK_STRING, start, i - start);
}

static int scan_literal(scan_t *sc, const char *word, tk_t type) {
  size_t n = strlen(word);
  if (sc->len - sc->pos < n || memcmp(sc->b + sc->pos, word, n)) return -1;
  sc->pos += n;
  return add_tok(sc, type, 0, 0);
}

static bool tok_is(const scan_t *sc, const tok_t *t, const char *s, size_t n) {
  return t->len == n && !memcmp(sc->b + t->off, s, n);
}

/* Whether string token t is the text of s (NUL-terminated; t holds no NUL). */
static bool tok_eq(const scan_t *sc, const tok_t *t, const char *s) {
  const uint8_t *p = sc->b + t->off;
  for (size_t i = 0; i < t->len; i++)
    if (p[i] != (uint8_t)s[i]) return false; /* also where s ends first: p[i] is never 0 */
  return s[t->len] == '\0';
}

static int scan_object(scan_t *sc, int depth);

static int scan_value(scan_t *sc, int depth) {
  skip_ws(sc);
  if (sc->pos >= sc->len) return -1;
  switch (sc->b[sc->pos]) {
  case '"':
    return scan_string(sc);
  case '{':
    return scan_object(sc, depth + 1);
  case 't':
    return scan_literal(sc, "true", TK_TRUE);
  case 'f':
    return scan_literal(sc, "false", TK_FALSE);
  case 'n':
    return scan_literal(sc, "null", TK_NULL);
  default:
    return -1; /* a number, an array, or not JSON: jansson's */
  }
}

/* An object at sc->pos (its '{'): keys and values in order, key k's value at k + 1. */
static int scan_object(scan_t *sc, int depth) {
  if (depth > SCAN_DEPTH) return -1;
  int obj = add_tok(sc, TK_OBJECT, 0, 0);
  if (obj < 0) return -1;
  sc->pos++;
  skip_ws(sc);
  if (sc->pos < sc->len && sc->b[sc->pos] == '}') {
    sc->pos++;
    sc->tok[obj].end = sc->n;
    return obj;
  }
  for (;;) {
    skip_ws(sc);
    if (sc->pos >= sc->len || sc->b[sc->pos] != '"') return -1;
    int key = scan_string(sc);
    if (key < 0) return -1;
    const tok_t *k = &sc->tok[key];
    for (unsigned i = (unsigned)obj + 1; i < (unsigned)key; i = sc->tok[i + 1].end)
      if (tok_is(sc, &sc->tok[i], (const char *)sc->b + k->off, k->len))
        return -1; /* a duplicate key: refused, by jansson with its diagnostic */
    skip_ws(sc);
    if (sc->pos >= sc->len || sc->b[sc->pos] != ':') return -1;
    sc->pos++;
    if (scan_value(sc, depth) < 0) return -1;
    skip_ws(sc);
    if (sc->pos >= sc->len) return -1;
    uint8_t c = sc->b[sc->pos++];
    if (c == '}') break;
    if (c != ',') return -1;
  }
  sc->tok[obj].end = sc->n;
  return obj;
}

/* The value of member `name` of object obj, or NULL. */
static const tok_t *obj_get(const scan_t *sc, unsigned obj, const char *name) {
  for (unsigned i = obj + 1; i < sc->tok[obj].end; i = sc->tok[i + 1].end)
    if (tok_eq(sc, &sc->tok[i], name)) return &sc->tok[i + 1];
  return NULL;
}

static unsigned tok_index(const scan_t *sc, const tok_t *t) {
  return (unsigned)(t - sc->tok);
}

/* A string value into dst[cap] (NUL-terminated); false if it is no string or too long. */
static bool copy_str(const scan_t *sc, const tok_t *v, char *dst, size_t cap) {
  if (v->type != TK_STRING || v->len >= cap) return false;
  memcpy(dst, sc->b + v->off, v->len);
  dst[v->len] = '\0';
  return true;
}

static bool get_time(const scan_t *sc, const tok_t *v, int64_t *out) {
  char buf[64];
  int64_t t;
  if (!copy_str(sc, v, buf, sizeof buf) || msg_time_parse(buf, &t) || t <= 0) return false;
  *out = t;
  return true;
}

/* The checks of msg.c's get_member, for the kinds a scanned body can hold; false: ask jansson. */
static bool get_member(const scan_t *sc, const member_t *mb, const tok_t *v, m5_msg_t *m) {
  char *field = (char *)m + mb->off;
  switch (mb->kind) {
  case K_SVC_ID:
    return copy_str(sc, v, field, mb->cap) && m5_msg_svc_id_valid(field);
  case K_MSG_ID:
    return copy_str(sc, v, field, mb->cap) && m5_msg_id_valid(field);
  case K_TEXT:
    return copy_str(sc, v, field, mb->cap) && msg_text_valid(field, mb->cap - 1);
  case K_CAUSE:
    return copy_str(sc, v, field, mb->cap) && msg_cause_valid(field, mb->cap - 1);
  case K_ADDR: {
    m5_msg_addr_t *a = (m5_msg_addr_t *)(void *)field;
    if (v->type != TK_OBJECT) return false;
    const tok_t *t = obj_get(sc, tok_index(sc, v), "addrType");
    const tok_t *x = obj_get(sc, tok_index(sc, v), "addr");
    if (!t || !x || !copy_str(sc, t, a->type, sizeof a->type) || !m5_msg_svc_id_valid(a->type) ||
        !copy_str(sc, x, a->addr, sizeof a->addr) || !m5_msg_svc_id_valid(a->addr))
      return false;
    return !m5_msg_addr_is_named(a->type) || m5_msg_name_valid(a->addr);
  }
  case K_B64:
    return v->type == TK_STRING &&
           msg_b64_decode((const char *)sc->b + v->off, v->len, &m->payload, &m->payload_len) == 0;
  case K_BOOL:
    if (v->type != TK_TRUE && v->type != TK_FALSE) return false;
    *(bool *)(void *)field = v->type == TK_TRUE;
    return true;
  case K_PRIO:
    if (v->type != TK_STRING) return false;
    /* Open enum: a value we do not know is accepted and handled as the default. */
    m->prio = M5_PRIO_MIDDLE;
    for (size_t i = 0; i < MSG_N_PRIOS; i++)
      if (tok_eq(sc, v, msg_prio_names[i])) m->prio = (m5_msg_prio_t)i;
    return true;
  case K_TIME:
    return get_time(sc, v, (int64_t *)(void *)field);
  case K_SAF: {
    if (v->type != TK_OBJECT) return false;
    const tok_t *e = obj_get(sc, tok_index(sc, v), "exprTime");
    return !e || get_time(sc, e, &m->expr_time);
  }
  case K_CHECKED:
    switch (mb->jtype) {
    case JSON_TRUE:
      return v->type == TK_TRUE || v->type == TK_FALSE;
    case JSON_OBJECT:
      return v->type == TK_OBJECT;
    case JSON_STRING:
      return v->type == TK_STRING;
    default:
      return false;
    }
  case K_OBJECT: /* clientProfile: kept as jansson's compact text, so jansson's */
  case K_TOPICS: /* an array */
    return false;
  }
  return false;
}

int msg_scan_parse(const uint8_t *body, size_t len, int type, bool ts, m5_msg_t *out) {
  scan_t sc;
  sc.b = body;
  sc.len = len;
  sc.pos = 0;
  sc.n = 0;
  skip_ws(&sc);
  if (sc.pos >= len || body[sc.pos] != '{' || scan_object(&sc, 0) != 0) return 1;
  skip_ws(&sc);
  if (sc.pos != len) return 1; /* something after the object */
  /* One pass over the body's keys: which member of the table each one is (keys are
   * distinct: duplicates went to jansson). */
  const tok_t *vals[MSG_N_MEMBERS] = {0}, *t = NULL;
  bool sto_fwd_given = false;
  for (unsigned k = 1; k < sc.tok[0].end; k = sc.tok[k + 1].end) {
    const tok_t *key = &sc.tok[k];
    uint8_t c0 = key->len ? body[key->off] : 0;
    if (c0 == 'm' && tok_eq(&sc, key, "msgType")) {
      t = key + 1;
      continue;
    }
    for (size_t i = 0; i < MSG_N_MEMBERS; i++) {
      if ((uint8_t)msg_members[i].name[0] == c0 && tok_eq(&sc, key, msg_members[i].name)) {
        vals[i] = key + 1;
        sto_fwd_given |= !strcmp(msg_members[i].name, "stoAndFwInd");
        break;
      }
    }
  }
  if (type < 0) {
    if (!t || t->type != TK_STRING) return 1;
    size_t ti = 0;
    while (ti < MSG_N_TYPES && !tok_eq(&sc, t, msg_type_names[ti]))
      ti++;
    if (ti == MSG_N_TYPES) return 1;
    type = (int)ti;
    out->type = (m5_msg_type_t)ti;
  }
  unsigned bit = T((unsigned)type);
  for (size_t i = 0; i < MSG_N_MEMBERS; i++) {
    const member_t *mb = &msg_members[i];
    if (!((mb->mandatory | mb->optional) & bit)) continue;
    const tok_t *v = vals[i];
    if (!v) {
      if ((mb->mandatory & bit) && !(ts && (mb->ts_optional & bit))) return 1;
      continue;
    }
    if (!get_member(&sc, mb, v, out)) return 1;
  }
  out->sto_fwd_given = sto_fwd_given;
  return 0;
}
