/* export: merged models in the three output formats (see export.h). */
#include "model/export.h"
#include "model/names.h"
#include "model/st.h"
#include "util/diag.h"
#include "util/fileio.h"
#include "util/mem.h"
#include "util/outdir.h"

#include <jansson.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DEFAULT_SHARD (4ull << 30)
#define COPY_ROWS_BYTES (16u << 20)

enum { E_SOURCE = 0, E_ROUTER, E_DENSE, E_FACTOR_A, E_FACTOR_B };

typedef struct {
    char *name;
    sm_dtype dtype;
    int ndim;
    int64_t shape[2];
    uint64_t bytes;
    int shard;
    int kind, layer, slot, mat;
    sm_weight src; /* E_SOURCE */
} entry;

struct sm_exporter {
    const sm_model *m;
    sm_export_opts o;
    sm_outdir od;
    entry *e;
    size_t n, cap, next;       /* entries; the next one to write */
    int n_shards, open_shard;
    st_writer *w;
    uint64_t total;
    sm_export_shape *shapes;   /* copies (per layer) */
    int64_t (**ranks)[3];
    int **maps;
    float *buf;
};

static entry *add(sm_exporter *x, const char *name, sm_dtype dt, int ndim, int64_t r, int64_t c)
{
    if (x->n == x->cap) {
        x->cap = x->cap ? 2 * x->cap : 256;
        x->e = xrealloc(x->e, x->cap * sizeof *x->e);
    }
    entry *e = &x->e[x->n++];
    memset(e, 0, sizeof *e);
    e->name = xstrdup(name);
    e->dtype = dt;
    e->ndim = ndim;
    e->shape[0] = ndim == 1 ? c : r;
    e->shape[1] = c;
    e->bytes = (uint64_t)r * (uint64_t)c * sm_dtype_size(dt);
    e->layer = -1;
    return e;
}

static sm_dtype out_dtype(const sm_exporter *x, sm_dtype src)
{
    return x->o.dtype < 0 ? src : (sm_dtype)x->o.dtype;
}

static void add_source(sm_exporter *x, sm_wrole role, int layer)
{
    const sm_config *c = sm_model_config(x->m);
    if (!sm_model_has(x->m, role, layer))
        return;
    sm_weight w;
    if (sm_model_weight(x->m, role, layer, 0, &w))
        return;
    if (role == SM_W_LM_HEAD && c->tie_embeddings) {
        sm_weight emb;
        if (sm_model_weight(x->m, SM_W_EMBED, -1, 0, &emb) == 0 && emb.tensor == w.tensor)
            return; /* tied: the head is the embedding */
    }
    char nb[256];
    sm_name(c->arch, role, layer, 0, sm_moe_block_default(c->arch, SM_LAYOUT_PER_EXPERT), nb, sizeof nb);
    entry *e = add(x, nb, out_dtype(x, w.tensor->dtype), w.tensor->ndim == 1 ? 1 : 2, w.rows, w.cols);
    e->kind = E_SOURCE;
    e->layer = layer;
    e->src = w;
}

static int add_moe(sm_exporter *x, int l, const sm_export_shape *s)
{
    const sm_config *c = sm_model_config(x->m);
    const char *mb = sm_moe_block_default(c->arch, SM_LAYOUT_PER_EXPERT);
    sm_weight router, gate;
    if (sm_model_weight(x->m, SM_W_ROUTER, l, 0, &router) || sm_model_weight(x->m, SM_W_EXPERT_GATE, l, 0, &gate))
        return -1;
    int64_t H = c->hidden, I = gate.rows;
    char nb[256], nf[300];
    entry *e = add(x, sm_name(c->arch, SM_W_ROUTER, l, 0, mb, nb, sizeof nb), out_dtype(x, router.tensor->dtype), 2,
                   s->n_router, H);
    e->kind = E_ROUTER;
    e->layer = l;
    sm_dtype edt = out_dtype(x, gate.tensor->dtype);
    for (int slot = 0; slot < s->n_experts; slot++)
        for (int k = 0; k < 3; k++) {
            int64_t out = k == 2 ? H : I, in = k == 2 ? I : H, r = s->rank ? s->rank[slot][k] : 0;
            sm_name(c->arch, SM_W_EXPERT_GATE + k, l, slot, mb, nb, sizeof nb);
            if (r <= 0) {
                e = add(x, nb, edt, 2, out, in);
                e->kind = E_DENSE;
            } else {
                snprintf(nf, sizeof nf, "%s_a", nb);
                e = add(x, nf, edt, 2, out, r);
                e->kind = E_FACTOR_A, e->layer = l, e->slot = slot, e->mat = k;
                snprintf(nf, sizeof nf, "%s_b", nb);
                e = add(x, nf, edt, 2, r, in);
                e->kind = E_FACTOR_B;
            }
            e->layer = l, e->slot = slot, e->mat = k;
        }
    add_source(x, SM_W_SHARED_GATE, l);
    add_source(x, SM_W_SHARED_UP, l);
    add_source(x, SM_W_SHARED_DOWN, l);
    add_source(x, SM_W_SHARED_EXPERT_GATE, l);
    return 0;
}

