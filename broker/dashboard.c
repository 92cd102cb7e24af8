/*
 * dashboard.c - the per-instance dashboard (the OSB `dashboard_url`).
 *
 *   GET  /dashboard/:id?token=T           the page (HTML and inline CSS)
 *   GET  /dashboard/:id/download?token=T  the dump (download.c streams it)
 *   POST /dashboard/:id/cancel            form field token=T: cancels the
 *                                         running dump or import, then 303
 *                                         back to the page
 *
 * The page shows the instance's status and live progress (a meta refresh
 * every 5 s while an operation runs; no script), the dump's summary (size,
 * sha256, tables with rows and bytes), the anonymization rules (without the
 * salt), and every operation with its log. It has no external assets.
 *
 * Access: an unguessable per-instance token. At provision the broker draws
 * a random 32-byte salt; the token is HMAC-SHA256(broker password,
 * "dsd-dashboard\n<id>\n<salt>") in hex, so it can be given again (repeat
 * provision, GET instance) while the store holds only the salt and
 * sha256(salt || token). Whoever holds the dashboard_url holds the token:
 * Cloud Foundry shows it to the instance's space members only. UAA single
 * sign-on is future work.
 */
#include <stdlib.h>
#include <string.h>

#include <microhttpd.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "broker/broker.h"
#include "core/archive.h"
#include "core/buf.h"

#define DSD__REFRESH_S 5
#define DSD__PAGE_LOG_LINES 200 /* per operation on the page; the task API has the rest */

/* ------------------------------------------------------------- tokens */

static void dsd__hex(const unsigned char *in, size_t n, char *out) {
  for (size_t i = 0; i < n; i++)
    snprintf(out + 2 * i, 3, "%02x", in[i]);
}

static void dsd__token_derive(dsd_broker_t *b, const char *id, const char *salt, char out[65]) {
  unsigned char mac[32];
  unsigned int len = 0;
  char msg[700];
  int n = snprintf(msg, sizeof(msg), "dsd-dashboard\n%s\n%s", id, salt);
  const char *k = b->cfg->password;
  HMAC(EVP_sha256(), k, (int)strlen(k), (const unsigned char *)msg, (size_t)n, mac, &len);
  dsd__hex(mac, 32, out);
  OPENSSL_cleanse(mac, sizeof(mac));
}

static void dsd__token_hash(const char *salt, const char *token, char out[65]) {
  unsigned char md[32];
  EVP_MD_CTX *m = EVP_MD_CTX_new();
  EVP_DigestInit_ex(m, EVP_sha256(), NULL);
  EVP_DigestUpdate(m, salt, strlen(salt));
  EVP_DigestUpdate(m, token, strlen(token));
  EVP_DigestFinal_ex(m, md, NULL);
  EVP_MD_CTX_free(m);
  dsd__hex(md, 32, out);
}

int dsd_broker_dashboard_init(dsd_broker_t *b, const char *id, json_t *inst, dsd_err_t *err) {
  char salt[65], token[65], hash[65];
  if (dsd_broker_random_hex(salt, 32) < 0)
    return dsd_err_set(err, DSD_EINTERNAL, "no random numbers available");
  dsd__token_derive(b, id, salt, token);
  dsd__token_hash(salt, token, hash);
  OPENSSL_cleanse(token, sizeof(token));
  if (json_object_set_new(inst, "dashboard",
                          json_pack("{s:s, s:s}", "salt", salt, "token_sha256", hash)) < 0)
    return dsd_err_set(err, DSD_ENOMEM, "out of memory");
  return 0;
}

json_t *dsd_broker_dashboard_url(dsd_broker_t *b, const char *id, const json_t *inst) {
  const char *salt = json_string_value(json_object_get(json_object_get(inst, "dashboard"), "salt"));
  char token[65], url[1400];
  if (salt == NULL)
    return NULL;
  dsd__token_derive(b, id, salt, token);
  snprintf(url, sizeof(url), "%s/dashboard/%s?token=%s", b->cfg->public_url, id, token);
  OPENSSL_cleanse(token, sizeof(token));
  return json_string(url);
}

