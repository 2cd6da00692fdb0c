/* engine: the compression pipeline of one MoE layer, the API the CLI and the workbench share.
 *
 *     analysis  →  clusters  →  merged layer  →  errors
 *
 *   sm_engine_analyse     (engine/analyse.h) route the layer's calibration inputs (block by
 *                         block), count frequencies and REAP saliencies, run every expert on a
 *                         token sample, similarities, and optionally the per-expert input Grams
 *                         for whitening;
 *   sm_engine_cluster     (engine/analyse.h) k clusters by k-means / hierarchical / k-medoids on
 *                         a similarity;
 *   sm_engine_merge       one merged expert per cluster (or a pruned subset) with its router
 *                         (remap / collapse-lstsq / collapse-mean) and per-member errors;
 *   sm_engine_error       relative MoE-block output error on held-out inputs.
 * Everything works on in-memory float layers (sm_moe_block). Long calls take an sm_monitor
 * (progress callback + cancel flag, checked between blocks) so a front end can run them on a
 * worker thread; a cancelled call returns -1 with the message "cancelled" and owns nothing. */
#ifndef SM_ENGINE_H
#define SM_ENGINE_H

#include <stdbool.h>
#include <stdint.h>

#include "engine/allocate.h"
#include "engine/analyse.h"
#include "engine/cluster.h"
#include "engine/merge.h"
#include "util/monitor.h"
#include "engine/prune.h"
#include "engine/refit.h"
#include "engine/router.h"
#include "engine/saliency.h"
#include "engine/similarity.h"
#include "engine/unionsvd.h"
#include "moe/moe.h"

/* ---- merged layer -------------------------------------------------------------------------- */

typedef struct sm_layer_spec {
    sm_merge_method method;     /* per-cluster merge, prune-frequency, prune-output, prune-reap or keep */
    sm_merge_opts matrix[3];    /* gate, up, down */
    sm_router_mode router;      /* merges only; pruning drops rows */
    double ridge;               /* collapse-lstsq and collapse-kl (0 = default) */
    /* Per-cluster options: cluster c < n_cluster uses cluster[c][j] instead of matrix[j] (the
     * caller fills every entry, copying matrix[] where a cluster has no override). NULL = none. */
    const sm_merge_opts (*cluster)[3];
    int n_cluster;
    /* Neuron alignment (engine/align.h) before merging: every member of a cluster is permuted to
     * match its most frequent member, using the calibration inputs x. */
    bool align;
    /* Output-preserving refit of each merged cluster's down projection (refit.h) on the
     * calibration inputs x; cluster_refit (n_cluster entries, or NULL) overrides it per cluster.
     * refit_ridge: relative λ (0 = SM_REFIT_RIDGE_DEFAULT). */
    bool refit;
    const bool *cluster_refit;
    double refit_ridge;
    /* Alignments already computed on this source layer and these x/m (align.h), reused and
     * added to; NULL: every alignment is computed. */
    struct sm_align_memo *align_memo;
} sm_layer_spec;

typedef struct sm_merged_layer {
    int n_router, n_experts;    /* router rows of the result, expert slots */
    int64_t hidden;
    sm_merge_method method;
    sm_router_mode router_mode;
    float *router;              /* n_router × hidden */
    int *expert_map;            /* n_router entries (remap), or NULL */
    int *source;                /* n_experts: original expert of each slot when pruned/kept */
    sm_merged (*mats)[3];       /* n_experts × {gate, up, down} when merged, else NULL */
    sm_expert *experts;         /* n_experts views (over mats or the source block) */
    int *cluster_of;            /* original n: slot of each original expert (−1 = dropped) */
    int n_original;
    double align_corr;          /* aligned merges: mean correlation of matched neurons (else 0) */
    int refit_clusters;         /* clusters whose down projection was refitted */
} sm_merged_layer;

/* Merge (or prune) a layer. assign/k: the clusters (ignored by keep; for pruning, k is the
 * number of experts kept). x/m: calibration inputs for collapse-lstsq, prune-output and
 * alignment (may be NULL/0 otherwise). prune-output scores every candidate subset on all m rows
 * from expert outputs computed once (engine/subset.h, whose memory it needs).
 * Memory, besides the result: alignment 2·min(m, SM_ALIGN_MAX_ROWS)·I + I² floats per aligned
 * member (align.h); submoe-whitened per matrix the members' whitening factors n·in² floats, the
 * whitened copies n·out·in floats, one in² double Cholesky workspace and the union Gram
 * (merge.h) — at Mixtral's down projection (in = I = 14336) for 2 members about 3.6 GiB; this is
 * on top of the analysis' Grams (sm_analysis_opts.grams). */
int sm_engine_merge(const sm_moe_block *src, const sm_layer_analysis *a, const int *assign,
                    int k, const sm_layer_spec *spec, const float *x, int64_t m,
                    const sm_monitor *mon, sm_merged_layer *out);
void sm_merged_layer_free(sm_merged_layer *l);


/* A block view of the merged layer (shares the source's shared experts and rule). */
sm_moe_block sm_merged_layer_block(const sm_merged_layer *l, const sm_moe_block *src);

/* Total stored parameters of the layer's routed experts. */
int64_t sm_merged_layer_params(const sm_merged_layer *l);

/* ---- errors -------------------------------------------------------------------------------- */

/* Relative MoE-block output error of the merged layer against the source on m held-out
 * inputs, in blocks (cancellable between blocks). */
int sm_engine_error(const sm_moe_block *src, const sm_merged_layer *l, const float *x, int64_t m,
                    const sm_monitor *mon, double *rel);
/* The source block's output on m inputs (m × hidden into ref), in the blocks sm_engine_error
 * uses, so that candidates compared on the same rows share one reference forward. */
int sm_engine_reference(const sm_moe_block *src, const float *x, int64_t m, const sm_monitor *mon, float *ref);
/* sm_engine_error against a reference from sm_engine_reference (NULL: computed here): the same
 * figure, bit for bit. */
int sm_engine_error_ref(const sm_moe_block *src, const sm_merged_layer *l, const float *x, const float *ref,
                        int64_t m, const sm_monitor *mon, double *rel);

#endif
