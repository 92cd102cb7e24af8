/*
 * cc.c - Cloud Controller v3 and UAA client (see cc.h for the contract).
 *
 * Layers, bottom up:
 *  - dsd__cc_perform: one HTTP exchange with libcurl (fresh easy handle per
 *    request, so threads share nothing but the token cache);
 *  - the token cache: root document -> UAA URL -> client-credentials token,
 *    under cc->lock;
 *  - dsd__cc_call: an authenticated CC request, with one token refresh on
 *    401 and retries with backoff for idempotent requests on connection
 *    errors and 5xx answers;
 *  - the CC operations of cc.h, each turning CC's status and error envelope
 *    ({"errors":[{"code","title","detail"}]}) into a DSD_E* code and a
 *    message that says which instance or key was concerned.
 *
 * Nothing here logs a response body: key details carry database passwords.
 */
#include "broker/cc.h"

#include <curl/curl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "core/buf.h"
#include "core/log.h"

#define DSD__CC_MAX_BODY (16u * 1024u * 1024u)
#define DSD__CC_MAX_PAGES 50

struct dsd_cc {
  char *api;    /* without trailing slash */
  char *client_id;
  char *secret; /* registered with the redactor */
  bool insecure;
  int poll_initial_ms, poll_max_ms, job_timeout_s, http_timeout_s;

  pthread_mutex_t lock; /* guards uaa, token, token_expiry */
  char *uaa;            /* discovered from the root document */
  char *token;          /* current access token (registered with the redactor) */
  time_t token_expiry;  /* monotonic seconds after which the token is not used */
};

typedef struct dsd__cc_resp {
  long status;
  dsd_buf_t body;
  char location[1024];
} dsd__cc_resp_t;

static pthread_once_t dsd__cc_curl_once = PTHREAD_ONCE_INIT;
static void dsd__cc_curl_init(void) { curl_global_init(CURL_GLOBAL_DEFAULT); }

static time_t dsd__cc_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec;
}

static void dsd__cc_sleep_ms(int ms) {
  struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
  while (nanosleep(&ts, &ts) != 0) {
  }
}

static void dsd__cc_resp_free(dsd__cc_resp_t *r) {
  if (r->body.data) memset(r->body.data, 0, r->body.len); /* may hold credentials */
  dsd_buf_free(&r->body);
  r->status = 0;
  r->location[0] = '\0';
}

static char *dsd__cc_strdup0(const char *s) { return s ? strdup(s) : NULL; }

/* ------------------------------------------------------------------------ */
/* configuration                                                            */
/* ------------------------------------------------------------------------ */

static int dsd__cc_parse_bool(const char *s, bool *out) {
  if (s == NULL || *s == '\0') {
    *out = false;
    return 0;
  }
  if (!strcasecmp(s, "true") || !strcmp(s, "1") || !strcasecmp(s, "yes")) {
    *out = true;
    return 0;
  }
  if (!strcasecmp(s, "false") || !strcmp(s, "0") || !strcasecmp(s, "no")) {
    *out = false;
    return 0;
  }
  return DSD_EINVAL;
}

int dsd_cc_config_from_env(dsd_cc_config_t *cfg, dsd_err_t *err) {
  memset(cfg, 0, sizeof(*cfg));
  cfg->api_url = getenv("DSD_CF_API");
  cfg->client_id = getenv("DSD_CF_CLIENT_ID");
  cfg->client_secret = getenv("DSD_CF_CLIENT_SECRET");
  if (cfg->api_url == NULL || *cfg->api_url == '\0')
    return dsd_err_set(err, DSD_ENOTFOUND,
                       "the cloud controller is not configured\n"
                       "HINT: set DSD_CF_API, DSD_CF_CLIENT_ID and DSD_CF_CLIENT_SECRET");
  if (cfg->client_id == NULL || *cfg->client_id == '\0' || cfg->client_secret == NULL ||
      *cfg->client_secret == '\0')
    return dsd_err_set(err, DSD_ECONFIG,
                       "DSD_CF_API is set but DSD_CF_CLIENT_ID or DSD_CF_CLIENT_SECRET is not\n"
                       "HINT: set both to the uaa client the broker acts as");
  if (dsd__cc_parse_bool(getenv("DSD_CF_SKIP_SSL_VALIDATION"), &cfg->skip_ssl_validation) < 0)
    return dsd_err_set(err, DSD_ECONFIG,
                       "DSD_CF_SKIP_SSL_VALIDATION must be true or false");
  return 0;
}

int dsd_cc_new(const dsd_cc_config_t *cfg, dsd_cc_t **out, dsd_err_t *err) {
  int rc = 0;
  dsd_cc_t *cc = NULL;
  *out = NULL;
  pthread_once(&dsd__cc_curl_once, dsd__cc_curl_init);
  if (cfg->api_url == NULL || cfg->client_id == NULL || cfg->client_secret == NULL) {
    rc = dsd_err_set(err, DSD_ECONFIG, "the cloud controller client needs an api url, a "
                                       "client id and a client secret");
    goto cleanup;
  }
  if (strncmp(cfg->api_url, "https://", 8) != 0 && strncmp(cfg->api_url, "http://", 7) != 0) {
    rc = dsd_err_set(err, DSD_ECONFIG, "DSD_CF_API must be an http(s) url, not \"%s\"",
                     cfg->api_url);
    goto cleanup;
  }
  cc = calloc(1, sizeof(*cc));
  if (cc == NULL) {
    rc = dsd_err_set(err, DSD_ENOMEM, "out of memory");
    goto cleanup;
  }
  pthread_mutex_init(&cc->lock, NULL);
  cc->api = strdup(cfg->api_url);
  cc->client_id = strdup(cfg->client_id);
  cc->secret = strdup(cfg->client_secret);
  if (cc->api == NULL || cc->client_id == NULL || cc->secret == NULL) {
    rc = dsd_err_set(err, DSD_ENOMEM, "out of memory");
    goto cleanup;
  }
  dsd_redact_register(cc->secret);
  size_t n = strlen(cc->api);
  while (n > 0 && cc->api[n - 1] == '/') cc->api[--n] = '\0';
  cc->insecure = cfg->skip_ssl_validation;
  cc->poll_initial_ms = cfg->poll_initial_ms > 0 ? cfg->poll_initial_ms : 500;
  cc->poll_max_ms = cfg->poll_max_ms > 0 ? cfg->poll_max_ms : 5000;
  cc->job_timeout_s = cfg->job_timeout_s > 0 ? cfg->job_timeout_s : 900;
  cc->http_timeout_s = cfg->http_timeout_s > 0 ? cfg->http_timeout_s : 60;
  if (cc->insecure)
    dsd_log_warn("cloud controller: tls certificate verification is off "
                 "(DSD_CF_SKIP_SSL_VALIDATION)");
  *out = cc;
  cc = NULL;
cleanup:
  dsd_cc_free(cc);
  return rc;
}