bool dsd_broker_dashboard_token_ok(dsd_broker_t *b, const char *id, const json_t *inst,
                                   const char *token) {
  json_t *d = json_object_get(inst, "dashboard");
  const char *salt = json_string_value(json_object_get(d, "salt"));
  const char *want = json_string_value(json_object_get(d, "token_sha256"));
  char hash[65];
  if (salt == NULL || want == NULL || strlen(want) != 64 || token == NULL || strlen(token) > 256)
    return false;
  dsd__token_hash(salt, token, hash);
  return CRYPTO_memcmp(hash, want, 64) == 0;
}

const char *dsd__broker_request_token(struct MHD_Connection *c) {
  const char *auth = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
  if (auth != NULL && strncasecmp(auth, "Bearer ", 7) == 0) {
    auth += 7;
    while (*auth == ' ')
      auth++;
    return auth;
  }
  return MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "token");
}

/* ---------------------------------------------------------------- HTML */

static void dsd__esc(dsd_buf_t *o, const char *s) {
  for (; s != NULL && *s; s++) {
    switch (*s) {
    case '<':
      dsd_buf_append_str(o, "&lt;");
      break;
    case '>':
      dsd_buf_append_str(o, "&gt;");
      break;
    case '&':
      dsd_buf_append_str(o, "&amp;");
      break;
    case '"':
      dsd_buf_append_str(o, "&quot;");
      break;
    case '\'':
      dsd_buf_append_str(o, "&#39;");
      break;
    default:
      dsd_buf_append_char(o, *s);
    }
  }
}

static const char *dsd__s(const json_t *o, const char *k) {
  return json_string_value(json_object_get(o, k));
}

static void dsd__bytes(dsd_buf_t *o, json_int_t n) {
  static const char *const units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double v = (double)n;
  int u = 0;
  while (v >= 1024 && u < 4) {
    v /= 1024;
    u++;
  }
  if (u == 0)
    dsd_buf_printf(o, "%" JSON_INTEGER_FORMAT " B", n);
  else
    dsd_buf_printf(o, "%.1f %s", v, units[u]);
}

static const char *dsd__status_of(const json_t *inst, const json_t *op) {
  const char *type = dsd__s(op, "type"), *state = dsd__s(op, "state");
  bool running = state != NULL && strcmp(state, "in progress") == 0;
  if (json_is_true(json_object_get(inst, "deleting")))
    return "deleting";
  if (type != NULL && strcmp(type, "provision") == 0 && running)
    return "dumping";
  if (type != NULL && strcmp(type, "update") == 0 && running)
    return "importing";
  if (json_object_get(inst, "dump") != NULL)
    return "ready";
  return "failed";
}

static const char dsd__css[] =
    "body{font:15px/1.45 system-ui,-apple-system,'Segoe UI',sans-serif;margin:0;color:#1c2430;"
    "background:#f4f6f9}"
    "header{background:#1f3a5f;color:#fff;padding:16px 28px}"
    "header h1{margin:0;font-size:20px;font-weight:600}header p{margin:4px 0 0;opacity:.8}"
    "main{max-width:1100px;margin:0 auto;padding:20px 28px}"
    "section{background:#fff;border:1px solid #dde3ea;border-radius:8px;padding:14px 18px;"
    "margin-bottom:18px}"
    "h2{font-size:16px;margin:0 0 10px}"
    "table{border-collapse:collapse;width:100%}th,td{text-align:left;padding:5px 8px;"
    "border-bottom:1px solid #eef1f4;vertical-align:top}th{color:#5a6878;font-weight:600}"
    ".n{text-align:right;font-variant-numeric:tabular-nums}"
    ".badge{display:inline-block;padding:2px 10px;border-radius:12px;font-weight:600;"
    "font-size:13px}"
    ".ready,.succeeded{background:#d9f2e1;color:#1d6b35}"
    ".dumping,.importing,.in-progress{background:#dbe9fb;color:#1f4f8f}"
    ".failed,.deleting{background:#fbe0df;color:#922}"
    "progress{width:100%;height:14px}"
    ".actions{display:flex;gap:12px;align-items:center;margin-top:10px}"
    "a.button,button{font:inherit;padding:6px 14px;border-radius:6px;border:1px solid #1f3a5f;"
    "background:#1f3a5f;color:#fff;text-decoration:none;cursor:pointer}"
    "button.danger{background:#a12a2a;border-color:#a12a2a}"
    "pre{background:#0f1720;color:#d7e0ea;padding:10px;border-radius:6px;overflow:auto;"
    "max-height:320px;font-size:12.5px;margin:6px 0 0}"
    "details{margin:8px 0}summary{cursor:pointer}code{font-size:13px}"
    ".muted{color:#6b7885}";

