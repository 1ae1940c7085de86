/* YAML configuration loader (config.h), on libyaml's event API.
 *
 * The file must be one mapping; nested mappings flatten to dotted keys, and only a key the
 * table lists (or a prefix of one, for a nested mapping) is accepted. Sequences are only for
 * M5_CFG_STRLIST items. Every error message has the form "FILE:LINE: KEY: what is wrong" so
 * an operator can go straight to the line. On failure out holds no allocations. */
#include "core/config.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <yaml.h>

#include "core/err.h"

typedef struct {
  char *key; /* full dotted key, seen in this file */
  size_t line;
} seen_key_t;

typedef struct {
  yaml_parser_t parser;
  const char *path;
  const m5_cfg_item_t *items;
  size_t n;
  void *out;
  char *err;
  size_t errlen;
  seen_key_t *seen;
  size_t nseen, capseen;
} cfg_ctx_t;

static void *field(void *out, const m5_cfg_item_t *it) {
  return (char *)out + it->offset;
}

/* ---- errors ---- */

/* "FILE:LINE: KEY: message"; line 0 = no file position, key NULL = no key. */
static void __attribute__((format(printf, 6, 7)))
fail(char *err, size_t errlen, const char *path, size_t line, const char *key, const char *fmt,
     ...) {
  if (!err || errlen == 0) return;
  char msg[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof(msg), fmt, ap);
  va_end(ap);
  size_t off = 0;
  int w = 0;
  if (path && line) {
    w = snprintf(err, errlen, "%s:%zu: ", path, line);
  } else if (path) {
    w = snprintf(err, errlen, "%s: ", path);
  }
  if (w > 0) off = (size_t)w < errlen ? (size_t)w : errlen - 1;
  if (key) {
    w = snprintf(err + off, errlen - off, "%s: ", key);
    if (w > 0) off += (size_t)w < errlen - off ? (size_t)w : errlen - off - 1;
  }
  snprintf(err + off, errlen - off, "%s", msg);
}

#define CFG_FAIL(ctx, line, key, ...)                                                              \
  fail((ctx)->err, (ctx)->errlen, (ctx)->path, line, key, __VA_ARGS__)

/* ---- values ---- */

static int parse_int(const char *s, const m5_cfg_item_t *it, int64_t *out) {
  if (!((*s >= '0' && *s <= '9') || *s == '-' || *s == '+')) return M5_EINVAL;
  char *end;
  errno = 0;
  long long v = strtoll(s, &end, 10);
  if (errno || *end != '\0' || end == s) return M5_EINVAL;
  if (v < it->min || v > it->max) return M5_ERANGE;
  *out = (int64_t)v;
  return M5_OK;
}

static int parse_bool(const char *s, int *out) {
  static const char *const yes[] = {"true", "yes", "on"};
  static const char *const no[] = {"false", "no", "off"};
  for (size_t i = 0; i < 3; i++) {
    if (strcasecmp(s, yes[i]) == 0) {
      *out = 1;
      return M5_OK;
    }
    if (strcasecmp(s, no[i]) == 0) {
      *out = 0;
      return M5_OK;
    }
  }
  return M5_EINVAL;
}

static void strlist_clear(m5_strlist_t *l) {
  for (size_t i = 0; i < l->n; i++)
    free(l->v[i]);
  free(l->v);
  l->v = NULL;
  l->n = 0;
}

static int strlist_push(m5_strlist_t *l, const char *s, size_t len) {
  char **v = realloc(l->v, (l->n + 1) * sizeof(*v));
  if (!v) return M5_ENOMEM;
  l->v = v;
  char *copy = strndup(s, len);
  if (!copy) return M5_ENOMEM;
  l->v[l->n++] = copy;
  return M5_OK;
}

/* "a, b,c" -> {"a", "b", "c"}: entries trimmed, empty ones skipped. */
static int strlist_from_csv(m5_strlist_t *l, const char *s) {
  while (s && *s) {
    while (*s == ' ' || *s == '\t')
      s++;
    size_t len = strcspn(s, ",");
    size_t t = len;
    while (t > 0 && (s[t - 1] == ' ' || s[t - 1] == '\t'))
      t--;
    if (t > 0) {
      int rc = strlist_push(l, s, t);
      if (rc) return rc;
    }
    s += len;
    if (*s == ',') s++;
  }
  return M5_OK;
}

