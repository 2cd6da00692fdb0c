/* heldout: a layer variant's held-out output error from cached source outputs (see heldout.h). */
#include "engine/heldout.h"

#include <cblas.h>
#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "util/diag.h"
#include "util/mem.h"

struct sm_heldout {
    sm_moe_block src;
    const float *x;
    int64_t m;
    int n, top;
    int *pos;     /* m × n: position of each source expert in its row's selection, −1 if unselected */
    float *out;   /* m × top × H: the selected experts' outputs, in selection order */
    double *ref;  /* m × H: the source's routed output (its shared experts cancel in every error) */
    double den;   /* ||Y||² of the source block, shared experts included */
};

void sm_heldout_free(sm_heldout *h)
{
    if (!h)
        return;
    free(h->pos), free(h->out), free(h->ref);
    free(h);
}

int64_t sm_heldout_bytes(const sm_moe_block *b, int64_t m)
{
    return m * ((int64_t)b->n_router * (int64_t)sizeof(int) + (int64_t)b->rule.top_k * b->hidden * (int64_t)sizeof(float) +
                b->hidden * (int64_t)sizeof(double));
}

/* Rows of one product between monitor checks: about sm_moe_panel_flop of work, at least 48 (as
 * the block forward's panels, moe.h). */
static int64_t panel_rows(const sm_expert *e, int64_t hidden)
{
    double per_row = 6.0 * (double)hidden * (double)e->gate.out;
    double p = sm_moe_panel_flop / (per_row > 1 ? per_row : 1);
    int64_t r = p > 1e9 ? (int64_t)1e9 : (int64_t)p;
    return r < 48 ? 48 : r;
}

/* Rows tok[0..nt) of x through expert e, panel by panel; each output row r goes to
 * sink(ctx, r, y). */
typedef void (*row_sink)(void *ctx, int64_t r, const float *y);
static int run_rows(const sm_expert *e, const float *x, int64_t h, const int64_t *tok, int64_t nt, row_sink sink,
                    void *ctx, const sm_monitor *mon)
{
    const int64_t pr = panel_rows(e, h), rows = nt < pr ? nt : pr;
    float *xs = sm_alloc_f32((size_t)(rows * h)), *ys = sm_alloc_f32((size_t)(rows * h));
    int rc = xs && ys ? 0 : -1;
    for (int64_t r0 = 0; rc == 0 && r0 < nt; r0 += pr) {
        const int64_t np = nt - r0 < pr ? nt - r0 : pr;
        if ((rc = sm_monitor_check(mon)) != 0)
            break;
        for (int64_t r = 0; r < np; r++)
            memcpy(xs + r * h, x + tok[r0 + r] * h, sizeof(float) * (size_t)h);
        if ((rc = sm_expert_forward(e, xs, np, ys)) != 0)
            break;
        for (int64_t r = 0; r < np; r++)
            sink(ctx, r0 + r, ys + r * h);
    }
    free(xs), free(ys);
    return rc;
}

/* The pairs (row, slot, weight) of a routing (idx, w: m × k router rows, through an optional
 * expert map) that the cache cannot answer, grouped by slot, rows ascending within a slot. Two
 * router rows of one token that share a slot give it their summed weight, as the block forward
 * does. */
typedef struct pending {
    int64_t *start; /* ns + 1 */
    int64_t *tok;
    float *wt;
} pending;

static void pending_free(pending *p) { free(p->start), free(p->tok), free(p->wt); }

/* The candidate's slot s is the source's expert orig[s] (−1: a new expert). */
static int collect(sm_heldout *h, const sm_moe_block *cand, const int *orig, const int *idx, const float *w, double *y,
                   pending *p)
{
    const int k = cand->rule.top_k, ns = cand->n_experts;
    const int64_t m = h->m, hd = h->src.hidden;
    int64_t *pt = sm_alloc((size_t)(m * k), sizeof(int64_t));
    int *ps = sm_alloc((size_t)(m * k), sizeof(int));
    float *pw = sm_alloc_f32((size_t)(m * k));
    p->start = sm_zalloc((size_t)ns + 1, sizeof(int64_t));
    p->tok = sm_alloc((size_t)(m * k), sizeof(int64_t));
    p->wt = sm_alloc_f32((size_t)(m * k));
    int64_t *fill = sm_alloc((size_t)ns, sizeof(int64_t)), np = 0;
    int rc = pt && ps && pw && p->start && p->tok && p->wt && fill ? 0 : -1;
    for (int64_t t = 0; rc == 0 && t < m; t++) {
        int slots[64];
        float sw[64];
        const int nd = sm_route_fold(idx + t * k, w + t * k, k, cand->expert_map, slots, sw);
        for (int d = 0; d < nd; d++) {
            const int e = orig[slots[d]], at = e >= 0 ? h->pos[t * h->n + e] : -1;
            if (at >= 0) { /* the source's own output on this row */
                const float *o = h->out + (t * h->top + at) * hd;
                for (int64_t q = 0; q < hd; q++)
                    y[t * hd + q] += (double)sw[d] * o[q];
            } else {
                pt[np] = t, ps[np] = slots[d], pw[np++] = sw[d];
                p->start[slots[d] + 1]++;
            }
        }
    }
    for (int s = 0; rc == 0 && s < ns; s++)
        p->start[s + 1] += p->start[s];
    if (rc == 0)
        memcpy(fill, p->start, sizeof(int64_t) * (size_t)ns);
    for (int64_t q = 0; rc == 0 && q < np; q++) {
        const int64_t at = fill[ps[q]]++;
        p->tok[at] = pt[q], p->wt[at] = pw[q];
    }
    free(pt), free(ps), free(pw), free(fill);
    return rc;
}

