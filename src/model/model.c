/* The model abstraction: resolves every weight the architecture needs to a validated view into
 * the mapped files, once, at open. This is the only file that knows tensor names. */
#include "model/model.h"
#include "model/names.h"
#include "util/diag.h"
#include "util/fileio.h"
#include "util/hash.h"
#include "util/mem.h"
#include "util/parallel.h"

#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define EXPERT_MATS 3
#define MAX_INDEX_BYTES (256u << 20)

typedef struct {
    bool present[SM_W_ROLE_COUNT];
    sm_weight w[SM_W_ROLE_COUNT];
    sm_weight *experts[EXPERT_MATS]; /* gate, up, down: [n_experts] (tensor NULL when factored) */
    sm_weight *fa[EXPERT_MATS], *fb[EXPERT_MATS]; /* native format factors W = A·B, or NULL */
    int n_experts, n_router;
} layer_weights;

typedef struct {
    const char *name;
    const sm_tensor *t;
} name_entry;

struct sm_model {
    char *dir;
    sm_config cfg;
    sm_layout layout;
    st_file **files;
    int n_files;
    name_entry *names;   /* all tensors, sorted by name */
    size_t n_names;
    sm_weight global[SM_W_ROLE_COUNT];
    bool global_present[SM_W_ROLE_COUNT];
    layer_weights *layers;
};

/* ---------------------------------------------------------------- name table */

static int cmp_name(const void *a, const void *b)
{
    return strcmp(((const name_entry *)a)->name, ((const name_entry *)b)->name);
}

static const sm_tensor *find_tensor(const sm_model *m, const char *name)
{
    name_entry key = {name, NULL};
    const name_entry *e = bsearch(&key, m->names, m->n_names, sizeof key, cmp_name);
    return e ? e->t : NULL;
}

static void add_names_of(sm_model *m, const st_file *f)
{
    size_t n = st_count(f);
    m->names = xrealloc(m->names, (m->n_names + n + 1) * sizeof *m->names);
    for (size_t i = 0; i < n; i++) {
        m->names[m->n_names].name = st_tensor(f, i)->name;
        m->names[m->n_names].t = st_tensor(f, i);
        m->n_names++;
    }
}

static int open_file(sm_model *m, const char *path)
{
    st_file *f = st_open(path);
    if (!f)
        return -1;
    m->files = xrealloc(m->files, (size_t)(m->n_files + 1) * sizeof *m->files);
    m->files[m->n_files++] = f;
    return 0;
}

/* Sharded model: model.safetensors.index.json maps every tensor to a shard file. */
static int open_index(sm_model *m, const char *index_path)
{
    char *text = sm_read_file(index_path, MAX_INDEX_BYTES, NULL);
    if (!text)
        return -1;
    json_error_t jerr;
    json_t *root = json_loads(text, JSON_REJECT_DUPLICATES, &jerr);
    free(text);
    if (!root)
        return sm_err("%s: malformed JSON at line %d, column %d: %s", index_path, jerr.line, jerr.column, jerr.text);
    int rc = 0;
    json_t *wm = json_is_object(root) ? json_object_get(root, "weight_map") : NULL;
    if (!json_is_object(wm) || json_object_size(wm) == 0) {
        rc = sm_err("%s: missing or empty \"weight_map\" object", index_path);
        goto done;
    }
    /* Open each distinct shard once, in order of first appearance. */
    const char *tname;
    json_t *fv;
    json_object_foreach(wm, tname, fv) {
        if (!json_is_string(fv)) {
            rc = sm_err("%s: weight_map entry for '%s' is not a file name", index_path, tname);
            goto done;
        }
        const char *fname = json_string_value(fv);
        if (!*fname || strchr(fname, '/') || !strcmp(fname, ".") || !strcmp(fname, "..")) {
            rc = sm_err("%s: weight_map entry for '%s' names '%s', which is not a plain file name in the model directory",
                        index_path, tname, fname);
            goto done;
        }
        bool seen = false;
        for (int i = 0; i < m->n_files && !seen; i++)
            seen = !strcmp(sm_basename(st_path(m->files[i])), fname);
        if (seen)
            continue;
        char *p = sm_path_join(m->dir, fname);
        if (!sm_exists(p)) {
            rc = sm_err("%s: shard '%s' (holding tensor '%s') does not exist", index_path, fname, tname);
            free(p);
            goto done;
        }
        rc = open_file(m, p);
        free(p);
        if (rc)
            goto done;
    }
    /* Resolve each mapped tensor in its own shard; the map decides which copy counts. */
    m->names = xcalloc(json_object_size(wm) + 1, sizeof *m->names);
    json_object_foreach(wm, tname, fv) {
        const char *fname = json_string_value(fv);
        const sm_tensor *t = NULL;
        for (int i = 0; i < m->n_files && !t; i++)
            if (!strcmp(sm_basename(st_path(m->files[i])), fname)) {
                t = st_find(m->files[i], tname);
                if (!t) {
                    rc = sm_err("%s: tensor '%s' is mapped to '%s', which does not contain it", index_path, tname, fname);
                    goto done;
                }
            }
        m->names[m->n_names].name = t->name;
        m->names[m->n_names].t = t;
        m->n_names++;
    }
done:
    json_decref(root);
    return rc;
}

