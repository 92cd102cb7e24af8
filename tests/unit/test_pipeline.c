/*
 * test_pipeline.c - unit tests of dialects/pipeline.c with a fake dialect.
 *
 * The test is linked with pipeline.c and its own registry (below) instead of
 * dialects/registry.c, so a scripted "pg" dialect can succeed, fail in
 * prepare, fail in the middle of its data, or wait for a cancel; the store
 * is a real file:// store in a temporary directory, so "nothing is left"
 * is checked on disk (no object, no temporary file).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/archive.h"
#include "core/blob.h"
#include "core/log.h"
#include "dialects/dialect.h"
#include "dialects/pipeline.h"

/* ------------------------------------------------------------------ */
/* Fake dialect and registry                                           */

enum { FAKE_OK, FAKE_FAIL_PREPARE, FAKE_FAIL_RUN, FAKE_WAIT_CANCEL };
static int fake_mode;
static int fake_prepared, fake_freed, fake_restored_entries;
static char fake_restore_uri[256];

static int fake_prepare(const dsd_dump_ctx_t *ctx, json_t *manifest, void **state,
                        dsd_err_t *err) {
  if (fake_mode == FAKE_FAIL_PREPARE)
    return dsd_err_set(err, DSD_EAUTH, "cannot connect to the source database: bad password");
  json_object_set_new(manifest, "pg", json_pack("{s:[{s:i}, {s:i}]}", "tables", "id", 1, "id", 2));
  *state = &fake_prepared;
  fake_prepared++;
  return 0;
}

static int fake_run(void *state, const dsd_dump_ctx_t *ctx, dsd_archive_writer_t *w,
                    dsd_err_t *err) {
  dsd_archive_stream_t *s = NULL;
  dsd_progress_t p = {"data", "public.t", 0, 1000, 0, 0, 2};
  char line[200];
  int rc;

  /* A log line that contains the source URI: the hook must get it redacted. */
  snprintf(line, sizeof line, "connected to %s", ctx->uri);
  ctx->io.log(ctx->io.data, line);
  rc = dsd_archive_stream_open(w, "pg/data/00001", &s);
  if (rc < 0)
    return dsd_err_set(err, rc, "open");
  for (int i = 0; i < 10; i++) {
    rc = dsd_archive_stream_write(s, "0123456789abcdefghijklmnopqrstuvwxyz\n", 37);
    if (rc < 0)
      break;
    p.bytes_done += 100;
    ctx->io.progress(ctx->io.data, &p);
  }
  dsd_archive_stream_add_rows(s, 10);
  if (fake_mode == FAKE_FAIL_RUN) {
    dsd_archive_stream_close(s);
    return dsd_err_set(err, DSD_EDB, "cannot copy table public.t: connection lost");
  }
  if (fake_mode == FAKE_WAIT_CANCEL) {
    for (int i = 0; i < 500 && !atomic_load(ctx->io.cancel); i++)
      usleep(10000);
    dsd_archive_stream_close(s);
    return atomic_load(ctx->io.cancel) ? dsd_err_set(err, DSD_ECANCELED, "the dump was canceled")
                                       : dsd_err_set(err, DSD_EINTERNAL, "cancel never came");
  }
  rc = dsd_archive_stream_close(s);
  p.phase = "done";
  p.bytes_done = 1000;
  ctx->io.progress(ctx->io.data, &p);
  return rc;
}

static void fake_free(void *state) { fake_freed++; }

static int fake_restore(const dsd_restore_ctx_t *ctx, dsd_archive_reader_t *r, dsd_err_t *err) {
  const char *name;
  uint64_t size;
  int rc;
  snprintf(fake_restore_uri, sizeof fake_restore_uri, "%s", ctx->uri);
  fake_restored_entries = 0;
  while ((rc = dsd_archive_reader_next(r, &name, &size, err)) == 1)
    fake_restored_entries++;
  return rc;
}

static const char *const fake_schemes[] = {"postgresql", NULL};
static const dsd_dialect_t fake_pg = {"pg", fake_schemes, fake_prepare, fake_run, fake_free,
                                      fake_restore};

