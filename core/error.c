/*
 * error.c - error codes (DSD_ERRNO_MAP) and error contexts.
 *
 * See error.h: the first error set on a context wins, and every message is
 * redacted before it is stored.
 */
#include "core/error.h"

#include <stdio.h>
#include <string.h>

#include "core/log.h"

const char *dsd_strerror(int code) {
  switch (code) {
    case DSD_OK:
      return "success";
#define DSD__ERR_DESC(name, num, desc) \
  case DSD_##name:                     \
    return desc;
      DSD_ERRNO_MAP(DSD__ERR_DESC)
#undef DSD__ERR_DESC
    default:
      return "unknown error";
  }
}

const char *dsd_err_name(int code) {
  switch (code) {
    case DSD_OK:
      return "OK";
#define DSD__ERR_NAME(name, num, desc) \
  case DSD_##name:                     \
    return #name;
      DSD_ERRNO_MAP(DSD__ERR_NAME)
#undef DSD__ERR_NAME
    default:
      return "EUNKNOWN";
  }
}

void dsd_err_clear(dsd_err_t *err) {
  if (err == NULL) return;
  err->code = 0;
  err->msg[0] = '\0';
}

int dsd_err_setv(dsd_err_t *err, int code, const char *fmt, va_list ap) {
  if (err == NULL || err->code != 0) return code;
  char raw[DSD_ERR_MSG_MAX];
  vsnprintf(raw, sizeof(raw), fmt, ap);
  err->code = code;
  dsd_redact_into(raw, err->msg, sizeof(err->msg));
  return code;
}

int dsd_err_set(dsd_err_t *err, int code, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  dsd_err_setv(err, code, fmt, ap);
  va_end(ap);
  return code;
}

void dsd_err_prefix(dsd_err_t *err, const char *fmt, ...) {
  if (err == NULL || err->code == 0) return;
  char prefix[DSD_ERR_MSG_MAX];
  char joined[2 * DSD_ERR_MSG_MAX + 2];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(prefix, sizeof(prefix), fmt, ap);
  va_end(ap);
  snprintf(joined, sizeof(joined), "%s: %s", prefix, dsd_err_msg(err));
  dsd_redact_into(joined, err->msg, sizeof(err->msg));
}

const char *dsd_err_msg(const dsd_err_t *err) {
  if (err == NULL) return "";
  if (err->msg[0] != '\0') return err->msg;
  return dsd_strerror(err->code);
}
