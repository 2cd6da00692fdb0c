/* router: the router of a merged or pruned layer (DESIGN §2.6).
 *
 *   remap           keep all n router rows; row i runs the merged expert of its cluster
 *                   (an expert map, see moe.h). Exact: HC-SMoE's choice.
 *   collapse-lstsq  one row per cluster, fitted on calibration inputs so that
 *                   w_c·x ≈ logsumexp_{i∈c} z_i(x); softmax over the k rows then approximates
 *                   the summed member probabilities. Ridge-regularised toward the
 *                   collapse-mean row w̄_c:
 *                       minimise Σ_t (w_c·x_t − lse_c(t))² + λ ||w_c − w̄_c||²,
 *                       λ = ridge · mean diag(XᵀX)   (relative; default SM_ROUTER_RIDGE_DEFAULT)
 *                   so that with few or degenerate inputs the fit falls back to collapse-mean.
 *                   The H×H normal equations are accumulated in double over token blocks
 *                   (streaming: memory does not grow with the token count) and solved by
 *                   Cholesky. Softmax ignores a per-token shift, so the fit allows one: it
 *                   regresses the targets centred across clusters (lse_c − mean_c' lse_c')
 *                   and returns u_c + m̄ (m̄ = mean of the w̄_c), the exact minimiser of the
 *                   objective above with a free per-token offset.
 *   collapse-mean   w_c = Σ_{i∈c} f_i w_i / Σ_{i∈c} f_i (uniform when the members' f are 0).
 *   collapse-kl     one row per cluster by softmax regression on the summed member
 *                   probabilities (engine/router_kl.h), warm-started from collapse-lstsq.
 * Pruning keeps the rows of the kept experts. */
#ifndef SM_ROUTER_H
#define SM_ROUTER_H

#include <stdint.h>

typedef enum {
    SM_ROUTER_REMAP = 0,
    SM_ROUTER_COLLAPSE_LSTSQ,
    SM_ROUTER_COLLAPSE_MEAN,
    SM_ROUTER_COLLAPSE_KL,
} sm_router_mode;
#define SM_ROUTER_MODE_COUNT 4

#define SM_ROUTER_RIDGE_DEFAULT 1e-3 /* collapse-lstsq and collapse-kl */

/* "remap", "collapse-lstsq", "collapse-mean", "collapse-kl" */
const char *sm_router_mode_name(sm_router_mode m);
int sm_router_mode_parse(const char *name, sm_router_mode *out);

/* Validate a partition (cluster_of[i] in [0, k), every cluster non-empty). */
int sm_router_check_partition(const int *cluster_of, int n, int k);

/* remap: map[i] = cluster_of[i], validated. */
int sm_router_remap(const int *cluster_of, int n, int k, int *map);

/* rows (k × hidden) = frequency-weighted member means. freq may be NULL (uniform). */
int sm_router_collapse_mean(const float *router, int n, int64_t hidden, const int *cluster_of,
                            int k, const double *freq, float *rows);

/* Streaming least-squares fit of collapsed rows. */
typedef struct sm_router_fit sm_router_fit;
sm_router_fit *sm_router_fit_new(const float *router, int n, int64_t hidden,
                                 const int *cluster_of, int k);
/* Add m calibration inputs x (m × hidden). */
int sm_router_fit_add(sm_router_fit *f, const float *x, int64_t m);
/* rows (k × hidden). ridge ≤ 0 = SM_ROUTER_RIDGE_DEFAULT. */
int sm_router_fit_solve(sm_router_fit *f, const double *freq, double ridge, float *rows);
void sm_router_fit_free(sm_router_fit *f);

/* new + add(x) + solve. */
int sm_router_collapse_lstsq(const float *router, int n, int64_t hidden, const int *cluster_of,
                             int k, const double *freq, const float *x, int64_t m, double ridge,
                             float *rows);

/* rows (k × hidden) = router rows keep[0..k). */
int sm_router_prune(const float *router, int n, int64_t hidden, const int *keep, int k,
                    float *rows);

#endif