static void describe_expected(const m5_cfg_item_t *it, char *buf, size_t len) {
  switch (it->type) {
  case M5_CFG_INT:
    snprintf(buf, len, "an integer in %lld..%lld", (long long)it->min, (long long)it->max);
    break;
  case M5_CFG_BOOL:
    snprintf(buf, len, "true or false");
    break;
  case M5_CFG_STRLIST:
    snprintf(buf, len, "a list such as [a, b]");
    break;
  default:
    snprintf(buf, len, "a value of type %d", (int)it->type);
    break;
  }
}

/* Stores the text s as item it's value (replacing the previous one). M5_EINVAL / M5_ERANGE
 * when s is not a valid value of the item's type. */
static int set_scalar(void *out, const m5_cfg_item_t *it, const char *s) {
  void *f = field(out, it);
  switch (it->type) {
  case M5_CFG_STR: {
    char *copy = strdup(s);
    if (!copy) return M5_ENOMEM;
    free(*(char **)f);
    *(char **)f = copy;
    return M5_OK;
  }
  case M5_CFG_INT:
    return parse_int(s, it, (int64_t *)f);
  case M5_CFG_BOOL:
    return parse_bool(s, (int *)f);
  case M5_CFG_STRLIST: {
    m5_strlist_t l = {0};
    int rc = strlist_from_csv(&l, s);
    if (rc) {
      strlist_clear(&l);
      return rc;
    }
    strlist_clear((m5_strlist_t *)f);
    *(m5_strlist_t *)f = l;
    return M5_OK;
  }
  }
  return M5_EINVAL;
}

static void clear_all(const m5_cfg_item_t *items, size_t n, void *out) {
  for (size_t i = 0; i < n; i++) {
    void *f = field(out, &items[i]);
    switch (items[i].type) {
    case M5_CFG_STR:
      *(char **)f = NULL;
      break;
    case M5_CFG_INT:
      *(int64_t *)f = 0;
      break;
    case M5_CFG_BOOL:
      *(int *)f = 0;
      break;
    case M5_CFG_STRLIST:
      *(m5_strlist_t *)f = (m5_strlist_t){0};
      break;
    }
  }
}

static int apply_defaults(const m5_cfg_item_t *items, size_t n, void *out, char *err,
                          size_t errlen) {
  for (size_t i = 0; i < n; i++) {
    const char *def = items[i].def;
    if (!def) def = items[i].type == M5_CFG_INT ? "0" : items[i].type == M5_CFG_BOOL ? "false" : "";
    int rc = set_scalar(out, &items[i], def);
    if (rc == M5_ENOMEM) {
      fail(err, errlen, NULL, 0, items[i].key, "out of memory");
      return rc;
    }
    if (rc) {
      char exp[96];
      describe_expected(&items[i], exp, sizeof(exp));
      fail(err, errlen, NULL, 0, items[i].key, "built-in default '%s' is not %s", def, exp);
      return M5_EINVAL;
    }
  }
  return M5_OK;
}

/* ---- the file ---- */

static const m5_cfg_item_t *find_item(const cfg_ctx_t *c, const char *key) {
  for (size_t i = 0; i < c->n; i++) {
    if (strcmp(c->items[i].key, key) == 0) return &c->items[i];
  }
  return NULL;
}

/* Whether key names a group of settings ("tls" for "tls.cert"). */
static int is_prefix(const cfg_ctx_t *c, const char *key) {
  size_t kl = strlen(key);
  for (size_t i = 0; i < c->n; i++) {
    if (strncmp(c->items[i].key, key, kl) == 0 && c->items[i].key[kl] == '.') return 1;
  }
  return 0;
}

static size_t edit_distance(const char *a, const char *b) {
  size_t la = strlen(a), lb = strlen(b);
  if (la > 64 || lb > 64) return (size_t)-1;
  size_t row[65];
  for (size_t j = 0; j <= lb; j++)
    row[j] = j;
  for (size_t i = 1; i <= la; i++) {
    size_t diag = row[0];
    row[0] = i;
    for (size_t j = 1; j <= lb; j++) {
      size_t up = row[j];
      size_t best = diag + (a[i - 1] != b[j - 1]);
      if (up + 1 < best) best = up + 1;
      if (row[j - 1] + 1 < best) best = row[j - 1] + 1;
      row[j] = best;
      diag = up;
    }
  }
  return row[lb];
}

static void fail_unknown(cfg_ctx_t *c, size_t line, const char *key) {
  const char *best = NULL;
  size_t bestd = 3; /* only suggest near misses: typos, not different settings */
  for (size_t i = 0; i < c->n; i++) {
    size_t d = edit_distance(key, c->items[i].key);
    if (d < bestd) {
      bestd = d;
      best = c->items[i].key;
    }
  }
  if (best) {
    CFG_FAIL(c, line, NULL, "unknown key '%s' (did you mean '%s'?)", key, best);
  } else {
    CFG_FAIL(c, line, NULL, "unknown key '%s'", key);
  }
}

