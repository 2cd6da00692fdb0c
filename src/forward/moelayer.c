/* moelayer: one MoE layer as an fp32 block (see moelayer.h). */
#include "forward/moelayer.h"
#include "forward/forward.h"
#include "moe/route.h"
#include "util/diag.h"
#include "util/matmul.h"
#include "util/mem.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

/* A weight's rows [r0, w.rows) in fp32, in panels between monitor checks (a Mixtral expert's
 * matrix is 59 M values, a few hundred ms of conversion and page faults). 0, or -1 (with a
 * message on the calling thread). */
static int convert_rows(const sm_weight *w, float *p, const sm_monitor *mon, bool report)
{
    const int64_t panel = w->cols > 0 && ((int64_t)1 << 22) / w->cols > 0 ? ((int64_t)1 << 22) / w->cols : 1;
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

/* ---- jobs split over threads ----
 * A layer's matrices are converted (and packed to bf16) one whole matrix per job, jobs dealt
 * round-robin to the forward pass's threads: each value is computed the same way whatever the
 * number of threads, so the layer is bit-identical to a one-thread load. The page faults of the
 * fresh copies (most of the time of a conversion) are spread over the threads too. */

typedef int (*split_fn)(void *ctx, int job); /* 0, or -1: failed (no message: not this thread's) */

typedef struct {
    split_fn fn;
    void *ctx;
    int first, step, n;
    int failed; /* this thread's failed job, or n */
} split_part;

static void *split_thread(void *p)
{
    split_part *s = p;
    for (int j = s->first; j < s->n; j += s->step)
        if (s->fn(s->ctx, j)) {
            s->failed = j;
            break;
        }
    return NULL;
}

#define SPLIT_MAX_THREADS 64

/* Jobs [0, n) over the threads: the lowest job that failed (every job below it succeeded: its
 * thread reached it), or n when none did. */
static int split_run(int n, split_fn fn, void *ctx)
{
    int nt = sm_forward_threads();
    nt = nt > n ? n : nt > SPLIT_MAX_THREADS ? SPLIT_MAX_THREADS : nt;
    if (nt < 1)
        return n;
    split_part parts[SPLIT_MAX_THREADS];
    pthread_t tids[SPLIT_MAX_THREADS];
    for (int i = 0; i < nt; i++)
        parts[i] = (split_part){fn, ctx, i, nt, n, n};
    int started = 1;
    for (; started < nt; started++)
        if (pthread_create(&tids[started], NULL, split_thread, &parts[started]))
            break;
    for (int i = started; i < nt; i++) /* threads that could not start run here */
        split_thread(&parts[i]);
    split_thread(&parts[0]);
    int failed = n;
    for (int i = 0; i < nt; i++) {
        if (i > 0 && i < started)
            pthread_join(tids[i], NULL);
        failed = parts[i].failed < failed ? parts[i].failed : failed;
    }
    return failed;
}

typedef struct {
    const sm_weight *w; /* [n] dense expert matrices as stored */
    float **dst;        /* [n] their fp32 copies */
    const sm_monitor *mon;
} convert_jobs;

static int convert_one(void *ctx, int j)
{
    convert_jobs *c = ctx;
    int rc = convert_rows(&c->w[j], c->dst[j], c->mon, false);
    sm_weight_release(&c->w[j]);
    return rc;
}

/* Convert the n matrices; 0, or -1 with the message of the first one that failed (or "cancelled"). */
static int convert_all(const sm_weight *w, float **dst, int n, const sm_monitor *mon)
{
    convert_jobs c = {w, dst, mon};
    int bad = split_run(n, convert_one, &c);
    if (bad == n)
        return 0;
    if (sm_monitor_check(mon))
        return -1;
    return convert_rows(&w[bad], dst[bad], NULL, true) ? -1 : sm_err("internal: weight conversion failed");
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
    sm_weight *jw = NULL; /* the routed experts' dense matrices, */
    float **jd = NULL;    /* and their fp32 copies: jobs for convert_all */
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
        /* dense matrices: allocated here, converted below on every thread */
        jw = sm_alloc((size_t)n * 3, sizeof *jw);
        jd = sm_alloc((size_t)n * 3, sizeof *jd);
        int nj = 0;
        if (!jw || !jd)
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
                    if (sm_model_weight(m, SM_W_EXPERT_GATE + k, layer, e, &jw[nj]) ||
                        !(*dense[k] = sm_alloc_f32((size_t)(jw[nj].rows * jw[nj].cols))))
                        goto fail;
                    jd[nj] = *dense[k];
                    rows = jw[nj++].rows;
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
        int crc = convert_all(jw, jd, nj, mon);
        free(jw), free(jd);
        jw = NULL, jd = NULL;
        if (crc)
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
    free(jw), free(jd);
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
    split_run(n, pack_one, &pj); /* (packing cannot fail) */
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
