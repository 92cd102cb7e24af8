/*
 * dump_run.c - run state shared by a dump's table workers (see dump_run.h).
 */
#include "dialects/dump_run.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

void dsd_dump_run_init(dsd_dump_run_t *r, const dsd_dump_ctx_t *ctx) {
  memset(r, 0, sizeof *r);
  pthread_mutex_init(&r->lock, NULL);
  r->ctx = ctx;
}

void dsd_dump_run_destroy(dsd_dump_run_t *r) { pthread_mutex_destroy(&r->lock); }

bool dsd_dump_run_canceled(const dsd_dump_run_t *r) {
  return r->ctx && r->ctx->io.cancel && atomic_load(r->ctx->io.cancel);
}

bool dsd_dump_run_should_stop(dsd_dump_run_t *r) {
  return dsd_dump_run_canceled(r) || atomic_load(&r->stop);
}

void dsd_dump_run_log(const dsd_dump_run_t *r, const char *fmt, ...) {
  char line[1024];
  va_list ap;
  if (r->ctx == NULL || r->ctx->io.log == NULL)
    return;
  va_start(ap, fmt);
  vsnprintf(line, sizeof line, fmt, ap);
  va_end(ap);
  r->ctx->io.log(r->ctx->io.data, line);
}

void dsd_dump_run_progress(dsd_dump_run_t *r, const char *phase, const char *current,
                           uint32_t tables_total) {
  dsd_progress_t p = {0};
  if (r->ctx == NULL || r->ctx->io.progress == NULL)
    return;
  p.phase = phase;
  p.current = current;
  p.bytes_done = atomic_load(&r->bytes_done);
  p.bytes_total = r->est_total;
  p.rows_done = atomic_load(&r->rows_done);
  p.tables_done = atomic_load(&r->tables_done);
  p.tables_total = tables_total;
  r->ctx->io.progress(r->ctx->io.data, &p);
}

int dsd_dump_run_fail(dsd_dump_run_t *r, const dsd_err_t *e) {
  pthread_mutex_lock(&r->lock);
  if (r->err.code == 0)
    r->err = *e;
  pthread_mutex_unlock(&r->lock);
  atomic_store(&r->stop, 1);
  return e->code;
}
