/* Union SVD and Sub-MoE merging against the literal formulas computed with LAPACK dgesdd on
 * W_cat (DESIGN §2.3, §2.4): full rank = freq-average, rank r = U_r U_rᵀ W̄ = U_r Σ_r (V_mᵀ)_r,
 * whitened A·B = U'_r U'_rᵀ W̄ with r(out+in) parameters, randomized ≈ eigen, spectrum = σ. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/merge.h"
#include "engine/unionsvd.h"
#include "engine/reference.h"
#include "testutil.h"
#include "util/diag.h"
#include "util/matmul.h"

/* Tolerances: the Gram is single precision, so subspaces carry ~1e-6 relative error scaled by
 * σ_1²/(σ_r² − σ_{r+1}²); the random shapes below keep that factor under ~20. */
#define TOL_EXACT 1e-5  /* full rank: a weighted sum, no decomposition */
#define TOL_RANK 2e-4   /* rank r vs dgesdd */
#define TOL_SPECTRUM 2e-5 /* |σ − σ_gesdd| / σ_1 */

typedef struct {
    int n, out, in;
} shape;

static float **make_members(sm_rng *r, int n, int out, int in)
{
    float **w = malloc(sizeof(float *) * (size_t)n);
    for (int i = 0; i < n; i++) {
        w[i] = malloc(sizeof(float) * (size_t)out * in);
        ref_randn(r, w[i], (int64_t)out * in, 1.0 / sqrt(in));
    }
    return w;
}

static void free_members(float **w, int n)
{
    for (int i = 0; i < n; i++)
        free(w[i]);
    free(w);
}

/* Literal Eq. 8: U_r Σ_r (Σ_i f̃_i V_iᵀ)_r from the SVD of W_cat, and U_r U_rᵀ W̄. */
static void literal(int n, int out, int in, float **w, const double *fw, int r, double *lit,
                    double *proj, double *sv_out)
{
    int cat = n * in, k = out < cat ? out : cat;
    double *wc = ref_concat(n, out, in, w);
    double *u = malloc(sizeof(double) * (size_t)out * k), *s = malloc(sizeof(double) * k);
    double *vt = malloc(sizeof(double) * (size_t)k * cat);
    CHECK(ref_svd(out, cat, wc, u, s, vt) == 0, "dgesdd %dx%d", out, cat);
    /* V_mᵀ rows j < r: Σ_i f̃_i VT[j, i·in + c] (VT column-major k × cat). */
    double *vm = calloc((size_t)r * in, sizeof(double));
    for (int j = 0; j < r; j++)
        for (int i = 0; i < n; i++)
            for (int c = 0; c < in; c++)
                vm[(size_t)j * in + c] += fw[i] * vt[(size_t)(i * in + c) * k + j];
    memset(lit, 0, sizeof(double) * (size_t)out * in);
    for (int j = 0; j < r; j++)
        for (int row = 0; row < out; row++) {
            double us = u[(size_t)j * out + row] * s[j];
            for (int c = 0; c < in; c++)
                lit[(size_t)row * in + c] += us * vm[(size_t)j * in + c];
        }
    double *wbar = calloc((size_t)out * in, sizeof(double));
    for (int i = 0; i < n; i++)
        for (int64_t e = 0; e < (int64_t)out * in; e++)
            wbar[e] += fw[i] * w[i][e];
    ref_project(out, in, u, r, wbar, proj);
    if (sv_out)
        memcpy(sv_out, s, sizeof(double) * k);
    free(wbar);
    free(vm);
    free(vt);
    free(s);
    free(u);
    free(wc);
}

/* The merged matrix as dense out×in: `w`, or A·B formed once into `w` for a factored result
 * (the factors stay; sm_merged_free frees both). */
static const float *dense_of(sm_merged *m)
{
    if (!m->w && m->rank > 0 && (m->w = malloc(sizeof(float) * (size_t)(m->out * m->in))))
        sm_merged_to_dense(m, (float *)m->w);
    return m->w;
}

