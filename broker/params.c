/*
 * params.c - validation of everything a platform sends the broker: the API
 * version header, instance and binding ids, the originating identity, and
 * the provision/update parameters with the DSD_ALLOW_DIRECT_URIS host rules.
 *
 * Pure functions without I/O, so tests/unit/test_broker_params.c exercises
 * them directly. Messages say what to change; a connection URI is a secret
 * and never appears in a message (only the parameter's name does).
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "broker/broker.h"

/* ------------------------------------------------------- version header */

int dsd_broker_version_parse(const char *hdr, int *minor, dsd_err_t *err) {
  const char *p = hdr;
  long maj = 0, min = 0;
  char *end = NULL;
  if (hdr == NULL || hdr[0] == '\0')
    return dsd_err_set(err, DSD_EINVAL,
                       "the X-Broker-API-Version header is missing: this broker speaks "
                       "version 2.%d and later 2.x versions",
                       DSD_BROKER_MIN_MINOR);
  if (!isdigit((unsigned char)p[0]))
    goto bad;
  maj = strtol(p, &end, 10);
  if (*end != '.' || !isdigit((unsigned char)end[1]))
    goto bad;
  min = strtol(end + 1, &end, 10);
  if (*end != '\0' || maj != 2 || min < DSD_BROKER_MIN_MINOR || min > 1000)
    goto bad;
  *minor = (int)min;
  return 0;
bad:
  return dsd_err_set(err, DSD_EINVAL,
                     "unsupported X-Broker-API-Version: this broker speaks version 2.%d and "
                     "later 2.x versions",
                     DSD_BROKER_MIN_MINOR);
}

/* ------------------------------------------------------------------ ids */

bool dsd_broker_id_valid(const char *id) {
  size_t n = id ? strlen(id) : 0;
  if (n == 0 || n > 255)
    return false;
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)id[i];
    if (!(isalnum(c) || c == '-' || c == '_' || c == '.'))
      return false;
  }
  /* ".", ".." and anything with ".." could walk a file:// store */
  return strstr(id, "..") == NULL && strcmp(id, ".") != 0;
}

/* ------------------------------------------------- originating identity */

int dsd_broker_identity_parse(const char *hdr, char **user) {
  int rc = DSD_EINVAL;
  unsigned char *raw = NULL;
  json_t *doc = NULL;
  char platform[64];
  *user = NULL;
  if (hdr == NULL)
    goto cleanup;
  const char *sp = strchr(hdr, ' ');
  if (sp == NULL || sp == hdr || (size_t)(sp - hdr) >= sizeof(platform))
    goto cleanup;
  memcpy(platform, hdr, (size_t)(sp - hdr));
  platform[sp - hdr] = '\0';
  const char *b64 = sp + 1;
  while (*b64 == ' ')
    b64++;
  size_t n = strlen(b64);
  if (n == 0 || n > 8192 || n % 4 != 0)
    goto cleanup;
  raw = malloc(n / 4 * 3 + 1);
  if (raw == NULL) {
    rc = DSD_ENOMEM;
    goto cleanup;
  }
  int len = EVP_DecodeBlock(raw, (const unsigned char *)b64, (int)n);
  if (len < 0)
    goto cleanup;
  /* EVP_DecodeBlock counts the '=' padding as zero bytes */
  if (n >= 1 && b64[n - 1] == '=')
    len--;
  if (n >= 2 && b64[n - 2] == '=')
    len--;
  doc = json_loadb((const char *)raw, (size_t)len, 0, NULL);
  if (!json_is_object(doc))
    goto cleanup;
  const char *uid = json_string_value(json_object_get(doc, "user_id"));
  if (uid == NULL && strcmp(platform, "cloudfoundry") != 0)
    uid = json_string_value(json_object_get(doc, "username"));
  if (uid == NULL || uid[0] == '\0' || strlen(uid) > 255)
    goto cleanup;
  for (const char *c = uid; *c; c++)
    if (iscntrl((unsigned char)*c))
      goto cleanup;
  if (asprintf(user, "%s:%s", platform, uid) < 0) {
    *user = NULL;
    rc = DSD_ENOMEM;
    goto cleanup;
  }
  rc = 0;
cleanup:
  free(raw);
  json_decref(doc);
  return rc;
}

