/*
 * test_cc_offline.c - the offline parts of the Cloud Controller client
 * (broker/cc.c, included to reach its static helpers): configuration from
 * the environment, argument checks, query building, CC/UAA error envelopes
 * and their mapping to DSD_E* codes, Location header parsing, and that the
 * client secret is redacted. The network paths are tested against the CC/UAA
 * double in tests/integration/test_cc_client.py.
 */
#include <setjmp.h> /* cmocka needs it; dsd itself never uses setjmp */
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "broker/cc.c"

static void test_config_from_env(void **state) {
  dsd_cc_config_t cfg;
  dsd_err_t err = {0};
  unsetenv("DSD_CF_API");
  unsetenv("DSD_CF_CLIENT_ID");
  unsetenv("DSD_CF_CLIENT_SECRET");
  unsetenv("DSD_CF_SKIP_SSL_VALIDATION");
  assert_int_equal(dsd_cc_config_from_env(&cfg, &err), DSD_ENOTFOUND);

  setenv("DSD_CF_API", "https://api.sys.example.com", 1);
  dsd_err_clear(&err);
  assert_int_equal(dsd_cc_config_from_env(&cfg, &err), DSD_ECONFIG);
  assert_non_null(strstr(err.msg, "DSD_CF_CLIENT_ID"));

  setenv("DSD_CF_CLIENT_ID", "dsd-broker", 1);
  setenv("DSD_CF_CLIENT_SECRET", "s3cret-value", 1);
  dsd_err_clear(&err);
  assert_int_equal(dsd_cc_config_from_env(&cfg, &err), 0);
  assert_string_equal(cfg.api_url, "https://api.sys.example.com");
  assert_string_equal(cfg.client_id, "dsd-broker");
  assert_false(cfg.skip_ssl_validation);

  setenv("DSD_CF_SKIP_SSL_VALIDATION", "true", 1);
  assert_int_equal(dsd_cc_config_from_env(&cfg, &err), 0);
  assert_true(cfg.skip_ssl_validation);
  setenv("DSD_CF_SKIP_SSL_VALIDATION", "maybe", 1);
  dsd_err_clear(&err);
  assert_int_equal(dsd_cc_config_from_env(&cfg, &err), DSD_ECONFIG);
  unsetenv("DSD_CF_SKIP_SSL_VALIDATION");
}

static void test_new_checks_and_redacts(void **state) {
  dsd_cc_config_t cfg = {.api_url = "ftp://x", .client_id = "c", .client_secret = "zz-top-secret"};
  dsd_cc_t *cc = NULL;
  dsd_err_t err = {0};
  assert_int_equal(dsd_cc_new(&cfg, &cc, &err), DSD_ECONFIG);
  assert_null(cc);

  cfg.api_url = "https://api.example.org///";
  dsd_err_clear(&err);
  assert_int_equal(dsd_cc_new(&cfg, &cc, &err), 0);
  assert_string_equal(cc->api, "https://api.example.org");
  assert_int_equal(cc->poll_initial_ms, 500);
  assert_int_equal(cc->job_timeout_s, 900);
  /* the secret is registered: a message that quotes it is redacted */
  dsd_err_clear(&err);
  dsd_err_set(&err, DSD_EAUTH, "bad secret zz-top-secret here");
  assert_null(strstr(err.msg, "zz-top-secret"));
  assert_non_null(strstr(err.msg, DSD_REDACTED));
  dsd_cc_free(cc);
  /* and unregistered when the client goes */
  dsd_err_clear(&err);
  dsd_err_set(&err, DSD_EAUTH, "zz-top-secret");
  assert_string_equal(err.msg, "zz-top-secret");
}

static void test_query_building(void **state) {
  dsd_buf_t b = DSD_BUF_INIT;
  assert_int_equal(dsd_buf_append_str(&b, "/v3/service_instances"), 0);
  assert_int_equal(dsd__cc_q(&b, "names", "my db&co"), 0);
  assert_int_equal(dsd__cc_q(&b, "fields[service_plan]", "guid,name"), 0);
  assert_string_equal(b.data, "/v3/service_instances?names=my%20db%26co&"
                              "fields[service_plan]=guid%2Cname");
  dsd_buf_free(&b);
}

static void set_body(dsd__cc_resp_t *r, long status, const char *body) {
  dsd__cc_resp_free(r);
  r->status = status;
  dsd_buf_append_str(&r->body, body);
}

