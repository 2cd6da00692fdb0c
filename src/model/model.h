/* model: the one view of a model the rest of the program uses.
 *
 * A model is a directory (config.json + model.safetensors or a sharded index). Weights are
 * addressed by role, layer and index — never by tensor name outside src/model. Data stays
 * memory-mapped in its stored dtype; sm_weight_to_f32() converts on demand. */
#ifndef SM_MODEL_H
#define SM_MODEL_H

#include <stdbool.h>
#include <stdint.h>

#include "model/arch.h"
#include "model/dtype.h"
#include "model/roles.h"
#include "model/st.h"

/* A 2-D (or 1-D, rows = 1) row-major view of stored elements: a whole tensor or one expert's
 * slice of a fused [E, ...] tensor. */
typedef struct sm_weight {
    const sm_tensor *tensor;
    uint64_t offset;     /* element offset into the tensor */
    int64_t rows, cols;
} sm_weight;

typedef struct sm_model sm_model;

/* Open a model directory; validates config, every shard header and the presence and shape of
 * every weight the architecture needs. NULL with a message naming the file on failure. */
sm_model *sm_model_open(const char *dir);
void sm_model_close(sm_model *m);

const sm_config *sm_model_config(const sm_model *m);
const char *sm_model_dir(const sm_model *m);
sm_layout sm_model_layout(const sm_model *m);
/* Routed expert slots in layer L (0 for dense layers). */
int sm_model_layer_experts(const sm_model *m, int layer);
/* Router rows of MoE layer L: the expert count, except in submoe's native format where a layer
 * with an expert map keeps the original rows (sm_model_expert_map gives each row's slot). */
int sm_model_router_rows(const sm_model *m, int layer);
const int *sm_model_expert_map(const sm_model *m, int layer); /* NULL: row i is slot i */
/* Native format: 1 and the factors (W = A·B, A [out, r], B [r, in]) when expert `slot`'s matrix
 * `mat` (0 gate, 1 up, 2 down) is stored factored, 0 when dense (use sm_model_weight), -1. */
int sm_model_expert_factors(const sm_model *m, int layer, int slot, int mat, sm_weight *a, sm_weight *b);

/* Look up a weight; -1 with a message if the model has no such weight. */
int sm_model_weight(const sm_model *m, sm_wrole role, int layer, int index, sm_weight *out);
bool sm_model_has(const sm_model *m, sm_wrole role, int layer);

/* Convert a weight to float: dst holds rows*cols floats. -1 with a message naming the file and
 * tensor when a value is Inf or NaN (checked in the same pass as the conversion): a model with
 * such weights is refused where it is loaded, never computed with. */
int sm_weight_to_f32(const sm_weight *w, float *dst);
/* Tell the kernel the view's mapped pages are no longer needed (after converting a large weight),
 * so a pass over a model larger than RAM keeps only what it works on resident. */
void sm_weight_release(const sm_weight *w);
/* The view's values where the file is mapped, when they are stored in bf16 (on a 2-byte
 * boundary, as the products read them), else NULL. Not checked finite. */
const uint16_t *sm_weight_bf16(const sm_weight *w);
/* Convert rows [r0, r0+n) only. */
int sm_weight_rows_to_f32(const sm_weight *w, int64_t r0, int64_t n, float *dst);

/* Files and tensors, for inspect/diff. */
int sm_model_file_count(const sm_model *m);
const st_file *sm_model_file(const sm_model *m, int i);
uint64_t sm_model_param_count(const sm_model *m);   /* all stored elements */
/* Parameters of one routed expert (gate+up+down) and of everything active for one token. */
uint64_t sm_model_expert_params(const sm_model *m);
uint64_t sm_model_active_params(const sm_model *m);
/* Distinct dtypes present, as a bitmask of 1 << sm_dtype. */
unsigned sm_model_dtypes(const sm_model *m);


/* Fingerprint of what a plan depends on: architecture, config dimensions and every tensor's
 * name and shape (not dtypes or values: a bf16 and an f32 copy share plans). "fnv1a64:<16 hex digits>". */
void sm_model_fingerprint(const sm_model *m, char out[32]);

#endif
