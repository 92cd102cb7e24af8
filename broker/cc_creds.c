/*
 * cc_creds.c - connection URIs from service-key credentials.
 *
 * Database brokers disagree on the shape of the credentials they return: most
 * give a "uri", Java-minded ones a "jdbcUrl", and some (p-mysql, crunchy, the
 * cloud service broker) give separate host, port, database, user and password
 * fields, often alongside the others. dsd_cc_credentials_uri turns any of
 * these into the one URI form the dialect drivers take, and refuses
 * credentials of another database kind so that a mysql instance named as the
 * source of a pg dump fails with a clear message instead of a driver error.
 *
 * Pure functions: no I/O, no logging (the values are secrets).
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "broker/cc.h"
#include "core/buf.h"

/* ------------------------------------------------------------------------ */
/* small helpers                                                            */
/* ------------------------------------------------------------------------ */

char *dsd_cc_urlencode(const char *s) {
  static const char hex[] = "0123456789ABCDEF";
  size_t n = strlen(s);
  char *out = malloc(n * 3 + 1);
  if (out == NULL) return NULL;
  char *p = out;
  for (const unsigned char *c = (const unsigned char *)s; *c; c++) {
    if (isalnum(*c) || *c == '-' || *c == '.' || *c == '_' || *c == '~') {
      *p++ = (char)*c;
    } else {
      *p++ = '%';
      *p++ = hex[*c >> 4];
      *p++ = hex[*c & 15];
    }
  }
  *p = '\0';
  return out;
}

/* Decodes %XX escapes (and '+' when plus_is_space) in place. */
static void dsd__cc_urldecode(char *s, int plus_is_space) {
  char *w = s;
  for (char *r = s; *r; r++) {
    if (*r == '%' && isxdigit((unsigned char)r[1]) && isxdigit((unsigned char)r[2])) {
      char h[3] = {r[1], r[2], 0};
      *w++ = (char)strtol(h, NULL, 16);
      r += 2;
    } else if (*r == '+' && plus_is_space) {
      *w++ = ' ';
    } else {
      *w++ = *r;
    }
  }
  *w = '\0';
}

static int dsd__cc_has_token(const char *hay, const char *tok) {
  size_t n = strlen(tok);
  for (const char *p = strstr(hay, tok); p != NULL; p = strstr(p + 1, tok)) {
    int left = (p == hay) || !isalnum((unsigned char)p[-1]);
    int right = !isalnum((unsigned char)p[n]);
    if (left && right) return 1;
  }
  return 0;
}

static const char *dsd__cc_dialect_of_name(const char *name) {
  if (name == NULL || *name == '\0') return NULL;
  char low[256];
  size_t i = 0;
  for (; name[i] && i < sizeof(low) - 1; i++) low[i] = (char)tolower((unsigned char)name[i]);
  low[i] = '\0';
  if (strstr(low, "postgres") || strstr(low, "elephantsql") || dsd__cc_has_token(low, "pg") ||
      dsd__cc_has_token(low, "psql"))
    return "pg";
  if (strstr(low, "mysql") || strstr(low, "mariadb") || strstr(low, "cleardb")) return "mysql";
  if (strstr(low, "mongo")) return "mongo";
  return NULL;
}

const char *dsd_cc_dialect_of(const char *offering, const char *plan) {
  const char *d = dsd__cc_dialect_of_name(offering);
  return d != NULL ? d : dsd__cc_dialect_of_name(plan);
}

/* The dialect a URI scheme names, or NULL for an unknown scheme. */
static const char *dsd__cc_dialect_of_scheme(const char *uri, size_t *scheme_len) {
  static const struct {
    const char *prefix;
    const char *dialect;
  } map[] = {
      {"postgres://", "pg"},      {"postgresql://", "pg"},        {"mysql://", "mysql"},
      {"mysql2://", "mysql"},     {"mariadb://", "mysql"},        {"mongodb://", "mongo"},
      {"mongodb+srv://", "mongo"},
  };
  for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++) {
    size_t n = strlen(map[i].prefix);
    if (strncasecmp(uri, map[i].prefix, n) == 0) {
      if (scheme_len) *scheme_len = n;
      return map[i].dialect;
    }
  }
  return NULL;
}

