#include "model/synth.h"
#include "model/names.h"
#include "model/st.h"
#include "util/diag.h"
#include "util/fileio.h"
#include "util/mem.h"
#include "util/progress.h"
#include "util/rng.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ROW_BLOCK 16

void sm_synth_defaults(sm_synth_opts *o, sm_arch arch)
{
    memset(o, 0, sizeof *o);
    o->arch = arch;
    o->layers = 2;
    o->hidden = 64;
    o->intermediate = 128;
    o->experts = 8;
    o->top_k = 2;
    o->heads = 4;
    o->kv_heads = 2;
    o->vocab = 256;
    o->dense_intermediate = 256;
    o->shared_intermediate = arch == SM_ARCH_QWEN2_MOE ? 256 : 0;
    o->shared_experts = arch == SM_ARCH_DEEPSEEK ? 2 : 0;
    o->first_dense = arch == SM_ARCH_DEEPSEEK ? 1 : 0;
    o->sparse_step = 1;
    o->routed_scaling = arch == SM_ARCH_DEEPSEEK ? 1.5 : 1.0;
    o->norm_topk = arch == SM_ARCH_QWEN3_MOE;
    o->layout = SM_LAYOUT_PER_EXPERT;
    o->dtype = SM_DT_F32;
    o->clusters = 4;
    o->noise = 0.05;
    o->seed = 1;
}

int sm_synth_check(const sm_synth_opts *o)
{
    struct {
        const char *name;
        long long v, lo, hi;
    } r[] = {
        {"--layers", o->layers, 1, 4096},         {"--hidden", o->hidden, 2, 1 << 20},
        {"--intermediate", o->intermediate, 1, 1 << 20}, {"--experts", o->experts, 1, 65536},
        {"--top-k", o->top_k, 1, o->experts},     {"--heads", o->heads, 1, 1 << 16},
        {"--kv-heads", o->kv_heads, 1, o->heads}, {"--vocab", o->vocab, 1, 1 << 24},
        {"--clusters", o->clusters, 1, o->experts}, {"--dense-intermediate", o->dense_intermediate, 1, 1 << 20},
        {"--shared-experts", o->shared_experts, 0, 1024}, {"--first-dense", o->first_dense, 0, o->layers - 1},
        {"--sparse-step", o->sparse_step, 1, o->layers},
        {"--shared-intermediate", o->shared_intermediate, 0, 1 << 20},
    };
    for (size_t i = 0; i < sizeof r / sizeof r[0]; i++)
        if (r[i].v < r[i].lo || r[i].v > r[i].hi)
            return sm_err("%s %lld is out of range [%lld, %lld]", r[i].name, r[i].v, r[i].lo, r[i].hi);
    int hd = o->head_dim ? o->head_dim : o->hidden / o->heads;
    if (!o->head_dim && o->hidden % o->heads)
        return sm_err("--hidden %d is not a multiple of --heads %d (give --head-dim)", o->hidden, o->heads);
    if (hd % 2)
        return sm_err("head dimension %d must be even", hd);
    if (o->heads % o->kv_heads)
        return sm_err("--heads %d is not a multiple of --kv-heads %d", o->heads, o->kv_heads);
    if (!(o->noise >= 0 && o->noise <= 100))
        return sm_err("--noise %g is out of range [0, 100]", o->noise);
    if (!(o->routed_scaling > 0 && o->routed_scaling <= 1e6))
        return sm_err("routed_scaling_factor %g is out of range (0, 1e6]", o->routed_scaling);
    if (o->n_mlp_only_layers < 0 || (o->n_mlp_only_layers > 0 && !o->mlp_only_layers))
        return sm_err("mlp_only_layers: %d entries without a list", o->n_mlp_only_layers);
    for (int i = 0; i < o->n_mlp_only_layers; i++)
        if (o->mlp_only_layers[i] < 0 || o->mlp_only_layers[i] >= o->layers)
            return sm_err("mlp_only_layers: %d is not a layer index in [0, %d)", o->mlp_only_layers[i], o->layers);
    if (o->n_mlp_only_layers && o->arch != SM_ARCH_QWEN2_MOE && o->arch != SM_ARCH_QWEN3_MOE)
        return sm_err("mlp_only_layers is a qwen2_moe/qwen3_moe key");
    return 0;
}

