#include "engine/router.h"

#include <cblas.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "engine/dense.h"
#include "util/diag.h"
#include "util/mem.h"

/* Tokens per accumulation block of the least-squares fit. */
#define FIT_BLOCK 1024

static const char *const mode_names[SM_ROUTER_MODE_COUNT] = {"remap", "collapse-lstsq", "collapse-mean",
                                                              "collapse-kl"};

const char *sm_router_mode_name(sm_router_mode m)
{
    return (unsigned)m < SM_ROUTER_MODE_COUNT ? mode_names[m] : "?";
}

int sm_router_mode_parse(const char *name, sm_router_mode *out)
{
    for (int m = 0; m < SM_ROUTER_MODE_COUNT; m++)
        if (name && strcmp(name, mode_names[m]) == 0) {
            *out = (sm_router_mode)m;
            return 0;
        }
    return sm_err("unknown router mode '%s' (expected remap, collapse-lstsq, collapse-mean or collapse-kl)",
                  name ? name : "");
}

int sm_router_check_partition(const int *cluster_of, int n, int k)
{
    if (n <= 0 || k < 1 || k > n)
        return sm_err("%d clusters of %d experts", k, n);
    int *seen = sm_zalloc((size_t)k, sizeof(int));
    if (!seen)
        return -1;
    for (int i = 0; i < n; i++) {
        if (cluster_of[i] < 0 || cluster_of[i] >= k) {
            free(seen);
            return sm_err("expert %d is in cluster %d of %d", i, cluster_of[i], k);
        }
        seen[cluster_of[i]]++;
    }
    for (int c = 0; c < k; c++)
        if (!seen[c]) {
            free(seen);
            return sm_err("cluster %d has no members", c);
        }
    free(seen);
    return 0;
}

int sm_router_remap(const int *cluster_of, int n, int k, int *map)
{
    if (sm_router_check_partition(cluster_of, n, k) != 0)
        return -1;
    memcpy(map, cluster_of, sizeof(int) * (size_t)n);
    return 0;
}

int sm_router_collapse_mean(const float *router, int n, int64_t hidden, const int *cluster_of,
                            int k, const double *freq, float *rows)
{
    if (sm_router_check_partition(cluster_of, n, k) != 0)
        return -1;
    double *fsum = sm_zalloc((size_t)k, sizeof(double));
    int *count = sm_zalloc((size_t)k, sizeof(int));
    double *acc = sm_zalloc((size_t)(k * hidden), sizeof(double));
    if (!fsum || !count || !acc) {
        free(fsum), free(count), free(acc);
        return -1;
    }
    for (int i = 0; i < n; i++) {
        if (freq && (!(freq[i] >= 0.0) || isinf(freq[i]))) {
            free(fsum), free(count), free(acc);
            return sm_err("frequency of expert %d is %g", i, freq[i]);
        }
        fsum[cluster_of[i]] += freq ? freq[i] : 0.0;
        count[cluster_of[i]]++;
    }
    for (int i = 0; i < n; i++) {
        int c = cluster_of[i];
        double wi = fsum[c] > 0.0 ? freq[i] / fsum[c] : 1.0 / count[c];
        for (int64_t h = 0; h < hidden; h++)
            acc[c * hidden + h] += wi * router[i * hidden + h];
    }
    for (int64_t e = 0; e < k * hidden; e++)
        rows[e] = (float)acc[e];
    free(fsum), free(count), free(acc);
    return 0;
}

struct sm_router_fit {
    const float *router;
    int n, k;
    int64_t hidden, tokens;
    int *cluster_of;
    double *xtx; /* hidden × hidden, upper triangle (row-major) */
    double *xty; /* k × hidden: Σ_t lse_c(t) x_t */
    float *gblk, *yblk, *zblk, *bblk;
    double *lse; /* k */
};

void sm_router_fit_free(sm_router_fit *f)
{
    if (!f)
        return;
    free(f->cluster_of), free(f->xtx), free(f->xty);
    free(f->gblk), free(f->yblk), free(f->zblk), free(f->bblk), free(f->lse);
    free(f);
}

sm_router_fit *sm_router_fit_new(const float *router, int n, int64_t hidden,
                                 const int *cluster_of, int k)
{
    if (!router || hidden <= 0 || hidden > INT_MAX / 2) {
        sm_err("router fit: invalid router");
        return NULL;
    }
    if (sm_router_check_partition(cluster_of, n, k) != 0)
        return NULL;
    sm_router_fit *f = sm_zalloc(1, sizeof *f);
    if (!f)
        return NULL;
    f->router = router;
    f->n = n;
    f->k = k;
    f->hidden = hidden;
    f->cluster_of = sm_alloc((size_t)n, sizeof(int));
    f->xtx = sm_zalloc((size_t)(hidden * hidden), sizeof(double));
    f->xty = sm_zalloc((size_t)(k * hidden), sizeof(double));
    f->gblk = sm_alloc_f32((size_t)(hidden * hidden));
    f->yblk = sm_alloc_f32((size_t)FIT_BLOCK * k);
    f->zblk = sm_alloc_f32((size_t)FIT_BLOCK * n);
    f->bblk = sm_alloc_f32((size_t)(k * hidden));
    f->lse = sm_alloc((size_t)k, sizeof(double));
    if (!f->cluster_of || !f->xtx || !f->xty || !f->gblk || !f->yblk || !f->zblk || !f->bblk ||
        !f->lse) {
        sm_router_fit_free(f);
        return NULL;
    }
    memcpy(f->cluster_of, cluster_of, sizeof(int) * (size_t)n);
    return f;
}

