/* Logging (log.h): per-domain levels, one write(2) per line, secret redaction on every line.
 *
 * Lines are at most M5_LOG_LINE_MAX bytes with the newline, below PIPE_BUF, so a single
 * write(2) is atomic on a pipe and lines from different threads never interleave. Level
 * checks are lock-free (they sit on hot paths through M5_LOGD); only setting a domain level
 * and calling a test sink take a mutex. */
#include "core/log.h"

#include <ctype.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "core/err.h"

#define M5_LOG_LINE_MAX 2048 /* bytes, newline included */
#define LOG_MAX_DOMAINS 32
#define LOG_DOMAIN_LEN 32 /* longest domain name + NUL */
#define REDACTED "<redacted>"
#define REDACTED_LEN (sizeof(REDACTED) - 1)
#define HEX_SECRET_MIN 32 /* 128 bits: the shortest key we derive or hold */

typedef struct {
  char name[LOG_DOMAIN_LEN];
  atomic_int level;
} log_domain_t;

static atomic_int g_default_level = M5_LOG_INFO;
/* Entries [0, g_ndomains) are complete: a name is written before the count publishes it, and
 * is never changed afterwards, so readers need no lock. */
static log_domain_t g_domains[LOG_MAX_DOMAINS];
static atomic_size_t g_ndomains;
static pthread_mutex_t g_domains_mu = PTHREAD_MUTEX_INITIALIZER;

static pthread_mutex_t g_sink_mu = PTHREAD_MUTEX_INITIALIZER;
static void (*g_sink)(const char *line, void *arg);
static void *g_sink_arg;

static const char *const g_level_names[] = {"error", "warn", "info", "debug"};
static const char *const g_level_tags[] = {"ERROR", "WARN ", "INFO ", "DEBUG"};

int m5_log_level_parse(const char *name, m5_log_level_t *out) {
  for (size_t i = 0; i < sizeof(g_level_names) / sizeof(g_level_names[0]); i++) {
    if (name && strcasecmp(name, g_level_names[i]) == 0) {
      *out = (m5_log_level_t)i;
      return M5_OK;
    }
  }
  return M5_EINVAL;
}

void m5_log_set_level(m5_log_level_t level) {
  atomic_store(&g_default_level, (int)level);
}

static log_domain_t *domain_find(const char *domain, size_t n) {
  for (size_t i = 0; i < n; i++) {
    if (strcmp(g_domains[i].name, domain) == 0) return &g_domains[i];
  }
  return NULL;
}

int m5_log_set_domain_level(const char *domain, m5_log_level_t level) {
  if (!domain || !*domain || strlen(domain) >= LOG_DOMAIN_LEN) return M5_EINVAL;
  int rc = M5_OK;
  pthread_mutex_lock(&g_domains_mu);
  size_t n = atomic_load(&g_ndomains);
  log_domain_t *d = domain_find(domain, n);
  if (d) {
    atomic_store(&d->level, (int)level);
  } else if (n == LOG_MAX_DOMAINS) {
    rc = M5_EFULL;
  } else {
    strcpy(g_domains[n].name, domain);
    atomic_store(&g_domains[n].level, (int)level);
    atomic_store(&g_ndomains, n + 1);
  }
  pthread_mutex_unlock(&g_domains_mu);
  return rc;
}

int m5_log_enabled(m5_log_level_t level, const char *domain) {
  int limit = atomic_load(&g_default_level);
  if (domain) {
    log_domain_t *d = domain_find(domain, atomic_load(&g_ndomains));
    if (d) limit = atomic_load(&d->level);
  }
  return (int)level <= limit;
}

void m5_log_set_sink(void (*sink)(const char *line, void *arg), void *arg) {
  pthread_mutex_lock(&g_sink_mu);
  g_sink = sink;
  g_sink_arg = arg;
  pthread_mutex_unlock(&g_sink_mu);
}

/* ---- redaction ---- */

/* "k_ausf" too: K_AUSF is as secret as K_AKMA, and its value need not be hex. "authorization"
 * stays last (match_secret_key tells it by its index). */
static const char *const g_secret_keys[] = {"kaf",      "kakma",  "kausf",        "k_af",
                                            "k_akma",   "k_ausf", "psk",          "secret",
                                            "password", "token",  "authorization"};
/* HTTP authorization schemes: the credentials follow the scheme after a space. */
static const char *const g_auth_schemes[] = {"bearer", "basic", "dpop", "digest"};

static int is_value_end(char c) {
  return c == '\0' || isspace((unsigned char)c) || c == '"' || c == '\'' || c == ',' || c == '&' ||
         c == '}';
}

