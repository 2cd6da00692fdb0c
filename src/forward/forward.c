/* forward: layer-at-a-time forward pass, fp32 or bf16 products (see forward.h). */
#include "forward/forward.h"
#include "moe/moe.h"
#include "forward/moelayer.h"
#include "forward/split.h"
#include "moe/route.h"
#include "util/diag.h"
#include "util/activation.h"
#include "util/mem.h"
#include "util/vectorize.h"

#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void sm_forward_opts_init(sm_forward_opts *o)
{
    memset(o, 0, sizeof *o);
    o->stop_after_layer = -1;
}

/* The sum of squares in eight double lanes, added in a fixed order (so it vectorizes, and gives
 * the same bits in every clone): one running sum was a chain of dependent adds, 4% of an eval's
 * time at OLMoE's shape (four norms of 2048 values per token and layer). */
SM_VECTORIZED void sm_rmsnorm(float *y, const float *x, const float *w, int n, float eps)
{
    double lane[8] = {0}, ss = 0;
    int i = 0;
    for (; i + 8 <= n; i += 8)
        for (int j = 0; j < 8; j++)
            lane[j] += (double)x[i + j] * x[i + j];
    for (int j = 0; j < 8; j++)
        ss += lane[j];
    for (; i < n; i++)
        ss += (double)x[i] * x[i];
    float r = (float)(1.0 / sqrt(ss / n + eps));
    for (i = 0; i < n; i++)
        y[i] = w[i] * (x[i] * r);
}

double *sm_rope_table(int T, int head_dim, double theta, int pos0)
{
    int half = head_dim / 2;
    double *cs = sm_alloc((size_t)T * (size_t)half * 2, sizeof *cs);
    if (!cs)
        return NULL;
    for (int t = 0; t < T; t++) {
        double pos = pos0 + t;
        for (int i = 0; i < half; i++) {
            /* HF: inv_freq = 1 / theta^(2i/d), computed in float32 */
            float inv = (float)(1.0 / pow(theta, (double)(2 * i) / head_dim));
            double a = pos * inv;
            cs[((size_t)t * half + i) * 2] = cos(a);
            cs[((size_t)t * half + i) * 2 + 1] = sin(a);
        }
    }
    return cs;
}

void sm_rope_apply(float *x, int T, int n_heads, int head_dim, const double *cs)
{
    int half = head_dim / 2;
    for (int t = 0; t < T; t++) {
        const double *ct = cs + (size_t)t * half * 2;
        float *row = x + (size_t)t * n_heads * head_dim;
        for (int h = 0; h < n_heads; h++) {
            float *v = row + (size_t)h * head_dim;
            for (int i = 0; i < half; i++) {
                double c = ct[2 * i], s = ct[2 * i + 1];
                double a = v[i], b = v[i + half];
                v[i] = (float)(a * c - b * s);
                v[i + half] = (float)(b * c + a * s);
            }
        }
    }
}

void sm_rope(float *x, int T, int n_heads, int head_dim, double theta, int pos0)
{
    double *cs = sm_rope_table(T, head_dim, theta, pos0);
    if (!cs)
        sm_die("out of memory (rope table)");
    sm_rope_apply(x, T, n_heads, head_dim, cs);
    free(cs);
}

/* ---- one layer's fp32 weights ---- */

/* In bf16, the matrices (projections, dense MLP, experts) are held in bf16 only (the *16
 * pointers; the fp32 ones are NULL), vectors (norms, biases) stay fp32. A matrix stored in bf16
 * is read where the file is mapped (its view in mapped[], released with the layer), else copied. */
#define LAYER_MATRICES 7
typedef struct {
    float *attn_norm, *wq, *wk, *wv, *wo, *bq, *bk, *bv, *qn, *kn, *ffn_norm;
    uint16_t *wq16, *wk16, *wv16, *wo16, *dg16, *du16, *dd16;
    sm_weight mapped[LAYER_MATRICES];
    int n_mapped;
    sm_moe_layer moe;          /* the model's MoE layer (unless overridden) */
    sm_moe_bf16 moe16;         /* the block in bf16 */
    const sm_moe_block *block; /* the MoE block this layer runs, or NULL (dense layer) */
    float *dg, *du, *dd;
    int nid;
} layer_w;

static float *load(const sm_model *m, sm_wrole role, int layer, int index, int64_t *rows)
{
    sm_weight w;
    if (sm_model_weight(m, role, layer, index, &w))
        return NULL;
    float *p = sm_alloc_f32((size_t)(w.rows * w.cols));
    if (!p)
        return NULL;
    if (sm_weight_to_f32(&w, p)) {
        free(p);
        return NULL;
    }
    if (rows)
        *rows = w.rows;
    return p;
}

/* A matrix in bf16: where it is mapped when stored in bf16 and finite (no copy: converting the
 * attention's four matrices was serial work before every layer's threads start), else converted
 * straight to bf16 in panels of rows (no fp32 copy of the whole matrix; a value that is not
 * finite is named by the conversion). */
