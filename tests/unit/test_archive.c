/*
 * test_archive.c - unit tests of core/archive.c and core/hash.c.
 *
 * Round trips through an in-memory sink and source with every compression
 * and the buffer-size pairs (1,1), (1,N), (N,1) (write piece size, read
 * piece size), interleaved streams from several threads, the output checked
 * with the command-line tools (zstd -t, gzip -t, tar -tf) on a file store,
 * the sha256 of the result against a recomputation, chunk name parsing, a
 * failing sink (sticky error) and reader errors (wrong version, not a dsd
 * archive, truncated).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <archive.h>
#include <archive_entry.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/archive.h"
#include "core/blob.h"
#include "core/buf.h"
#include "core/hash.h"

/* ------------------------------------------------------------------ */
/* In-memory sink and source                                           */

typedef struct mem_sink {
  dsd_blob_writer_t base;
  dsd_buf_t out;
  size_t fail_after; /* 0: never fail */
  int writes_after_fail;
} mem_sink_t;

static int mem_write(dsd_blob_writer_t *w, const void *data, size_t len) {
  mem_sink_t *m = (mem_sink_t *)w;
  if (m->base.err.code) {
    m->writes_after_fail++;
    return m->base.err.code;
  }
  if (m->fail_after && m->out.len + len > m->fail_after)
    return dsd_err_set(&m->base.err, DSD_ENET, "simulated upload failure");
  m->base.bytes += len;
  return dsd_buf_append(&m->out, data, len);
}
static int mem_close(dsd_blob_writer_t *w, dsd_err_t *err) { return 0; }
static void mem_abort(dsd_blob_writer_t *w) {}
static const dsd_blob_writer_ops_t mem_sink_ops = {mem_write, mem_close, mem_abort};

static void mem_sink_init(mem_sink_t *m) {
  memset(m, 0, sizeof *m);
  m->base.ops = &mem_sink_ops;
  dsd_buf_init(&m->out);
}

typedef struct mem_src {
  dsd_blob_reader_t base;
  const char *data;
  size_t len, pos, piece;
} mem_src_t;

static long mem_read(dsd_blob_reader_t *r, void *buf, size_t len) {
  mem_src_t *m = (mem_src_t *)r;
  size_t n = m->len - m->pos;
  if (n > len)
    n = len;
  if (m->piece && n > m->piece)
    n = m->piece;
  memcpy(buf, m->data + m->pos, n);
  m->pos += n;
  return (long)n;
}
static void mem_rclose(dsd_blob_reader_t *r) {}
static const dsd_blob_reader_ops_t mem_src_ops = {mem_read, mem_rclose};

static void mem_src_init(mem_src_t *m, const void *data, size_t len, size_t piece) {
  memset(m, 0, sizeof *m);
  m->base.ops = &mem_src_ops;
  m->data = data;
  m->len = len;
  m->piece = piece;
}

/* Deterministic test content: not all equal bytes, so a misplaced chunk
 * changes the result. */
static char *make_data(size_t len, unsigned seed) {
  char *p = malloc(len + 1);
  uint32_t x = seed * 2654435761u + 1;
  for (size_t i = 0; i < len; i++) {
    x = x * 1103515245u + 12345u;
    p[i] = (char)('a' + (x >> 16) % 26);
    if ((x >> 8) % 17 == 0)
      p[i] = '\n';
  }
  p[len] = '\0';
  return p;
}

static json_t *test_manifest(void) {
  return json_pack("{s:s, s:s}", "dialect", "test", "compression", "zstd");
}

/* Reads every stream of an archive back, concatenating chunks per stream
 * (checking their order) into a json object name -> string. */
