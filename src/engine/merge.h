/* merge: one merged weight matrix from a cluster of experts' matrices (DESIGN §2.3–2.5).
 *
 * Methods (per cluster and per matrix gate/up/down):
 *   submoe           W_merged = U_r U_rᵀ W̄, W̄ = Σ f_i W_i / Σ f_i, U_r the union-SVD basis of
 *                    [W_1 | … | W_n] (unionsvd.h). Full rank is W̄ exactly, no decomposition.
 *                    A rank r below the break-even (sm_rank_factored) is stored as factors A·B:
 *                    on the Gram's right side A = W_cat V_r = U_r Σ_r, B = Σ_i f̃_i V_{i,r}ᵀ
 *                    (the paper's U_r Σ_r (V_mᵀ)_r), on the left A = U_r, B = U_rᵀ W̄.
 *   submoe-whitened  Sub-MoE†: S_i = chol(C_i + λ_i I) with C_i the input Gram of member i,
 *                    W'_i = W_i S_i, U'_r the union basis of [W'_1 | … | W'_n]; stored as two
 *                    factors A (out×r) and B (r×in) with A·B = U'_r U'_rᵀ W̄, r·(out+in)
 *                    parameters (dense A·B when that is not smaller, sm_rank_factored).
 *                    Damping λ_i = damping · mean(diag C_i) (relative, default 1e-2; a member
 *                    with an all-zero Gram uses the members' mean diagonal, and 1 if every
 *                    Gram is zero). Full rank stores W̄ densely.
 *                    Memory per call, besides the result: the members' factors S_i (n·in²
 *                    floats), the whitened copies W'_i (n·out·in floats), an in×in double
 *                    Cholesky workspace and the union Gram (min(out, n·in)² floats); for a
 *                    2-member cluster of Mixtral's down projection (in = 14336) about 3.6 GiB.
 *                    The Grams C_i themselves (n·(H² + I²) floats per layer) come from the
 *                    analysis (engine.h, sm_analysis_opts.grams).
 *                    Factor split: on the Gram's right side (out > n·in) A = W'_cat V'_r =
 *                    U'_r Σ'_r and B = Σ_i f̃_i V'_{i,r}ᵀ S_i⁻¹ (the paper's literal form); on
 *                    the left side A = U'_r, B = U'_rᵀ W̄ (no division by small σ). Same A·B.
 *   freq-average     W̄ (HC-SMoE / M-SMoE style).
 *   average          uniform mean of the members.
 *   prune-frequency, prune-output, prune-reap, keep: layer-level selections, see prune.h.
 * Frequencies f_i ≥ 0; all zero means uniform weights. */
#ifndef SM_MERGE_H
#define SM_MERGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util/monitor.h"
#include "engine/unionsvd.h"

typedef enum {
    SM_MERGE_SUBMOE = 0,
    SM_MERGE_SUBMOE_WHITENED,
    SM_MERGE_FREQ_AVERAGE,
    SM_MERGE_AVERAGE,
    SM_MERGE_PRUNE_FREQUENCY,
    SM_MERGE_PRUNE_OUTPUT,
    SM_MERGE_KEEP,
    SM_MERGE_PRUNE_REAP,
    SM_MERGE_METHOD_COUNT
} sm_merge_method;

const char *sm_merge_method_name(sm_merge_method m); /* "submoe", "submoe-whitened", … */
int sm_merge_method_parse(const char *name, sm_merge_method *out);
/* True for the methods that merge a cluster into one expert (the first four). */
bool sm_merge_method_merges(sm_merge_method m);

/* Target rank: `full`, an integer, or a fraction. A fraction means r = floor(f·min(out, n·in))
 * for submoe and the parameter ratio ρ with r = floor(ρ·out·in/(out+in)) for
 * submoe-whitened. */
