/*
 * blob_file.c - the file:// blob store backend.
 *
 * Objects are files below a root directory, one per key. Every write goes to
 * a temporary file "<key>.dsdtmp-<id>" in the same directory, is fsync'ed,
 * then renamed over the key and the directory fsync'ed, so a reader sees the
 * old object or the new one, never a part, and a crash leaves at most a
 * temporary file, which list() hides and abort_uploads() removes. Streaming
 * writers report the temporary file's id through on_upload_created so crash
 * recovery can find it.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#include "core/blob.h"
#include "core/log.h"

#define DSD__TMP_MARK ".dsdtmp-"

typedef struct dsd__file_store {
  char *root;
  char describe[PATH_MAX + 16];
} dsd__file_store_t;

/* ---------------------------------------------------------------- paths */

static int dsd__path(dsd__file_store_t *fs, const char *key, char *out,
                     size_t cap, dsd_err_t *err) {
  int n = snprintf(out, cap, "%s/%s", fs->root, key);
  if (n < 0 || (size_t)n >= cap)
    return dsd_err_set(err, DSD_EINVAL, "storage key too long for the file store");
  return 0;
}

/* Creates the directories above path (mkdir -p of its dirname). */
static int dsd__mkdirs_for(const char *path, dsd_err_t *err) {
  char tmp[PATH_MAX];
  snprintf(tmp, sizeof(tmp), "%s", path);
  for (char *p = tmp + 1; *p; p++) {
    if (*p != '/') continue;
    *p = '\0';
    if (mkdir(tmp, 0750) != 0 && errno != EEXIST)
      return dsd_err_set(err, DSD_EIO, "cannot create directory %s: %s", tmp, strerror(errno));
    *p = '/';
  }
  return 0;
}

static void dsd__fsync_dir_of(const char *path) {
  char dir[PATH_MAX];
  snprintf(dir, sizeof(dir), "%s", path);
  char *slash = strrchr(dir, '/');
  if (slash == NULL) return;
  *slash = '\0';
  int fd = open(dir[0] ? dir : "/", O_RDONLY | O_DIRECTORY);
  if (fd >= 0) {
    fsync(fd);
    close(fd);
  }
}

static int dsd__write_all(int fd, const void *data, size_t len) {
  const char *p = data;
  while (len > 0) {
    ssize_t n = write(fd, p, len);
    if (n < 0) {
      if (errno == EINTR) continue;
      return -1;
    }
    p += n;
    len -= (size_t)n;
  }
  return 0;
}

/* Opens a fresh temporary file next to path; fills tmp and id. */
static int dsd__open_tmp(const char *path, char *tmp, size_t cap, char *id,
                         size_t idcap, dsd_err_t *err) {
  static atomic_uint counter;
  int rc = dsd__mkdirs_for(path, err);
  if (rc != 0) return rc;
  for (int attempt = 0; attempt < 100; attempt++) {
    snprintf(id, idcap, "%ld-%u-%lx", (long)getpid(), atomic_fetch_add(&counter, 1),
             (unsigned long)random());
    snprintf(tmp, cap, "%s%s%s", path, DSD__TMP_MARK, id);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0640);
    if (fd >= 0) return fd;
    if (errno != EEXIST)
      return dsd_err_set(err, DSD_EIO, "cannot create %s: %s", tmp, strerror(errno));
  }
  return dsd_err_set(err, DSD_EIO, "cannot create a temporary file for %s", path);
}

static int dsd__commit_tmp(int fd, const char *tmp, const char *path, dsd_err_t *err) {
  int rc = 0;
  if (fsync(fd) != 0) {
    rc = dsd_err_set(err, DSD_EIO, "fsync %s: %s", tmp, strerror(errno));
    goto cleanup;
  }
  if (close(fd) != 0) {
    fd = -1;
    rc = dsd_err_set(err, DSD_EIO, "close %s: %s", tmp, strerror(errno));
    goto cleanup;
  }
  fd = -1;
  if (rename(tmp, path) != 0) {
    rc = dsd_err_set(err, DSD_EIO, "rename %s: %s", tmp, strerror(errno));
    goto cleanup;
  }
  dsd__fsync_dir_of(path);
cleanup:
  if (fd >= 0) close(fd);
  if (rc != 0) unlink(tmp);
  return rc;
}

/* ----------------------------------------------------------- operations */