static uint16_t *load16(const sm_model *m, sm_wrole role, int layer, int index, int64_t *rows, layer_w *lw)
{
    sm_weight w;
    if (sm_model_weight(m, role, layer, index, &w))
        return NULL;
    const uint16_t *at = sm_weight_bf16(&w);
    const size_t count = (size_t)(w.rows * w.cols);
    if (at && lw->n_mapped < LAYER_MATRICES && sm_first_nonfinite(SM_DT_BF16, at, count) == count) {
        lw->mapped[lw->n_mapped++] = w;
        if (rows)
            *rows = w.rows;
        return (uint16_t *)at; /* (read only: free_layer knows it is mapped) */
    }
    uint16_t *p = sm_alloc(count, sizeof *p);
    int64_t panel = w.cols > 0 && w.cols < 65536 ? 65536 / w.cols + 1 : 1;
    float *f = p ? sm_alloc_f32((size_t)(panel * w.cols)) : NULL;
    if (!p || !f) {
        free(p), free(f);
        return NULL;
    }
    for (int64_t r = 0; r < w.rows; r += panel) {
        int64_t nr = w.rows - r < panel ? w.rows - r : panel;
        if (sm_weight_rows_to_f32(&w, r, nr, f)) {
            free(p), free(f);
            return NULL;
        }
        sm_bf16_pack(p + r * w.cols, f, (size_t)(nr * w.cols));
    }
    free(f);
    if (rows)
        *rows = w.rows;
    return p;
}

/* A bf16 matrix from load16: freed, unless it is a view of the mapped file. */
static void free16(uint16_t *p, const layer_w *lw)
{
    for (int j = 0; j < lw->n_mapped; j++)
        if (p == sm_weight_bf16(&lw->mapped[j]))
            return;
    free(p);
}

/* The mapped matrices' pages: dropped from this process. */
static void release_mapped(layer_w *lw)
{
    for (int j = 0; j < lw->n_mapped; j++)
        sm_weight_release(&lw->mapped[j]);
    lw->n_mapped = 0;
}

static void free_layer(layer_w *w)
{
    float **all[] = {&w->attn_norm, &w->wq, &w->wk, &w->wv, &w->wo, &w->bq, &w->bk, &w->bv, &w->qn, &w->kn,
                     &w->ffn_norm, &w->dg, &w->du, &w->dd};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) {
        free(*all[i]);
        *all[i] = NULL;
    }
    uint16_t **all16[] = {&w->wq16, &w->wk16, &w->wv16, &w->wo16, &w->dg16, &w->du16, &w->dd16};
    for (size_t i = 0; i < sizeof all16 / sizeof all16[0]; i++) {
        free16(*all16[i], w);
        *all16[i] = NULL;
    }
    release_mapped(w);
    sm_moe_bf16_free(&w->moe16);
    sm_moe_layer_free(&w->moe);
    memset(w, 0, sizeof *w);
}

