/*
 * mysql_dump.c - the dump side of the MySQL / MariaDB dialect.
 *
 * What it writes follows the archive layout in mysql.h. One consistent
 * snapshot is shared by W table workers the way mydumper takes it:
 *
 *  - prepare: a leader connection and W worker connections are opened.
 *    The leader takes FLUSH TABLES WITH READ LOCK (needs the RELOAD
 *    privilege); while it holds the lock no session can change any table,
 *    so every worker's START TRANSACTION WITH CONSISTENT SNAPSHOT sees the
 *    same state. Without RELOAD the leader takes LOCK TABLES ... READ on
 *    every base table of the database (needs LOCK TABLES and SELECT, which
 *    database owners have): same guarantee for those tables. When neither
 *    lock can be taken, the dump uses ONE worker, whose single transaction
 *    is consistent on its own (slower, same guarantee). The lock is
 *    released as soon as the snapshots are open (milliseconds, once
 *    running writes have finished). Only InnoDB (transactional) tables are
 *    covered by the snapshot; MyISAM tables are read as they are when their
 *    worker gets to them. The table list, columns, views, routines,
 *    triggers and events are read under the lock, the anonymization rules
 *    are checked against them, and the manifest is filled: nothing has been
 *    written anywhere yet.
 *  - run: the leader writes the drop, schema and post streams from SHOW
 *    CREATE (not transactional: DDL during the dump is not supported, and a
 *    table altered after the snapshot makes its worker fail with "table
 *    definition has changed"). The workers stream each table with
 *    mysql_use_result (rows are never buffered whole) into multi-row
 *    INSERT statements of about 1 MiB, anonymizing values when rules apply.
 *
 * Cancel and failure: the main thread watches the cancel flag while the
 *   workers run and KILLs their connections (a worker blocked in the
 *   server, or draining a huge result, stops at once); workers also check
 *   the flag between rows.
 *
 * Secrets: the URI goes to mysql_real_connect only (mysql.c).
 */
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "core/buf.h"
#include "core/log.h"
#include "dialects/dump_run.h"
#include "dialects/mysql/mysql.h"

#ifdef DSD_HAVE_ANONYMIZE
#include "anonymize/anonymize.h"
#endif

#define DSD__MY_STMT_SIZE (1u << 20)       /* INSERT statement size target */
#define DSD__MY_PROGRESS_EVERY (1u << 20)  /* report every MiB per worker */

typedef struct dsd__my_col {
  char *name;
  char *type; /* COLUMN_TYPE */
  bool not_null;
} dsd__my_col_t;

typedef struct dsd__my_table {
  unsigned id;
  char *name;
  char *qname;   /* `name` */
  char *collist; /* `a`, `b` without generated columns */
  dsd__my_col_t *cols; /* without generated columns */
  size_t ncols, capcols;
  char **allcols; /* every column, for a view's placeholder */
  size_t nall, capall;
  bool is_view;
  uint64_t est_bytes;
#ifdef DSD_HAVE_ANONYMIZE
  dsd_anon_table_plan_t *plan;
#endif
} dsd__my_table_t;

typedef struct dsd__my_obj {
  char *name;
  char *kind; /* PROCEDURE, FUNCTION, TRIGGER, EVENT */
} dsd__my_obj_t;

typedef struct dsd__my_dump {
  MYSQL *leader;
  MYSQL **wconn;
  unsigned long *wid; /* server thread ids of the workers */
  int nworkers;
  char *db;
  char *server_version;
  const char *snapshot_mode;
  dsd__my_table_t *tables; /* base tables and views, by name */
  size_t ntables, captables, nbase;
  dsd__my_obj_t *objs;
  size_t nobjs, capobjs;

  /* Run state, shared by the workers; run.lock also guards next. */
  dsd_dump_run_t run;
  dsd_archive_writer_t *w;
  size_t next;
  size_t *order; /* indices of base tables, largest first */
  size_t norder;
  atomic_int running;
} dsd__my_dump_t;

/* ------------------------------------------------------------------ */
/* Small helpers                                                       */




static void dsd__progress(dsd__my_dump_t *st, const char *phase, const char *current) {
  dsd_dump_run_progress(&st->run, phase, current, (uint32_t)st->nbase);
}


/* Runs a query whose (small, catalog) result is stored whole; *res is
 * owned by the caller (mysql_free_result). */
static int dsd__query(MYSQL *c, const char *sql, const char *what, MYSQL_RES **res,
                      dsd_err_t *err) {
  *res = NULL;
  if (mysql_query(c, sql) != 0 || (*res = mysql_store_result(c)) == NULL)
    return dsd_err_set(err, DSD_EDB, "%s: %s (%u)", what, mysql_error(c), mysql_errno(c));
  return 0;
}

static int dsd__grow(void **arr, size_t *cap, size_t n, size_t size) {
  if (n < *cap)
    return 0;
  size_t nc = *cap ? *cap * 2 : 16;
  void *p = realloc(*arr, nc * size);
  if (p == NULL)
    return DSD_ENOMEM;
  *arr = p;
  *cap = nc;
  return 0;
}

/* ------------------------------------------------------------------ */
/* Catalog                                                             */

static dsd__my_table_t *dsd__find_table(dsd__my_dump_t *st, const char *name) {
  for (size_t i = 0; i < st->ntables; i++)
    if (strcmp(st->tables[i].name, name) == 0)
      return &st->tables[i];
  return NULL;
}

/* Generated columns (VIRTUAL, STORED, PERSISTENT) cannot be inserted into;
 * MySQL 8's DEFAULT_GENERATED is a default expression, not one of them. */
static bool dsd__is_generated(const char *extra) {
  return extra != NULL && (strcasestr(extra, "VIRTUAL") != NULL ||
                           strcasestr(extra, "STORED") != NULL ||
                           strcasestr(extra, "PERSISTENT") != NULL);
}

