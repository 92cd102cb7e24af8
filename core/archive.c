/*
 * archive.c - the dump archive (see archive.h for the format): a tar stream
 * (pax restricted) compressed by libarchive's zstd or gzip filter, written
 * into a blob writer and read back from a blob reader.
 *
 * Writer. libarchive is driven through archive_write_open() with our own
 * write callback, which hashes (sha256) and counts the compressed bytes on
 * their way to the blob writer. A tar writer is not thread-safe, so every
 * call into libarchive happens under the writer's one mutex; a logical
 * stream fills its chunk buffer outside the lock and only takes the lock to
 * append a whole chunk entry, so table workers contend only per chunk.
 * With zstd threads (opts.threads > 1) the lock holder only hands the chunk
 * to libzstd's worker threads, which compress while the table workers go on
 * reading; without them the whole compression runs under the lock. When
 * built with DSD_HAVE_LIBZSTD (libzstd linked), zstd is done here on the
 * uncompressed tar that libarchive writes, with 2 MiB jobs (about 50 MiB
 * less memory than libarchive's zstd filter with threads, which cannot set
 * the job size); otherwise libarchive's zstd filter does it. Each
 * stream's sha256 is computed per chunk, outside the lock, and the
 * compressed output reaches the sink in 1 MiB writes.
 * The first failure is sticky: it is kept in w->err and every later call
 * returns its code without touching libarchive or the sink again.
 *
 * Reader. archive_read_open() with a read callback over the blob reader;
 * manifest.json must be the first entry and is parsed at open. summary.json
 * is read whole when next() reaches it (it is small) so the reader can keep
 * it parsed while the caller reads it like any other entry.
 */
#include "core/archive.h"

#include <archive.h>
#include <archive_entry.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#ifdef DSD_HAVE_LIBZSTD
#include <zstd.h>
#endif

#include "core/buf.h"
#include "core/hash.h"

#define DSD__MANIFEST_NAME "manifest.json"
#define DSD__SUMMARY_NAME "summary.json"
/* The manifest and summary are read whole; a table list of a few hundred
 * thousand tables still fits, anything bigger is not a dsd archive. */
#define DSD__JSON_ENTRY_MAX (256u << 20)
#define DSD__READ_BUF (256u << 10)
#define DSD__SINK_BLOCK (1u << 20) /* bytes gathered per blob writer write */
/* zstd job size with worker threads: libzstd's default at level 3 is 8 MiB
 * per job, which costs ~25 MiB of buffers per thread; 2 MiB jobs cost a
 * quarter of that and compress as well (measured with zstd -T2 -B2MiB). */
#define DSD__ZSTD_JOB (2u << 20)
#define DSD__ZSTD_AUTO_MAX 4

/* ------------------------------------------------------------------ */
/* Compression names                                                   */

int dsd_compression_parse(const char *s, dsd_compression_t *out) {
  if (s == NULL)
    return DSD_EINVAL;
  if (strcmp(s, "zstd") == 0)
    *out = DSD_COMPRESS_ZSTD;
  else if (strcmp(s, "gzip") == 0)
    *out = DSD_COMPRESS_GZIP;
  else if (strcmp(s, "none") == 0)
    *out = DSD_COMPRESS_NONE;
  else
    return DSD_EINVAL;
  return 0;
}

const char *dsd_compression_name(dsd_compression_t c) {
  switch (c) {
  case DSD_COMPRESS_ZSTD: return "zstd";
  case DSD_COMPRESS_GZIP: return "gzip";
  case DSD_COMPRESS_NONE: return "none";
  }
  return "unknown";
}

const char *dsd_compression_ext(dsd_compression_t c) {
  switch (c) {
  case DSD_COMPRESS_ZSTD: return ".tar.zst";
  case DSD_COMPRESS_GZIP: return ".tar.gz";
  case DSD_COMPRESS_NONE: return ".tar";
  }
  return ".tar";
}

/* ------------------------------------------------------------------ */
/* Chunk names                                                         */

int dsd_archive_chunk_name_parse(const char *name, char *stream, size_t cap,
                                 unsigned *chunk) {
  const char *slash = strrchr(name, '/');
  unsigned long v = 0;
  size_t digits, slen;

  if (slash == NULL || slash == name)
    return DSD_EINVAL;
  digits = strlen(slash + 1);
  /* Chunk numbers are written with at least six digits; fewer means some
   * other file (a user could have added one by hand). */
  if (digits < 6 || digits > 9)
    return DSD_EINVAL;
  for (const char *p = slash + 1; *p; p++) {
    if (*p < '0' || *p > '9')
      return DSD_EINVAL;
    v = v * 10 + (unsigned long)(*p - '0');
  }
  if (v == 0)
    return DSD_EINVAL;
  slen = (size_t)(slash - name);
  if (slen + 1 > cap)
    return DSD_EINVAL;
  memcpy(stream, name, slen);
  stream[slen] = '\0';
  *chunk = (unsigned)v;
  return 0;
}

/* ------------------------------------------------------------------ */
/* Writer                                                              */

