/*
 * blob_open.c - dsd_blob_store_open(): picks the blob store backend from a
 * storage URL (declared in core/blob.h).
 *
 *   file:///abs/dir        -> dsd_blob_file_open("/abs/dir")  (core)
 *   s3://bucket[/prefix]   -> dsd_blob_s3_open(url)           (s3/blob_s3.c)
 *
 * It lives in the s3 module rather than in core so that core does not
 * depend on libcurl.
 */
#include <string.h>

#include "core/blob.h"
#include "s3/blob_s3.h"

int dsd_blob_store_open(const char *url, dsd_blob_store_t **out,
                        dsd_err_t *err) {
  *out = NULL;
  if (url && strncmp(url, "file://", 7) == 0) {
    const char *dir = url + 7;
    if (dir[0] != '/')
      return dsd_err_set(err, DSD_EINVAL,
                         "storage url '%s' has a relative path HINT: set "
                         "DSD_STORAGE to file:///absolute/dir",
                         url);
    return dsd_blob_file_open(dir, out, err);
  }
  if (url && strncmp(url, "s3://", 5) == 0) return dsd_blob_s3_open(url, out, err);
  return dsd_err_set(err, DSD_EINVAL,
                     "unsupported storage url '%s' HINT: set DSD_STORAGE to "
                     "file:///abs/dir or s3://bucket[/prefix]",
                     url ? url : "");
}
