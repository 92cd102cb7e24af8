/*
 * pg_dump.c - the dump side of the PostgreSQL dialect.
 *
 * What it writes follows the archive layout in pg.h. The work is split the
 * way pg_dump's parallel mode splits it:
 *
 *  - prepare: a leader connection opens a REPEATABLE READ READ ONLY
 *    transaction, exports its snapshot (pg_export_snapshot), lists the
 *    tables whose data is dumped (ordinary tables, leaf partitions,
 *    inheritance parents and children, unlogged tables; not partitioned
 *    parents, foreign tables, views, temporary tables or tables owned by
 *    extensions), their columns without generated ones, sequences and large
 *    objects, takes ACCESS SHARE locks on the tables (so no DDL can change
 *    them under the dump), fills the manifest and checks the anonymization
 *    rules against that list. Nothing has been written anywhere yet.
 *  - run: the schema comes from the real pg_dump, run as child processes on
 *    the same snapshot (--snapshot), streamed through pipes into the
 *    archive with pg_dump 15.14+'s \restrict lines left out; the drop block
 *    is cut from a --clean --if-exists run. The three runs (drop, pre-data,
 *    post-data) start together at the beginning, so their catalog queries
 *    overlap with each other and with the data; each is read when its turn
 *    in the archive layout comes, and until then waits on its full pipe
 *    (so the source sees W + 4 connections at the start, W + 2 during the
 *    data). Table data comes from W worker threads, each with its own
 *    connection that imports the snapshot and runs COPY ... TO STDOUT into
 *    the table's stream (anonymizing row by row when rules apply). Large
 *    objects and sequences are read on the leader connection, which keeps
 *    the snapshot's transaction open to the end.
 *
 * Secrets: the URI is only given to libpq. pg_dump gets a keyword/value
 * connection string without the password in argv, and the password in its
 * environment (PGPASSWORD). Error text from libpq and pg_dump goes through
 * dsd_err_set, which redacts the password registered at connect time.
 *
 * Cancel: workers check the cancel flag between COPY rows and cancel the
 * running query (PQcancel); the pg_dump child being read gets SIGTERM and
 * the ones still waiting are killed.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/buf.h"
#include "core/log.h"
#include "dialects/dump_run.h"
#include "dialects/pg/pg.h"
#include "dialects/pg/pg_util.h"

#ifdef DSD_HAVE_ANONYMIZE
#include "anonymize/anonymize.h"
#endif

extern char **environ;

#define DSD__PG_LO_PIECE (1u << 20)        /* lo_get piece: 1 MiB */
#define DSD__PG_PROGRESS_EVERY (1u << 20)  /* report every MiB per worker */
#define DSD__PG_LOCK_BATCH 200

typedef struct dsd__pg_col {
  char *name;
  char *type; /* format_type() output */
  bool not_null;
} dsd__pg_col_t;

typedef struct dsd__pg_table {
  unsigned id;
  Oid oid;
  char *schema, *name;
  char *qname;   /* "schema"."name" */
  char *collist; /* "a", "b" (empty when the table has no columns) */
  char *root;    /* "schema.name" of the partitioned root, or NULL */
  dsd__pg_col_t *cols;
  size_t ncols, capcols;
  uint64_t est_bytes;
#ifdef DSD_HAVE_ANONYMIZE
  dsd_anon_table_plan_t *plan; /* NULL: copied as is */
#endif
} dsd__pg_table_t;

typedef struct dsd__pg_dump {
  PGconn *leader;
  char *snapshot;
  int server_num;
  char *server_version;
  char *database;
  char *encoding;
  dsd__pg_table_t *tables;
  size_t ntables;
  char **seqs; /* quoted names */
  size_t nseqs;
  Oid *los;
  size_t nlos;
  char *pg_dump_path;
  char *conninfo; /* without the password: may go to argv */
  char *password; /* secret: environment only */

  /* Run state, shared by the workers; run.lock also guards next and phase. */
  dsd_dump_run_t run;
  dsd_archive_writer_t *w;
  size_t next;
  size_t *order; /* table indices, largest first */
  const char *phase;
} dsd__pg_dump_t;

/* ------------------------------------------------------------------ */
/* Small helpers                                                       */


/* Runs sql on the leader connection so that a cancel reaches it even while
 * the server waits for a lock (pg_relation_size or LOCK TABLE on a table
 * another session holds exclusively). */
static int dsd__leader_exec(dsd__pg_dump_t *st, const char *sql, const char *what,
                            PGresult **res, dsd_err_t *err) {
  return dsd__pg_exec_cancellable(st->leader, sql, st->run.ctx ? st->run.ctx->io.cancel : NULL, what,
                                  res, err);
}



static void dsd__progress(dsd__pg_dump_t *st, const char *phase, const char *current) {
  dsd_dump_run_progress(&st->run, phase, current, (uint32_t)st->ntables);
}


static char *dsd__strdup(const char *s) { return strdup(s ? s : ""); }

/* ------------------------------------------------------------------ */
/* Finding pg_dump                                                     */

/* Major version of a pg_dump binary ("pg_dump (PostgreSQL) 15.20"), or 0. */
static int dsd__pg_dump_major(const char *path) {
  char cmd[1200], out[256] = "";
  const char *p;
  FILE *f;
  if (strchr(path, '\'') != NULL)
    return 0;
  snprintf(cmd, sizeof cmd, "'%s' --version 2>/dev/null", path);
  f = popen(cmd, "r");
  if (f == NULL)
    return 0;
  if (fgets(out, sizeof out, f) == NULL)
    out[0] = '\0';
  pclose(f);
  p = strstr(out, ") ");
  return p ? atoi(p + 2) : 0;
}

/* pg_dump refuses servers newer than itself and is best at its own major;
 * try DSD_PG_BINDIR, then /usr/lib/postgresql/<major>/bin, then the newest
 * Debian-installed version, then PATH. */
static int dsd__find_pg_dump(int server_major, char **out, dsd_err_t *err) {
  char path[1024];
  const char *envdir = getenv("DSD_PG_BINDIR");
  int best = 0;

  *out = NULL;
  if (envdir && *envdir) {
    snprintf(path, sizeof path, "%s/pg_dump", envdir);
    if (access(path, X_OK) == 0 && dsd__pg_dump_major(path) >= server_major)
      goto found;
  }
  snprintf(path, sizeof path, "/usr/lib/postgresql/%d/bin/pg_dump", server_major);
  if (access(path, X_OK) == 0)
    goto found;
  for (int v = 40; v > server_major; v--) {
    snprintf(path, sizeof path, "/usr/lib/postgresql/%d/bin/pg_dump", v);
    if (access(path, X_OK) == 0) {
      best = v;
      break;
    }
  }
  if (best)
    goto found;
  {
    const char *pathenv = getenv("PATH");
    char *copy = pathenv ? strdup(pathenv) : NULL, *save = NULL;
    for (char *d = copy ? strtok_r(copy, ":", &save) : NULL; d; d = strtok_r(NULL, ":", &save)) {
      snprintf(path, sizeof path, "%s/pg_dump", d);
      if (access(path, X_OK) == 0 && dsd__pg_dump_major(path) >= server_major) {
        free(copy);
        goto found;
      }
    }
    free(copy);
  }
  return dsd_err_set(err, DSD_EUNSUPPORTED,
                     "no pg_dump for PostgreSQL %d or newer was found\n"
                     "HINT: install postgresql-client-%d or set DSD_PG_BINDIR",
                     server_major, server_major);
found:
  *out = strdup(path);
  return *out ? 0 : dsd_err_set(err, DSD_ENOMEM, "out of memory");
}

/* ------------------------------------------------------------------ */
/* Prepare                                                             */

static int dsd__cmp_order(const void *a, const void *b, void *arg) {
  const dsd__pg_table_t *t = arg;
  const dsd__pg_table_t *x = &t[*(const size_t *)a], *y = &t[*(const size_t *)b];
  if (x->est_bytes != y->est_bytes)
    return x->est_bytes < y->est_bytes ? 1 : -1;
  return x->id < y->id ? -1 : 1;
}

/* The WHERE clause shared by the table, column and sequence queries: user
 * objects that pg_dump would dump, not members of an extension. */
#define DSD__PG_USER_REL                                                        \
  " n.nspname <> 'information_schema' AND n.nspname !~ '^pg_'"                 \
  " AND c.relpersistence IN ('p', 'u')"                                         \
  " AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d"                       \
  "   WHERE d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass"             \
  "   AND d.objid = c.oid AND d.deptype = 'e')"

