/*
 * sqlsplit.c - incremental psql script splitter (see sqlsplit.h).
 *
 * A byte-at-a-time state machine, so that a chunk boundary may fall
 * anywhere: every lookahead psql's lexer does (the second '-' of "--", the
 * second quote of "''", the closing tag of a dollar quote) is a state of
 * its own here instead of a peek at the next byte. The statement being
 * built is the only thing buffered; comments and blank space between
 * statements are dropped as they come.
 */
#include "dialects/pg/sqlsplit.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/buf.h"

/* ------------------------------------------------------------------ */
/* State                                                               */
/* ------------------------------------------------------------------ */

typedef enum {
  ST_NORMAL,
  ST_DASH,          /* saw '-': a comment if the next byte is '-' */
  ST_SLASH,         /* saw '/': a comment if the next byte is '*' */
  ST_LINE_COMMENT,
  ST_BLOCK,
  ST_BLOCK_STAR,    /* in a block comment, saw '*' */
  ST_BLOCK_SLASH,   /* in a block comment, saw '/' */
  ST_SQUOTE,
  ST_SQUOTE_END,    /* saw ' in '...': '' continues the string */
  ST_EQUOTE,
  ST_EQUOTE_BS,     /* saw a backslash in E'...' */
  ST_EQUOTE_END,
  ST_DQUOTE,
  ST_DQUOTE_END,
  ST_DOLLAR_TAG,    /* saw '$' and maybe a tag: a dollar quote if '$' ends it */
  ST_DOLLAR,        /* inside $tag$ ... */
  ST_META,          /* a backslash line */
} dsd__sql_state_t;

#define DSD__WORD_MAX 16
#define DSD__TAG_MAX 256
#define DSD__COMMENT_MAX 512
#define DSD__OBJECT_MAX 512

struct dsd_sqlsplit {
  dsd_sqlsplit_cb cb;
  void *data;
  dsd__sql_state_t st;
  dsd_buf_t stmt;       /* the statement (or meta line) being built */
  unsigned line;        /* current line, 1-based */
  unsigned stmt_line;   /* line where stmt started */
  unsigned long count;
  int paren;
  /* The word being read, for E'' detection and BEGIN ATOMIC tracking. */
  int in_word;
  int word_number;      /* the word started with a digit: a number */
  char word[DSD__WORD_MAX];
  size_t word_len;      /* may exceed DSD__WORD_MAX: then only counted */
  /* psql's heuristic for CREATE FUNCTION ... BEGIN ATOMIC ... END. */
  char identifiers[4];
  unsigned identifier_count;
  int begin_depth;
  /* Dollar quote tag and how much of "$tag$" has matched in the body. */
  char tag[DSD__TAG_MAX];
  size_t tag_len;
  size_t match;
  int block_depth;
  int comment_skip;     /* the comment is outside a statement: drop it */
  char comment[DSD__COMMENT_MAX];
  size_t comment_len;
  char object[DSD__OBJECT_MAX];
  int have_object;
};

/* ------------------------------------------------------------------ */
/* Helpers                                                             */
/* ------------------------------------------------------------------ */

static int is_ident_start(unsigned char c) {
  return isalpha(c) || c == '_' || c >= 0x80;
}

static int is_ident_cont(unsigned char c) {
  return isalnum(c) || c == '_' || c == '$' || c >= 0x80;
}

static int is_dolq_cont(unsigned char c) {
  return isalnum(c) || c == '_' || c >= 0x80;
}

static int append(dsd_sqlsplit_t *s, char c) {
  if (s->stmt.len == 0) s->stmt_line = s->line;
  return dsd_buf_append_char(&s->stmt, c);
}

static void reset_statement(dsd_sqlsplit_t *s) {
  dsd_buf_reset(&s->stmt);
  s->paren = 0;
  s->identifier_count = 0;
  s->begin_depth = 0;
  memset(s->identifiers, 0, sizeof(s->identifiers));
}

/* Mirrors psql's psqlscan.l: semicolons between BEGIN and END of a
 * CREATE [OR REPLACE] FUNCTION|PROCEDURE do not end the statement. */