static int dsd__list_catalog(dsd__my_dump_t *st, dsd_err_t *err) {
  MYSQL_RES *res = NULL;
  MYSQL_ROW row;
  dsd_buf_t b = DSD_BUF_INIT;
  int rc;

  rc = dsd__query(st->leader,
                  "SELECT TABLE_NAME, TABLE_TYPE, COALESCE(DATA_LENGTH, 0)"
                  " FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE()"
                  " ORDER BY TABLE_NAME",
                  "cannot list the tables", &res, err);
  if (rc < 0)
    goto cleanup;
  while ((row = mysql_fetch_row(res)) != NULL) {
    dsd__my_table_t *t;
    bool view = row[1] && strcmp(row[1], "VIEW") == 0;
    if (!view && row[1] && strcmp(row[1], "BASE TABLE") != 0 &&
        strcmp(row[1], "SYSTEM VERSIONED") != 0) {
      dsd_dump_run_log(&st->run, "%s %s is not dumped (not supported)", row[1], row[0]);
      continue;
    }
    if (dsd__grow((void **)&st->tables, &st->captables, st->ntables, sizeof *st->tables) < 0)
      goto nomem;
    t = &st->tables[st->ntables];
    memset(t, 0, sizeof *t);
    t->name = strdup(row[0]);
    dsd_buf_reset(&b);
    if (t->name == NULL || dsd__mysql_quote_ident(&b, row[0]) < 0 ||
        (t->qname = strdup(b.data)) == NULL) {
      st->ntables++;
      goto nomem;
    }
    st->ntables++;
    t->is_view = view;
    if (!view) {
      t->id = (unsigned)++st->nbase;
      t->est_bytes = strtoull(row[2] ? row[2] : "0", NULL, 10);
      st->run.est_total += t->est_bytes;
    }
  }
  mysql_free_result(res);
  res = NULL;

  rc = dsd__query(st->leader,
                  "SELECT TABLE_NAME, COLUMN_NAME, COLUMN_TYPE, IS_NULLABLE, EXTRA"
                  " FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = DATABASE()"
                  " ORDER BY TABLE_NAME, ORDINAL_POSITION",
                  "cannot list the columns", &res, err);
  if (rc < 0)
    goto cleanup;
  while ((row = mysql_fetch_row(res)) != NULL) {
    dsd__my_table_t *t = dsd__find_table(st, row[0]);
    if (t == NULL)
      continue;
    if (dsd__grow((void **)&t->allcols, &t->capall, t->nall, sizeof *t->allcols) < 0 ||
        (t->allcols[t->nall] = strdup(row[1])) == NULL)
      goto nomem;
    t->nall++;
    if (t->is_view || dsd__is_generated(row[4]))
      continue;
    if (dsd__grow((void **)&t->cols, &t->capcols, t->ncols, sizeof *t->cols) < 0)
      goto nomem;
    t->cols[t->ncols].name = strdup(row[1]);
    t->cols[t->ncols].type = strdup(row[2] ? row[2] : "");
    t->cols[t->ncols].not_null = row[3] && strcmp(row[3], "NO") == 0;
    t->ncols++;
    if (t->cols[t->ncols - 1].name == NULL || t->cols[t->ncols - 1].type == NULL)
      goto nomem;
  }
  mysql_free_result(res);
  res = NULL;
  /* MariaDB's JSON is LONGTEXT with a json_valid() check named after the
   * column: call it json, so that the anonymizer keeps its values JSON.
   * (MySQL reports json as the type itself; its CHECK_CONSTRAINTS has no
   * TABLE_NAME, so the query fails there and is not needed.) */
  if (mysql_query(st->leader,
                  "SELECT TABLE_NAME, CONSTRAINT_NAME FROM information_schema.CHECK_CONSTRAINTS"
                  " WHERE CONSTRAINT_SCHEMA = DATABASE()"
                  " AND CHECK_CLAUSE = CONCAT('json_valid(`', CONSTRAINT_NAME, '`)')") == 0 &&
      (res = mysql_store_result(st->leader)) != NULL) {
    while ((row = mysql_fetch_row(res)) != NULL) {
      dsd__my_table_t *t = dsd__find_table(st, row[0]);
      for (size_t c = 0; t != NULL && c < t->ncols; c++)
        if (strcmp(t->cols[c].name, row[1]) == 0 && strstr(t->cols[c].type, "text") != NULL) {
          char *json = strdup("json");
          if (json == NULL)
            goto nomem;
          free(t->cols[c].type);
          t->cols[c].type = json;
        }
    }
    mysql_free_result(res);
    res = NULL;
  }
  for (size_t i = 0; i < st->ntables; i++) {
    dsd__my_table_t *t = &st->tables[i];
    dsd_buf_reset(&b);
    dsd_buf_append_str(&b, "");
    for (size_t c = 0; c < t->ncols; c++) {
      if ((c > 0 && dsd_buf_append(&b, ", ", 2) < 0) ||
          dsd__mysql_quote_ident(&b, t->cols[c].name) < 0)
        goto nomem;
    }
    if (b.data == NULL || (t->collist = strdup(b.data)) == NULL)
      goto nomem;
  }

  /* Routines, then triggers in firing order, then events: the order they
   * are created in on restore. */
  static const struct {
    const char *sql, *what;
  } lists[] = {
      {"SELECT ROUTINE_NAME, ROUTINE_TYPE FROM information_schema.ROUTINES"
       " WHERE ROUTINE_SCHEMA = DATABASE() ORDER BY ROUTINE_TYPE, ROUTINE_NAME",
       "cannot list the routines"},
      {"SELECT TRIGGER_NAME, 'TRIGGER' FROM information_schema.TRIGGERS"
       " WHERE TRIGGER_SCHEMA = DATABASE()"
       " ORDER BY EVENT_OBJECT_TABLE, ACTION_TIMING, EVENT_MANIPULATION, ACTION_ORDER",
       "cannot list the triggers"},
      {"SELECT EVENT_NAME, 'EVENT' FROM information_schema.EVENTS"
       " WHERE EVENT_SCHEMA = DATABASE() ORDER BY EVENT_NAME",
       "cannot list the events"},
  };
  for (size_t l = 0; l < sizeof lists / sizeof lists[0]; l++) {
    rc = dsd__query(st->leader, lists[l].sql, lists[l].what, &res, err);
    if (rc < 0)
      goto cleanup;
    while ((row = mysql_fetch_row(res)) != NULL) {
      if (dsd__grow((void **)&st->objs, &st->capobjs, st->nobjs, sizeof *st->objs) < 0)
        goto nomem;
      st->objs[st->nobjs].name = strdup(row[0]);
      st->objs[st->nobjs].kind = strdup(row[1]);
      if (st->objs[st->nobjs++].kind == NULL || st->objs[st->nobjs - 1].name == NULL)
        goto nomem;
    }
    mysql_free_result(res);
    res = NULL;
  }
  goto cleanup;
nomem:
  rc = dsd_err_set(err, DSD_ENOMEM, "out of memory");
cleanup:
  if (res != NULL)
    mysql_free_result(res);
  dsd_buf_free(&b);
  return rc;
}

