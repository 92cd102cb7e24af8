/* Unit tests of the file:// blob store (core/blob_file.c) and key rules. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/blob.h"

typedef struct {
  char dir[64];
  dsd_blob_store_t *store;
} fixture_t;

static int setup(void **state) {
  fixture_t *f = calloc(1, sizeof(*f));
  snprintf(f->dir, sizeof(f->dir), "/tmp/dsd-blob-XXXXXX");
  if (mkdtemp(f->dir) == NULL) return -1;
  dsd_err_t err = {0};
  if (dsd_blob_file_open(f->dir, &f->store, &err) != 0) return -1;
  *state = f;
  return 0;
}

static int teardown(void **state) {
  fixture_t *f = *state;
  dsd_blob_store_free(f->store);
  char cmd[128];
  snprintf(cmd, sizeof(cmd), "rm -rf %s", f->dir);
  if (system(cmd) != 0) return -1;
  free(f);
  return 0;
}

/* Counts files in dir whose name contains needle (temporary files). */
static int count_files(const char *dir, const char *needle) {
  DIR *d = opendir(dir);
  if (d == NULL) return 0;
  int n = 0;
  struct dirent *e;
  while ((e = readdir(d)) != NULL)
    if (strstr(e->d_name, needle)) n++;
  closedir(d);
  return n;
}

static void test_key_rules(void **state) {
  (void)state;
  assert_true(dsd_blob_key_valid("instances/abc/state.json"));
  assert_true(dsd_blob_key_valid("a"));
  assert_true(dsd_blob_key_valid("a..b/c"));
  assert_false(dsd_blob_key_valid(""));
  assert_false(dsd_blob_key_valid(NULL));
  assert_false(dsd_blob_key_valid("/abs"));
  assert_false(dsd_blob_key_valid("a//b"));
  assert_false(dsd_blob_key_valid("a/../b"));
  assert_false(dsd_blob_key_valid(".."));
  assert_false(dsd_blob_key_valid("a/./b"));
  assert_false(dsd_blob_key_valid("trailing/"));
  assert_false(dsd_blob_key_valid("ctl\x01"));
  assert_false(dsd_blob_key_valid("new\nline"));
  assert_false(dsd_blob_key_valid("back\\slash"));
  char longkey[1100];
  memset(longkey, 'a', sizeof(longkey) - 1);
  longkey[sizeof(longkey) - 1] = '\0';
  assert_false(dsd_blob_key_valid(longkey));
}

static void test_put_get_head_delete(void **state) {
  fixture_t *f = *state;
  dsd_err_t err = {0};
  dsd_buf_t b = DSD_BUF_INIT;
  assert_int_equal(dsd_blob_put(f->store, "x/y/z.json", "{\"a\":1}", 7, &err), 0);
  assert_int_equal(dsd_blob_get(f->store, "x/y/z.json", &b, &err), 0);
  assert_string_equal(b.data, "{\"a\":1}");
  dsd_blob_info_t info;
  assert_int_equal(dsd_blob_head(f->store, "x/y/z.json", &info, &err), 0);
  assert_int_equal(info.size, 7);
  assert_true(info.mtime > 0);
  /* Overwrite is atomic and leaves no temporary file. */
  assert_int_equal(dsd_blob_put(f->store, "x/y/z.json", "2", 1, &err), 0);
  dsd_buf_reset(&b);
  assert_int_equal(dsd_blob_get(f->store, "x/y/z.json", &b, &err), 0);
  assert_string_equal(b.data, "2");
  char sub[128];
  snprintf(sub, sizeof(sub), "%s/x/y", f->dir);
  assert_int_equal(count_files(sub, ".dsdtmp-"), 0);
  assert_int_equal(dsd_blob_delete(f->store, "x/y/z.json", &err), 0);
  assert_int_equal(dsd_blob_delete(f->store, "x/y/z.json", &err), 0); /* idempotent */
  assert_int_equal(dsd_blob_get(f->store, "x/y/z.json", &b, &err), DSD_ENOTFOUND);
  dsd_err_clear(&err);
  assert_int_equal(dsd_blob_head(f->store, "x/y/z.json", &info, &err), DSD_ENOTFOUND);
  dsd_err_clear(&err);
  assert_int_equal(dsd_blob_put(f->store, "../escape", "x", 1, &err), DSD_EINVAL);
  dsd_buf_free(&b);
}

