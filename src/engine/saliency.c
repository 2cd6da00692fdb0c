/* saliency: REAP's expert saliency (see saliency.h). */
#include "engine/saliency.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "util/diag.h"
#include "util/mem.h"
#include "util/parallel.h"

/* Rows per block: enough that each expert gets about SALIENCY_EXPERT_ROWS of them (its GEMMs
 * would otherwise be dominated by reading its weights: 256 rows of a 64-expert top-8 layer give
 * it 32), within [SALIENCY_BLOCK_MIN, SALIENCY_BLOCK_MAX]. */
#define SALIENCY_EXPERT_ROWS 256
#define SALIENCY_BLOCK_MIN 256
#define SALIENCY_BLOCK_MAX 4096

struct sm_saliency_acc {
    const sm_moe_block *b;
    const sm_monitor *mon;
    int n, k;
    int64_t hidden, blk;
    double *sum;      /* n: Σ g_j(x)·‖E_j(x)‖ so far */
    int64_t *count;   /* n: |X_j| so far */
    int64_t pending;  /* rows in x/idx/w not yet processed */
    float *x, *w;     /* blk × hidden, blk × k: the pending rows and their weights */
    int *idx;         /* blk × k */
    float *xs, *y;    /* one expert's gathered rows and outputs (serial loop) */
    int *order, *start; /* the block's (row, slot) pairs by expert */
};

void sm_saliency_free(sm_saliency_acc *s)
{
    if (!s)
        return;
    free(s->sum), free(s->count), free(s->x), free(s->w), free(s->idx);
    free(s->xs), free(s->y), free(s->order), free(s->start);
    free(s);
}

sm_saliency_acc *sm_saliency_new(const sm_moe_block *b, const sm_monitor *mon)
{
    if (sm_moe_block_check(b) != 0)
        return NULL;
    if (b->expert_map || b->n_router != b->n_experts) {
        sm_err("saliency needs a layer with one router row per expert");
        return NULL;
    }
    sm_saliency_acc *s = sm_zalloc(1, sizeof *s);
    if (!s)
        return NULL;
    s->b = b, s->mon = mon, s->n = b->n_experts, s->k = b->rule.top_k, s->hidden = b->hidden;
    int64_t blk = (int64_t)SALIENCY_EXPERT_ROWS * s->n / (s->k > 0 ? s->k : 1);
    s->blk = blk < SALIENCY_BLOCK_MIN ? SALIENCY_BLOCK_MIN : blk > SALIENCY_BLOCK_MAX ? SALIENCY_BLOCK_MAX : blk;
    const size_t rows = (size_t)s->blk, h = (size_t)s->hidden, k = (size_t)s->k;
    s->sum = sm_zalloc((size_t)s->n, sizeof *s->sum);
    s->count = sm_zalloc((size_t)s->n, sizeof *s->count);
    s->x = sm_alloc_f32(rows * h), s->w = sm_alloc_f32(rows * k), s->idx = sm_alloc(rows * k, sizeof *s->idx);
    s->xs = sm_alloc_f32(rows * h), s->y = sm_alloc_f32(rows * h);
    s->order = sm_alloc(rows * k, sizeof *s->order), s->start = sm_alloc((size_t)s->n + 1, sizeof *s->start);
    if (!s->sum || !s->count || !s->x || !s->w || !s->idx || !s->xs || !s->y || !s->order || !s->start) {
        sm_saliency_free(s);
        return NULL;
    }
    return s;
}

/* Expert e on its pending rows (gathered into xs, outputs in y: scratch of its row count), its
 * g·‖E(x)‖ added to its sum in row order: the same sums whichever thread runs it. */
static int saliency_expert(sm_saliency_acc *s, int e, float *xs, float *y)
{
    const int k = s->k;
    const int64_t h = s->hidden, me = s->start[e + 1] - s->start[e];
    for (int64_t r = 0; r < me; r++) {
        const int q = s->order[s->start[e] + r];
        memcpy(xs + r * h, s->x + (int64_t)(q / k) * h, sizeof(float) * (size_t)h);
    }
    if (sm_expert_forward(&s->b->experts[e], xs, me, y) != 0)
        return -1;
    for (int64_t r = 0; r < me; r++) {
        double nn = 0.0;
        for (int64_t i = 0; i < h; i++)
            nn += (double)y[r * h + i] * y[r * h + i];
        s->sum[e] += (double)s->w[s->order[s->start[e] + r]] * sqrt(nn);
    }
    s->count[e] += me;
    return 0;
}

/* One item of the side-by-side loop (bf16 experts): its own scratch. */
static int saliency_item(void *ctx, int64_t e, const sm_monitor *mon)
{
    sm_saliency_acc *s = ctx;
    const int64_t me = s->start[e + 1] - s->start[e];
    if (!me || sm_monitor_cancelled(mon))
        return me ? -1 : 0;
    float *xs = sm_alloc_f32((size_t)(me * s->hidden)), *y = sm_alloc_f32((size_t)(me * s->hidden));
    int rc = xs && y ? saliency_expert(s, (int)e, xs, y) : -1;
    free(xs), free(y);
    return rc;
}

