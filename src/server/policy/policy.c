/* Who may message whom: the policy, its patterns, its JSON form and the check (policy.h;
 * TS 23.554 cl. 8.3.2 step 3). */
#include "server/policy/policy.h"

#include "core/err.h"

#include <stdio.h>
#include <string.h>

void policy_defaults(policy_t *p) {
  memset(p, 0, sizeof *p);
  p->ue_to_ue = 1;
  p->ue_to_as.n = 1;
  strcpy(p->ue_to_as.v[0], "*");
  p->as_to_ue = 1;
  p->as_to_as = 0;
}

/* Linear in practice: on a mismatch after a '*', only the last '*' is retried one character
 * further (the classic two-pointer glob), so no pattern makes it exponential. */
int policy_glob(const char *pat, const char *text) {
  const char *star = NULL, *resume = NULL;
  while (*text) {
    if (*pat == '*') {
      star = pat++;
      resume = text;
    } else if (*pat && *pat == *text) {
      pat++;
      text++;
    } else if (star) {
      pat = star + 1;
      text = ++resume;
    } else {
      return 0;
    }
  }
  while (*pat == '*')
    pat++;
  return *pat == '\0';
}

int policy_patterns_match(const policy_patterns_t *ps, const char *text) {
  for (size_t i = 0; i < ps->n; i++)
    if (policy_glob(ps->v[i], text)) return 1;
  return 0;
}

int policy_pattern_valid(const char *s) {
  return m5_msg_svc_id_valid(s);
}

int policy_patterns_add(policy_patterns_t *ps, const char *s) {
  if (!policy_pattern_valid(s)) return M5_EINVAL;
  for (size_t i = 0; i < ps->n; i++)
    if (!strcmp(ps->v[i], s)) return 0;
  if (ps->n == POLICY_PATTERNS_MAX) return M5_ERANGE;
  snprintf(ps->v[ps->n++], sizeof ps->v[0], "%s", s);
  return 0;
}

int policy_patterns_from_text(policy_patterns_t *ps, const char *t) {
  ps->n = 0;
  char one[POLICY_PATTERN_MAX + 1];
  while (*t) {
    size_t n = strcspn(t, " ");
    if (n) {
      if (n > POLICY_PATTERN_MAX) return M5_EINVAL;
      memcpy(one, t, n);
      one[n] = '\0';
      if (policy_patterns_add(ps, one) != 0) return M5_EINVAL;
    }
    t += n;
    while (*t == ' ')
      t++;
  }
  return 0;
}

void policy_patterns_to_text(const policy_patterns_t *ps, char *out, size_t outlen) {
  size_t off = 0;
  if (outlen) out[0] = '\0';
  for (size_t i = 0; i < ps->n && off < outlen; i++) {
    int w = snprintf(out + off, outlen - off, "%s%s", i ? " " : "", ps->v[i]);
    if (w < 0) break;
    off += (size_t)w;
  }
}

json_t *policy_patterns_json(const policy_patterns_t *ps) {
  json_t *a = json_array();
  for (size_t i = 0; a && i < ps->n; i++)
    json_array_append_new(a, json_string(ps->v[i]));
  return a;
}

int policy_patterns_from_json(const json_t *a, policy_patterns_t *ps, char *why, size_t whylen) {
  ps->n = 0;
  if (!json_is_array(a) || json_array_size(a) > POLICY_PATTERNS_MAX) {
    snprintf(why, whylen, "expected an array of 0-%d patterns", POLICY_PATTERNS_MAX);
    return M5_EINVAL;
  }
  for (size_t i = 0; i < json_array_size(a); i++) {
    const char *s = json_string_value(json_array_get(a, i));
    if (!s || policy_patterns_add(ps, s) != 0) {
      snprintf(why, whylen,
               "entry %zu: expected 1-%d printable characters without spaces ('*' matches any "
               "run of characters)",
               i, POLICY_PATTERN_MAX);
      return M5_EINVAL;
    }
  }
  return 0;
}

json_t *policy_to_json(const policy_t *p) {
  return json_pack("{s:b, s:o, s:b, s:b}", "ueToUe", p->ue_to_ue, "ueToAs",
                   policy_patterns_json(&p->ue_to_as), "asToUe", p->as_to_ue, "asToAs",
                   p->as_to_as);
}

