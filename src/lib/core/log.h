/* Logging with named domains ("aanf", "http", "tls", ...) and secret redaction.
 *
 * One line per call on stderr: "2026-11-29T02:10:00.123Z WARN  http: message". Secrets are
 * never meant to be formatted into logs; as a second line of defence every line passes
 * m5_log_redact() before it is written, which masks values that look like key material. */
#ifndef M5_CORE_LOG_H
#define M5_CORE_LOG_H

#include <stdarg.h>
#include <stddef.h>

typedef enum { M5_LOG_ERROR = 0, M5_LOG_WARN, M5_LOG_INFO, M5_LOG_DEBUG } m5_log_level_t;

/* Parses "error", "warn", "info", "debug"; returns M5_EINVAL for anything else. */
int m5_log_level_parse(const char *name, m5_log_level_t *out);
/* The default level for every domain. */
void m5_log_set_level(m5_log_level_t level);
/* A level for one domain, overriding the default ("tls" -> debug). At most 32 domains. */
int m5_log_set_domain_level(const char *domain, m5_log_level_t level);
int m5_log_enabled(m5_log_level_t level, const char *domain);

void m5_log(m5_log_level_t level, const char *domain, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void m5_logv(m5_log_level_t level, const char *domain, const char *fmt, va_list ap)
    __attribute__((format(printf, 3, 0)));

/* Masks secrets in a NUL-terminated line, in place: every run of 32 or more hex digits, every
 * run of 16 or more two-digit hex pairs split by one of ' ', ':', '-' ("00:01:02..."), and
 * the value after any of the keys kaf, kakma, kausf, k_af, k_akma, k_ausf, psk, secret,
 * password, token, authorization (followed by '=', ':' or '":"'; a quoted value is masked up
 * to its closing quote), becomes "<redacted>". Returns the new length (never longer than the
 * input). */
size_t m5_log_redact(char *line);

/* Tests capture lines through this hook instead of stderr (NULL restores stderr). The sink
 * gets each finished line (redacted, at most 2047 bytes, no trailing newline); calls are
 * serialised. */
void m5_log_set_sink(void (*sink)(const char *line, void *arg), void *arg);

#define M5_LOGE(dom, ...) m5_log(M5_LOG_ERROR, dom, __VA_ARGS__)
#define M5_LOGW(dom, ...) m5_log(M5_LOG_WARN, dom, __VA_ARGS__)
#define M5_LOGI(dom, ...) m5_log(M5_LOG_INFO, dom, __VA_ARGS__)
#define M5_LOGD(dom, ...)                                                                          \
  do {                                                                                             \
    if (m5_log_enabled(M5_LOG_DEBUG, dom)) m5_log(M5_LOG_DEBUG, dom, __VA_ARGS__);                 \
  } while (0)

#endif
