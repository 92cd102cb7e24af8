/*
 * cmd_dump.c - the shell side of the dump pipeline: `dsd dump`, `dsd
 * restore`, `dsd ls` and `dsd verify`.
 *
 * An archive is named by one URL, file:///abs/dir/name.tar.zst or
 * s3://bucket/path/name.tar.zst; it is split into the store URL (the
 * directory, or the bucket) and the object key. Connection URIs carry
 * passwords, so they can come from the environment (DSD_SOURCE_URI,
 * DSD_TARGET_URI) instead of argv, where any local user could read them in
 * /proc. Progress goes to stderr as one updated line when stderr is a
 * terminal; errors go to stderr as "dsd CMD: message".
 *
 * Exit status: 0 success, 1 failure (verify: a mismatch), 2 usage error.
 */
#include <errno.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "cli/commands.h"
#include "core/archive.h"
#include "core/blob.h"
#include "core/error.h"
#include "core/hash.h"
#include "core/log.h"
#include "dialects/pipeline.h"

/* ------------------------------------------------------------------ */
/* Shared pieces                                                       */

static atomic_int dsd__cancel;

static void dsd__on_signal(int sig) {
  /* The first signal asks the pipeline to stop and clean up; a second one
   * kills the process the usual way. */
  atomic_store(&dsd__cancel, 1);
  signal(sig, SIG_DFL);
}

static void dsd__install_signals(void) {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = dsd__on_signal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGTERM, &sa, NULL);
}

typedef struct dsd__cli {
  const char *cmd;  /* "dump", "restore" */
  const char *verb; /* "dumping", "restoring" */
  int quiet;
  int tty;
  int line_shown; /* a \r progress line is on the terminal */
} dsd__cli_t;

static void dsd__clear_line(dsd__cli_t *c) {
  if (c->line_shown) {
    fprintf(stderr, "\r\033[K");
    c->line_shown = 0;
  }
}

static void dsd__cli_progress(void *data, const dsd_pipeline_progress_t *p) {
  dsd__cli_t *c = data;
  char line[512];
  if (c->quiet || !c->tty)
    return;
  dsd_pipeline_progress_format(p, c->verb, line, sizeof line);
  fprintf(stderr, "\r\033[K%s", line);
  fflush(stderr);
  c->line_shown = 1;
}

static void dsd__cli_log(void *data, const char *line) {
  dsd__cli_t *c = data;
  if (c->quiet)
    return;
  dsd__clear_line(c);
  fprintf(stderr, "dsd %s: %s\n", c->cmd, line);
}

static int dsd__fail(dsd__cli_t *c, const dsd_err_t *err) {
  dsd__clear_line(c);
  fprintf(stderr, "dsd %s: %s\n", c->cmd, dsd_err_msg(err));
  return 1;
}

static int dsd__usage_error(const char *cmd, const char *fmt, const char *arg) {
  fprintf(stderr, "dsd %s: ", cmd);
  fprintf(stderr, fmt, arg);
  fprintf(stderr, "\nHINT: run 'dsd %s --help'\n", cmd);
  return 2;
}

/* --workers N: 1..64. Returns 0, or prints a usage error and returns -1. */
static int dsd__parse_workers(const char *cmd, const char *v, int *workers) {
  char *end;
  long n = strtol(v, &end, 10);
  if (*v == '\0' || *end || n < 1 || n > 64) {
    dsd__usage_error(cmd, "--workers must be a number from 1 to 64, not \"%s\"", v);
    return -1;
  }
  *workers = (int)n;
  return 0;
}

/* Splits an archive URL into a store URL and a key (both malloc'd). For
 * s3:// the store is the bucket; for file:// the directory. */
