/*
 * mongo_bson.c - the MongoDB dialect's pure libbson parts, no server
 * involved: archive entry names, mongodump-shaped metadata.json and its
 * parsing back, index spec conversion for createIndexes, field-path
 * anonymization of documents, and the splitter that turns a byte stream
 * cut at arbitrary chunk boundaries back into documents.
 *
 * Used by mongo_dump.c and mongo_restore.c; tested directly by
 * tests/unit/test_mongo_bson.c.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/hash.h"
#include "dialects/mongo/mongo.h"

#ifdef DSD_HAVE_ANONYMIZE
#include "anonymize/anonymize.h"
#endif

/* ------------------------------------------------------------------ */
/* Names                                                               */

int dsd__mongo_escape_name(const char *name, dsd_buf_t *out) {
  static const char hex[] = "0123456789ABCDEF";
  int rc = 0;
  for (const unsigned char *p = (const unsigned char *)name; *p && rc == 0; p++) {
    /* '/' would make a directory, '%' must escape itself so the mapping
     * can be undone, control bytes do not belong in file names. */
    if (*p == '/' || *p == '%' || *p < 0x20) {
      char e[3] = {'%', hex[*p >> 4], hex[*p & 15]};
      rc = dsd_buf_append(out, e, 3);
    } else {
      rc = dsd_buf_append_char(out, (char)*p);
    }
  }
  return rc;
}

int dsd__mongo_entry_name(const char *db, const char *coll, const char *suffix,
                          dsd_buf_t *out) {
  int rc;
  dsd_buf_reset(out);
  rc = dsd_buf_append_str(out, "mongo/");
  if (rc == 0)
    rc = dsd__mongo_escape_name(db, out);
  if (rc == 0)
    rc = dsd_buf_append_char(out, '/');
  if (rc == 0)
    rc = dsd__mongo_escape_name(coll, out);
  if (rc == 0)
    rc = dsd_buf_append_str(out, suffix);
  return rc;
}

const char *dsd__mongo_coll_type(const bson_t *info) {
  bson_iter_t it;
  if (bson_iter_init_find(&it, info, "type") && BSON_ITER_HOLDS_UTF8(&it))
    return bson_iter_utf8(&it, NULL);
  return "collection";
}

/* ------------------------------------------------------------------ */
/* metadata.json                                                       */

int dsd__mongo_metadata_json(const bson_t *info, const bson_t *indexes,
                             char **json, dsd_err_t *err) {
  bson_t meta = BSON_INITIALIZER, arr;
  bson_iter_t it, sub;
  const char *type = dsd__mongo_coll_type(info);
  const char *name = NULL;
  bool ok = true;
  int rc = 0;

  *json = NULL;
  if (bson_iter_init_find(&it, info, "name") && BSON_ITER_HOLDS_UTF8(&it))
    name = bson_iter_utf8(&it, NULL);
  if (name == NULL) {
    rc = dsd_err_set(err, DSD_EPROTO, "listCollections returned a collection without a name");
    goto cleanup;
  }
  /* mongodump's Metadata struct: options (omitempty), indexes (always an
   * array, [] rather than null), uuid (omitempty), collectionName, type. */
  if (bson_iter_init_find(&it, info, "options") && BSON_ITER_HOLDS_DOCUMENT(&it)) {
    const uint8_t *data;
    uint32_t len;
    bson_t opts;
    bson_iter_document(&it, &len, &data);
    if (bson_init_static(&opts, data, len) && !bson_empty(&opts))
      ok = ok && BSON_APPEND_DOCUMENT(&meta, "options", &opts);
  }
  ok = ok && BSON_APPEND_ARRAY_BEGIN(&meta, "indexes", &arr);
  if (ok && strcmp(type, "view") != 0 && indexes != NULL && bson_iter_init(&it, indexes)) {
    while (ok && bson_iter_next(&it)) {
      const uint8_t *data;
      uint32_t len;
      bson_t ix;
      if (!BSON_ITER_HOLDS_DOCUMENT(&it))
        continue;
      bson_iter_document(&it, &len, &data);
      ok = bson_init_static(&ix, data, len) &&
           bson_append_document(&arr, bson_iter_key(&it), -1, &ix);
    }
  }
  ok = ok && bson_append_array_end(&meta, &arr);
  if (ok && bson_iter_init(&it, info) && bson_iter_find_descendant(&it, "info.uuid", &sub) &&
      BSON_ITER_HOLDS_BINARY(&sub)) {
    bson_subtype_t st;
    uint32_t len;
    const uint8_t *bin;
    bson_iter_binary(&sub, &st, &len, &bin);
    if (st == BSON_SUBTYPE_UUID && len == 16) {
      /* mongodump writes the uuid as 32 lower-case hex digits. */
      char hex[33];
      for (uint32_t i = 0; i < 16; i++)
        snprintf(hex + 2 * i, 3, "%02x", bin[i]);
      ok = BSON_APPEND_UTF8(&meta, "uuid", hex);
    }
  }
  ok = ok && BSON_APPEND_UTF8(&meta, "collectionName", name);
  ok = ok && BSON_APPEND_UTF8(&meta, "type", type);
  if (!ok) {
    rc = dsd_err_set(err, DSD_ETOOBIG, "the metadata of collection %s does not fit in a document",
                     name);
    goto cleanup;
  }
  *json = bson_as_canonical_extended_json(&meta, NULL);
  if (*json == NULL)
    rc = dsd_err_set(err, DSD_EINVAL, "the metadata of collection %s cannot be written as json",
                     name);
cleanup:
  bson_destroy(&meta);
  return rc;
}

