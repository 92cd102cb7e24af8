/*
 * cctool.c - test-only driver of the Cloud Controller client (broker/cc.h).
 *
 * The integration tests (tests/integration/test_cc_client.py) run it against
 * the CC/UAA double. Configuration comes from DSD_CF_* as for `dsd serve`;
 * DSD_CCTOOL_POLL_MS shortens job polling. Steps run in order in one process
 * (so the token cache is shared between them), separated by ";" arguments:
 *
 *   dsd_cctool find NAME SPACE_GUID ';' sleep 1500 ';' find NAME SPACE_GUID
 *
 * Steps: find NAME SPACE | role USER SPACE | create INSTANCE KEYNAME |
 * details KEY DIALECT | delete KEY | findkey INSTANCE KEYNAME | sleep MS |
 * flow NAME SPACE KEYNAME DIALECT (find, create, details, delete) |
 * acquire NAME SPACE USER|- DIALECT KEYNAME (dsd_cc_acquire_uri; prints the
 * key guid and the URI, leaves the key) |
 * par N NAME SPACE KEYPREFIX DIALECT (N threads sharing the client, each
 * running flow with key KEYPREFIX-i).
 * Each step prints one "ok ..." line; the first failure prints
 * "error NAME: message" and exits 1. `details` and `flow` print the
 * connection URI: this tool is for tests with fake credentials only.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "broker/cc.h"
#include "core/log.h"

static int dsd__tool_fail(int rc, const dsd_err_t *err) {
  printf("error %s: %s\n", dsd_err_name(rc), dsd_err_msg(err));
  return rc;
}

static int dsd__tool_find(dsd_cc_t *cc, char **a, dsd_cc_instance_t *inst, dsd_err_t *err) {
  int rc = dsd_cc_find_instance(cc, a[0], a[1], inst, err);
  if (rc < 0) return rc;
  const char *d = dsd_cc_dialect_of(inst->offering, inst->plan);
  printf("ok find guid=%s type=%s state=%s plan=%s offering=%s dialect=%s\n", inst->guid,
         inst->type, inst->last_op_state, inst->plan, inst->offering, d ? d : "-");
  return 0;
}

static int dsd__tool_details(dsd_cc_t *cc, const char *key, const char *dialect, dsd_err_t *err) {
  json_t *creds = NULL;
  char *uri = NULL;
  int rc = dsd_cc_key_details(cc, key, &creds, err);
  if (rc == 0) rc = dsd_cc_credentials_uri(creds, dialect, &uri, err);
  if (rc == 0) printf("ok details uri=%s\n", uri);
  free(uri);
  json_decref(creds);
  return rc;
}

static int dsd__tool_step(dsd_cc_t *cc, int argc, char **argv, dsd_err_t *err);

typedef struct {
  dsd_cc_t *cc;
  char *argv[5];
  char key[128];
  int rc;
  dsd_err_t err;
} dsd__tool_par_t;

static void *dsd__tool_par_main(void *data) {
  dsd__tool_par_t *p = data;
  p->rc = dsd__tool_step(p->cc, 5, p->argv, &p->err);
  return NULL;
}

/* Runs flow on n threads at once over one shared client. */
static int dsd__tool_par(dsd_cc_t *cc, int n, char **a, dsd_err_t *err) {
  if (n < 1 || n > 32) return dsd_err_set(err, DSD_EINVAL, "par takes 1 to 32 threads");
  dsd__tool_par_t p[32];
  pthread_t t[32];
  for (int i = 0; i < n; i++) {
    memset(&p[i], 0, sizeof(p[i]));
    p[i].cc = cc;
    snprintf(p[i].key, sizeof(p[i].key), "%s-%d", a[2], i);
    p[i].argv[0] = "flow";
    p[i].argv[1] = a[0];
    p[i].argv[2] = a[1];
    p[i].argv[3] = p[i].key;
    p[i].argv[4] = a[3];
    pthread_create(&t[i], NULL, dsd__tool_par_main, &p[i]);
  }
  int rc = 0;
  for (int i = 0; i < n; i++) {
    pthread_join(t[i], NULL);
    if (p[i].rc < 0 && rc == 0) {
      rc = p[i].rc;
      *err = p[i].err;
    }
  }
  if (rc == 0) printf("ok par %d\n", n);
  return rc;
}

