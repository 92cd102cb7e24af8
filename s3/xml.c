/*
 * xml.c - a minimal scanner for S3 response documents (see xml.h).
 *
 * Elements are found by local name: "<Key>" and "<s3:Key>" both match
 * "Key". Nesting of an element inside one of the same name does not occur
 * in S3 responses, so the first matching close tag ends the element.
 */
#include "s3/xml.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ---------------------------------------------------------------- */
/* Scanning                                                          */
/* ---------------------------------------------------------------- */

/* Does the tag name at p (just after '<' or "</") equal tag, ignoring a
 * namespace prefix, and end at a delimiter? Returns the position after the
 * name or NULL. */
static const char *match_name(const char *p, const char *end,
                              const char *tag) {
  const char *name = p;
  while (p < end && *p != '>' && *p != '/' && *p != ' ' && *p != '\t' &&
         *p != '\r' && *p != '\n')
    p++;
  const char *colon = memchr(name, ':', (size_t)(p - name));
  if (colon) name = colon + 1;
  size_t tl = strlen(tag);
  if ((size_t)(p - name) != tl || memcmp(name, tag, tl) != 0) return NULL;
  return p;
}

bool dsd_s3_xml_next(const char **pos, const char *end, const char *tag,
                     const char **content, size_t *clen) {
  const char *p = *pos;
  while (p < end) {
    const char *lt = memchr(p, '<', (size_t)(end - p));
    if (!lt || lt + 1 >= end) return false;
    p = lt + 1;
    if (*p == '/' || *p == '?' || *p == '!') continue;
    const char *after = match_name(p, end, tag);
    if (!after) continue;
    const char *gt = memchr(after, '>', (size_t)(end - after));
    if (!gt) return false;
    if (gt > after && gt[-1] == '/') { /* <Tag/> */
      *content = gt + 1;
      *clen = 0;
      *pos = gt + 1;
      return true;
    }
    const char *body = gt + 1, *q = body;
    while (q < end) {
      const char *c = memchr(q, '<', (size_t)(end - q));
      if (!c || c + 2 > end) return false;
      if (c[1] == '/') {
        const char *a = match_name(c + 2, end, tag);
        if (a) {
          const char *cgt = memchr(a, '>', (size_t)(end - a));
          if (!cgt) return false;
          *content = body;
          *clen = (size_t)(c - body);
          *pos = cgt + 1;
          return true;
        }
      }
      q = c + 1;
    }
    return false;
  }
  return false;
}

