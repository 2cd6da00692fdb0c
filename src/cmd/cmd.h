/* cmd: one entry point per command. Each returns the process exit status. */
#ifndef SM_CMD_H
#define SM_CMD_H

#include <stdbool.h>

typedef struct sm_command {
    const char *name;
    int (*run)(int argc, char **argv);   /* argv[0] is the command name */
    const char *summary;
    bool uses_blas;                      /* runs BLAS/LAPACK: needs more address space (util/limits.h) */
} sm_command;

int cmd_inspect(int argc, char **argv);
int cmd_synth(int argc, char **argv);
int cmd_eval(int argc, char **argv);
int cmd_calibrate(int argc, char **argv);
int cmd_plan(int argc, char **argv);
int cmd_apply(int argc, char **argv);
int cmd_diff(int argc, char **argv);
int cmd_tui(int argc, char **argv);
int cmd_tokenize(int argc, char **argv);
int cmd_figures(int argc, char **argv);

extern const sm_command sm_commands[];

#endif
