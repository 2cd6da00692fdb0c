/* refit: output-preserving refit of a merged down projection (see refit.h). */
#include "engine/refit.h"
#include "engine/dense.h"
#include "engine/lapack.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "util/diag.h"
#include "util/matmul.h"
#include "util/mem.h"

#define ROUTE_BLOCK 256
/* Work between monitor checks stays far below the ~200 ms util/monitor.h asks for at I = 1408:
 * rows per Gram update (GEMM-sized batches of the cluster's routed rows), right-hand sides per
 * triangular solve, and the Cholesky's panel and trailing-update strip widths. Larger shapes take
 * fewer rows or columns per step (fit_batch, solve_cols, dual_rows): at most ~2^35 flops, ~0.1 s of
 * work, between checks. */
#define FIT_ROWS 128
#define CHECK_FLOPS ((int64_t)1 << 35)
#define SOLVE_COLS 64
#define CHOL_PANEL 128
#define CHOL_STRIP 256
/* The row-space solve's product panels: rows of D per GEMM (at Mixtral's I = 14336 and ~700
 * routed rows, 256 rows are ~5 GFLOP, tens of ms on oneDNN) and columns of S per double Gram
 * update. */
#define DUAL_PANEL 256
#define DUAL_GRAM_COLS 256

/* Right-hand sides per triangular solve of an n × n factor: SOLVE_COLS, fewer when n is large (a
 * solve is 2·n² flops per right-hand side: 64 of them at n = 14336 would be 26 GFLOP unchecked). */
static int solve_cols(int64_t n)
{
    const int64_t c = ((int64_t)1 << 29) / (n * n > 0 ? n * n : 1);
    return (int)(c < 1 ? 1 : c > SOLVE_COLS ? SOLVE_COLS : c);
}

/* Rows per Gram update: FIT_ROWS, fewer where a batch's forwards (the merged gate and up, 4·H·I
 * flops a row, and each row's members, 6·H·I each) would exceed CHECK_FLOPS. */
static int fit_batch(int64_t h, int64_t inter)
{
    const int64_t b = CHECK_FLOPS / (16 * h * inter > 0 ? 16 * h * inter : 1);
    return (int)(b < 8 ? 8 : b > FIT_ROWS ? FIT_ROWS : b);
}

/* Rows of D per product with the n routed rows (2·n·I flops a row): DUAL_PANEL, or fewer. */
static int64_t dual_rows(int64_t n, int64_t inter)
{
    const int64_t b = CHECK_FLOPS / (2 * n * inter > 0 ? 2 * n * inter : 1);
    return b < 8 ? 8 : b > DUAL_PANEL ? DUAL_PANEL : b;
}

void sm_refit_routes_free(sm_refit_routes *r)
{
    if (!r)
        return;
    free(r->idx), free(r->w);
    memset(r, 0, sizeof *r);
}

int sm_refit_route(const sm_moe_block *src, const float *x, int64_t m, const sm_monitor *mon,
                   sm_refit_routes *out)
{
    memset(out, 0, sizeof *out);
    if (!x || m <= 0)
        return sm_err("refit needs calibration inputs");
    const int n = src->n_router, k = src->rule.top_k;
    const int64_t h = src->hidden;
    out->m = m;
    out->k = k;
    out->idx = sm_alloc((size_t)(m * k), sizeof *out->idx);
    out->w = sm_alloc_f32((size_t)(m * k));
    float *z = sm_alloc_f32((size_t)ROUTE_BLOCK * (size_t)n);
    int rc = out->idx && out->w && z ? 0 : -1;
    for (int64_t t0 = 0; rc == 0 && t0 < m; t0 += ROUTE_BLOCK) {
        const int64_t mb = m - t0 < ROUTE_BLOCK ? m - t0 : ROUTE_BLOCK;
        if ((rc = sm_monitor_check(mon)) != 0)
            break;
        sm_route_logits(x + t0 * h, mb, h, src->router, n, z);
        rc = sm_route_select(&src->rule, z, mb, n, out->idx + t0 * k, out->w + t0 * k);
    }
    free(z);
    if (rc)
        sm_refit_routes_free(out);
    return rc;
}

