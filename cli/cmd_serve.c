/*
 * cmd_serve.c - `dsd serve`: runs the service broker.
 *
 * Configuration comes from the environment only (Cloud Foundry style; see
 * `dsd serve --help` and DESIGN.md). The command blocks SIGTERM and SIGINT
 * before any thread starts, so that the broker's main thread receives them
 * with sigwait() and can shut down in order: stop taking requests, cancel
 * and record running jobs, then free the store.
 */
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "broker/broker.h"
#include "cli/commands.h"
#include "core/log.h"

static void dsd__serve_usage(FILE *f) {
  fprintf(f,
          "usage: dsd serve\n\n"
          "Runs the Open Service Broker (API 2.13 to 2.17) for data-service-dump.\n"
          "Configured by environment variables:\n"
          "  PORT                        listen port (default 8080)\n"
          "  DSD_BROKER_USERNAME         basic-auth user the platform uses (required)\n"
          "  DSD_BROKER_PASSWORD         basic-auth password (required)\n"
          "  DSD_STORAGE                 file:///abs/dir or s3://bucket[/prefix]\n"
          "                              (default file://$PWD/dsd-data)\n"
          "  AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN, AWS_REGION,\n"
          "  AWS_ENDPOINT_URL_S3         S3 credentials and endpoint\n"
          "  DSD_ALLOW_DIRECT_URIS       false | true (no loopback/link-local) | all\n"
          "  DSD_PUBLIC_URL              external base URL (default http://localhost:$PORT)\n"
          "  DSD_CF_API, DSD_CF_CLIENT_ID, DSD_CF_CLIENT_SECRET, DSD_CF_SKIP_SSL_VALIDATION\n"
          "                              Cloud Controller access, to resolve instance names\n"
          "  DSD_LOG_LEVEL               debug | info | warn | error (default info)\n"
          "  DSD_WORKERS                 concurrent dump/import jobs (default 4)\n"
          "  DSD_HTTP_THREADS            HTTP worker threads (default 8)\n"
          "  DSD_LEASE_TTL               seconds an operation's lease lasts (default 30)\n");
}

static int dsd__serve_probe(void *data, const char *key, const dsd_blob_info_t *info) {
  return 1; /* one key is enough to know that listing works */
}

int dsd_cmd_serve(int argc, char **argv) {
  dsd_broker_config_t cfg;
  dsd_blob_store_t *store = NULL;
  dsd_broker_t broker;
  bool broker_up = false;
  dsd_err_t err = {0};
  int status = 1;
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
      dsd__serve_usage(stdout);
      return 0;
    }
    fprintf(stderr, "dsd serve: unexpected argument '%s'\nHINT: dsd serve is configured by "
                    "environment variables; see 'dsd serve --help'\n", argv[i]);
    return 2;
  }
  if (dsd_broker_config_from_env(&cfg, &err) < 0) {
    dsd_log_error("dsd serve: %s", dsd_err_msg(&err));
    return 1;
  }
  dsd_log_set_level(cfg.log_level);

  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  pthread_sigmask(SIG_BLOCK, &set, NULL);
  signal(SIGPIPE, SIG_IGN);

  if (dsd_broker_store_open(cfg.storage_url, &store, &err) < 0) {
    dsd_log_error("dsd serve: cannot open the store: %s", dsd_err_msg(&err));
    goto cleanup;
  }
  /* Fail at start, not at the first request, when the store is unreachable
   * or the credentials are wrong (S3 answers 403 to a list). */
  if (dsd_blob_list(store, "instances/", dsd__serve_probe, NULL, &err) < 0) {
    dsd_log_error("dsd serve: cannot read the store %s: %s", dsd_blob_describe(store),
                  dsd_err_msg(&err));
    goto cleanup;
  }
  if (dsd_broker_init(&broker, &cfg, store, &err) < 0) {
    dsd_log_error("dsd serve: %s", dsd_err_msg(&err));
    goto cleanup;
  }
  broker_up = true;
  if (dsd_broker_serve(&broker, &err) < 0) {
    dsd_log_error("dsd serve: %s", dsd_err_msg(&err));
    goto cleanup;
  }
  status = 0;
cleanup:
  if (broker_up)
    dsd_broker_shutdown(&broker);
  if (store != NULL)
    dsd_blob_store_free(store);
  if (status == 0)
    dsd_log_info("broker stopped");
  dsd_broker_config_free(&cfg);
  return status;
}
