/*
 * test_anonymize_rules.c - the anonymization rule parser and planner.
 *
 * Every validation error is checked by its message, since the message is
 * what a user sees in `cf service` and must say which rule to fix. Plans are
 * checked against column lists the way a dialect driver builds them.
 */
#include <setjmp.h> /* cmocka needs these before cmocka.h */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "anonymize/anonymize.h"

/* Parses JSON text; fails the test on a syntax error in the test itself. */
static json_t *J(const char *text) {
  json_error_t e;
  json_t *j = json_loads(text, 0, &e);
  if (j == NULL) fail_msg("bad test json: %s: %s", e.text, text);
  return j;
}

/* Expects text to fail parsing with exactly message msg. */
static void expect_parse_error(const char *text, const char *msg) {
  json_t *j = J(text);
  dsd_anon_rules_t *r = (dsd_anon_rules_t *)1;
  dsd_err_t err;
  dsd_err_clear(&err);
  int rc = dsd_anon_rules_parse(j, &r, &err);
  if (rc == 0 || strcmp(dsd_err_msg(&err), msg) != 0) {
    fail_msg("rules %s\n  want: %s\n  got:  %s (rc %d)", text, msg, dsd_err_msg(&err), rc);
  }
  assert_int_equal(rc, DSD_EINVAL);
  assert_null(r);
  json_decref(j);
}

static dsd_anon_rules_t *parse_ok(const char *text) {
  json_t *j = J(text);
  dsd_anon_rules_t *r = NULL;
  dsd_err_t err;
  dsd_err_clear(&err);
  if (dsd_anon_rules_parse(j, &r, &err) != 0) fail_msg("parse %s: %s", text, dsd_err_msg(&err));
  json_decref(j);
  assert_int_equal(dsd_anon_rules_set_random_salt(r, &err), 0);
  return r;
}

