/*
 * pipeline.c - dump and restore end to end (see pipeline.h).
 *
 * Dump: pick the dialect (plan name and URI scheme must agree), parse the
 * anonymization rules, let the dialect connect and describe the source
 * (dump_prepare: nothing is written before it succeeds), then open the blob
 * writer and the archive writer, let the dialect stream its entries
 * (dump_run), write the summary and commit the object. Any failure or
 * cancel aborts the archive writer and the blob writer, so the store keeps
 * no object, no multipart upload and no temporary file.
 *
 * Compression runs on its own zstd threads when dsd is built with libzstd
 * (see dsd__compress_threads) so that it overlaps with reading the source.
 *
 * Restore: open the archive, read its manifest, check that the target URI
 * belongs to the manifest's dialect, hand the reader to the dialect.
 *
 * Progress: the dialect reports raw counters from its worker threads; the
 * pipeline turns them into a rate (exponentially smoothed), a percentage
 * and an ETA, and calls the caller's hook under one lock (so hooks need not
 * be thread-safe) at most every 200 ms, plus on every phase change. Log
 * lines from the dialect are redacted before they reach the hook.
 */
#include "dialects/pipeline.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/log.h"

#ifdef DSD_HAVE_ANONYMIZE
#include "anonymize/anonymize.h"
#endif

#define DSD__PROGRESS_MIN_INTERVAL 0.2 /* seconds between progress hooks */
#define DSD__RATE_WINDOW 1.0           /* seconds between rate samples */
#define DSD__RATE_ALPHA 0.3            /* weight of the newest sample */

typedef struct dsd__pipe {
  pthread_mutex_t lock; /* guards everything below and the hook calls */
  const dsd_pipeline_hooks_t *hooks;
  dsd_archive_writer_t *w; /* for compressed bytes; may be NULL */
  double start, sample_t, last_emit;
  uint64_t sample_bytes;
  double rate;
  char phase[32];
} dsd__pipe_t;

static double dsd__now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void dsd__pipe_init(dsd__pipe_t *p, const dsd_pipeline_hooks_t *hooks) {
  memset(p, 0, sizeof *p);
  pthread_mutex_init(&p->lock, NULL);
  p->hooks = hooks;
  p->start = p->sample_t = dsd__now();
  p->last_emit = -1;
}

static void dsd__on_progress(void *data, const dsd_progress_t *dp) {
  dsd__pipe_t *p = data;
  dsd_pipeline_progress_t pp;
  double now = dsd__now();
  int phase_changed;

  if (p->hooks == NULL || p->hooks->progress == NULL)
    return;
  pthread_mutex_lock(&p->lock);
  phase_changed = dp->phase && strncmp(p->phase, dp->phase, sizeof p->phase) != 0;
  if (now - p->sample_t >= DSD__RATE_WINDOW) {
    double inst = dp->bytes_done >= p->sample_bytes
                      ? (double)(dp->bytes_done - p->sample_bytes) / (now - p->sample_t)
                      : 0;
    p->rate = p->rate == 0 ? inst : DSD__RATE_ALPHA * inst + (1 - DSD__RATE_ALPHA) * p->rate;
    p->sample_t = now;
    p->sample_bytes = dp->bytes_done;
  } else if (p->rate == 0 && now - p->start > 0.05 && dp->bytes_done > 0) {
    /* Before the first full window, the average since the start. */
    p->rate = (double)dp->bytes_done / (now - p->start);
  }
  if (!phase_changed && p->last_emit >= 0 && now - p->last_emit < DSD__PROGRESS_MIN_INTERVAL &&
      !(dp->phase && strcmp(dp->phase, "done") == 0)) {
    pthread_mutex_unlock(&p->lock);
    return;
  }
  if (dp->phase)
    snprintf(p->phase, sizeof p->phase, "%s", dp->phase);
  p->last_emit = now;
  memset(&pp, 0, sizeof pp);
  pp.p = *dp;
  pp.rate_bps = p->rate;
  if (dp->bytes_total > 0) {
    pp.percent = 100.0 * (double)dp->bytes_done / (double)dp->bytes_total;
    if (pp.percent > 100)
      pp.percent = 100;
    pp.eta_seconds = p->rate > 0 && dp->bytes_total > dp->bytes_done
                         ? (double)(dp->bytes_total - dp->bytes_done) / p->rate
                         : -1;
  } else {
    pp.percent = -1;
    pp.eta_seconds = -1;
  }
  if (dp->phase && strcmp(dp->phase, "done") == 0) {
    pp.percent = 100;
    pp.eta_seconds = 0;
  }
  pp.compressed_bytes = p->w ? dsd_archive_writer_compressed_bytes(p->w) : 0;
  p->hooks->progress(p->hooks->data, &pp);
  pthread_mutex_unlock(&p->lock);
}

