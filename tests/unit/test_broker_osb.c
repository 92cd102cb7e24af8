/*
 * test_broker_osb.c - the OSB endpoints (broker/osb.c) and the job runner
 * against a real file:// blob store in a temporary directory, without HTTP.
 *
 * A finished dump cannot be produced here (the pipeline has its own
 * tests), so the "ready" instances are seeded into the store the way a
 * successful provision leaves them; the broker must answer from the store.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "broker/broker.h"
#include "core/buf.h"

#define SVC DSD_BROKER_SERVICE_ID
#define PG "3c1e7a52-0b6d-4e0f-8d21-9f4a6c2b7e10"
#define MYSQL "5d2f8b63-1c7e-4f10-9e32-0a5b7d3c8f21"
#define QIDS "service_id=" SVC "&plan_id=" PG
#define SECRET_PW "pw-Very-Secret-42"

typedef struct {
  char dir[256];
  dsd_broker_config_t cfg;
  dsd_blob_store_t *store;
  dsd_broker_t b;
} fixture_t;

static int setup(void **state) {
  fixture_t *f = calloc(1, sizeof(*f));
  dsd_err_t err = {0};
  snprintf(f->dir, sizeof(f->dir), "/tmp/dsd-broker-test-XXXXXX");
  assert_non_null(mkdtemp(f->dir));
  f->cfg.username = strdup("broker");
  f->cfg.password = strdup("broker-password-xyz");
  f->cfg.public_url = strdup("https://dsd.example.com");
  f->cfg.direct_uris = DSD_DIRECT_URIS_ALL;
  f->cfg.workers = 2;
  f->cfg.lease_ttl_s = 30;
  f->cfg.lease_renew_s = 10;
  assert_int_equal(dsd_blob_file_open(f->dir, &f->store, &err), 0);
  assert_int_equal(dsd_broker_init(&f->b, &f->cfg, f->store, &err), 0);
  *state = f;
  return 0;
}

static int teardown(void **state) {
  fixture_t *f = *state;
  char cmd[300];
  dsd_broker_shutdown(&f->b);
  dsd_blob_store_free(f->store);
  free(f->cfg.username);
  free(f->cfg.password);
  free(f->cfg.public_url);
  snprintf(cmd, sizeof(cmd), "rm -rf '%s'", f->dir);
  assert_int_equal(system(cmd), 0);
  free(f);
  return 0;
}

/* Calls the handler. query is "k=v&k=v" (values without '&'). */
static int call(fixture_t *f, const char *method, const char *path, const char *query,
                const char *body, json_t **out) {
  dsd_broker_req_t req = {0};
  dsd_broker_resp_t resp = {0};
  char q[1024] = "";
  const char *vals[4] = {NULL, NULL, NULL, NULL};
  static const char *names[4] = {"accepts_incomplete", "service_id", "plan_id", "operation"};
  if (query != NULL) {
    snprintf(q, sizeof(q), "%s", query);
    for (char *tok = strtok(q, "&"); tok; tok = strtok(NULL, "&")) {
      char *eq = strchr(tok, '=');
      assert_non_null(eq);
      *eq = '\0';
      for (int i = 0; i < 4; i++)
        if (strcmp(tok, names[i]) == 0)
          vals[i] = eq + 1;
    }
  }
  req.method = method;
  req.path = path;
  req.body = body;
  req.body_len = body ? strlen(body) : 0;
  req.minor = 17;
  req.user = "cloudfoundry:user-1";
  req.request_identity = "req-1";
  req.q_accepts_incomplete = vals[0];
  req.q_service_id = vals[1];
  req.q_plan_id = vals[2];
  req.q_operation = vals[3];
  dsd_broker_handle(&f->b, &req, &resp);
  assert_non_null(resp.body);
  if (out != NULL)
    *out = resp.body;
  else
    json_decref(resp.body);
  return resp.status;
}

static const char *jstr(json_t *o, const char *k) {
  return json_string_value(json_object_get(o, k));
}

static char *read_store(fixture_t *f, const char *key) {
  dsd_buf_t b = DSD_BUF_INIT;
  dsd_err_t err = {0};
  if (dsd_blob_get(f->store, key, &b, &err) < 0)
    return NULL;
  return dsd_buf_steal(&b);
}