static void test_parse_errors(void **state) {
  expect_parse_error("[]",
                     "anonymize: must be an object with \"tables\" and optional \"default\" "
                     "and \"salt\"");
  expect_parse_error("{\"tabels\": {}}",
                     "anonymize: unknown key \"tabels\" HINT: the keys are salt, default and "
                     "tables");
  expect_parse_error("{\"default\": \"drop\"}",
                     "anonymize.default: must be \"keep\" or \"anonymize\"");
  expect_parse_error("{\"tables\": []}",
                     "anonymize.tables: must be an object mapping table names to column rules");
  expect_parse_error("{\"tables\": {\"public.customers\": \"hash\"}}",
                     "anonymize.tables.\"public.customers\": must be an object mapping "
                     "column names to rules");
  expect_parse_error(
      "{\"tables\": {\"public.customers\": {\"ssn\": \"masc\"}}}",
      "anonymize.tables.\"public.customers\".ssn: unknown strategy \"masc\" HINT: use one of "
      "keep, null, constant, hash, email, name, phone, digits, mask, truncate, noise, "
      "date_shift, regex_replace");
  expect_parse_error("{\"tables\": {\"t\": {\"ssn\": 42}}}",
                     "anonymize.tables.t.ssn: must be a strategy name or an object with "
                     "\"strategy\"");
  expect_parse_error("{\"tables\": {\"t\": {\"ssn\": {\"keep_last\": 4}}}}",
                     "anonymize.tables.t.ssn: missing \"strategy\" HINT: use one of keep, null, "
                     "constant, hash, email, name, phone, digits, mask, truncate, noise, "
                     "date_shift, regex_replace");
  expect_parse_error("{\"tables\": {\"t\": {\"ssn\": {\"strategy\": \"mask\", \"keep_last\": -1}}}}",
                     "anonymize.tables.t.ssn: option \"keep_last\" must be an integer from 0 to "
                     "1000");
  expect_parse_error("{\"tables\": {\"t\": {\"ssn\": {\"strategy\": \"mask\", \"keep_last\": \"4\"}}}}",
                     "anonymize.tables.t.ssn: option \"keep_last\" must be an integer from 0 to "
                     "1000");
  expect_parse_error("{\"tables\": {\"t\": {\"ssn\": {\"strategy\": \"mask\", \"keep\": 4}}}}",
                     "anonymize.tables.t.ssn: unknown option \"keep\" for strategy \"mask\" "
                     "HINT: it takes keep_first, keep_last, char, path");
  expect_parse_error("{\"tables\": {\"t\": {\"a\": {\"strategy\": \"keep\", \"x\": 1}}}}",
                     "anonymize.tables.t.a: unknown option \"x\" for strategy \"keep\" HINT: it "
                     "takes no options");
  expect_parse_error("{\"tables\": {\"t\": {\"ssn\": {\"strategy\": \"mask\", \"char\": \"**\"}}}}",
                     "anonymize.tables.t.ssn: option \"char\" must be one printable character");
  expect_parse_error(
      "{\"tables\": {\"t\": {\"c\": {\"strategy\": \"regex_replace\", \"pattern\": \"(a\"}}}}",
      "anonymize.tables.t.c: option \"pattern\" is not a valid POSIX extended regex: "
      "Unmatched ( or \\(");
  expect_parse_error("{\"tables\": {\"t\": {\"c\": {\"strategy\": \"regex_replace\"}}}}",
                     "anonymize.tables.t.c: missing option \"pattern\"");
  expect_parse_error("{\"tables\": {\"t\": {\"c\": {\"strategy\": \"regex_replace\", "
                     "\"pattern\": \"a(b)\", \"replacement\": \"\\\\2\"}}}}",
                     "anonymize.tables.t.c: option \"replacement\" refers to group \\2 but the "
                     "pattern has 1");
  expect_parse_error("{\"tables\": {\"t\": {\"c\": \"regex_replace\"}}}",
                     "anonymize.tables.t.c: strategy \"regex_replace\" needs options HINT: write "
                     "it as {\"strategy\": \"regex_replace\", ...}");
  expect_parse_error("{\"tables\": {\"t\": {\"c\": {\"strategy\": \"noise\"}}}}",
                     "anonymize.tables.t.c: noise needs exactly one of \"ratio\" and \"amount\" "
                     "HINT: {\"strategy\": \"noise\", \"ratio\": 0.1} moves values by up to 10%");
  expect_parse_error("{\"tables\": {\"t\": {\"c\": {\"strategy\": \"noise\", \"ratio\": 0.1, "
                     "\"amount\": 5}}}}",
                     "anonymize.tables.t.c: noise needs exactly one of \"ratio\" and \"amount\" "
                     "HINT: {\"strategy\": \"noise\", \"ratio\": 0.1} moves values by up to 10%");
  expect_parse_error("{\"tables\": {\"t\": {\"c\": {\"strategy\": \"noise\", \"ratio\": 1.5}}}}",
                     "anonymize.tables.t.c: option \"ratio\" must be a number greater than 0 and "
                     "at most 1");
  expect_parse_error("{\"tables\": {\"t\": {\"c\": {\"strategy\": \"noise\", \"amount\": -3}}}}",
                     "anonymize.tables.t.c: option \"amount\" must be a number greater than 0 "
                     "and at most 1e15");
  expect_parse_error("{\"tables\": {\"t\": {\"c\": {\"strategy\": \"date_shift\", "
                     "\"max_days\": 0}}}}",
                     "anonymize.tables.t.c: option \"max_days\" must be an integer from 1 to "
                     "36500");
  expect_parse_error("{\"tables\": {\"t\": {\"c\": {\"strategy\": \"hash\", \"path\": "
                     "\"user.email\"}}}}",
                     "anonymize.tables.t.c: option \"path\" is not a supported JSONPath HINT: "
                     "use $, .name, [*] and [N] steps, e.g. $.user.email");
  expect_parse_error("{\"tables\": {\"t\": {\"c\": {\"strategy\": \"constant\"}}}}",
                     "anonymize.tables.t.c: missing option \"value\"");
  expect_parse_error("{\"tables\": {\"t\": {\"c\": {\"strategy\": \"constant\", \"value\": []}}}}",
                     "anonymize.tables.t.c: option \"value\" must be a string, a number or null");
  expect_parse_error("{\"tables\": {\"t\": {\"c\": {\"strategy\": \"email\", \"domain\": "
                     "\"bad domain\"}}}}",
                     "anonymize.tables.t.c: option \"domain\" must be a domain name such as "
                     "example.com");
  expect_parse_error("{\"tables\": {\"t\": {\"c\": {\"strategy\": \"name\", \"part\": \"middle\"}}}}",
                     "anonymize.tables.t.c: option \"part\" must be \"full\", \"first\" or "
                     "\"last\"");
  expect_parse_error("{\"tables\": {\"db.coll\": {\"address.city\": \"nope\"}}}",
                     "anonymize.tables.\"db.coll\".\"address.city\": unknown strategy \"nope\" "
                     "HINT: use one of keep, null, constant, hash, email, name, phone, digits, "
                     "mask, truncate, noise, date_shift, regex_replace");
}