struct dsd_archive_stream {
  dsd_archive_writer_t *w;
  char *name;
  char *buf; /* chunk_size bytes; filled outside the writer lock */
  size_t len;
  unsigned chunk; /* chunks written so far */
  uint64_t rows;
  uint64_t bytes;
  dsd_sha256_t hash;
  struct dsd_archive_stream *next, *prev; /* the writer's open list */
};

struct dsd_archive_writer {
  pthread_mutex_t lock; /* guards everything below except compressed/failed */
  struct archive *a;
  dsd_blob_writer_t *sink; /* borrowed */
  dsd_sha256_t hash;       /* of the compressed bytes */
  _Atomic uint64_t compressed;
  atomic_int failed;       /* the sticky error code, readable without lock */
  size_t chunk_size;
  json_t *streams;         /* summary: name -> {rows, bytes, sha256, chunks} */
  uint64_t total_rows;
  uint64_t total_bytes;
  dsd_archive_stream_t *open; /* streams opened and not closed */
  int discard;             /* aborting: the write callback drops data */
  char *obuf;              /* compressed bytes gathered for the sink */
  size_t olen, obuf_cap;
#ifdef DSD_HAVE_LIBZSTD
  ZSTD_CCtx *zc;           /* zstd done here rather than by libarchive */
#endif
  dsd_err_t err;
};

/* Records the writer's first error; called with the lock held. */
static int dsd__writer_fail(dsd_archive_writer_t *w, int code, const char *what,
                            const char *detail) {
  if (w->err.code == 0) {
    dsd_err_set(&w->err, code, "%s%s%s", what, detail ? ": " : "",
                detail ? detail : "");
    atomic_store(&w->failed, code);
  }
  return w->err.code;
}

/* Hands len bytes to the blob writer, hashing and counting them; called
 * with the lock held (from libarchive's callbacks). */
static int dsd__sink_put(dsd_archive_writer_t *w, const void *buf, size_t len) {
  int rc;

  if (len == 0)
    return 0;
  rc = dsd_blob_writer_write(w->sink, buf, len);
  if (rc < 0) {
    /* The blob writer keeps its own sticky error with the detail. */
    const char *m = w->sink->err.code ? dsd_err_msg(&w->sink->err) : dsd_strerror(rc);
    return dsd__writer_fail(w, rc, "cannot write the archive", m);
  }
  if (dsd_sha256_update(&w->hash, buf, len) < 0)
    return dsd__writer_fail(w, DSD_EINTERNAL, "cannot hash the archive", NULL);
  atomic_fetch_add(&w->compressed, (uint64_t)len);
  return 0;
}

#ifdef DSD_HAVE_LIBZSTD
/* Compresses len bytes of tar (mode ZSTD_e_continue) or ends the frame
 * (ZSTD_e_end, len 0) into w->obuf, handing each full buffer to the sink.
 * With worker threads, libzstd copies the input into its current job and
 * returns; it only blocks when every worker is busy. Called with the lock
 * held. */
static int dsd__zstd_step(dsd_archive_writer_t *w, const void *buf, size_t len,
                          ZSTD_EndDirective mode) {
  ZSTD_inBuffer in = {buf, len, 0};
  int rc;

  for (;;) {
    ZSTD_outBuffer out = {w->obuf + w->olen, w->obuf_cap - w->olen, 0};
    size_t left = ZSTD_compressStream2(w->zc, &out, &in, mode);
    if (ZSTD_isError(left))
      return dsd__writer_fail(w, DSD_EINTERNAL, "cannot compress the archive",
                              ZSTD_getErrorName(left));
    w->olen += out.pos;
    if (w->olen == w->obuf_cap || (mode == ZSTD_e_end && left == 0)) {
      rc = dsd__sink_put(w, w->obuf, w->olen);
      w->olen = 0;
      if (rc < 0)
        return rc;
    }
    if (mode == ZSTD_e_end ? left == 0 : in.pos == in.size)
      return 0;
  }
}
#endif

/* libarchive writes its output in 10 KiB blocks; they are gathered into
 * w->obuf so that the blob writer gets few large writes (a file write, or
 * an S3 part buffer). The buffer is kept here rather than by raising
 * libarchive's block size because libarchive 3.6 does not free its own
 * block buffer when the archive is freed in the fatal state; for the same
 * reason a failure is not reported to libarchive (which would enter that
 * state when it comes up in archive_write_header): the bytes are dropped,
 * the error stays in w->err, and dsd__write_entry_locked and finish check
 * w->err after every libarchive call. */
static la_ssize_t dsd__sink_write(struct archive *a, void *data,
                                  const void *buf, size_t len) {
  dsd_archive_writer_t *w = data;
  const char *p = buf;
  size_t left = len;

  if (w->discard || w->err.code != 0)
    return (la_ssize_t)len;
#ifdef DSD_HAVE_LIBZSTD
  if (w->zc != NULL) {
    dsd__zstd_step(w, buf, len, ZSTD_e_continue);
    return (la_ssize_t)len;
  }
#endif
  while (left > 0) {
    size_t n = w->obuf_cap - w->olen;
    if (n > left)
      n = left;
    memcpy(w->obuf + w->olen, p, n);
    w->olen += n;
    p += n;
    left -= n;
    if (w->olen == w->obuf_cap) {
      int rc = dsd__sink_put(w, w->obuf, w->olen);
      w->olen = 0;
      if (rc < 0)
        break; /* recorded in w->err; see above */
    }
  }
  return (la_ssize_t)len;
}