static int load_layer(const sm_model *m, int l, const sm_forward_opts *o, layer_w *w)
{
    const sm_config *c = sm_model_config(m);
    const bool bf16 = o->precision == SM_PRECISION_BF16;
    memset(w, 0, sizeof *w);
#define LD(dst, role, idx, rows)                        \
    do {                                                \
        if (!((dst) = load(m, (role), l, (idx), (rows)))) \
            goto fail;                                  \
    } while (0)
    /* a matrix: fp32 into dst, or bf16 into dst##16 */
#define LDM(dst, role, idx, rows)                                   \
    do {                                                            \
        if (bf16 ? !(dst##16 = load16(m, (role), l, (idx), (rows), w)) \
                 : !((dst) = load(m, (role), l, (idx), (rows))))   \
            goto fail;                                              \
    } while (0)
    LD(w->attn_norm, SM_W_ATTN_NORM, 0, NULL);
    LDM(w->wq, SM_W_Q, 0, NULL);
    LDM(w->wk, SM_W_K, 0, NULL);
    LDM(w->wv, SM_W_V, 0, NULL);
    LDM(w->wo, SM_W_O, 0, NULL);
    if (c->qkv_bias) {
        LD(w->bq, SM_W_Q_BIAS, 0, NULL);
        LD(w->bk, SM_W_K_BIAS, 0, NULL);
        LD(w->bv, SM_W_V_BIAS, 0, NULL);
    }
    if (c->qk_norm != SM_QKNORM_NONE) {
        LD(w->qn, SM_W_Q_NORM, 0, NULL);
        LD(w->kn, SM_W_K_NORM, 0, NULL);
    }
    LD(w->ffn_norm, SM_W_FFN_NORM, 0, NULL);
    if (c->is_moe[l]) {
        w->block = NULL;
        if (o->moe_override && o->moe_override(o->moe_override_ctx, l, &w->block))
            goto fail;
        if (!w->block) {
            if (bf16 ? sm_moe_layer_load_bf16(m, l, o->mon, &w->moe) : sm_moe_layer_load_mon(m, l, o->mon, &w->moe))
                goto fail;
            w->block = &w->moe.block;
            if (bf16 && sm_moe_bf16_from_layer(&w->moe, &w->moe16))
                goto fail;
            if (bf16)
                w->block = &w->moe16.block;
        } else if (bf16 && !sm_moe_block_is_bf16(w->block)) { /* (a capture's block is already) */
            if (sm_moe_bf16_make(w->block, &w->moe16))
                goto fail;
            w->block = &w->moe16.block;
        }
    } else {
        int64_t r;
        LDM(w->dg, SM_W_DENSE_GATE, 0, &r);
        w->nid = (int)r;
        LDM(w->du, SM_W_DENSE_UP, 0, NULL);
        LDM(w->dd, SM_W_DENSE_DOWN, 0, NULL);
    }
#undef LD
#undef LDM
    return 0;
fail:
    free_layer(w);
    return -1;
}

/* ---- attention ---- */

#define ATT_BLOCK 256 /* queries per score block */

/* y (n×out) = x·Wᵀ: from the bf16 rounding of x when there is one (and W is bf16), else x. */
static void project(size_t n, int out, int in, const float *x, const uint16_t *x16, const float *w,
                    const uint16_t *w16, float *y)
{
    if (x16 && w16)
        sm_matmul_bf16((int64_t)n, out, in, x16, w16, 0.0f, y);
    else
        sm_matmul((int64_t)n, out, in, x, w, w16, 0.0f, y);
}

/* A forward job's attention buffers, kept from layer to layer: fresh ones cost a page fault and
 * a zeroed page per 4 KiB in the products that first write them (64 MiB a 2048-row unit at
 * OLMoE's shape, every layer). */
typedef struct {
    float *q, *k, *v, *att, *sc;
    uint16_t *hn16;                  /* bf16: hn, */
    uint16_t *qh16, *kh16, *vh16;    /* a window's q, k and v, head-major (pack_heads), */
    uint16_t *p16;                   /* a query block's probabilities */
    float *oh;                       /* and its attention output */
    size_t n;      /* rows they hold */
    int qd, kd, hd, T; /* and their widths */
} att_scratch;

static void att_scratch_free(att_scratch *s)
{
    free(s->q), free(s->k), free(s->v), free(s->att), free(s->sc), free(s->hn16);
    free(s->qh16), free(s->kh16), free(s->vh16), free(s->p16), free(s->oh);
    memset(s, 0, sizeof *s);
}

/* Room for n rows (hn16: for bf16 projections); 0, or -1 (no memory). */
static int att_scratch_fit(att_scratch *s, size_t n, int qd, int kd, int hd, int T, int H, bool b16)
{
    if (s->q && n <= s->n && qd == s->qd && kd == s->kd && hd == s->hd && T == s->T && (!b16 || s->hn16))
        return 0;
    att_scratch_free(s);
    *s = (att_scratch){.n = n, .qd = qd, .kd = kd, .hd = hd, .T = T};
    s->q = sm_alloc_f32(n * qd), s->k = sm_alloc_f32(n * kd), s->v = sm_alloc_f32(n * kd);
    const size_t bq = (size_t)(T < ATT_BLOCK ? T : ATT_BLOCK); /* a query block's rows */
    s->att = sm_alloc_f32(n * qd), s->sc = sm_alloc_f32(bq * T);
    if (b16) {
        s->hn16 = sm_zalloc_lines((size_t)(sm_matmul_bf16_rows((int64_t)n) * H), sizeof *s->hn16);
        s->qh16 = sm_zalloc_lines((size_t)T * qd, sizeof *s->qh16);
        s->kh16 = sm_zalloc_lines((size_t)T * kd, sizeof *s->kh16);
        s->vh16 = sm_zalloc_lines((size_t)T * kd, sizeof *s->vh16);
        s->p16 = sm_zalloc_lines(bq * T, sizeof *s->p16), s->oh = sm_zalloc_lines(bq * hd, sizeof *s->oh);
    }
    if (s->q && s->k && s->v && s->att && s->sc &&
        (!b16 || (s->hn16 && s->qh16 && s->kh16 && s->vh16 && s->p16 && s->oh)))
        return 0;
    att_scratch_free(s);
    return -1;
}

/* Each window's causal attention over q, k, v into att, in fp32 (OpenBLAS): queries in blocks of
 * ATT_BLOCK against the keys they can see, so the score buffer is ATT_BLOCK × T, not T × T, and
 * the masked half is never computed. mon: checked per window. */
static int attend_fp32(const sm_config *c, int n_seq, int T, att_scratch *scr, const sm_monitor *mon)
{
    int nh = c->n_heads, nkv = c->n_kv_heads, hd = c->head_dim, qd = nh * hd, kd = nkv * hd, group = nh / nkv;
    float scale = (float)(1.0 / sqrt((double)hd)), *sc = scr->sc;
    for (int s = 0; s < n_seq; s++) {
        if (sm_monitor_check(mon))
            return -1;
        const float *qs = scr->q + (size_t)s * T * qd, *ks = scr->k + (size_t)s * T * kd,
                    *vs = scr->v + (size_t)s * T * kd;
        float *as = scr->att + (size_t)s * T * qd;
        for (int h = 0; h < nh; h++) {
            int g = h / group;
            for (int i0 = 0; i0 < T; i0 += ATT_BLOCK) {
                int i1 = i0 + ATT_BLOCK < T ? i0 + ATT_BLOCK : T, bq = i1 - i0;
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, bq, i1, hd, scale,
                            qs + (size_t)i0 * qd + (size_t)h * hd, qd, ks + (size_t)g * hd, kd, 0.0f, sc, i1);
                for (int i = i0; i < i1; i++) {
                    float *r = sc + (size_t)(i - i0) * i1;
                    const float mx = sm_row_max(r, i + 1);
                    float sum = 0;
                    for (int j = 0; j <= i; j++) {
                        r[j] = expf(r[j] - mx);
                        sum += r[j];
                    }
                    float inv = 1.0f / sum;
                    for (int j = 0; j <= i; j++)
                        r[j] *= inv;
                    for (int j = i + 1; j < i1; j++)
                        r[j] = 0;
                }
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, bq, hd, i1, 1.0f, sc, i1,
                            vs + (size_t)g * hd, kd, 0.0f, as + (size_t)i0 * qd + (size_t)h * hd, qd);
            }
        }
    }
    return 0;
}