void dsd_cc_free(dsd_cc_t *cc) {
  if (cc == NULL) return;
  if (cc->secret) {
    dsd_redact_unregister(cc->secret);
    memset(cc->secret, 0, strlen(cc->secret));
  }
  if (cc->token) {
    dsd_redact_unregister(cc->token);
    memset(cc->token, 0, strlen(cc->token));
  }
  free(cc->api);
  free(cc->client_id);
  free(cc->secret);
  free(cc->uaa);
  free(cc->token);
  pthread_mutex_destroy(&cc->lock);
  free(cc);
}

/* ------------------------------------------------------------------------ */
/* one HTTP exchange                                                        */
/* ------------------------------------------------------------------------ */

static size_t dsd__cc_write_cb(char *p, size_t size, size_t n, void *data) {
  dsd_buf_t *b = data;
  size_t len = size * n;
  if (b->len + len > DSD__CC_MAX_BODY) return 0; /* makes curl fail: CURLE_WRITE_ERROR */
  return dsd_buf_append(b, p, len) == 0 ? len : 0;
}

static size_t dsd__cc_header_cb(char *p, size_t size, size_t n, void *data) {
  dsd__cc_resp_t *r = data;
  size_t len = size * n;
  if (len > 9 && strncasecmp(p, "location:", 9) == 0) {
    const char *v = p + 9;
    size_t vl = len - 9;
    while (vl > 0 && (*v == ' ' || *v == '\t')) v++, vl--;
    while (vl > 0 && (v[vl - 1] == '\r' || v[vl - 1] == '\n' || v[vl - 1] == ' ')) vl--;
    if (vl < sizeof(r->location)) {
      memcpy(r->location, v, vl);
      r->location[vl] = '\0';
    }
  }
  return len;
}

/* Performs one request. bearer (a token) or basic_user/basic_pass (the UAA
 * client) authenticate it; body is sent with content_type. Returns 0 with
 * resp->status set for any HTTP answer, DSD_ENET when no answer came. */
static int dsd__cc_perform(dsd_cc_t *cc, const char *method, const char *url, const char *bearer,
                           const char *basic_user, const char *basic_pass,
                           const char *content_type, const char *body, dsd__cc_resp_t *resp,
                           dsd_err_t *err) {
  int rc = 0;
  CURL *h = NULL;
  struct curl_slist *hdrs = NULL;
  char *auth = NULL;
  char errbuf[CURL_ERROR_SIZE] = "";
  dsd__cc_resp_free(resp);
  h = curl_easy_init();
  if (h == NULL) {
    rc = dsd_err_set(err, DSD_ENOMEM, "cannot create a curl handle");
    goto cleanup;
  }
  hdrs = curl_slist_append(hdrs, "Accept: application/json");
  if (content_type) {
    char ct[128];
    snprintf(ct, sizeof(ct), "Content-Type: %s", content_type);
    hdrs = curl_slist_append(hdrs, ct);
  }
  if (bearer) {
    if (asprintf(&auth, "Authorization: bearer %s", bearer) < 0) {
      auth = NULL;
      rc = dsd_err_set(err, DSD_ENOMEM, "out of memory");
      goto cleanup;
    }
    hdrs = curl_slist_append(hdrs, auth);
  }
  if (hdrs == NULL) {
    rc = dsd_err_set(err, DSD_ENOMEM, "out of memory");
    goto cleanup;
  }
  curl_easy_setopt(h, CURLOPT_URL, url);
  curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
  curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
  curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(h, CURLOPT_ERRORBUFFER, errbuf);
  curl_easy_setopt(h, CURLOPT_TIMEOUT, (long)cc->http_timeout_s);
  curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT, 15L);
  curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, dsd__cc_write_cb);
  curl_easy_setopt(h, CURLOPT_WRITEDATA, &resp->body);
  curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, dsd__cc_header_cb);
  curl_easy_setopt(h, CURLOPT_HEADERDATA, resp);
  curl_easy_setopt(h, CURLOPT_USERAGENT, "data-service-dump");
  curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
  if (cc->insecure) {
    curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 0L);
    curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 0L);
  }
  if (basic_user) {
    curl_easy_setopt(h, CURLOPT_HTTPAUTH, (long)CURLAUTH_BASIC);
    curl_easy_setopt(h, CURLOPT_USERNAME, basic_user);
    curl_easy_setopt(h, CURLOPT_PASSWORD, basic_pass);
  }
  if (body) {
    curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, (long)strlen(body));
  }
  CURLcode cr = curl_easy_perform(h);
  if (cr != CURLE_OK) {
    if (cr == CURLE_WRITE_ERROR && resp->body.len + 1 > DSD__CC_MAX_BODY - 65536)
      rc = dsd_err_set(err, DSD_ETOOBIG, "the answer of %s %s is too large", method, url);
    else
      rc = dsd_err_set(err, cr == CURLE_OPERATION_TIMEDOUT ? DSD_ETIMEDOUT : DSD_ENET,
                       "%s %s: %s", method, url, errbuf[0] ? errbuf : curl_easy_strerror(cr));
    goto cleanup;
  }
  curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &resp->status);
cleanup:
  if (auth) {
    memset(auth, 0, strlen(auth));
    free(auth);
  }
  curl_slist_free_all(hdrs);
  if (h) curl_easy_cleanup(h);
  return rc;
}