static int dsd__split_url(const char *url, char **store, char **key, dsd_err_t *err) {
  const char *rest, *slash;

  *store = *key = NULL;
  if (strncmp(url, "s3://", 5) == 0) {
    rest = url + 5;
    slash = strchr(rest, '/');
  } else if (strncmp(url, "file:///", 8) == 0) {
    rest = url + 7;
    slash = strrchr(rest, '/');
    if (slash == rest) /* file:///x.tar.zst: the store is the root dir */
      slash = rest;
  } else {
    return dsd_err_set(err, DSD_EINVAL,
                       "\"%s\" is not an archive url\n"
                       "HINT: use file:///abs/dir/name.tar.zst or s3://bucket/path/name.tar.zst",
                       url);
  }
  if (slash == NULL || slash[1] == '\0')
    return dsd_err_set(err, DSD_EINVAL, "\"%s\" names no archive object (it ends with '/')", url);
  if (slash == url + 7 && strncmp(url, "file:///", 8) == 0)
    *store = strdup("file:///");
  else
    *store = strndup(url, (size_t)(slash - url));
  *key = strdup(slash + 1);
  if (*store == NULL || *key == NULL) {
    free(*store);
    free(*key);
    *store = *key = NULL;
    return dsd_err_set(err, DSD_ENOMEM, "out of memory");
  }
  if (!dsd_blob_key_valid(*key)) {
    int rc = dsd_err_set(err, DSD_EINVAL, "\"%s\" is not a valid object key", *key);
    free(*store);
    free(*key);
    *store = *key = NULL;
    return rc;
  }
  return 0;
}

static int dsd__open_url(const char *url, dsd_blob_store_t **store, char **key,
                         dsd_err_t *err) {
  char *surl = NULL;
  int rc = dsd__split_url(url, &surl, key, err);
  if (rc < 0)
    return rc;
  rc = dsd_blob_store_open(surl, store, err);
  free(surl);
  if (rc < 0) {
    free(*key);
    *key = NULL;
  }
  return rc;
}

/* Value of "--opt VALUE" or "--opt=VALUE" at argv[*i]; NULL if argv[*i] is
 * another option. Advances *i past a separate value. */
static const char *dsd__optval(int argc, char **argv, int *i, const char *opt, int *missing) {
  size_t n = strlen(opt);
  *missing = 0;
  if (strncmp(argv[*i], opt, n) != 0)
    return NULL;
  if (argv[*i][n] == '=')
    return argv[*i] + n + 1;
  if (argv[*i][n] != '\0')
    return NULL;
  if (*i + 1 >= argc) {
    *missing = 1;
    return NULL;
  }
  return argv[++*i];
}

/* Returns a copy of the URI in arg and overwrites the password in arg
 * (scheme://user:PASSWORD@host) with 'x', as the mysql client does, so that
 * it shows in /proc/PID/cmdline only for the moment before this runs. The
 * environment variables are the way to keep it out of argv entirely. */
static char *dsd__take_uri_arg(char *arg) {
  char *copy = strdup(arg);
  char *start = strstr(arg, "://"), *at, *colon;
  if (copy == NULL || start == NULL)
    return copy;
  start += 3;
  at = strchr(start, '@');
  if (at == NULL)
    return copy;
  colon = memchr(start, ':', (size_t)(at - start));
  if (colon != NULL)
    memset(colon + 1, 'x', (size_t)(at - colon - 1));
  return copy;
}

/* Copies of --source / --target (the process lives as long as they do). */
static char *dsd__source_arg, *dsd__target_arg;

static int dsd__is_help(const char *a) {
  return strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0;
}

/* ------------------------------------------------------------------ */
/* dsd dump                                                            */

static const char dsd__dump_help[] =
    "usage: dsd dump --to URL [--source URI] [OPTIONS]\n"
    "\n"
    "Dumps a database into one archive (tar + compression) in a file:// or\n"
    "s3:// store, through the same pipeline as the broker.\n"
    "\n"
    "  --source URI          database to dump: postgresql://user:pw@host:port/db\n"
    "                        (mysql:// and mongodb:// when built). Default: the\n"
    "                        DSD_SOURCE_URI environment variable, which keeps the\n"
    "                        password out of the process list (given here, it is\n"
    "                        masked in the process list once dsd starts).\n"
    "  --to URL              file:///abs/dir/name.tar.zst or s3://bucket/path/name.tar.zst\n"
    "                        (S3 credentials from AWS_* variables, see README)\n"
    "  --compression C       zstd (default), gzip or none\n"
    "  --anonymize FILE      anonymization rules (JSON, see README)\n"
    "  --workers N           table workers (connections), default 2\n"
    "  --dialect D           pg, mysql or mongo; checked against the URI scheme\n"
    "  --quiet               no progress line and no log lines\n"
    "\n"
    "On failure or Ctrl-C nothing is left in the store.\n";

