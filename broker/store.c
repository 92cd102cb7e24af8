/*
 * store.c - opens the broker's blob store from DSD_STORAGE.
 *
 * dsd_blob_store_open() lives in the s3 module (s3/blob_open.c); until that
 * module is built, the broker still runs on a file:// store and refuses
 * s3:// with a clear message instead of failing to link.
 */
#include <string.h>

#include "broker/broker.h"

int dsd_broker_store_open(const char *url, dsd_blob_store_t **out, dsd_err_t *err) {
#ifdef DSD_HAVE_S3
  return dsd_blob_store_open(url, out, err);
#else
  if (strncmp(url, "file://", 7) == 0)
    return dsd_blob_file_open(url + 7, out, err);
  return dsd_err_set(err, DSD_EUNSUPPORTED,
                     "DSD_STORAGE must be a file:// URL: this build has no s3 module yet");
#endif
}
