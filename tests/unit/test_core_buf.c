/* Unit tests of core/buf.c. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include "core/buf.h"

static void test_append_and_printf(void **state) {
  (void)state;
  dsd_buf_t b = DSD_BUF_INIT;
  assert_int_equal(dsd_buf_append_str(&b, "abc"), 0);
  assert_int_equal(dsd_buf_append(&b, "\0x", 2), 0);
  assert_int_equal(b.len, 5);
  assert_int_equal(b.data[5], '\0');
  assert_int_equal(dsd_buf_printf(&b, "%d-%s", 42, "z"), 0);
  assert_memory_equal(b.data, "abc\0x42-z", 9);
  dsd_buf_consume(&b, 4);
  assert_memory_equal(b.data, "x42-z", 6);
  dsd_buf_reset(&b);
  assert_int_equal(b.len, 0);
  assert_string_equal(b.data, "");
  dsd_buf_free(&b);
  assert_null(b.data);
}

static void test_growth(void **state) {
  (void)state;
  dsd_buf_t b = DSD_BUF_INIT;
  for (int i = 0; i < 100000; i++) assert_int_equal(dsd_buf_append_char(&b, (char)('a' + i % 26)), 0);
  assert_int_equal(b.len, 100000);
  assert_true(b.cap > b.len);
  assert_int_equal(b.data[99999], 'a' + 99999 % 26);
  char *s = dsd_buf_steal(&b);
  assert_int_equal(strlen(s), 100000);
  assert_null(b.data);
  free(s);
  s = dsd_buf_steal(&b);
  assert_string_equal(s, "");
  free(s);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_append_and_printf),
      cmocka_unit_test(test_growth),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
