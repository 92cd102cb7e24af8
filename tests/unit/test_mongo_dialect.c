/*
 * test_mongo_dialect.c - the MongoDB dialect's dump and restore driven end
 * to end against a fake server (no MongoDB can run on the build machines):
 * the fake implements dsd__mongo_ops_t over in-memory collections and
 * records every call, the archive is real (core/archive.c, small chunks so
 * documents straddle chunk boundaries) and lives in memory.
 *
 * Covers: database selection (the URI's database, or every database but
 * admin/local/config), the archive layout (entry names and order,
 * metadata before data, views last and without a data stream, escaped
 * names, system.* skipped but system.js kept), the .bson streams read
 * back with bson_reader equal the source, the snapshot session used only
 * where the server supports it and begun before any read, anonymization
 * while streaming and a rule naming a missing collection refused before
 * anything is read, restore with and without clean (drop, create with
 * options, unordered batches bounded in documents and bytes, indexes after
 * the data without _id_, views after the collections), cancel on both
 * sides, a server error naming the collection, and a corrupt archive.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <bson/bson.h>

#include "anonymize/anonymize.h"
#include "core/archive.h"
#include "core/blob.h"
#include "core/buf.h"
#include "dialects/mongo/mongo.h"

/* ------------------------------------------------------------------ */
/* In-memory blob sink and source                                      */

typedef struct mem_sink {
  dsd_blob_writer_t base;
  dsd_buf_t out;
} mem_sink_t;

static int mem_write(dsd_blob_writer_t *w, const void *data, size_t len) {
  mem_sink_t *m = (mem_sink_t *)w;
  m->base.bytes += len;
  return dsd_buf_append(&m->out, data, len);
}
static int mem_close(dsd_blob_writer_t *w, dsd_err_t *err) { return 0; }
static void mem_abort(dsd_blob_writer_t *w) {}
static const dsd_blob_writer_ops_t mem_sink_ops = {mem_write, mem_close, mem_abort};

typedef struct mem_src {
  dsd_blob_reader_t base;
  const char *data;
  size_t len, pos;
} mem_src_t;

static long mem_read(dsd_blob_reader_t *r, void *buf, size_t len) {
  mem_src_t *m = (mem_src_t *)r;
  size_t n = m->len - m->pos;
  if (n > len)
    n = len;
  memcpy(buf, m->data + m->pos, n);
  m->pos += n;
  return (long)n;
}
static void mem_rclose(dsd_blob_reader_t *r) {}
static const dsd_blob_reader_ops_t mem_src_ops = {mem_read, mem_rclose};

/* ------------------------------------------------------------------ */
/* The fake server                                                     */

#define MAXC 16

typedef struct fcoll {
  char db[64], name[64];
  bool exists;
  bson_t info;    /* listCollections document */
  bson_t indexes; /* array of listIndexes documents */
  bson_t *created_opts;
  bson_t **docs;
  size_t ndocs, cap;
} fcoll_t;

typedef struct fake {
  fcoll_t c[MAXC];
  size_t n;
  const char *dbs[8];
  bool snapshot_ok, snapshot_begun;
  int reads_before_snapshot;
  dsd_buf_t calls; /* "op db.coll[ n];" */
  size_t batches, max_batch_docs, max_batch_bytes;
  /* faults */
  atomic_int *cancel;
  size_t cancel_after; /* documents read (dump) or inserted (restore) */
  size_t read_count, insert_count;
  const char *fail_find; /* collection whose cursor fails */
} fake_t;

static fake_t F;

static void call(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  dsd_buf_vprintf(&F.calls, fmt, ap);
  va_end(ap);
  dsd_buf_append_char(&F.calls, ';');
}

static fcoll_t *fget(const char *db, const char *name) {
  for (size_t i = 0; i < F.n; i++)
    if (F.c[i].exists && !strcmp(F.c[i].db, db) && !strcmp(F.c[i].name, name))
      return &F.c[i];
  return NULL;
}

static fcoll_t *fadd(const char *db, const char *name, const char *info_json) {
  fcoll_t *c = &F.c[F.n++];
  bson_error_t e;
  memset(c, 0, sizeof *c);
  snprintf(c->db, sizeof c->db, "%s", db);
  snprintf(c->name, sizeof c->name, "%s", name);
  c->exists = true;
  if (info_json) {
    assert_true(bson_init_from_json(&c->info, info_json, -1, &e));
  } else {
    bson_init(&c->info);
    BSON_APPEND_UTF8(&c->info, "name", name);
    BSON_APPEND_UTF8(&c->info, "type", "collection");
  }
  bson_init(&c->indexes);
  return c;
}

static void fdoc(fcoll_t *c, bson_t *d) {
  if (c->ndocs == c->cap) {
    c->cap = c->cap ? c->cap * 2 : 64;
    c->docs = realloc(c->docs, c->cap * sizeof *c->docs);
  }
  c->docs[c->ndocs++] = d;
}

static void findex(fcoll_t *c, const char *json) {
  bson_error_t e;
  bson_t ix;
  char key[8];
  assert_true(bson_init_from_json(&ix, json, -1, &e));
  snprintf(key, sizeof key, "%u", bson_count_keys(&c->indexes));
  BSON_APPEND_DOCUMENT(&c->indexes, key, &ix);
  bson_destroy(&ix);
}

