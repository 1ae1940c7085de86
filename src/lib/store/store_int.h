/* What a backend of m5_store (store.h) provides: an m5_store_t header first in its own
 * state, and these operations. */
#ifndef M5_STORE_STORE_INT_H
#define M5_STORE_STORE_INT_H

#include "store.h"

typedef struct {
  int (*submit)(m5_store_t *s, m5_store_job_t *job);
  void (*stats)(m5_store_t *s, m5_store_stats_t *out);
  void (*close)(m5_store_t *s);
} m5_store_ops_t;

struct m5_store {
  const m5_store_ops_t *ops;
};

m5_store_t *m5_store_sqlite_open(const m5_store_opts_t *o, char *err, size_t errlen);
m5_store_t *m5_store_js_open(const m5_store_opts_t *o, char *err, size_t errlen);

#endif