/* The first error of a CC error envelope, as "title: detail", or a short
 * excerpt of a body that is not one. Never called on success bodies. */
static void dsd__cc_error_text(const dsd__cc_resp_t *r, char *out, size_t outlen) {
  out[0] = '\0';
  json_t *j = r->body.data ? json_loadb(r->body.data, r->body.len, 0, NULL) : NULL;
  json_t *e0 = json_array_get(json_object_get(j, "errors"), 0);
  const char *title = json_string_value(json_object_get(e0, "title"));
  const char *detail = json_string_value(json_object_get(e0, "detail"));
  const char *desc = json_string_value(json_object_get(j, "error_description"));
  if (detail)
    snprintf(out, outlen, "%s%s%s", title ? title : "", title ? ": " : "", detail);
  else if (desc) /* UAA errors: {"error":..,"error_description":..} */
    snprintf(out, outlen, "%s", desc);
  else
    snprintf(out, outlen, "http status %ld", r->status);
  json_decref(j);
}

/* Just CC's "detail" text (for messages that quote CC to the user). */
static void dsd__cc_error_detail(const dsd__cc_resp_t *r, char *out, size_t outlen) {
  out[0] = '\0';
  json_t *j = r->body.data ? json_loadb(r->body.data, r->body.len, 0, NULL) : NULL;
  const char *detail =
      json_string_value(json_object_get(json_array_get(json_object_get(j, "errors"), 0), "detail"));
  snprintf(out, outlen, "%s", detail ? detail : "");
  json_decref(j);
}

/* Maps an unexpected CC status to a code and "what: CC's words". */
static int dsd__cc_status_err(const dsd__cc_resp_t *r, const char *what, dsd_err_t *err) {
  char text[512];
  dsd__cc_error_text(r, text, sizeof(text));
  int code = DSD_EPROTO;
  if (r->status == 401) code = DSD_EAUTH;
  else if (r->status == 403) code = DSD_EDENIED;
  else if (r->status == 404) code = DSD_ENOTFOUND;
  else if (r->status == 409) code = DSD_ECONFLICT;
  else if (r->status == 422) code = DSD_EBUSY;
  else if (r->status >= 500) code = DSD_EIO;
  if (r->status == 403)
    return dsd_err_set(err, code,
                       "%s: the cloud controller refused access (%s)\n"
                       "HINT: the broker's uaa client needs cloud_controller.admin, or "
                       "cloud_controller.read and cloud_controller.write with the space "
                       "developer role in this space",
                       what, text);
  return dsd_err_set(err, code, "%s: %s", what, text);
}

static json_t *dsd__cc_json(const dsd__cc_resp_t *r) {
  return r->body.data ? json_loadb(r->body.data, r->body.len, 0, NULL) : NULL;
}

/* ------------------------------------------------------------------------ */
/* UAA token                                                                */
/* ------------------------------------------------------------------------ */

/* Finds the UAA from the root document. Called with cc->lock held. */
static int dsd__cc_discover_uaa_locked(dsd_cc_t *cc, dsd_err_t *err) {
  int rc = 0;
  dsd__cc_resp_t r = {0};
  json_t *j = NULL;
  char url[1100];
  if (cc->uaa) return 0;
  snprintf(url, sizeof(url), "%s/", cc->api);
  rc = dsd__cc_perform(cc, "GET", url, NULL, NULL, NULL, NULL, NULL, &r, err);
  if (rc < 0) {
    dsd_err_prefix(err, "cannot read the cloud controller's root document");
    goto cleanup;
  }
  if (r.status != 200) {
    rc = dsd__cc_status_err(&r, "reading the cloud controller's root document", err);
    goto cleanup;
  }
  j = dsd__cc_json(&r);
  json_t *links = json_object_get(j, "links");
  const char *uaa = json_string_value(json_object_get(json_object_get(links, "uaa"), "href"));
  if (uaa == NULL)
    uaa = json_string_value(json_object_get(json_object_get(links, "login"), "href"));
  if (uaa == NULL) {
    rc = dsd_err_set(err, DSD_EPROTO,
                     "the cloud controller at %s names no uaa in its root document\n"
                     "HINT: DSD_CF_API must be the api url, e.g. https://api.sys.example.com",
                     cc->api);
    goto cleanup;
  }
  cc->uaa = strdup(uaa);
  if (cc->uaa == NULL) {
    rc = dsd_err_set(err, DSD_ENOMEM, "out of memory");
    goto cleanup;
  }
  size_t n = strlen(cc->uaa);
  while (n > 0 && cc->uaa[n - 1] == '/') cc->uaa[--n] = '\0';
cleanup:
  json_decref(j);
  dsd__cc_resp_free(&r);
  return rc;
}

/* Fetches a new token into cc->token. Called with cc->lock held, so that
 * concurrent jobs wait for one fetch instead of each asking the UAA. */
