/*
 * log.c - logging with secret redaction (see log.h).
 *
 * Redaction runs on every line before it is written and on every error
 * message (error.c), in two passes: registered secrets (exact strings), then
 * patterns that are secrets by position (header values, URI passwords,
 * conninfo passwords, presigned-URL signatures, JSON members with secret
 * names). The secret list is guarded by dsd__redact_lock; writes to the log
 * fd are single write(2) calls so concurrent lines do not interleave.
 */
#include "core/log.h"

#include <ctype.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "core/buf.h"
#include "core/error.h"

/* ---------------------------------------------------------------- state */

static pthread_mutex_t dsd__redact_lock = PTHREAD_MUTEX_INITIALIZER;
static char **dsd__secrets;
static size_t dsd__nsecrets;
static dsd_log_level_t dsd__level = DSD_LOG_INFO;
static int dsd__log_fd = 2;

void dsd_log_set_level(dsd_log_level_t level) { dsd__level = level; }
void dsd_log_set_fd(int fd) { dsd__log_fd = fd; }

int dsd_log_level_parse(const char *s, dsd_log_level_t *out) {
  static const char *names[] = {"debug", "info", "warn", "error"};
  for (int i = 0; i < 4; i++) {
    if (strcasecmp(s, names[i]) == 0) {
      *out = (dsd_log_level_t)i;
      return 0;
    }
  }
  return DSD_EINVAL;
}

/* ------------------------------------------------------ secret registry */

void dsd_redact_register(const char *secret) {
  if (secret == NULL || strlen(secret) < 4) return;
  pthread_mutex_lock(&dsd__redact_lock);
  for (size_t i = 0; i < dsd__nsecrets; i++) {
    if (strcmp(dsd__secrets[i], secret) == 0) goto cleanup;
  }
  char **grown = realloc(dsd__secrets, (dsd__nsecrets + 1) * sizeof(*grown));
  if (grown == NULL) goto cleanup;
  dsd__secrets = grown;
  char *copy = strdup(secret);
  if (copy == NULL) goto cleanup;
  /* Longest first, so a secret containing another is replaced whole. */
  size_t pos = dsd__nsecrets;
  while (pos > 0 && strlen(dsd__secrets[pos - 1]) < strlen(copy)) {
    dsd__secrets[pos] = dsd__secrets[pos - 1];
    pos--;
  }
  dsd__secrets[pos] = copy;
  dsd__nsecrets++;
cleanup:
  pthread_mutex_unlock(&dsd__redact_lock);
}

void dsd_redact_unregister(const char *secret) {
  if (secret == NULL) return;
  pthread_mutex_lock(&dsd__redact_lock);
  for (size_t i = 0; i < dsd__nsecrets; i++) {
    if (strcmp(dsd__secrets[i], secret) == 0) {
      free(dsd__secrets[i]);
      memmove(&dsd__secrets[i], &dsd__secrets[i + 1],
              (dsd__nsecrets - i - 1) * sizeof(*dsd__secrets));
      dsd__nsecrets--;
      break;
    }
  }
  pthread_mutex_unlock(&dsd__redact_lock);
}

/* Replaces every registered secret in in; appends the result to out. */
static int dsd__redact_registered(const char *in, dsd_buf_t *out) {
  int rc = 0;
  pthread_mutex_lock(&dsd__redact_lock);
  const char *p = in;
  while (*p) {
    size_t hit = 0;
    for (size_t i = 0; i < dsd__nsecrets && hit == 0; i++) {
      size_t n = strlen(dsd__secrets[i]);
      if (strncmp(p, dsd__secrets[i], n) == 0) hit = n;
    }
    if (hit) {
      rc = dsd_buf_append_str(out, DSD_REDACTED);
      p += hit;
    } else {
      rc = dsd_buf_append_char(out, *p++);
    }
    if (rc != 0) break;
  }
  pthread_mutex_unlock(&dsd__redact_lock);
  return rc;
}