/* Stream name -> table name, from the archive's manifest (its first entry:
 * only the start of the object is read). The summary names streams only
 * ("pg/data/00001"); each dialect's manifest lists its tables with their
 * stream. Returns a new object, empty when the manifest cannot be read. */
static json_t *dsd__stream_labels(dsd_broker_t *b, const char *dkey) {
  dsd_blob_reader_t *src = NULL;
  dsd_archive_reader_t *ar = NULL;
  dsd_err_t err = {0};
  json_t *labels = json_object();
  if (dsd_blob_reader_open(b->store, dkey, 0, UINT64_MAX, &src, &err) < 0 ||
      dsd_archive_reader_open(src, &ar, &err) < 0)
    goto cleanup;
  const char *k;
  json_t *v;
  json_object_foreach((json_t *)dsd_archive_reader_manifest(ar), k, v) {
    size_t i;
    json_t *t;
    json_array_foreach(json_object_get(v, "tables"), i, t) {
      const char *stream = dsd__s(t, "stream");
      const char *schema = dsd__s(t, "schema") ?: dsd__s(t, "database") ?: dsd__s(t, "db");
      const char *name = dsd__s(t, "name") ?: dsd__s(t, "collection");
      char label[600];
      if (stream == NULL || name == NULL)
        continue;
      snprintf(label, sizeof(label), "%s%s%s", schema ? schema : "", schema ? "." : "", name);
      json_object_set_new(labels, stream, json_string(label));
    }
  }
cleanup:
  if (ar != NULL)
    dsd_archive_reader_free(ar);
  if (src != NULL)
    dsd_blob_reader_close(src);
  return labels;
}

static void dsd__summary(dsd_broker_t *b, dsd_buf_t *o, const json_t *inst) {
  json_t *dump = json_object_get(inst, "dump");
  dsd_buf_append_str(o, "<section><h2>Dump</h2>");
  if (dump == NULL) {
    dsd_buf_append_str(o, "<p class=\"muted\">No dump yet.</p></section>");
    return;
  }
  dsd_buf_append_str(o, "<table><tr><th>Size</th><td>");
  dsd__bytes(o, json_integer_value(json_object_get(dump, "size")));
  dsd_buf_append_str(o, "</td></tr><tr><th>Format</th><td>");
  dsd__esc(o, dsd__s(dump, "format"));
  dsd_buf_append_str(o, "</td></tr><tr><th>Created</th><td>");
  dsd__esc(o, dsd__s(dump, "created_at"));
  dsd_buf_printf(o, "</td></tr><tr><th>Tables</th><td>%" JSON_INTEGER_FORMAT
                    "</td></tr><tr><th>Rows</th><td>%" JSON_INTEGER_FORMAT
                    "</td></tr><tr><th>SHA-256</th><td><code>",
                 json_integer_value(json_object_get(dump, "tables")),
                 json_integer_value(json_object_get(dump, "rows")));
  dsd__esc(o, dsd__s(dump, "sha256"));
  dsd_buf_append_str(o, "</code></td></tr></table>");
  json_t *streams = json_object_get(json_object_get(dump, "summary"), "streams");
  if (json_object_size(streams) > 0) {
    json_t *labels = dsd__stream_labels(b, dsd__s(dump, "key"));
    dsd_buf_append_str(o, "<h2 style=\"margin-top:14px\">Contents</h2><table id=\"streams\">"
                          "<tr><th>Table</th><th>Entry</th><th class=\"n\">Rows</th>"
                          "<th class=\"n\">Bytes</th></tr>");
    const char *name;
    json_t *v;
    json_object_foreach(streams, name, v) {
      const char *label = json_string_value(json_object_get(labels, name));
      dsd_buf_append_str(o, "<tr><td>");
      if (label != NULL)
        dsd__esc(o, label);
      else
        dsd_buf_append_str(o, "<span class=\"muted\">(schema)</span>");
      dsd_buf_append_str(o, "</td><td class=\"muted\">");
      dsd__esc(o, name);
      dsd_buf_printf(o, "</td><td class=\"n\">%" JSON_INTEGER_FORMAT "</td><td class=\"n\">",
                     json_integer_value(json_object_get(v, "rows")));
      dsd__bytes(o, json_integer_value(json_object_get(v, "bytes")));
      dsd_buf_append_str(o, "</td></tr>");
    }
    dsd_buf_append_str(o, "</table>");
    json_decref(labels);
  }
  dsd_buf_append_str(o, "</section>");
}

