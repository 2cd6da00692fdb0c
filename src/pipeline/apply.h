/* apply: run a plan — resolve every MoE layer's settings (layer override, else the plan's
 * defaults, else the documented defaults), calibrate or reuse the stats file, build each layer
 * and stream it into the output format. `submoe apply` and the workbench's commit both call
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
#include "plan/plan.h"
#include "util/iopaths.h"

/* Defaults when neither the layer nor the plan says (man/submoe-plan.5): method auto, whose
 * merge candidate is submoe — at least as good as the best single method on every layer. */
#define SM_APPLY_DEFAULT_AUTO SM_PLAN_DEFAULT_AUTO
#define SM_APPLY_DEFAULT_METHOD SM_PLAN_DEFAULT_METHOD
#define SM_APPLY_DEFAULT_ROUTER SM_PLAN_DEFAULT_ROUTER
#define SM_APPLY_DEFAULT_FORMAT SM_OUT_SUBMOE

/* One MoE layer, resolved. */
typedef struct sm_resolved_layer {
    int layer, n;                  /* original experts */
    bool is_auto;
    char *auto_why;                /* the choice and the errors behind it (auto) */
    sm_layer_job job;              /* job.groups points at assign when merging */
    int *assign;                   /* n: clusters (merges), or NULL */
    sm_merge_opts (*cluster)[3];   /* per-cluster options (job.spec.cluster) */
} sm_resolved_layer;

typedef struct sm_resolved_plan {
    sm_model *model;
    sm_calib *calib;
    int n_layers;                  /* model layers */
    sm_resolved_layer *layers;     /* n_layers entries; .n == 0 for dense layers */
    sm_out_format format;
    int dtype;
    uint64_t shard_size;
    char *outdir;                  /* resolved output.path, or NULL */
    uint64_t plan_hash;
    bool calib_reused;
} sm_resolved_plan;

/* Open the plan's model, check the plan against it, calibrate (or reuse the stats file) and fix
 * every MoE layer's method, clusters, ranks and router. 0, or -1 with a message. */
int sm_plan_resolve(const sm_plan *p, const sm_monitor *mon, bool quiet, sm_resolved_plan *out);
void sm_resolved_plan_free(sm_resolved_plan *r);

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
