/*
 * mysql_restore.c - the MySQL / MariaDB dialect's restore side.
 *
 * dsd__mysql_restore() reads the mysql streams of a dump archive (layout in
 * mysql.h) in archive order and runs them, statement by statement, through
 * the C API (multi-statements off; LOAD DATA is not used): each stream has
 * its own splitter (mysql_split.c), because chunks of different tables'
 * streams interleave in the archive and a chunk may end in the middle of a
 * statement. The splitter skips DELIMITER lines, which only the mysql
 * client needs.
 *
 * Threads: the reading thread runs the drop, schema and post statements on
 * its own connection. Each table's data stream is given to one of W data
 * workers (W = the dump's workers, or the restore's), each with its own
 * connection and a bounded queue of statements (MYR_QUEUE_BYTES), so
 * tables load in parallel while the archive is read once, in order. Before
 * the post stream (triggers) and at the end, the reader waits until every
 * queue is empty. R.mu guards the queues, the workers' busy flags and werr
 * (the first worker error).
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
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/buf.h"
#include "core/hash.h"
#include "core/log.h"
#include "dialects/mysql/mysql.h"

#define MYR_READ_SIZE (256u << 10)
#define MYR_NAME_MAX 256
#define MYR_QUEUE_BYTES (4u << 20) /* statements queued per data worker */
#define MYR_MAX_WORKERS 16

typedef enum { MYR_DROP = 0, MYR_SCHEMA, MYR_DATA, MYR_POST, MYR_OTHER } myr_kind_t;

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
  int worker; /* data streams: the index of the worker that runs them */
  struct myr_stream *next;
} myr_stream_t;

typedef struct myr_job {
  myr_stream_t *s;
  unsigned line;
  size_t len;
  struct myr_job *next;
  char sql[]; /* NUL-terminated */
} myr_job_t;

typedef struct myr_worker {
  myr_t *R;
  MYSQL *c;
  pthread_t th;
  int started;
  myr_job_t *head, *tail;
  size_t queued; /* bytes of the queued statements */
  int busy;
} myr_worker_t;

struct myr {
  const dsd_restore_ctx_t *ctx;
  const json_t *tables; /* manifest mysql.tables, borrowed from the reader */
  MYSQL *c;
  myr_stream_t *streams;
  uint64_t bytes_done, bytes_total;
  _Atomic uint64_t rows_done;
  unsigned tables_done, tables_total;
  _Atomic unsigned long statements;
  const char *current;
  myr_worker_t w[MYR_MAX_WORKERS];
  int nw, next_w;
  pthread_mutex_t mu;
  pthread_cond_t cv_work, cv_space;
  int quit;
  atomic_int failed;
  dsd_err_t werr;
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
  p.rows_done = atomic_load(&R->rows_done);
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

/* Executes one statement of stream s on connection c; data statements add
 * the rows the server inserted to the stream (only its worker touches it). */
static int myr_exec(myr_t *R, MYSQL *c, myr_stream_t *s, const char *stmt, size_t len,
                    unsigned line, dsd_err_t *err) {
  MYSQL_RES *res;
  if (mysql_real_query(c, stmt, (unsigned long)len) != 0) {
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
                         s->table, s->name, line, mysql_error(c), mysql_errno(c),
                         myr_state(s->kind));
    return dsd_err_set(err, DSD_EDB, "restore failed in %s at line %u (%s%s): %s (%u); %s "
                       "HINT: fix the cause and run the import again with clean",
                       s->name, line, head, len > 120 ? "..." : "", mysql_error(c),
                       mysql_errno(c), myr_state(s->kind));
  }
  /* A statement that returns rows would leave the connection busy. */
  res = mysql_store_result(c);
  if (res != NULL)
    mysql_free_result(res);
  if (s->kind == MYR_DATA) {
    my_ulonglong n = mysql_affected_rows(c);
    if (n != (my_ulonglong)-1) {
      s->rows += n;
      atomic_fetch_add(&R->rows_done, (uint64_t)n);
    }
  }
  atomic_fetch_add(&R->statements, 1);
  return 0;
}