/* Polls last_operation until the state leaves "in progress". */
static json_t *wait_op(fixture_t *f, const char *id, int *status) {
  char path[300];
  snprintf(path, sizeof(path), "/v2/service_instances/%s/last_operation", id);
  for (int i = 0; i < 200; i++) {
    json_t *o = NULL;
    *status = call(f, "GET", path, NULL, NULL, &o);
    if (*status != 200 || strcmp(jstr(o, "state"), "in progress") != 0)
      return o;
    json_decref(o);
    usleep(50 * 1000);
  }
  fail_msg("operation of %s did not end", id);
  return NULL;
}

static const char *provision_body =
    "{\"service_id\":\"" SVC "\",\"plan_id\":\"" PG "\",\"organization_guid\":\"org\","
    "\"space_guid\":\"space\",\"context\":{\"platform\":\"cloudfoundry\"},"
    "\"parameters\":{\"source_uri\":\"postgresql://u:" SECRET_PW "@db.example.com/app\"}}";

static void test_errors(void **state) {
  fixture_t *f = *state;
  json_t *o = NULL;
  assert_int_equal(call(f, "GET", "/v2/catalog", NULL, NULL, NULL), 200);
  assert_int_equal(call(f, "PUT", "/v2/service_instances/i1", NULL, provision_body, &o), 422);
  assert_string_equal(jstr(o, "error"), "AsyncRequired");
  json_decref(o);
  assert_int_equal(call(f, "PUT", "/v2/service_instances/i1", "accepts_incomplete=true", "{nope", &o), 400);
  assert_non_null(jstr(o, "description"));
  json_decref(o);
  assert_int_equal(call(f, "PUT", "/v2/service_instances/i1", "accepts_incomplete=true",
                        "{\"service_id\":\"" SVC "\",\"plan_id\":\"x\",\"organization_guid\":\"o\",\"space_guid\":\"s\"}", NULL), 400);
  assert_int_equal(call(f, "PUT", "/v2/service_instances/i1", "accepts_incomplete=true",
                        "{\"service_id\":\"x\",\"plan_id\":\"" PG "\",\"organization_guid\":\"o\",\"space_guid\":\"s\"}", NULL), 400);
  assert_int_equal(call(f, "PUT", "/v2/service_instances/i1", "accepts_incomplete=true",
                        "{\"service_id\":\"" SVC "\",\"plan_id\":\"" PG "\",\"space_guid\":\"s\","
                        "\"parameters\":{\"source_uri\":\"postgresql://h/d\"}}", &o), 400);
  assert_non_null(strstr(jstr(o, "description"), "organization_guid"));
  json_decref(o);
  assert_int_equal(call(f, "PUT", "/v2/service_instances/i1", "accepts_incomplete=true",
                        "{\"service_id\":\"" SVC "\",\"plan_id\":\"" PG "\",\"organization_guid\":\"o\",\"space_guid\":\"s\","
                        "\"parameters\":{\"source_uri\":\"postgresql://h/d\",\"colour\":1}}", &o), 400);
  assert_non_null(strstr(jstr(o, "description"), "colour"));
  json_decref(o);
  assert_int_equal(call(f, "PUT", "/v2/service_instances/a/b", "accepts_incomplete=true", provision_body, NULL), 400);
  assert_int_equal(call(f, "PUT", "/v2/service_instances/..", "accepts_incomplete=true", provision_body, NULL), 400);
  assert_int_equal(call(f, "PUT", "/v2/service_instances/i1/service_bindings/b/c", NULL, "{}", NULL), 400);
  assert_int_equal(call(f, "GET", "/v2/service_instances/nope", NULL, NULL, NULL), 404);
  assert_int_equal(call(f, "GET", "/v2/service_instances/nope/last_operation", NULL, NULL, NULL), 404);
  assert_int_equal(call(f, "GET", "/v2/service_instances/nope/last_operation", "service_id=bad", NULL, NULL), 400);
  assert_int_equal(call(f, "GET", "/v2/service_instances/nope/last_operation", "plan_id=bad", NULL, NULL), 400);
  assert_int_equal(call(f, "DELETE", "/v2/service_instances/nope", "accepts_incomplete=true&" QIDS, NULL, NULL), 410);
  assert_int_equal(call(f, "DELETE", "/v2/service_instances/nope", "accepts_incomplete=true", NULL, NULL), 400);
  assert_int_equal(call(f, "DELETE", "/v2/service_instances/nope", QIDS, NULL, NULL), 422);
  assert_int_equal(call(f, "DELETE", "/v2/service_instances/nope/service_bindings/b1", QIDS, NULL, NULL), 410);
  assert_int_equal(call(f, "GET", "/v2/other", NULL, NULL, NULL), 404);
}

