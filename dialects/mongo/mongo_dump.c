/*
 * mongo_dump.c - the dump side of the MongoDB dialect.
 *
 * What it writes follows the archive layout in mongo.h.
 *
 *  - prepare: connects (through dsd__mongo_ops_t), reads the server
 *    version and topology, picks the databases (the one the URI names, or
 *    every listable one except admin, local and config), lists their
 *    collections and views with options and indexes, checks the
 *    anonymization rules against "db.collection" names and builds one
 *    plan per collection, and fills manifest["mongo"]. No data has moved.
 *  - run: on a replica set or sharded cluster of MongoDB 5.0 or later, a
 *    session with snapshot: true is started, so every find reads at the
 *    cluster time the first read picked; elsewhere collections are read one
 *    after the other, each as of its own read (README says what that
 *    guarantees). For each collection: its metadata.json entry, then its
 *    documents, streamed cursor batch by cursor batch into the archive
 *    stream (anonymized document by document when a plan applies). Views
 *    get a metadata entry only.
 *
 * One connection reads one collection at a time: libmongoc clients are not
 * thread-safe and a snapshot session belongs to one client; the server
 * parallelizes each cursor's batches itself.
 */
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/buf.h"
#include "dialects/mongo/mongo.h"

#ifdef DSD_HAVE_ANONYMIZE
#include "anonymize/anonymize.h"
#endif

#define DSD__MONGO_PROGRESS_EVERY (1u << 20)

typedef struct dsd__mongo_coll {
  char *db, *name;
  const char *type; /* borrowed from info */
  bson_t info;      /* the listCollections document */
  bson_t indexes;   /* array of listIndexes documents */
  struct dsd_anon_table_plan *plan; /* NULL: documents copied as they are */
} dsd__mongo_coll_t;

typedef struct dsd__mongo_dump {
  const dsd__mongo_ops_t *ops;
  void *conn;
  dsd__mongo_server_t server;
  bool snapshot;
  dsd__mongo_coll_t *colls;
  size_t ncolls, cap;
  const dsd_dump_ctx_t *ctx;
  uint64_t bytes_done, rows_done, bytes_total;
  uint32_t tables_done;
} dsd__mongo_dump_t;