static void end_word(dsd_sqlsplit_t *s) {
  s->in_word = 0;
  if (s->word_number) return;
  int known = s->word_len < DSD__WORD_MAX;
  const char *w = s->word;
  if (s->identifier_count == 0)
    memset(s->identifiers, 0, sizeof(s->identifiers));
  if (known && (!strcasecmp(w, "create") || !strcasecmp(w, "function") ||
                !strcasecmp(w, "procedure") || !strcasecmp(w, "or") ||
                !strcasecmp(w, "replace"))) {
    if (s->identifier_count < sizeof(s->identifiers))
      s->identifiers[s->identifier_count] = (char)tolower((unsigned char)w[0]);
  }
  s->identifier_count++;
  const char *id = s->identifiers;
  if (known && id[0] == 'c' &&
      (id[1] == 'f' || id[1] == 'p' ||
       (id[1] == 'o' && id[2] == 'r' && (id[3] == 'f' || id[3] == 'p'))) &&
      s->paren == 0) {
    if (!strcasecmp(w, "begin"))
      s->begin_depth++;
    else if (!strcasecmp(w, "case")) {
      if (s->begin_depth >= 1) s->begin_depth++;
    } else if (!strcasecmp(w, "end")) {
      if (s->begin_depth > 0) s->begin_depth--;
    }
  }
}

/* "-- Name: t; Type: TABLE; Schema: public; Owner: -" -> "table public.t" */
static void parse_header(dsd_sqlsplit_t *s) {
  const char *c = s->comment;
  static const char pfx[] = "-- Name: ";
  if (strncmp(c, pfx, sizeof(pfx) - 1) != 0) return;
  const char *name = c + sizeof(pfx) - 1;
  const char *type = strstr(name, "; Type: ");
  if (!type) return;
  const char *schema = strstr(type + 8, "; Schema: ");
  if (!schema) return;
  const char *schema_end = strstr(schema + 10, "; Owner:");
  if (!schema_end) schema_end = schema + strlen(schema);
  char tbuf[64];
  size_t tl = (size_t)(schema - (type + 8));
  if (tl >= sizeof(tbuf)) tl = sizeof(tbuf) - 1;
  for (size_t i = 0; i < tl; i++)
    tbuf[i] = (char)tolower((unsigned char)type[8 + i]);
  tbuf[tl] = '\0';
  int nl = (int)(type - name);
  int sl = (int)(schema_end - (schema + 10));
  if (sl == 1 && schema[10] == '-')
    snprintf(s->object, sizeof(s->object), "%s %.*s", tbuf, nl, name);
  else
    snprintf(s->object, sizeof(s->object), "%s %.*s.%.*s", tbuf, sl,
             schema + 10, nl, name);
  s->have_object = 1;
}

static int emit(dsd_sqlsplit_t *s, dsd_sql_kind_t kind, dsd_err_t *err) {
  dsd_sql_item_t item = {
      .kind = kind,
      .text = s->stmt.data ? s->stmt.data : "",
      .len = s->stmt.len,
      .object = s->have_object ? s->object : NULL,
      .line = s->stmt_line,
  };
  if (kind == DSD_SQL_STATEMENT) s->count++;
  int rc = s->cb(s->data, &item, err);
  reset_statement(s);
  return rc;
}

/* ------------------------------------------------------------------ */
/* The machine                                                         */
/* ------------------------------------------------------------------ */

#define AGAIN 1 /* step() result: process the same byte in the new state */

static int step_normal(dsd_sqlsplit_t *s, unsigned char c, dsd_err_t *err) {
  int estring = 0;
  if (s->in_word) {
    if (is_ident_cont(c)) {
      if (s->word_len + 1 < DSD__WORD_MAX) s->word[s->word_len] = (char)c;
      s->word_len++;
      if (s->word_len < DSD__WORD_MAX) s->word[s->word_len] = '\0';
      return append(s, (char)c);
    }
    /* E'...' is one token in psql, not an identifier followed by a
     * string: it does not count for the BEGIN ATOMIC heuristic. */
    if (c == '\'' && !s->word_number && s->word_len == 1 &&
        (s->word[0] == 'E' || s->word[0] == 'e')) {
      estring = 1;
      s->in_word = 0;
    } else {
      end_word(s);
    }
  }
  switch (c) {
    case ' ': case '\t': case '\n': case '\r': case '\f': case '\v':
      return s->stmt.len ? append(s, (char)c) : 0;
    case '-':
      s->st = ST_DASH;
      return 0;
    case '/':
      s->st = ST_SLASH;
      return 0;
    case '\'':
      s->st = estring ? ST_EQUOTE : ST_SQUOTE;
      return append(s, (char)c);
    case '"':
      s->st = ST_DQUOTE;
      return append(s, (char)c);
    case '$':
      s->st = ST_DOLLAR_TAG;
      s->tag_len = 0;
      return append(s, (char)c);
    case '(':
      s->paren++;
      return append(s, (char)c);
    case ')':
      if (s->paren > 0) s->paren--;
      return append(s, (char)c);
    case ';': {
      if (s->stmt.len == 0) return 0; /* an empty statement */
      int rc = append(s, (char)c);
      if (rc) return rc;
      if (s->paren == 0 && s->begin_depth == 0)
        return emit(s, DSD_SQL_STATEMENT, err);
      return 0;
    }
    case '\\':
      if (s->stmt.len == 0) {
        s->st = ST_META;
        return append(s, (char)c);
      }
      return append(s, (char)c);
    default:
      if (is_ident_start(c) || isdigit(c)) {
        s->in_word = 1;
        s->word_number = isdigit(c) != 0;
        s->word[0] = (char)c;
        s->word[1] = '\0';
        s->word_len = 1;
      }
      return append(s, (char)c);
  }
}

