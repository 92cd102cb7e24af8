/*
 * test_cc_creds.c - connection URIs from service-key credential shapes
 * (broker/cc_creds.c): uri, jdbcUrl and separate fields as real brokers
 * return them, dialect mismatches, percent-encoding, and the dialect and
 * URL-encoding helpers.
 */
#include <setjmp.h> /* cmocka needs it; dsd itself never uses setjmp */
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "broker/cc.h"

/* Parses json, converts, checks the result (expect NULL: must fail with
 * want_code) and returns nothing; failures name the input. */
static void check_uri(const char *json, const char *dialect, const char *expect, int want_code) {
  json_error_t jerr;
  json_t *c = json_loads(json, 0, &jerr);
  assert_non_null(c);
  char *uri = NULL;
  dsd_err_t err = {0};
  int rc = dsd_cc_credentials_uri(c, dialect, &uri, &err);
  if (expect != NULL) {
    if (rc != 0) fail_msg("%s -> error %d %s", json, rc, err.msg);
    assert_string_equal(uri, expect);
  } else {
    assert_int_equal(rc, want_code);
    assert_null(uri);
    assert_true(err.msg[0] != '\0');
  }
  free(uri);
  json_decref(c);
}

static void test_uri_shapes(void **state) {
  check_uri("{\"uri\":\"postgres://u:p@db.example.com:5432/app\"}", "pg",
            "postgres://u:p@db.example.com:5432/app", 0);
  check_uri("{\"uri\":\"postgresql://u:p@h/app?sslmode=require\",\"hostname\":\"x\"}", "pg",
            "postgresql://u:p@h/app?sslmode=require", 0);
  check_uri("{\"uri\":\"mysql://u:p@h:3306/app?reconnect=true\"}", "mysql",
            "mysql://u:p@h:3306/app?reconnect=true", 0);
  /* Ruby's mysql2:// spelling becomes mysql:// */
  check_uri("{\"uri\":\"mysql2://u:p@h:3306/app\"}", "mysql", "mysql://u:p@h:3306/app", 0);
  check_uri("{\"uri\":\"mongodb://u:p@h1:27017,h2:27017/app?replicaSet=rs0\"}", "mongo",
            "mongodb://u:p@h1:27017,h2:27017/app?replicaSet=rs0", 0);
  check_uri("{\"uri\":\"mongodb+srv://u:p@cluster.example.net/app\"}", "mongo",
            "mongodb+srv://u:p@cluster.example.net/app", 0);
  /* "url" is an alias some brokers use */
  check_uri("{\"url\":\"postgres://u:p@h/app\"}", "pg", "postgres://u:p@h/app", 0);
}

static void test_jdbc_shapes(void **state) {
  check_uri("{\"jdbcUrl\":\"jdbc:postgresql://db.example.com:5432/app?user=alice&password=s%40cr%2Ft"
            "&sslmode=verify-full&ssl=true\"}",
            "pg", "postgresql://alice:s%40cr%2Ft@db.example.com:5432/app?sslmode=verify-full", 0);
  check_uri("{\"jdbcUrl\":\"jdbc:mysql://10.0.0.5:3306/cf_db?user=bob&password=p%20w&useSSL=false\"}",
            "mysql", "mysql://bob:p%20w@10.0.0.5:3306/cf_db", 0);
  /* user and password beside the jdbcUrl (csb shape) */
  check_uri("{\"jdbcUrl\":\"jdbc:postgresql://h:5432/app\",\"username\":\"u\",\"password\":\"a:b\"}",
            "pg", "postgresql://u:a%3Ab@h:5432/app", 0);
  check_uri("{\"jdbcUrl\":\"jdbc:mysql://h:3306/app\"}", "pg", NULL, DSD_EINVAL);
  check_uri("{\"jdbcUrl\":\"jdbc:sqlserver://h:1433;database=x\"}", "pg", NULL, DSD_EINVAL);
}