/* Where run_rows' outputs go. */
typedef struct sink_ctx {
    sm_heldout *h;
    const int64_t *tok;
    const int *at;   /* the cache: each row's position */
    const float *wt; /* a new expert: its weight on each row, summed into y */
    double *y;
} sink_ctx;

static void sink_cache(void *ctx, int64_t r, const float *yr)
{
    sink_ctx *c = ctx;
    memcpy(c->h->out + (c->tok[r] * c->h->top + c->at[r]) * c->h->src.hidden, yr,
           sizeof(float) * (size_t)c->h->src.hidden);
}

static void sink_sum(void *ctx, int64_t r, const float *yr)
{
    sink_ctx *c = ctx;
    const int64_t hd = c->h->src.hidden;
    double *y = c->y + c->tok[r] * hd;
    for (int64_t q = 0; q < hd; q++)
        y[q] += (double)c->wt[r] * yr[q];
}

/* Every source expert on the rows that select it, into the cache at each row's position. */
static int cache_outputs(sm_heldout *h, const sm_monitor *mon)
{
    const int n = h->n;
    const int64_t m = h->m;
    int64_t *tok = sm_alloc((size_t)m, sizeof(int64_t));
    int *at = sm_alloc((size_t)m, sizeof(int));
    int rc = tok && at ? 0 : -1;
    for (int e = 0; rc == 0 && e < n; e++) {
        int64_t nt = 0;
        for (int64_t t = 0; t < m; t++)
            if (h->pos[t * n + e] >= 0)
                at[nt] = h->pos[t * n + e], tok[nt++] = t;
        sink_ctx sc = {h, tok, at, NULL, NULL};
        rc = nt ? run_rows(&h->src.experts[e], h->x, h->src.hidden, tok, nt, sink_cache, &sc, mon) : 0;
        sm_monitor_report(mon, (e + 1.0) / n, "held-out expert outputs");
    }
    free(tok), free(at);
    return rc;
}

/* The routed reference from the cache, and ||Y||² with the shared experts (gated) added. */
static int reference(sm_heldout *h, const float *w, const sm_monitor *mon)
{
    const sm_moe_block *b = &h->src;
    const int64_t hd = b->hidden, m = h->m;
    for (int64_t t = 0; t < m; t++)
        for (int j = 0; j < h->top; j++) {
            const float *o = h->out + (t * h->top + j) * hd;
            for (int64_t q = 0; q < hd; q++)
                h->ref[t * hd + q] += (double)w[t * h->top + j] * o[q];
        }
    double *sh = b->n_shared > 0 ? sm_zalloc((size_t)(m * hd), sizeof(double)) : NULL;
    int64_t *all = b->n_shared > 0 ? sm_alloc((size_t)m, sizeof(int64_t)) : NULL;
    float *one = b->n_shared > 0 ? sm_alloc_f32((size_t)m) : NULL;
    int rc = b->n_shared > 0 && !(sh && all && one) ? -1 : 0;
    for (int64_t t = 0; rc == 0 && t < m && b->n_shared > 0; t++) {
        all[t] = t;
        one[t] = b->shared_gate ? 1.0f / (1.0f + expf(-cblas_sdot((int)hd, h->x + t * hd, 1, b->shared_gate, 1))) : 1.0f;
    }
    for (int i = 0; rc == 0 && i < b->n_shared; i++) {
        sink_ctx sc = {h, all, NULL, one, sh};
        rc = run_rows(&b->shared[i], h->x, hd, all, m, sink_sum, &sc, mon);
    }
    h->den = 0.0;
    for (int64_t q = 0; rc == 0 && q < m * hd; q++) {
        const double yq = h->ref[q] + (sh ? sh[q] : 0.0);
        h->den += yq * yq;
    }
    free(sh), free(all), free(one);
    return rc;
}

