/*
 * blob_s3.c - the s3:// blob store backend (see blob_s3.h, core/blob.h).
 *
 * Sections: the store (URL parsing, key mapping, put/get/head/del/list,
 * abort_uploads), the streaming writer (multipart upload with concurrent
 * parts), the ranged reader.
 *
 * Writer memory: one part fills in the caller's thread while at most
 * parts_in_flight filled parts upload on worker threads; write() blocks
 * when all workers are busy, so memory stays at part_size x
 * (parts_in_flight + 1) whatever the object size. A stream that ends before
 * its first part fills is sent as one PutObject. Any failure, cancel or
 * abort() aborts the multipart upload after the workers have stopped, so no
 * upload and no partial object remain.
 */
#include "s3/blob_s3.h"

#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "core/log.h"
#include "s3/s3.h"

#define DEFAULT_IN_FLIGHT 4
#define MAX_IN_FLIGHT 64
#define DEFAULT_READ_CHUNK ((size_t)8 * 1024 * 1024)

typedef struct s3_store {
  dsd_s3_client_t *client;
  char *bucket;
  char *prefix; /* "" or "dir/" */
  char *describe;
  unsigned list_page;
  size_t read_chunk;
} s3_store_t;

size_t dsd__s3_part_size(size_t base, int part_number) {
  if (base < DSD_S3_MIN_PART_SIZE) base = DSD_S3_MIN_PART_SIZE;
  if (base > DSD_S3_MAX_PART_SIZE) base = DSD_S3_MAX_PART_SIZE;
  if (part_number < 1) part_number = 1;
  size_t s = base;
  for (int d = (part_number - 1) / 1000; d > 0; d--) {
    if (s >= DSD_S3_MAX_PART_SIZE / 2) return DSD_S3_MAX_PART_SIZE;
    s *= 2;
  }
  return s;
}

static char *full_key(const s3_store_t *st, const char *key) {
  size_t pl = strlen(st->prefix), kl = strlen(key);
  char *f = malloc(pl + kl + 1);
  if (!f) return NULL;
  memcpy(f, st->prefix, pl);
  memcpy(f + pl, key, kl + 1);
  return f;
}

/* ---------------------------------------------------------------- */
/* Whole-object operations                                           */
/* ---------------------------------------------------------------- */

static int st_put(void *self, const char *key, const void *data, size_t len,
                  dsd_err_t *err) {
  s3_store_t *st = self;
  char *k = full_key(st, key);
  if (!k) return dsd_err_set(err, DSD_ENOMEM, "s3 put: out of memory");
  int rc = dsd_s3_put_object(st->client, st->bucket, k, data, len, NULL, err);
  free(k);
  return rc;
}

static int append_cb(void *data, const void *buf, size_t len) {
  return dsd_buf_append(data, buf, len);
}

static int st_get(void *self, const char *key, dsd_buf_t *out,
                  dsd_err_t *err) {
  s3_store_t *st = self;
  char *k = full_key(st, key);
  if (!k) return dsd_err_set(err, DSD_ENOMEM, "s3 get: out of memory");
  int rc = dsd_s3_get_object(st->client, st->bucket, k, 0, UINT64_MAX, NULL,
                             append_cb, out, NULL, err);
  free(k);
  return rc;
}

static int st_head(void *self, const char *key, dsd_blob_info_t *info,
                   dsd_err_t *err) {
  s3_store_t *st = self;
  dsd_s3_object_info_t oi;
  char *k = full_key(st, key);
  if (!k) return dsd_err_set(err, DSD_ENOMEM, "s3 head: out of memory");
  int rc = dsd_s3_head_object(st->client, st->bucket, k, &oi, err);
  if (!rc && info) {
    info->size = oi.size;
    info->mtime = oi.mtime;
  }
  free(k);
  return rc;
}

static int st_del(void *self, const char *key, dsd_err_t *err) {
  s3_store_t *st = self;
  char *k = full_key(st, key);
  if (!k) return dsd_err_set(err, DSD_ENOMEM, "s3 delete: out of memory");
  int rc = dsd_s3_delete_object(st->client, st->bucket, k, err);
  free(k);
  return rc;
}