static int check_shapes(const sm_exporter *x, const sm_export_shape *shapes)
{
    const sm_config *c = sm_model_config(x->m);
    int common = -1;
    for (int l = 0; l < c->n_layers; l++) {
        if (!c->is_moe[l])
            continue;
        const sm_export_shape *s = &shapes[l];
        int n = sm_model_layer_experts(x->m, l);
        if (s->n_experts < 1 || s->n_router < 1 || s->n_experts > n)
            return sm_err("layer %d: %d experts and %d router rows cannot be written", l, s->n_experts, s->n_router);
        bool factored = false;
        for (int e = 0; s->rank && e < s->n_experts; e++)
            for (int k = 0; k < 3; k++)
                factored |= s->rank[e][k] > 0;
        if (x->o.format == SM_EXPORT_SUBMOE) {
            if (s->expert_map ? s->n_router != n : s->n_router != s->n_experts)
                return sm_err("layer %d: a remapped layer keeps the %d router rows, a collapsed one has one per expert",
                              l, n);
            continue;
        }
        if (factored)
            return sm_err("layer %d: %s cannot hold low-rank factors; write the submoe format", l,
                          x->o.format == SM_EXPORT_HF ? "hf" : "hf-expanded");
        if (x->o.format == SM_EXPORT_HF && (s->expert_map || s->n_router != s->n_experts))
            return sm_err("layer %d: hf needs a collapsed router (one row per expert); this layer keeps the %d "
                          "original rows (remap). Use --format submoe or hf-expanded, or router: collapse-lstsq",
                          l, s->n_router);
        if (s->expert_map)
            return sm_err("layer %d: hf-expanded writes every original expert; it takes no expert map", l);
        if (x->o.format == SM_EXPORT_HF_EXPANDED && (s->n_experts != n || s->n_router != n))
            return sm_err("layer %d: hf-expanded keeps all %d experts and router rows", l, n);
        if (x->o.format == SM_EXPORT_HF) {
            if (common >= 0 && s->n_experts != common)
                return sm_err("hf needs the same number of experts in every MoE layer (layer %d has %d, an earlier one "
                              "%d); use --format submoe for a non-uniform plan",
                              l, s->n_experts, common);
            common = s->n_experts;
            if (c->top_k > common)
                return sm_err("hf: %d experts per layer is fewer than the %d experts each token uses", common, c->top_k);
        }
    }
    return 0;
}

/* Everything an exporter holds (a partly begun one too: what is not there yet is NULL). */
static void free_exporter(sm_exporter *x)
{
    const sm_config *c = sm_model_config(x->m);
    st_writer_free(x->w);
    for (size_t i = 0; i < x->n; i++)
        free(x->e[i].name);
    free(x->e);
    for (int l = 0; l < c->n_layers; l++) {
        free(x->ranks[l]);
        free(x->maps[l]);
    }
    free(x->ranks);
    free(x->maps);
    free(x->shapes);
    free(x->buf);
    free(x);
}

