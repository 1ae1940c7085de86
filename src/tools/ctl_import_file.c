/* m5ctl subscriber import: reading and checking the subscriber file (ctl_import_file.h). K_AUSF
 * passes through three places here, each wiped: the stream's buffer (ours, via setvbuf), the
 * line buffer and the entries, which grow by copy-and-wipe rather than realloc (realloc would
 * leave the old block's keys in freed memory). */
#include "ctl_import_file.h"

#include "core/err.h"
#include "crypto/codec.h"

#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define KEY_HEX_LEN (2 * M5_AKMA_KEY_LEN)
#define WHY_MAX 160

static int is_blank(char c) {
  return c == ' ' || c == '\t';
}

/* The next field of *p (up to a blank or the end) as [*start, *len); 0 when there is none. */
static int next_field(const char **p, const char **start, size_t *len) {
  const char *s = *p;
  while (is_blank(*s))
    s++;
  if (!*s) return 0;
  const char *e = s;
  while (*e && !is_blank(*e))
    e++;
  *start = s;
  *len = (size_t)(e - s);
  *p = e;
  return 1;
}

static int fail(char *why, size_t cap, const char *text) {
  snprintf(why, cap, "%s", text);
  return -1;
}

int m5ctl_import_parse_line(const char *line, m5ctl_import_entry_t *e, char *why, size_t cap) {
  size_t n = strlen(line);
  if (n && line[n - 1] == '\r') n--; /* a file written on Windows */
  char text[M5CTL_IMPORT_LINE_MAX + 1];
  if (n > M5CTL_IMPORT_LINE_MAX) return fail(why, cap, "line too long");
  memcpy(text, line, n);
  text[n] = '\0';
  const char *p = text, *f[3];
  size_t len[3];
  int nf = 0, rc = -1;
  while (nf < 3 && next_field(&p, &f[nf], &len[nf])) {
    if (nf == 0 && f[0][0] == '#') break; /* a comment line */
    nf++;
  }
  if (nf == 0) { /* blank, or a comment */
    rc = 0;
    goto out;
  }
  const char *extra;
  size_t extra_len;
  if (nf < 3) {
    fail(why, cap,
         nf == 1 ? "missing K_AUSF and ueSvcId (expected: SUPI K_AUSF ueSvcId)"
                 : "missing ueSvcId (expected: SUPI K_AUSF ueSvcId)");
    goto out;
  }
  if (next_field(&p, &extra, &extra_len) && extra[0] != '#') {
    fail(why, cap, "unexpected fourth field (expected: SUPI K_AUSF ueSvcId; '#' starts a comment)");
    goto out;
  }
  memset(e, 0, sizeof *e);
  if (len[0] >= sizeof e->supi) {
    fail(why, cap, "supi: expected the IMSI as 5 to 15 digits (no 'imsi-' prefix)");
    goto out;
  }
  memcpy(e->supi, f[0], len[0]);
  if (m5_akma_supi_valid(e->supi)) {
    fail(why, cap, "supi: expected the IMSI as 5 to 15 digits (no 'imsi-' prefix)");
    goto out;
  }
  size_t got = 0;
  if (len[1] != KEY_HEX_LEN) {
    snprintf(why, cap, "kausf: expected %d hex digits, got %zu characters", KEY_HEX_LEN, len[1]);
    goto out;
  }
  char hex[KEY_HEX_LEN + 1];
  memcpy(hex, f[1], KEY_HEX_LEN);
  hex[KEY_HEX_LEN] = '\0';
  int bad = m5_hex_decode(hex, e->kausf, sizeof e->kausf, &got) != 0 || got != sizeof e->kausf;
  m5_wipe(hex, sizeof hex);
  if (bad) {
    fail(why, cap, "kausf: expected 64 hex digits, found a non-hex character");
    goto out;
  }
  if (len[2] > M5_MSG_ADDR_MAX) {
    snprintf(why, cap, "ueSvcId: longer than %d characters", M5_MSG_ADDR_MAX);
    goto out;
  }
  memcpy(e->ue_svc_id, f[2], len[2]);
  e->ue_svc_id[len[2]] = '\0';
  if (!m5_msg_svc_id_valid(e->ue_svc_id)) {
    fail(why, cap, "ueSvcId: expected 1-128 printable ASCII characters without spaces");
    goto out;
  }
  rc = 1;
out:
  if (rc < 0) m5_wipe(e, sizeof *e);
  m5_wipe(text, sizeof text);
  return rc;
}