static void test_submoe_shapes(void)
{
    const shape shapes[] = {
        {3, 40, 24},  /* out < n·in: left Gram 40×40 */
        {2, 96, 20},  /* out > n·in: right Gram 40×40 */
        {2, 64, 64},  /* left */
        {4, 50, 10},  /* right */
        {1, 33, 29},  /* one member: plain truncated SVD */
        /* out < in: the down projection's orientation (H × I), left Gram */
        {2, 24, 40},
        {3, 16, 60},
        {2, 30, 100},
    };
    sm_rng rng;
    sm_rng_seed(&rng, 1234);
    for (size_t si = 0; si < sizeof shapes / sizeof *shapes; si++) {
        const int n = shapes[si].n, out = shapes[si].out, in = shapes[si].in;
        float **w = make_members(&rng, n, out, in);
        double freq[8];
        for (int i = 0; i < n; i++)
            freq[i] = 1.0 + 3.0 * sm_rng_uniform(&rng);
        sm_matset set = {n, out, in, (const float *const *)w};
        const int64_t maxr = sm_usvd_max_rank(&set);
        double fw[8], tot = 0;
        for (int i = 0; i < n; i++)
            tot += freq[i];
        for (int i = 0; i < n; i++)
            fw[i] = freq[i] / tot;
        const char *side = sm_usvd_gram_side(&set) == SM_USVD_LEFT ? "left" : "right";

        /* Full rank equals freq-average (and no decomposition is run). */
        sm_merge_opts full = {0};
        sm_merged a, b;
        CHECK(sm_merge_matrix(SM_MERGE_SUBMOE, &set, freq, NULL, &full, NULL, &a) == 0,
              "submoe full");
        CHECK(sm_merge_matrix(SM_MERGE_FREQ_AVERAGE, &set, freq, NULL, NULL, NULL, &b) == 0,
              "freq-average");
        double d = ref_rel_diff_ff(a.w, b.w, (int64_t)out * in);
        CHECK(d <= TOL_EXACT && a.rank == 0 && a.solver == SM_USVD_AUTO,
              "n=%d %dx%d (%s): full-rank submoe = freq-average, rel diff %.2e", n, out, in, side,
              d);
        /* ... and equals the literal Eq. 8 at r = max rank from dgesdd of W_cat (the shortcut
         * above is exact only if U Σ V_mᵀ with every singular triplet is W̄: this checks it). */
        {
            double *lit = malloc(sizeof(double) * (size_t)out * in);
            double *proj = malloc(sizeof(double) * (size_t)out * in);
            literal(n, out, in, w, fw, (int)maxr, lit, proj, NULL);
            double dl = ref_rel_diff(a.w, lit, (int64_t)out * in);
            CHECK(dl <= TOL_EXACT, "n=%d %dx%d: full-rank submoe = literal U_rΣ_r(V_mᵀ)_r at r = %lld, rel diff %.2e", n,
                  out, in, (long long)maxr, dl);
            free(lit);
            free(proj);
        }
        sm_merged_free(&a);
        /* Integer rank ≥ max rank is also the exact identity. */
        sm_merge_opts big = {.rank = {SM_RANK_COUNT, maxr, 0}};
        CHECK(sm_merge_matrix(SM_MERGE_SUBMOE, &set, freq, NULL, &big, NULL, &a) == 0 &&
                  a.rank == 0 && ref_rel_diff_ff(a.w, b.w, (int64_t)out * in) <= TOL_EXACT,
              "rank %lld (= max) is exact", (long long)maxr);
        sm_merged_free(&a);
        sm_merged_free(&b);

        /* Rank r: equals U_r U_rᵀ W̄ and the literal U_r Σ_r (V_mᵀ)_r. */
        const int ranks[3] = {1, (int)maxr / 2, (int)maxr - 3};
        for (int ri = 0; ri < 3; ri++) {
            int r = ranks[ri];
            if (r < 1)
                continue;
            double *lit = malloc(sizeof(double) * (size_t)out * in);
            double *proj = malloc(sizeof(double) * (size_t)out * in);
            literal(n, out, in, w, fw, r, lit, proj, NULL);
            for (int sv = SM_USVD_AUTO; sv <= SM_USVD_EIGEN; sv++) {
                sm_merge_opts o = {.rank = {SM_RANK_COUNT, r, 0}};
                o.usvd.solver = (sm_usvd_solver)sv;
                int rc = sm_merge_matrix(SM_MERGE_SUBMOE, &set, freq, NULL, &o, NULL, &a);
                CHECK(rc == 0, "submoe rank %d %s", r, rc ? sm_errmsg() : "");
                if (rc)
                    continue;
                /* Stored as factors exactly when they are smaller (r·(out+in) < out·in). */
                const bool small = (int64_t)r * (out + in) < (int64_t)out * in;
                CHECK(small ? a.rank == r && a.a && a.b && !a.w &&
                                  sm_merged_params(&a) == (int64_t)r * (out + in)
                            : a.rank == 0 && a.w && sm_merged_params(&a) == (int64_t)out * in,
                      "n=%d %dx%d r=%d: stored %s (rank %lld, %lld parameters)", n, out, in, r,
                      small ? "as factors" : "dense", (long long)a.rank, (long long)sm_merged_params(&a));
                float *dense = malloc(sizeof(float) * (size_t)out * in);
                sm_merged_to_dense(&a, dense);
                double dp = ref_rel_diff(dense, proj, (int64_t)out * in);
                double dl = ref_rel_diff(dense, lit, (int64_t)out * in);
                CHECK(dp <= TOL_RANK && dl <= TOL_RANK,
                      "n=%d %dx%d (%s) r=%d %s: vs U_rU_rᵀW̄ %.2e, vs U_rΣ_r(V_mᵀ)_r %.2e", n, out,
                      in, side, r, sm_usvd_solver_name(a.solver), dp, dl);
                /* Member errors are the relative Frobenius distances. */
                double e0 = 0, n0 = 0;
                for (int64_t e = 0; e < (int64_t)out * in; e++) {
                    double dd = (double)w[0][e] - dense[e];
                    e0 += dd * dd;
                    n0 += (double)w[0][e] * w[0][e];
                }
                CHECK_NEAR(a.member_err[0], sqrt(e0 / n0), 1e-9, "member 0 relative error");
                free(dense);
                sm_merged_free(&a);
            }
            free(lit);
            free(proj);
        }
        free_members(w, n);
    }
}

