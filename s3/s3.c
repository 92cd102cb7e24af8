/*
 * s3.c - the S3 client: request building, signing, retries, error mapping
 * and the individual operations (see s3.h).
 *
 * Structure:
 *   - client: configuration, a pool of curl easy handles behind a mutex;
 *   - s3_req_t: one logical request (method, bucket, key, query, signed
 *     headers, in-memory body, optional streaming sink) and its response;
 *   - s3_perform(): the attempt loop: sign with a fresh date, send, classify,
 *     back off and retry, then map the final answer to a DSD_E* code;
 *   - the operations, each a few lines over s3_perform().
 */
#include "s3/s3.h"

#include <curl/curl.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>
#include <stdatomic.h>

/* Retries of every client in the process, for the broker's /metrics
 * (dsd_s3_retries_total). Relaxed: a counter, no ordering needed. */
static atomic_ulong dsd__s3_retries;

unsigned long dsd_s3_retries_total(void) {
  return atomic_load_explicit(&dsd__s3_retries, memory_order_relaxed);
}

#include "core/buf.h"
#include "core/log.h"
#include "s3/sigv4.h"

#define POOL_MAX 8
/* Bodies we keep in memory (XML answers, error documents). A list page of
 * 1000 keys is a few hundred KiB; anything larger is not an S3 answer. */
#define MAX_XML_BODY (16u * 1024 * 1024)

struct dsd_s3_client {
  char *endpoint; /* scheme://host[:port]; NULL for AWS */
  char *endpoint_host;
  char *describe;
  char *region;
  char *access_key;
  char *secret_key;
  char *session_token;
  char *ca_file;
  unsigned base_ms, cap_ms;
  int max_attempts;
  pthread_mutex_t lock; /* guards pool/npool */
  CURL *pool[POOL_MAX];
  int npool;
};

/* ---------------------------------------------------------------- */
/* Global init, randomness, backoff                                  */
/* ---------------------------------------------------------------- */

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_rc = CURLE_OK;

static void curl_init_once(void) {
  curl_init_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

unsigned dsd__s3_backoff_ms(unsigned attempt, unsigned base_ms,
                            unsigned cap_ms, double r) {
  double ceiling = (double)base_ms;
  for (unsigned i = 0; i < attempt && ceiling < cap_ms; i++) ceiling *= 2;
  if (ceiling > cap_ms) ceiling = cap_ms;
  if (r < 0) r = 0;
  if (r >= 1) r = 0.999999;
  return (unsigned)(ceiling * r);
}

bool dsd__s3_retryable(int curl_code, long status) {
  switch (curl_code) {
    case CURLE_OK:
      break;
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_CONNECT:
    case CURLE_OPERATION_TIMEDOUT:
    case CURLE_SEND_ERROR:
    case CURLE_RECV_ERROR:
    case CURLE_GOT_NOTHING:
    case CURLE_PARTIAL_FILE:
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM:
      return true;
    default:
      return false;
  }
  return status >= 500 || status == 429;
}

static double jitter(void) {
  static _Thread_local unsigned short seed[3];
  static _Thread_local bool seeded;
  if (!seeded) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    uintptr_t self = (uintptr_t)pthread_self();
    seed[0] = (unsigned short)ts.tv_nsec;
    seed[1] = (unsigned short)(ts.tv_nsec >> 16) ^ (unsigned short)self;
    seed[2] = (unsigned short)(self >> 16) ^ (unsigned short)getpid();
    seeded = true;
  }
  return erand48(seed);
}

static void sleep_ms(unsigned ms) {
  struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
  while (nanosleep(&ts, &ts) == -1 && errno == EINTR) {
  }
}

/* ---------------------------------------------------------------- */
/* Client                                                            */
/* ---------------------------------------------------------------- */

static char *dup_or_null(const char *s) {
  return (s && *s) ? strdup(s) : NULL;
}