/* A window's T rows of nhead heads (row length nhead·hd) rounded to bf16, head-major: head h's
 * T × hd block at dst + h·T·hd. Read row by row: per-head strided reads of fp32 rows ran at a
 * fraction of the rate. */
static void pack_heads(uint16_t *dst, const float *src, int T, int nhead, int hd)
{
    for (int t = 0; t < T; t++)
        for (int h = 0; h < nhead; h++)
            sm_bf16_pack(dst + ((size_t)h * T + t) * hd, src + ((size_t)t * nhead + h) * hd, (size_t)hd);
}

/* The same in bf16, as PyTorch's bf16 eager attention runs it: q, k and v rounded once, the
 * scores bf16 × bf16 → fp32, the probabilities rounded to bf16 for P·V. Each head's q, k and v
 * are packed: on strided operands oneDNN picks gemm:jit, at a fraction of brgemm's rate. In fp32
 * on OpenBLAS these small products were 7% of an OLMoE eval. */
static int attend_bf16(const sm_config *c, int n_seq, int T, att_scratch *scr, const sm_monitor *mon)
{
    int nh = c->n_heads, nkv = c->n_kv_heads, hd = c->head_dim, qd = nh * hd, kd = nkv * hd, group = nh / nkv;
    float scale = (float)(1.0 / sqrt((double)hd)), *sc = scr->sc;
    size_t th = (size_t)T * hd;
    for (int s = 0; s < n_seq; s++) {
        if (sm_monitor_check(mon))
            return -1;
        pack_heads(scr->qh16, scr->q + (size_t)s * T * qd, T, nh, hd);
        pack_heads(scr->kh16, scr->k + (size_t)s * T * kd, T, nkv, hd);
        pack_heads(scr->vh16, scr->v + (size_t)s * T * kd, T, nkv, hd);
        float *as = scr->att + (size_t)s * T * qd;
        for (int h = 0; h < nh; h++) {
            const uint16_t *qh = scr->qh16 + h * th, *kh = scr->kh16 + (h / group) * th,
                           *vh = scr->vh16 + (h / group) * th;
            for (int i0 = 0; i0 < T; i0 += ATT_BLOCK) {
                int i1 = i0 + ATT_BLOCK < T ? i0 + ATT_BLOCK : T, bq = i1 - i0;
                sm_gemm_bf16(true, bq, i1, hd, qh + (size_t)i0 * hd, hd, kh, hd, sc, i1);
                for (int i = i0; i < i1; i++)
                    sm_softmax_bf16(scr->p16 + (size_t)(i - i0) * i1, sc + (size_t)(i - i0) * i1, i + 1, i1, scale);
                sm_gemm_bf16(false, bq, hd, i1, scr->p16, i1, vh, hd, scr->oh, hd);
                for (int i = 0; i < bq; i++) /* (a strided destination, too, made oneDNN pick gemm:jit) */
                    memcpy(as + (size_t)(i0 + i) * qd + (size_t)h * hd, scr->oh + (size_t)i * hd,
                           sizeof *scr->oh * hd);
            }
        }
    }
    return 0;
}

