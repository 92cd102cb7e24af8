/*
 * error.h - error codes and error contexts.
 *
 * Every fallible function in dsd returns 0 on success or a negative DSD_E*
 * code from the table below. The human-readable detail (what failed, what to
 * change) lives in a dsd_err_t owned by the caller's job or context, never in
 * a global. The first error set on a context wins: later failures caused by
 * the first one (a close after a failed write, say) do not overwrite it.
 *
 * Messages are lower case without final punctuation; a hint starts "HINT: ".
 * dsd_err_set() passes the message through the log redactor, so a secret that
 * slipped into a formatted message is replaced by <redacted> before it can
 * reach a last_operation description or a log.
 */
#ifndef DSD_CORE_ERROR_H
#define DSD_CORE_ERROR_H

#include <stdarg.h>
#include <stddef.h>

/* XX(NAME, number, description) */
#define DSD_ERRNO_MAP(XX)                                            \
  XX(EINVAL, -1, "invalid argument")                                 \
  XX(ENOMEM, -2, "out of memory")                                    \
  XX(EIO, -3, "i/o error")                                           \
  XX(ENOTFOUND, -4, "not found")                                     \
  XX(EEXIST, -5, "already exists")                                   \
  XX(ECONFLICT, -6, "conflict")                                      \
  XX(EAUTH, -7, "authentication failed")                             \
  XX(EDENIED, -8, "access denied")                                   \
  XX(ENET, -9, "network error")                                      \
  XX(ETIMEDOUT, -10, "timed out")                                    \
  XX(ECANCELED, -11, "canceled")                                     \
  XX(EPROTO, -12, "protocol error")                                  \
  XX(EUNSUPPORTED, -13, "not supported")                             \
  XX(EDB, -14, "database error")                                     \
  XX(ECONFIG, -15, "configuration error")                            \
  XX(ETOOBIG, -16, "too large")                                      \
  XX(EBUSY, -17, "operation in progress")                            \
  XX(EINTERNAL, -18, "internal error")

typedef enum {
  DSD_OK = 0,
#define DSD__ERR_ENUM(name, num, desc) DSD_##name = (num),
  DSD_ERRNO_MAP(DSD__ERR_ENUM)
#undef DSD__ERR_ENUM
} dsd_errno_t;

/* Static description of an error code; never NULL. */
const char *dsd_strerror(int code);
/* Static symbolic name of an error code ("EINVAL"); never NULL. */
const char *dsd_err_name(int code);

#define DSD_ERR_MSG_MAX 1024

/* An error context: the code and message of the first failure. Zero it (or
 * call dsd_err_clear) before use. It owns no heap memory. */
typedef struct dsd_err {
  int code;
  char msg[DSD_ERR_MSG_MAX];
} dsd_err_t;

void dsd_err_clear(dsd_err_t *err);

/* Records code and a printf-style message if err holds no error yet, and
 * returns code either way, so that "return dsd_err_set(err, DSD_EIO, ...)"
 * reads naturally. err may be NULL. The message is redacted. */
int dsd_err_set(dsd_err_t *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
int dsd_err_setv(dsd_err_t *err, int code, const char *fmt, va_list ap);

/* Prefixes the existing message with "context: " (for adding where an error
 * happened as it travels up). No-op when err holds no error. */
void dsd_err_prefix(dsd_err_t *err, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* The message, or dsd_strerror(code) when no message was given. */
const char *dsd_err_msg(const dsd_err_t *err);

#endif
