/*
 * test_sigv4.c - SigV4 signing against AWS's published S3 examples.
 *
 * Vectors: S3 API reference, "Signature Calculations for the Authorization
 * Header: Transferring Payload in a Single Chunk" (GET Object with Range,
 * PUT Object, GET Bucket Lifecycle, GET Bucket (List Objects)) and
 * "Authenticating Requests: Using Query Parameters" (presigned GET), with
 * AKIAIOSFODNN7EXAMPLE / wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY at
 * 20130524T000000Z in us-east-1 for bucket examplebucket. Each test checks
 * the canonical request and string to sign as printed in the documentation,
 * then the signature.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "s3/sigv4.h"

#define HOST "examplebucket.s3.amazonaws.com"
#define DATE "20130524T000000Z"
#define EMPTY DSD_SIGV4_EMPTY_SHA256

static const dsd_sigv4_creds_t creds = {
    .access_key = "AKIAIOSFODNN7EXAMPLE",
    .secret_key = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
    .region = "us-east-1",
    .service = "s3",
};

static void test_get_object_range(void **state) {
  dsd_sigv4_pair_t h[] = {{"Host", HOST},
                          {"Range", "bytes=0-9"},
                          {"x-amz-content-sha256", EMPTY},
                          {"x-amz-date", DATE}};
  dsd_sigv4_request_t req = {.method = "GET", .path = "/test.txt",
                             .headers = h, .nheaders = 4,
                             .payload_hash = EMPTY, .amz_date = DATE};
  dsd_sigv4_result_t r;
  assert_int_equal(dsd_sigv4_sign(&creds, &req, &r, NULL), 0);
  assert_string_equal(r.canonical_request,
                      "GET\n/test.txt\n\n"
                      "host:examplebucket.s3.amazonaws.com\n"
                      "range:bytes=0-9\n"
                      "x-amz-content-sha256:" EMPTY "\n"
                      "x-amz-date:20130524T000000Z\n\n"
                      "host;range;x-amz-content-sha256;x-amz-date\n" EMPTY);
  assert_string_equal(r.string_to_sign,
                      "AWS4-HMAC-SHA256\n20130524T000000Z\n"
                      "20130524/us-east-1/s3/aws4_request\n"
                      "7344ae5b7ee6c3e7e6b0fe0640412a37625d1fbfff95c48bbb2dc43964946972");
  assert_string_equal(
      r.signature,
      "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41");
  assert_string_equal(
      r.authorization,
      "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/"
      "s3/aws4_request,SignedHeaders=host;range;x-amz-content-sha256;"
      "x-amz-date,Signature="
      "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41");
  dsd_sigv4_result_free(&r);
}

static void test_put_object(void **state) {
  const char *body = "Welcome to Amazon S3.";
  char hash[65];
  dsd_sigv4_sha256_hex(body, strlen(body), hash);
  assert_string_equal(
      hash, "44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072");
  /* Headers given out of order and in mixed case: the signer sorts and
   * lower-cases them. */
  dsd_sigv4_pair_t h[] = {{"x-amz-storage-class", "REDUCED_REDUNDANCY"},
                          {"Host", HOST},
                          {"Date", "Fri, 24 May 2013 00:00:00 GMT"},
                          {"X-Amz-Date", DATE},
                          {"x-amz-content-sha256", hash}};
  dsd_sigv4_request_t req = {.method = "PUT", .path = "/test$file.text",
                             .headers = h, .nheaders = 5,
                             .payload_hash = hash, .amz_date = DATE};
  dsd_sigv4_result_t r;
  assert_int_equal(dsd_sigv4_sign(&creds, &req, &r, NULL), 0);
  assert_string_equal(
      r.canonical_request,
      "PUT\n/test%24file.text\n\n"
      "date:Fri, 24 May 2013 00:00:00 GMT\n"
      "host:examplebucket.s3.amazonaws.com\n"
      "x-amz-content-sha256:"
      "44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072\n"
      "x-amz-date:20130524T000000Z\n"
      "x-amz-storage-class:REDUCED_REDUNDANCY\n\n"
      "date;host;x-amz-content-sha256;x-amz-date;x-amz-storage-class\n"
      "44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072");
  assert_string_equal(r.string_to_sign,
                      "AWS4-HMAC-SHA256\n20130524T000000Z\n"
                      "20130524/us-east-1/s3/aws4_request\n"
                      "9e0e90d9c76de8fa5b200d8c849cd5b8dc7a3be3951ddb7f6a76b4158342019d");
  assert_string_equal(
      r.signature,
      "98ad721746da40c64f1a55b78f14c238d841ea1380cd77a1b5971af0ece108bd");
  assert_string_equal(r.signed_headers,
                      "date;host;x-amz-content-sha256;x-amz-date;"
                      "x-amz-storage-class");
  dsd_sigv4_result_free(&r);
}

