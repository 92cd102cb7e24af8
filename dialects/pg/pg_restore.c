/*
 * pg_restore.c - the PostgreSQL dialect's restore side (libpq).
 *
 * dsd__pg_restore() reads the pg streams of a dump archive (layout in pg.h)
 * in archive order and applies them to the target database:
 *
 *   pg/drop/N       DROP ... IF EXISTS statements; run only with clean
 *   pg/pre-data/N   schema script, statement by statement (sqlsplit.c);
 *                   the \restrict / \unrestrict meta-commands are skipped,
 *                   any other meta-command is refused
 *   pg/data/T/N     one COPY stream per table; streams of different tables
 *                   interleave in the archive, so each stream being read
 *                   owns a connection in COPY IN state until its "\." trailer
 *   pg/blobs/N, pg/sequences/N   statements
 *   pg/post-data/N  indexes, constraints, triggers: kept in memory until
 *                   summary.json, then run, so that triggers never fire
 *                   during the import and circular foreign keys load
 *
 * Every stream is hashed on the way and checked against summary.json (bytes,
 * sha256, rows). The target is used as a non-superuser database owner:
 * nothing here needs more than pg_dump --no-owner --no-privileges output
 * needs. On failure the error names the object (table, or the object of
 * the pg_dump "-- Name:" header above the failing statement) and says what
 * state the target is left in.
 *
 * The target URI carries a password: it is registered with the log
 * redactor, given to libpq only, and never formatted into a message.
 */
#include <ctype.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <libpq-fe.h>

#include "core/buf.h"
#include "core/hash.h"
#include "core/log.h"
#include "dialects/pg/pg.h"
#include "dialects/pg/sqlsplit.h"

/* ------------------------------------------------------------------ */
/* Types                                                               */
/* ------------------------------------------------------------------ */

/* Stream kinds in the order they must be applied. */
typedef enum {
  PGR_DROP = 0,
  PGR_PRE,
  PGR_DATA,
  PGR_BLOBS,
  PGR_SEQ,
  PGR_POST,
  PGR_OTHER,
} pgr_kind_t;

static const char *const pgr_kind_names[] = {
    "drop", "pre-data", "data", "blobs", "sequences", "post-data", "other"};

#define PGR_MAX_CONNS 64        /* hard cap on data connections */
#define PGR_READ_SIZE (256u << 10)
#define PGR_NAME_MAX 256

typedef struct pgr pgr_t;

typedef struct pgr_conn {
  PGconn *c;
  int busy; /* in COPY IN for some stream */
} pgr_conn_t;

typedef struct pgr_stream {
  pgr_t *R;                    /* borrowed: the job, for the callbacks */
  char name[PGR_NAME_MAX];     /* "pg/data/00003" */
  pgr_kind_t kind;
  unsigned last_chunk;
  dsd_sha256_t hash;
  uint64_t bytes;
  uint64_t newlines;           /* data streams: newlines after the COPY
                                  line, i.e. rows + the trailer */
  char sha256[DSD_SHA256_HEX_LEN + 1];
  int hashed;                  /* sha256 final computed */
  /* statement streams */
  dsd_sqlsplit_t *split;
  int split_done;
  dsd_buf_t held_post;         /* post-data text, run after the data */
  /* data streams */
  dsd_buf_t header;            /* "COPY ... FROM stdin;" while incomplete */
  int header_done;
  char table[PGR_NAME_MAX];    /* "public.t" from the header */
  pgr_conn_t *conn;            /* while in COPY */
  char held[3];                /* last bytes not sent yet: maybe "\\.\n" */
  size_t held_len;
  char prev;                   /* the byte before held */
  int ended;                   /* trailer seen, COPY ended and checked */
  struct pgr_stream *next;
} pgr_stream_t;

struct pgr {
  const dsd_restore_ctx_t *ctx;
  char *password;              /* registered with the redactor; owned */
  PGconn *main;                /* schema, blobs, sequences */
  pgr_conn_t conns[PGR_MAX_CONNS];
  int nconns;
  int max_conns;               /* expected: the dump's workers */
  int warned_conns;
  pgr_stream_t *streams;       /* in order of first appearance */
  pgr_stream_t *last_stream;
  char encoding[64];
  pgr_kind_t phase;            /* furthest kind started */
  unsigned tables_done;
  unsigned tables_total;       /* from the manifest; 0: unknown */
  unsigned long statements;
  unsigned long tolerated;
  unsigned long schema_applied; /* pre-data statements that changed the target */
  uint64_t bytes_done;
  uint64_t bytes_total;
  uint64_t rows_done;
};

/* ------------------------------------------------------------------ */
/* Small helpers                                                       */
/* ------------------------------------------------------------------ */

static int canceled(const pgr_t *R) {
  return R->ctx->io.cancel != NULL && atomic_load(R->ctx->io.cancel) != 0;
}