sm_heldout *sm_heldout_new(const sm_moe_block *src, const float *x, int64_t m, const sm_monitor *mon)
{
    if (sm_moe_block_check(src) != 0)
        return NULL;
    if (src->expert_map || src->n_router != src->n_experts) {
        sm_err("held-out errors need a layer with one router row per expert");
        return NULL;
    }
    if (!x || m <= 0) {
        sm_err("held-out errors need held-out calibration rows");
        return NULL;
    }
    sm_heldout *h = sm_zalloc(1, sizeof *h);
    if (!h)
        return NULL;
    h->src = *src, h->x = x, h->m = m, h->n = src->n_experts, h->top = src->rule.top_k;
    const int n = h->n, k = h->top;
    const int64_t hd = src->hidden;
    float *z = sm_alloc_f32((size_t)(m * n)), *w = sm_alloc_f32((size_t)(m * k));
    int *idx = sm_alloc((size_t)(m * k), sizeof(int));
    h->pos = sm_alloc((size_t)(m * n), sizeof(int));
    h->out = sm_alloc_f32((size_t)(m * k * hd));
    h->ref = sm_zalloc((size_t)(m * hd), sizeof(double));
    int rc = z && w && idx && h->pos && h->out && h->ref ? 0 : -1;
    if (rc == 0) {
        sm_route_logits(x, m, hd, src->router, n, z);
        rc = sm_route_select(&src->rule, z, m, n, idx, w);
    }
    for (int64_t t = 0; rc == 0 && t < m; t++) {
        for (int e = 0; e < n; e++)
            h->pos[t * n + e] = -1;
        for (int j = 0; j < k; j++)
            h->pos[t * n + idx[t * k + j]] = j;
    }
    if (rc == 0)
        rc = cache_outputs(h, mon);
    if (rc == 0)
        rc = reference(h, w, mon);
    free(z), free(w), free(idx);
    if (rc != 0) {
        sm_heldout_free(h);
        return NULL;
    }
    return h;
}

static bool same_linear(const sm_linear *a, const sm_linear *b)
{
    return a->out == b->out && a->in == b->in && a->w == b->w && a->a == b->a && a->b == b->b && a->rank == b->rank &&
           a->wb == b->wb;
}

static bool same_expert(const sm_expert *a, const sm_expert *b)
{
    return same_linear(&a->gate, &b->gate) && same_linear(&a->up, &b->up) && same_linear(&a->down, &b->down);
}

/* The source expert a candidate's slot is (the same matrices), or −1. */
static int source_expert(const sm_heldout *h, const sm_expert *e)
{
    for (int i = 0; i < h->n; i++)
        if (same_expert(e, &h->src.experts[i]))
            return i;
    return -1;
}

int sm_heldout_error(sm_heldout *h, const sm_moe_block *cand, const sm_monitor *mon, double *rel)
{
    if (sm_moe_block_check(cand) != 0)
        return -1;
    bool variant = cand->hidden == h->src.hidden && cand->n_shared == h->src.n_shared &&
                   cand->shared_gate == h->src.shared_gate;
    for (int i = 0; variant && i < cand->n_shared; i++) /* the same matrices, wherever the views live */
        variant = same_expert(&cand->shared[i], &h->src.shared[i]);
    if (!variant)
        return sm_err("internal: a held-out error of a block that is not a variant of the cached layer");
    const int64_t m = h->m, hd = h->src.hidden;
    const int k = cand->rule.top_k, ns = cand->n_experts;
    float *z = sm_alloc_f32((size_t)(m * cand->n_router)), *w = sm_alloc_f32((size_t)(m * k));
    int *idx = sm_alloc((size_t)(m * k), sizeof(int)), *orig = sm_alloc((size_t)ns, sizeof(int));
    double *y = sm_zalloc((size_t)(m * hd), sizeof(double));
    pending p = {0};
    int rc = z && w && idx && orig && y ? 0 : -1;
    if (rc == 0) {
        sm_route_logits(h->x, m, hd, cand->router, cand->n_router, z);
        rc = sm_route_select(&cand->rule, z, m, cand->n_router, idx, w);
    }
    for (int s = 0; rc == 0 && s < ns; s++)
        orig[s] = source_expert(h, &cand->experts[s]);
    if (rc == 0)
        rc = collect(h, cand, orig, idx, w, y, &p);
    for (int s = 0; rc == 0 && s < ns; s++) {
        const int64_t n0 = p.start[s], nt = p.start[s + 1] - n0;
        sink_ctx sc = {h, p.tok + n0, NULL, p.wt + n0, y};
        rc = nt ? run_rows(&cand->experts[s], h->x, hd, p.tok + n0, nt, sink_sum, &sc, mon) : 0;
        sm_monitor_report(mon, (s + 1.0) / ns, "held-out output error");
    }
    double num = 0.0;
    for (int64_t q = 0; rc == 0 && q < m * hd; q++) {
        const double d = h->ref[q] - y[q];
        num += d * d;
    }
    if (rc == 0)
        *rel = h->den > 0.0 ? sqrt(num / h->den) : sqrt(num);
    free(z), free(w), free(idx), free(orig), free(y);
    pending_free(&p);
    return rc;
}
