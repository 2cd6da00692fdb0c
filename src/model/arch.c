/* config.json interpretation for the five architectures (DESIGN §3.2). Defaults follow the
 * transformers configuration classes; every value is range-checked before anything is sized
 * from it. */
#include "model/arch.h"
#include "util/diag.h"
#include "util/fileio.h"
#include "util/mem.h"

#include <jansson.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_LAYERS 4096
#define MAX_DIM (1 << 20)
#define MAX_EXPERTS 65536
#define MAX_VOCAB (1 << 24)

static const char *const arch_names[SM_ARCH_COUNT] = {"mixtral", "qwen2_moe", "qwen3_moe", "olmoe", "deepseek"};
static const char *const expert_keys[SM_ARCH_COUNT] = {"num_local_experts", "num_experts", "num_experts", "num_experts",
                                                      "n_routed_experts"};

const char *sm_arch_name(sm_arch a) { return (unsigned)a < SM_ARCH_COUNT ? arch_names[a] : "?"; }
const char *sm_arch_expert_count_key(sm_arch a) { return (unsigned)a < SM_ARCH_COUNT ? expert_keys[a] : "?"; }

int sm_arch_parse(const char *model_type, sm_arch *out)
{
    for (int i = 0; i < SM_ARCH_COUNT; i++)
        if (!strcmp(model_type, arch_names[i])) {
            *out = (sm_arch)i;
            return 0;
        }
    return -1;
}

const char *sm_arch_routing_rule(const sm_config *c)
{
    if (c->arch == SM_ARCH_MIXTRAL)
        return "softmax over all experts, top-k, renormalised over the k";
    return c->renorm_topk ? "softmax over all experts, top-k, renormalised (norm_topk_prob)"
                          : "softmax over all experts, top-k, not renormalised";
}

/* --- typed getters: each names the file and key on failure ---------------------------- */

typedef struct {
    const char *path;
    json_t *root;
} cfgctx;

static int get_int(cfgctx *c, const char *key, bool required, long long def, long long lo, long long hi, int *out)
{
    json_t *v = json_object_get(c->root, key);
    if (!v || json_is_null(v)) {
        if (required)
            return sm_err("%s: required key '%s' is missing", c->path, key);
        *out = (int)def;
        return 0;
    }
    if (!json_is_integer(v))
        return sm_err("%s: key '%s' must be an integer", c->path, key);
    long long x = json_integer_value(v);
    if (x < lo || x > hi)
        return sm_err("%s: key '%s' is %lld, outside the supported range [%lld, %lld]", c->path, key, x, lo, hi);
    *out = (int)x;
    return 0;
}

static int get_num(cfgctx *c, const char *key, double def, double lo, double hi, double *out)
{
    json_t *v = json_object_get(c->root, key);
    if (!v || json_is_null(v)) {
        *out = def;
        return 0;
    }
    if (!json_is_number(v))
        return sm_err("%s: key '%s' must be a number", c->path, key);
    double x = json_number_value(v);
    if (!(x >= lo && x <= hi))
        return sm_err("%s: key '%s' is %g, outside the supported range [%g, %g]", c->path, key, x, lo, hi);
    *out = x;
    return 0;
}

static int get_bool(cfgctx *c, const char *key, bool def, bool *out)
{
    json_t *v = json_object_get(c->root, key);
    if (!v || json_is_null(v)) {
        *out = def;
        return 0;
    }
    if (!json_is_boolean(v))
        return sm_err("%s: key '%s' must be true or false", c->path, key);
    *out = json_is_true(v);
    return 0;
}

/* qwen*'s mlp_only_layers: a list of layer indices. */
static int get_layer_list(cfgctx *c, const char *key, int n_layers, bool *mark)
{
    json_t *v = json_object_get(c->root, key);
    if (!v || json_is_null(v))
        return 0;
    if (!json_is_array(v))
        return sm_err("%s: key '%s' must be a list of layer indices", c->path, key);
    size_t i;
    json_t *e;
    json_array_foreach(v, i, e) {
        if (!json_is_integer(e) || json_integer_value(e) < 0 || json_integer_value(e) >= n_layers)
            return sm_err("%s: key '%s': entry %zu is not a layer index in [0, %d)", c->path, key, i, n_layers);
        mark[json_integer_value(e)] = true;
    }
    return 0;
}