const dsd_dialect_t *dsd_dialect_find(const char *name) {
  return name && strcmp(name, "pg") == 0 ? &fake_pg : NULL;
}
const char *dsd_dialect_name_for_uri(const char *uri) {
  if (strncmp(uri, "postgresql://", 13) == 0)
    return "pg";
  if (strncmp(uri, "mysql://", 8) == 0)
    return "mysql";
  return NULL;
}
const dsd_dialect_t *dsd_dialect_for_uri(const char *uri) {
  const char *n = dsd_dialect_name_for_uri(uri);
  return n ? dsd_dialect_find(n) : NULL;
}

/* ------------------------------------------------------------------ */
/* Hooks                                                               */

typedef struct hook_state {
  int progress_calls;
  double last_percent;
  int saw_done;
  char logs[4096];
  int uploads;
} hook_state_t;

static void hook_progress(void *data, const dsd_pipeline_progress_t *p) {
  hook_state_t *h = data;
  h->progress_calls++;
  h->last_percent = p->percent;
  if (p->p.phase && strcmp(p->p.phase, "done") == 0)
    h->saw_done = 1;
}
static void hook_log(void *data, const char *line) {
  hook_state_t *h = data;
  strncat(h->logs, line, sizeof h->logs - strlen(h->logs) - 2);
  strcat(h->logs, "\n");
}

#define URI "postgresql://dumper:S3cretPassw0rd@db.example:5432/app"

static char tmpdir_path[64];
static dsd_blob_store_t *store;

static int setup(void **st) {
  dsd_err_t err = {0};
  snprintf(tmpdir_path, sizeof tmpdir_path, "/tmp/dsd-test-pipeline-XXXXXX");
  if (mkdtemp(tmpdir_path) == NULL)
    return -1;
  fake_mode = FAKE_OK;
  fake_prepared = fake_freed = 0;
  return dsd_blob_file_open(tmpdir_path, &store, &err);
}

static int teardown(void **st) {
  char cmd[128];
  dsd_blob_store_free(store);
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir_path);
  return system(cmd);
}

static int count_files(void) {
  DIR *d = opendir(tmpdir_path);
  struct dirent *e;
  int n = 0;
  while ((e = readdir(d)) != NULL)
    if (e->d_name[0] != '.')
      n++;
  closedir(d);
  return n;
}

static dsd_dump_opts_t dump_opts(hook_state_t *h, atomic_int *cancel) {
  dsd_dump_opts_t o;
  memset(&o, 0, sizeof o);
  o.source_uri = URI;
  o.compression = DSD_COMPRESS_ZSTD;
  o.store = store;
  o.key = "dumps/x.tar.zst";
  o.hooks.cancel = cancel;
  o.hooks.progress = hook_progress;
  o.hooks.log = hook_log;
  o.hooks.data = h;
  return o;
}

/* ------------------------------------------------------------------ */
/* Tests                                                               */

static void test_dump_ok(void **st) {
  hook_state_t h = {0};
  atomic_int cancel = 0;
  dsd_dump_opts_t o = dump_opts(&h, &cancel);
  dsd_dump_result_t res;
  dsd_err_t err = {0};
  dsd_blob_info_t info;
  dsd_blob_reader_t *br = NULL;
  dsd_archive_reader_t *r = NULL;

  dsd_redact_register("S3cretPassw0rd");
  assert_int_equal(dsd_pipeline_dump(&o, &res, &err), 0);
  assert_int_equal(fake_prepared, 1);
  assert_int_equal(fake_freed, 1);
  assert_int_equal(dsd_blob_head(store, "dumps/x.tar.zst", &info, &err), 0);
  assert_int_equal(info.size, res.size);
  assert_int_equal(res.rows, 10);
  assert_int_equal(res.tables, 2);
  assert_non_null(res.summary);
  assert_int_equal(json_integer_value(json_object_get(json_object_get(res.summary, "totals"), "rows")), 10);
  json_decref(res.summary);
  /* Log lines reach the hook redacted. */
  assert_non_null(strstr(h.logs, "connected to postgresql://dumper:"));
  assert_null(strstr(h.logs, "S3cretPassw0rd"));
  assert_true(h.saw_done);
  assert_true(h.progress_calls >= 2); /* first call and the "done" phase */

  /* The manifest the pipeline wrote. */
  assert_int_equal(dsd_blob_reader_open(store, "dumps/x.tar.zst", 0, UINT64_MAX, &br, &err), 0);
  assert_int_equal(dsd_archive_reader_open(br, &r, &err), 0);
  {
    const json_t *m = dsd_archive_reader_manifest(r);
    assert_string_equal(json_string_value(json_object_get(m, "dialect")), "pg");
    assert_string_equal(json_string_value(json_object_get(m, "compression")), "zstd");
    assert_non_null(json_object_get(m, "created_at"));
    assert_true(json_is_null(json_object_get(m, "anonymize")));
    assert_non_null(json_object_get(m, "pg"));
    char *text = json_dumps(m, 0);
    assert_null(strstr(text, "S3cret"));
    free(text);
  }
  dsd_archive_reader_free(r);
  dsd_blob_reader_close(br);
}

