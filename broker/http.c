/*
 * http.c - the broker's HTTP server on libmicrohttpd.
 *
 * A fixed pool of MHD threads (http_threads) with a connection limit serves
 * requests; each request is read whole into memory (at most 1 MiB, else 413)
 * and then answered by osb.c, which never blocks on a job. Every OSB request
 * passes, in this order: basic auth (401 with WWW-Authenticate; compared in
 * constant time), X-Broker-API-Version (412), then the endpoint. One log
 * line per request: method, path (never the query), status, duration and
 * the platform's request identity.
 *
 * The download, dashboard, task, metrics and health endpoints (broker.h,
 * "access") are routed before OSB authentication: each checks its own
 * credentials.
 *
 * dsd_broker_serve() blocks until SIGTERM or SIGINT (which the caller has
 * blocked in every thread, so sigwait() here receives them), then stops
 * accepting requests; cmd_serve.c then shuts the job runner down.
 */
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <microhttpd.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/sha.h>

#include "broker/broker.h"
#include "core/buf.h"

#define DSD__BODY_MAX (1024 * 1024)

typedef struct {
  dsd_buf_t body;
  bool too_big;
  struct timespec start;
} dsd__conn_t;

static double dsd__ms_since(const struct timespec *t0) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)(t.tv_sec - t0->tv_sec) * 1e3 + (double)(t.tv_nsec - t0->tv_nsec) / 1e6;
}

/* --------------------------------------------------------------- auth */

int dsd_broker_basic_auth_parse(const char *header, char **user, char **pass) {
  int rc = DSD_EINVAL;
  unsigned char *raw = NULL;
  *user = *pass = NULL;
  if (header == NULL || strncasecmp(header, "Basic ", 6) != 0)
    return DSD_EINVAL;
  const char *b64 = header + 6;
  while (*b64 == ' ')
    b64++;
  size_t n = strlen(b64);
  if (n == 0 || n % 4 != 0 || n > 4096)
    return DSD_EINVAL;
  raw = malloc(n / 4 * 3 + 1);
  if (raw == NULL)
    return DSD_ENOMEM;
  int len = EVP_DecodeBlock(raw, (const unsigned char *)b64, (int)n);
  if (len < 0)
    goto cleanup;
  if (b64[n - 1] == '=')
    len--;
  if (n >= 2 && b64[n - 2] == '=')
    len--;
  raw[len] = '\0';
  if (memchr(raw, '\0', (size_t)len) != NULL)
    goto cleanup;
  char *colon = strchr((char *)raw, ':');
  if (colon == NULL)
    goto cleanup;
  *user = strndup((char *)raw, (size_t)(colon - (char *)raw));
  *pass = strdup(colon + 1);
  if (*user == NULL || *pass == NULL) {
    free(*user);
    free(*pass);
    *user = *pass = NULL;
    rc = DSD_ENOMEM;
    goto cleanup;
  }
  rc = 0;
cleanup:
  OPENSSL_cleanse(raw, n / 4 * 3 + 1);
  free(raw);
  return rc;
}

/* Hashing both sides first makes the comparison independent of the
 * lengths as well as of the contents. */
static bool dsd__secret_eq(const char *a, const char *b) {
  unsigned char ha[SHA256_DIGEST_LENGTH], hb[SHA256_DIGEST_LENGTH];
  SHA256((const unsigned char *)a, strlen(a), ha);
  SHA256((const unsigned char *)b, strlen(b), hb);
  return CRYPTO_memcmp(ha, hb, sizeof(ha)) == 0;
}

bool dsd_broker_auth_ok(const dsd_broker_config_t *cfg, const char *header) {
  char *user = NULL, *pass = NULL;
  if (dsd_broker_basic_auth_parse(header, &user, &pass) < 0)
    return false;
  /* evaluate both, always: no early exit that times the username */
  bool u = dsd__secret_eq(user, cfg->username);
  bool p = dsd__secret_eq(pass, cfg->password);
  OPENSSL_cleanse(pass, strlen(pass));
  free(user);
  free(pass);
  return u & p;
}

/* ----------------------------------------------------------- responses */

static enum MHD_Result dsd__send_json(struct MHD_Connection *c, int status, json_t *body,
                                      int retry_after, const char *request_identity,
                                      bool www_auth) {
  char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
  if (text == NULL)
    text = strdup("{}");
  struct MHD_Response *r =
      MHD_create_response_from_buffer(strlen(text), text, MHD_RESPMEM_MUST_FREE);
  if (r == NULL) {
    free(text);
    return MHD_NO;
  }
  MHD_add_response_header(r, "Content-Type", "application/json");
  if (request_identity != NULL)
    MHD_add_response_header(r, "X-Broker-API-Request-Identity", request_identity);
  if (retry_after > 0) {
    char v[16];
    snprintf(v, sizeof(v), "%d", retry_after);
    MHD_add_response_header(r, "Retry-After", v);
  }
  if (www_auth)
    MHD_add_response_header(r, "WWW-Authenticate", "Basic realm=\"data-service-dump\"");
  enum MHD_Result ret = MHD_queue_response(c, (unsigned int)status, r);
  MHD_destroy_response(r);
  return ret;
}

