/*
 * jobs.c - the job runner: provision (dump), update (import) and
 * deprovision run here, on a bounded pool of worker threads, never on an
 * HTTP thread.
 *
 * Each job has an operation record in the store (see state.c). The record
 * carries a lease {owner, expires_at}: a renewer thread extends the lease of
 * every job this process holds (queued or running) every lease_renew_s, and
 * writes the latest progress description at the same time. Whoever reads an
 * operation "in progress" whose lease has expired - any broker process on
 * the same store - concludes that the process running it died, cleans up the
 * transient resources the record lists and marks it failed
 * (dsd_broker_op_recover_locked).
 *
 * Transient resources (the dump object being written, the multipart upload
 * id) are recorded in the operation BEFORE they are created, so recovery
 * finds them even if the process dies the moment after.
 *
 * Cancel: every job has an atomic_int cancel flag, handed to the pipeline.
 * Deprovision sets it for a local job and marks the instance "deleting";
 * the renewer of whichever process runs the job sees that flag in the
 * instance object and cancels its job, so a DELETE on any broker process
 * cancels a dump running on another.
 */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "broker/broker.h"
#include "core/archive.h"

#ifdef DSD_HAVE_PIPELINE
#include "dialects/pipeline.h"
#endif

#define DSD__LOG_MAX 200         /* operation log lines kept in the record */
#define DSD__PROGRESS_EVERY_S 2  /* progress writes at most this often */

const char *dsd_broker_op_type_name(dsd_op_type_t t) {
  switch (t) {
  case DSD_OP_PROVISION:
    return "provision";
  case DSD_OP_UPDATE:
    return "update";
  case DSD_OP_DEPROVISION:
    return "deprovision";
  }
  return "unknown";
}

/* ------------------------------------------------------ operation records */

json_t *dsd_broker_op_new(dsd_broker_t *b, dsd_op_type_t type, const char *op_id,
                          const char *user, const char *request_identity) {
  char now[32];
  int64_t t = dsd_broker_now();
  dsd_broker_iso8601(t, now, sizeof(now));
  return json_pack("{s:s, s:s, s:s, s:s, s:s*, s:s*, s:s, s:s, s:[], s:[], s:[], s:{s:s, s:I}}",
                   "id", op_id, "type", dsd_broker_op_type_name(type), "state", "in progress",
                   "description", "queued", "user", user, "request_identity", request_identity,
                   "started_at", now, "updated_at", now, "steps", "transient", "log", "lease",
                   "owner", b->owner, "expires_at", (json_int_t)(t + b->cfg->lease_ttl_s));
}

static void dsd__op_touch(json_t *op) {
  char now[32];
  dsd_broker_iso8601(dsd_broker_now(), now, sizeof(now));
  json_object_set_new(op, "updated_at", json_string(now));
}

static bool dsd__job_is_local_locked(dsd_broker_t *b, const char *instance_id, const char *op_id) {
  for (dsd_broker_job_t *j = b->active; j; j = j->next)
    if (strcmp(j->instance_id, instance_id) == 0 && strcmp(j->op_id, op_id) == 0)
      return true;
  for (dsd_broker_job_t *j = b->queue; j; j = j->next)
    if (strcmp(j->instance_id, instance_id) == 0 && strcmp(j->op_id, op_id) == 0)
      return true;
  return false;
}

/* Aborts/deletes what an operation record lists as transient. */
static void dsd__op_cleanup_transient(dsd_broker_t *b, json_t *op) {
  size_t i;
  json_t *t;
  json_array_foreach(json_object_get(op, "transient"), i, t) {
    const char *kind = json_string_value(json_object_get(t, "type"));
    const char *key = json_string_value(json_object_get(t, "key"));
    dsd_err_t err = {0};
    if (kind == NULL || key == NULL || !dsd_blob_key_valid(key))
      continue;
    if (strcmp(kind, "multipart_upload") == 0 || strcmp(kind, "dump_object") == 0) {
      const char *upload = json_string_value(json_object_get(t, "upload_id"));
      if (dsd_blob_abort_uploads(b->store, key, upload, &err) < 0)
        dsd_log_warn("cleanup of %s failed: %s", key, dsd_err_msg(&err));
    }
    if (strcmp(kind, "dump_object") == 0 && json_is_true(json_object_get(t, "partial"))) {
      dsd_err_clear(&err);
      if (dsd_blob_delete(b->store, key, &err) < 0)
        dsd_log_warn("cleanup of %s failed: %s", key, dsd_err_msg(&err));
    }
  }
}

