#include "moe/moe.h"

#include <cblas.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "util/diag.h"
#include "util/activation.h"
#include "util/matmul.h"
#include "util/mem.h"

sm_expert sm_expert_dense(int64_t hidden, int64_t inter, const float *gate, const float *up,
                          const float *down)
{
    sm_expert e = {
        .gate = {inter, hidden, gate, NULL, NULL, 0},
        .up = {inter, hidden, up, NULL, NULL, 0},
        .down = {hidden, inter, down, NULL, NULL, 0},
    };
    return e;
}

static int linear_check(const sm_linear *l, int64_t out, int64_t in, const char *what)
{
    if (l->out != out || l->in != in)
        return sm_err("%s is %lld×%lld, expected %lld×%lld", what, (long long)l->out,
                      (long long)l->in, (long long)out, (long long)in);
    if (out <= 0 || in <= 0 || out > INT_MAX || in > INT_MAX)
        return sm_err("%s has unsupported dimensions", what);
    if (l->w || l->wb)
        return 0;
    if (!l->a || !l->b || l->rank < 1 || l->rank > INT_MAX)
        return sm_err("%s has no weights", what);
    return 0;
}

int sm_expert_check(const sm_expert *e, int64_t hidden)
{
    int64_t inter = e->gate.out;
    if (linear_check(&e->gate, inter, hidden, "expert gate") != 0 ||
        linear_check(&e->up, inter, hidden, "expert up") != 0 ||
        linear_check(&e->down, hidden, inter, "expert down") != 0)
        return -1;
    return 0;
}

void sm_linear_forward(const sm_linear *l, const float *x, int64_t m, float *y, float *tmp)
{
    if (m <= 0)
        return;
    if (l->w || l->wb) { /* bf16 when held in bf16 */
        sm_matmul(m, l->out, l->in, x, l->w, l->wb, 0.0f, y);
        return;
    }
    /* y = (x bᵀ) aᵀ */
    sm_matmul(m, l->rank, l->in, x, l->b, NULL, 0.0f, tmp);
    sm_matmul(m, l->out, l->rank, tmp, l->a, NULL, 0.0f, y);
}

static int64_t linear_tmp(const sm_linear *l) { return l->w || l->wb ? 0 : l->rank; }

static int64_t expert_tmp_cols(const sm_expert *e)
{
    int64_t t = linear_tmp(&e->gate);
    t = linear_tmp(&e->up) > t ? linear_tmp(&e->up) : t;
    return linear_tmp(&e->down) > t ? linear_tmp(&e->down) : t;
}

/* g = SiLU(g)·u, elementwise over len values. */
static void swiglu(float *g, const float *u, int64_t len)
{
    for (int64_t k = 0; k < len; k++)
        g[k] = g[k] / (1.0f + expf(-g[k])) * u[k];
}

/* Scratch-explicit forward: g, u hold m×I, tmp m×(max rank) floats. */
static void expert_forward_ws(const sm_expert *e, const float *x, int64_t m, float *y, float *g,
                              float *u, float *tmp)
{
    sm_linear_forward(&e->gate, x, m, g, tmp);
    sm_linear_forward(&e->up, x, m, u, tmp);
    swiglu(g, u, m * e->gate.out);
    sm_linear_forward(&e->down, g, m, y, tmp);
}

bool sm_expert_is_bf16(const sm_expert *e)
{
    return e->gate.wb && e->up.wb && e->down.wb;
}

/* Expert i of b's routed experts, then of its shared ones (i < n_experts + n_shared). */
static const sm_expert *block_expert(const sm_moe_block *b, int i)
{
    return i < b->n_experts ? &b->experts[i] : &b->shared[i - b->n_experts];
}

bool sm_moe_experts_side_by_side(const sm_moe_block *b)
{
    if (!sm_matmul_on_pool_threads())
        return false;
    for (int i = 0; i < b->n_experts + b->n_shared; i++)
        if (!sm_expert_is_bf16(block_expert(b, i)))
            return false;
    return b->n_experts + b->n_shared > 0;
}

/* expert_forward_ws for a bf16 expert, on x already rounded to bf16 (x16: m rows, readable for
 * sm_matmul_bf16_rows(m)); g16 holds as many rows of I, and so do g and u (pad rows: scratch).
 * The products take sources rounded once, which is what sm_matmul does per product, without
 * rounding x twice (gate and up) or the activations in a separate pass; SiLU's exp is the vector
 * one (activation.h). y: m rows, or with y_padded sm_matmul_bf16_rows(m). */
