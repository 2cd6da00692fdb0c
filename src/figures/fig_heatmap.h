/* fig_heatmap: a layer's expert-similarity matrix as a figure (colour cells on a viridis ramp,
 * experts in group order with the group boundaries drawn, a colour bar with the range) and its
 * CSV: one line per cell, row_expert,col_expert,row_group,col_group,similarity. Plain data in,
 * so the command (cmd_figures) and the workbench (key E) draw the same figure. */
#ifndef SM_FIG_HEATMAP_H
#define SM_FIG_HEATMAP_H

#include "figures/fig_render.h"

/* Every heatmap is this size (pixels in the PNG, points in the PDF and SVG). */
#define FIG_HEATMAP_W 720
#define FIG_HEATMAP_H 640

typedef struct fig_heatmap {
    const char *title;   /* e.g. "layer 3: output similarity" */
    int n;               /* experts */
    const double *sim;   /* n × n, row-major by expert index */
    const int *group;    /* n group labels (drawn in group order), or NULL: index order, no groups */
} fig_heatmap;

/* DIR/BASE.{svg,pdf,png,csv}. 0, or -1 with a message. */
int fig_heatmap_write(const char *dir, const char *base, const fig_heatmap *h, fig_written *wr);

#endif
