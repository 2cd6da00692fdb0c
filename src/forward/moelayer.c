/* moelayer: one MoE layer as an fp32 block (see moelayer.h). */
#include "forward/moelayer.h"
#include "moe/route.h"
#include "util/diag.h"
#include "util/matmul.h"
#include "util/mem.h"

#include <stdlib.h>
#include <string.h>

/* A weight in fp32, converted in panels of rows between monitor checks (a Mixtral expert's
 * matrix is 59 M values, a few hundred ms of conversion and page faults). */
static float *load_f32(const sm_model *m, sm_wrole role, int layer, int index, int64_t *rows, const sm_monitor *mon)
{
    sm_weight w;
    if (sm_model_weight(m, role, layer, index, &w))
        return NULL;
    float *p = sm_alloc_f32((size_t)(w.rows * w.cols));
    if (!p)
        return NULL;
    const int64_t panel = w.cols > 0 && ((int64_t)1 << 22) / w.cols > 0 ? ((int64_t)1 << 22) / w.cols : 1;
    int rc = 0;
    for (int64_t r0 = 0; rc == 0 && r0 < w.rows; r0 += panel)
        rc = sm_monitor_check(mon) ? -1 : sm_weight_rows_to_f32(&w, r0, w.rows - r0 < panel ? w.rows - r0 : panel,
                                                                 p + r0 * w.cols);
    sm_weight_release(&w);
    if (rc) {
        free(p);
        return NULL;
    }
    if (rows)
        *rows = w.rows;
    return p;
}

static int load(const sm_model *m, int layer, bool experts, const sm_monitor *mon, sm_moe_layer *o)
{
    const sm_config *c = sm_model_config(m);
    memset(o, 0, sizeof *o);
    o->layer = layer;
    if (layer < 0 || layer >= c->n_layers || !c->is_moe[layer])
        return sm_err("layer %d is not a MoE layer of this model", layer);
    int n = sm_model_layer_experts(m, layer), nr = sm_model_router_rows(m, layer);
    int64_t rows;
    o->block.n_experts = n; /* so that a failure part-way frees what was loaded */
    if (!(o->router = load_f32(m, SM_W_ROUTER, layer, 0, NULL, NULL)))
        goto fail;
    if (experts) {
        o->gate = sm_zalloc((size_t)n, sizeof *o->gate);
        o->up = sm_zalloc((size_t)n, sizeof *o->up);
        o->down = sm_zalloc((size_t)n, sizeof *o->down);
        o->experts = sm_zalloc((size_t)n, sizeof *o->experts);
        if (!o->gate || !o->up || !o->down || !o->experts)
            goto fail;
        for (int e = 0; e < n; e++) {
            if (sm_monitor_check(mon))
                goto fail;
            sm_linear *lin[3] = {&o->experts[e].gate, &o->experts[e].up, &o->experts[e].down};
            float **dense[3] = {&o->gate[e], &o->up[e], &o->down[e]};
            for (int k = 0; k < 3; k++) {
                sm_weight fa, fb;
                int f = sm_model_expert_factors(m, layer, e, k, &fa, &fb);
                if (f < 0)
                    goto fail;
                if (f == 0) {
                    if (!(*dense[k] = load_f32(m, SM_W_EXPERT_GATE + k, layer, e, &rows, mon)))
                        goto fail;
                    *lin[k] = (sm_linear){.out = rows, .in = k == 2 ? o->inter : c->hidden, .w = *dense[k]};
                } else {
                    if (!o->fac && !(o->fac = sm_zalloc((size_t)n * 6, sizeof *o->fac)))
                        goto fail;
                    float **a = &o->fac[(e * 3 + k) * 2], **b = a + 1;
                    if (!(*a = sm_alloc_f32((size_t)(fa.rows * fa.cols))) ||
                        !(*b = sm_alloc_f32((size_t)(fb.rows * fb.cols))))
                        goto fail;
                    if (sm_weight_to_f32(&fa, *a) || sm_weight_to_f32(&fb, *b))
                        goto fail;
                    rows = fa.rows;
                    *lin[k] = (sm_linear){.out = fa.rows, .in = fb.cols, .a = *a, .b = *b, .rank = fa.cols};
                }
                if (k == 0)
                    o->inter = rows;
            }
        }
        const int *map = sm_model_expert_map(m, layer);
        if (map) {
            if (!(o->expert_map = sm_alloc((size_t)nr, sizeof *o->expert_map)))
                goto fail;
            memcpy(o->expert_map, map, sizeof(int) * (size_t)nr);
        }
    } else {
        sm_weight w, wb;
        int f = sm_model_expert_factors(m, layer, 0, 0, &w, &wb);
        if (f < 0 || (f == 0 && sm_model_weight(m, SM_W_EXPERT_GATE, layer, 0, &w)))
            goto fail;
        o->inter = w.rows;
    }
    if (c->n_shared > 0 && sm_model_has(m, SM_W_SHARED_GATE, layer)) {
        if (!(o->shared_w[0] = load_f32(m, SM_W_SHARED_GATE, layer, 0, &rows, mon)))
            goto fail;
        o->shared_inter = rows;
        if (!(o->shared_w[1] = load_f32(m, SM_W_SHARED_UP, layer, 0, NULL, mon)) ||
            !(o->shared_w[2] = load_f32(m, SM_W_SHARED_DOWN, layer, 0, NULL, mon)))
            goto fail;
        o->shared = sm_expert_dense(c->hidden, rows, o->shared_w[0], o->shared_w[1], o->shared_w[2]);
        if (c->shared_gate && !(o->shared_gate = load_f32(m, SM_W_SHARED_EXPERT_GATE, layer, 0, NULL, NULL)))
            goto fail;
    }
    o->block = (sm_moe_block){
        .hidden = c->hidden, .n_router = nr, .router = o->router, .rule = sm_route_rule_from_config(c),
        .n_experts = experts ? n : 0, .experts = o->experts, .expert_map = experts ? o->expert_map : NULL,
        .n_shared = o->shared_inter ? 1 : 0, .shared = o->shared_inter ? &o->shared : NULL,
        .shared_gate = o->shared_gate,
    };
    return 0;
fail:
    sm_err_prefix("layer %d", layer);
    sm_moe_layer_free(o);
    return -1;
}