static json_t *read_all(const void *data, size_t len, size_t src_piece, size_t read_piece,
                        json_t **summary_out) {
  mem_src_t src;
  dsd_archive_reader_t *r = NULL;
  dsd_err_t err = {0};
  json_t *streams = json_object();
  json_t *lastchunk = json_object();
  const char *name;
  uint64_t size;
  char *buf = malloc(read_piece);
  int rc;

  mem_src_init(&src, data, len, src_piece);
  rc = dsd_archive_reader_open(&src.base, &r, &err);
  assert_int_equal(rc, 0);
  assert_string_equal(json_string_value(json_object_get(dsd_archive_reader_manifest(r), "dialect")),
                      "test");
  while ((rc = dsd_archive_reader_next(r, &name, &size, &err)) == 1) {
    char stream[256];
    unsigned chunk;
    dsd_buf_t b = DSD_BUF_INIT;
    long n;
    while ((n = dsd_archive_reader_read(r, buf, read_piece)) > 0)
      dsd_buf_append(&b, buf, (size_t)n);
    assert_int_equal(n, 0);
    assert_int_equal(b.len, size);
    if (strcmp(name, "summary.json") == 0) {
      assert_non_null(dsd_archive_reader_summary(r));
      dsd_buf_free(&b);
      continue;
    }
    if (dsd_archive_chunk_name_parse(name, stream, sizeof stream, &chunk) != 0) {
      /* A whole entry written with dsd_archive_write_entry. */
      json_object_set_new(streams, name, json_stringn(b.data ? b.data : "", b.len));
      dsd_buf_free(&b);
      continue;
    }
    assert_int_equal((unsigned)json_integer_value(json_object_get(lastchunk, stream)) + 1, chunk);
    json_object_set_new(lastchunk, stream, json_integer(chunk));
    {
      json_t *prev = json_object_get(streams, stream);
      dsd_buf_t all = DSD_BUF_INIT;
      if (prev)
        dsd_buf_append(&all, json_string_value(prev), json_string_length(prev));
      dsd_buf_append(&all, b.data ? b.data : "", b.len);
      json_object_set_new(streams, stream, json_stringn(all.data ? all.data : "", all.len));
      dsd_buf_free(&all);
    }
    dsd_buf_free(&b);
  }
  assert_int_equal(rc, 0);
  assert_non_null(dsd_archive_reader_summary(r));
  if (summary_out)
    *summary_out = json_incref((json_t *)dsd_archive_reader_summary(r));
  dsd_archive_reader_free(r);
  json_decref(lastchunk);
  free(buf);
  return streams;
}

/* ------------------------------------------------------------------ */
/* Round trips                                                         */

static void round_trip(dsd_compression_t c, size_t wpiece, size_t rpiece, size_t srcpiece) {
  mem_sink_t sink;
  dsd_archive_writer_t *w = NULL;
  dsd_archive_stream_t *s1 = NULL, *s2 = NULL, *s3 = NULL;
  dsd_archive_writer_opts_t o = {.compression = c, .chunk_size = 1000};
  dsd_archive_result_t res;
  dsd_err_t err = {0};
  json_t *m = test_manifest(), *got, *summary = NULL, *extra;
  size_t len1 = 5500, len2 = 3000; /* 6 and 3 chunks; the last ones partial */
  char *d1 = make_data(len1, 1), *d2 = make_data(len2, 2);
  char hex[65];

  mem_sink_init(&sink);
  assert_int_equal(dsd_archive_writer_open(&sink.base, &o, m, &w, &err), 0);
  assert_int_equal(dsd_archive_stream_open(w, "t/data/00001", &s1), 0);
  assert_int_equal(dsd_archive_stream_open(w, "t/data/00002", &s2), 0);
  assert_int_equal(dsd_archive_stream_open(w, "t/empty", &s3), 0);
  /* Interleave the two streams piece by piece. */
  for (size_t i = 0, j = 0; i < len1 || j < len2;) {
    if (i < len1) {
      size_t n = len1 - i < wpiece ? len1 - i : wpiece;
      assert_int_equal(dsd_archive_stream_write(s1, d1 + i, n), 0);
      i += n;
    }
    if (j < len2) {
      size_t n = len2 - j < wpiece ? len2 - j : wpiece;
      assert_int_equal(dsd_archive_stream_write(s2, d2 + j, n), 0);
      j += n;
    }
  }
  dsd_archive_stream_add_rows(s1, 7);
  dsd_archive_stream_add_rows(s2, 3);
  assert_int_equal(dsd_archive_stream_close(s1), 0);
  assert_int_equal(dsd_archive_stream_close(s2), 0);
  assert_int_equal(dsd_archive_stream_close(s3), 0);
  assert_int_equal(dsd_archive_write_entry(w, "t/note.txt", "hi", 2), 0);
  extra = json_pack("{s:s}", "finished_by", "test");
  assert_int_equal(dsd_archive_writer_finish(w, extra, &res, &err), 0);
  json_decref(extra);

  /* The result describes exactly the bytes the sink received. */
  assert_int_equal(res.compressed_bytes, sink.out.len);
  assert_int_equal(dsd_sha256_hex(sink.out.data, sink.out.len, hex), 0);
  assert_string_equal(res.sha256, hex);
  assert_int_equal(res.total_rows, 10);
  assert_non_null(res.summary);
  assert_int_equal(json_integer_value(json_object_get(json_object_get(res.summary, "totals"), "rows")), 10);
  json_decref(res.summary);
  assert_int_equal(res.total_bytes, len1 + len2);

  got = read_all(sink.out.data, sink.out.len, srcpiece, rpiece, &summary);
  assert_int_equal(json_string_length(json_object_get(got, "t/data/00001")), len1);
  assert_memory_equal(json_string_value(json_object_get(got, "t/data/00001")), d1, len1);
  assert_memory_equal(json_string_value(json_object_get(got, "t/data/00002")), d2, len2);
  assert_int_equal(json_string_length(json_object_get(got, "t/empty")), 0);
  assert_string_equal(json_string_value(json_object_get(got, "t/note.txt")), "hi");

  /* The summary's sha256, bytes and rows are those of the content. */
  {
    json_t *st = json_object_get(json_object_get(summary, "streams"), "t/data/00001");
    assert_int_equal(dsd_sha256_hex(d1, len1, hex), 0);
    assert_string_equal(json_string_value(json_object_get(st, "sha256")), hex);
    assert_int_equal(json_integer_value(json_object_get(st, "bytes")), len1);
    assert_int_equal(json_integer_value(json_object_get(st, "rows")), 7);
    assert_int_equal(json_integer_value(json_object_get(st, "chunks")), 6);
    assert_int_equal(json_integer_value(json_object_get(json_object_get(summary, "totals"), "streams")), 3);
    assert_string_equal(json_string_value(json_object_get(summary, "finished_by")), "test");
  }
  json_decref(summary);
  json_decref(got);
  json_decref(m);
  dsd_buf_free(&sink.out);
  free(d1);
  free(d2);
}

