/*
 * broker.h - the Open Service Broker (OSB API v2.13..v2.17) of dsd.
 *
 * `dsd serve` (cli/cmd_serve.c) reads its configuration from the
 * environment (dsd_broker_config_from_env), opens the blob store, and runs
 * dsd_broker_serve() until SIGTERM/SIGINT. The broker is split so that the
 * OSB logic can be unit-tested without a socket:
 *
 *   config.c   environment -> dsd_broker_config_t
 *   catalog.c  the fixed service/plan catalog and its JSON schemas
 *   params.c   pure validation: API version header, ids, originating
 *              identity, provision/update/bind parameters, URI host rules
 *   state.c    JSON state objects in the blob store (instances, operations
 *              with their lease, bindings, tombstones)
 *   jobs.c     the bounded worker pool that runs dumps and imports, renews
 *              leases and honours cancel flags
 *   osb.c      the endpoints: request struct in, status + JSON out
 *   http.c     libmicrohttpd glue: auth, body limits, headers, request log
 *
 * State lives only in the blob store ("state kept on the resource"), so any
 * broker process reading the same store answers for any instance. The one
 * in-memory piece is the list of jobs this process runs (for cancel flags
 * and lease renewal) and the secrets those jobs hold (source/target URIs),
 * which are never written anywhere.
 *
 * Locking: dsd_broker_t.lock serialises every read-modify-write of state
 * objects done by this process (HTTP handlers, jobs, the lease renewer). It
 * does not protect against another process on the same store; the lease in
 * each operation record is what coordinates processes.
 */
#ifndef DSD_BROKER_BROKER_H
#define DSD_BROKER_BROKER_H

#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "broker/cc.h"
#include "core/blob.h"
#include "core/error.h"
#include "core/log.h"

/* ---------------------------------------------------------------- config */

typedef enum {
  DSD_DIRECT_URIS_NONE = 0,   /* "false": source_uri/target_uri refused */
  DSD_DIRECT_URIS_PUBLIC = 1, /* "true": any host but loopback/link-local */
  DSD_DIRECT_URIS_ALL = 2,    /* "all": any host (development, tests) */
} dsd_direct_uris_t;

typedef struct dsd_broker_config {
  int port;
  char *username;         /* owns */
  char *password;         /* owns; secret, registered with the redactor */
  char *storage_url;      /* owns */
  dsd_direct_uris_t direct_uris;
  char *public_url;       /* owns; no trailing '/' */
  char *cf_api;           /* owns; NULL when unset */
  char *cf_client_id;     /* owns; NULL when unset */
  char *cf_client_secret; /* owns; secret; NULL when unset */
  bool cf_skip_ssl_validation;
  dsd_log_level_t log_level;
  int workers;            /* job worker threads */
  int http_threads;       /* libmicrohttpd thread pool size */
  int lease_ttl_s;        /* an operation's lease lasts this long ... */
  int lease_renew_s;      /* ... and is renewed this often */
} dsd_broker_config_t;

/* Reads the configuration from the environment (see DESIGN.md). On error
 * (missing credentials, bad value) returns DSD_ECONFIG with a message naming
 * the variable. On success c owns its strings (dsd_broker_config_free). */
int dsd_broker_config_from_env(dsd_broker_config_t *c, dsd_err_t *err);
void dsd_broker_config_free(dsd_broker_config_t *c);

/* --------------------------------------------------------------- catalog */

#define DSD_BROKER_SERVICE_ID "8a4f0c51-7d1e-4f3b-9c2a-6b1d5e0f9a01"

typedef struct dsd_broker_plan {
  const char *name;           /* "pg", "mysql", "mongo" (== dialect name) */
  const char *id;             /* fixed UUID */
  const char *description;
  const char *const *schemes; /* accepted URI schemes, NULL-terminated */
} dsd_broker_plan_t;

/* The plan with this id, or NULL. Borrowed (static). */
const dsd_broker_plan_t *dsd_broker_plan_by_id(const char *id);
/* The catalog for API minor version `minor` (2.minor): only the fields that
 * version defines. Returns a new reference (caller owns), NULL on ENOMEM. */
