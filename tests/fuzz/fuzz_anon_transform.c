/*
 * fuzz_anon_transform.c - libFuzzer target: every strategy on arbitrary
 * bytes with arbitrary column types.
 *
 * Input layout: byte 0 picks a rule, byte 1 the type kind, byte 2 the array
 * element kind, byte 3 max_len, byte 4 flags (bit 0 fixed_len, bit 1
 * unsigned, bit 2 NULL input, bit 3 row key), byte 5 precision, byte 6
 * scale; the rest is the value. When the plan refuses the rule for the
 * type, the same value goes through the lenient document-field path.
 *
 * Beyond memory safety (ASan), outputs are checked for the promises of
 * anonymize.h: text no longer than max_len characters, integers in range,
 * uuids canonical.
 */
#include <ctype.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "anonymize/anonymize.h"

static const char *const rule_texts[] = {
    "\"keep\"",
    "\"null\"",
    "{\"strategy\": \"constant\", \"value\": \"x\"}",
    "\"hash\"",
    "{\"strategy\": \"hash\", \"length\": 12}",
    "\"email\"",
    "{\"strategy\": \"email\", \"hash_domain\": true}",
    "\"name\"",
    "\"phone\"",
    "{\"strategy\": \"digits\", \"keep_first\": 2}",
    "{\"strategy\": \"mask\", \"keep_first\": 1, \"keep_last\": 2, \"char\": \"\\u2022\"}",
    "{\"strategy\": \"truncate\", \"length\": 3}",
    "{\"strategy\": \"noise\", \"ratio\": 0.5}",
    "{\"strategy\": \"noise\", \"amount\": 1e9}",
    "{\"strategy\": \"date_shift\", \"max_days\": 36500}",
    "{\"strategy\": \"date_shift\", \"key\": \"k\"}",
    "{\"strategy\": \"regex_replace\", \"pattern\": \"[a-z]*\", \"replacement\": \"<\\\\0>\"}",
    "{\"strategy\": \"hash\", \"path\": \"$.a[*].b\"}",
    "{\"strategy\": \"noise\", \"ratio\": 0.1, \"path\": \"$..x\"}",
    "{\"strategy\": \"email\", \"path\": \"$.e\"}",
    "{\"strategy\": \"null\", \"path\": \"$[0]\"}",
    "AUTO", /* allow-list default */
};
#define NRULES (sizeof(rule_texts) / sizeof(rule_texts[0]))

static dsd_anon_rules_t *rules[NRULES];

static void init_rules(void) {
  char text[512];
  json_error_t je;
  dsd_err_t err;
  for (size_t i = 0; i < NRULES; i++) {
    if (strcmp(rule_texts[i], "AUTO") == 0) {
      snprintf(text, sizeof(text),
               "{\"salt\": \"fuzz-salt-123\", \"default\": \"anonymize\"}");
    } else {
      snprintf(text, sizeof(text),
               "{\"salt\": \"fuzz-salt-123\", \"tables\": {\"t\": {\"c\": %s}}}", rule_texts[i]);
    }
    json_t *j = json_loads(text, 0, &je);
    dsd_err_clear(&err);
    /* "$..x" is not in the supported subset: that rule stays NULL. */
    if (j == NULL || dsd_anon_rules_parse(j, &rules[i], &err) != 0) rules[i] = NULL;
    json_decref(j);
  }
}

static void check_output(const dsd_anon_type_t *t, const char *s, size_t len) {
  if (t->kind == DSD_ANON_TEXT && t->max_len > 0) {
    size_t chars = 0;
    for (size_t i = 0; i < len; i++) {
      unsigned char ch = (unsigned char)s[i];
      /* Counting lead bytes undercounts invalid UTF-8 (each invalid byte is a
       * character to the library), so only valid-looking text is checked. */
      if ((ch & 0xc0) != 0x80) chars++;
    }
    if (chars > (size_t)t->max_len) abort();
  }
  if ((t->kind == DSD_ANON_INT2 || t->kind == DSD_ANON_INT4) && !t->is_unsigned) {
    char tmp[32];
    if (len == 0 || len >= sizeof(tmp)) abort();
    memcpy(tmp, s, len);
    tmp[len] = '\0';
    long long v = strtoll(tmp, NULL, 10);
    long long lim = t->kind == DSD_ANON_INT2 ? 32767 : 2147483647;
    if (v > lim || v < -lim - 1) abort();
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static int ready;
  dsd_anon_type_t t;
  dsd_anon_column_t cols[2];
  dsd_anon_table_plan_t *p = NULL;
  dsd_buf_t out = DSD_BUF_INIT;
  dsd_err_t err;
  bool isnull = false;
  const dsd_anon_rules_t *r;
  const char *val;
  size_t len;
  int rc;

  if (!ready) {
    init_rules();
    ready = 1;
  }
  if (size < 7) return 0;
  r = rules[data[0] % NRULES];
  if (r == NULL) return 0;
  memset(&t, 0, sizeof(t));
  t.kind = (dsd_anon_kind_t)(data[1] % (DSD_ANON_ARRAY + 1));
  t.elem = (dsd_anon_kind_t)(data[2] % DSD_ANON_ARRAY);
  t.max_len = data[3] % 64;
  t.fixed_len = data[4] & 1;
  t.is_unsigned = (data[4] & 2) != 0;
  t.precision = data[5] % 40;
  t.scale = t.precision > 0 ? data[6] % (t.precision + 1) : -1;
  t.name = "fuzz";
  val = (const char *)data + 7;
  len = size - 7;

  cols[0].name = "c";
  cols[0].type = t;
  cols[0].not_null = false;
  cols[1].name = "k";
  cols[1].type.kind = DSD_ANON_TEXT;
  cols[1].type.scale = -1;
  cols[1].not_null = false;
  cols[1].type.name = "text";
  dsd_err_clear(&err);
  if (dsd_anon_plan_table(r, "t", cols, 2, &p, &err) == 0 && p != NULL) {
    if (data[4] & 8 || dsd_anon_plan_row_key(p, 0) >= 0) {
      rc = dsd_anon_apply_keyed(p, 0, val, len, data[4] & 4, val, len / 2, &out, &isnull);
    } else {
      rc = dsd_anon_apply(p, 0, val, len, data[4] & 4, &out, &isnull);
    }
    if (rc == 0 && !isnull) check_output(&t, out.data ? out.data : "", out.len);
  } else {
    dsd_anon_plan_free(p);
    p = NULL;
    /* Refused for the column type: the lenient document path must still
     * cope with the value. */
    if (dsd_anon_plan_table(r, "t", NULL, 0, &p, &err) == 0 && p != NULL) {
      const dsd_anon_rule_t *rule = dsd_anon_plan_field_rule(p, "c");
      rc = dsd_anon_apply_field(p, rule, &t, val, len, data[4] & 4, &out, &isnull);
      if (rc != 0) abort(); /* only out-of-memory may fail here */
    }
  }
  dsd_anon_plan_free(p);
  dsd_buf_free(&out);
  return 0;
}