static void test_rt_zstd_1_1(void **st) { round_trip(DSD_COMPRESS_ZSTD, 1, 1, 1); }
static void test_rt_zstd_1_n(void **st) { round_trip(DSD_COMPRESS_ZSTD, 1, 4096, 0); }
static void test_rt_zstd_n_1(void **st) { round_trip(DSD_COMPRESS_ZSTD, 4096, 1, 7); }
static void test_rt_gzip_1_1(void **st) { round_trip(DSD_COMPRESS_GZIP, 1, 1, 1); }
static void test_rt_gzip_1_n(void **st) { round_trip(DSD_COMPRESS_GZIP, 1, 4096, 0); }
static void test_rt_gzip_n_1(void **st) { round_trip(DSD_COMPRESS_GZIP, 4096, 1, 3); }
static void test_rt_none_1_1(void **st) { round_trip(DSD_COMPRESS_NONE, 1, 1, 1); }
static void test_rt_none_1_n(void **st) { round_trip(DSD_COMPRESS_NONE, 1, 4096, 0); }
static void test_rt_none_n_1(void **st) { round_trip(DSD_COMPRESS_NONE, 4096, 1, 5); }

/* ------------------------------------------------------------------ */
/* Threads                                                             */

typedef struct worker_arg {
  dsd_archive_writer_t *w;
  int id;
  char *data;
  size_t len;
} worker_arg_t;

static void *worker(void *p) {
  worker_arg_t *a = p;
  dsd_archive_stream_t *s;
  char name[64];
  snprintf(name, sizeof name, "t/data/%05d", a->id);
  if (dsd_archive_stream_open(a->w, name, &s) != 0)
    return (void *)1;
  for (size_t i = 0; i < a->len; i += 333) {
    size_t n = a->len - i < 333 ? a->len - i : 333;
    if (dsd_archive_stream_write(s, a->data + i, n) != 0)
      return (void *)1;
  }
  dsd_archive_stream_add_rows(s, (uint64_t)a->id);
  return dsd_archive_stream_close(s) == 0 ? NULL : (void *)1;
}