static int dsd__cmp_size(const void *a, const void *b, void *arg) {
  const dsd__my_table_t *t = arg;
  uint64_t x = t[*(const size_t *)a].est_bytes, y = t[*(const size_t *)b].est_bytes;
  return x < y ? 1 : x > y ? -1 : 0;
}

/* ------------------------------------------------------------------ */
/* Snapshot                                                            */

/* Takes the lock that freezes the tables while the workers open their
 * snapshots (see the top of this file). *mode says which one was taken;
 * 0 always (no lock is a mode, not an error). The catalog is listed under
 * the lock. */
static int dsd__lock_and_list(dsd__my_dump_t *st, int *locked, dsd_err_t *err) {
  dsd_buf_t sql = DSD_BUF_INIT;
  unsigned e = 0;
  int rc;

  *locked = 0;
  /* FLUSH TABLES WITH READ LOCK waits for running statements, and every
   * writer then waits for it: never wait long (a long query on the source
   * makes the dump fall back to the next mode instead of stalling it). */
  dsd__mysql_exec(st->leader, "SET SESSION lock_wait_timeout = 30", 34, "lock", NULL, NULL);
  if (dsd__mysql_exec(st->leader, "FLUSH TABLES WITH READ LOCK", 27, "lock", &e, NULL) == 0) {
    st->snapshot_mode = "flush tables with read lock";
    *locked = 1;
    rc = dsd__list_catalog(st, err);
    goto cleanup;
  }
  dsd_dump_run_log(&st->run, "FLUSH TABLES WITH READ LOCK refused (error %u; the RELOAD privilege is "
               "missing?): trying LOCK TABLES", e);
  rc = dsd__list_catalog(st, err);
  if (rc < 0)
    goto cleanup;
  if (st->nbase == 0) {
    st->snapshot_mode = "no tables";
    goto cleanup;
  }
  dsd_buf_append_str(&sql, "LOCK TABLES ");
  for (size_t i = 0, n = 0; i < st->ntables; i++) {
    if (st->tables[i].is_view)
      continue;
    if (n++ > 0)
      dsd_buf_append(&sql, ", ", 2);
    dsd_buf_append_str(&sql, st->tables[i].qname);
    dsd_buf_append_str(&sql, " READ");
  }
  if (sql.data == NULL) {
    rc = dsd_err_set(err, DSD_ENOMEM, "out of memory");
    goto cleanup;
  }
  if (dsd__mysql_exec(st->leader, sql.data, sql.len, "lock", &e, NULL) == 0) {
    st->snapshot_mode = "lock tables";
    *locked = 1;
    goto cleanup;
  }
  dsd_dump_run_log(&st->run, "LOCK TABLES refused (error %u): dumping with one connection, whose "
               "transaction is consistent on its own", e);
  st->snapshot_mode = "single transaction";
cleanup:
  dsd_buf_free(&sql);
  return rc;
}

static int dsd__open_snapshots(dsd__my_dump_t *st, dsd_err_t *err) {
  static const char iso[] = "SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ";
  static const char start[] = "START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY";
  int locked = 0, rc;

  rc = dsd__lock_and_list(st, &locked, err);
  if (rc < 0)
    goto cleanup;
  if (!locked && st->nworkers > 1) {
    for (int i = 1; i < st->nworkers; i++)
      mysql_close(st->wconn[i]);
    st->nworkers = 1;
  }
  for (int i = 0; i < st->nworkers; i++) {
    rc = dsd__mysql_exec(st->wconn[i], iso, sizeof iso - 1,
                         "cannot set the isolation level", NULL, err);
    if (rc < 0)
      goto cleanup;
    rc = dsd__mysql_exec(st->wconn[i], start, sizeof start - 1,
                         "cannot start the dump transaction", NULL, err);
    if (rc < 0)
      goto cleanup;
  }
cleanup:
  if (locked)
    dsd__mysql_exec(st->leader, "UNLOCK TABLES", 13, "unlock", NULL, NULL);
  return rc;
}

/* ------------------------------------------------------------------ */
/* Prepare                                                             */

#ifdef DSD_HAVE_ANONYMIZE
static int dsd__plan_anonymize(dsd__my_dump_t *st, const dsd_anon_rules_t *rules,
                               dsd_err_t *err) {
  char **names = calloc(st->ntables + 1, sizeof *names);
  dsd_anon_column_t *cols = NULL;
  size_t n = 0;
  int rc = 0;

  if (names == NULL)
    return dsd_err_set(err, DSD_ENOMEM, "out of memory");
  for (size_t i = 0; i < st->ntables; i++) {
    if (st->tables[i].is_view)
      continue;
    if (asprintf(&names[n], "%s.%s", st->db, st->tables[i].name) < 0) {
      names[n] = NULL;
      rc = dsd_err_set(err, DSD_ENOMEM, "out of memory");
      goto cleanup;
    }
    n++;
  }
  rc = dsd_anon_rules_check_tables(rules, (const char *const *)names, n, err);
  if (rc < 0)
    goto cleanup;
  for (size_t i = 0, k = 0; i < st->ntables; i++) {
    dsd__my_table_t *t = &st->tables[i];
    if (t->is_view)
      continue;
    free(cols);
    cols = calloc(t->ncols + 1, sizeof *cols);
    if (cols == NULL) {
      rc = dsd_err_set(err, DSD_ENOMEM, "out of memory");
      goto cleanup;
    }
    for (size_t c = 0; c < t->ncols; c++) {
      cols[c].name = t->cols[c].name;
      cols[c].not_null = t->cols[c].not_null;
      dsd_anon_type_parse("mysql", t->cols[c].type, &cols[c].type);
    }
    rc = dsd_anon_plan_table(rules, names[k++], cols, t->ncols, &t->plan, err);
    if (rc < 0)
      goto cleanup;
  }
cleanup:
  for (size_t i = 0; i < n; i++)
    free(names[i]);
  free(names);
  free(cols);
  return rc;
}
#endif

