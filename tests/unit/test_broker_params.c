/*
 * test_broker_params.c - unit tests of broker/params.c: the API version
 * header, id validation, originating identity parsing, provision/update
 * parameter rules and the DSD_ALLOW_DIRECT_URIS host checks.
 */
#include <setjmp.h> /* cmocka needs it; the code under test does not use it */
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "broker/broker.h"

static const dsd_broker_plan_t *pg(void) {
  return dsd_broker_plan_by_id("3c1e7a52-0b6d-4e0f-8d21-9f4a6c2b7e10");
}
static const dsd_broker_plan_t *mongo(void) {
  return dsd_broker_plan_by_id("7e3a9c74-2d8f-4021-8f43-1b6c8e4d9a32");
}

static void test_version(void **state) {
  int minor = 0;
  dsd_err_t err = {0};
  static const char *good[] = {"2.13", "2.14", "2.15", "2.16", "2.17", "2.99"};
  static const int want[] = {13, 14, 15, 16, 17, 99};
  for (size_t i = 0; i < 6; i++) {
    assert_int_equal(dsd_broker_version_parse(good[i], &minor, NULL), 0);
    assert_int_equal(minor, want[i]);
  }
  static const char *bad[] = {"", "1.0", "1.13", "3.0", "2.12", "2.9", "2", "2.", "2.x",
                              "v2.17", "2.17 ", "2.17.1", "garbage", " 2.17", "-2.17"};
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    dsd_err_clear(&err);
    assert_int_equal(dsd_broker_version_parse(bad[i], &minor, &err), DSD_EINVAL);
    assert_non_null(strstr(err.msg, "2.13"));
  }
  dsd_err_clear(&err);
  assert_int_equal(dsd_broker_version_parse(NULL, &minor, &err), DSD_EINVAL);
  assert_non_null(strstr(err.msg, "missing"));
}

static void test_ids(void **state) {
  char longid[300];
  assert_true(dsd_broker_id_valid("9f3c1a2b-0000-4000-8000-000000000001"));
  assert_true(dsd_broker_id_valid("a"));
  assert_true(dsd_broker_id_valid("a.b_c-d"));
  assert_false(dsd_broker_id_valid(""));
  assert_false(dsd_broker_id_valid(NULL));
  assert_false(dsd_broker_id_valid("a/b"));
  assert_false(dsd_broker_id_valid(".."));
  assert_false(dsd_broker_id_valid("."));
  assert_false(dsd_broker_id_valid("a..b"));
  assert_false(dsd_broker_id_valid("a\nb"));
  assert_false(dsd_broker_id_valid("a\x01"));
  assert_false(dsd_broker_id_valid("a b"));
  assert_false(dsd_broker_id_valid("a\\b"));
  memset(longid, 'a', 255);
  longid[255] = '\0';
  assert_true(dsd_broker_id_valid(longid));
  longid[255] = 'a';
  longid[256] = '\0';
  assert_false(dsd_broker_id_valid(longid));
}

static void test_identity(void **state) {
  char *user = NULL;
  assert_int_equal(dsd_broker_identity_parse(
                       "cloudfoundry eyJ1c2VyX2lkIjoiNjgzZWE3NDgtMzA5Mi00ZmY0LWI2NTYtMzljYWNjNGQ1MzYwIn0=",
                       &user),
                   0);
  assert_string_equal(user, "cloudfoundry:683ea748-3092-4ff4-b656-39cacc4d5360");
  free(user);
  assert_int_equal(dsd_broker_identity_parse("kubernetes eyJ1c2VybmFtZSI6ImFsaWNlIn0=", &user), 0);
  assert_string_equal(user, "kubernetes:alice");
  free(user);
  /* cloudfoundry must carry user_id, not username */
  assert_int_equal(dsd_broker_identity_parse("cloudfoundry eyJ1c2VybmFtZSI6ImFsaWNlIn0=", &user),
                   DSD_EINVAL);
  assert_null(user);
  assert_int_equal(dsd_broker_identity_parse("cloudfoundry bm90IGpzb24=", &user), DSD_EINVAL);
  assert_int_equal(dsd_broker_identity_parse("cloudfoundry", &user), DSD_EINVAL);
  assert_int_equal(dsd_broker_identity_parse("cloudfoundry !!!!", &user), DSD_EINVAL);
  assert_int_equal(dsd_broker_identity_parse("", &user), DSD_EINVAL);
  assert_null(user);
}

