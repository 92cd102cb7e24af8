/*
 * pg.c - the PostgreSQL dialect's registration: the dsd_dialect_t that
 * dialects/registry.c hands out for the "pg" plan and postgresql:// URIs.
 * The dump side lives in pg_dump.c, the restore side in pg_restore.c.
 */
#include "dialects/pg/pg.h"
#include "dialects/pg/pg_util.h"

static const char *const dsd__pg_schemes[] = {"postgresql", "postgres", NULL};

const dsd_dialect_t dsd__pg_dialect = {
    .name = "pg",
    .schemes = dsd__pg_schemes,
    .dump_prepare = dsd__pg_dump_prepare,
    .dump_run = dsd__pg_dump_run,
    .dump_free = dsd__pg_dump_free,
    .restore = dsd__pg_restore,
};
