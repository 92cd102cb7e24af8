/*
 * anonymize.h - anonymization rules and value transforms.
 *
 * A dump request may carry anonymization rules (the "anonymize" parameter).
 * This module parses and validates them, builds a per-table plan once the
 * table's columns are known, and transforms values one at a time while rows
 * stream from the dialect driver to the archive. It does no I/O and keeps no
 * global state: everything hangs off a dsd_anon_rules_t.
 *
 * Typical use by a dump job:
 *
 *   dsd_anon_rules_parse(params_anonymize, &rules, err);   // at provision
 *   dsd_anon_rules_set_random_salt(rules, err);            // at job start
 *   dsd_anon_rules_check_tables(rules, names, n, err);     // before data moves
 *   for each table:
 *     dsd_anon_plan_table(rules, "public.customers", cols, ncols, &plan, err);
 *     for each row, for each column c with dsd_anon_plan_column_active(plan, c):
 *       dsd_anon_apply(plan, c, value, len, is_null, &scratch, &out_null);
 *     dsd_anon_plan_free(plan);
 *   manifest["anonymize"] = dsd_anon_rules_to_json(rules); // salt left out
 *   dsd_anon_rules_free(rules);
 *
 * Rules (JSON):
 *
 *   { "salt": "optional secret, at least 8 characters",
 *     "default": "keep" | "anonymize",
 *     "tables": { "public.customers": {
 *         "email": "email", "full_name": "name",
 *         "ssn": {"strategy": "mask", "keep_last": 4}, "notes": "null",
 *         "payload": {"strategy": "hash", "path": "$.user.email"} } } }
 *
 * Table keys are "schema.table" (pg), "db.table" (mysql), "db.collection"
 * (mongo). Column keys are column names, or dotted field paths for mongo
 * documents ("address.city"; "items.sku" applies to every element of the
 * array "items"). A column rule is a strategy name or an object
 * {"strategy": NAME, options...}. Unknown keys, strategies and options, bad
 * option values and regexes that do not compile are rejected by the parser
 * with a message naming the rule, e.g.
 *   anonymize.tables."public.customers".ssn: unknown strategy "masc"
 *   HINT: use one of keep, null, constant, ...
 *
 * Keying. Every transform is derived from HMAC-SHA256(salt, tag || value)
 * where tag names the strategy, never the table or column: equal inputs give
 * equal outputs in every table (foreign keys and joins survive) and in every
 * dump made with the same salt. Without a "salt" the job draws 32 random
 * bytes, so two dumps cannot be linked to each other. The salt is never
 * stored in clear after parsing (only the HMAC key schedule is kept), is
 * left out of dsd_anon_rules_to_json, and a user-given salt is registered
 * with the log redactor.
 *
 * Strategies (options in parentheses; "path" applies the strategy to values
 * inside a json/jsonb column selected by a JSONPath subset: $.a.b, $.a[*].b,
 * $.a[0]; a name step applied to an array visits every element):
 *
 *   keep          the value is copied unchanged.
 *   null          NULL (refused at plan time on a NOT NULL column).
 *   constant      (value: string, number or null) every value, NULL
 *                 included, becomes value; checked against the column type
 *                 at plan time.
 *   hash          (length 8..64, path) text: 32 hex digits of the HMAC
 *                 (128 bits) or, when the column is shorter, base-62 digits
 *                 cut to the column length; integers: a keyed permutation of
 *                 the type's range that keeps the sign, so distinct values
 *                 stay distinct and in range (primary and foreign keys keep
 *                 working); numeric/float: every digit replaced, sign, point
 *                 and exponent kept; uuid: a version-4 shaped uuid from the
 *                 HMAC; bytea/blob: HMAC bytes of the same length; json
 *                 without path: every string value (not keys) hashed.
 *                 Distinct text inputs give distinct outputs in practice
 *                 (128 bits; fewer when the column is short).
 *   email         (domain, hash_domain, path) "u<16 hex>@example.com": 64
 *                 HMAC bits, so UNIQUE constraints survive. domain sets
 *                 another literal domain; hash_domain: true gives
 *                 "<8 hex>.example.com" per input domain. A varchar(n) too
 *                 short for the shortest form (8 hex digits) is a plan error.
 *   name          (part: "full" | "first" | "last", path) a name picked from
 *                 small built-in lists by HMAC. NOT unique: 64 x 64 names;
 *                 do not use it on a UNIQUE column.
 *   phone, digits (keep_first, path) every ASCII digit replaced by a keyed
 *                 digit, separators, '+' and length kept; the first
 *                 keep_first digits kept (a country code, say).
 *   mask          (keep_first, keep_last, char, path) characters replaced
 *                 by char (default "*"), counting UTF-8 characters; a value
 *                 not longer than keep_first + keep_last is masked whole
 *                 so that a short value is never shown in full.
 *   truncate      (length, path) first length characters.
 *   noise         (ratio in (0,1] | amount > 0; exactly one) numeric value
 *                 moved by at most ratio*|v| or amount, by a keyed fraction
 *                 of the value (equal inputs stay equal), rounded to the
 *                 column scale and clamped to the type range.
 *   date_shift    (max_days 1..36500, default 30; key) the date part moved
 *                 by 1..max_days days forward or back, time of day and zone
 *                 kept. With key: "col" the shift is keyed by that column
 *                 of the same row (all dates of a row, or of one customer
 *                 across tables, move together, so intervals survive);
 *                 drivers pass the key with dsd_anon_apply_keyed.
 *   regex_replace (pattern (POSIX extended), replacement with \0..\9, path)
 *                 every match replaced; result cut to the column length.
 *
 * Allow-list mode ("default": "anonymize"): every column without a rule, or
 * whose rule is not "keep", is anonymized; unlisted columns get by type:
 * text -> hash, integers -> hash (range permutation), numeric and float ->
 * hash (digits), date/timestamp -> date_shift max_days 365, time -> a keyed
 * time of day, uuid -> hash, json -> hash of every string inside (numbers,
 * booleans and keys kept), bytea -> hash, arrays -> element-wise.
 * Booleans are KEPT: a per-value keyed map of a two-value domain is either
 * the identity or a swap and hides nothing; mark a sensitive boolean "null"
 * or "constant". A column of another type (enum, inet, interval, geometry...)
 * is a plan error asking for an explicit keep, null or constant.
 *
 * Types: values are in the dialect's text form (pg COPY text after
 * unescaping; the driver escapes the output again). Outputs are valid for
 * the column type: at most max_len characters (UTF-8 aware), integers in
 * range, dates valid calendar dates in the input's format (YYYY-MM-DD,
 * YYYY-MM-DD HH:MM:SS[.ffffff][+TZ]; 'infinity', BC dates and mysql zero
 * dates are kept), canonical lowercase uuids, pg array literals re-quoted.
 * A strategy that cannot apply to a column type is a plan error naming the
 * column and type. NULL stays NULL except for null and constant.
 *
 * Threads: a parsed rules object and a plan are read-only after
 * construction; any number of threads may apply through them at once.
 */
