/*
 * test_pipeline_pg.c - unit tests of the PostgreSQL dump side's pure parts
 * (no server needed): the connection string given to pg_dump carries no
 * password, the child environment carries it instead, the drop-block and
 * \restrict filters, identifier quoting, and (when the anonymize library is
 * built) COPY text unescaping/escaping and row rewriting.
 *
 * pg_dump.c is included so its static functions can be reached.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "dialects/pg/pg_dump.c"

/* A sink that keeps everything, to read a stream back. */
typedef struct mem_sink {
  dsd_blob_writer_t base;
  dsd_buf_t out;
} mem_sink_t;
static int mem_write(dsd_blob_writer_t *w, const void *d, size_t n) {
  return dsd_buf_append(&((mem_sink_t *)w)->out, d, n);
}
static int mem_close(dsd_blob_writer_t *w, dsd_err_t *e) { return 0; }
static void mem_abort(dsd_blob_writer_t *w) {}
static const dsd_blob_writer_ops_t mem_ops = {mem_write, mem_close, mem_abort};

/* Runs text through a filter in pieces of `piece` bytes and returns what
 * the stream received (caller frees). */
static char *filter_text(const char *text, int drop_mode, size_t piece) {
  mem_sink_t sink = {{&mem_ops, 0, {0}}, DSD_BUF_INIT};
  dsd_archive_writer_opts_t o = {.compression = DSD_COMPRESS_NONE};
  dsd_archive_writer_t *w = NULL;
  dsd_archive_result_t res;
  dsd_err_t err = {0};
  json_t *m = json_object();
  dsd__filter_t f = {0};
  size_t len = strlen(text);
  char *out;
  const char *p;

  assert_int_equal(dsd_archive_writer_open(&sink.base, &o, m, &w, &err), 0);
  assert_int_equal(dsd_archive_stream_open(w, "s", &f.s), 0);
  f.drop_mode = drop_mode;
  for (size_t i = 0; i < len; i += piece)
    assert_int_equal(dsd__filter_feed(&f, text + i, len - i < piece ? len - i : piece), 0);
  if (f.line.len)
    assert_int_equal(dsd__filter_line(&f, f.line.data, f.line.len), 0);
  dsd_buf_free(&f.line);
  assert_int_equal(dsd_archive_stream_close(f.s), 0);
  assert_int_equal(dsd_archive_writer_finish(w, NULL, &res, &err), 0);
  json_decref(res.summary);
  json_decref(m);
  /* The uncompressed tar holds the stream's one chunk "s/000001" after
   * the manifest: find it by its 512-byte header. */
  p = memmem(sink.out.data, sink.out.len, "s/000001", 8);
  assert_non_null(p);
  {
    const char *hdr = p; /* name field starts the ustar header */
    size_t size = strtoul(hdr + 124, NULL, 8);
    out = strndup(hdr + 512, size);
  }
  dsd_buf_free(&sink.out);
  return out;
}

static const char pg_dump_clean[] =
    "--\n-- PostgreSQL database dump\n--\n\n\\restrict AbC123\n\n"
    "SET statement_timeout = 0;\nSELECT pg_catalog.set_config('search_path', '', false);\n\n"
    "DROP INDEX IF EXISTS public.i;\n"
    "ALTER TABLE IF EXISTS ONLY public.t DROP CONSTRAINT IF EXISTS t_pkey;\n"
    "SELECT pg_catalog.lo_unlink(oid) FROM pg_catalog.pg_largeobject_metadata WHERE oid = '1';\n"
    "ALTER TABLE IF EXISTS public.t ALTER COLUMN id DROP DEFAULT;\n"
    "DROP TABLE IF EXISTS \"we ird\".\"Ta\"\"ble\";\n"
    "DROP SCHEMA IF EXISTS \"we ird\";\n"
    "--\n-- Name: we ird; Type: SCHEMA\n--\n\nCREATE SCHEMA \"we ird\";\n"
    "ALTER TABLE ONLY public.c ALTER COLUMN x DROP NOT NULL;\n"
    "DROP TABLE should_not_be_kept;\n"
    "\n\\unrestrict AbC123\n";

