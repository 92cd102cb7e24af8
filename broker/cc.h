/*
 * cc.h - Cloud Controller v3 and UAA client.
 *
 * The broker resolves the service instance names a user passes as `source` or
 * `target` through the Cloud Controller (CC) v3 API, checks that the user who
 * asked is a space developer there, and reads the database's credentials
 * through a transient service key that it always deletes afterwards.
 *
 * Typical use from a job:
 *
 *   dsd_cc_config_t cfg;
 *   if (dsd_cc_config_from_env(&cfg, &err) == 0 && dsd_cc_new(&cfg, &cc, &err) == 0) {
 *     dsd_cc_find_instance(cc, "sourcedb", space_guid, &inst, &err);
 *     dsd_cc_create_key(cc, inst.guid, "dsd-op-1234", &job->cancel, &key_guid, &err);
 *     dsd_cc_key_details(cc, key_guid, &creds, &err);
 *     dsd_cc_credentials_uri(creds, "pg", &uri, &err);
 *     ... dump ...
 *     dsd_cc_delete_key(cc, key_guid, &err);
 *   }
 *
 * The broker authenticates as a UAA client with the client-credentials grant.
 * The UAA is found from the CC root document (`GET /`, links.uaa.href). The
 * token is cached until shortly before it expires; a 401 from the CC makes the
 * client fetch one new token and retry the request once.
 *
 * Threads: one dsd_cc_t is shared by all jobs. Every call uses its own curl
 * handle; the token cache and the discovered UAA URL are guarded by a mutex
 * inside dsd_cc_t, held while a token is fetched so concurrent jobs do not
 * all ask the UAA at once.
 *
 * Secrets: the client secret is registered with the log redactor, goes to
 * curl only through CURLOPT_PASSWORD and never into a message; key
 * credentials are returned to the caller and never logged here.
 */
#ifndef DSD_BROKER_CC_H
#define DSD_BROKER_CC_H

#include <jansson.h>
#include <stdatomic.h>
#include <stdbool.h>

#include "core/error.h"

typedef struct dsd_cc dsd_cc_t;

typedef struct dsd_cc_config {
  const char *api_url;       /* https://api.sys.example.com (borrowed) */
  const char *client_id;     /* UAA client id (borrowed) */
  const char *client_secret; /* UAA client secret (borrowed; a secret) */
  bool skip_ssl_validation;  /* test foundations only */
  /* Tunables; 0 means the default. Tests shorten them. */
  int poll_initial_ms; /* first wait between job polls (default 500) */
  int poll_max_ms;     /* longest wait between job polls (default 5000) */
  int job_timeout_s;   /* give up on a CC job after this long (default 900) */
  int http_timeout_s;  /* per-request timeout (default 60) */
} dsd_cc_config_t;

/* Fills cfg from DSD_CF_API, DSD_CF_CLIENT_ID, DSD_CF_CLIENT_SECRET and
 * DSD_CF_SKIP_SSL_VALIDATION. The strings are borrowed from the environment.
 * Returns DSD_ENOTFOUND when DSD_CF_API is unset (the CC is not configured),
 * DSD_ECONFIG when it is set but the client id or secret is missing or
 * DSD_CF_SKIP_SSL_VALIDATION is not a boolean. */
int dsd_cc_config_from_env(dsd_cc_config_t *cfg, dsd_err_t *err);

/* Creates a client (caller owns; dsd_cc_free). Copies cfg's strings and
 * registers the secret with the redactor. Makes no network call: the UAA is
 * discovered on first use. */
int dsd_cc_new(const dsd_cc_config_t *cfg, dsd_cc_t **out, dsd_err_t *err);
void dsd_cc_free(dsd_cc_t *cc);

/* A service instance as found by dsd_cc_find_instance. Plain arrays: the
 * struct owns nothing. Empty strings where CC gave no value (user-provided
 * instances have no plan or offering). */
typedef struct dsd_cc_instance {
  char guid[64];
  char name[256];
  char type[32];          /* "managed" or "user-provided" */
  char space_guid[64];
  char last_op_type[32];  /* "create", "update", ... */
  char last_op_state[32]; /* "succeeded", "in progress", "failed" */
  char plan[256];         /* service plan name */
  char offering[256];     /* service offering name */
} dsd_cc_instance_t;

/* Finds the service instance named name in space space_guid. Returns
 * DSD_ENOTFOUND when there is none, DSD_EBUSY when it has an operation in
 * progress (out is filled all the same). */
