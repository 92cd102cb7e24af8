/*
 * rules.c - parse and validate anonymization rules.
 *
 * dsd_anon_rules_parse() checks a rules object completely when the dump is
 * requested, so that a typo fails the provision with a message naming the
 * rule rather than a job hours later. What needs the database (do the
 * tables and columns exist, does a strategy fit a column type) is checked
 * by dsd_anon_rules_check_tables() here and dsd_anon_plan_table() in plan.c
 * before any data moves.
 *
 * The salt is turned into an HMAC key schedule at once and the string is
 * not kept; the JSON copy kept for the manifest leaves it out.
 */
#include "anonymize/anon_internal.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/rand.h>

#include "core/log.h"

const char *const dsd__anon_strategy_names[DSD__ANON_NSTRATEGIES] = {
    [DSD__ANON_KEEP] = "keep",
    [DSD__ANON_NULL] = "null",
    [DSD__ANON_CONSTANT] = "constant",
    [DSD__ANON_HASH] = "hash",
    [DSD__ANON_EMAIL] = "email",
    [DSD__ANON_NAME] = "name",
    [DSD__ANON_PHONE] = "phone",
    [DSD__ANON_DIGITS] = "digits",
    [DSD__ANON_MASK] = "mask",
    [DSD__ANON_TRUNCATE] = "truncate",
    [DSD__ANON_NOISE] = "noise",
    [DSD__ANON_DATE_SHIFT] = "date_shift",
    [DSD__ANON_REGEX_REPLACE] = "regex_replace",
    [DSD__ANON_AUTO] = "auto",
};

#define STRATEGY_HINT                                                     \
  "HINT: use one of keep, null, constant, hash, email, name, phone, "     \
  "digits, mask, truncate, noise, date_shift, regex_replace"

/* Options each strategy accepts, NULL-terminated; "strategy" is implied. */
static const char *const *allowed_options(dsd__anon_strategy_t s) {
  static const char *const none[] = {NULL};
  static const char *const null_[] = {"path", NULL};
  static const char *const constant[] = {"value", "path", NULL};
  static const char *const hash[] = {"length", "path", NULL};
  static const char *const email[] = {"domain", "hash_domain", "path", NULL};
  static const char *const name[] = {"part", "path", NULL};
  static const char *const digits[] = {"keep_first", "path", NULL};
  static const char *const mask[] = {"keep_first", "keep_last", "char", "path",
                                     NULL};
  static const char *const truncate[] = {"length", "path", NULL};
  static const char *const noise[] = {"ratio", "amount", "path", NULL};
  static const char *const date_shift[] = {"max_days", "key", "path", NULL};
  static const char *const regex[] = {"pattern", "replacement", "path", NULL};
  switch (s) {
  case DSD__ANON_NULL: return null_;
  case DSD__ANON_CONSTANT: return constant;
  case DSD__ANON_HASH: return hash;
  case DSD__ANON_EMAIL: return email;
  case DSD__ANON_NAME: return name;
  case DSD__ANON_PHONE:
  case DSD__ANON_DIGITS: return digits;
  case DSD__ANON_MASK: return mask;
  case DSD__ANON_TRUNCATE: return truncate;
  case DSD__ANON_NOISE: return noise;
  case DSD__ANON_DATE_SHIFT: return date_shift;
  case DSD__ANON_REGEX_REPLACE: return regex;
  default: return none;
  }
}

void dsd__anon_key_repr(char *dst, size_t dstlen, const char *key) {
  bool plain = key[0] != '\0';
  for (const char *p = key; *p; p++) {
    if (!isalnum((unsigned char)*p) && *p != '_') plain = false;
  }
  if (plain) {
    snprintf(dst, dstlen, "%s", key);
  } else {
    snprintf(dst, dstlen, "\"%s\"", key);
  }
}

/* ------------------------------------------------------------------ */
/* Option readers                                                      */

typedef struct parse_ctx {
  const char *loc; /* anonymize.tables."t".col */
  dsd_err_t *err;
} parse_ctx_t;

