#include "engine/unionsvd.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "engine/dense.h"
#include "util/diag.h"
#include "util/matmul.h"
#include "util/mem.h"
#include "util/parallel.h"
#include "util/rng.h"

/* Flop-equivalents (at sgemm speed) of the dense eigensolvers per n³, measured with OpenBLAS
 * 0.3.21 on 2 cores: dsyevd(4096) 16.4 s, ssyevd(4096) 7.0 s, sgemm ~90 GF/s. Householder
 * QR + explicit Q ≈ 11·m·n². Only the ratios matter for the AUTO choice. */
#define COST_EIG_F64 22.0
#define COST_EIG_F32 9.5
#define COST_QR 11.0
#define COST_LU 1.2
/* AUTO never randomises a Gram of at most SM_USVD_AUTO_EIGEN_MAX (unionsvd.h): the eigensolve
 * is cheap and exact. */

/* Gram products are split so that one BLAS call stays around this many flops, which keeps
 * cancellation responsive without hurting BLAS efficiency. Products big enough for oneDNN
 * (sm_gemm_dnnl) run there whole, both triangles, as its fp32 kernels run more than twice
 * OpenBLAS ssyrk's rate here (bench/README); smaller ones stay on ssyrk, so the demo's merges
 * keep their exact results. */
#define GRAM_CHUNK_FLOPS 4e10

const char *sm_usvd_solver_name(sm_usvd_solver s)
{
    switch (s) {
    case SM_USVD_AUTO: return "auto";
    case SM_USVD_EIGEN: return "eigen";
    case SM_USVD_RANDOMIZED: return "randomized";
    }
    return "?";
}

int64_t sm_usvd_max_rank(const sm_matset *s)
{
    int64_t cat = s->in * s->n;
    return s->out < cat ? s->out : cat;
}

sm_usvd_side sm_usvd_gram_side(const sm_matset *s)
{
    return s->out <= s->in * s->n ? SM_USVD_LEFT : SM_USVD_RIGHT;
}

int sm_matset_check(const sm_matset *s)
{
    if (!s || s->n <= 0 || s->out <= 0 || s->in <= 0 || !s->w)
        return sm_err("empty matrix set");
    int64_t dims[3] = {s->out, s->in, s->in * s->n};
    if (sm_dense_fits_int(dims, 3, "matrix set") != 0)
        return -1;
    for (int i = 0; i < s->n; i++)
        if (!s->w[i])
            return sm_err("matrix set: member %d has no data", i);
    return 0;
}

/* Elements of one item of sm_weighted_sum's parallel loop (whole blocks of BLOCK). */
#define WSUM_BLOCK 2048
#define WSUM_ITEM (WSUM_BLOCK * 64)

typedef struct wsum_ctx {
    const sm_matset *s;
    const double *w;
    float *dst;
} wsum_ctx;

/* Elements [i·WSUM_ITEM, ...) of the weighted sum, each summed over the members in order. */
static int wsum_item(void *ctx, int64_t item, const sm_monitor *mon)
{
    (void)mon;
    const wsum_ctx *c = ctx;
    double acc[WSUM_BLOCK];
    const int64_t len = c->s->out * c->s->in, end = (item + 1) * WSUM_ITEM < len ? (item + 1) * WSUM_ITEM : len;
    for (int64_t e0 = item * WSUM_ITEM; e0 < end; e0 += WSUM_BLOCK) {
        int64_t ne = end - e0 < WSUM_BLOCK ? end - e0 : WSUM_BLOCK;
        memset(acc, 0, (size_t)ne * sizeof(double));
        for (int i = 0; i < c->s->n; i++) {
            const float *src = c->s->w[i] + e0;
            const double wi = c->w[i];
            for (int64_t e = 0; e < ne; e++)
                acc[e] += wi * src[e];
        }
        for (int64_t e = 0; e < ne; e++)
            c->dst[e0 + e] = (float)acc[e];
    }
    return 0;
}

void sm_weighted_sum(const sm_matset *s, const double *w, float *dst)
{
    const int64_t len = s->out * s->in;
    wsum_ctx c = {s, w, dst};
    sm_parallel_for((len + WSUM_ITEM - 1) / WSUM_ITEM, len * s->n, wsum_item, &c, NULL, NULL); /* cannot fail */
}

/* ---- Gram -------------------------------------------------------------------------------- */

static int64_t chunk_len(double flops_per_unit, int64_t total)
{
    double c = GRAM_CHUNK_FLOPS / (flops_per_unit > 1 ? flops_per_unit : 1);
    int64_t n = c < 256 ? 256 : (int64_t)c;
    return n > total ? total : n;
}