static int get_bool(const json_t *o, const char *name, int *out, char *param, size_t paramlen,
                    char *why, size_t whylen) {
  json_t *v = json_object_get(o, name);
  snprintf(param, paramlen, "%s", name);
  if (!v) {
    snprintf(why, whylen, "missing");
    return M5_EINVAL;
  }
  if (!json_is_boolean(v)) {
    snprintf(why, whylen, "expected true or false");
    return M5_EINVAL;
  }
  *out = json_is_true(v);
  return 0;
}

int policy_from_json(const json_t *o, policy_t *p, char *param, size_t paramlen, char *why,
                     size_t whylen) {
  static const char *const known[] = {"ueToUe", "ueToAs", "asToUe", "asToAs"};
  if (!json_is_object(o)) {
    snprintf(param, paramlen, "body");
    snprintf(why, whylen, "not a JSON object");
    return M5_EINVAL;
  }
  const char *key;
  json_t *v;
  json_object_foreach((json_t *)o, key, v) {
    int ok = 0;
    for (size_t i = 0; i < sizeof known / sizeof known[0]; i++)
      ok |= !strcmp(key, known[i]);
    if (!ok) {
      snprintf(param, paramlen, "%.*s", (int)(paramlen > 64 ? 64 : paramlen - 1), key);
      snprintf(why, whylen, "unknown member (ueToUe, ueToAs, asToUe, asToAs)");
      return M5_EINVAL;
    }
  }
  policy_t in;
  memset(&in, 0, sizeof in);
  if (get_bool(o, "ueToUe", &in.ue_to_ue, param, paramlen, why, whylen) ||
      get_bool(o, "asToUe", &in.as_to_ue, param, paramlen, why, whylen) ||
      get_bool(o, "asToAs", &in.as_to_as, param, paramlen, why, whylen))
    return M5_EINVAL;
  snprintf(param, paramlen, "ueToAs");
  json_t *a = json_object_get(o, "ueToAs");
  if (!a) {
    snprintf(why, whylen, "missing");
    return M5_EINVAL;
  }
  if (policy_patterns_from_json(a, &in.ue_to_as, why, whylen) != 0) return M5_EINVAL;
  *p = in;
  return 0;
}

policy_verdict_t policy_check(const policy_t *p, const m5_msg_addr_t *ori,
                              const m5_msg_addr_t *dest,
                              const policy_patterns_t *ori_as_ue_svc_ids, const char **why) {
  const char *dummy;
  if (!why) why = &dummy;
  *why = NULL;
  /* A group, an area or a topic decides itself who may send to it (its members and grants,
   * the topic rules), and the fan-out asks this function again for each of its recipients. */
  if (m5_msg_addr_is_named(dest->type)) return POLICY_ALLOW;
  int to_ue = !strcmp(dest->type, "UE"), to_as = !strcmp(dest->type, "AS");
  if (!strcmp(ori->type, "UE")) {
    if (to_ue && !p->ue_to_ue) {
      *why = "policy ueToUe is false";
      return POLICY_DENY;
    }
    if (to_as && !policy_patterns_match(&p->ue_to_as, dest->addr)) {
      *why = "the asSvcId matches no pattern of policy ueToAs";
      return POLICY_DENY;
    }
    return POLICY_ALLOW;
  }
  if (!strcmp(ori->type, "AS")) {
    if (!ori_as_ue_svc_ids) {
      *why = "the originator is not a configured AS client";
      return POLICY_DENY;
    }
    if (to_ue && !p->as_to_ue) {
      *why = "policy asToUe is false";
      return POLICY_DENY;
    }
    if (to_ue && !policy_patterns_match(ori_as_ue_svc_ids, dest->addr)) {
      *why = "the UE Service ID matches none of this AS client's ueSvcIds";
      return POLICY_DENY;
    }
    if (to_as && !p->as_to_as) {
      *why = "policy asToAs is false";
      return POLICY_DENY;
    }
    return POLICY_ALLOW;
  }
  *why = "the originator is neither a UE nor an AS";
  return POLICY_DENY;
}