static int opt_int(parse_ctx_t *pc, json_t *o, const char *name, int min,
                   int max, bool required, int *out) {
  json_t *v = json_object_get(o, name);
  json_int_t n;

  if (v == NULL) {
    if (!required) return 0;
    return dsd_err_set(pc->err, DSD_EINVAL, "%s: missing option \"%s\"",
                       pc->loc, name);
  }
  if (!json_is_integer(v)) goto bad;
  n = json_integer_value(v);
  if (n < min || n > max) goto bad;
  *out = (int)n;
  return 0;
bad:
  return dsd_err_set(pc->err, DSD_EINVAL,
                     "%s: option \"%s\" must be an integer from %d to %d",
                     pc->loc, name, min, max);
}

static int opt_str(parse_ctx_t *pc, json_t *o, const char *name,
                   bool required, const char **out) {
  json_t *v = json_object_get(o, name);
  if (v == NULL) {
    if (!required) return 0;
    return dsd_err_set(pc->err, DSD_EINVAL, "%s: missing option \"%s\"",
                       pc->loc, name);
  }
  if (!json_is_string(v)) {
    return dsd_err_set(pc->err, DSD_EINVAL, "%s: option \"%s\" must be a string",
                       pc->loc, name);
  }
  *out = json_string_value(v);
  return 0;
}

static int dup_str(parse_ctx_t *pc, const char *s, size_t len, char **out) {
  *out = malloc(len + 1);
  if (*out == NULL) return dsd_err_set(pc->err, DSD_ENOMEM, "out of memory");
  memcpy(*out, s, len);
  (*out)[len] = '\0';
  return 0;
}

/* JSONPath subset: "$" then any of ".name", "[*]", "[N]". */
static int parse_path(parse_ctx_t *pc, const char *path, struct dsd__anon_rule *rule) {
  const char *p = path;
  size_t cap = 0;
  int rc = 0;

  if (*p != '$') goto bad;
  p++;
  rule->has_path = true;
  while (*p) {
    dsd__anon_step_t st;
    memset(&st, 0, sizeof(st));
    if (*p == '.') {
      const char *s = ++p;
      while (*p && *p != '.' && *p != '[') p++;
      if (p == s) goto bad;
      st.kind = DSD__PATH_NAME;
      rc = dup_str(pc, s, (size_t)(p - s), &st.name);
      if (rc < 0) goto cleanup;
    } else if (*p == '[') {
      p++;
      if (p[0] == '*' && p[1] == ']') {
        st.kind = DSD__PATH_ANY;
        p += 2;
      } else if (isdigit((unsigned char)*p)) {
        size_t n = 0;
        while (isdigit((unsigned char)*p)) {
          if (n > 100000000) goto bad;
          n = n * 10 + (size_t)(*p - '0');
          p++;
        }
        if (*p != ']') goto bad;
        p++;
        st.kind = DSD__PATH_INDEX;
        st.index = n;
      } else {
        goto bad;
      }
    } else {
      goto bad;
    }
    if (rule->nsteps == cap) {
      size_t ncap = cap ? cap * 2 : 4;
      dsd__anon_step_t *ns = realloc(rule->steps, ncap * sizeof(*ns));
      if (ns == NULL) {
        free(st.name);
        rc = dsd_err_set(pc->err, DSD_ENOMEM, "out of memory");
        goto cleanup;
      }
      rule->steps = ns;
      cap = ncap;
    }
    rule->steps[rule->nsteps++] = st;
  }
  return 0;
bad:
  rc = dsd_err_set(pc->err, DSD_EINVAL,
                   "%s: option \"path\" is not a supported JSONPath "
                   "HINT: use $, .name, [*] and [N] steps, e.g. $.user.email",
                   pc->loc);
cleanup:
  return rc;
}

static void rule_clear(struct dsd__anon_rule *rule) {
  free(rule->column);
  for (size_t i = 0; i < rule->nsteps; i++) free(rule->steps[i].name);
  free(rule->steps);
  free(rule->value);
  free(rule->domain);
  free(rule->key_column);
  free(rule->replacement);
  if (rule->has_re) regfree(&rule->re);
  memset(rule, 0, sizeof(*rule));
}