static int step(dsd_sqlsplit_t *s, unsigned char c, dsd_err_t *err) {
  int rc;
  switch (s->st) {
    case ST_NORMAL:
      return step_normal(s, c, err);

    case ST_DASH:
      if (c == '-') {
        s->st = ST_LINE_COMMENT;
        s->comment_skip = s->stmt.len == 0;
        if (s->comment_skip) {
          memcpy(s->comment, "--", 3);
          s->comment_len = 2;
          return 0;
        }
        return dsd_buf_append_str(&s->stmt, "--");
      }
      s->st = ST_NORMAL;
      if ((rc = append(s, '-'))) return rc;
      return AGAIN;

    case ST_SLASH:
      if (c == '*') {
        s->st = ST_BLOCK;
        s->block_depth = 1;
        s->comment_skip = s->stmt.len == 0;
        return s->comment_skip ? 0 : dsd_buf_append_str(&s->stmt, "/*");
      }
      s->st = ST_NORMAL;
      if ((rc = append(s, '/'))) return rc;
      return AGAIN;

    case ST_LINE_COMMENT:
      if (c == '\n') {
        s->st = ST_NORMAL;
        if (s->comment_skip) {
          parse_header(s);
          return 0;
        }
        return append(s, (char)c);
      }
      if (s->comment_skip) {
        if (s->comment_len + 1 < sizeof(s->comment)) {
          s->comment[s->comment_len++] = (char)c;
          s->comment[s->comment_len] = '\0';
        }
        return 0;
      }
      return append(s, (char)c);

    case ST_BLOCK:
    case ST_BLOCK_STAR:
    case ST_BLOCK_SLASH:
      if (!s->comment_skip && (rc = append(s, (char)c))) return rc;
      if (s->st == ST_BLOCK_STAR && c == '/') {
        s->st = --s->block_depth == 0 ? ST_NORMAL : ST_BLOCK;
      } else if (s->st == ST_BLOCK_SLASH && c == '*') {
        s->block_depth++;
        s->st = ST_BLOCK;
      } else {
        s->st = c == '*' ? ST_BLOCK_STAR : c == '/' ? ST_BLOCK_SLASH : ST_BLOCK;
      }
      return 0;

    case ST_SQUOTE:
      if (c == '\'') s->st = ST_SQUOTE_END;
      return append(s, (char)c);
    case ST_SQUOTE_END:
      if (c == '\'') {
        s->st = ST_SQUOTE;
        return append(s, (char)c);
      }
      s->st = ST_NORMAL;
      return AGAIN;

    case ST_EQUOTE:
      if (c == '\\') s->st = ST_EQUOTE_BS;
      else if (c == '\'') s->st = ST_EQUOTE_END;
      return append(s, (char)c);
    case ST_EQUOTE_BS:
      s->st = ST_EQUOTE;
      return append(s, (char)c);
    case ST_EQUOTE_END:
      if (c == '\'') {
        s->st = ST_EQUOTE;
        return append(s, (char)c);
      }
      s->st = ST_NORMAL;
      return AGAIN;

    case ST_DQUOTE:
      if (c == '"') s->st = ST_DQUOTE_END;
      return append(s, (char)c);
    case ST_DQUOTE_END:
      if (c == '"') {
        s->st = ST_DQUOTE;
        return append(s, (char)c);
      }
      s->st = ST_NORMAL;
      return AGAIN;

    case ST_DOLLAR_TAG:
      if (c == '$') {
        s->st = ST_DOLLAR;
        s->match = 0;
        return append(s, (char)c);
      }
      /* A tag starts like an identifier; "$1" is a parameter. */
      if ((s->tag_len == 0 ? is_ident_start(c) : is_dolq_cont(c)) &&
          s->tag_len < sizeof(s->tag)) {
        s->tag[s->tag_len++] = (char)c;
        return append(s, (char)c);
      }
      s->st = ST_NORMAL;
      return AGAIN;

    case ST_DOLLAR:
      /* Match "$tag$"; the tag holds no '$', so a '$' restarts at 1. */
      if (s->match == 0) {
        if (c == '$') s->match = 1;
      } else if (s->match <= s->tag_len) {
        if (c == (unsigned char)s->tag[s->match - 1]) s->match++;
        else s->match = c == '$' ? 1 : 0;
      } else if (c == '$') {
        s->st = ST_NORMAL;
      } else {
        s->match = 0;
      }
      return append(s, (char)c);

    case ST_META:
      if (c == '\n') {
        s->st = ST_NORMAL;
        /* A CR before the newline is not part of the command. */
        if (s->stmt.len && s->stmt.data[s->stmt.len - 1] == '\r')
          s->stmt.data[--s->stmt.len] = '\0';
        return emit(s, DSD_SQL_META, err);
      }
      return append(s, (char)c);
  }
  return DSD_EINTERNAL;
}