static void test_uri_check(void **state) {
  dsd_err_t err = {0};
  /* scheme must match the plan */
  assert_int_equal(dsd_broker_uri_check(DSD_DIRECT_URIS_ALL, pg(), "source_uri",
                                        "postgresql://u:p@db.example.com/x", NULL), 0);
  assert_int_equal(dsd_broker_uri_check(DSD_DIRECT_URIS_ALL, pg(), "source_uri",
                                        "postgres://u:p@db.example.com/x", NULL), 0);
  assert_int_equal(dsd_broker_uri_check(DSD_DIRECT_URIS_ALL, pg(), "source_uri",
                                        "mysql://u:hunter22@db.example.com/x", &err),
                   DSD_EINVAL);
  assert_non_null(strstr(err.msg, "pg plan"));
  assert_null(strstr(err.msg, "hunter22"));
  assert_int_equal(dsd_broker_uri_check(DSD_DIRECT_URIS_ALL, mongo(), "source_uri",
                                        "mongodb+srv://u:p@cluster.example.com/x", NULL), 0);
  /* false: refused whatever the host */
  dsd_err_clear(&err);
  assert_int_equal(dsd_broker_uri_check(DSD_DIRECT_URIS_NONE, pg(), "source_uri",
                                        "postgresql://db.example.com/x", &err), DSD_EINVAL);
  assert_non_null(strstr(err.msg, "DSD_ALLOW_DIRECT_URIS"));
  /* true: loopback and link-local refused, public hosts fine */
  static const char *private_uris[] = {
      "postgresql://u:p@127.0.0.1/x",        "postgresql://u:p@127.1.2.3:5432/x",
      "postgresql://u:p@localhost/x",        "postgresql://u:p@LOCALHOST:5432/x",
      "postgresql://u:p@[::1]:5432/x",       "postgresql://u:p@169.254.169.254/x",
      "postgresql://u:p@[fe80::1]/x",        "postgresql://u:p@[::ffff:127.0.0.1]/x",
      "postgresql://u:p@0.0.0.0/x",          "postgresql://u:p@2130706433/x",
      "postgresql://u:p@foo.localhost/x",    "postgresql:///x",
      "postgresql://u:p@a@127.0.0.1/x",
  };
  for (size_t i = 0; i < sizeof(private_uris) / sizeof(private_uris[0]); i++) {
    dsd_err_clear(&err);
    assert_int_equal(dsd_broker_uri_check(DSD_DIRECT_URIS_PUBLIC, pg(), "source_uri",
                                          private_uris[i], &err), DSD_EINVAL);
    assert_non_null(strstr(err.msg, "loopback"));
    /* and all of them are fine with "all" */
    assert_int_equal(dsd_broker_uri_check(DSD_DIRECT_URIS_ALL, pg(), "source_uri",
                                          private_uris[i], NULL), 0);
  }
  assert_int_equal(dsd_broker_uri_check(DSD_DIRECT_URIS_PUBLIC, pg(), "source_uri",
                                        "postgresql://u:p@10.0.0.5:5432/x", NULL), 0);
  assert_int_equal(dsd_broker_uri_check(DSD_DIRECT_URIS_PUBLIC, pg(), "source_uri",
                                        "postgresql://u:p@db.internal/x", NULL), 0);
  /* mongodb: every host in the list is checked */
  assert_int_equal(dsd_broker_uri_check(DSD_DIRECT_URIS_PUBLIC, mongo(), "source_uri",
                                        "mongodb://u:p@a.example.com:27017,127.0.0.1:27017/x",
                                        NULL), DSD_EINVAL);
  assert_int_equal(dsd_broker_uri_check(DSD_DIRECT_URIS_PUBLIC, mongo(), "source_uri",
                                        "mongodb://u:p@a.example.com:27017,b.example.com/x",
                                        NULL), 0);
}

static void test_strip_password(void **state) {
  char *s = dsd_broker_uri_strip_password("postgresql://user:s3cret@db:5432/app?sslmode=require");
  assert_string_equal(s, "postgresql://user@db:5432/app?sslmode=require");
  free(s);
  s = dsd_broker_uri_strip_password("mysql://user:p@ss@db/app");
  assert_string_equal(s, "mysql://user@db/app");
  free(s);
  s = dsd_broker_uri_strip_password("mongodb://db/app");
  assert_string_equal(s, "mongodb://db/app");
  free(s);
  s = dsd_broker_uri_strip_password("mongodb://user@db/app");
  assert_string_equal(s, "mongodb://user@db/app");
  free(s);
}

static dsd_broker_config_t cfg_with(dsd_direct_uris_t mode, char *cf_api) {
  dsd_broker_config_t c;
  memset(&c, 0, sizeof(c));
  c.direct_uris = mode;
  c.cf_api = cf_api;
  return c;
}

static int provision(const dsd_broker_config_t *c, const char *json, dsd_broker_params_t *out,
                     dsd_err_t *err) {
  json_t *p = json ? json_loads(json, 0, NULL) : NULL;
  int rc = dsd_broker_params_provision(c, pg(), p, out, err);
  json_decref(p);
  return rc;
}

