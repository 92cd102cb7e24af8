/*
 * plan.c - bind anonymization rules to one table's columns.
 *
 * dsd_anon_plan_table() runs once per table when the driver knows the
 * columns: it resolves each column to its rule (or the allow-list default),
 * checks that every rule names an existing column and fits the column type,
 * and records the row-key column of keyed date shifts. The per-value calls
 * (dsd_anon_apply*) then only index an array and dispatch, which keeps the
 * streaming path cheap and lock-free.
 *
 * Type names of the dialects are mapped to dsd_anon_type_t here too
 * (dsd_anon_type_parse), so drivers share one mapping.
 */
#include "anonymize/anon_internal.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

typedef struct col_plan {
  const struct dsd__anon_rule *rule; /* NULL: kept */
  dsd_anon_type_t type;
  char *type_name; /* owned copy behind type.name */
  int key_col;     /* -1: none */
} col_plan_t;

struct dsd_anon_table_plan {
  const dsd_anon_rules_t *rules; /* borrowed */
  const dsd__anon_table_rules_t *table; /* borrowed; NULL when unlisted */
  bool schemaless;
  size_t ncols;
  col_plan_t *cols;
};

const struct dsd__anon_rule dsd__anon_auto_rule = {
    .strategy = DSD__ANON_AUTO,
    .mask_char = "*",
    .mask_char_len = 1,
    .max_days = 365,
};

/* ------------------------------------------------------------------ */
/* Type names                                                          */

/* Whether type name s is the word w, possibly followed by "(", " " or
 * "[" (so "int4range" and "jsonpath" are not taken for int4 and json). */
static bool starts(const char *s, const char *w) {
  size_t n = strlen(w);
  return strncasecmp(s, w, n) == 0 &&
         (s[n] == '\0' || s[n] == '(' || s[n] == ' ' || s[n] == '[');
}

/* First "(n" or "(p,s)" in s. */
static void type_params(const char *s, int *a, int *b) {
  const char *p = strchr(s, '(');
  *a = 0;
  *b = -1;
  if (p == NULL) return;
  *a = atoi(p + 1);
  p = strchr(p, ',');
  if (p != NULL && (strchr(s, ')') == NULL || p < strchr(s, ')'))) *b = atoi(p + 1);
}

static void parse_scalar(bool mysql, const char *n, dsd_anon_type_t *t) {
  int a, b;
  type_params(n, &a, &b);
  t->is_unsigned = mysql && strstr(n, "unsigned") != NULL;
  if (starts(n, "character varying") || starts(n, "varchar") ||
      starts(n, "nvarchar") || starts(n, "national varchar")) {
    t->kind = DSD_ANON_TEXT;
    t->max_len = a;
  } else if (starts(n, "character") || starts(n, "char") || starts(n, "bpchar") ||
             starts(n, "nchar") || starts(n, "national char")) {
    t->kind = DSD_ANON_TEXT;
    t->max_len = a > 0 ? a : 1; /* pg "character" alone is char(1) */
    t->fixed_len = true;
  } else if (starts(n, "text") || starts(n, "citext") || starts(n, "name") ||
             starts(n, "mediumtext") || starts(n, "longtext")) {
    t->kind = DSD_ANON_TEXT;
  } else if (starts(n, "tinytext")) {
    t->kind = DSD_ANON_TEXT;
    t->max_len = 255;
  } else if (mysql && strncasecmp(n, "tinyint(1)", 10) == 0) {
    t->kind = DSD_ANON_BOOL;
  } else if (starts(n, "tinyint")) {
    t->kind = DSD_ANON_INT1;
  } else if (starts(n, "smallint") || starts(n, "int2")) {
    t->kind = DSD_ANON_INT2;
  } else if (starts(n, "mediumint")) {
    t->kind = DSD_ANON_INT3;
  } else if (starts(n, "integer") || starts(n, "int4") || starts(n, "int")) {
    t->kind = DSD_ANON_INT4;
  } else if (starts(n, "bigint") || starts(n, "int8")) {
    t->kind = DSD_ANON_INT8;
  } else if (starts(n, "numeric") || starts(n, "decimal")) {
    t->kind = DSD_ANON_NUMERIC;
    t->precision = a;
    t->scale = a > 0 ? (b >= 0 ? b : 0) : -1;
  } else if (starts(n, "real") || starts(n, "double precision") || starts(n, "double") ||
             starts(n, "float") || starts(n, "float4") || starts(n, "float8")) {
    t->kind = DSD_ANON_FLOAT;
  } else if (starts(n, "date")) {
    t->kind = DSD_ANON_DATE;
  } else if (starts(n, "datetime")) {
    t->kind = DSD_ANON_TIMESTAMP;
  } else if (starts(n, "timestamp") || starts(n, "timestamptz")) {
    t->kind = (strstr(n, "with time zone") && !strstr(n, "without")) ||
                      starts(n, "timestamptz")
                  ? DSD_ANON_TIMESTAMPTZ
                  : DSD_ANON_TIMESTAMP;
    if (mysql) {
      t->min_year = 1970; /* mysql TIMESTAMP is a 32-bit epoch */
      t->max_year = 2037;
    }
  } else if (starts(n, "time") || starts(n, "timetz")) {
    t->kind = DSD_ANON_TIME;
  } else if (starts(n, "uuid")) {
    t->kind = DSD_ANON_UUID;
  } else if (starts(n, "boolean") || starts(n, "bool")) {
    t->kind = DSD_ANON_BOOL;
  } else if (starts(n, "json") || starts(n, "jsonb")) {
    t->kind = DSD_ANON_JSON;
  } else if (starts(n, "bytea") || starts(n, "blob") || starts(n, "tinyblob") ||
             starts(n, "mediumblob") || starts(n, "longblob") || starts(n, "binary") ||
             starts(n, "varbinary")) {
    t->kind = DSD_ANON_BYTES;
  } else {
    t->kind = DSD_ANON_OTHER;
  }
  if (mysql && t->kind == DSD_ANON_DATE) {
    t->min_year = 1000;
    t->max_year = 9999;
  }
}

