/*
 * mongo.c - the MongoDB dialect's registration (the dsd_dialect_t that
 * dialects/registry.c hands out for the "mongo" plan and mongodb:// or
 * mongodb+srv:// URIs), URI parsing and database selection, and
 * dsd__mongo_driver_ops: the only code that talks to a server, through
 * libmongoc 1.23. mongo_dump.c and mongo_restore.c reach the server only
 * through those ops, so tests can replace them (see mongo.h).
 *
 * Secrets: the URI is given to libmongoc only; its password is registered
 * with the log redactor before anything can fail, and libmongoc's own log
 * lines are routed through dsd_log (which redacts) instead of stderr.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mongoc/mongoc.h>

#include "core/log.h"
#include "dialects/mongo/mongo.h"

static const char *const dsd__mongo_schemes[] = {"mongodb", "mongodb+srv", NULL};

static int dsd__mongo_dump_prepare(const dsd_dump_ctx_t *ctx, json_t *manifest, void **state,
                                   dsd_err_t *err) {
  return dsd__mongo_dump_prepare_ops(&dsd__mongo_driver_ops, ctx, manifest, state, err);
}

static int dsd__mongo_restore(const dsd_restore_ctx_t *ctx, dsd_archive_reader_t *r,
                              dsd_err_t *err) {
  return dsd__mongo_restore_ops(&dsd__mongo_driver_ops, ctx, r, err);
}

const dsd_dialect_t dsd__mongo_dialect = {
    .name = "mongo",
    .schemes = dsd__mongo_schemes,
    .dump_prepare = dsd__mongo_dump_prepare,
    .dump_run = dsd__mongo_dump_run,
    .dump_free = dsd__mongo_dump_free,
    .restore = dsd__mongo_restore,
};

/* ------------------------------------------------------------------ */
/* Library setup                                                       */

static void dsd__mongo_log_handler(mongoc_log_level_t level, const char *domain,
                                   const char *message, void *data) {
  /* libmongoc logs connection trouble as warnings; they may name hosts
   * but go through dsd_log's redaction like every other line. */
  if (level <= MONGOC_LOG_LEVEL_WARNING)
    dsd_log(DSD_LOG_WARN, "mongoc %s: %s", domain, message);
  else if (level <= MONGOC_LOG_LEVEL_INFO)
    dsd_log(DSD_LOG_DEBUG, "mongoc %s: %s", domain, message);
}

static void dsd__mongo_init_once(void) {
  mongoc_log_set_handler(dsd__mongo_log_handler, NULL);
  mongoc_init();
}

static void dsd__mongo_init(void) {
  static pthread_once_t once = PTHREAD_ONCE_INIT;
  pthread_once(&once, dsd__mongo_init_once);
}

/* ------------------------------------------------------------------ */
/* URI and selection                                                   */

int dsd__mongo_uri_db(const char *uri, char **db, dsd_err_t *err) {
  bson_error_t be;
  mongoc_uri_t *u;
  const char *pw, *name;

  *db = NULL;
  dsd__mongo_init();
  u = mongoc_uri_new_with_error(uri, &be);
  if (u == NULL)
    /* be.message may quote the URI: it is not passed on. */
    return dsd_err_set(err, DSD_EINVAL, "the mongodb connection uri does not parse "
                       "HINT: use mongodb://user:password@host:port/database or "
                       "mongodb+srv://user:password@host/database");
  pw = mongoc_uri_get_password(u);
  if (pw != NULL && *pw)
    dsd_redact_register(pw);
  name = mongoc_uri_get_database(u);
  if (name != NULL && *name)
    *db = bson_strdup(name);
  mongoc_uri_destroy(u);
  return 0;
}

bool dsd__mongo_db_selected(const char *name) {
  return strcmp(name, "admin") != 0 && strcmp(name, "local") != 0 &&
         strcmp(name, "config") != 0;
}

bool dsd__mongo_coll_selected(const char *name) {
  /* As mongodump: system.js (stored functions) is user data, the other
   * system.* collections belong to the server; '$' marks internal
   * namespaces. */
  if (strcmp(name, "system.js") == 0)
    return true;
  return strncmp(name, "system.", 7) != 0 && strchr(name, '$') == NULL;
}