static void test_provision_lifecycle(void **state) {
  fixture_t *f = *state;
  json_t *o = NULL;
  int st = 0;
  assert_int_equal(call(f, "PUT", "/v2/service_instances/i2", "accepts_incomplete=true", provision_body, &o), 202);
  char op[64];
  snprintf(op, sizeof(op), "%s", jstr(o, "operation"));
  json_decref(o);
  /* the stored state never holds the source password */
  char *inst = read_store(f, "instances/i2/instance.json");
  assert_non_null(inst);
  assert_null(strstr(inst, SECRET_PW));
  assert_non_null(strstr(inst, "postgresql://u@db.example.com/app"));
  free(inst);
  /* a different request for the same id */
  char *other = strdup(provision_body);
  memcpy(strstr(other, "\"space\""), "\"spacX\"", 7);
  assert_int_equal(call(f, "PUT", "/v2/service_instances/i2", "accepts_incomplete=true", other, NULL), 409);
  free(other);

  o = wait_op(f, "i2", &st);
  assert_int_equal(st, 200);
  char key[300];
  dsd_blob_info_t info;
  dsd_err_t err = {0};
  if (strcmp(jstr(o, "state"), "succeeded") == 0) {
    /* only acceptable when the pipeline really wrote the dump */
    assert_int_equal(dsd_blob_head(f->store, "dumps/i2.tar.zst", &info, &err), 0);
  } else {
    assert_string_equal(jstr(o, "state"), "failed");
    /* "not built yet" without the pg dialect; with it, db.example.com
     * cannot be reached */
    assert_true(strstr(jstr(o, "description"), "not built yet") != NULL ||
                strstr(jstr(o, "description"), "source") != NULL);
    assert_null(strstr(jstr(o, "description"), SECRET_PW));
    /* a failed provision left nothing behind, and bind/update refuse */
    assert_int_not_equal(dsd_blob_head(f->store, "dumps/i2.tar.zst", &info, &err), 0);
    assert_int_equal(call(f, "PUT", "/v2/service_instances/i2/service_bindings/b1", NULL,
                          "{\"service_id\":\"" SVC "\",\"plan_id\":\"" PG "\"}", NULL), 400);
    assert_int_equal(call(f, "PATCH", "/v2/service_instances/i2", "accepts_incomplete=true",
                          "{\"service_id\":\"" SVC "\",\"parameters\":{\"target_uri\":\"postgresql://h/d\"}}", NULL), 400);
  }
  json_decref(o);
  /* the operation record: user, steps, transient resource recorded */
  snprintf(key, sizeof(key), "instances/i2/operations/%s.json", op);
  char *rec = read_store(f, key);
  assert_non_null(rec);
  assert_non_null(strstr(rec, "cloudfoundry:user-1"));
  assert_non_null(strstr(rec, "dumps/i2.tar.zst"));
  assert_null(strstr(rec, SECRET_PW));
  free(rec);
  /* orphan mitigation: the failed instance can be deleted */
  assert_int_equal(call(f, "DELETE", "/v2/service_instances/i2", "accepts_incomplete=true&" QIDS, NULL, NULL), 202);
  o = wait_op(f, "i2", &st);
  assert_int_equal(st, 410);
  json_decref(o);
  assert_null(read_store(f, "instances/i2/instance.json"));
  assert_int_equal(call(f, "DELETE", "/v2/service_instances/i2", "accepts_incomplete=true&" QIDS, NULL, NULL), 410);
  /* the anonymization salt is a secret: never stored */
  assert_int_equal(call(f, "PUT", "/v2/service_instances/salty", "accepts_incomplete=true",
                        "{\"service_id\":\"" SVC "\",\"plan_id\":\"" PG "\",\"organization_guid\":\"o\","
                        "\"space_guid\":\"s\",\"parameters\":{\"source_uri\":\"postgresql://h/d\","
                        "\"anonymize\":{\"salt\":\"Salt-Secret-991\",\"default\":\"keep\"}}}", NULL), 202);
  inst = read_store(f, "instances/salty/instance.json");
  assert_non_null(inst);
  assert_null(strstr(inst, "Salt-Secret-991"));
  assert_non_null(strstr(inst, "\"default\":\"keep\""));
  free(inst);
  o = wait_op(f, "salty", &st);
  json_decref(o);
  /* the id can be used again */
  assert_int_equal(call(f, "PUT", "/v2/service_instances/i2", "accepts_incomplete=true", provision_body, NULL), 202);
  o = wait_op(f, "i2", &st);
  json_decref(o);
}

