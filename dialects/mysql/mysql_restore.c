/*
 * mysql_restore.c - the MySQL / MariaDB dialect's restore side.
 *
 * dsd__mysql_restore() reads the mysql streams of a dump archive (layout in
 * mysql.h) in archive order and runs them, statement by statement, through
 * the C API on one connection (multi-statements off; LOAD DATA is not
 * used): each stream has its own splitter (mysql_split.c), because chunks
 * of different tables' streams interleave in the archive and a chunk may
 * end in the middle of a statement. The splitter skips DELIMITER lines,
 * which only the mysql client needs.
 *
 *   mysql/drop/N     run only with clean (DROP ... IF EXISTS)
 *   mysql/schema/N   tables, routines, views
 *   mysql/data/T/N   INSERT statements; FOREIGN_KEY_CHECKS and UNIQUE_CHECKS
 *                    are off (each stream's header), so tables load in any
 *                    order and circular foreign keys load
 *   mysql/post/N     triggers and events: the archive writes them after
 *                    every data stream, so no trigger fires on imported rows
 *
 * Every stream is hashed on the way and checked against summary.json
 * (bytes, sha256; for data streams the rows the server reports inserted).
 * The target is used as an ordinary user with privileges on its database
 * only: the dump has no DEFINER clauses and no global statements.
 *
 * The target URI carries a password: mysql.c registers it with the log
 * redactor and gives it to the client library only.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/buf.h"
#include "core/hash.h"
#include "core/log.h"
#include "dialects/mysql/mysql.h"

#define MYR_READ_SIZE (256u << 10)
#define MYR_NAME_MAX 256

typedef enum { MYR_DROP = 0, MYR_SCHEMA, MYR_DATA, MYR_POST, MYR_OTHER } myr_kind_t;

static const char *const myr_kind_names[] = {"drop", "schema", "data", "post", "other"};

typedef struct myr myr_t;

typedef struct myr_stream {
  myr_t *R;
  char name[MYR_NAME_MAX];
  char table[MYR_NAME_MAX]; /* data streams: the table's name */
  myr_kind_t kind;
  unsigned last_chunk;
  dsd_sha256_t hash;
  uint64_t bytes, rows;
  char sha256[65];
  int hashed;
  dsd__mysql_split_t *split;
  struct myr_stream *next;
} myr_stream_t;

struct myr {
  const dsd_restore_ctx_t *ctx;
  const json_t *tables; /* manifest mysql.tables, borrowed from the reader */
  MYSQL *c;
  myr_stream_t *streams;
  uint64_t bytes_done, bytes_total, rows_done;
  unsigned tables_done, tables_total;
  unsigned long statements;
  const char *current;
};

static int myr_canceled(const myr_t *R) {
  return R->ctx->io.cancel && atomic_load(R->ctx->io.cancel);
}