/* Length of a quote at s: '"' or '\'', or one escaped with a backslash as in JSON text that
 * was itself put in a JSON string ("{\"kaf\":\"...\"}"); 0 if there is none. */
static size_t quote_len(const char *s) {
  if (s[0] == '"' || s[0] == '\'') return 1;
  if (s[0] == '\\' && (s[1] == '"' || s[1] == '\'')) return 2;
  return 0;
}

/* If a secret key starts at s and is followed by its separator ("=", ":", "\":\"", with
 * optional spaces and quotes), returns the offset of the value; 0 otherwise. *is_auth tells
 * whether the key was "authorization"; *quote is the value's opening quote (its length is
 * *quote_n), so that the whole quoted value is masked, spaces included; *quote_n = 0 when the
 * value is bare. */
static size_t match_secret_key(const char *s, int *is_auth, const char **quote, size_t *quote_n) {
  for (size_t k = 0; k < sizeof(g_secret_keys) / sizeof(g_secret_keys[0]); k++) {
    size_t kl = strlen(g_secret_keys[k]);
    if (strncasecmp(s, g_secret_keys[k], kl) != 0) continue;
    size_t i = kl;
    i += quote_len(s + i);
    while (s[i] == ' ' || s[i] == '\t')
      i++;
    if (s[i] != '=' && s[i] != ':') continue;
    i++;
    while (s[i] == ' ' || s[i] == '\t')
      i++;
    *quote_n = quote_len(s + i);
    *quote = s + i;
    i += *quote_n;
    *is_auth = (k == sizeof(g_secret_keys) / sizeof(g_secret_keys[0]) - 1);
    return i;
  }
  return 0;
}

/* Length of the value at s: up to the closing quote (quote/quote_n as match_secret_key gave
 * them), or to the first separator when the value is bare. */
static size_t value_len(const char *s, const char *quote, size_t quote_n) {
  size_t n = 0;
  if (quote_n) {
    while (s[n] && strncmp(s + n, quote, quote_n) != 0)
      n++;
    return n;
  }
  while (!is_value_end(s[n]))
    n++;
  return n;
}

/* Bytes written as hex pairs with a separator ("00 01 02 ...", "00:01:02:..." as key dumps
 * and fingerprints print them): the length of such a run of at least HEX_SECRET_MIN / 2 pairs
 * at s, else 0. Every pair is exactly two digits and the separator is the same throughout, so
 * dates, times, UUIDs, MAC and IPv6 addresses do not qualify. */
static size_t hex_pairs_len(const char *s) {
  char sep = s[2];
  if (sep != ' ' && sep != ':' && sep != '-') return 0;
  size_t pairs = 0, end = 0;
  for (size_t i = 0;; i = end + 1) {
    if (!isxdigit((unsigned char)s[i]) || !isxdigit((unsigned char)s[i + 1]) ||
        isxdigit((unsigned char)s[i + 2]))
      break;
    pairs++;
    end = i + 2; /* just past this pair */
    if (s[end] != sep) break;
  }
  return pairs >= HEX_SECRET_MIN / 2 ? end : 0;
}

/* Length of an authorization scheme word plus the spaces after it at s, if one is there and
 * credentials follow; 0 otherwise. */
static size_t auth_scheme_len(const char *s) {
  for (size_t k = 0; k < sizeof(g_auth_schemes) / sizeof(g_auth_schemes[0]); k++) {
    size_t kl = strlen(g_auth_schemes[k]);
    if (strncasecmp(s, g_auth_schemes[k], kl) != 0 || s[kl] != ' ') continue;
    size_t i = kl;
    while (s[i] == ' ')
      i++;
    if (!is_value_end(s[i])) return i;
  }
  return 0;
}

/* Writes the mask for a secret of n bytes at line + w. The mask is never longer than what it
 * replaces (the line is rewritten in place), so values shorter than "<redacted>" become stars. */
static size_t put_mask(char *line, size_t w, size_t n) {
  if (n >= REDACTED_LEN) {
    memcpy(line + w, REDACTED, REDACTED_LEN);
    return REDACTED_LEN;
  }
  memset(line + w, '*', n);
  return n;
}