int sm_moe_layer_load(const sm_model *m, int layer, sm_moe_layer *out)
{
    return load(m, layer, true, NULL, out);
}

int sm_moe_layer_load_mon(const sm_model *m, int layer, const sm_monitor *mon, sm_moe_layer *out)
{
    return load(m, layer, true, mon, out);
}

int sm_moe_layer_load_shell(const sm_model *m, int layer, sm_moe_layer *out)
{
    return load(m, layer, false, NULL, out);
}

void sm_moe_layer_free(sm_moe_layer *l)
{
    if (!l)
        return;
    int n = l->block.n_experts;
    for (int e = 0; l->fac && e < n * 6; e++)
        free(l->fac[e]);
    free(l->fac);
    free(l->expert_map);
    for (int e = 0; e < n; e++) {
        if (l->gate)
            free(l->gate[e]);
        if (l->up)
            free(l->up[e]);
        if (l->down)
            free(l->down[e]);
    }
    free(l->gate);
    free(l->up);
    free(l->down);
    free(l->experts);
    free(l->router);
    for (int i = 0; i < 3; i++)
        free(l->shared_w[i]);
    free(l->shared_gate);
    memset(l, 0, sizeof *l);
}

uint64_t sm_moe_layer_bytes(const sm_model *m, int layer)
{
    const sm_config *c = sm_model_config(m);
    if (layer < 0 || layer >= c->n_layers || !c->is_moe[layer])
        return 0;
    uint64_t n = (uint64_t)sm_model_layer_experts(m, layer), H = (uint64_t)c->hidden;
    uint64_t bytes = n * H * 4;
    sm_weight w;
    if (sm_model_weight(m, SM_W_EXPERT_GATE, layer, 0, &w) == 0)
        bytes += n * 3 * (uint64_t)w.rows * H * 4;
    if (c->n_shared > 0 && sm_model_weight(m, SM_W_SHARED_GATE, layer, 0, &w) == 0)
        bytes += 3 * (uint64_t)w.rows * H * 4;
    return bytes;
}

