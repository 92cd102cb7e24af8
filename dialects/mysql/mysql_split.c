/*
 * mysql_split.c - splits a mysql client script into statements, one byte
 * at a time, so that the restore can feed an archive stream's chunks as
 * they come (a chunk may end inside a string, a comment or a delimiter).
 *
 * The lexical rules are those of the mysql command-line client (see
 * mysql.h): quotes with backslash escapes and doubled quotes, backquoted
 * identifiers, "-- " and "#" line comments, block comments (versioned
 * "/ *!" ones count as statement text: the server runs them), and DELIMITER
 * lines. Every state that needs to see the next byte to decide (a '/' that
 * may open a comment, a quote that may be doubled) is a state of its own,
 * so no lookahead across chunks is needed.
 */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "dialects/mysql/mysql.h"

typedef enum {
  S_NORMAL = 0,
  S_SQ,       /* in '...' */
  S_DQ,       /* in "..." */
  S_BQ,       /* in `...` */
  S_SQ_END,   /* a ' that closes the string unless another follows */
  S_DQ_END,
  S_BQ_END,
  S_LC,       /* line comment, to the newline */
  S_BC,       /* block comment */
  S_BC_STAR,  /* block comment, after a '*' */
  S_BC_OPEN,  /* just after the opening "/ *": a '!' makes it statement text */
  S_SLASH,    /* after a '/' that may open a comment */
  S_DASH,     /* after a '-' that may open a comment */
  S_DASH2,    /* after "--": a comment if blank space follows */
  S_DLINE,    /* on a DELIMITER line, to its end */
} dsd__split_state_t;

struct dsd__mysql_split {
  dsd__mysql_split_cb cb;
  void *data;
  dsd_buf_t cur;        /* bytes of the statement being read */
  dsd__split_state_t st;
  int esc;              /* the previous byte in a string was a backslash */
  int has_content;      /* something other than blank space and comments */
  size_t content_start; /* offset in cur of the first content byte */
  size_t dl_match;      /* content bytes matched against "delimiter" */
  int dl_possible;      /* the content so far may still be a DELIMITER line */
  char delim[16];
  size_t dlen, dmatch;  /* delimiter length; bytes of it matched */
  unsigned line;        /* current line (1-based) */
  unsigned stmt_line;   /* line of the statement's first content byte */
};

dsd__mysql_split_t *dsd__mysql_split_new(dsd__mysql_split_cb cb, void *data) {
  dsd__mysql_split_t *s = calloc(1, sizeof *s);
  if (s == NULL)
    return NULL;
  s->cb = cb;
  s->data = data;
  strcpy(s->delim, ";");
  s->dlen = 1;
  s->line = 1;
  s->dl_possible = 1;
  return s;
}

void dsd__mysql_split_free(dsd__mysql_split_t *s) {
  if (s == NULL)
    return;
  dsd_buf_free(&s->cur);
  free(s);
}

static void dsd__reset(dsd__mysql_split_t *s) {
  dsd_buf_reset(&s->cur);
  s->has_content = 0;
  s->content_start = 0;
  s->dl_match = 0;
  s->dl_possible = 1;
  s->dmatch = 0;
  s->st = S_NORMAL;
}

/* Marks the byte at offset off of cur as the statement's first content. */
static void dsd__content(dsd__mysql_split_t *s, size_t off) {
  if (!s->has_content) {
    s->has_content = 1;
    s->content_start = off;
    s->stmt_line = s->line;
  }
}

/* Reports cur[content_start .. end) as a statement, then starts afresh. */
static int dsd__emit(dsd__mysql_split_t *s, size_t end, dsd_err_t *err) {
  int rc = 0;
  if (s->has_content) {
    char *p = s->cur.data + s->content_start;
    size_t n = end - s->content_start;
    while (n > 0 && isspace((unsigned char)p[n - 1]))
      n--;
    if (n > 0) {
      char saved = p[n];
      p[n] = '\0';
      rc = s->cb(s->data, p, n, s->stmt_line, err);
      p[n] = saved;
    }
  }
  dsd__reset(s);
  return rc;
}

/* The DELIMITER line in cur is complete: take its new delimiter. */
static int dsd__delimiter_line(dsd__mysql_split_t *s, dsd_err_t *err) {
  const char *p = s->cur.data + s->content_start + 9, *e;
  const char *end = s->cur.data + s->cur.len;
  while (p < end && (*p == ' ' || *p == '\t'))
    p++;
  e = p;
  while (e < end && !isspace((unsigned char)*e))
    e++;
  if (e == p || (size_t)(e - p) >= sizeof s->delim)
    return dsd_err_set(err, DSD_EINVAL, "line %u: DELIMITER needs a delimiter of 1 to %zu "
                       "characters", s->stmt_line, sizeof s->delim - 1);
  memcpy(s->delim, p, (size_t)(e - p));
  s->delim[e - p] = '\0';
  s->dlen = (size_t)(e - p);
  dsd__reset(s);
  return 0;
}

/* Handles byte c (already appended to cur at offset off) in the normal
 * state. */