json_t *dsd_broker_catalog(int minor);

/* ---------------------------------------------------------------- params */

#define DSD_BROKER_MIN_MINOR 13

/* Parses an X-Broker-API-Version value: "2.N" with N >= 13 (any later 2.x
 * is accepted). Returns 0 and sets *minor, or DSD_EINVAL with err saying
 * what is supported. */
int dsd_broker_version_parse(const char *hdr, int *minor, dsd_err_t *err);

/* An instance or binding id is safe to use in a storage key: 1..255 bytes
 * of [A-Za-z0-9._-], not "." or "..", no "..". */
bool dsd_broker_id_valid(const char *id);

/* Parses X-Broker-API-Originating-Identity ("PLATFORM BASE64(JSON)").
 * On success *user is a malloc'd "platform:user_id" (caller owns); for
 * cloudfoundry the JSON's user_id, otherwise its user_id or username.
 * Returns DSD_EINVAL on malformed values (*user NULL). */
int dsd_broker_identity_parse(const char *hdr, char **user);

/* What a provision or update asks for. Owns its strings and JSON. */
typedef struct dsd_broker_params {
  char *instance_name;  /* "source" / "target": a CF instance name */
  char *uri;            /* "source_uri" / "target_uri"; secret */
  char *compression;    /* "zstd" (default), "gzip", "none" */
  json_t *anonymize;    /* borrowed into the job; NULL if absent */
  bool clean;           /* update only; default true */
} dsd_broker_params_t;

void dsd_broker_params_free(dsd_broker_params_t *p);

/* Validates provision parameters (params may be NULL) for plan. Returns 0 or
 * DSD_EINVAL with a message that names the offending parameter and says
 * what to change. */
int dsd_broker_params_provision(const dsd_broker_config_t *cfg,
                                const dsd_broker_plan_t *plan,
                                const json_t *params, dsd_broker_params_t *out,
                                dsd_err_t *err);
/* Same for update parameters (target, target_uri, clean). */
int dsd_broker_params_update(const dsd_broker_config_t *cfg,
                             const dsd_broker_plan_t *plan,
                             const json_t *params, dsd_broker_params_t *out,
                             dsd_err_t *err);

/* Checks a connection URI against the plan's schemes and the
 * DSD_ALLOW_DIRECT_URIS mode (what = "source_uri" or "target_uri", for the
 * message). The URI never appears in err. */
int dsd_broker_uri_check(dsd_direct_uris_t mode, const dsd_broker_plan_t *plan,
                         const char *what, const char *uri, dsd_err_t *err);

/* A malloc'd copy of uri without the password of its userinfo
 * ("pg://u:p@h/db" -> "pg://u@h/db"); caller owns. NULL on ENOMEM. */
char *dsd_broker_uri_strip_password(const char *uri);

/* ----------------------------------------------------------------- state */

/* Reads the JSON object at key. DSD_ENOTFOUND if absent. *out is a new
 * reference (caller owns). */
int dsd_broker_state_get(dsd_blob_store_t *s, const char *key, json_t **out,
                         dsd_err_t *err);
/* Writes obj (borrowed) at key atomically. */
int dsd_broker_state_put(dsd_blob_store_t *s, const char *key,
                         const json_t *obj, dsd_err_t *err);
/* Deletes every object whose key starts with prefix. */
int dsd_broker_state_delete_prefix(dsd_blob_store_t *s, const char *prefix,
                                   dsd_err_t *err);

/* Key builders: write into buf (cap bytes); ids must be valid. */
void dsd_broker_key_instance(char *buf, size_t cap, const char *id);
void dsd_broker_key_op(char *buf, size_t cap, const char *id, const char *op);
void dsd_broker_key_binding(char *buf, size_t cap, const char *id,
                            const char *bid);
void dsd_broker_key_tombstone(char *buf, size_t cap, const char *id);

/* Seconds since the epoch (wall clock: leases are compared across
 * processes). */