static int dsd__file_put(void *self, const char *key, const void *data, size_t len,
                         dsd_err_t *err) {
  char path[PATH_MAX], tmp[PATH_MAX + 64], id[64];
  int rc = dsd__path(self, key, path, sizeof(path), err);
  if (rc != 0) return rc;
  int fd = dsd__open_tmp(path, tmp, sizeof(tmp), id, sizeof(id), err);
  if (fd < 0) return fd;
  if (dsd__write_all(fd, data, len) != 0) {
    rc = dsd_err_set(err, DSD_EIO, "write %s: %s", tmp, strerror(errno));
    close(fd);
    unlink(tmp);
    return rc;
  }
  return dsd__commit_tmp(fd, tmp, path, err);
}

/* Opens key for reading: a file descriptor, or a negative code with err set
 * (DSD_ENOTFOUND when the object does not exist). path receives the path. */
static int dsd__open_read(dsd__file_store_t *fs, const char *key, char *path, size_t cap,
                          dsd_err_t *err) {
  int rc = dsd__path(fs, key, path, cap, err);
  if (rc != 0) return rc;
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT || errno == ENOTDIR)
      return dsd_err_set(err, DSD_ENOTFOUND, "object %s not found", key);
    return dsd_err_set(err, DSD_EIO, "open %s: %s", path, strerror(errno));
  }
  return fd;
}

static int dsd__file_get(void *self, const char *key, dsd_buf_t *out, dsd_err_t *err) {
  char path[PATH_MAX];
  int rc = 0;
  int fd = dsd__open_read(self, key, path, sizeof(path), err);
  if (fd < 0) return fd;
  char chunk[65536];
  for (;;) {
    ssize_t n = read(fd, chunk, sizeof(chunk));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      rc = dsd_err_set(err, DSD_EIO, "read %s: %s", path, strerror(errno));
      break;
    }
    if (n == 0) break;
    if ((rc = dsd_buf_append(out, chunk, (size_t)n)) != 0) {
      dsd_err_set(err, rc, "out of memory reading %s", key);
      break;
    }
  }
  close(fd);
  return rc;
}

static int dsd__file_head(void *self, const char *key, dsd_blob_info_t *info,
                          dsd_err_t *err) {
  char path[PATH_MAX];
  int rc = dsd__path(self, key, path, sizeof(path), err);
  if (rc != 0) return rc;
  struct stat st;
  if (stat(path, &st) != 0 || !S_ISREG(st.st_mode)) {
    if (errno == ENOENT || errno == ENOTDIR || errno == 0 || S_ISDIR(st.st_mode))
      return dsd_err_set(err, DSD_ENOTFOUND, "object %s not found", key);
    return dsd_err_set(err, DSD_EIO, "stat %s: %s", path, strerror(errno));
  }
  info->size = (uint64_t)st.st_size;
  info->mtime = (int64_t)st.st_mtime;
  return 0;
}

static int dsd__file_del(void *self, const char *key, dsd_err_t *err) {
  char path[PATH_MAX];
  int rc = dsd__path(self, key, path, sizeof(path), err);
  if (rc != 0) return rc;
  if (unlink(path) != 0 && errno != ENOENT && errno != ENOTDIR)
    return dsd_err_set(err, DSD_EIO, "delete %s: %s", path, strerror(errno));
  return 0;
}

/* -------------------------------------------------------------- listing */

typedef struct dsd__key_list {
  char **keys;
  size_t n, cap;
} dsd__key_list_t;

static int dsd__collect(const char *dir, const char *rel, const char *prefix,
                        dsd__key_list_t *l, dsd_err_t *err) {
  DIR *d = opendir(dir);
  if (d == NULL) {
    if (errno == ENOENT || errno == ENOTDIR) return 0;
    return dsd_err_set(err, DSD_EIO, "list %s: %s", dir, strerror(errno));
  }
  int rc = 0;
  struct dirent *e;
  while (rc == 0 && (e = readdir(d)) != NULL) {
    if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
    if (strstr(e->d_name, DSD__TMP_MARK) != NULL) continue;
    char key[PATH_MAX], path[PATH_MAX * 2];
    snprintf(key, sizeof(key), "%s%s%s", rel, rel[0] ? "/" : "", e->d_name);
    snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
    /* Prune subtrees that cannot match the prefix. */
    size_t kl = strlen(key), pl = strlen(prefix);
    if (strncmp(key, prefix, kl < pl ? kl : pl) != 0) continue;
    struct stat st;
    if (lstat(path, &st) != 0) continue;
    if (S_ISDIR(st.st_mode)) {
      rc = dsd__collect(path, key, prefix, l, err);
    } else if (S_ISREG(st.st_mode) && kl >= pl) {
      if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 64;
        char **k = realloc(l->keys, cap * sizeof(*k));
        if (k == NULL) {
          rc = dsd_err_set(err, DSD_ENOMEM, "out of memory listing");
          break;
        }
        l->keys = k;
        l->cap = cap;
      }
      if ((l->keys[l->n] = strdup(key)) == NULL) {
        rc = dsd_err_set(err, DSD_ENOMEM, "out of memory listing");
        break;
      }
      l->n++;
    }
  }
  closedir(d);
  return rc;
}