sm_exporter *sm_export_begin(const sm_model *src, const char *outdir, const sm_export_opts *o,
                             const sm_export_shape *shapes)
{
    const sm_config *c = sm_model_config(src);
    if (c->native)
        return sm_err("%s: the model is already in submoe's native format; merge the original instead",
                      sm_model_dir(src)),
               NULL;
    sm_exporter *x = xcalloc(1, sizeof *x);
    x->m = src;
    x->o = *o;
    x->open_shard = -1;
    if (!x->o.shard_size)
        x->o.shard_size = DEFAULT_SHARD;
    if (check_shapes(x, shapes)) {
        free(x);
        return NULL;
    }
    x->shapes = xcalloc((size_t)c->n_layers, sizeof *x->shapes);
    x->ranks = xcalloc((size_t)c->n_layers, sizeof *x->ranks);
    x->maps = xcalloc((size_t)c->n_layers, sizeof *x->maps);
    for (int l = 0; l < c->n_layers; l++) {
        if (!c->is_moe[l])
            continue;
        x->shapes[l] = shapes[l];
        if (shapes[l].rank) {
            x->ranks[l] = xcalloc((size_t)shapes[l].n_experts, sizeof *x->ranks[l]);
            memcpy(x->ranks[l], shapes[l].rank, sizeof *x->ranks[l] * (size_t)shapes[l].n_experts);
            x->shapes[l].rank = (const int64_t(*)[3])x->ranks[l];
        }
        if (shapes[l].expert_map) {
            x->maps[l] = xcalloc((size_t)shapes[l].n_router, sizeof(int));
            memcpy(x->maps[l], shapes[l].expert_map, sizeof(int) * (size_t)shapes[l].n_router);
            x->shapes[l].expert_map = x->maps[l];
        }
    }
    /* The tensors, in writing order. */
    add_source(x, SM_W_EMBED, -1);
    static const sm_wrole per_layer[] = {SM_W_ATTN_NORM, SM_W_Q,      SM_W_Q_BIAS, SM_W_K,      SM_W_K_BIAS, SM_W_V,
                                         SM_W_V_BIAS,    SM_W_O,      SM_W_Q_NORM, SM_W_K_NORM, SM_W_FFN_NORM};
    for (int l = 0; l < c->n_layers; l++) {
        for (size_t i = 0; i < sizeof per_layer / sizeof per_layer[0]; i++)
            add_source(x, per_layer[i], l);
        if (c->is_moe[l]) {
            if (add_moe(x, l, &x->shapes[l]))
                goto fail;
        } else {
            add_source(x, SM_W_DENSE_GATE, l);
            add_source(x, SM_W_DENSE_UP, l);
            add_source(x, SM_W_DENSE_DOWN, l);
        }
    }
    add_source(x, SM_W_FINAL_NORM, -1);
    add_source(x, SM_W_LM_HEAD, -1);
    /* Shards: greedy in writing order. */
    uint64_t in_shard = 0;
    x->n_shards = 1;
    for (size_t i = 0; i < x->n; i++) {
        if (in_shard > 0 && in_shard + x->e[i].bytes > x->o.shard_size) {
            x->n_shards++;
            in_shard = 0;
        }
        x->e[i].shard = x->n_shards - 1;
        in_shard += x->e[i].bytes;
        x->total += x->e[i].bytes;
    }
    if (sm_outdir_begin(&x->od, outdir, o->force))
        goto fail;
    x->buf = sm_alloc_f32(COPY_ROWS_BYTES / 4);
    if (!x->buf) {
        sm_outdir_abort(&x->od);
        goto fail;
    }
    return x;
fail:
    free_exporter(x);
    return NULL;
}

void sm_export_set_provenance(sm_exporter *x, const char *provenance)
{
    x->o.provenance = provenance;
}

uint64_t sm_export_total_bytes(const sm_exporter *x)
{
    return x->total;
}

static char *shard_name(const sm_exporter *x, int s)
{
    if (x->n_shards == 1)
        return xstrdup("model.safetensors");
    return xasprintf("model-%05d-of-%05d.safetensors", s + 1, x->n_shards);
}

/* Open the shard of entry i if it is not the open one (closing the previous). */
static int ensure_shard(sm_exporter *x, size_t i)
{
    int s = x->e[i].shard;
    if (s == x->open_shard)
        return 0;
    if (x->w && st_writer_finish(x->w))
        return -1;
    st_writer_free(x->w);
    x->w = st_writer_new();
    x->open_shard = s;
    for (size_t j = i; j < x->n && x->e[j].shard == s; j++)
        if (st_writer_declare(x->w, x->e[j].name, x->e[j].dtype, x->e[j].ndim, x->e[j].shape))
            return -1;
    if (st_writer_meta(x->w, "format", "pt"))
        return -1;
    char *name = shard_name(x, s), *path = sm_path_join(sm_outdir_path(&x->od), name);
    int rc = st_writer_begin(x->w, path);
    free(name);
    free(path);
    return rc;
}

/* A failure writing entry e (a non-finite value, a full disk): name the output directory the
 * user asked for and the layer, so the one message says where and what. Returns -1. */
static int entry_failed(const sm_exporter *x, const entry *e)
{
    if (e->layer >= 0)
        sm_err_prefix("layer %d", e->layer);
    return sm_err_prefix("%s", x->od.final);
}

