#include "engine/similarity.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "util/diag.h"
#include "util/matmul.h"
#include "util/mem.h"

/* Scratch budget for a block of normalised rows (floats). */
#define BLOCK_FLOATS (16 * 1024 * 1024)

int sm_outputs_check(const sm_outputs *o)
{
    if (!o || o->n <= 0 || o->m <= 0 || o->hidden <= 0 || !o->y)
        return sm_err("no expert outputs");
    if (o->hidden > (1 << 30))
        return sm_err("hidden size %lld too large", (long long)o->hidden);
    return 0;
}

/* Tokens per block so that `rows` normalised rows of the block fit the budget. */
static int64_t block_tokens(const sm_outputs *o, int64_t rows)
{
    int64_t t = BLOCK_FLOATS / (rows * o->hidden);
    if (t < 1)
        t = 1;
    return t > o->m ? o->m : t;
}

/* Scale v (len) to unit length; zero stays zero. */
static void normalise(float *v, int64_t len)
{
    double ss = 0.0;
    for (int64_t k = 0; k < len; k++)
        ss += (double)v[k] * v[k];
    if (ss > 0.0) {
        float inv = (float)(1.0 / sqrt(ss));
        for (int64_t k = 0; k < len; k++)
            v[k] *= inv;
    }
}

/* yb (n × tb·H): normalised rows Y_i(t0..t0+tb) laid out per expert. */
static void gather_normalised(const sm_outputs *o, int64_t t0, int64_t tb, float *yb)
{
    const int64_t h = o->hidden, ld = tb * h;
    for (int i = 0; i < o->n; i++)
        for (int64_t t = 0; t < tb; t++) {
            float *dst = yb + i * ld + t * h;
            memcpy(dst, o->y + ((int64_t)i * o->m + t0 + t) * h, (size_t)h * sizeof(float));
            normalise(dst, h);
        }
}

float *sm_outputs_normalise(const sm_outputs *o, size_t max_bytes)
{
    if (sm_outputs_check(o) != 0) {
        sm_err_clear();
        return NULL;
    }
    const size_t len = (size_t)o->n * (size_t)o->m * (size_t)o->hidden;
    if (len > max_bytes / sizeof(float))
        return NULL;
    float *yn = malloc(len * sizeof(float));
    if (!yn)
        return NULL;
    memcpy(yn, o->y, len * sizeof(float));
    for (size_t r = 0; r < (size_t)o->n * (size_t)o->m; r++)
        normalise(yn + r * (size_t)o->hidden, o->hidden); /* as gather_normalised does per block */
    return yn;
}

double *sm_outputs_gram(const sm_outputs *o, const sm_monitor *mon)
{
    if (sm_outputs_check(o) != 0)
        return NULL;
    const int n = o->n;
    const int64_t h = o->hidden, nn = (int64_t)n * n;
    double *g = sm_alloc((size_t)(o->m * nn), sizeof(double));
    float *p = sm_alloc_f32((size_t)nn);
    if (!g || !p) {
        free(g), free(p);
        return NULL;
    }
    for (int64_t t = 0; t < o->m; t++) {
        if (sm_monitor_check(mon) != 0) {
            free(g), free(p);
            return NULL;
        }
        /* the n rows Y_i(t) lie m·h floats apart */
        cblas_ssyrk(CblasRowMajor, CblasUpper, CblasNoTrans, n, (int)h, 1.0f, o->y + t * h, (int)(o->m * h), 0.0f,
                    p, n);
        double *gt = g + t * nn;
        for (int i = 0; i < n; i++)
            for (int j = i; j < n; j++)
                gt[i * n + j] = gt[j * n + i] = p[i * n + j];
        sm_monitor_report(mon, (double)(t + 1) / (double)o->m, "output Grams");
    }
    free(p);
    return g;
}

/* sm_outputs_centroid_cos from the per-token Grams: with S_c(t) = Σ_{j∈c} Y_j(t) (the mean's
 * 1/|c| cancels), cos(Y_i, S_c) = Σ_{j∈c} G_ij / sqrt(G_ii · Σ_{j,l∈c} G_jl); a zero vector has
 * cosine 0, as the row path's normalisation leaves it zero. */
