/*
 * pg.h - the PostgreSQL dialect (libpq), internal interface between its
 * parts: pg.c (registration, connection helpers), pg_dump.c (dump side),
 * pg_restore.c (restore side), sqlsplit.c (statement splitter).
 *
 * Archive layout of the pg dialect (format version 1) - see README:
 *   pg/drop/NNNNNN       DROP statements for every object of the dump, in
 *                        dependency order (from pg_dump --schema-only
 *                        --clean --if-exists); run only when clean is set
 *   pg/pre-data/NNNNNN   pg_dump --section=pre-data --no-owner
 *                        --no-privileges on the dump's snapshot, with the
 *                        \restrict / \unrestrict lines left out
 *   pg/data/TTTTT/NNNNNN one stream per table (TTTTT = table id in the
 *                        manifest): "COPY "s"."t" ("a", "b") FROM stdin;\n",
 *                        rows in COPY text format, "\.\n"
 *   pg/blobs/NNNNNN      SELECT pg_catalog.lo_put(oid, offset, '\x...');
 *   pg/sequences/NNNNNN  SELECT pg_catalog.setval('"s"."q"', N, true|false);
 *   pg/post-data/NNNNNN  pg_dump --section=post-data --no-owner
 *                        --no-privileges, \restrict lines left out
 * Every stream is a psql script, so after extraction, concatenating the
 * files of pg/pre-data, pg/data (every table directory), pg/blobs,
 * pg/sequences and pg/post-data in that order (names in LC_ALL=C glob
 * order) and piping them to psql restores by hand; the README gives the
 * exact command (a shell glob cannot be written inside a C comment).
 */
#ifndef DSD_DIALECTS_PG_PG_H
#define DSD_DIALECTS_PG_PG_H

#include "dialects/dialect.h"

extern const dsd_dialect_t dsd__pg_dialect;

/* Restore side (pg_restore.c). */
int dsd__pg_restore(const dsd_restore_ctx_t *ctx, dsd_archive_reader_t *r,
                    dsd_err_t *err);

#endif