static void test_salt_errors_and_secrecy(void **state) {
  /* A short salt is refused without echoing it. */
  expect_parse_error("{\"salt\": \"abc\", \"tables\": {}}",
                     "anonymize.salt: must be a string of at least 8 characters HINT: leave it "
                     "out to use a random salt per dump");
  expect_parse_error("{\"salt\": 12345678, \"tables\": {}}",
                     "anonymize.salt: must be a string of at least 8 characters HINT: leave it "
                     "out to use a random salt per dump");

  const char *salt = "pepper-and-salt-0123456789";
  json_t *j = json_pack("{s:s, s:s, s:{s:{s:s, s:{s:s, s:i}}}}", "salt", salt, "default",
                        "keep", "tables", "public.customers", "email", "email", "ssn",
                        "strategy", "mask", "keep_last", 4);
  dsd_anon_rules_t *r = NULL;
  dsd_err_t err;
  dsd_err_clear(&err);
  assert_int_equal(dsd_anon_rules_parse(j, &r, &err), 0);
  assert_true(dsd_anon_rules_has_salt(r));
  assert_true(dsd_anon_rules_salt_is_user(r));
  /* set_random_salt keeps a user salt. */
  assert_int_equal(dsd_anon_rules_set_random_salt(r, &err), 0);
  assert_true(dsd_anon_rules_salt_is_user(r));

  json_t *pub = dsd_anon_rules_to_json(r);
  char *text = json_dumps(pub, JSON_SORT_KEYS);
  assert_non_null(text);
  assert_null(strstr(text, salt));
  assert_null(strstr(text, "salt"));
  assert_non_null(strstr(text, "\"keep_last\": 4"));
  assert_non_null(strstr(text, "public.customers"));
  /* The manifest copy parses back (without salt) to equivalent rules. */
  dsd_anon_rules_t *r2 = NULL;
  assert_int_equal(dsd_anon_rules_parse(pub, &r2, &err), 0);
  assert_false(dsd_anon_rules_has_salt(r2));
  dsd_anon_rules_free(r2);
  free(text);
  json_decref(pub);

  dsd_anon_rules_free(r);
  json_decref(j);
}

