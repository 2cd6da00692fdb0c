/* apply: run a plan — resolve it (pipeline/resolve.h: every MoE layer's settings, the layer's
 * own, else the plan's defaults, else the documented ones; calibration or the stats file), build
 * each layer and stream it into the output format. `submoe apply` and the workbench's commit both call
 * sm_apply, so a plan saved from the workbench and applied headless gives the same bytes.
 *
 * Two passes over the MoE layers: the first fixes every layer's clusters and output shape (needed
 * because safetensors headers are written first) — statistics only for a layer whose method is
 * fixed, but a layer left to auto is decided there by building its candidates, the costly part,
 * unless the plan records the choice; the second builds and writes one layer at a time, so memory
 * is about one layer's fp32 weights plus the calibration rows, never the model. */
#ifndef SM_APPLY_H
#define SM_APPLY_H

#include <stdbool.h>
#include <stdint.h>

#include "util/monitor.h"
#include "model/export.h"
#include "pipeline/build.h"
#include "pipeline/calib.h"
#include "pipeline/resolve.h"
#include "plan/plan.h"
#include "util/iopaths.h"

/* Defaults when neither the layer nor the plan says (man/submoe-plan.5): method auto, whose
 * merge candidate is submoe — at least as good as the best single method on every layer. */
#define SM_APPLY_DEFAULT_AUTO SM_PLAN_DEFAULT_AUTO
#define SM_APPLY_DEFAULT_METHOD SM_PLAN_DEFAULT_METHOD
/* The workbench's per-layer router (it writes every layer's router and can commit any format):
 * the best collapse, which every format holds, until its previews follow the output format
 * (plans and apply do: sm_plan_default_router). */
#define SM_APPLY_DEFAULT_ROUTER SM_PLAN_DEFAULT_COLLAPSE
#define SM_APPLY_DEFAULT_FORMAT SM_RESOLVE_DEFAULT_FORMAT

typedef struct sm_apply_opts {
    const char *outdir;     /* NULL: the plan's output.path */
    int format;             /* -1: the plan's (default submoe) */
    bool force, quiet;      /* quiet: no progress bar */
    const sm_monitor *mon;
    const sm_paths *inputs; /* more inputs the output must not land on (the workbench's), or NULL */
} sm_apply_opts;

typedef struct sm_apply_report {
    char outdir[1024];
    uint64_t bytes;                       /* tensor data written */
    int64_t params_before, params_after;  /* routed experts */
    double mean_output_error;             /* mean over MoE layers (held-out rows) */
} sm_apply_report;

int sm_apply(const sm_plan *p, const sm_apply_opts *o, sm_apply_report *rep);

#endif