static void test_field_shapes(void **state) {
  /* p-mysql */
  check_uri("{\"hostname\":\"mysql.example.com\",\"port\":3306,\"name\":\"cf_abc\","
            "\"username\":\"u1\",\"password\":\"p@ss/word\"}",
            "mysql", "mysql://u1:p%40ss%2Fword@mysql.example.com:3306/cf_abc", 0);
  /* crunchy */
  check_uri("{\"db_host\":\"pg.internal\",\"db_port\":\"5432\",\"db_name\":\"app\","
            "\"username\":\"u\",\"password\":\"p\"}",
            "pg", "postgresql://u:p@pg.internal:5432/app", 0);
  /* host + database + user, no port */
  check_uri("{\"host\":\"h\",\"database\":\"d\",\"user\":\"u\",\"password\":\"p q\"}", "pg",
            "postgresql://u:p%20q@h/d", 0);
  /* IPv6 literal is bracketed */
  check_uri("{\"host\":\"fd00::5\",\"port\":5432,\"db\":\"d\",\"username\":\"u\",\"password\":\"p\"}",
            "pg", "postgresql://u:p@[fd00::5]:5432/d", 0);
  /* mongo without a database name is fine */
  check_uri("{\"hostname\":\"m\",\"port\":27017,\"username\":\"u\",\"password\":\"p\"}", "mongo",
            "mongodb://u:p@m:27017/", 0);
  /* nothing usable */
  check_uri("{\"foo\":\"bar\"}", "pg", NULL, DSD_EINVAL);
  check_uri("{\"hostname\":\"h\",\"username\":\"u\"}", "pg", NULL, DSD_EINVAL);
  /* a pg port on fields for a mysql plan */
  check_uri("{\"hostname\":\"h\",\"port\":5432,\"name\":\"d\"}", "mysql", NULL, DSD_EINVAL);
}

static void test_mismatch_message(void **state) {
  json_t *c = json_pack("{s:s}", "uri", "mysql://u:p@h/d");
  char *uri = NULL;
  dsd_err_t err = {0};
  assert_int_equal(dsd_cc_credentials_uri(c, "pg", &uri, &err), DSD_EINVAL);
  assert_non_null(strstr(err.msg, "the service instance is a mysql database but the plan is pg"));
  assert_null(strstr(err.msg, "u:p")); /* no credentials in the message */
  json_decref(c);

  c = json_pack("{s:s}", "uri", "postgres://u:p@h/d");
  dsd_err_clear(&err);
  assert_int_equal(dsd_cc_credentials_uri(c, "mongo", &uri, &err), DSD_EINVAL);
  assert_non_null(strstr(err.msg, "is a postgresql database but the plan is mongo"));
  dsd_err_clear(&err);
  assert_int_equal(dsd_cc_credentials_uri(c, "oracle", &uri, &err), DSD_EINVAL);
  dsd_err_clear(&err);
  json_decref(c);
  c = json_string("x");
  assert_int_equal(dsd_cc_credentials_uri(c, "pg", &uri, &err), DSD_EINVAL);
  json_decref(c);
}

static void test_urlencode(void **state) {
  char *e = dsd_cc_urlencode("a b/c?d&e=f%g@h:i~j_k.l-m");
  assert_string_equal(e, "a%20b%2Fc%3Fd%26e%3Df%25g%40h%3Ai~j_k.l-m");
  free(e);
  e = dsd_cc_urlencode("\xc3\xa9");
  assert_string_equal(e, "%C3%A9");
  free(e);
  e = dsd_cc_urlencode("");
  assert_string_equal(e, "");
  free(e);
}

static void test_dialect_of(void **state) {
  assert_string_equal(dsd_cc_dialect_of("postgresql-db", "small"), "pg");
  assert_string_equal(dsd_cc_dialect_of("csb-aws-postgresql", NULL), "pg");
  assert_string_equal(dsd_cc_dialect_of("elephantsql", "turtle"), "pg");
  assert_string_equal(dsd_cc_dialect_of("a9s-pg", "pg-single"), "pg");
  assert_string_equal(dsd_cc_dialect_of("p.mysql", "db-small"), "mysql");
  assert_string_equal(dsd_cc_dialect_of("MariaDB", ""), "mysql");
  assert_string_equal(dsd_cc_dialect_of("mongodb-atlas", "M10"), "mongo");
  /* the offering says nothing; the plan does */
  assert_string_equal(dsd_cc_dialect_of("aws-rds", "postgres-13"), "pg");
  /* "pg" only as a word, not inside "upgrade" */
  assert_null(dsd_cc_dialect_of("upgrade-service", "standard"));
  assert_null(dsd_cc_dialect_of("redis", "cache"));
  assert_null(dsd_cc_dialect_of(NULL, NULL));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_uri_shapes),     cmocka_unit_test(test_jdbc_shapes),
      cmocka_unit_test(test_field_shapes),   cmocka_unit_test(test_mismatch_message),
      cmocka_unit_test(test_urlencode),      cmocka_unit_test(test_dialect_of),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