static void test_spectrum(void)
{
    const shape shapes[] = {{3, 40, 24}, {2, 96, 20}, {1, 17, 30}};
    sm_rng rng;
    sm_rng_seed(&rng, 99);
    for (size_t si = 0; si < sizeof shapes / sizeof *shapes; si++) {
        const int n = shapes[si].n, out = shapes[si].out, in = shapes[si].in;
        float **w = make_members(&rng, n, out, in);
        sm_matset set = {n, out, in, (const float *const *)w};
        int k = (int)sm_usvd_max_rank(&set);
        double *sv = malloc(sizeof(double) * k), *ref = malloc(sizeof(double) * k);
        double *lit = malloc(sizeof(double) * (size_t)out * in), fw[4] = {1, 0, 0, 0};
        double *proj = malloc(sizeof(double) * (size_t)out * in);
        literal(n, out, in, w, fw, 1, lit, proj, ref);
        CHECK(sm_usvd_spectrum(&set, NULL, sv) == 0, "spectrum");
        double worst = 0;
        for (int j = 0; j < k; j++)
            worst = fmax(worst, fabs(sv[j] - ref[j]) / ref[0]);
        CHECK(worst <= TOL_SPECTRUM, "n=%d %dx%d: spectrum from the Gram = dgesdd σ (%d values), "
              "worst %.2e·σ_1", n, out, in, k, worst);
        free(sv);
        free(ref);
        free(lit);
        free(proj);
        free_members(w, n);
    }
}

/* W_i = Σ_j s_j a_j b_jᵀ-style members with a designed spectrum of W_cat: build W_cat = Q1 D Q2
 * from random orthonormal-ish factors, then split into column blocks. */
static float **spectral_members(sm_rng *rng, int n, int out, int in, int r, double gap)
{
    int cat = n * in, k = out < cat ? out : cat;
    double *g1 = malloc(sizeof(double) * (size_t)out * k), *g2 = malloc(sizeof(double) * (size_t)k * cat);
    for (int64_t e = 0; e < (int64_t)out * k; e++)
        g1[e] = sm_rng_normal(rng);
    for (int64_t e = 0; e < (int64_t)k * cat; e++)
        g2[e] = sm_rng_normal(rng);
    /* Orthonormalise via the reference SVD: U of g1 (out×k) and VT of g2 (k×cat). */
    double *u1 = malloc(sizeof(double) * (size_t)out * k), *s1 = malloc(sizeof(double) * k);
    double *v1 = malloc(sizeof(double) * (size_t)k * k);
    double *u2 = malloc(sizeof(double) * (size_t)k * k), *s2 = malloc(sizeof(double) * k);
    double *v2 = malloc(sizeof(double) * (size_t)k * cat);
    ref_svd(out, k, g1, u1, s1, v1);
    ref_svd(k, cat, g2, u2, s2, v2);
    float **w = malloc(sizeof(float *) * n);
    for (int i = 0; i < n; i++)
        w[i] = calloc((size_t)out * in, sizeof(float));
    for (int j = 0; j < k; j++) {
        double sj = j < r ? 10.0 * pow(0.9, j) : gap * pow(0.97, j - r);
        for (int row = 0; row < out; row++) {
            double a = sj * u1[(size_t)j * out + row];
            for (int c = 0; c < cat; c++)
                w[c / in][(size_t)row * in + c % in] += (float)(a * v2[(size_t)c * k + j]);
        }
    }
    free(g1), free(g2), free(u1), free(s1), free(v1), free(u2), free(s2), free(v2);
    return w;
}

