/*
 * test_s3_client.c - pure parts of the S3 client and the s3 blob backend:
 * backoff with full jitter, which failures are retried, part-size growth,
 * configuration errors and the storage URL dispatcher. Talking to real
 * servers is covered by tests/integration/test_s3_*.py.
 */
#include <curl/curl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/blob.h"
#include "core/log.h"
#include "s3/blob_s3.h"
#include "s3/s3.h"

#define MiB ((size_t)1024 * 1024)

static void test_backoff(void **state) {
  /* r = 0 gives no delay, r just below 1 the ceiling. */
  assert_int_equal(dsd__s3_backoff_ms(0, 100, 10000, 0.0), 0);
  assert_int_equal(dsd__s3_backoff_ms(0, 100, 10000, 0.5), 50);
  assert_int_equal(dsd__s3_backoff_ms(1, 100, 10000, 0.5), 100);
  assert_int_equal(dsd__s3_backoff_ms(3, 100, 10000, 0.5), 400);
  assert_in_range(dsd__s3_backoff_ms(3, 100, 10000, 0.999999), 799, 800);
  /* The ceiling stops at the cap, even for huge attempt counts. */
  assert_int_equal(dsd__s3_backoff_ms(10, 100, 10000, 0.5), 5000);
  assert_int_equal(dsd__s3_backoff_ms(1000, 100, 10000, 0.5), 5000);
  /* Out-of-range randomness is clamped rather than trusted. */
  assert_true(dsd__s3_backoff_ms(2, 100, 10000, 7.0) < 400);
  assert_int_equal(dsd__s3_backoff_ms(2, 100, 10000, -1.0), 0);
  /* Full jitter: the spread covers the whole interval. */
  unsigned lo = 100000, hi = 0;
  for (int i = 0; i < 100; i++) {
    unsigned v = dsd__s3_backoff_ms(4, 100, 10000, i / 100.0);
    if (v < lo) lo = v;
    if (v > hi) hi = v;
  }
  assert_int_equal(lo, 0);
  assert_in_range(hi, 1500, 1600);
}

static void test_retryable(void **state) {
  assert_true(dsd__s3_retryable(CURLE_OK, 500));
  assert_true(dsd__s3_retryable(CURLE_OK, 503));
  assert_true(dsd__s3_retryable(CURLE_OK, 429));
  assert_false(dsd__s3_retryable(CURLE_OK, 200));
  assert_false(dsd__s3_retryable(CURLE_OK, 403));
  assert_false(dsd__s3_retryable(CURLE_OK, 404));
  assert_false(dsd__s3_retryable(CURLE_OK, 400));
  assert_true(dsd__s3_retryable(CURLE_COULDNT_CONNECT, 0));
  assert_true(dsd__s3_retryable(CURLE_SEND_ERROR, 0));
  assert_true(dsd__s3_retryable(CURLE_RECV_ERROR, 0));
  assert_true(dsd__s3_retryable(CURLE_OPERATION_TIMEDOUT, 0));
  assert_true(dsd__s3_retryable(CURLE_GOT_NOTHING, 0));
  assert_false(dsd__s3_retryable(CURLE_URL_MALFORMAT, 0));
  assert_false(dsd__s3_retryable(CURLE_PEER_FAILED_VERIFICATION, 0));
  assert_false(dsd__s3_retryable(CURLE_WRITE_ERROR, 0));
}

static void test_part_size_growth(void **state) {
  size_t base = 8 * MiB;
  assert_int_equal(dsd__s3_part_size(base, 1), 8 * MiB);
  assert_int_equal(dsd__s3_part_size(base, 1000), 8 * MiB);
  assert_int_equal(dsd__s3_part_size(base, 1001), 16 * MiB);
  assert_int_equal(dsd__s3_part_size(base, 2001), 32 * MiB);
  assert_int_equal(dsd__s3_part_size(base, 10000), 8 * MiB * 512);
  /* Below S3's minimum the base is raised; the cap is S3's 5 GiB. */
  assert_int_equal(dsd__s3_part_size(1024, 1), DSD_S3_MIN_PART_SIZE);
  assert_int_equal(dsd__s3_part_size((size_t)4 << 30, 1001),
                   DSD_S3_MAX_PART_SIZE);
  /* 10,000 parts of the default size hold more than S3's 5 TiB object
   * limit, so a stream never runs out of part numbers first. */
  long double total = 0;
  for (int n = 1; n <= DSD_S3_MAX_PARTS; n++)
    total += dsd__s3_part_size(DSD_S3_DEFAULT_PART_SIZE, n);
  assert_true(total >= 5.0L * 1024 * 1024 * 1024 * 1024);
  /* Sizes never shrink. */
  for (int n = 2; n <= DSD_S3_MAX_PARTS; n++)
    assert_true(dsd__s3_part_size(base, n) >= dsd__s3_part_size(base, n - 1));
}