/* Scratch and accumulators of one cluster's refit. */
typedef struct fit_ws {
    const sm_moe_block *src;
    const int *assign;
    int c;
    const sm_expert *merged;
    const float *x;
    const sm_refit_routes *routes;
    int64_t h, inter;
    int64_t rows[FIT_ROWS]; /* pending source rows */
    double s[FIT_ROWS];     /* their summed member weights s_c(x) */
    int pending, batch;                    /* rows pending, and per Gram update (fit_batch) */
    float *xs, *g, *u, *tmp, *y, *xg, *yg; /* FIT_ROWS rows each */
    double *hs, *yd;                       /* FIT_ROWS × I and FIT_ROWS × H */
    double *A, *B;                         /* I × I (upper, row-major), H × I */
    /* Row space (dual): all n_rows routed rows kept instead of A and B. */
    bool dual;
    int64_t n_rows;
    float *S, *Yt;                         /* n_rows × I (the rows s·h), H × n_rows (the targets, transposed) */
    double trace;                          /* Σ‖s·h‖² = trace(A) */
    double yy;                             /* Σ‖y‖² */
    int64_t fitted;
} fit_ws;

/* Columns of the factored scratch of the merged gate and up (1 when dense). */
static int64_t factor_cols(const sm_expert *e)
{
    int64_t r = 1;
    if (!e->gate.w && !e->gate.wb && e->gate.rank > r)
        r = e->gate.rank;
    if (!e->up.w && !e->up.wb && e->up.rank > r)
        r = e->up.rank;
    return r;
}

/* y (nb × H) = Σ_i g_i E_i over the members selected on each pending row. */
static int member_targets(fit_ws *w, int nb, const sm_monitor *mon)
{
    const int k = w->routes->k, n = w->src->n_experts;
    const int64_t h = w->h;
    memset(w->y, 0, sizeof(float) * (size_t)(nb * h));
    float gw[FIT_ROWS];
    int at[FIT_ROWS];
    for (int i = 0; i < n; i++) {
        if (w->assign[i] != w->c)
            continue;
        int ng = 0;
        for (int r = 0; r < nb; r++) {
            const int *idx = w->routes->idx + w->rows[r] * k;
            for (int j = 0; j < k; j++)
                if (idx[j] == i) {
                    gw[ng] = w->routes->w[w->rows[r] * k + j];
                    at[ng] = r;
                    memcpy(w->xg + ng++ * h, w->xs + r * h, sizeof(float) * (size_t)h);
                }
        }
        if (!ng)
            continue;
        if (sm_monitor_check(mon) != 0 || sm_expert_forward(&w->src->experts[i], w->xg, ng, w->yg) != 0)
            return -1;
        for (int q = 0; q < ng; q++)
            cblas_saxpy((int)h, gw[q], w->yg + q * h, 1, w->y + at[q] * h, 1);
    }
    return 0;
}

/* Add the pending rows to A and B. */
static int flush(fit_ws *w, const sm_monitor *mon)
{
    const int nb = w->pending;
    const int64_t h = w->h, inter = w->inter;
    if (!nb)
        return 0;
    for (int r = 0; r < nb; r++)
        memcpy(w->xs + r * h, w->x + w->rows[r] * h, sizeof(float) * (size_t)h);
    sm_linear_forward(&w->merged->gate, w->xs, nb, w->g, w->tmp);
    sm_linear_forward(&w->merged->up, w->xs, nb, w->u, w->tmp);
    if (member_targets(w, nb, mon) != 0 || sm_monitor_check(mon) != 0)
        return -1;
    for (int r = 0; r < nb; r++) {
        for (int64_t q = 0; q < inter; q++) {
            float gq = w->g[r * inter + q];
            w->hs[r * inter + q] = w->s[r] * (double)(gq / (1.0f + expf(-gq)) * w->u[r * inter + q]);
        }
        for (int64_t q = 0; q < h; q++) {
            w->yd[r * h + q] = w->y[r * h + q];
            w->yy += w->yd[r * h + q] * w->yd[r * h + q];
        }
    }
    if (w->dual) {
        for (int r = 0; r < nb; r++) {
            const int64_t t = w->fitted + r;
            for (int64_t q = 0; q < inter; q++) {
                w->S[t * inter + q] = (float)w->hs[r * inter + q];
                w->trace += w->hs[r * inter + q] * w->hs[r * inter + q];
            }
            for (int64_t q = 0; q < h; q++)
                w->Yt[q * w->n_rows + t] = w->y[r * h + q];
        }
        w->fitted += nb;
        w->pending = 0;
        return 0;
    }
    cblas_dsyrk(CblasRowMajor, CblasUpper, CblasTrans, (int)inter, nb, 1.0, w->hs, (int)inter, 1.0, w->A,
                (int)inter);
    if (sm_monitor_check(mon) != 0)
        return -1;
    cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)h, (int)inter, nb, 1.0, w->yd, (int)h, w->hs,
                (int)inter, 1.0, w->B, (int)inter);
    w->fitted += nb;
    w->pending = 0;
    return 0;
}