/* ------------------------------------------------------------- patterns */

static int dsd__is_value_end(char c) {
  return c == '\0' || c == '&' || c == ' ' || c == '\t' || c == '\r' ||
         c == '\n' || c == '"' || c == '\'' || c == ',' || c == ';' || c == '>';
}

/* Returns the length of the prefix of p that a pattern says is followed by a
 * secret, and sets *kind: 1 header value (to end of line), 2 query/conninfo
 * value (to a delimiter), 0 none. */
static size_t dsd__secret_prefix(const char *p, int *kind) {
  static const char *headers[] = {"authorization:", "proxy-authorization:",
                                  "x-amz-security-token:", "cookie:",
                                  "set-cookie:", NULL};
  static const char *params[] = {"x-amz-signature=", "x-amz-credential=",
                                 "x-amz-security-token=", "password=",
                                 "pgpassword=", "mysql_pwd=", "passwd=",
                                 "secret=", "token=", NULL};
  for (int i = 0; headers[i]; i++) {
    size_t n = strlen(headers[i]);
    if (strncasecmp(p, headers[i], n) == 0) {
      *kind = 1;
      return n;
    }
  }
  for (int i = 0; params[i]; i++) {
    size_t n = strlen(params[i]);
    if (strncasecmp(p, params[i], n) == 0) {
      *kind = 2;
      return n;
    }
  }
  *kind = 0;
  return 0;
}

/* At a "://" in a URI: the length of "user:" in "user:password@host" when a
 * password is there, else 0; *pwlen gets the password's length. */
static size_t dsd__uri_userinfo(const char *p, size_t *pwlen) {
  const char *at = NULL;
  const char *colon = NULL;
  for (const char *q = p; *q; q++) {
    if (*q == '@') at = q; /* the last '@' before the host ends userinfo */
    else if (*q == '/' || *q == '?' || *q == '#' || isspace((unsigned char)*q) ||
             *q == '"' || *q == '\'')
      break;
  }
  if (at == NULL) return 0;
  for (const char *q = p; q < at; q++) {
    if (*q == ':') {
      colon = q;
      break;
    }
  }
  if (colon == NULL || colon + 1 == at) return 0;
  *pwlen = (size_t)(at - colon - 1);
  return (size_t)(colon - p + 1);
}

/* A JSON member name (just read, between quotes) that holds a secret. */
static int dsd__secret_member(const char *name, size_t len) {
  static const char *words[] = {"password", "passwd", "secret", "token",
                                "salt", "private_key", NULL};
  char low[64];
  if (len >= sizeof(low)) return 0;
  for (size_t i = 0; i < len; i++) low[i] = (char)tolower((unsigned char)name[i]);
  low[len] = '\0';
  for (int i = 0; words[i]; i++)
    if (strstr(low, words[i])) return 1;
  return 0;
}