static void test_get_bucket_lifecycle(void **state) {
  /* A parameter without a value ("?lifecycle") is signed as "lifecycle=". */
  dsd_sigv4_pair_t q[] = {{"lifecycle", NULL}};
  dsd_sigv4_pair_t h[] = {{"host", HOST},
                          {"x-amz-content-sha256", EMPTY},
                          {"x-amz-date", DATE}};
  dsd_sigv4_request_t req = {.method = "GET", .path = "/", .query = q,
                             .nquery = 1, .headers = h, .nheaders = 3,
                             .payload_hash = EMPTY, .amz_date = DATE};
  dsd_sigv4_result_t r;
  assert_int_equal(dsd_sigv4_sign(&creds, &req, &r, NULL), 0);
  assert_string_equal(r.canonical_request,
                      "GET\n/\nlifecycle=\n"
                      "host:examplebucket.s3.amazonaws.com\n"
                      "x-amz-content-sha256:" EMPTY "\n"
                      "x-amz-date:20130524T000000Z\n\n"
                      "host;x-amz-content-sha256;x-amz-date\n" EMPTY);
  assert_string_equal(r.string_to_sign,
                      "AWS4-HMAC-SHA256\n20130524T000000Z\n"
                      "20130524/us-east-1/s3/aws4_request\n"
                      "9766c798316ff2757b517bc739a67f6213b4ab36dd5da2f94eaebf79c77395ca");
  assert_string_equal(
      r.signature,
      "fea454ca298b7da1c68078a5d1bdbfbbe0d65c699e0f91ac7a200a0136783543");
  dsd_sigv4_result_free(&r);
}

static void test_list_objects(void **state) {
  /* Given unsorted: the canonical query sorts by name. */
  dsd_sigv4_pair_t q[] = {{"prefix", "J"}, {"max-keys", "2"}};
  dsd_sigv4_pair_t h[] = {{"host", HOST},
                          {"x-amz-content-sha256", EMPTY},
                          {"x-amz-date", DATE}};
  dsd_sigv4_request_t req = {.method = "GET", .path = "/", .query = q,
                             .nquery = 2, .headers = h, .nheaders = 3,
                             .payload_hash = EMPTY, .amz_date = DATE};
  dsd_sigv4_result_t r;
  assert_int_equal(dsd_sigv4_sign(&creds, &req, &r, NULL), 0);
  assert_string_equal(r.canonical_request,
                      "GET\n/\nmax-keys=2&prefix=J\n"
                      "host:examplebucket.s3.amazonaws.com\n"
                      "x-amz-content-sha256:" EMPTY "\n"
                      "x-amz-date:20130524T000000Z\n\n"
                      "host;x-amz-content-sha256;x-amz-date\n" EMPTY);
  assert_string_equal(r.string_to_sign,
                      "AWS4-HMAC-SHA256\n20130524T000000Z\n"
                      "20130524/us-east-1/s3/aws4_request\n"
                      "df57d21db20da04d7fa30298dd4488ba3a2b47ca3a489c74750e0f1e7df1b9b7");
  assert_string_equal(
      r.signature,
      "34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7");
  dsd_sigv4_result_free(&r);
}