#ifndef DSD_ANONYMIZE_ANONYMIZE_H
#define DSD_ANONYMIZE_ANONYMIZE_H

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

#include "core/buf.h"
#include "core/error.h"

typedef struct dsd_anon_rules dsd_anon_rules_t;
typedef struct dsd_anon_table_plan dsd_anon_table_plan_t;
typedef struct dsd__anon_rule dsd_anon_rule_t;

/* ------------------------------------------------------------------ */
/* Column types                                                        */

typedef enum {
  DSD_ANON_OTHER = 0, /* enum, inet, interval, ...: keep/null/constant only */
  DSD_ANON_TEXT,      /* text, varchar(n), char(n), citext, mysql *text */
  DSD_ANON_INT1,      /* mysql tinyint */
  DSD_ANON_INT2,      /* smallint */
  DSD_ANON_INT3,      /* mysql mediumint */
  DSD_ANON_INT4,      /* integer */
  DSD_ANON_INT8,      /* bigint */
  DSD_ANON_NUMERIC,   /* numeric(p,s), decimal(p,s) */
  DSD_ANON_FLOAT,     /* real, double precision, float, double */
  DSD_ANON_DATE,
  DSD_ANON_TIMESTAMP,
  DSD_ANON_TIMESTAMPTZ,
  DSD_ANON_TIME, /* time [with time zone] */
  DSD_ANON_UUID,
  DSD_ANON_BOOL, /* pg boolean (t/f), mysql tinyint(1) (0/1) */
  DSD_ANON_JSON, /* json, jsonb */
  DSD_ANON_BYTES, /* bytea ("\x" hex text form), mysql blob/binary (raw) */
  DSD_ANON_ARRAY, /* pg array of elem (text literal {a,b,"c d"}) */
} dsd_anon_kind_t;