static int dsd__cmp_oid(const void *a, const void *b, void *arg) {
  const dsd__pg_table_t *t = arg;
  Oid x = t[*(const size_t *)a].oid, y = t[*(const size_t *)b].oid;
  return x < y ? -1 : x > y;
}

static int dsd__list_tables(dsd__pg_dump_t *st, dsd_err_t *err) {
  size_t *byoid = NULL;
  PGresult *r = NULL;
  dsd_buf_t sql = DSD_BUF_INIT;
  dsd_buf_t q = DSD_BUF_INIT;
  int rc, n;

  /* A leaf partition also names its partitioned root, so anonymization
   * rules written for "public.events" apply to "public.events_2024". */
  dsd_buf_printf(&sql,
                 "SELECT c.oid, n.nspname, c.relname, pg_catalog.pg_relation_size(c.oid), %s"
                 " FROM pg_catalog.pg_class c"
                 " JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace%s"
                 " WHERE c.relkind = 'r' AND" DSD__PG_USER_REL
                 " ORDER BY n.nspname, c.relname",
                 st->server_num >= 120000 ? "rn.nspname, rc.relname" : "NULL, NULL",
                 st->server_num >= 120000
                     ? " LEFT JOIN pg_catalog.pg_class rc ON rc.oid = pg_catalog.pg_partition_root(c.oid)"
                       " AND rc.oid <> c.oid"
                       " LEFT JOIN pg_catalog.pg_namespace rn ON rn.oid = rc.relnamespace"
                     : "");
  rc = sql.data ? dsd__leader_exec(st, sql.data, "cannot list the tables", &r, err)
                : dsd_err_set(err, DSD_ENOMEM, "out of memory");
  dsd_buf_reset(&sql);
  if (rc < 0)
    goto cleanup;
  n = PQntuples(r);
  st->tables = calloc((size_t)n + 1, sizeof *st->tables);
  st->order = calloc((size_t)n + 1, sizeof *st->order);
  if (st->tables == NULL || st->order == NULL) {
    rc = dsd_err_set(err, DSD_ENOMEM, "out of memory");
    goto cleanup;
  }
  for (int i = 0; i < n; i++) {
    dsd__pg_table_t *t = &st->tables[i];
    t->id = (unsigned)i + 1;
    t->oid = (Oid)strtoul(PQgetvalue(r, i, 0), NULL, 10);
    t->schema = dsd__strdup(PQgetvalue(r, i, 1));
    t->name = dsd__strdup(PQgetvalue(r, i, 2));
    t->est_bytes = strtoull(PQgetvalue(r, i, 3), NULL, 10);
    if (!PQgetisnull(r, i, 4) && asprintf(&t->root, "%s.%s", PQgetvalue(r, i, 4),
                                          PQgetvalue(r, i, 5)) < 0) {
      t->root = NULL;
      rc = dsd_err_set(err, DSD_ENOMEM, "out of memory");
      goto cleanup;
    }
    dsd_buf_reset(&q);
    if (dsd__pg_quote_ident(&q, t->schema) < 0 || dsd_buf_append_char(&q, '.') < 0 ||
        dsd__pg_quote_ident(&q, t->name) < 0 || (t->qname = strdup(q.data)) == NULL ||
        t->schema == NULL || t->name == NULL) {
      rc = dsd_err_set(err, DSD_ENOMEM, "out of memory");
      goto cleanup;
    }
    st->order[i] = (size_t)i;
    st->run.est_total += t->est_bytes;
    st->ntables++;
  }
  PQclear(r);
  r = NULL;

  /* Columns of all those tables in one query; generated columns are
   * computed again on restore and COPY refuses to load them. */
  dsd_buf_printf(&sql,
                 "SELECT a.attrelid, a.attname, pg_catalog.format_type(a.atttypid, a.atttypmod),"
                 " a.attnotnull"
                 " FROM pg_catalog.pg_attribute a"
                 " JOIN pg_catalog.pg_class c ON c.oid = a.attrelid"
                 " JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace"
                 " WHERE c.relkind = 'r' AND" DSD__PG_USER_REL
                 " AND a.attnum > 0 AND NOT a.attisdropped%s"
                 " ORDER BY a.attrelid, a.attnum",
                 st->server_num >= 120000 ? " AND a.attgenerated = ''" : "");
  rc = dsd__leader_exec(st, sql.data, "cannot list the columns", &r, err);
  if (rc < 0)
    goto cleanup;
  n = PQntuples(r);
  {
    /* Tables are in name order, columns in oid order: find each table by
     * binary search over an oid-sorted index (there may be 100k tables). */
    size_t cur = SIZE_MAX;
    Oid curoid = InvalidOid;
    byoid = calloc(st->ntables + 1, sizeof *byoid);
    if (byoid == NULL) {
      rc = dsd_err_set(err, DSD_ENOMEM, "out of memory");
      goto cleanup;
    }
    for (size_t k = 0; k < st->ntables; k++)
      byoid[k] = k;
    qsort_r(byoid, st->ntables, sizeof *byoid, dsd__cmp_oid, st->tables);
    for (int i = 0; i < n; i++) {
      Oid oid = (Oid)strtoul(PQgetvalue(r, i, 0), NULL, 10);
      dsd__pg_table_t *t;
      if (oid != curoid) {
        size_t lo = 0, hi = st->ntables;
        cur = SIZE_MAX;
        while (lo < hi) {
          size_t mid = lo + (hi - lo) / 2;
          Oid m = st->tables[byoid[mid]].oid;
          if (m == oid) {
            cur = byoid[mid];
            break;
          }
          if (m < oid)
            lo = mid + 1;
          else
            hi = mid;
        }
        curoid = oid;
      }
      if (cur == SIZE_MAX)
        continue; /* created after our table list: not in the snapshot's view */
      t = &st->tables[cur];
      if (t->ncols == t->capcols) {
        size_t nc = t->capcols ? t->capcols * 2 : 8;
        dsd__pg_col_t *p = realloc(t->cols, nc * sizeof *p);
        if (p == NULL) {
          rc = dsd_err_set(err, DSD_ENOMEM, "out of memory");
          goto cleanup;
        }
        t->cols = p;
        t->capcols = nc;
      }
      t->cols[t->ncols].name = dsd__strdup(PQgetvalue(r, i, 1));
      t->cols[t->ncols].type = dsd__strdup(PQgetvalue(r, i, 2));
      t->cols[t->ncols].not_null = PQgetvalue(r, i, 3)[0] == 't';
      if (t->cols[t->ncols].name == NULL || t->cols[t->ncols].type == NULL) {
        rc = dsd_err_set(err, DSD_ENOMEM, "out of memory");
        goto cleanup;
      }
      t->ncols++;
    }
  }
  for (size_t k = 0; k < st->ntables; k++) {
    dsd__pg_table_t *t = &st->tables[k];
    dsd_buf_reset(&q);
    dsd_buf_append_str(&q, "");
    for (size_t c = 0; c < t->ncols; c++) {
      if ((c && dsd_buf_append_str(&q, ", ") < 0) || dsd__pg_quote_ident(&q, t->cols[c].name) < 0) {
        rc = dsd_err_set(err, DSD_ENOMEM, "out of memory");
        goto cleanup;
      }
    }
    t->collist = strdup(q.data ? q.data : "");
    if (t->collist == NULL) {
      rc = dsd_err_set(err, DSD_ENOMEM, "out of memory");
      goto cleanup;
    }
  }
  qsort_r(st->order, st->ntables, sizeof *st->order, dsd__cmp_order, st->tables);
cleanup:
  free(byoid);
  PQclear(r);
  dsd_buf_free(&sql);
  dsd_buf_free(&q);
  return rc;
}