size_t m5_log_redact(char *line) {
  size_t r = 0, w = 0; /* read and write positions; w <= r throughout */
  while (line[r]) {
    int is_auth = 0;
    const char *quote = NULL;
    size_t quote_n = 0;
    size_t v = match_secret_key(line + r, &is_auth, &quote, &quote_n);
    if (v) {
      /* The quote is copied with the key, so remember it as text before the memmove. */
      char q[2] = {quote_n ? quote[0] : 0, quote_n > 1 ? quote[1] : 0};
      memmove(line + w, line + r, v);
      w += v;
      r += v;
      if (is_auth) {
        size_t sl = auth_scheme_len(line + r);
        memmove(line + w, line + r, sl);
        w += sl;
        r += sl;
      }
      size_t n = value_len(line + r, q, quote_n);
      w += put_mask(line, w, n);
      r += n;
      continue;
    }
    size_t h = 0;
    while (isxdigit((unsigned char)line[r + h]))
      h++;
    if (h >= HEX_SECRET_MIN) {
      w += put_mask(line, w, h);
      r += h;
      continue;
    }
    size_t hp = h == 2 ? hex_pairs_len(line + r) : 0;
    if (hp) {
      w += put_mask(line, w, hp);
      r += hp;
      continue;
    }
    /* One byte at a time, so a key starting inside a short hex run ("a" of "authorization")
     * is still seen; a suffix of a short run is shorter still, so no secret is missed. */
    line[w++] = line[r++];
  }
  line[w] = '\0';
  return w;
}

/* ---- writing ---- */

/* "2026-11-29T02:10:00.123Z" (24 characters) into out[32]. */
static void format_time(char out[32]) {
  struct timespec ts;
  struct tm tm;
  clock_gettime(CLOCK_REALTIME, &ts);
  gmtime_r(&ts.tv_sec, &tm);
  size_t n = strftime(out, 32, "%Y-%m-%dT%H:%M:%S", &tm);
  snprintf(out + n, 32 - n, ".%03uZ", (unsigned)(ts.tv_nsec / 1000000) % 1000u);
}

/* Makes the text one line: trailing newlines go, other control characters become '?' so a
 * peer's input cannot forge extra log lines. */
static void sanitize(char *s) {
  size_t n = strlen(s);
  while (n > 0 && (s[n - 1] == '\n' || s[n - 1] == '\r'))
    s[--n] = '\0';
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    if ((c < 0x20 && c != '\t') || c == 0x7f) s[i] = '?';
  }
}

static void emit(char *line, size_t len) {
  pthread_mutex_lock(&g_sink_mu);
  if (g_sink) {
    g_sink(line, g_sink_arg);
    pthread_mutex_unlock(&g_sink_mu);
    return;
  }
  pthread_mutex_unlock(&g_sink_mu);
  line[len++] = '\n';
  size_t off = 0;
  while (off < len) {
    ssize_t n = write(STDERR_FILENO, line + off, len - off);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return; /* nowhere left to report a failing stderr */
    off += (size_t)n;
  }
}

void m5_logv(m5_log_level_t level, const char *domain, const char *fmt, va_list ap) {
  if (!m5_log_enabled(level, domain)) return;
  int saved_errno = errno; /* callers log and then look at errno */
  char stack[M5_LOG_LINE_MAX + 1];
  char ts[32];
  format_time(ts);
  unsigned lv = (unsigned)level < 4 ? (unsigned)level : 3u;
  int p = snprintf(stack, sizeof(stack), "%s %s %s: ", ts, g_level_tags[lv], domain ? domain : "-");
  if (p < 0 || (size_t)p >= sizeof(stack)) p = 0; /* absurd domain: the message still goes out */
  size_t prefix = (size_t)p;

  /* A line too long for the stack buffer is formatted whole on the heap so that redaction
   * sees every secret complete before the line is cut. */
  char *line = stack;
  char *heap = NULL;
  va_list ap2;
  va_copy(ap2, ap);
  int m = vsnprintf(stack + prefix, sizeof(stack) - prefix, fmt, ap);
  if (m < 0) {
    snprintf(stack + prefix, sizeof(stack) - prefix, "<bad log format>");
  } else if ((size_t)m >= sizeof(stack) - prefix) {
    heap = malloc(prefix + (size_t)m + 1);
    if (heap) {
      memcpy(heap, stack, prefix);
      vsnprintf(heap + prefix, (size_t)m + 1, fmt, ap2);
      line = heap;
    } else {
      snprintf(stack + prefix, sizeof(stack) - prefix, "<log line dropped: out of memory>");
    }
  }
  va_end(ap2);

  sanitize(line + prefix);
  size_t len = m5_log_redact(line);
  if (len > M5_LOG_LINE_MAX - 1) {
    size_t cut = M5_LOG_LINE_MAX - 4;
    while (cut > prefix && ((unsigned char)line[cut] & 0xC0) == 0x80)
      cut--; /* UTF-8 boundary */
    memcpy(line + cut, "...", 4);
    len = cut + 3;
  }
  if (heap) {
    memcpy(stack, heap, len + 1);
    free(heap);
  }
  emit(stack, len);
  errno = saved_errno;
}

void m5_log(m5_log_level_t level, const char *domain, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  m5_logv(level, domain, fmt, ap);
  va_end(ap);
}
