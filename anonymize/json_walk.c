/*
 * json_walk.c - anonymize values inside a json/jsonb column.
 *
 * A small recursive-descent reader copies the document text to the output
 * and rewrites only the values a rule selects: those its "path" names, or
 * every string value when the rule has no path (hash, allow-list default).
 * Everything else, numbers and whitespace included, is copied byte for
 * byte, so no number loses precision to a double and key order stays.
 *
 * Target values by JSON type:
 *  - string: the strategy applies to the unescaped text as unbounded text
 *    and the result is written back as a JSON string; a value the strategy
 *    cannot read (date_shift on "abc") becomes null so it cannot leak;
 *  - number: noise, digits/phone and hash (digits) keep it a number; any
 *    other strategy makes it null;
 *  - object/array: null and constant replace it whole; other strategies
 *    apply to every leaf inside (numbers inside are kept by hash);
 *  - true/false/null: kept.
 * A path name step met on an array applies to every element (as mongo's
 * dotted paths do).
 */
#include "anonymize/anon_internal.h"

#include <string.h>

#define JSON_MAX_DEPTH 256

typedef struct jw {
  const dsd__anon_ctx_t *c;
  const struct dsd__anon_rule *rule;
  const char *s;
  size_t len;
  size_t pos;
  int depth;
  dsd_buf_t *out;
  dsd_buf_t str; /* an unescaped string */
  dsd_buf_t res; /* a transformed value */
} jw_t;

static void ws(jw_t *w) {
  while (w->pos < w->len && (w->s[w->pos] == ' ' || w->s[w->pos] == '\t' ||
                             w->s[w->pos] == '\n' || w->s[w->pos] == '\r')) {
    w->pos++;
  }
}

/* Copies whitespace through to the output. */
static int ws_copy(jw_t *w) {
  size_t b = w->pos;
  ws(w);
  return w->pos > b ? dsd_buf_append(w->out, w->s + b, w->pos - b) : 0;
}