static int dsd__list_sequences_and_los(dsd__pg_dump_t *st, dsd_err_t *err) {
  PGresult *r = NULL;
  dsd_buf_t q = DSD_BUF_INIT;
  int rc, n;

  rc = dsd__pg_exec(st->leader,
                    "SELECT n.nspname, c.relname FROM pg_catalog.pg_class c"
                    " JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace"
                    " WHERE c.relkind = 'S' AND" DSD__PG_USER_REL
                    " ORDER BY n.nspname, c.relname",
                    "cannot list the sequences", &r, err);
  if (rc < 0)
    goto cleanup;
  n = PQntuples(r);
  st->seqs = calloc((size_t)n + 1, sizeof *st->seqs);
  if (st->seqs == NULL) {
    rc = dsd_err_set(err, DSD_ENOMEM, "out of memory");
    goto cleanup;
  }
  for (int i = 0; i < n; i++) {
    dsd_buf_reset(&q);
    if (dsd__pg_quote_ident(&q, PQgetvalue(r, i, 0)) < 0 || dsd_buf_append_char(&q, '.') < 0 ||
        dsd__pg_quote_ident(&q, PQgetvalue(r, i, 1)) < 0 ||
        (st->seqs[i] = strdup(q.data)) == NULL) {
      rc = dsd_err_set(err, DSD_ENOMEM, "out of memory");
      goto cleanup;
    }
    st->nseqs++;
  }
  PQclear(r);
  r = NULL;
  rc = dsd__pg_exec(st->leader,
                    "SELECT oid FROM pg_catalog.pg_largeobject_metadata ORDER BY oid",
                    "cannot list the large objects", &r, err);
  if (rc < 0)
    goto cleanup;
  n = PQntuples(r);
  st->los = calloc((size_t)n + 1, sizeof *st->los);
  if (st->los == NULL) {
    rc = dsd_err_set(err, DSD_ENOMEM, "out of memory");
    goto cleanup;
  }
  for (int i = 0; i < n; i++)
    st->los[st->nlos++] = (Oid)strtoul(PQgetvalue(r, i, 0), NULL, 10);
cleanup:
  PQclear(r);
  dsd_buf_free(&q);
  return rc;
}

/* ACCESS SHARE locks on every dumped table, as pg_dump takes them, so that
 * no ALTER or DROP can change a table between the listing and its COPY. */
static int dsd__lock_tables(dsd__pg_dump_t *st, dsd_err_t *err) {
  dsd_buf_t sql = DSD_BUF_INIT;
  int rc = 0;

  for (size_t i = 0; i < st->ntables && rc == 0; i += DSD__PG_LOCK_BATCH) {
    dsd_buf_reset(&sql);
    dsd_buf_append_str(&sql, "LOCK TABLE ");
    for (size_t k = i; k < st->ntables && k < i + DSD__PG_LOCK_BATCH; k++)
      dsd_buf_printf(&sql, "%sONLY %s", k > i ? ", " : "", st->tables[k].qname);
    if (dsd_buf_append_str(&sql, " IN ACCESS SHARE MODE") < 0) {
      rc = dsd_err_set(err, DSD_ENOMEM, "out of memory");
      break;
    }
    dsd_err_t e = {0};
    rc = dsd__leader_exec(st, sql.data, "cannot lock the tables to dump", NULL, &e);
    if (rc == DSD_ECANCELED) {
      dsd_err_set(err, rc, "the dump was canceled");
      break;
    }
    if (rc < 0 && strstr(dsd_err_msg(&e), "shared memory") != NULL)
      /* One lock per table, as pg_dump takes them. */
      dsd_err_set(err, rc, "%s\nHINT: dumping %zu tables takes one lock each; raise "
                  "max_locks_per_transaction on the source", dsd_err_msg(&e), st->ntables);
    else if (rc < 0)
      dsd_err_set(err, rc, "%s", dsd_err_msg(&e));
  }
  dsd_buf_free(&sql);
  return rc;
}

#ifdef DSD_HAVE_ANONYMIZE
static int dsd__plan_anonymize(dsd__pg_dump_t *st, const dsd_anon_rules_t *rules,
                               dsd_err_t *err) {
  /* names: every dumped table, then the partitioned roots (which have no
   * data of their own but may be named by rules). */
  char **names = calloc(2 * st->ntables + 1, sizeof *names);
  size_t nnames = st->ntables;
  dsd_anon_column_t *cols = NULL;
  json_t *rj = dsd_anon_rules_to_json(rules);
  json_t *rtables = rj ? json_object_get(rj, "tables") : NULL;
  int rc = 0;

  if (names == NULL || rj == NULL) {
    rc = dsd_err_set(err, DSD_ENOMEM, "out of memory");
    goto cleanup;
  }
  for (size_t i = 0; i < st->ntables; i++) {
    if (asprintf(&names[i], "%s.%s", st->tables[i].schema, st->tables[i].name) < 0) {
      names[i] = NULL;
      rc = dsd_err_set(err, DSD_ENOMEM, "out of memory");
      goto cleanup;
    }
    if (st->tables[i].root != NULL && (names[nnames] = strdup(st->tables[i].root)) != NULL)
      nnames++;
  }
  rc = dsd_anon_rules_check_tables(rules, (const char *const *)names, nnames, err);
  if (rc < 0)
    goto cleanup;
  for (size_t i = 0; i < st->ntables; i++) {
    dsd__pg_table_t *t = &st->tables[i];
    const char *plan_name = names[i];
    /* A partition without rules of its own takes its root's rules. */
    if (t->root != NULL && json_object_get(rtables, names[i]) == NULL &&
        json_object_get(rtables, t->root) != NULL)
      plan_name = t->root;
    free(cols);
    cols = calloc(t->ncols + 1, sizeof *cols);
    if (cols == NULL) {
      rc = dsd_err_set(err, DSD_ENOMEM, "out of memory");
      goto cleanup;
    }
    for (size_t c = 0; c < t->ncols; c++) {
      cols[c].name = t->cols[c].name;
      cols[c].not_null = t->cols[c].not_null;
      dsd_anon_type_parse("pg", t->cols[c].type, &cols[c].type);
    }
    rc = dsd_anon_plan_table(rules, plan_name, cols, t->ncols, &t->plan, err);
    if (rc < 0)
      goto cleanup;
  }
cleanup:
  for (size_t i = 0; names && i < nnames; i++)
    free(names[i]);
  free(names);
  free(cols);
  json_decref(rj);
  return rc;
}
#endif

static json_t *dsd__manifest_pg(const dsd__pg_dump_t *st) {
  json_t *pg = json_object(), *tables = json_array();
  if (pg == NULL || tables == NULL)
    goto fail;
  for (size_t i = 0; i < st->ntables; i++) {
    const dsd__pg_table_t *t = &st->tables[i];
    json_t *cols = json_array(), *tj;
    char stream[32];
    if (cols == NULL)
      goto fail;
    for (size_t c = 0; c < t->ncols; c++)
      json_array_append_new(cols, json_pack("{s:s, s:s}", "name", t->cols[c].name, "type",
                                            t->cols[c].type));
    snprintf(stream, sizeof stream, "pg/data/%05u", t->id);
    tj = json_pack("{s:I, s:s, s:s, s:o, s:s, s:I}", "id", (json_int_t)t->id, "schema",
                   t->schema, "name", t->name, "columns", cols, "stream", stream, "est_bytes",
                   (json_int_t)t->est_bytes);
    if (tj != NULL && t->root != NULL)
      json_object_set_new(tj, "partition_of", json_string(t->root));
    if (tj == NULL || json_array_append_new(tables, tj) != 0)
      goto fail;
  }
  if (json_object_set_new(pg, "database", json_string(st->database)) ||
      json_object_set_new(pg, "encoding", json_string(st->encoding)) ||
      json_object_set_new(pg, "server_version", json_string(st->server_version)) ||
      json_object_set_new(pg, "server_version_num", json_integer(st->server_num)) ||
      json_object_set_new(pg, "tables", tables) ||
      json_object_set_new(pg, "sequences", json_integer((json_int_t)st->nseqs)) ||
      json_object_set_new(pg, "large_objects", json_integer((json_int_t)st->nlos)) ||
      json_object_set_new(pg, "est_bytes", json_integer((json_int_t)st->run.est_total)))
    goto fail_pg;
  return pg;
fail:
  json_decref(tables);
fail_pg:
  json_decref(pg);
  return NULL;
}

