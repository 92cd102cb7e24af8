/* Placeholder until the pipeline lands: owned by the PostgreSQL work (issue 3). */
#include <stdio.h>
#include "cli/commands.h"
static int dsd__unbuilt(const char *cmd) {
  fprintf(stderr, "dsd %s: the dump pipeline is not built yet\n", cmd);
  return 1;
}
int dsd_cmd_dump(int argc, char **argv) { (void)argc; (void)argv; return dsd__unbuilt("dump"); }
int dsd_cmd_restore(int argc, char **argv) { (void)argc; (void)argv; return dsd__unbuilt("restore"); }
int dsd_cmd_ls(int argc, char **argv) { (void)argc; (void)argv; return dsd__unbuilt("ls"); }
int dsd_cmd_verify(int argc, char **argv) { (void)argc; (void)argv; return dsd__unbuilt("verify"); }