static json_t *dsd__manifest_mysql(const dsd__my_dump_t *st) {
  json_t *my = json_object(), *tables = json_array(), *views = json_array();
  size_t counts[4] = {0};
  if (my == NULL || tables == NULL || views == NULL)
    goto fail;
  for (size_t i = 0; i < st->ntables; i++) {
    const dsd__my_table_t *t = &st->tables[i];
    json_t *cols, *tj;
    char stream[32];
    if (t->is_view) {
      json_array_append_new(views, json_string(t->name));
      continue;
    }
    cols = json_array();
    if (cols == NULL)
      goto fail;
    for (size_t c = 0; c < t->ncols; c++)
      json_array_append_new(cols, json_pack("{s:s, s:s}", "name", t->cols[c].name, "type",
                                            t->cols[c].type));
    snprintf(stream, sizeof stream, "mysql/data/%05u", t->id);
    tj = json_pack("{s:I, s:s, s:o, s:s, s:I}", "id", (json_int_t)t->id, "name", t->name,
                   "columns", cols, "stream", stream, "est_bytes", (json_int_t)t->est_bytes);
    if (tj == NULL || json_array_append_new(tables, tj) != 0)
      goto fail;
  }
  for (size_t i = 0; i < st->nobjs; i++) {
    const char *k = st->objs[i].kind;
    counts[strcmp(k, "PROCEDURE") == 0 ? 0 : strcmp(k, "FUNCTION") == 0 ? 1
           : strcmp(k, "TRIGGER") == 0 ? 2 : 3]++;
  }
  if (json_object_set_new(my, "database", json_string(st->db)) ||
      json_object_set_new(my, "server_version", json_string(st->server_version)) ||
      json_object_set_new(my, "encoding", json_string("utf8mb4")) ||
      json_object_set_new(my, "snapshot", json_string(st->snapshot_mode)) ||
      json_object_set_new(my, "workers", json_integer(st->nworkers)) ||
      json_object_set_new(my, "tables", tables) ||
      json_object_set_new(my, "views", views) ||
      json_object_set_new(my, "procedures", json_integer((json_int_t)counts[0])) ||
      json_object_set_new(my, "functions", json_integer((json_int_t)counts[1])) ||
      json_object_set_new(my, "triggers", json_integer((json_int_t)counts[2])) ||
      json_object_set_new(my, "events", json_integer((json_int_t)counts[3])) ||
      json_object_set_new(my, "est_bytes", json_integer((json_int_t)st->run.est_total)))
    goto fail_my;
  return my;
fail:
  json_decref(tables);
  json_decref(views);
fail_my:
  json_decref(my);
  return NULL;
}

int dsd__mysql_dump_prepare(const dsd_dump_ctx_t *ctx, json_t *manifest, void **state,
                            dsd_err_t *err) {
  dsd__my_dump_t *st = NULL;
  MYSQL_RES *res = NULL;
  MYSQL_ROW row;
  json_t *myj = NULL;
  int rc = 0;

  *state = NULL;
  st = calloc(1, sizeof *st);
  if (st == NULL)
    return dsd_err_set(err, DSD_ENOMEM, "out of memory");
  dsd_dump_run_init(&st->run, ctx);
  st->nworkers = ctx->workers > 0 ? ctx->workers : 2;
  if (st->nworkers > 64)
    st->nworkers = 64;
  rc = dsd__mysql_connect(ctx->uri, "source", &st->leader, err);
  if (rc < 0)
    goto cleanup;
  st->server_version = strdup(mysql_get_server_info(st->leader));
  rc = dsd__query(st->leader, "SELECT DATABASE()", "cannot read the database name", &res, err);
  if (rc < 0)
    goto cleanup;
  row = mysql_fetch_row(res);
  st->db = strdup(row && row[0] ? row[0] : "");
  mysql_free_result(res);
  res = NULL;
  if (st->server_version == NULL || st->db == NULL) {
    rc = dsd_err_set(err, DSD_ENOMEM, "out of memory");
    goto cleanup;
  }
  st->wconn = calloc((size_t)st->nworkers, sizeof *st->wconn);
  st->wid = calloc((size_t)st->nworkers, sizeof *st->wid);
  if (st->wconn == NULL || st->wid == NULL) {
    rc = dsd_err_set(err, DSD_ENOMEM, "out of memory");
    goto cleanup;
  }
  for (int i = 0; i < st->nworkers; i++) {
    rc = dsd__mysql_connect(ctx->uri, "source", &st->wconn[i], err);
    if (rc < 0) {
      dsd_err_prefix(err, "worker connection %d of %d", i + 1, st->nworkers);
      goto cleanup;
    }
    st->wid[i] = mysql_thread_id(st->wconn[i]);
  }
  rc = dsd__open_snapshots(st, err);
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
  st->order = calloc(st->nbase + 1, sizeof *st->order);
  if (st->order == NULL) {
    rc = dsd_err_set(err, DSD_ENOMEM, "out of memory");
    goto cleanup;
  }
  for (size_t i = 0; i < st->ntables; i++)
    if (!st->tables[i].is_view)
      st->order[st->norder++] = i;
  qsort_r(st->order, st->norder, sizeof *st->order, dsd__cmp_size, st->tables);

  myj = dsd__manifest_mysql(st);
  if (myj == NULL || json_object_set_new(manifest, "mysql", myj) != 0) {
    rc = dsd_err_set(err, DSD_ENOMEM, "out of memory");
    goto cleanup;
  }
  dsd_dump_run_log(&st->run, "snapshot (%s) opened on %s by %d worker%s: %zu tables (~%llu bytes), "
               "%zu views, %zu routines/triggers/events",
           st->snapshot_mode, st->server_version, st->nworkers, st->nworkers == 1 ? "" : "s",
           st->nbase, (unsigned long long)st->run.est_total, st->ntables - st->nbase, st->nobjs);
  *state = st;
  st = NULL;
cleanup:
  if (res != NULL)
    mysql_free_result(res);
  if (st != NULL)
    dsd__mysql_dump_free(st);
  return rc;
}