int dsd__mongo_index_spec(const bson_t *listed, bson_t *out) {
  bson_iter_t it;
  bool has_key = false;

  if (!bson_iter_init(&it, listed))
    return DSD_EPROTO;
  while (bson_iter_next(&it)) {
    const char *k = bson_iter_key(&it);
    if (strcmp(k, "name") == 0 && BSON_ITER_HOLDS_UTF8(&it) &&
        strcmp(bson_iter_utf8(&it, NULL), "_id_") == 0)
      return 1;
    if (strcmp(k, "clustered") == 0 && bson_iter_as_bool(&it))
      return 1;
    if (strcmp(k, "key") == 0 && BSON_ITER_HOLDS_DOCUMENT(&it))
      has_key = true;
    if (strcmp(k, "ns") == 0)
      continue;
    if (!bson_append_iter(out, k, -1, &it))
      return DSD_ENOMEM;
  }
  return has_key ? 0 : DSD_EPROTO;
}

void dsd__mongo_meta_free(dsd__mongo_meta_t *m) {
  bson_free(m->name);
  bson_free(m->type);
  m->name = m->type = NULL;
  bson_destroy(&m->options);
  bson_destroy(&m->indexes);
}

int dsd__mongo_meta_parse(const char *json, size_t len, dsd__mongo_meta_t *m,
                          dsd_err_t *err) {
  bson_t doc;
  bson_error_t be;
  bson_iter_t it;
  int rc = 0, n = 0;
  bool have_doc = false;

  memset(m, 0, sizeof *m);
  bson_init(&m->options);
  bson_init(&m->indexes);
  if (!bson_init_from_json(&doc, json, (ssize_t)len, &be)) {
    rc = dsd_err_set(err, DSD_EPROTO, "metadata.json does not parse: %s", be.message);
    goto cleanup;
  }
  have_doc = true;
  if (bson_iter_init_find(&it, &doc, "collectionName") && BSON_ITER_HOLDS_UTF8(&it))
    m->name = bson_strdup(bson_iter_utf8(&it, NULL));
  if (m->name == NULL || m->name[0] == '\0') {
    rc = dsd_err_set(err, DSD_EPROTO, "metadata.json has no collectionName");
    goto cleanup;
  }
  m->type = bson_strdup(dsd__mongo_coll_type(&doc));
  if (bson_iter_init_find(&it, &doc, "options") && BSON_ITER_HOLDS_DOCUMENT(&it)) {
    const uint8_t *data;
    uint32_t dlen;
    bson_t o;
    bson_iter_document(&it, &dlen, &data);
    bson_destroy(&m->options);
    if (!bson_init_static(&o, data, dlen)) {
      bson_init(&m->options);
      rc = dsd_err_set(err, DSD_EPROTO, "metadata.json of %s: bad options", m->name);
      goto cleanup;
    }
    bson_copy_to(&o, &m->options);
  }
  if (bson_iter_init_find(&it, &doc, "indexes") && BSON_ITER_HOLDS_ARRAY(&it)) {
    bson_iter_t ix;
    bson_iter_recurse(&it, &ix);
    while (bson_iter_next(&ix)) {
      const uint8_t *data;
      uint32_t dlen;
      bson_t listed, spec = BSON_INITIALIZER;
      char key[16];
      int r;
      if (!BSON_ITER_HOLDS_DOCUMENT(&ix)) {
        rc = dsd_err_set(err, DSD_EPROTO, "metadata.json of %s: an index is not a document",
                         m->name);
        goto cleanup;
      }
      bson_iter_document(&ix, &dlen, &data);
      if (!bson_init_static(&listed, data, dlen)) {
        rc = dsd_err_set(err, DSD_EPROTO, "metadata.json of %s: bad index", m->name);
        goto cleanup;
      }
      r = dsd__mongo_index_spec(&listed, &spec);
      if (r == 0) {
        snprintf(key, sizeof key, "%d", n++);
        if (!BSON_APPEND_DOCUMENT(&m->indexes, key, &spec))
          r = DSD_ENOMEM;
      }
      bson_destroy(&spec);
      if (r < 0) {
        rc = dsd_err_set(err, DSD_EPROTO, "metadata.json of %s: an index has no key", m->name);
        goto cleanup;
      }
    }
  }
cleanup:
  if (have_doc)
    bson_destroy(&doc);
  return rc;
}