static void pgr_log(const pgr_t *R, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void pgr_log(const pgr_t *R, const char *fmt, ...) {
  char line[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(line, sizeof(line), fmt, ap);
  va_end(ap);
  /* The job's log (the pipeline redacts and stores it); without one, the
   * process log. */
  if (R->ctx->io.log)
    R->ctx->io.log(R->ctx->io.data, line);
  else
    dsd_log_info("restore: %s", line);
}

static void pgr_progress(pgr_t *R, const char *current) {
  if (!R->ctx->io.progress) return;
  /* The manifest's total is the source's size on disk, an estimate: once
   * passed, say the total is unknown rather than show more than 100%. */
  if (R->bytes_total && R->bytes_done > R->bytes_total) R->bytes_total = 0;
  static const char *const phases[] = {"schema", "schema", "data", "data",
                                       "data", "indexes", "data"};
  dsd_progress_t p = {
      .phase = phases[R->phase],
      .current = current,
      .bytes_done = R->bytes_done,
      .bytes_total = R->bytes_total,
      .rows_done = R->rows_done,
      .tables_done = R->tables_done,
      .tables_total = R->tables_total,
  };
  R->ctx->io.progress(R->ctx->io.data, &p);
}

/* Copies s into out on one line, at most cap-1 bytes, with "..." when cut:
 * for naming a statement in a message when no header names its object. */
static void one_line(const char *s, char *out, size_t cap) {
  size_t o = 0;
  int space = 0;
  for (; *s && o + 4 < cap; s++) {
    if (isspace((unsigned char)*s)) {
      space = o > 0;
      continue;
    }
    if (space) out[o++] = ' ';
    space = 0;
    out[o++] = *s;
  }
  if (*s && cap > 4) {
    memcpy(out + o, "...", 3);
    o += 3;
  }
  out[o] = '\0';
}

/* The server's message for a failed result or connection, one line. */
static void pg_message(PGconn *c, const PGresult *res, char *out, size_t cap) {
  const char *m = res ? PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) : NULL;
  const char *detail = res ? PQresultErrorField(res, PG_DIAG_MESSAGE_DETAIL) : NULL;
  if (!m || !*m) m = res ? PQresultErrorMessage(res) : NULL;
  if (!m || !*m) m = c ? PQerrorMessage(c) : "unknown error";
  char tmp[768];
  if (detail && *detail)
    snprintf(tmp, sizeof(tmp), "%s (%s)", m, detail);
  else
    snprintf(tmp, sizeof(tmp), "%s", m);
  one_line(tmp, out, cap);
}

/* What the target holds now, for failure messages. */
static void state_text(const pgr_t *R, char *out, size_t cap) {
  switch (R->phase) {
    case PGR_DROP:
      snprintf(out, cap, "the target may have lost objects of the dump that it "
                         "held before (the clean step stopped halfway)");
      break;
    case PGR_PRE:
      if (R->schema_applied == 0)
        snprintf(out, cap, R->ctx->clean
                 ? "the target holds none of the dump's objects"
                 : "the target is unchanged");
      else
        snprintf(out, cap, "the target holds part of the dump's schema (%lu "
                 "statement%s) and none of its data", R->schema_applied,
                 R->schema_applied == 1 ? "" : "s");
      break;
    case PGR_DATA: case PGR_BLOBS: case PGR_SEQ: case PGR_OTHER:
      if (R->tables_total)
        snprintf(out, cap, "the target now holds the schema and the data of %u "
                 "of %u tables", R->tables_done, R->tables_total);
      else
        snprintf(out, cap, "the target now holds the schema and the data of %u "
                 "tables", R->tables_done);
      break;
    case PGR_POST:
      snprintf(out, cap, "the target holds the schema and all the data, but "
                         "only part of the indexes, constraints and triggers");
      break;
  }
}

/* Sets "restore failed at OBJECT (SECTION): WHY HINT: STATE; HINT" where
 * hint NULL gives the usual advice for a database error. */
static int fail_hint(pgr_t *R, dsd_err_t *err, int code, const char *object,
                     const char *section, const char *why, const char *hint) {
  char state[256];
  state_text(R, state, sizeof(state));
  if (!hint)
    hint = R->ctx->clean
        ? "run the import again with clean (the default) to replace them"
        : "import again with clean (the default) to replace the objects of the "
          "dump that exist in the target, or into an empty database";
  return dsd_err_set(err, code, "restore failed at %s (%s): %s HINT: %s; %s",
                     object, section, why, state, hint);
}

static int fail(pgr_t *R, dsd_err_t *err, int code, const char *object,
                const char *section, const char *why) {
  return fail_hint(R, err, code, object, section, why, NULL);
}

/* For a damaged archive importing again does not help. */
#define PGR_HINT_CORRUPT \
  "check the archive with `dsd verify` and import a sound dump"

/* ------------------------------------------------------------------ */
/* Connections                                                         */
/* ------------------------------------------------------------------ */

static void quiet_notices(void *arg, const char *message) {
  /* NOTICEs ("table x does not exist, skipping") are expected noise of
   * DROP ... IF EXISTS; they must not reach stderr of a broker. */
  (void)arg;
  dsd_log_debug("restore: server notice: %s", message);
}

/* Runs sql, honouring the cancel flag while the server works (a CREATE
 * INDEX can take hours). Returns the last result (caller owns) or NULL
 * when the connection broke. With copy_in, a COPY FROM STDIN result is
 * returned as soon as it comes, the connection then in COPY IN state;
 * without, a COPY is refused. */
static PGresult *exec_query(pgr_t *R, PGconn *c, const char *sql, int copy_in) {
  if (!PQsendQuery(c, sql)) return NULL;
  int sock = PQsocket(c);
  int sent_cancel = 0;
  while (PQisBusy(c)) {
    struct pollfd pfd = {.fd = sock, .events = POLLIN};
    int n = poll(&pfd, 1, 200);
    if (n < 0) continue;
    if (!PQconsumeInput(c)) break;
    if (!sent_cancel && canceled(R)) {
      char ebuf[256];
      PGcancel *cc = PQgetCancel(c);
      if (cc) {
        PQcancel(cc, ebuf, sizeof(ebuf));
        PQfreeCancel(cc);
      }
      sent_cancel = 1;
    }
  }
  PGresult *last = NULL, *res;
  while ((res = PQgetResult(c)) != NULL) {
    /* Keep the first error, else the last result. */
    if (last && PQresultStatus(last) == PGRES_FATAL_ERROR) {
      PQclear(res);
      continue;
    }
    PQclear(last);
    last = res;
    if (PQresultStatus(res) == PGRES_COPY_IN && copy_in) return res;
    if (PQresultStatus(res) == PGRES_COPY_IN) {
      /* A COPY inside a script stream is not something pg_dump writes
       * outside the data section: refuse it rather than hang. */
      PQputCopyEnd(c, "copy in a schema stream is not supported");
    }
  }
  return last;
}

static int exec_simple(pgr_t *R, PGconn *c, const char *sql, const char *what,
                       dsd_err_t *err) {
  PGresult *res = exec_query(R, c, sql, 0);
  ExecStatusType st = res ? PQresultStatus(res) : PGRES_FATAL_ERROR;
  int rc = 0;
  if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
    char msg[512];
    pg_message(c, res, msg, sizeof(msg));
    rc = dsd_err_set(err, DSD_EDB, "%s: %s", what, msg);
  }
  PQclear(res);
  return rc;
}

