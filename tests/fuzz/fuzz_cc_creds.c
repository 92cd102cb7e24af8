/*
 * fuzz_cc_creds.c - libFuzzer target: service key credentials JSON through
 * dsd_cc_credentials_uri (broker/cc_creds.c).
 *
 * The credentials come from whatever service broker (or user-provided
 * service) backs the instance a user names, so they are untrusted. For
 * each dialect the function must either fail with a message that does not
 * quote the password, or return a URI of that dialect's scheme.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "broker/cc.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static const char *const dialects[] = {"pg", "mysql", "mongo", "oracle"};
  json_t *creds = json_loadb((const char *)data, size, JSON_DECODE_ANY, NULL);
  dsd_err_t err;
  if (creds == NULL) return 0;
  const char *pw = json_string_value(json_object_get(creds, "password"));
  for (size_t d = 0; d < sizeof(dialects) / sizeof(dialects[0]); d++) {
    char *uri = NULL;
    dsd_err_clear(&err);
    int rc = dsd_cc_credentials_uri(creds, dialects[d], &uri, &err);
    if (rc == 0) {
      if (uri == NULL || d == 3) abort();
      static const char *const schemes[] = {"postgres", "mysql://", "mongodb"};
      if (strncasecmp(uri, schemes[d], strlen(schemes[d])) != 0) abort();
    } else {
      if (uri != NULL || err.msg[0] == '\0') abort();
      if (pw != NULL && strlen(pw) >= 8 && strstr(err.msg, pw) != NULL) abort();
    }
    free(uri);
  }
  (void)dsd_cc_dialect_of(json_string_value(json_object_get(creds, "offering")),
                          json_string_value(json_object_get(creds, "plan")));
  const char *s = json_string_value(json_object_get(creds, "name"));
  if (s != NULL) {
    char *enc = dsd_cc_urlencode(s);
    if (enc == NULL) abort();
    for (const char *c = enc; *c; c++)
      if (*c == '/' || *c == '?' || *c == '&' || *c == ' ') abort();
    free(enc);
  }
  json_decref(creds);
  return 0;
}