static void dsd__anonymize(dsd_buf_t *o, const json_t *inst) {
  json_t *anon = json_object_get(json_object_get(inst, "parameters"), "anonymize");
  dsd_buf_append_str(o, "<section><h2>Anonymization</h2>");
  if (!json_is_object(anon)) {
    dsd_buf_append_str(o, "<p class=\"muted\">None: the dump holds the source data as it "
                          "is.</p></section>");
    return;
  }
  dsd_buf_append_str(o, "<p>Default for other columns: <b>");
  dsd__esc(o, dsd__s(anon, "default") ?: "keep");
  dsd_buf_append_str(o, "</b></p><table id=\"anonymized\"><tr><th>Table</th><th>Column</th>"
                        "<th>Strategy</th></tr>");
  const char *t, *col;
  json_t *cols, *rule;
  json_object_foreach(json_object_get(anon, "tables"), t, cols) {
    json_object_foreach(cols, col, rule) {
      dsd_buf_append_str(o, "<tr><td>");
      dsd__esc(o, t);
      dsd_buf_append_str(o, "</td><td>");
      dsd__esc(o, col);
      dsd_buf_append_str(o, "</td><td>");
      if (json_is_string(rule))
        dsd__esc(o, json_string_value(rule));
      else {
        char *txt = json_dumps(rule, JSON_COMPACT | JSON_ENCODE_ANY);
        dsd__esc(o, txt);
        free(txt);
      }
      dsd_buf_append_str(o, "</td></tr>");
    }
  }
  dsd_buf_append_str(o, "</table></section>");
}

static int dsd__collect(void *data, const char *key, const dsd_blob_info_t *info) {
  json_array_append_new(data, json_string(key));
  return 0;
}

static int dsd__by_start(const void *a, const void *b) {
  const char *x = dsd__s(*(json_t *const *)a, "started_at") ?: "";
  const char *y = dsd__s(*(json_t *const *)b, "started_at") ?: "";
  return -strcmp(x, y); /* newest first */
}

