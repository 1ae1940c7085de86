/* Converging m5s to the devices the gateway serves (docs/gateways.md, "Registration"; TS 23.554
 * cl. 8.2.4, de-registration by the gateway). The adapter registers the devices of its
 * configuration; one removed from it would stay registered at m5s, which would go on sending
 * its messages here (answered 404) and keep the UE Service ID from anyone else. So the core
 * asks m5s, the authority (a lost spool or a changed file do not matter), what it holds for
 * this gateway: GET .../registrations in pages of SYNC_PAGE, ordered, with the cursor `after`;
 * and de-registers every ID the adapter does not serve (ops->served), SYNC_WINDOW at a time,
 * before it asks for the next page. Requests go through gw_reg.c, so they wait for the token
 * and are retried with the back-off like the adapter's. A convergence runs at start and after
 * every registration m5s accepts, once no registration is out any more (so the adapter's
 * batches at start make one run, not one each); one asked for while one runs makes another
 * afterwards. A refusal for good of the listing (an m5s without it: 404/405) ends the run with
 * a warning and leaves m5s as it is. */
#include "gateway/core/gw_int.h"

#include "core/err.h"
#include "core/log.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* IDs per page: the answer, at most SYNC_PAGE IDs of 128 bytes each JSON-escaped to 256, stays
 * within the 64 KiB the HTTP client takes (gw_core.c, max_response) */
#define SYNC_PAGE 200
#define SYNC_WINDOW 8 /* de-registrations out at once */

typedef char sync_id_t[M5_MSG_ADDR_MAX + 1];
typedef struct gw_sync gw_sync_t;

struct gw_sync {
  m5gw_core_t *core;
  char **served; /* sorted, no repeats */
  size_t n_served;
  bool wanted;               /* a run is asked for */
  bool running;              /* between its first page and its end */
  sync_id_t after;           /* the cursor: the last ID of the page before ("" = from the first) */
  bool more;                 /* m5s has IDs after the cursor */
  sync_id_t todo[SYNC_PAGE]; /* this page's IDs that are not served */
  size_t n_todo, next_todo, dels_out;
  size_t held, removed, gone, refused; /* this run's counts, for its log line */
  uint64_t runs;
};