static void test_randomized(void)
{
    const shape shapes[] = {{2, 300, 200}, {3, 700, 100}};
    sm_rng rng;
    sm_rng_seed(&rng, 7);
    for (size_t si = 0; si < sizeof shapes / sizeof *shapes; si++) {
        const int n = shapes[si].n, out = shapes[si].out, in = shapes[si].in, r = 24;
        /* Clear gap: σ_r ≈ 10·0.9^23 ≈ 0.9 vs σ_{r+1} = 0.05. */
        float **w = spectral_members(&rng, n, out, in, r, 0.05);
        sm_matset set = {n, out, in, (const float *const *)w};
        double freq[3] = {3, 1, 2};
        sm_merge_opts oe = {.rank = {SM_RANK_COUNT, r, 0}}, orr = oe;
        oe.usvd.solver = SM_USVD_EIGEN;
        orr.usvd.solver = SM_USVD_RANDOMIZED; /* defaults: p = 10, q = 1 */
        sm_merged a, b;
        CHECK(sm_merge_matrix(SM_MERGE_SUBMOE, &set, freq, NULL, &oe, NULL, &a) == 0, "eigen");
        CHECK(sm_merge_matrix(SM_MERGE_SUBMOE, &set, freq, NULL, &orr, NULL, &b) == 0 &&
                  b.solver == SM_USVD_RANDOMIZED,
              "randomized");
        double d = ref_rel_diff_ff(dense_of(&b), dense_of(&a), (int64_t)out * in);
        CHECK(d <= 1e-4, "n=%d %dx%d r=%d with a spectral gap: randomized = eigen, rel diff %.2e",
              n, out, in, r, d);
        /* Same seed → identical bytes. */
        sm_merged c;
        CHECK(sm_merge_matrix(SM_MERGE_SUBMOE, &set, freq, NULL, &orr, NULL, &c) == 0 &&
                  memcmp(dense_of(&c), dense_of(&b), sizeof(float) * (size_t)out * in) == 0,
              "randomized is deterministic for a seed");
        /* These Grams (300) are at most SM_USVD_AUTO_EIGEN_MAX: AUTO keeps the exact dense
         * eigensolver even at r = 8 (test_auto_randomized covers larger Grams). */
        sm_merge_opts oa = {.rank = {SM_RANK_COUNT, 8, 0}};
        sm_merged e;
        CHECK(sm_usvd_max_rank(&set) <= SM_USVD_AUTO_EIGEN_MAX &&
                  sm_merge_matrix(SM_MERGE_SUBMOE, &set, freq, NULL, &oa, NULL, &e) == 0 &&
                  e.solver == SM_USVD_EIGEN,
              "auto picks %s for r=8 of a %lld Gram", sm_usvd_solver_name(e.solver),
              (long long)sm_usvd_max_rank(&set));
        sm_merged_free(&a), sm_merged_free(&b), sm_merged_free(&c), sm_merged_free(&e);
        free_members(w, n);
    }

    /* Without a gap the randomized basis is still near-optimal: the energy of W_cat it
     * captures, relative to the exact top-r subspace's, on a flat (Marchenko–Pastur) spectrum
     * with q = 2 and on a power-law spectrum (like trained weights) with the defaults. */
    sm_rng_seed(&rng, 8);
    const int n = 2, out = 256, in = 192, r = 32;
    float **w = make_members(&rng, n, out, in);
    sm_matset set = {n, out, in, (const float *const *)w};
    for (int decay = 0; decay <= 1; decay++) {
        if (decay) /* row scaling (1 + row)^-0.5 gives a power-law spectrum */
            for (int i = 0; i < n; i++)
                for (int row = 0; row < out; row++)
                    for (int c = 0; c < in; c++)
                        w[i][(size_t)row * in + c] *= (float)pow(1.0 + row, -0.5);
        double energy[2];
        for (int sv = SM_USVD_EIGEN; sv <= SM_USVD_RANDOMIZED; sv++) {
            sm_usvd_opts o = {.solver = (sm_usvd_solver)sv, .power_iters = decay ? 0 : 2};
            sm_usvd_basis b;
            CHECK(sm_usvd_basis_compute(&set, r, &o, NULL, &b) == 0, "basis %d", sv);
            float *u = malloc(sizeof(float) * (size_t)out * r);
            sm_usvd_left_basis(&set, &b, u);
            double e = 0;
            for (int i = 0; i < n; i++)
                for (int j = 0; j < r; j++)
                    for (int c = 0; c < in; c++) {
                        double dot = 0;
                        for (int row = 0; row < out; row++)
                            dot += (double)u[(size_t)j * out + row] * w[i][(size_t)row * in + c];
                        e += dot * dot;
                    }
            energy[sv - SM_USVD_EIGEN] = e;
            free(u);
            sm_usvd_basis_free(&b);
        }
        double need = decay ? 0.98 : 0.94;
        CHECK(energy[1] >= need * energy[0] && energy[1] <= energy[0] * (1 + 1e-5),
              "%s spectrum, q=%d: randomized captures %.4f of the exact top-%d energy (≥ %.2f)",
              decay ? "power-law" : "flat", decay ? 1 : 2, energy[1] / energy[0], r, need);
    }
    free_members(w, n);
}

/* AUTO on a Gram larger than SM_USVD_AUTO_EIGEN_MAX with a small rank takes the randomized
 * path, and its result matches the literal formula from dgesdd of W_cat. A spectral gap after
 * r keeps the randomized subspace accurate: σ_r = 10·0.9^7 ≈ 4.8 vs σ_{r+1} = 0.05, so each
 * pass over the Gram shrinks the leakage by (σ_{r+1}/σ_r)² ≈ 1e-4 and the float Gram's ~1e-6
 * dominates; TOL_RANK as for the eigensolver (a wrong subspace gives O(1)). At a rank near the
 * Gram size the estimated cost of the randomized path exceeds half a dense eigensolve and AUTO
 * stays with EIGEN. */
