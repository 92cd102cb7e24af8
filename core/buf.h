/*
 * buf.h - a growable byte buffer.
 *
 * dsd_buf_t owns its data. It always keeps a NUL after len bytes so a buffer
 * of text can be used as a C string. Append functions return 0 or DSD_ENOMEM;
 * after a failed append the buffer is unchanged.
 */
#ifndef DSD_CORE_BUF_H
#define DSD_CORE_BUF_H

#include <stdarg.h>
#include <stddef.h>

typedef struct dsd_buf {
  char *data; /* NULL until the first append; then NUL-terminated */
  size_t len;
  size_t cap;
} dsd_buf_t;

#define DSD_BUF_INIT {NULL, 0, 0}

void dsd_buf_init(dsd_buf_t *b);
void dsd_buf_free(dsd_buf_t *b);
/* Empties the buffer but keeps its memory. */
void dsd_buf_reset(dsd_buf_t *b);
int dsd_buf_reserve(dsd_buf_t *b, size_t extra);
int dsd_buf_append(dsd_buf_t *b, const void *data, size_t len);
int dsd_buf_append_str(dsd_buf_t *b, const char *s);
/* Inline: the common case (room left) is a store, not a call. */
static inline int dsd_buf_append_char(dsd_buf_t *b, char c) {
  if (b->len + 1 < b->cap) {
    b->data[b->len++] = c;
    b->data[b->len] = '\0';
    return 0;
  }
  return dsd_buf_append(b, &c, 1);
}
int dsd_buf_printf(dsd_buf_t *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
int dsd_buf_vprintf(dsd_buf_t *b, const char *fmt, va_list ap);
/* Removes the first n bytes (n <= len). */
void dsd_buf_consume(dsd_buf_t *b, size_t n);
/* Returns the data (caller owns, free()) and leaves b empty. Never NULL
 * unless out of memory: an empty buffer gives "". */
char *dsd_buf_steal(dsd_buf_t *b);

#endif