void dsd__mysql_dump_free(void *state) {
  dsd__my_dump_t *st = state;
  if (st == NULL)
    return;
  if (st->leader != NULL)
    mysql_close(st->leader);
  for (int i = 0; st->wconn && i < st->nworkers; i++)
    if (st->wconn[i] != NULL)
      mysql_close(st->wconn[i]);
  free(st->wconn);
  free(st->wid);
  for (size_t i = 0; i < st->ntables; i++) {
    dsd__my_table_t *t = &st->tables[i];
#ifdef DSD_HAVE_ANONYMIZE
    dsd_anon_plan_free(t->plan);
#endif
    for (size_t c = 0; c < t->ncols; c++) {
      free(t->cols[c].name);
      free(t->cols[c].type);
    }
    for (size_t c = 0; c < t->nall; c++)
      free(t->allcols[c]);
    free(t->allcols);
    free(t->cols);
    free(t->name);
    free(t->qname);
    free(t->collist);
  }
  free(st->tables);
  for (size_t i = 0; i < st->nobjs; i++) {
    free(st->objs[i].name);
    free(st->objs[i].kind);
  }
  free(st->objs);
  free(st->order);
  free(st->db);
  free(st->server_version);
  dsd_dump_run_destroy(&st->run);
  free(st);
}

/* ------------------------------------------------------------------ */
/* Schema streams (leader)                                             */

/* Writes b to a new stream name and closes it. */
static int dsd__write_stream(dsd__my_dump_t *st, const char *name, const dsd_buf_t *b,
                             dsd_err_t *err) {
  dsd_archive_stream_t *s = NULL;
  int rc = dsd_archive_stream_open(st->w, name, &s);
  if (rc == 0 && b->len > 0)
    rc = dsd_archive_stream_write(s, b->data, b->len);
  if (s != NULL) {
    int rc2 = dsd_archive_stream_close(s);
    if (rc == 0)
      rc = rc2;
  }
  if (rc < 0)
    dsd_err_set(err, rc, "%s", dsd_archive_writer_error(st->w)
                                   ? dsd_err_msg(dsd_archive_writer_error(st->w))
                                   : dsd_strerror(rc));
  return rc;
}

/* SHOW CREATE <kind> `name`: copies column col of its row (and, when
 * modecol >= 0, that column's sql_mode, and tzcol's time zone) into
 * *out (malloc'd). */
static int dsd__show_create(dsd__my_dump_t *st, const char *kind, const char *name, int col,
                            char **out, char **mode, char **tz, dsd_err_t *err) {
  dsd_buf_t sql = DSD_BUF_INIT;
  MYSQL_RES *res = NULL;
  MYSQL_ROW row;
  int rc = 0;

  *out = NULL;
  dsd_buf_printf(&sql, "SHOW CREATE %s ", kind);
  dsd__mysql_quote_ident(&sql, name);
  if (sql.data == NULL) {
    rc = dsd_err_set(err, DSD_ENOMEM, "out of memory");
    goto cleanup;
  }
  rc = dsd__query(st->leader, sql.data, "cannot read a definition", &res, err);
  if (rc < 0) {
    dsd_err_prefix(err, "%s %s", kind, name);
    goto cleanup;
  }
  row = mysql_fetch_row(res);
  if (row == NULL || (unsigned)col >= mysql_num_fields(res) || row[col] == NULL) {
    rc = dsd_err_set(err, DSD_EDENIED, "cannot read the definition of %s %s "
                     "HINT: the dump user must be its definer or have SELECT on mysql.proc "
                     "(routines) or the SHOW VIEW, TRIGGER or EVENT privilege",
                     kind, name);
    goto cleanup;
  }
  *out = strdup(row[col]);
  if (mode != NULL)
    *mode = strdup(row[1] ? row[1] : "");
  if (tz != NULL)
    *tz = strdup(mysql_num_fields(res) > 2 && row[2] ? row[2] : "SYSTEM");
  if (*out == NULL || (mode && *mode == NULL) || (tz && *tz == NULL))
    rc = dsd_err_set(err, DSD_ENOMEM, "out of memory");
cleanup:
  if (res != NULL)
    mysql_free_result(res);
  dsd_buf_free(&sql);
  return rc;
}

static int dsd__write_drop(dsd__my_dump_t *st, dsd_err_t *err) {
  dsd_buf_t b = DSD_BUF_INIT;
  int rc;
  dsd_buf_append_str(&b, dsd__mysql_stream_header);
  for (size_t i = 0; i < st->nobjs; i++) {
    dsd_buf_printf(&b, "DROP %s IF EXISTS ", st->objs[i].kind);
    dsd__mysql_quote_ident(&b, st->objs[i].name);
    dsd_buf_append_str(&b, ";\n");
  }
  for (size_t i = 0; i < st->ntables; i++)
    if (st->tables[i].is_view)
      dsd_buf_printf(&b, "DROP VIEW IF EXISTS %s;\n", st->tables[i].qname);
  for (size_t i = 0; i < st->ntables; i++)
    if (!st->tables[i].is_view)
      dsd_buf_printf(&b, "DROP TABLE IF EXISTS %s;\n", st->tables[i].qname);
  if (b.data == NULL)
    rc = dsd_err_set(err, DSD_ENOMEM, "out of memory");
  else
    rc = dsd__write_stream(st, "mysql/drop", &b, err);
  dsd_buf_free(&b);
  return rc;
}

/* Appends a routine, trigger or event: its own sql_mode (and time zone for
 * events) around it, inside a DELIMITER ;; block for the mysql client. */
static int dsd__append_object(dsd__my_dump_t *st, dsd_buf_t *b, const dsd__my_obj_t *o,
                              dsd_err_t *err) {
  /* Column of the definition in SHOW CREATE's row. */
  int col = strcmp(o->kind, "EVENT") == 0 ? 3 : 2;
  char *def = NULL, *mode = NULL, *tz = NULL;
  int rc = dsd__show_create(st, o->kind, o->name, col, &def, &mode,
                            strcmp(o->kind, "EVENT") == 0 ? &tz : NULL, err);
  if (rc < 0)
    goto cleanup;
  dsd__mysql_strip_definer(def);
  dsd_buf_append_str(b, "SET sql_mode = ");
  dsd__mysql_quote_string(b, mode, strlen(mode));
  dsd_buf_append_str(b, ";\n");
  if (tz != NULL) {
    dsd_buf_append_str(b, "SET time_zone = ");
    dsd__mysql_quote_string(b, tz, strlen(tz));
    dsd_buf_append_str(b, ";\n");
  }
  dsd_buf_printf(b, "DELIMITER ;;\n%s;;\nDELIMITER ;\n", def);
  dsd_buf_append_str(b, "SET sql_mode = '" DSD__MYSQL_SQL_MODE "';\n");
  if (tz != NULL)
    dsd_buf_append_str(b, "SET time_zone = '+00:00';\n");
  if (b->data == NULL)
    rc = dsd_err_set(err, DSD_ENOMEM, "out of memory");
cleanup:
  free(def);
  free(mode);
  free(tz);
  return rc;
}

