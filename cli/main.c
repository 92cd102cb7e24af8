/*
 * main.c - the dsd binary: dispatches to the subcommands.
 *
 *   dsd serve                  run the service broker (OSB API v2.17)
 *   dsd dump / restore / ls / verify   run the dump pipeline from a shell
 */
#include <stdio.h>
#include <string.h>

#include "cli/commands.h"

static const struct {
  const char *name;
  int (*fn)(int argc, char **argv);
  const char *summary;
} dsd__commands[] = {
    {"serve", dsd_cmd_serve, "run the service broker (configured by environment, see README)"},
    {"dump", dsd_cmd_dump, "dump a database into a file:// or s3:// archive"},
    {"restore", dsd_cmd_restore, "import an archive into a database"},
    {"ls", dsd_cmd_ls, "list the dumps in a store"},
    {"verify", dsd_cmd_verify, "check an archive against its summary (sizes, sha256)"},
};

static void dsd__usage(FILE *f) {
  fprintf(f, "usage: dsd COMMAND [OPTIONS]\n\ncommands:\n");
  for (size_t i = 0; i < sizeof(dsd__commands) / sizeof(dsd__commands[0]); i++)
    fprintf(f, "  %-8s %s\n", dsd__commands[i].name, dsd__commands[i].summary);
  fprintf(f, "\n'dsd COMMAND --help' documents each command.\n");
}

int main(int argc, char **argv) {
  if (argc < 2) {
    dsd__usage(stderr);
    return 2;
  }
  if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
      strcmp(argv[1], "help") == 0) {
    dsd__usage(stdout);
    return 0;
  }
  if (strcmp(argv[1], "--version") == 0) {
    printf("dsd %s\n", DSD_VERSION);
    return 0;
  }
  for (size_t i = 0; i < sizeof(dsd__commands) / sizeof(dsd__commands[0]); i++)
    if (strcmp(argv[1], dsd__commands[i].name) == 0)
      return dsd__commands[i].fn(argc - 1, argv + 1);
  fprintf(stderr, "dsd: unknown command '%s'\nHINT: run 'dsd --help' for the list of commands\n", argv[1]);
  return 2;
}