/* ------------------------------------------------------------------ */
/* Document splitter                                                   */

static int dsd__docsplit_one(dsd__mongo_docsplit_t *s, const uint8_t *p, uint32_t n,
                             dsd__mongo_doc_cb cb, void *cbdata, dsd_err_t *err) {
  bson_t doc;
  size_t off = 0;
  if (!bson_init_static(&doc, p, n) || !bson_validate(&doc, BSON_VALIDATE_NONE, &off))
    return dsd_err_set(err, DSD_EPROTO,
                       "document %" PRIu64 " of the stream is not valid bson (byte %zu)",
                       s->docs + 1, off);
  s->docs++;
  return cb(cbdata, &doc, err);
}

/* The length prefix of the document at p (at least 4 bytes there). */
static uint32_t dsd__doclen(const uint8_t *p) {
  uint32_t v;
  memcpy(&v, p, 4);
  return BSON_UINT32_FROM_LE(v);
}

int dsd__mongo_docsplit_feed(dsd__mongo_docsplit_t *s, const void *data,
                             size_t len, dsd__mongo_doc_cb cb, void *cbdata,
                             dsd_err_t *err) {
  const uint8_t *p = data;
  int rc = 0;

  /* First complete the document a previous chunk left unfinished. Only
   * that remainder is copied; whole documents inside the chunk are handed
   * out in place. */
  while (s->pending.len > 0 && len > 0) {
    size_t need;
    if (s->pending.len < 4) {
      size_t take = 4 - s->pending.len < len ? 4 - s->pending.len : len;
      if ((rc = dsd_buf_append(&s->pending, p, take)))
        return dsd_err_set(err, rc, "out of memory");
      p += take;
      len -= take;
      continue;
    }
    uint32_t dl = dsd__doclen((const uint8_t *)s->pending.data);
    if (dl < 5 || dl > DSD__MONGO_MAX_DOC)
      return dsd_err_set(err, DSD_EPROTO, "document %" PRIu64 " of the stream has a bad "
                         "length (%" PRIu32 ")", s->docs + 1, dl);
    need = dl - s->pending.len;
    if (need > len)
      need = len;
    if ((rc = dsd_buf_append(&s->pending, p, need)))
      return dsd_err_set(err, rc, "out of memory");
    p += need;
    len -= need;
    if (s->pending.len == dl) {
      rc = dsd__docsplit_one(s, (const uint8_t *)s->pending.data, dl, cb, cbdata, err);
      dsd_buf_reset(&s->pending);
      if (rc)
        return rc;
    }
  }
  while (len >= 4) {
    uint32_t dl = dsd__doclen(p);
    if (dl < 5 || dl > DSD__MONGO_MAX_DOC)
      return dsd_err_set(err, DSD_EPROTO, "document %" PRIu64 " of the stream has a bad "
                         "length (%" PRIu32 ")", s->docs + 1, dl);
    if (dl > len)
      break;
    if ((rc = dsd__docsplit_one(s, p, dl, cb, cbdata, err)))
      return rc;
    p += dl;
    len -= dl;
  }
  if (len > 0 && (rc = dsd_buf_append(&s->pending, p, len)))
    return dsd_err_set(err, rc, "out of memory");
  return 0;
}