static void test_auto_randomized(void)
{
    const shape shapes[] = {{2, 600, 400}, {3, 900, 200}}; /* left Gram 600, right Gram 600 */
    sm_rng rng;
    sm_rng_seed(&rng, 77);
    for (size_t si = 0; si < sizeof shapes / sizeof *shapes; si++) {
        const int n = shapes[si].n, out = shapes[si].out, in = shapes[si].in, r = 8;
        float **w = spectral_members(&rng, n, out, in, r, 0.05);
        sm_matset set = {n, out, in, (const float *const *)w};
        const int64_t dim = sm_usvd_max_rank(&set);
        double freq[3] = {1, 3, 2}, fw[3], tot = 0;
        for (int i = 0; i < n; i++)
            tot += freq[i];
        for (int i = 0; i < n; i++)
            fw[i] = freq[i] / tot;
        double *lit = malloc(sizeof(double) * (size_t)out * in);
        double *proj = malloc(sizeof(double) * (size_t)out * in);
        literal(n, out, in, w, fw, r, lit, proj, NULL);
        sm_merge_opts o = {.rank = {SM_RANK_COUNT, r, 0}}; /* solver AUTO */
        sm_merged a;
        int rc = sm_merge_matrix(SM_MERGE_SUBMOE, &set, freq, NULL, &o, NULL, &a);
        CHECK(rc == 0 && dim > SM_USVD_AUTO_EIGEN_MAX && a.solver == SM_USVD_RANDOMIZED,
              "n=%d %dx%d (%s Gram %lld > %d), r=%d: auto picks %s", n, out, in,
              sm_usvd_gram_side(&set) == SM_USVD_LEFT ? "left" : "right", (long long)dim, SM_USVD_AUTO_EIGEN_MAX, r,
              rc ? "?" : sm_usvd_solver_name(a.solver));
        if (rc == 0) {
            double dl = ref_rel_diff(dense_of(&a), lit, (int64_t)out * in), dp = ref_rel_diff(a.w, proj, (int64_t)out * in);
            CHECK(dl <= TOL_RANK && dp <= TOL_RANK,
                  "auto (randomized) = literal U_rΣ_r(V_mᵀ)_r from dgesdd, rel diff %.2e; = U_rU_rᵀW̄ %.2e", dl, dp);
            sm_merged_free(&a);
        }
        sm_merge_opts ob = {.rank = {SM_RANK_COUNT, dim - 200, 0}};
        rc = sm_merge_matrix(SM_MERGE_SUBMOE, &set, freq, NULL, &ob, NULL, &a);
        CHECK(rc == 0 && a.solver == SM_USVD_EIGEN, "r=%lld of %lld: auto picks %s", (long long)(dim - 200),
              (long long)dim, rc ? "?" : sm_usvd_solver_name(a.solver));
        if (rc == 0)
            sm_merged_free(&a);
        free(lit), free(proj);
        free_members(w, n);
    }
}

