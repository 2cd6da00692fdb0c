/* moelayer: one MoE layer as an fp32 block (see moelayer.h). */
#include "forward/moelayer.h"
#include "forward/split.h"
#include "moe/route.h"
#include "model/dtype.h"
#include "util/diag.h"
#include "util/matmul.h"
#include "util/mem.h"

#include <stdlib.h>
#include <string.h>

/* Rows of a weight between two monitor checks: about 4 M values (a Mixtral expert's matrix is
 * 59 M values, a few hundred ms of conversion and page faults). */
static int64_t panel_of(const sm_weight *w)
{
    return w->cols > 0 && ((int64_t)1 << 22) / w->cols > 0 ? ((int64_t)1 << 22) / w->cols : 1;
}

/* A weight in fp32, in panels between monitor checks. 0, or -1 (with a message on the calling
 * thread). */
static int convert_rows(const sm_weight *w, float *p, const sm_monitor *mon, bool report)
{
    const int64_t panel = panel_of(w);
    for (int64_t r0 = 0; r0 < w->rows; r0 += panel) {
        if (report ? sm_monitor_check(mon) != 0 : sm_monitor_cancelled(mon))
            return -1;
        if (sm_weight_rows_to_f32(w, r0, w->rows - r0 < panel ? w->rows - r0 : panel, p + r0 * w->cols))
            return -1;
    }
    return 0;
}

/* A weight in fp32 (the router, shared experts: one matrix each). */
static float *load_f32(const sm_model *m, sm_wrole role, int layer, int index, int64_t *rows, const sm_monitor *mon)
{
    sm_weight w;
    if (sm_model_weight(m, role, layer, index, &w))
        return NULL;
    float *p = sm_alloc_f32((size_t)(w.rows * w.cols));
    if (!p)
        return NULL;
    int rc = convert_rows(&w, p, mon, true);
    sm_weight_release(&w);
    if (rc) {
        free(p);
        return NULL;
    }
    if (rows)
        *rows = w.rows;
    return p;
}

/* A layer's matrices are converted (and packed to bf16) one whole matrix per job, over the
 * forward pass's threads (split.h): the layer is bit-identical to a one-thread load, and the
 * page faults of the fresh copies (most of a conversion's time) are spread over the threads. */

/* A bf16 matrix used where it is mapped: its values are checked finite in panels between
 * cancellation checks; -1 when cancelled or a value is not finite (no message: convert_all says
 * which). Its pages stay mapped (released with the layer). */
static int check_bf16(const sm_weight *w, const sm_monitor *mon)
{
    const int64_t panel = panel_of(w);
    const uint16_t *src = sm_weight_bf16(w);
    for (int64_t r0 = 0; r0 < w->rows; r0 += panel) {
        size_t count = (size_t)((w->rows - r0 < panel ? w->rows - r0 : panel) * w->cols);
        if (sm_monitor_cancelled(mon))
            return -1;
        if (sm_first_nonfinite(SM_DT_BF16, src + r0 * w->cols, count) != count)
            return -1;
    }
    return 0;
}

typedef struct {
    const sm_weight *w; /* [n] dense expert matrices as stored */
    float **f32;        /* [n] their fp32 copies, or (f32[j] NULL) bf16 ones used where mapped */
    const sm_monitor *mon;
} convert_jobs;

static int convert_one(void *ctx, int j) /* an sm_split_fn */
{
    convert_jobs *c = ctx;
    if (!c->f32[j])
        return check_bf16(&c->w[j], c->mon);
    int rc = convert_rows(&c->w[j], c->f32[j], c->mon, false);
    sm_weight_release(&c->w[j]);
    return rc;
}

/* Run the n jobs; 0, or -1 with the message of the first one that failed (or "cancelled"). */
static int convert_all(convert_jobs *c, int n)
{
    int bad = sm_split_run(n, convert_one, c);
    if (bad == n)
        return 0;
    if (sm_monitor_check(c->mon))
        return -1;
    const sm_weight *w = &c->w[bad]; /* the fp32 conversion names the value and where it is */
    float *f = c->f32[bad] ? c->f32[bad] : sm_alloc_f32((size_t)(w->rows * w->cols));
    int rc = f && convert_rows(w, f, NULL, true) ? -1 : f ? sm_err("internal: weight conversion failed") : -1;
    if (f != c->f32[bad])
        free(f);
    return rc;
}

/* The routed experts of o (o->block.n_experts), dense matrices converted on every thread: to
 * fp32, or with raw16 those stored in bf16 used where they are mapped (w NULL, wb set; their
 * views kept in o->mapped). */
