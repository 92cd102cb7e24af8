/*
 * mysql.c - the MySQL / MariaDB dialect's registration (the dsd_dialect_t
 * that dialects/registry.c hands out for the "mysql" plan and mysql:// or
 * mariadb:// URIs) and what its dump and restore sides share: URI parsing,
 * connecting with fixed session settings, and the escaping of values and
 * identifiers into SQL text.
 *
 * Secrets: the URI's password goes to mysql_real_connect only. It is
 * registered with the log redactor before the connection is attempted, and
 * every client library message passes through dsd_err_set (which redacts).
 */
#include <ctype.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/log.h"
#include "dialects/mysql/mysql.h"

static const char *const dsd__mysql_schemes[] = {"mysql", "mariadb", NULL};

const dsd_dialect_t dsd__mysql_dialect = {
    .name = "mysql",
    .schemes = dsd__mysql_schemes,
    .dump_prepare = dsd__mysql_dump_prepare,
    .dump_run = dsd__mysql_dump_run,
    .dump_free = dsd__mysql_dump_free,
    .restore = dsd__mysql_restore,
};

/* The mysql client and dsd's restore both run it first. The versioned
 * comment keeps SET NAMES away from servers that predate utf8mb4. */
const char dsd__mysql_stream_header[] =
    "/*!40101 SET NAMES utf8mb4 */;\n"
    "SET time_zone = '+00:00';\n"
    "SET sql_mode = '" DSD__MYSQL_SQL_MODE "';\n"
    "SET FOREIGN_KEY_CHECKS = 0;\n"
    "SET UNIQUE_CHECKS = 0;\n";

/* ------------------------------------------------------------------ */
/* URIs                                                                */

static int dsd__hexval(int c) {
  if (c >= '0' && c <= '9')
    return c - '0';
  c = tolower(c);
  return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* A malloc'd percent-decoded copy of s[0..n), or NULL (bad escape, NUL
 * byte, out of memory). */
static char *dsd__pct_decode(const char *s, size_t n) {
  char *out = malloc(n + 1), *o = out;
  if (out == NULL)
    return NULL;
  for (size_t i = 0; i < n; i++) {
    if (s[i] == '%') {
      int h, l;
      if (i + 2 >= n) {
        free(out);
        return NULL;
      }
      h = dsd__hexval((unsigned char)s[i + 1]);
      l = dsd__hexval((unsigned char)s[i + 2]);
      if (h < 0 || l < 0 || (h == 0 && l == 0)) {
        free(out);
        return NULL;
      }
      *o++ = (char)(h * 16 + l);
      i += 2;
    } else {
      *o++ = s[i];
    }
  }
  *o = '\0';
  return out;
}

void dsd__mysql_uri_free(dsd__mysql_uri_t *u) {
  if (u == NULL)
    return;
  if (u->password != NULL) {
    explicit_bzero(u->password, strlen(u->password));
    free(u->password);
  }
  free(u->user);
  free(u->host);
  free(u->db);
  free(u->socket);
  free(u->ssl_mode);
  free(u->ssl_ca);
  memset(u, 0, sizeof *u);
}

static int dsd__uri_param(dsd__mysql_uri_t *u, const char *p, size_t n, dsd_err_t *err) {
  const char *eq = memchr(p, '=', n);
  char key[32];
  char *val;
  size_t kn;
  if (eq == NULL || (kn = (size_t)(eq - p)) == 0 || kn >= sizeof key)
    return dsd_err_set(err, DSD_EINVAL, "the mysql uri has a malformed query parameter "
                       "HINT: use ?ssl-mode=REQUIRED&ssl-ca=/path/ca.pem");
  memcpy(key, p, kn);
  key[kn] = '\0';
  for (char *k = key; *k; k++)
    if (*k == '_')
      *k = '-';
  val = dsd__pct_decode(eq + 1, n - kn - 1);
  if (val == NULL)
    return dsd_err_set(err, DSD_EINVAL, "the mysql uri parameter %s has a bad %%-escape", key);
  if (strcasecmp(key, "ssl-mode") == 0 || strcasecmp(key, "sslmode") == 0) {
    static const char *const modes[] = {"DISABLED", "PREFERRED", "REQUIRED", "VERIFY_CA",
                                        "VERIFY_IDENTITY", NULL};
    for (char *c = val; *c; c++)
      *c = (char)toupper((unsigned char)*c);
    for (size_t i = 0; modes[i]; i++)
      if (strcmp(val, modes[i]) == 0) {
        free(u->ssl_mode);
        u->ssl_mode = val;
        return 0;
      }
    free(val);
    return dsd_err_set(err, DSD_EINVAL, "the mysql uri has an unknown ssl-mode "
                       "HINT: use DISABLED, PREFERRED, REQUIRED, VERIFY_CA or VERIFY_IDENTITY");
  }
  if (strcasecmp(key, "ssl-ca") == 0) {
    free(u->ssl_ca);
    u->ssl_ca = val;
    return 0;
  }
  if (strcasecmp(key, "socket") == 0) {
    free(u->socket);
    u->socket = val;
    return 0;
  }
  free(val);
  return dsd_err_set(err, DSD_EINVAL, "the mysql uri has an unknown parameter %s "
                     "HINT: dsd knows ssl-mode, ssl-ca and socket", key);
}