/* ---------------------------------------------------------------- weight resolution */

static void shape_str(char *buf, size_t n, int nd, const int64_t *s)
{
    size_t k = (size_t)snprintf(buf, n, "[");
    for (int i = 0; i < nd && k < n; i++)
        k += (size_t)snprintf(buf + k, n - k, "%s%lld", i ? ", " : "", (long long)s[i]);
    if (k < n)
        snprintf(buf + k, n - k, "]");
}

/* Find `name` and check its shape is exactly `nd` dims of `dims`. */
static int want(const sm_model *m, const char *name, int nd, const int64_t *dims, const char *why,
                const sm_tensor **out)
{
    const sm_tensor *t = find_tensor(m, name);
    if (!t)
        return sm_err("%s: tensor '%s' is missing (%s)", m->dir, name, why);
    bool ok = t->ndim == nd;
    for (int i = 0; ok && i < nd; i++)
        ok = t->shape[i] == dims[i];
    if (!ok) {
        char got[128], exp[128];
        shape_str(got, sizeof got, t->ndim, t->shape);
        shape_str(exp, sizeof exp, nd, dims);
        return sm_err("%s: tensor '%s' has shape %s, but config.json implies %s", t->file, name, got, exp);
    }
    *out = t;
    return 0;
}

static int want2(const sm_model *m, const char *name, int64_t r, int64_t c, const char *why, sm_weight *w)
{
    const sm_tensor *t;
    int64_t d[2] = {r, c};
    if (want(m, name, 2, d, why, &t))
        return -1;
    *w = (sm_weight){t, 0, r, c};
    return 0;
}

static int want1(const sm_model *m, const char *name, int64_t n, const char *why, sm_weight *w)
{
    const sm_tensor *t;
    if (want(m, name, 1, &n, why, &t))
        return -1;
    *w = (sm_weight){t, 0, 1, n};
    return 0;
}

/* Name of the MoE block module in layer l ("block_sparse_moe" for Mixtral's classic layout). */
static const char *moe_block(const sm_model *m, int l)
{
    char nb[256];
    if (m->cfg.arch == SM_ARCH_MIXTRAL &&
        find_tensor(m, sm_name(SM_ARCH_MIXTRAL, SM_W_ROUTER, l, 0, "block_sparse_moe", nb, sizeof nb)))
        return "block_sparse_moe";
    return "mlp";
}