int dsd_s3_client_new(const dsd_s3_config_t *cfg, dsd_s3_client_t **out,
                      dsd_err_t *err) {
  int rc = 0;
  dsd_s3_client_t *c = NULL;
  *out = NULL;
  pthread_once(&curl_once, curl_init_once);
  if (curl_init_rc != CURLE_OK)
    return dsd_err_set(err, DSD_EINTERNAL, "curl_global_init failed: %s",
                       curl_easy_strerror(curl_init_rc));
  if (!cfg->access_key || !*cfg->access_key || !cfg->secret_key ||
      !*cfg->secret_key)
    return dsd_err_set(err, DSD_ECONFIG,
                       "s3 credentials are missing HINT: set "
                       "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY");
  c = calloc(1, sizeof *c);
  if (!c) return dsd_err_set(err, DSD_ENOMEM, "s3 client: out of memory");
  pthread_mutex_init(&c->lock, NULL);
  c->region = strdup(cfg->region && *cfg->region ? cfg->region : "us-east-1");
  c->access_key = strdup(cfg->access_key);
  c->secret_key = strdup(cfg->secret_key);
  c->session_token = dup_or_null(cfg->session_token);
  c->ca_file = dup_or_null(cfg->ca_file);
  c->base_ms = cfg->retry_base_ms ? cfg->retry_base_ms : 100;
  c->cap_ms = cfg->retry_cap_ms ? cfg->retry_cap_ms : 10000;
  c->max_attempts = cfg->max_attempts > 0 ? cfg->max_attempts
                                          : DSD_S3_MAX_ATTEMPTS;
  if (!c->region || !c->access_key || !c->secret_key ||
      (cfg->session_token && *cfg->session_token && !c->session_token) ||
      (cfg->ca_file && *cfg->ca_file && !c->ca_file)) {
    rc = dsd_err_set(err, DSD_ENOMEM, "s3 client: out of memory");
    goto cleanup;
  }
  if (cfg->endpoint && *cfg->endpoint) {
    const char *e = cfg->endpoint;
    size_t skip;
    if (strncmp(e, "http://", 7) == 0) {
      skip = 7;
    } else if (strncmp(e, "https://", 8) == 0) {
      skip = 8;
    } else {
      rc = dsd_err_set(err, DSD_ECONFIG,
                       "s3 endpoint '%s' is not an http(s) url HINT: set "
                       "AWS_ENDPOINT_URL_S3 like https://s3.example.com",
                       e);
      goto cleanup;
    }
    size_t len = strlen(e);
    while (len > skip && e[len - 1] == '/') len--;
    const char *slash = memchr(e + skip, '/', len - skip);
    if (slash || len == skip) {
      rc = dsd_err_set(err, DSD_ECONFIG,
                       "s3 endpoint '%s' must be scheme://host[:port] "
                       "without a path HINT: fix AWS_ENDPOINT_URL_S3",
                       e);
      goto cleanup;
    }
    c->endpoint = strndup(e, len);
    c->endpoint_host = strndup(e + skip, len - skip);
    c->describe = c->endpoint ? strdup(c->endpoint) : NULL;
  } else {
    dsd_buf_t d = DSD_BUF_INIT;
    if (dsd_buf_printf(&d, "https://s3.%s.amazonaws.com", c->region) == 0)
      c->describe = dsd_buf_steal(&d);
    dsd_buf_free(&d);
  }
  if (!c->describe) {
    rc = dsd_err_set(err, DSD_ENOMEM, "s3 client: out of memory");
    goto cleanup;
  }
  /* A second line of defence: should either ever be formatted into a
   * message, the redactor replaces it. */
  dsd_redact_register(c->secret_key);
  if (c->session_token) dsd_redact_register(c->session_token);
  *out = c;
  c = NULL;
cleanup:
  dsd_s3_client_free(c);
  return rc;
}

int dsd_s3_client_from_env(dsd_s3_client_t **out, dsd_err_t *err) {
  const char *endpoint = getenv("AWS_ENDPOINT_URL_S3");
  if (!endpoint || !*endpoint) endpoint = getenv("AWS_ENDPOINT_URL");
  dsd_s3_config_t cfg = {
      .endpoint = endpoint,
      .region = getenv("AWS_REGION"),
      .access_key = getenv("AWS_ACCESS_KEY_ID"),
      .secret_key = getenv("AWS_SECRET_ACCESS_KEY"),
      .session_token = getenv("AWS_SESSION_TOKEN"),
      .ca_file = getenv("DSD_S3_CA_FILE"),
  };
  /* Tests shorten the backoff so that retry paths run in seconds. */
  const char *base = getenv("DSD_S3_RETRY_BASE_MS");
  if (base && *base) cfg.retry_base_ms = (unsigned)strtoul(base, NULL, 10);
  if (!cfg.region || !*cfg.region) cfg.region = getenv("AWS_DEFAULT_REGION");
  return dsd_s3_client_new(&cfg, out, err);
}

void dsd_s3_client_free(dsd_s3_client_t *c) {
  if (!c) return;
  for (int i = 0; i < c->npool; i++) curl_easy_cleanup(c->pool[i]);
  pthread_mutex_destroy(&c->lock);
  /* The redact registrations stay: another client may share the secret,
   * and a secret is never less secret for being unused. */
  if (c->secret_key) {
    memset(c->secret_key, 0, strlen(c->secret_key));
    free(c->secret_key);
  }
  if (c->session_token) {
    memset(c->session_token, 0, strlen(c->session_token));
    free(c->session_token);
  }
  free(c->endpoint);
  free(c->endpoint_host);
  free(c->describe);
  free(c->region);
  free(c->access_key);
  free(c->ca_file);
  free(c);
}

const char *dsd_s3_client_endpoint(const dsd_s3_client_t *c) {
  return c->describe;
}

static CURL *pool_get(dsd_s3_client_t *c) {
  CURL *h = NULL;
  pthread_mutex_lock(&c->lock);
  if (c->npool > 0) h = c->pool[--c->npool];
  pthread_mutex_unlock(&c->lock);
  return h ? h : curl_easy_init();
}

static void pool_put(dsd_s3_client_t *c, CURL *h) {
  if (!h) return;
  /* curl_easy_reset keeps the connection cache, which is the point of
   * pooling. */
  curl_easy_reset(h);
  pthread_mutex_lock(&c->lock);
  if (c->npool < POOL_MAX) {
    c->pool[c->npool++] = h;
    h = NULL;
  }
  pthread_mutex_unlock(&c->lock);
  if (h) curl_easy_cleanup(h);
}

/* ---------------------------------------------------------------- */
/* One request                                                       */
/* ---------------------------------------------------------------- */

#define MAX_Q 8
#define MAX_H 8