/* Writes the state a successful provision leaves. */
static void seed_ready(fixture_t *f, const char *id, const char *op_state, int64_t lease_exp,
                       const char *op_type) {
  char key[300], text[2048];
  dsd_err_t err = {0};
  snprintf(text, sizeof(text),
           "{\"id\":\"%s\",\"service_id\":\"" SVC "\",\"plan_id\":\"" PG "\",\"plan\":\"pg\","
           "\"organization_guid\":\"o\",\"space_guid\":\"s\",\"status\":\"ready\","
           "\"last_operation\":\"op-1\",\"request_hmac\":\"x\",\"parameters\":{},"
           "\"dump\":{\"key\":\"dumps/%s.tar.zst\",\"size\":5,\"sha256\":\"abc\","
           "\"format\":\"tar+zstd\",\"created_at\":\"2026-01-01T00:00:00Z\",\"tables\":2}}",
           id, id);
  snprintf(key, sizeof(key), "instances/%s/instance.json", id);
  assert_int_equal(dsd_blob_put(f->store, key, text, strlen(text), &err), 0);
  snprintf(text, sizeof(text),
           "{\"id\":\"op-1\",\"type\":\"%s\",\"state\":\"%s\",\"description\":\"d\","
           "\"transient\":[],\"steps\":[],\"log\":[],"
           "\"lease\":{\"owner\":\"other-host:1:ab\",\"expires_at\":%lld}}",
           op_type, op_state, (long long)lease_exp);
  snprintf(key, sizeof(key), "instances/%s/operations/op-1.json", id);
  assert_int_equal(dsd_blob_put(f->store, key, text, strlen(text), &err), 0);
  snprintf(key, sizeof(key), "dumps/%s.tar.zst", id);
  assert_int_equal(dsd_blob_put(f->store, key, "hello", 5, &err), 0);
}

