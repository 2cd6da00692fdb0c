/* resolve: what a plan means, worked out in one place — for `submoe apply`, `submoe plan` and the
 * workbench alike, so that a plan previewed, saved, planned or applied is built the same way.
 *
 *   sm_plan + model (+ calibration)  →  one sm_resolved_layer per MoE layer (its engine job)
 *   sm_resolved_layer (+ what was built)  →  sm_plan_layer          (the inverse)
 *
 * Each rule a front end needs lives here (or in what it calls) once: a layer's settings (its own,
 * else the plan's defaults, else the documented ones: sm_plan_effective_settings), its expert
 * count (the layer's, else the target's: sm_planner_target_k), its groups, its per-group ranks,
 * the calibration settings, the planner's options, and a rank as a number (sm_rank_resolve). */
#ifndef SM_RESOLVE_H
#define SM_RESOLVE_H

#include <stdbool.h>
#include <stdint.h>

#include "model/export.h"
#include "pipeline/build.h"
#include "pipeline/calib.h"
#include "pipeline/planner.h"
#include "plan/plan.h"
#include "util/monitor.h"

/* The output format when the plan gives none. */
#define SM_RESOLVE_DEFAULT_FORMAT SM_OUT_SUBMOE

/* One MoE layer, resolved. */
typedef struct sm_resolved_layer {
    int layer, n;                  /* original experts */
    bool is_auto;                  /* auto, still to decide (false once the plan recorded a choice) */
    char *auto_why;                /* the choice and the errors behind it (auto) */
    sm_layer_job job;              /* job.groups points at assign when merging */
    int *assign;                   /* n: clusters (merges and auto; explicit groups always), or NULL */
    bool groups_pending;           /* assign still to be clustered (sm_layer_cluster with job) */
    sm_merge_opts (*cluster)[3];   /* per-cluster options (job.spec.cluster) */
    bool *cluster_refit;           /* per-cluster refit (job.spec.cluster_refit), or NULL */
    int n_clusters;                /* the plan's per-cluster rank overrides, as given */
    sm_plan_cluster *clusters;
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

/* The plan's calibration settings over `s` (what the plan does not give stays as it is: apply
 * starts from sm_calib_spec_default, the workbench from its lighter defaults), with the text and
 * tokenizer digests the plan recorded (pointing into the plan: apply refuses changed text). Paths
 * not set: the text files come from sm_resolve_calib_text. */
void sm_resolve_calib_spec(const sm_plan *p, sm_calib_spec *s);
/* calibration.text's files relative to the plan: p->calib.n_text owned names (an array even when
 * there are none); sm_resolve_calib_text_free frees them. */
char **sm_resolve_calib_text(const sm_plan *p);
void sm_resolve_calib_text_free(const sm_plan *p, char **files);
/* The planner's options for the plan's target (defaults.experts or ratio); false when the plan
 * has no target. */
bool sm_resolve_planner_opts(const sm_plan *p, sm_planner_opts *o);

/* One MoE layer of n experts from its entry `pl` (or NULL) and the plan's defaults. Groups: the
 * entry's; else `clustered` (n labels of a clustering at the layer's count, e.g. the planner's or
 * the workbench's, when the entry names no clustering or similarity of its own); else
 * groups_pending. Explicit groups are kept in rl->assign whatever the method (a front end shows
 * them), but only merges and auto build on them. job.k is 0 when neither the entry nor
 * `target_k` (> 0) gives a count. A recorded auto choice (`chosen`) is adopted when it names a
 * method. Free with sm_resolved_layer_free. */
void sm_resolve_layer(const sm_plan *p, const sm_plan_layer *pl, int layer, int n, int target_k,
                     const int *clustered, sm_resolved_layer *rl);
void sm_resolved_layer_free(sm_resolved_layer *rl);

/* The inverse: a resolved layer as a plan entry that resolves back to it — its experts, method
 * (auto, with its recorded choice `chosen` or none), alignment (merges), groups (merges and auto:
 * rl->assign, unless NULL), every matrix's rank, the per-group ranks and refits it was given (merges
 * and auto), refit (merges; auto's is in `chosen`), and the router when `router` (else the plan's
 * defaults give it). sm_plan_free frees it with its plan. */
void sm_resolve_layer_entry(const sm_resolved_layer *rl, bool is_auto, const char *chosen, bool router,
                            sm_plan_layer *out);

/* A rank as the number of directions a group of `members` experts keeps of a matrix (out × in):
 * sm_rank_resolve's, with full and exact as the largest, min(out, members·in). Methods without a
 * rank are counted as submoe (the rank is kept for when the method changes). */
int64_t sm_resolve_rank_max(int64_t out, int64_t in, int members);
int64_t sm_resolve_rank_value(const sm_rank *r, sm_merge_method m, int64_t out, int64_t in, int members);

/* How a merging layer's groups will be stored under `method`: ranks[q][gate, up, down] is the
 * factor rank of group q's matrix, 0 when it is stored dense (full rank, no rank, or factors no
 * smaller than the matrix: sm_rank_factored), for rl->job.k groups of rl->assign. Returns how
 * many matrices are factored, or -1 with a message. */
int sm_resolve_stored_ranks(const sm_model *m, const sm_resolved_layer *rl, sm_merge_method method,
                            int64_t (*ranks)[3]);

/* Open the plan's model, check the plan against it, calibrate (or reuse the stats file) and fix
 * every MoE layer's method, clusters, ranks and router. 0, or -1 with a message. */
int sm_plan_resolve(const sm_plan *p, const sm_monitor *mon, bool quiet, sm_resolved_plan *out);
void sm_resolved_plan_free(sm_resolved_plan *r);

#endif