int dsd__mysql_uri_parse(const char *uri, dsd__mysql_uri_t *out, dsd_err_t *err) {
  const char *p, *end, *at, *slash, *q, *hostp, *hostend;
  int rc = 0;

  memset(out, 0, sizeof *out);
  if (uri == NULL || (p = strstr(uri, "://")) == NULL ||
      !((p - uri == 5 && strncasecmp(uri, "mysql", 5) == 0) ||
        (p - uri == 7 && strncasecmp(uri, "mariadb", 7) == 0)))
    return dsd_err_set(err, DSD_EINVAL, "not a mysql uri "
                       "HINT: mysql://user:password@host:3306/database");
  p += 3;
  end = p + strlen(p);
  q = strchr(p, '?');
  if (q == NULL)
    q = end;
  slash = memchr(p, '/', (size_t)(q - p));
  if (slash == NULL)
    slash = q;
  /* The userinfo ends at the last '@' before the path: a password may hold
   * an unescaped '@'. */
  at = NULL;
  for (const char *c = p; c < slash; c++)
    if (*c == '@')
      at = c;
  hostp = p;
  if (at != NULL) {
    const char *colon = memchr(p, ':', (size_t)(at - p));
    const char *uend = colon ? colon : at;
    out->user = dsd__pct_decode(p, (size_t)(uend - p));
    if (colon != NULL)
      out->password = dsd__pct_decode(colon + 1, (size_t)(at - colon - 1));
    if (out->user == NULL || (colon != NULL && out->password == NULL)) {
      rc = dsd_err_set(err, DSD_EINVAL, "the mysql uri has a bad user or password "
                       "HINT: %%-encode reserved characters");
      goto cleanup;
    }
    hostp = at + 1;
  }
  hostend = slash;
  if (hostp < hostend && *hostp == '[') {
    const char *rb = memchr(hostp, ']', (size_t)(hostend - hostp));
    if (rb == NULL) {
      rc = dsd_err_set(err, DSD_EINVAL, "the mysql uri has a bad ipv6 host");
      goto cleanup;
    }
    out->host = dsd__pct_decode(hostp + 1, (size_t)(rb - hostp - 1));
    hostp = rb + 1;
  } else {
    const char *colon = memchr(hostp, ':', (size_t)(hostend - hostp));
    const char *hend = colon ? colon : hostend;
    out->host = dsd__pct_decode(hostp, (size_t)(hend - hostp));
    hostp = hend;
  }
  if (out->host == NULL) {
    rc = dsd_err_set(err, DSD_EINVAL, "the mysql uri has a bad host");
    goto cleanup;
  }
  if (hostp < hostend && *hostp == ':') {
    char *e;
    unsigned long port = strtoul(hostp + 1, &e, 10);
    if (e != hostend || e == hostp + 1 || port == 0 || port > 65535) {
      rc = dsd_err_set(err, DSD_EINVAL, "the mysql uri has a bad port");
      goto cleanup;
    }
    out->port = (unsigned)port;
  } else if (hostp != hostend) {
    rc = dsd_err_set(err, DSD_EINVAL, "the mysql uri has a bad host");
    goto cleanup;
  }
  if (slash < q) {
    out->db = dsd__pct_decode(slash + 1, (size_t)(q - slash - 1));
    if (out->db == NULL) {
      rc = dsd_err_set(err, DSD_EINVAL, "the mysql uri has a bad database name");
      goto cleanup;
    }
  }
  if (out->db == NULL || out->db[0] == '\0') {
    rc = dsd_err_set(err, DSD_EINVAL, "the mysql uri names no database "
                     "HINT: mysql://user:password@host:3306/database");
    goto cleanup;
  }
  while (q < end) {
    const char *amp;
    q++;
    amp = strchr(q, '&');
    if (amp == NULL)
      amp = end;
    if (amp > q && (rc = dsd__uri_param(out, q, (size_t)(amp - q), err)) < 0)
      goto cleanup;
    q = amp;
  }
cleanup:
  if (rc < 0)
    dsd__mysql_uri_free(out);
  return rc;
}