typedef struct {
  char keys[16][64];
  int n;
  int stop_after;
} listing_t;

static int collect(void *data, const char *key, const dsd_blob_info_t *info) {
  listing_t *l = data;
  (void)info;
  snprintf(l->keys[l->n++], 64, "%s", key);
  return l->stop_after && l->n >= l->stop_after;
}

static void test_list_sorted_with_prefix(void **state) {
  fixture_t *f = *state;
  dsd_err_t err = {0};
  const char *keys[] = {"instances/b/op.json", "instances/a/state.json", "dumps/a.tar.zst",
                        "instances/a/ops/2.json", "instancesX"};
  for (size_t i = 0; i < 5; i++) assert_int_equal(dsd_blob_put(f->store, keys[i], "x", 1, &err), 0);
  /* An unfinished streaming write is invisible to list. */
  dsd_blob_writer_t *w;
  assert_int_equal(dsd_blob_writer_open(f->store, "instances/c/big", NULL, &w, &err), 0);
  listing_t l = {0};
  assert_int_equal(dsd_blob_list(f->store, "instances/", collect, &l, &err), 0);
  assert_int_equal(l.n, 3);
  assert_string_equal(l.keys[0], "instances/a/ops/2.json");
  assert_string_equal(l.keys[1], "instances/a/state.json");
  assert_string_equal(l.keys[2], "instances/b/op.json");
  memset(&l, 0, sizeof(l));
  l.stop_after = 2;
  assert_int_equal(dsd_blob_list(f->store, "", collect, &l, &err), 0);
  assert_int_equal(l.n, 2);
  assert_string_equal(l.keys[0], "dumps/a.tar.zst");
  dsd_blob_writer_abort(w);
  memset(&l, 0, sizeof(l));
  assert_int_equal(dsd_blob_list(f->store, "nothing/", collect, &l, &err), 0);
  assert_int_equal(l.n, 0);
}

static int recorded_calls;
static char recorded_id[64];
static int record_upload(void *data, const char *key, const char *id) {
  (void)data;
  (void)key;
  recorded_calls++;
  snprintf(recorded_id, sizeof(recorded_id), "%s", id);
  return 0;
}

static void test_streaming_writer_commit_abort_cancel(void **state) {
  fixture_t *f = *state;
  dsd_err_t err = {0};
  dsd_blob_writer_opts_t opts = {.on_upload_created = record_upload};
  dsd_blob_writer_t *w;
  char dumps[128];
  snprintf(dumps, sizeof(dumps), "%s/dumps", f->dir);

  /* Commit: the object appears only at close. */
  assert_int_equal(dsd_blob_writer_open(f->store, "dumps/one", &opts, &w, &err), 0);
  assert_int_equal(recorded_calls, 1);
  assert_true(strlen(recorded_id) > 0);
  for (int i = 0; i < 1000; i++) assert_int_equal(dsd_blob_writer_write(w, "0123456789", 10), 0);
  assert_int_equal(w->bytes, 10000);
  dsd_blob_info_t info;
  assert_int_equal(dsd_blob_head(f->store, "dumps/one", &info, &err), DSD_ENOTFOUND);
  dsd_err_clear(&err);
  assert_int_equal(dsd_blob_writer_close(w, &err), 0);
  assert_int_equal(dsd_blob_head(f->store, "dumps/one", &info, &err), 0);
  assert_int_equal(info.size, 10000);

  /* Abort: nothing left. */
  assert_int_equal(dsd_blob_writer_open(f->store, "dumps/two", &opts, &w, &err), 0);
  assert_int_equal(dsd_blob_writer_write(w, "abc", 3), 0);
  dsd_blob_writer_abort(w);
  assert_int_equal(dsd_blob_head(f->store, "dumps/two", &info, &err), DSD_ENOTFOUND);
  dsd_err_clear(&err);
  assert_int_equal(count_files(dumps, ".dsdtmp-"), 0);

  /* Cancel: the write fails with ECANCELED, the error is sticky, close fails. */
  atomic_int cancel = 0;
  opts.cancel = &cancel;
  assert_int_equal(dsd_blob_writer_open(f->store, "dumps/three", &opts, &w, &err), 0);
  assert_int_equal(dsd_blob_writer_write(w, "abc", 3), 0);
  atomic_store(&cancel, 1);
  assert_int_equal(dsd_blob_writer_write(w, "abc", 3), DSD_ECANCELED);
  atomic_store(&cancel, 0);
  assert_int_equal(dsd_blob_writer_write(w, "abc", 3), DSD_ECANCELED);
  assert_int_equal(dsd_blob_writer_close(w, &err), DSD_ECANCELED);
  assert_int_equal(dsd_blob_head(f->store, "dumps/three", &info, &err), DSD_ENOTFOUND);
  assert_int_equal(count_files(dumps, ".dsdtmp-"), 0);
}