static int next_event(cfg_ctx_t *c, yaml_event_t *ev) {
  if (yaml_parser_parse(&c->parser, ev)) return M5_OK;
  const yaml_parser_t *p = &c->parser;
  size_t line = (p->error == YAML_READER_ERROR ? p->mark.line : p->problem_mark.line) + 1;
  if (p->error == YAML_MEMORY_ERROR) {
    CFG_FAIL(c, 0, NULL, "out of memory");
    return M5_ENOMEM;
  }
  if (p->error == YAML_READER_ERROR && p->problem && strcmp(p->problem, "input error") == 0) {
    fail(c->err, c->errlen, NULL, 0, NULL, "cannot read %s: %s", c->path, strerror(errno));
    return M5_EIO;
  }
  if (p->context && p->context_mark.line != p->problem_mark.line) {
    /* The problem is often found far from its cause (an unclosed quote at the end of the
     * file): name where the construct started too. */
    CFG_FAIL(c, line, NULL, "invalid YAML: %s %s (started on line %zu)",
             p->problem ? p->problem : "syntax error", p->context, p->context_mark.line + 1);
  } else if (p->context) {
    CFG_FAIL(c, line, NULL, "invalid YAML: %s %s", p->problem ? p->problem : "syntax error",
             p->context);
  } else {
    CFG_FAIL(c, line, NULL, "invalid YAML: %s", p->problem ? p->problem : "syntax error");
  }
  return M5_EINVAL;
}

static size_t ev_line(const yaml_event_t *ev) {
  return ev->start_mark.line + 1;
}

static const char *scalar_text(const yaml_event_t *ev) {
  return (const char *)ev->data.scalar.value;
}

/* A scalar holding a NUL byte ("\0" in a quoted string) would be silently cut by every C
 * string function downstream. */
static int scalar_has_nul(const yaml_event_t *ev) {
  return strlen(scalar_text(ev)) != ev->data.scalar.length;
}

/* An empty value ("key:" with nothing after it, "~", "null") written without quotes. */
static int scalar_is_null(const yaml_event_t *ev) {
  if (ev->data.scalar.style != YAML_PLAIN_SCALAR_STYLE) return 0;
  const char *s = scalar_text(ev);
  return !*s || strcmp(s, "~") == 0 || strcmp(s, "null") == 0 || strcmp(s, "Null") == 0 ||
         strcmp(s, "NULL") == 0;
}

static const char *kind_name(yaml_event_type_t t) {
  switch (t) {
  case YAML_SEQUENCE_START_EVENT:
    return "a list";
  case YAML_MAPPING_START_EVENT:
    return "a mapping";
  case YAML_ALIAS_EVENT:
    return "an alias (aliases are not supported)";
  default:
    return "something else";
  }
}

static int note_key(cfg_ctx_t *c, const char *key, size_t line) {
  for (size_t i = 0; i < c->nseen; i++) {
    if (strcmp(c->seen[i].key, key) == 0) {
      CFG_FAIL(c, line, key, "duplicate key (first set on line %zu)", c->seen[i].line);
      return M5_EINVAL;
    }
  }
  if (c->nseen == c->capseen) {
    size_t cap = c->capseen ? c->capseen * 2 : 16;
    seen_key_t *s = realloc(c->seen, cap * sizeof(*s));
    if (!s) return M5_ENOMEM;
    c->seen = s;
    c->capseen = cap;
  }
  char *copy = strdup(key);
  if (!copy) return M5_ENOMEM;
  c->seen[c->nseen].key = copy;
  c->seen[c->nseen].line = line;
  c->nseen++;
  return M5_OK;
}

/* The entries of a sequence, up to its end, into a STRLIST item. */
static int read_list(cfg_ctx_t *c, const m5_cfg_item_t *it) {
  m5_strlist_t l = {0};
  int rc;
  for (;;) {
    yaml_event_t ev;
    rc = next_event(c, &ev);
    if (rc) break;
    if (ev.type == YAML_SEQUENCE_END_EVENT) {
      yaml_event_delete(&ev);
      strlist_clear((m5_strlist_t *)field(c->out, it));
      *(m5_strlist_t *)field(c->out, it) = l;
      return M5_OK;
    }
    if (ev.type != YAML_SCALAR_EVENT) {
      CFG_FAIL(c, ev_line(&ev), it->key, "list entries must be single values, got %s",
               kind_name(ev.type));
      rc = M5_EINVAL;
    } else if (scalar_has_nul(&ev)) {
      CFG_FAIL(c, ev_line(&ev), it->key, "list entry contains a NUL character");
      rc = M5_EINVAL;
    } else {
      rc = strlist_push(&l, scalar_text(&ev), ev.data.scalar.length);
      if (rc) CFG_FAIL(c, ev_line(&ev), it->key, "out of memory");
    }
    yaml_event_delete(&ev);
    if (rc) break;
  }
  strlist_clear(&l);
  return rc;
}