static void fake_reset(void) {
  for (size_t i = 0; i < F.n; i++) {
    fcoll_t *c = &F.c[i];
    for (size_t k = 0; k < c->ndocs; k++)
      bson_destroy(c->docs[k]);
    free(c->docs);
    bson_destroy(&c->info);
    bson_destroy(&c->indexes);
    if (c->created_opts)
      bson_destroy(c->created_opts);
  }
  dsd_buf_free(&F.calls);
  memset(&F, 0, sizeof F);
}

static int f_connect(const char *uri, void **conn, dsd_err_t *err) {
  call("connect");
  *conn = &F;
  return 0;
}
static void f_disconnect(void *conn) { call("disconnect"); }
static int f_server_info(void *conn, dsd__mongo_server_t *out, dsd_err_t *err) {
  memset(out, 0, sizeof *out);
  snprintf(out->version, sizeof out->version, "%s", F.snapshot_ok ? "7.0.5" : "4.4.0");
  out->max_wire = F.snapshot_ok ? 21 : 9;
  out->snapshot_ok = F.snapshot_ok;
  return 0;
}
static int f_list_databases(void *conn, char ***names, dsd_err_t *err) {
  size_t n = 0;
  while (F.dbs[n])
    n++;
  *names = bson_malloc0((n + 1) * sizeof **names);
  for (size_t i = 0; i < n; i++)
    (*names)[i] = bson_strdup(F.dbs[i]);
  call("listDatabases");
  return 0;
}
static int f_list_collections(void *conn, const char *db, bson_t *out, dsd_err_t *err) {
  unsigned k = 0;
  char key[8];
  for (size_t i = 0; i < F.n; i++)
    if (F.c[i].exists && !strcmp(F.c[i].db, db)) {
      snprintf(key, sizeof key, "%u", k++);
      BSON_APPEND_DOCUMENT(out, key, &F.c[i].info);
    }
  call("listCollections %s", db);
  return 0;
}
static int f_list_indexes(void *conn, const char *db, const char *coll, bson_t *out,
                          dsd_err_t *err) {
  fcoll_t *c = fget(db, coll);
  bson_concat(out, &c->indexes);
  call("listIndexes %s.%s", db, coll);
  return 0;
}
static int f_coll_size(void *conn, const char *db, const char *coll, uint64_t *bytes,
                       dsd_err_t *err) {
  fcoll_t *c = fget(db, coll);
  *bytes = 0;
  for (size_t i = 0; c && i < c->ndocs; i++)
    *bytes += c->docs[i]->len;
  return 0;
}
static int f_snapshot_begin(void *conn, dsd_err_t *err) {
  F.snapshot_begun = true;
  call("snapshot");
  return 0;
}

typedef struct fcur {
  fcoll_t *c;
  size_t pos;
} fcur_t;

static int f_find_open(void *conn, const char *db, const char *coll, void **cur, dsd_err_t *err) {
  fcur_t *k = calloc(1, sizeof *k);
  k->c = fget(db, coll);
  assert_non_null(k->c);
  if (!F.snapshot_begun)
    F.reads_before_snapshot++;
  call("find %s.%s", db, coll);
  *cur = k;
  return 0;
}
static int f_find_next(void *cur, const bson_t **doc, dsd_err_t *err) {
  fcur_t *k = cur;
  if (F.fail_find && !strcmp(F.fail_find, k->c->name) && k->pos == 3)
    return dsd_err_set(err, DSD_EDB, "cannot read documents: cursor killed");
  if (k->pos == k->c->ndocs)
    return 0;
  *doc = k->c->docs[k->pos++];
  if (F.cancel && ++F.read_count == F.cancel_after)
    atomic_store(F.cancel, 1);
  return 1;
}
static void f_find_close(void *cur) { free(cur); }
static int f_drop(void *conn, const char *db, const char *coll, dsd_err_t *err) {
  fcoll_t *c = fget(db, coll);
  if (c)
    c->exists = false;
  call("drop %s.%s", db, coll);
  return 0;
}
static int f_create(void *conn, const char *db, const char *coll, const bson_t *options,
                    bool *existed, dsd_err_t *err) {
  fcoll_t *c = fget(db, coll);
  call("create %s.%s", db, coll);
  if (c) {
    *existed = true;
    return 0;
  }
  *existed = false;
  c = fadd(db, coll, NULL);
  c->created_opts = bson_copy(options);
  return 0;
}
static int f_insert_many(void *conn, const char *db, const char *coll, const bson_t *const *docs,
                         size_t n, dsd_err_t *err) {
  fcoll_t *c = fget(db, coll);
  size_t bytes = 0;
  assert_non_null(c);
  assert_true(n > 0);
  for (size_t i = 0; i < n; i++) {
    fdoc(c, bson_copy(docs[i]));
    bytes += docs[i]->len;
  }
  F.batches++;
  if (n > F.max_batch_docs)
    F.max_batch_docs = n;
  if (n > 1 && bytes > F.max_batch_bytes)
    F.max_batch_bytes = bytes;
  F.insert_count += n;
  if (F.cancel && F.cancel_after && F.insert_count >= F.cancel_after)
    atomic_store(F.cancel, 1);
  call("insert %s.%s %zu", db, coll, n);
  return 0;
}
static int f_create_indexes(void *conn, const char *db, const char *coll, const bson_t *specs,
                            dsd_err_t *err) {
  fcoll_t *c = fget(db, coll);
  bson_iter_t it;
  assert_non_null(c);
  bson_iter_init(&it, specs);
  while (bson_iter_next(&it)) {
    const uint8_t *data;
    uint32_t len;
    bson_t ix;
    char key[8];
    bson_iter_document(&it, &len, &data);
    bson_init_static(&ix, data, len);
    snprintf(key, sizeof key, "%u", bson_count_keys(&c->indexes));
    BSON_APPEND_DOCUMENT(&c->indexes, key, &ix);
  }
  call("createIndexes %s.%s %u", db, coll, bson_count_keys(specs));
  return 0;
}

