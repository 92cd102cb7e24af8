/*
 * osb.c - the OSB endpoints. dsd_broker_handle() gets a request that http.c
 * has already authenticated and version-checked, and fills a status and a
 * JSON body. It reads and writes state through state.c under b->lock and
 * hands long work to jobs.c; it never waits for a job.
 *
 * Status codes follow the OSB spec v2.17 (see the table at each handler).
 * Errors have {"error": CODE, "description": TEXT}; the spec's codes
 * (AsyncRequired, ConcurrencyError) are used where it defines one.
 */
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/sha.h>

#include "broker/broker.h"

#define DSD__RETRY_AFTER_S 15
#define DSD__KEY_MAX 600

/* -------------------------------------------------------------- helpers */

static void dsd__resp(dsd_broker_resp_t *r, int status, json_t *body) {
  json_decref(r->body);
  r->status = status;
  r->body = body ? body : json_object();
}

static void dsd__fail(dsd_broker_resp_t *r, int status, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void dsd__fail(dsd_broker_resp_t *r, int status, const char *code, const char *fmt, ...) {
  char msg[DSD_ERR_MSG_MAX], red[DSD_ERR_MSG_MAX];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof(msg), fmt, ap);
  va_end(ap);
  dsd_redact_into(msg, red, sizeof(red));
  dsd__resp(r, status, json_pack("{s:s, s:s}", "error", code, "description", red));
}

static bool dsd__is(const char *a, const char *b) {
  return a != NULL && b != NULL && strcmp(a, b) == 0;
}

static const char *dsd__str(const json_t *o, const char *k) {
  return json_string_value(json_object_get(o, k));
}

static bool dsd__in_progress(const json_t *op) {
  return dsd__is(dsd__str(op, "state"), "in progress");
}

/* HMAC-SHA256 (keyed with the broker password, so the stored value says
 * nothing about a source_uri's password) of the canonical JSON of doc. */
static void dsd__fingerprint(dsd_broker_t *b, const json_t *doc, char out[65]) {
  unsigned char mac[32];
  unsigned int len = 0;
  char *text = json_dumps(doc, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY);
  const char *k = b->cfg->password;
  HMAC(EVP_sha256(), k, (int)strlen(k), (const unsigned char *)(text ? text : ""),
       text ? strlen(text) : 0, mac, &len);
  if (text != NULL) {
    OPENSSL_cleanse(text, strlen(text));
    free(text);
  }
  for (int i = 0; i < 32; i++)
    snprintf(out + 2 * i, 3, "%02x", mac[i]);
}

static json_t *dsd__parse_body(const dsd_broker_req_t *req, dsd_broker_resp_t *resp) {
  json_error_t jerr;
  if (req->body == NULL || req->body_len == 0) {
    dsd__fail(resp, 400, "BadRequest", "the request body must be a JSON object");
    return NULL;
  }
  json_t *doc = json_loadb(req->body, req->body_len, JSON_REJECT_DUPLICATES, &jerr);
  if (!json_is_object(doc)) {
    json_decref(doc);
    dsd__fail(resp, 400, "BadRequest", "the request body is not a JSON object: %s at line %d",
              jerr.text, jerr.line);
    return NULL;
  }
  return doc;
}

/* Checks service_id and plan_id (from the body or the query). Returns the
 * plan, or NULL after filling resp with 400. */
static const dsd_broker_plan_t *dsd__check_ids(const char *service_id, const char *plan_id,
                                               dsd_broker_resp_t *resp) {
  if (service_id == NULL || plan_id == NULL) {
    dsd__fail(resp, 400, "BadRequest", "service_id and plan_id are required");
    return NULL;
  }
  if (strcmp(service_id, DSD_BROKER_SERVICE_ID) != 0) {
    dsd__fail(resp, 400, "BadRequest",
              "unknown service_id\nHINT: the catalog's only service has id %s",
              DSD_BROKER_SERVICE_ID);
    return NULL;
  }
  const dsd_broker_plan_t *plan = dsd_broker_plan_by_id(plan_id);
  if (plan == NULL)
    dsd__fail(resp, 400, "BadRequest", "unknown plan_id\nHINT: see GET /v2/catalog");
  return plan;
}

static bool dsd__async_ok(const dsd_broker_req_t *req, dsd_broker_resp_t *resp) {
  if (dsd__is(req->q_accepts_incomplete, "true"))
    return true;
  dsd__fail(resp, 422, "AsyncRequired",
            "this service plan requires client support for asynchronous service operations");
  return false;
}

/* Loads the instance and its last operation (recovering an operation whose
 * broker died). Caller holds b->lock. Returns 0, DSD_ENOTFOUND (no
 * instance) or an error. */
static int dsd__load_locked(dsd_broker_t *b, const char *id, json_t **inst, json_t **op,
                            dsd_err_t *err) {
  char key[DSD__KEY_MAX];
  *inst = *op = NULL;
  dsd_broker_key_instance(key, sizeof(key), id);
  int rc = dsd_broker_state_get(b->store, key, inst, err);
  if (rc < 0)
    return rc;
  const char *op_id = dsd__str(*inst, "last_operation");
  if (op_id == NULL || !dsd_broker_id_valid(op_id))
    return 0;
  dsd_broker_key_op(key, sizeof(key), id, op_id);
  rc = dsd_broker_state_get(b->store, key, op, err);
  if (rc == DSD_ENOTFOUND)
    return 0;
  if (rc < 0)
    return rc;
  dsd_broker_op_recover_locked(b, id, *inst, *op);
  return 0;
}

/* The instance's effective status: its last operation decides while one is
 * recorded ("provisioning" until the dump succeeds). */
