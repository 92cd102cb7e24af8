/*
 * metrics.c - GET /metrics (Prometheus text format 0.0.4) and GET /healthz.
 *
 * /metrics needs the broker's basic credentials (Prometheus scrape configs
 * take basic_auth): instance ids and operation counts are the platform's
 * business. /healthz is open, for load balancers and `cf push` health
 * checks: 200 {"status":"ok"} when the state store takes a write (one
 * shared object, health/probe.json) and answers a listing, 503
 * {"status":"unavailable", "description"} otherwise.
 *
 * The counters are process-wide (one broker per process) and guarded by one
 * mutex: jobs report a handful of times per operation, HTTP once per request.
 * They count what this process did since it started, as Prometheus expects
 * (it handles restarts); the store, not these counters, is the record.
 *
 *   dsd_operations_total{type,outcome}        counter
 *   dsd_operation_duration_seconds{type}      histogram
 *   dsd_operations_in_flight{type}            gauge
 *   dsd_bytes_moved_total{type}               counter (archive bytes)
 *   dsd_rows_moved_total{type}                counter
 *   dsd_s3_retries_total                      counter (s3 client retries)
 *   dsd_http_requests_total{code}             counter (by status class)
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <microhttpd.h>

#include "broker/broker.h"
#include "core/buf.h"

#ifdef DSD_HAVE_S3
#include "s3/s3.h"
#endif

#define DSD__NTYPES 3
#define DSD__NOUTCOMES 3

static const double dsd__buckets[] = {1, 5, 15, 60, 300, 900, 3600, 4 * 3600, 12 * 3600};
#define DSD__NBUCKETS (sizeof(dsd__buckets) / sizeof(dsd__buckets[0]))

static struct {
  pthread_mutex_t lock;
  uint64_t ops[DSD__NTYPES][DSD__NOUTCOMES];
  uint64_t in_flight[DSD__NTYPES];
  uint64_t bucket[DSD__NTYPES][DSD__NBUCKETS]; /* cumulative counts */
  uint64_t count[DSD__NTYPES];
  double sum[DSD__NTYPES];
  uint64_t bytes[DSD__NTYPES];
  uint64_t rows[DSD__NTYPES];
  uint64_t http[6]; /* 1xx..5xx; [0]: no answer */
} dsd__m = {.lock = PTHREAD_MUTEX_INITIALIZER};

static const char *const dsd__outcomes[DSD__NOUTCOMES] = {"succeeded", "failed", "canceled"};

void dsd_broker_metrics_op_begin(dsd_op_type_t type) {
  if ((unsigned)type >= DSD__NTYPES)
    return;
  pthread_mutex_lock(&dsd__m.lock);
  dsd__m.in_flight[type]++;
  pthread_mutex_unlock(&dsd__m.lock);
}

void dsd_broker_metrics_op_end(dsd_op_type_t type, int outcome, double seconds, uint64_t bytes,
                               uint64_t rows) {
  if ((unsigned)type >= DSD__NTYPES)
    return;
  if (outcome < 0 || outcome >= DSD__NOUTCOMES)
    outcome = 1;
  pthread_mutex_lock(&dsd__m.lock);
  if (dsd__m.in_flight[type] > 0)
    dsd__m.in_flight[type]--;
  dsd__m.ops[type][outcome]++;
  for (size_t i = 0; i < DSD__NBUCKETS; i++)
    if (seconds <= dsd__buckets[i])
      dsd__m.bucket[type][i]++;
  dsd__m.count[type]++;
  dsd__m.sum[type] += seconds;
  if (outcome == 0) {
    dsd__m.bytes[type] += bytes;
    dsd__m.rows[type] += rows;
  }
  pthread_mutex_unlock(&dsd__m.lock);
}

void dsd_broker_metrics_http(int status) {
  int cls = status >= 100 && status < 600 ? status / 100 : 0;
  pthread_mutex_lock(&dsd__m.lock);
  dsd__m.http[cls]++;
  pthread_mutex_unlock(&dsd__m.lock);
}

