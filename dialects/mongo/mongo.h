/*
 * mongo.h - the MongoDB dialect (mongo-c-driver 1.23: libmongoc / libbson),
 * internal interface between its parts:
 *
 *   mongo.c          registration, URI parsing and database selection, and
 *                    the real server-facing calls (dsd__mongo_driver_ops)
 *   mongo_bson.c     pure libbson helpers: metadata.json, index specs,
 *                    document anonymization, splitting a byte stream back
 *                    into documents
 *   mongo_dump.c     dump side (prepare, run)
 *   mongo_restore.c  restore side (metadata, bulk batches, indexes, views)
 *
 * Every call that talks to a server goes through dsd__mongo_ops_t, so the
 * unit tests replace the server by a fake (no MongoDB can run on the build
 * machines) and drive the real dump and restore code end to end.
 *
 * Archive layout of the mongo dialect (format version 1), chosen so that
 * `mongorestore --dir` accepts the extracted tree once each .bson stream's
 * chunks are concatenated into one file:
 *
 *   mongo/<db>/<coll>.metadata.json   one whole entry per collection and
 *                                     view, in mongodump's shape, canonical
 *                                     extended JSON:
 *                                     {"options": {...}, "indexes": [...],
 *                                      "uuid": "<32 hex>", "collectionName":
 *                                      "<coll>", "type": "collection" |
 *                                      "view" | "timeseries"}
 *                                     ("options" and "uuid" left out when
 *                                     empty; a view's options carry viewOn
 *                                     and pipeline, its indexes are [])
 *   mongo/<db>/<coll>.bson/NNNNNN     the collection's documents, raw BSON
 *                                     one after the other (what mongodump
 *                                     writes to <coll>.bson), cut into
 *                                     chunks at arbitrary byte offsets; no
 *                                     stream for a view
 *
 * The metadata entry of a collection comes before its data stream. <coll>
 * is the collection name with '%' and '/' (and bytes below 0x20) written as
 * %XX, as mongodump escapes file names; collectionName in the metadata is
 * the real name. system.* collections other than system.js are not dumped
 * (views are recreated from their metadata, not from system.views).
 *
 * By hand (dialects/mongo/README.md has the tested recipe): extract the
 * tar, then for every directory mongo/DB/C.bson concatenate its chunk files
 * in name order into a file of the same name, and run
 * `mongorestore --dir mongo` (add --drop for a clean import).
 */
#ifndef DSD_DIALECTS_MONGO_MONGO_H
#define DSD_DIALECTS_MONGO_MONGO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <bson/bson.h>

#include "core/buf.h"
#include "dialects/dialect.h"

struct dsd_anon_table_plan; /* anonymize/anonymize.h */

extern const dsd_dialect_t dsd__mongo_dialect;

/* Largest document a server accepts (16 MiB) plus the slack the server
 * allows internally; anything longer in a stream is corruption. */
#define DSD__MONGO_MAX_DOC ((16u << 20) + (16u << 10))

/* Restore batches: at most this many documents or bytes per insert_many
 * (a single larger document goes alone). */
#define DSD__MONGO_BATCH_DOCS 1000
#define DSD__MONGO_BATCH_BYTES (8u << 20)

/* ------------------------------------------------------------------ */
/* Server-facing calls                                                 */

typedef struct dsd__mongo_server {
  char version[64];   /* "7.0.5" */
  int max_wire;       /* maxWireVersion from hello; 13 = 5.0 */
  bool snapshot_ok;   /* replica set or sharded, and >= 5.0 */
} dsd__mongo_server_t;

/* Every function returns 0 or a negative DSD_E* code with err set; conn
 * and cursors are opaque to the callers. Names are borrowed. */
