/*
 * mysql.h - the MySQL / MariaDB dialect (libmysqlclient, which is MariaDB
 * Connector/C on Debian bookworm), internal interface between its parts:
 * mysql.c (registration, URI parsing, connections, value escaping),
 * mysql_split.c (statement splitter), mysql_dump.c (dump side) and
 * mysql_restore.c (restore side).
 *
 * Archive layout of the mysql dialect (format version 1) - see README.
 * Every stream starts with the same session header (SET NAMES utf8mb4,
 * time_zone '+00:00', a fixed sql_mode with NO_AUTO_VALUE_ON_ZERO,
 * FOREIGN_KEY_CHECKS=0, UNIQUE_CHECKS=0), so each is a script the mysql
 * client runs on its own:
 *   mysql/drop/NNNNNN        DROP ... IF EXISTS of every object of the dump
 *                            (triggers, events, routines, views, tables); run
 *                            by dsd restore only when clean is set
 *   mysql/schema/NNNNNN      CREATE TABLE as SHOW CREATE TABLE gives it (with
 *                            its AUTO_INCREMENT position), then procedures and
 *                            functions, then every view as a placeholder view
 *                            (SELECT 1 AS col, ...) and then every real view
 *                            (CREATE OR REPLACE), so views may refer to views
 *                            in any order, as mysqldump does
 *   mysql/data/TTTTT/NNNNNN  one stream per table (TTTTT = table id in the
 *                            manifest): multi-row INSERT statements of about
 *                            1 MiB, stored generated columns left out, binary
 *                            values as 0x hex literals, strings quoted with
 *                            backslash escapes
 *   mysql/post/NNNNNN        triggers and events, created after the data so
 *                            that no trigger fires on imported rows
 * DEFINER clauses are left out (objects belong to the importing user, like
 * pg_dump --no-owner). Routines, triggers and events are single statements
 * inside "DELIMITER ;;" ... "DELIMITER ;" lines: the mysql client needs them,
 * dsd's own restore skips them. After extraction, concatenating the files of
 * mysql/drop, mysql/schema, mysql/data (every table directory) and
 * mysql/post in that order (LC_ALL=C glob order) and piping them to the
 * mysql client restores by hand; tests/integration/test_mysql_recipe.py
 * holds the exact command.
 */
#ifndef DSD_DIALECTS_MYSQL_MYSQL_H
#define DSD_DIALECTS_MYSQL_MYSQL_H

#include <stdbool.h>
#include <stddef.h>

#include <mysql.h>

#include "core/buf.h"
#include "core/error.h"
#include "dialects/dialect.h"

extern const dsd_dialect_t dsd__mysql_dialect;

/* The session settings at the top of every stream and applied by dsd on
 * every dump and restore connection. */
#define DSD__MYSQL_SQL_MODE "NO_AUTO_VALUE_ON_ZERO,NO_ENGINE_SUBSTITUTION"
extern const char dsd__mysql_stream_header[];

/* ------------------------------------------------------------------ */
/* Connection URIs                                                     */

/* mysql://user:password@host:port/db?ssl-mode=M&ssl-ca=PATH&socket=PATH
 * (scheme mysql or mariadb; every part percent-decoded; ssl-mode one of
 * DISABLED, PREFERRED, REQUIRED, VERIFY_CA, VERIFY_IDENTITY, case-blind).
 * All strings malloc'd, owned by the struct (dsd__mysql_uri_free). */
typedef struct dsd__mysql_uri {
  char *user, *password, *host, *db, *socket, *ssl_mode, *ssl_ca;
  unsigned port; /* 0: default 3306 */
} dsd__mysql_uri_t;

/* Parses uri into *out. Errors (DSD_EINVAL) never quote the URI, which
 * holds the password. */
int dsd__mysql_uri_parse(const char *uri, dsd__mysql_uri_t *out, dsd_err_t *err);
/* Frees the strings (the password is wiped first) and zeroes *u. */
void dsd__mysql_uri_free(dsd__mysql_uri_t *u);

