/*
 * blob_s3.h - the s3:// blob store backend (implements core/blob.h).
 *
 * "s3://bucket[/prefix]" maps store key K to object "prefix/K" in bucket.
 * Credentials, region and endpoint come from the AWS_* environment
 * variables (see s3/s3.h, dsd_s3_client_from_env). Streaming writes are
 * multipart uploads with up to parts_in_flight parts uploading on worker
 * threads while the next part fills; reads are ranged GETs of bounded size.
 *
 * Test knobs (environment, read at open): DSD_S3_LIST_PAGE_SIZE (max-keys
 * of each ListObjectsV2 page, default the server's 1000) and
 * DSD_S3_READ_CHUNK (bytes per ranged GET of a reader, default 8 MiB).
 */
#ifndef DSD_S3_BLOB_S3_H
#define DSD_S3_BLOB_S3_H

#include <stdbool.h>
#include <stddef.h>

#include "core/blob.h"

#define DSD_S3_MIN_PART_SIZE ((size_t)5 * 1024 * 1024)
#define DSD_S3_MAX_PART_SIZE ((size_t)5 * 1024 * 1024 * 1024)
#define DSD_S3_DEFAULT_PART_SIZE ((size_t)8 * 1024 * 1024)
#define DSD_S3_MAX_PARTS 10000

/* Opens an s3:// store. On success *out is owned by the caller
 * (dsd_blob_store_free). DSD_EINVAL for a malformed URL, DSD_ECONFIG for
 * missing credentials. */
int dsd_blob_s3_open(const char *url, dsd_blob_store_t **out, dsd_err_t *err);

/* The size of part number part_number (1-based) for a writer whose first
 * part is base bytes: base doubles every 1000 parts (so 10,000 parts of an
 * 8 MiB base hold more than S3's 5 TiB object limit), clamped to
 * [DSD_S3_MIN_PART_SIZE, DSD_S3_MAX_PART_SIZE]. */
size_t dsd__s3_part_size(size_t base, int part_number);

/* Computes into out the ETag of a multipart object made of parts with
 * these ETags ("\"md5hex\"" each): "\"MD5(part MD5s)-N\"". Returns false if
 * a part ETag is not a plain MD5. Used to recognise a completion whose
 * answer was lost. */
bool dsd__s3_multipart_etag(const char *const *etags, int n, char *out,
                            size_t outlen);

#endif