static void dsd__render(dsd_buf_t *o) {
  pthread_mutex_lock(&dsd__m.lock);
  dsd_buf_append_str(o, "# HELP dsd_operations_total Operations finished by this broker "
                        "process, by type and outcome.\n# TYPE dsd_operations_total counter\n");
  for (int t = 0; t < DSD__NTYPES; t++)
    for (int k = 0; k < DSD__NOUTCOMES; k++)
      dsd_buf_printf(o, "dsd_operations_total{type=\"%s\",outcome=\"%s\"} %llu\n",
                     dsd_broker_op_type_name((dsd_op_type_t)t), dsd__outcomes[k],
                     (unsigned long long)dsd__m.ops[t][k]);
  dsd_buf_append_str(o, "# HELP dsd_operations_in_flight Operations running now.\n"
                        "# TYPE dsd_operations_in_flight gauge\n");
  for (int t = 0; t < DSD__NTYPES; t++)
    dsd_buf_printf(o, "dsd_operations_in_flight{type=\"%s\"} %llu\n",
                   dsd_broker_op_type_name((dsd_op_type_t)t),
                   (unsigned long long)dsd__m.in_flight[t]);
  dsd_buf_append_str(o, "# HELP dsd_operation_duration_seconds How long operations ran.\n"
                        "# TYPE dsd_operation_duration_seconds histogram\n");
  for (int t = 0; t < DSD__NTYPES; t++) {
    const char *name = dsd_broker_op_type_name((dsd_op_type_t)t);
    for (size_t i = 0; i < DSD__NBUCKETS; i++)
      dsd_buf_printf(o, "dsd_operation_duration_seconds_bucket{type=\"%s\",le=\"%g\"} %llu\n",
                     name, dsd__buckets[i], (unsigned long long)dsd__m.bucket[t][i]);
    dsd_buf_printf(o, "dsd_operation_duration_seconds_bucket{type=\"%s\",le=\"+Inf\"} %llu\n",
                   name, (unsigned long long)dsd__m.count[t]);
    dsd_buf_printf(o, "dsd_operation_duration_seconds_sum{type=\"%s\"} %.3f\n", name,
                   dsd__m.sum[t]);
    dsd_buf_printf(o, "dsd_operation_duration_seconds_count{type=\"%s\"} %llu\n", name,
                   (unsigned long long)dsd__m.count[t]);
  }
  dsd_buf_append_str(o, "# HELP dsd_bytes_moved_total Archive bytes written by dumps and read "
                        "by imports that succeeded.\n# TYPE dsd_bytes_moved_total counter\n");
  for (int t = 0; t < 2; t++)
    dsd_buf_printf(o, "dsd_bytes_moved_total{type=\"%s\"} %llu\n",
                   dsd_broker_op_type_name((dsd_op_type_t)t), (unsigned long long)dsd__m.bytes[t]);
  dsd_buf_append_str(o, "# HELP dsd_rows_moved_total Rows dumped or imported by operations "
                        "that succeeded.\n# TYPE dsd_rows_moved_total counter\n");
  for (int t = 0; t < 2; t++)
    dsd_buf_printf(o, "dsd_rows_moved_total{type=\"%s\"} %llu\n",
                   dsd_broker_op_type_name((dsd_op_type_t)t), (unsigned long long)dsd__m.rows[t]);
  dsd_buf_append_str(o, "# HELP dsd_http_requests_total HTTP requests answered, by status "
                        "class.\n# TYPE dsd_http_requests_total counter\n");
  for (int k = 1; k < 6; k++)
    dsd_buf_printf(o, "dsd_http_requests_total{code=\"%dxx\"} %llu\n", k,
                   (unsigned long long)dsd__m.http[k]);
  pthread_mutex_unlock(&dsd__m.lock);
  unsigned long retries = 0;
#ifdef DSD_HAVE_S3
  retries = dsd_s3_retries_total();
#endif
  dsd_buf_printf(o, "# HELP dsd_s3_retries_total S3 requests retried after a transient "
                    "failure.\n# TYPE dsd_s3_retries_total counter\ndsd_s3_retries_total %lu\n",
                 retries);
}

static int dsd__stop_at_first(void *data, const char *key, const dsd_blob_info_t *info) {
  return 1;
}

int dsd_broker_metrics_serve(dsd_broker_t *b, struct MHD_Connection *c, const char *url,
                             const char *method) {
  if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0)
    return dsd__broker_send_error(c, 405, "MethodNotAllowed", "use GET");
  if (strcmp(url, "/healthz") == 0) {
    dsd_err_t err = {0};
    json_t *body = NULL;
    int status;
    /* the broker must be able to write its state, and a read alone does not
     * tell (the file backend reads a missing directory as empty): write one
     * small shared object, then list */
    char stamp[32], probe[256];
    dsd_broker_iso8601(dsd_broker_now(), stamp, sizeof(stamp));
    int n = snprintf(probe, sizeof(probe), "{\"at\":\"%s\"}", stamp);
    if (dsd_blob_put(b->store, "health/probe.json", probe, (size_t)n, &err) == 0 &&
        dsd_blob_list(b->store, "instances/", dsd__stop_at_first, NULL, &err) == 0) {
      body = json_pack("{s:s}", "status", "ok");
      status = 200;
    } else {
      char red[DSD_ERR_MSG_MAX];
      dsd_redact_into(dsd_err_msg(&err), red, sizeof(red));
      body = json_pack("{s:s, s:s}", "status", "unavailable", "description", red);
      status = 503;
    }
    int rc = dsd__broker_send_json(c, status, body);
    json_decref(body);
    return rc;
  }
  const char *auth = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
  if (!dsd_broker_auth_ok(b->cfg, auth))
    return dsd__broker_send_error(c, 401, "Unauthorized", "missing or wrong broker credentials");
  dsd_buf_t o = DSD_BUF_INIT;
  dsd__render(&o);
  int rc = o.data ? dsd__broker_send_text(c, 200, "text/plain; version=0.0.4; charset=utf-8",
                                          o.data, o.len)
                  : dsd__broker_send_error(c, 500, "InternalError", "out of memory");
  dsd_buf_free(&o);
  return rc;
}