typedef struct dsd_anon_type {
  dsd_anon_kind_t kind;
  dsd_anon_kind_t elem; /* ARRAY: the element kind (never ARRAY) */
  int max_len;          /* TEXT (or TEXT elements): max characters; 0 = none */
  bool fixed_len;       /* char(n): trailing spaces are padding */
  bool is_unsigned;     /* mysql unsigned integers */
  int precision;        /* NUMERIC: total digits; 0 = unspecified */
  int scale;            /* NUMERIC: digits after the point; -1 = unspecified */
  int min_year, max_year; /* date range of the type; 0 = 1..9999 */
  const char *name;     /* the dialect's type name, for messages (borrowed) */
} dsd_anon_type_t;

typedef struct dsd_anon_column {
  const char *name; /* borrowed */
  dsd_anon_type_t type;
  bool not_null;
} dsd_anon_column_t;

/* Fills *out from a dialect type name: dialect "pg" takes format_type()
 * output ("character varying(20)", "numeric(10,2)", "timestamp(3) with time
 * zone", "text[]", ...), "mysql" takes information_schema COLUMN_TYPE
 * ("varchar(20)", "int(10) unsigned", "tinyint(1)", "datetime(6)", ...).
 * out->name borrows name. Unknown names give DSD_ANON_OTHER and 0; an
 * unknown dialect gives DSD_EINVAL. */
int dsd_anon_type_parse(const char *dialect, const char *name,
                        dsd_anon_type_t *out);

/* ------------------------------------------------------------------ */
/* Rules                                                               */

/* Validates the rules object j (borrowed) and returns the parsed rules in
 * *out (caller owns; dsd_anon_rules_free). On error returns DSD_EINVAL (or
 * DSD_ENOMEM), sets err with a message naming the bad rule, and sets *out
 * to NULL. A user salt is registered with dsd_redact_register. */
int dsd_anon_rules_parse(const json_t *j, dsd_anon_rules_t **out,
                         dsd_err_t *err);
void dsd_anon_rules_free(dsd_anon_rules_t *r);

/* Draws a 32-byte random salt (RAND_bytes) unless the rules carry a user
 * salt; call it at job start. Returns 0 or DSD_EINTERNAL. */
int dsd_anon_rules_set_random_salt(dsd_anon_rules_t *r, dsd_err_t *err);
/* Whether the rules have a salt (user-given or drawn). */
bool dsd_anon_rules_has_salt(const dsd_anon_rules_t *r);
/* Whether the salt came from the user (outputs repeat across dumps). */
bool dsd_anon_rules_salt_is_user(const dsd_anon_rules_t *r);
/* Whether any table or column will be transformed at all. */
bool dsd_anon_rules_active(const dsd_anon_rules_t *r);

/* The rules as JSON without the salt, for the archive manifest; caller
 * owns the returned reference (json_decref). NULL on out-of-memory. */
json_t *dsd_anon_rules_to_json(const dsd_anon_rules_t *r);

/* Fails with DSD_ENOTFOUND and a message when a rule names a table that is
 * not in existing (borrowed, n names in the rules' naming scheme). */
int dsd_anon_rules_check_tables(const dsd_anon_rules_t *r,
                                const char *const *existing, size_t n,
                                dsd_err_t *err);

/* ------------------------------------------------------------------ */
/* Plans                                                               */