static int st_list(void *self, const char *prefix, dsd_blob_list_cb cb,
                   void *data, dsd_err_t *err) {
  s3_store_t *st = self;
  int rc = 0;
  char *token = NULL;
  size_t pl = strlen(st->prefix);
  char *p = full_key(st, prefix ? prefix : "");
  if (!p) return dsd_err_set(err, DSD_ENOMEM, "s3 list: out of memory");
  for (;;) {
    dsd_s3_list_page_t page;
    rc = dsd_s3_list_objects_v2(st->client, st->bucket, p, token,
                                st->list_page, &page, err);
    if (rc) break;
    bool stop = false;
    for (size_t i = 0; i < page.n && !stop; i++) {
      const char *k = page.entries[i].key;
      if (strncmp(k, st->prefix, pl) != 0) continue;
      dsd_blob_info_t info = {page.entries[i].size, page.entries[i].mtime};
      if (cb(data, k + pl, &info)) stop = true;
    }
    free(token);
    token = NULL;
    if (!stop && page.truncated && page.next_token) {
      token = page.next_token;
      page.next_token = NULL;
    }
    dsd_s3_list_page_free(&page);
    if (!token) break;
  }
  free(token);
  free(p);
  return rc;
}

static int st_abort_uploads(void *self, const char *key,
                            const char *upload_id, dsd_err_t *err) {
  s3_store_t *st = self;
  int rc = 0, aborted = 0;
  char *km = NULL, *um = NULL;
  char *k = full_key(st, key);
  if (!k) return dsd_err_set(err, DSD_ENOMEM, "s3 abort: out of memory");
  for (;;) {
    dsd_s3_uploads_page_t page;
    rc = dsd_s3_list_multipart_uploads(st->client, st->bucket, k, km, um,
                                       &page, err);
    if (rc) break;
    for (size_t i = 0; i < page.n && !rc; i++) {
      const dsd_s3_upload_entry_t *e = &page.entries[i];
      /* The listing is by prefix: "dumps/a" also lists "dumps/ab". */
      if (strcmp(e->key, k) != 0) continue;
      if (upload_id && strcmp(e->upload_id, upload_id) != 0) continue;
      dsd_err_t e2 = {0};
      int r2 = dsd_s3_abort_multipart_upload(st->client, st->bucket, k,
                                             e->upload_id, &e2);
      if (r2 == DSD_ENOTFOUND) continue; /* raced with another cleaner */
      if (r2) {
        rc = dsd_err_set(err, r2, "%s", dsd_err_msg(&e2));
        break;
      }
      aborted++;
    }
    free(km);
    free(um);
    km = um = NULL;
    if (!rc && page.truncated && page.next_key_marker) {
      km = page.next_key_marker;
      um = page.next_upload_id_marker;
      page.next_key_marker = page.next_upload_id_marker = NULL;
    }
    dsd_s3_uploads_page_free(&page);
    if (rc || !km) break;
  }
  if (!rc && aborted)
    dsd_log_info("s3: aborted %d unfinished multipart upload(s) of %s/%s",
                 aborted, st->bucket, k);
  free(km);
  free(um);
  free(k);
  return rc;
}

static const char *st_describe(void *self) {
  return ((s3_store_t *)self)->describe;
}

static void st_free(void *self) {
  s3_store_t *st = self;
  if (!st) return;
  dsd_s3_client_free(st->client);
  free(st->bucket);
  free(st->prefix);
  free(st->describe);
  free(st);
}

/* ---------------------------------------------------------------- */
/* Streaming writer                                                  */
/* ---------------------------------------------------------------- */

typedef struct s3_writer s3_writer_t;

typedef struct part_job {
  s3_writer_t *w;
  int number;
  char *buf;
  size_t len;
  pthread_t tid;
  bool active; /* thread started and not yet joined */
  bool done;   /* thread finished (under w->mu) */
  int rc;
  dsd_err_t err;
  char etag[128];
} part_job_t;

struct s3_writer {
  dsd_blob_writer_t base; /* first: the blob layer casts */
  s3_store_t *st;
  char *key;      /* full object key (store prefix included) */
  char *rel_key;  /* the store key the caller gave */
  char *content_type;
  int (*on_upload_created)(void *data, const char *key, const char *upload_id);
  void *cb_data;
  const atomic_int *cancel;
  size_t base_part;
  int in_flight;
  /* The part being filled. */
  char *buf;
  size_t len, cap, part_cap;
  int next_part;
  char *upload_id;
  char **etags; /* etags[n-1] for part n */
  int netags;
  part_job_t *slots;
  pthread_mutex_t mu; /* guards slots[].done */
  pthread_cond_t cv;
};