static const char *dsd__status(const json_t *inst, const json_t *op) {
  if (json_is_true(json_object_get(inst, "deleting")))
    return "deleting";
  const char *type = dsd__str(op, "type");
  if (dsd__is(type, "provision")) {
    if (dsd__in_progress(op))
      return "provisioning";
    if (dsd__is(dsd__str(op, "state"), "failed"))
      return "failed";
  }
  if (dsd__is(type, "update") && dsd__in_progress(op))
    return "updating";
  return json_object_get(inst, "dump") ? "ready" : (dsd__str(inst, "status") ?: "failed");
}

static void dsd__store_error(dsd_broker_resp_t *resp, const dsd_err_t *err) {
  dsd_log_error("state store: %s", dsd_err_msg(err));
  dsd__fail(resp, 500, "InternalError", "the broker cannot reach its state store: %s",
            dsd_err_msg(err));
}

static dsd_broker_job_t *dsd__job_new(dsd_op_type_t type, const char *id, const char *op_id,
                                      const dsd_broker_plan_t *plan) {
  dsd_broker_job_t *job = calloc(1, sizeof(*job));
  if (job == NULL)
    return NULL;
  job->type = type;
  snprintf(job->instance_id, sizeof(job->instance_id), "%s", id);
  snprintf(job->op_id, sizeof(job->op_id), "%s", op_id);
  snprintf(job->plan, sizeof(job->plan), "%s", plan ? plan->name : "");
  atomic_init(&job->cancel, 0);
  atomic_init(&job->running, 0);
  return job;
}

/* Parameters as stored: connection URIs lose their password. */
static json_t *dsd__params_public(const json_t *params) {
  json_t *out = params && json_is_object(params) ? json_deep_copy(params) : json_object();
  static const char *const uris[] = {"source_uri", "target_uri"};
  for (size_t i = 0; i < 2; i++) {
    const char *u = dsd__str(out, uris[i]);
    if (u != NULL) {
      char *s = dsd_broker_uri_strip_password(u);
      json_object_set_new(out, uris[i], s ? json_string(s) : json_string(DSD_REDACTED));
      free(s);
    }
  }
  /* the anonymization salt keys every pseudonym: whoever has it can test
   * guesses against the dump, so it is a secret like a password */
  json_t *anon = json_object_get(out, "anonymize");
  if (json_is_object(anon) && json_object_get(anon, "salt") != NULL)
    json_object_set_new(anon, "salt", json_string(DSD_REDACTED));
  return out;
}

static void dsd__new_op_id(const char *prefix, char *buf, size_t cap) {
  char rnd[33];
  if (dsd_broker_random_hex(rnd, 16) < 0)
    snprintf(rnd, sizeof(rnd), "%lx", (long)dsd_broker_now());
  snprintf(buf, cap, "%s-%s", prefix, rnd);
}

/* ------------------------------------------------------------ provision */

/* Hands a prepared job (may be NULL; calloc'd, so its params are zero when
 * unused) to the runner when the answer is 202, otherwise frees it: the
 * request was refused and nothing runs. */
static void dsd__job_submit_if_accepted(dsd_broker_t *b, dsd_broker_job_t *job,
                                        const dsd_broker_resp_t *resp) {
  if (job == NULL)
    return;
  if (resp->status == 202) {
    dsd_broker_job_submit(b, job);
    return;
  }
  dsd_broker_params_free(&job->params);
  free(job);
}

/* PUT /v2/service_instances/:id  200 identical+done, 202 started or
 * identical+running, 400, 409 different attributes, 422 AsyncRequired /
 * ConcurrencyError. */
