/*
 * pg_util.h - helpers shared by the parts of the PostgreSQL dialect that
 * this module's dump side uses (pg.c, pg_util.c, pg_dump.c). The restore
 * side may use them too; nothing here is part of the dialect interface.
 *
 * Secrets: a connection URI carries the password. dsd__pg_connect registers
 * that password with the log redactor before anything can print it, and
 * every libpq message goes through dsd_err_set (which redacts) on its way
 * into an error.
 */
#ifndef DSD_DIALECTS_PG_PG_UTIL_H
#define DSD_DIALECTS_PG_PG_UTIL_H

#include <libpq-fe.h>
#include <stdatomic.h>

#include "core/buf.h"
#include "core/error.h"
#include "dialects/dialect.h"

/* Connects with uri (borrowed; secret) and applies the session settings a
 * dump or restore needs (ISO dates, extra_float_digits 3, no statement or
 * lock timeouts, row_security off, empty search_path). what names the
 * connection in an error ("source", "target"). *out is owned by the caller
 * (PQfinish). */
int dsd__pg_connect(const char *uri, const char *what, PGconn **out,
                    dsd_err_t *err);

/* Registers the password of uri (if any) with the redactor. */
void dsd__pg_register_secret(const char *uri);

/* Runs sql expecting PGRES_COMMAND_OK or PGRES_TUPLES_OK; returns the
 * result in *res when res is not NULL (caller owns: PQclear), else clears
 * it. On error sets err to "<what>: <server message>" and returns DSD_EDB. */
int dsd__pg_exec(PGconn *c, const char *sql, const char *what, PGresult **res,
                 dsd_err_t *err);
/* The same, but cancel (borrowed; may be NULL) is watched while the server
 * works: when it rises the query is canceled and DSD_ECANCELED returned. */
int dsd__pg_exec_cancellable(PGconn *c, const char *sql, const atomic_int *cancel,
                             const char *what, PGresult **res, dsd_err_t *err);

/* The connection's last error, trimmed of its final newline, into buf. */
const char *dsd__pg_conn_error(PGconn *c, char *buf, size_t cap);

/* Appends "ident" with inner quotes doubled (always quoted, like
 * PQescapeIdentifier, but without needing a connection). */
int dsd__pg_quote_ident(dsd_buf_t *b, const char *ident);
/* Appends 'lit' with inner quotes doubled (standard_conforming_strings). */
int dsd__pg_quote_literal(dsd_buf_t *b, const char *lit);

/* Builds a libpq keyword/value connection string equivalent to uri
 * WITHOUT the password (for a child process's argv) and returns the
 * password separately (for its environment). Both are malloc'd and owned by
 * the caller; *password is NULL when uri has none. */
int dsd__pg_child_conninfo(const char *uri, char **conninfo, char **password,
                           dsd_err_t *err);

/* Dump side (pg_dump.c), registered by pg.c. */
int dsd__pg_dump_prepare(const dsd_dump_ctx_t *ctx, json_t *manifest,
                         void **state, dsd_err_t *err);
int dsd__pg_dump_run(void *state, const dsd_dump_ctx_t *ctx,
                     dsd_archive_writer_t *w, dsd_err_t *err);
void dsd__pg_dump_free(void *state);

#endif