typedef struct s3_req {
  const char *method;
  const char *bucket;
  const char *key; /* NULL for bucket-level requests */
  dsd_sigv4_pair_t query[MAX_Q];
  size_t nquery;
  dsd_sigv4_pair_t hdr[MAX_H]; /* extra headers, signed */
  size_t nhdr;
  const void *body;
  size_t body_len;
  bool send_body; /* PUT/POST: send Content-Length even when 0 */
  bool head;
  /* Streaming GET: body of 2xx answers goes to cb; ranged requests resume
   * at range_start + delivered after a dropped connection. */
  dsd_s3_data_cb cb;
  void *cb_data;
  bool ranged;
  uint64_t range_start;
  uint64_t range_end; /* inclusive; UINT64_MAX: open-ended */
  uint64_t delivered;
  bool cb_stopped;
  bool sent_range; /* this attempt carried a Range header */

  /* Response. */
  CURL *curl;
  long status;
  dsd_buf_t resp;
  bool resp_overflow;
  char etag[128];
  char content_range[128];
  char last_modified[64];
  uint64_t content_length;
  bool has_content_length;
  /* Upload cursor. */
  size_t sent;
} s3_req_t;

static size_t on_write(char *p, size_t sz, size_t n, void *ud) {
  s3_req_t *r = ud;
  size_t len = sz * n;
  long st = 0;
  curl_easy_getinfo(r->curl, CURLINFO_RESPONSE_CODE, &st);
  if (r->cb && st >= 200 && st < 300) {
    if (r->cb(r->cb_data, p, len)) {
      r->cb_stopped = true;
      return 0; /* makes curl fail with CURLE_WRITE_ERROR */
    }
    r->delivered += len;
    return len;
  }
  if (r->resp.len + len > MAX_XML_BODY) {
    r->resp_overflow = true;
    return len;
  }
  if (dsd_buf_append(&r->resp, p, len)) return 0;
  return len;
}

static void copy_header_value(char *dst, size_t dstlen, const char *v,
                              size_t vlen) {
  while (vlen && (*v == ' ' || *v == '\t')) v++, vlen--;
  while (vlen && (v[vlen - 1] == '\r' || v[vlen - 1] == '\n' ||
                  v[vlen - 1] == ' '))
    vlen--;
  if (vlen >= dstlen) vlen = dstlen - 1;
  memcpy(dst, v, vlen);
  dst[vlen] = '\0';
}

static size_t on_header(char *p, size_t sz, size_t n, void *ud) {
  s3_req_t *r = ud;
  size_t len = sz * n;
  const char *colon = memchr(p, ':', len);
  if (!colon) return len;
  size_t nl = (size_t)(colon - p);
  const char *v = colon + 1;
  size_t vl = len - nl - 1;
  if (nl == 4 && strncasecmp(p, "etag", 4) == 0) {
    copy_header_value(r->etag, sizeof r->etag, v, vl);
  } else if (nl == 13 && strncasecmp(p, "content-range", 13) == 0) {
    copy_header_value(r->content_range, sizeof r->content_range, v, vl);
  } else if (nl == 13 && strncasecmp(p, "last-modified", 13) == 0) {
    copy_header_value(r->last_modified, sizeof r->last_modified, v, vl);
  } else if (nl == 14 && strncasecmp(p, "content-length", 14) == 0) {
    char num[32];
    copy_header_value(num, sizeof num, v, vl);
    r->content_length = strtoull(num, NULL, 10);
    r->has_content_length = true;
  }
  return len;
}

static size_t on_read(char *p, size_t sz, size_t n, void *ud) {
  s3_req_t *r = ud;
  size_t want = sz * n, left = r->body_len - r->sent;
  if (want > left) want = left;
  if (want) memcpy(p, (const char *)r->body + r->sent, want);
  r->sent += want;
  return want;
}

static int on_seek(void *ud, curl_off_t off, int origin) {
  s3_req_t *r = ud;
  if (origin != SEEK_SET || off < 0 || (size_t)off > r->body_len)
    return CURL_SEEKFUNC_CANTSEEK;
  r->sent = (size_t)off;
  return CURL_SEEKFUNC_OK;
}

/* "PUT bucket/key" for messages. */
static void describe_op(const s3_req_t *r, char *out, size_t outlen) {
  if (r->key)
    snprintf(out, outlen, "%s %s/%s", r->method, r->bucket, r->key);
  else
    snprintf(out, outlen, "%s %s", r->method, r->bucket);
}