static enum MHD_Result dsd__send_error(struct MHD_Connection *c, int status, const char *code,
                                       const char *desc, const char *rid, bool www_auth) {
  json_t *body = json_pack("{s:s, s:s}", "error", code, "description", desc);
  enum MHD_Result r = dsd__send_json(c, status, body, 0, rid, www_auth);
  json_decref(body);
  return r;
}

/* A request identity is echoed back only if it looks like one (no header
 * injection, bounded length). */
static const char *dsd__request_identity(struct MHD_Connection *c) {
  const char *v = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "X-Broker-API-Request-Identity");
  if (v == NULL || strlen(v) > 128)
    return NULL;
  for (const char *p = v; *p; p++)
    if (*p < 0x21 || *p > 0x7e)
      return NULL;
  return v;
}

/* ------------------------------------------- replies for access endpoints */

int dsd__broker_send_text(struct MHD_Connection *c, int status, const char *content_type,
                          const char *text, size_t len) {
  struct MHD_Response *r = MHD_create_response_from_buffer(len, (void *)text, MHD_RESPMEM_MUST_COPY);
  if (r == NULL)
    return 0;
  MHD_add_response_header(r, "Content-Type", content_type);
  /* pages carry a token in their links: keep them out of caches and frames */
  MHD_add_response_header(r, "Cache-Control", "no-store");
  MHD_add_response_header(r, "X-Content-Type-Options", "nosniff");
  MHD_add_response_header(r, "X-Frame-Options", "DENY");
  MHD_add_response_header(r, "Referrer-Policy", "no-referrer");
  if (status == 401)
    MHD_add_response_header(r, "WWW-Authenticate", "Basic realm=\"data-service-dump\"");
  enum MHD_Result ret = MHD_queue_response(c, (unsigned int)status, r);
  MHD_destroy_response(r);
  return ret == MHD_YES ? status : 0;
}

int dsd__broker_send_json(struct MHD_Connection *c, int status, const json_t *body) {
  char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
  int rc = dsd__broker_send_text(c, status, "application/json", text ? text : "{}",
                                 text ? strlen(text) : 2);
  free(text);
  return rc;
}

int dsd__broker_send_error(struct MHD_Connection *c, int status, const char *code,
                           const char *desc) {
  char red[DSD_ERR_MSG_MAX];
  dsd_redact_into(desc, red, sizeof(red));
  json_t *body = json_pack("{s:s, s:s}", "error", code, "description", red);
  int rc = dsd__broker_send_json(c, status, body);
  json_decref(body);
  return rc;
}

/* -------------------------------------------------------------- access */

static enum MHD_Result dsd__access(void *cls, struct MHD_Connection *c, const char *url,
                                   const char *method, const char *version,
                                   const char *upload_data, size_t *upload_size,
                                   void **con_cls) {
  dsd_broker_t *b = cls;
  dsd__conn_t *conn = *con_cls;
  if (conn == NULL) {
    conn = calloc(1, sizeof(*conn));
    if (conn == NULL)
      return MHD_NO;
    clock_gettime(CLOCK_MONOTONIC, &conn->start);
    *con_cls = conn;
    const char *cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
    if (cl != NULL && strtoull(cl, NULL, 10) > DSD__BODY_MAX)
      conn->too_big = true;
    return MHD_YES;
  }
  if (*upload_size > 0) {
    if (!conn->too_big) {
      if (conn->body.len + *upload_size > DSD__BODY_MAX)
        conn->too_big = true;
      else if (dsd_buf_append(&conn->body, upload_data, *upload_size) < 0)
        return MHD_NO;
    }
    *upload_size = 0;
    return MHD_YES;
  }

  const char *rid = dsd__request_identity(c);
  int status = 0;
  enum MHD_Result ret = MHD_YES;
  dsd_broker_resp_t resp = {0};
  char *user = NULL;

  if (strncmp(url, "/v1/dumps/", 10) == 0) {
    status = dsd_broker_download_serve(b, c, url, method);
    ret = status > 0 ? MHD_YES : MHD_NO;
    goto log;
  }
  if (strcmp(url, "/health") == 0) {
    status = 200;
    ret = dsd__send_json(c, 200, NULL, 0, rid, false);
    goto log;
  }
  /* the access endpoints authenticate themselves (broker credentials, a
   * dashboard token or neither), see broker.h */
  if (strcmp(url, "/metrics") == 0 || strcmp(url, "/healthz") == 0) {
    status = dsd_broker_metrics_serve(b, c, url, method);
    ret = status > 0 ? MHD_YES : MHD_NO;
    goto log;
  }
  if (strncmp(url, "/dashboard/", 11) == 0 || strncmp(url, "/v1/instances/", 14) == 0 ||
      strncmp(url, "/v1/tasks/", 10) == 0) {
    if (conn->too_big)
      status = dsd__broker_send_error(c, 413, "PayloadTooLarge",
                                      "the request body is larger than 1 MiB");
    else if (url[1] == 'd')
      status = dsd_broker_dashboard_serve(b, c, url, method, conn->body.data, conn->body.len);
    else
      status = dsd_broker_tasks_serve(b, c, url, method, conn->body.data, conn->body.len);
    ret = status > 0 ? MHD_YES : MHD_NO;
    goto log;
  }
  const char *auth = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
  if (!dsd_broker_auth_ok(b->cfg, auth)) {
    status = 401;
    ret = dsd__send_error(c, 401, "Unauthorized", "missing or wrong broker credentials", rid, true);
    goto log;
  }
  if (conn->too_big) {
    status = 413;
    ret = dsd__send_error(c, 413, "PayloadTooLarge", "the request body is larger than 1 MiB", rid,
                          false);
    goto log;
  }
  dsd_err_t err = {0};
  dsd_broker_req_t req = {0};
  const char *ver = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "X-Broker-API-Version");
  if (dsd_broker_version_parse(ver, &req.minor, &err) < 0) {
    status = 412;
    ret = dsd__send_error(c, 412, "PreconditionFailed", dsd_err_msg(&err), rid, false);
    goto log;
  }
  const char *oi = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "X-Broker-API-Originating-Identity");
  if (oi != NULL && dsd_broker_identity_parse(oi, &user) < 0) {
    status = 400;
    ret = dsd__send_error(c, 400, "BadRequest", "malformed X-Broker-API-Originating-Identity header",
                          rid, false);
    goto log;
  }
  req.method = method;
  req.path = url;
  req.body = conn->body.data;
  req.body_len = conn->body.len;
  req.user = user;
  req.request_identity = rid;
  req.q_accepts_incomplete = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "accepts_incomplete");
  req.q_service_id = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "service_id");
  req.q_plan_id = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "plan_id");
  req.q_operation = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "operation");
  dsd_broker_handle(b, &req, &resp);
  status = resp.status;
  ret = dsd__send_json(c, resp.status, resp.body, resp.retry_after, rid, false);
  json_decref(resp.body);

