/*
 * xml.h - just enough XML to read S3 responses.
 *
 * S3 answers with small, flat, machine-written documents (ListBucketResult,
 * InitiateMultipartUploadResult, ListMultipartUploadsResult, Error,
 * CompleteMultipartUploadResult). A general XML parser would be more code
 * than these need: the scanner here finds elements by name (ignoring
 * namespaces and attributes, honouring self-closing tags), yields their raw
 * content, and decodes the five predefined entities and numeric character
 * references. CDATA, comments and processing instructions outside the
 * elements looked at are skipped by construction.
 *
 * All parse functions take a buffer that need not be NUL-terminated, return
 * 0 or a negative DSD_E* code, and fill structures that own their strings
 * (free them with the matching _free function).
 */
#ifndef DSD_S3_XML_H
#define DSD_S3_XML_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/error.h"

/* Finds the next element <tag ...>...</tag> or <tag/> in [*pos, end).
 * On success sets *content and *clen to its raw inner text (empty for a
 * self-closing tag), advances *pos past the element and returns true. */
bool dsd_s3_xml_next(const char **pos, const char *end, const char *tag,
                     const char **content, size_t *clen);

/* Returns a malloc'd, entity-decoded copy of the content of the first
 * <tag> in [xml, xml+len), or NULL when absent (or out of memory). */
char *dsd_s3_xml_text(const char *xml, size_t len, const char *tag);

/* Decodes entities of raw[0..len) into a malloc'd string (NULL on ENOMEM). */
char *dsd_s3_xml_decode(const char *raw, size_t len);

/* Parses "2013-09-17T18:07:53.000Z" into seconds since the epoch (UTC);
 * returns 0 when unparsable. */
int64_t dsd_s3_parse_iso8601(const char *s);

/* <Error><Code>..</Code><Message>..</Message></Error>. */
typedef struct dsd_s3_xml_error {
  char *code;    /* e.g. "SignatureDoesNotMatch"; NULL if absent */
  char *message; /* NULL if absent */
} dsd_s3_xml_error_t;

/* Returns true (and fills *out, caller frees) when the document holds an
 * <Error> element, false otherwise. */
bool dsd_s3_xml_parse_error(const char *xml, size_t len,
                            dsd_s3_xml_error_t *out);
void dsd_s3_xml_error_free(dsd_s3_xml_error_t *e);

/* ListObjectsV2 (ListBucketResult). */
typedef struct dsd_s3_object_entry {
  char *key;
  uint64_t size;
  int64_t mtime;
  char *etag;
} dsd_s3_object_entry_t;

typedef struct dsd_s3_list_page {
  dsd_s3_object_entry_t *entries;
  size_t n;
  bool truncated;
  char *next_token; /* NextContinuationToken, NULL when absent */
} dsd_s3_list_page_t;

int dsd_s3_xml_parse_list_v2(const char *xml, size_t len,
                             dsd_s3_list_page_t *out, dsd_err_t *err);
void dsd_s3_list_page_free(dsd_s3_list_page_t *p);

/* InitiateMultipartUploadResult: *upload_id is malloc'd. */
int dsd_s3_xml_parse_initiate(const char *xml, size_t len, char **upload_id,
                              dsd_err_t *err);

/* ListMultipartUploadsResult. */
typedef struct dsd_s3_upload_entry {
  char *key;
  char *upload_id;
} dsd_s3_upload_entry_t;

typedef struct dsd_s3_uploads_page {
  dsd_s3_upload_entry_t *entries;
  size_t n;
  bool truncated;
  char *next_key_marker;       /* NULL when absent */
  char *next_upload_id_marker; /* NULL when absent */
} dsd_s3_uploads_page_t;

int dsd_s3_xml_parse_list_uploads(const char *xml, size_t len,
                                  dsd_s3_uploads_page_t *out, dsd_err_t *err);
void dsd_s3_uploads_page_free(dsd_s3_uploads_page_t *p);

#endif