static void myr_log(const myr_t *R, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void myr_log(const myr_t *R, const char *fmt, ...) {
  char line[1024];
  va_list ap;
  if (R->ctx->io.log == NULL)
    return;
  va_start(ap, fmt);
  vsnprintf(line, sizeof line, fmt, ap);
  va_end(ap);
  R->ctx->io.log(R->ctx->io.data, line);
}

static void myr_progress(myr_t *R, const char *phase) {
  dsd_progress_t p = {0};
  if (R->ctx->io.progress == NULL)
    return;
  p.phase = phase;
  p.current = R->current;
  p.bytes_done = R->bytes_done;
  p.bytes_total = R->bytes_total;
  p.rows_done = R->rows_done;
  p.tables_done = R->tables_done;
  p.tables_total = R->tables_total;
  R->ctx->io.progress(R->ctx->io.data, &p);
}

/* What the target holds after a failure in a stream of kind k. */
static const char *myr_state(myr_kind_t k) {
  switch (k) {
  case MYR_DROP:
    return "the target may have lost some of the dump's objects";
  case MYR_SCHEMA:
    return "the target holds part of the dump's schema and no data";
  case MYR_DATA:
    return "the target holds the schema and part of the data";
  default:
    return "the target holds the schema and the data but not every trigger or event";
  }
}

/* Executes one statement of stream s. */
static int myr_on_statement(void *data, const char *stmt, size_t len, unsigned line,
                            dsd_err_t *err) {
  myr_stream_t *s = data;
  myr_t *R = s->R;
  if (myr_canceled(R))
    return DSD_ECANCELED;
  if (mysql_real_query(R->c, stmt, (unsigned long)len) != 0) {
    char head[121];
    size_t n = len < 120 ? len : 120;
    memcpy(head, stmt, n);
    head[n] = '\0';
    for (char *p = head; *p; p++)
      if (*p == '\n' || *p == '\r' || *p == '\t')
        *p = ' ';
    if (s->kind == MYR_DATA)
      return dsd_err_set(err, DSD_EDB, "restore failed on table %s (%s, line %u): %s (%u); "
                         "%s HINT: fix the cause and run the import again with clean",
                         s->table, s->name, line, mysql_error(R->c), mysql_errno(R->c),
                         myr_state(s->kind));
    return dsd_err_set(err, DSD_EDB, "restore failed in %s at line %u (%s%s): %s (%u); %s "
                       "HINT: fix the cause and run the import again with clean",
                       s->name, line, head, len > 120 ? "..." : "", mysql_error(R->c),
                       mysql_errno(R->c), myr_state(s->kind));
  }
  /* A statement that returns rows would leave the connection busy. */
  MYSQL_RES *res = mysql_store_result(R->c);
  if (res != NULL)
    mysql_free_result(res);
  if (s->kind == MYR_DATA) {
    my_ulonglong n = mysql_affected_rows(R->c);
    if (n != (my_ulonglong)-1) {
      s->rows += n;
      R->rows_done += n;
    }
  }
  R->statements++;
  return 0;
}

static myr_kind_t myr_kind_of(const char *stream) {
  if (strcmp(stream, "mysql/drop") == 0)
    return MYR_DROP;
  if (strcmp(stream, "mysql/schema") == 0)
    return MYR_SCHEMA;
  if (strncmp(stream, "mysql/data/", 11) == 0)
    return MYR_DATA;
  if (strcmp(stream, "mysql/post") == 0)
    return MYR_POST;
  return MYR_OTHER;
}

static myr_stream_t *myr_find(myr_t *R, const char *name) {
  for (myr_stream_t *s = R->streams; s; s = s->next)
    if (strcmp(s->name, name) == 0)
      return s;
  return NULL;
}

static void myr_table_name(myr_t *R, myr_stream_t *s) {
  size_t i;
  json_t *t;
  snprintf(s->table, sizeof s->table, "%s", s->name + 11);
  json_array_foreach(R->tables, i, t) {
    const char *st = json_string_value(json_object_get(t, "stream"));
    const char *nm = json_string_value(json_object_get(t, "name"));
    if (st && nm && strcmp(st, s->name) == 0) {
      snprintf(s->table, sizeof s->table, "%s", nm);
      return;
    }
  }
}

static int myr_new_stream(myr_t *R, const char *name, myr_stream_t **out, dsd_err_t *err) {
  myr_stream_t *s = calloc(1, sizeof *s);
  myr_stream_t **tail;
  if (s == NULL || dsd_sha256_init(&s->hash) != 0) {
    free(s);
    return dsd_err_set(err, DSD_ENOMEM, "out of memory");
  }
  s->R = R;
  snprintf(s->name, sizeof s->name, "%s", name);
  s->kind = myr_kind_of(name);
  if (s->kind == MYR_DATA)
    myr_table_name(R, s);
  s->split = dsd__mysql_split_new(myr_on_statement, s);
  if (s->split == NULL) {
    dsd_sha256_free(&s->hash);
    free(s);
    return dsd_err_set(err, DSD_ENOMEM, "out of memory");
  }
  for (tail = &R->streams; *tail; tail = &(*tail)->next)
    ;
  *tail = s;
  *out = s;
  return 0;
}

static void myr_stream_free(myr_stream_t *s) {
  dsd__mysql_split_free(s->split);
  dsd_sha256_free(&s->hash);
  free(s);
}

/* Whether the stream's statements are run (drop: only with clean). */
static int myr_runs(const myr_t *R, const myr_stream_t *s) {
  if (s->kind == MYR_OTHER)
    return 0;
  return s->kind != MYR_DROP || R->ctx->clean;
}

/* Ends every stream that is not yet finished: its last statement runs. */
static int myr_finish_streams(myr_t *R, dsd_err_t *err) {
  for (myr_stream_t *s = R->streams; s; s = s->next) {
    int rc;
    if (s->split == NULL)
      continue;
    rc = myr_runs(R, s) ? dsd__mysql_split_finish(s->split, err) : 0;
    dsd__mysql_split_free(s->split);
    s->split = NULL;
    if (rc != 0)
      return rc;
    if (s->kind == MYR_DATA)
      R->tables_done++;
  }
  return 0;
}

static int myr_read_entry(myr_t *R, dsd_archive_reader_t *r, const char *name,
                          const char *sname, unsigned chunk, char *buf, dsd_err_t *err) {
  myr_stream_t *s = myr_find(R, sname);
  int rc = 0;
  if (s == NULL && (rc = myr_new_stream(R, sname, &s, err)) < 0)
    return rc;
  if (chunk != s->last_chunk + 1)
    return dsd_err_set(err, DSD_EPROTO, "archive entry %s comes out of order (expected "
                       "chunk %u): the archive is corrupt", name, s->last_chunk + 1);
  s->last_chunk = chunk;
  if (s->kind == MYR_DATA)
    R->current = s->table;
  for (;;) {
    long n = dsd_archive_reader_read(r, buf, MYR_READ_SIZE);
    if (n < 0) {
      const dsd_err_t *re = dsd_archive_reader_error(r);
      return dsd_err_set(err, (int)n, "archive entry %s cannot be read (%s); %s "
                         "HINT: the archive is damaged", name,
                         re ? dsd_err_msg(re) : dsd_strerror((int)n), myr_state(s->kind));
    }
    if (n == 0)
      break;
    dsd_sha256_update(&s->hash, buf, (size_t)n);
    s->bytes += (uint64_t)n;
    R->bytes_done += (uint64_t)n;
    if (myr_runs(R, s) && s->split != NULL) {
      rc = dsd__mysql_split_feed(s->split, buf, (size_t)n, err);
      if (rc != 0)
        return rc;
    }
    if (myr_canceled(R))
      return DSD_ECANCELED;
  }
  myr_progress(R, s->kind == MYR_DATA ? "data" : "schema");
  return 0;
}

static int myr_verify(myr_t *R, const json_t *summary, dsd_err_t *err) {
  const json_t *streams = summary ? json_object_get(summary, "streams") : NULL;
  const char *key;
  const json_t *v;
  if (!json_is_object(streams))
    return dsd_err_set(err, DSD_EPROTO, "summary.json has no stream list: the archive is "
                       "corrupt or was not written by dsd");
  for (myr_stream_t *s = R->streams; s; s = s->next) {
    const json_t *e = json_object_get(streams, s->name);
    const json_t *jrows;
    const char *sha;
    if (!s->hashed) {
      if (dsd_sha256_final_hex(&s->hash, s->sha256) != 0)
        return dsd_err_set(err, DSD_EINTERNAL, "sha256 failed");
      s->hashed = 1;
    }
    if (e == NULL)
      return dsd_err_set(err, DSD_EPROTO, "archive stream %s is not in summary.json: the "
                         "archive is corrupt", s->name);
    sha = json_string_value(json_object_get(e, "sha256"));
    jrows = json_object_get(e, "rows");
    if ((uint64_t)json_integer_value(json_object_get(e, "bytes")) != s->bytes ||
        sha == NULL || strcmp(sha, s->sha256) != 0)
      return dsd_err_set(err, DSD_EPROTO, "the stream %s does not match summary.json: the "
                         "archive is corrupt; %s", s->name, myr_state(s->kind));
    if (s->kind == MYR_DATA && json_is_integer(jrows) &&
        (uint64_t)json_integer_value(jrows) != s->rows)
      return dsd_err_set(err, DSD_EPROTO, "table %s: %llu rows inserted, %lld in the "
                         "summary", s->table, (unsigned long long)s->rows,
                         (long long)json_integer_value(jrows));
  }
  json_object_foreach((json_t *)streams, key, v) {
    if (strncmp(key, "mysql/", 6) == 0 && myr_find(R, key) == NULL)
      return dsd_err_set(err, DSD_EPROTO, "archive stream %s of the summary is missing: "
                         "the archive is corrupt", key);
  }
  return 0;
}

int dsd__mysql_restore(const dsd_restore_ctx_t *ctx, dsd_archive_reader_t *r,
                       dsd_err_t *err) {
  myr_t R = {0};
  const json_t *m = dsd_archive_reader_manifest(r);
  const json_t *my = m ? json_object_get(m, "mysql") : NULL;
  const json_t *summary = NULL;
  char *buf = NULL;
  int rc = 0;

  R.ctx = ctx;
  R.tables = my ? json_object_get(my, "tables") : NULL;
  R.tables_total = (unsigned)json_array_size(R.tables);
  R.bytes_total = my ? (uint64_t)json_integer_value(json_object_get(my, "est_bytes")) : 0;
  buf = malloc(MYR_READ_SIZE);
  if (buf == NULL) {
    rc = dsd_err_set(err, DSD_ENOMEM, "out of memory");
    goto cleanup;
  }
  mysql_thread_init();
  rc = dsd__mysql_connect(ctx->uri, "target", &R.c, err);
  if (rc < 0)
    goto cleanup;
  myr_log(&R, "connected to the target (%s); clean %s", mysql_get_server_info(R.c),
          ctx->clean ? "on" : "off");
  for (;;) {
    const char *name;
    uint64_t size;
    char sname[MYR_NAME_MAX];
    unsigned chunk;
    if (myr_canceled(&R)) {
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
    if (dsd_archive_chunk_name_parse(name, sname, sizeof sname, &chunk) != 0) {
      myr_log(&R, "skipped unexpected archive entry %s", name);
      continue;
    }
    rc = myr_read_entry(&R, r, name, sname, chunk, buf, err);
    if (rc < 0)
      goto cleanup;
  }
  rc = myr_finish_streams(&R, err);
  if (rc < 0)
    goto cleanup;
  rc = myr_verify(&R, summary, err);
  if (rc < 0)
    goto cleanup;
  myr_log(&R, "imported %u tables, %llu rows, %lu statements", R.tables_done,
          (unsigned long long)R.rows_done, R.statements);
  if (R.bytes_total < R.bytes_done)
    R.bytes_total = R.bytes_done;
  R.current = NULL;
  myr_progress(&R, "done");
cleanup:
  if (rc == DSD_ECANCELED) {
    dsd_err_clear(err);
    dsd_err_set(err, DSD_ECANCELED, "restore canceled; the target holds part of the dump "
                "HINT: run the import again with clean (the default) to replace it");
  }
  (void)myr_kind_names;
  for (myr_stream_t *s = R.streams; s;) {
    myr_stream_t *next = s->next;
    myr_stream_free(s);
    s = next;
  }
  if (R.c != NULL)
    mysql_close(R.c);
  mysql_thread_end();
  free(buf);
  return rc;
}
