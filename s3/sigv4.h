/*
 * sigv4.h - AWS Signature Version 4 for S3, written with OpenSSL.
 *
 * The signer turns a request description (method, raw path, raw query
 * parameters, headers to sign, payload hash, timestamp) into the canonical
 * request, the string to sign, the signature and the Authorization header
 * value, following "Signature Calculations for the Authorization Header:
 * Transferring Payload in a Single Chunk" of the S3 API reference. It also
 * presigns URLs ("Authenticating Requests: Using Query Parameters").
 *
 * Why not CURLOPT_AWS_SIGV4: curl 7.88 (Debian bookworm) signs `?uploads`,
 * unsorted query strings and some headers differently from S3, so every
 * multipart request would fail with SignatureDoesNotMatch.
 *
 * Paths and query parameters are given raw (unencoded); the signer encodes
 * them exactly once with dsd_sigv4_uri_encode(), and callers must put the
 * same encoded forms on the wire (dsd_sigv4_encode_path() and
 * dsd_sigv4_canonical_query() give them).
 *
 * The secret key is only read; nothing here logs or copies it into results.
 */
#ifndef DSD_S3_SIGV4_H
#define DSD_S3_SIGV4_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"
#include "core/error.h"

#define DSD_SIGV4_EMPTY_SHA256 \
  "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
#define DSD_SIGV4_UNSIGNED_PAYLOAD "UNSIGNED-PAYLOAD"

typedef struct dsd_sigv4_creds {
  const char *access_key;
  const char *secret_key;
  const char *session_token; /* NULL or "" when not using STS credentials */
  const char *region;        /* e.g. "us-east-1" */
  const char *service;       /* NULL means "s3" */
} dsd_sigv4_creds_t;

/* A name/value pair: a query parameter (raw, unencoded; value NULL or ""
 * gives "name=") or a header (any case; the value is trimmed). */
typedef struct dsd_sigv4_pair {
  const char *name;
  const char *value;
} dsd_sigv4_pair_t;

typedef struct dsd_sigv4_request {
  const char *method;        /* "GET", "PUT", ... */
  const char *path;          /* raw path starting with '/', e.g. "/b/k $x" */
  const dsd_sigv4_pair_t *query;
  size_t nquery;
  const dsd_sigv4_pair_t *headers; /* every header to sign, host included */
  size_t nheaders;
  const char *payload_hash;  /* lower-case hex SHA-256 or UNSIGNED-PAYLOAD */
  const char *amz_date;      /* "YYYYMMDDTHHMMSSZ" */
} dsd_sigv4_request_t;

/* Everything the signer computed. Each string is owned by the result and
 * released by dsd_sigv4_result_free(). */
typedef struct dsd_sigv4_result {
  char *canonical_request;
  char *string_to_sign;
  char *signed_headers;  /* "host;range;x-amz-date" */
  char *signature;       /* 64 lower-case hex digits */
  char *authorization;   /* full Authorization header value */
} dsd_sigv4_result_t;

void dsd_sigv4_result_free(dsd_sigv4_result_t *r);

/* Signs req. On success fills *out (caller owns; dsd_sigv4_result_free).
 * Returns 0, DSD_EINVAL (bad input) or DSD_ENOMEM. */
int dsd_sigv4_sign(const dsd_sigv4_creds_t *creds,
                   const dsd_sigv4_request_t *req, dsd_sigv4_result_t *out,
                   dsd_err_t *err);

/* Presigns a request with query authentication: X-Amz-Algorithm,
 * X-Amz-Credential, X-Amz-Date, X-Amz-Expires, X-Amz-SignedHeaders (host),
 * X-Amz-Security-Token when a session token is set, and X-Amz-Signature.
 * base is "https://host[:port]" (no trailing slash) and host the Host header
 * value. extra_query may add parameters (e.g. response-content-type).
 * *url_out is malloc'd (caller frees); out (may be NULL) receives the
 * intermediate strings for tests. The URL carries a signature: treat it as
 * a secret (the log redactor hides X-Amz-Signature). */
int dsd_sigv4_presign(const dsd_sigv4_creds_t *creds, const char *method,
                      const char *base, const char *host, const char *path,
                      const dsd_sigv4_pair_t *extra_query, size_t nextra,
                      const char *amz_date, uint32_t expires_s,
                      char **url_out, dsd_sigv4_result_t *out,
                      dsd_err_t *err);

/* Appends the AWS URI encoding of s: unreserved characters (A-Z a-z 0-9
 * - _ . ~) as is, everything else as %XX with upper-case hex; '/' is kept
 * when keep_slash. Returns 0 or DSD_ENOMEM. */
int dsd_sigv4_uri_encode(dsd_buf_t *out, const char *s, size_t len,
                         bool keep_slash);

/* Appends the encoded form of a raw S3 path (keeps '/', no double
 * encoding: the input is never decoded first). */
int dsd_sigv4_encode_path(dsd_buf_t *out, const char *raw_path);

/* Appends the canonical query string: each name and value encoded, sorted
 * by name then value, joined by '&'; a parameter without a value gives
 * "name=". The same string is used on the wire. */
int dsd_sigv4_canonical_query(dsd_buf_t *out, const dsd_sigv4_pair_t *q,
                              size_t n);

/* Lower-case hex SHA-256 of data into hex[65]. */
void dsd_sigv4_sha256_hex(const void *data, size_t len, char hex[65]);

/* Formats t (seconds since the epoch, UTC) as "YYYYMMDDTHHMMSSZ" into
 * out[17]. */
void dsd_sigv4_amz_date(int64_t t, char out[17]);

#endif
