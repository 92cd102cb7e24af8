/*
 * test_sqlsplit.c - unit tests of the incremental psql script splitter
 * (dialects/pg/sqlsplit.c).
 *
 * Every script is split with several chunk sizes (1 byte, 2, 3, 7 and the
 * whole script at once), because a chunk boundary may fall inside any
 * token, and every split must give the same items.
 */
#include <setjmp.h> /* cmocka needs it; dsd code never uses setjmp */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/buf.h"
#include "core/error.h"
#include "dialects/pg/sqlsplit.h"

/* ------------------------------------------------------------------ */
/* Collecting items                                                    */
/* ------------------------------------------------------------------ */

typedef struct collect {
  dsd_buf_t out;      /* items as "S|text|object|line\n" or "M|text|line\n" */
  int stop_after;     /* > 0: the callback fails on that item */
  int seen;
} collect_t;

static int on_item(void *data, const dsd_sql_item_t *item, dsd_err_t *err) {
  collect_t *c = data;
  c->seen++;
  assert_int_equal(strlen(item->text), item->len);
  if (item->kind == DSD_SQL_STATEMENT)
    dsd_buf_printf(&c->out, "S|%s|%s|%u\n", item->text,
                   item->object ? item->object : "-", item->line);
  else
    dsd_buf_printf(&c->out, "M|%s|%u\n", item->text, item->line);
  if (c->stop_after && c->seen == c->stop_after)
    return dsd_err_set(err, DSD_EDB, "stopped at item %d", c->seen);
  return 0;
}

/* Splits script in chunks of size step (0: whole); returns the items in a
 * malloc'd string (caller frees) and the final code in *rc. */
static char *split(const char *script, size_t step, int stop_after, int *rc) {
  collect_t c = {DSD_BUF_INIT, stop_after, 0};
  dsd_err_t err;
  dsd_err_clear(&err);
  dsd_sqlsplit_t *s = dsd_sqlsplit_new(on_item, &c);
  assert_non_null(s);
  size_t len = strlen(script);
  if (step == 0) step = len ? len : 1;
  *rc = 0;
  for (size_t off = 0; off < len && *rc == 0; off += step) {
    size_t n = len - off < step ? len - off : step;
    *rc = dsd_sqlsplit_feed(s, script + off, n, &err);
  }
  if (*rc == 0) *rc = dsd_sqlsplit_finish(s, &err);
  dsd_sqlsplit_free(s);
  dsd_buf_append_str(&c.out, "");
  return dsd_buf_steal(&c.out);
}

static const size_t steps[] = {0, 1, 2, 3, 7};

static void expect_split(const char *script, const char *expected) {
  for (size_t i = 0; i < sizeof(steps) / sizeof(steps[0]); i++) {
    int rc;
    char *got = split(script, steps[i], 0, &rc);
    if (rc != 0 || strcmp(got, expected) != 0)
      print_error("chunk size %zu\n--- got (rc %d):\n%s--- expected:\n%s",
                  steps[i], rc, got, expected);
    assert_int_equal(rc, 0);
    assert_string_equal(got, expected);
    free(got);
  }
}

/* ------------------------------------------------------------------ */
/* Tests                                                               */
/* ------------------------------------------------------------------ */

static void test_simple(void **state) {
  expect_split("SELECT 1;\nSELECT 2;\n\n  SELECT 3 ;",
               "S|SELECT 1;|-|1\nS|SELECT 2;|-|2\nS|SELECT 3 ;|-|4\n");
  /* empty statements and blank scripts give nothing */
  expect_split(";;  ;\n", "");
  expect_split("", "");
}

static void test_standard_strings(void **state) {
  expect_split("SELECT 'a;b''c;';SELECT '\\';SELECT 2;",
               "S|SELECT 'a;b''c;';|-|1\nS|SELECT '\\';|-|1\nS|SELECT 2;|-|1\n");
  /* lines are counted inside strings and identifiers too */
  expect_split("SELECT 'a\nb;\nc', \"x\ny\";\nSELECT 2;",
               "S|SELECT 'a\nb;\nc', \"x\ny\";|-|1\nS|SELECT 2;|-|5\n");
  /* X'..', B'..' and N'..' are standard strings */
  expect_split("SELECT x';', b';', n';';",
               "S|SELECT x';', b';', n';';|-|1\n");
}