static void test_abort_uploads_after_crash(void **state) {
  fixture_t *f = *state;
  dsd_err_t err = {0};
  dsd_blob_writer_opts_t opts = {.on_upload_created = record_upload};
  dsd_blob_writer_t *w1, *w2;
  /* Two writers "left behind" by a crashed process (never closed here). */
  assert_int_equal(dsd_blob_writer_open(f->store, "dumps/crash", &opts, &w1, &err), 0);
  char first[64];
  snprintf(first, sizeof(first), "%s", recorded_id);
  assert_int_equal(dsd_blob_writer_open(f->store, "dumps/crash", &opts, &w2, &err), 0);
  char dumps[128];
  snprintf(dumps, sizeof(dumps), "%s/dumps", f->dir);
  assert_int_equal(count_files(dumps, "crash.dsdtmp-"), 2);
  assert_int_equal(dsd_blob_abort_uploads(f->store, "dumps/crash", first, &err), 0);
  assert_int_equal(count_files(dumps, "crash.dsdtmp-"), 1);
  assert_int_equal(dsd_blob_abort_uploads(f->store, "dumps/crash", NULL, &err), 0);
  assert_int_equal(count_files(dumps, "crash.dsdtmp-"), 0);
  dsd_blob_writer_abort(w1);
  dsd_blob_writer_abort(w2);
}

static void test_ranged_reader(void **state) {
  fixture_t *f = *state;
  dsd_err_t err = {0};
  char data[256];
  for (int i = 0; i < 256; i++) data[i] = (char)i;
  assert_int_equal(dsd_blob_put(f->store, "r", data, sizeof(data), &err), 0);
  dsd_blob_reader_t *r;
  assert_int_equal(dsd_blob_reader_open(f->store, "r", 10, 20, &r, &err), 0);
  char got[64];
  size_t total = 0;
  long n;
  while ((n = dsd_blob_reader_read(r, got + total, 7)) > 0) total += (size_t)n;
  assert_int_equal(n, 0);
  assert_int_equal(total, 20);
  assert_memory_equal(got, data + 10, 20);
  dsd_blob_reader_close(r);
  assert_int_equal(dsd_blob_reader_open(f->store, "r", 250, UINT64_MAX, &r, &err), 0);
  assert_int_equal(dsd_blob_reader_read(r, got, sizeof(got)), 6);
  assert_int_equal(dsd_blob_reader_read(r, got, sizeof(got)), 0);
  dsd_blob_reader_close(r);
  assert_int_equal(dsd_blob_reader_open(f->store, "missing", 0, 1, &r, &err), DSD_ENOTFOUND);
}

static void test_open_requires_absolute_path(void **state) {
  (void)state;
  dsd_err_t err = {0};
  dsd_blob_store_t *s = NULL;
  assert_int_equal(dsd_blob_file_open("relative/dir", &s, &err), DSD_EINVAL);
  assert_non_null(strstr(err.msg, "absolute"));
  assert_null(s);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_key_rules),
      cmocka_unit_test_setup_teardown(test_put_get_head_delete, setup, teardown),
      cmocka_unit_test_setup_teardown(test_list_sorted_with_prefix, setup, teardown),
      cmocka_unit_test_setup_teardown(test_streaming_writer_commit_abort_cancel, setup, teardown),
      cmocka_unit_test_setup_teardown(test_abort_uploads_after_crash, setup, teardown),
      cmocka_unit_test_setup_teardown(test_ranged_reader, setup, teardown),
      cmocka_unit_test(test_open_requires_absolute_path),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