int dsd_cc_find_instance(dsd_cc_t *cc, const char *name, const char *space_guid,
                         dsd_cc_instance_t *out, dsd_err_t *err);

/* Sets *yes to whether user_guid holds the space_developer role in
 * space_guid. */
int dsd_cc_user_is_space_developer(dsd_cc_t *cc, const char *user_guid, const char *space_guid,
                                   bool *yes, dsd_err_t *err);

/* Creates a service key named key_name on instance_guid and waits for CC's
 * job to complete. On success *guid is the key's guid (caller owns; free()).
 * Returns DSD_EBUSY (with CC's text) when CC refuses because an operation is
 * in progress, DSD_EEXIST when the name is taken, DSD_ECANCELED when *cancel
 * becomes non-zero while waiting (cancel may be NULL), DSD_ETIMEDOUT after
 * job_timeout_s, DSD_EIO when CC's job failed. After any failure once CC
 * accepted the request (ECANCELED, ETIMEDOUT, EIO, a lost answer) the key may
 * exist or appear later: find it with dsd_cc_find_key and delete it, as
 * crash recovery does. */
int dsd_cc_create_key(dsd_cc_t *cc, const char *instance_guid, const char *key_name,
                      const atomic_int *cancel, char **guid, dsd_err_t *err);

/* Reads a key's credentials object (caller owns the reference; it holds
 * secrets: never log it). */
int dsd_cc_key_details(dsd_cc_t *cc, const char *key_guid, json_t **credentials,
                       dsd_err_t *err);

/* Deletes a key and waits for CC's job. A key that is already gone counts as
 * deleted. Connection errors and 5xx answers are retried with backoff. */
int dsd_cc_delete_key(dsd_cc_t *cc, const char *key_guid, dsd_err_t *err);

/* Finds the key named key_name on instance_guid (crash recovery). *guid is
 * the guid (caller owns; free()); DSD_ENOTFOUND when there is no such key. */
int dsd_cc_find_key(dsd_cc_t *cc, const char *instance_guid, const char *key_name, char **guid,
                    dsd_err_t *err);

/* The whole sequence a job runs for a `source` or `target` given by name:
 * find the instance in space_guid, refuse it when its offering or plan names
 * another dialect than dialect, check (when user_guid is not NULL) that the
 * user is a space developer there, create the key key_name, read its
 * credentials and build the connection URI.
 * On success *key_guid (the live key: delete it with dsd_cc_delete_key when
 * done) and *uri (holds the password) are caller-owned (free()). On failure
 * both are NULL and no key is left behind when it could be deleted; if even
 * that failed, err says so and recovery must delete key_name (record it
 * before calling). Errors: those of the calls above, DSD_EDENIED when the
 * user is not a space developer, DSD_EINVAL on a dialect mismatch. */
int dsd_cc_acquire_uri(dsd_cc_t *cc, const char *name, const char *space_guid,
                       const char *user_guid, const char *dialect, const char *key_name,
                       const atomic_int *cancel, char **key_guid, char **uri, dsd_err_t *err);

/* --- credentials (cc_creds.c) --- */

/* Builds a connection URI for dialect ("pg", "mysql" or "mongo") from the
 * credentials object of a service key, whichever of the usual shapes the
 * database's broker used: "uri"/"url" (postgres://, postgresql://, mysql://,
 * mysql2://, mongodb://, mongodb+srv://), "jdbcUrl" (jdbc:postgresql:// or
 * jdbc:mysql:// with user and password in the query), or separate fields
 * (hostname/host/db_host, port/db_port, name/database/db/db_name,
 * username/user, password). User and password are percent-encoded. *uri is
 * caller-owned (free()); it contains the password. Returns DSD_EINVAL when the
 * credentials are of another dialect or lack what is needed. */
int dsd_cc_credentials_uri(const json_t *creds, const char *dialect, char **uri, dsd_err_t *err);

/* Guesses the dialect ("pg", "mysql", "mongo") of a service offering and plan
 * from their names (postgres/pg, mysql/mariadb, mongo); NULL when neither
 * name says. The returned string is static. */
const char *dsd_cc_dialect_of(const char *offering, const char *plan);

/* Percent-encodes s for a URI component (RFC 3986 unreserved characters kept).
 * Caller owns the result (free()); NULL on out-of-memory. */
char *dsd_cc_urlencode(const char *s);

#endif