static int dsd__cc_fetch_token_locked(dsd_cc_t *cc, dsd_err_t *err) {
  int rc = 0;
  dsd__cc_resp_t r = {0};
  json_t *j = NULL;
  char url[1200];
  rc = dsd__cc_discover_uaa_locked(cc, err);
  if (rc < 0) goto cleanup;
  snprintf(url, sizeof(url), "%s/oauth/token", cc->uaa);
  rc = dsd__cc_perform(cc, "POST", url, NULL, cc->client_id, cc->secret,
                       "application/x-www-form-urlencoded",
                       "grant_type=client_credentials&response_type=token", &r, err);
  if (rc < 0) {
    dsd_err_prefix(err, "cannot reach the uaa");
    goto cleanup;
  }
  if (r.status == 401 || r.status == 400 || r.status == 403) {
    char text[256];
    dsd__cc_error_text(&r, text, sizeof(text));
    rc = dsd_err_set(err, DSD_EAUTH,
                     "the uaa at %s rejected client \"%s\" (%s)\n"
                     "HINT: check DSD_CF_CLIENT_ID and DSD_CF_CLIENT_SECRET, and that the "
                     "client has the client_credentials grant type",
                     cc->uaa, cc->client_id, text);
    goto cleanup;
  }
  if (r.status != 200) {
    rc = dsd__cc_status_err(&r, "fetching a uaa token", err);
    goto cleanup;
  }
  j = dsd__cc_json(&r);
  const char *tok = json_string_value(json_object_get(j, "access_token"));
  json_int_t expires_in = json_integer_value(json_object_get(j, "expires_in"));
  if (tok == NULL || *tok == '\0') {
    rc = dsd_err_set(err, DSD_EPROTO, "the uaa's token answer holds no access_token");
    goto cleanup;
  }
  char *copy = strdup(tok);
  if (copy == NULL) {
    rc = dsd_err_set(err, DSD_ENOMEM, "out of memory");
    goto cleanup;
  }
  if (cc->token) {
    dsd_redact_unregister(cc->token);
    memset(cc->token, 0, strlen(cc->token));
    free(cc->token);
  }
  cc->token = copy;
  dsd_redact_register(cc->token);
  /* Stop using a token a little before the UAA says it expires, so a request
   * sent just before expiry does not arrive just after it. */
  if (expires_in <= 0) expires_in = 60;
  json_int_t margin = expires_in / 10 < 30 ? expires_in / 10 : 30;
  cc->token_expiry = dsd__cc_now() + (time_t)(expires_in - margin);
  dsd_log_debug("cloud controller: new uaa token for client %s, valid %llds", cc->client_id,
                (long long)expires_in);
cleanup:
  json_decref(j);
  dsd__cc_resp_free(&r);
  return rc;
}

/* Returns a copy of a valid token (caller owns; free()). When stale is not
 * NULL the caller saw it rejected: a cached token equal to it is dropped and
 * a new one fetched, while a different cached token (another thread already
 * refreshed) is used as is. */
static int dsd__cc_token(dsd_cc_t *cc, const char *stale, char **out, dsd_err_t *err) {
  int rc = 0;
  *out = NULL;
  pthread_mutex_lock(&cc->lock);
  if (cc->token && stale && strcmp(cc->token, stale) == 0) cc->token_expiry = 0;
  if (cc->token == NULL || dsd__cc_now() >= cc->token_expiry) {
    rc = dsd__cc_fetch_token_locked(cc, err);
    if (rc < 0) goto cleanup;
  }
  *out = strdup(cc->token);
  if (*out == NULL) rc = dsd_err_set(err, DSD_ENOMEM, "out of memory");
cleanup:
  pthread_mutex_unlock(&cc->lock);
  return rc;
}

/* ------------------------------------------------------------------------ */
/* authenticated CC calls                                                   */
/* ------------------------------------------------------------------------ */

/* Whether url has the scheme, host and port of base (case-insensitively). */
static int dsd__cc_same_origin(const char *base, const char *url) {
  const char *b = strstr(base, "://"), *u = strstr(url, "://");
  if (b == NULL || u == NULL) return 0;
  size_t bl = (size_t)(b - base) + 3 + strcspn(b + 3, "/?#");
  size_t ul = (size_t)(u - url) + 3 + strcspn(u + 3, "/?#");
  return bl == ul && strncasecmp(base, url, bl) == 0;
}

/* An authenticated CC request. path is "/v3/..." or a full URL that CC gave
 * (a Location or pagination link). A 401 fetches one new token and retries
 * once. With retries > 0 (idempotent requests), connection errors and 5xx
 * answers are retried that many times with doubling waits. Returns 0 with
 * resp filled for any other answer. */
static int dsd__cc_call(dsd_cc_t *cc, const char *method, const char *path, const json_t *body,
                        int retries, dsd__cc_resp_t *resp, dsd_err_t *err) {
  int rc = 0;
  char *url = NULL, *tok = NULL, *payload = NULL;
  if (strncmp(path, "http://", 7) == 0 || strncmp(path, "https://", 8) == 0) {
    /* Links come from CC's answers; the token goes only to CC itself. */
    if (!dsd__cc_same_origin(cc->api, path)) {
      rc = dsd_err_set(err, DSD_EPROTO,
                       "the cloud controller linked to %s, outside %s: not following it", path,
                       cc->api);
      goto cleanup;
    }
    url = strdup(path);
  } else if (asprintf(&url, "%s%s", cc->api, path) < 0)
    url = NULL;
  if (url == NULL) {
    rc = dsd_err_set(err, DSD_ENOMEM, "out of memory");
    goto cleanup;
  }
  if (body) {
    payload = json_dumps(body, JSON_COMPACT);
    if (payload == NULL) {
      rc = dsd_err_set(err, DSD_ENOMEM, "out of memory");
      goto cleanup;
    }
  }
  rc = dsd__cc_token(cc, NULL, &tok, err);
  if (rc < 0) goto cleanup;
  int refreshed = 0;
  int wait_ms = 200;
  for (int attempt = 0;; attempt++) {
    dsd_err_t perr = {0};
    rc = dsd__cc_perform(cc, method, url, tok, NULL, NULL, body ? "application/json" : NULL,
                         payload, resp, &perr);
    int transient = rc == DSD_ENET || rc == DSD_ETIMEDOUT || (rc == 0 && resp->status >= 500);
    if (transient && attempt < retries) {
      dsd_log_warn("cloud controller: %s %s failed (%s), retrying in %d ms", method, url,
                   rc < 0 ? dsd_err_msg(&perr) : "server error", wait_ms);
      dsd__cc_sleep_ms(wait_ms);
      wait_ms *= 2;
      continue;
    }
    if (rc < 0) {
      rc = dsd_err_set(err, perr.code, "%s", perr.msg);
      goto cleanup;
    }
    if (resp->status == 401 && !refreshed) {
      /* The token expired early or was revoked: one refresh, one retry. */
      refreshed = 1;
      char *fresh = NULL;
      rc = dsd__cc_token(cc, tok, &fresh, err);
      if (rc < 0) goto cleanup;
      memset(tok, 0, strlen(tok));
      free(tok);
      tok = fresh;
      continue;
    }
    if (resp->status == 401) {
      char text[256];
      dsd__cc_error_text(resp, text, sizeof(text));
      rc = dsd_err_set(err, DSD_EAUTH,
                       "the cloud controller rejected a fresh uaa token for %s %s (%s)\n"
                       "HINT: check that DSD_CF_API and the uaa client belong to the same "
                       "foundation",
                       method, url, text);
      goto cleanup;
    }
    break;
  }
cleanup:
  if (tok) {
    memset(tok, 0, strlen(tok));
    free(tok);
  }
  free(url);
  free(payload);
  return rc;
}