/* ------------------------------------------------------------------ */
/* Connections                                                         */

static pthread_once_t dsd__mysql_once = PTHREAD_ONCE_INIT;
static void dsd__mysql_lib_init(void) { mysql_library_init(0, NULL, NULL); }

int dsd__mysql_exec(MYSQL *c, const char *sql, size_t len, const char *what,
                    unsigned *errnum, dsd_err_t *err) {
  MYSQL_RES *res;
  if (errnum)
    *errnum = 0;
  if (mysql_real_query(c, sql, (unsigned long)len) != 0) {
    if (errnum)
      *errnum = mysql_errno(c);
    return dsd_err_set(err, DSD_EDB, "%s: %s (%u)", what, mysql_error(c), mysql_errno(c));
  }
  /* A statement that returns rows (SHOW, SELECT) is drained and freed. */
  res = mysql_store_result(c);
  if (res != NULL)
    mysql_free_result(res);
  else if (mysql_field_count(c) != 0) {
    if (errnum)
      *errnum = mysql_errno(c);
    return dsd_err_set(err, DSD_EDB, "%s: %s (%u)", what, mysql_error(c), mysql_errno(c));
  }
  return 0;
}

int dsd__mysql_connect(const char *uri, const char *what, MYSQL **out, dsd_err_t *err) {
  static const char session[] =
      "SET SESSION time_zone = '+00:00', sql_mode = '" DSD__MYSQL_SQL_MODE "',"
      " net_read_timeout = 3600, net_write_timeout = 3600, wait_timeout = 86400";
  dsd__mysql_uri_t u;
  MYSQL *c = NULL;
  unsigned timeout = 15;
  my_bool off = 0, on = 1;
  unsigned int local_infile = 0;
  int rc;

  *out = NULL;
  pthread_once(&dsd__mysql_once, dsd__mysql_lib_init);
  rc = dsd__mysql_uri_parse(uri, &u, err);
  if (rc < 0)
    return rc;
  if (u.password != NULL && u.password[0] != '\0')
    dsd_redact_register(u.password);
  c = mysql_init(NULL);
  if (c == NULL) {
    rc = dsd_err_set(err, DSD_ENOMEM, "out of memory");
    goto cleanup;
  }
  mysql_options(c, MYSQL_SET_CHARSET_NAME, "utf8mb4");
  mysql_options(c, MYSQL_OPT_CONNECT_TIMEOUT, &timeout);
  mysql_options(c, MYSQL_OPT_LOCAL_INFILE, &local_infile);
  mysql_options(c, MYSQL_OPT_RECONNECT, &off);
  /* Options files (my.cnf) could point the connection elsewhere: ignore
   * them, the URI says everything. */
  /* PREFERRED (what the mysql client does by default) asks for TLS and
   * goes on in clear when the server has none; it verifies nothing. */
  if (u.ssl_mode != NULL && strcmp(u.ssl_mode, "PREFERRED") == 0)
    mysql_ssl_set(c, NULL, NULL, NULL, NULL, NULL);
  if (u.ssl_mode != NULL && strcmp(u.ssl_mode, "DISABLED") != 0 &&
      strcmp(u.ssl_mode, "PREFERRED") != 0) {
    mysql_options(c, MYSQL_OPT_SSL_ENFORCE, &on);
    if (strncmp(u.ssl_mode, "VERIFY", 6) == 0)
      mysql_options(c, MYSQL_OPT_SSL_VERIFY_SERVER_CERT, &on);
    else
      mysql_options(c, MYSQL_OPT_SSL_VERIFY_SERVER_CERT, &off);
  }
  if (u.ssl_ca != NULL)
    mysql_options(c, MYSQL_OPT_SSL_CA, u.ssl_ca);
  if (mysql_real_connect(c, u.host && u.host[0] ? u.host : "localhost", u.user,
                         u.password ? u.password : "", u.db, u.port, u.socket, 0) == NULL) {
    unsigned e = mysql_errno(c);
    rc = dsd_err_set(err, e == 1045 || e == 1044 ? DSD_EAUTH : DSD_ENET,
                     "cannot connect to the %s database: %s (%u)", what, mysql_error(c), e);
    goto cleanup;
  }
  /* Connector/C 3.3 goes on in clear with SSL_ENFORCE alone when the
   * server has no TLS: check that the session is encrypted. */
  if (u.ssl_mode != NULL && strcmp(u.ssl_mode, "DISABLED") != 0 &&
      strcmp(u.ssl_mode, "PREFERRED") != 0 && mysql_get_ssl_cipher(c) == NULL) {
    rc = dsd_err_set(err, DSD_ENET, "cannot connect to the %s database: ssl-mode=%s but the "
                     "server does not offer TLS HINT: enable TLS on the server or use "
                     "ssl-mode=PREFERRED", what, u.ssl_mode);
    goto cleanup;
  }
  rc = dsd__mysql_exec(c, session, sizeof session - 1, "cannot set up the session", NULL, err);
  if (rc < 0)
    goto cleanup;
  *out = c;
  c = NULL;
cleanup:
  if (c != NULL)
    mysql_close(c);
  dsd__mysql_uri_free(&u);
  return rc;
}