int dsd_cmd_dump(int argc, char **argv) {
  const char *source = NULL, *to = NULL, *comp = "zstd", *anon_file = NULL, *dialect = NULL;
  int workers = 0, quiet = 0, missing = 0;
  dsd__cli_t cli = {"dump", "dumping", 0, 0, 0};
  dsd_dump_opts_t o;
  dsd_dump_result_t res;
  dsd_blob_store_t *store = NULL;
  json_t *anon = NULL;
  char *key = NULL;
  dsd_err_t err = {0};
  int rc, status = 1;

  for (int i = 1; i < argc; i++) {
    const char *v;
    if (dsd__is_help(argv[i])) {
      fputs(dsd__dump_help, stdout);
      return 0;
    } else if ((v = dsd__optval(argc, argv, &i, "--source", &missing)) != NULL) {
      free(dsd__source_arg);
      source = dsd__source_arg = dsd__take_uri_arg((char *)v);
    } else if ((v = dsd__optval(argc, argv, &i, "--to", &missing)) != NULL) {
      to = v;
    } else if ((v = dsd__optval(argc, argv, &i, "--compression", &missing)) != NULL) {
      comp = v;
    } else if ((v = dsd__optval(argc, argv, &i, "--anonymize", &missing)) != NULL) {
      anon_file = v;
    } else if ((v = dsd__optval(argc, argv, &i, "--dialect", &missing)) != NULL) {
      dialect = v;
    } else if ((v = dsd__optval(argc, argv, &i, "--workers", &missing)) != NULL) {
      if (dsd__parse_workers("dump", v, &workers) < 0)
        return 2;
    } else if (strcmp(argv[i], "--quiet") == 0 || strcmp(argv[i], "-q") == 0) {
      quiet = 1;
    } else if (missing) {
      return dsd__usage_error("dump", "%s needs a value", argv[i]);
    } else {
      return dsd__usage_error("dump", "unknown argument \"%s\"", argv[i]);
    }
  }
  if (source == NULL)
    source = getenv("DSD_SOURCE_URI");
  if (source == NULL || *source == '\0')
    return dsd__usage_error("dump", "%s", "no source: give --source or set DSD_SOURCE_URI");
  if (to == NULL)
    return dsd__usage_error("dump", "%s", "no destination: give --to URL");
  memset(&o, 0, sizeof o);
  if (dsd_compression_parse(comp, &o.compression) < 0)
    return dsd__usage_error("dump", "unknown compression \"%s\" (use zstd, gzip or none)", comp);
  /* Registered before anything can print the URI by mistake. */
  dsd_redact_register(source);

  cli.quiet = quiet;
  cli.tty = isatty(2);
  if (anon_file != NULL) {
    json_error_t je;
    anon = json_load_file(anon_file, 0, &je);
    if (anon == NULL) {
      dsd_err_set(&err, DSD_EINVAL, "cannot read the anonymization rules %s: %s (line %d)",
                  anon_file, je.text, je.line);
      status = dsd__fail(&cli, &err);
      goto cleanup;
    }
  }
  rc = dsd__open_url(to, &store, &key, &err);
  if (rc < 0) {
    status = dsd__fail(&cli, &err);
    goto cleanup;
  }
  dsd__install_signals();
  /* Info lines arrive through the log hook below; the logger would print
   * them a second time. */
  dsd_log_set_level(DSD_LOG_WARN);
  o.dialect = dialect;
  o.source_uri = source;
  o.anonymize = anon;
  o.workers = workers;
  o.store = store;
  o.key = key;
  o.hooks.cancel = &dsd__cancel;
  o.hooks.progress = dsd__cli_progress;
  o.hooks.log = dsd__cli_log;
  o.hooks.data = &cli;
  rc = dsd_pipeline_dump(&o, &res, &err);
  if (rc < 0) {
    status = dsd__fail(&cli, &err);
    goto cleanup;
  }
  dsd__clear_line(&cli);
  if (!quiet)
    printf("%s: %llu bytes, sha256 %s, %llu tables, %llu rows\n", to,
           (unsigned long long)res.size, res.sha256, (unsigned long long)res.tables,
           (unsigned long long)res.rows);
  json_decref(res.summary);
  status = 0;
cleanup:
  json_decref(anon);
  free(key);
  if (store)
    dsd_blob_store_free(store);
  return status;
}

