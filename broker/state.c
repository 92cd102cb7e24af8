/*
 * state.c - the broker's state as small JSON objects in the blob store.
 *
 * Layout (ids are checked by dsd_broker_id_valid before they get here):
 *   instances/<id>/instance.json          the instance: plan, context,
 *                                         parameters without secrets, dump
 *                                         facts, last operation id, the
 *                                         dashboard salt and token hash
 *   instances/<id>/operations/<op>.json   one operation: type, state,
 *                                         description, user, steps,
 *                                         transient resources, lease, log
 *   instances/<id>/bindings/<bid>.json    a binding: salted password hash
 *   instances/<id>/logs/<op>/NNNNNN.json  the operation's log, pages of
 *                                         DSD_BROKER_LOG_PAGE lines (tasks.c)
 *   health/probe.json                     rewritten by GET /healthz
 *   deleted/<id>.json                     tombstone of a deprovisioned
 *                                         instance, so last_operation can
 *                                         answer 410 Gone
 *   dumps/<id>.tar.<ext>                  the dump itself (pipeline)
 *
 * Objects are rewritten whole (put is atomic in both backends), never
 * appended, so a reader sees either the old or the new version.
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/rand.h>

#include "broker/broker.h"
#include "core/buf.h"

int dsd_broker_state_get(dsd_blob_store_t *s, const char *key, json_t **out, dsd_err_t *err) {
  dsd_buf_t buf = DSD_BUF_INIT;
  json_error_t jerr;
  dsd_err_t local = {0};
  int rc = 0;
  *out = NULL;
  /* ENOTFOUND is an ordinary answer here: keep it out of the caller's err.
   * A second read covers S3 emulators whose GET can see an object while a
   * concurrent PUT or DELETE rewrites it (real S3 is atomic per object). */
  for (int attempt = 0; attempt < 2; attempt++) {
    dsd_buf_reset(&buf);
    dsd_err_clear(&local);
    rc = dsd_blob_get(s, key, &buf, &local);
    if (rc < 0 && rc != DSD_ENOTFOUND && rc != DSD_EPROTO && rc != DSD_EIO)
      break;
    if (rc == 0) {
      json_t *probe = json_loadb(buf.data ? buf.data : "", buf.len, JSON_REJECT_DUPLICATES, NULL);
      bool ok = json_is_object(probe);
      json_decref(probe);
      if (ok)
        break;
    }
    if (rc == DSD_ENOTFOUND)
      break;
    usleep(50 * 1000);
  }
  if (rc == DSD_ENOTFOUND)
    goto cleanup;
  if (rc < 0) {
    rc = dsd_err_set(err, rc, "reading broker state %s: %s", key, dsd_err_msg(&local));
    goto cleanup;
  }
  *out = json_loadb(buf.data ? buf.data : "", buf.len, JSON_REJECT_DUPLICATES, &jerr);
  if (!json_is_object(*out)) {
    json_decref(*out);
    *out = NULL;
    rc = dsd_err_set(err, DSD_EPROTO, "broker state %s is not a JSON object: %s", key, jerr.text);
  }
cleanup:
  dsd_buf_free(&buf);
  return rc;
}

int dsd_broker_state_put(dsd_blob_store_t *s, const char *key, const json_t *obj,
                         dsd_err_t *err) {
  char *text = json_dumps(obj, JSON_COMPACT | JSON_SORT_KEYS);
  int rc = 0;
  if (text == NULL)
    return dsd_err_set(err, DSD_ENOMEM, "out of memory");
  rc = dsd_blob_put(s, key, text, strlen(text), err);
  free(text);
  return rc;
}

typedef struct {
  char **keys;
  size_t n, cap;
} dsd__keylist_t;

static int dsd__collect(void *data, const char *key, const dsd_blob_info_t *info) {
  dsd__keylist_t *l = data;
  if (l->n == l->cap) {
    size_t cap = l->cap ? l->cap * 2 : 16;
    char **k = realloc(l->keys, cap * sizeof(*k));
    if (k == NULL)
      return 1;
    l->keys = k;
    l->cap = cap;
  }
  l->keys[l->n] = strdup(key);
  if (l->keys[l->n] == NULL)
    return 1;
  l->n++;
  return 0;
}

int dsd_broker_state_delete_prefix(dsd_blob_store_t *s, const char *prefix, dsd_err_t *err) {
  dsd__keylist_t l = {0};
  int rc = dsd_blob_list(s, prefix, dsd__collect, &l, err);
  if (rc < 0)
    goto cleanup;
  /* delete in reverse order: the instance object (listed before its
   * operations) goes last, so an interrupted delete can be retried */
  for (size_t i = l.n; i > 0; i--) {
    rc = dsd_blob_delete(s, l.keys[i - 1], err);
    if (rc < 0)
      goto cleanup;
  }
cleanup:
  for (size_t i = 0; i < l.n; i++)
    free(l.keys[i]);
  free(l.keys);
  return rc;
}

void dsd_broker_key_instance(char *buf, size_t cap, const char *id) {
  snprintf(buf, cap, "instances/%s/instance.json", id);
}

void dsd_broker_key_op(char *buf, size_t cap, const char *id, const char *op) {
  snprintf(buf, cap, "instances/%s/operations/%s.json", id, op);
}

void dsd_broker_key_binding(char *buf, size_t cap, const char *id, const char *bid) {
  snprintf(buf, cap, "instances/%s/bindings/%s.json", id, bid);
}

void dsd_broker_key_tombstone(char *buf, size_t cap, const char *id) {
  snprintf(buf, cap, "deleted/%s.json", id);
}

int64_t dsd_broker_now(void) {
  return (int64_t)time(NULL);
}

void dsd_broker_iso8601(int64_t t, char *buf, size_t cap) {
  time_t tt = (time_t)t;
  struct tm tm;
  gmtime_r(&tt, &tm);
  strftime(buf, cap, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

int dsd_broker_random_hex(char *buf, size_t nbytes) {
  unsigned char raw[64];
  if (nbytes > sizeof(raw) || RAND_bytes(raw, (int)nbytes) != 1)
    return DSD_EINTERNAL;
  for (size_t i = 0; i < nbytes; i++)
    snprintf(buf + 2 * i, 3, "%02x", raw[i]);
  return 0;
}