static const dsd__mongo_ops_t fake_ops = {
    f_connect, f_disconnect, f_server_info, f_list_databases, f_list_collections,
    f_list_indexes, f_coll_size, f_snapshot_begin, f_find_open, f_find_next, f_find_close,
    f_drop, f_create, f_insert_many, f_create_indexes,
};

/* ------------------------------------------------------------------ */
/* Fixtures and helpers                                                */

#define NPEOPLE 2500

static bson_t *person(int i) {
  bson_t *d = bson_new(), items, it;
  char email[64], sku[32];
  size_t padlen = i % 500 == 0 ? 6000 : (size_t)(i % 97);
  char *pad = malloc(padlen + 1);
  memset(pad, 'p', padlen);
  pad[padlen] = '\0';
  snprintf(email, sizeof email, "user%d@corp.example", i);
  BSON_APPEND_INT32(d, "_id", i);
  BSON_APPEND_UTF8(d, "email", email);
  BSON_APPEND_UTF8(d, "name", "Someone");
  BSON_APPEND_ARRAY_BEGIN(d, "items", &items);
  for (int k = 0; k < 2; k++) {
    char key[4];
    snprintf(key, sizeof key, "%d", k);
    snprintf(sku, sizeof sku, "SKU-%d-%d", i, k);
    BSON_APPEND_DOCUMENT_BEGIN(&items, key, &it);
    BSON_APPEND_UTF8(&it, "sku", sku);
    BSON_APPEND_INT32(&it, "qty", k + 1);
    bson_append_document_end(&items, &it);
  }
  bson_append_array_end(d, &items);
  BSON_APPEND_UTF8(d, "pad", pad);
  free(pad);
  return d;
}

/* shop: people (NPEOPLE documents, two indexes besides _id), empty (no
 * documents), adults (a view), system.views (skipped), system.js (kept),
 * "a/b" (escaped name); crm: leads. */
static void fixture(void) {
  fcoll_t *c;
  fake_reset();
  F.dbs[0] = "admin";
  F.dbs[1] = "config";
  F.dbs[2] = "crm";
  F.dbs[3] = "local";
  F.dbs[4] = "shop";
  c = fadd("shop", "people",
           "{\"name\": \"people\", \"type\": \"collection\", \"options\": {\"validator\": "
           "{\"email\": {\"$type\": \"string\"}}}, \"info\": {\"readOnly\": false, \"uuid\": "
           "{\"$binary\": {\"base64\": \"ASNFZ4mrze8BI0VniavN7w==\", \"subType\": \"04\"}}}}");
  findex(c, "{\"v\": 2, \"key\": {\"_id\": 1}, \"name\": \"_id_\"}");
  findex(c, "{\"v\": 2, \"key\": {\"email\": 1}, \"name\": \"email_1\", \"unique\": true}");
  findex(c, "{\"v\": 2, \"key\": {\"items.sku\": 1}, \"name\": \"items.sku_1\"}");
  for (int i = 0; i < NPEOPLE; i++)
    fdoc(c, person(i));
  c = fadd("shop", "empty", NULL);
  findex(c, "{\"v\": 2, \"key\": {\"_id\": 1}, \"name\": \"_id_\"}");
  fadd("shop", "adults",
       "{\"name\": \"adults\", \"type\": \"view\", \"options\": {\"viewOn\": \"people\", "
       "\"pipeline\": [{\"$match\": {\"age\": {\"$gte\": 18}}}]}, \"info\": {\"readOnly\": true}}");
  c = fadd("shop", "system.views", NULL);
  fdoc(c, BCON_NEW("_id", "shop.adults"));
  c = fadd("shop", "system.js", NULL);
  fdoc(c, BCON_NEW("_id", "f", "value", BCON_UTF8("function() {}")));
  c = fadd("shop", "a/b", NULL);
  fdoc(c, BCON_NEW("_id", BCON_INT32(1)));
  c = fadd("crm", "leads", NULL);
  fdoc(c, BCON_NEW("_id", BCON_INT32(1), "who", "x"));
}

typedef struct dumped {
  mem_sink_t sink;
  json_t *manifest;
  int rc;
  dsd_err_t err;
} dumped_t;

