/* forward: the built-in CPU forward pass of the five MoE architectures (DESIGN §3.2).
 *
 * Layer-at-a-time streaming: a batch of sequences goes through layer L completely before layer
 * L+1 is touched; only one layer's weights are converted to fp32 at a time, and within a layer the
 * sequences run in chunks of about SM_FORWARD_CHUNK_TOKENS tokens, so memory is one layer's
 * weights, the residual stream [n_seq * seq_len, hidden] and one chunk's scratch, independent of
 * the model size. The projections, the experts and the LM head run through util/matmul (oneDNN),
 * in fp32 or, with opts.precision bf16, on bf16 weights with fp32 accumulation (expert matrices
 * stored in bf16 are read where the file is mapped; other matrices are bf16 copies);
 * attention scores, norms and softmax stay fp32.
 *
 * Semantics follow Hugging Face transformers' modeling code of each architecture:
 * RMSNorm  y = w * x / sqrt(mean(x^2) + eps) (float);
 * RoPE     rotate_half convention, dimension i pairs with i + head_dim/2, inv_freq = theta^(-2i/d);
 * attention grouped-query, causal, scale 1/sqrt(head_dim), q/k/v biases (qwen2_moe), per-head
 *          q/k RMSNorm before RoPE (qwen3_moe), full-width q/k RMSNorm over the projected q and k
 *          (olmoe);
 * MoE      the block and routing rules shared with the engine (engine/moe.h, engine/route.h):
 *          each architecture's rule, qwen2_moe's sigmoid-gated shared expert, deepseek's always-on
 *          shared experts and routed_scaling_factor; dense SwiGLU layers where the config says so;
 * head     final RMSNorm and LM head (the embedding when tied). */
#ifndef SM_FORWARD_H
#define SM_FORWARD_H

#include <stdint.h>

#include "util/matmul.h"
#include "util/monitor.h"
#include "moe/moe.h"
#include "model/model.h"

/* Calibration capture: called once per MoE layer per batch with the block inputs (the
 * post_attention_layernorm output) of n tokens, their router logits, the top-k experts and
 * routing weights (after renormalisation/scaling, as the block applies them). Token t of the
 * batch is sequence t / seq_len, position t % seq_len. Return non-zero to abort the run (with
 * an sm_err message). */
typedef int (*sm_moe_capture_fn)(void *ctx, int layer, int n, const float *x /*[n, H]*/,
                                 const float *logits /*[n, E]*/, const int *topk /*[n, k]*/,
                                 const float *topw /*[n, k]*/);

/* The same in chunks of whole sequences (bounded memory): rows [row0, row0 + n) of the `total`
 * tokens of the batch, called in order for every chunk of every MoE layer. */
typedef int (*sm_moe_capture_chunk_fn)(void *ctx, int layer, int64_t row0, int64_t n, int64_t total,
                                       const float *x /*[n, H]*/, const float *logits /*[n, E]*/,
                                       const int *topk /*[n, k]*/, const float *topw /*[n, k]*/);

/* Default tokens per chunk: each layer runs on this many tokens at a time, so that apart from the
 * residual stream [n_seq * seq_len, hidden] the memory is that of one chunk. */
#define SM_FORWARD_CHUNK_TOKENS 8192
/* The head's logits scratch: one window's [seq_len, vocab] up to this, else blocks of rows. */
#define SM_FORWARD_HEAD_BYTES ((size_t)256 << 20)

typedef struct sm_forward_opts {
    /* Optional outputs. */
    float *logits;          /* [n_seq * seq_len, vocab] if non-NULL */
    double *nll_sum;        /* if non-NULL: += -log p(ids[t+1] | ids[..t]) for t < seq_len-1 */
    /* Log-probabilities of chosen next tokens without [n_seq * seq_len, vocab] logits: where
     * targets[i] >= 0 (i = s * seq_len + t), target_logprob[i] = log p(targets[i] | ids[..t]) of
     * sequence s; the head runs on a block of rows at a time (SM_FORWARD_HEAD_BYTES of logits). */
    const int32_t *targets;
    double *target_logprob;
    uint64_t *nll_count;    /* += number of predicted tokens */
    sm_moe_capture_fn capture;  /* whole batch at once (forces a single chunk) */
    sm_moe_capture_chunk_fn capture_chunk; /* chunk by chunk (shares capture_ctx) */
    void *capture_ctx;
    int64_t chunk_tokens;       /* 0 = SM_FORWARD_CHUNK_TOKENS (rounded to whole sequences) */
    int stop_after_layer;   /* >= 0: run layers 0..stop_after_layer only, no head (capture only) */
    void (*on_layer)(void *ctx, int layer_done); /* progress: called after each layer */
    void *on_layer_ctx;
    /* Run another block in place of MoE layer L (a merged layer previewed without writing a
     * model): 0 with *block set to it, or to NULL for the model's own; -1 with a message stops
     * the run. It must stay valid until the layer is done (on_layer is called right after); its
     * router row count is the E of the capture callback for that layer. */
    int (*moe_override)(void *ctx, int layer, const sm_moe_block **block);
    void *moe_override_ctx;
    /* Cancellation, checked while a layer's experts are converted, before every unit of rows,
     * after its attention and between its expert slots, and before each window's LM head: -1
     * with "cancelled" (NULL: none). */
    const sm_monitor *mon;
    /* Products of the weights: fp32 (the default) or bf16 (util/matmul.h; the caller checked
     * that the CPU supports it). Override blocks are copied to bf16 for their layer. */
    sm_precision precision;
} sm_forward_opts;

void sm_forward_opts_init(sm_forward_opts *o);

/* Run n_seq sequences of seq_len ids (row-major [n_seq, seq_len]) through the model.
 * Ids must already be checked against the vocabulary. 0 or -1 with a message. */
int sm_forward(const sm_model *m, const int32_t *ids, int n_seq, int seq_len, const sm_forward_opts *o);

/* Kernels (exposed for tests). x, y may alias in rmsnorm. */
void sm_rmsnorm(float *y, const float *x, const float *w, int n, float eps);
/* Rotate a [T, n_heads * head_dim] block in place; position of row t is pos0 + t. */
void sm_rope(float *x, int T, int n_heads, int head_dim, double theta, int pos0);
/* The same in two steps, the table shared by every window of a batch: [T][head_dim/2] cosines and
 * sines (NULL when out of memory; free()), then its rotation of a block. */
double *sm_rope_table(int T, int head_dim, double theta, int pos0);
void sm_rope_apply(float *x, int T, int n_heads, int head_dim, const double *cs);

#endif