static int parse_strategy_name(parse_ctx_t *pc, json_t *v,
                               dsd__anon_strategy_t *out) {
  const char *s;
  if (!json_is_string(v)) {
    return dsd_err_set(pc->err, DSD_EINVAL,
                       "%s: strategy must be a string " STRATEGY_HINT, pc->loc);
  }
  s = json_string_value(v);
  for (int i = 0; i < DSD__ANON_AUTO; i++) {
    if (strcmp(s, dsd__anon_strategy_names[i]) == 0) {
      *out = (dsd__anon_strategy_t)i;
      return 0;
    }
  }
  return dsd_err_set(pc->err, DSD_EINVAL, "%s: unknown strategy \"%s\" " STRATEGY_HINT,
                     pc->loc, s);
}

static int parse_options(parse_ctx_t *pc, json_t *o, struct dsd__anon_rule *rule) {
  const char *const *allowed = allowed_options(rule->strategy);
  const char *k;
  json_t *v;
  const char *s = NULL;
  int rc = 0;

  json_object_foreach(o, k, v) {
    bool ok = strcmp(k, "strategy") == 0;
    for (size_t i = 0; !ok && allowed[i]; i++) ok = strcmp(k, allowed[i]) == 0;
    if (!ok) {
      char opts[256] = "";
      size_t used = 0;
      for (size_t i = 0; allowed[i]; i++) {
        int w = snprintf(opts + used, sizeof(opts) - used, "%s%s",
                         i ? ", " : "", allowed[i]);
        if (w < 0 || (size_t)w >= sizeof(opts) - used) break;
        used += (size_t)w;
      }
      return dsd_err_set(pc->err, DSD_EINVAL,
                         "%s: unknown option \"%s\" for strategy \"%s\" HINT: %s%s",
                         pc->loc, k, dsd__anon_strategy_names[rule->strategy],
                         allowed[0] ? "it takes " : "it takes no options",
                         opts);
    }
  }

  s = NULL;
  rc = opt_str(pc, o, "path", false, &s);
  if (rc < 0) return rc;
  if (s != NULL) {
    rc = parse_path(pc, s, rule);
    if (rc < 0) return rc;
  }

  switch (rule->strategy) {
  case DSD__ANON_CONSTANT:
    v = json_object_get(o, "value");
    if (v == NULL) {
      return dsd_err_set(pc->err, DSD_EINVAL, "%s: missing option \"value\"",
                         pc->loc);
    }
    if (json_is_string(v)) {
      rc = dup_str(pc, json_string_value(v), json_string_length(v), &rule->value);
      rule->value_len = json_string_length(v);
    } else if (json_is_integer(v) || json_is_real(v)) {
      char tmp[64];
      if (json_is_integer(v)) {
        snprintf(tmp, sizeof(tmp), "%" JSON_INTEGER_FORMAT, json_integer_value(v));
      } else {
        snprintf(tmp, sizeof(tmp), "%.17g", json_real_value(v));
      }
      rc = dup_str(pc, tmp, strlen(tmp), &rule->value);
      rule->value_len = strlen(tmp);
    } else if (!json_is_null(v)) {
      rc = dsd_err_set(pc->err, DSD_EINVAL,
                       "%s: option \"value\" must be a string, a number or null",
                       pc->loc);
    }
    return rc;
  case DSD__ANON_HASH:
    return opt_int(pc, o, "length", 8, 64, false, &rule->length);
  case DSD__ANON_TRUNCATE:
    return opt_int(pc, o, "length", 0, 1000000, true, &rule->length);
  case DSD__ANON_EMAIL:
    v = json_object_get(o, "hash_domain");
    if (v != NULL) {
      if (!json_is_boolean(v)) {
        return dsd_err_set(pc->err, DSD_EINVAL,
                           "%s: option \"hash_domain\" must be true or false", pc->loc);
      }
      rule->hash_domain = json_is_true(v);
    }
    s = NULL;
    rc = opt_str(pc, o, "domain", false, &s);
    if (rc < 0 || s == NULL) return rc;
    if (rule->hash_domain) {
      return dsd_err_set(pc->err, DSD_EINVAL,
                         "%s: options \"domain\" and \"hash_domain\" exclude each other",
                         pc->loc);
    }
    {
      size_t n = strlen(s);
      bool ok = n > 0 && n <= 253 && s[0] != '.' && s[0] != '-' && s[n - 1] != '.';
      for (size_t i = 0; ok && i < n; i++) {
        ok = isalnum((unsigned char)s[i]) || s[i] == '.' || s[i] == '-';
      }
      if (!ok) {
        return dsd_err_set(pc->err, DSD_EINVAL,
                           "%s: option \"domain\" must be a domain name such as example.com",
                           pc->loc);
      }
      return dup_str(pc, s, n, &rule->domain);
    }
  case DSD__ANON_NAME:
    s = NULL;
    rc = opt_str(pc, o, "part", false, &s);
    if (rc < 0 || s == NULL) return rc;
    if (strcmp(s, "full") == 0) {
      rule->name_part = DSD__NAME_FULL;
    } else if (strcmp(s, "first") == 0) {
      rule->name_part = DSD__NAME_FIRST;
    } else if (strcmp(s, "last") == 0) {
      rule->name_part = DSD__NAME_LAST;
    } else {
      return dsd_err_set(pc->err, DSD_EINVAL,
                         "%s: option \"part\" must be \"full\", \"first\" or \"last\"",
                         pc->loc);
    }
    return 0;
  case DSD__ANON_PHONE:
  case DSD__ANON_DIGITS:
    return opt_int(pc, o, "keep_first", 0, 1000, false, &rule->keep_first);
  case DSD__ANON_MASK:
    rc = opt_int(pc, o, "keep_first", 0, 1000, false, &rule->keep_first);
    if (rc == 0) rc = opt_int(pc, o, "keep_last", 0, 1000, false, &rule->keep_last);
    if (rc < 0) return rc;
    s = NULL;
    rc = opt_str(pc, o, "char", false, &s);
    if (rc < 0 || s == NULL) return rc;
    {
      size_t n = strlen(s);
      if (n == 0 || n > 4 || dsd__anon_utf8_next(s, n, 0) != n ||
          (unsigned char)s[0] < 0x20) {
        return dsd_err_set(pc->err, DSD_EINVAL,
                           "%s: option \"char\" must be one printable character",
                           pc->loc);
      }
      memcpy(rule->mask_char, s, n);
      rule->mask_char_len = n;
    }
    return 0;
  case DSD__ANON_NOISE: {
    json_t *ratio = json_object_get(o, "ratio");
    json_t *amount = json_object_get(o, "amount");
    if ((ratio == NULL) == (amount == NULL)) {
      return dsd_err_set(pc->err, DSD_EINVAL,
                         "%s: noise needs exactly one of \"ratio\" and \"amount\" "
                         "HINT: {\"strategy\": \"noise\", \"ratio\": 0.1} moves values by up to 10%%",
                         pc->loc);
    }
    if (ratio != NULL) {
      double d = json_number_value(ratio);
      if (!json_is_number(ratio) || !(d > 0.0 && d <= 1.0)) {
        return dsd_err_set(pc->err, DSD_EINVAL,
                           "%s: option \"ratio\" must be a number greater than 0 and at most 1",
                           pc->loc);
      }
      rule->ratio = d;
    } else {
      double d = json_number_value(amount);
      if (!json_is_number(amount) || !(d > 0.0 && d <= 1e15)) {
        return dsd_err_set(pc->err, DSD_EINVAL,
                           "%s: option \"amount\" must be a number greater than 0 and at most 1e15",
                           pc->loc);
      }
      rule->amount = d;
    }
    return 0;
  }
  case DSD__ANON_DATE_SHIFT:
    rule->max_days = 30;
    rc = opt_int(pc, o, "max_days", 1, 36500, false, &rule->max_days);
    if (rc < 0) return rc;
    s = NULL;
    rc = opt_str(pc, o, "key", false, &s);
    if (rc < 0 || s == NULL) return rc;
    if (s[0] == '\0') {
      return dsd_err_set(pc->err, DSD_EINVAL, "%s: option \"key\" must name a column",
                         pc->loc);
    }
    return dup_str(pc, s, strlen(s), &rule->key_column);
  case DSD__ANON_REGEX_REPLACE: {
    const char *pat = NULL;
    const char *rep = "";
    int rerc;
    rc = opt_str(pc, o, "pattern", true, &pat);
    if (rc == 0) rc = opt_str(pc, o, "replacement", false, &rep);
    if (rc < 0) return rc;
    rerc = regcomp(&rule->re, pat, REG_EXTENDED);
    if (rerc != 0) {
      char why[128];
      regerror(rerc, &rule->re, why, sizeof(why));
      return dsd_err_set(pc->err, DSD_EINVAL,
                         "%s: option \"pattern\" is not a valid POSIX extended regex: %s",
                         pc->loc, why);
    }
    rule->has_re = true;
    for (const char *p = rep; *p; p++) {
      if (*p == '\\' && isdigit((unsigned char)p[1])) {
        size_t g = (size_t)(p[1] - '0');
        if (g > rule->re.re_nsub) {
          return dsd_err_set(pc->err, DSD_EINVAL,
                             "%s: option \"replacement\" refers to group \\%zu but the "
                             "pattern has %zu",
                             pc->loc, g, (size_t)rule->re.re_nsub);
        }
        p++;
      }
    }
    return dup_str(pc, rep, strlen(rep), &rule->replacement);
  }
  default:
    return 0;
  }
}