/* ------------------------------------------------------------------ */
/* Public functions                                                    */
/* ------------------------------------------------------------------ */

dsd_sqlsplit_t *dsd_sqlsplit_new(dsd_sqlsplit_cb cb, void *data) {
  dsd_sqlsplit_t *s = calloc(1, sizeof(*s));
  if (!s) return NULL;
  s->cb = cb;
  s->data = data;
  s->line = 1;
  s->st = ST_NORMAL;
  dsd_buf_init(&s->stmt);
  return s;
}

int dsd_sqlsplit_feed(dsd_sqlsplit_t *s, const char *buf, size_t len,
                      dsd_err_t *err) {
  for (size_t i = 0; i < len; i++) {
    /* Fast path: inside a string or a dollar quote only one byte value
     * can change the state, so copy up to it at once (large objects come
     * as lo_put statements with megabytes of hex in one string). */
    int stop = -1;
    if (s->st == ST_SQUOTE)
      stop = '\'';
    else if (s->st == ST_DQUOTE)
      stop = '"';
    else if (s->st == ST_DOLLAR && s->match == 0)
      stop = '$';
    if (stop >= 0) {
      const char *from = buf + i, *end = buf + len;
      const char *q = memchr(from, stop, (size_t)(end - from));
      size_t bulk = q ? (size_t)(q - from) : (size_t)(end - from);
      if (bulk > 0) {
        if (dsd_buf_append(&s->stmt, from, bulk))
          return dsd_err_set(err, DSD_ENOMEM, "out of memory splitting sql");
        for (const char *p = from; (p = memchr(p, '\n', (size_t)(from + bulk - p))) != NULL; p++)
          s->line++;
        i += bulk;
        if (i == len) break;
      }
    }
    unsigned char c = (unsigned char)buf[i];
    int rc;
    while ((rc = step(s, c, err)) == AGAIN) {
    }
    if (rc == DSD_ENOMEM)
      return dsd_err_set(err, DSD_ENOMEM, "out of memory splitting sql");
    if (rc) return rc;
    if (c == '\n') s->line++;
  }
  return 0;
}

int dsd_sqlsplit_finish(dsd_sqlsplit_t *s, dsd_err_t *err) {
  int rc = 0;
  const char *inside = NULL;
  switch (s->st) {
    case ST_DASH: rc = append(s, '-'); break;
    case ST_SLASH: rc = append(s, '/'); break;
    case ST_LINE_COMMENT:
      if (s->comment_skip) parse_header(s);
      break;
    case ST_META:
      rc = emit(s, DSD_SQL_META, err);
      if (rc) return rc;
      break;
    case ST_SQUOTE: case ST_EQUOTE: case ST_EQUOTE_BS:
      inside = "a quoted string";
      break;
    case ST_DQUOTE: inside = "a quoted identifier"; break;
    case ST_DOLLAR: inside = "a dollar-quoted string"; break;
    case ST_BLOCK: case ST_BLOCK_STAR: case ST_BLOCK_SLASH:
      inside = "a block comment";
      break;
    default: break;
  }
  if (rc) return dsd_err_set(err, DSD_ENOMEM, "out of memory splitting sql");
  if (inside)
    return dsd_err_set(err, DSD_EINVAL,
                       "the sql script ends inside %s (statement starting at "
                       "line %u)", inside, s->stmt_line);
  s->st = ST_NORMAL;
  if (s->in_word) end_word(s);
  while (s->stmt.len > 0 && isspace((unsigned char)s->stmt.data[s->stmt.len - 1]))
    s->stmt.data[--s->stmt.len] = '\0';
  if (s->stmt.len > 0) return emit(s, DSD_SQL_STATEMENT, err);
  return 0;
}

unsigned long dsd_sqlsplit_count(const dsd_sqlsplit_t *s) { return s->count; }

void dsd_sqlsplit_free(dsd_sqlsplit_t *s) {
  if (!s) return;
  dsd_buf_free(&s->stmt);
  free(s);
}
