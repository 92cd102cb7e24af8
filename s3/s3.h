/*
 * s3.h - a small S3 client over libcurl with hand-written SigV4.
 *
 * One dsd_s3_client_t holds the endpoint, region and credentials and a
 * small pool of curl easy handles (so connections are reused); it may be
 * used from several threads at once (the pool has its own lock, and each
 * request takes a handle for itself).
 *
 * Addressing: with an endpoint (AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL) the
 * client uses path style, http(s)://endpoint/bucket/key; without one it
 * uses virtual-hosted style, https://bucket.s3.REGION.amazonaws.com/key.
 *
 * Every request body is in memory, so a request can be replayed: requests
 * are retried with exponential backoff and full jitter on 5xx answers
 * (500 InternalError, 503 SlowDown...) and on connection errors, at most
 * DSD_S3_MAX_ATTEMPTS times. Bodies are always sent with Content-Length,
 * never with chunked transfer encoding, and without "Expect: 100-continue".
 *
 * Errors: functions return 0 or a negative DSD_E* code and set err with a
 * message naming the operation and bucket/key, e.g.
 *   s3 refused the request signature (SignatureDoesNotMatch) for PUT b/k
 *   HINT: check AWS_SECRET_ACCESS_KEY
 * Messages and logs never contain the secret key, the session token, the
 * Authorization header or a presigned signature; the client registers the
 * secret and token with dsd_redact_register() as a second line of defence.
 */
#ifndef DSD_S3_S3_H
#define DSD_S3_S3_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/error.h"
#include "s3/xml.h"

#define DSD_S3_MAX_ATTEMPTS 5

typedef struct dsd_s3_client dsd_s3_client_t;

typedef struct dsd_s3_config {
  const char *endpoint;      /* "http://127.0.0.1:9000"; NULL: AWS */
  const char *region;        /* NULL: us-east-1 */
  const char *access_key;    /* required */
  const char *secret_key;    /* required */
  const char *session_token; /* NULL unless STS credentials */
  const char *ca_file;       /* NULL: system CA bundle */
  /* Backoff base and cap in milliseconds; 0 gives 100 ms / 10 s. */
  unsigned retry_base_ms;
  unsigned retry_cap_ms;
  int max_attempts; /* 0: DSD_S3_MAX_ATTEMPTS */
} dsd_s3_config_t;

/* Creates a client; cfg strings are copied. *out is owned by the caller
 * (dsd_s3_client_free). DSD_ECONFIG when credentials are missing or the
 * endpoint is not an http(s) URL. */
int dsd_s3_client_new(const dsd_s3_config_t *cfg, dsd_s3_client_t **out,
                      dsd_err_t *err);

/* Builds a client from the environment: AWS_ACCESS_KEY_ID,
 * AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN, AWS_REGION (default
 * us-east-1), AWS_ENDPOINT_URL_S3 or AWS_ENDPOINT_URL, DSD_S3_CA_FILE. */
int dsd_s3_client_from_env(dsd_s3_client_t **out, dsd_err_t *err);

void dsd_s3_client_free(dsd_s3_client_t *c);

/* Requests retried after a transient failure by every S3 client of the
 * process since it started (for /metrics). */
unsigned long dsd_s3_retries_total(void);

/* Describes the endpoint for messages ("https://s3.us-east-1.amazonaws.com"
 * or the configured endpoint); borrowed from the client. */
const char *dsd_s3_client_endpoint(const dsd_s3_client_t *c);

typedef struct dsd_s3_object_info {
  uint64_t size;
  int64_t mtime;
  char etag[128]; /* as sent by the server, quotes included */
} dsd_s3_object_info_t;

int dsd_s3_put_object(dsd_s3_client_t *c, const char *bucket, const char *key,
                      const void *data, size_t len, const char *content_type,
                      dsd_err_t *err);

/* Called with successive pieces of an object body. Return non-zero to stop
 * (the request then fails with DSD_ECANCELED). */
typedef int (*dsd_s3_data_cb)(void *data, const void *buf, size_t len);