static void test_bindings(void **state) {
  fixture_t *f = *state;
  json_t *o = NULL, *o2 = NULL;
  seed_ready(f, "r1", "succeeded", 0, "provision");
  const char *bind = "{\"service_id\":\"" SVC "\",\"plan_id\":\"" PG "\",\"app_guid\":\"app-1\","
                     "\"bind_resource\":{\"app_guid\":\"app-1\"}}";
  assert_int_equal(call(f, "GET", "/v2/service_instances/r1", NULL, NULL, NULL), 200);
  assert_int_equal(call(f, "PUT", "/v2/service_instances/r1/service_bindings/b1", NULL, bind, &o), 201);
  json_t *c = json_object_get(o, "credentials");
  assert_string_equal(jstr(c, "uri"), "https://dsd.example.com/v1/dumps/r1/download");
  assert_string_equal(jstr(c, "username"), "b1");
  assert_string_equal(jstr(c, "filename"), "r1.tar.zst");
  assert_string_equal(jstr(c, "dialect"), "pg");
  assert_string_equal(jstr(c, "sha256"), "abc");
  assert_int_equal(json_integer_value(json_object_get(c, "size")), 5);
  const char *pw = jstr(c, "password");
  assert_int_equal(strlen(pw), 64);
  /* only a salted hash is stored */
  char *rec = read_store(f, "instances/r1/bindings/b1.json");
  assert_non_null(rec);
  assert_null(strstr(rec, pw));
  free(rec);
  /* identical repeat: 200 with the same credentials; GET too */
  assert_int_equal(call(f, "PUT", "/v2/service_instances/r1/service_bindings/b1", NULL, bind, &o2), 200);
  assert_string_equal(jstr(json_object_get(o2, "credentials"), "password"), pw);
  json_decref(o2);
  assert_int_equal(call(f, "GET", "/v2/service_instances/r1/service_bindings/b1", NULL, NULL, &o2), 200);
  assert_string_equal(jstr(json_object_get(o2, "credentials"), "password"), pw);
  json_decref(o2);
  assert_int_equal(call(f, "GET", "/v2/service_instances/r1/service_bindings/b1/last_operation", NULL, NULL, NULL), 200);
  /* different attributes */
  assert_int_equal(call(f, "PUT", "/v2/service_instances/r1/service_bindings/b1", NULL,
                        "{\"service_id\":\"" SVC "\",\"plan_id\":\"" PG "\",\"app_guid\":\"app-2\"}", NULL), 409);
  /* binding parameters are refused */
  assert_int_equal(call(f, "PUT", "/v2/service_instances/r1/service_bindings/b2", NULL,
                        "{\"service_id\":\"" SVC "\",\"plan_id\":\"" PG "\",\"parameters\":{\"x\":1}}", NULL), 400);
  /* the download credentials work, wrong ones do not */
  dsd_blob_reader_t *r = NULL;
  uint64_t size = 0;
  char fname[100], data[16];
  dsd_err_t err = {0};
  assert_int_equal(dsd_broker_download_open(&f->b, "r1", "b1", pw, &r, &size, fname, sizeof(fname), &err), 0);
  assert_int_equal(size, 5);
  assert_int_equal(dsd_blob_reader_read(r, data, sizeof(data)), 5);
  assert_memory_equal(data, "hello", 5);
  dsd_blob_reader_close(r);
  assert_int_equal(dsd_broker_download_open(&f->b, "r1", "b1", "wrong", &r, &size, fname, sizeof(fname), &err), DSD_EAUTH);
  json_decref(o);
  /* unbind, then the credentials are revoked */
  assert_int_equal(call(f, "DELETE", "/v2/service_instances/r1/service_bindings/b1", QIDS, NULL, NULL), 200);
  assert_int_equal(call(f, "DELETE", "/v2/service_instances/r1/service_bindings/b1", QIDS, NULL, NULL), 410);
  assert_int_equal(call(f, "GET", "/v2/service_instances/r1/service_bindings/b1", NULL, NULL, NULL), 404);
}