static void test_escape_strings(void **state) {
  expect_split("SELECT E'\\';', e'a\\\\';SELECT E'x'';';",
               "S|SELECT E'\\';', e'a\\\\';|-|1\nS|SELECT E'x'';';|-|1\n");
  /* an identifier ending in e is not an E string prefix */
  expect_split("SELECT some'\\';SELECT 2;",
               "S|SELECT some'\\';|-|1\nS|SELECT 2;|-|1\n");
}

static void test_identifiers(void **state) {
  expect_split("CREATE TABLE \"a;b\"\"c\" (\"x;\" int);SELECT 1;",
               "S|CREATE TABLE \"a;b\"\"c\" (\"x;\" int);|-|1\nS|SELECT 1;|-|1\n");
  /* $ inside identifiers, non-ASCII identifiers, $1 parameters */
  expect_split("SELECT foo$bar, caf\xc3\xa9$x$ FROM t WHERE a = $1;SELECT 2;",
               "S|SELECT foo$bar, caf\xc3\xa9$x$ FROM t WHERE a = $1;|-|1\n"
               "S|SELECT 2;|-|1\n");
}

static void test_dollar_quotes(void **state) {
  expect_split(
      "CREATE FUNCTION f() RETURNS int AS $$ SELECT 1; $$ LANGUAGE sql;\n"
      "CREATE FUNCTION g() RETURNS int AS $body$\nBEGIN\n  RETURN $x$;$x$ "
      "|| '$body'; -- ;\nEND $body$ LANGUAGE plpgsql;\n"
      "SELECT $a$$$a$, $$$b$$;",
      "S|CREATE FUNCTION f() RETURNS int AS $$ SELECT 1; $$ LANGUAGE sql;|-|1\n"
      "S|CREATE FUNCTION g() RETURNS int AS $body$\nBEGIN\n  RETURN $x$;$x$ "
      "|| '$body'; -- ;\nEND $body$ LANGUAGE plpgsql;|-|2\n"
      "S|SELECT $a$$$a$, $$$b$$;|-|6\n");
  /* a tag that almost closes: $ab$ ... $a$ ... $ab$ */
  expect_split("SELECT $ab$ $a$ ; $a $$ab$;SELECT 2;",
               "S|SELECT $ab$ $a$ ; $a $$ab$;|-|1\nS|SELECT 2;|-|1\n");
}

static void test_comments(void **state) {
  expect_split("-- leading; comment\nSELECT /* a /* nested; */ ; */ 1;\n"
               "/* between; */ SELECT 1 -- trailing;\n+ 2;",
               "S|SELECT /* a /* nested; */ ; */ 1;|-|2\n"
               "S|SELECT 1 -- trailing;\n+ 2;|-|3\n");
  /* a minus, a division and a star are not comments */
  expect_split("SELECT 3-1, 4/2, 2*3, -1;",
               "S|SELECT 3-1, 4/2, 2*3, -1;|-|1\n");
  /* block comments: "**" and "/ /" inside, closing right after opening */
  expect_split("/**/ /*** / **/SELECT 1;",
               "S|SELECT 1;|-|1\n");
}

static void test_meta_commands(void **state) {
  expect_split("\\restrict KeY123\nSET x = 1;\n\\unrestrict KeY123\r\n"
               "SELECT '\\q';\n",
               "M|\\restrict KeY123|1\nS|SET x = 1;|-|2\n"
               "M|\\unrestrict KeY123|3\nS|SELECT '\\q';|-|4\n");
  /* a backslash inside a statement is not a meta-command; a script that
   * ends on a meta line without newline still reports it */
  expect_split("SELECT 1 \\\n;\n\\connect x",
               "S|SELECT 1 \\\n;|-|1\nM|\\connect x|3\n");
}

