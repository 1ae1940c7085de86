/* jansson allocation hooks that wipe what jansson frees (json_wipe.h). */
#include "crypto/json_wipe.h"

#include "crypto/codec.h"

#include <jansson.h>
#include <malloc.h>
#include <stdlib.h>

static void (*release_fn)(void *) = free;

/* malloc_usable_size: the whole block, also bytes past the size jansson asked for that a
 * realloc-free copy (jansson's strbuffer grows by copying) may have written. */
static void wipe_free(void *p) {
  if (!p) return;
  m5_wipe(p, malloc_usable_size(p));
  release_fn(p);
}

void m5_json_wipe_install_with(void (*release)(void *)) {
  release_fn = release ? release : free;
  json_set_alloc_funcs(malloc, wipe_free);
}

void m5_json_wipe_install(void) {
  m5_json_wipe_install_with(NULL);
}

bool m5_json_wipe_installed(void) {
  json_malloc_t m = NULL;
  json_free_t f = NULL;
  json_get_alloc_funcs(&m, &f);
  return m == malloc && f == wipe_free;
}
