/* Internals shared by the SMS adapter's two halves: gw_sms.c (the adapter: configuration,
 * MSISDN <-> UE Service ID mapping, downlink jobs, mobile-originated messages, receipts and
 * reports) and sms_link.c (the SMPP 3.4 session with the SMSC: TCP on the loop, bind,
 * enquire_link, the submit window, throttling, response timeouts, reconnection). */
#ifndef M5_GATEWAY_SMS_INT_H
#define M5_GATEWAY_SMS_INT_H

#include "gw_adapter.h"

#include "core/buf.h"
#include "core/hmap.h"
#include "sms_codec.h"
#include "smpp_pdu.h"

#include <stdbool.h>
#include <stdint.h>

#define SMS_DOM "sms"

typedef struct {
  char *host;
  int64_t port;
  char *system_id, *password, *system_type;
  m5_strlist_t devices; /* "MSISDN=ueSvcId" */
  m5_strlist_t routes;  /* "ADDR=TYPE:ID" */
  char *source_addr;
  int64_t window, enquire_link_ms, response_timeout_ms, reconnect_min_ms, reconnect_max_ms;
  int64_t throttle_retry_ms, throttle_retries, max_parts, reassembly_timeout_ms, max_pending_mo;
  int64_t receipts_max, receipt_ttl_s, queue_max;
  int report_to_device, register_devices;
} sms_cfg_t;

typedef struct sms sms_t;
typedef struct sms_job sms_job_t;

/* One SMS of a downlink job (or of a report to a device). */
typedef struct sms_part {
  struct sms_part *next; /* in the send queue or the in-flight list */
  sms_job_t *job;
  uint8_t idx;
  uint8_t sm[M5_SMS_UDH_CONCAT + 160];
  uint8_t sm_len;
  uint8_t throttles;
  uint32_t seq;
  uint64_t deadline_ms, not_before_ms;
} sms_part_t;

typedef struct sms_rcpt sms_rcpt_t;

struct sms_job {
  sms_t *s;
  m5gw_dl_fn done; /* NULL for a report to a device */
  void *arg;
  char msisdn[21];
  char src[21];
  bool src_msisdn; /* src is one of our devices' MSISDNs */
  uint8_t dc, esm, registered_delivery;
  uint8_t n_parts, n_acked;
  unsigned inflight; /* parts sent and not answered */
  bool finished;     /* done has been (or is being) called */
  m5gw_dl_result_t result;
  char reason[160];
  m5_defer_t defer;
  sms_rcpt_t *rcpt; /* receipts expected (report_requested) */
  sms_part_t *parts;
  struct sms_job *next; /* all jobs */
};

typedef enum { LINK_DOWN, LINK_CONNECTING, LINK_BINDING, LINK_BOUND } sms_link_state_t;

struct sms {
  m5_loop_t *loop;
  const sms_cfg_t *cfg;
  m5gw_core_t *core;
  m5_hmap_t *by_msisdn, *by_ue;         /* char * -> char * (the other side) */
  m5_hmap_t *route_by_addr, *route_by_id; /* "ADDR" <-> "TYPE:ID" */
  /* the link */
  int fd;
  sms_link_state_t st;
  uint64_t gen; /* counts connections: a sequence number belongs to one */
  uint32_t next_seq;
  m5_buf_t in, out;
  uint64_t backoff_ms, deadline_ms, last_rx_ms, enq_sent_ms;
  uint32_t bind_seq, enq_seq;
  uint64_t throttle_until_ms;
  bool out_stuck;
  m5_timer_id_t t_tick, t_reconnect;
  /* downlink */
  sms_part_t *q_head, *q_tail; /* waiting to be sent */
  sms_part_t *inflight;        /* sent, submit_sm_resp awaited */
  unsigned n_inflight, n_queued;
  sms_job_t *jobs;
  uint8_t next_ref;
  /* uplink and receipts: gw_sms.c */
  struct sms_mo *mo;    /* waiting for m5s (deliver_sm_resp held) */
  unsigned n_mo;
  struct sms_mo *answered; /* m5s answered them with their connection gone: newest first */
  unsigned n_answered;
  struct sms_rs *rs;    /* concatenated SMS being reassembled */
  unsigned n_rs;
  m5_hmap_t *rcpt_by_id; /* SMSC message_id -> sms_rcpt_t */
  sms_rcpt_t *rcpt_head, *rcpt_tail;
  unsigned n_rcpt_ids;
  struct sms_reg *reg;
  m5_timer_id_t t_reg;
  uint64_t reg_backoff_ms;
  bool stopping;
};

