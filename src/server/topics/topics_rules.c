/* Messaging Topic rules per name prefix (topics_rules.h; docs/m5s.md "Messaging Topics"). */
#include "server/topics/topics_rules.h"

#include "core/err.h"
#include "server/policy/policy.h"

#include <ctype.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PATTERNS_MAX 32
#define PATTERN_MAX (M5_MSG_ADDR_MAX + 4)

typedef struct {
  int given; /* the part was written (else: everyone) */
  size_t n;  /* patterns; 0 with given: nobody */
  char p[PATTERNS_MAX][PATTERN_MAX + 1];
} pats_t;

typedef struct {
  char prefix[M5_MSG_NAME_MAX + 1]; /* "" for `*` */
  pats_t right[2];                  /* topics_right_t */
} rule_t;

struct topics_rules {
  pthread_rwlock_t lock;
  rule_t *rules;
  size_t n;
};

static const char *const right_names[2] = {"subscribe", "publish"};

static int prefix_valid(const char *p) {
  for (; *p; p++)
    if (!isalnum((unsigned char)*p) && *p != '.' && *p != '_' && *p != ':' && *p != '-') return 0;
  return 1;
}

/* A pattern: "ue:..." or "as:..." or "*", printable ASCII without spaces or commas. */
static int pattern_valid(const char *p) {
  if (!strcmp(p, "*")) return 1;
  if (strncmp(p, "ue:", 3) != 0 && strncmp(p, "as:", 3) != 0) return 0;
  if (!p[3]) return 0;
  for (; *p; p++)
    if (*p <= ' ' || *p > '~' || *p == ',') return 0;
  return 1;
}

static int parse_pats(const char *v, pats_t *out, const char *where, char *err, size_t errlen) {
  out->given = 1;
  out->n = 0;
  while (*v) {
    size_t k = strcspn(v, ",");
    if (k == 0 || k > PATTERN_MAX) {
      snprintf(err, errlen, "%s: an empty or too long pattern", where);
      return M5_EINVAL;
    }
    if (out->n == PATTERNS_MAX) {
      snprintf(err, errlen, "%s: more than %d patterns", where, PATTERNS_MAX);
      return M5_EINVAL;
    }
    memcpy(out->p[out->n], v, k);
    out->p[out->n][k] = '\0';
    if (!pattern_valid(out->p[out->n])) {
      snprintf(err, errlen, "%s: pattern '%s': expected *, ue:PATTERN or as:PATTERN", where,
               out->p[out->n]);
      return M5_EINVAL;
    }
    out->n++;
    v += k;
    if (*v == ',') v++;
  }
  return 0;
}

static int parse_rule(const char *line, rule_t *r, size_t idx, char *err, size_t errlen) {
  memset(r, 0, sizeof *r);
  char where[48];
  snprintf(where, sizeof where, "topics.rules[%zu]", idx);
  char buf[4096];
  if (strlen(line) >= sizeof buf) {
    snprintf(err, errlen, "%s: too long", where);
    return M5_EINVAL;
  }
  snprintf(buf, sizeof buf, "%s", line);
  char *save = NULL;
  char *tok = strtok_r(buf, " \t", &save);
  if (!tok) {
    snprintf(err, errlen, "%s: empty; expected 'PREFIX [subscribe=PATTERNS] [publish=PATTERNS]'",
             where);
    return M5_EINVAL;
  }
  if (strcmp(tok, "*") != 0) {
    if (strlen(tok) > M5_MSG_NAME_MAX || !prefix_valid(tok)) {
      snprintf(err, errlen,
               "%s: prefix '%s': expected * or up to %d characters of A-Z a-z 0-9 . _ : -", where,
               tok, M5_MSG_NAME_MAX);
      return M5_EINVAL;
    }
    snprintf(r->prefix, sizeof r->prefix, "%s", tok);
  }
  while ((tok = strtok_r(NULL, " \t", &save))) {
    int which = !strncmp(tok, "subscribe=", 10) ? 0 : !strncmp(tok, "publish=", 8) ? 1 : -1;
    if (which < 0) {
      snprintf(err, errlen, "%s: '%s': expected subscribe=PATTERNS or publish=PATTERNS", where,
               tok);
      return M5_EINVAL;
    }
    char w[64];
    snprintf(w, sizeof w, "%s %s", where, right_names[which]);
    if (r->right[which].given) {
      snprintf(err, errlen, "%s: given twice", w);
      return M5_EINVAL;
    }
    if (parse_pats(strchr(tok, '=') + 1, &r->right[which], w, err, errlen) != 0) return M5_EINVAL;
  }
  return 0;
}

