/*
 * log.h - logging with secret redaction.
 *
 * One line per event on stderr (or a file set by dsd_log_set_fd):
 *   2026-11-21T10:00:00.123Z INFO  message
 * Every line passes through dsd_redact() before it is written, so secrets
 * never reach a log even when a caller formats one in by mistake.
 *
 * Redaction has two parts:
 *  - registered secrets: exact strings (broker password, S3 secret key,
 *    per-dump salt, service-key passwords...) added with
 *    dsd_redact_register() and replaced wherever they appear;
 *  - patterns: Authorization / X-Amz-Security-Token / Cookie header values,
 *    the password in URIs (scheme://user:PASSWORD@host), password=... in
 *    libpq conninfo strings, X-Amz-Signature / X-Amz-Credential /
 *    X-Amz-Security-Token query parameters, and JSON members whose name
 *    contains "password", "secret" or "token".
 *
 * All functions are thread-safe. The registry lock is internal to log.c.
 */
#ifndef DSD_CORE_LOG_H
#define DSD_CORE_LOG_H

#include <stdarg.h>
#include <stddef.h>

typedef enum {
  DSD_LOG_DEBUG = 0,
  DSD_LOG_INFO = 1,
  DSD_LOG_WARN = 2,
  DSD_LOG_ERROR = 3,
} dsd_log_level_t;

#define DSD_REDACTED "<redacted>"

void dsd_log_set_level(dsd_log_level_t level);
/* Parses "debug", "info", "warn", "error"; returns DSD_EINVAL otherwise. */
int dsd_log_level_parse(const char *s, dsd_log_level_t *out);
/* Log destination; default 2 (stderr). The fd is borrowed. */
void dsd_log_set_fd(int fd);

void dsd_log(dsd_log_level_t level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void dsd_logv(dsd_log_level_t level, const char *fmt, va_list ap);

#define dsd_log_debug(...) dsd_log(DSD_LOG_DEBUG, __VA_ARGS__)
#define dsd_log_info(...) dsd_log(DSD_LOG_INFO, __VA_ARGS__)
#define dsd_log_warn(...) dsd_log(DSD_LOG_WARN, __VA_ARGS__)
#define dsd_log_error(...) dsd_log(DSD_LOG_ERROR, __VA_ARGS__)

/* Adds an exact string to the redact list (copied). Strings shorter than 4
 * bytes are ignored: redacting them would mangle ordinary text. */
void dsd_redact_register(const char *secret);
/* Removes a string added by dsd_redact_register (for per-job secrets). */
void dsd_redact_unregister(const char *secret);

/* Returns a malloc'd redacted copy of in (caller owns; free()), or NULL on
 * out-of-memory. */
char *dsd_redact(const char *in);

/* Redacts in into out (at most outlen bytes including the NUL; truncated if
 * longer). Returns out. */
char *dsd_redact_into(const char *in, char *out, size_t outlen);

#endif