static const dsd_blob_writer_ops_t s3_writer_ops;

static void *part_main(void *arg) {
  part_job_t *j = arg;
  s3_writer_t *w = j->w;
  j->rc = dsd_s3_upload_part(w->st->client, w->st->bucket, w->key,
                             w->upload_id, j->number, j->buf, j->len, j->etag,
                             sizeof j->etag, &j->err);
  pthread_mutex_lock(&w->mu);
  j->done = true;
  pthread_cond_broadcast(&w->cv);
  pthread_mutex_unlock(&w->mu);
  return NULL;
}

static void writer_fail(s3_writer_t *w, int rc, const dsd_err_t *e) {
  if (e && e->code)
    dsd_err_set(&w->base.err, rc, "%s", dsd_err_msg(e));
  else
    dsd_err_set(&w->base.err, rc, "%s", dsd_strerror(rc));
}

/* Joins finished workers, recording their ETags or their error. With
 * want_slot, returns a free slot (waiting for one); with all, waits until
 * no worker runs. Returns the free slot or NULL. */
static part_job_t *reap(s3_writer_t *w, bool want_slot, bool all) {
  part_job_t *free_slot = NULL;
  pthread_mutex_lock(&w->mu);
  for (;;) {
    int running = 0;
    for (int i = 0; i < w->in_flight; i++) {
      part_job_t *j = &w->slots[i];
      if (j->active && j->done) {
        pthread_join(j->tid, NULL);
        j->active = false;
        free(j->buf);
        j->buf = NULL;
        if (j->rc) {
          writer_fail(w, j->rc, &j->err);
        } else if (j->number <= w->netags) {
          w->etags[j->number - 1] = strdup(j->etag);
          if (!w->etags[j->number - 1])
            dsd_err_set(&w->base.err, DSD_ENOMEM, "s3 writer: out of memory");
        }
      }
      if (j->active) running++;
      else if (!free_slot) free_slot = j;
    }
    if (all ? running == 0 : (!want_slot || free_slot)) break;
    free_slot = NULL;
    pthread_cond_wait(&w->cv, &w->mu);
  }
  pthread_mutex_unlock(&w->mu);
  return want_slot ? free_slot : NULL;
}

static bool canceled(const s3_writer_t *w) {
  return w->cancel && atomic_load(w->cancel) != 0;
}

static int ensure_upload(s3_writer_t *w) {
  dsd_err_t e = {0};
  if (w->upload_id) return 0;
  int rc = dsd_s3_create_multipart_upload(w->st->client, w->st->bucket,
                                          w->key, w->content_type,
                                          &w->upload_id, &e);
  if (rc) {
    writer_fail(w, rc, &e);
    return rc;
  }
  dsd_log_debug("s3: multipart upload started for %s/%s", w->st->bucket,
                w->key);
  if (w->on_upload_created &&
      w->on_upload_created(w->cb_data, w->rel_key, w->upload_id) != 0) {
    return dsd_err_set(&w->base.err, DSD_EINTERNAL,
                       "recording the multipart upload of %s/%s failed",
                       w->st->bucket, w->key);
  }
  return 0;
}

/* Hands the filled buffer to a worker as the next part. */
static int submit_part(s3_writer_t *w) {
  int rc;
  if (canceled(w))
    return dsd_err_set(&w->base.err, DSD_ECANCELED,
                       "upload of %s/%s canceled", w->st->bucket, w->key);
  if ((rc = ensure_upload(w))) return rc;
  part_job_t *slot = reap(w, true, false);
  if (w->base.err.code) return w->base.err.code;
  if (w->next_part > DSD_S3_MAX_PARTS)
    return dsd_err_set(&w->base.err, DSD_ETOOBIG,
                       "s3 object %s/%s needs more than %d parts",
                       w->st->bucket, w->key, DSD_S3_MAX_PARTS);
  if (w->next_part > w->netags) {
    int n = w->netags ? w->netags * 2 : 64;
    char **ne = realloc(w->etags, (size_t)n * sizeof *ne);
    if (!ne)
      return dsd_err_set(&w->base.err, DSD_ENOMEM, "s3 writer: out of memory");
    memset(ne + w->netags, 0, (size_t)(n - w->netags) * sizeof *ne);
    w->etags = ne;
    w->netags = n;
  }
  memset(slot, 0, sizeof *slot);
  slot->w = w;
  slot->number = w->next_part++;
  slot->buf = w->buf;
  slot->len = w->len;
  slot->active = true;
  w->buf = NULL;
  w->len = w->cap = 0;
  w->part_cap = dsd__s3_part_size(w->base_part, w->next_part);
  if (pthread_create(&slot->tid, NULL, part_main, slot) != 0) {
    /* No thread: upload in this thread instead of failing the dump. */
    part_main(slot);
    slot->active = false;
    free(slot->buf);
    slot->buf = NULL;
    if (slot->rc) writer_fail(w, slot->rc, &slot->err);
    else w->etags[slot->number - 1] = strdup(slot->etag);
  }
  return w->base.err.code;
}

