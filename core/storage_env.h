/*
 * storage_env.h - where the broker keeps dumps and state, from the
 * environment (Cloud Foundry style).
 *
 *   DSD_STORAGE set        -> that URL (file:///abs/dir or s3://bucket[/prefix])
 *   else VCAP_SERVICES has an S3 service (credentials with a bucket and an
 *        access key pair, as the AWS service broker, minio and ECS brokers
 *        give them) -> s3://bucket, and AWS_ACCESS_KEY_ID,
 *        AWS_SECRET_ACCESS_KEY, AWS_REGION, AWS_ENDPOINT_URL_S3 are set from
 *        it unless already set
 *   else                   -> file://$PWD/dsd-data
 */
#ifndef DSD_CORE_STORAGE_ENV_H
#define DSD_CORE_STORAGE_ENV_H

#include "core/error.h"

/* On success *url is malloc'd (caller frees). The secret key found in
 * VCAP_SERVICES is registered for redaction. */
int dsd_storage_url_from_env(char **url, dsd_err_t *err);

/* The same from explicit values (vcap may be NULL), for tests; cwd is used
 * for the default. setenv_fn receives the AWS_* variables to set. */
int dsd__storage_url_resolve(const char *storage, const char *vcap, const char *cwd,
                             void (*setenv_fn)(const char *name, const char *value),
                             char **url, dsd_err_t *err);

#endif
