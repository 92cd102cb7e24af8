/*
 * test_anonymize_transforms.c - the value transforms.
 *
 * Checks the properties the dump pipeline relies on: outputs are
 * deterministic for one salt and differ across salts, distinct inputs stay
 * distinct for hash/email/integers, outputs are valid for the column type
 * (lengths in characters, integer ranges, calendar dates, canonical uuids,
 * pg array and json syntax), and NULL handling.
 */
#include <setjmp.h> /* cmocka needs these before cmocka.h */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <ctype.h>
#include <inttypes.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <pthread.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "anonymize/anon_internal.h"

#define SALT "unit-test-salt-0001"

static const dsd_anon_type_t T_TEXT = {.kind = DSD_ANON_TEXT, .scale = -1, .name = "text"};

/* Rules with one table "t" and one column "c" carrying rule (JSON text). */
static dsd_anon_rules_t *rules_for(const char *salt, const char *rule) {
  char text[2048];
  json_error_t je;
  dsd_anon_rules_t *r = NULL;
  dsd_err_t err;
  if (salt) {
    snprintf(text, sizeof(text), "{\"salt\": \"%s\", \"tables\": {\"t\": {\"c\": %s}}}", salt, rule);
  } else {
    snprintf(text, sizeof(text), "{\"tables\": {\"t\": {\"c\": %s}}}", rule);
  }
  json_t *j = json_loads(text, 0, &je);
  if (j == NULL) fail_msg("bad test json %s", text);
  dsd_err_clear(&err);
  if (dsd_anon_rules_parse(j, &r, &err) != 0) fail_msg("%s: %s", text, dsd_err_msg(&err));
  json_decref(j);
  assert_int_equal(dsd_anon_rules_set_random_salt(r, &err), 0);
  return r;
}

static dsd_anon_table_plan_t *plan_for(const dsd_anon_rules_t *r, dsd_anon_type_t type) {
  dsd_anon_column_t col = {"c", type, false};
  dsd_anon_table_plan_t *p = NULL;
  dsd_err_t err;
  dsd_err_clear(&err);
  if (dsd_anon_plan_table(r, "t", &col, 1, &p, &err) != 0) fail_msg("plan: %s", dsd_err_msg(&err));
  assert_non_null(p);
  return p;
}

/* Applies column 0; returns a malloc'd copy, or NULL for a NULL result. */
static char *run(const dsd_anon_table_plan_t *p, const char *in) {
  dsd_buf_t out = DSD_BUF_INIT;
  bool isnull = true;
  int rc = dsd_anon_apply(p, 0, in, in ? strlen(in) : 0, in == NULL, &out, &isnull);
  if (rc != 0) fail_msg("apply(%s) failed: %d", in ? in : "NULL", rc);
  char *s = isnull ? NULL : strdup(out.data ? out.data : "");
  dsd_buf_free(&out);
  return s;
}

/* One-shot transform with a fresh rules object. */
static char *one(const char *salt, const char *rule, dsd_anon_type_t type, const char *in) {
  dsd_anon_rules_t *r = rules_for(salt, rule);
  dsd_anon_table_plan_t *p = plan_for(r, type);
  char *s = run(p, in);
  dsd_anon_plan_free(p);
  dsd_anon_rules_free(r);
  return s;
}

static bool matches(const char *re, const char *s) {
  regex_t rx;
  assert_int_equal(regcomp(&rx, re, REG_EXTENDED | REG_NOSUB), 0);
  bool ok = regexec(&rx, s, 0, NULL, 0) == 0;
  regfree(&rx);
  return ok;
}