/* Connects with uri (borrowed; secret; its password is registered with the
 * redactor) and applies the dump/restore session settings. what names the
 * connection in an error ("source", "target"). *out owned by the caller
 * (mysql_close). Multi-statements and LOCAL INFILE are off. */
int dsd__mysql_connect(const char *uri, const char *what, MYSQL **out, dsd_err_t *err);

/* Runs one statement, discarding any result. On error sets err to
 * "<what>: <server message> (<errno>)" and returns DSD_EDB; *errnum (may be
 * NULL) gets the server's error number. */
int dsd__mysql_exec(MYSQL *c, const char *sql, size_t len, const char *what,
                    unsigned *errnum, dsd_err_t *err);

/* ------------------------------------------------------------------ */
/* Values                                                              */

/* Appends `id` with inner backquotes doubled. */
int dsd__mysql_quote_ident(dsd_buf_t *b, const char *id);
/* Appends 's[0..n)' with \0 \' \" \\ \n \r \Z escaped by backslashes (the
 * form mysql_real_escape_string gives for utf8mb4; the reader must not be
 * in NO_BACKSLASH_ESCAPES mode: the stream header sets sql_mode). */
int dsd__mysql_quote_string(dsd_buf_t *b, const char *s, size_t n);
/* Appends 0x followed by two lower-case hex digits per byte; an empty
 * value is '' (0x alone is not a literal). */
int dsd__mysql_hex(dsd_buf_t *b, const void *p, size_t n);
/* Removes "DEFINER=`u`@`h` " (any quoting) from a CREATE statement in
 * place, so the importing user owns the object. Returns the new length. */
size_t dsd__mysql_strip_definer(char *sql);

/* ------------------------------------------------------------------ */
/* Statement splitter (mysql_split.c)                                  */

/* Splits a mysql client script into statements, incrementally (chunks may
 * cut anything anywhere). A statement ends at the current delimiter (";"
 * at first) outside of
 *   '...' and "..."   strings; backslash escapes the next byte, a doubled
 *                     quote is a quote
 *   `...`             identifiers, `` is a backquote
 *   -- ...            line comments (two dashes then a space, tab, or end
 *                     of line), # ... line comments
 *   / * ... * /       block comments, including / *! versioned * / ones,
 *                     which are kept in the statement for the server
 * A line "DELIMITER x" at the start of a statement sets the delimiter; it
 * is not reported. Statements are reported without their delimiter and
 * without surrounding blank space; comment-only text is not reported. */
typedef int (*dsd__mysql_split_cb)(void *data, const char *stmt, size_t len,
                                   unsigned line, dsd_err_t *err);
typedef struct dsd__mysql_split dsd__mysql_split_t;
/* Owned by the caller (dsd__mysql_split_free); NULL when out of memory. */
dsd__mysql_split_t *dsd__mysql_split_new(dsd__mysql_split_cb cb, void *data);
/* Returns 0, the callback's non-zero code, or DSD_ENOMEM. */
int dsd__mysql_split_feed(dsd__mysql_split_t *s, const char *buf, size_t len,
                          dsd_err_t *err);
/* Reports a last statement without delimiter; DSD_EINVAL when the script
 * ends inside a string, identifier or block comment. */
int dsd__mysql_split_finish(dsd__mysql_split_t *s, dsd_err_t *err);
void dsd__mysql_split_free(dsd__mysql_split_t *s);

/* ------------------------------------------------------------------ */
/* Dump and restore                                                    */

int dsd__mysql_dump_prepare(const dsd_dump_ctx_t *ctx, json_t *manifest, void **state,
                            dsd_err_t *err);
int dsd__mysql_dump_run(void *state, const dsd_dump_ctx_t *ctx, dsd_archive_writer_t *w,
                        dsd_err_t *err);
void dsd__mysql_dump_free(void *state);
int dsd__mysql_restore(const dsd_restore_ctx_t *ctx, dsd_archive_reader_t *r,
                       dsd_err_t *err);

#endif