/* Resolve one role of layer l (or a global role) as a 2-D [r, c] or 1-D (r == 0) weight. */
static int resolve_role(sm_model *m, layer_weights *lw, sm_wrole role, int l, int64_t r, int64_t c, const char *why)
{
    char nb[256];
    sm_name(m->cfg.arch, role, l, 0, "mlp", nb, sizeof nb);
    sm_weight *w = lw ? &lw->w[role] : &m->global[role];
    if (r ? want2(m, nb, r, c, why, w) : want1(m, nb, c, why, w))
        return -1;
    if (lw)
        lw->present[role] = true;
    else
        m->global_present[role] = true;
    return 0;
}

/* One native-format expert matrix: dense `<name>` or factors `<name>_a` [out, r] and
 * `<name>_b` [r, in] with 1 <= r <= min(out, in). */
static int resolve_native_matrix(sm_model *m, layer_weights *lw, int k, int64_t e, const char *nb, int64_t r,
                                 int64_t cc, const char *why)
{
    if (find_tensor(m, nb))
        return want2(m, nb, r, cc, why, &lw->experts[k][e]);
    char na[300], nbb[300];
    snprintf(na, sizeof na, "%s_a", nb);
    snprintf(nbb, sizeof nbb, "%s_b", nb);
    const sm_tensor *ta = find_tensor(m, na);
    if (!ta)
        return sm_err("%s: no tensor '%s' (or its factors '%s' and '%s_b') for %s", m->dir, nb, na, nb, why);
    if (ta->ndim != 2 || ta->shape[0] != r || ta->shape[1] < 1 || ta->shape[1] > (r < cc ? r : cc))
        return sm_err("%s: tensor '%s' for %s must be [%lld, rank] with 1 <= rank <= %lld", ta->file, na, why,
                      (long long)r, (long long)(r < cc ? r : cc));
    if (!lw->fa[k]) {
        lw->fa[k] = xcalloc((size_t)lw->n_experts, sizeof(sm_weight));
        lw->fb[k] = xcalloc((size_t)lw->n_experts, sizeof(sm_weight));
    }
    int64_t rank = ta->shape[1];
    if (want2(m, na, r, rank, why, &lw->fa[k][e]) || want2(m, nbb, rank, cc, why, &lw->fb[k][e]))
        return -1;
    return 0;
}

static int resolve_experts(sm_model *m, int l, layer_weights *lw)
{
    const sm_config *c = &m->cfg;
    const char *mb = moe_block(m, l);
    int64_t E = sm_config_layer_experts(c, l), R = sm_config_router_rows(c, l), I = c->expert_intermediate,
            H = c->hidden;
    char nb[256], nb2[256];
    lw->n_experts = (int)E;
    lw->n_router = (int)R;
    if (want2(m, sm_name(c->arch, SM_W_ROUTER, l, 0, mb, nb, sizeof nb), R, H, "router", &lw->w[SM_W_ROUTER]))
        return -1;
    lw->present[SM_W_ROUTER] = true;
    for (int k = 0; k < EXPERT_MATS; k++)
        lw->experts[k] = xcalloc((size_t)E, sizeof(sm_weight));
    if (!c->native && find_tensor(m, sm_name_fused(l, true, mb, nb, sizeof nb))) {
        /* Fused layout: gate_up_proj [E, 2I, H] (gate rows first), down_proj [E, H, I]. */
        const sm_tensor *gu, *dn;
        int64_t dgu[3] = {E, 2 * I, H}, ddn[3] = {E, H, I};
        if (want(m, nb, 3, dgu, "fused expert gate/up", &gu) ||
            want(m, sm_name_fused(l, false, mb, nb2, sizeof nb2), 3, ddn, "fused expert down", &dn))
            return -1;
        for (int64_t e = 0; e < E; e++) {
            lw->experts[0][e] = (sm_weight){gu, (uint64_t)(e * 2 * I * H), I, H};
            lw->experts[1][e] = (sm_weight){gu, (uint64_t)((e * 2 + 1) * I * H), I, H};
            lw->experts[2][e] = (sm_weight){dn, (uint64_t)(e * H * I), H, I};
        }
        m->layout = SM_LAYOUT_FUSED;
        return 0;
    }
    static const char *const what[EXPERT_MATS] = {"gate", "up", "down"};
    for (int64_t e = 0; e < E; e++)
        for (int k = 0; k < EXPERT_MATS; k++) {
            int64_t r = k == 2 ? H : I, cc = k == 2 ? I : H;
            char why[64];
            snprintf(why, sizeof why, "layer %d expert %lld %s", l, (long long)e, what[k]);
            sm_name(c->arch, SM_W_EXPERT_GATE + k, l, (int)e, mb, nb, sizeof nb);
            if (c->native ? resolve_native_matrix(m, lw, k, e, nb, r, cc, why) : want2(m, nb, r, cc, why,
                                                                                         &lw->experts[k][e]))
                return -1;
        }
    return 0;
}