static void test_presign(void **state) {
  char *url = NULL;
  dsd_sigv4_result_t r;
  assert_int_equal(dsd_sigv4_presign(&creds, "GET", "https://" HOST, HOST,
                                     "/test.txt", NULL, 0, DATE, 86400, &url,
                                     &r, NULL),
                   0);
  assert_string_equal(
      r.canonical_request,
      "GET\n/test.txt\n"
      "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential="
      "AKIAIOSFODNN7EXAMPLE%2F20130524%2Fus-east-1%2Fs3%2Faws4_request&"
      "X-Amz-Date=20130524T000000Z&X-Amz-Expires=86400&"
      "X-Amz-SignedHeaders=host\n"
      "host:examplebucket.s3.amazonaws.com\n\nhost\nUNSIGNED-PAYLOAD");
  assert_string_equal(r.string_to_sign,
                      "AWS4-HMAC-SHA256\n20130524T000000Z\n"
                      "20130524/us-east-1/s3/aws4_request\n"
                      "3bfa292879f6447bbcda7001decf97f4a54dc650c8942174ae0a9121cf58ad04");
  assert_string_equal(
      r.signature,
      "aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404");
  assert_string_equal(
      url,
      "https://examplebucket.s3.amazonaws.com/test.txt?"
      "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential="
      "AKIAIOSFODNN7EXAMPLE%2F20130524%2Fus-east-1%2Fs3%2Faws4_request&"
      "X-Amz-Date=20130524T000000Z&X-Amz-Expires=86400&"
      "X-Amz-SignedHeaders=host&X-Amz-Signature="
      "aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404");
  assert_null(strstr(url, creds.secret_key));
  free(url);
  dsd_sigv4_result_free(&r);
}

static void test_presign_session_token_and_limits(void **state) {
  dsd_sigv4_creds_t c2 = creds;
  c2.session_token = "TOKEN/with+chars=";
  char *url = NULL;
  dsd_sigv4_result_t r;
  assert_int_equal(dsd_sigv4_presign(&c2, "GET", "http://127.0.0.1:9000",
                                     "127.0.0.1:9000", "/b/k", NULL, 0, DATE,
                                     60, &url, &r, NULL),
                   0);
  /* The token is signed (in the canonical query) and encoded once. */
  assert_non_null(strstr(r.canonical_request,
                         "X-Amz-Security-Token=TOKEN%2Fwith%2Bchars%3D&"));
  assert_non_null(strstr(url, "X-Amz-Security-Token=TOKEN%2Fwith%2Bchars%3D"));
  free(url);
  dsd_sigv4_result_free(&r);
  dsd_err_t err = {0};
  assert_int_equal(dsd_sigv4_presign(&creds, "GET", "https://" HOST, HOST,
                                     "/x", NULL, 0, DATE, 604801, &url, NULL,
                                     &err),
                   DSD_EINVAL);
  assert_null(url);
}

static void test_session_token_header_signed(void **state) {
  dsd_sigv4_creds_t c2 = creds;
  dsd_sigv4_pair_t h[] = {{"host", HOST},
                          {"x-amz-content-sha256", EMPTY},
                          {"x-amz-date", DATE},
                          {"x-amz-security-token", "tok"}};
  dsd_sigv4_request_t req = {.method = "GET", .path = "/k", .headers = h,
                             .nheaders = 4, .payload_hash = EMPTY,
                             .amz_date = DATE};
  dsd_sigv4_result_t a, b;
  assert_int_equal(dsd_sigv4_sign(&c2, &req, &a, NULL), 0);
  assert_string_equal(a.signed_headers,
                      "host;x-amz-content-sha256;x-amz-date;"
                      "x-amz-security-token");
  h[3].value = "other";
  assert_int_equal(dsd_sigv4_sign(&c2, &req, &b, NULL), 0);
  assert_string_not_equal(a.signature, b.signature);
  dsd_sigv4_result_free(&a);
  dsd_sigv4_result_free(&b);
}