/* ------------------------------------------------------------------ */
/* Errors                                                              */

/* Server error codes (src/mongo/base/error_codes.yml). */
#define DSD__MONGO_UNAUTHORIZED 13
#define DSD__MONGO_AUTH_FAILED 18
#define DSD__MONGO_NS_NOT_FOUND 26
#define DSD__MONGO_NS_EXISTS 48

static int dsd__mongo_fail(dsd_err_t *err, const bson_error_t *be, const char *what) {
  int code = DSD_EDB;
  const char *hint = "";
  if (be->domain == MONGOC_ERROR_CLIENT && be->code == MONGOC_ERROR_CLIENT_AUTHENTICATE) {
    code = DSD_EAUTH;
    hint = " HINT: check the user name, password and authSource of the uri";
  } else if (be->domain == MONGOC_ERROR_SERVER_SELECTION || be->domain == MONGOC_ERROR_STREAM) {
    code = DSD_ENET;
    hint = " HINT: check the host and port of the uri and that the server accepts "
           "connections from here";
  } else if (be->code == DSD__MONGO_AUTH_FAILED) {
    code = DSD_EAUTH;
  } else if (be->code == DSD__MONGO_UNAUTHORIZED) {
    code = DSD_EDENIED;
    hint = " HINT: the user needs the read role on the databases to dump "
           "(readWrite and dbAdmin to restore)";
  }
  return dsd_err_set(err, code, "%s: %s%s", what, be->message, hint);
}

/* ------------------------------------------------------------------ */
/* Driver ops                                                          */

typedef struct dsd__mconn {
  mongoc_client_t *client;
  mongoc_client_session_t *session; /* snapshot session, or NULL */
} dsd__mconn_t;

typedef struct dsd__mcur {
  mongoc_collection_t *coll;
  mongoc_cursor_t *cur;
} dsd__mcur_t;

static void dsd__drv_disconnect(void *conn) {
  dsd__mconn_t *c = conn;
  if (c == NULL)
    return;
  if (c->session)
    mongoc_client_session_destroy(c->session);
  if (c->client)
    mongoc_client_destroy(c->client);
  free(c);
}

static int dsd__drv_connect(const char *uri, void **conn, dsd_err_t *err) {
  bson_error_t be;
  mongoc_uri_t *u = NULL;
  dsd__mconn_t *c = NULL;
  bson_t ping = BSON_INITIALIZER;
  int rc = 0;

  *conn = NULL;
  dsd__mongo_init();
  u = mongoc_uri_new_with_error(uri, &be);
  if (u == NULL) {
    rc = dsd_err_set(err, DSD_EINVAL, "the mongodb connection uri does not parse");
    goto cleanup;
  }
  if (mongoc_uri_get_password(u) && *mongoc_uri_get_password(u))
    dsd_redact_register(mongoc_uri_get_password(u));
  if (mongoc_uri_get_appname(u) == NULL)
    mongoc_uri_set_appname(u, "data-service-dump");
  c = calloc(1, sizeof *c);
  if (c == NULL) {
    rc = dsd_err_set(err, DSD_ENOMEM, "out of memory");
    goto cleanup;
  }
  c->client = mongoc_client_new_from_uri_with_error(u, &be);
  if (c->client == NULL) {
    rc = dsd__mongo_fail(err, &be, "cannot connect to mongodb");
    goto cleanup;
  }
  mongoc_client_set_error_api(c->client, MONGOC_ERROR_API_VERSION_2);
  BSON_APPEND_INT32(&ping, "ping", 1);
  if (!mongoc_client_command_simple(c->client, "admin", &ping, NULL, NULL, &be)) {
    rc = dsd__mongo_fail(err, &be, "cannot connect to mongodb");
    goto cleanup;
  }
  *conn = c;
  c = NULL;
cleanup:
  bson_destroy(&ping);
  dsd__drv_disconnect(c);
  if (u)
    mongoc_uri_destroy(u);
  return rc;
}