static int parse_rule(parse_ctx_t *pc, const char *column, json_t *v,
                      struct dsd__anon_rule *rule) {
  int rc = 0;

  memset(rule, 0, sizeof(*rule));
  rule->mask_char[0] = '*';
  rule->mask_char_len = 1;
  if (column[0] == '\0') {
    return dsd_err_set(pc->err, DSD_EINVAL, "%s: column name must not be empty", pc->loc);
  }
  rc = dup_str(pc, column, strlen(column), &rule->column);
  if (rc < 0) return rc;
  if (json_is_string(v)) {
    rc = parse_strategy_name(pc, v, &rule->strategy);
    if (rc < 0) return rc;
    if (rule->strategy == DSD__ANON_CONSTANT || rule->strategy == DSD__ANON_TRUNCATE ||
        rule->strategy == DSD__ANON_REGEX_REPLACE || rule->strategy == DSD__ANON_NOISE) {
      return dsd_err_set(pc->err, DSD_EINVAL,
                         "%s: strategy \"%s\" needs options HINT: write it as "
                         "{\"strategy\": \"%s\", ...}",
                         pc->loc, json_string_value(v), json_string_value(v));
    }
    if (rule->strategy == DSD__ANON_DATE_SHIFT) rule->max_days = 30;
    return 0;
  }
  if (!json_is_object(v)) {
    return dsd_err_set(pc->err, DSD_EINVAL,
                       "%s: must be a strategy name or an object with \"strategy\"",
                       pc->loc);
  }
  if (json_object_get(v, "strategy") == NULL) {
    return dsd_err_set(pc->err, DSD_EINVAL, "%s: missing \"strategy\" " STRATEGY_HINT,
                       pc->loc);
  }
  rc = parse_strategy_name(pc, json_object_get(v, "strategy"), &rule->strategy);
  if (rc < 0) return rc;
  return parse_options(pc, v, rule);
}