static int w_write(dsd_blob_writer_t *bw, const void *data, size_t len) {
  s3_writer_t *w = (s3_writer_t *)bw;
  const char *p = data;
  if (w->base.err.code) return w->base.err.code;
  while (len > 0) {
    /* A full part is sent only once more data arrives, so a stream of
     * exactly one part still goes out as a single PutObject. */
    if (w->len == w->part_cap) {
      int rc = submit_part(w);
      if (rc) return rc;
    }
    size_t room = w->part_cap - w->len;
    size_t n = len < room ? len : room;
    if (w->len + n > w->cap) {
      /* Grow geometrically up to the part size: small objects never
       * allocate a whole part. */
      size_t ncap = w->cap ? w->cap : 64 * 1024;
      while (ncap < w->len + n) ncap *= 2;
      if (ncap > w->part_cap) ncap = w->part_cap;
      char *nb = realloc(w->buf, ncap);
      if (!nb)
        return dsd_err_set(&w->base.err, DSD_ENOMEM,
                           "s3 writer: out of memory for a %zu-byte part",
                           ncap);
      w->buf = nb;
      w->cap = ncap;
    }
    memcpy(w->buf + w->len, p, n);
    w->len += n;
    p += n;
    len -= n;
  }
  return 0;
}

static void writer_free(s3_writer_t *w) {
  if (!w) return;
  for (int i = 0; i < w->netags; i++) free(w->etags[i]);
  free(w->etags);
  free(w->slots);
  free(w->buf);
  free(w->key);
  free(w->rel_key);
  free(w->content_type);
  free(w->upload_id);
  pthread_mutex_destroy(&w->mu);
  pthread_cond_destroy(&w->cv);
  free(w);
}

/* Waits for the workers and aborts the multipart upload, if any. */
static void writer_discard(s3_writer_t *w) {
  reap(w, false, true);
  if (w->upload_id) {
    dsd_err_t e = {0};
    int rc = dsd_s3_abort_multipart_upload(w->st->client, w->st->bucket,
                                           w->key, w->upload_id, &e);
    if (rc)
      dsd_log_warn("s3: could not abort the multipart upload of %s/%s: %s",
                   w->st->bucket, w->key, dsd_err_msg(&e));
    else
      dsd_log_info("s3: aborted the multipart upload of %s/%s",
                   w->st->bucket, w->key);
  }
}

/* The ETag S3 gives a completed multipart object: MD5 of the concatenated
 * binary MD5s of the parts, then "-" and the part count. Returns false when
 * a part ETag is not a plain MD5 (SSE-KMS, other servers). */
bool dsd__s3_multipart_etag(const char *const *etags, int n, char *out,
                            size_t outlen) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int mdlen = 0;
  bool ok = n > 0;
  EVP_MD_CTX *ctx = EVP_MD_CTX_new();
  if (!ctx || !EVP_DigestInit_ex(ctx, EVP_md5(), NULL)) ok = false;
  for (int i = 0; i < n && ok; i++) {
    const char *e = etags[i];
    unsigned char bin[16];
    if (!e) {
      ok = false;
      break;
    }
    if (*e == '"') e++;
    for (int b = 0; b < 16 && ok; b++) {
      unsigned v = 0;
      if (sscanf(e + 2 * b, "%2x", &v) != 1) ok = false;
      bin[b] = (unsigned char)v;
    }
    if (ok && !((e[32] == '"' && e[33] == '\0') || e[32] == '\0')) ok = false;
    if (ok && !EVP_DigestUpdate(ctx, bin, sizeof bin)) ok = false;
  }
  if (ok && !EVP_DigestFinal_ex(ctx, md, &mdlen)) ok = false;
  EVP_MD_CTX_free(ctx);
  if (!ok) return false;
  char hex[33];
  for (unsigned i = 0; i < 16 && i < mdlen; i++)
    snprintf(hex + 2 * i, 3, "%02x", md[i]);
  snprintf(out, outlen, "\"%s-%d\"", hex, n);
  return true;
}