/* ---- bf16 copies ---- */

static int64_t expert_dense_elems(const sm_expert *e)
{
    const sm_linear *l[3] = {&e->gate, &e->up, &e->down};
    int64_t n = 0;
    for (int i = 0; i < 3; i++)
        n += l[i]->w ? l[i]->out * l[i]->in : 0;
    return n;
}

/* Give e's dense fp32 matrices bf16 copies taken from *store (advanced). */
static void expert_to_bf16(sm_expert *e, uint16_t **store)
{
    sm_linear *l[3] = {&e->gate, &e->up, &e->down};
    for (int i = 0; i < 3; i++)
        if (l[i]->w) {
            size_t n = (size_t)(l[i]->out * l[i]->in);
            sm_bf16_pack(*store, l[i]->w, n);
            l[i]->wb = *store;
            *store += n;
        }
}

int sm_moe_bf16_make(const sm_moe_block *src, sm_moe_bf16 *out)
{
    memset(out, 0, sizeof *out);
    out->block = *src;
    int64_t total = 0;
    for (int e = 0; e < src->n_experts; e++)
        total += expert_dense_elems(&src->experts[e]);
    if (src->n_shared > 0)
        total += expert_dense_elems(src->shared);
    if (src->n_shared > 1)
        return sm_err("MoE block: %d shared experts (at most one is supported)", src->n_shared);
    out->experts = sm_alloc(src->n_experts > 0 ? (size_t)src->n_experts : 1, sizeof *out->experts);
    out->store = sm_alloc(total > 0 ? (size_t)total : 1, sizeof *out->store);
    if (!out->experts || !out->store) {
        sm_moe_bf16_free(out);
        return -1;
    }
    uint16_t *p = out->store;
    for (int e = 0; e < src->n_experts; e++) {
        out->experts[e] = src->experts[e];
        expert_to_bf16(&out->experts[e], &p);
    }
    out->block.experts = out->experts;
    if (src->n_shared > 0) {
        out->shared = *src->shared;
        expert_to_bf16(&out->shared, &p);
        out->block.shared = &out->shared;
    }
    return 0;
}

/* Forget the dense fp32 matrices of e (factored ones stay). */
static void drop_f32(sm_expert *e)
{
    sm_linear *l[3] = {&e->gate, &e->up, &e->down};
    for (int i = 0; i < 3; i++)
        if (!l[i]->a)
            l[i]->w = NULL;
}

int sm_moe_bf16_from_layer(sm_moe_layer *l, sm_moe_bf16 *out)
{
    if (sm_moe_bf16_make(&l->block, out))
        return -1;
    for (int e = 0; e < out->block.n_experts; e++)
        drop_f32(&out->experts[e]);
    if (out->block.n_shared > 0)
        drop_f32(&out->shared);
    for (int e = 0; l->experts && e < l->block.n_experts; e++)
        drop_f32(&l->experts[e]); /* no pointer into what is freed below survives */
    if (l->block.n_shared > 0) {
        sm_linear *sl[3] = {&l->shared.gate, &l->shared.up, &l->shared.down};
        for (int i = 0; i < 3; i++)
            sl[i]->w = NULL;
    }
    for (int e = 0; e < l->block.n_experts; e++) {
        if (l->gate) {
            free(l->gate[e]);
            l->gate[e] = NULL;
        }
        if (l->up) {
            free(l->up[e]);
            l->up[e] = NULL;
        }
        if (l->down) {
            free(l->down[e]);
            l->down[e] = NULL;
        }
    }
    for (int i = 0; i < 3; i++) {
        free(l->shared_w[i]);
        l->shared_w[i] = NULL;
    }
    return 0;
}

void sm_moe_bf16_free(sm_moe_bf16 *b)
{
    if (!b)
        return;
    free(b->experts);
    free(b->store);
    memset(b, 0, sizeof *b);
}