static void test_dump_fail_prepare_leaves_nothing(void **st) {
  hook_state_t h = {0};
  dsd_dump_opts_t o = dump_opts(&h, NULL);
  dsd_dump_result_t res;
  dsd_err_t err = {0};
  fake_mode = FAKE_FAIL_PREPARE;
  assert_int_equal(dsd_pipeline_dump(&o, &res, &err), DSD_EAUTH);
  assert_non_null(strstr(dsd_err_msg(&err), "cannot connect"));
  assert_int_equal(count_files(), 0); /* not even the dumps/ directory */
}

static void test_dump_fail_run_leaves_nothing(void **st) {
  hook_state_t h = {0};
  dsd_dump_opts_t o = dump_opts(&h, NULL);
  dsd_dump_result_t res;
  dsd_err_t err = {0};
  dsd_blob_info_t info;
  char cmd[256];
  fake_mode = FAKE_FAIL_RUN;
  assert_int_equal(dsd_pipeline_dump(&o, &res, &err), DSD_EDB);
  assert_non_null(strstr(dsd_err_msg(&err), "connection lost"));
  assert_int_equal(fake_freed, 1);
  assert_int_equal(dsd_blob_head(store, "dumps/x.tar.zst", &info, &err), DSD_ENOTFOUND);
  /* No temporary file either. */
  snprintf(cmd, sizeof cmd, "test -z \"$(find '%s' -type f)\"", tmpdir_path);
  assert_int_equal(system(cmd), 0);
}

static void *cancel_later(void *p) {
  usleep(100000);
  atomic_store((atomic_int *)p, 1);
  return NULL;
}

static void test_dump_cancel_leaves_nothing(void **st) {
  hook_state_t h = {0};
  atomic_int cancel = 0;
  dsd_dump_opts_t o = dump_opts(&h, &cancel);
  dsd_dump_result_t res;
  dsd_err_t err = {0};
  pthread_t th;
  char cmd[256];
  fake_mode = FAKE_WAIT_CANCEL;
  pthread_create(&th, NULL, cancel_later, &cancel);
  assert_int_equal(dsd_pipeline_dump(&o, &res, &err), DSD_ECANCELED);
  pthread_join(th, NULL);
  snprintf(cmd, sizeof cmd, "test -z \"$(find '%s' -type f)\"", tmpdir_path);
  assert_int_equal(system(cmd), 0);
}

static void test_dump_dialect_errors(void **st) {
  hook_state_t h = {0};
  dsd_dump_opts_t o = dump_opts(&h, NULL);
  dsd_dump_result_t res;
  dsd_err_t err = {0};

  o.dialect = "mysql";
  assert_int_equal(dsd_pipeline_dump(&o, &res, &err), DSD_EINVAL);
  assert_string_equal(dsd_err_msg(&err), "the source uri is a pg uri but the plan is mysql");
  dsd_err_clear(&err);
  o.dialect = NULL;
  o.source_uri = "mysql://u:p@h/db";
  assert_int_equal(dsd_pipeline_dump(&o, &res, &err), DSD_EUNSUPPORTED);
  assert_string_equal(dsd_err_msg(&err), "the mysql dialect is not built yet");
  dsd_err_clear(&err);
  o.source_uri = "oracle://u:p@h/db";
  assert_int_equal(dsd_pipeline_dump(&o, &res, &err), DSD_EINVAL);
  assert_non_null(strstr(dsd_err_msg(&err), "HINT: "));
  dsd_err_clear(&err);
  o.source_uri = URI;
  o.dialect = "db2";
  assert_int_equal(dsd_pipeline_dump(&o, &res, &err), DSD_EINVAL);
  dsd_err_clear(&err);
  o.dialect = NULL;
  o.key = "../escape.tar.zst";
  assert_int_equal(dsd_pipeline_dump(&o, &res, &err), DSD_EINVAL);
  assert_int_equal(fake_prepared, 0);
  assert_int_equal(count_files(), 0);
}