static void test_threads(void **st) {
  enum { N = 6 };
  mem_sink_t sink;
  dsd_archive_writer_t *w = NULL;
  dsd_archive_writer_opts_t o = {.compression = DSD_COMPRESS_ZSTD, .threads = 2, .chunk_size = 4096};
  dsd_archive_result_t res;
  dsd_err_t err = {0};
  json_t *m = test_manifest(), *got;
  pthread_t th[N];
  worker_arg_t args[N];

  mem_sink_init(&sink);
  assert_int_equal(dsd_archive_writer_open(&sink.base, &o, m, &w, &err), 0);
  for (int i = 0; i < N; i++) {
    args[i] = (worker_arg_t){w, i + 1, make_data(50000 + 1000 * (size_t)i, (unsigned)i + 10),
                             50000 + 1000 * (size_t)i};
    pthread_create(&th[i], NULL, worker, &args[i]);
  }
  for (int i = 0; i < N; i++) {
    void *r;
    pthread_join(th[i], &r);
    assert_null(r);
  }
  assert_int_equal(dsd_archive_writer_finish(w, NULL, &res, &err), 0);
  assert_int_equal(res.total_rows, 1 + 2 + 3 + 4 + 5 + 6);
  json_decref(res.summary);
  got = read_all(sink.out.data, sink.out.len, 0, 65536, NULL);
  for (int i = 0; i < N; i++) {
    char name[64];
    snprintf(name, sizeof name, "t/data/%05d", i + 1);
    assert_int_equal(json_string_length(json_object_get(got, name)), args[i].len);
    assert_memory_equal(json_string_value(json_object_get(got, name)), args[i].data, args[i].len);
    free(args[i].data);
  }
  json_decref(got);
  json_decref(m);
  dsd_buf_free(&sink.out);
}

/* ------------------------------------------------------------------ */
/* Command-line tools on a file store                                  */

static void cli_check(dsd_compression_t c, const char *tool_test, const char *tar_flag) {
  char dir[] = "/tmp/dsd-test-archive-XXXXXX";
  char cmd[1024], path[512], line[256];
  dsd_blob_store_t *store = NULL;
  dsd_blob_writer_t *bw = NULL;
  dsd_archive_writer_t *w = NULL;
  dsd_archive_stream_t *a = NULL, *b = NULL;
  dsd_archive_writer_opts_t o = {.compression = c, .chunk_size = 100};
  dsd_archive_result_t res;
  dsd_err_t err = {0};
  json_t *m = test_manifest();
  const char *expect[] = {"manifest.json", "x/a/000001", "x/b/000001", "x/a/000002",
                          "x/a/000003", "x/b/000002", "summary.json"};
  char *data = make_data(250, 3);
  dsd_buf_t file = DSD_BUF_INIT;
  char hex[65];
  FILE *f;
  int i = 0;

  assert_non_null(mkdtemp(dir));
  assert_int_equal(dsd_blob_file_open(dir, &store, &err), 0);
  snprintf(path, sizeof path, "d%s", dsd_compression_ext(c));
  assert_int_equal(dsd_blob_writer_open(store, path, NULL, &bw, &err), 0);
  assert_int_equal(dsd_archive_writer_open(bw, &o, m, &w, &err), 0);
  assert_int_equal(dsd_archive_stream_open(w, "x/a", &a), 0);
  assert_int_equal(dsd_archive_stream_open(w, "x/b", &b), 0);
  assert_int_equal(dsd_archive_stream_write(a, data, 100), 0);   /* a/1 */
  assert_int_equal(dsd_archive_stream_write(b, data, 150), 0);   /* b/1, 50 buffered */
  assert_int_equal(dsd_archive_stream_write(a, data + 100, 150), 0); /* a/2 */
  assert_int_equal(dsd_archive_stream_close(a), 0);              /* a/3 */
  assert_int_equal(dsd_archive_stream_close(b), 0);              /* b/2 */
  assert_int_equal(dsd_archive_writer_finish(w, NULL, &res, &err), 0);
  assert_int_equal(dsd_blob_writer_close(bw, &err), 0);
  json_decref(res.summary);

  snprintf(path, sizeof path, "%s/d%s", dir, dsd_compression_ext(c));
  if (tool_test) {
    snprintf(cmd, sizeof cmd, "%s '%s'", tool_test, path);
    assert_int_equal(system(cmd), 0);
  }
  snprintf(cmd, sizeof cmd, "tar %s -tf '%s'", tar_flag, path);
  f = popen(cmd, "r");
  assert_non_null(f);
  while (fgets(line, sizeof line, f)) {
    line[strcspn(line, "\n")] = '\0';
    assert_true(i < 7);
    assert_string_equal(line, expect[i]);
    i++;
  }
  assert_int_equal(pclose(f), 0);
  assert_int_equal(i, 7);
  /* Extracted stream content equals what was written. */
  snprintf(cmd, sizeof cmd, "cd '%s' && tar %s -xf '%s'", dir, tar_flag, path);
  assert_int_equal(system(cmd), 0);
  snprintf(cmd, sizeof cmd, "%s/x/a/000003", dir);
  f = fopen(cmd, "rb");
  assert_non_null(f);
  assert_int_equal(fread(line, 1, sizeof line, f), 50);
  assert_memory_equal(line, data + 200, 50);
  fclose(f);

  /* sha256 and size in the result are those of the stored object. */
  dsd_err_clear(&err);
  {
    char key[64];
    snprintf(key, sizeof key, "d%s", dsd_compression_ext(c));
    assert_int_equal(dsd_blob_get(store, key, &file, &err), 0);
  }
  assert_int_equal(file.len, res.compressed_bytes);
  assert_int_equal(dsd_sha256_hex(file.data, file.len, hex), 0);
  assert_string_equal(hex, res.sha256);

  snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
  assert_int_equal(system(cmd), 0);
  dsd_buf_free(&file);
  dsd_blob_store_free(store);
  json_decref(m);
  free(data);
}