/* Gather the rows routed to the cluster and accumulate the normal equations. */
static int accumulate(fit_ws *w, const sm_monitor *mon)
{
    const int k = w->routes->k;
    for (int64_t t = 0; t < w->routes->m; t++) {
        double s = 0;
        bool hit = false;
        for (int j = 0; j < k; j++)
            if (w->assign[w->routes->idx[t * k + j]] == w->c)
                s += w->routes->w[t * k + j], hit = true;
        if (!hit)
            continue;
        w->rows[w->pending] = t;
        w->s[w->pending++] = s;
        if (w->pending == w->batch) {
            if (sm_monitor_check(mon) != 0 || flush(w, mon) != 0)
                return -1;
            sm_monitor_report(mon, 0.7 * (double)(t + 1) / (double)w->routes->m, "refit: Gram");
        }
    }
    return flush(w, mon);
}

/* Cholesky a = L Lᵀ of the n×n column-major SPD a (lower triangle), right-looking by panels, the
 * trailing update in strips, with monitor checks between: one LAPACK dpotrf over I = 14336 would
 * run a TFLOP unchecked. */
static int chol_checked(int n, double *a, const sm_monitor *mon)
{
    for (int k0 = 0; k0 < n; k0 += CHOL_PANEL) {
        const int kb = n - k0 < CHOL_PANEL ? n - k0 : CHOL_PANEL, o = k0 + kb, m2 = n - o;
        int info = 0;
        double *l11 = a + k0 + (int64_t)k0 * n, *l21 = a + o + (int64_t)k0 * n;
        if (sm_monitor_check(mon) != 0)
            return -1;
        dpotrf_("L", &kb, l11, &n, &info, 1);
        if (info > 0)
            return sm_err("the refit's Gram is not positive definite (Cholesky pivot %d of %d)", k0 + info, n);
        if (info < 0)
            return sm_err("dpotrf: invalid argument %d", -info);
        if (!m2)
            break;
        cblas_dtrsm(CblasColMajor, CblasRight, CblasLower, CblasTrans, CblasNonUnit, m2, kb, 1.0, l11, n, l21, n);
        for (int j0 = 0; j0 < m2; j0 += CHOL_STRIP) { /* A22 -= L21 L21ᵀ, strip [j0, j1) of its columns */
            const int j1 = m2 - j0 < CHOL_STRIP ? m2 : j0 + CHOL_STRIP;
            double *a22 = a + o + (int64_t)o * n;
            if (sm_monitor_check(mon) != 0)
                return -1;
            cblas_dsyrk(CblasColMajor, CblasLower, CblasNoTrans, j1 - j0, kb, -1.0, l21 + j0, n, 1.0,
                        a22 + j0 + (int64_t)j0 * n, n);
            if (j1 < m2)
                cblas_dgemm(CblasColMajor, CblasNoTrans, CblasTrans, m2 - j1, j1 - j0, kb, -1.0, l21 + j1, n,
                            l21 + j0, n, 1.0, a22 + j1 + (int64_t)j0 * n, n);
        }
    }
    return 0;
}

