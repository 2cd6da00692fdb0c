/* unionsvd: the shared subspace of a cluster of weight matrices (DESIGN §2.3).
 *
 * For n matrices W_i (out×in, row-major float, y = W x) the union SVD is
 *     W_cat = [W_1 | W_2 | … | W_n] = U Σ Vᵀ      (out × n·in)
 * Sub-MoE merging only ever needs the top-r subspace: W_merged = U_r U_rᵀ W̄. It is computed
 * from the smaller Gram matrix of W_cat, never from an SVD of W_cat:
 *   - LEFT side  (out ≤ n·in): G = Σ_i W_i W_iᵀ (out×out), eigenvectors = U;
 *   - RIGHT side (out > n·in): G = W_catᵀ W_cat (n·in × n·in), eigenvectors = V, and
 *     U_r Σ_r = W_cat V_r (so U itself is never divided out of Σ).
 * The Gram is accumulated in single precision with ssyrk/sgemm. Its top-r eigenvectors come
 * from either
 *   - EIGEN: LAPACK's divide-and-conquer symmetric eigensolver on the whole Gram (double
 *     precision up to SM_USVD_DOUBLE_MAX, single above, where the Gram's own rounding already
 *     dominates and single precision halves the time); exact up to rounding; or
 *   - RANDOMIZED: subspace iteration on the Gram with a Gaussian start of r + p columns,
 *     q power iterations (renormalised by LU between passes, the last subspace orthonormalised
 *     by Householder QR) and a Rayleigh–Ritz step.
 *     Accurate when the spectrum has a gap after r; without one it is an approximation: on a
 *     flat 8192-wide spectrum (bench_merge) the rank-2048 cut ‖W_merged − W̄‖/‖W̄‖ is 0.534
 *     against the exact 0.527, and rank 512 gives 0.882 against 0.868. Plans can ask for
 *     EIGEN (`svd: exact`, man/submoe-plan.5).
 * AUTO picks RANDOMIZED when the Gram is larger than SM_USVD_AUTO_EIGEN_MAX (512) and the
 * estimated cost is below half a dense eigensolve (typically r small relative to the Gram
 * size), EIGEN otherwise; a RANDOMIZED request whose r + p covers the whole Gram runs EIGEN.
 * Full rank needs no basis at all (merge.h uses W̄ directly). */
#ifndef SM_UNIONSVD_H
#define SM_UNIONSVD_H

#include <stdint.h>

#include "util/monitor.h"

/* n matrices of identical shape out×in, row-major; w[i] points at out*in floats. */
typedef struct sm_matset {
    int n;
    int64_t out, in;
    const float *const *w;
} sm_matset;

typedef enum { SM_USVD_AUTO = 0, SM_USVD_EIGEN, SM_USVD_RANDOMIZED } sm_usvd_solver;

/* AUTO uses the dense eigensolver for Grams up to this size, whatever the rank. */
#define SM_USVD_AUTO_EIGEN_MAX 512

/* Gram sizes up to this use a double-precision eigensolve; larger ones single precision. */
#define SM_USVD_DOUBLE_MAX 2048

typedef struct sm_usvd_opts {
    sm_usvd_solver solver;
    int oversample;  /* randomized: extra columns p; 0 = max(32, r/2) */
    int power_iters; /* randomized: q extra passes over the Gram; 0 = default (1), < 0 = none */
    uint64_t seed;   /* randomized: seed of the Gaussian start (results are deterministic) */
} sm_usvd_opts;

/* Zero-initialised opts mean AUTO with the defaults above, seed 0. */

typedef enum { SM_USVD_LEFT = 0, SM_USVD_RIGHT } sm_usvd_side;

/* The top-rank singular subspace on the side of the smaller Gram. */
typedef struct sm_usvd_basis {
    sm_usvd_side side;     /* LEFT: columns are U_r (dim = out); RIGHT: V_r (dim = n·in) */
    int64_t dim, rank;
    float *vec;            /* dim × rank, column-major (= rank × dim row-major), orthonormal */
    double *sv;            /* rank singular values of W_cat, descending */
    sm_usvd_solver solver; /* the path that computed it (EIGEN or RANDOMIZED) */
} sm_usvd_basis;

const char *sm_usvd_solver_name(sm_usvd_solver s);

/* min(out, n·in): the largest meaningful rank. */
int64_t sm_usvd_max_rank(const sm_matset *s);
/* Side of the smaller Gram (LEFT when out ≤ n·in). */
sm_usvd_side sm_usvd_gram_side(const sm_matset *s);
/* Check shapes and pointers; 0 or -1 with a message. */
int sm_matset_check(const sm_matset *s);

/* dst (out×in) = Σ_i w[i]·W_i, accumulated in double. */
void sm_weighted_sum(const sm_matset *s, const double *w, float *dst);

/* The smaller Gram, full symmetric dim×dim (dim = sm_usvd_max_rank), single precision. */
int sm_usvd_gram(const sm_matset *s, const sm_monitor *mon, float *g);

/* Top-rank basis (1 ≤ rank; clamped to sm_usvd_max_rank). Caller frees with
 * sm_usvd_basis_free. */
int sm_usvd_basis_compute(const sm_matset *s, int64_t rank, const sm_usvd_opts *opts,
                          const sm_monitor *mon, sm_usvd_basis *out);
void sm_usvd_basis_free(sm_usvd_basis *b);

/* dst (out×in) = U_r U_rᵀ W̄ with W̄ = Σ_i weights[i]·W_i (weights used as given).
 * On the RIGHT side this is evaluated as the paper's literal form (W_cat V_r)(Σ_i weights[i]
 * V_{i,r}ᵀ) = U_r Σ_r (V_mᵀ)_r, identical for exact singular vectors and one product cheaper. */
int sm_usvd_project(const sm_matset *s, const sm_usvd_basis *b, const double *weights,
                    float *dst);

/* a (out × rank, row-major) = W_cat V_r = U_r Σ_r, for a RIGHT-side basis. */
int sm_usvd_cat_times_basis(const sm_matset *s, const sm_usvd_basis *b, float *a);

/* Explicit U_r (out × rank, column-major, orthonormal). On the RIGHT side it is the Householder
 * orthonormalisation of W_cat V_r (no division by small singular values). */
int sm_usvd_left_basis(const sm_matset *s, const sm_usvd_basis *b, float *u);

/* All min(out, n·in) singular values of W_cat, descending (square roots of the clamped Gram
 * eigenvalues; values below ~sqrt(eps)·σ_max are only as good as the single-precision Gram). */
int sm_usvd_spectrum(const sm_matset *s, const sm_monitor *mon, double *sv);

#endif