static void test_cli_zstd(void **st) { cli_check(DSD_COMPRESS_ZSTD, "zstd -q -t", "--zstd"); }
static void test_cli_gzip(void **st) { cli_check(DSD_COMPRESS_GZIP, "gzip -t", "-z"); }
static void test_cli_none(void **st) { cli_check(DSD_COMPRESS_NONE, NULL, ""); }

/* ------------------------------------------------------------------ */
/* Names and errors                                                    */

static void test_chunk_names(void **st) {
  char s[32];
  unsigned n = 0;
  assert_int_equal(dsd_archive_chunk_name_parse("pg/data/00003/000007", s, sizeof s, &n), 0);
  assert_string_equal(s, "pg/data/00003");
  assert_int_equal(n, 7);
  assert_int_equal(dsd_archive_chunk_name_parse("pg/pre-data/1234567", s, sizeof s, &n), 0);
  assert_string_equal(s, "pg/pre-data");
  assert_int_equal(n, 1234567);
  assert_int_equal(dsd_archive_chunk_name_parse("manifest.json", s, sizeof s, &n), DSD_EINVAL);
  assert_int_equal(dsd_archive_chunk_name_parse("pg/data/00003", s, sizeof s, &n), DSD_EINVAL);
  assert_int_equal(dsd_archive_chunk_name_parse("pg/x/00000a", s, sizeof s, &n), DSD_EINVAL);
  assert_int_equal(dsd_archive_chunk_name_parse("pg/x/000000", s, sizeof s, &n), DSD_EINVAL);
  assert_int_equal(dsd_archive_chunk_name_parse("/000001", s, sizeof s, &n), DSD_EINVAL);
  assert_int_equal(dsd_archive_chunk_name_parse("a-very-long-stream-name-indeed/000001", s, 8, &n),
                   DSD_EINVAL);
}

static void test_compression_names(void **st) {
  dsd_compression_t c;
  assert_int_equal(dsd_compression_parse("gzip", &c), 0);
  assert_int_equal(c, DSD_COMPRESS_GZIP);
  assert_int_equal(dsd_compression_parse("lz4", &c), DSD_EINVAL);
  assert_string_equal(dsd_compression_ext(DSD_COMPRESS_ZSTD), ".tar.zst");
  assert_string_equal(dsd_compression_name(DSD_COMPRESS_NONE), "none");
}