static void test_multipart_etag(void **state) {
  /* Two parts "a" and "b": MD5s 0cc175b9... and 92eb5ffe...; the object
   * ETag is MD5 of their 32 binary bytes, "-2". */
  const char *etags[] = {"\"0cc175b9c0f1b6a831c399e269772661\"",
                         "92eb5ffee6ae2fec3ad71c777531578f"};
  char out[64];
  assert_true(dsd__s3_multipart_etag(etags, 2, out, sizeof out));
  assert_string_equal(out, "\"96e024ba2074fe77e8e965ba43a704be-2\"");
  const char *bad[] = {"\"0cc175b9c0f1b6a831c399e269772661\"", "\"kms-etag\""};
  assert_false(dsd__s3_multipart_etag(bad, 2, out, sizeof out));
  assert_false(dsd__s3_multipart_etag(etags, 0, out, sizeof out));
}

static void test_client_config_errors(void **state) {
  dsd_s3_client_t *c = NULL;
  dsd_err_t err = {0};
  dsd_s3_config_t cfg = {.access_key = "AKID", .secret_key = NULL};
  assert_int_equal(dsd_s3_client_new(&cfg, &c, &err), DSD_ECONFIG);
  assert_null(c);
  assert_non_null(strstr(err.msg, "AWS_SECRET_ACCESS_KEY"));

  dsd_err_clear(&err);
  cfg = (dsd_s3_config_t){.access_key = "AKID", .secret_key = "s3cr3t-value",
                          .endpoint = "ftp://x"};
  assert_int_equal(dsd_s3_client_new(&cfg, &c, &err), DSD_ECONFIG);
  assert_non_null(strstr(err.msg, "HINT:"));

  dsd_err_clear(&err);
  cfg.endpoint = "http://127.0.0.1:9000/";
  assert_int_equal(dsd_s3_client_new(&cfg, &c, &err), 0);
  assert_string_equal(dsd_s3_client_endpoint(c), "http://127.0.0.1:9000");
  dsd_s3_client_free(c);

  cfg.endpoint = NULL;
  cfg.region = "eu-west-3";
  assert_int_equal(dsd_s3_client_new(&cfg, &c, &err), 0);
  assert_string_equal(dsd_s3_client_endpoint(c),
                      "https://s3.eu-west-3.amazonaws.com");
  /* Presigning works offline and never shows the secret. */
  char *url = NULL;
  assert_int_equal(dsd_s3_presign_get(c, "bkt", "dumps/a b.tar", 300, &url,
                                      &err),
                   0);
  assert_non_null(strstr(url, "https://bkt.s3.eu-west-3.amazonaws.com/"
                              "dumps/a%20b.tar?X-Amz-Algorithm="));
  assert_null(strstr(url, "s3cr3t-value"));
  free(url);
  /* Dotted bucket names go path style on AWS. */
  assert_int_equal(dsd_s3_presign_get(c, "my.bkt", "k", 300, &url, &err), 0);
  assert_non_null(strstr(url, "https://s3.eu-west-3.amazonaws.com/my.bkt/k?"));
  free(url);
  dsd_s3_client_free(c);
}

static void test_client_registers_secrets_for_redaction(void **state) {
  const char *secret = "Zq9-redact-me-secret-7781";
  const char *token = "Tok-redact-me-session-5521";
  char *before = dsd_redact("k=Zq9-redact-me-secret-7781");
  assert_non_null(strstr(before, secret)); /* not yet a known secret */
  free(before);
  dsd_s3_client_t *c = NULL;
  dsd_err_t err = {0};
  dsd_s3_config_t cfg = {.access_key = "AKID", .secret_key = secret,
                         .session_token = token};
  assert_int_equal(dsd_s3_client_new(&cfg, &c, &err), 0);
  char *r = dsd_redact("k=Zq9-redact-me-secret-7781 t=Tok-redact-me-session-5521");
  assert_null(strstr(r, secret));
  assert_null(strstr(r, token));
  assert_non_null(strstr(r, DSD_REDACTED));
  free(r);
  /* Error messages pass through the same redactor. */
  dsd_err_set(&err, DSD_EIO, "oops %s", secret);
  assert_null(strstr(err.msg, secret));
  dsd_s3_client_free(c);
}