static int dsd__drv_server_info(void *conn, dsd__mongo_server_t *out, dsd_err_t *err) {
  dsd__mconn_t *c = conn;
  bson_t cmd = BSON_INITIALIZER, reply;
  bson_error_t be;
  bson_iter_t it;
  bool replset = false;
  int rc = 0;

  memset(out, 0, sizeof *out);
  BSON_APPEND_INT32(&cmd, "hello", 1);
  if (!mongoc_client_command_simple(c->client, "admin", &cmd, NULL, &reply, &be)) {
    /* Servers before 4.4.2 know only isMaster. */
    bson_destroy(&reply);
    bson_reinit(&cmd);
    BSON_APPEND_INT32(&cmd, "isMaster", 1);
    if (!mongoc_client_command_simple(c->client, "admin", &cmd, NULL, &reply, &be)) {
      rc = dsd__mongo_fail(err, &be, "cannot ask mongodb for its topology");
      goto cleanup;
    }
  }
  if (bson_iter_init_find(&it, &reply, "maxWireVersion"))
    out->max_wire = (int)bson_iter_as_int64(&it);
  if (bson_iter_init_find(&it, &reply, "setName"))
    replset = true;
  if (bson_iter_init_find(&it, &reply, "msg") && BSON_ITER_HOLDS_UTF8(&it) &&
      strcmp(bson_iter_utf8(&it, NULL), "isdbgrid") == 0)
    replset = true;
  bson_destroy(&reply);
  bson_reinit(&cmd);
  BSON_APPEND_INT32(&cmd, "buildInfo", 1);
  if (!mongoc_client_command_simple(c->client, "admin", &cmd, NULL, &reply, &be)) {
    rc = dsd__mongo_fail(err, &be, "cannot read the mongodb server version");
    goto cleanup;
  }
  if (bson_iter_init_find(&it, &reply, "version") && BSON_ITER_HOLDS_UTF8(&it))
    snprintf(out->version, sizeof out->version, "%s", bson_iter_utf8(&it, NULL));
  /* Snapshot reads through sessions exist from 5.0 (wire version 13) and
   * only on replica sets and sharded clusters. */
  out->snapshot_ok = replset && out->max_wire >= 13;
cleanup:
  bson_destroy(&reply);
  bson_destroy(&cmd);
  return rc;
}

static int dsd__drv_list_databases(void *conn, char ***names, dsd_err_t *err) {
  dsd__mconn_t *c = conn;
  bson_t opts = BSON_INITIALIZER;
  bson_error_t be;
  int rc = 0;

  /* authorizedDatabases lets a user without listDatabases on the cluster
   * see the databases it has privileges on. */
  BSON_APPEND_BOOL(&opts, "authorizedDatabases", true);
  *names = mongoc_client_get_database_names_with_opts(c->client, &opts, &be);
  if (*names == NULL)
    rc = dsd__mongo_fail(err, &be, "cannot list the databases");
  bson_destroy(&opts);
  return rc;
}

/* Appends every document of cur to the array out; destroys cur. */
static int dsd__drain(mongoc_cursor_t *cur, bson_t *out, const char *what, dsd_err_t *err) {
  const bson_t *doc;
  bson_error_t be;
  uint32_t n = 0;
  int rc = 0;
  char key[16];

  while (mongoc_cursor_next(cur, &doc)) {
    snprintf(key, sizeof key, "%u", n++);
    if (!BSON_APPEND_DOCUMENT(out, key, doc)) {
      rc = dsd_err_set(err, DSD_ETOOBIG, "%s: the list does not fit in a document", what);
      goto cleanup;
    }
  }
  if (mongoc_cursor_error(cur, &be))
    rc = dsd__mongo_fail(err, &be, what);
cleanup:
  mongoc_cursor_destroy(cur);
  return rc;
}

static int dsd__drv_list_collections(void *conn, const char *db, bson_t *out, dsd_err_t *err) {
  dsd__mconn_t *c = conn;
  mongoc_database_t *d = mongoc_client_get_database(c->client, db);
  int rc = dsd__drain(mongoc_database_find_collections_with_opts(d, NULL), out,
                      "cannot list the collections", err);
  mongoc_database_destroy(d);
  if (rc)
    dsd_err_prefix(err, "database %s", db);
  return rc;
}