/* ------------------------------------------------------------------ */
/* dsd restore                                                         */

static const char dsd__restore_help[] =
    "usage: dsd restore --from URL [--target URI] [OPTIONS]\n"
    "\n"
    "Imports an archive made by dsd dump (or the broker) into a database.\n"
    "\n"
    "  --from URL            file:///abs/dir/name.tar.zst or s3://bucket/path/name.tar.zst\n"
    "  --target URI          database to restore into (same kind as the dump).\n"
    "                        Default: the DSD_TARGET_URI environment variable,\n"
    "                        which keeps the password out of the process list.\n"
    "  --no-clean            do not drop the dump's objects that already exist\n"
    "                        in the target (default: they are replaced)\n"
    "  --workers N           parallel connections, default: as the dump\n"
    "  --quiet               no progress line and no log lines\n";

int dsd_cmd_restore(int argc, char **argv) {
  const char *from = NULL, *target = NULL;
  int workers = 0, quiet = 0, clean = 1, missing = 0;
  dsd__cli_t cli = {"restore", "restoring", 0, 0, 0};
  dsd_restore_opts_t o;
  dsd_blob_store_t *store = NULL;
  char *key = NULL;
  dsd_err_t err = {0};
  int rc, status = 1;

  for (int i = 1; i < argc; i++) {
    const char *v;
    if (dsd__is_help(argv[i])) {
      fputs(dsd__restore_help, stdout);
      return 0;
    } else if ((v = dsd__optval(argc, argv, &i, "--from", &missing)) != NULL) {
      from = v;
    } else if ((v = dsd__optval(argc, argv, &i, "--target", &missing)) != NULL) {
      free(dsd__target_arg);
      target = dsd__target_arg = dsd__take_uri_arg((char *)v);
    } else if ((v = dsd__optval(argc, argv, &i, "--workers", &missing)) != NULL) {
      if (dsd__parse_workers("restore", v, &workers) < 0)
        return 2;
    } else if (strcmp(argv[i], "--no-clean") == 0) {
      clean = 0;
    } else if (strcmp(argv[i], "--quiet") == 0 || strcmp(argv[i], "-q") == 0) {
      quiet = 1;
    } else if (missing) {
      return dsd__usage_error("restore", "%s needs a value", argv[i]);
    } else {
      return dsd__usage_error("restore", "unknown argument \"%s\"", argv[i]);
    }
  }
  if (target == NULL)
    target = getenv("DSD_TARGET_URI");
  if (target == NULL || *target == '\0')
    return dsd__usage_error("restore", "%s", "no target: give --target or set DSD_TARGET_URI");
  if (from == NULL)
    return dsd__usage_error("restore", "%s", "no archive: give --from URL");
  dsd_redact_register(target);
  cli.quiet = quiet;
  cli.tty = isatty(2);
  rc = dsd__open_url(from, &store, &key, &err);
  if (rc < 0) {
    status = dsd__fail(&cli, &err);
    goto cleanup;
  }
  dsd__install_signals();
  dsd_log_set_level(DSD_LOG_WARN);
  memset(&o, 0, sizeof o);
  o.target_uri = target;
  o.clean = clean;
  o.workers = workers;
  o.store = store;
  o.key = key;
  o.hooks.cancel = &dsd__cancel;
  o.hooks.progress = dsd__cli_progress;
  o.hooks.log = dsd__cli_log;
  o.hooks.data = &cli;
  rc = dsd_pipeline_restore(&o, &err);
  if (rc < 0) {
    status = dsd__fail(&cli, &err);
    goto cleanup;
  }
  dsd__clear_line(&cli);
  if (!quiet)
    printf("restored %s\n", from);
  status = 0;
cleanup:
  free(key);
  if (store)
    dsd_blob_store_free(store);
  return status;
}