static void test_params_provision(void **state) {
  dsd_broker_params_t p;
  dsd_err_t err = {0};
  dsd_broker_config_t all = cfg_with(DSD_DIRECT_URIS_ALL, NULL);
  dsd_broker_config_t none = cfg_with(DSD_DIRECT_URIS_NONE, NULL);
  dsd_broker_config_t cf = cfg_with(DSD_DIRECT_URIS_NONE, "https://api.example.com");

  assert_int_equal(provision(&all, "{\"source_uri\":\"postgresql://u:pw@h/db\"}", &p, NULL), 0);
  assert_string_equal(p.uri, "postgresql://u:pw@h/db");
  assert_string_equal(p.compression, "zstd");
  assert_null(p.instance_name);
  dsd_broker_params_free(&p);

  assert_int_equal(provision(&all, "{\"source_uri\":\"postgresql://h/db\",\"compression\":\"gzip\","
                                   "\"anonymize\":{\"default\":\"keep\"}}", &p, NULL), 0);
  assert_string_equal(p.compression, "gzip");
  assert_non_null(p.anonymize);
  dsd_broker_params_free(&p);

  /* unknown parameter: named */
  assert_int_equal(provision(&all, "{\"source_uri\":\"postgresql://h/db\",\"tabels\":1}", &p, &err),
                   DSD_EINVAL);
  assert_non_null(strstr(err.msg, "unknown parameter 'tabels'"));
  /* both */
  dsd_err_clear(&err);
  assert_int_equal(provision(&cf, "{\"source_uri\":\"postgresql://h/db\",\"source\":\"x\"}", &p, &err),
                   DSD_EINVAL);
  assert_non_null(strstr(err.msg, "not both"));
  /* neither */
  dsd_err_clear(&err);
  assert_int_equal(provision(&all, "{}", &p, &err), DSD_EINVAL);
  assert_non_null(strstr(err.msg, "source parameter is required"));
  dsd_err_clear(&err);
  assert_int_equal(provision(&all, NULL, &p, &err), DSD_EINVAL);
  /* bad compression */
  dsd_err_clear(&err);
  assert_int_equal(provision(&all, "{\"source_uri\":\"postgresql://h/db\",\"compression\":\"xz\"}",
                             &p, &err), DSD_EINVAL);
  assert_non_null(strstr(err.msg, "compression"));
  /* anonymize must be an object */
  dsd_err_clear(&err);
  assert_int_equal(provision(&all, "{\"source_uri\":\"postgresql://h/db\",\"anonymize\":[]}", &p,
                             &err), DSD_EINVAL);
  /* plan/dialect mismatch */
  dsd_err_clear(&err);
  assert_int_equal(provision(&all, "{\"source_uri\":\"mongodb://h/db\"}", &p, &err), DSD_EINVAL);
  assert_non_null(strstr(err.msg, "does not match the pg plan"));
  /* source_uri refused when direct URIs are off */
  dsd_err_clear(&err);
  assert_int_equal(provision(&none, "{\"source_uri\":\"postgresql://h/db\"}", &p, &err), DSD_EINVAL);
  assert_non_null(strstr(err.msg, "not allowed"));
  /* instance names need DSD_CF_API */
  dsd_err_clear(&err);
  assert_int_equal(provision(&none, "{\"source\":\"mydb\"}", &p, &err), DSD_EINVAL);
  assert_non_null(strstr(err.msg, "DSD_CF_API"));
  assert_non_null(strstr(err.msg, "HINT: use source_uri"));
  assert_int_equal(provision(&cf, "{\"source\":\"mydb\"}", &p, NULL), 0);
  assert_string_equal(p.instance_name, "mydb");
  dsd_broker_params_free(&p);
  /* source must be a string */
  dsd_err_clear(&err);
  assert_int_equal(provision(&cf, "{\"source\":5}", &p, &err), DSD_EINVAL);
}

static void test_params_update(void **state) {
  dsd_broker_params_t p;
  dsd_err_t err = {0};
  dsd_broker_config_t all = cfg_with(DSD_DIRECT_URIS_ALL, NULL);
  json_t *j = json_loads("{\"target_uri\":\"postgresql://h/db\"}", 0, NULL);
  assert_int_equal(dsd_broker_params_update(&all, pg(), j, &p, NULL), 0);
  assert_true(p.clean);
  dsd_broker_params_free(&p);
  json_decref(j);
  j = json_loads("{\"target_uri\":\"postgresql://h/db\",\"clean\":false}", 0, NULL);
  assert_int_equal(dsd_broker_params_update(&all, pg(), j, &p, NULL), 0);
  assert_false(p.clean);
  dsd_broker_params_free(&p);
  json_decref(j);
  j = json_loads("{\"target_uri\":\"postgresql://h/db\",\"clean\":\"yes\"}", 0, NULL);
  assert_int_equal(dsd_broker_params_update(&all, pg(), j, &p, &err), DSD_EINVAL);
  json_decref(j);
  dsd_err_clear(&err);
  j = json_loads("{\"source_uri\":\"postgresql://h/db\"}", 0, NULL);
  assert_int_equal(dsd_broker_params_update(&all, pg(), j, &p, &err), DSD_EINVAL);
  assert_non_null(strstr(err.msg, "unknown parameter 'source_uri'"));
  json_decref(j);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_version),         cmocka_unit_test(test_ids),
      cmocka_unit_test(test_identity),        cmocka_unit_test(test_uri_check),
      cmocka_unit_test(test_strip_password),  cmocka_unit_test(test_params_provision),
      cmocka_unit_test(test_params_update),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