static void test_concurrency_and_recovery(void **state) {
  fixture_t *f = *state;
  json_t *o = NULL;
  int st = 0;
  /* a dump running on another, live broker */
  seed_ready(f, "c1", "in progress", dsd_broker_now() + 3600, "provision");
  assert_int_equal(call(f, "PATCH", "/v2/service_instances/c1", "accepts_incomplete=true",
                        "{\"service_id\":\"" SVC "\",\"parameters\":{\"target_uri\":\"postgresql://h/d\"}}", &o), 422);
  assert_string_equal(jstr(o, "error"), "ConcurrencyError");
  json_decref(o);
  assert_int_equal(call(f, "PUT", "/v2/service_instances/c1/service_bindings/b1", NULL,
                        "{\"service_id\":\"" SVC "\",\"plan_id\":\"" PG "\"}", &o), 422);
  assert_string_equal(jstr(o, "error"), "ConcurrencyError");
  json_decref(o);
  assert_int_equal(call(f, "GET", "/v2/service_instances/c1", NULL, NULL, NULL), 404);
  assert_int_equal(call(f, "GET", "/v2/service_instances/c1/last_operation", NULL, NULL, &o), 200);
  assert_string_equal(jstr(o, "state"), "in progress");
  json_decref(o);
  /* an update running elsewhere: fetch says ConcurrencyError */
  seed_ready(f, "c3", "in progress", dsd_broker_now() + 3600, "update");
  assert_int_equal(call(f, "GET", "/v2/service_instances/c3", NULL, NULL, &o), 422);
  json_decref(o);

  /* the broker running it died: its lease expired */
  seed_ready(f, "c2", "in progress", dsd_broker_now() - 5, "provision");
  o = wait_op(f, "c2", &st);
  assert_int_equal(st, 200);
  assert_string_equal(jstr(o, "state"), "failed");
  assert_non_null(strstr(jstr(o, "description"), "stopped"));
  json_decref(o);
  char *rec = read_store(f, "instances/c2/operations/op-1.json");
  assert_non_null(strstr(rec, "\"failed\""));
  free(rec);

  /* update of a ready instance runs (and, without the pipeline, fails
   * saying so); the instance stays usable */
  assert_int_equal(call(f, "PATCH", "/v2/service_instances/c1", "accepts_incomplete=true",
                        "{\"service_id\":\"" SVC "\",\"plan_id\":\"" MYSQL "\",\"parameters\":{\"target_uri\":\"postgresql://h/d\"}}", NULL), 400); /* plan changes: refused first */
  seed_ready(f, "u1", "succeeded", 0, "provision");
  assert_int_equal(call(f, "PATCH", "/v2/service_instances/u1", "accepts_incomplete=true",
                        "{\"service_id\":\"" SVC "\",\"plan_id\":\"" MYSQL "\",\"parameters\":{\"target_uri\":\"postgresql://h/d\"}}", NULL), 400);
  assert_int_equal(call(f, "PATCH", "/v2/service_instances/u1", "accepts_incomplete=true",
                        "{\"service_id\":\"" SVC "\",\"parameters\":{\"target_uri\":\"mysql://h/d\"}}", NULL), 400);
  assert_int_equal(call(f, "PATCH", "/v2/service_instances/u1", "accepts_incomplete=true",
                        "{\"service_id\":\"" SVC "\",\"context\":{\"instance_name\":\"new\"}}", NULL), 200);
  assert_int_equal(call(f, "PATCH", "/v2/service_instances/u1", "accepts_incomplete=true",
                        "{\"service_id\":\"" SVC "\",\"parameters\":{\"target_uri\":\"postgresql://h/d\"}}", &o), 202);
  json_decref(o);
  /* the same update re-sent while it runs: 202 (or, if it already ended,
   * a new operation: 202 too); a different one while it runs: 422 */
  assert_int_equal(call(f, "PATCH", "/v2/service_instances/u1", "accepts_incomplete=true",
                        "{\"service_id\":\"" SVC "\",\"parameters\":{\"target_uri\":\"postgresql://h/d\"}}", &o), 202);
  json_decref(o);
  o = wait_op(f, "u1", &st);
  assert_int_equal(st, 200);
  if (strcmp(jstr(o, "state"), "failed") == 0)
    assert_true(json_is_true(json_object_get(o, "instance_usable")));
  json_decref(o);
  assert_int_equal(call(f, "GET", "/v2/service_instances/u1", NULL, NULL, NULL), 200);

  /* deprovision of an instance whose dump runs elsewhere waits for it;
   * once that broker's lease runs out, the delete completes */
  assert_int_equal(call(f, "DELETE", "/v2/service_instances/c1", "accepts_incomplete=true&" QIDS, NULL, &o), 202);
  json_decref(o);
  assert_int_equal(call(f, "GET", "/v2/service_instances/c1/last_operation", NULL, NULL, &o), 200);
  assert_string_equal(jstr(o, "state"), "in progress");
  json_decref(o);
  /* a second DELETE while the first runs gets the same operation */
  assert_int_equal(call(f, "DELETE", "/v2/service_instances/c1", "accepts_incomplete=true&" QIDS, NULL, NULL), 202);
  char *op = read_store(f, "instances/c1/operations/op-1.json");
  json_t *j = json_loads(op, 0, NULL);
  json_object_set_new(json_object_get(j, "lease"), "expires_at", json_integer(dsd_broker_now() - 1));
  dsd_err_t err = {0};
  assert_int_equal(dsd_broker_state_put(f->store, "instances/c1/operations/op-1.json", j, &err), 0);
  json_decref(j);
  free(op);
  o = wait_op(f, "c1", &st);
  assert_int_equal(st, 410);
  json_decref(o);
  dsd_blob_info_t info;
  assert_int_equal(dsd_blob_head(f->store, "dumps/c1.tar.zst", &info, &err), DSD_ENOTFOUND);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_errors, setup, teardown),
      cmocka_unit_test_setup_teardown(test_provision_lifecycle, setup, teardown),
      cmocka_unit_test_setup_teardown(test_bindings, setup, teardown),
      cmocka_unit_test_setup_teardown(test_concurrency_and_recovery, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
