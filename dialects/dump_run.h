/*
 * dump_run.h - the run state every dialect's dump shares between its table
 * workers: the job's context, the first error, the stop flag and the
 * progress counters, with the helpers that log, report progress and record a
 * failure through the job's callbacks (dialect.h dsd_job_io_t).
 *
 * A dialect embeds one dsd_dump_run_t in its dump state, calls
 * dsd_dump_run_init() before starting workers and dsd_dump_run_destroy()
 * after joining them.
 */
#ifndef DSD_DIALECTS_DUMP_RUN_H
#define DSD_DIALECTS_DUMP_RUN_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "core/error.h"
#include "dialects/dialect.h"

typedef struct dsd_dump_run {
  const dsd_dump_ctx_t *ctx; /* borrowed; may be NULL in unit tests */
  /* Guards err; a dialect may also use it for its own shared fields (the
   * next table to take, the current phase) and says so. */
  pthread_mutex_t lock;
  atomic_int stop;           /* set by the first failure: workers stop */
  dsd_err_t err;             /* the first failure of any worker */
  uint64_t est_total;        /* estimated bytes of the whole dump */
  _Atomic uint64_t bytes_done;
  _Atomic uint64_t rows_done;
  atomic_uint tables_done;
} dsd_dump_run_t;

void dsd_dump_run_init(dsd_dump_run_t *r, const dsd_dump_ctx_t *ctx);
void dsd_dump_run_destroy(dsd_dump_run_t *r);

/* True once the job's cancel flag is up. */
bool dsd_dump_run_canceled(const dsd_dump_run_t *r);
/* True when the job was canceled or a worker failed. */
bool dsd_dump_run_should_stop(dsd_dump_run_t *r);
/* One line for the operation log (the pipeline redacts it). */
void dsd_dump_run_log(const dsd_dump_run_t *r, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Reports the counters with phase and current table (borrowed). */
void dsd_dump_run_progress(dsd_dump_run_t *r, const char *phase, const char *current,
                           uint32_t tables_total);
/* Records a worker's failure (the first one wins), tells the others to
 * stop, and returns e->code. */
int dsd_dump_run_fail(dsd_dump_run_t *r, const dsd_err_t *e);

#endif