/* After a Complete whose answer was lost, the retry finds no upload: the
 * object is there if its ETag is exactly the one these parts make. */
static bool completed_meanwhile(s3_writer_t *w, int n) {
  char want[64];
  dsd_s3_object_info_t info;
  dsd_err_t e = {0};
  if (!dsd__s3_multipart_etag((const char *const *)w->etags, n, want,
                              sizeof want))
    return false;
  if (dsd_s3_head_object(w->st->client, w->st->bucket, w->key, &info, &e))
    return false;
  return strcmp(info.etag, want) == 0;
}

static int w_close(dsd_blob_writer_t *bw, dsd_err_t *err) {
  s3_writer_t *w = (s3_writer_t *)bw;
  int rc = w->base.err.code;
  dsd_s3_part_t *parts = NULL;
  if (!rc && canceled(w))
    rc = dsd_err_set(&w->base.err, DSD_ECANCELED, "upload of %s/%s canceled",
                     w->st->bucket, w->key);
  if (!rc && !w->upload_id) {
    dsd_err_t e = {0};
    rc = dsd_s3_put_object(w->st->client, w->st->bucket, w->key,
                           w->buf ? w->buf : "", w->len, w->content_type, &e);
    if (rc) writer_fail(w, rc, &e);
    goto cleanup;
  }
  if (!rc && w->len > 0) rc = submit_part(w);
  reap(w, false, true);
  rc = w->base.err.code;
  if (!rc && canceled(w))
    rc = dsd_err_set(&w->base.err, DSD_ECANCELED, "upload of %s/%s canceled",
                     w->st->bucket, w->key);
  if (!rc) {
    int n = w->next_part - 1;
    dsd_err_t e = {0};
    parts = calloc((size_t)n, sizeof *parts);
    if (!parts) {
      rc = dsd_err_set(&w->base.err, DSD_ENOMEM, "s3 writer: out of memory");
      goto cleanup;
    }
    for (int i = 0; i < n; i++) parts[i] = (dsd_s3_part_t){i + 1, w->etags[i]};
    rc = dsd_s3_complete_multipart_upload(w->st->client, w->st->bucket, w->key,
                                          w->upload_id, parts, (size_t)n, &e);
    if (rc == DSD_ENOTFOUND && completed_meanwhile(w, n)) {
      dsd_log_info("s3: multipart upload of %s/%s had completed before its "
                   "answer was lost",
                   w->st->bucket, w->key);
      rc = 0;
      free(w->upload_id); /* nothing left to abort */
      w->upload_id = NULL;
    }
    if (rc) writer_fail(w, rc, &e);
  }
cleanup:
  if (rc) {
    writer_discard(w);
    dsd_err_set(err, rc, "%s", dsd_err_msg(&w->base.err));
  }
  free(parts);
  writer_free(w);
  return rc;
}

static void w_abort(dsd_blob_writer_t *bw) {
  s3_writer_t *w = (s3_writer_t *)bw;
  writer_discard(w);
  writer_free(w);
}

static const dsd_blob_writer_ops_t s3_writer_ops = {
    .write = w_write, .close = w_close, .abort = w_abort};

