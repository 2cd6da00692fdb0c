/* fig_model: the whole-model chart — one row per MoE layer with the experts it keeps, the
 * routed-expert parameters it saves, its routing-frequency distribution (sorted bars) and the
 * held-out MoE-block output error of the plan (computed as `submoe plan` previews it). CSVs:
 * BASE.csv (layer,experts,kept,method,params_before,params_after,params_saved,output_error;
 * empty fields where there is no plan) and BASE-frequency.csv (layer,expert,frequency,position:
 * the bar's place in the sorted row, from 0). Plain data in, for the command and the
 * workbench's model view alike. */
#ifndef SM_FIG_MODEL_H
#define SM_FIG_MODEL_H

#include <stdint.h>

#include "figures/fig_render.h"

#define FIG_MODEL_W 960
/* The height for n layers. */
#define FIG_MODEL_H(n) (110 + 26 * (n))

typedef struct fig_model_layer {
    int layer, experts;
    int kept;                       /* experts (or groups) after the plan, < 0: no plan */
    const char *method;             /* what the plan builds, or NULL */
    int64_t params_before, params_after; /* routed-expert parameters; after < 0: no plan */
    double error;                   /* held-out output error, < 0: none */
    const double *freq;             /* experts: routing frequency, or NULL */
} fig_model_layer;

typedef struct fig_model {
    const char *title;
    int n;
    const fig_model_layer *layers;
} fig_model;

/* DIR/BASE.{svg,pdf,png,csv} and DIR/BASE-frequency.csv. 0, or -1 with a message. */
int fig_model_write(const char *dir, const char *base, const fig_model *m, fig_written *wr);

#endif