static int centroid_cos_gram(const sm_outputs *o, const int *assign, int k, bool own_only, const sm_monitor *mon,
                             double *acc)
{
    const int n = o->n;
    const int64_t nn = (int64_t)n * n;
    double *pc = sm_alloc((size_t)n * k, sizeof(double)), *sc = sm_alloc((size_t)k, sizeof(double));
    if (!pc || !sc) {
        free(pc), free(sc);
        return -1;
    }
    memset(acc, 0, sizeof(double) * (size_t)n * k);
    for (int64_t t = 0; t < o->m; t++) {
        if ((t & 63) == 0 && sm_monitor_check(mon) != 0) {
            free(pc), free(sc);
            return -1;
        }
        const double *gt = o->gram + t * nn;
        memset(pc, 0, sizeof(double) * (size_t)n * k);
        memset(sc, 0, sizeof(double) * (size_t)k);
        for (int i = 0; i < n; i++)
            for (int j = 0; j < n; j++)
                pc[i * k + assign[j]] += gt[i * n + j]; /* <Y_i, S_c> */
        for (int j = 0; j < n; j++)
            sc[assign[j]] += pc[j * k + assign[j]]; /* |S_c|² */
        for (int i = 0; i < n; i++)
            for (int c = 0; c < k; c++) {
                double d = gt[i * n + i] * sc[c];
                acc[i * k + c] += d > 0.0 ? pc[i * k + c] / sqrt(d) : 0.0;
            }
    }
    for (int64_t e = 0; e < (int64_t)n * k; e++)
        acc[e] = own_only && assign[e / k] != e % k ? 0.0 : acc[e] / (double)o->m;
    sm_monitor_report(mon, 1.0, "centroid similarity");
    free(pc), free(sc);
    return 0;
}

int sm_similarity_output(const sm_outputs *o, const sm_monitor *mon, double *s)
{
    if (sm_outputs_check(o) != 0)
        return -1;
    const int n = o->n;
    const int64_t tb_max = block_tokens(o, n);
    float *yb = sm_alloc_f32((size_t)(n * tb_max * o->hidden));
    float *p = sm_alloc_f32((size_t)n * n);
    if (!yb || !p) {
        free(yb);
        free(p);
        return -1;
    }
    memset(s, 0, sizeof(double) * (size_t)n * n);
    for (int64_t t0 = 0; t0 < o->m; t0 += tb_max) {
        if (sm_monitor_check(mon) != 0) {
            free(yb);
            free(p);
            return -1;
        }
        int64_t tb = o->m - t0 < tb_max ? o->m - t0 : tb_max;
        gather_normalised(o, t0, tb, yb);
        /* Σ over the block's tokens of cos = dot of the concatenated normalised rows. */
        cblas_ssyrk(CblasRowMajor, CblasUpper, CblasNoTrans, n, (int)(tb * o->hidden), 1.0f, yb,
                    (int)(tb * o->hidden), 0.0f, p, n);
        for (int i = 0; i < n; i++)
            for (int j = i; j < n; j++)
                s[i * n + j] += p[i * n + j];
        sm_monitor_report(mon, (double)(t0 + tb) / o->m, "output similarity");
    }
    for (int i = 0; i < n; i++)
        for (int j = i; j < n; j++)
            s[j * n + i] = s[i * n + j] /= (double)o->m;
    free(yb);
    free(p);
    return 0;
}