static void expert_forward_b16(const sm_expert *e, const uint16_t *x16, int64_t m, float *y, bool y_padded, float *g,
                               float *u, uint16_t *g16)
{
    const int64_t inter = e->gate.out, h = e->gate.in, len = m * inter;
    sm_matmul_bf16_pad(m, inter, h, x16, e->gate.wb, g);
    sm_matmul_bf16_pad(m, inter, h, x16, e->up.wb, u);
    sm_swiglu_bf16(g16, g, u, (size_t)len); /* (vectorized exp: activation.h) */
    if (y_padded)
        sm_matmul_bf16_pad(m, h, inter, g16, e->down.wb, y);
    else
        sm_matmul_bf16(m, h, inter, g16, e->down.wb, 0.0f, y);
}

/* bf16 scratch for up to m rows of an expert of intermediate size inter and width h: x16 then
 * g16 (sm_matmul_bf16_rows(m) rows each, a multiple of 16: g16 starts on a cache line as x16
 * does, which AMX's tile loads need to run at speed). Zeroed: pad rows are never garbage. */
static uint16_t *b16_scratch(int64_t m, int64_t h, int64_t inter)
{
    return sm_zalloc_lines((size_t)(sm_matmul_bf16_rows(m) * (h + inter)), sizeof(uint16_t));
}

int sm_expert_forward(const sm_expert *e, const float *x, int64_t m, float *y)
{
    if (m <= 0)
        return 0;
    const int64_t inter = e->gate.out, tc = expert_tmp_cols(e);
    const bool b16 = sm_expert_is_bf16(e);
    const int64_t gm = b16 ? sm_matmul_bf16_rows(m) : m; /* (bf16: room for the kernel's pad rows) */
    float *g = sm_alloc_f32((size_t)(gm * inter)), *u = sm_alloc_f32((size_t)(gm * inter));
    float *tmp = tc ? sm_alloc_f32((size_t)(m * tc)) : NULL;
    uint16_t *s16 = b16 ? b16_scratch(m, e->gate.in, inter) : NULL;
    if (!g || !u || (tc && !tmp) || (b16 && !s16)) {
        free(g), free(u), free(tmp), free(s16);
        return -1;
    }
    if (b16) {
        sm_bf16_pack(s16, x, (size_t)(m * e->gate.in));
        expert_forward_b16(e, s16, m, y, false, g, u, s16 + sm_matmul_bf16_rows(m) * e->gate.in);
    } else {
        expert_forward_ws(e, x, m, y, g, u, tmp);
    }
    free(g), free(u), free(tmp), free(s16);
    return 0;
}

int sm_moe_block_check(const sm_moe_block *b)
{
    if (!b || b->hidden <= 0 || b->hidden > INT_MAX || !b->router || b->n_router <= 0)
        return sm_err("MoE block has no router");
    if (b->n_experts <= 0 || !b->experts)
        return sm_err("MoE block has no experts");
    if (!b->expert_map && b->n_router != b->n_experts)
        return sm_err("MoE block: %d router rows but %d experts and no expert map", b->n_router,
                      b->n_experts);
    if (b->rule.top_k < 1 || b->rule.top_k > b->n_router || b->rule.top_k > 64)
        return sm_err("MoE block: top-%d of %d router rows", b->rule.top_k, b->n_router);
    for (int r = 0; b->expert_map && r < b->n_router; r++)
        if (b->expert_map[r] < 0 || b->expert_map[r] >= b->n_experts)
            return sm_err("MoE block: router row %d maps to expert %d of %d", r,
                          b->expert_map[r], b->n_experts);
    for (int i = 0; i < b->n_experts; i++)
        if (sm_expert_check(&b->experts[i], b->hidden) != 0)
            return sm_err_prefix("expert %d", i);
    if (b->n_shared > 0 && !b->shared)
        return sm_err("MoE block: shared experts missing");
    for (int i = 0; i < b->n_shared; i++)
        if (sm_expert_check(&b->shared[i], b->hidden) != 0)
            return sm_err_prefix("shared expert %d", i);
    return 0;
}

/* Per-slot token lists: tokens of slot s are tok[start[s] .. start[s+1]) with weights wt. */
typedef struct slot_lists {
    int64_t *start, *tok;
    float *wt;
} slot_lists;

static int build_slot_lists(const sm_moe_block *b, const int *idx, const float *w, int64_t m,
                            slot_lists *sl)
{
    const int k = b->rule.top_k, ns = b->n_experts;
    sl->start = sm_zalloc((size_t)ns + 1, sizeof(int64_t));
    sl->tok = sm_alloc((size_t)(m * k), sizeof(int64_t));
    sl->wt = sm_alloc_f32((size_t)(m * k));
    if (!sl->start || !sl->tok || !sl->wt)
        return -1;
    int slots[64];
    float sw[64];
    /* Pass 1 counts distinct slots per token, pass 2 fills (tokens ascending within a slot). */
    for (int pass = 0; pass < 2; pass++) {
        int64_t *fill = NULL;
        if (pass == 1) {
            for (int s = 0; s < ns; s++)
                sl->start[s + 1] += sl->start[s];
            fill = sm_alloc((size_t)ns, sizeof(int64_t));
            if (!fill)
                return -1;
            memcpy(fill, sl->start, sizeof(int64_t) * (size_t)ns);
        }
        for (int64_t t = 0; t < m; t++) {
            const int nd = sm_route_fold(idx + t * k, w + t * k, k, b->expert_map, slots, sw);
            for (int d = 0; d < nd; d++) {
                if (pass == 0) {
                    sl->start[slots[d] + 1]++;
                } else {
                    int64_t pos = fill[slots[d]]++;
                    sl->tok[pos] = t;
                    sl->wt[pos] = sw[d];
                }
            }
        }
        free(fill);
    }
    return 0;
}