int64_t dsd_broker_now(void);
/* ISO 8601 UTC timestamp of t into buf (>= 21 bytes). */
void dsd_broker_iso8601(int64_t t, char *buf, size_t cap);
/* Random lower-case hex string of 2*nbytes chars into buf. */
int dsd_broker_random_hex(char *buf, size_t nbytes);

/* ------------------------------------------------------------------ jobs */

typedef enum {
  DSD_OP_PROVISION = 0,
  DSD_OP_UPDATE = 1,
  DSD_OP_DEPROVISION = 2,
} dsd_op_type_t;

const char *dsd_broker_op_type_name(dsd_op_type_t t);

typedef struct dsd_broker dsd_broker_t;

/* One operation run by this process. The job owns its secrets (uri) and
 * frees them when it ends; nothing secret is ever copied into state. */
typedef struct dsd_broker_job {
  dsd_broker_t *b;                /* borrowed */
  dsd_op_type_t type;
  char instance_id[256];
  char op_id[64];
  char plan[16];                  /* dialect name */
  /* Where a `source`/`target` name is looked up: the CF space of the
   * request's context (update: else the one recorded at provision), and the
   * originating identity ("platform:user_id", "" for a platform call) whose
   * space_developer role is checked there. */
  char space_guid[256];
  char user[256];
  dsd_broker_params_t params;     /* owns */
  atomic_int cancel;
  atomic_int running;             /* 1 once a worker picked it up */
  int64_t last_progress_write;    /* guarded by b->lock */
  char progress[512];             /* guarded by b->lock */
  json_t *pending_log;            /* lines not yet stored; guarded by b->lock */
  /* Set with cancel when the dashboard or the task API (not a DELETE) asked
   * for the cancel: the operation's description says so. */
  atomic_int cancel_by_request;
  /* For /metrics, filled by the job as it ends: outcome (0 succeeded,
   * 1 failed, 2 canceled), archive bytes and rows moved. */
  int outcome;
  uint64_t bytes_moved;
  uint64_t rows_moved;
  struct dsd_broker_job *next;    /* guarded by b->lock */
} dsd_broker_job_t;

struct dsd_broker {
  const dsd_broker_config_t *cfg; /* borrowed */
  dsd_blob_store_t *store;        /* borrowed */
  char owner[160];                /* lease owner: hostname:pid:random */
  pthread_mutex_t lock;
  pthread_cond_t cond;            /* signalled when jobs are queued/end */
  dsd_broker_job_t *queue;        /* waiting jobs, FIFO; guarded by lock */
  dsd_broker_job_t *active;       /* running jobs; guarded by lock */
  pthread_t *workers;
  int nworkers;
  pthread_t renewer;
  bool renewer_started;
  atomic_int stopping;
  /* The Cloud Controller client shared by every job (its own lock guards
   * its token cache); NULL when DSD_CF_API is unset. Owns. */
  dsd_cc_t *cc;
};

/* Initialises b, creates the Cloud Controller client when cfg->cf_api is
 * set, and starts the worker pool and the lease renewer. */
int dsd_broker_init(dsd_broker_t *b, const dsd_broker_config_t *cfg,
                    dsd_blob_store_t *store, dsd_err_t *err);
/* Cancels running jobs, records them as failed ("the broker was stopped"),
 * joins every thread. */
void dsd_broker_shutdown(dsd_broker_t *b);

/* Queues a job (takes ownership of job). Never blocks on the job. */
void dsd_broker_job_submit(dsd_broker_t *b, dsd_broker_job_t *job);
/* Sets the cancel flag of this process's job for instance id, if any.
 * Returns true when such a job exists. Caller holds b->lock. */
bool dsd_broker_job_cancel_locked(dsd_broker_t *b, const char *instance_id);

/* Builds a new operation record ("in progress", lease owned by b). New
 * reference. */
json_t *dsd_broker_op_new(dsd_broker_t *b, dsd_op_type_t type,
                          const char *op_id, const char *user,
                          const char *request_identity);
