/* subset: the MoE-block output error of keeping a subset of a layer's experts, from expert outputs
 * computed once (DESIGN §2.5; issue 16).
 *
 * Pruning leaves every kept expert as it is; only the routing changes: a row picks the top k of
 * the kept router rows (softmax over them, then the rule's renormalisation and scaling: exactly
 * sm_route_select on the kept logits, as the block forward of the pruned layer does). So
 *     ||Y − Y_S||² = Σ_t ||Σ_i c_ti E_i(x_t)||²,   c_ti = w_ti − w^S_ti
 * (the shared experts' output is the same on both sides and cancels) is, per row, a quadratic
 * form in the routing-weight differences over the Gram of the expert outputs,
 * G_t[a][b] = E_a(x_t)·E_b(x_t). A subset of at least `min_keep` experts only ever selects, on a
 * row, among that row's R = min(n, top_k + n − min_keep) most probable experts under the full
 * router, so the cache holds those experts' order and Gram (double, packed upper triangle) per
 * row, plus ||Y||² of the full block with its shared experts. A subset then costs
 * O(m·(k + top_k·k + top_k²)) — re-routing and the quadratic form — instead of a block forward.
 *
 * Rows are computed only as deep as a subset needs: a row reaches its position top_k + j only when
 * j of the experts before it are dropped, and the experts a search drops are mostly ones few rows
 * rank high. So each row is first computed as deep as it needs if the experts carrying the least
 * routing weight are dropped (1.5 times as many as may be), then one more and one of margin,
 * every expert run on all the rows that rank it there (large GEMMs); a subset whose selection
 * reaches beyond a row's positions computes that row again deeper (sm_subset_cache_error), a
 * couple of positions more than it needs (a row's outputs are not kept). At OLMoE's shape (64
 * experts, top-8, 16 dropped: R = 24) rows average 11 to 12 positions, and 0.5 to 1.5% of
 * them are computed again (olmoe2).
 *
 * Memory: m·R·(R+1)/2 doubles plus m·(n + R) ints and floats (m = 3072, n = 64, top-8, 16
 * dropped: 8 MB), while computing one block of rows' outputs about SM_SUBSET_BLOCK_BYTES, and
 * while scoring a batch of subsets at most 32 MB of their routings (m·top_k·6 bytes each). */
#ifndef SM_SUBSET_H
#define SM_SUBSET_H

#include <stdint.h>

#include "moe/moe.h"
#include "util/monitor.h"

/* Bytes of expert outputs held at once while the cache is built (rows per block follow). */
#define SM_SUBSET_BLOCK_BYTES (192ll << 20)

typedef struct sm_subset_cache sm_subset_cache;

/* The cache of block b (one router row per expert, no expert map) on m rows of x (m × hidden),
 * for subsets of at least min_keep experts; b and x are borrowed for the cache's life (rows are
 * computed deeper when a subset needs them). Cancellable between experts, and so are the later
 * extensions (with mon's cancel flag). NULL with a message. */
sm_subset_cache *sm_subset_cache_new(const sm_moe_block *b, const float *x, int64_t m, int min_keep,
                                     const sm_monitor *mon);
void sm_subset_cache_free(sm_subset_cache *c);

/* Relative output error ||Y − Y_S||_F / ||Y||_F of keeping experts keep[0..k) (ascending,
 * k ≥ min_keep) against the full block, on the cached rows, computing rows deeper first where the
 * subset needs it. 0, or -1 with a message (after which the cache is only to be freed). The
 * signature of sm_subset_error_fn (prune.h): pass the cache as its context. */
int sm_subset_cache_error(void *cache, const int *keep, int k, double *err);

/* The errors of `count` subsets of k experts, keeps[i·k .. i·k + k) into errs[i]: the figures
 * `count` calls of sm_subset_cache_error in order give, computed on every core (util/parallel).
 * Cancellable between subsets (mon); no progress. The signature of sm_subset_errors_fn (prune.h). */
int sm_subset_cache_errors(void *cache, const int *keeps, int count, int k, const sm_monitor *mon, double *errs);

#endif
