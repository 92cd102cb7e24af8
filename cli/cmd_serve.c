/* Placeholder until the broker lands: owned by the broker work (issue 2). */
#include <stdio.h>
#include "cli/commands.h"
int dsd_cmd_serve(int argc, char **argv) {
  (void)argc; (void)argv;
  fprintf(stderr, "dsd serve: the broker is not built yet\n");
  return 1;
}