/* ------------------------------------------------------------------ */
/* dsd ls                                                              */

static const char dsd__ls_help[] =
    "usage: dsd ls STORE_URL\n"
    "\n"
    "Lists the archives (*.tar.zst, *.tar.gz, *.tar) in a store, one per line:\n"
    "size in bytes, modification time (UTC), key.\n"
    "  STORE_URL             file:///abs/dir or s3://bucket[/prefix]\n";

static int dsd__ls_cb(void *data, const char *key, const dsd_blob_info_t *info) {
  static const char *const exts[] = {".tar.zst", ".tar.gz", ".tar"};
  size_t n = strlen(key);
  int *count = data;
  for (size_t i = 0; i < 3; i++) {
    size_t e = strlen(exts[i]);
    if (n > e && strcmp(key + n - e, exts[i]) == 0) {
      char when[32] = "-";
      if (info->mtime > 0) {
        time_t t = (time_t)info->mtime;
        struct tm tm;
        gmtime_r(&t, &tm);
        strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", &tm);
      }
      printf("%12llu  %s  %s\n", (unsigned long long)info->size, when, key);
      (*count)++;
      break;
    }
  }
  return 0;
}

int dsd_cmd_ls(int argc, char **argv) {
  dsd__cli_t cli = {"ls", "listing", 1, 0, 0};
  dsd_blob_store_t *store = NULL;
  dsd_err_t err = {0};
  const char *url = NULL;
  int count = 0, status = 1;

  for (int i = 1; i < argc; i++) {
    if (dsd__is_help(argv[i])) {
      fputs(dsd__ls_help, stdout);
      return 0;
    } else if (argv[i][0] == '-' || url != NULL) {
      return dsd__usage_error("ls", "unexpected argument \"%s\"", argv[i]);
    }
    url = argv[i];
  }
  if (url == NULL)
    return dsd__usage_error("ls", "%s", "give the store url");
  if (dsd_blob_store_open(url, &store, &err) < 0 ||
      dsd_blob_list(store, "", dsd__ls_cb, &count, &err) < 0) {
    status = dsd__fail(&cli, &err);
    goto cleanup;
  }
  status = 0;
cleanup:
  if (store)
    dsd_blob_store_free(store);
  return status;
}

/* ------------------------------------------------------------------ */
/* dsd verify                                                          */

static const char dsd__verify_help[] =
    "usage: dsd verify URL\n"
    "\n"
    "Reads a whole archive and checks every stream against summary.json:\n"
    "bytes, sha256, chunk sequence, and row counts of pg table streams.\n"
    "Prints OK and the archive's own size and sha256, or each mismatch.\n"
    "Exit status 1 on a mismatch or an unreadable archive.\n"
    "  URL                   file:///abs/dir/name.tar.zst or s3://bucket/path/name.tar.zst\n";

/* A blob reader that hashes and counts what passes through it, for the
 * archive object's own sha256. */
typedef struct dsd__hash_reader {
  dsd_blob_reader_t base;
  dsd_blob_reader_t *inner;
  dsd_sha256_t h;
  uint64_t bytes;
} dsd__hash_reader_t;

static long dsd__hr_read(dsd_blob_reader_t *r, void *buf, size_t len) {
  dsd__hash_reader_t *hr = (dsd__hash_reader_t *)r;
  long n = dsd_blob_reader_read(hr->inner, buf, len);
  if (n < 0) {
    r->err = hr->inner->err;
    return n;
  }
  dsd_sha256_update(&hr->h, buf, (size_t)n);
  hr->bytes += (uint64_t)n;
  return n;
}

static void dsd__hr_close(dsd_blob_reader_t *r) {}

static const dsd_blob_reader_ops_t dsd__hr_ops = {dsd__hr_read, dsd__hr_close};

typedef struct dsd__vstream {
  dsd_sha256_t h;
  uint64_t bytes;
  uint64_t lines;
  unsigned chunks;
  int ends_with_terminator; /* pg data: last bytes are "\\.\n" */
  char tail[3];
} dsd__vstream_t;