/* If op is "in progress" and its lease expired, cleans up the transient
 * resources it lists, marks it failed (and the instance accordingly), writes
 * it back and returns true. A transient service key that cannot be deleted
 * (Cloud Controller unreachable) stays listed as not deleted, in this and in
 * finished operations, and is retried by a later call once its retry time
 * has passed. Caller holds b->lock; inst may be NULL. Makes Cloud Controller
 * calls under the lock when service keys are listed. */
bool dsd_broker_op_recover_locked(dsd_broker_t *b, const char *instance_id,
                                  json_t *inst, json_t *op);

/* ------------------------------------------------------------ osb / http */

typedef struct dsd_broker_req {
  const char *method;
  const char *path;               /* decoded, without the query */
  const char *body;               /* may be NULL */
  size_t body_len;
  int minor;                      /* parsed API version 2.minor */
  const char *user;               /* originating identity or NULL */
  const char *request_identity;   /* or NULL */
  /* Query parameters (NULL when absent). */
  const char *q_accepts_incomplete;
  const char *q_service_id;
  const char *q_plan_id;
  const char *q_operation;
} dsd_broker_req_t;

typedef struct dsd_broker_resp {
  int status;
  json_t *body;                   /* owns */
  int retry_after;                /* seconds; 0: no header */
} dsd_broker_resp_t;

/* Answers one authenticated, version-checked OSB request. */
void dsd_broker_handle(dsd_broker_t *b, const dsd_broker_req_t *req,
                       dsd_broker_resp_t *resp);

/* Opens the store named by url: file:// always, s3:// when the s3 module
 * is built. *out is owned by the caller (dsd_blob_store_free). */
int dsd_broker_store_open(const char *url, dsd_blob_store_t **out, dsd_err_t *err);

/* Runs the HTTP server until SIGTERM/SIGINT, then shuts down gracefully.
 * Returns 0 or a negative code with err set. */
int dsd_broker_serve(dsd_broker_t *b, dsd_err_t *err);

/* GET /v1/dumps/:id/download: checks a binding's credentials (user is the
 * binding id) and opens a reader on the dump. On success *reader is owned
 * by the caller and filename holds the object's base name. Wrong or unknown
 * credentials give DSD_EAUTH, without saying which. */
int dsd_broker_download_open(dsd_broker_t *b, const char *id, const char *user,
                             const char *pass, dsd_blob_reader_t **reader, uint64_t *size,
                             char *filename, size_t cap, dsd_err_t *err);

/* Splits a "Basic BASE64" Authorization value into malloc'd user and
 * password (caller owns both). DSD_EINVAL when malformed. */
int dsd_broker_basic_auth_parse(const char *header, char **user, char **pass);

/* Constant-time check of an Authorization header value against the
 * configured credentials. */
bool dsd_broker_auth_ok(const dsd_broker_config_t *cfg, const char *header);

/* ---------------------------------------------------------------- access
 *
 * The endpoints for people and automation (issue 8), each in its own file:
 *   download.c   GET /v1/dumps/:id/download (binding credentials) and the
 *                dashboard's download: streamed from the store, one Range
 *                honoured (206/416)
 *   dashboard.c  GET /dashboard/:id?token=... (HTML), POST .../cancel; the
 *                per-instance dashboard token (only its salted hash is stored)
 *   tasks.c      POST /v1/instances/:id/imports, GET|DELETE /v1/tasks/:task;
 *                the paged operation log (instances/<id>/logs/<op>/NNNNNN.json)
 *   metrics.c    GET /metrics (Prometheus text; broker credentials) and
 *                GET /healthz (open)
 * Each *_serve function answers one request on c and returns the HTTP
 * status it queued (0 when it queued nothing and the connection must be
 * closed). */
struct MHD_Connection;

int dsd_broker_download_serve(dsd_broker_t *b, struct MHD_Connection *c, const char *url,
                              const char *method);
/* Streams the dump object dkey (size bytes) to c, honouring a Range header.
 * filename is the attachment name. Returns the status queued. */
int dsd__broker_stream_dump(dsd_broker_t *b, struct MHD_Connection *c, const char *dkey,
                            const char *filename, const char *sha256, dsd_err_t *err);