/* Maps a final non-2xx answer to a code and message. */
static int map_http_error(dsd_s3_client_t *c, s3_req_t *r, int attempts,
                          dsd_err_t *err) {
  char op[1200];
  dsd_s3_xml_error_t xe = {0};
  int rc;
  describe_op(r, op, sizeof op);
  dsd_s3_xml_parse_error(r->resp.data, r->resp.len, &xe);
  const char *code = xe.code ? xe.code : "";
  const char *msg = xe.message ? xe.message : "";
  long st = r->status;

  if (st == 403 && (!strcmp(code, "SignatureDoesNotMatch") ||
                    !strcmp(code, "InvalidAccessKeyId"))) {
    rc = dsd_err_set(err, DSD_EAUTH,
                     "s3 refused the request signature (%s) for %s HINT: "
                     "check %s",
                     code, op,
                     !strcmp(code, "InvalidAccessKeyId")
                         ? "AWS_ACCESS_KEY_ID"
                         : "AWS_SECRET_ACCESS_KEY");
  } else if ((st == 400 || st == 403) &&
             (!strcmp(code, "ExpiredToken") || !strcmp(code, "InvalidToken") ||
              !strcmp(code, "TokenRefreshRequired"))) {
    rc = dsd_err_set(err, DSD_EAUTH,
                     "s3 refused the session token (%s) for %s HINT: check "
                     "AWS_SESSION_TOKEN",
                     code, op);
  } else if (st == 403 && !strcmp(code, "RequestTimeTooSkewed")) {
    rc = dsd_err_set(err, DSD_EAUTH,
                     "s3 refused %s: the request time is too skewed HINT: "
                     "check the system clock",
                     op);
  } else if (st == 403) {
    if (*code)
      rc = dsd_err_set(err, DSD_EDENIED,
                       "s3 denied %s (%s: %s) HINT: check the bucket policy "
                       "and the permissions of AWS_ACCESS_KEY_ID",
                       op, code, msg);
    else
      rc = dsd_err_set(err, DSD_EDENIED,
                       "s3 denied %s (status 403) HINT: check "
                       "AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and the "
                       "bucket policy",
                       op);
  } else if (st == 404 && !strcmp(code, "NoSuchBucket")) {
    rc = dsd_err_set(err, DSD_ENOTFOUND,
                     "s3 bucket '%s' does not exist at %s HINT: create it or "
                     "fix DSD_STORAGE",
                     r->bucket, c->describe);
  } else if (st == 404 && !strcmp(code, "NoSuchUpload")) {
    rc = dsd_err_set(err, DSD_ENOTFOUND,
                     "s3 multipart upload not found for %s (NoSuchUpload)", op);
  } else if (st == 404) {
    rc = dsd_err_set(err, DSD_ENOTFOUND, "s3 object not found: %s/%s",
                     r->bucket, r->key ? r->key : "");
  } else if (st == 412) {
    rc = dsd_err_set(err, DSD_ECONFLICT,
                     "s3 object changed while reading it: %s", op);
  } else if (st == 416) {
    rc = dsd_err_set(err, DSD_EINVAL, "s3 range not satisfiable for %s", op);
  } else if (st >= 500 || st == 429) {
    rc = dsd_err_set(err, DSD_EIO,
                     "s3 answered %ld%s%s%s for %s after %d attempts%s%s", st,
                     *code ? " (" : "", code, *code ? ")" : "", op, attempts,
                     *msg ? ": " : "", msg);
  } else {
    rc = dsd_err_set(err, DSD_EPROTO, "s3 rejected %s with status %ld%s%s%s%s",
                     op, st, *code ? ": " : "", code, *msg ? ": " : "", msg);
  }
  dsd_s3_xml_error_free(&xe);
  return rc;
}

static void build_target(dsd_s3_client_t *c, const s3_req_t *r,
                         dsd_buf_t *base, dsd_buf_t *host, dsd_buf_t *path,
                         int *rc) {
  if (*rc) return;
  if (c->endpoint) {
    *rc = dsd_buf_append_str(base, c->endpoint);
    if (!*rc) *rc = dsd_buf_append_str(host, c->endpoint_host);
    if (!*rc) *rc = dsd_buf_printf(path, "/%s", r->bucket);
    if (!*rc && r->key) *rc = dsd_buf_printf(path, "/%s", r->key);
  } else if (strchr(r->bucket, '.')) {
    /* A dotted bucket name would not match the *.s3 TLS certificate as a
     * virtual host, so AWS serves it path style. */
    *rc = dsd_buf_printf(host, "s3.%s.amazonaws.com", c->region);
    if (!*rc) *rc = dsd_buf_printf(base, "https://%s", host->data);
    if (!*rc) *rc = dsd_buf_printf(path, "/%s", r->bucket);
    if (!*rc && r->key) *rc = dsd_buf_printf(path, "/%s", r->key);
  } else {
    *rc = dsd_buf_printf(host, "%s.s3.%s.amazonaws.com", r->bucket,
                         c->region);
    if (!*rc) *rc = dsd_buf_printf(base, "https://%s", host->data);
    if (!*rc) *rc = dsd_buf_printf(path, "/%s", r->key ? r->key : "");
  }
}

