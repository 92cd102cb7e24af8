/*
 * tasks.c - the task API for CLI plugins and automation, and the paged
 * operation log it reads.
 *
 *   POST   /v1/instances/:id/imports  {"target"|"target_uri", "clean"}
 *          -> 202 {"task_id", "status"}
 *   GET    /v1/tasks/:task_id?log_offset=N[&log_limit=M]
 *          -> 200 {"task_id", "instance_id", "type", "status", "description",
 *                  "log": [{"at", "line"}], "next_log_offset", ...}
 *   DELETE /v1/tasks/:task_id  -> 202 (cancel asked) or 409 (not running)
 *
 * A task is an operation of an instance: task_id is "<instance id>~<op id>"
 * ('~' is not in the id alphabet, so the split is unambiguous). An import
 * is an OSB update: the request is handed to dsd_broker_handle() as the
 * PATCH a platform would send, so validation, name resolution through the
 * Cloud Controller and the concurrency rules (422 ConcurrencyError while
 * an operation runs) are the same code. Requests carry the broker's basic
 * credentials or the instance's dashboard token (Bearer or ?token=); they
 * carry no originating identity, so no space developer check is made (the
 * token holder acts for the instance's owner).
 *
 * docs/openapi.json describes these endpoints; the integration test
 * validates responses against it.
 *
 * The operation log: jobs.c hands new lines to
 * dsd_broker_oplog_append_locked, which appends them to numbered pages of
 * DSD_BROKER_LOG_PAGE lines (instances/<id>/logs/<op>/000001.json, ...) and
 * counts them in the operation record, so the whole log is kept and a
 * reader pages through it by absolute line offset. Only the last page is
 * ever rewritten.
 */
#include <stdlib.h>
#include <string.h>

#include <microhttpd.h>
#include <openssl/crypto.h>

#include "broker/broker.h"

#define DSD__LOG_RECENT 20    /* lines also kept in the operation record */
#define DSD__LOG_LIMIT 1000   /* most lines one GET returns */

/* ----------------------------------------------------------- the log */

static void dsd__page_key(char *buf, size_t cap, const char *id, const char *op_id,
                          size_t page) {
  snprintf(buf, cap, "instances/%s/logs/%s/%06zu.json", id, op_id, page);
}

int dsd_broker_oplog_append_locked(dsd_broker_t *b, const char *id, const char *op_id,
                                   json_t *op, const json_t *lines, dsd_err_t *err) {
  char key[700];
  json_t *page = NULL;
  int rc = 0;
  size_t total = (size_t)json_integer_value(json_object_get(op, "log_lines"));
  size_t n = json_array_size(lines);
  if (n == 0)
    return 0;
  size_t pno = total / DSD_BROKER_LOG_PAGE + 1;
  if (total % DSD_BROKER_LOG_PAGE != 0) {
    dsd__page_key(key, sizeof(key), id, op_id, pno);
    rc = dsd_broker_state_get(b->store, key, &page, err);
    if (rc < 0)
      goto cleanup;
  }
  if (page == NULL)
    page = json_pack("{s:[]}", "lines");
  json_t *arr = json_object_get(page, "lines");
  for (size_t i = 0; i < n; i++) {
    json_array_append(arr, json_array_get(lines, i));
    if (json_array_size(arr) == DSD_BROKER_LOG_PAGE || i == n - 1) {
      dsd__page_key(key, sizeof(key), id, op_id, pno);
      rc = dsd_broker_state_put(b->store, key, page, err);
      if (rc < 0)
        goto cleanup;
      if (json_array_size(arr) == DSD_BROKER_LOG_PAGE) {
        json_array_clear(arr);
        pno++;
      }
    }
  }
  json_object_set_new(op, "log_lines", json_integer((json_int_t)(total + n)));
  json_t *recent = json_object_get(op, "log");
  if (!json_is_array(recent)) {
    recent = json_array();
    json_object_set_new(op, "log", recent);
  }
  json_array_extend(recent, (json_t *)lines);
  while (json_array_size(recent) > DSD__LOG_RECENT)
    json_array_remove(recent, 0);
cleanup:
  json_decref(page);
  return rc;
}