static void test_headers(void **state) {
  expect_split(
      "SET a = 1;\n--\n-- Name: t; Type: TABLE; Schema: public; Owner: -\n--\n\n"
      "CREATE TABLE public.t (a int);\n\n"
      "--\n-- Name: \"Mixed Case\"; Type: SCHEMA; Schema: -; Owner: -\n--\n\n"
      "CREATE SCHEMA \"Mixed Case\";\nALTER SCHEMA x;\n",
      "S|SET a = 1;|-|1\nS|CREATE TABLE public.t (a int);|table public.t|6\n"
      "S|CREATE SCHEMA \"Mixed Case\";|schema \"Mixed Case\"|12\n"
      "S|ALTER SCHEMA x;|schema \"Mixed Case\"|13\n");
}

static void test_begin_atomic(void **state) {
  expect_split(
      "CREATE FUNCTION public.f() RETURNS integer\n    LANGUAGE sql\n"
      "    BEGIN ATOMIC\n SELECT CASE WHEN true THEN 1 ELSE 2 END;\n"
      " SELECT 2;\nEND;\nBEGIN;\nCOMMIT;\n"
      "CREATE OR REPLACE PROCEDURE p() BEGIN ATOMIC SELECT 1; END;",
      "S|CREATE FUNCTION public.f() RETURNS integer\n    LANGUAGE sql\n"
      "    BEGIN ATOMIC\n SELECT CASE WHEN true THEN 1 ELSE 2 END;\n"
      " SELECT 2;\nEND;|-|1\nS|BEGIN;|-|7\nS|COMMIT;|-|8\n"
      "S|CREATE OR REPLACE PROCEDURE p() BEGIN ATOMIC SELECT 1; END;|-|9\n");
}

static void test_parentheses(void **state) {
  expect_split("CREATE RULE r AS ON INSERT TO t DO INSTEAD "
               "(INSERT INTO a VALUES (1); INSERT INTO b VALUES (2));SELECT 1;",
               "S|CREATE RULE r AS ON INSERT TO t DO INSTEAD "
               "(INSERT INTO a VALUES (1); INSERT INTO b VALUES (2));|-|1\n"
               "S|SELECT 1;|-|1\n");
}

static void test_finish(void **state) {
  expect_split("SELECT 1;\nSELECT 2  \n", "S|SELECT 1;|-|1\nS|SELECT 2|-|2\n");
  expect_split("SELECT 1 -", "S|SELECT 1 -|-|1\n");
  static const char *bad[] = {"SELECT 'abc", "SELECT E'abc\\'", "SELECT \"x",
                              "SELECT $q$ x $q", "SELECT 1 /* /* */"};
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    for (size_t j = 0; j < sizeof(steps) / sizeof(steps[0]); j++) {
      int rc;
      char *got = split(bad[i], steps[j], 0, &rc);
      assert_int_equal(rc, DSD_EINVAL);
      assert_string_equal(got, "");
      free(got);
    }
  }
}

static void test_callback_error_stops(void **state) {
  int rc;
  char *got = split("SELECT 1;SELECT 2;SELECT 3;", 1, 2, &rc);
  assert_int_equal(rc, DSD_EDB);
  assert_string_equal(got, "S|SELECT 1;|-|1\nS|SELECT 2;|-|1\n");
  free(got);
}

static void test_count(void **state) {
  collect_t c = {DSD_BUF_INIT, 0, 0};
  dsd_err_t err;
  dsd_err_clear(&err);
  dsd_sqlsplit_t *s = dsd_sqlsplit_new(on_item, &c);
  const char *sql = "\\restrict k\nSELECT 1;SELECT 2;";
  assert_int_equal(dsd_sqlsplit_feed(s, sql, strlen(sql), &err), 0);
  assert_int_equal(dsd_sqlsplit_finish(s, &err), 0);
  assert_int_equal(dsd_sqlsplit_count(s), 2);
  dsd_sqlsplit_free(s);
  dsd_buf_free(&c.out);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_simple),
      cmocka_unit_test(test_standard_strings),
      cmocka_unit_test(test_escape_strings),
      cmocka_unit_test(test_identifiers),
      cmocka_unit_test(test_dollar_quotes),
      cmocka_unit_test(test_comments),
      cmocka_unit_test(test_meta_commands),
      cmocka_unit_test(test_headers),
      cmocka_unit_test(test_begin_atomic),
      cmocka_unit_test(test_parentheses),
      cmocka_unit_test(test_finish),
      cmocka_unit_test(test_callback_error_stops),
      cmocka_unit_test(test_count),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
