/*
 * download.c - serving a dump object over HTTP: the binding's `uri`
 * (GET /v1/dumps/:id/download with the binding's basic credentials) and the
 * dashboard's download link (dashboard.c checks the token, then calls
 * dsd__broker_stream_dump).
 *
 * The object is streamed from the blob store through a reader (file or S3
 * range GET), never held in memory. One byte range is honoured (RFC 9110:
 * "bytes=a-b", "bytes=a-", "bytes=-n"): 206 with Content-Range, or 416 with
 * "Content-Range: bytes * /size" when it starts past the end. A request with
 * several ranges gets the whole object (200), which the RFC allows. The
 * endpoint is read-only: other methods get 405.
 */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include <microhttpd.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "broker/broker.h"

#define DSD__DOWNLOAD_BLOCK (64 * 1024)

static ssize_t dsd__download_read(void *cls, uint64_t pos, char *buf, size_t max) {
  dsd_blob_reader_t *r = cls;
  long n = dsd_blob_reader_read(r, buf, max);
  if (n == 0)
    return MHD_CONTENT_READER_END_OF_STREAM;
  if (n < 0)
    return MHD_CONTENT_READER_END_WITH_ERROR;
  return (ssize_t)n;
}

static void dsd__download_free(void *cls) {
  dsd_blob_reader_close(cls);
}

/* Parses one range of a Range header against size. Returns 1 and sets
 * [*first, *last] for a satisfiable single range, 0 when the header is
 * absent, malformed or lists several ranges (serve the whole object), -1
 * when it is unsatisfiable (416). */
static int dsd__range_parse(const char *h, uint64_t size, uint64_t *first, uint64_t *last) {
  if (h == NULL || strncmp(h, "bytes=", 6) != 0)
    return 0;
  const char *p = h + 6;
  if (strchr(p, ',') != NULL)
    return 0;
  char *end = NULL;
  if (*p == '-') {
    /* suffix: the last n bytes */
    if (p[1] < '0' || p[1] > '9')
      return 0;
    uint64_t n = strtoull(p + 1, &end, 10);
    if (*end != '\0')
      return 0;
    if (n == 0 || size == 0)
      return -1;
    *first = n >= size ? 0 : size - n;
    *last = size - 1;
    return 1;
  }
  if (*p < '0' || *p > '9')
    return 0;
  uint64_t a = strtoull(p, &end, 10);
  if (*end != '-')
    return 0;
  p = end + 1;
  uint64_t z = UINT64_MAX;
  if (*p != '\0') {
    if (*p < '0' || *p > '9')
      return 0;
    z = strtoull(p, &end, 10);
    if (*end != '\0' || z < a)
      return 0;
  }
  if (a >= size)
    return -1;
  *first = a;
  *last = z >= size ? size - 1 : z;
  return 1;
}