static int put_utf8(dsd_buf_t *b, unsigned long cp) {
  char u[4];
  size_t n;
  if (cp < 0x80) {
    u[0] = (char)cp;
    n = 1;
  } else if (cp < 0x800) {
    u[0] = (char)(0xc0 | (cp >> 6));
    u[1] = (char)(0x80 | (cp & 0x3f));
    n = 2;
  } else if (cp < 0x10000) {
    u[0] = (char)(0xe0 | (cp >> 12));
    u[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
    u[2] = (char)(0x80 | (cp & 0x3f));
    n = 3;
  } else {
    u[0] = (char)(0xf0 | (cp >> 18));
    u[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
    u[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
    u[3] = (char)(0x80 | (cp & 0x3f));
    n = 4;
  }
  return dsd_buf_append(b, u, n);
}

static int hex4(const char *p, unsigned long *v) {
  *v = 0;
  for (int i = 0; i < 4; i++) {
    char ch = p[i];
    int d = ch >= '0' && ch <= '9'   ? ch - '0'
            : ch >= 'a' && ch <= 'f' ? ch - 'a' + 10
            : ch >= 'A' && ch <= 'F' ? ch - 'A' + 10
                                     : -1;
    if (d < 0) return DSD_EINVAL;
    *v = *v * 16 + (unsigned long)d;
  }
  return 0;
}

/* Reads a string at pos (on its quote); unescaped into dst when not NULL. */
static int read_string(jw_t *w, dsd_buf_t *dst) {
  int rc = 0;
  if (dst) dsd_buf_reset(dst);
  if (w->pos >= w->len || w->s[w->pos] != '"') return DSD_EINVAL;
  w->pos++;
  while (w->pos < w->len) {
    unsigned char ch = (unsigned char)w->s[w->pos];
    if (ch == '"') {
      w->pos++;
      return 0;
    }
    if (ch < 0x20) return DSD_EINVAL;
    if (ch != '\\') {
      size_t b = w->pos;
      while (w->pos < w->len && w->s[w->pos] != '"' && w->s[w->pos] != '\\' &&
             (unsigned char)w->s[w->pos] >= 0x20) {
        w->pos++;
      }
      if (dst) rc = dsd_buf_append(dst, w->s + b, w->pos - b);
      if (rc < 0) return rc;
      continue;
    }
    if (w->pos + 1 >= w->len) return DSD_EINVAL;
    ch = (unsigned char)w->s[w->pos + 1];
    w->pos += 2;
    if (ch == 'u') {
      unsigned long cp, lo;
      if (w->pos + 4 > w->len || hex4(w->s + w->pos, &cp) < 0) return DSD_EINVAL;
      w->pos += 4;
      if (cp >= 0xd800 && cp < 0xdc00 && w->pos + 6 <= w->len && w->s[w->pos] == '\\' &&
          w->s[w->pos + 1] == 'u' && hex4(w->s + w->pos + 2, &lo) == 0 && lo >= 0xdc00 &&
          lo < 0xe000) {
        cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
        w->pos += 6;
      } else if (cp >= 0xd800 && cp < 0xe000) {
        cp = 0xfffd; /* a lone surrogate is not text */
      }
      if (dst) rc = put_utf8(dst, cp);
    } else {
      char e;
      switch (ch) {
      case '"': e = '"'; break;
      case '\\': e = '\\'; break;
      case '/': e = '/'; break;
      case 'b': e = '\b'; break;
      case 'f': e = '\f'; break;
      case 'n': e = '\n'; break;
      case 'r': e = '\r'; break;
      case 't': e = '\t'; break;
      default: return DSD_EINVAL;
      }
      if (dst) rc = dsd_buf_append_char(dst, e);
    }
    if (rc < 0) return rc;
  }
  return DSD_EINVAL;
}

static int write_string(dsd_buf_t *out, const char *s, size_t len) {
  int rc = dsd_buf_append_char(out, '"');
  for (size_t i = 0; rc == 0 && i < len; i++) {
    unsigned char ch = (unsigned char)s[i];
    if (ch == '"' || ch == '\\') {
      char e[2] = {'\\', (char)ch};
      rc = dsd_buf_append(out, e, 2);
    } else if (ch < 0x20) {
      rc = dsd_buf_printf(out, "\\u%04x", ch);
    } else {
      rc = dsd_buf_append_char(out, (char)ch);
    }
  }
  return rc == 0 ? dsd_buf_append_char(out, '"') : rc;
}

static int read_number(jw_t *w) {
  size_t b = w->pos;
  if (w->pos < w->len && w->s[w->pos] == '-') w->pos++;
  if (w->pos >= w->len || w->s[w->pos] < '0' || w->s[w->pos] > '9') return DSD_EINVAL;
  if (w->s[w->pos] == '0') {
    w->pos++;
  } else {
    while (w->pos < w->len && w->s[w->pos] >= '0' && w->s[w->pos] <= '9') w->pos++;
  }
  if (w->pos < w->len && w->s[w->pos] == '.') {
    w->pos++;
    if (w->pos >= w->len || w->s[w->pos] < '0' || w->s[w->pos] > '9') return DSD_EINVAL;
    while (w->pos < w->len && w->s[w->pos] >= '0' && w->s[w->pos] <= '9') w->pos++;
  }
  if (w->pos < w->len && (w->s[w->pos] == 'e' || w->s[w->pos] == 'E')) {
    w->pos++;
    if (w->pos < w->len && (w->s[w->pos] == '+' || w->s[w->pos] == '-')) w->pos++;
    if (w->pos >= w->len || w->s[w->pos] < '0' || w->s[w->pos] > '9') return DSD_EINVAL;
    while (w->pos < w->len && w->s[w->pos] >= '0' && w->s[w->pos] <= '9') w->pos++;
  }
  return w->pos > b ? 0 : DSD_EINVAL;
}

static int read_literal(jw_t *w) {
  static const char *const lits[] = {"true", "false", "null"};
  for (int i = 0; i < 3; i++) {
    size_t n = strlen(lits[i]);
    if (w->len - w->pos >= n && memcmp(w->s + w->pos, lits[i], n) == 0) {
      w->pos += n;
      return 0;
    }
  }
  return DSD_EINVAL;
}

/* Skips one value (validating it) without writing anything. */
static int skip_value(jw_t *w) {
  int rc = 0;
  ws(w);
  if (w->pos >= w->len) return DSD_EINVAL;
  switch (w->s[w->pos]) {
  case '"': return read_string(w, NULL);
  case '{':
  case '[': {
    char close = w->s[w->pos] == '{' ? '}' : ']';
    bool obj = close == '}';
    if (++w->depth > JSON_MAX_DEPTH) return DSD_EINVAL;
    w->pos++;
    ws(w);
    if (w->pos < w->len && w->s[w->pos] == close) {
      w->pos++;
      w->depth--;
      return 0;
    }
    for (;;) {
      if (obj) {
        ws(w);
        rc = read_string(w, NULL);
        if (rc < 0) return rc;
        ws(w);
        if (w->pos >= w->len || w->s[w->pos] != ':') return DSD_EINVAL;
        w->pos++;
      }
      rc = skip_value(w);
      if (rc < 0) return rc;
      ws(w);
      if (w->pos >= w->len) return DSD_EINVAL;
      if (w->s[w->pos] == ',') {
        w->pos++;
        continue;
      }
      if (w->s[w->pos] != close) return DSD_EINVAL;
      w->pos++;
      w->depth--;
      return 0;
    }
  }
  case 't':
  case 'f':
  case 'n': return read_literal(w);
  default: return read_number(w);
  }
}

static bool numeric_strategy(dsd__anon_strategy_t s) {
  return s == DSD__ANON_NOISE || s == DSD__ANON_DIGITS || s == DSD__ANON_PHONE ||
         s == DSD__ANON_HASH || s == DSD__ANON_AUTO;
}

/* Transforms the leaf at pos. deep: reached inside a target container. */
static int leaf(jw_t *w, bool deep) {
  const struct dsd__anon_rule *rule = w->rule;
  size_t b = w->pos;
  int rc;

  if (rule->strategy == DSD__ANON_NULL || rule->strategy == DSD__ANON_CONSTANT) {
    rc = skip_value(w);
    if (rc < 0) return rc;
    if (rule->strategy == DSD__ANON_CONSTANT && rule->value != NULL) {
      return write_string(w->out, rule->value, rule->value_len);
    }
    return dsd_buf_append_str(w->out, "null");
  }
  if (w->s[w->pos] == '"') {
    dsd_anon_type_t text = {.kind = DSD_ANON_TEXT, .scale = -1};
    rc = read_string(w, &w->str);
    if (rc < 0) return rc;
    if (rule->strategy == DSD__ANON_NOISE) {
      dsd_anon_type_t num = {.kind = DSD_ANON_NUMERIC, .scale = -1};
      text = num;
    }
    dsd_buf_reset(&w->res);
    rc = dsd__anon_scalar(w->c, rule, &text, w->str.data ? w->str.data : "", w->str.len,
                          &w->res);
    if (rc == DSD_EINVAL) return dsd_buf_append_str(w->out, "null");
    if (rc < 0) return rc;
    return write_string(w->out, w->res.data ? w->res.data : "", w->res.len);
  }
  if (w->s[w->pos] == '-' || (w->s[w->pos] >= '0' && w->s[w->pos] <= '9')) {
    dsd_anon_type_t num = {.kind = DSD_ANON_NUMERIC, .scale = -1};
    rc = read_number(w);
    if (rc < 0) return rc;
    if (!numeric_strategy(rule->strategy) ||
        (deep && (rule->strategy == DSD__ANON_HASH || rule->strategy == DSD__ANON_AUTO))) {
      if (deep) return dsd_buf_append(w->out, w->s + b, w->pos - b);
      return dsd_buf_append_str(w->out, "null");
    }
    dsd_buf_reset(&w->res);
    if (rule->strategy == DSD__ANON_NOISE) {
      rc = dsd__anon_scalar(w->c, rule, &num, w->s + b, w->pos - b, &w->res);
    } else {
      /* hash, digits, phone: JSON forbids leading zeros, so the leading
       * digit is kept nonzero as the hash of a numeric does. */
      struct dsd__anon_rule r = *rule;
      r.strategy = DSD__ANON_HASH;
      rc = dsd__anon_scalar(w->c, &r, &num, w->s + b, w->pos - b, &w->res);
    }
    if (rc == DSD_EINVAL) return dsd_buf_append_str(w->out, "null");
    if (rc < 0) return rc;
    return dsd_buf_append(w->out, w->res.data, w->res.len);
  }
  rc = read_literal(w);
  if (rc < 0) return rc;
  return dsd_buf_append(w->out, w->s + b, w->pos - b);
}

static bool key_matches(const dsd__anon_step_t *st, const dsd_buf_t *key) {
  return st->kind == DSD__PATH_NAME && strlen(st->name) == key->len &&
         memcmp(st->name, key->data ? key->data : "", key->len) == 0;
}

/* k: path steps matched so far (-1: off the path); deep: inside a target. */
static int value(jw_t *w, long k, bool deep) {
  const struct dsd__anon_rule *rule = w->rule;
  long nsteps = (long)rule->nsteps;
  size_t b;
  int rc = 0;

  rc = ws_copy(w);
  if (rc < 0) return rc;
  b = w->pos;
  if (w->pos >= w->len) return DSD_EINVAL;
  if (!deep && k < 0) {
    rc = skip_value(w);
    return rc < 0 ? rc : dsd_buf_append(w->out, w->s + b, w->pos - b);
  }
  if (!deep && k == nsteps) {
    /* The target itself. */
    if (rule->strategy == DSD__ANON_KEEP) {
      rc = skip_value(w);
      return rc < 0 ? rc : dsd_buf_append(w->out, w->s + b, w->pos - b);
    }
    if (w->s[w->pos] != '{' && w->s[w->pos] != '[') return leaf(w, false);
    if (rule->strategy == DSD__ANON_NULL || rule->strategy == DSD__ANON_CONSTANT) {
      return leaf(w, false);
    }
    deep = true;
  }
  if (w->s[w->pos] == '{' || w->s[w->pos] == '[') {
    bool obj = w->s[w->pos] == '{';
    char close = obj ? '}' : ']';
    size_t idx = 0;
    if (++w->depth > JSON_MAX_DEPTH) return DSD_EINVAL;
    w->pos++;
    rc = dsd_buf_append_char(w->out, obj ? '{' : '[');
    if (rc == 0) rc = ws_copy(w);
    if (rc < 0) return rc;
    if (w->pos < w->len && w->s[w->pos] == close) {
      w->pos++;
      w->depth--;
      return dsd_buf_append_char(w->out, close);
    }
    for (;; idx++) {
      long nk = k;
      if (obj) {
        size_t kb;
        rc = ws_copy(w);
        kb = w->pos;
        if (rc == 0) rc = read_string(w, deep ? NULL : &w->str);
        if (rc == 0) rc = dsd_buf_append(w->out, w->s + kb, w->pos - kb);
        if (rc == 0) rc = ws_copy(w);
        if (rc < 0) return rc;
        if (w->pos >= w->len || w->s[w->pos] != ':') return DSD_EINVAL;
        w->pos++;
        rc = dsd_buf_append_char(w->out, ':');
        if (rc < 0) return rc;
        if (!deep) nk = key_matches(&rule->steps[k], &w->str) ? k + 1 : -1;
      } else if (!deep) {
        const dsd__anon_step_t *st = &rule->steps[k];
        if (st->kind == DSD__PATH_ANY) {
          nk = k + 1;
        } else if (st->kind == DSD__PATH_INDEX) {
          nk = st->index == idx ? k + 1 : -1;
        } else {
          nk = k; /* a name step on an array: every element */
        }
      }
      rc = value(w, nk, deep);
      if (rc == 0) rc = ws_copy(w);
      if (rc < 0) return rc;
      if (w->pos >= w->len) return DSD_EINVAL;
      if (w->s[w->pos] == ',') {
        w->pos++;
        rc = dsd_buf_append_char(w->out, ',');
        if (rc < 0) return rc;
        continue;
      }
      if (w->s[w->pos] != close) return DSD_EINVAL;
      w->pos++;
      w->depth--;
      return dsd_buf_append_char(w->out, close);
    }
  }
  if (deep) return leaf(w, true);
  /* A scalar where the path wanted to go deeper: not selected. */
  rc = skip_value(w);
  return rc < 0 ? rc : dsd_buf_append(w->out, w->s + b, w->pos - b);
}

int dsd__anon_json(const dsd__anon_ctx_t *c, const struct dsd__anon_rule *rule,
                   const char *in, size_t len, dsd_buf_t *out) {
  jw_t w;
  int rc;

  memset(&w, 0, sizeof(w));
  w.c = c;
  w.rule = rule;
  w.s = in;
  w.len = len;
  w.out = out;
  dsd_buf_init(&w.str);
  dsd_buf_init(&w.res);
  rc = value(&w, 0, false);
  if (rc == 0) rc = ws_copy(&w);
  if (rc == 0 && w.pos != w.len) rc = DSD_EINVAL;
  dsd_buf_free(&w.str);
  dsd_buf_free(&w.res);
  return rc;
}
