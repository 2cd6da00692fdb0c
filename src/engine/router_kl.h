/* router_kl: the collapse-kl router (DESIGN §2.9) and the measures that compare collapsed routers.
 *
 * One router row per cluster, W ∈ R^{k×H} (the routers of every supported architecture have no
 * bias, so there is none to fit), minimising on m calibration rows x_t
 *
 *     f(W) = (1/m) Σ_t KL(p(x_t) ‖ softmax(W x_t)) + λ ||W − W⁰||²,
 *     p_c(x) = Σ_{i∈c} softmax(z(x))_i     (z = the original router's logits),
 *     λ = ridge · mean diag(XᵀX)/m         (relative),
 *
 * multinomial logistic regression with soft labels, strictly convex. W⁰ (the "prior") is the
 * collapse-lstsq solution, which is also the warm start: collapse-kl refines collapse-lstsq.
 * (§2.9 writes λ||W||²; a ridge toward 0 or toward collapse-mean's rows dominates the KL term,
 * whose curvature q(1 − q)·x² is small, and measured on the demos it made the held-out KL worse
 * than collapse-lstsq's at every ridge tried. When every cluster is one expert W⁰ is the
 * original router, the exact minimiser, f = 0.)
 * The ridge is chosen by validation (sm_router_collapse_kl_choose): the last fifth of the fit
 * rows (stream order: text the fit does not see) scores ridge 10, 1, 0.1, 0.01, 0.001, each
 * fitted on the other rows toward their own collapse-lstsq and warm-started from the previous
 * one (the path from W⁰), and collapse-lstsq's rows themselves (the infinite ridge); the best is
 * refitted on every row, or, when collapse-lstsq's rows validate best, they are the result. On
 * the demos (both models, 25% and 50%, two captures: 28 layers) it is strictly below
 * collapse-lstsq's held-out KL on 27 and chooses collapse-lstsq's rows on the 28th (demo layer 1
 * at 25% with 16 × 256 tokens, where collapse-lstsq is within 8.5e-6 nats and every ridge from
 * 1e4 down gives a higher held-out KL). At Qwen3-30B-A3B's shape (random inputs) it costs 1.8×
 * the CPU time of one fixed-ridge solve.
 * Solver: L-BFGS (8 pairs) preconditioned by the diagonal blocks of ∇²f, each approximated as
 * s_c·C + 2λI (C = XᵀX/m, s_c = mean q_c(1 − q_c) at the start), applied through C's
 * eigenvectors; Armijo backtracking with quadratic interpolation. Why: hidden states are strongly
 * correlated and clusters' routing mass differs, so unscaled L-BFGS took ~80 iterations and ~180
 * evaluations at Qwen3-30B-A3B's shape (n 128, k 96, H 2048, m 3072); preconditioned it takes
 * ~20 and ~22, at the same objective to 1e-6. The eigendecomposition (about 10 H³ flops) is done
 * only when H² ≤ 40 m k, where it costs less than the evaluations it saves; otherwise (a large H
 * and few clusters: Mixtral) C is taken as its mean eigenvalue times I. Newton needs the (kH)²
 * Hessian (98k unknowns at k = 48, H = 2048). An evaluation costs two m×H×k products (logits,
 * then (Q − P)ᵀX), in blocks of 1024 rows with a monitor check between blocks.
 * Stopping rule: ||∇f|| ≤ 1e-6 · ||∇f|| at the start, or two steps in a row that lower f by less than
 * 1e-6 · |f| (the logits are single precision: below that the gradient is mostly rounding), or
 * no step of the line search lowers f, or SM_ROUTER_KL_MAX_ITER iterations. C's eigenbasis is
 * computed once per problem (all its rows) and shared by the validation's solves. */
#ifndef SM_ROUTER_KL_H
#define SM_ROUTER_KL_H

#include <stdbool.h>
#include <stdint.h>

#include "util/monitor.h"

#define SM_ROUTER_KL_MAX_ITER 200
#define SM_ROUTER_KL_RIDGE_DEFAULT 1e-2 /* when not validated: too few rows */

typedef struct sm_router_kl sm_router_kl;

/* The problem on m rows x (m × hidden, borrowed until free). prior: W⁰ (k × hidden, copied), or
 * NULL for the collapse-mean rows with the members' frequencies freq (NULL = uniform). ridge ≤ 0:
 * SM_ROUTER_KL_RIDGE_DEFAULT. NULL with a message on bad input. */
sm_router_kl *sm_router_kl_new(const float *router, int n, int64_t hidden, const int *cluster_of, int k,
                               const double *freq, const float *prior, const float *x, int64_t m, double ridge);
void sm_router_kl_free(sm_router_kl *p);

/* f(W) and, when grad is not NULL, ∇f (both k × hidden, row-major, double). */
int sm_router_kl_eval(sm_router_kl *p, const double *w, double *grad, const sm_monitor *mon, double *f);

typedef struct sm_router_kl_info {
    int iterations, evaluations;
    double f_start, f_end;       /* objective at the warm start and at the result */
} sm_router_kl_info;

/* Minimise from `start` (k × hidden) into rows (may be the same array). info may be NULL. */
int sm_router_kl_solve(sm_router_kl *p, const float *start, const sm_monitor *mon, float *rows,
                       sm_router_kl_info *info);

/* collapse-kl. ridge ≤ 0 and at least SM_ROUTER_KL_VAL_MIN validation rows (m/VAL_PART): the
 * validated ridge (above). ridge > 0: that ridge, unvalidated; too few rows: the default ridge;
 * both toward and from collapse-lstsq (its default ridge) on all m rows. */
#define SM_ROUTER_KL_RIDGES 5
#define SM_ROUTER_KL_VAL_PART 5
#define SM_ROUTER_KL_VAL_MIN 64

typedef struct sm_router_kl_choice {
    bool validated;
    bool lstsq;                /* validated: no ridge beat collapse-lstsq's rows, which are the result */
    double ridge;              /* the relative ridge of the result (INFINITY with lstsq) */
    int64_t m_train, m_val;    /* the split (validated) */
    int tried;                 /* ridges solved, largest first */
    double ridges[SM_ROUTER_KL_RIDGES], val_kl[SM_ROUTER_KL_RIDGES]; /* mean KL on the validation rows */
    double val_kl_lstsq;       /* collapse-lstsq's (fitted on the training rows) */
    int evaluations;           /* of f, over every solve */
} sm_router_kl_choice;

/* choice may be NULL. */
int sm_router_collapse_kl_choose(const float *router, int n, int64_t hidden, const int *cluster_of, int k,
                                 const double *freq, const float *x, int64_t m, double ridge,
                                 const sm_monitor *mon, float *rows, sm_router_kl_choice *choice);
/* sm_router_collapse_kl_choose without the choice. */
int sm_router_collapse_kl(const float *router, int n, int64_t hidden, const int *cluster_of, int k,
                          const double *freq, const float *x, int64_t m, double ridge, const sm_monitor *mon,
                          float *rows);

/* How well collapsed rows (k × hidden) reproduce the summed member probabilities on m rows:
 * the mean KL(p ‖ softmax(rows x)) (nats per row) and the top-k agreement, the mean over rows
 * of |top_k(p) ∩ top_k(q)| / top_k (top_k clamped to k; ties to the lower index, as routing). */
int sm_router_collapse_measure(const float *router, int n, int64_t hidden, const int *cluster_of, int k,
                               const float *rows, const float *x, int64_t m, int top_k, double *kl,
                               double *agree);

#endif