/* Dumps through the fake into d->sink with small chunks. */
static void dump(const char *uri, const char *rules, atomic_int *cancel, dumped_t *d) {
  dsd_dump_ctx_t ctx = {0};
  dsd_archive_writer_opts_t o = {0};
  dsd_archive_writer_t *w = NULL;
  dsd_archive_result_t res = {0};
  dsd_anon_rules_t *r = NULL;
  void *state = NULL;

  memset(d, 0, sizeof *d);
  d->sink.base.ops = &mem_sink_ops;
  d->manifest = json_pack("{s:s, s:i, s:s}", "format", DSD_ARCHIVE_FORMAT, "version",
                          DSD_ARCHIVE_VERSION, "dialect", "mongo");
  if (rules) {
    json_t *j = json_loads(rules, 0, NULL);
    assert_non_null(j);
    assert_int_equal(dsd_anon_rules_parse(j, &r, &d->err), 0);
    assert_int_equal(dsd_anon_rules_set_random_salt(r, &d->err), 0);
    json_decref(j);
  }
  ctx.uri = uri;
  ctx.anonymize = r;
  ctx.io.cancel = cancel;
  d->rc = dsd__mongo_dump_prepare_ops(&fake_ops, &ctx, d->manifest, &state, &d->err);
  if (d->rc == 0) {
    o.compression = DSD_COMPRESS_NONE;
    o.chunk_size = 1000; /* documents straddle chunks */
    assert_int_equal(dsd_archive_writer_open(&d->sink.base, &o, d->manifest, &w, &d->err), 0);
    d->rc = dsd__mongo_dump_run(state, &ctx, w, &d->err);
    if (d->rc == 0) {
      assert_int_equal(dsd_archive_writer_finish(w, NULL, &res, &d->err), 0);
      json_decref(res.summary);
    } else {
      dsd_archive_writer_abort(w);
    }
  }
  dsd__mongo_dump_free(state);
  dsd_anon_rules_free(r);
}

static void dumped_free(dumped_t *d) {
  dsd_buf_free(&d->sink.out);
  json_decref(d->manifest);
}

#define ECAP 4000

typedef struct entry {
  char name[256];
  dsd_buf_t data;
} entry_t;

/* Reads every entry of the archive in d (manifest excluded). */
static size_t entries(dumped_t *d, entry_t *out, size_t cap) {
  mem_src_t src;
  memset(&src, 0, sizeof src);
  src.base.ops = &mem_src_ops;
  src.data = d->sink.out.data;
  src.len = d->sink.out.len;
  dsd_archive_reader_t *r = NULL;
  dsd_err_t err = {0};
  const char *name;
  uint64_t size;
  size_t n = 0;
  assert_int_equal(dsd_archive_reader_open(&src.base, &r, &err), 0);
  while (dsd_archive_reader_next(r, &name, &size, &err) == 1) {
    char buf[4096];
    long k;
    assert_true(n < cap);
    snprintf(out[n].name, sizeof out[n].name, "%s", name);
    dsd_buf_init(&out[n].data);
    while ((k = dsd_archive_reader_read(r, buf, sizeof buf)) > 0)
      dsd_buf_append(&out[n].data, buf, (size_t)k);
    n++;
  }
  dsd_archive_reader_free(r);
  return n;
}

static void entries_free(entry_t *e, size_t n) {
  for (size_t i = 0; i < n; i++)
    dsd_buf_free(&e[i].data);
  free(e);
}

static int index_of(entry_t *e, size_t n, const char *name) {
  for (size_t i = 0; i < n; i++)
    if (!strcmp(e[i].name, name))
      return (int)i;
  return -1;
}

/* The by-hand recipe: a stream's chunks concatenated in name order. */
static void concat_stream(entry_t *e, size_t n, const char *stream, dsd_buf_t *out) {
  size_t sl = strlen(stream);
  unsigned expect = 1;
  for (size_t i = 0; i < n; i++) {
    if (strncmp(e[i].name, stream, sl) == 0 && e[i].name[sl] == '/') {
      assert_int_equal((unsigned)atoi(e[i].name + sl + 1), expect);
      expect++;
      dsd_buf_append(out, e[i].data.data ? e[i].data.data : "", e[i].data.len);
    }
  }
  assert_true(expect > 1);
}

static size_t read_bson_file(const dsd_buf_t *b, bson_t ***docs) {
  bson_reader_t *rd = bson_reader_new_from_data((const uint8_t *)(b->data ? b->data : ""), b->len);
  const bson_t *d;
  bool eof = false;
  size_t n = 0, cap = 0;
  *docs = NULL;
  while ((d = bson_reader_read(rd, &eof)) != NULL) {
    if (n == cap) {
      cap = cap ? cap * 2 : 64;
      *docs = realloc(*docs, cap * sizeof **docs);
    }
    (*docs)[n++] = bson_copy(d);
  }
  assert_true(eof);
  bson_reader_destroy(rd);
  return n;
}

static void free_docs(bson_t **docs, size_t n) {
  for (size_t i = 0; i < n; i++)
    bson_destroy(docs[i]);
  free(docs);
}