static int parse_common(cfgctx *c, sm_config *o)
{
    if (get_int(c, "num_hidden_layers", true, 0, 1, MAX_LAYERS, &o->n_layers) ||
        get_int(c, "hidden_size", true, 0, 1, MAX_DIM, &o->hidden) ||
        get_int(c, "vocab_size", true, 0, 1, MAX_VOCAB, &o->vocab) ||
        get_int(c, "num_attention_heads", true, 0, 1, MAX_DIM, &o->n_heads) ||
        get_int(c, "num_key_value_heads", false, o->n_heads, 1, MAX_DIM, &o->n_kv_heads))
        return -1;
    int def_hd = o->hidden / o->n_heads;
    if (get_int(c, "head_dim", false, def_hd, 1, MAX_DIM, &o->head_dim))
        return -1;
    if (!json_object_get(c->root, "head_dim") && o->hidden % o->n_heads)
        return sm_err("%s: hidden_size %d is not a multiple of num_attention_heads %d (and no head_dim is given)",
                      c->path, o->hidden, o->n_heads);
    if (o->head_dim % 2)
        return sm_err("%s: head_dim %d must be even for rotary embeddings", c->path, o->head_dim);
    if (o->n_heads % o->n_kv_heads)
        return sm_err("%s: num_attention_heads %d is not a multiple of num_key_value_heads %d", c->path,
                      o->n_heads, o->n_kv_heads);
    if ((long long)o->n_heads * o->head_dim > MAX_DIM)
        return sm_err("%s: num_attention_heads x head_dim is too large", c->path);
    double def_theta = o->arch == SM_ARCH_MIXTRAL ? 1e6 : 10000.0;
    if (get_num(c, "rms_norm_eps", 1e-6, 0.0, 1.0, &o->rms_eps) ||
        get_num(c, "rope_theta", def_theta, 1e-3, 1e12, &o->rope_theta) ||
        get_bool(c, "tie_word_embeddings", false, &o->tie_embeddings))
        return -1;
    o->routed_scaling = 1.0;
    /* Attention variants the forward pass does not implement: noted, so that eval and calibration
     * refuse the model with a clear message instead of computing something else. */
    json_t *rs = json_object_get(c->root, "rope_scaling");
    json_t *act = json_object_get(c->root, "hidden_act");
    json_t *clip = json_object_get(c->root, "clip_qkv");
    if (rs && !json_is_null(rs))
        snprintf(o->unsupported, sizeof o->unsupported, "rope_scaling (the forward pass implements plain RoPE)");
    else if (act && json_is_string(act) && strcmp(json_string_value(act), "silu"))
        snprintf(o->unsupported, sizeof o->unsupported, "hidden_act '%.40s' (the experts are SwiGLU with silu)",
                 json_string_value(act));
    else if (clip && !json_is_null(clip))
        snprintf(o->unsupported, sizeof o->unsupported, "clip_qkv (q/k/v clipping is not implemented)");
    /* Only informative (task items are left-truncated to it, as lm-eval does): a value of another
     * type is ignored rather than refused. */
    json_t *mp = json_object_get(c->root, "max_position_embeddings");
    if (mp && json_is_integer(mp) && json_integer_value(mp) > 0)
        o->max_positions = json_integer_value(mp) > INT32_MAX ? INT32_MAX : (int)json_integer_value(mp);
    /* Sliding-window attention: Mixtral's sliding_window (null when off); Qwen's only when
     * use_sliding_window is true. */
    json_t *sw = json_object_get(c->root, "sliding_window"), *use = json_object_get(c->root, "use_sliding_window");
    bool qwen = o->arch == SM_ARCH_QWEN2_MOE || o->arch == SM_ARCH_QWEN3_MOE;
    if (sw && json_is_integer(sw) && json_integer_value(sw) > 0 && (!qwen || (use && json_is_true(use))))
        o->sliding_window = json_integer_value(sw) > INT32_MAX ? INT32_MAX : (int)json_integer_value(sw);
    return 0;
}