int dsd__broker_stream_dump(dsd_broker_t *b, struct MHD_Connection *c, const char *dkey,
                            const char *filename, const char *sha256, dsd_err_t *err) {
  dsd_blob_reader_t *reader = NULL;
  dsd_blob_info_t info;
  char disp[400], v[128];
  uint64_t first = 0, last = 0;
  int status = 0;
  int rc = dsd_blob_head(b->store, dkey, &info, err);
  if (rc < 0)
    goto cleanup;
  const char *rh = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_RANGE);
  int range = dsd__range_parse(rh, info.size, &first, &last);
  if (range < 0) {
    struct MHD_Response *r = MHD_create_response_from_buffer(0, "", MHD_RESPMEM_PERSISTENT);
    if (r == NULL)
      goto cleanup;
    snprintf(v, sizeof(v), "bytes */%" PRIu64, info.size);
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_RANGE, v);
    MHD_add_response_header(r, MHD_HTTP_HEADER_ACCEPT_RANGES, "bytes");
    MHD_queue_response(c, MHD_HTTP_RANGE_NOT_SATISFIABLE, r);
    MHD_destroy_response(r);
    status = 416;
    goto cleanup;
  }
  uint64_t len = range > 0 ? last - first + 1 : info.size;
  rc = dsd_blob_reader_open(b->store, dkey, first, range > 0 ? len : UINT64_MAX, &reader, err);
  if (rc < 0)
    goto cleanup;
  struct MHD_Response *r = MHD_create_response_from_callback(
      len, DSD__DOWNLOAD_BLOCK, dsd__download_read, reader, dsd__download_free);
  if (r == NULL) {
    dsd_blob_reader_close(reader);
    rc = dsd_err_set(err, DSD_ENOMEM, "out of memory");
    goto cleanup;
  }
  snprintf(disp, sizeof(disp), "attachment; filename=\"%s\"", filename);
  MHD_add_response_header(r, "Content-Type", "application/octet-stream");
  MHD_add_response_header(r, "Content-Disposition", disp);
  MHD_add_response_header(r, MHD_HTTP_HEADER_ACCEPT_RANGES, "bytes");
  if (sha256 != NULL && strlen(sha256) == 64) {
    /* the archive's digest identifies this exact content */
    snprintf(v, sizeof(v), "\"%s\"", sha256);
    MHD_add_response_header(r, MHD_HTTP_HEADER_ETAG, v);
  }
  if (range > 0) {
    snprintf(v, sizeof(v), "bytes %" PRIu64 "-%" PRIu64 "/%" PRIu64, first, last, info.size);
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_RANGE, v);
  }
  status = range > 0 ? 206 : 200;
  MHD_queue_response(c, (unsigned int)status, r);
  MHD_destroy_response(r);
cleanup:
  return status;
}

/* Loads the instance and checks a binding's credentials (user is the
 * binding id). Wrong or unknown credentials give DSD_EAUTH, without saying
 * which. On success *inst is a new reference. */
static int dsd__binding_check(dsd_broker_t *b, const char *id, const char *user,
                              const char *pass, json_t **inst, dsd_err_t *err) {
  json_t *binding = NULL;
  char key[600], hash[65];
  int rc = 0;
  *inst = NULL;
  if (!dsd_broker_id_valid(id) || !dsd_broker_id_valid(user))
    return dsd_err_set(err, DSD_EAUTH, "unknown binding or wrong password");
  pthread_mutex_lock(&b->lock);
  dsd_broker_key_instance(key, sizeof(key), id);
  rc = dsd_broker_state_get(b->store, key, inst, err);
  if (rc == 0) {
    dsd_broker_key_binding(key, sizeof(key), id, user);
    rc = dsd_broker_state_get(b->store, key, &binding, err);
  }
  pthread_mutex_unlock(&b->lock);
  if (rc == DSD_ENOTFOUND) {
    rc = dsd_err_set(err, DSD_EAUTH, "unknown binding or wrong password");
    goto cleanup;
  }
  if (rc < 0)
    goto cleanup;
  const char *salt = json_string_value(json_object_get(binding, "salt"));
  const char *want = json_string_value(json_object_get(binding, "password_sha256"));
  if (salt == NULL || want == NULL || strlen(want) != 64) {
    rc = dsd_err_set(err, DSD_EAUTH, "unknown binding or wrong password");
    goto cleanup;
  }
  /* sha256(salt || password), as osb.c stores it */
  unsigned char md[32];
  EVP_MD_CTX *m = EVP_MD_CTX_new();
  EVP_DigestInit_ex(m, EVP_sha256(), NULL);
  EVP_DigestUpdate(m, salt, strlen(salt));
  EVP_DigestUpdate(m, pass, strlen(pass));
  EVP_DigestFinal_ex(m, md, NULL);
  EVP_MD_CTX_free(m);
  for (int i = 0; i < 32; i++)
    snprintf(hash + 2 * i, 3, "%02x", md[i]);
  if (CRYPTO_memcmp(hash, want, 64) != 0)
    rc = dsd_err_set(err, DSD_EAUTH, "unknown binding or wrong password");
cleanup:
  json_decref(binding);
  if (rc < 0) {
    json_decref(*inst);
    *inst = NULL;
  }
  return rc;
}

