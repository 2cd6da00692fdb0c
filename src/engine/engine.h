/* engine: the compression pipeline of one MoE layer, the API the CLI and the workbench share.
 *
 *     analysis  →  clusters  →  merged layer  →  errors
 *
 *   sm_engine_analyse     route the layer's calibration inputs (block by block), count
 *                         frequencies and REAP saliencies, run every expert on a token sample,
 *                         similarities, and
 *                         optionally the per-expert input Grams for whitening;
 *   sm_engine_cluster     k clusters by k-means / hierarchical / k-medoids on a similarity;
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

/* ---- analysis ------------------------------------------------------------------------------ */

typedef struct sm_analysis_opts {
    int64_t block;     /* tokens per forward block (0 = 256) */
    int64_t sample;    /* tokens whose expert outputs are kept (0 = min(m, 512)), evenly spaced */
    bool grams;        /* accumulate input Grams for submoe-whitened: n·(H² + I²) floats, kept
                        * for the layer's whole merge — 6.6 GiB for Mixtral-8x7B (8 experts,
                        * H 4096, I 14336; 6.1 GiB of it gram_mid), 2.3 GiB for Qwen3-30B-A3B
                        * (128 experts, H 2048, I 768), independent of m; plus n·256·H floats of
                        * each expert's pending rows (its GEMMs run 256 rows at a time) */
    bool weight_sim;   /* compute weight similarity (dense experts only) */
} sm_analysis_opts;

typedef struct sm_layer_analysis {
    int n;              /* experts (= router rows; the block must have no expert map) */
    int64_t hidden, inter, tokens, sampled;
    int64_t *counts;    /* n: tokens routed to each expert */
    double *freq;       /* n: counts / tokens */
    float *outputs;     /* n × sampled × hidden: E_i on the sampled tokens (sm_outputs layout) */
    double *sim_output; /* n × n */
    double *sim_weight; /* n × n, or NULL */
    double *sim_logit;  /* n × n */
    double *saliency;   /* n: REAP saliency (saliency.h) on all the tokens, or NULL (a stats file
                         * from before saliencies, read without the layer's experts) */
    float **gram_in;    /* n × (hidden × hidden) or NULL: Σ x xᵀ over tokens routed to i */
    float **gram_mid;   /* n × (inter × inter) or NULL: same for the down projection's inputs */
} sm_layer_analysis;

/* x: m × hidden calibration inputs in memory. Scratch memory is O((block + sample) · (hidden +
 * inter)) plus the statistics themselves (and the Grams when asked for), whatever m is. */
int sm_engine_analyse(const sm_moe_block *b, const float *x, int64_t m,
                      const sm_analysis_opts *opts, const sm_monitor *mon,
                      sm_layer_analysis *out);

/* Calibration inputs supplied block by block, for inputs that are not in memory as one f32
 * array (a file in another dtype, or larger than memory): rows(ctx, t0, n, buf) returns a
 * pointer to rows [t0, t0 + n) of the m × hidden inputs, either into the source's own storage
 * or into buf (n × hidden floats, which it may fill); NULL with a message on failure. The
 * engine asks for blocks of at most opts->block rows, in order, then for single sample rows. */
typedef struct sm_row_source {
    int64_t m;
    const float *(*rows)(void *ctx, int64_t t0, int64_t n, float *buf);
    void *ctx;
} sm_row_source;

/* sm_engine_analyse on a row source: the same statistics, bit for bit, as on the same rows in
 * memory; memory bounded by the block and sample sizes, not by m. */
int sm_engine_analyse_rows(const sm_moe_block *b, const sm_row_source *src,
                           const sm_analysis_opts *opts, const sm_monitor *mon,
                           sm_layer_analysis *out);
void sm_layer_analysis_free(sm_layer_analysis *a);
/* 0 when every statistic is finite, else -1 naming the first that is not (and the expert): the
 * analysis functions refuse such statistics, and so must a reader of stored ones. */
int sm_layer_analysis_check(const sm_layer_analysis *a);
sm_outputs sm_layer_analysis_outputs(const sm_layer_analysis *a);

/* ---- clusters ------------------------------------------------------------------------------ */

typedef enum { SM_SIM_OUTPUT = 0, SM_SIM_WEIGHT, SM_SIM_LOGIT } sm_similarity_kind;

const char *sm_similarity_kind_name(sm_similarity_kind s); /* "output", "weight", "logit" */
int sm_similarity_kind_parse(const char *name, sm_similarity_kind *out);

/* assign[n] in [0, k), canonical labels. k-means uses the expert outputs (it is defined on
 * them; `sim` only matters for hierarchical and k-medoids). */
int sm_engine_cluster(const sm_layer_analysis *a, sm_cluster_algo algo, sm_similarity_kind sim,
                      int k, uint64_t seed, const sm_monitor *mon, int *assign);

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