/* Builds the plan for table (borrowed) with its columns (borrowed; the plan
 * copies what it keeps). Sets *out to NULL and returns 0 when nothing in the
 * table is transformed. Otherwise *out is owned by the caller
 * (dsd_anon_plan_free) and BORROWS r: free the plan before the rules.
 * Errors (DSD_EINVAL / DSD_ENOTFOUND, message in err): a rule names a column
 * not in cols, a strategy does not fit a column type, a null rule on a NOT
 * NULL column, a constant invalid for the type, allow-list mode meets a
 * type it cannot anonymize, no salt set.
 * cols == NULL with ncols == 0 declares a schemaless collection (mongo):
 * field rules are then checked against the runtime type of each value. */
int dsd_anon_plan_table(const dsd_anon_rules_t *r, const char *table,
                        const dsd_anon_column_t *cols, size_t ncols,
                        dsd_anon_table_plan_t **out, dsd_err_t *err);
void dsd_anon_plan_free(dsd_anon_table_plan_t *p);

/* Whether column col is transformed (false: copy it as is). */
bool dsd_anon_plan_column_active(const dsd_anon_table_plan_t *p, size_t col);

/* The index of the column whose row value keys col's transform
 * (date_shift with "key"), or -1. */
int dsd_anon_plan_row_key(const dsd_anon_table_plan_t *p, size_t col);

/* Transforms value in[0..len) of column col (text form; in may be NULL when
 * is_null). The output replaces the content of out (caller owns out; keep
 * one scratch buffer per worker: no allocation happens per value once it
 * has grown). *out_null tells whether the result is NULL. Returns 0, or
 * DSD_EINVAL when the input is not valid text for the column type (the
 * driver should fail the dump: the value could not be anonymized), or when
 * col needs a row key (use dsd_anon_apply_keyed). Thread-safe. */
int dsd_anon_apply(const dsd_anon_table_plan_t *p, size_t col, const char *in,
                   size_t len, bool is_null, dsd_buf_t *out, bool *out_null);

/* As dsd_anon_apply, with the ORIGINAL (not yet anonymized) value of the
 * row-key column named by dsd_anon_plan_row_key; key == NULL means the key
 * is NULL in this row, which falls back to keying by the value. */
int dsd_anon_apply_keyed(const dsd_anon_table_plan_t *p, size_t col,
                         const char *in, size_t len, bool is_null,
                         const char *key, size_t keylen, dsd_buf_t *out,
                         bool *out_null);

/* Document fields (mongo). path is the dotted field path with array
 * positions left out ("items.sku" for items[3].sku). Returns the rule for
 * that field (borrowed from the plan's rules), NULL when the field is kept.
 * In allow-list mode every field not marked keep (or under a kept one) has
 * a rule, the type default (dsd_anon_rule_is_default).
 *
 * A driver walks a document so:
 *   r = dsd_anon_plan_field_rule(p, path);
 *   if (value is a subdocument or array && (r == NULL || dsd_anon_rule_is_default(r))
 *       && dsd_anon_plan_field_has_rules_below(p, path))
 *     descend into it (array elements keep the same path);
 *   else if (r != NULL)
 *     dsd_anon_apply_field(p, r, &type, value...)  (a subdocument as JSON text)
 *   else copy the value. */
const dsd_anon_rule_t *dsd_anon_plan_field_rule(const dsd_anon_table_plan_t *p,
                                                const char *path);
/* Whether rule is the allow-list type default rather than a user rule. */
bool dsd_anon_rule_is_default(const dsd_anon_rule_t *rule);
/* Whether some rule names a field below path ("address" when a rule names
 * "address.city"), so the driver knows whether to descend. */
bool dsd_anon_plan_field_has_rules_below(const dsd_anon_table_plan_t *p,
                                         const char *path);
/* Transforms one field value with rule (from dsd_anon_plan_field_rule)
 * given its runtime type. A value whose type the rule cannot handle becomes
 * NULL (so nothing leaks) rather than failing the dump. Else as
 * dsd_anon_apply. */
int dsd_anon_apply_field(const dsd_anon_table_plan_t *p,
                         const dsd_anon_rule_t *rule,
                         const dsd_anon_type_t *type, const char *in,
                         size_t len, bool is_null, dsd_buf_t *out,
                         bool *out_null);

#endif
