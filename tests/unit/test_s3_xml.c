/*
 * test_s3_xml.c - parsing of S3 response documents (s3/xml.c).
 *
 * The documents follow the shapes of the S3 API reference examples
 * (ListObjectsV2, CreateMultipartUpload, CompleteMultipartUpload error
 * responses, Error, ListMultipartUploads).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "s3/xml.h"

#define LEN(s) strlen(s)

static void test_list_v2_truncated(void **state) {
  const char *xml =
      "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
      "<ListBucketResult xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">"
      "<Name>bucket</Name><Prefix>dumps/</Prefix><KeyCount>2</KeyCount>"
      "<MaxKeys>2</MaxKeys><IsTruncated>true</IsTruncated>"
      "<Contents><Key>dumps/a&amp;b.tar.zst</Key>"
      "<LastModified>2013-09-17T18:07:53.000Z</LastModified>"
      "<ETag>&quot;599bab3ed2c697f1d26842727561fd94&quot;</ETag>"
      "<Size>857</Size><StorageClass>STANDARD</StorageClass></Contents>"
      "<Contents><Key>dumps/IsTruncated</Key>"
      "<LastModified>2013-09-17T18:07:54Z</LastModified>"
      "<ETag>\"x\"</ETag><Size>10737418240</Size></Contents>"
      "<NextContinuationToken>1ueGcxLPRx1Tr/XYExHnhbYLgveDs2J/wm36Hy4vbOwM="
      "</NextContinuationToken></ListBucketResult>";
  dsd_s3_list_page_t p;
  assert_int_equal(dsd_s3_xml_parse_list_v2(xml, LEN(xml), &p, NULL), 0);
  assert_int_equal(p.n, 2);
  assert_string_equal(p.entries[0].key, "dumps/a&b.tar.zst");
  assert_int_equal(p.entries[0].size, 857);
  assert_int_equal(p.entries[0].mtime, 1379441273);
  assert_string_equal(p.entries[0].etag,
                      "\"599bab3ed2c697f1d26842727561fd94\"");
  assert_string_equal(p.entries[1].key, "dumps/IsTruncated");
  assert_true(p.entries[1].size == 10737418240ULL);
  assert_true(p.truncated);
  assert_string_equal(p.next_token,
                      "1ueGcxLPRx1Tr/XYExHnhbYLgveDs2J/wm36Hy4vbOwM=");
  dsd_s3_list_page_free(&p);
}

static void test_list_v2_last_page(void **state) {
  /* No token, an empty prefix element, and an entry whose key looks like a
   * top-level field must not confuse the top-level reading. */
  const char *xml =
      "<ListBucketResult><Name>b</Name><Prefix/>"
      "<Contents><Key>NextContinuationToken</Key><Size>0</Size></Contents>"
      "<IsTruncated>false</IsTruncated></ListBucketResult>";
  dsd_s3_list_page_t p;
  assert_int_equal(dsd_s3_xml_parse_list_v2(xml, LEN(xml), &p, NULL), 0);
  assert_int_equal(p.n, 1);
  assert_false(p.truncated);
  assert_null(p.next_token);
  dsd_s3_list_page_free(&p);

  const char *empty =
      "<ListBucketResult><Name>b</Name><KeyCount>0</KeyCount>"
      "<IsTruncated>false</IsTruncated></ListBucketResult>";
  assert_int_equal(dsd_s3_xml_parse_list_v2(empty, LEN(empty), &p, NULL), 0);
  assert_int_equal(p.n, 0);
  assert_false(p.truncated);
  dsd_s3_list_page_free(&p);
}

static void test_list_v2_bad(void **state) {
  dsd_s3_list_page_t p;
  dsd_err_t err = {0};
  const char *xml = "<Error><Code>AccessDenied</Code></Error>";
  assert_int_equal(dsd_s3_xml_parse_list_v2(xml, LEN(xml), &p, &err),
                   DSD_EPROTO);
  /* Truncated without a token would loop forever: refuse it. */
  dsd_err_clear(&err);
  const char *t = "<ListBucketResult><IsTruncated>true</IsTruncated>"
                  "</ListBucketResult>";
  assert_int_equal(dsd_s3_xml_parse_list_v2(t, LEN(t), &p, &err), DSD_EPROTO);
}

static void test_initiate(void **state) {
  const char *xml =
      "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
      "<InitiateMultipartUploadResult "
      "xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">"
      "<Bucket>example-bucket</Bucket><Key>example-object</Key>"
      "<UploadId>VXBsb2FkIElEIGZvciA2aWWpbmcncyBteS1tb3ZpZS5tMnRzIHVwbG9hZA"
      "</UploadId></InitiateMultipartUploadResult>";
  char *id = NULL;
  assert_int_equal(dsd_s3_xml_parse_initiate(xml, LEN(xml), &id, NULL), 0);
  assert_string_equal(
      id, "VXBsb2FkIElEIGZvciA2aWWpbmcncyBteS1tb3ZpZS5tMnRzIHVwbG9hZA");
  free(id);
  const char *no_id = "<InitiateMultipartUploadResult><Bucket>b</Bucket>"
                      "</InitiateMultipartUploadResult>";
  dsd_err_t err = {0};
  assert_int_equal(dsd_s3_xml_parse_initiate(no_id, LEN(no_id), &id, &err),
                   DSD_EPROTO);
  assert_null(id);
}