int dsd_broker_oplog_read(dsd_broker_t *b, const char *id, const char *op_id, const json_t *op,
                          size_t offset, size_t max, json_t **lines, size_t *next,
                          dsd_err_t *err) {
  char key[700];
  json_t *page = NULL;
  int rc = 0;
  *lines = json_array();
  *next = offset;
  if (*lines == NULL)
    return dsd_err_set(err, DSD_ENOMEM, "out of memory");
  json_t *count = json_object_get(op, "log_lines");
  if (count == NULL) {
    /* a record written before the log was paged: its (bounded) array */
    json_t *old = json_object_get(op, "log");
    for (size_t i = offset; i < json_array_size(old) && json_array_size(*lines) < max; i++)
      json_array_append(*lines, json_array_get(old, i));
    *next = offset + json_array_size(*lines);
    return 0;
  }
  size_t total = (size_t)json_integer_value(count);
  while (*next < total && json_array_size(*lines) < max) {
    size_t pno = *next / DSD_BROKER_LOG_PAGE + 1;
    dsd__page_key(key, sizeof(key), id, op_id, pno);
    json_decref(page);
    page = NULL;
    rc = dsd_broker_state_get(b->store, key, &page, err);
    if (rc == DSD_ENOTFOUND) {
      rc = 0;
      break;
    }
    if (rc < 0)
      goto cleanup;
    json_t *arr = json_object_get(page, "lines");
    size_t idx = *next % DSD_BROKER_LOG_PAGE;
    if (idx >= json_array_size(arr))
      break;
    for (; idx < json_array_size(arr) && json_array_size(*lines) < max; idx++) {
      json_array_append(*lines, json_array_get(arr, idx));
      (*next)++;
    }
  }
cleanup:
  json_decref(page);
  return rc;
}

/* ---------------------------------------------------------- shared */

int dsd__broker_instance_load(dsd_broker_t *b, const char *id, json_t **inst, json_t **op,
                              dsd_err_t *err) {
  char key[700];
  *inst = *op = NULL;
  if (!dsd_broker_id_valid(id))
    return DSD_ENOTFOUND;
  pthread_mutex_lock(&b->lock);
  dsd_broker_key_instance(key, sizeof(key), id);
  int rc = dsd_broker_state_get(b->store, key, inst, err);
  const char *op_id = json_string_value(json_object_get(*inst, "last_operation"));
  if (rc == 0 && op_id != NULL && dsd_broker_id_valid(op_id)) {
    dsd_broker_key_op(key, sizeof(key), id, op_id);
    rc = dsd_broker_state_get(b->store, key, op, err);
    if (rc == 0)
      dsd_broker_op_recover_locked(b, id, *inst, *op);
    else if (rc == DSD_ENOTFOUND)
      rc = 0;
  }
  pthread_mutex_unlock(&b->lock);
  if (rc < 0) {
    json_decref(*inst);
    json_decref(*op);
    *inst = *op = NULL;
  }
  return rc;
}

bool dsd__broker_access_ok(dsd_broker_t *b, struct MHD_Connection *c, const char *id,
                           const json_t *inst) {
  const char *auth = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
  if (auth != NULL && strncasecmp(auth, "Basic ", 6) == 0)
    return dsd_broker_auth_ok(b->cfg, auth);
  const char *token = dsd__broker_request_token(c);
  return token != NULL && inst != NULL && dsd_broker_dashboard_token_ok(b, id, inst, token);
}