int dsd_cmd_verify(int argc, char **argv) {
  dsd__cli_t cli = {"verify", "verifying", 1, 0, 0};
  dsd_blob_store_t *store = NULL;
  dsd_blob_reader_t *inner = NULL;
  dsd__hash_reader_t hr;
  dsd_archive_reader_t *r = NULL;
  dsd__vstream_t *vs = NULL;
  size_t nvs = 0, capvs = 0;
  json_t *index = json_object(); /* stream name -> index in vs */
  const char *url = NULL, *name;
  char *key = NULL, *buf = malloc(1 << 16);
  uint64_t size;
  dsd_err_t err = {0};
  const json_t *summary, *streams;
  int rc, mismatches = 0, status = 1, after_summary = 0;

  memset(&hr, 0, sizeof hr);
  for (int i = 1; i < argc; i++) {
    if (dsd__is_help(argv[i])) {
      fputs(dsd__verify_help, stdout);
      status = 0;
      goto cleanup;
    } else if (argv[i][0] == '-' || url != NULL) {
      status = dsd__usage_error("verify", "unexpected argument \"%s\"", argv[i]);
      goto cleanup;
    }
    url = argv[i];
  }
  if (url == NULL) {
    status = dsd__usage_error("verify", "%s", "give the archive url");
    goto cleanup;
  }
  if (buf == NULL || index == NULL) {
    dsd_err_set(&err, DSD_ENOMEM, "out of memory");
    status = dsd__fail(&cli, &err);
    goto cleanup;
  }
  if (dsd__open_url(url, &store, &key, &err) < 0 ||
      dsd_blob_reader_open(store, key, 0, UINT64_MAX, &inner, &err) < 0) {
    status = dsd__fail(&cli, &err);
    goto cleanup;
  }
  hr.base.ops = &dsd__hr_ops;
  hr.inner = inner;
  dsd_sha256_init(&hr.h);
  if (dsd_archive_reader_open(&hr.base, &r, &err) < 0) {
    status = dsd__fail(&cli, &err);
    goto cleanup;
  }
  while ((rc = dsd_archive_reader_next(r, &name, &size, &err)) == 1) {
    char stream[1100];
    unsigned chunk;
    dsd__vstream_t *s;
    json_t *ix;
    long n;
    if (after_summary) {
      printf("MISMATCH: entry %s comes after summary.json\n", name);
      mismatches++;
    }
    if (strcmp(name, "summary.json") == 0) {
      after_summary = 1;
      continue;
    }
    if (dsd_archive_chunk_name_parse(name, stream, sizeof stream, &chunk) < 0) {
      while ((n = dsd_archive_reader_read(r, buf, 1 << 16)) > 0)
        ;
      if (n < 0)
        break;
      continue; /* a whole entry that is not part of a stream */
    }
    ix = json_object_get(index, stream);
    if (ix == NULL) {
      if (nvs == capvs) {
        size_t nc = capvs ? capvs * 2 : 64;
        dsd__vstream_t *p = realloc(vs, nc * sizeof *p);
        if (p == NULL) {
          dsd_err_set(&err, DSD_ENOMEM, "out of memory");
          rc = DSD_ENOMEM;
          break;
        }
        vs = p;
        capvs = nc;
      }
      memset(&vs[nvs], 0, sizeof vs[nvs]);
      dsd_sha256_init(&vs[nvs].h);
      json_object_set_new(index, stream, json_integer((json_int_t)nvs));
      s = &vs[nvs++];
    } else {
      s = &vs[json_integer_value(ix)];
    }
    if (chunk != s->chunks + 1) {
      printf("MISMATCH: stream %s: chunk %u follows chunk %u\n", stream, chunk, s->chunks);
      mismatches++;
    }
    s->chunks = chunk;
    while ((n = dsd_archive_reader_read(r, buf, 1 << 16)) > 0) {
      dsd_sha256_update(&s->h, buf, (size_t)n);
      s->bytes += (uint64_t)n;
      for (long k = 0; k < n; k++) {
        if (buf[k] == '\n')
          s->lines++;
        s->tail[0] = s->tail[1];
        s->tail[1] = s->tail[2];
        s->tail[2] = buf[k];
      }
    }
    if (n < 0) {
      rc = (int)n;
      break;
    }
  }
  if (rc < 0) {
    const dsd_err_t *re = dsd_archive_reader_error(r);
    if (re != NULL && err.code == 0)
      err = *re;
    if (err.code == 0)
      dsd_err_set(&err, rc, "cannot read the archive");
    status = dsd__fail(&cli, &err);
    goto cleanup;
  }
  summary = dsd_archive_reader_summary(r);
  streams = summary ? json_object_get(summary, "streams") : NULL;
  if (!json_is_object(streams)) {
    printf("MISMATCH: summary.json has no streams object\n");
    status = 1;
    goto cleanup;
  }
  {
    const char *sname;
    json_t *sj;
    uint64_t total_bytes = 0;
    /* Table rows, as the summary counts them (sequence and large-object
     * streams carry no rows). */
    uint64_t total_rows = (uint64_t)json_integer_value(
        json_object_get(json_object_get(summary, "totals"), "rows"));
    json_object_foreach((json_t *)streams, sname, sj) {
      json_t *ix = json_object_get(index, sname);
      dsd__vstream_t empty;
      dsd__vstream_t *s;
      char hex[65];
      const char *want = json_string_value(json_object_get(sj, "sha256"));
      uint64_t want_bytes = (uint64_t)json_integer_value(json_object_get(sj, "bytes"));
      uint64_t want_rows = (uint64_t)json_integer_value(json_object_get(sj, "rows"));
      if (ix == NULL) {
        memset(&empty, 0, sizeof empty);
        dsd_sha256_init(&empty.h);
        s = &empty;
      } else {
        s = &vs[json_integer_value(ix)];
      }
      dsd_sha256_final_hex(&s->h, hex);
      if (want == NULL || strcmp(want, hex) != 0) {
        printf("MISMATCH: stream %s: sha256 %s, summary says %s\n", sname, hex,
               want ? want : "nothing");
        mismatches++;
      }
      if (want_bytes != s->bytes) {
        printf("MISMATCH: stream %s: %llu bytes, summary says %llu\n", sname,
               (unsigned long long)s->bytes, (unsigned long long)want_bytes);
        mismatches++;
      }
      /* pg table streams: header line, one line per row, "\." line. */
      if (strncmp(sname, "pg/data/", 8) == 0) {
        uint64_t rows = s->lines >= 2 ? s->lines - 2 : 0;
        if (memcmp(s->tail, "\\.\n", 3) != 0) {
          printf("MISMATCH: stream %s does not end with the COPY terminator\n", sname);
          mismatches++;
        } else if (rows != want_rows) {
          printf("MISMATCH: stream %s: %llu rows, summary says %llu\n", sname,
                 (unsigned long long)rows, (unsigned long long)want_rows);
          mismatches++;
        }
      }
      total_bytes += s->bytes;
      if (ix != NULL)
        json_object_del(index, sname);
    }
    {
      const char *extra;
      json_t *v;
      json_object_foreach(index, extra, v) {
        printf("MISMATCH: stream %s is in the archive but not in summary.json\n", extra);
        mismatches++;
      }
    }
    {
      char hex[65];
      dsd_sha256_final_hex(&hr.h, hex);
      if (mismatches == 0) {
        printf("OK %s: %zu streams, %llu rows, %llu bytes uncompressed; archive %llu bytes, "
               "sha256 %s\n",
               url, json_object_size(streams), (unsigned long long)total_rows,
               (unsigned long long)total_bytes, (unsigned long long)hr.bytes, hex);
        status = 0;
      } else {
        printf("FAILED %s: %d mismatches\n", url, mismatches);
        status = 1;
      }
    }
  }
cleanup:
  for (size_t i = 0; i < nvs; i++)
    dsd_sha256_free(&vs[i].h);
  free(vs);
  dsd_sha256_free(&hr.h);
  json_decref(index);
  dsd_archive_reader_free(r);
  if (inner)
    dsd_blob_reader_close(inner);
  free(key);
  free(buf);
  if (store)
    dsd_blob_store_free(store);
  return status;
}
