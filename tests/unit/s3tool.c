/*
 * s3tool.c - a test-only command line over the blob store and S3 client, so
 * that the Python integration tests can drive the real C code against real
 * S3 servers (tests/integration/test_s3_*.py).
 *
 *   dsd_s3tool URL put KEY                 < data
 *   dsd_s3tool URL get KEY [OFFSET [LEN]]  > data   (ranged reader)
 *   dsd_s3tool URL getall KEY              > data   (whole-object get)
 *   dsd_s3tool URL head KEY                -> "size=N mtime=T"
 *   dsd_s3tool URL delete KEY
 *   dsd_s3tool URL list [PREFIX]           -> "KEY SIZE" lines
 *   dsd_s3tool URL put-many PREFIX N [THREADS]
 *              N small objects PREFIX00000.., written by THREADS threads
 *              sharing one store (default 1)
 *   dsd_s3tool URL stream-write KEY [--part-size N] [--in-flight N]
 *              [--fail-after N] [--cancel-after N] [--crash-after N]
 *              [--chunk N] < data
 *              prints "upload-id ID KEY" when the multipart upload starts;
 *              --fail-after N aborts the writer after N bytes (exit 3),
 *              --cancel-after N raises the cancel flag after N bytes,
 *              --crash-after N kills itself (SIGKILL) after N bytes;
 *              at the end prints "maxrss KIB" (peak resident memory)
 *              and "sanitizer 1" when built with ASan or TSan
 *   dsd_s3tool URL abort-uploads KEY [UPLOAD_ID]
 *   dsd_s3tool client list-uploads BUCKET PREFIX -> "KEY UPLOAD_ID" lines
 *   dsd_s3tool client presign BUCKET KEY SECONDS -> URL
 *
 * URL is any storage URL (file:// or s3://). Errors print
 * "error: MESSAGE (ENAME)" on stderr and exit 1.
 */
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/blob.h"
#include "core/error.h"
#include "s3/s3.h"

static int fail(const dsd_err_t *err, int rc) {
  fprintf(stderr, "error: %s (%s)\n", err->code ? dsd_err_msg(err)
                                                : dsd_strerror(rc),
          dsd_err_name(rc));
  return 1;
}

static int read_all(dsd_buf_t *b) {
  char tmp[65536];
  ssize_t n;
  while ((n = read(0, tmp, sizeof tmp)) > 0)
    if (dsd_buf_append(b, tmp, (size_t)n)) return -1;
  return n < 0 ? -1 : 0;
}

static int print_entry(void *data, const char *key,
                       const dsd_blob_info_t *info) {
  (void)data;
  printf("%s %llu\n", key, (unsigned long long)info->size);
  return 0;
}

static int on_created(void *data, const char *key, const char *upload_id) {
  (void)data;
  printf("upload-id %s %s\n", upload_id, key);
  fflush(stdout);
  return 0;
}

typedef struct put_many_job {
  dsd_blob_store_t *s;
  const char *prefix;
  int from, step, n;
  int rc;
  dsd_err_t err;
} put_many_job_t;

static void *put_many_main(void *arg) {
  put_many_job_t *j = arg;
  char k[1100];
  for (int i = j->from; i < j->n && !j->rc; i += j->step) {
    snprintf(k, sizeof k, "%s%05d", j->prefix, i);
    j->rc = dsd_blob_put(j->s, k, k, strlen(k), &j->err);
  }
  return NULL;
}

static void print_maxrss(void) {
  /* VmHWM, not getrusage(): ru_maxrss survives exec and so counts the
   * memory of the (forked) parent before exec. */
  long hwm = -1;
  char line[256];
  FILE *f = fopen("/proc/self/status", "r");
  while (f && fgets(line, sizeof line, f))
    if (!strncmp(line, "VmHWM:", 6)) hwm = strtol(line + 6, NULL, 10);
  if (f) fclose(f);
  printf("maxrss %ld\n", hwm);
  /* Sanitizers keep freed memory (quarantine, shadow): no bound holds. */
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
  printf("sanitizer 1\n");
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
  printf("sanitizer 1\n");
#endif
#endif
}