/* ---- the whole file ---- */

typedef struct {
  uint32_t line;
  char why[WHY_MAX];
} bad_line_t;

typedef struct {
  bad_line_t *v;
  size_t n, cap, more; /* more: bad lines beyond what is stored */
} bad_list_t;

static void bad_add(bad_list_t *b, uint32_t line, const char *why) {
  if (b->n == b->cap) {
    size_t cap = b->cap ? 2 * b->cap : 64;
    bad_line_t *v = cap <= M5CTL_IMPORT_MAX ? realloc(b->v, cap * sizeof *v) : NULL;
    if (!v) {
      b->more++;
      return;
    }
    b->v = v;
    b->cap = cap;
  }
  b->v[b->n].line = line;
  snprintf(b->v[b->n].why, WHY_MAX, "%s", why);
  b->n++;
}

static int entry_add(m5ctl_import_list_t *l, const m5ctl_import_entry_t *e) {
  if (l->n == l->cap) {
    size_t cap = l->cap ? 2 * l->cap : 256;
    m5ctl_import_entry_t *v = malloc(cap * sizeof *v);
    if (!v) return M5_ENOMEM;
    if (l->n) memcpy(v, l->v, l->n * sizeof *v);
    if (l->v) m5_wipe(l->v, l->cap * sizeof *l->v);
    free(l->v);
    l->v = v;
    l->cap = cap;
  }
  l->v[l->n++] = *e;
  return 0;
}

void m5ctl_import_list_free(m5ctl_import_list_t *l) {
  if (l->v) m5_wipe(l->v, l->cap * sizeof *l->v);
  free(l->v);
  memset(l, 0, sizeof *l);
}

/* Duplicates: entries sorted by the field, then by line, so the first occurrence comes first. */
static size_t sort_off; /* of the field compared, for qsort's comparator */

static int by_field(const void *a, const void *b) {
  const m5ctl_import_entry_t *x = *(const m5ctl_import_entry_t *const *)a;
  const m5ctl_import_entry_t *y = *(const m5ctl_import_entry_t *const *)b;
  int c = strcmp((const char *)x + sort_off, (const char *)y + sort_off);
  return c ? c : (x->line > y->line) - (x->line < y->line);
}

static int find_duplicates(const m5ctl_import_list_t *l, size_t off, const char *what,
                           bad_list_t *bad) {
  if (l->n < 2) return 0;
  const m5ctl_import_entry_t **v = malloc(l->n * sizeof *v);
  if (!v) return M5_ENOMEM;
  for (size_t i = 0; i < l->n; i++)
    v[i] = &l->v[i];
  sort_off = off;
  qsort(v, l->n, sizeof *v, by_field);
  char why[WHY_MAX];
  for (size_t i = 1, first = 0; i < l->n; i++) {
    if (strcmp((const char *)v[i] + off, (const char *)v[first] + off) != 0) {
      first = i;
      continue;
    }
    snprintf(why, sizeof why, "%s %s given twice (first on line %u)", what,
             (const char *)v[i] + off, v[first]->line);
    bad_add(bad, v[i]->line, why);
  }
  free(v);
  return 0;
}

static int by_line(const void *a, const void *b) {
  const bad_line_t *x = a, *y = b;
  return (x->line > y->line) - (x->line < y->line);
}