static void test_random_salt(void **state) {
  dsd_anon_rules_t *r = NULL;
  dsd_err_t err;
  json_t *j = J("{\"tables\": {\"t\": {\"a\": \"hash\"}}}");
  dsd_err_clear(&err);
  assert_int_equal(dsd_anon_rules_parse(j, &r, &err), 0);
  assert_false(dsd_anon_rules_has_salt(r));
  /* Planning without a salt is an internal error, not a silent zero key. */
  dsd_anon_column_t cols[] = {{"a", {.kind = DSD_ANON_TEXT, .scale = -1}, false}};
  dsd_anon_table_plan_t *p = NULL;
  assert_int_equal(dsd_anon_plan_table(r, "t", cols, 1, &p, &err), DSD_EINTERNAL);
  assert_null(p);
  dsd_err_clear(&err);
  assert_int_equal(dsd_anon_rules_set_random_salt(r, &err), 0);
  assert_true(dsd_anon_rules_has_salt(r));
  assert_false(dsd_anon_rules_salt_is_user(r));
  assert_int_equal(dsd_anon_plan_table(r, "t", cols, 1, &p, &err), 0);
  assert_non_null(p);
  dsd_anon_plan_free(p);
  dsd_anon_rules_free(r);
  json_decref(j);
}

static void test_check_tables(void **state) {
  dsd_anon_rules_t *r = parse_ok(
      "{\"tables\": {\"public.customers\": {\"email\": \"email\"}, \"custmers\": {}}}");
  const char *existing[] = {"public.customers", "public.orders", "sales.custmers"};
  dsd_err_t err;
  dsd_err_clear(&err);
  assert_int_equal(dsd_anon_rules_check_tables(r, existing, 3, &err), DSD_ENOTFOUND);
  assert_string_equal(dsd_err_msg(&err),
                      "anonymize.tables.custmers: table \"custmers\" does not exist HINT: did "
                      "you mean \"sales.custmers\"?");
  dsd_anon_rules_free(r);

  r = parse_ok("{\"tables\": {\"public.nothere\": {\"a\": \"hash\"}}}");
  dsd_err_clear(&err);
  assert_int_equal(dsd_anon_rules_check_tables(r, existing, 3, &err), DSD_ENOTFOUND);
  assert_string_equal(dsd_err_msg(&err),
                      "anonymize.tables.\"public.nothere\": table \"public.nothere\" does not "
                      "exist HINT: name tables as schema.table (pg) or db.table (mysql, mongo)");
  dsd_anon_rules_free(r);

  r = parse_ok("{\"tables\": {\"public.orders\": {\"a\": \"hash\"}}}");
  dsd_err_clear(&err);
  assert_int_equal(dsd_anon_rules_check_tables(r, existing, 3, &err), 0);
  dsd_anon_rules_free(r);
}

static const dsd_anon_column_t customer_cols[] = {
    {"id", {.kind = DSD_ANON_INT8, .scale = -1, .name = "bigint"}, true},
    {"email", {.kind = DSD_ANON_TEXT, .max_len = 100, .scale = -1, .name = "character varying(100)"}, true},
    {"age", {.kind = DSD_ANON_INT2, .scale = -1, .name = "smallint"}, false},
    {"born", {.kind = DSD_ANON_DATE, .scale = -1, .name = "date"}, false},
    {"code", {.kind = DSD_ANON_TEXT, .max_len = 8, .scale = -1, .name = "character varying(8)"}, false},
    {"mood", {.kind = DSD_ANON_OTHER, .scale = -1, .name = "mood_enum"}, false},
    {"active", {.kind = DSD_ANON_BOOL, .scale = -1, .name = "boolean"}, true},
};

static void expect_plan_error(const char *rules, int code, const char *msg) {
  dsd_anon_rules_t *r = parse_ok(rules);
  dsd_anon_table_plan_t *p = (dsd_anon_table_plan_t *)1;
  dsd_err_t err;
  dsd_err_clear(&err);
  int rc = dsd_anon_plan_table(r, "public.customers", customer_cols,
                               sizeof(customer_cols) / sizeof(customer_cols[0]), &p, &err);
  if (rc != code || strcmp(dsd_err_msg(&err), msg) != 0) {
    fail_msg("rules %s\n  want: %s\n  got:  %s (rc %d)", rules, msg, dsd_err_msg(&err), rc);
  }
  assert_null(p);
  dsd_anon_rules_free(r);
}

