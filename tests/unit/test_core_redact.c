/* Unit tests of the redaction in core/log.c: registered secrets and every
 * pattern that marks a secret by position. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/log.h"

static void check(const char *in, const char *want) {
  char *got = dsd_redact(in);
  assert_non_null(got);
  if (strcmp(got, want) != 0) fail_msg("redact(%s)\n got  %s\n want %s", in, got, want);
  free(got);
}

static void test_registered_secrets(void **state) {
  (void)state;
  dsd_redact_register("s3cr3t-key-value");
  dsd_redact_register("abc"); /* too short: ignored, would mangle text */
  check("key=s3cr3t-key-value and again s3cr3t-key-value",
        "key=<redacted> and again <redacted>");
  check("abc stays", "abc stays");
  dsd_redact_unregister("s3cr3t-key-value");
  check("s3cr3t-key-value", "s3cr3t-key-value");
}

static void test_longest_secret_first(void **state) {
  (void)state;
  dsd_redact_register("pass");
  dsd_redact_register("password-long");
  check("x password-long y", "x <redacted> y");
  dsd_redact_unregister("pass");
  dsd_redact_unregister("password-long");
}

static void test_uri_passwords(void **state) {
  (void)state;
  check("postgresql://alice:pa:ss@db.example:5432/app?sslmode=require",
        "postgresql://alice:<redacted>@db.example:5432/app?sslmode=require");
  check("mysql://bob:p%40ss@host/x", "mysql://bob:<redacted>@host/x");
  check("mongodb+srv://u:p@cluster/db", "mongodb+srv://u:<redacted>@cluster/db");
  check("no password: postgresql://alice@host/db", "no password: postgresql://alice@host/db");
  check("https://example.com/a:b@c", "https://example.com/a:b@c");
}

static void test_headers(void **state) {
  (void)state;
  check("Authorization: Basic dXNlcjpwYXNz", "Authorization: Basic <redacted>");
  check("authorization: AWS4-HMAC-SHA256 Credential=AKIA/2013/us-east-1/s3/aws4_request, "
        "SignedHeaders=host, Signature=abcdef",
        "authorization: AWS4-HMAC-SHA256 <redacted>");
  check("X-Amz-Security-Token: FQoGZXIvYXdzE\r\nHost: x",
        "X-Amz-Security-Token: <redacted>\r\nHost: x");
}

static void test_query_and_conninfo(void **state) {
  (void)state;
  check("GET /b/k?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIA%2F2013&X-Amz-Signature=deadbeef&x=1",
        "GET /b/k?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=<redacted>&X-Amz-Signature=<redacted>&x=1");
  check("host=h port=5432 password=topsecret user=u", "host=h port=5432 password=<redacted> user=u");
  check("host=h password='a b\\' c' user=u", "host=h password=<redacted> user=u");
  check("PGPASSWORD=xyz123 pg_dump", "PGPASSWORD=<redacted> pg_dump");
  /* A word that merely ends in a pattern name is not a pattern. */
  check("mypassword=1", "mypassword=1");
}

static void test_json_members(void **state) {
  (void)state;
  check("{\"username\":\"u\",\"password\":\"p\\\"w\",\"port\":5432}",
        "{\"username\":\"u\",\"password\":\"<redacted>\",\"port\":5432}");
  check("{\"client_secret\": \"abc\", \"access_token\":\"t\", \"salt\":\"s\"}",
        "{\"client_secret\": \"<redacted>\", \"access_token\":\"<redacted>\", \"salt\":\"<redacted>\"}");
  check("{\"name\":\"password\"}", "{\"name\":\"password\"}");
}

static void test_log_lines_are_redacted(void **state) {
  (void)state;
  char path[] = "/tmp/dsd-log-XXXXXX";
  int fd = mkstemp(path);
  assert_true(fd >= 0);
  dsd_log_set_fd(fd);
  dsd_redact_register("broker-pw-123456");
  dsd_log_info("request with broker-pw-123456 and postgresql://u:dbpw@h/d");
  dsd_log_debug("debug is below the default level");
  dsd_log_set_fd(2);
  char buf[1024] = {0};
  assert_true(pread(fd, buf, sizeof(buf) - 1, 0) > 0);
  close(fd);
  unlink(path);
  assert_null(strstr(buf, "broker-pw-123456"));
  assert_null(strstr(buf, "dbpw"));
  assert_non_null(strstr(buf, " INFO  request with <redacted> and postgresql://u:<redacted>@h/d\n"));
  assert_null(strstr(buf, "debug is below"));
  dsd_redact_unregister("broker-pw-123456");
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_registered_secrets),   cmocka_unit_test(test_longest_secret_first),
      cmocka_unit_test(test_uri_passwords),        cmocka_unit_test(test_headers),
      cmocka_unit_test(test_query_and_conninfo),   cmocka_unit_test(test_json_members),
      cmocka_unit_test(test_log_lines_are_redacted),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