log:;
  /* url is the path only: query strings never reach the log */
  char path[300];
  dsd_redact_into(url, path, sizeof(path));
  for (char *p = path; *p; p++)
    if ((unsigned char)*p < 0x20)
      *p = '?';
  dsd_broker_metrics_http(status);
  dsd_log_info("%s %s %d %.1fms request=%s user=%s", method, path, status,
               dsd__ms_since(&conn->start), rid ? rid : "-", user ? user : "-");
  free(user);
  return ret;
}

static void dsd__completed(void *cls, struct MHD_Connection *c, void **con_cls,
                           enum MHD_RequestTerminationCode toe) {
  dsd__conn_t *conn = *con_cls;
  if (conn == NULL)
    return;
  dsd_buf_free(&conn->body);
  free(conn);
  *con_cls = NULL;
}

static void dsd__mhd_log(void *cls, const char *fmt, va_list ap) {
  char line[1024];
  vsnprintf(line, sizeof(line), fmt, ap);
  size_t n = strlen(line);
  while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
    line[--n] = '\0';
  dsd_log_warn("http: %s", line);
}

/* MHD decodes %00 to a NUL that silently truncates the path ("a%00b" would
 * address id "a"); such a string stays undecoded so the id check refuses it. */
static size_t dsd__unescape(void *cls, struct MHD_Connection *c, char *s) {
  (void)cls;
  (void)c;
  if (strstr(s, "%00") != NULL)
    return strlen(s);
  return MHD_http_unescape(s);
}

int dsd_broker_serve(dsd_broker_t *b, dsd_err_t *err) {
  sigset_t set;
  int sig = 0;
  struct MHD_Daemon *d = MHD_start_daemon(
      MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG, (uint16_t)b->cfg->port, NULL, NULL,
      dsd__access, b, MHD_OPTION_EXTERNAL_LOGGER, dsd__mhd_log, b,
      MHD_OPTION_THREAD_POOL_SIZE, (unsigned int)b->cfg->http_threads,
      MHD_OPTION_CONNECTION_LIMIT, (unsigned int)256, MHD_OPTION_CONNECTION_TIMEOUT,
      (unsigned int)120, MHD_OPTION_NOTIFY_COMPLETED, dsd__completed, b,
      MHD_OPTION_UNESCAPE_CALLBACK, dsd__unescape, NULL, MHD_OPTION_END);
  if (d == NULL)
    return dsd_err_set(err, DSD_EIO, "cannot listen on port %d\nHINT: is another process using it",
                       b->cfg->port);
  dsd_log_info("broker listening on port %d, state in %s, owner %s", b->cfg->port,
               dsd_blob_describe(b->store), b->owner);
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  sigwait(&set, &sig);
  dsd_log_info("received %s: stopping", sig == SIGTERM ? "SIGTERM" : "SIGINT");
  /* MHD_stop_daemon waits for requests in flight to finish */
  MHD_stop_daemon(d);
  return 0;
}