static int write_source(sm_exporter *x, const entry *e)
{
    const sm_weight *w = &e->src;
    size_t esz = sm_dtype_size(w->tensor->dtype);
    int rc = 0;
    if (e->dtype == w->tensor->dtype) {
        /* Copied through memory, never handed to write(2) straight from the mapping: a source file
         * truncated meanwhile then faults here (util/mapguard names it) instead of failing the
         * write with "Bad address". */
        const char *src = (const char *)w->tensor->data + w->offset * esz;
        for (uint64_t done = 0; done < e->bytes && !rc; done += COPY_ROWS_BYTES) {
            size_t k = e->bytes - done < COPY_ROWS_BYTES ? (size_t)(e->bytes - done) : COPY_ROWS_BYTES;
            memcpy(x->buf, src + done, k);
            rc = st_writer_write(x->w, x->buf, k);
        }
    } else {
        int64_t step = (int64_t)(COPY_ROWS_BYTES / 4) / w->cols;
        step = step < 1 ? 1 : step;
        for (int64_t r = 0; r < w->rows && !rc; r += step) {
            int64_t n = w->rows - r < step ? w->rows - r : step;
            rc = sm_weight_rows_to_f32(w, r, n, x->buf) || st_writer_write_f32(x->w, x->buf, (size_t)(n * w->cols));
        }
    }
    sm_weight_release(w); /* the source pages copied stay mapped and resident otherwise */
    return rc ? entry_failed(x, e) : 0;
}

/* Write source entries up to (not including) the next merged one. */
static int copy_until_merged(sm_exporter *x)
{
    for (; x->next < x->n && x->e[x->next].kind == E_SOURCE; x->next++)
        if (ensure_shard(x, x->next) || write_source(x, &x->e[x->next]))
            return -1;
    return 0;
}

int sm_export_layer(sm_exporter *x, int layer, const float *router, const sm_export_matrix (*mats)[3])
{
    if (copy_until_merged(x))
        return -1;
    if (x->next >= x->n || x->e[x->next].layer != layer || x->e[x->next].kind != E_ROUTER)
        return sm_err("internal: layer %d exported out of order", layer);
    for (; x->next < x->n && x->e[x->next].kind != E_SOURCE && x->e[x->next].layer == layer; x->next++) {
        const entry *e = &x->e[x->next];
        if (ensure_shard(x, x->next))
            return -1;
        const float *data = router;
        if (e->kind != E_ROUTER) {
            const sm_export_matrix *mx = &mats[e->slot][e->mat];
            bool want_factored = e->kind != E_DENSE;
            if ((mx->w != NULL) == want_factored || (want_factored && mx->rank != e->shape[e->kind == E_FACTOR_A]))
                return sm_err("internal: layer %d expert %d matrix %d is not stored as declared", layer, e->slot, e->mat);
            data = e->kind == E_DENSE ? mx->w : e->kind == E_FACTOR_A ? mx->a : mx->b;
        }
        if (st_writer_write_f32(x->w, data, (size_t)(e->shape[0] * e->shape[1])))
            return entry_failed(x, e);
    }
    return copy_until_merged(x);
}

static int copy_file(const char *from, const char *to)
{
    size_t len;
    char *data = sm_read_file(from, 1u << 30, &len);
    if (!data)
        return -1;
    int rc = sm_write_file(to, data, len);
    free(data);
    return rc;
}

