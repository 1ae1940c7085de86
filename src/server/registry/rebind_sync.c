/* Start-up catch-up of the store with the registry's binding generations (rebind_sync.h). */
#include "server/registry/rebind_sync.h"

#include "core/err.h"
#include "core/log.h"
#include "core/loop.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHUNK 1024 /* jobs in flight at once (below the store's queue_cap) */

typedef struct {
  char id[REGISTRY_ID_MAX + 1];
  uint64_t gen;
} gen_row_t;

typedef struct {
  gen_row_t *rows;
  size_t n, cap;
  int oom;
  m5_loop_t *loop;
  size_t waiting;
  uint64_t failed;
  int status;
} sync_t;

static void collect(void *arg, const char *id, uint64_t gen) {
  sync_t *s = arg;
  if (s->oom || strlen(id) > REGISTRY_ID_MAX) return;
  if (s->n == s->cap) {
    size_t ncap = s->cap ? s->cap * 2 : 256;
    gen_row_t *r = realloc(s->rows, ncap * sizeof *r);
    if (!r) {
      s->oom = 1;
      return;
    }
    s->rows = r;
    s->cap = ncap;
  }
  snprintf(s->rows[s->n].id, sizeof s->rows[s->n].id, "%s", id);
  s->rows[s->n].gen = gen;
  s->n++;
}

static void on_reply(void *msg, void *arg) {
  sync_t *s = arg;
  m5_store_job_t *j = msg;
  if (j->status != 0 && s->status == 0) s->status = j->status;
  s->failed += j->rebind_failed;
  if (--s->waiting == 0) m5_loop_stop(s->loop);
}

int rebind_sync(registry_t *reg, m5_store_t *store, char *err, size_t errlen) {
  sync_t s;
  memset(&s, 0, sizeof s);
  /* store.backend jetstream: the same catch-up. The store keeps the generations in KV (P_gens)
   * with a copy on every node, filled before its first job, so a REBIND the cluster has seen
   * already is answered from that copy without a request: only IDs re-bound while no node's
   * store heard of it cost work (docs/store.md "The JetStream backend"). */
  if (registry_gens_foreach(reg, collect, &s) != 0 || s.oom) {
    snprintf(err, errlen, "cannot read the binding generations from the registry");
    free(s.rows);
    return M5_EIO;
  }
  m5_store_job_t *jobs = s.n ? calloc(s.n < CHUNK ? s.n : CHUNK, sizeof *jobs) : NULL;
  s.loop = s.n ? m5_loop_new() : NULL;
  m5_mailbox_t *mb = s.loop ? m5_mailbox_new(s.loop, CHUNK, on_reply, &s) : NULL;
  if (s.n && (!jobs || !mb)) {
    snprintf(err, errlen, "out of memory catching the store up with the registry");
    s.status = M5_ENOMEM;
    goto out;
  }
  for (size_t done = 0; done < s.n && s.status == 0;) {
    size_t k = s.n - done < CHUNK ? s.n - done : CHUNK;
    s.waiting = 0;
    for (size_t i = 0; i < k; i++) {
      m5_store_job_t *j = &jobs[i];
      memset(j, 0, sizeof *j);
      j->op = M5_STORE_REBIND;
      j->base.reply = mb;
      snprintf(j->rcpt.type, sizeof j->rcpt.type, "UE");
      snprintf(j->rcpt.addr, sizeof j->rcpt.addr, "%s", s.rows[done + i].id);
      j->gen = s.rows[done + i].gen;
      if (m5_store_submit(store, j) != 0) {
        s.status = M5_EFULL;
        break;
      }
      s.waiting++;
    }
    if (s.waiting) m5_loop_run(s.loop);
    done += k;
  }
  if (s.status != 0)
    snprintf(err, errlen, "cannot catch the message store up with the registry's bindings: %s",
             m5_strerror(s.status));
  else if (s.failed)
    M5_LOGI("store",
            "%llu queued deliveries of re-bound UE Service IDs failed at start-up "
            "(RECIPIENT_REBOUND)",
            (unsigned long long)s.failed);
out:
  if (mb) m5_mailbox_free(mb, NULL);
  if (s.loop) m5_loop_free(s.loop);
  free(jobs);
  free(s.rows);
  return s.status;
}