static void test_error_envelopes(void **state) {
  dsd__cc_resp_t r = {0};
  char text[256];
  dsd_err_t err = {0};
  set_body(&r, 422,
           "{\"errors\":[{\"code\":10008,\"title\":\"CF-UnprocessableEntity\","
           "\"detail\":\"An operation for service instance db is in progress.\"}]}");
  dsd__cc_error_text(&r, text, sizeof(text));
  assert_string_equal(text,
                      "CF-UnprocessableEntity: An operation for service instance db is in progress.");
  dsd__cc_error_detail(&r, text, sizeof(text));
  assert_string_equal(text, "An operation for service instance db is in progress.");
  assert_int_equal(dsd__cc_status_err(&r, "creating", &err), DSD_EBUSY);

  set_body(&r, 401, "{\"error\":\"unauthorized\",\"error_description\":\"Bad credentials\"}");
  dsd__cc_error_text(&r, text, sizeof(text));
  assert_string_equal(text, "Bad credentials");

  set_body(&r, 502, "<html>bad gateway</html>");
  dsd__cc_error_text(&r, text, sizeof(text));
  assert_string_equal(text, "http status 502");
  dsd_err_clear(&err);
  assert_int_equal(dsd__cc_status_err(&r, "x", &err), DSD_EIO);

  set_body(&r, 403, "{\"errors\":[{\"code\":10003,\"title\":\"CF-NotAuthorized\","
                    "\"detail\":\"You are not authorized to perform the requested action\"}]}");
  dsd_err_clear(&err);
  assert_int_equal(dsd__cc_status_err(&r, "reading", &err), DSD_EDENIED);
  assert_non_null(strstr(err.msg, "HINT: "));
  set_body(&r, 404, "{\"errors\":[{\"code\":10010,\"title\":\"CF-ResourceNotFound\","
                    "\"detail\":\"Service credential binding not found\"}]}");
  dsd_err_clear(&err);
  assert_int_equal(dsd__cc_status_err(&r, "reading", &err), DSD_ENOTFOUND);
  assert_string_equal(err.msg, "reading: CF-ResourceNotFound: Service credential binding not found");
  dsd__cc_resp_free(&r);
}

static void test_location_header(void **state) {
  dsd__cc_resp_t r = {0};
  char h1[] = "Content-Type: application/json\r\n";
  char h2[] = "location:   https://api.example.org/v3/jobs/af5c57f6 \r\n";
  assert_int_equal(dsd__cc_header_cb(h1, 1, strlen(h1), &r), strlen(h1));
  assert_string_equal(r.location, "");
  assert_int_equal(dsd__cc_header_cb(h2, 1, strlen(h2), &r), strlen(h2));
  assert_string_equal(r.location, "https://api.example.org/v3/jobs/af5c57f6");
}

static void test_by_guid_and_rel(void **state) {
  json_t *inc = json_loads("[{\"guid\":\"p1\",\"name\":\"small\",\"relationships\":"
                           "{\"service_offering\":{\"data\":{\"guid\":\"o1\"}}}}]",
                           0, NULL);
  json_t *p = dsd__cc_by_guid(inc, "p1");
  assert_non_null(p);
  assert_string_equal(dsd__cc_rel_guid(p, "service_offering"), "o1");
  assert_null(dsd__cc_by_guid(inc, "p2"));
  assert_null(dsd__cc_rel_guid(p, "space"));
  json_decref(inc);
}

static void test_same_origin(void **state) {
  assert_true(dsd__cc_same_origin("https://api.example.org", "https://api.example.org/v3/jobs/1"));
  assert_true(dsd__cc_same_origin("https://API.example.org", "https://api.example.org?x"));
  assert_false(dsd__cc_same_origin("https://api.example.org", "https://api.example.org.evil/v3"));
  assert_false(dsd__cc_same_origin("https://api.example.org", "http://api.example.org/v3"));
  assert_false(dsd__cc_same_origin("https://api.example.org", "https://api.example.org:8443/"));
  assert_false(dsd__cc_same_origin("https://api.example.org", "ftp:/x"));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_config_from_env), cmocka_unit_test(test_new_checks_and_redacts),
      cmocka_unit_test(test_query_building),  cmocka_unit_test(test_error_envelopes),
      cmocka_unit_test(test_location_header), cmocka_unit_test(test_by_guid_and_rel),
      cmocka_unit_test(test_same_origin),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
