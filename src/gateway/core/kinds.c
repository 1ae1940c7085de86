/* The kinds of gateway this m5gw binary was built with, and their adapters (gw_adapter.h).
 * The SMS and MQTT adapters live in src/gateway/sms/ and src/gateway/mqtt/; the build defines
 * M5GW_HAVE_SMS / M5GW_HAVE_MQTT only for those present, so the core builds with either, both
 * or neither. The "loop" kind (gw_loop_adapter.c) exists in test builds only (M5_TEST_HOOKS). */
#include "gateway/core/gw_config.h"

#include <string.h>

#ifdef M5_TEST_HOOKS
extern const m5gw_adapter_ops_t m5gw_loop_adapter;
#endif

const m5gw_adapter_ops_t *const m5gw_kinds[] = {
#ifdef M5GW_HAVE_SMS
    &m5gw_sms_adapter,
#endif
#ifdef M5GW_HAVE_MQTT
    &m5gw_mqtt_adapter,
#endif
#ifdef M5_TEST_HOOKS
    &m5gw_loop_adapter,
#endif
    NULL};

const m5gw_adapter_ops_t *m5gw_kind_ops(const char *kind) {
  for (size_t i = 0; kind && m5gw_kinds[i]; i++)
    if (!strcmp(m5gw_kinds[i]->kind, kind)) return m5gw_kinds[i];
  return NULL;
}

const char *m5gw_kinds_built(void) {
  static char text[64];
  size_t off = 0;
  text[0] = '\0';
  for (size_t i = 0; m5gw_kinds[i] && off + 1 < sizeof text; i++) {
    size_t n = strlen(m5gw_kinds[i]->kind);
    if (off + n + 3 > sizeof text) break;
    if (off) {
      memcpy(text + off, ", ", 2);
      off += 2;
    }
    memcpy(text + off, m5gw_kinds[i]->kind, n + 1);
    off += n;
  }
  return off ? text : "none";
}