static int st_writer_open(void *self, const char *key,
                          const dsd_blob_writer_opts_t *opts,
                          dsd_blob_writer_t **out, dsd_err_t *err) {
  s3_store_t *st = self;
  s3_writer_t *w = calloc(1, sizeof *w);
  *out = NULL;
  if (!w) return dsd_err_set(err, DSD_ENOMEM, "s3 writer: out of memory");
  pthread_mutex_init(&w->mu, NULL);
  pthread_cond_init(&w->cv, NULL);
  w->base.ops = &s3_writer_ops;
  w->st = st;
  w->key = full_key(st, key);
  w->rel_key = strdup(key);
  w->content_type = opts->content_type ? strdup(opts->content_type) : NULL;
  w->on_upload_created = opts->on_upload_created;
  w->cb_data = opts->data;
  w->cancel = opts->cancel;
  w->base_part = opts->part_size ? opts->part_size : DSD_S3_DEFAULT_PART_SIZE;
  w->in_flight = opts->parts_in_flight > 0 ? opts->parts_in_flight
                                           : DEFAULT_IN_FLIGHT;
  if (w->in_flight > MAX_IN_FLIGHT) w->in_flight = MAX_IN_FLIGHT;
  w->next_part = 1;
  w->part_cap = dsd__s3_part_size(w->base_part, 1);
  w->slots = calloc((size_t)w->in_flight, sizeof *w->slots);
  if (!w->key || !w->rel_key || !w->slots || (opts->content_type && !w->content_type)) {
    writer_free(w);
    return dsd_err_set(err, DSD_ENOMEM, "s3 writer: out of memory");
  }
  *out = &w->base;
  return 0;
}

/* ---------------------------------------------------------------- */
/* Ranged reader                                                     */
/* ---------------------------------------------------------------- */

typedef struct s3_reader {
  dsd_blob_reader_t base; /* first */
  s3_store_t *st;
  char *key;
  char etag[128];
  uint64_t pos, end;
  dsd_buf_t chunk;
  size_t off;
} s3_reader_t;

static long r_read(dsd_blob_reader_t *br, void *buf, size_t len) {
  s3_reader_t *r = (s3_reader_t *)br;
  if (r->base.err.code) return r->base.err.code;
  if (r->off == r->chunk.len) {
    if (r->pos >= r->end) return 0;
    uint64_t n = r->end - r->pos;
    if (n > r->st->read_chunk) n = r->st->read_chunk;
    dsd_buf_reset(&r->chunk);
    r->off = 0;
    /* If-Match: a chunked read of an object replaced meanwhile would mix
     * two objects; the server refuses instead. */
    int rc = dsd_s3_get_object(r->st->client, r->st->bucket, r->key, r->pos, n,
                               r->etag[0] ? r->etag : NULL, append_cb,
                               &r->chunk, NULL, &r->base.err);
    if (rc) return rc;
    if (r->chunk.len == 0) {
      dsd_err_set(&r->base.err, DSD_EPROTO,
                  "s3 returned no data for %s/%s at offset %llu",
                  r->st->bucket, r->key, (unsigned long long)r->pos);
      return DSD_EPROTO;
    }
    r->pos += r->chunk.len;
  }
  size_t avail = r->chunk.len - r->off;
  if (len > avail) len = avail;
  if (len > (size_t)LONG_MAX) len = (size_t)LONG_MAX;
  memcpy(buf, r->chunk.data + r->off, len);
  r->off += len;
  return (long)len;
}

static void r_close(dsd_blob_reader_t *br) {
  s3_reader_t *r = (s3_reader_t *)br;
  if (!r) return;
  dsd_buf_free(&r->chunk);
  free(r->key);
  free(r);
}

static const dsd_blob_reader_ops_t s3_reader_ops = {.read = r_read,
                                                    .close = r_close};

static int st_reader_open(void *self, const char *key, uint64_t offset,
                          uint64_t length, dsd_blob_reader_t **out,
                          dsd_err_t *err) {
  s3_store_t *st = self;
  dsd_s3_object_info_t info;
  int rc;
  s3_reader_t *r = calloc(1, sizeof *r);
  *out = NULL;
  if (!r) return dsd_err_set(err, DSD_ENOMEM, "s3 reader: out of memory");
  r->base.ops = &s3_reader_ops;
  r->st = st;
  r->key = full_key(st, key);
  if (!r->key) {
    rc = dsd_err_set(err, DSD_ENOMEM, "s3 reader: out of memory");
    goto cleanup;
  }
  /* HEAD first: absence shows at open, and the size bounds the reads. */
  rc = dsd_s3_head_object(st->client, st->bucket, r->key, &info, err);
  if (rc) goto cleanup;
  snprintf(r->etag, sizeof r->etag, "%s", info.etag);
  r->pos = offset < info.size ? offset : info.size;
  r->end = info.size;
  if (length != UINT64_MAX && r->pos + length < r->end)
    r->end = r->pos + length;
  *out = &r->base;
  r = NULL;
cleanup:
  if (r) r_close(&r->base);
  return rc;
}