static void dsd__mlog(const dsd_dump_ctx_t *ctx, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void dsd__mlog(const dsd_dump_ctx_t *ctx, const char *fmt, ...) {
  char line[1024];
  va_list ap;
  if (ctx == NULL || ctx->io.log == NULL)
    return;
  va_start(ap, fmt);
  vsnprintf(line, sizeof line, fmt, ap);
  va_end(ap);
  ctx->io.log(ctx->io.data, line);
}

static void dsd__mprogress(dsd__mongo_dump_t *st, const char *phase, const char *current) {
  dsd_progress_t p = {0};
  if (st->ctx == NULL || st->ctx->io.progress == NULL)
    return;
  p.phase = phase;
  p.current = current;
  p.bytes_done = st->bytes_done;
  /* The estimate was passed (documents written meanwhile): unknown. */
  p.bytes_total = st->bytes_total >= st->bytes_done ? st->bytes_total : 0;
  p.rows_done = st->rows_done;
  p.tables_done = st->tables_done;
  p.tables_total = (uint32_t)st->ncolls;
  st->ctx->io.progress(st->ctx->io.data, &p);
}

static bool dsd__mcanceled(const dsd_dump_ctx_t *ctx) {
  return ctx && ctx->io.cancel && atomic_load(ctx->io.cancel);
}

void dsd__mongo_dump_free(void *state) {
  dsd__mongo_dump_t *st = state;
  if (st == NULL)
    return;
  for (size_t i = 0; i < st->ncolls; i++) {
    dsd__mongo_coll_t *c = &st->colls[i];
#ifdef DSD_HAVE_ANONYMIZE
    dsd_anon_plan_free(c->plan);
#endif
    bson_free(c->db);
    bson_free(c->name);
    bson_destroy(&c->info);
    bson_destroy(&c->indexes);
  }
  free(st->colls);
  if (st->conn)
    st->ops->disconnect(st->conn);
  free(st);
}

/* Adds the collections and views of db to st. */
static int dsd__list_db(dsd__mongo_dump_t *st, const char *db, dsd_err_t *err) {
  bson_t list = BSON_INITIALIZER;
  bson_iter_t it, f;
  size_t before = st->ncolls;
  int rc;

  rc = st->ops->list_collections(st->conn, db, &list, err);
  if (rc)
    goto cleanup;
  bson_iter_init(&it, &list);
  while (bson_iter_next(&it)) {
    const uint8_t *data;
    uint32_t len;
    bson_t info;
    const char *name;
    dsd__mongo_coll_t *c;

    if (!BSON_ITER_HOLDS_DOCUMENT(&it))
      continue;
    bson_iter_document(&it, &len, &data);
    if (!bson_init_static(&info, data, len) || !bson_iter_init_find(&f, &info, "name") ||
        !BSON_ITER_HOLDS_UTF8(&f))
      continue;
    name = bson_iter_utf8(&f, NULL);
    if (!dsd__mongo_coll_selected(name))
      continue;
    if (st->ncolls == st->cap) {
      size_t ncap = st->cap ? st->cap * 2 : 16;
      dsd__mongo_coll_t *n = realloc(st->colls, ncap * sizeof *n);
      if (n == NULL) {
        rc = dsd_err_set(err, DSD_ENOMEM, "out of memory");
        goto cleanup;
      }
      st->colls = n;
      st->cap = ncap;
    }
    c = &st->colls[st->ncolls++];
    memset(c, 0, sizeof *c);
    bson_copy_to(&info, &c->info);
    bson_init(&c->indexes);
    c->db = bson_strdup(db);
    c->name = bson_strdup(name);
    c->type = dsd__mongo_coll_type(&c->info);
    if (strcmp(c->type, "view") != 0) {
      uint64_t size = 0;
      if ((rc = st->ops->list_indexes(st->conn, db, name, &c->indexes, err)))
        goto cleanup;
      st->ops->coll_size(st->conn, db, name, &size, err);
      st->bytes_total += size;
    }
  }
  if (st->ncolls == before)
    /* MongoDB cannot tell a missing database from an empty one: say so,
     * in case the name has a typo. */
    dsd__mlog(st->ctx, "database %s has no collections (or does not exist)", db);
cleanup:
  bson_destroy(&list);
  return rc;
}

#ifdef DSD_HAVE_ANONYMIZE
static int dsd__plan(dsd__mongo_dump_t *st, const dsd_anon_rules_t *rules, dsd_err_t *err) {
  const char **names = calloc(st->ncolls + 1, sizeof *names);
  char **owned = calloc(st->ncolls + 1, sizeof *owned);
  int rc = 0;

  if (names == NULL || owned == NULL) {
    rc = dsd_err_set(err, DSD_ENOMEM, "out of memory");
    goto cleanup;
  }
  for (size_t i = 0; i < st->ncolls; i++) {
    owned[i] = bson_strdup_printf("%s.%s", st->colls[i].db, st->colls[i].name);
    names[i] = owned[i];
  }
  rc = dsd_anon_rules_check_tables(rules, names, st->ncolls, err);
  if (rc)
    goto cleanup;
  for (size_t i = 0; i < st->ncolls && rc == 0; i++) {
    if (strcmp(st->colls[i].type, "view") == 0)
      continue; /* a view's documents are not dumped */
    /* Schemaless: field rules are checked against each value's type. */
    rc = dsd_anon_plan_table(rules, names[i], NULL, 0, &st->colls[i].plan, err);
  }
cleanup:
  if (owned)
    for (size_t i = 0; i < st->ncolls; i++)
      bson_free(owned[i]);
  free(owned);
  free(names);
  return rc;
}
#endif

static json_t *dsd__manifest_mongo(const dsd__mongo_dump_t *st, char **dbs, size_t ndbs) {
  json_t *m = json_object(), *tables = json_array(), *jdbs = json_array();
  dsd_buf_t name = DSD_BUF_INIT;
  if (m == NULL || tables == NULL || jdbs == NULL)
    goto fail;
  for (size_t i = 0; i < ndbs; i++)
    json_array_append_new(jdbs, json_string(dbs[i]));
  for (size_t i = 0; i < st->ncolls; i++) {
    const dsd__mongo_coll_t *c = &st->colls[i];
    json_t *t = json_object();
    if (t == NULL || dsd__mongo_entry_name(c->db, c->name, "", &name) != 0)
      goto fail;
    json_object_set_new(t, "db", json_string(c->db));
    json_object_set_new(t, "name", json_string(c->name));
    json_object_set_new(t, "type", json_string(c->type));
    json_object_set_new(t, "entry", json_string(name.data));
    if (json_array_append_new(tables, t))
      goto fail;
  }
  json_object_set_new(m, "server_version", json_string(st->server.version));
  json_object_set_new(m, "max_wire_version", json_integer(st->server.max_wire));
  json_object_set_new(m, "snapshot", json_boolean(st->snapshot));
  json_object_set_new(m, "est_bytes", json_integer((json_int_t)st->bytes_total));
  json_object_set_new(m, "databases", jdbs);
  json_object_set_new(m, "tables", tables);
  dsd_buf_free(&name);
  return m;
fail:
  dsd_buf_free(&name);
  json_decref(m);
  json_decref(tables);
  json_decref(jdbs);
  return NULL;
}

int dsd__mongo_dump_prepare_ops(const dsd__mongo_ops_t *ops, const dsd_dump_ctx_t *ctx,
                                json_t *manifest, void **state, dsd_err_t *err) {
  dsd__mongo_dump_t *st = calloc(1, sizeof *st);
  char *db = NULL, **dbs = NULL;
  char *one[2] = {NULL, NULL};
  size_t ndbs = 0;
  json_t *mj;
  int rc;

  *state = NULL;
  if (st == NULL)
    return dsd_err_set(err, DSD_ENOMEM, "out of memory");
  st->ops = ops;
  st->ctx = ctx;
  if ((rc = dsd__mongo_uri_db(ctx->uri, &db, err)))
    goto cleanup;
  if ((rc = ops->connect(ctx->uri, &st->conn, err)))
    goto cleanup;
  if ((rc = ops->server_info(st->conn, &st->server, err)))
    goto cleanup;
  st->snapshot = st->server.snapshot_ok;
  dsd__mlog(ctx, "connected to mongodb %s; %s", st->server.version,
            st->snapshot ? "reading through a snapshot session"
                         : "no snapshot reads here (standalone or before 5.0): collections "
                           "are read one after the other");
  if (db != NULL) {
    one[0] = db;
    dbs = one;
  } else {
    char **all = NULL;
    if ((rc = ops->list_databases(st->conn, &all, err)))
      goto cleanup;
    /* Keep the selected names at the front of the same vector. */
    for (size_t i = 0; all[i]; i++) {
      if (dsd__mongo_db_selected(all[i]))
        all[ndbs++] = all[i];
      else
        bson_free(all[i]);
    }
    all[ndbs] = NULL;
    dbs = all;
  }
  for (ndbs = 0; dbs[ndbs]; ndbs++)
    if ((rc = dsd__list_db(st, dbs[ndbs], err)))
      goto cleanup;
  dsd__mlog(ctx, "%zu databases, %zu collections and views to dump", ndbs, st->ncolls);
#ifdef DSD_HAVE_ANONYMIZE
  if (ctx->anonymize != NULL && (rc = dsd__plan(st, ctx->anonymize, err)))
    goto cleanup;
#else
  if (ctx->anonymize != NULL) {
    rc = dsd_err_set(err, DSD_EUNSUPPORTED, "this build has no anonymizer");
    goto cleanup;
  }
#endif
  mj = dsd__manifest_mongo(st, dbs, ndbs);
  if (mj == NULL || json_object_set_new(manifest, "mongo", mj) != 0) {
    rc = dsd_err_set(err, DSD_ENOMEM, "out of memory");
    goto cleanup;
  }
  if (st->snapshot && (rc = ops->snapshot_begin(st->conn, err)))
    goto cleanup;
  *state = st;
  st = NULL;
cleanup:
  if (dbs != NULL && dbs != one)
    bson_strfreev(dbs);
  bson_free(db);
  dsd__mongo_dump_free(st);
  return rc;
}

/* The archive writer's own error (sticky, the first one) when it has one:
 * it says more than the code of a failed write. Returns the code set. */
static int dsd__writer_fail(dsd_archive_writer_t *w, int rc, const dsd__mongo_coll_t *c,
                            dsd_err_t *err) {
  const dsd_err_t *we = dsd_archive_writer_error(w);
  if (we != NULL && we->code != 0)
    return dsd_err_set(err, we->code, "%s", dsd_err_msg(we));
  return dsd_err_set(err, rc, "cannot write the archive stream of %s.%s", c->db, c->name);
}

/* Streams one collection's documents into the archive. */
static int dsd__dump_coll(dsd__mongo_dump_t *st, dsd__mongo_coll_t *c, dsd_archive_writer_t *w,
                          dsd_buf_t *name, dsd_err_t *err) {
  dsd_archive_stream_t *s = NULL;
  void *cur = NULL;
  const bson_t *doc;
  dsd_buf_t scratch = DSD_BUF_INIT;
  uint64_t since = 0, rows = 0;
  int rc, more;

  if ((rc = dsd__mongo_entry_name(c->db, c->name, ".bson", name)))
    return dsd_err_set(err, rc, "out of memory");
  if ((rc = dsd_archive_stream_open(w, name->data, &s))) {
    rc = dsd__writer_fail(w, rc, c, err);
    goto cleanup;
  }
  if ((rc = st->ops->find_open(st->conn, c->db, c->name, &cur, err)))
    goto cleanup;
  while ((more = st->ops->find_next(cur, &doc, err)) > 0) {
    if (c->plan != NULL) {
      bson_t out = BSON_INITIALIZER;
      rc = dsd__mongo_anon_doc(c->plan, doc, &out, &scratch, err);
      if (rc == 0)
        rc = dsd_archive_stream_write(s, bson_get_data(&out), out.len);
      else
        dsd_err_prefix(err, "collection %s.%s", c->db, c->name);
      since += out.len;
      bson_destroy(&out);
    } else {
      rc = dsd_archive_stream_write(s, bson_get_data(doc), doc->len);
      since += doc->len;
    }
    if (rc && err->code == 0)
      rc = dsd__writer_fail(w, rc, c, err);
    if (rc)
      goto cleanup;
    rows++;
    if (since >= DSD__MONGO_PROGRESS_EVERY) {
      st->bytes_done += since;
      since = 0;
      dsd__mprogress(st, "data", c->name);
    }
    if (dsd__mcanceled(st->ctx)) {
      rc = dsd_err_set(err, DSD_ECANCELED, "dump canceled");
      goto cleanup;
    }
  }
  if (more < 0) {
    rc = more;
    dsd_err_prefix(err, "collection %s.%s", c->db, c->name);
    goto cleanup;
  }
  st->bytes_done += since;
  st->rows_done += rows;
  dsd_archive_stream_add_rows(s, rows);
  rc = dsd_archive_stream_close(s);
  s = NULL;
  if (rc) {
    rc = dsd__writer_fail(w, rc, c, err);
    goto cleanup;
  }
  dsd__mlog(st->ctx, "collection %s.%s: %llu documents", c->db, c->name,
            (unsigned long long)rows);
cleanup:
  /* A stream left open after a failure is not closed (that would write
   * its partial chunk): the pipeline aborts the writer, which discards
   * open streams. */
  if (cur)
    st->ops->find_close(cur);
  dsd_buf_free(&scratch);
  return rc;
}

int dsd__mongo_dump_run(void *state, const dsd_dump_ctx_t *ctx, dsd_archive_writer_t *w,
                        dsd_err_t *err) {
  dsd__mongo_dump_t *st = state;
  dsd_buf_t name = DSD_BUF_INIT;
  char *json = NULL;
  int rc = 0;

  st->ctx = ctx;
  dsd__mprogress(st, "data", NULL);
  /* Collections first, then views: a view's metadata is only read back
   * after every collection exists. */
  for (int pass = 0; pass < 2 && rc == 0; pass++) {
    for (size_t i = 0; i < st->ncolls && rc == 0; i++) {
      dsd__mongo_coll_t *c = &st->colls[i];
      bool view = strcmp(c->type, "view") == 0;
      if (view != (pass == 1))
        continue;
      if (dsd__mcanceled(ctx)) {
        rc = dsd_err_set(err, DSD_ECANCELED, "dump canceled");
        break;
      }
      if ((rc = dsd__mongo_metadata_json(&c->info, &c->indexes, &json, err)))
        break;
      if ((rc = dsd__mongo_entry_name(c->db, c->name, ".metadata.json", &name))) {
        rc = dsd_err_set(err, rc, "out of memory");
        break;
      }
      rc = dsd_archive_write_entry(w, name.data, json, strlen(json));
      bson_free(json);
      json = NULL;
      if (rc) {
        const dsd_err_t *we = dsd_archive_writer_error(w);
        rc = dsd_err_set(err, rc, "cannot write %s: %s", name.data,
                         we ? dsd_err_msg(we) : dsd_strerror(rc));
        break;
      }
      if (!view && (rc = dsd__dump_coll(st, c, w, &name, err)))
        break;
      st->tables_done++;
      dsd__mprogress(st, "data", c->name);
    }
  }
  if (rc == 0)
    dsd__mprogress(st, "done", NULL);
  dsd_buf_free(&name);
  return rc;
}
