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
 * id, the Cloud Controller service key through which a `source`/`target`
 * named instance is read) are recorded in the operation BEFORE they are
 * created, so recovery finds them even if the process dies the moment after.
 *
 * Service keys: a job given an instance name looks the instance up in the
 * request's space through the one dsd_cc_t of the process, checks its
 * dialect and (when the request carried an originating identity) that the
 * user is a space developer there, records the key name "dsd-<operation
 * id>" with the instance guid, creates the key, records its guid, reads the
 * credentials and deletes the key when the dump or import ends, whatever
 * the outcome. The credentials live only in the job (params.uri) and are
 * registered with the log redactor. A key that cannot be deleted stays in
 * the record as not deleted; recovery (dsd_broker_op_recover_locked) and
 * deprovision delete it later.
 *
 * Log: dsd__job_log lines are held in the job and stored with the next
 * record write (progress, lease renewal, end) as pages next to the record
 * (dsd_broker_oplog_append_locked in tasks.c): the whole log is kept.
 *
 * Cancel: every job has an atomic_int cancel flag, handed to the pipeline.
 * Deprovision sets it for a local job and marks the instance "deleting";
 * the renewer of whichever process runs the job sees that flag in the
 * instance object and cancels its job, so a DELETE on any broker process
 * cancels a dump running on another. The dashboard and the task API ask
 * for a cancel the same way, through the instance's "cancel_requested"
 * (the operation id), without deleting anything.
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "broker/broker.h"
#include "core/archive.h"

#ifdef DSD_HAVE_PIPELINE
#include "dialects/pipeline.h"
#endif