/* Reads the lines; 0, or M5_EIO/M5_ENOMEM after printing. */
static int read_lines(FILE *f, const char *name, FILE *err, m5ctl_import_list_t *list,
                      bad_list_t *bad) {
  char buf[M5CTL_IMPORT_LINE_MAX + 3], why[WHY_MAX];
  m5ctl_import_entry_t e;
  uint32_t line = 0;
  int rc = 0, too_long = 0;
  while (rc == 0 && fgets(buf, sizeof buf, f)) {
    size_t n = strlen(buf);
    int whole = n > 0 && buf[n - 1] == '\n';
    if (too_long) { /* the rest of a line already refused */
      too_long = !whole;
      continue;
    }
    if (line == UINT32_MAX) {
      fprintf(err, "m5ctl: %s: too many lines\n", name);
      rc = M5_EINVAL;
      break;
    }
    line++;
    if (whole) buf[--n] = '\0';
    if (!whole && !feof(f)) { /* longer than the buffer */
      too_long = 1;
      bad_add(bad, line, "line too long");
      continue;
    }
    int r = m5ctl_import_parse_line(buf, &e, why, sizeof why);
    if (r < 0) {
      bad_add(bad, line, why);
    } else if (r > 0 && list->n >= M5CTL_IMPORT_MAX) {
      fprintf(err, "m5ctl: %s:%u: more than %d subscribers; split the file\n", name, line,
              M5CTL_IMPORT_MAX);
      rc = M5_EINVAL;
    } else if (r > 0) {
      e.line = line;
      if ((rc = entry_add(list, &e)) != 0) fprintf(err, "m5ctl: %s: out of memory\n", name);
    }
  }
  if (rc == 0 && ferror(f)) {
    fprintf(err, "m5ctl: %s: cannot read: %s\n", name, strerror(errno));
    rc = M5_EIO;
  }
  m5_wipe(buf, sizeof buf);
  m5_wipe(&e, sizeof e);
  return rc;
}

int m5ctl_import_read(const char *path, FILE *err, m5ctl_import_list_t *list) {
  static char iobuf[65536]; /* stdio's copy of the file: ours, so that it can be wiped */
  const char *name = path;
  int in = !strcmp(path, "-");
  /* stdin through a duplicate of its descriptor, so that closing the stream frees our buffer
   * whatever the input is. */
  int fd = in ? dup(STDIN_FILENO) : -1;
  FILE *f = in ? (fd >= 0 ? fdopen(fd, "r") : NULL) : fopen(path, "r");
  if (!f) {
    fprintf(err, "m5ctl: cannot open %s: %s\n", in ? "standard input" : path, strerror(errno));
    if (fd >= 0) close(fd);
    return M5_EIO;
  }
  bad_list_t bad = {0};
  setvbuf(f, iobuf, _IOFBF, sizeof iobuf);
  int rc = read_lines(f, name, err, list, &bad);
  fclose(f);
  m5_wipe(iobuf, sizeof iobuf);
  if (rc == 0) rc = find_duplicates(list, offsetof(m5ctl_import_entry_t, supi), "supi", &bad);
  if (rc == 0)
    rc = find_duplicates(list, offsetof(m5ctl_import_entry_t, ue_svc_id), "ueSvcId", &bad);
  if (rc == M5_ENOMEM) fprintf(err, "m5ctl: %s: out of memory\n", name);
  if (rc == 0 && (bad.n || bad.more)) {
    if (bad.n) qsort(bad.v, bad.n, sizeof *bad.v, by_line);
    size_t shown = bad.n < M5CTL_IMPORT_ERRORS_SHOWN ? bad.n : M5CTL_IMPORT_ERRORS_SHOWN;
    for (size_t i = 0; i < shown; i++)
      fprintf(err, "%s:%u: %s\n", name, bad.v[i].line, bad.v[i].why);
    if (bad.n + bad.more > shown)
      fprintf(err, "%s: %zu more bad line%s\n", name, bad.n + bad.more - shown,
              bad.n + bad.more - shown == 1 ? "" : "s");
    fprintf(err, "m5ctl: %s: refused (%zu bad line%s); nothing was sent\n", name, bad.n + bad.more,
            bad.n + bad.more == 1 ? "" : "s");
    rc = M5_EINVAL;
  }
  free(bad.v);
  if (rc != 0) m5ctl_import_list_free(list);
  return rc;
}