static void put_utf8(char **o, unsigned long cp) {
  char *d = *o;
  if (cp < 0x80) {
    *d++ = (char)cp;
  } else if (cp < 0x800) {
    *d++ = (char)(0xC0 | (cp >> 6));
    *d++ = (char)(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    *d++ = (char)(0xE0 | (cp >> 12));
    *d++ = (char)(0x80 | ((cp >> 6) & 0x3F));
    *d++ = (char)(0x80 | (cp & 0x3F));
  } else if (cp <= 0x10FFFF) {
    *d++ = (char)(0xF0 | (cp >> 18));
    *d++ = (char)(0x80 | ((cp >> 12) & 0x3F));
    *d++ = (char)(0x80 | ((cp >> 6) & 0x3F));
    *d++ = (char)(0x80 | (cp & 0x3F));
  }
  *o = d;
}

char *dsd_s3_xml_decode(const char *raw, size_t len) {
  /* Decoded text is never longer than the raw text: every entity is at
   * least as long as the UTF-8 it stands for. */
  char *out = malloc(len + 1), *o = out;
  if (!out) return NULL;
  for (size_t i = 0; i < len;) {
    if (raw[i] != '&') {
      *o++ = raw[i++];
      continue;
    }
    const char *semi = memchr(raw + i, ';', len - i);
    size_t el = semi ? (size_t)(semi - (raw + i)) + 1 : 0;
    const char *e = raw + i;
    if (el == 5 && !memcmp(e, "&amp;", 5)) {
      *o++ = '&';
    } else if (el == 4 && !memcmp(e, "&lt;", 4)) {
      *o++ = '<';
    } else if (el == 4 && !memcmp(e, "&gt;", 4)) {
      *o++ = '>';
    } else if (el == 6 && !memcmp(e, "&quot;", 6)) {
      *o++ = '"';
    } else if (el == 6 && !memcmp(e, "&apos;", 6)) {
      *o++ = '\'';
    } else if (el > 3 && el < 12 && e[1] == '#') {
      char num[12];
      memcpy(num, e + 2, el - 3);
      num[el - 3] = '\0';
      char *endp;
      unsigned long cp = (num[0] == 'x' || num[0] == 'X')
                             ? strtoul(num + 1, &endp, 16)
                             : strtoul(num, &endp, 10);
      if (*endp != '\0' || cp == 0 || cp > 0x10FFFF) {
        *o++ = raw[i++]; /* not a valid reference: keep it literally */
        continue;
      }
      put_utf8(&o, cp);
    } else {
      *o++ = raw[i++];
      continue;
    }
    i += el;
  }
  *o = '\0';
  return out;
}

char *dsd_s3_xml_text(const char *xml, size_t len, const char *tag) {
  const char *pos = xml, *c;
  size_t cl;
  if (!dsd_s3_xml_next(&pos, xml + len, tag, &c, &cl)) return NULL;
  return dsd_s3_xml_decode(c, cl);
}

int64_t dsd_s3_parse_iso8601(const char *s) {
  struct tm tm;
  memset(&tm, 0, sizeof tm);
  if (!s) return 0;
  const char *rest = strptime(s, "%Y-%m-%dT%H:%M:%S", &tm);
  if (!rest) return 0;
  return (int64_t)timegm(&tm);
}

/* ---------------------------------------------------------------- */
/* Documents                                                         */
/* ---------------------------------------------------------------- */

void dsd_s3_xml_error_free(dsd_s3_xml_error_t *e) {
  if (!e) return;
  free(e->code);
  free(e->message);
  e->code = e->message = NULL;
}

bool dsd_s3_xml_parse_error(const char *xml, size_t len,
                            dsd_s3_xml_error_t *out) {
  const char *pos = xml, *c;
  size_t cl;
  memset(out, 0, sizeof *out);
  if (!xml || !dsd_s3_xml_next(&pos, xml + len, "Error", &c, &cl))
    return false;
  out->code = dsd_s3_xml_text(c, cl, "Code");
  out->message = dsd_s3_xml_text(c, cl, "Message");
  return true;
}

void dsd_s3_list_page_free(dsd_s3_list_page_t *p) {
  if (!p) return;
  for (size_t i = 0; i < p->n; i++) {
    free(p->entries[i].key);
    free(p->entries[i].etag);
  }
  free(p->entries);
  free(p->next_token);
  memset(p, 0, sizeof *p);
}

/* Returns a malloc'd copy of [root, root+len) without the <tag> elements,
 * so that top-level fields can be read without looking into entries. */
static char *outside(const char *root, size_t len, const char *tag,
                     size_t *outlen) {
  char *out = malloc(len + 1), *o = out;
  const char *pos = root, *end = root + len, *c;
  size_t cl;
  if (!out) return NULL;
  for (;;) {
    const char *before = pos;
    if (!dsd_s3_xml_next(&pos, end, tag, &c, &cl)) {
      memcpy(o, before, (size_t)(end - before));
      o += end - before;
      break;
    }
    /* c is just past the '>' of the opening tag (<Tag ...> or <Tag/>),
     * and a tag holds no '<': the previous '<' opens the element. */
    const char *open = c - 1;
    while (open > before && *open != '<') open--;
    memcpy(o, before, (size_t)(open - before));
    o += open - before;
  }
  *o = '\0';
  *outlen = (size_t)(o - out);
  return out;
}

static bool text_is_true(const char *xml, size_t len, const char *tag) {
  char *t = dsd_s3_xml_text(xml, len, tag);
  bool r = t && strcmp(t, "true") == 0;
  free(t);
  return r;
}

int dsd_s3_xml_parse_list_v2(const char *xml, size_t len,
                             dsd_s3_list_page_t *out, dsd_err_t *err) {
  int rc = 0;
  const char *pos = xml, *root, *c;
  size_t rootlen, cl, cap = 0;
  memset(out, 0, sizeof *out);
  if (!xml || !dsd_s3_xml_next(&pos, xml + len, "ListBucketResult", &root,
                               &rootlen))
    return dsd_err_set(err, DSD_EPROTO,
                       "s3 list answer is not a ListBucketResult document");
  pos = root;
  while (dsd_s3_xml_next(&pos, root + rootlen, "Contents", &c, &cl)) {
    if (out->n == cap) {
      size_t ncap = cap ? cap * 2 : 64;
      dsd_s3_object_entry_t *ne = realloc(out->entries, ncap * sizeof *ne);
      if (!ne) {
        rc = DSD_ENOMEM;
        goto cleanup;
      }
      out->entries = ne;
      cap = ncap;
    }
    dsd_s3_object_entry_t *e = &out->entries[out->n];
    memset(e, 0, sizeof *e);
    e->key = dsd_s3_xml_text(c, cl, "Key");
    if (!e->key) {
      rc = dsd_err_set(err, DSD_EPROTO, "s3 list entry without a key");
      goto cleanup;
    }
    out->n++;
    e->etag = dsd_s3_xml_text(c, cl, "ETag");
    char *size = dsd_s3_xml_text(c, cl, "Size");
    char *lm = dsd_s3_xml_text(c, cl, "LastModified");
    e->size = size ? strtoull(size, NULL, 10) : 0;
    e->mtime = dsd_s3_parse_iso8601(lm);
    free(size);
    free(lm);
  }
  /* IsTruncated and NextContinuationToken are read outside the entries,
   * so that an element of an entry can never be taken for them. */
  {
    size_t tl;
    char *top = outside(root, rootlen, "Contents", &tl);
    if (!top) {
      rc = DSD_ENOMEM;
      goto cleanup;
    }
    out->truncated = text_is_true(top, tl, "IsTruncated");
    out->next_token = dsd_s3_xml_text(top, tl, "NextContinuationToken");
    free(top);
  }
  if (out->truncated && !out->next_token)
    rc = dsd_err_set(err, DSD_EPROTO,
                     "s3 list answer is truncated but has no "
                     "NextContinuationToken");
cleanup:
  if (rc) {
    if (rc == DSD_ENOMEM) dsd_err_set(err, rc, "s3 list: out of memory");
    dsd_s3_list_page_free(out);
  }
  return rc;
}

int dsd_s3_xml_parse_initiate(const char *xml, size_t len, char **upload_id,
                              dsd_err_t *err) {
  const char *pos = xml, *c;
  size_t cl;
  *upload_id = NULL;
  if (!xml || !dsd_s3_xml_next(&pos, xml + len,
                               "InitiateMultipartUploadResult", &c, &cl))
    return dsd_err_set(err, DSD_EPROTO,
                       "s3 answer to CreateMultipartUpload is not an "
                       "InitiateMultipartUploadResult document");
  *upload_id = dsd_s3_xml_text(c, cl, "UploadId");
  if (!*upload_id || !**upload_id) {
    free(*upload_id);
    *upload_id = NULL;
    return dsd_err_set(err, DSD_EPROTO,
                       "s3 answer to CreateMultipartUpload has no UploadId");
  }
  return 0;
}

void dsd_s3_uploads_page_free(dsd_s3_uploads_page_t *p) {
  if (!p) return;
  for (size_t i = 0; i < p->n; i++) {
    free(p->entries[i].key);
    free(p->entries[i].upload_id);
  }
  free(p->entries);
  free(p->next_key_marker);
  free(p->next_upload_id_marker);
  memset(p, 0, sizeof *p);
}

int dsd_s3_xml_parse_list_uploads(const char *xml, size_t len,
                                  dsd_s3_uploads_page_t *out, dsd_err_t *err) {
  int rc = 0;
  const char *pos = xml, *root, *c;
  size_t rootlen, cl, cap = 0;
  memset(out, 0, sizeof *out);
  if (!xml || !dsd_s3_xml_next(&pos, xml + len, "ListMultipartUploadsResult",
                               &root, &rootlen))
    return dsd_err_set(err, DSD_EPROTO,
                       "s3 answer to ListMultipartUploads is not a "
                       "ListMultipartUploadsResult document");
  pos = root;
  while (dsd_s3_xml_next(&pos, root + rootlen, "Upload", &c, &cl)) {
    if (out->n == cap) {
      size_t ncap = cap ? cap * 2 : 16;
      dsd_s3_upload_entry_t *ne = realloc(out->entries, ncap * sizeof *ne);
      if (!ne) {
        rc = DSD_ENOMEM;
        goto cleanup;
      }
      out->entries = ne;
      cap = ncap;
    }
    dsd_s3_upload_entry_t *e = &out->entries[out->n];
    e->key = dsd_s3_xml_text(c, cl, "Key");
    e->upload_id = dsd_s3_xml_text(c, cl, "UploadId");
    if (!e->key || !e->upload_id) {
      free(e->key);
      free(e->upload_id);
      rc = dsd_err_set(err, DSD_EPROTO,
                       "s3 ListMultipartUploads entry without Key or UploadId");
      goto cleanup;
    }
    out->n++;
  }
  {
    size_t tl;
    char *top = outside(root, rootlen, "Upload", &tl);
    if (!top) {
      rc = DSD_ENOMEM;
      goto cleanup;
    }
    out->truncated = text_is_true(top, tl, "IsTruncated");
    out->next_key_marker = dsd_s3_xml_text(top, tl, "NextKeyMarker");
    out->next_upload_id_marker = dsd_s3_xml_text(top, tl, "NextUploadIdMarker");
    free(top);
  }
cleanup:
  if (rc) {
    if (rc == DSD_ENOMEM) dsd_err_set(err, rc, "s3 list uploads: out of memory");
    dsd_s3_uploads_page_free(out);
  }
  return rc;
}
