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
       TUI_JOB_OPEN, TUI_JOB_COMMIT, TUI_JOB_ACCURACY };

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
    sm_calib_spec spec;
    char tokens[PATH_MAX], heldout[PATH_MAX], calib_file[PATH_MAX], open_path[PATH_MAX];
    bool tokens_default;                       /* tokens: the bundled data/calib.u32 */
    bool heldout_given;                        /* --heldout (else, with text, the text's own windows) */
    char **text;                               /* calibration text instead of tokens (owned), or NULL */
    int n_text;
    char *text_field;
    sm_text_source text_src;                   /* spec.text points here */
    char task[PATH_MAX];                       /* task file of the accuracy key */
    /* what an opened plan says that the state does not show, kept for saving */
    bool have_groups[TUI_MAX_LAYERS];          /* groups given: do not cluster after calibration */
    sm_cluster_algo algo[TUI_MAX_LAYERS];      /* clustering of layers without groups */
    sm_similarity_kind sim[TUI_MAX_LAYERS];
    bool planner_pending;                      /* counts/groups from the plan's target, after calibration */
    sm_planner_opts planner;
    char *decided_why[TUI_MAX_LAYERS];         /* auto: the choice recorded in the plan */
    sm_plan_merge merge;                       /* the plan's damping and svd, written back as read */
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

/* The workbench's target before a plan or the user says otherwise: a quarter of the experts. */
#define TUI_DEFAULT_RATIO 0.25
/* A layer of n experts before calibration: the default method and router, the count
 * sm_planner_target_k gives for TUI_DEFAULT_RATIO, assigned round-robin, full ranks. */
void tui_default_layer_plan(tui_layer_plan *p, int n, int top_k);
/* The choice an opened plan recorded for an auto layer, while the layer is unedited, or NULL. */
const char *tui_decided_why(const tui_app *a, int l, const tui_layer_plan *tp);
/* An edited layer resolved as `submoe apply` resolves the plan the workbench saves: the layer as a
 * plan entry (pipeline/resolve.h's inverse), with `chosen` as its recorded auto choice (or NULL),
 * through sm_resolve_layer; groups a clustering made stay the resolver's to regroup. The
 * clustering and similarity are the opened plan's. Free rl with sm_resolved_layer_free. */
void tui_layer_resolve(const tui_app *a, int l, const tui_layer_plan *tp, uint64_t seed, const char *chosen,
                       sm_resolved_layer *rl);
/* Read a plan into the state and the app (the model must match), each layer as the resolver reads
 * it. 0, or -1 with a message. */
int tui_app_load_plan(tui_app *a, const char *path);
/* The edited plan as a submoe_plan document (caller holds the lock; sm_plan_free after). */
void tui_app_plan(tui_app *a, sm_plan *p, const char *file);

#endif
