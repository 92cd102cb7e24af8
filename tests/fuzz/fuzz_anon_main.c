/*
 * fuzz_anon_main.c - run a libFuzzer target over its corpus without
 * libFuzzer.
 *
 * Linked with one fuzz_anon_*.c target instead of -fsanitize=fuzzer, it
 * feeds every file of the directories (or files) named on the command line
 * to LLVMFuzzerTestOneInput once. ctest runs it under gcc in every build,
 * so the checked-in corpus (seeds and any crash reproducers added to it)
 * keeps passing even where clang's libFuzzer is not used. Exit status 1
 * when a path cannot be read or holds no input.
 */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int run_file(const char *path) {
  FILE *f = fopen(path, "rb");
  uint8_t *buf = NULL;
  long n;
  int rc = -1;

  if (f == NULL) goto cleanup;
  if (fseek(f, 0, SEEK_END) != 0 || (n = ftell(f)) < 0 || fseek(f, 0, SEEK_SET) != 0) goto cleanup;
  /* An exact-size heap copy lets ASan catch reads past the input. */
  buf = malloc(n > 0 ? (size_t)n : 1);
  if (buf == NULL || fread(buf, 1, (size_t)n, f) != (size_t)n) goto cleanup;
  LLVMFuzzerTestOneInput(buf, (size_t)n);
  rc = 0;
cleanup:
  if (rc < 0) fprintf(stderr, "fuzz driver: cannot read %s\n", path);
  free(buf);
  if (f) fclose(f);
  return rc;
}

int main(int argc, char **argv) {
  size_t count = 0;
  for (int i = 1; i < argc; i++) {
    struct stat st;
    if (stat(argv[i], &st) != 0) {
      fprintf(stderr, "fuzz driver: cannot stat %s\n", argv[i]);
      return 1;
    }
    if (!S_ISDIR(st.st_mode)) {
      if (run_file(argv[i]) < 0) return 1;
      count++;
      continue;
    }
    DIR *d = opendir(argv[i]);
    struct dirent *e;
    if (d == NULL) return 1;
    while ((e = readdir(d)) != NULL) {
      char path[4096];
      if (e->d_name[0] == '.') continue;
      snprintf(path, sizeof(path), "%s/%s", argv[i], e->d_name);
      if (run_file(path) < 0) {
        closedir(d);
        return 1;
      }
      count++;
    }
    closedir(d);
  }
  printf("fuzz driver: %zu inputs ran\n", count);
  return count > 0 ? 0 : 1;
}
