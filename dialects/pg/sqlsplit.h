/*
 * sqlsplit.h - splits a psql script into statements, incrementally.
 *
 * pg_dump writes its schema sections as psql scripts. To run one through
 * libpq, statement by statement, without holding the whole script, the
 * restore feeds the script's chunks as they come out of the archive and
 * receives each complete statement through a callback.
 *
 * The splitter follows the lexical rules psql uses to find the end of a
 * statement: a semicolon ends it unless it is inside
 *   '...'            standard strings, '' escapes a quote
 *   E'...'           escape strings, backslash escapes anything
 *   "..."            quoted identifiers, "" escapes a quote
 *   $tag$...$tag$    dollar quotes (tag may be empty)
 *   -- ...           line comments
 *   / * ... * /      block comments, which nest
 *   ( ... )          parentheses (CREATE RULE ... DO (a; b))
 *   BEGIN ... END    the body of CREATE FUNCTION/PROCEDURE ... BEGIN ATOMIC
 * A line that starts with a backslash where a statement could start is a
 * psql meta-command (\restrict KEY, \connect ...): it is reported as such,
 * so the caller decides to skip it or to refuse it.
 *
 * Comments and blank space between statements are not part of a statement;
 * a pg_dump header comment "-- Name: x; Type: T; Schema: s; Owner: -" is
 * remembered and reported with the statements that follow it, so an error
 * can name the object the failing statement belongs to.
 *
 * Usage:
 *   dsd_sqlsplit_t *s = dsd_sqlsplit_new(on_item, data);
 *   while (chunk) rc = dsd_sqlsplit_feed(s, chunk, len, err);
 *   rc = dsd_sqlsplit_finish(s, err);
 *   dsd_sqlsplit_free(s);
 */
#ifndef DSD_DIALECTS_PG_SQLSPLIT_H
#define DSD_DIALECTS_PG_SQLSPLIT_H

#include <stddef.h>

#include "core/error.h"

typedef enum {
  DSD_SQL_STATEMENT = 0, /* an SQL statement, with its final ';' if any */
  DSD_SQL_META = 1,      /* a psql meta-command line, without its newline */
} dsd_sql_kind_t;

typedef struct dsd_sql_item {
  dsd_sql_kind_t kind;
  const char *text;   /* borrowed until the callback returns; NUL-terminated */
  size_t len;
  const char *object; /* "table public.t" from the last pg_dump header
                         comment, or NULL; borrowed like text */
  unsigned line;      /* 1-based line where the item starts */
} dsd_sql_item_t;

/* Called for each item. A non-zero return (a negative DSD_E* code) stops
 * the splitter: feed/finish return it unchanged and the callback is
 * expected to have set err itself. */
typedef int (*dsd_sqlsplit_cb)(void *data, const dsd_sql_item_t *item,
                               dsd_err_t *err);

typedef struct dsd_sqlsplit dsd_sqlsplit_t;

/* A new splitter (caller owns; dsd_sqlsplit_free), or NULL when out of
 * memory. cb and data are borrowed. */
dsd_sqlsplit_t *dsd_sqlsplit_new(dsd_sqlsplit_cb cb, void *data);

/* Splits the next len bytes of the script. Chunks may split anything
 * anywhere (inside a quote, a comment, a multi-byte character). Returns 0,
 * the callback's code, or DSD_ENOMEM. */
int dsd_sqlsplit_feed(dsd_sqlsplit_t *s, const char *buf, size_t len,
                      dsd_err_t *err);

/* Ends the script: a last statement without ';' is reported; a script that
 * ends inside a quote or a block comment gives DSD_EINVAL. */
int dsd_sqlsplit_finish(dsd_sqlsplit_t *s, dsd_err_t *err);

/* Statements reported so far. */
unsigned long dsd_sqlsplit_count(const dsd_sqlsplit_t *s);

void dsd_sqlsplit_free(dsd_sqlsplit_t *s);

#endif