static int parse_arch(cfgctx *c, sm_config *o)
{
    const char *ek = expert_keys[o->arch];
    o->is_moe = xcalloc((size_t)o->n_layers, sizeof *o->is_moe);
    bool attn_bias = false;
    switch (o->arch) {
    case SM_ARCH_MIXTRAL:
        if (get_int(c, "intermediate_size", true, 0, 1, MAX_DIM, &o->expert_intermediate))
            return -1;
        for (int l = 0; l < o->n_layers; l++)
            o->is_moe[l] = true;
        o->renorm_topk = true;
        break;
    case SM_ARCH_QWEN2_MOE:
    case SM_ARCH_QWEN3_MOE: {
        int step;
        if (get_int(c, "moe_intermediate_size", true, 0, 1, MAX_DIM, &o->expert_intermediate) ||
            get_int(c, "intermediate_size", false, 0, 0, MAX_DIM, &o->dense_intermediate) ||
            get_int(c, "decoder_sparse_step", false, 1, 1, MAX_LAYERS, &step) ||
            get_bool(c, "norm_topk_prob", false, &o->renorm_topk))
            return -1;
        bool *mlp_only = xcalloc((size_t)o->n_layers, sizeof *mlp_only);
        int rc = get_layer_list(c, "mlp_only_layers", o->n_layers, mlp_only);
        for (int l = 0; l < o->n_layers && !rc; l++)
            o->is_moe[l] = !mlp_only[l] && (l + 1) % step == 0;
        free(mlp_only);
        if (rc)
            return -1;
        if (o->arch == SM_ARCH_QWEN2_MOE) {
            if (get_int(c, "shared_expert_intermediate_size", false, 0, 0, MAX_DIM, &o->shared_intermediate))
                return -1;
            o->n_shared = o->shared_intermediate > 0;
            o->shared_gate = o->n_shared > 0;
            o->qkv_bias = true; /* Qwen2-MoE attention always has q/k/v biases */
        } else {
            o->qk_norm = SM_QKNORM_PER_HEAD;
            if (get_bool(c, "attention_bias", false, &attn_bias))
                return -1;
            o->qkv_bias = attn_bias;
        }
        break;
    }
    case SM_ARCH_OLMOE:
        if (get_int(c, "intermediate_size", true, 0, 1, MAX_DIM, &o->expert_intermediate) ||
            get_bool(c, "norm_topk_prob", false, &o->renorm_topk))
            return -1;
        for (int l = 0; l < o->n_layers; l++)
            o->is_moe[l] = true;
        o->qk_norm = SM_QKNORM_FULL;
        break;
    case SM_ARCH_DEEPSEEK: {
        int first_dense, freq;
        if (get_int(c, "moe_intermediate_size", true, 0, 1, MAX_DIM, &o->expert_intermediate) ||
            get_int(c, "intermediate_size", false, 0, 0, MAX_DIM, &o->dense_intermediate) ||
            get_int(c, "n_shared_experts", false, 0, 0, 1024, &o->n_shared) ||
            get_int(c, "first_k_dense_replace", false, 0, 0, MAX_LAYERS, &first_dense) ||
            get_int(c, "moe_layer_freq", false, 1, 1, MAX_LAYERS, &freq) ||
            get_bool(c, "norm_topk_prob", false, &o->renorm_topk) ||
            get_num(c, "routed_scaling_factor", 1.0, 0.0, 1e6, &o->routed_scaling))
            return -1;
        json_t *sf = json_object_get(c->root, "scoring_func");
        if (sf && json_is_string(sf) && strcmp(json_string_value(sf), "softmax"))
            return sm_err("%s: scoring_func '%s' is not supported (DeepSeek-MoE v1 uses softmax)", c->path,
                          json_string_value(sf));
        for (int l = 0; l < o->n_layers; l++)
            o->is_moe[l] = l >= first_dense && l % freq == 0;
        o->shared_intermediate = o->n_shared * o->expert_intermediate;
        break;
    }
    default:
        return sm_err("%s: unsupported architecture", c->path);
    }
    if (get_int(c, ek, true, 0, 1, MAX_EXPERTS, &o->n_experts) ||
        get_int(c, "num_experts_per_tok", true, 0, 1, MAX_EXPERTS, &o->top_k))
        return -1;
    if (o->top_k > o->n_experts)
        return sm_err("%s: num_experts_per_tok %d exceeds %s %d", c->path, o->top_k, ek, o->n_experts);
    o->n_moe_layers = 0;
    for (int l = 0; l < o->n_layers; l++)
        o->n_moe_layers += o->is_moe[l];
    if (o->n_moe_layers < o->n_layers && o->dense_intermediate <= 0)
        return sm_err("%s: %d layers are dense but 'intermediate_size' (their FFN width) is missing or 0", c->path,
                      o->n_layers - o->n_moe_layers);
    if (o->n_moe_layers == 0)
        return sm_err("%s: no layer is a mixture-of-experts layer under this configuration", c->path);
    return 0;
}

/* The "submoe" block of the native format: {"version": 1, "experts_per_layer": {"L": n},
 * "expert_map": {"L": [slot of each router row]}}; every MoE layer needs an entry. */
