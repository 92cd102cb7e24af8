/*
 * blob.h - the blob store interface: where dumps and broker state live.
 *
 * A blob store maps keys ("instances/ID/state.json", "dumps/ID.tar.zst") to
 * objects. Two backends implement it: file:// (core/blob_file.c: a directory,
 * atomic writes through a temporary file, fsync and rename) and s3://
 * (s3/blob_s3.c: S3 or an S3-compatible server, multipart uploads for
 * streaming writes).
 *
 * dsd_blob_store_open() (s3/blob_open.c) picks the backend from a URL.
 *
 * Keys are relative, '/'-separated, at most 1024 bytes, and never contain
 * "..", "//", a leading '/', a backslash or control characters;
 * dsd_blob_key_valid() checks this and every backend refuses other keys with
 * DSD_EINVAL.
 *
 * Streaming writes: dsd_blob_writer_open() returns a writer; write() any
 * number of times (bounded memory: the backend buffers at most
 * part_size x parts_in_flight), then close() to commit the object, or abort()
 * to discard everything (no multipart upload, no temporary file is left). A
 * write error is sticky: later writes return the first error, and close()
 * reports it (and aborts). Until close() succeeds, readers never see a
 * partial object.
 *
 * Thread-safety: a store may be used from several threads at once; a writer
 * or reader belongs to one thread at a time.
 */
#ifndef DSD_CORE_BLOB_H
#define DSD_CORE_BLOB_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"
#include "core/error.h"

typedef struct dsd_blob_store dsd_blob_store_t;
typedef struct dsd_blob_writer dsd_blob_writer_t;
typedef struct dsd_blob_reader dsd_blob_reader_t;

typedef struct dsd_blob_info {
  uint64_t size;
  int64_t mtime; /* seconds since the epoch, 0 if unknown */
} dsd_blob_info_t;

/* Called once per key by list(), in lexical key order. Return non-zero to
 * stop listing early (list then returns 0). The key is borrowed. */
typedef int (*dsd_blob_list_cb)(void *data, const char *key,
                                const dsd_blob_info_t *info);

typedef struct dsd_blob_writer_opts {
  size_t part_size;       /* 0: backend default (S3: 8 MiB, grows with count) */
  int parts_in_flight;    /* 0: backend default (S3: 4) */
  const char *content_type; /* may be NULL */
  /* Called (if set) right after a resumable/abortable transient resource is
   * created - for S3 the multipart upload id - so the caller can record it
   * for crash recovery. Returning non-zero fails the write. */
  int (*on_upload_created)(void *data, const char *key, const char *upload_id);
  void *data;
  /* If set, checked between parts: when it becomes non-zero the writer
   * stops and fails with DSD_ECANCELED. Borrowed. */
  const atomic_int *cancel;
} dsd_blob_writer_opts_t;

/* Backend operations. Every function returns 0 or a negative DSD_E* code
 * and, on error, sets err (which may be NULL). */
typedef struct dsd_blob_ops {
  const char *scheme; /* "file" or "s3" */
  /* Atomic whole-object write (state, small objects). */
  int (*put)(void *self, const char *key, const void *data, size_t len,
             dsd_err_t *err);
  /* Whole-object read into out (appended). DSD_ENOTFOUND if absent. */
  int (*get)(void *self, const char *key, dsd_buf_t *out, dsd_err_t *err);
  int (*head)(void *self, const char *key, dsd_blob_info_t *info,
              dsd_err_t *err);
  /* Deleting an absent key succeeds. */
  int (*del)(void *self, const char *key, dsd_err_t *err);
  int (*list)(void *self, const char *prefix, dsd_blob_list_cb cb, void *data,
              dsd_err_t *err);
  int (*writer_open)(void *self, const char *key,
                     const dsd_blob_writer_opts_t *opts,
                     dsd_blob_writer_t **out, dsd_err_t *err);
  /* Reads [offset, offset+length) (length UINT64_MAX: to the end). */
  int (*reader_open)(void *self, const char *key, uint64_t offset,
                     uint64_t length, dsd_blob_reader_t **out, dsd_err_t *err);
  /* Discards unfinished streaming writes to key left by a crashed process
   * (S3: aborts every multipart upload for the key; file: removes its
   * temporary files). upload_id may be NULL (all of them). */
  int (*abort_uploads)(void *self, const char *key, const char *upload_id,
                       dsd_err_t *err);
  /* A short description for logs and messages, without secrets. */
  const char *(*describe)(void *self);
  void (*free)(void *self);
} dsd_blob_ops_t;

