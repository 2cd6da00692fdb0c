/* export: write a merged model in one of the three output formats (DESIGN §3.3), streaming.
 *
 *   hf           standard Hugging Face layout of the source architecture with the reduced
 *                expert count in config.json; needs the same number of experts in every MoE
 *                layer, a collapsed router (one row per expert) and dense experts.
 *   hf-expanded  standard layout with the original expert count: every original slot holds its
 *                cluster's merged (dense) weights and the router is unchanged — exact `remap`
 *                semantics for standard tools, no size saving.
 *   submoe       the native form: per-layer expert counts, expert maps for `remap` layers and
 *                low-rank factors `<name>.weight_a` [out, r], `<name>.weight_b` [r, in] (W = A·B),
 *                described by a "submoe" block in config.json (submoe(1), NATIVE FORMAT).
 * Experts are always written per expert (`….experts.e.<w1|gate_proj>.weight`), whatever the
 * source's layout; every other tensor is copied from the source (converted when a dtype is
 * asked for). Tensors are written in a fixed order (embeddings, then layer by layer, then the
 * final norm and head) into shards of at most `shard_size` bytes (`model.safetensors` when one
 * suffices, else `model-0000k-of-0000n.safetensors` + `model.safetensors.index.json`), each with
 * `__metadata__ {"format": "pt"}`. config.json gets the new counts and a "submoe_provenance"
 * object; tokenizer and generation files are copied. Everything goes into a temporary sibling
 * directory renamed into place by sm_export_finish; no timestamps or paths of temporaries are
 * written, so the same input gives the same bytes.
 *
 * Because safetensors headers come first, the caller declares every MoE layer's output shape at
 * sm_export_begin, then hands over each MoE layer's data in layer order. */
#ifndef SM_EXPORT_H
#define SM_EXPORT_H

#include <stdbool.h>
#include <stdint.h>

#include "model/model.h"

typedef enum { SM_EXPORT_HF = 0, SM_EXPORT_HF_EXPANDED, SM_EXPORT_SUBMOE } sm_export_format;

typedef struct sm_export_opts {
    sm_export_format format;
    int dtype;               /* -1: every tensor keeps its source dtype; else an sm_dtype */
    uint64_t shard_size;     /* bytes per shard (0 = 4 GiB); a larger tensor gets its own shard */
    const char *provenance;  /* JSON object text recorded as config.json "submoe_provenance" */
    bool force;              /* replace an existing output directory */
} sm_export_opts;

/* The output shape of one MoE layer. */
typedef struct sm_export_shape {
    int n_router, n_experts;
    const int *expert_map;    /* n_router slots (submoe format, remap), or NULL */
    const int64_t (*rank)[3]; /* n_experts × {gate, up, down}: 0 dense, r > 0 factored; NULL = dense */
} sm_export_shape;

/* One expert matrix: dense `w` (out×in), or factors a (out×rank) · b (rank×in). */
typedef struct sm_export_matrix {
    const float *w;
    const float *a, *b;
    int64_t rank;
} sm_export_matrix;

typedef struct sm_exporter sm_exporter;

/* shapes: one entry per model layer (only MoE layers' entries are read). NULL with a message
 * (an existing outdir without force, a shape the format cannot hold, …). */
sm_exporter *sm_export_begin(const sm_model *src, const char *outdir, const sm_export_opts *o,
                             const sm_export_shape *shapes);
/* MoE layer L's data, every MoE layer in increasing order: router (n_router × hidden) and
 * mats[slot][0..2] (gate, up, down) matching the declared shape. */
int sm_export_layer(sm_exporter *x, int layer, const float *router, const sm_export_matrix (*mats)[3]);
/* Replace the provenance record (sm_export_opts.provenance; the text must live until
 * sm_export_finish), e.g. with what only the layers' building told. */
void sm_export_set_provenance(sm_exporter *x, const char *provenance);
/* Copy what remains, write config.json, the index and the copied files, rename into place. */
int sm_export_finish(sm_exporter *x);
/* Remove everything written; frees x. (sm_export_finish frees x too, also on failure.) */
void sm_export_abort(sm_exporter *x);

/* Bytes of tensor data the output will hold (known after begin). */
uint64_t sm_export_total_bytes(const sm_exporter *x);

#endif
