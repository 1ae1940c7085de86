/* Application Server clients with their registration (TS 29.538 ASRegistration; architecture
 * §3.2) and the stored policy (registry_policy.c; docs/delivery.md) shared through NATS KV, as
 * registry_js.c does for bindings (issue 13):
 *   <prefix>_as      key a.<enc(asSvcId)> -> {"auth":"token","targets":["host:port",...],
 *                    "ueSvcIds":["pattern",...],"reg":{"id":"<32 hex>","uri":"...","app":"...",
 *                    "at":T,"node":"a"}} ("reg" absent: not registered; "node": the m5s node
 *                    that took the registration), or the tombstone {"removed":true} of a DELETE;
 *   <prefix>_policy  key "policy" -> {"doc":<the document of GET /admin/v1/policy>}, or
 *                    {"removed":true}: the configured policy (each node's policy.* keys) applies.
 * The client and its registration share one key, so a PUT that drops a registration its new
 * targets no longer allow is one compare-and-set, as it is one transaction in SQLite. Tombstones
 * rather than KV deletes keep every write a create-only or compare-and-set on a revision.
 * Writes on the DB thread (leader read, CAS, retried on a conflict), memory written only by the
 * buckets' watchers, jobs answered once their write is applied (registry_js.c). */
#include "server/registry/registry_js_int.h"

#include "core/err.h"
#include "core/log.h"
#include "server/groups/groups_int.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DOM "registry"
#define POLICY_KEY "policy"

/* ---- AS clients ---- */

static int str_field(json_t *o, const char *name, char *out, size_t size, int required) {
  json_t *v = json_object_get(o, name);
  if (!v) return required ? M5_EINVAL : 0;
  if (!json_is_string(v) || json_string_length(v) >= size) return M5_EINVAL;
  memcpy(out, json_string_value(v), json_string_length(v) + 1);
  return 0;
}

/* a (as_svc_id already set) from a value; *removed for a tombstone. */
static int as_parse(const uint8_t *val, size_t len, registry_as_t *a, int *removed) {
  json_t *o = json_loadb((const char *)val, len, 0, NULL);
  int rc = o ? 0 : M5_EINVAL;
  *removed = json_is_true(json_object_get(o, "removed"));
  if (rc == 0 && !*removed) {
    char auth[16] = "";
    json_t *t = json_object_get(o, "targets"), *reg = json_object_get(o, "reg");
    char why[160];
    if (str_field(o, "auth", auth, sizeof auth, 1) || registry_as_auth_parse(auth, &a->auth) ||
        !json_is_array(t) || json_array_size(t) > REGISTRY_AS_TARGETS_MAX ||
        policy_patterns_from_json(json_object_get(o, "ueSvcIds"), &a->ue_svc_ids, why,
                                  sizeof why) != 0)
      rc = M5_EINVAL;
    for (size_t i = 0; rc == 0 && i < json_array_size(t); i++) {
      json_t *h = json_array_get(t, i);
      if (!json_is_string(h) || json_string_length(h) > REGISTRY_HOSTPORT_MAX)
        rc = M5_EINVAL;
      else
        memcpy(a->targets[i], json_string_value(h), json_string_length(h) + 1);
    }
    if (rc == 0) a->n_targets = json_array_size(t);
    if (rc == 0 && reg) {
      json_t *at = json_object_get(reg, "at");
      if (!json_is_object(reg) ||
          str_field(reg, "id", a->registration_id, sizeof a->registration_id, 1) ||
          strlen(a->registration_id) != REGISTRY_REG_ID_LEN ||
          str_field(reg, "uri", a->target_uri, sizeof a->target_uri, 1) ||
          str_field(reg, "app", a->app_id, sizeof a->app_id, 1) ||
          str_field(reg, "node", a->node, sizeof a->node, 1) || !json_is_integer(at))
        rc = M5_EINVAL;
      else
        a->registered_at = json_integer_value(at);
    }
  }
  json_decref(o);
  return rc;
}

