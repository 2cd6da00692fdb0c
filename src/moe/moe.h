/* moe: SwiGLU experts and the MoE block on a block of tokens (DESIGN §2, §2.6).
 *
 *   E(x) = W_down ( silu(W_gate x) ⊙ W_up x ),  silu(v) = v / (1 + e^−v)
 * A block of m tokens is an m×H row-major matrix; every product is one sgemm. The MoE block
 * routes each token (route.h), gathers the tokens of each expert slot, runs the slot's expert
 * once on them and scatter-adds the weighted outputs (slots in index order, like the reference
 * implementations), then adds the shared experts (scaled by sigmoid(g·x) when gated).
 * A router row reaches its slot through an expert map (`remap` after merging): when two of a
 * token's selected rows share a slot, the slot runs once with the summed weight. */
#ifndef SM_MOE_H
#define SM_MOE_H

#include <stdint.h>

#include "moe/route.h"
#include "util/monitor.h"

/* A linear map y = W x with W out×in, stored densely or as a product W = a·b (a out×rank,
 * b rank×in) for low-rank merged experts. A dense W may also (or only) be held in bf16: then the
 * products run in bf16 with fp32 accumulation (util/matmul.h); code that reads W itself uses w. */
typedef struct sm_linear {
    int64_t out, in;
    const float *w;     /* dense, or NULL when factored (or held in bf16 only) */
    const float *a, *b; /* factored */
    int64_t rank;
    const uint16_t *wb; /* dense bf16 (out×in), or NULL */
} sm_linear;

typedef struct sm_expert {
    sm_linear gate, up; /* I × H */
    sm_linear down;     /* H × I */
} sm_expert;

/* A dense expert view over row-major gate/up (I×H) and down (H×I). */
sm_expert sm_expert_dense(int64_t hidden, int64_t inter, const float *gate, const float *up,
                          const float *down);

/* Check shapes (gate/up I×H, down H×I, factors present); 0 or -1 with a message. */
int sm_expert_check(const sm_expert *e, int64_t hidden);

/* y (m × out) = x (m × in) Wᵀ. tmp: m × rank floats when factored (unused otherwise). */
void sm_linear_forward(const sm_linear *l, const float *x, int64_t m, float *y, float *tmp);

/* y (m×H) = E(x) for x (m×H). Allocates its scratch; 0 or -1 on allocation failure. */
int sm_expert_forward(const sm_expert *e, const float *x, int64_t m, float *y);
/* Every matrix of e is dense and held in bf16 (its products run on oneDNN's bf16 kernels). */
bool sm_expert_is_bf16(const sm_expert *e);

typedef struct sm_moe_block {
    int64_t hidden;
    int n_router;               /* router rows */
    const float *router;        /* n_router × hidden */
    sm_route_rule rule;
    int n_experts;              /* expert slots */
    const sm_expert *experts;   /* n_experts */
    const int *expert_map;      /* n_router entries in [0, n_experts); NULL = identity */
    int n_shared;               /* always-on experts (deepseek), or qwen2_moe's one */
    const sm_expert *shared;
    const float *shared_gate;   /* hidden: sigmoid(g·x) scales the shared output; NULL = 1 */
} sm_moe_block;

int sm_moe_block_check(const sm_moe_block *b);
/* Every routed and shared expert of b is dense bf16 (sm_expert_is_bf16), so their forwards may run
 * side by side on util/parallel's threads (oneDNN products only, no OpenBLAS); false where that is
 * not allowed (sm_matmul_on_pool_threads). */
bool sm_moe_experts_side_by_side(const sm_moe_block *b);

/* Optional per-token routing outputs of a forward call (any pointer may be NULL). */
typedef struct sm_moe_trace {
    float *logits; /* m × n_router */
    int *idx;      /* m × top_k */
    float *w;      /* m × top_k */
} sm_moe_trace;

/* y (m×H) = block(x) for x (m×H). 0, or -1 with a message. */
int sm_moe_forward(const sm_moe_block *b, const float *x, int64_t m, float *y,
                   const sm_moe_trace *trace);
/* The same, checking `mon` (may be NULL) between expert slots: a block of thousands of rows at
 * real shapes runs for seconds (-1 with "cancelled"). A slot (or shared expert) whose rows are
 * more than sm_moe_panel_flop of work runs in row panels with a check between them: at
 * Mixtral's shape one slot is ~180 GFLOP, seconds without a check. */
int sm_moe_forward_mon(const sm_moe_block *b, const float *x, int64_t m, float *y,
                       const sm_moe_trace *trace, const sm_monitor *mon);
/* Work per panel, FLOP: 16e9, ~150 ms of oneDNN fp32 on 2 cores here (panels are at least 48
 * rows, so that they stay large products). Tests lower it to run panels on small shapes. */
extern double sm_moe_panel_flop;

/* Streaming relative error ||Y_ref − Y||_F / ||Y_ref||_F. */
typedef struct sm_error_acc {
    double num, den;
} sm_error_acc;
void sm_error_acc_add(sm_error_acc *acc, const float *ref, const float *y, int64_t len);
double sm_error_acc_value(const sm_error_acc *acc);

/* Relative MoE-block output error of `test` against `ref` on m tokens, processed in blocks of
 * `block` tokens (0 = 256) so memory does not grow with m. */
int sm_moe_output_error(const sm_moe_block *ref, const sm_moe_block *test, const float *x,
                        int64_t m, int64_t block, double *rel);

#endif
