/* names: Hugging Face tensor names for each weight role, per architecture and expert layout.
 * The single place that knows them (used by the loader and the writers). */
#ifndef SM_NAMES_H
#define SM_NAMES_H

#include <stdbool.h>
#include <stddef.h>

#include "model/arch.h"
#include "model/roles.h"

/* Name of a (non-expert, or per-expert-layout expert) weight. For SM_W_EXPERT_* `index` is the
 * expert. `moe_block` is the MoE module name ("block_sparse_moe" or "mlp"). Returns buf. */
const char *sm_name(sm_arch a, sm_wrole role, int layer, int index, const char *moe_block, char *buf, size_t n);
/* Fused-layout expert tensors: gate_up_proj [E, 2I, H] and down_proj [E, H, I]. */
const char *sm_name_fused(int layer, bool gate_up, const char *moe_block, char *buf, size_t n);
/* Default MoE module name when writing a model in the given layout. */
const char *sm_moe_block_default(sm_arch a, sm_layout layout);

#endif
