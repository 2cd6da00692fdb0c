/* mctask: a zero-shot multiple-choice task file (JSONL), the input of `submoe eval --task`.
 *
 * One JSON object per line: {"context": STRING, "choices": [STRING, ...], "gold": INTEGER};
 * other keys are ignored (exports carry ids and the like). Blank lines are skipped. Every
 * problem is one message "FILE:LINE: what is wrong", and nothing is returned then. */
#ifndef SM_MCTASK_H
#define SM_MCTASK_H

#include <stddef.h>

typedef struct sm_mc_item {
    char *context;          /* UTF-8, NUL-free (JSON strings cannot hold a NUL here) */
    char **choices;         /* n_choices non-empty strings */
    int n_choices;
    int gold;               /* index into choices */
    int line;               /* 1-based line of the file, for messages and per-item output */
} sm_mc_item;

typedef struct sm_mc_task {
    char *path;
    sm_mc_item *items;
    size_t n;
} sm_mc_task;

/* 0, or -1 with the message set and *out empty. */
int sm_mc_task_read(const char *path, sm_mc_task *out);
/* The same from memory; name stands for the file in messages. */
int sm_mc_task_parse(const char *name, const char *text, size_t len, sm_mc_task *out);
void sm_mc_task_free(sm_mc_task *t);

#endif