/* ------------------------------------------------------------------ */
/* Dump                                                                */

static void test_dump_layout(void **state) {
  dumped_t d;
  entry_t *e = calloc(ECAP, sizeof *e);
  size_t n;
  int ipm, ipd, iem, ied, iam, ijs, iab;
  dsd_buf_t people = DSD_BUF_INIT;
  bson_t **docs;
  json_t *mj, *tables;

  fixture();
  dump("mongodb://u:pw-for-test@h:27017/shop", NULL, NULL, &d);
  assert_int_equal(d.rc, 0);
  mj = json_object_get(d.manifest, "mongo");
  assert_non_null(mj);
  tables = json_object_get(mj, "tables");
  assert_int_equal(json_array_size(tables), 5); /* people empty adults system.js a/b */
  assert_false(json_is_true(json_object_get(mj, "snapshot")));
  assert_string_equal(json_string_value(json_array_get(json_object_get(mj, "databases"), 0)), "shop");
  assert_int_equal(json_array_size(json_object_get(mj, "databases")), 1);
  {
    /* The size estimate covers the dumped collections only. */
    json_int_t want = 0;
    for (size_t i = 0; i < F.n; i++)
      if (!strcmp(F.c[i].db, "shop") && strcmp(F.c[i].name, "system.views") != 0)
        for (size_t k = 0; k < F.c[i].ndocs; k++)
          want += F.c[i].docs[k]->len;
    assert_true(want > 0);
    assert_int_equal(json_integer_value(json_object_get(mj, "est_bytes")), want);
  }
  assert_null(strstr(F.calls.data, "crm"));
  assert_null(strstr(F.calls.data, "listDatabases"));

  n = entries(&d, e, ECAP);
  assert_string_equal(e[n - 1].name, "summary.json");
  ipm = index_of(e, n, "mongo/shop/people.metadata.json");
  ipd = index_of(e, n, "mongo/shop/people.bson/000001");
  iem = index_of(e, n, "mongo/shop/empty.metadata.json");
  ied = index_of(e, n, "mongo/shop/empty.bson/000001");
  iam = index_of(e, n, "mongo/shop/adults.metadata.json");
  ijs = index_of(e, n, "mongo/shop/system.js.bson/000001");
  iab = index_of(e, n, "mongo/shop/a%2Fb.bson/000001");
  assert_true(ipm >= 0 && ipd > ipm);
  assert_true(iem >= 0 && ied == iem + 1);
  assert_int_equal(e[ied].data.len, 0); /* an empty collection: one empty chunk */
  assert_true(ijs > 0 && iab > 0);
  /* The view comes after every collection and has no data stream. */
  assert_true(iam > ipd && iam > ied && iam > ijs && iam > iab);
  assert_int_equal(index_of(e, n, "mongo/shop/adults.bson/000001"), -1);
  assert_int_equal(index_of(e, n, "mongo/shop/system.views.metadata.json"), -1);
  assert_true(index_of(e, n, "mongo/shop/people.bson/000050") > 0); /* many chunks */

  /* The metadata, as mongodump writes it. */
  {
    dsd__mongo_meta_t m;
    dsd_err_t err = {0};
    bson_t *meta;
    bson_iter_t it;
    bson_error_t be;
    assert_int_equal(dsd__mongo_meta_parse(e[ipm].data.data, e[ipm].data.len, &m, &err), 0);
    assert_string_equal(m.name, "people");
    assert_string_equal(m.type, "collection");
    assert_int_equal(bson_count_keys(&m.indexes), 2); /* _id_ left to the server */
    dsd__mongo_meta_free(&m);
    meta = bson_new_from_json((const uint8_t *)e[ipm].data.data, (ssize_t)e[ipm].data.len, &be);
    assert_non_null(meta);
    assert_true(bson_iter_init_find(&it, meta, "uuid"));
    assert_string_equal(bson_iter_utf8(&it, NULL), "0123456789abcdef0123456789abcdef");
    assert_true(bson_iter_init_find(&it, meta, "indexes"));
    {
      uint32_t len;
      const uint8_t *data;
      bson_t arr;
      bson_iter_array(&it, &len, &data);
      bson_init_static(&arr, data, len);
      assert_int_equal(bson_count_keys(&arr), 3); /* listed as the server lists them */
    }
    bson_destroy(meta);
    assert_non_null(strstr(e[iam].data.data, "\"viewOn\" : \"people\""));
  }

  /* people.bson = the chunks concatenated, read as mongorestore would. */
  concat_stream(e, n, "mongo/shop/people.bson", &people);
  assert_int_equal(read_bson_file(&people, &docs), NPEOPLE);
  for (int i = 0; i < NPEOPLE; i++)
    assert_true(bson_equal(docs[i], F.c[0].docs[i]));
  free_docs(docs, NPEOPLE);
  dsd_buf_free(&people);

  /* The summary counts documents as rows. */
  {
    json_t *s = json_loadb(e[n - 1].data.data, e[n - 1].data.len, 0, NULL);
    json_t *st = json_object_get(json_object_get(s, "streams"), "mongo/shop/people.bson");
    assert_non_null(st);
    assert_int_equal(json_integer_value(json_object_get(st, "rows")), NPEOPLE);
    json_decref(s);
  }
  entries_free(e, n);
  dumped_free(&d);
  fake_reset();
}