static int s3_perform(dsd_s3_client_t *c, s3_req_t *r, dsd_err_t *err) {
  int rc = 0, attempt = 0;
  CURLcode cc = CURLE_OK;
  char payload_hash[65], amz_date[17], range[80], op[1200];
  char curl_msg[CURL_ERROR_SIZE];
  dsd_buf_t base = DSD_BUF_INIT, host = DSD_BUF_INIT, rawpath = DSD_BUF_INIT,
            url = DSD_BUF_INIT, line = DSD_BUF_INIT;
  struct curl_slist *hl = NULL;
  dsd_sigv4_result_t sig = {0};

  describe_op(r, op, sizeof op);
  build_target(c, r, &base, &host, &rawpath, &rc);
  if (rc) goto cleanup;
  if (r->send_body)
    dsd_sigv4_sha256_hex(r->body ? r->body : "", r->body_len, payload_hash);
  else
    memcpy(payload_hash, DSD_SIGV4_EMPTY_SHA256, 65);

  r->curl = pool_get(c);
  if (!r->curl) {
    rc = dsd_err_set(err, DSD_ENOMEM, "curl_easy_init failed");
    goto cleanup;
  }

  for (attempt = 1;; attempt++) {
    dsd_sigv4_pair_t hs[MAX_H + 6];
    size_t nh = 0;
    dsd_err_t serr = {0};

    dsd_buf_reset(&r->resp);
    dsd_buf_reset(&url);
    r->resp_overflow = false;
    r->status = 0;
    r->etag[0] = r->content_range[0] = r->last_modified[0] = '\0';
    r->has_content_length = false;
    r->content_length = 0;
    r->sent = 0;
    curl_msg[0] = '\0';

    dsd_sigv4_amz_date((int64_t)time(NULL), amz_date);
    hs[nh++] = (dsd_sigv4_pair_t){"host", host.data};
    hs[nh++] = (dsd_sigv4_pair_t){"x-amz-content-sha256", payload_hash};
    hs[nh++] = (dsd_sigv4_pair_t){"x-amz-date", amz_date};
    if (c->session_token)
      hs[nh++] = (dsd_sigv4_pair_t){"x-amz-security-token", c->session_token};
    for (size_t i = 0; i < r->nhdr; i++) hs[nh++] = r->hdr[i];
    if (r->ranged || r->delivered) {
      uint64_t start = r->range_start + r->delivered;
      if (r->range_end == UINT64_MAX)
        snprintf(range, sizeof range, "bytes=%llu-",
                 (unsigned long long)start);
      else
        snprintf(range, sizeof range, "bytes=%llu-%llu",
                 (unsigned long long)start, (unsigned long long)r->range_end);
      hs[nh++] = (dsd_sigv4_pair_t){"range", range};
      r->sent_range = true;
    } else {
      r->sent_range = false;
    }

    dsd_sigv4_request_t sreq = {
        .method = r->method,
        .path = rawpath.data,
        .query = r->query,
        .nquery = r->nquery,
        .headers = hs,
        .nheaders = nh,
        .payload_hash = payload_hash,
        .amz_date = amz_date,
    };
    dsd_sigv4_result_free(&sig);
    rc = dsd_sigv4_sign(&(dsd_sigv4_creds_t){c->access_key, c->secret_key,
                                             c->session_token, c->region,
                                             "s3"},
                        &sreq, &sig, &serr);
    if (rc) {
      dsd_err_set(err, rc, "%s", dsd_err_msg(&serr));
      goto cleanup;
    }

    rc = dsd_buf_append_str(&url, base.data);
    if (!rc) rc = dsd_sigv4_encode_path(&url, rawpath.data);
    if (!rc && r->nquery) {
      rc = dsd_buf_append_char(&url, '?');
      if (!rc) rc = dsd_sigv4_canonical_query(&url, r->query, r->nquery);
    }
    curl_slist_free_all(hl);
    hl = NULL;
    for (size_t i = 0; i < nh && !rc; i++) {
      dsd_buf_reset(&line);
      rc = dsd_buf_printf(&line, "%s: %s", hs[i].name, hs[i].value);
      if (!rc) {
        struct curl_slist *n2 = curl_slist_append(hl, line.data);
        if (!n2) rc = DSD_ENOMEM;
        else hl = n2;
      }
    }
    if (!rc) {
      dsd_buf_reset(&line);
      rc = dsd_buf_printf(&line, "Authorization: %s", sig.authorization);
    }
    const char *fixed[] = {line.data, "Expect:", "Transfer-Encoding:",
                           r->send_body ? NULL : "Content-Type:"};
    for (size_t i = 0; i < 4 && !rc; i++) {
      if (!fixed[i]) continue;
      struct curl_slist *n2 = curl_slist_append(hl, fixed[i]);
      if (!n2) rc = DSD_ENOMEM;
      else hl = n2;
    }
    if (!rc && r->send_body) {
      /* libcurl must not invent a Content-Type for bodies we did not
       * type. */
      bool typed = false;
      for (size_t i = 0; i < r->nhdr; i++)
        if (!strcasecmp(r->hdr[i].name, "content-type")) typed = true;
      if (!typed) {
        struct curl_slist *n2 = curl_slist_append(hl, "Content-Type:");
        if (!n2) rc = DSD_ENOMEM;
        else hl = n2;
      }
    }
    /* The Authorization line is not needed once in the slist. */
    if (line.data) memset(line.data, 0, line.len);
    if (rc) {
      dsd_err_set(err, DSD_ENOMEM, "s3 request: out of memory");
      goto cleanup;
    }

    CURL *h = r->curl;
    curl_easy_reset(h);
    curl_easy_setopt(h, CURLOPT_URL, url.data);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hl);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, curl_msg);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT, 15L);
    /* A stalled transfer (below 1 byte/s for a minute) counts as a
     * connection error and is retried. */
    curl_easy_setopt(h, CURLOPT_LOW_SPEED_LIMIT, 1L);
    curl_easy_setopt(h, CURLOPT_LOW_SPEED_TIME, 60L);
    curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 1L);
    curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 2L);
    if (c->ca_file) curl_easy_setopt(h, CURLOPT_CAINFO, c->ca_file);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_write);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, r);
    curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(h, CURLOPT_HEADERDATA, r);
    if (r->head) {
      curl_easy_setopt(h, CURLOPT_NOBODY, 1L);
    } else if (r->send_body) {
      curl_easy_setopt(h, CURLOPT_UPLOAD, 1L);
      curl_easy_setopt(h, CURLOPT_READFUNCTION, on_read);
      curl_easy_setopt(h, CURLOPT_READDATA, r);
      curl_easy_setopt(h, CURLOPT_SEEKFUNCTION, on_seek);
      curl_easy_setopt(h, CURLOPT_SEEKDATA, r);
      curl_easy_setopt(h, CURLOPT_INFILESIZE_LARGE, (curl_off_t)r->body_len);
      if (strcmp(r->method, "PUT") != 0)
        curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, r->method);
    } else if (strcmp(r->method, "GET") != 0) {
      curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, r->method);
    }

    cc = curl_easy_perform(h);
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &r->status);
    /* Drop the header list (it holds the Authorization value) now. */
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, NULL);
    curl_slist_free_all(hl);
    hl = NULL;

    if (r->cb_stopped) {
      rc = dsd_err_set(err, DSD_ECANCELED, "s3 %s: stopped by the reader",
                       op);
      goto cleanup;
    }
    if (attempt < c->max_attempts && dsd__s3_retryable((int)cc, r->status)) {
      unsigned ms = dsd__s3_backoff_ms((unsigned)attempt - 1, c->base_ms,
                                       c->cap_ms, jitter());
      atomic_fetch_add_explicit(&dsd__s3_retries, 1, memory_order_relaxed);
      if (cc != CURLE_OK)
        dsd_log_warn("s3 %s: attempt %d failed (%s), retrying in %u ms", op,
                     attempt, curl_msg[0] ? curl_msg : curl_easy_strerror(cc),
                     ms);
      else
        dsd_log_warn("s3 %s: attempt %d got status %ld, retrying in %u ms",
                     op, attempt, r->status, ms);
      sleep_ms(ms);
      continue;
    }
    break;
  }

  if (cc != CURLE_OK) {
    int code = cc == CURLE_OPERATION_TIMEDOUT ? DSD_ETIMEDOUT : DSD_ENET;
    const char *hint = "HINT: check AWS_ENDPOINT_URL_S3 and the network";
    if (cc == CURLE_PEER_FAILED_VERIFICATION || cc == CURLE_SSL_CACERT_BADFILE ||
        cc == CURLE_SSL_CONNECT_ERROR)
      hint = "HINT: check the server certificate or set DSD_S3_CA_FILE";
    rc = dsd_err_set(err, code, "s3 %s to %s failed after %d attempts: %s %s",
                     op, c->describe, attempt,
                     curl_msg[0] ? curl_msg : curl_easy_strerror(cc), hint);
    goto cleanup;
  }
  if (r->status < 200 || r->status >= 300) {
    rc = map_http_error(c, r, attempt, err);
    goto cleanup;
  }
  if (r->resp_overflow) {
    rc = dsd_err_set(err, DSD_EPROTO, "s3 answer to %s is too large", op);
    goto cleanup;
  }
  if (r->sent_range && r->status == 200) {
    rc = dsd_err_set(err, DSD_EPROTO,
                     "s3 ignored the range of %s HINT: the server must "
                     "support ranged GETs",
                     op);
    goto cleanup;
  }