static int dsd__drv_list_indexes(void *conn, const char *db, const char *coll, bson_t *out,
                                 dsd_err_t *err) {
  dsd__mconn_t *c = conn;
  mongoc_collection_t *cl = mongoc_client_get_collection(c->client, db, coll);
  int rc = dsd__drain(mongoc_collection_find_indexes_with_opts(cl, NULL), out,
                      "cannot list the indexes", err);
  mongoc_collection_destroy(cl);
  if (rc)
    dsd_err_prefix(err, "collection %s.%s", db, coll);
  return rc;
}

static int dsd__drv_coll_size(void *conn, const char *db, const char *coll, uint64_t *bytes,
                              dsd_err_t *err) {
  dsd__mconn_t *c = conn;
  bson_t cmd = BSON_INITIALIZER, reply;
  bson_error_t be;
  bson_iter_t it;

  /* Only an estimate for progress: a server that refuses collStats (a
   * user without the privilege, a version without the command) makes the
   * total unknown, not the dump fail. */
  *bytes = 0;
  BSON_APPEND_UTF8(&cmd, "collStats", coll);
  if (mongoc_client_command_simple(c->client, db, &cmd, NULL, &reply, &be) &&
      bson_iter_init_find(&it, &reply, "size") && BSON_ITER_HOLDS_NUMBER(&it) &&
      bson_iter_as_int64(&it) > 0)
    *bytes = (uint64_t)bson_iter_as_int64(&it);
  bson_destroy(&reply);
  bson_destroy(&cmd);
  return 0;
}

static int dsd__drv_snapshot_begin(void *conn, dsd_err_t *err) {
  dsd__mconn_t *c = conn;
  mongoc_session_opt_t *o = mongoc_session_opts_new();
  bson_error_t be;
  int rc = 0;

  mongoc_session_opts_set_snapshot(o, true);
  c->session = mongoc_client_start_session(c->client, o, &be);
  if (c->session == NULL)
    rc = dsd__mongo_fail(err, &be, "cannot start a snapshot session");
  mongoc_session_opts_destroy(o);
  return rc;
}

static void dsd__drv_find_close(void *cur) {
  dsd__mcur_t *k = cur;
  if (k == NULL)
    return;
  if (k->cur)
    mongoc_cursor_destroy(k->cur);
  if (k->coll)
    mongoc_collection_destroy(k->coll);
  free(k);
}

static int dsd__drv_find_open(void *conn, const char *db, const char *coll, void **cur,
                              dsd_err_t *err) {
  dsd__mconn_t *c = conn;
  dsd__mcur_t *k = calloc(1, sizeof *k);
  bson_t filter = BSON_INITIALIZER, opts = BSON_INITIALIZER;
  bson_error_t be;
  int rc = 0;

  *cur = NULL;
  if (k == NULL) {
    rc = dsd_err_set(err, DSD_ENOMEM, "out of memory");
    goto cleanup;
  }
  k->coll = mongoc_client_get_collection(c->client, db, coll);
  /* In a snapshot session every find (the first one fixes the cluster
   * time) reads the same point in time. */
  if (c->session && !mongoc_client_session_append(c->session, &opts, &be)) {
    rc = dsd__mongo_fail(err, &be, "cannot use the snapshot session");
    goto cleanup;
  }
  k->cur = mongoc_collection_find_with_opts(k->coll, &filter, &opts, NULL);
  *cur = k;
  k = NULL;
cleanup:
  dsd__drv_find_close(k);
  bson_destroy(&filter);
  bson_destroy(&opts);
  return rc;
}

static int dsd__drv_find_next(void *cur, const bson_t **doc, dsd_err_t *err) {
  dsd__mcur_t *k = cur;
  bson_error_t be;
  if (mongoc_cursor_next(k->cur, doc))
    return 1;
  if (mongoc_cursor_error(k->cur, &be))
    return dsd__mongo_fail(err, &be, "cannot read documents");
  return 0;
}