int sm_usvd_gram(const sm_matset *s, const sm_monitor *mon, float *g)
{
    if (sm_matset_check(s) != 0)
        return -1;
    const int64_t out = s->out, in = s->in, n = s->n;
    if (sm_usvd_gram_side(s) == SM_USVD_LEFT) {
        /* G = Σ_i W_i W_iᵀ, accumulated over column chunks of every member. */
        int64_t step = chunk_len((double)out * out, in);
        int64_t total = n * ((in + step - 1) / step), done = 0;
        for (int64_t i = 0; i < n; i++)
            for (int64_t c0 = 0; c0 < in; c0 += step) {
                int64_t kc = in - c0 < step ? in - c0 : step;
                if (sm_monitor_check(mon) != 0)
                    return -1;
                if (sm_gemm_dnnl(out, out, kc))
                    sm_gemm_f32(false, true, out, out, kc, s->w[i] + c0, in, s->w[i] + c0, in,
                                done ? 1.0f : 0.0f, g, out);
                else
                    cblas_ssyrk(CblasRowMajor, CblasUpper, CblasNoTrans, (int)out, (int)kc, 1.0f,
                                s->w[i] + c0, (int)in, done ? 1.0f : 0.0f, g, (int)out);
                sm_monitor_report(mon, (double)++done / total, "Gram matrix");
            }
        sm_symmetrize_upper_f32(out, g);
    } else {
        /* G = W_catᵀ W_cat: block (i, j) = W_iᵀ W_j, upper block triangle, over row chunks. */
        const int64_t dim = n * in;
        int64_t step = chunk_len((double)in * in * 2, out);
        int64_t blocks = n * (n + 1) / 2, nchunks = (out + step - 1) / step;
        int64_t total = blocks * nchunks, done = 0;
        for (int64_t i = 0; i < n; i++)
            for (int64_t j = i; j < n; j++) {
                float *gij = g + i * in * dim + j * in;
                for (int64_t r0 = 0; r0 < out; r0 += step) {
                    int64_t kr = out - r0 < step ? out - r0 : step;
                    float beta = r0 ? 1.0f : 0.0f;
                    if (sm_monitor_check(mon) != 0)
                        return -1;
                    if (i == j && !sm_gemm_dnnl(in, in, kr))
                        cblas_ssyrk(CblasRowMajor, CblasUpper, CblasTrans, (int)in, (int)kr,
                                    1.0f, s->w[i] + r0 * in, (int)in, beta, gij, (int)dim);
                    else
                        sm_gemm_f32(true, false, in, in, kr, s->w[i] + r0 * in, in,
                                    s->w[j] + r0 * in, in, beta, gij, dim);
                    sm_monitor_report(mon, (double)++done / total, "Gram matrix");
                }
            }
        sm_symmetrize_upper_f32(dim, g);
    }
    return 0;
}

/* ---- basis from the Gram ------------------------------------------------------------------- */

static int basis_alloc(sm_usvd_basis *b, int64_t dim, int64_t rank)
{
    b->dim = dim;
    b->rank = rank;
    b->vec = sm_alloc_f32((size_t)(dim * rank));
    b->sv = sm_alloc((size_t)rank, sizeof(double));
    if (!b->vec || !b->sv) {
        sm_usvd_basis_free(b);
        return -1;
    }
    return 0;
}

/* Dense path: all eigenpairs, keep the top `rank` (LAPACK returns them ascending). */
static int basis_eigen(const float *g, int64_t dim, int64_t rank, sm_usvd_basis *b)
{
    if (basis_alloc(b, dim, rank) != 0)
        return -1;
    const size_t nn = (size_t)(dim * dim);
    int rc = -1;
    if (dim <= SM_USVD_DOUBLE_MAX) {
        double *a = sm_alloc(nn, sizeof(double)), *w = sm_alloc((size_t)dim, sizeof(double));
        if (a && w) {
            for (size_t k = 0; k < nn; k++)
                a[k] = g[k];
            rc = sm_eigh_f64((int)dim, a, true, w);
            for (int64_t c = 0; rc == 0 && c < rank; c++) {
                const double *col = a + (size_t)(dim - 1 - c) * dim;
                for (int64_t k = 0; k < dim; k++)
                    b->vec[c * dim + k] = (float)col[k];
                b->sv[c] = sqrt(fmax(w[dim - 1 - c], 0.0));
            }
        }
        free(a);
        free(w);
    } else {
        float *a = sm_alloc_f32(nn), *w = sm_alloc_f32((size_t)dim);
        if (a && w) {
            memcpy(a, g, nn * sizeof(float));
            rc = sm_eigh_f32((int)dim, a, true, w);
            for (int64_t c = 0; rc == 0 && c < rank; c++) {
                memcpy(b->vec + c * dim, a + (size_t)(dim - 1 - c) * dim,
                       (size_t)dim * sizeof(float));
                b->sv[c] = sqrt(fmax((double)w[dim - 1 - c], 0.0));
            }
        }
        free(a);
        free(w);
    }
    if (rc != 0)
        sm_usvd_basis_free(b);
    b->solver = SM_USVD_EIGEN;
    return rc;
}