static void test_store_open_dispatch(void **state) {
  dsd_blob_store_t *s = NULL;
  dsd_err_t err = {0};
  assert_int_equal(dsd_blob_store_open("ftp://x/y", &s, &err), DSD_EINVAL);
  assert_non_null(strstr(err.msg, "DSD_STORAGE"));
  dsd_err_clear(&err);
  assert_int_equal(dsd_blob_store_open("file://relative", &s, &err),
                   DSD_EINVAL);
  dsd_err_clear(&err);
  assert_int_equal(dsd_blob_store_open("s3://", &s, &err), DSD_EINVAL);
  dsd_err_clear(&err);
  assert_int_equal(dsd_blob_store_open("s3://bucket/a/../b", &s, &err),
                   DSD_EINVAL);

  /* Missing credentials are a configuration error with a hint. */
  unsetenv("AWS_ACCESS_KEY_ID");
  unsetenv("AWS_SECRET_ACCESS_KEY");
  dsd_err_clear(&err);
  assert_int_equal(dsd_blob_store_open("s3://bucket/p", &s, &err),
                   DSD_ECONFIG);
  assert_non_null(strstr(err.msg, "AWS_ACCESS_KEY_ID"));

  setenv("AWS_ACCESS_KEY_ID", "AKID", 1);
  setenv("AWS_SECRET_ACCESS_KEY", "secret-for-test", 1);
  setenv("AWS_ENDPOINT_URL_S3", "http://127.0.0.1:1", 1);
  dsd_err_clear(&err);
  assert_int_equal(dsd_blob_store_open("s3://bucket//dumps/", &s, &err), 0);
  assert_string_equal(s->ops->scheme, "s3");
  assert_non_null(strstr(dsd_blob_describe(s), "s3://bucket/dumps/"));
  assert_null(strstr(dsd_blob_describe(s), "secret-for-test"));
  dsd_blob_store_free(s);

  char dir[] = "/tmp/dsd-s3-test-XXXXXX";
  assert_non_null(mkdtemp(dir));
  char url[64];
  snprintf(url, sizeof url, "file://%s", dir);
  assert_int_equal(dsd_blob_store_open(url, &s, &err), 0);
  assert_string_equal(s->ops->scheme, "file");
  dsd_blob_store_free(s);
  char cmd[128];
  snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
  assert_int_equal(system(cmd), 0);
}

static void test_connection_refused_is_retried_then_reported(void **state) {
  /* Nothing listens on port 1: each attempt fails to connect, the client
   * retries (tiny backoff) and then reports a network error naming the
   * operation, without the secret. */
  dsd_s3_client_t *c = NULL;
  dsd_err_t err = {0};
  dsd_s3_config_t cfg = {.access_key = "AKID",
                         .secret_key = "very-secret-key-123",
                         .endpoint = "http://127.0.0.1:1",
                         .retry_base_ms = 1,
                         .retry_cap_ms = 5,
                         .max_attempts = 3};
  assert_int_equal(dsd_s3_client_new(&cfg, &c, &err), 0);
  int rc = dsd_s3_put_object(c, "b", "k", "x", 1, NULL, &err);
  assert_int_equal(rc, DSD_ENET);
  assert_non_null(strstr(err.msg, "PUT b/k"));
  assert_non_null(strstr(err.msg, "after 3 attempts"));
  assert_null(strstr(err.msg, "very-secret-key-123"));
  dsd_s3_client_free(c);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_backoff),
      cmocka_unit_test(test_retryable),
      cmocka_unit_test(test_part_size_growth),
      cmocka_unit_test(test_multipart_etag),
      cmocka_unit_test(test_client_config_errors),
      cmocka_unit_test(test_client_registers_secrets_for_redaction),
      cmocka_unit_test(test_store_open_dispatch),
      cmocka_unit_test(test_connection_refused_is_retried_then_reported),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
