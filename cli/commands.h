/*
 * commands.h - the dsd subcommands. Each takes the arguments after the
 * subcommand name (argv[0] is the subcommand) and returns the process exit
 * status: 0 success, 1 failure, 2 usage error.
 */
#ifndef DSD_CLI_COMMANDS_H
#define DSD_CLI_COMMANDS_H

int dsd_cmd_serve(int argc, char **argv);   /* cli/cmd_serve.c */
int dsd_cmd_dump(int argc, char **argv);    /* cli/cmd_dump.c */
int dsd_cmd_restore(int argc, char **argv); /* cli/cmd_dump.c */
int dsd_cmd_ls(int argc, char **argv);      /* cli/cmd_dump.c */
int dsd_cmd_verify(int argc, char **argv);  /* cli/cmd_dump.c */

#endif
