/* activations: calibration capture written as a safetensors "activations file".
 *
 * The model runs on `samples` windows of `seq_len` consecutive tokens (from the start of the
 * stream, non-overlapping), all windows through layer L before layer L+1. Of the samples*seq_len
 * tokens, `keep` are kept per MoE layer (all when 0 or larger): a uniform sample without
 * replacement drawn with `seed`, the same token rows in every layer, in stream order.
 *
 * File format (little-endian safetensors, tensors in layer order):
 *   layers.L.moe_input      F32 [m, H]  input of the MoE block (post_attention_layernorm output)
 *   layers.L.router_logits  F32 [m, E]  router logits W_r x
 *   layers.L.topk           F32 [m, k]  the experts the model's routing rule selected (exact ints)
 *   __metadata__: format "submoe-activations", version "1", fingerprint (hex of the model's
 *   config, shapes and the settings and token ids used), model, tokens, samples, seq_len, keep,
 *   seed, rows (token position of each kept row is not stored; rows are sorted).
 * Written atomically (temporary file renamed into place). */
#ifndef SM_ACTIVATIONS_H
#define SM_ACTIVATIONS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "model/model.h"

typedef struct sm_calib_opts {
    int samples, seq_len;
    size_t keep;
    uint64_t seed;
    bool quiet;
    const char *tokens_name;    /* for the metadata */
} sm_calib_opts;

/* Fingerprint of the model (config.json text and tensor shapes) and the settings/tokens. */
uint64_t sm_calib_fingerprint(const sm_model *m, const int32_t *ids, size_t n, const sm_calib_opts *o);

/* Run the capture and write the activations file to path. 0 or -1 with a message. */
int sm_calib_write(const sm_model *m, const int32_t *ids, size_t n, const sm_calib_opts *o, const char *path);

/* Read the fingerprint recorded in an existing activations file: 0 and *out, or -1. */
int sm_calib_file_fingerprint(const char *path, uint64_t *out);

#endif
