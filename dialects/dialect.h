/*
 * dialect.h - the interface every database driver implements.
 *
 * A dialect knows how to dump one kind of database into archive streams
 * (core/archive.h) and how to restore those streams into a database. The
 * pipeline (dialects/pipeline.c) opens the blob writer, the archive writer
 * and calls the dialect; the dialect never touches the blob store.
 *
 * Connection URIs are secrets (they carry passwords): a dialect never logs
 * one, never puts one in an error message or in a child process's argv
 * (passwords go to children through the environment, PGPASSWORD /
 * MYSQL_PWD, or a passfile), and never stores one.
 */
#ifndef DSD_DIALECTS_DIALECT_H
#define DSD_DIALECTS_DIALECT_H

#include <jansson.h>
#include <stdatomic.h>
#include <stdint.h>

#include "core/archive.h"
#include "core/error.h"

struct dsd_anon_rules; /* anonymize/anonymize.h */

/* Progress as the dialect knows it; the pipeline adds rates and percent. */
typedef struct dsd_progress {
  const char *phase;        /* "schema", "data", "indexes", "done"; borrowed */
  const char *current;      /* current table, borrowed; may be NULL */
  uint64_t bytes_done;      /* uncompressed bytes produced (dump) or applied (restore) */
  uint64_t bytes_total;     /* estimate; 0 if unknown */
  uint64_t rows_done;
  uint32_t tables_done;
  uint32_t tables_total;
} dsd_progress_t;

/* Shared by dump and restore. Callbacks are called from the dialect's
 * threads; they must be thread-safe and must not block for long. */
typedef struct dsd_job_io {
  const atomic_int *cancel;  /* borrowed; non-zero: stop with DSD_ECANCELED */
  /* Progress report (throttling is the callee's business). */
  void (*progress)(void *data, const dsd_progress_t *p);
  /* One line for the operation log ("snapshot taken", "table x: 12 rows").
   * The pipeline redacts it before storing. */
  void (*log)(void *data, const char *line);
  void *data;
} dsd_job_io_t;

typedef struct dsd_dump_ctx {
  const char *uri;                       /* borrowed; secret */
  const struct dsd_anon_rules *anonymize; /* borrowed; NULL: none */
  int workers;                           /* table workers; 0: 2 */
  dsd_job_io_t io;
} dsd_dump_ctx_t;

typedef struct dsd_restore_ctx {
  const char *uri;       /* borrowed; secret */
  int clean;             /* replace the dump's objects that already exist */
  int workers;           /* 0: as many as the dump used */
  dsd_job_io_t io;
} dsd_restore_ctx_t;

typedef struct dsd_dialect {
  const char *name;            /* plan and manifest name: "pg", "mysql", "mongo" */
  const char *const *schemes;  /* URI schemes, NULL-terminated */
  /* Connects and fills manifest (borrowed, add members to it: server
   * version, table list...) before any data moves; validates the
   * anonymization rules against the source (missing table/column: error). */
  int (*dump_prepare)(const dsd_dump_ctx_t *ctx, json_t *manifest,
                      void **state, dsd_err_t *err);
  /* Writes the dialect's streams into w. Frees nothing of w. */
  int (*dump_run)(void *state, const dsd_dump_ctx_t *ctx,
                  dsd_archive_writer_t *w, dsd_err_t *err);
  void (*dump_free)(void *state);
  /* Restores from r, positioned after the manifest; consumes entries up to
   * and including summary.json. On failure err says which object failed
   * and what state the target is left in. */
  int (*restore)(const dsd_restore_ctx_t *ctx, dsd_archive_reader_t *r,
                 dsd_err_t *err);
} dsd_dialect_t;

/* The dialect named name ("pg"), or NULL when it is not built. */
const dsd_dialect_t *dsd_dialect_find(const char *name);
/* The dialect whose scheme starts uri ("postgresql://..."), or NULL. */
const dsd_dialect_t *dsd_dialect_for_uri(const char *uri);
/* The name of the dialect ("pg", "mysql", "mongo") that uri's scheme
 * belongs to, whether or not that dialect is built, or NULL for an unknown
 * scheme. Lets callers say "the mysql dialect is not built yet" rather
 * than "unknown scheme". Static string. */
const char *dsd_dialect_name_for_uri(const char *uri);

#endif