static int connect_target(pgr_t *R, PGconn **out,
                          dsd_err_t *err) {
  const char *keys[] = {"dbname", "fallback_application_name", NULL};
  const char *vals[] = {R->ctx->uri, "dsd restore", NULL};
  PGconn *c = PQconnectdbParams(keys, vals, 1);
  int rc = 0;
  if (!c) return dsd_err_set(err, DSD_ENOMEM, "cannot connect to the target: out of memory");
  if (PQstatus(c) != CONNECTION_OK) {
    char msg[512];
    pg_message(c, NULL, msg, sizeof(msg));
    rc = dsd_err_set(err, strstr(msg, "authentication") ? DSD_EAUTH : DSD_ENET,
                     "cannot connect to the target database: %s HINT: "
                     "check the target's host, port, user and password", msg);
    goto cleanup;
  }
  PQsetNoticeProcessor(c, quiet_notices, NULL);
  /* The session pg_dump's scripts expect, and what data connections need
   * since they never see the script's own SET lines. */
  char sql[512];
  snprintf(sql, sizeof(sql),
           "SET client_encoding = '%s'; SET standard_conforming_strings = on; "
           "SET statement_timeout = 0; SET lock_timeout = 0; "
           "SET idle_in_transaction_session_timeout = 0; "
           "SET client_min_messages = warning; SET row_security = off; "
           "SET synchronous_commit = off; "
           "SELECT pg_catalog.set_config('search_path', '', false)",
           R->encoding);
  rc = exec_simple(R, c, sql, "cannot prepare the target session", err);
cleanup:
  if (rc) {
    PQfinish(c);
    return rc;
  }
  *out = c;
  return 0;
}

/* A connection for a new COPY stream: an idle one, else a new one. */
static int take_conn(pgr_t *R, pgr_conn_t **out, dsd_err_t *err) {
  for (int i = 0; i < R->nconns; i++) {
    pgr_conn_t *pc = &R->conns[i];
    if (pc->busy) continue;
    /* A slot whose connection broke is connected again. */
    if (!pc->c) {
      int rc = connect_target(R, &pc->c, err);
      if (rc) return rc;
    }
    pc->busy = 1;
    *out = pc;
    return 0;
  }
  if (R->nconns >= PGR_MAX_CONNS)
    return dsd_err_set(err, DSD_EPROTO, "the archive interleaves more than %d "
                       "table streams: it was not written by dsd", PGR_MAX_CONNS);
  if (R->nconns >= R->max_conns && !R->warned_conns) {
    /* The dump interleaved more tables than its manifest said; load them
     * anyway rather than buffer a table in memory. */
    pgr_log(R, "the archive interleaves more table streams than the %d "
            "workers of its manifest; opening more connections", R->max_conns);
    R->warned_conns = 1;
  }
  pgr_conn_t *pc = &R->conns[R->nconns];
  int rc = connect_target(R, &pc->c, err);
  if (rc) return rc;
  R->nconns++;
  pc->busy = 1;
  *out = pc;
  return 0;
}

/* ------------------------------------------------------------------ */
/* Statement streams                                                   */
/* ------------------------------------------------------------------ */

static int starts_with_ci(const char *s, const char *prefix) {
  return strncasecmp(s, prefix, strlen(prefix)) == 0;
}

/* Failures that pg_restore would report and step over, and that leave the
 * restored database complete: the target role is a database owner, not a
 * superuser, so it may not own or comment on extensions created by
 * another role (1: worth a line in the log). A failure that is expected
 * in the normal course gives 2 (not logged). */
static int tolerable(pgr_kind_t kind, const char *sql, const char *sqlstate) {
  if (!sqlstate) return 0;
  if (!strcmp(sqlstate, "42501")) {
    if (starts_with_ci(sql, "COMMENT ON EXTENSION")) return 1;
    if (kind == PGR_DROP && starts_with_ci(sql, "DROP EXTENSION")) return 1;
  }
  /* pg_dump --clean drops a partition's copy of its parent's primary key
   * before the parent's, which PostgreSQL refuses ("cannot drop inherited
   * constraint"); dropping the parent's constraint, a few statements
   * later, removes it. */
  if (kind == PGR_DROP && !strcmp(sqlstate, "42P16") &&
      starts_with_ci(sql, "ALTER TABLE"))
    return 2;
  return 0;
}

/* SQLSTATEs of "already exists" errors: a non-clean import into a target
 * that holds the dump's objects. */
static int exists_state(const char *sqlstate) {
  static const char *const states[] = {"42P04", "42P06", "42P07", "42710",
                                       "42723", "42P16"};
  for (size_t i = 0; sqlstate && i < sizeof(states) / sizeof(states[0]); i++)
    if (!strcmp(sqlstate, states[i])) return 1;
  return 0;
}