static void test_sink_failure_sticky(void **st) {
  mem_sink_t sink;
  dsd_archive_writer_t *w = NULL;
  dsd_archive_stream_t *s = NULL;
  dsd_archive_writer_opts_t o = {.compression = DSD_COMPRESS_NONE, .chunk_size = 512};
  dsd_archive_result_t res;
  dsd_err_t err = {0};
  json_t *m = test_manifest();
  char *data = make_data(100000, 4);
  int rc = 0, first = 0;

  mem_sink_init(&sink);
  sink.fail_after = 30000;
  assert_int_equal(dsd_archive_writer_open(&sink.base, &o, m, &w, &err), 0);
  assert_null(dsd_archive_writer_error(w));
  assert_int_equal(dsd_archive_stream_open(w, "s", &s), 0);
  for (size_t i = 0; i < 100000; i += 100) {
    rc = dsd_archive_stream_write(s, data + i, 100);
    if (rc < 0 && first == 0)
      first = rc;
  }
  assert_int_equal(first, DSD_ENET);
  assert_int_equal(rc, DSD_ENET); /* later writes keep failing the same way */
  assert_non_null(dsd_archive_writer_error(w));
  assert_non_null(strstr(dsd_err_msg(dsd_archive_writer_error(w)), "simulated upload failure"));
  /* The failed writer did not keep pushing data into the sink. */
  assert_true(sink.writes_after_fail == 0);
  assert_int_equal(dsd_archive_write_entry(w, "x", "y", 1), DSD_ENET);
  assert_int_equal(dsd_archive_stream_close(s), DSD_ENET);
  assert_int_equal(dsd_archive_writer_finish(w, NULL, &res, &err), DSD_ENET);
  assert_non_null(strstr(dsd_err_msg(&err), "simulated upload failure"));
  json_decref(m);
  dsd_buf_free(&sink.out);
  free(data);
}

static void test_abort_with_open_stream(void **st) {
  mem_sink_t sink;
  dsd_archive_writer_t *w = NULL;
  dsd_archive_stream_t *s = NULL;
  dsd_err_t err = {0};
  json_t *m = test_manifest();
  size_t before;

  mem_sink_init(&sink);
  assert_int_equal(dsd_archive_writer_open(&sink.base, NULL, m, &w, &err), 0);
  assert_int_equal(dsd_archive_stream_open(w, "s", &s), 0);
  assert_int_equal(dsd_archive_stream_write(s, "abc", 3), 0);
  before = sink.out.len;
  dsd_archive_writer_abort(w); /* frees s too; must not flush into the sink */
  assert_int_equal(sink.out.len, before);
  json_decref(m);
  dsd_buf_free(&sink.out);
}

static void test_duplicate_stream(void **st) {
  mem_sink_t sink;
  dsd_archive_writer_t *w = NULL;
  dsd_archive_stream_t *s = NULL, *s2 = NULL;
  dsd_err_t err = {0};
  json_t *m = test_manifest();

  mem_sink_init(&sink);
  assert_int_equal(dsd_archive_writer_open(&sink.base, NULL, m, &w, &err), 0);
  assert_int_equal(dsd_archive_stream_open(w, "s", &s), 0);
  assert_int_equal(dsd_archive_stream_open(w, "s", &s2), DSD_EEXIST);
  assert_null(s2);
  dsd_archive_writer_abort(w);
  json_decref(m);
  dsd_buf_free(&sink.out);
}

/* Writes a raw tar (no dsd writer) with the given first entry. */
static void raw_tar(dsd_buf_t *out, const char *name, const char *content) {
  struct archive *a = archive_write_new();
  struct archive_entry *e = archive_entry_new();
  size_t used = 0;
  static char mem[1 << 16];
  archive_write_set_format_pax_restricted(a);
  archive_write_add_filter_zstd(a);
  archive_write_set_bytes_in_last_block(a, 1);
  assert_int_equal(archive_write_open_memory(a, mem, sizeof mem, &used), ARCHIVE_OK);
  archive_entry_set_pathname(e, name);
  archive_entry_set_size(e, (la_int64_t)strlen(content));
  archive_entry_set_filetype(e, AE_IFREG);
  archive_entry_set_perm(e, 0644);
  archive_write_header(a, e);
  archive_write_data(a, content, strlen(content));
  archive_write_close(a);
  archive_write_free(a);
  archive_entry_free(e);
  dsd_buf_append(out, mem, used);
}