static int parse_native(cfgctx *c, sm_config *o)
{
    json_t *b = json_object_get(c->root, "submoe");
    if (!b)
        return 0;
    const char *p = c->path;
    if (!json_is_object(b))
        return sm_err("%s: key 'submoe' must be an object", p);
    json_t *v = json_object_get(b, "version");
    if (!json_is_integer(v) || json_integer_value(v) != 1)
        return sm_err("%s: submoe.version must be 1 (this submoe reads version 1 of its native format)", p);
    json_t *per = json_object_get(b, "experts_per_layer"), *maps = json_object_get(b, "expert_map");
    if (!json_is_object(per))
        return sm_err("%s: submoe.experts_per_layer must be an object of layer -> expert count", p);
    if (maps && !json_is_object(maps))
        return sm_err("%s: submoe.expert_map must be an object of layer -> list", p);
    o->native = true;
    o->layer_experts = calloc((size_t)o->n_layers, sizeof *o->layer_experts);
    o->expert_map = calloc((size_t)o->n_layers, sizeof *o->expert_map);
    if (!o->layer_experts || !o->expert_map)
        return sm_err("out of memory");
    const char *key;
    json_t *val;
    json_object_foreach(per, key, val) {
        char *end;
        long l = strtol(key, &end, 10);
        if (*end || !*key || l < 0 || l >= o->n_layers || !o->is_moe[l])
            return sm_err("%s: submoe.experts_per_layer: '%s' is not a MoE layer of this model", p, key);
        if (!json_is_integer(val) || json_integer_value(val) < 1 || json_integer_value(val) > o->n_experts)
            return sm_err("%s: submoe.experts_per_layer.%s must be an integer in [1, %d]", p, key, o->n_experts);
        o->layer_experts[l] = (int)json_integer_value(val);
    }
    for (int l = 0; l < o->n_layers; l++)
        if (o->is_moe[l] && !o->layer_experts[l])
            return sm_err("%s: submoe.experts_per_layer has no entry for MoE layer %d", p, l);
    if (maps)
        json_object_foreach(maps, key, val) {
            char *end;
            long l = strtol(key, &end, 10);
            if (*end || !*key || l < 0 || l >= o->n_layers || !o->is_moe[l])
                return sm_err("%s: submoe.expert_map: '%s' is not a MoE layer of this model", p, key);
            if (!json_is_array(val) || (long)json_array_size(val) != o->n_experts)
                return sm_err("%s: submoe.expert_map.%s must list the slot of each of the %d router rows", p, key,
                              o->n_experts);
            o->expert_map[l] = calloc((size_t)o->n_experts, sizeof(int));
            if (!o->expert_map[l])
                return sm_err("out of memory");
            for (int i = 0; i < o->n_experts; i++) {
                json_t *e = json_array_get(val, (size_t)i);
                if (!json_is_integer(e) || json_integer_value(e) < 0 ||
                    json_integer_value(e) >= o->layer_experts[l])
                    return sm_err("%s: submoe.expert_map.%s[%d] must be a slot in [0, %d)", p, key, i,
                                  o->layer_experts[l]);
                o->expert_map[l][i] = (int)json_integer_value(e);
            }
        }
    return 0;
}

int sm_config_layer_experts(const sm_config *c, int layer)
{
    if (layer < 0 || layer >= c->n_layers || !c->is_moe[layer])
        return 0;
    return c->layer_experts ? c->layer_experts[layer] : c->n_experts;
}

int sm_config_router_rows(const sm_config *c, int layer)
{
    if (layer < 0 || layer >= c->n_layers || !c->is_moe[layer])
        return 0;
    if (c->native && !c->expert_map[layer])
        return c->layer_experts[layer]; /* a collapsed router: one row per slot */
    return c->n_experts;
}

int sm_config_parse(const char *path, const char *text, sm_config *out)
{
    memset(out, 0, sizeof *out);
    json_error_t jerr;
    json_t *root = json_loads(text, JSON_REJECT_DUPLICATES, &jerr);
    if (!root)
        return sm_err("%s: malformed JSON at line %d, column %d: %s", path, jerr.line, jerr.column, jerr.text);
    cfgctx c = {path, root};
    int rc = 0;
    if (!json_is_object(root)) {
        rc = sm_err("%s: top level is not a JSON object", path);
        goto done;
    }
    json_t *mt = json_object_get(root, "model_type");
    if (!json_is_string(mt)) {
        rc = sm_err("%s: required key 'model_type' is missing or not a string", path);
        goto done;
    }
    if (sm_arch_parse(json_string_value(mt), &out->arch) != 0) {
        rc = sm_err("%s: model_type '%s' is not supported (supported: mixtral, qwen2_moe, qwen3_moe, olmoe, deepseek)",
                    path, json_string_value(mt));
        goto done;
    }
    rc = parse_common(&c, out);
    if (!rc)
        rc = parse_arch(&c, out);
    if (!rc)
        rc = parse_native(&c, out);
done:
    json_decref(root);
    if (rc)
        sm_config_free(out);
    return rc;
}

int sm_config_load(const char *path, sm_config *out)
{
    char *text = sm_read_file(path, SM_CONFIG_MAX_BYTES, NULL);
    if (!text)
        return -1;
    if (strlen(text) == 0) {
        free(text);
        return sm_err("%s: file is empty", path);
    }
    int rc = sm_config_parse(path, text, out);
    free(text);
    return rc;
}

void sm_config_free(sm_config *c)
{
    for (int l = 0; c->expert_map && l < c->n_layers; l++)
        free(c->expert_map[l]);
    free(c->expert_map);
    free(c->layer_experts);
    free(c->is_moe);
    c->is_moe = NULL;
    c->expert_map = NULL;
    c->layer_experts = NULL;
}