/* Appends "name=<encoded value>" (with & before it unless first). */
static int dsd__cc_q(dsd_buf_t *b, const char *name, const char *value) {
  char *e = dsd_cc_urlencode(value);
  if (e == NULL) return DSD_ENOMEM;
  int rc = dsd_buf_printf(b, "%s%s=%s", strchr(b->data ? b->data : "", '?') ? "&" : "?", name, e);
  free(e);
  return rc;
}

/* GETs a paginated list and all its next pages. *resources is a new array
 * of every page's resources (caller owns); *included, when not NULL, merges
 * the "included" members (caller owns). */
static int dsd__cc_list(dsd_cc_t *cc, const char *path, const char *what, json_t **resources,
                        json_t **included, json_int_t *total, dsd_err_t *err) {
  int rc = 0;
  dsd__cc_resp_t r = {0};
  json_t *page = NULL;
  char *next = strdup(path);
  json_t *all = json_array();
  json_t *inc = json_object();
  if (next == NULL || all == NULL || inc == NULL) {
    rc = dsd_err_set(err, DSD_ENOMEM, "out of memory");
    goto cleanup;
  }
  if (total) *total = 0;
  for (int pages = 0; next != NULL; pages++) {
    if (pages >= DSD__CC_MAX_PAGES) {
      rc = dsd_err_set(err, DSD_ETOOBIG, "%s: more than %d pages of results", what,
                       DSD__CC_MAX_PAGES);
      goto cleanup;
    }
    rc = dsd__cc_call(cc, "GET", next, NULL, 3, &r, err);
    if (rc < 0) goto cleanup;
    if (r.status != 200) {
      rc = dsd__cc_status_err(&r, what, err);
      goto cleanup;
    }
    json_decref(page);
    page = dsd__cc_json(&r);
    json_t *res = json_object_get(page, "resources");
    if (!json_is_array(res)) {
      rc = dsd_err_set(err, DSD_EPROTO, "%s: the answer is not a paginated list", what);
      goto cleanup;
    }
    json_array_extend(all, res);
    json_t *pag = json_object_get(page, "pagination");
    if (total && pages == 0) *total = json_integer_value(json_object_get(pag, "total_results"));
    const char *key;
    json_t *arr;
    json_object_foreach(json_object_get(page, "included"), key, arr) {
      json_t *have = json_object_get(inc, key);
      if (have == NULL) json_object_set(inc, key, arr);
      else json_array_extend(have, arr);
    }
    free(next);
    next = dsd__cc_strdup0(
        json_string_value(json_object_get(json_object_get(pag, "next"), "href")));
  }
  *resources = all;
  all = NULL;
  if (included) {
    *included = inc;
    inc = NULL;
  }
cleanup:
  free(next);
  json_decref(page);
  json_decref(all);
  json_decref(inc);
  dsd__cc_resp_free(&r);
  return rc;
}

/* Polls a CC job (full URL from a Location header) until COMPLETE or FAILED,
 * waiting poll_initial_ms, doubling up to poll_max_ms. */
static int dsd__cc_wait_job(dsd_cc_t *cc, const char *job_url, const char *what,
                            const atomic_int *cancel, dsd_err_t *err) {
  int rc = 0;
  dsd__cc_resp_t r = {0};
  json_t *j = NULL;
  int wait_ms = cc->poll_initial_ms;
  time_t deadline = dsd__cc_now() + cc->job_timeout_s;
  for (;;) {
    rc = dsd__cc_call(cc, "GET", job_url, NULL, 3, &r, err);
    if (rc < 0) goto cleanup;
    if (r.status != 200) {
      rc = dsd__cc_status_err(&r, what, err);
      goto cleanup;
    }
    json_decref(j);
    j = dsd__cc_json(&r);
    const char *state = json_string_value(json_object_get(j, "state"));
    if (state == NULL) {
      rc = dsd_err_set(err, DSD_EPROTO, "%s: the job answer has no state", what);
      goto cleanup;
    }
    if (strcmp(state, "COMPLETE") == 0) break;
    if (strcmp(state, "FAILED") == 0) {
      dsd_buf_t msg = DSD_BUF_INIT;
      size_t i;
      json_t *e;
      json_array_foreach(json_object_get(j, "errors"), i, e) {
        const char *d = json_string_value(json_object_get(e, "detail"));
        if (d) dsd_buf_printf(&msg, "%s%s", msg.len ? "; " : "", d);
      }
      rc = dsd_err_set(err, DSD_EIO, "%s failed: %s", what,
                       msg.len ? msg.data : "the cloud controller gave no reason");
      dsd_buf_free(&msg);
      goto cleanup;
    }
    /* PROCESSING or POLLING: CC (or the other broker) is still at work */
    if (cancel && atomic_load(cancel)) {
      rc = dsd_err_set(err, DSD_ECANCELED, "%s: canceled while waiting for the cloud controller",
                       what);
      goto cleanup;
    }
    if (dsd__cc_now() >= deadline) {
      rc = dsd_err_set(err, DSD_ETIMEDOUT, "%s: the cloud controller job %s is still %s after %ds",
                       what, job_url, state, cc->job_timeout_s);
      goto cleanup;
    }
    /* sleep in slices so a cancel is noticed within 100 ms */
    for (int slept = 0; slept < wait_ms; slept += 100) {
      if (cancel && atomic_load(cancel)) break;
      dsd__cc_sleep_ms(wait_ms - slept < 100 ? wait_ms - slept : 100);
    }
    wait_ms = wait_ms * 2 > cc->poll_max_ms ? cc->poll_max_ms : wait_ms * 2;
  }
cleanup:
  json_decref(j);
  dsd__cc_resp_free(&r);
  return rc;
}

