/*
 * buf.c - a growable byte buffer (see buf.h).
 */
#include "core/buf.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"

void dsd_buf_init(dsd_buf_t *b) {
  b->data = NULL;
  b->len = 0;
  b->cap = 0;
}

void dsd_buf_free(dsd_buf_t *b) {
  free(b->data);
  dsd_buf_init(b);
}

void dsd_buf_reset(dsd_buf_t *b) {
  b->len = 0;
  if (b->data) b->data[0] = '\0';
}

int dsd_buf_reserve(dsd_buf_t *b, size_t extra) {
  if (extra > SIZE_MAX - b->len - 1) return DSD_ENOMEM;
  size_t need = b->len + extra + 1;
  if (need <= b->cap) return 0;
  size_t cap = b->cap ? b->cap : 64;
  while (cap < need) cap = cap > SIZE_MAX / 2 ? need : cap * 2;
  char *p = realloc(b->data, cap);
  if (p == NULL) return DSD_ENOMEM;
  if (b->data == NULL) p[0] = '\0';
  b->data = p;
  b->cap = cap;
  return 0;
}

int dsd_buf_append(dsd_buf_t *b, const void *data, size_t len) {
  int rc = dsd_buf_reserve(b, len);
  if (rc != 0) return rc;
  if (len) memcpy(b->data + b->len, data, len);
  b->len += len;
  b->data[b->len] = '\0';
  return 0;
}

int dsd_buf_append_str(dsd_buf_t *b, const char *s) {
  return dsd_buf_append(b, s, strlen(s));
}


int dsd_buf_vprintf(dsd_buf_t *b, const char *fmt, va_list ap) {
  va_list ap2;
  va_copy(ap2, ap);
  int n = vsnprintf(NULL, 0, fmt, ap2);
  va_end(ap2);
  if (n < 0) return DSD_EINVAL;
  int rc = dsd_buf_reserve(b, (size_t)n);
  if (rc != 0) return rc;
  vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
  b->len += (size_t)n;
  return 0;
}

int dsd_buf_printf(dsd_buf_t *b, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int rc = dsd_buf_vprintf(b, fmt, ap);
  va_end(ap);
  return rc;
}

void dsd_buf_consume(dsd_buf_t *b, size_t n) {
  if (n >= b->len) {
    dsd_buf_reset(b);
    return;
  }
  memmove(b->data, b->data + n, b->len - n);
  b->len -= n;
  b->data[b->len] = '\0';
}

char *dsd_buf_steal(dsd_buf_t *b) {
  char *p = b->data;
  if (p == NULL) p = strdup("");
  dsd_buf_init(b);
  return p;
}