static void test_plan_errors(void **state) {
  expect_plan_error("{\"tables\": {\"public.customers\": {\"emial\": \"email\"}}}",
                    DSD_ENOTFOUND,
                    "anonymize.tables.\"public.customers\": column \"emial\" does not exist in "
                    "table public.customers");
  expect_plan_error("{\"tables\": {\"public.customers\": {\"age\": \"email\"}}}", DSD_EINVAL,
                    "anonymize.tables.\"public.customers\".age: strategy \"email\" cannot apply "
                    "to type smallint");
  expect_plan_error("{\"tables\": {\"public.customers\": {\"born\": \"hash\"}}}", DSD_EINVAL,
                    "anonymize.tables.\"public.customers\".born: strategy \"hash\" cannot apply "
                    "to type date");
  expect_plan_error("{\"tables\": {\"public.customers\": {\"email\": \"null\"}}}", DSD_EINVAL,
                    "anonymize.tables.\"public.customers\".email: the column is NOT NULL, so it "
                    "cannot be set to null HINT: use constant, hash or another strategy");
  expect_plan_error("{\"tables\": {\"public.customers\": {\"age\": {\"strategy\": \"constant\", "
                    "\"value\": 40000}}}}",
                    DSD_EINVAL,
                    "anonymize.tables.\"public.customers\".age: constant \"40000\" is not a valid "
                    "smallint value: not an integer in the type's range");
  expect_plan_error("{\"tables\": {\"public.customers\": {\"code\": {\"strategy\": \"constant\", "
                    "\"value\": \"ninechars\"}}}}",
                    DSD_EINVAL,
                    "anonymize.tables.\"public.customers\".code: constant \"ninechars\" is not a "
                    "valid character varying(8) value: longer than the column");
  expect_plan_error("{\"tables\": {\"public.customers\": {\"code\": \"email\"}}}", DSD_EINVAL,
                    "anonymize.tables.\"public.customers\".code: type character varying(8) is "
                    "too short for an anonymized email (at least 21 characters) HINT: use hash "
                    "or a shorter domain");
  expect_plan_error("{\"tables\": {\"public.customers\": {\"code\": {\"strategy\": \"hash\", "
                    "\"path\": \"$.a\"}}}}",
                    DSD_EINVAL,
                    "anonymize.tables.\"public.customers\".code: option \"path\" needs a json "
                    "column, but the column has type character varying(8)");
  expect_plan_error("{\"tables\": {\"public.customers\": {\"born\": {\"strategy\": "
                    "\"date_shift\", \"key\": \"customer_id\"}}}}",
                    DSD_ENOTFOUND,
                    "anonymize.tables.\"public.customers\".born: key column \"customer_id\" "
                    "does not exist in table public.customers");
  /* Allow-list mode needs a decision for types it cannot anonymize. */
  expect_plan_error("{\"default\": \"anonymize\"}", DSD_EINVAL,
                    "anonymize.tables.\"public.customers\": column \"mood\" has type mood_enum, "
                    "which allow-list mode cannot anonymize HINT: give it a rule: \"keep\", "
                    "\"null\" or {\"strategy\": \"constant\", \"value\": ...}");
}