static float sigmoidf(float v) { return 1.0f / (1.0f + expf(-v)); }

double sm_moe_panel_flop = 16e9;

/* Rows of an expert's forward between two monitor checks: about sm_moe_panel_flop of work (an
 * upper bound: a factored expert does less), a multiple of 16, at least 48 (small products take
 * a slow path, util/matmul.h). A slot within one panel runs exactly as one product. */
static int64_t panel_rows(const sm_expert *e, int64_t hidden)
{
    double per_row = 6.0 * (double)hidden * (double)e->gate.out;
    double p = sm_moe_panel_flop / (per_row > 1 ? per_row : 1);
    int64_t r = p > 1e15 ? (int64_t)1e15 : (int64_t)p;
    r -= r % 16;
    return r < 48 ? 48 : r;
}

int sm_moe_forward(const sm_moe_block *b, const float *x, int64_t m, float *y,
                   const sm_moe_trace *trace)
{
    return sm_moe_forward_mon(b, x, m, y, trace, NULL);
}

int sm_moe_forward_mon(const sm_moe_block *b, const float *x, int64_t m, float *y,
                       const sm_moe_trace *trace, const sm_monitor *mon)
{
    if (sm_moe_block_check(b) != 0)
        return -1;
    if (m <= 0)
        return 0;
    if (m > INT_MAX / 64)
        return sm_err("MoE block: %lld tokens in one block is too many", (long long)m);
    const int64_t h = b->hidden;
    const int k = b->rule.top_k;
    int64_t inter_max = 0, tc_max = 0, rows16 = 0; /* rows16: a bf16 expert's largest panel */
    bool routed16 = false;
    for (int i = 0; i < b->n_experts + b->n_shared; i++) {
        const sm_expert *e = block_expert(b, i);
        const int64_t pr = panel_rows(e, h) < m ? panel_rows(e, h) : m;
        inter_max = e->gate.out > inter_max ? e->gate.out : inter_max;
        tc_max = expert_tmp_cols(e) > tc_max ? expert_tmp_cols(e) : tc_max;
        rows16 = sm_expert_is_bf16(e) && pr > rows16 ? pr : rows16;
        routed16 |= i < b->n_experts && sm_expert_is_bf16(e);
    }
    float *z = trace && trace->logits ? trace->logits : sm_alloc_f32((size_t)(m * b->n_router));
    int *idx = trace && trace->idx ? trace->idx : sm_alloc((size_t)(m * k), sizeof(int));
    float *w = trace && trace->w ? trace->w : sm_alloc_f32((size_t)(m * k));
    /* (room for the bf16 kernels' pad rows: sm_matmul_bf16_pad) */
    const int64_t mp = sm_matmul_bf16_rows(m);
    float *xs = sm_alloc_f32((size_t)(m * h)), *ys = sm_alloc_f32((size_t)(mp * h));
    float *g = sm_alloc_f32((size_t)(mp * inter_max)), *u = sm_alloc_f32((size_t)(mp * inter_max));
    float *tmp = sm_alloc_f32((size_t)(m * (tc_max ? tc_max : 1)));
    uint16_t *s16 = NULL; /* bf16 experts' scratch: rows of x16, then of g16 */
    uint16_t *x16 = NULL; /* x rounded to bf16 once, for the routed bf16 experts' gathers */
    slot_lists sl = {0};
    int rc = -1;
    if (!z || !idx || !w || !xs || !ys || !g || !u || !tmp || (rows16 && !(s16 = b16_scratch(rows16, h, inter_max))))
        goto done;
    if (routed16) {
        if (!(x16 = sm_alloc((size_t)(m * h), sizeof *x16)))
            goto done;
        sm_bf16_pack(x16, x, (size_t)(m * h));
    }
    uint16_t *g16 = s16 ? s16 + sm_matmul_bf16_rows(rows16) * h : NULL;
    sm_route_logits(x, m, h, b->router, b->n_router, z);
    if (sm_route_select(&b->rule, z, m, b->n_router, idx, w) != 0 ||
        build_slot_lists(b, idx, w, m, &sl) != 0)
        goto done;
    memset(y, 0, sizeof(float) * (size_t)(m * h));
    for (int s = 0; s < b->n_experts; s++) {
        const int64_t n0 = sl.start[s], ms = sl.start[s + 1] - n0, pr = panel_rows(&b->experts[s], h);
        for (int64_t p0 = 0; p0 < ms; p0 += pr) {
            const int64_t np = ms - p0 < pr ? ms - p0 : pr, *tok = sl.tok + n0 + p0;
            if (sm_monitor_check(mon))
                goto done;
            if (sm_expert_is_bf16(&b->experts[s])) { /* the rows gathered already rounded */
                for (int64_t r = 0; r < np; r++)
                    memcpy(s16 + r * h, x16 + tok[r] * h, sizeof *s16 * (size_t)h);
                expert_forward_b16(&b->experts[s], s16, np, ys, true, g, u, g16);
            } else {
                for (int64_t r = 0; r < np; r++)
                    memcpy(xs + r * h, x + tok[r] * h, sizeof(float) * (size_t)h);
                expert_forward_ws(&b->experts[s], xs, np, ys, g, u, tmp);
            }
            for (int64_t r = 0; r < np; r++)
                cblas_saxpy((int)h, sl.wt[n0 + p0 + r], ys + r * h, 1, y + tok[r] * h, 1);
        }
    }
    if (b->n_shared > 0) {
        /* Sum of the shared experts on all tokens, then gated into y. */
        memset(xs, 0, sizeof(float) * (size_t)(m * h));
        for (int i = 0; i < b->n_shared; i++) {
            const int64_t pr = panel_rows(&b->shared[i], h);
            for (int64_t p0 = 0; p0 < m; p0 += pr) {
                const int64_t np = m - p0 < pr ? m - p0 : pr;
                if (sm_monitor_check(mon))
                    goto done;
                if (sm_expert_is_bf16(&b->shared[i])) {
                    sm_bf16_pack(s16, x + p0 * h, (size_t)(np * h));
                    expert_forward_b16(&b->shared[i], s16, np, ys + p0 * h, false, g, u, g16);
                } else {
                    expert_forward_ws(&b->shared[i], x + p0 * h, np, ys + p0 * h, g, u, tmp);
                }
            }
            for (int64_t e = 0; e < m * h; e++)
                xs[e] += ys[e];
        }
        for (int64_t t = 0; t < m; t++) {
            float gate = 1.0f;
            if (b->shared_gate)
                gate = sigmoidf(cblas_sdot((int)h, x + t * h, 1, b->shared_gate, 1));
            cblas_saxpy((int)h, gate, xs + t * h, 1, y + t * h, 1);
        }
    }
    rc = 0;
done:
    if (!(trace && trace->logits))
        free(z);
    if (!(trace && trace->idx))
        free(idx);
    if (!(trace && trace->w))
        free(w);
    free(xs), free(ys), free(g), free(u), free(tmp), free(s16), free(x16);
    free(sl.start), free(sl.tok), free(sl.wt);
    return rc;
}