/* Randomized path: subspace iteration Y = G B with LU renormalisation between passes, then
 * Householder orthonormalisation of the last subspace and Rayleigh–Ritz on it (T = Qᵀ G Q,
 * eigenvectors Z, basis Q Z_r). */
static int basis_randomized(const float *g, int64_t dim, int64_t rank, int64_t width, int q,
                            uint64_t seed, const sm_monitor *mon, sm_usvd_basis *b)
{
    const size_t ny = (size_t)(dim * width);
    float *y = sm_alloc_f32(ny), *qm = sm_alloc_f32(ny);
    float *t = sm_alloc_f32((size_t)(width * width)), *theta = sm_alloc_f32((size_t)width);
    int rc = -1;
    if (!y || !qm || !t || !theta)
        goto done;
    sm_rng rng;
    sm_rng_seed(&rng, seed ^ 0x5eed0fa11u);
    sm_rng_fill_normal(&rng, qm, ny, 1.0f);
    const int n = (int)dim, l = (int)width;
    for (int pass = 0; pass <= q + 1; pass++) {
        if (sm_monitor_check(mon) != 0)
            goto done;
        /* y = G qm (column-major n×l, i.e. row-major l×n: yᵀ = qmᵀ G, G symmetric). */
        sm_gemm_f32(false, false, l, n, n, qm, n, g, n, 0.0f, y, n);
        sm_monitor_report(mon, (pass + 1.0) / (q + 3.0), "randomized subspace");
        if (pass == q + 1)
            break;
        /* Power iterations only need a well-conditioned basis (cheap LU); the last subspace
         * needs an orthonormal one for Rayleigh–Ritz (Householder QR). */
        if ((pass < q ? sm_lu_basis_f32(n, l, y) : sm_orth_f32(n, l, y)) != 0)
            goto done;
        float *tmp = y;
        y = qm;
        qm = tmp;
    }
    /* Rayleigh–Ritz: T = Qᵀ (G Q), symmetrised, eigenpairs ascending (computed row-major as
     * Tᵀ = (G Q)ᵀ Q, which the symmetrisation makes the same). */
    sm_gemm_f32(false, true, l, l, n, y, n, qm, n, 0.0f, t, l);
    for (int64_t i = 0; i < width; i++)
        for (int64_t j = i + 1; j < width; j++) {
            float v = 0.5f * (t[i * width + j] + t[j * width + i]);
            t[i * width + j] = t[j * width + i] = v;
        }
    if (sm_eigh_f32(l, t, true, theta) != 0)
        goto done;
    /* Top `rank` Ritz vectors, descending: zr (width × rank) then basis = Q zr. */
    float *zr = y; /* y is free now and large enough (dim ≥ width) */
    for (int64_t c = 0; c < rank; c++)
        memcpy(zr + c * width, t + (width - 1 - c) * width, (size_t)width * sizeof(float));
    if (basis_alloc(b, dim, rank) != 0)
        goto done;
    sm_gemm_f32(false, false, rank, n, l, zr, l, qm, n, 0.0f, b->vec, n); /* row-major zrᵀ qmᵀ */
    for (int64_t c = 0; c < rank; c++)
        b->sv[c] = sqrt(fmax((double)theta[width - 1 - c], 0.0));
    b->solver = SM_USVD_RANDOMIZED;
    rc = 0;
done:
    free(y);
    free(qm);
    free(t);
    free(theta);
    return rc;
}