static char *as_text(const registry_as_t *a) {
  json_t *t = json_array();
  for (size_t i = 0; t && i < a->n_targets; i++)
    json_array_append_new(t, json_string(a->targets[i]));
  json_t *o = json_pack("{s:s, s:o, s:o}", "auth", registry_as_auth_name(a->auth), "targets", t,
                        "ueSvcIds", policy_patterns_json(&a->ue_svc_ids));
  if (o && a->registration_id[0])
    json_object_set_new(o, "reg",
                        json_pack("{s:s, s:s, s:s, s:I, s:s}", "id", a->registration_id, "uri",
                                  a->target_uri, "app", a->app_id, "at",
                                  (json_int_t)a->registered_at, "node", a->node));
  char *text = o ? json_dumps(o, JSON_COMPACT) : NULL;
  json_decref(o);
  return text;
}

static void forget_registration(registry_as_t *a) {
  a->registration_id[0] = a->target_uri[0] = a->app_id[0] = a->node[0] = '\0';
  a->registered_at = 0;
}

void regjs_as_apply(registry_js_t *js, const m5_js_kv_change_t *ch) {
  registry_t *r = js->r;
  char id[REGISTRY_AS_ID_MAX + 1];
  if (regjs_key_id(ch->key, "a", id, sizeof id) != 0 || !registry_as_id_valid(id)) {
    M5_LOGW(DOM, "bucket %s: skipping key %s (not a.<base64url asSvcId>)", js->b[REGJS_AS].name,
            ch->key);
    return;
  }
  registry_as_t *a = calloc(1, sizeof *a);
  if (!a) {
    M5_LOGE(DOM, "out of memory: AS client %s (revision %llu) not applied", id,
            (unsigned long long)ch->rev);
    return;
  }
  memcpy(a->as_svc_id, id, strlen(id) + 1);
  int removed = ch->deleted;
  if (!removed && as_parse(ch->val, ch->len, a, &removed) != 0) {
    M5_LOGE(DOM, "bucket %s: skipping the malformed value of %s (revision %llu)",
            js->b[REGJS_AS].name, ch->key, (unsigned long long)ch->rev);
    free(a);
    return;
  }
  size_t klen = strlen(id);
  pthread_rwlock_wrlock(&r->lock);
  registry_as_t *old = m5_hmap_get(r->as_map, id, klen);
  int deleted = removed && old;
  if (removed) {
    if (old) free(m5_hmap_del(r->as_map, id, klen));
    free(a);
  } else if (old) {
    *old = *a;
    free(a);
  } else if (m5_hmap_put(r->as_map, a->as_svc_id, klen, a, NULL) != 0) {
    free(a);
    M5_LOGE(DOM, "out of memory: AS client %s (revision %llu) not applied", id,
            (unsigned long long)ch->rev);
  }
  pthread_rwlock_unlock(&r->lock);
  /* a client created again under that asSvcId is someone else (groups_int.h "hand-over") */
  if (deleted) regjs_purge_later(js, "as", id, 1);
}

/* The client of key through the stream leader: 0 with *exists (0: absent or deleted), *a (its
 * as_svc_id already set) and *rev. */
static int read_as(registry_js_t *js, const char *key, registry_as_t *a, int *exists,
                   uint64_t *rev) {
  uint8_t *v = NULL;
  size_t n = 0;
  int removed = 0;
  int rc = regjs_read(&js->b[REGJS_AS], key, &v, &n, rev);
  if (rc == 0 && v && as_parse(v, n, a, &removed) != 0) {
    M5_LOGE(DOM, "bucket %s: the value of %s is malformed", js->b[REGJS_AS].name, key);
    rc = M5_EIO;
  }
  *exists = rc == 0 && v && !removed;
  free(v);
  return rc;
}

static int write_as(registry_js_t *js, const char *key, const registry_as_t *a, uint64_t rev,
                    uint64_t *new_rev) {
  char *text = a ? as_text(a) : strdup("{\"removed\":true}");
  if (!text) return M5_ENOMEM;
  int rc = regjs_write(&js->b[REGJS_AS], key, text, rev, new_rev);
  free(text);
  return rc;
}