int dsd__pg_dump_prepare(const dsd_dump_ctx_t *ctx, json_t *manifest, void **state,
                         dsd_err_t *err) {
  dsd__pg_dump_t *st = NULL;
  PGresult *r = NULL;
  json_t *pgj = NULL;
  char sql[256];
  int rc = 0;

  *state = NULL;
  st = calloc(1, sizeof *st);
  if (st == NULL)
    return dsd_err_set(err, DSD_ENOMEM, "out of memory");
  dsd_dump_run_init(&st->run, ctx);
  rc = dsd__pg_connect(ctx->uri, "source", &st->leader, err);
  if (rc < 0)
    goto cleanup;
  st->server_num = PQserverVersion(st->leader);
  st->server_version = dsd__strdup(PQparameterStatus(st->leader, "server_version"));
  if (st->server_num < 100000) {
    rc = dsd_err_set(err, DSD_EUNSUPPORTED,
                     "the source runs PostgreSQL %s; dsd dumps PostgreSQL 10 or newer",
                     st->server_version);
    goto cleanup;
  }
  rc = dsd__find_pg_dump(st->server_num / 10000, &st->pg_dump_path, err);
  if (rc < 0)
    goto cleanup;
  rc = dsd__pg_child_conninfo(ctx->uri, &st->conninfo, &st->password, err);
  if (rc < 0)
    goto cleanup;

  rc = dsd__leader_exec(st, "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY",
                    "cannot start the dump transaction", NULL, err);
  if (rc < 0)
    goto cleanup;
  rc = dsd__pg_exec(st->leader,
                    "SELECT pg_catalog.pg_export_snapshot(), pg_catalog.current_database(),"
                    " pg_catalog.pg_encoding_to_char(d.encoding)"
                    " FROM pg_catalog.pg_database d WHERE d.datname = pg_catalog.current_database()",
                    "cannot export the dump snapshot", &r, err);
  if (rc < 0)
    goto cleanup;
  st->snapshot = dsd__strdup(PQgetvalue(r, 0, 0));
  st->database = dsd__strdup(PQgetvalue(r, 0, 1));
  st->encoding = dsd__strdup(PQgetvalue(r, 0, 2));
  PQclear(r);
  r = NULL;
  /* COPY data in the database's own encoding, byte for byte; restore sets
   * the same client_encoding from the manifest. */
  snprintf(sql, sizeof sql, "SET client_encoding = '%s'", st->encoding);
  if (strchr(st->encoding, '\'') == NULL) {
    rc = dsd__leader_exec(st, sql, "cannot set the client encoding", NULL, err);
    if (rc < 0)
      goto cleanup;
  }

  rc = dsd__list_tables(st, err);
  if (rc < 0)
    goto cleanup;
  rc = dsd__list_sequences_and_los(st, err);
  if (rc < 0)
    goto cleanup;
  rc = dsd__lock_tables(st, err);
  if (rc < 0)
    goto cleanup;

  if (ctx->anonymize != NULL) {
#ifdef DSD_HAVE_ANONYMIZE
    rc = dsd__plan_anonymize(st, (const dsd_anon_rules_t *)ctx->anonymize, err);
    if (rc < 0)
      goto cleanup;
#else
    rc = dsd_err_set(err, DSD_EUNSUPPORTED, "anonymization is not built into this dsd yet");
    goto cleanup;
#endif
  }

  pgj = dsd__manifest_pg(st);
  if (pgj == NULL || json_object_set_new(manifest, "pg", pgj) != 0) {
    rc = dsd_err_set(err, DSD_ENOMEM, "out of memory");
    goto cleanup;
  }
  dsd_dump_run_log(&st->run, "snapshot %s exported from PostgreSQL %s: %zu tables (~%llu bytes), "
               "%zu sequences, %zu large objects",
           st->snapshot, st->server_version, st->ntables, (unsigned long long)st->run.est_total,
           st->nseqs, st->nlos);
  *state = st;
  st = NULL;
cleanup:
  PQclear(r);
  if (st != NULL)
    dsd__pg_dump_free(st);
  return rc;
}

void dsd__pg_dump_free(void *state) {
  dsd__pg_dump_t *st = state;
  if (st == NULL)
    return;
  if (st->leader != NULL)
    PQfinish(st->leader);
  for (size_t i = 0; i < st->ntables; i++) {
    dsd__pg_table_t *t = &st->tables[i];
#ifdef DSD_HAVE_ANONYMIZE
    dsd_anon_plan_free(t->plan);
#endif
    for (size_t c = 0; c < t->ncols; c++) {
      free(t->cols[c].name);
      free(t->cols[c].type);
    }
    free(t->cols);
    free(t->schema);
    free(t->name);
    free(t->qname);
    free(t->collist);
    free(t->root);
  }
  free(st->tables);
  free(st->order);
  for (size_t i = 0; i < st->nseqs; i++)
    free(st->seqs[i]);
  free(st->seqs);
  free(st->los);
  free(st->snapshot);
  free(st->server_version);
  free(st->database);
  free(st->encoding);
  free(st->pg_dump_path);
  free(st->conninfo);
  if (st->password != NULL) {
    explicit_bzero(st->password, strlen(st->password));
    free(st->password);
  }
  dsd_dump_run_destroy(&st->run);
  free(st);
}

/* ------------------------------------------------------------------ */
/* pg_dump child process                                               */

typedef struct dsd__filter {
  dsd_archive_stream_t *s;
  dsd_buf_t line;  /* the incomplete last line */
  int drop_mode;   /* keep only the drop block */
  int state;       /* drop mode: 0 before, 1 in, 2 after the block */
} dsd__filter_t;

static bool dsd__starts(const char *l, size_t n, const char *prefix) {
  size_t k = strlen(prefix);
  return n >= k && memcmp(l, prefix, k) == 0;
}

static bool dsd__is_drop(const char *l, size_t n) {
  if (dsd__starts(l, n, "DROP ") || dsd__starts(l, n, "SELECT pg_catalog.lo_unlink"))
    return true;
  return dsd__starts(l, n, "ALTER ") && memmem(l, n, " DROP ", 6) != NULL;
}

static int dsd__filter_line(dsd__filter_t *f, const char *l, size_t n) {
  if (!f->drop_mode) {
    /* pg_dump 15.14+ wraps its script in \restrict KEY ... \unrestrict KEY,
     * psql meta-commands that the server would reject. */
    if (dsd__starts(l, n, "\\restrict ") || dsd__starts(l, n, "\\unrestrict "))
      return 0;
    return dsd_archive_stream_write(f->s, l, n);
  }
  /* --clean output: header SETs, then all DROP statements (no comments or
   * blank lines between them), then the first "--" comment of the creates. */
  if (f->state == 0) {
    if (!dsd__is_drop(l, n))
      return 0;
    f->state = 1;
  }
  if (f->state == 1) {
    if (n == 0 || l[0] == '\n' || dsd__starts(l, n, "--")) {
      f->state = 2;
      return 0;
    }
    return dsd_archive_stream_write(f->s, l, n);
  }
  return 0;
}

static int dsd__filter_feed(dsd__filter_t *f, const char *data, size_t len) {
  int rc;
  while (len > 0) {
    const char *nl = memchr(data, '\n', len);
    size_t n = nl ? (size_t)(nl - data) + 1 : len;
    if (nl == NULL)
      return dsd_buf_append(&f->line, data, n);
    if (f->line.len == 0) {
      rc = dsd__filter_line(f, data, n);
    } else {
      if (dsd_buf_append(&f->line, data, n) < 0)
        return DSD_ENOMEM;
      rc = dsd__filter_line(f, f->line.data, f->line.len);
      dsd_buf_reset(&f->line);
    }
    if (rc < 0)
      return rc;
    data += n;
    len -= n;
  }
  return 0;
}

/* Builds the child's environment: ours without PGPASSWORD, plus the
 * password when the URI has one. Caller frees the array and its last
 * (added) string. */
static char **dsd__child_env(const char *password, char **added) {
  size_t n = 0, k = 0;
  char **env;
  *added = NULL;
  while (environ[n])
    n++;
  env = calloc(n + 2, sizeof *env);
  if (env == NULL)
    return NULL;
  for (size_t i = 0; i < n; i++)
    if (strncmp(environ[i], "PGPASSWORD=", 11) != 0)
      env[k++] = environ[i];
  if (password != NULL) {
    if (asprintf(added, "PGPASSWORD=%s", password) < 0) {
      free(env);
      *added = NULL;
      return NULL;
    }
    env[k++] = *added;
  }
  env[k] = NULL;
  return env;
}

/* A pg_dump child is started well before its output is read: all three
 * (drop, pre-data, post-data) start together at the beginning of the run, so
 * their catalog queries overlap with each other and with the table data.
 * A child whose output is not read yet blocks on its full stdout pipe, which
 * is all that is buffered (64 KiB): nothing is held whole. The archive gets
 * each child's stream in layout order because the streams are drained one
 * after the other. */
typedef struct dsd__pg_child {
  pid_t pid;          /* -1: not running */
  int out, errfd;     /* read ends of stdout and stderr; -1 when closed */
  const char *stream; /* archive stream name; static string */
  int drop_mode;
} dsd__pg_child_t;

#define DSD__PG_CHILD_INIT {-1, -1, -1, NULL, 0}

/* Kills a child that is still running (a failure or cancel elsewhere) and
 * reaps it. Safe on a child that was never started or already finished. */