static void resolve_randomized(const sm_usvd_opts *o, int64_t dim, int64_t rank, int64_t *width,
                               int *q)
{
    /* p = max(32, r/2): on the demo at rank 32 of 256, r/10 left perplexity 7% above the exact merge's
     * (6.05 vs 5.67), r/2 0.8% (5.71); on a flat 8192-wide spectrum at r = 2048 the rank cut
     * came to 0.555 and 0.534 (exact 0.527), for about 25% more time (bench_merge). */
    int64_t p = o && o->oversample > 0 ? o->oversample : (rank / 2 > 32 ? rank / 2 : 32);
    *width = rank + p < dim ? rank + p : dim;
    *q = !o || o->power_iters == 0 ? 1 : o->power_iters < 0 ? 0 : o->power_iters;
}

/* Estimated cost (flop-equivalents) of the dense and randomized eigenparts. */
static bool prefer_randomized(int64_t dim, int64_t rank, int64_t width, int q)
{
    if (dim <= SM_USVD_AUTO_EIGEN_MAX || width >= dim)
        return false;
    double n = (double)dim, l = (double)width;
    double eig = (dim <= SM_USVD_DOUBLE_MAX ? COST_EIG_F64 : COST_EIG_F32) * n * n * n;
    double rnd = (q + 2) * 2.0 * n * n * l + (COST_QR + q * COST_LU) * n * l * l +
                 COST_EIG_F32 * l * l * l + 2.0 * n * l * (double)rank;
    return rnd < 0.5 * eig;
}

int sm_usvd_basis_compute(const sm_matset *s, int64_t rank, const sm_usvd_opts *opts,
                          const sm_monitor *mon, sm_usvd_basis *out)
{
    memset(out, 0, sizeof *out);
    if (sm_matset_check(s) != 0)
        return -1;
    if (rank < 1)
        return sm_err("union SVD rank must be at least 1 (got %lld)", (long long)rank);
    const int64_t dim = sm_usvd_max_rank(s);
    if (rank > dim)
        rank = dim;
    int64_t width;
    int q;
    resolve_randomized(opts, dim, rank, &width, &q);
    sm_usvd_solver solver = opts ? opts->solver : SM_USVD_AUTO;
    if (solver == SM_USVD_AUTO)
        solver = prefer_randomized(dim, rank, width, q) ? SM_USVD_RANDOMIZED : SM_USVD_EIGEN;
    if (solver == SM_USVD_RANDOMIZED && width >= dim)
        solver = SM_USVD_EIGEN; /* the "sketch" would be the whole space */

    float *g = sm_alloc_f32((size_t)(dim * dim));
    if (!g)
        return -1;
    sm_monitor_span span;
    int rc = sm_usvd_gram(s, sm_monitor_span_init(&span, mon, 0.0, 0.6), g);
    if (rc == 0 && (rc = sm_monitor_check(mon)) == 0) {
        sm_monitor_report(mon, 0.6, "eigenvectors");
        if (solver == SM_USVD_EIGEN)
            rc = basis_eigen(g, dim, rank, out);
        else
            rc = basis_randomized(g, dim, rank, width, q, opts ? opts->seed : 0,
                                  sm_monitor_span_init(&span, mon, 0.6, 1.0), out);
    }
    free(g);
    if (rc != 0)
        return -1;
    out->side = sm_usvd_gram_side(s);
    sm_monitor_report(mon, 1.0, "union basis");
    return 0;
}

void sm_usvd_basis_free(sm_usvd_basis *b)
{
    if (!b)
        return;
    free(b->vec);
    free(b->sv);
    b->vec = NULL;
    b->sv = NULL;
    b->rank = 0;
}

/* ---- using the basis ----------------------------------------------------------------------- */

static int basis_matches(const sm_matset *s, const sm_usvd_basis *b)
{
    if (sm_matset_check(s) != 0)
        return -1;
    if (!b || !b->vec || b->rank < 1)
        return sm_err("union basis is empty");
    int64_t want = b->side == SM_USVD_LEFT ? s->out : s->in * s->n;
    if (b->dim != want || b->rank > b->dim)
        return sm_err("union basis (%lld × %lld) does not match the matrix set", (long long)b->dim,
                      (long long)b->rank);
    return 0;
}

/* a (out × rank, row-major) = W_cat V_r = Σ_i W_i V_i, with V_i rows i·in.. of the basis. */
static void cat_times_v(const sm_matset *s, const sm_usvd_basis *b, float *a)
{
    const int64_t dim = b->dim;
    for (int i = 0; i < s->n; i++)
        sm_gemm_f32(false, true, s->out, b->rank, s->in, s->w[i], s->in, b->vec + (int64_t)i * s->in, dim,
                    i ? 1.0f : 0.0f, a, b->rank);
}

