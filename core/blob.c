/*
 * blob.c - the generic part of the blob store: key validation and the
 * wrappers that dispatch to a backend (see blob.h).
 */
#include "core/blob.h"

#include <stdlib.h>
#include <string.h>

bool dsd_blob_key_valid(const char *key) {
  if (key == NULL || key[0] == '\0' || key[0] == '/') return false;
  size_t len = strlen(key);
  if (len > 1024 || key[len - 1] == '/') return false;
  const char *seg = key;
  for (const char *p = key;; p++) {
    unsigned char c = (unsigned char)*p;
    if (c == '/' || c == '\0') {
      size_t n = (size_t)(p - seg);
      if (n == 0) return false; /* "//" */
      if ((n == 1 && seg[0] == '.') || (n == 2 && seg[0] == '.' && seg[1] == '.'))
        return false;
      if (c == '\0') break;
      seg = p + 1;
      continue;
    }
    if (c < 0x20 || c == 0x7f || c == '\\') return false;
  }
  return true;
}

#define DSD__CHECK_KEY(key, err)                                                  \
  do {                                                                            \
    if (!dsd_blob_key_valid(key))                                                 \
      return dsd_err_set(err, DSD_EINVAL, "invalid storage key (empty, too long, " \
                         "or containing '..', '//' or control characters)");      \
  } while (0)

void dsd_blob_store_free(dsd_blob_store_t *s) {
  if (s == NULL) return;
  s->ops->free(s->self);
  free(s);
}

int dsd_blob_put(dsd_blob_store_t *s, const char *key, const void *data,
                 size_t len, dsd_err_t *err) {
  DSD__CHECK_KEY(key, err);
  return s->ops->put(s->self, key, data, len, err);
}

int dsd_blob_get(dsd_blob_store_t *s, const char *key, dsd_buf_t *out,
                 dsd_err_t *err) {
  DSD__CHECK_KEY(key, err);
  return s->ops->get(s->self, key, out, err);
}

int dsd_blob_head(dsd_blob_store_t *s, const char *key, dsd_blob_info_t *info,
                  dsd_err_t *err) {
  DSD__CHECK_KEY(key, err);
  return s->ops->head(s->self, key, info, err);
}

int dsd_blob_delete(dsd_blob_store_t *s, const char *key, dsd_err_t *err) {
  DSD__CHECK_KEY(key, err);
  return s->ops->del(s->self, key, err);
}

int dsd_blob_list(dsd_blob_store_t *s, const char *prefix, dsd_blob_list_cb cb,
                  void *data, dsd_err_t *err) {
  if (prefix == NULL) prefix = "";
  if (strstr(prefix, "..") != NULL || prefix[0] == '/')
    return dsd_err_set(err, DSD_EINVAL, "invalid storage prefix");
  return s->ops->list(s->self, prefix, cb, data, err);
}

int dsd_blob_writer_open(dsd_blob_store_t *s, const char *key,
                         const dsd_blob_writer_opts_t *opts,
                         dsd_blob_writer_t **out, dsd_err_t *err) {
  static const dsd_blob_writer_opts_t defaults;
  DSD__CHECK_KEY(key, err);
  return s->ops->writer_open(s->self, key, opts ? opts : &defaults, out, err);
}

int dsd_blob_writer_write(dsd_blob_writer_t *w, const void *data, size_t len) {
  if (w->err.code != 0) return w->err.code;
  int rc = w->ops->write(w, data, len);
  if (rc == 0) w->bytes += len;
  return rc;
}

int dsd_blob_writer_close(dsd_blob_writer_t *w, dsd_err_t *err) {
  return w->ops->close(w, err);
}

void dsd_blob_writer_abort(dsd_blob_writer_t *w) {
  if (w != NULL) w->ops->abort(w);
}

int dsd_blob_reader_open(dsd_blob_store_t *s, const char *key, uint64_t offset,
                         uint64_t length, dsd_blob_reader_t **out,
                         dsd_err_t *err) {
  DSD__CHECK_KEY(key, err);
  return s->ops->reader_open(s->self, key, offset, length, out, err);
}

long dsd_blob_reader_read(dsd_blob_reader_t *r, void *buf, size_t len) {
  return r->ops->read(r, buf, len);
}

void dsd_blob_reader_close(dsd_blob_reader_t *r) {
  if (r != NULL) r->ops->close(r);
}

int dsd_blob_abort_uploads(dsd_blob_store_t *s, const char *key,
                           const char *upload_id, dsd_err_t *err) {
  DSD__CHECK_KEY(key, err);
  return s->ops->abort_uploads(s->self, key, upload_id, err);
}

const char *dsd_blob_describe(dsd_blob_store_t *s) { return s->ops->describe(s->self); }
