/*
 * test_mysql_split.c - unit tests of the mysql dialect's pure parts: the
 * incremental statement splitter (dialects/mysql/mysql_split.c), value
 * escaping and hex encoding, DEFINER stripping and URI parsing
 * (dialects/mysql/mysql.c).
 *
 * Every script is split with several chunk sizes (1 byte, 2, 3, 7 and the
 * whole script at once), because a chunk boundary may fall inside any
 * token, and every split must give the same statements.
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
#include "dialects/mysql/mysql.h"

/* ------------------------------------------------------------------ */
/* Splitter                                                            */

typedef struct collect {
  dsd_buf_t out; /* "text|line\n" per statement */
  int stop_after;
  int seen;
} collect_t;

static int on_stmt(void *data, const char *stmt, size_t len, unsigned line, dsd_err_t *err) {
  collect_t *c = data;
  c->seen++;
  assert_int_equal(strlen(stmt), len);
  dsd_buf_printf(&c->out, "%s|%u\n", stmt, line);
  if (c->stop_after && c->seen == c->stop_after)
    return dsd_err_set(err, DSD_EDB, "stopped at %d", c->seen);
  return 0;
}

static char *split(const char *script, size_t step, int stop_after, int *rc) {
  collect_t c = {DSD_BUF_INIT, stop_after, 0};
  dsd_err_t err;
  size_t len = strlen(script);
  dsd_err_clear(&err);
  dsd__mysql_split_t *s = dsd__mysql_split_new(on_stmt, &c);
  assert_non_null(s);
  if (step == 0)
    step = len ? len : 1;
  *rc = 0;
  for (size_t off = 0; off < len && *rc == 0; off += step) {
    size_t n = len - off < step ? len - off : step;
    *rc = dsd__mysql_split_feed(s, script + off, n, &err);
  }
  if (*rc == 0)
    *rc = dsd__mysql_split_finish(s, &err);
  dsd__mysql_split_free(s);
  dsd_buf_append_str(&c.out, "");
  return dsd_buf_steal(&c.out);
}

static const size_t steps[] = {0, 1, 2, 3, 7};

static void expect_split(const char *script, const char *expected) {
  for (size_t i = 0; i < sizeof steps / sizeof steps[0]; i++) {
    int rc;
    char *got = split(script, steps[i], 0, &rc);
    if (strcmp(got, expected) != 0 || rc != 0)
      fail_msg("step %zu: rc %d\ngot:\n%s\nexpected:\n%s", steps[i], rc, got, expected);
    free(got);
  }
}

static void test_split_basic(void **state) {
  (void)state;
  expect_split("SELECT 1;\nSELECT 2;", "SELECT 1|1\nSELECT 2|2\n");
  expect_split("  \n\n  SELECT 1  ;  ", "SELECT 1|3\n");
  expect_split("SELECT 1", "SELECT 1|1\n"); /* no final delimiter */
  expect_split(";;;", "");                    /* empty statements */
  expect_split("", "");
}

static void test_split_quotes(void **state) {
  (void)state;
  expect_split("INSERT INTO t VALUES ('a;b', \"c;d\", `e;f`);",
               "INSERT INTO t VALUES ('a;b', \"c;d\", `e;f`)|1\n");
  /* backslash escapes, doubled quotes */
  expect_split("SELECT 'it\\'s;', 'x'';y', \"q\\\";\", \"a\"\";b\";",
               "SELECT 'it\\'s;', 'x'';y', \"q\\\";\", \"a\"\";b\"|1\n");
  /* a backslash before the closing quote's neighbour: '\\' ends the string */
  expect_split("SELECT '\\\\';SELECT 2;", "SELECT '\\\\'|1\nSELECT 2|1\n");
  /* backquotes: no backslash escapes, `` is a backquote */
  expect_split("SELECT `a\\`;SELECT `we``ird;`;", "SELECT `a\\`|1\nSELECT `we``ird;`|1\n");
  /* newlines inside strings count */
  expect_split("SELECT 'a\n;b';\nSELECT 3;", "SELECT 'a\n;b'|1\nSELECT 3|3\n");
}

static void test_split_comments(void **state) {
  (void)state;
  expect_split("-- a comment; with a semicolon\nSELECT 1; # another; one\nSELECT 2;",
               "SELECT 1|2\nSELECT 2|3\n");
  /* "--" without a blank after it is two minus signs */
  expect_split("SELECT 5--1;", "SELECT 5--1|1\n");
  expect_split("SELECT 5 --\nSELECT;", "SELECT 5 --\nSELECT|1\n");
  /* block comments: skipped before a statement, kept inside one */
  expect_split("/* lead; */ SELECT /* in; */ 1;", "SELECT /* in; */ 1|1\n");
  /* versioned comments are statements for the server */
  expect_split("/*!40101 SET NAMES utf8mb4 */;\nSELECT 1;",
               "/*!40101 SET NAMES utf8mb4 */|1\nSELECT 1|2\n");
  /* comment-only text is not a statement */
  expect_split("-- only\n/* comments */\n# here\n", "");
  expect_split("SELECT 1 /* a ** b */;", "SELECT 1 /* a ** b */|1\n");
  expect_split("SELECT 8/2;", "SELECT 8/2|1\n");
}

