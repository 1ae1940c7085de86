/* m5gw's configuration: one YAML file holding the core's keys (the gateway's identity, m5s,
 * the MSGG listener, the spool and its bounds) and the adapter's "<kind>.*" keys, which the
 * adapter declares in m5gw_adapter_ops_t.cfg_items (gw_adapter.h) and the core loads from the
 * same file. docs/gateways.md lists every key. */
#ifndef M5_GATEWAY_GW_CONFIG_H
#define M5_GATEWAY_GW_CONFIG_H

#include "gateway/gw_adapter.h"

#include <stdint.h>
#include <stdio.h>

typedef struct {
  char *gw_id;    /* our identity: SAN URI urn:msgin5g:gw:<gw_id> of tls.cert */
  char *kind;     /* "sms" or "mqtt" (and "loop" in test builds) */
  char *m5s_url;  /* https://host:port of m5s's MSGin5G-2/-4 (its northbound port) */
  char *m5s_name; /* the DNS name or IP m5s's certificate must carry; "" = m5s.url's host */
  char *tls_cert, *tls_key, *tls_ca;
  char *msgg_host;
  int64_t msgg_port;
  char *msgg_cert, *msgg_key; /* "" = var/pki/msgg-<gw_id>.crt / .key */
  int64_t msgg_max_body, msgg_max_inflight;
  char *mgmt_host;
  int64_t mgmt_port;
  char *spool_path;
  int64_t spool_max_msgs, spool_max_bytes;
  int64_t up_window, up_timeout_ms, up_retry_min_ms, up_retry_max_ms, up_max_payload;
  char *log_level;
} m5gw_config_t;

/* What m5gw_config_load fills: the core's keys and the chosen adapter's, in one block. */
typedef struct {
  m5gw_config_t *core;
  const m5gw_adapter_ops_t *ops; /* the kind's adapter */
  void *adapter_cfg;             /* ops->cfg_size bytes inside the same block */
  void *block;
  m5_cfg_item_t *items; /* the merged table the block was loaded with */
  size_t n_items;
} m5gw_cfg_t;

/* Loads path (NULL: defaults, which fail for want of gw_id and kind). 0, or M5_EINVAL / M5_EIO
 * with "FILE:LINE: KEY: what is wrong" in err; on failure out holds nothing. */
int m5gw_config_load(const char *path, m5gw_cfg_t *out, char *err, size_t errlen);
void m5gw_config_free(m5gw_cfg_t *cfg);
/* Every key: the core's, then each built-in adapter's. */
void m5gw_config_print_help(FILE *out);

/* The adapter of a kind, NULL when this build has none (see kinds.c). */
const m5gw_adapter_ops_t *m5gw_kind_ops(const char *kind);
/* "sms, mqtt" as built, for messages. */
const char *m5gw_kinds_built(void);
/* The adapters built into this binary, NULL-terminated. */
extern const m5gw_adapter_ops_t *const m5gw_kinds[];

#endif
