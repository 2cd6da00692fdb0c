/* saliency: REAP's expert saliency (DESIGN §2.8; Cerebras, arXiv 2510.13999).
 *
 *     S_j = (1/|X_j|) Σ_{x∈X_j} g_j(x) · ‖E_j(x)‖₂
 *
 * X_j the calibration rows whose top-k contains j, g_j(x) the weight the layer's own routing rule
 * gives j on x: sm_route_select, the code the forward uses (softmax over all rows, top k,
 * renormalised over the k when the rule says so, times routed_scaling_factor). Shared experts are
 * not routed and count for no expert. An expert no row selects has saliency 0.
 *
 * The sum runs over every calibration row given (not only the analysis' output sample): each row
 * runs its k selected experts once, a MoE-block forward's work. Rows are pushed in any chunks and
 * processed in blocks of a fixed size from the first row, large enough that each expert's GEMM has
 * about 256 rows (at most 4096 rows: 3 × 4096 × hidden floats of scratch), so the result does not
 * depend on how the caller chunks the rows. */
#ifndef SM_SALIENCY_H
#define SM_SALIENCY_H

#include <stdint.h>

#include "moe/moe.h"
#include "util/monitor.h"

typedef struct sm_saliency_acc sm_saliency_acc;

/* An accumulator for block b (one router row per expert, no expert map; b and mon must outlive
 * it). Processing a block checks `mon` (may be NULL) between experts: push and finish then fail
 * with "cancelled". NULL with a message. */
sm_saliency_acc *sm_saliency_new(const sm_moe_block *b, const sm_monitor *mon);
/* Push mb rows x (mb × hidden) with their selection idx/w (mb × top_k) from sm_route_select with
 * b's rule. 0, or -1 with a message. */
int sm_saliency_push(sm_saliency_acc *s, const float *x, int64_t mb, const int *idx, const float *w);
/* Process the pending rows; saliency[n] = the means over every row pushed. 0 or -1. */
int sm_saliency_finish(sm_saliency_acc *s, double *saliency);
void sm_saliency_free(sm_saliency_acc *s);

/* The saliencies of block b on m rows served by rows(ctx, t0, n, buf) (the engine's row-source
 * callback, engine.h; buf holds n rows), routed here. Cancellable between blocks. 0, or -1 with
 * a message. */
typedef const float *(*sm_saliency_rows_fn)(void *ctx, int64_t t0, int64_t n, float *buf);
int sm_saliency_rows(const sm_moe_block *b, int64_t m, sm_saliency_rows_fn rows, void *ctx,
                     const sm_monitor *mon, double *saliency);
/* The same on m rows in memory. */
int sm_saliency(const sm_moe_block *b, const float *x, int64_t m, double *saliency);

/* Rows already in memory (x, rows of h floats) as a row-source callback (sm_saliency_rows_fn, the
 * engine's sm_row_source): ctx is an sm_memory_rows the caller keeps; buf is not used. */
typedef struct sm_memory_rows {
    const float *x;
    int64_t h;
} sm_memory_rows;
const float *sm_rows_in_memory(void *ctx, int64_t t0, int64_t n, float *buf);

#endif
