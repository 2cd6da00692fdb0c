/* arch: the five supported MoE architectures and their config.json (DESIGN §3.2). */
#ifndef SM_ARCH_H
#define SM_ARCH_H

#include <stdbool.h>

typedef enum {
    SM_ARCH_MIXTRAL = 0,
    SM_ARCH_QWEN2_MOE,
    SM_ARCH_QWEN3_MOE,
    SM_ARCH_OLMOE,
    SM_ARCH_DEEPSEEK,
    SM_ARCH_COUNT
} sm_arch;

typedef enum { SM_QKNORM_NONE = 0, SM_QKNORM_PER_HEAD, SM_QKNORM_FULL } sm_qknorm;

/* Everything the program needs from config.json, normalised across architectures. */
typedef struct sm_config {
    sm_arch arch;
    int n_layers, hidden, vocab;
    int n_heads, n_kv_heads, head_dim;
    int dense_intermediate;      /* FFN width of dense (non-MoE) layers; 0 if none */
    int expert_intermediate;     /* I of one routed expert */
    int n_experts;               /* routed experts per MoE layer in the source config */
    int top_k;
    bool renorm_topk;            /* renormalise the k selected probabilities */
    int n_shared;                /* always-on shared experts (deepseek n_shared_experts; qwen2 1) */
    int shared_intermediate;     /* I of the shared-expert MLP as stored (deepseek: n_shared*moe_I) */
    bool shared_gate;            /* qwen2_moe: sigmoid(shared_expert_gate . x) scales the shared expert */
    double routed_scaling;       /* deepseek routed_scaling_factor (1.0 otherwise) */
    double rms_eps, rope_theta;
    bool tie_embeddings;
    bool qkv_bias;               /* qwen2_moe */
    sm_qknorm qk_norm;           /* qwen3_moe per head, olmoe full width */
    int sliding_window;          /* attention window of the config (0: none); the forward pass
                                  * refuses sequences longer than it rather than ignore it */
    int max_positions;           /* max_position_embeddings (0: not given); lm-eval's max length */
    char unsupported[200];       /* a config feature the forward pass does not implement ("" if
                                  * none): eval and calibration refuse the model with it, while
                                  * inspect and merges from an activations file still work */
    bool *is_moe;                /* [n_layers] */
    int n_moe_layers;
    /* submoe's native output format (DESIGN §3.3): a "submoe" block in config.json. */
    bool native;
    int *layer_experts;          /* [n_layers] expert slots per MoE layer (native), else NULL */
    int **expert_map;            /* [n_layers] router row -> slot (n_experts entries), or NULL rows */
} sm_config;

const char *sm_arch_name(sm_arch a);            /* the config.json model_type */
int sm_arch_parse(const char *model_type, sm_arch *out);
const char *sm_arch_routing_rule(const sm_config *c); /* human description of the routing rule */
/* The config.json key that holds the routed-expert count for this architecture. */
const char *sm_arch_expert_count_key(sm_arch a);

/* The largest config.json read (a real one is a few kilobytes). */
#define SM_CONFIG_MAX_BYTES (16u << 20)

/* Parse config.json text (path is used in messages). 0 or -1 with an error. */
int sm_config_parse(const char *path, const char *text, sm_config *out);
int sm_config_load(const char *path, sm_config *out);
void sm_config_free(sm_config *c);

/* Expert slots of MoE layer L (the native format's per-layer count, else n_experts) and its
 * router rows: n_experts when the layer keeps the original router (an expert map, or not
 * native), else one row per slot (a collapsed router). */
int sm_config_layer_experts(const sm_config *c, int layer);
int sm_config_router_rows(const sm_config *c, int layer);

#endif