int dsd_anon_type_parse(const char *dialect, const char *name,
                        dsd_anon_type_t *out) {
  bool mysql;
  size_t n = strlen(name);

  memset(out, 0, sizeof(*out));
  out->scale = -1;
  out->name = name;
  if (strcmp(dialect, "pg") == 0) {
    mysql = false;
  } else if (strcmp(dialect, "mysql") == 0) {
    mysql = true;
  } else {
    return DSD_EINVAL;
  }
  if (!mysql && n > 2 && strcmp(name + n - 2, "[]") == 0) {
    dsd_anon_type_t elem;
    memset(&elem, 0, sizeof(elem));
    elem.scale = -1;
    parse_scalar(false, name, &elem);
    out->kind = DSD_ANON_ARRAY;
    out->elem = elem.kind == DSD_ANON_ARRAY ? DSD_ANON_OTHER : elem.kind;
    out->max_len = elem.max_len;
    out->fixed_len = elem.fixed_len;
    out->precision = elem.precision;
    out->scale = elem.scale;
    return 0;
  }
  parse_scalar(mysql, name, out);
  return 0;
}

/* ------------------------------------------------------------------ */
/* Compatibility of strategies and types                               */

static bool is_int(dsd_anon_kind_t k) {
  return k == DSD_ANON_INT1 || k == DSD_ANON_INT2 || k == DSD_ANON_INT3 ||
         k == DSD_ANON_INT4 || k == DSD_ANON_INT8;
}

bool dsd__anon_strategy_fits(dsd__anon_strategy_t s, dsd_anon_kind_t k,
                             bool has_path) {
  if (s == DSD__ANON_KEEP || s == DSD__ANON_NULL || s == DSD__ANON_CONSTANT) return true;
  /* Inside a json column the value types are only known at run time. */
  if (k == DSD_ANON_JSON && has_path) return true;
  switch (s) {
  case DSD__ANON_HASH:
    return k == DSD_ANON_TEXT || is_int(k) || k == DSD_ANON_NUMERIC ||
           k == DSD_ANON_FLOAT || k == DSD_ANON_UUID || k == DSD_ANON_BYTES ||
           k == DSD_ANON_JSON;
  case DSD__ANON_EMAIL:
  case DSD__ANON_NAME:
  case DSD__ANON_MASK:
  case DSD__ANON_TRUNCATE:
  case DSD__ANON_REGEX_REPLACE:
    return k == DSD_ANON_TEXT;
  case DSD__ANON_PHONE:
  case DSD__ANON_DIGITS:
    return k == DSD_ANON_TEXT || k == DSD_ANON_NUMERIC;
  case DSD__ANON_NOISE:
    return is_int(k) || k == DSD_ANON_NUMERIC || k == DSD_ANON_FLOAT;
  case DSD__ANON_DATE_SHIFT:
    return k == DSD_ANON_DATE || k == DSD_ANON_TIMESTAMP || k == DSD_ANON_TIMESTAMPTZ;
  case DSD__ANON_AUTO:
    return k != DSD_ANON_OTHER;
  default:
    return false;
  }
}