/* pg_dump -s --clean does not drop large objects, so a clean import into a
 * target that holds the dump's large objects would fail on lo_create: drop
 * the one about to be created, as pg_dump --clean does for a full dump. */
static int unlink_large_object(pgr_t *R, const char *sql, dsd_err_t *err) {
  static const char pfx[] = "SELECT pg_catalog.lo_create('";
  if (strncmp(sql, pfx, sizeof(pfx) - 1) != 0) return 0;
  const char *p = sql + sizeof(pfx) - 1;
  char oid[16];
  size_t n = 0;
  while (isdigit((unsigned char)p[n]) && n < sizeof(oid) - 1) {
    oid[n] = p[n];
    n++;
  }
  oid[n] = '\0';
  if (n == 0 || p[n] != '\'') return 0;
  char q[160];
  snprintf(q, sizeof(q), "SELECT pg_catalog.lo_unlink(oid) FROM "
           "pg_catalog.pg_largeobject_metadata WHERE oid = '%s'", oid);
  return exec_simple(R, R->main, q, "cannot drop an existing large object", err);
}

static int on_statement(void *data, const dsd_sql_item_t *it, dsd_err_t *err) {
  pgr_stream_t *s = data;
  pgr_t *R = s->R;
  pgr_kind_t kind = s->kind;
  const char *section = pgr_kind_names[kind];
  char object[PGR_NAME_MAX + 64];

  if (canceled(R)) return DSD_ECANCELED;
  if (it->object)
    snprintf(object, sizeof(object), "%s", it->object);
  else
    one_line(it->text, object, 120);

  if (it->kind == DSD_SQL_META) {
    /* pg_dump 15.14+ fences its output with \restrict KEY / \unrestrict
     * KEY for psql; libpq has no use for them. */
    if (starts_with_ci(it->text, "\\restrict") ||
        starts_with_ci(it->text, "\\unrestrict"))
      return 0;
    /* The command without its arguments, which may hold a conninfo. */
    char cmd[64];
    one_line(it->text, cmd, sizeof(cmd));
    char *sp = strchr(cmd, ' ');
    if (sp) *sp = '\0';
    if (!it->object) snprintf(object, sizeof(object), "%s", s->name);
    char why[512];
    snprintf(why, sizeof(why), "the psql meta-command %s at line %u of %s "
             "cannot run through libpq", cmd, it->line, s->name);
    return fail(R, err, DSD_EUNSUPPORTED, object, section, why);
  }

  if (kind == PGR_PRE && R->ctx->clean) {
    int rc = unlink_large_object(R, it->text, err);
    if (rc) return rc;
  }
  PGresult *res = exec_query(R, R->main, it->text, 0);
  ExecStatusType st = res ? PQresultStatus(res) : PGRES_FATAL_ERROR;
  int rc = 0;
  if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
    const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
    char msg[512];
    pg_message(R->main, res, msg, sizeof(msg));
    int tol = tolerable(kind, it->text, state);
    if (canceled(R)) {
      rc = DSD_ECANCELED;
    } else if (tol == 1) {
      R->tolerated++;
      pgr_log(R, "ignored an error at %s (%s): %s", object, section, msg);
    } else if (tol == 2) {
      dsd_log_debug("restore: expected error at %s (%s): %s", object, section, msg);
    } else {
      rc = fail(R, err, exists_state(state) ? DSD_EEXIST : DSD_EDB, object,
                section, msg);
    }
  } else if (kind == PGR_PRE && !starts_with_ci(it->text, "SET ") &&
             !starts_with_ci(it->text, "SELECT pg_catalog.set_config")) {
    R->schema_applied++;
  }
  PQclear(res);
  R->statements++;
  return rc;
}

static int feed_statements(pgr_t *R, pgr_stream_t *s, const char *p, size_t n,
                           dsd_err_t *err) {
  if (!s->split && !(s->split = dsd_sqlsplit_new(on_statement, s)))
    return dsd_err_set(err, DSD_ENOMEM, "out of memory");
  return dsd_sqlsplit_feed(s->split, p, n, err);
}

static int finish_statements(pgr_t *R, pgr_stream_t *s, dsd_err_t *err) {
  if (!s->split || s->split_done) return 0;
  s->split_done = 1;
  int rc = dsd_sqlsplit_finish(s->split, err);
  if (rc == DSD_EINVAL) dsd_err_prefix(err, "%s", s->name);
  return rc;
}

/* ------------------------------------------------------------------ */
/* Data streams                                                        */
/* ------------------------------------------------------------------ */

/* Rows of a data stream: its body's lines but the "\." trailer. */
static uint64_t data_rows(const pgr_stream_t *s) {
  return s->newlines >= 1 ? s->newlines - 1 : 0;
}

/* Drops the quotes around the parts of a qualified name that do not need
 * them ("public"."orders" -> public.orders) so messages read naturally;
 * "Mixed Case" keeps its quotes. In place. */