/* Streams [offset, offset+length) of an object to cb (length UINT64_MAX: to
 * the end). if_match (may be NULL) makes the server refuse a changed
 * object. A retry after a dropped connection resumes after the bytes
 * already delivered, so cb never sees a byte twice. info (may be NULL) gets
 * the object's total size, mtime and ETag. DSD_ENOTFOUND if absent. */
int dsd_s3_get_object(dsd_s3_client_t *c, const char *bucket, const char *key,
                      uint64_t offset, uint64_t length, const char *if_match,
                      dsd_s3_data_cb cb, void *cb_data,
                      dsd_s3_object_info_t *info, dsd_err_t *err);

int dsd_s3_head_object(dsd_s3_client_t *c, const char *bucket,
                       const char *key, dsd_s3_object_info_t *info,
                       dsd_err_t *err);

/* Deleting an absent key succeeds (S3 answers 204 either way). */
int dsd_s3_delete_object(dsd_s3_client_t *c, const char *bucket,
                         const char *key, dsd_err_t *err);

/* One ListObjectsV2 page. token (may be NULL) continues a previous page;
 * max_keys 0 leaves the server default (1000). *out is owned by the caller
 * (dsd_s3_list_page_free). */
int dsd_s3_list_objects_v2(dsd_s3_client_t *c, const char *bucket,
                           const char *prefix, const char *token,
                           unsigned max_keys, dsd_s3_list_page_t *out,
                           dsd_err_t *err);

/* Multipart uploads. *upload_id is malloc'd (caller frees). */
int dsd_s3_create_multipart_upload(dsd_s3_client_t *c, const char *bucket,
                                   const char *key, const char *content_type,
                                   char **upload_id, dsd_err_t *err);

/* Uploads one part (1..10000) and copies its ETag into etag (etag_len
 * bytes, NUL-terminated). */
int dsd_s3_upload_part(dsd_s3_client_t *c, const char *bucket,
                       const char *key, const char *upload_id, int part_number,
                       const void *data, size_t len, char *etag,
                       size_t etag_len, dsd_err_t *err);

typedef struct dsd_s3_part {
  int number;
  const char *etag;
} dsd_s3_part_t;

/* Completes an upload. A 200 answer whose body holds <Error> is an error
 * (S3 sends such answers when it fails after starting its reply). */
int dsd_s3_complete_multipart_upload(dsd_s3_client_t *c, const char *bucket,
                                     const char *key, const char *upload_id,
                                     const dsd_s3_part_t *parts, size_t n,
                                     dsd_err_t *err);

/* Aborting an unknown (already aborted or completed) upload returns
 * DSD_ENOTFOUND. */
int dsd_s3_abort_multipart_upload(dsd_s3_client_t *c, const char *bucket,
                                  const char *key, const char *upload_id,
                                  dsd_err_t *err);

/* One ListMultipartUploads page for prefix; key_marker/upload_id_marker
 * (may be NULL) continue a previous page. *out is owned by the caller
 * (dsd_s3_uploads_page_free). */
int dsd_s3_list_multipart_uploads(dsd_s3_client_t *c, const char *bucket,
                                  const char *prefix, const char *key_marker,
                                  const char *upload_id_marker,
                                  dsd_s3_uploads_page_t *out, dsd_err_t *err);

/* A presigned GET URL valid for expires_s seconds (1..604800). *url is
 * malloc'd; it grants access by itself, so treat it as a secret. */
int dsd_s3_presign_get(dsd_s3_client_t *c, const char *bucket,
                       const char *key, uint32_t expires_s, char **url,
                       dsd_err_t *err);

/* Internal, exposed for unit tests. */

/* Full-jitter backoff: a delay in [0, min(cap, base * 2^attempt)) chosen by
 * r in [0, 1). attempt counts from 0 for the first retry. */
unsigned dsd__s3_backoff_ms(unsigned attempt, unsigned base_ms,
                            unsigned cap_ms, double r);

/* Whether a failed attempt may be retried: curl_code is a CURLcode (0 when
 * the transfer completed) and status the HTTP status. */
bool dsd__s3_retryable(int curl_code, long status);

#endif