static void test_dump_all_databases_and_snapshot(void **state) {
  dumped_t d;
  entry_t *e = calloc(ECAP, sizeof *e);
  size_t n;
  json_t *dbs;

  fixture();
  F.snapshot_ok = true;
  dump("mongodb://u:pw-for-test@h1,h2/?replicaSet=rs0", NULL, NULL, &d);
  assert_int_equal(d.rc, 0);
  dbs = json_object_get(json_object_get(d.manifest, "mongo"), "databases");
  assert_int_equal(json_array_size(dbs), 2);
  assert_string_equal(json_string_value(json_array_get(dbs, 0)), "crm");
  assert_string_equal(json_string_value(json_array_get(dbs, 1)), "shop");
  assert_true(json_is_true(json_object_get(json_object_get(d.manifest, "mongo"), "snapshot")));
  assert_true(F.snapshot_begun);
  assert_int_equal(F.reads_before_snapshot, 0);
  assert_null(strstr(F.calls.data, "listCollections admin"));
  assert_null(strstr(F.calls.data, "listCollections local"));
  assert_null(strstr(F.calls.data, "listCollections config"));
  n = entries(&d, e, ECAP);
  assert_true(index_of(e, n, "mongo/crm/leads.bson/000001") > 0);
  assert_true(index_of(e, n, "mongo/shop/people.bson/000001") > 0);
  entries_free(e, n);
  dumped_free(&d);
  fake_reset();
}

static void test_dump_anonymized(void **state) {
  dumped_t d;
  entry_t *e = calloc(ECAP, sizeof *e);
  size_t n;
  dsd_buf_t people = DSD_BUF_INIT;
  bson_t **docs;
  bson_iter_t it, f;

  fixture();
  dump("mongodb://h/shop",
       "{\"tables\": {\"shop.people\": {\"email\": \"email\", \"items.sku\": \"hash\"}}}", NULL,
       &d);
  assert_int_equal(d.rc, 0);
  n = entries(&d, e, ECAP);
  concat_stream(e, n, "mongo/shop/people.bson", &people);
  assert_int_equal(read_bson_file(&people, &docs), NPEOPLE);
  for (int i = 0; i < NPEOPLE; i++) {
    const char *email;
    assert_true(bson_iter_init_find(&it, docs[i], "_id"));
    assert_int_equal(bson_iter_int32(&it), i);
    assert_true(bson_iter_init_find(&it, docs[i], "email"));
    email = bson_iter_utf8(&it, NULL);
    assert_null(strstr(email, "corp.example"));
    assert_non_null(strstr(email, "@example.com"));
    assert_true(bson_iter_init(&it, docs[i]));
    assert_true(bson_iter_find_descendant(&it, "items.1.sku", &f));
    assert_true(BSON_ITER_HOLDS_UTF8(&f));
    assert_null(strstr(bson_iter_utf8(&f, NULL), "SKU-"));
    assert_true(bson_iter_init(&it, docs[i]));
    assert_true(bson_iter_find_descendant(&it, "items.1.qty", &f));
    assert_int_equal(bson_iter_int32(&f), 2);
  }
  /* Distinct emails stay distinct (unique index survives). */
  {
    bson_iter_t a, b;
    bson_iter_init_find(&a, docs[1], "email");
    bson_iter_init_find(&b, docs[2], "email");
    assert_string_not_equal(bson_iter_utf8(&a, NULL), bson_iter_utf8(&b, NULL));
  }
  free_docs(docs, NPEOPLE);
  dsd_buf_free(&people);
  entries_free(e, n);
  dumped_free(&d);

  /* A rule on a collection that is not there fails before any read. */
  fixture();
  dump("mongodb://h/shop", "{\"tables\": {\"shop.peeple\": {\"email\": \"email\"}}}", NULL, &d);
  assert_int_equal(d.rc, DSD_ENOTFOUND);
  assert_non_null(strstr(d.err.msg, "shop.peeple"));
  assert_null(strstr(F.calls.data, "find "));
  dumped_free(&d);
  fake_reset();
}

static void test_dump_cancel_and_error(void **state) {
  dumped_t d;
  atomic_int cancel = 0;

  fixture();
  F.cancel = &cancel;
  F.cancel_after = 100;
  dump("mongodb://h/shop", NULL, &cancel, &d);
  assert_int_equal(d.rc, DSD_ECANCELED);
  assert_true(F.read_count < 200);
  dumped_free(&d);

  fixture();
  F.fail_find = "people";
  dump("mongodb://h/shop", NULL, NULL, &d);
  assert_int_equal(d.rc, DSD_EDB);
  assert_non_null(strstr(d.err.msg, "shop.people"));
  assert_non_null(strstr(d.err.msg, "cursor killed"));
  dumped_free(&d);
  fake_reset();
}

/* ------------------------------------------------------------------ */
/* Restore                                                             */