typedef enum { SM_RANK_FULL = 0, SM_RANK_COUNT, SM_RANK_FRACTION } sm_rank_kind;
typedef struct sm_rank {
    sm_rank_kind kind;
    int64_t count;   /* SM_RANK_COUNT, ≥ 1 */
    double fraction; /* SM_RANK_FRACTION, in (0, 1] */
} sm_rank;

/* "full", "512", "0.25" or "25%". */
int sm_rank_parse(const char *text, sm_rank *out);
/* The inverse of sm_rank_parse ("full", "512", "0.25"). */
void sm_rank_format(const sm_rank *r, char *buf, size_t len);
/* Same meaning: same kind and, for that kind, the same value (never memcmp: the struct has
 * padding and unused fields). */
bool sm_rank_equal(const sm_rank *a, const sm_rank *b);
/* The rank actually used for a cluster of n out×in matrices: 0 means dense and exact (full
 * rank, or a method without a rank); otherwise 1 ≤ r ≤ min(out, n·in). */
int sm_rank_resolve(const sm_rank *r, sm_merge_method m, int64_t out, int64_t in, int n,
                    int64_t *rank);

#define SM_MERGE_DAMPING_DEFAULT 1e-2

typedef struct sm_merge_opts {
    sm_rank rank;
    double damping;    /* submoe-whitened; 0 = SM_MERGE_DAMPING_DEFAULT */
    sm_usvd_opts usvd; /* how the union basis is computed */
} sm_merge_opts;

typedef struct sm_merged {
    int64_t out, in;
    int64_t rank;          /* 0: dense `w`; > 0: factored `a`·`b` */
    float *w;              /* out×in (dense) */
    float *a, *b;          /* out×rank and rank×in, row-major (factored) */
    int n_members;
    double *weights;       /* the normalised member weights of W̄ */
    double *member_err;    /* ||W_i − W_merged||_F / ||W_i||_F (absolute when W_i = 0) */
    sm_usvd_solver solver; /* union-basis path used; SM_USVD_AUTO when none was needed */
    bool w_borrowed;       /* `w` is the member's own matrix (sm_merge_matrix_single): not freed */
} sm_merged;

/* A factored result multiplied out into its dense `w` (nothing to do when dense). */
int sm_merged_densify(sm_merged *m);

/* Normalised member weights: f_i / Σ f (uniform when all zero, or for `average`). */
int sm_merge_weights(sm_merge_method m, const double *freq, int n, double *w);

/* Merge a cluster. `freq` may be NULL (uniform). `gram[i]` (in×in, row-major) is member i's
 * input Gram, required for submoe-whitened only. `o` may be NULL (full rank). */
int sm_merge_matrix(sm_merge_method m, const sm_matset *set, const double *freq,
                    const float *const *gram, const sm_merge_opts *o, const sm_monitor *mon,
                    sm_merged *out);
void sm_merged_free(sm_merged *m);
/* A one-member cluster at full rank, whose merge W̄ = 1·W is the member itself: `out` points at the
 * member's matrix instead of a copy (the same values, and no copy of every kept expert per merged
 * layer); the member must outlive `out`. 1 when the cluster is not such (sm_merge_matrix then
 * merges it), 0 when `out` is made, −1 on error. */
int sm_merge_matrix_single(sm_merge_method m, const sm_matset *set, const double *freq, const sm_merge_opts *o,
                           sm_merged *out);

/* Whether a rank-r out×in merge is stored as factors A (out×r), B (r×in): only when they are
 * smaller than the matrix, r·(out+in) < out·in; otherwise it is stored dense. The writers and
 * the plan checks follow the same rule. */
bool sm_rank_factored(int64_t rank, int64_t out, int64_t in);

/* Stored parameters: out·in dense, rank·(out+in) factored. */
int64_t sm_merged_params(const sm_merged *m);
/* The merged matrix as dense out×in. */
int sm_merged_to_dense(const sm_merged *m, float *dst);
/* Per-member relative Frobenius errors against any dense matrix (err[n]). */
int sm_member_errors(const sm_matset *set, const float *merged, double *err);

#endif
