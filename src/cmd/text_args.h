/* text_args: the `--text FILE...` and `--text-field NAME` options that eval, calibrate, plan and
 * the workbench share (the text itself is read by text/corpus.h). */
#ifndef SM_TEXT_ARGS_H
#define SM_TEXT_ARGS_H

#include <stdbool.h>

#include "text/corpus.h"

typedef struct cmd_text_args {
    const char **files;     /* [argc]: every --text and the positional FILEs after MODEL */
    int n;
    const char *field;      /* --text-field, or NULL */
    bool given;             /* --text was given */
    sm_text_source src;     /* the files and field, for text/corpus.h */
} cmd_text_args;

/* Room for argc files (free with cmd_text_args_free). */
void cmd_text_args_init(cmd_text_args *t, int argc);
void cmd_text_args_free(cmd_text_args *t);
/* After getopt: `--text A B C` leaves B and C as positional arguments after MODEL (argv[optind]);
 * they are text files too. Without --text, more than one positional is an error, as is
 * --text-field. 0, or -1 with the message set ("expected one MODEL directory" and the like). */
int cmd_text_args_finish(cmd_text_args *t, int argc, char **argv, int optind);

#endif
