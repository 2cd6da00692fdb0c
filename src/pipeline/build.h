/* build: one MoE layer of a plan, resolved and built in memory — the step `apply`, `plan`'s
 * previews and the workbench share, so that all three produce the same merged layer.
 *
 *   load the layer (fp32)  →  its statistics (calib)  →  clusters (explicit groups, or the
 *   chosen algorithm on the chosen similarity)  →  sm_engine_merge  →  weight and output errors
 *
 * Fit rows feed statistics, clustering, router fits and prune-output's selection; held-out rows
 * only the output error. */
#ifndef SM_BUILD_H
#define SM_BUILD_H

#include <stdbool.h>
#include <stdint.h>

#include "engine/engine.h"
#include "forward/moelayer.h"
#include "pipeline/calib.h"

/* What to do with one MoE layer, every default already applied. */
typedef struct sm_layer_job {
    int layer;
    int k;                    /* clusters (merges) or experts kept (pruning); ignored by keep */
    const int *groups;        /* cluster of each original expert in [0, k), or NULL: cluster */
    bool regroup;             /* auto: groups came from a clustering, not the user, so auto may
                               * also try dominant and reap groups (sm_cluster_dominant, _reap) */
    sm_cluster_algo algo;     /* when groups is NULL */
    sm_similarity_kind sim;
    uint64_t seed;
    sm_layer_spec spec;       /* method, per-matrix merge options, router mode */
    bool no_output_error;     /* leave output_error at -1 (a caller that only runs the block) */
} sm_layer_job;

typedef struct sm_layer_build {
    int layer;
    sm_moe_layer src;         /* the layer's original fp32 weights */
    bool src_borrowed;        /* src is another's (auto's shared copy): freeing leaves it */
    const sm_layer_analysis *analysis; /* owned by the calib (until sm_calib_release) */
    int n;                    /* original experts */
    int *assign;              /* n: cluster of each expert as merged (pruning: -1 dropped) */
    int k;
    sm_merged_layer merged;
    sm_moe_block block;       /* the merged layer as a block (shares src's shared experts) */
    double output_error;      /* relative MoE-block output error on held-out rows (-1: none held out) */
    double mean_member_error; /* mean relative Frobenius error of members vs merged, all matrices */
    int64_t params_before, params_after; /* routed-expert parameters */
} sm_layer_build;

/* Build one layer. The calib's statistics for the layer are computed on first use (with Grams
 * when the method is submoe-whitened). 0, or -1 with a message naming the layer. */
int sm_layer_build_run(const sm_model *m, sm_calib *c, const sm_layer_job *job, const sm_monitor *mon,
                       sm_layer_build *out);
void sm_layer_build_free(sm_layer_build *b);
/* The same on a layer already loaded (sm_moe_layer_load_mon), which the build borrows: several
 * builds of one layer share one copy of its weights. */
int sm_layer_build_on(const sm_model *m, sm_calib *c, const sm_layer_job *job, const sm_monitor *mon,
                      const sm_moe_layer *src, sm_layer_build *out);
/* 0 when the build's previewed errors are finite numbers, else -1 naming the layer: a merge that
 * overflowed float32 is reported by what previews it (plan, the workbench), never shown as nan or
 * left out; apply's exporter refuses to write it, naming the tensor. */
int sm_layer_build_check(const sm_layer_build *b);

/* method auto (DESIGN §2.5b): build the job's merge method on its clusters without and with neuron
 * alignment (with job->regroup, also on dominant groups: the k most-routed experts as centres,
 * which keeps busy experts apart on models with skewed routing, and on reap groups: the k most
 * REAP-salient experts as centres; each skipped when it equals groups already tried),
 * prune-frequency, prune-output and prune-reap (keeping job->k experts), then the best of the
 * merges again with its down projections refitted (refit: down), and keep the best —
 * out->assign holds the chosen groups:
 *   - by held-out loss of the whole model with the candidate layer swapped in, when the model has
 *     at most SM_AUTO_LOSS_MAX_PARAMS parameters and the calib has held-out token windows
 *     (sm_calib_eval_windows) — a forward pass is cheap there, and the MoE-block error alone can
 *     prefer a choice that hurts more downstream;
 *   - else by MoE-block output error on the held-out rows.
 * `why` receives "<chosen>[+align][+refit][/dominant|/reap] (<metric>: submoe 0.2, submoe+align 0.1, ...)". */
#define SM_AUTO_LOSS_MAX_PARAMS 1000000000ull
int sm_layer_build_auto(const sm_model *m, sm_calib *c, const sm_layer_job *job, const sm_monitor *mon,
                        sm_layer_build *out, char *why, size_t why_len);
/* The method (and whether aligned) named at the start of an auto `why` string; -1 if none. */
int sm_auto_choice_parse(const char *why, sm_merge_method *out, bool *align);
/* Whether the choice at the start of an auto `why` string refits ("submoe+refit", "submoe+align+refit/dominant"). */
bool sm_auto_choice_refit(const char *why);

/* Clusters of a layer for a job without merging (for `plan`): assign[n], canonical labels. */
int sm_layer_cluster(sm_calib *c, const sm_moe_layer *src, const sm_layer_job *job, const sm_monitor *mon,
                     int *assign);

/* Perplexity of the model with some MoE layers replaced (blocks[L] non-NULL) on `n_seq` windows of
 * `seq_len` tokens. 0, or -1 with a message. */
int sm_perplexity_with(const sm_model *m, const int32_t *ids, int n_seq, int seq_len,
                       const sm_moe_block *const *blocks, const sm_monitor *mon, double *ppl);

/* The same with every MoE layer built just before the forward pass reaches it and freed right
 * after, so memory holds one built layer, not the whole merged model. `build` fills *out and
 * returns 0, returns 1 to keep the model's own layer, or -1 with a message (which stops the
 * run); it gets a silent monitor that cancels with `mon`. */
typedef int (*sm_layer_builder)(void *ctx, int layer, const sm_monitor *mon, sm_layer_build *out);
int sm_perplexity_built(const sm_model *m, const int32_t *ids, int n_seq, int seq_len, sm_layer_builder build,
                        void *build_ctx, const sm_monitor *mon, double *ppl);

/* The two above with the forward pass's products in `precision` (they use fp32). */
int sm_perplexity_with_prec(const sm_model *m, const int32_t *ids, int n_seq, int seq_len,
                            const sm_moe_block *const *blocks, sm_precision precision, const sm_monitor *mon,
                            double *ppl);
int sm_perplexity_built_prec(const sm_model *m, const int32_t *ids, int n_seq, int seq_len, sm_layer_builder build,
                             void *build_ctx, sm_precision precision, const sm_monitor *mon, double *ppl);

/* The same building for any forward run (task accuracy of a plan): pass sm_built_override and
 * sm_built_layer_done as forward.h's moe_override and on_layer with the sm_built_layers as their
 * context; sm_built_layers_end after the run (it frees a layer a stopped run left). */
typedef struct sm_built_layers {
    sm_layer_builder build;
    void *ctx;
    sm_monitor cancel_only; /* the caller's cancellation, without its progress */
    const sm_monitor *mon;
    int n_layers;
    bool have;
    sm_layer_build cur;     /* built in place: its block points into itself */
} sm_built_layers;
void sm_built_layers_init(sm_built_layers *b, const sm_model *m, sm_layer_builder build, void *ctx,
                          const sm_monitor *mon);
int sm_built_override(void *ctx, int layer, const sm_moe_block **block);
void sm_built_layer_done(void *ctx, int layer_done);
void sm_built_layers_end(sm_built_layers *b);

#endif
