#include "model/names.h"

#include <stdio.h>

const char *sm_moe_block_default(sm_arch a, sm_layout layout)
{
    /* transformers >= 5 calls Mixtral's block "mlp" and fuses its experts. */
    return a == SM_ARCH_MIXTRAL && layout == SM_LAYOUT_PER_EXPERT ? "block_sparse_moe" : "mlp";
}

const char *sm_name_fused(int layer, bool gate_up, const char *moe_block, char *buf, size_t n)
{
    snprintf(buf, n, "model.layers.%d.%s.experts.%s", layer, moe_block, gate_up ? "gate_up_proj" : "down_proj");
    return buf;
}

const char *sm_name(sm_arch a, sm_wrole role, int layer, int index, const char *moe_block, char *buf, size_t n)
{
    static const char *const mixtral_expert[3] = {"w1", "w3", "w2"};
    static const char *const proj[3] = {"gate_proj", "up_proj", "down_proj"};
    const char *shared = a == SM_ARCH_DEEPSEEK ? "shared_experts" : "shared_expert";
    switch (role) {
    case SM_W_EMBED: snprintf(buf, n, "model.embed_tokens.weight"); break;
    case SM_W_FINAL_NORM: snprintf(buf, n, "model.norm.weight"); break;
    case SM_W_LM_HEAD: snprintf(buf, n, "lm_head.weight"); break;
    case SM_W_ATTN_NORM: snprintf(buf, n, "model.layers.%d.input_layernorm.weight", layer); break;
    case SM_W_Q: snprintf(buf, n, "model.layers.%d.self_attn.q_proj.weight", layer); break;
    case SM_W_K: snprintf(buf, n, "model.layers.%d.self_attn.k_proj.weight", layer); break;
    case SM_W_V: snprintf(buf, n, "model.layers.%d.self_attn.v_proj.weight", layer); break;
    case SM_W_O: snprintf(buf, n, "model.layers.%d.self_attn.o_proj.weight", layer); break;
    case SM_W_Q_BIAS: snprintf(buf, n, "model.layers.%d.self_attn.q_proj.bias", layer); break;
    case SM_W_K_BIAS: snprintf(buf, n, "model.layers.%d.self_attn.k_proj.bias", layer); break;
    case SM_W_V_BIAS: snprintf(buf, n, "model.layers.%d.self_attn.v_proj.bias", layer); break;
    case SM_W_Q_NORM: snprintf(buf, n, "model.layers.%d.self_attn.q_norm.weight", layer); break;
    case SM_W_K_NORM: snprintf(buf, n, "model.layers.%d.self_attn.k_norm.weight", layer); break;
    case SM_W_FFN_NORM: snprintf(buf, n, "model.layers.%d.post_attention_layernorm.weight", layer); break;
    case SM_W_ROUTER: snprintf(buf, n, "model.layers.%d.%s.gate.weight", layer, moe_block); break;
    case SM_W_EXPERT_GATE:
    case SM_W_EXPERT_UP:
    case SM_W_EXPERT_DOWN: {
        int k = role - SM_W_EXPERT_GATE;
        snprintf(buf, n, "model.layers.%d.%s.experts.%d.%s.weight", layer, moe_block, index,
                 a == SM_ARCH_MIXTRAL ? mixtral_expert[k] : proj[k]);
        break;
    }
    case SM_W_SHARED_GATE:
    case SM_W_SHARED_UP:
    case SM_W_SHARED_DOWN:
        snprintf(buf, n, "model.layers.%d.mlp.%s.%s.weight", layer, shared, proj[role - SM_W_SHARED_GATE]);
        break;
    case SM_W_SHARED_EXPERT_GATE: snprintf(buf, n, "model.layers.%d.mlp.shared_expert_gate.weight", layer); break;
    case SM_W_DENSE_GATE:
    case SM_W_DENSE_UP:
    case SM_W_DENSE_DOWN:
        snprintf(buf, n, "model.layers.%d.mlp.%s.weight", layer, proj[role - SM_W_DENSE_GATE]);
        break;
    default: snprintf(buf, n, "?"); break;
    }
    return buf;
}
