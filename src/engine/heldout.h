/* heldout: a layer variant's held-out MoE-block output error from the source experts' outputs,
 * computed once (issue 16: "score candidates from cached expert outputs, not block forwards").
 *
 * Method auto scores each candidate by ||Y − Y_c||_F / ||Y||_F on the held-out rows, Y the source
 * block's output. A candidate (a pruned or merged layer, sm_merged_layer_block) keeps the
 * source's shared experts, so they cancel, and many of its expert slots are source experts
 * unchanged (every kept expert of a pruning; a merge's one-member clusters, which share their
 * member's matrices). So the cache holds, per held-out row, the outputs of the experts the source
 * selects (m × top_k × H floats) with their weights; a candidate's error then routes the rows with
 * its own router and runs only the slots the cache cannot answer (merged experts, or a source
 * expert on a row that did not select it), gathered per slot into large products, instead of
 * every selected expert on every row.
 *
 * The figure equals sm_engine_error's (block forward against the source) up to float rounding:
 * tests/test_heldout asserts 1e-5 relative on the demo and on synths of all five architectures. */
#ifndef SM_HELDOUT_H
#define SM_HELDOUT_H

#include <stdint.h>

#include "moe/moe.h"
#include "util/monitor.h"

typedef struct sm_heldout sm_heldout;

/* The cache of block `src` on m rows of x (m × hidden; both borrowed for the cache's life: the
 * candidates are scored on the same rows). Cancellable between expert panels. NULL with a message. */
sm_heldout *sm_heldout_new(const sm_moe_block *src, const float *x, int64_t m, const sm_monitor *mon);
void sm_heldout_free(sm_heldout *h);

/* Relative output error of block `cand` against the source on the cached rows. cand must have the
 * source's hidden size and shared experts (a layer variant); its experts are compared with the
 * source's by their weights' addresses (a slot is the source's expert e when it views the same
 * matrices). 0, or -1 with a message (cancelled: "cancelled"). */
int sm_heldout_error(sm_heldout *h, const sm_moe_block *cand, const sm_monitor *mon, double *rel);

/* Bytes the cache holds for m rows of block b (for memory estimates). */
int64_t sm_heldout_bytes(const sm_moe_block *b, int64_t m);

#endif