static int resolve_ffn(sm_model *m, int l, layer_weights *lw, sm_wrole first, int64_t I, const char *why)
{
    int64_t H = m->cfg.hidden;
    for (int k = 0; k < 3; k++)
        if (resolve_role(m, lw, first + k, l, k == 2 ? H : I, k == 2 ? I : H, why))
            return -1;
    return 0;
}

static int resolve_layer(sm_model *m, int l)
{
    const sm_config *c = &m->cfg;
    layer_weights *lw = &m->layers[l];
    int64_t H = c->hidden, qd = (int64_t)c->n_heads * c->head_dim, kd = (int64_t)c->n_kv_heads * c->head_dim;
    if (resolve_role(m, lw, SM_W_ATTN_NORM, l, 0, H, "input norm") ||
        resolve_role(m, lw, SM_W_Q, l, qd, H, "attention") || resolve_role(m, lw, SM_W_K, l, kd, H, "attention") ||
        resolve_role(m, lw, SM_W_V, l, kd, H, "attention") || resolve_role(m, lw, SM_W_O, l, H, qd, "attention") ||
        resolve_role(m, lw, SM_W_FFN_NORM, l, 0, H, "post-attention norm"))
        return -1;
    if (c->qkv_bias && (resolve_role(m, lw, SM_W_Q_BIAS, l, 0, qd, "attention bias") ||
                        resolve_role(m, lw, SM_W_K_BIAS, l, 0, kd, "attention bias") ||
                        resolve_role(m, lw, SM_W_V_BIAS, l, 0, kd, "attention bias")))
        return -1;
    if (c->qk_norm != SM_QKNORM_NONE) {
        bool full = c->qk_norm == SM_QKNORM_FULL;
        if (resolve_role(m, lw, SM_W_Q_NORM, l, 0, full ? qd : c->head_dim, "q norm") ||
            resolve_role(m, lw, SM_W_K_NORM, l, 0, full ? kd : c->head_dim, "k norm"))
            return -1;
    }
    if (!c->is_moe[l])
        return resolve_ffn(m, l, lw, SM_W_DENSE_GATE, c->dense_intermediate, "dense MLP");
    if (resolve_experts(m, l, lw))
        return -1;
    if (c->n_shared && resolve_ffn(m, l, lw, SM_W_SHARED_GATE, c->shared_intermediate, "shared expert"))
        return -1;
    if (c->shared_gate && resolve_role(m, lw, SM_W_SHARED_EXPERT_GATE, l, 1, H, "shared expert gate"))
        return -1;
    return 0;
}

static int resolve_all(sm_model *m)
{
    const sm_config *c = &m->cfg;
    char nb[64];
    if (resolve_role(m, NULL, SM_W_EMBED, -1, c->vocab, c->hidden, "embeddings") ||
        resolve_role(m, NULL, SM_W_FINAL_NORM, -1, 0, c->hidden, "final norm"))
        return -1;
    if (find_tensor(m, sm_name(c->arch, SM_W_LM_HEAD, -1, 0, "", nb, sizeof nb)) || !c->tie_embeddings) {
        if (resolve_role(m, NULL, SM_W_LM_HEAD, -1, c->vocab, c->hidden, "output head"))
            return -1;
    } else {
        m->global[SM_W_LM_HEAD] = m->global[SM_W_EMBED];
        m->global_present[SM_W_LM_HEAD] = true;
    }
    m->layers = xcalloc((size_t)c->n_layers, sizeof *m->layers);
    m->layout = SM_LAYOUT_PER_EXPERT;
    for (int l = 0; l < c->n_layers; l++)
        if (resolve_layer(m, l))
            return -1;
    return 0;
}