static void test_plan_shapes(void **state) {
  size_t n = sizeof(customer_cols) / sizeof(customer_cols[0]);
  dsd_err_t err;
  dsd_anon_table_plan_t *p = (dsd_anon_table_plan_t *)1;

  /* keep mode: an unlisted table has no plan. */
  dsd_anon_rules_t *r = parse_ok("{\"tables\": {\"public.other\": {\"x\": \"hash\"}}}");
  dsd_err_clear(&err);
  assert_int_equal(dsd_anon_plan_table(r, "public.customers", customer_cols, n, &p, &err), 0);
  assert_null(p);
  dsd_anon_rules_free(r);

  /* A listed table whose rules all keep: checked, but no plan. */
  r = parse_ok("{\"tables\": {\"public.customers\": {\"email\": \"keep\"}}}");
  p = (dsd_anon_table_plan_t *)1;
  assert_int_equal(dsd_anon_plan_table(r, "public.customers", customer_cols, n, &p, &err), 0);
  assert_null(p);
  assert_false(dsd_anon_rules_active(r));
  dsd_anon_rules_free(r);

  /* keep mode with rules: only ruled columns are active. */
  r = parse_ok("{\"tables\": {\"public.customers\": {\"email\": \"email\", \"born\": "
               "{\"strategy\": \"date_shift\", \"key\": \"id\"}}}}");
  assert_true(dsd_anon_rules_active(r));
  assert_int_equal(dsd_anon_plan_table(r, "public.customers", customer_cols, n, &p, &err), 0);
  assert_non_null(p);
  assert_false(dsd_anon_plan_column_active(p, 0));
  assert_true(dsd_anon_plan_column_active(p, 1));
  assert_false(dsd_anon_plan_column_active(p, 2));
  assert_true(dsd_anon_plan_column_active(p, 3));
  assert_false(dsd_anon_plan_column_active(p, 99));
  assert_int_equal(dsd_anon_plan_row_key(p, 3), 0);
  assert_int_equal(dsd_anon_plan_row_key(p, 1), -1);
  dsd_anon_plan_free(p);
  dsd_anon_rules_free(r);

  /* allow-list mode: everything but keep, booleans and the explicit rules. */
  r = parse_ok("{\"default\": \"anonymize\", \"tables\": {\"public.customers\": "
               "{\"id\": \"keep\", \"mood\": \"keep\"}}}");
  assert_int_equal(dsd_anon_plan_table(r, "public.customers", customer_cols, n, &p, &err), 0);
  assert_non_null(p);
  assert_false(dsd_anon_plan_column_active(p, 0)); /* id: keep */
  assert_true(dsd_anon_plan_column_active(p, 1));  /* email */
  assert_true(dsd_anon_plan_column_active(p, 2));  /* age */
  assert_true(dsd_anon_plan_column_active(p, 3));  /* born */
  assert_true(dsd_anon_plan_column_active(p, 4));  /* code */
  assert_false(dsd_anon_plan_column_active(p, 5)); /* mood: keep */
  assert_false(dsd_anon_plan_column_active(p, 6)); /* active: boolean kept */
  dsd_anon_plan_free(p);
  /* ... and a table the rules never mention is planned too. */
  dsd_anon_column_t other[] = {{"note", {.kind = DSD_ANON_TEXT, .scale = -1}, false}};
  assert_int_equal(dsd_anon_plan_table(r, "public.notes", other, 1, &p, &err), 0);
  assert_non_null(p);
  assert_true(dsd_anon_plan_column_active(p, 0));
  dsd_anon_plan_free(p);
  dsd_anon_rules_free(r);
}