/* Run every expert on its pending rows and add g·‖E(x)‖ to its sum, rows in order. */
static int process(sm_saliency_acc *s)
{
    const int n = s->n, k = s->k;
    const int64_t mb = s->pending;
    /* the (row, slot) pairs of each expert, by a counting sort on the expert (stable: row order) */
    memset(s->start, 0, sizeof(int) * ((size_t)n + 1));
    for (int64_t q = 0; q < mb * k; q++)
        s->start[s->idx[q] + 1]++;
    for (int e = 0; e < n; e++)
        s->start[e + 1] += s->start[e];
    for (int64_t q = 0; q < mb * k; q++)
        s->order[s->start[s->idx[q]]++] = (int)q;
    for (int e = n; e > 0; e--) /* the scatter advanced each start to the next one's */
        s->start[e] = s->start[e - 1];
    s->start[0] = 0;
    s->pending = 0;
    /* bf16 experts (oneDNN only) side by side, each product on one thread: at M of a few hundred
     * rows, two one-thread products run at nearly twice one two-thread product's rate */
    if (sm_moe_experts_side_by_side(s->b))
        return sm_parallel_for(n, 6 * mb * k * s->hidden * s->b->experts[0].gate.out, saliency_item, s, s->mon,
                               NULL);
    for (int e = 0; e < n; e++) {
        if (s->start[e + 1] == s->start[e])
            continue;
        if (sm_monitor_check(s->mon) != 0) /* a block of 4096 rows is seconds of work at real shapes */
            return -1;
        if (saliency_expert(s, e, s->xs, s->y) != 0)
            return -1;
    }
    return 0;
}

int sm_saliency_push(sm_saliency_acc *s, const float *x, int64_t mb, const int *idx, const float *w)
{
    const int64_t h = s->hidden, k = s->k;
    for (int64_t t = 0; t < mb;) {
        int64_t c = mb - t < s->blk - s->pending ? mb - t : s->blk - s->pending;
        for (int64_t q = 0; q < c * k; q++)
            if (idx[t * k + q] < 0 || idx[t * k + q] >= s->n)
                return sm_err("internal: a selected expert %d of %d", idx[t * k + q], s->n);
        memcpy(s->x + s->pending * h, x + t * h, sizeof(float) * (size_t)(c * h));
        memcpy(s->idx + s->pending * k, idx + t * k, sizeof(int) * (size_t)(c * k));
        memcpy(s->w + s->pending * k, w + t * k, sizeof(float) * (size_t)(c * k));
        s->pending += c, t += c;
        if (s->pending == s->blk && process(s) != 0)
            return -1;
    }
    return 0;
}

int sm_saliency_finish(sm_saliency_acc *s, double *saliency)
{
    if (s->pending && process(s) != 0)
        return -1;
    for (int e = 0; e < s->n; e++)
        saliency[e] = s->count[e] ? s->sum[e] / (double)s->count[e] : 0.0;
    return 0;
}

int sm_saliency_rows(const sm_moe_block *b, int64_t m, sm_saliency_rows_fn rows, void *ctx,
                     const sm_monitor *mon, double *saliency)
{
    sm_saliency_acc *s = sm_saliency_new(b, mon);
    if (!s)
        return -1;
    const int n = s->n, k = s->k;
    /* routed in the analysis' blocks, so that the capture's stored saliencies come out again bit
     * for bit (the accumulator still processes its own larger blocks) */
    const int64_t h = s->hidden, blk = SM_ROUTE_BLOCK;
    float *z = sm_alloc_f32((size_t)(blk * n)), *w = sm_alloc_f32((size_t)(blk * k));
    float *buf = sm_alloc_f32((size_t)(blk * h));
    int *idx = sm_alloc((size_t)(blk * k), sizeof *idx);
    int rc = z && w && buf && idx ? 0 : -1;
    for (int64_t t0 = 0; rc == 0 && t0 < m; t0 += blk) {
        const int64_t mb = m - t0 < blk ? m - t0 : blk;
        const float *xb = sm_monitor_check(mon) ? NULL : rows(ctx, t0, mb, buf);
        if (!xb) {
            rc = -1;
            break;
        }
        sm_route_logits(xb, mb, h, b->router, n, z);
        rc = sm_route_select(&b->rule, z, mb, n, idx, w) || sm_saliency_push(s, xb, mb, idx, w) ? -1 : 0;
        sm_monitor_report(mon, (double)(t0 + mb) / (double)m, "saliency");
    }
    if (rc == 0)
        rc = sm_saliency_finish(s, saliency);
    free(z), free(w), free(buf), free(idx);
    sm_saliency_free(s);
    return rc;
}

const float *sm_rows_in_memory(void *ctx, int64_t t0, int64_t n, float *buf)
{
    const sm_memory_rows *r = ctx;
    (void)n, (void)buf;
    return r->x + t0 * r->h;
}

int sm_saliency(const sm_moe_block *b, const float *x, int64_t m, double *saliency)
{
    sm_memory_rows mr = {x, b->hidden};
    return sm_saliency_rows(b, m, sm_rows_in_memory, &mr, NULL, saliency);
}