/* The value event ev of item it. */
static int read_value(cfg_ctx_t *c, const m5_cfg_item_t *it, const yaml_event_t *ev) {
  size_t line = ev_line(ev);
  if (it->type == M5_CFG_STRLIST) {
    if (ev->type == YAML_SEQUENCE_START_EVENT) return read_list(c, it);
    if (ev->type == YAML_SCALAR_EVENT && scalar_is_null(ev)) {
      strlist_clear((m5_strlist_t *)field(c->out, it));
      return M5_OK;
    }
    if (ev->type == YAML_SCALAR_EVENT) {
      CFG_FAIL(c, line, it->key, "expected a list such as [a, b], got '%s'", scalar_text(ev));
    } else {
      CFG_FAIL(c, line, it->key, "expected a list such as [a, b], got %s", kind_name(ev->type));
    }
    return M5_EINVAL;
  }
  if (ev->type != YAML_SCALAR_EVENT) {
    CFG_FAIL(c, line, it->key, "expected a single value, got %s", kind_name(ev->type));
    return M5_EINVAL;
  }
  if (scalar_has_nul(ev)) {
    CFG_FAIL(c, line, it->key, "value contains a NUL character");
    return M5_EINVAL;
  }
  const char *s = scalar_is_null(ev) && it->type == M5_CFG_STR ? "" : scalar_text(ev);
  int rc = set_scalar(c->out, it, s);
  if (rc == M5_ENOMEM) {
    CFG_FAIL(c, line, it->key, "out of memory");
  } else if (rc) {
    char exp[96];
    describe_expected(it, exp, sizeof(exp));
    CFG_FAIL(c, line, it->key, "expected %s, got '%s'", exp, s);
    rc = M5_EINVAL;
  }
  return rc;
}

/* The body of a mapping whose MAPPING-START was consumed, up to its end. prefix is the
 * dotted key of the mapping ("" at the top). Recursion is bounded by the table: only a
 * prefix of a listed key may hold a mapping. */
static int read_mapping(cfg_ctx_t *c, const char *prefix) {
  for (;;) {
    yaml_event_t kev, vev;
    int rc = next_event(c, &kev);
    if (rc) return rc;
    if (kev.type == YAML_MAPPING_END_EVENT) {
      yaml_event_delete(&kev);
      return M5_OK;
    }
    size_t line = ev_line(&kev);
    if (kev.type != YAML_SCALAR_EVENT || scalar_has_nul(&kev)) {
      CFG_FAIL(c, line, *prefix ? prefix : NULL, "setting names must be plain text, got %s",
               kev.type == YAML_SCALAR_EVENT ? "a NUL character" : kind_name(kev.type));
      yaml_event_delete(&kev);
      return M5_EINVAL;
    }
    size_t len = strlen(prefix) + 1 + kev.data.scalar.length + 1;
    char *key = malloc(len);
    if (!key) {
      yaml_event_delete(&kev);
      return M5_ENOMEM;
    }
    snprintf(key, len, "%s%s%s", prefix, *prefix ? "." : "", scalar_text(&kev));
    yaml_event_delete(&kev);

    const m5_cfg_item_t *it = find_item(c, key);
    if (!it && !is_prefix(c, key)) {
      fail_unknown(c, line, key);
      rc = M5_EINVAL;
    } else {
      rc = note_key(c, key, line);
    }
    if (!rc) rc = next_event(c, &vev);
    if (!rc) {
      if (it) {
        rc = read_value(c, it, &vev);
      } else if (vev.type == YAML_MAPPING_START_EVENT) {
        rc = read_mapping(c, key);
      } else if (vev.type != YAML_SCALAR_EVENT || !scalar_is_null(&vev)) {
        /* "tls:" with nothing under it is an empty group, anything else a mistake. */
        if (vev.type == YAML_SCALAR_EVENT) {
          CFG_FAIL(c, ev_line(&vev), key, "expected a mapping of %s.* settings, got '%s'", key,
                   scalar_text(&vev));
        } else {
          CFG_FAIL(c, ev_line(&vev), key, "expected a mapping of %s.* settings, got %s", key,
                   kind_name(vev.type));
        }
        rc = M5_EINVAL;
      }
      yaml_event_delete(&vev);
    }
    free(key);
    if (rc) return rc;
  }
}