static int write_json(const char *path, json_t *j)
{
    char *text = json_dumps(j, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    if (!text)
        return sm_err("%s: cannot encode JSON", path);
    size_t n = strlen(text);
    char *t2 = xasprintf("%s\n", text);
    int rc = sm_write_file(path, t2, n + 1);
    free(text);
    free(t2);
    return rc;
}

static int write_config(sm_exporter *x)
{
    const sm_config *c = sm_model_config(x->m);
    char *src = sm_path_join(sm_model_dir(x->m), "config.json");
    json_error_t je;
    char *text = sm_read_file(src, SM_CONFIG_MAX_BYTES, NULL); /* the one way inputs are opened */
    json_t *cfg = text ? json_loads(text, JSON_REJECT_DUPLICATES, &je) : NULL;
    if (text && !cfg)
        sm_err("%s: %s", src, je.text);
    free(text);
    free(src);
    if (!cfg)
        return -1;
    int first = -1;
    for (int l = 0; l < c->n_layers && first < 0; l++)
        if (c->is_moe[l])
            first = l;
    if (x->o.format == SM_EXPORT_HF && first >= 0)
        json_object_set_new(cfg, sm_arch_expert_count_key(c->arch), json_integer(x->shapes[first].n_experts));
    if (x->o.format == SM_EXPORT_SUBMOE) {
        json_t *b = json_object(), *per = json_object(), *maps = json_object();
        json_object_set_new(b, "version", json_integer(1));
        for (int l = 0; l < c->n_layers; l++) {
            if (!c->is_moe[l])
                continue;
            char key[16];
            snprintf(key, sizeof key, "%d", l);
            json_object_set_new(per, key, json_integer(x->shapes[l].n_experts));
            if (x->shapes[l].expert_map) {
                json_t *a = json_array();
                for (int i = 0; i < x->shapes[l].n_router; i++)
                    json_array_append_new(a, json_integer(x->shapes[l].expert_map[i]));
                json_object_set_new(maps, key, a);
            }
        }
        json_object_set_new(b, "experts_per_layer", per);
        if (json_object_size(maps))
            json_object_set_new(b, "expert_map", maps);
        else
            json_decref(maps);
        json_object_set_new(cfg, "submoe", b);
    }
    json_t *prov = x->o.provenance ? json_loads(x->o.provenance, 0, &je) : NULL;
    if (x->o.provenance && !prov) {
        json_decref(cfg);
        return sm_err("internal: provenance is not JSON: %s", je.text);
    }
    if (prov)
        json_object_set_new(cfg, "submoe_provenance", prov);
    if (x->o.dtype >= 0)
        json_object_set_new(cfg, "torch_dtype",
                            json_string(x->o.dtype == SM_DT_F32 ? "float32" : x->o.dtype == SM_DT_F16 ? "float16"
                                                                                                      : "bfloat16"));
    char *path = sm_path_join(sm_outdir_path(&x->od), "config.json");
    int rc = write_json(path, cfg);
    free(path);
    json_decref(cfg);
    return rc;
}

static int write_index(sm_exporter *x)
{
    if (x->n_shards == 1)
        return 0;
    json_t *root = json_object(), *meta = json_object(), *map = json_object();
    json_object_set_new(meta, "total_size", json_integer((json_int_t)x->total));
    json_object_set_new(root, "metadata", meta);
    /* weight_map sorted by name, as transformers writes it */
    size_t *order = xmalloc(sizeof *order * x->n);
    for (size_t i = 0; i < x->n; i++)
        order[i] = i;
    for (size_t i = 1; i < x->n; i++)
        for (size_t j = i; j > 0 && strcmp(x->e[order[j - 1]].name, x->e[order[j]].name) > 0; j--) {
            size_t t = order[j];
            order[j] = order[j - 1];
            order[j - 1] = t;
        }
    for (size_t i = 0; i < x->n; i++) {
        char *sn = shard_name(x, x->e[order[i]].shard);
        json_object_set_new(map, x->e[order[i]].name, json_string(sn));
        free(sn);
    }
    free(order);
    json_object_set_new(root, "weight_map", map);
    char *path = sm_path_join(sm_outdir_path(&x->od), "model.safetensors.index.json");
    int rc = write_json(path, root);
    free(path);
    json_decref(root);
    return rc;
}

int sm_export_finish(sm_exporter *x)
{
    int rc = -1;
    if (copy_until_merged(x))
        goto out;
    if (x->next != x->n) {
        sm_err("internal: layer %d was never exported", x->e[x->next].layer);
        goto out;
    }
    if (x->w && st_writer_finish(x->w))
        goto out;
    if (write_config(x) || write_index(x))
        goto out;
    static const char *const copied[] = {"tokenizer.json", "tokenizer_config.json", "tokenizer.model",
                                         "special_tokens_map.json", "generation_config.json", "vocab.json",
                                         "merges.txt", "added_tokens.json"};
    for (size_t i = 0; i < sizeof copied / sizeof copied[0]; i++) {
        char *from = sm_path_join(sm_model_dir(x->m), copied[i]);
        if (sm_exists(from)) {
            char *to = sm_path_join(sm_outdir_path(&x->od), copied[i]);
            int crc = copy_file(from, to);
            free(to);
            if (crc) {
                free(from);
                goto out;
            }
        }
        free(from);
    }
    rc = sm_outdir_commit(&x->od);
out:
    if (rc)
        sm_outdir_abort(&x->od);
    free_exporter(x);
    return rc;
}

void sm_export_abort(sm_exporter *x)
{
    if (!x)
        return;
    sm_outdir_abort(&x->od);
    free_exporter(x);
}