static void dsd__provision(dsd_broker_t *b, const dsd_broker_req_t *req, const char *id,
                           dsd_broker_resp_t *resp) {
  dsd_err_t err = {0};
  dsd_broker_params_t params = {0};
  dsd_broker_job_t *job = NULL;
  json_t *inst = NULL, *op = NULL, *fp_doc = NULL;
  bool locked = false;
  char key[DSD__KEY_MAX], fp[65], op_id[64];
  if (!dsd__async_ok(req, resp))
    return;
  json_t *body = dsd__parse_body(req, resp);
  if (body == NULL)
    return;
  const dsd_broker_plan_t *plan =
      dsd__check_ids(dsd__str(body, "service_id"), dsd__str(body, "plan_id"), resp);
  if (plan == NULL)
    goto cleanup;
  json_t *ctx = json_object_get(body, "context");
  const char *org = dsd__str(body, "organization_guid");
  const char *space = dsd__str(body, "space_guid");
  /* 2.x still requires the two guids; a platform that only sends the
   * context (CF does both) gets them taken from there */
  if (org == NULL)
    org = dsd__str(ctx, "organization_guid");
  if (space == NULL)
    space = dsd__str(ctx, "space_guid");
  if (org == NULL || space == NULL) {
    dsd__fail(resp, 400, "BadRequest", "organization_guid and space_guid are required");
    goto cleanup;
  }
  if (ctx != NULL && !json_is_object(ctx)) {
    dsd__fail(resp, 400, "BadRequest", "context must be a JSON object");
    goto cleanup;
  }
  json_t *p = json_object_get(body, "parameters");
  if (dsd_broker_params_provision(b->cfg, plan, p, &params, &err) < 0) {
    dsd__fail(resp, 400, "BadRequest", "%s", dsd_err_msg(&err));
    goto cleanup;
  }
  fp_doc = json_pack("{s:s, s:s, s:s, s:s, s:O?}", "service_id", DSD_BROKER_SERVICE_ID,
                     "plan_id", plan->id, "organization_guid", org, "space_guid", space,
                     "parameters", p);
  dsd__fingerprint(b, fp_doc, fp);

  pthread_mutex_lock(&b->lock);
  locked = true;
  int rc = dsd__load_locked(b, id, &inst, &op, &err);
  if (rc < 0 && rc != DSD_ENOTFOUND) {
    dsd__store_error(resp, &err);
    goto cleanup;
  }
  if (inst != NULL) {
    const char *old = dsd__str(inst, "request_hmac");
    if (old == NULL || CRYPTO_memcmp(old, fp, 64) != 0) {
      dsd__fail(resp, 409, "Conflict",
                "a service instance with this id already exists with different attributes");
      goto cleanup;
    }
    const char *st = dsd__status(inst, op);
    if (dsd__is(st, "provisioning")) {
      dsd__resp(resp, 202, json_pack("{s:s, s:o*}", "operation", dsd__str(op, "id"),
                                     "dashboard_url", dsd_broker_dashboard_url(b, id, inst)));
    } else if (dsd__is(st, "ready") || dsd__is(st, "updating")) {
      dsd__resp(resp, 200, json_pack("{s:o*}", "dashboard_url",
                                     dsd_broker_dashboard_url(b, id, inst)));
    } else if (dsd__is(st, "deleting")) {
      dsd__fail(resp, 422, "ConcurrencyError", "this service instance is being deleted");
    } else {
      dsd__fail(resp, 409, "Conflict",
                "a service instance with this id exists and its dump failed\nHINT: delete it "
                "and create it again");
    }
    goto cleanup;
  }

  dsd__new_op_id("provision", op_id, sizeof(op_id));
  char now[32];
  dsd_broker_iso8601(dsd_broker_now(), now, sizeof(now));
  op = dsd_broker_op_new(b, DSD_OP_PROVISION, op_id, req->user, req->request_identity);
  inst = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:O?, s:o, s:s, s:s, s:s, s:s, s:s*}", "id",
                   id, "service_id", DSD_BROKER_SERVICE_ID, "plan_id", plan->id, "plan",
                   plan->name, "organization_guid", org, "space_guid", space, "context", ctx,
                   "parameters", dsd__params_public(p), "request_hmac", fp, "status",
                   "provisioning", "last_operation", op_id, "created_at", now, "created_by",
                   req->user);
  job = dsd__job_new(DSD_OP_PROVISION, id, op_id, plan);
  if (op == NULL || inst == NULL || job == NULL) {
    dsd__fail(resp, 500, "InternalError", "out of memory");
    goto cleanup;
  }
  if (dsd_broker_dashboard_init(b, id, inst, &err) < 0) {
    dsd__fail(resp, 500, "InternalError", "%s", dsd_err_msg(&err));
    goto cleanup;
  }
  dsd_broker_key_op(key, sizeof(key), id, op_id);
  rc = dsd_broker_state_put(b->store, key, op, &err);
  if (rc == 0) {
    dsd_broker_key_instance(key, sizeof(key), id);
    rc = dsd_broker_state_put(b->store, key, inst, &err);
  }
  if (rc == 0) {
    dsd_err_t terr = {0};
    dsd_broker_key_tombstone(key, sizeof(key), id);
    dsd_blob_delete(b->store, key, &terr);
  }
  if (rc < 0) {
    dsd__store_error(resp, &err);
    goto cleanup;
  }
  job->params = params;
  memset(&params, 0, sizeof(params));
  /* a `source` name is looked up in the space the instance is created in */
  snprintf(job->space_guid, sizeof(job->space_guid), "%s", space);
  snprintf(job->user, sizeof(job->user), "%s", req->user ? req->user : "");
  dsd_log_info("instance %s: provision %s (plan %s) by %s", id, op_id, plan->name,
               req->user ? req->user : "unknown user");
  /* every OSB 2.x version defines dashboard_url in this answer */
  dsd__resp(resp, 202, json_pack("{s:s, s:o*}", "operation", op_id, "dashboard_url",
                                 dsd_broker_dashboard_url(b, id, inst)));

cleanup:
  if (locked)
    pthread_mutex_unlock(&b->lock);
  dsd__job_submit_if_accepted(b, job, resp);
  dsd_broker_params_free(&params);
  json_decref(fp_doc);
  json_decref(inst);
  json_decref(op);
  json_decref(body);
}

/* --------------------------------------------------------------- update */

/* PATCH /v2/service_instances/:id  200 (context only), 202, 400, 404,
 * 422 AsyncRequired / ConcurrencyError. */