static void test_split_delimiter(void **state) {
  (void)state;
  expect_split("SET a = 1;\n"
               "DELIMITER ;;\n"
               "CREATE PROCEDURE p() BEGIN SELECT 1; SELECT ';;'; END;;\n"
               "CREATE TRIGGER t BEFORE INSERT ON x FOR EACH ROW BEGIN SET NEW.a = 1; END;;\n"
               "DELIMITER ;\n"
               "SELECT 2;\n"
               "delimiter $$\n"
               "SELECT 3$$\n"
               "DELIMITER ;\n",
               "SET a = 1|1\n"
               "CREATE PROCEDURE p() BEGIN SELECT 1; SELECT ';;'; END|3\n"
               "CREATE TRIGGER t BEFORE INSERT ON x FOR EACH ROW BEGIN SET NEW.a = 1; END|4\n"
               "SELECT 2|6\n"
               "SELECT 3|8\n");
  /* "delimiter" as a column name is not a DELIMITER line */
  expect_split("SELECT delimiter FROM t;", "SELECT delimiter FROM t|1\n");
  expect_split("DELIMITERS;", "DELIMITERS|1\n");
  /* a DELIMITER line at the very end without a newline */
  expect_split("SELECT 1;\nDELIMITER ;;", "SELECT 1|1\n");
}

static void test_split_errors(void **state) {
  int rc;
  char *got;
  (void)state;
  got = split("SELECT 'open;", 0, 0, &rc);
  assert_int_equal(rc, DSD_EINVAL);
  free(got);
  got = split("SELECT 1 /* open", 3, 0, &rc);
  assert_int_equal(rc, DSD_EINVAL);
  free(got);
  got = split("SELECT `open", 1, 0, &rc);
  assert_int_equal(rc, DSD_EINVAL);
  free(got);
  /* the callback's error stops the splitter and is returned unchanged */
  got = split("SELECT 1; SELECT 2; SELECT 3;", 2, 2, &rc);
  assert_int_equal(rc, DSD_EDB);
  assert_string_equal(got, "SELECT 1|1\nSELECT 2|1\n");
  free(got);
}

/* ------------------------------------------------------------------ */
/* Values                                                              */

static void test_quote_string(void **state) {
  dsd_buf_t b = DSD_BUF_INIT;
  const char in[] = "a'b\"c\\d\ne\rf\0g\032h\ti\xf0\x9f\x90\x98";
  (void)state;
  assert_int_equal(dsd__mysql_quote_string(&b, in, sizeof in - 1), 0);
  assert_string_equal(b.data, "'a\\'b\\\"c\\\\d\\ne\\rf\\0g\\Zh\ti\xf0\x9f\x90\x98'");
  dsd_buf_reset(&b);
  assert_int_equal(dsd__mysql_quote_string(&b, "", 0), 0);
  assert_string_equal(b.data, "''");
  dsd_buf_free(&b);
}

static void test_hex(void **state) {
  dsd_buf_t b = DSD_BUF_INIT;
  unsigned char all[256];
  (void)state;
  for (int i = 0; i < 256; i++)
    all[i] = (unsigned char)i;
  assert_int_equal(dsd__mysql_hex(&b, all, sizeof all), 0);
  assert_int_equal(b.len, 2 + 512);
  assert_memory_equal(b.data, "0x000102", 8);
  assert_string_equal(b.data + b.len - 6, "fdfeff");
  dsd_buf_reset(&b);
  assert_int_equal(dsd__mysql_hex(&b, "", 0), 0);
  assert_string_equal(b.data, "''");
  dsd_buf_free(&b);
}

static void test_quote_ident(void **state) {
  dsd_buf_t b = DSD_BUF_INIT;
  (void)state;
  assert_int_equal(dsd__mysql_quote_ident(&b, "we`ird"), 0);
  assert_string_equal(b.data, "`we``ird`");
  dsd_buf_reset(&b);
  assert_int_equal(dsd__mysql_quote_ident(&b, "select"), 0);
  assert_string_equal(b.data, "`select`");
  dsd_buf_free(&b);
}