static int dsd__sink_open(struct archive *a, void *data) { return ARCHIVE_OK; }

/* Called by archive_write_close after the last block: the gathered rest
 * goes to the blob writer (dropped when aborting). */
static int dsd__sink_close(struct archive *a, void *data) {
  dsd_archive_writer_t *w = data;
  int rc = 0;

  if (!w->discard && w->err.code == 0) {
#ifdef DSD_HAVE_LIBZSTD
    if (w->zc != NULL)
      rc = dsd__zstd_step(w, NULL, 0, ZSTD_e_end);
    else
#endif
      rc = dsd__sink_put(w, w->obuf, w->olen);
  }
  w->olen = 0;
  if (rc < 0) {
    archive_set_error(a, EIO, "blob writer failed");
    return ARCHIVE_FATAL;
  }
  return ARCHIVE_OK;
}

/* Appends one regular-file entry; called with the lock held. */
static int dsd__write_entry_locked(dsd_archive_writer_t *w, const char *name,
                                   const void *data, size_t len) {
  struct archive_entry *e = NULL;
  const char *p = data;
  size_t done = 0;
  int rc = 0;

  if (w->err.code != 0)
    return w->err.code;
  e = archive_entry_new();
  if (e == NULL)
    return dsd__writer_fail(w, DSD_ENOMEM, "cannot write the archive", "out of memory");
  archive_entry_set_pathname(e, name);
  archive_entry_set_size(e, (la_int64_t)len);
  archive_entry_set_filetype(e, AE_IFREG);
  archive_entry_set_perm(e, 0644);
  archive_entry_set_mtime(e, time(NULL), 0);
  /* The sink callback reports its failures in w->err only (see
   * dsd__sink_write), so w->err is checked after every call. */
  if (archive_write_header(w->a, e) < ARCHIVE_WARN || w->err.code != 0) {
    rc = dsd__writer_fail(w, DSD_EIO, "cannot write the archive entry header",
                          archive_error_string(w->a));
    goto cleanup;
  }
  while (done < len) {
    la_ssize_t n = archive_write_data(w->a, p + done, len - done);
    if (n <= 0 || w->err.code != 0) {
      rc = dsd__writer_fail(w, DSD_EIO, "cannot write the archive entry",
                            archive_error_string(w->a));
      goto cleanup;
    }
    done += (size_t)n;
  }
  if (archive_write_finish_entry(w->a) < ARCHIVE_WARN || w->err.code != 0) {
    rc = dsd__writer_fail(w, DSD_EIO, "cannot finish the archive entry",
                          archive_error_string(w->a));
    goto cleanup;
  }
cleanup:
  archive_entry_free(e);
  return rc;
}

int dsd_archive_zstd_auto_threads(void) {
#ifdef DSD_HAVE_LIBZSTD
  /* One CPU is left to the threads that feed the compressor (table
   * workers, libpq); on 2 CPUs one worker already takes compression off
   * them, and a second one only competes with them (measured). */
  long n = sysconf(_SC_NPROCESSORS_ONLN) - 1;
  if (n < 1)
    return 0;
  return n > DSD__ZSTD_AUTO_MAX ? DSD__ZSTD_AUTO_MAX : (int)n;
#else
  return 0;
#endif
}