static const char want_drop[] =
    "DROP INDEX IF EXISTS public.i;\n"
    "ALTER TABLE IF EXISTS ONLY public.t DROP CONSTRAINT IF EXISTS t_pkey;\n"
    "SELECT pg_catalog.lo_unlink(oid) FROM pg_catalog.pg_largeobject_metadata WHERE oid = '1';\n"
    "ALTER TABLE IF EXISTS public.t ALTER COLUMN id DROP DEFAULT;\n"
    "DROP TABLE IF EXISTS \"we ird\".\"Ta\"\"ble\";\n"
    "DROP SCHEMA IF EXISTS \"we ird\";\n";

static void test_drop_filter(void **st) {
  size_t pieces[] = {1, 7, 4096};
  for (size_t i = 0; i < 3; i++) {
    char *out = filter_text(pg_dump_clean, 1, pieces[i]);
    assert_string_equal(out, want_drop);
    free(out);
  }
}

static void test_restrict_filter(void **st) {
  size_t pieces[] = {1, 3, 4096};
  for (size_t i = 0; i < 3; i++) {
    char *out = filter_text("\\restrict K1\nSET x = 1;\nSELECT '\\restrict not at start';\n"
                            "\\unrestrict K1\nlast line without newline",
                            0, pieces[i]);
    assert_string_equal(out, "SET x = 1;\nSELECT '\\restrict not at start';\n"
                             "last line without newline");
    free(out);
  }
}

static void test_child_conninfo_has_no_password(void **st) {
  char *ci = NULL, *pw = NULL, *added = NULL;
  char **env;
  dsd_err_t err = {0};
  int found = 0;

  assert_int_equal(dsd__pg_child_conninfo(
                       "postgresql://dump%20er:p%40ss'w\\rd@db.example:6543/app?sslmode=require",
                       &ci, &pw, &err),
                   0);
  assert_null(strstr(ci, "p@ss"));
  assert_null(strstr(ci, "password"));
  assert_non_null(strstr(ci, "host='db.example'"));
  assert_non_null(strstr(ci, "port='6543'"));
  assert_non_null(strstr(ci, "user='dump er'"));
  assert_non_null(strstr(ci, "dbname='app'"));
  assert_non_null(strstr(ci, "sslmode='require'"));
  assert_string_equal(pw, "p@ss'w\\rd");
  /* libpq parses the result back to the same parameters. */
  {
    PQconninfoOption *o = PQconninfoParse(ci, NULL);
    assert_non_null(o);
    for (PQconninfoOption *p = o; p->keyword; p++)
      if (strcmp(p->keyword, "user") == 0)
        assert_string_equal(p->val, "dump er");
    PQconninfoFree(o);
  }
  setenv("PGPASSWORD", "stale-from-parent", 1);
  env = dsd__child_env(pw, &added);
  for (char **e = env; *e; e++) {
    assert_null(strstr(*e, "stale-from-parent"));
    if (strcmp(*e, "PGPASSWORD=p@ss'w\\rd") == 0)
      found++;
  }
  assert_int_equal(found, 1);
  free(env);
  free(added);
  unsetenv("PGPASSWORD");
  free(ci);
  free(pw);

  /* No password in the URI: none in the environment either. */
  assert_int_equal(dsd__pg_child_conninfo("postgresql://u@h/db", &ci, &pw, &err), 0);
  assert_null(pw);
  free(ci);
  assert_int_equal(dsd__pg_child_conninfo("postgresql://u@h:notaport:x/db?bogus=1", &ci, &pw, &err),
                   DSD_EINVAL);
  assert_null(strstr(dsd_err_msg(&err), "bogus"));
}