static void test_strip_definer(void **state) {
  char a[] = "CREATE DEFINER=`root`@`localhost` TRIGGER t BEFORE INSERT ON x FOR EACH ROW "
             "SET NEW.a = 'DEFINER=`x`@`y` '";
  char b[] = "CREATE ALGORITHM=UNDEFINED DEFINER=`we``ird`@`%` SQL SECURITY DEFINER VIEW `v` AS "
             "select 1";
  char c[] = "CREATE DEFINER=root@localhost PROCEDURE p() SELECT 1";
  char d[] = "CREATE TABLE t (a int)";
  (void)state;
  dsd__mysql_strip_definer(a);
  assert_string_equal(a, "CREATE TRIGGER t BEFORE INSERT ON x FOR EACH ROW "
                         "SET NEW.a = 'DEFINER=`x`@`y` '");
  size_t n = dsd__mysql_strip_definer(b);
  assert_int_equal(n, strlen(b));
  assert_string_equal(b, "CREATE ALGORITHM=UNDEFINED SQL SECURITY DEFINER VIEW `v` AS select 1");
  dsd__mysql_strip_definer(c);
  assert_string_equal(c, "CREATE PROCEDURE p() SELECT 1");
  dsd__mysql_strip_definer(d);
  assert_string_equal(d, "CREATE TABLE t (a int)");
}

/* ------------------------------------------------------------------ */
/* URIs                                                                */

static void test_uri_full(void **state) {
  dsd__mysql_uri_t u;
  dsd_err_t err;
  (void)state;
  dsd_err_clear(&err);
  assert_int_equal(dsd__mysql_uri_parse("mysql://us%40er:p%3Ass@w@db.example.com:3307/my%20db"
                                        "?ssl-mode=verify_ca&ssl-ca=%2Fetc%2Fca.pem",
                                        &u, &err), 0);
  assert_string_equal(u.user, "us@er");
  assert_string_equal(u.password, "p:ss@w");
  assert_string_equal(u.host, "db.example.com");
  assert_int_equal(u.port, 3307);
  assert_string_equal(u.db, "my db");
  assert_string_equal(u.ssl_mode, "VERIFY_CA");
  assert_string_equal(u.ssl_ca, "/etc/ca.pem");
  dsd__mysql_uri_free(&u);
  assert_null(u.password);

  assert_int_equal(dsd__mysql_uri_parse("mariadb://root@[::1]/d?socket=%2Ftmp%2Fm.sock&ssl_mode=REQUIRED",
                                        &u, &err), 0);
  assert_string_equal(u.user, "root");
  assert_null(u.password);
  assert_string_equal(u.host, "::1");
  assert_int_equal(u.port, 0);
  assert_string_equal(u.socket, "/tmp/m.sock");
  assert_string_equal(u.ssl_mode, "REQUIRED");
  dsd__mysql_uri_free(&u);

  assert_int_equal(dsd__mysql_uri_parse("mysql://h/d", &u, &err), 0);
  assert_null(u.user);
  assert_string_equal(u.host, "h");
  dsd__mysql_uri_free(&u);
}

static void test_uri_errors(void **state) {
  static const char *const bad[] = {
      "postgresql://u:p@h/d",       /* other scheme */
      "mysql://u:secretpw@h:0/d",   /* port 0 */
      "mysql://u:secretpw@h:99999/d",
      "mysql://u:secretpw@h:12x/d",
      "mysql://u:secretpw@h",       /* no database */
      "mysql://u:secretpw@h/",
      "mysql://u:secret%zzpw@h/d",  /* bad escape */
      "mysql://u:secretpw@h/d?ssl-mode=SOMETIMES",
      "mysql://u:secretpw@h/d?password=x",
      "mysql://u:secretpw@h/d?novalue",
      "mysql://u:secretpw@[::1/d",
  };
  (void)state;
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    dsd__mysql_uri_t u;
    dsd_err_t err;
    dsd_err_clear(&err);
    if (dsd__mysql_uri_parse(bad[i], &u, &err) != DSD_EINVAL)
      fail_msg("accepted %s", bad[i]);
    /* the message never quotes the password */
    assert_null(strstr(dsd_err_msg(&err), "secret"));
    assert_null(u.password);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_split_basic),     cmocka_unit_test(test_split_quotes),
      cmocka_unit_test(test_split_comments),  cmocka_unit_test(test_split_delimiter),
      cmocka_unit_test(test_split_errors),    cmocka_unit_test(test_quote_string),
      cmocka_unit_test(test_hex),             cmocka_unit_test(test_quote_ident),
      cmocka_unit_test(test_strip_definer),   cmocka_unit_test(test_uri_full),
      cmocka_unit_test(test_uri_errors),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
