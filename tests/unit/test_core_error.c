/* Unit tests of core/error.c: code table, first-error-wins, redaction. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "core/error.h"
#include "core/log.h"

static void test_strerror_table(void **state) {
  (void)state;
  assert_string_equal(dsd_strerror(DSD_OK), "success");
  assert_string_equal(dsd_strerror(DSD_ENOTFOUND), "not found");
  assert_string_equal(dsd_err_name(DSD_ECANCELED), "ECANCELED");
  assert_string_equal(dsd_strerror(-9999), "unknown error");
  /* Every code in the table has a distinct negative value and a name. */
#define CHECK(name, num, desc)                          \
  assert_true(DSD_##name < 0);                          \
  assert_string_equal(dsd_err_name(DSD_##name), #name); \
  assert_string_equal(dsd_strerror(DSD_##name), desc);
  DSD_ERRNO_MAP(CHECK)
#undef CHECK
}

static void test_first_error_wins(void **state) {
  (void)state;
  dsd_err_t err = {0};
  assert_int_equal(dsd_err_set(&err, DSD_EIO, "write failed at %d", 7), DSD_EIO);
  assert_int_equal(dsd_err_set(&err, DSD_EINVAL, "later failure"), DSD_EINVAL);
  assert_int_equal(err.code, DSD_EIO);
  assert_string_equal(dsd_err_msg(&err), "write failed at 7");
  dsd_err_prefix(&err, "uploading part %d", 3);
  assert_string_equal(dsd_err_msg(&err), "uploading part 3: write failed at 7");
  dsd_err_clear(&err);
  assert_int_equal(err.code, 0);
  dsd_err_prefix(&err, "ignored");
  assert_string_equal(err.msg, "");
  assert_int_equal(dsd_err_set(NULL, DSD_EIO, "no context"), DSD_EIO);
}

static void test_messages_are_redacted(void **state) {
  (void)state;
  dsd_err_t err = {0};
  dsd_redact_register("hunter2-secret");
  dsd_err_set(&err, DSD_EAUTH, "login with hunter2-secret to postgresql://u:pw123@h/db failed");
  assert_null(strstr(err.msg, "hunter2-secret"));
  assert_null(strstr(err.msg, "pw123"));
  assert_non_null(strstr(err.msg, "postgresql://u:<redacted>@h/db"));
  dsd_redact_unregister("hunter2-secret");
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_strerror_table),
      cmocka_unit_test(test_first_error_wins),
      cmocka_unit_test(test_messages_are_redacted),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