/* The whole stream: nothing (empty file), or one document holding a mapping or nothing. */
static int read_stream(cfg_ctx_t *c) {
  yaml_event_t ev;
  int rc = next_event(c, &ev); /* STREAM-START */
  if (rc) return rc;
  yaml_event_delete(&ev);
  int docs = 0;
  for (;;) {
    rc = next_event(c, &ev);
    if (rc) return rc;
    yaml_event_type_t t = ev.type;
    size_t line = ev_line(&ev);
    yaml_event_delete(&ev);
    if (t == YAML_STREAM_END_EVENT) return M5_OK;
    if (t != YAML_DOCUMENT_START_EVENT) continue; /* DOCUMENT-END */
    if (++docs > 1) {
      CFG_FAIL(c, line, NULL, "only one YAML document is allowed (remove the second '---')");
      return M5_EINVAL;
    }
    rc = next_event(c, &ev);
    if (rc) return rc;
    if (ev.type == YAML_MAPPING_START_EVENT) {
      yaml_event_delete(&ev);
      rc = read_mapping(c, "");
    } else if (ev.type == YAML_SCALAR_EVENT && scalar_is_null(&ev)) {
      yaml_event_delete(&ev);
    } else {
      CFG_FAIL(c, ev_line(&ev), NULL, "expected a mapping of settings (key: value), got %s",
               ev.type == YAML_SCALAR_EVENT ? "a single value" : kind_name(ev.type));
      yaml_event_delete(&ev);
      rc = M5_EINVAL;
    }
    if (rc) return rc;
  }
}

static int load_file(const char *path, const m5_cfg_item_t *items, size_t n, void *out, char *err,
                     size_t errlen) {
  FILE *f = fopen(path, "rb");
  struct stat st;
  if (f && fstat(fileno(f), &st) == 0 && S_ISDIR(st.st_mode)) {
    fclose(f);
    f = NULL;
    errno = EISDIR;
  }
  if (!f) {
    fail(err, errlen, NULL, 0, NULL, "cannot read %s: %s", path, strerror(errno));
    return M5_EIO;
  }
  cfg_ctx_t c = {.path = path, .items = items, .n = n, .out = out, .err = err, .errlen = errlen};
  int rc;
  if (!yaml_parser_initialize(&c.parser)) {
    fail(err, errlen, path, 0, NULL, "out of memory");
    rc = M5_ENOMEM;
  } else {
    yaml_parser_set_input_file(&c.parser, f);
    rc = read_stream(&c);
    yaml_parser_delete(&c.parser);
  }
  for (size_t i = 0; i < c.nseen; i++)
    free(c.seen[i].key);
  free(c.seen);
  fclose(f);
  return rc;
}

int m5_config_load(const char *path, const m5_cfg_item_t *items, size_t n, void *out, char *err,
                   size_t errlen) {
  if (err && errlen) err[0] = '\0';
  clear_all(items, n, out);
  int rc = apply_defaults(items, n, out, err, errlen);
  if (!rc && path) rc = load_file(path, items, n, out, err, errlen);
  if (rc) m5_config_free(items, n, out);
  return rc;
}

void m5_config_free(const m5_cfg_item_t *items, size_t n, void *out) {
  for (size_t i = 0; i < n; i++) {
    void *f = field(out, &items[i]);
    if (items[i].type == M5_CFG_STR) {
      free(*(char **)f);
      *(char **)f = NULL;
    } else if (items[i].type == M5_CFG_STRLIST) {
      strlist_clear((m5_strlist_t *)f);
    }
  }
}

void m5_config_print_help(const m5_cfg_item_t *items, size_t n, void *stream) {
  FILE *fp = stream;
  for (size_t i = 0; i < n; i++) {
    const m5_cfg_item_t *it = &items[i];
    const char *def = it->def && *it->def ? it->def : NULL;
    switch (it->type) {
    case M5_CFG_STR:
      fprintf(fp, "  %s (string", it->key);
      break;
    case M5_CFG_INT:
      fprintf(fp, "  %s (integer %lld..%lld", it->key, (long long)it->min, (long long)it->max);
      break;
    case M5_CFG_BOOL:
      fprintf(fp, "  %s (bool", it->key);
      break;
    case M5_CFG_STRLIST:
      fprintf(fp, "  %s (list", it->key);
      break;
    }
    if (def) {
      fprintf(fp, ", default %s): %s\n", def, it->help ? it->help : "");
    } else {
      fprintf(fp, ", no default): %s\n", it->help ? it->help : "");
    }
  }
}