static void dsd__on_log(void *data, const char *line) {
  dsd__pipe_t *p = data;
  char buf[2048];
  if (p->hooks == NULL || p->hooks->log == NULL)
    return;
  dsd_redact_into(line, buf, sizeof buf);
  pthread_mutex_lock(&p->lock);
  p->hooks->log(p->hooks->data, buf);
  pthread_mutex_unlock(&p->lock);
}

static void dsd__fmt_bytes(double b, char *out, size_t cap) {
  static const char *const units[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
  int u = 0;
  while (b >= 1024 && u < 5) {
    b /= 1024;
    u++;
  }
  if (u == 0)
    snprintf(out, cap, "%.0f B", b);
  else
    snprintf(out, cap, "%.1f %s", b, units[u]);
}

void dsd_pipeline_progress_format(const dsd_pipeline_progress_t *p, const char *verb,
                                  char *buf, size_t cap) {
  char done[32], total[32], rate[32], eta[48] = "";
  size_t n;

  dsd__fmt_bytes((double)p->p.bytes_done, done, sizeof done);
  dsd__fmt_bytes((double)p->p.bytes_total, total, sizeof total);
  dsd__fmt_bytes(p->rate_bps, rate, sizeof rate);
  if (p->eta_seconds >= 0 && p->p.phase && strcmp(p->p.phase, "done") != 0) {
    double s = p->eta_seconds;
    if (s < 90)
      snprintf(eta, sizeof eta, ", about %.0f s left", ceil(s));
    else if (s < 90 * 60)
      snprintf(eta, sizeof eta, ", about %.0f min left", ceil(s / 60));
    else
      snprintf(eta, sizeof eta, ", about %.0f h %.0f min left", floor(s / 3600),
               floor(fmod(s, 3600) / 60));
  }
  if (p->p.current)
    n = (size_t)snprintf(buf, cap, "%s %s: ", verb, p->p.current);
  else
    n = (size_t)snprintf(buf, cap, "%s (%s): ", verb, p->p.phase ? p->p.phase : "starting");
  if (n >= cap)
    return;
  if (p->p.bytes_total > 0 && p->percent >= 0)
    snprintf(buf + n, cap - n, "%s of ~%s (%.0f%%), %s/s%s", done, total, p->percent, rate, eta);
  else
    snprintf(buf + n, cap - n, "%s, %s/s", done, rate);
}

static void dsd__iso_now(char *out, size_t cap) {
  struct timespec ts;
  struct tm tm;
  clock_gettime(CLOCK_REALTIME, &ts);
  gmtime_r(&ts.tv_sec, &tm);
  strftime(out, cap, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/* zstd worker threads for the archive: -1, automatic (CPUs - 1 when built
 * with libzstd: dsd_archive_zstd_auto_threads), unless DSD_ZSTD_THREADS
 * says otherwise (0: compress in the writing thread, under the archive
 * lock; N: N worker threads, through libarchive's zstd filter when built
 * without libzstd). Compression is the largest CPU cost of a dump; on its
 * own threads it overlaps with reading the source. */
static int dsd__compress_threads(void) {
  const char *env = getenv("DSD_ZSTD_THREADS");
  if (env != NULL && *env != '\0') {
    char *end;
    long n = strtol(env, &end, 10);
    if (*end == '\0' && n >= 0 && n <= 64)
      return (int)n;
  }
  return -1;
}

/* The dialect for a source/target URI and an optional plan name, with the
 * errors pipeline.h promises. role is "source" or "target". */
static int dsd__pick_dialect(const char *plan, const char *uri, const char *role,
                             const dsd_dialect_t **out, dsd_err_t *err) {
  const char *scheme_name = dsd_dialect_name_for_uri(uri);
  const char *name = plan ? plan : scheme_name;

  *out = NULL;
  if (uri == NULL || *uri == '\0')
    return dsd_err_set(err, DSD_EINVAL, "no %s uri was given", role);
  if (plan && strcmp(plan, "pg") != 0 && strcmp(plan, "mysql") != 0 &&
      strcmp(plan, "mongo") != 0)
    return dsd_err_set(err, DSD_EINVAL, "unknown dialect \"%s\"\nHINT: use pg, mysql or mongo",
                       plan);
  if (scheme_name == NULL)
    return dsd_err_set(err, DSD_EINVAL,
                       "the %s uri does not start with a known scheme\n"
                       "HINT: use postgresql://, mysql:// or mongodb://", role);
  if (plan && strcmp(plan, scheme_name) != 0)
    return dsd_err_set(err, DSD_EINVAL, "the %s uri is a %s uri but the plan is %s", role,
                       scheme_name, plan);
  *out = dsd_dialect_find(name);
  if (*out == NULL)
    return dsd_err_set(err, DSD_EUNSUPPORTED, "the %s dialect is not built yet", name);
  return 0;
}

int dsd_pipeline_dump(const dsd_dump_opts_t *opts, dsd_dump_result_t *res, dsd_err_t *err) {
  const dsd_dialect_t *d = NULL;
  struct dsd_anon_rules *rules = NULL;
  json_t *manifest = NULL, *extra = NULL, *anon_json = NULL;
  void *state = NULL;
  dsd_blob_writer_t *bw = NULL;
  dsd_archive_writer_t *w = NULL;
  dsd_blob_writer_opts_t bwo = {0};
  dsd_archive_writer_opts_t awo = {0};
  dsd_archive_result_t ares;
  dsd_dump_ctx_t ctx;
  dsd__pipe_t pipe;
  char created[32], finished[32];
  int rc = 0;

  memset(res, 0, sizeof *res);
  dsd__pipe_init(&pipe, &opts->hooks);
  if (opts->store == NULL || opts->key == NULL || !dsd_blob_key_valid(opts->key)) {
    rc = dsd_err_set(err, DSD_EINVAL, "the archive key is not valid");
    goto cleanup;
  }
  rc = dsd__pick_dialect(opts->dialect, opts->source_uri, "source", &d, err);
  if (rc < 0)
    goto cleanup;

  if (opts->anonymize != NULL && !json_is_null(opts->anonymize)) {
#ifdef DSD_HAVE_ANONYMIZE
    dsd_anon_rules_t *r = NULL;
    rc = dsd_anon_rules_parse(opts->anonymize, &r, err);
    if (rc < 0)
      goto cleanup;
    rules = (struct dsd_anon_rules *)r;
    rc = dsd_anon_rules_set_random_salt(r, err);
    if (rc < 0)
      goto cleanup;
    anon_json = dsd_anon_rules_to_json(r);
    if (anon_json == NULL) {
      rc = dsd_err_set(err, DSD_ENOMEM, "out of memory");
      goto cleanup;
    }
#else
    rc = dsd_err_set(err, DSD_EUNSUPPORTED, "anonymization is not built into this dsd yet");
    goto cleanup;
#endif
  }

  dsd__iso_now(created, sizeof created);
  manifest = json_pack("{s:s, s:i, s:s, s:s, s:s, s:i, s:o}", "format", DSD_ARCHIVE_FORMAT,
                       "version", DSD_ARCHIVE_VERSION, "dialect", d->name, "created_at",
                       created, "compression", dsd_compression_name(opts->compression),
                       "workers", opts->workers > 0 ? opts->workers : 2, "anonymize",
                       anon_json ? anon_json : json_null());
  anon_json = NULL; /* stolen by "o" */
  if (manifest == NULL) {
    rc = dsd_err_set(err, DSD_ENOMEM, "out of memory");
    goto cleanup;
  }
#ifdef DSD_HAVE_ANONYMIZE
  /* Whether outputs repeat across dumps (a user salt) or not (random). */
  if (rules != NULL &&
      json_object_set_new(manifest, "anonymize_salt",
                          json_string(dsd_anon_rules_salt_is_user((dsd_anon_rules_t *)rules)
                                          ? "user"
                                          : "random")) != 0) {
    rc = dsd_err_set(err, DSD_ENOMEM, "out of memory");
    goto cleanup;
  }
#endif

  memset(&ctx, 0, sizeof ctx);
  ctx.uri = opts->source_uri;
  ctx.anonymize = rules;
  ctx.workers = opts->workers;
  ctx.io.cancel = opts->hooks.cancel;
  ctx.io.progress = dsd__on_progress;
  ctx.io.log = dsd__on_log;
  ctx.io.data = &pipe;

  /* Connects and validates: a bad URI, a missing table in the rules, a
   * missing pg_dump fail here, before anything exists in the store. */
  rc = d->dump_prepare(&ctx, manifest, &state, err);
  if (rc < 0)
    goto cleanup;
  if (opts->hooks.cancel && atomic_load(opts->hooks.cancel)) {
    rc = dsd_err_set(err, DSD_ECANCELED, "the dump was canceled");
    goto cleanup;
  }

  bwo.content_type = opts->compression == DSD_COMPRESS_ZSTD   ? "application/zstd"
                     : opts->compression == DSD_COMPRESS_GZIP ? "application/gzip"
                                                              : "application/x-tar";
  bwo.on_upload_created = opts->hooks.on_upload_created;
  bwo.data = opts->hooks.data;
  bwo.cancel = opts->hooks.cancel;
  rc = dsd_blob_writer_open(opts->store, opts->key, &bwo, &bw, err);
  if (rc < 0)
    goto cleanup;
  awo.compression = opts->compression;
  awo.threads = dsd__compress_threads();
  rc = dsd_archive_writer_open(bw, &awo, manifest, &w, err);
  if (rc < 0)
    goto cleanup;
  pthread_mutex_lock(&pipe.lock);
  pipe.w = w;
  pthread_mutex_unlock(&pipe.lock);

  rc = d->dump_run(state, &ctx, w, err);
  if (rc == 0 && opts->hooks.cancel && atomic_load(opts->hooks.cancel))
    rc = dsd_err_set(err, DSD_ECANCELED, "the dump was canceled");
  if (rc < 0)
    goto cleanup;

  dsd__iso_now(finished, sizeof finished);
  extra = json_pack("{s:s, s:s, s:s}", "dialect", d->name, "created_at", created,
                    "finished_at", finished);
  pthread_mutex_lock(&pipe.lock);
  pipe.w = NULL;
  pthread_mutex_unlock(&pipe.lock);
  rc = dsd_archive_writer_finish(w, extra, &ares, err);
  w = NULL;
  if (rc < 0)
    goto cleanup;
  rc = dsd_blob_writer_close(bw, err);
  bw = NULL;
  if (rc < 0)
    goto cleanup;

  res->size = ares.compressed_bytes;
  memcpy(res->sha256, ares.sha256, sizeof res->sha256);
  res->rows = ares.total_rows;
  {
    json_t *dj = json_object_get(manifest, d->name);
    json_t *tables = dj ? json_object_get(dj, "tables") : NULL;
    res->tables = tables ? json_array_size(tables) : 0;
  }
  res->summary = ares.summary;
  if (opts->hooks.log) {
    char line[256];
    /* rows are table rows: the dialects do not count sequences or large
     * objects as rows. */
    snprintf(line, sizeof line, "dump complete: %llu bytes, %llu rows in %llu table%s, sha256 %s",
             (unsigned long long)res->size, (unsigned long long)res->rows,
             (unsigned long long)res->tables, res->tables == 1 ? "" : "s", res->sha256);
    dsd__on_log(&pipe, line);
  }
cleanup:
  if (rc < 0) {
    pthread_mutex_lock(&pipe.lock);
    pipe.w = NULL;
    pthread_mutex_unlock(&pipe.lock);
    /* Order matters: the archive writer may flush into the blob writer. */
    dsd_archive_writer_abort(w);
    if (bw != NULL)
      dsd_blob_writer_abort(bw);
  }
  if (state != NULL)
    d->dump_free(state);
#ifdef DSD_HAVE_ANONYMIZE
  dsd_anon_rules_free((dsd_anon_rules_t *)rules);
#endif
  json_decref(anon_json);
  json_decref(manifest);
  json_decref(extra);
  pthread_mutex_destroy(&pipe.lock);
  return rc;
}

int dsd_pipeline_restore(const dsd_restore_opts_t *opts, dsd_err_t *err) {
  const dsd_dialect_t *d = NULL;
  dsd_blob_reader_t *br = NULL;
  dsd_archive_reader_t *r = NULL;
  dsd_restore_ctx_t ctx;
  dsd__pipe_t pipe;
  const char *dialect;
  const char *scheme_name;
  int rc = 0;

  dsd__pipe_init(&pipe, &opts->hooks);
  if (opts->store == NULL || opts->key == NULL || !dsd_blob_key_valid(opts->key)) {
    rc = dsd_err_set(err, DSD_EINVAL, "the archive key is not valid");
    goto cleanup;
  }
  if (opts->target_uri == NULL || *opts->target_uri == '\0') {
    rc = dsd_err_set(err, DSD_EINVAL, "no target uri was given");
    goto cleanup;
  }
  rc = dsd_blob_reader_open(opts->store, opts->key, 0, UINT64_MAX, &br, err);
  if (rc < 0)
    goto cleanup;
  rc = dsd_archive_reader_open(br, &r, err);
  if (rc < 0)
    goto cleanup;
  dialect = json_string_value(json_object_get(dsd_archive_reader_manifest(r), "dialect"));
  if (dialect == NULL) {
    rc = dsd_err_set(err, DSD_EPROTO, "the archive manifest names no dialect");
    goto cleanup;
  }
  scheme_name = dsd_dialect_name_for_uri(opts->target_uri);
  if (scheme_name == NULL) {
    rc = dsd_err_set(err, DSD_EINVAL,
                     "the target uri does not start with a known scheme\n"
                     "HINT: use postgresql://, mysql:// or mongodb://");
    goto cleanup;
  }
  if (strcmp(scheme_name, dialect) != 0) {
    rc = dsd_err_set(err, DSD_EINVAL, "the target uri is a %s uri but the archive holds a %s dump",
                     scheme_name, dialect);
    goto cleanup;
  }
  d = dsd_dialect_find(dialect);
  if (d == NULL) {
    rc = dsd_err_set(err, DSD_EUNSUPPORTED, "the %s dialect is not built yet", dialect);
    goto cleanup;
  }
  memset(&ctx, 0, sizeof ctx);
  ctx.uri = opts->target_uri;
  ctx.clean = opts->clean;
  ctx.workers = opts->workers;
  ctx.io.cancel = opts->hooks.cancel;
  ctx.io.progress = dsd__on_progress;
  ctx.io.log = dsd__on_log;
  ctx.io.data = &pipe;
  rc = d->restore(&ctx, r, err);
  if (rc == 0)
    dsd__on_log(&pipe, "restore complete");
cleanup:
  dsd_archive_reader_free(r);
  if (br != NULL)
    dsd_blob_reader_close(br);
  pthread_mutex_destroy(&pipe.lock);
  return rc;
}