static int dsd__set_filter(dsd_archive_writer_t *w,
                           const dsd_archive_writer_opts_t *o, dsd_err_t *err) {
  char v[32];
  int r;

  switch (o->compression) {
  case DSD_COMPRESS_ZSTD:
#ifdef DSD_HAVE_LIBZSTD
    /* libarchive 3.6 cannot set libzstd's job size (see DSD__ZSTD_JOB), so
     * the tar goes out uncompressed and the sink callback compresses it:
     * the same single zstd frame, with a content checksum as the zstd tool
     * writes by default. */
    w->zc = ZSTD_createCCtx();
    if (w->zc == NULL)
      return dsd_err_set(err, DSD_ENOMEM, "out of memory");
    if (ZSTD_isError(ZSTD_CCtx_setParameter(w->zc, ZSTD_c_compressionLevel,
                                            o->level > 0 ? o->level : 3)) ||
        ZSTD_isError(ZSTD_CCtx_setParameter(w->zc, ZSTD_c_checksumFlag, 1)) ||
        (o->threads > 0 &&
         (ZSTD_isError(ZSTD_CCtx_setParameter(w->zc, ZSTD_c_nbWorkers, o->threads)) ||
          ZSTD_isError(ZSTD_CCtx_setParameter(w->zc, ZSTD_c_jobSize, (int)DSD__ZSTD_JOB)))))
      return dsd_err_set(err, DSD_EUNSUPPORTED,
                         "cannot set up zstd compression: this libzstd lacks threads or "
                         "the level is out of range");
    r = archive_write_add_filter_none(w->a);
    break;
#endif
    r = archive_write_add_filter_zstd(w->a);
    if (r != ARCHIVE_OK)
      break;
    snprintf(v, sizeof v, "%d", o->level > 0 ? o->level : 3);
    r = archive_write_set_filter_option(w->a, "zstd", "compression-level", v);
    if (r != ARCHIVE_OK)
      break;
    if (o->threads > 0) {
      snprintf(v, sizeof v, "%d", o->threads);
      r = archive_write_set_filter_option(w->a, "zstd", "threads", v);
    }
    break;
  case DSD_COMPRESS_GZIP:
    r = archive_write_add_filter_gzip(w->a);
    if (r != ARCHIVE_OK)
      break;
    snprintf(v, sizeof v, "%d", o->level > 0 ? o->level : 6);
    r = archive_write_set_filter_option(w->a, "gzip", "compression-level", v);
    break;
  case DSD_COMPRESS_NONE:
    r = archive_write_add_filter_none(w->a);
    break;
  default:
    return dsd_err_set(err, DSD_EINVAL, "unknown compression %d", (int)o->compression);
  }
  if (r != ARCHIVE_OK)
    return dsd_err_set(err, DSD_EUNSUPPORTED, "cannot set up %s compression: %s",
                       dsd_compression_name(o->compression),
                       archive_error_string(w->a) ? archive_error_string(w->a) : "unknown error");
  return 0;
}

