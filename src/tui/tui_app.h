/* tui_app: the workbench — load a model, calibrate, look at expert similarity and spectra, edit
 * clusters, ranks, methods and routers, preview errors and perplexity, save and open plans,
 * commit the merged model. The loop and its worker thread; drawing is tui_draw and the
 * tui_view_* files, state and keys tui_state / tui_keys, the worker's jobs tui_jobs. */
#ifndef SM_TUI_APP_H
#define SM_TUI_APP_H

#include "util/matmul.h"

typedef struct tui_options {
    const char *model;    /* model directory (NULL: the bundled demo) */
    const char *plan;     /* a plan to open (edited and saved there), or NULL */
    const char *calib;    /* a stats / activations file instead of calibrating, or NULL */
    const char *tokens;   /* calibration tokens (NULL: the bundled data/calib.u32) */
    const char *heldout;  /* held-out tokens for perplexity (NULL: data/heldout.u32; with text,
                           * the text's windows after the calibration ones) */
    const char *const *text; /* calibration text files instead of tokens (text/corpus.h), or NULL */
    int n_text;
    const char *text_field;  /* their JSON Lines field, or NULL */
    const char *task;     /* task file for the accuracy key A (NULL: data/demo-task.jsonl) */
    int frames;           /* > 0: exit after drawing that many screens (tests under sanitizers) */
    sm_precision precision; /* calibration, statistics and the plan's perplexity (util/matmul.h) */
} tui_options;

/* Run on the terminal until the user quits. 0, or -1 with a message (before the terminal was
 * taken). */
int tui_run(const tui_options *o);

#endif