static int dsd__normal(dsd__mysql_split_t *s, char c, size_t off, dsd_err_t *err) {
  static const char kw[] = "delimiter";
  if (!s->has_content && isspace((unsigned char)c))
    return 0;
  if (c == s->delim[s->dmatch]) {
    dsd__content(s, off);
    if (++s->dmatch == s->dlen)
      return dsd__emit(s, off + 1 - s->dlen, err);
    return 0;
  }
  s->dmatch = c == s->delim[0] ? 1 : 0;
  switch (c) {
  case '\'': s->st = S_SQ; break;
  case '"': s->st = S_DQ; break;
  case '`': s->st = S_BQ; break;
  case '#': s->st = S_LC; return 0;
  case '/': s->st = S_SLASH; return 0;
  case '-': s->st = S_DASH; return 0;
  default: break;
  }
  dsd__content(s, off);
  /* "DELIMITER" then a blank at the start of a statement opens a
   * DELIMITER line, which the client (and this splitter) handles itself. */
  if (s->dl_possible) {
    if (s->dl_match < 9 && tolower((unsigned char)c) == kw[s->dl_match])
      s->dl_match++;
    else if (s->dl_match == 9 && (c == ' ' || c == '\t'))
      s->st = S_DLINE;
    else
      s->dl_possible = 0;
  }
  return 0;
}

static int dsd__byte(dsd__mysql_split_t *s, char c, dsd_err_t *err) {
  size_t off;
  int rc = 0;
  if (dsd_buf_append_char(&s->cur, c) < 0)
    return dsd_err_set(err, DSD_ENOMEM, "out of memory");
  off = s->cur.len - 1;
again:
  switch (s->st) {
  case S_NORMAL:
    rc = dsd__normal(s, c, off, err);
    break;
  case S_SQ:
  case S_DQ:
  case S_BQ:
    if (s->esc)
      s->esc = 0;
    else if (c == '\\' && s->st != S_BQ)
      s->esc = 1;
    else if (c == (s->st == S_SQ ? '\'' : s->st == S_DQ ? '"' : '`'))
      s->st = s->st == S_SQ ? S_SQ_END : s->st == S_DQ ? S_DQ_END : S_BQ_END;
    break;
  case S_SQ_END:
  case S_DQ_END:
  case S_BQ_END:
    if (c == (s->st == S_SQ_END ? '\'' : s->st == S_DQ_END ? '"' : '`')) {
      s->st = s->st == S_SQ_END ? S_SQ : s->st == S_DQ_END ? S_DQ : S_BQ;
      break;
    }
    s->st = S_NORMAL;
    goto again;
  case S_LC:
    if (c == '\n')
      s->st = S_NORMAL;
    break;
  case S_BC_OPEN:
    if (c == '!')
      dsd__content(s, off - 2);
    s->st = S_BC;
    goto again;
  case S_BC:
    if (c == '*')
      s->st = S_BC_STAR;
    break;
  case S_BC_STAR:
    if (c == '/')
      s->st = S_NORMAL;
    else if (c != '*')
      s->st = S_BC;
    break;
  case S_SLASH:
    if (c == '*') {
      s->st = S_BC_OPEN;
      break;
    }
    dsd__content(s, off - 1);
    s->dl_possible = 0;
    s->st = S_NORMAL;
    goto again;
  case S_DASH:
    if (c == '-') {
      s->st = S_DASH2;
      break;
    }
    dsd__content(s, off - 1);
    s->dl_possible = 0;
    s->st = S_NORMAL;
    goto again;
  case S_DASH2:
    if ((unsigned char)c <= ' ') {
      s->st = c == '\n' ? S_NORMAL : S_LC;
      break;
    }
    dsd__content(s, off - 2);
    s->dl_possible = 0;
    s->st = S_NORMAL;
    goto again;
  case S_DLINE:
    if (c == '\n')
      rc = dsd__delimiter_line(s, err);
    break;
  }
  if (c == '\n')
    s->line++;
  return rc;
}

/* Length of the run at p[0..n) that cannot change the state: the inside
 * of a string, or plain statement text. Most of a data stream is such runs,
 * so they are copied in bulk rather than byte by byte. */
static size_t dsd__plain_run(const dsd__mysql_split_t *s, const char *p, size_t n) {
  size_t j = 0;
  if ((s->st == S_SQ || s->st == S_DQ) && !s->esc) {
    char q = s->st == S_SQ ? '\'' : '"';
    while (j < n && p[j] != q && p[j] != '\\' && p[j] != '\n')
      j++;
  } else if (s->st == S_NORMAL && s->has_content && !s->dl_possible && s->dmatch == 0) {
    while (j < n) {
      char c = p[j];
      if (c == '\'' || c == '"' || c == '`' || c == '#' || c == '/' || c == '-' ||
          c == '\n' || c == s->delim[0])
        break;
      j++;
    }
  }
  return j;
}

int dsd__mysql_split_feed(dsd__mysql_split_t *s, const char *buf, size_t len,
                          dsd_err_t *err) {
  size_t i = 0;
  while (i < len) {
    size_t run = dsd__plain_run(s, buf + i, len - i);
    int rc;
    if (run > 0) {
      if (dsd_buf_append(&s->cur, buf + i, run) < 0)
        return dsd_err_set(err, DSD_ENOMEM, "out of memory");
      i += run;
      continue;
    }
    rc = dsd__byte(s, buf[i], err);
    if (rc != 0)
      return rc;
    i++;
  }
  return 0;
}

int dsd__mysql_split_finish(dsd__mysql_split_t *s, dsd_err_t *err) {
  switch (s->st) {
  case S_SQ:
  case S_DQ:
  case S_BQ:
    return dsd_err_set(err, DSD_EINVAL, "the script ends inside a quoted string or "
                       "identifier opened near line %u", s->stmt_line);
  case S_BC:
  case S_BC_STAR:
  case S_BC_OPEN:
    return dsd_err_set(err, DSD_EINVAL, "the script ends inside a block comment");
  case S_DLINE:
    return dsd__delimiter_line(s, err);
  case S_SLASH:
  case S_DASH:
    dsd__content(s, s->cur.len - 1);
    break;
  case S_DASH2:
    dsd__content(s, s->cur.len - 2);
    break;
  default:
    break;
  }
  return dsd__emit(s, s->cur.len, err);
}