bool dsd__mongo_docsplit_clean(const dsd__mongo_docsplit_t *s) { return s->pending.len == 0; }

void dsd__mongo_docsplit_free(dsd__mongo_docsplit_t *s) { dsd_buf_free(&s->pending); }

/* ------------------------------------------------------------------ */
/* Anonymization                                                       */

#ifdef DSD_HAVE_ANONYMIZE

typedef struct dsd__anon_walk {
  const dsd_anon_table_plan_t *plan;
  dsd_buf_t *scratch;
  dsd_buf_t path;
  dsd_buf_t text; /* the value in text form */
  dsd_err_t *err;
} dsd__anon_walk_t;

static int dsd__walk_doc(dsd__anon_walk_t *w, bson_iter_t *it, bson_t *out, bool is_array,
                         const dsd_anon_rule_t *forced);

/* Milliseconds since the epoch -> "YYYY-MM-DD HH:MM:SS.mmm+00". */
static int dsd__ms_to_text(int64_t ms, dsd_buf_t *out) {
  time_t secs = (time_t)(ms >= 0 ? ms / 1000 : (ms - 999) / 1000);
  int frac = (int)(ms - (int64_t)secs * 1000);
  struct tm tm;
  if (gmtime_r(&secs, &tm) == NULL)
    return DSD_EINVAL;
  return dsd_buf_printf(out, "%04d-%02d-%02d %02d:%02d:%02d.%03d+00", tm.tm_year + 1900,
                        tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, frac);
}

static int dsd__text_to_ms(const char *s, int64_t *ms) {
  struct tm tm = {0};
  int y, mo, d, h = 0, mi = 0, sec = 0, n = 0;
  double frac = 0;
  if (sscanf(s, "%d-%d-%d%n", &y, &mo, &d, &n) != 3)
    return DSD_EINVAL;
  if (s[n] == ' ' || s[n] == 'T') {
    int m2 = 0;
    if (sscanf(s + n + 1, "%d:%d:%d%n", &h, &mi, &sec, &m2) != 3)
      return DSD_EINVAL;
    n += 1 + m2;
    if (s[n] == '.') {
      char *end;
      frac = strtod(s + n, &end);
    }
  }
  tm.tm_year = y - 1900;
  tm.tm_mon = mo - 1;
  tm.tm_mday = d;
  tm.tm_hour = h;
  tm.tm_min = mi;
  tm.tm_sec = sec;
  *ms = (int64_t)timegm(&tm) * 1000 + (int64_t)(frac * 1000 + 0.5);
  return 0;
}

