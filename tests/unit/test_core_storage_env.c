/* Unit tests of core/storage_env.c: DSD_STORAGE, VCAP_SERVICES, default. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "core/storage_env.h"

static char seen[8][2][256];
static int nseen;
static void record(const char *name, const char *value) {
  snprintf(seen[nseen][0], 256, "%s", name);
  snprintf(seen[nseen][1], 256, "%s", value);
  nseen++;
}
static const char *seen_value(const char *name) {
  for (int i = 0; i < nseen; i++)
    if (strcmp(seen[i][0], name) == 0) return seen[i][1];
  return NULL;
}

static void test_explicit_and_default(void **state) {
  (void)state;
  dsd_err_t err = {0};
  char *url;
  assert_int_equal(dsd__storage_url_resolve("s3://b/p", NULL, "/x", record, &url, &err), 0);
  assert_string_equal(url, "s3://b/p");
  free(url);
  assert_int_equal(dsd__storage_url_resolve(NULL, NULL, "/srv/app", record, &url, &err), 0);
  assert_string_equal(url, "file:///srv/app/dsd-data");
  free(url);
  assert_int_equal(dsd__storage_url_resolve("ftp://x", NULL, "/", record, &url, &err), DSD_ECONFIG);
  assert_non_null(strstr(err.msg, "DSD_STORAGE"));
}

static void test_vcap_s3_service(void **state) {
  (void)state;
  dsd_err_t err = {0};
  char *url;
  nseen = 0;
  const char *vcap =
      "{\"p.mysql\":[{\"credentials\":{\"hostname\":\"h\",\"password\":\"x\"}}],"
      " \"s3\":[{\"name\":\"store\",\"credentials\":{\"bucket\":\"dumps\","
      "\"access_key_id\":\"AKIAEXAMPLE\",\"secret_access_key\":\"vcap-secret-123\","
      "\"region\":\"eu-west-1\",\"endpoint\":\"minio.example:9000\"}}]}";
  assert_int_equal(dsd__storage_url_resolve("", vcap, "/x", record, &url, &err), 0);
  assert_string_equal(url, "s3://dumps");
  free(url);
  assert_string_equal(seen_value("AWS_ACCESS_KEY_ID"), "AKIAEXAMPLE");
  assert_string_equal(seen_value("AWS_SECRET_ACCESS_KEY"), "vcap-secret-123");
  assert_string_equal(seen_value("AWS_REGION"), "eu-west-1");
  assert_string_equal(seen_value("AWS_ENDPOINT_URL_S3"), "https://minio.example:9000");
  char *r = dsd_redact("key vcap-secret-123");
  assert_string_equal(r, "key <redacted>");
  free(r);
  assert_int_equal(dsd__storage_url_resolve(NULL, "[1,2", "/x", record, &url, &err), DSD_ECONFIG);
  assert_non_null(strstr(err.msg, "VCAP_SERVICES"));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_explicit_and_default),
      cmocka_unit_test(test_vcap_s3_service),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