static void dsd__update(dsd_broker_t *b, const dsd_broker_req_t *req, const char *id,
                        dsd_broker_resp_t *resp) {
  dsd_err_t err = {0};
  dsd_broker_params_t params = {0};
  dsd_broker_job_t *job = NULL;
  json_t *inst = NULL, *op = NULL, *newop = NULL;
  char key[DSD__KEY_MAX], op_id[64];
  if (!dsd__async_ok(req, resp))
    return;
  json_t *body = dsd__parse_body(req, resp);
  if (body == NULL)
    return;
  const char *service_id = dsd__str(body, "service_id");
  if (!dsd__is(service_id, DSD_BROKER_SERVICE_ID)) {
    dsd__fail(resp, 400, "BadRequest", service_id ? "unknown service_id" : "service_id is required");
    goto cleanup_nolock;
  }
  const char *plan_id = dsd__str(body, "plan_id");
  if (plan_id != NULL && dsd_broker_plan_by_id(plan_id) == NULL) {
    dsd__fail(resp, 400, "BadRequest", "unknown plan_id\nHINT: see GET /v2/catalog");
    goto cleanup_nolock;
  }
  json_t *p = json_object_get(body, "parameters");
  json_t *ctx = json_object_get(body, "context");

  pthread_mutex_lock(&b->lock);
  int rc = dsd__load_locked(b, id, &inst, &op, &err);
  if (rc == DSD_ENOTFOUND) {
    dsd__fail(resp, 404, "NotFound", "no service instance with this id");
    goto cleanup;
  }
  if (rc < 0) {
    dsd__store_error(resp, &err);
    goto cleanup;
  }
  const dsd_broker_plan_t *plan = dsd_broker_plan_by_id(dsd__str(inst, "plan_id"));
  if (plan_id != NULL && plan != NULL && strcmp(plan_id, plan->id) != 0) {
    dsd__fail(resp, 400, "BadRequest",
              "this service does not support changing plans\nHINT: create a new instance "
              "with the other plan");
    goto cleanup;
  }
  const char *st = dsd__status(inst, op);
  char fp[65];
  json_t *fp_doc = json_pack("{s:O?}", "parameters", p);
  dsd__fingerprint(b, fp_doc, fp);
  json_decref(fp_doc);
  if (dsd__is(st, "updating") && dsd__is(dsd__str(op, "request_hmac"), fp)) {
    /* the spec: a re-sent PATCH gets 202 until the update completes */
    dsd__resp(resp, 202, json_pack("{s:s}", "operation", dsd__str(op, "id")));
    goto cleanup;
  }
  if (dsd__is(st, "provisioning") || dsd__is(st, "updating") || dsd__is(st, "deleting")) {
    dsd__fail(resp, 422, "ConcurrencyError",
              "another operation is in progress on this service instance (%s)", st);
    goto cleanup;
  }
  if (p == NULL || (json_is_object(p) && json_object_size(p) == 0)) {
    /* a rename or other context change: nothing to run */
    if (json_is_object(ctx)) {
      json_object_set(inst, "context", ctx);
      dsd_broker_key_instance(key, sizeof(key), id);
      if (dsd_broker_state_put(b->store, key, inst, &err) < 0) {
        dsd__store_error(resp, &err);
        goto cleanup;
      }
    }
    dsd__resp(resp, 200, NULL);
    goto cleanup;
  }
  if (plan == NULL || dsd_broker_params_update(b->cfg, plan, p, &params, &err) < 0) {
    dsd__fail(resp, 400, "BadRequest", "%s", plan ? dsd_err_msg(&err) : "the instance has an unknown plan");
    goto cleanup;
  }
  if (!dsd__is(st, "ready")) {
    dsd__fail(resp, 400, "BadRequest",
              "the dump of this instance failed, so there is nothing to import\nHINT: delete "
              "the instance and create it again");
    goto cleanup;
  }
  dsd__new_op_id("update", op_id, sizeof(op_id));
  newop = dsd_broker_op_new(b, DSD_OP_UPDATE, op_id, req->user, req->request_identity);
  json_t *pub = dsd__params_public(p);
  json_object_set_new(newop, "parameters", pub);
  json_object_set_new(newop, "request_hmac", json_string(fp));
  job = dsd__job_new(DSD_OP_UPDATE, id, op_id, plan);
  if (newop == NULL || job == NULL) {
    dsd__fail(resp, 500, "InternalError", "out of memory");
    goto cleanup;
  }
  json_object_set_new(inst, "status", json_string("updating"));
  json_object_set_new(inst, "last_operation", json_string(op_id));
  if (json_is_object(ctx))
    json_object_set(inst, "context", ctx);
  dsd_broker_key_op(key, sizeof(key), id, op_id);
  rc = dsd_broker_state_put(b->store, key, newop, &err);
  if (rc == 0) {
    dsd_broker_key_instance(key, sizeof(key), id);
    rc = dsd_broker_state_put(b->store, key, inst, &err);
  }
  if (rc < 0) {
    dsd__store_error(resp, &err);
    goto cleanup;
  }
  job->params = params;
  memset(&params, 0, sizeof(params));
  /* a `target` name is looked up in the instance's space: the PATCH's
   * context says where the instance is now (CF sends it), else the space
   * recorded at provision */
  const char *space = dsd__str(ctx, "space_guid");
  if (space == NULL)
    space = dsd__str(inst, "space_guid");
  snprintf(job->space_guid, sizeof(job->space_guid), "%s", space ? space : "");
  snprintf(job->user, sizeof(job->user), "%s", req->user ? req->user : "");
  dsd_log_info("instance %s: update %s by %s", id, op_id, req->user ? req->user : "unknown user");
  dsd__resp(resp, 202, json_pack("{s:s}", "operation", op_id));

cleanup:
  pthread_mutex_unlock(&b->lock);
cleanup_nolock:
  dsd__job_submit_if_accepted(b, job, resp);
  dsd_broker_params_free(&params);
  json_decref(inst);
  json_decref(op);
  json_decref(newop);
  json_decref(body);
}

/* ---------------------------------------------------------- deprovision */

/* DELETE /v2/service_instances/:id  202, 400, 410 Gone, 422 AsyncRequired.
 * A DELETE while a provision or update runs is the user's cancel. */