int dsd_broker_dashboard_serve(dsd_broker_t *b, struct MHD_Connection *c, const char *url,
                               const char *method, const char *body, size_t body_len);
/* Adds a dashboard salt and the hash of the derived token to inst (a new
 * instance object). */
int dsd_broker_dashboard_init(dsd_broker_t *b, const char *id, json_t *inst, dsd_err_t *err);
/* The dashboard_url of an instance as a new JSON string (caller owns), or
 * NULL when the instance has no dashboard (made by an older broker). The
 * token is derived again from the stored salt: it is never stored. */
json_t *dsd_broker_dashboard_url(dsd_broker_t *b, const char *id, const json_t *inst);
/* Whether token is the instance's dashboard token (constant time). */
bool dsd_broker_dashboard_token_ok(dsd_broker_t *b, const char *id, const json_t *inst,
                                   const char *token);
/* The request's token: "Authorization: Bearer T" or ?token=T (borrowed
 * from c), NULL when neither. */
const char *dsd__broker_request_token(struct MHD_Connection *c);
/* Asks the running provision or update of instance id to stop (this
 * process's job at once; another process's through the instance object,
 * read by its lease renewer). DSD_ENOTFOUND: no such instance; DSD_EBUSY:
 * op_id (or, when NULL, the last operation) is not a running provision or
 * update. */
int dsd_broker_cancel_request(dsd_broker_t *b, const char *id, const char *op_id,
                              dsd_err_t *err);

/* Loads instance id and its last operation (recovering one whose lease
 * expired); *op may be NULL. DSD_ENOTFOUND when there is no instance (a
 * store error otherwise, in err). Takes b->lock. New references. */
int dsd__broker_instance_load(dsd_broker_t *b, const char *id, json_t **inst, json_t **op,
                              dsd_err_t *err);
/* Whether the request may act on instance id: the broker's basic
 * credentials, or the instance's dashboard token (Bearer or ?token=). */
bool dsd__broker_access_ok(dsd_broker_t *b, struct MHD_Connection *c, const char *id,
                           const json_t *inst);

int dsd_broker_tasks_serve(dsd_broker_t *b, struct MHD_Connection *c, const char *url,
                           const char *method, const char *body, size_t body_len);

/* The complete operation log, in pages of DSD_BROKER_LOG_PAGE lines under
 * instances/<id>/logs/<op>/NNNNNN.json (numbered from 1). op["log_lines"] is
 * the number of lines stored; op["log"] keeps the last few for a quick
 * look. Appends lines (borrowed array of {"at","line"}) and updates op
 * (written by the caller). Caller holds b->lock. */
#define DSD_BROKER_LOG_PAGE 100
int dsd_broker_oplog_append_locked(dsd_broker_t *b, const char *id, const char *op_id,
                                   json_t *op, const json_t *lines, dsd_err_t *err);
/* Reads at most max lines from absolute offset. *lines is a new array
 * (caller owns); *next the offset after the last line returned. A record
 * without pages (older broker) is served from op["log"]. */
int dsd_broker_oplog_read(dsd_broker_t *b, const char *id, const char *op_id, const json_t *op,
                          size_t offset, size_t max, json_t **lines, size_t *next,
                          dsd_err_t *err);

int dsd_broker_metrics_serve(dsd_broker_t *b, struct MHD_Connection *c, const char *url,
                             const char *method);
/* Job accounting for /metrics (thread-safe). */
void dsd_broker_metrics_op_begin(dsd_op_type_t type);
void dsd_broker_metrics_op_end(dsd_op_type_t type, int outcome, double seconds, uint64_t bytes,
                               uint64_t rows);
void dsd_broker_metrics_http(int status);

/* Shared replies of http.c for the access endpoints. body is borrowed. */
int dsd__broker_send_json(struct MHD_Connection *c, int status, const json_t *body);
int dsd__broker_send_error(struct MHD_Connection *c, int status, const char *code,
                           const char *desc);
/* text is copied. */
int dsd__broker_send_text(struct MHD_Connection *c, int status, const char *content_type,
                          const char *text, size_t len);

#endif