static int stream_write(dsd_blob_store_t *s, const char *key, int argc,
                        char **argv) {
  dsd_err_t err = {0};
  dsd_blob_writer_opts_t o = {0};
  dsd_blob_writer_t *w = NULL;
  long long fail_after = -1, cancel_after = -1, crash_after = -1;
  size_t chunk = 1 << 20;
  atomic_int cancel = 0;
  for (int i = 0; i + 1 < argc; i += 2) {
    if (!strcmp(argv[i], "--part-size"))
      o.part_size = strtoull(argv[i + 1], NULL, 10);
    else if (!strcmp(argv[i], "--in-flight"))
      o.parts_in_flight = atoi(argv[i + 1]);
    else if (!strcmp(argv[i], "--fail-after"))
      fail_after = atoll(argv[i + 1]);
    else if (!strcmp(argv[i], "--crash-after"))
      crash_after = atoll(argv[i + 1]);
    else if (!strcmp(argv[i], "--cancel-after"))
      cancel_after = atoll(argv[i + 1]);
    else if (!strcmp(argv[i], "--chunk"))
      chunk = strtoull(argv[i + 1], NULL, 10);
  }
  o.on_upload_created = on_created;
  o.cancel = &cancel;
  int rc = dsd_blob_writer_open(s, key, &o, &w, &err);
  if (rc) return fail(&err, rc);
  char *buf = malloc(chunk);
  long long total = 0;
  ssize_t n;
  while (buf && (n = read(0, buf, chunk)) > 0) {
    rc = dsd_blob_writer_write(w, buf, (size_t)n);
    if (rc) {
      free(buf);
      rc = dsd_blob_writer_close(w, &err); /* reports the sticky error */
      return fail(&err, rc ? rc : DSD_EINTERNAL);
    }
    total += n;
    if (fail_after >= 0 && total >= fail_after) {
      /* Simulates a failure upstream of the writer (a dump that broke). */
      free(buf);
      dsd_blob_writer_abort(w);
      fprintf(stderr, "aborted after %lld bytes\n", total);
      return 3;
    }
    if (cancel_after >= 0 && total >= cancel_after) atomic_store(&cancel, 1);
    if (crash_after >= 0 && total >= crash_after) {
      /* A process killed mid-upload: nothing is cleaned up. */
      fflush(stdout);
      raise(SIGKILL);
    }
  }
  free(buf);
  rc = dsd_blob_writer_close(w, &err);
  if (rc) return fail(&err, rc);
  printf("wrote %lld\n", total);
  print_maxrss();
  return 0;
}

static int client_cmd(int argc, char **argv) {
  dsd_err_t err = {0};
  dsd_s3_client_t *c = NULL;
  int rc = dsd_s3_client_from_env(&c, &err);
  if (rc) return fail(&err, rc);
  if (argc >= 3 && !strcmp(argv[0], "list-uploads")) {
    char *km = NULL, *um = NULL;
    for (;;) {
      dsd_s3_uploads_page_t p;
      rc = dsd_s3_list_multipart_uploads(c, argv[1], argv[2], km, um, &p,
                                         &err);
      free(km);
      free(um);
      km = um = NULL;
      if (rc) break;
      for (size_t i = 0; i < p.n; i++)
        printf("%s %s\n", p.entries[i].key, p.entries[i].upload_id);
      if (p.truncated && p.next_key_marker) {
        km = p.next_key_marker;
        um = p.next_upload_id_marker;
        p.next_key_marker = p.next_upload_id_marker = NULL;
      }
      dsd_s3_uploads_page_free(&p);
      if (!km) break;
    }
  } else if (argc >= 4 && !strcmp(argv[0], "presign")) {
    char *url = NULL;
    rc = dsd_s3_presign_get(c, argv[1], argv[2],
                            (uint32_t)strtoul(argv[3], NULL, 10), &url, &err);
    if (!rc) printf("%s\n", url);
    free(url);
  } else {
    fprintf(stderr, "usage: dsd_s3tool client list-uploads|presign ...\n");
    rc = DSD_EINVAL;
  }
  dsd_s3_client_free(c);
  return rc ? fail(&err, rc) : 0;
}