typedef struct dsd__mongo_ops {
  /* Connects with uri (secret) and checks that the server answers. */
  int (*connect)(const char *uri, void **conn, dsd_err_t *err);
  void (*disconnect)(void *conn);
  int (*server_info)(void *conn, dsd__mongo_server_t *out, dsd_err_t *err);
  /* Names of the databases the credentials can list; *names is owned by
   * the caller (bson_strfreev). */
  int (*list_databases)(void *conn, char ***names, dsd_err_t *err);
  /* Appends the listCollections documents of db to the array out (an
   * initialized bson_t the caller owns). */
  int (*list_collections)(void *conn, const char *db, bson_t *out, dsd_err_t *err);
  /* Appends the listIndexes documents of db.coll to the array out. */
  int (*list_indexes)(void *conn, const char *db, const char *coll, bson_t *out,
                      dsd_err_t *err);
  /* Uncompressed size of db.coll's documents in bytes (collStats "size"),
   * for progress; 0 when the server does not say. */
  int (*coll_size)(void *conn, const char *db, const char *coll, uint64_t *bytes,
                   dsd_err_t *err);
  /* Starts the snapshot session every later find reads through. */
  int (*snapshot_begin)(void *conn, dsd_err_t *err);
  /* Opens a cursor over every document of db.coll (in the snapshot when
   * one was begun). */
  int (*find_open)(void *conn, const char *db, const char *coll, void **cur,
                   dsd_err_t *err);
  /* 1 and *doc (borrowed until the next call), 0 at the end, or < 0. */
  int (*find_next)(void *cur, const bson_t **doc, dsd_err_t *err);
  void (*find_close)(void *cur);
  /* Drops db.coll (a collection or a view); a missing one is no error. */
  int (*drop)(void *conn, const char *db, const char *coll, dsd_err_t *err);
  /* Creates db.coll with options (borrowed; viewOn/pipeline for a view).
   * *existed tells that it was already there (not an error). */
  int (*create)(void *conn, const char *db, const char *coll,
                const bson_t *options, bool *existed, dsd_err_t *err);
  /* Unordered insert of n documents (borrowed). */
  int (*insert_many)(void *conn, const char *db, const char *coll,
                     const bson_t *const *docs, size_t n, dsd_err_t *err);
  /* createIndexes with the array of index specs (borrowed). */
  int (*create_indexes)(void *conn, const char *db, const char *coll,
                        const bson_t *specs, dsd_err_t *err);
} dsd__mongo_ops_t;

/* The ops backed by libmongoc (mongo.c). */
extern const dsd__mongo_ops_t dsd__mongo_driver_ops;

/* ------------------------------------------------------------------ */
/* URI and database selection (mongo.c)                                */

/* Parses uri (secret; mongodb:// or mongodb+srv://) and returns in *db the
 * database it names (caller frees with bson_free), or NULL when it names
 * none. Registers the password with the log redactor. DSD_EINVAL with a
 * message free of the URI when it does not parse. */
int dsd__mongo_uri_db(const char *uri, char **db, dsd_err_t *err);
/* Whether a database found by listDatabases is dumped when the URI names
 * none: every one except admin, local and config. */
bool dsd__mongo_db_selected(const char *name);
/* Whether a collection of listCollections is dumped: not system.*
 * except system.js, not a name with '$' (as mongodump). */
bool dsd__mongo_coll_selected(const char *name);

/* ------------------------------------------------------------------ */
/* Archive names and metadata (mongo_bson.c)                           */

/* Appends name escaped for a file name (see the layout above) to out. */
int dsd__mongo_escape_name(const char *name, dsd_buf_t *out);
/* "mongo/<db>/<escaped coll>" + suffix (".bson" or ".metadata.json"),
 * replacing out's content. */
int dsd__mongo_entry_name(const char *db, const char *coll, const char *suffix,
                          dsd_buf_t *out);
/* The collection type of a listCollections document ("collection" when
 * the field is missing); borrowed from info. */
const char *dsd__mongo_coll_type(const bson_t *info);
/* mongodump's metadata.json for one collection: info is its
 * listCollections document, indexes the array from listIndexes (ignored
 * for a view). *json is owned by the caller (bson_free). */
