/*
 * storage_env.c - the storage URL from DSD_STORAGE, VCAP_SERVICES or the
 * default (see storage_env.h).
 */
#include "core/storage_env.h"

#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/log.h"

/* The first string member among names, or NULL (borrowed). */
static const char *dsd__first_str(json_t *obj, const char *const *names) {
  for (; *names; names++) {
    json_t *v = json_object_get(obj, *names);
    if (json_is_string(v) && json_string_length(v) > 0) return json_string_value(v);
  }
  return NULL;
}

static const char *const dsd__bucket_names[] = {"bucket", "bucket_name", "bucketName", NULL};
static const char *const dsd__key_names[] = {"access_key_id", "accessKeyId", "aws_access_key_id",
                                             "access_key", NULL};
static const char *const dsd__secret_names[] = {"secret_access_key", "secretAccessKey",
                                                "aws_secret_access_key", "secret_key", NULL};
static const char *const dsd__region_names[] = {"region", "aws_region", NULL};
static const char *const dsd__endpoint_names[] = {"endpoint", "endpoint_url", "host", NULL};

static void dsd__setenv_default(const char *name, const char *value) {
  setenv(name, value, 0);
}

int dsd__storage_url_resolve(const char *storage, const char *vcap, const char *cwd,
                             void (*setenv_fn)(const char *, const char *), char **url,
                             dsd_err_t *err) {
  json_t *root = NULL;
  int rc = 0;
  char buf[PATH_MAX + 64];
  *url = NULL;
  if (storage && storage[0]) {
    if (strncmp(storage, "file:///", 8) != 0 && strncmp(storage, "s3://", 5) != 0)
      return dsd_err_set(err, DSD_ECONFIG,
                         "DSD_STORAGE must be file:///abs/dir or s3://bucket[/prefix], not %s",
                         storage);
    *url = strdup(storage);
    goto done;
  }
  if (vcap && vcap[0]) {
    json_error_t jerr;
    root = json_loads(vcap, 0, &jerr);
    if (!json_is_object(root)) {
      rc = dsd_err_set(err, DSD_ECONFIG, "VCAP_SERVICES is not a JSON object (%s)", jerr.text);
      goto done;
    }
    const char *label;
    json_t *list;
    json_object_foreach(root, label, list) {
      size_t i;
      json_t *svc;
      json_array_foreach(list, i, svc) {
        json_t *cred = json_object_get(svc, "credentials");
        const char *bucket = dsd__first_str(cred, dsd__bucket_names);
        const char *key = dsd__first_str(cred, dsd__key_names);
        const char *secret = dsd__first_str(cred, dsd__secret_names);
        if (!bucket || !key || !secret) continue;
        const char *region = dsd__first_str(cred, dsd__region_names);
        const char *endpoint = dsd__first_str(cred, dsd__endpoint_names);
        dsd_redact_register(secret);
        setenv_fn("AWS_ACCESS_KEY_ID", key);
        setenv_fn("AWS_SECRET_ACCESS_KEY", secret);
        if (region) setenv_fn("AWS_REGION", region);
        if (endpoint) {
          if (strstr(endpoint, "://")) {
            setenv_fn("AWS_ENDPOINT_URL_S3", endpoint);
          } else {
            snprintf(buf, sizeof(buf), "https://%s", endpoint);
            setenv_fn("AWS_ENDPOINT_URL_S3", buf);
          }
        }
        snprintf(buf, sizeof(buf), "s3://%s", bucket);
        *url = strdup(buf);
        dsd_log_info("storage: using the S3 service '%s' from VCAP_SERVICES", label);
        goto done;
      }
    }
  }
  snprintf(buf, sizeof(buf), "file://%s/dsd-data", cwd);
  *url = strdup(buf);
done:
  json_decref(root);
  if (rc == 0 && *url == NULL) rc = dsd_err_set(err, DSD_ENOMEM, "out of memory");
  return rc;
}

int dsd_storage_url_from_env(char **url, dsd_err_t *err) {
  char cwd[PATH_MAX];
  if (getcwd(cwd, sizeof(cwd)) == NULL) snprintf(cwd, sizeof(cwd), "/tmp");
  return dsd__storage_url_resolve(getenv("DSD_STORAGE"), getenv("VCAP_SERVICES"), cwd,
                                  dsd__setenv_default, url, err);
}