static int load_experts(const sm_model *m, int layer, bool raw16, const sm_monitor *mon, sm_moe_layer *o)
{
    const sm_config *c = sm_model_config(m);
    const int n = o->block.n_experts;
    const size_t nm = (size_t)n * 3;
    o->gate = sm_zalloc((size_t)n, sizeof *o->gate);
    o->up = sm_zalloc((size_t)n, sizeof *o->up);
    o->down = sm_zalloc((size_t)n, sizeof *o->down);
    o->experts = sm_zalloc((size_t)n, sizeof *o->experts);
    sm_weight *jw = sm_alloc(nm, sizeof *jw);
    float **jf = sm_zalloc(nm, sizeof *jf);
    int nj = 0, rc = -1;
    if (raw16 && !(o->mapped = sm_alloc(nm, sizeof *o->mapped)))
        goto out;
    if (!o->gate || !o->up || !o->down || !o->experts || !jw || !jf)
        goto out;
    for (int e = 0; e < n; e++) {
        if (sm_monitor_check(mon))
            goto out;
        sm_linear *lin[3] = {&o->experts[e].gate, &o->experts[e].up, &o->experts[e].down};
        float **dense[3] = {&o->gate[e], &o->up[e], &o->down[e]};
        for (int k = 0; k < 3; k++) {
            sm_weight fa, fb;
            int64_t rows;
            int f = sm_model_expert_factors(m, layer, e, k, &fa, &fb);
            if (f < 0)
                goto out;
            if (f == 0) { /* allocated here, converted below */
                sm_weight *w = &jw[nj];
                if (sm_model_weight(m, SM_W_EXPERT_GATE + k, layer, e, w))
                    goto out;
                rows = w->rows;
                *lin[k] = (sm_linear){.out = rows, .in = k == 2 ? o->inter : c->hidden};
                const uint16_t *at = raw16 ? sm_weight_bf16(w) : NULL;
                if (at) {
                    lin[k]->wb = at;
                    o->mapped[o->n_mapped++] = *w;
                } else if (!(lin[k]->w = jf[nj] = *dense[k] = sm_alloc_f32((size_t)(w->rows * w->cols)))) {
                    goto out;
                }
                nj++;
            } else {
                if (!o->fac && !(o->fac = sm_zalloc(nm * 2, sizeof *o->fac)))
                    goto out;
                float **a = &o->fac[(e * 3 + k) * 2], **b = a + 1;
                if (!(*a = sm_alloc_f32((size_t)(fa.rows * fa.cols))) || !(*b = sm_alloc_f32((size_t)(fb.rows * fb.cols))))
                    goto out;
                if (sm_weight_to_f32(&fa, *a) || sm_weight_to_f32(&fb, *b))
                    goto out;
                rows = fa.rows;
                *lin[k] = (sm_linear){.out = fa.rows, .in = fb.cols, .a = *a, .b = *b, .rank = fa.cols};
            }
            if (k == 0)
                o->inter = rows;
        }
    }
    convert_jobs cj = {jw, jf, mon};
    rc = convert_all(&cj, nj);
out:
    free(jw), free(jf);
    return rc;
}

static int load(const sm_model *m, int layer, bool experts, bool raw16, const sm_monitor *mon, sm_moe_layer *o)
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
        if (load_experts(m, layer, raw16, mon, o))
            goto fail;
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
    return load(m, layer, true, false, NULL, out);
}

int sm_moe_layer_load_mon(const sm_model *m, int layer, const sm_monitor *mon, sm_moe_layer *out)
{
    return load(m, layer, true, false, mon, out);
}

int sm_moe_layer_load_bf16(const sm_model *m, int layer, const sm_monitor *mon, sm_moe_layer *out)
{
    return load(m, layer, true, true, mon, out);
}

int sm_moe_layer_load_shell(const sm_model *m, int layer, sm_moe_layer *out)
{
    return load(m, layer, false, false, NULL, out);
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
    for (int i = 0; i < l->n_mapped; i++) /* the file's pages: dropped from this process */
        sm_weight_release(&l->mapped[i]);
    free(l->mapped);
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

typedef struct {
    sm_expert *experts; /* [n]: the routed experts, then the shared one */
    uint16_t **store;   /* [n]: where each one's bf16 copies start */
} pack_jobs;

static int pack_one(void *ctx, int j)
{
    pack_jobs *p = ctx;
    uint16_t *at = p->store[j];
    expert_to_bf16(&p->experts[j], &at);
    return 0;
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
    int n = src->n_experts + src->n_shared;
    out->experts = sm_alloc(n > 0 ? (size_t)n : 1, sizeof *out->experts); /* the shared one last */
    out->store = sm_alloc(total > 0 ? (size_t)total : 1, sizeof *out->store);
    uint16_t **at = sm_alloc(n > 0 ? (size_t)n : 1, sizeof *at);
    if (!out->experts || !out->store || !at) {
        free(at);
        sm_moe_bf16_free(out);
        return -1;
    }
    uint16_t *p = out->store;
    for (int e = 0; e < n; e++) {
        out->experts[e] = e < src->n_experts ? src->experts[e] : *src->shared;
        at[e] = p;
        p += expert_dense_elems(&out->experts[e]);
    }
    pack_jobs pj = {out->experts, at};
    sm_split_run(n, pack_one, &pj); /* (packing cannot fail) */
    free(at);
    out->block.experts = out->experts;
    if (src->n_shared > 0) {
        out->shared = out->experts[src->n_experts];
        out->block.shared = &out->shared;
    }
    return 0;
}

bool sm_moe_block_is_bf16(const sm_moe_block *b)
{
    for (int e = 0; e < b->n_experts + b->n_shared; e++) {
        const sm_expert *ex = e < b->n_experts ? &b->experts[e] : b->shared;
        const sm_linear *l[3] = {&ex->gate, &ex->up, &ex->down};
        for (int i = 0; i < 3; i++)
            if (l[i]->w && !l[i]->wb)
                return false;
    }
    return true;
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
