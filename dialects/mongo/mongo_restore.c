/*
 * mongo_restore.c - the MongoDB dialect's restore side.
 *
 * dsd__mongo_restore_ops() reads the mongo entries of a dump archive
 * (layout in mongo.h) in archive order:
 *
 *   mongo/<db>/<c>.metadata.json   a collection: with clean, drop it; then
 *                                  create it with its options (a
 *                                  collection that already exists is kept
 *                                  when clean is off). Its index specs are
 *                                  kept for the end. A view is kept for
 *                                  the end.
 *   mongo/<db>/<c>.bson/NNNNNN     the collection's documents: the chunks
 *                                  are split back into documents (one may
 *                                  straddle chunks) and inserted with
 *                                  unordered insert_many batches of at most
 *                                  DSD__MONGO_BATCH_DOCS documents and
 *                                  DSD__MONGO_BATCH_BYTES bytes
 *   summary.json                   every stream is checked against it
 *                                  (bytes, sha256, documents); then the
 *                                  indexes are built (faster after the
 *                                  data, as mongorestore does) and the
 *                                  views created (dropped first with clean)
 *
 * When the target URI names a database and the archive holds one
 * database, the collections go into the URI's database (a service
 * instance's credentials reach their own database only); otherwise every
 * database keeps its name.
 *
 * The server is reached only through dsd__mongo_ops_t (tests use a fake
 * sink). Memory: one batch being filled per stream (streams are written one
 * after the other by the dump, so in practice one) plus the metadata.
 */
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/buf.h"
#include "core/hash.h"
#include "dialects/mongo/mongo.h"

#define DSD__MR_READ (256u << 10)
#define DSD__MR_NAME 512

typedef struct dsd__mr_coll {
  char *db;
  char entry[DSD__MR_NAME]; /* "mongo/<db>/<escaped>" */
  dsd__mongo_meta_t meta;
  bool view, created;
  /* The data stream. */
  bool seen;
  unsigned last_chunk;
  dsd_sha256_t hash;
  uint64_t bytes;
  dsd__mongo_docsplit_t split;
  /* The batch being filled: documents back to back in buf. */
  dsd_buf_t buf;
  size_t *offs;
  size_t nbatch, capbatch;
  uint64_t inserted;
  struct dsd__mr_coll *next;
} dsd__mr_coll_t;

typedef struct dsd__mr {
  const dsd__mongo_ops_t *ops;
  const dsd_restore_ctx_t *ctx;
  void *conn;
  dsd__mr_coll_t *colls, *last;
  dsd__mr_coll_t *filling; /* the collection whose batch may be non-empty */
  uint64_t bytes_done, rows_done, bytes_total;
  uint32_t tables_done, tables_total;
  unsigned batches;
  char from_db[DSD__MR_NAME]; /* the archive's only database ... */
  char *to_db;                /* ... goes into this one (owned); NULL: kept */
} dsd__mr_t;