int dsd_broker_cancel_request(dsd_broker_t *b, const char *id, const char *op_id,
                              dsd_err_t *err) {
  char key[700];
  json_t *inst = NULL, *op = NULL;
  int rc = 0;
  pthread_mutex_lock(&b->lock);
  dsd_broker_key_instance(key, sizeof(key), id);
  rc = dsd_broker_state_get(b->store, key, &inst, err);
  if (rc == DSD_ENOTFOUND) {
    rc = dsd_err_set(err, DSD_ENOTFOUND, "no service instance with this id");
    goto cleanup;
  }
  if (rc < 0)
    goto cleanup;
  if (op_id == NULL)
    op_id = json_string_value(json_object_get(inst, "last_operation"));
  if (op_id == NULL || !dsd_broker_id_valid(op_id)) {
    rc = dsd_err_set(err, DSD_EBUSY, "no operation is running on this instance");
    goto cleanup;
  }
  dsd_broker_key_op(key, sizeof(key), id, op_id);
  rc = dsd_broker_state_get(b->store, key, &op, err);
  if (rc == DSD_ENOTFOUND) {
    rc = dsd_err_set(err, DSD_ENOTFOUND, "no such task");
    goto cleanup;
  }
  if (rc < 0)
    goto cleanup;
  dsd_broker_op_recover_locked(b, id, inst, op);
  const char *state = json_string_value(json_object_get(op, "state"));
  const char *type = json_string_value(json_object_get(op, "type"));
  if (state == NULL || strcmp(state, "in progress") != 0 || type == NULL ||
      strcmp(type, "deprovision") == 0 || json_is_true(json_object_get(inst, "deleting"))) {
    rc = dsd_err_set(err, DSD_EBUSY, "the operation is not running (%s)",
                     state ? state : "unknown");
    goto cleanup;
  }
  /* recorded for a broker process that runs the job elsewhere: its lease
   * renewer reads it */
  json_object_set_new(inst, "cancel_requested", json_string(op_id));
  dsd_broker_key_instance(key, sizeof(key), id);
  rc = dsd_broker_state_put(b->store, key, inst, err);
  if (rc < 0)
    goto cleanup;
  dsd_broker_job_t *lists[2] = {b->active, b->queue};
  for (int l = 0; l < 2; l++)
    for (dsd_broker_job_t *j = lists[l]; j; j = j->next)
      if (strcmp(j->instance_id, id) == 0 && strcmp(j->op_id, op_id) == 0) {
        atomic_store(&j->cancel_by_request, 1);
        atomic_store(&j->cancel, 1);
      }
  dsd_log_info("instance %s: cancel of operation %s requested", id, op_id);
cleanup:
  pthread_mutex_unlock(&b->lock);
  json_decref(inst);
  json_decref(op);
  return rc;
}

/* ----------------------------------------------------------- endpoints */

static int dsd__unauthorized(struct MHD_Connection *c) {
  return dsd__broker_send_error(c, 401, "Unauthorized",
                                "missing or wrong credentials\nHINT: use the broker's basic "
                                "credentials or the instance's dashboard token (Bearer)");
}

/* POST /v1/instances/:id/imports */
static int dsd__imports(dsd_broker_t *b, struct MHD_Connection *c, const char *id,
                        const char *body, size_t body_len) {
  dsd_err_t err = {0};
  json_t *inst = NULL, *op = NULL, *doc = NULL, *patch = NULL;
  char *text = NULL, path[400], task[400];
  dsd_broker_resp_t resp = {0};
  int status = 0;
  int rc = dsd__broker_instance_load(b, id, &inst, &op, &err);
  if (rc < 0 && rc != DSD_ENOTFOUND) {
    status = dsd__broker_send_error(c, 500, "InternalError", dsd_err_msg(&err));
    goto cleanup;
  }
  /* authenticate before saying whether the instance exists */
  if (!dsd__broker_access_ok(b, c, id, inst)) {
    status = dsd__unauthorized(c);
    goto cleanup;
  }
  if (inst == NULL) {
    status = dsd__broker_send_error(c, 404, "NotFound", "no service instance with this id");
    goto cleanup;
  }
  json_error_t jerr;
  doc = body && body_len ? json_loadb(body, body_len, JSON_REJECT_DUPLICATES, &jerr) : NULL;
  if (!json_is_object(doc)) {
    status = dsd__broker_send_error(c, 400, "BadRequest",
                                    "the request body must be a JSON object with target or "
                                    "target_uri");
    goto cleanup;
  }
  if (json_object_get(doc, "target") == NULL && json_object_get(doc, "target_uri") == NULL) {
    status = dsd__broker_send_error(c, 400, "BadRequest",
                                    "target or target_uri is required\nHINT: name the service "
                                    "instance to import into");
    goto cleanup;
  }
  patch = json_pack("{s:s, s:O}", "service_id", DSD_BROKER_SERVICE_ID, "parameters", doc);
  text = patch ? json_dumps(patch, JSON_COMPACT) : NULL;
  if (text == NULL) {
    status = dsd__broker_send_error(c, 500, "InternalError", "out of memory");
    goto cleanup;
  }
  snprintf(path, sizeof(path), "/v2/service_instances/%s", id);
  dsd_broker_req_t req = {.method = "PATCH", .path = path, .body = text,
                          .body_len = strlen(text), .minor = 17,
                          .q_accepts_incomplete = "true"};
  dsd_broker_handle(b, &req, &resp);
  if (resp.status == 202) {
    const char *op_id = json_string_value(json_object_get(resp.body, "operation"));
    snprintf(task, sizeof(task), "%s~%s", id, op_id ? op_id : "");
    json_t *out = json_pack("{s:s, s:s}", "task_id", task, "status", "in progress");
    status = dsd__broker_send_json(c, 202, out);
    json_decref(out);
  } else if (resp.status == 200) {
    /* not reached with a target: the update path answers 200 only to a
     * context change */
    status = dsd__broker_send_error(c, 400, "BadRequest", "nothing to import");
  } else {
    status = dsd__broker_send_json(c, resp.status, resp.body);
  }
cleanup:
  if (text != NULL) {
    /* a target_uri carries a password */
    OPENSSL_cleanse(text, strlen(text));
    free(text);
  }
  json_decref(resp.body);
  json_decref(patch);
  json_decref(doc);
  json_decref(inst);
  json_decref(op);
  return status;
}