/* The first data worker error, copied into err. */
static int myr_worker_error(myr_t *R, dsd_err_t *err) {
  int code;
  pthread_mutex_lock(&R->mu);
  code = R->werr.code ? R->werr.code : DSD_EINTERNAL;
  dsd_err_set(err, code, "%s", dsd_err_msg(&R->werr));
  pthread_mutex_unlock(&R->mu);
  return code;
}

static void *myr_worker_main(void *arg) {
  myr_worker_t *w = arg;
  myr_t *R = w->R;
  mysql_thread_init();
  pthread_mutex_lock(&R->mu);
  for (;;) {
    myr_job_t *j;
    dsd_err_t e = {0};
    while (w->head == NULL && !R->quit)
      pthread_cond_wait(&R->cv_work, &R->mu);
    if (w->head == NULL)
      break;
    j = w->head;
    w->head = j->next;
    if (w->head == NULL)
      w->tail = NULL;
    w->busy = 1;
    pthread_mutex_unlock(&R->mu);
    /* After a failure or a cancel the queue is drained without running. */
    if (!atomic_load(&R->failed) && !myr_canceled(R) &&
        myr_exec(R, w->c, j->s, j->sql, j->len, j->line, &e) < 0) {
      pthread_mutex_lock(&R->mu);
      if (R->werr.code == 0)
        R->werr = e;
      pthread_mutex_unlock(&R->mu);
      atomic_store(&R->failed, 1);
    }
    pthread_mutex_lock(&R->mu);
    w->queued -= j->len;
    w->busy = 0;
    free(j);
    pthread_cond_broadcast(&R->cv_space);
  }
  pthread_mutex_unlock(&R->mu);
  mysql_thread_end();
  return NULL;
}

/* Waits until every data worker's queue is empty and it is idle; returns
 * the first worker error, if any. */
static int myr_drain(myr_t *R, dsd_err_t *err) {
  pthread_mutex_lock(&R->mu);
  for (;;) {
    int idle = 1;
    for (int i = 0; i < R->nw; i++)
      if (R->w[i].head != NULL || R->w[i].busy)
        idle = 0;
    if (idle)
      break;
    pthread_cond_wait(&R->cv_space, &R->mu);
  }
  pthread_mutex_unlock(&R->mu);
  if (atomic_load(&R->failed))
    return myr_worker_error(R, err);
  return myr_canceled(R) ? DSD_ECANCELED : 0;
}

/* Splitter callback: runs a statement of stream s, or queues a data
 * statement for the stream's worker (blocking while its queue is full). */
static int myr_on_statement(void *data, const char *stmt, size_t len, unsigned line,
                            dsd_err_t *err) {
  myr_stream_t *s = data;
  myr_t *R = s->R;
  myr_worker_t *w;
  myr_job_t *j;
  if (myr_canceled(R))
    return DSD_ECANCELED;
  if (atomic_load(&R->failed))
    return myr_worker_error(R, err);
  if (s->kind != MYR_DATA || R->nw == 0)
    return myr_exec(R, R->c, s, stmt, len, line, err);
  j = malloc(sizeof *j + len + 1);
  if (j == NULL)
    return dsd_err_set(err, DSD_ENOMEM, "out of memory");
  j->s = s;
  j->line = line;
  j->len = len;
  j->next = NULL;
  memcpy(j->sql, stmt, len);
  j->sql[len] = '\0';
  w = &R->w[s->worker];
  pthread_mutex_lock(&R->mu);
  while (w->queued > 0 && w->queued + len > MYR_QUEUE_BYTES && !atomic_load(&R->failed))
    pthread_cond_wait(&R->cv_space, &R->mu);
  if (w->tail)
    w->tail->next = j;
  else
    w->head = j;
  w->tail = j;
  w->queued += len;
  pthread_cond_broadcast(&R->cv_work);
  pthread_mutex_unlock(&R->mu);
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
  if (s->kind == MYR_DATA) {
    myr_table_name(R, s);
    s->worker = R->nw > 0 ? R->next_w++ % R->nw : 0;
  }
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
  int rc;
  for (int pass = 0; pass < 2; pass++) {
    /* Data (and schema) first, then the post stream once the data is in. */
    if (pass == 1 && (rc = myr_drain(R, err)) != 0)
      return rc;
    for (myr_stream_t *s = R->streams; s; s = s->next) {
      if (s->split == NULL || (s->kind == MYR_POST) != (pass == 1))
        continue;
      rc = myr_runs(R, s) ? dsd__mysql_split_finish(s->split, err) : 0;
      dsd__mysql_split_free(s->split);
      s->split = NULL;
      if (rc != 0)
        return rc;
      if (s->kind == MYR_DATA)
        R->tables_done++;
    }
  }
  return myr_drain(R, err);
}

