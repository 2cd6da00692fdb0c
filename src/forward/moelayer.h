/* moelayer: one MoE layer of a model, converted to fp32 and viewed as an sm_moe_block.
 *
 * This is the bridge between the stored model (src/model, any dtype, mmap'd) and everything that
 * computes on a layer: the forward pass, the engine's statistics and merges, the writers. Only
 * the layer asked for is converted, so memory is one layer's experts, never the model.
 * The block owns nothing of the caller's; free with sm_moe_layer_free. */
#ifndef SM_MOELAYER_H
#define SM_MOELAYER_H

#include "moe/moe.h"
#include "model/model.h"

typedef struct sm_moe_layer {
    sm_moe_block block;   /* views into the storage below */
    int layer;
    int64_t inter;        /* routed experts' intermediate size */
    int64_t shared_inter; /* 0 without shared experts */
    /* storage */
    float *router;        /* n × hidden */
    float **gate, **up, **down; /* n each: I×H, I×H, H×I (NULL when factored) */
    float **fac;          /* n × 3 × 2 factors (A, B) of factored matrices, or NULL */
    int *expert_map;      /* router row -> slot (native format), or NULL */
    sm_expert *experts;   /* n */
    float *shared_w[3];   /* shared expert gate/up/down, or NULL */
    sm_expert shared;
    float *shared_gate;   /* qwen2_moe [hidden], or NULL */
    /* sm_moe_layer_load_bf16: the routed matrices stored in bf16 are used where the model's file
     * is mapped (their linears' wb point there); their pages are released when the layer is freed */
    sm_weight *mapped;
    int n_mapped;
} sm_moe_layer;

/* Load MoE layer `layer` (which must be a MoE layer of the model). 0, or -1 with a message that
 * names the layer. */
int sm_moe_layer_load(const sm_model *m, int layer, sm_moe_layer *out);
/* The same, checking `mon` (may be NULL) between experts: converting a real layer's experts to
 * fp32 takes seconds (-1 with "cancelled"). */
int sm_moe_layer_load_mon(const sm_model *m, int layer, const sm_monitor *mon, sm_moe_layer *out);
/* The same, but the routed experts' dense matrices stored in bf16 are read where the file is
 * mapped (their linears have wb set and w NULL: no copy, no conversion; their values are checked
 * finite as a conversion checks them); others are converted to fp32.
 * For bf16 products: sm_moe_bf16_make or sm_moe_bf16_from_layer then packs only the fp32 rest;
 * the stored values are what packing their fp32 conversion gives (bf16 -> fp32 is exact). */
int sm_moe_layer_load_bf16(const sm_model *m, int layer, const sm_monitor *mon, sm_moe_layer *out);
/* Load only the router, shared experts and rule (no routed experts), for callers that supply
 * their own experts (a merged layer). block.experts is NULL and block.n_experts 0. */
int sm_moe_layer_load_shell(const sm_model *m, int layer, sm_moe_layer *out);
void sm_moe_layer_free(sm_moe_layer *l);

/* A MoE block whose dense expert matrices (routed and shared) are also held in bf16, so that
 * its products run in bf16 (util/matmul.h); factored matrices, the router and the shared gate
 * stay fp32. The source block must outlive it unless `drop_f32` was used. */
typedef struct sm_moe_bf16 {
    sm_moe_block block;
    sm_expert *experts;   /* block.n_experts */
    sm_expert shared;
    uint16_t *store;      /* every bf16 matrix, one allocation */
} sm_moe_bf16;

/* 0, or -1 with a message (out of memory). */
int sm_moe_bf16_make(const sm_moe_block *src, sm_moe_bf16 *out);
/* The same for a layer loaded by sm_moe_layer_load, whose fp32 expert matrices are then freed
 * (only bf16 remains: for the forward pass, which reads nothing else). */
int sm_moe_bf16_from_layer(sm_moe_layer *l, sm_moe_bf16 *out);
void sm_moe_bf16_free(sm_moe_bf16 *b);
/* Whether every dense expert matrix of b (routed and shared) has its bf16 copy: such a block
 * (an sm_moe_bf16's) runs in bf16 as it is. */
bool sm_moe_block_is_bf16(const sm_moe_block *b);

/* fp32 bytes of one layer's routed experts, router and shared experts (for memory planning). */
uint64_t sm_moe_layer_bytes(const sm_model *m, int layer);

#endif