/* ------------------------------------------------------------------ */
/* Public API                                                          */

void dsd_anon_rules_free(dsd_anon_rules_t *r) {
  if (r == NULL) return;
  for (size_t i = 0; i < r->ntables; i++) {
    for (size_t j = 0; j < r->tables[i].nrules; j++) rule_clear(&r->tables[i].rules[j]);
    free(r->tables[i].rules);
    free(r->tables[i].name);
  }
  free(r->tables);
  json_decref(r->public_json);
  dsd__anon_key_wipe(&r->key);
  free(r);
}

static int parse_tables(parse_ctx_t *top, json_t *tables, dsd_anon_rules_t *r) {
  const char *tname;
  json_t *tv;
  char loc[700];
  char trepr[300];
  char crepr[300];
  int rc = 0;

  if (!json_is_object(tables)) {
    return dsd_err_set(top->err, DSD_EINVAL,
                       "anonymize.tables: must be an object mapping table names to column rules");
  }
  r->tables = calloc(json_object_size(tables) + 1, sizeof(*r->tables));
  if (r->tables == NULL) return dsd_err_set(top->err, DSD_ENOMEM, "out of memory");

  json_object_foreach(tables, tname, tv) {
    dsd__anon_table_rules_t *t = &r->tables[r->ntables];
    const char *cname;
    json_t *cv;
    parse_ctx_t pc = {loc, top->err};

    dsd__anon_key_repr(trepr, sizeof(trepr), tname);
    snprintf(loc, sizeof(loc), "anonymize.tables.%s", trepr);
    if (tname[0] == '\0') {
      return dsd_err_set(top->err, DSD_EINVAL, "%s: table name must not be empty", loc);
    }
    if (!json_is_object(tv)) {
      return dsd_err_set(top->err, DSD_EINVAL,
                         "%s: must be an object mapping column names to rules", loc);
    }
    rc = dup_str(&pc, tname, strlen(tname), &t->name);
    if (rc < 0) return rc;
    r->ntables++;
    t->rules = calloc(json_object_size(tv) + 1, sizeof(*t->rules));
    if (t->rules == NULL) return dsd_err_set(top->err, DSD_ENOMEM, "out of memory");
    json_object_foreach(tv, cname, cv) {
      dsd__anon_key_repr(crepr, sizeof(crepr), cname);
      snprintf(loc, sizeof(loc), "anonymize.tables.%s.%s", trepr, crepr);
      rc = parse_rule(&pc, cname, cv, &t->rules[t->nrules]);
      t->nrules++; /* counted even on error so rule_clear frees it */
      if (rc < 0) return rc;
    }
  }
  return 0;
}