static uint64_t mix(uint64_t seed, uint64_t a, uint64_t b, uint64_t c, uint64_t d, uint64_t e)
{
    uint64_t h = seed ^ 0x243f6a8885a308d3ULL;
    uint64_t v[5] = {a, b, c, d, e};
    for (int i = 0; i < 5; i++) {
        h ^= v[i] + 0x9e3779b97f4a7c15ULL + (h << 6) + (h >> 2);
        h *= 0xff51afd7ed558ccdULL;
        h ^= h >> 33;
    }
    return h;
}

void sm_synth_assignment(const sm_synth_opts *o, int layer, int *cluster_of_expert)
{
    /* A seeded shuffle, so planted clusters are not runs of consecutive experts. */
    sm_rng r;
    sm_rng_seed(&r, mix(o->seed, 7, (uint64_t)layer, 0, 0, 0));
    int *perm = xmalloc((size_t)o->experts * sizeof *perm);
    for (int i = 0; i < o->experts; i++)
        perm[i] = i;
    for (int i = o->experts - 1; i > 0; i--) {
        int j = (int)sm_rng_below(&r, (uint64_t)i + 1), t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }
    for (int i = 0; i < o->experts; i++)
        cluster_of_expert[perm[i]] = i % o->clusters;
    free(perm);
}

static bool layer_is_moe(const sm_synth_opts *o, int l)
{
    if (o->arch == SM_ARCH_DEEPSEEK)
        return l >= o->first_dense;
    if (o->arch == SM_ARCH_QWEN2_MOE || o->arch == SM_ARCH_QWEN3_MOE) {
        for (int i = 0; i < o->n_mlp_only_layers; i++)
            if (o->mlp_only_layers[i] == l)
                return false;
        return (l + 1) % o->sparse_step == 0;
    }
    return true;
}

/* ------------------------------------------------------------------ tensor plan */

typedef enum { G_NORM, G_NORMAL, G_EXPERT, G_ROUTER, G_FUSED_GU, G_FUSED_DOWN } gen_kind;

typedef struct {
    char name[192];
    int ndim;
    int64_t shape[3];
    gen_kind kind;
    int layer, mat; /* mat: 0 gate, 1 up, 2 down */
    int expert;
    uint64_t stream;
    float scale;
    uint64_t bytes;
} tspec;

typedef struct {
    tspec *v;
    int n, cap;
} tlist;

static tspec *push(tlist *l, const char *name, int nd, int64_t a, int64_t b, int64_t c, gen_kind k)
{
    if (l->n == l->cap) {
        l->cap = l->cap ? 2 * l->cap : 256;
        l->v = xrealloc(l->v, (size_t)l->cap * sizeof *l->v);
    }
    tspec *t = &l->v[l->n++];
    memset(t, 0, sizeof *t);
    snprintf(t->name, sizeof t->name, "%s", name);
    t->ndim = nd;
    t->shape[0] = a;
    t->shape[1] = b;
    t->shape[2] = c;
    t->kind = k;
    t->stream = (uint64_t)l->n;
    t->scale = nd >= 2 ? (float)(1.0 / sqrt((double)(nd == 3 ? c : b))) : 1.0f;
    return t;
}

