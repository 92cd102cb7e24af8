/*
 * pg_util.c - connection and quoting helpers of the PostgreSQL dialect
 * (see pg_util.h).
 */
#include "dialects/pg/pg_util.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"

void dsd__pg_register_secret(const char *uri) {
  PQconninfoOption *opts = PQconninfoParse(uri, NULL);
  if (opts == NULL)
    return;
  for (PQconninfoOption *o = opts; o->keyword; o++)
    if (o->val && *o->val && strcmp(o->keyword, "password") == 0)
      dsd_redact_register(o->val);
  PQconninfoFree(opts);
}

const char *dsd__pg_conn_error(PGconn *c, char *buf, size_t cap) {
  const char *m = c ? PQerrorMessage(c) : "out of memory";
  size_t n;
  snprintf(buf, cap, "%s", m && *m ? m : "unknown error");
  n = strlen(buf);
  while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == ' '))
    buf[--n] = '\0';
  return buf;
}

/* Checks a query's result: on success hands it to *res (or clears it); on
 * error sets err to "<what>: <server message>", clears it, returns DSD_EDB. */
static int dsd__pg_result(PGconn *c, PGresult *r, const char *what, PGresult **res,
                          dsd_err_t *err) {
  ExecStatusType st = r ? PQresultStatus(r) : PGRES_FATAL_ERROR;
  char buf[1024];

  if (res)
    *res = NULL;
  if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
    const char *m = r ? PQresultErrorMessage(r) : NULL;
    if (m == NULL || *m == '\0')
      m = dsd__pg_conn_error(c, buf, sizeof buf);
    else {
      snprintf(buf, sizeof buf, "%s", m);
      buf[strcspn(buf, "\n")] = '\0';
      m = buf;
    }
    dsd_err_set(err, DSD_EDB, "%s: %s", what, m);
    PQclear(r);
    return DSD_EDB;
  }
  if (res)
    *res = r;
  else
    PQclear(r);
  return 0;
}

int dsd__pg_exec(PGconn *c, const char *sql, const char *what, PGresult **res,
                 dsd_err_t *err) {
  return dsd__pg_result(c, PQexec(c, sql), what, res, err);
}

int dsd__pg_exec_cancellable(PGconn *c, const char *sql, const atomic_int *cancel,
                             const char *what, PGresult **res, dsd_err_t *err) {
  PGresult *r, *last = NULL;
  int canceled = 0;
  char buf[256];

  if (cancel == NULL)
    return dsd__pg_exec(c, sql, what, res, err);
  if (res)
    *res = NULL;
  if (!PQsendQuery(c, sql))
    return dsd_err_set(err, DSD_EDB, "%s: %s", what, dsd__pg_conn_error(c, buf, sizeof buf));
  /* Wait for the answer in slices so that a cancel reaches a statement that
   * blocks on the server (a lock held by another session, say). */
  while (PQisBusy(c)) {
    struct pollfd p = {.fd = PQsocket(c), .events = POLLIN};
    if (poll(&p, 1, 200) < 0 && errno != EINTR)
      break;
    if (!canceled && atomic_load(cancel)) {
      PGcancel *pc = PQgetCancel(c);
      if (pc) {
        PQcancel(pc, buf, sizeof buf);
        PQfreeCancel(pc);
      }
      canceled = 1;
    }
    if (!PQconsumeInput(c))
      break;
  }
  while ((r = PQgetResult(c)) != NULL) {
    PQclear(last);
    last = r;
  }
  if (canceled) {
    PQclear(last);
    return dsd_err_set(err, DSD_ECANCELED, "canceled");
  }
  return dsd__pg_result(c, last, what, res, err);
}