cleanup:
  curl_slist_free_all(hl);
  dsd_sigv4_result_free(&sig);
  if (r->curl) pool_put(c, r->curl);
  r->curl = NULL;
  dsd_buf_free(&base);
  dsd_buf_free(&host);
  dsd_buf_free(&rawpath);
  dsd_buf_free(&url);
  dsd_buf_free(&line);
  if (rc == DSD_ENOMEM) dsd_err_set(err, rc, "s3 %s: out of memory", op);
  return rc;
}

static void req_free(s3_req_t *r) { dsd_buf_free(&r->resp); }

static void add_q(s3_req_t *r, const char *name, const char *value) {
  if (r->nquery < MAX_Q) r->query[r->nquery++] = (dsd_sigv4_pair_t){name, value};
}

static void add_h(s3_req_t *r, const char *name, const char *value) {
  if (r->nhdr < MAX_H) r->hdr[r->nhdr++] = (dsd_sigv4_pair_t){name, value};
}

/* ---------------------------------------------------------------- */
/* Operations                                                        */
/* ---------------------------------------------------------------- */

int dsd_s3_put_object(dsd_s3_client_t *c, const char *bucket, const char *key,
                      const void *data, size_t len, const char *content_type,
                      dsd_err_t *err) {
  s3_req_t r = {.method = "PUT", .bucket = bucket, .key = key, .body = data,
                .body_len = len, .send_body = true};
  if (content_type) add_h(&r, "content-type", content_type);
  int rc = s3_perform(c, &r, err);
  req_free(&r);
  return rc;
}

static void fill_info(const s3_req_t *r, dsd_s3_object_info_t *info) {
  if (!info) return;
  memset(info, 0, sizeof *info);
  snprintf(info->etag, sizeof info->etag, "%s", r->etag);
  if (r->last_modified[0]) {
    time_t t = curl_getdate(r->last_modified, NULL);
    info->mtime = t > 0 ? (int64_t)t : 0;
  }
  /* "bytes 0-9/443" gives the total; otherwise Content-Length is it. */
  const char *slash = strchr(r->content_range, '/');
  if (slash && slash[1] != '*')
    info->size = strtoull(slash + 1, NULL, 10);
  else
    info->size = r->content_length;
}