/* Everything as:<id> had in groups goes with the client (groups_int.h "hand-over"): from the
 * groups in KV (groups_js_ops.c), else this node's. */
static void purge_as_groups(registry_t *r, const char *id) {
  groups_principal_t who;
  snprintf(who, sizeof who, "as:%s", id);
  if (groups_js_on(r)) {
    groups_js_purge(r, who, 1);
    return;
  }
  groups_purge_t *purge = NULL;
  if (registry_exec(r, "BEGIN IMMEDIATE") != 0) return;
  int rc = groups_purge_stage(r, who, 1, &purge);
  if (rc == 0) rc = registry_exec(r, "COMMIT");
  if (rc != 0) {
    registry_exec(r, "ROLLBACK");
    groups_purge_abort(purge);
    M5_LOGE(DOM, "AS %s: deleted, but its groups could not be dropped", id);
    return;
  }
  groups_purge_apply(r, purge);
}

int regjs_as_run(registry_js_t *js, registry_job_t *job) {
  registry_as_t *in = job->as;
  if (!registry_as_id_valid(in->as_svc_id) || in->n_targets > REGISTRY_AS_TARGETS_MAX)
    return job->op == REGISTRY_AS_PUT ? M5_EINVAL : M5_ENOENT;
  if (job->op == REGISTRY_AS_REGISTER && strlen(in->registration_id) != REGISTRY_REG_ID_LEN)
    return M5_EINVAL;
  char key[REGJS_KEY_MAX + 1];
  if (regjs_key("a", in->as_svc_id, key) != 0) return M5_EINVAL;
  for (int tries = 0; tries < REGJS_CAS_TRIES; tries++) {
    registry_as_t cur, next;
    memset(&cur, 0, sizeof cur);
    memcpy(cur.as_svc_id, in->as_svc_id, sizeof cur.as_svc_id);
    int exists = 0, drop = 0;
    uint64_t rev = 0, new_rev = 0;
    int rc = read_as(js, key, &cur, &exists, &rev);
    if (rc) return rc;
    if (job->op != REGISTRY_AS_PUT && !exists) return M5_ENOENT;
    switch (job->op) {
    case REGISTRY_AS_PUT:
      job->created = !exists;
      /* the kept registration must still be allowed by the new list */
      drop = exists && cur.registration_id[0] && !registry_as_target_allowed(in, cur.target_uri);
      next = *in;
      forget_registration(&next);
      if (exists && !drop) {
        memcpy(next.registration_id, cur.registration_id, sizeof next.registration_id);
        memcpy(next.target_uri, cur.target_uri, sizeof next.target_uri);
        memcpy(next.app_id, cur.app_id, sizeof next.app_id);
        memcpy(next.node, cur.node, sizeof next.node);
        next.registered_at = cur.registered_at;
      }
      rc = write_as(js, key, &next, rev, &new_rev);
      break;
    case REGISTRY_AS_DEL:
      rc = write_as(js, key, NULL, rev, &new_rev);
      break;
    case REGISTRY_AS_REGISTER:
      /* against the list as it is now: an admin change may have come after the worker's check */
      if (in->target_uri[0] && !registry_as_target_allowed(&cur, in->target_uri)) return M5_EPERM;
      job->created = cur.registration_id[0] == '\0';
      next = cur;
      memcpy(next.registration_id, in->registration_id, sizeof next.registration_id);
      memcpy(next.target_uri, in->target_uri, sizeof next.target_uri);
      memcpy(next.app_id, in->app_id, sizeof next.app_id);
      memcpy(next.node, js->node, sizeof next.node);
      next.registered_at = in->registered_at;
      rc = write_as(js, key, &next, rev, &new_rev);
      break;
    case REGISTRY_AS_DEREGISTER:
      if (!cur.registration_id[0] || strcmp(cur.registration_id, in->registration_id) != 0)
        return M5_ENOENT;
      next = cur;
      forget_registration(&next);
      rc = write_as(js, key, &next, rev, &new_rev);
      break;
    default:
      return M5_EINVAL;
    }
    if (rc == M5_EAGAIN) continue; /* another node changed it meanwhile: judge afresh */
    if (rc == 0) rc = regjs_wait(js, &js->b[REGJS_AS], new_rev);
    if (rc) return rc;
    if (drop)
      M5_LOGI(DOM, "AS %s: its registration's targetUri is no longer allowed: deregistered",
              in->as_svc_id);
    if (job->op == REGISTRY_AS_REGISTER) *in = next;
    if (job->op == REGISTRY_AS_DEL) purge_as_groups(js->r, in->as_svc_id);
    return 0;
  }
  M5_LOGE(DOM, "AS %s: the client kept changing under %d attempts", in->as_svc_id,
          REGJS_CAS_TRIES);
  return M5_EAGAIN;
}

