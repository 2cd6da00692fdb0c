/* roles: how the program addresses a model's weights, by role (with a layer and an index)
 * rather than by tensor name, and how a model stores its experts. The loader (model/model.h)
 * and the tensor names (model/names.h) share them. */
#ifndef SM_ROLES_H
#define SM_ROLES_H

typedef enum {
    SM_W_EMBED = 0,      /* [vocab, H] */
    SM_W_FINAL_NORM,     /* [H] */
    SM_W_LM_HEAD,        /* [vocab, H]; the embedding when tied */
    SM_W_ATTN_NORM,      /* [H] input_layernorm */
    SM_W_Q, SM_W_K, SM_W_V, SM_W_O,
    SM_W_Q_BIAS, SM_W_K_BIAS, SM_W_V_BIAS,
    SM_W_Q_NORM, SM_W_K_NORM,
    SM_W_FFN_NORM,       /* [H] post_attention_layernorm: its output is the MoE-block input */
    SM_W_ROUTER,         /* [n_experts, H] */
    SM_W_EXPERT_GATE,    /* index = expert: [I, H] */
    SM_W_EXPERT_UP,      /* [I, H] */
    SM_W_EXPERT_DOWN,    /* [H, I] */
    SM_W_SHARED_GATE, SM_W_SHARED_UP, SM_W_SHARED_DOWN,
    SM_W_SHARED_EXPERT_GATE, /* qwen2_moe [1, H] */
    SM_W_DENSE_GATE, SM_W_DENSE_UP, SM_W_DENSE_DOWN,
    SM_W_ROLE_COUNT
} sm_wrole;

/* Experts stored one tensor per expert and projection, or fused into [E, ...] tensors. */
typedef enum { SM_LAYOUT_PER_EXPERT = 0, SM_LAYOUT_FUSED } sm_layout;

#endif