bool dsd_broker_op_recover_locked(dsd_broker_t *b, const char *instance_id, json_t *inst,
                                  json_t *op) {
  const char *state = json_string_value(json_object_get(op, "state"));
  const char *op_id = json_string_value(json_object_get(op, "id"));
  json_t *lease = json_object_get(op, "lease");
  json_int_t expires = json_integer_value(json_object_get(lease, "expires_at"));
  const char *owner = json_string_value(json_object_get(lease, "owner"));
  char key[600], when[32];
  dsd_err_t err = {0};
  if (state == NULL || strcmp(state, "in progress") != 0 || op_id == NULL)
    return false;
  if (expires >= dsd_broker_now() || dsd__job_is_local_locked(b, instance_id, op_id))
    return false;
  dsd_broker_iso8601(expires, when, sizeof(when));
  dsd_log_warn("instance %s: operation %s lost its lease (owner %s, expired %s): marking it failed",
               instance_id, op_id, owner ? owner : "?", when);
  dsd__op_cleanup_transient(b, op);
  char desc[512];
  snprintf(desc, sizeof(desc),
           "the broker running this operation stopped before it finished (its lease expired "
           "at %s)\nHINT: run the operation again",
           when);
  json_object_set_new(op, "state", json_string("failed"));
  json_object_set_new(op, "description", json_string(desc));
  json_object_set_new(op, "recovered_by", json_string(b->owner));
  dsd__op_touch(op);
  dsd_broker_key_op(key, sizeof(key), instance_id, op_id);
  if (dsd_broker_state_put(b->store, key, op, &err) < 0)
    dsd_log_error("instance %s: cannot record the failed operation: %s", instance_id,
                  dsd_err_msg(&err));
  if (inst != NULL) {
    const char *type = json_string_value(json_object_get(op, "type"));
    if (type != NULL && strcmp(type, "provision") == 0)
      json_object_set_new(inst, "status", json_string("failed"));
    else if (type != NULL && strcmp(type, "update") == 0)
      json_object_set_new(inst, "status", json_string("ready"));
    dsd_err_clear(&err);
    dsd_broker_key_instance(key, sizeof(key), instance_id);
    if (dsd_broker_state_put(b->store, key, inst, &err) < 0)
      dsd_log_error("instance %s: cannot record the instance state: %s", instance_id,
                    dsd_err_msg(&err));
  }
  return true;
}

/* Read-modify-write of this job's operation record. Caller holds b->lock.
 * fn may be NULL (only flushes progress, log and lease). */
static int dsd__job_op_update_locked(dsd_broker_job_t *job,
                                     void (*fn)(json_t *op, void *data), void *data,
                                     dsd_err_t *err) {
  dsd_broker_t *b = job->b;
  char key[600];
  json_t *op = NULL;
  dsd_broker_key_op(key, sizeof(key), job->instance_id, job->op_id);
  int rc = dsd_broker_state_get(b->store, key, &op, err);
  if (rc < 0)
    goto cleanup;
  json_t *lease = json_object_get(op, "lease");
  if (lease != NULL)
    json_object_set_new(lease, "expires_at",
                        json_integer(dsd_broker_now() + b->cfg->lease_ttl_s));
  if (job->progress[0] != '\0' &&
      strcmp(json_string_value(json_object_get(op, "state")) ?: "", "in progress") == 0)
    json_object_set_new(op, "description", json_string(job->progress));
  if (job->pending_log != NULL && json_array_size(job->pending_log) > 0) {
    json_t *log = json_object_get(op, "log");
    if (!json_is_array(log)) {
      log = json_array();
      json_object_set_new(op, "log", log);
    }
    json_array_extend(log, job->pending_log);
    json_array_clear(job->pending_log);
    while (json_array_size(log) > DSD__LOG_MAX)
      json_array_remove(log, 0);
  }
  if (fn != NULL)
    fn(op, data);
  dsd__op_touch(op);
  rc = dsd_broker_state_put(b->store, key, op, err);
  job->last_progress_write = dsd_broker_now();
cleanup:
  json_decref(op);
  return rc;
}