static void build_plan(const sm_synth_opts *o, tlist *l)
{
    char nb[192];
    sm_arch a = o->arch;
    int64_t H = o->hidden, I = o->intermediate, E = o->experts;
    int64_t hd = o->head_dim ? o->head_dim : o->hidden / o->heads;
    int64_t qd = o->heads * hd, kd = o->kv_heads * hd;
    const char *mb = sm_moe_block_default(a, o->layout);
    tspec *t = push(l, sm_name(a, SM_W_EMBED, -1, 0, mb, nb, sizeof nb), 2, o->vocab, H, 0, G_NORMAL);
    t->scale = 1.0f;
    for (int L = 0; L < o->layers; L++) {
        push(l, sm_name(a, SM_W_ATTN_NORM, L, 0, mb, nb, sizeof nb), 1, H, 0, 0, G_NORM);
        push(l, sm_name(a, SM_W_Q, L, 0, mb, nb, sizeof nb), 2, qd, H, 0, G_NORMAL);
        push(l, sm_name(a, SM_W_K, L, 0, mb, nb, sizeof nb), 2, kd, H, 0, G_NORMAL);
        push(l, sm_name(a, SM_W_V, L, 0, mb, nb, sizeof nb), 2, kd, H, 0, G_NORMAL);
        if (a == SM_ARCH_QWEN2_MOE) {
            push(l, sm_name(a, SM_W_Q_BIAS, L, 0, mb, nb, sizeof nb), 1, qd, 0, 0, G_NORMAL)->scale = 0.02f;
            push(l, sm_name(a, SM_W_K_BIAS, L, 0, mb, nb, sizeof nb), 1, kd, 0, 0, G_NORMAL)->scale = 0.02f;
            push(l, sm_name(a, SM_W_V_BIAS, L, 0, mb, nb, sizeof nb), 1, kd, 0, 0, G_NORMAL)->scale = 0.02f;
        }
        if (a == SM_ARCH_QWEN3_MOE || a == SM_ARCH_OLMOE) {
            bool full = a == SM_ARCH_OLMOE;
            push(l, sm_name(a, SM_W_Q_NORM, L, 0, mb, nb, sizeof nb), 1, full ? qd : hd, 0, 0, G_NORM);
            push(l, sm_name(a, SM_W_K_NORM, L, 0, mb, nb, sizeof nb), 1, full ? kd : hd, 0, 0, G_NORM);
        }
        push(l, sm_name(a, SM_W_O, L, 0, mb, nb, sizeof nb), 2, H, qd, 0, G_NORMAL);
        push(l, sm_name(a, SM_W_FFN_NORM, L, 0, mb, nb, sizeof nb), 1, H, 0, 0, G_NORM);
        if (!layer_is_moe(o, L)) {
            int64_t D = o->dense_intermediate;
            push(l, sm_name(a, SM_W_DENSE_GATE, L, 0, mb, nb, sizeof nb), 2, D, H, 0, G_NORMAL);
            push(l, sm_name(a, SM_W_DENSE_UP, L, 0, mb, nb, sizeof nb), 2, D, H, 0, G_NORMAL);
            push(l, sm_name(a, SM_W_DENSE_DOWN, L, 0, mb, nb, sizeof nb), 2, H, D, 0, G_NORMAL);
            continue;
        }
        t = push(l, sm_name(a, SM_W_ROUTER, L, 0, mb, nb, sizeof nb), 2, E, H, 0, G_ROUTER);
        t->layer = L;
        if (o->layout == SM_LAYOUT_FUSED) {
            t = push(l, sm_name_fused(L, true, mb, nb, sizeof nb), 3, E, 2 * I, H, G_FUSED_GU);
            t->layer = L;
            t = push(l, sm_name_fused(L, false, mb, nb, sizeof nb), 3, E, H, I, G_FUSED_DOWN);
            t->layer = L;
        } else {
            for (int e = 0; e < E; e++)
                for (int k = 0; k < 3; k++) {
                    t = push(l, sm_name(a, SM_W_EXPERT_GATE + k, L, e, mb, nb, sizeof nb), 2, k == 2 ? H : I,
                             k == 2 ? I : H, 0, G_EXPERT);
                    t->layer = L;
                    t->expert = e;
                    t->mat = k;
                }
        }
        int64_t S = a == SM_ARCH_QWEN2_MOE ? o->shared_intermediate
                  : a == SM_ARCH_DEEPSEEK  ? (int64_t)o->shared_experts * I
                                           : 0;
        if (S > 0) {
            push(l, sm_name(a, SM_W_SHARED_GATE, L, 0, mb, nb, sizeof nb), 2, S, H, 0, G_NORMAL);
            push(l, sm_name(a, SM_W_SHARED_UP, L, 0, mb, nb, sizeof nb), 2, S, H, 0, G_NORMAL);
            push(l, sm_name(a, SM_W_SHARED_DOWN, L, 0, mb, nb, sizeof nb), 2, H, S, 0, G_NORMAL);
            if (a == SM_ARCH_QWEN2_MOE)
                push(l, sm_name(a, SM_W_SHARED_EXPERT_GATE, L, 0, mb, nb, sizeof nb), 2, 1, H, 0, G_NORMAL);
        }
    }
    push(l, sm_name(a, SM_W_FINAL_NORM, -1, 0, mb, nb, sizeof nb), 1, H, 0, 0, G_NORM);
    if (!o->tie_embeddings)
        push(l, sm_name(a, SM_W_LM_HEAD, -1, 0, mb, nb, sizeof nb), 2, o->vocab, H, 0, G_NORMAL);
    for (int i = 0; i < l->n; i++) {
        uint64_t n = 1;
        for (int d = 0; d < l->v[i].ndim; d++)
            n *= (uint64_t)l->v[i].shape[d];
        l->v[i].bytes = n * sm_dtype_size(o->dtype);
    }
}