static void dsd__deprovision(dsd_broker_t *b, const dsd_broker_req_t *req, const char *id,
                             dsd_broker_resp_t *resp) {
  dsd_err_t err = {0};
  dsd_broker_job_t *job = NULL;
  json_t *inst = NULL, *op = NULL, *newop = NULL;
  char key[DSD__KEY_MAX], op_id[64];
  if (!dsd__async_ok(req, resp))
    return;
  const dsd_broker_plan_t *plan = dsd__check_ids(req->q_service_id, req->q_plan_id, resp);
  if (plan == NULL)
    return;
  pthread_mutex_lock(&b->lock);
  int rc = dsd__load_locked(b, id, &inst, &op, &err);
  if (rc == DSD_ENOTFOUND) {
    dsd__resp(resp, 410, NULL);
    goto cleanup;
  }
  if (rc < 0) {
    dsd__store_error(resp, &err);
    goto cleanup;
  }
  if (dsd__is(dsd__str(op, "type"), "deprovision") && dsd__in_progress(op)) {
    dsd__resp(resp, 202, json_pack("{s:s}", "operation", dsd__str(op, "id")));
    goto cleanup;
  }
  if (op != NULL && dsd__in_progress(op)) {
    json_object_set_new(inst, "cancels_operation", json_string(dsd__str(op, "id")));
    dsd_broker_job_cancel_locked(b, id);
  } else {
    json_object_del(inst, "cancels_operation");
  }
  dsd__new_op_id("deprovision", op_id, sizeof(op_id));
  newop = dsd_broker_op_new(b, DSD_OP_DEPROVISION, op_id, req->user, req->request_identity);
  job = dsd__job_new(DSD_OP_DEPROVISION, id, op_id, plan);
  if (newop == NULL || job == NULL) {
    dsd__fail(resp, 500, "InternalError", "out of memory");
    goto cleanup;
  }
  json_object_set_new(inst, "deleting", json_true());
  json_object_set_new(inst, "last_operation", json_string(op_id));
  dsd_broker_key_op(key, sizeof(key), id, op_id);
  rc = dsd_broker_state_put(b->store, key, newop, &err);
  if (rc == 0) {
    dsd_broker_key_instance(key, sizeof(key), id);
    rc = dsd_broker_state_put(b->store, key, inst, &err);
  }
  if (rc < 0) {
    dsd__store_error(resp, &err);
    goto cleanup;
  }
  dsd_log_info("instance %s: deprovision %s by %s", id, op_id,
               req->user ? req->user : "unknown user");
  dsd__resp(resp, 202, json_pack("{s:s}", "operation", op_id));
cleanup:
  pthread_mutex_unlock(&b->lock);
  dsd__job_submit_if_accepted(b, job, resp);
  json_decref(inst);
  json_decref(op);
  json_decref(newop);
}

/* ------------------------------------------------- fetch, last_operation */

/* GET /v2/service_instances/:id  200, 404 (absent or provisioning),
 * 422 ConcurrencyError (being updated or deleted). */
static void dsd__fetch(dsd_broker_t *b, const dsd_broker_req_t *req, const char *id,
                       dsd_broker_resp_t *resp) {
  dsd_err_t err = {0};
  json_t *inst = NULL, *op = NULL;
  pthread_mutex_lock(&b->lock);
  int rc = dsd__load_locked(b, id, &inst, &op, &err);
  pthread_mutex_unlock(&b->lock);
  if (rc == DSD_ENOTFOUND) {
    dsd__fail(resp, 404, "NotFound", "no service instance with this id");
    goto cleanup;
  }
  if (rc < 0) {
    dsd__store_error(resp, &err);
    goto cleanup;
  }
  const char *st = dsd__status(inst, op);
  if (dsd__is(st, "provisioning")) {
    dsd__fail(resp, 404, "NotFound", "this service instance is still being provisioned");
    goto cleanup;
  }
  if (dsd__is(st, "updating") || dsd__is(st, "deleting")) {
    dsd__fail(resp, 422, "ConcurrencyError", "this service instance is being %s",
              dsd__is(st, "updating") ? "updated" : "deleted");
    goto cleanup;
  }
  json_t *out = json_pack("{s:s, s:s, s:O, s:o*}", "service_id", dsd__str(inst, "service_id"),
                          "plan_id", dsd__str(inst, "plan_id"), "parameters",
                          json_object_get(inst, "parameters") ?: json_object(), "dashboard_url",
                          dsd_broker_dashboard_url(b, id, inst));
  dsd__resp(resp, 200, out);
cleanup:
  json_decref(inst);
  json_decref(op);
}

/* GET /v2/service_instances/:id/last_operation  200, 400, 404, 410 Gone
 * (deprovisioned). */
