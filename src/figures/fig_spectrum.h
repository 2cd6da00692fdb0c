/* fig_spectrum: the singular values of one group's union matrices W_cat (gate, up, down side by
 * side, log scale), their cumulative energy, the chosen ranks and the ranks keeping 90, 95 and
 * 99% of the energy; the CSV has one line per singular value:
 * matrix,index,singular_value,cumulative_energy,chosen,e90,e95,e99 (the last four 1 on the line
 * of the rank they mark, index counting from 1). */
#ifndef SM_FIG_SPECTRUM_H
#define SM_FIG_SPECTRUM_H

#include <stdint.h>

#include "figures/fig_render.h"

#define FIG_SPECTRUM_W 960
#define FIG_SPECTRUM_H 420

typedef struct fig_spectrum {
    const char *title;      /* e.g. "layer 0, group 2 (experts 1 4 6)" */
    const double *sv[3];    /* gate, up, down: singular values, descending (NULL: not drawn) */
    int len[3];
    int64_t rank[3];        /* the plan's rank of each (0: none, e.g. a pruned layer) */
} fig_spectrum;

/* The smallest r whose first r values keep at least `frac` of the energy Σσ² (len when none). */
int fig_energy_rank(const double *sv, int len, double frac);

/* DIR/BASE.{svg,pdf,png,csv}. 0, or -1 with a message. */
int fig_spectrum_write(const char *dir, const char *base, const fig_spectrum *s, fig_written *wr);

#endif