#define DSD__LOG_MAX 5000        /* log lines held while the store is unreachable */
#define DSD__PROGRESS_EVERY_S 2  /* progress writes at most this often */
#define DSD__KEY_RETRY_S 30      /* a failed service key deletion waits this long */

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
  return json_pack("{s:s, s:s, s:s, s:s, s:s*, s:s*, s:s, s:s, s:[], s:[], s:[], s:i, s:{s:s, s:I}}",
                   "id", op_id, "type", dsd_broker_op_type_name(type), "state", "in progress",
                   "description", "queued", "user", user, "request_identity", request_identity,
                   "started_at", now, "updated_at", now, "steps", "transient", "log", "log_lines",
                   0, "lease",
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

/* A service key entry of an operation's transient list not yet seen
 * deleted. */
static bool dsd__is_live_key(const json_t *t) {
  const char *kind = json_string_value(json_object_get(t, "type"));
  return kind != NULL && strcmp(kind, "service_key") == 0 &&
         !json_is_true(json_object_get(t, "deleted"));
}

static bool dsd__op_has_live_keys(const json_t *op) {
  size_t i;
  json_t *t;
  json_array_foreach(json_object_get(op, "transient"), i, t) if (dsd__is_live_key(t)) return true;
  return false;
}

/* Deletes one service key given by its recorded name and instance guid (and
 * guid, when it was recorded). A key that does not exist counts as deleted:
 * the process may have died before CC saw the request. */
static int dsd__key_delete(dsd_broker_t *b, const char *name, const char *instance_guid,
                           const char *guid, dsd_err_t *err) {
  char *found = NULL;
  int rc = 0;
  if (b->cc == NULL) {
    rc = dsd_err_set(err, DSD_ECONFIG,
                     "this broker has no cloud controller access (DSD_CF_API is not set)");
    goto cleanup;
  }
  if (guid == NULL) {
    if (instance_guid == NULL) {
      rc = dsd_err_set(err, DSD_EINTERNAL, "the record of service key \"%s\" has no instance",
                       name);
      goto cleanup;
    }
    rc = dsd_cc_find_key(b->cc, instance_guid, name, &found, err);
    if (rc == DSD_ENOTFOUND) {
      dsd_err_clear(err);
      rc = 0;
      goto cleanup;
    }
    if (rc < 0)
      goto cleanup;
    guid = found;
  }
  rc = dsd_cc_delete_key(b->cc, guid, err);
cleanup:
  free(found);
  return rc;
}

/* Deletes the service keys op lists as not deleted and marks them deleted.
 * One that fails keeps its entry, with the error and a retry time; unless
 * force, an entry whose retry time has not come is skipped. Returns how many
 * are left; note gets a sentence about the first failure. Runs CC calls with
 * b->lock held, as the blob calls of recovery do: recovery is rare and the
 * lock is what keeps two threads of this process from recovering the same
 * operation at once. */
static int dsd__op_release_keys(dsd_broker_t *b, const char *instance_id, json_t *op, bool force,
                                bool *changed, char *note, size_t cap) {
  size_t i;
  json_t *t;
  int left = 0;
  int64_t now = dsd_broker_now();
  json_array_foreach(json_object_get(op, "transient"), i, t) {
    if (!dsd__is_live_key(t))
      continue;
    const char *name = json_string_value(json_object_get(t, "name"));
    json_int_t retry_at = json_integer_value(json_object_get(t, "retry_at"));
    if (name == NULL)
      continue;
    if (!force && retry_at > now) {
      left++;
      continue;
    }
    dsd_err_t err = {0};
    int rc = dsd__key_delete(b, name, json_string_value(json_object_get(t, "instance_guid")),
                             json_string_value(json_object_get(t, "guid")), &err);
    *changed = true;
    if (rc == 0) {
      char when[32];
      dsd_broker_iso8601(now, when, sizeof(when));
      json_object_set_new(t, "deleted", json_true());
      json_object_set_new(t, "deleted_at", json_string(when));
      json_object_del(t, "retry_at");
      json_object_del(t, "last_error");
      dsd_log_info("instance %s: transient service key %s deleted", instance_id, name);
      continue;
    }
    left++;
    json_object_set_new(t, "retry_at", json_integer((json_int_t)(now + DSD__KEY_RETRY_S)));
    json_object_set_new(t, "last_error", json_string(dsd_err_msg(&err)));
    dsd_log_warn("instance %s: transient service key %s could not be deleted, retrying later: %s",
                 instance_id, name, dsd_err_msg(&err));
    if (note != NULL && note[0] == '\0')
      snprintf(note, cap,
               "service key \"%s\" could not be deleted yet (%s); the broker keeps its "
               "record and retries",
               name, dsd_err_msg(&err));
  }
  return left;
}

bool dsd_broker_op_recover_locked(dsd_broker_t *b, const char *instance_id, json_t *inst,
                                  json_t *op) {
  const char *state = json_string_value(json_object_get(op, "state"));
  const char *op_id = json_string_value(json_object_get(op, "id"));
  json_t *lease = json_object_get(op, "lease");
  json_int_t expires = json_integer_value(json_object_get(lease, "expires_at"));
  const char *owner = json_string_value(json_object_get(lease, "owner"));
  char key[600], when[32], note[DSD_ERR_MSG_MAX] = "";
  dsd_err_t err = {0};
  bool changed = false;
  if (state == NULL || op_id == NULL)
    return false;
  bool running = strcmp(state, "in progress") == 0;
  if (!running && !dsd__op_has_live_keys(op))
    return false;
  if (expires >= dsd_broker_now() || dsd__job_is_local_locked(b, instance_id, op_id))
    return false;
  dsd_broker_key_op(key, sizeof(key), instance_id, op_id);
  if (!running) {
    /* a finished operation whose key deletion failed: retry it */
    dsd__op_release_keys(b, instance_id, op, false, &changed, NULL, 0);
    if (changed && dsd_broker_state_put(b->store, key, op, &err) < 0)
      dsd_log_error("instance %s: cannot record the service key cleanup: %s", instance_id,
                    dsd_err_msg(&err));
    return false;
  }
  dsd_broker_iso8601(expires, when, sizeof(when));
  dsd_log_warn("instance %s: operation %s lost its lease (owner %s, expired %s): marking it failed",
               instance_id, op_id, owner ? owner : "?", when);
  dsd__op_cleanup_transient(b, op);
  dsd__op_release_keys(b, instance_id, op, true, &changed, note, sizeof(note));
  /* An import interrupted after it began writing leaves the target
   * half-restored: say so, since the user must decide what to do with it. */
  const char *target_state = "";
  size_t si;
  json_t *sv;
  json_array_foreach(json_object_get(op, "steps"), si, sv) {
    const char *step = json_string_value(sv);
    if (step != NULL && strncmp(step, "writing the target", 18) == 0)
      target_state = strstr(step, "clean") != NULL
                         ? "; the import had started writing the target database, which may "
                           "now hold part of the dump, with objects of the dump dropped and "
                           "not all restored"
                         : "; the import had started writing the target database, which may "
                           "now hold part of the dump";
  }
  const char *type0 = json_string_value(json_object_get(op, "type"));
  if (target_state[0] == '\0' && type0 != NULL && strcmp(type0, "update") == 0)
    target_state = "; the import had not started writing the target database, which is "
                   "unchanged";
  char desc[1024 + DSD_ERR_MSG_MAX];
  snprintf(desc, sizeof(desc),
           "the broker running this operation stopped before it finished (its lease expired "
           "at %s)%s%s%s\nHINT: run the operation again",
           when, target_state, note[0] ? "; " : "", note);
  json_object_set_new(op, "state", json_string("failed"));
  json_object_set_new(op, "description", json_string(desc));
  json_object_set_new(op, "recovered_by", json_string(b->owner));
  dsd__op_touch(op);
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
    /* the whole log, in pages next to the record (tasks.c); lines whose
     * page could not be written stay pending for the next flush, up to a
     * bound that keeps a long store outage from growing memory */
    dsd_err_t lerr = {0};
    if (dsd_broker_oplog_append_locked(b, job->instance_id, job->op_id, op, job->pending_log,
                                       &lerr) == 0)
      json_array_clear(job->pending_log);
    else {
      dsd_log_warn("instance %s: operation log not stored yet: %s", job->instance_id,
                   dsd_err_msg(&lerr));
      while (json_array_size(job->pending_log) > DSD__LOG_MAX)
        json_array_remove(job->pending_log, 0);
    }
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

/* ------------------------------------------------- cloud controller keys */

/* The transient service key of a job. */
typedef struct {
  char name[96];          /* "dsd-<operation id>": unique per instance */
  char instance_guid[64];
  char *guid;             /* owns; NULL until CC returned it */
  bool recorded;          /* the name is in the operation's transient list */
} dsd__cckey_t;

typedef struct {
  const dsd__cckey_t *k;
  const char *error; /* deletion failed: why (for the record) */
  bool deleted;
} dsd__keyrec_t;

static void dsd__key_add(json_t *op, void *data) {
  const dsd__keyrec_t *r = data;
  json_array_append_new(json_object_get(op, "transient"),
                        json_pack("{s:s, s:s, s:s, s:n, s:b}", "type", "service_key", "name",
                                  r->k->name, "instance_guid", r->k->instance_guid, "guid",
                                  "deleted", 0));
}

/* Updates the entry of r->k: its guid, and deleted or the deletion error. */
static void dsd__key_update(json_t *op, void *data) {
  const dsd__keyrec_t *r = data;
  size_t i;
  json_t *t;
  json_array_foreach(json_object_get(op, "transient"), i, t) {
    const char *kind = json_string_value(json_object_get(t, "type"));
    const char *name = json_string_value(json_object_get(t, "name"));
    if (kind == NULL || strcmp(kind, "service_key") != 0 || name == NULL ||
        strcmp(name, r->k->name) != 0)
      continue;
    if (r->k->guid != NULL)
      json_object_set_new(t, "guid", json_string(r->k->guid));
    if (r->deleted) {
      char when[32];
      dsd_broker_iso8601(dsd_broker_now(), when, sizeof(when));
      json_object_set_new(t, "deleted", json_true());
      json_object_set_new(t, "deleted_at", json_string(when));
    } else if (r->error != NULL) {
      json_object_set_new(t, "last_error", json_string(r->error));
      json_object_set_new(t, "retry_at",
                          json_integer((json_int_t)(dsd_broker_now() + DSD__KEY_RETRY_S)));
    }
  }
}

static int dsd__key_record(dsd_broker_job_t *job, void (*fn)(json_t *, void *),
                           dsd__keyrec_t *r, dsd_err_t *err) {
  pthread_mutex_lock(&job->b->lock);
  int rc = dsd__job_op_update_locked(job, fn, r, err);
  pthread_mutex_unlock(&job->b->lock);
  return rc;
}

/* The user guid of an originating identity "platform:user_id"; NULL for a
 * platform call (no identity). Borrowed from user. */
static const char *dsd__user_guid(const char *user) {
  if (user == NULL || user[0] == '\0')
    return NULL;
  const char *colon = strchr(user, ':');
  return colon != NULL && colon[1] != '\0' ? colon + 1 : user;
}

static const char *dsd__dialect_title(const char *d) {
  return strcmp(d, "pg") == 0 ? "postgresql" : d;
}

/* Resolves job->params.instance_name (the `source` or `target`, named by
 * role) into job->params.uri through a new service key k. Every failure
 * before the key is created leaves nothing to clean up; after k->recorded
 * the caller must call dsd__cc_release whatever happens. The credentials are
 * never logged: only the key's name and guid are. */
static int dsd__cc_acquire(dsd_broker_job_t *job, const char *role, dsd__cckey_t *k,
                           dsd_err_t *err) {
  dsd_broker_t *b = job->b;
  const char *name = job->params.instance_name;
  const char *user = dsd__user_guid(job->user);
  dsd_cc_instance_t inst;
  json_t *creds = NULL;
  char text[512];
  int rc = 0;
  if (b->cc == NULL) {
    rc = dsd_err_set(err, DSD_ECONFIG,
                     "service instance names cannot be resolved: this broker has no cloud "
                     "controller access\nHINT: set DSD_CF_API, DSD_CF_CLIENT_ID and "
                     "DSD_CF_CLIENT_SECRET");
    goto cleanup;
  }
  if (job->space_guid[0] == '\0') {
    rc = dsd_err_set(err, DSD_EINVAL,
                     "the request carried no space_guid, so %s service instance \"%s\" cannot "
                     "be looked up",
                     role, name);
    goto cleanup;
  }
  snprintf(text, sizeof(text), "looking up %s service instance \"%s\"", role, name);
  dsd__job_progress(job, text);
  rc = dsd_cc_find_instance(b->cc, name, job->space_guid, &inst, err);
  if (rc < 0)
    goto cleanup;
  /* the dump's dialect is the plan's: a source or target of another kind
   * would fail halfway, after data moved */
  const char *found = dsd_cc_dialect_of(inst.offering, inst.plan);
  if (found != NULL && strcmp(found, job->plan) != 0) {
    rc = dsd_err_set(err, DSD_EINVAL,
                     "%s service instance \"%s\" is a %s database but this %s is %s"
                     "\nHINT: %s (it is of offering \"%s\", plan \"%s\")",
                     role, name, dsd__dialect_title(found),
                     job->type == DSD_OP_PROVISION ? "service plan" : "dump",
                     dsd__dialect_title(job->plan),
                     job->type == DSD_OP_PROVISION ? "create the dump with the plan of its "
                                                     "database"
                                                   : "import into a database of the dump's "
                                                     "dialect",
                     inst.offering, inst.plan);
    goto cleanup;
  }
  const char *space = inst.space_guid[0] != '\0' ? inst.space_guid : job->space_guid;
  if (user != NULL) {
    bool yes = false;
    rc = dsd_cc_user_is_space_developer(b->cc, user, space, &yes, err);
    if (rc < 0)
      goto cleanup;
    if (!yes) {
      rc = dsd_err_set(err, DSD_EDENIED,
                       "user %s is not a space developer in the space of service instance "
                       "\"%s\"\nHINT: ask a space manager for the SpaceDeveloper role",
                       user, name);
      goto cleanup;
    }
    dsd__job_log(job, "user %s is a space developer in the space of \"%s\"", user, name);
  } else {
    dsd__job_log(job, "no originating identity (a platform call): the space developer check "
                      "of \"%s\" is skipped", name);
  }
  snprintf(k->name, sizeof(k->name), "dsd-%s", job->op_id);
  snprintf(k->instance_guid, sizeof(k->instance_guid), "%s", inst.guid);
  dsd__keyrec_t r = {k, NULL, false};
  /* written before the key exists: a crash from here on leaves a record
   * that recovery finds the key by */
  rc = dsd__key_record(job, dsd__key_add, &r, err);
  if (rc < 0) {
    dsd_err_prefix(err, "cannot record the service key before creating it");
    goto cleanup;
  }
  k->recorded = true;
  dsd__job_log(job, "creating service key %s on %s service instance \"%s\" (%s)", k->name, role,
               name, inst.guid);
  snprintf(text, sizeof(text), "creating service key %s on \"%s\"", k->name, name);
  dsd__job_progress(job, text);
  rc = dsd_cc_create_key(b->cc, inst.guid, k->name, &job->cancel, &k->guid, err);
  if (rc < 0)
    goto cleanup;
  dsd_err_t rerr = {0};
  if (dsd__key_record(job, dsd__key_update, &r, &rerr) < 0)
    dsd_log_warn("instance %s: cannot record the service key's guid (recovery finds it by "
                 "name): %s",
                 job->instance_id, dsd_err_msg(&rerr));
  rc = dsd_cc_key_details(b->cc, k->guid, &creds, err);
  if (rc < 0)
    goto cleanup;
  /* any library message that quotes the password is redacted; it stays
   * registered after the job, as the redactor has no reference counts */
  dsd_redact_register(json_string_value(json_object_get(creds, "password")));
  free(job->params.uri);
  job->params.uri = NULL;
  rc = dsd_cc_credentials_uri(creds, job->plan, &job->params.uri, err);
  if (rc < 0) {
    dsd_err_prefix(err, "service key of %s service instance \"%s\"", role, name);
    goto cleanup;
  }
  dsd__job_log(job, "service key %s created (%s); connecting to \"%s\"", k->name, k->guid,
               name);
cleanup:
  json_decref(creds);
  return rc;
}

/* Deletes the job's service key, after success, failure and cancel alike,
 * and records the outcome. On failure note says so (for the operation's
 * description) and the record keeps the key for recovery. */
static void dsd__cc_release(dsd_broker_job_t *job, dsd__cckey_t *k, char *note, size_t cap) {
  dsd_err_t err = {0};
  if (!k->recorded)
    return;
  int rc = dsd__key_delete(job->b, k->name, k->instance_guid, k->guid, &err);
  dsd__keyrec_t r = {k, rc < 0 ? dsd_err_msg(&err) : NULL, rc == 0};
  dsd_err_t rerr = {0};
  if (rc == 0)
    dsd__job_log(job, "service key %s deleted", k->name);
  else {
    dsd_log_error("instance %s op %s: service key %s could not be deleted: %s", job->instance_id,
                  job->op_id, k->name, dsd_err_msg(&err));
    snprintf(note, cap,
             "service key \"%s\" could not be deleted yet (%s); the broker keeps its record "
             "and retries",
             k->name, dsd_err_msg(&err));
  }
  if (dsd__key_record(job, dsd__key_update, &r, &rerr) < 0)
    dsd_log_error("instance %s: cannot record the service key's deletion: %s", job->instance_id,
                  dsd_err_msg(&rerr));
  free(k->guid);
  k->guid = NULL;
  k->recorded = false;
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

/* Records the end of a job. note (may be NULL or "") is a sentence added
 * to the description, e.g. about a service key left to delete. */
static void dsd__job_finish(dsd_broker_job_t *job, int rc, const dsd_err_t *err,
                            const char *ok_desc, const char *note) {
  char desc[2 * DSD_ERR_MSG_MAX + 64];
  const char *sep = note != NULL && note[0] != '\0' ? "\n" : "";
  if (note == NULL)
    note = "";
  if (rc == 0)
    snprintf(desc, sizeof(desc), "%s%s%s", ok_desc, sep, note);
  else if (rc == DSD_ECANCELED || atomic_load(&job->cancel))
    snprintf(desc, sizeof(desc), "%s%s%s",
             atomic_load(&job->b->stopping)
                 ? "the broker was stopped during this operation\nHINT: run it again"
             : atomic_load(&job->cancel_by_request)
                 ? "canceled on request (dashboard or task API)"
                 : "canceled: the instance is being deleted",
             sep, note);
  else
    snprintf(desc, sizeof(desc), "%s%s%s", dsd_err_msg(err), sep, note);
  job->outcome = rc == 0 ? 0 : (rc == DSD_ECANCELED || atomic_load(&job->cancel)) ? 2 : 1;
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
  dsd__cckey_t ck = {0};
  char key[400], note[DSD_ERR_MSG_MAX] = "";
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
  if (job->params.instance_name != NULL) {
    rc = dsd__cc_acquire(job, "source", &ck, &err);
    if (rc < 0)
      goto cleanup;
  }
  dsd__job_log(job, "dumping the %s source into %s", job->plan, key);
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
  job->bytes_moved = (uint64_t)json_integer_value(json_object_get(facts, "size"));
  job->rows_moved = (uint64_t)json_integer_value(json_object_get(facts, "rows"));

cleanup:
  /* before the operation ends: a deprovision waiting for it must find the
   * key gone */
  dsd__cc_release(job, &ck, note, sizeof(note));
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
  dsd__job_finish(job, rc, &err, ok, note);
  json_decref(facts);
}

static void dsd__job_update(dsd_broker_job_t *job) {
  dsd_broker_t *b = job->b;
  dsd_err_t err = {0};
  dsd__cckey_t ck = {0};
  char note[DSD_ERR_MSG_MAX] = "";
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
  if (job->params.instance_name != NULL) {
    rc = dsd__cc_acquire(job, "target", &ck, &err);
    if (rc < 0)
      goto cleanup;
  }
  dsd__job_log(job, "importing %s into the %s target (clean=%s)", key, job->plan,
               job->params.clean ? "true" : "false");
  /* Recorded before the target is touched, so that recovery after a crash
   * can say whether the target may hold a partial import. */
  dsd__job_record(job, NULL, NULL, NULL, job->params.clean ? "writing the target (clean)"
                                                           : "writing the target");
  rc = dsd__run_restore(job, key, &err);
  if (rc == 0) {
    /* an import moves the whole archive and every row it holds */
    json_t *dump = json_object_get(inst, "dump");
    job->bytes_moved = (uint64_t)json_integer_value(json_object_get(dump, "size"));
    job->rows_moved = (uint64_t)json_integer_value(json_object_get(dump, "rows"));
  }

cleanup:
  dsd__cc_release(job, &ck, note, sizeof(note));
  json_decref(inst);
  pthread_mutex_lock(&b->lock);
  inst = dsd__inst_load_locked(b, job->instance_id);
  if (inst != NULL && !json_is_true(json_object_get(inst, "deleting"))) {
    json_object_set_new(inst, "status", json_string("ready"));
    dsd__inst_store_locked(b, job->instance_id, inst);
  }
  json_decref(inst);
  pthread_mutex_unlock(&b->lock);
  dsd__job_finish(job, rc, &err, "import complete", note);
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

static int dsd__collect_key(void *data, const char *key, const dsd_blob_info_t *info) {
  json_array_append_new(data, json_string(key));
  return 0;
}

/* Deletes the service keys that any operation of the instance still lists
 * as not deleted: the operation records are about to go, and with them the
 * only trace of a key whose deletion failed. */
static int dsd__sweep_keys(dsd_broker_job_t *job, dsd_err_t *err) {
  dsd_broker_t *b = job->b;
  char prefix[600], note[DSD_ERR_MSG_MAX] = "";
  json_t *keys = json_array();
  int rc = 0, left = 0;
  if (keys == NULL)
    return dsd_err_set(err, DSD_ENOMEM, "out of memory");
  snprintf(prefix, sizeof(prefix), "instances/%s/operations/", job->instance_id);
  rc = dsd_blob_list(b->store, prefix, dsd__collect_key, keys, err);
  if (rc < 0)
    goto cleanup;
  size_t i;
  json_t *k;
  json_array_foreach(keys, i, k) {
    json_t *op = NULL;
    dsd_err_t gerr = {0};
    bool changed = false;
    pthread_mutex_lock(&b->lock);
    if (dsd_broker_state_get(b->store, json_string_value(k), &op, &gerr) == 0 &&
        !json_is_true(json_object_get(op, "deleted")) && dsd__op_has_live_keys(op)) {
      const char *state = json_string_value(json_object_get(op, "state"));
      /* a running operation's own job deletes its key; only those of ended
       * (or lease-expired) operations are left to this sweep */
      if (state == NULL || strcmp(state, "in progress") != 0) {
        left += dsd__op_release_keys(b, job->instance_id, op, true, &changed, note,
                                     sizeof(note));
        if (changed && dsd_broker_state_put(b->store, json_string_value(k), op, &gerr) < 0)
          dsd_log_warn("instance %s: %s", job->instance_id, dsd_err_msg(&gerr));
      }
    }
    pthread_mutex_unlock(&b->lock);
    json_decref(op);
  }
  if (left > 0)
    rc = dsd_err_set(err, DSD_EBUSY,
                     "the instance cannot be deleted yet: %s\nHINT: delete it again once the "
                     "cloud controller is reachable",
                     note);
cleanup:
  json_decref(keys);
  return rc;
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
  rc = dsd__sweep_keys(job, &err);
  if (rc < 0)
    goto cleanup;
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
    job->outcome = 0;
    dsd_log_info("instance %s op %s (deprovision): succeeded: instance deleted",
                 job->instance_id, job->op_id);
    json_decref(inst);
    return; /* the operation record is gone with the instance */
  }
cleanup:
  json_decref(inst);
  dsd__job_finish(job, rc, &err, "deleted", NULL);
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

    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    job->outcome = 1;
    dsd_broker_metrics_op_begin(job->type);
    if (job->type == DSD_OP_PROVISION)
      dsd__job_provision(job);
    else if (job->type == DSD_OP_UPDATE)
      dsd__job_update(job);
    else
      dsd__job_deprovision(job);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    dsd_broker_metrics_op_end(job->type, job->outcome,
                              (double)(t1.tv_sec - t0.tv_sec) +
                                  (double)(t1.tv_nsec - t0.tv_nsec) / 1e9,
                              job->bytes_moved, job->rows_moved);

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
        const char *asked = json_string_value(json_object_get(inst, "cancel_requested"));
        if (asked != NULL && strcmp(asked, j->op_id) == 0) {
          /* a cancel from the dashboard or task API, maybe made on another
           * broker process */
          atomic_store(&j->cancel_by_request, 1);
          atomic_store(&j->cancel, 1);
        }
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
  if (cfg->cf_api != NULL) {
    /* config.c made sure the three variables come together */
    dsd_cc_config_t ccfg = {.api_url = cfg->cf_api,
                            .client_id = cfg->cf_client_id,
                            .client_secret = cfg->cf_client_secret,
                            .skip_ssl_validation = cfg->cf_skip_ssl_validation};
    rc = dsd_cc_new(&ccfg, &b->cc, err);
    if (rc < 0)
      goto cleanup;
    dsd_log_info("cloud controller %s: service instance names are resolved there", cfg->cf_api);
  }
  b->workers = calloc((size_t)cfg->workers, sizeof(pthread_t));
  if (b->workers == NULL) {
    rc = dsd_err_set(err, DSD_ENOMEM, "out of memory");
    goto cleanup;
  }
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
    dsd__job_finish(job, DSD_ECANCELED, &err, "", NULL);
    dsd__job_free(job);
  }
  free(b->workers);
  b->workers = NULL;
  b->nworkers = 0;
  /* no job is left to use it */
  dsd_cc_free(b->cc);
  b->cc = NULL;
  pthread_cond_destroy(&b->cond);
  pthread_mutex_destroy(&b->lock);
}