int sm_similarity_weight(const sm_flat_experts *e, const sm_monitor *mon, double *s)
{
    if (!e || e->n <= 0 || e->n_seg <= 0 || e->n_seg > 4)
        return sm_err("no expert weights");
    const int n = e->n;
    int64_t total = 0;
    for (int g = 0; g < e->n_seg; g++) {
        if (e->len[g] <= 0 || (!e->seg[g] && !e->seg16[g]))
            return sm_err("weight segment %d is empty", g);
        for (int i = 0; i < n; i++)
            if (!(e->seg[g] && e->seg[g][i]) && !(e->seg16[g] && e->seg16[g][i]))
                return sm_err("expert %d has no weight segment %d", i, g);
        total += e->len[g];
    }
    const int64_t chunk = BLOCK_FLOATS / n > 1024 ? BLOCK_FLOATS / n : 1024;
    /* Every segment in bf16 (a layer loaded for bf16 products): the chunk's Gram in bf16 through
     * util/matmul (AMX or AVX512-BF16: the products of bf16 values are exact and accumulate in
     * fp32, as ssyrk's do), its rows copied as stored instead of widened to fp32. */
    bool b16 = true;
    for (int g = 0; g < e->n_seg; g++)
        for (int i = 0; i < n; i++)
            b16 &= !(e->seg[g] && e->seg[g][i]);
    float *buf = b16 ? NULL : sm_alloc_f32((size_t)(n * chunk)), *p = sm_alloc_f32((size_t)n * n);
    uint16_t *buf16 = b16 ? sm_zalloc_lines((size_t)(sm_matmul_bf16_rows(n) * chunk), sizeof *buf16) : NULL;
    double *acc = sm_zalloc((size_t)n * n, sizeof(double));
    if ((!buf && !buf16) || !p || !acc) {
        free(buf), free(buf16), free(p), free(acc);
        return -1;
    }
    int64_t done = 0;
    for (int g = 0; g < e->n_seg; g++)
        for (int64_t c0 = 0; c0 < e->len[g]; c0 += chunk) {
            if (sm_monitor_check(mon) != 0) {
                free(buf), free(buf16), free(p), free(acc);
                return -1;
            }
            int64_t cl = e->len[g] - c0 < chunk ? e->len[g] - c0 : chunk;
            if (b16) {
                for (int i = 0; i < n; i++)
                    memcpy(buf16 + i * cl, e->seg16[g][i] + c0, (size_t)cl * sizeof *buf16);
                sm_matmul_bf16(n, n, cl, buf16, buf16, 0.0f, p); /* (both triangles) */
            } else {
                for (int i = 0; i < n; i++)
                    if (e->seg[g] && e->seg[g][i])
                        memcpy(buf + i * cl, e->seg[g][i] + c0, (size_t)cl * sizeof(float));
                    else
                        sm_bf16_unpack(buf + i * cl, e->seg16[g][i] + c0, (size_t)cl);
                cblas_ssyrk(CblasRowMajor, CblasUpper, CblasNoTrans, n, (int)cl, 1.0f, buf, (int)cl, 0.0f, p, n);
            }
            for (int i = 0; i < n; i++)
                for (int j = i; j < n; j++)
                    acc[i * n + j] += p[i * n + j];
            done += cl;
            sm_monitor_report(mon, (double)done / total, "weight similarity");
        }
    for (int i = 0; i < n; i++)
        for (int j = i; j < n; j++) {
            double d = acc[i * n + i] * acc[j * n + j];
            double v = i == j ? (acc[i * n + i] > 0.0 ? 1.0 : 0.0)
                              : d > 0.0 ? acc[i * n + j] / sqrt(d) : 0.0;
            s[i * n + j] = s[j * n + i] = v;
        }
    free(buf), free(buf16), free(p), free(acc);
    return 0;
}