static int dsd__redact_patterns(const char *in, dsd_buf_t *out) {
  const char *p = in;
  int rc = 0;
  while (*p && rc == 0) {
    int kind;
    size_t n;
    if (p[0] == ':' && p[1] == '/' && p[2] == '/') {
      size_t pw = 0;
      size_t user = dsd__uri_userinfo(p + 3, &pw);
      if (user) {
        rc = dsd_buf_append(out, p, 3 + user);
        if (rc == 0) rc = dsd_buf_append_str(out, DSD_REDACTED);
        p += 3 + user + pw;
        continue;
      }
    }
    if ((p == in || !isalnum((unsigned char)p[-1])) &&
        (n = dsd__secret_prefix(p, &kind)) != 0) {
      rc = dsd_buf_append(out, p, n);
      p += n;
      if (kind == 1) {
        while (*p == ' ') rc = rc ? rc : dsd_buf_append_char(out, *p++);
        /* Keep the scheme word ("Bearer", "AWS4-HMAC-SHA256") for context. */
        const char *v = p;
        while (*v && *v != ' ' && *v != '\r' && *v != '\n') v++;
        if (*v == ' ' && v - p < 24) {
          rc = rc ? rc : dsd_buf_append(out, p, (size_t)(v - p + 1));
          p = v + 1;
        }
        while (*p && *p != '\r' && *p != '\n') p++;
      } else {
        if (*p == '\'') { /* conninfo quoting: password='a b' */
          p++;
          while (*p && *p != '\'') p += (*p == '\\' && p[1]) ? 2 : 1;
          if (*p) p++;
        } else {
          while (!dsd__is_value_end(*p)) p++;
        }
      }
      if (rc == 0) rc = dsd_buf_append_str(out, DSD_REDACTED);
      continue;
    }
    if (*p == '"') {
      /* A JSON member "name": "value" whose name says secret. */
      const char *q = p + 1;
      while (*q && *q != '"') q += (*q == '\\' && q[1]) ? 2 : 1;
      if (*q == '"' && dsd__secret_member(p + 1, (size_t)(q - p - 1))) {
        const char *v = q + 1;
        while (*v == ' ') v++;
        if (*v == ':') {
          v++;
          while (*v == ' ') v++;
          if (*v == '"') {
            const char *e = v + 1;
            while (*e && *e != '"') e += (*e == '\\' && e[1]) ? 2 : 1;
            rc = dsd_buf_append(out, p, (size_t)(v - p + 1));
            if (rc == 0) rc = dsd_buf_append_str(out, DSD_REDACTED);
            if (rc == 0 && *e == '"') rc = dsd_buf_append_char(out, '"');
            p = *e ? e + 1 : e;
            continue;
          }
        }
      }
    }
    rc = dsd_buf_append_char(out, *p++);
  }
  return rc;
}

char *dsd_redact(const char *in) {
  dsd_buf_t a = DSD_BUF_INIT, b = DSD_BUF_INIT;
  char *res = NULL;
  if (in == NULL) in = "";
  if (dsd__redact_registered(in, &a) != 0) goto cleanup;
  if (dsd__redact_patterns(a.data ? a.data : "", &b) != 0) goto cleanup;
  res = dsd_buf_steal(&b);
cleanup:
  dsd_buf_free(&a);
  dsd_buf_free(&b);
  return res;
}

char *dsd_redact_into(const char *in, char *out, size_t outlen) {
  if (outlen == 0) return out;
  char *r = dsd_redact(in);
  if (r == NULL) {
    snprintf(out, outlen, "%s", DSD_REDACTED); /* never fall back to raw text */
  } else {
    snprintf(out, outlen, "%s", r);
    free(r);
  }
  return out;
}

/* -------------------------------------------------------------- logging */

void dsd_logv(dsd_log_level_t level, const char *fmt, va_list ap) {
  static const char *names[] = {"DEBUG", "INFO ", "WARN ", "ERROR"};
  if (level < dsd__level) return;
  char msg[4096];
  vsnprintf(msg, sizeof(msg), fmt, ap);
  char *clean = dsd_redact(msg);
  struct timeval tv;
  gettimeofday(&tv, NULL);
  struct tm tm;
  gmtime_r(&tv.tv_sec, &tm);
  char line[4400];
  int n = snprintf(line, sizeof(line), "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ %s %s\n",
                   tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
                   tm.tm_min, tm.tm_sec, (int)(tv.tv_usec / 1000), names[level],
                   clean ? clean : DSD_REDACTED);
  free(clean);
  if (n < 0) return;
  if ((size_t)n >= sizeof(line)) {
    n = sizeof(line) - 1;
    line[n - 1] = '\n';
  }
  ssize_t w = write(dsd__log_fd, line, (size_t)n);
  (void)w;
}

void dsd_log(dsd_log_level_t level, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  dsd_logv(level, fmt, ap);
  va_end(ap);
}
