/* saliency: REAP's expert saliency (see saliency.h). */
#include "engine/saliency.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "util/diag.h"
#include "util/mem.h"

/* The running sums and the scratch of one pass. */
typedef struct saliency_acc {
    int n, k;
    int64_t hidden;
    double *sum;     /* n: Σ g_j(x)·‖E_j(x)‖ so far */
    int64_t *count;  /* n: |X_j| so far */
    int64_t cap;     /* rows of the gather buffers */
    float *xs, *ws, *y;
    int *order, *start;
} saliency_acc;

/* Rows per block: enough that each expert gets about SALIENCY_EXPERT_ROWS of them (its GEMMs
 * would otherwise be dominated by reading its weights: 256 rows of a 64-expert top-8 layer give
 * it 32), within [SALIENCY_BLOCK_MIN, SALIENCY_BLOCK_MAX] (bounded scratch: 4096 × hidden floats
 * for the rows, the gathered rows and their outputs each). */
#define SALIENCY_EXPERT_ROWS 256
#define SALIENCY_BLOCK_MIN 256
#define SALIENCY_BLOCK_MAX 4096

static void acc_free(saliency_acc *s)
{
    free(s->sum), free(s->count), free(s->xs), free(s->ws), free(s->y), free(s->order), free(s->start);
    memset(s, 0, sizeof *s);
}

static int acc_begin(saliency_acc *s, const sm_moe_block *b, int64_t max_rows)
{
    memset(s, 0, sizeof *s);
    if (sm_moe_block_check(b) != 0)
        return -1;
    if (b->expert_map || b->n_router != b->n_experts)
        return sm_err("saliency needs a layer with one router row per expert");
    s->n = b->n_experts, s->k = b->rule.top_k, s->hidden = b->hidden, s->cap = max_rows;
    s->sum = sm_zalloc((size_t)s->n, sizeof *s->sum);
    s->count = sm_zalloc((size_t)s->n, sizeof *s->count);
    s->xs = sm_alloc_f32((size_t)(max_rows * s->hidden));
    s->y = sm_alloc_f32((size_t)(max_rows * s->hidden));
    s->ws = sm_alloc_f32((size_t)max_rows);
    s->order = sm_alloc((size_t)(max_rows * s->k), sizeof *s->order);
    s->start = sm_alloc((size_t)s->n + 1, sizeof *s->start);
    if (!s->sum || !s->count || !s->xs || !s->y || !s->ws || !s->order || !s->start) {
        acc_free(s);
        return -1;
    }
    return 0;
}

/* Add mb rows x (mb × hidden) whose selection idx/w came from sm_route_select with b's rule. */
static int acc_add(saliency_acc *s, const sm_moe_block *b, const float *x, int64_t mb, const int *idx,
                   const float *w)
{
    const int n = s->n, k = s->k;
    const int64_t h = s->hidden;
    if (mb > s->cap)
        return sm_err("internal: a saliency block of %lld rows (at most %lld)", (long long)mb, (long long)s->cap);
    /* the (row, slot) pairs of each expert, by a counting sort on the expert */
    memset(s->start, 0, sizeof(int) * ((size_t)n + 1));
    for (int64_t q = 0; q < mb * k; q++)
        s->start[idx[q] + 1]++;
    for (int e = 0; e < n; e++)
        s->start[e + 1] += s->start[e];
    for (int64_t q = 0; q < mb * k; q++)
        s->order[s->start[idx[q]]++] = (int)q;
    for (int e = n; e > 0; e--) /* the scatter advanced each start to the next one's */
        s->start[e] = s->start[e - 1];
    s->start[0] = 0;
    for (int e = 0; e < n; e++) {
        const int64_t me = s->start[e + 1] - s->start[e];
        if (!me)
            continue;
        for (int64_t r = 0; r < me; r++) {
            const int q = s->order[s->start[e] + r];
            memcpy(s->xs + r * h, x + (int64_t)(q / k) * h, sizeof(float) * (size_t)h);
            s->ws[r] = w[q];
        }
        if (sm_expert_forward(&b->experts[e], s->xs, me, s->y) != 0)
            return -1;
        for (int64_t r = 0; r < me; r++) {
            double nn = 0.0;
            for (int64_t i = 0; i < h; i++)
                nn += (double)s->y[r * h + i] * s->y[r * h + i];
            s->sum[e] += (double)s->ws[r] * sqrt(nn);
        }
        s->count[e] += me;
    }
    return 0;
}

static void acc_result(const saliency_acc *s, double *saliency)
{
    for (int e = 0; e < s->n; e++)
        saliency[e] = s->count[e] ? s->sum[e] / (double)s->count[e] : 0.0;
}

int sm_saliency_rows(const sm_moe_block *b, int64_t m, sm_saliency_rows_fn rows, void *ctx,
                     const sm_monitor *mon, double *saliency)
{
    if (b->rule.top_k < 1)
        return sm_err("saliency needs a routing rule with top_k >= 1");
    int64_t blk = (int64_t)SALIENCY_EXPERT_ROWS * b->n_router / b->rule.top_k;
    blk = blk < SALIENCY_BLOCK_MIN ? SALIENCY_BLOCK_MIN : blk > SALIENCY_BLOCK_MAX ? SALIENCY_BLOCK_MAX : blk;
    saliency_acc s;
    if (acc_begin(&s, b, blk) != 0)
        return -1;
    const int n = s.n, k = s.k;
    const int64_t h = s.hidden;
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
        rc = sm_route_select(&b->rule, z, mb, n, idx, w) || acc_add(&s, b, xb, mb, idx, w) ? -1 : 0;
        sm_monitor_report(mon, (double)(t0 + mb) / (double)m, "saliency");
    }
    if (rc == 0)
        acc_result(&s, saliency);
    free(z), free(w), free(buf), free(idx);
    acc_free(&s);
    return rc;
}

typedef struct {
    const float *x;
    int64_t h;
} memory_rows;

static const float *rows_in_memory(void *ctx, int64_t t0, int64_t n, float *buf)
{
    const memory_rows *r = ctx;
    (void)n, (void)buf;
    return r->x + t0 * r->h;
}

int sm_saliency(const sm_moe_block *b, const float *x, int64_t m, double *saliency)
{
    memory_rows mr = {x, b->hidden};
    return sm_saliency_rows(b, m, rows_in_memory, &mr, NULL, saliency);
}