static int cmp_str(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

static bool served(const gw_sync_t *s, const char *id) {
  return bsearch(&id, s->served, s->n_served, sizeof s->served[0], cmp_str) != NULL;
}

/* ---- the run ---- */

static void list_next(gw_sync_t *s);

static void run_end(gw_sync_t *s, const char *why) {
  const char *gw = s->core->cfg->gw_id;
  s->running = false;
  if (why)
    M5_LOGW(GW_DOM,
            "registrations: cannot learn what m5s holds for %s (%s); those of devices no longer "
            "configured stay until the next registration",
            gw, why);
  else
    M5_LOGI(GW_DOM,
            "registrations: m5s held %zu UE Service ID(s) for %s; %zu not configured any more: "
            "%zu de-registered, %zu gone already, %zu refused",
            s->held, gw, s->removed + s->gone + s->refused, s->removed, s->gone, s->refused);
  gw_sync_kick(s->core);
}

static void on_del(void *arg, int status, const char *reason, const uint8_t *body, size_t len);

/* The page's de-registrations, SYNC_WINDOW at a time; then the next page, or the end. */
static void pump(gw_sync_t *s) {
  while (s->dels_out < SYNC_WINDOW && s->next_todo < s->n_todo) {
    const char *id = s->todo[s->next_todo++];
    char what[M5_MSG_ADDR_MAX + 48];
    snprintf(what, sizeof what, "de-registration of %s (not configured)", id);
    char *url = gw_reg_url(s->core, "/", id);
    if (!url || gw_reg_request(s->core, "DELETE", url, what, on_del, s) != 0) {
      s->refused++;
      M5_LOGE(GW_DOM, "%s: out of memory", what);
      continue;
    }
    s->dels_out++;
  }
  if (s->dels_out || s->next_todo < s->n_todo) return;
  if (s->more)
    list_next(s);
  else
    run_end(s, NULL);
}

static void on_del(void *arg, int status, const char *reason, const uint8_t *body, size_t len) {
  (void)reason;
  (void)body;
  (void)len;
  gw_sync_t *s = arg;
  s->dels_out--;
  if (status == 0)
    s->removed++;
  else if (status == M5_ENOENT)
    s->gone++; /* released meanwhile (by the operator, or a pattern change) */
  else
    s->refused++; /* logged by gw_reg.c */
  pump(s);
}

/* A page: {"gwId": ours, "ueSvcIds": [IDs after the cursor, ascending], "more": bool}. NULL,
 * or what is wrong with it: a page that does not advance the cursor would never end. */
static const char *page_read(gw_sync_t *s, const uint8_t *body, size_t len) {
  json_t *o = body && len ? json_loadb((const char *)body, len, 0, NULL) : NULL;
  json_t *ids = json_object_get(o, "ueSvcIds"), *more = json_object_get(o, "more");
  const char *gw = json_string_value(json_object_get(o, "gwId"));
  const char *bad = NULL;
  if (!json_is_object(o) || !gw || strcmp(gw, s->core->cfg->gw_id) != 0 || !json_is_array(ids) ||
      json_array_size(ids) > SYNC_PAGE || !json_is_boolean(more))
    bad = "not a page of our registrations";
  s->n_todo = s->next_todo = 0;
  for (size_t i = 0; !bad && i < json_array_size(ids); i++) {
    const char *id = json_string_value(json_array_get(ids, i));
    if (!id || !m5_msg_svc_id_valid(id) || strcmp(id, s->after) <= 0) {
      bad = "an ID that is not a UE Service ID, or out of order";
      break;
    }
    snprintf(s->after, sizeof s->after, "%s", id);
    s->held++;
    if (!served(s, id)) snprintf(s->todo[s->n_todo++], sizeof s->todo[0], "%s", id);
  }
  s->more = !bad && json_is_true(more) && json_array_size(ids) > 0;
  if (bad) s->n_todo = 0;
  json_decref(o);
  return bad;
}

static void on_page(void *arg, int status, const char *reason, const uint8_t *body, size_t len) {
  gw_sync_t *s = arg;
  if (status != 0) {
    run_end(s, reason ? reason : m5_strerror(status));
    return;
  }
  const char *bad = page_read(s, body, len);
  if (bad) {
    run_end(s, bad);
    return;
  }
  pump(s);
}

static void list_next(gw_sync_t *s) {
  char query[40];
  snprintf(query, sizeof query, "?limit=%d%s", SYNC_PAGE, s->after[0] ? "&after=" : "");
  char *url = gw_reg_url(s->core, query, s->after);
  char what[M5_MSG_ADDR_MAX + 64];
  snprintf(what, sizeof what, "listing of the registrations after '%s'", s->after);
  if (!url || gw_reg_request(s->core, "GET", url, what, on_page, s) != 0)
    run_end(s, "out of memory");
}

/* ---- the core's calls ---- */

void gw_sync_kick(m5gw_core_t *core) {
  gw_sync_t *s = core->sync;
  /* at start the token comes after the adapter queued its registrations (gw_on_token) */
  if (!s || s->running || !s->wanted || core->stopping || !gw_token(core) || gw_reg_posting(core))
    return;
  s->wanted = false;
  s->running = true;
  s->runs++;
  s->after[0] = '\0';
  s->more = false;
  s->held = s->removed = s->gone = s->refused = 0;
  M5_LOGD(GW_DOM, "registrations: converging m5s to the %zu configured device(s) (run %llu)",
          s->n_served, (unsigned long long)s->runs);
  list_next(s);
}

void gw_sync_request(m5gw_core_t *core) {
  if (core->sync) core->sync->wanted = true;
}

typedef struct {
  gw_sync_t *s;
  size_t cap;
  int rc;
} collect_t;

static void collect(void *arg, const char *id) {
  collect_t *c = arg;
  /* one that is no UE Service ID m5s could never hold: nothing to keep */
  if (c->rc || !id || !m5_msg_svc_id_valid(id)) return;
  gw_sync_t *s = c->s;
  if (s->n_served == c->cap) {
    size_t cap = c->cap ? c->cap * 2 : 64;
    char **v = realloc(s->served, cap * sizeof *v);
    if (!v) {
      c->rc = M5_ENOMEM;
      return;
    }
    s->served = v;
    c->cap = cap;
  }
  if (!(s->served[s->n_served] = strdup(id)))
    c->rc = M5_ENOMEM;
  else
    s->n_served++;
}

int gw_sync_start(m5gw_core_t *core, char *err, size_t errlen) {
  if (!core->ops->served) return 0;
  gw_sync_t *s = calloc(1, sizeof *s);
  if (!s) {
    snprintf(err, errlen, "out of memory");
    return M5_ENOMEM;
  }
  s->core = core;
  collect_t c = {s, 0, 0};
  int rc = core->ops->served(core->adapter, collect, &c);
  if (rc == 0) rc = c.rc;
  if (rc != 0) {
    core->sync = s;
    gw_sync_stop(core);
    if (rc == M5_ENOENT) {
      M5_LOGI(GW_DOM, "registrations: the %s adapter registers no devices; m5s's are left alone",
              core->ops->kind);
      return 0;
    }
    snprintf(err, errlen, "the devices the adapter serves: %s", m5_strerror(rc));
    return rc;
  }
  qsort(s->served, s->n_served, sizeof s->served[0], cmp_str);
  size_t k = 0; /* without repeats */
  for (size_t i = 0; i < s->n_served; i++) {
    if (k && !strcmp(s->served[k - 1], s->served[i]))
      free(s->served[i]);
    else
      s->served[k++] = s->served[i];
  }
  s->n_served = k;
  s->wanted = true;
  core->sync = s;
  gw_sync_kick(core);
  return 0;
}

void gw_sync_stop(m5gw_core_t *core) {
  gw_sync_t *s = core->sync;
  if (!s) return;
  for (size_t i = 0; i < s->n_served; i++)
    free(s->served[i]);
  free(s->served);
  free(s);
  core->sync = NULL;
}