int main(int argc, char **argv) {
  dsd_err_t err = {0};
  dsd_blob_store_t *s = NULL;
  dsd_buf_t b = DSD_BUF_INIT;
  int rc = 0;
  if (argc < 3) {
    fprintf(stderr, "usage: dsd_s3tool URL CMD [ARGS...]\n");
    return 2;
  }
  if (!strcmp(argv[1], "client")) return client_cmd(argc - 2, argv + 2);
  rc = dsd_blob_store_open(argv[1], &s, &err);
  if (rc) return fail(&err, rc);
  const char *cmd = argv[2];
  const char *key = argc > 3 ? argv[3] : NULL;

  if (!strcmp(cmd, "put") && key) {
    if (read_all(&b)) rc = dsd_err_set(&err, DSD_EIO, "cannot read stdin");
    if (!rc) rc = dsd_blob_put(s, key, b.data ? b.data : "", b.len, &err);
  } else if (!strcmp(cmd, "getall") && key) {
    rc = dsd_blob_get(s, key, &b, &err);
    if (!rc && b.len) fwrite(b.data, 1, b.len, stdout);
  } else if (!strcmp(cmd, "get") && key) {
    dsd_blob_reader_t *r = NULL;
    uint64_t off = argc > 4 ? strtoull(argv[4], NULL, 10) : 0;
    uint64_t len = argc > 5 ? strtoull(argv[5], NULL, 10) : UINT64_MAX;
    rc = dsd_blob_reader_open(s, key, off, len, &r, &err);
    if (!rc) {
      char tmp[100000]; /* odd size: reads straddle the reader's chunks */
      long n;
      while ((n = dsd_blob_reader_read(r, tmp, sizeof tmp)) > 0)
        fwrite(tmp, 1, (size_t)n, stdout);
      if (n < 0) {
        rc = (int)n;
        dsd_err_set(&err, rc, "%s", dsd_err_msg(&r->err));
      }
      dsd_blob_reader_close(r);
    }
  } else if (!strcmp(cmd, "head") && key) {
    dsd_blob_info_t info;
    rc = dsd_blob_head(s, key, &info, &err);
    if (!rc)
      printf("size=%llu mtime=%lld\n", (unsigned long long)info.size,
             (long long)info.mtime);
  } else if (!strcmp(cmd, "delete") && key) {
    rc = dsd_blob_delete(s, key, &err);
  } else if (!strcmp(cmd, "list")) {
    rc = dsd_blob_list(s, key ? key : "", print_entry, NULL, &err);
  } else if (!strcmp(cmd, "put-many") && key && argc > 4) {
    int n = atoi(argv[4]);
    int nt = argc > 5 ? atoi(argv[5]) : 1;
    if (nt < 1 || nt > 64) nt = 1;
    pthread_t tids[64];
    put_many_job_t jobs[64];
    for (int t = 0; t < nt; t++) {
      jobs[t] = (put_many_job_t){s, key, t, nt, n, 0, {0}};
      if (pthread_create(&tids[t], NULL, put_many_main, &jobs[t]) != 0)
        put_many_main(&jobs[t]), tids[t] = 0;
    }
    for (int t = 0; t < nt; t++) {
      if (tids[t]) pthread_join(tids[t], NULL);
      if (jobs[t].rc && !rc) {
        rc = jobs[t].rc;
        dsd_err_set(&err, rc, "%s", dsd_err_msg(&jobs[t].err));
      }
    }
  } else if (!strcmp(cmd, "stream-write") && key) {
    rc = stream_write(s, key, argc - 4, argv + 4);
    dsd_blob_store_free(s);
    return rc;
  } else if (!strcmp(cmd, "abort-uploads") && key) {
    rc = dsd_blob_abort_uploads(s, key, argc > 4 ? argv[4] : NULL, &err);
  } else {
    fprintf(stderr, "dsd_s3tool: unknown command or missing argument\n");
    rc = DSD_EINVAL;
  }
  dsd_buf_free(&b);
  dsd_blob_store_free(s);
  fflush(stdout);
  return rc ? fail(&err, rc) : 0;
}
