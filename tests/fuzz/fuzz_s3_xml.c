/*
 * fuzz_s3_xml.c - libFuzzer target: S3 response bodies through s3/xml.c.
 *
 * An S3 endpoint (or anything in the network path when TLS verification is
 * off) controls these bytes, so every parser must cope with any input: not
 * NUL-terminated, truncated, nested, entity-laden. Each parser either
 * fails with a message or returns a structure whose strings are
 * NUL-terminated and freed cleanly (ASan checks the memory side).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "s3/xml.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  /* An exact-size copy without a terminator: the parsers must honour len. */
  char *xml = malloc(size ? size : 1);
  dsd_err_t err;
  if (xml == NULL) return 0;
  memcpy(xml, data, size);

  dsd_s3_xml_error_t e = {0};
  if (dsd_s3_xml_parse_error(xml, size, &e)) {
    if (e.code) (void)strlen(e.code);
    if (e.message) (void)strlen(e.message);
  }
  dsd_s3_xml_error_free(&e);

  dsd_s3_list_page_t page = {0};
  dsd_err_clear(&err);
  if (dsd_s3_xml_parse_list_v2(xml, size, &page, &err) == 0) {
    for (size_t i = 0; i < page.n; i++) {
      if (page.entries[i].key == NULL) abort();
      (void)strlen(page.entries[i].key);
    }
    if (page.truncated && page.next_token) (void)strlen(page.next_token);
  } else if (err.msg[0] == '\0') {
    abort();
  }
  dsd_s3_list_page_free(&page);

  char *upload_id = NULL;
  dsd_err_clear(&err);
  if (dsd_s3_xml_parse_initiate(xml, size, &upload_id, &err) == 0) {
    if (upload_id == NULL) abort();
    (void)strlen(upload_id);
  } else if (err.msg[0] == '\0') {
    abort();
  }
  free(upload_id);

  dsd_s3_uploads_page_t up = {0};
  dsd_err_clear(&err);
  if (dsd_s3_xml_parse_list_uploads(xml, size, &up, &err) == 0) {
    for (size_t i = 0; i < up.n; i++) {
      if (up.entries[i].key == NULL || up.entries[i].upload_id == NULL) abort();
    }
  } else if (err.msg[0] == '\0') {
    abort();
  }
  dsd_s3_uploads_page_free(&up);

  char *t = dsd_s3_xml_text(xml, size, "Key");
  free(t);
  char *d = dsd_s3_xml_decode(xml, size);
  if (d != NULL && strlen(d) > size) abort(); /* decoding never grows text */
  free(d);

  /* Dates come from LastModified; any text must give a number or 0. */
  char *z = malloc(size + 1);
  if (z != NULL) {
    memcpy(z, data, size);
    z[size] = '\0';
    (void)dsd_s3_parse_iso8601(z);
    free(z);
  }

  const char *pos = xml, *content;
  size_t clen;
  int guard = 0;
  while (dsd_s3_xml_next(&pos, xml + size, "Upload", &content, &clen)) {
    if (content < xml || content + clen > xml + size || pos > xml + size) abort();
    if (++guard > 100000) abort(); /* the scanner must always advance */
  }
  free(xml);
  return 0;
}