static const char *kind_name(dsd_anon_kind_t k) {
  static const char *const names[] = {
      "other", "text", "tinyint", "smallint", "mediumint", "integer", "bigint",
      "numeric", "float", "date", "timestamp", "timestamptz", "time", "uuid",
      "boolean", "json", "bytes", "array"};
  return (size_t)k < sizeof(names) / sizeof(names[0]) ? names[k] : "other";
}

static const char *type_label(const dsd_anon_type_t *t) {
  return t->name && t->name[0] ? t->name : kind_name(t->kind);
}

/* ------------------------------------------------------------------ */
/* Plans                                                               */

void dsd_anon_plan_free(dsd_anon_table_plan_t *p) {
  if (p == NULL) return;
  for (size_t i = 0; i < p->ncols; i++) free(p->cols[i].type_name);
  free(p->cols);
  free(p);
}

static int check_column(const dsd_anon_table_plan_t *p, const char *trepr,
                        const dsd_anon_column_t *col, const struct dsd__anon_rule *rule,
                        dsd_err_t *err) {
  char crepr[300];
  const dsd_anon_type_t *t = &col->type;
  dsd_anon_kind_t k = t->kind == DSD_ANON_ARRAY ? t->elem : t->kind;

  dsd__anon_key_repr(crepr, sizeof(crepr), col->name);
  if (rule->strategy == DSD__ANON_AUTO && !dsd__anon_strategy_fits(DSD__ANON_AUTO, k, false)) {
    return dsd_err_set(err, DSD_EINVAL,
                       "anonymize.tables.%s: column \"%s\" has type %s, which allow-list "
                       "mode cannot anonymize HINT: give it a rule: \"keep\", \"null\" or "
                       "{\"strategy\": \"constant\", \"value\": ...}",
                       trepr, col->name, type_label(t));
  }
  if (rule->has_path && t->kind != DSD_ANON_JSON) {
    return dsd_err_set(err, DSD_EINVAL,
                       "anonymize.tables.%s.%s: option \"path\" needs a json column, "
                       "but the column has type %s",
                       trepr, crepr, type_label(t));
  }
  /* An array column as a whole can be kept, nulled or set to a constant;
   * other strategies apply to its elements. */
  if (t->kind == DSD_ANON_ARRAY && (rule->strategy == DSD__ANON_NULL ||
                                    rule->strategy == DSD__ANON_CONSTANT)) {
    k = DSD_ANON_ARRAY;
  }
  if (!dsd__anon_strategy_fits(rule->strategy, k, rule->has_path)) {
    return dsd_err_set(err, DSD_EINVAL,
                       "anonymize.tables.%s.%s: strategy \"%s\" cannot apply to type %s",
                       trepr, crepr, dsd__anon_strategy_names[rule->strategy],
                       type_label(t));
  }
  if (col->not_null && !rule->has_path &&
      (rule->strategy == DSD__ANON_NULL ||
       (rule->strategy == DSD__ANON_CONSTANT && rule->value == NULL))) {
    return dsd_err_set(err, DSD_EINVAL,
                       "anonymize.tables.%s.%s: the column is NOT NULL, so it cannot be "
                       "set to null HINT: use constant, hash or another strategy",
                       trepr, crepr);
  }
  if (rule->strategy == DSD__ANON_CONSTANT && rule->value != NULL && !rule->has_path &&
      t->kind != DSD_ANON_ARRAY) {
    const char *why = "";
    if (dsd__anon_check_constant(t, rule->value, rule->value_len, &why) < 0) {
      return dsd_err_set(err, DSD_EINVAL,
                         "anonymize.tables.%s.%s: constant \"%s\" is not a valid %s value: %s",
                         trepr, crepr, rule->value, type_label(t), why);
    }
  }
  if (rule->strategy == DSD__ANON_EMAIL && !rule->has_path && t->max_len > 0) {
    size_t dom = rule->hash_domain ? 20 : rule->domain ? strlen(rule->domain) : 11;
    /* "u" + 8 hex + "@" + domain is the shortest address kept distinct
     * enough (32 bits) to be worth calling an email. */
    if ((size_t)t->max_len < 10 + dom) {
      return dsd_err_set(err, DSD_EINVAL,
                         "anonymize.tables.%s.%s: type %s is too short for an anonymized "
                         "email (at least %zu characters) HINT: use hash or a shorter domain",
                         trepr, crepr, type_label(t), 10 + dom);
    }
  }
  return 0;
}