/* ------------------------------------------------------------------------ */
/* service instances and roles                                              */
/* ------------------------------------------------------------------------ */

static void dsd__cc_copy(char *dst, size_t n, const char *src) {
  snprintf(dst, n, "%s", src ? src : "");
}

/* Finds {"guid": guid} in an included array. */
static json_t *dsd__cc_by_guid(json_t *arr, const char *guid) {
  size_t i;
  json_t *v;
  if (guid == NULL) return NULL;
  json_array_foreach(arr, i, v) {
    const char *g = json_string_value(json_object_get(v, "guid"));
    if (g && strcmp(g, guid) == 0) return v;
  }
  return NULL;
}

static const char *dsd__cc_rel_guid(json_t *o, const char *rel) {
  return json_string_value(json_object_get(
      json_object_get(json_object_get(json_object_get(o, "relationships"), rel), "data"), "guid"));
}

/* Reads a resource's name by guid (fallback when CC ignored `fields`). */
static int dsd__cc_get_name(dsd_cc_t *cc, const char *path, char *out, size_t outlen,
                            char *rel_guid, size_t rel_len, const char *rel, dsd_err_t *err) {
  dsd__cc_resp_t r = {0};
  int rc = dsd__cc_call(cc, "GET", path, NULL, 3, &r, err);
  if (rc == 0 && r.status != 200) rc = dsd__cc_status_err(&r, "reading the service plan", err);
  if (rc == 0) {
    json_t *j = dsd__cc_json(&r);
    dsd__cc_copy(out, outlen, json_string_value(json_object_get(j, "name")));
    if (rel_guid) dsd__cc_copy(rel_guid, rel_len, dsd__cc_rel_guid(j, rel));
    json_decref(j);
  }
  dsd__cc_resp_free(&r);
  return rc;
}

int dsd_cc_find_instance(dsd_cc_t *cc, const char *name, const char *space_guid,
                         dsd_cc_instance_t *out, dsd_err_t *err) {
  int rc = 0;
  dsd_buf_t path = DSD_BUF_INIT;
  json_t *res = NULL, *inc = NULL;
  char what[400];
  memset(out, 0, sizeof(*out));
  snprintf(what, sizeof(what), "looking up service instance \"%s\"", name);
  if ((rc = dsd_buf_append_str(&path, "/v3/service_instances")) < 0 ||
      (rc = dsd__cc_q(&path, "names", name)) < 0 ||
      (rc = dsd__cc_q(&path, "space_guids", space_guid)) < 0 ||
      (rc = dsd__cc_q(&path, "fields[service_plan]", "guid,name,relationships.service_offering")) <
          0 ||
      (rc = dsd__cc_q(&path, "fields[service_plan.service_offering]", "guid,name")) < 0) {
    rc = dsd_err_set(err, DSD_ENOMEM, "out of memory");
    goto cleanup;
  }
  rc = dsd__cc_list(cc, path.data, what, &res, &inc, NULL, err);
  if (rc < 0) goto cleanup;
  json_t *si = NULL;
  size_t i;
  json_t *v;
  json_array_foreach(res, i, v) {
    const char *n = json_string_value(json_object_get(v, "name"));
    if (n && strcmp(n, name) == 0) {
      si = v;
      break;
    }
  }
  if (si == NULL) {
    rc = dsd_err_set(err, DSD_ENOTFOUND,
                     "no service instance named \"%s\" in this space\n"
                     "HINT: cf services lists the instances of the space; a shared instance "
                     "must be shared into this space",
                     name);
    goto cleanup;
  }
  dsd__cc_copy(out->guid, sizeof(out->guid), json_string_value(json_object_get(si, "guid")));
  dsd__cc_copy(out->name, sizeof(out->name), name);
  dsd__cc_copy(out->type, sizeof(out->type), json_string_value(json_object_get(si, "type")));
  dsd__cc_copy(out->space_guid, sizeof(out->space_guid), dsd__cc_rel_guid(si, "space"));
  json_t *lo = json_object_get(si, "last_operation");
  dsd__cc_copy(out->last_op_type, sizeof(out->last_op_type),
               json_string_value(json_object_get(lo, "type")));
  dsd__cc_copy(out->last_op_state, sizeof(out->last_op_state),
               json_string_value(json_object_get(lo, "state")));
  const char *plan_guid = dsd__cc_rel_guid(si, "service_plan");
  if (plan_guid != NULL) {
    json_t *plan = dsd__cc_by_guid(json_object_get(inc, "service_plans"), plan_guid);
    char offering_guid[64] = "";
    if (plan != NULL) {
      dsd__cc_copy(out->plan, sizeof(out->plan), json_string_value(json_object_get(plan, "name")));
      dsd__cc_copy(offering_guid, sizeof(offering_guid), dsd__cc_rel_guid(plan, "service_offering"));
    } else {
      /* an older CC without `fields` support: two more reads */
      char p[200];
      snprintf(p, sizeof(p), "/v3/service_plans/%s", plan_guid);
      rc = dsd__cc_get_name(cc, p, out->plan, sizeof(out->plan), offering_guid,
                            sizeof(offering_guid), "service_offering", err);
      if (rc < 0) goto cleanup;
    }
    json_t *off = dsd__cc_by_guid(json_object_get(inc, "service_offerings"), offering_guid);
    if (off != NULL) {
      dsd__cc_copy(out->offering, sizeof(out->offering),
                   json_string_value(json_object_get(off, "name")));
    } else if (offering_guid[0]) {
      char p[200];
      snprintf(p, sizeof(p), "/v3/service_offerings/%s", offering_guid);
      rc = dsd__cc_get_name(cc, p, out->offering, sizeof(out->offering), NULL, 0, NULL, err);
      if (rc < 0) goto cleanup;
    }
  }
  if (strcmp(out->last_op_state, "in progress") == 0 || strcmp(out->last_op_state, "initial") == 0) {
    rc = dsd_err_set(err, DSD_EBUSY,
                     "service instance \"%s\" has an operation in progress (%s)\n"
                     "HINT: wait until cf service %s shows it succeeded, then try again",
                     name, out->last_op_type[0] ? out->last_op_type : "unknown", name);
    goto cleanup;
  }
cleanup:
  dsd_buf_free(&path);
  json_decref(res);
  json_decref(inc);
  return rc;
}