static void dsd__last_operation(dsd_broker_t *b, const dsd_broker_req_t *req, const char *id,
                                dsd_broker_resp_t *resp) {
  dsd_err_t err = {0};
  json_t *inst = NULL, *op = NULL, *tomb = NULL;
  char key[DSD__KEY_MAX];
  if (req->q_service_id != NULL && strcmp(req->q_service_id, DSD_BROKER_SERVICE_ID) != 0) {
    dsd__fail(resp, 400, "BadRequest", "unknown service_id");
    return;
  }
  if (req->q_plan_id != NULL && dsd_broker_plan_by_id(req->q_plan_id) == NULL) {
    dsd__fail(resp, 400, "BadRequest", "unknown plan_id");
    return;
  }
  if (req->q_operation != NULL && !dsd_broker_id_valid(req->q_operation)) {
    dsd__fail(resp, 400, "BadRequest", "malformed operation");
    return;
  }
  pthread_mutex_lock(&b->lock);
  int rc = dsd__load_locked(b, id, &inst, &op, &err);
  if (rc == 0 && req->q_operation != NULL && !dsd__is(dsd__str(op, "id"), req->q_operation)) {
    /* an older operation of this instance */
    json_decref(op);
    op = NULL;
    dsd_broker_key_op(key, sizeof(key), id, req->q_operation);
    rc = dsd_broker_state_get(b->store, key, &op, &err);
    if (rc == 0)
      dsd_broker_op_recover_locked(b, id, NULL, op);
    else if (rc == DSD_ENOTFOUND) {
      /* a deprovision deletes the operation records before the instance
       * object; its tombstone is written first */
      dsd_broker_key_tombstone(key, sizeof(key), id);
      rc = dsd_broker_state_get(b->store, key, &tomb, &err);
      pthread_mutex_unlock(&b->lock);
      if (rc == 0)
        dsd__resp(resp, 410, NULL);
      else if (rc == DSD_ENOTFOUND)
        dsd__fail(resp, 400, "BadRequest", "unknown operation for this service instance");
      else
        dsd__store_error(resp, &err);
      goto cleanup;
    }
  } else if (rc == DSD_ENOTFOUND) {
    dsd_broker_key_tombstone(key, sizeof(key), id);
    rc = dsd_broker_state_get(b->store, key, &tomb, &err);
  }
  pthread_mutex_unlock(&b->lock);
  if (inst == NULL && tomb != NULL) {
    dsd__resp(resp, 410, NULL);
    goto cleanup;
  }
  if (inst == NULL && (rc == 0 || rc == DSD_ENOTFOUND)) {
    dsd__fail(resp, 404, "NotFound", "no service instance with this id");
    goto cleanup;
  }
  if (rc < 0) {
    dsd__store_error(resp, &err);
    goto cleanup;
  }
  if (op == NULL) {
    dsd__fail(resp, 404, "NotFound", "this service instance has no recorded operation");
    goto cleanup;
  }
  const char *state = dsd__str(op, "state");
  json_t *out = json_pack("{s:s, s:s}", "state", state ?: "failed", "description",
                          dsd__str(op, "description") ?: "");
  if (req->minor >= 16 && dsd__is(state, "failed") &&
      !dsd__is(dsd__str(op, "type"), "provision")) {
    /* a failed import or delete leaves the dump as it was */
    json_object_set_new(out, "instance_usable", json_true());
    if (dsd__is(dsd__str(op, "type"), "update"))
      json_object_set_new(out, "update_repeatable", json_true());
  }
  if (dsd__is(state, "in progress"))
    resp->retry_after = DSD__RETRY_AFTER_S;
  dsd__resp(resp, 200, out);
cleanup:
  json_decref(inst);
  json_decref(op);
  json_decref(tomb);
}

/* ------------------------------------------------------------- bindings */

/* The binding password: derived, not stored, so an identical repeat and
 * GET can return it again while the store only holds a salted hash. */
static void dsd__binding_password(dsd_broker_t *b, const char *id, const char *bid,
                                  const char *salt, char out[65]) {
  unsigned char mac[32];
  unsigned int len = 0;
  char msg[700];
  int n = snprintf(msg, sizeof(msg), "dsd-binding\n%s\n%s\n%s", id, bid, salt);
  const char *k = b->cfg->password;
  HMAC(EVP_sha256(), k, (int)strlen(k), (const unsigned char *)msg, (size_t)n, mac, &len);
  for (int i = 0; i < 32; i++)
    snprintf(out + 2 * i, 3, "%02x", mac[i]);
  OPENSSL_cleanse(mac, sizeof(mac));
}

static void dsd__sha256_hex(const char *a, const char *bstr, char out[65]) {
  unsigned char md[32];
  EVP_MD_CTX *c = EVP_MD_CTX_new();
  EVP_DigestInit_ex(c, EVP_sha256(), NULL);
  EVP_DigestUpdate(c, a, strlen(a));
  EVP_DigestUpdate(c, bstr, strlen(bstr));
  EVP_DigestFinal_ex(c, md, NULL);
  EVP_MD_CTX_free(c);
  for (int i = 0; i < 32; i++)
    snprintf(out + 2 * i, 3, "%02x", md[i]);
}

static json_t *dsd__credentials(dsd_broker_t *b, const char *id, const json_t *inst,
                                const json_t *binding) {
  char pw[65];
  const char *bid = dsd__str(binding, "id");
  dsd__binding_password(b, id, bid, dsd__str(binding, "salt"), pw);
  json_t *dump = json_object_get(inst, "dump");
  const char *key = dsd__str(dump, "key") ?: "";
  const char *slash = strrchr(key, '/');
  char uri[1024];
  snprintf(uri, sizeof(uri), "%s/v1/dumps/%s/download", b->cfg->public_url, id);
  json_t *c = json_pack("{s:s, s:s, s:s, s:s, s:s, s:O?, s:s?, s:s, s:s?, s:O?}", "uri", uri,
                        "username", bid, "password", pw, "filename", slash ? slash + 1 : key,
                        "format", dsd__str(dump, "format") ?: "tar+zstd", "size",
                        json_object_get(dump, "size"), "sha256", dsd__str(dump, "sha256"),
                        "dialect", dsd__str(inst, "plan") ?: "", "created_at",
                        dsd__str(dump, "created_at"), "tables", json_object_get(dump, "tables"));
  OPENSSL_cleanse(pw, sizeof(pw));
  return c;
}

/* PUT .../service_bindings/:bid  200 identical, 201 created, 400, 404,
 * 409 different, 422 ConcurrencyError (dump not finished). */