void sm_synth_permutation(const sm_synth_opts *o, int layer, int expert, int *perm)
{
    int I = o->intermediate;
    for (int i = 0; i < I; i++)
        perm[i] = i;
    if (!o->permute)
        return;
    int *as = xmalloc((size_t)o->experts * sizeof *as);
    sm_synth_assignment(o, layer, as);
    int first = expert;
    for (int e = 0; e < o->experts; e++)
        if (as[e] == as[expert] && e < first)
            first = e;
    free(as);
    if (first == expert)
        return;
    sm_rng r;
    sm_rng_seed(&r, mix(o->seed, 9, (uint64_t)layer, (uint64_t)expert, 0, 0));
    for (int i = I - 1; i > 0; i--) {
        int j = (int)sm_rng_below(&r, (uint64_t)i + 1), t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }
}

/* ------------------------------------------------------------------ generation */

typedef struct {
    const sm_synth_opts *o;
    st_writer *w;
    float *buf, *noise;
    int *assign;          /* planted cluster of each expert, current layer */
    int assign_layer;
    sm_progress *prog;
    uint64_t done;
} gen_ctx;

static void ensure_assign(gen_ctx *g, int layer)
{
    if (g->assign_layer != layer) {
        sm_synth_assignment(g->o, layer, g->assign);
        g->assign_layer = layer;
    }
}

/* rows [0, rows) of a matrix owned by expert `e` (mat 0..2; mat 3 = router row block): cluster
 * base + noise, with both streams seeded per row block so any slice is reproducible. */
static int write_member_plain(gen_ctx *g, int layer, int e, int mat, int64_t rows, int64_t cols, float scale,
                              float *into);

/* A permuted member: the whole matrix is generated, then gate/up rows or down columns move. */
static int write_member(gen_ctx *g, int layer, int e, int mat, int64_t rows, int64_t cols, float scale)
{
    if (!g->o->permute || mat == 3)
        return write_member_plain(g, layer, e, mat, rows, cols, scale, NULL);
    int64_t n = rows * cols, I = g->o->intermediate;
    float *m = sm_alloc_f32((size_t)n), *p = sm_alloc_f32((size_t)n);
    int *perm = sm_alloc((size_t)I, sizeof *perm);
    int rc = -1;
    if (m && p && perm && write_member_plain(g, layer, e, mat, rows, cols, scale, m) == 0) {
        sm_synth_permutation(g->o, layer, e, perm);
        for (int64_t r = 0; r < rows; r++)
            for (int64_t c = 0; c < cols; c++)
                p[r * cols + c] = mat < 2 ? m[(int64_t)perm[r] * cols + c] : m[r * cols + perm[c]];
        rc = st_writer_write_f32(g->w, p, (size_t)n);
        g->done += (uint64_t)n * sm_dtype_size(g->o->dtype);
        sm_progress_update(g->prog, g->done);
    }
    free(m), free(p), free(perm);
    return rc;
}

