/* route: the routing rules of the supported MoE architectures (DESIGN §2.6) on a block of
 * tokens.
 *
 * Every supported rule is: logits z = W_r x; p = softmax(z) over all n router rows (float,
 * max-subtracted); keep the top k of p (descending; equal probabilities go to the lower index,
 * which is what torch.topk does on CPU in practice); optionally renormalise the k kept
 * probabilities to sum 1; multiply by a scaling factor. The rules differ only in parameters:
 *   mixtral                 renorm always
 *   qwen2_moe, qwen3_moe,   renorm iff norm_topk_prob
 *   olmoe
 *   deepseek (MoE v1)       renorm iff norm_topk_prob and top_k > 1 (its modeling code's
 *                           condition); routed_scaling_factor multiplies the weights (applied
 *                           after the optional renormalisation, as DeepSeek-V3 does)
 * Shared experts (qwen2_moe's sigmoid-gated one, deepseek's always-on ones) are not routing;
 * they belong to the MoE block (moe.h). */
#ifndef SM_ROUTE_H
#define SM_ROUTE_H

#include <stdbool.h>
#include <stdint.h>

#include "model/arch.h"

typedef struct sm_route_rule {
    int top_k;
    bool renorm;   /* divide the k kept probabilities by their sum */
    float scaling; /* multiplies the routed weights (1 unless routed_scaling_factor) */
} sm_route_rule;

/* The rule of a parsed config (only its routing fields are read). */
sm_route_rule sm_route_rule_from_config(const sm_config *c);

/* z (m × n, row-major) = x (m × hidden) · routerᵀ (router n × hidden). A row's logits may round
 * differently in products of another row count (BLAS kernels handle row tails their own way), so
 * code that must reproduce stored statistics (the analysis, saliencies recomputed from an older
 * stats file) routes in blocks of SM_ROUTE_BLOCK rows from the first. */
#define SM_ROUTE_BLOCK 256
void sm_route_logits(const float *x, int64_t m, int64_t hidden, const float *router, int n,
                     float *z);

/* p = softmax(z) for one token (float, max-subtracted, sum accumulated in double). */
void sm_route_softmax(const float *z, int n, float *p);

/* order[0..k) = the k most probable of p[0..n) in the order sm_route_select picks them (equal
 * probabilities: the lower index first). taken: n bytes of scratch. */
void sm_route_rank(const float *p, int n, int k, unsigned char *taken, int *order);

/* For each of m tokens: idx[t·k + j] the j-th selected router row (descending weight), w the
 * weights. 0, or -1 if the rule is invalid for n rows. */
int sm_route_select(const sm_route_rule *r, const float *z, int64_t m, int n, int *idx,
                    float *w);

/* One token's k selections (idx, w: its k entries from sm_route_select) folded onto the slots
 * that run them: expert_map[row] is a row's slot (NULL: row i is slot i); rows sharing a slot
 * run it once with their weights summed. slots[0..d) (in order of first selection) and sw[0..d)
 * get the d distinct slots and their weights; returns d (at most k, so k entries suffice). */
int sm_route_fold(const int *idx, const float *w, int k, const int *expert_map, int *slots, float *sw);

/* One token of sm_route_select (the rule valid for n rows), with scratch p (n floats) and taken
 * (n bytes): the same figures, for callers that route rows on several threads. */
void sm_route_select_row(const sm_route_rule *r, const float *z, int n, float *p, unsigned char *taken, int *idx,
                         float *w);

/* counts[i] += tokens whose selection contains row i (idx as from sm_route_select). */
void sm_route_count(const int *idx, int64_t m, int k, int n, int64_t *counts);
/* f_i = counts[i] / tokens: the share of tokens routed to i (DESIGN §2.1). */
void sm_route_frequencies(const int64_t *counts, int64_t tokens, int n, double *f);

#endif
