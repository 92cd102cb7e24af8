/*
 * fuzz_conn_uri.c - libFuzzer target: connection URIs given as
 * source_uri/target_uri.
 *
 * The broker checks a direct URI (broker/params.c dsd_broker_uri_check)
 * and the drivers then parse it their own way (libpq's PQconninfoParse for
 * pg, dsd__mysql_uri_parse for mysql). The two readings must agree: a URI
 * the broker accepts in "true" mode (no loopback or link-local hosts) must
 * not reach such a host, or a local socket, once the driver parses it.
 * Also checked: stripping the password leaves no password, and the pg
 * child-process conninfo never carries the password (it goes by env).
 */
#include <arpa/inet.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <libpq-fe.h>

#include "broker/broker.h"
#include "dialects/mysql/mysql.h"
#include "dialects/pg/pg_util.h"

static const char *const schemes_pg[] = {"postgresql", "postgres", NULL};
static const char *const schemes_mysql[] = {"mysql", "mariadb", NULL};
static const char *const schemes_mongo[] = {"mongodb", "mongodb+srv", NULL};
static const dsd_broker_plan_t plans[] = {
    {"pg", "p", "pg", schemes_pg},
    {"mysql", "m", "mysql", schemes_mysql},
    {"mongo", "g", "mongo", schemes_mongo},
};

/* What a driver would treat as this machine: names and addresses the
 * broker means to refuse, plus a socket path. */
static int local_host(const char *h) {
  unsigned char a[16];
  if (h == NULL) return 0;
  if (h[0] == '\0' || h[0] == '/' || h[0] == '@') return 1;
  if (strcasecmp(h, "localhost") == 0 || strcasecmp(h, "localhost.") == 0) return 1;
  if (inet_pton(AF_INET, h, a) == 1) return a[0] == 127 || (a[0] == 169 && a[1] == 254) || (a[0] | a[1] | a[2] | a[3]) == 0;
  if (inet_pton(AF_INET6, h, a) == 1) {
    static const unsigned char loop[16] = {[15] = 1};
    return memcmp(a, loop, 16) == 0 || (a[0] == 0xfe && (a[1] & 0xc0) == 0x80);
  }
  return 0;
}

/* libpq's host and hostaddr may list several hosts separated by ','. */
static int any_local(const char *list) {
  char buf[1024];
  if (list == NULL) return 0;
  if (strlen(list) >= sizeof(buf)) return 0;
  strcpy(buf, list);
  char *save = NULL;
  if (buf[0] == '\0') return 1;
  for (char *t = strtok_r(buf, ",", &save); t != NULL; t = strtok_r(NULL, ",", &save))
    if (local_host(t)) return 1;
  return 0;
}

static void check_pg(const char *uri) {
  char *emsg = NULL;
  PQconninfoOption *opts = PQconninfoParse(uri, &emsg);
  PQfreemem(emsg);
  if (opts == NULL) return;
  const char *host = NULL, *hostaddr = NULL, *service = NULL;
  for (PQconninfoOption *o = opts; o->keyword; o++) {
    if (strcmp(o->keyword, "host") == 0) host = o->val;
    if (strcmp(o->keyword, "hostaddr") == 0) hostaddr = o->val;
    if (strcmp(o->keyword, "service") == 0) service = o->val;
  }
  /* No host at all means libpq's default unix socket. */
  if ((host == NULL && hostaddr == NULL) || any_local(host) || any_local(hostaddr) || service)
    abort();
  PQconninfoFree(opts);
}

static void check_mysql(const char *uri) {
  dsd__mysql_uri_t u;
  dsd_err_t err;
  dsd_err_clear(&err);
  if (dsd__mysql_uri_parse(uri, &u, &err) == 0) {
    if (u.socket != NULL || local_host(u.host)) abort();
  }
  dsd__mysql_uri_free(&u);
}

/* True when msg contains the password of uri's userinfo (only checked for
 * passwords long enough not to occur in a message by chance). */
static int leaks_password(const char *uri, const char *msg) {
  const char *auth = strstr(uri, "://");
  if (auth == NULL) return 0;
  auth += 3;
  const char *end = auth + strcspn(auth, "/?#");
  const char *at = NULL;
  for (const char *c = auth; c < end; c++)
    if (*c == '@') at = c;
  if (at == NULL) return 0;
  const char *colon = memchr(auth, ':', (size_t)(at - auth));
  if (colon == NULL || at - colon - 1 < 8) return 0;
  char pw[256];
  size_t n = (size_t)(at - colon - 1) < sizeof(pw) - 1 ? (size_t)(at - colon - 1) : sizeof(pw) - 1;
  memcpy(pw, colon + 1, n);
  pw[n] = '\0';
  return strstr(msg, pw) != NULL;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  char *uri = malloc(size + 1);
  dsd_err_t err;
  if (uri == NULL) return 0;
  memcpy(uri, data, size);
  uri[size] = '\0';

  for (size_t p = 0; p < 3; p++) {
    for (int mode = DSD_DIRECT_URIS_NONE; mode <= DSD_DIRECT_URIS_ALL; mode++) {
      dsd_err_clear(&err);
      int rc = dsd_broker_uri_check((dsd_direct_uris_t)mode, &plans[p], "source_uri", uri, &err);
      if (rc != 0) {
        if (err.msg[0] == '\0') abort();
        if (leaks_password(uri, err.msg)) abort(); /* a URI's password is never quoted */
        continue;
      }
      if (mode == DSD_DIRECT_URIS_NONE) abort();
      if (mode == DSD_DIRECT_URIS_PUBLIC && p == 0) check_pg(uri);
      if (mode == DSD_DIRECT_URIS_PUBLIC && p == 1) check_mysql(uri);
    }
  }

  char *stripped = dsd_broker_uri_strip_password(uri);
  free(stripped);

  char *conninfo = NULL, *password = NULL;
  dsd_err_clear(&err);
  if (dsd__pg_child_conninfo(uri, &conninfo, &password, &err) == 0) {
    if (conninfo == NULL) abort();
    /* The conninfo must parse back, and without a password: that goes to
     * the child through its environment only. */
    char *emsg = NULL;
    PQconninfoOption *o = PQconninfoParse(conninfo, &emsg);
    PQfreemem(emsg);
    if (o == NULL) abort();
    for (PQconninfoOption *k = o; k->keyword; k++)
      if (strcmp(k->keyword, "password") == 0 && k->val != NULL) abort();
    PQconninfoFree(o);
  } else if (conninfo != NULL || password != NULL) {
    abort();
  }
  free(conninfo);
  free(password);

  dsd__mysql_uri_t mu;
  dsd_err_clear(&err);
  if (dsd__mysql_uri_parse(uri, &mu, &err) == 0) {
    if (mu.db == NULL || mu.host == NULL) abort();
  } else if (err.msg[0] == '\0') {
    abort();
  }
  dsd__mysql_uri_free(&mu);
  free(uri);
  return 0;
}