static int cmpstr(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

/* ------------------------------------------------------------------ */

static void test_hmac_matches_openssl(void **state) {
  const char *salts[] = {"k", SALT,
                         "a salt longer than the sha-256 block of sixty-four bytes, which "
                         "RFC 2104 says to hash first"};
  for (size_t i = 0; i < 3; i++) {
    dsd__anon_key_t k;
    unsigned char mine[32], ref[32], msg[64];
    unsigned int reflen = 0;
    dsd__anon_key_init(&k, salts[i], strlen(salts[i]));
    dsd__anon_mac(&k, "email", "alice@example.org", 17, "xy", 2, mine);
    size_t n = 0;
    memcpy(msg, "email", 5);
    n = 5;
    msg[n++] = 0;
    memcpy(msg + n, "alice@example.org", 17);
    n += 17;
    memcpy(msg + n, "xy", 2);
    n += 2;
    HMAC(EVP_sha256(), salts[i], (int)strlen(salts[i]), msg, n, ref, &reflen);
    assert_int_equal(reflen, 32);
    assert_memory_equal(mine, ref, 32);
  }
}

static void test_salt_not_kept(void **state) {
  dsd_anon_rules_t *r = rules_for(SALT, "\"hash\"");
  /* Only the key schedule is kept: the salt text is nowhere in the struct. */
  assert_null(memmem(r, sizeof(*r), SALT, strlen(SALT)));
  dsd_anon_rules_free(r);
}

static void test_determinism_and_salts(void **state) {
  const char *rules[] = {"\"hash\"", "\"email\"", "\"name\"", "\"phone\""};
  for (size_t i = 0; i < 4; i++) {
    /* Two independent rules objects with the same salt agree. */
    dsd_anon_rules_t *r1 = rules_for(SALT, rules[i]);
    dsd_anon_rules_t *r2 = rules_for(SALT, rules[i]);
    dsd_anon_table_plan_t *p1 = plan_for(r1, T_TEXT);
    dsd_anon_table_plan_t *p2 = plan_for(r2, T_TEXT);
    char *a = run(p1, "+1 555 0100 alice@example.org");
    char *b = run(p1, "+1 555 0100 alice@example.org");
    char *c = run(p2, "+1 555 0100 alice@example.org");
    assert_string_equal(a, b);
    assert_string_equal(a, c);
    assert_string_not_equal(a, "+1 555 0100 alice@example.org");
    /* Another salt, another output. */
    char *d = one("another-salt-0002", rules[i], T_TEXT, "+1 555 0100 alice@example.org");
    assert_string_not_equal(a, d);
    /* A random salt differs from the fixed one. */
    char *e = one(NULL, rules[i], T_TEXT, "+1 555 0100 alice@example.org");
    assert_string_not_equal(a, e);
    free(a);
    free(b);
    free(c);
    free(d);
    free(e);
    dsd_anon_plan_free(p1);
    dsd_anon_plan_free(p2);
    dsd_anon_rules_free(r1);
    dsd_anon_rules_free(r2);
  }
}

static void test_joins_survive_across_tables(void **state) {
  /* The same value in two tables (and two column widths) maps alike. */
  json_error_t je;
  json_t *j = json_loads("{\"salt\": \"" SALT "\", \"tables\": {"
                         "\"public.customers\": {\"id\": \"hash\", \"email\": \"email\"},"
                         "\"public.orders\": {\"customer_id\": \"hash\", \"contact\": \"email\"}}}",
                         0, &je);
  dsd_anon_rules_t *r = NULL;
  dsd_err_t err;
  dsd_err_clear(&err);
  assert_int_equal(dsd_anon_rules_parse(j, &r, &err), 0);
  dsd_anon_column_t cust[] = {{"id", {.kind = DSD_ANON_INT8, .scale = -1}, true},
                              {"email", T_TEXT, false}};
  dsd_anon_column_t ord[] = {{"customer_id", {.kind = DSD_ANON_INT4, .scale = -1}, true},
                             {"contact", {.kind = DSD_ANON_TEXT, .max_len = 200, .scale = -1}, false}};
  dsd_anon_table_plan_t *pc = NULL, *po = NULL;
  assert_int_equal(dsd_anon_plan_table(r, "public.customers", cust, 2, &pc, &err), 0);
  assert_int_equal(dsd_anon_plan_table(r, "public.orders", ord, 2, &po, &err), 0);
  dsd_buf_t a = DSD_BUF_INIT, b = DSD_BUF_INIT;
  bool n1, n2;
  assert_int_equal(dsd_anon_apply(pc, 0, "123456", 6, false, &a, &n1), 0);
  assert_int_equal(dsd_anon_apply(po, 0, "123456", 6, false, &b, &n2), 0);
  assert_string_equal(a.data, b.data);
  assert_string_not_equal(a.data, "123456");
  assert_int_equal(dsd_anon_apply(pc, 1, "bob@corp.example", 16, false, &a, &n1), 0);
  assert_int_equal(dsd_anon_apply(po, 1, "bob@corp.example", 16, false, &b, &n2), 0);
  assert_string_equal(a.data, b.data);
  dsd_buf_free(&a);
  dsd_buf_free(&b);
  dsd_anon_plan_free(pc);
  dsd_anon_plan_free(po);
  dsd_anon_rules_free(r);
  json_decref(j);
}

static void check_distinct(const char *rule, dsd_anon_type_t type, const char *fmt,
                           const char *pattern) {
  enum { N = 100000 };
  dsd_anon_rules_t *r = rules_for(SALT, rule);
  dsd_anon_table_plan_t *p = plan_for(r, type);
  char **outs = calloc(N, sizeof(char *));
  char in[64];
  dsd_buf_t out = DSD_BUF_INIT;
  bool isnull;
  for (int i = 0; i < N; i++) {
    snprintf(in, sizeof(in), fmt, i);
    assert_int_equal(dsd_anon_apply(p, 0, in, strlen(in), false, &out, &isnull), 0);
    assert_false(isnull);
    outs[i] = strdup(out.data);
    if (i < 200 && !matches(pattern, outs[i])) fail_msg("%s: %s does not match %s", rule, outs[i], pattern);
  }
  qsort(outs, N, sizeof(char *), cmpstr);
  for (int i = 1; i < N; i++) {
    if (strcmp(outs[i - 1], outs[i]) == 0) fail_msg("%s: collision on %s", rule, outs[i]);
  }
  for (int i = 0; i < N; i++) free(outs[i]);
  free(outs);
  dsd_buf_free(&out);
  dsd_anon_plan_free(p);
  dsd_anon_rules_free(r);
}

static void test_distinct_100k(void **state) {
  check_distinct("\"email\"", T_TEXT, "user%d@example.org", "^u[0-9a-f]{16}@example\\.com$");
  check_distinct("\"hash\"", T_TEXT, "value-%d", "^[0-9a-f]{32}$");
  dsd_anon_type_t int4 = {.kind = DSD_ANON_INT4, .scale = -1};
  check_distinct("\"hash\"", int4, "%d", "^-?[0-9]+$");
  dsd_anon_type_t uuid = {.kind = DSD_ANON_UUID, .scale = -1};
  check_distinct("\"hash\"", uuid, "00000000-0000-4000-8000-%012d",
                 "^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$");
}

static void test_int_permutation_is_bijective(void **state) {
  /* Every smallint maps to a distinct smallint of the same sign. */
  dsd_anon_rules_t *r = rules_for(SALT, "\"hash\"");
  dsd_anon_type_t int2 = {.kind = DSD_ANON_INT2, .scale = -1};
  dsd_anon_table_plan_t *p = plan_for(r, int2);
  unsigned char *seen = calloc(65536, 1);
  dsd_buf_t out = DSD_BUF_INIT;
  bool isnull;
  char in[16];
  int changed = 0;
  for (int v = -32768; v <= 32767; v++) {
    snprintf(in, sizeof(in), "%d", v);
    assert_int_equal(dsd_anon_apply(p, 0, in, strlen(in), false, &out, &isnull), 0);
    long o = strtol(out.data, NULL, 10);
    assert_true(o >= -32768 && o <= 32767);
    assert_true((o < 0) == (v < 0));
    assert_int_equal(seen[o + 32768], 0);
    seen[o + 32768] = 1;
    changed += o != v;
  }
  assert_true(changed > 60000);
  /* Out of range or not an integer: an error, not a silent copy. */
  assert_int_equal(dsd_anon_apply(p, 0, "32768", 5, false, &out, &isnull), DSD_EINVAL);
  assert_int_equal(dsd_anon_apply(p, 0, "12a", 3, false, &out, &isnull), DSD_EINVAL);
  free(seen);
  dsd_buf_free(&out);
  dsd_anon_plan_free(p);
  dsd_anon_rules_free(r);

  /* Extremes of bigint and unsigned bigint stay in range. */
  dsd_anon_type_t int8 = {.kind = DSD_ANON_INT8, .scale = -1};
  char *s = one(SALT, "\"hash\"", int8, "-9223372036854775808");
  assert_true(s[0] == '-');
  assert_true(strlen(s) <= 20);
  assert_true(strtoll(s, NULL, 10) < 0);
  free(s);
  dsd_anon_type_t u8 = {.kind = DSD_ANON_INT8, .is_unsigned = true, .scale = -1};
  s = one(SALT, "\"hash\"", u8, "18446744073709551615");
  assert_true(isdigit((unsigned char)s[0]));
  free(s);
}

static void test_varchar_length_utf8(void **state) {
  dsd_anon_type_t v5 = {.kind = DSD_ANON_TEXT, .max_len = 5, .scale = -1, .name = "varchar(5)"};
  const char *inputs[] = {"héllo wörld ✓✓✓", "日本語のテキスト", "ab", "", "\xff\xfe\xfd\xfc\xfb\xfa"};
  const char *rules[] = {"\"hash\"", "\"name\"", "{\"strategy\": \"mask\", \"keep_first\": 1}",
                         "{\"strategy\": \"truncate\", \"length\": 9}",
                         "{\"strategy\": \"regex_replace\", \"pattern\": \".\", \"replacement\": \"ü\\\\0\"}",
                         "\"digits\""};
  for (size_t i = 0; i < sizeof(rules) / sizeof(rules[0]); i++) {
    for (size_t k = 0; k < sizeof(inputs) / sizeof(inputs[0]); k++) {
      char *s = one(SALT, rules[i], v5, inputs[k]);
      size_t chars = dsd__anon_utf8_count(s, strlen(s));
      if (chars > 5) fail_msg("%s on %s gave %s (%zu chars)", rules[i], inputs[k], s, chars);
      free(s);
    }
  }
  /* Cut on a character boundary, not inside a multibyte sequence. */
  char *s = one(SALT, "{\"strategy\": \"truncate\", \"length\": 3}", T_TEXT, "日本語のテキスト");
  assert_string_equal(s, "日本語");
  free(s);
  /* A short column gets base-62 hash digits cut to its length. */
  dsd_anon_type_t v8 = {.kind = DSD_ANON_TEXT, .max_len = 8, .scale = -1};
  s = one(SALT, "\"hash\"", v8, "someone");
  assert_true(matches("^[0-9A-Za-z]{8}$", s));
  free(s);
  /* char(n) padding is not part of the value. */
  dsd_anon_type_t c10 = {.kind = DSD_ANON_TEXT, .max_len = 10, .fixed_len = true, .scale = -1};
  char *a = one(SALT, "\"hash\"", c10, "abc       ");
  char *b = one(SALT, "\"hash\"", c10, "abc");
  assert_string_equal(a, b);
  free(a);
  free(b);
}

static void test_mask_phone_digits(void **state) {
  char *s = one(SALT, "{\"strategy\": \"mask\", \"keep_last\": 4}", T_TEXT, "123-45-6789");
  assert_string_equal(s, "*******6789");
  free(s);
  s = one(SALT, "{\"strategy\": \"mask\", \"keep_first\": 1, \"keep_last\": 1, \"char\": \"•\"}",
          T_TEXT, "Zoë Ünal");
  assert_string_equal(s, "Z••••••l");
  free(s);
  /* Too short to keep anything without showing all of it. */
  s = one(SALT, "{\"strategy\": \"mask\", \"keep_last\": 4}", T_TEXT, "1234");
  assert_string_equal(s, "****");
  free(s);

  const char *phone = "+1 (555) 010-4477";
  s = one(SALT, "\"phone\"", T_TEXT, phone);
  assert_int_equal(strlen(s), strlen(phone));
  for (size_t i = 0; i < strlen(phone); i++) {
    assert_int_equal(isdigit((unsigned char)s[i]) != 0, isdigit((unsigned char)phone[i]) != 0);
    if (!isdigit((unsigned char)phone[i])) assert_int_equal(s[i], phone[i]);
  }
  assert_string_not_equal(s, phone);
  free(s);
  s = one(SALT, "{\"strategy\": \"phone\", \"keep_first\": 1}", T_TEXT, phone);
  assert_int_equal(s[1], '1');
  free(s);
}

static void test_null_handling(void **state) {
  const char *keepnull[] = {"\"hash\"", "\"email\"", "\"name\"", "\"phone\"",
                            "{\"strategy\": \"mask\"}"};
  for (size_t i = 0; i < 5; i++) {
    char *s = one(SALT, keepnull[i], T_TEXT, NULL);
    assert_null(s);
  }
  assert_null(one(SALT, "\"null\"", T_TEXT, "secret"));
  char *s = one(SALT, "{\"strategy\": \"constant\", \"value\": \"REDACTED\"}", T_TEXT, NULL);
  assert_string_equal(s, "REDACTED");
  free(s);
  s = one(SALT, "{\"strategy\": \"constant\", \"value\": 7}", T_TEXT, "x");
  assert_string_equal(s, "7");
  free(s);
  assert_null(one(SALT, "{\"strategy\": \"constant\", \"value\": null}", T_TEXT, "x"));
}

static bool valid_date(const char *s, int *y, int *m, int *d) {
  static const int dim[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  if (sscanf(s, "%4d-%2d-%2d", y, m, d) != 3 || strlen(s) < 10 || s[4] != '-' || s[7] != '-') return false;
  if (*m < 1 || *m > 12 || *d < 1) return false;
  int max = dim[*m - 1] + (*m == 2 && ((*y % 4 == 0 && *y % 100 != 0) || *y % 400 == 0));
  return *d <= max;
}

static long days(int y, int m, int d) {
  /* Days from civil, independent from the library's. */
  y -= m <= 2;
  long era = (y >= 0 ? y : y - 399) / 400;
  long yoe = y - era * 400;
  long doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
  return era * 146097 + yoe * 365 + yoe / 4 - yoe / 100 + doy;
}

static void test_dates(void **state) {
  dsd_anon_type_t date = {.kind = DSD_ANON_DATE, .scale = -1};
  dsd_anon_rules_t *r = rules_for(SALT, "{\"strategy\": \"date_shift\", \"max_days\": 400}");
  dsd_anon_table_plan_t *p = plan_for(r, date);
  int changed = 0;
  for (int y = 1999; y <= 2001; y++) {
    for (int m = 1; m <= 12; m++) {
      for (int d = 1; d <= 28; d += 3) {
        char in[16];
        int oy, om, od;
        snprintf(in, sizeof(in), "%04d-%02d-%02d", y, m, d);
        char *s = run(p, in);
        if (!valid_date(s, &oy, &om, &od) || strlen(s) != 10) fail_msg("%s -> %s", in, s);
        long delta = days(oy, om, od) - days(y, m, d);
        assert_true(delta != 0 && labs(delta) <= 400);
        changed++;
        free(s);
      }
    }
  }
  assert_true(changed > 300);
  /* Leap day, year 1 and 9999 limits, specials kept. */
  char *s = run(p, "2024-02-29");
  int y, m, d;
  assert_true(valid_date(s, &y, &m, &d));
  free(s);
  s = run(p, "0001-01-01");
  assert_true(valid_date(s, &y, &m, &d));
  assert_true(y >= 1);
  free(s);
  s = run(p, "9999-12-31");
  assert_true(valid_date(s, &y, &m, &d));
  assert_true(y <= 9999);
  free(s);
  s = run(p, "infinity");
  assert_string_equal(s, "infinity");
  free(s);
  dsd_buf_t out = DSD_BUF_INIT;
  bool isnull;
  assert_int_equal(dsd_anon_apply(p, 0, "2024-02-30", 10, false, &out, &isnull), DSD_EINVAL);
  assert_int_equal(dsd_anon_apply(p, 0, "yesterday", 9, false, &out, &isnull), DSD_EINVAL);
  dsd_buf_free(&out);
  dsd_anon_plan_free(p);

  /* Timestamps keep the time and zone; the date part is a real date. */
  dsd_anon_type_t tstz = {.kind = DSD_ANON_TIMESTAMPTZ, .scale = -1};
  p = plan_for(r, tstz);
  s = run(p, "2023-06-15 13:45:10.123456+05:30");
  assert_true(valid_date(s, &y, &m, &d));
  assert_string_equal(s + 10, " 13:45:10.123456+05:30");
  free(s);
  dsd_anon_plan_free(p);
  dsd_anon_rules_free(r);

  /* mysql TIMESTAMP range is honoured. */
  dsd_anon_type_t myts = {.kind = DSD_ANON_TIMESTAMP, .min_year = 1970, .max_year = 2037, .scale = -1};
  r = rules_for(SALT, "{\"strategy\": \"date_shift\", \"max_days\": 36500}");
  p = plan_for(r, myts);
  for (int i = 0; i < 50; i++) {
    char in[32];
    snprintf(in, sizeof(in), "1970-01-%02d 00:00:0%d", 1 + i % 28, i % 10);
    s = run(p, in);
    assert_true(valid_date(s, &y, &m, &d));
    assert_true(y >= 1970 && y <= 2037);
    free(s);
  }
  dsd_anon_plan_free(p);
  dsd_anon_rules_free(r);
}

static void test_date_shift_row_key(void **state) {
  json_error_t je;
  json_t *j = json_loads("{\"salt\": \"" SALT "\", \"tables\": {\"t\": {"
                         "\"created\": {\"strategy\": \"date_shift\", \"key\": \"id\"},"
                         "\"updated\": {\"strategy\": \"date_shift\", \"key\": \"id\"}}}}",
                         0, &je);
  dsd_anon_rules_t *r = NULL;
  dsd_err_t err;
  dsd_err_clear(&err);
  assert_int_equal(dsd_anon_rules_parse(j, &r, &err), 0);
  dsd_anon_column_t cols[] = {{"id", {.kind = DSD_ANON_INT4, .scale = -1}, true},
                              {"created", {.kind = DSD_ANON_DATE, .scale = -1}, false},
                              {"updated", {.kind = DSD_ANON_DATE, .scale = -1}, false}};
  dsd_anon_table_plan_t *p = NULL;
  assert_int_equal(dsd_anon_plan_table(r, "t", cols, 3, &p, &err), 0);
  assert_int_equal(dsd_anon_plan_row_key(p, 1), 0);
  dsd_buf_t a = DSD_BUF_INIT, b = DSD_BUF_INIT;
  bool n;
  /* Without the key the driver made a mistake: refuse. */
  assert_int_equal(dsd_anon_apply(p, 1, "2020-01-01", 10, false, &a, &n), DSD_EINVAL);
  /* Same row key: both dates move by the same number of days. */
  int same = 0;
  for (int id = 1; id <= 50; id++) {
    char key[16];
    int y1, m1, d1, y2, m2, d2;
    snprintf(key, sizeof(key), "%d", id);
    assert_int_equal(dsd_anon_apply_keyed(p, 1, "2020-01-01", 10, false, key, strlen(key), &a, &n), 0);
    assert_int_equal(dsd_anon_apply_keyed(p, 2, "2020-03-15", 10, false, key, strlen(key), &b, &n), 0);
    assert_true(valid_date(a.data, &y1, &m1, &d1));
    assert_true(valid_date(b.data, &y2, &m2, &d2));
    assert_int_equal(days(y2, m2, d2) - days(y1, m1, d1), days(2020, 3, 15) - days(2020, 1, 1));
    same += strcmp(a.data, "2020-01-01") == 0;
  }
  assert_int_equal(same, 0);
  /* A NULL key falls back to keying by the value. */
  assert_int_equal(dsd_anon_apply_keyed(p, 1, "2020-01-01", 10, false, NULL, 0, &a, &n), 0);
  assert_false(n);
  dsd_buf_free(&a);
  dsd_buf_free(&b);
  dsd_anon_plan_free(p);
  dsd_anon_rules_free(r);
  json_decref(j);
}

static void test_noise(void **state) {
  dsd_anon_type_t int2 = {.kind = DSD_ANON_INT2, .scale = -1};
  dsd_anon_rules_t *r = rules_for(SALT, "{\"strategy\": \"noise\", \"ratio\": 0.1}");
  dsd_anon_table_plan_t *p = plan_for(r, int2);
  int moved = 0;
  for (int v = 1000; v < 1100; v++) {
    char in[16];
    snprintf(in, sizeof(in), "%d", v);
    char *s = run(p, in);
    char *s2 = run(p, in);
    long o = strtol(s, NULL, 10);
    assert_string_equal(s, s2);
    assert_true(o >= v - v / 10 - 1 && o <= v + v / 10 + 1);
    moved += o != v;
    free(s);
    free(s2);
  }
  assert_true(moved > 80);
  /* Clamped to the type range. */
  char *s = run(p, "32767");
  assert_true(strtol(s, NULL, 10) <= 32767);
  free(s);
  s = run(p, "-32768");
  assert_true(strtol(s, NULL, 10) >= -32768);
  free(s);
  dsd_anon_plan_free(p);
  dsd_anon_rules_free(r);

  /* numeric(5,2): two decimals, never above 999.99. */
  dsd_anon_type_t num = {.kind = DSD_ANON_NUMERIC, .precision = 5, .scale = 2};
  r = rules_for(SALT, "{\"strategy\": \"noise\", \"amount\": 50}");
  p = plan_for(r, num);
  for (int i = 0; i < 100; i++) {
    char in[16];
    snprintf(in, sizeof(in), "%d.%02d", 960 + i % 40, i);
    s = run(p, in);
    assert_true(matches("^-?[0-9]{1,3}\\.[0-9]{2}$", s));
    double o = strtod(s, NULL);
    assert_true(o <= 999.99 && o >= 909.0);
    free(s);
  }
  s = run(p, "NaN");
  assert_string_equal(s, "NaN");
  free(s);
  dsd_anon_plan_free(p);
  dsd_anon_rules_free(r);

  /* float: finite and within the bound. */
  dsd_anon_type_t f8 = {.kind = DSD_ANON_FLOAT, .scale = -1, .name = "double precision"};
  s = one(SALT, "{\"strategy\": \"noise\", \"amount\": 0.5}", f8, "12.25");
  double o = strtod(s, NULL);
  assert_true(o >= 11.75 && o <= 12.75 && o != 12.25);
  free(s);
}

static void test_numeric_hash_uuid_bytes_time(void **state) {
  dsd_anon_type_t num = {.kind = DSD_ANON_NUMERIC, .precision = 8, .scale = 2};
  char *s = one(SALT, "\"hash\"", num, "-12345.67");
  assert_true(matches("^-[1-9][0-9]{4}\\.[0-9]{2}$", s));
  free(s);
  dsd_anon_type_t f8 = {.kind = DSD_ANON_FLOAT, .scale = -1};
  s = one(SALT, "\"hash\"", f8, "1.5e+300");
  assert_true(matches("^[1-9]\\.[0-9]e\\+300$", s));
  free(s);

  dsd_anon_type_t uuid = {.kind = DSD_ANON_UUID, .scale = -1};
  char *a = one(SALT, "\"hash\"", uuid, "A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11");
  char *b = one(SALT, "\"hash\"", uuid, "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11");
  assert_string_equal(a, b);
  assert_true(matches("^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$", a));
  free(a);
  free(b);

  dsd_anon_type_t bytes = {.kind = DSD_ANON_BYTES, .scale = -1};
  s = one(SALT, "\"hash\"", bytes, "\\x0102ff");
  assert_true(matches("^\\\\x[0-9a-f]{6}$", s));
  assert_string_not_equal(s, "\\x0102ff");
  free(s);
  s = one(SALT, "\"hash\"", bytes, "\\x");
  assert_string_equal(s, "\\x");
  free(s);

  dsd_anon_type_t time = {.kind = DSD_ANON_TIME, .scale = -1};
  dsd_anon_rules_t *r = rules_for(SALT, "\"keep\"");
  dsd_anon_rules_free(r);
  /* time only has the allow-list default (and keep/null/constant). */
  json_error_t je;
  json_t *j = json_loads("{\"salt\": \"" SALT "\", \"default\": \"anonymize\"}", 0, &je);
  dsd_err_t err;
  dsd_err_clear(&err);
  assert_int_equal(dsd_anon_rules_parse(j, &r, &err), 0);
  dsd_anon_column_t col = {"c", time, false};
  dsd_anon_table_plan_t *p = NULL;
  assert_int_equal(dsd_anon_plan_table(r, "t", &col, 1, &p, &err), 0);
  s = run(p, "08:30:00.25+02");
  assert_true(matches("^([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9]\\.25\\+02$", s));
  free(s);
  dsd_anon_plan_free(p);
  dsd_anon_rules_free(r);
  json_decref(j);
}

static void test_email_name_regex(void **state) {
  char *s = one(SALT, "{\"strategy\": \"email\", \"domain\": \"test.invalid\"}", T_TEXT, "a@b.c");
  assert_true(matches("^u[0-9a-f]{16}@test\\.invalid$", s));
  free(s);
  char *a = one(SALT, "{\"strategy\": \"email\", \"hash_domain\": true}", T_TEXT, "a@corp.example");
  char *b = one(SALT, "{\"strategy\": \"email\", \"hash_domain\": true}", T_TEXT, "b@corp.example");
  assert_true(matches("^u[0-9a-f]{16}@[0-9a-f]{8}\\.example\\.com$", a));
  assert_string_equal(strchr(a, '@'), strchr(b, '@')); /* same domain, same hashed domain */
  assert_string_not_equal(a, b);
  free(a);
  free(b);
  /* A varchar(24) column gets a shorter local part. */
  dsd_anon_type_t v24 = {.kind = DSD_ANON_TEXT, .max_len = 24, .scale = -1};
  s = one(SALT, "\"email\"", v24, "someone@example.org");
  assert_true(matches("^u[0-9a-f]{11}@example\\.com$", s));
  free(s);

  s = one(SALT, "\"name\"", T_TEXT, "Grace Hopper");
  assert_true(matches("^[A-Z][a-z]+ [A-Z][a-z]+$", s));
  free(s);
  s = one(SALT, "{\"strategy\": \"name\", \"part\": \"first\"}", T_TEXT, "Grace");
  assert_true(matches("^[A-Z][a-z]+$", s));
  free(s);

  s = one(SALT, "{\"strategy\": \"regex_replace\", \"pattern\": \"([0-9]{3})-([0-9]{4})\", "
          "\"replacement\": \"XXX-\\\\2\"}", T_TEXT, "call 555-1234 or 555-9876");
  assert_string_equal(s, "call XXX-1234 or XXX-9876");
  free(s);
  s = one(SALT, "{\"strategy\": \"regex_replace\", \"pattern\": \"x*\", \"replacement\": \"-\"}",
          T_TEXT, "abc");
  assert_string_equal(s, "-a-b-c-");
  free(s);
}

static void test_json_and_arrays(void **state) {
  dsd_anon_type_t json = {.kind = DSD_ANON_JSON, .scale = -1, .name = "jsonb"};
  char *s = one(SALT, "{\"strategy\": \"email\", \"path\": \"$.user.email\"}", json,
                "{\"user\": {\"email\": \"a@b.c\", \"n\": 12345678901234567890}, \"email\": \"x@y.z\"}");
  assert_true(matches("^\\{\"user\": \\{\"email\": \"u[0-9a-f]{16}@example\\.com\", \"n\": "
                      "12345678901234567890\\}, \"email\": \"x@y\\.z\"\\}$", s));
  free(s);
  /* A name step on an array visits every element; [*] and [N] work too. */
  s = one(SALT, "{\"strategy\": \"mask\", \"path\": \"$.items.sku\"}", json,
          "{\"items\": [{\"sku\": \"abc\"}, {\"sku\": \"de\\\"f\"}, {\"other\": 1}]}");
  assert_string_equal(s, "{\"items\": [{\"sku\": \"***\"}, {\"sku\": \"****\"}, {\"other\": 1}]}");
  free(s);
  s = one(SALT, "{\"strategy\": \"null\", \"path\": \"$.a[1]\"}", json, "{\"a\":[1,2,3]}");
  assert_string_equal(s, "{\"a\":[1,null,3]}");
  free(s);
  /* hash without path: every string value, keys and numbers kept. */
  s = one(SALT, "\"hash\"", json, "{\"k\": \"v\", \"n\": [1.50, \"w\", true, null]}");
  assert_true(matches("^\\{\"k\": \"[0-9a-f]{32}\", \"n\": \\[1\\.50, \"[0-9a-f]{32}\", true, "
                      "null\\]\\}$", s));
  free(s);
  /* Escapes are decoded before hashing: equal strings, equal hashes. */
  char *a = one(SALT, "\"hash\"", json, "\"caf\\u00e9\"");
  char *b = one(SALT, "\"hash\"", json, "\"café\"");
  assert_string_equal(a, b);
  free(a);
  free(b);
  dsd_buf_t out = DSD_BUF_INIT;
  bool n;
  dsd_anon_rules_t *r = rules_for(SALT, "\"hash\"");
  dsd_anon_table_plan_t *p = plan_for(r, json);
  assert_int_equal(dsd_anon_apply(p, 0, "{\"a\": ", 6, false, &out, &n), DSD_EINVAL);
  dsd_anon_plan_free(p);
  dsd_anon_rules_free(r);
  dsd_buf_free(&out);

  dsd_anon_type_t arr = {.kind = DSD_ANON_ARRAY, .elem = DSD_ANON_TEXT, .max_len = 6, .scale = -1};
  s = one(SALT, "{\"strategy\": \"mask\", \"keep_first\": 1}", arr,
          "{alpha,\"b c\",NULL,\"NULL\",\"q\\\"x\"}");
  assert_string_equal(s, "{a****,b**,NULL,N***,q**}");
  free(s);
  s = one(SALT, "\"hash\"", arr, "{{a,b},{c,d}}");
  assert_true(matches("^\\{\\{[0-9A-Za-z]{6},[0-9A-Za-z]{6}\\},\\{[0-9A-Za-z]{6},[0-9A-Za-z]{6}\\}\\}$", s));
  free(s);
  dsd_anon_type_t iarr = {.kind = DSD_ANON_ARRAY, .elem = DSD_ANON_INT2, .scale = -1};
  s = one(SALT, "\"hash\"", iarr, "[0:1]={7,-7}");
  assert_true(matches("^\\[0:1\\]=\\{[0-9]+,-[0-9]+\\}$", s));
  free(s);
}

static void test_allow_list_transforms(void **state) {
  json_error_t je;
  json_t *j = json_loads("{\"salt\": \"" SALT "\", \"default\": \"anonymize\", \"tables\": "
                         "{\"t\": {\"keepme\": \"keep\"}}}", 0, &je);
  dsd_anon_rules_t *r = NULL;
  dsd_err_t err;
  dsd_err_clear(&err);
  assert_int_equal(dsd_anon_rules_parse(j, &r, &err), 0);
  dsd_anon_column_t cols[] = {
      {"keepme", T_TEXT, false},
      {"note", {.kind = DSD_ANON_TEXT, .max_len = 10, .scale = -1}, false},
      {"n", {.kind = DSD_ANON_INT4, .scale = -1}, false},
      {"d", {.kind = DSD_ANON_DATE, .scale = -1}, false},
      {"flag", {.kind = DSD_ANON_BOOL, .scale = -1}, false},
      {"doc", {.kind = DSD_ANON_JSON, .scale = -1}, false},
      {"amount", {.kind = DSD_ANON_NUMERIC, .precision = 6, .scale = 2}, false},
  };
  const char *in[] = {"same", "private note", "42", "2000-05-05", "t", "{\"a\": \"b\"}", "1234.50"};
  dsd_anon_table_plan_t *p = NULL;
  assert_int_equal(dsd_anon_plan_table(r, "t", cols, 7, &p, &err), 0);
  dsd_buf_t out = DSD_BUF_INIT;
  bool n;
  for (size_t c = 0; c < 7; c++) {
    assert_int_equal(dsd_anon_apply(p, c, in[c], strlen(in[c]), false, &out, &n), 0);
    bool kept = strcmp(out.data, in[c]) == 0;
    if (c == 0 || c == 4) {
      assert_true(kept);
    } else if (kept) {
      fail_msg("column %zu kept %s in allow-list mode", c, in[c]);
    }
  }
  assert_int_equal(dsd_anon_apply(p, 1, "private note", 12, false, &out, &n), 0);
  assert_int_equal(strlen(out.data), 10);
  assert_int_equal(dsd_anon_apply(p, 6, "1234.50", 7, false, &out, &n), 0);
  assert_true(matches("^[1-9][0-9]{3}\\.[0-9]{2}$", out.data));
  dsd_buf_free(&out);
  dsd_anon_plan_free(p);
  dsd_anon_rules_free(r);
  json_decref(j);
}

static void test_no_malloc_growth_in_common_path(void **state) {
  /* The scratch buffer stops growing once it fits the largest output:
   * the common path then allocates nothing per value. */
  dsd_anon_rules_t *r = rules_for(SALT, "\"email\"");
  dsd_anon_table_plan_t *p = plan_for(r, T_TEXT);
  dsd_buf_t out = DSD_BUF_INIT;
  bool n;
  assert_int_equal(dsd_anon_apply(p, 0, "a@b.c", 5, false, &out, &n), 0);
  char *data = out.data;
  size_t cap = out.cap;
  for (int i = 0; i < 1000; i++) {
    assert_int_equal(dsd_anon_apply(p, 0, "someone@else.org", 16, false, &out, &n), 0);
  }
  assert_ptr_equal(out.data, data);
  assert_int_equal(out.cap, cap);
  dsd_buf_free(&out);
  dsd_anon_plan_free(p);
  dsd_anon_rules_free(r);
}

/* Plans are shared read-only by the driver's worker threads. */
typedef struct thread_job {
  const dsd_anon_table_plan_t *p;
  char **expected;
  int n;
  int mismatches;
} thread_job_t;

static void *thread_main(void *arg) {
  thread_job_t *job = arg;
  dsd_buf_t out = DSD_BUF_INIT;
  bool n;
  char in[64];
  for (int round = 0; round < 3; round++) {
    for (int i = 0; i < job->n; i++) {
      snprintf(in, sizeof(in), "user%d@example.org call 555-%04d", i, i);
      if (dsd_anon_apply(job->p, 0, in, strlen(in), false, &out, &n) != 0 ||
          strcmp(out.data, job->expected[i]) != 0) {
        job->mismatches++;
      }
    }
  }
  dsd_buf_free(&out);
  return NULL;
}

static void test_threads_share_a_plan(void **state) {
  enum { N = 2000, T = 4 };
  const char *rules[] = {"\"email\"", "{\"strategy\": \"regex_replace\", \"pattern\": "
                         "\"[0-9]{3}-([0-9]{4})\", \"replacement\": \"XXX-\\\\1\"}"};
  for (size_t k = 0; k < 2; k++) {
    dsd_anon_rules_t *r = rules_for(SALT, rules[k]);
    dsd_anon_table_plan_t *p = plan_for(r, T_TEXT);
    char **expected = calloc(N, sizeof(char *));
    char in[64];
    for (int i = 0; i < N; i++) {
      snprintf(in, sizeof(in), "user%d@example.org call 555-%04d", i, i);
      expected[i] = run(p, in);
    }
    pthread_t th[T];
    thread_job_t jobs[T];
    for (int t = 0; t < T; t++) {
      jobs[t] = (thread_job_t){p, expected, N, 0};
      assert_int_equal(pthread_create(&th[t], NULL, thread_main, &jobs[t]), 0);
    }
    for (int t = 0; t < T; t++) {
      pthread_join(th[t], NULL);
      assert_int_equal(jobs[t].mismatches, 0);
    }
    for (int i = 0; i < N; i++) free(expected[i]);
    free(expected);
    dsd_anon_plan_free(p);
    dsd_anon_rules_free(r);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_hmac_matches_openssl),
      cmocka_unit_test(test_salt_not_kept),
      cmocka_unit_test(test_determinism_and_salts),
      cmocka_unit_test(test_joins_survive_across_tables),
      cmocka_unit_test(test_distinct_100k),
      cmocka_unit_test(test_int_permutation_is_bijective),
      cmocka_unit_test(test_varchar_length_utf8),
      cmocka_unit_test(test_mask_phone_digits),
      cmocka_unit_test(test_null_handling),
      cmocka_unit_test(test_dates),
      cmocka_unit_test(test_date_shift_row_key),
      cmocka_unit_test(test_noise),
      cmocka_unit_test(test_numeric_hash_uuid_bytes_time),
      cmocka_unit_test(test_email_name_regex),
      cmocka_unit_test(test_json_and_arrays),
      cmocka_unit_test(test_allow_list_transforms),
      cmocka_unit_test(test_no_malloc_growth_in_common_path),
      cmocka_unit_test(test_threads_share_a_plan),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