/* Σ‖y − s D h‖² = Σ‖y‖² − 2⟨D, B⟩ + ⟨D A, D⟩ for D (H×I, float) and the unridged A (full, row-major) and B. */
static double residual(const fit_ws *w, const double *A, const double *B, const float *D)
{
    const int64_t h = w->h, inter = w->inter;
    double *d = sm_alloc((size_t)(h * inter), sizeof(double)), *da = sm_alloc((size_t)(h * inter), sizeof(double));
    double r = NAN;
    if (d && da) {
        for (int64_t q = 0; q < h * inter; q++)
            d[q] = D[q];
        cblas_dsymm(CblasRowMajor, CblasRight, CblasUpper, (int)h, (int)inter, 1.0, A, (int)inter, d, (int)inter,
                    0.0, da, (int)inter);
        r = w->yy;
        for (int64_t q = 0; q < h * inter; q++)
            r += d[q] * (da[q] - 2.0 * B[q]);
    }
    free(d), free(da);
    return sqrt(fmax(r, 0.0) / (w->yy > 0 ? w->yy : 1.0));
}

/* D = (B + λ D⁰)(A + λI)⁻¹, written into down->w when finite. */
static int solve(fit_ws *w, sm_merged *down, double lambda, const sm_monitor *mon)
{
    const int64_t h = w->h, inter = w->inter;
    for (int64_t q = 0; q < h * inter; q++)
        w->B[q] += lambda * down->w[q];
    for (int64_t q = 0; q < inter; q++)
        w->A[q * inter + q] += lambda;
    /* Row-major upper = column-major lower; B row-major H×I = column-major I×H: the right-hand
     * sides of A Dᵀ = Bᵀ are B's rows. */
    if (chol_checked((int)inter, w->A, mon) != 0)
        return -1;
    const int nc_max = solve_cols(inter);
    for (int64_t j0 = 0; j0 < h; j0 += nc_max) {
        const int nc = (int)(h - j0 < nc_max ? h - j0 : nc_max);
        if (sm_monitor_check(mon) != 0 || sm_chol_solve_f64((int)inter, w->A, nc, w->B + j0 * inter) != 0)
            return -1;
        sm_monitor_report(mon, 0.8 + 0.2 * (double)(j0 + nc) / (double)h, "refit: solve");
    }
    for (int64_t q = 0; q < h * inter; q++)
        if (!isfinite(w->B[q]) || fabs(w->B[q]) > 3.0e38)
            return sm_err("the refitted down projection is not finite (row %lld): the activations overflow",
                          (long long)(q / inter));
    for (int64_t q = 0; q < h * inter; q++)
        down->w[q] = (float)w->B[q];
    return 0;
}

static void ws_free(fit_ws *w)
{
    free(w->xs), free(w->g), free(w->u), free(w->tmp), free(w->y), free(w->xg), free(w->yg);
    free(w->hs), free(w->yd), free(w->A), free(w->B), free(w->S), free(w->Yt);
}

/* ---- The row-space (dual) solve, for fewer routed rows than intermediate neurons ----
 * With S the n routed rows s·h (n × I) and Y their targets (n × H), A = SᵀS and B = YᵀS, and the
 * push-through identity (SᵀS + λI)⁻¹Sᵀ = Sᵀ(SSᵀ + λI)⁻¹ turns D (A + λI) = B + λD⁰ into
 *     D = D⁰ + Rᵀ (K + λI)⁻¹ S,   R = Y − S D⁰ᵀ (the residual at D⁰),   K = SSᵀ (n × n).
 * The same solution, with an n × n system instead of I × I: at Mixtral's I = 14336 and ~700
 * routed rows per cluster, ~0.3 TFLOP of GEMMs in place of ~3 TFLOP of double Gram, Cholesky and
 * solve. K and its Cholesky and solve stay in double (λ is ~1e-3 of K's diagonal there); the two
 * H × I × n products (R and the update) are fp32 GEMMs (util/matmul: oneDNN at these sizes). */