/* ---------------------------------------------------------------- */
/* Opening                                                           */
/* ---------------------------------------------------------------- */

static const dsd_blob_ops_t s3_ops = {
    .scheme = "s3",
    .put = st_put,
    .get = st_get,
    .head = st_head,
    .del = st_del,
    .list = st_list,
    .writer_open = st_writer_open,
    .reader_open = st_reader_open,
    .abort_uploads = st_abort_uploads,
    .describe = st_describe,
    .free = st_free,
};

static bool bucket_name_ok(const char *b, size_t n) {
  if (n < 3 || n > 63) return false;
  for (size_t i = 0; i < n; i++) {
    char c = b[i];
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
          c == '.' || c == '_' || (c >= 'A' && c <= 'Z')))
      return false;
  }
  return true;
}

int dsd_blob_s3_open(const char *url, dsd_blob_store_t **out,
                     dsd_err_t *err) {
  int rc = 0;
  s3_store_t *st = NULL;
  dsd_blob_store_t *s = NULL;
  dsd_buf_t d = DSD_BUF_INIT;
  *out = NULL;
  if (!url || strncmp(url, "s3://", 5) != 0)
    return dsd_err_set(err, DSD_EINVAL,
                       "not an s3 url HINT: DSD_STORAGE must look like "
                       "s3://bucket[/prefix]");
  const char *b = url + 5;
  const char *slash = strchr(b, '/');
  size_t bl = slash ? (size_t)(slash - b) : strlen(b);
  if (!bucket_name_ok(b, bl))
    return dsd_err_set(err, DSD_EINVAL,
                       "'%s' does not name a valid s3 bucket HINT: "
                       "DSD_STORAGE must look like s3://bucket[/prefix]",
                       url);
  st = calloc(1, sizeof *st);
  if (!st) return dsd_err_set(err, DSD_ENOMEM, "s3 store: out of memory");
  st->bucket = strndup(b, bl);
  /* The prefix loses its outer slashes and gains one trailing slash. */
  const char *p = slash ? slash : "";
  while (*p == '/') p++;
  size_t pl = strlen(p);
  while (pl && p[pl - 1] == '/') pl--;
  if (pl) {
    char *tmp = strndup(p, pl);
    bool ok = tmp && dsd_blob_key_valid(tmp);
    free(tmp);
    if (!ok) {
      rc = dsd_err_set(err, DSD_EINVAL,
                       "invalid prefix in '%s' HINT: use s3://bucket/dir "
                       "without '..', '//' or control characters",
                       url);
      goto cleanup;
    }
  }
  st->prefix = malloc(pl + 2);
  if (!st->bucket || !st->prefix) {
    rc = dsd_err_set(err, DSD_ENOMEM, "s3 store: out of memory");
    goto cleanup;
  }
  memcpy(st->prefix, p, pl);
  if (pl) st->prefix[pl++] = '/';
  st->prefix[pl] = '\0';

  const char *lp = getenv("DSD_S3_LIST_PAGE_SIZE");
  st->list_page = lp && *lp ? (unsigned)strtoul(lp, NULL, 10) : 0;
  const char *rcs = getenv("DSD_S3_READ_CHUNK");
  st->read_chunk = rcs && *rcs ? (size_t)strtoull(rcs, NULL, 10) : 0;
  if (st->read_chunk == 0) st->read_chunk = DEFAULT_READ_CHUNK;

  rc = dsd_s3_client_from_env(&st->client, err);
  if (rc) goto cleanup;
  rc = dsd_buf_printf(&d, "s3://%s/%s (%s)", st->bucket, st->prefix,
                      dsd_s3_client_endpoint(st->client));
  if (!rc) st->describe = dsd_buf_steal(&d);
  s = calloc(1, sizeof *s);
  if (rc || !st->describe || !s) {
    rc = dsd_err_set(err, DSD_ENOMEM, "s3 store: out of memory");
    goto cleanup;
  }
  s->ops = &s3_ops;
  s->self = st;
  *out = s;
  s = NULL;
  st = NULL;
cleanup:
  dsd_buf_free(&d);
  free(s);
  st_free(st);
  return rc;
}