static void dsd__bind(dsd_broker_t *b, const dsd_broker_req_t *req, const char *id,
                      const char *bid, dsd_broker_resp_t *resp) {
  dsd_err_t err = {0};
  json_t *inst = NULL, *op = NULL, *binding = NULL, *fp_doc = NULL;
  char key[DSD__KEY_MAX], fp[65];
  json_t *body = dsd__parse_body(req, resp);
  if (body == NULL)
    return;
  const dsd_broker_plan_t *plan =
      dsd__check_ids(dsd__str(body, "service_id"), dsd__str(body, "plan_id"), resp);
  if (plan == NULL)
    goto cleanup_nolock;
  json_t *p = json_object_get(body, "parameters");
  if (p != NULL && !json_is_null(p)) {
    if (!json_is_object(p)) {
      dsd__fail(resp, 400, "BadRequest", "parameters must be a JSON object");
      goto cleanup_nolock;
    }
    const char *k;
    json_t *v;
    json_object_foreach(p, k, v) {
      dsd__fail(resp, 400, "BadRequest",
                "unknown parameter '%.64s'\nHINT: bindings take no parameters", k);
      goto cleanup_nolock;
    }
  }
  json_t *br = json_object_get(body, "bind_resource");
  fp_doc = json_pack("{s:s, s:s, s:O?, s:O?}", "plan_id", plan->id, "app_guid",
                     json_object_get(body, "app_guid") ?: json_null(), "bind_resource", br,
                     "parameters", p);
  dsd__fingerprint(b, fp_doc, fp);

  pthread_mutex_lock(&b->lock);
  int rc = dsd__load_locked(b, id, &inst, &op, &err);
  if (rc == DSD_ENOTFOUND) {
    dsd__fail(resp, 404, "NotFound", "no service instance with this id");
    goto cleanup;
  }
  if (rc < 0) {
    dsd__store_error(resp, &err);
    goto cleanup;
  }
  if (!dsd__is(dsd__str(inst, "plan_id"), plan->id)) {
    dsd__fail(resp, 400, "BadRequest", "plan_id does not match the service instance's plan");
    goto cleanup;
  }
  dsd_broker_key_binding(key, sizeof(key), id, bid);
  rc = dsd_broker_state_get(b->store, key, &binding, &err);
  if (rc < 0 && rc != DSD_ENOTFOUND) {
    dsd__store_error(resp, &err);
    goto cleanup;
  }
  if (binding != NULL) {
    const char *old = dsd__str(binding, "request_hmac");
    if (old == NULL || CRYPTO_memcmp(old, fp, 64) != 0)
      dsd__fail(resp, 409, "Conflict",
                "a service binding with this id already exists with different attributes");
    else
      dsd__resp(resp, 200, json_pack("{s:o}", "credentials", dsd__credentials(b, id, inst, binding)));
    goto cleanup;
  }
  const char *st = dsd__status(inst, op);
  if (dsd__is(st, "provisioning") || dsd__is(st, "deleting")) {
    dsd__fail(resp, 422, "ConcurrencyError",
              "the dump of this service instance is %s\nHINT: bind once 'cf service' shows "
              "it succeeded",
              dsd__is(st, "deleting") ? "being deleted" : "still running");
    goto cleanup;
  }
  if (json_object_get(inst, "dump") == NULL) {
    dsd__fail(resp, 400, "BadRequest",
              "the dump of this service instance failed, so there is nothing to bind to"
              "\nHINT: delete the instance and create it again");
    goto cleanup;
  }
  char salt[33], pw[65], hash[65], now[32];
  if (dsd_broker_random_hex(salt, 16) < 0) {
    dsd__fail(resp, 500, "InternalError", "no random numbers available");
    goto cleanup;
  }
  dsd__binding_password(b, id, bid, salt, pw);
  dsd__sha256_hex(salt, pw, hash);
  OPENSSL_cleanse(pw, sizeof(pw));
  dsd_broker_iso8601(dsd_broker_now(), now, sizeof(now));
  binding = json_pack("{s:s, s:s, s:s, s:O?, s:O?, s:s, s:s, s:s, s:s, s:s*}", "id", bid,
                      "instance_id", id, "plan_id", plan->id, "app_guid",
                      json_object_get(body, "app_guid"), "bind_resource", br, "request_hmac", fp,
                      "salt", salt, "password_sha256", hash, "created_at", now, "created_by",
                      req->user);
  rc = dsd_broker_state_put(b->store, key, binding, &err);
  if (rc < 0) {
    dsd__store_error(resp, &err);
    goto cleanup;
  }
  dsd_log_info("instance %s: binding %s created by %s", id, bid,
               req->user ? req->user : "unknown user");
  dsd__resp(resp, 201, json_pack("{s:o}", "credentials", dsd__credentials(b, id, inst, binding)));
cleanup:
  pthread_mutex_unlock(&b->lock);
cleanup_nolock:
  json_decref(inst);
  json_decref(op);
  json_decref(binding);
  json_decref(fp_doc);
  json_decref(body);
}

/* DELETE .../service_bindings/:bid  200 {}, 400, 410 Gone. Synchronous. */
static void dsd__unbind(dsd_broker_t *b, const dsd_broker_req_t *req, const char *id,
                        const char *bid, dsd_broker_resp_t *resp) {
  dsd_err_t err = {0};
  json_t *binding = NULL;
  char key[DSD__KEY_MAX];
  if (dsd__check_ids(req->q_service_id, req->q_plan_id, resp) == NULL)
    return;
  dsd_broker_key_binding(key, sizeof(key), id, bid);
  pthread_mutex_lock(&b->lock);
  int rc = dsd_broker_state_get(b->store, key, &binding, &err);
  if (rc == 0)
    rc = dsd_blob_delete(b->store, key, &err);
  pthread_mutex_unlock(&b->lock);
  if (rc == DSD_ENOTFOUND)
    dsd__resp(resp, 410, NULL);
  else if (rc < 0)
    dsd__store_error(resp, &err);
  else {
    dsd_log_info("instance %s: binding %s deleted", id, bid);
    dsd__resp(resp, 200, NULL);
  }
  json_decref(binding);
}