/* Rᵀ (H × n) = Yᵀ − D Sᵀ for D (H × I) and *ss = ‖R‖², in panels of D's rows. */
static int dual_residual(const fit_ws *w, const float *D, float *Rt, double *ss, const sm_monitor *mon)
{
    const int64_t h = w->h, inter = w->inter, n = w->n_rows, panel = dual_rows(n, inter);
    double acc = 0;
    for (int64_t j0 = 0; j0 < h; j0 += panel) {
        const int64_t hb = h - j0 < panel ? h - j0 : panel;
        if (sm_monitor_check(mon) != 0)
            return -1;
        sm_gemm_f32(false, true, hb, n, inter, D + j0 * inter, inter, w->S, inter, 0.0f, Rt + j0 * n, n);
        for (int64_t q = j0 * n; q < (j0 + hb) * n; q++) {
            Rt[q] = w->Yt[q] - Rt[q];
            acc += (double)Rt[q] * Rt[q];
        }
    }
    *ss = acc;
    return 0;
}

/* K (n × n, upper, row-major: Cholesky's column-major lower) += S Sᵀ in double: columns of S
 * widened a panel at a time, K's rows in blocks between monitor checks. */
static int dual_gram(const fit_ws *w, double *K, double *panel, const sm_monitor *mon)
{
    const int64_t n = w->n_rows, inter = w->inter;
    for (int64_t j0 = 0; j0 < inter; j0 += DUAL_GRAM_COLS) {
        const int64_t cb = inter - j0 < DUAL_GRAM_COLS ? inter - j0 : DUAL_GRAM_COLS;
        for (int64_t t = 0; t < n; t++)
            for (int64_t q = 0; q < cb; q++)
                panel[t * cb + q] = w->S[t * inter + j0 + q];
        for (int64_t i0 = 0; i0 < n; i0 += FIT_ROWS) {
            const int64_t rb = n - i0 < FIT_ROWS ? n - i0 : FIT_ROWS;
            if (sm_monitor_check(mon) != 0)
                return -1;
            cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)rb, (int)(n - i0), (int)cb, 1.0,
                        panel + i0 * cb, (int)cb, panel + i0 * cb, (int)cb, 1.0, K + i0 * n + i0, (int)n);
        }
        sm_monitor_report(mon, 0.7 + 0.1 * (double)(j0 + cb) / (double)inter, "refit: Gram");
    }
    return 0;
}

/* D = D⁰ + Zᵀ S with Zᵀ = Rᵀ(K + λI)⁻¹, into Dn (H × I). Rt: Rᵀ at D⁰ (H × n). */
static int dual_update(const fit_ws *w, const sm_merged *down, double lambda, const float *Rt, float *Dn,
                       const sm_monitor *mon)
{
    const int64_t h = w->h, inter = w->inter, n = w->n_rows;
    double *K = sm_zalloc((size_t)(n * n), sizeof *K);
    double *panel = sm_alloc((size_t)(n * DUAL_GRAM_COLS), sizeof *panel);
    double *Zt = sm_alloc((size_t)(h * n), sizeof *Zt);
    float *Zf = sm_alloc_f32((size_t)(DUAL_PANEL * n));
    int rc = -1;
    if (!K || !panel || !Zt || !Zf || dual_gram(w, K, panel, mon) != 0)
        goto out;
    for (int64_t q = 0; q < n; q++)
        K[q * n + q] += lambda;
    if (chol_checked((int)n, K, mon) != 0)
        goto out;
    for (int64_t q = 0; q < h * n; q++)
        Zt[q] = Rt[q];
    const int nc_max = solve_cols(n);
    for (int64_t j0 = 0; j0 < h; j0 += nc_max) { /* Z's columns are Rᵀ's rows */
        const int nc = (int)(h - j0 < nc_max ? h - j0 : nc_max);
        if (sm_monitor_check(mon) != 0 || sm_chol_solve_f64((int)n, K, nc, Zt + j0 * n) != 0)
            goto out;
        sm_monitor_report(mon, 0.8 + 0.1 * (double)(j0 + nc) / (double)h, "refit: solve");
    }
    memcpy(Dn, down->w, sizeof(float) * (size_t)(h * inter));
    const int64_t rows = dual_rows(n, inter);
    for (int64_t j0 = 0; j0 < h; j0 += rows) {
        const int64_t hb = h - j0 < rows ? h - j0 : rows;
        if (sm_monitor_check(mon) != 0)
            goto out;
        for (int64_t q = 0; q < hb * n; q++)
            Zf[q] = (float)Zt[j0 * n + q];
        sm_gemm_f32(false, false, hb, inter, n, Zf, n, w->S, inter, 1.0f, Dn + j0 * inter, inter);
        sm_monitor_report(mon, 0.9 + 0.1 * (double)(j0 + hb) / (double)h, "refit: update");
    }
    rc = 0;
out:
    free(K), free(panel), free(Zt), free(Zf);
    return rc;
}

