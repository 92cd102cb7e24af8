/*
 * fuzz_osb_params.c - libFuzzer target: OSB request bodies and headers
 * through broker/params.c, the validation every request passes before it
 * reaches the state store.
 *
 * The input is split at the first NUL byte: the part before it is an OSB
 * request body (JSON), the part after it is tried as an
 * X-Broker-API-Version value, an instance/binding id and an originating
 * identity header. The body's "parameters" go through provision and update
 * validation for every plan under each DSD_ALLOW_DIRECT_URIS mode.
 * Invariants checked: a failure always explains itself and never quotes a
 * URI's password; an accepted id can never walk out of a storage prefix.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "broker/broker.h"

static const char *const plan_ids[] = {"pg", "mysql", "mongo"};

/* A valid id must be usable as one path segment of a storage key. */
static void check_id(const char *s) {
  if (!dsd_broker_id_valid(s)) return;
  if (strchr(s, '/') != NULL || strstr(s, "..") != NULL || strcmp(s, ".") == 0 || s[0] == '\0')
    abort();
  for (const char *c = s; *c; c++)
    if ((unsigned char)*c < 0x20 || (unsigned char)*c >= 0x7f) abort();
}

/* Plans are looked up by id; the catalog maps names to ids. Cached: the
 * catalog is the same on every call. */
static const dsd_broker_plan_t *find_plan(const char *name) {
  static const dsd_broker_plan_t *cache[3];
  static const char *const names[3] = {"pg", "mysql", "mongo"};
  for (size_t k = 0; k < 3; k++) {
    if (strcmp(names[k], name) != 0) continue;
    if (cache[k] == NULL) {
      json_t *cat = dsd_broker_catalog(17);
      json_t *plans = json_object_get(json_array_get(json_object_get(cat, "services"), 0), "plans");
      size_t i;
      json_t *pl;
      json_array_foreach(plans, i, pl) {
        if (strcmp(json_string_value(json_object_get(pl, "name")), name) == 0)
          cache[k] = dsd_broker_plan_by_id(json_string_value(json_object_get(pl, "id")));
      }
      json_decref(cat);
    }
    if (cache[k] == NULL) abort();
    return cache[k];
  }
  abort();
}

static void check_failure(int rc, const dsd_err_t *err, const json_t *params) {
  if (rc == 0) return;
  if (err->code == 0 || err->msg[0] == '\0') abort();
  /* A password given inside a direct URI must never be echoed. */
  const char *keys[] = {"source_uri", "target_uri"};
  for (size_t k = 0; k < 2; k++) {
    const char *u = json_string_value(json_object_get(params, keys[k]));
    const char *at = u ? strrchr(u, '@') : NULL;
    const char *colon = u ? strstr(u, "://") : NULL;
    if (at == NULL || colon == NULL || at < colon + 3) continue;
    colon = memchr(colon + 3, ':', (size_t)(at - (colon + 3)));
    if (colon == NULL || at - colon - 1 < 8) continue; /* short ones match by chance */
    char pw[64];
    size_t n = (size_t)(at - colon - 1) < sizeof(pw) - 1 ? (size_t)(at - colon - 1) : sizeof(pw) - 1;
    memcpy(pw, colon + 1, n);
    pw[n] = '\0';
    if (strstr(err->msg, pw) != NULL) abort();
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const uint8_t *nul = memchr(data, 0, size);
  size_t blen = nul ? (size_t)(nul - data) : size;
  char *tail = NULL;
  json_t *body = NULL;
  dsd_err_t err;

  if (nul != NULL) {
    size_t tlen = size - blen - 1;
    tail = malloc(tlen + 1);
    if (tail == NULL) return 0;
    memcpy(tail, nul + 1, tlen);
    tail[tlen] = '\0'; /* headers and URL segments are C strings */
    int minor = 0;
    dsd_err_clear(&err);
    if (dsd_broker_version_parse(tail, &minor, &err) == 0) {
      if (minor < DSD_BROKER_MIN_MINOR) abort();
    } else if (err.msg[0] == '\0') {
      abort();
    }
    check_id(tail);
    char *user = NULL;
    if (dsd_broker_identity_parse(tail, &user) == 0) {
      if (user == NULL || strchr(user, ':') == NULL) abort();
    } else if (user != NULL) {
      abort();
    }
    free(user);
  }

  body = json_loadb((const char *)data, blen, JSON_DECODE_ANY, NULL);
  if (body != NULL) {
    const json_t *params = json_is_object(body) ? json_object_get(body, "parameters") : NULL;
    if (params == NULL) params = body;
    const char *sid = json_string_value(json_object_get(body, "service_id"));
    const char *pid = json_string_value(json_object_get(body, "plan_id"));
    if (sid) check_id(sid);
    if (pid) dsd_broker_plan_by_id(pid);
    for (int mode = DSD_DIRECT_URIS_NONE; mode <= DSD_DIRECT_URIS_ALL; mode++) {
      for (size_t p = 0; p < sizeof(plan_ids) / sizeof(plan_ids[0]); p++) {
        dsd_broker_config_t cfg = {0};
        dsd_broker_plan_t plan_copy = *find_plan(plan_ids[p]);
        cfg.direct_uris = (dsd_direct_uris_t)mode;
        cfg.cf_api = (p % 2) ? "https://api.example.org" : NULL;

        dsd_broker_params_t out = {0};
        dsd_err_clear(&err);
        int rc = dsd_broker_params_provision(&cfg, &plan_copy, params, &out, &err);
        check_failure(rc, &err, params);
        if (rc == 0 && out.instance_name == NULL && out.uri == NULL) abort();
        dsd_broker_params_free(&out);

        memset(&out, 0, sizeof(out));
        dsd_err_clear(&err);
        rc = dsd_broker_params_update(&cfg, &plan_copy, params, &out, &err);
        check_failure(rc, &err, params);
        dsd_broker_params_free(&out);
      }
    }
  }
  json_decref(body);
  free(tail);
  return 0;
}