/* ---------------------------------------------------------------- public API */

sm_model *sm_model_open(const char *dir)
{
    if (!sm_is_dir(dir)) {
        sm_err("%s: not a model directory (expected a directory with config.json and safetensors files)", dir);
        return NULL;
    }
    sm_model *m = xcalloc(1, sizeof *m);
    m->dir = xstrdup(dir);
    for (size_t n = strlen(m->dir); n > 1 && m->dir[n - 1] == '/'; n--)
        m->dir[n - 1] = '\0';
    char *cfg = sm_path_join(dir, "config.json");
    int rc = sm_config_load(cfg, &m->cfg);
    free(cfg);
    if (rc) {
        sm_model_close(m);
        return NULL;
    }
    char *index = sm_path_join(dir, "model.safetensors.index.json");
    char *single = sm_path_join(dir, "model.safetensors");
    if (sm_exists(index)) {
        rc = open_index(m, index);
    } else if (sm_exists(single)) {
        rc = open_file(m, single);
        if (!rc)
            add_names_of(m, m->files[0]);
    } else {
        rc = sm_err("%s: no model.safetensors or model.safetensors.index.json", dir);
    }
    free(index);
    free(single);
    if (!rc) {
        qsort(m->names, m->n_names, sizeof *m->names, cmp_name);
        rc = resolve_all(m);
    }
    if (rc) {
        sm_model_close(m);
        return NULL;
    }
    return m;
}

void sm_model_close(sm_model *m)
{
    if (!m)
        return;
    if (m->layers)
        for (int l = 0; l < m->cfg.n_layers; l++)
            for (int k = 0; k < EXPERT_MATS; k++) {
                free(m->layers[l].experts[k]);
                free(m->layers[l].fa[k]);
                free(m->layers[l].fb[k]);
            }
    free(m->layers);
    for (int i = 0; i < m->n_files; i++)
        st_close(m->files[i]);
    free(m->files);
    free(m->names);
    sm_config_free(&m->cfg);
    free(m->dir);
    free(m);
}

const sm_config *sm_model_config(const sm_model *m) { return &m->cfg; }
const char *sm_model_dir(const sm_model *m) { return m->dir; }
sm_layout sm_model_layout(const sm_model *m) { return m->layout; }
int sm_model_file_count(const sm_model *m) { return m->n_files; }
const st_file *sm_model_file(const sm_model *m, int i) { return i >= 0 && i < m->n_files ? m->files[i] : NULL; }

int sm_model_router_rows(const sm_model *m, int layer)
{
    if (layer < 0 || layer >= m->cfg.n_layers)
        return 0;
    return m->layers[layer].n_router;
}

const int *sm_model_expert_map(const sm_model *m, int layer)
{
    if (layer < 0 || layer >= m->cfg.n_layers || !m->cfg.expert_map)
        return NULL;
    return m->cfg.expert_map[layer];
}

int sm_model_expert_factors(const sm_model *m, int layer, int slot, int mat, sm_weight *a, sm_weight *b)
{
    if (layer < 0 || layer >= m->cfg.n_layers || slot < 0 || slot >= m->layers[layer].n_experts || mat < 0 ||
        mat >= EXPERT_MATS)
        return sm_err("%s: layer %d has no expert %d", m->dir, layer, slot);
    const layer_weights *lw = &m->layers[layer];
    if (!lw->fa[mat] || !lw->fa[mat][slot].tensor)
        return 0;
    *a = lw->fa[mat][slot];
    *b = lw->fb[mat][slot];
    return 1;
}