static int dsd__write_schema(dsd__my_dump_t *st, dsd_err_t *err) {
  dsd_buf_t b = DSD_BUF_INIT;
  char *def = NULL;
  int rc = 0;

  dsd_buf_append_str(&b, dsd__mysql_stream_header);
  for (size_t i = 0; i < st->ntables; i++) {
    if (st->tables[i].is_view)
      continue;
    rc = dsd__show_create(st, "TABLE", st->tables[i].name, 1, &def, NULL, NULL, err);
    if (rc < 0)
      goto cleanup;
    dsd_buf_printf(&b, "\n%s;\n", def);
    free(def);
    def = NULL;
  }
  for (size_t i = 0; i < st->nobjs; i++) {
    if (strcmp(st->objs[i].kind, "PROCEDURE") != 0 && strcmp(st->objs[i].kind, "FUNCTION") != 0)
      continue;
    dsd_buf_append_str(&b, "\n");
    rc = dsd__append_object(st, &b, &st->objs[i], err);
    if (rc < 0)
      goto cleanup;
  }
  /* Placeholder views with the right column names first, so that views
   * built on views can be created in any order. */
  for (size_t i = 0; i < st->ntables; i++) {
    const dsd__my_table_t *t = &st->tables[i];
    if (!t->is_view)
      continue;
    dsd_buf_printf(&b, "\nCREATE VIEW %s AS SELECT ", t->qname);
    for (size_t c = 0; c < t->nall; c++) {
      dsd_buf_append_str(&b, c ? ", 1 AS " : "1 AS ");
      dsd__mysql_quote_ident(&b, t->allcols[c]);
    }
    if (t->nall == 0)
      dsd_buf_append_str(&b, "1");
    dsd_buf_append_str(&b, ";\n");
  }
  for (size_t i = 0; i < st->ntables; i++) {
    if (!st->tables[i].is_view)
      continue;
    rc = dsd__show_create(st, "VIEW", st->tables[i].name, 1, &def, NULL, NULL, err);
    if (rc < 0)
      goto cleanup;
    dsd__mysql_strip_definer(def);
    if (strncasecmp(def, "CREATE ", 7) == 0)
      dsd_buf_printf(&b, "\nCREATE OR REPLACE %s;\n", def + 7);
    else
      dsd_buf_printf(&b, "\n%s;\n", def);
    free(def);
    def = NULL;
  }
  if (b.data == NULL) {
    rc = dsd_err_set(err, DSD_ENOMEM, "out of memory");
    goto cleanup;
  }
  rc = dsd__write_stream(st, "mysql/schema", &b, err);
cleanup:
  free(def);
  dsd_buf_free(&b);
  return rc;
}

static int dsd__write_post(dsd__my_dump_t *st, dsd_err_t *err) {
  dsd_buf_t b = DSD_BUF_INIT;
  int rc = 0;
  dsd_buf_append_str(&b, dsd__mysql_stream_header);
  for (size_t i = 0; i < st->nobjs; i++) {
    if (strcmp(st->objs[i].kind, "TRIGGER") != 0 && strcmp(st->objs[i].kind, "EVENT") != 0)
      continue;
    dsd_buf_append_str(&b, "\n");
    rc = dsd__append_object(st, &b, &st->objs[i], err);
    if (rc < 0)
      goto cleanup;
  }
  if (b.data == NULL) {
    rc = dsd_err_set(err, DSD_ENOMEM, "out of memory");
    goto cleanup;
  }
  rc = dsd__write_stream(st, "mysql/post", &b, err);
cleanup:
  dsd_buf_free(&b);
  return rc;
}

/* ------------------------------------------------------------------ */
/* Table data (workers)                                                */

typedef struct dsd__my_worker {
  dsd__my_dump_t *st;
  int index;
  MYSQL *conn; /* borrowed from st->wconn */
} dsd__my_worker_t;

/* How a value of this result column is written. */
typedef enum { V_NUMBER, V_STRING, V_HEX } dsd__vkind_t;

static dsd__vkind_t dsd__value_kind(const MYSQL_FIELD *f) {
  switch (f->type) {
  case MYSQL_TYPE_TINY:
  case MYSQL_TYPE_SHORT:
  case MYSQL_TYPE_LONG:
  case MYSQL_TYPE_INT24:
  case MYSQL_TYPE_LONGLONG:
  case MYSQL_TYPE_DECIMAL:
  case MYSQL_TYPE_NEWDECIMAL:
  case MYSQL_TYPE_FLOAT:
  case MYSQL_TYPE_DOUBLE:
  case MYSQL_TYPE_YEAR:
    return V_NUMBER;
  case MYSQL_TYPE_BIT:
  case MYSQL_TYPE_GEOMETRY:
    return V_HEX;
  case MYSQL_TYPE_JSON:
    /* MySQL sends JSON with the binary character set, but a JSON column
     * refuses a binary string: write it as text. */
    return V_STRING;
  case MYSQL_TYPE_DATE:
  case MYSQL_TYPE_TIME:
  case MYSQL_TYPE_DATETIME:
  case MYSQL_TYPE_TIMESTAMP:
  case MYSQL_TYPE_NEWDATE:
  case MYSQL_TYPE_TIME2:
  case MYSQL_TYPE_DATETIME2:
  case MYSQL_TYPE_TIMESTAMP2:
    return V_STRING;
  default:
    return f->charsetnr == 63 ? V_HEX : V_STRING;
  }
}

static int dsd__append_value(dsd_buf_t *b, dsd__vkind_t k, const char *v, size_t n) {
  if (v == NULL)
    return dsd_buf_append(b, "NULL", 4) < 0 ? DSD_ENOMEM : 0;
  switch (k) {
  case V_NUMBER:
    return dsd_buf_append(b, v, n) < 0 ? DSD_ENOMEM : 0;
  case V_HEX:
    return dsd__mysql_hex(b, v, n);
  default:
    return dsd__mysql_quote_string(b, v, n);
  }
}

