/* guard: method auto's plan-level guard (issue 18; doc/DESIGN-NOTES §2.5b).
 *
 * auto chooses each layer's candidate by held-out loss with that layer alone swapped in
 * (sm_layer_build_auto). Layers interact, and candidates differ by a few thousandths of a nat,
 * about the sampling error of those windows, so the composed plan alone can end up worse than a
 * single method applied everywhere. The guard scores, on windows the per-layer choice never saw
 * (sm_calib_guard_windows), the composed plan against every uniform plan its candidates define
 * (one candidate, e.g. prune-output or submoe+align/dominant, on every auto layer; the other
 * layers as the plan says), by held-out loss of the whole model with all of its layers swapped
 * in, and keeps the best whole plan (ties: the composed one). On those windows the default plan
 * is thus never worse than any single method auto tried.
 *
 * It runs only where auto scored by held-out loss (a forward pass is cheap there); the cost is
 * one forward pass over the guard windows per plan, each layer built once more as the pass
 * reaches it (sm_perplexity_built: memory of one built layer). */
#ifndef SM_GUARD_H
#define SM_GUARD_H

#include <stdbool.h>
#include <stddef.h>

#include "pipeline/build.h"
#include "pipeline/calib.h"

/* Plans compared: the composed one and up to this many uniform ones. */
#define SM_GUARD_MAX_PLANS 16
#define SM_GUARD_NAME_LEN 48

/* One model layer as the guard builds it. */
typedef struct sm_guard_layer {
    const sm_layer_job *job; /* NULL: not a MoE layer (the model's own). An auto layer: the job auto
                              * searched (its own groups); else the job built as it is */
    const char *chosen;      /* auto layers: auto's `why` (its choice, then every candidate's score) */
} sm_guard_layer;

/* A plan whose loss on the first half of the guard windows is above the best there by more than
 * this (nats/token, 2% in perplexity: ten times the differences the guard has to settle) is not
 * scored on the second half. */
#define SM_GUARD_DROP 0.02

typedef struct sm_guard {
    int n_plans;                               /* 0: the guard did not run */
    char name[SM_GUARD_MAX_PLANS][SM_GUARD_NAME_LEN]; /* [0] "per-layer", then the uniform candidates */
    double first[SM_GUARD_MAX_PLANS];          /* loss on the first n_first windows (nats/token) */
    double loss[SM_GUARD_MAX_PLANS];           /* on all n_windows (dropped: first[i]) */
    bool dropped[SM_GUARD_MAX_PLANS];          /* above the best first[] by more than SM_GUARD_DROP */
    bool same[SM_GUARD_MAX_PLANS];             /* the same plan as the per-layer one (not run again) */
    double second0;                            /* the per-layer plan's loss on the second half */
    double best_first;                         /* the least first[] */
    int best;                                  /* the plan kept: least loss of those not dropped
                                                * (ties: the lower index, the per-layer plan first) */
    int n_windows, n_first, seq_len;
} sm_guard;

/* Score the plans and pick the best (g->n_plans stays 0, and 0 is returned, when there is no auto
 * layer, no guard window, or auto scored a layer by block error). 0, or -1 with a message. */
int sm_guard_run(const sm_model *m, sm_calib *c, const sm_guard_layer *layers, int n_layers, const sm_monitor *mon,
                 sm_guard *g);

/* The uniform candidate the guard kept ("prune-output"), or NULL when the per-layer choice stands. */
const char *sm_guard_choice(const sm_guard *g);

/* The job of candidate `name` (the first word of an auto `why`: "submoe+align+refit/reap",
 * "prune-output", ...) on auto's job: its method, alignment and refit; dominant and reap groups
 * clustered from the statistics (groups NULL), else the job's own. 0, or -1 (not a candidate). */
int sm_guard_candidate_job(const sm_layer_job *job, const char *name, sm_layer_job *out);

/* The guard's scores for a plan's comment: "auto's plan guard, held-out loss on N windows of T
 * tokens the per-layer choice did not see (nats/token): per-layer 1.1843, uniform submoe 1.2001,
 * ...; kept: per-layer". */
void sm_guard_note(const sm_guard *g, char *buf, size_t len);

#endif