void sm_error_acc_add(sm_error_acc *acc, const float *ref, const float *y, int64_t len)
{
    double num = 0.0, den = 0.0;
    for (int64_t e = 0; e < len; e++) {
        double d = (double)ref[e] - y[e];
        num += d * d;
        den += (double)ref[e] * ref[e];
    }
    acc->num += num;
    acc->den += den;
}

double sm_error_acc_value(const sm_error_acc *acc)
{
    return acc->den > 0.0 ? sqrt(acc->num / acc->den) : sqrt(acc->num);
}

int sm_moe_output_error(const sm_moe_block *ref, const sm_moe_block *test, const float *x,
                        int64_t m, int64_t block, double *rel)
{
    if (ref->hidden != test->hidden)
        return sm_err("MoE blocks of different widths (%lld vs %lld)", (long long)ref->hidden,
                      (long long)test->hidden);
    if (block <= 0)
        block = 256;
    block = block < m ? block : m;
    const int64_t h = ref->hidden;
    float *ya = sm_alloc_f32((size_t)(block * h)), *yb = sm_alloc_f32((size_t)(block * h));
    sm_error_acc acc = {0, 0};
    int rc = ya && yb ? 0 : -1;
    for (int64_t t0 = 0; rc == 0 && t0 < m; t0 += block) {
        int64_t mb = m - t0 < block ? m - t0 : block;
        rc = sm_moe_forward(ref, x + t0 * h, mb, ya, NULL);
        if (rc == 0)
            rc = sm_moe_forward(test, x + t0 * h, mb, yb, NULL);
        if (rc == 0)
            sm_error_acc_add(&acc, ya, yb, mb * h);
    }
    free(ya), free(yb);
    if (rc == 0)
        *rel = sm_error_acc_value(&acc);
    return rc;
}