/* mon: checked after the projections and per window (a real shape's unit runs for seconds). */
static int attention(const sm_config *c, const layer_w *w, const float *hn, int n_seq, int T, float *x,
                     att_scratch *scr, const sm_monitor *mon)
{
    int H = c->hidden, nh = c->n_heads, nkv = c->n_kv_heads, hd = c->head_dim;
    int qd = nh * hd, kd = nkv * hd;
    size_t n = (size_t)n_seq * T;
    if (att_scratch_fit(scr, n, qd, kd, hd, T, H, w->wq16 != NULL))
        return -1;
    float *q = scr->q, *k = scr->k, *v = scr->v, *att = scr->att;
    /* in bf16, hn rounded once for the three projections (sm_matmul would round it per product:
     * the same bits); its pad rows zeroed (the kernel reads them) */
    uint16_t *hn16 = w->wq16 ? scr->hn16 : NULL;
    if (hn16) {
        sm_bf16_pack(hn16, hn, n * (size_t)H);
        memset(hn16 + n * (size_t)H, 0, sizeof *hn16 * (size_t)(sm_matmul_bf16_rows((int64_t)n) - (int64_t)n) * H);
    }
    project(n, qd, H, hn, hn16, w->wq, w->wq16, q);
    if (sm_monitor_check(mon)) /* each projection of a 2048-row unit is ~17 GFLOP at H 2048 */
        return -1;
    project(n, kd, H, hn, hn16, w->wk, w->wk16, k);
    if (sm_monitor_check(mon))
        return -1;
    project(n, kd, H, hn, hn16, w->wv, w->wv16, v);
    if (w->bq)
        for (size_t t = 0; t < n; t++) {
            for (int i = 0; i < qd; i++)
                q[t * qd + i] += w->bq[i];
            for (int i = 0; i < kd; i++) {
                k[t * kd + i] += w->bk[i];
                v[t * kd + i] += w->bv[i];
            }
        }
    if (sm_monitor_check(mon))
        return -1;
    float eps = (float)c->rms_eps;
    if (c->qk_norm == SM_QKNORM_FULL) {
        for (size_t t = 0; t < n; t++) {
            sm_rmsnorm(q + t * qd, q + t * qd, w->qn, qd, eps);
            sm_rmsnorm(k + t * kd, k + t * kd, w->kn, kd, eps);
        }
    } else if (c->qk_norm == SM_QKNORM_PER_HEAD) {
        for (size_t t = 0; t < n; t++) {
            for (int h = 0; h < nh; h++)
                sm_rmsnorm(q + t * qd + (size_t)h * hd, q + t * qd + (size_t)h * hd, w->qn, hd, eps);
            for (int h = 0; h < nkv; h++)
                sm_rmsnorm(k + t * kd + (size_t)h * hd, k + t * kd + (size_t)h * hd, w->kn, hd, eps);
        }
    }
    double *rope = sm_rope_table(T, hd, c->rope_theta, 0); /* (every window starts at position 0) */
    if (!rope)
        return -1;
    for (int s = 0; s < n_seq; s++) {
        sm_rope_apply(q + (size_t)s * T * qd, T, nh, hd, rope);
        sm_rope_apply(k + (size_t)s * T * kd, T, nkv, hd, rope);
    }
    free(rope);
    if (w->wq16 ? attend_bf16(c, n_seq, T, scr, mon) : attend_fp32(c, n_seq, T, scr, mon))
        return -1;
    /* x += att Wo^T */
    sm_matmul((int64_t)n, H, qd, att, w->wo, w->wo16, 1.0f, x);
    return 0;
}

/* ---- the whole pass ---- */

/* The row's double sum of exp(logit - mx): log p(id) = row[id] - mx - log(sum). In bf16 with
 * libmvec's expf (sm_expsum); in fp32 in double, as mcscore's reference scoring did. */
static double row_expsum(const float *row, int V, float mx, bool bf16)
{
    if (bf16)
        return sm_expsum(row, V, mx);
    double sum = 0;
    for (int v = 0; v < V; v++)
        sum += exp((double)row[v] - mx);
    return sum;
}

/* Rows [t0, t0 + nt) of window s through the LM head's scores, one row per job (split.h). */
typedef struct {
    const float *dst; /* nt rows of logits */
    const int32_t *ids;
    int s, T, t0, V;
    const sm_forward_opts *o;
    double *nll; /* [nt]: each row's negative log-likelihood (rows with a next token) */
} head_rows;

static int head_row(void *ctx, int i) /* an sm_split_fn */
{
    const head_rows *h = ctx;
    const sm_forward_opts *o = h->o;
    int t = h->t0 + i, V = h->V;
    const float *r = h->dst + (size_t)i * V;
    size_t at = (size_t)h->s * h->T + (size_t)t;
    bool target = o->target_logprob && o->targets[at] >= 0, next = o->nll_sum && t + 1 < h->T;
    if (!target && !next)
        return 0;
    const float mx = sm_row_max(r, V); /* (in float, as mcscore's reference scoring did) */
    const double sum = row_expsum(r, V, mx, o->precision == SM_PRECISION_BF16); /* (once for both) */
    if (target)
        o->target_logprob[at] = (double)r[o->targets[at]] - mx - log(sum);
    if (next)
        h->nll[i] = log(sum) + mx - r[h->ids[at + 1]];
    return 0;
}

