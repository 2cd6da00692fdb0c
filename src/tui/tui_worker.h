/* tui_worker: the workbench's application object shared by its loop (tui_app.c) and the jobs its
 * worker thread runs (tui_jobs.c), defined in tui_worker.c, which calls neither. Internal to
 * src/tui.
 *
 * The UI thread owns the terminal and the state's selection; the worker owns the model, the
 * calibration and the engine. Both touch `s` only under `mu`. Jobs run one at a time, user jobs
 * ahead of background ones (the previews of every layer after calibration), and a user job
 * pre-empts a running background one; Esc cancels the running job and drops the background ones. */
#ifndef SM_TUI_WORKER_H
#define SM_TUI_WORKER_H

#include <limits.h>
#include <pthread.h>
#include <stdbool.h>

#include "pipeline/build.h"
#include "pipeline/calib.h"
#include "pipeline/planner.h"
#include "pipeline/resolve.h"
#include "plan/plan.h"
#include "tui/tui_state.h"
#include "util/iopaths.h"

enum { TUI_JOB_CALIB = 1, TUI_JOB_PREVIEW, TUI_JOB_RECLUSTER, TUI_JOB_SPECTRUM, TUI_JOB_PPL, TUI_JOB_SAVE,
       TUI_JOB_OPEN, TUI_JOB_COMMIT, TUI_JOB_ACCURACY,
       TUI_JOB_COMPARE, /* open compare_path as the plan compared against */
       TUI_JOB_OTHER,   /* build a layer as the compared plan says: its error (and groups) */
       TUI_JOB_LAST = TUI_JOB_OTHER };

/* TUI_JOB_PPL's `cluster`: the perplexity of the plan compared against too (the compare view's P). */
#define TUI_PPL_BOTH 1

typedef struct tui_job {
    int kind, layer, cluster;
    bool force;       /* preview: even when fresh; commit: replace an existing directory */
    bool background;  /* queued behind user jobs; dropped by Esc */
} tui_job;

#define TUI_QUEUE (TUI_MAX_LAYERS + 64)

typedef struct tui_app {
    tui_state s;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    tui_job q[TUI_QUEUE];
    int nq;
    bool stop;
    volatile int cancel;
    tui_job running;          /* the job the worker runs, while running_now */
    bool running_now;
    bool preempted;           /* that job, a background one, was cancelled for a user's job and
                               * queued again: its "cancelled" is not an error */
    /* the worker's */
    sm_model *model;
    sm_calib *calib;
    sm_calib_spec spec;                        /* its numbers are s.plan.calib's (tui_app_calib_settings) */
    char tokens[PATH_MAX], heldout[PATH_MAX], calib_file[PATH_MAX], open_path[PATH_MAX];
    char compare_path[PATH_MAX];               /* the plan O asked to compare against */
    bool tokens_default;                       /* tokens: the bundled data/calib.u32 */
    bool heldout_given;                        /* --heldout (else, with text, the text's own windows) */
    char **text;                               /* calibration text instead of tokens (owned), or NULL */
    int n_text;
    char *text_field;
    sm_text_source text_src;                   /* spec.text points here */
    char task[PATH_MAX];                       /* task file of the accuracy key */
    /* what the worker did with the plan (the plan itself is the state's, s.plan) */
    bool have_groups[TUI_MAX_LAYERS];          /* the layer's groups are a plan's or a clustering's:
                                                * do not cluster again after calibration */
    bool planner_pending;                      /* counts/groups from the plan's target, after calibration */
    /* warnings (sm_warn) while the terminal is the workbench's: the last one goes on the status
     * line after the job's own message, all of them to stderr at exit */
    char *warnings;
    char last_warning[200];
} tui_app;

/* Queue a job (identical queued jobs are merged; a user job goes ahead of background ones). A user
 * job pre-empts a running background job: that one is cancelled (within the monitor's bound) and
 * queued again first among the background work. */
void tui_push(tui_app *a, tui_job j);
/* Esc: stop the running job and drop the queued background work. */
void tui_cancel_work(tui_app *a);
/* Status line message under the lock (error: shown as an error). */
void tui_status(tui_app *a, bool error, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* The files the workbench reads (model, tokens, held-out tokens, stats file): its outputs (the
 * saved plan, the committed model) never land on them (util/iopaths.h). Worker thread. */
void tui_app_inputs(const tui_app *a, sm_paths *inputs);
/* "; warning: ..." when a warning came since the last call (then cleared), else "". Under mu. */
const char *tui_take_warning(tui_app *a);

/* Calibrate on text files (absolute names; n 0: on the tokens again) with their JSON Lines field
 * (NULL: "text"); spec.text follows. */
void tui_app_set_text(tui_app *a, const char *const *files, int n, const char *field);

/* The plan's calibration settings (samples, seq_len, keep, heldout, sample, seed) are the
 * workbench's: those it does not give become the workbench's lighter defaults (16 samples, keep
 * 2048, 512 held out: the demo calibrates in seconds), and the worker's spec follows them. Under
 * mu. */
void tui_app_calib_settings(tui_app *a);
/* Read a plan (the model must match) and keep it as the state's plan, every MoE layer resolved;
 * its calibration and output settings go to the app. 0, or -1 with a message. */
int tui_app_load_plan(tui_app *a, const char *path);
/* The state's plan as a submoe_plan document to save or commit: each layer written by the
 * resolver's inverse (sm_resolve_layer_entry) from the layer resolved, with auto's choice
 * (`chosen:`) of a fresh preview, so that `submoe apply` builds what was previewed without
 * searching again; the app's calibration and output settings. Caller holds the lock;
 * sm_plan_free after. */
void tui_app_plan(tui_app *a, sm_plan *p, const char *file);

#endif