/* Whitened: A·B = U'_r U'_rᵀ W̄ with U' from dgesdd of [W_1 S_1 | …], S_i = chol(C_i + λ_i I). */
static void test_whitened(void)
{
    /* The last two small ones have out < in (the down projection's orientation); the last one's
     * whitening (512·256·256 multiply-adds) and Gram run on oneDNN. */
    const shape shapes[] = {{2, 30, 24}, {2, 80, 16}, {3, 20, 12}, {2, 16, 40}, {3, 12, 50}, {2, 512, 256}};
    sm_rng rng;
    sm_rng_seed(&rng, 4242);
    for (size_t si = 0; si < sizeof shapes / sizeof *shapes; si++) {
        const int n = shapes[si].n, out = shapes[si].out, in = shapes[si].in;
        float **w = make_members(&rng, n, out, in);
        /* Input Grams from anisotropic random tokens. */
        float **gram = malloc(sizeof(float *) * n);
        float **ws = malloc(sizeof(float *) * n);
        for (int i = 0; i < n; i++) {
            int m = 3 * in;
            double *x = malloc(sizeof(double) * (size_t)m * in);
            for (int t = 0; t < m; t++)
                for (int c = 0; c < in; c++)
                    x[(size_t)t * in + c] = sm_rng_normal(&rng) * (1.0 + 2.0 * c / in) * (i + 1);
            gram[i] = calloc((size_t)in * in, sizeof(float));
            double md = 0;
            for (int a = 0; a < in; a++)
                for (int b = 0; b < in; b++) {
                    double s = 0;
                    for (int t = 0; t < m; t++)
                        s += x[(size_t)t * in + a] * x[(size_t)t * in + b];
                    gram[i][(size_t)a * in + b] = (float)s;
                    if (a == b)
                        md += s;
                }
            md /= in;
            /* Reference S_i by an unblocked Cholesky in double. */
            double *l = calloc((size_t)in * in, sizeof(double));
            for (int j = 0; j < in; j++) {
                double d = gram[i][(size_t)j * in + j] + 1e-2 * md;
                for (int k = 0; k < j; k++)
                    d -= l[(size_t)j * in + k] * l[(size_t)j * in + k];
                l[(size_t)j * in + j] = sqrt(d);
                for (int r = j + 1; r < in; r++) {
                    double s = gram[i][(size_t)r * in + j];
                    for (int k = 0; k < j; k++)
                        s -= l[(size_t)r * in + k] * l[(size_t)j * in + k];
                    l[(size_t)r * in + j] = s / l[(size_t)j * in + j];
                }
            }
            ws[i] = calloc((size_t)out * in, sizeof(float));
            for (int r = 0; r < out; r++)
                for (int c = 0; c < in; c++) {
                    double s = 0;
                    for (int k = c; k < in; k++)
                        s += w[i][(size_t)r * in + k] * l[(size_t)k * in + c];
                    ws[i][(size_t)r * in + c] = (float)s;
                }
            free(l);
            free(x);
        }
        double freq[3] = {2, 5, 1}, fw[3], tot = 0;
        for (int i = 0; i < n; i++)
            tot += freq[i];
        for (int i = 0; i < n; i++)
            fw[i] = freq[i] / tot;
        sm_matset set = {n, out, in, (const float *const *)w};
        int cat = n * in, k = out < cat ? out : cat;
        /* U' from the whitened concatenation; projection of the unwhitened W̄. */
        double *wc = ref_concat(n, out, in, ws);
        double *u = malloc(sizeof(double) * (size_t)out * k), *s = malloc(sizeof(double) * k);
        double *vt = malloc(sizeof(double) * (size_t)k * cat);
        ref_svd(out, cat, wc, u, s, vt);
        double *wbar = calloc((size_t)out * in, sizeof(double));
        for (int i = 0; i < n; i++)
            for (int64_t e = 0; e < (int64_t)out * in; e++)
                wbar[e] += fw[i] * w[i][e];
        const double rho = 0.5;
        const int r = (int)floor(rho * out * in / (out + in));
        double *proj = malloc(sizeof(double) * (size_t)out * in);
        ref_project(out, in, u, r, wbar, proj);
        sm_merge_opts o = {.rank = {SM_RANK_FRACTION, 0, rho}};
        o.usvd.solver = SM_USVD_EIGEN;
        sm_merged a;
        int rc = sm_merge_matrix(SM_MERGE_SUBMOE_WHITENED, &set, freq, (const float *const *)gram,
                                 &o, NULL, &a);
        CHECK(rc == 0, "whitened merge %s", rc ? sm_errmsg() : "");
        float *ab = malloc(sizeof(float) * (size_t)out * in);
        sm_merged_to_dense(&a, ab);
        double d = ref_rel_diff(ab, proj, (int64_t)out * in);
        CHECK(a.rank == r && d <= TOL_RANK,
              "whitened n=%d %dx%d ρ=%.1f → r=%d (got %lld): A·B = U'_rU'_rᵀW̄, rel diff %.2e", n,
              out, in, rho, r, (long long)a.rank, d);
        CHECK(sm_merged_params(&a) == (int64_t)r * (out + in) && a.a && a.b && !a.w,
              "A (%dx%d) and B (%dx%d): %lld parameters = r(out+in) = %d", out, r, r, in,
              (long long)sm_merged_params(&a), r * (out + in));
        /* Whitening changes the subspace: it differs from plain Sub-MoE at the same rank. */
        sm_merge_opts op = {.rank = {SM_RANK_COUNT, r, 0}};
        sm_merged p;
        sm_merge_matrix(SM_MERGE_SUBMOE, &set, freq, NULL, &op, NULL, &p);
        CHECK(ref_rel_diff_ff(ab, dense_of(&p), (int64_t)out * in) > 1e-3,
              "whitened subspace differs from the plain one (%.2e)",
              ref_rel_diff_ff(ab, p.w, (int64_t)out * in));
        sm_merged_free(&p);
        sm_merged_free(&a);
        /* Missing Grams are an error, not a crash. */
        CHECK(sm_merge_matrix(SM_MERGE_SUBMOE_WHITENED, &set, freq, NULL, &o, NULL, &a) == -1 &&
                  strstr(sm_errmsg(), "Gram"),
              "whitened without Grams: '%s'", sm_errmsg());
        free(ab), free(proj), free(wbar), free(vt), free(s), free(u), free(wc);
        for (int i = 0; i < n; i++)
            free(gram[i]), free(ws[i]);
        free(gram), free(ws);
        free_members(w, n);
    }
}