static int dsd__cmp_keys(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

static int dsd__file_list(void *self, const char *prefix, dsd_blob_list_cb cb,
                          void *data, dsd_err_t *err) {
  dsd__file_store_t *fs = self;
  dsd__key_list_t l = {0};
  int rc = dsd__collect(fs->root, "", prefix, &l, err);
  if (rc == 0) {
    if (l.n > 1) qsort(l.keys, l.n, sizeof(*l.keys), dsd__cmp_keys);
    for (size_t i = 0; i < l.n; i++) {
      dsd_blob_info_t info = {0};
      dsd_err_t ignore = {0};
      if (dsd__file_head(self, l.keys[i], &info, &ignore) != 0) continue; /* raced a delete */
      if (cb(data, l.keys[i], &info) != 0) break;
    }
  }
  for (size_t i = 0; i < l.n; i++) free(l.keys[i]);
  free(l.keys);
  return rc;
}

/* -------------------------------------------------------------- writer */

typedef struct dsd__file_writer {
  dsd_blob_writer_t base;
  int fd;
  const atomic_int *cancel;
  char path[PATH_MAX];
  char tmp[PATH_MAX + 64];
} dsd__file_writer_t;

static int dsd__fw_write(dsd_blob_writer_t *bw, const void *data, size_t len) {
  dsd__file_writer_t *w = (dsd__file_writer_t *)bw;
  if (w->cancel && atomic_load(w->cancel))
    return dsd_err_set(&bw->err, DSD_ECANCELED, "write canceled");
  if (dsd__write_all(w->fd, data, len) != 0)
    return dsd_err_set(&bw->err, DSD_EIO, "write %s: %s", w->tmp, strerror(errno));
  return 0;
}

static void dsd__fw_abort(dsd_blob_writer_t *bw) {
  dsd__file_writer_t *w = (dsd__file_writer_t *)bw;
  if (w->fd >= 0) close(w->fd);
  unlink(w->tmp);
  free(w);
}

static int dsd__fw_close(dsd_blob_writer_t *bw, dsd_err_t *err) {
  dsd__file_writer_t *w = (dsd__file_writer_t *)bw;
  int rc = bw->err.code;
  if (rc != 0) {
    dsd_err_set(err, rc, "%s", dsd_err_msg(&bw->err));
    dsd__fw_abort(bw);
    return rc;
  }
  if (w->cancel && atomic_load(w->cancel)) {
    dsd__fw_abort(bw);
    return dsd_err_set(err, DSD_ECANCELED, "write canceled");
  }
  rc = dsd__commit_tmp(w->fd, w->tmp, w->path, err);
  free(w);
  return rc;
}

static const dsd_blob_writer_ops_t dsd__fw_ops = {dsd__fw_write, dsd__fw_close,
                                                  dsd__fw_abort};

static int dsd__file_writer_open(void *self, const char *key,
                                 const dsd_blob_writer_opts_t *opts,
                                 dsd_blob_writer_t **out, dsd_err_t *err) {
  dsd__file_writer_t *w = calloc(1, sizeof(*w));
  char id[64];
  if (w == NULL) return dsd_err_set(err, DSD_ENOMEM, "out of memory");
  w->base.ops = &dsd__fw_ops;
  w->cancel = opts->cancel;
  int rc = dsd__path(self, key, w->path, sizeof(w->path), err);
  if (rc != 0) goto fail;
  w->fd = dsd__open_tmp(w->path, w->tmp, sizeof(w->tmp), id, sizeof(id), err);
  if (w->fd < 0) {
    rc = w->fd;
    goto fail;
  }
  if (opts->on_upload_created && opts->on_upload_created(opts->data, key, id) != 0) {
    rc = dsd_err_set(err, DSD_EIO, "recording the upload of %s failed", key);
    close(w->fd);
    unlink(w->tmp);
    goto fail;
  }
  *out = &w->base;
  return 0;
fail:
  free(w);
  return rc;
}

/* -------------------------------------------------------------- reader */

typedef struct dsd__file_reader {
  dsd_blob_reader_t base;
  int fd;
  uint64_t left;
} dsd__file_reader_t;

static long dsd__fr_read(dsd_blob_reader_t *br, void *buf, size_t len) {
  dsd__file_reader_t *r = (dsd__file_reader_t *)br;
  if (r->left == 0) return 0;
  if (len > r->left) len = (size_t)r->left;
  for (;;) {
    ssize_t n = read(r->fd, buf, len);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return dsd_err_set(&br->err, DSD_EIO, "read: %s", strerror(errno));
    r->left -= (uint64_t)n;
    if (n == 0) r->left = 0;
    return (long)n;
  }
}

static void dsd__fr_close(dsd_blob_reader_t *br) {
  dsd__file_reader_t *r = (dsd__file_reader_t *)br;
  close(r->fd);
  free(r);
}

static const dsd_blob_reader_ops_t dsd__fr_ops = {dsd__fr_read, dsd__fr_close};

static int dsd__file_reader_open(void *self, const char *key, uint64_t offset,
                                 uint64_t length, dsd_blob_reader_t **out,
                                 dsd_err_t *err) {
  char path[PATH_MAX];
  int fd = dsd__open_read(self, key, path, sizeof(path), err);
  if (fd < 0) return fd;
  if (offset > 0 && lseek(fd, (off_t)offset, SEEK_SET) < 0) {
    close(fd);
    return dsd_err_set(err, DSD_EINVAL, "seek %s: %s", key, strerror(errno));
  }
  dsd__file_reader_t *r = calloc(1, sizeof(*r));
  if (r == NULL) {
    close(fd);
    return dsd_err_set(err, DSD_ENOMEM, "out of memory");
  }
  r->base.ops = &dsd__fr_ops;
  r->fd = fd;
  r->left = length;
  *out = &r->base;
  return 0;
}

/* ----------------------------------------------------- crash recovery */

static int dsd__file_abort_uploads(void *self, const char *key, const char *upload_id,
                                   dsd_err_t *err) {
  char path[PATH_MAX];
  int rc = dsd__path(self, key, path, sizeof(path), err);
  if (rc != 0) return rc;
  char dir[PATH_MAX];
  snprintf(dir, sizeof(dir), "%s", path);
  char *slash = strrchr(dir, '/');
  const char *base = slash + 1;
  *slash = '\0';
  char want[PATH_MAX];
  snprintf(want, sizeof(want), "%s" DSD__TMP_MARK "%s", base, upload_id ? upload_id : "");
  DIR *d = opendir(dir);
  if (d == NULL) return 0;
  struct dirent *e;
  while ((e = readdir(d)) != NULL) {
    bool match = upload_id ? strcmp(e->d_name, want) == 0
                           : strncmp(e->d_name, want, strlen(want)) == 0;
    if (!match) continue;
    char victim[PATH_MAX * 2];
    snprintf(victim, sizeof(victim), "%s/%s", dir, e->d_name);
    if (unlink(victim) != 0 && errno != ENOENT) {
      rc = dsd_err_set(err, DSD_EIO, "remove %s: %s", victim, strerror(errno));
      break;
    }
  }
  closedir(d);
  return rc;
}

static const char *dsd__file_describe(void *self) {
  return ((dsd__file_store_t *)self)->describe;
}

static void dsd__file_free(void *self) {
  dsd__file_store_t *fs = self;
  free(fs->root);
  free(fs);
}

static const dsd_blob_ops_t dsd__file_ops = {
    "file", dsd__file_put, dsd__file_get, dsd__file_head, dsd__file_del,
    dsd__file_list, dsd__file_writer_open, dsd__file_reader_open,
    dsd__file_abort_uploads, dsd__file_describe, dsd__file_free,
};

int dsd_blob_file_open(const char *dir, dsd_blob_store_t **out, dsd_err_t *err) {
  if (dir == NULL || dir[0] != '/')
    return dsd_err_set(err, DSD_EINVAL,
                       "file store path must be absolute HINT: use file:///abs/dir");
  char probe[PATH_MAX];
  snprintf(probe, sizeof(probe), "%s/x", dir);
  int rc = dsd__mkdirs_for(probe, err);
  if (rc != 0) return rc;
  if (access(dir, W_OK | X_OK) != 0)
    return dsd_err_set(err, DSD_EIO, "file store %s is not writable: %s", dir, strerror(errno));
  dsd__file_store_t *fs = calloc(1, sizeof(*fs));
  dsd_blob_store_t *s = calloc(1, sizeof(*s));
  if (fs == NULL || s == NULL || (fs->root = strdup(dir)) == NULL) {
    free(fs);
    free(s);
    return dsd_err_set(err, DSD_ENOMEM, "out of memory");
  }
  size_t n = strlen(fs->root);
  while (n > 1 && fs->root[n - 1] == '/') fs->root[--n] = '\0';
  snprintf(fs->describe, sizeof(fs->describe), "file://%s", fs->root);
  s->ops = &dsd__file_ops;
  s->self = fs;
  *out = s;
  return 0;
}