static void dsd__history(dsd_broker_t *b, dsd_buf_t *o, const char *id) {
  char prefix[600];
  dsd_err_t err = {0};
  json_t *keys = json_array(), *ops = json_array();
  snprintf(prefix, sizeof(prefix), "instances/%s/operations/", id);
  dsd_buf_append_str(o, "<section id=\"operations\"><h2>Operations</h2>");
  if (dsd_blob_list(b->store, prefix, dsd__collect, keys, &err) < 0) {
    dsd_buf_append_str(o, "<p>The operation history cannot be read: ");
    dsd__esc(o, dsd_err_msg(&err));
    dsd_buf_append_str(o, "</p>");
  }
  size_t i;
  json_t *k;
  json_array_foreach(keys, i, k) {
    json_t *op = NULL;
    dsd_err_t gerr = {0};
    if (dsd_broker_state_get(b->store, json_string_value(k), &op, &gerr) == 0 &&
        dsd__s(op, "id") != NULL)
      json_array_append_new(ops, op);
    else
      json_decref(op);
  }
  size_t n = json_array_size(ops);
  json_t **v = calloc(n ? n : 1, sizeof(*v));
  for (i = 0; v != NULL && i < n; i++)
    v[i] = json_array_get(ops, i);
  if (v != NULL)
    qsort(v, n, sizeof(*v), dsd__by_start);
  for (i = 0; v != NULL && i < n; i++) {
    json_t *op = v[i];
    const char *state = dsd__s(op, "state") ?: "failed";
    dsd_buf_append_str(o, "<details class=\"op\"");
    if (i == 0)
      dsd_buf_append_str(o, " open");
    dsd_buf_append_str(o, "><summary><b>");
    dsd__esc(o, dsd__s(op, "type"));
    dsd_buf_append_str(o, "</b> <span class=\"badge ");
    dsd_buf_append_str(o, strcmp(state, "in progress") == 0 ? "in-progress" : state);
    dsd_buf_append_str(o, "\">");
    dsd__esc(o, state);
    dsd_buf_append_str(o, "</span> <span class=\"muted\">");
    dsd__esc(o, dsd__s(op, "started_at"));
    if (dsd__s(op, "finished_at") != NULL) {
      dsd_buf_append_str(o, " &ndash; ");
      dsd__esc(o, dsd__s(op, "finished_at"));
    }
    dsd_buf_append_str(o, " &middot; task <code>");
    dsd__esc(o, id);
    dsd_buf_append_char(o, '~');
    dsd__esc(o, dsd__s(op, "id"));
    dsd_buf_append_str(o, "</code></span></summary><p>");
    dsd__esc(o, dsd__s(op, "description"));
    dsd_buf_append_str(o, "</p>");
    json_t *lines = NULL;
    size_t next = 0;
    dsd_err_t lerr = {0};
    if (dsd_broker_oplog_read(b, id, dsd__s(op, "id"), op, 0, DSD__PAGE_LOG_LINES, &lines, &next,
                              &lerr) == 0 &&
        json_array_size(lines) > 0) {
      dsd_buf_append_str(o, "<pre class=\"log\">");
      size_t j;
      json_t *l;
      json_array_foreach(lines, j, l) {
        dsd__esc(o, dsd__s(l, "at"));
        dsd_buf_append_str(o, "  ");
        dsd__esc(o, dsd__s(l, "line"));
        dsd_buf_append_char(o, '\n');
      }
      json_int_t total = json_integer_value(json_object_get(op, "log_lines"));
      if (total > (json_int_t)next)
        dsd_buf_printf(o, "... %" JSON_INTEGER_FORMAT " more lines: GET /v1/tasks/%s~%s?log_offset=%zu\n",
                       total - (json_int_t)next, id, dsd__s(op, "id"), next);
      dsd_buf_append_str(o, "</pre>");
    }
    json_decref(lines);
    dsd_buf_append_str(o, "</details>");
  }
  if (n == 0)
    dsd_buf_append_str(o, "<p class=\"muted\">No operations recorded.</p>");
  dsd_buf_append_str(o, "</section>");
  free(v);
  json_decref(ops);
  json_decref(keys);
}