/* The dual solve of the accumulated rows, written into down->w when finite. */
static int solve_dual(fit_ws *w, sm_merged *down, double lambda, sm_refit_info *info, const sm_monitor *mon)
{
    const int64_t h = w->h, inter = w->inter;
    float *Rt = sm_alloc_f32((size_t)(h * w->n_rows)), *Dn = sm_alloc_f32((size_t)(h * inter));
    double ss = 0, norm = w->yy > 0 ? w->yy : 1.0;
    int rc = -1;
    if (!Rt || !Dn || dual_residual(w, down->w, Rt, &ss, mon) != 0)
        goto out;
    if (info)
        info->resid_before = info->resid_after = sqrt(ss / norm);
    if (w->fitted == 0 || !(lambda > 0)) { /* nothing to fit: D⁰ is the solution */
        rc = 0;
        goto out;
    }
    if (dual_update(w, down, lambda, Rt, Dn, mon) != 0)
        goto out;
    for (int64_t q = 0; q < h * inter; q++)
        if (!isfinite(Dn[q])) {
            rc = sm_err("the refitted down projection is not finite (row %lld): the activations overflow",
                        (long long)(q / inter));
            goto out;
        }
    if (info && dual_residual(w, Dn, Rt, &ss, mon) != 0)
        goto out;
    if (info)
        info->resid_after = sqrt(ss / norm);
    memcpy(down->w, Dn, sizeof(float) * (size_t)(h * inter));
    rc = 0;
out:
    free(Rt), free(Dn);
    return rc;
}

/* The primal solve of the accumulated A and B (with the residuals before and after for info). */
static int solve_primal(fit_ws *w, sm_merged *down, double lambda, sm_refit_info *info, const sm_monitor *mon)
{
    const int64_t h = w->h, inter = w->inter;
    double *A0 = NULL, *B0 = NULL; /* the unridged system, for the residuals */
    if (info) {
        A0 = sm_alloc((size_t)(inter * inter), sizeof(double)), B0 = sm_alloc((size_t)(h * inter), sizeof(double));
        if (!A0 || !B0) {
            free(A0), free(B0);
            return -1;
        }
        memcpy(A0, w->A, sizeof(double) * (size_t)(inter * inter)), memcpy(B0, w->B, sizeof(double) * (size_t)(h * inter));
        info->resid_before = info->resid_after = residual(w, A0, B0, down->w);
    }
    /* no routed rows, or all-zero activations: nothing to fit, D⁰ is the solution */
    int rc = w->fitted == 0 || !(lambda > 0) ? 0 : solve(w, down, lambda, mon);
    if (info && rc == 0)
        info->resid_after = residual(w, A0, B0, down->w);
    free(A0), free(B0);
    return rc;
}

static int64_t routed_rows(const sm_refit_routes *routes, const int *assign, int c)
{
    int64_t n = 0;
    for (int64_t t = 0; t < routes->m; t++)
        for (int j = 0; j < routes->k; j++)
            if (assign[routes->idx[t * routes->k + j]] == c) {
                n++;
                break;
            }
    return n;
}

int sm_refit_down(const sm_moe_block *src, const int *assign, int c, const sm_expert *merged, sm_merged *down,
                  const float *x, const sm_refit_routes *routes, double ridge, const sm_monitor *mon,
                  sm_refit_info *info)
{
    return sm_refit_down_solve(src, assign, c, merged, down, x, routes, ridge, SM_REFIT_SOLVE_AUTO, mon, info);
}

