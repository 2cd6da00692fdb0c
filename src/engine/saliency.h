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
 * runs its k selected experts once, a MoE-block forward's work, in blocks of rows large enough
 * that each expert's GEMM has about 256 rows (at most 4096 rows of scratch). Each expert's sum
 * runs in row order, so the result does not depend on how the rows are blocked. */
#ifndef SM_SALIENCY_H
#define SM_SALIENCY_H

#include <stdint.h>

#include "moe/moe.h"
#include "util/monitor.h"

/* The saliencies of block b (one router row per expert, no expert map) on m rows served block by
 * block by rows(ctx, t0, n, buf) (the engine's row-source callback, engine.h; buf holds n rows):
 * routing, then the selected experts on each block.
 * Cancellable between blocks. 0, or -1 with a message. */
typedef const float *(*sm_saliency_rows_fn)(void *ctx, int64_t t0, int64_t n, float *buf);
int sm_saliency_rows(const sm_moe_block *b, int64_t m, sm_saliency_rows_fn rows, void *ctx,
                     const sm_monitor *mon, double *saliency);
/* The same on m rows in memory. */
int sm_saliency(const sm_moe_block *b, const float *x, int64_t m, double *saliency);

#endif