static int dsd__page(dsd_broker_t *b, struct MHD_Connection *c, const char *id,
                     const json_t *inst, const json_t *op, const char *token) {
  dsd_buf_t o = DSD_BUF_INIT;
  const char *st = dsd__status_of(inst, op);
  bool running = strcmp(st, "dumping") == 0 || strcmp(st, "importing") == 0;
  dsd_buf_append_str(&o, "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">"
                         "<meta name=\"viewport\" content=\"width=device-width\">");
  if (running || strcmp(st, "deleting") == 0)
    dsd_buf_printf(&o, "<meta http-equiv=\"refresh\" content=\"%d\">", DSD__REFRESH_S);
  dsd_buf_append_str(&o, "<title>dump ");
  dsd__esc(&o, id);
  dsd_buf_printf(&o, "</title><style>%s</style></head><body><header><h1>data-service-dump: ",
                 dsd__css);
  dsd__esc(&o, json_string_value(json_object_get(json_object_get(inst, "context"),
                                                 "instance_name")) ?: id);
  dsd_buf_append_str(&o, "</h1><p>instance ");
  dsd__esc(&o, id);
  dsd_buf_append_str(&o, " &middot; plan ");
  dsd__esc(&o, dsd__s(inst, "plan"));
  dsd_buf_append_str(&o, " &middot; created ");
  dsd__esc(&o, dsd__s(inst, "created_at"));
  dsd_buf_printf(&o, "</p></header><main><section><h2>Status</h2><p>"
                     "<span id=\"status\" class=\"badge %s\">%s</span> <span id=\"description\">",
                 st, st);
  dsd__esc(&o, dsd__s(op, "description"));
  dsd_buf_append_str(&o, "</span></p>");
  if (running) {
    /* the pipeline's progress line carries "(NN%)" when the total is known */
    const char *pct = strstr(dsd__s(op, "description") ?: "", "%)");
    int percent = -1;
    if (pct != NULL) {
      const char *p = pct;
      while (p > dsd__s(op, "description") && p[-1] >= '0' && p[-1] <= '9')
        p--;
      if (p < pct && p > dsd__s(op, "description") && p[-1] == '(')
        percent = atoi(p);
    }
    if (percent >= 0)
      dsd_buf_printf(&o, "<progress id=\"progress\" max=\"100\" value=\"%d\">%d%%</progress>",
                     percent, percent);
    else
      dsd_buf_append_str(&o, "<progress id=\"progress\"></progress>");
    dsd_buf_printf(&o, "<p class=\"muted\">This page refreshes every %d seconds.</p>",
                   DSD__REFRESH_S);
  }
  dsd_buf_append_str(&o, "<div class=\"actions\">");
  if (json_object_get(inst, "dump") != NULL && strcmp(st, "deleting") != 0)
    dsd_buf_printf(&o, "<a class=\"button\" id=\"download\" href=\"/dashboard/%s/download?"
                       "token=%s\">Download dump</a>",
                   id, token);
  if (running) {
    dsd_buf_printf(&o, "<form method=\"post\" action=\"/dashboard/%s/cancel\">"
                       "<input type=\"hidden\" name=\"token\" value=\"%s\">"
                       "<input type=\"hidden\" name=\"operation\" value=\"",
                   id, token);
    dsd__esc(&o, dsd__s(op, "id"));
    dsd_buf_append_str(&o, "\"><button class=\"danger\" id=\"cancel\" type=\"submit\">"
                           "Cancel</button></form>");
  }
  dsd_buf_append_str(&o, "</div></section>");
  dsd__summary(b, &o, inst);
  dsd__anonymize(&o, inst);
  dsd__history(b, &o, id);
  dsd_buf_append_str(&o, "<p class=\"muted\">Automation: the task API (docs/openapi.json) "
                         "accepts this page's token as a Bearer token.</p></main></body></html>");
  int status = o.data ? dsd__broker_send_text(c, 200, "text/html; charset=utf-8", o.data, o.len)
                      : dsd__broker_send_error(c, 500, "InternalError", "out of memory");
  dsd_buf_free(&o);
  return status;
}

/* A form field of an application/x-www-form-urlencoded body, copied into
 * out when it holds only [A-Za-z0-9._~-] (tokens and ids: no decoding
 * needed). */
static bool dsd__form_field(const char *body, size_t len, const char *name, char *out,
                            size_t cap) {
  size_t nl = strlen(name);
  const char *p = body, *end = body + len;
  while (p != NULL && p < end) {
    const char *amp = memchr(p, '&', (size_t)(end - p));
    const char *fe = amp ? amp : end;
    if ((size_t)(fe - p) > nl && strncmp(p, name, nl) == 0 && p[nl] == '=') {
      size_t vl = (size_t)(fe - p) - nl - 1;
      if (vl == 0 || vl >= cap)
        return false;
      for (size_t i = 0; i < vl; i++) {
        char ch = p[nl + 1 + i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
              ch == '.' || ch == '_' || ch == '-' || ch == '~'))
          return false;
      }
      memcpy(out, p + nl + 1, vl);
      out[vl] = '\0';
      return true;
    }
    p = amp ? amp + 1 : NULL;
  }
  return false;
}

static int dsd__redirect(struct MHD_Connection *c, const char *location) {
  static const char body[] = "see the dashboard";
  struct MHD_Response *r =
      MHD_create_response_from_buffer(sizeof(body) - 1, (void *)body, MHD_RESPMEM_PERSISTENT);
  if (r == NULL)
    return 0;
  MHD_add_response_header(r, "Location", location);
  MHD_add_response_header(r, "Content-Type", "text/plain");
  MHD_add_response_header(r, "Referrer-Policy", "no-referrer");
  enum MHD_Result ret = MHD_queue_response(c, MHD_HTTP_SEE_OTHER, r);
  MHD_destroy_response(r);
  return ret == MHD_YES ? 303 : 0;
}