static void dsd__child_kill(dsd__pg_child_t *c) {
  if (c->pid > 0) {
    kill(c->pid, SIGKILL);
    while (waitpid(c->pid, NULL, 0) < 0 && errno == EINTR)
      ;
    c->pid = -1;
  }
  if (c->out >= 0)
    close(c->out);
  if (c->errfd >= 0)
    close(c->errfd);
  c->out = c->errfd = -1;
}

/* Starts pg_dump on the dump's snapshot with args; its output is read later
 * by dsd__child_drain. */
static int dsd__child_start(dsd__pg_dump_t *st, dsd__pg_child_t *c, const char *stream_name,
                            int drop_mode, const char *const *args, dsd_err_t *err) {
  const char *argv[16];
  char snap[160], dbarg[4096 + 16];
  char **env = NULL, *envpw = NULL;
  int outp[2] = {-1, -1}, errp[2] = {-1, -1};
  posix_spawn_file_actions_t fa;
  int fa_init = 0, rc = 0, argc = 0;

  c->pid = -1;
  c->out = c->errfd = -1;
  c->stream = stream_name;
  c->drop_mode = drop_mode;
  if (strlen(st->conninfo) > 4096)
    return dsd_err_set(err, DSD_EINVAL, "the source connection string is too long");
  snprintf(snap, sizeof snap, "--snapshot=%s", st->snapshot);
  snprintf(dbarg, sizeof dbarg, "--dbname=%s", st->conninfo);
  argv[argc++] = st->pg_dump_path;
  argv[argc++] = snap;
  argv[argc++] = "--no-password";
  for (size_t i = 0; args[i] && argc < 13; i++)
    argv[argc++] = args[i];
  argv[argc++] = dbarg;
  argv[argc] = NULL;

  env = dsd__child_env(st->password, &envpw);
  /* O_CLOEXEC: the pipes of one child must not leak into the next one, or
   * a child would never see EOF on its siblings' pipes. */
  if (env == NULL || pipe2(outp, O_CLOEXEC) != 0 || pipe2(errp, O_CLOEXEC) != 0) {
    rc = dsd_err_set(err, DSD_EINTERNAL, "cannot start pg_dump: %s", strerror(errno));
    goto cleanup;
  }
  posix_spawn_file_actions_init(&fa);
  fa_init = 1;
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_adddup2(&fa, outp[1], 1);
  posix_spawn_file_actions_adddup2(&fa, errp[1], 2);
  rc = posix_spawn(&c->pid, st->pg_dump_path, &fa, NULL, (char *const *)argv, env);
  if (rc != 0) {
    c->pid = -1;
    rc = dsd_err_set(err, DSD_EINTERNAL, "cannot start %s: %s", st->pg_dump_path, strerror(rc));
    goto cleanup;
  }
  c->out = outp[0];
  c->errfd = errp[0];
  outp[0] = errp[0] = -1;
cleanup:
  for (int i = 0; i < 2; i++) {
    if (outp[i] >= 0)
      close(outp[i]);
    if (errp[i] >= 0)
      close(errp[i]);
  }
  if (fa_init)
    posix_spawn_file_actions_destroy(&fa);
  free(env);
  if (envpw) {
    explicit_bzero(envpw, strlen(envpw));
    free(envpw);
  }
  return rc;
}

/* Streams a started child's output into its archive stream (filtered),
 * waits for it and checks its exit status. The child is reaped on every
 * path. */
static int dsd__child_drain(dsd__pg_dump_t *st, dsd__pg_child_t *c, dsd_err_t *err) {
  dsd__filter_t f = {0};
  dsd_buf_t errtext = DSD_BUF_INIT;
  char buf[65536];
  int rc = 0, status = 0, canceled = 0, open_fds = 2;

  dsd_buf_init(&f.line);
  f.drop_mode = c->drop_mode;
  rc = dsd_archive_stream_open(st->w, c->stream, &f.s);
  if (rc < 0) {
    dsd_err_set(err, rc, "%s", dsd_err_msg(dsd_archive_writer_error(st->w)));
    goto cleanup;
  }
  /* Both pipes are drained together so that a chatty stderr cannot block
   * the child while we wait on stdout. */
  while (open_fds > 0) {
    struct pollfd pf[2] = {{c->out, POLLIN, 0}, {c->errfd, POLLIN, 0}};
    int pr = poll(pf, 2, 250);
    if (pr < 0 && errno != EINTR) {
      rc = dsd_err_set(err, DSD_EINTERNAL, "poll: %s", strerror(errno));
      break;
    }
    if (!canceled && dsd_dump_run_should_stop(&st->run)) {
      canceled = 1;
      kill(c->pid, SIGTERM);
    }
    for (int i = 0; i < 2; i++) {
      ssize_t n;
      if (pf[i].fd < 0 || !(pf[i].revents & (POLLIN | POLLHUP | POLLERR)))
        continue;
      n = read(pf[i].fd, buf, sizeof buf);
      if (n < 0 && errno == EINTR)
        continue;
      if (n <= 0) {
        close(pf[i].fd);
        if (i == 0)
          c->out = -1;
        else
          c->errfd = -1;
        open_fds--;
        continue;
      }
      if (i == 1) {
        if (errtext.len < 4096)
          dsd_buf_append(&errtext, buf, (size_t)n);
        continue;
      }
      if (rc == 0 && !canceled) {
        atomic_fetch_add(&st->run.bytes_done, (uint64_t)n);
        rc = dsd__filter_feed(&f, buf, (size_t)n);
        if (rc < 0) {
          const dsd_err_t *we = dsd_archive_writer_error(st->w);
          dsd_err_set(err, rc, "%s", we ? dsd_err_msg(we) : dsd_strerror(rc));
          kill(c->pid, SIGTERM);
        }
      }
    }
  }
  while (waitpid(c->pid, &status, 0) < 0 && errno == EINTR)
    ;
  c->pid = -1;
  if (rc < 0)
    goto cleanup;
  if (canceled) {
    rc = dsd_dump_run_canceled(&st->run) ? dsd_err_set(err, DSD_ECANCELED, "the dump was canceled")
                           : DSD_ECANCELED;
    goto cleanup;
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    char *nl;
    dsd_buf_append_char(&errtext, '\0');
    nl = errtext.data ? strchr(errtext.data, '\n') : NULL;
    if (nl && nl[1] == '\0')
      *nl = '\0';
    rc = dsd_err_set(err, DSD_EDB, "pg_dump (%s) failed with status %d: %s", c->stream,
                     WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status),
                     errtext.data && *errtext.data ? errtext.data : "no message");
    goto cleanup;
  }
  if (f.line.len > 0) {
    rc = dsd__filter_line(&f, f.line.data, f.line.len);
    if (rc < 0) {
      dsd_err_set(err, rc, "%s", dsd_err_msg(dsd_archive_writer_error(st->w)));
      goto cleanup;
    }
  }
cleanup:
  dsd__child_kill(c);
  if (f.s != NULL) {
    int crc = dsd_archive_stream_close(f.s);
    if (rc == 0 && crc < 0)
      rc = dsd_err_set(err, crc, "%s", dsd_err_msg(dsd_archive_writer_error(st->w)));
  }
  dsd_buf_free(&f.line);
  dsd_buf_free(&errtext);
  return rc;
}

/* ------------------------------------------------------------------ */
/* Table data                                                          */

#ifdef DSD_HAVE_ANONYMIZE
/* COPY text format: \b \f \n \r \t \v, \\, octal \ooo and hex \xhh escapes.
 * Appends the unescaped field to out. */
static int dsd__copy_unescape(const char *s, size_t n, dsd_buf_t *out) {
  /* The value never grows when unescaped: one reservation, then runs
   * without a backslash are copied whole. */
  dsd_buf_reset(out);
  if (dsd_buf_reserve(out, n) < 0)
    return DSD_ENOMEM;
  char *o = out->data;
  size_t len = 0;
  for (size_t i = 0; i < n; i++) {
    const char *bs = memchr(s + i, '\\', n - i);
    size_t run = bs ? (size_t)(bs - (s + i)) : n - i;
    memcpy(o + len, s + i, run);
    len += run;
    i += run;
    if (i >= n)
      break;
    if (i + 1 == n) {
      o[len++] = '\\';
      break;
    }
    char c = s[++i];
    switch (c) {
    case 'b': c = '\b'; break;
    case 'f': c = '\f'; break;
    case 'n': c = '\n'; break;
    case 'r': c = '\r'; break;
    case 't': c = '\t'; break;
    case 'v': c = '\v'; break;
    case 'x': {
      int v = 0, k = 0;
      while (k < 2 && i + 1 < n && s[i + 1] && strchr("0123456789abcdefABCDEF", s[i + 1])) {
        char h = s[++i];
        v = v * 16 + (h <= '9' ? h - '0' : (h | 32) - 'a' + 10);
        k++;
      }
      if (k == 0) {
        c = 'x';
        break;
      }
      c = (char)v;
      break;
    }
    default:
      if (c >= '0' && c <= '7') {
        int v = c - '0', k = 1;
        while (k < 3 && i + 1 < n && s[i + 1] >= '0' && s[i + 1] <= '7') {
          v = v * 8 + (s[++i] - '0');
          k++;
        }
        c = (char)v;
      }
      break;
    }
    o[len++] = c;
  }
  out->len = len;
  o[len] = '\0';
  return 0;
}