/* GET .../service_bindings/:bid (200, 404) and its last_operation (200
 * succeeded, 404): bindings are synchronous, so a binding that exists has
 * finished. */
static void dsd__binding_get(dsd_broker_t *b, const dsd_broker_req_t *req, const char *id,
                             const char *bid, bool last_op, dsd_broker_resp_t *resp) {
  dsd_err_t err = {0};
  json_t *inst = NULL, *op = NULL, *binding = NULL;
  char key[DSD__KEY_MAX];
  pthread_mutex_lock(&b->lock);
  int rc = dsd__load_locked(b, id, &inst, &op, &err);
  if (rc == 0) {
    dsd_broker_key_binding(key, sizeof(key), id, bid);
    rc = dsd_broker_state_get(b->store, key, &binding, &err);
  }
  pthread_mutex_unlock(&b->lock);
  if (rc == DSD_ENOTFOUND)
    dsd__fail(resp, 404, "NotFound", "no service binding with this id");
  else if (rc < 0)
    dsd__store_error(resp, &err);
  else if (last_op)
    dsd__resp(resp, 200, json_pack("{s:s, s:s}", "state", "succeeded", "description", "bound"));
  else
    dsd__resp(resp, 200, json_pack("{s:o, s:{}}", "credentials",
                                   dsd__credentials(b, id, inst, binding), "parameters"));
  json_decref(inst);
  json_decref(op);
  json_decref(binding);
}

/* ---------------------------------------------------------------- route */

void dsd_broker_handle(dsd_broker_t *b, const dsd_broker_req_t *req, dsd_broker_resp_t *resp) {
  static const char inst_prefix[] = "/v2/service_instances/";
  static const char bind_part[] = "/service_bindings/";
  static const char lastop[] = "/last_operation";
  char id[1024] = "", bid[1024] = "";
  bool is_lastop = false, is_binding = false;
  const char *m = req->method;
  resp->status = 0;
  resp->body = NULL;
  resp->retry_after = 0;

  if (strcmp(req->path, "/v2/catalog") == 0) {
    if (strcmp(m, "GET") != 0)
      dsd__fail(resp, 405, "MethodNotAllowed", "use GET");
    else
      dsd__resp(resp, 200, dsd_broker_catalog(req->minor));
    return;
  }
  if (strncmp(req->path, inst_prefix, sizeof(inst_prefix) - 1) != 0) {
    dsd__fail(resp, 404, "NotFound", "no such endpoint");
    return;
  }
  const char *rest = req->path + sizeof(inst_prefix) - 1;
  size_t rlen = strlen(rest);
  if (rlen >= sizeof(id)) {
    dsd__fail(resp, 400, "BadRequest", "the id is longer than 255 characters");
    return;
  }
  if (rlen > sizeof(lastop) - 1 && strcmp(rest + rlen - (sizeof(lastop) - 1), lastop) == 0) {
    is_lastop = true;
    rlen -= sizeof(lastop) - 1;
  }
  const char *bp = strstr(rest, bind_part);
  if (bp != NULL && (size_t)(bp - rest) < rlen) {
    is_binding = true;
    memcpy(id, rest, (size_t)(bp - rest));
    id[bp - rest] = '\0';
    const char *bs = bp + sizeof(bind_part) - 1;
    size_t blen = rlen - (size_t)(bs - rest);
    memcpy(bid, bs, blen);
    bid[blen] = '\0';
  } else {
    memcpy(id, rest, rlen);
    id[rlen] = '\0';
  }
  if (!dsd_broker_id_valid(id) || (is_binding && !dsd_broker_id_valid(bid))) {
    dsd__fail(resp, 400, "BadRequest",
              "malformed %s id: use 1 to 255 characters from A-Z a-z 0-9 . _ -",
              is_binding && dsd_broker_id_valid(id) ? "binding" : "instance");
    return;
  }
  if (is_binding) {
    if (is_lastop && strcmp(m, "GET") == 0)
      dsd__binding_get(b, req, id, bid, true, resp);
    else if (is_lastop)
      dsd__fail(resp, 405, "MethodNotAllowed", "use GET");
    else if (strcmp(m, "PUT") == 0)
      dsd__bind(b, req, id, bid, resp);
    else if (strcmp(m, "DELETE") == 0)
      dsd__unbind(b, req, id, bid, resp);
    else if (strcmp(m, "GET") == 0)
      dsd__binding_get(b, req, id, bid, false, resp);
    else
      dsd__fail(resp, 405, "MethodNotAllowed", "use GET, PUT or DELETE");
    return;
  }
  if (is_lastop) {
    if (strcmp(m, "GET") == 0)
      dsd__last_operation(b, req, id, resp);
    else
      dsd__fail(resp, 405, "MethodNotAllowed", "use GET");
  } else if (strcmp(m, "PUT") == 0)
    dsd__provision(b, req, id, resp);
  else if (strcmp(m, "PATCH") == 0)
    dsd__update(b, req, id, resp);
  else if (strcmp(m, "DELETE") == 0)
    dsd__deprovision(b, req, id, resp);
  else if (strcmp(m, "GET") == 0)
    dsd__fetch(b, req, id, resp);
  else
    dsd__fail(resp, 405, "MethodNotAllowed", "use GET, PUT, PATCH or DELETE");
  if (resp->body == NULL)
    dsd__resp(resp, 500, NULL);
}

/* dsd_broker_download_open is in download.c, with the download endpoint. */