static void test_field_rules(void **state) {
  dsd_anon_rules_t *r = parse_ok(
      "{\"tables\": {\"shop.users\": {\"email\": \"email\", \"address.city\": \"name\", "
      "\"items.sku\": \"hash\", \"profile\": \"keep\"}}}");
  dsd_anon_table_plan_t *p = NULL;
  dsd_err_t err;
  dsd_err_clear(&err);
  /* Schemaless: no column list, no existence check. */
  assert_int_equal(dsd_anon_plan_table(r, "shop.users", NULL, 0, &p, &err), 0);
  assert_non_null(p);
  assert_non_null(dsd_anon_plan_field_rule(p, "email"));
  assert_false(dsd_anon_rule_is_default(dsd_anon_plan_field_rule(p, "email")));
  assert_non_null(dsd_anon_plan_field_rule(p, "address.city"));
  assert_non_null(dsd_anon_plan_field_rule(p, "items.sku"));
  assert_null(dsd_anon_plan_field_rule(p, "address.zip"));
  assert_null(dsd_anon_plan_field_rule(p, "profile"));
  assert_true(dsd_anon_plan_field_has_rules_below(p, "address"));
  assert_true(dsd_anon_plan_field_has_rules_below(p, "items"));
  assert_false(dsd_anon_plan_field_has_rules_below(p, "email"));
  assert_false(dsd_anon_plan_field_has_rules_below(p, "addr"));

  /* Runtime type mismatch: email rule meets a number -> NULL, no error. */
  dsd_anon_type_t t_int = {.kind = DSD_ANON_INT8, .scale = -1};
  dsd_anon_type_t t_text = {.kind = DSD_ANON_TEXT, .scale = -1};
  dsd_buf_t out = DSD_BUF_INIT;
  bool isnull = false;
  const dsd_anon_rule_t *er = dsd_anon_plan_field_rule(p, "email");
  assert_int_equal(dsd_anon_apply_field(p, er, &t_int, "42", 2, false, &out, &isnull), 0);
  assert_true(isnull);
  assert_int_equal(dsd_anon_apply_field(p, er, &t_text, "a@b.c", 5, false, &out, &isnull), 0);
  assert_false(isnull);
  assert_non_null(strstr(out.data, "@example.com"));
  /* A NULL stays NULL; a kept field (rule NULL) is copied. */
  assert_int_equal(dsd_anon_apply_field(p, er, &t_text, NULL, 0, true, &out, &isnull), 0);
  assert_true(isnull);
  assert_int_equal(dsd_anon_apply_field(p, NULL, &t_text, "xyz", 3, false, &out, &isnull), 0);
  assert_false(isnull);
  assert_string_equal(out.data, "xyz");
  dsd_buf_free(&out);
  dsd_anon_plan_free(p);
  dsd_anon_rules_free(r);

  /* Allow-list for documents: every field has a rule unless kept. */
  r = parse_ok("{\"default\": \"anonymize\", \"tables\": {\"shop.users\": {\"profile\": "
               "\"keep\"}}}");
  assert_int_equal(dsd_anon_plan_table(r, "shop.users", NULL, 0, &p, &err), 0);
  assert_non_null(dsd_anon_plan_field_rule(p, "anything.at.all"));
  assert_true(dsd_anon_rule_is_default(dsd_anon_plan_field_rule(p, "anything.at.all")));
  assert_true(dsd_anon_plan_field_has_rules_below(p, "anything"));
  assert_null(dsd_anon_plan_field_rule(p, "profile"));
  assert_null(dsd_anon_plan_field_rule(p, "profile.nick"));
  dsd_anon_plan_free(p);
  dsd_anon_rules_free(r);
}