int dsd_cc_user_is_space_developer(dsd_cc_t *cc, const char *user_guid, const char *space_guid,
                                   bool *yes, dsd_err_t *err) {
  int rc = 0;
  dsd_buf_t path = DSD_BUF_INIT;
  json_t *res = NULL;
  dsd__cc_resp_t r = {0};
  *yes = false;
  if ((rc = dsd_buf_append_str(&path, "/v3/roles")) < 0 ||
      (rc = dsd__cc_q(&path, "types", "space_developer")) < 0 ||
      (rc = dsd__cc_q(&path, "space_guids", space_guid)) < 0 ||
      (rc = dsd__cc_q(&path, "user_guids", user_guid)) < 0) {
    rc = dsd_err_set(err, DSD_ENOMEM, "out of memory");
    goto cleanup;
  }
  /* one page answers the question: total_results counts them all */
  rc = dsd__cc_call(cc, "GET", path.data, NULL, 3, &r, err);
  if (rc == 0 && r.status != 200) rc = dsd__cc_status_err(&r, "checking the user's roles", err);
  if (rc == 0) {
    res = dsd__cc_json(&r);
    json_t *t = json_object_get(json_object_get(res, "pagination"), "total_results");
    if (!json_is_integer(t)) {
      rc = dsd_err_set(err, DSD_EPROTO, "checking the user's roles: the answer has no "
                                        "pagination.total_results");
    } else {
      *yes = json_integer_value(t) > 0;
    }
  }
cleanup:
  dsd__cc_resp_free(&r);
  dsd_buf_free(&path);
  json_decref(res);
  return rc;
}

/* ------------------------------------------------------------------------ */
/* service keys                                                             */
/* ------------------------------------------------------------------------ */

int dsd_cc_find_key(dsd_cc_t *cc, const char *instance_guid, const char *key_name, char **guid,
                    dsd_err_t *err) {
  int rc = 0;
  dsd_buf_t path = DSD_BUF_INIT;
  json_t *res = NULL;
  char what[300];
  *guid = NULL;
  snprintf(what, sizeof(what), "looking up service key \"%s\"", key_name);
  if ((rc = dsd_buf_append_str(&path, "/v3/service_credential_bindings")) < 0 ||
      (rc = dsd__cc_q(&path, "type", "key")) < 0 ||
      (rc = dsd__cc_q(&path, "names", key_name)) < 0 ||
      (rc = dsd__cc_q(&path, "service_instance_guids", instance_guid)) < 0) {
    rc = dsd_err_set(err, DSD_ENOMEM, "out of memory");
    goto cleanup;
  }
  rc = dsd__cc_list(cc, path.data, what, &res, NULL, NULL, err);
  if (rc < 0) goto cleanup;
  size_t i;
  json_t *v;
  json_array_foreach(res, i, v) {
    const char *n = json_string_value(json_object_get(v, "name"));
    const char *g = json_string_value(json_object_get(v, "guid"));
    if (n && g && strcmp(n, key_name) == 0) {
      *guid = strdup(g);
      if (*guid == NULL) rc = dsd_err_set(err, DSD_ENOMEM, "out of memory");
      goto cleanup;
    }
  }
  rc = dsd_err_set(err, DSD_ENOTFOUND, "no service key named \"%s\" on service instance %s",
                   key_name, instance_guid);
cleanup:
  dsd_buf_free(&path);
  json_decref(res);
  return rc;
}

int dsd_cc_create_key(dsd_cc_t *cc, const char *instance_guid, const char *key_name,
                      const atomic_int *cancel, char **guid, dsd_err_t *err) {
  int rc = 0;
  dsd__cc_resp_t r = {0};
  json_t *body = NULL, *j = NULL;
  char what[300];
  *guid = NULL;
  snprintf(what, sizeof(what), "creating service key \"%s\"", key_name);
  body = json_pack("{s:s, s:s, s:{s:{s:{s:s}}}}", "type", "key", "name", key_name,
                   "relationships", "service_instance", "data", "guid", instance_guid);
  if (body == NULL) {
    rc = dsd_err_set(err, DSD_ENOMEM, "out of memory");
    goto cleanup;
  }
  /* not retried: a lost answer to a POST that CC did act on would make the
   * retry fail on the now-taken name; recovery finds the key by name */
  rc = dsd__cc_call(cc, "POST", "/v3/service_credential_bindings", body, 0, &r, err);
  if (rc < 0) goto cleanup;
  if (r.status == 201) {
    j = dsd__cc_json(&r);
    const char *g = json_string_value(json_object_get(j, "guid"));
    if (g == NULL) {
      rc = dsd_err_set(err, DSD_EPROTO, "%s: the answer has no guid", what);
      goto cleanup;
    }
    *guid = strdup(g);
    if (*guid == NULL) rc = dsd_err_set(err, DSD_ENOMEM, "out of memory");
    goto cleanup;
  }
  if (r.status == 422) {
    char detail[512];
    dsd__cc_error_detail(&r, detail, sizeof(detail));
    int taken = strstr(detail, "unique") != NULL || strstr(detail, "taken") != NULL ||
                strstr(detail, "already") != NULL;
    rc = dsd_err_set(err, taken ? DSD_EEXIST : DSD_EBUSY,
                     "the cloud controller refused to create service key \"%s\": %s%s", key_name,
                     detail[0] ? detail : "unprocessable entity",
                     taken ? "" : "\nHINT: wait until the service instance's operation "
                                  "finishes, then try again");
    goto cleanup;
  }
  if (r.status != 202) {
    rc = dsd__cc_status_err(&r, what, err);
    goto cleanup;
  }
  if (r.location[0] == '\0') {
    rc = dsd_err_set(err, DSD_EPROTO, "%s: 202 without a Location header", what);
    goto cleanup;
  }
  char job[sizeof(r.location)];
  memcpy(job, r.location, sizeof(job));
  rc = dsd__cc_wait_job(cc, job, what, cancel, err);
  if (rc < 0) goto cleanup;
  rc = dsd_cc_find_key(cc, instance_guid, key_name, guid, err);
  if (rc < 0) dsd_err_prefix(err, "%s: the job completed but the key is missing", what);
cleanup:
  json_decref(body);
  json_decref(j);
  dsd__cc_resp_free(&r);
  return rc;
}