static const char *dsd__cc_dialect_label(const char *d) {
  if (strcmp(d, "pg") == 0) return "postgresql";
  return d;
}

static int dsd__cc_mismatch(const char *found, const char *want, dsd_err_t *err) {
  return dsd_err_set(err, DSD_EINVAL,
                     "the service instance is a %s database but the plan is %s\n"
                     "HINT: name a %s service instance, or use the %s plan",
                     dsd__cc_dialect_label(found), want, dsd__cc_dialect_label(want), found);
}

/* A string member among several aliases; integers are formatted into
 * numbuf (ports are numbers in some brokers, strings in others). */
static const char *dsd__cc_get(const json_t *o, const char *const *names, char *numbuf,
                               size_t numlen) {
  for (; *names; names++) {
    json_t *v = json_object_get(o, *names);
    if (json_is_string(v) && json_string_length(v) > 0) return json_string_value(v);
    if (json_is_integer(v) && numbuf != NULL) {
      snprintf(numbuf, numlen, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
      return numbuf;
    }
  }
  return NULL;
}

static const char *const dsd__cc_k_user[] = {"username", "user", "db_user", "login", NULL};
static const char *const dsd__cc_k_pass[] = {"password", "pass", "db_password", NULL};
static const char *const dsd__cc_k_host[] = {"hostname", "host", "db_host", "server", NULL};
static const char *const dsd__cc_k_port[] = {"port", "db_port", NULL};
static const char *const dsd__cc_k_db[] = {"name", "database", "db", "db_name", "dbname", NULL};
static const char *const dsd__cc_k_uri[] = {"uri", "url", "database_uri", NULL};

/* Appends scheme://[user[:password]@]host[:port]/db to out. host may be an
 * IPv6 literal (bracketed here) or already hold a port or a host list. */
static int dsd__cc_build(dsd_buf_t *out, const char *scheme, const char *user, const char *pass,
                         const char *host, const char *port, const char *db) {
  int rc = 0;
  char *euser = NULL, *epass = NULL, *edb = NULL;
  rc = dsd_buf_append_str(out, scheme);
  if (rc < 0) goto cleanup;
  if (user != NULL) {
    euser = dsd_cc_urlencode(user);
    epass = pass ? dsd_cc_urlencode(pass) : NULL;
    if (euser == NULL || (pass && epass == NULL)) {
      rc = DSD_ENOMEM;
      goto cleanup;
    }
    rc = dsd_buf_printf(out, "%s%s%s@", euser, epass ? ":" : "", epass ? epass : "");
    if (rc < 0) goto cleanup;
  }
  /* two colons or more and no brackets: a bare IPv6 literal (host:port has
   * one colon, a bracketed literal or a host list is left alone) */
  int colons = 0;
  for (const char *c = host; *c; c++) colons += *c == ':';
  int v6 = colons >= 2 && strchr(host, '[') == NULL && strchr(host, ',') == NULL;
  rc = dsd_buf_printf(out, v6 ? "[%s]" : "%s", host);
  if (rc < 0) goto cleanup;
  if (port != NULL && (v6 || strchr(host, ':') == NULL)) {
    rc = dsd_buf_printf(out, ":%s", port);
    if (rc < 0) goto cleanup;
  }
  rc = dsd_buf_append_char(out, '/');
  if (rc < 0) goto cleanup;
  if (db != NULL) {
    edb = dsd_cc_urlencode(db);
    if (edb == NULL) {
      rc = DSD_ENOMEM;
      goto cleanup;
    }
    rc = dsd_buf_append_str(out, edb);
  }
cleanup:
  free(euser);
  if (epass) {
    memset(epass, 0, strlen(epass));
    free(epass);
  }
  free(edb);
  return rc;
}

static const char *dsd__cc_scheme_for(const char *dialect) {
  if (strcmp(dialect, "pg") == 0) return "postgresql://";
  if (strcmp(dialect, "mysql") == 0) return "mysql://";
  return "mongodb://";
}

/* jdbc:postgresql://host:port/db?user=u&password=p&sslmode=require
 * jdbc:mysql://host:port/db?user=u&password=p&useSSL=false
 * User and password may instead come from the fields beside jdbcUrl. Query
 * parameters other than user, password and (for pg) sslmode are JDBC driver
 * options that libpq and libmysqlclient would reject, so they are dropped. */
static int dsd__cc_from_jdbc(const json_t *creds, const char *jdbc, const char *dialect,
                             dsd_buf_t *out, dsd_err_t *err) {
  int rc = 0;
  char *copy = NULL;
  const char *found = NULL;
  const char *rest = NULL;
  if (strncasecmp(jdbc, "jdbc:postgresql://", 18) == 0) {
    found = "pg";
    rest = jdbc + 18;
  } else if (strncasecmp(jdbc, "jdbc:mysql://", 13) == 0) {
    found = "mysql";
    rest = jdbc + 13;
  } else if (strncasecmp(jdbc, "jdbc:mariadb://", 15) == 0) {
    found = "mysql";
    rest = jdbc + 15;
  } else if (strncasecmp(jdbc, "jdbc:mongodb", 12) == 0) {
    found = "mongo";
  } else {
    rc = dsd_err_set(err, DSD_EINVAL,
                     "the service key's jdbcUrl has a scheme dsd does not know\n"
                     "HINT: the credentials need a uri, a jdbcUrl or hostname, port, name, "
                     "username and password");
    goto cleanup;
  }
  if (strcmp(found, dialect) != 0) {
    rc = dsd__cc_mismatch(found, dialect, err);
    goto cleanup;
  }
  if (rest == NULL) {
    rc = dsd_err_set(err, DSD_EINVAL, "the service key's jdbcUrl cannot be used for mongo");
    goto cleanup;
  }
  copy = strdup(rest);
  if (copy == NULL) {
    rc = dsd_err_set(err, DSD_ENOMEM, "out of memory");
    goto cleanup;
  }
  char *query = strchr(copy, '?');
  if (query) *query++ = '\0';
  char *slash = strchr(copy, '/');
  char *db = NULL;
  if (slash) {
    *slash = '\0';
    db = slash + 1;
    dsd__cc_urldecode(db, 0);
  }
  char *hostport = copy;
  /* a user@ part is not JDBC syntax but some brokers put it there */
  char *at = strrchr(hostport, '@');
  char *juser = NULL, *jpass = NULL, *sslmode = NULL;
  if (at) {
    *at = '\0';
    juser = hostport;
    hostport = at + 1;
    char *colon = strchr(juser, ':');
    if (colon) {
      *colon = '\0';
      jpass = colon + 1;
      dsd__cc_urldecode(jpass, 0);
    }
    dsd__cc_urldecode(juser, 0);
  }
  for (char *kv = query ? strtok(query, "&") : NULL; kv; kv = strtok(NULL, "&")) {
    char *eq = strchr(kv, '=');
    if (!eq) continue;
    *eq = '\0';
    dsd__cc_urldecode(eq + 1, 1);
    if (strcmp(kv, "user") == 0)
      juser = eq + 1;
    else if (strcmp(kv, "password") == 0)
      jpass = eq + 1;
    else if (strcmp(kv, "sslmode") == 0 && strcmp(found, "pg") == 0)
      sslmode = eq + 1;
  }
  const char *user = juser ? juser : dsd__cc_get(creds, dsd__cc_k_user, NULL, 0);
  const char *pass = jpass ? jpass : dsd__cc_get(creds, dsd__cc_k_pass, NULL, 0);
  if (*hostport == '\0') {
    rc = dsd_err_set(err, DSD_EINVAL, "the service key's jdbcUrl names no host");
    goto cleanup;
  }
  rc = dsd__cc_build(out, dsd__cc_scheme_for(dialect), user, pass, hostport, NULL, db);
  if (rc == 0 && sslmode) {
    char *e = dsd_cc_urlencode(sslmode);
    rc = e ? dsd_buf_printf(out, "?sslmode=%s", e) : DSD_ENOMEM;
    free(e);
  }
  if (rc < 0) dsd_err_set(err, rc, "out of memory");
cleanup:
  if (copy) {
    memset(copy, 0, strlen(copy));
    free(copy);
  }
  return rc;
}

/* ------------------------------------------------------------------------ */
/* dsd_cc_credentials_uri                                                   */
/* ------------------------------------------------------------------------ */

int dsd_cc_credentials_uri(const json_t *creds, const char *dialect, char **uri, dsd_err_t *err) {
  int rc = 0;
  dsd_buf_t out = DSD_BUF_INIT;
  char portbuf[32];
  *uri = NULL;
  if (dialect == NULL || (strcmp(dialect, "pg") != 0 && strcmp(dialect, "mysql") != 0 &&
                          strcmp(dialect, "mongo") != 0)) {
    rc = dsd_err_set(err, DSD_EINVAL, "unknown dialect \"%s\"", dialect ? dialect : "");
    goto cleanup;
  }
  if (!json_is_object(creds)) {
    rc = dsd_err_set(err, DSD_EINVAL, "the service key has no credentials object");
    goto cleanup;
  }
  /* 1. a URI with a database scheme */
  const char *u = dsd__cc_get(creds, dsd__cc_k_uri, NULL, 0);
  size_t slen = 0;
  const char *found = u ? dsd__cc_dialect_of_scheme(u, &slen) : NULL;
  if (found != NULL) {
    if (strcmp(found, dialect) != 0) {
      rc = dsd__cc_mismatch(found, dialect, err);
      goto cleanup;
    }
    /* mysql2:// and mariadb:// are Ruby/Node spellings of mysql:// */
    if (strcmp(found, "mysql") == 0 && strncasecmp(u, "mysql://", 8) != 0) {
      rc = dsd_buf_printf(&out, "mysql://%s", u + slen);
    } else {
      rc = dsd_buf_append_str(&out, u);
    }
    if (rc < 0) dsd_err_set(err, rc, "out of memory");
    goto cleanup;
  }
  /* 2. a JDBC URL */
  json_t *jv = json_object_get(creds, "jdbcUrl");
  if (!json_is_string(jv)) jv = json_object_get(creds, "jdbc_url");
  if (!json_is_string(jv)) jv = json_object_get(creds, "jdbcurl");
  if (json_is_string(jv)) {
    rc = dsd__cc_from_jdbc(creds, json_string_value(jv), dialect, &out, err);
    goto cleanup;
  }
  /* 3. separate fields */
  const char *host = dsd__cc_get(creds, dsd__cc_k_host, NULL, 0);
  if (host == NULL) {
    rc = dsd_err_set(err, DSD_EINVAL,
                     "the service key's credentials hold no uri, jdbcUrl or hostname\n"
                     "HINT: the credentials need a uri, a jdbcUrl or hostname, port, name, "
                     "username and password");
    goto cleanup;
  }
  const char *port = dsd__cc_get(creds, dsd__cc_k_port, portbuf, sizeof(portbuf));
  const char *db = dsd__cc_get(creds, dsd__cc_k_db, NULL, 0);
  const char *user = dsd__cc_get(creds, dsd__cc_k_user, NULL, 0);
  const char *pass = dsd__cc_get(creds, dsd__cc_k_pass, NULL, 0);
  /* the port is the one clue to the kind of database these fields describe */
  const char *by_port = NULL;
  if (port && strcmp(port, "5432") == 0) by_port = "pg";
  if (port && strcmp(port, "3306") == 0) by_port = "mysql";
  if (port && strcmp(port, "27017") == 0) by_port = "mongo";
  if (by_port && strcmp(by_port, dialect) != 0) {
    rc = dsd__cc_mismatch(by_port, dialect, err);
    goto cleanup;
  }
  if (db == NULL && strcmp(dialect, "mongo") != 0) {
    rc = dsd_err_set(err, DSD_EINVAL,
                     "the service key's credentials name no database\n"
                     "HINT: expected a name, database or db field");
    goto cleanup;
  }
  rc = dsd__cc_build(&out, dsd__cc_scheme_for(dialect), user, pass, host, port, db);
  if (rc < 0) dsd_err_set(err, rc, "out of memory");

cleanup:
  if (rc == 0) {
    *uri = dsd_buf_steal(&out);
    if (*uri == NULL) rc = dsd_err_set(err, DSD_ENOMEM, "out of memory");
  }
  if (out.data) memset(out.data, 0, out.len);
  dsd_buf_free(&out);
  return rc;
}