/* Appends s escaped for COPY text format: at most two bytes per byte, so
 * one reservation and a tight loop. */
static int dsd__copy_escape(const char *s, size_t n, dsd_buf_t *out) {
  if (n > SIZE_MAX / 2 || dsd_buf_reserve(out, 2 * n) < 0)
    return DSD_ENOMEM;
  char *o = out->data + out->len;
  for (size_t i = 0; i < n; i++) {
    char c = s[i], e = 0;
    switch (c) {
    case '\\': e = '\\'; break;
    case '\n': e = 'n'; break;
    case '\r': e = 'r'; break;
    case '\t': e = 't'; break;
    case '\b': e = 'b'; break;
    case '\f': e = 'f'; break;
    case '\v': e = 'v'; break;
    }
    if (e) {
      *o++ = '\\';
      *o++ = e;
    } else {
      *o++ = c;
    }
  }
  out->len = (size_t)(o - out->data);
  *o = '\0';
  return 0;
}

typedef struct dsd__anon_scratch {
  const char **fs; /* field starts in the raw row */
  size_t *fl;      /* field lengths */
  size_t cap;
  dsd_buf_t val, key, res, row;
} dsd__anon_scratch_t;

/* Rewrites one COPY text row (with its final newline) into sc->row. */
static int dsd__anon_row(const dsd__pg_table_t *t, const char *row, size_t len,
                         dsd__anon_scratch_t *sc, dsd_err_t *err) {
  size_t nf = 0;
  int rc;

  if (len > 0 && row[len - 1] == '\n')
    len--;
  if (sc->cap < t->ncols + 1) {
    sc->cap = t->ncols + 1;
    free(sc->fs);
    free(sc->fl);
    sc->fs = calloc(sc->cap, sizeof *sc->fs);
    sc->fl = calloc(sc->cap, sizeof *sc->fl);
    if (sc->fs == NULL || sc->fl == NULL)
      return dsd_err_set(err, DSD_ENOMEM, "out of memory");
  }
  for (const char *p = row, *end = row + len;;) {
    const char *tab = memchr(p, '\t', (size_t)(end - p));
    if (nf == sc->cap)
      return dsd_err_set(err, DSD_EPROTO, "table %s: a COPY row has more fields than columns",
                         t->qname);
    sc->fs[nf] = p;
    sc->fl[nf++] = (size_t)((tab ? tab : end) - p);
    if (tab == NULL)
      break;
    p = tab + 1;
  }
  if (nf != t->ncols)
    return dsd_err_set(err, DSD_EPROTO, "table %s: a COPY row has %zu fields for %zu columns",
                       t->qname, nf, t->ncols);
  dsd_buf_reset(&sc->row);
  for (size_t c = 0; c < nf; c++) {
    bool is_null = sc->fl[c] == 2 && memcmp(sc->fs[c], "\\N", 2) == 0, out_null = false;
    int keycol;
    if (c && dsd_buf_append_char(&sc->row, '\t') < 0)
      return dsd_err_set(err, DSD_ENOMEM, "out of memory");
    if (!dsd_anon_plan_column_active(t->plan, c)) {
      if (dsd_buf_append(&sc->row, sc->fs[c], sc->fl[c]) < 0)
        return dsd_err_set(err, DSD_ENOMEM, "out of memory");
      continue;
    }
    if (!is_null && dsd__copy_unescape(sc->fs[c], sc->fl[c], &sc->val) < 0)
      return dsd_err_set(err, DSD_ENOMEM, "out of memory");
    keycol = dsd_anon_plan_row_key(t->plan, c);
    if (keycol >= 0 && (size_t)keycol < nf) {
      bool knull = sc->fl[keycol] == 2 && memcmp(sc->fs[keycol], "\\N", 2) == 0;
      if (!knull && dsd__copy_unescape(sc->fs[keycol], sc->fl[keycol], &sc->key) < 0)
        return dsd_err_set(err, DSD_ENOMEM, "out of memory");
      rc = dsd_anon_apply_keyed(t->plan, c, is_null ? NULL : sc->val.data,
                                is_null ? 0 : sc->val.len, is_null,
                                knull ? NULL : (sc->key.data ? sc->key.data : ""),
                                knull ? 0 : sc->key.len, &sc->res, &out_null);
    } else {
      rc = dsd_anon_apply(t->plan, c, is_null ? NULL : (sc->val.data ? sc->val.data : ""),
                          is_null ? 0 : sc->val.len, is_null, &sc->res, &out_null);
    }
    if (rc < 0)
      /* The value itself is not shown: it is what anonymization hides. */
      return dsd_err_set(err, rc, "table %s, column \"%s\": a value could not be anonymized",
                         t->qname, t->cols[c].name);
    if (out_null)
      rc = dsd_buf_append(&sc->row, "\\N", 2);
    else
      rc = dsd__copy_escape(sc->res.data ? sc->res.data : "", sc->res.len, &sc->row);
    if (rc < 0)
      return dsd_err_set(err, DSD_ENOMEM, "out of memory");
  }
  if (dsd_buf_append_char(&sc->row, '\n') < 0)
    return dsd_err_set(err, DSD_ENOMEM, "out of memory");
  return 0;
}

static void dsd__anon_scratch_free(dsd__anon_scratch_t *sc) {
  free(sc->fs);
  free(sc->fl);
  dsd_buf_free(&sc->val);
  dsd_buf_free(&sc->key);
  dsd_buf_free(&sc->res);
  dsd_buf_free(&sc->row);
}
#endif

/* Cancels the running COPY and drains the connection so that it can be
 * closed cleanly. */
static void dsd__cancel_query(PGconn *c) {
  PGcancel *pc = PQgetCancel(c);
  char ebuf[256];
  char *b = NULL;
  PGresult *r;
  if (pc) {
    PQcancel(pc, ebuf, sizeof ebuf);
    PQfreeCancel(pc);
  }
  while (PQgetCopyData(c, &b, 0) > 0)
    PQfreemem(b);
  while ((r = PQgetResult(c)) != NULL)
    PQclear(r);
}

typedef struct dsd__worker {
  dsd__pg_dump_t *st;
  int index;
  PGconn *conn;
  atomic_int *started; /* workers whose transaction imported the snapshot */
} dsd__worker_t;