static void test_error_bodies(void **state) {
  /* A 200 CompleteMultipartUpload answer that carries an error. */
  const char *xml =
      "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\n"
      "<Error><Code>InternalError</Code><Message>We encountered an internal "
      "error. Please try again.</Message>"
      "<RequestId>656c76696e6727732072657175657374</RequestId>"
      "<HostId>Uuag1LuByRx9e6j5Onimru9pO4ZVKnJ2Qz7/C1NPcfTWAtRPfTaOFg==</HostId>"
      "</Error>";
  dsd_s3_xml_error_t e;
  assert_true(dsd_s3_xml_parse_error(xml, LEN(xml), &e));
  assert_string_equal(e.code, "InternalError");
  assert_string_equal(e.message,
                      "We encountered an internal error. Please try again.");
  dsd_s3_xml_error_free(&e);

  const char *sig =
      "<Error><Code>SignatureDoesNotMatch</Code><Message>The request "
      "signature we calculated does not match the signature you provided. "
      "Check your key and signing method.</Message>"
      "<StringToSign>AWS4-HMAC-SHA256\n...</StringToSign></Error>";
  assert_true(dsd_s3_xml_parse_error(sig, LEN(sig), &e));
  assert_string_equal(e.code, "SignatureDoesNotMatch");
  dsd_s3_xml_error_free(&e);

  const char *ok =
      "<CompleteMultipartUploadResult><Location>http://x/b/k</Location>"
      "<Bucket>b</Bucket><Key>k</Key><ETag>\"3858f62230ac3c915f300c664312c11f"
      "-9\"</ETag></CompleteMultipartUploadResult>";
  assert_false(dsd_s3_xml_parse_error(ok, LEN(ok), &e));
  assert_null(e.code);
  assert_false(dsd_s3_xml_parse_error(NULL, 0, &e));
}

static void test_list_uploads(void **state) {
  const char *xml =
      "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
      "<ListMultipartUploadsResult "
      "xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">"
      "<Bucket>bucket</Bucket><KeyMarker></KeyMarker><UploadIdMarker/>"
      "<NextKeyMarker>my-movie.m2ts</NextKeyMarker>"
      "<NextUploadIdMarker>YW55IGlkZWEgd2h5IGVsdmluZydzIHVwbG9hZCBmYWlsZWQ"
      "</NextUploadIdMarker><MaxUploads>3</MaxUploads>"
      "<IsTruncated>true</IsTruncated>"
      "<Upload><Key>my-divisor</Key>"
      "<UploadId>XMgbGlrZSBlbHZpbmcncyBub3QgaGF2aW5nIG11Y2ggbHVjaw</UploadId>"
      "<Initiator><ID>arn:aws:iam::111122223333:user/user1</ID></Initiator>"
      "<Initiated>2010-11-10T20:48:33.000Z</Initiated></Upload>"
      "<Upload><Key>my-movie.m2ts</Key>"
      "<UploadId>VXBsb2FkIElEIGZvciBlbHZpbmcncyBteS1tb3ZpZS5tMnRzIHVwbG9hZA"
      "</UploadId></Upload></ListMultipartUploadsResult>";
  dsd_s3_uploads_page_t p;
  assert_int_equal(dsd_s3_xml_parse_list_uploads(xml, LEN(xml), &p, NULL), 0);
  assert_int_equal(p.n, 2);
  assert_string_equal(p.entries[0].key, "my-divisor");
  assert_string_equal(p.entries[0].upload_id,
                      "XMgbGlrZSBlbHZpbmcncyBub3QgaGF2aW5nIG11Y2ggbHVjaw");
  assert_string_equal(p.entries[1].key, "my-movie.m2ts");
  assert_true(p.truncated);
  assert_string_equal(p.next_key_marker, "my-movie.m2ts");
  assert_string_equal(p.next_upload_id_marker,
                      "YW55IGlkZWEgd2h5IGVsdmluZydzIHVwbG9hZCBmYWlsZWQ");
  dsd_s3_uploads_page_free(&p);

  const char *none = "<ListMultipartUploadsResult><Bucket>b</Bucket>"
                     "<IsTruncated>false</IsTruncated>"
                     "</ListMultipartUploadsResult>";
  assert_int_equal(dsd_s3_xml_parse_list_uploads(none, LEN(none), &p, NULL), 0);
  assert_int_equal(p.n, 0);
  assert_false(p.truncated);
  assert_null(p.next_key_marker);
  dsd_s3_uploads_page_free(&p);
}

static void test_entities_and_scanner(void **state) {
  const char *raw = "a&lt;b&gt;&amp;&#65;&#x42;&#xe9;&bogus;&";
  char *d = dsd_s3_xml_decode(raw, strlen(raw));
  assert_string_equal(d, "a<b>&AB\xc3\xa9&bogus;&");
  free(d);
  /* Namespaced tags match by local name; a longer name does not. */
  const char *xml = "<s3:KeyCount>1</s3:KeyCount><Key>k</Key>";
  char *t = dsd_s3_xml_text(xml, LEN(xml), "Key");
  assert_string_equal(t, "k");
  free(t);
  t = dsd_s3_xml_text(xml, LEN(xml), "KeyCount");
  assert_string_equal(t, "1");
  free(t);
  /* Unterminated element: not found, no overread. */
  const char *bad = "<Key>abc";
  assert_null(dsd_s3_xml_text(bad, LEN(bad), "Key"));
  assert_int_equal(dsd_s3_parse_iso8601("1970-01-02T00:00:00.000Z"), 86400);
  assert_int_equal(dsd_s3_parse_iso8601("garbage"), 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_list_v2_truncated),
      cmocka_unit_test(test_list_v2_last_page),
      cmocka_unit_test(test_list_v2_bad),
      cmocka_unit_test(test_initiate),
      cmocka_unit_test(test_error_bodies),
      cmocka_unit_test(test_list_uploads),
      cmocka_unit_test(test_entities_and_scanner),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