static void simplify_name(char *name) {
  char out[PGR_NAME_MAX];
  size_t o = 0;
  const char *p = name;
  while (*p && o + 1 < sizeof(out)) {
    if (*p == '"') {
      const char *q = p + 1;
      size_t n = 0;
      int plain = *q == '_' || (*q >= 'a' && *q <= 'z');
      while (q[n] && q[n] != '"') {
        char c = q[n];
        if (!(c == '_' || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'))) plain = 0;
        n++;
      }
      if (q[n] == '"' && q[n + 1] != '"' && plain && n > 0 && o + n < sizeof(out)) {
        memcpy(out + o, q, n);
        o += n;
        p = q + n + 1;
        continue;
      }
      /* Not simple: copy the quoted part as it is. */
      out[o++] = *p++;
      while (*p && o + 1 < sizeof(out)) {
        if (*p == '"' && p[1] == '"') {
          out[o++] = *p++;
          if (o + 1 < sizeof(out)) out[o++] = *p++;
          continue;
        }
        out[o++] = *p;
        if (*p++ == '"') break;
      }
      continue;
    }
    out[o++] = *p++;
  }
  out[o] = '\0';
  memcpy(name, out, o + 1);
}

/* "COPY "s"."t" (a, b) FROM stdin;" -> s.t (quoted where needed). */
static void table_from_header(const char *h, char *out, size_t cap) {
  const char *p = h;
  if (starts_with_ci(p, "COPY ")) p += 5;
  size_t o = 0;
  int q = 0;
  for (; *p && o + 1 < cap; p++) {
    if (*p == '"') q = !q;
    if (!q && (*p == ' ' || *p == '(')) break;
    out[o++] = *p;
  }
  out[o] = '\0';
  if (o == 0) snprintf(out, cap, "(unnamed table)");
  simplify_name(out);
}

static int copy_put(pgr_t *R, pgr_stream_t *s, const char *p, size_t n,
                    dsd_err_t *err) {
  if (n == 0) return 0;
  if (PQputCopyData(s->conn->c, p, (int)n) != 1) {
    char msg[512];
    char obj[PGR_NAME_MAX + 8];
    pg_message(s->conn->c, NULL, msg, sizeof(msg));
    snprintf(obj, sizeof(obj), "table %s", s->table);
    return fail(R, err, DSD_EDB, obj, "data", msg);
  }
  return 0;
}

static int copy_begin(pgr_t *R, pgr_stream_t *s, dsd_err_t *err) {
  char obj[PGR_NAME_MAX + 8];
  table_from_header(s->header.data, s->table, sizeof(s->table));
  snprintf(obj, sizeof(obj), "table %s", s->table);
  if (!starts_with_ci(s->header.data, "COPY "))
    return fail_hint(R, err, DSD_EPROTO, obj, "data",
                     "the stream does not start with a COPY line: the archive "
                     "is corrupt", PGR_HINT_CORRUPT);
  int rc = take_conn(R, &s->conn, err);
  if (rc) return rc;
  PGresult *res = exec_query(R, s->conn->c, s->header.data, 1);
  ExecStatusType st = res ? PQresultStatus(res) : PGRES_FATAL_ERROR;
  if (st != PGRES_COPY_IN) {
    char msg[512];
    pg_message(s->conn->c, res, msg, sizeof(msg));
    PQclear(res);
    s->conn->busy = 0;
    s->conn = NULL;
    return canceled(R) ? DSD_ECANCELED : fail(R, err, DSD_EDB, obj, "data", msg);
  }
  PQclear(res);
  s->prev = '\n'; /* the header's newline */
  return 0;
}

static int copy_end(pgr_t *R, pgr_stream_t *s, const char *abort_msg,
                    dsd_err_t *err) {
  char obj[PGR_NAME_MAX + 8];
  int rc = 0;
  snprintf(obj, sizeof(obj), "table %s", s->table);
  pgr_conn_t *pc = s->conn;
  s->conn = NULL;
  if (PQputCopyEnd(pc->c, abort_msg) != 1) {
    char msg[512];
    pg_message(pc->c, NULL, msg, sizeof(msg));
    rc = abort_msg ? 0 : fail(R, err, DSD_EDB, obj, "data", msg);
  }
  PGresult *res;
  int failed = 0;
  char msg[512] = "";
  while ((res = PQgetResult(pc->c)) != NULL) {
    if (PQresultStatus(res) != PGRES_COMMAND_OK && !failed) {
      failed = 1;
      pg_message(pc->c, res, msg, sizeof(msg));
    }
    PQclear(res);
  }
  if (failed && !abort_msg && rc == 0)
    rc = fail(R, err, DSD_EDB, obj, "data", msg);
  pc->busy = 0;
  if (PQstatus(pc->c) != CONNECTION_OK) {
    /* A broken connection is not reused. */
    PQfinish(pc->c);
    pc->c = NULL;
  }
  return rc;
}

/* Body bytes of a data stream: sent as they come except the last three,
 * which may be the "\.\n" trailer that must not reach PQputCopyData. A
 * trailer is "\.\n" at the start of a line: a row can never be "\." since
 * COPY text escapes a backslash as "\\". */
static int copy_body(pgr_t *R, pgr_stream_t *s, const char *p, size_t n,
                     dsd_err_t *err) {
  int rc;
  if (s->ended) {
    if (n == 0) return 0;
    char obj[PGR_NAME_MAX + 8];
    snprintf(obj, sizeof(obj), "table %s", s->table);
    return fail_hint(R, err, DSD_EPROTO, obj, "data", "data after the end of "
                     "the COPY stream: the archive is corrupt", PGR_HINT_CORRUPT);
  }
  for (size_t i = 0; i < n; i++)
    if (p[i] == '\n') s->newlines++;
  size_t total = s->held_len + n;
  if (total <= sizeof(s->held)) {
    memcpy(s->held + s->held_len, p, n);
    s->held_len = total;
  } else {
    size_t send = total - sizeof(s->held);
    size_t from_held = send < s->held_len ? send : s->held_len;
    if ((rc = copy_put(R, s, s->held, from_held, err))) return rc;
    if (from_held) s->prev = s->held[from_held - 1];
    size_t from_data = send - from_held;
    if ((rc = copy_put(R, s, p, from_data, err))) return rc;
    if (from_data) s->prev = p[from_data - 1];
    char nh[3] = {0, 0, 0};
    size_t k = 0;
    for (size_t i = from_held; i < s->held_len; i++) nh[k++] = s->held[i];
    for (size_t i = from_data; i < n; i++) nh[k++] = p[i];
    memcpy(s->held, nh, sizeof(nh));
    s->held_len = k;
  }
  if (s->held_len == 3 && s->prev == '\n' && memcmp(s->held, "\\.\n", 3) == 0) {
    s->ended = 1;
    if ((rc = copy_end(R, s, NULL, err))) return rc;
    uint64_t rows = data_rows(s);
    R->tables_done++;
    R->rows_done += rows;
    pgr_log(R, "table %s: %llu row%s", s->table, (unsigned long long)rows,
            rows == 1 ? "" : "s");
  }
  return 0;
}

static int feed_data(pgr_t *R, pgr_stream_t *s, const char *p, size_t n,
                     dsd_err_t *err) {
  if (!s->header_done) {
    const char *nl = memchr(p, '\n', n);
    size_t take = nl ? (size_t)(nl - p) + 1 : n;
    if (s->header.len + take > (1u << 20))
      return dsd_err_set(err, DSD_EPROTO, "%s: the COPY line is longer than "
                         "1 MiB: the archive is corrupt", s->name);
    if (dsd_buf_append(&s->header, p, take))
      return dsd_err_set(err, DSD_ENOMEM, "out of memory");
    if (!nl) return 0;
    s->header.data[--s->header.len] = '\0'; /* the newline */
    s->header_done = 1;
    int rc = copy_begin(R, s, err);
    if (rc) return rc;
    p += take;
    n -= take;
  }
  return copy_body(R, s, p, n, err);
}

/* ------------------------------------------------------------------ */
/* Streams                                                             */
/* ------------------------------------------------------------------ */

static pgr_kind_t kind_of(const char *stream) {
  if (!strncmp(stream, "pg/drop", 7) && (!stream[7] || stream[7] == '/')) return PGR_DROP;
  if (!strcmp(stream, "pg/pre-data")) return PGR_PRE;
  if (!strncmp(stream, "pg/data/", 8)) return PGR_DATA;
  if (!strcmp(stream, "pg/blobs")) return PGR_BLOBS;
  if (!strcmp(stream, "pg/sequences")) return PGR_SEQ;
  if (!strcmp(stream, "pg/post-data")) return PGR_POST;
  return PGR_OTHER;
}

static void stream_free(pgr_stream_t *s) {
  dsd_sqlsplit_free(s->split);
  dsd_sha256_free(&s->hash);
  dsd_buf_free(&s->header);
  dsd_buf_free(&s->held_post);
  free(s);
}

static pgr_stream_t *find_stream(pgr_t *R, const char *name) {
  for (pgr_stream_t *s = R->streams; s; s = s->next)
    if (!strcmp(s->name, name)) return s;
  return NULL;
}

/* Statement streams of kinds before `kind` are complete once a stream of
 * a later kind starts (the dump writes them in layout order): finish their
 * splitters now so a last statement without ';' runs in its place. */
static int finish_before(pgr_t *R, pgr_kind_t kind, dsd_err_t *err) {
  for (pgr_stream_t *s = R->streams; s; s = s->next) {
    if (s->kind < kind && s->kind != PGR_DATA && s->kind != PGR_POST) {
      int rc = finish_statements(R, s, err);
      if (rc) return rc;
    }
  }
  return 0;
}

static int new_stream(pgr_t *R, const char *name, pgr_stream_t **out,
                      dsd_err_t *err) {
  pgr_stream_t *s = calloc(1, sizeof(*s));
  if (!s || dsd_sha256_init(&s->hash)) {
    free(s);
    return dsd_err_set(err, DSD_ENOMEM, "out of memory");
  }
  s->R = R;
  snprintf(s->name, sizeof(s->name), "%s", name);
  s->kind = kind_of(name);
  dsd_buf_init(&s->header);
  dsd_buf_init(&s->held_post);
  if (R->last_stream) R->last_stream->next = s;
  else R->streams = s;
  R->last_stream = s;
  if (s->kind != PGR_OTHER && s->kind > R->phase) {
    int rc = finish_before(R, s->kind, err);
    if (rc) return rc;
    /* post-data is only held in memory until the data is in. */
    R->phase = s->kind == PGR_POST ? PGR_SEQ : s->kind;
    if (s->kind == PGR_DATA)
      pgr_log(R, "schema applied (%lu statements)", R->statements);
  }
  *out = s;
  return 0;
}

static int apply(pgr_t *R, pgr_stream_t *s, const char *p, size_t n,
                 dsd_err_t *err) {
  switch (s->kind) {
    case PGR_DROP:
      return R->ctx->clean ? feed_statements(R, s, p, n, err) : 0;
    case PGR_PRE: case PGR_BLOBS: case PGR_SEQ:
      return feed_statements(R, s, p, n, err);
    case PGR_DATA:
      return feed_data(R, s, p, n, err);
    case PGR_POST:
      return dsd_buf_append(&s->held_post, p, n)
                 ? dsd_err_set(err, DSD_ENOMEM, "out of memory holding post-data")
                 : 0;
    case PGR_OTHER:
      return 0;
  }
  return 0;
}

/* ------------------------------------------------------------------ */
/* Summary check                                                       */
/* ------------------------------------------------------------------ */

static int verify_summary(pgr_t *R, const json_t *summary, dsd_err_t *err) {
  const json_t *streams = summary ? json_object_get(summary, "streams") : NULL;
  if (!json_is_object(streams))
    return dsd_err_set(err, DSD_EPROTO, "summary.json has no stream list: the "
                       "archive is corrupt or was not written by dsd");
  for (pgr_stream_t *s = R->streams; s; s = s->next) {
    if (!s->hashed) {
      if (dsd_sha256_final_hex(&s->hash, s->sha256))
        return dsd_err_set(err, DSD_EINTERNAL, "sha256 failed");
      s->hashed = 1;
    }
    const json_t *e = json_object_get(streams, s->name);
    if (!e)
      return dsd_err_set(err, DSD_EPROTO, "archive stream %s is not in "
                         "summary.json: the archive is corrupt", s->name);
    json_int_t bytes = json_integer_value(json_object_get(e, "bytes"));
    const char *sha = json_string_value(json_object_get(e, "sha256"));
    const json_t *jrows = json_object_get(e, "rows");
    char what[160] = "";
    if ((uint64_t)bytes != s->bytes)
      snprintf(what, sizeof(what), "%llu bytes read, %lld in the summary",
               (unsigned long long)s->bytes, (long long)bytes);
    else if (!sha || strcmp(sha, s->sha256) != 0)
      snprintf(what, sizeof(what), "its sha256 differs from the summary's");
    else if (s->kind == PGR_DATA && json_is_integer(jrows) &&
             (uint64_t)json_integer_value(jrows) != data_rows(s))
      snprintf(what, sizeof(what), "%llu rows read, %lld in the summary",
               (unsigned long long)data_rows(s),
               (long long)json_integer_value(jrows));
    if (what[0]) {
      char obj[PGR_NAME_MAX * 2];
      if (s->kind == PGR_DATA && s->table[0])
        snprintf(obj, sizeof(obj), "table %s", s->table);
      else
        snprintf(obj, sizeof(obj), "%s", s->name);
      char why[512];
      snprintf(why, sizeof(why), "the stream %s does not match summary.json "
               "(%s): the archive is corrupt", s->name, what);
      return fail_hint(R, err, DSD_EPROTO, obj, "check", why, PGR_HINT_CORRUPT);
    }
  }
  /* A stream of the summary that never came is a truncated archive. */
  const char *key;
  const json_t *v;
  json_object_foreach((json_t *)streams, key, v) {
    if (strncmp(key, "pg/", 3) == 0 && !find_stream(R, key))
      return dsd_err_set(err, DSD_EPROTO, "archive stream %s of the summary "
                         "is missing: the archive is corrupt", key);
  }
  return 0;
}

/* ------------------------------------------------------------------ */
/* Entry point                                                         */
/* ------------------------------------------------------------------ */

static void read_manifest(pgr_t *R, const json_t *m) {
  const json_t *pg = m ? json_object_get(m, "pg") : NULL;
  const json_t *v;
  int workers = 0;
  snprintf(R->encoding, sizeof(R->encoding), "UTF8");
  const json_t *where[] = {pg, m, m ? json_object_get(m, "options") : NULL};
  for (size_t i = 0; i < 3; i++) {
    if (!where[i]) continue;
    if (!workers && json_is_integer(v = json_object_get(where[i], "workers")))
      workers = (int)json_integer_value(v);
    if (!R->tables_total && (v = json_object_get(where[i], "tables")) != NULL)
      R->tables_total = (unsigned)(json_is_array(v) ? json_array_size(v)
                                   : json_is_object(v) ? json_object_size(v)
                                   : json_is_integer(v) ? (size_t)json_integer_value(v) : 0);
    if (!R->bytes_total) {
      static const char *const names[] = {"est_bytes", "bytes_total", "estimated_bytes"};
      for (size_t k = 0; k < 3; k++)
        if (json_is_integer(v = json_object_get(where[i], names[k])))
          R->bytes_total = (uint64_t)json_integer_value(v);
    }
    const char *enc = json_string_value(json_object_get(where[i], "encoding"));
    /* Only a plain name goes into SET client_encoding. */
    if (enc && strlen(enc) < sizeof(R->encoding) &&
        strspn(enc, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_") == strlen(enc))
      snprintf(R->encoding, sizeof(R->encoding), "%s", enc);
  }
  if (R->ctx->workers > workers) workers = R->ctx->workers;
  R->max_conns = workers > 0 ? workers : 2;
}

static char *password_of(const char *uri) {
  char *errmsg = NULL;
  PQconninfoOption *opts = PQconninfoParse(uri, &errmsg);
  char *pw = NULL;
  if (opts) {
    for (PQconninfoOption *o = opts; o->keyword; o++)
      if (!strcmp(o->keyword, "password") && o->val && *o->val) pw = strdup(o->val);
    PQconninfoFree(opts);
  }
  PQfreemem(errmsg);
  return pw;
}

/* Reads the chunk entry name (chunk of stream sname) through buf and
 * applies it. */
static int read_entry(pgr_t *R, dsd_archive_reader_t *r, const char *name,
                      const char *sname, unsigned chunk, char *buf,
                      dsd_err_t *err) {
  int rc = 0;
  pgr_stream_t *s = find_stream(R, sname);
  if (!s && (rc = new_stream(R, sname, &s, err))) goto cleanup;
  if (chunk != s->last_chunk + 1) {
    rc = dsd_err_set(err, DSD_EPROTO, "archive entry %s comes out of order "
                     "(expected chunk %u): the archive is corrupt", name,
                     s->last_chunk + 1);
    goto cleanup;
  }
  s->last_chunk = chunk;
  for (;;) {
    long n = dsd_archive_reader_read(r, buf, PGR_READ_SIZE);
    if (n < 0) {
      const dsd_err_t *re = dsd_archive_reader_error(r);
      char why[600], obj[PGR_NAME_MAX + 8];
      snprintf(why, sizeof(why), "archive entry %s cannot be read (%s)", name,
               re ? dsd_err_msg(re) : dsd_strerror((int)n));
      if (s->kind == PGR_DATA && s->table[0])
        snprintf(obj, sizeof(obj), "table %s", s->table);
      else
        snprintf(obj, sizeof(obj), "%s", s->name);
      rc = fail_hint(R, err, (int)n, obj, pgr_kind_names[s->kind], why,
                     PGR_HINT_CORRUPT);
      goto cleanup;
    }
    if (n == 0) break;
    dsd_sha256_update(&s->hash, buf, (size_t)n);
    s->bytes += (uint64_t)n;
    if ((rc = apply(R, s, buf, (size_t)n, err))) goto cleanup;
    R->bytes_done += (uint64_t)n;
    if (canceled(R)) {
      rc = DSD_ECANCELED;
      goto cleanup;
    }
  }
  pgr_progress(R, s->kind == PGR_DATA ? s->table : NULL);
cleanup:
  return rc;
}

int dsd__pg_restore(const dsd_restore_ctx_t *ctx, dsd_archive_reader_t *r,
                    dsd_err_t *err) {
  pgr_t R = {0};
  char *buf = NULL;
  int rc = 0;
  R.ctx = ctx;
  R.phase = PGR_DROP;
  read_manifest(&R, dsd_archive_reader_manifest(r));

  R.password = password_of(ctx->uri);
  if (R.password) dsd_redact_register(R.password);
  buf = malloc(PGR_READ_SIZE);
  if (!buf) {
    rc = dsd_err_set(err, DSD_ENOMEM, "out of memory");
    goto cleanup;
  }
  if ((rc = connect_target(&R, &R.main, err))) goto cleanup;
  pgr_log(&R, "connected to the target; clean %s", ctx->clean ? "on" : "off");

  const json_t *summary = NULL;
  for (;;) {
    const char *name;
    uint64_t size;
    char sname[PGR_NAME_MAX];
    unsigned chunk;
    if (canceled(&R)) {
      rc = DSD_ECANCELED;
      goto cleanup;
    }
    rc = dsd_archive_reader_next(r, &name, &size, err);
    if (rc < 0) goto cleanup;
    if (rc == 0) {
      rc = dsd_err_set(err, DSD_EPROTO, "the archive ends without summary.json: "
                       "it is truncated");
      goto cleanup;
    }
    rc = 0;
    if (!strcmp(name, "summary.json")) {
      summary = dsd_archive_reader_summary(r);
      break;
    }
    if (dsd_archive_chunk_name_parse(name, sname, sizeof(sname), &chunk) != 0) {
      pgr_log(&R, "skipped unexpected archive entry %s", name);
      continue;
    }
    if ((rc = read_entry(&R, r, name, sname, chunk, buf, err))) goto cleanup;
  }

  /* All of the archive is read: every table stream must have ended. */
  if ((rc = finish_before(&R, PGR_POST, err))) goto cleanup;
  for (pgr_stream_t *s = R.streams; s; s = s->next) {
    if (s->kind == PGR_DATA && !s->ended) {
      char obj[PGR_NAME_MAX + 8];
      snprintf(obj, sizeof(obj), "table %s", s->table[0] ? s->table : s->name);
      rc = fail_hint(&R, err, DSD_EPROTO, obj, "data", "the table's stream "
                     "ends without the COPY trailer: the archive is truncated",
                     PGR_HINT_CORRUPT);
      goto cleanup;
    }
  }
  if ((rc = verify_summary(&R, summary, err))) goto cleanup;
  if (!R.tables_total) R.tables_total = R.tables_done;

  R.phase = PGR_POST;
  pgr_progress(&R, NULL);
  for (pgr_stream_t *s = R.streams; s; s = s->next) {
    if (s->kind != PGR_POST) continue;
    if ((rc = feed_statements(&R, s, s->held_post.data ? s->held_post.data : "",
                              s->held_post.len, err)))
      goto cleanup;
    if ((rc = finish_statements(&R, s, err))) goto cleanup;
    dsd_buf_free(&s->held_post);
  }
  /* The sessions commit asynchronously (much faster for thousands of
   * small schema statements). One synchronous commit at the end flushes
   * the WAL up to it, which holds every earlier commit of every session:
   * when dsd reports success, the import is durable. */
  if ((rc = exec_simple(&R, R.main, "SET synchronous_commit = on; "
                        "SELECT pg_catalog.txid_current()",
                        "cannot make the import durable", err)))
    goto cleanup;
  pgr_log(&R, "imported %u tables, %llu rows, %lu statements%s",
          R.tables_done, (unsigned long long)R.rows_done, R.statements,
          R.tolerated ? " (some errors ignored, see above)" : "");
  if (R.bytes_total < R.bytes_done) R.bytes_total = R.bytes_done;
  {
    static const char done[] = "done";
    dsd_progress_t p = {.phase = done, .bytes_done = R.bytes_done,
                        .bytes_total = R.bytes_total, .rows_done = R.rows_done,
                        .tables_done = R.tables_done, .tables_total = R.tables_total};
    if (ctx->io.progress) ctx->io.progress(ctx->io.data, &p);
  }

cleanup:
  if (rc == DSD_ECANCELED) {
    char state[256];
    state_text(&R, state, sizeof(state));
    dsd_err_set(err, DSD_ECANCELED, "restore canceled; %s HINT: run the import "
                "again with clean (the default) to replace them", state);
  }
  for (pgr_stream_t *s = R.streams; s;) {
    pgr_stream_t *next = s->next;
    if (s->conn) copy_end(&R, s, "restore aborted", NULL);
    stream_free(s);
    s = next;
  }
  for (int i = 0; i < R.nconns; i++)
    if (R.conns[i].c) PQfinish(R.conns[i].c);
  if (R.main) PQfinish(R.main);
  if (R.password) {
    dsd_redact_unregister(R.password);
    free(R.password);
  }
  free(buf);
  return rc;
}
