/* analyse: the statistics of one MoE layer that clustering and merging read: routing frequencies,
 * REAP saliencies, every expert's outputs on a token sample, the similarities between experts
 * (output, weight, router logits), optional per-expert input Grams; and clustering on them.
 * The first stage of engine/engine.h's pipeline. */
#ifndef SM_ANALYSE_H
#define SM_ANALYSE_H

#include <stdbool.h>
#include <stdint.h>

#include "engine/cluster.h"
#include "engine/saliency.h"
#include "engine/similarity.h"
#include "moe/moe.h"
#include "util/monitor.h"

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
    float *outputs;    /* or NULL: a buffer for out->outputs, taken over by the call (held by the
                        * analysis, or freed by the call when it fails or outputs_len is not the
                        * n · sampled · hidden floats it needs): a caller analysing layer after
                        * layer reuses the previous layer's pages instead of zeroed new ones */
    int64_t outputs_len;
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
/* a->sim_weight for an analysis made without it (opts.weight_sim false), the values the analysis
 * computes with it, checked finite. Reads only the block and writes only a->sim_weight, so it
 * may run on another thread while a's other statistics are read. 0, or -1 with a message. */
int sm_engine_analyse_weights(const sm_moe_block *b, const sm_monitor *mon, sm_layer_analysis *a);
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

#endif
