/* jansson allocation hooks that wipe what jansson frees. Key material travels through jansson
 * as text (K_AF and K_AKMA in hex in the Naanf_AKMA bodies m5s, m5-aanf and m5ctl parse or
 * build); jansson frees those strings, and its lexer's scratch buffers that hold the same
 * text, with its free hook. Installed once at process start, before any JSON is handled, by
 * every program that parses or builds such bodies (m5s, m5-aanf, m5ctl). */
#ifndef M5_CRYPTO_JSON_WIPE_H
#define M5_CRYPTO_JSON_WIPE_H

#include <stdbool.h>

/* Makes jansson allocate with malloc and wipe every block (its usable size) before freeing
 * it. Not thread-safe: call before any thread uses jansson. */
void m5_json_wipe_install(void);

/* The same, with the wiped block handed to release (NULL: free) instead of free: a test sees
 * each block after the wipe, before it is released. */
void m5_json_wipe_install_with(void (*release)(void *));

/* Whether jansson's hooks are the wiping ones now. */
bool m5_json_wipe_installed(void);

#endif
