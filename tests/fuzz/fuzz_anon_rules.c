/*
 * fuzz_anon_rules.c - libFuzzer target: anonymization rules from arbitrary
 * JSON text.
 *
 * Whatever the input, parsing must either fail with a message or give rules
 * that plan against a table built from their own column names, serialize
 * without a salt, and free cleanly (ASan checks the memory side).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "anonymize/anonymize.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  json_error_t je;
  json_t *j = json_loadb((const char *)data, size, JSON_DECODE_ANY, &je);
  dsd_anon_rules_t *r = NULL;
  dsd_err_t err;
  json_t *tables;
  const char *tname;
  json_t *tv;

  if (j == NULL) return 0;
  dsd_err_clear(&err);
  if (dsd_anon_rules_parse(j, &r, &err) != 0) {
    /* A failure always explains itself. */
    if (r != NULL || err.code == 0 || err.msg[0] == '\0') abort();
    json_decref(j);
    return 0;
  }
  if (dsd_anon_rules_set_random_salt(r, &err) != 0) abort();

  json_t *pub = dsd_anon_rules_to_json(r);
  if (pub == NULL || json_object_get(pub, "salt") != NULL) abort();
  json_decref(pub);

  dsd_anon_rules_check_tables(r, NULL, 0, &err);

  /* Plan each listed table with its own column names as text columns, and
   * as a schemaless collection, and apply every column once. */
  tables = json_object_get(j, "tables");
  json_object_foreach(tables, tname, tv) {
    size_t n = json_object_size(tv);
    dsd_anon_column_t *cols = calloc(n + 1, sizeof(*cols));
    const char *cname;
    json_t *cv;
    size_t i = 0;
    dsd_anon_table_plan_t *p = NULL;
    dsd_buf_t out = DSD_BUF_INIT;
    bool isnull;

    if (cols == NULL) abort();
    json_object_foreach(tv, cname, cv) {
      cols[i].name = cname;
      cols[i].type.kind = (i % 3 == 0) ? DSD_ANON_TEXT : (i % 3 == 1) ? DSD_ANON_JSON : DSD_ANON_INT4;
      cols[i].type.scale = -1;
      cols[i].type.max_len = (int)(i % 40);
      i++;
    }
    dsd_err_clear(&err);
    if (dsd_anon_plan_table(r, tname, cols, n, &p, &err) == 0) {
      for (size_t c = 0; c < n; c++) {
        static const char *const vals[] = {"42", "{\"a\": [\"x\", 1]}", "héllo@example.org"};
        const char *v = vals[c % 3];
        dsd_anon_apply_keyed(p, c, v, strlen(v), false, "k", 1, &out, &isnull);
      }
    } else if (err.msg[0] == '\0') {
      abort();
    }
    dsd_anon_plan_free(p);
    p = NULL;
    dsd_err_clear(&err);
    if (dsd_anon_plan_table(r, tname, NULL, 0, &p, &err) == 0 && p != NULL) {
      dsd_anon_type_t t = {.kind = DSD_ANON_TEXT, .scale = -1};
      json_object_foreach(tv, cname, cv) {
        const dsd_anon_rule_t *rule = dsd_anon_plan_field_rule(p, cname);
        dsd_anon_apply_field(p, rule, &t, "value", 5, false, &out, &isnull);
        dsd_anon_plan_field_has_rules_below(p, cname);
      }
    }
    dsd_anon_plan_free(p);
    dsd_buf_free(&out);
    free(cols);
  }
  dsd_anon_rules_free(r);
  json_decref(j);
  return 0;
}