/* ------------------------------------------------------------------ */
/* Values                                                              */

int dsd__mysql_quote_ident(dsd_buf_t *b, const char *id) {
  if (dsd_buf_append_char(b, '`') < 0)
    return DSD_ENOMEM;
  for (const char *p = id; *p; p++) {
    if (*p == '`' && dsd_buf_append_char(b, '`') < 0)
      return DSD_ENOMEM;
    if (dsd_buf_append_char(b, *p) < 0)
      return DSD_ENOMEM;
  }
  return dsd_buf_append_char(b, '`') < 0 ? DSD_ENOMEM : 0;
}

int dsd__mysql_quote_string(dsd_buf_t *b, const char *s, size_t n) {
  char *o;
  if (dsd_buf_reserve(b, 2 * n + 3) < 0)
    return DSD_ENOMEM;
  o = b->data + b->len;
  *o++ = '\'';
  for (size_t i = 0; i < n; i++) {
    char c = s[i], e = 0;
    switch (c) {
    case '\0': e = '0'; break;
    case '\'': e = '\''; break;
    case '"': e = '"'; break;
    case '\\': e = '\\'; break;
    case '\n': e = 'n'; break;
    case '\r': e = 'r'; break;
    case '\032': e = 'Z'; break;
    default: break;
    }
    if (e) {
      *o++ = '\\';
      *o++ = e;
    } else {
      *o++ = c;
    }
  }
  *o++ = '\'';
  *o = '\0';
  b->len = (size_t)(o - b->data);
  return 0;
}

int dsd__mysql_hex(dsd_buf_t *b, const void *p, size_t n) {
  static const char hexd[] = "0123456789abcdef";
  const unsigned char *u = p;
  char *o;
  if (n == 0)
    return dsd_buf_append(b, "''", 2) < 0 ? DSD_ENOMEM : 0;
  if (dsd_buf_reserve(b, 2 * n + 3) < 0)
    return DSD_ENOMEM;
  o = b->data + b->len;
  *o++ = '0';
  *o++ = 'x';
  for (size_t i = 0; i < n; i++) {
    *o++ = hexd[u[i] >> 4];
    *o++ = hexd[u[i] & 15];
  }
  *o = '\0';
  b->len = (size_t)(o - b->data);
  return 0;
}

/* Length of a quoted (`x`, 'x', "x") or bare name starting at p. */
static size_t dsd__name_len(const char *p) {
  const char *s = p;
  if (*p == '`' || *p == '\'' || *p == '"') {
    char q = *p++;
    while (*p) {
      if (*p == q && p[1] == q)
        p += 2;
      else if (*p == q)
        return (size_t)(p + 1 - s);
      else
        p++;
    }
    return (size_t)(p - s);
  }
  while (*p && (isalnum((unsigned char)*p) || *p == '_' || *p == '$' || *p == '%' ||
                *p == '.' || *p == '-'))
    p++;
  return (size_t)(p - s);
}

size_t dsd__mysql_strip_definer(char *sql) {
  size_t len = strlen(sql);
  /* DEFINER comes before the object keyword, in the first few hundred
   * bytes; the body after it is never touched. */
  char *d = NULL;
  for (char *p = sql; *p && p < sql + 512; p++)
    if (strncasecmp(p, "DEFINER=", 8) == 0 && (p == sql || isspace((unsigned char)p[-1]))) {
      d = p;
      break;
    }
  if (d != NULL) {
    char *e = d + 8;
    e += dsd__name_len(e);
    if (*e == '@')
      e += 1 + dsd__name_len(e + 1);
    while (isspace((unsigned char)*e))
      e++;
    memmove(d, e, len - (size_t)(e - sql) + 1);
    len -= (size_t)(e - d);
  }
  return len;
}