int sm_model_layer_experts(const sm_model *m, int layer)
{
    if (layer < 0 || layer >= m->cfg.n_layers)
        return 0;
    return m->layers[layer].n_experts;
}

static bool is_global(sm_wrole r) { return r == SM_W_EMBED || r == SM_W_FINAL_NORM || r == SM_W_LM_HEAD; }

bool sm_model_has(const sm_model *m, sm_wrole role, int layer)
{
    if ((unsigned)role >= SM_W_ROLE_COUNT)
        return false;
    if (is_global(role))
        return m->global_present[role];
    if (layer < 0 || layer >= m->cfg.n_layers)
        return false;
    if (role >= SM_W_EXPERT_GATE && role <= SM_W_EXPERT_DOWN)
        return m->layers[layer].n_experts > 0;
    return m->layers[layer].present[role];
}

int sm_model_weight(const sm_model *m, sm_wrole role, int layer, int index, sm_weight *out)
{
    if (!sm_model_has(m, role, layer))
        return sm_err("%s: layer %d has no weight of role %d", m->dir, layer, (int)role);
    if (is_global(role)) {
        *out = m->global[role];
        return 0;
    }
    const layer_weights *lw = &m->layers[layer];
    if (role >= SM_W_EXPERT_GATE && role <= SM_W_EXPERT_DOWN) {
        if (index < 0 || index >= lw->n_experts)
            return sm_err("%s: layer %d has no expert %d", m->dir, layer, index);
        *out = lw->experts[role - SM_W_EXPERT_GATE][index];
        if (!out->tensor)
            return sm_err("%s: layer %d expert %d is stored as low-rank factors", m->dir, layer, index);
        return 0;
    }
    *out = lw->w[role];
    return 0;
}

/* Elements per item of a conversion's parallel loop (large weights convert on every core). */
#define CONVERT_ITEM ((size_t)1 << 20)

typedef struct convert_ctx {
    sm_dtype dtype;
    const unsigned char *src;
    float *dst;
    size_t count, es;
    size_t *bad; /* per item: its first non-finite element, or count */
} convert_ctx;

static int convert_item(void *ctx, int64_t i, const sm_monitor *mon)
{
    (void)mon;
    const convert_ctx *c = ctx;
    const size_t q0 = (size_t)i * CONVERT_ITEM, n = c->count - q0 < CONVERT_ITEM ? c->count - q0 : CONVERT_ITEM;
    const size_t bad = sm_to_f32(c->dtype, c->src + q0 * c->es, c->dst + q0, n);
    c->bad[i] = bad == n ? c->count : q0 + bad;
    return 0;
}

/* sm_to_f32 of count elements, in items of CONVERT_ITEM side by side: the first non-finite
 * element (the lowest item's), or count. */
static size_t convert(sm_dtype t, const unsigned char *src, size_t es, float *dst, size_t count)
{
    const int64_t items = (int64_t)((count + CONVERT_ITEM - 1) / CONVERT_ITEM);
    size_t *bad = items > 1 ? sm_alloc((size_t)items, sizeof *bad) : NULL;
    if (!bad) /* one item (or no memory for more): in place */
        return sm_to_f32(t, src, dst, count);
    convert_ctx c = {t, src, dst, count, es, bad};
    sm_parallel_for(items, (int64_t)count, convert_item, &c, NULL, NULL); /* cannot fail */
    size_t first = count;
    for (int64_t i = 0; i < items && first == count; i++)
        first = bad[i];
    free(bad);
    return first;
}

int sm_weight_rows_to_f32(const sm_weight *w, int64_t r0, int64_t n, float *dst)
{
    size_t es = sm_dtype_size(w->tensor->dtype), count = (size_t)(n * w->cols);
    uint64_t first = w->offset + (uint64_t)(r0 * w->cols);
    const unsigned char *src = (const unsigned char *)w->tensor->data + first * es;
    size_t bad = convert(w->tensor->dtype, src, es, dst, count);
    if (bad == count)
        return 0;
    return sm_err("%s: tensor '%s' has a non-finite value (%s) at element %llu", w->tensor->file, w->tensor->name,
                  sm_nonfinite_name(dst[bad]), (unsigned long long)(first + bad));
}