int dsd_anon_plan_table(const dsd_anon_rules_t *r, const char *table,
                        const dsd_anon_column_t *cols, size_t ncols,
                        dsd_anon_table_plan_t **out, dsd_err_t *err) {
  const dsd__anon_table_rules_t *tr = dsd__anon_find_table(r, table);
  dsd_anon_table_plan_t *p = NULL;
  char trepr[300];
  bool any = false;
  int rc = 0;

  *out = NULL;
  dsd__anon_key_repr(trepr, sizeof(trepr), table);
  /* A listed table is checked even when all its rules say keep, so that a
   * misspelt column is reported. */
  if (!r->allow_list && tr == NULL) return 0;
  if (!r->has_salt) {
    return dsd_err_set(err, DSD_EINTERNAL,
                       "anonymize: no salt set before planning table %s "
                       "HINT: call dsd_anon_rules_set_random_salt at job start",
                       table);
  }
  p = calloc(1, sizeof(*p));
  if (p == NULL) return dsd_err_set(err, DSD_ENOMEM, "out of memory");
  p->rules = r;
  p->table = tr;
  p->schemaless = cols == NULL && ncols == 0;
  p->ncols = ncols;
  if (ncols > 0) {
    p->cols = calloc(ncols, sizeof(*p->cols));
    if (p->cols == NULL) {
      rc = dsd_err_set(err, DSD_ENOMEM, "out of memory");
      goto cleanup;
    }
  }

  /* Every rule must name a column of the table. */
  for (size_t i = 0; tr && !p->schemaless && i < tr->nrules; i++) {
    bool found = false;
    for (size_t c = 0; c < ncols && !found; c++) {
      found = strcmp(cols[c].name, tr->rules[i].column) == 0;
    }
    if (!found) {
      rc = dsd_err_set(err, DSD_ENOTFOUND,
                       "anonymize.tables.%s: column \"%s\" does not exist in table %s",
                       trepr, tr->rules[i].column, table);
      goto cleanup;
    }
  }

  for (size_t c = 0; c < ncols; c++) {
    const struct dsd__anon_rule *rule = NULL;
    col_plan_t *cp = &p->cols[c];

    cp->key_col = -1;
    cp->type = cols[c].type;
    if (cols[c].type.name != NULL) {
      cp->type_name = strdup(cols[c].type.name);
      if (cp->type_name == NULL) {
        rc = dsd_err_set(err, DSD_ENOMEM, "out of memory");
        goto cleanup;
      }
    }
    cp->type.name = cp->type_name;
    for (size_t i = 0; tr && i < tr->nrules; i++) {
      if (strcmp(tr->rules[i].column, cols[c].name) == 0) rule = &tr->rules[i];
    }
    if (rule == NULL && r->allow_list) rule = &dsd__anon_auto_rule;
    if (rule == NULL) continue;
    rc = check_column(p, trepr, &cols[c], rule, err);
    if (rc < 0) goto cleanup;
    if (rule->strategy == DSD__ANON_KEEP) continue;
    if (rule->strategy == DSD__ANON_AUTO && cols[c].type.kind == DSD_ANON_BOOL) {
      continue; /* booleans are kept in allow-list mode: see anonymize.h */
    }
    if (rule->key_column != NULL) {
      for (size_t k = 0; k < ncols; k++) {
        if (strcmp(cols[k].name, rule->key_column) == 0) cp->key_col = (int)k;
      }
      if (cp->key_col < 0) {
        char crepr[300];
        dsd__anon_key_repr(crepr, sizeof(crepr), cols[c].name);
        rc = dsd_err_set(err, DSD_ENOTFOUND,
                         "anonymize.tables.%s.%s: key column \"%s\" does not exist in "
                         "table %s",
                         trepr, crepr, rule->key_column, table);
        goto cleanup;
      }
    }
    cp->rule = rule;
    any = true;
  }

  if (!any && !p->schemaless) goto cleanup; /* nothing to do: NULL plan */
  *out = p;
  p = NULL;
cleanup:
  dsd_anon_plan_free(p);
  return rc;
}

bool dsd_anon_plan_column_active(const dsd_anon_table_plan_t *p, size_t col) {
  return p != NULL && col < p->ncols && p->cols[col].rule != NULL;
}

int dsd_anon_plan_row_key(const dsd_anon_table_plan_t *p, size_t col) {
  if (p == NULL || col >= p->ncols || p->cols[col].rule == NULL) return -1;
  return p->cols[col].key_col;
}