typedef struct dsd__my_scratch {
  dsd_buf_t stmt;  /* the INSERT being built */
  dsd_buf_t value; /* an anonymized value */
} dsd__my_scratch_t;

/* Appends one row "(v, v, ...)" to sc->stmt, anonymizing through t's plan. */
static int dsd__append_row(const dsd__my_table_t *t, const dsd__vkind_t *kinds, MYSQL_ROW row,
                           const unsigned long *lens, unsigned nf, dsd__my_scratch_t *sc,
                           const char *label, dsd_err_t *err) {
  if (dsd_buf_append_char(&sc->stmt, '(') < 0)
    return dsd_err_set(err, DSD_ENOMEM, "out of memory");
  for (unsigned c = 0; c < nf; c++) {
    const char *v = row[c];
    size_t n = lens[c];
    int rc;
    if (c > 0 && dsd_buf_append_char(&sc->stmt, ',') < 0)
      return dsd_err_set(err, DSD_ENOMEM, "out of memory");
#ifdef DSD_HAVE_ANONYMIZE
    if (t->plan != NULL && dsd_anon_plan_column_active(t->plan, c)) {
      bool out_null = false;
      int key = dsd_anon_plan_row_key(t->plan, c);
      if (key >= 0 && (unsigned)key < nf)
        rc = dsd_anon_apply_keyed(t->plan, c, v, n, v == NULL, row[key],
                                  row[key] ? lens[key] : 0, &sc->value, &out_null);
      else
        rc = dsd_anon_apply(t->plan, c, v, n, v == NULL, &sc->value, &out_null);
      if (rc < 0)
        return dsd_err_set(err, rc, "cannot anonymize column %s of table %s: the value "
                           "is not valid for its type %s", t->cols[c].name, label,
                           t->cols[c].type);
      v = out_null ? NULL : (sc->value.data ? sc->value.data : "");
      n = out_null ? 0 : sc->value.len;
    }
#else
    (void)t;
#endif
    rc = dsd__append_value(&sc->stmt, kinds[c], v, n);
    if (rc < 0)
      return dsd_err_set(err, DSD_ENOMEM, "out of memory");
  }
  return dsd_buf_append_char(&sc->stmt, ')') < 0 ? dsd_err_set(err, DSD_ENOMEM, "out of memory")
                                                 : 0;
}