/* Rows [t0, t0 + nt) of window s: their negative log-likelihoods and target log-probabilities,
 * the rows on every thread (their double sums of V exponentials are most of an eval's serial
 * time), the likelihoods then added in row order: the same sum whatever the threads. */
static int head_scores(const float *dst, const int32_t *ids, int s, int T, int t0, int nt, int V,
                       const sm_forward_opts *o)
{
    double *nll = o->nll_sum ? sm_alloc((size_t)nt, sizeof *nll) : NULL;
    if (o->nll_sum && !nll)
        return -1;
    head_rows hr = {dst, ids, s, T, t0, V, o, nll};
    sm_split_run(nt, head_row, &hr); /* (a row cannot fail) */
    for (int i = 0; o->nll_sum && i < nt && t0 + i + 1 < T; i++) {
        if (!isfinite(nll[i])) { /* the hidden state was finite: the head's logits overflowed */
            free(nll);
            return sm_err("lm_head: the logits of token %d of window %d are not finite (the final norm or "
                          "the output projection overflows float32)", t0 + i, s);
        }
        *o->nll_sum += nll[i];
    }
    free(nll);
    return 0;
}

static int head(const sm_model *m, float *x, const int32_t *ids, int n_seq, int T, const sm_forward_opts *o)
{
    const sm_config *c = sm_model_config(m);
    int H = c->hidden, V = c->vocab;
    int rc = -1;
    const bool bf16 = o->precision == SM_PRECISION_BF16;
    /* rows of logits at a time: a whole window when it fits (as always), else a block */
    size_t fit = SM_FORWARD_HEAD_BYTES / ((size_t)V * sizeof(float));
    int rows = o->logits || (size_t)T <= fit ? T : fit > 0 ? (int)fit : 1;
    float *fn = load(m, SM_W_FINAL_NORM, 0, 0, NULL);
    float *lm = bf16 ? NULL : load(m, SM_W_LM_HEAD, 0, 0, NULL);
    layer_w views = {0}; /* where lm16 is mapped */
    uint16_t *lm16 = bf16 ? load16(m, SM_W_LM_HEAD, 0, 0, NULL, &views) : NULL;
    float *lg = o->logits ? NULL : sm_alloc_f32((size_t)rows * V);
    if (!fn || !(lm || lm16) || (!o->logits && !lg))
        goto out;
    for (size_t t = 0; t < (size_t)n_seq * T; t++)
        sm_rmsnorm(x + t * H, x + t * H, fn, H, (float)c->rms_eps);
    for (int s = 0; s < n_seq; s++) {
        /* only target log-probabilities: only the rows that have a target (a task item's
         * continuation, not its long context) go through the head */
        int lo = 0, hi = T;
        if (!o->logits && !o->nll_sum) {
            const int32_t *tg = o->targets + (size_t)s * T;
            while (lo < T && tg[lo] < 0)
                lo++;
            while (hi > lo && tg[hi - 1] < 0)
                hi--;
        }
        for (int t0 = lo; t0 < hi; t0 += rows) {
            if (sm_monitor_check(o->mon)) /* a block of the LM head is a large product */
                goto out;
            int nt = hi - t0 < rows ? hi - t0 : rows;
            float *dst = o->logits ? o->logits + ((size_t)s * T + (size_t)t0) * V : lg;
            sm_matmul(nt, V, H, x + ((size_t)s * T + (size_t)t0) * H, lm, lm16, 0.0f, dst);
            if ((o->nll_sum || o->target_logprob) && head_scores(dst, ids, s, T, t0, nt, V, o))
                goto out;
        }
        if (o->nll_sum && o->nll_count)
            *o->nll_count += (uint64_t)(T - 1);
    }
    rc = 0;
out:
    free(fn);
    free(lm);
    free16(lm16, &views);
    release_mapped(&views);
    free(lg);
    return rc;
}

/* One layer on sequences [s0, s1) of the batch: everything after the weights are loaded is
 * independent across sequences, so the batch is split over threads. */
typedef struct {
    const sm_config *c;
    const layer_w *w;
    int l, T, s0, s1, seq0;   /* seq0: window number of the chunk's first sequence */
    const sm_monitor *mon;    /* checked between units, after attention and between experts */
    float *x, *hn, *ff, *lg, *tw;
    int *tk;
    bool single;              /* one matmul thread (several threads share the batch) */
    att_scratch *scr;         /* its attention buffers (the job's own: kept from layer to layer) */
    int rc;
    char err[512];
} layer_job;