int dsd_archive_writer_open(dsd_blob_writer_t *sink,
                            const dsd_archive_writer_opts_t *opts,
                            const json_t *manifest,
                            dsd_archive_writer_t **out, dsd_err_t *err) {
  dsd_archive_writer_opts_t o = {0};
  dsd_archive_writer_t *w = NULL;
  json_t *m = NULL;
  char *text = NULL;
  int rc = 0;

  *out = NULL;
  if (opts != NULL)
    o = *opts;
  if (o.threads < 0)
    o.threads = dsd_archive_zstd_auto_threads();
  if (manifest == NULL || !json_is_object(manifest))
    return dsd_err_set(err, DSD_EINVAL, "the archive manifest must be a json object");
  w = calloc(1, sizeof *w);
  if (w == NULL)
    return dsd_err_set(err, DSD_ENOMEM, "out of memory");
  pthread_mutex_init(&w->lock, NULL);
  w->sink = sink;
  w->chunk_size = o.chunk_size ? o.chunk_size : DSD_ARCHIVE_CHUNK_DEFAULT;
  /* Not more than a chunk, so that a failing sink is noticed within about
   * a chunk of data. */
  w->obuf_cap = w->chunk_size < DSD__SINK_BLOCK ? w->chunk_size : DSD__SINK_BLOCK;
  w->obuf = malloc(w->obuf_cap);
  atomic_init(&w->compressed, 0);
  atomic_init(&w->failed, 0);
  w->streams = json_object();
  if (w->streams == NULL || w->obuf == NULL || dsd_sha256_init(&w->hash) < 0) {
    rc = dsd_err_set(err, DSD_ENOMEM, "out of memory");
    goto cleanup;
  }
  w->a = archive_write_new();
  if (w->a == NULL) {
    rc = dsd_err_set(err, DSD_ENOMEM, "out of memory");
    goto cleanup;
  }
  if (archive_write_set_format_pax_restricted(w->a) != ARCHIVE_OK) {
    rc = dsd_err_set(err, DSD_EINTERNAL, "cannot set the tar format: %s",
                     archive_error_string(w->a));
    goto cleanup;
  }
  rc = dsd__set_filter(w, &o, err);
  if (rc < 0)
    goto cleanup;
  /* No padding of the last block: the object is exactly the compressed
   * stream, so its size and sha256 mean something to a user. */
  archive_write_set_bytes_in_last_block(w->a, 1);
  if (archive_write_open(w->a, w, dsd__sink_open, dsd__sink_write,
                         dsd__sink_close) != ARCHIVE_OK) {
    rc = dsd_err_set(err, DSD_EIO, "cannot open the archive writer: %s",
                     w->err.code ? dsd_err_msg(&w->err) : archive_error_string(w->a));
    goto cleanup;
  }

  /* format and version go first so that a reader (or a human with jq) sees
   * them even if the caller forgot them; the caller's members follow. */
  m = json_object();
  if (m == NULL || json_object_set_new(m, "format", json_string(DSD_ARCHIVE_FORMAT)) ||
      json_object_set_new(m, "version", json_integer(DSD_ARCHIVE_VERSION)) ||
      json_object_update(m, (json_t *)manifest) ||
      json_object_set_new(m, "format", json_string(DSD_ARCHIVE_FORMAT)) ||
      json_object_set_new(m, "version", json_integer(DSD_ARCHIVE_VERSION))) {
    rc = dsd_err_set(err, DSD_ENOMEM, "out of memory");
    goto cleanup;
  }
  text = json_dumps(m, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
  if (text == NULL) {
    rc = dsd_err_set(err, DSD_ENOMEM, "cannot serialize the manifest");
    goto cleanup;
  }
  rc = dsd__write_entry_locked(w, DSD__MANIFEST_NAME, text, strlen(text));
  if (rc < 0) {
    dsd_err_set(err, rc, "%s", dsd_err_msg(&w->err));
    goto cleanup;
  }
  *out = w;
  w = NULL;
cleanup:
  free(text);
  json_decref(m);
  if (w != NULL)
    dsd_archive_writer_abort(w);
  return rc;
}

const dsd_err_t *dsd_archive_writer_error(const dsd_archive_writer_t *w) {
  if (atomic_load(&((dsd_archive_writer_t *)w)->failed) == 0)
    return NULL;
  return &w->err;
}

uint64_t dsd_archive_writer_compressed_bytes(const dsd_archive_writer_t *w) {
  return atomic_load(&((dsd_archive_writer_t *)w)->compressed);
}

int dsd_archive_write_entry(dsd_archive_writer_t *w, const char *name,
                            const void *data, size_t len) {
  int rc;

  if (len > w->chunk_size) {
    pthread_mutex_lock(&w->lock);
    rc = dsd__writer_fail(w, DSD_ETOOBIG, "archive entry too large", name);
    pthread_mutex_unlock(&w->lock);
    return rc;
  }
  pthread_mutex_lock(&w->lock);
  rc = dsd__write_entry_locked(w, name, data, len);
  pthread_mutex_unlock(&w->lock);
  return rc;
}

static void dsd__stream_free(dsd_archive_stream_t *s) {
  dsd_sha256_free(&s->hash);
  free(s->name);
  free(s->buf);
  free(s);
}

int dsd_archive_stream_open(dsd_archive_writer_t *w, const char *name,
                            dsd_archive_stream_t **out) {
  dsd_archive_stream_t *s = NULL;
  int rc = 0;

  *out = NULL;
  pthread_mutex_lock(&w->lock);
  if (w->err.code != 0) {
    rc = w->err.code;
    goto cleanup;
  }
  if (name == NULL || *name == '\0' || strcmp(name, DSD__MANIFEST_NAME) == 0 ||
      strcmp(name, DSD__SUMMARY_NAME) == 0) {
    rc = dsd__writer_fail(w, DSD_EINVAL, "invalid archive stream name", name);
    goto cleanup;
  }
  if (json_object_get(w->streams, name) != NULL) {
    rc = dsd__writer_fail(w, DSD_EEXIST, "archive stream written twice", name);
    goto cleanup;
  }
  for (dsd_archive_stream_t *o = w->open; o; o = o->next)
    if (strcmp(o->name, name) == 0) {
      rc = dsd__writer_fail(w, DSD_EEXIST, "archive stream opened twice", name);
      goto cleanup;
    }
  s = calloc(1, sizeof *s);
  if (s == NULL || (s->name = strdup(name)) == NULL ||
      (s->buf = malloc(w->chunk_size)) == NULL || dsd_sha256_init(&s->hash) < 0) {
    rc = dsd__writer_fail(w, DSD_ENOMEM, "cannot open an archive stream", "out of memory");
    goto cleanup;
  }
  s->w = w;
  s->next = w->open;
  if (w->open)
    w->open->prev = s;
  w->open = s;
  *out = s;
  s = NULL;
cleanup:
  pthread_mutex_unlock(&w->lock);
  if (s != NULL)
    dsd__stream_free(s);
  return rc;
}

/* Appends s's buffered bytes as the next chunk entry. */
static int dsd__stream_flush(dsd_archive_stream_t *s) {
  char name[1200];
  int rc;

  if (snprintf(name, sizeof name, "%s/%06u", s->name, s->chunk + 1) >= (int)sizeof name) {
    pthread_mutex_lock(&s->w->lock);
    rc = dsd__writer_fail(s->w, DSD_EINVAL, "archive stream name too long", NULL);
    pthread_mutex_unlock(&s->w->lock);
    return rc;
  }
  /* Hashed here, outside the lock, once per chunk (see stream_write). */
  if (s->len > 0 && dsd_sha256_update(&s->hash, s->buf, s->len) < 0) {
    pthread_mutex_lock(&s->w->lock);
    rc = dsd__writer_fail(s->w, DSD_EINTERNAL, "cannot hash an archive stream", s->name);
    pthread_mutex_unlock(&s->w->lock);
    return rc;
  }
  pthread_mutex_lock(&s->w->lock);
  rc = dsd__write_entry_locked(s->w, name, s->buf, s->len);
  pthread_mutex_unlock(&s->w->lock);
  if (rc == 0) {
    s->chunk++;
    s->len = 0;
  }
  return rc;
}

int dsd_archive_stream_write(dsd_archive_stream_t *s, const void *data,
                             size_t len) {
  const char *p = data;
  size_t cap = s->w->chunk_size;
  int rc;

  rc = atomic_load(&s->w->failed);
  if (rc != 0)
    return rc;
  if (len == 0)
    return 0;
  /* The stream's sha256 is taken over whole chunks in dsd__stream_flush:
   * callers write a row at a time, and one hash update per row costs more
   * than the hashing itself. */
  s->bytes += len;
  while (len > 0) {
    size_t n = cap - s->len;
    if (n > len)
      n = len;
    memcpy(s->buf + s->len, p, n);
    s->len += n;
    p += n;
    len -= n;
    if (s->len == cap) {
      rc = dsd__stream_flush(s);
      if (rc < 0)
        return rc;
    }
  }
  return 0;
}

void dsd_archive_stream_add_rows(dsd_archive_stream_t *s, uint64_t rows) {
  s->rows += rows;
}

/* Unlinks s from its writer's open list; called with the lock held. */
static void dsd__stream_unlink(dsd_archive_stream_t *s) {
  if (s->prev)
    s->prev->next = s->next;
  else
    s->w->open = s->next;
  if (s->next)
    s->next->prev = s->prev;
}

int dsd_archive_stream_close(dsd_archive_stream_t *s) {
  dsd_archive_writer_t *w = s->w;
  char hex[DSD_SHA256_HEX_LEN + 1];
  json_t *st = NULL;
  int rc = atomic_load(&w->failed);

  /* An empty stream still gets one (empty) chunk so that every stream of
   * the summary is visible in the tar listing. */
  if (rc == 0 && (s->len > 0 || s->chunk == 0))
    rc = dsd__stream_flush(s);
  if (rc == 0 && dsd_sha256_final_hex(&s->hash, hex) < 0)
    rc = DSD_EINTERNAL;
  pthread_mutex_lock(&w->lock);
  dsd__stream_unlink(s);
  if (rc == 0) {
    st = json_pack("{s:I, s:I, s:s, s:I}", "rows", (json_int_t)s->rows, "bytes",
                   (json_int_t)s->bytes, "sha256", hex, "chunks", (json_int_t)s->chunk);
    if (st == NULL || json_object_set_new(w->streams, s->name, st) != 0)
      rc = dsd__writer_fail(w, DSD_ENOMEM, "cannot record an archive stream", "out of memory");
    w->total_rows += s->rows;
    w->total_bytes += s->bytes;
  } else if (w->err.code == 0) {
    rc = dsd__writer_fail(w, rc, "cannot close an archive stream", s->name);
  }
  pthread_mutex_unlock(&w->lock);
  dsd__stream_free(s);
  return rc;
}

static void dsd__writer_free(dsd_archive_writer_t *w) {
  while (w->open != NULL) {
    dsd_archive_stream_t *s = w->open;
    w->open = s->next;
    dsd__stream_free(s);
  }
  if (w->a != NULL)
    archive_write_free(w->a);
#ifdef DSD_HAVE_LIBZSTD
  ZSTD_freeCCtx(w->zc);
#endif
  free(w->obuf);
  dsd_sha256_free(&w->hash);
  json_decref(w->streams);
  pthread_mutex_destroy(&w->lock);
  free(w);
}

int dsd_archive_writer_finish(dsd_archive_writer_t *w, const json_t *extra,
                              dsd_archive_result_t *res, dsd_err_t *err) {
  json_t *sum = NULL;
  char *text = NULL;
  int rc = 0;

  memset(res, 0, sizeof *res);
  pthread_mutex_lock(&w->lock);
  if (w->err.code != 0) {
    rc = w->err.code;
    goto cleanup;
  }
  if (w->open != NULL) {
    rc = dsd__writer_fail(w, DSD_EINTERNAL, "archive stream left open", w->open->name);
    goto cleanup;
  }
  sum = json_pack("{s:s, s:i, s:O, s:{s:I, s:I, s:I}}", "format", DSD_ARCHIVE_FORMAT,
                  "version", DSD_ARCHIVE_VERSION, "streams", w->streams, "totals",
                  "rows", (json_int_t)w->total_rows, "bytes", (json_int_t)w->total_bytes,
                  "streams", (json_int_t)json_object_size(w->streams));
  if (sum == NULL || (extra != NULL && json_is_object(extra) &&
                      json_object_update_missing(sum, (json_t *)extra) != 0)) {
    rc = dsd__writer_fail(w, DSD_ENOMEM, "cannot build the summary", "out of memory");
    goto cleanup;
  }
  text = json_dumps(sum, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_SORT_KEYS);
  if (text == NULL) {
    rc = dsd__writer_fail(w, DSD_ENOMEM, "cannot serialize the summary", NULL);
    goto cleanup;
  }
  rc = dsd__write_entry_locked(w, DSD__SUMMARY_NAME, text, strlen(text));
  if (rc < 0)
    goto cleanup;
  /* Closing flushes the compressor's last frame through the callback. */
  if (archive_write_close(w->a) != ARCHIVE_OK || w->err.code != 0) {
    rc = dsd__writer_fail(w, DSD_EIO, "cannot finish the archive", archive_error_string(w->a));
    goto cleanup;
  }
  if (dsd_sha256_final_hex(&w->hash, res->sha256) < 0) {
    rc = dsd__writer_fail(w, DSD_EINTERNAL, "cannot hash the archive", NULL);
    goto cleanup;
  }
  res->compressed_bytes = atomic_load(&w->compressed);
  res->total_rows = w->total_rows;
  res->total_bytes = w->total_bytes;
  res->summary = json_incref(sum);
cleanup:
  if (rc < 0) {
    dsd_err_set(err, rc, "%s", dsd_err_msg(&w->err));
    w->discard = 1;
  }
  pthread_mutex_unlock(&w->lock);
  free(text);
  json_decref(sum);
  dsd__writer_free(w);
  return rc;
}

void dsd_archive_writer_abort(dsd_archive_writer_t *w) {
  if (w == NULL)
    return;
  pthread_mutex_lock(&w->lock);
  /* archive_write_free() closes, which would flush the compressor into the
   * sink; the sink is being aborted, so the bytes are dropped instead. */
  w->discard = 1;
  pthread_mutex_unlock(&w->lock);
  dsd__writer_free(w);
}

/* ------------------------------------------------------------------ */
/* Reader                                                              */

struct dsd_archive_reader {
  struct archive *a;
  dsd_blob_reader_t *src; /* borrowed */
  char *rbuf;
  json_t *manifest;
  json_t *summary;
  dsd_buf_t mem;   /* summary.json content while the caller reads it */
  size_t mempos;
  int in_mem;
  int at_end;
  dsd_err_t err;
};

static la_ssize_t dsd__src_read(struct archive *a, void *data,
                                const void **buf) {
  dsd_archive_reader_t *r = data;
  long n = dsd_blob_reader_read(r->src, r->rbuf, DSD__READ_BUF);

  if (n < 0) {
    dsd_err_set(&r->err, (int)n, "cannot read the archive: %s",
                r->src->err.code ? dsd_err_msg(&r->src->err) : dsd_strerror((int)n));
    archive_set_error(a, EIO, "blob reader failed");
    return -1;
  }
  *buf = r->rbuf;
  return (la_ssize_t)n;
}

static int dsd__reader_fail(dsd_archive_reader_t *r, int code, const char *what) {
  /* An error of the blob reader (set in the callback) wins: it is the cause. */
  if (r->err.code == 0)
    dsd_err_set(&r->err, code, "%s: %s", what,
                archive_error_string(r->a) ? archive_error_string(r->a) : "unknown error");
  return r->err.code;
}

/* Reads the current entry whole into out (which it appends to). */
static int dsd__read_whole(dsd_archive_reader_t *r, const char *name, dsd_buf_t *out) {
  char tmp[65536];
  la_ssize_t n;

  for (;;) {
    n = archive_read_data(r->a, tmp, sizeof tmp);
    if (n == 0)
      return 0;
    if (n < 0)
      return dsd__reader_fail(r, DSD_EPROTO, "cannot read the archive");
    if (out->len + (size_t)n > DSD__JSON_ENTRY_MAX)
      return dsd_err_set(&r->err, DSD_ETOOBIG, "%s is too large for a dsd archive", name);
    if (dsd_buf_append(out, tmp, (size_t)n) < 0)
      return dsd_err_set(&r->err, DSD_ENOMEM, "out of memory");
  }
}

static int dsd__parse_json_entry(dsd_archive_reader_t *r, const char *name,
                                 const dsd_buf_t *b, json_t **out) {
  json_error_t je;
  *out = json_loadb(b->data ? b->data : "", b->len, 0, &je);
  if (*out == NULL || !json_is_object(*out)) {
    json_decref(*out);
    *out = NULL;
    return dsd_err_set(&r->err, DSD_EPROTO, "%s of the archive is not a json object: %s",
                       name, je.text);
  }
  return 0;
}

int dsd_archive_reader_open(dsd_blob_reader_t *src, dsd_archive_reader_t **out,
                            dsd_err_t *err) {
  dsd_archive_reader_t *r = NULL;
  struct archive_entry *e = NULL;
  dsd_buf_t b = DSD_BUF_INIT;
  const char *fmt;
  json_t *ver;
  int rc = 0;

  *out = NULL;
  r = calloc(1, sizeof *r);
  if (r == NULL || (r->rbuf = malloc(DSD__READ_BUF)) == NULL) {
    rc = dsd_err_set(err, DSD_ENOMEM, "out of memory");
    goto cleanup;
  }
  r->src = src;
  dsd_buf_init(&r->mem);
  r->a = archive_read_new();
  if (r->a == NULL) {
    rc = dsd_err_set(err, DSD_ENOMEM, "out of memory");
    goto cleanup;
  }
  archive_read_support_filter_all(r->a);
  archive_read_support_format_tar(r->a);
  if (archive_read_open(r->a, r, NULL, dsd__src_read, NULL) != ARCHIVE_OK) {
    rc = dsd__reader_fail(r, DSD_EPROTO, "this is not a dsd archive (a compressed tar)");
    goto fail;
  }
  if (archive_read_next_header(r->a, &e) < ARCHIVE_WARN) {
    rc = dsd__reader_fail(r, DSD_EPROTO, "this is not a dsd archive (a compressed tar)");
    goto fail;
  }
  if (strcmp(archive_entry_pathname(e), DSD__MANIFEST_NAME) != 0) {
    rc = dsd_err_set(&r->err, DSD_EPROTO,
                     "this is not a dsd archive: its first entry is \"%s\", not manifest.json",
                     archive_entry_pathname(e));
    goto fail;
  }
  rc = dsd__read_whole(r, DSD__MANIFEST_NAME, &b);
  if (rc < 0)
    goto fail;
  rc = dsd__parse_json_entry(r, DSD__MANIFEST_NAME, &b, &r->manifest);
  if (rc < 0)
    goto fail;
  fmt = json_string_value(json_object_get(r->manifest, "format"));
  ver = json_object_get(r->manifest, "version");
  if (fmt == NULL || strcmp(fmt, DSD_ARCHIVE_FORMAT) != 0) {
    rc = dsd_err_set(&r->err, DSD_EPROTO,
                     "this is not a dsd archive: manifest format is \"%s\", not \"%s\"",
                     fmt ? fmt : "(missing)", DSD_ARCHIVE_FORMAT);
    goto fail;
  }
  if (!json_is_integer(ver) || json_integer_value(ver) != DSD_ARCHIVE_VERSION) {
    rc = dsd_err_set(&r->err, DSD_EUNSUPPORTED,
                     "the archive has format version %lld but this dsd reads version %d\n"
                     "HINT: use the dsd release that wrote the archive or a newer one",
                     json_is_integer(ver) ? (long long)json_integer_value(ver) : -1LL,
                     DSD_ARCHIVE_VERSION);
    goto fail;
  }
  *out = r;
  r = NULL;
  goto cleanup;
fail:
  dsd_err_set(err, rc, "%s", dsd_err_msg(&r->err));
cleanup:
  dsd_buf_free(&b);
  if (r != NULL)
    dsd_archive_reader_free(r);
  return rc;
}

const json_t *dsd_archive_reader_manifest(const dsd_archive_reader_t *r) {
  return r->manifest;
}

const json_t *dsd_archive_reader_summary(const dsd_archive_reader_t *r) {
  return r->summary;
}

const dsd_err_t *dsd_archive_reader_error(const dsd_archive_reader_t *r) {
  return r->err.code ? &r->err : NULL;
}

int dsd_archive_reader_next(dsd_archive_reader_t *r, const char **name,
                            uint64_t *size, dsd_err_t *err) {
  struct archive_entry *e = NULL;
  int ar, rc;

  *name = NULL;
  *size = 0;
  if (r->err.code != 0)
    return dsd_err_set(err, r->err.code, "%s", dsd_err_msg(&r->err));
  if (r->at_end)
    return 0;
  r->in_mem = 0;
  dsd_buf_reset(&r->mem);
  r->mempos = 0;
  ar = archive_read_next_header(r->a, &e);
  if (ar == ARCHIVE_EOF) {
    r->at_end = 1;
    if (r->summary == NULL) {
      rc = dsd_err_set(&r->err, DSD_EPROTO,
                       "the archive ends without summary.json: it is truncated");
      return dsd_err_set(err, rc, "%s", dsd_err_msg(&r->err));
    }
    return 0;
  }
  if (ar < ARCHIVE_WARN) {
    rc = dsd__reader_fail(r, DSD_EPROTO, "cannot read the archive");
    return dsd_err_set(err, rc, "%s", dsd_err_msg(&r->err));
  }
  *name = archive_entry_pathname(e);
  *size = (uint64_t)archive_entry_size(e);
  if (strcmp(*name, DSD__SUMMARY_NAME) == 0) {
    json_decref(r->summary);
    r->summary = NULL;
    rc = dsd__read_whole(r, DSD__SUMMARY_NAME, &r->mem);
    if (rc == 0)
      rc = dsd__parse_json_entry(r, DSD__SUMMARY_NAME, &r->mem, &r->summary);
    if (rc < 0)
      return dsd_err_set(err, rc, "%s", dsd_err_msg(&r->err));
    r->in_mem = 1;
  }
  return 1;
}

long dsd_archive_reader_read(dsd_archive_reader_t *r, void *buf, size_t len) {
  la_ssize_t n;

  if (r->err.code != 0)
    return r->err.code;
  if (r->in_mem) {
    size_t left = r->mem.len - r->mempos;
    if (len > left)
      len = left;
    if (len > 0)
      memcpy(buf, r->mem.data + r->mempos, len);
    r->mempos += len;
    return (long)len;
  }
  if (r->at_end)
    return 0;
  n = archive_read_data(r->a, buf, len);
  if (n < 0)
    return dsd__reader_fail(r, DSD_EPROTO, "cannot read the archive");
  return (long)n;
}

void dsd_archive_reader_free(dsd_archive_reader_t *r) {
  if (r == NULL)
    return;
  if (r->a != NULL)
    archive_read_free(r->a);
  json_decref(r->manifest);
  json_decref(r->summary);
  dsd_buf_free(&r->mem);
  free(r->rbuf);
  free(r);
}