/* ----------------------------------------------------------------- URIs */

/* Splits "scheme://[userinfo@]hosts[/...]": returns the scheme length and
 * sets [*hosts, *hosts_end). Returns 0 when there is no "://". */
static size_t dsd__uri_split(const char *uri, const char **hosts, const char **hosts_end) {
  const char *sep = strstr(uri, "://");
  if (sep == NULL || sep == uri)
    return 0;
  const char *auth = sep + 3;
  const char *end = auth + strcspn(auth, "/?#");
  /* the last '@' before the path ends the userinfo (passwords may hold '@') */
  const char *at = NULL;
  for (const char *c = auth; c < end; c++)
    if (*c == '@')
      at = c;
  *hosts = at ? at + 1 : auth;
  *hosts_end = end;
  return (size_t)(sep - uri);
}

/* True for loopback and link-local addresses and names. */
static bool dsd__host_private(const char *host) {
  unsigned char a6[16];
  struct in_addr a4;
  size_t n = strlen(host);
  if (n == 0)
    return true; /* "pg:///db" means a local socket */
  if (strcasecmp(host, "localhost") == 0 ||
      (n > 10 && strcasecmp(host + n - 10, ".localhost") == 0) ||
      (n > 11 && strcasecmp(host + n - 11, ".localhost.") == 0) ||
      strcasecmp(host, "localhost.") == 0)
    return true;
  if (inet_pton(AF_INET, host, &a4) == 1) {
    uint32_t ip = ntohl(a4.s_addr);
    return (ip >> 24) == 127 || (ip >> 16) == 0xA9FE || ip == 0;
  }
  if (inet_pton(AF_INET6, host, a6) == 1) {
    static const unsigned char loop[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
    static const unsigned char any[16] = {0};
    static const unsigned char mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    if (memcmp(a6, loop, 16) == 0 || memcmp(a6, any, 16) == 0)
      return true;
    if (a6[0] == 0xfe && (a6[1] & 0xc0) == 0x80)
      return true;
    if (memcmp(a6, mapped, 12) == 0)
      return a6[12] == 127 || (a6[12] == 169 && a6[13] == 254) ||
             (a6[12] | a6[13] | a6[14] | a6[15]) == 0;
    return false;
  }
  /* Other numeric spellings (decimal "2130706433", octal) are refused
   * outright rather than guessed at: a real host name has a letter. */
  bool letter = false;
  for (const char *c = host; *c; c++)
    if (isalpha((unsigned char)*c))
      letter = true;
  return !letter;
}

/* The host check below reads the URI one way; libpq and the mysql driver
 * read it their own way and also take hosts from elsewhere. In "true" mode
 * a URI must therefore have one unambiguous reading (found by fuzzing
 * against PQconninfoParse, tests/fuzz/fuzz_conn_uri.c):
 * - libpq ends the userinfo at the FIRST '@' before '/', this file at the
 *   last one before "/?#": so at most one '@' there, not after '?' or '#';
 * - libpq keeps '#' in host names ("a#,127.0.0.1" is two hosts): no '#';
 * - libpq and the mysql driver percent-decode the host: no '%' in it;
 * - query parameters that pick the host or a local socket (libpq host,
 *   hostaddr, service, servicefile; mysql socket) are refused. */
static int dsd__uri_public_shape(const char *uri, const char *hosts, const char *hosts_end,
                                 const char *what, dsd_err_t *err) {
  const char *auth = strstr(uri, "://") + 3;
  const char *auth_end = auth + strcspn(auth, "/");
  const char *first_at = memchr(auth, '@', (size_t)(auth_end - auth));
  if (strchr(uri, '#') != NULL)
    return dsd_err_set(err, DSD_EINVAL, "%s contains '#'\nHINT: percent-encode it as %%23", what);
  if (first_at != NULL) {
    if (memchr(first_at + 1, '@', (size_t)(auth_end - first_at - 1)) != NULL ||
        memchr(auth, '?', (size_t)(first_at - auth)) != NULL)
      return dsd_err_set(err, DSD_EINVAL,
                         "%s has more than one '@' or a '?' before its host\nHINT: "
                         "percent-encode '@' in the user name or password as %%40",
                         what);
  }
  if (memchr(hosts, '%', (size_t)(hosts_end - hosts)) != NULL)
    return dsd_err_set(err, DSD_EINVAL,
                       "%s has a percent-encoded host\nHINT: write the host name as is", what);
  const char *q = strchr(uri, '?');
  while (q != NULL) {
    static const char *const banned[] = {"host", "hostaddr", "service", "servicefile",
                                         "socket", "unix_socket", NULL};
    char key[32];
    size_t k = 0;
    const char *c = q + 1;
    /* decode the key as the drivers do, so "h%6Fst" is "host" */
    while (*c && *c != '=' && *c != '&' && k + 1 < sizeof(key)) {
      if (*c == '%' && isxdigit((unsigned char)c[1]) && isxdigit((unsigned char)c[2])) {
        char hex[3] = {c[1], c[2], 0};
        key[k++] = (char)strtol(hex, NULL, 16);
        c += 3;
      } else {
        key[k++] = *c++;
      }
    }
    key[k] = '\0';
    for (size_t i = 0; banned[i] != NULL; i++)
      if (strcasecmp(key, banned[i]) == 0)
        return dsd_err_set(err, DSD_EINVAL,
                           "%s sets \"%s\" in its query, which this broker refuses\nHINT: "
                           "put the database's routable host name in the uri's host part",
                           what, banned[i]);
    q = strchr(c, '&');
  }
  return 0;
}

int dsd_broker_uri_check(dsd_direct_uris_t mode, const dsd_broker_plan_t *plan,
                         const char *what, const char *uri, dsd_err_t *err) {
  const char *hosts = NULL, *hosts_end = NULL;
  if (mode == DSD_DIRECT_URIS_NONE)
    return dsd_err_set(err, DSD_EINVAL,
                       "%s is not allowed on this broker\nHINT: name a service instance "
                       "instead, or ask the operator to set DSD_ALLOW_DIRECT_URIS",
                       what);
  size_t slen = dsd__uri_split(uri, &hosts, &hosts_end);
  bool scheme_ok = false;
  for (size_t i = 0; slen > 0 && plan->schemes[i] != NULL; i++)
    if (strlen(plan->schemes[i]) == slen && strncasecmp(uri, plan->schemes[i], slen) == 0)
      scheme_ok = true;
  if (!scheme_ok) {
    char list[128] = "";
    for (size_t i = 0; plan->schemes[i] != NULL; i++) {
      if (i > 0)
        strcat(list, " or ");
      strcat(list, plan->schemes[i]);
      strcat(list, "://");
    }
    return dsd_err_set(err, DSD_EINVAL,
                       "%s does not match the %s plan: it must start with %s\nHINT: choose "
                       "the plan of the database's kind",
                       what, plan->name, list);
  }
  for (const char *c = uri; *c; c++)
    if (iscntrl((unsigned char)*c) || *c == ' ')
      return dsd_err_set(err, DSD_EINVAL, "%s contains spaces or control characters", what);
  if (mode == DSD_DIRECT_URIS_ALL)
    return 0;
  /* mongodb lists several hosts separated by ',' */
  const char *h = hosts;
  while (h <= hosts_end) {
    const char *comma = memchr(h, ',', (size_t)(hosts_end - h));
    const char *e = comma ? comma : hosts_end;
    char host[256];
    const char *hs = h, *he = e;
    if (hs < he && *hs == '[') {
      const char *rb = memchr(hs, ']', (size_t)(he - hs));
      if (rb == NULL)
        return dsd_err_set(err, DSD_EINVAL, "%s has a malformed host", what);
      hs++;
      he = rb;
    } else {
      const char *colon = memchr(hs, ':', (size_t)(he - hs));
      if (colon)
        he = colon;
    }
    if ((size_t)(he - hs) >= sizeof(host))
      return dsd_err_set(err, DSD_EINVAL, "%s has a host name that is too long", what);
    memcpy(host, hs, (size_t)(he - hs));
    host[he - hs] = '\0';
    if (dsd__host_private(host))
      return dsd_err_set(err, DSD_EINVAL,
                         "%s points to a loopback or link-local host, which this broker "
                         "refuses\nHINT: use the database's routable host name",
                         what);
    if (comma == NULL)
      break;
    h = comma + 1;
  }
  /* after the host loop, so a plain loopback host gets that message */
  return dsd__uri_public_shape(uri, hosts, hosts_end, what, err);
}

char *dsd_broker_uri_strip_password(const char *uri) {
  const char *hosts = NULL, *hosts_end = NULL;
  size_t slen = dsd__uri_split(uri, &hosts, &hosts_end);
  if (slen == 0 || hosts == uri + slen + 3)
    return strdup(uri);
  const char *auth = uri + slen + 3;
  const char *colon = memchr(auth, ':', (size_t)(hosts - auth));
  if (colon == NULL)
    return strdup(uri);
  char *out = NULL;
  if (asprintf(&out, "%.*s%s", (int)(colon - uri), uri, hosts - 1) < 0)
    return NULL;
  return out;
}

/* ----------------------------------------------------------- parameters */

void dsd_broker_params_free(dsd_broker_params_t *p) {
  /* The password stays registered with the redactor: another job or a
   * repeated request may hold the same URI, so unregistering here could
   * unmask it for them. */
  if (p->uri != NULL)
    memset(p->uri, 0, strlen(p->uri));
  free(p->uri);
  free(p->instance_name);
  free(p->compression);
  json_decref(p->anonymize);
  memset(p, 0, sizeof(*p));
}

/* Common part: name/uri pair (source or target). */
static int dsd__params_endpoint(const dsd_broker_config_t *cfg, const dsd_broker_plan_t *plan,
                                const json_t *params, const char *name_key,
                                const char *uri_key, bool required,
                                dsd_broker_params_t *out, dsd_err_t *err) {
  json_t *name = json_object_get(params, name_key);
  json_t *uri = json_object_get(params, uri_key);
  if (name != NULL && uri != NULL)
    return dsd_err_set(err, DSD_EINVAL,
                       "give either %s or %s, not both\nHINT: %s names a service instance in "
                       "the same space, %s is a connection URI",
                       name_key, uri_key, name_key, uri_key);
  if (name == NULL && uri == NULL) {
    if (!required)
      return 0;
    return dsd_err_set(err, DSD_EINVAL,
                       "the %s parameter is required\nHINT: cf create-service "
                       "data-service-dump %s NAME -c '{\"%s\":\"INSTANCE\"}'",
                       name_key, plan->name, name_key);
  }
  if (name != NULL) {
    const char *s = json_string_value(name);
    if (s == NULL || s[0] == '\0' || strlen(s) > 255)
      return dsd_err_set(err, DSD_EINVAL, "%s must be a non-empty string (a service instance name)",
                         name_key);
    if (cfg->cf_api == NULL)
      return dsd_err_set(err, DSD_EINVAL,
                         "%s names a service instance, but resolving instance names needs "
                         "DSD_CF_API on the broker, which is not configured\nHINT: use %s "
                         "with a connection URI (when the broker allows direct URIs)",
                         name_key, uri_key);
    out->instance_name = strdup(s);
    return out->instance_name ? 0 : dsd_err_set(err, DSD_ENOMEM, "out of memory");
  }
  const char *s = json_string_value(uri);
  if (s == NULL || s[0] == '\0')
    return dsd_err_set(err, DSD_EINVAL, "%s must be a non-empty string", uri_key);
  int rc = dsd_broker_uri_check(cfg->direct_uris, plan, uri_key, s, err);
  if (rc < 0)
    return rc;
  out->uri = strdup(s);
  if (out->uri == NULL)
    return dsd_err_set(err, DSD_ENOMEM, "out of memory");
  /* The log redactor masks "user:PASSWORD@" by pattern; registering the
   * password itself also catches it where a library echoes it alone. */
  const char *hs = NULL, *he = NULL;
  size_t slen = dsd__uri_split(out->uri, &hs, &he);
  if (slen > 0 && hs > out->uri + slen + 3) {
    const char *auth = out->uri + slen + 3;
    const char *colon = memchr(auth, ':', (size_t)(hs - 1 - auth));
    if (colon != NULL) {
      char *pw = strndup(colon + 1, (size_t)(hs - 1 - (colon + 1)));
      if (pw != NULL)
        dsd_redact_register(pw);
      free(pw);
    }
  }
  return 0;
}

static int dsd__params_unknown(const json_t *params, const char *const *known, dsd_err_t *err) {
  const char *key;
  json_t *v;
  json_object_foreach((json_t *)params, key, v) {
    bool ok = false;
    for (size_t i = 0; known[i] != NULL; i++)
      if (strcmp(key, known[i]) == 0)
        ok = true;
    if (!ok) {
      char list[256] = "";
      for (size_t i = 0; known[i] != NULL; i++) {
        if (i > 0)
          strcat(list, ", ");
        strcat(list, known[i]);
      }
      /* the key comes from the user; keep it printable and short */
      char safe[65];
      size_t j = 0;
      for (const char *c = key; *c && j < sizeof(safe) - 1; c++)
        safe[j++] = isprint((unsigned char)*c) ? *c : '?';
      safe[j] = '\0';
      return dsd_err_set(err, DSD_EINVAL, "unknown parameter '%s'\nHINT: accepted parameters: %s",
                         safe, list);
    }
  }
  return 0;
}

int dsd_broker_params_provision(const dsd_broker_config_t *cfg, const dsd_broker_plan_t *plan,
                                const json_t *params, dsd_broker_params_t *out,
                                dsd_err_t *err) {
  static const char *const known[] = {"source", "source_uri", "anonymize", "compression", NULL};
  int rc = 0;
  memset(out, 0, sizeof(*out));
  json_t *empty = NULL;
  if (params == NULL || json_is_null(params))
    params = empty = json_object();
  if (!json_is_object(params)) {
    rc = dsd_err_set(err, DSD_EINVAL, "parameters must be a JSON object");
    goto cleanup;
  }
  rc = dsd__params_unknown(params, known, err);
  if (rc < 0)
    goto cleanup;
  json_t *comp = json_object_get(params, "compression");
  const char *cs = comp ? json_string_value(comp) : "zstd";
  if (cs == NULL || (strcmp(cs, "zstd") != 0 && strcmp(cs, "gzip") != 0 && strcmp(cs, "none") != 0)) {
    rc = dsd_err_set(err, DSD_EINVAL, "compression must be one of zstd, gzip, none");
    goto cleanup;
  }
  json_t *anon = json_object_get(params, "anonymize");
  if (anon != NULL && !json_is_object(anon)) {
    rc = dsd_err_set(err, DSD_EINVAL, "anonymize must be a JSON object of rules (see README)");
    goto cleanup;
  }
  rc = dsd__params_endpoint(cfg, plan, params, "source", "source_uri", true, out, err);
  if (rc < 0)
    goto cleanup;
  out->compression = strdup(cs);
  if (out->compression == NULL) {
    rc = dsd_err_set(err, DSD_ENOMEM, "out of memory");
    goto cleanup;
  }
  if (anon != NULL) {
    const char *salt = json_string_value(json_object_get(anon, "salt"));
    if (salt != NULL)
      dsd_redact_register(salt);
    out->anonymize = json_deep_copy(anon);
  }
  out->clean = true;
cleanup:
  json_decref(empty);
  if (rc < 0)
    dsd_broker_params_free(out);
  return rc;
}

int dsd_broker_params_update(const dsd_broker_config_t *cfg, const dsd_broker_plan_t *plan,
                             const json_t *params, dsd_broker_params_t *out, dsd_err_t *err) {
  static const char *const known[] = {"target", "target_uri", "clean", NULL};
  int rc = 0;
  memset(out, 0, sizeof(*out));
  if (!json_is_object(params)) {
    rc = dsd_err_set(err, DSD_EINVAL, "parameters must be a JSON object");
    goto cleanup;
  }
  rc = dsd__params_unknown(params, known, err);
  if (rc < 0)
    goto cleanup;
  json_t *clean = json_object_get(params, "clean");
  if (clean != NULL && !json_is_boolean(clean)) {
    rc = dsd_err_set(err, DSD_EINVAL, "clean must be true or false");
    goto cleanup;
  }
  out->clean = clean == NULL || json_is_true(clean);
  rc = dsd__params_endpoint(cfg, plan, params, "target", "target_uri", true, out, err);
cleanup:
  if (rc < 0)
    dsd_broker_params_free(out);
  return rc;
}