int dsd_s3_get_object(dsd_s3_client_t *c, const char *bucket, const char *key,
                      uint64_t offset, uint64_t length, const char *if_match,
                      dsd_s3_data_cb cb, void *cb_data,
                      dsd_s3_object_info_t *info, dsd_err_t *err) {
  s3_req_t r = {.method = "GET", .bucket = bucket, .key = key, .cb = cb,
                .cb_data = cb_data};
  if (length == 0) {
    /* Nothing to read; a HEAD still reports absence and the size. */
    return dsd_s3_head_object(c, bucket, key, info, err);
  }
  if (offset > 0 || length != UINT64_MAX) {
    r.ranged = true;
    r.range_start = offset;
    r.range_end = length == UINT64_MAX || offset + length < offset
                      ? UINT64_MAX
                      : offset + length - 1;
  } else {
    r.range_start = 0;
    r.range_end = UINT64_MAX;
  }
  if (if_match && *if_match) add_h(&r, "if-match", if_match);
  int rc = s3_perform(c, &r, err);
  if (!rc) fill_info(&r, info);
  req_free(&r);
  return rc;
}

int dsd_s3_head_object(dsd_s3_client_t *c, const char *bucket,
                       const char *key, dsd_s3_object_info_t *info,
                       dsd_err_t *err) {
  s3_req_t r = {.method = "HEAD", .bucket = bucket, .key = key, .head = true};
  int rc = s3_perform(c, &r, err);
  if (!rc) fill_info(&r, info);
  req_free(&r);
  return rc;
}

int dsd_s3_delete_object(dsd_s3_client_t *c, const char *bucket,
                         const char *key, dsd_err_t *err) {
  s3_req_t r = {.method = "DELETE", .bucket = bucket, .key = key};
  dsd_err_t e2 = {0};
  int rc = s3_perform(c, &r, &e2);
  /* S3 answers 204 for absent keys; some servers answer 404 NoSuchKey. */
  if (rc == DSD_ENOTFOUND && r.status == 404) {
    dsd_s3_xml_error_t xe = {0};
    bool bucket_missing = dsd_s3_xml_parse_error(r.resp.data, r.resp.len, &xe) &&
                          xe.code && !strcmp(xe.code, "NoSuchBucket");
    dsd_s3_xml_error_free(&xe);
    if (!bucket_missing) rc = 0;
  }
  if (rc) dsd_err_set(err, rc, "%s", dsd_err_msg(&e2));
  req_free(&r);
  return rc;
}

int dsd_s3_list_objects_v2(dsd_s3_client_t *c, const char *bucket,
                           const char *prefix, const char *token,
                           unsigned max_keys, dsd_s3_list_page_t *out,
                           dsd_err_t *err) {
  char mk[16];
  s3_req_t r = {.method = "GET", .bucket = bucket};
  memset(out, 0, sizeof *out);
  add_q(&r, "list-type", "2");
  if (prefix && *prefix) add_q(&r, "prefix", prefix);
  if (token && *token) add_q(&r, "continuation-token", token);
  if (max_keys) {
    snprintf(mk, sizeof mk, "%u", max_keys);
    add_q(&r, "max-keys", mk);
  }
  int rc = s3_perform(c, &r, err);
  if (!rc) rc = dsd_s3_xml_parse_list_v2(r.resp.data, r.resp.len, out, err);
  req_free(&r);
  return rc;
}

int dsd_s3_create_multipart_upload(dsd_s3_client_t *c, const char *bucket,
                                   const char *key, const char *content_type,
                                   char **upload_id, dsd_err_t *err) {
  s3_req_t r = {.method = "POST", .bucket = bucket, .key = key,
                .send_body = true, .body = "", .body_len = 0};
  *upload_id = NULL;
  add_q(&r, "uploads", NULL);
  add_h(&r, "content-type",
        content_type ? content_type : "application/octet-stream");
  int rc = s3_perform(c, &r, err);
  if (!rc) rc = dsd_s3_xml_parse_initiate(r.resp.data, r.resp.len, upload_id,
                                          err);
  req_free(&r);
  return rc;
}

int dsd_s3_upload_part(dsd_s3_client_t *c, const char *bucket,
                       const char *key, const char *upload_id, int part_number,
                       const void *data, size_t len, char *etag,
                       size_t etag_len, dsd_err_t *err) {
  char pn[16];
  s3_req_t r = {.method = "PUT", .bucket = bucket, .key = key, .body = data,
                .body_len = len, .send_body = true};
  if (part_number < 1 || part_number > 10000)
    return dsd_err_set(err, DSD_ETOOBIG,
                       "s3 part number %d is outside 1..10000", part_number);
  snprintf(pn, sizeof pn, "%d", part_number);
  add_q(&r, "partNumber", pn);
  add_q(&r, "uploadId", upload_id);
  int rc = s3_perform(c, &r, err);
  if (!rc && !r.etag[0])
    rc = dsd_err_set(err, DSD_EPROTO,
                     "s3 answer to UploadPart %d of %s/%s has no ETag",
                     part_number, bucket, key);
  if (!rc) snprintf(etag, etag_len, "%s", r.etag);
  req_free(&r);
  return rc;
}

static int xml_escape(dsd_buf_t *b, const char *s) {
  int rc = 0;
  for (; *s && !rc; s++) {
    switch (*s) {
      case '&': rc = dsd_buf_append_str(b, "&amp;"); break;
      case '<': rc = dsd_buf_append_str(b, "&lt;"); break;
      case '>': rc = dsd_buf_append_str(b, "&gt;"); break;
      case '"': rc = dsd_buf_append_str(b, "&quot;"); break;
      default: rc = dsd_buf_append_char(b, *s);
    }
  }
  return rc;
}

static bool transient_code(const char *code) {
  return code && (!strcmp(code, "InternalError") || !strcmp(code, "SlowDown") ||
                  !strcmp(code, "ServiceUnavailable"));
}