/* into: NULL writes the rows; else they are stored there (rows × cols). */
static int write_member_plain(gen_ctx *g, int layer, int e, int mat, int64_t rows, int64_t cols, float scale,
                              float *into)
{
    ensure_assign(g, layer);
    int c = g->assign[e];
    for (int64_t r0 = 0; r0 < rows; r0 += ROW_BLOCK) {
        int64_t nr = rows - r0 < ROW_BLOCK ? rows - r0 : ROW_BLOCK;
        uint64_t n = (uint64_t)(nr * cols);
        sm_rng rb, rn;
        sm_rng_seed(&rb, mix(g->o->seed, 1, (uint64_t)layer, (uint64_t)c, (uint64_t)mat, (uint64_t)r0));
        sm_rng_seed(&rn, mix(g->o->seed, 2, (uint64_t)layer, (uint64_t)e, (uint64_t)mat, (uint64_t)r0));
        sm_rng_fill_normal(&rb, g->buf, n, scale);
        sm_rng_fill_normal(&rn, g->noise, n, scale * (float)g->o->noise);
        for (uint64_t i = 0; i < n; i++)
            g->buf[i] += g->noise[i];
        if (into) {
            memcpy(into + r0 * cols, g->buf, sizeof(float) * n);
            continue;
        }
        if (st_writer_write_f32(g->w, g->buf, n))
            return -1;
        g->done += n * sm_dtype_size(g->o->dtype);
        sm_progress_update(g->prog, g->done);
    }
    return 0;
}

static int write_tensor(gen_ctx *g, const tspec *t)
{
    const sm_synth_opts *o = g->o;
    int64_t H = o->hidden, I = o->intermediate;
    switch (t->kind) {
    case G_EXPERT:
        return write_member(g, t->layer, t->expert, t->mat, t->shape[0], t->shape[1], t->scale);
    case G_FUSED_GU:
        for (int e = 0; e < o->experts; e++)
            if (write_member(g, t->layer, e, 0, I, H, t->scale) || write_member(g, t->layer, e, 1, I, H, t->scale))
                return -1;
        return 0;
    case G_FUSED_DOWN:
        for (int e = 0; e < o->experts; e++)
            if (write_member(g, t->layer, e, 2, H, I, t->scale))
                return -1;
        return 0;
    case G_ROUTER:
        for (int e = 0; e < o->experts; e++)
            if (write_member(g, t->layer, e, 3, 1, H, t->scale))
                return -1;
        return 0;
    default:
        break;
    }
    uint64_t n = t->bytes / sm_dtype_size(o->dtype);
    sm_rng r;
    sm_rng_seed(&r, mix(o->seed, 3, t->stream, 0, 0, 0));
    const uint64_t chunk = ROW_BLOCK * 4096;
    for (uint64_t i = 0; i < n; i += chunk) {
        uint64_t k = n - i < chunk ? n - i : chunk;
        if (t->kind == G_NORM) /* 1 ± 0.2, from this tensor's own stream */
            for (uint64_t j = 0; j < k; j++)
                g->buf[j] = (float)(0.8 + 0.4 * sm_rng_uniform(&r));
        else
            sm_rng_fill_normal(&r, g->buf, k, t->scale);
        if (st_writer_write_f32(g->w, g->buf, k))
            return -1;
        g->done += k * sm_dtype_size(o->dtype);
        sm_progress_update(g->prog, g->done);
    }
    return 0;
}

/* ------------------------------------------------------------------ config.json */