int sm_similarity_logit(const float *z, int64_t m, int n, double *s)
{
    if (!z || m <= 0 || n <= 0)
        return sm_err("no router logits");
    double *mean = sm_zalloc((size_t)n, sizeof(double));
    double *acc = sm_zalloc((size_t)n * n, sizeof(double));
    const int64_t tb_max = 4096;
    float *blk = sm_alloc_f32((size_t)(tb_max * n)), *p = sm_alloc_f32((size_t)n * n);
    if (!mean || !acc || !blk || !p) {
        free(mean), free(acc), free(blk), free(p);
        return -1;
    }
    for (int64_t t = 0; t < m; t++)
        for (int i = 0; i < n; i++)
            mean[i] += z[t * n + i];
    for (int i = 0; i < n; i++)
        mean[i] /= (double)m;
    for (int64_t t0 = 0; t0 < m; t0 += tb_max) {
        int64_t tb = m - t0 < tb_max ? m - t0 : tb_max;
        for (int64_t t = 0; t < tb; t++)
            for (int i = 0; i < n; i++)
                blk[t * n + i] = (float)(z[(t0 + t) * n + i] - mean[i]);
        cblas_ssyrk(CblasRowMajor, CblasUpper, CblasTrans, n, (int)tb, 1.0f, blk, n, 0.0f, p, n);
        for (int i = 0; i < n; i++)
            for (int j = i; j < n; j++)
                acc[i * n + j] += p[i * n + j];
    }
    for (int i = 0; i < n; i++)
        for (int j = i; j < n; j++) {
            double d = acc[i * n + i] * acc[j * n + j];
            double v = i == j ? 1.0 : d > 0.0 ? acc[i * n + j] / sqrt(d) : 0.0;
            s[i * n + j] = s[j * n + i] = v;
        }
    free(mean), free(acc), free(blk), free(p);
    return 0;
}

int sm_outputs_centroid_cos(const sm_outputs *o, const int *assign, int k, bool own_only,
                            const sm_monitor *mon, double *acc)
{
    if (sm_outputs_check(o) != 0)
        return -1;
    if (k < 1 || k > o->n)
        return sm_err("%d clusters for %d experts", k, o->n);
    for (int i = 0; i < o->n; i++)
        if (assign[i] < 0 || assign[i] >= k)
            return sm_err("expert %d assigned to cluster %d of %d", i, assign[i], k);
    if (o->gram)
        return centroid_cos_gram(o, assign, k, own_only, mon, acc);
    const int n = o->n;
    const int64_t h = o->hidden, tb_max = block_tokens(o, n + k);
    /* normalised rows: read in place from o->yn (expert i's block rows are contiguous there, the
     * experts m·h apart), else gathered per block */
    float *yb = o->yn ? NULL : sm_alloc_f32((size_t)(n * tb_max * h));
    float *cb = sm_alloc_f32((size_t)(k * tb_max * h)), *p = sm_alloc_f32((size_t)n * k);
    if ((!yb && !o->yn) || !cb || !p) {
        free(yb), free(cb), free(p);
        return -1;
    }
    memset(acc, 0, sizeof(double) * (size_t)n * k);
    for (int64_t t0 = 0; t0 < o->m; t0 += tb_max) {
        if (sm_monitor_check(mon) != 0) {
            free(yb), free(cb), free(p);
            return -1;
        }
        const int64_t tb = o->m - t0 < tb_max ? o->m - t0 : tb_max, ld = tb * h;
        /* Centroid rows: sums of the members' raw outputs (the mean's 1/|c| cancels in cos). */
        memset(cb, 0, sizeof(float) * (size_t)(k * ld));
        for (int i = 0; i < n; i++)
            cblas_saxpy((int)ld, 1.0f, o->y + ((int64_t)i * o->m + t0) * h, 1,
                        cb + assign[i] * ld, 1);
        for (int c = 0; c < k; c++)
            for (int64_t t = 0; t < tb; t++)
                normalise(cb + c * ld + t * h, h);
        const float *ya = o->yn ? o->yn + t0 * h : yb;
        const int64_t lda = o->yn ? o->m * h : ld;
        if (!o->yn)
            gather_normalised(o, t0, tb, yb);
        if (own_only) {
            for (int i = 0; i < n; i++)
                acc[i * k + assign[i]] +=
                    cblas_sdot((int)ld, ya + i * lda, 1, cb + assign[i] * ld, 1);
        } else {
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, k, (int)ld, 1.0f, ya, (int)lda,
                        cb, (int)ld, 0.0f, p, k);
            for (int64_t e = 0; e < (int64_t)n * k; e++)
                acc[e] += p[e];
        }
        sm_monitor_report(mon, (double)(t0 + tb) / o->m, "centroid similarity");
    }
    for (int64_t e = 0; e < (int64_t)n * k; e++)
        acc[e] /= (double)o->m;
    free(yb), free(cb), free(p);
    return 0;
}