int dsd_cc_key_details(dsd_cc_t *cc, const char *key_guid, json_t **credentials,
                       dsd_err_t *err) {
  int rc = 0;
  dsd__cc_resp_t r = {0};
  json_t *j = NULL;
  char path[200];
  *credentials = NULL;
  snprintf(path, sizeof(path), "/v3/service_credential_bindings/%s/details", key_guid);
  rc = dsd__cc_call(cc, "GET", path, NULL, 3, &r, err);
  if (rc < 0) goto cleanup;
  if (r.status != 200) {
    rc = dsd__cc_status_err(&r, "reading the service key's credentials", err);
    goto cleanup;
  }
  j = dsd__cc_json(&r);
  json_t *c = json_object_get(j, "credentials");
  if (!json_is_object(c)) {
    rc = dsd_err_set(err, DSD_EPROTO, "the service key %s has no credentials object", key_guid);
    goto cleanup;
  }
  *credentials = json_incref(c);
cleanup:
  json_decref(j);
  dsd__cc_resp_free(&r);
  return rc;
}

int dsd_cc_delete_key(dsd_cc_t *cc, const char *key_guid, dsd_err_t *err) {
  int rc = 0;
  dsd__cc_resp_t r = {0};
  char path[200], what[200];
  snprintf(path, sizeof(path), "/v3/service_credential_bindings/%s", key_guid);
  snprintf(what, sizeof(what), "deleting service key %s", key_guid);
  /* A failed deletion leaves a live credential on the user's database, so
   * the whole delete (request and job) is retried, not just the request. */
  int wait_ms = 500;
  for (int attempt = 0;; attempt++) {
    dsd_err_t aerr = {0};
    rc = dsd__cc_call(cc, "DELETE", path, NULL, 3, &r, &aerr);
    if (rc == 0) {
      if (r.status == 204 || r.status == 404) break;
      if (r.status == 202 && r.location[0]) {
        char job[sizeof(r.location)];
        memcpy(job, r.location, sizeof(job));
        rc = dsd__cc_wait_job(cc, job, what, NULL, &aerr);
        if (rc == 0) break;
      } else if (r.status == 202) {
        rc = dsd_err_set(&aerr, DSD_EPROTO, "%s: 202 without a Location header", what);
      } else {
        rc = dsd__cc_status_err(&r, what, &aerr);
      }
    }
    int retryable = rc == DSD_ENET || rc == DSD_ETIMEDOUT || rc == DSD_EIO || rc == DSD_EBUSY;
    if (!retryable || attempt >= 3) {
      rc = dsd_err_set(err, aerr.code, "%s", aerr.msg);
      goto cleanup;
    }
    dsd_log_warn("cloud controller: %s, retrying in %d ms", aerr.msg, wait_ms);
    dsd__cc_sleep_ms(wait_ms);
    wait_ms *= 2;
  }
cleanup:
  dsd__cc_resp_free(&r);
  return rc;
}

/* ------------------------------------------------------------------------ */
/* the sequence a job runs                                                  */
/* ------------------------------------------------------------------------ */

int dsd_cc_acquire_uri(dsd_cc_t *cc, const char *name, const char *space_guid,
                       const char *user_guid, const char *dialect, const char *key_name,
                       const atomic_int *cancel, char **key_guid, char **uri, dsd_err_t *err) {
  int rc = 0;
  dsd_cc_instance_t inst;
  json_t *creds = NULL;
  char *guid = NULL;
  int created = 0;
  *key_guid = NULL;
  *uri = NULL;
  rc = dsd_cc_find_instance(cc, name, space_guid, &inst, err);
  if (rc < 0) goto cleanup;
  const char *found = dsd_cc_dialect_of(inst.offering, inst.plan);
  if (found != NULL && strcmp(found, dialect) != 0) {
    rc = dsd_err_set(err, DSD_EINVAL,
                     "the service instance is a %s database but the plan is %s\n"
                     "HINT: service instance \"%s\" is of offering \"%s\", plan \"%s\"",
                     strcmp(found, "pg") == 0 ? "postgresql" : found, dialect, name,
                     inst.offering, inst.plan);
    goto cleanup;
  }
  if (user_guid != NULL) {
    bool yes = false;
    rc = dsd_cc_user_is_space_developer(cc, user_guid, space_guid, &yes, err);
    if (rc < 0) goto cleanup;
    if (!yes) {
      rc = dsd_err_set(err, DSD_EDENIED,
                       "only a space developer of the space can read service instance \"%s\"\n"
                       "HINT: ask a space manager for the SpaceDeveloper role",
                       name);
      goto cleanup;
    }
  }
  rc = dsd_cc_create_key(cc, inst.guid, key_name, cancel, &guid, err);
  created = rc == 0 || rc == DSD_ECANCELED || rc == DSD_ETIMEDOUT || rc == DSD_EIO;
  if (rc < 0) goto cleanup;
  rc = dsd_cc_key_details(cc, guid, &creds, err);
  if (rc == 0) rc = dsd_cc_credentials_uri(creds, dialect, uri, err);
  if (rc < 0) goto cleanup;
  *key_guid = guid;
  guid = NULL;
cleanup:
  if (rc < 0 && created) {
    /* leave nothing behind: the key holds live database credentials */
    dsd_err_t derr = {0};
    int drc = 0;
    if (guid == NULL) drc = dsd_cc_find_key(cc, inst.guid, key_name, &guid, &derr);
    if (guid != NULL) drc = dsd_cc_delete_key(cc, guid, &derr);
    if (drc < 0 && drc != DSD_ENOTFOUND)
      dsd_err_prefix(err, "service key \"%s\" could not be deleted (%s); then", key_name,
                     dsd_err_msg(&derr));
  }
  free(guid);
  json_decref(creds);
  return rc;
}