int sm_router_fit_add(sm_router_fit *f, const float *x, int64_t m)
{
    const int64_t h = f->hidden;
    const int n = f->n, k = f->k;
    for (int64_t t0 = 0; t0 < m; t0 += FIT_BLOCK) {
        const int mb = (int)(m - t0 < FIT_BLOCK ? m - t0 : FIT_BLOCK);
        const float *xb = x + t0 * h;
        /* Targets: lse over each cluster's member logits, in double. */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, mb, n, (int)h, 1.0f, xb, (int)h,
                    f->router, (int)h, 0.0f, f->zblk, n);
        for (int t = 0; t < mb; t++) {
            const float *z = f->zblk + (int64_t)t * n;
            double *lse = f->lse, centre = 0.0;
            for (int c = 0; c < k; c++) {
                double mx = -INFINITY, s = 0.0;
                for (int i = 0; i < n; i++)
                    if (f->cluster_of[i] == c && z[i] > mx)
                        mx = z[i];
                for (int i = 0; i < n; i++)
                    if (f->cluster_of[i] == c)
                        s += exp(z[i] - mx);
                lse[c] = mx + log(s);
                centre += lse[c] / k;
            }
            /* Softmax ignores a per-token shift, so fit the targets centred across clusters. */
            for (int c = 0; c < k; c++)
                f->yblk[(int64_t)t * k + c] = (float)(lse[c] - centre);
        }
        /* Block products in single precision, accumulated in double. */
        cblas_ssyrk(CblasRowMajor, CblasUpper, CblasTrans, (int)h, mb, 1.0f, xb, (int)h, 0.0f,
                    f->gblk, (int)h);
        for (int64_t i = 0; i < h; i++)
            for (int64_t j = i; j < h; j++)
                f->xtx[i * h + j] += f->gblk[i * h + j];
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, k, (int)h, mb, 1.0f, f->yblk, k, xb,
                    (int)h, 0.0f, f->bblk, (int)h);
        for (int64_t e = 0; e < k * h; e++)
            f->xty[e] += f->bblk[e];
        f->tokens += mb;
    }
    return 0;
}

int sm_router_fit_solve(sm_router_fit *f, const double *freq, double ridge, float *rows)
{
    const int64_t h = f->hidden;
    const int k = f->k;
    if (ridge <= 0.0)
        ridge = SM_ROUTER_RIDGE_DEFAULT;
    float *mean = sm_alloc_f32((size_t)(k * h));
    double *a = sm_alloc((size_t)(h * h), sizeof(double));
    double *b = sm_alloc((size_t)(k * h), sizeof(double));
    double *centre = sm_alloc((size_t)h, sizeof(double));
    int rc = -1;
    if (!mean || !a || !b || !centre)
        goto done;
    if (sm_router_collapse_mean(f->router, f->n, h, f->cluster_of, k, freq, mean) != 0)
        goto done;
    double tr = 0.0;
    for (int64_t i = 0; i < h; i++)
        tr += f->xtx[i * h + i];
    const double lambda = ridge * (tr > 0.0 ? tr / (double)h : 1.0);
    /* Row-major upper = column-major lower, which is what sm_chol_f64 reads. */
    memcpy(a, f->xtx, sizeof(double) * (size_t)(h * h));
    for (int64_t i = 0; i < h; i++)
        a[i * h + i] += lambda;
    /* Centred problem (see the header): rows = u_c + m̄ with m̄ the mean of the collapse-mean
     * rows and u_c the ridge fit of the centred targets toward w̄_c − m̄. Right-hand side
     * column c (contiguous) = Xᵀ (lse_c − mean lse) + λ (w̄_c − m̄). */
    for (int64_t j = 0; j < h; j++) {
        double mbar = 0.0;
        for (int c = 0; c < k; c++)
            mbar += mean[c * h + j];
        centre[j] = mbar / k;
    }
    for (int c = 0; c < k; c++)
        for (int64_t j = 0; j < h; j++)
            b[c * h + j] = f->xty[c * h + j] + lambda * (mean[c * h + j] - centre[j]);
    if (sm_chol_f64((int)h, a) != 0 || sm_chol_solve_f64((int)h, a, k, b) != 0) {
        sm_err_prefix("router least squares");
        goto done;
    }
    for (int c = 0; c < k; c++)
        for (int64_t j = 0; j < h; j++)
            rows[c * h + j] = (float)(b[c * h + j] + centre[j]);
    rc = 0;
done:
    free(mean), free(a), free(b), free(centre);
    return rc;
}

int sm_router_collapse_lstsq(const float *router, int n, int64_t hidden, const int *cluster_of,
                             int k, const double *freq, const float *x, int64_t m, double ridge,
                             float *rows)
{
    sm_router_fit *f = sm_router_fit_new(router, n, hidden, cluster_of, k);
    if (!f)
        return -1;
    int rc = sm_router_fit_add(f, x, m);
    if (rc == 0)
        rc = sm_router_fit_solve(f, freq, ridge, rows);
    sm_router_fit_free(f);
    return rc;
}

int sm_router_prune(const float *router, int n, int64_t hidden, const int *keep, int k,
                    float *rows)
{
    if (k < 1 || k > n)
        return sm_err("cannot keep %d of %d router rows", k, n);
    for (int j = 0; j < k; j++) {
        if (keep[j] < 0 || keep[j] >= n || (j > 0 && keep[j] <= keep[j - 1]))
            return sm_err("kept experts must be distinct, ascending and in [0, %d)", n);
        memcpy(rows + j * hidden, router + (int64_t)keep[j] * hidden,
               sizeof(float) * (size_t)hidden);
    }
    return 0;
}