static int restore_to(dumped_t *d, const char *uri, int clean, atomic_int *cancel,
                      dsd_err_t *err) {
  mem_src_t src;
  memset(&src, 0, sizeof src);
  src.base.ops = &mem_src_ops;
  src.data = d->sink.out.data;
  src.len = d->sink.out.len;
  dsd_archive_reader_t *r = NULL;
  dsd_restore_ctx_t ctx = {0};
  int rc;
  assert_int_equal(dsd_archive_reader_open(&src.base, &r, err), 0);
  ctx.uri = uri;
  ctx.clean = clean;
  ctx.io.cancel = cancel;
  rc = dsd__mongo_restore_ops(&fake_ops, &ctx, r, err);
  dsd_archive_reader_free(r);
  return rc;
}

static int restore(dumped_t *d, int clean, atomic_int *cancel, dsd_err_t *err) {
  return restore_to(d, "mongodb://u:pw-for-test@target/", clean, cancel, err);
}

/* Keeps only the source's documents of shop.people for comparison. */
static bson_t **source_people(size_t *n) {
  bson_t **docs = calloc(NPEOPLE, sizeof *docs);
  for (int i = 0; i < NPEOPLE; i++)
    docs[i] = person(i);
  *n = NPEOPLE;
  return docs;
}

static void test_restore_clean(void **state) {
  dumped_t d;
  dsd_err_t err = {0};
  fcoll_t *c;
  size_t n;
  bson_t **want = source_people(&n);
  const char *calls;
  bson_iter_t it;

  fixture();
  dump("mongodb://h/shop", NULL, NULL, &d);
  assert_int_equal(d.rc, 0);

  /* The target: an older people with other documents and a stale
   * index, an unrelated collection that must survive. */
  fake_reset();
  c = fadd("shop", "people", NULL);
  fdoc(c, BCON_NEW("_id", BCON_INT32(99999), "old", BCON_BOOL(true)));
  findex(c, "{\"v\": 2, \"key\": {\"old\": 1}, \"name\": \"old_1\"}");
  c = fadd("shop", "keepme", NULL);
  fdoc(c, BCON_NEW("_id", BCON_INT32(1)));

  assert_int_equal(restore(&d, 1, NULL, &err), 0);
  calls = F.calls.data;
  /* drop and create come before the first insert; indexes after the
   * last; the view after everything. */
  {
    const char *drop = strstr(calls, "drop shop.people;");
    const char *create = strstr(calls, "create shop.people;");
    const char *ins = strstr(calls, "insert shop.people ");
    const char *ix = strstr(calls, "createIndexes shop.people 2;");
    const char *vdrop = strstr(calls, "drop shop.adults;");
    const char *view = strstr(calls, "create shop.adults;");
    const char *last_ins = ins;
    for (const char *p = ins; (p = strstr(p + 1, "insert ")) != NULL;)
      last_ins = p;
    assert_non_null(drop);
    assert_non_null(create);
    assert_non_null(ins);
    assert_non_null(ix);
    assert_non_null(view);
    assert_non_null(vdrop);
    assert_true(drop < create && create < ins && last_ins < ix && ix < view && vdrop < view);
    assert_null(strstr(calls, "createIndexes shop.empty"));
  }
  c = fget("shop", "people");
  assert_non_null(c);
  assert_int_equal(c->ndocs, n);
  for (size_t i = 0; i < n; i++)
    assert_true(bson_equal(c->docs[i], want[i]));
  /* Options went to create; indexes without _id_. */
  assert_non_null(c->created_opts);
  assert_true(bson_iter_init(&it, c->created_opts));
  assert_true(bson_iter_find_descendant(&it, "validator.email.$type", &it));
  assert_int_equal(bson_count_keys(&c->indexes), 2);
  assert_true(bson_iter_init(&it, &c->indexes));
  assert_true(bson_iter_find_descendant(&it, "0.name", &it));
  assert_string_equal(bson_iter_utf8(&it, NULL), "email_1");
  /* Batches: bounded, and as few as the bound allows. */
  assert_int_equal(F.max_batch_docs, DSD__MONGO_BATCH_DOCS);
  assert_true(F.max_batch_bytes <= DSD__MONGO_BATCH_BYTES);
  if (!strstr(calls, "insert shop.people 1000;insert shop.people 1000;insert shop.people 500;"))
    fail_msg("calls: %s", calls);
  /* Every other collection; the view with its definition. */
  assert_non_null(fget("shop", "empty"));
  assert_int_equal(fget("shop", "empty")->ndocs, 0);
  assert_int_equal(fget("shop", "system.js")->ndocs, 1);
  assert_int_equal(fget("shop", "a/b")->ndocs, 1);
  assert_int_equal(fget("shop", "keepme")->ndocs, 1);
  c = fget("shop", "adults");
  assert_non_null(c);
  assert_true(bson_iter_init(&it, c->created_opts));
  assert_true(bson_iter_find_descendant(&it, "viewOn", &it));
  assert_string_equal(bson_iter_utf8(&it, NULL), "people");
  assert_null(fget("shop", "system.views"));

  free_docs(want, n);
  dumped_free(&d);
  fake_reset();
}