static json_t *config_json(const sm_synth_opts *o)
{
    static const char *const archs[SM_ARCH_COUNT] = {"MixtralForCausalLM", "Qwen2MoeForCausalLM",
                                                     "Qwen3MoeForCausalLM", "OlmoeForCausalLM", "DeepseekForCausalLM"};
    json_t *j = json_object();
    int hd = o->head_dim ? o->head_dim : o->hidden / o->heads;
    json_object_set_new(j, "architectures", json_pack("[s]", archs[o->arch]));
    json_object_set_new(j, "model_type", json_string(sm_arch_name(o->arch)));
    json_object_set_new(j, "hidden_size", json_integer(o->hidden));
    json_object_set_new(j, "num_hidden_layers", json_integer(o->layers));
    json_object_set_new(j, "num_attention_heads", json_integer(o->heads));
    json_object_set_new(j, "num_key_value_heads", json_integer(o->kv_heads));
    json_object_set_new(j, "head_dim", json_integer(hd));
    json_object_set_new(j, "vocab_size", json_integer(o->vocab));
    json_object_set_new(j, "max_position_embeddings", json_integer(4096));
    json_object_set_new(j, "rms_norm_eps", json_real(1e-6));
    json_object_set_new(j, "rope_theta", json_real(o->arch == SM_ARCH_MIXTRAL ? 1e6 : 10000.0));
    json_object_set_new(j, "hidden_act", json_string("silu"));
    json_object_set_new(j, "tie_word_embeddings", json_boolean(o->tie_embeddings));
    json_object_set_new(j, "torch_dtype", json_string(o->dtype == SM_DT_F32 ? "float32"
                                                      : o->dtype == SM_DT_F16 ? "float16" : "bfloat16"));
    json_object_set_new(j, "num_experts_per_tok", json_integer(o->top_k));
    json_object_set_new(j, sm_arch_expert_count_key(o->arch), json_integer(o->experts));
    switch (o->arch) {
    case SM_ARCH_MIXTRAL:
        json_object_set_new(j, "intermediate_size", json_integer(o->intermediate));
        break;
    case SM_ARCH_QWEN2_MOE:
    case SM_ARCH_QWEN3_MOE:
        json_object_set_new(j, "intermediate_size", json_integer(o->dense_intermediate));
        json_object_set_new(j, "moe_intermediate_size", json_integer(o->intermediate));
        json_object_set_new(j, "decoder_sparse_step", json_integer(o->sparse_step));
        json_t *mo = json_array();
        for (int i = 0; i < o->n_mlp_only_layers; i++)
            json_array_append_new(mo, json_integer(o->mlp_only_layers[i]));
        json_object_set_new(j, "mlp_only_layers", mo);
        json_object_set_new(j, "norm_topk_prob", json_boolean(o->norm_topk));
        if (o->arch == SM_ARCH_QWEN2_MOE)
            json_object_set_new(j, "shared_expert_intermediate_size", json_integer(o->shared_intermediate));
        else
            json_object_set_new(j, "attention_bias", json_false());
        break;
    case SM_ARCH_OLMOE:
        json_object_set_new(j, "intermediate_size", json_integer(o->intermediate));
        json_object_set_new(j, "norm_topk_prob", json_boolean(o->norm_topk));
        break;
    case SM_ARCH_DEEPSEEK:
        json_object_set_new(j, "intermediate_size", json_integer(o->dense_intermediate));
        json_object_set_new(j, "moe_intermediate_size", json_integer(o->intermediate));
        json_object_set_new(j, "n_shared_experts", json_integer(o->shared_experts));
        json_object_set_new(j, "first_k_dense_replace", json_integer(o->first_dense));
        json_object_set_new(j, "moe_layer_freq", json_integer(1));
        json_object_set_new(j, "norm_topk_prob", json_boolean(o->norm_topk));
        json_object_set_new(j, "scoring_func", json_string("softmax"));
        json_object_set_new(j, "routed_scaling_factor", json_real(o->routed_scaling));
        break;
    default:
        break;
    }
    /* The planted truth, for tests of the clustering. transformers ignores unknown keys. */
    json_t *s = json_object(), *as = json_object();
    json_object_set_new(s, "clusters", json_integer(o->clusters));
    json_object_set_new(s, "noise", json_real(o->noise));
    if (o->permute)
        json_object_set_new(s, "permuted_neurons", json_true());
    json_object_set_new(s, "seed", json_integer((json_int_t)o->seed));
    int *cl = xmalloc((size_t)o->experts * sizeof *cl);
    for (int L = 0; L < o->layers; L++) {
        if (!layer_is_moe(o, L))
            continue;
        sm_synth_assignment(o, L, cl);
        json_t *arr = json_array();
        for (int e = 0; e < o->experts; e++)
            json_array_append_new(arr, json_integer(cl[e]));
        char key[16];
        snprintf(key, sizeof key, "%d", L);
        json_object_set_new(as, key, arr);
    }
    free(cl);
    json_object_set_new(s, "assignment", as);
    json_object_set_new(j, "submoe_synth", s);
    return j;
}