/* Sequences [s0, s1) of one layer, as one batch of rows. */
static int layer_seqs(layer_job *j, int s0, int s1)
{
    const sm_config *c = j->c;
    const layer_w *w = j->w;
    int H = c->hidden, k = c->top_k;
    size_t r0 = (size_t)s0 * j->T, n = (size_t)(s1 - s0) * j->T;
    float *x = j->x + r0 * H, *hn = j->hn + r0 * H, *ff = j->ff + r0 * H;
    float eps = (float)c->rms_eps;
    for (size_t t = 0; t < n; t++)
        sm_rmsnorm(hn + t * H, x + t * H, w->attn_norm, H, eps);
    if (attention(c, w, hn, s1 - s0, j->T, x, j->scr, j->mon) || sm_monitor_check(j->mon))
        return -1;
    for (size_t t = 0; t < n; t++)
        sm_rmsnorm(hn + t * H, x + t * H, w->ffn_norm, H, eps);
    if (c->is_moe[j->l]) {
        /* The MoE block shared with the engine (engine/moe.h, routing rules in route.h). */
        const sm_moe_block *b = w->block;
        sm_moe_trace tr = {j->lg + r0 * b->n_router, j->tk + r0 * k, j->tw + r0 * k};
        if (sm_moe_forward_mon(b, hn, (int64_t)n, ff, &tr, j->mon))
            return -1;
    } else {
        sm_expert d = sm_expert_dense(H, w->nid, w->dg, w->du, w->dd);
        d.gate.wb = w->dg16, d.up.wb = w->du16, d.down.wb = w->dd16;
        if (sm_expert_forward(&d, hn, (int64_t)n, ff))
            return -1;
    }
    /* The residual stream must stay finite: checking it here, fused with the add, names the
     * first layer whose output overflowed instead of letting NaN reach the perplexity. */
    unsigned bad = 0;
    for (size_t i = 0; i < n * H; i++) {
        x[i] += ff[i];
        bad |= !isfinite(x[i]);
    }
    if (bad)
        for (size_t i = 0; i < n * H; i++)
            if (!isfinite(x[i]))
                return sm_err("the hidden state after this layer is not finite (%s at token %zu of window %zu): "
                              "activations overflow float32", sm_nonfinite_name(x[i]), (i / H) % (size_t)j->T,
                              (size_t)j->seq0 + (size_t)s0 + i / H / (size_t)j->T);
    return 0;
}

/* A thread's share of the batch in units of FORWARD_UNIT_TOKENS rows (whole sequences, aligned
 * to the chunk's start): every unit sees the same matrix shapes whatever the number of threads,
 * so results (and the bytes of everything computed from them) do not depend on SUBMOE_THREADS,
 * while the units stay large enough for efficient sgemm. */
#define FORWARD_UNIT_TOKENS 2048
static int unit_seqs(int T)
{
    return T >= FORWARD_UNIT_TOKENS ? 1 : FORWARD_UNIT_TOKENS / T;
}

static void layer_part(layer_job *j)
{
    int u = unit_seqs(j->T);
    int matmul_threads = j->single ? sm_matmul_set_threads(1) : 0;
    j->rc = 0;
    for (int s = j->s0; s < j->s1 && !j->rc; s += u)
        j->rc = sm_monitor_check(j->mon) || layer_seqs(j, s, s + u < j->s1 ? s + u : j->s1) ? -1 : 0;
    if (j->single)
        sm_matmul_set_threads(matmul_threads);
    if (j->rc)
        snprintf(j->err, sizeof j->err, "%s", sm_errmsg());
}

/* Job i of a chunk (an sm_split_fn over the jobs array): its rc and message stay in the job. */
static int layer_split_job(void *ctx, int i)
{
    layer_job *j = (layer_job *)ctx + i;
    layer_part(j);
    return j->rc;
}