static void test_type_parse(void **state) {
  dsd_anon_type_t t;
  assert_int_equal(dsd_anon_type_parse("pg", "character varying(20)", &t), 0);
  assert_int_equal(t.kind, DSD_ANON_TEXT);
  assert_int_equal(t.max_len, 20);
  assert_false(t.fixed_len);
  dsd_anon_type_parse("pg", "character(5)", &t);
  assert_int_equal(t.kind, DSD_ANON_TEXT);
  assert_int_equal(t.max_len, 5);
  assert_true(t.fixed_len);
  dsd_anon_type_parse("pg", "numeric(10,2)", &t);
  assert_int_equal(t.kind, DSD_ANON_NUMERIC);
  assert_int_equal(t.precision, 10);
  assert_int_equal(t.scale, 2);
  dsd_anon_type_parse("pg", "numeric", &t);
  assert_int_equal(t.precision, 0);
  assert_int_equal(t.scale, -1);
  dsd_anon_type_parse("pg", "timestamp(3) with time zone", &t);
  assert_int_equal(t.kind, DSD_ANON_TIMESTAMPTZ);
  dsd_anon_type_parse("pg", "timestamp without time zone", &t);
  assert_int_equal(t.kind, DSD_ANON_TIMESTAMP);
  dsd_anon_type_parse("pg", "time without time zone", &t);
  assert_int_equal(t.kind, DSD_ANON_TIME);
  dsd_anon_type_parse("pg", "integer", &t);
  assert_int_equal(t.kind, DSD_ANON_INT4);
  dsd_anon_type_parse("pg", "interval", &t);
  assert_int_equal(t.kind, DSD_ANON_OTHER);
  dsd_anon_type_parse("pg", "character varying(12)[]", &t);
  assert_int_equal(t.kind, DSD_ANON_ARRAY);
  assert_int_equal(t.elem, DSD_ANON_TEXT);
  assert_int_equal(t.max_len, 12);
  dsd_anon_type_parse("pg", "jsonb", &t);
  assert_int_equal(t.kind, DSD_ANON_JSON);
  dsd_anon_type_parse("pg", "bytea", &t);
  assert_int_equal(t.kind, DSD_ANON_BYTES);
  dsd_anon_type_parse("pg", "uuid", &t);
  assert_int_equal(t.kind, DSD_ANON_UUID);
  dsd_anon_type_parse("mysql", "tinyint(1)", &t);
  assert_int_equal(t.kind, DSD_ANON_BOOL);
  dsd_anon_type_parse("mysql", "int(10) unsigned", &t);
  assert_int_equal(t.kind, DSD_ANON_INT4);
  assert_true(t.is_unsigned);
  dsd_anon_type_parse("mysql", "mediumint", &t);
  assert_int_equal(t.kind, DSD_ANON_INT3);
  dsd_anon_type_parse("mysql", "datetime(6)", &t);
  assert_int_equal(t.kind, DSD_ANON_TIMESTAMP);
  dsd_anon_type_parse("mysql", "timestamp", &t);
  assert_int_equal(t.min_year, 1970);
  dsd_anon_type_parse("mysql", "enum('a','b')", &t);
  assert_int_equal(t.kind, DSD_ANON_OTHER);
  /* Look-alike names are not taken for the type they start with. */
  dsd_anon_type_parse("pg", "int4range", &t);
  assert_int_equal(t.kind, DSD_ANON_OTHER);
  dsd_anon_type_parse("pg", "jsonpath", &t);
  assert_int_equal(t.kind, DSD_ANON_OTHER);
  dsd_anon_type_parse("pg", "daterange", &t);
  assert_int_equal(t.kind, DSD_ANON_OTHER);
  dsd_anon_type_parse("pg", "double precision", &t);
  assert_int_equal(t.kind, DSD_ANON_FLOAT);
  dsd_anon_type_parse("pg", "character", &t);
  assert_int_equal(t.max_len, 1);
  dsd_anon_type_parse("pg", "integer[]", &t);
  assert_int_equal(t.kind, DSD_ANON_ARRAY);
  assert_int_equal(t.elem, DSD_ANON_INT4);
  dsd_anon_type_parse("mysql", "int(11)", &t);
  assert_int_equal(t.kind, DSD_ANON_INT4);
  dsd_anon_type_parse("mysql", "bigint(20) unsigned", &t);
  assert_int_equal(t.kind, DSD_ANON_INT8);
  assert_true(t.is_unsigned);
  dsd_anon_type_parse("mysql", "tinyint(4)", &t);
  assert_int_equal(t.kind, DSD_ANON_INT1);
  assert_int_equal(dsd_anon_type_parse("oracle", "number", &t), DSD_EINVAL);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_parse_errors),   cmocka_unit_test(test_salt_errors_and_secrecy),
      cmocka_unit_test(test_random_salt),    cmocka_unit_test(test_check_tables),
      cmocka_unit_test(test_plan_errors),    cmocka_unit_test(test_plan_shapes),
      cmocka_unit_test(test_field_rules),    cmocka_unit_test(test_type_parse),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
