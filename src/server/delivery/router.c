/* Session directory and worker mailboxes (see router.h). */
#include "server/delivery/router.h"

#include "core/err.h"
#include "core/hmap.h"
#include "server/test_hooks.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
  m5_mailbox_t *inbox;
  m5_mailbox_t *results;
} worker_boxes_t;

struct router {
  pthread_mutex_t lock;
  m5_hmap_t *map; /* ue_svc_id -> router_loc_t */
  worker_boxes_t *w;
  size_t n_workers;
};

router_msg_t *router_msg_new(router_kind_t kind) {
  router_msg_t *m = calloc(1, sizeof *m);
  if (m) m->kind = kind;
  return m;
}

void router_msg_free(router_msg_t *m) {
  if (!m) return;
  free(m->body);
  free(m);
}

router_t *router_new(size_t n_workers) {
  router_t *r = calloc(1, sizeof *r);
  if (!r) return NULL;
  r->w = calloc(n_workers ? n_workers : 1, sizeof *r->w);
  r->map = m5_hmap_new();
  if (!r->w || !r->map || pthread_mutex_init(&r->lock, NULL) != 0) {
    free(r->w);
    m5_hmap_free(r->map, NULL);
    free(r);
    return NULL;
  }
  r->n_workers = n_workers;
  return r;
}

static void free_loc(void *v) {
  free(v);
}

void router_free(router_t *r) {
  if (!r) return;
  m5_hmap_free(r->map, free_loc);
  pthread_mutex_destroy(&r->lock);
  free(r->w);
  free(r);
}

int router_attach(router_t *r, unsigned worker, m5_mailbox_t *inbox, m5_mailbox_t *results) {
  if (worker >= r->n_workers) return M5_ENOENT;
  r->w[worker].inbox = inbox;
  r->w[worker].results = results;
  return 0;
}

int router_bind(router_t *r, const char *ue_svc_id, router_loc_t loc, router_loc_t *old) {
  size_t klen = strlen(ue_svc_id);
  int rc = 0;
  pthread_mutex_lock(&r->lock);
  router_loc_t *cur = m5_hmap_get(r->map, ue_svc_id, klen);
  if (cur) {
    if (cur->sid != loc.sid || cur->worker != loc.worker) {
      if (old) *old = *cur;
      rc = 1;
    }
    *cur = loc;
  } else {
    router_loc_t *l = malloc(sizeof *l);
    if (!l) {
      rc = M5_ENOMEM;
    } else {
      *l = loc;
      if (m5_hmap_put(r->map, ue_svc_id, klen, l, NULL) != 0) {
        free(l);
        rc = M5_ENOMEM;
      }
    }
  }
  pthread_mutex_unlock(&r->lock);
  return rc;
}

int router_unbind(router_t *r, const char *ue_svc_id, uint64_t sid) {
  size_t klen = strlen(ue_svc_id);
  router_loc_t *gone = NULL;
  pthread_mutex_lock(&r->lock);
  router_loc_t *cur = m5_hmap_get(r->map, ue_svc_id, klen);
  if (cur && cur->sid == sid) gone = m5_hmap_del(r->map, ue_svc_id, klen);
  pthread_mutex_unlock(&r->lock);
  free(gone);
  return gone ? 0 : M5_ENOENT;
}

int router_find(router_t *r, const char *ue_svc_id, router_loc_t *out) {
  pthread_mutex_lock(&r->lock);
  router_loc_t *cur = m5_hmap_get(r->map, ue_svc_id, strlen(ue_svc_id));
  if (cur) *out = *cur;
  pthread_mutex_unlock(&r->lock);
  return cur ? 0 : M5_ENOENT;
}

size_t router_count(router_t *r) {
  pthread_mutex_lock(&r->lock);
  size_t n = m5_hmap_count(r->map);
  pthread_mutex_unlock(&r->lock);
  return n;
}

int router_post(router_t *r, unsigned worker, router_msg_t *m) {
  if (worker >= r->n_workers) return M5_ENOENT;
  m5_mailbox_t *mb = m->kind == ROUTER_RESULT ? r->w[worker].results : r->w[worker].inbox;
  if (!mb) return M5_ENOENT;
  return m5_mailbox_post(mb, m);
}

int router_kick(router_t *r, const char *ue_svc_id) {
  router_loc_t loc;
  if (router_find(r, ue_svc_id, &loc) != 0) return M5_ENOENT;
  router_msg_t *m = router_msg_new(ROUTER_CLOSE);
  if (!m) return M5_ENOMEM;
  m->sid = loc.sid;
  snprintf(m->ue_svc_id, sizeof m->ue_svc_id, "%s", ue_svc_id);
  char path[4096];
  int rc = m5_test_hook_armed("drop-close", path, sizeof path) ? M5_EFULL /* test builds */
                                                                : router_post(r, loc.worker, m);
  if (rc != 0) router_msg_free(m);
  return rc;
}
