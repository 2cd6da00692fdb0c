/* calib_file: what the capture (calib.c) and the reading of stats files (calib_read.c) share —
 * the in-memory form of a mapped stats file. Private to those two files. */
#ifndef SM_CALIB_FILE_H
#define SM_CALIB_FILE_H

#include "engine/engine.h"
#include "model/model.h"
#include "model/st.h"

#include <stdbool.h>
#include <stdint.h>

#define DEFAULT_SAMPLE 512

typedef struct {
    int64_t rows;                /* m in the file */
    const sm_tensor *x, *counts, *outputs, *sim[3]; /* sim: output, logit, weight */
    const sm_tensor *saliency;   /* or NULL: a file from before REAP saliencies */
    float *xf;                   /* converted inputs (cached): the fit then the held-out sample */
    int64_t xf_fit, xf_held;     /* rows of each in xf */
    sm_layer_analysis *an;       /* cached statistics */
    bool an_grams;
    bool an_mapped;              /* an->outputs points into the file's mapping (not owned) */
} calib_layer;

struct sm_calib {
    const sm_model *m;
    st_file *f;
    char *path;                  /* NULL for an unlinked temporary */
    int n_layers;
    int64_t heldout;             /* rows held out at the end of every layer */
    int64_t sample;
    bool stats;
    calib_layer *layer;
    int32_t *eval_ids;           /* token windows after the calibration ones (auto's held-out loss) */
    int eval_n_seq, eval_seq_len;
};

#endif