static void test_restore(void **st) {
  hook_state_t h = {0};
  dsd_dump_opts_t o = dump_opts(&h, NULL);
  dsd_dump_result_t res;
  dsd_restore_opts_t ro;
  dsd_err_t err = {0};

  assert_int_equal(dsd_pipeline_dump(&o, &res, &err), 0);
  json_decref(res.summary);
  memset(&ro, 0, sizeof ro);
  ro.store = store;
  ro.key = "dumps/x.tar.zst";
  ro.clean = 1;
  ro.target_uri = "mysql://u:p@h/db";
  assert_int_equal(dsd_pipeline_restore(&ro, &err), DSD_EINVAL);
  assert_string_equal(dsd_err_msg(&err), "the target uri is a mysql uri but the archive holds a pg dump");
  dsd_err_clear(&err);
  ro.target_uri = "postgresql://u:p@h/target";
  assert_int_equal(dsd_pipeline_restore(&ro, &err), 0);
  assert_string_equal(fake_restore_uri, "postgresql://u:p@h/target");
  assert_int_equal(fake_restored_entries, 2); /* one data chunk + summary.json */
  ro.key = "dumps/missing.tar.zst";
  assert_int_equal(dsd_pipeline_restore(&ro, &err), DSD_ENOTFOUND);
}

static void test_progress_format(void **st) {
  dsd_pipeline_progress_t p;
  char buf[256];
  memset(&p, 0, sizeof p);
  p.p.phase = "data";
  p.p.current = "public.orders";
  p.p.bytes_done = (uint64_t)(1.2 * (1u << 30));
  p.p.bytes_total = (uint64_t)(3.4 * (1u << 30));
  p.rate_bps = 48.0 * (1u << 20);
  p.percent = 35.3;
  p.eta_seconds = 44.2;
  dsd_pipeline_progress_format(&p, "dumping", buf, sizeof buf);
  assert_string_equal(buf, "dumping public.orders: 1.2 GiB of ~3.4 GiB (35%), 48.0 MiB/s, about 45 s left");
  p.eta_seconds = 3 * 3600 + 125;
  dsd_pipeline_progress_format(&p, "dumping", buf, sizeof buf);
  assert_non_null(strstr(buf, "about 3 h 2 min left"));
  p.p.bytes_total = 0;
  p.percent = -1;
  p.eta_seconds = -1;
  p.p.current = NULL;
  p.p.bytes_done = 512;
  p.rate_bps = 0;
  dsd_pipeline_progress_format(&p, "restoring", buf, sizeof buf);
  assert_string_equal(buf, "restoring (data): 512 B, 0 B/s");
  /* Truncation is safe. */
  dsd_pipeline_progress_format(&p, "restoring", buf, 8);
  assert_int_equal(strlen(buf), 7);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_dump_ok, setup, teardown),
      cmocka_unit_test_setup_teardown(test_dump_fail_prepare_leaves_nothing, setup, teardown),
      cmocka_unit_test_setup_teardown(test_dump_fail_run_leaves_nothing, setup, teardown),
      cmocka_unit_test_setup_teardown(test_dump_cancel_leaves_nothing, setup, teardown),
      cmocka_unit_test_setup_teardown(test_dump_dialect_errors, setup, teardown),
      cmocka_unit_test_setup_teardown(test_restore, setup, teardown),
      cmocka_unit_test(test_progress_format),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