static int apply_col(const dsd_anon_table_plan_t *p, size_t col, const char *in,
                     size_t len, bool is_null, bool keyed, const char *key,
                     size_t keylen, dsd_buf_t *out, bool *out_null) {
  const col_plan_t *cp;
  dsd__anon_ctx_t c;

  if (p == NULL || col >= p->ncols) return DSD_EINVAL;
  cp = &p->cols[col];
  if (cp->rule == NULL) {
    /* Kept: copy, so callers can treat every column alike. */
    dsd_buf_reset(out);
    *out_null = is_null;
    if (is_null) return 0;
    return dsd_buf_append(out, in, len);
  }
  if (cp->key_col >= 0 && !keyed) return DSD_EINVAL;
  c.key = &p->rules->key;
  c.rowkey = cp->key_col >= 0 ? key : NULL;
  c.rowkey_len = cp->key_col >= 0 ? keylen : 0;
  return dsd__anon_transform(&c, cp->rule, &cp->type, in, len, is_null, out, out_null);
}

int dsd_anon_apply(const dsd_anon_table_plan_t *p, size_t col, const char *in,
                   size_t len, bool is_null, dsd_buf_t *out, bool *out_null) {
  return apply_col(p, col, in, len, is_null, false, NULL, 0, out, out_null);
}

int dsd_anon_apply_keyed(const dsd_anon_table_plan_t *p, size_t col,
                         const char *in, size_t len, bool is_null,
                         const char *key, size_t keylen, dsd_buf_t *out,
                         bool *out_null) {
  return apply_col(p, col, in, len, is_null, true, key, keylen, out, out_null);
}

/* ------------------------------------------------------------------ */
/* Document fields                                                     */

const dsd_anon_rule_t *dsd_anon_plan_field_rule(const dsd_anon_table_plan_t *p,
                                                const char *path) {
  const dsd__anon_table_rules_t *tr;
  if (p == NULL) return NULL;
  tr = p->table;
  for (size_t i = 0; tr && i < tr->nrules; i++) {
    if (strcmp(tr->rules[i].column, path) == 0) {
      return tr->rules[i].strategy == DSD__ANON_KEEP ? NULL : &tr->rules[i];
    }
  }
  /* A field below a kept subdocument ("address": "keep") is kept too. */
  for (size_t i = 0; tr && i < tr->nrules; i++) {
    size_t n = strlen(tr->rules[i].column);
    if (tr->rules[i].strategy == DSD__ANON_KEEP &&
        strncmp(tr->rules[i].column, path, n) == 0 && path[n] == '.') {
      return NULL;
    }
  }
  return p->rules->allow_list ? &dsd__anon_auto_rule : NULL;
}

bool dsd_anon_rule_is_default(const dsd_anon_rule_t *rule) {
  return rule != NULL && rule->strategy == DSD__ANON_AUTO;
}

bool dsd_anon_plan_field_has_rules_below(const dsd_anon_table_plan_t *p,
                                         const char *path) {
  const dsd__anon_table_rules_t *tr;
  size_t n = strlen(path);
  if (p == NULL) return false;
  if (p->rules->allow_list) return true;
  tr = p->table;
  for (size_t i = 0; tr && i < tr->nrules; i++) {
    if (strncmp(tr->rules[i].column, path, n) == 0 && tr->rules[i].column[n] == '.') {
      return true;
    }
  }
  return false;
}

int dsd_anon_apply_field(const dsd_anon_table_plan_t *p,
                         const dsd_anon_rule_t *rule,
                         const dsd_anon_type_t *type, const char *in,
                         size_t len, bool is_null, dsd_buf_t *out,
                         bool *out_null) {
  dsd__anon_ctx_t c = {&p->rules->key, NULL, 0};
  int rc;
  if (rule == NULL) {
    dsd_buf_reset(out);
    *out_null = is_null;
    return is_null ? 0 : dsd_buf_append(out, in, len);
  }
  if (rule->strategy == DSD__ANON_AUTO && type->kind == DSD_ANON_BOOL) {
    dsd_buf_reset(out);
    *out_null = is_null;
    return is_null ? 0 : dsd_buf_append(out, in, len);
  }
  if (!dsd__anon_strategy_fits(rule->strategy,
                               type->kind == DSD_ANON_ARRAY ? type->elem : type->kind,
                               rule->has_path)) {
    dsd_buf_reset(out);
    *out_null = true;
    return 0;
  }
  rc = dsd__anon_transform(&c, rule, type, in, len, is_null, out, out_null);
  if (rc == DSD_EINVAL) {
    /* A value the rule cannot read: drop it rather than leak it. */
    dsd_buf_reset(out);
    *out_null = true;
    rc = 0;
  }
  return rc;
}