static int dsd__copy_table(dsd__worker_t *wk, dsd__pg_table_t *t, void *scratch,
                           dsd_err_t *err) {
  dsd__pg_dump_t *st = wk->st;
  dsd_archive_stream_t *s = NULL;
  dsd_buf_t sql = DSD_BUF_INIT;
  PGresult *r = NULL;
  char stream[32], label[1100];
  uint64_t rows = 0, since = 0;
  int rc = 0, n;
  char *row = NULL;
  bool in_copy = false;

  snprintf(stream, sizeof stream, "pg/data/%05u", t->id);
  snprintf(label, sizeof label, "%s.%s", t->schema, t->name);
  dsd__progress(st, "data", label);
  rc = dsd_archive_stream_open(st->w, stream, &s);
  if (rc < 0) {
    dsd_err_set(err, rc, "%s", dsd_err_msg(dsd_archive_writer_error(st->w)));
    goto cleanup;
  }
  /* The header line is the statement psql runs to load the rows; a table
   * without columns has no column list. */
  if (t->ncols > 0)
    dsd_buf_printf(&sql, "COPY %s (%s) FROM stdin;\n", t->qname, t->collist);
  else
    dsd_buf_printf(&sql, "COPY %s FROM stdin;\n", t->qname);
  rc = dsd_archive_stream_write(s, sql.data, sql.len);
  if (rc < 0)
    goto write_failed;
  dsd_buf_reset(&sql);
  if (t->ncols > 0)
    dsd_buf_printf(&sql, "COPY %s (%s) TO STDOUT", t->qname, t->collist);
  else
    dsd_buf_printf(&sql, "COPY %s TO STDOUT", t->qname);
  r = PQexec(wk->conn, sql.data);
  if (r == NULL || PQresultStatus(r) != PGRES_COPY_OUT) {
    char buf[1024];
    const char *m = r ? PQresultErrorMessage(r) : dsd__pg_conn_error(wk->conn, buf, sizeof buf);
    snprintf(buf, sizeof buf, "%s", m);
    buf[strcspn(buf, "\n")] = '\0';
    rc = dsd_err_set(err, DSD_EDB, "cannot copy table %s: %s", label, buf);
    goto cleanup;
  }
  PQclear(r);
  r = NULL;
  in_copy = true;
  while ((n = PQgetCopyData(wk->conn, &row, 0)) > 0) {
    const char *out = row;
    size_t outlen = (size_t)n;
#ifdef DSD_HAVE_ANONYMIZE
    if (t->plan != NULL) {
      dsd__anon_scratch_t *sc = scratch;
      rc = dsd__anon_row(t, row, (size_t)n, sc, err);
      if (rc < 0)
        goto cleanup;
      out = sc->row.data;
      outlen = sc->row.len;
    }
#endif
    rc = dsd_archive_stream_write(s, out, outlen);
    PQfreemem(row);
    row = NULL;
    if (rc < 0)
      goto write_failed;
    rows++;
    /* The shared counters are updated once per MiB, not per row: two
     * workers adding to one atomic per row keep its cache line bouncing. */
    since += outlen;
    if (since >= DSD__PG_PROGRESS_EVERY) {
      atomic_fetch_add(&st->run.bytes_done, since);
      atomic_fetch_add(&st->run.rows_done, rows);
      dsd_archive_stream_add_rows(s, rows);
      rows = 0;
      since = 0;
      dsd__progress(st, "data", label);
    }
    if (dsd_dump_run_should_stop(&st->run)) {
      rc = dsd_dump_run_canceled(&st->run) ? dsd_err_set(err, DSD_ECANCELED, "the dump was canceled")
                             : DSD_ECANCELED;
      goto cleanup;
    }
  }
  in_copy = false;
  if (n == -2) {
    char buf[1024];
    rc = dsd_err_set(err, DSD_EDB, "cannot copy table %s: %s", label,
                     dsd__pg_conn_error(wk->conn, buf, sizeof buf));
    goto cleanup;
  }
  r = PQgetResult(wk->conn);
  if (r == NULL || PQresultStatus(r) != PGRES_COMMAND_OK) {
    char buf[1024];
    const char *m = r ? PQresultErrorMessage(r) : "no result";
    snprintf(buf, sizeof buf, "%s", m);
    buf[strcspn(buf, "\n")] = '\0';
    rc = dsd_err_set(err, DSD_EDB, "cannot copy table %s: %s", label, buf);
    goto cleanup;
  }
  PQclear(r);
  while ((r = PQgetResult(wk->conn)) != NULL)
    PQclear(r);
  rc = dsd_archive_stream_write(s, "\\.\n", 3);
  if (rc < 0)
    goto write_failed;
  atomic_fetch_add(&st->run.bytes_done, since);
  atomic_fetch_add(&st->run.rows_done, rows);
  dsd_archive_stream_add_rows(s, rows);
  rc = dsd_archive_stream_close(s);
  s = NULL;
  if (rc < 0)
    goto write_failed;
  atomic_fetch_add(&st->run.tables_done, 1);
  dsd__progress(st, "data", label);
  goto cleanup;
write_failed:
  dsd_err_set(err, rc, "%s", dsd_archive_writer_error(st->w)
                                 ? dsd_err_msg(dsd_archive_writer_error(st->w))
                                 : dsd_strerror(rc));
cleanup:
  if (row)
    PQfreemem(row);
  if (in_copy)
    dsd__cancel_query(wk->conn);
  PQclear(r);
  if (s != NULL)
    dsd_archive_stream_close(s);
  dsd_buf_free(&sql);
  return rc;
}

static void *dsd__worker_main(void *arg) {
  dsd__worker_t *wk = arg;
  dsd__pg_dump_t *st = wk->st;
  dsd_err_t err = {0};
  char sql[256];
  void *scratch = NULL;
  int rc;

#ifdef DSD_HAVE_ANONYMIZE
  dsd__anon_scratch_t sc = {0};
  scratch = &sc;
#endif
  rc = dsd__pg_connect(st->run.ctx->uri, "source", &wk->conn, &err);
  if (rc < 0)
    goto cleanup;
  snprintf(sql, sizeof sql, "SET client_encoding = '%s'", st->encoding);
  rc = dsd__pg_exec(wk->conn, sql, "cannot set the client encoding", NULL, &err);
  if (rc < 0)
    goto cleanup;
  rc = dsd__pg_exec(wk->conn, "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY",
                    "cannot start a worker transaction", NULL, &err);
  if (rc < 0)
    goto cleanup;
  snprintf(sql, sizeof sql, "SET TRANSACTION SNAPSHOT '%s'", st->snapshot);
  rc = dsd__pg_exec(wk->conn, sql, "cannot import the dump snapshot", NULL, &err);
  if (rc < 0)
    goto cleanup;
  atomic_fetch_add(wk->started, 1);
  for (;;) {
    size_t i;
    if (dsd_dump_run_should_stop(&st->run)) {
      rc = dsd_dump_run_canceled(&st->run) ? dsd_err_set(&err, DSD_ECANCELED, "the dump was canceled") : 0;
      break;
    }
    pthread_mutex_lock(&st->run.lock);
    i = st->next < st->ntables ? st->order[st->next++] : SIZE_MAX;
    pthread_mutex_unlock(&st->run.lock);
    if (i == SIZE_MAX)
      break;
    rc = dsd__copy_table(wk, &st->tables[i], scratch, &err);
    if (rc < 0)
      break;
    dsd_dump_run_log(&st->run, "table %s.%s copied", st->tables[i].schema, st->tables[i].name);
  }
cleanup:
  if (rc < 0 && err.code != 0)
    dsd_dump_run_fail(&st->run, &err);
  else if (rc < 0)
    atomic_store(&st->run.stop, 1);
  if (wk->conn != NULL) {
    PQfinish(wk->conn);
    wk->conn = NULL;
  }
#ifdef DSD_HAVE_ANONYMIZE
  dsd__anon_scratch_free(&sc);
#endif
  return NULL;
}

static int dsd__dump_data(dsd__pg_dump_t *st, dsd_err_t *err) {
  int nw = st->run.ctx->workers > 0 ? st->run.ctx->workers : 2;
  dsd__worker_t *wk = NULL;
  pthread_t *th = NULL;
  atomic_int started;
  int created = 0, rc = 0;

  if (st->ntables == 0)
    return 0;
  if ((size_t)nw > st->ntables)
    nw = (int)st->ntables;
  atomic_init(&started, 0);
  wk = calloc((size_t)nw, sizeof *wk);
  th = calloc((size_t)nw, sizeof *th);
  if (wk == NULL || th == NULL) {
    rc = dsd_err_set(err, DSD_ENOMEM, "out of memory");
    goto cleanup;
  }
  for (int i = 0; i < nw; i++) {
    wk[i] = (dsd__worker_t){st, i, NULL, &started};
    if (pthread_create(&th[i], NULL, dsd__worker_main, &wk[i]) != 0) {
      dsd_err_t e = {0};
      dsd_err_set(&e, DSD_EINTERNAL, "cannot start a table worker");
      dsd_dump_run_fail(&st->run, &e);
      break;
    }
    created++;
  }
  for (int i = 0; i < created; i++)
    pthread_join(th[i], NULL);
  if (st->run.err.code != 0)
    rc = dsd_err_set(err, st->run.err.code, "%s", dsd_err_msg(&st->run.err));
  else if (dsd_dump_run_canceled(&st->run))
    rc = dsd_err_set(err, DSD_ECANCELED, "the dump was canceled");
cleanup:
  free(wk);
  free(th);
  return rc;
}

/* ------------------------------------------------------------------ */
/* Large objects and sequences (leader connection, on the snapshot)     */