static void dsd__job_log(dsd_broker_job_t *job, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* One redacted line to the process log and the operation log. */
static void dsd__job_log(dsd_broker_job_t *job, const char *fmt, ...) {
  char line[1024], red[1024], stamp[32];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(line, sizeof(line), fmt, ap);
  va_end(ap);
  dsd_redact_into(line, red, sizeof(red));
  dsd_log_info("instance %s op %s: %s", job->instance_id, job->op_id, red);
  dsd_broker_iso8601(dsd_broker_now(), stamp, sizeof(stamp));
  pthread_mutex_lock(&job->b->lock);
  if (job->pending_log == NULL)
    job->pending_log = json_array();
  json_array_append_new(job->pending_log, json_pack("{s:s, s:s}", "at", stamp, "line", red));
  pthread_mutex_unlock(&job->b->lock);
}

static void dsd__job_progress(dsd_broker_job_t *job, const char *text) {
  dsd_err_t err = {0};
  pthread_mutex_lock(&job->b->lock);
  dsd_redact_into(text, job->progress, sizeof(job->progress));
  if (dsd_broker_now() - job->last_progress_write >= DSD__PROGRESS_EVERY_S)
    dsd__job_op_update_locked(job, NULL, NULL, &err);
  pthread_mutex_unlock(&job->b->lock);
}

typedef struct {
  const char *kind, *key, *upload_id, *step;
} dsd__transient_t;

static void dsd__add_transient(json_t *op, void *data) {
  dsd__transient_t *t = data;
  if (t->kind != NULL)
    json_array_append_new(json_object_get(op, "transient"),
                          json_pack("{s:s, s:s, s:s*, s:b}", "type", t->kind, "key", t->key,
                                    "upload_id", t->upload_id, "partial", 1));
  if (t->step != NULL)
    json_array_append_new(json_object_get(op, "steps"), json_string(t->step));
}

static int dsd__job_record(dsd_broker_job_t *job, const char *kind, const char *key,
                           const char *upload_id, const char *step) {
  dsd__transient_t t = {kind, key, upload_id, step};
  dsd_err_t err = {0};
  if (step != NULL)
    dsd_log_info("instance %s op %s: step: %s", job->instance_id, job->op_id, step);
  if (kind != NULL)
    dsd_log_info("instance %s op %s: recording %s %s before it is created", job->instance_id,
                 job->op_id, kind, key);
  pthread_mutex_lock(&job->b->lock);
  int rc = dsd__job_op_update_locked(job, dsd__add_transient, &t, &err);
  pthread_mutex_unlock(&job->b->lock);
  if (rc < 0)
    dsd_log_error("instance %s: cannot record step: %s", job->instance_id, dsd_err_msg(&err));
  return rc;
}

typedef struct {
  const char *state, *description;
} dsd__final_t;

static void dsd__set_final(json_t *op, void *data) {
  dsd__final_t *f = data;
  char now[32];
  dsd_broker_iso8601(dsd_broker_now(), now, sizeof(now));
  json_object_set_new(op, "state", json_string(f->state));
  json_object_set_new(op, "description", json_string(f->description));
  json_object_set_new(op, "finished_at", json_string(now));
  /* the transient resources are dealt with: recovery has nothing to do */
  json_t *tr = json_object_get(op, "transient");
  size_t i;
  json_t *t;
  json_array_foreach(tr, i, t) json_object_set_new(t, "partial", json_false());
}

/* ------------------------------------------------------------ pipeline */

#ifdef DSD_HAVE_PIPELINE
static void dsd__hook_progress(void *data, const dsd_pipeline_progress_t *p) {
  dsd_broker_job_t *job = data;
  char text[512];
  dsd_pipeline_progress_format(p, job->type == DSD_OP_PROVISION ? "dumping" : "importing", text,
                               sizeof(text));
  dsd__job_progress(job, text);
}

static void dsd__hook_log(void *data, const char *line) {
  dsd__job_log(data, "%s", line);
}

static int dsd__hook_upload(void *data, const char *key, const char *upload_id) {
  return dsd__job_record(data, "multipart_upload", key, upload_id, NULL) < 0 ? -1 : 0;
}
#endif

/* The one place that calls into the dump pipeline. */
static int dsd__run_dump(dsd_broker_job_t *job, const char *key, json_t *facts, dsd_err_t *err) {
#ifdef DSD_HAVE_PIPELINE
  dsd_dump_opts_t o = {0};
  dsd_dump_result_t res = {0};
  dsd_compression_t comp = DSD_COMPRESS_ZSTD;
  dsd_compression_parse(job->params.compression, &comp);
  o.dialect = job->plan;
  o.source_uri = job->params.uri;
  o.compression = comp;
  o.anonymize = job->params.anonymize;
  o.store = job->b->store;
  o.key = key;
  o.hooks.cancel = &job->cancel;
  o.hooks.progress = dsd__hook_progress;
  o.hooks.log = dsd__hook_log;
  o.hooks.on_upload_created = dsd__hook_upload;
  o.hooks.data = job;
  int rc = dsd_pipeline_dump(&o, &res, err);
  if (rc == 0) {
    json_object_set_new(facts, "size", json_integer((json_int_t)res.size));
    json_object_set_new(facts, "sha256", json_string(res.sha256));
    json_object_set_new(facts, "rows", json_integer((json_int_t)res.rows));
    json_object_set_new(facts, "tables", json_integer((json_int_t)res.tables));
    if (res.summary != NULL)
      json_object_set(facts, "summary", res.summary);
  }
  json_decref(res.summary);
  return rc;
#else
  (void)key;
  (void)facts;
  return dsd_err_set(err, DSD_EUNSUPPORTED, "the %s dialect is not built yet", job->plan);
#endif
}

static int dsd__run_restore(dsd_broker_job_t *job, const char *key, dsd_err_t *err) {
#ifdef DSD_HAVE_PIPELINE
  dsd_restore_opts_t o = {0};
  o.target_uri = job->params.uri;
  o.clean = job->params.clean;
  o.store = job->b->store;
  o.key = key;
  o.hooks.cancel = &job->cancel;
  o.hooks.progress = dsd__hook_progress;
  o.hooks.log = dsd__hook_log;
  o.hooks.data = job;
  return dsd_pipeline_restore(&o, err);
#else
  (void)key;
  return dsd_err_set(err, DSD_EUNSUPPORTED, "the %s dialect is not built yet", job->plan);
#endif
}

/* -------------------------------------------------------------- the jobs */

/* Loads the instance object under the lock; NULL if gone. */
static json_t *dsd__inst_load_locked(dsd_broker_t *b, const char *id) {
  char key[600];
  json_t *inst = NULL;
  dsd_err_t err = {0};
  dsd_broker_key_instance(key, sizeof(key), id);
  if (dsd_broker_state_get(b->store, key, &inst, &err) < 0 && err.code != 0)
    dsd_log_error("instance %s: %s", id, dsd_err_msg(&err));
  return inst;
}

static void dsd__inst_store_locked(dsd_broker_t *b, const char *id, json_t *inst) {
  char key[600];
  dsd_err_t err = {0};
  dsd_broker_key_instance(key, sizeof(key), id);
  if (dsd_broker_state_put(b->store, key, inst, &err) < 0)
    dsd_log_error("instance %s: cannot write its state: %s", id, dsd_err_msg(&err));
}

static void dsd__job_finish(dsd_broker_job_t *job, int rc, const dsd_err_t *err,
                            const char *ok_desc) {
  char desc[DSD_ERR_MSG_MAX + 64];
  if (rc == 0)
    snprintf(desc, sizeof(desc), "%s", ok_desc);
  else if (rc == DSD_ECANCELED || atomic_load(&job->cancel))
    snprintf(desc, sizeof(desc), "%s",
             atomic_load(&job->b->stopping)
                 ? "the broker was stopped during this operation\nHINT: run it again"
                 : "canceled: the instance is being deleted");
  else
    snprintf(desc, sizeof(desc), "%s", dsd_err_msg(err));
  dsd__final_t f = {rc == 0 ? "succeeded" : "failed", desc};
  dsd_err_t werr = {0};
  pthread_mutex_lock(&job->b->lock);
  if (dsd__job_op_update_locked(job, dsd__set_final, &f, &werr) < 0)
    dsd_log_error("instance %s: cannot record the end of operation %s: %s", job->instance_id,
                  job->op_id, dsd_err_msg(&werr));
  pthread_mutex_unlock(&job->b->lock);
  dsd_log_info("instance %s op %s (%s): %s: %s", job->instance_id, job->op_id,
               dsd_broker_op_type_name(job->type), f.state, desc);
}

static void dsd__job_provision(dsd_broker_job_t *job) {
  dsd_broker_t *b = job->b;
  dsd_err_t err = {0};
  char key[400];
  int rc = 0;
  json_t *facts = json_object();
  dsd_compression_t comp = DSD_COMPRESS_ZSTD;
  dsd_compression_parse(job->params.compression, &comp);
  snprintf(key, sizeof(key), "dumps/%s%s", job->instance_id, dsd_compression_ext(comp));

  /* recorded before anything is created under the key */
  rc = dsd__job_record(job, "dump_object", key, NULL, "started");
  if (rc < 0) {
    dsd_err_set(&err, rc, "cannot record the operation's state in the store");
    goto cleanup;
  }
  dsd__job_log(job, "dumping the %s source into %s", job->plan, key);
  if (job->params.instance_name != NULL) {
    rc = dsd_err_set(&err, DSD_EUNSUPPORTED,
                     "resolving service instance names through the Cloud Controller is not "
                     "implemented yet\nHINT: use source_uri");
    goto cleanup;
  }
  rc = dsd__run_dump(job, key, facts, &err);
  if (rc < 0)
    goto cleanup;
  /* trust the store, not the pipeline's word: the object must exist */
  dsd_blob_info_t info;
  rc = dsd_blob_head(b->store, key, &info, &err);
  if (rc < 0) {
    dsd_err_prefix(&err, "the dump finished but its object is missing");
    goto cleanup;
  }
  char now[32];
  dsd_broker_iso8601(dsd_broker_now(), now, sizeof(now));
  json_object_set_new(facts, "key", json_string(key));
  json_object_set_new(facts, "compression", json_string(dsd_compression_name(comp)));
  json_object_set_new(facts, "format", json_string(comp == DSD_COMPRESS_NONE ? "tar"
                                                   : comp == DSD_COMPRESS_GZIP ? "tar+gzip"
                                                                               : "tar+zstd"));
  json_object_set_new(facts, "created_at", json_string(now));
  if (json_object_get(facts, "size") == NULL)
    json_object_set_new(facts, "size", json_integer((json_int_t)info.size));

cleanup:
  if (rc < 0) {
    dsd_err_t cerr = {0};
    dsd_blob_abort_uploads(b->store, key, NULL, &cerr);
  }
  pthread_mutex_lock(&b->lock);
  json_t *inst = dsd__inst_load_locked(b, job->instance_id);
  if (inst != NULL && !json_is_true(json_object_get(inst, "deleting"))) {
    json_object_set_new(inst, "status", json_string(rc == 0 ? "ready" : "failed"));
    if (rc == 0)
      json_object_set(inst, "dump", facts);
    dsd__inst_store_locked(b, job->instance_id, inst);
  }
  json_decref(inst);
  pthread_mutex_unlock(&b->lock);
  char ok[128];
  snprintf(ok, sizeof(ok), "dump complete: %" JSON_INTEGER_FORMAT " bytes",
           json_integer_value(json_object_get(facts, "size")));
  dsd__job_finish(job, rc, &err, ok);
  json_decref(facts);
}

static void dsd__job_update(dsd_broker_job_t *job) {
  dsd_broker_t *b = job->b;
  dsd_err_t err = {0};
  int rc = 0;
  pthread_mutex_lock(&b->lock);
  json_t *inst = dsd__inst_load_locked(b, job->instance_id);
  pthread_mutex_unlock(&b->lock);
  const char *key = json_string_value(json_object_get(json_object_get(inst, "dump"), "key"));
  if (key == NULL) {
    rc = dsd_err_set(&err, DSD_ENOTFOUND, "this instance has no finished dump to import");
    goto cleanup;
  }
  dsd__job_record(job, NULL, NULL, NULL, "started");
  dsd__job_log(job, "importing %s into the %s target (clean=%s)", key, job->plan,
               job->params.clean ? "true" : "false");
  if (job->params.instance_name != NULL) {
    rc = dsd_err_set(&err, DSD_EUNSUPPORTED,
                     "resolving service instance names through the Cloud Controller is not "
                     "implemented yet\nHINT: use target_uri");
    goto cleanup;
  }
  rc = dsd__run_restore(job, key, &err);

cleanup:
  json_decref(inst);
  pthread_mutex_lock(&b->lock);
  inst = dsd__inst_load_locked(b, job->instance_id);
  if (inst != NULL && !json_is_true(json_object_get(inst, "deleting"))) {
    json_object_set_new(inst, "status", json_string("ready"));
    dsd__inst_store_locked(b, job->instance_id, inst);
  }
  json_decref(inst);
  pthread_mutex_unlock(&b->lock);
  dsd__job_finish(job, rc, &err, "import complete");
}

/* Waits until the operation that was running when the DELETE arrived has
 * ended (or lost its lease). */
static int dsd__wait_previous(dsd_broker_job_t *job, const char *prev, dsd_err_t *err) {
  dsd_broker_t *b = job->b;
  char key[600];
  dsd_broker_key_op(key, sizeof(key), job->instance_id, prev);
  for (;;) {
    json_t *op = NULL;
    pthread_mutex_lock(&b->lock);
    int rc = dsd_broker_state_get(b->store, key, &op, err);
    if (rc == 0)
      dsd_broker_op_recover_locked(b, job->instance_id, NULL, op);
    pthread_mutex_unlock(&b->lock);
    if (rc == DSD_ENOTFOUND)
      return 0;
    if (rc < 0)
      return rc;
    bool done = strcmp(json_string_value(json_object_get(op, "state")) ?: "", "in progress") != 0;
    json_decref(op);
    if (done)
      return 0;
    if (atomic_load(&b->stopping))
      return dsd_err_set(err, DSD_ECANCELED, "the broker is stopping");
    sleep(1);
  }
}

static void dsd__job_deprovision(dsd_broker_job_t *job) {
  dsd_broker_t *b = job->b;
  dsd_err_t err = {0};
  int rc = 0;
  char key[600];
  pthread_mutex_lock(&b->lock);
  json_t *inst = dsd__inst_load_locked(b, job->instance_id);
  pthread_mutex_unlock(&b->lock);
  const char *prev = json_string_value(json_object_get(inst, "cancels_operation"));
  if (prev != NULL) {
    dsd__job_progress(job, "waiting for the running operation to stop");
    rc = dsd__wait_previous(job, prev, &err);
    if (rc < 0)
      goto cleanup;
  }
  dsd__job_record(job, NULL, NULL, NULL, "previous operation ended");
  /* every compression's key: the dump may have been made with any */
  static const dsd_compression_t comps[] = {DSD_COMPRESS_ZSTD, DSD_COMPRESS_GZIP,
                                            DSD_COMPRESS_NONE};
  for (size_t i = 0; i < 3; i++) {
    snprintf(key, sizeof(key), "dumps/%s%s", job->instance_id, dsd_compression_ext(comps[i]));
    dsd_err_t aerr = {0};
    dsd_blob_abort_uploads(b->store, key, NULL, &aerr);
    rc = dsd_blob_delete(b->store, key, &err);
    if (rc < 0)
      goto cleanup;
  }
  dsd__job_log(job, "dump object deleted");
  dsd__job_record(job, NULL, NULL, NULL, "dump deleted");
  char now[32];
  dsd_broker_iso8601(dsd_broker_now(), now, sizeof(now));
  json_t *tomb = json_pack("{s:s, s:s, s:s}", "instance_id", job->instance_id, "operation",
                           job->op_id, "deleted_at", now);
  dsd_broker_key_tombstone(key, sizeof(key), job->instance_id);
  pthread_mutex_lock(&b->lock);
  rc = dsd_broker_state_put(b->store, key, tomb, &err);
  json_decref(tomb);
  if (rc == 0) {
    snprintf(key, sizeof(key), "instances/%s/", job->instance_id);
    rc = dsd_broker_state_delete_prefix(b->store, key, &err);
  }
  pthread_mutex_unlock(&b->lock);
  if (rc == 0) {
    dsd_log_info("instance %s op %s (deprovision): succeeded: instance deleted",
                 job->instance_id, job->op_id);
    json_decref(inst);
    return; /* the operation record is gone with the instance */
  }
cleanup:
  json_decref(inst);
  dsd__job_finish(job, rc, &err, "deleted");
}

/* ---------------------------------------------------------------- pool */

static void dsd__job_free(dsd_broker_job_t *job) {
  dsd_broker_params_free(&job->params);
  json_decref(job->pending_log);
  free(job);
}

static void dsd__list_remove(dsd_broker_job_t **list, dsd_broker_job_t *job) {
  for (dsd_broker_job_t **p = list; *p; p = &(*p)->next)
    if (*p == job) {
      *p = job->next;
      job->next = NULL;
      return;
    }
}

static void *dsd__worker(void *arg) {
  dsd_broker_t *b = arg;
  pthread_mutex_lock(&b->lock);
  for (;;) {
    while (b->queue == NULL && !atomic_load(&b->stopping))
      pthread_cond_wait(&b->cond, &b->lock);
    if (atomic_load(&b->stopping))
      break;
    dsd_broker_job_t *job = b->queue;
    b->queue = job->next;
    job->next = b->active;
    b->active = job;
    atomic_store(&job->running, 1);
    /* "queued" would stay until the first progress report otherwise */
    snprintf(job->progress, sizeof(job->progress), "%s",
             job->type == DSD_OP_PROVISION ? "starting the dump"
             : job->type == DSD_OP_UPDATE  ? "starting the import"
                                           : "deleting");
    pthread_mutex_unlock(&b->lock);

    if (job->type == DSD_OP_PROVISION)
      dsd__job_provision(job);
    else if (job->type == DSD_OP_UPDATE)
      dsd__job_update(job);
    else
      dsd__job_deprovision(job);

    pthread_mutex_lock(&b->lock);
    dsd__list_remove(&b->active, job);
    dsd__job_free(job);
    pthread_cond_broadcast(&b->cond);
  }
  pthread_mutex_unlock(&b->lock);
  return NULL;
}

/* Renews the lease of every job this process holds and propagates
 * "deleting" from the instance object to the job's cancel flag. */
static void dsd__renew_all(dsd_broker_t *b) {
  pthread_mutex_lock(&b->lock);
  dsd_broker_job_t *lists[2] = {b->active, b->queue};
  for (int l = 0; l < 2; l++)
    for (dsd_broker_job_t *j = lists[l]; j; j = j->next) {
      dsd_err_t err = {0};
      if (dsd__job_op_update_locked(j, NULL, NULL, &err) < 0)
        dsd_log_warn("instance %s: lease renewal failed: %s", j->instance_id, dsd_err_msg(&err));
      if (j->type != DSD_OP_DEPROVISION) {
        json_t *inst = dsd__inst_load_locked(b, j->instance_id);
        if (inst == NULL || json_is_true(json_object_get(inst, "deleting")))
          atomic_store(&j->cancel, 1);
        json_decref(inst);
      }
    }
  pthread_mutex_unlock(&b->lock);
}

static void *dsd__renewer(void *arg) {
  dsd_broker_t *b = arg;
  int ticks = 0;
  while (!atomic_load(&b->stopping)) {
    sleep(1);
    if (++ticks >= b->cfg->lease_renew_s) {
      ticks = 0;
      dsd__renew_all(b);
    }
  }
  return NULL;
}

void dsd_broker_job_submit(dsd_broker_t *b, dsd_broker_job_t *job) {
  job->b = b;
  job->next = NULL;
  pthread_mutex_lock(&b->lock);
  dsd_broker_job_t **p = &b->queue;
  while (*p)
    p = &(*p)->next;
  *p = job;
  pthread_cond_broadcast(&b->cond);
  pthread_mutex_unlock(&b->lock);
}

bool dsd_broker_job_cancel_locked(dsd_broker_t *b, const char *instance_id) {
  bool found = false;
  dsd_broker_job_t *lists[2] = {b->active, b->queue};
  for (int l = 0; l < 2; l++)
    for (dsd_broker_job_t *j = lists[l]; j; j = j->next)
      if (j->type != DSD_OP_DEPROVISION && strcmp(j->instance_id, instance_id) == 0) {
        atomic_store(&j->cancel, 1);
        found = true;
      }
  return found;
}

int dsd_broker_init(dsd_broker_t *b, const dsd_broker_config_t *cfg, dsd_blob_store_t *store,
                    dsd_err_t *err) {
  char host[64] = "host", rnd[17];
  int rc = 0;
  memset(b, 0, sizeof(*b));
  b->cfg = cfg;
  b->store = store;
  gethostname(host, sizeof(host) - 1);
  host[sizeof(host) - 1] = '\0';
  if (dsd_broker_random_hex(rnd, 8) < 0)
    return dsd_err_set(err, DSD_EINTERNAL, "no random numbers available");
  snprintf(b->owner, sizeof(b->owner), "%s:%ld:%s", host, (long)getpid(), rnd);
  pthread_mutex_init(&b->lock, NULL);
  pthread_cond_init(&b->cond, NULL);
  b->workers = calloc((size_t)cfg->workers, sizeof(pthread_t));
  if (b->workers == NULL)
    return dsd_err_set(err, DSD_ENOMEM, "out of memory");
  for (int i = 0; i < cfg->workers; i++) {
    if (pthread_create(&b->workers[i], NULL, dsd__worker, b) != 0) {
      rc = dsd_err_set(err, DSD_EINTERNAL, "cannot start a worker thread");
      goto cleanup;
    }
    b->nworkers++;
  }
  if (pthread_create(&b->renewer, NULL, dsd__renewer, b) != 0) {
    rc = dsd_err_set(err, DSD_EINTERNAL, "cannot start the lease renewer thread");
    goto cleanup;
  }
  b->renewer_started = true;
cleanup:
  if (rc < 0)
    dsd_broker_shutdown(b);
  return rc;
}

void dsd_broker_shutdown(dsd_broker_t *b) {
  pthread_mutex_lock(&b->lock);
  atomic_store(&b->stopping, 1);
  for (dsd_broker_job_t *j = b->active; j; j = j->next)
    atomic_store(&j->cancel, 1);
  pthread_cond_broadcast(&b->cond);
  pthread_mutex_unlock(&b->lock);
  /* running jobs see their cancel flag, record their end and return */
  for (int i = 0; i < b->nworkers; i++)
    pthread_join(b->workers[i], NULL);
  if (b->renewer_started)
    pthread_join(b->renewer, NULL);
  /* queued jobs never started: record them as failed so nobody waits for
   * the lease to expire */
  while (b->queue != NULL) {
    dsd_broker_job_t *job = b->queue;
    b->queue = job->next;
    dsd_err_t err = {0};
    atomic_store(&job->cancel, 1);
    dsd__job_finish(job, DSD_ECANCELED, &err, "");
    dsd__job_free(job);
  }
  free(b->workers);
  b->workers = NULL;
  b->nworkers = 0;
  pthread_cond_destroy(&b->cond);
  pthread_mutex_destroy(&b->lock);
}