static void test_rank_spec(void)
{
    sm_rank r;
    int64_t v;
    char buf[32];
    CHECK(sm_rank_parse("full", &r) == 0 && r.kind == SM_RANK_FULL, "parse full");
    CHECK(sm_rank_parse("512", &r) == 0 && r.kind == SM_RANK_COUNT && r.count == 512, "parse 512");
    CHECK(sm_rank_parse("0.25", &r) == 0 && r.kind == SM_RANK_FRACTION && r.fraction == 0.25,
          "parse 0.25");
    sm_rank_format(&r, buf, sizeof buf);
    CHECK_STR(buf, "0.25", "format 0.25");
    CHECK(sm_rank_parse("25%", &r) == 0 && r.fraction == 0.25, "parse 25%%");
    CHECK(sm_rank_parse("0", &r) == -1 && sm_rank_parse("1.5", &r) == -1 &&
              sm_rank_parse("abc", &r) == -1 && sm_rank_parse("", &r) == -1,
          "bad ranks rejected ('%s')", sm_errmsg());
    /* Mixtral gate, 2 experts: submoe fraction of min(14336, 8192); whitened ρ of out·in/(out+in). */
    sm_rank_parse("0.25", &r);
    CHECK(sm_rank_resolve(&r, SM_MERGE_SUBMOE, 14336, 4096, 2, &v) == 0 && v == 2048,
          "submoe 0.25 of 8192 = %lld", (long long)v);
    CHECK(sm_rank_resolve(&r, SM_MERGE_SUBMOE_WHITENED, 14336, 4096, 2, &v) == 0 && v == 796,
          "whitened ρ 0.25 → floor(0.25·14336·4096/18432) = %lld", (long long)v);
    sm_rank_parse("9000", &r);
    CHECK(sm_rank_resolve(&r, SM_MERGE_SUBMOE, 14336, 4096, 2, &v) == 0 && v == 0,
          "rank above min(out, n·in) is full");
    CHECK(sm_rank_resolve(&r, SM_MERGE_FREQ_AVERAGE, 14336, 4096, 2, &v) == 0 && v == 0,
          "freq-average has no rank");
    sm_merge_method m;
    CHECK(sm_merge_method_parse("submoe-whitened", &m) == 0 && m == SM_MERGE_SUBMOE_WHITENED &&
              strcmp(sm_merge_method_name(SM_MERGE_PRUNE_OUTPUT), "prune-output") == 0 &&
              sm_merge_method_parse("bogus", &m) == -1,
          "method names");
}

static void test_weights_and_cancel(void)
{
    sm_rng rng;
    sm_rng_seed(&rng, 5);
    float **w = make_members(&rng, 3, 20, 10);
    sm_matset set = {3, 20, 10, (const float *const *)w};
    double zero[3] = {0, 0, 0}, fw[3];
    sm_merged a, b;
    CHECK(sm_merge_matrix(SM_MERGE_FREQ_AVERAGE, &set, zero, NULL, NULL, NULL, &a) == 0 &&
              sm_merge_matrix(SM_MERGE_AVERAGE, &set, NULL, NULL, NULL, NULL, &b) == 0 &&
              memcmp(a.w, b.w, sizeof(float) * 200) == 0,
          "all-zero frequencies merge uniformly (= average)");
    sm_merged_free(&a), sm_merged_free(&b);
    double neg[3] = {1, -1, 0};
    CHECK(sm_merge_weights(SM_MERGE_FREQ_AVERAGE, neg, 3, fw) == -1, "negative frequency rejected");
    volatile int stop = 1;
    sm_monitor mon = {NULL, NULL, &stop};
    sm_merge_opts o = {.rank = {SM_RANK_COUNT, 5, 0}};
    CHECK(sm_merge_matrix(SM_MERGE_SUBMOE, &set, NULL, NULL, &o, &mon, &a) == -1 &&
              strcmp(sm_errmsg(), "cancelled") == 0,
          "cancellation stops the merge ('%s')", sm_errmsg());
    free_members(w, 3);
}

/* A one-member cluster at full rank is its member: sm_merge_matrix_single shares the member's
 * matrix, with the values, weight and member error sm_merge_matrix's copy has (−0.0 aside: the
 * copy's weighted sum turns it into +0.0, the share keeps it); anything else is left to
 * sm_merge_matrix (1). */
static void test_single_member(void)
{
    sm_rng rng;
    sm_rng_seed(&rng, 9);
    float **w = make_members(&rng, 2, 20, 10);
    double f[2] = {0.3, 0.7};
    sm_matset one = {1, 20, 10, (const float *const *)w}, two = {2, 20, 10, (const float *const *)w};
    sm_merge_opts low = {.rank = {SM_RANK_COUNT, 5, 0}};
    for (int mi = 0; mi < 3; mi++) {
        const sm_merge_method m = mi == 0 ? SM_MERGE_SUBMOE : mi == 1 ? SM_MERGE_FREQ_AVERAGE : SM_MERGE_AVERAGE;
        sm_merged copy, share;
        int rc = sm_merge_matrix(m, &one, f, NULL, NULL, NULL, &copy) || sm_merge_matrix_single(m, &one, f, NULL, &share);
        CHECK(rc == 0 && share.w == w[0] && share.w_borrowed && !copy.w_borrowed &&
                  memcmp(copy.w, share.w, sizeof(float) * 200) == 0 && copy.weights[0] == share.weights[0] &&
                  copy.member_err[0] == share.member_err[0] && share.rank == 0 && share.n_members == 1,
              "%s: a one-member cluster shared == copied", sm_merge_method_name(m));
        sm_merged_free(&copy), sm_merged_free(&share); /* the share leaves the member's matrix */
    }
    sm_merged x;
    CHECK(sm_merge_matrix_single(SM_MERGE_SUBMOE, &two, f, NULL, &x) == 1 &&
              sm_merge_matrix_single(SM_MERGE_SUBMOE, &one, f, &low, &x) == 1 &&
              sm_merge_matrix_single(SM_MERGE_PRUNE_FREQUENCY, &one, f, NULL, &x) == 1,
          "two members, a low rank, a pruning: merged, not shared");
    CHECK(w[0][0] == w[0][0] && isfinite(w[0][199]), "the member's matrix survives the share's free");
    free_members(w, 2);
}