static int dsd__hexval(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

/* "\x..." -> bytes appended to out; DSD_EINVAL when not that form. */
static int dsd__unhex(const char *s, size_t len, dsd_buf_t *out) {
  if (len < 2 || s[0] != '\\' || s[1] != 'x' || (len - 2) % 2 != 0)
    return DSD_EINVAL;
  for (size_t i = 2; i < len; i += 2) {
    int a = dsd__hexval(s[i]), b = dsd__hexval(s[i + 1]);
    if (a < 0 || b < 0)
      return DSD_EINVAL;
    if (dsd_buf_append_char(out, (char)(a * 16 + b)))
      return DSD_ENOMEM;
  }
  return 0;
}

static int dsd__hex_into(const uint8_t *b, size_t n, dsd_buf_t *out) {
  int rc = dsd_buf_append(out, "\\x", 2);
  for (size_t i = 0; i < n && rc == 0; i++)
    rc = dsd_buf_printf(out, "%02x", b[i]);
  return rc;
}

/* Applies rule to the value at it and appends the result under key. */
static int dsd__anon_value(dsd__anon_walk_t *w, const dsd_anon_rule_t *rule, bson_iter_t *it,
                           const char *key, bson_t *out) {
  dsd_anon_type_t type = {0};
  bool is_null = false, out_null = false;
  bson_type_t bt = bson_iter_type(it);
  const char *o;
  size_t olen;
  int rc = 0;
  bool ok = true;

  dsd_buf_reset(&w->text);
  type.scale = -1;
  switch (bt) {
  case BSON_TYPE_UTF8: {
    uint32_t l;
    const char *s = bson_iter_utf8(it, &l);
    type.kind = DSD_ANON_TEXT;
    type.name = "string";
    rc = dsd_buf_append(&w->text, s, l);
    break;
  }
  case BSON_TYPE_INT32:
    type.kind = DSD_ANON_INT4;
    type.name = "int";
    rc = dsd_buf_printf(&w->text, "%" PRId32, bson_iter_int32(it));
    break;
  case BSON_TYPE_INT64:
    type.kind = DSD_ANON_INT8;
    type.name = "long";
    rc = dsd_buf_printf(&w->text, "%" PRId64, bson_iter_int64(it));
    break;
  case BSON_TYPE_DOUBLE:
    type.kind = DSD_ANON_FLOAT;
    type.name = "double";
    rc = dsd_buf_printf(&w->text, "%.17g", bson_iter_double(it));
    break;
  case BSON_TYPE_DECIMAL128: {
    bson_decimal128_t d;
    char s[BSON_DECIMAL128_STRING];
    bson_iter_decimal128(it, &d);
    bson_decimal128_to_string(&d, s);
    type.kind = DSD_ANON_NUMERIC;
    type.name = "decimal";
    rc = dsd_buf_append_str(&w->text, s);
    break;
  }
  case BSON_TYPE_DATE_TIME:
    type.kind = DSD_ANON_TIMESTAMPTZ;
    type.name = "date";
    rc = dsd__ms_to_text(bson_iter_date_time(it), &w->text);
    break;
  case BSON_TYPE_BOOL:
    type.kind = DSD_ANON_BOOL;
    type.name = "bool";
    rc = dsd_buf_append_str(&w->text, bson_iter_bool(it) ? "t" : "f");
    break;
  case BSON_TYPE_OID:
    /* As bytes in the "\x" hex form: a hash keeps the 12-byte length, so
     * the result is still an ObjectId. */
    type.kind = DSD_ANON_BYTES;
    type.name = "objectId";
    rc = dsd__hex_into(bson_iter_oid(it)->bytes, 12, &w->text);
    break;
  case BSON_TYPE_BINARY: {
    bson_subtype_t st;
    uint32_t l;
    const uint8_t *b;
    bson_iter_binary(it, &st, &l, &b);
    /* Every subtype (UUIDs included) as bytes: the hash keeps the length
     * and the subtype is put back, so the value stays valid. */
    type.kind = DSD_ANON_BYTES;
    type.name = "binData";
    rc = dsd__hex_into(b, l, &w->text);
    break;
  }
  case BSON_TYPE_NULL:
  case BSON_TYPE_UNDEFINED:
    type.kind = DSD_ANON_TEXT;
    type.name = "null";
    is_null = true;
    break;
  case BSON_TYPE_DOCUMENT:
  case BSON_TYPE_ARRAY: {
    const uint8_t *data;
    uint32_t l;
    bson_t sub;
    char *j;
    if (bt == BSON_TYPE_DOCUMENT)
      bson_iter_document(it, &l, &data);
    else
      bson_iter_array(it, &l, &data);
    if (!bson_init_static(&sub, data, l))
      return dsd_err_set(w->err, DSD_EPROTO, "field %s: bad subdocument", w->path.data);
    j = bt == BSON_TYPE_DOCUMENT ? bson_as_relaxed_extended_json(&sub, NULL)
                                 : bson_array_as_json(&sub, NULL);
    if (j == NULL)
      return dsd_err_set(w->err, DSD_EINVAL, "field %s cannot be read as json", w->path.data);
    type.kind = DSD_ANON_JSON;
    type.name = bt == BSON_TYPE_DOCUMENT ? "object" : "array";
    rc = dsd_buf_append_str(&w->text, j);
    bson_free(j);
    break;
  }
  default:
    type.kind = DSD_ANON_OTHER;
    type.name = "other";
    break;
  }
  if (rc)
    return dsd_err_set(w->err, DSD_ENOMEM, "out of memory");
  rc = dsd_anon_apply_field(w->plan, rule, &type, is_null ? NULL : w->text.data,
                            w->text.len, is_null, w->scratch, &out_null);
  if (rc)
    return dsd_err_set(w->err, rc, "field %s of a document cannot be anonymized",
                       w->path.data);
  o = w->scratch->data ? w->scratch->data : "";
  olen = w->scratch->len;
  if (out_null)
    return BSON_APPEND_NULL(out, key) ? 0 : dsd_err_set(w->err, DSD_ENOMEM, "out of memory");

  /* Put the result back with the input's type; when the text does not
   * read back as that type, null rather than a value of another type. */
  switch (bt) {
  case BSON_TYPE_INT32:
  case BSON_TYPE_INT64: {
    char *end;
    long long v = strtoll(o, &end, 10);
    if (end == o || *end != '\0')
      ok = BSON_APPEND_NULL(out, key);
    else if (bt == BSON_TYPE_INT32)
      ok = BSON_APPEND_INT32(out, key, (int32_t)v);
    else
      ok = BSON_APPEND_INT64(out, key, (int64_t)v);
    break;
  }
  case BSON_TYPE_DOUBLE: {
    char *end;
    double v = strtod(o, &end);
    ok = end == o || *end != '\0' ? BSON_APPEND_NULL(out, key) : BSON_APPEND_DOUBLE(out, key, v);
    break;
  }
  case BSON_TYPE_DECIMAL128: {
    bson_decimal128_t d;
    ok = bson_decimal128_from_string(o, &d) ? BSON_APPEND_DECIMAL128(out, key, &d)
                                            : BSON_APPEND_NULL(out, key);
    break;
  }
  case BSON_TYPE_DATE_TIME: {
    int64_t ms;
    ok = dsd__text_to_ms(o, &ms) == 0 ? BSON_APPEND_DATE_TIME(out, key, ms)
                                      : BSON_APPEND_NULL(out, key);
    break;
  }
  case BSON_TYPE_BOOL:
    ok = BSON_APPEND_BOOL(out, key, o[0] == 't' || o[0] == 'T' || o[0] == '1');
    break;
  case BSON_TYPE_OID:
  case BSON_TYPE_BINARY: {
    dsd_buf_t raw = DSD_BUF_INIT;
    if (dsd__unhex(o, olen, &raw) != 0) {
      ok = BSON_APPEND_NULL(out, key);
    } else if (bt == BSON_TYPE_OID) {
      bson_oid_t oid;
      if (raw.len == 12) {
        memcpy(oid.bytes, raw.data, 12);
        ok = BSON_APPEND_OID(out, key, &oid);
      } else {
        ok = BSON_APPEND_NULL(out, key);
      }
    } else {
      bson_subtype_t st;
      uint32_t l;
      const uint8_t *b;
      bson_iter_binary(it, &st, &l, &b);
      ok = bson_append_binary(out, key, -1, st, (const uint8_t *)(raw.data ? raw.data : ""),
                              (uint32_t)raw.len);
    }
    dsd_buf_free(&raw);
    break;
  }
  case BSON_TYPE_DOCUMENT:
  case BSON_TYPE_ARRAY: {
    /* The rule's JSON output parsed back; an array is wrapped in a
     * document for the parser. */
    dsd_buf_t wrap = DSD_BUF_INIT;
    bson_t parsed;
    bson_iter_t pi;
    bson_error_t be;
    if (dsd_buf_printf(&wrap, "{\"v\": %.*s}", (int)olen, o) != 0) {
      ok = false;
    } else if (bson_init_from_json(&parsed, wrap.data, (ssize_t)wrap.len, &be)) {
      if (bson_iter_init_find(&pi, &parsed, "v") &&
          (BSON_ITER_HOLDS_DOCUMENT(&pi) || BSON_ITER_HOLDS_ARRAY(&pi)))
        ok = bson_append_iter(out, key, -1, &pi);
      else
        ok = BSON_APPEND_NULL(out, key);
      bson_destroy(&parsed);
    } else {
      ok = BSON_APPEND_NULL(out, key);
    }
    dsd_buf_free(&wrap);
    break;
  }
  default:
    /* Text, and a null or other value a constant replaced: a string. */
    ok = bson_utf8_validate(o, olen, false) ? bson_append_utf8(out, key, -1, o, (int)olen)
                                            : BSON_APPEND_NULL(out, key);
    break;
  }
  return ok ? 0 : dsd_err_set(w->err, DSD_ENOMEM, "out of memory");
}

/* Walks the members of a document or array at it (already recursed into)
 * into out. Array elements keep their parent's path. forced: the user rule
 * of an array of scalars applies to each element. */
static int dsd__walk_doc(dsd__anon_walk_t *w, bson_iter_t *it, bson_t *out, bool is_array,
                         const dsd_anon_rule_t *forced) {
  size_t base = w->path.len;
  int rc = 0;

  while (rc == 0 && bson_iter_next(it)) {
    const char *key = bson_iter_key(it);
    bool container = BSON_ITER_HOLDS_DOCUMENT(it) || BSON_ITER_HOLDS_ARRAY(it);
    const dsd_anon_rule_t *r;

    if (!is_array) {
      w->path.len = base;
      if (base > 0)
        dsd_buf_append_char(&w->path, '.');
      if (dsd_buf_append_str(&w->path, key))
        return dsd_err_set(w->err, DSD_ENOMEM, "out of memory");
      r = dsd_anon_plan_field_rule(w->plan, w->path.data);
    } else {
      r = forced != NULL ? forced : dsd_anon_plan_field_rule(w->plan, w->path.data);
    }
    if (container && (r == NULL || dsd_anon_rule_is_default(r)) &&
        dsd_anon_plan_field_has_rules_below(w->plan, w->path.data)) {
      bson_iter_t child;
      bson_t sub;
      bool arr = BSON_ITER_HOLDS_ARRAY(it);
      bson_iter_recurse(it, &child);
      if (!(arr ? bson_append_array_begin(out, key, -1, &sub)
                : bson_append_document_begin(out, key, -1, &sub)))
        return dsd_err_set(w->err, DSD_ENOMEM, "out of memory");
      rc = dsd__walk_doc(w, &child, &sub, arr, NULL);
      if (rc == 0 && !(arr ? bson_append_array_end(out, &sub) : bson_append_document_end(out, &sub)))
        rc = dsd_err_set(w->err, DSD_ENOMEM, "out of memory");
    } else if (r != NULL && BSON_ITER_HOLDS_ARRAY(it) && !dsd_anon_rule_is_default(r)) {
      /* "tags": "hash" on an array of strings hashes each element, and
       * "items": rule on an array of documents applies to each one. */
      bson_iter_t child;
      bson_t sub;
      bson_iter_recurse(it, &child);
      if (!bson_append_array_begin(out, key, -1, &sub))
        return dsd_err_set(w->err, DSD_ENOMEM, "out of memory");
      rc = dsd__walk_doc(w, &child, &sub, true, r);
      if (rc == 0 && !bson_append_array_end(out, &sub))
        rc = dsd_err_set(w->err, DSD_ENOMEM, "out of memory");
    } else if (r != NULL) {
      rc = dsd__anon_value(w, r, it, key, out);
    } else if (!bson_append_iter(out, key, -1, it)) {
      rc = dsd_err_set(w->err, DSD_ENOMEM, "out of memory");
    }
    /* Restore the path: the next sibling or the caller's path. */
    w->path.len = base;
    if (w->path.data)
      w->path.data[base] = '\0';
  }
  return rc;
}

int dsd__mongo_anon_doc(const struct dsd_anon_table_plan *plan, const bson_t *doc,
                        bson_t *out, dsd_buf_t *scratch, dsd_err_t *err) {
  dsd__anon_walk_t w = {plan, scratch, DSD_BUF_INIT, DSD_BUF_INIT, err};
  bson_iter_t it;
  int rc;

  if (!bson_iter_init(&it, doc))
    return dsd_err_set(err, DSD_EPROTO, "a document of the collection is not valid bson");
  if (dsd_buf_reserve(&w.path, 64))
    return dsd_err_set(err, DSD_ENOMEM, "out of memory");
  w.path.data[0] = '\0';
  rc = dsd__walk_doc(&w, &it, out, false, NULL);
  dsd_buf_free(&w.path);
  dsd_buf_free(&w.text);
  return rc;
}

#else /* !DSD_HAVE_ANONYMIZE */

int dsd__mongo_anon_doc(const struct dsd_anon_table_plan *plan, const bson_t *doc,
                        bson_t *out, dsd_buf_t *scratch, dsd_err_t *err) {
  return dsd_err_set(err, DSD_EUNSUPPORTED, "this build has no anonymizer");
}

#endif