/* ---- the stored policy ---- */

void regjs_policy_apply(registry_js_t *js, const m5_js_kv_change_t *ch) {
  registry_t *r = js->r;
  if (strcmp(ch->key, POLICY_KEY) != 0) return;
  json_t *o = ch->deleted ? NULL : json_loadb((const char *)ch->val, ch->len, 0, NULL);
  int removed = ch->deleted || json_is_true(json_object_get(o, "removed"));
  policy_t p;
  char param[72], why[160];
  if (!removed && policy_from_json(json_object_get(o, "doc"), &p, param, sizeof param, why,
                                   sizeof why) != 0) {
    /* a newer m5s's document: the policy in force stays, loudly */
    M5_LOGE(DOM, "bucket %s: the stored policy (revision %llu) is not readable (%s: %s); the "
                 "policy in force stays",
            js->b[REGJS_POLICY].name, (unsigned long long)ch->rev, param, why);
    json_decref(o);
    return;
  }
  json_decref(o);
  pthread_rwlock_wrlock(&r->lock);
  r->policy = removed ? r->policy_configured : p;
  r->policy_stored = r->policy_loaded = !removed;
  pthread_rwlock_unlock(&r->lock);
}

int regjs_policy_run(registry_js_t *js, registry_job_t *job) {
  if (job->op == REGISTRY_POLICY_PUT && !job->policy) return M5_EINVAL;
  char *text = NULL;
  if (job->op == REGISTRY_POLICY_PUT) {
    json_t *o = json_pack("{s:o}", "doc", policy_to_json(job->policy));
    text = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
  } else {
    text = strdup("{\"removed\":true}");
  }
  if (!text) return M5_ENOMEM;
  int rc = M5_EAGAIN;
  for (int tries = 0; tries < REGJS_CAS_TRIES && rc == M5_EAGAIN; tries++) {
    uint8_t *v = NULL;
    size_t n = 0;
    uint64_t rev = 0, new_rev = 0;
    rc = regjs_read(&js->b[REGJS_POLICY], POLICY_KEY, &v, &n, &rev);
    if (rc) break;
    json_t *o = v ? json_loadb((const char *)v, n, 0, NULL) : NULL;
    int stored = v && !json_is_true(json_object_get(o, "removed"));
    json_decref(o);
    free(v);
    job->created = job->op == REGISTRY_POLICY_PUT ? !stored : stored;
    if (job->op == REGISTRY_POLICY_DEL && !stored) {
      rc = regjs_wait(js, &js->b[REGJS_POLICY], rev); /* nothing to drop */
      break;
    }
    rc = regjs_write(&js->b[REGJS_POLICY], POLICY_KEY, text, rev, &new_rev);
    if (rc == 0) rc = regjs_wait(js, &js->b[REGJS_POLICY], new_rev);
  }
  free(text);
  return rc;
}

/* What registry_open loaded from this node's SQLite file is not the cluster's. */
static void free_as(void *v) {
  free(v);
}

int regjs_as_reset(registry_t *r) {
  m5_hmap_t *fresh = m5_hmap_new();
  if (!fresh) return M5_ENOMEM;
  pthread_rwlock_wrlock(&r->lock);
  m5_hmap_free(r->as_map, free_as);
  r->as_map = fresh;
  r->policy = r->policy_configured;
  r->policy_stored = r->policy_loaded = 0;
  pthread_rwlock_unlock(&r->lock);
  return 0;
}