int dsd_anon_rules_parse(const json_t *j, dsd_anon_rules_t **out,
                         dsd_err_t *err) {
  dsd_anon_rules_t *r = NULL;
  parse_ctx_t pc = {"anonymize", err};
  const char *k;
  json_t *v;
  json_t *salt;
  json_t *def;
  json_t *tables;
  int rc = 0;

  *out = NULL;
  if (!json_is_object(j)) {
    return dsd_err_set(err, DSD_EINVAL,
                       "anonymize: must be an object with \"tables\" and optional "
                       "\"default\" and \"salt\"");
  }
  r = calloc(1, sizeof(*r));
  if (r == NULL) return dsd_err_set(err, DSD_ENOMEM, "out of memory");

  /* json_object_foreach needs a non-const object; nothing is modified. */
  json_object_foreach((json_t *)j, k, v) {
    if (strcmp(k, "salt") != 0 && strcmp(k, "default") != 0 && strcmp(k, "tables") != 0) {
      rc = dsd_err_set(err, DSD_EINVAL,
                       "anonymize: unknown key \"%s\" HINT: the keys are salt, default "
                       "and tables",
                       k);
      goto cleanup;
    }
  }

  def = json_object_get(j, "default");
  if (def != NULL) {
    const char *d = json_is_string(def) ? json_string_value(def) : "";
    if (strcmp(d, "keep") == 0) {
      r->allow_list = false;
    } else if (strcmp(d, "anonymize") == 0) {
      r->allow_list = true;
    } else {
      rc = dsd_err_set(err, DSD_EINVAL,
                       "anonymize.default: must be \"keep\" or \"anonymize\"");
      goto cleanup;
    }
  }

  tables = json_object_get(j, "tables");
  if (tables != NULL) {
    rc = parse_tables(&pc, tables, r);
    if (rc < 0) goto cleanup;
  }

  salt = json_object_get(j, "salt");
  if (salt != NULL) {
    /* The message must not quote the salt: it is a secret. */
    if (!json_is_string(salt) || json_string_length(salt) < 8) {
      rc = dsd_err_set(err, DSD_EINVAL,
                       "anonymize.salt: must be a string of at least 8 characters "
                       "HINT: leave it out to use a random salt per dump");
      goto cleanup;
    }
    dsd_redact_register(json_string_value(salt));
    dsd__anon_key_init(&r->key, json_string_value(salt), json_string_length(salt));
    r->has_salt = true;
    r->salt_user = true;
  }

  /* The manifest copy is built member by member so that the salt string is
   * never duplicated into it. */
  r->public_json = json_object();
  if (r->public_json == NULL) {
    rc = dsd_err_set(err, DSD_ENOMEM, "out of memory");
    goto cleanup;
  }
  json_object_foreach((json_t *)j, k, v) {
    if (strcmp(k, "salt") == 0) continue;
    if (json_object_set_new(r->public_json, k, json_deep_copy(v)) != 0) {
      rc = dsd_err_set(err, DSD_ENOMEM, "out of memory");
      goto cleanup;
    }
  }

  *out = r;
  r = NULL;
cleanup:
  dsd_anon_rules_free(r);
  return rc;
}