static void test_quote(void **st) {
  dsd_buf_t b = DSD_BUF_INIT;
  dsd__pg_quote_ident(&b, "we ird");
  dsd_buf_append_char(&b, '.');
  dsd__pg_quote_ident(&b, "Ta\"ble");
  assert_string_equal(b.data, "\"we ird\".\"Ta\"\"ble\"");
  dsd_buf_reset(&b);
  dsd__pg_quote_literal(&b, "\"s\".\"it's\"");
  assert_string_equal(b.data, "'\"s\".\"it''s\"'");
  dsd_buf_free(&b);
}

#ifdef DSD_HAVE_ANONYMIZE
static void test_copy_escapes(void **st) {
  dsd_buf_t u = DSD_BUF_INIT, e = DSD_BUF_INIT;
  const char raw[] = "a\\tb\\nc\\\\d\\101\\x42\\r\\b\\f\\v\\q";
  assert_int_equal(dsd__copy_unescape(raw, strlen(raw), &u), 0);
  assert_int_equal(u.len, 14);
  assert_memory_equal(u.data, "a\tb\nc\\dAB\r\b\f\vq", 14);
  assert_int_equal(dsd__copy_escape("x\ty\nz\\\r", 8, &e), 0);
  assert_string_equal(e.data, "x\\ty\\nz\\\\\\r");
  dsd_buf_free(&u);
  dsd_buf_free(&e);
}

static void test_anon_row(void **st) {
  json_error_t je;
  json_t *j = json_loads("{\"salt\":\"unit-test-salt\",\"tables\":{\"public.t\":"
                         "{\"email\":\"email\",\"note\":\"null\"}}}", 0, &je);
  dsd_anon_rules_t *rules = NULL;
  dsd_err_t err = {0};
  dsd__pg_table_t t;
  dsd__pg_col_t cols[3] = {{"id", "integer", true}, {"email", "text", false},
                           {"note", "text", false}};
  dsd_anon_column_t ac[3];
  dsd__anon_scratch_t sc = {0};
  const char *row = "7\tA\\tB@x.org\tsecret\\nnote\n";
  char *first;

  assert_int_equal(dsd_anon_rules_parse(j, &rules, &err), 0);
  assert_int_equal(dsd_anon_rules_set_random_salt(rules, &err), 0);
  memset(&t, 0, sizeof t);
  t.qname = "\"public\".\"t\"";
  t.cols = cols;
  t.ncols = 3;
  for (int i = 0; i < 3; i++) {
    ac[i].name = cols[i].name;
    ac[i].not_null = cols[i].not_null;
    dsd_anon_type_parse("pg", cols[i].type, &ac[i].type);
  }
  assert_int_equal(dsd_anon_plan_table(rules, "public.t", ac, 3, &t.plan, &err), 0);
  assert_non_null(t.plan);
  assert_int_equal(dsd__anon_row(&t, row, strlen(row), &sc, &err), 0);
  /* id kept, email replaced by a keyed address, note NULL, one line. */
  assert_memory_equal(sc.row.data, "7\tu", 3);
  assert_non_null(strstr(sc.row.data, "@example.com\t\\N\n"));
  assert_null(strstr(sc.row.data, "x.org"));
  assert_null(strstr(sc.row.data, "secret"));
  first = strdup(sc.row.data);
  /* Deterministic: the same input gives the same output. */
  assert_int_equal(dsd__anon_row(&t, row, strlen(row), &sc, &err), 0);
  assert_string_equal(sc.row.data, first);
  /* A row with the wrong number of fields is refused, not passed on. */
  assert_int_equal(dsd__anon_row(&t, "1\t2\n", 4, &sc, &err), DSD_EPROTO);
  free(first);
  dsd__anon_scratch_free(&sc);
  dsd_anon_plan_free(t.plan);
  dsd_anon_rules_free(rules);
  json_decref(j);
}
#endif

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_drop_filter),
      cmocka_unit_test(test_restrict_filter),
      cmocka_unit_test(test_child_conninfo_has_no_password),
      cmocka_unit_test(test_quote),
#ifdef DSD_HAVE_ANONYMIZE
      cmocka_unit_test(test_copy_escapes),
      cmocka_unit_test(test_anon_row),
#endif
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
