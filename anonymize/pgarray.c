/*
 * pgarray.c - anonymize the elements of a PostgreSQL array value.
 *
 * pg writes arrays in COPY text as literals: {a,b,"c d",NULL}, nested
 * braces for more dimensions, an optional "[1:3]=" bounds prefix. Each
 * element is unescaped, transformed with the element type, and written
 * back quoted when pg would need quotes. NULL elements stay NULL.
 */
#include "anonymize/anon_internal.h"

#include <ctype.h>
#include <strings.h>
#include <string.h>

#define ARRAY_MAX_DEPTH 6 /* pg's MAXDIM */

typedef struct pa {
  const dsd__anon_ctx_t *c;
  const struct dsd__anon_rule *rule;
  dsd_anon_type_t elem;
  const char *s;
  size_t len;
  size_t pos;
  dsd_buf_t *out;
  dsd_buf_t item;
  dsd_buf_t res;
} pa_t;

static bool needs_quotes(const char *s, size_t len) {
  if (len == 0) return true;
  if (len == 4 && strncasecmp(s, "null", 4) == 0) return true;
  for (size_t i = 0; i < len; i++) {
    char ch = s[i];
    if (ch == '{' || ch == '}' || ch == ',' || ch == '"' || ch == '\\' ||
        isspace((unsigned char)ch)) {
      return true;
    }
  }
  return false;
}

static int put_item(dsd_buf_t *out, const char *s, size_t len) {
  int rc;
  if (!needs_quotes(s, len)) return dsd_buf_append(out, s, len);
  rc = dsd_buf_append_char(out, '"');
  for (size_t i = 0; rc == 0 && i < len; i++) {
    if (s[i] == '"' || s[i] == '\\') rc = dsd_buf_append_char(out, '\\');
    if (rc == 0) rc = dsd_buf_append_char(out, s[i]);
  }
  return rc == 0 ? dsd_buf_append_char(out, '"') : rc;
}

static void skip_ws(pa_t *a) {
  while (a->pos < a->len && isspace((unsigned char)a->s[a->pos])) a->pos++;
}

/* One element at pos: quoted or not; NULL when unquoted NULL. */
static int element(pa_t *a) {
  bool quoted = false;
  int rc = 0;

  dsd_buf_reset(&a->item);
  skip_ws(a);
  if (a->pos < a->len && a->s[a->pos] == '"') {
    quoted = true;
    a->pos++;
    for (;;) {
      if (a->pos >= a->len) return DSD_EINVAL;
      char ch = a->s[a->pos++];
      if (ch == '"') break;
      if (ch == '\\') {
        if (a->pos >= a->len) return DSD_EINVAL;
        ch = a->s[a->pos++];
      }
      rc = dsd_buf_append_char(&a->item, ch);
      if (rc < 0) return rc;
    }
    skip_ws(a);
  } else {
    size_t trail = 0;
    while (a->pos < a->len && a->s[a->pos] != ',' && a->s[a->pos] != '}') {
      char ch = a->s[a->pos++];
      if (ch == '{' || ch == '"') return DSD_EINVAL;
      if (ch == '\\') {
        if (a->pos >= a->len) return DSD_EINVAL;
        ch = a->s[a->pos++];
        trail = 0;
      } else {
        trail = isspace((unsigned char)ch) ? trail + 1 : 0;
      }
      rc = dsd_buf_append_char(&a->item, ch);
      if (rc < 0) return rc;
    }
    /* Unquoted trailing whitespace is not part of the element. */
    a->item.len -= trail < a->item.len ? trail : a->item.len;
    if (a->item.data) a->item.data[a->item.len] = '\0';
    if (a->item.len == 0) return DSD_EINVAL;
  }
  if (!quoted && a->item.len == 4 && strncasecmp(a->item.data, "null", 4) == 0) {
    return dsd_buf_append_str(a->out, "NULL");
  }
  dsd_buf_reset(&a->res);
  if (a->elem.kind == DSD_ANON_JSON) {
    rc = dsd__anon_json(a->c, a->rule, a->item.data ? a->item.data : "", a->item.len,
                        &a->res);
  } else {
    rc = dsd__anon_scalar(a->c, a->rule, &a->elem, a->item.data ? a->item.data : "",
                          a->item.len, &a->res);
  }
  if (rc < 0) return rc;
  return put_item(a->out, a->res.data ? a->res.data : "", a->res.len);
}

static int list(pa_t *a, int depth) {
  int rc;
  if (depth > ARRAY_MAX_DEPTH) return DSD_EINVAL;
  skip_ws(a);
  if (a->pos >= a->len || a->s[a->pos] != '{') return DSD_EINVAL;
  a->pos++;
  rc = dsd_buf_append_char(a->out, '{');
  if (rc < 0) return rc;
  skip_ws(a);
  if (a->pos < a->len && a->s[a->pos] == '}') {
    a->pos++;
    return dsd_buf_append_char(a->out, '}');
  }
  for (;;) {
    skip_ws(a);
    if (a->pos < a->len && a->s[a->pos] == '{') {
      rc = list(a, depth + 1);
      skip_ws(a);
    } else {
      rc = element(a);
    }
    if (rc < 0) return rc;
    if (a->pos >= a->len) return DSD_EINVAL;
    if (a->s[a->pos] == ',') {
      a->pos++;
      rc = dsd_buf_append_char(a->out, ',');
      if (rc < 0) return rc;
      continue;
    }
    if (a->s[a->pos] != '}') return DSD_EINVAL;
    a->pos++;
    return dsd_buf_append_char(a->out, '}');
  }
}

int dsd__anon_pgarray(const dsd__anon_ctx_t *c, const struct dsd__anon_rule *rule,
                      const dsd_anon_type_t *type, const char *in, size_t len,
                      dsd_buf_t *out) {
  pa_t a;
  int rc = 0;

  memset(&a, 0, sizeof(a));
  a.c = c;
  a.rule = rule;
  a.elem = *type;
  a.elem.kind = type->elem == DSD_ANON_ARRAY ? DSD_ANON_OTHER : type->elem;
  a.s = in;
  a.len = len;
  a.out = out;
  dsd_buf_init(&a.item);
  dsd_buf_init(&a.res);
  if (len > 0 && in[0] == '[') {
    /* Bounds decoration "[1:3][0:1]=" is copied as is. */
    const char *eq = memchr(in, '=', len);
    if (eq == NULL) {
      rc = DSD_EINVAL;
      goto cleanup;
    }
    a.pos = (size_t)(eq - in) + 1;
    rc = dsd_buf_append(out, in, a.pos);
    if (rc < 0) goto cleanup;
  }
  rc = list(&a, 1);
  if (rc < 0) goto cleanup;
  skip_ws(&a);
  if (a.pos != len) rc = DSD_EINVAL;
cleanup:
  dsd_buf_free(&a.item);
  dsd_buf_free(&a.res);
  return rc;
}