struct dsd_blob_store {
  const dsd_blob_ops_t *ops;
  void *self;
};

typedef struct dsd_blob_writer_ops {
  int (*write)(dsd_blob_writer_t *w, const void *data, size_t len);
  /* Commits and frees the writer. On failure the partial object is aborted
   * and the writer is freed all the same. */
  int (*close)(dsd_blob_writer_t *w, dsd_err_t *err);
  /* Discards and frees the writer. Never fails from the caller's view. */
  void (*abort)(dsd_blob_writer_t *w);
} dsd_blob_writer_ops_t;

struct dsd_blob_writer {
  const dsd_blob_writer_ops_t *ops;
  uint64_t bytes; /* bytes accepted by write() so far */
  dsd_err_t err;  /* sticky error: first failure */
};

typedef struct dsd_blob_reader_ops {
  /* Returns bytes read (> 0), 0 at the end, or a negative code. */
  long (*read)(dsd_blob_reader_t *r, void *buf, size_t len);
  void (*close)(dsd_blob_reader_t *r);
} dsd_blob_reader_ops_t;

struct dsd_blob_reader {
  const dsd_blob_reader_ops_t *ops;
  dsd_err_t err;
};

/* Opens a store from a URL: "file:///abs/dir" or "s3://bucket[/prefix]".
 * S3 credentials and endpoint come from the AWS_* environment variables
 * (see README). On success *out is owned by the caller
 * (dsd_blob_store_free). Defined in s3/blob_open.c. */
int dsd_blob_store_open(const char *url, dsd_blob_store_t **out,
                        dsd_err_t *err);

/* Opens a file:// store rooted at dir (created if missing). */
int dsd_blob_file_open(const char *dir, dsd_blob_store_t **out,
                       dsd_err_t *err);

void dsd_blob_store_free(dsd_blob_store_t *store);

bool dsd_blob_key_valid(const char *key);

/* Convenience wrappers over store->ops (they validate the key). */
int dsd_blob_put(dsd_blob_store_t *s, const char *key, const void *data,
                 size_t len, dsd_err_t *err);
int dsd_blob_get(dsd_blob_store_t *s, const char *key, dsd_buf_t *out,
                 dsd_err_t *err);
int dsd_blob_head(dsd_blob_store_t *s, const char *key, dsd_blob_info_t *info,
                  dsd_err_t *err);
int dsd_blob_delete(dsd_blob_store_t *s, const char *key, dsd_err_t *err);
int dsd_blob_list(dsd_blob_store_t *s, const char *prefix, dsd_blob_list_cb cb,
                  void *data, dsd_err_t *err);
int dsd_blob_writer_open(dsd_blob_store_t *s, const char *key,
                         const dsd_blob_writer_opts_t *opts,
                         dsd_blob_writer_t **out, dsd_err_t *err);
int dsd_blob_writer_write(dsd_blob_writer_t *w, const void *data, size_t len);
int dsd_blob_writer_close(dsd_blob_writer_t *w, dsd_err_t *err);
void dsd_blob_writer_abort(dsd_blob_writer_t *w);
int dsd_blob_reader_open(dsd_blob_store_t *s, const char *key, uint64_t offset,
                         uint64_t length, dsd_blob_reader_t **out,
                         dsd_err_t *err);
long dsd_blob_reader_read(dsd_blob_reader_t *r, void *buf, size_t len);
void dsd_blob_reader_close(dsd_blob_reader_t *r);
int dsd_blob_abort_uploads(dsd_blob_store_t *s, const char *key,
                           const char *upload_id, dsd_err_t *err);
const char *dsd_blob_describe(dsd_blob_store_t *s);

#endif
