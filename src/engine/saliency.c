/* saliency: REAP's expert saliency (see saliency.h). */
#include "engine/saliency.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "util/diag.h"
#include "util/mem.h"

#define SALIENCY_BLOCK 256

void sm_saliency_free(sm_saliency_acc *s)
{
    free(s->sum), free(s->count), free(s->xs), free(s->ws), free(s->y), free(s->order), free(s->start);
    memset(s, 0, sizeof *s);
}

int sm_saliency_begin(sm_saliency_acc *s, const sm_moe_block *b, int64_t max_rows)
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
        sm_saliency_free(s);
        return -1;
    }
    return 0;
}

int sm_saliency_add(sm_saliency_acc *s, const sm_moe_block *b, const float *x, int64_t mb, const int *idx,
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

void sm_saliency_result(const sm_saliency_acc *s, double *saliency)
{
    for (int e = 0; e < s->n; e++)
        saliency[e] = s->count[e] ? s->sum[e] / (double)s->count[e] : 0.0;
}

int sm_saliency_rows(const sm_moe_block *b, int64_t m, sm_saliency_rows_fn rows, void *ctx,
                     const sm_monitor *mon, double *saliency)
{
    sm_saliency_acc s;
    if (sm_saliency_begin(&s, b, SALIENCY_BLOCK) != 0)
        return -1;
    const int n = s.n, k = s.k;
    const int64_t h = s.hidden;
    float *z = sm_alloc_f32((size_t)(SALIENCY_BLOCK * n)), *w = sm_alloc_f32((size_t)(SALIENCY_BLOCK * k));
    float *buf = sm_alloc_f32((size_t)(SALIENCY_BLOCK * h));
    int *idx = sm_alloc((size_t)(SALIENCY_BLOCK * k), sizeof *idx);
    int rc = z && w && buf && idx ? 0 : -1;
    for (int64_t t0 = 0; rc == 0 && t0 < m; t0 += SALIENCY_BLOCK) {
        const int64_t mb = m - t0 < SALIENCY_BLOCK ? m - t0 : SALIENCY_BLOCK;
        const float *xb = sm_monitor_check(mon) ? NULL : rows(ctx, t0, mb, buf);
        if (!xb) {
            rc = -1;
            break;
        }
        sm_route_logits(xb, mb, h, b->router, n, z);
        rc = sm_route_select(&b->rule, z, mb, n, idx, w) || sm_saliency_add(&s, b, xb, mb, idx, w) ? -1 : 0;
        sm_monitor_report(mon, (double)(t0 + mb) / (double)m, "saliency");
    }
    if (rc == 0)
        sm_saliency_result(&s, saliency);
    free(z), free(w), free(buf), free(idx);
    sm_saliency_free(&s);
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