/* Shapes whose products pass 2^24 multiply-adds run on oneDNN's fp32 kernels (util/matmul),
 * both Gram sides: the Gram against fp64 from W_cat (1e-5 of its largest entry, exactly
 * symmetric), the projections at full rank (U Uᵀ = I: the weighted sum, TOL_EXACT), and a rank-r
 * merge against the literal dgesdd formula (TOL_RANK, as test_submoe_shapes). */
static void test_large_products(void)
{
    const shape shapes[] = {{2, 512, 256} /* left Gram 512², 2^26 */, {2, 1024, 160} /* right, blocks 160² */};
    sm_rng rng;
    sm_rng_seed(&rng, 31);
    for (size_t si = 0; si < sizeof shapes / sizeof *shapes; si++) {
        const int n = shapes[si].n, out = shapes[si].out, in = shapes[si].in, r = 24;
        float **w = spectral_members(&rng, n, out, in, r, 0.05);
        sm_matset set = {n, out, in, (const float *const *)w};
        const int64_t dim = sm_usvd_max_rank(&set);
        const bool left = sm_usvd_gram_side(&set) == SM_USVD_LEFT;
        const int64_t gm = left ? out : in, gk = left ? in : out;
        if (!sm_gemm_dnnl(gm, gm, gk))
            printf("# oneDNN is not loaded: these products run on OpenBLAS\n");
        float *g = malloc(sizeof(float) * (size_t)(dim * dim));
        CHECK(sm_usvd_gram(&set, NULL, g) == 0, "gram");
        double *wc = ref_concat(n, out, in, w);
        const int cat = n * in;
        double emax = 0, gmax = 0, asym = 0;
        for (int64_t i = 0; i < dim; i++)
            for (int64_t j = 0; j < dim; j++) {
                double ref = 0;
                for (int64_t p = 0; p < (left ? cat : out); p++)
                    ref += left ? wc[i * cat + p] * wc[j * cat + p] : wc[p * cat + i] * wc[p * cat + j];
                gmax = fmax(gmax, fabs(ref));
                emax = fmax(emax, fabs(ref - g[i * dim + j]));
                asym = fmax(asym, fabs((double)g[i * dim + j] - g[j * dim + i]));
            }
        CHECK(emax / gmax < 1e-5 && asym == 0, "%s Gram %lld² (%s): error %.2e of its largest entry, asymmetry %g",
              left ? "left" : "right", (long long)dim, sm_gemm_impl(!left, left, gm, gm, gk, in, in, left ? out : dim),
              emax / gmax, asym);
        free(wc);
        free(g);

        double freq[2] = {3, 1}, fw[2] = {0.75, 0.25};
        sm_usvd_basis b;
        float *proj = malloc(sizeof(float) * (size_t)out * in), *wbar = malloc(sizeof(float) * (size_t)out * in);
        CHECK(sm_usvd_basis_compute(&set, dim, NULL, NULL, &b) == 0 && sm_usvd_project(&set, &b, fw, proj) == 0,
              "full-rank basis and projection");
        sm_weighted_sum(&set, fw, wbar);
        double d = ref_rel_diff_ff(proj, wbar, (int64_t)out * in);
        CHECK(d <= TOL_EXACT, "%s: the projection on the full basis is the weighted sum, rel diff %.2e",
              left ? "left" : "right", d);
        sm_usvd_basis_free(&b);

        sm_merge_opts o = {.rank = {SM_RANK_COUNT, r, 0}};
        o.usvd.solver = SM_USVD_EIGEN;
        sm_merged a;
        double *lit = malloc(sizeof(double) * (size_t)out * in), *pr = malloc(sizeof(double) * (size_t)out * in);
        literal(n, out, in, w, fw, r, lit, pr, NULL);
        CHECK(sm_merge_matrix(SM_MERGE_SUBMOE, &set, freq, NULL, &o, NULL, &a) == 0, "rank %d merge", r);
        double dl = ref_rel_diff(dense_of(&a), lit, (int64_t)out * in), dp = ref_rel_diff(dense_of(&a), pr, (int64_t)out * in);
        CHECK(dl <= TOL_RANK && dp <= TOL_RANK, "%s r=%d: vs U_rΣ_r(V_mᵀ)_r %.2e, vs U_rU_rᵀW̄ %.2e",
              left ? "left" : "right", r, dl, dp);
        sm_merged_free(&a);
        free(lit), free(pr), free(proj), free(wbar);
        free_members(w, n);
    }
}

int main(void)
{
    test_rank_spec();
    test_submoe_shapes();
    test_spectrum();
    test_randomized();
    test_auto_randomized();
    test_whitened();
    test_weights_and_cancel();
    test_single_member();
    test_large_products();
    return tu_done();
}