static bool dsd__parse_size(const char *s, size_t *out) {
  if (s == NULL)
    return true;
  if (*s < '0' || *s > '9' || strlen(s) > 12)
    return false;
  char *end = NULL;
  unsigned long long v = strtoull(s, &end, 10);
  if (*end != '\0')
    return false;
  *out = (size_t)v;
  return true;
}

/* GET and DELETE /v1/tasks/:task_id */
static int dsd__task(dsd_broker_t *b, struct MHD_Connection *c, const char *task,
                     const char *method) {
  dsd_err_t err = {0};
  json_t *inst = NULL, *lastop = NULL, *op = NULL, *lines = NULL, *out = NULL;
  char id[300], op_id[300], key[700];
  int status = 0;
  const char *tilde = strchr(task, '~');
  if (tilde == NULL || (size_t)(tilde - task) >= sizeof(id) || strlen(tilde + 1) >= sizeof(op_id)) {
    return dsd__broker_send_error(c, 404, "NotFound", "no such task");
  }
  memcpy(id, task, (size_t)(tilde - task));
  id[tilde - task] = '\0';
  snprintf(op_id, sizeof(op_id), "%s", tilde + 1);
  if (!dsd_broker_id_valid(id) || !dsd_broker_id_valid(op_id))
    return dsd__broker_send_error(c, 404, "NotFound", "no such task");
  int rc = dsd__broker_instance_load(b, id, &inst, &lastop, &err);
  if (rc < 0 && rc != DSD_ENOTFOUND) {
    status = dsd__broker_send_error(c, 500, "InternalError", dsd_err_msg(&err));
    goto cleanup;
  }
  if (!dsd__broker_access_ok(b, c, id, inst)) {
    status = dsd__unauthorized(c);
    goto cleanup;
  }
  if (inst == NULL) {
    status = dsd__broker_send_error(c, 404, "NotFound", "no such task");
    goto cleanup;
  }
  if (strcmp(method, "DELETE") == 0) {
    rc = dsd_broker_cancel_request(b, id, op_id, &err);
    if (rc == 0) {
      out = json_pack("{s:s, s:s}", "task_id", task, "status", "canceling");
      status = dsd__broker_send_json(c, 202, out);
    } else if (rc == DSD_EBUSY) {
      status = dsd__broker_send_error(c, 409, "Conflict", dsd_err_msg(&err));
    } else if (rc == DSD_ENOTFOUND) {
      status = dsd__broker_send_error(c, 404, "NotFound", "no such task");
    } else {
      status = dsd__broker_send_error(c, 500, "InternalError", dsd_err_msg(&err));
    }
    goto cleanup;
  }
  if (strcmp(method, "GET") != 0) {
    status = dsd__broker_send_error(c, 405, "MethodNotAllowed", "use GET or DELETE");
    goto cleanup;
  }
  size_t offset = 0, limit = 500;
  if (!dsd__parse_size(MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "log_offset"),
                       &offset) ||
      !dsd__parse_size(MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "log_limit"),
                       &limit)) {
    status = dsd__broker_send_error(c, 400, "BadRequest",
                                    "log_offset and log_limit must be non-negative integers");
    goto cleanup;
  }
  if (limit > DSD__LOG_LIMIT)
    limit = DSD__LOG_LIMIT;
  pthread_mutex_lock(&b->lock);
  dsd_broker_key_op(key, sizeof(key), id, op_id);
  rc = dsd_broker_state_get(b->store, key, &op, &err);
  if (rc == 0)
    dsd_broker_op_recover_locked(b, id, NULL, op);
  pthread_mutex_unlock(&b->lock);
  if (rc == DSD_ENOTFOUND) {
    status = dsd__broker_send_error(c, 404, "NotFound", "no such task");
    goto cleanup;
  }
  size_t next = offset;
  if (rc == 0)
    rc = dsd_broker_oplog_read(b, id, op_id, op, offset, limit, &lines, &next, &err);
  if (rc < 0) {
    status = dsd__broker_send_error(c, 500, "InternalError", dsd_err_msg(&err));
    goto cleanup;
  }
  json_t *count = json_object_get(op, "log_lines");
  size_t total = count ? (size_t)json_integer_value(count)
                       : json_array_size(json_object_get(op, "log"));
  out = json_pack("{s:s, s:s, s:s, s:s, s:s, s:O, s:I, s:I, s:s*, s:s*}", "task_id", task,
                  "instance_id", id, "type", json_string_value(json_object_get(op, "type")) ?: "",
                  "status", json_string_value(json_object_get(op, "state")) ?: "failed",
                  "description", json_string_value(json_object_get(op, "description")) ?: "",
                  "log", lines, "next_log_offset", (json_int_t)next, "log_lines",
                  (json_int_t)total, "started_at",
                  json_string_value(json_object_get(op, "started_at")), "finished_at",
                  json_string_value(json_object_get(op, "finished_at")));
  status = out ? dsd__broker_send_json(c, 200, out)
               : dsd__broker_send_error(c, 500, "InternalError", "out of memory");