int dsd_broker_dashboard_serve(dsd_broker_t *b, struct MHD_Connection *c, const char *url,
                               const char *method, const char *body, size_t body_len) {
  char id[300], action[32] = "", token[300], op_id[300], loc[800];
  json_t *inst = NULL, *op = NULL;
  dsd_err_t err = {0};
  int status = 0;
  const char *rest = url + strlen("/dashboard/");
  const char *slash = strchr(rest, '/');
  size_t idlen = slash ? (size_t)(slash - rest) : strlen(rest);
  if (idlen == 0 || idlen >= sizeof(id) || (slash && strlen(slash + 1) >= sizeof(action)))
    return dsd__broker_send_error(c, 404, "NotFound", "no such page");
  memcpy(id, rest, idlen);
  id[idlen] = '\0';
  if (slash != NULL)
    snprintf(action, sizeof(action), "%s", slash + 1);
  if (!dsd_broker_id_valid(id))
    return dsd__broker_send_error(c, 404, "NotFound", "no such page");
  bool is_post = strcmp(method, "POST") == 0;
  const char *tok = NULL;
  if (is_post) {
    tok = body != NULL && dsd__form_field(body, body_len, "token", token, sizeof(token)) ? token
                                                                                       : NULL;
  } else
    tok = dsd__broker_request_token(c);
  int rc = dsd__broker_instance_load(b, id, &inst, &op, &err);
  if (rc < 0 && rc != DSD_ENOTFOUND) {
    status = dsd__broker_send_error(c, 500, "InternalError", dsd_err_msg(&err));
    goto cleanup;
  }
  /* an unknown instance and a wrong token look the same */
  if (inst == NULL || tok == NULL || !dsd_broker_dashboard_token_ok(b, id, inst, tok)) {
    status = dsd__broker_send_error(c, 403, "Forbidden",
                                    "missing or wrong dashboard token\nHINT: open the "
                                    "dashboard_url of the service instance (cf service NAME)");
    goto cleanup;
  }
  if (action[0] == '\0') {
    if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0)
      status = dsd__broker_send_error(c, 405, "MethodNotAllowed", "use GET");
    else
      status = dsd__page(b, c, id, inst, op, tok);
  } else if (strcmp(action, "download") == 0) {
    json_t *dump = json_object_get(inst, "dump");
    const char *dkey = dsd__s(dump, "key");
    if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0)
      status = dsd__broker_send_error(c, 405, "MethodNotAllowed", "use GET");
    else if (dkey == NULL)
      status = dsd__broker_send_error(c, 404, "NotFound", "this service instance has no dump");
    else {
      const char *base = strrchr(dkey, '/');
      status = dsd__broker_stream_dump(b, c, dkey, base ? base + 1 : dkey, dsd__s(dump, "sha256"),
                                       &err);
      if (status == 0)
        status = dsd__broker_send_error(c, 500, "InternalError", dsd_err_msg(&err));
    }
  } else if (strcmp(action, "cancel") == 0) {
    if (!is_post) {
      status = dsd__broker_send_error(c, 405, "MethodNotAllowed", "use POST");
      goto cleanup;
    }
    bool have_op = dsd__form_field(body, body_len, "operation", op_id, sizeof(op_id));
    rc = dsd_broker_cancel_request(b, id, have_op ? op_id : NULL, &err);
    if (rc < 0 && rc != DSD_EBUSY) {
      status = dsd__broker_send_error(c, 500, "InternalError", dsd_err_msg(&err));
      goto cleanup;
    }
    /* not running any more: the page shows how it ended */
    snprintf(loc, sizeof(loc), "/dashboard/%s?token=%s", id, tok);
    status = dsd__redirect(c, loc);
  } else {
    status = dsd__broker_send_error(c, 404, "NotFound", "no such page");
  }
cleanup:
  json_decref(inst);
  json_decref(op);
  return status;
}