int sm_forward(const sm_model *m, const int32_t *ids, int n_seq, int seq_len, const sm_forward_opts *o)
{
    const sm_config *c = sm_model_config(m);
    int H = c->hidden, T = seq_len, k = c->top_k;
    if (n_seq <= 0 || T <= 0)
        return sm_err("forward: nothing to run (%d sequences of %d tokens)", n_seq, T);
    if (c->unsupported[0])
        return sm_err("%s/config.json: %s is not supported by the built-in forward pass; calibrate elsewhere "
                      "and give submoe an activations file (layers.L.moe_input)", sm_model_dir(m), c->unsupported);
    if (c->sliding_window > 0 && T > c->sliding_window)
        return sm_err("%s: windows of %d tokens are longer than the model's sliding attention window (%d), "
                      "which the forward pass does not implement: use --seq-len %d or less",
                      sm_model_dir(m), T, c->sliding_window, c->sliding_window);
    size_t n = (size_t)n_seq * T;
    for (size_t t = 0; t < n; t++)
        if (ids[t] < 0 || ids[t] >= c->vocab)
            return sm_err("forward: token %zu has id %d, outside the vocabulary of %d", t, ids[t], c->vocab);
    /* Sequences per chunk: all at once for the whole-batch capture callback, else bounded so
     * that only the residual stream x is held for every token. */
    int cs = n_seq;
    if (!o->capture) {
        int64_t budget = o->chunk_tokens > 0 ? o->chunk_tokens : SM_FORWARD_CHUNK_TOKENS;
        cs = budget / T < 1 ? 1 : budget / T < n_seq ? (int)(budget / T) : n_seq;
        /* whole units per chunk: chunked and unchunked runs then cut the work the same way */
        int u = unit_seqs(T);
        if (cs > u && cs < n_seq)
            cs -= cs % u;
    }
    size_t nc = (size_t)cs * T; /* tokens per chunk */
    int rc = -1;
    layer_w w;
    memset(&w, 0, sizeof w);
    att_scratch scr[64] = {0}; /* job i's attention buffers, whichever thread runs it */
    float *x = sm_alloc_f32(n * H), *hn = sm_alloc_f32(nc * H), *ff = sm_alloc_f32(nc * H);
    float *lg = NULL, *tw = NULL;
    int *tk = NULL;
    if (!x || !hn || !ff)
        goto out;
    sm_weight emb;
    if (sm_model_weight(m, SM_W_EMBED, 0, 0, &emb))
        goto out;
    for (size_t t = 0; t < n; t++)
        if (sm_weight_rows_to_f32(&emb, ids[t], 1, x + t * H)) {
            sm_err_prefix("embedding of token id %d", ids[t]);
            goto out;
        }

    /* With several sequences, split them over threads (BLAS single-threaded inside); with one,
     * leave the parallelism to BLAS. */
    int nt = sm_split_threads();
    if (nt > cs)
        nt = cs;
    int blas_threads = openblas_get_num_threads();
    layer_job jobs[64];

    int last = o->stop_after_layer >= 0 && o->stop_after_layer < c->n_layers ? o->stop_after_layer : c->n_layers - 1;
    for (int l = 0; l <= last; l++) {
        if (load_layer(m, l, o, &w)) {
            sm_err_prefix("layer %d", l);
            goto out;
        }
        if (c->is_moe[l]) {
            free(lg);
            free(tk);
            free(tw);
            lg = sm_alloc_f32(nc * (size_t)w.block->n_router);
            tk = sm_alloc(nc * k, sizeof *tk);
            tw = sm_alloc(nc * k, sizeof *tw);
            if (!lg || !tk || !tw)
                goto out;
        }
        for (int c0 = 0; c0 < n_seq; c0 += cs) {
            int cn = n_seq - c0 < cs ? n_seq - c0 : cs, u = unit_seqs(T), units = (cn + u - 1) / u;
            int ct = nt < units ? nt : units;
            size_t row0 = (size_t)c0 * T;
            for (int i = 0; i < ct; i++) { /* whole units per thread */
                int s0 = (int)((long)units * i / ct) * u, s1 = (int)((long)units * (i + 1) / ct) * u;
                jobs[i] = (layer_job){.c = c, .w = &w, .l = l, .T = T, .s0 = s0, .s1 = s1 < cn ? s1 : cn, .seq0 = c0,
                                      .mon = o->mon, .x = x + row0 * H, .hn = hn, .ff = ff, .lg = lg, .tw = tw, .tk = tk,
                                      .scr = &scr[i]};
            }
            bool single_blas = cn > 1; /* several sequences: BLAS single-threaded, whatever ct */
            for (int i = 0; i < ct; i++)
                jobs[i].single = single_blas;
            if (single_blas)
                openblas_set_num_threads(1);
            sm_split_run(ct, layer_split_job, jobs); /* ct ≤ its threads: one job a thread; failures read below */
            if (single_blas)
                openblas_set_num_threads(blas_threads);
            for (int i = 0; i < ct; i++)
                if (jobs[i].rc) {
                    sm_err("layer %d: %s", l, jobs[i].err);
                    goto out;
                }
            size_t rows = (size_t)cn * T;
            if (c->is_moe[l] && o->capture && o->capture(o->capture_ctx, l, (int)rows, hn, lg, tk, tw))
                goto out;
            if (c->is_moe[l] && o->capture_chunk &&
                o->capture_chunk(o->capture_ctx, l, (int64_t)row0, (int64_t)rows, (int64_t)n, hn, lg, tk, tw))
                goto out;
            if (sm_monitor_check(o->mon))
                goto out;
        }
        free_layer(&w);
        if (o->on_layer)
            o->on_layer(o->on_layer_ctx, l);
    }
    if (last == c->n_layers - 1 && (o->logits || o->nll_sum || o->target_logprob))
        if (head(m, x, ids, n_seq, T, o))
            goto out;
    rc = 0;
out:
    for (size_t i = 0; i < sizeof scr / sizeof scr[0]; i++)
        att_scratch_free(&scr[i]);
    free_layer(&w);
    free(x);
    free(hn);
    free(ff);
    free(lg);
    free(tk);
    free(tw);
    return rc;
}
