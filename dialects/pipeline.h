/*
 * pipeline.h - dump and restore, end to end: dialect -> anonymizer ->
 * archive (tar + compression) -> blob writer, and back.
 *
 * Used by the broker's job runner and by the CLI (dsd dump / dsd restore).
 * Everything streams: memory is bounded by chunk size x workers plus the
 * blob writer's part size x parts in flight, whatever the database size.
 * A failed or cancelled dump aborts its blob writer, so no object, no
 * multipart upload and no temporary file is left.
 */
#ifndef DSD_DIALECTS_PIPELINE_H
#define DSD_DIALECTS_PIPELINE_H

#include <jansson.h>
#include <stdatomic.h>
#include <stdint.h>

#include "core/archive.h"
#include "core/blob.h"
#include "core/error.h"
#include "dialects/dialect.h"

/* What the broker shows in last_operation and the CLI on its progress line:
 * a snapshot computed by the pipeline from the dialect's dsd_progress_t. */
typedef struct dsd_pipeline_progress {
  dsd_progress_t p;
  double rate_bps;      /* uncompressed bytes per second, smoothed */
  double percent;       /* 0..100, or -1 if the total is unknown */
  double eta_seconds;   /* -1 if unknown */
  uint64_t compressed_bytes;
} dsd_pipeline_progress_t;

/* Formats "dumping public.orders: 1.2 GiB of ~3.4 GiB (35%), 48 MiB/s,
 * about 45 s left" into buf. */
void dsd_pipeline_progress_format(const dsd_pipeline_progress_t *p,
                                  const char *verb, char *buf, size_t cap);

typedef struct dsd_pipeline_hooks {
  const atomic_int *cancel;                 /* borrowed; may be NULL */
  void (*progress)(void *data, const dsd_pipeline_progress_t *p);
  void (*log)(void *data, const char *line); /* lines already redacted */
  /* Forwarded to the blob writer: record the upload id before data moves. */
  int (*on_upload_created)(void *data, const char *key, const char *upload_id);
  void *data;
} dsd_pipeline_hooks_t;

typedef struct dsd_dump_opts {
  const char *dialect;       /* "pg", "mysql", "mongo"; NULL: from the URI */
  const char *source_uri;    /* borrowed; secret */
  dsd_compression_t compression;
  const json_t *anonymize;   /* borrowed rules JSON, or NULL */
  int workers;               /* 0: default */
  dsd_blob_store_t *store;   /* borrowed */
  const char *key;           /* object key of the archive */
  dsd_pipeline_hooks_t hooks;
} dsd_dump_opts_t;

typedef struct dsd_dump_result {
  uint64_t size;         /* archive bytes in the store */
  char sha256[65];       /* of the archive object */
  uint64_t rows;
  uint64_t tables;
  json_t *summary;       /* owned by the caller (json_decref); may be NULL */
} dsd_dump_result_t;

/* Runs a dump. On success the archive object exists under key and res is
 * filled; on failure or cancel (DSD_ECANCELED) nothing is left in the store
 * and err says what went wrong, without secrets. A dialect that is not built
 * gives DSD_EUNSUPPORTED with "the X dialect is not built yet". */
int dsd_pipeline_dump(const dsd_dump_opts_t *opts, dsd_dump_result_t *res,
                      dsd_err_t *err);

typedef struct dsd_restore_opts {
  const char *target_uri;    /* borrowed; secret */
  int clean;                 /* default 1 */
  int workers;
  dsd_blob_store_t *store;   /* borrowed */
  const char *key;
  dsd_pipeline_hooks_t hooks;
} dsd_restore_opts_t;

/* Imports an archive. The dialect comes from the manifest and must match
 * the target URI's scheme. On failure err names the failed object and the
 * state the target is left in. */
int dsd_pipeline_restore(const dsd_restore_opts_t *opts, dsd_err_t *err);

#endif