int dsd_broker_download_open(dsd_broker_t *b, const char *id, const char *user,
                             const char *pass, dsd_blob_reader_t **reader, uint64_t *size,
                             char *filename, size_t cap, dsd_err_t *err) {
  json_t *inst = NULL;
  *reader = NULL;
  int rc = dsd__binding_check(b, id, user, pass, &inst, err);
  if (rc < 0)
    return rc;
  const char *dkey = json_string_value(json_object_get(json_object_get(inst, "dump"), "key"));
  if (dkey == NULL) {
    rc = dsd_err_set(err, DSD_ENOTFOUND, "this service instance has no dump");
    goto cleanup;
  }
  const char *slash = strrchr(dkey, '/');
  snprintf(filename, cap, "%s", slash ? slash + 1 : dkey);
  dsd_blob_info_t info;
  rc = dsd_blob_head(b->store, dkey, &info, err);
  if (rc == 0)
    rc = dsd_blob_reader_open(b->store, dkey, 0, UINT64_MAX, reader, err);
  if (rc == 0)
    *size = info.size;
cleanup:
  json_decref(inst);
  return rc;
}

int dsd_broker_download_serve(dsd_broker_t *b, struct MHD_Connection *c, const char *url,
                              const char *method) {
  static const char prefix[] = "/v1/dumps/";
  static const char suffix[] = "/download";
  char id[300];
  char *user = NULL, *pass = NULL;
  json_t *inst = NULL;
  dsd_err_t err = {0};
  int status = 0;
  size_t n = strlen(url);
  if (n <= sizeof(prefix) - 1 + sizeof(suffix) - 1 ||
      strcmp(url + n - (sizeof(suffix) - 1), suffix) != 0 ||
      n - (sizeof(prefix) - 1) - (sizeof(suffix) - 1) >= sizeof(id)) {
    return dsd__broker_send_error(c, 404, "NotFound", "no such endpoint");
  }
  if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0)
    return dsd__broker_send_error(c, 405, "MethodNotAllowed",
                                  "the download is read-only: use GET");
  size_t idlen = n - (sizeof(prefix) - 1) - (sizeof(suffix) - 1);
  memcpy(id, url + sizeof(prefix) - 1, idlen);
  id[idlen] = '\0';
  const char *auth = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
  int rc = dsd_broker_basic_auth_parse(auth, &user, &pass);
  if (rc == 0)
    rc = dsd__binding_check(b, id, user, pass, &inst, &err);
  if (rc < 0) {
    if (err.code == 0 || err.code == DSD_EAUTH || err.code == DSD_EINVAL) {
      status = dsd__broker_send_error(c, 401, "Unauthorized", "unknown binding or wrong password");
    } else {
      status = dsd__broker_send_error(c, 500, "InternalError", dsd_err_msg(&err));
    }
    goto cleanup;
  }
  json_t *dump = json_object_get(inst, "dump");
  const char *dkey = json_string_value(json_object_get(dump, "key"));
  if (dkey == NULL) {
    status = dsd__broker_send_error(c, 404, "NotFound", "this service instance has no dump");
    goto cleanup;
  }
  const char *slash = strrchr(dkey, '/');
  status = dsd__broker_stream_dump(b, c, dkey, slash ? slash + 1 : dkey,
                                   json_string_value(json_object_get(dump, "sha256")), &err);
  if (status == 0)
    status = dsd__broker_send_error(c, err.code == DSD_ENOTFOUND ? 404 : 500,
                                    err.code == DSD_ENOTFOUND ? "NotFound" : "InternalError",
                                    dsd_err_msg(&err));
cleanup:
  if (pass != NULL)
    OPENSSL_cleanse(pass, strlen(pass));
  free(user);
  free(pass);
  json_decref(inst);
  return status;
}