static int write_json(const char *dir, const char *name, json_t *j)
{
    char *path = sm_path_join(dir, name);
    char *text = json_dumps(j, JSON_INDENT(2));
    int rc = -1;
    if (text) {
        size_t n = strlen(text);
        text[n] = '\n';
        rc = sm_write_file(path, text, n + 1);
    } else {
        sm_err("%s: cannot encode JSON", path);
    }
    free(text);
    free(path);
    return rc;
}

int sm_synth_write(const sm_synth_opts *o, const char *dir)
{
    if (sm_synth_check(o))
        return -1;
    tlist plan = {0};
    build_plan(o, &plan);
    uint64_t total = 0;
    for (int i = 0; i < plan.n; i++)
        total += plan.v[i].bytes;
    /* Shards: greedy, in plan order, each at most shard_size (a larger tensor gets its own). */
    int *shard_of = xcalloc((size_t)plan.n, sizeof *shard_of);
    int n_shards = 1;
    uint64_t cur = 0;
    for (int i = 0; i < plan.n; i++) {
        if (o->shard_size && cur > 0 && cur + plan.v[i].bytes > o->shard_size) {
            n_shards++;
            cur = 0;
        }
        shard_of[i] = n_shards - 1;
        cur += plan.v[i].bytes;
    }
    int64_t maxcols = o->hidden > o->intermediate ? o->hidden : o->intermediate;
    if (o->dense_intermediate > maxcols)
        maxcols = o->dense_intermediate;
    uint64_t bufn = (uint64_t)ROW_BLOCK * (uint64_t)(maxcols > 4096 ? maxcols : 4096);
    gen_ctx g = {.o = o, .assign_layer = -1};
    g.buf = sm_alloc_f32(bufn);
    g.noise = sm_alloc_f32(bufn);
    g.assign = xcalloc((size_t)o->experts, sizeof *g.assign);
    sm_progress prog;
    sm_progress_start(&prog, "writing model", total, o->quiet);
    g.prog = &prog;
    int rc = (g.buf && g.noise) ? 0 : -1;
    json_t *wmap = json_object();
    for (int s = 0; s < n_shards && !rc; s++) {
        char fname[64];
        if (n_shards == 1 && !o->shard_size)
            snprintf(fname, sizeof fname, "model.safetensors");
        else
            snprintf(fname, sizeof fname, "model-%05d-of-%05d.safetensors", s + 1, n_shards);
        char *path = sm_path_join(dir, fname);
        st_writer *w = st_writer_new();
        st_writer_meta(w, "format", "pt");
        for (int i = 0; i < plan.n && !rc; i++)
            if (shard_of[i] == s) {
                rc = st_writer_declare(w, plan.v[i].name, o->dtype, plan.v[i].ndim, plan.v[i].shape);
                json_object_set_new(wmap, plan.v[i].name, json_string(fname));
            }
        if (!rc)
            rc = st_writer_begin(w, path);
        g.w = w;
        for (int i = 0; i < plan.n && !rc; i++)
            if (shard_of[i] == s)
                rc = write_tensor(&g, &plan.v[i]);
        if (!rc)
            rc = st_writer_finish(w);
        st_writer_free(w);
        free(path);
    }
    sm_progress_end(&prog, rc == 0);
    if (!rc && (n_shards > 1 || o->shard_size)) {
        json_t *idx = json_object();
        json_object_set_new(idx, "metadata", json_pack("{sI}", "total_size", (json_int_t)total));
        json_object_set_new(idx, "weight_map", json_incref(wmap));
        rc = write_json(dir, "model.safetensors.index.json", idx);
        json_decref(idx);
    }
    json_decref(wmap);
    if (!rc) {
        json_t *cfg = config_json(o);
        rc = write_json(dir, "config.json", cfg);
        json_decref(cfg);
    }
    free(g.buf);
    free(g.noise);
    free(g.assign);
    free(shard_of);
    free(plan.v);
    return rc;
}
