/* synth: synthetic models in the real Hugging Face layout of any supported architecture, with
 * planted expert clusters (members of a cluster = a shared base + small noise), so tests and
 * benchmarks get realistic shapes without downloads. Deterministic for a seed. Every norm weight
 * (input/post-attention/final layernorm, q_norm, k_norm) is 1 + uniform noise in [-0.2, 0.2),
 * different per tensor, so a forward pass that applies the wrong norm's weights shows. */
#ifndef SM_SYNTH_H
#define SM_SYNTH_H

#include <stdbool.h>
#include <stdint.h>

#include "model/arch.h"
#include "model/dtype.h"
#include "model/model.h"

typedef struct sm_synth_opts {
    sm_arch arch;
    int layers, hidden, intermediate, experts, top_k;
    int heads, kv_heads, head_dim, vocab;
    int dense_intermediate;    /* dense layers of qwen2/qwen3/deepseek */
    int shared_intermediate;   /* qwen2_moe shared expert width */
    int shared_experts;        /* deepseek n_shared_experts */
    int first_dense;           /* deepseek first_k_dense_replace */
    int sparse_step;           /* qwen decoder_sparse_step */
    const int *mlp_only_layers; /* qwen mlp_only_layers: these layers are dense (caller's array) */
    int n_mlp_only_layers;
    double routed_scaling;     /* deepseek routed_scaling_factor (1.5, so that tests see it) */
    bool norm_topk;
    bool tie_embeddings;
    sm_layout layout;
    sm_dtype dtype;
    int clusters;              /* planted clusters per MoE layer (== experts: no structure) */
    double noise;              /* member deviation relative to the cluster base */
    uint64_t seed;
    uint64_t shard_size;       /* 0: single file */
    bool quiet;                /* no progress bar */
    bool permute;              /* members' intermediate neurons randomly permuted (but each
                                * cluster's lowest-numbered expert), like experts trained from
                                * scratch: what neuron alignment must undo */
} sm_synth_opts;

void sm_synth_defaults(sm_synth_opts *o, sm_arch arch);
/* Validate option values; -1 with a message naming the option. */
int sm_synth_check(const sm_synth_opts *o);
/* Write config.json and the safetensors file(s) into an existing directory. */
int sm_synth_write(const sm_synth_opts *o, const char *dir);
/* The planted cluster of each expert of MoE layer `layer` (what config.json records). */
void sm_synth_assignment(const sm_synth_opts *o, int layer, int *cluster_of_expert);
/* With permute: perm[i] = the base neuron expert e's neuron i computes (identity otherwise). */
void sm_synth_permutation(const sm_synth_opts *o, int layer, int expert, int *perm);

#endif