static int dsd__drv_drop(void *conn, const char *db, const char *coll, dsd_err_t *err) {
  dsd__mconn_t *c = conn;
  mongoc_collection_t *cl = mongoc_client_get_collection(c->client, db, coll);
  bson_error_t be;
  int rc = 0;
  if (!mongoc_collection_drop_with_opts(cl, NULL, &be) && be.code != DSD__MONGO_NS_NOT_FOUND &&
      strstr(be.message, "ns not found") == NULL)
    rc = dsd__mongo_fail(err, &be, "cannot drop the collection");
  mongoc_collection_destroy(cl);
  return rc;
}

static int dsd__drv_create(void *conn, const char *db, const char *coll, const bson_t *options,
                           bool *existed, dsd_err_t *err) {
  dsd__mconn_t *c = conn;
  mongoc_database_t *d = mongoc_client_get_database(c->client, db);
  mongoc_collection_t *cl;
  bson_error_t be;
  int rc = 0;

  *existed = false;
  cl = mongoc_database_create_collection(d, coll, options, &be);
  if (cl != NULL)
    mongoc_collection_destroy(cl);
  else if (be.code == DSD__MONGO_NS_EXISTS)
    *existed = true;
  else
    rc = dsd__mongo_fail(err, &be, "cannot create the collection");
  mongoc_database_destroy(d);
  return rc;
}

static int dsd__drv_insert_many(void *conn, const char *db, const char *coll,
                                const bson_t *const *docs, size_t n, dsd_err_t *err) {
  dsd__mconn_t *c = conn;
  mongoc_collection_t *cl = mongoc_client_get_collection(c->client, db, coll);
  bson_t opts = BSON_INITIALIZER, reply;
  bson_error_t be;
  int rc = 0;

  /* Unordered: the server may apply the batch in parallel; any failed
   * document fails the restore anyway. */
  BSON_APPEND_BOOL(&opts, "ordered", false);
  /* The documents come from a server: field names with '.' or '$' (legal
   * since 5.0) must go back as they were, so no client-side key checks. */
  BSON_APPEND_BOOL(&opts, "validate", false);
  if (!mongoc_collection_insert_many(cl, (const bson_t **)docs, n, &opts, &reply, &be))
    rc = dsd__mongo_fail(err, &be, "cannot insert documents");
  bson_destroy(&reply);
  bson_destroy(&opts);
  mongoc_collection_destroy(cl);
  return rc;
}

static int dsd__drv_create_indexes(void *conn, const char *db, const char *coll,
                                   const bson_t *specs, dsd_err_t *err) {
  dsd__mconn_t *c = conn;
  mongoc_database_t *d = mongoc_client_get_database(c->client, db);
  bson_t cmd = BSON_INITIALIZER, reply;
  bson_error_t be;
  int rc = 0;

  BSON_APPEND_UTF8(&cmd, "createIndexes", coll);
  BSON_APPEND_ARRAY(&cmd, "indexes", specs);
  if (!mongoc_database_write_command_with_opts(d, &cmd, NULL, &reply, &be))
    rc = dsd__mongo_fail(err, &be, "cannot create the indexes");
  bson_destroy(&reply);
  bson_destroy(&cmd);
  mongoc_database_destroy(d);
  return rc;
}

const dsd__mongo_ops_t dsd__mongo_driver_ops = {
    .connect = dsd__drv_connect,
    .disconnect = dsd__drv_disconnect,
    .server_info = dsd__drv_server_info,
    .list_databases = dsd__drv_list_databases,
    .list_collections = dsd__drv_list_collections,
    .list_indexes = dsd__drv_list_indexes,
    .coll_size = dsd__drv_coll_size,
    .snapshot_begin = dsd__drv_snapshot_begin,
    .find_open = dsd__drv_find_open,
    .find_next = dsd__drv_find_next,
    .find_close = dsd__drv_find_close,
    .drop = dsd__drv_drop,
    .create = dsd__drv_create,
    .insert_many = dsd__drv_insert_many,
    .create_indexes = dsd__drv_create_indexes,
};