cleanup:
  json_decref(out);
  json_decref(lines);
  json_decref(op);
  json_decref(lastop);
  json_decref(inst);
  return status;
}

int dsd_broker_tasks_serve(dsd_broker_t *b, struct MHD_Connection *c, const char *url,
                           const char *method, const char *body, size_t body_len) {
  static const char inst_prefix[] = "/v1/instances/";
  static const char imports[] = "/imports";
  static const char task_prefix[] = "/v1/tasks/";
  size_t n = strlen(url);
  if (strncmp(url, task_prefix, sizeof(task_prefix) - 1) == 0)
    return dsd__task(b, c, url + sizeof(task_prefix) - 1, method);
  if (strncmp(url, inst_prefix, sizeof(inst_prefix) - 1) == 0 &&
      n > sizeof(inst_prefix) - 1 + sizeof(imports) - 1 &&
      strcmp(url + n - (sizeof(imports) - 1), imports) == 0) {
    char id[300];
    size_t idlen = n - (sizeof(inst_prefix) - 1) - (sizeof(imports) - 1);
    if (idlen >= sizeof(id))
      return dsd__broker_send_error(c, 404, "NotFound", "no service instance with this id");
    memcpy(id, url + sizeof(inst_prefix) - 1, idlen);
    id[idlen] = '\0';
    if (!dsd_broker_id_valid(id))
      return dsd__broker_send_error(c, 404, "NotFound", "no service instance with this id");
    if (strcmp(method, "POST") != 0)
      return dsd__broker_send_error(c, 405, "MethodNotAllowed", "use POST");
    return dsd__imports(b, c, id, body, body_len);
  }
  return dsd__broker_send_error(c, 404, "NotFound", "no such endpoint");
}