static char *enc(const char *s, bool keep_slash) {
  dsd_buf_t b = DSD_BUF_INIT;
  assert_int_equal(dsd_sigv4_uri_encode(&b, s, strlen(s), keep_slash), 0);
  return dsd_buf_steal(&b);
}

static void test_uri_encoding(void **state) {
  struct {
    const char *in;
    bool slash;
    const char *want;
  } cases[] = {
      {"a b", false, "a%20b"},
      {"a+b", false, "a%2Bb"},
      {"100%", false, "100%25"},
      {"A-z_0.9~", false, "A-z_0.9~"},
      {"a/b", true, "a/b"},
      {"a/b", false, "a%2Fb"},
      {"=&?#*", false, "%3D%26%3F%23%2A"},
      {"\xc3\xa9", true, "%C3%A9"},
      /* Already-encoded input is encoded again only as data: "%2F" in a
       * key is the three characters, never a slash. */
      {"dir/%2F", true, "dir/%252F"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    char *got = enc(cases[i].in, cases[i].slash);
    assert_string_equal(got, cases[i].want);
    free(got);
  }
  dsd_buf_t b = DSD_BUF_INIT;
  assert_int_equal(dsd_sigv4_encode_path(&b, "/bucket/dumps/a b$c.tar.zst"),
                   0);
  assert_string_equal(b.data, "/bucket/dumps/a%20b%24c.tar.zst");
  dsd_buf_free(&b);

  /* Query: sorted by name then value, bare names get '=', values with '/'
   * and '+' are encoded. */
  dsd_sigv4_pair_t q[] = {{"uploads", NULL},
                          {"prefix", "a/b"},
                          {"list-type", "2"},
                          {"uploadId", "x+y/z=="},
                          {"continuation-token", "1ab+/="}};
  assert_int_equal(dsd_sigv4_canonical_query(&b, q, 5), 0);
  assert_string_equal(b.data,
                      "continuation-token=1ab%2B%2F%3D&list-type=2&"
                      "prefix=a%2Fb&uploadId=x%2By%2Fz%3D%3D&uploads=");
  dsd_buf_free(&b);
}

static void test_header_value_trimming(void **state) {
  dsd_sigv4_pair_t h[] = {{"host", HOST},
                          {"X-Amz-Meta-Note", "  a   b  c "},
                          {"x-amz-content-sha256", EMPTY},
                          {"x-amz-date", DATE}};
  dsd_sigv4_request_t req = {.method = "GET", .path = "/k", .headers = h,
                             .nheaders = 4, .payload_hash = EMPTY,
                             .amz_date = DATE};
  dsd_sigv4_result_t r;
  assert_int_equal(dsd_sigv4_sign(&creds, &req, &r, NULL), 0);
  assert_non_null(strstr(r.canonical_request, "\nx-amz-meta-note:a b c\n"));
  dsd_sigv4_result_free(&r);
}

static void test_amz_date(void **state) {
  char d[17];
  dsd_sigv4_amz_date(1369353600, d);
  assert_string_equal(d, "20130524T000000Z");
  dsd_sigv4_amz_date(951782400, d);
  assert_string_equal(d, "20000229T000000Z");
}

static void test_rejects_incomplete(void **state) {
  dsd_err_t err = {0};
  dsd_sigv4_result_t r;
  dsd_sigv4_request_t req = {.method = "GET", .path = "/", .amz_date = "bad",
                             .payload_hash = EMPTY};
  assert_int_equal(dsd_sigv4_sign(&creds, &req, &r, &err), DSD_EINVAL);
  assert_int_equal(err.code, DSD_EINVAL);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_get_object_range),
      cmocka_unit_test(test_put_object),
      cmocka_unit_test(test_get_bucket_lifecycle),
      cmocka_unit_test(test_list_objects),
      cmocka_unit_test(test_presign),
      cmocka_unit_test(test_presign_session_token_and_limits),
      cmocka_unit_test(test_session_token_header_signed),
      cmocka_unit_test(test_uri_encoding),
      cmocka_unit_test(test_header_value_trimming),
      cmocka_unit_test(test_amz_date),
      cmocka_unit_test(test_rejects_incomplete),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