int sm_usvd_cat_times_basis(const sm_matset *s, const sm_usvd_basis *b, float *a)
{
    if (basis_matches(s, b) != 0)
        return -1;
    if (b->side != SM_USVD_RIGHT)
        return sm_err("W_cat V_r needs a right-side basis");
    cat_times_v(s, b, a);
    return 0;
}

int sm_usvd_project(const sm_matset *s, const sm_usvd_basis *b, const double *weights,
                    float *dst)
{
    if (basis_matches(s, b) != 0)
        return -1;
    const int64_t out = s->out, in = s->in, r = b->rank, dim = b->dim;
    if (b->side == SM_USVD_LEFT) {
        /* W̄ into dst, T = U_rᵀ W̄ (r×in), dst = U_r T. The basis as row-major is U_rᵀ. */
        sm_weighted_sum(s, weights, dst);
        float *t = sm_alloc_f32((size_t)(r * in));
        if (!t)
            return -1;
        sm_gemm_f32(false, false, r, in, out, b->vec, dim, dst, in, 0.0f, t, in);
        sm_gemm_f32(true, false, out, in, r, b->vec, dim, t, in, 0.0f, dst, in);
        free(t);
    } else {
        /* dst = (W_cat V_r)(Σ_i weights[i] V_iᵀ): V_iᵀ is the r×in slice at column i·in of the
         * row-major r × n·in basis. */
        float *a = sm_alloc_f32((size_t)(out * r)), *bm = sm_zalloc((size_t)(r * in), sizeof(float));
        if (!a || !bm) {
            free(a);
            free(bm);
            return -1;
        }
        cat_times_v(s, b, a);
        for (int i = 0; i < s->n; i++) {
            float wi = (float)weights[i];
            for (int64_t c = 0; c < r; c++)
                cblas_saxpy((int)in, wi, b->vec + c * dim + (int64_t)i * in, 1, bm + c * in, 1);
        }
        sm_gemm_f32(false, false, out, in, r, a, r, bm, in, 0.0f, dst, in);
        free(a);
        free(bm);
    }
    return 0;
}

int sm_usvd_left_basis(const sm_matset *s, const sm_usvd_basis *b, float *u)
{
    if (basis_matches(s, b) != 0)
        return -1;
    if (b->side == SM_USVD_LEFT) {
        memcpy(u, b->vec, (size_t)(b->dim * b->rank) * sizeof(float));
        return 0;
    }
    /* u (out × r column-major = r × out row-major) = V_rᵀ W_catᵀ = Σ_i V_iᵀ W_iᵀ. */
    const int64_t out = s->out, in = s->in, r = b->rank;
    for (int i = 0; i < s->n; i++)
        sm_gemm_f32(false, true, r, out, in, b->vec + (int64_t)i * in, b->dim, s->w[i], in, i ? 1.0f : 0.0f, u,
                    out);
    return sm_orth_f32((int)out, (int)r, u);
}

int sm_usvd_spectrum(const sm_matset *s, const sm_monitor *mon, double *sv)
{
    if (sm_matset_check(s) != 0)
        return -1;
    const int64_t dim = sm_usvd_max_rank(s);
    const size_t nn = (size_t)(dim * dim);
    float *g = sm_alloc_f32(nn);
    if (!g)
        return -1;
    sm_monitor_span span;
    int rc = sm_usvd_gram(s, sm_monitor_span_init(&span, mon, 0.0, 0.5), g);
    if (rc == 0)
        rc = sm_monitor_check(mon);
    if (rc == 0 && dim <= SM_USVD_DOUBLE_MAX) {
        double *a = sm_alloc(nn, sizeof(double));
        rc = a ? 0 : -1;
        for (size_t k = 0; rc == 0 && k < nn; k++)
            a[k] = g[k];
        if (rc == 0)
            rc = sm_eigh_f64((int)dim, a, false, sv); /* ascending, in sv */
        free(a);
    } else if (rc == 0) {
        float *w = sm_alloc_f32((size_t)dim);
        rc = w ? sm_eigh_f32((int)dim, g, false, w) : -1;
        for (int64_t k = 0; rc == 0 && k < dim; k++)
            sv[k] = w[k];
        free(w);
    }
    free(g);
    if (rc != 0)
        return -1;
    /* Ascending eigenvalues → descending singular values. */
    for (int64_t i = 0, j = dim - 1; i < j; i++, j--) {
        double t = sv[i];
        sv[i] = sv[j];
        sv[j] = t;
    }
    for (int64_t k = 0; k < dim; k++)
        sv[k] = sqrt(fmax(sv[k], 0.0));
    sm_monitor_report(mon, 1.0, "spectrum");
    return 0;
}