static int dsd__dump_table(dsd__my_worker_t *wk, dsd__my_table_t *t, dsd__my_scratch_t *sc,
                           dsd_err_t *err) {
  dsd__my_dump_t *st = wk->st;
  dsd_archive_stream_t *s = NULL;
  dsd_buf_t sql = DSD_BUF_INIT;
  MYSQL_RES *res = NULL;
  dsd__vkind_t *kinds = NULL;
  char stream[32];
  const char *label = t->name;
  uint64_t rows = 0, rows_total = 0, since = 0;
  unsigned nf;
  MYSQL_ROW row;
  int rc = 0;

  snprintf(stream, sizeof stream, "mysql/data/%05u", t->id);
  dsd__progress(st, "data", label);
  rc = dsd_archive_stream_open(st->w, stream, &s);
  if (rc < 0)
    goto write_failed;
  rc = dsd_archive_stream_write(s, dsd__mysql_stream_header,
                                strlen(dsd__mysql_stream_header));
  if (rc < 0)
    goto write_failed;
  if (t->ncols == 0)
    goto done; /* only generated columns: nothing to insert */
  dsd_buf_printf(&sql, "SELECT %s FROM %s", t->collist, t->qname);
  if (sql.data == NULL) {
    rc = dsd_err_set(err, DSD_ENOMEM, "out of memory");
    goto cleanup;
  }
  if (mysql_real_query(wk->conn, sql.data, (unsigned long)sql.len) != 0 ||
      (res = mysql_use_result(wk->conn)) == NULL) {
    rc = dsd_err_set(err, DSD_EDB, "cannot read table %s: %s (%u)", label,
                     mysql_error(wk->conn), mysql_errno(wk->conn));
    goto cleanup;
  }
  nf = mysql_num_fields(res);
  kinds = calloc(nf + 1, sizeof *kinds);
  if (kinds == NULL) {
    rc = dsd_err_set(err, DSD_ENOMEM, "out of memory");
    goto cleanup;
  }
  for (unsigned c = 0; c < nf; c++)
    kinds[c] = dsd__value_kind(mysql_fetch_field_direct(res, c));
  dsd_buf_reset(&sc->stmt);
  while ((row = mysql_fetch_row(res)) != NULL) {
    const unsigned long *lens = mysql_fetch_lengths(res);
    if (sc->stmt.len == 0)
      dsd_buf_printf(&sc->stmt, "INSERT INTO %s (%s) VALUES\n", t->qname, t->collist);
    else
      dsd_buf_append(&sc->stmt, ",\n", 2);
    rc = dsd__append_row(t, kinds, row, lens, nf, sc, label, err);
    if (rc < 0)
      goto cleanup;
    rows++;
    if (sc->stmt.len >= DSD__MY_STMT_SIZE) {
      dsd_buf_append(&sc->stmt, ";\n", 2);
      rc = dsd_archive_stream_write(s, sc->stmt.data, sc->stmt.len);
      if (rc < 0)
        goto write_failed;
      since += sc->stmt.len;
      atomic_fetch_add(&st->run.bytes_done, sc->stmt.len);
      dsd_buf_reset(&sc->stmt);
    }
    if (since >= DSD__MY_PROGRESS_EVERY) {
      atomic_fetch_add(&st->run.rows_done, rows);
      dsd_archive_stream_add_rows(s, rows);
      rows_total += rows;
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
  if (mysql_errno(wk->conn) != 0) {
    rc = dsd_err_set(err, DSD_EDB, "cannot read table %s: %s (%u)", label,
                     mysql_error(wk->conn), mysql_errno(wk->conn));
    goto cleanup;
  }
  if (sc->stmt.len > 0) {
    dsd_buf_append(&sc->stmt, ";\n", 2);
    rc = dsd_archive_stream_write(s, sc->stmt.data, sc->stmt.len);
    if (rc < 0)
      goto write_failed;
    atomic_fetch_add(&st->run.bytes_done, sc->stmt.len);
    dsd_buf_reset(&sc->stmt);
  }
done:
  atomic_fetch_add(&st->run.rows_done, rows);
  dsd_archive_stream_add_rows(s, rows);
  rows_total += rows;
  rc = dsd_archive_stream_close(s);
  s = NULL;
  if (rc < 0)
    goto write_failed;
  atomic_fetch_add(&st->run.tables_done, 1);
  dsd_dump_run_log(&st->run, "table %s: %llu rows", label, (unsigned long long)rows_total);
  dsd__progress(st, "data", label);
  goto cleanup;
write_failed:
  dsd_err_set(err, rc, "%s", dsd_archive_writer_error(st->w)
                                 ? dsd_err_msg(dsd_archive_writer_error(st->w))
                                 : dsd_strerror(rc));
cleanup:
  /* Freeing a use_result result reads the rest of it: after a failure the
   * main thread has killed the connection, so that ends at once. */
  if (res != NULL)
    mysql_free_result(res);
  if (s != NULL)
    dsd_archive_stream_close(s);
  free(kinds);
  dsd_buf_free(&sql);
  return rc;
}

static void *dsd__worker_main(void *arg) {
  dsd__my_worker_t *wk = arg;
  dsd__my_dump_t *st = wk->st;
  dsd__my_scratch_t sc = {DSD_BUF_INIT, DSD_BUF_INIT};
  dsd_err_t err = {0};
  int rc = 0;

  mysql_thread_init();
  for (;;) {
    size_t i;
    if (dsd_dump_run_should_stop(&st->run)) {
      rc = dsd_dump_run_canceled(&st->run) ? dsd_err_set(&err, DSD_ECANCELED, "the dump was canceled") : 0;
      break;
    }
    pthread_mutex_lock(&st->run.lock);
    i = st->next < st->norder ? st->order[st->next++] : SIZE_MAX;
    pthread_mutex_unlock(&st->run.lock);
    if (i == SIZE_MAX)
      break;
    rc = dsd__dump_table(wk, &st->tables[i], &sc, &err);
    if (rc < 0)
      break;
  }
  if (rc < 0 && err.code != 0)
    dsd_dump_run_fail(&st->run, &err);
  else if (rc < 0)
    atomic_store(&st->run.stop, 1);
  dsd_buf_free(&sc.stmt);
  dsd_buf_free(&sc.value);
  mysql_thread_end();
  atomic_fetch_sub(&st->running, 1);
  return NULL;
}

/* KILLs every worker's connection, from the leader's, so that a worker
 * blocked in the server or draining a result returns at once. */
static void dsd__kill_workers(dsd__my_dump_t *st) {
  for (int i = 0; i < st->nworkers; i++) {
    char sql[64];
    int n = snprintf(sql, sizeof sql, "KILL CONNECTION %lu", st->wid[i]);
    dsd__mysql_exec(st->leader, sql, (size_t)n, "kill", NULL, NULL);
  }
}

static int dsd__dump_data(dsd__my_dump_t *st, dsd_err_t *err) {
  dsd__my_worker_t *wk = NULL;
  pthread_t *th = NULL;
  int created = 0, killed = 0, rc = 0;

  if (st->norder == 0)
    return 0;
  wk = calloc((size_t)st->nworkers, sizeof *wk);
  th = calloc((size_t)st->nworkers, sizeof *th);
  if (wk == NULL || th == NULL) {
    rc = dsd_err_set(err, DSD_ENOMEM, "out of memory");
    goto cleanup;
  }
  atomic_store(&st->running, st->nworkers);
  for (int i = 0; i < st->nworkers; i++) {
    wk[i] = (dsd__my_worker_t){st, i, st->wconn[i]};
    if (pthread_create(&th[i], NULL, dsd__worker_main, &wk[i]) != 0) {
      dsd_err_t e = {0};
      dsd_err_set(&e, DSD_EINTERNAL, "cannot start a table worker");
      dsd_dump_run_fail(&st->run, &e);
      atomic_fetch_sub(&st->running, st->nworkers - i);
      break;
    }
    created++;
  }
  while (atomic_load(&st->running) > 0) {
    struct timespec ts = {0, 50 * 1000 * 1000};
    if (!killed && dsd_dump_run_should_stop(&st->run)) {
      dsd__kill_workers(st);
      killed = 1;
    }
    nanosleep(&ts, NULL);
  }
  for (int i = 0; i < created; i++)
    pthread_join(th[i], NULL);
  if (st->run.err.code != 0 && !(dsd_dump_run_canceled(&st->run) && st->run.err.code == DSD_EDB))
    rc = dsd_err_set(err, st->run.err.code, "%s", dsd_err_msg(&st->run.err));
  else if (dsd_dump_run_canceled(&st->run))
    rc = dsd_err_set(err, DSD_ECANCELED, "the dump was canceled");
cleanup:
  free(wk);
  free(th);
  return rc;
}

/* ------------------------------------------------------------------ */
/* Run                                                                 */

int dsd__mysql_dump_run(void *state, const dsd_dump_ctx_t *ctx, dsd_archive_writer_t *w,
                        dsd_err_t *err) {
  dsd__my_dump_t *st = state;
  int rc;

  st->run.ctx = ctx;
  st->w = w;
  dsd__progress(st, "schema", NULL);
  rc = dsd__write_drop(st, err);
  if (rc < 0)
    goto cleanup;
  rc = dsd__write_schema(st, err);
  if (rc < 0)
    goto cleanup;
  dsd_dump_run_log(&st->run, "schema written");
  rc = dsd__dump_data(st, err);
  if (rc < 0)
    goto cleanup;
  rc = dsd__write_post(st, err);
  if (rc < 0)
    goto cleanup;
  dsd_dump_run_log(&st->run, "triggers and events written");
  /* End the snapshots now: the source can purge old row versions while the
   * archive is being finished. */
  for (int i = 0; i < st->nworkers; i++)
    dsd__mysql_exec(st->wconn[i], "COMMIT", 6, "commit", NULL, NULL);
  dsd__progress(st, "done", NULL);
cleanup:
  if (rc < 0 && dsd_dump_run_canceled(&st->run) && rc != DSD_ECANCELED) {
    dsd_err_clear(err);
    rc = dsd_err_set(err, DSD_ECANCELED, "the dump was canceled");
  }
  return rc;
}