int sm_weight_to_f32(const sm_weight *w, float *dst) { return sm_weight_rows_to_f32(w, 0, w->rows, dst); }

const uint16_t *sm_weight_bf16(const sm_weight *w)
{
    const uint16_t *at = (const uint16_t *)w->tensor->data + w->offset;
    return w->tensor->dtype == SM_DT_BF16 && (uintptr_t)at % sizeof *at == 0 ? at : NULL;
}

void sm_weight_release(const sm_weight *w)
{
    size_t es = sm_dtype_size(w->tensor->dtype);
    st_release((const char *)w->tensor->data + w->offset * es, (uint64_t)w->rows * (uint64_t)w->cols * es);
}

uint64_t sm_model_param_count(const sm_model *m)
{
    uint64_t n = 0;
    for (size_t i = 0; i < m->n_names; i++)
        n += m->names[i].t->numel;
    return n;
}

uint64_t sm_model_expert_params(const sm_model *m)
{
    return 3ULL * (uint64_t)m->cfg.hidden * (uint64_t)m->cfg.expert_intermediate;
}

/* Routed-expert parameters stored in layer l (dense or factored). */
static uint64_t layer_routed_params(const sm_model *m, int l)
{
    const layer_weights *lw = &m->layers[l];
    uint64_t p = 0;
    for (int e = 0; e < lw->n_experts; e++)
        for (int k = 0; k < EXPERT_MATS; k++) {
            if (lw->experts[k][e].tensor)
                p += (uint64_t)lw->experts[k][e].rows * (uint64_t)lw->experts[k][e].cols;
            else if (lw->fa[k] && lw->fa[k][e].tensor)
                p += (uint64_t)lw->fa[k][e].rows * (uint64_t)lw->fa[k][e].cols +
                     (uint64_t)lw->fb[k][e].rows * (uint64_t)lw->fb[k][e].cols;
        }
    return p;
}

uint64_t sm_model_active_params(const sm_model *m)
{
    /* A token runs top-k of a layer's experts: count the average expert that many times. */
    uint64_t total = sm_model_param_count(m), inactive = 0;
    for (int l = 0; l < m->cfg.n_layers; l++) {
        int n = m->layers[l].n_experts;
        if (n > m->cfg.top_k) {
            uint64_t routed = layer_routed_params(m, l);
            inactive += routed - routed / (uint64_t)n * (uint64_t)m->cfg.top_k;
        }
    }
    return total - inactive;
}

unsigned sm_model_dtypes(const sm_model *m)
{
    unsigned mask = 0;
    for (size_t i = 0; i < m->n_names; i++)
        mask |= 1u << m->names[i].t->dtype;
    return mask;
}

void sm_model_fingerprint(const sm_model *m, char out[32])
{
    const sm_config *c = &m->cfg;
    uint64_t h = SM_FNV_OFFSET;
    int dims[] = {(int)c->arch, c->n_layers, c->hidden, c->vocab, c->n_heads, c->n_kv_heads, c->head_dim,
                  c->expert_intermediate, c->n_experts, c->top_k, c->n_shared};
    h = sm_fnv1a(h, dims, sizeof dims);
    for (size_t i = 0; i < m->n_names; i++) { /* names are sorted: independent of file order */
        const sm_tensor *t = m->names[i].t;
        h = sm_fnv1a(h, t->name, strlen(t->name) + 1);
        int32_t nd = t->ndim;
        h = sm_fnv1a(h, &nd, sizeof nd);
        h = sm_fnv1a(h, t->shape, (size_t)t->ndim * sizeof t->shape[0]);
    }
    snprintf(out, 32, "fnv1a64:%016llx", (unsigned long long)h);
}
