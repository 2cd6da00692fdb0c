/* eval_task: the --task mode of `submoe eval` (zero-shot multiple choice; eval/mcscore.h). */
#ifndef SM_EVAL_TASK_H
#define SM_EVAL_TASK_H

#include <stdbool.h>

#include "util/matmul.h"

typedef struct sm_eval_task_args {
    const char *model;
    const char **files;     /* task files (JSONL) */
    int n_files;
    const char *delimiter;  /* NULL: " " */
    const char *items_out;  /* per-choice log-likelihoods as TSV, or NULL */
    int max_length;         /* 0: the model's (see eval/mcscore.h) */
    bool add_special, quiet, json;
    sm_precision precision;  /* the forward pass's products */
} sm_eval_task_args;

/* Score every task file and print the table (or JSON); the exit status. Everything is read,
 * checked and scored before anything is printed or written. */
int sm_eval_tasks(const sm_eval_task_args *a);

#endif
