/* allocate: how many experts each MoE layer keeps (DESIGN §2.2).
 *
 *   uniform      the same k in every layer (clamped to the layer's expert count).
 *   non-uniform  "multi-layer adaptive": start from every expert kept and repeatedly take the
 *                merge with the smallest marginal cost increase J_l(k_l − 1) − J_l(k_l) (ties:
 *                lower layer) until the budget — total experts kept — is met. Over the whole
 *                model (window 0) or per window of w consecutive MoE layers; a window's budget
 *                is the global budget shared in proportion to the window's expert count
 *                (largest remainders, ties to the earlier window), so the whole model still
 *                keeps exactly `budget`. A negative increment (k-means is not monotone) counts
 *                as zero. */
#ifndef SM_ALLOCATE_H
#define SM_ALLOCATE_H

#include <stdint.h>

/* One layer's clustering cost: cost[k] for k = 1..n_experts (cost[0] unused). */
typedef struct sm_layer_cost {
    int n_experts;
    const double *cost;
} sm_layer_cost;

int sm_allocate_uniform(int n_layers, const int *n_experts, int k, int *k_out);

/* k_min ≥ 1 experts stay in every layer. budget must lie in [Σ min(k_min, N_l), Σ N_l]. */
int sm_allocate_nonuniform(const sm_layer_cost *layers, int n_layers, int64_t budget, int window,
                           int k_min, int *k_out);

#endif