int dsd__mongo_metadata_json(const bson_t *info, const bson_t *indexes,
                             char **json, dsd_err_t *err);

/* What restore needs from a metadata.json. */
typedef struct dsd__mongo_meta {
  char *name;     /* collectionName; bson_free */
  char *type;     /* bson_free */
  bson_t options; /* owned */
  bson_t indexes; /* owned: array of index specs ready for createIndexes */
} dsd__mongo_meta_t;
/* Parses a metadata.json (len bytes, not NUL-terminated) into *m, which
 * the caller frees with dsd__mongo_meta_free (also after a failure). */
int dsd__mongo_meta_parse(const char *json, size_t len, dsd__mongo_meta_t *m,
                          dsd_err_t *err);
void dsd__mongo_meta_free(dsd__mongo_meta_t *m);

/* Converts one listIndexes document into a createIndexes spec in out (an
 * initialized, empty bson_t): "ns" is left out (pre-4.4 servers list it,
 * createIndexes refuses it). Returns 1 when the index is not to be created
 * (the _id index and a clustered index, which the collection brings), 0
 * when out holds the spec, < 0 on a malformed spec. */
int dsd__mongo_index_spec(const bson_t *listed, bson_t *out);

/* ------------------------------------------------------------------ */
/* Anonymization of documents (mongo_bson.c)                           */

/* Rebuilds doc into out (initialized, empty) with the plan's field rules
 * applied; scratch is the caller's reusable buffer. Field paths are dotted,
 * without array positions ("items.sku"). Types stay valid: strings stay
 * strings, numbers numbers, dates dates, ObjectIds ObjectIds; a value the
 * rule cannot transform becomes null. Returns 0 or DSD_ENOMEM/DSD_EINVAL. */
int dsd__mongo_anon_doc(const struct dsd_anon_table_plan *plan, const bson_t *doc,
                        bson_t *out, dsd_buf_t *scratch, dsd_err_t *err);

/* ------------------------------------------------------------------ */
/* Splitting a byte stream back into documents (mongo_bson.c)          */

typedef struct dsd__mongo_docsplit {
  dsd_buf_t pending; /* the start of a document cut by a chunk boundary */
  uint64_t docs;
} dsd__mongo_docsplit_t;

/* Called with one whole, validated document (borrowed for the call). */
typedef int (*dsd__mongo_doc_cb)(void *data, const bson_t *doc, dsd_err_t *err);

/* Feeds len bytes; calls cb for every document completed. A document
 * whose length prefix is out of range or that does not validate is
 * DSD_EPROTO. */
int dsd__mongo_docsplit_feed(dsd__mongo_docsplit_t *s, const void *data,
                             size_t len, dsd__mongo_doc_cb cb, void *cbdata,
                             dsd_err_t *err);
/* Whether the stream ended on a document boundary. */
bool dsd__mongo_docsplit_clean(const dsd__mongo_docsplit_t *s);
void dsd__mongo_docsplit_free(dsd__mongo_docsplit_t *s);

/* ------------------------------------------------------------------ */
/* Dump and restore with explicit ops (the dialect passes the driver's;
 * tests pass a fake)                                                   */

int dsd__mongo_dump_prepare_ops(const dsd__mongo_ops_t *ops,
                                const dsd_dump_ctx_t *ctx, json_t *manifest,
                                void **state, dsd_err_t *err);
int dsd__mongo_dump_run(void *state, const dsd_dump_ctx_t *ctx,
                        dsd_archive_writer_t *w, dsd_err_t *err);
void dsd__mongo_dump_free(void *state);
int dsd__mongo_restore_ops(const dsd__mongo_ops_t *ops,
                           const dsd_restore_ctx_t *ctx,
                           dsd_archive_reader_t *r, dsd_err_t *err);

#endif