/* Runs one step of argc arguments; returns 0 or the failing code. */
static int dsd__tool_step(dsd_cc_t *cc, int argc, char **argv, dsd_err_t *err) {
  const char *cmd = argv[0];
  int rc = 0;
  char *guid = NULL;
  dsd_cc_instance_t inst;
#define NEED(n)                                                               \
  if (argc != (n) + 1) {                                                      \
    return dsd_err_set(err, DSD_EINVAL, "%s takes %d arguments", cmd, (n)); \
  }
  if (strcmp(cmd, "find") == 0) {
    NEED(2);
    rc = dsd__tool_find(cc, argv + 1, &inst, err);
  } else if (strcmp(cmd, "role") == 0) {
    NEED(2);
    bool yes = false;
    rc = dsd_cc_user_is_space_developer(cc, argv[1], argv[2], &yes, err);
    if (rc == 0) printf("ok role %s\n", yes ? "yes" : "no");
  } else if (strcmp(cmd, "create") == 0) {
    NEED(2);
    rc = dsd_cc_create_key(cc, argv[1], argv[2], NULL, &guid, err);
    if (rc == 0) printf("ok create %s\n", guid);
  } else if (strcmp(cmd, "details") == 0) {
    NEED(2);
    rc = dsd__tool_details(cc, argv[1], argv[2], err);
  } else if (strcmp(cmd, "delete") == 0) {
    NEED(1);
    rc = dsd_cc_delete_key(cc, argv[1], err);
    if (rc == 0) printf("ok delete\n");
  } else if (strcmp(cmd, "findkey") == 0) {
    NEED(2);
    rc = dsd_cc_find_key(cc, argv[1], argv[2], &guid, err);
    if (rc == 0) printf("ok findkey %s\n", guid);
  } else if (strcmp(cmd, "sleep") == 0) {
    NEED(1);
    long ms = atol(argv[1]);
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
    printf("ok sleep\n");
  } else if (strcmp(cmd, "flow") == 0) {
    NEED(4);
    rc = dsd__tool_find(cc, argv + 1, &inst, err);
    if (rc == 0) rc = dsd_cc_create_key(cc, inst.guid, argv[3], NULL, &guid, err);
    if (rc == 0) {
      printf("ok create %s\n", guid);
      rc = dsd__tool_details(cc, guid, argv[4], err);
      /* the key is deleted whatever happened to the details */
      dsd_err_t derr = {0};
      int drc = dsd_cc_delete_key(cc, guid, &derr);
      if (drc < 0 && rc == 0) {
        rc = drc;
        *err = derr;
      }
      if (drc == 0) printf("ok delete\n");
    }
  } else if (strcmp(cmd, "acquire") == 0) {
    NEED(5);
    char *uri = NULL;
    rc = dsd_cc_acquire_uri(cc, argv[1], argv[2], strcmp(argv[3], "-") ? argv[3] : NULL,
                            argv[4], argv[5], NULL, &guid, &uri, err);
    if (rc == 0) printf("ok acquire %s uri=%s\n", guid, uri);
    free(uri);
  } else if (strcmp(cmd, "par") == 0) {
    NEED(5);
    rc = dsd__tool_par(cc, atoi(argv[1]), argv + 2, err);
  } else {
    rc = dsd_err_set(err, DSD_EINVAL, "unknown step \"%s\"", cmd);
  }
#undef NEED
  free(guid);
  fflush(stdout);
  return rc;
}

int main(int argc, char **argv) {
  dsd_cc_config_t cfg;
  dsd_cc_t *cc = NULL;
  dsd_err_t err = {0};
  int rc = dsd_cc_config_from_env(&cfg, &err);
  if (rc == 0) {
    const char *poll = getenv("DSD_CCTOOL_POLL_MS");
    cfg.poll_initial_ms = poll ? atoi(poll) : 20;
    cfg.poll_max_ms = cfg.poll_initial_ms * 4;
    const char *jt = getenv("DSD_CCTOOL_JOB_TIMEOUT_S");
    cfg.job_timeout_s = jt ? atoi(jt) : 30;
    rc = dsd_cc_new(&cfg, &cc, &err);
  }
  if (rc < 0) return dsd__tool_fail(rc, &err) ? 1 : 0;
  int start = 1;
  for (int i = 1; i <= argc && rc == 0; i++) {
    if (i == argc || strcmp(argv[i], ";") == 0) {
      if (i > start) rc = dsd__tool_step(cc, i - start, argv + start, &err);
      start = i + 1;
    }
  }
  if (rc < 0) dsd__tool_fail(rc, &err);
  dsd_cc_free(cc);
  return rc < 0 ? 1 : 0;
}