static void test_reader_errors(void **st) {
  dsd_buf_t b = DSD_BUF_INIT;
  mem_src_t src;
  dsd_archive_reader_t *r = NULL;
  dsd_err_t err = {0};

  raw_tar(&b, "hello.txt", "hi");
  mem_src_init(&src, b.data, b.len, 0);
  assert_int_equal(dsd_archive_reader_open(&src.base, &r, &err), DSD_EPROTO);
  assert_null(r);
  assert_non_null(strstr(dsd_err_msg(&err), "not a dsd archive"));

  dsd_buf_reset(&b);
  dsd_err_clear(&err);
  raw_tar(&b, "manifest.json", "{\"format\":\"dsd-archive\",\"version\":2}");
  mem_src_init(&src, b.data, b.len, 0);
  assert_int_equal(dsd_archive_reader_open(&src.base, &r, &err), DSD_EUNSUPPORTED);
  assert_non_null(strstr(dsd_err_msg(&err), "version 2"));

  dsd_buf_reset(&b);
  dsd_err_clear(&err);
  dsd_buf_append_str(&b, "just some text, not an archive at all");
  mem_src_init(&src, b.data, b.len, 0);
  assert_true(dsd_archive_reader_open(&src.base, &r, &err) < 0);
  assert_null(r);
  dsd_buf_free(&b);
}

static void test_truncated(void **st) {
  mem_sink_t sink;
  dsd_archive_writer_t *w = NULL;
  dsd_archive_stream_t *s = NULL;
  dsd_archive_writer_opts_t o = {.compression = DSD_COMPRESS_ZSTD, .chunk_size = 1000};
  dsd_archive_result_t res;
  dsd_err_t err = {0};
  json_t *m = test_manifest();
  char *data = make_data(200000, 5);
  mem_src_t src;
  dsd_archive_reader_t *r = NULL;
  const char *name;
  uint64_t size;
  char buf[4096];
  int rc, failed = 0;

  mem_sink_init(&sink);
  assert_int_equal(dsd_archive_writer_open(&sink.base, &o, m, &w, &err), 0);
  assert_int_equal(dsd_archive_stream_open(w, "s", &s), 0);
  assert_int_equal(dsd_archive_stream_write(s, data, 200000), 0);
  assert_int_equal(dsd_archive_stream_close(s), 0);
  assert_int_equal(dsd_archive_writer_finish(w, NULL, &res, &err), 0);
  json_decref(res.summary);

  mem_src_init(&src, sink.out.data, sink.out.len / 2, 0);
  assert_int_equal(dsd_archive_reader_open(&src.base, &r, &err), 0);
  while ((rc = dsd_archive_reader_next(r, &name, &size, &err)) == 1) {
    long n;
    while ((n = dsd_archive_reader_read(r, buf, sizeof buf)) > 0)
      ;
    if (n < 0) {
      failed = 1;
      break;
    }
  }
  assert_true(failed || rc < 0);
  assert_non_null(dsd_archive_reader_error(r));
  dsd_archive_reader_free(r);
  json_decref(m);
  dsd_buf_free(&sink.out);
  free(data);
}

static void test_sha256(void **st) {
  char hex[65];
  dsd_sha256_t h;
  assert_int_equal(dsd_sha256_hex("abc", 3, hex), 0);
  assert_string_equal(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  assert_int_equal(dsd_sha256_init(&h), 0);
  assert_int_equal(dsd_sha256_update(&h, "a", 1), 0);
  assert_int_equal(dsd_sha256_update(&h, "bc", 2), 0);
  assert_int_equal(dsd_sha256_final_hex(&h, hex), 0);
  assert_string_equal(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_rt_zstd_1_1),     cmocka_unit_test(test_rt_zstd_1_n),
      cmocka_unit_test(test_rt_zstd_n_1),     cmocka_unit_test(test_rt_gzip_1_1),
      cmocka_unit_test(test_rt_gzip_1_n),     cmocka_unit_test(test_rt_gzip_n_1),
      cmocka_unit_test(test_rt_none_1_1),     cmocka_unit_test(test_rt_none_1_n),
      cmocka_unit_test(test_rt_none_n_1),     cmocka_unit_test(test_threads),
      cmocka_unit_test(test_cli_zstd),        cmocka_unit_test(test_cli_gzip),
      cmocka_unit_test(test_cli_none),        cmocka_unit_test(test_chunk_names),
      cmocka_unit_test(test_compression_names), cmocka_unit_test(test_sink_failure_sticky),
      cmocka_unit_test(test_abort_with_open_stream), cmocka_unit_test(test_duplicate_stream),
      cmocka_unit_test(test_reader_errors),   cmocka_unit_test(test_truncated),
      cmocka_unit_test(test_sha256),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