static int parse_all(const char *const *lines, size_t n, rule_t **out, char *err, size_t errlen) {
  *out = NULL;
  if (n > TOPICS_RULES_MAX) {
    snprintf(err, errlen, "topics.rules: %zu rules, at most %d", n, TOPICS_RULES_MAX);
    return M5_EINVAL;
  }
  if (n == 0) return 0;
  rule_t *rs = calloc(n, sizeof *rs);
  if (!rs) {
    snprintf(err, errlen, "topics.rules: out of memory");
    return M5_ENOMEM;
  }
  for (size_t i = 0; i < n; i++) {
    if (parse_rule(lines[i], &rs[i], i, err, errlen) != 0) {
      free(rs);
      return M5_EINVAL;
    }
    for (size_t j = 0; j < i; j++)
      if (!strcmp(rs[j].prefix, rs[i].prefix)) {
        snprintf(err, errlen, "topics.rules[%zu]: the prefix of topics.rules[%zu] again", i, j);
        free(rs);
        return M5_EINVAL;
      }
  }
  *out = rs;
  return 0;
}

topics_rules_t *topics_rules_new(const char *const *lines, size_t n, char *err, size_t errlen) {
  topics_rules_t *r = calloc(1, sizeof *r);
  if (!r) {
    snprintf(err, errlen, "topics.rules: out of memory");
    return NULL;
  }
  pthread_rwlock_init(&r->lock, NULL);
  if (parse_all(lines, n, &r->rules, err, errlen) != 0) {
    topics_rules_free(r);
    return NULL;
  }
  r->n = n;
  return r;
}

void topics_rules_free(topics_rules_t *r) {
  if (!r) return;
  pthread_rwlock_destroy(&r->lock);
  free(r->rules);
  free(r);
}

int topics_rules_set(topics_rules_t *r, const char *const *lines, size_t n, char *err,
                     size_t errlen) {
  rule_t *rs;
  int rc = parse_all(lines, n, &rs, err, errlen);
  if (rc != 0) return rc;
  pthread_rwlock_wrlock(&r->lock);
  rule_t *old = r->rules;
  r->rules = rs;
  r->n = n;
  pthread_rwlock_unlock(&r->lock);
  free(old);
  return 0;
}

static void append(char *buf, size_t len, const char *s) {
  size_t l = strlen(buf);
  snprintf(buf + l, len - l, "%s", s);
}

int topics_rules_get(topics_rules_t *r, m5_strlist_t *out) {
  memset(out, 0, sizeof *out);
  pthread_rwlock_rdlock(&r->lock);
  int rc = 0;
  if (r->n && !(out->v = calloc(r->n, sizeof *out->v))) rc = M5_ENOMEM;
  for (size_t i = 0; rc == 0 && i < r->n; i++) {
    const rule_t *ru = &r->rules[i];
    size_t len = 64 + M5_MSG_NAME_MAX + 2 * PATTERNS_MAX * (PATTERN_MAX + 1);
    char *line = malloc(len);
    if (!line) {
      rc = M5_ENOMEM;
      break;
    }
    snprintf(line, len, "%s", ru->prefix[0] ? ru->prefix : "*");
    for (int w = 0; w < 2; w++) {
      if (!ru->right[w].given) continue;
      append(line, len, " ");
      append(line, len, right_names[w]);
      append(line, len, "=");
      for (size_t k = 0; k < ru->right[w].n; k++) {
        if (k) append(line, len, ",");
        append(line, len, ru->right[w].p[k]);
      }
    }
    out->v[out->n++] = line;
  }
  pthread_rwlock_unlock(&r->lock);
  if (rc != 0) {
    for (size_t i = 0; i < out->n; i++)
      free(out->v[i]);
    free(out->v);
    memset(out, 0, sizeof *out);
  }
  return rc;
}

int topics_rules_may(topics_rules_t *r, const char *topic, const m5_msg_addr_t *party,
                     topics_right_t what) {
  char who[M5_MSG_ADDR_MAX + 8];
  if (!strcmp(party->type, "UE"))
    snprintf(who, sizeof who, "ue:%s", party->addr);
  else if (!strcmp(party->type, "AS"))
    snprintf(who, sizeof who, "as:%s", party->addr);
  else
    return 0;
  pthread_rwlock_rdlock(&r->lock);
  const rule_t *best = NULL;
  size_t best_len = 0;
  for (size_t i = 0; i < r->n; i++) {
    size_t l = strlen(r->rules[i].prefix);
    if (strncmp(topic, r->rules[i].prefix, l) != 0) continue;
    if (!best || l > best_len) best = &r->rules[i], best_len = l;
  }
  int ok = 1;
  if (best && best->right[what].given) {
    ok = 0;
    for (size_t k = 0; !ok && k < best->right[what].n; k++)
      ok = policy_glob(best->right[what].p[k], who);
  }
  pthread_rwlock_unlock(&r->lock);
  return ok;
}