static int myr_read_entry(myr_t *R, dsd_archive_reader_t *r, const char *name,
                          const char *sname, unsigned chunk, char *buf, dsd_err_t *err) {
  myr_stream_t *s = myr_find(R, sname);
  int rc = 0;
  if (s == NULL) {
    /* Triggers must not fire on rows still being loaded. */
    if (myr_kind_of(sname) == MYR_POST && (rc = myr_drain(R, err)) != 0)
      return rc;
    if ((rc = myr_new_stream(R, sname, &s, err)) < 0)
      return rc;
  }
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
  int rc = 0, nw;

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
  pthread_mutex_init(&R.mu, NULL);
  pthread_cond_init(&R.cv_work, NULL);
  pthread_cond_init(&R.cv_space, NULL);
  rc = dsd__mysql_connect(ctx->uri, "target", &R.c, err);
  if (rc < 0)
    goto cleanup;
  /* As many data connections as the dump had workers (or as asked), never
   * more than there are tables. */
  nw = ctx->workers;
  if (nw <= 0 && my != NULL)
    nw = (int)json_integer_value(json_object_get(my, "workers"));
  if (nw <= 0 && m != NULL)
    nw = (int)json_integer_value(json_object_get(m, "workers"));
  if (nw <= 0)
    nw = 2;
  if (nw > MYR_MAX_WORKERS)
    nw = MYR_MAX_WORKERS;
  if ((unsigned)nw > R.tables_total)
    nw = (int)R.tables_total;
  for (int i = 0; i < nw; i++) {
    myr_worker_t *w = &R.w[i];
    w->R = &R;
    rc = dsd__mysql_connect(ctx->uri, "target", &w->c, err);
    if (rc < 0)
      goto cleanup;
    R.nw = i + 1;
    if (pthread_create(&w->th, NULL, myr_worker_main, w) != 0) {
      rc = dsd_err_set(err, DSD_EINTERNAL, "cannot start a data worker");
      goto cleanup;
    }
    w->started = 1;
  }
  myr_log(&R, "connected to the target (%s) with %d data connection%s; clean %s",
          mysql_get_server_info(R.c), R.nw, R.nw == 1 ? "" : "s", ctx->clean ? "on" : "off");
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
          (unsigned long long)atomic_load(&R.rows_done), atomic_load(&R.statements));
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
  /* Stop the workers (a failure leaves queued statements: they are freed
   * without running), then free the streams they point into. */
  atomic_store(&R.failed, R.failed || rc != 0);
  pthread_mutex_lock(&R.mu);
  R.quit = 1;
  pthread_cond_broadcast(&R.cv_work);
  pthread_mutex_unlock(&R.mu);
  for (int i = 0; i < R.nw; i++) {
    if (R.w[i].started)
      pthread_join(R.w[i].th, NULL);
    for (myr_job_t *j = R.w[i].head; j;) {
      myr_job_t *next = j->next;
      free(j);
      j = next;
    }
    if (R.w[i].c != NULL)
      mysql_close(R.w[i].c);
  }
  pthread_cond_destroy(&R.cv_work);
  pthread_cond_destroy(&R.cv_space);
  pthread_mutex_destroy(&R.mu);
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