int dsd_anon_rules_set_random_salt(dsd_anon_rules_t *r, dsd_err_t *err) {
  unsigned char salt[32];
  if (r->has_salt) return 0;
  if (RAND_bytes(salt, sizeof(salt)) != 1) {
    return dsd_err_set(err, DSD_EINTERNAL,
                       "anonymize: cannot draw a random salt from the system");
  }
  dsd__anon_key_init(&r->key, salt, sizeof(salt));
  OPENSSL_cleanse(salt, sizeof(salt));
  r->has_salt = true;
  r->salt_user = false;
  return 0;
}

bool dsd_anon_rules_has_salt(const dsd_anon_rules_t *r) { return r->has_salt; }

bool dsd_anon_rules_salt_is_user(const dsd_anon_rules_t *r) { return r->salt_user; }

bool dsd_anon_rules_active(const dsd_anon_rules_t *r) {
  if (r->allow_list) return true;
  for (size_t i = 0; i < r->ntables; i++) {
    for (size_t j = 0; j < r->tables[i].nrules; j++) {
      if (r->tables[i].rules[j].strategy != DSD__ANON_KEEP) return true;
    }
  }
  return false;
}

json_t *dsd_anon_rules_to_json(const dsd_anon_rules_t *r) {
  return json_deep_copy(r->public_json);
}

const dsd__anon_table_rules_t *dsd__anon_find_table(const dsd_anon_rules_t *r,
                                                     const char *table) {
  for (size_t i = 0; i < r->ntables; i++) {
    if (strcmp(r->tables[i].name, table) == 0) return &r->tables[i];
  }
  return NULL;
}

int dsd_anon_rules_check_tables(const dsd_anon_rules_t *r,
                                const char *const *existing, size_t n,
                                dsd_err_t *err) {
  for (size_t i = 0; i < r->ntables; i++) {
    const char *want = r->tables[i].name;
    const char *near = NULL;
    const char *wdot = strchr(want, '.');
    bool found = false;
    char repr[300];

    for (size_t j = 0; j < n && !found; j++) {
      const char *have = existing[j];
      const char *hdot = strchr(have, '.');
      if (strcmp(have, want) == 0) {
        found = true;
      } else if (strcasecmp(have, want) == 0 ||
                 (hdot && strcmp(hdot + 1, wdot ? wdot + 1 : want) == 0)) {
        near = have; /* same name, other case or other schema */
      }
    }
    if (found) continue;
    dsd__anon_key_repr(repr, sizeof(repr), want);
    if (near != NULL) {
      return dsd_err_set(err, DSD_ENOTFOUND,
                         "anonymize.tables.%s: table \"%s\" does not exist HINT: did "
                         "you mean \"%s\"?",
                         repr, want, near);
    }
    return dsd_err_set(err, DSD_ENOTFOUND,
                       "anonymize.tables.%s: table \"%s\" does not exist HINT: name "
                       "tables as schema.table (pg) or db.table (mysql, mongo)",
                       repr, want);
  }
  return 0;
}
