/* YAML configuration: a daemon describes its settings in a table (dotted key, type, default,
 * bounds, where to store it); m5_config_load() fills a struct with the defaults, then with the
 * file's values. Nested YAML mappings flatten to dotted keys ("tls.cert").
 *
 * Every error names the key and the file (and the line): "m5-aanf.yaml:3: tls.port: expected
 * an integer in 1..65535, got 'abc'". Unknown keys are errors, so a typo never goes unnoticed. */
#ifndef M5_CORE_CONFIG_H
#define M5_CORE_CONFIG_H

#include <stddef.h>
#include <stdint.h>

typedef enum {
  M5_CFG_STR,     /* char * (malloc'd; the default is copied) */
  M5_CFG_INT,     /* int64_t, within [min, max] */
  M5_CFG_BOOL,    /* int: true/false, yes/no, on/off */
  M5_CFG_STRLIST, /* m5_strlist_t: a YAML sequence of scalars; default: comma-separated */
} m5_cfg_type_t;

typedef struct {
  char **v; /* n entries, each malloc'd */
  size_t n;
} m5_strlist_t;

typedef struct {
  const char *key; /* dotted path, e.g. "tls.cert" */
  m5_cfg_type_t type;
  size_t offset;    /* offsetof() into the caller's struct */
  const char *def;  /* default as text ("7443", "true", "a,b"); NULL = empty string / list */
  int64_t min, max; /* bounds for M5_CFG_INT */
  const char *help; /* one line for --help and docs */
} m5_cfg_item_t;

/* Fills out with defaults, then with path's values if path is non-NULL. On failure writes a
 * one-line message naming the file, line and key into err and returns M5_EINVAL (bad value,
 * unknown key, not a mapping) or M5_EIO (cannot read the file). */
int m5_config_load(const char *path, const m5_cfg_item_t *items, size_t n, void *out, char *err,
                   size_t errlen);
/* Frees the strings and lists m5_config_load() stored in out. */
void m5_config_free(const m5_cfg_item_t *items, size_t n, void *out);
/* Prints "  key (type, default X): help" lines, for --help. */
void m5_config_print_help(const m5_cfg_item_t *items, size_t n, void *stream /* FILE * */);

#endif
