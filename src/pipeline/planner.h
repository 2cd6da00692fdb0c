/* planner: decide, for every MoE layer, how many experts to keep and which experts to merge —
 * the computation behind `submoe plan` (DESIGN §2.2).
 *
 * Target: a number of experts per layer, or a ratio of experts removed. Uniform allocation keeps
 * the same k in every layer; adaptive ("multi-layer adaptive") spends the same total over the
 * layers by marginal clustering cost J_l(k), globally or per window of w MoE layers. No layer
 * keeps fewer experts than the routing top-k. Clusters come from the chosen algorithm on the
 * chosen similarity, with the seed, on the calib's statistics (fit rows only). */
#ifndef SM_PLANNER_H
#define SM_PLANNER_H

#include <stdbool.h>
#include <stdint.h>

#include "engine/engine.h"
#include "pipeline/calib.h"

typedef struct sm_planner_opts {
    int experts;             /* experts kept per layer (> 0), or 0 to use ratio */
    double ratio;            /* fraction of each layer's experts removed, in [0, 1) */
    bool adaptive;           /* non-uniform allocation */
    int window;              /* adaptive window in MoE layers (0 = whole model) */
    sm_cluster_algo algo;
    sm_similarity_kind sim;
    uint64_t seed;
} sm_planner_opts;

typedef struct sm_planned_layer {
    int layer;               /* -1 for non-MoE layers */
    int n, k;                /* experts before and after */
    int *assign;             /* n: cluster of each expert, canonical */
    double *freq;            /* n: routing frequency on the fit rows */
    double cost;             /* clustering cost J(k) = Σ_i 1 − mean cos(Y_i, C_c(i)) */
    double *within;          /* k: mean pairwise output similarity inside each cluster (1 for singletons) */
} sm_planned_layer;

/* The one rule for a layer's expert count from a target (every front end uses it): `experts`
 * (> 0), else round(n·(1 − ratio)); at least top_k and 1, at most n. */
int sm_planner_target_k(int experts, double ratio, int n, int top_k);

/* out has one entry per model layer. Experts per layer come from the target (rounded to nearest,
 * clamped to [top_k, n]); adaptive keeps the same total. 0, or -1 with a message. */
int sm_planner_run(const sm_model *m, sm_calib *c, const sm_planner_opts *o, const sm_monitor *mon,
                   sm_planned_layer *out);
void sm_planned_layer_free(sm_planned_layer *p);

#endif