static void test_restore_no_clean(void **state) {
  dumped_t d;
  dsd_err_t err = {0};
  fcoll_t *c;

  fixture();
  dump("mongodb://h/crm", NULL, NULL, &d);
  assert_int_equal(d.rc, 0);
  fake_reset();
  c = fadd("crm", "leads", NULL);
  fdoc(c, BCON_NEW("_id", BCON_INT32(2), "who", "y"));
  assert_int_equal(restore(&d, 0, NULL, &err), 0);
  assert_null(strstr(F.calls.data, "drop "));
  c = fget("crm", "leads");
  assert_int_equal(c->ndocs, 2); /* kept and added to */
  dumped_free(&d);
  fake_reset();
}

static void test_restore_into_uri_database(void **state) {
  dumped_t d;
  dsd_err_t err = {0};

  /* One database in the archive, one named by the target URI: renamed. */
  fixture();
  dump("mongodb://h/shop", NULL, NULL, &d);
  assert_int_equal(d.rc, 0);
  fake_reset();
  assert_int_equal(restore_to(&d, "mongodb://u:pw-for-test@target/copy", 1, NULL, &err), 0);
  assert_non_null(fget("copy", "people"));
  assert_int_equal(fget("copy", "people")->ndocs, NPEOPLE);
  assert_non_null(fget("copy", "adults"));
  assert_null(fget("shop", "people"));
  assert_null(strstr(F.calls.data, " shop."));
  dumped_free(&d);

  /* Several databases: they keep their names. */
  fixture();
  dump("mongodb://h/", NULL, NULL, &d);
  assert_int_equal(d.rc, 0);
  fake_reset();
  assert_int_equal(restore_to(&d, "mongodb://u:pw-for-test@target/copy", 1, NULL, &err), 0);
  assert_non_null(fget("shop", "people"));
  assert_non_null(fget("crm", "leads"));
  assert_null(fget("copy", "people"));
  dumped_free(&d);
  fake_reset();
}

static void test_restore_batch_bytes(void **state) {
  dumped_t d;
  dsd_err_t err = {0};
  fcoll_t *c;
  char *big = malloc((1u << 20) + 1);

  /* 20 documents of 1 MiB: a batch holds at most 8 MiB. */
  fake_reset();
  memset(big, 'z', 1u << 20);
  big[1u << 20] = '\0';
  c = fadd("big", "blobs", NULL);
  for (int i = 0; i < 20; i++)
    fdoc(c, BCON_NEW("_id", BCON_INT32(i), "b", BCON_UTF8(big)));
  free(big);
  dump("mongodb://h/big", NULL, NULL, &d);
  assert_int_equal(d.rc, 0);
  fake_reset();
  assert_int_equal(restore(&d, 1, NULL, &err), 0);
  c = fget("big", "blobs");
  assert_int_equal(c->ndocs, 20);
  assert_true(F.max_batch_bytes <= DSD__MONGO_BATCH_BYTES);
  assert_true(F.max_batch_bytes > DSD__MONGO_BATCH_BYTES / 2);
  assert_int_equal(F.batches, 3); /* 7 + 7 + 6 */
  for (int i = 0; i < 20; i++) {
    bson_iter_t it;
    assert_true(bson_iter_init_find(&it, c->docs[i], "_id"));
    assert_int_equal(bson_iter_int32(&it), i);
  }
  dumped_free(&d);
  fake_reset();
}

static void test_restore_cancel_and_corrupt(void **state) {
  dumped_t d;
  dsd_err_t err = {0};
  atomic_int cancel = 0;

  fixture();
  dump("mongodb://h/shop", NULL, NULL, &d);
  assert_int_equal(d.rc, 0);
  fake_reset();
  F.cancel = &cancel;
  F.cancel_after = 1000;
  assert_int_equal(restore(&d, 1, &cancel, &err), DSD_ECANCELED);
  assert_non_null(strstr(err.msg, "canceled"));
  assert_non_null(strstr(err.msg, "HINT: "));
  assert_true(F.insert_count < NPEOPLE);
  assert_null(strstr(F.calls.data, "createIndexes"));

  /* One byte of a document flipped (no compression: the tar carries the
   * bytes as they are): the summary's sha256 no longer matches. */
  fake_reset();
  dsd_err_clear(&err);
  {
    char *p = memmem(d.sink.out.data, d.sink.out.len, "user1234@corp", 13);
    assert_non_null(p);
    p[4] = '9';
  }
  assert_int_equal(restore(&d, 1, NULL, &err), DSD_EPROTO);
  assert_non_null(strstr(err.msg, "shop.people"));
  assert_non_null(strstr(err.msg, "summary.json"));
  assert_null(strstr(F.calls.data, "createIndexes"));
  dumped_free(&d);
  fake_reset();
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_dump_layout),
      cmocka_unit_test(test_dump_all_databases_and_snapshot),
      cmocka_unit_test(test_dump_anonymized),
      cmocka_unit_test(test_dump_cancel_and_error),
      cmocka_unit_test(test_restore_clean),
      cmocka_unit_test(test_restore_no_clean),
      cmocka_unit_test(test_restore_into_uri_database),
      cmocka_unit_test(test_restore_batch_bytes),
      cmocka_unit_test(test_restore_cancel_and_corrupt),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