int dsd__pg_connect(const char *uri, const char *what, PGconn **out,
                    dsd_err_t *err) {
  static const char *const settings =
      "SET DateStyle = ISO; SET IntervalStyle = postgres; SET extra_float_digits = 3;"
      "SET statement_timeout = 0; SET lock_timeout = 0;"
      "SET idle_in_transaction_session_timeout = 0; SET row_security = off;"
      "SET synchronize_seqscans = off; SET bytea_output = hex;"
      "SELECT pg_catalog.set_config('search_path', '', false)";
  PGconn *c = NULL;
  char buf[1024];
  char *emsg = NULL;
  PQconninfoOption *parsed;
  int rc = 0;

  *out = NULL;
  /* Parse first: a malformed URI must give a message that does not echo it. */
  parsed = PQconninfoParse(uri, &emsg);
  if (parsed == NULL) {
    rc = dsd_err_set(err, DSD_EINVAL, "the %s connection uri is not valid\n"
                     "HINT: use postgresql://user:password@host:port/dbname", what);
    PQfreemem(emsg);
    return rc;
  }
  PQconninfoFree(parsed);
  dsd__pg_register_secret(uri);
  c = PQconnectdb(uri);
  if (c == NULL || PQstatus(c) != CONNECTION_OK) {
    int code = DSD_EDB;
    const char *m = dsd__pg_conn_error(c, buf, sizeof buf);
    if (strstr(m, "password authentication failed") || strstr(m, "no password supplied"))
      code = DSD_EAUTH;
    else if (strstr(m, "could not connect") || strstr(m, "Connection refused") ||
             strstr(m, "could not translate host name") || strstr(m, "timeout"))
      code = DSD_ENET;
    rc = dsd_err_set(err, code, "cannot connect to the %s database: %s", what, m);
    goto cleanup;
  }
  rc = dsd__pg_exec(c, settings, "cannot set up the session", NULL, err);
  if (rc < 0)
    goto cleanup;
  *out = c;
  c = NULL;
cleanup:
  if (c != NULL)
    PQfinish(c);
  return rc;
}

int dsd__pg_quote_ident(dsd_buf_t *b, const char *ident) {
  if (dsd_buf_append_char(b, '"') < 0)
    return DSD_ENOMEM;
  for (const char *p = ident; *p; p++) {
    if (*p == '"' && dsd_buf_append_char(b, '"') < 0)
      return DSD_ENOMEM;
    if (dsd_buf_append_char(b, *p) < 0)
      return DSD_ENOMEM;
  }
  return dsd_buf_append_char(b, '"');
}

int dsd__pg_quote_literal(dsd_buf_t *b, const char *lit) {
  if (dsd_buf_append_char(b, '\'') < 0)
    return DSD_ENOMEM;
  for (const char *p = lit; *p; p++) {
    if (*p == '\'' && dsd_buf_append_char(b, '\'') < 0)
      return DSD_ENOMEM;
    if (dsd_buf_append_char(b, *p) < 0)
      return DSD_ENOMEM;
  }
  return dsd_buf_append_char(b, '\'');
}

int dsd__pg_child_conninfo(const char *uri, char **conninfo, char **password,
                           dsd_err_t *err) {
  PQconninfoOption *opts = NULL;
  dsd_buf_t b = DSD_BUF_INIT;
  char *emsg = NULL;
  int rc = 0;

  *conninfo = NULL;
  *password = NULL;
  opts = PQconninfoParse(uri, &emsg);
  if (opts == NULL) {
    PQfreemem(emsg);
    return dsd_err_set(err, DSD_EINVAL, "the source connection uri is not valid");
  }
  for (PQconninfoOption *o = opts; o->keyword; o++) {
    if (o->val == NULL)
      continue;
    if (strcmp(o->keyword, "password") == 0) {
      free(*password);
      *password = strdup(o->val);
      if (*password == NULL) {
        rc = dsd_err_set(err, DSD_ENOMEM, "out of memory");
        goto cleanup;
      }
      continue;
    }
    /* keyword='value' with \ and ' escaped, as libpq's parser expects. */
    if ((b.len && dsd_buf_append_char(&b, ' ') < 0) ||
        dsd_buf_printf(&b, "%s='", o->keyword) < 0) {
      rc = dsd_err_set(err, DSD_ENOMEM, "out of memory");
      goto cleanup;
    }
    for (const char *p = o->val; *p; p++) {
      if ((*p == '\\' || *p == '\'') && dsd_buf_append_char(&b, '\\') < 0) {
        rc = dsd_err_set(err, DSD_ENOMEM, "out of memory");
        goto cleanup;
      }
      if (dsd_buf_append_char(&b, *p) < 0) {
        rc = dsd_err_set(err, DSD_ENOMEM, "out of memory");
        goto cleanup;
      }
    }
    if (dsd_buf_append_char(&b, '\'') < 0) {
      rc = dsd_err_set(err, DSD_ENOMEM, "out of memory");
      goto cleanup;
    }
  }
  *conninfo = dsd_buf_steal(&b);
  if (*conninfo == NULL)
    rc = dsd_err_set(err, DSD_ENOMEM, "out of memory");
cleanup:
  if (rc < 0) {
    free(*password);
    *password = NULL;
  }
  dsd_buf_free(&b);
  PQconninfoFree(opts);
  return rc;
}