int sm_refit_down_solve(const sm_moe_block *src, const int *assign, int c, const sm_expert *merged, sm_merged *down,
                        const float *x, const sm_refit_routes *routes, double ridge, sm_refit_solve how,
                        const sm_monitor *mon, sm_refit_info *info)
{
    if (!down->w)
        return sm_err("refit: down needs a dense down projection, and submoe-whitened stored this one as two "
                      "factors (rank %lld); give the down projection rank: full or set refit: none",
                      (long long)down->rank);
    const int64_t h = src->hidden, inter = merged->gate.out;
    if (down->out != h || down->in != inter || merged->up.out != inter)
        return sm_err("refit: the merged expert's shapes do not match (down %lldx%lld, hidden %lld, inter %lld)",
                      (long long)down->out, (long long)down->in, (long long)h, (long long)inter);
    if (!x || !routes || routes->m <= 0)
        return sm_err("refit needs calibration inputs");
    int64_t dims[2] = {h, inter};
    if (sm_dense_fits_int(dims, 2, "refit") != 0)
        return -1;
    fit_ws w = {.src = src, .assign = assign, .c = c, .merged = merged, .x = x, .routes = routes, .h = h,
                .inter = inter};
    w.n_rows = routed_rows(routes, assign, c);
    w.batch = fit_batch(h, inter);
    w.dual = how == SM_REFIT_SOLVE_DUAL || (how == SM_REFIT_SOLVE_AUTO && w.n_rows < inter);
    const size_t R = FIT_ROWS;
    w.xs = sm_alloc_f32(R * (size_t)h), w.xg = sm_alloc_f32(R * (size_t)h), w.y = sm_alloc_f32(R * (size_t)h);
    w.yg = sm_alloc_f32(R * (size_t)h);
    w.g = sm_alloc_f32(R * (size_t)inter), w.u = sm_alloc_f32(R * (size_t)inter);
    w.tmp = sm_alloc_f32(R * (size_t)factor_cols(merged));
    w.hs = sm_alloc(R * (size_t)inter, sizeof(double)), w.yd = sm_alloc(R * (size_t)h, sizeof(double));
    if (w.dual) {
        w.S = sm_alloc_f32((size_t)(w.n_rows * inter) + 1), w.Yt = sm_alloc_f32((size_t)(h * w.n_rows) + 1);
    } else {
        w.A = sm_zalloc((size_t)(inter * inter), sizeof(double));
        w.B = sm_zalloc((size_t)(h * inter), sizeof(double));
    }
    int rc = -1;
    if (!w.xs || !w.xg || !w.y || !w.yg || !w.g || !w.u || !w.tmp || !w.hs || !w.yd ||
        (w.dual ? !w.S || !w.Yt : !w.A || !w.B) || accumulate(&w, mon) != 0)
        goto done;
    double trace = w.trace;
    for (int64_t q = 0; !w.dual && q < inter; q++)
        trace += w.A[q * inter + q];
    if (!isfinite(trace)) {
        rc = sm_err("refit: the Gram of the merged activations is not finite: they overflow float32");
        goto done;
    }
    const double lambda = (ridge > 0 ? ridge : SM_REFIT_RIDGE_DEFAULT) * trace / (double)inter;
    if (info)
        info->rows = w.fitted, info->lambda = lambda, info->dual = w.dual;
    rc = w.dual ? solve_dual(&w, down, lambda, info, mon) : solve_primal(&w, down, lambda, info, mon);
    sm_monitor_report(mon, 1.0, "refit");
done:
    ws_free(&w);
    return rc;
}

int sm_refit_merged(const sm_moe_block *src, const int *assign, int c, const sm_matset *members, sm_merged mats[3],
                    sm_expert *e, const float *x, const sm_refit_routes *routes, double ridge,
                    const sm_monitor *mon)
{
    bool exact = members->n == 1;
    for (int j = 0; exact && j < 3; j++)
        exact = mats[j].member_err && mats[j].member_err[0] == 0.0;
    if (exact)
        return 1;
    if (sm_refit_down(src, assign, c, e, &mats[2], x, routes, ridge, mon, NULL) != 0 ||
        sm_member_errors(members, mats[2].w, mats[2].member_err) != 0)
        return -1;
    e->down.w = mats[2].w;
    return 0;
}
