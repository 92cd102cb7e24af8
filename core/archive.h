/*
 * archive.h - the dump archive: a tar stream compressed by libarchive.
 *
 * Layout (format version 1; the README documents it for users):
 *
 *   manifest.json                 first entry: format, version, dialect,
 *                                 server version, options, anonymization
 *                                 rules without the salt, table list
 *   <dialect entries>             chunks of logical streams, see below
 *   summary.json                  last entry: per stream rows, bytes,
 *                                 sha256 of the uncompressed content; totals
 *
 * A logical stream (one table's data, a schema script) is written as
 * consecutive numbered chunk entries "<stream>/000001", "<stream>/000002",
 * ... each at most chunk_size bytes, because a tar header carries the entry's
 * size and nothing may be buffered whole. Concatenating a stream's chunks in
 * name order gives the stream back. Chunks of different streams may
 * interleave in the archive (several table workers write at once), but the
 * chunks of one stream appear in order.
 *
 * Writer: thread-safe. Streams are opened, written and closed by any thread;
 * a chunk is appended to the tar under the writer's lock when it fills.
 * Memory: chunk_size per open stream plus libarchive's compressor buffers.
 * The compressed bytes go to a blob writer (borrowed); their size and sha256
 * are computed on the way (for binding credentials and `dsd verify`).
 *
 * Reader: sequential; next() returns the next entry, read() its data.
 */
#ifndef DSD_CORE_ARCHIVE_H
#define DSD_CORE_ARCHIVE_H

#include <jansson.h>
#include <stdint.h>

#include "core/blob.h"
#include "core/error.h"

#define DSD_ARCHIVE_FORMAT "dsd-archive"
#define DSD_ARCHIVE_VERSION 1
#define DSD_ARCHIVE_CHUNK_DEFAULT (4u << 20) /* 4 MiB */

typedef enum {
  DSD_COMPRESS_ZSTD = 0,
  DSD_COMPRESS_GZIP = 1,
  DSD_COMPRESS_NONE = 2,
} dsd_compression_t;

/* "zstd", "gzip", "none" -> value; DSD_EINVAL otherwise. */
int dsd_compression_parse(const char *s, dsd_compression_t *out);
const char *dsd_compression_name(dsd_compression_t c);
/* ".tar.zst", ".tar.gz", ".tar" */
const char *dsd_compression_ext(dsd_compression_t c);

typedef struct dsd_archive_writer dsd_archive_writer_t;
typedef struct dsd_archive_stream dsd_archive_stream_t;
typedef struct dsd_archive_reader dsd_archive_reader_t;

typedef struct dsd_archive_writer_opts {
  dsd_compression_t compression;
  int level;          /* 0: default (zstd 3, gzip 6) */
  int threads;        /* zstd worker threads; 0: none (compress in the
                         writing thread); -1: automatic, see below */
  size_t chunk_size;  /* 0: DSD_ARCHIVE_CHUNK_DEFAULT */
} dsd_archive_writer_opts_t;

typedef struct dsd_archive_result {
  uint64_t compressed_bytes;  /* bytes handed to the blob writer */
  char sha256[65];            /* hex sha256 of those bytes */
  uint64_t total_rows;
  uint64_t total_bytes;       /* uncompressed stream bytes */
  json_t *summary;            /* the summary written; owned by the caller
                                 (json_decref); NULL on failure */
} dsd_archive_result_t;

/* The zstd worker threads that threads = -1 means: online CPUs - 1 (at
 * least 1, at most 4; 0 on one CPU) when dsd is built with libzstd
 * (DSD_HAVE_LIBZSTD: 2 MiB jobs, ~6 MiB of memory per thread), else 0:
 * libarchive's own zstd threads use 8 MiB jobs (~25 MiB per thread) and
 * hand their output over in bursts of that size, so they are only used
 * when asked for explicitly. */
int dsd_archive_zstd_auto_threads(void);

/* Opens a writer that writes into sink (borrowed: the caller closes or
 * aborts it after dsd_archive_writer_finish/abort) and writes manifest
 * (borrowed; serialized now) as the first entry. */
int dsd_archive_writer_open(dsd_blob_writer_t *sink,
                            const dsd_archive_writer_opts_t *opts,
                            const json_t *manifest,
                            dsd_archive_writer_t **out, dsd_err_t *err);

/* Writes one whole small entry (at most chunk_size bytes). Thread-safe. */
int dsd_archive_write_entry(dsd_archive_writer_t *w, const char *name,
                            const void *data, size_t len);

/* Opens a logical stream named name (e.g. "pg/data/00003"). The stream
 * belongs to the caller until closed. */
int dsd_archive_stream_open(dsd_archive_writer_t *w, const char *name,
                            dsd_archive_stream_t **out);
int dsd_archive_stream_write(dsd_archive_stream_t *s, const void *data,
                             size_t len);
/* Counts rows for the summary (the dialect knows what a row is). */
void dsd_archive_stream_add_rows(dsd_archive_stream_t *s, uint64_t rows);
/* Flushes the last chunk, records the stream in the summary, frees s. */
int dsd_archive_stream_close(dsd_archive_stream_t *s);

/* Writes summary.json (streams, totals, merged with extra if not NULL),
 * finishes compression and fills res. The sink is not closed. Frees w. */
int dsd_archive_writer_finish(dsd_archive_writer_t *w, const json_t *extra,
                              dsd_archive_result_t *res, dsd_err_t *err);
/* Frees w after a failure; open streams are discarded. */
void dsd_archive_writer_abort(dsd_archive_writer_t *w);
/* The first error of the writer (sticky), or NULL. */
const dsd_err_t *dsd_archive_writer_error(const dsd_archive_writer_t *w);
/* Compressed bytes handed to the sink so far; thread-safe, lock-free (for
 * progress reports while other threads write). */
uint64_t dsd_archive_writer_compressed_bytes(const dsd_archive_writer_t *w);

/* Opens a reader over src (borrowed); detects the compression. Reads and
 * parses manifest.json, which *manifest then borrows from the reader. */
int dsd_archive_reader_open(dsd_blob_reader_t *src,
                            dsd_archive_reader_t **out, dsd_err_t *err);
const json_t *dsd_archive_reader_manifest(const dsd_archive_reader_t *r);
/* Advances to the next entry: 1 and *name (borrowed until the next call)
 * and *size, 0 at the end, negative on error. summary.json is returned
 * like any entry; after it, the reader also keeps it parsed. */
int dsd_archive_reader_next(dsd_archive_reader_t *r, const char **name,
                            uint64_t *size, dsd_err_t *err);
/* Reads from the current entry: bytes (> 0), 0 at its end, or < 0. */
long dsd_archive_reader_read(dsd_archive_reader_t *r, void *buf, size_t len);
const json_t *dsd_archive_reader_summary(const dsd_archive_reader_t *r);
/* The first error of the reader (what made next() or read() fail), or NULL
 * when there was none. Borrowed from r. */
const dsd_err_t *dsd_archive_reader_error(const dsd_archive_reader_t *r);
void dsd_archive_reader_free(dsd_archive_reader_t *r);

/* Splits a chunk entry name "a/b/000007" into stream "a/b" (written to
 * stream, at most cap bytes) and chunk number 7. DSD_EINVAL if not a chunk. */
int dsd_archive_chunk_name_parse(const char *name, char *stream, size_t cap,
                                 unsigned *chunk);

#endif
