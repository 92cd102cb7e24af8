/*
 * config.c - the configuration of `dsd serve`, read from the environment.
 *
 * Cloud Foundry passes configuration through environment variables (PORT,
 * VCAP_SERVICES, ...), so that is the only source. The variables and their
 * defaults are listed in DESIGN.md ("Configuration of dsd serve"); the
 * storage URL comes from core/storage_env.c (DSD_STORAGE or VCAP_SERVICES). The broker
 * password and the CF client secret are registered with the log redactor as
 * soon as they are read, so no later log line can carry them.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "broker/broker.h"
#include "core/storage_env.h"

static char *dsd__env_dup(const char *name) {
  const char *v = getenv(name);
  if (v == NULL || v[0] == '\0')
    return NULL;
  return strdup(v);
}

static int dsd__env_int(const char *name, int def, int min, int max, int *out,
                        dsd_err_t *err) {
  const char *v = getenv(name);
  if (v == NULL || v[0] == '\0') {
    *out = def;
    return 0;
  }
  char *end = NULL;
  errno = 0;
  long n = strtol(v, &end, 10);
  if (errno != 0 || end == v || *end != '\0' || n < min || n > max)
    return dsd_err_set(err, DSD_ECONFIG, "%s must be an integer from %d to %d", name, min, max);
  *out = (int)n;
  return 0;
}

static int dsd__env_bool(const char *name, bool def, bool *out, dsd_err_t *err) {
  const char *v = getenv(name);
  if (v == NULL || v[0] == '\0') {
    *out = def;
    return 0;
  }
  if (strcmp(v, "true") == 0 || strcmp(v, "1") == 0 || strcmp(v, "yes") == 0) {
    *out = true;
    return 0;
  }
  if (strcmp(v, "false") == 0 || strcmp(v, "0") == 0 || strcmp(v, "no") == 0) {
    *out = false;
    return 0;
  }
  return dsd_err_set(err, DSD_ECONFIG, "%s must be true or false", name);
}

void dsd_broker_config_free(dsd_broker_config_t *c) {
  free(c->username);
  free(c->password);
  free(c->storage_url);
  free(c->public_url);
  free(c->cf_api);
  free(c->cf_client_id);
  free(c->cf_client_secret);
  memset(c, 0, sizeof(*c));
}

int dsd_broker_config_from_env(dsd_broker_config_t *c, dsd_err_t *err) {
  int rc = 0;
  memset(c, 0, sizeof(*c));
  c->log_level = DSD_LOG_INFO;

  rc = dsd__env_int("PORT", 8080, 1, 65535, &c->port, err);
  if (rc < 0)
    goto cleanup;
  c->username = dsd__env_dup("DSD_BROKER_USERNAME");
  c->password = dsd__env_dup("DSD_BROKER_PASSWORD");
  if (c->username == NULL || c->password == NULL) {
    rc = dsd_err_set(err, DSD_ECONFIG,
                     "DSD_BROKER_USERNAME and DSD_BROKER_PASSWORD must both be set"
                     "\nHINT: these are the basic-auth credentials you give to "
                     "'cf create-service-broker'");
    goto cleanup;
  }
  dsd_redact_register(c->password);

  /* DSD_STORAGE, else an S3 service in VCAP_SERVICES (which also sets the
   * AWS_* variables), else file://$PWD/dsd-data */
  rc = dsd_storage_url_from_env(&c->storage_url, err);
  if (rc < 0)
    goto cleanup;

  const char *direct = getenv("DSD_ALLOW_DIRECT_URIS");
  if (direct == NULL || direct[0] == '\0' || strcmp(direct, "false") == 0)
    c->direct_uris = DSD_DIRECT_URIS_NONE;
  else if (strcmp(direct, "true") == 0)
    c->direct_uris = DSD_DIRECT_URIS_PUBLIC;
  else if (strcmp(direct, "all") == 0)
    c->direct_uris = DSD_DIRECT_URIS_ALL;
  else {
    rc = dsd_err_set(err, DSD_ECONFIG, "DSD_ALLOW_DIRECT_URIS must be false, true or all");
    goto cleanup;
  }

  c->public_url = dsd__env_dup("DSD_PUBLIC_URL");
  if (c->public_url == NULL && asprintf(&c->public_url, "http://localhost:%d", c->port) < 0) {
    c->public_url = NULL;
    rc = dsd_err_set(err, DSD_ENOMEM, "out of memory");
    goto cleanup;
  }
  size_t n = strlen(c->public_url);
  while (n > 0 && c->public_url[n - 1] == '/')
    c->public_url[--n] = '\0';

  c->cf_api = dsd__env_dup("DSD_CF_API");
  c->cf_client_id = dsd__env_dup("DSD_CF_CLIENT_ID");
  c->cf_client_secret = dsd__env_dup("DSD_CF_CLIENT_SECRET");
  if (c->cf_client_secret != NULL)
    dsd_redact_register(c->cf_client_secret);
  /* A half-configured Cloud Controller would only show up when the first
   * `source` name fails to resolve, hours later: refuse to start instead,
   * naming the variable that is missing. */
  if (c->cf_api != NULL || c->cf_client_id != NULL || c->cf_client_secret != NULL) {
    const char *missing = c->cf_api == NULL         ? "DSD_CF_API"
                          : c->cf_client_id == NULL ? "DSD_CF_CLIENT_ID"
                          : c->cf_client_secret == NULL ? "DSD_CF_CLIENT_SECRET"
                                                        : NULL;
    if (missing != NULL) {
      rc = dsd_err_set(err, DSD_ECONFIG,
                       "the cloud controller configuration is incomplete: %s is not set"
                       "\nHINT: set DSD_CF_API, DSD_CF_CLIENT_ID and DSD_CF_CLIENT_SECRET "
                       "together, or none of them",
                       missing);
      goto cleanup;
    }
    if (strncmp(c->cf_api, "https://", 8) != 0 && strncmp(c->cf_api, "http://", 7) != 0) {
      rc = dsd_err_set(err, DSD_ECONFIG, "DSD_CF_API must be an http(s) url");
      goto cleanup;
    }
  }
  rc = dsd__env_bool("DSD_CF_SKIP_SSL_VALIDATION", false, &c->cf_skip_ssl_validation, err);
  if (rc < 0)
    goto cleanup;

  const char *lvl = getenv("DSD_LOG_LEVEL");
  if (lvl != NULL && lvl[0] != '\0' && dsd_log_level_parse(lvl, &c->log_level) < 0) {
    rc = dsd_err_set(err, DSD_ECONFIG, "DSD_LOG_LEVEL must be debug, info, warn or error");
    goto cleanup;
  }
  /* Tuning knobs, not in the DESIGN table: defaults suit production; tests
   * shorten the lease to exercise recovery. */
  rc = dsd__env_int("DSD_WORKERS", 4, 1, 64, &c->workers, err);
  if (rc < 0)
    goto cleanup;
  rc = dsd__env_int("DSD_HTTP_THREADS", 8, 1, 256, &c->http_threads, err);
  if (rc < 0)
    goto cleanup;
  rc = dsd__env_int("DSD_LEASE_TTL", 30, 2, 3600, &c->lease_ttl_s, err);
  if (rc < 0)
    goto cleanup;
  c->lease_renew_s = c->lease_ttl_s / 3 > 0 ? c->lease_ttl_s / 3 : 1;

cleanup:
  if (rc < 0)
    dsd_broker_config_free(c);
  return rc;
}