int dsd_s3_complete_multipart_upload(dsd_s3_client_t *c, const char *bucket,
                                     const char *key, const char *upload_id,
                                     const dsd_s3_part_t *parts, size_t n,
                                     dsd_err_t *err) {
  int rc = 0;
  dsd_buf_t body = DSD_BUF_INIT;
  rc = dsd_buf_append_str(&body, "<CompleteMultipartUpload>");
  for (size_t i = 0; i < n && !rc; i++) {
    rc = dsd_buf_printf(&body, "<Part><PartNumber>%d</PartNumber><ETag>",
                        parts[i].number);
    if (!rc) rc = xml_escape(&body, parts[i].etag);
    if (!rc) rc = dsd_buf_append_str(&body, "</ETag></Part>");
  }
  if (!rc) rc = dsd_buf_append_str(&body, "</CompleteMultipartUpload>");
  if (rc) {
    dsd_buf_free(&body);
    return dsd_err_set(err, DSD_ENOMEM, "s3 complete: out of memory");
  }
  for (int attempt = 1;; attempt++) {
    s3_req_t r = {.method = "POST", .bucket = bucket, .key = key,
                  .send_body = true, .body = body.data, .body_len = body.len};
    add_q(&r, "uploadId", upload_id);
    add_h(&r, "content-type", "application/xml");
    rc = s3_perform(c, &r, err);
    if (!rc) {
      /* S3 may answer 200 and report a failure in the body. */
      dsd_s3_xml_error_t xe = {0};
      if (dsd_s3_xml_parse_error(r.resp.data, r.resp.len, &xe)) {
        bool again = transient_code(xe.code) && attempt < c->max_attempts;
        if (again) {
          unsigned ms = dsd__s3_backoff_ms((unsigned)attempt - 1, c->base_ms,
                                           c->cap_ms, jitter());
          atomic_fetch_add_explicit(&dsd__s3_retries, 1, memory_order_relaxed);
          dsd_log_warn("s3 complete of %s/%s answered 200 with %s, retrying "
                       "in %u ms",
                       bucket, key, xe.code, ms);
          dsd_s3_xml_error_free(&xe);
          req_free(&r);
          sleep_ms(ms);
          continue;
        }
        rc = dsd_err_set(err, DSD_EIO,
                         "s3 failed to complete the multipart upload of "
                         "%s/%s: %s: %s",
                         bucket, key, xe.code ? xe.code : "unknown error",
                         xe.message ? xe.message : "");
        dsd_s3_xml_error_free(&xe);
      } else if (!r.resp.data ||
                 !strstr(r.resp.data, "CompleteMultipartUploadResult")) {
        rc = dsd_err_set(err, DSD_EPROTO,
                         "s3 answer to CompleteMultipartUpload of %s/%s is "
                         "not a CompleteMultipartUploadResult document",
                         bucket, key);
      }
    }
    req_free(&r);
    break;
  }
  dsd_buf_free(&body);
  return rc;
}

int dsd_s3_abort_multipart_upload(dsd_s3_client_t *c, const char *bucket,
                                  const char *key, const char *upload_id,
                                  dsd_err_t *err) {
  s3_req_t r = {.method = "DELETE", .bucket = bucket, .key = key};
  add_q(&r, "uploadId", upload_id);
  int rc = s3_perform(c, &r, err);
  req_free(&r);
  return rc;
}

int dsd_s3_list_multipart_uploads(dsd_s3_client_t *c, const char *bucket,
                                  const char *prefix, const char *key_marker,
                                  const char *upload_id_marker,
                                  dsd_s3_uploads_page_t *out, dsd_err_t *err) {
  s3_req_t r = {.method = "GET", .bucket = bucket};
  memset(out, 0, sizeof *out);
  add_q(&r, "uploads", NULL);
  if (prefix && *prefix) add_q(&r, "prefix", prefix);
  if (key_marker && *key_marker) add_q(&r, "key-marker", key_marker);
  if (upload_id_marker && *upload_id_marker)
    add_q(&r, "upload-id-marker", upload_id_marker);
  int rc = s3_perform(c, &r, err);
  if (!rc)
    rc = dsd_s3_xml_parse_list_uploads(r.resp.data, r.resp.len, out, err);
  req_free(&r);
  return rc;
}

int dsd_s3_presign_get(dsd_s3_client_t *c, const char *bucket,
                       const char *key, uint32_t expires_s, char **url,
                       dsd_err_t *err) {
  int rc = 0;
  char amz_date[17];
  dsd_buf_t base = DSD_BUF_INIT, host = DSD_BUF_INIT, path = DSD_BUF_INIT;
  s3_req_t r = {.method = "GET", .bucket = bucket, .key = key};
  *url = NULL;
  build_target(c, &r, &base, &host, &path, &rc);
  if (rc) {
    rc = dsd_err_set(err, DSD_ENOMEM, "s3 presign: out of memory");
    goto cleanup;
  }
  dsd_sigv4_amz_date((int64_t)time(NULL), amz_date);
  rc = dsd_sigv4_presign(&(dsd_sigv4_creds_t){c->access_key, c->secret_key,
                                              c->session_token, c->region,
                                              "s3"},
                         "GET", base.data, host.data, path.data, NULL, 0,
                         amz_date, expires_s, url, NULL, err);
cleanup:
  dsd_buf_free(&base);
  dsd_buf_free(&host);
  dsd_buf_free(&path);
  return rc;
}