static void dsd__mrlog(dsd__mr_t *R, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void dsd__mrlog(dsd__mr_t *R, const char *fmt, ...) {
  char line[1024];
  va_list ap;
  if (R->ctx->io.log == NULL)
    return;
  va_start(ap, fmt);
  vsnprintf(line, sizeof line, fmt, ap);
  va_end(ap);
  R->ctx->io.log(R->ctx->io.data, line);
}

static void dsd__mrprogress(dsd__mr_t *R, const char *phase, const char *current) {
  dsd_progress_t p = {0};
  if (R->ctx->io.progress == NULL)
    return;
  p.phase = phase;
  p.current = current;
  p.bytes_done = R->bytes_done;
  p.bytes_total = R->bytes_total >= R->bytes_done ? R->bytes_total : 0;
  p.rows_done = R->rows_done;
  p.tables_done = R->tables_done;
  p.tables_total = R->tables_total;
  R->ctx->io.progress(R->ctx->io.data, &p);
}

static bool dsd__mrcanceled(const dsd__mr_t *R) {
  return R->ctx->io.cancel && atomic_load(R->ctx->io.cancel);
}

static void dsd__mr_coll_free(dsd__mr_coll_t *c) {
  bson_free(c->db);
  dsd__mongo_meta_free(&c->meta);
  dsd_sha256_free(&c->hash);
  dsd__mongo_docsplit_free(&c->split);
  dsd_buf_free(&c->buf);
  free(c->offs);
  free(c);
}

static dsd__mr_coll_t *dsd__mr_find(dsd__mr_t *R, const char *entry) {
  for (dsd__mr_coll_t *c = R->colls; c; c = c->next)
    if (strcmp(c->entry, entry) == 0)
      return c;
  return NULL;
}

/* "mongo/<db>/<rest>" -> db (unescaped is not needed: database names
 * cannot hold '/' or '%'). */
static int dsd__mr_split(const char *name, char *db, size_t cap) {
  const char *p = name + 6, *slash = strchr(p, '/');
  if (strncmp(name, "mongo/", 6) != 0 || slash == NULL || (size_t)(slash - p) >= cap ||
      slash == p)
    return DSD_EINVAL;
  memcpy(db, p, (size_t)(slash - p));
  db[slash - p] = '\0';
  return 0;
}

/* ------------------------------------------------------------------ */
/* Batches                                                             */

static int dsd__mr_flush(dsd__mr_t *R, dsd__mr_coll_t *c, dsd_err_t *err) {
  bson_t *docs = NULL;
  const bson_t **ptrs = NULL;
  int rc = 0;

  if (c == NULL || c->nbatch == 0)
    return 0;
  /* bson_t is declared 128-byte aligned; calloc only promises 16. */
  docs = aligned_alloc(BSON_ALIGNOF(bson_t), c->nbatch * sizeof *docs);
  ptrs = calloc(c->nbatch, sizeof *ptrs);
  if (docs == NULL || ptrs == NULL) {
    rc = dsd_err_set(err, DSD_ENOMEM, "out of memory");
    goto cleanup;
  }
  for (size_t i = 0; i < c->nbatch; i++) {
    size_t end = i + 1 < c->nbatch ? c->offs[i + 1] : c->buf.len;
    /* Validated by the splitter when it was added. */
    bson_init_static(&docs[i], (const uint8_t *)c->buf.data + c->offs[i], end - c->offs[i]);
    ptrs[i] = &docs[i];
  }
  rc = R->ops->insert_many(R->conn, c->db, c->meta.name, (const bson_t *const *)ptrs, c->nbatch,
                           err);
  if (rc) {
    dsd_err_prefix(err, "collection %s.%s (after %llu documents were inserted)", c->db,
                   c->meta.name, (unsigned long long)c->inserted);
    goto cleanup;
  }
  c->inserted += c->nbatch;
  R->rows_done += c->nbatch;
  R->batches++;
  c->nbatch = 0;
  dsd_buf_reset(&c->buf);
cleanup:
  free(docs);
  free(ptrs);
  return rc;
}

typedef struct dsd__mr_feed {
  dsd__mr_t *R;
  dsd__mr_coll_t *c;
} dsd__mr_feed_t;

static int dsd__mr_add_doc(void *data, const bson_t *doc, dsd_err_t *err) {
  dsd__mr_feed_t *f = data;
  dsd__mr_coll_t *c = f->c;
  int rc;

  /* A batch is sent before it would pass either bound; a document larger
   * than the byte bound goes alone. */
  if (c->nbatch > 0 &&
      (c->nbatch >= DSD__MONGO_BATCH_DOCS || c->buf.len + doc->len > DSD__MONGO_BATCH_BYTES) &&
      (rc = dsd__mr_flush(f->R, c, err)))
    return rc;
  if (c->nbatch == c->capbatch) {
    size_t ncap = c->capbatch ? c->capbatch * 2 : 64;
    size_t *n = realloc(c->offs, ncap * sizeof *n);
    if (n == NULL)
      return dsd_err_set(err, DSD_ENOMEM, "out of memory");
    c->offs = n;
    c->capbatch = ncap;
  }
  c->offs[c->nbatch] = c->buf.len;
  if (dsd_buf_append(&c->buf, bson_get_data(doc), doc->len))
    return dsd_err_set(err, DSD_ENOMEM, "out of memory");
  c->nbatch++;
  return 0;
}

/* ------------------------------------------------------------------ */
/* Entries                                                             */

static int dsd__mr_metadata(dsd__mr_t *R, dsd_archive_reader_t *r, const char *name,
                            uint64_t size, dsd_err_t *err) {
  dsd__mr_coll_t *c = NULL;
  dsd_buf_t json = DSD_BUF_INIT;
  char db[DSD__MR_NAME];
  size_t elen = strlen(name) - strlen(".metadata.json");
  int rc = 0;

  if (dsd__mr_split(name, db, sizeof db) || elen >= DSD__MR_NAME) {
    dsd__mrlog(R, "skipped unexpected archive entry %s", name);
    return 0;
  }
  /* The previous collection's data has ended: send its last batch before
   * touching the next collection, so the target fills collection by
   * collection and an error names the right one. */
  if ((rc = dsd__mr_flush(R, R->filling, err)))
    goto cleanup;
  R->filling = NULL;
  if (size > (64u << 20)) {
    rc = dsd_err_set(err, DSD_EPROTO, "archive entry %s is too large for metadata", name);
    goto cleanup;
  }
  for (;;) {
    char buf[8192];
    long n = dsd_archive_reader_read(r, buf, sizeof buf);
    if (n < 0) {
      const dsd_err_t *re = dsd_archive_reader_error(r);
      rc = dsd_err_set(err, (int)n, "archive entry %s cannot be read (%s)", name,
                       re ? dsd_err_msg(re) : dsd_strerror((int)n));
      goto cleanup;
    }
    if (n == 0)
      break;
    if (dsd_buf_append(&json, buf, (size_t)n)) {
      rc = dsd_err_set(err, DSD_ENOMEM, "out of memory");
      goto cleanup;
    }
  }
  c = calloc(1, sizeof *c);
  if (c == NULL || dsd_sha256_init(&c->hash)) {
    free(c);
    c = NULL;
    rc = dsd_err_set(err, DSD_ENOMEM, "out of memory");
    goto cleanup;
  }
  memcpy(c->entry, name, elen);
  c->entry[elen] = '\0';
  c->db = bson_strdup(R->to_db != NULL && strcmp(db, R->from_db) == 0 ? R->to_db : db);
  if ((rc = dsd__mongo_meta_parse(json.data ? json.data : "", json.len, &c->meta, err))) {
    dsd_err_prefix(err, "archive entry %s", name);
    goto cleanup;
  }
  if (dsd__mr_find(R, c->entry) != NULL) {
    rc = dsd_err_set(err, DSD_EPROTO, "archive entry %s comes twice: the archive is corrupt",
                     name);
    goto cleanup;
  }
  c->view = strcmp(c->meta.type, "view") == 0;
  if (!c->view) {
    bool existed = false;
    if (R->ctx->clean)
      rc = R->ops->drop(R->conn, c->db, c->meta.name, err);
    if (rc == 0)
      rc = R->ops->create(R->conn, c->db, c->meta.name, &c->meta.options, &existed, err);
    if (rc) {
      dsd_err_prefix(err, "collection %s.%s", c->db, c->meta.name);
      goto cleanup;
    }
    c->created = !existed;
    if (existed)
      dsd__mrlog(R, "collection %s.%s exists already; documents are added to it", c->db,
                 c->meta.name);
  }
  /* Kept in archive order: indexes and views are applied in that order. */
  if (R->last)
    R->last->next = c;
  else
    R->colls = c;
  R->last = c;
  c = NULL;
cleanup:
  if (c)
    dsd__mr_coll_free(c);
  dsd_buf_free(&json);
  return rc;
}

static int dsd__mr_chunk(dsd__mr_t *R, dsd_archive_reader_t *r, const char *name,
                         const char *stream, unsigned chunk, char *buf, dsd_err_t *err) {
  size_t sl = strlen(stream);
  char entry[DSD__MR_NAME];
  dsd__mr_coll_t *c;
  dsd__mr_feed_t feed;
  int rc = 0;

  if (sl < 5 || strcmp(stream + sl - 5, ".bson") != 0 || sl - 5 >= sizeof entry) {
    dsd__mrlog(R, "skipped unexpected archive entry %s", name);
    return 0;
  }
  memcpy(entry, stream, sl - 5);
  entry[sl - 5] = '\0';
  c = dsd__mr_find(R, entry);
  if (c == NULL || c->view)
    return dsd_err_set(err, DSD_EPROTO, "archive stream %s comes without its metadata.json: "
                       "the archive is corrupt", stream);
  if (chunk != c->last_chunk + 1)
    return dsd_err_set(err, DSD_EPROTO, "archive entry %s comes out of order (expected chunk "
                       "%u): the archive is corrupt", name, c->last_chunk + 1);
  c->last_chunk = chunk;
  c->seen = true;
  /* Another collection's stream begins: send what the previous one has
   * batched, so at most one batch is held. */
  if (R->filling != c) {
    if ((rc = dsd__mr_flush(R, R->filling, err)))
      return rc;
    R->filling = c;
  }
  feed.R = R;
  feed.c = c;
  for (;;) {
    long n = dsd_archive_reader_read(r, buf, DSD__MR_READ);
    if (n < 0) {
      const dsd_err_t *re = dsd_archive_reader_error(r);
      return dsd_err_set(err, (int)n, "collection %s.%s: archive entry %s cannot be read (%s); "
                         "%llu documents were inserted", c->db, c->meta.name, name,
                         re ? dsd_err_msg(re) : dsd_strerror((int)n),
                         (unsigned long long)c->inserted);
    }
    if (n == 0)
      break;
    dsd_sha256_update(&c->hash, buf, (size_t)n);
    c->bytes += (uint64_t)n;
    R->bytes_done += (uint64_t)n;
    if ((rc = dsd__mongo_docsplit_feed(&c->split, buf, (size_t)n, dsd__mr_add_doc, &feed, err))) {
      dsd_err_prefix(err, "collection %s.%s", c->db, c->meta.name);
      return rc;
    }
    if (dsd__mrcanceled(R))
      return DSD_ECANCELED;
  }
  dsd__mrprogress(R, "data", c->meta.name);
  return 0;
}

/* ------------------------------------------------------------------ */
/* The end: summary, indexes, views                                    */

static int dsd__mr_verify(dsd__mr_t *R, const json_t *summary, dsd_err_t *err) {
  const json_t *streams = summary ? json_object_get(summary, "streams") : NULL;
  const char *key;
  const json_t *v;
  char sname[DSD__MR_NAME + 8];

  if (!json_is_object(streams))
    return dsd_err_set(err, DSD_EPROTO, "summary.json has no stream list: the archive is "
                       "corrupt or was not written by dsd");
  for (dsd__mr_coll_t *c = R->colls; c; c = c->next) {
    char hex[65];
    const json_t *e;
    const char *sha;
    if (c->view)
      continue;
    snprintf(sname, sizeof sname, "%s.bson", c->entry);
    e = json_object_get(streams, sname);
    if (e == NULL || !c->seen)
      return dsd_err_set(err, DSD_EPROTO, "collection %s.%s: its document stream is missing "
                         "from the archive or its summary: the archive is corrupt", c->db,
                         c->meta.name);
    if (dsd_sha256_final_hex(&c->hash, hex))
      return dsd_err_set(err, DSD_EINTERNAL, "sha256 failed");
    sha = json_string_value(json_object_get(e, "sha256"));
    if ((uint64_t)json_integer_value(json_object_get(e, "bytes")) != c->bytes ||
        sha == NULL || strcmp(sha, hex) != 0 ||
        (uint64_t)json_integer_value(json_object_get(e, "rows")) != c->split.docs)
      return dsd_err_set(err, DSD_EPROTO, "collection %s.%s: the stream %s does not match "
                         "summary.json (%llu bytes and %llu documents read): the archive is "
                         "corrupt HINT: the target holds a partial copy of it; import a "
                         "sound archive with clean", c->db, c->meta.name, sname,
                         (unsigned long long)c->bytes, (unsigned long long)c->split.docs);
    if (!dsd__mongo_docsplit_clean(&c->split))
      return dsd_err_set(err, DSD_EPROTO, "collection %s.%s: the stream ends inside a "
                         "document: the archive is truncated", c->db, c->meta.name);
  }
  json_object_foreach((json_t *)streams, key, v) {
    size_t kl = strlen(key);
    if (strncmp(key, "mongo/", 6) == 0 && kl > 5 && kl - 5 < sizeof sname) {
      memcpy(sname, key, kl - 5);
      sname[kl - 5] = '\0';
      if (dsd__mr_find(R, sname) == NULL)
        return dsd_err_set(err, DSD_EPROTO, "archive stream %s of the summary is missing: "
                           "the archive is corrupt", key);
    }
  }
  return 0;
}

static int dsd__mr_finish(dsd__mr_t *R, dsd_err_t *err) {
  int rc = 0;
  for (dsd__mr_coll_t *c = R->colls; c && rc == 0; c = c->next) {
    if (c->view || bson_empty(&c->meta.indexes))
      continue;
    if (dsd__mrcanceled(R))
      return DSD_ECANCELED;
    dsd__mrprogress(R, "indexes", c->meta.name);
    rc = R->ops->create_indexes(R->conn, c->db, c->meta.name, &c->meta.indexes, err);
    if (rc)
      dsd_err_prefix(err, "collection %s.%s (all documents are in; indexes are not)", c->db,
                     c->meta.name);
  }
  for (dsd__mr_coll_t *c = R->colls; c && rc == 0; c = c->next) {
    bool existed = false;
    if (!c->view)
      continue;
    if (R->ctx->clean)
      rc = R->ops->drop(R->conn, c->db, c->meta.name, err);
    if (rc == 0)
      rc = R->ops->create(R->conn, c->db, c->meta.name, &c->meta.options, &existed, err);
    if (rc)
      dsd_err_prefix(err, "view %s.%s", c->db, c->meta.name);
    else if (existed)
      dsd__mrlog(R, "view %s.%s exists already and was kept", c->db, c->meta.name);
  }
  for (dsd__mr_coll_t *c = R->colls; c; c = c->next)
    R->tables_done++;
  return rc;
}

int dsd__mongo_restore_ops(const dsd__mongo_ops_t *ops, const dsd_restore_ctx_t *ctx,
                           dsd_archive_reader_t *r, dsd_err_t *err) {
  dsd__mr_t R = {0};
  char *buf = NULL, *db = NULL;
  const json_t *summary = NULL, *mm, *tables;
  int rc;

  R.ops = ops;
  R.ctx = ctx;
  mm = json_object_get(dsd_archive_reader_manifest(r), "mongo");
  tables = mm ? json_object_get(mm, "tables") : NULL;
  R.tables_total = json_is_array(tables) ? (uint32_t)json_array_size(tables) : 0;
  /* The dump's estimate of the documents' size, for progress. */
  if (mm != NULL && json_integer_value(json_object_get(mm, "est_bytes")) > 0)
    R.bytes_total = (uint64_t)json_integer_value(json_object_get(mm, "est_bytes"));
  if ((rc = dsd__mongo_uri_db(ctx->uri, &db, err)))
    goto cleanup;
  if (db != NULL) {
    const json_t *dbs = mm ? json_object_get(mm, "databases") : NULL;
    const char *only = json_array_size(dbs) == 1 ? json_string_value(json_array_get(dbs, 0)) : NULL;
    /* A service instance's credentials usually reach its own database
     * only, so a one-database dump goes into the database the target URI
     * names, as pg's does. A dump of several databases keeps their names. */
    if (only != NULL && strlen(only) < DSD__MR_NAME) {
      snprintf(R.from_db, sizeof R.from_db, "%s", only);
      R.to_db = db;
      db = NULL;
      dsd__mrlog(&R, "database %s of the archive is restored into %s", R.from_db, R.to_db);
    } else {
      dsd__mrlog(&R, "the archive holds several databases: they are restored under their own "
                 "names, not into %s", db);
    }
  }
  buf = malloc(DSD__MR_READ);
  if (buf == NULL) {
    rc = dsd_err_set(err, DSD_ENOMEM, "out of memory");
    goto cleanup;
  }
  if ((rc = ops->connect(ctx->uri, &R.conn, err)))
    goto cleanup;
  dsd__mrlog(&R, "connected to the target; clean %s", ctx->clean ? "on" : "off");
  for (;;) {
    const char *name;
    uint64_t size;
    char stream[DSD__MR_NAME];
    unsigned chunk;
    size_t nl;

    if (dsd__mrcanceled(&R)) {
      rc = DSD_ECANCELED;
      goto cleanup;
    }
    rc = dsd_archive_reader_next(r, &name, &size, err);
    if (rc < 0)
      goto cleanup;
    if (rc == 0) {
      rc = dsd_err_set(err, DSD_EPROTO, "the archive ends without summary.json: it is "
                       "truncated");
      goto cleanup;
    }
    rc = 0;
    if (strcmp(name, "summary.json") == 0) {
      summary = dsd_archive_reader_summary(r);
      break;
    }
    nl = strlen(name);
    if (strncmp(name, "mongo/", 6) == 0 && nl > 14 &&
        strcmp(name + nl - 14, ".metadata.json") == 0) {
      if ((rc = dsd__mr_metadata(&R, r, name, size, err)))
        goto cleanup;
    } else if (dsd_archive_chunk_name_parse(name, stream, sizeof stream, &chunk) == 0 &&
               strncmp(stream, "mongo/", 6) == 0) {
      if ((rc = dsd__mr_chunk(&R, r, name, stream, chunk, buf, err)))
        goto cleanup;
    } else {
      dsd__mrlog(&R, "skipped unexpected archive entry %s", name);
    }
  }
  if ((rc = dsd__mr_flush(&R, R.filling, err)))
    goto cleanup;
  if ((rc = dsd__mr_verify(&R, summary, err)))
    goto cleanup;
  if ((rc = dsd__mr_finish(&R, err)))
    goto cleanup;
  dsd__mrlog(&R, "imported %u collections and views, %llu documents in %u batches",
             R.tables_done, (unsigned long long)R.rows_done, R.batches);
  dsd__mrprogress(&R, "done", NULL);
cleanup:
  if (rc == DSD_ECANCELED)
    dsd_err_set(err, DSD_ECANCELED, "restore canceled; %llu documents were inserted "
                "HINT: run the import again with clean (the default) to replace them",
                (unsigned long long)R.rows_done);
  while (R.colls) {
    dsd__mr_coll_t *n = R.colls->next;
    dsd__mr_coll_free(R.colls);
    R.colls = n;
  }
  if (R.conn)
    ops->disconnect(R.conn);
  bson_free(R.to_db);
  bson_free(db);
  free(buf);
  return rc;
}