static int dsd__dump_blobs(dsd__pg_dump_t *st, dsd_err_t *err) {
  static const char hexd[] = "0123456789abcdef";
  dsd_archive_stream_t *s = NULL;
  dsd_buf_t line = DSD_BUF_INIT;
  PGresult *r = NULL;
  int rc = 0;

  if (st->nlos == 0)
    return 0;
  rc = dsd_archive_stream_open(st->w, "pg/blobs", &s);
  if (rc < 0)
    goto write_failed;
  for (size_t i = 0; i < st->nlos; i++) {
    long long off = 0;
    for (;;) {
      char oid[16], offs[24], lens[16];
      const char *vals[3] = {oid, offs, lens};
      int fmts[3] = {0, 0, 0};
      const unsigned char *v;
      size_t len;

      if (dsd_dump_run_should_stop(&st->run)) {
        rc = dsd_err_set(err, DSD_ECANCELED, "the dump was canceled");
        goto cleanup;
      }
      snprintf(oid, sizeof oid, "%u", st->los[i]);
      snprintf(offs, sizeof offs, "%lld", off);
      snprintf(lens, sizeof lens, "%u", DSD__PG_LO_PIECE);
      /* Binary result: the raw bytes, no bytea text decoding needed. */
      r = PQexecParams(st->leader,
                       "SELECT pg_catalog.lo_get($1::pg_catalog.oid, $2::pg_catalog.int8, $3::pg_catalog.int4)",
                       3, NULL, vals, NULL, fmts, 1);
      if (r == NULL || PQresultStatus(r) != PGRES_TUPLES_OK) {
        char buf[1024];
        snprintf(buf, sizeof buf, "%s", r ? PQresultErrorMessage(r) : "no result");
        buf[strcspn(buf, "\n")] = '\0';
        rc = dsd_err_set(err, DSD_EDB, "cannot read large object %u: %s", st->los[i], buf);
        goto cleanup;
      }
      v = (const unsigned char *)PQgetvalue(r, 0, 0);
      len = (size_t)PQgetlength(r, 0, 0);
      if (len == 0) {
        PQclear(r);
        r = NULL;
        break;
      }
      dsd_buf_reset(&line);
      if (dsd_buf_reserve(&line, len * 2 + 96) < 0) {
        rc = dsd_err_set(err, DSD_ENOMEM, "out of memory");
        goto cleanup;
      }
      dsd_buf_printf(&line, "SELECT pg_catalog.lo_put('%u', %lld, '\\x", st->los[i], off);
      for (size_t k = 0; k < len; k++) {
        line.data[line.len++] = hexd[v[k] >> 4];
        line.data[line.len++] = hexd[v[k] & 15];
      }
      line.data[line.len] = '\0';
      dsd_buf_append_str(&line, "');\n");
      PQclear(r);
      r = NULL;
      rc = dsd_archive_stream_write(s, line.data, line.len);
      if (rc < 0)
        goto write_failed;
      atomic_fetch_add(&st->run.bytes_done, (uint64_t)len);
      off += (long long)len;
      if (len < DSD__PG_LO_PIECE)
        break;
    }
    /* No rows are counted here: the summary's row totals are table rows
     * (the manifest has the number of large objects). */
  }
  rc = dsd_archive_stream_close(s);
  s = NULL;
  if (rc < 0)
    goto write_failed;
  dsd_dump_run_log(&st->run, "%zu large objects copied", st->nlos);
  goto cleanup;
write_failed:
  dsd_err_set(err, rc, "%s", dsd_archive_writer_error(st->w)
                                 ? dsd_err_msg(dsd_archive_writer_error(st->w))
                                 : dsd_strerror(rc));
cleanup:
  PQclear(r);
  if (s != NULL)
    dsd_archive_stream_close(s);
  dsd_buf_free(&line);
  return rc;
}

static int dsd__dump_sequences(dsd__pg_dump_t *st, dsd_err_t *err) {
  dsd_archive_stream_t *s = NULL;
  dsd_buf_t sql = DSD_BUF_INIT, line = DSD_BUF_INIT;
  PGresult *r = NULL;
  int rc = 0;

  if (st->nseqs == 0)
    return 0;
  rc = dsd_archive_stream_open(st->w, "pg/sequences", &s);
  if (rc < 0)
    goto write_failed;
  for (size_t i = 0; i < st->nseqs; i++) {
    dsd_buf_reset(&sql);
    dsd_buf_printf(&sql, "SELECT last_value, is_called FROM %s", st->seqs[i]);
    rc = dsd__leader_exec(st, sql.data, "cannot read a sequence", &r, err);
    if (rc < 0)
      goto cleanup;
    dsd_buf_reset(&line);
    dsd_buf_append_str(&line, "SELECT pg_catalog.setval(");
    dsd__pg_quote_literal(&line, st->seqs[i]);
    if (dsd_buf_printf(&line, ", %s, %s);\n", PQgetvalue(r, 0, 0),
                       PQgetvalue(r, 0, 1)[0] == 't' ? "true" : "false") < 0) {
      rc = dsd_err_set(err, DSD_ENOMEM, "out of memory");
      goto cleanup;
    }
    PQclear(r);
    r = NULL;
    rc = dsd_archive_stream_write(s, line.data, line.len);
    if (rc < 0)
      goto write_failed;
    /* Not a table row: the totals count table rows only (the manifest has
     * the number of sequences). */
  }
  rc = dsd_archive_stream_close(s);
  s = NULL;
  if (rc < 0)
    goto write_failed;
  goto cleanup;
write_failed:
  dsd_err_set(err, rc, "%s", dsd_archive_writer_error(st->w)
                                 ? dsd_err_msg(dsd_archive_writer_error(st->w))
                                 : dsd_strerror(rc));
cleanup:
  PQclear(r);
  if (s != NULL)
    dsd_archive_stream_close(s);
  dsd_buf_free(&sql);
  dsd_buf_free(&line);
  return rc;
}

/* ------------------------------------------------------------------ */
/* Run                                                                 */

int dsd__pg_dump_run(void *state, const dsd_dump_ctx_t *ctx, dsd_archive_writer_t *w,
                     dsd_err_t *err) {
  static const char *const drop_args[] = {"--section=pre-data", "--section=post-data",
                                          "--clean", "--if-exists", "--no-owner",
                                          "--no-privileges", NULL};
  static const char *const pre_args[] = {"--section=pre-data", "--no-owner",
                                         "--no-privileges", NULL};
  static const char *const post_args[] = {"--section=post-data", "--no-owner",
                                          "--no-privileges", NULL};
  dsd__pg_dump_t *st = state;
  dsd__pg_child_t drop = DSD__PG_CHILD_INIT, pre = DSD__PG_CHILD_INIT,
                  post = DSD__PG_CHILD_INIT;
  int rc;

  st->run.ctx = ctx;
  st->w = w;
  dsd__progress(st, "schema", NULL);
  /* All three schema runs start now, on the same snapshot: each spends most
   * of its time in catalog queries before writing, and that time now
   * overlaps with the other runs and with the table data. */
  rc = dsd__child_start(st, &drop, "pg/drop", 1, drop_args, err);
  if (rc == 0)
    rc = dsd__child_start(st, &pre, "pg/pre-data", 0, pre_args, err);
  if (rc == 0)
    rc = dsd__child_start(st, &post, "pg/post-data", 0, post_args, err);
  if (rc < 0)
    goto cleanup;
  rc = dsd__child_drain(st, &drop, err);
  if (rc < 0)
    goto cleanup;
  rc = dsd__child_drain(st, &pre, err);
  if (rc < 0)
    goto cleanup;
  dsd_dump_run_log(&st->run, "schema (pre-data) written");
  /* Schema bytes are not part of the data estimate. */
  atomic_store(&st->run.bytes_done, 0);
  rc = dsd__dump_data(st, err);
  if (rc < 0)
    goto cleanup;
  rc = dsd__dump_blobs(st, err);
  if (rc < 0)
    goto cleanup;
  rc = dsd__dump_sequences(st, err);
  if (rc < 0)
    goto cleanup;
  dsd__progress(st, "indexes", NULL);
  rc = dsd__child_drain(st, &post, err);
  if (rc < 0)
    goto cleanup;
  dsd_dump_run_log(&st->run, "schema (post-data) written");
  /* The snapshot is no longer needed: end the transaction so the source's
   * vacuum can move on while the archive is being finished. */
  dsd__leader_exec(st, "COMMIT", "cannot end the dump transaction", NULL, NULL);
  dsd__progress(st, "done", NULL);
cleanup:
  if (rc < 0 && dsd_dump_run_canceled(&st->run)) {
    /* A failure caused by the cancel (a killed pg_dump, a canceled COPY, a
     * blob writer that refuses writes once canceled) is reported as the
     * cancel it is. */
    dsd_err_clear(err);
    rc = dsd_err_set(err, DSD_ECANCELED, "the dump was canceled");
  }
  /* Children not drained yet (a failure before their turn) are killed. */
  dsd__child_kill(&drop);
  dsd__child_kill(&pre);
  dsd__child_kill(&post);
  return rc;
}