/* A device message waiting for m5s (deliver_sm_resp held). */
typedef struct sms_mo {
  struct sms_mo *next;
  sms_t *s; /* NULL once the adapter stopped */
  char msg_id[25];
  uint64_t gen; /* the connection its sequence numbers belong to */
  uint8_t *key; /* msisdn, dest, data_coding and the raw content: a redelivery's identity */
  size_t keylen;
  unsigned n_seqs;
  uint32_t seqs[M5_SMS_MAX_PARTS];
  uint32_t status;     /* in s->answered: m5s's answer, for the SMSC's redelivery */
  uint64_t expires_ms; /* in s->answered: forgotten then */
} sms_mo_t;

/* A concatenated SMS being reassembled. */
typedef struct sms_rs {
  struct sms_rs *next;
  char msisdn[22], dest[22];
  uint16_t ref;
  uint8_t total, have, dc;
  bool report;
  uint64_t deadline_ms;
  struct {
    uint8_t *data;
    uint16_t len;
    uint32_t seq;
  } part[];
} sms_rs_t;

/* Delivery receipts awaited for one downlink message. */
struct sms_rcpt {
  sms_rcpt_t *prev, *next;
  sms_t *s;
  sms_job_t *job; /* while its parts are being submitted */
  char *msg_id, *ori_type, *ori_addr, *ue;
  unsigned n_parts, n_final;
  char **ids;
  unsigned n_ids;
  bool failed, expired, job_done;
  char cause[160];
  uint64_t expires_ms;
};

/* sms_link.c */
void sms_link_start(sms_t *s);
void sms_link_stop(sms_t *s);
void sms_link_close(sms_t *s, const char *why); /* drop the connection, reconnect later */
void sms_link_pump(sms_t *s);                    /* sends what the window allows */
int sms_link_send(sms_t *s, const uint8_t *pdu, size_t len);
uint32_t sms_link_seq(sms_t *s);
void sms_link_send_hdr(sms_t *s, uint32_t id, uint32_t status, uint32_t seq);
void sms_link_queue(sms_t *s, sms_part_t *p, bool front);

/* gw_sms.c, called by the link */
void sms_on_deliver_sm(sms_t *s, const m5_smpp_hdr_t *h, const uint8_t *pdu);
void sms_on_submit_resp(sms_t *s, sms_part_t *p, uint32_t status, const char *smsc_id);
void sms_on_link_down(sms_t *s);
void sms_on_bound(sms_t *s);
void sms_tick(sms_t *s, uint64_t now);

/* sms_up.c */
const char *sms_norm_addr(const char *a); /* without a leading '+' */
void sms_resp(sms_t *s, uint32_t seq, uint32_t status); /* deliver_sm_resp */
sms_rcpt_t *sms_rcpt_new(sms_t *s, const m5gw_msg_t *m, unsigned n_parts);
void sms_rcpt_map(sms_t *s, sms_rcpt_t *r, const char *smsc_id);
void sms_rcpt_free(sms_t *s, sms_rcpt_t *r);
int sms_rcpt_report(sms_t *s, sms_rcpt_t *r, bool failed, const char *cause);
void sms_up_tick(sms_t *s, uint64_t now);
void sms_up_link_down(sms_t *s);
void sms_up_stop(sms_t *s);

#endif
